//! Hooks: work of the layers above the allocator that its slow paths and
//! fork handler run without depending on them. Today that is the live view
//! (`shm`: a snapshot `slabtop` asked for, a heap profile dump it asked
//! for, the file made once the process has lived 50 ms) and its fork
//! handling. The library constructor sets them once (`set`), before any
//! thread of the program exists; until then they do nothing. A slow path
//! pays one load and a predictable branch.

use core::sync::atomic::{AtomicUsize, Ordering};

static SLOW_PATH: AtomicUsize = AtomicUsize::new(0);
static FORK_CHILD: AtomicUsize = AtomicUsize::new(0);

/// Sets the hooks: `slow_path` runs on malloc and free slow paths and on
/// the reclaimer's rounds, with no allocator lock held; `fork_child` in a
/// forked child, after the allocator's own state is reset.
pub fn set(slow_path: fn(), fork_child: fn()) {
    // Release: pairs with the Acquire of `call`, so a hook that sees the
    // pointer sees what its owner set up before.
    SLOW_PATH.store(slow_path as usize, Ordering::Release);
    FORK_CHILD.store(fork_child as usize, Ordering::Release);
}

#[inline(always)]
fn call(slot: &AtomicUsize) {
    let f = slot.load(Ordering::Acquire);
    if f != 0 {
        // SAFETY: the slot holds 0 or a `fn()` stored by `set`.
        let f = unsafe { core::mem::transmute::<usize, fn()>(f) };
        f();
    }
}

/// Runs the slow-path hook (no allocator lock may be held).
#[inline(always)]
pub fn slow_path() {
    call(&SLOW_PATH);
}

/// Runs the fork-child hook (in the child, one thread).
pub fn fork_child() {
    call(&FORK_CHILD);
}
