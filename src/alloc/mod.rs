//! The allocator's entry points behind the C ABI: malloc, free, realloc,
//! calloc, aligned allocation, usable size; start-up and fork handling; and
//! pointers that are not ours.
//!
//! Nothing here allocates, panics or recurses into malloc; the only locks are
//! zone locks (per CPU) and the page lock, always in that order.

use crate::foreign;
use crate::large;
use crate::os::{self, PAGE_SIZE};
use crate::pagemap;
use crate::size_class::{self, SMALL_MAX};
use crate::slab::FREE_KEY;
use crate::zone;
use core::ptr;
use core::sync::atomic::{AtomicU8, Ordering};

/// Largest request we accept (glibc refuses sizes above PTRDIFF_MAX).
pub const MAX_REQUEST: usize = isize::MAX as usize - 2 * pagemap::ARENA_SIZE;

// ---- start-up ----

static INIT: AtomicU8 = AtomicU8::new(0);
const INIT_NONE: u8 = 0;
const INIT_RUNNING: u8 = 1;
const INIT_DONE: u8 = 2;

/// Lazy, re-entrancy-safe initialisation. ld.so calls malloc before any
/// constructor runs, so this runs on the first slow path. It never allocates:
/// the only call that might (registering fork handlers) comes after the state
/// says done, so a malloc from inside it takes the normal path.
#[inline(always)]
pub fn ensure_init() {
    if INIT.load(Ordering::Acquire) != INIT_DONE {
        init_slow();
    }
}

#[cold]
fn init_slow() {
    match INIT.compare_exchange(
        INIT_NONE,
        INIT_RUNNING,
        Ordering::Acquire,
        Ordering::Acquire,
    ) {
        Ok(_) => {
            crate::cpu::init();
            crate::cache::init();
            FREE_KEY.store(os::random_u64() | 0x8000_0000_0000_0001, Ordering::Relaxed);
            INIT.store(INIT_DONE, Ordering::Release);
            os::atfork(fork_prepare, fork_parent, fork_child);
        }
        Err(_) => {
            // Another thread is initialising (it does not allocate): wait.
            while INIT.load(Ordering::Acquire) != INIT_DONE {
                os::yield_now();
            }
        }
    }
}

/// Fork, prepare: take every lock in one fixed order (zones, then pages), so
/// the child starts with consistent state. Registered first, it runs last,
/// after other libraries' prepare handlers that may still malloc.
extern "C" fn fork_prepare() {
    crate::prof::fork_prepare();
    zone::fork_prepare();
    crate::runs::RUNS.fork_prepare();
}

extern "C" fn fork_parent() {
    crate::runs::RUNS.fork_parent();
    zone::fork_parent();
    crate::prof::fork_parent();
}

/// Fork, child: only this thread exists. Free the locks, reset the rings
/// (a slot claimed by a thread that is gone would stall them) and have each
/// zone rescan its slabs; the reclaimer is restarted lazily.
extern "C" fn fork_child() {
    crate::runs::RUNS.fork_child();
    zone::fork_child();
    crate::reclaim::fork_child();
    crate::prof::fork_child();
    crate::hook::fork_child();
    crate::starter::fork_child();
}

// ---- malloc ----

/// malloc: NULL with ENOMEM on failure.
#[inline(always)]
pub fn malloc(size: usize) -> *mut u8 {
    // `small_limit` is SMALL_MAX + 1 once the cache is on, else 0 (also
    // while the heap profiler samples): the same one compare as against a
    // constant, in the cache line the pop reads anyway, and the only test
    // of the cache's state malloc makes.
    if crate::cache::below_small_limit(size) {
        // Every path out of the cache hit is a tail call: the fast path sets
        // up no stack frame.
        // SAFETY: size < the small limit <= SMALL_MAX + 1, so the index is in
        // the table, whose entries are stack offsets; the limit is not 0,
        // so the cache is on.
        unsafe {
            let coff = crate::cache::stack_of_small(size);
            let p = crate::cache::pop_on(coff);
            if !p.is_null() {
                return handed_out(p);
            }
            return alloc_small_zone(crate::cache::class_at(coff));
        }
    }
    malloc_big(size)
}

