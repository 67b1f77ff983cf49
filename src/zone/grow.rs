//! Stacks that grow: a class whose CPU stack overflows, and then runs dry
//! within a stack's worth of pops, gets a larger capacity for that stack,
//! doubling up to its ring's slots (`cache_layout::RING_BYTES`) while the
//! CPU's grown stacks hold at most `GROW_BUDGET` beyond their base; a class
//! gone idle gets its base back. A loop that frees and allocates batches
//! larger than a stack (glibc_simple's 400 and 1600 blocks) otherwise paid
//! a lock round trip per half stack each way (google/tcmalloc grows its
//! per-CPU capacities on misses too). The capacity of a stack changes only
//! when it is empty, with one section on its CPU (`cache::regear`).

use super::*;

/// Bytes of chunks the stacks of one CPU may hold beyond their base
/// capacities, all classes together (`grow_ring`): a class that overflows
/// its stack doubles its capacity, up to its ring's slots, while this
/// allows (2 MiB: a batch of 1600 blocks of 1 KiB fits).
const GROW_BUDGET: usize = 2 << 20;

impl Locked {
    /// The capacity of this CPU's class `c` stack now (its base until the
    /// stack is prepared). Read from the stack itself: only this zone
    /// changes it, under the lock we hold (`prepare`, `regear`).
    fn ring_cap(&self, c: usize) -> usize {
        cache::capacity(self.idx, c).max(cache::base_cap(c))
    }

    /// A flush found this CPU's class `c` stack full: asks the next refill
    /// to double its capacity (`grow_ring`), from what it is then (a
    /// shrink in between starts over from the base). A program that frees more
    /// chunks of a class in a row than its stack holds, and then allocates
    /// as many again, pays a lock round trip per half stack each way only
    /// until the stack holds them all (tcmalloc grows its per-CPU
    /// capacities on misses too).
    pub(super) fn want_more(&self, c: usize) {
        let cz = self.cz(c % NCLASSES);
        // SAFETY: lock held; a short access to this class's fields.
        unsafe {
            (*cz).wants = true;
            (*cz).want_pops = cache::pops(self.idx, c % NCLASSES);
        }
    }

    /// Doubles the capacity, as a flush asked (`want_more`), if the stack went
    /// from full to empty since, within one capacity's worth of pops (the
    /// program swings through more than it holds; a stack that only
    /// wanders near full, chunks freed a few more than allocated, kept more
    /// memory for no speed: shortlived's and cfrac_like's peak RSS +9 %),
    /// the stack is empty (a refill: the pop that missed found it so), and
    /// the growth fits in `GROW_BUDGET`. The request goes either way.
    pub(super) fn grow_ring(&self, c: usize) {
        let cz = self.cz(c);
        // SAFETY: lock held; a short access to this class's fields.
        let (asked, since) = unsafe {
            let asked = core::mem::take(&mut (*cz).wants);
            (
                asked,
                cache::pops(self.idx, c).wrapping_sub((*cz).want_pops),
            )
        };
        let cur = self.ring_cap(c);
        let want = (cur * 2).min(cache::max_cap(c));
        if !asked || want <= cur || since > cur as u64 {
            return;
        }
        let more = (want - cur) * size_class::class_size(c);
        let inner = self.inner();
        // SAFETY: lock held; short accesses to the zone's fields.
        unsafe {
            if (*inner).grown + more <= GROW_BUDGET && cache::regear(self.idx, c, want) {
                (*inner).grown += more;
            }
        }
    }

