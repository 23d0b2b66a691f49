//! The `sample` command: any sampler of `scoresde::sampler` on a trained checkpoint.

use crate::cmd_model::{load, Loaded};
use crate::cmd_train::write_outputs;
use clap::{Args, ValueEnum};
use ndarray::Array2;
use scoresde::data::{Dataset, Toy};
use scoresde::rng::seeded;
use scoresde::sampler::corrector::{LangevinCorrector, NoneCorrector};
use scoresde::sampler::ddim::{Ddim, FinalAlpha, Spacing};
use scoresde::sampler::ddpm::{DdpmSampler, ReverseVariance};
use scoresde::sampler::dpm_solver::dpm_solver_sample;
use scoresde::sampler::edm::{edm_sample, karras_sigmas};
use scoresde::sampler::langevin::{annealed_langevin, LangevinConfig};
use scoresde::sampler::ode::{FixedSolver, OdeMethod, ProbabilityFlow, Rk45Options};
use scoresde::sampler::pc::{pc_sample, PcConfig};
use scoresde::sampler::predictor::{Ancestral, EulerMaruyama, Predictor, ReverseDiffusion};
use scoresde::sampler::Silent;
use scoresde::schedule::sigma::SigmaSequence;
use scoresde::score::{Level, ScoreModel};
use scoresde::sde::{Sde, VeSde, VpSde};
use scoresde::train::config::{ddpm_schedule, DDPM_STEPS};
use scoresde::train::{SdeKind, Source};
use scoresde::{Error, Result};
use std::path::PathBuf;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SamplerArg {
    /// Reverse-diffusion predictor (003 eq. 46), the default.
    ReverseDiffusion,
    /// Euler-Maruyama on the reverse SDE (003 eq. 6).
    Em,
    /// Ancestral sampling of the SDE's discrete chain (DDPM chain for VP, SMLD for VE).
    Ancestral,
    /// Predictor-corrector: reverse diffusion + Langevin corrector (--snr, --corrector-steps).
    Pc,
    /// Annealed Langevin dynamics over geometric noise levels (NCSN; --snr sets the step).
    Langevin,
    /// DDPM Algorithm 2 over the 1000-step training chain (VP models; --steps is ignored).
    Ddpm,
    /// DDIM over the training chain (VP models; --eta, --spacing).
    Ddim,
    /// Probability-flow ODE, fixed-step Euler.
    OdeEuler,
    /// Probability-flow ODE, fixed-step Heun.
    OdeHeun,
    /// Probability-flow ODE, fixed-step classical RK4.
    OdeRk4,
    /// Probability-flow ODE, adaptive RK45 (--rtol, --atol; reports the NFE).
    OdeRk45,
    /// Karras et al. EDM Heun sampler over rho = 7 noise levels.
    Edm,
    /// DPM-Solver++(2M) over the VP SDE's levels (VP models).
    DpmSolver,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum SpacingArg {
    /// Every (T div S)-th step, ending at 0.
    Leading,
    /// From T - 1 down, evenly.
    Trailing,
    /// S points from T - 1 to 0, rounded.
    Linspace,
}

/// Options of `scoresde sample`.
#[derive(Args)]
pub struct SampleArgs {
    /// The checkpoint (checkpoint.safetensors of a run directory).
    #[arg(long)]
    checkpoint: PathBuf,
    /// The sampler.
    #[arg(long, value_enum, default_value_t = SamplerArg::ReverseDiffusion)]
    sampler: SamplerArg,
    /// Number of samples.
    #[arg(long, default_value_t = 64)]
    samples: usize,
    /// Sampler steps (noise levels for annealed Langevin, model calls / 2 for EDM Heun).
    #[arg(long, default_value_t = 1000)]
    steps: usize,
    /// Seed of the prior draw and the sampler's noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Langevin corrector steps per predictor step (pc), steps per noise level (langevin:
    /// use 10 or more; one step per level does not mix).
    #[arg(long, default_value_t = 1)]
    corrector_steps: usize,
    /// Signal-to-noise ratio of the Langevin corrector step (pc, langevin).
    #[arg(long, default_value_t = 0.16)]
    snr: f64,
    /// DDIM's eta: 0 deterministic, 1 the DDPM posterior variance.
    #[arg(long, default_value_t = 0.0)]
    eta: f64,
    /// DDIM's choice of timesteps.
    #[arg(long, value_enum, default_value_t = SpacingArg::Leading)]
    spacing: SpacingArg,
    /// Relative tolerance of RK45.
    #[arg(long, default_value_t = 1e-5)]
    rtol: f64,
    /// Absolute tolerance of RK45.
    #[arg(long, default_value_t = 1e-5)]
    atol: f64,
    /// Output PNG [default: samples-<sampler>-seed<seed>.png next to the checkpoint].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Also write the samples as CSV (one row per sample) to this path.
    #[arg(long)]
    raw: Option<PathBuf>,
    /// Also write the samples as raw little-endian f32 (row-major, n x d) to this path.
    #[arg(long)]
    raw_f32: Option<PathBuf>,
}

// ANCHOR: noise_level_adapter
/// A model of the SDE's score read as a noise-level (VE) model, for samplers that take
/// `Level { t: sigma, scale: 1, std: sigma }` (EDM, annealed Langevin): `x(t) = s(t) y` with
/// `y = x0 + (sigma(t)/s(t)) z`, so the score of `y` at noise `sigma_y` is
/// `s(t) ∇_x log p_t(s(t) y)` at the `t` with `sigma(t) / s(t) = sigma_y` (found by bisection;
/// the ratio increases with `t` for VP, sub-VP and VE). Noise outside the SDE's range is
/// clamped to its ends.
pub struct NoiseLevelAdapter<'a> {
    sde: &'a dyn Sde,
    model: &'a dyn ScoreModel,
}

