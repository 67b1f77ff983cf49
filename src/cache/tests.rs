//! The cache's tests: the layout, the capacities, and the rseq sections on
//! private caches in a pinned child process.

use super::*;

#[test]
fn capacities() {
    assert_eq!(CAPS[OUTBOX] as usize, CAP_MAX);
    for c in 0..NCLASSES {
        let cap = CAPS[slot_of(c)] as usize;
        let size = size_class::class_size(c);
        assert!((1..=CAP_MAX).contains(&cap));
        let budget = if size > 512 {
            2 * CLASS_BUDGET
        } else {
            CLASS_BUDGET
        };
        assert!(cap * size <= budget.max(size));
        assert!(batch(c) >= 1 && batch(c) <= cap);
    }
    for (s, &cap) in CAPS.iter().enumerate() {
        assert!(cap as usize <= ring_slots(s) && ring_slots(s).is_power_of_two());
    }
    for size in 0..=size_class::SMALL_MAX {
        let c = size_class::class_of(size);
        let at = stack_of_size(size);
        assert!(
            at == stack_offset(c) || at == idle_offset(c),
            "size {size}: {at}"
        );
        assert_eq!(class_at(at), c);
    }
    for c in 0..NCLASSES {
        assert_eq!(class_at(stack_offset(c)), c);
        assert_eq!(class_at(idle_offset(c)), c);
        assert_ne!(stack_offset(c), slot_offset(OUTBOX));
        // Once a class is enabled, every size of it names its stack.
        enable(c);
        for size in 0..=size_class::SMALL_MAX {
            if size_class::class_of(size) == c {
                assert_eq!(stack_of_size(size), stack_offset(c), "size {size}");
            }
        }
    }
    assert_eq!(HEADER % 8, 0);
}

/// The stacks lie inside a block without overlapping, each class's
/// ring sized by `RING_BYTES`, and the part a stack at its base
/// capacity uses (header and masked slots) never straddles a page.
#[test]
fn layout() {
    use crate::cache_layout::{large_slot, LARGE_RINGS, NSLOTS};
    let mut spans: Vec<(usize, usize)> = (0..NSLOTS)
        .map(|s| (slot_offset(s), slot_offset(s) + HEADER + ring_slots(s) * 8))
        .collect();
    spans.sort();
    for w in spans.windows(2) {
        assert!(w[0].1 <= w[1].0, "stacks overlap: {w:?}");
    }
    assert!(spans.last().unwrap().1 <= CPU_STRIDE);
    // The idle headers: on pages of their own, after every stack.
    use crate::cache_layout::IDLE_AT;
    assert!(IDLE_AT >= spans.last().unwrap().1 && IDLE_AT.is_multiple_of(4096));
    assert!(idle_offset(NCLASSES - 1) + HEADER <= CPU_STRIDE);
    assert_eq!(CPU_STRIDE, 512 * 1024);
    assert_eq!(slot_offset(OUTBOX), 0);
    // The large rings: after the classes' stacks, each in one page.
    for r in 0..LARGE_RINGS {
        let at = slot_offset(large_slot(r));
        let used = HEADER + CAPS[large_slot(r)].next_power_of_two() as usize * 8;
        assert!(at > stack_offset(NCLASSES - 1) && ring_slots(large_slot(r)) == 128);
        assert_eq!(
            at / 4096,
            (at + used - 1) / 4096,
            "large ring {r} straddles a page"
        );
    }
    for c in 0..NCLASSES {
        let size = size_class::class_size(c);
        let slots = max_cap(c);
        assert!(slots.is_power_of_two() && (128..=2048).contains(&slots));
        assert!(slots == 128 || slots * size <= crate::cache_layout::RING_BYTES);
        assert!(slots == 2048 || 2 * slots * size > crate::cache_layout::RING_BYTES);
        let used = HEADER + base_cap(c).next_power_of_two() * 8;
        let at = stack_offset(c);
        assert_eq!(
            at / 4096,
            (at + used - 1) / 4096,
            "class {c} straddles a page"
        );
    }
    assert_eq!(max_cap(size_class::class_of(16)), 2048);
    assert_eq!(max_cap(size_class::class_of(1024)), 2048);
    assert_eq!(max_cap(size_class::class_of(4096)), 512);
    assert_eq!(max_cap(size_class::class_of(16384)), 128);
}

/// The sections on a private set of caches (the process's own are in use
/// by every other test thread), pinned so that the CPU stays put.
#[test]
fn sections_push_pop_and_refuse() {
    crate::alloc::ensure_init();
    if cpu::rseq_offset().is_none() {
        eprintln!("rseq not registered: the cache stays off, nothing to test");
        return;
    }
    in_lone_child(sections_on_private_caches);
}

