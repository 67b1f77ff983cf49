//! A zone's slabs over their life: collecting remote chunks, releasing
//! empty slabs, finding the next slab to carve when the current one runs
//! dry (from `waiting`, `partial`, the empty slabs kept whole, or a new one
//! from the page runs), handling the ring's messages, and the periodic
//! sweep.
//! Every method runs with the zone's lock held (`Locked`).

use super::*;

/// New slabs a class must sit out before `new_slab` takes its empty slabs:
/// one was not enough for `sh8_like` (peak RSS 23 -> 27 MiB, the slabs of
/// classes used on and off went back and forth through the page runs).
const QUIET_LOOKS: u8 = 2;

/// New slabs a class must sit out before `new_slab` also drains what this
/// CPU's ring and the zone's stash hold of it back into its slabs, so that
/// they can empty: a program done with one size keeps none of its chunks
/// cached (glibc_simple, one size after the other, kept every size's
/// slabs pinned by a ring's and a stash's worth of chunks: peak RSS 5.7
/// -> 4.7 MiB). Many more looks than `QUIET_LOOKS`, so that classes used
/// on and off are not moved back and forth between slabs and page runs:
/// with 4, sh8_like's peak RSS rose 15 % (24.4 -> 28.1 MiB, 7 runs); with
/// 12, 4.5 %, within its run-to-run spread.
const DRAIN_LOOKS: u8 = 12;

/// `new_slab` gives idle classes' empty slabs back only once the arenas
/// hold this much committed for data, metadata not counted (2 MiB, one of
/// `runs`' commit steps): a program past its first step that moves from
/// one size to the next reuses the pages of the sizes it is done with
/// (glibc_simple's peak RSS 4.6 -> 3.7 MiB). Smaller programs keep their
/// slabs: with no threshold `sh -c` paid 15 more page faults (94 -> 109)
/// for slabs it gave back and then needed again; with 2 MiB, `expr` pays 5
/// (151 -> 156) and `sh -c` none, and shell_procs' time is unchanged (5
/// runs each; 4 MiB until the stacks could grow).
const SHED_MIN_PAGES: usize = (2 << 20) / crate::os::PAGE_SIZE;

/// Bytes of empty slabs a class keeps whole per zone (`release`; at least
/// one slab): 8 slabs of the classes up to 1 KiB, 1 of 16 KiB chunks.
const EMPTY_KEEP_BYTES: usize = 1 << 20;

/// How many empty slabs class `c` keeps whole per zone.
fn empty_keep(c: usize) -> usize {
    let slab = size_class::SLAB_PAGES[c % NCLASSES] as usize * crate::os::PAGE_SIZE;
    (EMPTY_KEEP_BYTES / slab).max(1)
}

impl Locked {
    /// One zone's share of a reclaim pass (`reclaim::pass`): handles its
    /// messages, and if it allocated nothing since the previous look (or
    /// `force`), collects every remote chunk and gives its empty slabs back
    /// to the page runs. Returns whether the zone was idle.
    pub fn tend(&self, force: bool) -> bool {
        self.drain();
        let idle = self.idle_since_last_look();
        if force || idle {
            self.sweep();
            self.release_empties();
        }
        if force || self.bigs_idle_since_last_look() {
            self.drain_large();
        }
        idle
    }

    #[cold]
    pub(super) unsafe fn after_local_free(&self, d: *mut Desc) {
        // SAFETY: the caller upholds the contract in `# Safety` above.
        unsafe {
            let c = (*d).class() % NCLASSES;
            match (*d).state() {
                // Full and detached: if no remote free has seen the detach, take it
                // back; otherwise a message is on its way and will list it.
                ST_DETACHED if slab::try_reattach(d) => {
                    if (*d).used() == 0 {
                        self.release(d);
                    } else {
                        (*d).set_state(ST_PARTIAL);
                        list_push(ptr::addr_of_mut!((*self.cz(c)).partial), d);
                    }
                }
                ST_PARTIAL | ST_WAITING => self.release(d),
                _ => {} // the current slab stays, even when empty
            }
        }
    }

