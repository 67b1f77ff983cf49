//! # slaballoc: the DragonFly BSD slab allocator as a drop-in malloc for Linux
//!
//! `libslaballoc.so` exports the whole malloc family with glibc's semantics, so
//! `LD_PRELOAD=libslaballoc.so program` runs any program on it; C projects link
//! it with `-lslaballoc` and may call the prefixed API of `include/slaballoc.h`.
//!
//! ## The design, as a map of the modules
//!
//! Memory is carved into **slabs** of one size class each ([`size_class`]:
//! 16-byte steps to 128 B, then four classes per doubling up to 16 KiB). Slabs
//! are runs of pages ([`runs`]) inside 64 MiB **arenas**, whose out-of-line
//! metadata — a page map and a 128-byte descriptor per run — answers in O(1)
//! "is this pointer ours, which slab, which owner, which generation" without
//! touching the chunk ([`pagemap`], DragonFly's `kmemusage`). A slab is carved
//! a page at a time; once a page is carved, a 4-byte entry in the page map
//! gives `free` its class, owner and offset, so the common free reads neither
//! the descriptor nor anything the owner writes.
//!
//! Each CPU owns a **zone** ([`zone`]): per size class, the slab being carved,
//! the slabs with free chunks, and empty slabs kept whole. A thread allocates
//! from the zone of the CPU it runs on ([`cpu`]: read inline from glibc's rseq
//! area), under that zone's lock ([`sync`]); the lock is almost never
//! contended, and when it is (the holder was preempted, or a signal handler
//! re-entered) the thread simply uses another zone. "The CPU" is the kernel's
//! *concurrency id* (`mm_cid`, Linux >= 6.3) where it exists: a virtual CPU
//! number, unique among the threads running at once, that a thread keeps when
//! the scheduler moves it (so a migration no longer turns its frees into
//! remote ones or spreads its memory over zones), else the CPU number.
//!
//! In front of the zone sits the **per-CPU cache** ([`cache`]): per class, a
//! stack of up to 124 free chunks *of that zone's own slabs*, popped and pushed
//! without a lock or an atomic instruction inside restartable sequences
//! (tcmalloc's per-CPU design, in glibc's registered rseq area, or where
//! glibc registered none, one of our own: see [`cpu`]). The zone
//! refills it and takes back half of it in batches under its lock, each
//! batch moved by one section (a class's first refills on a CPU move a
//! page's worth, doubling up to half the stack, so a class a program barely
//! uses carves one page). A batch a full stack hands back goes to the
//! zone's per-class **stash** (tcmalloc's transfer cache, per zone; up to
//! 1 MiB a class, what stayed unused between two sweeps going back to the
//! slabs), whole, and the next refill takes it back whole: a working set
//! larger than the stack turns over without touching a slab.
//! Without rseq (a kernel that refuses it, valgrind) the cache stays off.
//!
//! A **local free** (the chunk's slab belongs to the current CPU) goes into
//! the cache, or back on the slab's free list. A **remote free** links the
//! chunk onto the slab's remote list with one compare-and-swap and touches
//! nothing else ([`slab`]); with the cache on, remote chunks first gather in
//! the freeing CPU's *outbox* (the same rseq section as a local free picks
//! it) and go back one list and one CAS per slab, the list's first chunk
//! carrying the addresses of the others, so that the owner reads one chunk
//! per batch when it collects them.
//! The owner is **notified only when the slab must go back on its lists**: it
//! was full and detached, and the `DETACHED` tag lives in the same atomic word
//! as the remote list head, so exactly one remote free sees it and sends the
//! message (this is DragonFly's 2010 "reduce IPI traffic" change, without the
//! lost wake-up it first had). Messages travel through per-CPU **event rings**
//! ([`ring`]: bounded lock-free queues, an overflow list that cannot overflow,
//! a futex doorbell that costs nothing unless someone sleeps). Everything else
//! is collected lazily, one atomic swap per slab, when the owner runs dry, on a
//! periodic sweep, or by the optional background reclaimer ([`reclaim`]).
//! Notified slabs return to the lists only after a quarter of their chunks have
//! come back (hysteresis), or messages would come back one per free.
//!
//! Requests above 16 KiB are **large** blocks: page runs from the same arenas,
//! kept warm after free until they stay unused for the decay time
//! (`SLABALLOC_DECAY`) or exceed a dirty-page budget, then purged oldest-first
//! (arenas are reserved `PROT_NONE` and committed as they are carved);
//! blocks above 32 MiB are **huge** mappings of their own, resized with
//! `mremap` ([`large`]). A large block of 1 MiB or more that must move to
//! grow, into another run or past the largest run into a huge mapping, has
//! its pages moved by `mremap` too, not copied (smaller ones are copied:
//! moved pages fault in again wherever the old run is reused).
//!
//! [`prof`] is the sampled heap profiler (`SLABALLOC_PROF=1`): a per-thread
//! byte countdown picks allocations, whose stacks go to a table of its own
//! and to a file at exit, read by `tools/slabprof`.
//!
//! [`alloc`] holds the entry points (with start-up and fork handling),
//! [`integrity`] tells our blocks from others and catches double frees,
//! [`foreign`] hands other allocators' pointers back to them, [`stats`] the
//! counters every layer bumps and [`report`] their sums and printed forms
//! (with the process, its memory, the options, `SLABALLOC_STATS_FILE`);
//! [`shm`] keeps the small shared page through which `slabtop`
//! (tools/slabtop) reads a running process's report: the process writes it
//! at a malloc slow path when asked ([`hook`]), so watching costs the fast
//! path nothing. [`config`] reads the `SLABALLOC_*` variables, [`os`] makes
//! every system call, [`arch`] holds the assembly (thread pointer, rseq
//! area, the cache's sections), [`fmt`] formats without allocating. [`api`]
//! is the public API that the C library (`ffi/`, every exported symbol)
//! wraps.
//!
//! The modules form layers and use only modules below them: see
//! `docs/design.md` ("The code, and how it depends on itself") and
//! `tools/check-layers.py`, which `make test` runs.
//!
//! ## Rules every module follows
//!
//! Nothing on a malloc path allocates, panics or takes a lock that a fork could
//! leave held (fork handlers take them all; see [`alloc`]). Every `unsafe`
//! block says why it is sound, every `unsafe fn` states its contract, and
//! an `unsafe fn` marks its own unsafe operations (the crate's lints); lock-free
//! code says which ordering pairs with which.
//!
//! ## Rust users
//!
//! ```
//! #[global_allocator]
//! static A: slaballoc::SlabAlloc = slaballoc::SlabAlloc;
//!
//! let v: Vec<u32> = (0..1000).collect();
//! assert_eq!(v.iter().sum::<u32>(), 499_500);
//! ```

