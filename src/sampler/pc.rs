//! The predictor-corrector sampler (003 §4.2, ledger Dc40, Ac46; 000 "Predictor-Corrector"):
//! from `x ~ p_T`, at each time of the grid run `corrector_steps` MCMC corrections targeting
//! `p_t`, then one predictor step of the reverse SDE to the next time. Any predictor pairs
//! with any corrector: reverse diffusion or Euler-Maruyama with Langevin is the paper's PC;
//! the ancestral predictor with no corrector is DDPM; no predictor with the annealed-Langevin
//! corrector is SMLD (ledger Dc41).

use super::corrector::Corrector;
use super::predictor::{Predictor, Step};
use super::Progress;
use crate::error::{Error, Result};
use crate::rng::NoiseSource;
use crate::score::ScoreModel;
use crate::sde::{ReverseSde, Sde};
use ndarray::Array2;

/// Settings of [`pc_sample`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PcConfig {
    /// Number of predictor steps `N >= 2` (also the number of levels of a discrete chain).
    pub n_steps: usize,
    /// Corrector steps per predictor step.
    pub corrector_steps: usize,
    /// The last grid time `eps` in `(0, T)`.
    pub eps: f64,
    /// Return the mean of the last predictor step (the "final denoising step": no noise is
    /// added after the last score evaluation).
    pub denoise: bool,
    /// Number of samples.
    pub n_samples: usize,
}

impl PcConfig {
    /// `n_steps` steps, no correction, `eps = 1e-3`, denoising on, `n_samples` samples.
    pub fn new(n_steps: usize, n_samples: usize) -> Self {
        Self {
            n_steps,
            corrector_steps: 0,
            eps: 1e-3,
            denoise: true,
            n_samples,
        }
    }
}

/// Samples and the number of score evaluations per sample.
#[derive(Clone, Debug)]
pub struct Samples {
    /// The samples as rows.
    pub x: Array2<f64>,
    /// Score evaluations (network calls) per sample.
    pub nfe: usize,
}

// ANCHOR: pc_grid
/// The time grid `t_i = T - i (T - eps)/(N - 1)`, `i = 0..N-1` (`linspace(T, eps, N)`), closed
/// by `t_N = 0`: step `i` moves from `t_i` to `t_{i+1}` and is level `N - 1 - i` of the
/// discrete chain.
pub fn time_grid(t_end: f64, eps: f64, n_steps: usize) -> Result<Vec<f64>> {
    if n_steps < 2 {
        return Err(Error::param("n_steps", format!("{n_steps} < 2")));
    }
    if !(eps.is_finite() && eps > 0.0 && eps < t_end) {
        return Err(Error::param(
            "eps",
            format!("must lie in (0, T) = (0, {t_end}), got {eps}"),
        ));
    }
    let h = (t_end - eps) / (n_steps - 1) as f64;
    let mut g: Vec<f64> = (0..n_steps).map(|i| t_end - i as f64 * h).collect();
    g[n_steps - 1] = eps;
    g.push(0.0);
    Ok(g)
}
// ANCHOR_END: pc_grid

// ANCHOR: pc_sample
/// Predictor-corrector sampling of `sde` with `model` (any pairing, any number of corrector
/// steps). Errors: a bad configuration, a shape mismatch, a non-finite score.
pub fn pc_sample(
    sde: &dyn Sde,
    model: &dyn ScoreModel,
    predictor: &dyn Predictor,
    corrector: &dyn Corrector,
    cfg: PcConfig,
    noise: &mut dyn NoiseSource,
    progress: &mut dyn Progress,
) -> Result<Samples> {
    if cfg.n_samples == 0 {
        return Err(Error::param("n_samples", "need at least one sample"));
    }
    let grid = time_grid(sde.t_end(), cfg.eps, cfg.n_steps)?;
    let rsde = ReverseSde::new(sde, model);
    let mut x = sde.prior_sample(noise, cfg.n_samples, model.dim());
    let mut mean = x.clone();
    for i in 0..cfg.n_steps {
        let step = Step {
            t: grid[i],
            dt: grid[i] - grid[i + 1],
            level: cfg.n_steps - 1 - i,
            n_levels: cfg.n_steps,
        };
        for _ in 0..cfg.corrector_steps {
            x = corrector.step(&rsde, x.view(), step, noise)?.0;
        }
        (x, mean) = predictor.step(&rsde, x.view(), step, noise)?;
        progress.step(i + 1, cfg.n_steps);
    }
    let nfe = cfg.n_steps * (predictor.nfe() + cfg.corrector_steps * corrector.nfe());
    Ok(Samples {
        x: if cfg.denoise { mean } else { x },
        nfe,
    })
}
// ANCHOR_END: pc_sample
