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
//! `tests/loom.rs` compiles this very file under `--cfg loom` (with loom's
//! atomics in a reduced `Desc`) and explores every interleaving of pushes,
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

/// Flag in a decoded link word: the node carries a batch of chunks.
pub const BATCH: usize = 8;

/// Most chunks one node carries (its count is a `u16`).
pub const MAX_CARRY: usize = 64;

/// Bytes a batch node's chunks may lie from its slab's first chunk: an
/// entry is a 16-byte unit index in a `u16` (`zone` asserts that every slab
/// fits).
pub const CARRY_SPAN: usize = 16 << 16;

/// Bytes of a batch node before its entries: the link, the free mark, and
/// a `u16` with the count (bits 0-6) and a 9-bit check of the entries
/// (bits 7-15, `batch_verify`). The entries are `u16`s after it, each the carried
/// chunk's offset from the slab's first chunk in 16-byte units, so that a
/// 32-byte chunk carries 7 chunks and a 64-byte one 23 (with 8-byte
/// addresses: 1 and 5). Every node of a chain is a cache miss for the owner
/// that takes the list (a line the freeing CPU wrote, and each address
/// known only once the node before it is read); what a node carries is not
/// read until a malloc hands it out.
const BATCH_HEAD_BYTES: usize = 18;

/// How many chunks a node of `size`-byte chunks can carry.
pub const fn batch_cap(size: usize) -> usize {
    let n = size.saturating_sub(BATCH_HEAD_BYTES) / 2;
    if n < MAX_CARRY {
        n
    } else {
        MAX_CARRY
    }
}

/// How many chunks the node `node` carries (its link has the `BATCH` flag).
///
/// # Safety
/// `node` is a node of a free list the caller owns, with the `BATCH` flag.
#[inline(always)]
pub unsafe fn batch_len(node: *mut u8) -> usize {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe { count(node) }
}

/// Makes `node` (a node whose link word is written, carrying `k` chunks,
/// `k < batch_cap`) carry `q` as well. `base` is the first chunk of their
/// slab.
///
/// # Safety
/// The caller owns `node` and `q`, chunks of the slab at `base` whose class
/// has `batch_cap` > `k`.
#[inline(always)]
pub unsafe fn batch_add(node: *mut u8, k: usize, q: *mut u8, base: usize) {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe {
        let h = batch_put(node, k, q, base);
        let chk = if k == 0 { 0 } else { check(node) };
        set_header(node, k + 1, chk ^ h);
        if k == 0 {
            set_link(node, link_word(node) | BATCH);
        }
    }
}

/// Writes `q` as entry `k` of `node` without touching its count or check,
/// and returns the entry's share of the check: a node filled by several
/// puts is sealed once (`batch_seal`), so that filling it does not
/// read back and rewrite its header at every chunk.
///
/// # Safety
/// As `batch_add`; the node is not on any list until it is sealed.
#[inline(always)]
pub unsafe fn batch_put(node: *mut u8, k: usize, q: *mut u8, base: usize) -> usize {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe {
        let e = encode(node, base, q);
        set_entry(node, k, e);
        entry_hash(e)
    }
}

/// Makes `node` (its link word written) carry the `k` entries put in it
/// (`batch_put`), whose shares of the check XOR to `chk`: writes its count
/// and check and flags its link. Nothing to do for `k` = 0.
///
/// # Safety
/// The caller owns `node`, which has entries `0..k` put and is not yet on
/// any list.
#[inline(always)]
pub unsafe fn batch_seal(node: *mut u8, k: usize, chk: usize) {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe {
        if k > 0 {
            set_header(node, k, chk);
            set_link(node, link_word(node) | BATCH);
        }
    }
}

/// The `i`-th chunk `node` carries (`i` below its count), decoded; the
/// caller checks that it lies in the slab at `base`.
///
/// # Safety
/// `node` is a node with the `BATCH` flag of a free list the caller owns.
#[inline(always)]
pub unsafe fn batch_entry(node: *mut u8, i: usize, base: usize) -> *mut u8 {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe { decode(node, base, entry(node, i)) }
}

/// Sets the count of chunks `node` carries to `k` (fewer than it did: the
/// caller took the ones above `k`), clearing the `BATCH` flag when none is
/// left.
///
/// # Safety
/// `node` is a node with the `BATCH` flag of a free list the caller owns.
#[inline(always)]
pub unsafe fn batch_truncate(node: *mut u8, k: usize) {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe {
        let chk = (0..k).fold(0, |h, i| h ^ entry_hash(entry(node, i)));
        set_header(node, k, chk);
        if k == 0 {
            set_link(node, link_word(node) & !BATCH);
        }
    }
}

