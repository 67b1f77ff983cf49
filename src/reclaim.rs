//! Giving back the memory of quiet zones: from the slow path of a zone that
//! maps a new slab (`zone::adopt_idle`), the reclaimer thread, and `malloc_trim`.
//!
//! Memory freed to a CPU whose threads went quiet (or exited) would otherwise
//! stay with that CPU's zone: remote chunks wait on their slabs until the
//! owner runs its slow path again, and empty slabs wait in its cache. Before
//! a zone maps a new slab, it tends every other zone that has messages
//! waiting and is free right now (a thread that holds a zone's lock does its
//! owner's work: only the per-CPU cache is tied to running there), so their
//! emptied slabs go back to the page runs the new slab comes from.
//!
//! The reclaimer is the sleeper on the rings' futex doorbell: it sleeps
//! until a ring has messages (or a period passes), then takes each zone's
//! lock if it is free, handles its messages, and for zones that allocated
//! nothing since its last look, collects every remote chunk, trims the
//! stashes and gives empty slabs back; dirty page runs that stayed unused
//! for the decay time (`SLABALLOC_DECAY`) are purged (`runs`).
//!
//! By default it is started lazily, the first time a free finds memory to
//! give back (a run left dirty, a full per-CPU cache spilling into the
//! zone) in a process that holds at least `LAZY_MIN_PAGES` (64 MiB)
//! committed: a program that never frees or keeps a small heap never has
//! the thread. (A minimum age of 100 ms was a condition too: a process
//! that made and freed its 150 MiB within it, then went quiet, kept all
//! of it resident, with no slow path left to start the thread: one run in
//! three of `c-tests/reclaim.c` on a fast host.) A pass
//! that is not forced leaves busy zones alone (`Zone::quiet_since_last_look`):
//! taking the lock of a zone whose owner is working sends the owner to
//! another zone. It is started
//! on a slow path of malloc or free holding no lock of ours
//! (`after_slow_path`): `pthread_create` allocates (its thread's TLS), and
//! that malloc must be able to take any lock. It ends itself after
//! `QUIET_PASSES` passes with nothing left to do, so it never keeps a
//! process alive for long (a `main` that ends with `pthread_exit` is
//! waited for by the process) and a later free starts it again. After
//! `fork` the child has no thread: it is started again lazily. It runs on
//! a stack of our own (`STACK`), so starting it maps nothing.
//! `SLABALLOC_BACKGROUND=1` starts it at start-up and keeps it;
//! `SLABALLOC_BACKGROUND=0` never starts it (dirty runs still decay on the
//! slow paths of `runs`).

use crate::stats::GLOBAL;
use crate::{cpu, ring, runs::RUNS, zone};
use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};

const OFF: u8 = 0;
const WANTED: u8 = 1;
const RUNNING: u8 = 2;
/// `SLABALLOC_BACKGROUND=0`: no thread, ever.
const NEVER: u8 = 3;
static STATE: AtomicU8 = AtomicU8::new(OFF);
/// The thread's stack, in our `.bss` (with the other large arrays,
/// `ffi/cold.ld`): its pages cost nothing until the thread runs. A stack
/// that glibc mapped would add address space each time the thread starts,
/// which a process at its `RLIMIT_AS` has not got (c-tests/oom.c: a huge
/// block that fitted before no longer did), and would stay mapped in
/// glibc's stack cache. (It was a page run of the arenas, taken at the
/// first start: cut from whatever free run fitted, often in the middle of
/// a program's large blocks, it split the run that a later block needed,
/// and malloc_large then mapped a tenth arena and kept 12 % more memory
/// resident, with 40 % more page faults: docs/experiments.md.)
#[repr(C, align(4096))]
struct Stack(core::cell::UnsafeCell<[u8; STACK_BYTES]>);
// SAFETY: only the reclaimer thread touches the bytes, as its stack, and
// one such thread exists at a time (`spawn` joins the last one first).
unsafe impl Sync for Stack {}
const STACK_BYTES: usize = 128 << 10;
#[link_section = ".bss.big.reclaim_stack"]
static STACK: Stack = Stack(core::cell::UnsafeCell::new([0; STACK_BYTES]));
/// The last thread started, to be joined before its stack is used again
/// (0: none, or none in this process since a fork). A `pthread_t`
/// (a `u64` on Linux x86-64 and aarch64 with glibc).
static THREAD: AtomicU64 = AtomicU64::new(0);

