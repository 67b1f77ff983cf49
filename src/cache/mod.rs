//! The per-CPU chunk cache: a lock-free fast path on restartable sequences.
//!
//! Each CPU has, per size class, a ring of free chunks (`cache_layout`:
//! 128 to 2048 slots, of which a capacity word lets the class use up to
//! `base_cap` at first, at most 124): malloc takes the oldest
//! chunk at the tail, free adds at the head, each committing a word of its
//! own, so that a malloc and the free after it never wait for each other
//! through memory (mimalloc and snmalloc separate their malloc and free
//! lists for the same reason). Called a stack below, as it was before it
//! became a ring. A thread pops from and pushes to
//! the stack of the CPU it runs on inside an rseq critical section (the
//! design of google/tcmalloc's per-CPU caches): the kernel restarts the
//! section if the thread is preempted, migrated or signalled before its one
//! committing store, so no lock and no atomic instruction is needed. The
//! sections use glibc's registered rseq area (`__rseq_offset`, signature
//! `0x53053053`), or where glibc registered none (glibc < 2.35, the
//! `glibc.pthread.rseq=0` tunable) our own, at a fixed offset too
//! (`cpu::own_area`); a thread that has not registered ours yet reads a
//! negative id, fails every section, and registers on its slow path. Where
//! the kernel refuses rseq (valgrind, seccomp, Linux < 4.18, other
//! architectures) the cache stays off and every request takes the zone lock
//! as before.
//!
//! **Invariant: a CPU's cache holds only chunks of slabs its own zone owns**
//! (its class stacks; the outbox and the large rings, `large.rs`, hold
//! chunks and runs of anyone's).
//! A free pushes a chunk only if the section finds it running on the chunk's
//! owner CPU (the check is inside the section, so a migration restarts it);
//! a chunk of another CPU's slab still goes onto that slab's remote list with
//! one CAS (`zone::free_remote_batched`), so the notification mechanism and its
//! counters are unchanged. The zone refills its own cache in batches under
//! its lock, and a free that finds the stack full takes the lock and hands
//! half of it to the zone's stash (`zone::Locked::flush_cache`); both move
//! a batch with one section (`push_bulk`, `pop_bulk`). Cached chunks count
//! as in use for their slab (its `used`), which bounds what the cache can
//! pin: at most `base_cap(c)` chunks, about 16 KiB (at most 124 chunks) per
//! class per CPU (8 KiB for all classes:
//! server 1.23x slower in an A/B; 32 KiB: the same speed, churn 0.27 MiB
//! more RSS; 64 KiB: more RSS, no clear gain). The stacks held 60 chunks
//! until the stash came; with 124 a tight loop over 100 to 400 blocks of
//! 16-64 bytes stays in the stack (docs/experiments.md). A class whose
//! stack overflows and then runs dry gets more, up to its ring's slots,
//! within a budget per CPU, until it goes idle (`zone/grow.rs`, `regear`).
//!
//! Other threads never write a cache; `cached` (stats) and the double-free
//! check read it racily, which can only miss a chunk that moves meanwhile.

use crate::arch::Caches;
pub use crate::cache_layout::{class_at, stack_offset, CAP_MAX, OUTBOX};
use crate::cache_layout::{
    idle_offset, large_slot, ring_slots, slot_of, slot_offset, BULK_POPS_AT, BULK_PUSHES_AT,
    CAP_AT, CPU_STRIDE, HEADER, HEAD_AT, LARGE_RINGS, LARGE_RING_PAGES, MASK_AT, NSLOTS, ROOT as G,
    TAIL_AT,
};
use crate::cpu;
use crate::size_class::{self, NCLASSES};
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// For each `(size + 15) / 16`, where malloc pops chunks of its class:
/// the class's idle header (`idle_offset`, always empty) until the class's
/// first refill on any CPU, its stack (`stack_offset`) from then on
/// (`enable`). One load from the size to the stack either way. Relaxed:
/// either value is a valid place to pop from, and a pop of a stack its CPU
/// has not prepared finds it empty too.
static STACK_BY_SIZE: [AtomicU32; size_class::SMALL_MAX / 16 + 1] = {
    let classes = size_class::build_index();
    let mut t = [const { AtomicU32::new(0) }; size_class::SMALL_MAX / 16 + 1];
    let mut j = 0;
    while j < t.len() {
        t[j] = AtomicU32::new(idle_offset(classes[j] as usize) as u32);
        j += 1;
    }
    t
};

