//! The words of a free chunk that the slab code reads and writes: the link
//! (word 0), and a batch node's count, check and entries. Plain loads and
//! stores; under `--cfg loom`, accesses to `loom::cell::UnsafeCell`s
//! (`Chunk`), so that the model checker sees every one.

#[cfg(not(loom))]
use super::batch::BATCH_HEAD_BYTES;
use super::BATCH;

/// An entry: `q`'s offset from `base` in 16-byte units, mixed with the
/// node's address as the links are (a stray write decodes to another
/// offset, which the caller's bounds check may catch).
#[cfg(not(loom))]
#[inline(always)]
pub(super) fn encode(node: *mut u8, base: usize, q: *mut u8) -> usize {
    ((q as usize).wrapping_sub(base) >> 4) ^ ((node as usize >> 12) & 0xffff)
}

/// The chunk an entry names.
#[cfg(not(loom))]
#[inline(always)]
pub(super) fn decode(node: *mut u8, base: usize, e: usize) -> *mut u8 {
    (base + (((e ^ (node as usize >> 12)) & 0xffff) << 4)) as *mut u8
}

/// The count of a batch node (bits 0-6 of the `u16` at byte 16).
///
/// # Safety
/// `node` is a chunk the caller owns, at least 18 bytes long.
#[cfg(not(loom))]
#[inline(always)]
pub(super) unsafe fn count(node: *mut u8) -> usize {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe { usize::from(*(node.add(16) as *const u16)) & 0x7f }
}

/// The check of a batch node's entries (bits 7-15 of that `u16`).
///
/// # Safety
/// As `count`.
#[cfg(not(loom))]
#[inline(always)]
pub(super) unsafe fn check(node: *mut u8) -> usize {
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
pub(super) unsafe fn set_header(node: *mut u8, k: usize, chk: usize) {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe { *(node.add(16) as *mut u16) = (k | chk << 7) as u16 }
}

/// Entry `i` of a batch node (a `u16` at byte 18 + 2i).
///
/// # Safety
/// `node` is a chunk the caller owns, longer than 18 + 2i bytes.
#[cfg(not(loom))]
#[inline(always)]
pub(super) unsafe fn entry(node: *mut u8, i: usize) -> usize {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe { usize::from(*(node.add(BATCH_HEAD_BYTES + 2 * i) as *const u16)) }
}

/// Writes entry `i` of a batch node (see `entry`); `e` fits 16 bits.
///
/// # Safety
/// As `entry`.
#[cfg(not(loom))]
#[inline(always)]
pub(super) unsafe fn set_entry(node: *mut u8, i: usize, e: usize) {
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
pub(super) fn encode(_node: *mut u8, base: usize, q: *mut u8) -> usize {
    (q as usize).wrapping_sub(base)
}

/// The model's `decode`.
#[cfg(loom)]
pub(super) fn decode(_node: *mut u8, base: usize, e: usize) -> *mut u8 {
    base.wrapping_add(e) as *mut u8
}

/// The model's `count`: word 2 of the `Chunk`.
///
/// # Safety
/// `node` is a model `Chunk`.
#[cfg(loom)]
#[track_caller]
pub(super) unsafe fn count(node: *mut u8) -> usize {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe { (*(node as *const Chunk)).1[1].with(|p| *p) }
}

/// The model's `set_header`: the count only (the model keeps no check).
///
/// # Safety
/// As `count`.
#[cfg(loom)]
#[track_caller]
pub(super) unsafe fn set_header(node: *mut u8, k: usize, _chk: usize) {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe { (*(node as *const Chunk)).1[1].with_mut(|p| *p = k) };
}

/// The model's `check`: none.
///
/// # Safety
/// As `count`.
#[cfg(loom)]
pub(super) unsafe fn check(_node: *mut u8) -> usize {
    0
}

/// The model's `entry`: words 3 and 4 of the `Chunk`.
///
/// # Safety
/// `node` is a model `Chunk`, `i` < 2.
#[cfg(loom)]
#[track_caller]
pub(super) unsafe fn entry(node: *mut u8, i: usize) -> usize {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe { (*(node as *const Chunk)).1[2 + i].with(|p| *p) }
}

/// The model's `set_entry`.
///
/// # Safety
/// As `entry`.
#[cfg(loom)]
#[track_caller]
pub(super) unsafe fn set_entry(node: *mut u8, i: usize, e: usize) {
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
