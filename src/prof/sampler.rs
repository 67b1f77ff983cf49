//! The profiler's sampler: each thread counts the bytes it requests down
//! from an exponentially distributed interval (mean `SLABALLOC_PROF_SAMPLE`),
//! in 16 bytes of static TLS (`arch::prof_tls`), so that a request is
//! sampled with probability `1 - exp(-size / mean)` whatever came before;
//! `estimate` undoes that for the dumps. `core` has no libm: `ln` and
//! `exp_neg` are written out.

use crate::config::{PROF_SAMPLE as SAMPLE, PROF_SEED as SEED};
use crate::os;
use core::sync::atomic::{AtomicU64, Ordering};

/// A thread's sampler: bytes left before the next sample, its generator
/// state (0 until the thread's first request), written only by the thread.
#[repr(C)]
struct Sampler {
    left: i64,
    rng: u64,
}

/// This thread's sampler: the 16 bytes of static TLS that `arch` keeps for
/// it (zero in a new thread), or one shared sampler where the architecture
/// has none ("racy but harmless": a lost update only moves a sample).
#[inline(always)]
fn sampler() -> *mut Sampler {
    crate::arch::prof_tls() as *mut Sampler
}

const _: () = assert!(core::mem::size_of::<Sampler>() == crate::arch::PROF_TLS_SIZE);

/// Threads that have drawn their first interval: seeds their generators,
/// so that a fixed `SLABALLOC_PROF_SEED` gives a single-threaded program the
/// same samples on every run.
static THREADS: AtomicU64 = AtomicU64::new(0);

/// Counts `size` requested bytes down; true if this request is sampled.
#[inline(always)]
pub fn tick(size: usize) -> bool {
    let s = sampler();
    // SAFETY: `s` is this thread's sampler (static TLS), which only this
    // thread touches; a signal handler that interrupts this and ticks too
    // only moves the countdown.
    unsafe {
        let left = (*s).left - size as i64;
        if left >= 0 && (*s).rng != 0 {
            (*s).left = left;
            return false;
        }
        tick_slow(s, size)
    }
}

/// The countdown crossed zero, or this thread starts: draw the next interval.
#[cold]
#[inline(never)]
#[link_section = ".text_cold"]
unsafe fn tick_slow(s: *mut Sampler, size: usize) -> bool {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe {
        let first = (*s).rng == 0;
        if first {
            let seed = match SEED.load(Ordering::Relaxed) {
                0 => os::random_u64(),
                v => v,
            };
            let n = THREADS.fetch_add(1, Ordering::Relaxed);
            (*s).rng = splitmix(seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1;
            // The thread's first interval starts here, as a fresh countdown.
            (*s).left = next_interval(&mut (*s).rng) - size as i64;
            if (*s).left >= 0 {
                return false;
            }
        }
        // Sampled: the bytes past zero belong to this request, the next
        // interval starts after it.
        (*s).left = next_interval(&mut (*s).rng);
        true
    }
}

pub(super) fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// xorshift64*: the next value of the generator.
pub(super) fn next_u64(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    x.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

/// An exponentially distributed interval with mean `SAMPLE` (at least 1).
pub(super) fn next_interval(state: &mut u64) -> i64 {
    let mean = SAMPLE.load(Ordering::Relaxed) as f64;
    // u in (0, 1]: 53 random bits, never 0.
    let u = ((next_u64(state) >> 11) + 1) as f64 / (1u64 << 53) as f64;
    let v = -ln(u) * mean;
    if v < 1.0 {
        1
    } else if v > (i64::MAX / 2) as f64 {
        i64::MAX / 2
    } else {
        v as i64
    }
}

/// Natural logarithm of `x` > 0, without libm (`core` has none): split
/// `x = m * 2^e` with m in [1, 2), then ln m = 2 atanh((m-1)/(m+1)), whose
/// series converges fast for |z| <= 1/3 (error below 1e-7 after the z^11
/// term; the sampler needs far less).
pub fn ln(x: f64) -> f64 {
    let bits = x.to_bits();
    let e = ((bits >> 52) & 0x7ff) as i64 - 1023;
    let m = f64::from_bits((bits & ((1u64 << 52) - 1)) | (1023u64 << 52));
    let z = (m - 1.0) / (m + 1.0);
    let z2 = z * z;
    let mut term = z;
    let mut sum = 0.0;
    let mut k = 1.0;
    while k < 14.0 {
        sum += term / k;
        term *= z2;
        k += 2.0;
    }
    2.0 * sum + e as f64 * core::f64::consts::LN_2
}

/// `e^x` for x <= 0, without libm: `x = k ln 2 + r` with |r| <= ln 2 / 2,
/// then a Taylor series for e^r (error below 1e-12) scaled by 2^k.
pub fn exp_neg(x: f64) -> f64 {
    if x < -700.0 {
        return 0.0;
    }
    // Rounds x / ln 2 (<= 0) to nearest: `as` truncates toward zero.
    let k = (x / core::f64::consts::LN_2 - 0.5) as i64 as f64;
    let r = x - k * core::f64::consts::LN_2;
    let mut term = 1.0;
    let mut sum = 1.0;
    let mut i = 1.0;
    while i < 16.0 {
        term *= r / i;
        sum += term;
        i += 1.0;
    }
    sum * f64::from_bits(((k as i64 + 1023) as u64) << 52)
}

/// The bytes a sample of `size` requested bytes stands for: `size / p`,
/// where `p = 1 - e^(-size / rate)` is its chance of being sampled (the
/// heap_v2 scaling); what the peak trigger adds up.
#[cold]
#[link_section = ".text_cold"]
pub(super) fn estimate(size: usize) -> u64 {
    let rate = SAMPLE.load(Ordering::Relaxed) as f64;
    let s = size.max(1) as f64;
    (s / (1.0 - exp_neg(-s / rate))) as u64
}