/// Points malloc's size table at class `c`'s stacks (see `STACK_BY_SIZE`):
/// the zone calls it on every fill of a stack of the class, so a look at
/// the class's first entry is all it costs after the first. That entry is
/// stored last: once it names the stack, so do the others.
#[inline]
pub fn enable(c: usize) {
    let c = c % NCLASSES;
    let first = if c == 0 {
        0
    } else {
        size_class::class_size(c - 1) / 16 + 1
    };
    // (Always there: `get` spares the slicing its panic path.)
    let Some(entries) = STACK_BY_SIZE.get(first..=size_class::class_size(c) / 16) else {
        return;
    };
    let off = stack_offset(c) as u32;
    if entries
        .first()
        .is_some_and(|e| e.load(Ordering::Relaxed) != off)
    {
        for e in entries.iter().rev() {
            e.store(off, Ordering::Relaxed);
        }
    }
}

/// Where malloc pops chunks of the class serving `size` (at most
/// `SMALL_MAX`): `stack_offset(size_class::class_of(size))`, or that
/// class's idle header before its first refill (`STACK_BY_SIZE`).
#[inline(always)]
pub fn stack_of_size(size: usize) -> usize {
    STACK_BY_SIZE[size_class::size_index(size)].load(Ordering::Relaxed) as usize
}

/// `stack_of_size` for a size below the small limit, without the clamp
/// that a limit read from memory would otherwise cost malloc.
///
/// # Safety
/// `size <= SMALL_MAX` (true of any size below the small limit).
#[inline(always)]
pub unsafe fn stack_of_small(size: usize) -> usize {
    // SAFETY: for size <= SMALL_MAX (a multiple of 16) the index is at most
    // SMALL_MAX / 16, the table's last entry.
    unsafe {
        STACK_BY_SIZE
            .get_unchecked((size + 15) >> 4)
            .load(Ordering::Relaxed) as usize
    }
}

/// Bytes a class stack may hold, roughly: its capacity is this over the size.
const CLASS_BUDGET: usize = 16 * 1024;

/// True if `size` is below the *small limit*: requests below it take
/// malloc's cache hit path. The limit is `SMALL_MAX + 1` once the cache is
/// on, 0 until then, where the cache stays off, and while the heap
/// profiler samples (`prof`). A malloc below it runs the pop section with
/// no test of its own for a cache that is off, and every other malloc
/// takes the branch it already has to `alloc::malloc_big`, which serves
/// small sizes too. Never above `SMALL_MAX + 1` (`stack_of_small` relies on
/// it). In the root's cache line, so that malloc's size test reads no
/// other; one compare with the word in memory (`arch::below_small_limit`).
/// Acquire: pairs with the Release store in `init`, after the root's other
/// fields (a plain load on x86).
#[inline(always)]
pub fn below_small_limit(size: usize) -> bool {
    crate::arch::below_small_limit(size)
}

/// True while the heap profiler samples: `small_limit` stays 0.
static SAMPLING: AtomicBool = AtomicBool::new(false);

/// Sends every malloc to `alloc::malloc_big` (`small_limit` 0) for the heap
/// profiler, from now on. `init` and this are ordered as in Dekker's
/// algorithm (SeqCst): whichever runs second sees the other's flag, so
/// the limit ends at 0 either way.
pub fn stop_small_path() {
    SAMPLING.store(true, Ordering::SeqCst);
    G.small_limit.store(0, Ordering::SeqCst);
}

