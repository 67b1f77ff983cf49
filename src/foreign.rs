//! Pointers that are not ours: blocks from glibc's own malloc (libraries opened
//! with RTLD_DEEPBIND, code calling `__libc_malloc` of a different link). We
//! never write through them; glibc's functions, found with
//! `dlsym(RTLD_NEXT, ...)` outside any lock of ours, handle them, including
//! reporting garbage exactly as they would without us.
//!
//! Each is looked up the first time it is needed, not at start-up: the
//! three lookups cost every process 5 us and a page fault (a spawner
//! alternating builds, docs/experiments.md), and most processes never meet
//! a foreign pointer. A lookup from a signal handler could wait on the
//! loader's lock, but so could the glibc function it finds, which takes
//! glibc's malloc locks: freeing a foreign block in a signal handler was
//! never safe, with or without the lookup.

use crate::os;
use crate::stats::GLOBAL;
use core::ptr;
use core::sync::atomic::{AtomicPtr, Ordering};

static FREE: AtomicPtr<libc::c_void> = AtomicPtr::new(ptr::null_mut());
static USABLE: AtomicPtr<libc::c_void> = AtomicPtr::new(ptr::null_mut());
static INFO: AtomicPtr<libc::c_void> = AtomicPtr::new(ptr::null_mut());

fn resolve(slot: &AtomicPtr<libc::c_void>, name: &core::ffi::CStr) -> *mut libc::c_void {
    let f = slot.load(Ordering::Acquire);
    if !f.is_null() {
        return f;
    }
    let f = os::next_symbol(name);
    slot.store(f, Ordering::Release);
    f
}

/// The next allocator's function `name`, or None if there is none (a
/// static program) or the lookup found us again (a definition in the
/// object that holds this code: our own exported symbol).
#[cold]
#[link_section = ".text_cold"]
fn next(slot: &AtomicPtr<libc::c_void>, name: &core::ffi::CStr) -> Option<*mut libc::c_void> {
    not_ours(resolve(slot, name))
}

/// `f`, a looked-up function, unless it is null or in our own object.
#[inline(always)]
fn not_ours(f: *mut libc::c_void) -> Option<*mut libc::c_void> {
    let here = next as fn(_, _) -> _ as *const ();
    (!f.is_null() && !os::same_object(f as *const (), here)).then_some(f)
}

/// `next` without a cache (the caller keeps its own): the next definition
/// of `name`, or null. Inlined into its caller (the C++ operators'
/// fallback, which is cold itself).
#[inline(always)]
pub fn next_definition(name: &core::ffi::CStr) -> *mut libc::c_void {
    not_ours(os::next_symbol(name)).unwrap_or(ptr::null_mut())
}

/// Checks that `p`, which is not in our memory, may belong to the next
/// allocator: there is one, and it has ever held memory (glibc's
/// `mallinfo2`: bytes in its arenas or in mmapped chunks). Otherwise no
/// allocator made `p` (a stack address, a private mapping...): report it
/// ourselves, naming the pointer, instead of letting glibc's free
/// dereference garbage (it crashes on a stack address).
#[cold]
#[link_section = ".text_cold"]
fn check(what: &str, p: *mut u8) {
    let Some(_) = next(&FREE, c"free") else {
        crate::fmt::fatal_pointer(what, p, "invalid pointer (not allocated by slaballoc)");
    };
    if let Some(info) = next(&INFO, c"mallinfo2") {
        // SAFETY: `info` is the next definition of mallinfo2, with its
        // signature; it takes glibc's own locks, none of ours is held.
        let m = unsafe {
            let info: extern "C" fn() -> libc::mallinfo2 = core::mem::transmute(info);
            info()
        };
        if m.arena == 0 && m.hblkhd == 0 {
            crate::fmt::fatal_pointer(
                what,
                p,
                "invalid pointer (not allocated by slaballoc, and glibc's malloc holds no memory)",
            );
        }
    }
}

pub fn free(p: *mut u8) {
    GLOBAL.foreign_frees.fetch_add(1, Ordering::Relaxed);
    check("free", p);
    if let Some(f) = next(&FREE, c"free") {
        // SAFETY: f is the next definition of `free`, with free's signature.
        unsafe {
            let f: extern "C" fn(*mut libc::c_void) = core::mem::transmute(f);
            f(p as *mut libc::c_void);
        }
    }
}

pub fn usable_size(p: *mut u8) -> usize {
    check("malloc_usable_size", p);
    let Some(f) = next(&USABLE, c"malloc_usable_size") else {
        return 0;
    };
    // SAFETY: f is the next definition of `malloc_usable_size`.
    unsafe {
        let f: extern "C" fn(*mut libc::c_void) -> usize = core::mem::transmute(f);
        f(p as *mut libc::c_void)
    }
}
