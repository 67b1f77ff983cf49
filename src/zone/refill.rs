//! The cache's refills: a batch of chunks from the zone's stash or its
//! slabs into this CPU's ring, in one section, in an order that keeps two
//! successive pops off one cache line.

use super::*;

/// Bytes per cache line, for the order in which a refill fills the cache.
const CACHE_LINE: usize = 64;

/// A refill moves a page's worth of chunks, doubling with each refill until
/// it reaches the class's full batch: the first refills of a class no
/// longer carve (and touch) up to 8 KiB for a program that uses a handful
/// of its chunks. 2^5 pages is past every class's batch.
const RAMP_STEPS: u8 = 5;

impl Locked {
    /// Moves up to a batch of chunks of class `c` into this CPU's cache, in
    /// one section, if the caller runs on this zone's CPU (else they go
    /// straight back). Amortises the lock over the batch. The stash comes
    /// first: its chunks move whole, with no slab touched.
    ///
    /// Chunks from the slabs are pushed so that two successive pops never
    /// return chunks of one cache line: a slab hands its chunks out in
    /// address order, and two small blocks that one thread allocates back
    /// to back and gives to two threads would otherwise share a line (false
    /// sharing; the `falseshare` workload, `c-tests/lines.c`). With `s` =
    /// chunks per line (rounded up), the batch goes in as every `s`-th
    /// chunk, `s` times over. Only classes under 64 bytes are reordered.
    #[inline(never)]
    pub fn fill_cache(&self, c: usize) {
        let c = c % NCLASSES;
        cache::prepare(self.idx, c);
        self.grow_ring(c);
        let want = self.fill_batch(c).saturating_sub(1).min(cache::BATCH_MAX);
        if self.unstash(c, want) {
            return;
        }
        // (After the stash: the arrays cost a memset each, 5 % of a loop
        // whose 1 KiB chunks went through the stash eight at a time.)
        let mut got = [ptr::null_mut::<u8>(); cache::BATCH_MAX];
        let mut n = 0;
        while n < want {
            // Slices by `get`, not indexing: no bounds check, so no panic path.
            let Some(room) = got.get_mut(n..want) else {
                break;
            };
            // SAFETY: lock held (`self`).
            let k = unsafe { self.take_nodes(c, room) };
            if k > 0 {
                n += k;
                continue;
            }
            let q = self.alloc(c);
            if q.is_null() {
                break;
            }
            if let Some(slot) = got.get_mut(n) {
                *slot = q;
            }
            n += 1;
        }
        let stride = CACHE_LINE.div_ceil(size_class::class_size(c)).max(1);
        if stride == 1 {
            self.push_refill(c, got.get(..n).unwrap_or_default());
            return;
        }
        let mut order = [ptr::null_mut::<u8>(); cache::BATCH_MAX];
        let mut k = 0;
        for r in 0..stride {
            for &q in got.iter().take(n).skip(r).step_by(stride) {
                if let Some(o) = order.get_mut(k) {
                    *o = q;
                    k += 1;
                }
            }
        }
        self.push_refill(c, order.get(..k).unwrap_or_default());
    }

    /// Pushes a refill's chunks (`fill_cache`), oldest first.
    fn push_refill(&self, c: usize, order: &[*mut u8]) {
        // The ring pops its oldest chunk first: in this order, successive
        // mallocs get ascending addresses, as a slab carves them (a program
        // that walks its objects in the order it made them, such as
        // CPython's collector, then walks memory forwards: PYTHONMALLOC=malloc
        // ran 1.35x faster, docs/experiments.md).
        if !order.is_empty() && !cache::push_bulk(self.idx, c, order) {
            // The thread left this zone's CPU: they go back.
            for &q in order {
                // SAFETY: `q` is a chunk we just allocated from our own slab
                // and did not push.
                unsafe { self.free_local(slab_of(q), q) };
            }
        }
    }

    /// Takes chunks off the free list of class `c`'s current slab into
    /// `out`, a batch node at a time: the chunks a node carries are copied
    /// out with one count written back (none when the node goes too), and
    /// no carried chunk is read. Returns how many (0: the free list is
    /// empty, or there is no current slab; `alloc` takes it from there).
    ///
    /// # Safety
    /// The zone's lock is held (it is: `self`).
    #[inline(always)]
    unsafe fn take_nodes(&self, c: usize, out: &mut [*mut u8]) -> usize {
        // SAFETY: lock held; `cur` is a live slab of ours, and its free list
        // is ours: every node and carried chunk on it is a free chunk of it.
        unsafe {
            let c = c % NCLASSES;
            let s = (*self.cz(c)).cur;
            if s.is_null() {
                return 0;
            }
            let base = slab_base(s);
            let bump = (*s).bump() as usize;
            let mut n = 0;
            let mut f = (*s).free();
            while !f.is_null() && n < out.len() {
                let w = slab::link_word(f);
                if w & slab::BATCH != 0 {
                    let k = slab::batch_len(f);
                    if !(1..=slab::MAX_CARRY).contains(&k) || !slab::batch_verify(f) {
                        corrupt_node(f);
                    }
                    let m = k.min(out.len() - n);
                    for (i, o) in out.iter_mut().skip(n).take(m).enumerate() {
                        let q = slab::batch_entry(f, k - 1 - i, base);
                        if (q as usize).wrapping_sub(base) >= bump - base || q == f {
                            corrupt_node(f);
                        }
                        *o = q;
                    }
                    n += m;
                    if m < k {
                        slab::batch_truncate(f, k - m);
                        break;
                    }
                    if n == out.len() {
                        slab::batch_truncate(f, 0);
                        break;
                    }
                }
                if let Some(o) = out.get_mut(n) {
                    *o = f;
                }
                n += 1;
                f = (w & !slab::BATCH) as *mut u8;
            }
            (*s).set_free(f);
            (*s).set_used((*s).used() + n as u32);
            let a = &self.z.stats.class[c].allocs;
            a.store(
                a.load(Ordering::Relaxed).wrapping_add(n as u64),
                Ordering::Relaxed,
            );
            n
        }
    }

    /// Chunks the next refill of class `c` moves (with the one the caller
    /// takes): a page's worth (at least one chunk) on the first refill,
    /// doubling up to `cache::batch(c)` (TCP's slow start; tcmalloc and
    /// mimalloc also grow their caches with use). The extra refills are
    /// a handful per class and CPU over a process's life.
    fn fill_batch(&self, c: usize) -> usize {
        let full = cache::batch(c);
        let cz = self.cz(c);
        // SAFETY: lock held; `cz` points into this zone's `inner` (raw
        // accesses, like the class lists').
        unsafe {
            let fills = (*cz).fills;
            if fills >= RAMP_STEPS {
                return full;
            }
            let start = (PAGE_SIZE / size_class::class_size(c)).max(1);
            let n = (start << fills).min(full);
            (*cz).fills = if n == full { RAMP_STEPS } else { fills + 1 };
            n
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Refills start at a page's worth of chunks and double up to the
    /// class's full batch, then stay there; classes whose full batch fits
    /// in a page get it at once.
    #[test]
    fn refill_batches_ramp_up() {
        // A zone no CPU of a test machine uses, so no other test refills it.
        let z = lock_index(cpu::MAX_ZONES - 1).expect("zone free");
        for c in 0..NCLASSES {
            let size = size_class::class_size(c);
            let full = cache::batch(c);
            let mut want = (PAGE_SIZE / size).clamp(1, full);
            for _ in 0..8 {
                assert_eq!(z.fill_batch(c), want, "class {c} ({size} B)");
                want = (want * 2).min(full);
            }
        }
    }
}
