//! Which CPU are we on, and which thread are we.
//!
//! The id that picks a zone and a cache comes from glibc's registered rseq
//! area (`struct rseq` at thread pointer + `__rseq_offset`), read inline:
//!
//! * where the kernel provides it (Linux >= 6.3: `AT_RSEQ_FEATURE_SIZE` >= 28),
//!   `mm_cid` at offset 24, the *concurrency id*: a number below the count of
//!   the process's threads running at once (and below the CPU count), which
//!   two threads running at the same time never share, and which the kernel
//!   changes only while the thread is off the CPU, so it is as stable inside
//!   an rseq critical section as the CPU number (google/tcmalloc's "virtual
//!   CPU ids"). A thread that migrates keeps its zone and its cache: a lone
//!   thread moved between two CPUs every 2 ms made 44 % of its frees
//!   remote and took 22 % more memory with CPU numbers, none with `mm_cid`
//!   (docs/experiments.md). And a process with few threads on a machine with
//!   many CPUs uses as many zones as it runs threads at once, not one per CPU
//!   it happens to visit;
//! * elsewhere `cpu_id` at offset 4, the CPU number.
//!
//! The symbol `__rseq_offset` only exists in glibc >= 2.35, so it is declared
//! weak with `global_asm!` and loaded through the GOT: on older glibc it
//! resolves to 0. `cpu_id` is negative when glibc did not register its area
//! (e.g. `GLIBC_TUNABLES=glibc.pthread.rseq=0`): `init` checks it, and glibc
//! registers every thread or none (`__rseq_size` is 0 when the main thread's
//! registration failed, and each new thread registers the same way).
//!
//! ## Our own rseq area, where glibc registered none
//!
//! Then (glibc < 2.35, the tunable off) we register an area of our own, so
//! that the cache's sections run unchanged on any Linux >= 4.18. It must be
//! at the same offset from the thread pointer in every thread (the sections
//! address it as `fs:[off]`), so it is a 32-byte `struct rseq` in static TLS
//! (`.tdata`, initial-exec: `own_area_offset`), whose template reads
//! `cpu_id = mm_cid = -1` (`RSEQ_CPU_ID_UNINITIALIZED`). `init` decides once:
//! if glibc's area is registered, ours is never used; else `init` registers
//! ours for the calling thread, and if the kernel refuses (ENOSYS, EPERM
//! under seccomp...) there is no rseq, as before. Other threads register
//! lazily: a thread that never did reads a negative id, so every section
//! fails (its unsigned `cmp id, n; jae`), and malloc and free take their
//! zone paths, which ask `current` for the zone; `current` finds the id
//! negative and, once per thread, makes the system call
//! (`register_thread`): from then on the id is valid and the cache serves
//! the thread. If the call fails, `cpu_id` becomes -2
//! (`RSEQ_CPU_ID_REGISTRATION_FAILED`) and the thread keeps the zone path
//! (correct, only slower) without trying again. The path never allocates,
//! locks or panics: a system call and two reads.
//!
//! Why this is sound over a thread's life:
//! * **fork** copies the forking thread's registration into the child
//!   (kernel semantics), and the area with it, at the same address;
//!   `vfork`/`CLONE_VM` children get none, as with glibc's area;
//! * **exec** drops the registration (kernel), with the whole address space;
//! * **thread exit**: the kernel writes the area only on the thread's way
//!   back to user space, which an exiting thread never takes, and glibc
//!   frees or reuses a thread's stack and static TLS only after the kernel
//!   cleared its tid (`CLONE_CHILD_CLEARTID`), in `exit_mm`, later still.
//!   A reused stack gets the TLS template copied in again (`cpu_id = -1`),
//!   so the next thread there registers for itself. So we never unregister:
//!   a pthread key destructor would cost a key, and another destructor
//!   running after it and calling malloc would register the area again;
//! * **signals**: a handler that interrupts the registration and mallocs
//!   registers the thread itself; the interrupted call then fails with
//!   EBUSY, and the -2 is written only over a -1 (compare-and-swap), so a
//!   valid id stays;
//! * another library that registers its own rseq area after us is refused
//!   (EINVAL: another area is registered), as it would be against glibc's
//!   area; one that did before us makes ours fail the same way, and that
//!   thread keeps the zone path.

