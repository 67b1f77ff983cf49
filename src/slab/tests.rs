//! The slab protocol's unit tests (the loom models are `tests/loom.rs`).

use super::*;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

/// A 16-byte aligned stand-in for a chunk, as real chunks are.
#[derive(Clone, Copy)]
#[repr(C, align(16))]
struct C16([u64; 2]);

impl C16 {
    fn as_mut_ptr(&mut self) -> *mut u64 {
        self.0.as_mut_ptr()
    }
}

/// A 64-byte chunk (a class whose batch nodes carry 23 chunks).
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct C64([u64; 8]);

/// The chunks of `mem`, as pointers.
fn chunk_ptrs(mem: &mut [C64]) -> Vec<*mut u8> {
    mem.iter_mut()
        .map(|m| m.0.as_mut_ptr() as *mut u8)
        .collect()
}

/// Makes `c[0]` a list's only node, carrying `c[1]` and `c[2]` (room for
/// more): the old list of the tests below.
///
/// # Safety
/// `c` holds at least three chunks of one slab at `base`, a class that
/// carries at least two.
unsafe fn node_of_two(c: &[*mut u8], base: usize) {
    unsafe {
        set_link(c[0], 0);
        batch_add(c[0], 0, c[1], base);
        batch_add(c[0], 1, c[2], base);
    }
}

fn new_desc() -> Box<Desc> {
    // SAFETY: Desc is plain data for which all-zero is a valid value.
    unsafe { Box::new(core::mem::zeroed()) }
}

#[test]
fn detach_then_first_remote_free_notifies_once() {
    let d = new_desc();
    let dp = &*d as *const Desc as *mut Desc;
    let mut chunks = [C16([0; 2]); 4];
    unsafe {
        assert!(try_detach(dp));
        assert!(take_remote(dp).is_null());
        let c0 = chunks[0].as_mut_ptr() as *mut u8;
        let c1 = chunks[1].as_mut_ptr() as *mut u8;
        assert!(matches!(remote_push(dp, c0), Pushed::MustNotify));
        assert!(matches!(remote_push(dp, c1), Pushed::Quiet));
        assert!(!try_reattach(dp));
        let l = take_remote(dp);
        assert_eq!(l, c1);
        assert_eq!(absorb(dp, l, 10, 0), Some(2));
        assert_eq!((*dp).free(), c1);
        // Attached now: a detach with an empty list works again.
        assert!(try_detach(dp));
        assert!(try_reattach(dp));
    }
}

#[test]
fn detach_fails_when_remote_chunks_wait() {
    let d = new_desc();
    let dp = &*d as *const Desc as *mut Desc;
    let mut c = C16([0; 2]);
    unsafe {
        assert!(matches!(
            remote_push(dp, c.as_mut_ptr() as *mut u8),
            Pushed::Quiet
        ));
        assert!(!try_detach(dp));
        assert!(!take_remote(dp).is_null());
        assert!(try_detach(dp));
    }
}

#[test]
fn cycle_is_detected() {
    let d = new_desc();
    let dp = &*d as *const Desc as *mut Desc;
    let mut c = C16([0; 2]);
    let p = c.as_mut_ptr() as *mut u8;
    unsafe {
        set_link(p, p as usize); // a chunk linked to itself
        assert_eq!(absorb(dp, p, 100, 0), None);
    }
}

/// A list of two batch nodes (64-byte chunks: 23 carried each at most)
/// goes through a remote push and `absorb`: the count includes the
/// carried chunks, the tail keeps its flag, and `batch_take` hands the
/// carried chunks back, last first, then clears the flag. A node that
/// claims more than the class can carry is refused as corrupt.
#[test]
fn batch_nodes_carry_chunks_through_the_remote_list() {
    assert_eq!(batch_cap(16), 0);
    assert_eq!(batch_cap(32), 7);
    assert_eq!(batch_cap(64), 23);
    assert_eq!(batch_cap(16384), MAX_CARRY);
    let d = new_desc();
    let dp = &*d as *const Desc as *mut Desc;
    let mut mem = [C64([0; 8]); 8];
    let c = chunk_ptrs(&mut mem);
    let base = c[0] as usize;
    unsafe {
        // Tail node c[0] carries c[1], c[2]; head node c[3] carries c[4].
        node_of_two(&c, base);
        set_link(c[3], c[0] as usize);
        batch_add(c[3], 0, c[4], base);
        assert_eq!(link(c[3]), c[0]);
        assert!(batch_contains(c[0], c[2], base) && !batch_contains(c[0], c[4], base));
        assert!(matches!(remote_push_list(dp, c[3], c[0], 4), Pushed::Quiet));
        let l = take_remote(dp);
        assert_eq!(l, c[3]);
        assert_eq!(absorb(dp, l, 5, 23), Some(5));
        assert!(take_remote(dp).is_null());
        assert_eq!(link_word(c[0]) & BATCH, BATCH, "the tail keeps its flag");
        assert_eq!(batch_len(c[0]), 2);
        assert_eq!(batch_take(c[3], base), c[4]);
        assert_eq!(link_word(c[3]) & BATCH, 0);
        assert_eq!(link(c[3]), c[0]);
        assert_eq!(batch_take(c[0], base), c[2]);
        assert_eq!(batch_take(c[0], base), c[1]);
        assert_eq!(link_word(c[0]), 0);
        // Corrupt counts: more than the class carries, or zero.
        set_link(c[5], 0);
        batch_add(c[5], 0, c[6], base);
        batch_add(c[5], 1, c[7], base);
        assert!(batch_verify(c[5]));
        batch_truncate(c[5], 1);
        assert!(batch_verify(c[5]) && batch_entry(c[5], 0, base) == c[6]);
        // A stray write into an entry no longer matches the check.
        *(c[5].add(18) as *mut u16) ^= 1;
        assert!(!batch_verify(c[5]));
        *(c[5].add(18) as *mut u16) ^= 1;
        assert_eq!(absorb(dp, c[5], 100, 0), None);
        *(c[5] as *mut usize).add(2) = 0;
        assert_eq!(absorb(dp, c[5], 100, 23), None);
    }
}

