//! The page map: DragonFly's `kmemusage`, for user space.
//!
//! Address space is reserved in *arenas* of 64 MiB aligned to 64 MiB. A static
//! byte map with one entry per 64 MiB of the 47-bit address space says whether
//! a region is one of our arenas, the head of a huge mapping, or the tail of
//! one. Inside an arena, the first pages hold metadata, out of line from the
//! memory handed to users:
//!
//! * a `u16` per page naming the *head page* of the run that contains it
//!   (valid for every page of an allocated run and for the first and last page
//!   of a free run);
//! * a 32-byte [`FreeEntry`] per page for `free`'s fast path: for a page of a
//!   live slab whose chunks have all been carved, the chunk check of the slab
//!   (multiplier, slab start times it, bound), the class's cache stack and
//!   the owner, so that the common `free` never reads the descriptor and
//!   validates a chunk with one multiply, one subtract and one compare;
//! * a 128-byte [`Desc`] per page, used only for head pages: what the run is
//!   (slab, large block, free run), its size, owner and generation, and for
//!   slabs the free lists. The remote-free word has its own cache line.
//!
//! So `lookup(ptr)` answers "is this ours, which run, what kind, which owner"
//! in O(1) without touching the chunk. Arenas are never unmapped (only purged),
//! which makes descriptors type-stable: a stale pointer to one can always be
//! read, and the generation number tells whether it still means the same slab.

use crate::os::PAGE_SIZE;
use core::cell::Cell;
use core::sync::atomic::{
    AtomicPtr, AtomicU16, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering,
};

pub const ARENA_SHIFT: usize = 26;
pub const ARENA_SIZE: usize = 1 << ARENA_SHIFT;
pub const PAGE_SHIFT: usize = 12;
pub const ARENA_PAGES: usize = ARENA_SIZE / PAGE_SIZE;
/// 47-bit user address space.
const ADDR_BITS: usize = 47;
const NREGIONS: usize = 1 << (ADDR_BITS - ARENA_SHIFT);

/// The free map: a [`FreeEntry`] per page, all that `free` needs to take a
/// chunk of the page without reading the slab's descriptor (see
/// `chunk_fast`). At the arena's start, so that an entry's address is the
/// arena base plus the page's index times 32, with no offset to add.
const FREE_MAP_OFFSET: usize = 0;
const FREE_ENTRY_SIZE: usize = core::mem::size_of::<FreeEntry>();
const MAP_OFFSET: usize = FREE_MAP_OFFSET + ARENA_PAGES * FREE_ENTRY_SIZE;
const DESC_OFFSET: usize = MAP_OFFSET + ARENA_PAGES * 2;
const _: () = assert!(MAP_OFFSET.is_multiple_of(PAGE_SIZE));
const _: () = assert!(DESC_OFFSET.is_multiple_of(PAGE_SIZE));
pub const DESC_SIZE: usize = 128;
/// Pages at the start of each arena that hold its metadata.
pub const META_PAGES: usize = (DESC_OFFSET + ARENA_PAGES * DESC_SIZE) / PAGE_SIZE;
/// Most arenas we can register (4096 x 64 MiB = 256 GiB).
pub const MAX_ARENAS: usize = 4096;

/// Region kinds in the byte map.
pub const REGION_NONE: u8 = 0;
pub const REGION_ARENA: u8 = 1;
pub const REGION_HUGE: u8 = 2;
pub const REGION_HUGE_TAIL: u8 = 3;

/// Run kinds in a descriptor.
pub const KIND_NONE: u8 = 0;
pub const KIND_FREE: u8 = 1;
pub const KIND_SLAB: u8 = 2;
pub const KIND_LARGE: u8 = 3;
/// A freed large block kept for reuse, by a CPU's large rings
/// (`cache/large.rs`) or its zone (`zone/bigs.rs`).
pub const KIND_CACHED: u8 = 5;

