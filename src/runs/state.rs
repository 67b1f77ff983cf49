//! The page lock's state: the free runs in size bins, dirty and clean
//! apart, and the dirty runs' age order (see the module's header); the
//! operations that keep it (`Runs` takes the lock and calls them).

use super::{watermark, MapPages, Run, COMMIT_STEP, RUNS};
use crate::config::{DECAY_MS, DECAY_NEVER, DIRTY_MAX_PAGES};
use crate::os::{self, PAGE_SIZE};
use crate::pagemap::{self, Desc, ARENA_PAGES, ARENA_SIZE, KIND_FREE, KIND_NONE, META_PAGES};
use core::ptr;
use core::sync::atomic::Ordering;

const EXACT_BINS: usize = 64;
pub(super) const NBINS: usize = EXACT_BINS + 10;

pub(super) struct Bins {
    pub(super) heads: [*mut Desc; NBINS],
    pub(super) nonempty: u128,
}

pub(super) struct State {
    pub(super) dirty: Bins,
    pub(super) clean: Bins,
    /// Oldest dirty run first.
    pub(super) lru_head: *mut Desc,
    pub(super) lru_tail: *mut Desc,
    pub(super) dirty_pages: usize,
    /// Pages in free runs, dirty or clean (committed or not).
    pub(super) free_pages: usize,
}

pub(super) fn bin_of(n: usize) -> usize {
    if n <= EXACT_BINS {
        // (Saturating: a run has pages, and this way the bins' indexing
        // needs no bounds check, nor its panic path.)
        n.saturating_sub(1)
    } else {
        // 65..128 -> 64, 129..256 -> 65, ...
        let b = EXACT_BINS + (usize::BITS - (n - 1).leading_zeros()) as usize - 7;
        b.min(NBINS - 1)
    }
}

impl Bins {
    pub(super) const fn new() -> Self {
        Bins {
            heads: [ptr::null_mut(); NBINS],
            nonempty: 0,
        }
    }

    /// # Safety
    /// `d` is a free-run head descriptor not on any bin; page lock held.
    pub(super) unsafe fn push(&mut self, d: *mut Desc, n: usize) {
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
    pub(super) unsafe fn remove(&mut self, d: *mut Desc, n: usize) {
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
    pub(super) unsafe fn find(&self, n: usize, align: usize) -> Option<(*mut Desc, usize)> {
        // SAFETY: the caller upholds the contract in `# Safety` above.
        unsafe {
            let mut mask = self.nonempty & (!0u128 << bin_of(n));
            while mask != 0 {
                let b = mask.trailing_zeros() as usize;
                mask &= mask - 1;
                // (Only bins below NBINS are ever set in the mask.)
                let Some(&first) = self.heads.get(b) else {
                    break;
                };
                let mut d = first;
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

/// Sets the page map for pages `[head, head+n)` to `head`: all of them, or
/// just the two ends (a free run, a large block, a stash array: `MapPages`).
pub(super) fn map_run(base: usize, head: usize, n: usize, map: MapPages) {
    if map == MapPages::Every {
        for p in head..head + n {
            pagemap::map_slot(base, p).store(head as u16, Ordering::Relaxed);
        }
    } else {
        pagemap::map_slot(base, head).store(head as u16, Ordering::Relaxed);
        // The last page's entry is read only by the release of the run
        // after it (`release`, `map[head - 1]`). A run that ends the
        // arena has none: its entry is not written, so a fresh process
        // does not fault in the page map's last page for it.
        if head + n < ARENA_PAGES {
            pagemap::map_slot(base, head + n - 1).store(head as u16, Ordering::Relaxed);
        }
    }
}

impl State {
    pub(super) fn bins(&mut self, dirty: bool) -> &mut Bins {
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
    pub(super) unsafe fn insert_at(
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
            map_run(base, head, n, MapPages::Ends);
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
    pub(super) unsafe fn insert(
        &mut self,
        base: usize,
        head: usize,
        n: usize,
        dirty: bool,
        now: u64,
    ) {
        // SAFETY: the caller upholds the contract in `# Safety` above.
        unsafe {
            self.insert_at(base, head, n, dirty, now, ptr::null_mut());
        }
    }

    /// Unfiles free run `d` and clears its descriptor. Not inlined: its
    /// callers (seven places in the zones' sweep alone) stay small, and the
    /// code every program runs within its 64 KiB window (`cold_text`).
    /// # Safety
    /// `d` is a filed free-run head; page lock held.
    #[inline(never)]
    pub(super) unsafe fn unlink(&mut self, d: *mut Desc) -> (usize, bool) {
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
    pub(super) unsafe fn free_run_at(
        &self,
        base: usize,
        p: usize,
        dirty: bool,
    ) -> Option<*mut Desc> {
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
    pub(super) unsafe fn release(
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
    pub(super) unsafe fn purge_to(&mut self, keep: usize) -> usize {
        // SAFETY: the caller upholds the contract in `# Safety` above.
        unsafe { self.purge_while(|st, _| st.dirty_pages > keep) }
    }

    /// Purges the dirty runs that became dirty at or before `cutoff` (ms).
    pub(super) unsafe fn purge_older(&mut self, cutoff: u64) -> usize {
        // SAFETY: the caller upholds the contract in `# Safety` above.
        unsafe { self.purge_while(|_, d| (*d).since() <= cutoff) }
    }

    /// Purges dirty runs, oldest first, while `more(self, oldest)` holds.
    pub(super) unsafe fn purge_while(&mut self, more: impl Fn(&State, *mut Desc) -> bool) -> usize {
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
    pub(super) unsafe fn purge_for_fit(&mut self, n: usize) -> bool {
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
    pub(super) unsafe fn enforce(&mut self, now: u64) {
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
    pub(super) unsafe fn commit_to(&mut self, base: usize, end: usize) -> bool {
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
    pub(super) unsafe fn grow(&mut self) -> bool {
        // SAFETY: the caller upholds the contract in `# Safety` above.
        unsafe {
            let base = os::reserve_aligned(ARENA_SIZE, ARENA_SIZE) as usize;
            if base == 0 {
                return false;
            }
            // No transparent huge pages in the arena but where a large
            // block asks for them (`large::alloc_large`): where the system
            // gives them to every mapping, a slab's first page would bring
            // in a whole 2 MiB.
            os::advise_huge(base as *mut u8, ARENA_SIZE, false);
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

    pub(super) unsafe fn take(&mut self, n: usize, align: usize, map: MapPages) -> Option<Run> {
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
            map_run(base, start, n, map);
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
