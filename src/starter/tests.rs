//! The starter heap's unit tests: each runs in a lone child (`in_lone_child`),
//! on the region as a new process finds it (`reset`).

use super::*;
use crate::cache::tests::in_lone_child;

/// The region as a new process finds it (a test child: the parent's
/// test threads may have used it, or held its lock at the fork).
fn reset() {
    LOCK.store(false, Ordering::Relaxed);
    RETIRED.store(false, Ordering::Relaxed);
    BUMP.store(0, Ordering::Relaxed);
    BIG_BUMP.store(0, Ordering::Relaxed);
    BIG_OFF.store(false, Ordering::Relaxed);
    OPS.store(0, Ordering::Relaxed);
    SINCE.store(0, Ordering::Relaxed);
    for w in &PURGED {
        w.store(0, Ordering::Relaxed);
    }
    COUNTING.store(false, Ordering::Relaxed);
    for f in &FREE {
        f.store(NIL as u64, Ordering::Relaxed);
    }
    for t in &TAKEN {
        t.store(NIL, Ordering::Relaxed);
    }
    for m in &MALLOCS {
        m.store(0, Ordering::Relaxed);
    }
    BIG_BYTES.store(0, Ordering::Relaxed);
    for n in &ON_PAGE {
        n.store(0, Ordering::Relaxed);
    }
    // The region and its side table read as zero again.
    crate::os::purge(base() as *mut u8, core::mem::size_of::<Region>());
}

fn resident_pages() -> usize {
    let mut v = [0u8; PAGES];
    // SAFETY: the region is a page-aligned part of our `.bss`, mapped.
    let r = unsafe { libc::mincore(base() as *mut libc::c_void, REGION_BYTES, v.as_mut_ptr()) };
    assert_eq!(r, 0);
    v.iter().filter(|&&b| b & 1 != 0).count()
}

/// Blocks come out 16-byte aligned, apart, valid; a freed one is found
/// freed and comes back first; the report counts them.
#[test]
fn serves_frees_and_reuses() {
    in_lone_child(|| {
        reset();
        let c = size_class::class_of(24);
        let d = size_class::class_of(1000);
        let (m0, f0, _) = counts();
        let p = alloc(c).expect("a block");
        let q = alloc(d).expect("a block");
        let r = alloc(c).expect("a block");
        for &x in &[p, q, r] {
            assert!(contains(x) && (x as usize).is_multiple_of(16));
        }
        assert!(q as usize >= p as usize + 32 + HDR && r as usize >= q as usize + 1024 + HDR);
        assert!(matches!(find(p), Found::Live(k) if k == c));
        assert!(matches!(find(q), Found::Live(k) if k == d));
        // SAFETY: q is ours, 1024 bytes.
        unsafe { core::ptr::write_bytes(q, 0xa5, 1024) };
        assert!(
            matches!(find(r), Found::Live(k) if k == c),
            "q's bytes spilled into r"
        );
        free(p, c);
        assert!(matches!(find(p), Found::Freed));
        assert_eq!(alloc(c), Some(p), "the freed block comes back first");
        for x in [p, r] {
            free(x, c);
        }
        free(q, d);
        let (m1, f1, live) = counts();
        assert_eq!((m1 - m0, f1 - f0, live), (4, 4, 0));
    });
}

/// Pointers into the region that are not block starts, and blocks whose
/// header was overwritten, are not trusted.
#[test]
fn finds_bad_pointers() {
    in_lone_child(|| {
        reset();
        let c = size_class::class_of(64);
        let p = alloc(c).expect("a block");
        let q = alloc(c).expect("a block");
        for bad in [
            p.wrapping_add(16),
            p.wrapping_add(8),
            at(0),
            p.wrapping_add(48),
        ] {
            assert!(
                matches!(find(bad), Found::Bad),
                "{bad:p} passed for a block"
            );
        }
        // An overflow of p over q's header.
        // SAFETY: p's 64 bytes and q's header, all ours.
        unsafe { core::ptr::write_bytes(p, 0x11, 64 + HDR) };
        assert!(matches!(find(q), Found::Bad));
    });
}

