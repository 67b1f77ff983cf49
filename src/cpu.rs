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
//!   (bench/RESULTS.md). And a process with few threads on a machine with
//!   many CPUs uses as many zones as it runs threads at once, not one per CPU
//!   it happens to visit;
//! * elsewhere `cpu_id` at offset 4, the CPU number.
//!
//! The symbol `__rseq_offset` only exists in glibc >= 2.35, so it is declared
//! weak with `global_asm!` and loaded through the GOT: on older glibc it
//! resolves to 0 and we fall back to a hash of the thread pointer. `cpu_id`
//! is negative when rseq is not registered (e.g.
//! `GLIBC_TUNABLES=glibc.pthread.rseq=0`, valgrind): `init` checks it, and
//! glibc registers every thread or none (`__rseq_size` is 0 when the main
//! thread's registration failed, and each new thread registers the same way).

use core::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};

/// Upper bound on the number of zones (per-CPU arenas of slabs). CPU ids above
/// it share zones modulo this bound, which stays correct (zones are locked).
pub const MAX_ZONES: usize = 256;

#[cfg(target_arch = "x86_64")]
core::arch::global_asm!(".weak __rseq_offset");

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
/// Built with `--cfg slaballoc_cpu_ids` (the C suite's second library,
/// `make build-cpu-ids`), always the CPU number: the mode of every kernel
/// before 6.3, tested on any kernel.
pub fn id_field_for(feature_size: libc::c_ulong) -> usize {
    if !cfg!(slaballoc_cpu_ids) && feature_size >= (MM_CID_FIELD + 4) as libc::c_ulong {
        MM_CID_FIELD
    } else {
        CPU_ID_FIELD
    }
}

/// Reads the thread pointer: a unique, non-zero id of the calling thread that
/// costs one instruction (`fs:0` holds the TCB's self pointer on x86-64).
#[inline(always)]
pub fn thread_id() -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        let tp: usize;
        // SAFETY: on x86-64 Linux, fs:0 holds the thread control block's own
        // address for every thread (glibc's `tcbhead_t.tcb`).
        unsafe {
            core::arch::asm!("mov {}, qword ptr fs:0", out(reg) tp,
                             options(nostack, readonly, preserves_flags, pure));
        }
        tp
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        // SAFETY: pthread_self has no preconditions.
        unsafe { libc::pthread_self() as usize }
    }
}

/// Called once from initialisation (the first malloc, before any other
/// thread can exist): finds the rseq area, whether this thread registered it,
/// the id to use, and the CPU count.
pub fn init() {
    #[cfg(target_arch = "x86_64")]
    {
        let p: *const isize;
        // SAFETY: loads the GOT entry of the weak symbol: its address, or 0
        // when the running glibc does not define it.
        unsafe {
            core::arch::asm!("mov {}, qword ptr [rip + __rseq_offset@GOTPCREL]", out(reg) p,
                             options(nostack, readonly, preserves_flags));
        }
        if !p.is_null() {
            // SAFETY: p is the address of glibc's `__rseq_offset` variable.
            let off = unsafe { *p };
            // SAFETY: the rseq area lives in this thread's static TLS at
            // fs:[off]; cpu_id is the i32 at +4, negative if unregistered.
            let cpu: i32 = unsafe { read_rseq_i32(off, CPU_ID_FIELD) };
            if cpu >= 0 {
                ID_FIELD.store(
                    id_field_for(crate::os::getauxval(AT_RSEQ_FEATURE_SIZE)),
                    Ordering::Relaxed,
                );
                RSEQ_OFFSET.store(off, Ordering::Relaxed);
            }
        }
    }
    NZONES.store(possible_cpus().clamp(1, MAX_ZONES), Ordering::Relaxed);
}

/// The i32 at `field` in this thread's rseq area.
///
/// # Safety
/// `off` is glibc's `__rseq_offset`, and `field + 4` at most 32 (the size
/// glibc registers).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn read_rseq_i32(off: isize, field: usize) -> i32 {
    let v: i32;
    core::arch::asm!("mov {0:e}, dword ptr fs:[{1} + {2}]", out(reg) v, in(reg) off,
                     in(reg) field, options(nostack, readonly, preserves_flags));
    v
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
/// and registered the area (for every thread: see the module doc).
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
    #[cfg(target_arch = "x86_64")]
    if off != NO_RSEQ {
        // SAFETY: the rseq area registered by glibc lives in this thread's
        // static TLS at fs:[__rseq_offset]; the id field is within it.
        let id = unsafe { read_rseq_i32(off, id_field()) };
        if id >= 0 {
            return id as usize;
        }
    }
    let _ = off;
    slow_current()
}

/// Without a registered rseq area (glibc < 2.35, `glibc.pthread.rseq=0`,
/// valgrind) the CPU cannot be read cheaply: `sched_getcpu` would cost a vDSO
/// call or a system call per malloc. Spread threads over zones by their
/// thread pointer instead, as an arena-per-thread allocator would; zones are
/// locked, so any mapping is correct, only locality is lost.
#[cold]
fn slow_current() -> usize {
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
    let n = crate::os::read_small_file(c"/sys/devices/system/cpu/possible", &mut buf);
    parse_cpu_list(&buf[..n]).unwrap_or_else(|| {
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
    #[cfg(not(slaballoc_cpu_ids))]
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
                    // SAFETY: glibc's registered area; cpu_id at +4.
                    assert_eq!(unsafe { read_rseq_i32(off, CPU_ID_FIELD) } as usize, cpu);
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
}
