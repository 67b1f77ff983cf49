//! A slab: a page run carved into chunks of one size class, owned by one zone.
//!
//! The owner (whoever holds the owner zone's lock) allocates from the local free
//! list `free`, then from the never-used tail `[bump, end)`, and frees local
//! chunks onto `free`. Any other thread frees a chunk by pushing it onto the
//! slab's remote list `rchunks` with one compare-and-swap, touching nothing else.
//!
//! ## The detach protocol (DragonFly's z_RChunks / z_RSignal, in one word)
//!
//! Bit 0 of `rchunks` is the `DETACHED` tag (chunks are 16-byte aligned, so the
//! bit is free). When the owner finds a slab with no free chunk at all it
//! detaches it from its lists with `compare_exchange(0 -> DETACHED)`. If that
//! fails, remote chunks arrived meanwhile and it collects them instead. A remote
//! free whose CAS replaces the word `DETACHED` is the one and only party that
//! must notify the owner (a message in the owner's event ring): state and list
//! head live in the same atomic word, so the lost wake-up DragonFly hit in
//! df9daea cannot happen. Every other remote free notifies nobody; the owner
//! collects those chunks lazily, all at once, with one `swap(0)`.
//!
//! A remote CPU may also push a list of chunks it linked itself (a batch from
//! its outbox, see `cache::OUTBOX`) with the same one CAS.
//!
//! Orderings: a push writes `chunk.next` then CASes the head with Release; the
//! owner's `swap(0, Acquire)` pairs with it, so the links it walks are visible.
//! The detach CAS is AcqRel. The list is push-only plus take-all, so it is free
//! of ABA. After its CAS the freeing thread owns nothing in the slab (the owner
//! may collect and release it at once), so everything the notification needs
//! (owner, generation) is read before the CAS.
//!
//! ## Model checking
//!
//! `tests/loom.rs` compiles this very file under `--cfg loom` (with loom's
//! atomics in a reduced `Desc`) and explores every interleaving of pushes,
//! detaches, re-attaches and collections. The chunk links are plain memory;
//! they go through `set_link` and `link`, which under loom are
//! `loom::cell::UnsafeCell` accesses, so a missing Release/Acquire pair on the
//! head word shows up as a causality violation on the link. Without loom both
//! are a plain load or store (`#[inline(always)]`, no added cost).

use crate::pagemap::Desc;
use core::sync::atomic::Ordering;

/// Tag bit in `rchunks`: the slab is full and off its owner's lists.
pub const DETACHED: usize = 1;

/// Result of a remote push.
pub enum Pushed {
    /// The slab was attached: nothing else to do.
    Quiet,
    /// The push replaced `DETACHED`: the caller must notify the owner.
    MustNotify,
}

/// Pushes `chunk` onto `d`'s remote list.
///
/// # Safety
/// `d` is a live slab descriptor and `chunk` a chunk of it that the caller owns
/// (allocated and not yet freed), at least 16 bytes and 16-byte aligned.
#[inline(always)]
pub unsafe fn remote_push(d: *const Desc, chunk: *mut u8) -> Pushed {
    remote_push_list(d, chunk, chunk)
}

/// Pushes the list `head` .. `tail` (linked with `set_link`; `tail`'s link is
/// written here) onto `d`'s remote list with one CAS.
///
/// # Safety
/// `d` is a live slab descriptor; every chunk of the list is a chunk of it
/// that the caller owns, at least 16 bytes and 16-byte aligned.
#[inline(always)]
pub unsafe fn remote_push_list(d: *const Desc, head: *mut u8, tail: *mut u8) -> Pushed {
    let word = &(*d).rchunks;
    let mut old = word.load(Ordering::Relaxed);
    loop {
        // The tag is never set together with a non-empty list.
        set_link(tail, old & !DETACHED);
        match word.compare_exchange_weak(old, head as usize, Ordering::Release, Ordering::Relaxed) {
            Ok(_) => break,
            Err(cur) => old = cur,
        }
    }
    if old == DETACHED {
        Pushed::MustNotify
    } else {
        Pushed::Quiet
    }
}

