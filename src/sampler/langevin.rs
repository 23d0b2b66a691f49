//! Annealed Langevin dynamics (SMLD; Song & Ermon 2019 Algorithm 1, 000 Fig. 1.3, ledger
//! Ac24, D2, Dc15): for each noise level `sigma_1 > ... > sigma_L` in turn, `T` Langevin steps
//! `x <- x + alpha_i s(x, sigma_i) + sqrt(2 alpha_i) z` with `alpha_i = eps sigma_i² / sigma_L²`,
//! started from `x ~ N(0, sigma_1² I)`.
//!
//! Step convention: this is 003 eq. 2 and NCSNv2's form, the one eq. 1.17's step-size rule
//! ([`crate::ncsn::langevin_step_size`]) is derived for. 000 Fig. 1.3 (Song & Ermon 2019) writes
//! `x + (alpha_i/2) s + sqrt(alpha_i) z`: the same chain with every `alpha_i` doubled, so its
//! `eps` is twice this one. The rule `alpha_i ∝ sigma_i²` is from Song & Ermon 2019; 000
//! prints it in the figure, 003 does not.

use super::predictor::{finite, normals};
use super::Progress;
use crate::error::{Error, Result};
use crate::rng::NoiseSource;
use crate::schedule::sigma::SigmaSequence;
use crate::score::{Level, ScoreModel};
use ndarray::Array2;

/// Settings of [`annealed_langevin`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LangevinConfig {
    /// Langevin steps `T >= 1` per noise level.
    pub steps_per_level: usize,
    /// The step `eps > 0` at the smallest level.
    pub eps: f64,
    /// Number of samples.
    pub n_samples: usize,
    /// Finish with the denoising step `x + sigma_L² s(x, sigma_L)` (Tweedie's posterior mean of
    /// the clean data given the last level; NCSNv2's option).
    pub denoise: bool,
}

// ANCHOR: annealed_langevin
/// Annealed Langevin sampling with `model` called at `Level { t: sigma_i, scale: 1, std:
/// sigma_i }` (so a noise-conditional network reads `sigma_i` as its input).
pub fn annealed_langevin(
    model: &dyn ScoreModel,
    sigmas: &SigmaSequence,
    cfg: LangevinConfig,
    noise: &mut dyn NoiseSource,
    progress: &mut dyn Progress,
) -> Result<Array2<f64>> {
    if cfg.steps_per_level == 0 {
        return Err(Error::param("steps_per_level", "must be at least 1"));
    }
    if !(cfg.eps.is_finite() && cfg.eps > 0.0) {
        return Err(Error::param(
            "eps",
            format!("must be finite and > 0, got {}", cfg.eps),
        ));
    }
    if cfg.n_samples == 0 {
        return Err(Error::param("n_samples", "need at least one sample"));
    }
    let d = model.dim();
    let sl = sigmas.sigma_min();
    let mut x = normals(noise, (cfg.n_samples, d)) * sigmas.sigma_max();
    let total = sigmas.len() * cfg.steps_per_level;
    let mut done = 0;
    for &si in sigmas.as_slice() {
        let level = Level {
            t: si,
            scale: 1.0,
            std: si,
        };
        let alpha = cfg.eps * (si / sl).powi(2);
        for _ in 0..cfg.steps_per_level {
            let s = finite(model.score(x.view(), level), "the score")?;
            check_shape(&s, &x)?;
            let z = normals(noise, x.dim());
            x = &x + &(s * alpha) + &(z * (2.0 * alpha).sqrt());
            done += 1;
            progress.step(done, total);
        }
    }
    if cfg.denoise {
        let level = Level {
            t: sl,
            scale: 1.0,
            std: sl,
        };
        let s = finite(model.score(x.view(), level), "the score")?;
        check_shape(&s, &x)?;
        x = &x + &(s * (sl * sl));
    }
    Ok(x)
}
// ANCHOR_END: annealed_langevin

fn check_shape(s: &Array2<f64>, x: &Array2<f64>) -> Result<()> {
    if s.dim() == x.dim() {
        Ok(())
    } else {
        Err(Error::Shape(format!(
            "score of shape {:?} for points of shape {:?}",
            s.dim(),
            x.dim()
        )))
    }
}
