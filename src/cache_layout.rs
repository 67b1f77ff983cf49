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
/// the pop before had returned: see docs/experiments.md). A stack:
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
///   and free (refills, flushes, outbox and large-ring drains; u64s),
///   which those sections' callers add after their commit (atomic adds:
///   a section restarted after an add of its own counted twice): the
///   hits are `tail` and `head` less them (`cache::hits`), so malloc's
///   and free's sections count nothing of their own (the outbox's and
///   the large rings' pushes, all of one kind, are their head);
/// * 64 on, the slots: `ring_slots` of them.
pub const HEADER: usize = 64;
/// The most chunks a stack starts with room for (and the outbox's room):
/// a 128-slot ring less a few.
pub const CAP_MAX: usize = 124;
/// Slots of the smallest ring (the outbox's, and every class's at least).
pub const RING_MIN: usize = 128;
/// Slots of the largest ring.
pub const RING_MAX: usize = 2048;
/// Bytes of chunks a class's ring may grow to hold: its slots are this
/// over the class size, rounded down to a power of two, within
/// `RING_MIN..=RING_MAX` (up to 1 KiB: 2048; 2 KiB: 1024; 4 KiB: 512;
/// 8 KiB: 256; 10-16 KiB: 128). With 256 KiB (2048 slots up to 128 B, 256
/// for 1 KiB) batches of 1600 blocks of 256 B to 1 KiB still overflowed:
/// 512 B x 1600 9.9 -> 5.8 ns a pair, glibc_simple 0.93, for 512 KiB of
/// address space per CPU instead of 256.
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
/// Stacks per CPU block before the large rings. Slot 0 is the outbox,
/// class c is slot c + 1 (`slot_of`).
pub const CLASS_SLOTS: usize = NCLASSES + 1;
/// Rings of freed large blocks per CPU block, one per kept run size
/// (`large::ring_of`): slots `CLASS_SLOTS ..`, after the classes' stacks
/// (`large_slot`).
pub const LARGE_RINGS: usize = 8;
/// The run sizes (pages) of the large rings, by ring: large blocks of up
/// to 64 KiB are runs of these sizes (`large::run_pages`).
pub const LARGE_RING_PAGES: [usize; LARGE_RINGS] = [5, 6, 7, 8, 10, 12, 14, 16];
/// Stacks per CPU block, all told.
pub const NSLOTS: usize = CLASS_SLOTS + LARGE_RINGS;

/// The slot of large ring `r` (below `LARGE_RINGS`).
#[inline(always)]
pub const fn large_slot(r: usize) -> usize {
    CLASS_SLOTS + r % LARGE_RINGS
}

/// Slots of stack `slot`'s ring (see `RING_BYTES`; the large rings have
/// the fewest).
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

/// Bytes of stack `slot`: its header and its slots (a multiple of 64, so
/// that every header starts a cache line).
const fn stack_bytes(slot: usize) -> usize {
    HEADER + ring_slots(slot) * 8
}

/// The offset of each stack in a CPU's block, by slot: the outbox at 0
/// (free's section names it with a zeroed register), then the classes'
/// stacks, the largest rings first and in slot order within a ring size.
/// A stack at its base capacity uses its header and at most 128 slots
/// (1088 bytes); in this order none of those straddles a page (a
/// 2048-slot stack is four pages and a line, so each starts a line further
/// into its page), and all of them together span 32 pages of the block
/// (the old 2 KiB blocks: 19; smallest-first straddled pages).
const fn build_offsets() -> [u32; NSLOTS + 1] {
    let mut t = [0u32; NSLOTS + 1];
    let mut at = stack_bytes(OUTBOX);
    let mut ring = RING_MAX;
    while ring >= RING_MIN {
        let mut s = 0;
        while s < NSLOTS {
            if s != OUTBOX && ring_slots(s) == ring {
                t[s] = at as u32;
                at += stack_bytes(s);
            }
            s += 1;
        }
        ring /= 2;
    }
    // The end of the last stack: the bytes a block uses.
    t[NSLOTS] = at as u32;
    t
}
const _: () = assert!(build_offsets()[OUTBOX] == 0);

