//! Large and huge blocks.
//!
//! *Large* blocks (above the biggest size class, up to `MAX_RUN_PAGES` pages)
//! are page runs from the arenas: no system call per block, and freed runs
//! stay warm for reuse until the dirty budget says otherwise (`runs`). Their
//! `realloc` grows in place into a free neighbour when it can.
//!
//! *Huge* blocks get a mapping of their own, a whole number of 64 MiB regions
//! aligned to 64 MiB, so the page map's region table identifies them and
//! nothing else can share their regions. The page before the user's block
//! holds a header with the mapping's start and length. Growing uses the
//! slack up to the region end, then `mremap`, which moves the pages to a new
//! aligned reservation without copying.
//!
//! Blocks of `HUGE_RUN_MIN` and more are put on transparent huge pages
//! (those of their pages that make whole 2 MiB pages: `MADV_HUGEPAGE`;
//! `SLABALLOC_HUGEPAGES=0` turns it off): a program that fills such a
//! block takes one fault per 2 MiB instead of 512, and fewer TLB misses
//! (malloc_large, 5-25 MiB blocks: 135,727 page faults -> 17,174, time
//! 0.81x paired, peak RSS unchanged). A large run's advice is taken back
//! when it is freed, so the arena's pages, which never take huge pages
//! otherwise (`runs`), serve slabs again as before.

use crate::cache_layout::{LARGE_RINGS, LARGE_RING_PAGES};
use crate::os::{self, PAGE_SIZE};
use crate::pagemap::{
    self, Desc, ARENA_SIZE, KIND_CACHED, KIND_LARGE, REGION_HUGE, REGION_HUGE_TAIL, REGION_NONE,
};
use crate::runs::{MapPages, MAX_RUN_PAGES, RUNS};
use crate::stats::GLOBAL;
use crate::{cache, cpu, zone};
use core::sync::atomic::Ordering;

/// Smallest request that may be a huge block.
pub const HUGE_MIN: usize = MAX_RUN_PAGES * PAGE_SIZE;

/// Smallest block put on transparent huge pages: one that holds at least
/// one whole 2 MiB page wherever it lies. A smaller block would round its
/// resident memory up to 2 MiB for the one huge page it might hold, and a
/// program that touches a part of a block pays for the whole page.
const HUGE_RUN_MIN: usize = 2 * os::HUGE_PAGE;

/// Advises transparent huge pages for the block `[p, p + len)` (`on`; the
/// kernel gives them to its whole 2 MiB pages), or takes the advice back
/// (whatever `SLABALLOC_HUGEPAGES` says: a block made before the
/// constructor read it may have had it); nothing for a block below
/// `HUGE_RUN_MIN`, nor advice with `SLABALLOC_HUGEPAGES=0`. The advice
/// covers the whole block, not only its whole 2 MiB pages: the block is
/// then one kernel mapping, which `mremap` can move (`move_large`,
/// `realloc_huge`: a range over several mappings it refuses, and the block
/// was copied instead; under `SLABALLOC_FAIL_MAP_AFTER=10` that copy's new
/// mapping failed).
fn advise_block(p: usize, len: usize, on: bool) {
    if len < HUGE_RUN_MIN || (on && !crate::config::HUGEPAGES.load(Ordering::Relaxed)) {
        return;
    }
    os::advise_huge(p as *mut u8, len, on);
}

const HUGE_MAGIC: u64 = 0x534c_4142_4855_4745; // "SLABHUGE"

#[repr(C)]
struct HugeHeader {
    magic: u64,
    /// Start of the mapping.
    base: usize,
    /// Bytes mapped (a multiple of ARENA_SIZE).
    len: usize,
    /// Offset of the user block from the mapping start.
    off: usize,
}

/// True if `size` bytes at page alignment `align` fit in a page run.
pub fn fits_run(size: usize, align: usize) -> bool {
    size <= MAX_RUN_PAGES * PAGE_SIZE && align <= MAX_RUN_PAGES * PAGE_SIZE / 2
}

