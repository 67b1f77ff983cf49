//! Reports: the counters of `stats` summed over zones and classes into a
//! snapshot (`totals`, `classes`, `cpu`), and printed in three forms, each
//! streamed line by line through a sink, so nothing is allocated and any
//! size fits: the one-line `key=value` form (`SLABALLOC_STATS=1`,
//! `malloc_stats`), readable text (`text.rs`) and JSON (`json.rs`;
//! `sa_stats_print`, `SLABALLOC_STATS=json`, the live view). `process.rs`
//! says which process it is and what memory it holds. The report functions
//! are `#[inline(never)]`: they run once, at exit, but every inlined copy is
//! code that each process maps (see `fmt`: inlined into `sa_stats_print` and
//! `sa_stats_print_cb`, `report` alone was 23 KiB).

use crate::fmt::Buf;
use crate::size_class::{self, NCLASSES};
use crate::stats::GLOBAL;
use core::sync::atomic::{AtomicU64, Ordering};

mod json;
mod process;
mod text;

use json::report_json;
use text::report_text;

pub use process::{parse_u32, pid, program, VERSION};

/// Summed counters of one size class (in C: `struct sa_class_stats`).
#[repr(C)]
#[derive(Default, Debug, Clone, Copy)]
pub struct ClassTotals {
    pub size: u64,
    pub allocs: u64,
    pub frees: u64,
    pub in_use: u64,
    pub slabs: u64,
}

/// Counters of one CPU (zone) (in C: `struct sa_cpu_stats`).
#[repr(C)]
#[derive(Default, Debug, Clone, Copy)]
pub struct CpuTotals {
    pub allocs: u64,
    pub local_frees: u64,
    pub remote_frees: u64,
    pub notifications: u64,
    pub refills: u64,
}

/// A summed snapshot of the process-wide counters: the one struct behind
/// every report, `sa_stats_get` (in C: `struct sa_totals`, the `totals`
/// member of `struct sa_stats`) and `mallinfo2`.
#[repr(C)]
#[derive(Default, Debug, Clone, Copy)]
pub struct Totals {
    pub allocs: u64,
    pub local_frees: u64,
    pub remote_frees: u64,
    pub notifications: u64,
    pub ring_overflows: u64,
    pub msgs_dropped: u64,
    pub msgs_handled: u64,
    pub msgs_stale: u64,
    pub msgs_info: u64,
    pub futex_waits: u64,
    pub futex_wakes: u64,
    pub refills: u64,
    pub detaches: u64,
    pub large_allocs: u64,
    pub large_frees: u64,
    pub huge_allocs: u64,
    pub huge_frees: u64,
    pub slabs_live: u64,
    pub slabs_cached: u64,
    pub bytes_mapped: u64,
    /// Address space held: the arenas (reserved, committed or not) and
    /// huge mappings. The same as `bytes_mapped`, under the name that
    /// sits beside the two below.
    pub bytes_reserved: u64,
    /// Of that, what the kernel has agreed to back (charged under strict
    /// overcommit): the arenas below their commit watermarks, metadata
    /// included, and huge mappings.
    pub bytes_committed: u64,
    /// Of that, an estimate of what is resident: committed, less the free
    /// pages known to read as zero (purged, or never touched). Huge blocks
    /// and committed metadata count whole.
    pub bytes_resident: u64,
    pub bytes_purged: u64,
    pub bytes_dirty: u64,
    /// Bytes handed out: chunks in use times their class size, plus large and
    /// huge blocks (whole pages).
    pub bytes_in_use: u64,
    pub foreign_frees: u64,
    pub zones: u64,
    /// Mallocs served and frees taken by the per-CPU caches (`allocs` and
    /// the `*_frees` count chunks leaving and reaching their slabs).
    pub cache_allocs: u64,
    pub cache_frees: u64,
    /// The program's mallocs and frees (blocks handed out and taken back,
    /// cache hits included; a realloc that moves a block counts one of
    /// each): see `class_calls`.
    pub mallocs: u64,
    pub frees: u64,
    /// Of those, the starter heap's (`starter`: a process's first blocks).
    pub starter_mallocs: u64,
    pub starter_frees: u64,
    /// `SA_NOWAIT` allocations refused at a malloc type's limit.
    pub type_failures: u64,
    /// Bytes of freed large blocks kept for reuse (the CPUs' large rings,
    /// `cache/large.rs`, and the zones' kept runs, `zone/bigs.rs`):
    /// committed, not in use. (Not among `fields`: the
    /// text report's memory lines show it.)
    pub large_kept: u64,
}

