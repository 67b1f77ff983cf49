//! Sampled heap profiling (`SLABALLOC_PROF=1`), after tcmalloc's sampler and
//! heap profiler.
//!
//! **Which allocations.** Each thread counts the bytes it requests down from
//! an interval drawn from an exponential distribution whose mean is
//! `SLABALLOC_PROF_SAMPLE` (512 KiB by default); the allocation that takes
//! the count below zero is sampled and a new interval is drawn. An
//! allocation of `s` bytes is then sampled with probability
//! `1 - exp(-s / mean)` whatever happened before it (the gaps between sampled
//! *bytes* are memoryless), so dividing by that probability gives unbiased
//! estimates of live bytes and counts per site: the `heap_v2` scaling that
//! pprof and `tools/slabprof` apply to the dumps.
//!
//! **No cost when off.** The small-size test at the top of `malloc` compares
//! against the small limit (`cache::below_small_limit`: a word in the cache
//! line the fast path reads anyway) instead of a constant. With profiling on
//! that limit is 0: every malloc takes the branch it already has to
//! `malloc_big`, which sends small sizes here (one predictable branch, no
//! new instruction on the hit path when off).
//!
//! **Free knows cheaply.** A sampled small allocation is served as a page
//! run of its own (a *large* block, as tcmalloc gives sampled objects spans
//! of their own), so every sampled block is large or huge and the small free
//! fast path never looks at the profiler; only frees of large and huge blocks
//! probe the sample table while profiling is on. At the default rate that is
//! one page per 512 KiB sampled, well under 1 % of the heap.
//!
//! **Stacks without allocating.** glibc's `backtrace()` (the DWARF unwinder
//! in libgcc_s, with the frames on our stack) records the call stack; its
//! first call dlopens libgcc_s, which allocates, so `init` makes that call
//! from the library constructor, before sampling is switched on.
//!
//! **The table** lives in its own mapping: an open-addressed index from block
//! address to a slot in a pool of samples. One `OwnerLock` guards it; it
//! never nests with an allocator lock (blocks are allocated before and freed
//! after it is held), fork handlers take it (`fork_prepare`), and a signal
//! handler that frees a sampled block while its own thread holds the lock
//! parks the block on a lock-free list (`PARKED`) that the next lock holder
//! drains; a sample it would record is dropped (counted).
//!
//! **What is counted**: every malloc, calloc, memalign and realloc that
//! allocates anew, by requested bytes. A realloc that grows or shrinks a
//! block in place is not counted (the block keeps its sample, if any, with
//! its old size); a sampled block is never resized in place (`realloc`
//! moves it, so that its table entry follows it).
//!
//! **Dumps** (gperftools' heap profile format, `heap_v2`, which pprof reads,
//! with `/proc/self/maps` appended for symbolisation): at exit
//! (`PREFIX.PID.heap`), on a new peak of sampled live bytes with
//! `SLABALLOC_PROF_PEAK=1` (`PREFIX.PID.peak.N.heap`), and on demand through
//! `dump_now` (`PREFIX.PID.N.heap`). `PREFIX` is `SLABALLOC_PROF_PREFIX`, by
//! default `slaballoc` in the current directory.

use crate::os;
use crate::sync::{Busy, OwnerLock};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// Frames kept per sample (our own frames included; the tool drops them).
pub const MAX_FRAMES: usize = 64;
/// Live samples the table holds; more are dropped (counted). At the default
/// rate that is 16 GiB of live sampled heap.
const POOL: usize = 1 << 15;
/// Index slots: twice the pool, so probes stay short.
const INDEX: usize = POOL * 2;
/// Index slot states besides a pool position + 2.
const EMPTY: u32 = 0;
const TOMB: u32 = 1;

// ---- configuration (`config`'s PROF_* settings, read at init and after) ----

use crate::config::{PROF as WANTED, PROF_PEAK as PEAK, PROF_SAMPLE as SAMPLE};

