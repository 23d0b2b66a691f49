//! `cargo run --release --example bench -- w1|w2 --batch B --threads T --steps N [--json]
//! [--forward-only]`: the W1 (U-Net, DDPM L_simple + Adam lr 2e-4) and W2 (score MLP, VP-SDE
//! DSM + Adam lr 1e-3) steps timed with the protocol of `shared/bench/ref_*.py`: untimed
//! warm-up, then N individually timed repetitions (W2: each repetition runs `inner` steps
//! calibrated to ~0.2 s), a repetition during which other processes used more than 0.1 core is
//! redone (for at most 120 s), and median / min / max seconds per step plus peak RSS (VmHWM).

use std::time::Instant;

use clap::{Parser, ValueEnum};
use scoresde::engine::nn::{MlpConfig, MlpScoreNet, UNet, UNetConfig};
use scoresde::engine::optim::{Adam, AdamConfig};
use scoresde::engine::{Graph, ParamStore, Tensor};
use scoresde::rng;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Workload {
    W1,
    W2,
}

#[derive(Parser, Debug)]
#[command(about = "Time the W1/W2 training step or forward pass (PyTorch protocol)")]
struct Args {
    /// Workload: w1 (U-Net 1x28x28) or w2 (2-D score MLP).
    workload: Workload,
    /// Batch size.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Threads (rayon pool and matrixmultiply).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Timed repetitions.
    #[arg(long, default_value_t = 8)]
    steps: usize,
    /// Untimed warm-up steps (default: 2 for W1, 50 for W2).
    #[arg(long)]
    warmup: Option<usize>,
    /// Time the forward pass only (inference graph).
    #[arg(long)]
    forward_only: bool,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
    /// Seconds for which a repetition disturbed by other processes is redone (protocol: 120).
    #[arg(long, default_value_t = 120.0)]
    max_retry: f64,
}

fn clk_tck() -> f64 {
    100.0 // USER_HZ on Linux
}

/// Busy ticks of the whole machine (user nice system irq softirq steal).
fn busy_ticks() -> u64 {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<u64> = s
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    if v.len() < 8 {
        return 0;
    }
    v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
}

/// Our own utime + stime ticks.
fn own_ticks() -> u64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest: Vec<&str> = s
        .rsplit_once(')')
        .map(|x| x.1)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    if rest.len() < 13 {
        return 0;
    }
    rest[11].parse::<u64>().unwrap_or(0) + rest[12].parse::<u64>().unwrap_or(0)
}

