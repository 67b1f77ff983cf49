//! The exported C ABI: every symbol a drop-in malloc must provide, with glibc's
//! semantics, as thin wrappers over `alloc`. This is the only module with
//! `#[no_mangle]` items.
//!
//! The unprefixed family (`malloc`, `free`, ..., glibc's `__libc_*` aliases and
//! extras) is exported with the default `override` feature. The prefixed API
//! (`sa_malloc`, ...) is always exported and declared in `include/slaballoc.h`.

use crate::alloc;
use crate::os::{self, PAGE_SIZE};
use crate::stats;
use core::ffi::{c_int, c_void};

type Ptr = *mut c_void;

#[inline(always)]
fn out(p: *mut u8) -> Ptr {
    p as Ptr
}

/// Alignment rule shared by memalign and aligned_alloc: glibc rounds a
/// non-power-of-two alignment up, and refuses absurd ones.
fn round_align(align: usize) -> Option<usize> {
    if align > usize::MAX / 2 + 1 {
        return None;
    }
    Some(align.max(1).next_power_of_two())
}

fn memalign_impl(align: usize, size: usize) -> Ptr {
    match round_align(align) {
        Some(a) => out(alloc::memalign(a, size)),
        None => {
            os::set_errno(libc::EINVAL);
            core::ptr::null_mut()
        }
    }
}

fn posix_memalign_impl(memptr: *mut Ptr, align: usize, size: usize) -> c_int {
    if align == 0 || !align.is_power_of_two() || !align.is_multiple_of(core::mem::size_of::<Ptr>())
    {
        return libc::EINVAL;
    }
    if memptr.is_null() {
        return libc::EINVAL;
    }
    let e = os::errno();
    let p = alloc::memalign(align, size);
    os::set_errno(e);
    if p.is_null() {
        return libc::ENOMEM;
    }
    // SAFETY: memptr is non-null and, per the contract, points at a void*.
    unsafe { *memptr = out(p) };
    0
}

fn pvalloc_impl(size: usize) -> Ptr {
    let Some(s) = size.checked_add(PAGE_SIZE - 1) else {
        os::set_errno(libc::ENOMEM);
        return core::ptr::null_mut();
    };
    out(alloc::memalign(
        PAGE_SIZE,
        (s & !(PAGE_SIZE - 1)).max(PAGE_SIZE),
    ))
}

fn reallocarray_impl(p: Ptr, n: usize, m: usize) -> Ptr {
    match n.checked_mul(m) {
        Some(s) => out(alloc::realloc(p as *mut u8, s)),
        None => {
            os::set_errno(libc::ENOMEM);
            core::ptr::null_mut()
        }
    }
}

/// free keeps errno (POSIX 2024, glibc >= 2.33).
#[inline(always)]
fn free_impl(p: Ptr) {
    alloc::free(p as *mut u8);
}

// ---- prefixed API (always exported) ----

/// Allocates `size` bytes from slaballoc (like malloc).
#[no_mangle]
pub extern "C" fn sa_malloc(size: usize) -> *mut c_void {
    out(alloc::malloc(size))
}

/// Frees a block from any sa_* or malloc-family function (like free).
#[no_mangle]
pub extern "C" fn sa_free(p: *mut c_void) {
    free_impl(p)
}

/// Allocates zeroed memory for `n` elements of `size` bytes (like calloc).
#[no_mangle]
pub extern "C" fn sa_calloc(n: usize, size: usize) -> *mut c_void {
    out(alloc::calloc(n, size))
}

/// Resizes a block, keeping its contents (like realloc).
#[no_mangle]
pub extern "C" fn sa_realloc(p: *mut c_void, size: usize) -> *mut c_void {
    out(alloc::realloc(p as *mut u8, size))
}

/// Allocates `size` bytes aligned to `align` (like aligned_alloc).
#[no_mangle]
pub extern "C" fn sa_aligned_alloc(align: usize, size: usize) -> *mut c_void {
    memalign_impl(align, size)
}

