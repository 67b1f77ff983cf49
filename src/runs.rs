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

use crate::os::{self, PAGE_SIZE};
use crate::pagemap::{self, Desc, ARENA_PAGES, ARENA_SIZE, KIND_FREE, KIND_NONE, META_PAGES};
use crate::sync::{Busy, OwnerLock};
use core::cell::UnsafeCell;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};

const EXACT_BINS: usize = 64;
const NBINS: usize = EXACT_BINS + 10;
/// Largest run the arenas serve, in pages; bigger blocks are huge mappings.
pub const MAX_RUN_PAGES: usize = 8192;
/// Pages an arena's commit watermark moves by at least (2 MiB): fewer
/// `mprotect` calls, and the arena stays one or two kernel mappings.
const COMMIT_STEP: usize = 512;
use crate::config::{DECAY_MS, DECAY_NEVER, DIRTY_MAX_PAGES};

/// The commit watermark of the arena at `base`: pages below it are
/// read-write, pages above it still `PROT_NONE`. It lives in the arena's
/// first page (`pagemap::arena_word`). Page lock held to change it.
fn watermark(base: usize) -> &'static AtomicUsize {
    pagemap::arena_word(base)
}

struct Bins {
    heads: [*mut Desc; NBINS],
    nonempty: u128,
}

struct State {
    dirty: Bins,
    clean: Bins,
    /// Oldest dirty run first.
    lru_head: *mut Desc,
    lru_tail: *mut Desc,
    dirty_pages: usize,
    /// Pages in free runs, dirty or clean (committed or not).
    free_pages: usize,
}

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

fn bin_of(n: usize) -> usize {
    if n <= EXACT_BINS {
        n - 1
    } else {
        // 65..128 -> 64, 129..256 -> 65, ...
        let b = EXACT_BINS + (usize::BITS - (n - 1).leading_zeros()) as usize - 7;
        b.min(NBINS - 1)
    }
}

impl Bins {
    const fn new() -> Self {
        Bins {
            heads: [ptr::null_mut(); NBINS],
            nonempty: 0,
        }
    }

    /// # Safety
    /// `d` is a free-run head descriptor not on any bin; page lock held.
    unsafe fn push(&mut self, d: *mut Desc, n: usize) {
        // SAFETY: the caller upholds the contract in `# Safety` above.
        unsafe {
            let b = bin_of(n);
            let h = self.heads[b];
            (*d).set_prev(ptr::null_mut());
            (*d).set_next(h);
            if !h.is_null() {
                (*h).set_prev(d);
            }
            self.heads[b] = d;
            self.nonempty |= 1u128 << b;
        }
    }

    /// # Safety
    /// `d` is on bin `bin_of(n)`; page lock held.
    unsafe fn remove(&mut self, d: *mut Desc, n: usize) {
        // SAFETY: the caller upholds the contract in `# Safety` above.
        unsafe {
            let b = bin_of(n);
            let (p, nx) = ((*d).prev(), (*d).next());
            if p.is_null() {
                self.heads[b] = nx;
            } else {
                (*p).set_next(nx);
            }
            if !nx.is_null() {
                (*nx).set_prev(p);
            }
            if self.heads[b].is_null() {
                self.nonempty &= !(1u128 << b);
            }
        }
    }

    /// Finds a run that holds `n` pages at page alignment `align`.
    /// # Safety
    /// Page lock held.
    unsafe fn find(&self, n: usize, align: usize) -> Option<(*mut Desc, usize)> {
        // SAFETY: the caller upholds the contract in `# Safety` above.
        unsafe {
            let mut mask = self.nonempty & (!0u128 << bin_of(n));
            while mask != 0 {
                let b = mask.trailing_zeros() as usize;
                mask &= mask - 1;
                let mut d = self.heads[b];
                while !d.is_null() {
                    let size = (*d).npages();
                    let (_, head) = pagemap::desc_home(d);
                    let start = head.next_multiple_of(align);
                    if start + n <= head + size {
                        return Some((d, start));
                    }
                    d = (*d).next();
                }
            }
            None
        }
    }
}

