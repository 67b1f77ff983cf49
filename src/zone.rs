//! Per-CPU zones (DragonFly's `ZoneAry[cpu][class]`).
//!
//! A zone holds, per size class, the slab being carved (`cur`), the slabs with
//! free chunks (`partial`), notified slabs still short of the hysteresis
//! threshold (`waiting`) and one cached empty slab; plus the zone's event ring.
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
//! chunks free: cached as the class's empty slab, or returned to the page runs.

use crate::cache;
use crate::cpu;
use crate::os::PAGE_SIZE;
use crate::pagemap::{self, Desc, KIND_NONE, KIND_SLAB, PAGE_SHIFT};
use crate::ring::{Msg, Posted, Ring};
use crate::runs::RUNS;
use crate::size_class::{self, NCLASSES};
use crate::slab::{self, Pushed};
use crate::stats::{bump, bump_locked, ZoneStats, GLOBAL};
use crate::sync::{Busy, OwnerLock};
use core::cell::UnsafeCell;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

mod stash;

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
/// Bytes per cache line, for the order in which a refill fills the cache.
const CACHE_LINE: usize = 64;
/// At most this many waiting slabs are examined per refill.
const WAITING_SCAN: usize = 16;

/// Marks freed chunks (word 1) so a double free is caught cheaply; set per
/// process at start-up, cleared when a chunk is handed out again.
pub static FREE_KEY: AtomicU64 = AtomicU64::new(0x5a5a_1b2c_3d4e_6f70);

#[derive(Clone, Copy)]
struct ClassZone {
    cur: *mut Desc,
    partial: *mut Desc,
    waiting: *mut Desc,
    empty: *mut Desc,
    /// Refills of the CPU's cache so far (saturating at `RAMP_STEPS`): the
    /// slow start of `fill_batch`.
    fills: u8,
    /// The fewest chunks the stash held since the last sweep: what it did
    /// not need in that time, which the sweep gives back (`stash.rs`).
    stash_low: u32,
    /// The address of the page run that holds the stash's array, 0 until
    /// it has one (a plain word: every field of a zone starts as zeros, so
    /// that the 256 zones stay in .bss, not in the library's data).
    stash_arr: usize,
}

/// A refill moves a page's worth of chunks, doubling with each refill until
/// it reaches the class's full batch: the first refills of a class no
/// longer carve (and touch) up to 8 KiB for a program that uses a handful
/// of its chunks. 2^5 pages is past every class's batch.
const RAMP_STEPS: u8 = 5;

struct Inner {
    classes: [ClassZone; NCLASSES],
    refills: u32,
    /// `allocs` seen by the reclaimer's previous pass (idle detection).
    seen_allocs: u64,
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
}

// SAFETY: `inner` is only accessed with `lock` held; the rest are atomics.
unsafe impl Sync for Zone {}

impl Zone {
    /// Chunks in the class `c` stash now (racy: for statistics).
    pub fn stashed(&self, c: usize) -> u64 {
        u64::from(self.stashed[c % NCLASSES].load(Ordering::Relaxed))
    }

    const fn new() -> Self {
        Zone {
            lock: OwnerLock::new(),
            inner: UnsafeCell::new(Inner {
                classes: [ClassZone {
                    cur: ptr::null_mut(),
                    partial: ptr::null_mut(),
                    waiting: ptr::null_mut(),
                    empty: ptr::null_mut(),
                    fills: 0,
                    stash_low: 0,
                    stash_arr: 0,
                }; NCLASSES],
                refills: 0,
                seen_allocs: 0,
            }),
            rescan: AtomicBool::new(false),
            stats: ZoneStats::new(),
            stashed: [const { AtomicU32::new(0) }; NCLASSES],
            ring: Ring::new(),
        }
    }
}

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

impl Drop for Locked {
    #[inline(always)]
    fn drop(&mut self) {
        self.z.lock.unlock();
    }
}

/// Locks the current CPU's zone; if it is busy, any other free zone; if all are
/// busy, waits (yielding) for one. Returns None only if every zone is held by
/// the calling thread itself (nested signal handlers).
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
        let mut all_mine = true;
        for k in 0..n {
            let idx = (first + k) % n;
            let z = zone(idx);
            match z.lock.try_lock() {
                Ok(()) => return Some(Locked { z, idx }),
                Err(Busy::Reentrant) => {}
                Err(Busy::Other) => all_mine = false,
            }
        }
        if all_mine {
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
    (*d).prev = ptr::null_mut();
    (*d).next = *head;
    if !(*head).is_null() {
        (**head).prev = d;
    }
    *head = d;
}

