//! slaballoc as Rust's `#[global_allocator]`.

use std::alloc::{GlobalAlloc, Layout};

#[global_allocator]
static A: slaballoc::SlabAlloc = slaballoc::SlabAlloc;

#[test]
fn collections_run_on_slaballoc() {
    // Every malloc is served by the CPU cache (`cache_allocs`) or takes a
    // chunk from a slab (`allocs`, which also counts chunks moved into the
    // cache). `allocs` alone can grow by less than the mallocs made here:
    // other test threads' frees refill the cache this thread pops from.
    let served = || {
        let t = slaballoc::totals();
        t.allocs + t.cache_allocs
    };
    let before = served();
    let v: Vec<String> = (0..10_000).map(|i| format!("item {i}")).collect();
    let joined = v.join(",");
    assert!(joined.starts_with("item 0,item 1,"));
    assert!(served() >= before + 10_000);
    let m: std::collections::HashMap<u32, Vec<u8>> =
        (0..1000).map(|i| (i, vec![i as u8; i as usize])).collect();
    assert_eq!(m[&999].len(), 999);
}

#[test]
fn alignments_and_zeroing() {
    for align in [1usize, 8, 16, 32, 64, 256, 4096, 1 << 16, 1 << 21] {
        for size in [1usize, 24, 1000, 20_000, 1 << 20] {
            let l = Layout::from_size_align(size, align).unwrap();
            // SAFETY: non-zero size layouts; every block is freed with its layout.
            unsafe {
                let p = A.alloc_zeroed(l);
                assert!(!p.is_null());
                assert_eq!(p as usize % align, 0, "align {align} size {size}");
                assert!(std::slice::from_raw_parts(p, size).iter().all(|&b| b == 0));
                p.write_bytes(0x5a, size);
                let q = A.realloc(p, l, size * 2);
                assert_eq!(q as usize % align, 0);
                assert!(std::slice::from_raw_parts(q, size)
                    .iter()
                    .all(|&b| b == 0x5a));
                A.dealloc(q, Layout::from_size_align(size * 2, align).unwrap());
            }
        }
    }
}

#[test]
fn threads_free_each_others_blocks() {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Box<[u64; 8]>>(1024);
    let h = std::thread::spawn(move || {
        for i in 0..200_000u64 {
            tx.send(Box::new([i; 8])).unwrap();
        }
    });
    let mut n = 0u64;
    for b in rx {
        assert!(b.iter().all(|&x| x == n));
        n += 1;
    }
    h.join().unwrap();
    assert_eq!(n, 200_000);
}
