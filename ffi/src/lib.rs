//! # libslaballoc: the C library
//!
//! Every symbol a drop-in malloc must provide, with glibc's semantics, as thin
//! wrappers over the allocator crate (`slaballoc`, `src/` at the workspace
//! root, whose [`api`] module is all this crate uses). This is the only crate
//! with `#[no_mangle]` items; `cargo build --release` builds it as
//! `target/release/libslaballoc.so` and `libslaballoc.a`.
//!
//! The unprefixed family (`malloc`, `free`, ..., glibc's `__libc_*` aliases and
//! extras) is exported with the default `override` feature, and with it, on
//! x86-64, C++'s `operator new` and `operator delete` (module `cxx`). The prefixed API
//! (`sa_malloc`, ...) is always exported and declared in `include/slaballoc.h`
//! (generated from this file: `make header`).
//!
//! [`api`]: slaballoc::api

#![no_std]

use core::ffi::{c_char, c_int, c_void};
use slaballoc::api as stats;
#[cfg(feature = "override")]
use slaballoc::api::PAGE_SIZE;
use slaballoc::api::{self as alloc, sa_malloc_type};

/// errno and friends, from the allocator (it owns the rules on keeping it).
mod os {
    #[cfg(feature = "override")]
    pub use slaballoc::api::errno;
    pub use slaballoc::api::set_errno;
}

/// Without `std` nothing prints a panic: nothing on our paths is meant to
/// panic, and if it happens anyway the only safe thing left is to stop.
#[cfg(not(test))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    slaballoc::api::fatal("internal error (a panic in the allocator)")
}

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

#[cfg(feature = "override")]
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

#[cfg(feature = "override")]
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

#[cfg(feature = "override")]
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

/// Writes the live sampled heap now, to `PREFIX.PID.N.heap` (heap profiling
/// on: `SLABALLOC_PROF=1`). Returns 1 if a file was written, 0 if profiling
/// is off or the file could not be written. Not from a signal handler.
#[no_mangle]
#[cold]
#[link_section = ".text_cold"]
pub extern "C" fn sa_prof_dump() -> c_int {
    alloc::prof_dump() as c_int
}

// ---- malloc types ----

/// Allocates `size` bytes charged to malloc type `type_` (DragonFly's
/// kmalloc). `flags`: `SA_ZERO`, and one of `SA_NOWAIT` (fail with ENOMEM at
/// the type's limit) or `SA_WAITOK` (wait until frees make room). NULL with
/// EINVAL for a NULL type or unknown flags.
///
/// # Safety
/// `type_` must point at a `struct sa_malloc_type` that lives for the rest of
/// the program (define it with `SA_DEFINE_TYPE`).
#[no_mangle]
#[link_section = ".text_cold"]
pub unsafe extern "C" fn sa_kmalloc(
    size: usize,
    type_: *mut sa_malloc_type,
    flags: c_int,
) -> *mut c_void {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe { out(alloc::kmalloc(size, type_, flags)) }
}

/// Frees a block allocated with `sa_kmalloc` with the same type.
///
/// # Safety
/// As `sa_kmalloc`; `p` came from `sa_kmalloc(.., type_, ..)`.
#[no_mangle]
#[link_section = ".text_cold"]
pub unsafe extern "C" fn sa_kfree(p: *mut c_void, type_: *mut sa_malloc_type) {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe { alloc::kfree(p as *mut u8, type_) }
}

/// Current usage of a malloc type, summed over CPUs. Either output may be NULL.
///
/// # Safety
/// `type_` as for `sa_kmalloc`; the outputs, if not NULL, are writable.
#[no_mangle]
#[cold]
#[link_section = ".text_cold"]
pub unsafe extern "C" fn sa_type_usage(
    type_: *mut sa_malloc_type,
    bytes: *mut i64,
    objects: *mut i64,
) -> c_int {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe {
        if type_.is_null() {
            return libc::EINVAL;
        }
        let (b, o) = alloc::type_usage(type_);
        if !bytes.is_null() {
            *bytes = b;
        }
        if !objects.is_null() {
            *objects = o;
        }
        0
    }
}

// ---- statistics ----

/// A snapshot of the allocator's counters (`sa_stats_get`): the process
/// totals (the same struct the reports print), then per size class and
/// per CPU (zone).
#[repr(C)]
#[allow(non_camel_case_types)]
pub struct sa_stats {
    pub totals: stats::Totals,
    /// Entries used in `classes` (36) and `cpus` (CPUs that can be online).
    pub nclasses: u32,
    pub ncpus: u32,
    pub classes: [stats::ClassTotals; 36],
    pub cpus: [stats::CpuTotals; 256],
}

const _: () = assert!(alloc::NCLASSES == 36 && alloc::MAX_ZONES == 256);
const _: () = assert!(alloc::SA_ZERO == 1 && alloc::SA_NOWAIT == 2 && alloc::SA_WAITOK == 4);

