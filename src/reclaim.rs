//! Giving back the memory of quiet zones: from the slow path of a zone that
//! maps a new slab (`zone::adopt_idle`), the background reclaimer
//! (`SLABALLOC_BACKGROUND=1`), and `malloc_trim`.
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
//! nothing since its last look, collects every remote chunk and gives empty
//! slabs back; dirty page runs are purged with exponential decay (half of
//! them per idle period).

use crate::stats::GLOBAL;
use crate::{cpu, ring, runs::RUNS, zone};
use core::sync::atomic::{AtomicU8, Ordering};

const OFF: u8 = 0;
const WANTED: u8 = 1;
const RUNNING: u8 = 2;
static STATE: AtomicU8 = AtomicU8::new(OFF);

/// Period between passes when no message wakes it.
const PERIOD_MS: u64 = 250;

/// Asks for the reclaimer; it starts on the next slow path with no lock held.
pub fn request() {
    let _ = STATE.compare_exchange(OFF, WANTED, Ordering::Relaxed, Ordering::Relaxed);
}

/// Called on slow paths, with no allocator lock held.
#[inline]
pub fn after_slow_path() {
    if STATE.load(Ordering::Relaxed) == WANTED {
        start();
    }
}

#[cold]
fn start() {
    if STATE
        .compare_exchange(WANTED, RUNNING, Ordering::AcqRel, Ordering::Relaxed)
        .is_ok()
        && !crate::os::spawn_thread(thread_main)
    {
        STATE.store(OFF, Ordering::Relaxed);
    }
}

extern "C" fn thread_main(_: *mut libc::c_void) -> *mut libc::c_void {
    loop {
        if ring::sleep_until_work(zone::any_ring_has_work, PERIOD_MS) {
            GLOBAL.futex_waits.fetch_add(1, Ordering::Relaxed);
        }
        pass(false);
        // Answers slabtop within a period even when the program is idle.
        crate::hook::slow_path();
    }
}

/// One pass over every zone. `force` (malloc_trim, and malloc before it
/// reports ENOMEM) waits for busy zones and reclaims everything, the per-CPU
/// caches and outboxes of every CPU included (`drain_all_cpus`); otherwise
/// busy zones are skipped and only idle zones give memory back. Returns the
/// number of pages purged.
pub fn pass(force: bool) -> usize {
    GLOBAL.reclaim_passes.fetch_add(1, Ordering::Relaxed);
    if force {
        drain_all_cpus();
    }
    let mut all_idle = true;
    for i in 0..cpu::nzones() {
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
    let dirty = RUNS.dirty_pages();
    if force || dirty < 256 {
        RUNS.purge(0)
    } else if all_idle {
        RUNS.purge(dirty / 2)
    } else {
        0
    }
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
    if STATE.load(Ordering::Relaxed) == RUNNING {
        STATE.store(WANTED, Ordering::Relaxed);
    }
}