/// Takes the whole remote list (owner only). Returns null if it is empty.
/// Never clears the `DETACHED` tag: a detached slab's list is empty.
///
/// # Safety
/// `d` is a live slab descriptor; the caller holds its owner zone's lock.
#[inline]
pub unsafe fn take_remote(d: *const Desc) -> *mut u8 {
    let word = &(*d).rchunks;
    let cur = word.load(Ordering::Relaxed);
    if cur == 0 || cur == DETACHED {
        return core::ptr::null_mut();
    }
    // Acquire pairs with the Release of the pushes: their links are visible.
    word.swap(0, Ordering::Acquire) as *mut u8
}

/// Tries to detach a slab with no free chunks (owner only). Fails if remote
/// chunks are waiting: the caller collects them instead.
///
/// # Safety
/// `d` is a live slab descriptor; the caller holds its owner zone's lock.
pub unsafe fn try_detach(d: *const Desc) -> bool {
    (*d).rchunks
        .compare_exchange(0, DETACHED, Ordering::AcqRel, Ordering::Relaxed)
        .is_ok()
}

/// Undoes a detach that no remote free has seen yet (owner only): true if the
/// slab was still `DETACHED` with an empty list, and is now attached.
///
/// # Safety
/// `d` is a live slab descriptor; the caller holds its owner zone's lock.
pub unsafe fn try_reattach(d: *const Desc) -> bool {
    (*d).rchunks
        .compare_exchange(DETACHED, 0, Ordering::AcqRel, Ordering::Relaxed)
        .is_ok()
}

/// Walks a taken remote list, appends it to the local free list and returns
/// the number of chunks, or None if the list is longer than `max` (a cycle:
/// the heap is corrupt, e.g. a chunk freed twice from different threads).
///
/// # Safety
/// `list` came from `take_remote(d)`; owner lock held.
pub unsafe fn absorb(d: *mut Desc, list: *mut u8, max: usize) -> Option<usize> {
    let mut n = 1;
    let mut last = list;
    loop {
        let next = link(last);
        if next.is_null() {
            break;
        }
        n += 1;
        if n > max {
            return None;
        }
        last = next;
    }
    set_link(last, (*d).free as usize);
    (*d).free = list;
    Some(n)
}

/// Writes the link word (the first word) of a free chunk, encoded as glibc's
/// safe-linking does: `next ^ (chunk >> 12)`. A stray write of a plain
/// pointer into a free chunk (use after free) then decodes to garbage that
/// `link` rejects instead of handing out an attacker's address. Every free
/// list (local and remote) goes through here and `link`.
///
/// # Safety
/// `chunk` is a chunk the caller owns, 16-byte aligned.
#[cfg(not(loom))]
#[inline(always)]
pub unsafe fn set_link(chunk: *mut u8, next: usize) {
    *(chunk as *mut usize) = next ^ (chunk as usize >> 12);
}

/// Reads and decodes the link word of a free chunk. A link that does not
/// decode to a 16-byte aligned address means the free list was overwritten:
/// report it and abort rather than follow it.
///
/// # Safety
/// `chunk` is a chunk the caller owns, 16-byte aligned.
#[cfg(not(loom))]
#[inline(always)]
pub unsafe fn link(chunk: *mut u8) -> *mut u8 {
    let next = *(chunk as *const usize) ^ (chunk as usize >> 12);
    if next & 15 != 0 {
        crate::fmt::fatal_pointer(
            "malloc",
            chunk,
            "corrupted free list (a freed block was written to)",
        );
    }
    next as *mut u8
}

/// Under loom a chunk is this cell, so that loom checks every link access
/// against the happens-before order (a link read that the head word's
/// Release/Acquire does not order after its write is reported).
#[cfg(loom)]
#[repr(C, align(16))]
pub struct Chunk(pub loom::cell::UnsafeCell<usize>);

#[cfg(loom)]
#[track_caller]
pub unsafe fn set_link(chunk: *mut u8, next: usize) {
    (*(chunk as *const Chunk)).0.with_mut(|p| *p = next);
}

#[cfg(loom)]
#[track_caller]
pub unsafe fn link(chunk: *mut u8) -> *mut u8 {
    (*(chunk as *const Chunk)).0.with(|p| *p as *mut u8)
}

#[cfg(all(test, not(loom)))]
mod tests {
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
            assert_eq!(absorb(dp, l, 10), Some(2));
            assert_eq!((*dp).free, c1);
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
            assert_eq!(absorb(dp, p, 100), None);
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
}
