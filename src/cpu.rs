//! Which CPU are we on, and which thread are we.
//!
//! The CPU id comes from glibc's registered rseq area (`cpu_id` at offset 4 of
//! `struct rseq`, at thread pointer + `__rseq_offset`), read inline. The symbol
//! `__rseq_offset` only exists in glibc >= 2.35, so it is declared weak with
//! `global_asm!` and loaded through the GOT: on older glibc it resolves to 0 and
//! we fall back to `sched_getcpu`. `cpu_id` is negative when rseq is not
//! registered (e.g. `GLIBC_TUNABLES=glibc.pthread.rseq=0`), so every read checks it.

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

/// Called once from initialisation: finds the rseq area and the CPU count.
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
            RSEQ_OFFSET.store(unsafe { *p }, Ordering::Relaxed);
        }
    }
    NZONES.store(possible_cpus().clamp(1, MAX_ZONES), Ordering::Relaxed);
}

/// The rseq area's offset from the thread pointer, if glibc exported one
/// (whether this thread registered it shows in `cpu_id`, which is negative
/// when not).
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

/// The CPU the calling thread runs on now (it may migrate right after).
#[inline(always)]
pub fn current() -> usize {
    let off = RSEQ_OFFSET.load(Ordering::Relaxed);
    #[cfg(target_arch = "x86_64")]
    if off != NO_RSEQ {
        let cpu: i32;
        // SAFETY: the rseq area registered by glibc lives in this thread's
        // static TLS at fs:[__rseq_offset]; cpu_id is the i32 at offset 4.
        unsafe {
            core::arch::asm!("mov {0:e}, dword ptr fs:[{1} + 4]", out(reg) cpu, in(reg) off,
                             options(nostack, readonly, preserves_flags));
        }
        if cpu >= 0 {
            return cpu as usize;
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

/// The zone index for the current CPU.
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
    fn current_cpu_matches_sched_getcpu() {
        crate::alloc::ensure_init();
        // Pin to each CPU in turn and check the inline rseq read agrees.
        for cpu in 0..possible_cpus().min(4) {
            let ids = core_affinity::get_core_ids().unwrap_or_default();
            if let Some(id) = ids.iter().find(|c| c.id == cpu) {
                if core_affinity::set_for_current(*id) {
                    assert_eq!(current(), cpu);
                    assert_eq!(crate::os::sched_getcpu() as usize, cpu);
                }
            }
        }
        assert_ne!(thread_id(), 0);
    }
}