use crate::arch;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicIsize, AtomicUsize, Ordering};

/// Upper bound on the number of zones (per-CPU arenas of slabs). CPU ids above
/// it share zones modulo this bound, which stays correct (zones are locked).
pub const MAX_ZONES: usize = 256;

/// `cpu_id` of an area the kernel has not filled: the TLS template's value,
/// so a thread whose area reads it has not tried to register.
const RSEQ_CPU_ID_UNINITIALIZED: i32 = -1;
/// `cpu_id` once a thread's registration failed: it does not try again.
const RSEQ_CPU_ID_REGISTRATION_FAILED: i32 = -2;

/// True if `RSEQ_OFFSET` is our own area's (glibc registered none).
static OWN_AREA: AtomicBool = AtomicBool::new(false);

/// Registers our own area, at `off` from the thread pointer, for the calling
/// thread. On failure marks it -2 (see the module doc); returns success.
#[cold]
#[inline(never)]
fn register_own(off: isize) -> bool {
    // fs:0 holds the thread pointer itself, so the area's address is that
    // plus `off`; it lives as long as the thread (static TLS).
    let area = thread_id().wrapping_add_signed(off) as *mut u8;
    // SAFETY: `area` is our area in this thread's static TLS: 32 bytes,
    // 32-byte aligned (its `.balign`, and the TLS block's alignment), valid
    // until the thread is gone, when the kernel no longer writes it (see the
    // module doc, "thread exit").
    if unsafe { crate::os::rseq_register(area, arch::RSEQ_SIG) } == 0 {
        return true;
    }
    // SAFETY: `area` is this thread's own area (aligned, 32 bytes); cpu_id
    // is the aligned i32 at +4, which the kernel may write only once the
    // thread is registered (by a signal handler meanwhile: then it is no
    // longer -1 and stays as it is).
    let cpu_id = unsafe { &*(area.add(CPU_ID_FIELD) as *const AtomicI32) };
    let _ = cpu_id.compare_exchange(
        RSEQ_CPU_ID_UNINITIALIZED,
        RSEQ_CPU_ID_REGISTRATION_FAILED,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    false
}

/// The first time a thread that uses our own area finds its id negative:
/// registers it, and returns the id it then reads. None if we use glibc's
/// area or none, if the thread tried before, or if the kernel refused.
#[cold]
#[inline(never)]
fn register_thread() -> Option<usize> {
    if OWN_AREA.load(Ordering::Relaxed) {
        let off = RSEQ_OFFSET.load(Ordering::Relaxed);
        // SAFETY: `off` is our area's offset (OWN_AREA), in this thread's
        // static TLS; cpu_id is the i32 at +4.
        if unsafe { arch::read_rseq_i32(off, CPU_ID_FIELD) } != RSEQ_CPU_ID_UNINITIALIZED
            || !register_own(off)
        {
            return None;
        }
        // SAFETY: as above; the id field is within the area. The kernel
        // filled it before the system call returned to us.
        let id = unsafe { arch::read_rseq_i32(off, id_field()) };
        return (id >= 0).then_some(id as usize);
    }
    None
}

/// True if the rseq area in use is our own (glibc registered none).
#[cfg(test)]
pub fn own_area() -> bool {
    OWN_AREA.load(Ordering::Relaxed)
}

/// Byte offset of the rseq area from the thread pointer; `NO_RSEQ` if unknown.
static RSEQ_OFFSET: AtomicIsize = AtomicIsize::new(NO_RSEQ);
const NO_RSEQ: isize = isize::MIN;

static NZONES: AtomicUsize = AtomicUsize::new(1);

/// Offset in `struct rseq` of the id we use: `mm_cid` or `cpu_id`.
static ID_FIELD: AtomicUsize = AtomicUsize::new(CPU_ID_FIELD);
const CPU_ID_FIELD: usize = 4;
const MM_CID_FIELD: usize = 24;
/// `AT_RSEQ_FEATURE_SIZE` (Linux >= 6.3): how much of `struct rseq` the
/// kernel fills; `mm_cid` is there from 28 on. 0 (absent) on older kernels.
const AT_RSEQ_FEATURE_SIZE: libc::c_ulong = 27;

/// The id field for a kernel whose rseq feature size is `feature_size`.
/// Built with the `cpu-ids` feature (the C suite's second library,
/// `make build-cpu-ids`), always the CPU number: the mode of every kernel
/// before 6.3, tested on any kernel.
pub fn id_field_for(feature_size: libc::c_ulong) -> usize {
    if !cfg!(feature = "cpu-ids") && feature_size >= (MM_CID_FIELD + 4) as libc::c_ulong {
        MM_CID_FIELD
    } else {
        CPU_ID_FIELD
    }
}

/// A unique, non-zero id of the calling thread that costs one instruction:
/// the thread pointer.
#[inline(always)]
pub fn thread_id() -> usize {
    arch::thread_pointer()
}

/// Called once from initialisation (the first malloc, before any other
/// thread can exist): finds the rseq area, whether this thread registered it
/// (else registers our own: see the module doc), the id to use, and the CPU
/// count.
pub fn init() {
    if let Some(off) = arch::glibc_rseq_offset() {
        // SAFETY: the rseq area lives in this thread's static TLS at
        // fs:[off]; cpu_id is the i32 at +4, negative if unregistered.
        let cpu: i32 = unsafe { arch::read_rseq_i32(off, CPU_ID_FIELD) };
        if cpu >= 0 {
            ID_FIELD.store(
                id_field_for(crate::os::getauxval(AT_RSEQ_FEATURE_SIZE)),
                Ordering::Relaxed,
            );
            RSEQ_OFFSET.store(off, Ordering::Relaxed);
        }
    }
    // glibc registered no area: ours, if the kernel takes it.
    if RSEQ_OFFSET.load(Ordering::Relaxed) == NO_RSEQ {
        if let Some(off) = arch::own_area_offset() {
            if register_own(off) {
                ID_FIELD.store(
                    id_field_for(crate::os::getauxval(AT_RSEQ_FEATURE_SIZE)),
                    Ordering::Relaxed,
                );
                OWN_AREA.store(true, Ordering::Relaxed);
                RSEQ_OFFSET.store(off, Ordering::Relaxed);
            }
        }
    }
    NZONES.store(possible_cpus().clamp(1, MAX_ZONES), Ordering::Relaxed);
}

/// The id in use (`id_field`) from the rseq area at `off`, if the thread's
/// area is registered (else it reads negative).
#[inline(always)]
pub fn rseq_id(off: isize) -> Option<usize> {
    // SAFETY: `off` is the offset of the rseq area in use (`rseq_offset`),
    // in this thread's static TLS; the id field is an i32 inside it.
    let id = unsafe { arch::read_rseq_i32(off, id_field()) };
    (id >= 0).then_some(id as usize)
}

/// The offset in `struct rseq` of the id that picks zones and caches: 24
/// (`mm_cid`) or 4 (`cpu_id`). Fixed by `init`.
#[inline(always)]
pub fn id_field() -> usize {
    ID_FIELD.load(Ordering::Relaxed)
}

/// True if zones and caches are picked by the concurrency id, not the CPU.
pub fn uses_cid() -> bool {
    rseq_offset().is_some() && id_field() == MM_CID_FIELD
}

/// What picks a thread's zone, for the reports: `mm_cid`, `cpu_id`, or
/// `thread` (no rseq: a hash of the thread pointer).
pub fn id_kind() -> &'static str {
    match rseq_offset() {
        None => "thread",
        Some(_) if uses_cid() => "mm_cid",
        Some(_) => "cpu_id",
    }
}

