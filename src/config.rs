//! Run-time options, from `SLABALLOC_*` environment variables.
//!
//! Read once by the library constructor (the environment is not set up yet when
//! ld.so makes its first malloc calls), never on a malloc path. Until then the
//! defaults apply. In set-uid/set-gid programs (`AT_SECURE`) the environment is
//! ignored, as glibc does for its own malloc variables. A malformed value gets
//! one warning line that names the value used instead. Words (`text`,
//! `every`, `on`, ...) are matched without regard to case.

use crate::fmt::{parse_u64, warn};
use core::ffi::CStr;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};

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
/// `SLABALLOC_LIVE=0`: no live-view file for `slabtop` (see `shm`).
pub static LIVE: AtomicBool = AtomicBool::new(true);
/// `SLABALLOC_STARTER=0`: the starter heap serves no malloc after start-up
/// (see `starter`; the blocks it made before the constructor stay valid).
pub static STARTER: AtomicBool = AtomicBool::new(true);
/// `SLABALLOC_HUGEPAGES=0`: no block on transparent huge pages (see
/// `large::HUGE_RUN_MIN`).
pub static HUGEPAGES: AtomicBool = AtomicBool::new(true);
/// `SLABALLOC_STATS_FILE`: where the exit-time report goes (a pattern, see
/// `report::expand_pattern`); a copy of the value, `STATS_FILE_LEN` bytes
/// (0: stderr). Written once by the constructor, before any reader.
struct FilePattern(core::cell::UnsafeCell<[u8; 256]>);
// SAFETY: written only by `load` (the constructor, before main and before
// any thread of the program exists), read at exit.
unsafe impl Sync for FilePattern {}
static STATS_FILE: FilePattern = FilePattern(core::cell::UnsafeCell::new([0; 256]));
static STATS_FILE_LEN: AtomicUsize = AtomicUsize::new(0);
/// `SLABALLOC_BACKGROUND`: `BG_LAZY`, `BG_EAGER` or `BG_NEVER`.
pub static BACKGROUND: AtomicU8 = AtomicU8::new(BG_LAZY);
/// `SLABALLOC_DECAY`: dirty page runs unused this long (ms) are purged
/// (`DECAY_NEVER`: never). Default: a second.
pub static DECAY_MS: AtomicU64 = AtomicU64::new(1000);
/// `DECAY_MS` meaning "never purge by age" (`SLABALLOC_DECAY=off`).
pub const DECAY_NEVER: u64 = u64::MAX;
/// `SLABALLOC_DIRTY_MAX_MB`: dirty pages allowed to wait for reuse before
/// purging starts (the page runs raise it to the bytes in large blocks).
/// Default 32 MiB.
pub static DIRTY_MAX_PAGES: AtomicUsize = AtomicUsize::new(8192);

/// The `SLABALLOC_STATS_FILE` pattern, if one was given.
pub fn stats_file() -> Option<&'static [u8]> {
    let n = STATS_FILE_LEN.load(Ordering::Acquire);
    // SAFETY: the first `n` bytes were written before `n` was published
    // (Release in `load`), and never change afterwards.
    (n > 0).then(|| unsafe { &(&*STATS_FILE.0.get())[..n] })
}

/// Report formats (`SLABALLOC_STATS`, `sa_stats_print`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Format {
    /// One `slaballoc: key=value ...` line, then one line per malloc type.
    Line,
    /// Readable tables.
    Text,
    Json,
}

/// The exit-time report asked for, if any.
pub fn stats_format() -> Option<Format> {
    match STATS.load(Ordering::Relaxed) {
        1 => Some(Format::Line),
        2 => Some(Format::Text),
        3 => Some(Format::Json),
        _ => None,
    }
}

/// `SLABALLOC_DECAY`: seconds (up to three decimals) as milliseconds;
/// `off` or `never`: `DECAY_NEVER`.
fn parse_decay(v: &[u8]) -> Option<u64> {
    if is(v, "off") || is(v, "never") {
        return Some(DECAY_NEVER);
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
        .filter(|&ms| ms < DECAY_NEVER)
}

/// One warning: the value, what was expected, and what is used instead.
#[cold]
#[link_section = ".text_cold"]
fn bad(name: &CStr, v: &[u8], expect: &str, instead: &str) {
    warn(&[
        b"ignoring ",
        name.to_bytes(),
        b"=",
        &v[..v.len().min(64)],
        b" (expected ",
        expect.as_bytes(),
        b"); using ",
        instead.as_bytes(),
    ]);
}

/// `v` equals `word` (lower case), ignoring ASCII case.
fn is(v: &[u8], word: &str) -> bool {
    v.eq_ignore_ascii_case(word.as_bytes())
}

#[link_section = ".text_cold"]
fn flag(name: &CStr, default: &str) -> Option<bool> {
    let v = crate::os::getenv(name)?;
    if ["1", "yes", "on", "true"].iter().any(|w| is(v, w)) {
        Some(true)
    } else if v.is_empty() || ["0", "no", "off", "false"].iter().any(|w| is(v, w)) {
        Some(false)
    } else {
        bad(name, v, "0 or 1", default);
        None
    }
}

/// Every variable we read; any other `SLABALLOC_*` name gets a warning.
const KNOWN: [&[u8]; 15] = [
    b"SLABALLOC_NOTIFY",
    b"SLABALLOC_STATS",
    b"SLABALLOC_STATS_FILE",
    b"SLABALLOC_LIVE",
    b"SLABALLOC_STARTER",
    b"SLABALLOC_HUGEPAGES",
    b"SLABALLOC_BACKGROUND",
    b"SLABALLOC_DECAY",
    b"SLABALLOC_DIRTY_MAX_MB",
    b"SLABALLOC_FAIL_MAP_AFTER",
    b"SLABALLOC_PROF",
    b"SLABALLOC_PROF_SAMPLE",
    b"SLABALLOC_PROF_PEAK",
    b"SLABALLOC_PROF_PREFIX",
    b"SLABALLOC_PROF_SEED",
];

/// Calls `f` with the name of each `SLABALLOC_*` variable of the
/// environment, until it returns false.
fn each_ours(mut f: impl FnMut(&[u8]) -> bool) {
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
            if name.starts_with(b"SLABALLOC_") && !f(name) {
                return;
            }
        }
    }
}