fn prefix() -> &'static [u8] {
    crate::config::prof_prefix()
}

/// True once sampling is on. Read on slow paths only.
static ON: AtomicBool = AtomicBool::new(false);

#[inline(always)]
pub fn on() -> bool {
    ON.load(Ordering::Relaxed)
}

mod dump;
mod sampler;
use dump::{write_dump, Kind};

use sampler::estimate;
pub use sampler::tick;

// ---- the table ----

#[repr(C)]
struct Sample {
    addr: usize,
    /// Requested bytes; for a free pool slot, the next free slot + 1.
    size: usize,
    nframes: usize,
    frames: [usize; MAX_FRAMES],
}

struct Table {
    /// `INDEX` u32 slots: EMPTY, TOMB, or pool position + 2.
    index: *mut u32,
    pool: *mut Sample,
    /// Pool slots ever used (the ones past it are fresh).
    used: usize,
    /// Head of the free pool slots (position + 1; 0: none).
    free: usize,
    live: usize,
    tombs: usize,
    /// Sum of the requested sizes of the live samples.
    live_bytes: u64,
    /// The live bytes they stand for (`estimate`), and its value at the
    /// last peak dump.
    live_est: u64,
    peak_dumped: u64,
    dumps: u64,
    peak_dumps: u64,
}

struct Locked {
    lock: OwnerLock,
    t: UnsafeCell<Table>,
}

// SAFETY: `t` is only touched by the holder of `lock`.
unsafe impl Sync for Locked {}

static TABLE: Locked = Locked {
    lock: OwnerLock::new(),
    t: UnsafeCell::new(Table::empty(core::ptr::null_mut(), core::ptr::null_mut())),
};

impl Table {
    /// A table with no samples over the index and pool at these addresses.
    const fn empty(index: *mut u32, pool: *mut Sample) -> Table {
        Table {
            index,
            pool,
            used: 0,
            free: 0,
            live: 0,
            tombs: 0,
            live_bytes: 0,
            live_est: 0,
            peak_dumped: 0,
            dumps: 0,
            peak_dumps: 0,
        }
    }
}

/// Samples dropped: table full, or the lock re-entered by a signal handler.
pub static DROPPED: AtomicU64 = AtomicU64::new(0);
/// Samples taken since start.
pub static SAMPLES: AtomicU64 = AtomicU64::new(0);

/// Blocks freed by a signal handler while its thread held the table lock:
/// a push-only Treiber stack linked through the blocks' first words (they
/// are ours and dead), emptied whole by `drain_parked` with one swap, so no
/// ABA. Release on push pairs with the Acquire of the swap.
static PARKED: AtomicUsize = AtomicUsize::new(0);

/// Why `with_table` did not run its function.
#[derive(Debug, PartialEq, Eq)]
enum Skip {
    /// This thread holds the lock already (a signal handler interrupted it).
    Reentrant,
    /// `init` has not set the table up (as seen under the lock): no sample
    /// exists yet.
    NotReady,
}

/// Runs `f` on the table under its lock. Frees parked blocks afterwards.
///
/// `init` sets the table's mappings under the lock too, so a caller that
/// got here by seeing sampling on through a Relaxed load (`small_limit`,
/// `on`) still reads them in order: the lock's Acquire pairs with the
/// Release of `init`'s unlock, or it finds them null and skips.
fn with_table<R>(f: impl FnOnce(&mut Table) -> R) -> Result<R, Skip> {
    if TABLE.lock.lock() == Err(Busy::Reentrant) {
        return Err(Skip::Reentrant);
    }
    // SAFETY: we hold the lock, the only way to reach `t`.
    let t = unsafe { &mut *TABLE.t.get() };
    if t.index.is_null() {
        TABLE.lock.unlock();
        return Err(Skip::NotReady);
    }
    let r = f(t);
    TABLE.lock.unlock();
    drain_parked();
    Ok(r)
}