unsafe fn list_remove(head: *mut *mut Desc, d: *mut Desc) {
    let (p, n) = ((*d).prev, (*d).next);
    if p.is_null() {
        *head = n;
    } else {
        (*p).next = n;
    }
    if !n.is_null() {
        (*n).prev = p;
    }
    (*d).prev = ptr::null_mut();
    (*d).next = ptr::null_mut();
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
                let f = (*s).free;
                if !f.is_null() {
                    let w = slab::link_word(f);
                    let q = if w & slab::BATCH == 0 {
                        (*s).free = w as *mut u8;
                        f
                    } else {
                        carried(s, f)
                    };
                    (*s).used += 1;
                    bump_locked(&self.z.stats.class[c].allocs);
                    return q;
                }
                // Chunks freed by other CPUs come before untouched memory:
                // reusing them keeps the resident set small.
                let b = (*s).bump.load(Ordering::Relaxed);
                if b < (*s).end && (*s).rchunks.load(Ordering::Relaxed) == 0 {
                    self.carve_page(s, c, b);
                    (*s).used += 1;
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
    /// # Safety
    /// `d` is a live slab of class `c` owned by this zone (whose lock we
    /// hold), its free list is empty and `b`, its carve pointer, is below
    /// its end: the chunks from `b` to the end of the page are ours and
    /// untouched by anyone else.
    #[inline(never)]
    unsafe fn carve_page(&self, d: *mut Desc, c: usize, b: *mut u8) {
        let size = size_class::class_size(c);
        let end = (*d).end as usize;
        let lim = ((b as usize | (PAGE_SIZE - 1)) + 1).min(end);
        let key = FREE_KEY.load(Ordering::Relaxed);
        // Marked too: it may go into the cache (a refill); the malloc that
        // hands it out clears the mark.
        *(b as *mut u64).add(1) = key;
        let mut nb = b as usize + size;
        if nb < lim {
            // The free list is empty (`alloc` takes from it first).
            (*d).free = nb as *mut u8;
            loop {
                let next = nb + size;
                let link = if next < lim { next } else { 0 };
                slab::set_link(nb as *mut u8, link);
                *(nb as *mut u64).add(1) = key;
                nb = next;
                if link == 0 {
                    break;
                }
            }
        }
        (*d).bump.store(nb as *mut u8, Ordering::Relaxed);
        let start = slab_base(d);
        let to = if nb >= end {
            (*d).npages.load(Ordering::Relaxed) as usize
        } else {
            (nb - start) >> PAGE_SHIFT
        };
        pagemap::open_slab_pages(d, (b as usize - start) >> PAGE_SHIFT, to, c, self.idx);
    }

    /// Frees a chunk of slab `d`, which this zone owns.
    ///
    /// # Safety
    /// `chunk` is a live chunk of `d`; `d` is owned by this zone.
    #[inline(always)]
    pub unsafe fn free_local(&self, d: *mut Desc, chunk: *mut u8) {
        if (*d).used == 0 {
            crate::fmt::fatal_pointer("free", chunk, "double free (slab has no live block)");
        }
        if chunk >= (*d).bump.load(Ordering::Relaxed) {
            crate::fmt::fatal_pointer("free", chunk, "pointer to a block that was never allocated");
        }
        *(chunk as *mut u64).add(1) = FREE_KEY.load(Ordering::Relaxed);
        let c = (*d).class.load(Ordering::Relaxed) as usize % NCLASSES;
        // Where the class has room, the free list's head node carries the
        // chunk's address instead of the chunk being linked (as an outbox
        // flush does for remote lists): a later refill then takes the
        // chunks from the node without reading each one, where following
        // a chain of long-freed chunks was a cache miss per chunk, one
        // after the other (85 % of fill_cache's samples under CPython).
        let f = (*d).free;
        let cap = slab::batch_cap(size_class::class_size(c));
        let k = if f.is_null() || cap == 0 {
            cap
        } else if slab::link_word(f) & slab::BATCH != 0 {
            slab::batch_len(f)
        } else {
            0
        };
        if k < cap {
            slab::batch_add(f, k, chunk);
        } else {
            slab::set_link(chunk, f as usize);
            (*d).free = chunk;
        }
        (*d).used -= 1;
        bump_locked(&self.z.stats.class[c].local_frees);
        // The current slab needs nothing more, even when it becomes empty.
        if (*d).state != ST_CUR && ((*d).used == 0 || (*d).state == ST_DETACHED) {
            self.after_local_free(d);
        }
    }

    /// Moves up to a batch of chunks of class `c` into this CPU's cache, in
    /// one section, if the caller runs on this zone's CPU (else they go
    /// straight back). Amortises the lock over the batch. The stash comes
    /// first: its chunks move whole, with no slab touched.
    ///
    /// Chunks from the slabs are pushed so that two successive pops never
    /// return chunks of one cache line: a slab hands its chunks out in
    /// address order, and two small blocks that one thread allocates back
    /// to back and gives to two threads would otherwise share a line (false
    /// sharing; the `falseshare` workload, `c-tests/lines.c`). With `s` =
    /// chunks per line (rounded up), the batch goes in as every `s`-th
    /// chunk, `s` times over. Only classes under 64 bytes are reordered.
    #[inline(never)]
    pub fn fill_cache(&self, c: usize) {
        let c = c % NCLASSES;
        cache::prepare(self.idx, c);
        let want = self.fill_batch(c).saturating_sub(1).min(cache::BATCH_MAX);
        let mut got = [ptr::null_mut::<u8>(); cache::BATCH_MAX];
        if self.unstash(c, want) {
            return;
        }
        let mut n = 0;
        // Iterators, not indexing: no bounds check, so no panic path.
        for slot in got.iter_mut().take(want) {
            let q = self.alloc(c);
            if q.is_null() {
                break;
            }
            *slot = q;
            n += 1;
        }
        let stride = CACHE_LINE.div_ceil(size_class::class_size(c)).max(1);
        let mut order = [ptr::null_mut::<u8>(); cache::BATCH_MAX];
        let mut k = 0;
        for r in 0..stride {
            for &q in got.iter().take(n).skip(r).step_by(stride) {
                if let Some(o) = order.get_mut(k) {
                    *o = q;
                    k += 1;
                }
            }
        }
        // The stack pops its last chunk first: push the batch in reverse,
        // so that successive mallocs get ascending addresses, as a slab
        // carves them (a program that walks its objects in the order it
        // made them, such as CPython's collector, then walks memory
        // forwards: PYTHONMALLOC=malloc ran 1.35x faster, bench/RESULTS.md).
        order[..k].reverse();
        if k > 0 && !cache::push_bulk(self.idx, c, &order[..k]) {
            // The thread left this zone's CPU: they go back.
            for &q in &order[..k] {
                // SAFETY: `q` is a chunk we just allocated from our own slab
                // and did not push.
                unsafe { self.free_local(slab_of(q), q) };
            }
        }
    }

    /// Chunks the next refill of class `c` moves (with the one the caller
    /// takes): a page's worth (at least one chunk) on the first refill,
    /// doubling up to `cache::batch(c)` (TCP's slow start; tcmalloc and
    /// mimalloc also grow their caches with use). The extra refills are
    /// a handful per class and CPU over a process's life.
    fn fill_batch(&self, c: usize) -> usize {
        let full = cache::batch(c);
        let cz = self.cz(c);
        // SAFETY: lock held; `cz` points into this zone's `inner` (raw
        // accesses, like the class lists').
        unsafe {
            let fills = (*cz).fills;
            if fills >= RAMP_STEPS {
                return full;
            }
            let start = (PAGE_SIZE / size_class::class_size(c)).max(1);
            let n = (start << fills).min(full);
            (*cz).fills = if n == full { RAMP_STEPS } else { fills + 1 };
            n
        }
    }

    /// Gives every cached and stashed chunk of this zone back to its slab
    /// (the cache only if the caller runs on the zone's CPU: `malloc_trim`,
    /// reclaim before ENOMEM).
    pub fn drain_cache(&self) {
        let mut buf = [ptr::null_mut::<u8>(); cache::BATCH_MAX];
        for c in 0..NCLASSES {
            loop {
                let n = cache::pop_bulk(self.idx, c, &mut buf);
                if n == 0 {
                    break;
                }
                for &q in &buf[..n] {
                    // SAFETY: a chunk in this CPU's cache is a live (cached)
                    // chunk of one of this zone's slabs; we hold the lock.
                    unsafe { self.free_local(slab_of(q), q) };
                }
            }
        }
        self.drain_stash();
    }

    #[cold]
    unsafe fn after_local_free(&self, d: *mut Desc) {
        let c = (*d).class.load(Ordering::Relaxed) as usize % NCLASSES;
        match (*d).state {
            // Full and detached: if no remote free has seen the detach, take it
            // back; otherwise a message is on its way and will list it.
            ST_DETACHED if slab::try_reattach(d) => {
                if (*d).used == 0 {
                    self.release(d);
                } else {
                    (*d).state = ST_PARTIAL;
                    list_push(ptr::addr_of_mut!((*self.cz(c)).partial), d);
                }
            }
            ST_PARTIAL | ST_WAITING => self.release(d),
            _ => {} // the current slab stays, even when empty
        }
    }

    /// Collects `d`'s remote list into its local free list. Returns the count.
    unsafe fn collect(&self, d: *mut Desc) -> usize {
        let (l, counted) = slab::take_remote_counted(d);
        if l.is_null() {
            return 0;
        }
        let corrupt = || -> ! {
            crate::fmt::fatal_pointer(
                "free",
                l,
                "corrupted remote free list (a chunk freed twice?)",
            )
        };
        if (*d).free.is_null() {
            // The common case (the slab ran dry): the remote list becomes
            // the local one whole, and its count comes with it, so no chunk
            // is read here; `alloc` checks each link as it pops it. (The
            // walk read every node the other CPUs had just written: 15 % of
            // xmalloc_like's time.)
            if counted == 0 || counted > (*d).used as usize {
                corrupt();
            }
            (*d).free = l;
            (*d).used -= counted as u32;
            return counted;
        }
        let c = (*d).class.load(Ordering::Relaxed) as usize;
        let carry = slab::batch_cap(size_class::class_size(c));
        match slab::absorb(d, l, size_class::capacity(c), carry) {
            Some(n) if n == counted && n as u32 <= (*d).used => {
                (*d).used -= n as u32;
                n
            }
            _ => corrupt(),
        }
    }

    /// Takes `d` off whatever list it is on and gives it up: cached as the
    /// class's empty slab, or returned to the page runs.
    unsafe fn release(&self, d: *mut Desc) {
        let c = (*d).class.load(Ordering::Relaxed) as usize % NCLASSES;
        let cz = self.cz(c);
        match (*d).state {
            ST_PARTIAL => list_remove(ptr::addr_of_mut!((*cz).partial), d),
            ST_WAITING => list_remove(ptr::addr_of_mut!((*cz).waiting), d),
            ST_CUR => (*cz).cur = ptr::null_mut(),
            _ => {}
        }
        // Stale messages naming this slab must not match any more.
        (*d).gen.fetch_add(1, Ordering::Relaxed);
        if (*cz).empty.is_null() {
            let (base, head) = pagemap::desc_home(d);
            pagemap::close_slab_pages(base, head, (*d).npages.load(Ordering::Relaxed) as usize);
            (*d).free = ptr::null_mut();
            (*d).bump.store(slab_base(d) as *mut u8, Ordering::Relaxed);
            (*d).zeroed = 0;
            (*d).state = ST_EMPTY;
            (*cz).empty = d;
            GLOBAL.slabs_cached.fetch_add(1, Ordering::Relaxed);
        } else {
            destroy(d);
        }
    }

    /// Reclaims the cached empty slabs of every class, and the current slabs
    /// that are empty (reclaimer, malloc_trim).
    pub fn release_empties(&self) {
        for c in 0..NCLASSES {
            let cz = self.cz(c);
            // SAFETY: lock held; slabs on our lists are ours.
            unsafe {
                if !(*cz).empty.is_null() {
                    let d = (*cz).empty;
                    (*cz).empty = ptr::null_mut();
                    GLOBAL.slabs_cached.fetch_sub(1, Ordering::Relaxed);
                    destroy(d);
                }
                let s = (*cz).cur;
                if !s.is_null() {
                    self.collect(s);
                    if (*s).used == 0 {
                        (*cz).cur = ptr::null_mut();
                        (*s).gen.fetch_add(1, Ordering::Relaxed);
                        destroy(s);
                    }
                }
            }
        }
    }

    /// The slow path of `alloc`: messages, lazy collection, detach, next slab.
    #[cold]
    #[inline(never)]
    fn refill(&self, c: usize) -> *mut u8 {
        crate::alloc::ensure_init();
        bump_locked(&self.z.stats.refills);
        // SAFETY: lock held; a short access through the raw pointer.
        let refills = unsafe {
            let inner = self.inner();
            (*inner).refills = (*inner).refills.wrapping_add(1);
            (*inner).refills
        };
        if self.z.rescan.load(Ordering::Relaxed) {
            self.rescan();
        }
        self.drain();
        if refills.is_multiple_of(SWEEP_EVERY) {
            self.sweep();
        }
        // SAFETY: lock held throughout; every slab touched is owned by us.
        unsafe {
            loop {
                let s = (*self.cz(c)).cur;
                if !s.is_null() {
                    if self.collect(s) > 0
                        || !(*s).free.is_null()
                        || (*s).bump.load(Ordering::Relaxed) < (*s).end
                    {
                        return self.alloc(c);
                    }
                    if slab::try_detach(s) {
                        (*s).state = ST_DETACHED;
                        (*self.cz(c)).cur = ptr::null_mut();
                        bump_locked(&self.z.stats.detaches);
                    } else {
                        continue; // remote chunks arrived: collect them
                    }
                }
                let n = self.next_slab(c);
                if n.is_null() {
                    return ptr::null_mut();
                }
                (*n).state = ST_CUR;
                (*self.cz(c)).cur = n;
            }
        }
    }

    /// Picks the next slab for class `c`: a partial one, a waiting one that
    /// reached the threshold, the cached empty one, the fullest-of-free waiting
    /// one, or a new one. The result is on no list.
    unsafe fn next_slab(&self, c: usize) -> *mut Desc {
        let thr = size_class::wake_threshold(c) as u32;
        let cap = size_class::capacity(c) as u32;
        let cz = self.cz(c);
        if (*cz).partial.is_null() {
            // Promote waiting slabs that have collected enough.
            let mut d = (*cz).waiting;
            let mut k = 0;
            while !d.is_null() && k < WAITING_SCAN {
                let next = (*d).next;
                self.collect(d);
                if (*d).used == 0 {
                    self.release(d);
                } else if cap - (*d).used >= thr {
                    list_remove(ptr::addr_of_mut!((*cz).waiting), d);
                    (*d).state = ST_PARTIAL;
                    list_push(ptr::addr_of_mut!((*cz).partial), d);
                }
                d = next;
                k += 1;
            }
        }
        if !(*cz).partial.is_null() {
            let d = (*cz).partial;
            list_remove(ptr::addr_of_mut!((*cz).partial), d);
            return d;
        }
        if !(*cz).empty.is_null() {
            let d = (*cz).empty;
            (*cz).empty = ptr::null_mut();
            GLOBAL.slabs_cached.fetch_sub(1, Ordering::Relaxed);
            return d;
        }
        // Any waiting slab with free chunks beats mapping more memory.
        let mut best: *mut Desc = ptr::null_mut();
        let mut d = (*cz).waiting;
        while !d.is_null() {
            if best.is_null() || (*d).used < (*best).used {
                best = d;
            }
            d = (*d).next;
        }
        if !best.is_null() && (*best).used < cap {
            list_remove(ptr::addr_of_mut!((*cz).waiting), best);
            return best;
        }
        self.new_slab(c)
    }

    unsafe fn new_slab(&self, c: usize) -> *mut Desc {
        crate::reclaim::adopt_idle(self.idx);
        // Before taking more memory: stashed chunks that no refill needed
        // since the last look go back to their slabs, which may free whole
        // slabs for this one (a program done with one size and on to the
        // next: glibc_simple kept every size's stash, 6.8 MiB peak RSS
        // against glibc's 2.8).
        for k in 0..NCLASSES {
            self.trim_stash(k);
        }
        let Some(r) = RUNS.alloc(
            size_class::SLAB_PAGES[c] as usize,
            size_class::slab_align_pages(c),
        ) else {
            return ptr::null_mut();
        };
        let d = r.desc();
        let csize = size_class::class_size(c);
        let base = r.addr() as *mut u8;
        (*d).class.store(c as u8, Ordering::Relaxed);
        (*d).owner.store(self.idx as u16, Ordering::Relaxed);
        (*d).gen.fetch_add(1, Ordering::Relaxed);
        (*d).used = 0;
        (*d).free = ptr::null_mut();
        (*d).bump.store(base, Ordering::Relaxed);
        (*d).end = base.add(size_class::capacity(c) * csize);
        (*d).zeroed = r.zeroed as u8;
        (*d).prev = ptr::null_mut();
        (*d).next = ptr::null_mut();
        (*d).rchunks.store(0, Ordering::Relaxed);
        (*d).notify_next.store(ptr::null_mut(), Ordering::Relaxed);
        // Release: a thread that finds the slab through the page map sees it
        // whole. Its pages open to `free`'s fast path as they are carved.
        (*d).kind.store(KIND_SLAB, Ordering::Release);
        GLOBAL.slabs_live.fetch_add(1, Ordering::Relaxed);
        bump_locked(&self.z.stats.class[c].slabs_new);
        d
    }

    /// Handles every message in the ring and on the overflow list.
    pub fn drain(&self) {
        while let Some(m) = self.z.ring.pop() {
            self.handle(m.slab, Some(m.gen));
        }
        let mut d = self.z.ring.take_overflow();
        while !d.is_null() {
            // SAFETY: overflow entries are slab descriptors (type-stable);
            // `handle` validates them before use.
            let next = unsafe { (*d).notify_next.load(Ordering::Relaxed) };
            self.handle(d, None);
            d = next;
        }
    }

    /// A notification: validate through the page map, then collect and re-list.
    fn handle(&self, d: *mut Desc, gen: Option<u32>) {
        if gen.is_some_and(|g| g & INFO_MSG != 0) {
            bump_locked(&self.z.stats.msgs_info);
            return;
        }
        if !pagemap::is_desc_ptr(d) {
            bump_locked(&self.z.stats.msgs_stale);
            return;
        }
        // SAFETY: `d` is a descriptor slot of one of our arenas (type-stable
        // memory); we check it is a slab of ours in the expected state before
        // touching anything else, and we hold the owner lock.
        unsafe {
            let valid = (*d).kind.load(Ordering::Acquire) == KIND_SLAB
                && (*d).owner.load(Ordering::Relaxed) as usize == self.idx
                && gen.is_none_or(|g| g == (*d).gen.load(Ordering::Relaxed) & !INFO_MSG)
                && (*d).state == ST_DETACHED;
            if !valid {
                bump_locked(&self.z.stats.msgs_stale);
                return;
            }
            if self.collect(d) == 0 {
                // Nothing came back (only possible for the `every` mode's
                // extra messages racing with us): still detached.
                bump_locked(&self.z.stats.msgs_stale);
                return;
            }
            bump_locked(&self.z.stats.msgs_handled);
            self.relist(d);
        }
    }

    /// Files a slab that is off every list according to how free it is.
    unsafe fn relist(&self, d: *mut Desc) {
        let c = (*d).class.load(Ordering::Relaxed) as usize % NCLASSES;
        let cap = size_class::capacity(c) as u32;
        if (*d).used == 0 {
            (*d).state = 0; // on no list: release() has nothing to unlink
            self.release(d);
        } else if cap - (*d).used >= size_class::wake_threshold(c) as u32 {
            (*d).state = ST_PARTIAL;
            list_push(ptr::addr_of_mut!((*self.cz(c)).partial), d);
        } else {
            (*d).state = ST_WAITING;
            list_push(ptr::addr_of_mut!((*self.cz(c)).waiting), d);
        }
    }

    /// Collects remote chunks on every listed slab; frees empty ones and
    /// promotes waiting ones past the threshold.
    pub fn sweep(&self) {
        for c in 0..NCLASSES {
            self.trim_stash(c);
            let thr = size_class::wake_threshold(c) as u32;
            let cap = size_class::capacity(c) as u32;
            // SAFETY: lock held; list members are our slabs.
            unsafe {
                let cz = self.cz(c);
                let cur = (*cz).cur;
                if !cur.is_null() {
                    self.collect(cur);
                }
                for waiting in [false, true] {
                    let mut d = if waiting {
                        (*cz).waiting
                    } else {
                        (*cz).partial
                    };
                    while !d.is_null() {
                        let next = (*d).next;
                        self.collect(d);
                        if (*d).used == 0 {
                            self.release(d);
                        } else if waiting && cap - (*d).used >= thr {
                            list_remove(ptr::addr_of_mut!((*cz).waiting), d);
                            (*d).state = ST_PARTIAL;
                            list_push(ptr::addr_of_mut!((*cz).partial), d);
                        }
                        d = next;
                    }
                }
            }
        }
    }

    /// After fork: ring messages may have been lost. Walk every arena and
    /// handle detached slabs of ours that have remote chunks waiting.
    fn rescan(&self) {
        self.z.rescan.store(false, Ordering::Relaxed);
        for i in 0..pagemap::narenas() {
            let base = pagemap::arena_at(i);
            let mut p = pagemap::META_PAGES;
            while base != 0 && p < pagemap::ARENA_PAGES {
                let d = pagemap::desc(base, p);
                // SAFETY: run heads tile the arena, so stepping by npages from
                // the first usable page visits exactly the heads.
                let (kind, n) = unsafe {
                    (
                        (*d).kind.load(Ordering::Acquire),
                        (*d).npages.load(Ordering::Relaxed) as usize,
                    )
                };
                if n == 0 {
                    break;
                }
                // KIND_NONE with a size: a run handed out whose kind was not
                // set yet when the parent forked; step over it.
                // SAFETY: a slab descriptor; its owner-side state is ours to
                // read only once the owner check says the slab is ours.
                unsafe {
                    if kind == KIND_SLAB
                        && (*d).owner.load(Ordering::Relaxed) as usize == self.idx
                        && (*d).state == ST_DETACHED
                        && (*d).rchunks.load(Ordering::Relaxed) > slab::DETACHED
                    {
                        self.handle(d, None);
                    }
                }
                p += n;
            }
        }
    }

    /// Idle detection for the reclaimer: true if no allocation happened in
    /// this zone since the previous call.
    pub fn idle_since_last_look(&self) -> bool {
        let a = self.z.stats.allocs();
        // SAFETY: lock held; a short access through the raw pointer.
        unsafe {
            let inner = self.inner();
            let idle = a == (*inner).seen_allocs;
            (*inner).seen_allocs = a;
            idle
        }
    }
}

/// Takes a chunk that the node `f`, the head of slab `s`'s free list,
/// carries (see `slab` on batch nodes), without touching that chunk. The
/// node's count must be in range, and the address must lie in the slab below
/// the carve pointer, 16-byte aligned, and not be the node: a node
/// overwritten after its free is reported, not followed.
///
/// # Safety
/// `s` is a live slab whose lock we hold; `f` heads its free list and has
/// the `BATCH` flag.
#[inline(always)]
unsafe fn carried(s: *mut Desc, f: *mut u8) -> *mut u8 {
    let corrupt = || -> ! {
        crate::fmt::fatal_pointer(
            "malloc",
            f,
            "corrupted free list (a freed block was written to)",
        )
    };
    if !(1..=slab::MAX_CARRY).contains(&slab::batch_len(f)) {
        corrupt();
    }
    let q = slab::batch_take(f);
    let base = slab_base(s);
    let bump = (*s).bump.load(Ordering::Relaxed) as usize;
    if (q as usize).wrapping_sub(base) >= bump - base || q as usize & 15 != 0 || q == f {
        corrupt();
    }
    q
}

/// The slab of a chunk that the allocator itself holds (a cached chunk):
/// anything else is a corrupted cache, reported as such.
fn slab_of(q: *mut u8) -> *mut Desc {
    if let Some((f, _, _)) = pagemap::slab_fast(q as usize) {
        if f != 0 {
            return pagemap::slab_desc_fast(q as usize);
        }
    }
    match pagemap::lookup(q as usize) {
        pagemap::Lookup::Slab(d) => d,
        _ => crate::fmt::fatal_pointer("free", q, "corrupted per-CPU cache"),
    }
}

/// Gives a slab's pages back to the page runs. Counted on the owner zone,
/// whose lock the caller holds.
unsafe fn destroy(d: *mut Desc) {
    let c = (*d).class.load(Ordering::Relaxed) as usize % NCLASSES;
    let owner = (*d).owner.load(Ordering::Relaxed) as usize;
    bump_locked(&zone(owner).stats.class[c].slabs_freed);
    let (base, head) = pagemap::desc_home(d);
    let n = (*d).npages.load(Ordering::Relaxed) as usize;
    pagemap::close_slab_pages(base, head, n);
    (*d).state = 0;
    (*d).kind.store(KIND_NONE, Ordering::Release);
    GLOBAL.slabs_live.fetch_sub(1, Ordering::Relaxed);
    RUNS.free(base, head, n);
}

/// Pushes `n` chunks of `d`, linked from `head` to `tail` (their free marks
/// set), onto its remote list: one CAS, and one count, for all, and a
/// message to the owner only if that CAS found the slab detached. (Chunks
/// still waiting in an outbox are added to the totals by `stats`.)
///
/// # Safety
/// Every chunk of the list is a live chunk of the live slab `d`.
#[inline(always)]
unsafe fn free_remote_list(d: *mut Desc, head: *mut u8, tail: *mut u8, n: u64) {
    // Read before the CAS: afterwards the slab may be collected and released.
    // Owner and class come from the free map (the descriptor's first line is
    // the owner's, busy), the generation from the line the CAS takes.
    let (owner, c) = owner_class(d, head);
    let gen = (*d).gen.load(Ordering::Relaxed) & !INFO_MSG;
    let me = zone(cpu::current_zone());
    me.stats.class[c]
        .remote_frees
        .fetch_add(n, Ordering::Relaxed);
    match slab::remote_push_list(d, head, tail, n as usize) {
        Pushed::MustNotify => notify(me, owner, Msg { slab: d, gen }, true),
        Pushed::Quiet => {
            if crate::config::NOTIFY_EVERY.load(Ordering::Relaxed) {
                // The study mode: one informational message per chunk.
                for _ in 0..n {
                    notify(
                        me,
                        owner,
                        Msg {
                            slab: d,
                            gen: gen | INFO_MSG,
                        },
                        false,
                    );
                }
            }
        }
    }
}

/// Owner zone and class of slab `d`, which holds the chunk `p`: from the
/// free map if `p`'s page is open there, else from the descriptor.
///
/// # Safety
/// `d` is the live slab that holds `p`.
#[inline(always)]
pub unsafe fn owner_class(d: *mut Desc, p: *mut u8) -> (usize, usize) {
    if let Some((f, owner, _)) = pagemap::slab_fast(p as usize) {
        if f != 0 {
            return (owner, cache::class_at(f));
        }
    }
    (
        (*d).owner.load(Ordering::Relaxed) as usize,
        (*d).class.load(Ordering::Relaxed) as usize % NCLASSES,
    )
}

/// Frees another CPU's chunk `p` (its free mark set) through this CPU's
/// outbox; when the outbox is full, empties it first: its chunks are linked
/// into one list per slab (most come from a few slabs: the other CPUs'
/// current ones) and each list is pushed with one CAS.
///
/// # Safety
/// `p` is a live chunk of the live slab `d`, owned by another zone.
pub unsafe fn free_remote_batched(d: *mut Desc, p: *mut u8) {
    if cache::outbox_push(p) {
        return;
    }
    // Full, or not set up yet on this CPU (or the cache is off): empty it
    // and try once more, else free `p` on its own.
    // Frees in bulk to other zones, which may go quiet with the memory
    // (called from `free` only, with no lock held): ask for the reclaimer.
    crate::reclaim::after_free_slow_path();
    if cache::on() {
        cache::prepare_outbox();
        flush_outbox();
        if cache::outbox_push(p) {
            return;
        }
    }
    slab::set_link(p, 0);
    free_remote_list(d, p, p, 1);
}

/// Empties the current CPU's outbox onto the slabs' remote lists, one list
/// and one CAS per slab: the chunks are grouped in a small hash table keyed
/// by slab. (Eight open lists, the oldest closed for a further slab, made
/// several lists per slab when many classes were in use: server 2.4 chunks
/// per CAS against 3.6 now; sorting by slab gave 3.6 too, but the sort cost
/// more than the CASes it saved.) Where the chunks have room, the list's
/// head node carries the next chunks of its slab (`slab::batch_add`) rather
/// than linking them, so only the node is written here, and only the node is
/// read by the owner. Returns the number of chunks the outbox held.
pub fn flush_outbox() -> usize {
    /// Table slots (a power of two), and probes before a slab's list is
    /// pushed early to make room.
    const SLOTS: usize = 32;
    const PROBES: usize = 4;
    /// A slab's list: its descriptor, first and last node, chunks in all,
    /// chunks the first node carries and how many it can.
    #[derive(Clone, Copy)]
    struct Group {
        d: usize,
        head: *mut u8,
        tail: *mut u8,
        n: u64,
        carried: usize,
        room: usize,
    }
    const EMPTY: Group = Group {
        d: 0,
        head: ptr::null_mut(),
        tail: ptr::null_mut(),
        n: 0,
        carried: 0,
        room: 0,
    };
    let mut buf = [0usize; cache::CAP_MAX];
    let n = cache::outbox_take(&mut buf);
    let mut tab = [EMPTY; SLOTS];
    for &q in &buf[..n] {
        let q = q as *mut u8;
        let d = slab_of(q);
        let h = (d as usize >> 7).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 59;
        for probe in 1..=PROBES {
            let g = &mut tab[(h + probe) % SLOTS];
            // SAFETY (all blocks below): every chunk in the outbox is one the
            // user freed, validated by `free` and not yet given back: a live
            // chunk of the live slab `d`, now ours.
            if g.d == d as usize {
                if g.carried < g.room {
                    unsafe { slab::batch_add(g.head, g.carried, q) };
                    g.carried += 1;
                } else {
                    unsafe { slab::set_link(q, g.head as usize) };
                    g.head = q;
                    g.carried = 0;
                }
                g.n += 1;
                break;
            }
            if g.d == 0 || probe == PROBES {
                if g.d != 0 {
                    unsafe { free_remote_list(g.d as *mut Desc, g.head, g.tail, g.n) };
                }
                let (_, c) = unsafe { owner_class(d, q) };
                unsafe { slab::set_link(q, 0) };
                *g = Group {
                    d: d as usize,
                    head: q,
                    tail: q,
                    n: 1,
                    carried: 0,
                    room: slab::batch_cap(size_class::class_size(c)),
                };
                break;
            }
        }
    }
    for g in tab.iter().filter(|g| g.d != 0) {
        unsafe { free_remote_list(g.d as *mut Desc, g.head, g.tail, g.n) };
    }
    n
}

#[cold]
unsafe fn notify(me: &Zone, owner: usize, m: Msg, must: bool) {
    bump(&me.stats.notifications);
    match zone(owner).ring.post(m, must) {
        Posted::Ring => {}
        Posted::Overflow => bump(&me.stats.ring_overflows),
        Posted::Dropped => bump(&me.stats.msgs_dropped),
    }
    if crate::ring::ring_doorbell() {
        bump(&me.stats.futex_wakes);
    }
}

/// True if any zone's ring has messages.
pub fn any_ring_has_work() -> bool {
    (0..cpu::nzones()).any(|i| zone(i).ring.has_work())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Refills start at a page's worth of chunks and double up to the
    /// class's full batch, then stay there; classes whose full batch fits
    /// in a page get it at once.
    #[test]
    fn refill_batches_ramp_up() {
        // A zone no CPU of a test machine uses, so no other test refills it.
        let z = lock_index(cpu::MAX_ZONES - 1).expect("zone free");
        for c in 0..NCLASSES {
            let size = size_class::class_size(c);
            let full = cache::batch(c);
            let mut want = (PAGE_SIZE / size).clamp(1, full);
            for _ in 0..8 {
                assert_eq!(z.fill_batch(c), want, "class {c} ({size} B)");
                want = (want * 2).min(full);
            }
        }
    }
}