/// The rseq area's offset from the thread pointer, if glibc exported one
/// and registered the area (for every thread), or if we registered our own
/// (for the first thread; others register lazily: see the module doc).
#[inline(always)]
pub fn rseq_offset() -> Option<isize> {
    let off = RSEQ_OFFSET.load(Ordering::Relaxed);
    (off != NO_RSEQ).then_some(off)
}

/// The number of zones in use (CPUs that can ever be online, bounded).
#[inline(always)]
pub fn nzones() -> usize {
    NZONES.load(Ordering::Relaxed)
}

/// The id of the calling thread's zone now (its concurrency id, or the CPU
/// it runs on; either may change right after).
#[inline(always)]
pub fn current() -> usize {
    let off = RSEQ_OFFSET.load(Ordering::Relaxed);
    if off != NO_RSEQ {
        if let Some(id) = rseq_id(off) {
            return id;
        }
    }
    slow_current()
}

/// The id is negative. A thread on our own area that has not registered it
/// yet does so here (`register_thread`): every slow path of malloc and free
/// asks for its zone, so this is where a thread's first miss lands.
/// Without a registered rseq area (the kernel refused it, valgrind) the CPU
/// cannot be read cheaply: `sched_getcpu` would cost a vDSO
/// call or a system call per malloc. Spread threads over zones by their
/// thread pointer instead, as an arena-per-thread allocator would; zones are
/// locked, so any mapping is correct, only locality is lost.
#[cold]
fn slow_current() -> usize {
    if let Some(id) = register_thread() {
        return id;
    }
    let t = thread_id();
    // Thread pointers are page-aligned-ish and spaced by stack sizes: mix.
    (t ^ (t >> 12) ^ (t >> 21)).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32
}