    /// Collects `d`'s remote list into its local free list. Returns the count.
    pub(super) unsafe fn collect(&self, d: *mut Desc) -> usize {
        // SAFETY: the caller upholds the contract in `# Safety` above.
        unsafe {
            let (l, counted) = slab::take_remote_counted(d);
            if l.is_null() {
                return 0;
            }
            (*self.inner()).mixed = super::refill::MIXED_FILLS;
            let corrupt = || -> ! {
                crate::fmt::fatal_pointer(
                    "free",
                    l,
                    "corrupted remote free list (a chunk freed twice?)",
                )
            };
            if (*d).free().is_null() {
                // The common case (the slab ran dry): the remote list becomes
                // the local one whole, and its count comes with it, so no chunk
                // is read here; `alloc` checks each link as it pops it. (The
                // walk read every node the other CPUs had just written: 15 % of
                // xmalloc_like's time.)
                if counted == 0 || counted > (*d).used() as usize {
                    corrupt();
                }
                (*d).set_free(l);
                (*d).set_used((*d).used() - counted as u32);
                return counted;
            }
            let c = (*d).class();
            let carry = slab::batch_cap(size_class::class_size(c));
            match slab::absorb(d, l, size_class::capacity(c), carry) {
                Some(n) if n == counted && n as u32 <= (*d).used() => {
                    (*d).set_used((*d).used() - n as u32);
                    n
                }
                _ => corrupt(),
            }
        }
    }

    /// Takes `d` off whatever list it is on and gives it up: kept whole on
    /// the class's `empty` list while it holds fewer than `empty_keep`, else
    /// returned to the page runs.
    pub(super) unsafe fn release(&self, d: *mut Desc) {
        // SAFETY: the caller upholds the contract in `# Safety` above.
        unsafe {
            let c = (*d).class() % NCLASSES;
            let cz = self.cz(c);
            match (*d).state() {
                ST_PARTIAL => list_remove(ptr::addr_of_mut!((*cz).partial), d),
                ST_WAITING => list_remove(ptr::addr_of_mut!((*cz).waiting), d),
                ST_CUR => (*cz).cur = ptr::null_mut(),
                _ => {}
            }
            // Stale messages naming this slab must not match any more.
            (*d).next_gen();
            if ((*cz).nempty as usize) < empty_keep(c) {
                self.keep_empty(c, d);
            } else {
                destroy(d);
            }
        }
    }

