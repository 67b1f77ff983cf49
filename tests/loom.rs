//! Loom model checks of the lock-free protocol: every interleaving (up to the
//! preemption bound) of the real code of `src/slab/` and `src/ring.rs`.
//!
//! ```text
//! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test --release --test loom
//! ```
//!
//! The two files are compiled here as modules of this test crate (`#[path]`),
//! so `crate::pagemap::Desc`, `crate::os::futex_*` and (ring.rs under loom)
//! `crate::loom_atomic` resolve to the stand-ins below: a descriptor reduced
//! to the three fields the protocol touches, a futex modelled with a loom
//! mutex and condition variable, and loom's atomics with a scheduling step
//! (see `loom_atomic` for why). Under `--cfg loom`, slab/ makes a chunk a
//! `loom::cell::UnsafeCell` (so the plain link words are race-checked) and
//! ring.rs has a 2-cell ring and loom statics for the doorbell. The library
//! itself is empty under `--cfg loom` (`#![cfg(not(loom))]` in lib.rs): loom
//! is only a dev-dependency, and the allocator is not what is checked here.
//!
//! What the models check (each prints its execution count and how many
//! executions reached each interesting state):
//!
//! 1. `slab_*`: remote pushes against the owner's detach / collect /
//!    re-attach: exactly one push per detach that a push sees returns
//!    `MustNotify` (a second one fails "notified twice"); a detached slab that
//!    got no notification has nothing on its remote list ("lost wake-up");
//!    every chunk ends on the free list exactly once; the owner never takes a
//!    list that carries the `DETACHED` tag; the chunk links, written by the
//!    pusher and read by `absorb`, are ordered by the head word (else loom
//!    reports a causality violation on the link cell). The same holds for
//!    a batch node's count and carried addresses (`slab_carrying_node_*`:
//!    with one `batch_add` moved after the push, loom reports exactly that).
//! 2. `ring_*`: two producers and the consumer on a 2-cell ring: every `must`
//!    message arrives exactly once, whole, via the ring or the overflow list;
//!    a producer's ring messages keep their order.
//! 3. `doorbell_no_lost_wakeup`: producers post and ring the doorbell while the
//!    reclaimer sleeps until work: it never waits on the futex with a message
//!    published and no wake coming (that would be a loom deadlock).
//!
//! Preemption bounds are per model (`SLAB_BOUND`, `RING_BOUND`);
//! `LOOM_MAX_PREEMPTIONS` overrides them all.
#![cfg(loom)]

#[allow(dead_code)]
#[path = "../src/slab/mod.rs"]
mod slab;

#[allow(dead_code)]
#[path = "../src/ring.rs"]
mod ring;

/// loom's atomics, each operation preceded by a scheduling step.
///
/// loom 0.7.3's DPOR remembers only the last access to an atomic, so a load by
/// thread B hides an earlier load by thread A, and B's following store or CAS
/// is never ordered before A's load (tokio-rs/loom#166, #392): with plain loom
/// atomics the ring models explore one interleaving. The step, a Relaxed RMW on
/// one shared counter, makes every atomic operation a point where loom tries
/// every runnable thread (up to the preemption bound). It adds no
/// happens-before edge (nothing stores to the counter with Release), so the
/// memory model checked is unchanged.
pub mod loom_atomic {
    use loom::sync::atomic as la;
    pub use loom::sync::atomic::Ordering;

    loom::lazy_static! {
        static ref STEPS: la::AtomicUsize = la::AtomicUsize::new(0);
    }

    #[inline]
    fn step() {
        STEPS.fetch_add(1, Ordering::Relaxed);
    }

    #[track_caller]
    pub fn fence(o: Ordering) {
        step();
        la::fence(o)
    }

