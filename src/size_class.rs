//! Size classes, in the spirit of DragonFly's `zoneindex()`: fine steps for small
//! sizes, coarser above. 16-byte steps up to 128 bytes, then four classes per
//! doubling up to 16 KiB (at most 25% internal waste). Every class is a multiple
//! of 16, so every chunk is 16-byte aligned; power-of-two classes are naturally
//! aligned because slabs of those classes are aligned to the class size (or a
//! page) and chunks sit at multiples of the class size from the slab start.
//!
//! The size-to-class map is a table lookup, built at compile time.

use crate::os::PAGE_SIZE;

/// Number of small size classes.
pub const NCLASSES: usize = 36;
/// Largest request served from slabs; above it requests are page runs.
pub const SMALL_MAX: usize = 16384;
/// Aim for at least this many chunks per slab: the fewer chunks a slab holds,
/// the more often it fills and detaches, and the more owner messages flow.
const MIN_CHUNKS: usize = 64;
/// Smallest slab: 32 pages (128 KiB). Pages are carved as the slab is used,
/// so a larger slab costs address space, not memory; with 16 pages, classes
/// of a few hundred bytes outgrew one slab in `prodcons` (a full ring holds
/// ~130 chunks of the 512-byte class) and rotated through slabs, each turn a
/// detach and a message: 3,000-5,600 detaches against none now, peak RSS
/// 2.38 -> 2.26 MiB there, mixed 10.1 -> 9.9 MiB, time unchanged.
const MIN_SLAB_PAGES: usize = 32;

pub const fn size_of_class(i: usize) -> usize {
    if i < 8 {
        16 * (i + 1)
    } else {
        let g = (i - 8) / 4;
        let k = (i - 8) % 4;
        let base = 128 << g;
        base + (k + 1) * (base / 4)
    }
}

const fn build_sizes() -> [u32; NCLASSES] {
    let mut t = [0u32; NCLASSES];
    let mut i = 0;
    while i < NCLASSES {
        t[i] = size_of_class(i) as u32;
        i += 1;
    }
    t
}

/// The class of each `(size + 15) / 16` (the table behind `class_of`).
pub const fn build_index() -> [u8; SMALL_MAX / 16 + 1] {
    let mut t = [0u8; SMALL_MAX / 16 + 1];
    let mut c = 0;
    let mut j = 0;
    while j <= SMALL_MAX / 16 {
        let size = j * 16;
        while size_of_class(c) < size {
            c += 1;
        }
        t[j] = c as u8;
        j += 1;
    }
    t
}

const fn build_pages() -> [u16; NCLASSES] {
    let mut t = [0u16; NCLASSES];
    let mut i = 0;
    while i < NCLASSES {
        let want = size_of_class(i) * MIN_CHUNKS;
        let mut pages = want.div_ceil(PAGE_SIZE);
        if pages < MIN_SLAB_PAGES {
            pages = MIN_SLAB_PAGES;
        }
        t[i] = pages as u16;
        i += 1;
    }
    t
}

/// The most pages a slab of any class spans.
pub const MAX_SLAB_PAGES: usize = {
    let t = build_pages();
    let mut m = 0;
    let mut i = 0;
    while i < NCLASSES {
        if t[i] as usize > m {
            m = t[i] as usize;
        }
        i += 1;
    }
    m
};

/// Chunk size of each class.
pub static CLASS_SIZE: [u32; NCLASSES] = build_sizes();

/// What `free` needs to validate a chunk offset without dividing: with
/// `mul` = `ceil(2^64 / size)` (plus one where `size` is a power of two, so
/// that `mul * size` is `2^64 + e` with `e` > 0), `off * mul` (wrapping) is
/// `q * e` when `off` = `q * size`, and at least `2^64 / size` when `size`
/// does not divide `off`, for every `off` below 2^32 (Lemire, Kaser and
/// Kurz, "Faster remainder by direct computation", 2019). So one multiply
/// and one compare against `below` = `chunks * e` accept exactly the chunk
/// starts of the slab, bound included; the unit test checks every offset
/// of every class. `below` 0 refuses every offset.
#[derive(Clone, Copy)]
#[repr(C, align(16))]
pub struct ClassInfo {
    mul: u64,
    below: u64,
}

const fn build_info() -> [ClassInfo; NCLASSES] {
    let mut t = [ClassInfo { mul: 0, below: 0 }; NCLASSES];
    let pages = build_pages();
    let mut i = 0;
    while i < NCLASSES {
        let size = size_of_class(i) as u64;
        let chunks = pages[i] as u64 * PAGE_SIZE as u64 / size;
        let mut mul = u64::MAX / size + 1;
        if mul.wrapping_mul(size) == 0 {
            mul += 1;
        }
        let e = mul.wrapping_mul(size);
        // The accepted products stay below every refused one.
        assert!(chunks * e <= u64::MAX / size);
        t[i] = ClassInfo {
            mul,
            below: chunks * e,
        };
        i += 1;
    }
    t
}

pub static CLASS_INFO: [ClassInfo; NCLASSES] = build_info();

impl ClassInfo {
    /// The multiplier of the check.
    #[inline(always)]
    pub const fn mul(&self) -> u64 {
        self.mul
    }

    /// The bound of the check: `chunks * e`.
    #[inline(always)]
    pub const fn below(&self) -> u64 {
        self.below
    }

    /// True if `off` (bytes from the slab start, below 2^32) is the start
    /// of a chunk.
    #[inline(always)]
    pub fn is_chunk_start(&self, off: usize) -> bool {
        (off as u64).wrapping_mul(self.mul) < self.below
    }
}
/// Pages per slab of each class.
pub static SLAB_PAGES: [u16; NCLASSES] = build_pages();