// Right after the small statics, in this order (`ffi/cold.ld`): the first
// entries, which a lookup of NULL or of a low address reads, share the
// statics' last page; the rest is read one page at a time, where arenas
// and the library lie.
#[link_section = ".bss.map.0regions"]
static REGIONS: [AtomicU8; NREGIONS] = [const { AtomicU8::new(0) }; NREGIONS];
#[link_section = ".bss.map.1arenas"]
static ARENAS: [AtomicUsize; MAX_ARENAS] = [const { AtomicUsize::new(0) }; MAX_ARENAS];
static NARENAS: AtomicUsize = AtomicUsize::new(0);

/// Per-page descriptor (used for run heads only). Fields read by threads that
/// do not hold the owning lock are atomics; the rest belong to the lock that
/// owns the run (the page lock for free runs, the owner zone's lock for slabs).
///
/// Two cache lines: the owner's, and the words remote CPUs write. (A layout
/// with the read-mostly fields on a third line of their own, 256 bytes in
/// all, measured no faster here and put each 16-page slab's descriptor on a
/// page of its own: about 4 KiB more resident memory per slab.)
#[repr(C, align(128))]
pub struct Desc {
    // --- first cache line: owner side ---
    kind: AtomicU8,
    class: AtomicU8,
    owner: AtomicU16,
    npages: AtomicU32,
    used: Cell<u32>,
    /// Slab: where the owner keeps it (see `zone::State`). Free run: dirty flag.
    state: Cell<u8>,
    _pad0: u8,
    /// Slab: end of the chunk area.
    end: Cell<*mut u8>,
    /// Slab: local free list (linked through the first word of each chunk).
    free: Cell<*mut u8>,
    /// Slab: chunks never handed out yet are carved lazily from [bump, end).
    /// Written by the owner under its lock; an atomic (relaxed, plain moves on
    /// x86) because `free` reads it without the lock, inside the per-CPU
    /// cache's section, to refuse a pointer past it (see `cache`).
    bump: AtomicPtr<u8>,
    /// List links: slab lists of a zone, or size bins of free runs.
    prev: Cell<*mut Desc>,
    next: Cell<*mut Desc>,
    /// Dirty free runs: when the run became dirty (`os::now_ms`), for decay.
    since: Cell<u64>,
    // --- second cache line: the words remote CPUs write ---
    /// Slab: remote-free list head, tagged with `slab::DETACHED`.
    rchunks: AtomicUsize,
    /// Slab: link on the owner's overflow list of notified slabs.
    notify_next: AtomicPtr<Desc>,
    /// Free runs (never slabs, so no remote traffic): dirty-run age list.
    lru_prev: Cell<*mut Desc>,
    lru_next: Cell<*mut Desc>,
    /// Generation, bumped when the run stops being the slab it was: a
    /// remote free reads it (for a notification) before its CAS, so it
    /// lives on the line that the CAS takes anyway; the owner writes it
    /// only when a slab is made or given up.
    gen: AtomicU32,
    _pad: [u8; 28],
}

