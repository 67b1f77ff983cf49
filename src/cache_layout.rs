//! The per-CPU cache's memory layout: one block per CPU, one stack per size
//! class in it, and the root the fast paths read first. Constants and one
//! static, shared by the rseq sections (`arch`), which address the stacks
//! in assembly, the free map (`pagemap`), which holds a class's stack
//! offset in place, and the cache (`cache`), which manages them.

use crate::size_class::NCLASSES;
use core::sync::atomic::{AtomicIsize, AtomicU32, AtomicUsize};

/// Each class's stack is a ring of slots (FIFO: malloc takes from the
/// tail, free adds at the head), so that malloc and free each commit a
/// word of their own. A malloc and the free that follows it then form no
/// chain through memory (with one LIFO word, each pop waited for the push
/// before it to commit, and that push for the free-map lookup of the chunk
/// the pop before had returned: see docs/experiments.md). A stack's
/// header, one cache line:
///
/// * bytes 0-7, the tail: pops so far (a u64 that only grows; the slot
///   of the oldest chunk is `tail & mask`), committed by malloc's section;
/// * 8-15, the head: pushes so far, committed by free's; `head - tail`
///   chunks are cached;
/// * 16-19, the capacity (u32; 0 until the zone prepares the stack, which
///   refuses every push): the most chunks it may hold now, which the zone
///   raises for a class that overflows and lowers again when it goes idle
///   (`cache::regear`), never above `mask + 1`;
/// * 20-23, the mask: the slots in use less one (a power of two at least
///   the capacity, so that a ring touches only the slots its capacity
///   needs, however many it has);
/// * 24-31 and 32-39, the chunks taken out and put in other than by malloc
///   and free (refills, flushes, outbox drains; u64s), which those
///   sections bump before their commit: the hits are `tail` and `head`
///   less them (`cache::hits`), so malloc's and free's sections count
///   nothing of their own;
/// * 40-47, the address of the slots in use: the stack's base array
///   (`RING_MIN` slots) while its mask fits there, its grown array
///   (`ring_slots`) above. The sections load it from the line they read
///   the tail or head from, so it costs an instruction, not a wait.
pub const HEADER: usize = 64;
/// The most chunks a stack starts with room for (and the outbox's room):
/// a 128-slot ring less a few.
pub const CAP_MAX: usize = 124;
/// Slots of the smallest ring (the outbox's, and every class's at least):
/// a stack's base array.
pub const RING_MIN: usize = 128;
/// Slots of the largest ring.
pub const RING_MAX: usize = 2048;
/// Bytes of chunks a class's ring may grow to hold: its slots are this
/// over the class size, rounded down to a power of two, within
/// `RING_MIN..=RING_MAX` (up to 1 KiB: 2048; 2 KiB: 1024; 4 KiB: 512;
/// 8 KiB: 256; 10-16 KiB: 128). With 256 KiB (2048 slots up to 128 B, 256
/// for 1 KiB) batches of 1600 blocks of 256 B to 1 KiB still overflowed:
/// 512 B x 1600 9.9 -> 5.8 ns a pair, glibc_simple 0.93.
pub const RING_BYTES: usize = 2048 * 1024;
const _: () = assert!(CAP_MAX < RING_MIN && RING_MIN.is_power_of_two());
/// Byte offsets of the header's fields (the sections spell them as
/// numbers: the asserts tie the two).
pub const TAIL_AT: usize = 0;
pub const HEAD_AT: usize = 8;
pub const CAP_AT: usize = 16;
pub const MASK_AT: usize = 20;
pub const BULK_POPS_AT: usize = 24;
pub const BULK_PUSHES_AT: usize = 32;
pub const SLOTS_AT: usize = 40;
/// Stacks per CPU block. Slot 0 is the outbox, class c is slot c + 1
/// (`slot_of`).
pub const CLASS_SLOTS: usize = NCLASSES + 1;

/// Slots of stack `slot`'s ring at its largest (see `RING_BYTES`).
pub const fn ring_slots(slot: usize) -> usize {
    if slot == OUTBOX || slot >= CLASS_SLOTS {
        return RING_MIN;
    }
    let n = RING_BYTES / crate::size_class::size_of_class(slot - 1);
    let p = if n < RING_MIN {
        RING_MIN
    } else {
        1 << (usize::BITS - 1 - n.leading_zeros())
    };
    if p > RING_MAX {
        RING_MAX
    } else {
        p
    }
}