/// The class serving `size` (must be <= SMALL_MAX): the smallest whose
/// size is at least `size` rounded up to 16, as `build_index` says, by a
/// binary search of the sizes. Only memalign and the tests ask (malloc
/// reads its stack from `cache::stack_of_size`): a table by size, 1 KiB in
/// every process's first page of ours, was not worth it.
pub fn class_of(size: usize) -> usize {
    let want = size_index(size) * 16;
    CLASS_SIZE
        .partition_point(|&s| (s as usize) < want)
        .min(NCLASSES - 1)
}

/// The index of `size` (at most `SMALL_MAX`) in the tables by size
/// (`build_index`): `(size + 15) / 16`.
#[inline(always)]
pub fn size_index(size: usize) -> usize {
    debug_assert!(size <= SMALL_MAX);
    // Bounds: (SMALL_MAX + 15) / 16 == SMALL_MAX / 16 for SMALL_MAX % 16 == 0,
    // and callers only pass size <= SMALL_MAX, so the index is always in range;
    // `min` makes that unconditional without a panic path.
    ((size + 15) >> 4).min(SMALL_MAX / 16)
}

#[inline(always)]
pub fn class_size(c: usize) -> usize {
    CLASS_SIZE[c % NCLASSES] as usize
}

/// Chunks per slab of class `c`.
pub fn capacity(c: usize) -> usize {
    SLAB_PAGES[c % NCLASSES] as usize * PAGE_SIZE / class_size(c)
}

/// Alignment (in pages) a slab of class `c` needs so that its chunks are
/// naturally aligned: power-of-two classes above a page need their own size.
pub fn slab_align_pages(c: usize) -> usize {
    let s = class_size(c);
    if s > PAGE_SIZE && s.is_power_of_two() {
        s / PAGE_SIZE
    } else {
        1
    }
}

/// Guaranteed alignment of every chunk of class `c`.
pub fn chunk_align(c: usize) -> usize {
    let s = class_size(c);
    // Chunks sit at i * s from a slab start aligned to max(page, s if pow2).
    let slab_align = slab_align_pages(c) * PAGE_SIZE;
    let low = 1usize << s.trailing_zeros();
    low.min(slab_align)
}

/// The smallest class that can serve `size` bytes at alignment `align`, if any.
pub fn class_for_aligned(size: usize, align: usize) -> Option<usize> {
    if size > SMALL_MAX {
        return None;
    }
    (class_of(size)..NCLASSES).find(|&c| chunk_align(c) >= align)
}

/// Hysteresis for remote frees: a slab whose owner was notified goes back on
/// the owner's list only once this many chunks are free in it.
pub fn wake_threshold(c: usize) -> usize {
    (capacity(c) / 4).max(1)
}

// The remote list's count (`slab::MAX_COUNT`) holds a whole slab.
const _: () = {
    let mut c = 0;
    while c < NCLASSES {
        assert!((build_pages()[c] as usize * PAGE_SIZE / size_of_class(c)) < 65535);
        c += 1;
    }
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_are_sorted_and_aligned() {
        for c in 1..NCLASSES {
            assert!(CLASS_SIZE[c] > CLASS_SIZE[c - 1]);
        }
        for (c, &size) in CLASS_SIZE.iter().enumerate() {
            assert_eq!(size % 16, 0);
            assert!(chunk_align(c) >= 16);
            if class_size(c).is_power_of_two() {
                assert_eq!(chunk_align(c), class_size(c), "class {c}");
            }
        }
        assert_eq!(CLASS_SIZE[NCLASSES - 1] as usize, SMALL_MAX);
    }

    #[test]
    fn every_size_maps_to_the_smallest_fitting_class() {
        for size in 0..=SMALL_MAX {
            let c = class_of(size);
            assert!(class_size(c) >= size, "size {size}");
            if c > 0 {
                assert!(class_size(c - 1) < size.max(1), "size {size}");
            }
            // At most 25% waste above 128 bytes, at most 15 bytes below.
            if size > 128 {
                assert!(class_size(c) * 4 <= size * 5 + 4 * 16, "size {size}");
            } else {
                assert!(class_size(c) - size.max(1) < 16);
            }
        }
    }

    #[test]
    fn chunk_start_check_is_exact() {
        for (c, info) in CLASS_INFO.iter().enumerate() {
            let size = class_size(c);
            for off in 0..capacity(c) * size + 2 * size {
                let want = off % size == 0 && off < capacity(c) * size;
                assert_eq!(info.is_chunk_start(off), want, "class {c} off {off}");
            }
        }
    }

    #[test]
    fn slabs_hold_enough_chunks() {
        for c in 0..NCLASSES {
            assert!(capacity(c) >= MIN_CHUNKS, "class {c}");
            assert!(wake_threshold(c) >= 16);
        }
    }

    #[test]
    fn aligned_classes() {
        let index = build_index();
        for size in 0..=SMALL_MAX {
            assert_eq!(
                class_of(size),
                index[size_index(size)] as usize,
                "size {size}"
            );
        }
        assert_eq!(class_for_aligned(100, 64), Some(class_of(128)));
        let c = class_for_aligned(1, 4096).unwrap();
        assert_eq!(class_size(c) % 4096, 0);
        assert_eq!(class_for_aligned(SMALL_MAX + 1, 16), None);
        for a in [
            16usize, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384,
        ] {
            for s in [1usize, 17, 100, 1000, 5000, 16384] {
                if let Some(c) = class_for_aligned(s, a) {
                    assert!(class_size(c) >= s);
                    assert_eq!(chunk_align(c) % a, 0);
                }
            }
        }
    }
}
