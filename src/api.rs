//! The allocator's public entry points with C semantics: what the FFI crate
//! (`slaballoc-ffi`, every exported symbol) wraps, and what Rust code that
//! wants malloc's contract (rather than [`GlobalAlloc`]'s) may call.
//!
//! Sizes and alignments follow glibc: `malloc(0)` returns a unique pointer,
//! a failure returns null with `errno` set to `ENOMEM`, `free(null)` does
//! nothing, and a pointer that slaballoc did not hand out is either passed to
//! the next allocator in the process (glibc's, for blocks it made) or
//! reported and the process stopped, never written through.
//!
//! [`GlobalAlloc`]: core::alloc::GlobalAlloc

pub use crate::alloc::{calloc, free, malloc, memalign, realloc, usable_size};
pub use crate::cpu::{nzones, MAX_ZONES};
pub use crate::os::PAGE_SIZE;
pub use crate::report::{
    classes, cpu as cpu_totals, print, report, totals, ClassTotals, CpuTotals, Format, Totals,
};
pub use crate::size_class::NCLASSES;
pub use crate::types::{kfree, kmalloc, sa_malloc_type, type_usage, SA_NOWAIT, SA_WAITOK, SA_ZERO};

/// glibc's `malloc_trim`: hands free memory back to the system (cached
/// slabs, dirty large runs, the per-CPU caches of idle CPUs). Returns
/// whether anything was released.
#[cold]
#[link_section = ".text_cold"]
pub fn trim() -> bool {
    let before = crate::report::totals();
    let purged = crate::reclaim::pass(true);
    let after = crate::report::totals();
    purged > 0 || after.slabs_live < before.slabs_live
}

/// Bytes in huge blocks (their own mappings), for `mallinfo2`'s `hblkhd`.
pub fn huge_bytes() -> usize {
    crate::stats::GLOBAL
        .huge_bytes
        .load(core::sync::atomic::Ordering::Relaxed)
}

/// glibc's `malloc_info` document (an XML summary of the counters), handed
/// to `sink` in pieces. No allocator lock is held while `sink` runs.
#[cold]
#[link_section = ".text_cold"]
pub fn malloc_info(sink: &mut dyn FnMut(&[u8])) {
    let t = crate::report::totals();
    let mut b = crate::fmt::Buf::<1024>::new();
    b.str("<malloc version=\"slaballoc-1\">\n<total type=\"mapped\" size=\"")
        .u64(t.bytes_mapped)
        .str("\"/>\n<total type=\"dirty\" size=\"")
        .u64(t.bytes_dirty)
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
    sink(b.bytes());
}

/// The calling thread's `errno`.
pub fn errno() -> i32 {
    crate::os::errno()
}

/// Sets the calling thread's `errno`.
pub fn set_errno(e: i32) {
    crate::os::set_errno(e)
}

/// Reports `why` on stderr as slaballoc's fatal error and aborts the process
/// (never returns, never allocates): for the C library's panic handler.
pub fn fatal(why: &str) -> ! {
    crate::fmt::fatal(why)
}

/// The next definition of the C symbol `name` after this library (for the
/// C++ operators: the C++ runtime's, which run the new-handler loop and
/// throw `std::bad_alloc`), or null where there is none or the lookup found
/// our own. Takes the loader's lock; may allocate on its error paths, so
/// the caller holds no allocator lock.
pub fn next_definition(name: &core::ffi::CStr) -> *mut core::ffi::c_void {
    crate::foreign::next_definition(name)
}

/// Writes the live sampled heap now (`SLABALLOC_PROF=1`): a file named by
/// `SLABALLOC_PROF_PREFIX`, the pid and a sequence number. False if
/// profiling is off or the file could not be written. Takes no allocator
/// lock but the profiler's own; from any thread, not from a signal handler.
pub fn prof_dump() -> bool {
    crate::prof::dump_now()
}