fn status_kb(key: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

/// `reps` accepted repetitions of `inner` calls; returns (seconds per call, our CPU seconds
/// per call, rejected count).
fn timed_reps(
    f: &mut dyn FnMut(),
    reps: usize,
    inner: usize,
    max_retry: f64,
) -> (Vec<f64>, Vec<f64>, usize) {
    let (mut times, mut cpu, mut rejected) = (Vec::new(), Vec::new(), 0);
    for _ in 0..reps {
        let first = Instant::now();
        loop {
            let (b0, o0) = (busy_ticks(), own_ticks());
            let t0 = Instant::now();
            for _ in 0..inner {
                f();
            }
            let wall = t0.elapsed().as_secs_f64();
            let foreign = ((busy_ticks() - b0) as f64 - (own_ticks() - o0) as f64).max(0.0)
                / clk_tck()
                / wall.max(1e-9);
            let quiet = foreign <= 0.10;
            if !quiet {
                rejected += 1;
            }
            if quiet || first.elapsed().as_secs_f64() > max_retry {
                times.push(wall / inner as f64);
                cpu.push((own_ticks() - o0) as f64 / clk_tck() / inner as f64);
                break;
            }
        }
    }
    (times, cpu, rejected)
}

fn main() -> scoresde::error::Result<()> {
    let a = Args::parse();
    // Reuse freed memory between steps instead of faulting it in again (as the CLI does).
    scoresde::engine::alloc::keep_freed_memory();
    // matrixmultiply reads its thread count from the environment at first use.
    std::env::set_var("MATMUL_NUM_THREADS", a.threads.to_string());
    rayon::ThreadPoolBuilder::new()
        .num_threads(a.threads)
        .build_global()
        .map_err(|e| scoresde::error::Error::param("threads", e.to_string()))?;
    let b = a.batch;
    let mut r = rng::seeded(0);
    let mut store = ParamStore::<f32>::new();
    let mut step: Box<dyn FnMut()>;
    let (params, warmup_default);
    match a.workload {
        Workload::W1 => {
            let net = UNet::new(&mut store, UNetConfig::default(), 0)?;
            params = store.num_elements();
            warmup_default = 2;
            // alpha_bar for linear betas 1e-4..0.02, T = 1000.
            let mut abar = Vec::with_capacity(1000);
            let mut p = 1.0f64;
            for s in 0..1000 {
                p *= 1.0 - (1e-4 + (0.02 - 1e-4) * s as f64 / 999.0);
                abar.push(p);
            }
            let n = b * 784;
            let x0: Vec<f32> = (0..n).map(|_| rng::normal(&mut r) as f32).collect();
            if a.forward_only {
                let xt = Tensor::from_vec(
                    &[b, 1, 28, 28],
                    (0..n).map(|_| rng::normal(&mut r) as f32).collect(),
                )?;
                let t: Vec<f64> = (0..b)
                    .map(|_| rand::Rng::random_range(&mut r, 0..1000) as f64)
                    .collect();
                step = Box::new(move || {
                    let mut g = Graph::inference();
                    let y = net.forward(&mut g, &store, &xt, &t).expect("forward");
                    assert!(y.as_slice()[0].is_finite());
                });
            } else {
                let mut opt = Adam::new(
                    AdamConfig {
                        lr: 2e-4,
                        ..AdamConfig::default()
                    },
                    &store,
                )?;
                step = Box::new(move || {
                    let ti: Vec<usize> = (0..b)
                        .map(|_| rand::Rng::random_range(&mut r, 0..1000))
                        .collect();
                    let eps: Vec<f32> = (0..n).map(|_| rng::normal(&mut r) as f32).collect();
                    let xt: Vec<f32> = (0..n)
                        .map(|i| {
                            let ab = abar[ti[i / 784]];
                            (ab.sqrt() as f32) * x0[i] + ((1.0 - ab).sqrt() as f32) * eps[i]
                        })
                        .collect();
                    let t: Vec<f64> = ti.iter().map(|&v| v as f64).collect();
                    let mut g = Graph::new();
                    let y = net
                        .forward(
                            &mut g,
                            &store,
                            &Tensor::from_vec(&[b, 1, 28, 28], xt).unwrap(),
                            &t,
                        )
                        .expect("forward");
                    let loss = g
                        .mse(&y, &Tensor::from_vec(&[b, 1, 28, 28], eps).unwrap())
                        .unwrap();
                    assert!(loss.item().is_finite());
                    let gr = g.backward(&loss).expect("backward");
                    scoresde::engine::profile::time("Adam", || opt.step(&mut store, &gr))
                        .expect("adam");
                });
            }
        }
        Workload::W2 => {
            let net = MlpScoreNet::new(&mut store, MlpConfig::default(), 0)?;
            params = store.num_elements();
            warmup_default = 50;
            // Eight Gaussians on a circle of radius 2, std 0.05.
            let x0: Vec<f32> = (0..b)
                .flat_map(|_| {
                    let k = rand::Rng::random_range(&mut r, 0..8) as f64;
                    let ang = k * std::f64::consts::TAU / 8.0;
                    let (nx, ny) = (rng::normal(&mut r), rng::normal(&mut r));
                    [
                        (2.0 * ang.cos() + 0.05 * nx) as f32,
                        (2.0 * ang.sin() + 0.05 * ny) as f32,
                    ]
                })
                .collect();
            if a.forward_only {
                let xt = Tensor::from_vec(
                    &[b, 2],
                    (0..2 * b).map(|_| rng::normal(&mut r) as f32).collect(),
                )?;
                let t: Vec<f64> = (0..b).map(|_| rand::Rng::random::<f64>(&mut r)).collect();
                step = Box::new(move || {
                    let y = net
                        .forward(&mut Graph::inference(), &store, &xt, &t)
                        .expect("forward");
                    assert!(y.as_slice()[0].is_finite());
                });
            } else {
                let mut opt = Adam::new(
                    AdamConfig {
                        lr: 1e-3,
                        ..AdamConfig::default()
                    },
                    &store,
                )?;
                step = Box::new(move || {
                    let t: Vec<f64> = (0..b)
                        .map(|_| 1e-3 + (1.0 - 1e-3) * rand::Rng::random::<f64>(&mut r))
                        .collect();
                    let eps: Vec<f32> = (0..2 * b).map(|_| rng::normal(&mut r) as f32).collect();
                    let xt: Vec<f32> = (0..2 * b)
                        .map(|i| {
                            let s = t[i / 2];
                            let ab = (-(0.1 * s + 0.5 * (20.0 - 0.1) * s * s)).exp();
                            (ab.sqrt() as f32) * x0[i] + ((1.0 - ab).sqrt() as f32) * eps[i]
                        })
                        .collect();
                    let mut g = Graph::new();
                    let y = net
                        .forward(&mut g, &store, &Tensor::from_vec(&[b, 2], xt).unwrap(), &t)
                        .expect("forward");
                    let loss = g.mse(&y, &Tensor::from_vec(&[b, 2], eps).unwrap()).unwrap();
                    let gr = g.backward(&loss).expect("backward");
                    scoresde::engine::profile::time("Adam", || opt.step(&mut store, &gr))
                        .expect("adam");
                });
            }
        }
    }
    let rss_before = status_kb("VmRSS:") / 1024.0;
    for _ in 0..a.warmup.unwrap_or(warmup_default) {
        step();
    }
    scoresde::engine::profile::reset();
    let inner = match a.workload {
        Workload::W1 => 1,
        Workload::W2 => {
            let t0 = Instant::now();
            let mut n = 0;
            while t0.elapsed().as_secs_f64() < 0.1 {
                step();
                n += 1;
            }
            ((0.2 / (t0.elapsed().as_secs_f64() / n as f64)) as usize).max(1)
        }
    };
    let (times, cpu, rejected) = timed_reps(&mut step, a.steps, inner, a.max_retry);
    let mut cpu_sorted = cpu.clone();
    cpu_sorted.sort_by(|x, y| x.partial_cmp(y).unwrap());
    let cpu_med = cpu_sorted[cpu_sorted.len() / 2];
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_default();
    let mut sorted = times.clone();
    sorted.sort_by(|x, y| x.partial_cmp(y).unwrap());
    let k = sorted.len();
    let med = if k % 2 == 1 {
        sorted[k / 2]
    } else {
        0.5 * (sorted[k / 2 - 1] + sorted[k / 2])
    };
    let peak = status_kb("VmHWM:") / 1024.0;
    let mode = if a.forward_only { "infer" } else { "train" };
    let wl = match a.workload {
        Workload::W1 => "W1",
        Workload::W2 => "W2",
    };
    if a.json {
        let ts: Vec<String> = times.iter().map(|t| format!("{t:.6e}")).collect();
        println!(
            "{{\"workload\":\"{wl}\",\"mode\":\"{mode}\",\"batch\":{b},\"threads\":{},\"params\":{params},\"steps\":{},\"inner\":{inner},\"median_s\":{med:.6e},\"min_s\":{:.6e},\"max_s\":{:.6e},\"images_per_s\":{:.3},\"rss_before_mb\":{rss_before:.1},\"peak_rss_mb\":{peak:.1},\"rejected\":{rejected},\"cpu_s\":{cpu_med:.6e},\"load1\":\"{load}\",\"times_s\":[{}]}}",
            a.threads, a.steps, sorted[0], sorted[k - 1], b as f64 / med, ts.join(",")
        );
    } else {
        println!(
            "{wl} {mode} B={b} T={}: median {:.4} s (min {:.4}, max {:.4}) {:.1} samples/s, peak RSS {peak:.0} MB (before {rss_before:.0} MB), rejected {rejected}, inner {inner}, own CPU {cpu_med:.4} s/step, load {load}",
            a.threads, med, sorted[0], sorted[k - 1], b as f64 / med
        );
    }
    if scoresde::engine::profile::enabled() {
        eprintln!(
            "per-op profile over the timed repetitions (SCORESDE_PROFILE):\n{}",
            scoresde::engine::profile::report()
        );
    }
    Ok(())
}
