//! Architectures without our rseq sections: the same functions as
//! `x86_64.rs`, with no rseq area and sections that always fail, so the
//! per-CPU cache stays off (`HAS_SECTIONS`) and malloc and free take their
//! zones' locks.

use super::Caches;
use crate::cache_layout::CAP_MAX;

/// No signature: there are no sections to sign.
pub const RSEQ_SIG: u32 = 0;

/// False: the cache stays off.
pub const HAS_SECTIONS: bool = false;

/// A unique, non-zero id of the calling thread.
#[inline(always)]
pub fn thread_pointer() -> usize {
    // SAFETY: pthread_self has no preconditions.
    unsafe { libc::pthread_self() as usize }
}

/// Bytes of the profiler's per-thread slot.
pub const PROF_TLS_SIZE: usize = 16;

/// The profiler's slot: one for the whole process here (no static TLS
/// symbol of ours); its users accept racy updates.
pub fn prof_tls() -> *mut u8 {
    struct Shared(core::cell::UnsafeCell<[u64; 2]>);
    // SAFETY: plain integers, used racily by design (see `prof`).
    unsafe impl Sync for Shared {}
    static S: Shared = Shared(core::cell::UnsafeCell::new([0; 2]));
    S.0.get() as *mut u8
}

/// No rseq area is used on this architecture.
pub fn glibc_rseq_offset() -> Option<isize> {
    None
}

/// No rseq area of our own either.
pub fn own_area_offset() -> Option<isize> {
    None
}

/// Never called: there is no rseq area (`glibc_rseq_offset` and
/// `own_area_offset` are None). Reads as "unregistered".
///
/// # Safety
/// None needed; kept `unsafe` to match the x86-64 contract.
pub unsafe fn read_rseq_i32(_off: isize, _field: usize) -> i32 {
    -1
}

// The per-CPU caches are never on here: every section fails.
/// # Safety
/// None needed here (the contract of the x86-64 section).
pub unsafe fn pop_hot(_coff: usize) -> *mut u8 {
    core::ptr::null_mut()
}

/// # Safety
/// None needed here (the contract of the x86-64 section).
pub unsafe fn pop_hot_tail(_coff: usize) -> (*mut u8, u64) {
    (core::ptr::null_mut(), 0)
}

/// # Safety
/// None needed here (the contract of the x86-64 section).
pub unsafe fn push_free_hot(_owner: usize, _coff: usize, _p: *mut u8) -> bool {
    false
}

impl Caches {
    #[cfg(test)]
    pub fn push_owned(&self, _owner: usize, _c: usize, _p: *mut u8) -> bool {
        false
    }

    #[cfg(test)]
    pub fn pop_owned(&self, _owner: usize, _c: usize) -> *mut u8 {
        core::ptr::null_mut()
    }

    pub fn push_bulk_owned(&self, _owner: usize, _c: usize, _buf: &[*mut u8]) -> bool {
        false
    }

    pub fn pop_bulk_owned(&self, _owner: usize, _c: usize, _buf: &mut [*mut u8]) -> usize {
        0
    }

    pub fn regear_owned(&self, _owner: usize, _c: usize, _cap: u32, _mask: u32) -> bool {
        false
    }

    pub fn push_here(&self, _slot: usize, _p: *mut u8) -> bool {
        false
    }

    pub fn push_here_head(&self, _slot: usize, _p: *mut u8) -> u64 {
        0
    }

    pub fn take_here(&self, _slot: usize, _buf: &mut [usize; CAP_MAX]) -> usize {
        0
    }
}

/// The free map's chunk check (`pagemap::FreeEntry`): true if
/// `p * mul - s` (wrapping) is below `below`, where `e` points at the
/// entry's `s`, `mul` and `below` (words 0, 1 and 2).
///
/// # Safety
/// `e` points at three readable, 8-aligned `u64`s that other threads
/// write only atomically (an entry of a registered arena's free map).
#[inline(always)]
pub unsafe fn check_mul_below(e: *const u64, p: usize) -> bool {
    use core::sync::atomic::{AtomicU64, Ordering::Relaxed};
    // SAFETY: the caller guarantees three aligned readable words, written
    // only through atomics.
    let w = unsafe { &*(e as *const [AtomicU64; 3]) };
    (p as u64)
        .wrapping_mul(w[1].load(Relaxed))
        .wrapping_sub(w[0].load(Relaxed))
        < w[2].load(Relaxed)
}

/// True if `size` is below `ROOT.small_limit` (see the x86-64 version).
#[inline(always)]
pub fn below_small_limit(size: usize) -> bool {
    size < crate::cache_layout::ROOT
        .small_limit
        .load(core::sync::atomic::Ordering::Acquire)
}