    macro_rules! int_atomic {
        ($name:ident, $t:ty) => {
            pub struct $name(la::$name);

            impl $name {
                #[track_caller]
                pub fn new(v: $t) -> Self {
                    Self(la::$name::new(v))
                }
                #[track_caller]
                pub fn load(&self, o: Ordering) -> $t {
                    step();
                    self.0.load(o)
                }
                #[track_caller]
                pub fn store(&self, v: $t, o: Ordering) {
                    step();
                    self.0.store(v, o)
                }
                #[track_caller]
                pub fn swap(&self, v: $t, o: Ordering) -> $t {
                    step();
                    self.0.swap(v, o)
                }
                #[track_caller]
                pub fn fetch_add(&self, v: $t, o: Ordering) -> $t {
                    step();
                    self.0.fetch_add(v, o)
                }
                #[track_caller]
                pub fn compare_exchange(
                    &self,
                    a: $t,
                    b: $t,
                    s: Ordering,
                    f: Ordering,
                ) -> Result<$t, $t> {
                    step();
                    self.0.compare_exchange(a, b, s, f)
                }
                #[track_caller]
                pub fn compare_exchange_weak(
                    &self,
                    a: $t,
                    b: $t,
                    s: Ordering,
                    f: Ordering,
                ) -> Result<$t, $t> {
                    step();
                    self.0.compare_exchange_weak(a, b, s, f)
                }
            }
        };
    }
    int_atomic!(AtomicUsize, usize);
    int_atomic!(AtomicU32, u32);

    pub struct AtomicPtr<T>(la::AtomicPtr<T>);

    impl<T> AtomicPtr<T> {
        #[track_caller]
        pub fn new(p: *mut T) -> Self {
            Self(la::AtomicPtr::new(p))
        }
        #[track_caller]
        pub fn load(&self, o: Ordering) -> *mut T {
            step();
            self.0.load(o)
        }
        #[track_caller]
        pub fn store(&self, p: *mut T, o: Ordering) {
            step();
            self.0.store(p, o)
        }
        #[track_caller]
        pub fn swap(&self, p: *mut T, o: Ordering) -> *mut T {
            step();
            self.0.swap(p, o)
        }
        #[track_caller]
        pub fn compare_exchange_weak(
            &self,
            a: *mut T,
            b: *mut T,
            s: Ordering,
            f: Ordering,
        ) -> Result<*mut T, *mut T> {
            step();
            self.0.compare_exchange_weak(a, b, s, f)
        }
    }
}

/// The slab descriptor, reduced to what slab/ and ring.rs touch.
mod pagemap {
    use crate::loom_atomic::{AtomicPtr, AtomicUsize};

    /// The real `Desc`'s remote-list side, with the same accessors.
    pub struct Desc {
        /// Owner-only local free list.
        free: core::cell::Cell<*mut u8>,
        /// Remote list head tagged with `slab::DETACHED`.
        rchunks: AtomicUsize,
        /// Link on a ring's overflow list.
        notify_next: AtomicPtr<Desc>,
    }

    impl Desc {
        pub fn new() -> Self {
            Desc {
                free: core::cell::Cell::new(core::ptr::null_mut()),
                rchunks: AtomicUsize::new(0),
                notify_next: AtomicPtr::new(core::ptr::null_mut()),
            }
        }

        pub fn free(&self) -> *mut u8 {
            self.free.get()
        }

        pub fn set_free(&self, p: *mut u8) {
            self.free.set(p)
        }

        pub fn rchunks(&self) -> &AtomicUsize {
            &self.rchunks
        }

        pub fn notify_next(&self) -> *mut Desc {
            self.notify_next.load(crate::loom_atomic::Ordering::Relaxed)
        }

        pub fn set_notify_next(&self, d: *mut Desc) {
            self.notify_next
                .store(d, crate::loom_atomic::Ordering::Relaxed)
        }
    }

    // SAFETY: as for the real Desc: `free` belongs to the owner, the rest are
    // atomics.
    unsafe impl Sync for Desc {}
    // SAFETY: as above.
    unsafe impl Send for Desc {}
}

/// The futex, modelled: `futex_wait` compares the word and blocks under the
/// bucket lock (a loom mutex) until a `futex_wake`; no timeout, no spurious
/// wake-up. A wake-up that is never issued is a loom deadlock.
mod os {
    use crate::loom_atomic::{AtomicU32, Ordering};
    use loom::sync::{Condvar, Mutex};

