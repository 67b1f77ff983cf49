//! Counters and reports.
//!
//! Per-CPU counters live in each zone and are updated by the CPU doing the
//! work: under its zone lock with a plain load and store where it holds the
//! lock (allocations, local frees, slab creation), else with a relaxed atomic
//! add on its own zone's line (remote frees, notifications). Readers sum them;
//! a single slot means nothing on its own (a chunk allocated on one CPU and
//! freed on another counts on both). Counting per size class costs the fast
//! path nothing more than counting in total: it indexes a different word.
//!
//! Reports: the one-line `key=value` form (`SLABALLOC_STATS=1`, `malloc_stats`),
//! a readable multi-line text form and JSON (`sa_stats_print`,
//! `SLABALLOC_STATS=json`), each streamed line by line through a sink, so
//! nothing is allocated and any size fits. The report functions are
//! `#[inline(never)]`: they run once, at exit, but every inlined copy is code
//! that each process maps (see `fmt`: inlined into `sa_stats_print` and
//! `sa_stats_print_cb`, `report` alone was 23 KiB).

use crate::fmt::Buf;
use crate::size_class::{self, NCLASSES};
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

#[derive(Default)]
pub struct ClassStats {
    pub allocs: AtomicU64,
    pub local_frees: AtomicU64,
    pub remote_frees: AtomicU64,
    pub slabs_new: AtomicU64,
    pub slabs_freed: AtomicU64,
}

impl ClassStats {
    const fn new() -> Self {
        ClassStats {
            allocs: AtomicU64::new(0),
            local_frees: AtomicU64::new(0),
            remote_frees: AtomicU64::new(0),
            slabs_new: AtomicU64::new(0),
            slabs_freed: AtomicU64::new(0),
        }
    }
}

#[repr(C, align(64))]
pub struct ZoneStats {
    pub class: [ClassStats; NCLASSES],
    pub notifications: AtomicU64,
    pub ring_overflows: AtomicU64,
    pub msgs_dropped: AtomicU64,
    pub msgs_handled: AtomicU64,
    pub msgs_stale: AtomicU64,
    pub msgs_info: AtomicU64,
    pub futex_wakes: AtomicU64,
    pub refills: AtomicU64,
    pub detaches: AtomicU64,
}

impl ZoneStats {
    pub const fn new() -> Self {
        ZoneStats {
            class: [const { ClassStats::new() }; NCLASSES],
            notifications: AtomicU64::new(0),
            ring_overflows: AtomicU64::new(0),
            msgs_dropped: AtomicU64::new(0),
            msgs_handled: AtomicU64::new(0),
            msgs_stale: AtomicU64::new(0),
            msgs_info: AtomicU64::new(0),
            futex_wakes: AtomicU64::new(0),
            refills: AtomicU64::new(0),
            detaches: AtomicU64::new(0),
        }
    }

    fn sum(&self, f: impl Fn(&ClassStats) -> &AtomicU64) -> u64 {
        self.class
            .iter()
            .map(|c| f(c).load(Ordering::Relaxed))
            .fold(0u64, u64::wrapping_add)
    }

    pub fn allocs(&self) -> u64 {
        self.sum(|c| &c.allocs)
    }
}

impl Default for ZoneStats {
    fn default() -> Self {
        Self::new()
    }
}

/// Increment of a counter only ever written under a lock that we hold: a plain
/// load and store, no atomic read-modify-write.
#[inline(always)]
pub fn bump_locked(c: &AtomicU64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
}

/// Increment of a counter other threads may update too.
#[inline(always)]
pub fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Process-wide counters.
pub struct Global {
    pub slabs_live: AtomicUsize,
    pub slabs_cached: AtomicUsize,
    pub large_allocs: AtomicU64,
    pub large_frees: AtomicU64,
    pub large_bytes: AtomicUsize,
    pub huge_allocs: AtomicU64,
    pub huge_frees: AtomicU64,
    pub huge_bytes: AtomicUsize,
    pub futex_waits: AtomicU64,
    pub foreign_frees: AtomicU64,
    pub reclaim_passes: AtomicU64,
}

pub static GLOBAL: Global = Global {
    slabs_live: AtomicUsize::new(0),
    slabs_cached: AtomicUsize::new(0),
    large_allocs: AtomicU64::new(0),
    large_frees: AtomicU64::new(0),
    large_bytes: AtomicUsize::new(0),
    huge_allocs: AtomicU64::new(0),
    huge_frees: AtomicU64::new(0),
    huge_bytes: AtomicUsize::new(0),
    futex_waits: AtomicU64::new(0),
    foreign_frees: AtomicU64::new(0),
    reclaim_passes: AtomicU64::new(0),
};

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