fn drain_parked() {
    if PARKED.load(Ordering::Relaxed) == 0 {
        return;
    }
    let mut p = PARKED.swap(0, Ordering::Acquire);
    while p != 0 {
        // SAFETY: `p` was pushed by `park`, which wrote its successor in the
        // block's first word before publishing it (Release, paired with the
        // Acquire of the swap above).
        let next = unsafe { *(p as *const usize) };
        forget_and_free(p as *mut u8);
        p = next;
    }
}

fn park(p: *mut u8) {
    let mut head = PARKED.load(Ordering::Relaxed);
    loop {
        // SAFETY: `p` is a block of ours (large or huge, at least a page)
        // that the program just freed: nobody else reads it now.
        unsafe { *(p as *mut usize) = head };
        match PARKED.compare_exchange_weak(head, p as usize, Ordering::Release, Ordering::Relaxed) {
            Ok(_) => return,
            Err(h) => head = h,
        }
    }
}

fn hash(addr: usize) -> usize {
    // Blocks are page-aligned: drop those bits, then mix.
    ((addr >> 12) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) as usize >> 16
}

impl Table {
    /// The index slot holding `addr`, if any.
    fn find(&self, addr: usize) -> Option<usize> {
        let mut i = hash(addr) % INDEX;
        for _ in 0..INDEX {
            // SAFETY: i < INDEX, and the index has INDEX slots.
            let v = unsafe { *self.index.add(i) };
            if v == EMPTY {
                return None;
            }
            // SAFETY: v - 2 is a used pool position.
            if v != TOMB && unsafe { (*self.pool.add(v as usize - 2)).addr } == addr {
                return Some(i);
            }
            i = (i + 1) % INDEX;
        }
        None
    }

    /// Puts pool position `pos` (whose sample's address is `addr`) in the index.
    fn place(&mut self, addr: usize, pos: usize) {
        let mut i = hash(addr) % INDEX;
        loop {
            // SAFETY: i < INDEX.
            let slot = unsafe { &mut *self.index.add(i) };
            if *slot == EMPTY || *slot == TOMB {
                if *slot == TOMB {
                    self.tombs -= 1;
                }
                *slot = pos as u32 + 2;
                return;
            }
            i = (i + 1) % INDEX;
        }
    }

    /// Removes the sample at index slot `i`.
    #[cold]
    #[link_section = ".text_cold"]
    fn remove_at(&mut self, i: usize) {
        // SAFETY: i < INDEX holds a pool position + 2.
        unsafe {
            let pos = *self.index.add(i) as usize - 2;
            let s = &mut *self.pool.add(pos);
            self.live_bytes -= s.size as u64;
            self.live_est -= estimate(s.size);
            s.addr = 0;
            s.size = self.free;
            self.free = pos + 1;
            *self.index.add(i) = TOMB;
        }
        self.live -= 1;
        self.tombs += 1;
        if self.tombs > INDEX / 4 {
            self.rebuild();
        }
    }

    /// Clears the tombstones: empties the index and places every live sample.
    fn rebuild(&mut self) {
        // SAFETY: the index is INDEX u32 slots of our mapping.
        unsafe { core::ptr::write_bytes(self.index, 0, INDEX) };
        self.tombs = 0;
        for pos in 0..self.used {
            // SAFETY: pos < used <= POOL.
            let a = unsafe { (*self.pool.add(pos)).addr };
            if a != 0 {
                self.place(a, pos);
            }
        }
    }