/// Sets the page map for pages `[head, head+n)` to `head` (all of them, or just
/// the two ends for a free run).
fn map_run(base: usize, head: usize, n: usize, all: bool) {
    if all {
        for p in head..head + n {
            pagemap::map_slot(base, p).store(head as u16, Ordering::Relaxed);
        }
    } else {
        pagemap::map_slot(base, head).store(head as u16, Ordering::Relaxed);
        pagemap::map_slot(base, head + n - 1).store(head as u16, Ordering::Relaxed);
    }
}

impl State {
    fn bins(&mut self, dirty: bool) -> &mut Bins {
        if dirty {
            &mut self.dirty
        } else {
            &mut self.clean
        }
    }

    /// Makes `[head, head+n)` a free run and files it, with no coalescing:
    /// a dirty one on the age list just before `before` (null: at the
    /// end, the newest), dirty since `since`. The list stays in order of
    /// `since` as long as callers insert at the end with the current time,
    /// or where the run they split was with its time.
    /// # Safety
    /// The pages are ours and hold no live block; page lock held; `before`
    /// is null or on the age list.
    unsafe fn insert_at(
        &mut self,
        base: usize,
        head: usize,
        n: usize,
        dirty: bool,
        since: u64,
        before: *mut Desc,
    ) {
        // SAFETY: the caller upholds the contract in `# Safety` above.
        unsafe {
            let d = pagemap::desc(base, head);
            (*d).set_npages(n);
            (*d).set_state(dirty as u8);
            (*d).set_kind(KIND_FREE);
            map_run(base, head, n, false);
            self.bins(dirty).push(d, n);
            self.free_pages += n;
            if dirty {
                (*d).set_since(since);
                let prev = if before.is_null() {
                    self.lru_tail
                } else {
                    (*before).lru_prev()
                };
                (*d).set_lru_next(before);
                (*d).set_lru_prev(prev);
                if prev.is_null() {
                    self.lru_head = d;
                } else {
                    (*prev).set_lru_next(d);
                }
                if before.is_null() {
                    self.lru_tail = d;
                } else {
                    (*before).set_lru_prev(d);
                }
                self.dirty_pages += n;
            }
        }
    }

    /// `insert_at` as the newest run (clean runs have no place in age).
    /// # Safety
    /// As `insert_at`.
    unsafe fn insert(&mut self, base: usize, head: usize, n: usize, dirty: bool, now: u64) {
        // SAFETY: the caller upholds the contract in `# Safety` above.
        unsafe {
            self.insert_at(base, head, n, dirty, now, ptr::null_mut());
        }
    }

    /// Unfiles free run `d` and clears its descriptor.
    /// # Safety
    /// `d` is a filed free-run head; page lock held.
    unsafe fn unlink(&mut self, d: *mut Desc) -> (usize, bool) {
        // SAFETY: the caller upholds the contract in `# Safety` above.
        unsafe {
            let n = (*d).npages();
            let dirty = (*d).state() != 0;
            self.bins(dirty).remove(d, n);
            if dirty {
                let (p, nx) = ((*d).lru_prev(), (*d).lru_next());
                if p.is_null() {
                    self.lru_head = nx;
                } else {
                    (*p).set_lru_next(nx);
                }
                if nx.is_null() {
                    self.lru_tail = p;
                } else {
                    (*nx).set_lru_prev(p);
                }
                self.dirty_pages -= n;
            }
            self.free_pages -= n;
            (*d).set_kind(KIND_NONE);
            (n, dirty)
        }
    }

    /// The free run of the same dirtiness that starts at page `p`, if any.
    unsafe fn free_run_at(&self, base: usize, p: usize, dirty: bool) -> Option<*mut Desc> {
        // SAFETY: the caller upholds the contract in `# Safety` above.
        unsafe {
            if !(META_PAGES..ARENA_PAGES).contains(&p) {
                return None;
            }
            let d = pagemap::desc(base, p);
            ((*d).kind() == KIND_FREE && ((*d).state() != 0) == dirty).then_some(d)
        }
    }

