//! The starter heap: a process's first blocks, before any zone exists.
//!
//! A short process (`expr`, `sed`, a shell's `$(...)`) makes a few hundred
//! mallocs of a dozen sizes and exits. Served by the zones, each size it
//! touches costs a page of its CPU's cache block (the class's ring) and the
//! first page of a 128 KiB slab, and the first malloc maps the arena and
//! the cache blocks and reads the CPU count: `sed` took 59 page faults more
//! than under glibc, and 0.22 ms more CPU time (2-CPU host). Here those
//! first blocks come from a region in the library's `.bss` (256 KiB),
//! packed one after the other like glibc's heap, each behind a 16-byte
//! header; the zones start only when a request does not fit, when
//! `OPS_MAX` mallocs come within `WINDOW_MS` (a program that allocates
//! fast), or for a block aligned beyond 16 bytes (never served here).
//! Blocks above the size classes up to `BIG_MAX` ("big" ones, `big`) come
//! from a second part of the region (160 KiB): a short process's first one
//! (`ls`'s `opendir` buffer) would otherwise start the arena and the zones.
//!
//! * **Allocation** (`alloc`, from malloc's miss path): under a try-lock (a
//!   busy lock, another thread's or a signal handler's own, sends the call
//!   to the zones instead: no waiting, so nothing a signal or a fork can
//!   leave stuck), a block from the class's free list, else the next bytes
//!   of the region.
//! * **Free** (`free`): lock-free. One atomic operation clears the header's
//!   live bit and returns the old state (a block already free: a double
//!   free, reported), then the block is pushed onto its class's list, a
//!   Treiber stack linked through a side table after the region (`next`,
//!   one u16 per 16 bytes), not through the block, so that a purged page
//!   loses no link; the push's compare-and-swap also counts the free.
//!   Only the lock holder takes from it, and takes the whole stack with one
//!   swap onto a list of its own that it then pops with plain loads: no
//!   pop races another, no ABA.
//! * **Cost**: an atomic read-modify-write costs tens of cycles, and this
//!   path serves a short process's every malloc, so it makes as few as it
//!   can: malloc one (the lock), free two (the state, the push). The
//!   counters malloc keeps are written under the lock with plain stores;
//!   the live blocks on each page (for the purges) are counted only from
//!   retirement on (`count_live`).
//! * **Identity**: word 0 of the header is the block's address xor a
//!   per-process random key, so a pointer into the region that is not a
//!   block start (or a block overwritten by an overflow) is reported, not
//!   trusted; word 1 is the class and the live bit.
//! * **Retirement**: once retired the region serves malloc no more (its
//!   freed blocks wait on their lists: `alloc_last_resort` hands them out
//!   when the zones find no memory), and each page goes back
//!   (`MADV_DONTNEED`, under the lock) when no live block touches it any
//!   more, so a program keeps only the pages of its first blocks that are
//!   still in use. Retirement walks the blocks (they lie one after the
//!   other, each header naming its class) and marks each live one counted
//!   in its state word, with a count on each page it touches; a free that
//!   finds the mark takes the count off again. A block popped from a
//!   purged page gets its header written again.
//!
//! Blocks are 16-byte aligned (the region is page-aligned, headers and
//! class sizes are multiples of 16), as malloc's are.

mod big;
pub use big::{alloc_big, alloc_big_last_resort, big_calls};

