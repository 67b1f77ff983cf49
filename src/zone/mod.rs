//! Per-CPU zones (DragonFly's `ZoneAry[cpu][class]`).
//!
//! A zone holds, per size class, the slab being carved (`cur`), the slabs with
//! free chunks (`partial`), notified slabs still short of the hysteresis
//! threshold (`waiting`) and up to 1 MiB of empty slabs kept whole (`empty`);
//! plus the zone's event ring, and a few freed large runs kept for its CPU
//! (`bigs.rs`).
//! Everything in a zone belongs to whoever holds its lock: normally a thread
//! running on that CPU, but also the reclaimer, `malloc_trim`, or a thread
//! whose own zone was busy. Remote CPUs never take it: they free onto a slab's
//! remote list (see `slab`) and, rarely, post a message to the ring.
//!
//! Slab life: new (from the page runs) -> `cur` -> runs dry -> collects its
//! remote list -> still dry: detached -> first remote free notifies -> the
//! owner collects it and puts it on `partial` (or on `waiting` if fewer than
//! `wake_threshold` chunks came back, so that a slab does not ping-pong between
//! full and one-free, which would bring back one message per free) -> all
//! chunks free: kept whole on the class's `empty` list (its free list, carve
//! pointer and open pages as they are, so that it goes out again with no new
//! carve), or returned to the page runs.

use crate::cache;
use crate::cpu;
use crate::os::PAGE_SIZE;
use crate::pagemap::{self, Desc, KIND_NONE, KIND_SLAB, PAGE_SHIFT};
use crate::ring::{Msg, Posted, Ring};
use crate::runs::RUNS;
use crate::size_class::{self, NCLASSES};
use crate::slab::{self, Pushed, FREE_KEY};
use crate::stats::{add_locked, bump, bump_locked, sub_locked, ZoneStats, GLOBAL};
use crate::sync::{Busy, OwnerLock};
use core::cell::UnsafeCell;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

mod bigs;
mod grow;
mod refill;
mod remote;
mod slabs;
mod stash;

pub use bigs::drain_large_rings;
pub use bigs::MAX_PAGES as BIG_PAGES;
#[cfg(test)]
pub use bigs::SLOTS as BIG_SLOTS;
pub use bigs::TICK as KEPT_TICK;
pub use remote::{any_ring_has_work, flush_outbox, free_remote_batched, owner_class};
use remote::{carried, corrupt_node, slab_of};

/// Where a slab is, from its owner's point of view (`Desc::state`).
pub const ST_CUR: u8 = 1;
pub const ST_PARTIAL: u8 = 2;
pub const ST_WAITING: u8 = 3;
pub const ST_DETACHED: u8 = 4;
pub const ST_EMPTY: u8 = 5;

/// Generation bit marking an informational message (`SLABALLOC_NOTIFY=every`
/// sends one per remote free): counted by the owner, never acted on, so a
/// late one cannot re-list a slab that a later detach took off its lists.
const INFO_MSG: u32 = 1 << 31;

/// Sweep the zone's listed slabs for remote chunks every this many refills.
const SWEEP_EVERY: u32 = 128;
/// Bytes per cache line, for the order in which a carved page's chunks go
/// onto the free list (`carve_page`).
const CACHE_LINE: usize = 64;
/// At most this many waiting slabs are examined per refill.
const WAITING_SCAN: usize = 16;

#[derive(Clone, Copy)]
struct ClassZone {
    cur: *mut Desc,
    partial: *mut Desc,
    waiting: *mut Desc,
    empty: *mut Desc,
    /// Slabs on `empty` (at most `slabs::empty_keep`).
    nempty: u8,
    /// Refills of the CPU's cache so far (saturating at `RAMP_STEPS`): the
    /// slow start of `fill_batch`.
    fills: u8,
    /// A flush found this CPU's stack of the class full: the next refill,
    /// finding the stack empty, may double its capacity (`grow.rs`).
    wants: bool,
    /// `cache::pops` of the stack when that flush asked.
    want_pops: u64,
    /// The fewest chunks the stash held since the last sweep: what it did
    /// not need in that time, which the sweep gives back (`stash.rs`).
    stash_low: u32,
    /// The address of the page run that holds the stash's array, 0 until
    /// it has one (a plain word: every field of a zone starts as zeros, so
    /// that the 256 zones stay in .bss, not in the library's data).
    stash_arr: usize,
    /// A malloc or a flush of this class reached the zone since the zone
    /// last took a new slab: `new_slab` leaves the empty slabs of such a
    /// class alone.
    busy: bool,
    /// `cache::moves` of this CPU's class stack when the zone last took a
    /// new slab: unchanged, the stack was idle too.
    moves: u64,
    /// Looks (`new_slab`) in a row that found the class idle.
    quiet: u8,
}