/// After `OPS_MAX` mallocs the region serves malloc no more; pages with
/// no live block go back, the others when their last block is freed;
/// a freed block still serves a malloc the zones cannot.
#[test]
fn retires_purges_and_serves_last() {
    in_lone_child(|| {
        reset();
        let c = size_class::class_of(512);
        let mut v = [core::ptr::null_mut(); 64];
        for x in v.iter_mut() {
            *x = alloc(c).expect("a block");
            // SAFETY: ours, 512 bytes.
            unsafe { core::ptr::write_bytes(*x, 1, 512) };
        }
        assert_eq!(alloc_last_resort(c), None, "not before retirement");
        let used = resident_pages();
        assert!(
            used >= 64 * (512 + HDR) / PAGE_SIZE,
            "{used} pages resident"
        );
        let small = size_class::class_of(16);
        for _ in 64..OPS_MAX {
            let p = alloc(small).expect("a block");
            free(p, small);
        }
        assert_eq!(alloc(small), None, "retired after OPS_MAX mallocs");
        assert!(RETIRED.load(Ordering::Relaxed));
        for &x in &v[..32] {
            free(x, c);
        }
        let left = resident_pages();
        assert!(
            left < used && left <= 32 * (512 + HDR) / PAGE_SIZE + 2,
            "{left} of {used}"
        );
        for &x in &v[32..] {
            free(x, c);
        }
        assert_eq!(
            resident_pages(),
            0,
            "every page back once its blocks are freed"
        );
        let p = alloc_last_resort(c).expect("a freed block");
        assert!(matches!(find(p), Found::Live(k) if k == c));
        // SAFETY: ours again, 512 bytes (the page reads as zero).
        unsafe { core::ptr::write_bytes(p, 2, 512) };
        free(p, c);
    });
}

/// A program that allocates slowly keeps it: `OPS_MAX` mallocs spread
/// over more than `WINDOW_MS` start a new window, not the zones.
#[test]
fn slow_programs_keep_it() {
    in_lone_child(|| {
        reset();
        let c = size_class::class_of(40);
        for round in 0..3 {
            for _ in 0..OPS_MAX / 2 + 10 {
                let p = alloc(c).expect("served");
                free(p, c);
            }
            assert!(!RETIRED.load(Ordering::Relaxed), "retired in round {round}");
            std::thread::sleep(std::time::Duration::from_millis(WINDOW_MS + 20));
        }
        // The window open now may have begun a while ago: two windows'
        // worth, fast, retire it.
        for _ in 0..2 * OPS_MAX + 2 {
            if let Some(p) = alloc(c) {
                free(p, c);
            }
        }
        assert!(RETIRED.load(Ordering::Relaxed), "fast mallocs retire it");
    });
}

/// A block that does not fit goes elsewhere; a region whose small part
/// fills up retires; a big block that does not fit in the big part ends
/// the big ones only.
#[test]
fn retires_when_full() {
    in_lone_child(|| {
        reset();
        // A big block first: it takes no room from the small ones.
        assert!(alloc_big(BIG_MAX).is_some());
        let c = size_class::class_of(MAX_SIZE);
        let mut n = 0;
        while alloc(c).is_some() {
            n += 1;
        }
        assert_eq!(n, SMALL_PART / (MAX_SIZE + HDR));
        assert!(!RETIRED.load(Ordering::Relaxed), "8 KiB left unused");
        let k = size_class::class_of(1024 - HDR);
        while alloc(k).is_some() {}
        assert!(RETIRED.load(Ordering::Relaxed));
        assert_eq!(alloc(size_class::class_of(16)), None);
        assert!(BUMP.load(Ordering::Relaxed) > SMALL_PART - FULL);
        reset();
        assert!(alloc_big(BIG_MAX).is_some() && alloc_big(BIG_PART - BIG_MAX - 2 * HDR).is_some());
        assert_eq!(alloc_big(BIG_MAX), None, "the big part is full");
        assert_eq!(
            alloc_big(20_000),
            None,
            "a big block that does not fit ends them"
        );
        assert!(!RETIRED.load(Ordering::Relaxed), "not the small ones");
        assert!(alloc(size_class::class_of(MAX_SIZE)).is_some());
    });
}