use crate::os::PAGE_SIZE;
use crate::size_class::{self, NCLASSES};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// Bytes of the region's two parts: the small blocks in the first, the big
/// ones in the second, each carved from its start by a bump offset of its
/// own, so that big blocks take no room from small ones (python's first
/// four, 128 + 25 + 51 + 32 KiB, filled a shared region, and its small
/// blocks went to the zones 670 mallocs earlier: 49 more page faults a
/// run). Small: `perl -e 1` needs 160 KB (24 blocks of 4 KiB among them),
/// `sed` with two expressions 79 KB (with 64 KiB it started the zones: 50
/// us more a run), `expr` 13 KB. Big: a short program makes one or two
/// (`sort` 79 KB, `grep` 100 KB, `make` 64 KiB, `gcc` 72 + 64 KiB; `du`
/// one 32 KiB block after another, each reusing the last); a program that
/// makes more (python: 128 KiB, then buffers for each file it reads) does
/// better on the arena, which splits and merges its free runs (with a big
/// part of 256 KiB python's file reads took 54 more page faults). Pages no
/// one touches cost nothing (`.bss`).
const SMALL_PART: usize = 256 * 1024;
const BIG_PART: usize = 160 * 1024;
const REGION_BYTES: usize = SMALL_PART + BIG_PART;
/// Largest class served (stdio's buffers are 4 KiB). The classes above,
/// from the zones: served here, `glibc_simple`'s one early 12.8 KiB block
/// cost it 32 more page faults and 128 KiB more peak RSS (the zones
/// started 4096 mallocs later), in every run.
const MAX_SIZE: usize = 8192;
/// Largest block served. Blocks above the size classes ("big" ones: `ls`'s
/// 32 KiB `opendir` buffer, perl's and python's 32 KiB callocs,
/// libstdc++'s 72 KiB emergency pool, all made early) would otherwise
/// start the arena and the zones, 40-70 us of a short process (`ls /`,
/// `perl -e 1`, `gcc --version`, 2-CPU host).
const BIG_MAX: usize = 128 * 1024;
/// The region retires when `OPS_MAX` of its mallocs come within
/// `WINDOW_MS` (`expr` makes 207 in all, `sed` 464, `perl -e 1` 1131,
/// `python3 -c pass` 1700-4000): a program that allocates that fast and
/// that long belongs on the per-CPU caches, whose hits cost a few ns
/// against this path's locked tens (4096 mallocs here cost it about 0.1
/// ms once; starting the zones costs a process about as much, which
/// `perl -e 1` paid when this was 512). One that allocates slowly stays (a
/// shell between its commands, a daemon): its blocks stay on a few pages,
/// which its forks copy and then write-fault on, page by page, where the
/// zones would have spread them over a ring and a slab page per class
/// (shell_procs 1.25 -> 1.17 of glibc's time).
const OPS_MAX: u32 = 4096;
const WINDOW_MS: u64 = 50;
/// Bytes of a block's header.
const HDR: usize = 16;
/// The small part is full when less than this is left.
const FULL: usize = 1024;
/// Pages of the region, and its 16-byte units (block starts).
const PAGES: usize = REGION_BYTES / PAGE_SIZE;
const UNITS: usize = REGION_BYTES / 16;
/// The end of a list: unit 0, which no block starts at (a block starts
/// after its header), so that the region's links start as zero memory.
const NIL: u16 = 0;
const _: () = assert!(REGION_BYTES.is_multiple_of(PAGE_SIZE) && UNITS <= u16::MAX as usize + 1);
/// The state word's live bit, and its counted bit (the block is in its
/// pages' `ON_PAGE` counts); the class is above them.
const LIVE: u64 = 1;
const COUNTED: u64 = 2;
const CLASS_SHIFT: u32 = 2;
/// A block's kind, as its state word holds it: a size class (below
/// `NCLASSES`), or a big block of `k - NCLASSES` units of 16 bytes (above
/// `SMALL_MAX`). Freed blocks wait on a list per class, and the big ones on
/// one more, `BIG`.
const BIG: usize = NCLASSES;
const NLISTS: usize = NCLASSES + 1;

/// The region and, after it, the side table of links (`UNITS` u16s): all
/// zero, so in `.bss`, touched page by page as used. (Mapping it on the
/// first malloc instead kept the library's image smaller, but cost a
/// system call, and spent one of the mappings `SLABALLOC_FAIL_MAP_AFTER`
/// allows, which changed what the OOM tests exercise: docs/experiments.md,
/// nineteenth session.)
#[repr(C, align(4096))]
struct Region {
    bytes: UnsafeCell<[u8; REGION_BYTES]>,
    next: [AtomicU16; UNITS],
}
// SAFETY: the region's bytes are handed out under `LOCK` (`take`), each to
// one block, and a block's header is written only by whoever owns the
// block: the malloc that carves or pops it (under the lock), a free that
// cleared its live bit; the links are atomics.
unsafe impl Sync for Region {}