struct Inner {
    classes: [ClassZone; NCLASSES],
    refills: u32,
    /// What the grown stacks may hold beyond their base capacities, in
    /// bytes (at most `GROW_BUDGET`).
    grown: usize,
    /// Batches left that go into the cache grouped by page
    /// (`refill::MIXED_FILLS`): set whenever a slab's remote chunks are
    /// collected.
    mixed: u32,
    /// Freed large runs kept for this CPU (`bigs.rs`), oldest first, and
    /// their sizes in pages (read by the search instead of the runs'
    /// descriptors).
    bigs: [usize; bigs::SLOTS],
    big_pages: [u8; bigs::SLOTS],
    nbigs: u8,
    /// `big_calls` at the reclaimer's last look (`bigs_idle_since_last_look`).
    big_look: u64,
    /// Cache fills on this zone's CPU, and the moves of its large rings at
    /// the last look (`bigs::look_at_large_rings`).
    ring_fills: u32,
    ring_look: u64,
}

/// The fields every use of the zone touches come first and the ring's cells
/// (6 KiB, written only by remote frees that must notify) last, so that a
/// zone whose ring stays empty keeps one or two pages resident, not four.
#[repr(C, align(128))]
pub struct Zone {
    lock: OwnerLock,
    inner: UnsafeCell<Inner>,
    /// Set in a forked child: messages may have been lost with the ring.
    rescan: AtomicBool,
    pub stats: ZoneStats,
    /// The chunks in each class's stash (`stash.rs`).
    stashed: [AtomicU32; NCLASSES],
    pub ring: Ring,
    /// The zone's allocation count at the reclaimer's last look
    /// (`quiet_since_last_look`); only the reclaimer writes it.
    look: AtomicU64,
}

// SAFETY: `inner` is only accessed with `lock` held; the rest are atomics.
unsafe impl Sync for Zone {}

impl Zone {
    /// True if the zone allocated nothing (nor took or kept a large run)
    /// since the reclaimer's previous look, read without its lock (a sum
    /// of its counters): the reclaimer
    /// leaves a busy zone alone rather than take the lock its owner needs
    /// (a busy owner that finds its zone locked goes to another zone, which
    /// turns its frees remote and spreads its memory).
    pub fn quiet_since_last_look(&self) -> bool {
        let st = &self.stats;
        let a = st
            .allocs()
            .wrapping_add(st.big_hits.load(Ordering::Relaxed))
            .wrapping_add(st.big_kept.load(Ordering::Relaxed));
        self.look.swap(a, Ordering::Relaxed) == a
    }

    /// Chunks in the class `c` stash now (racy: for statistics).
    pub fn stashed(&self, c: usize) -> u64 {
        u64::from(self.stashed[c % NCLASSES].load(Ordering::Relaxed))
    }

    const fn new() -> Self {
        Zone {
            look: AtomicU64::new(0),
            lock: OwnerLock::new(),
            inner: UnsafeCell::new(Inner {
                classes: [ClassZone {
                    cur: ptr::null_mut(),
                    partial: ptr::null_mut(),
                    waiting: ptr::null_mut(),
                    empty: ptr::null_mut(),
                    nempty: 0,
                    fills: 0,
                    wants: false,
                    want_pops: 0,
                    stash_low: 0,
                    stash_arr: 0,
                    busy: false,
                    moves: 0,
                    quiet: 0,
                }; NCLASSES],
                refills: 0,
                grown: 0,
                mixed: 0,
                bigs: [0; bigs::SLOTS],
                big_pages: [0; bigs::SLOTS],
                nbigs: 0,
                big_look: 0,
                ring_fills: 0,
                ring_look: 0,
            }),
            rescan: AtomicBool::new(false),
            stats: ZoneStats::new(),
            stashed: [const { AtomicU32::new(0) }; NCLASSES],
            ring: Ring::new(),
        }
    }
}

