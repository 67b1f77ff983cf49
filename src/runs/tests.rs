//! The page runs' unit tests.

use super::state::{bin_of, NBINS};
use super::*;
use crate::os::PAGE_SIZE;

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
    let a = RUNS.alloc(3, 1, MapPages::Ends).unwrap();
    let b = RUNS.alloc(5, 4, MapPages::Every).unwrap();
    assert_eq!(b.head % 4, 0);
    assert_eq!(a.npages, 3);
    // Every page of a run mapped whole names its head; a run mapped at its
    // ends, its first and last pages.
    for p in 0..5 {
        assert_eq!(
            pagemap::map_slot(b.base, b.head + p).load(Ordering::Relaxed) as usize,
            b.head
        );
    }
    for p in [0, 2] {
        assert_eq!(
            pagemap::map_slot(a.base, a.head + p).load(Ordering::Relaxed) as usize,
            a.head
        );
    }
    // Mark them as large runs so lookups see them, then free and reuse.
    unsafe {
        (*a.desc()).set_kind(pagemap::KIND_LARGE);
    }
    RUNS.free(a.base, a.head, a.npages);
    RUNS.free(b.base, b.head, b.npages);
    let c = RUNS.alloc(3, 1, MapPages::Ends).unwrap();
    assert!(!c.zeroed || c.npages == 3);
    RUNS.free(c.base, c.head, c.npages);
    assert!(RUNS.alloc(MAX_RUN_PAGES + 1, 1, MapPages::Ends).is_none());
    assert!(RUNS.alloc(0, 1, MapPages::Ends).is_none());
}

#[test]
fn purge_returns_memory_and_marks_clean() {
    crate::alloc::ensure_init();
    let r = RUNS.alloc(64, 1, MapPages::Ends).unwrap();
    let p = r.addr() as *mut u8;
    unsafe { core::ptr::write_bytes(p, 0xAB, 64 * PAGE_SIZE) };
    RUNS.free(r.base, r.head, r.npages);
    assert!(RUNS.purge(0) >= 64 || RUNS.dirty_pages() == 0);
    // Other tests run concurrently and may free dirty runs meanwhile: check
    // only what the run says about itself.
    let r2 = RUNS.alloc(64, 1, MapPages::Ends).unwrap();
    if r2.zeroed {
        let s = unsafe { core::slice::from_raw_parts(r2.addr() as *const u8, 64 * PAGE_SIZE) };
        assert!(s.iter().all(|&b| b == 0));
    }
    RUNS.free(r2.base, r2.head, r2.npages);
}
