//! A few freed large blocks kept per zone, for the CPU that freed them.
//!
//! Large blocks (above the size classes) are page runs of the one page-run
//! allocator behind the page lock (`runs`), whose bins hand the run freed
//! last out first, to whichever CPU asks next, and each malloc and free of
//! one made lock-prefixed adds on process-wide counters. Two threads
//! turning over 16-64 KiB buffers paid for both: 330 ns a buffer in
//! `buffers` against snmalloc's 42 (the page lock's contention, the
//! counters' lines moving between the cores), and a buffer freed on one
//! CPU went out next to the other with its lines in the freeing core's
//! cache (in `xmalloc_deep` the producer got the 32 KiB batch array a
//! consumer had just freed in 45-90 % of its requests). Every peer keeps
//! such blocks per thread or per CPU (snmalloc's size classes reach 64 KiB,
//! jemalloc's thread cache 32 KiB, tcmalloc's per-CPU caches 256 KiB).
//!
//! The CPU's large rings (`cache/large.rs`) come first, without a lock;
//! a zone keeps what they refuse, serves what they cannot (aligned
//! requests, a cache that is off), and gives them back on `malloc_trim`
//! (`drain_large_rings`).
//!
//! So a zone keeps up to `SLOTS` freed runs of at most `MAX_PAGES` pages,
//! oldest first: a free of such a block on this zone's CPU files it here
//! (the oldest goes back to the page runs when all slots are taken), and a
//! request on this CPU of its size or up to a quarter less takes it back
//! (the best fit, the newest of those; `large::run_pages` gives runs of 9
//! to 16 pages an even size, so that sizes repeat). Both only *try* the
//! zone lock (never wait for it, never from a signal handler that
//! interrupted its own zone's holder): a busy zone sends the block to the
//! page runs as before. A kept run is marked `KIND_CACHED`, so a second
//! `free` of it is reported as a double free, and neighbours freed to the
//! page runs do not merge with it. Counted in the zone's statistics (the
//! process-wide large-block counters count the page runs' traffic). The
//! reclaimer's sweep of a quiet zone gives its kept runs back when none
//! was taken or filed since the sweep before (`tend`), `malloc_trim` all.

use super::*;
use crate::pagemap::{KIND_CACHED, KIND_LARGE};

/// Runs a zone keeps, and their pages at most (512 KiB; a run that would
/// pass it pushes the oldest out).
pub const SLOTS: usize = 16;
const BUDGET_PAGES: usize = 128;
/// Cache fills between looks at the CPU's large rings
/// (`look_at_large_rings`).
const RING_LOOK: u32 = 1024;
/// Largest run kept, in pages (64 KiB).
pub const MAX_PAGES: usize = 16;
const _: () = assert!(MAX_PAGES <= u8::MAX as usize && MAX_PAGES <= BUDGET_PAGES);
/// Kept-run mallocs and frees per run of the slow-path hooks: those take
/// no slow path, whose hooks (the live view's poll, the reclaimer's start)
/// a program that only turns over kept runs would otherwise never run
/// (here and in the large rings: `large::alloc_from_ring`).
pub const TICK: u64 = 64;