/// The pages of the run that holds a large block of `size` bytes: whole
/// pages, and from 9 to 16 pages an even number, so that the blocks a zone
/// keeps (`zone/bigs.rs`, at most 16 pages) come in eight sizes from 16 to
/// 64 KiB (5, 6, 7, 8, 10, 12, 14, 16 pages: at most 12 % more than asked)
/// and a freed one fits the next request of about its size. Exact sizes
/// made a kept run fit a request of 16-64 KiB drawn at random too rarely
/// to matter (`buffers`: 0.66 s against snmalloc's 0.08).
#[inline(always)]
fn run_pages(size: usize) -> usize {
    run_pages_of(size.div_ceil(PAGE_SIZE).max(1))
}

/// `run_pages` of a size of `n` whole pages.
#[inline(always)]
const fn run_pages_of(n: usize) -> usize {
    if n > 8 && n <= zone::BIG_PAGES {
        n.next_multiple_of(2)
    } else {
        n
    }
}

/// The large ring (`cache/large.rs`) of the runs that `run_pages` makes of
/// `n` pages, `n` up to 16 (one compare, no table): `LARGE_RINGS` or more
/// for sizes no ring keeps (below 5 pages, above 16). A run of exactly
/// `n` pages belongs there only if `n` is one of `LARGE_RING_PAGES`
/// (`ring_of_run`): `grow_large` makes runs of odd sizes too.
#[inline(always)]
const fn ring_index(n: usize) -> usize {
    if n <= 8 {
        n.wrapping_sub(5)
    } else {
        (n - 1) / 2
    }
}

/// The large ring that keeps runs of exactly `n` pages, if one does.
#[inline(always)]
const fn ring_of_run(n: usize) -> Option<usize> {
    let r = ring_index(n);
    if r < LARGE_RINGS && (n <= 8 || n.is_multiple_of(2)) {
        Some(r)
    } else {
        None
    }
}
const _: () = {
    let mut n = 1;
    while n <= 64 {
        let r = ring_index(n);
        if n >= 5 && n <= zone::BIG_PAGES {
            assert!(r < LARGE_RINGS && LARGE_RING_PAGES[r] == run_pages_of(n));
        } else {
            assert!(r >= LARGE_RINGS);
        }
        if let Some(r) = ring_of_run(n) {
            assert!(LARGE_RING_PAGES[r] == n);
        }
        n += 1;
    }
};

use zone::KEPT_TICK as TICK;

/// A large block of `size` bytes at page alignment `align` from the runs
/// kept for the current CPU, if it has one of that size or up to a quarter
/// more: its large rings first (`alloc_from_ring`), then its zone's kept
/// runs if the zone is free now (`zone/bigs.rs`). Its memory is dirty.
/// With it, whether the caller should run the slow-path hooks this time
/// (`TICK`). `rings`: false if the caller tried the rings already (malloc).
#[inline(always)]
pub fn alloc_kept(size: usize, align: usize, rings: bool) -> Option<(*mut u8, bool)> {
    let pages = run_pages(size);
    if pages > zone::BIG_PAGES {
        return None;
    }
    if rings && align <= PAGE_SIZE {
        if let Some(r) = ring_for(size) {
            if let Some(hit) = pop_ring_cold(r).or_else(|| pop_ring_cold(r + 1)) {
                return Some(hit);
            }
        }
    }
    let z = zone::try_lock_index(cpu::current_zone())?;
    let p = z.take_large(pages, (align / PAGE_SIZE).max(1))?;
    Some((p, z.big_tick()))
}

/// A large block of `size` bytes (above the size classes) from the
/// current CPU's large rings (`cache/large.rs`: no lock, no atomic
/// instruction): a run of its size, else of the next (at most a quarter
/// more, as the zone's best fit allows). Its memory is dirty. With it,
/// whether the caller should run the slow-path hooks this time (`TICK`).
/// Malloc's first try for a size above the classes; its one pop is
/// inlined there, the others (`pop_ring_cold`, also `alloc_kept`'s) are
/// not: each copy of a section adds two relocations to every process's
/// first page of ours.
#[inline(always)]
pub fn alloc_from_ring(size: usize) -> Option<(*mut u8, bool)> {
    let r = ring_for(size)?;
    pop_ring(r).or_else(|| pop_ring_cold(r + 1))
}