/// Past the small statics (`ffi/cold.ld`): a process that never starts the
/// zones touches none of its pages.
#[link_section = ".bss.big.zones"]
pub static ZONES: [Zone; cpu::MAX_ZONES] = [const { Zone::new() }; cpu::MAX_ZONES];

#[inline(always)]
pub fn zone(i: usize) -> &'static Zone {
    &ZONES[i % cpu::MAX_ZONES]
}

/// A locked zone. Dropping it unlocks.
pub struct Locked {
    z: &'static Zone,
    idx: usize,
}

impl Locked {
    /// Counts a malloc of class `c` that this zone served past the cache.
    #[inline(always)]
    pub fn count_malloc(&self, c: usize) {
        bump_locked(&self.z.stats.class[c % NCLASSES].mallocs);
    }

    /// Counts a free of a class `c` chunk of this zone's that the cache did
    /// not take (remote frees count as `remote_frees`).
    #[inline(always)]
    pub fn count_free(&self, c: usize) {
        bump_locked(&self.z.stats.class[c % NCLASSES].frees);
    }
}

impl Drop for Locked {
    #[inline(always)]
    fn drop(&mut self) {
        self.z.lock.unlock();
    }
}

/// Locks the current CPU's zone; if it is busy, any other free zone; if all are
/// busy, waits (yielding) for one. Returns None, without waiting, when every
/// zone is busy and the calling thread itself holds one of them (malloc from
/// a signal handler that interrupted its own slow path): waiting then could
/// deadlock, as another thread's handler may hold the zone we wait for and
/// wait for ours. The caller falls back to a mapping of its own.
#[inline(always)]
pub fn lock_current() -> Option<Locked> {
    let idx = cpu::current_zone();
    let z = zone(idx);
    if z.lock.try_lock().is_ok() {
        return Some(Locked { z, idx });
    }
    lock_contended(idx)
}

#[cold]
fn lock_contended(first: usize) -> Option<Locked> {
    let n = cpu::nzones();
    let mut round = 0u32;
    loop {
        let mut mine = false;
        for k in 0..n {
            let idx = (first + k) % n;
            let z = zone(idx);
            match z.lock.try_lock() {
                Ok(()) => return Some(Locked { z, idx }),
                Err(Busy::Reentrant) => mine = true,
                Err(Busy::Other) => {}
            }
        }
        if mine {
            return None;
        }
        round += 1;
        if round < 4 {
            core::hint::spin_loop();
        } else {
            crate::os::yield_now();
        }
    }
}

/// Locks zone `idx`, waiting for it. None if the calling thread holds it.
pub fn lock_index(idx: usize) -> Option<Locked> {
    let z = zone(idx);
    z.lock.lock().ok()?;
    Some(Locked { z, idx })
}

/// Locks zone `idx` if it is free right now.
pub fn try_lock_index(idx: usize) -> Option<Locked> {
    let z = zone(idx);
    z.lock.try_lock().ok()?;
    Some(Locked { z, idx })
}

/// The first chunk address of slab `d`.
#[inline(always)]
pub fn slab_base(d: *const Desc) -> usize {
    let (base, head) = pagemap::desc_home(d);
    pagemap::page_addr(base, head)
}

// ---- intrusive slab lists (owner lock held) ----

// Lists are reached through raw pointers only: several methods of a locked
// zone work on the same class lists while calling each other, and holding
// `&mut` references across such calls would let the compiler assume they do
// not alias.

unsafe fn list_push(head: *mut *mut Desc, d: *mut Desc) {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe {
        (*d).set_prev(ptr::null_mut());
        (*d).set_next(*head);
        if !(*head).is_null() {
            (**head).set_prev(d);
        }
        *head = d;
    }
}