/// Usable size of a block (like malloc_usable_size).
#[no_mangle]
pub extern "C" fn sa_usable_size(p: *mut c_void) -> usize {
    alloc::usable_size(p as *mut u8)
}

/// Address of our `free`, to recognise ourselves among `RTLD_NEXT` results.
pub fn free_addr() -> usize {
    #[cfg(feature = "override")]
    {
        free as *const () as usize
    }
    #[cfg(not(feature = "override"))]
    {
        0
    }
}

pub fn usable_addr() -> usize {
    #[cfg(feature = "override")]
    {
        malloc_usable_size as *const () as usize
    }
    #[cfg(not(feature = "override"))]
    {
        0
    }
}

/// glibc's malloc_trim: hand free memory back. Returns 1 if any was released.
fn trim() -> c_int {
    let before = crate::stats::totals();
    let purged = crate::reclaim::pass(true);
    let after = crate::stats::totals();
    (purged > 0 || after.slabs_live < before.slabs_live) as c_int
}

#[cfg(feature = "override")]
pub use overrides::*;

#[cfg(feature = "override")]
mod overrides {
    use super::*;

    #[no_mangle]
    pub extern "C" fn malloc(size: usize) -> Ptr {
        out(alloc::malloc(size))
    }

    #[no_mangle]
    pub extern "C" fn free(p: Ptr) {
        free_impl(p)
    }

    #[no_mangle]
    pub extern "C" fn cfree(p: Ptr) {
        free_impl(p)
    }

    #[no_mangle]
    pub extern "C" fn free_sized(p: Ptr, _size: usize) {
        free_impl(p)
    }

    #[no_mangle]
    pub extern "C" fn free_aligned_sized(p: Ptr, _align: usize, _size: usize) {
        free_impl(p)
    }

    #[no_mangle]
    pub extern "C" fn calloc(n: usize, size: usize) -> Ptr {
        out(alloc::calloc(n, size))
    }

    #[no_mangle]
    pub extern "C" fn realloc(p: Ptr, size: usize) -> Ptr {
        out(alloc::realloc(p as *mut u8, size))
    }

    #[no_mangle]
    pub extern "C" fn reallocarray(p: Ptr, n: usize, size: usize) -> Ptr {
        reallocarray_impl(p, n, size)
    }

    /// # Safety
    /// `memptr` must be valid for a pointer write (checked for null).
    #[no_mangle]
    pub unsafe extern "C" fn posix_memalign(memptr: *mut Ptr, align: usize, size: usize) -> c_int {
        posix_memalign_impl(memptr, align, size)
    }

    /// # Safety
    /// As `posix_memalign`.
    #[no_mangle]
    pub unsafe extern "C" fn __posix_memalign(
        memptr: *mut Ptr,
        align: usize,
        size: usize,
    ) -> c_int {
        posix_memalign_impl(memptr, align, size)
    }

    #[no_mangle]
    pub extern "C" fn aligned_alloc(align: usize, size: usize) -> Ptr {
        memalign_impl(align, size)
    }

    #[no_mangle]
    pub extern "C" fn memalign(align: usize, size: usize) -> Ptr {
        memalign_impl(align, size)
    }

    #[no_mangle]
    pub extern "C" fn valloc(size: usize) -> Ptr {
        out(alloc::memalign(PAGE_SIZE, size))
    }

    #[no_mangle]
    pub extern "C" fn pvalloc(size: usize) -> Ptr {
        pvalloc_impl(size)
    }

    #[no_mangle]
    pub extern "C" fn malloc_usable_size(p: Ptr) -> usize {
        alloc::usable_size(p as *mut u8)
    }

    #[no_mangle]
    pub extern "C" fn __libc_malloc(size: usize) -> Ptr {
        out(alloc::malloc(size))
    }

    #[no_mangle]
    pub extern "C" fn __libc_free(p: Ptr) {
        free_impl(p)
    }

    #[no_mangle]
    pub extern "C" fn __libc_calloc(n: usize, size: usize) -> Ptr {
        out(alloc::calloc(n, size))
    }