#[inline(never)]
fn malloc_big(size: usize) -> *mut u8 {
    if size <= SMALL_MAX {
        // The cache is off, or the profiler samples (see `malloc`).
        if crate::prof::on() {
            return malloc_small_profiled(size);
        }
        // SAFETY: `stack_of_size` gives a stack offset.
        return unsafe { alloc_small_at(crate::cache::stack_of_size(size), true) };
    }
    // A run freed on this CPU, first (the profiler counts every large
    // request: `alloc_big`). What follows tries the rings only if this
    // did not.
    let rings_tried = !crate::prof::on();
    if rings_tried {
        if let Some((p, tick)) = large::alloc_from_ring(size) {
            if tick {
                after_slow_path();
            }
            return p;
        }
    }
    alloc_big_unaligned(size, !rings_tried).0
}

/// A block above the size classes with malloc's alignment (16 bytes): from
/// the starter heap while a short process lasts (`ls`'s `opendir` buffer,
/// perl's first callocs: no arena, no zones), else as `alloc_big` gives it.
/// Out of memory, the starter heap's freed big blocks may still serve it.
/// `rings`: the large rings may serve it (the caller has not tried them).
fn alloc_big_unaligned(size: usize, rings: bool) -> (*mut u8, bool) {
    if !crate::prof::on() {
        if let Some(r) = crate::starter::alloc_big(size) {
            return r;
        }
    }
    let r = alloc_big(size, PAGE_SIZE, rings);
    if r.0.is_null() {
        if let Some(p) = crate::starter::alloc_big_last_resort(size) {
            return (p, false);
        }
    }
    r
}

/// malloc of a small `size` while profiling (`cache::small_limit` is 0, so
/// `malloc` sends every size here): counted by the profiler, and if it is
/// sampled, served as a page run of its own (see `prof`).
#[inline(never)]
#[cold]
#[link_section = ".text_cold"]
fn malloc_small_profiled(size: usize) -> *mut u8 {
    if crate::prof::tick(size) {
        if let Some(p) = sampled_small(size, PAGE_SIZE) {
            return p;
        }
    }
    // SAFETY: `stack_of_size` gives a stack offset.
    unsafe { alloc_small_at(crate::cache::stack_of_size(size), true) }
}

/// A sampled small request: a page run of its own, recorded; None if there
/// is no page run (the caller then serves it as usual, unsampled).
#[cold]
fn sampled_small(size: usize, align: usize) -> Option<*mut u8> {
    let (p, _) = alloc_big_raw(size.max(1), align, true);
    if p.is_null() {
        return None;
    }
    crate::prof::record(p, size);
    Some(p)
}

#[cold]
fn fail() -> *mut u8 {
    os::set_errno(libc::ENOMEM);
    ptr::null_mut()
}

/// A chunk of class `c` for memalign: from the current CPU's cache
/// (lock-free, see `cache`), else from its zone, never from the starter
/// heap (whose blocks are only 16-byte aligned). Null with ENOMEM on
/// failure.
#[inline(always)]
fn alloc_small(c: usize) -> *mut u8 {
    // SAFETY: a stack offset.
    unsafe { alloc_small_at(crate::cache::stack_offset(c), false) }
}

/// A chunk of the class whose cache stack is at `coff`
/// (`cache::stack_offset`): malloc looks that offset up from the size
/// directly, one step less on the way to the pop. `unaligned`: the caller
/// needs no more than 16-byte alignment (malloc, not memalign), so that the
/// starter heap may serve it.
///
/// # Safety
/// `coff` is a stack offset (`stack_offset`, `stack_of_size`).
#[inline(always)]
unsafe fn alloc_small_at(coff: usize, unaligned: bool) -> *mut u8 {
    // SAFETY: the contract.
    let p = unsafe { crate::cache::pop(coff) };
    if !p.is_null() {
        return handed_out(p);
    }
    let c = crate::cache::class_at(coff);
    if unaligned {
        alloc_small_zone(c)
    } else {
        alloc_from_zone(c, false)
    }
}