    loom::lazy_static! {
        /// Number of wakes issued so far, under the "hash bucket" lock.
        static ref BUCKET: (Mutex<u64>, Condvar) = (Mutex::new(0), Condvar::new());
    }

    pub fn futex_wait(word: &AtomicU32, val: u32, _timeout_ms: u64) {
        let mut wakes = BUCKET.0.lock().unwrap();
        // The kernel compares with a full barrier, under the bucket lock.
        if word.load(Ordering::SeqCst) != val {
            return;
        }
        crate::seen("futex_wait blocked");
        let seen = *wakes;
        while *wakes == seen {
            wakes = BUCKET.1.wait(wakes).unwrap();
        }
    }

    pub fn futex_wake(_word: &AtomicU32, _n: i32) {
        crate::seen("futex_wake issued");
        let mut wakes = BUCKET.0.lock().unwrap();
        *wakes += 1;
        BUCKET.1.notify_all();
    }
}

use loom::sync::Arc;
use loom_atomic::{AtomicUsize, Ordering};
use pagemap::Desc;
use ring::{Msg, Posted, Ring, RING_SIZE};
use slab::{Chunk, Pushed, DETACHED};
use std::collections::BTreeMap;

/// Runs a model with preemption bound `bound` (`LOOM_MAX_PREEMPTIONS`
/// overrides it) and reports how many executions loom explored.
fn model<F: Fn() + Sync + Send + 'static>(bound: usize, f: F) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(bound);
    }
    let runs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let r = runs.clone();
    b.check(move || {
        r.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        f()
    });
    let name = std::thread::current().name().unwrap_or("?").to_string();
    let seen = SEEN.lock().unwrap();
    let cov: Vec<String> = seen
        .iter()
        .filter(|((t, _), _)| *t == name)
        .map(|((_, what), n)| format!("{what}: {n}"))
        .collect();
    eprintln!(
        "{name}: {} executions (preemption bound {:?}); {}",
        runs.load(std::sync::atomic::Ordering::Relaxed),
        b.preemption_bound,
        cov.join(", ")
    );
}

/// How many explored executions reached each interesting state, per test:
/// evidence that a model covers what it claims to.
static SEEN: std::sync::Mutex<BTreeMap<(String, &str), usize>> =
    std::sync::Mutex::new(BTreeMap::new());

fn seen(what: &'static str) {
    let t = std::thread::current().name().unwrap_or("?").to_string();
    *SEEN.lock().unwrap().entry((t, what)).or_insert(0) += 1;
}

/// Preemption bounds: every model finishes in seconds with these.
const SLAB_BOUND: usize = 4;
const RING_BOUND: usize = 2;

// ---- (1) remote push vs owner detach ----

/// The chunks of one slab, all handed out; freed again at the end.
struct Chunks(Vec<*mut Chunk>);

impl Chunks {
    fn new(n: usize) -> Self {
        Chunks(
            (0..n)
                .map(|_| Box::into_raw(Box::new(Chunk::new())))
                .collect(),
        )
    }
    fn addr(&self, i: usize) -> usize {
        self.0[i] as usize
    }
}

impl Drop for Chunks {
    fn drop(&mut self) {
        for &c in &self.0 {
            // SAFETY: made by Box::into_raw in `new`, freed once.
            drop(unsafe { Box::from_raw(c) });
        }
    }
}

/// The owner's view of one slab, driven the way zone.rs drives it.
struct Owner<'a> {
    d: *mut Desc,
    chunks: &'a Chunks,
    detached: bool,
    /// Notifications received so far.
    handled: usize,
    collected: usize,
}

