//! What every report says beyond the counters: which process it is (program,
//! pid, slaballoc version), its memory (resident, committed, reserved, their
//! peaks where known, metadata), the options in effect; human units for the
//! text form; and where the exit-time report goes (`SLABALLOC_STATS_FILE`,
//! a file name pattern with `%p` for the pid and `%e` for the program).
//!
//! Nothing here allocates; the figures read from procfs come with plain
//! system calls (`os::read_small_file`), only when a report is made.

use crate::fmt::Buf;
use core::sync::atomic::Ordering;

/// The crate version, as in Cargo.toml.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The program's name: glibc's `program_invocation_short_name` (the base
/// name of `argv[0]`), at most 64 bytes.
pub fn program() -> &'static [u8] {
    extern "C" {
        static program_invocation_short_name: *const libc::c_char;
    }
    // SAFETY: glibc sets the pointer before any constructor runs, to a
    // NUL-terminated string inside argv[0] that lives for the process; we
    // only read it.
    unsafe {
        let p = program_invocation_short_name;
        if p.is_null() {
            return b"?";
        }
        let b = core::ffi::CStr::from_ptr(p).to_bytes();
        if b.is_empty() {
            b"?"
        } else {
            &b[..b.len().min(64)]
        }
    }
}

/// The process id (the caller's: after a fork, the child's).
pub fn pid() -> u32 {
    // SAFETY: getpid has no preconditions.
    unsafe { libc::getpid() as u32 }
}

/// Memory figures, in bytes.
#[derive(Default, Clone, Copy, Debug)]
pub struct Memory {
    /// The whole process's resident set (`/proc/self/statm`, field 2: the
    /// program's own pages and libraries included), 0 if unreadable.
    pub resident: u64,
    /// The kernel's high-water mark of that (`VmHWM` in `/proc/self/status`).
    pub resident_peak: u64,
    /// What the kernel agreed to back (`bytes_committed`: the arenas below
    /// their commit watermarks, metadata included, and huge mappings).
    pub committed: u64,
    /// Address space held for the heap: arenas and huge mappings
    /// (`bytes_reserved`).
    pub reserved: u64,
    /// Metadata: page maps and run descriptors at the head of each arena,
    /// the zones (static), the per-CPU cache blocks (all reserved, touched
    /// as used).
    pub metadata: u64,
}

/// Parses the `n`-th (0-based) space-separated number of `s`.
fn nth_number(s: &[u8], n: usize) -> Option<u64> {
    let f = s.split(|&b| b == b' ' || b == b'\n').nth(n)?;
    parse(f)
}

/// A pid from a file name: decimal digits only, below 2^31.
pub fn parse_u32(f: &[u8]) -> Option<u32> {
    if f.len() > 10 {
        return None;
    }
    parse(f).filter(|&v| v < 1 << 31).map(|v| v as u32)
}

use crate::fmt::parse_u64 as parse;

/// `VmHWM:    1234 kB` in a `/proc/*/status` text, in bytes.
fn vm_hwm(s: &[u8]) -> Option<u64> {
    let at = s.windows(6).position(|w| w == b"VmHWM:")?;
    let rest = s.get(at + 6..)?;
    let line = rest.split(|&b| b == b'\n').next()?;
    let digits = line
        .split(|&b| b == b' ' || b == b'\t')
        .find(|f| !f.is_empty())?;
    Some(parse(digits)? * 1024)
}

/// The memory figures now.
#[inline(never)]
#[cold]
#[link_section = ".text_cold"]
pub fn memory(t: &super::Totals) -> Memory {
    let mut m = Memory::default();
    let mut buf = [0u8; 2048];
    if let Some(pages) = nth_number(crate::os::read_small_file(c"/proc/self/statm", &mut buf), 1) {
        m.resident = pages * crate::os::PAGE_SIZE as u64;
    }
    let status = crate::os::read_small_file(c"/proc/self/status", &mut buf);
    m.resident_peak = vm_hwm(status).unwrap_or(0).max(m.resident);
    m.committed = t.bytes_committed;
    m.reserved = t.bytes_reserved;
    m.metadata = (crate::pagemap::narenas() * crate::pagemap::META_PAGES * crate::os::PAGE_SIZE)
        as u64
        + core::mem::size_of_val(&crate::zone::ZONES) as u64
        + crate::cache::reserved_bytes() as u64;
    m
}

/// Appends `v` bytes in human units: `512 B`, `1.5 KiB`, `12.0 MiB`, ...
pub fn human<const N: usize>(b: &mut Buf<N>, v: u64) {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    if v < 1024 {
        b.u64(v).str(" B");
        return;
    }
    let (mut u, mut d) = (0usize, 1u128);
    while u + 1 < UNITS.len() && v as u128 >= d * 1024 {
        d *= 1024;
        u += 1;
    }
    // Tenths of the unit, rounded.
    let tenths = (v as u128 * 10 + d / 2) / d;
    b.u64((tenths / 10) as u64)
        .str(".")
        .u64((tenths % 10) as u64)
        .str(" ")
        .str(UNITS[u]);
}