/// True if the entries of `node` (its count in range, checked by the
/// caller) match the check its header holds: a stray write into a node's
/// entries or count is reported rather than handed out (an entry alone
/// is only 16 bits, and most values of it name a chunk of the slab).
///
/// # Safety
/// `node` is a node with the `BATCH` flag of a free list the caller owns,
/// its count at most the class's `batch_cap`.
#[inline(always)]
pub unsafe fn batch_verify(node: *mut u8) -> bool {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe {
        let k = count(node);
        cfg!(loom) || (0..k).fold(0, |h, i| h ^ entry_hash(entry(node, i))) == check(node)
    }
}

/// An entry's share of its node's check (XORed together): 9 bits, each a
/// function of every bit of the entry.
#[inline(always)]
fn entry_hash(e: usize) -> usize {
    ((e as u32).wrapping_mul(0x9e37_79b1) >> 23) as usize & 0x1ff
}

/// Takes the last chunk that `node` carries (it carries at least one),
/// clearing the `BATCH` flag when it was the only one. The address is
/// decoded like a link; the caller checks that it lies in the slab.
///
/// # Safety
/// `node` is a node with the `BATCH` flag of a free list the caller owns;
/// `base` is its slab's first chunk.
#[inline(always)]
pub unsafe fn batch_take(node: *mut u8, base: usize) -> *mut u8 {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe {
        let k = count(node) - 1;
        let e = entry(node, k);
        set_header(node, k, check(node) ^ entry_hash(e));
        if k == 0 {
            set_link(node, link_word(node) & !BATCH);
        }
        decode(node, base, e)
    }
}

/// The chunks `node` carries, for a scan (the double-free check).
///
/// # Safety
/// `node` is a node of a free list that cannot change under the caller, of
/// the slab whose first chunk is `base`.
pub unsafe fn batch_contains(node: *mut u8, p: *mut u8, base: usize) -> bool {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe {
        if link_word(node) & BATCH == 0 {
            return false;
        }
        let k = batch_len(node).min(MAX_CARRY);
        (0..k).any(|i| batch_entry(node, i, base) == p)
    }
}

/// An entry: `q`'s offset from `base` in 16-byte units, mixed with the
/// node's address as the links are (a stray write decodes to another
/// offset, which the caller's bounds check may catch).
#[cfg(not(loom))]
#[inline(always)]
fn encode(node: *mut u8, base: usize, q: *mut u8) -> usize {
    ((q as usize).wrapping_sub(base) >> 4) ^ ((node as usize >> 12) & 0xffff)
}

/// The chunk an entry names.
#[cfg(not(loom))]
#[inline(always)]
fn decode(node: *mut u8, base: usize, e: usize) -> *mut u8 {
    (base + (((e ^ (node as usize >> 12)) & 0xffff) << 4)) as *mut u8
}

/// The count of a batch node (bits 0-6 of the `u16` at byte 16).
///
/// # Safety
/// `node` is a chunk the caller owns, at least 18 bytes long.
#[cfg(not(loom))]
#[inline(always)]
unsafe fn count(node: *mut u8) -> usize {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe { usize::from(*(node.add(16) as *const u16)) & 0x7f }
}

/// The check of a batch node's entries (bits 7-15 of that `u16`).
///
/// # Safety
/// As `count`.
#[cfg(not(loom))]
#[inline(always)]
unsafe fn check(node: *mut u8) -> usize {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe { usize::from(*(node.add(16) as *const u16)) >> 7 }
}

/// Writes the count `k` (<= `MAX_CARRY`) and the check `chk` (9 bits) of a
/// batch node.
///
/// # Safety
/// As `count`.
#[cfg(not(loom))]
#[inline(always)]
unsafe fn set_header(node: *mut u8, k: usize, chk: usize) {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe { *(node.add(16) as *mut u16) = (k | chk << 7) as u16 }
}

/// Entry `i` of a batch node (a `u16` at byte 18 + 2i).
///
/// # Safety
/// `node` is a chunk the caller owns, longer than 18 + 2i bytes.
#[cfg(not(loom))]
#[inline(always)]
unsafe fn entry(node: *mut u8, i: usize) -> usize {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe { usize::from(*(node.add(BATCH_HEAD_BYTES + 2 * i) as *const u16)) }
}

/// Writes entry `i` of a batch node (see `entry`); `e` fits 16 bits.
///
/// # Safety
/// As `entry`.
#[cfg(not(loom))]
#[inline(always)]
unsafe fn set_entry(node: *mut u8, i: usize, e: usize) {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe { *(node.add(BATCH_HEAD_BYTES + 2 * i) as *mut u16) = e as u16 }
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
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe {
        *(chunk as *mut usize) = next ^ (chunk as usize >> 12);
    }
}

