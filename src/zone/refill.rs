//! The cache's refills: a batch of chunks from the zone's stash or its
//! slabs into this CPU's ring, in one section, in the order they come
//! (grouped by page while other CPUs' frees come back).

use super::*;

/// A refill moves a page's worth of chunks, doubling with each refill until
/// it reaches the class's full batch: the first refills of a class no
/// longer carve (and touch) up to 8 KiB for a program that uses a handful
/// of its chunks. 2^5 pages is past every class's batch.
const RAMP_STEPS: u8 = 5;

/// Buckets of `group_by_page`: pages are grouped by their number modulo
/// this (a batch of at most `cache::BATCH_MAX` chunks spans a few pages).
const PAGE_BUCKETS: usize = 64;
// `grouped` keeps the buckets it has seen in a u64.
const _: () = assert!(PAGE_BUCKETS <= 64);

/// Refills of classes above this go in as they came, ungrouped: their
/// chunks take a page per four or fewer, and their batches (at most 16)
/// are too small to pay for the grouping (with every class grouped,
/// sh8_like, whose blocks reach 4000 bytes, ran 3-5 % slower).
const GROUP_MAX_SIZE: usize = 1024;

/// Batches (of any class) that go into the cache grouped by page after the
/// zone last collected chunks other CPUs freed (`in_page_order`).
pub(super) const MIXED_FILLS: u32 = 256;

impl Locked {
    /// Moves up to a batch of chunks of class `c` into this CPU's cache, in
    /// one section, if the caller runs on this zone's CPU (else they go
    /// straight back). Amortises the lock over the batch. The stash comes
    /// first: its chunks move whole, with no slab touched.
    ///
    /// Chunks from the slabs, like the stash's, go in in the order they
    /// came (grouped by page while other CPUs' frees come back:
    /// `in_page_order`): the order a page's chunks first went out in,
    /// spread over cache lines against false sharing, is the carve's
    /// (`carve_page`), and chunks freed in the order they were allocated
    /// keep it.
    #[inline(never)]
    pub fn fill_cache(&self, c: usize) {
        let c = c % NCLASSES;
        // SAFETY: lock held; a short read of this class's field.
        if unsafe { (*self.cz(c)).fills } == 0 {
            // The zone's first fill of the class (`fill_batch` counts
            // them from here on): the stack's capacity is still 0.
            cache::prepare(self.idx, c);
        }
        cache::enable(c);
        // Not on this zone's CPU (the owner found the zone held by a
        // thread preempted in it, and came here; or this thread moved):
        // the section would refuse the batch, which then went back chunk
        // by chunk. With four threads on two CPUs handing blocks over
        // (xmalloc_like), 20,000 of 33,000 refills a run did that: a
        // batch gathered and given back for each malloc. A racy test (the
        // section still checks), and the caller has its chunk either way.
        if cpu::current_zone() != self.idx {
            return;
        }
        self.look_at_large_rings();
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
        self.in_page_order(c, got.get(..n).unwrap_or_default(), |batch| {
            self.push_refill(c, batch)
        });
    }

