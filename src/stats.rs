//! Counters. Per-CPU ones live in each zone and are updated by the CPU doing
//! the work (under its zone lock where it holds it, else with a relaxed atomic
//! add on its own zone's line); readers sum them. Single slots mean nothing on
//! their own: a chunk allocated on one CPU and freed on another counts on both.

use crate::fmt::Buf;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

#[derive(Default)]
#[repr(C, align(64))]
pub struct ZoneStats {
    pub allocs: AtomicU64,
    pub local_frees: AtomicU64,
    pub remote_frees: AtomicU64,
    pub notifications: AtomicU64,
    pub ring_overflows: AtomicU64,
    pub msgs_dropped: AtomicU64,
    pub msgs_handled: AtomicU64,
    pub msgs_stale: AtomicU64,
    pub futex_wakes: AtomicU64,
    pub refills: AtomicU64,
    pub detaches: AtomicU64,
}

impl ZoneStats {
    pub const fn new() -> Self {
        ZoneStats {
            allocs: AtomicU64::new(0),
            local_frees: AtomicU64::new(0),
            remote_frees: AtomicU64::new(0),
            notifications: AtomicU64::new(0),
            ring_overflows: AtomicU64::new(0),
            msgs_dropped: AtomicU64::new(0),
            msgs_handled: AtomicU64::new(0),
            msgs_stale: AtomicU64::new(0),
            futex_wakes: AtomicU64::new(0),
            refills: AtomicU64::new(0),
            detaches: AtomicU64::new(0),
        }
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
    huge_allocs: AtomicU64::new(0),
    huge_frees: AtomicU64::new(0),
    huge_bytes: AtomicUsize::new(0),
    futex_waits: AtomicU64::new(0),
    foreign_frees: AtomicU64::new(0),
    reclaim_passes: AtomicU64::new(0),
};

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
    pub bytes_purged: u64,
    pub dirty_bytes: u64,
    pub foreign_frees: u64,
    pub zones: u64,
}

pub fn totals() -> Totals {
    let mut t = Totals::default();
    let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
    for z in crate::zone::ZONES.iter().take(crate::cpu::nzones()) {
        let s = &z.stats;
        t.allocs += r(&s.allocs);
        t.local_frees += r(&s.local_frees);
        t.remote_frees += r(&s.remote_frees);
        t.notifications += r(&s.notifications);
        t.ring_overflows += r(&s.ring_overflows);
        t.msgs_dropped += r(&s.msgs_dropped);
        t.msgs_handled += r(&s.msgs_handled);
        t.msgs_stale += r(&s.msgs_stale);
        t.futex_wakes += r(&s.futex_wakes);
        t.refills += r(&s.refills);
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
    t.bytes_mapped =
        (runs.bytes_mapped.load(Ordering::Relaxed) + g.huge_bytes.load(Ordering::Relaxed)) as u64;
    t.bytes_purged = runs.purged_bytes.load(Ordering::Relaxed) as u64;
    t.dirty_bytes = (runs.dirty_pages() * crate::os::PAGE_SIZE) as u64;
    t.zones = crate::cpu::nzones() as u64;
    t
}

/// The one-line `key=value` form printed by `SLABALLOC_STATS=1` and `malloc_stats`.
pub fn line(t: &Totals) -> Buf<1024> {
    let mut b = Buf::<1024>::new();
    b.str("slaballoc:")
        .kv("zones", t.zones)
        .kv("allocs", t.allocs)
        .kv("local_frees", t.local_frees)
        .kv("remote_frees", t.remote_frees)
        .kv("notifications", t.notifications)
        .kv("ring_overflows", t.ring_overflows)
        .kv("msgs_handled", t.msgs_handled)
        .kv("msgs_stale", t.msgs_stale)
        .kv("msgs_dropped", t.msgs_dropped)
        .kv("futex_waits", t.futex_waits)
        .kv("futex_wakes", t.futex_wakes)
        .kv("refills", t.refills)
        .kv("detaches", t.detaches)
        .kv("large_allocs", t.large_allocs)
        .kv("large_frees", t.large_frees)
        .kv("huge_allocs", t.huge_allocs)
        .kv("huge_frees", t.huge_frees)
        .kv("foreign_frees", t.foreign_frees)
        .kv("slabs_live", t.slabs_live)
        .kv("slabs_cached", t.slabs_cached)
        .kv("bytes_mapped", t.bytes_mapped)
        .kv("bytes_dirty", t.dirty_bytes)
        .kv("bytes_purged", t.bytes_purged)
        .str("\n");
    b
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

/// Prints the stats line on stderr.
pub fn print() {
    crate::os::write_all(2, line(&totals()).bytes());
}

/// Prints the stats line at exit, on the copy of stderr.
pub fn print_at_exit() {
    crate::os::write_all(REPORT_FD.load(Ordering::Relaxed), line(&totals()).bytes());
}

#[cfg(test)]
mod tests {
    #[test]
    fn line_has_the_documented_keys() {
        let b = super::line(&super::totals());
        let s = std::str::from_utf8(b.bytes()).unwrap().to_string();
        for k in [
            "allocs=",
            "local_frees=",
            "remote_frees=",
            "notifications=",
            "ring_overflows=",
            "futex_waits=",
            "futex_wakes=",
            "slabs_live=",
            "slabs_cached=",
            "bytes_mapped=",
        ] {
            assert!(s.contains(&format!(" {k}")), "{k} missing in {s}");
        }
        assert!(s.starts_with("slaballoc:") && s.ends_with('\n'));
    }
}