const fn build_caps() -> [u8; NSLOTS] {
    let mut t = [0u8; NSLOTS];
    t[OUTBOX] = CAP_MAX as u8;
    let mut c = 0;
    while c < NCLASSES {
        // (Half the budget above 1 KiB until the zones had stashes: the
        // caches then held most of churn's extra memory.) Twice the budget
        // above 512 bytes, where it held 16 chunks or fewer: a refill or a
        // flush moves half a stack, with a lock round trip each (1 KiB
        // chunks in batches of 8 spent 30 % of a loop in the slow paths).
        let size = size_class::size_of_class(c);
        let n = if size > 512 {
            2 * CLASS_BUDGET
        } else {
            CLASS_BUDGET
        } / size;
        t[slot_of(c)] = if n > CAP_MAX {
            CAP_MAX as u8
        } else if n < 1 {
            1
        } else {
            n as u8
        };
        c += 1;
    }
    let mut r = 0;
    while r < LARGE_RINGS {
        let n = LARGE_RING_BUDGET / (LARGE_RING_PAGES[r] * crate::os::PAGE_SIZE);
        t[large_slot(r)] = if n < 1 {
            1
        } else if n > CAP_MAX {
            CAP_MAX as u8
        } else {
            n as u8
        };
        r += 1;
    }
    t
}

/// Bytes of runs a large ring may hold, roughly: its capacity is this
/// over its run size (at least one).
const LARGE_RING_BUDGET: usize = 128 * 1024;

/// Capacity of each stack, by slot: bytes (at most `CAP_MAX`), the
/// table is in every process's first page of ours.
static CAPS: [u8; NSLOTS] = build_caps();
const _: () = assert!(CAP_MAX <= u8::MAX as usize);

/// The most chunks a refill or a flush moves (`batch`).
pub const BATCH_MAX: usize = CAP_MAX.div_ceil(2);

/// Chunks a refill moves from the slabs to the cache, and a flush back.
#[inline(always)]
pub fn batch(c: usize) -> usize {
    (CAPS[slot_of(c)] as usize).div_ceil(2)
}

/// The capacity a class's stack starts with (`prepare`), and goes back to
/// when the class goes idle: about `CLASS_BUDGET` bytes of chunks.
pub fn base_cap(c: usize) -> usize {
    CAPS[slot_of(c)] as usize
}

/// The most chunks class `c`'s stack can be made to hold: its ring's slots
/// (`cache_layout::RING_BYTES`).
pub fn max_cap(c: usize) -> usize {
    ring_slots(slot_of(c))
}

/// Sets CPU `owner`'s class `c` stack to hold up to `cap` chunks (at
/// least one, at most `max_cap`), its mask the power of two at or above
/// less one, if the caller runs on that CPU and the stack is empty: how the
/// zone lets a class that overflows its stack keep more, and takes it back
/// (`zone::Locked::fill_cache`, `shrink_ring`). False (nothing changed) if
/// the caller is elsewhere, the stack holds chunks, or the cache is off.
pub fn regear(owner: usize, c: usize, cap: usize) -> bool {
    let mask = (slots_used(c, cap) - 1) as u32;
    let cap = cap.clamp(1, max_cap(c));
    owner_state(owner).is_some_and(|k| k.regear_owned(owner, c, cap as u32, mask))
}

/// The slots a class `c` stack of capacity `cap` uses: its mask plus one,
/// the power of two at or above the capacity (clamped as `regear` does).
fn slots_used(c: usize, cap: usize) -> usize {
    cap.clamp(1, max_cap(c)).next_power_of_two()
}

/// `regear` down to `cap`, and on success the pages of the ring that lie
/// wholly past the slots its new mask uses go back to the system: a class
/// gone idle keeps no more memory than its base ring (glibc_simple, one
/// size after the other, kept every size's grown ring resident: 232 KiB
/// of a 3.5 MiB peak). Nothing reads a slot past the mask (every section
/// masks its index), and a ring grown later writes each slot before it
/// reads it, so the zero pages it then finds are never read as chunks.
/// The caller holds zone `owner`'s lock, as for every `regear`: then no
/// regear can raise the mask again between ours and the purge (one that
/// did would lose the chunks it let in past the old mask: a leak, never
/// a chunk handed out twice, since a purged slot reads as null).
pub fn shrink_to(owner: usize, c: usize, cap: usize) -> bool {
    if !regear(owner, c, cap) {
        return false;
    }
    if let Some((from, to)) = past_mask(owner, c, cap) {
        crate::os::purge(from as *mut u8, to - from);
    }
    true
}

