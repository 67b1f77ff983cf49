//! Malloc types: DragonFly's `struct malloc_type`, for user space.
//!
//! A C program declares a named type (`SA_DEFINE_TYPE(M_CACHE, "cache")`) and
//! allocates with it (`sa_kmalloc(size, &M_CACHE, SA_WAITOK | SA_ZERO)`,
//! `sa_kfree(p, &M_CACHE)`). Usage — bytes (usable size) and objects — is kept
//! per CPU, by the CPU that does the malloc or the free, and summed on read;
//! one CPU's slot may go negative, only the sum means anything. A type may
//! have a limit: an allocation that would take the type past it fails with
//! ENOMEM (`SA_NOWAIT`), or waits until frees of that type make room
//! (`SA_WAITOK`), as the kernel's M_WAITOK does. As in DragonFly the limit
//! is checked against a sum read without a lock, so concurrent allocations
//! may overshoot it by what they have in flight.
//!
//! The per-CPU slots are allocated on first use of a type, from slaballoc
//! itself (no allocator lock is held there), and the type joins a global list
//! that the stats reports walk. Types are never unregistered: their
//! definitions are static objects of the program.

use crate::alloc;
use crate::cpu;
use core::ffi::{c_char, c_int, c_void, CStr};
use core::sync::atomic::{AtomicI64, AtomicPtr, AtomicU32, AtomicU64, Ordering};

/// Zero the block.
pub const SA_ZERO: c_int = 0x1;
/// Fail (NULL, ENOMEM) instead of waiting when the type is at its limit or
/// memory is short.
pub const SA_NOWAIT: c_int = 0x2;
/// Wait until the allocation can succeed.
pub const SA_WAITOK: c_int = 0x4;

/// A malloc type, as laid out in C (see `include/slaballoc.h`). Fields after
/// `limit` are private: `SA_DEFINE_TYPE` zero-fills them.
#[repr(C)]
#[allow(non_camel_case_types)]
pub struct sa_malloc_type {
    /// The type's name, shown in statistics.
    pub name: *const c_char,
    /// Most bytes the type may hold at once; 0 for no limit.
    pub limit: usize,
    pub _percpu: *mut c_void,
    pub _next: *mut sa_malloc_type,
    pub _failures: u64,
    pub _seq: u32,
    pub _waiters: u32,
}

#[repr(C, align(64))]
struct Slot {
    bytes: AtomicI64,
    objects: AtomicI64,
}

static TYPES: AtomicPtr<sa_malloc_type> = AtomicPtr::new(core::ptr::null_mut());

// Private fields are shared between threads: access them only as atomics.
fn percpu(t: *mut sa_malloc_type) -> &'static AtomicPtr<Slot> {
    // SAFETY: the field is pointer-sized and aligned, lives as long as the
    // (static) type object, and is only ever accessed atomically.
    unsafe { AtomicPtr::from_ptr(core::ptr::addr_of_mut!((*t)._percpu) as *mut *mut Slot) }
}
fn next(t: *mut sa_malloc_type) -> &'static AtomicPtr<sa_malloc_type> {
    // SAFETY: as `percpu`.
    unsafe { AtomicPtr::from_ptr(core::ptr::addr_of_mut!((*t)._next)) }
}
fn failures(t: *mut sa_malloc_type) -> &'static AtomicU64 {
    // SAFETY: as `percpu`; u64 fields of a repr(C) struct after two pointers
    // and a usize are 8-byte aligned.
    unsafe { AtomicU64::from_ptr(core::ptr::addr_of_mut!((*t)._failures)) }
}
fn seq(t: *mut sa_malloc_type) -> &'static AtomicU32 {
    // SAFETY: as `percpu`.
    unsafe { AtomicU32::from_ptr(core::ptr::addr_of_mut!((*t)._seq)) }
}
fn waiters(t: *mut sa_malloc_type) -> &'static AtomicU32 {
    // SAFETY: as `percpu`.
    unsafe { AtomicU32::from_ptr(core::ptr::addr_of_mut!((*t)._waiters)) }
}

