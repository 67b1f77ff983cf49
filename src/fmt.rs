//! Formatting without allocation, for diagnostics and statistics: a fixed
//! buffer on the stack that silently truncates.
//!
//! `Buf<N>`'s methods are thin wrappers over two non-generic, out-of-line
//! functions on `(buffer, length)`. The report and diagnostic code is cold;
//! inlined for every `N` and every call site, it had made `report::report`
//! alone 23 KiB of machine code, every page of which a process under
//! `LD_PRELOAD` maps (see docs/experiments.md, "Memory of the library itself").

pub struct Buf<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> Buf<N> {
    pub const fn new() -> Self {
        Buf {
            buf: [0; N],
            len: 0,
        }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.len.min(N)]
    }

    #[inline]
    pub fn str(&mut self, s: &str) -> &mut Self {
        self.raw(s.as_bytes())
    }

    #[inline]
    pub fn raw(&mut self, s: &[u8]) -> &mut Self {
        append(&mut self.buf, &mut self.len, s);
        self
    }

    #[inline]
    pub fn u64(&mut self, v: u64) -> &mut Self {
        append_num(&mut self.buf, &mut self.len, v, 10, b"");
        self
    }

    #[inline]
    pub fn i64(&mut self, v: i64) -> &mut Self {
        let sign: &[u8] = if v < 0 { b"-" } else { b"" };
        append_num(&mut self.buf, &mut self.len, v.unsigned_abs(), 10, sign);
        self
    }

    #[inline]
    pub fn hex(&mut self, v: u64) -> &mut Self {
        append_num(&mut self.buf, &mut self.len, v, 16, b"0x");
        self
    }

    /// ` key=value`
    #[inline]
    pub fn kv(&mut self, key: &str, v: u64) -> &mut Self {
        self.str(" ").str(key).str("=").u64(v)
    }
}

/// Appends what fits of `s` to `buf[..*len]`.
#[inline(never)]
fn append(buf: &mut [u8], len: &mut usize, s: &[u8]) {
    let start = (*len).min(buf.len());
    // Written so that every slice is provably in bounds: the messages of
    // the fatal paths have no panic path of their own.
    let mut n = 0;
    for (d, &c) in buf[start..].iter_mut().zip(s) {
        *d = c;
        n += 1;
    }
    *len = start + n;
}

/// Appends `prefix`, then `v` in base `radix` (10 or 16).
#[inline(never)]
fn append_num(buf: &mut [u8], len: &mut usize, mut v: u64, radix: u64, prefix: &[u8]) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b"0123456789abcdef"[(v % radix) as usize];
        v /= radix;
        if v == 0 {
            break;
        }
    }
    append(buf, len, prefix);
    append(buf, len, &tmp[i..]);
}

impl<const N: usize> Default for Buf<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// Prints `slaballoc: <what>(): <why>: <ptr>` on stderr and aborts. Used when a
/// pointer into our memory is not a live block: continuing could corrupt it.
#[cold]
#[inline(never)]
#[link_section = ".text_cold"]
pub fn fatal_pointer(what: &str, ptr: *const u8, why: &str) -> ! {
    let mut b = Buf::<256>::new();
    b.str("slaballoc: ")
        .str(what)
        .str("(): ")
        .str(why)
        .str(": ")
        .hex(ptr as u64)
        .str("\n");
    crate::os::write_all(2, b.bytes());
    crate::os::abort()
}

/// Prints `slaballoc: <why>` on stderr and aborts.
#[cold]
#[inline(never)]
#[link_section = ".text_cold"]
pub fn fatal(why: &str) -> ! {
    let mut b = Buf::<256>::new();
    b.str("slaballoc: ").str(why).str("\n");
    crate::os::write_all(2, b.bytes());
    crate::os::abort()
}

/// One warning line on stderr.
#[cold]
#[link_section = ".text_cold"]
pub fn warn(parts: &[&[u8]]) {
    let mut b = Buf::<512>::new();
    b.str("slaballoc: warning: ");
    for p in parts {
        b.raw(p);
    }
    b.str("\n");
    crate::os::write_all(2, b.bytes());
}

/// A decimal number of 1 to 19 digits and nothing else (environment values,
/// `/proc` fields, pids in file names); None otherwise.
pub fn parse_u64(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 {
        return None;
    }
    let mut n: u64 = 0;
    for &b in v {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + (b - b'0') as u64;
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let mut b = Buf::<64>::new();
        b.u64(0)
            .str(" ")
            .u64(18446744073709551615)
            .str(" ")
            .hex(0xdead)
            .kv("k", 42)
            .str(" ")
            .i64(-5);
        assert_eq!(b.bytes(), b"0 18446744073709551615 0xdead k=42 -5");
        let mut t = Buf::<4>::new();
        t.str("abcdef");
        assert_eq!(t.bytes(), b"abcd");
        // Truncation inside a number, and nothing after the buffer is full.
        let mut u = Buf::<6>::new();
        u.str("ab").u64(123456).str("z");
        assert_eq!(u.bytes(), b"ab1234");
        let mut m = Buf::<32>::new();
        m.i64(i64::MIN).str(" ").hex(0);
        assert_eq!(m.bytes(), b"-9223372036854775808 0x0");
    }
}
