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
//! ## Batch nodes
//!
//! A node of a free list (local or remote) is a chunk whose first word is the
//! link. In a class whose chunks have room (`batch_cap`), a node may also
//! *carry* other chunks of its slab: the link's `BATCH` flag says so, a
//! `u16` after the free mark holds how many, and the `u16`s after it their
//! offsets in the slab (16-byte units). An
//! outbox flush builds such nodes, so the owner that collects the list, and
//! the refill that moves the chunks into its per-CPU cache, read one node per
//! batch instead of every chunk: the carried chunks stay untouched (in the
//! freeing CPU's cache) until a malloc hands them out, and the only transfer
//! of their lines is the one the program's own write needs anyway.
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
//! `tests/loom.rs` compiles this very module (`mod.rs`, `batch.rs`,
//! `word.rs`) under `--cfg loom` (with loom's atomics in a reduced `Desc`)
//! and explores every interleaving of pushes,
//! detaches, re-attaches and collections. The chunk links are plain memory;
//! they go through `set_link` and `link`, which under loom are
//! `loom::cell::UnsafeCell` accesses, so a missing Release/Acquire pair on the
//! head word shows up as a causality violation on the link. Without loom both
//! are a plain load or store (`#[inline(always)]`, no added cost).

use crate::pagemap::Desc;
use core::sync::atomic::Ordering;

/// The free mark: a freed chunk's word 1 holds this key (word 0 is its
/// link), so that a double free is caught cheaply (`integrity`). Random per
/// process, set at start-up; cleared when a chunk is handed out again.
#[cfg(not(loom))]
pub static FREE_KEY: core::sync::atomic::AtomicU64 =
    core::sync::atomic::AtomicU64::new(0x5a5a_1b2c_3d4e_6f70);

/// Tag bit in `rchunks`: the slab is full and off its owner's lists.
pub const DETACHED: usize = 1;
/// Where the count of the chunks on the remote list starts in `rchunks`:
/// bits 48-63, above every chunk address (they are below 2^47, see
/// `pagemap`). Each push adds its chunks to it in the same CAS that links
/// them, so the owner that takes the list learns how many it holds without
/// walking it.
const COUNT_SHIFT: u32 = 48;
/// The list head in `rchunks`: the address bits.
const HEAD_MASK: usize = (1 << COUNT_SHIFT) - 1 - DETACHED;
/// Most chunks the count can hold: a slab holds fewer (`size_class`).
pub const MAX_COUNT: usize = (1 << (usize::BITS - COUNT_SHIFT)) - 1;

/// The list head (no tag, no count) in an `rchunks` word.
#[inline(always)]
pub fn head_of(word: usize) -> *mut u8 {
    (word & HEAD_MASK) as *mut u8
}

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
#[cfg(any(test, loom))]
#[inline(always)]
pub unsafe fn remote_push(d: *const Desc, chunk: *mut u8) -> Pushed {
    // SAFETY: the caller upholds the contract in `# Safety` above; the
    // chunk's link is written before the push, as `remote_push_list` needs.
    unsafe {
        set_link(chunk, 0);
        remote_push_list(d, chunk, chunk, 1)
    }
}

/// Pushes the list of nodes `head` .. `tail` (linked with `set_link`; the
/// link of `tail` is rewritten here, keeping its `BATCH` flag), `n` chunks
/// in all (nodes and the chunks they carry), onto `d`'s remote list with
/// one CAS, which also adds `n` to the list's count.
///
/// # Safety
/// `d` is a live slab descriptor; every chunk of the list (and every chunk
/// its nodes carry) is a chunk of it that the caller owns, at least 16 bytes
/// and 16-byte aligned; `tail`'s link word has been written.
#[inline(always)]
pub unsafe fn remote_push_list(d: *const Desc, head: *mut u8, tail: *mut u8, n: usize) -> Pushed {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe {
        let word = (*d).rchunks();
        let flag = link_word(tail) & BATCH;
        let mut old = word.load(Ordering::Relaxed);
        loop {
            // The tag is never set together with a non-empty list. The count
            // saturates: it can only pass a slab's capacity on a corrupt heap
            // (chunks freed twice), which `Zone::collect` then reports.
            set_link(tail, old & HEAD_MASK | flag);
            let count = ((old >> COUNT_SHIFT) + n).min(MAX_COUNT);
            let new = head as usize | count << COUNT_SHIFT;
            match word.compare_exchange_weak(old, new, Ordering::Release, Ordering::Relaxed) {
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
}

/// Takes the whole remote list (owner only). Returns null if it is empty.
/// Never clears the `DETACHED` tag: a detached slab's list is empty.
///
/// # Safety
/// `d` is a live slab descriptor; the caller holds its owner zone's lock.
#[cfg(any(test, loom))]
#[inline]
pub unsafe fn take_remote(d: *const Desc) -> *mut u8 {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe { take_remote_counted(d).0 }
}

/// `take_remote`, with the number of chunks the list holds (its nodes and
/// the chunks they carry), as the pushes counted them.
///
/// # Safety
/// As `take_remote`.
#[inline]
pub unsafe fn take_remote_counted(d: *const Desc) -> (*mut u8, usize) {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe {
        let word = (*d).rchunks();
        let cur = word.load(Ordering::Relaxed);
        if cur == 0 || cur == DETACHED {
            return (core::ptr::null_mut(), 0);
        }
        // Acquire pairs with the Release of the pushes: their links are visible.
        let w = word.swap(0, Ordering::Acquire);
        (head_of(w), w >> COUNT_SHIFT)
    }
}

/// Tries to detach a slab with no free chunks (owner only). Fails if remote
/// chunks are waiting: the caller collects them instead.
///
/// # Safety
/// `d` is a live slab descriptor; the caller holds its owner zone's lock.
pub unsafe fn try_detach(d: *const Desc) -> bool {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe {
        (*d).rchunks()
            .compare_exchange(0, DETACHED, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }
}

/// Undoes a detach that no remote free has seen yet (owner only): true if the
/// slab was still `DETACHED` with an empty list, and is now attached.
///
/// # Safety
/// `d` is a live slab descriptor; the caller holds its owner zone's lock.
pub unsafe fn try_reattach(d: *const Desc) -> bool {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe {
        (*d).rchunks()
            .compare_exchange(DETACHED, 0, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }
}

/// Walks a taken remote list, appends it to the local free list and returns
/// the number of chunks (nodes and the chunks they carry), or None if the
/// list holds more than `max` or a node more than `carry` (a cycle, or a
/// corrupt batch count: the heap is corrupt, e.g. a chunk freed twice from
/// different threads). Reads the nodes only.
///
/// # Safety
/// `list` came from `take_remote(d)`; owner lock held; `carry` is at most
/// the `batch_cap` of the slab's chunk size.
pub unsafe fn absorb(d: *mut Desc, list: *mut u8, max: usize, carry: usize) -> Option<usize> {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe {
        let mut n = 0;
        let mut last = list;
        loop {
            let w = link_word(last);
            if w & BATCH != 0 {
                let k = batch_len(last);
                if k == 0 || k > carry {
                    return None;
                }
                n += k;
            }
            n += 1;
            if n > max {
                return None;
            }
            let next = (w & !BATCH) as *mut u8;
            if next.is_null() {
                set_link(last, (*d).free() as usize | (w & BATCH));
                break;
            }
            last = next;
        }
        (*d).set_free(list);
        Some(n)
    }
}

mod batch;
mod word;
pub use batch::*;
pub use word::*;

#[cfg(all(test, not(loom)))]
mod tests;
