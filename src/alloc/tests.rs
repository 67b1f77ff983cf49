//! malloc and free through the whole allocator: every class, realloc
//! across classes and into large and huge blocks, calloc, alignment,
//! remote frees from another thread, and user data that looks like a
//! freed chunk's mark.

use super::*;

#[test]
fn malloc_free_every_size_class() {
    ensure_init();
    for size in (0..=SMALL_MAX + 100).step_by(7).chain([1 << 20, 40 << 20]) {
        let p = malloc(size);
        assert!(!p.is_null());
        assert_eq!(p as usize % 16, 0);
        assert!(usable_size(p) >= size);
        unsafe { core::ptr::write_bytes(p, 0xCD, size) };
        free(p);
    }
}

#[test]
fn realloc_keeps_contents_across_classes() {
    let mut p = malloc(1);
    unsafe { *p = 7 };
    let mut size = 1usize;
    while size < (64 << 20) {
        let n = size * 3 / 2 + 1;
        let u = usable_size(p);
        unsafe {
            for i in 1..u {
                *p.add(i) = (i % 251) as u8;
            }
        }
        let q = realloc(p, n);
        assert!(!q.is_null());
        unsafe {
            assert_eq!(*q, 7);
            for i in 1..u.min(n) {
                assert_eq!(*q.add(i), (i % 251) as u8, "size {size} -> {n} at {i}");
            }
        }
        p = q;
        size = n;
    }
    // And back down.
    while size > 1 {
        size /= 3;
        p = realloc(p, size.max(1));
        assert_eq!(unsafe { *p }, 7);
    }
    free(p);
}

fn mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .count()
}

/// Two interleaved blocks grown in 256 KiB steps: neither can grow in
/// place, so each step moves pages (`large::move_large`). Contents must
/// survive every move, the old runs come back zeroed, and the process's
/// mappings stay bounded once the blocks are freed.
#[test]
fn large_realloc_moves_pages_and_keeps_contents() {
    let before = mappings();
    let mut a = malloc(large::MOVE_MIN);
    let mut b = malloc(large::MOVE_MIN);
    let mut size = large::MOVE_MIN;
    let fill = |p: *mut u8, n: usize, seed: u8| unsafe {
        for i in (0..n).step_by(4096) {
            *p.add(i) = seed ^ (i >> 12) as u8;
        }
    };
    let check = |p: *mut u8, n: usize, seed: u8| unsafe {
        for i in (0..n).step_by(4096) {
            assert_eq!(*p.add(i), seed ^ (i >> 12) as u8, "offset {i} of {n}");
        }
    };
    fill(a, size, 1);
    fill(b, size, 2);
    while size < (8 << 20) {
        let n = size + (256 << 10);
        a = realloc(a, n);
        check(a, size, 1);
        b = realloc(b, n);
        check(b, size, 2);
        size = n;
        fill(a, size, 1);
        fill(b, size, 2);
    }
    free(a);
    free(b);
    // A fresh block of the same size reads as zero where fresh pages are.
    let c = calloc(1, size);
    assert!(all_zero(c, size));
    free(c);
    let after = mappings();
    assert!(after < before + 40, "mappings {before} -> {after}");
}

/// A large block grown past the largest run becomes a huge block with
/// its pages moved; it keeps its contents, also when it later outgrows
/// its mapping (several kernel mappings then: `realloc_huge` copies).
#[test]
fn large_block_grown_into_huge_keeps_contents() {
    let check = |p: *mut u8, n: usize, seed: u8| unsafe {
        for i in (0..n).step_by(4096) {
            assert_eq!(*p.add(i), seed ^ (i >> 12) as u8, "offset {i} of {n}");
        }
    };
    let fill = |p: *mut u8, n: usize, seed: u8| unsafe {
        for i in (0..n).step_by(4096) {
            *p.add(i) = seed ^ (i >> 12) as u8;
        }
    };
    let mut size = large::HUGE_MIN - (1 << 20);
    let mut p = malloc(size);
    assert!(matches!(
        pagemap::lookup(p as usize),
        pagemap::Lookup::Large(_)
    ));
    fill(p, size, 7);
    for grow in [2 << 20, 1 << 20, 40 << 20] {
        let n = size + grow;
        p = realloc(p, n);
        assert!(!p.is_null());
        assert!(large::huge_usable(p as usize).is_some_and(|u| u >= n));
        check(p, size, 7);
        size = n;
        fill(p, size, 7);
    }
    p = realloc(p, 20 << 20);
    check(p, 20 << 20, 7);
    free(p);
}