/// The large ring of a request of `size` bytes (above the size classes),
/// if one keeps runs of its size.
#[inline(always)]
fn ring_for(size: usize) -> Option<usize> {
    let r = ring_index((size - 1) / PAGE_SIZE + 1);
    (r < LARGE_RINGS).then_some(r)
}

/// `pop_ring`, out of line.
#[inline(never)]
fn pop_ring_cold(r: usize) -> Option<(*mut u8, bool)> {
    pop_ring(r)
}

/// A run from the current CPU's large ring `r` (none past the last),
/// marked a live large block again, and whether to tick.
#[inline(always)]
fn pop_ring(r: usize) -> Option<(*mut u8, bool)> {
    if r >= LARGE_RINGS {
        return None;
    }
    let (p, pops) = cache::large_pop(r);
    if p.is_null() {
        return None;
    }
    let d = pagemap::slab_desc_fast(p as usize);
    // SAFETY: a run in a large ring is a kept run's first page, whose page
    // map entry names its head descriptor; popped, it is ours alone.
    // Release: pairs with the Acquire in `pagemap::lookup`.
    unsafe { (*d).set_kind(KIND_LARGE) };
    Some((p, pops.is_multiple_of(TICK)))
}

/// Keeps the freed large run `d` in the current CPU's large ring of its
/// size, if there is one and it has room: whether to tick, or None (the
/// caller frees it another way: `free_large`). Free's first try for a
/// large block.
///
/// # Safety
/// `d` is the head descriptor of a live large run that the caller frees.
#[inline(always)]
pub unsafe fn free_to_ring(d: *mut Desc) -> Option<bool> {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe {
        let r = ring_of_run((*d).npages())?;
        if (*d).state() == LARGE_MOVED {
            return None;
        }
        // Marked before the push: once pushed, another thread on this CPU
        // may pop it and mark it live. A run the ring refuses stays so
        // marked on its way to the zone or the page runs, which take it
        // either way.
        (*d).set_kind(KIND_CACHED);
        let (base, head) = pagemap::desc_home(d);
        let pushes = cache::large_push(r, pagemap::page_addr(base, head) as *mut u8);
        (pushes != 0).then_some(pushes.is_multiple_of(TICK))
    }
}

/// A large block from the page runs: returns (pointer, reads-as-zero) or
/// null.
pub fn alloc_large(size: usize, align: usize) -> (*mut u8, bool) {
    let pages = run_pages(size);
    let align_pages = (align / PAGE_SIZE).max(1);
    // Counted before the run is taken, taken back if none is: a
    // lock-prefixed add after `RUNS.alloc` waited for the stores the page
    // lock's work left in flight (the descriptors of the run and of the
    // pieces it was split from, often cache misses): 4 % of `midsize`.
    GLOBAL.large_allocs.fetch_add(1, Ordering::Relaxed);
    GLOBAL
        .large_bytes
        .fetch_add(pages * PAGE_SIZE, Ordering::Relaxed);
    let Some(r) = RUNS.alloc(pages, align_pages, MapPages::Ends) else {
        GLOBAL.large_allocs.fetch_sub(1, Ordering::Relaxed);
        GLOBAL
            .large_bytes
            .fetch_sub(pages * PAGE_SIZE, Ordering::Relaxed);
        return (core::ptr::null_mut(), false);
    };
    let d = r.desc();
    // SAFETY: the run is ours alone until we publish it; Release pairs with
    // the Acquire in `pagemap::lookup`.
    unsafe {
        (*d).set_state(0);
        (*d).set_kind(KIND_LARGE);
    }
    advise_block(r.addr(), r.npages * PAGE_SIZE, true);
    (r.addr() as *mut u8, r.zeroed)
}

/// # Safety
/// `d` is the head descriptor of a live large run.
pub unsafe fn large_usable(d: *const Desc) -> usize {
    // SAFETY: d is the head descriptor of a live large run.
    unsafe { (*d).npages() * PAGE_SIZE }
}

