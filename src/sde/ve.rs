//! The variance-exploding SDE `dx = sqrt(d sigma²/dt) dw` (ledger D9; 003 eq. 9) with a
//! geometric `sigma(t)`, the continuous limit of the SMLD chain (ledger D8; 003 eq. 8).

use super::{check_time, level_index, level_time, Sde};
use crate::error::{Error, Result};
use crate::schedule::continuous::GeometricSigma;
use ndarray::{Array2, ArrayView2};

/// The VE SDE with a geometric `sigma(t)` and a default of `n` noise levels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VeSde {
    sigma: GeometricSigma,
    n: usize,
}

impl VeSde {
    /// A VE SDE with `n >= 2` levels.
    pub fn new(sigma: GeometricSigma, n: usize) -> Result<Self> {
        if n < 2 {
            return Err(Error::param("n_steps", format!("{n} < 2 noise levels")));
        }
        Ok(Self { sigma, n })
    }

    /// The schedule.
    pub fn sigma(&self) -> &GeometricSigma {
        &self.sigma
    }

    /// The SMLD noise level `sigma_k = sigma(t_k)` of level `k` of an `n`-level chain; the
    /// chain's `sigma_{-1}` is 0 (003 eq. 8 writes `sigma_0 = 0` with 1-based levels).
    pub fn discrete_sigma(&self, k: usize, n: usize) -> f64 {
        self.sigma.sigma(level_time(k, n, self.t_end()))
    }
}

impl Default for VeSde {
    /// `sigma` from 0.01 to 50, `n = 1000`.
    fn default() -> Self {
        Self {
            sigma: GeometricSigma::default(),
            n: 1000,
        }
    }
}

// ANCHOR: ve
impl Sde for VeSde {
    fn n(&self) -> usize {
        self.n
    }

    fn drift_coef(&self, t: f64) -> Result<f64> {
        check_time(t, 1.0)?;
        Ok(0.0)
    }

    /// `g(t) = sqrt(d sigma²/dt) = sigma(t) sqrt(2 ln(sigma_max / sigma_min))`.
    fn diffusion(&self, t: f64) -> Result<f64> {
        Ok(self.sigma.d_sigma2_dt(check_time(t, 1.0)?).sqrt())
    }

    fn mean_scale(&self, t: f64) -> Result<f64> {
        check_time(t, 1.0)?;
        Ok(1.0)
    }

    /// `sqrt(sigma(t)² - sigma(0)²)`, the exact kernel of eq. 9 started at `x(0)` (ledger D29).
    fn marginal_std(&self, t: f64) -> Result<f64> {
        let t = check_time(t, 1.0)?;
        // sigma(t)² - sigma_min² = sigma_min² (exp(2 t ln r) - 1), without cancellation.
        let s0 = self.sigma.sigma_min();
        Ok(s0 * (2.0 * t * self.sigma.log_ratio()).exp_m1().sqrt())
    }

    /// `sigma_max`.
    fn prior_std(&self) -> f64 {
        self.sigma.sigma_max()
    }

    /// The SMLD step into level `k` nearest `t`: `F = 0`, `G = sqrt(sigma_k² - sigma_{k-1}²)`
    /// with `sigma_{-1} = 0`, so level `k` has total variance exactly `sigma_k²`.
    fn discretize(&self, x: ArrayView2<f64>, t: f64, n_steps: usize) -> Result<(Array2<f64>, f64)> {
        let k = level_index(t, self.t_end(), n_steps)?;
        let s = self.discrete_sigma(k, n_steps);
        let prev = if k == 0 {
            0.0
        } else {
            self.discrete_sigma(k - 1, n_steps)
        };
        Ok((Array2::zeros(x.raw_dim()), (s * s - prev * prev).sqrt()))
    }
}
// ANCHOR_END: ve
