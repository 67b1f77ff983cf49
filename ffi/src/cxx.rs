//! C++'s replaceable `operator new` and `operator delete` (x86-64).
//!
//! The twenty global forms, by their Itanium C++ ABI names, as glibc's
//! peers (jemalloc, tcmalloc, mimalloc, snmalloc) all export them. Without
//! them a C++ program's `new` runs the C++ runtime's `operator new`, which
//! calls `malloc` through two PLT jumps, and its `delete` the runtime's
//! `operator delete`, which calls `free`: mimalloc-bench's `alloc-test`
//! ran 0.952 (one thread) and 0.965 (two) of that time with `new` and
//! `delete` straight into the allocator, our `cxx_objects` 0.956
//! (docs/experiments.md, twenty-seventh session).
//!
//! * Every `operator delete` is `free` (the sized and aligned forms too:
//!   the free map finds a block's class and start from the pointer alone),
//!   with its checks: a double or interior `delete` is reported as a bad
//!   `free` is.
//! * Every `operator new` is `malloc` (the aligned forms `aligned_alloc`'s
//!   rules) in a stub of assembly, and when that returns null, the stub
//!   jumps to the next definition of the same form (the C++ runtime's,
//!   found with `dlsym(RTLD_NEXT)` at the first failure), with the
//!   arguments as they came. That definition runs the standard's loop:
//!   `malloc` (ours) again, the new-handler, `std::bad_alloc` thrown, or,
//!   for the `nothrow` forms, caught and null returned. So the standard's
//!   out-of-memory behaviour is the runtime's own, and no exception ever
//!   unwinds through a frame of ours: the stubs are naked functions, with
//!   no frame left when they jump (the library is built `panic = abort`,
//!   and an exception unwinding into its Rust frames would abort the
//!   process). Where no runtime follows us (a static program), a throwing
//!   form reports the failure and aborts, as an uncaught `bad_alloc`
//!   would, and a `nothrow` form returns null.
//!
//! Only on x86-64, where the stubs are written; elsewhere the runtime's
//! operators call our `malloc` and `free`, as before.

use super::{memalign_impl, out, Ptr};
use core::ffi::CStr;
use core::sync::atomic::{AtomicUsize, Ordering};
use slaballoc::api;

// ---- operator delete: free ----

// Every form jumps to `free` (`jumps_to_free!`): the two of one argument
// too, so that `free`'s address keeps its own name in profiles.
jumps_to_free! {
    _ZdlPv();
    _ZdaPv();
    _ZdlPvm(size: usize);
    _ZdaPvm(size: usize);
    _ZdlPvRKSt9nothrow_t(tag: Ptr);
    _ZdaPvRKSt9nothrow_t(tag: Ptr);
    _ZdlPvSt11align_val_t(align: usize);
    _ZdaPvSt11align_val_t(align: usize);
    _ZdlPvmSt11align_val_t(size: usize, align: usize);
    _ZdaPvmSt11align_val_t(size: usize, align: usize);
    _ZdlPvSt11align_val_tRKSt9nothrow_t(align: usize, tag: Ptr);
    _ZdaPvSt11align_val_tRKSt9nothrow_t(align: usize, tag: Ptr);
}

// ---- operator new: malloc, else the runtime's ----

/// The eight forms of `operator new`: form `w` is the scalar (`_Znw...`)
/// or, for odd `w`, the array (`_Zna...`) form of name `w / 2` here
/// (NUL-terminated one after the other; the `nothrow` forms are 2, 3, 6
/// and 7). Only the scalar names are stored, and none as a `&CStr` table:
/// 120 bytes less of read-only data and relocations kept the library's
/// first segment at seven pages, all of which every process maps.
const NAMES: &[u8] = b"_Znwm\0_ZnwmRKSt9nothrow_t\0_ZnwmSt11align_val_t\0\
_ZnwmSt11align_val_tRKSt9nothrow_t\0";
const FORMS: usize = 8;

/// Writes the name of form `w` (< FORMS) into `buf`, NUL-terminated.
fn form_name(w: usize, buf: &mut [u8; 40]) -> &CStr {
    let mut start = 0;
    let mut k = 0;
    for (i, &b) in NAMES.iter().enumerate() {
        if b == 0 {
            if k == w / 2 {
                break;
            }
            k += 1;
            start = i + 1;
        }
    }
    let name = NAMES.get(start..).unwrap_or(&[]);
    for (d, &c) in buf.iter_mut().zip(name) {
        *d = c;
    }
    if w % 2 == 1 {
        buf[3] = b'a';
    }
    CStr::from_bytes_until_nul(buf).unwrap_or(c"")
}

/// Each form's fallback, once found (0 until its first failure). The
/// Release store in `fallback` publishes the address it looked up; the
/// Acquire load there pairs with it. Two first failures at once both look
/// the same symbol up and store the same address.
static NEXT: [AtomicUsize; FORMS] = [const { AtomicUsize::new(0) }; FORMS];

/// The allocation of the plain forms (the stubs call it).
extern "C" fn alloc_plain(size: usize) -> Ptr {
    out(api::malloc(size))
}

