//! Run-time options, from `SLABALLOC_*` environment variables.
//!
//! Read once by the library constructor (the environment is not set up yet when
//! ld.so makes its first malloc calls), never on a malloc path. Until then the
//! defaults apply. In set-uid/set-gid programs (`AT_SECURE`) the environment is
//! ignored, as glibc does for its own malloc variables. A malformed value gets
//! one warning line and the default.

use crate::fmt::warn;
use core::ffi::CStr;
use core::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, Ordering};

/// `SLABALLOC_BACKGROUND` unset: the reclaimer thread starts lazily.
pub const BG_LAZY: u8 = 0;
/// `SLABALLOC_BACKGROUND=1`: started at start-up, kept.
pub const BG_EAGER: u8 = 1;
/// `SLABALLOC_BACKGROUND=0`: never.
pub const BG_NEVER: u8 = 2;

/// `SLABALLOC_NOTIFY=every`: a ring message for every remote free (the pre-2010
/// DragonFly design), to compare with the default (`detach`).
pub static NOTIFY_EVERY: AtomicBool = AtomicBool::new(false);
/// `SLABALLOC_STATS`: 0 off, 1 key=value line at exit, 2 text, 3 JSON.
pub static STATS: AtomicU8 = AtomicU8::new(0);
/// `SLABALLOC_BACKGROUND`: `BG_LAZY`, `BG_EAGER` or `BG_NEVER`.
pub static BACKGROUND: AtomicU8 = AtomicU8::new(BG_LAZY);
/// `SLABALLOC_FAIL_MAP_AFTER=n`: the (n+1)-th and later mappings fail (fault
/// injection for out-of-memory tests). -1: off.
static FAIL_MAP_AFTER: AtomicI64 = AtomicI64::new(-1);

/// The exit-time report asked for, if any.
pub fn stats_format() -> Option<crate::stats::Format> {
    match STATS.load(Ordering::Relaxed) {
        1 => Some(crate::stats::Format::Line),
        2 => Some(crate::stats::Format::Text),
        3 => Some(crate::stats::Format::Json),
        _ => None,
    }
}

/// Fault injection: true if this mapping attempt must fail.
#[inline]
pub fn inject_map_failure() -> bool {
    let n = FAIL_MAP_AFTER.load(Ordering::Relaxed);
    if n < 0 {
        return false;
    }
    if n == 0 {
        return true;
    }
    FAIL_MAP_AFTER.fetch_sub(1, Ordering::Relaxed);
    false
}