/// The type's per-CPU slots, allocating and registering them on first use.
#[link_section = ".text_cold"]
fn slots(t: *mut sa_malloc_type) -> Option<*mut Slot> {
    let p = percpu(t).load(Ordering::Acquire);
    if !p.is_null() {
        return Some(p);
    }
    let n = cpu::MAX_ZONES;
    let fresh = alloc::calloc(n, core::mem::size_of::<Slot>()) as *mut Slot;
    if fresh.is_null() {
        return None;
    }
    match percpu(t).compare_exchange(
        core::ptr::null_mut(),
        fresh,
        Ordering::AcqRel,
        Ordering::Acquire,
    ) {
        Ok(_) => {
            // We registered it: link it on the list of types (push-only).
            let mut head = TYPES.load(Ordering::Relaxed);
            loop {
                next(t).store(head, Ordering::Relaxed);
                // Release publishes the type's fields to list walkers.
                match TYPES.compare_exchange_weak(head, t, Ordering::Release, Ordering::Relaxed) {
                    Ok(_) => break,
                    Err(h) => head = h,
                }
            }
            Some(fresh)
        }
        Err(winner) => {
            alloc::free(fresh as *mut u8);
            Some(winner)
        }
    }
}

fn slot(s: *mut Slot) -> &'static Slot {
    // SAFETY: `s` has MAX_ZONES slots and current_zone() < MAX_ZONES.
    unsafe { &*s.add(cpu::current_zone() % cpu::MAX_ZONES) }
}

fn usage(s: *mut Slot) -> (i64, i64) {
    let mut b = 0i64;
    let mut o = 0i64;
    for i in 0..cpu::MAX_ZONES {
        // SAFETY: `s` has MAX_ZONES slots.
        let sl = unsafe { &*s.add(i) };
        b = b.wrapping_add(sl.bytes.load(Ordering::Relaxed));
        o = o.wrapping_add(sl.objects.load(Ordering::Relaxed));
    }
    (b, o)
}

/// `sa_kmalloc`: allocates `size` bytes charged to type `t`.
///
/// # Safety
/// `t` is null or points at a type object that lives for the program.
pub unsafe fn kmalloc(size: usize, t: *mut sa_malloc_type, flags: c_int) -> *mut u8 {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe {
        let valid = SA_ZERO | SA_NOWAIT | SA_WAITOK;
        if t.is_null() || flags & !valid != 0 || (flags & SA_NOWAIT != 0 && flags & SA_WAITOK != 0)
        {
            crate::os::set_errno(libc::EINVAL);
            return core::ptr::null_mut();
        }
        let wait = flags & SA_WAITOK != 0;
        let Some(s) = slots(t) else {
            crate::os::set_errno(libc::ENOMEM);
            return core::ptr::null_mut();
        };
        // SAFETY: t is a valid type object (caller contract, checked non-null).
        let limit = (*t).limit;
        loop {
            let seen = seq(t).load(Ordering::Acquire);
            if limit != 0 {
                let (bytes, _) = usage(s);
                if bytes.max(0) as u128 + size as u128 > limit as u128 {
                    if wait && size <= limit {
                        wait_for_free(t, seen);
                        continue;
                    }
                    failures(t).fetch_add(1, Ordering::Relaxed);
                    crate::os::set_errno(libc::ENOMEM);
                    return core::ptr::null_mut();
                }
            }
            let p = if flags & SA_ZERO != 0 {
                alloc::calloc(1, size)
            } else {
                alloc::malloc(size)
            };
            if p.is_null() {
                if wait {
                    // Memory is short: give back what we can and try again.
                    crate::reclaim::pass(true);
                    wait_for_free(t, seen);
                    continue;
                }
                failures(t).fetch_add(1, Ordering::Relaxed);
                return p;
            }
            let u = alloc::usable_size(p) as i64;
            let sl = slot(s);
            sl.bytes.fetch_add(u, Ordering::Relaxed);
            sl.objects.fetch_add(1, Ordering::Relaxed);
            return p;
        }
    }
}

/// Sleeps until a free of type `t` bumps its sequence past `seen` (or 50 ms).
fn wait_for_free(t: *mut sa_malloc_type, seen: u32) {
    waiters(t).fetch_add(1, Ordering::SeqCst);
    // Dekker with `kfree`: waiters is published before re-reading seq.
    if seq(t).load(Ordering::SeqCst) == seen {
        crate::os::futex_wait(seq(t), seen, 50);
    }
    waiters(t).fetch_sub(1, Ordering::SeqCst);
}

/// `sa_kfree`: frees `p`, uncharging it from type `t`.
///
/// # Safety
/// As `kmalloc`; `p` came from `kmalloc` with type `t`.
pub unsafe fn kfree(p: *mut u8, t: *mut sa_malloc_type) {
    if p.is_null() {
        return;
    }
    if t.is_null() {
        crate::fmt::fatal_pointer("sa_kfree", p, "NULL malloc type");
    }
    let Some(s) = slots(t) else {
        alloc::free(p);
        return;
    };
    let u = alloc::usable_size(p) as i64;
    let sl = slot(s);
    sl.bytes.fetch_sub(u, Ordering::Relaxed);
    sl.objects.fetch_sub(1, Ordering::Relaxed);
    alloc::free(p);
    seq(t).fetch_add(1, Ordering::SeqCst);
    if waiters(t).load(Ordering::SeqCst) != 0 {
        crate::os::futex_wake(seq(t), i32::MAX);
    }
}

