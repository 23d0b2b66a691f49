//! DDPM ancestral sampling (Ho et al. Algorithm 2; ledger Ac10, D4; 000 fig. 1.2, 003 eq. 4).
//!
//! From `x_T ~ N(0, I)`, for `t = T, ..., 1`:
//! `x_{t-1} = (x_t - beta_t / sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_t) + sigma_t z`, `z = 0` at
//! `t = 1`, with `eps = -sqrt(1 - alpha_bar_t) score` and `sigma_t^2` either `beta_t` or the
//! posterior variance `beta_tilde_t` ([`ReverseVariance`]).

use ndarray::{Array2, ArrayView2, Zip};

use crate::error::{Error, Result};
use crate::rng::NoiseSource;
use crate::sampler::Progress;
use crate::schedule::beta::BetaSchedule;
use crate::score::{Level, ScoreModel};

/// The variance `sigma_t^2` of the reverse step `p(x_{t-1} | x_t)` (ledger Ac06).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReverseVariance {
    /// `sigma_t^2 = beta_t`: exact when the data are `N(0, I)`.
    Beta,
    /// `sigma_t^2 = beta_tilde_t = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) beta_t`: exact when the
    /// data are a single point.
    Posterior,
}

/// The noise `eps = -std * score` predicted at `level`, rejecting non-finite model output and
/// a wrongly shaped result.
pub(crate) fn eps_at(
    model: &dyn ScoreModel,
    x: ArrayView2<f64>,
    level: Level,
) -> Result<Array2<f64>> {
    let score = model.score(x, level);
    if score.dim() != x.dim() {
        return Err(Error::Shape(format!(
            "the model returned {:?} for input {:?}",
            score.dim(),
            x.dim()
        )));
    }
    if score.iter().any(|v| !v.is_finite()) {
        return Err(Error::NonFinite(format!(
            "model output at t = {} (scale {}, std {})",
            level.t, level.scale, level.std
        )));
    }
    Ok(score.mapv(|g| -level.std * g))
}

/// Standard normal noise shaped like `(n, d)`.
pub(crate) fn normal_array(n: usize, d: usize, noise: &mut dyn NoiseSource) -> Array2<f64> {
    let mut z = Array2::zeros((n, d));
    noise.fill_normal(z.as_slice_mut().expect("fresh arrays are contiguous"));
    z
}

/// Checks that `x` has the model's dimension and finite entries.
pub(crate) fn check_start(model: &dyn ScoreModel, x: ArrayView2<f64>) -> Result<()> {
    if x.ncols() != model.dim() {
        return Err(Error::Shape(format!(
            "points have {} columns, the model {}",
            x.ncols(),
            model.dim()
        )));
    }
    if x.iter().any(|v| !v.is_finite()) {
        return Err(Error::NonFinite("the starting points".into()));
    }
    Ok(())
}

/// Validates an optional clipping bound: finite and `> 0`.
pub(crate) fn check_clip(clip: Option<f64>) -> Result<Option<f64>> {
    match clip {
        Some(c) if !(c.is_finite() && c > 0.0) => Err(Error::param(
            "clip",
            format!("bound {c} must be finite and > 0"),
        )),
        _ => Ok(clip),
    }
}

/// The DDPM ancestral sampler over a beta schedule.
#[derive(Clone, Debug, PartialEq)]
pub struct DdpmSampler {
    schedule: BetaSchedule,
    variance: ReverseVariance,
    clip: Option<f64>,
}

impl DdpmSampler {
    /// The sampler over `schedule` with reverse variance `variance` and no clipping.
    pub fn new(schedule: BetaSchedule, variance: ReverseVariance) -> Self {
        Self {
            schedule,
            variance,
            clip: None,
        }
    }

    /// Clip the predicted `x_0` to `[-bound, bound]` before forming the posterior mean, as the
    /// peers do for image data in `[-1, 1]` (off by default; `None` turns it off). Errors:
    /// a bound that is not finite and positive.
    pub fn with_clip(mut self, bound: Option<f64>) -> Result<Self> {
        self.clip = check_clip(bound)?;
        Ok(self)
    }

    /// The schedule.
    pub fn schedule(&self) -> &BetaSchedule {
        &self.schedule
    }

    /// `sigma_t^2` of the reverse step at `t = 1..=T`.
    pub fn sigma2(&self, t: usize) -> Result<f64> {
        match self.variance {
            ReverseVariance::Beta => self.schedule.beta(t),
            ReverseVariance::Posterior => self.schedule.posterior_variance(t),
        }
    }

    // ANCHOR: ddpm_step
    /// One reverse step `x_t -> x_{t-1}` (`t = 1..=T`); no noise is added at `t = 1`.
    ///
    /// Without clipping the mean is Algorithm 2's `(x_t - beta_t/sqrt(1-alpha_bar_t) eps)/sqrt(alpha_t)`
    /// (ledger A1.9); with clipping it is the posterior mean (ledger A1.7) at the clipped
    /// `x0_hat = (x_t - sqrt(1-alpha_bar_t) eps)/sqrt(alpha_bar_t)`.
    pub fn step(
        &self,
        model: &dyn ScoreModel,
        x: ArrayView2<f64>,
        t: usize,
        noise: &mut dyn NoiseSource,
    ) -> Result<Array2<f64>> {
        let sch = &self.schedule;
        let level = sch.level(t)?;
        let beta = sch.beta(t)?;
        let eps = eps_at(model, x, level)?;
        let mut mean = match self.clip {
            None => {
                let (a, b) = (1.0 / (1.0 - beta).sqrt(), beta / level.std);
                Zip::from(&x)
                    .and(&eps)
                    .map_collect(|&x, &e| a * (x - b * e))
            }
            Some(c) => {
                let (c0, ct) = (
                    sch.posterior_mean_coef_x0(t)?,
                    sch.posterior_mean_coef_xt(t)?,
                );
                Zip::from(&x).and(&eps).map_collect(|&x, &e| {
                    let x0 = ((x - level.std * e) / level.scale).clamp(-c, c);
                    c0 * x0 + ct * x
                })
            }
        };
        if t > 1 {
            let sigma = self.sigma2(t)?.sqrt();
            let z = normal_array(x.nrows(), x.ncols(), noise);
            mean.zip_mut_with(&z, |m, &z| *m += sigma * z);
        }
        Ok(mean)
    }
    // ANCHOR_END: ddpm_step

    /// Runs the chain from `x_T` (given) down to `x_0`, reporting each of the `T` steps.
    pub fn sample_from(
        &self,
        model: &dyn ScoreModel,
        x_t: Array2<f64>,
        noise: &mut dyn NoiseSource,
        progress: &mut dyn Progress,
    ) -> Result<Array2<f64>> {
        check_start(model, x_t.view())?;
        let big_t = self.schedule.steps();
        let mut x = x_t;
        for (done, t) in (1..=big_t).rev().enumerate() {
            x = self.step(model, x.view(), t, noise)?;
            progress.step(done + 1, big_t);
        }
        Ok(x)
    }

    /// `n` samples: `x_T ~ N(0, I)` from `noise`, then [`DdpmSampler::sample_from`].
    pub fn sample(
        &self,
        model: &dyn ScoreModel,
        n: usize,
        noise: &mut dyn NoiseSource,
        progress: &mut dyn Progress,
    ) -> Result<Array2<f64>> {
        let x = normal_array(n, model.dim(), noise);
        self.sample_from(model, x, noise, progress)
    }
}