impl Owner<'_> {
    /// zone.rs `collect`: take the remote list and put it on the free list.
    fn collect(&mut self) {
        // SAFETY: the owner is the only thread calling the owner functions.
        let l = unsafe { slab::take_remote(self.d) };
        if l.is_null() {
            return;
        }
        assert_eq!(
            l as usize & DETACHED,
            0,
            "owner took a list carrying the DETACHED tag"
        );
        assert!(
            self.chunks.0.contains(&(l as *mut Chunk)),
            "list head {l:?} is not a chunk"
        );
        // SAFETY: `l` came from take_remote.
        // A node carries at most 2 chunks here (the loom `Chunk`'s words).
        let got = unsafe { slab::absorb(self.d, l, self.chunks.0.len(), 2) };
        self.collected += got.expect("cycle in the remote list");
    }

    /// The slow path finds the slab without free chunks: detach it, or collect
    /// what arrived meanwhile.
    fn detach_or_collect(&mut self) {
        if self.detached {
            return;
        }
        // SAFETY: owner.
        if unsafe { slab::try_detach(self.d) } {
            seen("detached");
            self.detached = true;
        } else {
            seen("detach failed, collected");
            self.collect();
        }
    }

    /// A local free on a detached slab: take it back if no remote free has
    /// seen the detach (zone.rs `after_local_free`).
    fn local_free(&mut self) {
        if self.detached {
            // SAFETY: owner.
            if unsafe { slab::try_reattach(self.d) } {
                seen("reattached");
                self.detached = false;
            } else {
                seen("reattach failed");
            }
        }
    }

    /// A notification (the ring message): the slab must be detached, and is
    /// listed again with what arrived.
    fn notified(&mut self) {
        assert!(
            self.detached,
            "notification for a slab the owner did not detach (notified twice)"
        );
        self.detached = false;
        self.handled += 1;
        self.collect();
    }

    /// After every remote free is done.
    fn finish(mut self, notes: usize) {
        while self.handled < notes {
            self.notified();
        }
        if self.handled > 0 {
            seen("owner notified");
        }
        if self.detached {
            seen("ends detached, no chunk stranded");
            // Detached and never notified: nothing may be stranded on it.
            // SAFETY: owner.
            let l = unsafe { slab::take_remote(self.d) };
            assert!(
                l.is_null(),
                "lost wake-up: chunks on a detached slab and no notification"
            );
        } else {
            self.collect();
        }
        // SAFETY: every thread is done.
        let w = unsafe { (*self.d).rchunks().load(Ordering::Relaxed) };
        assert!(w == 0 || w == DETACHED, "remote list not empty at the end");
        // Every chunk pushed is on the free list exactly once.
        assert_eq!(self.collected, self.chunks.0.len());
        let mut seen = vec![false; self.chunks.0.len()];
        let mut mark = |c: *mut u8| {
            let i = self
                .chunks
                .0
                .iter()
                .position(|&x| x as *mut u8 == c)
                .expect("free list holds a stranger");
            assert!(!seen[i], "chunk collected twice");
            seen[i] = true;
        };
        // SAFETY: every thread is done; every node is a chunk of this slab,
        // and the chunks it carries are taken off it as they are counted.
        let mut c = unsafe { (*self.d).free() };
        while !c.is_null() {
            mark(c);
            // SAFETY: as above: `c` is a node of this slab's free list,
            // which no other thread touches any more.
            unsafe {
                while slab::link_word(c) & slab::BATCH != 0 {
                    mark(slab::batch_take(c, 0));
                }
                c = slab::link(c);
            }
        }
        assert!(seen.iter().all(|&s| s), "chunk lost");
    }
}

/// Remote frees: push chunks, count the pushes that must notify.
fn pusher(d: Arc<Desc>, chunks: Vec<usize>, notes: Arc<AtomicUsize>) {
    for c in chunks {
        // SAFETY: `d` lives; the chunk is ours to free, 16-byte aligned.
        if let Pushed::MustNotify = unsafe { slab::remote_push(&*d, c as *mut u8) } {
            // Stands in for the ring message (checked in model 2).
            notes.fetch_add(1, Ordering::Release);
        }
    }
}

