//! The zone's stash: whole batches of free chunks between the per-CPU cache
//! and the slabs (google/tcmalloc's transfer cache, kept per zone).
//!
//! A free that finds its CPU's stack full hands half of the stack over; a
//! malloc that finds it empty takes a batch back. Without the stash both
//! went through the slabs one chunk at a time (a slab operation and a
//! section each): a program that turns over more chunks of a class than
//! the stack holds (124) paid that on every chunk. With it, each batch
//! moves with one rseq section (`cache::pop_bulk`, `cache::push_bulk`)
//! straight between the stack and the stash's array, and no slab or chunk
//! is touched.
//!
//! Each class has an array of up to `SLOTS` chunk addresses (at most
//! `STASH_BYTES` of chunks), a page run of its own taken from the arenas the
//! first time the class stashes anything (at most 32 KiB, resident only as
//! far as it fills; a separate mapping per zone cost an out-of-memory test
//! under `RLIMIT_AS` the address space it needed, and is not kept), and
//! given back with the chunks by `malloc_trim`. The array is a stack:
//! refills take the chunks stashed last, which are the warmest. Stashed
//! chunks count as in use for their slabs, like cached ones; the sweep
//! gives back those the stash did not need since the previous sweep
//! (jemalloc's tcache garbage collection by low-water mark), `malloc_trim`
//! and the reclaimer all of them. Everything here runs under the zone lock;
//! the counts are atomics only so that `stats` may read them racily.

use super::{slab_of, Locked, NCLASSES};
use crate::cache;
use crate::size_class;
use core::ptr;
use core::sync::atomic::Ordering;

/// Chunk addresses a class's array holds.
const SLOTS: usize = 4096;
/// Bytes of chunks a class's stash keeps at most.
const STASH_BYTES: usize = 1024 * 1024;
const _: () = assert!(2 * cache::BATCH_MAX < SLOTS);

/// The most chunks the class `c` stash keeps: `STASH_BYTES` of them, at
/// least two batches and room for a flush, at most `SLOTS`.
fn stash_max(c: usize) -> usize {
    // The bounds are constants in order (asserted above): the compiler
    // drops clamp's check, so there is no panic path here.
    (STASH_BYTES / size_class::class_size(c)).clamp(2 * cache::BATCH_MAX + 1, SLOTS)
}

impl Locked {
    /// Pages of the class `c` array.
    fn array_pages(c: usize) -> usize {
        (stash_max(c) * core::mem::size_of::<usize>()).div_ceil(crate::os::PAGE_SIZE)
    }

    /// The class `c` array, taking its page run on first use; None if
    /// there is no memory for it (the stash then stays empty).
    fn stash_array(&self, c: usize) -> Option<*mut *mut u8> {
        let cz = self.cz(c);
        // SAFETY: lock held; a short access to this class's fields.
        unsafe {
            if (*cz).stash_arr == 0 {
                let r = crate::runs::RUNS.alloc(
                    Self::array_pages(c),
                    1,
                    crate::runs::MapPages::Ends,
                )?;
                // The run's kind stays KIND_NONE: a free of a pointer into
                // it is reported like any pointer to memory not allocated.
                (*cz).stash_arr = r.addr();
            }
            Some((*cz).stash_arr as *mut *mut u8)
        }
    }

    /// The class `c` array if it has one, and its chunk count.
    fn stash_view(&self, c: usize) -> Option<(*mut *mut u8, usize)> {
        let c = c % NCLASSES;
        // SAFETY: lock held; a short access to this class's fields.
        let a = unsafe { (*self.cz(c)).stash_arr };
        if a == 0 {
            return None;
        }
        let n = self.z.stashed[c].load(Ordering::Relaxed) as usize;
        Some((a as *mut *mut u8, n.min(stash_max(c))))
    }

    /// Sets the class `c` count, lowering the low-water mark with it.
    fn set_stashed(&self, c: usize, n: usize) {
        let c = c % NCLASSES;
        self.z.stashed[c].store(n as u32, Ordering::Relaxed);
        let cz = self.cz(c);
        // SAFETY: lock held; a short access to this class's fields.
        unsafe { (*cz).stash_low = (*cz).stash_low.min(n as u32) };
    }

    /// A chunk of class `c` for malloc's slow path: the one stashed last,
    /// else one from the slabs.
    #[inline(always)]
    pub fn take(&self, c: usize) -> *mut u8 {
        // SAFETY: lock held; a short access to this class's fields.
        unsafe { (*self.cz(c)).busy = true };
        if let Some((a, n)) = self.stash_view(c) {
            if n > 0 {
                // SAFETY: slot n - 1 < SLOTS of the array holds a
                // stashed chunk.
                let q = unsafe { *a.add(n - 1) };
                self.set_stashed(c, n - 1);
                return q;
            }
        }
        self.alloc(c)
    }