/// Fills `*out` with a snapshot of the counters. `size` must be
/// `sizeof(struct sa_stats)` (guards against a header/library mismatch).
/// Returns 0, or EINVAL.
///
/// # Safety
/// `out` is valid for `size` bytes of writes.
#[no_mangle]
#[cold]
#[link_section = ".text_cold"]
pub unsafe extern "C" fn sa_stats_get(out: *mut sa_stats, size: usize) -> c_int {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe {
        if out.is_null() || size != core::mem::size_of::<sa_stats>() {
            return libc::EINVAL;
        }
        let t = stats::totals();
        core::ptr::write_bytes(out as *mut u8, 0, size);
        let o = &mut *out;
        o.totals = t;
        o.nclasses = alloc::NCLASSES as u32;
        o.ncpus = alloc::nzones() as u32;
        o.classes = stats::classes();
        for (i, d) in o.cpus.iter_mut().enumerate().take(alloc::nzones()) {
            *d = stats::cpu_totals(i);
        }
        0
    }
}

fn format_of(format: c_int) -> Option<stats::Format> {
    match format {
        0 => Some(stats::Format::Text),
        1 => Some(stats::Format::Json),
        2 => Some(stats::Format::Line),
        _ => None,
    }
}

/// Prints the statistics to `stream`: `format` 0 readable text, 1 JSON,
/// 2 one `key=value` line. Returns 0, or -1 with errno EINVAL.
///
/// # Safety
/// `stream` is a valid `FILE*`.
#[no_mangle]
#[cold]
#[link_section = ".text_cold"]
pub unsafe extern "C" fn sa_stats_print(stream: *mut libc::FILE, format: c_int) -> c_int {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe {
        let Some(f) = format_of(format) else {
            os::set_errno(libc::EINVAL);
            return -1;
        };
        if stream.is_null() {
            os::set_errno(libc::EINVAL);
            return -1;
        }
        // No allocator lock is held while stdio runs (it may allocate).
        stats::report(f, &mut |b| {
            libc::fwrite(b.as_ptr() as *const c_void, 1, b.len(), stream);
        });
        0
    }
}

/// Like `sa_stats_print`, but hands the text to `write(arg, text, len)` piece
/// by piece (pieces are not NUL-terminated).
///
/// # Safety
/// `write` is a valid function; it is called with `arg` as given.
#[no_mangle]
#[cold]
#[link_section = ".text_cold"]
pub unsafe extern "C" fn sa_stats_print_cb(
    write: Option<unsafe extern "C" fn(arg: *mut c_void, text: *const c_char, len: usize)>,
    arg: *mut c_void,
    format: c_int,
) -> c_int {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe {
        let (Some(f), Some(w)) = (format_of(format), write) else {
            os::set_errno(libc::EINVAL);
            return -1;
        };
        stats::report(f, &mut |b| w(arg, b.as_ptr() as *const c_char, b.len()));
        0
    }
}

#[cfg(feature = "override")]
pub use overrides::*;

/// `free`'s body under a local name, for the stubs of `jumps_to_free!` to
/// jump to directly (an exported name would go through the PLT).
#[cfg(all(feature = "override", target_arch = "x86_64"))]
extern "C" fn free_target(p: Ptr) {
    free_impl(p)
}

/// Exports functions that free their first argument and ignore the rest
/// (a size, an alignment, C++'s `nothrow` tag): each is one direct jump to
/// `free`, with the pointer where it came (`rdi`). Rust would make a copy
/// of free's code for each other signature (255 bytes each, in the hot
/// code's pages); and a name of its own keeps `free`'s address for `free`
/// and `sa_free`, so that profilers and debuggers name it so (with C++'s
/// `operator delete` at free's address, `perf` named every `free` of a C
/// program `operator delete[]`).
///
/// Soundness of the naked body (the attribute is `unsafe`): one direct
/// jump, with the stack and every register as the caller left them, to an
/// `extern "C"` function whose first argument is the pointer; the extra
/// arguments are ignored. No frame, and no unwind table: the jump is the
/// only instruction, and `free` returns straight to the caller.
#[cfg(all(feature = "override", target_arch = "x86_64"))]
macro_rules! jumps_to_free {
    ($($name:ident($($arg:ident: $ty:ty),*);)*) => {
        $(
            #[no_mangle]
            #[unsafe(naked)]
            pub extern "C" fn $name(p: Ptr $(, $arg: $ty)*) {
                core::arch::naked_asm!("jmp {free}", free = sym $crate::free_target)
            }
        )*
    };
}

#[cfg(all(feature = "override", target_arch = "x86_64"))]
mod cxx;

#[cfg(feature = "override")]
mod overrides {
    use super::*;