impl NoiseLevelAdapter<'_> {
    fn ratio(&self, t: f64) -> f64 {
        self.sde.marginal_std(t).unwrap_or(f64::NAN) / self.sde.mean_scale(t).unwrap_or(f64::NAN)
    }

    /// The time whose noise-to-signal ratio is `sigma`.
    pub fn time_of(&self, sigma: f64) -> f64 {
        let (mut lo, mut hi) = (self.sde.t_eps(), self.sde.t_end());
        if sigma <= self.ratio(lo) {
            return lo;
        }
        if sigma >= self.ratio(hi) {
            return hi;
        }
        for _ in 0..100 {
            let mid = 0.5 * (lo + hi);
            if self.ratio(mid) < sigma {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        0.5 * (lo + hi)
    }
}

impl ScoreModel for NoiseLevelAdapter<'_> {
    fn dim(&self) -> usize {
        self.model.dim()
    }

    fn score(&self, y: ndarray::ArrayView2<f64>, level: Level) -> Array2<f64> {
        let t = self.time_of(level.std);
        match self.sde.level(t) {
            Ok(l) => {
                let x = y.mapv(|v| l.scale * v);
                self.model.score(x.view(), l) * l.scale
            }
            Err(_) => Array2::from_elem(y.raw_dim(), f64::NAN),
        }
    }
}
// ANCHOR_END: noise_level_adapter

fn need_vp(m: &Loaded, what: &str) -> Result<()> {
    if m.sde_kind == SdeKind::Vp {
        Ok(())
    } else {
        Err(Error::param(
            "sampler",
            format!(
                "{what} runs the DDPM chain and needs a VP model; this one was trained for the {} SDE",
                m.sde_kind.name()
            ),
        ))
    }
}

