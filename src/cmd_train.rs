//! The `train` and `sample` commands.

use clap::{Args, ValueEnum};
use ndarray::{Array2, Axis};
use scoresde::data::idx::{self, Split};
use scoresde::data::{digits, Dataset, Toy};
use scoresde::engine::nn::{MlpConfig, UNetConfig};
use scoresde::engine::optim::AdamConfig;
use scoresde::loss::{Prediction, Weighting};
use scoresde::plot::{image_grid, line_plot, scatter_over_density, View};
use scoresde::rng::seeded;
use scoresde::train::sample::reverse_diffusion;
use scoresde::train::{ModelSpec, NetScore, RunDir, SdeKind, Source, TrainConfig, Trainer};
use scoresde::train::{Objective, TimeSampling};
use scoresde::{stats, Error, Result};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(Clone, Copy, ValueEnum)]
pub enum SdeArg {
    /// Variance preserving (beta 0.1 .. 20).
    Vp,
    /// Sub-VP (same beta; smaller variance, often better likelihoods).
    Subvp,
    /// Variance exploding (sigma 0.01 .. --ve-sigma-max).
    Ve,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum WeightArg {
    /// lambda(t) = sigma(t)^2, the documents' choice: every t contributes equally.
    Sigma2,
    /// lambda(t) = g(t)^2: the loss bounds the negative log-likelihood.
    Likelihood,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ObjectiveArg {
    /// Continuous-time denoising score matching for the SDE (003 eq. 7).
    Dsm,
    /// Sliced score matching on samples of p_t: no kernel score needed (003 section 3.3).
    Ssm,
    /// DDPM L_simple over the 1000-step linear-beta chain (Algorithm 1); see --prediction.
    Ddpm,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum PredictionArg {
    /// The noise eps (Ho et al.).
    Eps,
    /// The clean data x0.
    X0,
    /// The velocity v = sqrt(abar) eps - sqrt(1 - abar) x0 (Salimans & Ho).
    V,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum TSamplingArg {
    /// t uniform on [t_eps, 1].
    Uniform,
    /// t drawn proportionally to the loss weight lambda(t)/sigma(t)^2, each row reweighted by
    /// u(t)/q(t): the same expected loss, far less variance for the likelihood weighting.
    Importance,
}

/// Options of `scoresde train`.
#[derive(Args)]
pub struct TrainArgs {
    /// The data: `digits` (built-in UCI 8x8 digits, 1,797 images), a 2-D toy (`ring8`,
    /// `grid`, `lopsided`: Gaussian mixtures with exact density; `moons`, `swissroll`, `rings`,
    /// `checkerboard`), `mnist:DIR` (IDX files, raw or .gz) or `fashion` (Debian's
    /// /usr/share/datasets/fashion-mnist).
    #[arg(long, default_value = "digits")]
    data: String,
    /// Optimiser steps [default: 20000 for toys, 2500 for digits, 20000 for 28x28].
    #[arg(long)]
    steps: Option<u64>,
    /// Batch size [default: 256 for toys, 32 for images].
    #[arg(long)]
    batch: Option<usize>,
    /// Peak learning rate of Adam [default: 2e-3 for toys, 1e-3 for images].
    #[arg(long)]
    lr: Option<f64>,
    /// Linear learning-rate warm-up steps.
    #[arg(long, default_value_t = 100)]
    warmup: u64,
    /// Clip the global gradient norm to this value.
    #[arg(long, default_value_t = 1.0)]
    clip: f64,
    /// EMA decay of the parameters used for sampling [default: 0.999].
    #[arg(long)]
    ema: Option<f64>,
    /// The forward SDE.
    #[arg(long, value_enum, default_value_t = SdeArg::Vp)]
    sde: SdeArg,
    /// sigma_max of the VE SDE (about the largest distance between data points).
    #[arg(long, default_value_t = 5.0)]
    ve_sigma_max: f64,
    /// The objective.
    #[arg(long, value_enum, default_value_t = ObjectiveArg::Dsm)]
    objective: ObjectiveArg,
    /// What the network predicts under --objective ddpm (dsm and ssm always predict eps).
    #[arg(long, value_enum, default_value_t = PredictionArg::Eps)]
    prediction: PredictionArg,
    /// The weighting lambda(t) of dsm/ssm [default: likelihood for toys, sigma2 for images].
    #[arg(long, value_enum)]
    weighting: Option<WeightArg>,
    /// How dsm/ssm draw the time t [default: importance for toys, uniform for images].
    #[arg(long, value_enum)]
    t_sampling: Option<TSamplingArg>,
    /// MLP width (2-D data).
    #[arg(long, default_value_t = 128)]
    width: usize,
    /// U-Net base channels (images).
    #[arg(long, default_value_t = 32)]
    base: usize,
    /// Seed of initialisation, batches and noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Checkpoint every this many steps (and at the end).
    #[arg(long, default_value_t = 500)]
    checkpoint_every: u64,
    /// Samples drawn at the end.
    #[arg(long)]
    samples: Option<usize>,
    /// Reverse-diffusion steps for the final samples [default: 1000 for toys, 500 for images].
    #[arg(long)]
    sample_steps: Option<usize>,
    /// Run directory [default: runs/<data>].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the run in --out from its checkpoint up to --steps (bit-identical to an
    /// uninterrupted run with the same options).
    #[arg(long)]
    resume: bool,
}

/// Training or evaluation data.
pub enum Data {
    Toy(Toy),
    Images(Dataset, &'static str),
}

/// The data called `spec`; with `held_out`, the evaluation part (the test split of IDX
/// files, the 10% of the digits that `train` holds out).
pub fn load_data(spec: &str, held_out: bool) -> Result<Data> {
    let split = if held_out { Split::Test } else { Split::Train };
    if spec == "digits" {
        let d = digits::load()?;
        return Ok(Data::Images(
            if held_out {
                d.split(0.1, DIGITS_SPLIT_SEED)?.1
            } else {
                d
            },
            "digits",
        ));
    }
    if let Some(dir) = spec.strip_prefix("mnist:") {
        return Ok(Data::Images(
            idx::load_mnist_dir(Path::new(dir), split)?,
            "mnist",
        ));
    }
    if spec == "fashion" {
        return Ok(Data::Images(
            idx::load_mnist_dir(Path::new(idx::FASHION_MNIST_DIR), split).map_err(|e| {
                Error::Data(format!(
                    "{e} (install Debian's dataset-fashion-mnist or use mnist:DIR)"
                ))
            })?,
            "fashion",
        ));
    }
    Toy::from_name(spec).map(Data::Toy).map_err(|_| {
        Error::param(
            "data",
            format!("`{spec}` is not digits, mnist:DIR, fashion or a toy (ring8, grid, lopsided, moons, swissroll, rings, checkerboard)"),
        )
    })
}

fn unet_for(res: usize, base: usize) -> UNetConfig {
    if res == 8 {
        UNetConfig {
            in_channels: 1,
            resolution: 8,
            base_channels: base,
            channel_mult: vec![1, 2],
            num_res_blocks: 1,
            attn_resolutions: vec![],
            groups: 8,
            temb_in: 32,
            temb_dim: 4 * base,
            num_classes: None,
        }
    } else {
        UNetConfig {
            resolution: res,
            base_channels: base,
            ..Default::default()
        }
    }
}

/// Seed of the 90/10 split of image data into training and held-out parts.
const DIGITS_SPLIT_SEED: u64 = 1234;

pub fn train(a: TrainArgs) -> Result<()> {
    let data = load_data(&a.data, false)?;
    let is_toy = matches!(data, Data::Toy(_));
    let (model, source, name) = match data {
        Data::Toy(t) => (
            ModelSpec::Mlp(MlpConfig {
                width: a.width,
                ..Default::default()
            }),
            Source::Toy(t),
            t.name().to_string(),
        ),
        Data::Images(d, name) => {
            let shape = d
                .image
                .ok_or_else(|| Error::Data("images without a shape".into()))?;
            if shape.height != shape.width || shape.channels != 1 {
                return Err(Error::Data(format!(
                    "need square 1-channel images, got {shape:?}"
                )));
            }
            // Hold out 10% (seeded) for evaluation; train on the rest.
            let (train, _held_out) = d.split(0.1, DIGITS_SPLIT_SEED)?;
            (
                ModelSpec::UNet(unet_for(shape.height, a.base)),
                Source::Data(train),
                name.to_string(),
            )
        }
    };
    let big = !is_toy && model.data_dim() > 64;
    let is_ddpm = matches!(a.objective, ObjectiveArg::Ddpm);
    let config = TrainConfig {
        data: name.clone(),
        model,
        sde: match a.sde {
            SdeArg::Vp => SdeKind::Vp,
            SdeArg::Subvp => SdeKind::SubVp,
            SdeArg::Ve => SdeKind::Ve,
        },
        ve_sigma_max: a.ve_sigma_max,
        weighting: match a.weighting {
            Some(WeightArg::Sigma2) => Weighting::SigmaSquared,
            Some(WeightArg::Likelihood) => Weighting::Likelihood,
            None if is_toy && !is_ddpm => Weighting::Likelihood,
            None => Weighting::SigmaSquared,
        },
        objective: match a.objective {
            ObjectiveArg::Dsm => Objective::Dsm,
            ObjectiveArg::Ssm => Objective::Ssm,
            ObjectiveArg::Ddpm => Objective::Ddpm(match a.prediction {
                PredictionArg::Eps => Prediction::Eps,
                PredictionArg::X0 => Prediction::X0,
                PredictionArg::V => Prediction::V,
            }),
        },
        time_sampling: match a.t_sampling {
            Some(TSamplingArg::Uniform) => TimeSampling::Uniform,
            Some(TSamplingArg::Importance) => TimeSampling::Importance,
            None if is_toy && !is_ddpm => TimeSampling::Importance,
            None => TimeSampling::Uniform,
        },
        adam: AdamConfig {
            lr: a.lr.unwrap_or(if is_toy { 2e-3 } else { 1e-3 }),
            warmup: a.warmup,
            clip_norm: Some(a.clip),
            ..Default::default()
        },
        ema_decay: a.ema.unwrap_or(0.999),
        batch: a.batch.unwrap_or(if is_toy { 256 } else { 32 }),
        // Toys and 28x28 images: 20,000 steps; the 8x8 digits: 2,500.
        steps: a.steps.unwrap_or(if is_toy || big { 20000 } else { 2500 }),
        seed: a.seed,
        t_eps: 1e-3,
        checkpoint_every: a.checkpoint_every,
        max_loss: 1e4,
    };
    let out = a.out.unwrap_or_else(|| PathBuf::from("runs").join(&name));
    let mut trainer = Trainer::new(config)?;
    // Reject a sampling step count the SDE cannot discretise now, not after training.
    let sample_steps = a.sample_steps.unwrap_or(if is_toy { 1000 } else { 500 });
    scoresde::train::sample::check_sampling_steps(trainer.sde(), sample_steps)?;
    let resume_step = if a.resume {
        let ck = out.join("checkpoint.safetensors");
        trainer.resume(&ck)?;
        eprintln!("resuming {} at step {}", ck.display(), trainer.step_count());
        Some(trainer.step_count())
    } else {
        None
    };
    let run = RunDir::open(&out, &trainer.config.to_json(), resume_step)?;
    // Ctrl-C: finish the current step, check and save the state, and exit cleanly.
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst))
            .map_err(|e| Error::param("ctrl-c", format!("cannot install the handler: {e}")))?;
    }
    trainer.stop = Some(stop.clone());
    let n_params: usize = trainer.store.num_elements();
    eprintln!(
        "training {} ({n_params} parameters) on {name}: {} steps, batch {}, {} SDE -> {}",
        trainer.config.model.to_json(),
        trainer.config.steps,
        trainer.config.batch,
        trainer.config.sde.name(),
        out.display()
    );
    let started = std::time::Instant::now();
    let first = trainer.step_count();
    let total = trainer.config.steps;
    let bar = if std::io::stderr().is_terminal() {
        let b = indicatif::ProgressBar::new(total);
        b.set_position(first);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:30} {pos}/{len} [{elapsed_precise} < {eta_precise}] {msg}",
            )
            .expect("template"),
        );
        Some(b)
    } else {
        None
    };
    let mut smooth = f64::NAN;
    let every = (total / 20).max(1);
    let result = trainer.train(&source, Some(&run), &mut |r| {
        smooth = if smooth.is_nan() { r.loss } else { 0.98 * smooth + 0.02 * r.loss };
        let rate = (r.step - first) as f64 / r.elapsed.max(1e-9);
        let eta = (r.steps - r.step) as f64 / rate.max(1e-9);
        match &bar {
            Some(b) => {
                b.set_position(r.step);
                if r.step % 10 == 0 {
                    b.set_message(format!("loss {smooth:.4} | {rate:.0} steps/s"));
                }
            }
            None => {
                if r.step % every == 0 || r.step == r.steps {
                    eprintln!(
                        "step {:>6}/{} loss {smooth:.4} (this batch {:.4}) | {rate:.1} steps/s | ETA {eta:.0} s",
                        r.step, r.steps, r.loss
                    );
                }
            }
        }
    });
    if let Some(b) = &bar {
        b.finish();
    }
    // Plot the loss curve whatever happened: it shows a divergence too.
    let hist = run.loss_history()?;
    if hist.len() >= 2 {
        // Log scale unless some loss is not positive (the SSM objective can be negative).
        let log = hist.iter().all(|(_, l)| *l > 0.0);
        line_plot(&out.join("loss.png"), &hist, log, 50, 640, 360)?;
    }
    result?;
    if trainer.step_count() < total {
        println!(
            "interrupted: saved the state after step {} to {}; continue with the same options and --resume",
            trainer.step_count(),
            run.checkpoint_path().display()
        );
        return Ok(());
    }
    let train_time = started.elapsed();
    println!(
        "trained {} steps in {:.1?} ({:.1} steps/s); final smoothed loss {smooth:.4}",
        total - first,
        train_time,
        (total - first) as f64 / train_time.as_secs_f64()
    );
    println!(
        "wrote {} and {}",
        run.checkpoint_path().display(),
        out.join("loss.png").display()
    );
    let score = trainer.score_model()?;
    let n = a.samples.unwrap_or(if is_toy { 1000 } else { 64 });
    write_samples(
        &source,
        trainer.sde(),
        &score,
        n,
        sample_steps,
        trainer.config.seed,
        &out.join("samples.png"),
        None,
    )
}

