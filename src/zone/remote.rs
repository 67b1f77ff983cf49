//! Frees of other zones' chunks: the outbox flush (one list and one CAS
//! per slab), the remote lists of slabs (`slab`), and the one message an
//! owner gets when a detached slab receives its first remote free.

use super::*;

// A batch node's entries are 16-bit offsets in 16-byte units (`slab`).
const _: () = assert!(size_class::MAX_SLAB_PAGES * PAGE_SIZE <= slab::CARRY_SPAN);

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
pub(super) unsafe fn carried(s: *mut Desc, f: *mut u8) -> *mut u8 {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe {
        if !(1..=slab::MAX_CARRY).contains(&slab::batch_len(f)) || !slab::batch_verify(f) {
            corrupt_node(f);
        }
        let base = slab_base(s);
        let q = slab::batch_take(f, base);
        let bump = (*s).bump() as usize;
        if (q as usize).wrapping_sub(base) >= bump - base || q == f {
            corrupt_node(f);
        }
        q
    }
}

/// Reports a batch node `f` whose count or entries were overwritten.
#[cold]
pub(super) fn corrupt_node(f: *mut u8) -> ! {
    crate::fmt::fatal_pointer(
        "malloc",
        f,
        "corrupted free list (a freed block was written to)",
    )
}

/// The slab of a chunk that the allocator itself holds (a cached chunk):
/// anything else is a corrupted cache, reported as such.
pub(super) fn slab_of(q: *mut u8) -> *mut Desc {
    if pagemap::open_page(q as usize).is_some() {
        return pagemap::slab_desc_fast(q as usize);
    }
    match pagemap::lookup(q as usize) {
        pagemap::Lookup::Slab(d) => d,
        _ => crate::fmt::fatal_pointer("free", q, "corrupted per-CPU cache"),
    }
}

