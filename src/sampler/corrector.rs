//! Correctors: score-based MCMC steps that leave the current marginal `p_t` (approximately)
//! invariant, run after a predictor has moved the state to `t` (003 §4.2, ledger Dc40, Ac46).
//!
//! Adding a corrector: one struct and one `impl Corrector`.

use super::predictor::{finite, level_alpha, normals, Step};
use crate::error::{Error, Result};
use crate::rng::NoiseSource;
use crate::sde::ReverseSde;
use ndarray::{Array2, ArrayView2, Axis};

/// One MCMC step targeting `p_t`.
pub trait Corrector {
    /// A short name for reports.
    fn name(&self) -> &'static str;
    /// Score evaluations per step.
    fn nfe(&self) -> usize {
        1
    }
    /// One step at `step.t` (`step.dt` is unused); returns `(x, mean)`.
    fn step(
        &self,
        rsde: &ReverseSde,
        x: ArrayView2<f64>,
        step: Step,
        noise: &mut dyn NoiseSource,
    ) -> Result<(Array2<f64>, Array2<f64>)>;
}

fn check_positive(name: &'static str, v: f64) -> Result<f64> {
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(Error::param(
            name,
            format!("must be finite and > 0, got {v}"),
        ))
    }
}

/// Mean over the rows of the row norms.
fn mean_row_norm(a: &Array2<f64>) -> f64 {
    a.map_axis(Axis(1), |r| r.dot(&r).sqrt())
        .mean()
        .unwrap_or(0.0)
}

// ANCHOR: langevin_snr
/// Langevin corrector with the signal-to-noise step size of Song et al. 2021 (their Algorithms
/// 4-5; not printed in the documents): with `s = s(x, t)` and fresh `z ~ N(0, I)`,
/// `ε = 2 alpha_i (r ‖z‖ / ‖s‖)²`, `x_mean = x + ε s`, `x = x_mean + sqrt(2 ε) z`, where
/// `‖·‖` is the batch mean of the per-sample norms (as in the paper's code), `r` the target
/// signal-to-noise ratio `‖ε s‖ / ‖sqrt(2ε) z‖ = r sqrt(2 alpha_i)`, and `alpha_i = 1 - beta_i`
/// for VP (1 for VE). Its Langevin form `x + ε s + sqrt(2ε) z` is 003 eq. 2 (ledger D2).
/// [`LangevinCorrector::with_norm`]`(`[`StepNorm::PerSample`]`)` gives each sample its own `ε`.
#[derive(Clone, Copy, Debug)]
pub struct LangevinCorrector {
    snr: f64,
    norm: StepNorm,
}

/// Which norms set the Langevin corrector's step size `ε = 2 alpha (r ‖z‖ / ‖s‖)²`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StepNorm {
    /// `‖·‖` is the batch mean of the per-sample norms: one `ε` for the whole batch, so a
    /// sample's update depends on the other samples (score_sde's code; the default).
    #[default]
    BatchMean,
    /// Each sample's own norms and its own `ε`: the samples are independent chains
    /// (Algorithm 5 of Song et al. 2021 written for one sample).
    PerSample,
}

impl LangevinCorrector {
    /// With signal-to-noise ratio `snr > 0` (the paper uses 0.16 for VE, 0.01-0.17 otherwise).
    pub fn new(snr: f64) -> Result<Self> {
        Ok(Self {
            snr: check_positive("snr", snr)?,
            norm: StepNorm::BatchMean,
        })
    }

    /// Chooses the norms of the step size (default [`StepNorm::BatchMean`]).
    pub fn with_norm(mut self, norm: StepNorm) -> Self {
        self.norm = norm;
        self
    }
}

impl Corrector for LangevinCorrector {
    fn name(&self) -> &'static str {
        "langevin"
    }
    fn step(
        &self,
        rsde: &ReverseSde,
        x: ArrayView2<f64>,
        step: Step,
        noise: &mut dyn NoiseSource,
    ) -> Result<(Array2<f64>, Array2<f64>)> {
        let s = finite(rsde.score(x, step.t)?, "the score")?;
        let z = normals(noise, x.dim());
        let alpha = level_alpha(rsde.sde(), step)?;
        if self.norm == StepNorm::PerSample {
            let mut mean = x.to_owned();
            let mut out = x.to_owned();
            for (i, (si, zi)) in s.outer_iter().zip(z.outer_iter()).enumerate() {
                let (sn, zn) = (si.dot(&si).sqrt(), zi.dot(&zi).sqrt());
                if sn == 0.0 {
                    continue;
                }
                let eps = 2.0 * alpha * (self.snr * zn / sn).powi(2);
                let mut m = mean.row_mut(i);
                m.scaled_add(eps, &si);
                let mut o = out.row_mut(i);
                o.assign(&m);
                o.scaled_add((2.0 * eps).sqrt(), &zi);
            }
            return Ok((out, mean));
        }
        let (sn, zn) = (mean_row_norm(&s), mean_row_norm(&z));
        if sn == 0.0 {
            return Ok((x.to_owned(), x.to_owned()));
        }
        let eps = 2.0 * alpha * (self.snr * zn / sn).powi(2);
        let mean = &x + &(s * eps);
        let x = &mean + &(z * (2.0 * eps).sqrt());
        Ok((x, mean))
    }
}
// ANCHOR_END: langevin_snr

// ANCHOR: annealed_corrector
/// The annealed-Langevin corrector (SMLD's step inside PC, ledger Dc41): at time `t` with kernel
/// standard deviation `sigma(t)`, `alpha = eps sigma(t)² / sigma_ref²` and
/// `x <- x + alpha s + sqrt(2 alpha) z` (the step rule `alpha_i = eps sigma_i²/sigma_L²` is
/// from Song & Ermon 2019, not printed in 003).
#[derive(Clone, Copy, Debug)]
pub struct AnnealedLangevinCorrector {
    eps: f64,
    sigma_ref: f64,
}

impl AnnealedLangevinCorrector {
    /// Step `eps > 0` at the reference level `sigma_ref > 0` (SMLD's `sigma_L`).
    pub fn new(eps: f64, sigma_ref: f64) -> Result<Self> {
        Ok(Self {
            eps: check_positive("eps", eps)?,
            sigma_ref: check_positive("sigma_ref", sigma_ref)?,
        })
    }
}

impl Corrector for AnnealedLangevinCorrector {
    fn name(&self) -> &'static str {
        "annealed-langevin"
    }
    fn step(
        &self,
        rsde: &ReverseSde,
        x: ArrayView2<f64>,
        step: Step,
        noise: &mut dyn NoiseSource,
    ) -> Result<(Array2<f64>, Array2<f64>)> {
        let sd = rsde.sde().marginal_std(step.t)?;
        let alpha = self.eps * (sd / self.sigma_ref).powi(2);
        let s = finite(rsde.score(x, step.t)?, "the score")?;
        let mean = &x + &(s * alpha);
        let x = &mean + &(normals(noise, x.dim()) * (2.0 * alpha).sqrt());
        Ok((x, mean))
    }
}
// ANCHOR_END: annealed_corrector

/// No correction.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoneCorrector;

impl Corrector for NoneCorrector {
    fn name(&self) -> &'static str {
        "none"
    }
    fn nfe(&self) -> usize {
        0
    }
    fn step(
        &self,
        _rsde: &ReverseSde,
        x: ArrayView2<f64>,
        _step: Step,
        _noise: &mut dyn NoiseSource,
    ) -> Result<(Array2<f64>, Array2<f64>)> {
        Ok((x.to_owned(), x.to_owned()))
    }
}