/// A CPU's block, three parts:
///
/// * the headers, by slot, from 0 (free's section names the outbox with a
///   zeroed register): 37 lines, the first page;
/// * from `BASE_AT`, the base arrays, `RING_MIN` slots (1 KiB) each, by
///   slot: four stacks to a page, the smallest classes together;
/// * from `GROWN_AT`, the grown arrays of the classes whose rings can hold
///   more than `RING_MIN` (`grown_offset`), the largest first, each aligned
///   to its size.
///
/// A program that uses a few classes touches the header page and a page of
/// base arrays per four of them: `expr` and `sh -c` faulted each class's
/// stack page in twice (read by the first pop, written by the refill) when
/// every stack had its slots beside its header on a page of its own.
pub const BASE_AT: usize = (CLASS_SLOTS * HEADER).next_multiple_of(4096);
const GROWN_AT: usize = (BASE_AT + CLASS_SLOTS * RING_MIN * 8).next_multiple_of(4096);

/// The offset of each stack's grown array in a CPU's block, by slot (its
/// base array's where the ring never grows past it); the last entry is
/// the end of the block's used part.
const fn build_grown() -> [u32; CLASS_SLOTS + 1] {
    let mut t = [0u32; CLASS_SLOTS + 1];
    let mut at = GROWN_AT;
    let mut ring = RING_MAX;
    while ring > RING_MIN {
        let mut s = 0;
        while s < CLASS_SLOTS {
            if ring_slots(s) == ring {
                t[s] = at as u32;
                at += ring * 8;
            }
            s += 1;
        }
        ring /= 2;
    }
    let mut s = 0;
    while s < CLASS_SLOTS {
        if ring_slots(s) == RING_MIN {
            t[s] = base_offset(s) as u32;
        }
        s += 1;
    }
    t[CLASS_SLOTS] = at as u32;
    t
}

static GROWN: [u32; CLASS_SLOTS + 1] = build_grown();
const USED: usize = build_grown()[CLASS_SLOTS] as usize;
/// Bytes of address space per CPU: the three parts, rounded up to a power
/// of two (512 KiB), mapped once and touched only as far as stacks are used.
pub const CPU_STRIDE: usize = USED.next_power_of_two();
/// log2 of `CPU_STRIDE`: the sections shift the CPU id (one cycle) rather
/// than multiply it (three), on the path of every hit.
pub const CPU_SHIFT: u32 = CPU_STRIDE.trailing_zeros();
const _: () = assert!(1 << CPU_SHIFT == CPU_STRIDE && USED <= CPU_STRIDE);
const _: () = assert!(HEADER.is_multiple_of(64) && SLOTS_AT + 8 <= HEADER);

/// The stack slot of class `c` in a CPU's block.
#[inline(always)]
pub const fn slot_of(c: usize) -> usize {
    (c % NCLASSES) + 1
}

/// The offset of stack `slot`'s header in a CPU's block.
#[inline(always)]
pub const fn slot_offset(slot: usize) -> usize {
    (slot % CLASS_SLOTS) * HEADER
}

/// The offset of stack `slot`'s base array (`RING_MIN` slots) in a block.
#[inline(always)]
pub const fn base_offset(slot: usize) -> usize {
    BASE_AT + (slot % CLASS_SLOTS) * RING_MIN * 8
}

/// The offset of stack `slot`'s grown array (`ring_slots` slots) in a
/// block: its base array's if it has no other.
#[inline(always)]
pub fn grown_offset(slot: usize) -> usize {
    GROWN[slot % CLASS_SLOTS] as usize
}

/// The offset of class `c`'s stack (its header) in a CPU's block: what
/// `push_free` takes, and what a free-map entry holds
/// (`pagemap::FreeEntry`).
#[inline(always)]
pub const fn stack_offset(c: usize) -> usize {
    slot_offset(slot_of(c))
}

/// The class whose stack is at `off` (a `stack_offset`; another value
/// gives some class below `NCLASSES`): a shift, on the paths that miss the
/// cache.
#[inline(always)]
pub const fn class_at(off: usize) -> usize {
    (off / HEADER).wrapping_sub(1) % NCLASSES
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