    /// Returns pages to the free bins, merging with free neighbours of the same kind.
    /// # Safety
    /// The pages are ours and hold no live block; page lock held.
    unsafe fn release(
        &mut self,
        base: usize,
        mut head: usize,
        mut n: usize,
        dirty: bool,
        now: u64,
    ) {
        // SAFETY: the caller upholds the contract in `# Safety` above.
        unsafe {
            // The run stops being a slab or a large block now: if it merges into
            // a left neighbour, its descriptor must not go on saying so (a second
            // free of it would otherwise pass as a large block).
            (*pagemap::desc(base, head)).set_kind(KIND_NONE);
            if head > META_PAGES {
                let left = pagemap::map_slot(base, head - 1).load(Ordering::Relaxed) as usize;
                if let Some(d) = self.free_run_at(base, left, dirty) {
                    let ln = (*d).npages();
                    if left + ln == head {
                        self.unlink(d);
                        head = left;
                        n += ln;
                    }
                }
            }
            if let Some(d) = self.free_run_at(base, head + n, dirty) {
                let (rn, _) = self.unlink(d);
                n += rn;
            }
            self.insert(base, head, n, dirty, now);
        }
    }

    /// Purges the oldest dirty runs until at most `keep` dirty pages remain.
    unsafe fn purge_to(&mut self, keep: usize) -> usize {
        // SAFETY: the caller upholds the contract in `# Safety` above.
        unsafe { self.purge_while(|st, _| st.dirty_pages > keep) }
    }

    /// Purges the dirty runs that became dirty at or before `cutoff` (ms).
    unsafe fn purge_older(&mut self, cutoff: u64) -> usize {
        // SAFETY: the caller upholds the contract in `# Safety` above.
        unsafe { self.purge_while(|_, d| (*d).since() <= cutoff) }
    }

    /// Purges dirty runs, oldest first, while `more(self, oldest)` holds.
    unsafe fn purge_while(&mut self, more: impl Fn(&State, *mut Desc) -> bool) -> usize {
        // SAFETY: the caller upholds the contract in `# Safety` above.
        unsafe {
            let mut purged = 0;
            while !self.lru_head.is_null() && more(self, self.lru_head) {
                let d = self.lru_head;
                let (base, head) = pagemap::desc_home(d);
                let (n, _) = self.unlink(d);
                os::purge(pagemap::page_addr(base, head) as *mut u8, n * PAGE_SIZE);
                purged += n;
                self.release(base, head, n, false, 0);
            }
            if purged > 0 {
                RUNS.purged_bytes
                    .fetch_add(purged * PAGE_SIZE, Ordering::Relaxed);
            }
            purged
        }
    }

    /// When no free run fits `n` pages: purges the oldest dirty run that,
    /// merged with its clean neighbours, would hold them, so that the
    /// request reuses this arena's space rather than reserving a new arena
    /// (address space that `RLIMIT_AS` counts and that is never given
    /// back). Dirty runs of the same kind are merged already; a chain of
    /// several is not looked for. Returns false if no dirty run qualifies.
    unsafe fn purge_for_fit(&mut self, n: usize) -> bool {
        // SAFETY: the caller upholds the contract in `# Safety` above.
        unsafe {
            let npages = |d: *mut Desc| (*d).npages();
            let mut d = self.lru_head;
            while !d.is_null() {
                let (base, head) = pagemap::desc_home(d);
                let size = npages(d);
                let mut total = size;
                if head > META_PAGES {
                    let left = pagemap::map_slot(base, head - 1).load(Ordering::Relaxed) as usize;
                    if let Some(l) = self.free_run_at(base, left, false) {
                        if left + npages(l) == head {
                            total += npages(l);
                        }
                    }
                }
                if let Some(r) = self.free_run_at(base, head + size, false) {
                    total += npages(r);
                }
                if total >= n && total > size {
                    self.unlink(d);
                    os::purge(pagemap::page_addr(base, head) as *mut u8, size * PAGE_SIZE);
                    RUNS.purged_bytes
                        .fetch_add(size * PAGE_SIZE, Ordering::Relaxed);
                    self.release(base, head, size, false, 0);
                    return true;
                }
                d = (*d).lru_next();
            }
            false
        }
    }