// With the other large arrays, past the small statics (`ffi/cold.ld`).
#[link_section = ".bss.big.starter"]
static REGION: Region = Region {
    bytes: UnsafeCell::new([0; REGION_BYTES]),
    next: [const { AtomicU16::new(NIL) }; UNITS],
};
/// Held while a malloc takes a block or a page is purged; only ever
/// try-locked.
static LOCK: AtomicBool = AtomicBool::new(false);
/// No more allocation for malloc (set under the lock; read without it).
static RETIRED: AtomicBool = AtomicBool::new(false);
/// Offset of the first unused byte of the small part, and of the big part
/// (from its start; under the lock).
static BUMP: AtomicUsize = AtomicUsize::new(0);
static BIG_BUMP: AtomicUsize = AtomicUsize::new(0);
/// No more big blocks: one did not fit (set under the lock).
static BIG_OFF: AtomicBool = AtomicBool::new(false);
/// Mallocs served in the current window, and when it began (ns of
/// `CLOCK_MONOTONIC_COARSE`, a vDSO read); under the lock.
static OPS: AtomicU32 = AtomicU32::new(0);
static SINCE: AtomicU64 = AtomicU64::new(0);
/// The identity key: 0 until the first block (set under the lock, before
/// the block is handed out, so every free of a block sees it).
static KEY: AtomicU64 = AtomicU64::new(0);
/// The live blocks are counted on their pages (`count_live` ran; under
/// the lock).
static COUNTING: AtomicBool = AtomicBool::new(false);
/// Counted live blocks touching each page (a block and its header may span
/// two), plus `PINNED` for a page never to be purged.
static ON_PAGE: [AtomicU32; PAGES] = [const { AtomicU32::new(0) }; PAGES];
/// Pages given back (under the lock); a pop that lands on one rewrites the
/// block's header.
static PURGED: [AtomicU64; PAGES.div_ceil(64)] = [const { AtomicU64::new(0) }; PAGES.div_ceil(64)];
const PINNED: u32 = 1 << 30;
/// Mallocs served, by list (class, or `BIG`), for the report (written
/// under the lock).
static MALLOCS: [AtomicU64; NLISTS] = [const { AtomicU64::new(0) }; NLISTS];
/// Each list's freed blocks as pushed by `free`: the unit index of the
/// first in the low `HEAD_BITS`, the frees of the list (for the report)
/// above. The link of each freed block, by unit, is written by the freeing
/// thread before its push (Release) and read by the lock holder after its
/// Acquire swap of the head (`pop`, `pop_big`).
static FREE: [AtomicU64; NLISTS] = [const { AtomicU64::new(NIL as u64) }; NLISTS];
const HEAD_BITS: u32 = 16;
const HEAD: u64 = (1 << HEAD_BITS) - 1;
/// Each list's blocks taken off `FREE` (under the lock).
static TAKEN: [AtomicU16; NLISTS] = [const { AtomicU16::new(NIL) }; NLISTS];
/// Bytes of the live big blocks, for the report (their sizes vary, so the
/// counts of `BIG` do not give them).
static BIG_BYTES: AtomicU64 = AtomicU64::new(0);

#[inline(always)]
fn base() -> usize {
    REGION.bytes.get() as usize
}

#[inline(always)]
fn unit(p: *mut u8) -> u16 {
    ((p as usize - base()) / 16) as u16
}

#[inline(always)]
fn at(u: u16) -> *mut u8 {
    (base() + u as usize * 16) as *mut u8
}

/// The link of the freed block at unit `u` (`u < UNITS`).
#[inline(always)]
fn next(u: u16) -> &'static AtomicU16 {
    // (The modulo, free for a power of two, spares a bounds check and its
    // panic path: `u < UNITS` already.)
    &REGION.next[u as usize % UNITS]
}

/// The size of a block of kind `k`.
#[inline(always)]
pub fn block_size(k: usize) -> usize {
    if k < NCLASSES {
        size_class::class_size(k)
    } else {
        (k - NCLASSES) * 16
    }
}

