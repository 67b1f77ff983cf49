//! Per-CPU event rings: how a remote free tells an owner CPU that one of its
//! detached slabs has free chunks again.
//!
//! A ring is a bounded lock-free multi-producer queue (Vyukov's cell-sequence
//! design) of `(slab descriptor, generation)` messages. Producers are remote
//! freeing threads; the consumer is whoever holds the owner zone's lock. The
//! chunk is already linked on its slab when the message is sent, so the message
//! must never be lost: when the ring is full the slab goes on the zone's
//! intrusive overflow list instead (pushed with one CAS, taken with one swap),
//! which cannot overflow because the detach protocol puts a slab there at most
//! once per detach.
//!
//! The rings share one futex doorbell: the background reclaimer sleeps on it
//! when every ring is empty. "Wake only if someone sleeps" is a Dekker pattern:
//! the producer publishes, issues a SeqCst fence, then reads the sleeper flag;
//! the sleeper sets the flag, issues a SeqCst fence, then re-checks the rings
//! before `FUTEX_WAIT`. Either the producer sees the flag or the sleeper sees
//! the message. With no sleeper, a producer makes no system call at all.
//!
//! `tests/loom.rs` model-checks this very file under `--cfg loom`: loom's
//! atomics (through the test crate's `loom_atomic`), a two-cell ring, the
//! doorbell words as loom statics, and the futex modelled by the test crate's
//! `os`. Without loom nothing here changes.

use crate::pagemap::Desc;
use core::ptr;
#[cfg(not(loom))]
use core::sync::atomic::{fence, AtomicPtr, AtomicU32, AtomicUsize, Ordering};
// Under loom this file is a module of tests/loom.rs, whose `loom_atomic` wraps
// loom's atomics.
#[cfg(loom)]
use crate::loom_atomic::{fence, AtomicPtr, AtomicU32, AtomicUsize, Ordering};

#[cfg(not(loom))]
pub const RING_SIZE: usize = 256;
/// Under loom: a tiny ring, so that the models fill it and wrap around.
#[cfg(loom)]
pub const RING_SIZE: usize = 2;

#[repr(C, align(64))]
struct Pad<T>(T);

struct Cell {
    /// Vyukov's sequence number, stored minus the cell's index (see
    /// `Ring::seq`), so that a new ring is all zeros: the zones, rings
    /// included, then live in `.bss`, not in 2.2 MiB of `.data` whose pages
    /// the kernel maps from the file, 16 at a time, on a read.
    seq: AtomicUsize,
    slab: AtomicUsize,
    gen: AtomicU32,
}

/// The cursors and the overflow list first, the cells after them (see `Zone`).
#[repr(C)]
pub struct Ring {
    tail: Pad<AtomicUsize>,
    head: Pad<AtomicUsize>,
    /// Slabs whose message did not fit, linked through `Desc::notify_next`.
    overflow: Pad<AtomicPtr<Desc>>,
    cells: [Cell; RING_SIZE],
}

/// The doorbell futex word and the sleeper flag.
#[cfg(not(loom))]
pub static DOORBELL: AtomicU32 = AtomicU32::new(0);
#[cfg(not(loom))]
pub static SLEEPING: AtomicU32 = AtomicU32::new(0);
// Loom atomics have no const constructor; loom's statics are fresh in every
// explored execution.
#[cfg(loom)]
loom::lazy_static! {
    pub static ref DOORBELL: AtomicU32 = AtomicU32::new(0);
    pub static ref SLEEPING: AtomicU32 = AtomicU32::new(0);
}

/// A message: a slab that needs its owner's attention, and its generation then.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Msg {
    pub slab: *mut Desc,
    pub gen: u32,
}

/// How a post went.
#[derive(PartialEq, Eq, Debug)]
pub enum Posted {
    Ring,
    Overflow,
    Dropped,
}