/// A summed snapshot.
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
}

/// Per-class totals over every zone.
#[inline(never)]
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
pub fn totals() -> Totals {
    let mut t = Totals::default();
    let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
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
    }
    let g = &GLOBAL;
    t.large_allocs = r(&g.large_allocs);
    t.large_frees = r(&g.large_frees);
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
    t.bytes_in_use = small + g.large_bytes.load(Ordering::Relaxed) as u64 + huge;
    t.zones = crate::cpu::nzones() as u64;
    // Freed by the user, not yet back on their slabs' lists.
    t.remote_frees += crate::cache::in_outboxes();
    for c in 0..NCLASSES {
        let (a, f) = crate::cache::hits(c);
        t.cache_allocs = t.cache_allocs.wrapping_add(a);
        t.cache_frees = t.cache_frees.wrapping_add(f);
    }
    t
}

/// The totals as `(key, value)` pairs, in report order.
pub fn fields(t: &Totals) -> [(&'static str, u64); 30] {
    [
        ("zones", t.zones),
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
    ]
}

/// The one-line `key=value` form printed by `SLABALLOC_STATS=1` and `malloc_stats`.
#[inline(never)]
pub fn line(t: &Totals) -> Buf<1024> {
    let mut b = Buf::<1024>::new();
    b.str("slaballoc:");
    for (k, v) in fields(t) {
        b.kv(k, v);
    }
    b.str("\n");
    b
}

/// Report formats.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Format {
    /// One `slaballoc: key=value ...` line, then one line per malloc type.
    Line,
    /// Readable tables.
    Text,
    Json,
}

/// Streams a full report to `sink`, a line at a time.
#[inline(never)]
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

#[inline(never)]
fn report_text(t: &Totals, sink: &mut dyn FnMut(&[u8])) {
    sink(b"slaballoc statistics\n");
    let mut b = Buf::<64>::new();
    b.str("  zones by        ")
        .str(crate::cpu::id_kind())
        .str("\n");
    sink(b.bytes());
    for (k, v) in fields(t) {
        let mut b = Buf::<96>::new();
        b.str("  ").str(k);
        for _ in k.len()..16 {
            b.str(" ");
        }
        b.u64(v).str("\n");
        sink(b.bytes());
    }
    sink(b"  class   size       allocs        frees       in_use   slabs\n");
    for (i, c) in classes().iter().enumerate() {
        if c.allocs == 0 && c.slabs == 0 {
            continue;
        }
        let mut b = Buf::<128>::new();
        b.str("  ");
        pad(&mut b, i as u64, 5);
        pad(&mut b, c.size, 7);
        pad(&mut b, c.allocs, 13);
        pad(&mut b, c.frees, 13);
        pad(&mut b, c.in_use, 13);
        pad(&mut b, c.slabs, 8);
        b.str("\n");
        sink(b.bytes());
    }
    sink(b"  cpu       allocs  local_frees remote_frees notifications\n");
    for i in 0..crate::cpu::nzones() {
        let c = cpu(i);
        let mut b = Buf::<128>::new();
        b.str("  ");
        pad(&mut b, i as u64, 3);
        pad(&mut b, c.allocs, 13);
        pad(&mut b, c.local_frees, 13);
        pad(&mut b, c.remote_frees, 13);
        pad(&mut b, c.notifications, 14);
        b.str("\n");
        sink(b.bytes());
    }
    let mut header = false;
    crate::types::for_each(|ty| {
        if !header {
            sink(b"  type                          bytes      objects        limit\n");
            header = true;
        }
        let mut b = Buf::<256>::new();
        b.str("  ").raw(ty.name);
        for _ in ty.name.len()..24 {
            b.str(" ");
        }
        pad_i(&mut b, ty.bytes, 13);
        pad_i(&mut b, ty.objects, 13);
        pad(&mut b, ty.limit as u64, 13);
        b.str("\n");
        sink(b.bytes());
    });
}

fn pad<const N: usize>(b: &mut Buf<N>, v: u64, width: usize) {
    let mut t = Buf::<24>::new();
    t.u64(v);
    for _ in t.bytes().len()..width {
        b.str(" ");
    }
    b.raw(t.bytes());
}