    #[no_mangle]
    pub extern "C" fn __libc_realloc(p: Ptr, size: usize) -> Ptr {
        out(alloc::realloc(p as *mut u8, size))
    }

    #[no_mangle]
    pub extern "C" fn __libc_memalign(align: usize, size: usize) -> Ptr {
        memalign_impl(align, size)
    }

    #[no_mangle]
    pub extern "C" fn __libc_valloc(size: usize) -> Ptr {
        out(alloc::memalign(PAGE_SIZE, size))
    }

    #[no_mangle]
    pub extern "C" fn __libc_pvalloc(size: usize) -> Ptr {
        pvalloc_impl(size)
    }

    /// Accepted and ignored: slaballoc has no glibc tunables. Returns 1
    /// (success), as glibc does for the parameters it knows.
    #[no_mangle]
    pub extern "C" fn mallopt(_param: c_int, _value: c_int) -> c_int {
        1
    }

    #[no_mangle]
    pub extern "C" fn malloc_trim(_pad: usize) -> c_int {
        trim()
    }

    #[no_mangle]
    pub extern "C" fn malloc_stats() {
        stats::print();
    }

    #[no_mangle]
    pub extern "C" fn mallinfo2() -> libc::mallinfo2 {
        let t = stats::totals();
        let live = t.slabs_live as usize; // slabs, not bytes: see README
        libc::mallinfo2 {
            arena: t.bytes_mapped as usize,
            ordblks: live,
            smblks: t.slabs_cached as usize,
            hblks: (t.huge_allocs - t.huge_frees) as usize,
            hblkhd: crate::stats::GLOBAL
                .huge_bytes
                .load(core::sync::atomic::Ordering::Relaxed),
            usmblks: 0,
            fsmblks: 0,
            uordblks: (t.bytes_mapped - t.dirty_bytes) as usize,
            fordblks: t.dirty_bytes as usize,
            keepcost: 0,
        }
    }

    #[no_mangle]
    pub extern "C" fn mallinfo() -> libc::mallinfo {
        let m = mallinfo2();
        let c = |v: usize| v.min(c_int::MAX as usize) as c_int;
        libc::mallinfo {
            arena: c(m.arena),
            ordblks: c(m.ordblks),
            smblks: c(m.smblks),
            hblks: c(m.hblks),
            hblkhd: c(m.hblkhd),
            usmblks: 0,
            fsmblks: 0,
            uordblks: c(m.uordblks),
            fordblks: c(m.fordblks),
            keepcost: 0,
        }
    }

    /// Writes an XML summary to `stream`, like glibc. `options` must be 0.
    ///
    /// # Safety
    /// `stream` must be a valid `FILE*`.
    #[no_mangle]
    pub unsafe extern "C" fn malloc_info(options: c_int, stream: *mut libc::FILE) -> c_int {
        if options != 0 || stream.is_null() {
            os::set_errno(libc::EINVAL);
            return -1;
        }
        let t = stats::totals();
        let mut b = crate::fmt::Buf::<1024>::new();
        b.str("<malloc version=\"slaballoc-1\">\n<total type=\"mapped\" size=\"")
            .u64(t.bytes_mapped)
            .str("\"/>\n<total type=\"dirty\" size=\"")
            .u64(t.dirty_bytes)
            .str("\"/>\n<slabs live=\"")
            .u64(t.slabs_live)
            .str("\" cached=\"")
            .u64(t.slabs_cached)
            .str("\"/>\n<frees local=\"")
            .u64(t.local_frees)
            .str("\" remote=\"")
            .u64(t.remote_frees)
            .str("\" notifications=\"")
            .u64(t.notifications)
            .str("\"/>\n</malloc>\n");
        let bytes = b.bytes();
        // No allocator lock is held here: stdio may allocate its buffer.
        let n = libc::fwrite(bytes.as_ptr() as *const c_void, 1, bytes.len(), stream);
        if n == bytes.len() {
            0
        } else {
            -1
        }
    }
}