    /// Moves up to `want` stashed chunks of class `c` into this CPU's cache
    /// with one section, the last stashed first, grouped by page as a
    /// refill from the slabs is while other CPUs' frees come back
    /// (`in_page_order`; grouped, `xmalloc_like` with a producer and a
    /// consumer on each CPU ran 0.92 of the time). True if it moved some;
    /// false (and the stash as it was) if the stash is empty or the push
    /// failed (the caller left the zone's CPU).
    pub(super) fn unstash(&self, c: usize, want: usize) -> bool {
        let Some((a, n)) = self.stash_view(c) else {
            return false;
        };
        let m = want.min(n).min(cache::BATCH_MAX);
        if m == 0 {
            return false;
        }
        // The last stashed first, chunk by chunk: the stash then gives
        // back what a run of frees put in in the reverse of their order,
        // as the slabs' free lists do. (Batch by batch, each in its own
        // order, it cut a run of frees into stretches at new places at
        // every round trip.)
        let mut rev = [ptr::null_mut::<u8>(); cache::BATCH_MAX];
        for (i, r) in rev.iter_mut().take(m).enumerate() {
            // SAFETY: slots n - m .. n of the array hold stashed chunks.
            *r = unsafe { *a.add(n - 1 - i) };
        }
        let batch = rev.get(..m).unwrap_or_default();
        let pushed = self.in_page_order(c, batch, |b| cache::push_bulk(self.idx, c, b));
        if !pushed {
            return false;
        }
        self.set_stashed(c, n - m);
        true
    }

    /// A free found this CPU's class `c` stack full: a batch taken off the
    /// stack (its oldest chunks) with one section goes to the stash, or
    /// back to the slabs when the stash is full (or has no array), and `p`
    /// (a chunk of this zone's, its free mark set, which the program is
    /// freeing: counted here, as a cache free or a zone's) then takes its
    /// place in the stack, so that the stack keeps the order the program
    /// freed in. (It went straight to
    /// its slab: in a program that frees thousands of chunks in a row,
    /// every batch-th chunk then lay on the slab's free list one after
    /// the other, and later refills handed out a chunk a page.) Only chunks
    /// of this zone can be in the stack, and `pop_bulk` takes them only
    /// while we run on its CPU.
    ///
    /// # Safety
    /// `p` is a live chunk of class `c` of one of this zone's slabs, which
    /// the caller is freeing (its free mark set), below the carve pointer.
    #[inline(never)]
    pub unsafe fn flush_cache(&self, c: usize, p: *mut u8) {
        // SAFETY: the caller upholds the contract in `# Safety` above.
        unsafe {
            let c = c % NCLASSES;
            (*self.cz(c)).busy = true;
            let b = cache::batch(c).min(cache::BATCH_MAX);
            let stash = self.stash_array(c).and_then(|a| {
                let n = self.z.stashed[c].load(Ordering::Relaxed) as usize;
                // SAFETY: slots n .. n + b <= stash_max(c) of the array are
                // free; the section writes at most b of them.
                (n + b <= stash_max(c)).then(|| (n, core::slice::from_raw_parts_mut(a.add(n), b)))
            });
            let got = match stash {
                Some((n, slots)) => {
                    let got = cache::pop_bulk(self.idx, c, slots);
                    self.z.stashed[c].store((n + got) as u32, Ordering::Relaxed);
                    got
                }
                None => {
                    let mut buf = [ptr::null_mut::<u8>(); cache::BATCH_MAX];
                    // (The `min`s: both are within `buf` already, and this
                    // spares the slicing its panic path.)
                    let got = cache::pop_bulk(self.idx, c, &mut buf[..b.min(cache::BATCH_MAX)]);
                    // The popped chunks are free chunks of this zone's slabs
                    // that nothing else references; we hold the lock.
                    self.free_local_all(&buf[..got.min(cache::BATCH_MAX)]);
                    got
                }
            };
            if got == b {
                self.want_more(c);
            }
            // `p` goes in as the free it is, through free's own section:
            // counted as a cache free like any other (a bulk push is not
            // a free), and into the outbox if the thread has left this
            // zone's CPU meanwhile.
            if !cache::push_free(self.idx, cache::stack_offset(c), p) {
                self.count_free(c);
                // `p` (see the contract) is a free chunk of one of our slabs.
                self.free_local(slab_of(p), p);
            }
        }
    }

    /// Gives back to their slabs as many stashed chunks of class `c` as the
    /// stash never went below since the last sweep (the oldest first): a
    /// stash in use keeps what it turns over, one a program stopped using
    /// empties within two sweeps.
    pub(super) fn trim_stash(&self, c: usize) {
        let c = c % NCLASSES;
        let cz = self.cz(c);
        if let Some((a, n)) = self.stash_view(c) {
            // SAFETY: lock held; a short access to this class's fields.
            let idle = (unsafe { (*cz).stash_low } as usize).min(n);
            if idle > 0 {
                // SAFETY: slots 0 .. n of the array hold stashed
                // chunks, free chunks of our slabs; the survivors move down.
                unsafe {
                    self.free_local_all(core::slice::from_raw_parts(a, idle));
                    ptr::copy(a.add(idle), a, n - idle);
                }
                self.z.stashed[c].store((n - idle) as u32, Ordering::Relaxed);
            }
        }
        // SAFETY: as above.
        unsafe { (*cz).stash_low = self.z.stashed[c].load(Ordering::Relaxed) };
    }