/// True if the environment holds a `SLABALLOC_*` variable.
fn any_set() -> bool {
    let mut any = false;
    each_ours(|_| {
        any = true;
        false
    });
    any
}

/// Warns about `SLABALLOC_*` variables we do not know (a typo would otherwise
/// be silently ignored).
fn warn_unknown() {
    each_ours(|name| {
        if !KNOWN.contains(&name) {
            warn(&[b"unknown variable ", name, b" ignored"]);
        }
        true
    });
}

/// Reads the environment. Called from the library constructor: the parse
/// (`parse`, in `.text_cold`) runs only where a `SLABALLOC_*` variable is
/// set, so that a process with the defaults maps none of its code.
pub fn load() {
    if crate::os::getauxval(libc::AT_SECURE) != 0 {
        LIVE.store(false, Ordering::Relaxed);
        return;
    }
    if any_set() {
        parse();
    }
}

#[cold]
#[inline(never)]
#[link_section = ".text_cold"]
fn parse() {
    warn_unknown();
    if let Some(v) = crate::os::getenv(c"SLABALLOC_NOTIFY") {
        if is(v, "every") {
            NOTIFY_EVERY.store(true, Ordering::Relaxed);
        } else if v.is_empty() || is(v, "detach") {
            NOTIFY_EVERY.store(false, Ordering::Relaxed);
        } else {
            bad(c"SLABALLOC_NOTIFY", v, "detach or every", "detach");
        }
    }
    if let Some(v) = crate::os::getenv(c"SLABALLOC_STATS") {
        let f = [("0", 0), ("1", 1), ("line", 1), ("text", 2), ("json", 3)]
            .iter()
            .find(|(w, _)| is(v, w))
            .map(|&(_, f)| f);
        match f {
            Some(f) => STATS.store(f, Ordering::Relaxed),
            None if v.is_empty() => {}
            None => bad(c"SLABALLOC_STATS", v, "0, 1, text or json", "0 (no report)"),
        }
    }
    if let Some(v) = crate::os::getenv(c"SLABALLOC_STATS_FILE") {
        if v.is_empty() {
        } else if v.len() > 255 || v.contains(&0) {
            bad(
                c"SLABALLOC_STATS_FILE",
                v,
                "a path of at most 255 bytes",
                "stderr",
            );
        } else {
            // SAFETY: the constructor runs before any reader (see
            // `STATS_FILE`); `v` fits.
            unsafe { (&mut *STATS_FILE.0.get())[..v.len()].copy_from_slice(v) };
            STATS_FILE_LEN.store(v.len(), Ordering::Release);
            // A destination without a format: the readable one.
            if STATS.load(Ordering::Relaxed) == 0 && crate::os::getenv(c"SLABALLOC_STATS").is_none()
            {
                STATS.store(2, Ordering::Relaxed);
            }
        }
    }
    if let Some(b) = flag(
        c"SLABALLOC_BACKGROUND",
        "the default (a thread started when there is memory to give back)",
    ) {
        BACKGROUND.store(if b { BG_EAGER } else { BG_NEVER }, Ordering::Relaxed);
    }
    if let Some(v) = crate::os::getenv(c"SLABALLOC_DECAY") {
        match parse_decay(v) {
            Some(ms) => DECAY_MS.store(ms, Ordering::Relaxed),
            None => bad(
                c"SLABALLOC_DECAY",
                v,
                "seconds, such as 1 or 0.5, or off",
                "1",
            ),
        }
    }
    if let Some(b) = flag(c"SLABALLOC_LIVE", "1") {
        LIVE.store(b, Ordering::Relaxed);
    }
    if let Some(b) = flag(c"SLABALLOC_STARTER", "1") {
        STARTER.store(b, Ordering::Relaxed);
    }
    if let Some(b) = flag(c"SLABALLOC_HUGEPAGES", "1") {
        HUGEPAGES.store(b, Ordering::Relaxed);
    }
    if let Some(v) = crate::os::getenv(c"SLABALLOC_DIRTY_MAX_MB") {
        match parse_u64(v) {
            Some(mb) if mb <= 1 << 20 => {
                DIRTY_MAX_PAGES.store((mb as usize) << 8, Ordering::Relaxed)
            }
            _ => bad(
                c"SLABALLOC_DIRTY_MAX_MB",
                v,
                "a number of MiB up to 1048576",
                "32",
            ),
        }
    }
    if let Some(v) = crate::os::getenv(c"SLABALLOC_FAIL_MAP_AFTER") {
        match parse_u64(v) {
            Some(n) if n < i64::MAX as u64 => crate::os::fail_maps_after(n as i64),
            _ => bad(
                c"SLABALLOC_FAIL_MAP_AFTER",
                v,
                "a count",
                "no fault injection",
            ),
        }
    }
    load_prof();
}