/// The program's mallocs and frees of each class, cache hits included.
///
/// Counted where they happen, with no extra work on the fast path: a hit
/// is counted by the cache's own section (`cache::hits`, bumped just
/// before the commit, so a section the kernel restarts after that counts
/// twice: rare, and only ever more); a malloc or local free past the cache
/// by the zone under its lock (`ClassStats::mallocs`, `frees`); a remote
/// free when it reaches its slab (`remote_frees`: from an outbox, or
/// directly); a malloc or free of the starter heap's by it. Frees still
/// waiting in an outbox have no class yet; `totals` adds them.
#[inline(never)]
#[cold]
#[link_section = ".text_cold"]
pub fn class_calls() -> [(u64, u64); NCLASSES] {
    let mut out = [(0u64, 0u64); NCLASSES];
    let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
    for z in crate::zone::ZONES.iter().take(crate::cpu::nzones()) {
        for (o, c) in out.iter_mut().zip(z.stats.class.iter()) {
            o.0 = o.0.wrapping_add(r(&c.mallocs));
            o.1 =
                o.1.wrapping_add(r(&c.frees))
                    .wrapping_add(r(&c.remote_frees));
        }
    }
    for (c, o) in out.iter_mut().enumerate() {
        let (a, f) = crate::cache::hits(c);
        let (sa, sf) = crate::starter::calls(c);
        o.0 = o.0.wrapping_add(a).wrapping_add(sa);
        o.1 = o.1.wrapping_add(f).wrapping_add(sf);
    }
    out
}

/// Per-class totals over every zone.
#[inline(never)]
#[cold]
#[link_section = ".text_cold"]
pub fn classes() -> [ClassTotals; NCLASSES] {
    let mut out = [ClassTotals::default(); NCLASSES];
    let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
    for z in crate::zone::ZONES.iter().take(crate::cpu::nzones()) {
        for (o, c) in out.iter_mut().zip(z.stats.class.iter()) {
            o.allocs = o.allocs.wrapping_add(r(&c.allocs));
            o.frees = o
                .frees
                .wrapping_add(r(&c.local_frees))
                .wrapping_add(r(&c.remote_frees));
            o.slabs = o
                .slabs
                .wrapping_add(r(&c.slabs_new))
                .wrapping_sub(r(&c.slabs_freed));
        }
    }
    for (i, o) in out.iter_mut().enumerate() {
        o.size = size_class::class_size(i) as u64;
        // Counters are read one by one while other threads work: clamp.
        // Chunks in the per-CPU caches and the zones' stashes left their
        // slabs but are free.
        let stashed: u64 = (0..crate::cpu::nzones())
            .map(|z| crate::zone::zone(z).stashed(i))
            .sum();
        o.in_use = o
            .allocs
            .saturating_sub(o.frees)
            .saturating_sub(crate::cache::cached(i))
            .saturating_sub(stashed);
    }
    out
}

/// Totals of zone `i`.
#[inline(never)]
#[cold]
#[link_section = ".text_cold"]
pub fn cpu(i: usize) -> CpuTotals {
    let z = &crate::zone::zone(i).stats;
    let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
    CpuTotals {
        allocs: z.allocs(),
        local_frees: z.sum(|c| &c.local_frees),
        remote_frees: z.sum(|c| &c.remote_frees),
        notifications: r(&z.notifications),
        refills: r(&z.refills),
    }
}