/// Pushes `n` chunks of `d`, linked from `head` to `tail` (their free marks
/// set), onto its remote list: one CAS, and one count, for all, and a
/// message to the owner only if that CAS found the slab detached. (Chunks
/// still waiting in an outbox are added to the totals by `stats`.)
///
/// # Safety
/// Every chunk of the list is a live chunk of the live slab `d`.
#[inline(always)]
pub(super) unsafe fn free_remote_list(d: *mut Desc, head: *mut u8, tail: *mut u8, n: u64) {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe {
        // Read before the CAS: afterwards the slab may be collected and released.
        // Owner and class come from the free map (the descriptor's first line is
        // the owner's, busy), the generation from the line the CAS takes.
        let (owner, c) = owner_class(d, head);
        let gen = (*d).gen() & !INFO_MSG;
        let me = zone(cpu::current_zone());
        // (`get`: `c` is a class, and this spares the index a panic path.)
        if let Some(s) = me.stats.class.get(c) {
            s.remote_frees.fetch_add(n, Ordering::Relaxed);
        }
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
}

/// Owner zone and class of slab `d`, which holds the chunk `p`: from the
/// free map if `p`'s page is open there, else from the descriptor.
///
/// # Safety
/// `d` is the live slab that holds `p`.
#[inline(always)]
pub unsafe fn owner_class(d: *mut Desc, p: *mut u8) -> (usize, usize) {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe {
        if let Some((coff, owner)) = pagemap::open_page(p as usize) {
            return (owner, cache::class_at(coff));
        }
        ((*d).owner(), (*d).class() % NCLASSES)
    }
}

/// Frees another CPU's chunk `p` (its free mark set) through this CPU's
/// outbox; when the outbox is full, empties it first: its chunks are linked
/// into one list per slab (most come from a few slabs: the other CPUs'
/// current ones) and each list is pushed with one CAS. Returns true if `p`
/// just joined the outbox, false if this free flushed it or pushed `p` on
/// its own (the caller's cue for the reclaimer: frees in bulk to other
/// zones, which may go quiet with the memory).
///
/// # Safety
/// `p` is a live chunk of the live slab `d`, owned by another zone.
pub unsafe fn free_remote_batched(d: *mut Desc, p: *mut u8) -> bool {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe {
        if cache::outbox_push(p) {
            return true;
        }
        // Full, or not set up yet on this CPU (or the cache is off): empty it
        // and try once more, else free `p` on its own.
        if cache::on() {
            cache::prepare_outbox();
            flush_outbox();
            if cache::outbox_push(p) {
                return false;
            }
        }
        slab::set_link(p, 0);
        free_remote_list(d, p, p, 1);
        false
    }
}

/// Empties the current CPU's outbox onto the slabs' remote lists, one list
/// and one CAS per slab: the chunks are grouped in a small hash table keyed
/// by slab. (Eight open lists, the oldest closed for a further slab, made
/// several lists per slab when many classes were in use: server 2.4 chunks
/// per CAS against 3.6 now; sorting by slab gave 3.6 too, but the sort cost
/// more than the CASes it saved.) A chunk finds its group through a memo of
/// the group last used for its 64 KiB of address space, checked against
/// the group's slab range, and looks its slab up in the page map only on a
/// miss (the look-up per chunk took a fifth of the consumers' allocator
/// time in `xmalloc_like`; keying the groups by that unit instead made a
/// list per unit, several per slab, and sh6_like 8 % slower). Where the
/// chunks have room, the list's head node carries the next chunks of its
/// slab (`slab::batch_put`) rather than linking them, so only the node is
/// written here (its count and check once, when it is closed:
/// `slab::batch_seal`), and only the node is read by the owner. Returns the
/// number of chunks the outbox held.
pub fn flush_outbox() -> usize {
    /// Table slots (a power of two), and probes before a group is pushed
    /// early to make room.
    const SLOTS: usize = 32;
    const PROBES: usize = 4;
    /// Address bits below a memo entry's unit, and memo entries (direct
    /// mapped).
    const UNIT_SHIFT: u32 = 16;
    const MEMO: usize = 64;
    /// A slab's list: its descriptor, first chunk and bytes, first and last
    /// node, chunks in all, chunks the first node carries, how many it can,
    /// and the check of what it carries.
    #[derive(Clone, Copy)]
    struct Group {
        d: usize,
        lo: usize,
        span: usize,
        head: *mut u8,
        tail: *mut u8,
        n: u64,
        carried: usize,
        room: usize,
        chk: usize,
    }
    const EMPTY: Group = Group {
        d: 0,
        lo: 0,
        span: 0,
        head: ptr::null_mut(),
        tail: ptr::null_mut(),
        n: 0,
        carried: 0,
        room: 0,
        chk: 0,
    };
    /// Adds `q`, a chunk of the group's slab, to the group.
    ///
    /// # Safety
    /// `g` is an open group and `q` a live chunk of its slab, ours.
    #[inline(always)]
    unsafe fn add(g: &mut Group, q: *mut u8) {
        // SAFETY: the caller upholds the contract in `# Safety` above.
        unsafe {
            if g.carried < g.room {
                g.chk ^= slab::batch_put(g.head, g.carried, q, g.lo);
                g.carried += 1;
            } else {
                slab::batch_seal(g.head, g.carried, g.chk);
                slab::set_link(q, g.head as usize);
                g.head = q;
                g.carried = 0;
                g.chk = 0;
            }
            g.n += 1;
        }
    }
    /// Seals the group's head node and pushes its list.
    ///
    /// # Safety
    /// `g` is an open group: its chunks live chunks of its live slab.
    unsafe fn close(g: &Group) {
        // SAFETY: the caller upholds the contract in `# Safety` above.
        unsafe {
            slab::batch_seal(g.head, g.carried, g.chk);
            free_remote_list(g.d as *mut Desc, g.head, g.tail, g.n);
        }
    }
    let mut buf = [0usize; cache::CAP_MAX];
    let n = cache::outbox_take(&mut buf);
    let mut tab = [EMPTY; SLOTS];
    let mut memo = [0u8; MEMO];
    // SAFETY (all blocks below): every chunk in the outbox is one the user
    // freed, validated by `free` and not yet given back: a live chunk of a
    // live slab, now ours, and a live slab's chunks lie in its range and no
    // other live slab's. A group's chunks are of its slab: the first was
    // looked up (`slab_of`), the others lie in its range.
    // (`n` is at most `CAP_MAX`; the `min` spares the slicing its panic
    // path.)
    for &q in &buf[..n.min(cache::CAP_MAX)] {
        let u = (q >> UNIT_SHIFT) % MEMO;
        let m = memo[u] as usize % SLOTS;
        let g = &mut tab[m];
        if q.wrapping_sub(g.lo) < g.span {
            // SAFETY: see above.
            unsafe { add(g, q as *mut u8) };
            continue;
        }
        let q = q as *mut u8;
        let d = slab_of(q);
        let h = (d as usize >> 7).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 59;
        for probe in 1..=PROBES {
            let k = (h + probe) % SLOTS;
            let g = &mut tab[k];
            if g.d == d as usize {
                // SAFETY: see above.
                unsafe { add(g, q) };
                memo[u] = k as u8;
                break;
            }
            if g.d == 0 || probe == PROBES {
                if g.d != 0 {
                    // SAFETY: see above.
                    unsafe { close(g) };
                }
                // SAFETY: see above.
                let (_, c) = unsafe { owner_class(d, q) };
                // SAFETY: see above.
                unsafe { slab::set_link(q, 0) };
                *g = Group {
                    d: d as usize,
                    lo: slab_base(d),
                    span: size_class::capacity(c) * size_class::class_size(c),
                    head: q,
                    tail: q,
                    n: 1,
                    carried: 0,
                    room: slab::batch_cap(size_class::class_size(c)),
                    chk: 0,
                };
                memo[u] = k as u8;
                break;
            }
        }
    }
    for g in tab.iter().filter(|g| g.d != 0) {
        // SAFETY: see above.
        unsafe { close(g) };
    }
    n
}

#[cold]
pub(super) unsafe fn notify(me: &Zone, owner: usize, m: Msg, must: bool) {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe {
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
}

/// True if any zone's ring has messages.
pub fn any_ring_has_work() -> bool {
    (0..cpu::nzones()).any(|i| zone(i).ring.has_work())
}
