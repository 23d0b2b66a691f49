//! ILVR, iterative latent variable refinement (001 §ILVR; ledger Bc17, Bc18, Bc19), and why
//! noising destroys high frequencies first (001 §SDEdit; ledger Bc15).
//!
//! ILVR keeps the low frequencies of a reference `y`: with a low-pass filter
//! `φ_N = up_N ∘ down_N`, each unconditional proposal `x'_{t-1}` is corrected to
//! `x_{t-1} = x'_{t-1} + φ_N(y_{t-1}) - φ_N(x'_{t-1})`, where `y_{t-1}` is `y` noised to
//! `t - 1`. Signals here are 1-D (rows of length `n`, `n` a multiple of `N`); an image is the
//! same with 2-D blocks.

use super::predict_then_project;
use crate::error::{Error, Result};
use crate::rng::NoiseSource;
use crate::sampler::pc::{PcConfig, Samples};
use crate::sampler::predictor::{normals, Predictor};
use crate::sampler::Progress;
use crate::score::ScoreModel;
use crate::sde::Sde;
use ndarray::{Array1, Array2, ArrayView1, ArrayView2};

/// How a block of `N` samples becomes one and back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resampling {
    /// Down: the first sample of each block; up: repeat (nearest-neighbour interpolation).
    Nearest,
    /// Down: the block mean; up: repeat.
    BlockAverage,
}

// ANCHOR: low_pass
/// The low-pass filter `φ_N = up_N ∘ down_N` (ledger Bc17).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LowPass {
    factor: usize,
    resampling: Resampling,
}

impl LowPass {
    /// Downsampling by `factor >= 1`.
    pub fn new(factor: usize, resampling: Resampling) -> Result<Self> {
        if factor == 0 {
            return Err(Error::param("factor", "must be >= 1"));
        }
        Ok(Self { factor, resampling })
    }

    fn check(&self, n: usize) -> Result<()> {
        if n == 0 || !n.is_multiple_of(self.factor) {
            return Err(Error::Shape(format!(
                "signal length {n} is not a positive multiple of the factor {}",
                self.factor
            )));
        }
        Ok(())
    }

    /// `down_N(x)`, length `n / N`.
    pub fn down(&self, x: ArrayView1<f64>) -> Result<Array1<f64>> {
        self.check(x.len())?;
        let n = self.factor;
        Ok(Array1::from_shape_fn(x.len() / n, |b| {
            match self.resampling {
                Resampling::Nearest => x[b * n],
                Resampling::BlockAverage => (0..n).map(|i| x[b * n + i]).sum::<f64>() / n as f64,
            }
        }))
    }

    /// `up_N(y)`: each value repeated `N` times.
    pub fn up(&self, y: ArrayView1<f64>) -> Array1<f64> {
        Array1::from_shape_fn(y.len() * self.factor, |i| y[i / self.factor])
    }

    /// `φ_N(x) = up_N(down_N(x))`.
    pub fn apply(&self, x: ArrayView1<f64>) -> Result<Array1<f64>> {
        Ok(self.up(self.down(x)?.view()))
    }

    // ANCHOR: ilvr_step
    /// The ILVR correction of each row (ledger Bc18): `x' + φ_N(y) - φ_N(x')`, with `y` the
    /// matching row of `reference` (already noised to the proposal's time).
    pub fn ilvr_step(
        &self,
        proposal: ArrayView2<f64>,
        reference: ArrayView2<f64>,
    ) -> Result<Array2<f64>> {
        if proposal.dim() != reference.dim() {
            return Err(Error::Shape(format!(
                "proposal {:?} and reference {:?}",
                proposal.dim(),
                reference.dim()
            )));
        }
        let mut out = Array2::zeros(proposal.raw_dim());
        for ((p, r), mut o) in proposal
            .rows()
            .into_iter()
            .zip(reference.rows())
            .zip(out.rows_mut())
        {
            let (fp, fr) = (self.apply(p)?, self.apply(r)?);
            for i in 0..p.len() {
                o[i] = p[i] + fr[i] - fp[i];
            }
        }
        Ok(out)
    }
    // ANCHOR_END: ilvr_step
}
// ANCHOR_END: low_pass