fn pad_i<const N: usize>(b: &mut Buf<N>, v: i64, width: usize) {
    let mut t = Buf::<24>::new();
    t.i64(v);
    for _ in t.bytes().len()..width {
        b.str(" ");
    }
    b.raw(t.bytes());
}

#[inline(never)]
fn report_json(t: &Totals, sink: &mut dyn FnMut(&[u8])) {
    sink(b"{\"totals\":{");
    for (i, (k, v)) in fields(t).iter().enumerate() {
        let mut b = Buf::<64>::new();
        if i > 0 {
            b.str(",");
        }
        b.str("\"").str(k).str("\":").u64(*v);
        sink(b.bytes());
    }
    // After "totals", which stays first: readers find the report by its
    // opening `{"totals"`.
    let mut b = Buf::<64>::new();
    b.str("},\n\"zones_by\":\"")
        .str(crate::cpu::id_kind())
        .str("\",\n\"classes\":[");
    sink(b.bytes());
    for (i, c) in classes().iter().enumerate() {
        let mut b = Buf::<160>::new();
        if i > 0 {
            b.str(",\n");
        }
        b.str("{\"class\":")
            .u64(i as u64)
            .str(",\"size\":")
            .u64(c.size)
            .str(",\"allocs\":")
            .u64(c.allocs)
            .str(",\"frees\":")
            .u64(c.frees)
            .str(",\"in_use\":")
            .u64(c.in_use)
            .str(",\"slabs\":")
            .u64(c.slabs)
            .str("}");
        sink(b.bytes());
    }
    sink(b"],\n\"cpus\":[");
    for i in 0..crate::cpu::nzones() {
        let c = cpu(i);
        let mut b = Buf::<160>::new();
        if i > 0 {
            b.str(",\n");
        }
        b.str("{\"cpu\":")
            .u64(i as u64)
            .str(",\"allocs\":")
            .u64(c.allocs)
            .str(",\"local_frees\":")
            .u64(c.local_frees)
            .str(",\"remote_frees\":")
            .u64(c.remote_frees)
            .str(",\"notifications\":")
            .u64(c.notifications)
            .str("}");
        sink(b.bytes());
    }
    sink(b"],\n\"types\":[");
    let mut first = true;
    crate::types::for_each(|ty| {
        let mut b = Buf::<384>::new();
        if !first {
            b.str(",\n");
        }
        first = false;
        b.str("{\"name\":\"");
        json_escape(&mut b, ty.name);
        b.str("\",\"bytes\":")
            .i64(ty.bytes)
            .str(",\"objects\":")
            .i64(ty.objects)
            .str(",\"limit\":")
            .u64(ty.limit as u64)
            .str(",\"failures\":")
            .u64(ty.failures)
            .str("}");
        sink(b.bytes());
    });
    sink(b"]}\n");
}

fn json_escape<const N: usize>(b: &mut Buf<N>, s: &[u8]) {
    for &c in s {
        match c {
            b'"' => b.str("\\\""),
            b'\\' => b.str("\\\\"),
            0..=0x1f => {
                b.str("\\u00");
                b.raw(&[
                    b"0123456789abcdef"[(c >> 4) as usize],
                    b"0123456789abcdef"[(c & 15) as usize],
                ])
            }
            _ => b.raw(&[c]),
        };
    }
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
pub fn print() {
    report(Format::Line, &mut |b| crate::os::write_all(2, b));
}

/// Prints the report chosen by `SLABALLOC_STATS` at exit, on the copy of stderr.
pub fn print_at_exit(format: Format) {
    let fd = REPORT_FD.load(Ordering::Relaxed);
    report(format, &mut |b| crate::os::write_all(fd, b));
}

#[cfg(test)]
mod tests {
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
        assert!(text.starts_with("slaballoc statistics\n"));
        assert!(text.contains("remote_frees"));
        let by = crate::cpu::id_kind();
        assert!(["mm_cid", "cpu_id", "thread"].contains(&by));
        assert!(text.contains(&format!("  zones by        {by}\n")));
        let json = collect(Format::Json);
        assert!(json.starts_with("{\"totals\":{\"zones\":"));
        assert!(json.contains(&format!("}},\n\"zones_by\":\"{by}\",\n\"classes\":[")));
        assert!(json.contains("\"classes\":[{\"class\":0,\"size\":16,"));
        assert!(json.trim_end().ends_with("]}"));
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