/// Plain (`Cell`) fields: read and written only by the holder of the lock
/// that owns the run, which the caller of a setter or getter holds.
macro_rules! owned_field {
    ($($(#[$m:meta])* $get:ident, $set:ident: $t:ty;)*) => {
        $(
            $(#[$m])*
            #[inline(always)]
            pub fn $get(&self) -> $t {
                self.$get.get()
            }
            #[inline(always)]
            pub fn $set(&self, v: $t) {
                self.$get.set(v)
            }
        )*
    };
}

impl Desc {
    owned_field! {
        /// Chunks handed out (slabs), the owner's count.
        used, set_used: u32;
        /// Where the owner keeps the slab (`zone::State`), or a free run's
        /// dirty flag.
        state, set_state: u8;
        /// A slab's end of chunks.
        end, set_end: *mut u8;
        /// A slab's local free list.
        free, set_free: *mut u8;
        /// List links (zone lists of slabs, size bins of free runs).
        prev, set_prev: *mut Desc;
        next, set_next: *mut Desc;
        /// A dirty free run: when it became dirty (`os::now_ms`), for decay.
        since, set_since: u64;
        /// A free run's place on the dirty-run age list.
        lru_prev, set_lru_prev: *mut Desc;
        lru_next, set_lru_next: *mut Desc;
    }

    /// What the run is (`KIND_*`). Acquire: a lookup that sees a kind sees
    /// the fields written before it was published.
    #[inline(always)]
    pub fn kind(&self) -> u8 {
        self.kind.load(Ordering::Acquire)
    }

    /// Publishes the run's kind (Release, pairs with `kind`).
    #[inline(always)]
    pub fn set_kind(&self, k: u8) {
        self.kind.store(k, Ordering::Release)
    }

    /// A slab's size class. Relaxed: set before the slab is published (its
    /// kind, with Release) and constant while it is a slab.
    #[inline(always)]
    pub fn class(&self) -> usize {
        self.class.load(Ordering::Relaxed) as usize
    }

    #[inline(always)]
    pub fn set_class(&self, c: usize) {
        self.class.store(c as u8, Ordering::Relaxed)
    }

    /// A slab's owner zone (as `class`).
    #[inline(always)]
    pub fn owner(&self) -> usize {
        self.owner.load(Ordering::Relaxed) as usize
    }

    #[inline(always)]
    pub fn set_owner(&self, z: usize) {
        self.owner.store(z as u16, Ordering::Relaxed)
    }

    /// Pages of the run.
    #[inline(always)]
    pub fn npages(&self) -> usize {
        self.npages.load(Ordering::Relaxed) as usize
    }

    /// Sets the run's page count. Release: a large block's size is read by
    /// `free` and `realloc` of other threads after they look its kind up.
    #[inline(always)]
    pub fn set_npages(&self, n: usize) {
        self.npages.store(n as u32, Ordering::Release)
    }

    /// A slab's carve pointer: chunks from here to `end` were never handed
    /// out. Read without the lock by `free` (Relaxed: a plain move).
    #[inline(always)]
    pub fn bump(&self) -> *mut u8 {
        self.bump.load(Ordering::Relaxed)
    }

    /// Moves the carve pointer (owner, under its lock).
    #[inline(always)]
    pub fn set_bump(&self, p: *mut u8) {
        self.bump.store(p, Ordering::Relaxed)
    }

    /// The remote-free word (`slab`'s protocol: list head, `DETACHED` tag,
    /// count), on the second cache line.
    #[inline(always)]
    pub fn rchunks(&self) -> &AtomicUsize {
        &self.rchunks
    }

    /// The next slab on an overflow list of notified slabs (`ring`).
    #[inline(always)]
    pub fn notify_next(&self) -> *mut Desc {
        self.notify_next.load(Ordering::Relaxed)
    }

    /// Links the slab on an overflow list; the list head's CAS publishes it.
    #[inline(always)]
    pub fn set_notify_next(&self, d: *mut Desc) {
        self.notify_next.store(d, Ordering::Relaxed)
    }

    /// The slab's generation (see the field).
    #[inline(always)]
    pub fn gen(&self) -> u32 {
        self.gen.load(Ordering::Relaxed)
    }

    /// Starts a new generation: the run stops being the slab it was.
    #[inline(always)]
    pub fn next_gen(&self) {
        self.gen.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: descriptors live in shared arena metadata; their plain fields are
// only touched under the lock that owns the run (page lock or owner zone lock),
// and the fields other threads read are atomics.
unsafe impl Sync for Desc {}
// SAFETY: as above; a descriptor has no thread affinity.
unsafe impl Send for Desc {}

const _: () = assert!(core::mem::size_of::<Desc>() == DESC_SIZE);
const _: () = assert!(core::mem::offset_of!(Desc, rchunks) == 64);
const _: () = assert!(META_PAGES < ARENA_PAGES && META_PAGES * PAGE_SIZE >= DESC_OFFSET);

/// Registers a new arena at `base` (ARENA_SIZE-aligned, freshly mapped).
/// Returns false if the registry is full.
pub fn register_arena(base: usize) -> bool {
    let n = NARENAS.load(Ordering::Relaxed);
    if n >= MAX_ARENAS {
        return false;
    }
    ARENAS[n].store(base, Ordering::Relaxed);
    // Release: a reader that sees the new count sees the slot.
    NARENAS.store(n + 1, Ordering::Release);
    set_region(base, REGION_ARENA);
    true
}

pub fn narenas() -> usize {
    NARENAS.load(Ordering::Acquire)
}

pub fn arena_at(i: usize) -> usize {
    ARENAS.get(i).map_or(0, |a| a.load(Ordering::Relaxed))
}

pub fn set_region(addr: usize, kind: u8) {
    if let Some(r) = REGIONS.get(addr >> ARENA_SHIFT) {
        r.store(kind, Ordering::Release);
    }
}

#[inline(always)]
pub fn region_of(addr: usize) -> u8 {
    match REGIONS.get(addr >> ARENA_SHIFT) {
        Some(r) => r.load(Ordering::Acquire),
        None => REGION_NONE,
    }
}

/// The page-map slot of page `page` of the arena at `base`.
#[inline(always)]
pub fn map_slot(base: usize, page: usize) -> &'static AtomicU16 {
    debug_assert!(page < ARENA_PAGES);
    // SAFETY: the map lies at MAP_OFFSET in every registered arena, holds
    // ARENA_PAGES u16 entries, and arenas are never unmapped; `page` is masked
    // into range.
    unsafe { &*((base + MAP_OFFSET) as *const AtomicU16).add(page & (ARENA_PAGES - 1)) }
}

/// A page's entry in the free map: what `free` needs to take a chunk of
/// the page without reading the slab's descriptor. All zero (`below` 0)
/// means "not a page `free` may take chunks from without looking further";
/// an open page (`open_slab_pages`) holds its slab's chunk check and where
/// its chunks go:
///
/// * `mul` and `below`: the class's chunk check (`size_class::ClassInfo`):
///   an offset `off` from the slab start is a chunk start iff `off * mul`
///   (wrapping) is below `below`;
/// * `s`: the slab's start times `mul` (wrapping), so that `p * mul - s` is
///   `off * mul` and the check needs no subtraction of the start first:
///   one multiply, one subtract, one compare;
/// * `coff`: the offset of the class's stack in a CPU's cache block
///   (`cache_layout::stack_offset`), which `free` pushes onto as it is;
/// * `owner`: the slab's owner zone.
///
/// The fields are separate words. While a chunk of the page is live (the
/// only time a `free` of it is valid) the entry is constant, so a valid
/// free reads it whole. A free racing with the slab's teardown and reuse
/// (a double free of memory already handed out again, which no allocator
/// can always tell from a valid free) may read a mix of two entries;
/// `close_slab_pages` clears `below` first and `open_slab_pages` sets it
/// last, so a mix that passes the check can only come from that race.
#[repr(C, align(32))]
pub struct FreeEntry {
    s: AtomicU64,
    mul: AtomicU64,
    below: AtomicU64,
    coff: AtomicU32,
    owner: AtomicU32,
}
const _: () = assert!(FREE_ENTRY_SIZE == 32);
const _: () = assert!(
    core::mem::offset_of!(FreeEntry, s) == 0
        && core::mem::offset_of!(FreeEntry, mul) == 8
        && core::mem::offset_of!(FreeEntry, below) == 16,
    "arch::check_mul_below reads the words at these offsets"
);

/// A word of arena metadata that `runs` keeps (its carve watermark): the
/// first word (`s`) of page 0's free-map entry. Page 0 is metadata, never
/// opened, so that entry's `below` stays 0 and its check refuses every
/// pointer whatever `s` holds.
pub fn arena_word(base: usize) -> &'static AtomicUsize {
    const _: () = assert!(META_PAGES > 0 && FREE_MAP_OFFSET == 0);
    const _: () = assert!(core::mem::size_of::<usize>() == 8);
    // SAFETY: the entry's `s` is an 8-aligned `AtomicU64` in a registered
    // arena (never unmapped), which `AtomicUsize` matches in size and
    // alignment on this 64-bit target; nothing else writes page 0's entry.
    unsafe { &*(&free_slot(base, 0).s as *const AtomicU64 as *const AtomicUsize) }
}

/// The free-map entry of page `page` of the arena at `base`.
#[inline(always)]
fn free_slot(base: usize, page: usize) -> &'static FreeEntry {
    // SAFETY: as in `map_slot`: the free map lies at FREE_MAP_OFFSET in
    // every registered arena, ARENA_PAGES entries; `page` is masked into range.
    unsafe { &*((base + FREE_MAP_OFFSET) as *const FreeEntry).add(page & (ARENA_PAGES - 1)) }
}

const _: () = assert!(crate::cpu::MAX_ZONES <= u32::MAX as usize);

/// Opens pages `from..to` (indices within the slab) of slab `d`, class `c`,
/// owner `owner`, to `free`'s fast path: the owner calls it, under its lock,
/// once its carve pointer has passed every chunk start in those pages (a
/// chunk that was never handed out could otherwise be freed into a cache).
/// `below` is stored last, with Release: a `free` that reads it (on x86-64
/// every load acquires) reads the fields stored before it.
pub fn open_slab_pages(d: *const Desc, from: usize, to: usize, c: usize, owner: usize) {
    let (base, head) = desc_home(d);
    let info = &crate::size_class::CLASS_INFO[c % crate::size_class::NCLASSES];
    let s = (page_addr(base, head) as u64).wrapping_mul(info.mul());
    for k in from..to {
        let e = free_slot(base, head + k);
        e.s.store(s, Ordering::Relaxed);
        e.mul.store(info.mul(), Ordering::Relaxed);
        e.coff.store(
            crate::cache_layout::stack_offset(c) as u32,
            Ordering::Relaxed,
        );
        e.owner.store(owner as u32, Ordering::Relaxed);
        e.below.store(info.below(), Ordering::Release);
    }
}

/// Closes all `npages` pages of the slab at page `head` to the fast path
/// (the slab is emptied for reuse, or destroyed): `below` first, so that
/// the check refuses every offset before anything else changes.
pub fn close_slab_pages(base: usize, head: usize, npages: usize) {
    for page in head..head + npages {
        let e = free_slot(base, page);
        e.below.store(0, Ordering::Release);
        e.coff.store(0, Ordering::Relaxed);
    }
}

/// Descriptor slots are ordered by page number modulo 16 first, then by
/// page number: heads of runs laid end to end every 16 pages (or 32: slabs)
/// get adjacent (or every other) slots, 32 to a metadata page, instead of a
/// metadata page per slab or two. Only the descriptor array's order changes.
/// The cost falls on workloads of many large runs, whose heads lie
/// anywhere: each of the 16 rows touches pages of its own (mixed 232 ->
/// 292 KiB of descriptors, threads_noshare 440 -> 592 KiB, against churn
/// 180 -> 36 and server 164 -> 28); ordering modulo 32 made that worse
/// (mixed 396 KiB) and gained nothing on slabs.
const DESC_STRIDE_SHIFT: usize = 4;
const DESC_ROWS: usize = ARENA_PAGES >> DESC_STRIDE_SHIFT;

/// The descriptor slot of page `page` (a permutation of 0..ARENA_PAGES).
#[inline(always)]
const fn desc_slot(page: usize) -> usize {
    let page = page & (ARENA_PAGES - 1);
    (page & ((1 << DESC_STRIDE_SHIFT) - 1)) * DESC_ROWS + (page >> DESC_STRIDE_SHIFT)
}

/// The page of descriptor slot `slot` (the inverse of `desc_slot`).
#[inline(always)]
const fn slot_page(slot: usize) -> usize {
    ((slot % DESC_ROWS) << DESC_STRIDE_SHIFT) | (slot / DESC_ROWS)
}

/// The descriptor of page `page` of the arena at `base`.
#[inline(always)]
pub fn desc(base: usize, page: usize) -> *mut Desc {
    ((base + DESC_OFFSET) as *mut Desc).wrapping_add(desc_slot(page))
}

/// Arena base and page index of a descriptor pointer.
#[inline(always)]
pub fn desc_home(d: *const Desc) -> (usize, usize) {
    let a = d as usize & !(ARENA_SIZE - 1);
    (a, slot_page((d as usize - a - DESC_OFFSET) / DESC_SIZE))
}

/// Address of page `page` of the arena at `base`.
#[inline(always)]
pub fn page_addr(base: usize, page: usize) -> usize {
    base + (page << PAGE_SHIFT)
}

/// True if `d` points at a descriptor slot inside one of our arenas (used to
/// validate descriptors named in ring messages before touching them).
pub fn is_desc_ptr(d: *const Desc) -> bool {
    let a = d as usize;
    if region_of(a) != REGION_ARENA {
        return false;
    }
    let off = a & (ARENA_SIZE - 1);
    if off < DESC_OFFSET || !(off - DESC_OFFSET).is_multiple_of(DESC_SIZE) {
        return false;
    }
    let slot = (off - DESC_OFFSET) / DESC_SIZE;
    slot < ARENA_PAGES && (META_PAGES..ARENA_PAGES).contains(&slot_page(slot))
}

/// What a pointer is, according to the page map.
pub enum Lookup {
    /// Not in any region we manage.
    Foreign,
    /// A live slab; the chunk still has to be validated against it.
    Slab(*mut Desc),
    /// The head page of a large run (ptr is page-aligned at the run start).
    Large(*mut Desc),
    /// In the head region of a huge mapping (`large::huge_usable` validates).
    Huge,
    /// Inside our memory but not the start of a live block; the text says why.
    Invalid(&'static str),
}

/// The free-map entry of `ptr`'s page, if `ptr` lies in an arena.
#[inline(always)]
fn free_entry_of(ptr: usize) -> Option<&'static FreeEntry> {
    if region_of(ptr) != REGION_ARENA {
        return None;
    }
    let base = ptr & !(ARENA_SIZE - 1);
    Some(free_slot(base, (ptr - base) >> PAGE_SHIFT))
}

/// The fast path of `lookup` for `free`: for `ptr` the start of a chunk
/// on an open page of the free map (`open_slab_pages`: a live slab all of
/// whose chunks on that page have been carved, so `ptr` lies below the
/// slab's carve pointer), the offset of its class's stack in a CPU's cache
/// block (`cache::stack_offset`) and its owner zone. None for anything
/// else: a pointer outside the arenas, on a page that is not open, or not
/// at a chunk start (the caller then runs `lookup`, which explains). The
/// descriptor is not read at all.
#[inline(always)]
pub fn chunk_fast(ptr: usize) -> Option<(usize, usize)> {
    let e = free_entry_of(ptr)?;
    // SAFETY: `e` is an entry of a registered arena's free map, whose
    // first three words are `s`, `mul` and `below` (asserted below).
    if !unsafe { crate::arch::check_mul_below(e as *const FreeEntry as *const u64, ptr) } {
        return None;
    }
    Some((
        e.coff.load(Ordering::Relaxed) as usize,
        e.owner.load(Ordering::Relaxed) as usize,
    ))
}

/// For `ptr` on an open page of the free map, its class's stack offset
/// (`chunk_fast`) and its slab's owner; None for any other page. Says
/// nothing of whether `ptr` is a chunk start.
#[inline(always)]
pub fn open_page(ptr: usize) -> Option<(usize, usize)> {
    let e = free_entry_of(ptr)?;
    let coff = e.coff.load(Ordering::Acquire) as usize;
    (coff != 0).then(|| (coff, e.owner.load(Ordering::Relaxed) as usize))
}

/// The descriptor of the slab holding `ptr`, a chunk of a live slab (from
/// the head-page map, which stays put while the slab lives).
#[inline(always)]
pub fn slab_desc_fast(ptr: usize) -> *mut Desc {
    let base = ptr & !(ARENA_SIZE - 1);
    let page = (ptr - base) >> PAGE_SHIFT;
    let head = map_slot(base, page).load(Ordering::Relaxed) as usize;
    desc(base, head)
}

/// Classifies `ptr` in O(1) without touching the memory it points to.
#[inline(always)]
pub fn lookup(ptr: usize) -> Lookup {
    match region_of(ptr) {
        REGION_ARENA => {}
        REGION_NONE => return Lookup::Foreign,
        REGION_HUGE => return Lookup::Huge,
        _ => return Lookup::Invalid("pointer into the middle of a huge block"),
    }
    let base = ptr & !(ARENA_SIZE - 1);
    let page = (ptr - base) >> PAGE_SHIFT;
    if page < META_PAGES {
        return Lookup::Invalid("pointer into allocator metadata");
    }
    let head = map_slot(base, page).load(Ordering::Relaxed) as usize;
    if head < META_PAGES || head > page {
        return Lookup::Invalid(inside_run(base, page));
    }
    let d = desc(base, head);
    // SAFETY: d is a descriptor slot of a registered arena (type-stable).
    let (kind, npages) = unsafe { ((*d).kind(), (*d).npages()) };
    if page >= head + npages || kind == KIND_NONE {
        return Lookup::Invalid(inside_run(base, page));
    }
    match kind {
        KIND_SLAB => Lookup::Slab(d),
        KIND_LARGE if page == head && ptr & (PAGE_SIZE - 1) == 0 => Lookup::Large(d),
        _ => Lookup::Invalid(inside(kind)),
    }
}

/// What a pointer inside a run of kind `kind` (not a slab's, nor a large
/// block's start) points into.
#[inline(always)]
fn inside(kind: u8) -> &'static str {
    // (Free and cached runs' kinds share their low bit, which one test
    // reads: a fourth arm made the choice a table in the library's
    // read-only segment, which `cold_text start` keeps to seven pages.)
    const _: () = assert!(KIND_FREE & KIND_CACHED & 1 == 1 && KIND_NONE & 1 == 0);
    if kind == KIND_LARGE {
        "pointer into the middle of a large block"
    } else if kind & 1 != 0 {
        "pointer to freed memory (double free?)"
    } else {
        "pointer to memory that is not allocated"
    }
}

/// `page`'s entry in the page map names no run that holds it: the page
/// lies inside a run whose inner pages the map does not name (a large
/// block's or a stash array's, `runs::MapPages::Ends`, or a free run's),
/// or in none. Finds the run by walking the descriptors back to the
/// nearest run head (only a run's head descriptor has a kind: every path
/// that ends a run or merges it into another clears its head's), to say
/// what the pointer points into. Only on the way to an error report.
#[cold]
#[inline(never)]
fn inside_run(base: usize, page: usize) -> &'static str {
    for q in (META_PAGES..=page).rev() {
        let d = desc(base, q);
        // SAFETY: d is a descriptor slot of a registered arena (type-stable).
        let (kind, npages) = unsafe { ((*d).kind(), (*d).npages()) };
        if kind != KIND_NONE {
            if page < q + npages && kind != KIND_SLAB {
                return inside(kind);
            }
            break;
        }
    }
    "pointer to memory that was never allocated"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        assert_eq!(META_PAGES, 648);
        assert!(MAX_ARENAS.is_power_of_two());
        let base = 5 * ARENA_SIZE;
        let d = desc(base, 600);
        assert_eq!(desc_home(d), (base, 600));
        for page in 0..ARENA_PAGES {
            assert_eq!(slot_page(desc_slot(page)), page);
            assert_eq!(desc_home(desc(base, page)), (base, page));
        }
        // Slabs laid end to end share descriptor pages.
        let per_page = PAGE_SIZE / DESC_SIZE;
        assert_eq!(
            desc(base, 600 + 16) as usize - desc(base, 600) as usize,
            DESC_SIZE
        );
        assert!(desc_slot(600 + 16 * (per_page - 1)) / per_page - desc_slot(600) / per_page <= 1);
        assert_eq!(page_addr(base, 1), base + 4096);
    }

    #[test]
    fn foreign_pointers_are_foreign() {
        let x = 5u64;
        assert!(matches!(lookup(&x as *const u64 as usize), Lookup::Foreign));
        assert!(matches!(lookup(usize::MAX), Lookup::Foreign));
        assert!(matches!(lookup(0), Lookup::Foreign));
        assert!(!is_desc_ptr(&x as *const u64 as *const Desc));
    }

    /// Every live chunk lies on a page the free map has opened, with the
    /// slab's class and owner, every chunk start on that page lies below
    /// the slab's carve pointer (what lets `free` skip the descriptor), and
    /// the page's check accepts exactly the chunk starts of the slab: every
    /// 8-byte offset of the page is tried.
    #[test]
    fn free_map_covers_every_live_chunk() {
        crate::alloc::ensure_init();
        let ptrs: Vec<usize> = (0..3000)
            .map(|i| crate::alloc::malloc(16 + (i * 37) % 16000) as usize)
            .collect();
        let mut small = 0;
        for &p in &ptrs {
            let Lookup::Slab(d) = lookup(p) else { continue };
            small += 1;
            let (coff, owner) = chunk_fast(p).unwrap();
            assert_eq!(open_page(p), Some((coff, owner)));
            // SAFETY: `d` is the live slab of a chunk we hold.
            unsafe {
                let c = (*d).class();
                assert_eq!(coff, crate::cache::stack_offset(c));
                assert_eq!(owner, (*d).owner());
                assert_eq!(slab_desc_fast(p), d);
                let page_end = (p | (PAGE_SIZE - 1)) + 1;
                let bump = (*d).bump() as usize;
                assert!(bump >= page_end.min((*d).end() as usize), "{p:#x}");
                let start = crate::zone::slab_base(d);
                let size = crate::size_class::class_size(c);
                let end = start + crate::size_class::capacity(c) * size;
                for q in (page_end - PAGE_SIZE..page_end).step_by(8) {
                    let want = (q - start).is_multiple_of(size) && q < end;
                    assert_eq!(chunk_fast(q).is_some(), want, "{q:#x} in {p:#x}'s page");
                }
            }
        }
        assert!(small > 2000);
        for p in ptrs {
            crate::alloc::free(p as *mut u8);
        }
        assert!(chunk_fast(0).is_none() && open_page(usize::MAX).is_none());
    }

    #[test]
    fn our_pointers_are_classified() {
        crate::alloc::ensure_init();
        // The zones' blocks, not the starter heap's (which serves a
        // process's first blocks: this test alone in its process failed).
        crate::starter::retire_now();
        let p = crate::alloc::malloc(100) as usize;
        assert!(matches!(lookup(p), Lookup::Slab(_)));
        if let Lookup::Slab(d) = lookup(p) {
            assert!(is_desc_ptr(d));
        }
        let q = crate::alloc::malloc(100_000) as usize;
        assert!(matches!(lookup(q), Lookup::Large(_)));
        // The page map names only a large block's first and last pages
        // (`MapPages::Ends`): a pointer into any of its pages (25 of them
        // here) is still reported as what it is.
        for off in [4096, 50_000, 98_304, 99_999] {
            assert!(
                matches!(lookup(q + off), Lookup::Invalid(m) if m.contains("middle of a large block")),
                "offset {off}"
            );
        }
        let base = p & !(ARENA_SIZE - 1);
        assert!(matches!(lookup(base + 8), Lookup::Invalid(_)));
        crate::alloc::free(p as *mut u8);
        crate::alloc::free(q as *mut u8);
    }
}