/// A chunk on its way to the program: clears its free mark (word 1; every
/// chunk has at least 16 bytes), which it may carry from an earlier life.
#[inline(always)]
fn handed_out(p: *mut u8) -> *mut u8 {
    // SAFETY: `p` is a free chunk of ours that this malloc now owns.
    unsafe { *(p as *mut u64).add(1) = 0 };
    p
}

/// malloc's miss: a block of class `c` from the starter heap while a short
/// process lasts (`starter`: no zone, no arena, no cache block yet), else
/// from the current CPU's zone.
#[inline(never)]
fn alloc_small_zone(c: usize) -> *mut u8 {
    if let Some(p) = crate::starter::alloc(c) {
        return p;
    }
    alloc_from_zone(c, true)
}

/// A chunk of class `c` from the current CPU's zone (or a free one); the
/// zone refills the CPU's cache while it holds the lock. `unaligned`: the
/// caller needs no more than 16-byte alignment (malloc), so that out of
/// memory the starter heap's freed blocks may serve it.
#[inline(never)]
fn alloc_from_zone(c: usize, unaligned: bool) -> *mut u8 {
    // Before any zone lock: first-time init registers fork handlers, which
    // takes glibc's atfork lock.
    ensure_init();
    match zone::lock_current() {
        Some(z) => {
            let p = z.take(c);
            if p.is_null() {
                drop(z);
                return alloc_small_retry(c, unaligned);
            }
            z.count_malloc(c);
            if crate::cache::on() {
                z.fill_cache(c);
            }
            drop(z);
            after_slow_path();
            handed_out(p)
        }
        None => emergency(size_class::class_size(c), 16),
    }
}

/// The end of every slow path of malloc and free, with no allocator lock
/// held: the reclaimer starts here when it is wanted, and the hooks of the
/// layers above run (the live view).
#[inline]
fn after_slow_path() {
    crate::reclaim::after_slow_path();
    crate::hook::slow_path();
}

/// Out of memory: empty slabs cached by zones and dirty page runs may still
/// hold what the request needs. Give them back (no lock is held here), retry;
/// then (`unaligned`, see `alloc_from_zone`) the starter heap's freed blocks.
#[cold]
fn alloc_small_retry(c: usize, unaligned: bool) -> *mut u8 {
    crate::reclaim::pass(true);
    if let Some(z) = zone::lock_current() {
        let p = z.alloc(c);
        if !p.is_null() {
            z.count_malloc(c);
            return handed_out(p);
        }
    }
    if unaligned {
        if let Some(p) = crate::starter::alloc_last_resort(c) {
            return p;
        }
    }
    emergency(size_class::class_size(c), 16)
}

/// Every zone is held by this very thread (malloc from nested signal handlers
/// that interrupted malloc), or the arenas are exhausted: fall back to a
/// mapping of its own.
#[cold]
#[link_section = ".text_cold"]
fn emergency(size: usize, align: usize) -> *mut u8 {
    after_slow_path();
    let p = large::alloc_huge(size, align);
    if p.is_null() {
        return fail();
    }
    p
}

/// Requests above the size classes: page runs, or huge mappings. Returns
/// (pointer, reads-as-zero); sets ENOMEM on failure. Counted by the heap
/// profiler while it samples. `rings`: as for `alloc_big_unaligned`.
fn alloc_big(size: usize, align: usize, rings: bool) -> (*mut u8, bool) {
    let r = alloc_big_raw(size, align, rings);
    if crate::prof::on() && !r.0.is_null() && crate::prof::tick(size) {
        crate::prof::record(r.0, size);
    }
    r
}