    /// Gives every stashed chunk back to its slab, and the arrays back to
    /// the page runs (`malloc_trim`, reclaim before ENOMEM). Out of line,
    /// in the cold text: `drain_cache` inlined it with what it calls.
    #[inline(never)]
    #[link_section = ".text_cold"]
    pub(super) fn drain_stash(&self) {
        for c in 0..NCLASSES {
            self.drop_stash(c);
        }
    }

    /// Gives every chunk of the class `c` stash back to its slab, and its
    /// array back to the page runs: `drain_stash`'s step, and what a class
    /// gone idle gets (`drain_class`), whose array otherwise stays resident
    /// as far as it ever filled (8 bytes a chunk: for 16-byte chunks, half
    /// the memory of the chunks it held).
    pub(super) fn drop_stash(&self, c: usize) {
        let c = c % NCLASSES;
        let cz = self.cz(c);
        // SAFETY: lock held; short accesses to this class's fields.
        unsafe { (*cz).stash_low = u32::MAX };
        self.trim_stash(c);
        // SAFETY: as above; the stash is empty, so nothing refers to the
        // array any more. It is a run of `array_pages(c)` pages of the
        // arena that holds it.
        unsafe {
            let a = core::mem::take(&mut (*cz).stash_arr);
            if a != 0 {
                let base = a & !(crate::pagemap::ARENA_SIZE - 1);
                let head = (a - base) >> crate::pagemap::PAGE_SHIFT;
                crate::runs::RUNS.free(base, head, Self::array_pages(c));
            }
        }
    }

    /// True if `p` sits in the class `c` stash (a double free).
    pub fn stash_contains(&self, c: usize, p: *mut u8) -> bool {
        self.stash_view(c).is_some_and(|(a, n)| {
            // SAFETY: slots 0 .. n of the array hold stashed chunks.
            (0..n).any(|i| unsafe { *a.add(i) } == p)
        })
    }
}

#[cfg(test)]
impl Locked {
    /// Stashes `p` directly (what a flush does with the chunks it pops off
    /// the running CPU's stack, which a test cannot arrange for a zone of
    /// its own).
    fn stash_one(&self, c: usize, p: *mut u8) {
        let a = self.stash_array(c).expect("stash array");
        let n = self.z.stashed[c].load(Ordering::Relaxed) as usize;
        assert!(n < stash_max(c));
        // SAFETY: slot n < stash_max(c) of the array.
        unsafe { *a.add(n) = p };
        self.z.stashed[c].store(n as u32 + 1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zone::lock_index;

    /// Chunks a full stack hands over are kept, handed out last-in first,
    /// found by the double-free check, and all given back by a drain, with
    /// the array; a sweep gives back what the stash did not use since the
    /// previous one.
    #[test]
    fn stash_keeps_gives_back_and_trims() {
        crate::alloc::ensure_init();
        // A zone no CPU of a test machine uses (`refill::tests::refill_batches_ramp_up`
        // uses the last one): the bulk sections find the caller elsewhere
        // and move nothing, so only the chunks passed in are stashed.
        let z = lock_index(crate::cpu::MAX_ZONES - 2).expect("zone free");
        let c = size_class::class_of(64);
        let chunks: Vec<*mut u8> = (0..10).map(|_| z.alloc(c)).collect();
        assert!(chunks.iter().all(|p| !p.is_null()));
        for &p in &chunks {
            z.stash_one(c, p);
        }
        assert_eq!(z.z.stashed(c), 10);
        assert!(chunks.iter().all(|&p| z.stash_contains(c, p)));
        assert_eq!(z.take(c), chunks[9]);
        assert!(!z.stash_contains(c, chunks[9]));
        assert_eq!(z.z.stashed(c), 9);
        // The low-water mark: 9 untouched since this sweep, so the next
        // one gives them back.
        z.trim_stash(c);
        assert_eq!(z.z.stashed(c), 9);
        z.stash_one(c, chunks[9]);
        z.trim_stash(c);
        assert_eq!(z.z.stashed(c), 1);
        assert!(z.stash_contains(c, chunks[9]));
        z.drain_stash();
        assert_eq!(z.z.stashed(c), 0);
        assert!(!z.stash_contains(c, chunks[9]));
        // SAFETY: lock held; the array went back with the chunks.
        assert_eq!(unsafe { (*z.cz(c)).stash_arr }, 0);
    }
}