/// The whole pages of CPU `owner`'s class `c` ring past the slots that a
/// capacity of `cap` uses (its mask's), if there are any.
fn past_mask(owner: usize, c: usize, cap: usize) -> Option<(usize, usize)> {
    let k = owner_state(owner)?;
    let ps = crate::os::PAGE_SIZE;
    let slots = k.stack(owner, slot_of(c)) + HEADER;
    let from = (slots + slots_used(c, cap) * 8).next_multiple_of(ps);
    let to = (slots + max_cap(c) * 8) & !(ps - 1);
    (to > from).then_some((from, to))
}

/// How many of the pages past the base capacity's slots of CPU `owner`'s
/// class `c` ring are resident (the tests of `shrink_to`).
#[cfg(test)]
pub fn resident_past_base(owner: usize, c: usize) -> usize {
    let Some((from, to)) = past_mask(owner, c, base_cap(c)) else {
        return 0;
    };
    let mut vec = [0u8; crate::cache_layout::RING_MAX * 8 / 4096 + 1];
    let n = (to - from) / crate::os::PAGE_SIZE;
    // SAFETY: [from, to) is whole pages of our mapping of the cache
    // blocks; `vec` has a byte for each of them.
    let r = unsafe { libc::mincore(from as *mut libc::c_void, to - from, vec.as_mut_ptr()) };
    assert_eq!(r, 0, "mincore");
    vec.iter().take(n).filter(|&&b| b & 1 != 0).count()
}

/// Turns the cache on if this thread has a registered rseq area (then every
/// thread has: glibc registers all or none). Called once from `ensure_init`.
pub fn init() {
    // First, whatever follows: free's section writes `rseq_cs` at
    // fs:[off + 8] whether or not the cache is on (it then fails at once),
    // and this is a `struct rseq` of ours, registered or not, that no one
    // else reads. No chunk exists before this runs (see `push_free`).
    if let Some(own) = crate::arch::own_area_offset() {
        G.off.store(own, Ordering::Relaxed);
    }
    let Some(off) = cpu::rseq_offset() else {
        return;
    };
    if !crate::arch::HAS_SECTIONS {
        return;
    }
    let n = cpu::nzones();
    let p = crate::os::map(n * CPU_STRIDE);
    if p.is_null() {
        return; // no memory now: run without the cache
    }
    G.base.store(p as usize, Ordering::Relaxed);
    G.off.store(off, Ordering::Relaxed);
    G.id_field.store(cpu::id_field(), Ordering::Relaxed);
    // Release: a thread that sees `cpus` != 0 sees the others (Acquire in
    // `state`; on x86 both are plain moves).
    G.cpus.store(n as u32, Ordering::Release);
    // Last: malloc's hit path runs the section once it sees the limit.
    G.small_limit
        .store(size_class::SMALL_MAX + 1, Ordering::SeqCst);
    if SAMPLING.load(Ordering::SeqCst) {
        G.small_limit.store(0, Ordering::SeqCst);
    }
}

/// The process's caches, or None while the cache is off.
#[inline(always)]
fn state() -> Option<Caches> {
    let n = G.cpus.load(Ordering::Acquire);
    if n == 0 {
        return None;
    }
    Some(Caches {
        off: G.off.load(Ordering::Relaxed),
        n,
        base: G.base.load(Ordering::Relaxed),
    })
}

/// True if the cache is on (the process has rseq).
#[inline(always)]
pub fn on() -> bool {
    G.cpus.load(Ordering::Relaxed) != 0
}

/// Pops a chunk of the class whose stack is at `coff` (`stack_offset`) from
/// the current CPU's cache; null if the cache is off or the stack is empty.
/// The caller clears the chunk's free mark.
///
/// # Safety
/// `coff` is a stack offset (`stack_offset`, `stack_of_size`).
#[inline(always)]
pub unsafe fn pop(coff: usize) -> *mut u8 {
    if !on() {
        return core::ptr::null_mut();
    }
    // SAFETY: the cache is on, so the root's `off` is the rseq area's; the
    // offset is a stack's (the contract).
    unsafe { crate::arch::pop_hot(coff) }
}