#[inline(never)]
#[cold]
#[link_section = ".text_cold"]
pub fn totals() -> Totals {
    let mut t = Totals::default();
    let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let (mut big_hits, mut big_kept, mut big_bytes) = (0u64, 0u64, 0u64);
    for i in 0..crate::cpu::nzones() {
        let s = &crate::zone::zone(i).stats;
        let c = cpu(i);
        t.allocs += c.allocs;
        t.local_frees += c.local_frees;
        t.remote_frees += c.remote_frees;
        t.notifications += c.notifications;
        t.ring_overflows += r(&s.ring_overflows);
        t.msgs_dropped += r(&s.msgs_dropped);
        t.msgs_handled += r(&s.msgs_handled);
        t.msgs_stale += r(&s.msgs_stale);
        t.msgs_info += r(&s.msgs_info);
        t.futex_wakes += r(&s.futex_wakes);
        t.refills += c.refills;
        t.detaches += r(&s.detaches);
        big_hits += r(&s.big_hits);
        big_kept += r(&s.big_kept);
        big_bytes += r(&s.big_bytes);
    }
    let rings = crate::cache::large_totals();
    big_hits = big_hits.wrapping_add(rings.hits);
    big_kept = big_kept.wrapping_add(rings.kept);
    big_bytes += rings.bytes;
    let g = &GLOBAL;
    // Large blocks: those the page runs handed out and took back, and
    // those kept for a CPU and handed out again (`zone/bigs.rs`,
    // `cache/large.rs`).
    t.large_allocs = r(&g.large_allocs).wrapping_add(big_hits);
    t.large_frees = r(&g.large_frees).wrapping_add(big_kept);
    t.huge_allocs = r(&g.huge_allocs);
    t.huge_frees = r(&g.huge_frees);
    t.futex_waits = r(&g.futex_waits);
    t.foreign_frees = r(&g.foreign_frees);
    t.slabs_live = g.slabs_live.load(Ordering::Relaxed) as u64;
    t.slabs_cached = g.slabs_cached.load(Ordering::Relaxed) as u64;
    let runs = &crate::runs::RUNS;
    let huge = g.huge_bytes.load(Ordering::Relaxed) as u64;
    let page = crate::os::PAGE_SIZE as u64;
    let reserved = runs.bytes_mapped.load(Ordering::Relaxed) as u64;
    let committed = runs.committed_pages.load(Ordering::Relaxed) as u64 * page;
    let (dirty, free) = runs.counts();
    let (dirty, free) = (dirty as u64 * page, free as u64 * page);
    // Free pages that read as zero: clean ones, committed or not; those
    // not committed are not in `committed` either.
    let clean_committed = free
        .saturating_sub(dirty)
        .saturating_sub(reserved - committed.min(reserved));
    t.bytes_mapped = reserved + huge;
    t.bytes_reserved = t.bytes_mapped;
    t.bytes_committed = committed + huge;
    t.bytes_resident = committed.saturating_sub(clean_committed) + huge;
    t.bytes_purged = runs.purged_bytes.load(Ordering::Relaxed) as u64;
    t.bytes_dirty = dirty;
    let small: u64 = classes().iter().map(|c| c.in_use * c.size).sum();
    let (sm, sf, sbytes) = crate::starter::counts();
    t.starter_mallocs = sm;
    t.starter_frees = sf;
    let large = (g.large_bytes.load(Ordering::Relaxed) as u64).saturating_sub(big_bytes);
    t.bytes_in_use = small + sbytes + large + huge;
    t.large_kept = big_bytes;
    t.zones = crate::cpu::nzones() as u64;
    // Freed by the user, not yet back on their slabs' lists.
    t.remote_frees += crate::cache::in_outboxes();
    for c in 0..NCLASSES {
        let (a, f) = crate::cache::hits(c);
        t.cache_allocs = t.cache_allocs.wrapping_add(a);
        t.cache_frees = t.cache_frees.wrapping_add(f);
    }
    let (m, f) = class_calls().iter().fold((0u64, 0u64), |(m, f), c| {
        (m.wrapping_add(c.0), f.wrapping_add(c.1))
    });
    // The starter heap's blocks above the size classes are in no class.
    let (bm, bf) = crate::starter::big_calls();
    t.mallocs = m + t.large_allocs + t.huge_allocs + bm;
    t.frees = f + crate::cache::in_outboxes() + t.large_frees + t.huge_frees + bf;
    crate::types::for_each(|ty| t.type_failures += ty.failures);
    t
}

