//! The sub-VP SDE `dx = -½ beta(t) x dt + sqrt(beta(t) (1 - exp(-2 B(t)))) dw` (ledger D12; 003
//! eq. 12), whose kernel variance never exceeds the VP one. It has no chain of its own and uses
//! the default Euler-Maruyama discretisation.

use super::{check_time, Sde};
use crate::error::{Error, Result};
use crate::schedule::continuous::LinearBeta;

/// The sub-VP SDE with a linear `beta(t)` and a default of `n` discretisation steps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SubVpSde {
    beta: LinearBeta,
    n: usize,
}

impl SubVpSde {
    /// A sub-VP SDE with `n >= 1` steps.
    pub fn new(beta: LinearBeta, n: usize) -> Result<Self> {
        if n == 0 {
            return Err(Error::param("n_steps", "must be at least 1"));
        }
        Ok(Self { beta, n })
    }

    /// The schedule.
    pub fn beta(&self) -> &LinearBeta {
        &self.beta
    }
}

impl Default for SubVpSde {
    /// `beta` from 0.1 to 20, `n = 1000`, as for VP.
    fn default() -> Self {
        Self {
            beta: LinearBeta::default(),
            n: 1000,
        }
    }
}

// ANCHOR: subvp
impl Sde for SubVpSde {
    fn n(&self) -> usize {
        self.n
    }

    fn drift_coef(&self, t: f64) -> Result<f64> {
        Ok(-0.5 * self.beta.beta(check_time(t, 1.0)?))
    }

    /// `g(t) = sqrt(beta(t) (1 - exp(-2 B(t))))`.
    fn diffusion(&self, t: f64) -> Result<f64> {
        let t = check_time(t, 1.0)?;
        let one_minus = -(-2.0 * self.beta.integral(t)).exp_m1();
        Ok((self.beta.beta(t) * one_minus).sqrt())
    }

    /// `s(t) = exp(-½ B(t))`, as for VP.
    fn mean_scale(&self, t: f64) -> Result<f64> {
        Ok((-0.5 * self.beta.integral(check_time(t, 1.0)?)).exp())
    }

    /// `sigma(t) = 1 - exp(-B(t))`: the variance is its square (ledger D29).
    fn marginal_std(&self, t: f64) -> Result<f64> {
        Ok(-(-self.beta.integral(check_time(t, 1.0)?)).exp_m1())
    }

    fn prior_std(&self) -> f64 {
        1.0
    }
}
// ANCHOR_END: subvp