/// The kind of a big block of `size` bytes.
fn big_kind(size: usize) -> usize {
    NCLASSES + size.div_ceil(16)
}

/// True if a state word's kind `k` is one this heap makes.
fn valid_kind(k: usize) -> bool {
    k < NCLASSES || (k > big_kind(size_class::SMALL_MAX) && k <= big_kind(BIG_MAX))
}

/// The list of kind `k` (its class, or `BIG`).
#[inline(always)]
fn list(k: usize) -> usize {
    k.min(BIG)
}

/// True if `p` lies in the region (any byte of it).
#[inline(always)]
pub fn contains(p: *const u8) -> bool {
    (p as usize).wrapping_sub(base()) < REGION_BYTES
}

/// A block of class `c` for malloc, or None: the region is retired, the
/// class too large, the lock busy, or nothing left (which retires it).
#[inline(always)]
pub fn alloc(c: usize) -> Option<*mut u8> {
    if RETIRED.load(Ordering::Relaxed) || size_class::class_size(c) > MAX_SIZE {
        return None;
    }
    locked(|| take(c)).filter(|p| !p.is_null())
}

/// A freed block of class `c` from the retired region, for a malloc the
/// zones could not serve (no memory to map): what the program gave back
/// stays usable. None if there is none (or the lock is busy).
#[cold]
pub fn alloc_last_resort(c: usize) -> Option<*mut u8> {
    if !RETIRED.load(Ordering::Acquire) {
        return None;
    }
    locked(|| pop(c, KEY.load(Ordering::Relaxed))).filter(|p| !p.is_null())
}

/// Runs `f` under the lock; None if the lock is busy.
#[inline(never)]
fn locked<T>(f: impl FnOnce() -> T) -> Option<T> {
    // Acquire pairs with the Release below: the last holder's writes (the
    // bump offset, popped lists, purged pages) are ours to read.
    if LOCK
        .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        return None;
    }
    let r = f();
    LOCK.store(false, Ordering::Release);
    Some(r)
}

/// Takes a block of class `c` for malloc (lock held): a freed one, else
/// new bytes; null once retired.
fn take(c: usize) -> *mut u8 {
    let Some(key) = admit() else {
        return core::ptr::null_mut();
    };
    let p = pop(c, key);
    if !p.is_null() {
        return p;
    }
    carve(c, key)
}

/// Counts a malloc (lock held) and gives the identity key, or None: the
/// region is retired, or retires now (too many mallocs too fast).
fn admit() -> Option<u64> {
    // Checked again under the lock: a malloc that saw the region open may
    // get here after another retired it (or after `retire_now` found the
    // lock busy: then its walk is still to do).
    if RETIRED.load(Ordering::Relaxed) {
        retire();
        return None;
    }
    let ops = OPS.load(Ordering::Relaxed) + 1;
    OPS.store(ops, Ordering::Relaxed);
    if ops == 1 {
        SINCE.store(coarse_ns(), Ordering::Relaxed);
    } else if ops > OPS_MAX {
        let now = coarse_ns();
        if now.saturating_sub(SINCE.load(Ordering::Relaxed)) < WINDOW_MS * 1_000_000 {
            retire();
            return None;
        }
        // Slowly: a new window.
        OPS.store(1, Ordering::Relaxed);
        SINCE.store(now, Ordering::Relaxed);
    }
    let mut key = KEY.load(Ordering::Relaxed);
    if key == 0 {
        key = crate::os::random_u64() | 1;
        KEY.store(key, Ordering::Relaxed);
    }
    Some(key)
}

/// The start of the region's small part or big part, its length, and its
/// bump offset.
fn part(big: bool) -> (usize, usize, &'static AtomicUsize) {
    if big {
        (SMALL_PART, BIG_PART, &BIG_BUMP)
    } else {
        (0, SMALL_PART, &BUMP)
    }
}