/// Threads share it: a busy lock sends a malloc elsewhere, frees never
/// wait, and no block is handed to two threads at once.
#[test]
fn threads_share_it() {
    in_lone_child(|| {
        reset();
        let ts: std::vec::Vec<_> = (0..4u8)
            .map(|t| {
                std::thread::spawn(move || {
                    let c = size_class::class_of(48 + 16 * t as usize);
                    let mut got = 0;
                    for _ in 0..100 {
                        if let Some(p) = alloc(c) {
                            got += 1;
                            // SAFETY: ours, at least 48 bytes.
                            unsafe { core::ptr::write_bytes(p, t, 48) };
                            std::thread::yield_now();
                            // SAFETY: as above.
                            let s = unsafe { core::slice::from_raw_parts(p, 48) };
                            assert!(s.iter().all(|&b| b == t), "block shared");
                            free(p, c);
                        }
                    }
                    got
                })
            })
            .collect();
        let got: usize = ts.into_iter().map(|t| t.join().unwrap()).sum();
        assert!(got > 0 && got <= 400);
        assert_eq!(counts().2, 0);
    });
}

/// Retirement counts the live blocks while other threads free them: each
/// free either clears a block the walk then skips, or finds it counted and
/// takes the count off, so once every block is freed no page counts one
/// (a count that went below zero would read as billions), and a page the
/// last free emptied went back unless that free found the lock busy.
#[test]
fn retirement_races_frees() {
    in_lone_child(|| {
        for round in 0..20 {
            reset();
            let c = size_class::class_of(64);
            let blocks: std::vec::Vec<usize> = (0..800)
                .map(|_| alloc(c).expect("a block") as usize)
                .collect();
            let chunks: std::vec::Vec<std::vec::Vec<usize>> =
                blocks.chunks(200).map(|b| b.to_vec()).collect();
            let go = std::sync::Arc::new(std::sync::Barrier::new(5));
            let ts: std::vec::Vec<_> = chunks
                .into_iter()
                .map(|mine| {
                    let go = go.clone();
                    std::thread::spawn(move || {
                        go.wait();
                        for p in mine {
                            free(p as *mut u8, c);
                        }
                    })
                })
                .collect();
            go.wait();
            retire_now();
            for t in ts {
                t.join().unwrap();
            }
            assert!(COUNTING.load(Ordering::Relaxed), "round {round}: no walk");
            for (pg, n) in ON_PAGE.iter().enumerate() {
                let n = n.load(Ordering::Relaxed);
                assert_eq!(n, 0, "round {round}: page {pg} still counts {n}");
            }
            assert_eq!(counts().2, 0, "round {round}: bytes still live");
        }
    });
}

