//! Criterion micro-benchmarks of slaballoc's prefixed C API (`sa_malloc`,
//! `sa_free`, `sa_realloc`), declared here through FFI so the benchmark does
//! not depend on how the crate spells its Rust API.
//!
//! Run: `cargo bench --bench alloc` (about 1-2 minutes). Filter:
//! `cargo bench --bench alloc -- malloc_free`.
//!
//! Groups:
//! * `malloc_free/<size>`        one malloc+free pair per iteration, per size class
//! * `malloc_free_batch64/<size>` 64 mallocs then 64 frees (FIFO) per iteration
//! * `mixed/powerlaw_8B_64KiB`   1024 random replaces in a 1024-slot table per iteration
//! * `realloc_growth/...`        a block grown by realloc, then freed
//! * `cross_cpu/<size>`          producer (core 0) allocates, consumer (core 1)
//!   frees, blocks passed through a lock-free SPSC ring; throughput in blocks

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

// Link the crate (the rlib) so that the sa_* symbols below resolve.
use slaballoc as _;

extern "C" {
    fn sa_malloc(n: usize) -> *mut u8;
    fn sa_free(p: *mut u8);
    fn sa_realloc(p: *mut u8, n: usize) -> *mut u8;
}

const SIZES: [usize; 7] = [16, 64, 256, 1024, 4096, 16384, 65536];

#[inline(always)]
fn alloc(n: usize) -> *mut u8 {
    // SAFETY: sa_malloc takes any size and returns a block or null.
    let p = unsafe { sa_malloc(n) };
    assert!(!p.is_null(), "sa_malloc({n}) returned NULL");
    p
}

#[inline(always)]
fn touch(p: *mut u8, n: usize, v: u8) {
    // SAFETY: `p` is a live block of at least `n` >= 1 bytes from sa_malloc.
    unsafe {
        p.write_volatile(v);
        p.add(n - 1).write_volatile(v);
    }
}

/// xorshift64*: deterministic sizes without a rand dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn unit(&mut self) -> f64 {
        ((self.next() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }
    /// Pareto(alpha = 0.7) size in [lo, hi], like bench/workloads/common.h.
    fn powerlaw(&mut self, lo: usize, hi: usize) -> usize {
        let s = lo as f64 * self.unit().powf(-1.0 / 0.7);
        (s.min(hi as f64)) as usize
    }
}