    /// Records a sample; false if the pool is full.
    fn insert(&mut self, addr: usize, size: usize, frames: &[usize]) -> bool {
        if let Some(i) = self.find(addr) {
            // A block we never saw freed (freed in a way that bypassed us):
            // the new one replaces it.
            self.remove_at(i);
        }
        let pos = if self.free != 0 {
            let pos = self.free - 1;
            // SAFETY: pos is a free pool slot; its `size` links the next.
            self.free = unsafe { (*self.pool.add(pos)).size };
            pos
        } else if self.used < POOL {
            self.used += 1;
            self.used - 1
        } else {
            return false;
        };
        // SAFETY: pos < POOL, a slot no live sample uses.
        let s = unsafe { &mut *self.pool.add(pos) };
        s.addr = addr;
        s.size = size;
        s.nframes = frames.len();
        s.frames[..frames.len()].copy_from_slice(frames);
        self.place(addr, pos);
        self.live += 1;
        self.live_bytes += size as u64;
        self.live_est += estimate(size);
        true
    }
}

// ---- set-up ----

/// glibc's `backtrace(3)`: fills `buf` with the return addresses of the
/// calling stack, innermost first; returns how many.
///
/// # Safety
/// `buf` has room for `buf.len()` entries (a slice: always true). The first
/// call in the process allocates (see the module doc).
unsafe fn backtrace(buf: &mut [*mut libc::c_void]) -> usize {
    // Declared in here, so that cbindgen leaves it out of our header.
    extern "C" {
        fn backtrace(buf: *mut *mut libc::c_void, size: libc::c_int) -> libc::c_int;
    }
    // SAFETY: `buf` is valid for `buf.len()` writes.
    let n = unsafe { backtrace(buf.as_mut_ptr(), buf.len() as libc::c_int) };
    (n.max(0) as usize).min(buf.len())
}

/// Turns sampling on if `SLABALLOC_PROF=1` asked for it. Called from the
/// library constructor after `config::load`, with no lock of ours held;
/// `free` is the allocator's, for blocks freed while the table was busy.
pub fn init(free: fn(*mut u8)) {
    if !WANTED.load(Ordering::Relaxed) || on() {
        return;
    }
    FREE.store(free as usize, Ordering::Relaxed);
    let index_bytes = INDEX * 4;
    let pool_bytes = POOL * core::mem::size_of::<Sample>();
    let m = os::map(index_bytes + pool_bytes);
    if m.is_null() {
        crate::fmt::warn(&[b"SLABALLOC_PROF: no memory for the sample table; profiling off"]);
        return;
    }
    // Under the lock: see `with_table`. The constructor runs once, nothing
    // of ours is held, so this cannot be re-entry.
    let _ = TABLE.lock.lock();
    // SAFETY: we hold the table lock; the mapping is fresh (zero: every
    // index slot EMPTY) and holds both parts.
    unsafe {
        let t = &mut *TABLE.t.get();
        t.index = m as *mut u32;
        t.pool = m.add(index_bytes) as *mut Sample;
    }
    TABLE.lock.unlock();
    // The first backtrace() dlopens libgcc_s (it allocates: through us, on
    // the normal paths, since ON is still false).
    let mut frames = [core::ptr::null_mut(); 4];
    // SAFETY: this is the first call, from the constructor, with no lock of
    // ours held: its allocations take the normal paths.
    unsafe { backtrace(&mut frames) };
    // Release: the table pointers above are visible to whoever sees ON
    // (its loads are Relaxed but come after the lock's Acquire).
    ON.store(true, Ordering::Release);
    crate::cache::stop_small_path();
}

// ---- the allocation side ----