/// True if the `n` bytes at `p`, a live block of at least `n`, are all zero.
fn all_zero(p: *mut u8, n: usize) -> bool {
    // SAFETY: the caller's block is live and holds `n` readable bytes.
    unsafe { core::slice::from_raw_parts(p, n) }
        .iter()
        .all(|&x| x == 0)
}

#[test]
fn calloc_zeroes_dirty_memory() {
    for size in [16usize, 100, 5000, 20_000, 300_000, 3 << 20] {
        let p = malloc(size);
        unsafe { core::ptr::write_bytes(p, 0xAA, size) };
        free(p);
        let q = calloc(1, size);
        assert!(all_zero(q, size));
        free(q);
    }
    assert!(calloc(usize::MAX / 2, 3).is_null());
    assert_eq!(os::errno(), libc::ENOMEM);
}

#[test]
fn aligned_allocations() {
    let mut a = 16;
    while a <= 1 << 22 {
        for size in [1usize, 15, 100, 4096, 20_000, 1 << 20] {
            let p = memalign(a, size);
            assert!(!p.is_null());
            assert_eq!(p as usize % a, 0, "align {a} size {size}");
            assert!(usable_size(p) >= size);
            free(p);
        }
        a *= 2;
    }
}

#[test]
fn huge_blocks_grow_and_shrink() {
    let p = malloc(50 << 20);
    assert!(!p.is_null());
    unsafe { core::ptr::write_bytes(p, 3, 50 << 20) };
    let q = realloc(p, 200 << 20);
    assert!(!q.is_null());
    assert_eq!(unsafe { *q.add((50 << 20) - 1) }, 3);
    let r = realloc(q, 40 << 20);
    assert_eq!(unsafe { *r.add((40 << 20) - 1) }, 3);
    free(r);
    assert!(malloc(usize::MAX).is_null());
    assert!(malloc(MAX_REQUEST + 1).is_null());
}

#[test]
fn remote_frees_from_another_thread() {
    let ptrs: Vec<usize> = (0..100_000)
        .map(|i| malloc(16 + i % 500) as usize)
        .collect();
    let h = std::thread::spawn(move || {
        if let Some(id) = core_affinity::get_core_ids().and_then(|v| v.last().copied()) {
            core_affinity::set_for_current(id);
        }
        for p in ptrs {
            free(p as *mut u8);
        }
    });
    h.join().unwrap();
    // Reuse works after remote frees.
    for _ in 0..100_000 {
        let p = malloc(64);
        assert!(!p.is_null());
        free(p);
    }
}

/// A chunk whose word 1 holds the free mark as user data is not a freed
/// chunk: free's hit path sends it to `check_double_free`, which finds it
/// in no cache, stash or free list, and frees it as usual; the class goes
/// on serving mallocs.
#[test]
fn user_data_equal_to_the_free_mark() {
    ensure_init();
    let key = FREE_KEY.load(Ordering::Relaxed);
    for size in [16usize, 48, 256, 4096] {
        // A chunk of a zone's slab (not the starter heap's), which free's
        // hit path takes.
        let mut p = malloc(size);
        for _ in 0..10_000 {
            if pagemap::chunk_fast(p as usize).is_some() {
                break;
            }
            let q = malloc(size);
            free(p);
            p = q;
        }
        assert!(pagemap::chunk_fast(p as usize).is_some(), "no slab chunk");
        unsafe { *(p as *mut u64).add(1) = key };
        free(p);
        for _ in 0..1000 {
            let q = malloc(size);
            assert!(!q.is_null());
            // Handed out again, a chunk carries no mark.
            assert_ne!(unsafe { *(q as *const u64).add(1) }, key);
            unsafe { core::ptr::write_bytes(q, 0x5a, size) };
            free(q);
        }
    }
}

