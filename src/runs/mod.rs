//! The page-run allocator: runs of whole pages inside arenas, for slabs and for
//! large blocks (16 KiB .. 32 MiB).
//!
//! Free runs are kept in size bins (exact bins up to 64 pages, one bin per
//! doubling above), split on allocation and coalesced with free neighbours on
//! release. Runs are *dirty* (their pages may be resident and hold old data) or
//! *clean* (purged or never touched: they read as zero and cost no RSS). The two
//! are binned separately and only merge with their own kind, so reuse prefers
//! warm dirty memory (no page faults), a calloc from a clean run skips its
//! memset, and purging never has to touch clean memory.
//!
//! Freed runs are not purged at once: a block freed and requested again soon
//! after is served from the dirty bins without a page fault. Dirty runs
//! *decay*: one left unused for `config::DECAY_MS` (`SLABALLOC_DECAY`) is purged with
//! `MADV_DONTNEED` (which lowers RSS at once, unlike `MADV_FREE`), oldest
//! first, by the slow paths here (a clock check on every run allocation and
//! free) and by the reclaimer thread (`reclaim`) when the program has gone
//! quiet. Past the dirty budget (the larger of `SLABALLOC_DIRTY_MAX_MB` and
//! the bytes in large blocks, so a program that turns over large blocks
//! keeps enough of them warm) the oldest are purged at once, down to half the
//! budget: hysteresis, so a workload at the budget's edge does not purge on
//! every free. A request that no free run fits purges only a dirty run that
//! would hold it once merged with its clean neighbours, else maps a new
//! arena; it used to purge every dirty run in the hope that clean neighbours
//! coalesce, which made a program cycling through 5-25 MiB blocks fault in
//! every page of every block.
//!
//! Arenas are *reserved* (`PROT_NONE`, charged to no one) and *committed*
//! (`mprotect`) from the bottom up as runs are carved, past a per-arena
//! watermark kept in the arena's first page: under strict overcommit
//! (`vm.overcommit_memory=2`) a process is charged for the part of each
//! arena it has used, not for 64 MiB, and a commit the kernel refuses is an
//! allocation that fails with ENOMEM instead of a crash on first touch.
//!
//! All of it sits behind one lock, the page lock; zone locks are
//! always taken before it, never after.

use crate::os;
use crate::pagemap::{self, Desc, ARENA_PAGES, META_PAGES};
use crate::sync::{Busy, OwnerLock};
use core::cell::UnsafeCell;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};

/// Largest run the arenas serve, in pages; bigger blocks are huge mappings.
pub const MAX_RUN_PAGES: usize = 8192;
/// Pages an arena's commit watermark moves by at least (2 MiB): fewer
/// `mprotect` calls, and the arena stays one or two kernel mappings.
const COMMIT_STEP: usize = 512;
use crate::config::{DECAY_MS, DECAY_NEVER};

/// The commit watermark of the arena at `base`: pages below it are
/// read-write, pages above it still `PROT_NONE`. It lives in the arena's
/// first page (`pagemap::arena_word`). Page lock held to change it.
fn watermark(base: usize) -> &'static AtomicUsize {
    pagemap::arena_word(base)
}

mod state;
use state::{Bins, State};

pub struct Runs {
    lock: OwnerLock,
    state: UnsafeCell<State>,
    /// Runs freed by a signal handler while its thread held the page lock.
    deferred: AtomicPtr<Desc>,
    fork_took: AtomicBool,
    /// Dirty runs are waiting to decay: the next slow path asks for the
    /// reclaimer (`reclaim::after_slow_path`), which this module cannot call.
    pub wants_reclaim: AtomicBool,
    /// Address space of the arenas (reserved).
    pub bytes_mapped: AtomicUsize,
    /// Pages of the arenas below their commit watermarks (metadata included).
    pub committed_pages: AtomicUsize,
    pub purged_bytes: AtomicUsize,
}

// SAFETY: `state` is only accessed with `lock` held.
unsafe impl Sync for Runs {}

pub static RUNS: Runs = Runs {
    lock: OwnerLock::new(),
    deferred: AtomicPtr::new(ptr::null_mut()),
    fork_took: AtomicBool::new(false),
    state: UnsafeCell::new(State {
        dirty: Bins::new(),
        clean: Bins::new(),
        lru_head: ptr::null_mut(),
        lru_tail: ptr::null_mut(),
        dirty_pages: 0,
        free_pages: 0,
    }),
    wants_reclaim: AtomicBool::new(false),
    bytes_mapped: AtomicUsize::new(0),
    committed_pages: AtomicUsize::new(0),
    purged_bytes: AtomicUsize::new(0),
};

