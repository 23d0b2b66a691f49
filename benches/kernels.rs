//! Kernel throughput at the shapes of W1 (the 28x28 U-Net, batch 64), on rayon pools of 1 and
//! 2 threads. Criterion's throughput is set to the floating-point operations of one call, so
//! its `elem/s` figure reads as FLOP/s (`Gelem/s` = GFLOP/s).
//!
//! `cargo bench --bench kernels` (all, about 3 minutes); filter with e.g.
//! `cargo bench --bench kernels -- conv/28x28_32-32`.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::ThreadPool;
use scoresde::engine::element::gemm;
use scoresde::engine::kernels::{self, Activation, Conv2dGeom, GroupNormGeom};

fn random(len: usize, seed: u64) -> Vec<f32> {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    (0..len).map(|_| r.random::<f32>() * 2.0 - 1.0).collect()
}

fn pools() -> Vec<(usize, ThreadPool)> {
    [1, 2]
        .into_iter()
        .map(|t| {
            let p = rayon::ThreadPoolBuilder::new()
                .num_threads(t)
                .build()
                .unwrap();
            (t, p)
        })
        .collect()
}

fn short(c: &mut Criterion) -> criterion::BenchmarkGroup<'_, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group("kernels");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    g
}

fn bench_conv(c: &mut Criterion) {
    let shapes = [
        (
            "28x28_32-32",
            Conv2dGeom::new(64, 32, 28, 28, 32, 3, 3, 1, 1),
        ),
        (
            "28x28_32-64",
            Conv2dGeom::new(64, 32, 28, 28, 64, 3, 3, 1, 1),
        ),
        (
            "14x14_64-64",
            Conv2dGeom::new(64, 64, 14, 14, 64, 3, 3, 1, 1),
        ),
        ("7x7_64-64", Conv2dGeom::new(64, 64, 7, 7, 64, 3, 3, 1, 1)),
        ("7x7_128-64", Conv2dGeom::new(64, 128, 7, 7, 64, 3, 3, 1, 1)),
        (
            "s2_14-7_64",
            Conv2dGeom::new(64, 64, 14, 14, 64, 3, 3, 2, 1),
        ),
        (
            "1x1_28x28_32-64",
            Conv2dGeom::new(64, 32, 28, 28, 64, 1, 1, 1, 0),
        ),
    ];
    let pools = pools();
    let mut group = short(c);
    for (name, g) in shapes {
        let g = g.unwrap();
        let x = random(g.x_len(), 1);
        let w = random(g.w_len(), 2);
        let b = random(g.c_out, 3);
        let dy = random(g.y_len(), 4);
        let (mut y, mut dx, mut dw, mut db) = (
            vec![0f32; g.y_len()],
            vec![0f32; g.x_len()],
            vec![0f32; g.w_len()],
            vec![0f32; g.c_out],
        );
        group.throughput(Throughput::Elements(g.flops()));
        for (t, pool) in &pools {
            group.bench_function(BenchmarkId::new(format!("conv/{name}/forward"), t), |bch| {
                bch.iter(|| pool.install(|| kernels::conv2d_forward(&g, &x, &w, Some(&b), &mut y)))
            });
            group.bench_function(
                BenchmarkId::new(format!("conv/{name}/input_grad"), t),
                |bch| {
                    bch.iter(|| {
                        pool.install(|| kernels::conv2d_backward_input(&g, &dy, &w, &mut dx))
                    })
                },
            );
            group.bench_function(
                BenchmarkId::new(format!("conv/{name}/weight_grad"), t),
                |bch| {
                    bch.iter(|| {
                        pool.install(|| {
                            kernels::conv2d_backward_weight(&g, &x, &dy, &mut dw, Some(&mut db))
                        })
                    })
                },
            );
        }
    }
    group.finish();
}

fn bench_gemm(c: &mut Criterion) {
    let shapes = [
        (512, 512, 512),
        (32, 288, 50176),
        (64, 576, 3136),
        (288, 32, 50176),
        (4096, 128, 128),
    ];
    let pools = pools();
    let mut group = short(c);
    for (m, k, n) in shapes {
        let a = random(m * k, 1);
        let b = random(k * n, 2);
        let mut out = vec![0f32; m * n];
        group.throughput(Throughput::Elements(2 * (m * k * n) as u64));
        for (t, pool) in &pools {
            group.bench_function(BenchmarkId::new(format!("gemm/{m}x{k}x{n}"), t), |bch| {
                bch.iter(|| pool.install(|| gemm(m, k, n, &a, false, &b, false, 0.0, &mut out)))
            });
        }
    }
    group.finish();
}

/// Memory-bound kernels; throughput counts elements touched, not FLOP.
fn bench_elementwise(c: &mut Criterion) {
    let pools = pools();
    let mut group = short(c);
    let gn = GroupNormGeom::new(64, 32, 784, 8).unwrap();
    let x = random(gn.len(), 1);
    let dy = random(gn.len(), 2);
    let (ga, be) = (random(32, 3), random(32, 4));
    let (mut y, mut dx) = (vec![0f32; gn.len()], vec![0f32; gn.len()]);
    let (mut mu, mut rs) = (vec![0f32; gn.stats_len()], vec![0f32; gn.stats_len()]);
    let (mut dg, mut db) = (vec![0f32; 32], vec![0f32; 32]);
    let up = random(64 * 64 * 14 * 14, 5);
    let dup = random(64 * 64 * 28 * 28, 6);
    let (mut yup, mut dxup) = (vec![0f32; dup.len()], vec![0f32; up.len()]);
    group.throughput(Throughput::Elements(gn.len() as u64));
    for (t, pool) in &pools {
        group.bench_function(
            BenchmarkId::new("group_norm_silu/forward/64x32x28x28", t),
            |b| {
                b.iter(|| {
                    pool.install(|| {
                        kernels::group_norm_forward(
                            &gn,
                            Activation::Silu,
                            1e-5,
                            &x,
                            &ga,
                            &be,
                            &mut y,
                            &mut mu,
                            &mut rs,
                        )
                    })
                })
            },
        );
        group.bench_function(
            BenchmarkId::new("group_norm_silu/backward/64x32x28x28", t),
            |b| {
                b.iter(|| {
                    pool.install(|| {
                        kernels::group_norm_backward(
                            &gn,
                            Activation::Silu,
                            &x,
                            &ga,
                            &be,
                            &mu,
                            &rs,
                            &dy,
                            &mut dx,
                            &mut dg,
                            &mut db,
                        )
                    })
                })
            },
        );
        group.bench_function(BenchmarkId::new("silu/forward/64x32x28x28", t), |b| {
            b.iter(|| pool.install(|| kernels::silu_forward(&x, &mut y)))
        });
        group.bench_function(BenchmarkId::new("bias_grad/64x32x28x28", t), |b| {
            b.iter(|| pool.install(|| kernels::bias_grad(&dy, 64, 32, 784, &mut db)))
        });
    }
    group.throughput(Throughput::Elements(dup.len() as u64));
    for (t, pool) in &pools {
        group.bench_function(BenchmarkId::new("upsample/forward/64x64x14->28", t), |b| {
            b.iter(|| {
                pool.install(|| kernels::upsample_nearest2x_forward(&up, 64 * 64, 14, 14, &mut yup))
            })
        });
        group.bench_function(BenchmarkId::new("upsample/backward/64x64x28->14", t), |b| {
            b.iter(|| {
                pool.install(|| {
                    kernels::upsample_nearest2x_backward(&dup, 64 * 64, 14, 14, &mut dxup)
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_conv, bench_gemm, bench_elementwise);
criterion_main!(benches);