/// Two remote frees race with the owner's slow path, which detaches the full
/// slab (or collects and retries) and reacts to a notification as soon as it
/// sees one.
#[test]
fn slab_two_pushers_vs_detach() {
    model(SLAB_BOUND, || {
        let d = Arc::new(Desc::new());
        let chunks = Chunks::new(2);
        let notes = Arc::new(AtomicUsize::new(0));
        let hs: Vec<_> = (0..2)
            .map(|i| {
                let (d, notes) = (d.clone(), notes.clone());
                let c = vec![chunks.addr(i)];
                loom::thread::spawn(move || pusher(d, c, notes))
            })
            .collect();
        let mut o = Owner {
            d: &*d as *const Desc as *mut Desc,
            chunks: &chunks,
            detached: false,
            handled: 0,
            collected: 0,
        };
        for _ in 0..3 {
            o.detach_or_collect();
        }
        if notes.load(Ordering::Acquire) > o.handled {
            o.notified();
            o.detach_or_collect();
        }
        for h in hs {
            h.join().unwrap();
        }
        let n = notes.load(Ordering::Acquire);
        o.finish(n);
    });
}

/// One thread frees two chunks while the owner detaches, takes the slab back
/// on a local free (if no remote free saw the detach), and detaches again.
#[test]
fn slab_pushes_vs_detach_reattach() {
    model(SLAB_BOUND, || {
        let d = Arc::new(Desc::new());
        let chunks = Chunks::new(2);
        let notes = Arc::new(AtomicUsize::new(0));
        let h = {
            let (d, notes) = (d.clone(), notes.clone());
            let c = vec![chunks.addr(0), chunks.addr(1)];
            loom::thread::spawn(move || pusher(d, c, notes))
        };
        let mut o = Owner {
            d: &*d as *const Desc as *mut Desc,
            chunks: &chunks,
            detached: false,
            handled: 0,
            collected: 0,
        };
        o.detach_or_collect();
        o.local_free();
        o.detach_or_collect();
        if notes.load(Ordering::Acquire) > o.handled {
            o.notified();
        }
        o.detach_or_collect();
        h.join().unwrap();
        let n = notes.load(Ordering::Acquire);
        o.finish(n);
    });
}

/// One thread pushes the chunks `0..n-1` as one list, built by `build`
/// (which gets their addresses and returns the list's head and tail),
/// while another frees chunk `n-1` alone and the owner detaches, reacts to
/// a notification, and detaches or collects again. `finish` checks that
/// every chunk is collected exactly once and that a push which found the
/// slab detached notified. `coverage` is recorded when the whole list was
/// collected before the end.
fn batch_vs_single_and_detach(
    n: usize,
    build: unsafe fn(&[*mut u8]) -> (*mut u8, *mut u8),
    coverage: &'static str,
) {
    model(SLAB_BOUND, move || {
        let d = Arc::new(Desc::new());
        let chunks = Chunks::new(n);
        let notes = Arc::new(AtomicUsize::new(0));
        let batch = {
            let (d, notes) = (d.clone(), notes.clone());
            let list: Vec<usize> = (0..n - 1).map(|i| chunks.addr(i)).collect();
            loom::thread::spawn(move || {
                let list: Vec<*mut u8> = list.into_iter().map(|a| a as *mut u8).collect();
                // SAFETY: the chunks are this thread's to free; `build`
                // writes their links (and a node's words) before the push.
                let r = unsafe {
                    let (head, tail) = build(&list);
                    slab::remote_push_list(&*d, head, tail, list.len())
                };
                if let Pushed::MustNotify = r {
                    notes.fetch_add(1, Ordering::Release);
                }
            })
        };
        let single = {
            let (d, notes) = (d.clone(), notes.clone());
            let c = vec![chunks.addr(n - 1)];
            loom::thread::spawn(move || pusher(d, c, notes))
        };
        let mut o = Owner {
            d: &*d as *const Desc as *mut Desc,
            chunks: &chunks,
            detached: false,
            handled: 0,
            collected: 0,
        };
        o.detach_or_collect();
        if notes.load(Ordering::Acquire) > o.handled {
            o.notified();
        }
        o.detach_or_collect();
        batch.join().unwrap();
        single.join().unwrap();
        let notified = notes.load(Ordering::Acquire);
        if o.collected >= n - 1 {
            seen(coverage);
        }
        o.finish(notified);
    });
}

