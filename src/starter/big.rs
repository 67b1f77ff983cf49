//! Big blocks: blocks above the size classes (`SMALL_MAX < size <=
//! BIG_MAX`), from the region like the others. A short process makes a few
//! early (`ls`'s 32 KiB `opendir` buffer, perl's and python's 32 KiB
//! callocs, libstdc++'s 72 KiB emergency pool), and the first would start
//! the arena and the zones: wall time over a trivial preloaded library
//! (2-CPU host, 300 alternated runs), `ls /` 81 -> 35 us, `perl -e 1` 85
//! -> 36, `gcc --version` 83 -> 38. Their sizes vary, so their freed
//! blocks wait on one list, `BIG`, searched first fit; a block is never
//! split, and keeps its size (its kind) when it serves a smaller request.
//! They have the region's second part to themselves (`part`); one that
//! does not fit there ends the big blocks (`BIG_OFF`), not the small ones.

use super::*;

/// A big block (`SMALL_MAX < size`) for malloc or calloc, and whether it
/// reads as zero (new bytes of the region), or None, as `alloc` (or the
/// block is above `BIG_MAX`, or does not fit).
#[inline(never)]
pub fn alloc_big(size: usize) -> Option<(*mut u8, bool)> {
    if RETIRED.load(Ordering::Relaxed) || BIG_OFF.load(Ordering::Relaxed) || size > BIG_MAX {
        return None;
    }
    locked(|| take_big(size)).filter(|r| !r.0.is_null())
}

/// A freed big block, for a malloc of `size` the arena could not serve
/// (no memory to map), as `alloc_last_resort`; also once the region serves
/// big blocks no more (retired, or `BIG_OFF`).
#[cold]
pub fn alloc_big_last_resort(size: usize) -> Option<*mut u8> {
    if size > BIG_MAX {
        return None;
    }
    locked(|| pop_big(big_kind(size), KEY.load(Ordering::Relaxed))).filter(|p| !p.is_null())
}

/// The big blocks' mallocs and frees, for the report (they are in no
/// class).
pub fn big_calls() -> (u64, u64) {
    calls(BIG)
}

/// Takes a big block of `size` bytes (lock held): a freed one, else new
/// bytes, which read as zero (true); null once retired.
fn take_big(size: usize) -> (*mut u8, bool) {
    let Some(key) = admit() else {
        return (core::ptr::null_mut(), false);
    };
    let k = big_kind(size);
    let p = pop_big(k, key);
    if !p.is_null() {
        return (p, false);
    }
    let p = carve(k, key);
    if !p.is_null() {
        size_slot(unit(p)).store((k - NCLASSES) as u16, Ordering::Relaxed);
    }
    (p, true)
}

/// Pops a freed big block (lock held) of at least kind `k`'s size and at
/// most twice it, or null. Blocks are not split: the block keeps its size.
/// The blocks pushed since the last look go in front of the taken list,
/// which is searched first fit (it holds at most `BIG_PART / SMALL_MAX`
/// blocks).
fn pop_big(k: usize, key: u64) -> *mut u8 {
    if FREE[BIG].load(Ordering::Relaxed) & HEAD != NIL as u64 {
        // Acquire: as in `pop`, the links the pushes wrote.
        let pushed = (FREE[BIG].fetch_and(!HEAD, Ordering::Acquire) & HEAD) as u16;
        let mut last = pushed;
        while next(last).load(Ordering::Relaxed) != NIL {
            last = next(last).load(Ordering::Relaxed);
        }
        next(last).store(TAKEN[BIG].load(Ordering::Relaxed), Ordering::Relaxed);
        TAKEN[BIG].store(pushed, Ordering::Relaxed);
    }
    let want = block_size(k);
    let mut prev = NIL;
    let mut u = TAKEN[BIG].load(Ordering::Relaxed);
    while u != NIL {
        let after = next(u).load(Ordering::Relaxed);
        let units = size_slot(u).load(Ordering::Relaxed) as usize;
        if (want..=2 * want).contains(&(units * 16)) {
            match prev {
                NIL => TAKEN[BIG].store(after, Ordering::Relaxed),
                _ => next(prev).store(after, Ordering::Relaxed),
            }
            let p = at(u);
            hand_out(p, NCLASSES + units, key);
            return p;
        }
        prev = u;
        u = after;
    }
    core::ptr::null_mut()
}

/// The size of the big block at unit `u` (`u >= 1`), in units of 16 bytes
/// (written by `take_big` under the lock): the side table's entry for the
/// block's header, a unit that no block starts at, so never a link. Unlike
/// the header it survives the purge of the block's pages and an overflow
/// of the block before it, so a freed block's size is known after
/// retirement (`alloc_big_last_resort`).
fn size_slot(u: u16) -> &'static AtomicU16 {
    next(u.wrapping_sub(1))
}