unsafe fn list_remove(head: *mut *mut Desc, d: *mut Desc) {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe {
        let (p, n) = ((*d).prev(), (*d).next());
        if p.is_null() {
            *head = n;
        } else {
            (*p).set_next(n);
        }
        if !n.is_null() {
            (*n).set_prev(p);
        }
        (*d).set_prev(ptr::null_mut());
        (*d).set_next(ptr::null_mut());
    }
}

impl Locked {
    /// The zone's private state. A raw pointer, never a long-lived `&mut`:
    /// the guard proves exclusive access, and every access goes through the
    /// pointer so overlapping uses from nested calls are well defined.
    #[inline(always)]
    fn inner(&self) -> *mut Inner {
        self.z.inner.get()
    }

    /// The lists of class `c` (raw, as `inner`).
    #[inline(always)]
    fn cz(&self, c: usize) -> *mut ClassZone {
        // SAFETY: in bounds (`c % NCLASSES`); the pointer stays inside `inner`.
        unsafe { ptr::addr_of_mut!((*self.inner()).classes[c % NCLASSES]) }
    }

    /// Allocates a chunk of class `c`. The fast path: pop the current slab's
    /// free list, else carve from its untouched tail. It does not write to
    /// the chunk (a chunk carved to fill the cache stays untouched, so not
    /// resident, until a malloc hands it out): the caller clears the free
    /// mark when it gives the chunk to the program (`alloc::handed_out`).
    #[inline(always)]
    pub fn alloc(&self, c: usize) -> *mut u8 {
        let c = c % NCLASSES;
        // SAFETY: we hold the zone lock, which owns the class lists.
        let s = unsafe { (*self.cz(c)).cur };
        if !s.is_null() {
            // SAFETY: `cur` is a live slab owned by this zone; we hold the lock.
            unsafe {
                let f = (*s).free();
                if !f.is_null() {
                    let w = slab::link_word(f);
                    let q = if w & slab::BATCH == 0 {
                        (*s).set_free(w as *mut u8);
                        f
                    } else {
                        carried(s, f)
                    };
                    (*s).set_used((*s).used() + 1);
                    bump_locked(&self.z.stats.class[c].allocs);
                    return q;
                }
                // Chunks freed by other CPUs come before untouched memory:
                // reusing them keeps the resident set small.
                let b = (*s).bump();
                if b < (*s).end() && (*s).rchunks().load(Ordering::Relaxed) == 0 {
                    self.carve_page(s, c, b);
                    (*s).set_used((*s).used() + 1);
                    bump_locked(&self.z.stats.class[c].allocs);
                    return b;
                }
            }
        }
        self.refill(c)
    }