impl Ring {
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Ring {
            tail: Pad(AtomicUsize::new(0)),
            head: Pad(AtomicUsize::new(0)),
            cells: [const {
                Cell {
                    seq: AtomicUsize::new(0),
                    slab: AtomicUsize::new(0),
                    gen: AtomicU32::new(0),
                }
            }; RING_SIZE],
            overflow: Pad(AtomicPtr::new(ptr::null_mut())),
        }
    }

    #[cfg(loom)]
    pub fn new() -> Self {
        Ring {
            tail: Pad(AtomicUsize::new(0)),
            head: Pad(AtomicUsize::new(0)),
            cells: core::array::from_fn(|_| Cell {
                seq: AtomicUsize::new(0),
                slab: AtomicUsize::new(0),
                gen: AtomicU32::new(0),
            }),
            overflow: Pad(AtomicPtr::new(ptr::null_mut())),
        }
    }

    /// The cell for position `pos`, and its sequence number (Vyukov's: `pos`
    /// when free for the producer at `pos`, `pos + 1` when full), read with
    /// `o`. Stored minus the cell's index, so an empty ring reads `i` at
    /// cell `i` while all its words are zero.
    #[inline]
    fn seq(&self, pos: usize, o: Ordering) -> (&Cell, usize) {
        let i = pos % RING_SIZE;
        let cell = &self.cells[i];
        (cell, cell.seq.load(o).wrapping_add(i))
    }

    /// Stores sequence number `v` into the cell of position `pos`.
    #[inline]
    fn set_seq(&self, pos: usize, v: usize, o: Ordering) {
        let i = pos % RING_SIZE;
        self.cells[i].seq.store(v.wrapping_sub(i), o);
    }

    /// Tries to enqueue; false if the ring is full.
    pub fn try_push(&self, m: Msg) -> bool {
        let mut pos = self.tail.0.load(Ordering::Relaxed);
        loop {
            // Acquire pairs with the consumer's Release that freed the cell.
            let (cell, seq) = self.seq(pos, Ordering::Acquire);
            let dif = seq as isize - pos as isize;
            if dif == 0 {
                match self.tail.0.compare_exchange_weak(
                    pos,
                    pos.wrapping_add(1),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        cell.slab.store(m.slab as usize, Ordering::Relaxed);
                        cell.gen.store(m.gen, Ordering::Relaxed);
                        // Release publishes the payload to the consumer's Acquire.
                        self.set_seq(pos, pos.wrapping_add(1), Ordering::Release);
                        return true;
                    }
                    Err(p) => pos = p,
                }
            } else if dif < 0 {
                return false;
            } else {
                pos = self.tail.0.load(Ordering::Relaxed);
            }
        }
    }

    /// Dequeues one message (single consumer: the zone lock holder).
    pub fn pop(&self) -> Option<Msg> {
        let pos = self.head.0.load(Ordering::Relaxed);
        let (cell, seq) = self.seq(pos, Ordering::Acquire);
        if seq != pos.wrapping_add(1) {
            return None;
        }
        let m = Msg {
            slab: cell.slab.load(Ordering::Relaxed) as *mut Desc,
            gen: cell.gen.load(Ordering::Relaxed),
        };
        self.set_seq(pos, pos.wrapping_add(RING_SIZE), Ordering::Release);
        self.head.0.store(pos.wrapping_add(1), Ordering::Relaxed);
        Some(m)
    }

    /// Posts a message. A message that `must` arrive goes on the overflow list
    /// when the ring is full; others (the `every` mode's extra messages, which
    /// carry no state) are dropped and counted.
    ///
    /// # Safety
    /// With `must`, `m.slab` is a live slab descriptor that is on no overflow
    /// list (guaranteed by the detach protocol: it notifies once per detach).
    pub unsafe fn post(&self, m: Msg, must: bool) -> Posted {
        // SAFETY: the caller upholds the contract in `# Safety` above.
        unsafe {
            if self.try_push(m) {
                Posted::Ring
            } else if must {
                let mut head = self.overflow.0.load(Ordering::Relaxed);
                loop {
                    (*m.slab).set_notify_next(head);
                    match self.overflow.0.compare_exchange_weak(
                        head,
                        m.slab,
                        Ordering::Release,
                        Ordering::Relaxed,
                    ) {
                        Ok(_) => break,
                        Err(h) => head = h,
                    }
                }
                Posted::Overflow
            } else {
                Posted::Dropped
            }
        }
    }

    /// Takes the whole overflow list (consumer only).
    pub fn take_overflow(&self) -> *mut Desc {
        if self.overflow.0.load(Ordering::Relaxed).is_null() {
            return ptr::null_mut();
        }
        self.overflow.0.swap(ptr::null_mut(), Ordering::Acquire)
    }

    /// True if a consumer would find something to do.
    pub fn has_work(&self) -> bool {
        let pos = self.head.0.load(Ordering::Relaxed);
        self.seq(pos, Ordering::Acquire).1 == pos.wrapping_add(1)
            || !self.overflow.0.load(Ordering::Acquire).is_null()
    }

    /// Forked child: a slot claimed but not published by a thread that does not
    /// exist in the child would stall the consumer forever. Start empty; the
    /// zone rescans its slabs for what the lost messages said.
    ///
    /// A ring whose cursors are equal has no slot claimed and no message
    /// waiting (the consumer holds the zone's lock, which the fork handlers
    /// took), so its cells are consistent as they are and stay untouched:
    /// writing them put up to 6 KiB of fresh pages a zone into every forked
    /// child, whatever the parent had used.
    pub fn reset(&self) {
        if self.tail.0.load(Ordering::Relaxed) == self.head.0.load(Ordering::Relaxed) {
            return;
        }
        for c in &self.cells {
            c.seq.store(0, Ordering::Relaxed);
        }
        self.head.0.store(0, Ordering::Relaxed);
        self.tail.0.store(0, Ordering::Relaxed);
    }
}