/// A run pushed with `push_run` leaves the list `batch_add` and `set_link`
/// would (as many nodes): every node verifies, and popping the
/// list (nodes' entries newest first, then the node) gives the run back
/// reversed, then the old list as it was.
#[test]
fn push_run_fills_nodes_of_its_own() {
    let cap = batch_cap(64);
    let mut mem = [C64([0; 8]); 100];
    let c = chunk_ptrs(&mut mem);
    let base = c[0] as usize;
    unsafe {
        node_of_two(&c, base);
        let runs: [&[*mut u8]; 3] = [&c[3..4], &c[4..40], &c[40..100]];
        let mut head = c[0];
        // The nodes `batch_add` and `set_link` would make, one at a time:
        // the old node takes chunks until full, then a chunk that finds
        // the head full becomes the next.
        let mut nodes = 1;
        let mut k = 2;
        for run in runs {
            head = push_run(head, run, base, cap);
            for _ in run.iter() {
                if k < cap {
                    k += 1;
                } else {
                    nodes += 1;
                    k = 0;
                }
            }
        }
        // Pop everything, as a refill does.
        let mut out = Vec::new();
        let mut f = head;
        while !f.is_null() {
            let w = link_word(f);
            if w & BATCH != 0 {
                assert!(batch_verify(f), "node {f:?} fails its check");
                let k = batch_len(f);
                assert!((1..=cap).contains(&k));
                for i in (0..k).rev() {
                    out.push(batch_entry(f, i, base));
                }
            }
            out.push(f);
            nodes -= 1;
            f = (w & !BATCH) as *mut u8;
        }
        assert_eq!(nodes, 0, "not the nodes one push at a time makes");
        let mut want: Vec<*mut u8> = c[3..100].iter().rev().copied().collect();
        want.extend([c[2], c[1], c[0]]);
        assert_eq!(out, want);
    }
}

/// Many threads push while the owner repeatedly detaches and collects:
/// every chunk is collected exactly once and exactly one notification is
/// sent per successful detach that a push observed.
#[test]
fn concurrent_pushes_and_detaches_lose_nothing() {
    const THREADS: usize = 3;
    const PER: usize = 20_000;
    let d: Arc<Desc> = Arc::from(new_desc());
    let notified = Arc::new(AtomicUsize::new(0));
    let mem: Arc<Vec<C16>> = Arc::new(vec![C16([0; 2]); THREADS * PER]);
    let base = mem.as_ptr() as usize;
    let hs: Vec<_> = (0..THREADS)
        .map(|t| {
            let d = d.clone();
            let notified = notified.clone();
            std::thread::spawn(move || {
                for i in 0..PER {
                    let c = (base + (t * PER + i) * 16) as *mut u8;
                    if let Pushed::MustNotify = unsafe { remote_push(&*d, c) } {
                        notified.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    let dp = &*d as *const Desc as *mut Desc;
    let mut collected = 0usize;
    let mut detaches = 0usize;
    let mut detached = false;
    let mut spins = 0;
    while collected < THREADS * PER && spins < 100_000_000 {
        spins += 1;
        unsafe {
            if detached {
                // Wait for the notification, then collect.
                let l = take_remote(dp);
                if !l.is_null() {
                    detached = false;
                    let mut n = 0;
                    let mut c = l;
                    while !c.is_null() {
                        n += 1;
                        c = link(c);
                    }
                    collected += n;
                }
            } else if try_detach(dp) {
                detaches += 1;
                detached = true;
            } else {
                let mut c = take_remote(dp);
                while !c.is_null() {
                    collected += 1;
                    c = link(c);
                }
            }
        }
    }
    for h in hs {
        h.join().unwrap();
    }
    assert_eq!(collected, THREADS * PER);
    // Each notification matches a detach the pushers saw; the last detach
    // may have seen no push.
    let n = notified.load(Ordering::Relaxed);
    assert!(n == detaches || n + 1 == detaches, "{n} vs {detaches}");
    drop(mem);
}
