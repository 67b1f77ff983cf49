//! The counters: per zone, per size class, and process-wide. Reading and
//! printing them is `report`'s (at the top of the crate); this module is
//! what every layer below bumps.
//!
//! Per-CPU counters live in each zone and are updated by the CPU doing the
//! work: under its zone lock with a plain load and store where it holds the
//! lock (allocations, local frees, slab creation), else with a relaxed atomic
//! add on its own zone's line (remote frees, notifications). Readers sum them;
//! a single slot means nothing on its own (a chunk allocated on one CPU and
//! freed on another counts on both). Counting per size class costs the fast
//! path nothing more than counting in total: it indexes a different word.

use crate::size_class::NCLASSES;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

#[derive(Default)]
pub struct ClassStats {
    pub allocs: AtomicU64,
    /// The program's mallocs and local frees of this class that went past
    /// the per-CPU cache (served or taken by the zone under its lock): with
    /// the cache's own pop and push counts and `remote_frees`, the
    /// program's calls (see `class_calls`).
    pub mallocs: AtomicU64,
    pub frees: AtomicU64,
    pub local_frees: AtomicU64,
    pub remote_frees: AtomicU64,
    pub slabs_new: AtomicU64,
    pub slabs_freed: AtomicU64,
}

impl ClassStats {
    const fn new() -> Self {
        ClassStats {
            allocs: AtomicU64::new(0),
            mallocs: AtomicU64::new(0),
            frees: AtomicU64::new(0),
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
    /// Large blocks served from the zone's kept runs (`zone/bigs.rs`),
    /// frees the zone kept, and the bytes it keeps now: the program's
    /// large mallocs and frees are these and `Global`'s, which counts only
    /// the blocks that come from and go back to the page runs.
    pub big_hits: AtomicU64,
    pub big_kept: AtomicU64,
    pub big_bytes: AtomicU64,
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
            big_hits: AtomicU64::new(0),
            big_kept: AtomicU64::new(0),
            big_bytes: AtomicU64::new(0),
        }
    }

    pub fn sum(&self, f: impl Fn(&ClassStats) -> &AtomicU64) -> u64 {
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
    add_locked(c, 1);
}

/// `bump_locked` by `n` (a batch counted once).
#[inline(always)]
pub fn add_locked(c: &AtomicU64, n: usize) {
    c.store(
        c.load(Ordering::Relaxed).wrapping_add(n as u64),
        Ordering::Relaxed,
    );
}

/// `add_locked` of `-n`.
#[inline(always)]
pub fn sub_locked(c: &AtomicU64, n: usize) {
    c.store(
        c.load(Ordering::Relaxed).wrapping_sub(n as u64),
        Ordering::Relaxed,
    );
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
    /// Large blocks taken from and given back to the page runs, and the
    /// bytes of those out of them now: the ones kept for a CPU included
    /// (`ZoneStats::big_*`, `cache::large_totals`).
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