/// How a run handed out is entered in the page map (`pagemap::map_slot`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum MapPages {
    /// Every page names the head: a slab, whose chunks `free` finds by
    /// their page (`pagemap::slab_desc_fast`).
    Every,
    /// Only the first and last pages, as a free run's: a large block or a
    /// stash array, only ever looked up by its head (a pointer into one of
    /// its other pages finds a stale entry, which `pagemap::lookup` rejects
    /// as it rejects one into a free run). Writing every page's entry was
    /// three quarters of `State::take`'s time in `midsize` (16 KiB - 1 MiB
    /// blocks: 4-256 pages each).
    Ends,
}

/// A run handed out: its arena, head page and size, and whether it reads as zero.
#[derive(Clone, Copy)]
pub struct Run {
    pub base: usize,
    pub head: usize,
    pub npages: usize,
    pub zeroed: bool,
}

impl Run {
    pub fn addr(&self) -> usize {
        pagemap::page_addr(self.base, self.head)
    }
    pub fn desc(&self) -> *mut Desc {
        pagemap::desc(self.base, self.head)
    }
}

impl Runs {
    /// Pages the arenas hold committed for data: `committed_pages` less
    /// every arena's metadata (`META_PAGES`, committed whole when the arena
    /// is made).
    pub fn committed_data_pages(&self) -> usize {
        self.committed_pages
            .load(Ordering::Relaxed)
            .saturating_sub(pagemap::narenas() * META_PAGES)
    }

    /// Allocates a run of `n` pages whose start is a multiple of `align` pages.
    /// The caller sets the descriptor's kind. Returns None when out of memory or
    /// when the calling thread already holds the page lock (signal re-entry).
    pub fn alloc(&self, n: usize, align: usize, map: MapPages) -> Option<Run> {
        if n == 0 || n > MAX_RUN_PAGES || align == 0 || align > MAX_RUN_PAGES {
            return None;
        }
        if self.lock.lock() == Err(Busy::Reentrant) {
            return None;
        }
        // SAFETY: page lock held.
        let r = unsafe {
            let st = &mut *self.state.get();
            let now = os::now_ms();
            self.drain_deferred(st, now);
            st.enforce(now);
            let mut r = st.take(n, align, map);
            while r.is_none() && st.purge_for_fit(n) {
                r = st.take(n, align, map);
            }
            if r.is_none() && st.grow() {
                r = st.take(n, align, map);
            }
            if r.is_none() && st.dirty_pages >= n {
                // No new arena: dirty and clean runs do not merge, so
                // purging may coalesce a fit (only worth it when the dirty
                // pages could hold the request).
                st.purge_to(0);
                r = st.take(n, align, map);
            }
            r
        };
        self.lock.unlock();
        r
    }

    /// Returns a run to the free bins (dirty), purging if over budget.
    pub fn free(&self, base: usize, head: usize, n: usize) {
        self.file(base, head, n, true);
    }

    /// Frees a run whose pages were moved away (`os::move_pages`): it reads
    /// as zero and costs no resident memory, so it is filed clean.
    pub fn free_clean(&self, base: usize, head: usize, n: usize) {
        self.file(base, head, n, false);
    }

    fn file(&self, base: usize, head: usize, n: usize, dirty: bool) {
        if self.lock.lock() == Err(Busy::Reentrant) {
            // A signal handler interrupted this thread inside the page lock:
            // the bins are mid-edit. Leave the run on the deferred list
            // (its descriptor already holds its size); the next holder files
            // it (as dirty: at worst a clean run is purged once more).
            self.defer(pagemap::desc(base, head));
            return;
        }
        // SAFETY: page lock held; the run is no longer used by anyone.
        let dirty_left = unsafe {
            let st = &mut *self.state.get();
            let now = os::now_ms();
            self.drain_deferred(st, now);
            st.release(base, head, n, dirty, now);
            st.enforce(now);
            st.dirty_pages
        };
        self.lock.unlock();
        if dirty_left > 0 && !self.wants_reclaim.load(Ordering::Relaxed) {
            self.wants_reclaim.store(true, Ordering::Relaxed);
        }
    }

