//! Integrity: how `free`, `realloc` and `malloc_usable_size` tell a live
//! block of ours from anything else, and what they say when it is not.
//!
//! * **Classification** (`classify`): the page map says whether a pointer
//!   lies in our arenas, in which slab or large run, or in a huge mapping;
//!   a slab pointer must then be the start of a chunk (a multiply and a
//!   compare, `size_class::ClassInfo::is_chunk_start`). Anything else in
//!   our memory stops the process with a message naming the call and the
//!   pointer (`fmt::fatal_pointer`); a pointer outside it is *foreign* and
//!   goes to the next allocator (`foreign`).
//! * **Free marks**: a freed chunk carries a per-process random key in its
//!   word 1 (`slab::FREE_KEY`, set at start-up, cleared when the chunk is
//!   handed out again). A free that finds the key may be a double free, or
//!   user data that matches it: `check_double_free` confirms it under the
//!   owner zone's lock by looking for the chunk in the per-CPU cache, the
//!   zone's stash, the slab's free list and its remote list, and stops the
//!   process only on a real double free. A chunk past the slab's carve
//!   pointer was never handed out.
//!
//! The zones check what only they can see with their lock held (a free into
//! a slab with no live block, `zone::Locked::free_local`).

use crate::large;
use crate::pagemap::{self, Desc, Lookup};
use crate::size_class;
use crate::zone;
use core::sync::atomic::Ordering;

/// What a pointer of ours is, validated.
pub enum Block {
    Small(*mut Desc, usize),
    Large(*mut Desc),
    Huge,
    /// A live block of the starter heap, of this kind (`starter::block_size`).
    Starter(usize),
    Foreign,
}

/// Classifies `p` for `what` (free, realloc, ...), aborting with a clear
/// message if it points into our memory but is not a live block.
#[inline(always)]
pub fn classify(p: *mut u8, what: &str) -> Block {
    match pagemap::lookup(p as usize) {
        Lookup::Slab(d) => match chunk_class(d, p) {
            Some(c) => Block::Small(d, c),
            None => {
                crate::fmt::fatal_pointer(what, p, "invalid pointer (not the start of a block)")
            }
        },
        Lookup::Large(d) => Block::Large(d),
        Lookup::Huge => {
            if large::huge_usable(p as usize).is_none() {
                crate::fmt::fatal_pointer(what, p, "invalid pointer (inside a huge block)");
            }
            Block::Huge
        }
        Lookup::Foreign if crate::starter::contains(p) => match crate::starter::find(p) {
            crate::starter::Found::Live(c) => Block::Starter(c),
            crate::starter::Found::Freed if what == "free" => {
                crate::fmt::fatal_pointer(what, p, "double free")
            }
            crate::starter::Found::Freed => {
                crate::fmt::fatal_pointer(what, p, "invalid pointer (a block already freed)")
            }
            crate::starter::Found::Bad => {
                crate::fmt::fatal_pointer(what, p, "invalid pointer (not the start of a block)")
            }
        },
        Lookup::Foreign => Block::Foreign,
        Lookup::Invalid(why) => crate::fmt::fatal_pointer(what, p, why),
    }
}

/// The class of slab `d` if `p` is the start of one of its chunks.
#[inline(always)]
pub fn chunk_class(d: *mut Desc, p: *mut u8) -> Option<usize> {
    // SAFETY: `d` is a descriptor slot of a registered arena (type-stable).
    let c = unsafe { (*d).class() };
    is_chunk(zone::slab_base(d), c, p).then_some(c)
}

/// True if `p` starts a chunk of the class `c` slab that starts at `start`.
#[inline(always)]
pub fn is_chunk(start: usize, c: usize, p: *mut u8) -> bool {
    let off = (p as usize).wrapping_sub(start);
    size_class::CLASS_INFO
        .get(c)
        .is_some_and(|info| info.is_chunk_start(off))
}

/// Word 1 of the chunk holds the free mark: this may be a double free, or a
/// user value that happens to match. Confirm under the owner's lock by looking
/// for the chunk among the slab's free chunks.
///
/// # Safety
/// `d` is the descriptor of the live slab that holds `p` (`p` below its
/// carve pointer was checked by the caller's lookup).
#[cold]
#[inline(never)]
#[link_section = ".text_cold"]
pub unsafe fn check_double_free(d: *mut Desc, p: *mut u8) {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe {
        let owner = (*d).owner();
        let Some(z) = zone::lock_index(owner) else {
            return; // re-entered from a signal handler: cannot look safely
        };
        let c = (*d).class();
        let cap = size_class::capacity(c);
        if p >= (*d).bump() {
            crate::fmt::fatal_pointer("free", p, "pointer to a block that was never allocated");
        }
        if crate::cache::contains(owner, c, p) || z.stash_contains(c, p) {
            crate::fmt::fatal_pointer("free", p, "double free");
        }
        for head in [
            (*d).free(),
            crate::slab::head_of((*d).rchunks().load(Ordering::Acquire)),
        ] {
            let mut q = head;
            let mut k = 0;
            while !q.is_null() && k <= cap {
                if q == p || crate::slab::batch_contains(q, p, zone::slab_base(d)) {
                    crate::fmt::fatal_pointer("free", p, "double free");
                }
                q = crate::slab::link(q);
                k += 1;
            }
        }
    }
}
