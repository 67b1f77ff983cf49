//! The one lock type of the allocator: a spin lock that knows its holder.
//!
//! The lock word holds the holder's thread id (its thread pointer), so a signal
//! handler that re-enters malloc while its own thread holds a lock sees that at
//! once instead of deadlocking, and can go elsewhere. Contention on a per-CPU
//! lock almost always means the holder was preempted on this CPU, so waiters
//! spin only briefly and then yield their time slice to it.

use crate::cpu::thread_id;
use core::sync::atomic::{AtomicUsize, Ordering};

pub struct OwnerLock {
    word: AtomicUsize,
}

/// Why a lock could not be taken.
#[derive(Debug, PartialEq, Eq)]
pub enum Busy {
    /// Another thread holds it.
    Other,
    /// The calling thread holds it already (re-entry from a signal handler).
    Reentrant,
}

impl OwnerLock {
    pub const fn new() -> Self {
        OwnerLock {
            word: AtomicUsize::new(0),
        }
    }

    /// Takes the lock if it is free. Acquire pairs with the Release in `unlock`.
    #[inline(always)]
    pub fn try_lock(&self) -> Result<(), Busy> {
        let me = thread_id();
        match self
            .word
            .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
        {
            Ok(_) => Ok(()),
            Err(h) if h == me => Err(Busy::Reentrant),
            Err(_) => Err(Busy::Other),
        }
    }

    /// Takes the lock, waiting for another holder. Fails only on re-entry.
    pub fn lock(&self) -> Result<(), Busy> {
        let mut spins = 0u32;
        loop {
            match self.try_lock() {
                Ok(()) => return Ok(()),
                Err(Busy::Reentrant) => return Err(Busy::Reentrant),
                Err(Busy::Other) => {}
            }
            spins += 1;
            if spins < 64 {
                core::hint::spin_loop();
            } else {
                crate::os::yield_now();
            }
        }
    }

    /// Releases the lock. Release pairs with the Acquire of the next taker.
    #[inline(always)]
    pub fn unlock(&self) {
        self.word.store(0, Ordering::Release);
    }

    /// True if the calling thread holds the lock.
    pub fn held_by_me(&self) -> bool {
        self.word.load(Ordering::Relaxed) == thread_id()
    }

    /// In a forked child only the forking thread exists and it held every
    /// lock (prepare handler): make the lock free again.
    pub fn reset(&self) {
        self.word.store(0, Ordering::Relaxed);
    }
}

impl Default for OwnerLock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn reentry_is_detected() {
        let l = OwnerLock::new();
        assert_eq!(l.try_lock(), Ok(()));
        assert_eq!(l.try_lock(), Err(Busy::Reentrant));
        assert_eq!(l.lock(), Err(Busy::Reentrant));
        assert!(l.held_by_me());
        l.unlock();
        assert!(!l.held_by_me());
    }

    #[test]
    fn mutual_exclusion() {
        struct Shared {
            lock: OwnerLock,
            count: std::cell::UnsafeCell<u64>,
        }
        // SAFETY: `count` is only touched under `lock`.
        unsafe impl Sync for Shared {}
        let s = Arc::new(Shared {
            lock: OwnerLock::new(),
            count: std::cell::UnsafeCell::new(0),
        });
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for _ in 0..100_000 {
                        s.lock.lock().unwrap();
                        // SAFETY: we hold the lock.
                        unsafe { *s.count.get() += 1 };
                        s.lock.unlock();
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        // SAFETY: all threads joined.
        assert_eq!(unsafe { *s.count.get() }, 400_000);
    }
}
