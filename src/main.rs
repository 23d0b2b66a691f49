//! `scoresde`: the command-line tool.
//!
//! Every error in arguments or files is reported as one clear line with a non-zero exit code.

use clap::{Parser, Subcommand, ValueEnum};
use ndarray::{Array2, Axis};
use scoresde::gaussian::GaussianMixture;
use scoresde::plot::{scatter_over_density, View};
use scoresde::rng::{seeded, NoiseSource};
use scoresde::schedule::beta::BetaSchedule;
use scoresde::score::MixtureScore;
use scoresde::sde::reverse::ReverseSde;
use scoresde::sde::vp::VpSde;
use scoresde::sde::Sde;
use scoresde::{stats, Error, Result};
use std::path::PathBuf;
use std::process::ExitCode;

mod cmd_eval;
mod cmd_likelihood;
mod cmd_model;
mod cmd_sample;
mod cmd_train;
use cmd_train::TrainArgs;

/// scoresde: diffusion and score-based generative models, derived and verified.
///
/// Every formula this tool uses is listed in reference/ledger.toml with the test that checks it;
/// the book (book/) derives each one next to its code.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Sample the built-in 8-mode Gaussian mixture with its exact score through the reverse VP
    /// SDE, check the samples against exact draws with an energy two-sample test, and write a
    /// scatter plot of the samples over the true density.
    ///
    /// The exact score makes this an end-to-end test of the reverse-time sampler: with enough
    /// steps the samples are draws from the mixture itself.
    Demo {
        /// Number of samples.
        #[arg(long, default_value_t = 2000)]
        samples: usize,
        /// Reverse-diffusion steps (the VP discretisation with this many levels).
        #[arg(long, default_value_t = 1000)]
        steps: usize,
        /// Seed of every random number.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Output directory.
        #[arg(long, default_value = "runs/demo")]
        out: PathBuf,
    },
    /// Train a score network and sample from it
    ///
    /// The network predicts the noise eps of x(t) = s(t) x(0) + sigma(t) eps; its score is
    /// -eps/sigma(t). --objective dsm (default) minimises the continuous DSM objective
    /// (003 eq. 7) with lambda(t) = sigma(t)^2 or g(t)^2 (--weighting likelihood), t uniform or
    /// importance-sampled proportionally to lambda/sigma^2 and reweighted (--t-sampling);
    /// ssm uses sliced score matching (no kernel score); ddpm is Algorithm 1 over the
    /// 1000-step linear-beta chain with eps, x0 or v prediction. Toys default to 20,000 steps,
    /// the likelihood weighting and importance sampling (about 1.5 min on 2 cores).
    /// Everything goes to the run directory (--out): config.json, metrics.csv, loss.png,
    /// checkpoint.safetensors (atomic; the last good one survives a divergence) and
    /// samples.png. Ctrl-C saves the current state and exits; rerun with --resume.
    ///
    /// Examples:
    ///   scoresde train                                 # U-Net on the built-in 8x8 digits
    ///   scoresde train --data ring8                    # W2 MLP on the 8-mode ring (~1.5 min)
    ///   scoresde train --data ring8 --steps 30000 --resume --out runs/ring8
    ///   scoresde train --data lopsided --objective ddpm --prediction v
    ///   scoresde train --data mnist:data/mnist         # after scripts/fetch-mnist.sh data/mnist
    #[command(verbatim_doc_comment)]
    Train(TrainArgs),
    /// Sample from a checkpoint written by `train` with any sampler
    ///
    /// Stochastic samplers (reverse-diffusion, em, ancestral, pc, langevin, ddpm, ddim with
    /// eta > 0) and deterministic ones (PF-ODE euler/heun/rk4/rk45, ddim eta = 0, edm,
    /// dpm-solver). For 2-D models writes a scatter plot over the toy's density and runs an
    /// energy two-sample test against exact draws; for images a grid. --raw writes a CSV,
    /// --raw-f32 raw little-endian f32.
    ///
    /// Examples:
    ///   scoresde sample --checkpoint runs/ring8/checkpoint.safetensors --samples 1000
    ///   scoresde sample --checkpoint runs/ring8/checkpoint.safetensors --sampler ode-rk45 --rtol 1e-4
    ///   scoresde sample --checkpoint runs/digits/checkpoint.safetensors --sampler ddim --steps 50
    #[command(verbatim_doc_comment)]
    Sample(cmd_sample::SampleArgs),
    /// Negative log-likelihood of data under a checkpoint by the probability-flow ODE
    ///
    /// Integrates [x, int div v] from t_eps to 1 with RK45 (instantaneous change of
    /// variables) and adds the prior's log-density. On a toy with a known density reports the
    /// NLL in nats next to the true entropy and the (paired) gap, which is KL(p_data||p_model)
    /// up to Monte Carlo error; on images reports bits/dim under uniform dequantisation of the
    /// held-out split. The divergence is exact (central differences) unless --probes asks for
    /// Hutchinson's estimator.
    ///
    /// Example:
    ///   scoresde likelihood --checkpoint runs/ring8/checkpoint.safetensors --n 1000
    #[command(verbatim_doc_comment)]
    Likelihood(cmd_likelihood::LikelihoodArgs),
    /// Show a checkpoint's configuration and its tensors' names, shapes and dtypes.
    Inspect(cmd_model::InspectArgs),
    /// Evaluate a checkpoint: sample quality and likelihood, chosen by its data
    ///
    /// Images: a Frechet distance between Gaussians fitted to a small classifier's features of
    /// generated samples and of held-out images, next to the floor of training vs held-out
    /// images at the same n; the classifier's label distribution of the samples; the DDPM
    /// variational bound (ELBO) in bits/dim and the exact PF-ODE bits/dim on held-out images.
    /// 2-D toys: energy distance and MMD to exact draws, the score error against the exact
    /// mixture score, and the PF-ODE NLL gap to the true entropy.
    ///
    /// Examples:
    ///   scoresde eval --train-classifier --data digits --out runs/digits/classifier.safetensors
    ///   scoresde eval --checkpoint runs/digits/checkpoint.safetensors
    ///   scoresde eval --checkpoint runs/ring8/checkpoint.safetensors --n 2000 --json m.json
    #[command(verbatim_doc_comment)]
    Eval(cmd_eval::EvalArgs),
    /// Print a discrete beta schedule's derived quantities (Ho et al. conventions: t = 1..T,
    /// alpha_bar_0 = 1).
    Schedule {
        /// The schedule's shape.
        #[arg(long, value_enum, default_value_t = ScheduleKind::Linear)]
        kind: ScheduleKind,
        /// Number of steps T.
        #[arg(long, default_value_t = 1000)]
        steps: usize,
        /// Print every k-th step (and the last).
        #[arg(long, default_value_t = 100)]
        every: usize,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum ScheduleKind {
    /// Linear betas 1e-4 .. 0.02 (Ho et al.).
    Linear,
    /// Cosine alpha_bar with s = 0.008 (Nichol & Dhariwal).
    Cosine,
    /// Linear in sqrt(beta), 0.00085 .. 0.012 (latent diffusion).
    ScaledLinear,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Training and sampling allocate and free the same buffers every step: keep freed memory
    // for reuse instead of faulting it in again (see `engine::alloc`).
    scoresde::engine::alloc::keep_freed_memory();
    let result = match cli.command {
        Command::Demo {
            samples,
            steps,
            seed,
            out,
        } => demo(samples, steps, seed, &out),
        Command::Schedule { kind, steps, every } => schedule(kind, steps, every),
        Command::Train(a) => cmd_train::train(a),
        Command::Sample(a) => cmd_sample::sample(a),
        Command::Likelihood(a) => cmd_likelihood::likelihood(a),
        Command::Inspect(a) => cmd_model::inspect(a),
        Command::Eval(a) => cmd_eval::eval(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn demo(samples: usize, steps: usize, seed: u64, out: &std::path::Path) -> Result<()> {
    if samples < 2 {
        return Err(Error::param("samples", "need at least 2"));
    }
    let mixture = GaussianMixture::ring(8, 2.0, 0.1)?;
    let oracle = MixtureScore::new(mixture.clone());
    let sde = VpSde::new(Default::default(), steps)?;
    let reverse = ReverseSde::new(&sde, &oracle);
    let mut noise = seeded(seed);

    // Reverse diffusion (003, the reverse-diffusion predictor): from the prior at t = 1, step
    // down the level grid t_k = k/(N-1) to t = 0, returning the mean at the last step.
    let mut x = sde.prior_sample(&mut noise, samples, 2);
    let mut z = vec![0.0; samples * 2];
    let started = std::time::Instant::now();
    for k in (0..steps).rev() {
        let t = scoresde::sde::level_time(k, steps, sde.t_end());
        let (f, g) = reverse.discretize(x.view(), t, steps)?;
        x = &x - &f;
        if k > 0 {
            noise.fill_normal(&mut z);
            let zs = Array2::from_shape_vec((samples, 2), z.clone()).expect("shape");
            x = x + zs * g;
        }
    }
    if x.iter().any(|v| !v.is_finite()) {
        return Err(Error::NonFinite("samples diverged".into()));
    }
    let elapsed = started.elapsed();

    let exact = mixture.sample_n(samples, &mut seeded(seed ^ 0x5eed));
    let n_test = samples.min(500);
    let test = stats::energy_test(
        x.slice(ndarray::s![..n_test, ..]),
        exact.slice(ndarray::s![..n_test, ..]),
        199,
        seed,
    )?;
    let png = out.join("samples.png");
    let pts: Vec<[f64; 2]> = x.axis_iter(Axis(0)).map(|r| [r[0], r[1]]).collect();
    scatter_over_density(
        &png,
        &pts,
        |a, b| {
            mixture
                .log_density(ndarray::arr1(&[a, b]).view())
                .map(f64::exp)
                .unwrap_or(0.0)
        },
        View { lo: -3.0, hi: 3.0 },
        512,
    )?;
    let m = stats::mean(x.view());
    println!(
        "sampled {samples} points of the 8-mode ring through the reverse VP SDE ({steps} steps, exact score) in {:.2?}",
        elapsed
    );
    println!(
        "sample mean ({:+.3}, {:+.3}); exact mean (0, 0)",
        m[0], m[1]
    );
    println!(
        "energy two-sample test vs {n_test} exact draws: statistic {:.4}, p-value {:.3} ({})",
        test.statistic,
        test.p_value,
        if test.rejects(0.01) {
            "REJECTED at 1%: the sampler does not reproduce the mixture"
        } else {
            "not rejected at 1%"
        }
    );
    println!("wrote {}", png.display());
    Ok(())
}

fn schedule(kind: ScheduleKind, steps: usize, every: usize) -> Result<()> {
    let s = match kind {
        ScheduleKind::Linear => BetaSchedule::linear(steps, 1e-4, 0.02)?,
        ScheduleKind::Cosine => BetaSchedule::cosine(steps, 0.008)?,
        ScheduleKind::ScaledLinear => BetaSchedule::scaled_linear(steps, 0.00085, 0.012)?,
    };
    if every == 0 {
        return Err(Error::param("every", "must be at least 1"));
    }
    println!(
        "{:>6} {:>12} {:>12} {:>14} {:>12}",
        "t", "beta", "alpha_bar", "post_var", "snr"
    );
    for t in (1..=steps).filter(|t| t % every == 0 || *t == 1 || *t == steps) {
        println!(
            "{:>6} {:>12.6e} {:>12.6e} {:>14.6e} {:>12.6e}",
            t,
            s.beta(t)?,
            s.alpha_bar(t)?,
            s.posterior_variance(t)?,
            s.snr(t)?
        );
    }
    Ok(())
}