/// `pop` for malloc's hit path: no test for a cache that is off.
///
/// # Safety
/// The caller found its size below the small limit (so the cache is on), and
/// `coff` is a stack offset (`stack_of_small`).
#[inline(always)]
pub unsafe fn pop_on(coff: usize) -> *mut u8 {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe { crate::arch::pop_hot(coff) }
}

/// Pushes `p`, for `free`, onto the cache of CPU `owner` (a chunk of the
/// class whose stack is at `coff`, `stack_offset`, of a slab zone `owner`
/// owns) if the caller runs on it and the stack has room, counted as a
/// cache free; where the
/// caller runs on another CPU than `owner`, `p` goes to the outbox of the
/// CPU it runs on instead (see `OUTBOX`): one section for both, so that a
/// remote free costs what a local one does. The caller has set the chunk's
/// free mark, and knows `p` lies below its slab's carve pointer
/// (`pagemap::chunk_fast`). False if the stack it chose is full (or not set
/// up yet), or the cache is off: the caller frees `p` another way.
///
/// # Safety
/// `coff` is a stack offset (`stack_offset`) or 0 (the outbox, which
/// takes any chunk): what a free-map entry holds, unmasked, so that the
/// push spends no instruction on it.
#[inline(always)]
pub unsafe fn push_free(owner: usize, coff: usize, p: *mut u8) -> bool {
    // SAFETY: `coff` is a stack offset or 0 (the contract), inside a
    // block. `p` is a chunk, so `init` ran (the first slab comes after it)
    // and set the root's `off` to a `struct rseq` of ours: the rseq area,
    // or, with the cache off (`cpus` 0, so the section fails at once), our
    // own unregistered one.
    unsafe { crate::arch::push_free_hot(owner, coff, p) }
}

/// The caches, if they are on and `owner` is a CPU with one: one test for
/// both.
#[inline(always)]
fn owner_state(owner: usize) -> Option<Caches> {
    let n = G.cpus.load(Ordering::Acquire);
    if owner >= n as usize {
        return None;
    }
    Some(Caches {
        off: G.off.load(Ordering::Relaxed),
        n,
        base: G.base.load(Ordering::Relaxed),
    })
}

/// Sets the capacity word of CPU `cpu`'s class `c` stack, which reads 0 (no
/// room: every push fails) until then. The zone calls it once, before it
/// first fills the stack (after that, `regear` may have changed the
/// capacity). It writes without reading first: a read of the stack's page
/// before any write maps the zero page, and the write then faults again.
pub fn prepare(cpu: usize, c: usize) {
    if let Some(k) = state() {
        k.prepare(cpu, slot_of(c));
    }
}

/// Pushes the chunks of `buf` (class `c`, all of zone `owner`'s slabs)
/// onto CPU `owner`'s stack in one section, the last one on top, if the
/// caller runs on that CPU and the stack has room for all of them: a refill
/// from the zone's stash or its slabs (a refill: not counted as a free). A
/// refill does not touch the chunks: one from a free list keeps its free
/// mark, one carved from untouched memory has none (and stays non-resident
/// until a pop hands it out). On false nothing was pushed.
pub fn push_bulk(owner: usize, c: usize, buf: &[*mut u8]) -> bool {
    !buf.is_empty()
        && buf.len() <= CAP_MAX
        && owner_state(owner).is_some_and(|k| k.push_bulk_owned(owner, c, buf))
}

/// Pops up to `buf.len()` chunks of class `c` from CPU `owner`'s stack into
/// `buf` in one section, oldest first, if the caller runs on that CPU; returns
/// how many (0 if it does not run there, or the stack is empty).
pub fn pop_bulk(owner: usize, c: usize, buf: &mut [*mut u8]) -> usize {
    match owner_state(owner) {
        Some(k) => k.pop_bulk_owned(owner, c, buf),
        None => 0,
    }
}

/// The chunks in ring `slot` whose tail and head read `tail` and `head`,
/// at most its slots even in a racy read of the two.
fn ring_count(slot: usize, tail: u64, head: u64) -> usize {
    (head.wrapping_sub(tail) as usize).min(ring_slots(slot))
}