impl Default for Ring {
    fn default() -> Self {
        Self::new()
    }
}

/// After publishing a message: wake the reclaimer if (and only if) it sleeps.
/// Returns true if a wake system call was made.
#[inline]
pub fn ring_doorbell() -> bool {
    // SeqCst fence: orders our publication before the flag read (Dekker with
    // `sleep_until_work`).
    fence(Ordering::SeqCst);
    if SLEEPING.load(Ordering::Relaxed) != 0 {
        DOORBELL.fetch_add(1, Ordering::Relaxed);
        crate::os::futex_wake(&DOORBELL, i32::MAX);
        return true;
    }
    false
}

/// The sleeper's side: sleeps on the doorbell unless `has_work()` says there is
/// something to do. Returns true if it actually waited.
pub fn sleep_until_work(has_work: impl Fn() -> bool, timeout_ms: u64) -> bool {
    let v = DOORBELL.load(Ordering::Relaxed);
    SLEEPING.store(1, Ordering::Relaxed);
    // SeqCst fence: orders the flag store before the re-check of the rings.
    fence(Ordering::SeqCst);
    let waited = if has_work() {
        false
    } else {
        crate::os::futex_wait(&DOORBELL, v, timeout_ms);
        true
    };
    SLEEPING.store(0, Ordering::Relaxed);
    waited
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn msg(i: usize) -> Msg {
        Msg {
            slab: (i * 128) as *mut Desc,
            gen: i as u32,
        }
    }

    #[test]
    fn fifo_and_full() {
        let r = Ring::new();
        assert!(r.pop().is_none());
        for i in 1..=RING_SIZE {
            assert!(r.try_push(msg(i)));
        }
        assert!(!r.try_push(msg(999)));
        assert!(r.has_work());
        for i in 1..=RING_SIZE {
            assert_eq!(r.pop(), Some(msg(i)));
        }
        assert!(r.pop().is_none());
        assert!(!r.has_work());
        // Wraps around many times.
        for i in 0..10 * RING_SIZE {
            assert!(r.try_push(msg(i + 1)));
            assert_eq!(r.pop(), Some(msg(i + 1)));
        }
    }

    #[test]
    fn overflow_keeps_must_messages() {
        let r = Ring::new();
        for i in 1..=RING_SIZE {
            assert!(r.try_push(msg(i)));
        }
        let mut descs: Vec<Box<Desc>> = (0..3)
            .map(|_| unsafe { Box::new(core::mem::zeroed()) })
            .collect();
        let ptrs: Vec<*mut Desc> = descs.iter_mut().map(|d| &mut **d as *mut Desc).collect();
        for &p in &ptrs {
            assert_eq!(
                unsafe { r.post(Msg { slab: p, gen: 0 }, true) },
                Posted::Overflow
            );
        }
        assert_eq!(unsafe { r.post(msg(7), false) }, Posted::Dropped);
        let mut l = r.take_overflow();
        let mut seen = vec![];
        while !l.is_null() {
            seen.push(l);
            l = unsafe { (*l).notify_next() };
        }
        seen.sort();
        let mut want = ptrs.clone();
        want.sort();
        assert_eq!(seen, want);
        r.reset();
        assert!(r.pop().is_none());
        assert!(r.try_push(msg(1)));
    }

    /// A fork's reset: a ring with equal cursors is left as it is (its
    /// cells untouched) and goes on working from where it was; one with a
    /// slot claimed but never published (its producer gone) starts empty.
    #[test]
    fn reset_keeps_a_quiet_ring_and_clears_a_stalled_one() {
        let r = Ring::new();
        for i in 0..3 * RING_SIZE / 2 {
            assert!(r.try_push(msg(i + 1)));
            assert_eq!(r.pop().map(|m| m.gen as usize), Some(i + 1));
        }
        let cursor = r.tail.0.load(Ordering::Relaxed);
        r.reset();
        assert_eq!(r.tail.0.load(Ordering::Relaxed), cursor);
        assert_eq!(r.head.0.load(Ordering::Relaxed), cursor);
        for i in 0..RING_SIZE {
            assert!(r.try_push(msg(i + 1)));
        }
        for i in 0..RING_SIZE {
            assert_eq!(r.pop().map(|m| m.gen as usize), Some(i + 1));
        }
        // A producer claimed the next slot and never published it.
        r.tail.0.fetch_add(1, Ordering::Relaxed);
        assert!(r.pop().is_none(), "the stalled slot blocks the consumer");
        r.reset();
        assert_eq!(r.tail.0.load(Ordering::Relaxed), 0);
        assert!(r.try_push(msg(9)));
        assert_eq!(r.pop().map(|m| m.gen as usize), Some(9));
    }

    #[test]
    fn many_producers_one_consumer() {
        const P: usize = 3;
        const N: usize = 50_000;
        let r = Arc::new(Ring::new());
        let hs: Vec<_> = (0..P)
            .map(|t| {
                let r = r.clone();
                std::thread::spawn(move || {
                    for i in 0..N {
                        while !r.try_push(msg(t * N + i + 1)) {
                            std::thread::yield_now();
                        }
                    }
                })
            })
            .collect();
        let mut seen = vec![false; P * N + 1];
        let mut last = [0usize; P];
        let mut got = 0;
        while got < P * N {
            if let Some(m) = r.pop() {
                let v = m.slab as usize / 128;
                assert_eq!(m.gen as usize, v);
                assert!(!seen[v]);
                seen[v] = true;
                // Per-producer FIFO order.
                let t = (v - 1) / N;
                assert!(v > last[t]);
                last[t] = v;
                got += 1;
            } else {
                std::thread::yield_now();
            }
        }
        for h in hs {
            h.join().unwrap();
        }
        assert!(r.pop().is_none());
    }

    #[test]
    fn no_wake_without_sleeper() {
        // (The reclaimer thread, started lazily by the frees of other
        // tests, may be the sleeper: a wake is then allowed.)
        assert!(!ring_doorbell() || SLEEPING.load(Ordering::Relaxed) != 0);
        // A sleeper with work pending does not sleep.
        assert!(!sleep_until_work(|| true, 10));
        // With no work it waits (bounded by the timeout).
        assert!(sleep_until_work(|| false, 1));
    }
}