/// The zone index for the calling thread (`current`, bounded).
#[inline(always)]
pub fn current_zone() -> usize {
    let n = nzones();
    let c = current();
    if c < n {
        c
    } else {
        // Multiply-shift range reduction: no division on this path.
        ((c as u32 as u64 * n as u64) >> 32) as usize
    }
}

/// Number of possible CPUs from `/sys/devices/system/cpu/possible` ("0-63",
/// "0,2-5", ...): the highest id + 1, so that sparse ids inside a cpuset fit.
pub fn possible_cpus() -> usize {
    let mut buf = [0u8; 256];
    let list = crate::os::read_small_file(c"/sys/devices/system/cpu/possible", &mut buf);
    parse_cpu_list(list).unwrap_or_else(|| {
        // SAFETY: sysconf has no preconditions.
        let c = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) };
        if c > 0 {
            c as usize
        } else {
            1
        }
    })
}

/// Parses a kernel CPU list and returns the highest id + 1.
pub fn parse_cpu_list(s: &[u8]) -> Option<usize> {
    let mut max: Option<usize> = None;
    let mut cur: Option<usize> = None;
    for &b in s {
        match b {
            b'0'..=b'9' => {
                let d = (b - b'0') as usize;
                cur = Some(cur.unwrap_or(0).checked_mul(10)?.checked_add(d)?);
            }
            b',' | b'-' | b'\n' | b' ' => {
                if let Some(c) = cur.take() {
                    max = Some(max.map_or(c, |m| m.max(c)));
                }
            }
            _ => return None,
        }
    }
    if let Some(c) = cur {
        max = Some(max.map_or(c, |m| m.max(c)));
    }
    max.map(|m| m + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list(b"0-1\n"), Some(2));
        assert_eq!(parse_cpu_list(b"0"), Some(1));
        assert_eq!(parse_cpu_list(b"0,2-5,63\n"), Some(64));
        assert_eq!(parse_cpu_list(b""), None);
        assert_eq!(parse_cpu_list(b"x"), None);
    }

    #[test]
    #[cfg(not(feature = "cpu-ids"))]
    fn id_field_by_kernel_feature_size() {
        // Linux < 6.3 has no AT_RSEQ_FEATURE_SIZE (0); 6.3 reports 28.
        assert_eq!(id_field_for(0), CPU_ID_FIELD);
        assert_eq!(id_field_for(20), CPU_ID_FIELD);
        assert_eq!(id_field_for(27), CPU_ID_FIELD);
        assert_eq!(id_field_for(28), MM_CID_FIELD);
        assert_eq!(id_field_for(32), MM_CID_FIELD);
    }

    #[test]
    fn current_id_matches_the_kernel() {
        crate::alloc::ensure_init();
        // Pin to each CPU in turn: the rseq area's cpu_id agrees with
        // sched_getcpu, and the id in use is that CPU, or a concurrency id
        // (below the CPU count; other test threads run meanwhile, so which
        // one is not ours to predict).
        for cpu in 0..possible_cpus().min(4) {
            let ids = core_affinity::get_core_ids().unwrap_or_default();
            if let Some(id) = ids.iter().find(|c| c.id == cpu) {
                if core_affinity::set_for_current(*id) {
                    assert_eq!(crate::os::sched_getcpu() as usize, cpu);
                    let Some(off) = rseq_offset() else { continue };
                    // On our own area, this registers the thread if it has
                    // not yet.
                    let _ = current();
                    // SAFETY: the registered area (glibc's or ours); cpu_id
                    // at +4.
                    assert_eq!(
                        unsafe { arch::read_rseq_i32(off, CPU_ID_FIELD) } as usize,
                        cpu
                    );
                    if uses_cid() {
                        assert!(current() < possible_cpus());
                    } else {
                        assert_eq!(current(), cpu);
                    }
                }
            }
        }
        assert_ne!(thread_id(), 0);
    }

    /// With glibc's rseq off (`glibc.pthread.rseq=0`), the process uses our
    /// own area: this test runs itself again in a child process under the
    /// tunable, where the first thread registers at init and later threads
    /// on their first slow path.
    #[test]
    fn own_area_where_glibc_registers_none() {
        const CHILD: &str = "OWN_RSEQ_TEST_CHILD";
        crate::alloc::ensure_init();
        if std::env::var_os(CHILD).is_some() {
            return own_area_child();
        }
        if rseq_offset().is_none() || own_area() {
            eprintln!("glibc registered no rseq area here: the child would test nothing new");
            return;
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "cpu::tests::own_area_where_glibc_registers_none"])
            .args(["--nocapture", "--test-threads=1"])
            .env("GLIBC_TUNABLES", "glibc.pthread.rseq=0")
            .env(CHILD, "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "child failed:\n{text}");
        assert!(text.contains("own area: ok"), "child did not run:\n{text}");
    }

    fn own_area_child() {
        assert!(
            own_area(),
            "glibc's rseq is off: our own area must be in use"
        );
        let off = rseq_offset().unwrap();
        assert_eq!(Some(off), arch::own_area_offset());
        let check = move || {
            // Unregistered (-1), or registered already: this test binary
            // exports our malloc, which the thread's start calls. Never
            // failed.
            // SAFETY: our area, in this thread's static TLS.
            let before = unsafe { arch::read_rseq_i32(off, CPU_ID_FIELD) };
            assert!(before >= RSEQ_CPU_ID_UNINITIALIZED, "cpu_id {before}");
            let id = current();
            // SAFETY: as above.
            let (cpu, idv) = unsafe {
                (
                    arch::read_rseq_i32(off, CPU_ID_FIELD),
                    arch::read_rseq_i32(off, id_field()),
                )
            };
            assert!(cpu >= 0 && idv >= 0, "registered: cpu_id {cpu}, id {idv}");
            assert_eq!(id, idv as usize);
            // Registered: no second attempt, and the id stays valid.
            assert!(register_thread().is_none());
            assert!(current() < MAX_ZONES.max(possible_cpus()));
        };
        check();
        for _ in 0..3 {
            std::thread::spawn(check).join().unwrap();
        }
        println!("own area: ok");
    }
}