    /// The decay and budget rules, after the dirty pages grew or time
    /// passed: purges what stayed unused for `decay` ms, then what exceeds
    /// the budget (down to half of it).
    unsafe fn enforce(&mut self, now: u64) {
        // SAFETY: the caller upholds the contract in `# Safety` above.
        unsafe {
            let decay = DECAY_MS.load(Ordering::Relaxed);
            if decay == 0 {
                self.purge_to(0);
                return;
            }
            if decay != DECAY_NEVER
                && !self.lru_head.is_null()
                && (*self.lru_head).since().saturating_add(decay) <= now
            {
                self.purge_older(now - decay);
            }
            // Large blocks in use: a program that turns them over needs about
            // as many warm pages as it holds to reuse them without faults.
            let large = crate::stats::GLOBAL.large_bytes.load(Ordering::Relaxed) / PAGE_SIZE;
            let budget = DIRTY_MAX_PAGES.load(Ordering::Relaxed).max(large);
            if self.dirty_pages > budget {
                self.purge_to(budget / 2);
            }
        }
    }

    /// Commits the pages of the arena at `base` up to page `end` (a run
    /// about to be handed out ends there). False if the kernel refuses.
    unsafe fn commit_to(&mut self, base: usize, end: usize) -> bool {
        let wm = watermark(base);
        let cur = wm.load(Ordering::Relaxed);
        if end <= cur {
            return true;
        }
        // Past the step when the kernel allows it; else just what is needed.
        for to in [(end.next_multiple_of(COMMIT_STEP)).min(ARENA_PAGES), end] {
            if os::commit(
                pagemap::page_addr(base, cur) as *mut u8,
                (to - cur) * PAGE_SIZE,
            ) {
                wm.store(to, Ordering::Relaxed);
                RUNS.committed_pages.fetch_add(to - cur, Ordering::Relaxed);
                return true;
            }
        }
        false
    }

    /// Reserves and registers a new arena, commits its metadata, and files
    /// its pages as one clean run (committed as it is carved: `commit_to`).
    unsafe fn grow(&mut self) -> bool {
        // SAFETY: the caller upholds the contract in `# Safety` above.
        unsafe {
            let base = os::reserve_aligned(ARENA_SIZE, ARENA_SIZE) as usize;
            if base == 0 {
                return false;
            }
            if !os::commit(base as *mut u8, META_PAGES * PAGE_SIZE)
                || !pagemap::register_arena(base)
            {
                os::unmap(base as *mut u8, ARENA_SIZE);
                return false;
            }
            watermark(base).store(META_PAGES, Ordering::Relaxed);
            RUNS.committed_pages
                .fetch_add(META_PAGES, Ordering::Relaxed);
            RUNS.bytes_mapped.fetch_add(ARENA_SIZE, Ordering::Relaxed);
            self.insert(base, META_PAGES, ARENA_PAGES - META_PAGES, false, 0);
            true
        }
    }

