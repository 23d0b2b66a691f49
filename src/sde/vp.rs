//! The variance-preserving SDE `dx = -½ beta(t) x dt + sqrt(beta(t)) dw` (ledger D11; 003
//! eq. 11), the continuous limit of the DDPM chain (ledger D10; 003 eq. 10).

use super::{check_level, check_time, level_index_with, level_time, LevelRounding, Sde};
use crate::error::{Error, Result};
use crate::schedule::continuous::LinearBeta;
use ndarray::{Array2, ArrayView2};

/// The VP SDE with a linear `beta(t)` and a default of `n` discretisation levels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VpSde {
    beta: LinearBeta,
    n: usize,
    rounding: LevelRounding,
}

impl VpSde {
    /// A VP SDE; `n >= 2` levels and `beta_max / n < 1` so that every discrete `beta_i < 1`.
    pub fn new(beta: LinearBeta, n: usize) -> Result<Self> {
        check_levels(&beta, n)?;
        Ok(Self {
            beta,
            n,
            rounding: LevelRounding::Nearest,
        })
    }

    /// How [`Sde::discretize`] maps a time to a level: [`LevelRounding::Nearest`] (default) or
    /// [`LevelRounding::Floor`], score_sde's truncation (book: peers chapter).
    pub fn with_rounding(mut self, rounding: LevelRounding) -> Self {
        self.rounding = rounding;
        self
    }

    /// The level rounding rule.
    pub fn rounding(&self) -> LevelRounding {
        self.rounding
    }

    /// The schedule.
    pub fn beta(&self) -> &LinearBeta {
        &self.beta
    }

    /// The DDPM `beta_k = beta(t_k) / n` of level `k` of an `n`-level chain.
    pub fn discrete_beta(&self, k: usize, n: usize) -> f64 {
        self.beta.beta(level_time(k, n, self.t_end())) / n as f64
    }
}

/// `n >= 2` and `beta_max / n < 1`.
pub(crate) fn check_levels(beta: &LinearBeta, n: usize) -> Result<()> {
    if n < 2 {
        return Err(Error::param("n_steps", format!("{n} < 2 noise levels")));
    }
    if beta.beta_max() / n as f64 >= 1.0 {
        return Err(Error::InvalidSchedule(format!(
            "beta_max / n = {} / {n} >= 1: the discrete beta_i must be below 1",
            beta.beta_max()
        )));
    }
    Ok(())
}

impl Default for VpSde {
    /// `beta` from 0.1 to 20, `n = 1000` (the DDPM schedule 1e-4..0.02).
    fn default() -> Self {
        Self {
            beta: LinearBeta::default(),
            n: 1000,
            rounding: LevelRounding::Nearest,
        }
    }
}

// ANCHOR: vp
impl Sde for VpSde {
    fn n(&self) -> usize {
        self.n
    }

    fn drift_coef(&self, t: f64) -> Result<f64> {
        Ok(-0.5 * self.beta.beta(check_time(t, 1.0)?))
    }

    fn diffusion(&self, t: f64) -> Result<f64> {
        Ok(self.beta.beta(check_time(t, 1.0)?).sqrt())
    }

    /// `s(t) = exp(-½ B(t))`.
    fn mean_scale(&self, t: f64) -> Result<f64> {
        Ok((-0.5 * self.beta.integral(check_time(t, 1.0)?)).exp())
    }

    /// `sigma(t)² = 1 - exp(-B(t))`.
    fn marginal_std(&self, t: f64) -> Result<f64> {
        Ok((-(-self.beta.integral(check_time(t, 1.0)?)).exp_m1()).sqrt())
    }

    fn prior_std(&self) -> f64 {
        1.0
    }

    /// The DDPM step into level `k` nearest `t` (or below `t`, see [`VpSde::with_rounding`]): `x_k = sqrt(1 - beta_k) x_{k-1} + sqrt(beta_k) z`,
    /// i.e. `F = (sqrt(1 - beta_k) - 1) x`, `G = sqrt(beta_k)`, `beta_k = beta(t_k) / n`.
    fn discretize(&self, x: ArrayView2<f64>, t: f64, n_steps: usize) -> Result<(Array2<f64>, f64)> {
        let k = level_index_with(t, self.t_end(), n_steps, self.rounding)?;
        self.discretize_level(x, t, k, n_steps)
    }

    /// The DDPM step into level `level` itself (`t` is not used).
    fn discretize_level(
        &self,
        x: ArrayView2<f64>,
        _t: f64,
        level: usize,
        n_steps: usize,
    ) -> Result<(Array2<f64>, f64)> {
        check_levels(&self.beta, n_steps)?;
        check_level(level, n_steps)?;
        let b = self.discrete_beta(level, n_steps);
        let a = (1.0 - b).sqrt() - 1.0;
        Ok((x.mapv(|v| a * v), b.sqrt()))
    }
}
// ANCHOR_END: vp