/// Runs the chosen sampler; returns the samples and the model calls per sample.
fn run(a: &SampleArgs, m: &Loaded) -> Result<(Array2<f64>, usize)> {
    let n = a.samples;
    let sde = m.sde.as_ref();
    let noise: &mut scoresde::rng::Rng = &mut seeded(a.seed);
    let steps = a.steps;
    let pc = |pred: &dyn Predictor, corrector_steps: usize, noise: &mut scoresde::rng::Rng| {
        let mut cfg = PcConfig::new(steps, n);
        cfg.corrector_steps = corrector_steps;
        let corr = LangevinCorrector::new(a.snr)?;
        let s = if corrector_steps == 0 {
            pc_sample(sde, &m.score, pred, &NoneCorrector, cfg, noise, &mut Silent)?
        } else {
            pc_sample(sde, &m.score, pred, &corr, cfg, noise, &mut Silent)?
        };
        Ok::<_, Error>((s.x, s.nfe))
    };
    let ode = |method: OdeMethod, noise: &mut scoresde::rng::Rng| {
        let flow = ProbabilityFlow::new(sde, &m.score, sde.t_eps())?;
        let s = flow.sample(n, method, noise, &mut Silent)?;
        Ok::<_, Error>((s.x, s.nfe))
    };
    match a.sampler {
        SamplerArg::ReverseDiffusion => pc(&ReverseDiffusion, 0, noise),
        SamplerArg::Em => pc(&EulerMaruyama, 0, noise),
        SamplerArg::Pc => pc(&ReverseDiffusion, a.corrector_steps, noise),
        SamplerArg::Ancestral => match m.sde_kind {
            SdeKind::Vp => pc(
                &Ancestral::vp(&VpSde::new(Default::default(), steps)?),
                0,
                noise,
            ),
            SdeKind::Ve => {
                let ve = VeSde::new(
                    scoresde::schedule::continuous::GeometricSigma::new(0.01, m.ve_sigma_max)?,
                    steps,
                )?;
                pc(&Ancestral::ve(&ve), 0, noise)
            }
            SdeKind::SubVp => Err(Error::param(
                "sampler",
                "the sub-VP SDE has no ancestral chain; use reverse-diffusion or an ODE sampler",
            )),
        },
        SamplerArg::Langevin => {
            let adapter = NoiseLevelAdapter {
                sde,
                model: &m.score,
            };
            let lo = adapter.ratio(sde.t_eps());
            let hi = adapter.ratio(sde.t_end()).min(1e3);
            let sigmas = SigmaSequence::geometric(hi, lo, steps)?;
            let cfg = LangevinConfig {
                steps_per_level: a.corrector_steps.max(1),
                eps: 2.0 * (a.snr * lo).powi(2),
                n_samples: n,
                denoise: true,
            };
            let x = annealed_langevin(&adapter, &sigmas, cfg, noise, &mut Silent)?;
            Ok((x, steps * cfg.steps_per_level + 1))
        }
        SamplerArg::Ddpm => {
            need_vp(m, "ddpm")?;
            let score = chain_view(m);
            let s = DdpmSampler::new(ddpm_schedule()?, ReverseVariance::Beta);
            Ok((s.sample(&score, n, noise, &mut Silent)?, DDPM_STEPS))
        }
        SamplerArg::Ddim => {
            need_vp(m, "ddim")?;
            let score = chain_view(m);
            let spacing = match a.spacing {
                SpacingArg::Leading => Spacing::Leading,
                SpacingArg::Trailing => Spacing::Trailing,
                SpacingArg::Linspace => Spacing::Linspace,
            };
            let s = Ddim::new(ddpm_schedule()?, steps, spacing, FinalAlpha::One, a.eta)?;
            Ok((s.sample(&score, n, noise, &mut Silent)?, steps))
        }
        SamplerArg::OdeEuler => ode(OdeMethod::Fixed(FixedSolver::Euler, steps), noise),
        SamplerArg::OdeHeun => ode(OdeMethod::Fixed(FixedSolver::Heun, steps), noise),
        SamplerArg::OdeRk4 => ode(OdeMethod::Fixed(FixedSolver::Rk4, steps), noise),
        SamplerArg::OdeRk45 => ode(OdeMethod::Rk45(Rk45Options::new(a.rtol, a.atol)?), noise),
        SamplerArg::Edm => {
            let adapter = NoiseLevelAdapter {
                sde,
                model: &m.score,
            };
            let lo = adapter.ratio(sde.t_eps());
            let hi = adapter.ratio(sde.t_end()).min(80.0);
            let sigmas = karras_sigmas(steps, lo, hi, 7.0)?;
            let x = edm_sample(&adapter, n, &sigmas, noise, &mut Silent)?;
            Ok((x, 2 * steps - 1))
        }
        SamplerArg::DpmSolver => {
            need_vp(m, "dpm-solver")?;
            if steps < 2 {
                return Err(Error::param("steps", "need at least 2 steps"));
            }
            let (te, t1) = (sde.t_eps(), sde.t_end());
            let levels: Vec<Level> = (0..steps)
                .map(|i| sde.level(t1 - (t1 - te) * i as f64 / (steps - 1) as f64))
                .collect::<Result<_>>()?;
            Ok((
                dpm_solver_sample(&m.score, n, &levels, noise, &mut Silent)?,
                steps,
            ))
        }
    }
}

/// The loaded network read at `t = i / T` for samplers whose levels carry the chain index.
fn chain_view(m: &Loaded) -> scoresde::train::NetScore {
    scoresde::train::NetScore {
        net: m.score.net.clone(),
        store: m.score.store.clone(),
        chunk: m.score.chunk,
        prediction: m.score.prediction,
        time_divisor: 1.0,
    }
    .for_chain(DDPM_STEPS)
}

/// `scoresde sample`.
pub fn sample(a: SampleArgs) -> Result<()> {
    if a.samples == 0 {
        return Err(Error::param("samples", "need at least 1"));
    }
    if a.steps == 0 {
        return Err(Error::param("steps", "need at least 1"));
    }
    let m = load(&a.checkpoint)?;
    let t0 = std::time::Instant::now();
    let (x, nfe) = run(&a, &m)?;
    let name = a
        .sampler
        .to_possible_value()
        .map(|v| v.get_name().to_string())
        .unwrap_or_default();
    println!(
        "sampled {} points with {name} ({nfe} model calls per sample) in {:.1?}",
        a.samples,
        t0.elapsed()
    );
    let png = a.out.clone().unwrap_or_else(|| {
        a.checkpoint
            .with_file_name(format!("samples-{name}-seed{}.png", a.seed))
    });
    // A 2-D model trained on a toy is plotted over its density and tested against exact draws.
    let source = match Toy::from_name(&m.data) {
        Ok(t) if m.score.net.data_dim() == 2 => Source::Toy(t),
        _ => Source::Data(Dataset::new(
            Array2::zeros((1, m.score.net.data_dim())),
            None,
            None,
        )?),
    };
    write_outputs(
        &x,
        &source,
        a.seed,
        &png,
        a.raw.as_deref(),
        a.raw_f32.as_deref(),
    )
}