/// `alloc_big` without the profiler; also serves the profiler's sampled
/// small requests (a run of their own: any `size` is fine).
fn alloc_big_raw(size: usize, align: usize, rings: bool) -> (*mut u8, bool) {
    ensure_init();
    if let Some((p, tick)) = large::alloc_kept(size, align, rings) {
        if tick {
            after_slow_path();
        }
        return (p, false);
    }
    after_slow_path();
    if size > MAX_REQUEST {
        return (fail(), false);
    }
    for attempt in 0..2 {
        if large::fits_run(size, align) {
            let (p, z) = large::alloc_large(size, align);
            if !p.is_null() {
                return (p, z);
            }
        }
        let p = large::alloc_huge(size, align);
        if !p.is_null() {
            return (p, true);
        }
        if attempt == 0 {
            // Out of memory: give back cached slabs and dirty runs, retry.
            crate::reclaim::pass(true);
        }
    }
    (fail(), false)
}

/// Aligned allocation; `align` must be a power of two.
pub fn memalign(align: usize, size: usize) -> *mut u8 {
    if align <= 16 {
        return malloc(size);
    }
    if let Some(c) = size_class::class_for_aligned(size, align) {
        if crate::prof::on() && crate::prof::tick(size) {
            if let Some(p) = sampled_small(size, align.max(PAGE_SIZE)) {
                return p;
            }
        }
        return alloc_small(c);
    }
    if size > MAX_REQUEST || align > MAX_REQUEST / 2 {
        return fail();
    }
    alloc_big(size.max(SMALL_MAX + 1), align.max(PAGE_SIZE), true).0
}

/// calloc: zeroed, with overflow check. Skips the memset where the memory
/// cannot have been written since it was mapped or purged.
pub fn calloc(n: usize, m: usize) -> *mut u8 {
    let Some(size) = n.checked_mul(m) else {
        return fail();
    };
    if size <= SMALL_MAX {
        let p = malloc(size);
        if !p.is_null() {
            os::memset(p, 0, size);
        }
        return p;
    }
    let (p, zeroed) = alloc_big_unaligned(size, true);
    if !p.is_null() && !zeroed {
        os::memset(p, 0, size);
    }
    p
}

// ---- free ----

use crate::integrity::{check_double_free, classify, Block};

#[inline(always)]
// Accepts any pointer, like C's free: the page map validates it before
// anything is read through it, and foreign ones are never dereferenced.
#[allow(clippy::not_unsafe_ptr_arg_deref)]
pub fn free(p: *mut u8) {
    // The common case first, with the fewest checks that keep it exact: a
    // chunk start on a page of a live slab whose chunks have all been
    // carved (so `p` was handed out once). Anything else, including every
    // invalid pointer, goes through `classify`, which explains what is wrong.
    if let Some((coff, owner)) = pagemap::chunk_fast(p as usize) {
        // SAFETY: `p` starts a chunk of a live slab, of the class whose
        // stack is at `coff`, owned by zone `owner`, below its carve pointer.
        unsafe { free_chunk(coff, owner, p) };
        return;
    }
    free_other(p);
}

/// `free` of anything but a chunk on the fast path: NULL, chunks on a slab's
/// last carved page, large and huge blocks, foreign and invalid pointers.
#[inline(never)]
fn free_other(p: *mut u8) {
    if p.is_null() {
        return;
    }
    match classify(p, "free") {
        // SAFETY: classify validated a chunk of the live slab d.
        Block::Small(d, c) => unsafe {
            if p >= (*d).bump() {
                crate::fmt::fatal_pointer("free", p, "pointer to a block that was never allocated");
            }
            free_chunk(crate::cache::stack_offset(c), (*d).owner(), p)
        },
        Block::Large(d) => {
            if crate::prof::on() && !crate::prof::on_free(p) {
                return; // parked: freed later (see `prof`)
            }
            // SAFETY: classify validated a live large run, which this
            // free gives up.
            let tick = unsafe { large::free_to_ring(d).unwrap_or_else(|| large::free_large(d)) };
            if tick {
                after_slow_path();
            }
        }
        Block::Huge => {
            if crate::prof::on() && !crate::prof::on_free(p) {
                return;
            }
            large::free_huge(p as usize);
            after_slow_path();
        }
        Block::Starter(c) => crate::starter::free(p, c),
        Block::Foreign => foreign::free(p),
    }
}