/// Mallocs and frees of class `c` that the caches served, over all CPUs.
pub fn hits(c: usize) -> (u64, u64) {
    state().map_or((0, 0), |k| {
        (0..k.n as usize).fold((0u64, 0u64), |(a, f), cpu| {
            let (pops, pushes) = k.hits(cpu, slot_of(c));
            (a.wrapping_add(pops), f.wrapping_add(pushes))
        })
    })
}

/// Chunks that ever entered or left CPU `owner`'s class `c` stack (twice
/// its tail plus its count): unchanged while nothing touched it. Racy
/// unless the caller runs on that CPU; 0 if it has no stack.
pub fn moves(owner: usize, c: usize) -> u64 {
    state().map_or(0, |k| {
        if owner >= k.n as usize {
            return 0;
        }
        k.moves(owner, slot_of(c))
    })
}

/// Chunks that ever left CPU `owner`'s class `c` stack (its tail): racy
/// unless the caller runs on that CPU; 0 if it has no stack.
pub fn pops(owner: usize, c: usize) -> u64 {
    state().map_or(0, |k| {
        if owner >= k.n as usize {
            return 0;
        }
        k.view(owner, slot_of(c)).0
    })
}

/// The capacity of CPU `owner`'s class `c` stack now (0 until prepared,
/// or without a cache): racy, unless the caller holds zone `owner`'s lock
/// (only that zone prepares and regears the stack).
pub fn capacity(owner: usize, c: usize) -> usize {
    state().map_or(0, |k| {
        if owner >= k.n as usize {
            return 0;
        }
        k.cap(owner, slot_of(c))
    })
}

/// Address space of the cache blocks (0 while the cache is off).
pub fn reserved_bytes() -> usize {
    state().map_or(0, |k| k.n as usize * CPU_STRIDE)
}

/// Chunks waiting in all CPUs' outboxes now (racy: for statistics).
pub fn in_outboxes() -> u64 {
    state().map_or(0, |k| k.cached(OUTBOX))
}

/// Chunks of class `c` cached on all CPUs now (racy: for statistics).
pub fn cached(c: usize) -> u64 {
    state().map_or(0, |k| k.cached(slot_of(c)))
}

/// True if `p` (class `c`, owned by zone `owner`) sits in that CPU's cache,
/// or in any CPU's outbox: a double free. Racy: a chunk that moves meanwhile
/// is not reported.
pub fn contains(owner: usize, c: usize, p: *mut u8) -> bool {
    state().is_some_and(|k| {
        k.contains(owner, slot_of(c), p) || (0..k.n as usize).any(|cpu| k.contains(cpu, OUTBOX, p))
    })
}

/// Defers the remote free of `p` (a chunk of another CPU's slab, its free
/// mark set) to the current CPU's outbox. False if the cache is off or the
/// outbox is full: the caller then empties it (`outbox_take`) or frees `p`
/// directly.
#[inline(always)]
pub fn outbox_push(p: *mut u8) -> bool {
    state().is_some_and(|k| k.push_here(OUTBOX, p))
}

/// Sets the capacity of the current CPU's outbox (0, no room, until then).
/// Called on every flush of a full outbox; its capacity never changes.
pub fn prepare_outbox() {
    prepare_here(OUTBOX);
}

/// Sets the capacity of stack `slot` of the CPU the caller runs on, if it
/// is still 0 (a stack that no zone prepares or regears: the outbox, the
/// large rings). A thread that has moved on meanwhile prepares another
/// CPU's stack, with the same value its own thread would store.
#[inline(always)]
fn prepare_here(slot: usize) {
    if let Some(k) = state() {
        if let Some(cpu) = cpu::rseq_id(k.off) {
            if cpu < k.n as usize && k.cap(cpu, slot) == 0 {
                k.prepare(cpu, slot);
            }
        }
    }
}

/// Takes every chunk of the current CPU's outbox into `buf`; returns how many.
pub fn outbox_take(buf: &mut [usize; CAP_MAX]) -> usize {
    state().map_or(0, |k| k.take_here(OUTBOX, buf))
}