fn malloc_free(c: &mut Criterion) {
    let mut g = c.benchmark_group("malloc_free");
    g.throughput(Throughput::Elements(1));
    for &size in &SIZES {
        g.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, &size| {
            b.iter(|| {
                let p = alloc(black_box(size));
                touch(p, size, 1);
                // SAFETY: pointers from sa_malloc/sa_realloc of this benchmark, freed once.
                unsafe { sa_free(black_box(p)) };
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("malloc_free_batch64");
    g.throughput(Throughput::Elements(64));
    for &size in &SIZES {
        g.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, &size| {
            let mut ptrs = [std::ptr::null_mut::<u8>(); 64];
            b.iter(|| {
                for p in ptrs.iter_mut() {
                    *p = alloc(black_box(size));
                    touch(*p, size, 2);
                }
                for p in ptrs.iter() {
                    // SAFETY: pointers from sa_malloc/sa_realloc of this benchmark, freed once.
                    unsafe { sa_free(black_box(*p)) };
                }
            })
        });
    }
    g.finish();
}

fn mixed(c: &mut Criterion) {
    const SLOTS: usize = 1024;
    const OPS: usize = 1024;
    let mut g = c.benchmark_group("mixed");
    g.throughput(Throughput::Elements(OPS as u64));
    g.bench_function("powerlaw_8B_64KiB", |b| {
        let mut rng = Rng(0x1234_5678_9abc_def1);
        // Pre-drawn (slot, size) pairs so the RNG is not measured.
        let plan: Vec<(usize, usize)> = (0..1 << 16)
            .map(|_| ((rng.next() as usize) % SLOTS, rng.powerlaw(8, 65536)))
            .collect();
        let mut table = vec![(std::ptr::null_mut::<u8>(), 0usize); SLOTS];
        let mut k = 0usize;
        b.iter(|| {
            for _ in 0..OPS {
                let (slot, size) = plan[k & (plan.len() - 1)];
                k = k.wrapping_add(1);
                let e = &mut table[slot];
                if !e.0.is_null() {
                    // SAFETY: pointers from sa_malloc/sa_realloc of this benchmark, freed once.
                    unsafe { sa_free(e.0) };
                }
                let p = alloc(size);
                touch(p, size, 3);
                *e = (p, size);
            }
        });
        for e in table.iter() {
            if !e.0.is_null() {
                // SAFETY: pointers from sa_malloc/sa_realloc of this benchmark, freed once.
                unsafe { sa_free(e.0) };
            }
        }
    });
    g.finish();
}

fn realloc_growth(c: &mut Criterion) {
    let mut g = c.benchmark_group("realloc_growth");
    // 16 B doubled up to 1 MiB: 16 reallocs.
    g.throughput(Throughput::Elements(16));
    g.bench_function("double_16B_to_1MiB", |b| {
        b.iter(|| {
            let mut n = 16usize;
            let mut p = alloc(n);
            touch(p, n, 4);
            while n < 1 << 20 {
                n *= 2;
                // SAFETY: pointers from sa_malloc/sa_realloc of this benchmark, freed once.
                p = unsafe { sa_realloc(p, black_box(n)) };
                assert!(!p.is_null(), "sa_realloc returned NULL");
                touch(p, n, 4);
            }
            // SAFETY: pointers from sa_malloc/sa_realloc of this benchmark, freed once.
            unsafe { sa_free(p) };
        })
    });
    // 64 B steps up to 16 KiB: 255 reallocs (string-builder pattern).
    g.throughput(Throughput::Elements(255));
    g.bench_function("step64_to_16KiB", |b| {
        b.iter(|| {
            let mut n = 64usize;
            let mut p = alloc(n);
            touch(p, n, 5);
            while n < 16384 {
                n += 64;
                // SAFETY: pointers from sa_malloc/sa_realloc of this benchmark, freed once.
                p = unsafe { sa_realloc(p, black_box(n)) };
                assert!(!p.is_null(), "sa_realloc returned NULL");
                touch(p, n, 5);
            }
            // SAFETY: pointers from sa_malloc/sa_realloc of this benchmark, freed once.
            unsafe { sa_free(p) };
        })
    });
    g.finish();
}

/// Single-producer single-consumer ring of block pointers.
struct Ring {
    slots: Vec<AtomicPtr<u8>>,
    head: AtomicUsize, // next slot the producer writes
    _pad: [u8; 64],
    tail: AtomicUsize, // next slot the consumer reads
}

const RING: usize = 1024;
const BLOCKS_PER_ITER: u64 = 1000;

/// Spin briefly, then yield: the machine may have only 2 cores.
#[inline(always)]
fn backoff(spins: &mut u32) {
    *spins += 1;
    if *spins < 256 {
        std::hint::spin_loop();
    } else {
        *spins = 0;
        std::thread::yield_now();
    }
}

fn pin(core: usize) {
    if let Some(ids) = core_affinity::get_core_ids() {
        if ids.len() >= 2 {
            core_affinity::set_for_current(ids[core % ids.len()]);
        }
    }
}

/// Moves `n` blocks of `size` bytes from a producer pinned on core 0 to a
/// consumer pinned on core 1, which frees them (every free is remote).
fn cross_cpu_run(size: usize, n: u64) -> Duration {
    let ring = Arc::new(Ring {
        slots: (0..RING)
            .map(|_| AtomicPtr::new(std::ptr::null_mut()))
            .collect(),
        head: AtomicUsize::new(0),
        _pad: [0; 64],
        tail: AtomicUsize::new(0),
    });
    let go = Arc::new(AtomicBool::new(false));
    let consumer = {
        let ring = ring.clone();
        let go = go.clone();
        std::thread::spawn(move || {
            pin(1);
            let mut spins = 0;
            while !go.load(Ordering::Acquire) {
                backoff(&mut spins);
            }
            for t in 0..n as usize {
                let mut spins = 0;
                while ring.head.load(Ordering::Acquire) == t {
                    backoff(&mut spins);
                }
                let p = ring.slots[t % RING].load(Ordering::Relaxed);
                ring.tail.store(t + 1, Ordering::Release);
                // SAFETY: pointers from sa_malloc/sa_realloc of this benchmark, freed once.
                unsafe {
                    assert_eq!(p.read_volatile(), 0xA5, "block contents changed in flight");
                    sa_free(p);
                }
            }
        })
    };
    let producer = {
        let ring = ring.clone();
        let go = go.clone();
        std::thread::spawn(move || {
            pin(0);
            let mut spins = 0;
            while !go.load(Ordering::Acquire) {
                backoff(&mut spins);
            }
            let start = Instant::now();
            let mut h = 0usize;
            for _ in 0..n {
                let p = alloc(size);
                touch(p, size, 0xA5);
                let mut spins = 0;
                while h - ring.tail.load(Ordering::Acquire) >= RING {
                    backoff(&mut spins);
                }
                ring.slots[h % RING].store(p, Ordering::Relaxed);
                h += 1;
                ring.head.store(h, Ordering::Release);
            }
            start
        })
    };
    go.store(true, Ordering::Release);
    let start = producer.join().expect("producer panicked");
    consumer.join().expect("consumer panicked");
    start.elapsed()
}

fn cross_cpu(c: &mut Criterion) {
    let mut g = c.benchmark_group("cross_cpu");
    g.throughput(Throughput::Elements(BLOCKS_PER_ITER));
    for &size in &[64usize, 1024] {
        g.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, &size| {
            b.iter_custom(|iters| cross_cpu_run(size, iters * BLOCKS_PER_ITER))
        });
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500))
        .sample_size(20)
}

criterion_group! {
    name = benches;
    config = config();
    targets = malloc_free, mixed, realloc_growth, cross_cpu
}
criterion_main!(benches);