/// A block of kind `k` from its part's unused bytes (lock held), or null:
/// they are too few.
fn carve(k: usize, key: u64) -> *mut u8 {
    let big = k >= NCLASSES;
    let (start, len, bump) = part(big);
    let used = bump.load(Ordering::Relaxed);
    let size = block_size(k);
    if used + HDR + size > len {
        // A block that does not fit goes to the zones (or the arena) and
        // the region serves on; a small one that finds less than `FULL`
        // left ends it; a big one ends the big blocks: a program that wants
        // more of them than the part holds is not a short one (`midsize`,
        // blocks of 16 KiB - 1 MiB, had 575 of them served here, each
        // through the lock).
        if big {
            BIG_OFF.store(true, Ordering::Relaxed);
        } else if len - used < FULL {
            retire();
        }
        return core::ptr::null_mut();
    }
    bump.store(used + HDR + size, Ordering::Relaxed);
    let p = (base() + start + used + HDR) as *mut u8;
    hand_out(p, k, key);
    p
}

#[inline(always)]
fn coarse_ns() -> u64 {
    crate::os::clock_ns(libc::CLOCK_MONOTONIC_COARSE)
}

/// Pops a freed block of class `c` (lock held), or null: from the blocks
/// taken off the freed stack, else the whole stack, taken with one swap.
fn pop(c: usize, key: u64) -> *mut u8 {
    // (Every caller's class is below `NCLASSES`; the modulo spares the
    // indexing below its bounds checks and their panic path, as in `zone`.)
    let c = c % NCLASSES;
    let mut head = TAKEN[c].load(Ordering::Relaxed);
    if head == NIL {
        if FREE[c].load(Ordering::Relaxed) & HEAD == NIL as u64 {
            return core::ptr::null_mut();
        }
        // Acquire pairs with the Release of each push (the release
        // sequence of the CASes on `FREE[c]`): the links they wrote. The
        // count of frees stays.
        head = (FREE[c].fetch_and(!HEAD, Ordering::Acquire) & HEAD) as u16;
    }
    // Only we (under the lock) take blocks off, so the chain is ours and
    // each link is the one its push wrote.
    TAKEN[c].store(next(head).load(Ordering::Relaxed), Ordering::Relaxed);
    let p = at(head);
    hand_out(p, c, key);
    p
}

/// Writes the header of block `p` of kind `k`, live (and counted on its
/// pages once they are counted: lock held, so that a purge, also under the
/// lock, sees the count).
fn hand_out(p: *mut u8, k: usize, key: u64) {
    let counting = COUNTING.load(Ordering::Relaxed);
    // SAFETY: `p` is a block start of the region that is ours (carved or
    // popped under the lock): its header is the 16 bytes before it.
    unsafe {
        *(p.sub(HDR) as *mut u64) = key ^ p as u64;
        state_word(p).store(live_state(k, counting), Ordering::Relaxed);
    }
    if counting {
        count_on_pages(p, k);
    }
    let l = list(k);
    // Under the lock: a load and a store, no read-modify-write.
    MALLOCS[l].store(MALLOCS[l].load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    if l == BIG {
        // (Frees take off without the lock.)
        BIG_BYTES.fetch_add(block_size(k) as u64, Ordering::Relaxed);
    }
}

/// Counts the live block `p` of kind `k` on its pages (lock held; frees
/// take counts off concurrently).
fn count_on_pages(p: *mut u8, k: usize) {
    for pg in pages_of(p, k) {
        ON_PAGE[pg % PAGES].fetch_add(1, Ordering::Relaxed);
        // In use again: when it empties, it goes back again (only the
        // lock holder changes `PURGED`).
        let (word, bit) = purged(pg);
        let was = word.load(Ordering::Relaxed);
        if was & bit != 0 {
            word.store(was & !bit, Ordering::Relaxed);
        }
    }
}

/// The pages that the block at `p` of kind `k` and its header touch.
fn pages_of(p: *mut u8, k: usize) -> core::ops::RangeInclusive<usize> {
    let off = p as usize - base();
    ((off - HDR) / PAGE_SIZE)..=((off + block_size(k) - 1) / PAGE_SIZE)
}

/// The header's state word of the block at `p`.
///
/// # Safety
/// `p - 8` lies in the region and is 8-byte aligned.
#[inline(always)]
unsafe fn state_word(p: *mut u8) -> &'static AtomicU64 {
    // SAFETY: the caller's contract; the region lives as long as the process.
    unsafe { &*(p.sub(8) as *const AtomicU64) }
}

