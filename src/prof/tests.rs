//! The heap profiler's unit tests.

use super::sampler::{exp_neg, ln, next_interval};
use super::*;
const DEFAULT_SAMPLE: u64 = 512 * 1024;

#[test]
fn exp_matches_std() {
    for &x in &[0.0, -1e-9, -0.3, -0.7, -1.0, -5.5, -40.0, -700.0] {
        let a = exp_neg(x);
        let b = x.exp();
        assert!(
            (a - b).abs() <= 1e-12 * b.max(1e-300),
            "exp({x}) = {a}, std {b}"
        );
    }
    // A sample of the rate's size stands for 1 / (1 - 1/e) of itself.
    let e = estimate(DEFAULT_SAMPLE as usize) as f64 / DEFAULT_SAMPLE as f64;
    assert!((e - 1.0 / (1.0 - (-1.0f64).exp())).abs() < 1e-6);
}

#[test]
fn ln_matches_std() {
    for &x in &[
        1e-300, 1e-9, 0.001, 0.3, 0.5, 0.999_999, 1.0, 2.0, 12345.678,
    ] {
        let a = ln(x);
        let b = x.ln();
        assert!(
            (a - b).abs() <= 1e-7 * b.abs().max(1.0),
            "ln({x}) = {a}, std {b}"
        );
    }
}

/// The intervals have the mean asked for, and an exponential's spread
/// (standard deviation equal to the mean).
#[test]
fn intervals_are_exponential() {
    let mut s = 12345u64;
    let n = 200_000;
    let (mut sum, mut sq) = (0f64, 0f64);
    for _ in 0..n {
        let v = next_interval(&mut s) as f64;
        sum += v;
        sq += v * v;
    }
    let mean = sum / n as f64;
    let sd = (sq / n as f64 - mean * mean).sqrt();
    let want = DEFAULT_SAMPLE as f64;
    assert!((mean / want - 1.0).abs() < 0.02, "mean {mean}");
    assert!((sd / want - 1.0).abs() < 0.03, "sd {sd}");
}

#[test]
fn table_insert_find_remove_rebuild() {
    let m = os::map(INDEX * 4 + 64 * core::mem::size_of::<Sample>());
    // SAFETY: inside the mapping just made.
    let mut t = Table::empty(m as *mut u32, unsafe { m.add(INDEX * 4) } as *mut Sample);
    // Churn through 60 slots many times: free slots are reused, the
    // tombstones are cleared by rebuilds, sizes add up.
    for round in 0..(INDEX / 4) {
        let a = 0x1000_0000 + (round % 60) * 4096 + (round / 60) * 60 * 4096;
        assert!(t.insert(a, 100, &[1, 2, 3]));
        if round >= 50 {
            let old = 0x1000_0000 + ((round - 50) % 60) * 4096 + ((round - 50) / 60) * 60 * 4096;
            let i = t.find(old).expect("live sample found");
            t.remove_at(i);
            assert!(t.find(old).is_none());
        }
    }
    assert_eq!(t.live, 50);
    assert_eq!(t.live_bytes, 50 * 100);
    assert!(t.used <= 51, "pool slots reused ({} used)", t.used);
    os::unmap(m, INDEX * 4 + 64 * core::mem::size_of::<Sample>());
}
