//! Score models: anything that returns the score `∇_x log p_t(x)` of a perturbed data
//! distribution. Exact analytic models (a Gaussian mixture under any linear forward process)
//! and trained networks implement the same trait, so every sampler can be proven on the exact
//! score before a network is trained.

use ndarray::{Array2, ArrayView2};

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