/// The state word of a live block of kind `k`, counted on its pages or
/// not.
#[inline(always)]
fn live_state(k: usize, counted: bool) -> u64 {
    ((k as u64) << CLASS_SHIFT) | LIVE | if counted { COUNTED } else { 0 }
}

/// No more allocation for malloc (lock held); the pages used that hold no
/// live block go back at once, the others as their last block goes.
#[cold]
fn retire() {
    RETIRED.store(true, Ordering::Relaxed);
    count_live();
    for big in [false, true] {
        let (start, _, bump) = part(big);
        let end = (start + bump.load(Ordering::Relaxed)).div_ceil(PAGE_SIZE);
        for pg in start / PAGE_SIZE..end {
            purge_if_empty(pg);
        }
    }
}

/// Once (lock held): walks the blocks carved so far in each part, header
/// to header, and marks each live one counted (a compare-and-swap on its
/// state word, which a concurrent free's clearing either precedes, and
/// then the block is not counted, or follows, and then that free takes the
/// count off), with a count on each page it touches. No page is purged before this,
/// so every header below the bump offset is there; one that does not
/// check out (an overflow from the block before it) ends the part's walk,
/// and the part's pages from there on are pinned (never purged: their
/// blocks, live or not, are not counted).
fn count_live() {
    if COUNTING.load(Ordering::Relaxed) {
        return;
    }
    COUNTING.store(true, Ordering::Relaxed);
    count_live_in(false);
    count_live_in(true);
}

/// `count_live` of the small part or the big part.
fn count_live_in(big: bool) {
    let key = KEY.load(Ordering::Relaxed);
    let (start, len, bump) = part(big);
    let end = start + bump.load(Ordering::Relaxed);
    let mut off = start;
    while off + HDR < end {
        let p = (base() + off + HDR) as *mut u8;
        // SAFETY: `p - 16 .. p` lies in the region below the bump offset,
        // 16-byte aligned: a header that `take` wrote.
        let (id, st) = unsafe { (*(p.sub(HDR) as *const u64), state_word(p)) };
        let mut s = st.load(Ordering::Relaxed);
        let k = (s >> CLASS_SHIFT) as usize;
        if id != key ^ p as u64 || !valid_kind(k) {
            let pages = ON_PAGE.iter().take((start + len).div_ceil(PAGE_SIZE));
            for n in pages.skip(off / PAGE_SIZE) {
                n.fetch_add(PINNED, Ordering::Relaxed);
            }
            return;
        }
        while s & LIVE != 0 {
            match st.compare_exchange(s, s | COUNTED, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => {
                    count_on_pages(p, k);
                    break;
                }
                Err(now) => s = now,
            }
        }
        off += HDR + block_size(k);
    }
}

/// Gives page `pg` back if no live block touches it (lock held). Its freed
/// blocks stay on their lists (the links are in the side table); a pop of one
/// writes its header again. Until then a bad free there finds a zero
/// header and is reported.
fn purge_if_empty(pg: usize) {
    let (word, bit) = purged(pg);
    if ON_PAGE[pg % PAGES].load(Ordering::SeqCst) == 0 && word.load(Ordering::Relaxed) & bit == 0 {
        crate::os::purge((base() + pg * PAGE_SIZE) as *mut u8, PAGE_SIZE);
        word.fetch_or(bit, Ordering::Relaxed);
    }
}

/// Page `pg`'s word of `PURGED`, and its bit there.
fn purged(pg: usize) -> (&'static AtomicU64, u64) {
    (&PURGED[(pg / 64) % PURGED.len()], 1 << (pg % 64))
}

/// What a pointer into the region is.
pub enum Found {
    /// A live block of this kind (`block_size`).
    Live(usize),
    /// A block already freed.
    Freed,
    /// Not the start of a block.
    Bad,
}