// ANCHOR: ilvr_sample
/// ILVR sampling: predictor steps of the unconditional reverse SDE; after the step to `t'`,
/// each row is corrected with the reference noised to `t'`, `s(t') y + σ(t') z` (fresh `z`),
/// and with `y` itself after the last step (so `φ_N(x(0)) = φ_N(y)`).
#[allow(clippy::too_many_arguments)] // the pc sampler's arguments plus reference and filter
pub fn ilvr_sample(
    sde: &dyn Sde,
    model: &dyn ScoreModel,
    predictor: &dyn Predictor,
    reference: ArrayView1<f64>,
    filter: LowPass,
    cfg: PcConfig,
    noise: &mut dyn NoiseSource,
    progress: &mut dyn Progress,
) -> Result<Samples> {
    let d = model.dim();
    if reference.len() != d {
        return Err(Error::Shape(format!(
            "reference of length {} for a model of dimension {d}",
            reference.len()
        )));
    }
    filter.check(d)?;
    let out = predict_then_project(
        sde,
        model,
        predictor,
        &cfg,
        noise,
        progress,
        |x, t, noise| {
            let (s, sd) = (sde.mean_scale(t)?, sde.marginal_std(t)?);
            let y = normals(noise, (x.nrows(), x.ncols())) * sd + &(&reference * s);
            filter.ilvr_step(x.view(), y.view())
        },
    )?;
    let y = Array2::from_shape_fn(out.raw_dim(), |(_, j)| reference[j]);
    Ok(Samples {
        x: filter.ilvr_step(out.view(), y.view())?,
        nfe: cfg.n_steps * predictor.nfe(),
    })
}
// ANCHOR_END: ilvr_sample

// ANCHOR: haar
/// The orthonormal Haar analysis of `x` (length a multiple of `2^levels`) to depth `levels`:
/// each level maps the current approximation `a` to `(a_{2i} + a_{2i+1})/√2` (kept for the
/// next level) and `(a_{2i} - a_{2i+1})/√2` (details). Returns `(approximation, details)`,
/// details of the finest level first.
pub fn haar(x: ArrayView1<f64>, levels: u32) -> Result<(Array1<f64>, Vec<Array1<f64>>)> {
    let block = 1usize << levels;
    if x.is_empty() || !x.len().is_multiple_of(block) {
        return Err(Error::Shape(format!(
            "length {} is not a positive multiple of 2^{levels}",
            x.len()
        )));
    }
    let r = std::f64::consts::FRAC_1_SQRT_2;
    let mut a = x.to_owned();
    let mut details = Vec::with_capacity(levels as usize);
    for _ in 0..levels {
        let m = a.len() / 2;
        let next = Array1::from_shape_fn(m, |i| (a[2 * i] + a[2 * i + 1]) * r);
        details.push(Array1::from_shape_fn(m, |i| (a[2 * i] - a[2 * i + 1]) * r));
        a = next;
    }
    Ok((a, details))
}
// ANCHOR_END: haar

// ANCHOR: snr
/// The power spectrum of a stationary (circular) Gaussian process on `n` points with
/// autocovariance `c(k)`, `k = 0..n` (`c(k) = c(n - k)`): the eigenvalues of its circulant
/// covariance, `P(f) = Σ_k c(k) cos(2π f k / n)`, `f = 0..n`.
pub fn circulant_spectrum(autocov: &[f64]) -> Vec<f64> {
    let n = autocov.len();
    (0..n)
        .map(|f| {
            autocov
                .iter()
                .enumerate()
                .map(|(k, &c)| {
                    c * (2.0 * std::f64::consts::PI * ((f * k) % n) as f64 / n as f64).cos()
                })
                .sum()
        })
        .collect()
}

/// The per-frequency signal-to-noise ratio of `x_t = s x_0 + σ z` (ledger Bc15): the noise is
/// white (its spectrum is `σ²` at every frequency), so `SNR(f) = s² P(f) / σ²`.
pub fn snr_per_frequency(power: &[f64], scale: f64, std: f64) -> Vec<f64> {
    power
        .iter()
        .map(|&p| scale * scale * p / (std * std))
        .collect()
}
// ANCHOR_END: snr