/// The totals as `(key, value)` pairs, in report order.
pub fn fields(t: &Totals) -> [(&'static str, u64); 35] {
    [
        ("zones", t.zones),
        ("mallocs", t.mallocs),
        ("frees", t.frees),
        ("allocs", t.allocs),
        ("local_frees", t.local_frees),
        ("remote_frees", t.remote_frees),
        ("cache_allocs", t.cache_allocs),
        ("cache_frees", t.cache_frees),
        ("notifications", t.notifications),
        ("ring_overflows", t.ring_overflows),
        ("msgs_handled", t.msgs_handled),
        ("msgs_stale", t.msgs_stale),
        ("msgs_info", t.msgs_info),
        ("msgs_dropped", t.msgs_dropped),
        ("futex_waits", t.futex_waits),
        ("futex_wakes", t.futex_wakes),
        ("refills", t.refills),
        ("detaches", t.detaches),
        ("large_allocs", t.large_allocs),
        ("large_frees", t.large_frees),
        ("huge_allocs", t.huge_allocs),
        ("huge_frees", t.huge_frees),
        ("foreign_frees", t.foreign_frees),
        ("slabs_live", t.slabs_live),
        ("slabs_cached", t.slabs_cached),
        ("bytes_mapped", t.bytes_mapped),
        ("bytes_reserved", t.bytes_reserved),
        ("bytes_committed", t.bytes_committed),
        ("bytes_resident", t.bytes_resident),
        ("bytes_in_use", t.bytes_in_use),
        ("bytes_dirty", t.bytes_dirty),
        ("bytes_purged", t.bytes_purged),
        ("type_failures", t.type_failures),
        ("starter_mallocs", t.starter_mallocs),
        ("starter_frees", t.starter_frees),
    ]
}

/// The one-line `key=value` form printed by `SLABALLOC_STATS=1` and `malloc_stats`.
#[inline(never)]
#[cold]
#[link_section = ".text_cold"]
pub fn line(t: &Totals) -> Buf<1024> {
    let mut b = Buf::<1024>::new();
    b.str("slaballoc:").kv("pid", process::pid() as u64);
    b.str(" program=");
    for &c in process::program() {
        b.raw(&[if c == b' ' || c == b'=' { b'_' } else { c }]);
    }
    b.str(" version=").str(process::VERSION);
    for (k, v) in fields(t) {
        b.kv(k, v);
    }
    b.str("\n");
    b
}

pub use crate::config::Format;

/// Streams a full report to `sink`, a line at a time.
#[inline(never)]
#[cold]
#[link_section = ".text_cold"]
pub fn report(format: Format, sink: &mut dyn FnMut(&[u8])) {
    let t = totals();
    match format {
        Format::Line => {
            crate::types::for_each(|ty| {
                let mut b = Buf::<256>::new();
                b.str("slaballoc: type=");
                b.raw(ty.name);
                b.kv("bytes", ty.bytes as u64)
                    .kv("objects", ty.objects as u64)
                    .kv("limit", ty.limit as u64)
                    .str("\n");
                sink(b.bytes());
            });
            sink(line(&t).bytes());
        }
        Format::Text => report_text(&t, sink),
        Format::Json => report_json(&t, sink),
    }
}

/// `program (pid N), slaballoc V`
fn who<const N: usize>(b: &mut Buf<N>) {
    b.raw(process::program())
        .str(" (pid ")
        .u64(process::pid() as u64)
        .str("), slaballoc ")
        .str(process::VERSION);
}

/// `live * size` over the bytes of the class's slabs, in hundredths of a
/// percent (0 without slabs).
fn utilisation(c: usize, k: &ClassTotals) -> u64 {
    let cap = k.slabs * size_class::SLAB_PAGES[c] as u64 * crate::os::PAGE_SIZE as u64;
    (k.in_use * k.size)
        .saturating_mul(10_000)
        .checked_div(cap)
        .unwrap_or(0)
}

/// Where the exit-time report goes: a duplicate of stderr taken at start-up,
/// because programs such as coreutils close fd 2 in their own exit handlers.
static REPORT_FD: core::sync::atomic::AtomicI32 = core::sync::atomic::AtomicI32::new(2);

/// Keeps a private copy of stderr for the exit-time report.
pub fn keep_stderr() {
    let fd = crate::os::dup_high(2);
    if fd >= 0 {
        REPORT_FD.store(fd, Ordering::Relaxed);
    }
}

/// Prints the one-line report on stderr (`malloc_stats`).
#[cold]
#[link_section = ".text_cold"]
pub fn print() {
    report(Format::Line, &mut |b| crate::os::write_all(2, b));
}

/// Prints the report chosen by `SLABALLOC_STATS` at exit, on the copy of stderr.
/// Prints the report chosen by `SLABALLOC_STATS` at exit: to the file that
/// `SLABALLOC_STATS_FILE` names for this process, else (or if it cannot be
/// created: one warning) on the copy of stderr.
#[cold]
#[link_section = ".text_cold"]
pub fn print_at_exit(format: Format) {
    let mut fd = REPORT_FD.load(Ordering::Relaxed);
    let mut opened = -1;
    if let Some(pattern) = crate::config::stats_file() {
        let mut path = [0u8; 512];
        if process::expand_pattern(pattern, &mut path) {
            // SAFETY: `path` is NUL-terminated.
            opened = unsafe {
                libc::open(
                    path.as_ptr() as *const libc::c_char,
                    libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
                    0o666,
                )
            };
        }
        if opened >= 0 {
            fd = opened;
        } else {
            let n = path.iter().position(|&c| c == 0).unwrap_or(0);
            let mut e = Buf::<24>::new();
            e.u64(crate::os::errno() as u64);
            crate::fmt::warn(&[
                b"cannot create the report file ",
                &path[..n],
                b" (SLABALLOC_STATS_FILE=",
                pattern,
                b", errno ",
                e.bytes(),
                b"); using stderr",
            ]);
        }
    }
    report(format, &mut |b| crate::os::write_all(fd, b));
    if opened >= 0 {
        // SAFETY: our own descriptor.
        unsafe { libc::close(opened) };
    }
}

#[cfg(test)]
mod tests {
    use super::json::json_escape;
    use super::*;

    fn collect(f: Format) -> String {
        let mut v = Vec::new();
        report(f, &mut |b| v.extend_from_slice(b));
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn line_has_the_documented_keys() {
        let b = line(&totals());
        let s = std::str::from_utf8(b.bytes()).unwrap().to_string();
        for k in [
            "allocs=",
            "local_frees=",
            "remote_frees=",
            "cache_allocs=",
            "cache_frees=",
            "notifications=",
            "ring_overflows=",
            "futex_waits=",
            "futex_wakes=",
            "slabs_live=",
            "slabs_cached=",
            "bytes_mapped=",
            "bytes_reserved=",
            "bytes_committed=",
            "bytes_resident=",
            "bytes_purged=",
        ] {
            assert!(s.contains(&format!(" {k}")), "{k} missing in {s}");
        }
        assert!(s.starts_with("slaballoc:") && s.ends_with('\n'));
    }

    #[test]
    fn text_and_json_reports() {
        let p = crate::alloc::malloc(48);
        let text = collect(Format::Text);
        assert!(text.starts_with("slaballoc statistics: "));
        let who = format!(
            "(pid {}), slaballoc {}\n",
            std::process::id(),
            process::VERSION
        );
        assert!(
            text.lines().next().unwrap().ends_with(who.trim_end()),
            "{text}"
        );
        for k in [
            "  resident  ",
            "  committed  ",
            "  reserved  ",
            "  metadata  ",
            "  options  ",
        ] {
            assert!(text.contains(k), "{k} missing in {text}");
        }
        assert!(text
            .contains("  class   size      mallocs        frees         live   slabs   util%\n"));
        assert!(text.contains("remote_frees"));
        let by = crate::cpu::id_kind();
        assert!(["mm_cid", "cpu_id", "thread"].contains(&by));
        assert!(text.contains(&format!("  zones by        {by}\n")));
        let json = collect(Format::Json);
        assert!(json.starts_with("{\"totals\":{\"zones\":"));
        assert!(json.contains(&format!("}},\n\"zones_by\":\"{by}\",\n\"program\":\"")));
        assert!(json.contains("\"classes\":[{\"class\":0,\"size\":16,"));
        assert!(json.trim_end().ends_with("]}"));
        assert!(json.contains(&format!("\"pid\":{},", std::process::id())));
        assert!(json.contains("\"memory\":{\"resident\":"));
        assert!(json.contains(",\"program_mallocs\":"));
        // Balanced braces and brackets (no strings with braces in it here).
        assert_eq!(json.matches('{').count(), json.matches('}').count());
        assert_eq!(json.matches('[').count(), json.matches(']').count());
        crate::alloc::free(p);
    }

    #[test]
    fn escaping() {
        let mut b = Buf::<64>::new();
        json_escape(&mut b, b"a\"b\\c\n");
        assert_eq!(b.bytes(), b"a\\\"b\\\\c\\u000a");
    }
}