impl Caches {
    /// Stack `slot` of CPU `cpu` (tail, head, capacity, mask, counts, slots: see
    /// `CAP_MAX`).
    #[inline(always)]
    fn stack(&self, cpu: usize, slot: usize) -> usize {
        self.base + cpu * CPU_STRIDE + slot_offset(slot)
    }
    fn prepare(&self, cpu: usize, slot: usize) {
        if cpu < self.n as usize {
            let q = self.stack(cpu, slot);
            // SAFETY: inside the mapping (cpu < n); aligned u32s that only
            // this function writes, and always with the same values.
            let (cap, mask) = unsafe {
                (
                    &*((q + CAP_AT) as *const AtomicU32),
                    &*((q + MASK_AT) as *const AtomicU32),
                )
            };
            let c = u32::from(CAPS[slot % NSLOTS]);
            // The mask first: a section that reads the capacity (which
            // lets a push in) reads the mask after it (Release/Acquire
            // order; plain moves on x86, where loads keep their order).
            mask.store(c.next_power_of_two() - 1, Ordering::Release);
            cap.store(c, Ordering::Release);
        }
    }

    /// Malloc's pops from and free's pushes onto stack `slot` of CPU `cpu`
    /// (< n): the tail and the head less the other sections' moves.
    fn hits(&self, cpu: usize, slot: usize) -> (u64, u64) {
        let q = self.stack(cpu, slot);
        let word = |at: usize| {
            // SAFETY: inside the mapping (cpu < n); aligned u64s that the
            // sections write whole.
            unsafe { (*((q + at) as *const AtomicU64)).load(Ordering::Relaxed) }
        };
        (
            word(TAIL_AT).wrapping_sub(word(BULK_POPS_AT)),
            word(HEAD_AT).wrapping_sub(word(BULK_PUSHES_AT)),
        )
    }

    /// One ring, for racy reads: its tail, its chunk count, its mask (below
    /// its slots) and its slots.
    fn view(&self, cpu: usize, slot: usize) -> (u64, usize, usize, *const AtomicUsize) {
        let q = self.stack(cpu, slot);
        // SAFETY: `q` is inside the mapping (cpu < n, checked by callers);
        // tail and head are aligned u64s, the mask an aligned u32, and the
        // slots aligned words, which the sections only ever write whole.
        unsafe {
            let tail = (*((q + TAIL_AT) as *const AtomicU64)).load(Ordering::Relaxed);
            let head = (*((q + HEAD_AT) as *const AtomicU64)).load(Ordering::Relaxed);
            let mask = (*((q + MASK_AT) as *const AtomicU32)).load(Ordering::Relaxed);
            (
                tail,
                ring_count(slot, tail, head),
                mask as usize & (ring_slots(slot) - 1),
                (q + HEADER) as *const AtomicUsize,
            )
        }
    }

    /// Chunks that ever entered or left stack `slot` of CPU `cpu` (< n):
    /// twice its tail plus its count (racy).
    fn moves(&self, cpu: usize, slot: usize) -> u64 {
        let (tail, n, _, _) = self.view(cpu, slot);
        tail.wrapping_mul(2).wrapping_add(n as u64)
    }

    /// Stack `slot`'s capacity word (racy).
    fn cap(&self, cpu: usize, slot: usize) -> usize {
        let q = self.stack(cpu, slot);
        // SAFETY: inside the mapping (cpu < n, checked by callers); an
        // aligned u32 that writers store whole.
        unsafe { (*((q + CAP_AT) as *const AtomicU32)).load(Ordering::Relaxed) as usize }
    }

    fn cached(&self, slot: usize) -> u64 {
        (0..self.n as usize)
            .map(|cpu| self.view(cpu, slot).1 as u64)
            .sum()
    }

    fn contains(&self, owner: usize, slot: usize, p: *mut u8) -> bool {
        if owner >= self.n as usize {
            return false;
        }
        let (tail, n, mask, slots) = self.view(owner, slot);
        // SAFETY: `slots` points at the ring's slots (see `view`), and
        // every index is masked below their count.
        (0..n).any(|i| {
            let at = (tail as usize).wrapping_add(i) & mask;
            // SAFETY: see above.
            let q = unsafe { (*slots.add(at)).load(Ordering::Relaxed) };
            q == p as usize
        })
    }
}

mod large;
#[cfg(test)]
pub use large::large_capacity;
pub use large::{large_moves_here, large_pop, large_push, large_take, large_totals};

#[cfg(test)]
pub(crate) mod tests;