/// Validates `p`, a pointer into the region (`contains`).
pub fn find(p: *mut u8) -> Found {
    let off = (p as usize) - base();
    if off < HDR || !off.is_multiple_of(16) {
        return Found::Bad;
    }
    // SAFETY: `p - 16 .. p` lies in the region (off >= 16), 8-byte aligned.
    let (id, st) = unsafe {
        (
            *(p.sub(HDR) as *const u64),
            state_word(p).load(Ordering::Acquire),
        )
    };
    let key = KEY.load(Ordering::Relaxed);
    let k = (st >> CLASS_SHIFT) as usize;
    if key == 0 || id != key ^ p as u64 || !valid_kind(k) {
        return Found::Bad;
    }
    if st & LIVE != 0 {
        Found::Live(k)
    } else {
        Found::Freed
    }
}

/// Frees `p`, a live block of kind `k` (`find` said so); of two frees
/// racing, the second finds the live bit clear and is reported.
pub fn free(p: *mut u8, k: usize) {
    let l = list(k);
    // SAFETY: `find` checked that `p` is a block start of the region.
    let st = unsafe { state_word(p) };
    let old = st.fetch_and(!(LIVE | COUNTED), Ordering::AcqRel);
    if old & LIVE == 0 {
        crate::fmt::fatal_pointer("free", p, "double free");
    }
    if l == BIG {
        BIG_BYTES.fetch_sub(block_size(k) as u64, Ordering::Relaxed);
    }
    let u = unit(p);
    let mut cur = FREE[l].load(Ordering::Relaxed);
    loop {
        // Our block's link, ours to write: we cleared its live bit.
        next(u).store((cur & HEAD) as u16, Ordering::Relaxed);
        // The head and the count of frees in one: (count + 1, u).
        let new = (((cur >> HEAD_BITS) + 1) << HEAD_BITS) | u as u64;
        // Release pairs with the Acquire swap of `pop`: it reads the link.
        match FREE[l].compare_exchange_weak(cur, new, Ordering::Release, Ordering::Relaxed) {
            Ok(_) => break,
            Err(now) => cur = now,
        }
    }
    if old & COUNTED == 0 {
        return;
    }
    let mut emptied = false;
    for pg in pages_of(p, k) {
        emptied |= ON_PAGE[pg % PAGES].fetch_sub(1, Ordering::Relaxed) == 1;
    }
    if emptied {
        // Under the lock, so that no pop hands out a block there meanwhile
        // (a busy lock leaves the page to a later free or to no one: at
        // most this page stays resident).
        let _ = locked(|| {
            for pg in pages_of(p, k) {
                purge_if_empty(pg);
            }
        });
    }
}

/// Retires the region now (`SLABALLOC_STARTER=0`, read by the constructor):
/// the blocks it made stay valid. With the lock busy (another thread in
/// `take`), the flag alone: `take` checks it under the lock.
#[cold]
pub fn retire_now() {
    let _ = locked(retire);
    RETIRED.store(true, Ordering::SeqCst);
}

/// Fork, child: only this thread exists, so a lock another thread held is
/// free (what it was doing is lost: at worst a block it popped stays out).
pub fn fork_child() {
    LOCK.store(false, Ordering::Relaxed);
}

/// The mallocs and frees of list `l` it served (a class, or `BIG`), for
/// the report.
pub fn calls(l: usize) -> (u64, u64) {
    let l = l % NLISTS;
    (
        MALLOCS[l].load(Ordering::Relaxed),
        FREE[l].load(Ordering::Relaxed) >> HEAD_BITS,
    )
}

/// The region's figures for the report: (mallocs, frees, bytes in use).
pub fn counts() -> (u64, u64, u64) {
    let (m, f) = big_calls();
    let big = (m, f, BIG_BYTES.load(Ordering::Relaxed));
    (0..NCLASSES).fold(big, |(m, f, b), c| {
        let (a, d) = calls(c);
        let live = a.saturating_sub(d) * size_class::class_size(c) as u64;
        (m + a, f + d, b + live)
    })
}

#[cfg(test)]
mod tests;