/// The options in effect, as `(name, value)` pairs.
pub fn options() -> [(&'static str, &'static str, u64); 6] {
    let c = &crate::config::NOTIFY_EVERY;
    [
        (
            "notify",
            if c.load(Ordering::Relaxed) {
                "every"
            } else {
                "detach"
            },
            0,
        ),
        (
            "background",
            match crate::config::BACKGROUND.load(Ordering::Relaxed) {
                crate::config::BG_EAGER => "1",
                crate::config::BG_NEVER => "0",
                _ => "lazy",
            },
            0,
        ),
        (
            "dirty_max_mb",
            "",
            (crate::config::DIRTY_MAX_PAGES.load(Ordering::Relaxed) >> 8) as u64,
        ),
        (
            "live",
            if crate::config::LIVE.load(Ordering::Relaxed) {
                "1"
            } else {
                "0"
            },
            0,
        ),
        ("cache", if crate::cache::on() { "on" } else { "off" }, 0),
        ("zones_by", crate::cpu::id_kind(), 0),
    ]
}

/// Expands a `SLABALLOC_STATS_FILE` pattern: `%p` the pid, `%e` the
/// program, `%%` a percent sign. NUL-terminated in `out`; false if it does
/// not fit.
pub fn expand_pattern(pattern: &[u8], out: &mut [u8; 512]) -> bool {
    let mut b = Buf::<512>::new();
    let mut i = 0;
    while i < pattern.len() {
        let ch = pattern[i];
        if ch == b'%' && i + 1 < pattern.len() {
            match pattern[i + 1] {
                b'p' => {
                    b.u64(pid() as u64);
                    i += 2;
                    continue;
                }
                b'e' => {
                    // A program name holds no '/', but keep it a file name.
                    for &c in program() {
                        b.raw(&[if c == b'/' { b'_' } else { c }]);
                    }
                    i += 2;
                    continue;
                }
                b'%' => {
                    b.str("%");
                    i += 2;
                    continue;
                }
                _ => {}
            }
        }
        b.raw(&[ch]);
        i += 1;
    }
    let s = b.bytes();
    if s.is_empty() || s.len() >= out.len() || s.contains(&0) {
        return false;
    }
    out[..s.len()].copy_from_slice(s);
    out[s.len()] = 0;
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(v: u64) -> String {
        let mut b = Buf::<32>::new();
        human(&mut b, v);
        String::from_utf8(b.bytes().to_vec()).unwrap()
    }

    #[test]
    fn human_units() {
        assert_eq!(h(0), "0 B");
        assert_eq!(h(1023), "1023 B");
        assert_eq!(h(1024), "1.0 KiB");
        assert_eq!(h(1536), "1.5 KiB");
        assert_eq!(h(64 << 20), "64.0 MiB");
        assert_eq!(h((5 << 30) + (1 << 29)), "5.5 GiB");
        assert_eq!(h(u64::MAX), "16384.0 PiB");
    }

    #[test]
    fn procfs_parsing() {
        assert_eq!(nth_number(b"100 25 3 0 0 10 0\n", 1), Some(25));
        assert_eq!(nth_number(b"", 1), None);
        assert_eq!(
            vm_hwm(b"Name:\tx\nVmPeak:\t 9 kB\nVmHWM:\t    1234 kB\nVmRSS: 1 kB\n"),
            Some(1234 * 1024)
        );
        assert_eq!(vm_hwm(b"Name: x\n"), None);
        let t = super::super::totals();
        let m = memory(&t);
        assert!(m.resident > 0 && m.resident_peak >= m.resident);
        // Other tests allocate meanwhile: the figures are read one by one.
        assert!(m.committed <= m.reserved + (64 << 20));
        assert!(m.metadata > 0);
    }

    #[test]
    fn patterns() {
        let mut out = [0u8; 512];
        assert!(expand_pattern(b"/tmp/x.%p.%%.log", &mut out));
        let s = core::ffi::CStr::from_bytes_until_nul(&out).unwrap();
        assert_eq!(
            s.to_str().unwrap(),
            format!("/tmp/x.{}.%.log", std::process::id())
        );
        assert!(expand_pattern(b"%e", &mut out));
        let s = core::ffi::CStr::from_bytes_until_nul(&out).unwrap();
        assert_eq!(s.to_bytes(), program());
        assert!(!expand_pattern(b"", &mut out));
    }
}