/// Frees a large block that no large ring took (`free_to_ring`): kept by
/// the current CPU's zone if it is small enough and the zone is free now,
/// else given back to the page runs. Returns whether the caller should run
/// the slow-path hooks: always after the page runs, once in `TICK` kept
/// runs.
///
/// # Safety
/// `d` is the head descriptor of a live large run that the caller frees.
pub unsafe fn free_large(d: *mut Desc) -> bool {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe {
        let (base, head) = pagemap::desc_home(d);
        let n = (*d).npages();
        let moved = (*d).state() == LARGE_MOVED;
        if n <= zone::BIG_PAGES && !moved {
            if let Some(z) = zone::try_lock_index(cpu::current_zone()) {
                z.put_large(d);
                return z.big_tick();
            }
        }
        GLOBAL.large_frees.fetch_add(1, Ordering::Relaxed);
        GLOBAL
            .large_bytes
            .fetch_sub(n * PAGE_SIZE, Ordering::Relaxed);
        if moved {
            // Pages moved here by `move_large` sit in a mapping of their own:
            // map the run afresh so that it merges back into the arena (this
            // bounds the process's mappings by its live moved blocks).
            os::remap_fresh(pagemap::page_addr(base, head) as *mut u8, n * PAGE_SIZE);
            RUNS.free_clean(base, head, n);
        } else {
            advise_block(pagemap::page_addr(base, head), n * PAGE_SIZE, false);
            RUNS.free(base, head, n);
        }
        true
    }
}

/// Grows a large run in place to hold `size` bytes, if its neighbour is free.
///
/// # Safety
/// `d` is the head descriptor of a live large run owned by the caller.
pub unsafe fn grow_large(d: *mut Desc, size: usize) -> bool {
    let (base, head) = pagemap::desc_home(d);
    // SAFETY: d is the head of a live large run owned by the caller.
    let n = unsafe { (*d).npages() };
    let want = size.div_ceil(PAGE_SIZE);
    let ok = RUNS.grow_in_place(base, head, n, want);
    if ok {
        GLOBAL
            .large_bytes
            .fetch_add((want - n) * PAGE_SIZE, Ordering::Relaxed);
    }
    ok
}

/// `Desc::state` of a large run whose pages `move_large` moved in.
const LARGE_MOVED: u8 = 1;

/// Smallest large block whose `realloc` moves pages instead of copying.
///
/// A move leaves the old run reading as zero, and a moved block is mapped
/// fresh again when freed (`free_large`), so whichever run takes those
/// pages next faults every page in again, and each move takes the
/// process's mapping lock for writing three times (`mremap`, two `mmap`s),
/// stalling every other thread's page faults meanwhile. Below 1 MiB a copy
/// is cheaper: CPython (`PYTHONMALLOC=malloc`), whose lists and dicts grow
/// through 256 KiB-600 KiB, made 8,908 page faults with 256 KiB here and
/// 4,979 with 1 MiB (snmalloc 4,701), and ran 0.980-0.985 of the time
/// in alternated runs (0.998 in a 5-run comparison), for 0.7 MiB more
/// peak RSS (the old run stays warm for reuse instead of zero);
/// large_realloc (1-32 MiB blocks) is unchanged (1.002), and with 4 MiB
/// it ran 1.13x slower (docs/experiments.md).
pub const MOVE_MIN: usize = 1024 * 1024;

/// Grows a large block that cannot grow in place into a new run of `size`
/// bytes by moving its pages there (`os::move_pages`, no copy); the old run
/// is freed clean. Null if no run is free or the kernel cannot move pages:
/// the caller copies then.
///
/// # Safety
/// `d` is the head descriptor of the live large run at `p`, owned by the
/// caller; `size` fits a run and exceeds the block's size.
pub unsafe fn move_large(d: *mut Desc, p: *mut u8, size: usize) -> *mut u8 {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe {
        let (base, head) = pagemap::desc_home(d);
        let n = (*d).npages();
        let (q, _) = alloc_large(size, PAGE_SIZE);
        if q.is_null() {
            return q;
        }
        if !os::move_pages(p, n * PAGE_SIZE, q) {
            if let pagemap::Lookup::Large(nd) = pagemap::lookup(q as usize) {
                free_large(nd);
            }
            return core::ptr::null_mut();
        }
        // The moved pages form a mapping of their own until the block is freed
        // (see `free_large`); the old run is mapped again in one piece with the
        // arena, and is clean.
        if let pagemap::Lookup::Large(nd) = pagemap::lookup(q as usize) {
            (*nd).set_state(LARGE_MOVED);
        }
        release_emptied(base, head, n, p);
        q
    }
}