/// Runs `f` in a forked child, where it is the only thread: pinned to
/// one CPU, its id stays the same throughout whether it is that CPU or
/// the concurrency id (which another test thread of this process could
/// otherwise take over while this one is off the CPU). Fails if `f`
/// panics.
pub(crate) fn in_lone_child(f: fn()) {
    // SAFETY: the child runs `f` and exits with `_exit`, never returning
    // into the test harness; the allocator's fork handlers leave its
    // locks usable in the child.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let r = std::panic::catch_unwind(f);
        if let Err(e) = &r {
            // The harness captures this thread's output, and the child
            // never hands it back: write the message to fd 2 directly.
            let msg = e
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| e.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)");
            crate::os::write_all(2, format!("child: {msg}\n").as_bytes());
        }
        // SAFETY: ends the child without running the parent's exit hooks.
        unsafe { libc::_exit(if r.is_ok() { 0 } else { 1 }) };
    }
    let mut status = 0;
    // SAFETY: waits for the child we just forked.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the child failed (status {status:#x}): see its message above"
    );
}

fn sections_on_private_caches() {
    let off = cpu::rseq_offset().unwrap();
    let ids = core_affinity::get_core_ids().unwrap_or_default();
    let Some(id) = ids.last() else { return };
    assert!(core_affinity::set_for_current(*id));
    let n = cpu::nzones();
    let base = crate::os::map(n * CPU_STRIDE) as usize;
    assert_ne!(base, 0);
    let k = Caches {
        off,
        n: n as u32,
        base,
    };
    // The hit paths' sections read the process's root: point it at
    // these caches (this child is the process's only thread).
    G.cpus.store(n as u32, Ordering::Relaxed);
    G.off.store(off, Ordering::Relaxed);
    G.base.store(base, Ordering::Relaxed);
    G.id_field.store(cpu::id_field(), Ordering::Relaxed);
    // SAFETY (the pops and pushes below): the root describes the caches
    // just mapped, `off` is this thread's rseq area, and the offsets are
    // stack offsets.
    let pop = |coff| unsafe { crate::arch::pop_hot(coff) };
    let push_free = |owner, coff, p| unsafe { crate::arch::push_free_hot(owner, coff, p) };
    let cpu = cpu::rseq_id(off).unwrap();
    let other = (cpu + 1) % n;
    let c = size_class::class_of(48);
    // Not prepared yet: no room.
    assert!(!k.push_owned(cpu, c, 0x1000 as *mut u8));
    k.prepare(cpu, slot_of(c));
    k.prepare(other, slot_of(c));
    assert!(pop(stack_offset(c)).is_null());
    for f in [0x1000usize, 0x2000, 0x3000] {
        assert!(k.push_owned(cpu, c, f as *mut u8));
    }
    // Not running on `other`: refused, unless it is the same CPU.
    assert_eq!(k.push_owned(other, c, 0x5000 as *mut u8), other == cpu);
    assert_eq!(k.pop_owned(other, c).is_null(), other != cpu);
    if other == cpu {
        assert!(k.push_owned(cpu, c, 0x5000 as *mut u8));
    }
    for f in [0x1000usize, 0x2000, 0x3000] {
        assert!(k.contains(cpu, slot_of(c), f as *mut u8));
    }
    assert!(!k.contains(cpu, slot_of(c), 0x4000 as *mut u8));
    assert_eq!(k.cached(slot_of(c)), 3);
    assert_eq!(k.cached(slot_of(c + 1)), 0);
    assert_eq!(k.cached(OUTBOX), 0);
    // Malloc's pops and free's pushes count as hits; the other sections'
    // moves (refills, flushes) do not.
    assert_eq!(k.hits(cpu, slot_of(c)), (0, 0));
    assert_eq!(pop(stack_offset(c)) as usize, 0x1000);
    assert_eq!(k.hits(cpu, slot_of(c)), (1, 0));
    assert_eq!(k.pop_owned(cpu, c) as usize, 0x2000);
    assert_eq!(pop(stack_offset(c)) as usize, 0x3000);
    assert!(pop(stack_offset(c)).is_null());
    assert!(push_free(cpu, stack_offset(c), 0x1000 as *mut u8));
    assert_eq!(k.hits(cpu, slot_of(c)), (2, 1));
    assert_eq!(pop(stack_offset(c)) as usize, 0x1000);
    // A full ring refuses, and gives everything back oldest first, the
    // head and tail wrapping round its slots.
    let cap = CAPS[slot_of(c)] as usize;
    for round in 0..3 {
        for i in 0..cap {
            assert!(k.push_owned(cpu, c, (0x10_0000 + i * 64) as *mut u8));
        }
        assert!(!k.push_owned(cpu, c, 0x9000 as *mut u8));
        assert!(!push_free(cpu, stack_offset(c), 0x9000 as *mut u8));
        assert_eq!(k.cached(slot_of(c)), cap as u64, "round {round}");
        for i in 0..cap {
            assert_eq!(pop(stack_offset(c)) as usize, 0x10_0000 + i * 64);
        }
        assert!(pop(stack_offset(c)).is_null());
    }
    // Bulk: a batch goes in in one section after what is there; a bulk
    // pop takes the oldest first and stops when the ring is empty.
    assert!(k.push_owned(cpu, c, 0x1000 as *mut u8));
    let batch: Vec<*mut u8> = (1..=5).map(|i| (0x4_0000 + i * 64) as *mut u8).collect();
    assert!(k.push_bulk_owned(cpu, c, &batch));
    assert_eq!(k.cached(slot_of(c)), 6);
    let mut out = [core::ptr::null_mut::<u8>(); 4];
    assert_eq!(k.pop_bulk_owned(cpu, c, &mut out), 4);
    assert_eq!(out, [0x1000 as *mut u8, batch[0], batch[1], batch[2]]);
    assert_eq!(pop(stack_offset(c)), batch[3]);
    assert_eq!(k.pop_bulk_owned(cpu, c, &mut out), 1);
    assert_eq!(out[0], batch[4]);
    assert_eq!(k.pop_bulk_owned(cpu, c, &mut out), 0);
    // A batch that would pass the capacity is refused whole.
    let many: Vec<*mut u8> = (0..=cap).map(|i| (0x8_0000 + i * 64) as *mut u8).collect();
    assert!(!k.push_bulk_owned(cpu, c, &many));
    assert!(k.push_bulk_owned(cpu, c, &many[..cap]));
    let mut all = [core::ptr::null_mut::<u8>(); CAP_MAX];
    assert_eq!(k.pop_bulk_owned(cpu, c, &mut all), cap);
    assert!((0..cap).all(|i| all[i] == many[i]));
    assert!(pop(stack_offset(c)).is_null());
    // Only malloc's and free's own sections counted.
    assert_eq!(k.hits(cpu, slot_of(c)), (3 + 3 * cap as u64 + 1, 1));
    // Not on `other`: refused (unless it is this CPU).
    if other != cpu {
        assert!(!k.push_bulk_owned(other, c, &batch));
        assert_eq!(k.pop_bulk_owned(other, c, &mut out), 0);
    }
    // Regearing: refused while the ring holds a chunk or off its CPU;
    // on an empty ring the capacity and the mask change together, the
    // ring then holds exactly the new capacity, oldest first, its head
    // and tail wrapping round the slots in use; and back again.
    let base = u32::from(CAPS[slot_of(c)]);
    let big = (max_cap(c) as u32).min(256);
    assert!(big > base);
    assert!(k.push_owned(cpu, c, 0x1000 as *mut u8));
    assert!(!k.regear_owned(cpu, c, big, big - 1));
    assert_eq!(k.pop_owned(cpu, c) as usize, 0x1000);
    if other != cpu {
        assert!(!k.regear_owned(other, c, big, big - 1));
    }
    assert!(!k.regear_owned(cpu, c, big + 1, big - 1), "cap > mask + 1");
    assert!(k.regear_owned(cpu, c, big, big - 1));
    assert_eq!(k.cap(cpu, slot_of(c)), big as usize);
    for round in 0..3 {
        for i in 0..big as usize {
            assert!(k.push_owned(cpu, c, (0x40_0000 + i * 64) as *mut u8));
        }
        assert!(!k.push_owned(cpu, c, 0x9000 as *mut u8), "round {round}");
        for i in 0..big as usize {
            assert_eq!(pop(stack_offset(c)) as usize, 0x40_0000 + i * 64);
        }
        assert!(pop(stack_offset(c)).is_null());
    }
    assert!(k.regear_owned(cpu, c, base, base.next_power_of_two() - 1));
    assert_eq!(k.cap(cpu, slot_of(c)), base as usize);
    for i in 0..base as usize {
        assert!(k.push_owned(cpu, c, (0x50_0000 + i * 64) as *mut u8));
    }
    assert!(!k.push_owned(cpu, c, 0x9000 as *mut u8));
    for i in 0..base as usize {
        assert_eq!(pop(stack_offset(c)) as usize, 0x50_0000 + i * 64);
    }
    // The outbox: taken whole, oldest first, then empty.
    k.prepare(cpu, OUTBOX);
    let mut buf = [0usize; CAP_MAX];
    assert_eq!(k.take_here(OUTBOX, &mut buf), 0);
    for f in [0x7000usize, 0x8000, 0x9000] {
        assert!(k.push_here(OUTBOX, f as *mut u8));
    }
    assert!(k.contains(cpu, OUTBOX, 0x9000 as *mut u8));
    assert_eq!(k.take_here(OUTBOX, &mut buf), 3);
    assert_eq!(buf[..3], [0x7000, 0x8000, 0x9000]);
    assert_eq!(k.take_here(OUTBOX, &mut buf), 0);
    assert!(k.push_here(OUTBOX, 0xa000 as *mut u8));
    assert_eq!(k.take_here(OUTBOX, &mut buf), 1);
    assert_eq!(buf[0], 0xa000);
    for i in 0..CAP_MAX {
        assert!(k.push_here(OUTBOX, (0x20_0000 + i * 64) as *mut u8));
    }
    assert!(!k.push_here(OUTBOX, 0xb000 as *mut u8));
    assert_eq!(k.take_here(OUTBOX, &mut buf), CAP_MAX);
    assert!((0..CAP_MAX).all(|i| buf[i] == 0x20_0000 + i * 64));
    crate::os::unmap(base as *mut u8, n * CPU_STRIDE);
}