/// A batch free (a CPU's outbox, linked locally and pushed with one CAS)
/// races with a single remote free and the owner's detach / collect: every
/// chunk of the batch must be collected exactly once, and a push that finds
/// the slab detached must notify.
#[test]
fn slab_batch_push_vs_single_and_detach() {
    /// # Safety
    /// As `batch_vs_single_and_detach` requires: `c` are model chunks.
    unsafe fn linked(c: &[*mut u8]) -> (*mut u8, *mut u8) {
        // SAFETY: `c[0]` is a model chunk; it links to `c[1]`, whose link
        // the push writes.
        unsafe { slab::set_link(c[0], c[1] as usize) };
        (c[0], c[1])
    }
    batch_vs_single_and_detach(3, linked, "linked batch collected");
}

/// An outbox batch as it is pushed since the third session: one node that
/// carries the other chunks' addresses in its own words (`batch_add`)
/// instead of linking them. The count and addresses the node carries are
/// plain writes, ordered before the owner's reads only by the head word's
/// Release / Acquire, like the links (loom reports a read it does not
/// order; with one `batch_add` moved after the push it does); every chunk,
/// carried or not, must be collected exactly once.
#[test]
fn slab_carrying_node_vs_single_and_detach() {
    /// # Safety
    /// As `batch_vs_single_and_detach` requires: `c` are model chunks.
    unsafe fn carrying(c: &[*mut u8]) -> (*mut u8, *mut u8) {
        // SAFETY: `c[0]` is the node, a model chunk, its link written
        // before it carries the other two.
        unsafe {
            slab::set_link(c[0], 0);
            slab::batch_add(c[0], 0, c[1], 0);
            slab::batch_add(c[0], 1, c[2], 0);
        }
        (c[0], c[0])
    }
    batch_vs_single_and_detach(4, carrying, "carried chunks collected");
}

// ---- (2) the event ring with its overflow list ----

/// Slab descriptors that messages name (each posted with `must` at most once,
/// as the detach protocol guarantees).
struct Slabs(Vec<*mut Desc>);

impl Slabs {
    fn new(n: usize) -> Self {
        Slabs(
            (0..n)
                .map(|_| Box::into_raw(Box::new(Desc::new())))
                .collect(),
        )
    }
    fn msg(&self, i: usize) -> (usize, u32) {
        (self.0[i] as usize, 100 + i as u32)
    }
    fn index(&self, d: *mut Desc) -> usize {
        self.0
            .iter()
            .position(|&x| x == d)
            .expect("message names no slab")
    }
}

impl Drop for Slabs {
    fn drop(&mut self) {
        for &d in &self.0 {
            // SAFETY: made by Box::into_raw in `new`, freed once.
            drop(unsafe { Box::from_raw(d) });
        }
    }
}

/// The consumer side of zone.rs `drain`: pop the ring, then walk the overflow
/// list. Records what arrived (ring messages must carry their generation).
fn drain(r: &Ring, slabs: &Slabs, got: &mut [usize]) {
    while let Some(m) = r.pop() {
        let i = slabs.index(m.slab);
        assert_eq!(m.gen, 100 + i as u32, "torn message");
        got[i] += 1;
    }
    let mut d = r.take_overflow();
    while !d.is_null() {
        got[slabs.index(d)] += 1;
        // SAFETY: a live descriptor of `slabs`.
        d = unsafe { (*d).notify_next() };
    }
}

fn post(r: &Ring, (slab, gen): (usize, u32)) -> Posted {
    let m = Msg {
        slab: slab as *mut Desc,
        gen,
    };
    // SAFETY: a live descriptor on no overflow list.
    let p = unsafe { r.post(m, true) };
    assert_ne!(p, Posted::Dropped);
    if p == Posted::Overflow {
        seen("overflow list used");
    }
    p
}