/// A zone keeps up to `BIG_SLOTS` freed large runs of at most 16 pages,
/// 128 pages in all, for its CPU (`zone/bigs.rs`): a kept run reads as
/// freed memory (a second free is a double free), comes back only for a
/// request of its alignment and of its size or up to a quarter less, the
/// best fit and newest first, and the oldest go back to the page runs when
/// the slots or the pages run out.
#[test]
fn zones_keep_freed_large_runs() {
    use zone::BIG_SLOTS as N;
    ensure_init();
    let head = |p: *mut u8| match pagemap::lookup(p as usize) {
        pagemap::Lookup::Large(d) => d,
        _ => panic!("{p:p} is not a live large block"),
    };
    let freed = |p: *mut u8| {
        matches!(pagemap::lookup(p as usize),
                 pagemap::Lookup::Invalid(m) if m.contains("freed memory"))
    };
    let run = |pages: usize| large::alloc_large(pages * PAGE_SIZE, PAGE_SIZE).0;
    // Held throughout: no other thread uses this zone's slots meanwhile.
    let z = zone::lock_index(crate::cpu::nzones() - 1).expect("zone lock");
    z.drain_large();
    // Two runs of 5 pages, then 6, 7, 8, 6, ...: 107 pages for 16 slots.
    let pages: [usize; N + 1] =
        core::array::from_fn(|i| if i < 2 { 5 } else { [6, 7, 8][(i - 2) % 3] });
    let p = pages.map(run);
    let d = p.map(head);
    unsafe {
        for i in 0..N {
            z.put_large(d[i]);
            assert!(freed(p[i]) && freed(p[i].add(PAGE_SIZE)));
        }
        // Nothing for 2 pages, nor at an alignment the 8-page runs lack.
        assert!(z.take_large(2, 1).is_none());
        let tz = (0..N)
            .filter(|&i| pages[i] == 8)
            .map(|i| (p[i] as usize / PAGE_SIZE).trailing_zeros())
            .max()
            .unwrap_or(0);
        assert!(z.take_large(8, 2 << tz).is_none());
        // The newest of the two 5-page runs first, for 5 pages and for 4
        // (a quarter more at most).
        for ask in [5, 4] {
            assert_eq!(z.take_large(ask, 1), Some(p[1]));
            assert_eq!(head(p[1]), d[1]);
            z.put_large(d[1]);
        }
        // One more pushes the oldest out to the page runs (checked by the
        // slots alone: another test may have taken those pages since).
        z.put_large(d[N]);
        // The rest, newest first for each size, then the one 5-page run
        // still kept, and no other.
        for i in (2..=N).rev() {
            assert_eq!(z.take_large(pages[i], 1), Some(p[i]), "run {i}");
        }
        assert_eq!(z.take_large(5, 1), Some(p[1]));
        assert!(z.take_large(5, 1).is_none());
        // Nine runs of 16 pages pass the 128 pages: the first goes.
        let q: [*mut u8; 9] = [16; 9].map(run);
        for &b in &q {
            z.put_large(head(b));
        }
        for i in (1..9).rev() {
            assert_eq!(z.take_large(16, 1), Some(q[i]));
        }
        assert!(z.take_large(16, 1).is_none());
        drop(z);
        // The others are live large blocks again, freed the usual way
        // (which may keep them in the caller's zone).
        for &b in p[1..].iter().chain(&q[1..]) {
            free(b);
        }
    }
}

/// In a lone child pinned to one CPU: a freed block of 20-64 KiB goes to
/// that CPU's large ring of its run size (marked freed: a second free is a
/// double free) and a malloc of its size takes it back, oldest first; a
/// size whose ring is empty takes a run of the next size; what a full ring
/// refuses goes to the zone's kept runs; a run of a size no ring keeps (9
/// pages, grown in place) and an aligned request stay out of the rings;
/// `malloc_trim` empties them.
#[test]
fn cpus_keep_freed_large_runs_in_rings() {
    ensure_init();
    if !crate::cache::on() {
        eprintln!("no rseq: the cache stays off, nothing to test");
        return;
    }
    crate::cache::tests::in_lone_child(large_rings);
}