    unsafe fn take(&mut self, n: usize, align: usize) -> Option<Run> {
        // SAFETY: the caller upholds the contract in `# Safety` above.
        unsafe {
            let (d, start, dirty) = if let Some((d, s)) = self.dirty.find(n, align) {
                (d, s, true)
            } else if let Some((d, s)) = self.clean.find(n, align) {
                (d, s, false)
            } else {
                return None;
            };
            let (base, head) = pagemap::desc_home(d);
            if !dirty && !self.commit_to(base, start + n) {
                return None;
            }
            // The pieces left over keep the run's place in age.
            let (since, before) = ((*d).since(), (*d).lru_next());
            let (size, _) = self.unlink(d);
            if start > head {
                self.insert_at(base, head, start - head, dirty, since, before);
            }
            if start + n < head + size {
                self.insert_at(
                    base,
                    start + n,
                    head + size - start - n,
                    dirty,
                    since,
                    before,
                );
            }
            map_run(base, start, n, true);
            let nd = pagemap::desc(base, start);
            (*nd).set_npages(n);
            Some(Run {
                base,
                head: start,
                npages: n,
                zeroed: !dirty,
            })
        }
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
    pub fn alloc(&self, n: usize, align: usize) -> Option<Run> {
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
            let mut r = st.take(n, align);
            while r.is_none() && st.purge_for_fit(n) {
                r = st.take(n, align);
            }
            if r.is_none() && st.grow() {
                r = st.take(n, align);
            }
            if r.is_none() && st.dirty_pages >= n {
                // No new arena: dirty and clean runs do not merge, so
                // purging may coalesce a fit (only worth it when the dirty
                // pages could hold the request).
                st.purge_to(0);
                r = st.take(n, align);
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

    /// Tries to grow the run at `head` of `n` pages to `want` pages in place.
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
                        for p in next..head + want {
                            pagemap::map_slot(base, p).store(head as u16, Ordering::Relaxed);
                        }
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
mod tests {
    use super::*;

    #[test]
    fn bins() {
        assert_eq!(bin_of(1), 0);
        assert_eq!(bin_of(64), 63);
        assert_eq!(bin_of(65), 64);
        assert_eq!(bin_of(128), 64);
        assert_eq!(bin_of(129), 65);
        assert_eq!(bin_of(MAX_RUN_PAGES), 64 + 6);
        assert!(bin_of(ARENA_PAGES) < NBINS);
    }

    #[test]
    fn runs_split_align_and_coalesce() {
        crate::alloc::ensure_init();
        let a = RUNS.alloc(3, 1).unwrap();
        let b = RUNS.alloc(5, 4).unwrap();
        assert_eq!(b.head % 4, 0);
        assert_eq!(a.npages, 3);
        // Every page of an allocated run maps to its head.
        for p in 0..5 {
            assert_eq!(
                pagemap::map_slot(b.base, b.head + p).load(Ordering::Relaxed) as usize,
                b.head
            );
        }
        // Mark them as large runs so lookups see them, then free and reuse.
        unsafe {
            (*a.desc()).set_kind(pagemap::KIND_LARGE);
        }
        RUNS.free(a.base, a.head, a.npages);
        RUNS.free(b.base, b.head, b.npages);
        let c = RUNS.alloc(3, 1).unwrap();
        assert!(!c.zeroed || c.npages == 3);
        RUNS.free(c.base, c.head, c.npages);
        assert!(RUNS.alloc(MAX_RUN_PAGES + 1, 1).is_none());
        assert!(RUNS.alloc(0, 1).is_none());
    }

    #[test]
    fn purge_returns_memory_and_marks_clean() {
        crate::alloc::ensure_init();
        let r = RUNS.alloc(64, 1).unwrap();
        let p = r.addr() as *mut u8;
        unsafe { core::ptr::write_bytes(p, 0xAB, 64 * PAGE_SIZE) };
        RUNS.free(r.base, r.head, r.npages);
        assert!(RUNS.purge(0) >= 64 || RUNS.dirty_pages() == 0);
        // Other tests run concurrently and may free dirty runs meanwhile: check
        // only what the run says about itself.
        let r2 = RUNS.alloc(64, 1).unwrap();
        if r2.zeroed {
            let s = unsafe { core::slice::from_raw_parts(r2.addr() as *const u8, 64 * PAGE_SIZE) };
            assert!(s.iter().all(|&b| b == 0));
        }
        RUNS.free(r2.base, r2.head, r2.npages);
    }
}