/// The ring starts full (two messages); two producers post one `must`
/// message each while the consumer drains twice: every message arrives
/// exactly once, through the ring (wrapping around) or the overflow list,
/// which can hold both late messages.
#[test]
fn ring_two_producers_overflow() {
    model(RING_BOUND, || {
        let r = Arc::new(Ring::new());
        let slabs = Slabs::new(2 + RING_SIZE);
        for i in 0..RING_SIZE {
            assert_eq!(post(&r, slabs.msg(2 + i)), Posted::Ring);
        }
        let hs: Vec<_> = (0..2)
            .map(|i| {
                let r = r.clone();
                let m = slabs.msg(i);
                loom::thread::spawn(move || post(&r, m))
            })
            .collect();
        let mut got = vec![0usize; 2 + RING_SIZE];
        drain(&r, &slabs, &mut got);
        drain(&r, &slabs, &mut got);
        let posted: Vec<Posted> = hs.into_iter().map(|h| h.join().unwrap()).collect();
        if posted == [Posted::Overflow, Posted::Overflow] {
            seen("both on the overflow list");
        }
        drain(&r, &slabs, &mut got);
        assert!(got.iter().all(|&n| n == 1), "lost or duplicated: {got:?}");
        assert!(r.pop().is_none() && r.take_overflow().is_null());
    });
}

/// The ring alone, wrapping: two producers push once per message (no retry:
/// a full ring just refuses) while the consumer pops three times; then the
/// rest is popped. Exactly the accepted messages come out, each once, whole,
/// and one producer's messages in its order.
#[test]
fn ring_push_pop_wraps() {
    model(RING_BOUND, || {
        let r = Arc::new(Ring::new());
        let slabs = Slabs::new(3);
        let batches = [vec![slabs.msg(0), slabs.msg(1)], vec![slabs.msg(2)]];
        let hs: Vec<_> = batches
            .into_iter()
            .map(|b| {
                let r = r.clone();
                loom::thread::spawn(move || {
                    b.into_iter()
                        .map(|(slab, gen)| {
                            let m = Msg {
                                slab: slab as *mut Desc,
                                gen,
                            };
                            r.try_push(m)
                        })
                        .collect::<Vec<bool>>()
                })
            })
            .collect();
        let mut order = Vec::new();
        let pop = |order: &mut Vec<usize>| {
            if let Some(m) = r.pop() {
                let i = slabs.index(m.slab);
                assert_eq!(m.gen, 100 + i as u32, "torn message");
                order.push(i);
            }
        };
        for _ in 0..3 {
            pop(&mut order);
        }
        let accepted: Vec<bool> = hs.into_iter().flat_map(|h| h.join().unwrap()).collect();
        if accepted.contains(&false) {
            seen("ring full");
        }
        if order.len() == 3 {
            seen("3 popped concurrently (wrapped)");
        }
        for _ in 0..RING_SIZE {
            pop(&mut order);
        }
        assert!(r.pop().is_none());
        let mut want: Vec<usize> = (0..3).filter(|&i| accepted[i]).collect();
        let mut got = order.clone();
        got.sort();
        want.sort();
        assert_eq!(got, want, "accepted messages lost or duplicated");
        let p0: Vec<_> = order.iter().filter(|&&i| i < 2).collect();
        assert!(
            p0.windows(2).all(|w| w[0] < w[1]),
            "out of order: {order:?}"
        );
    });
}

// ---- (3) the futex doorbell ----

/// A producer posts and rings; the reclaimer sleeps until there is work. If
/// the Dekker pattern failed, the sleeper would wait while a message sits in
/// the ring and no wake comes: the model futex never returns and loom reports
/// a deadlock.
#[test]
fn doorbell_no_lost_wakeup() {
    model(RING_BOUND, || {
        let r = Arc::new(Ring::new());
        let slabs = Slabs::new(2);
        let hs: Vec<_> = (0..2)
            .map(|i| {
                let r = r.clone();
                let m = slabs.msg(i);
                loom::thread::spawn(move || {
                    post(&r, m);
                    ring::ring_doorbell();
                })
            })
            .collect();
        let mut got = [0usize; 2];
        while got != [1, 1] {
            drain(&r, &slabs, &mut got);
            assert!(got.iter().all(|&n| n <= 1), "duplicated: {got:?}");
            if got != [1, 1] {
                if ring::sleep_until_work(|| r.has_work(), 1000) {
                    seen("sleeper called futex_wait");
                } else {
                    seen("sleeper's re-check found work");
                }
            }
        }
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(ring::SLEEPING.load(Ordering::Relaxed), 0);
    });
}