fn large_rings() {
    let ids = core_affinity::get_core_ids().unwrap_or_default();
    let Some(id) = ids.first() else { return };
    assert!(core_affinity::set_for_current(*id));
    let zone = crate::cpu::current_zone();
    let freed = |p: *mut u8| {
        matches!(pagemap::lookup(p as usize),
                 pagemap::Lookup::Invalid(m) if m.contains("freed memory"))
    };
    let live = |p: *mut u8| matches!(pagemap::lookup(p as usize), pagemap::Lookup::Large(_));
    let zone_kept = || {
        zone::zone(zone)
            .stats
            .big_bytes
            .load(core::sync::atomic::Ordering::Relaxed) as usize
    };
    // A ring has no room until its CPU's first refused push: one run
    // through it first. Then bytes in the rings, less what the rings of
    // other ids held at the fork (with concurrency ids, `trim` empties
    // only the caller's).
    for _ in 0..2 {
        free(memalign(PAGE_SIZE, 32768));
    }
    crate::api::trim();
    let others = crate::cache::large_totals().bytes as usize;
    let kept = || crate::cache::large_totals().bytes as usize - others;
    assert_eq!(zone_kept(), 0);
    // 32 KiB: eight pages, ring 3. Sixteen freed: the ring keeps `cap` of
    // them, the zone the others. (Page-aligned, so that the starter heap
    // does not serve them; what the rings hold serves both.)
    let cap = crate::cache::large_capacity(3);
    assert_eq!(cap, 4, "128 KiB of 32 KiB runs");
    let v: Vec<*mut u8> = (0..16).map(|_| memalign(PAGE_SIZE, 32768)).collect();
    for &p in &v {
        assert!(live(p));
        free(p);
        assert!(freed(p), "a kept run reads as live");
    }
    assert_eq!(kept(), cap * 32768);
    assert_eq!(zone_kept(), (16 - cap) * 32768);
    // The ring hands out its oldest first.
    for (i, &p) in v.iter().take(cap).enumerate() {
        let q = malloc(32768 - 100);
        assert_eq!(q, p, "ring run {i}");
        assert!(live(q));
    }
    assert_eq!(kept(), 0);
    // 28 KiB (seven pages): its ring is empty, the 8-page ring's run serves.
    free(v[0]);
    assert_eq!(kept(), 32768);
    assert_eq!(malloc(28 * 1024), v[0]);
    assert_eq!(usable_size(v[0]), 32768);
    // Aligned beyond a page: never from a ring.
    free(v[0]);
    let a = memalign(2 * PAGE_SIZE, 30000);
    assert!(a != v[0] && kept() == 32768);
    free(a);
    // A run grown in place to nine pages: no ring keeps it.
    let before = kept();
    let g = large::alloc_large(8 * PAGE_SIZE, PAGE_SIZE).0;
    let g = if unsafe { large::grow_large(pagemap::slab_desc_fast(g as usize), 9 * PAGE_SIZE) } {
        assert_eq!(usable_size(g), 9 * PAGE_SIZE);
        g
    } else {
        g // no free neighbour: an 8-page run, which the ring keeps
    };
    let nine = usable_size(g) == 9 * PAGE_SIZE;
    free(g);
    assert_eq!(kept() == before, nine);
    for &p in v.iter().skip(1).take(cap - 1) {
        free(p);
    }
    assert!(kept() > 0);
    // Rings that stay idle while the CPU works on small blocks give their
    // runs back (a look once in 1024 cache fills).
    let small: Vec<*mut u8> = (0..300_000).map(|_| malloc(64)).collect();
    assert_eq!(kept(), 0, "idle rings kept their runs");
    assert!(freed(v[1]), "a run given back reads as live");
    for &p in &small {
        free(p);
    }
    free(memalign(PAGE_SIZE, 32768));
    assert!(kept() > 0);
    crate::api::trim();
    assert_eq!(kept(), 0, "trim left runs in the rings");
}