    /// Carves slab `d` (class `c`, its free list empty) at its carve pointer
    /// `b`: the chunk at `b`, which the caller takes, and every other chunk
    /// that starts in the same page, which go onto the free list. All carry
    /// the free mark (the page is about to be touched anyway). The carve
    /// pointer then lies past that page, so the page, and any that the chunk
    /// at `b` covers, hold only chunks that were handed out or sit on a free
    /// list, and `free` may take their chunks on its fast path
    /// (`pagemap::open_slab_pages`). A never-allocated chunk there carries
    /// the mark, so freeing it is reported (as a double free).
    ///
    /// In classes under 64 bytes the free list takes every `s`-th chunk of
    /// the page, `s` times over (`s` chunks per line, rounded up), so that
    /// two chunks handed out one after the other never share a cache line:
    /// two small blocks that one thread allocates back to back and gives to
    /// two threads would otherwise fight over it (false sharing; the
    /// `falseshare` workload, `c-tests/lines.c`: 0 of 2000 handoff rounds
    /// share a line). Chunks freed in the order they were allocated come
    /// back in that order and keep the spread (`refill.rs`). Spreading each
    /// refill's batch instead, as until the fourteenth session, shuffled
    /// chunks further at every round trip: xmalloc_like 0.91 of the time and
    /// cfrac_like 0.99 with the spread here (10 runs).
    ///
    /// # Safety
    /// `d` is a live slab of class `c` owned by this zone (whose lock we
    /// hold), its free list is empty and `b`, its carve pointer, is below
    /// its end: the chunks from `b` to the end of the page are ours and
    /// untouched by anyone else.
    #[inline(never)]
    unsafe fn carve_page(&self, d: *mut Desc, c: usize, b: *mut u8) {
        // SAFETY: the caller upholds the contract in `# Safety` above.
        unsafe {
            let size = size_class::class_size(c);
            let end = (*d).end() as usize;
            let lim = ((b as usize | (PAGE_SIZE - 1)) + 1).min(end);
            let key = FREE_KEY.load(Ordering::Relaxed);
            // Marked too: it may go into the cache (a refill); the malloc that
            // hands it out clears the mark.
            *(b as *mut u64).add(1) = key;
            // The page's other chunks go onto the (empty) free list in
            // `stride` passes (chunks per line, rounded up), every
            // `stride`-th chunk in a pass, so that two chunks handed out one
            // after the other never share a 64-byte line.
            // `m` >= 1 (`b` < `lim`), and so is the stride.
            let m = (lim - b as usize).div_ceil(size);
            let stride = CACHE_LINE.div_ceil(size).min(m);
            let mut prev: *mut u8 = ptr::null_mut();
            for r in 0..stride {
                let mut k = if r == 0 { stride } else { r };
                while k < m {
                    let q = (b as usize + k * size) as *mut u8;
                    *(q as *mut u64).add(1) = key;
                    if prev.is_null() {
                        // The free list is empty (`alloc` takes from it first).
                        (*d).set_free(q);
                    } else {
                        slab::set_link(prev, q as usize);
                    }
                    prev = q;
                    k += stride;
                }
            }
            if !prev.is_null() {
                slab::set_link(prev, 0);
            }
            let nb = b as usize + m * size;
            (*d).set_bump(nb as *mut u8);
            let start = slab_base(d);
            let to = if nb >= end {
                (*d).npages()
            } else {
                (nb - start) >> PAGE_SHIFT
            };
            pagemap::open_slab_pages(d, (b as usize - start) >> PAGE_SHIFT, to, c, self.idx);
        }
    }

    /// Frees a chunk of slab `d`, which this zone owns.
    ///
    /// # Safety
    /// `chunk` is a live chunk of `d`; `d` is owned by this zone.
    #[inline(always)]
    pub unsafe fn free_local(&self, d: *mut Desc, chunk: *mut u8) {
        // SAFETY: the caller upholds the contract in `# Safety` above.
        unsafe { self.free_run(d, (*d).class() % NCLASSES, core::slice::from_ref(&chunk)) }
    }

    /// Gives `chunks` (live chunks of this zone's slabs that the allocator
    /// holds: a batch off the ring or out of the stash, their free marks
    /// set) back to their slabs, as `free_local` would one by one. A
    /// batch comes a slab at a time (the cache and the stash keep the order
    /// chunks were freed in), so the chunks after one whose slab was looked
    /// up join it while they lie in its range, and each stretch goes back
    /// with the slab's fields read and written once (`free_run`): chunk by
    /// chunk, a program turning 20,000 chunks over spent a quarter of its
    /// time here.
    ///
    /// # Safety
    /// The lock is held (`self`); every chunk is a live chunk of one of this
    /// zone's slabs, below its carve pointer, that nothing else references.
    pub(super) unsafe fn free_local_all(&self, chunks: &[*mut u8]) {
        let mut rest = chunks;
        while let Some(&q) = rest.first() {
            let d = slab_of(q);
            let lo = slab_base(d);
            // SAFETY: `d` is a live slab (the contract); its class field
            // is the owner's, and we hold the lock.
            let c = unsafe { (*d).class() } % NCLASSES;
            let span = size_class::capacity(c) * size_class::class_size(c);
            let n = rest
                .iter()
                .position(|&r| (r as usize).wrapping_sub(lo) >= span)
                .unwrap_or(rest.len());
            let (run, tail) = rest.split_at(n);
            // SAFETY: the chunks of `run` lie in `d`'s range (the first was
            // looked up), and a live slab's range holds no other slab's
            // chunks; the rest is the contract.
            unsafe { self.free_run(d, c, run) };
            rest = tail;
        }
    }

