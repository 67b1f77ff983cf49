//! The per-CPU cache's memory layout: one block per CPU, one stack per size
//! class in it, and the root the fast paths read first. Constants and one
//! static, shared by the rseq sections (`arch`), which address the stacks
//! in assembly, the free map (`pagemap`), which holds a class's stack
//! offset in place, and the cache (`cache`), which manages them.

use crate::size_class::NCLASSES;
use core::sync::atomic::{AtomicIsize, AtomicU32, AtomicUsize};

/// Chunks a class stack can hold. Each class's stack is a ring of slots
/// in a 2 KiB block (FIFO: malloc takes from the tail, free adds at the
/// head), so that malloc and free each commit a word of their own. A
/// malloc and the free that follows it then form no chain through memory
/// (with one LIFO word, each pop waited for the push before it to commit,
/// and that push for the free-map lookup of the chunk the pop before had
/// returned: see docs/experiments.md). The block:
///
/// * bytes 0-7, the tail: pops so far (a u64 that only grows; the slot
///   of the oldest chunk is `tail & mask`), committed by malloc's section;
/// * 8-15, the head: pushes so far, committed by free's; `head - tail`
///   chunks are cached;
/// * 16-19, the capacity (u32; 0 until the zone prepares the stack, which
///   refuses every push), at most `CAP_MAX`;
/// * 20-23, the mask: the ring's slots less one (a power of two at least
///   the capacity, so that a small class touches only the slots it uses);
/// * 24-31 and 32-39, the chunks taken out and put in other than by malloc
///   and free (refills, flushes, outbox drains; u64s), which those
///   sections bump before their commit: the hits are `tail` and `head`
///   less them (`cache::hits`), so malloc's and free's sections count
///   nothing of their own;
/// * 64 on, the slots.
pub const CAP_MAX: usize = 124;
/// Slots of the largest ring.
pub const RING_MAX: usize = CAP_MAX.next_power_of_two();
pub const HEADER: usize = 64;
pub const CLASS_STRIDE: usize = 2048;
const _: () = assert!(HEADER + RING_MAX * 8 <= CLASS_STRIDE);
/// Byte offsets of the header's fields (the sections spell them as
/// numbers: the asserts tie the two).
pub const TAIL_AT: usize = 0;
pub const HEAD_AT: usize = 8;
pub const CAP_AT: usize = 16;
pub const MASK_AT: usize = 20;
pub const BULK_POPS_AT: usize = 24;
pub const BULK_PUSHES_AT: usize = 32;
/// Stack slots per CPU block: a power of two, so that a slot index is
/// bounded with one mask on the fast path. Slot 0 is the outbox, class c is
/// slot c + 1 (`slot_of`), so that the free map's class field (class + 1)
/// is the slot; the slots past the last class are never used, hence never
/// touched.
pub const CLASS_SLOTS: usize = 64;
pub const CPU_STRIDE: usize = CLASS_SLOTS * CLASS_STRIDE;
/// log2 of `CPU_STRIDE`: the sections shift the CPU id (one cycle) rather
/// than multiply it (three), on the path of every hit.
pub const CPU_SHIFT: u32 = CPU_STRIDE.trailing_zeros();
const _: () = assert!(1 << CPU_SHIFT == CPU_STRIDE);
const _: () = assert!(NCLASSES < CLASS_SLOTS);

/// The stack slot of class `c` in a CPU's block.
#[inline(always)]
pub const fn slot_of(c: usize) -> usize {
    (c + 1) % CLASS_SLOTS
}

/// The offset of class `c`'s stack in a CPU's block: what `push_free`
/// takes, and what a free-map entry holds (`pagemap::FreeEntry`).
#[inline(always)]
pub const fn stack_offset(c: usize) -> usize {
    slot_of(c) * CLASS_STRIDE
}

/// The class whose stack is at `off` (a `stack_offset`). Below
/// `CLASS_SLOTS` whatever `off` is (a shift and a mask, no division: it is
/// on the path of every malloc and free when the cache is off); the users
/// of a class index bound it by `NCLASSES` themselves.
#[inline(always)]
pub const fn class_at(off: usize) -> usize {
    (off / CLASS_STRIDE).wrapping_sub(1) % CLASS_SLOTS
}

/// The class slot that serves as each CPU's *outbox*: chunks of other CPUs'
/// slabs freed on this CPU, handed to their slabs in batches, one CAS per
/// slab and batch (snmalloc's "BatchIt") instead of one per chunk (see
/// `zone::flush_outbox`). Any chunk may be there; only `outbox_take` empties it.
pub const OUTBOX: usize = 0;

/// The caches of all CPUs: `cpus` blocks of `CPU_STRIDE` bytes at `base`,
/// mapped at start-up and touched only as CPUs use them, the rseq offset,
/// and the offset in `struct rseq` of the id that picks a block
/// (`cpu::id_field`: the concurrency id or the CPU number; "CPU" in this
/// module means that id). `cpus` is 0 while the cache is off; it is set
/// once, after the others. One cache line, read together on every fast
/// path; the sections read `id_field` from it themselves (an address
/// operand, so that it takes no register of its own).
#[repr(C, align(64))]
pub struct CacheRoot {
    pub cpus: AtomicU32,
    pub off: AtomicIsize,
    pub base: AtomicUsize,
    pub id_field: AtomicUsize,
    /// Requests below it take the size-class path (`cache::small_limit`).
    pub small_limit: AtomicUsize,
}

/// The process's caches (`cache::init` sets it up).
pub static ROOT: CacheRoot = CacheRoot {
    cpus: AtomicU32::new(0),
    off: AtomicIsize::new(0),
    base: AtomicUsize::new(0),
    id_field: AtomicUsize::new(0),
    small_limit: AtomicUsize::new(0),
};