/// Grows a large block past the largest run into a huge mapping by moving
/// its pages there, as `move_large` does between runs: without it the block
/// was copied, and both copies were resident at once (a 31 MiB block grown
/// to 33 MiB peaked at 67 MiB, against 35 MiB under glibc). Null if the
/// mapping or the move fails: the caller copies then.
///
/// The huge mapping is then several kernel mappings (header page, moved
/// pages, the rest); should it later outgrow its length, `realloc_huge`'s
/// `mremap` of the whole fails and the block is copied once, as before.
///
/// # Safety
/// `d` is the head descriptor of the live large run at `p`, owned by the
/// caller; `size` exceeds the largest run.
pub unsafe fn move_to_huge(d: *mut Desc, p: *mut u8, size: usize) -> *mut u8 {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe {
        let (base, head) = pagemap::desc_home(d);
        let n = (*d).npages();
        let q = alloc_huge(size, PAGE_SIZE);
        if q.is_null() {
            return q;
        }
        if !os::move_pages(p, n * PAGE_SIZE, q) {
            free_huge(q as usize);
            return core::ptr::null_mut();
        }
        release_emptied(base, head, n, p);
        q
    }
}

/// The large run of `n` pages at page `head` of the arena at `base`, user
/// block `p`, whose pages a move took away: map it again in one piece with
/// the arena (clean) and give it back.
unsafe fn release_emptied(base: usize, head: usize, n: usize, p: *mut u8) {
    os::remap_fresh(p, n * PAGE_SIZE);
    GLOBAL.large_frees.fetch_add(1, Ordering::Relaxed);
    GLOBAL
        .large_bytes
        .fetch_sub(n * PAGE_SIZE, Ordering::Relaxed);
    RUNS.free_clean(base, head, n);
}

/// Publishes (or, with REGION_NONE, retracts) the regions of a huge mapping:
/// the region holding the user block is REGION_HUGE, the others its tail.
fn mark_regions(base: usize, len: usize, block: usize, kind: u8) {
    let head = block & !(ARENA_SIZE - 1);
    let mut a = base;
    while a < base + len {
        let k = if a == head || kind == REGION_NONE {
            kind
        } else {
            REGION_HUGE_TAIL
        };
        pagemap::set_region(a, k);
        a += ARENA_SIZE;
    }
}

fn huge_len(size: usize, off: usize) -> Option<usize> {
    size.checked_add(off)?
        .checked_add(ARENA_SIZE - 1)
        .map(|v| v & !(ARENA_SIZE - 1))
}

/// A huge block with its own mapping, at any power-of-two alignment.
pub fn alloc_huge(size: usize, align: usize) -> *mut u8 {
    // The block sits at `off` from the mapping start, the header in the page
    // just before it; the mapping is aligned to max(64 MiB, align), so the
    // block is aligned too.
    let off = align.max(PAGE_SIZE);
    let Some(len) = huge_len(size, off) else {
        return core::ptr::null_mut();
    };
    if len > isize::MAX as usize || !off.is_power_of_two() {
        return core::ptr::null_mut();
    }
    let base = os::map_aligned(len, off.max(ARENA_SIZE));
    if base.is_null() {
        return base;
    }
    let block = base as usize + off;
    // SAFETY: base is a fresh mapping of `len` bytes; the header page before
    // the block is ours.
    unsafe {
        ((block - PAGE_SIZE) as *mut HugeHeader).write(HugeHeader {
            magic: HUGE_MAGIC,
            base: base as usize,
            len,
            off,
        });
    }
    // (The whole mapping, header page and all: one kernel mapping, which
    // `realloc_huge` moves whole; the advice goes with it when unmapped.)
    advise_block(base as usize, len, true);
    mark_regions(base as usize, len, block, REGION_HUGE);
    GLOBAL.huge_allocs.fetch_add(1, Ordering::Relaxed);
    GLOBAL.huge_bytes.fetch_add(len, Ordering::Relaxed);
    block as *mut u8
}