    /// Keeps the empty slab `d` of class `c` (on no list, its generation
    /// moved on) whole: its free list and carve pointer stay, and so do its
    /// open pages, so that its next use hands its chunks out without carving
    /// (writing) every line of its pages again.
    ///
    /// # Safety
    /// `d` is an empty slab of ours, on no list.
    unsafe fn keep_empty(&self, c: usize, d: *mut Desc) {
        // SAFETY: the caller upholds the contract in `# Safety` above.
        unsafe {
            let cz = self.cz(c);
            (*d).set_state(ST_EMPTY);
            list_push(ptr::addr_of_mut!((*cz).empty), d);
            (*cz).nempty += 1;
            GLOBAL.slabs_cached.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Takes the most recently kept empty slab of class `c` off its list
    /// (null: none).
    fn take_empty(&self, c: usize) -> *mut Desc {
        let c = c % NCLASSES;
        let cz = self.cz(c);
        // SAFETY: lock held; the list's members are our empty slabs.
        unsafe {
            let d = (*cz).empty;
            if d.is_null() {
                return d;
            }
            list_remove(ptr::addr_of_mut!((*cz).empty), d);
            (*cz).nempty -= 1;
            GLOBAL.slabs_cached.fetch_sub(1, Ordering::Relaxed);
            d
        }
    }

    /// Reclaims the empty slabs kept whole of every class, and the current slabs
    /// that are empty (reclaimer, malloc_trim).
    pub fn release_empties(&self) {
        self.release_empties_but(NCLASSES, true);
    }

    /// `release_empties` for the classes idle over the last `QUIET_LOOKS`
    /// calls: no malloc or flush reached the zone, and no chunk entered or
    /// left this CPU's stack (all of them for `release_empties`, which
    /// passes `all`); never for `keep`.
    fn release_empties_but(&self, keep: usize, all: bool) {
        for c in (0..NCLASSES).filter(|&c| c != keep) {
            let cz = self.cz(c);
            // SAFETY: lock held; short accesses to this class's fields.
            let untouched = unsafe {
                (*cz).fills == 0
                    && (*cz).cur.is_null()
                    && (*cz).partial.is_null()
                    && (*cz).waiting.is_null()
                    && (*cz).empty.is_null()
            };
            if untouched {
                // No slab, and its stack never refilled, so never prepared
                // and empty: nothing to give back, and no reason to read
                // its stack's header (`expr` read-faulted 12 pages of its
                // cache block here, one per class it never used).
                continue;
            }
            let moves = cache::moves(self.idx, c);
            // SAFETY: lock held; short accesses to this class's fields.
            let (busy, drain) = unsafe {
                let busy = core::mem::take(&mut (*cz).busy) || moves != (*cz).moves;
                (*cz).moves = moves;
                (*cz).quiet = if busy {
                    0
                } else {
                    (*cz).quiet.saturating_add(1)
                };
                ((*cz).quiet < QUIET_LOOKS, (*cz).quiet >= DRAIN_LOOKS)
            };
            if busy && !all {
                continue;
            }
            if !busy {
                self.shrink_ring(c);
            }
            if drain && !all {
                self.drain_class(c);
            }
            // SAFETY: lock held; slabs on our lists are ours.
            unsafe {
                loop {
                    let d = self.take_empty(c);
                    if d.is_null() {
                        break;
                    }
                    destroy(d);
                }
                let s = (*cz).cur;
                if !s.is_null() {
                    self.collect(s);
                    if (*s).used() == 0 {
                        (*cz).cur = ptr::null_mut();
                        (*s).next_gen();
                        destroy(s);
                    }
                }
            }
        }
    }

    /// Gives every chunk of class `c` that the zone's stash and this CPU's
    /// ring hold back to its slab, and the stash's array back to the page
    /// runs (an idle class: see `DRAIN_LOOKS`). The ring is popped only if
    /// we run on the zone's CPU (`pop_bulk` checks); its bulk count then
    /// moved, which is not the program's use: the class's last look takes
    /// the new count.
    fn drain_class(&self, c: usize) {
        let cz = self.cz(c);
        self.drop_stash(c);
        self.drain_ring(c);
        // SAFETY: as above.
        unsafe { (*cz).moves = cache::moves(self.idx, c) };
    }

    /// The slow path of `alloc`: messages, lazy collection, detach, next slab.
    #[cold]
    #[inline(never)]
    pub(super) fn refill(&self, c: usize) -> *mut u8 {
        bump_locked(&self.z.stats.refills);
        // SAFETY: lock held; a short access through the raw pointer.
        let refills = unsafe {
            let inner = self.inner();
            (*inner).refills = (*inner).refills.wrapping_add(1);
            (*inner).refills
        };
        if self.z.rescan.load(Ordering::Relaxed) {
            self.rescan();
        }
        self.drain();
        if refills.is_multiple_of(SWEEP_EVERY) {
            self.sweep();
        }
        // SAFETY: lock held throughout; every slab touched is owned by us.
        unsafe {
            loop {
                let s = (*self.cz(c)).cur;
                if !s.is_null() {
                    if self.collect(s) > 0 || !(*s).free().is_null() || (*s).bump() < (*s).end() {
                        return self.alloc(c);
                    }
                    if slab::try_detach(s) {
                        (*s).set_state(ST_DETACHED);
                        (*self.cz(c)).cur = ptr::null_mut();
                        bump_locked(&self.z.stats.detaches);
                    } else {
                        continue; // remote chunks arrived: collect them
                    }
                }
                let n = self.next_slab(c);
                if n.is_null() {
                    return ptr::null_mut();
                }
                (*n).set_state(ST_CUR);
                (*self.cz(c)).cur = n;
            }
        }
    }

    /// Picks the next slab for class `c`: a partial one, a waiting one that
    /// reached the threshold, an empty one kept whole, the fullest-of-free
    /// waiting one, or a new one. The result is on no list.
    pub(super) unsafe fn next_slab(&self, c: usize) -> *mut Desc {
        // SAFETY: the caller upholds the contract in `# Safety` above.
        unsafe {
            let thr = size_class::wake_threshold(c) as u32;
            let cap = size_class::capacity(c) as u32;
            let cz = self.cz(c);
            if (*cz).partial.is_null() {
                // Promote waiting slabs that have collected enough.
                let mut d = (*cz).waiting;
                let mut k = 0;
                while !d.is_null() && k < WAITING_SCAN {
                    let next = (*d).next();
                    self.collect(d);
                    if (*d).used() == 0 {
                        self.release(d);
                    } else if cap - (*d).used() >= thr {
                        list_remove(ptr::addr_of_mut!((*cz).waiting), d);
                        (*d).set_state(ST_PARTIAL);
                        list_push(ptr::addr_of_mut!((*cz).partial), d);
                    }
                    d = next;
                    k += 1;
                }
            }
            if !(*cz).partial.is_null() {
                let d = (*cz).partial;
                list_remove(ptr::addr_of_mut!((*cz).partial), d);
                return d;
            }
            let d = self.take_empty(c);
            if !d.is_null() {
                return d;
            }
            // Any waiting slab with free chunks beats mapping more memory.
            let mut best: *mut Desc = ptr::null_mut();
            let mut d = (*cz).waiting;
            while !d.is_null() {
                if best.is_null() || (*d).used() < (*best).used() {
                    best = d;
                }
                d = (*d).next();
            }
            if !best.is_null() && (*best).used() < cap {
                list_remove(ptr::addr_of_mut!((*cz).waiting), best);
                return best;
            }
            self.new_slab(c)
        }
    }

    pub(super) unsafe fn new_slab(&self, c: usize) -> *mut Desc {
        // SAFETY: the caller upholds the contract in `# Safety` above.
        unsafe {
            adopt_idle(self.idx);
            // Before taking more memory: stashed chunks that no refill needed
            // since the last look go back to their slabs, which may free whole
            // slabs for this one (a program done with one size and on to the
            // next: glibc_simple kept every size's stash, 6.8 MiB peak RSS
            // against glibc's 2.8).
            for k in 0..NCLASSES {
                self.trim_stash(k);
            }
            // And the empty slabs (those kept whole, an empty current one)
            // of the classes idle since the last new slab go back to the
            // page runs, where this one takes their pages, already resident,
            // instead of new ones: each class kept up to two empty slabs
            // (glibc_simple, one size after the other: peak RSS 6.5 -> 5.7
            // MiB). A class in use keeps its own.
            if RUNS.committed_data_pages() >= SHED_MIN_PAGES {
                self.release_empties_but(c, false);
            }
            let Some(r) = RUNS.alloc(
                size_class::SLAB_PAGES[c] as usize,
                size_class::slab_align_pages(c),
                crate::runs::MapPages::Every,
            ) else {
                return ptr::null_mut();
            };
            let d = r.desc();
            let csize = size_class::class_size(c);
            let base = r.addr() as *mut u8;
            (*d).set_class(c);
            (*d).set_owner(self.idx);
            (*d).next_gen();
            (*d).set_used(0);
            (*d).set_free(ptr::null_mut());
            (*d).set_bump(base);
            (*d).set_end(base.add(size_class::capacity(c) * csize));
            (*d).set_prev(ptr::null_mut());
            (*d).set_next(ptr::null_mut());
            (*d).rchunks().store(0, Ordering::Relaxed);
            (*d).set_notify_next(ptr::null_mut());
            // Release: a thread that finds the slab through the page map sees it
            // whole. Its pages open to `free`'s fast path as they are carved.
            (*d).set_kind(KIND_SLAB);
            GLOBAL.slabs_live.fetch_add(1, Ordering::Relaxed);
            bump_locked(&self.z.stats.class[c].slabs_new);
            d
        }
    }

    /// Handles every message in the ring and on the overflow list.
    pub fn drain(&self) {
        while let Some(m) = self.z.ring.pop() {
            self.handle(m.slab, Some(m.gen));
        }
        let mut d = self.z.ring.take_overflow();
        while !d.is_null() {
            // SAFETY: overflow entries are slab descriptors (type-stable);
            // `handle` validates them before use.
            let next = unsafe { (*d).notify_next() };
            self.handle(d, None);
            d = next;
        }
    }

    /// A notification: validate through the page map, then collect and re-list.
    pub(super) fn handle(&self, d: *mut Desc, gen: Option<u32>) {
        if gen.is_some_and(|g| g & INFO_MSG != 0) {
            bump_locked(&self.z.stats.msgs_info);
            return;
        }
        if !pagemap::is_desc_ptr(d) {
            bump_locked(&self.z.stats.msgs_stale);
            return;
        }
        // SAFETY: `d` is a descriptor slot of one of our arenas (type-stable
        // memory); we check it is a slab of ours in the expected state before
        // touching anything else, and we hold the owner lock.
        unsafe {
            let valid = (*d).kind() == KIND_SLAB
                && (*d).owner() == self.idx
                && gen.is_none_or(|g| g == (*d).gen() & !INFO_MSG)
                && (*d).state() == ST_DETACHED;
            if !valid {
                bump_locked(&self.z.stats.msgs_stale);
                return;
            }
            if self.collect(d) == 0 {
                // Nothing came back (only possible for the `every` mode's
                // extra messages racing with us): still detached.
                bump_locked(&self.z.stats.msgs_stale);
                return;
            }
            bump_locked(&self.z.stats.msgs_handled);
            self.relist(d);
        }
    }

    /// Files a slab that is off every list according to how free it is.
    pub(super) unsafe fn relist(&self, d: *mut Desc) {
        // SAFETY: the caller upholds the contract in `# Safety` above.
        unsafe {
            let c = (*d).class() % NCLASSES;
            let cap = size_class::capacity(c) as u32;
            if (*d).used() == 0 {
                (*d).set_state(0); // on no list: release() has nothing to unlink
                self.release(d);
            } else if cap - (*d).used() >= size_class::wake_threshold(c) as u32 {
                (*d).set_state(ST_PARTIAL);
                list_push(ptr::addr_of_mut!((*self.cz(c)).partial), d);
            } else {
                (*d).set_state(ST_WAITING);
                list_push(ptr::addr_of_mut!((*self.cz(c)).waiting), d);
            }
        }
    }

    /// Collects remote chunks on every listed slab; frees empty ones and
    /// promotes waiting ones past the threshold.
    pub fn sweep(&self) {
        for c in 0..NCLASSES {
            self.trim_stash(c);
            let thr = size_class::wake_threshold(c) as u32;
            let cap = size_class::capacity(c) as u32;
            // SAFETY: lock held; list members are our slabs.
            unsafe {
                let cz = self.cz(c);
                let cur = (*cz).cur;
                if !cur.is_null() {
                    self.collect(cur);
                }
                for waiting in [false, true] {
                    let mut d = if waiting {
                        (*cz).waiting
                    } else {
                        (*cz).partial
                    };
                    while !d.is_null() {
                        let next = (*d).next();
                        self.collect(d);
                        if (*d).used() == 0 {
                            self.release(d);
                        } else if waiting && cap - (*d).used() >= thr {
                            list_remove(ptr::addr_of_mut!((*cz).waiting), d);
                            (*d).set_state(ST_PARTIAL);
                            list_push(ptr::addr_of_mut!((*cz).partial), d);
                        }
                        d = next;
                    }
                }
            }
        }
    }

    /// After fork: ring messages may have been lost. Walk every arena and
    /// handle detached slabs of ours that have remote chunks waiting.
    pub(super) fn rescan(&self) {
        self.z.rescan.store(false, Ordering::Relaxed);
        for i in 0..pagemap::narenas() {
            let base = pagemap::arena_at(i);
            let mut p = pagemap::META_PAGES;
            while base != 0 && p < pagemap::ARENA_PAGES {
                let d = pagemap::desc(base, p);
                // SAFETY: run heads tile the arena, so stepping by npages from
                // the first usable page visits exactly the heads.
                let (kind, n) = unsafe { ((*d).kind(), (*d).npages()) };
                if n == 0 {
                    break;
                }
                // KIND_NONE with a size: a run handed out whose kind was not
                // set yet when the parent forked; step over it.
                // SAFETY: a slab descriptor; its owner-side state is ours to
                // read only once the owner check says the slab is ours.
                unsafe {
                    if kind == KIND_SLAB
                        && (*d).owner() == self.idx
                        && (*d).state() == ST_DETACHED
                        && (*d).rchunks().load(Ordering::Relaxed) > slab::DETACHED
                    {
                        self.handle(d, None);
                    }
                }
                p += n;
            }
        }
    }

    /// Idle detection for the reclaimer: true if no allocation happened in
    /// this zone since the previous look (`Zone::quiet_since_last_look`,
    /// which a reclaim pass also asks without the lock).
    pub fn idle_since_last_look(&self) -> bool {
        self.z.quiet_since_last_look()
    }
}

/// Gives a slab's pages back to the page runs. Counted on the owner zone,
/// whose lock the caller holds. (Out of line: its callers loop over
/// slabs, and each inlined copy of the page runs' free cost `.text` its
/// 64 KiB window, `c-tests/cold_text.c`.)
#[inline(never)]
pub(super) unsafe fn destroy(d: *mut Desc) {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe {
        let c = (*d).class() % NCLASSES;
        let owner = (*d).owner();
        bump_locked(&zone(owner).stats.class[c].slabs_freed);
        let (base, head) = pagemap::desc_home(d);
        let n = (*d).npages();
        pagemap::close_slab_pages(base, head, n);
        (*d).set_state(0);
        (*d).set_kind(KIND_NONE);
        GLOBAL.slabs_live.fetch_sub(1, Ordering::Relaxed);
        RUNS.free(base, head, n);
    }
}

/// Called by zone `me` (locked) before it maps a new slab: every other zone
/// with messages waiting that is free right now gets `tend`ed first, so that
/// the memory of zones whose threads went quiet or exited (chunks freed
/// into their slabs by other threads, which only their owner collects)
/// goes back to the page runs that the new slab comes from, without the
/// background thread. Never waits: a busy zone is skipped (so no lock order
/// matters), and a zone with an empty ring costs three loads.
fn adopt_idle(me: usize) {
    for i in 0..cpu::nzones() {
        if i == me || !zone(i).ring.has_work() {
            continue;
        }
        if let Some(z) = try_lock_index(i) {
            z.tend(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A slab whose chunks all come back is kept whole (its free list, carve
    /// pointer and open pages as they were), up to `empty_keep` of them per
    /// class; the next slab the class needs is a kept one, which hands its
    /// chunks out again with no new carve; and `release_empties` gives them
    /// all back.
    #[test]
    fn empty_slabs_are_kept_whole_and_reused() {
        crate::alloc::ensure_init();
        // A zone no CPU of a test machine uses, and no other test.
        let z = lock_index(cpu::MAX_ZONES - 4).expect("zone free");
        let c = size_class::class_of(1024);
        let cap = size_class::capacity(c);
        let keep = empty_keep(c);
        // keep + 1 slabs in full, and one chunk of the next, so that none
        // of the first keep + 1 is the current slab.
        let mut slabs: Vec<(*mut Desc, Vec<*mut u8>)> = Vec::new();
        for _ in 0..(keep + 1) * cap + 1 {
            let p = z.alloc(c);
            assert!(!p.is_null());
            let d = slab_of(p);
            match slabs.last_mut() {
                Some((s, v)) if *s == d => v.push(p),
                _ => slabs.push((d, vec![p])),
            }
        }
        assert_eq!(slabs.len(), keep + 2);
        let key = FREE_KEY.load(Ordering::Relaxed);
        for (_, v) in &slabs[..=keep] {
            assert_eq!(v.len(), cap);
            // SAFETY: lock held; live chunks of this zone's slabs, each
            // marked as free marks them, given back once.
            unsafe {
                for &p in v {
                    *(p as *mut u64).add(1) = key;
                }
                z.free_local_all(v);
            }
        }
        // SAFETY: lock held; short reads of this class's fields and of the
        // kept slabs.
        unsafe {
            let cz = z.cz(c);
            assert_eq!((*cz).nempty as usize, keep, "kept more than empty_keep");
            // The newest first; the one past the bound went back.
            let mut d = (*cz).empty;
            for (s, v) in slabs[..keep].iter().rev() {
                assert_eq!(d, *s);
                assert_eq!((*d).state(), ST_EMPTY);
                assert_eq!((*d).used(), 0);
                assert_eq!((*d).bump(), (*d).end(), "kept slab reset for a new carve");
                assert!(!(*d).free().is_null());
                assert!(
                    pagemap::open_page(v[0] as usize).is_some(),
                    "kept slab's pages closed"
                );
                d = (*d).next();
            }
            // (The one past the bound is not on the list; its pages may
            // serve a test running beside this one by now.)
            assert!(d.is_null());
        }
        // The current slab's last chunks, then a kept slab's: no carve.
        let (cur, _) = slabs[keep + 1];
        let mut p = z.alloc(c);
        while slab_of(p) == cur {
            p = z.alloc(c);
        }
        let (newest, _) = slabs[keep - 1];
        assert_eq!(slab_of(p), newest, "not the newest kept slab");
        // SAFETY: lock held; `newest` is our current slab now.
        unsafe {
            assert_eq!((*newest).state(), ST_CUR);
            assert_eq!((*newest).bump(), (*newest).end(), "carved again");
            assert_eq!((*z.cz(c)).nempty as usize, keep - 1);
        }
        z.release_empties();
        // SAFETY: as above.
        unsafe {
            assert_eq!((*z.cz(c)).nempty, 0);
            assert!((*z.cz(c)).empty.is_null());
        }
    }
}
