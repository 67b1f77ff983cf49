//! The large rings: freed large blocks of 20 to 64 KiB kept per CPU, one
//! ring per run size (`cache_layout::LARGE_RING_PAGES`), popped by malloc
//! and pushed by free in the same rseq sections as the classes' stacks.
//!
//! Kept runs behind the zone's lock (`zone/bigs.rs`) took two lock-prefixed
//! instructions a malloc+free, and a lock-prefixed instruction waits for
//! the program's stores still in flight: a 32 KiB pair after four
//! cache-missing stores took 82 ns under the zone's try-lock, 25 ns in
//! the rings, against 23 for snmalloc and 8 for tcmalloc, whose per-CPU
//! caches serve such blocks in rseq sections (`bench/tools/store_drain.c`;
//! docs/experiments.md). A
//! ring holds any run of its size whatever CPU freed it: a large run has
//! no owner, so free pushes onto the ring of the CPU it runs on
//! (`push_here`), as the outbox does. A ring's capacity is 0 until its
//! CPU's first refused push prepares it, then `LARGE_RING_BUDGET` over its
//! run size (at least one). What a ring refuses goes to the zone's kept
//! runs, and from there to the page runs.
//!
//! A kept run is marked `KIND_CACHED` before its push and `KIND_LARGE`
//! after its pop (`large::free_to_ring`, `large::pop_ring`), so a second
//! free of it is reported as a double free. Only a thread on the ring's
//! CPU takes runs out of it: malloc, and `malloc_trim` there
//! (`large_take`, `zone::drain_large_rings`).

use super::{prepare_here, state, CAP_MAX, LARGE_RINGS, LARGE_RING_PAGES};
use crate::cache_layout::{large_slot, slot_offset};

/// Pops a run from large ring `r` of the CPU the caller runs on: the
/// run's address (its first page), or null if the ring is empty or the
/// cache is off; with it the ring's pops so far, by which malloc runs the
/// slow-path hooks once in so many (`zone::KEPT_TICK`).
#[inline(always)]
pub fn large_pop(r: usize) -> (*mut u8, u64) {
    // (`state`: an Acquire load of the CPU count, which `init` stores
    // after the rseq offset.)
    if state().is_none() {
        return (core::ptr::null_mut(), 0);
    }
    // SAFETY: the cache is on, so the root's `off` is the rseq area's;
    // every block has the stack of slot `large_slot(r)`, at that offset.
    unsafe { crate::arch::pop_hot_tail(slot_offset(large_slot(r))) }
}

/// Pushes the freed run at `p` (`LARGE_RING_PAGES[r]` pages, marked
/// `KIND_CACHED`) onto large ring `r` of the CPU the caller runs on: the
/// ring's pushes so far, or 0 if it is full or the cache is off. A ring
/// has no room until its CPU's first refused push prepares it
/// (`prepare_here`): that run goes elsewhere, the next ones in.
#[inline(always)]
pub fn large_push(r: usize, p: *mut u8) -> u64 {
    let Some(k) = state() else {
        return 0;
    };
    let head = k.push_here_head(large_slot(r), p);
    if head == 0 {
        prepare_here(large_slot(r));
    }
    head
}

/// The most runs large ring `r` holds once prepared (the tests).
#[cfg(test)]
pub fn large_capacity(r: usize) -> usize {
    usize::from(super::CAPS[large_slot(r)])
}

/// Runs that entered or left the large rings of the CPU the caller runs
/// on (their tails and heads), or 0: unchanged while nothing moved there.
/// Out of line, in the hot text (`zone::Locked::look_now`).
#[inline(never)]
pub fn large_moves_here() -> u64 {
    let Some(k) = state() else {
        return 0;
    };
    match crate::cpu::rseq_id(k.off) {
        Some(cpu) if cpu < k.n as usize => {
            (0..LARGE_RINGS).fold(0u64, |m, r| m.wrapping_add(k.moves(cpu, large_slot(r))))
        }
        _ => 0,
    }
}

/// Takes every run of large ring `r` of the CPU the caller runs on into
/// `buf`; returns how many.
pub fn large_take(r: usize, buf: &mut [usize; CAP_MAX]) -> usize {
    state().map_or(0, |k| k.take_here(large_slot(r), buf))
}

/// The large rings of all CPUs, for the statistics (racy reads).
#[derive(Default, Clone, Copy)]
pub struct LargeTotals {
    /// Runs malloc took from them.
    pub hits: u64,
    /// Runs free put in them.
    pub kept: u64,
    /// Bytes of the runs they hold now.
    pub bytes: u64,
}

/// Sums the large rings of all CPUs (see `LargeTotals`).
pub fn large_totals() -> LargeTotals {
    let mut t = LargeTotals::default();
    let Some(k) = state() else {
        return t;
    };
    for cpu in 0..k.n as usize {
        for (r, pages) in LARGE_RING_PAGES.iter().enumerate() {
            let slot = large_slot(r);
            let (tail, n, _, _) = k.view(cpu, slot);
            // Malloc's pops: the tail less `large_take`'s. Every push is
            // free's: the head.
            t.hits = t.hits.wrapping_add(k.hits(cpu, slot).0);
            t.kept = t.kept.wrapping_add(tail.wrapping_add(n as u64));
            t.bytes += (n * pages * crate::os::PAGE_SIZE) as u64;
        }
    }
    t
}