static OFFSETS: [u32; NSLOTS + 1] = build_offsets();

/// Where each block keeps its *idle headers*: one stack header per class
/// (`HEADER` bytes each, on a page of their own after the stacks), always
/// empty and never written. Until a class's first refill (`cache::enable`),
/// malloc's size table names the class's idle header instead of its stack,
/// so the first malloc of each class reads that one page, not the page of
/// the class's own stack, which the refill then writes: `expr` made 15
/// zero-page read faults on the stacks' pages, one a class, and now makes
/// one. A pop there finds it empty and falls through to the zone
/// (`class_at` knows the class from the offset).
pub const IDLE_AT: usize =
    (build_offsets()[NSLOTS] as usize).next_multiple_of(crate::os::PAGE_SIZE);
const USED: usize = IDLE_AT + NCLASSES * HEADER;

/// The offset of class `c`'s idle header (see `IDLE_AT`).
pub const fn idle_offset(c: usize) -> usize {
    IDLE_AT + (c % NCLASSES) * HEADER
}

/// Bytes of address space per CPU: the stacks and the idle headers,
/// rounded up to a power of two (512 KiB), mapped once and touched only as
/// far as rings are used.
pub const CPU_STRIDE: usize = USED.next_power_of_two();
/// log2 of `CPU_STRIDE`: the sections shift the CPU id (one cycle) rather
/// than multiply it (three), on the path of every hit.
pub const CPU_SHIFT: u32 = CPU_STRIDE.trailing_zeros();
const _: () = assert!(1 << CPU_SHIFT == CPU_STRIDE && USED <= CPU_STRIDE);
const _: () = assert!(HEADER.is_multiple_of(64) && (RING_MIN * 8).is_multiple_of(64));

/// The stack slot of class `c` in a CPU's block.
#[inline(always)]
pub const fn slot_of(c: usize) -> usize {
    (c % NCLASSES) + 1
}

/// The offset of stack `slot` in a CPU's block.
#[inline(always)]
pub const fn slot_offset(slot: usize) -> usize {
    OFFSETS[slot % NSLOTS] as usize
}

/// The offset of class `c`'s stack in a CPU's block: what `push_free`
/// takes, and what a free-map entry holds (`pagemap::FreeEntry`).
#[inline(always)]
pub const fn stack_offset(c: usize) -> usize {
    OFFSETS[slot_of(c)] as usize
}

/// The class of the stack that starts in each KiB of a block, up to the
/// idle headers: every stack spans more than a KiB (`RING_MIN` slots), so
/// no two start in the same one.
const fn build_class_by_kib() -> [u8; STACKS_KIB] {
    let mut t = [0u8; STACKS_KIB];
    let mut c = 0;
    while c < NCLASSES {
        t[stack_offset(c) >> 10] = c as u8;
        c += 1;
    }
    t
}
const _: () = assert!(stack_bytes(OUTBOX) > 1024 && NCLASSES <= 256);

/// KiB of a block that hold stacks (the idle headers start past them).
const STACKS_KIB: usize = IDLE_AT >> 10;
static CLASS_BY_KIB: [u8; STACKS_KIB] = build_class_by_kib();

/// The class whose stack or idle header is at `off` (a `stack_offset` or
/// an `idle_offset`; another value gives some class below `NCLASSES`): a
/// compare and one load, on the paths that miss the cache.
#[inline(always)]
pub fn class_at(off: usize) -> usize {
    if off >= IDLE_AT {
        return (off - IDLE_AT) / HEADER % NCLASSES;
    }
    CLASS_BY_KIB[(off >> 10) % STACKS_KIB] as usize
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