/// The lazy thread starts only once the arenas hold this much committed
/// memory (64 MiB): below it, what idle memory can stay is small, and a
/// thread would cost more than it gives back (its stack and TLS, its own
/// zone's slabs, and CPU beside the program's threads: on 2 CPUs, sh8_like
/// ran 1.4x slower with the thread than without it).
const LAZY_MIN_PAGES: usize = (64 << 20) / crate::os::PAGE_SIZE;

/// Period between passes when no message wakes it.
const PERIOD_MS: u64 = 250;
/// A lazily started thread ends after this many passes in a row found
/// nothing to give back and nothing dirty waiting.
const QUIET_PASSES: u32 = 4;
/// `SLABALLOC_BACKGROUND=0` (constructor): never start the thread.
pub fn disable() {
    STATE.store(NEVER, Ordering::Relaxed);
}

/// Asks for the reclaimer; it starts on the next slow path with no lock held.
/// A relaxed load first: on the free paths that call it, the thread is
/// usually running already and the line stays shared.
#[inline]
pub fn request() {
    if STATE.load(Ordering::Relaxed) == OFF {
        let _ = STATE.compare_exchange(OFF, WANTED, Ordering::Relaxed, Ordering::Relaxed);
    }
}

/// Called on slow paths, with no allocator lock held. Dirty page runs
/// left waiting by a free (`Runs::wants_reclaim`) ask for the thread.
#[inline]
pub fn after_slow_path() {
    if RUNS.wants_reclaim.load(Ordering::Relaxed) {
        RUNS.wants_reclaim.store(false, Ordering::Relaxed);
        request();
    }
    // The lazy start's first condition here, so that a process below it
    // (most) makes no call: `start` was 0.8 % of a loop of batches.
    if STATE.load(Ordering::Relaxed) == WANTED
        && RUNS.committed_pages.load(Ordering::Relaxed) >= LAZY_MIN_PAGES
    {
        start(false);
    }
}

/// Starts the thread now (`SLABALLOC_BACKGROUND=1`, from the constructor).
pub fn start_now() {
    request();
    start(true);
}

#[cold]
fn start(eager: bool) {
    // (The lazy start's condition, `LAZY_MIN_PAGES`, is tested by the
    // caller, `after_slow_path`.)
    // The ending thread's own frees (glibc's thread exit) ask again: it
    // must not start its successor on the stack it still runs on.
    let last = THREAD.load(Ordering::Acquire);
    if last != 0 && last == crate::os::thread_self() {
        return;
    }
    // Acquire/Release: the winner of the CAS also sees `THREAD` as the
    // previous winner left it (the Release store in `spawn`).
    if STATE
        .compare_exchange(WANTED, RUNNING, Ordering::AcqRel, Ordering::Relaxed)
        .is_ok()
    {
        // The start rides on a malloc's or a free's slow path, which must
        // leave errno as it found it, whatever the thread's creation did.
        let e = crate::os::errno();
        let ok = spawn(if eager { thread_keep } else { thread_lazy });
        crate::os::set_errno(e);
        if !ok {
            // No thread now (out of memory or threads): a later free asks again.
            STATE.store(OFF, Ordering::Release);
        }
    }
}

/// Starts the thread on our own stack (the previous thread, which set the
/// state to OFF on its way out, joined first), or failing that on one
/// glibc maps.
#[cold]
#[link_section = ".text_cold"]
fn spawn(f: extern "C" fn(*mut libc::c_void) -> *mut libc::c_void) -> bool {
    let last = THREAD.swap(0, Ordering::AcqRel);
    if last != 0 {
        crate::os::join(last);
    }
    // SAFETY: the stack is ours alone: the thread that used it before has
    // been joined (or, after a fork, does not exist here).
    if let Some(t) = unsafe { crate::os::spawn_thread_on(f, STACK.0.get() as *mut u8, STACK_BYTES) }
    {
        THREAD.store(t, Ordering::Release);
        return true;
    }
    crate::os::spawn_thread(f)
}

extern "C" fn thread_keep(_: *mut libc::c_void) -> *mut libc::c_void {
    loop {
        background_pass();
    }
}

extern "C" fn thread_lazy(_: *mut libc::c_void) -> *mut libc::c_void {
    let mut quiet = 0;
    loop {
        if background_pass() {
            quiet = 0;
            continue;
        }
        quiet += 1;
        if quiet >= QUIET_PASSES
            && STATE
                .compare_exchange(RUNNING, OFF, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            return core::ptr::null_mut();
        }
    }
}

