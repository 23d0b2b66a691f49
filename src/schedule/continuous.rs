//! Continuous-time noise schedules for the score SDEs: the linear `beta(t)` of the VP and
//! sub-VP SDEs (ledger D11, D12; 003 eqs. 11, 12) and the geometric `sigma(t)` of the VE SDE
//! (ledger D9; 003 eq. 9). Time runs over `[0, 1]`; the functions themselves accept any real `t`
//! (the SDEs validate their time argument).

use crate::error::{Error, Result};

// ANCHOR: linear_beta
/// A linear `beta(t) = beta_min + t (beta_max - beta_min)` on `t in [0, 1]`, with its integral
/// `B(t) = ∫_0^t beta(s) ds = beta_min t + (beta_max - beta_min) t² / 2`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinearBeta {
    beta_min: f64,
    beta_max: f64,
}

impl LinearBeta {
    /// A validated schedule: both ends finite, `0 <= beta_min <= beta_max` and `beta_max > 0`.
    pub fn new(beta_min: f64, beta_max: f64) -> Result<Self> {
        if !beta_min.is_finite() || !beta_max.is_finite() {
            return Err(Error::InvalidSchedule(format!(
                "beta_min = {beta_min}, beta_max = {beta_max} must be finite"
            )));
        }
        if beta_min < 0.0 {
            return Err(Error::InvalidSchedule(format!(
                "beta_min = {beta_min} is negative"
            )));
        }
        if beta_min > beta_max {
            return Err(Error::InvalidSchedule(format!(
                "beta_min = {beta_min} exceeds beta_max = {beta_max}"
            )));
        }
        if beta_max <= 0.0 {
            return Err(Error::InvalidSchedule("beta_max must be positive".into()));
        }
        Ok(Self { beta_min, beta_max })
    }

    /// `beta(0)`.
    pub fn beta_min(&self) -> f64 {
        self.beta_min
    }

    /// `beta(1)`.
    pub fn beta_max(&self) -> f64 {
        self.beta_max
    }

    /// `beta(t)`.
    pub fn beta(&self, t: f64) -> f64 {
        self.beta_min + t * (self.beta_max - self.beta_min)
    }

    /// `B(t) = ∫_0^t beta(s) ds`.
    pub fn integral(&self, t: f64) -> f64 {
        self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t * t
    }
}
// ANCHOR_END: linear_beta

impl Default for LinearBeta {
    /// The paper's VP/sub-VP choice `beta_min = 0.1`, `beta_max = 20`, which with `N = 1000`
    /// reproduces DDPM's discrete `beta_1 = 1e-4`, `beta_N = 0.02`.
    fn default() -> Self {
        Self {
            beta_min: 0.1,
            beta_max: 20.0,
        }
    }
}

// ANCHOR: geometric_sigma
/// A geometric `sigma(t) = sigma_min (sigma_max / sigma_min)^t` on `t in [0, 1]`, with
/// `d sigma²/dt = 2 ln(sigma_max / sigma_min) sigma(t)²`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GeometricSigma {
    sigma_min: f64,
    sigma_max: f64,
}

impl GeometricSigma {
    /// A validated schedule: both ends finite and `0 < sigma_min < sigma_max`.
    pub fn new(sigma_min: f64, sigma_max: f64) -> Result<Self> {
        if !sigma_min.is_finite() || !sigma_max.is_finite() {
            return Err(Error::InvalidSchedule(format!(
                "sigma_min = {sigma_min}, sigma_max = {sigma_max} must be finite"
            )));
        }
        if sigma_min <= 0.0 {
            return Err(Error::InvalidSchedule(format!(
                "sigma_min = {sigma_min} must be positive"
            )));
        }
        if sigma_min >= sigma_max {
            return Err(Error::InvalidSchedule(format!(
                "sigma_min = {sigma_min} must be below sigma_max = {sigma_max}"
            )));
        }
        Ok(Self {
            sigma_min,
            sigma_max,
        })
    }

    /// `sigma(0)`.
    pub fn sigma_min(&self) -> f64 {
        self.sigma_min
    }

    /// `sigma(1)`.
    pub fn sigma_max(&self) -> f64 {
        self.sigma_max
    }

    /// `ln(sigma_max / sigma_min)`, the log-ratio that sets the growth rate.
    pub fn log_ratio(&self) -> f64 {
        (self.sigma_max / self.sigma_min).ln()
    }

    /// `sigma(t)`.
    pub fn sigma(&self, t: f64) -> f64 {
        self.sigma_min * (t * self.log_ratio()).exp()
    }

    /// `d sigma(t)² / dt = 2 ln(sigma_max / sigma_min) sigma(t)²`.
    pub fn d_sigma2_dt(&self, t: f64) -> f64 {
        let s = self.sigma(t);
        2.0 * self.log_ratio() * s * s
    }
}
// ANCHOR_END: geometric_sigma

impl Default for GeometricSigma {
    /// `sigma_min = 0.01`, `sigma_max = 50`: the paper's CIFAR-10 VE setting (larger images use
    /// a larger `sigma_max`, chosen as the largest pairwise distance of the data).
    fn default() -> Self {
        Self {
            sigma_min: 0.01,
            sigma_max: 50.0,
        }
    }
}
