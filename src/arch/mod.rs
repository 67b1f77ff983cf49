//! Architecture: what only assembly can do, behind one set of functions.
//!
//! * `thread_pointer`: a unique id of the calling thread in one instruction;
//! * `glibc_rseq_offset`, `own_area_offset`, `read_rseq_i32`: where the
//!   thread's rseq area is (glibc's, or our own in static TLS) and what the
//!   kernel wrote in it (the CPU number, the concurrency id);
//! * `RSEQ_SIG`, and `Caches` with the restartable sequences of the per-CPU
//!   cache (pop, push, bulk moves), on the layout of `cache_layout`.
//!
//! x86-64 has them all (`x86_64.rs`, the zone's sections in
//! `x86_64/bulk.rs`). Elsewhere `generic.rs` gives the same
//! functions without rseq: the thread id from `pthread_self`, no rseq area,
//! sections that always fail, so the cache stays off and every malloc takes
//! its zone's lock. This is the one place with an architecture `cfg`.

#[cfg(target_arch = "x86_64")]
mod x86_64;
#[cfg(target_arch = "x86_64")]
pub use x86_64::*;

#[cfg(not(target_arch = "x86_64"))]
mod generic;
#[cfg(not(target_arch = "x86_64"))]
pub use generic::*;

/// A set of per-CPU caches: `n` blocks of `CPU_STRIDE` bytes at `base`, used
/// through the rseq area at `fs:[off]`. The process has one (`cache::state`,
/// from `cache_layout::ROOT`); tests make private ones. The rseq sections are
/// its methods, one set per architecture file; `cache` adds the ones that
/// need no section.
#[derive(Clone, Copy)]
pub struct Caches {
    pub off: isize,
    pub n: u32,
    pub base: usize,
}