impl Locked {
    /// Takes the smallest kept run of `n` to `n + n / 4` pages (at least
    /// one more) whose first page is a multiple of `align` pages (a power
    /// of two), the newest of those, and hands it out as a large block:
    /// its address. (With exact sizes only, a request met a kept run of its
    /// size too rarely in `buffers`; the block keeps the run's pages, at
    /// most a quarter more than asked, as a size class would.)
    #[inline(always)]
    pub fn take_large(&self, n: usize, align: usize) -> Option<*mut u8> {
        // SAFETY: zone lock held; the first `nbigs` slots hold live kept
        // run heads, ours alone. (Indexes modulo `SLOTS`: no bounds
        // checks, no panic path.)
        unsafe {
            let inner = &mut *self.inner();
            let len = usize::from(inner.nbigs);
            let most = n + (n / 4).max(1);
            let (mut best, mut best_pages) = (SLOTS, most + 1);
            for i in (0..len).rev() {
                let m = usize::from(inner.big_pages[i % SLOTS]);
                if m < n || m >= best_pages {
                    continue;
                }
                let (_, head) = pagemap::desc_home(inner.bigs[i % SLOTS] as *mut Desc);
                if head & align.wrapping_sub(1) != 0 {
                    continue;
                }
                (best, best_pages) = (i, m);
                if m == n {
                    break;
                }
            }
            if best == SLOTS {
                return None;
            }
            let d = inner.remove_big(best);
            // (Its state is 0 already: moved runs are never kept.)
            // Release: pairs with the Acquire in `pagemap::lookup`.
            (*d).set_kind(KIND_LARGE);
            let st = &self.z.stats;
            bump_locked(&st.big_hits);
            sub_locked(&st.big_bytes, best_pages * PAGE_SIZE);
            let (base, head) = pagemap::desc_home(d);
            Some(pagemap::page_addr(base, head) as *mut u8)
        }
    }

    /// Keeps the freed large run `d` (at most `MAX_PAGES`), giving the
    /// oldest kept runs to the page runs while every slot is taken or the
    /// kept runs would pass `BUDGET_PAGES` (the page lock under the zone
    /// lock, the order the locks are always taken in).
    ///
    /// # Safety
    /// `d` is the head of a large run the caller frees, not moved.
    #[inline(always)]
    pub unsafe fn put_large(&self, d: *mut Desc) {
        // SAFETY: zone lock held; the caller upholds the contract, and the
        // first `nbigs` slots hold live kept run heads, ours alone.
        // (Indexes modulo `SLOTS`: no bounds checks, no panic path.)
        unsafe {
            (*d).set_kind(KIND_CACHED);
            let n = (*d).npages();
            let st = &self.z.stats;
            bump_locked(&st.big_kept);
            add_locked(&st.big_bytes, n * PAGE_SIZE);
            let inner = &mut *self.inner();
            // `big_bytes` holds the kept runs' pages (this one's included).
            while inner.nbigs > 0
                && (usize::from(inner.nbigs) == SLOTS
                    || st.big_bytes.load(Ordering::Relaxed) as usize > BUDGET_PAGES * PAGE_SIZE)
            {
                // The slots are whole again before the page lock is taken
                // (a fork from a signal handler here leaves the child
                // consistent slots).
                let old = inner.remove_big(0);
                sub_locked(&st.big_bytes, (*old).npages() * PAGE_SIZE);
                release_cached(old);
            }
            let len = usize::from(inner.nbigs) % SLOTS;
            inner.bigs[len] = d as usize;
            inner.big_pages[len] = n as u8;
            inner.nbigs += 1;
        }
    }

    /// True once in `TICK` of the zone's large mallocs and frees that its
    /// kept runs served: those take no slow path, whose hooks (the live
    /// view's poll, the reclaimer's start) a program that only turns over
    /// kept runs would otherwise never run.
    #[inline(always)]
    pub fn big_tick(&self) -> bool {
        self.big_calls().is_multiple_of(TICK)
    }

    /// Kept-run mallocs and frees so far (a sum of the zone's counters).
    fn big_calls(&self) -> u64 {
        let st = &self.z.stats;
        st.big_hits
            .load(Ordering::Relaxed)
            .wrapping_add(st.big_kept.load(Ordering::Relaxed))
    }

    /// True if no kept run was taken or filed since the last call (the
    /// reclaimer's sweep then gives them back: `tend`). Its own test, not
    /// the zone's small-class one: a zone busy with small blocks would
    /// otherwise keep its runs for good, and one that only turns over
    /// large blocks would lose them on every sweep.
    pub(super) fn bigs_idle_since_last_look(&self) -> bool {
        let n = self.big_calls();
        // SAFETY: zone lock held.
        let inner = unsafe { &mut *self.inner() };
        let idle = inner.big_look == n;
        inner.big_look = n;
        idle
    }