    /// Gives a grown class `c` stack its base capacity back, its chunks
    /// back to their slabs first, if the caller runs on this zone's CPU:
    /// a class gone idle keeps no more than any other. Out of line: the
    /// loop of `drain_cache` over the classes calls it once for each.
    #[inline(never)]
    pub(super) fn shrink_ring(&self, c: usize) {
        let c = c % NCLASSES;
        // A growth a flush asked for before goes too: the class starts
        // over (a child forked just after another thread's flush asked
        // grew a stack on its first refill: the test below, once in a few
        // full runs).
        // SAFETY: lock held; a short access to this class's field.
        unsafe { (*self.cz(c)).wants = false };
        let cap = self.ring_cap(c);
        let base = cache::base_cap(c);
        if cap <= base {
            return;
        }
        self.drain_ring(c);
        if cache::shrink_to(self.idx, c, base) {
            let inner = self.inner();
            // SAFETY: lock held; a short access to the zone's fields.
            unsafe { (*inner).grown -= (cap - base) * size_class::class_size(c) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// In a lone child pinned to one CPU: a loop that frees 1000 blocks of
    /// one class in a row and allocates them again grows that class's stack
    /// until they all fit (the flushes ask, the refills grant); a stack
    /// that only wanders near full does not grow; and `malloc_trim` gives
    /// the grown capacity back.
    #[test]
    fn full_stacks_grow_and_trim_shrinks_them() {
        pinned_lone_child(grow_and_shrink);
    }

    /// Runs `f` in a lone child (`f` pins itself: `pin_first`); nothing if
    /// the cache is off (no rseq).
    fn pinned_lone_child(f: fn()) {
        crate::alloc::ensure_init();
        if !cache::on() {
            eprintln!("no rseq: the cache stays off, nothing to test");
            return;
        }
        crate::cache::tests::in_lone_child(f);
    }

    /// Pins the caller to the first CPU; its zone, or None if there is no
    /// CPU to pin to.
    fn pin_first() -> Option<usize> {
        let ids = core_affinity::get_core_ids().unwrap_or_default();
        let id = ids.first()?;
        assert!(core_affinity::set_for_current(*id));
        Some(cpu::current_zone())
    }

    fn grow_and_shrink() {
        let Some(zone) = pin_first() else { return };
        // Every stack at its base and no growth asked first: the child
        // inherits the parent's stacks and requests, which another test
        // may have made on this CPU just before the fork ("a wandering
        // stack grew", once in a few full runs).
        crate::api::trim();
        let malloc = |n| {
            let p = crate::alloc::malloc(n);
            assert!(!p.is_null());
            p
        };
        // Wandering: more frees than the stack holds once (a flush asks),
        // then many pairs, then the stack runs dry: no growth.
        let c = size_class::class_of(48);
        let base = cache::base_cap(c);
        let mut v = [ptr::null_mut::<u8>(); 1000];
        for b in v.iter_mut().take(base + 40) {
            *b = malloc(48);
        }
        for &b in v.iter().take(base + 40) {
            crate::alloc::free(b);
        }
        for _ in 0..10_000 {
            crate::alloc::free(malloc(48));
        }
        for b in v.iter_mut().take(base + 40) {
            *b = malloc(48);
        }
        for &b in v.iter().take(base + 40) {
            crate::alloc::free(b);
        }
        assert_eq!(cache::capacity(zone, c), base, "a wandering stack grew");
        // Swinging: 1000 freed and allocated again, twelve times.
        let c = size_class::class_of(64);
        let base = cache::base_cap(c);
        for _ in 0..12 {
            for b in v.iter_mut() {
                *b = malloc(64);
            }
            for &b in v.iter() {
                crate::alloc::free(b);
            }
        }
        let grown = cache::capacity(zone, c);
        assert!(grown >= 1000, "capacity {grown} (base {base})");
        assert!(
            cache::resident_past_base(zone, c) > 0,
            "a grown ring wrote no page past its base"
        );
        crate::api::trim();
        assert_eq!(cache::capacity(zone, c), base);
        assert_eq!(
            cache::resident_past_base(zone, c),
            0,
            "a shrunk ring kept its pages"
        );
    }

    /// In a lone child pinned to one CPU: a class that turned over more
    /// chunks than its ring holds, and then sits idle while other classes
    /// take new slabs, gives back its grown ring's pages, its stashed
    /// chunks and its stash's array (a program done with one size holds
    /// nothing for it).
    #[test]
    fn idle_class_gives_back_ring_and_stash() {
        pinned_lone_child(idle_class);
    }

    fn idle_class() {
        let Some(zone) = pin_first() else { return };
        let stash = |c: usize| {
            let z = lock_index(zone).expect("zone lock");
            // SAFETY: lock held; a read of this class's field.
            let a = unsafe { (*z.cz(c)).stash_arr };
            (a, z.z.stashed(c))
        };
        let c = size_class::class_of(64);
        let mut v = vec![ptr::null_mut::<u8>(); 6000];
        for _ in 0..4 {
            for b in v.iter_mut() {
                *b = crate::alloc::malloc(64);
                assert!(!b.is_null());
            }
            for &b in v.iter() {
                crate::alloc::free(b);
            }
        }
        assert!(
            cache::capacity(zone, c) > cache::base_cap(c),
            "the ring did not grow"
        );
        assert!(cache::resident_past_base(zone, c) > 0);
        let (arr, n) = stash(c);
        assert!(
            arr != 0 && n > 0,
            "nothing stashed (array {arr:#x}, {n} chunks)"
        );
        // Other work: 8 MiB of 1 KiB blocks, 64 new slabs of another class.
        let big: Vec<*mut u8> = (0..8192).map(|_| crate::alloc::malloc(1024)).collect();
        assert!(big.iter().all(|b| !b.is_null()));
        assert_eq!(
            cache::capacity(zone, c),
            cache::base_cap(c),
            "the idle ring kept its growth"
        );
        assert_eq!(
            cache::resident_past_base(zone, c),
            0,
            "the idle ring kept its pages"
        );
        assert_eq!(stash(c), (0, 0), "the idle class kept its stash");
        for b in big {
            crate::alloc::free(b);
        }
    }
}