/// The header of the huge block at `ptr`, if `ptr` is the start of one. The
/// region table already said `ptr`'s region holds a huge block.
fn header(ptr: usize) -> Option<*mut HugeHeader> {
    if ptr & (PAGE_SIZE - 1) != 0 || ptr < PAGE_SIZE {
        return None;
    }
    let h = (ptr - PAGE_SIZE) as *mut HugeHeader;
    // SAFETY: a page-aligned pointer into a huge mapping's head region always
    // has a mapped page before it (the header page, or the user's own block).
    unsafe { ((*h).magic == HUGE_MAGIC && (*h).base + (*h).off == ptr).then_some(h) }
}

pub fn huge_usable(ptr: usize) -> Option<usize> {
    // SAFETY: header() validated it.
    header(ptr).map(|h| unsafe { (*h).len - (*h).off })
}

/// Frees a huge block; false if `ptr` is not the start of one.
pub fn free_huge(ptr: usize) -> bool {
    let Some(h) = header(ptr) else {
        return false;
    };
    // SAFETY: validated header of a mapping we own.
    let (base, len) = unsafe { ((*h).base, (*h).len) };
    mark_regions(base, len, ptr, REGION_NONE);
    GLOBAL.huge_frees.fetch_add(1, Ordering::Relaxed);
    GLOBAL.huge_bytes.fetch_sub(len, Ordering::Relaxed);
    os::unmap(base as *mut u8, len);
    true
}

/// Resizes a huge block without copying where possible. Returns the new
/// pointer, or null if the caller must allocate, copy and free.
pub fn realloc_huge(ptr: usize, size: usize) -> *mut u8 {
    let Some(h) = header(ptr) else {
        return core::ptr::null_mut();
    };
    // SAFETY: validated header of a mapping we own.
    let (base, len, off) = unsafe { ((*h).base, (*h).len, (*h).off) };
    let Some(want) = huge_len(size, off) else {
        return core::ptr::null_mut();
    };
    if want == len {
        return ptr as *mut u8;
    }
    if want < len {
        // Shrink: give back the whole regions past the new end.
        mark_regions(base + want, len - want, ptr, REGION_NONE);
        os::unmap((base + want) as *mut u8, len - want);
        // SAFETY: the header page is still mapped.
        unsafe { (*h).len = want };
        GLOBAL.huge_bytes.fetch_sub(len - want, Ordering::Relaxed);
        return ptr as *mut u8;
    }
    if os::remap_in_place(base as *mut u8, len, want) {
        // SAFETY: the header page is still mapped.
        unsafe { (*h).len = want };
        mark_regions(base, want, ptr, REGION_HUGE);
        GLOBAL.huge_bytes.fetch_add(want - len, Ordering::Relaxed);
        return ptr as *mut u8;
    }
    let dst = os::map_aligned(want, off.max(ARENA_SIZE));
    if dst.is_null() {
        return dst;
    }
    // Unpublish the old regions first: after the move they are unmapped.
    mark_regions(base, len, ptr, REGION_NONE);
    if !os::remap_to(base as *mut u8, len, want, dst) {
        mark_regions(base, len, ptr, REGION_HUGE);
        os::unmap(dst, want);
        return core::ptr::null_mut();
    }
    let block = dst as usize + off;
    let nh = (block - PAGE_SIZE) as *mut HugeHeader;
    // SAFETY: the header page moved with the mapping to dst.
    unsafe {
        (*nh).base = dst as usize;
        (*nh).len = want;
    }
    mark_regions(dst as usize, want, block, REGION_HUGE);
    GLOBAL.huge_bytes.fetch_add(want - len, Ordering::Relaxed);
    block as *mut u8
}