/// Reads and decodes the link word of a free chunk: the next node, with the
/// `BATCH` flag. A word that decodes to anything else in the low four bits
/// means the free list was overwritten: report it and abort rather than
/// follow it.
///
/// # Safety
/// `chunk` is a chunk the caller owns, 16-byte aligned.
#[cfg(not(loom))]
#[inline(always)]
pub unsafe fn link_word(chunk: *mut u8) -> usize {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe {
        let next = *(chunk as *const usize) ^ (chunk as usize >> 12);
        if next & (15 & !BATCH) != 0 {
            crate::fmt::fatal_pointer(
                "malloc",
                chunk,
                "corrupted free list (a freed block was written to)",
            );
        }
        next
    }
}

/// The next node after `chunk` on its free list.
///
/// # Safety
/// As `link_word`.
#[inline(always)]
pub unsafe fn link(chunk: *mut u8) -> *mut u8 {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe { (link_word(chunk) & !BATCH) as *mut u8 }
}

/// Under loom a chunk is these cells (the link, then words 1 to 4), so that
/// loom checks every access to a link or a batch node's words against the
/// happens-before order (a read that the head word's Release/Acquire does
/// not order after its write is reported). A node can carry two chunks.
#[cfg(loom)]
#[repr(C, align(16))]
pub struct Chunk(
    pub loom::cell::UnsafeCell<usize>,
    pub [loom::cell::UnsafeCell<usize>; 4],
);

#[cfg(loom)]
impl Chunk {
    pub fn new() -> Self {
        Chunk(
            loom::cell::UnsafeCell::new(0),
            core::array::from_fn(|_| loom::cell::UnsafeCell::new(0)),
        )
    }
}

/// The model's entry: the offset from `base`, whole (the model's chunks
/// are separate allocations).
#[cfg(loom)]
fn encode(_node: *mut u8, base: usize, q: *mut u8) -> usize {
    (q as usize).wrapping_sub(base)
}

/// The model's `decode`.
#[cfg(loom)]
fn decode(_node: *mut u8, base: usize, e: usize) -> *mut u8 {
    base.wrapping_add(e) as *mut u8
}

/// The model's `count`: word 2 of the `Chunk`.
///
/// # Safety
/// `node` is a model `Chunk`.
#[cfg(loom)]
#[track_caller]
unsafe fn count(node: *mut u8) -> usize {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe { (*(node as *const Chunk)).1[1].with(|p| *p) }
}

/// The model's `set_header`: the count only (the model keeps no check).
///
/// # Safety
/// As `count`.
#[cfg(loom)]
#[track_caller]
unsafe fn set_header(node: *mut u8, k: usize, _chk: usize) {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe { (*(node as *const Chunk)).1[1].with_mut(|p| *p = k) };
}

/// The model's `check`: none.
///
/// # Safety
/// As `count`.
#[cfg(loom)]
unsafe fn check(_node: *mut u8) -> usize {
    0
}

/// The model's `entry`: words 3 and 4 of the `Chunk`.
///
/// # Safety
/// `node` is a model `Chunk`, `i` < 2.
#[cfg(loom)]
#[track_caller]
unsafe fn entry(node: *mut u8, i: usize) -> usize {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe { (*(node as *const Chunk)).1[2 + i].with(|p| *p) }
}

/// The model's `set_entry`.
///
/// # Safety
/// As `entry`.
#[cfg(loom)]
#[track_caller]
unsafe fn set_entry(node: *mut u8, i: usize, e: usize) {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe { (*(node as *const Chunk)).1[2 + i].with_mut(|p| *p = e) };
}

/// The model's `set_link`.
///
/// # Safety
/// `chunk` is a model `Chunk`.
#[cfg(loom)]
#[track_caller]
pub unsafe fn set_link(chunk: *mut u8, next: usize) {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe { (*(chunk as *const Chunk)).0.with_mut(|p| *p = next) };
}

/// The model's `link_word`.
///
/// # Safety
/// `chunk` is a model `Chunk`.
#[cfg(loom)]
#[track_caller]
pub unsafe fn link_word(chunk: *mut u8) -> usize {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe { (*(chunk as *const Chunk)).0.with(|p| *p) }
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
        #[derive(Clone, Copy)]
        #[repr(C, align(64))]
        struct C64([u64; 8]);
        assert_eq!(batch_cap(16), 0);
        assert_eq!(batch_cap(32), 7);
        assert_eq!(batch_cap(64), 23);
        assert_eq!(batch_cap(16384), MAX_CARRY);
        let d = new_desc();
        let dp = &*d as *const Desc as *mut Desc;
        let mut mem = [C64([0; 8]); 8];
        let c: Vec<*mut u8> = mem
            .iter_mut()
            .map(|m| m.0.as_mut_ptr() as *mut u8)
            .collect();
        let base = c[0] as usize;
        unsafe {
            // Tail node c[0] carries c[1], c[2]; head node c[3] carries c[4].
            set_link(c[0], 0);
            batch_add(c[0], 0, c[1], base);
            batch_add(c[0], 1, c[2], base);
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
