//! Whole training steps, the issue-3 targets: a W1 step (U-Net, batch 64: forward, DDPM
//! L_simple, backward, Adam lr 2e-4) and a W2 step (score MLP, batch 1024: forward, VP-SDE DSM,
//! backward, Adam lr 1e-3), each on rayon pools of 1 and 2 threads, plus the W1 forward pass
//! (inference graph, batch 64: what one sampling step costs).
//!
//! `cargo bench --bench steps` (about 3 minutes on 2 cores); filter with e.g.
//! `cargo bench --bench steps -- w2`. For the PyTorch comparison protocol (warm-up, individually
//! timed steps, rejection of disturbed repetitions, peak RSS) use `examples/bench.rs` or
//! `benches/compare_pytorch.sh`.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rayon::ThreadPool;
use scoresde::engine::nn::{MlpConfig, MlpScoreNet, UNet, UNetConfig};
use scoresde::engine::optim::{Adam, AdamConfig};
use scoresde::engine::{Graph, ParamStore, Tensor};
use scoresde::rng;

fn pool(threads: usize) -> ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
}

fn normals(len: usize, seed: u64) -> Vec<f32> {
    let mut r = rng::seeded(seed);
    (0..len).map(|_| rng::normal(&mut r) as f32).collect()
}

/// `alpha_bar_t` of the linear schedule 1e-4..0.02, T = 1000.
fn alpha_bar() -> Vec<f64> {
    let mut p = 1.0;
    (0..1000)
        .map(|s| {
            p *= 1.0 - (1e-4 + (0.02 - 1e-4) * s as f64 / 999.0);
            p
        })
        .collect()
}

/// The W1 step's inputs: noisy images, their noise and timesteps (fixed, so every iteration
/// does the same work).
fn w1_batch(b: usize) -> (Tensor<f32>, Tensor<f32>, Vec<f64>) {
    let abar = alpha_bar();
    let x0 = normals(b * 784, 1);
    let eps = normals(b * 784, 2);
    let t: Vec<usize> = (0..b).map(|i| (i * 397 + 11) % 1000).collect();
    let xt: Vec<f32> = (0..b * 784)
        .map(|i| {
            let ab = abar[t[i / 784]];
            (ab.sqrt() as f32) * x0[i] + ((1.0 - ab).sqrt() as f32) * eps[i]
        })
        .collect();
    (
        Tensor::from_vec(&[b, 1, 28, 28], xt).unwrap(),
        Tensor::from_vec(&[b, 1, 28, 28], eps).unwrap(),
        t.iter().map(|&v| v as f64).collect(),
    )
}

fn bench_w1(c: &mut Criterion) {
    // As the command-line tool does for `train` and `sample`.
    scoresde::engine::alloc::keep_freed_memory();
    let mut g = c.benchmark_group("w1");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(15));
    let b = 64;
    g.throughput(Throughput::Elements(b as u64));
    let (xt, eps, t) = w1_batch(b);
    for threads in [1, 2] {
        let p = pool(threads);
        let mut store = ParamStore::<f32>::new();
        let net = UNet::new(&mut store, UNetConfig::default(), 0).unwrap();
        let mut opt = Adam::new(
            AdamConfig {
                lr: 2e-4,
                ..AdamConfig::default()
            },
            &store,
        )
        .unwrap();
        g.bench_function(BenchmarkId::new("train_step_b64", threads), |bch| {
            bch.iter(|| {
                p.install(|| {
                    let mut gr = Graph::new();
                    let y = net.forward(&mut gr, &store, &xt, &t).unwrap();
                    let loss = gr.mse(&y, &eps).unwrap();
                    let grads = gr.backward(&loss).unwrap();
                    opt.step(&mut store, &grads).unwrap();
                })
            })
        });
        g.bench_function(BenchmarkId::new("forward_b64", threads), |bch| {
            bch.iter(|| {
                p.install(|| {
                    let y = net
                        .forward(&mut Graph::inference(), &store, &xt, &t)
                        .unwrap();
                    criterion::black_box(y);
                })
            })
        });
    }
    g.finish();
}

fn bench_w2(c: &mut Criterion) {
    let mut g = c.benchmark_group("w2");
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    let b = 1024;
    g.throughput(Throughput::Elements(b as u64));
    let x0 = normals(2 * b, 3);
    let eps = normals(2 * b, 4);
    let t: Vec<f64> = (0..b).map(|i| 1e-3 + (i as f64 + 0.5) / b as f64).collect();
    let xt: Vec<f32> = (0..2 * b)
        .map(|i| {
            let s = t[i / 2];
            let ab = (-(0.1 * s + 0.5 * (20.0 - 0.1) * s * s)).exp();
            (ab.sqrt() as f32) * x0[i] + ((1.0 - ab).sqrt() as f32) * eps[i]
        })
        .collect();
    let (xt, eps) = (
        Tensor::from_vec(&[b, 2], xt).unwrap(),
        Tensor::from_vec(&[b, 2], eps).unwrap(),
    );
    for threads in [1, 2] {
        let p = pool(threads);
        let mut store = ParamStore::<f32>::new();
        let net = MlpScoreNet::new(&mut store, MlpConfig::default(), 0).unwrap();
        let mut opt = Adam::new(
            AdamConfig {
                lr: 1e-3,
                ..AdamConfig::default()
            },
            &store,
        )
        .unwrap();
        g.bench_function(BenchmarkId::new("train_step_b1024", threads), |bch| {
            bch.iter(|| {
                p.install(|| {
                    let mut gr = Graph::new();
                    let y = net.forward(&mut gr, &store, &xt, &t).unwrap();
                    let loss = gr.mse(&y, &eps).unwrap();
                    let grads = gr.backward(&loss).unwrap();
                    opt.step(&mut store, &grads).unwrap();
                })
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench_w1, bench_w2);
criterion_main!(benches);