/// The allocation of the aligned forms: `aligned_alloc(align, size)` (the
/// standard requires a power of two; another is rounded up, as
/// `aligned_alloc` does).
extern "C" fn alloc_aligned(size: usize, align: usize) -> Ptr {
    memalign_impl(align, size)
}

/// A `nothrow` form's fallback where no C++ runtime follows us.
#[cold]
#[link_section = ".text_cold"]
extern "C" fn null_new() -> Ptr {
    core::ptr::null_mut()
}

/// Where the stub of form `which` jumps after a null allocation: the next
/// definition of the form. Never null: without one, a `nothrow` form gets
/// `null_new`, and a throwing form ends the process here.
#[cold]
#[link_section = ".text_cold"]
extern "C" fn fallback(which: u32) -> usize {
    let w = which as usize % FORMS;
    let f = NEXT[w].load(Ordering::Acquire);
    if f != 0 {
        return f;
    }
    let mut name = [0u8; 40];
    let mut f = api::next_definition(form_name(w, &mut name)) as usize;
    if f == 0 {
        if matches!(w, 2 | 3 | 6 | 7) {
            f = null_new as *const () as usize;
        } else {
            api::fatal("operator new: out of memory, and no C++ runtime to throw std::bad_alloc");
        }
    }
    NEXT[w].store(f, Ordering::Release);
    f
}

/// A form of `operator new`: `$alloc` called with the stub's arguments as
/// they came, `$save` and `$restore` keeping the registers the fallback
/// must see (all of the form's arguments) across that call, with the
/// stack 16-byte aligned at it: one push for the forms of one argument,
/// three for the others (`rdx`, where a form has no third argument, is
/// saved for the alignment). The fallback's call keeps all three.
///
/// Soundness of the naked body (the attribute is `unsafe`): it follows the
/// System V ABI by hand. It touches only `rdi`, `rsi`, `rdx` (the
/// arguments, restored before the jump) and `rax` (the result), none of
/// them callee-saved; every push has its pop on both paths, so `ret`
/// returns to the caller and the jump leaves the stack as the caller
/// made it, the fallback then seeing the original arguments and return
/// address; at each `call` the stack is 16-byte aligned (8 on entry, plus
/// one or three pushes); `alloc_plain`, `alloc_aligned` and `fallback`
/// are `extern "C"`. The CFI directives describe each push and pop, so
/// that an unwinder (the heap profiler's `backtrace()`) can step out of
/// the stub from within `$alloc`.
macro_rules! new_form {
    ($name:ident($($arg:ident: $ty:ty),*), $which:literal, $alloc:ident,
     [$($save:literal),*], [$($restore:literal),*]) => {
        #[no_mangle]
        #[unsafe(naked)]
        pub extern "C" fn $name($($arg: $ty),*) -> Ptr {
            core::arch::naked_asm!(
                ".cfi_startproc",
                $($save, ".cfi_adjust_cfa_offset 8",)*
                "call {alloc}",
                $($restore, ".cfi_adjust_cfa_offset -8",)*
                "test rax, rax",
                "jz 2f",
                "ret",
                "2:",
                "push rdi",
                ".cfi_adjust_cfa_offset 8",
                "push rsi",
                ".cfi_adjust_cfa_offset 8",
                "push rdx",
                ".cfi_adjust_cfa_offset 8",
                "mov edi, {which}",
                "call {fallback}",
                "pop rdx",
                ".cfi_adjust_cfa_offset -8",
                "pop rsi",
                ".cfi_adjust_cfa_offset -8",
                "pop rdi",
                ".cfi_adjust_cfa_offset -8",
                "jmp rax",
                ".cfi_endproc",
                alloc = sym $alloc,
                fallback = sym fallback,
                which = const $which,
            )
        }
    };
}

macro_rules! one {
    ($name:ident($($arg:ident: $ty:ty),*), $which:literal, $alloc:ident) => {
        new_form!($name($($arg: $ty),*), $which, $alloc, ["push rdi"], ["pop rdi"]);
    };
}

macro_rules! three {
    ($name:ident($($arg:ident: $ty:ty),*), $which:literal, $alloc:ident) => {
        new_form!(
            $name($($arg: $ty),*), $which, $alloc,
            ["push rdi", "push rsi", "push rdx"],
            ["pop rdx", "pop rsi", "pop rdi"]
        );
    };
}

one!(_Znwm(size: usize), 0, alloc_plain);
one!(_Znam(size: usize), 1, alloc_plain);
three!(_ZnwmRKSt9nothrow_t(size: usize, tag: Ptr), 2, alloc_plain);
three!(_ZnamRKSt9nothrow_t(size: usize, tag: Ptr), 3, alloc_plain);
three!(_ZnwmSt11align_val_t(size: usize, align: usize), 4, alloc_aligned);
three!(_ZnamSt11align_val_t(size: usize, align: usize), 5, alloc_aligned);
three!(_ZnwmSt11align_val_tRKSt9nothrow_t(size: usize, align: usize, tag: Ptr), 6, alloc_aligned);
three!(_ZnamSt11align_val_tRKSt9nothrow_t(size: usize, align: usize, tag: Ptr), 7, alloc_aligned);