    /// Once in `RING_LOOK` cache fills on this zone's CPU: if no run
    /// entered or left the CPU's large rings since the last look, their
    /// runs go back to the page runs. Only a thread on the rings' CPU can
    /// take runs out of them (the reclaimer's sweep cannot), so a CPU done
    /// with large blocks would otherwise keep them for good (at most
    /// 936 KiB) while it works on small ones.
    #[inline(always)]
    pub(super) fn look_at_large_rings(&self) {
        // SAFETY: zone lock held; short accesses to the zone's fields.
        unsafe {
            let inner = self.inner();
            (*inner).ring_fills = (*inner).ring_fills.wrapping_add(1);
            if (*inner).ring_fills.is_multiple_of(RING_LOOK) {
                self.look_now();
            }
        }
    }

    /// `look_at_large_rings`'s look, out of line (in the hot text all the
    /// same: every program that allocates runs it, and a call into the
    /// cold text maps its 48 KiB: `c-tests/cold_text.c`).
    #[inline(never)]
    fn look_now(&self) {
        // SAFETY: zone lock held; short accesses to the zone's fields.
        unsafe {
            let inner = self.inner();
            if cache::large_moves_here() == (*inner).ring_look {
                drain_large_rings();
            }
            (*inner).ring_look = cache::large_moves_here();
        }
    }

    /// Gives every kept run back to the page runs.
    #[inline(always)]
    pub fn drain_large(&self) {
        // SAFETY: zone lock held; the first `nbigs` slots hold live kept
        // run heads, which leave the slots before they go.
        unsafe {
            let inner = &mut *self.inner();
            while inner.nbigs > 0 {
                inner.nbigs -= 1;
                let d = inner.bigs[usize::from(inner.nbigs) % SLOTS] as *mut Desc;
                sub_locked(&self.z.stats.big_bytes, (*d).npages() * PAGE_SIZE);
                release_cached(d);
            }
        }
    }
}

/// Gives the runs of the large rings of the CPU the caller runs on back
/// to the page runs (`cache/large.rs`; `malloc_trim`, and rings gone idle:
/// `look_at_large_rings`, so in the hot text).
#[inline(never)]
pub fn drain_large_rings() {
    let mut buf = [0usize; cache::CAP_MAX];
    for r in 0..crate::cache_layout::LARGE_RINGS {
        let n = cache::large_take(r, &mut buf);
        for &p in buf.iter().take(n) {
            // SAFETY: a run taken from a large ring is a kept run's first
            // page (its page map entry names its head descriptor), now
            // ours alone and in no slot.
            unsafe { release_cached(pagemap::slab_desc_fast(p)) };
        }
    }
}

impl Inner {
    /// Takes slot `i` (below `nbigs`) out of the kept runs, the later ones
    /// moving down: its run.
    fn remove_big(&mut self, i: usize) -> *mut Desc {
        let len = usize::from(self.nbigs);
        let d = self.bigs[i % SLOTS] as *mut Desc;
        for j in i..len.saturating_sub(1) {
            self.bigs[j % SLOTS] = self.bigs[(j + 1) % SLOTS];
            self.big_pages[j % SLOTS] = self.big_pages[(j + 1) % SLOTS];
        }
        self.nbigs -= 1;
        d
    }
}

/// Gives the kept run `d` to the page runs. The program's free of it was
/// counted when it was kept (the zone's `big_kept`, or a large ring's
/// head); here only the bytes. Its
/// kind stays `KIND_CACHED` until the page runs file it (`release` clears
/// it): a late second free meanwhile is still reported, never taken for a
/// live block.
///
/// # Safety
/// `d` is a kept run that no zone slot holds any more.
#[inline(never)]
unsafe fn release_cached(d: *mut Desc) {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe {
        let (base, head) = pagemap::desc_home(d);
        let n = (*d).npages();
        GLOBAL
            .large_bytes
            .fetch_sub(n * PAGE_SIZE, Ordering::Relaxed);
        RUNS.free(base, head, n);
    }
}
