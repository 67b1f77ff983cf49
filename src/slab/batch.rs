//! Batch nodes: a free-list node that carries other chunks of its slab
//! (see the module's header, "Batch nodes"), as `u16` offsets after a
//! count and a check.

use super::word::{
    check, count, decode, encode, entry, link_word, set_entry, set_header, set_link,
};

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
pub(super) const BATCH_HEAD_BYTES: usize = 18;

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
///
/// One chunk at a time, the reference `push_run` matches; the allocator
/// fills nodes with `push_run`, the tests and the loom models with this.
#[cfg(any(test, loom))]
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

/// Pushes `run` onto the free list headed by `head` (null: empty) as
/// `batch_add` and `set_link` would one chunk at a time: the head node
/// carries chunks while it has room (`cap`, the class's `batch_cap`), a
/// chunk that finds it full (or no head) becomes the new head node, and
/// each node's count and check are written once, when the run leaves it.
/// Taken back (each node's entries newest first, then the node), the list
/// gives the run reversed, then what was under it. Returns the new head.
/// `base` is the first chunk of their slab.
///
/// # Safety
/// The caller owns the list and every chunk of `run`, chunks of the slab at
/// `base` (whose class has `batch_cap` = `cap`), none on the list.
pub unsafe fn push_run(head: *mut u8, run: &[*mut u8], base: usize, cap: usize) -> *mut u8 {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe {
        let mut f = head;
        // The head node's count and check, as `batch_add` reads them.
        let (mut k, mut chk) = if f.is_null() || cap == 0 {
            (cap, 0)
        } else if link_word(f) & BATCH != 0 {
            (count(f), check(f))
        } else {
            (0, 0)
        };
        // Whether the node at `f` took entries that its header does not
        // count yet.
        let mut unsealed = false;
        for &q in run {
            if k < cap {
                chk ^= batch_put(f, k, q, base);
                k += 1;
                unsealed = true;
            } else {
                if unsealed {
                    batch_seal(f, k, chk);
                }
                set_link(q, f as usize);
                f = q;
                k = 0;
                chk = 0;
                unsealed = false;
            }
        }
        if unsealed {
            batch_seal(f, k, chk);
        }
        f
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