fn parse_u64(v: &[u8]) -> Option<u64> {
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

/// `SLABALLOC_DECAY`: seconds (up to three decimals) as milliseconds;
/// `off` or `never`: `runs::DECAY_NEVER`.
fn parse_decay(v: &[u8]) -> Option<u64> {
    if v == b"off" || v == b"never" {
        return Some(crate::runs::DECAY_NEVER);
    }
    let mut parts = v.splitn(2, |&b| b == b'.');
    let secs = parse_u64(parts.next()?)?;
    let frac = match parts.next() {
        None => 0,
        Some(f) if !f.is_empty() && f.len() <= 3 => parse_u64(f)? * [100, 10, 1][f.len() - 1],
        Some(_) => return None,
    };
    secs.checked_mul(1000)?
        .checked_add(frac)
        .filter(|&ms| ms < crate::runs::DECAY_NEVER)
}

fn bad(name: &CStr, v: &[u8], expect: &str) {
    warn(&[
        b"ignoring ",
        name.to_bytes(),
        b"=",
        v,
        b" (expected ",
        expect.as_bytes(),
        b")",
    ]);
}

fn flag(name: &CStr) -> Option<bool> {
    let v = crate::os::getenv(name)?;
    match v {
        b"1" | b"yes" | b"on" | b"true" => Some(true),
        b"0" | b"no" | b"off" | b"false" | b"" => Some(false),
        _ => {
            bad(name, v, "0 or 1");
            None
        }
    }
}

/// Every variable we read; any other `SLABALLOC_*` name gets a warning.
const KNOWN: [&[u8]; 6] = [
    b"SLABALLOC_NOTIFY",
    b"SLABALLOC_STATS",
    b"SLABALLOC_BACKGROUND",
    b"SLABALLOC_DECAY",
    b"SLABALLOC_DIRTY_MAX_MB",
    b"SLABALLOC_FAIL_MAP_AFTER",
];

/// Warns about `SLABALLOC_*` variables we do not know (a typo would otherwise
/// be silently ignored).
fn warn_unknown() {
    extern "C" {
        static environ: *const *const libc::c_char;
    }
    // SAFETY: `environ` is glibc's NULL-terminated array of NUL-terminated
    // strings; we only read it, from the constructor, before main.
    unsafe {
        let mut e = environ;
        while !e.is_null() && !(*e).is_null() {
            let s = CStr::from_ptr(*e).to_bytes();
            e = e.add(1);
            let name = s.split(|&b| b == b'=').next().unwrap_or(s);
            if name.starts_with(b"SLABALLOC_") && !KNOWN.contains(&name) {
                warn(&[b"unknown variable ", name, b" ignored"]);
            }
        }
    }
}

/// Reads the environment. Called from the library constructor.
pub fn load() {
    if crate::os::getauxval(libc::AT_SECURE) != 0 {
        return;
    }
    warn_unknown();
    if let Some(v) = crate::os::getenv(c"SLABALLOC_NOTIFY") {
        match v {
            b"every" => NOTIFY_EVERY.store(true, Ordering::Relaxed),
            b"detach" | b"" => NOTIFY_EVERY.store(false, Ordering::Relaxed),
            _ => bad(c"SLABALLOC_NOTIFY", v, "detach or every"),
        }
    }
    if let Some(v) = crate::os::getenv(c"SLABALLOC_STATS") {
        match v {
            b"1" => STATS.store(1, Ordering::Relaxed),
            b"text" => STATS.store(2, Ordering::Relaxed),
            b"json" => STATS.store(3, Ordering::Relaxed),
            b"0" | b"" => STATS.store(0, Ordering::Relaxed),
            _ => bad(c"SLABALLOC_STATS", v, "0, 1, text or json"),
        }
    }
    if let Some(b) = flag(c"SLABALLOC_BACKGROUND") {
        BACKGROUND.store(if b { BG_EAGER } else { BG_NEVER }, Ordering::Relaxed);
    }
    if let Some(v) = crate::os::getenv(c"SLABALLOC_DECAY") {
        match parse_decay(v) {
            Some(ms) => crate::runs::RUNS.decay_ms.store(ms, Ordering::Relaxed),
            None => bad(c"SLABALLOC_DECAY", v, "seconds, such as 1 or 0.5, or off"),
        }
    }
    if let Some(v) = crate::os::getenv(c"SLABALLOC_DIRTY_MAX_MB") {
        match parse_u64(v) {
            Some(mb) if mb <= 1 << 20 => crate::runs::RUNS
                .dirty_budget
                .store((mb as usize) << 8, Ordering::Relaxed),
            _ => bad(c"SLABALLOC_DIRTY_MAX_MB", v, "a number of MiB"),
        }
    }
    if let Some(v) = crate::os::getenv(c"SLABALLOC_FAIL_MAP_AFTER") {
        match parse_u64(v) {
            Some(n) if n < i64::MAX as u64 => FAIL_MAP_AFTER.store(n as i64, Ordering::Relaxed),
            _ => bad(c"SLABALLOC_FAIL_MAP_AFTER", v, "a count"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(parse_u64(b"0"), Some(0));
        assert_eq!(parse_u64(b"123"), Some(123));
        assert_eq!(parse_u64(b""), None);
        assert_eq!(parse_u64(b"12x"), None);
        assert_eq!(parse_u64(b"99999999999999999999"), None);
    }

    #[test]
    fn decay_values() {
        assert_eq!(parse_decay(b"0"), Some(0));
        assert_eq!(parse_decay(b"10"), Some(10_000));
        assert_eq!(parse_decay(b"0.5"), Some(500));
        assert_eq!(parse_decay(b"1.25"), Some(1250));
        assert_eq!(parse_decay(b"2.125"), Some(2125));
        assert_eq!(parse_decay(b"off"), Some(crate::runs::DECAY_NEVER));
        assert_eq!(parse_decay(b"never"), Some(crate::runs::DECAY_NEVER));
        for bad in [
            &b""[..],
            b".5",
            b"1.",
            b"1.2345",
            b"-1",
            b"1s",
            b"99999999999999999999",
        ] {
            assert_eq!(parse_decay(bad), None, "{bad:?}");
        }
    }
}