/// The class travels as `coff`, the offset of its stack in a cache block
/// (`cache::stack_offset`), which the free map holds in place: the push
/// needs no arithmetic on it.
///
/// # Safety
/// `p` is a chunk of class `cache::class_at(coff)`, below the carve pointer
/// of its live slab, which zone `owner` owns.
#[inline(always)]
unsafe fn free_chunk(coff: usize, owner: usize, p: *mut u8) {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe {
        let key = FREE_KEY.load(Ordering::Relaxed);
        if *(p as *const u64).add(1) == key {
            // Out of line (a tail call), so that the fast path saves no registers.
            return free_chunk_marked(coff, owner, p);
        }
        free_chunk_unmarked(coff, owner, p, key);
    }
}

/// `p` carries the free mark: a double free, or user data that matches it.
#[inline(never)]
unsafe fn free_chunk_marked(coff: usize, owner: usize, p: *mut u8) {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe {
        check_double_free(pagemap::slab_desc_fast(p as usize), p);
        free_chunk_unmarked(coff, owner, p, FREE_KEY.load(Ordering::Relaxed));
    }
}

#[inline(always)]
unsafe fn free_chunk_unmarked(coff: usize, owner: usize, p: *mut u8, key: u64) {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe {
        // The mark goes on before the push: once pushed, the chunk may be popped
        // by another thread on this CPU. (Every other path marks it too.)
        *(p as *mut u64).add(1) = key;
        // Only a chunk of this CPU's zone may enter its cache: the section
        // checks that it runs on CPU `owner` (else it takes the outbox).
        if !crate::cache::push_free(owner, coff, p) {
            free_chunk_refused(p);
        }
    }
}

/// The cache refused `p` (the stack the section chose was full or not set
/// up, or the cache is off). Takes only `p`, and looks class and owner up again, so that the fast
/// path keeps nothing else live across its section.
#[inline(never)]
unsafe fn free_chunk_refused(p: *mut u8) {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe {
        let (owner, c) = zone::owner_class(pagemap::slab_desc_fast(p as usize), p);
        free_chunk_zone(c, owner, p);
    }
}

/// Frees `p`, a chunk of class `c` of zone `owner`, through the zones (the
/// cache is off, or refused it).
#[inline(never)]
unsafe fn free_chunk_zone(c: usize, owner: usize, p: *mut u8) {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe {
        let d = pagemap::slab_desc_fast(p as usize);
        if owner == crate::cpu::current_zone() {
            if let Some(z) = zone::try_lock_index(owner) {
                if crate::cache::on() {
                    // A full cache: half of it to the stash while we hold
                    // the lock, and `p` into the room made (counted there).
                    z.flush_cache(c, p);
                } else {
                    z.count_free(c);
                    z.free_local(d, p);
                }
                drop(z);
                // Frees in bulk: memory the reclaimer may give back later.
                crate::reclaim::request();
                after_slow_path();
                return;
            }
        }
        // The free mark is already set (`free_chunk_unmarked`).
        if !zone::free_remote_batched(d, p) {
            crate::reclaim::request();
            after_slow_path();
        }
    }
}

// ---- sizes and realloc ----

// Accepts any pointer, like C's free: the page map validates it before
// anything is read through it, and foreign ones are never dereferenced.
#[allow(clippy::not_unsafe_ptr_arg_deref)]
pub fn usable_size(p: *mut u8) -> usize {
    if p.is_null() {
        return 0;
    }
    match classify(p, "malloc_usable_size") {
        Block::Small(_, c) => size_class::class_size(c),
        Block::Starter(k) => crate::starter::block_size(k),
        // SAFETY: classify validated a live large run.
        Block::Large(d) => unsafe { large::large_usable(d) },
        Block::Huge => large::huge_usable(p as usize).unwrap_or(0),
        Block::Foreign => foreign::usable_size(p),
    }
}