#[allow(clippy::too_many_arguments)]
fn write_samples(
    source: &Source,
    sde: &dyn scoresde::sde::Sde,
    score: &NetScore,
    n: usize,
    steps: usize,
    seed: u64,
    png: &Path,
    raw: Option<&Path>,
) -> Result<()> {
    let t0 = std::time::Instant::now();
    let x = reverse_diffusion(sde, score, n, steps, seed ^ 0x5a5a)?;
    println!(
        "sampled {n} points with {steps} reverse-diffusion steps in {:.1?}",
        t0.elapsed()
    );
    write_outputs(&x, source, seed, png, raw, None)
}

/// Writes samples `x`: a PNG (2-D points over the toy's density with an energy two-sample
/// test against exact draws of the toy; images as a grid), optionally a CSV (one row per
/// sample) and a raw little-endian `f32` file (row-major, `n × d`).
pub fn write_outputs(
    x: &Array2<f64>,
    source: &Source,
    seed: u64,
    png: &Path,
    raw: Option<&Path>,
    raw_f32: Option<&Path>,
) -> Result<()> {
    let n = x.nrows();
    if x.iter().any(|v| !v.is_finite()) {
        return Err(Error::NonFinite(
            "the samples contain NaN or infinity".into(),
        ));
    }
    if let Some(p) = raw_f32 {
        let bytes: Vec<u8> = x.iter().flat_map(|&v| (v as f32).to_le_bytes()).collect();
        std::fs::write(p, bytes).map_err(|e| Error::Data(format!("{}: {e}", p.display())))?;
        println!(
            "wrote {} ({n} x {} little-endian f32)",
            p.display(),
            x.ncols()
        );
    }
    if let Some(p) = raw {
        let mut s = String::new();
        for r in x.rows() {
            s.push_str(
                &r.iter()
                    .map(|v| format!("{v:.6}"))
                    .collect::<Vec<_>>()
                    .join(","),
            );
            s.push('\n');
        }
        std::fs::write(p, s).map_err(|e| Error::Data(format!("{}: {e}", p.display())))?;
        println!("wrote {}", p.display());
    }
    if x.ncols() == 2 {
        let mixture = match source {
            Source::Toy(t) => t.mixture(),
            _ => None,
        };
        let pts: Vec<[f64; 2]> = x.axis_iter(Axis(0)).map(|r| [r[0], r[1]]).collect();
        let dens = |a: f64, b: f64| match &mixture {
            Some(m) => m
                .log_density(ndarray::arr1(&[a, b]).view())
                .map(f64::exp)
                .unwrap_or(0.0),
            None => 0.0,
        };
        scatter_over_density(png, &pts, dens, View { lo: -3.5, hi: 3.5 }, 512)?;
        if let Source::Toy(t) = source {
            let exact = t.sample(n, &mut seeded(seed ^ 0xe4ac7));
            let m = n.min(1000);
            let test = stats::energy_test(
                x.slice(ndarray::s![..m, ..]),
                exact.slice(ndarray::s![..m, ..]),
                199,
                seed,
            )?;
            println!(
                "energy two-sample test vs {m} exact draws of {}: statistic {:.4}, p-value {:.3} ({})",
                t.name(),
                test.statistic,
                test.p_value,
                if test.rejects(0.01) { "REJECTED at 1%" } else { "not rejected at 1%" }
            );
        }
    } else {
        let side = (x.ncols() as f64).sqrt().round() as usize;
        let images: Vec<Vec<f64>> = x
            .rows()
            .into_iter()
            .map(|r| r.iter().map(|v| v.clamp(-1.0, 1.0)).collect())
            .collect();
        let cols = (n as f64).sqrt().ceil() as usize;
        image_grid(png, &images, side, side, cols)?;
    }
    println!("wrote {}", png.display());
    Ok(())
}
