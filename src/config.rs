//! Run-time options, from `SLABALLOC_*` environment variables.
//!
//! Read once by the library constructor (the environment is not set up yet when
//! ld.so makes its first malloc calls), never on a malloc path. Until then the
//! defaults apply. In set-uid/set-gid programs (`AT_SECURE`) the environment is
//! ignored, as glibc does for its own malloc variables. A malformed value gets
//! one warning line and the default.

use crate::fmt::warn;
use core::ffi::CStr;
use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};

/// `SLABALLOC_NOTIFY=every`: a ring message for every remote free (the pre-2010
/// DragonFly design), to compare with the default (`detach`).
pub static NOTIFY_EVERY: AtomicBool = AtomicBool::new(false);
/// `SLABALLOC_STATS`: 0 off, 1 key=value line at exit, 2 text, 3 JSON.
pub static STATS: AtomicU8 = AtomicU8::new(0);
/// `SLABALLOC_BACKGROUND=1`: start the reclaimer thread.
pub static BACKGROUND: AtomicBool = AtomicBool::new(false);

/// The exit-time report asked for, if any.
pub fn stats_format() -> Option<crate::stats::Format> {
    match STATS.load(Ordering::Relaxed) {
        1 => Some(crate::stats::Format::Line),
        2 => Some(crate::stats::Format::Text),
        3 => Some(crate::stats::Format::Json),
        _ => None,
    }
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
const KNOWN: [&[u8]; 10] = [
    b"SLABALLOC_NOTIFY",
    b"SLABALLOC_STATS",
    b"SLABALLOC_BACKGROUND",
    b"SLABALLOC_DIRTY_MAX_MB",
    b"SLABALLOC_FAIL_MAP_AFTER",
    b"SLABALLOC_PROF",
    b"SLABALLOC_PROF_SAMPLE",
    b"SLABALLOC_PROF_PEAK",
    b"SLABALLOC_PROF_PREFIX",
    b"SLABALLOC_PROF_SEED",
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
        BACKGROUND.store(b, Ordering::Relaxed);
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
            Some(n) if n < i64::MAX as u64 => crate::os::fail_maps_after(n as i64),
            _ => bad(c"SLABALLOC_FAIL_MAP_AFTER", v, "a count"),
        }
    }
    load_prof();
}

/// The heap profiler's variables (`prof`).
fn load_prof() {
    use crate::prof;
    if let Some(b) = flag(c"SLABALLOC_PROF") {
        prof::WANTED.store(b, Ordering::Relaxed);
    }
    if let Some(v) = crate::os::getenv(c"SLABALLOC_PROF_SAMPLE") {
        match parse_u64(v) {
            Some(n) if (1..1 << 40).contains(&n) => prof::SAMPLE.store(n, Ordering::Relaxed),
            _ => bad(
                c"SLABALLOC_PROF_SAMPLE",
                v,
                "mean bytes between samples, 1 to 2^40",
            ),
        }
    }
    if let Some(b) = flag(c"SLABALLOC_PROF_PEAK") {
        prof::PEAK.store(b, Ordering::Relaxed);
    }
    if let Some(v) = crate::os::getenv(c"SLABALLOC_PROF_SEED") {
        match parse_u64(v) {
            Some(n) => prof::SEED.store(n, Ordering::Relaxed),
            _ => bad(c"SLABALLOC_PROF_SEED", v, "a number"),
        }
    }
    if let Some(v) = crate::os::getenv(c"SLABALLOC_PROF_PREFIX") {
        if !v.is_empty() && v.len() < 400 {
            prof::set_prefix(v);
        } else {
            bad(
                c"SLABALLOC_PROF_PREFIX",
                v,
                "a path prefix of 1 to 399 bytes",
            );
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
}
