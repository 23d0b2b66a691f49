//! Score models: anything that returns the score `∇_x log p_t(x)` of a perturbed data
//! distribution. Exact analytic models (a Gaussian mixture under any linear forward process)
//! and trained networks implement the same trait, so every sampler can be proven on the exact
//! score before a network is trained.

use crate::error::Result;
use crate::gaussian::GaussianMixture;
use ndarray::{Array1, Array2, ArrayView2};

/// Where on a forward process a score is evaluated.
///
/// A linear forward process perturbs data as `x_t = scale * x_0 + std * z` with `z ~ N(0, I)`.
/// Networks read `t` (their conditioning input: continuous time, a discrete step index as
/// `f64`, or the noise level sigma for NCSN); exact models read `scale` and `std`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Level {
    /// The model's time input.
    pub t: f64,
    /// Mean scale s(t) of the perturbation kernel.
    pub scale: f64,
    /// Standard deviation sigma(t) of the perturbation kernel.
    pub std: f64,
}

/// A model of the score of the perturbed data distribution.
pub trait ScoreModel: Sync {
    /// Dimension of one data point.
    fn dim(&self) -> usize;
    /// The score at each row of `x` (shape `n × dim`), at the given level.
    fn score(&self, x: ArrayView2<f64>, level: Level) -> Array2<f64>;
}

// ANCHOR: mixture_score
/// The exact oracle: the score of a Gaussian-mixture data distribution pushed through the
/// linear forward process `x_t = scale · x_0 + std · z`. The perturbed law is again a mixture,
/// `Σ_k w_k N(scale μ_k, scale² Σ_k + std² I)` ([`GaussianMixture::perturbed`]), so its score
/// and log-density are exact at every level.
#[derive(Clone, Debug, PartialEq)]
pub struct MixtureScore {
    /// The data distribution `p_0`.
    pub mixture: GaussianMixture,
}

impl MixtureScore {
    /// The oracle of `mixture`.
    pub fn new(mixture: GaussianMixture) -> Self {
        Self { mixture }
    }

    /// The exact perturbed score at each row, or the error (shape mismatch, non-finite or
    /// degenerate level such as `scale = std = 0`).
    pub fn try_score(&self, x: ArrayView2<f64>, level: Level) -> Result<Array2<f64>> {
        self.mixture
            .perturbed(level.scale, level.std)?
            .score_batch(x)
    }

    /// The exact perturbed log-density `ln p_t(x)` at each row.
    pub fn log_density(&self, x: ArrayView2<f64>, level: Level) -> Result<Array1<f64>> {
        self.mixture
            .perturbed(level.scale, level.std)?
            .log_density_batch(x)
    }
}

impl ScoreModel for MixtureScore {
    fn dim(&self) -> usize {
        self.mixture.dim()
    }

    /// The exact perturbed score. The trait cannot report an error, so a level that makes the
    /// perturbed law degenerate (or a wrongly shaped `x`) yields an `n × dim` array of NaN,
    /// which samplers reject as [`crate::Error::NonFinite`]; use [`MixtureScore::try_score`] for the
    /// typed error.
    fn score(&self, x: ArrayView2<f64>, level: Level) -> Array2<f64> {
        match self.try_score(x, level) {
            Ok(s) => s,
            Err(_) => Array2::from_elem((x.nrows(), self.dim()), f64::NAN),
        }
    }
}
// ANCHOR_END: mixture_score