    /// Frees every chunk of `run`, chunks of the slab `d` (of class `c`,
    /// owned by this zone): the checks and the free mark chunk by chunk,
    /// then the slab's free list filled by `slab::push_run`, and its
    /// count, the statistics and its place on the class lists once.
    ///
    /// # Safety
    /// As `free_local` for each chunk; the chunks of `run` are distinct.
    unsafe fn free_run(&self, d: *mut Desc, c: usize, run: &[*mut u8]) {
        // SAFETY: the caller upholds the contract in `# Safety` above.
        unsafe {
            let used = (*d).used() as usize;
            if let Some(&q) = run.get(used) {
                // The slab would run out of live blocks at this chunk.
                crate::fmt::fatal_pointer("free", q, "double free (slab has no live block)");
            }
            let bump = (*d).bump();
            let key = FREE_KEY.load(Ordering::Relaxed);
            for &q in run {
                if q >= bump {
                    crate::fmt::fatal_pointer(
                        "free",
                        q,
                        "pointer to a block that was never allocated",
                    );
                }
                *(q as *mut u64).add(1) = key;
            }
            // Where the class has room, the free list's head node carries
            // the chunks' addresses instead of each chunk being linked (as
            // an outbox flush does for remote lists): a later refill then
            // takes them from the node without reading each one, where
            // following a chain of long-freed chunks was a cache miss per
            // chunk, one after the other (85 % of fill_cache's samples
            // under CPython).
            let cap = slab::batch_cap(size_class::class_size(c));
            (*d).set_free(slab::push_run((*d).free(), run, slab_base(d), cap));
            (*d).set_used((used - run.len()) as u32);
            add_locked(&self.z.stats.class[c].local_frees, run.len());
            // The current slab needs nothing more, even when it becomes
            // empty. Looked at once for the run: the state left behind is
            // the same as after each chunk (`after_local_free` relists a
            // detached slab and releases an empty one either way).
            if (*d).state() != ST_CUR && ((*d).used() == 0 || (*d).state() == ST_DETACHED) {
                self.after_local_free(d);
            }
        }
    }

    /// Gives every chunk of class `c` in this zone's CPU's ring back to its
    /// slab, if the caller runs on that CPU (`pop_bulk` checks). Out of
    /// line, like `shrink_ring`.
    #[inline(never)]
    pub(super) fn drain_ring(&self, c: usize) {
        let mut buf = [ptr::null_mut::<u8>(); cache::BATCH_MAX];
        loop {
            let n = cache::pop_bulk(self.idx, c, &mut buf);
            if n == 0 {
                break;
            }
            // SAFETY: a chunk in this CPU's cache is a live (cached)
            // chunk of one of this zone's slabs; we hold the lock.
            // (`n` fits `buf`; the `min` spares the slicing its panic path.)
            unsafe { self.free_local_all(&buf[..n.min(buf.len())]) };
        }
    }

    /// Gives every cached and stashed chunk of this zone back to its slab
    /// (the cache only if the caller runs on the zone's CPU: `malloc_trim`,
    /// reclaim before ENOMEM).
    #[inline(never)]
    #[link_section = ".text_cold"]
    pub fn drain_cache(&self) {
        for c in 0..NCLASSES {
            self.drain_ring(c);
            self.shrink_ring(c);
        }
        self.drain_stash();
        self.drain_large();
        drain_large_rings();
    }
}

// ---- fork ----

/// Zones whose lock the fork prepare handler took (a fork from a signal
/// handler cannot take the ones its own thread holds: leave those alone).
static FORK_TOOK: [AtomicBool; cpu::MAX_ZONES] = [const { AtomicBool::new(false) }; cpu::MAX_ZONES];

pub fn fork_prepare() {
    for i in 0..cpu::nzones() {
        let took = zone(i).lock.lock().is_ok();
        FORK_TOOK[i % cpu::MAX_ZONES].store(took, Ordering::Relaxed);
    }
}

pub fn fork_parent() {
    for i in (0..cpu::nzones()).rev() {
        if FORK_TOOK[i % cpu::MAX_ZONES].load(Ordering::Relaxed) {
            zone(i).lock.unlock();
        }
    }
}

pub fn fork_child() {
    for i in 0..cpu::nzones() {
        let z = zone(i);
        z.ring.reset();
        z.rescan.store(true, Ordering::Relaxed);
        z.lock.reset();
    }
}