/// Records the block `p` of `size` requested bytes as sampled (the caller's
/// `tick` said so): its call stack goes into the table.
#[cold]
#[inline(never)]
#[link_section = ".text_cold"]
pub fn record(p: *mut u8, size: usize) {
    SAMPLES.fetch_add(1, Ordering::Relaxed);
    let mut raw = [core::ptr::null_mut::<libc::c_void>(); MAX_FRAMES];
    // SAFETY: backtrace's first call (which allocates) was made by `init`;
    // this one only unwinds into `raw`, on our stack.
    let n = unsafe { backtrace(&mut raw) };
    let mut frames = [0usize; MAX_FRAMES];
    for (f, r) in frames.iter_mut().zip(&raw[..n]) {
        *f = *r as usize;
    }
    let recorded = with_table(|t| {
        if !t.insert(p as usize, size, &frames[..n]) {
            return false;
        }
        // A new high of the estimated live heap, a quarter over the last
        // peak dump (and past 64 samples' worth, so that start-up does not
        // write a file per sample): a heap growing to N bytes writes about
        // log(N / 64 rate) / log(1.25) files.
        let floor = 64 * SAMPLE.load(Ordering::Relaxed);
        if PEAK.load(Ordering::Relaxed)
            && t.live_est >= floor
            && t.live_est > t.peak_dumped + t.peak_dumped / 4
        {
            t.peak_dumped = t.live_est;
            t.peak_dumps += 1;
            let n = t.peak_dumps;
            write_dump(t, Kind::Peak(n));
        }
        true
    });
    if recorded != Ok(true) {
        DROPPED.fetch_add(1, Ordering::Relaxed);
    }
}

// ---- the free side ----

/// A large or huge block `p` is being freed or moved while profiling: drop
/// its sample, if it has one. Returns false if `p` must not be freed now (a
/// signal handler interrupted this thread inside the table: `p` is parked
/// and freed by the next holder of the lock).
#[cold]
#[link_section = ".text_cold"]
pub fn on_free(p: *mut u8) -> bool {
    match with_table(|t| {
        if let Some(i) = t.find(p as usize) {
            t.remove_at(i);
        }
    }) {
        Ok(()) | Err(Skip::NotReady) => true,
        Err(Skip::Reentrant) => {
            park(p);
            false
        }
    }
}

/// Frees a parked block: the allocator's `free` (given to `init`), which
/// drops its sample (`on_free`), then frees it.
fn forget_and_free(p: *mut u8) {
    let f = FREE.load(Ordering::Relaxed);
    if f != 0 {
        // SAFETY: `FREE` holds the `fn(*mut u8)` that `init` was given.
        let f: fn(*mut u8) = unsafe { core::mem::transmute::<usize, fn(*mut u8)>(f) };
        f(p);
    }
}

/// The allocator's `free`, for parked blocks (`init`): a function pointer, so
/// that this module stays below the entry points that call it.
static FREE: AtomicUsize = AtomicUsize::new(0);

/// True if the large or huge block `p` is sampled (realloc then moves it
/// through malloc and free rather than in place, so the table stays exact).
pub fn is_sampled(p: *mut u8) -> bool {
    match with_table(|t| t.find(p as usize).is_some()) {
        Ok(b) => b,
        Err(Skip::NotReady) => false,
        // Cannot look: moving it is right either way.
        Err(Skip::Reentrant) => true,
    }
}

// ---- dumps ----

/// Writes the live sampled heap now (`PREFIX.PID.N.heap`); true if a file
/// was written. Safe from any slow path that holds no allocator lock (it
/// takes the table lock, opens, writes and closes a file, allocates nothing).
#[cold]
#[link_section = ".text_cold"]
pub fn dump_now() -> bool {
    if !on() {
        return false;
    }
    with_table(|t| {
        t.dumps += 1;
        let n = t.dumps;
        write_dump(t, Kind::Demand(n))
    })
    .unwrap_or(false)
}

/// The dump at exit (library destructor).
pub fn dump_at_exit() {
    if on() {
        let _ = with_table(|t| write_dump(t, Kind::Exit));
    }
}

/// Fork: the child starts with the parent's table under a free lock.
pub fn fork_prepare() {
    if on() {
        let _ = TABLE.lock.lock();
    }
}

pub fn fork_parent() {
    if TABLE.lock.held_by_me() {
        TABLE.lock.unlock();
    }
}

/// Only this thread exists in the child: whoever held the lock is gone.
pub fn fork_child() {
    TABLE.lock.reset();
}

#[cfg(test)]
mod tests;
