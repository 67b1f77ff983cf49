//! Formatting without allocation, for diagnostics and statistics: a fixed
//! buffer on the stack that silently truncates.

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

    pub fn str(&mut self, s: &str) -> &mut Self {
        self.raw(s.as_bytes())
    }

    pub fn raw(&mut self, s: &[u8]) -> &mut Self {
        for &b in s {
            if self.len < N {
                self.buf[self.len] = b;
                self.len += 1;
            }
        }
        self
    }

    pub fn u64(&mut self, mut v: u64) -> &mut Self {
        let mut tmp = [0u8; 20];
        let mut i = tmp.len();
        loop {
            i -= 1;
            tmp[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.raw(&tmp[i..])
    }

    pub fn i64(&mut self, v: i64) -> &mut Self {
        if v < 0 {
            self.str("-");
        }
        self.u64(v.unsigned_abs())
    }

    pub fn hex(&mut self, mut v: u64) -> &mut Self {
        let mut tmp = [0u8; 16];
        let mut i = tmp.len();
        loop {
            i -= 1;
            tmp[i] = b"0123456789abcdef"[(v & 15) as usize];
            v >>= 4;
            if v == 0 {
                break;
            }
        }
        self.str("0x").raw(&tmp[i..])
    }

    /// ` key=value`
    pub fn kv(&mut self, key: &str, v: u64) -> &mut Self {
        self.str(" ").str(key).str("=").u64(v)
    }
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
pub fn fatal(why: &str) -> ! {
    let mut b = Buf::<256>::new();
    b.str("slaballoc: ").str(why).str("\n");
    crate::os::write_all(2, b.bytes());
    crate::os::abort()
}

/// One warning line on stderr.
#[cold]
pub fn warn(parts: &[&[u8]]) {
    let mut b = Buf::<512>::new();
    b.str("slaballoc: warning: ");
    for p in parts {
        b.raw(p);
    }
    b.str("\n");
    crate::os::write_all(2, b.bytes());
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
    }
}