    /// Tries to grow the large block's run at `head` of `n` pages to `want`
    /// pages in place (entered in the page map as `MapPages::Ends`).
    pub fn grow_in_place(&self, base: usize, head: usize, n: usize, want: usize) -> bool {
        if want > MAX_RUN_PAGES || head + want > ARENA_PAGES {
            return false;
        }
        if self.lock.lock() == Err(Busy::Reentrant) {
            return false;
        }
        // SAFETY: page lock held.
        let ok = unsafe {
            let st = &mut *self.state.get();
            let next = head + n;
            let mut ok = false;
            for dirty in [true, false] {
                if let Some(d) = st.free_run_at(base, next, dirty) {
                    let rn = (*d).npages();
                    if n + rn >= want && (dirty || st.commit_to(base, head + want)) {
                        let (since, before) = ((*d).since(), (*d).lru_next());
                        st.unlink(d);
                        if n + rn > want {
                            st.insert_at(base, head + want, n + rn - want, dirty, since, before);
                        }
                        // A large block's run (`MapPages::Ends`): its new
                        // last page names the head.
                        pagemap::map_slot(base, head + want - 1)
                            .store(head as u16, Ordering::Relaxed);
                        let hd = pagemap::desc(base, head);
                        (*hd).set_npages(want);
                        ok = true;
                    }
                    break;
                }
            }
            ok
        };
        self.lock.unlock();
        ok
    }

    /// Purges dirty runs down to `keep` pages. Returns the pages purged.
    pub fn purge(&self, keep: usize) -> usize {
        if self.lock.lock() == Err(Busy::Reentrant) {
            return 0;
        }
        // SAFETY: page lock held.
        let n = unsafe { (*self.state.get()).purge_to(keep) };
        self.lock.unlock();
        n
    }

    /// Applies the decay and budget rules now (the reclaimer's pass).
    /// Returns the dirty pages left.
    pub fn decay(&self) -> usize {
        if self.lock.lock() == Err(Busy::Reentrant) {
            return 0;
        }
        // SAFETY: page lock held.
        let n = unsafe {
            let st = &mut *self.state.get();
            st.enforce(os::now_ms());
            st.dirty_pages
        };
        self.lock.unlock();
        n
    }

    /// When the oldest dirty run is due to be purged (ms, `os::now_ms`),
    /// or None if nothing is dirty or nothing decays.
    pub fn next_decay(&self) -> Option<u64> {
        let decay = DECAY_MS.load(Ordering::Relaxed);
        if decay == DECAY_NEVER || self.lock.lock() == Err(Busy::Reentrant) {
            return None;
        }
        // SAFETY: page lock held; the head is a filed dirty run.
        let t = unsafe {
            let st = &*self.state.get();
            (!st.lru_head.is_null()).then(|| (*st.lru_head).since().saturating_add(decay))
        };
        self.lock.unlock();
        t
    }

    #[cfg(test)]
    pub fn dirty_pages(&self) -> usize {
        self.counts().0
    }

    /// (dirty, free) pages, for statistics.
    pub fn counts(&self) -> (usize, usize) {
        if self.lock.lock() == Err(Busy::Reentrant) {
            return (0, 0);
        }
        // SAFETY: page lock held.
        let n = unsafe {
            let st = &*self.state.get();
            (st.dirty_pages, st.free_pages)
        };
        self.lock.unlock();
        n
    }

    /// Pushes a freed run onto the deferred list (one CAS; the run's head
    /// descriptor is on no other list, its `notify_next` is free to use).
    fn defer(&self, d: *mut Desc) {
        let mut head = self.deferred.load(Ordering::Relaxed);
        loop {
            // SAFETY: d is the head descriptor of a run nobody uses any more.
            unsafe { (*d).set_notify_next(head) };
            match self
                .deferred
                .compare_exchange_weak(head, d, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(h) => head = h,
            }
        }
    }

    /// Files the runs freed while the lock was re-entered. Page lock held.
    unsafe fn drain_deferred(&self, st: &mut State, now: u64) {
        // SAFETY: the caller upholds the contract in `# Safety` above.
        unsafe {
            if self.deferred.load(Ordering::Relaxed).is_null() {
                return;
            }
            // Acquire pairs with the Release push: the links are visible.
            let mut d = self.deferred.swap(ptr::null_mut(), Ordering::Acquire);
            while !d.is_null() {
                let next = (*d).notify_next();
                let (base, head) = pagemap::desc_home(d);
                let n = (*d).npages();
                st.release(base, head, n, true, now);
                d = next;
            }
        }
    }

    pub fn fork_prepare(&self) {
        // A fork from a signal handler that interrupted the page lock's holder
        // cannot take it: remember not to release what we did not take.
        let took = self.lock.lock().is_ok();
        self.fork_took.store(took, Ordering::Relaxed);
    }
    pub fn fork_parent(&self) {
        if self.fork_took.load(Ordering::Relaxed) {
            self.lock.unlock();
        }
    }
    pub fn fork_child(&self) {
        self.lock.reset();
    }
}

#[cfg(test)]
mod tests;