/// Blocks above the size classes: new bytes read as zero; a freed one
/// serves a request of at least half its size and keeps its size, and
/// calloc clears it; none above `BIG_MAX`; the report counts their bytes;
/// realloc moves them; retirement walks past them, their pages go back
/// once freed, and a freed one still serves a malloc the arena cannot.
#[test]
fn serves_big_blocks() {
    in_lone_child(|| {
        reset();
        // Runs the parent freed on this CPU would serve mallocs first:
        // pinned (the rings are the CPU's), and drained.
        if let Some(id) = core_affinity::get_core_ids().unwrap_or_default().first() {
            assert!(core_affinity::set_for_current(*id));
        }
        crate::zone::drain_large_rings();
        let small = size_class::class_of(100);
        let a = alloc(small).expect("a block");
        let (p, zeroed) = alloc_big(40_000).expect("a big block");
        assert!(zeroed && contains(p) && (p as usize).is_multiple_of(16));
        let Found::Live(k) = find(p) else {
            panic!("{p:p} not live")
        };
        assert_eq!(block_size(k), 40_000);
        assert_eq!(alloc_big(BIG_MAX + 1), None);
        let (q, _) = alloc_big(20_000).expect("a big block");
        assert!(q as usize >= p as usize + 40_000 + HDR);
        let live = block_size(small) + 40_000 + 20_000;
        assert_eq!(counts().2, live as u64);
        // SAFETY: ours, 40,000 bytes.
        unsafe { core::ptr::write_bytes(p, 3, 40_000) };
        free(p, k);
        assert!(matches!(find(p), Found::Freed));
        let (r, zeroed) = alloc_big(17_000).expect("a big block");
        assert!(r != p && zeroed, "a block over twice the request is kept");
        let z = crate::alloc::calloc(1, 24_000);
        assert_eq!(z, p, "the freed block serves");
        assert!(matches!(find(p), Found::Live(j) if j == k), "its size kept");
        assert_eq!(crate::alloc::usable_size(p), 40_000);
        // SAFETY: ours, 24,000 bytes.
        assert!(unsafe { core::slice::from_raw_parts(p, 24_000) }
            .iter()
            .all(|&b| b == 0));
        // SAFETY: as above.
        unsafe { core::ptr::write_bytes(p, 9, 24_000) };
        let m = crate::alloc::realloc(p, 60_000);
        assert!(contains(m) && m != p && matches!(find(p), Found::Freed));
        // SAFETY: the first 24,000 bytes moved with it.
        assert!(unsafe { core::slice::from_raw_parts(m, 24_000) }
            .iter()
            .all(|&b| b == 9));
        retire_now();
        assert!(
            ON_PAGE.iter().all(|n| n.load(Ordering::Relaxed) < PINNED),
            "the walk got past the big blocks"
        );
        for (x, j) in [(a, small), (q, big_kind(20_000)), (r, big_kind(17_000))] {
            free(x, j);
        }
        crate::alloc::free(m);
        assert_eq!(counts().2, 0);
        assert_eq!(resident_pages(), 0, "every page back");
        assert_eq!(alloc_big(20_000), None, "retired");
        assert_eq!(alloc_big_last_resort(100_000), None, "none that large");
        let l = alloc_big_last_resort(20_000).expect("a freed big block");
        assert!(matches!(find(l), Found::Live(j) if block_size(j) >= 20_000));
        // SAFETY: ours again, 20,000 bytes.
        unsafe { core::ptr::write_bytes(l, 4, 20_000) };
        crate::alloc::free(l);
        assert_eq!(counts().2, 0);
    });
}

/// realloc, usable size and free know its blocks; aligned requests
/// never get one. (That malloc's misses come here first, the C test
/// `starter` checks: this process's caches may hold chunks already.)
#[test]
fn entry_points_know_it() {
    in_lone_child(|| {
        reset();
        let p = alloc(size_class::class_of(100)).expect("a block");
        assert!(contains(p));
        assert_eq!(
            crate::alloc::usable_size(p),
            size_class::class_size(size_class::class_of(100))
        );
        // SAFETY: ours, 100 bytes.
        unsafe { core::ptr::write_bytes(p, 7, 100) };
        assert_eq!(crate::alloc::realloc(p, 60), p, "a shrink that fits stays");
        let q = crate::alloc::realloc(p, 3000);
        // SAFETY: the first 60 bytes moved with it.
        assert!(unsafe { core::slice::from_raw_parts(q, 60) }
            .iter()
            .all(|&b| b == 7));
        assert!(matches!(find(p), Found::Freed), "the old block was freed");
        let a = crate::alloc::memalign(64, 64);
        assert!(!contains(a) && (a as usize).is_multiple_of(64));
        crate::alloc::free(q);
        crate::alloc::free(a);
    });
}