// Accepts any pointer, like C's free: the page map validates it before
// anything is read through it, and foreign ones are never dereferenced.
#[allow(clippy::not_unsafe_ptr_arg_deref)]
pub fn realloc(p: *mut u8, size: usize) -> *mut u8 {
    if p.is_null() {
        return malloc(size);
    }
    if size == 0 {
        free(p);
        return ptr::null_mut();
    }
    if size > MAX_REQUEST {
        return fail();
    }
    // A small block: its page's free-map entry gives the class, as it does
    // for `free`, without the page map and the slab's descriptor
    // (`classify`: two more lines to miss, for each realloc of CPython's
    // lists and strings). Anything else takes `classify`, which explains.
    if let Some((coff, _)) = pagemap::chunk_fast(p as usize) {
        return realloc_small(p, size, crate::cache::class_at(coff));
    }
    let usable = match classify(p, "realloc") {
        Block::Small(_, c) => return realloc_small(p, size, c),
        Block::Starter(k) => return realloc_within(p, size, crate::starter::block_size(k)),
        Block::Large(d) => {
            // SAFETY: classify validated a live large run, which we own.
            let u = unsafe { large::large_usable(d) };
            if crate::prof::on() && crate::prof::is_sampled(p) {
                return realloc_moving(p, size, u);
            }
            if size <= u && size > SMALL_MAX && size > u / 2 {
                return p;
            }
            if size > u && large::fits_run(size, PAGE_SIZE) {
                // SAFETY: as above.
                if unsafe { large::grow_large(d, size) } {
                    return p;
                }
                if u >= large::MOVE_MIN {
                    // SAFETY: as above; `size` fits a run and exceeds `u`.
                    let q = unsafe { large::move_large(d, p, size) };
                    if !q.is_null() {
                        return q;
                    }
                }
            } else if size > u && u >= large::MOVE_MIN && size <= MAX_REQUEST {
                // SAFETY: as above; `size` exceeds the largest run.
                let q = unsafe { large::move_to_huge(d, p, size) };
                if !q.is_null() {
                    return q;
                }
            }
            u
        }
        Block::Huge => {
            let u = large::huge_usable(p as usize).unwrap_or(0);
            if crate::prof::on() && crate::prof::is_sampled(p) {
                return realloc_moving(p, size, u);
            }
            if size > u / 2 || size > large::HUGE_MIN {
                let q = large::realloc_huge(p as usize, size);
                if !q.is_null() {
                    return q;
                }
            }
            u
        }
        Block::Foreign => return realloc_foreign(p, size),
    };
    realloc_moving(p, size, usable)
}

/// realloc of `p`, a chunk of class `c` (`realloc_within`).
fn realloc_small(p: *mut u8, size: usize, c: usize) -> *mut u8 {
    realloc_within(p, size, size_class::class_size(c))
}

/// realloc of `p`, a block of `u` bytes that does not grow in place: the
/// same block while `size` fits and we would not waste more than half of
/// it, else a move.
fn realloc_within(p: *mut u8, size: usize, u: usize) -> *mut u8 {
    if size <= u && (size > u / 2 || u <= 32) {
        return p;
    }
    realloc_moving(p, size, u)
}

/// realloc by malloc, copy and free (`usable`: `p`'s usable size).
fn realloc_moving(p: *mut u8, size: usize, usable: usize) -> *mut u8 {
    let q = malloc(size);
    if q.is_null() {
        return q; // ENOMEM set; the old block is untouched
    }
    os::memcpy(q, p, usable.min(size));
    free(p);
    q
}

/// Moves a foreign block (see `foreign`) into our heap.
fn realloc_foreign(p: *mut u8, size: usize) -> *mut u8 {
    let old = foreign::usable_size(p);
    let q = malloc(size);
    if q.is_null() {
        return q;
    }
    os::memcpy(q, p, old.min(size));
    foreign::free(p);
    q
}

#[cfg(test)]
mod tests;
