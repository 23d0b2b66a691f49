//! The variance-exploding SDE `dx = sqrt(d sigma²/dt) dw` (ledger D9; 003 eq. 9) with a
//! geometric `sigma(t)`, the continuous limit of the SMLD chain (ledger D8; 003 eq. 8).

use super::{check_level, check_time, level_index_with, level_time, LevelRounding, Sde};
use crate::error::{Error, Result};
use crate::schedule::continuous::GeometricSigma;
use ndarray::{Array2, ArrayView2};

/// Which standard deviation the VE kernel reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KernelStd {
    /// `sqrt(sigma(t)² - sigma_min²)`, the exact kernel of eq. 9 started at `x(0)` (default).
    #[default]
    Exact,
    /// The noise level `sigma(t) = sigma_min r^t` itself, as score_sde's `marginal_prob`
    /// returns; relative difference `sigma_min² / (2 sigma(t)²)`, large near `t = 0`.
    NoiseLevel,
}

/// The VE SDE with a geometric `sigma(t)` and a default of `n` noise levels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VeSde {
    sigma: GeometricSigma,
    n: usize,
    rounding: LevelRounding,
    kernel_std: KernelStd,
}

impl VeSde {
    /// A VE SDE with `n >= 2` levels.
    pub fn new(sigma: GeometricSigma, n: usize) -> Result<Self> {
        if n < 2 {
            return Err(Error::param("n_steps", format!("{n} < 2 noise levels")));
        }
        Ok(Self {
            sigma,
            n,
            rounding: LevelRounding::Nearest,
            kernel_std: KernelStd::Exact,
        })
    }

    /// How [`Sde::discretize`] maps a time to a level: [`LevelRounding::Nearest`] (default) or
    /// [`LevelRounding::Floor`], score_sde's truncation (book: peers chapter).
    pub fn with_rounding(mut self, rounding: LevelRounding) -> Self {
        self.rounding = rounding;
        self
    }

    /// Which std [`Sde::marginal_std`] (and so [`Sde::level`], the score model's level, training
    /// targets and the annealed-Langevin step) uses: [`KernelStd::Exact`] (default) or
    /// [`KernelStd::NoiseLevel`], score_sde's `marginal_prob` (book: peers chapter).
    pub fn with_kernel_std(mut self, kernel_std: KernelStd) -> Self {
        self.kernel_std = kernel_std;
        self
    }

    /// The level rounding rule.
    pub fn rounding(&self) -> LevelRounding {
        self.rounding
    }

    /// The kernel std convention.
    pub fn kernel_std(&self) -> KernelStd {
        self.kernel_std
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
            rounding: LevelRounding::Nearest,
            kernel_std: KernelStd::Exact,
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

    /// `sqrt(sigma(t)² - sigma(0)²)`, the exact kernel of eq. 9 started at `x(0)` (ledger D29);
    /// `sigma(t)` with [`KernelStd::NoiseLevel`].
    fn marginal_std(&self, t: f64) -> Result<f64> {
        let t = check_time(t, 1.0)?;
        if self.kernel_std == KernelStd::NoiseLevel {
            return Ok(self.sigma.sigma(t));
        }
        // sigma(t)² - sigma_min² = sigma_min² (exp(2 t ln r) - 1), without cancellation.
        let s0 = self.sigma.sigma_min();
        Ok(s0 * (2.0 * t * self.sigma.log_ratio()).exp_m1().sqrt())
    }

    /// `sigma_max`.
    fn prior_std(&self) -> f64 {
        self.sigma.sigma_max()
    }

    /// The SMLD step into level `k` nearest `t` (or below `t`, see [`VeSde::with_rounding`]): `F = 0`, `G = sqrt(sigma_k² - sigma_{k-1}²)`
    /// with `sigma_{-1} = 0`, so level `k` has total variance exactly `sigma_k²`.
    fn discretize(&self, x: ArrayView2<f64>, t: f64, n_steps: usize) -> Result<(Array2<f64>, f64)> {
        let k = level_index_with(t, self.t_end(), n_steps, self.rounding)?;
        self.discretize_level(x, t, k, n_steps)
    }

    /// The SMLD step into level `level` itself (`t` is not used).
    fn discretize_level(
        &self,
        x: ArrayView2<f64>,
        _t: f64,
        level: usize,
        n_steps: usize,
    ) -> Result<(Array2<f64>, f64)> {
        check_level(level, n_steps)?;
        let k = level;
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