/// The heap profiler's variables (`prof` reads them at start-up).
fn load_prof() {
    if let Some(b) = flag(c"SLABALLOC_PROF", "off") {
        PROF.store(b, Ordering::Relaxed);
    }
    if let Some(v) = crate::os::getenv(c"SLABALLOC_PROF_SAMPLE") {
        match parse_u64(v) {
            Some(n) if (1..1 << 40).contains(&n) => PROF_SAMPLE.store(n, Ordering::Relaxed),
            _ => bad(
                c"SLABALLOC_PROF_SAMPLE",
                v,
                "mean bytes between samples, 1 to 2^40",
                "524288",
            ),
        }
    }
    if let Some(b) = flag(c"SLABALLOC_PROF_PEAK", "off") {
        PROF_PEAK.store(b, Ordering::Relaxed);
    }
    if let Some(v) = crate::os::getenv(c"SLABALLOC_PROF_SEED") {
        match parse_u64(v) {
            Some(n) => PROF_SEED.store(n, Ordering::Relaxed),
            _ => bad(c"SLABALLOC_PROF_SEED", v, "a number", "a random seed"),
        }
    }
    if let Some(v) = crate::os::getenv(c"SLABALLOC_PROF_PREFIX") {
        if !v.is_empty() && v.len() < 400 {
            PROF_PREFIX.store(v.as_ptr() as usize, Ordering::Relaxed);
            PROF_PREFIX_LEN.store(v.len(), Ordering::Release);
        } else {
            bad(
                c"SLABALLOC_PROF_PREFIX",
                v,
                "a path prefix of 1 to 399 bytes",
                "slaballoc",
            );
        }
    }
}

/// `SLABALLOC_PROF=1`: sampled heap profiling (`prof`).
pub static PROF: AtomicBool = AtomicBool::new(false);
/// `SLABALLOC_PROF_SAMPLE`: mean bytes between samples (tcmalloc's and
/// jemalloc's default, 512 KiB).
pub static PROF_SAMPLE: AtomicU64 = AtomicU64::new(512 * 1024);
/// `SLABALLOC_PROF_PEAK=1`: a profile at each new peak.
pub static PROF_PEAK: AtomicBool = AtomicBool::new(false);
/// `SLABALLOC_PROF_SEED`: the sampler's seed; 0, random.
pub static PROF_SEED: AtomicU64 = AtomicU64::new(0);
/// `SLABALLOC_PROF_PREFIX`: where the environment string lives (it outlives
/// us: we only read it).
static PROF_PREFIX: AtomicUsize = AtomicUsize::new(0);
static PROF_PREFIX_LEN: AtomicUsize = AtomicUsize::new(0);

/// The profiles' file prefix: `SLABALLOC_PROF_PREFIX`, or `slaballoc`.
pub fn prof_prefix() -> &'static [u8] {
    let n = PROF_PREFIX_LEN.load(Ordering::Acquire);
    if n == 0 {
        return b"slaballoc";
    }
    // SAFETY: the pointer and length of an environment string, published
    // (Release) after the pointer; the environment is not changed by us and
    // outlives the process's use of it (as `getenv`'s result).
    unsafe { core::slice::from_raw_parts(PROF_PREFIX.load(Ordering::Relaxed) as *const u8, n) }
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
    fn words_ignore_case() {
        assert!(is(b"JSON", "json") && is(b"Every", "every") && !is(b"jsonx", "json"));
    }

    #[test]
    fn decay_values() {
        assert_eq!(parse_decay(b"0"), Some(0));
        assert_eq!(parse_decay(b"10"), Some(10_000));
        assert_eq!(parse_decay(b"0.5"), Some(500));
        assert_eq!(parse_decay(b"1.25"), Some(1250));
        assert_eq!(parse_decay(b"2.125"), Some(2125));
        assert_eq!(parse_decay(b"off"), Some(DECAY_NEVER));
        assert_eq!(parse_decay(b"never"), Some(DECAY_NEVER));
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