    /// Pushes a refill's chunks (`fill_cache`), oldest first.
    fn push_refill(&self, c: usize, order: &[*mut u8]) {
        // The ring pops its oldest chunk first: in this order, successive
        // mallocs get the chunks in the order the batch holds them, a page's
        // at a time, forwards as a slab carves them (a program that walks its
        // objects in the order it made them, such as CPython's collector,
        // then walks memory forwards: PYTHONMALLOC=malloc ran 1.35x faster
        // than with the batch reversed, docs/experiments.md).
        if !order.is_empty() && !cache::push_bulk(self.idx, c, order) {
            // The thread left this zone's CPU: they go back.
            // SAFETY: chunks we just allocated from our own slabs and did
            // not push.
            unsafe { self.free_local_all(order) };
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
            add_locked(&self.z.stats.class[c].allocs, n);
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

impl Locked {
    /// Calls `f` with `batch` (chunks of class `c` on their way into the
    /// cache: a refill's, or the stash's) grouped by page
    /// (`group_by_page`) if the class is at most `GROUP_MAX_SIZE`, the
    /// zone has lately collected other CPUs' frees (`MIXED_FILLS`) and the
    /// batch is not grouped already (`grouped`), else as it is.
    ///
    /// Chunks freed on the CPU that allocated them come back in the order
    /// they were freed (the cache, the stash and the slabs' free lists
    /// each keep it, or reverse it whole), so a program that frees in the
    /// order it allocated gets them back in address order; grouping them
    /// would only cost time (a third of the time of a program that turns
    /// 20,000 chunks over, whose batches the page sort cut up a little
    /// more at every round trip). Chunks freed by other CPUs come back in
    /// whatever order the frees reached their slabs, and grouped, a
    /// consumer that reads what a producer made touches a page after
    /// another (`xmalloc_like` 0.80 of the time, docs/experiments.md). The
    /// grouping's array is not made for classes that move a few chunks at
    /// a time (its memset showed).
    pub(super) fn in_page_order<R>(
        &self,
        c: usize,
        batch: &[*mut u8],
        f: impl FnOnce(&[*mut u8]) -> R,
    ) -> R {
        let inner = self.inner();
        // SAFETY: lock held; a short access through the raw pointer.
        let mixed = unsafe {
            let m = (*inner).mixed;
            (*inner).mixed = m.saturating_sub(1);
            m
        };
        if mixed == 0 || size_class::class_size(c) > GROUP_MAX_SIZE || grouped(batch) {
            return f(batch);
        }
        let mut order = [ptr::null_mut::<u8>(); cache::BATCH_MAX];
        let n = group_by_page(batch, &mut order);
        f(order.get(..n).unwrap_or_default())
    }
}

/// True if `got` holds each page's chunks together already (no page
/// bucket comes back once the batch has left it), which `group_by_page`
/// would copy as they are: one pass with the buckets seen in a register.
/// Remote frees that came back in the order their chunks went out (a
/// consumer that frees a producer's blocks in the order they were made)
/// are grouped; the counting sort then cost a quarter of the producer's
/// refills, its count bytes read back right after each increment
/// (`xmalloc_deep` pinned, one producer and one consumer: 0.83 of the time).
fn grouped(got: &[*mut u8]) -> bool {
    let mut seen = 0u64;
    let mut last = usize::MAX;
    for &q in got {
        let b = (q as usize >> PAGE_SHIFT) % PAGE_BUCKETS;
        if b != last {
            if seen & (1 << b) != 0 {
                return false;
            }
            seen |= 1 << b;
            last = b;
        }
    }
    true
}

/// Copies `got` into `out` grouped by page (page number modulo
/// `PAGE_BUCKETS`, a stable counting sort), pages in the order they first
/// come, and returns how many. Chunks freed by other threads come back in
/// the order the frees reached their slabs' remote lists: a list per slab
/// and per outbox flush, each taken newest first, so after a few round
/// trips a batch's chunks lie all over their slab, and successive mallocs
/// touch a page, and a TLB entry, each (`xmalloc_like`: 30 pages for 128
/// blocks of 16-64 bytes against snmalloc's 5). Grouped, a batch touches
/// its pages one after the other whatever its history: `xmalloc_like` 0.80
/// of the time with producers and consumers on different CPUs, where the
/// consumers read every block (docs/experiments.md). Pages in the order
/// they first come, not by bucket: a batch that came back whole but
/// reversed (a run of remote frees, newest first) stays as it is, where
/// sorting its pages upwards made a sawtooth (each page downwards) that
/// the next round trip cut into more pieces (13.0 -> 9.1 pages for 128
/// blocks, `xmalloc_like` 0.97 of the time). No comparison sort: core's
/// has a panic path (an inconsistent order), and Shell's sort cost more
/// than it saved.
fn group_by_page(got: &[*mut u8], out: &mut [*mut u8; cache::BATCH_MAX]) -> usize {
    let bucket = |q: *mut u8| (q as usize >> PAGE_SHIFT) % PAGE_BUCKETS;
    // Each bucket's rank in the order buckets first come (0: not seen),
    // and where each rank starts in `out`: counts, then prefix sums.
    let mut rank = [0u8; PAGE_BUCKETS];
    let mut at = [0u8; PAGE_BUCKETS + 1];
    let mut ranks = 0;
    let n = got.len().min(cache::BATCH_MAX);
    for &q in got.iter().take(n) {
        if let Some(r) = rank.get_mut(bucket(q)) {
            if *r == 0 {
                ranks += 1;
                *r = ranks as u8;
            }
            if let Some(a) = at.get_mut(*r as usize) {
                *a += 1;
            }
        }
    }
    for k in 1..=ranks.min(PAGE_BUCKETS) {
        at[k] += at[k - 1];
    }
    for &q in got.iter().take(n) {
        let r = rank.get(bucket(q)).map_or(0, |&r| r as usize);
        if let Some(a) = at.get_mut(r.wrapping_sub(1)) {
            if let Some(o) = out.get_mut(*a as usize) {
                *o = q;
            }
            *a += 1;
        }
    }
    n
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

    /// A fresh page of a class under 64 bytes goes out (the chunk the
    /// carving malloc takes, then the free list) with every chunk of the
    /// page once and no two in a row on one cache line (`carve_page`).
    #[test]
    fn carved_pages_spread_over_lines() {
        crate::alloc::ensure_init();
        // A zone no CPU of a test machine uses, and no other test.
        let z = lock_index(cpu::MAX_ZONES - 3).expect("zone free");
        for c in (0..NCLASSES).take_while(|&c| size_class::class_size(c) < CACHE_LINE) {
            let size = size_class::class_size(c);
            let first = z.alloc(c);
            assert!(!first.is_null());
            let mut seq = vec![first as usize];
            // SAFETY: the zone's lock is held; `cur` is the slab `first`
            // came from, whose free list holds the rest of the page.
            unsafe {
                let s = (*z.cz(c)).cur;
                let mut f = (*s).free();
                while !f.is_null() {
                    seq.push(f as usize);
                    f = (slab::link_word(f) & !slab::BATCH) as *mut u8;
                }
            }
            let page = first as usize & !(PAGE_SIZE - 1);
            assert_eq!(
                first as usize, page,
                "class {c}: a fresh slab starts on a page"
            );
            let mut sorted = seq.clone();
            sorted.sort_unstable();
            let want: Vec<usize> = (0..PAGE_SIZE.div_ceil(size))
                .map(|k| page + k * size)
                .collect();
            assert_eq!(
                sorted, want,
                "class {c} ({size} B): not every chunk of the page once"
            );
            assert!(
                seq.windows(2)
                    .all(|w| w[0] / CACHE_LINE != w[1] / CACHE_LINE),
                "class {c} ({size} B): two chunks in a row share a line"
            );
        }
    }

    /// `grouped` says yes exactly when the grouping would change nothing:
    /// batches whose pages (buckets) each come in one stretch, and no for
    /// one whose page comes back after another.
    #[test]
    fn grouped_batches_are_left_as_they_are() {
        let page = |p: usize, k: usize| ((0x7100_0000 + p) * PAGE_SIZE + 64 * k) as *mut u8;
        let mut out = [ptr::null_mut(); cache::BATCH_MAX];
        // In order, reversed, pages in any order but each in one stretch;
        // and two whose bucket recurs (page 1, then 2, then 1 again; page
        // 65 shares page 1's bucket).
        let runs: [&[(usize, usize)]; 5] = [
            &[(1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (3, 5)],
            &[(3, 5), (2, 1), (2, 0), (1, 2), (1, 1), (1, 0)],
            &[(7, 3), (7, 1), (2, 9), (5, 0), (5, 2)],
            &[(1, 0), (2, 0), (1, 1)],
            &[(1, 0), (2, 0), (65, 1)],
        ];
        for (i, run) in runs.iter().enumerate() {
            let got: Vec<*mut u8> = run.iter().map(|&(p, k)| page(p, k)).collect();
            let n = group_by_page(&got, &mut out);
            let unchanged = out[..n] == got[..];
            assert_eq!(grouped(&got), i < 3, "batch {i}");
            assert_eq!(
                grouped(&got),
                unchanged,
                "batch {i}: the check and the sort disagree"
            );
        }
    }

    /// The grouping is a permutation that puts each page's chunks together,
    /// in the order they came, pages (buckets) in the order they first came.
    #[test]
    fn group_by_page_keeps_pages_together_in_order() {
        let page = |p: usize, k: usize| ((0x7000_0000 + p) * PAGE_SIZE + 16 * k) as *mut u8;
        // Three pages, interleaved, newest first as a remote list has them;
        // page 65 shares page 1's bucket.
        let mut got = Vec::with_capacity(cache::BATCH_MAX);
        for k in (0..20).rev() {
            got.push(page(3, k));
            got.push(page(1, k));
            if k % 4 == 0 {
                got.push(page(65, k));
            }
        }
        let mut out = [ptr::null_mut(); cache::BATCH_MAX];
        let n = group_by_page(&got, &mut out);
        assert_eq!(n, got.len());
        let out = &out[..n];
        let mut sorted_in: Vec<usize> = got.iter().map(|&q| q as usize).collect();
        let mut sorted_out: Vec<usize> = out.iter().map(|&q| q as usize).collect();
        sorted_in.sort_unstable();
        sorted_out.sort_unstable();
        assert_eq!(sorted_in, sorted_out, "not a permutation");
        // Buckets in the order they first came (3, then 1 with 65), and
        // within a bucket the input order holds.
        let bucket = |q: *mut u8| (q as usize >> PAGE_SHIFT) % PAGE_BUCKETS;
        let mut first: Vec<usize> = Vec::new();
        for &q in &got {
            if !first.contains(&bucket(q)) {
                first.push(bucket(q));
            }
        }
        let mut runs: Vec<usize> = out.iter().map(|&q| bucket(q)).collect();
        runs.dedup();
        assert_eq!(runs, first, "buckets out of their first order");
        for b in 0..PAGE_BUCKETS {
            let want: Vec<_> = got.iter().filter(|&&q| bucket(q) == b).collect();
            let have: Vec<_> = out.iter().filter(|&&q| bucket(q) == b).collect();
            assert_eq!(want, have, "bucket {b} reordered");
        }
    }
}