// The loom model checks (tests/loom.rs) compile slab/ and ring.rs on their
// own; the allocator itself is not built under `--cfg loom`.
#![cfg(not(loom))]
// The allocator uses only `core` (and libc): the C library built from it
// (`slaballoc-ffi`) then carries no panic/backtrace machinery (about 210 KiB of
// code) and no dependency on libgcc_s, which every process under it paid for
// in memory (docs/experiments.md, "Memory of the library itself"). Its own
// unit tests use `std`.
#![cfg_attr(not(test), no_std)]
// Unit tests build raw-pointer fixtures (chunks, descriptors, private
// caches) in many small unsafe blocks; the library's own blocks each carry
// their SAFETY comment (clippy::undocumented_unsafe_blocks, denied for the
// workspace in Cargo.toml).
#![cfg_attr(test, allow(clippy::undocumented_unsafe_blocks))]

mod alloc;
mod arch;
mod cache;
mod cache_layout;
mod config;
mod cpu;
mod fmt;
mod foreign;
mod hook;
mod integrity;
mod large;
mod os;
mod pagemap;
mod prof;
mod reclaim;
mod report;
mod ring;
mod runs;
mod shm;
mod size_class;
mod slab;
mod starter;
mod stats;
mod sync;
mod types;
mod zone;

pub mod api;

pub use report::{totals, Totals};

/// slaballoc as Rust's global allocator.
pub struct SlabAlloc;

// SAFETY: the methods forward to the allocator, which returns blocks of at
// least the requested size and alignment, or null.
unsafe impl core::alloc::GlobalAlloc for SlabAlloc {
    #[inline]
    unsafe fn alloc(&self, l: core::alloc::Layout) -> *mut u8 {
        if l.align() <= 16 {
            alloc::malloc(l.size())
        } else {
            alloc::memalign(l.align(), l.size())
        }
    }

    #[inline]
    unsafe fn dealloc(&self, p: *mut u8, _l: core::alloc::Layout) {
        alloc::free(p)
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, l: core::alloc::Layout) -> *mut u8 {
        if l.align() <= 16 {
            alloc::calloc(1, l.size())
        } else {
            let p = alloc::memalign(l.align(), l.size());
            if !p.is_null() {
                os::memset(p, 0, l.size());
            }
            p
        }
    }

    #[inline]
    unsafe fn realloc(&self, p: *mut u8, l: core::alloc::Layout, new: usize) -> *mut u8 {
        if l.align() <= 16 {
            return alloc::realloc(p, new);
        }
        let q = alloc::memalign(l.align(), new);
        if !q.is_null() {
            os::memcpy(q, p, l.size().min(new));
            alloc::free(p);
        }
        q
    }
}

/// Library constructor: what can wait until the environment exists. Malloc
/// itself never depends on it (ld.so calls malloc before any constructor).
#[ctor::ctor]
fn slaballoc_init() {
    config::load();
    if !config::STARTER.load(core::sync::atomic::Ordering::Relaxed) {
        starter::retire_now();
    }
    // The zones, the arena and the per-CPU caches start on the first
    // malloc the starter heap does not serve (`starter`): a short process
    // may never need them. What is configured to run from the start needs
    // them now.
    if config::PROF.load(core::sync::atomic::Ordering::Relaxed)
        || config::BACKGROUND.load(core::sync::atomic::Ordering::Relaxed) == config::BG_EAGER
    {
        alloc::ensure_init();
    }
    prof::init(alloc::free);
    if config::STATS.load(core::sync::atomic::Ordering::Relaxed) != 0 {
        report::keep_stderr();
    }
    shm::init();
    hook::set(live_view, shm::fork_child);
    match config::BACKGROUND.load(core::sync::atomic::Ordering::Relaxed) {
        config::BG_EAGER => reclaim::start_now(),
        config::BG_NEVER => reclaim::disable(),
        _ => {}
    }
}

/// The slow-path hook (`hook`): the live view's snapshot and file, and a
/// heap profile if `slabtop --prof-dump` asked for one.
fn live_view() {
    shm::poll();
    if shm::take_prof_request() {
        prof::dump_now();
    }
}

/// At exit: the report, if asked for; the live-view file goes. (A process
/// that ends by `_exit` or a signal runs no destructor: no report, and
/// `slabtop` removes its file.)
#[ctor::dtor]
fn slaballoc_exit() {
    prof::dump_at_exit();
    if let Some(f) = config::stats_format() {
        report::print_at_exit(f);
    }
    shm::remove();
}