/// Sleeps until a ring has messages or the next decay deadline (at most a
/// period), then runs a pass. True if there is still something to do: a
/// zone was busy or gave memory back, or dirty runs wait to decay.
#[cold]
#[link_section = ".text_cold"]
fn background_pass() -> bool {
    let now = crate::os::now_ms();
    let wait = RUNS
        .next_decay()
        .map_or(PERIOD_MS, |t| t.saturating_sub(now).clamp(1, PERIOD_MS));
    if ring::sleep_until_work(zone::any_ring_has_work, wait) {
        GLOBAL.futex_waits.fetch_add(1, Ordering::Relaxed);
    }
    let slabs = GLOBAL.slabs_live.load(Ordering::Relaxed);
    let all_idle = sweep_zones(false);
    let dirty = RUNS.decay();
    // Answers slabtop within a period even when the program is idle.
    crate::hook::slow_path();
    !all_idle || dirty > 0 || GLOBAL.slabs_live.load(Ordering::Relaxed) != slabs
}

/// One pass over every zone. `force` (malloc_trim, and malloc before it
/// reports ENOMEM) waits for busy zones and reclaims everything, the per-CPU
/// caches and outboxes of every CPU included (`drain_all_cpus`), and purges
/// every dirty run; otherwise busy zones are skipped, only idle zones give
/// memory back, and dirty runs are purged as they decay. Returns the number
/// of pages purged by a forced pass (0 otherwise).
pub fn pass(force: bool) -> usize {
    sweep_zones(force);
    if force {
        RUNS.purge(0)
    } else {
        RUNS.decay();
        0
    }
}

/// The zones' part of a pass; true if every zone was idle.
#[cold]
#[link_section = ".text_cold"]
fn sweep_zones(force: bool) -> bool {
    GLOBAL.reclaim_passes.fetch_add(1, Ordering::Relaxed);
    if force {
        drain_all_cpus();
    }
    let mut all_idle = true;
    for i in 0..cpu::nzones() {
        // A zone busy since the last pass is left to its owner: no lock
        // taken, nothing swept (only forced passes take every zone).
        if !force && !zone::zone(i).quiet_since_last_look() {
            all_idle = false;
            continue;
        }
        let z = if force {
            zone::lock_index(i)
        } else {
            zone::try_lock_index(i)
        };
        let Some(z) = z else {
            all_idle = false;
            continue;
        };
        if force {
            z.drain_cache();
            zone::flush_outbox();
        }
        if !z.tend(force) {
            all_idle = false;
        }
    }
    all_idle
}

/// Empties the cache and the outbox of every CPU the thread may run on, by
/// running there: a CPU's cache can only be written from that CPU (its rseq
/// sections), so chunks freed on a CPU that then went quiet stayed in its
/// cache and kept their slabs, and the arena space around them, from being
/// given back (an out-of-memory test that migrated between CPUs could not
/// re-allocate 90 % of its large blocks, 1 run in 6). The thread pins itself
/// to each CPU in turn, and gets its own affinity back at the end; CPUs it
/// may not run on are skipped. Only on `pass(true)`: a few context switches
/// per CPU. With concurrency ids (`cpu::uses_cid`) no pinning reaches
/// another id: the caller's own cache and outbox are emptied, and the other
/// ids' caches wait for their threads (a lone thread keeps id 0 wherever it
/// runs, so its memory is never spread over ids in the first place).
fn drain_all_cpus() {
    if !crate::cache::on() {
        return;
    }
    if cpu::uses_cid() {
        if let Some(z) = zone::lock_index(cpu::current_zone()) {
            z.drain_cache();
            zone::flush_outbox();
        }
        return;
    }
    let Some(saved) = crate::os::affinity() else {
        return;
    };
    for i in 0..cpu::nzones() {
        if !crate::os::pin_to_cpu(i) || cpu::current_zone() != i {
            continue;
        }
        if let Some(z) = zone::lock_index(i) {
            z.drain_cache();
            zone::flush_outbox();
        }
    }
    crate::os::set_affinity(&saved);
}

/// Forked child: the thread is gone; start a new one lazily.
pub fn fork_child() {
    // No thread of the parent's exists here: nothing to join, and its
    // stack is free to use.
    THREAD.store(0, Ordering::Relaxed);
    if STATE.load(Ordering::Relaxed) == RUNNING {
        STATE.store(WANTED, Ordering::Relaxed);
    }
}