    /// Exports C functions whose body is one expression: the malloc family and
    /// glibc's `__libc_*` aliases are thin wrappers over the same few calls.
    macro_rules! export {
        ($(fn $name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)? = $body:expr;)*) => {
            $(
                #[no_mangle]
                pub extern "C" fn $name($($arg: $ty),*) $(-> $ret)? {
                    $body
                }
            )*
        };
    }

    export! {
        fn malloc(size: usize) -> Ptr = out(alloc::malloc(size));
        fn __libc_malloc(size: usize) -> Ptr = out(alloc::malloc(size));
        fn free(p: Ptr) = free_impl(p);
        fn __libc_free(p: Ptr) = free_impl(p);
        fn cfree(p: Ptr) = free_impl(p);
        fn calloc(n: usize, size: usize) -> Ptr = out(alloc::calloc(n, size));
        fn __libc_calloc(n: usize, size: usize) -> Ptr = out(alloc::calloc(n, size));
        fn realloc(p: Ptr, size: usize) -> Ptr = out(alloc::realloc(p as *mut u8, size));
        fn __libc_realloc(p: Ptr, size: usize) -> Ptr = out(alloc::realloc(p as *mut u8, size));
        fn reallocarray(p: Ptr, n: usize, size: usize) -> Ptr = reallocarray_impl(p, n, size);
        fn aligned_alloc(align: usize, size: usize) -> Ptr = memalign_impl(align, size);
        fn memalign(align: usize, size: usize) -> Ptr = memalign_impl(align, size);
        fn __libc_memalign(align: usize, size: usize) -> Ptr = memalign_impl(align, size);
        fn valloc(size: usize) -> Ptr = out(alloc::memalign(PAGE_SIZE, size));
        fn __libc_valloc(size: usize) -> Ptr = out(alloc::memalign(PAGE_SIZE, size));
        fn pvalloc(size: usize) -> Ptr = pvalloc_impl(size);
        fn __libc_pvalloc(size: usize) -> Ptr = pvalloc_impl(size);
        fn malloc_usable_size(p: Ptr) -> usize = alloc::usable_size(p as *mut u8);
    }

    // C23's sized frees: the size and alignment are not checked (the free
    // map knows the block's class from the pointer alone).
    #[cfg(target_arch = "x86_64")]
    jumps_to_free! {
        free_sized(size: usize);
        free_aligned_sized(align: usize, size: usize);
    }

    #[cfg(not(target_arch = "x86_64"))]
    export! {
        fn free_sized(p: Ptr, _size: usize) = free_impl(p);
        fn free_aligned_sized(p: Ptr, _align: usize, _size: usize) = free_impl(p);
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

    /// Accepted and ignored: slaballoc has no glibc tunables. Returns 1
    /// (success), as glibc does for the parameters it knows.
    #[no_mangle]
    pub extern "C" fn mallopt(_param: c_int, _value: c_int) -> c_int {
        1
    }

    #[no_mangle]
    #[cold]
    #[link_section = ".text_cold"]
    pub extern "C" fn malloc_trim(_pad: usize) -> c_int {
        alloc::trim() as c_int
    }

    #[no_mangle]
    #[cold]
    #[link_section = ".text_cold"]
    pub extern "C" fn malloc_stats() {
        stats::print();
    }

    #[no_mangle]
    #[cold]
    #[link_section = ".text_cold"]
    pub extern "C" fn mallinfo2() -> libc::mallinfo2 {
        let t = stats::totals();
        libc::mallinfo2 {
            arena: t.bytes_mapped as usize,
            ordblks: t.slabs_live as usize,
            smblks: t.slabs_cached as usize,
            hblks: (t.huge_allocs - t.huge_frees) as usize,
            hblkhd: alloc::huge_bytes(),
            usmblks: 0,
            fsmblks: 0,
            uordblks: t.bytes_in_use as usize,
            fordblks: t.bytes_mapped.saturating_sub(t.bytes_in_use) as usize,
            keepcost: 0,
        }
    }

    #[no_mangle]
    #[cold]
    #[link_section = ".text_cold"]
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
    #[cold]
    #[link_section = ".text_cold"]
    pub unsafe extern "C" fn malloc_info(options: c_int, stream: *mut libc::FILE) -> c_int {
        // SAFETY: the caller upholds the contract in `# Safety` above.
        unsafe {
            if options != 0 || stream.is_null() {
                os::set_errno(libc::EINVAL);
                return -1;
            }
            // No allocator lock is held here: stdio may allocate its buffer.
            let mut ok = true;
            alloc::malloc_info(&mut |b| {
                ok &= libc::fwrite(b.as_ptr() as *const c_void, 1, b.len(), stream) == b.len();
            });
            if ok {
                0
            } else {
                -1
            }
        }
    }
}