/// Summed usage of type `t`: (bytes, objects).
///
/// # Safety
/// `t` points at a type object that lives for the program.
pub unsafe fn type_usage(t: *mut sa_malloc_type) -> (i64, i64) {
    let p = percpu(t).load(Ordering::Acquire);
    if p.is_null() {
        (0, 0)
    } else {
        usage(p)
    }
}

/// What a report shows of one type.
pub struct TypeView {
    pub name: &'static [u8],
    pub bytes: i64,
    pub objects: i64,
    pub limit: usize,
    pub failures: u64,
}

/// Calls `f` for every type used so far, most recently registered first.
pub fn for_each(mut f: impl FnMut(&TypeView)) {
    let mut t = TYPES.load(Ordering::Acquire);
    while !t.is_null() {
        // SAFETY: registered types are static objects of the program; their
        // name and limit were published by the Release push.
        let (name, limit) = unsafe {
            let n = (*t).name;
            let name: &'static [u8] = if n.is_null() {
                b"?"
            } else {
                let b = CStr::from_ptr(n).to_bytes();
                &b[..b.len().min(128)]
            };
            (name, (*t).limit)
        };
        // SAFETY: registered types live for the program.
        let (bytes, objects) = unsafe { type_usage(t) };
        f(&TypeView {
            name,
            bytes,
            objects,
            limit,
            failures: failures(t).load(Ordering::Relaxed),
        });
        t = next(t).load(Ordering::Acquire);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_type(name: &'static CStr, limit: usize) -> *mut sa_malloc_type {
        Box::leak(Box::new(sa_malloc_type {
            name: name.as_ptr(),
            limit,
            _percpu: core::ptr::null_mut(),
            _next: core::ptr::null_mut(),
            _failures: 0,
            _seq: 0,
            _waiters: 0,
        }))
    }

    #[test]
    fn usage_follows_allocations_across_threads() {
        unsafe { usage_across_threads() }
    }

    /// # Safety
    /// None beyond the types API's: the test's types are statics.
    unsafe fn usage_across_threads() {
        // SAFETY: the caller upholds the contract in `# Safety` above.
        unsafe {
            let t = new_type(c"test-usage", 0);
            let ptrs: Vec<usize> = (0..1000)
                .map(|i| kmalloc(10 + i, t, SA_WAITOK) as usize)
                .collect();
            let total: i64 = ptrs
                .iter()
                .map(|&p| alloc::usable_size(p as *mut u8) as i64)
                .sum();
            assert_eq!(type_usage(t), (total, 1000));
            let tt = t as usize;
            std::thread::spawn(move || {
                for p in ptrs {
                    kfree(p as *mut u8, tt as *mut sa_malloc_type);
                }
            })
            .join()
            .unwrap();
            assert_eq!(type_usage(t), (0, 0));
            let mut seen = false;
            for_each(|v| seen |= v.name == b"test-usage");
            assert!(seen);
        }
    }

    #[test]
    fn limit_and_flags() {
        unsafe { limits() }
    }

    /// # Safety
    /// As `usage_across_threads`.
    unsafe fn limits() {
        // SAFETY: the caller upholds the contract in `# Safety` above.
        unsafe {
            let t = new_type(c"test-limit", 4096);
            let a = kmalloc(3000, t, SA_NOWAIT | SA_ZERO);
            assert!(!a.is_null());
            assert!(core::slice::from_raw_parts(a, 3000).iter().all(|&b| b == 0));
            assert!(kmalloc(3000, t, SA_NOWAIT).is_null());
            assert_eq!(crate::os::errno(), libc::ENOMEM);
            assert!(kmalloc(1, t, SA_NOWAIT | SA_WAITOK).is_null());
            assert_eq!(crate::os::errno(), libc::EINVAL);
            assert!(kmalloc(1, t, 0x100).is_null());
            // A waiter blocks until another thread frees.
            let tt = t as usize;
            let aa = a as usize;
            let h = std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(100));
                kfree(aa as *mut u8, tt as *mut sa_malloc_type);
            });
            let b = kmalloc(3000, t, SA_WAITOK);
            assert!(!b.is_null());
            h.join().unwrap();
            kfree(b, t);
            assert_eq!(type_usage(t), (0, 0));
        }
    }
}
