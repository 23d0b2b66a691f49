//! Discrete beta schedules `beta_1, ..., beta_T` of the DDPM forward chain and every quantity
//! derived from them (ledger A1.3, A1.5, A1.7; 000 eqs. 1.3, 1.5, 1.7).
//!
//! Time follows Ho et al.: steps are `t = 1..=T` and `alpha_bar_0 = 1`. Cumulative products are
//! stored as sums of `ln_1p(-beta)`, and every `1 - alpha_bar` is formed with `expm1`, so nothing
//! cancels catastrophically even when `alpha_bar` is within rounding of 0 or 1.

use crate::error::{Error, Result};
use crate::score::Level;

/// A validated discrete beta schedule with its derived quantities.
///
/// Per-step accessors take the step `t` (as in the documents) and return
/// [`Error::InvalidParameter`] when `t` is out of range, never panic.
#[derive(Clone, Debug, PartialEq)]
pub struct BetaSchedule {
    /// `betas[t-1] = beta_t`.
    betas: Vec<f64>,
    /// `log_alpha_bar[t] = ln alpha_bar_t`, `t = 0..=T`, with `log_alpha_bar[0] = 0`.
    log_alpha_bar: Vec<f64>,
}

/// `n` evenly spaced points from `a` to `b` inclusive (`n = 1` gives `[a]`).
fn linspace(a: f64, b: f64, n: usize) -> Vec<f64> {
    if n == 1 {
        return vec![a];
    }
    let h = (b - a) / (n - 1) as f64;
    (0..n)
        .map(|i| if i + 1 == n { b } else { a + h * i as f64 })
        .collect()
}

impl BetaSchedule {
    // ANCHOR: from_betas
    /// A schedule from explicit betas `[beta_1, ..., beta_T]`: requires `T >= 1` and every
    /// `beta_t` finite and strictly inside `(0, 1)`.
    pub fn from_betas(betas: Vec<f64>) -> Result<Self> {
        if betas.is_empty() {
            return Err(Error::InvalidSchedule(
                "a beta schedule needs T >= 1 steps".into(),
            ));
        }
        for (i, &b) in betas.iter().enumerate() {
            if !(b.is_finite() && b > 0.0 && b < 1.0) {
                return Err(Error::InvalidSchedule(format!(
                    "beta_{} = {b} is not in the open interval (0, 1)",
                    i + 1
                )));
            }
        }
        let mut log_alpha_bar = Vec::with_capacity(betas.len() + 1);
        let mut acc = 0.0;
        log_alpha_bar.push(acc);
        for &b in &betas {
            acc += (-b).ln_1p(); // ln alpha_t = ln(1 - beta_t)
            log_alpha_bar.push(acc);
        }
        Ok(Self {
            betas,
            log_alpha_bar,
        })
    }
    // ANCHOR_END: from_betas

    /// Ho et al.'s linear schedule: `beta_t` evenly spaced from `beta_1` to `beta_T`
    /// (their choice: `T = 1000`, `1e-4 .. 0.02`).
    pub fn linear(steps: usize, beta_1: f64, beta_t: f64) -> Result<Self> {
        if steps == 0 {
            return Err(Error::InvalidSchedule(
                "a beta schedule needs T >= 1 steps".into(),
            ));
        }
        Self::from_betas(linspace(beta_1, beta_t, steps))
    }

    /// Linear in `sqrt(beta)`: `beta_t = (sqrt(beta_1) + (t-1)/(T-1) (sqrt(beta_T) - sqrt(beta_1)))^2`.
    pub fn scaled_linear(steps: usize, beta_1: f64, beta_t: f64) -> Result<Self> {
        if steps == 0 {
            return Err(Error::InvalidSchedule(
                "a beta schedule needs T >= 1 steps".into(),
            ));
        }
        for (name, b) in [("beta_1", beta_1), ("beta_T", beta_t)] {
            if !(b.is_finite() && b > 0.0 && b < 1.0) {
                return Err(Error::InvalidSchedule(format!(
                    "{name} = {b} is not in the open interval (0, 1)"
                )));
            }
        }
        let betas = linspace(beta_1.sqrt(), beta_t.sqrt(), steps)
            .into_iter()
            .map(|r| r * r)
            .collect();
        Self::from_betas(betas)
    }

    /// The same `beta` at every step.
    pub fn constant(steps: usize, beta: f64) -> Result<Self> {
        if steps == 0 {
            return Err(Error::InvalidSchedule(
                "a beta schedule needs T >= 1 steps".into(),
            ));
        }
        Self::from_betas(vec![beta; steps])
    }

    // ANCHOR: cosine
    /// Nichol and Dhariwal's cosine schedule: `alpha_bar(t) = f(t)/f(0)` with
    /// `f(t) = cos^2((t/T + s)/(1 + s) * pi/2)`, so `beta_t = 1 - f(t)/f(t-1)`, clipped at 0.999.
    ///
    /// `1 - cos^2 a / cos^2 b` is evaluated as `sin(a - b) sin(a + b) / cos^2 b`, which has no
    /// cancellation for the tiny betas near `t = 1`. Requires `s >= 0` finite.
    pub fn cosine(steps: usize, s: f64) -> Result<Self> {
        if steps == 0 {
            return Err(Error::InvalidSchedule(
                "a beta schedule needs T >= 1 steps".into(),
            ));
        }
        if !(s.is_finite() && s >= 0.0) {
            return Err(Error::InvalidSchedule(format!(
                "cosine offset s = {s} must be finite and >= 0"
            )));
        }
        let angle =
            |t: usize| (t as f64 / steps as f64 + s) / (1.0 + s) * std::f64::consts::FRAC_PI_2;
        let betas = (1..=steps)
            .map(|t| {
                let (a, b) = (angle(t), angle(t - 1));
                let cb = b.cos();
                let beta = (a - b).sin() * (a + b).sin() / (cb * cb);
                beta.min(0.999)
            })
            .collect();
        Self::from_betas(betas)
    }
    // ANCHOR_END: cosine

    /// The number of steps `T`.
    pub fn steps(&self) -> usize {
        self.betas.len()
    }

    /// All betas, `[beta_1, ..., beta_T]`.
    pub fn betas(&self) -> &[f64] {
        &self.betas
    }

    /// `ln alpha_bar_t` for `t = 0..=T` (index = step, index 0 is 0).
    pub fn log_alphas_bar(&self) -> &[f64] {
        &self.log_alpha_bar
    }

    fn check_step(&self, t: usize) -> Result<()> {
        if t == 0 || t > self.steps() {
            Err(Error::param(
                "t",
                format!("step {t} is outside 1..={}", self.steps()),
            ))
        } else {
            Ok(())
        }
    }

    fn check_step0(&self, t: usize) -> Result<()> {
        if t > self.steps() {
            Err(Error::param(
                "t",
                format!("step {t} is outside 0..={}", self.steps()),
            ))
        } else {
            Ok(())
        }
    }

    /// `beta_t`, `t = 1..=T`.
    pub fn beta(&self, t: usize) -> Result<f64> {
        self.check_step(t)?;
        Ok(self.betas[t - 1])
    }

    /// `alpha_t = 1 - beta_t`, `t = 1..=T`.
    pub fn alpha(&self, t: usize) -> Result<f64> {
        Ok(1.0 - self.beta(t)?)
    }

    /// `ln alpha_bar_t`, `t = 0..=T`.
    pub fn log_alpha_bar(&self, t: usize) -> Result<f64> {
        self.check_step0(t)?;
        Ok(self.log_alpha_bar[t])
    }

    // ANCHOR: derived
    /// `alpha_bar_t = prod_{s<=t} (1 - beta_s)`, `t = 0..=T` (`alpha_bar_0 = 1`).
    pub fn alpha_bar(&self, t: usize) -> Result<f64> {
        Ok(self.log_alpha_bar(t)?.exp())
    }

    /// `1 - alpha_bar_t`, as `-expm1(ln alpha_bar_t)`.
    pub fn one_minus_alpha_bar(&self, t: usize) -> Result<f64> {
        Ok(-self.log_alpha_bar(t)?.exp_m1())
    }

    /// `sqrt(alpha_bar_t)`: the mean scale of `q(x_t | x_0)`.
    pub fn sqrt_alpha_bar(&self, t: usize) -> Result<f64> {
        Ok((0.5 * self.log_alpha_bar(t)?).exp())
    }

    /// `sqrt(1 - alpha_bar_t)`: the standard deviation of `q(x_t | x_0)`.
    pub fn sqrt_one_minus_alpha_bar(&self, t: usize) -> Result<f64> {
        Ok(self.one_minus_alpha_bar(t)?.sqrt())
    }

    /// `sqrt(1 / alpha_bar_t)`.
    pub fn sqrt_recip_alpha_bar(&self, t: usize) -> Result<f64> {
        Ok((-0.5 * self.log_alpha_bar(t)?).exp())
    }

    /// `sqrt(1 / alpha_bar_t - 1)`, as `sqrt(expm1(-ln alpha_bar_t))`.
    pub fn sqrt_recip_alpha_bar_minus_one(&self, t: usize) -> Result<f64> {
        Ok((-self.log_alpha_bar(t)?).exp_m1().sqrt())
    }

    /// Signal-to-noise ratio `SNR(t) = alpha_bar_t / (1 - alpha_bar_t) = 1 / expm1(-ln alpha_bar_t)`,
    /// `t = 1..=T`.
    pub fn snr(&self, t: usize) -> Result<f64> {
        self.check_step(t)?;
        Ok(1.0 / (-self.log_alpha_bar[t]).exp_m1())
    }

    /// `ln SNR(t) = ln alpha_bar_t - ln(1 - alpha_bar_t)`, `t = 1..=T`.
    pub fn log_snr(&self, t: usize) -> Result<f64> {
        self.check_step(t)?;
        let l = self.log_alpha_bar[t];
        Ok(l - (-l.exp_m1()).ln())
    }
    // ANCHOR_END: derived

    // ANCHOR: posterior_coefficients
    /// Posterior variance `beta_tilde_t = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) * beta_t`
    /// (ledger A1.7, 000 eq. 1.7), `t = 1..=T`; `beta_tilde_1 = 0`.
    pub fn posterior_variance(&self, t: usize) -> Result<f64> {
        let beta = self.beta(t)?;
        Ok(self.one_minus_alpha_bar(t - 1)? / self.one_minus_alpha_bar(t)? * beta)
    }

    /// `ln beta_tilde_t` clipped as in Ho et al.: at `t = 1`, where `beta_tilde_1 = 0`, the value of
    /// `t = 2` is used instead (for `T = 1`, `ln beta_1`).
    pub fn posterior_log_variance_clipped(&self, t: usize) -> Result<f64> {
        self.check_step(t)?;
        if t == 1 {
            if self.steps() >= 2 {
                Ok(self.posterior_variance(2)?.ln())
            } else {
                Ok(self.betas[0].ln())
            }
        } else {
            Ok(self.posterior_variance(t)?.ln())
        }
    }

    /// Coefficient of `x_0` in the posterior mean (ledger A1.7):
    /// `sqrt(alpha_bar_{t-1}) beta_t / (1 - alpha_bar_t)`.
    pub fn posterior_mean_coef_x0(&self, t: usize) -> Result<f64> {
        let beta = self.beta(t)?;
        Ok(self.sqrt_alpha_bar(t - 1)? * beta / self.one_minus_alpha_bar(t)?)
    }

    /// Coefficient of `x_t` in the posterior mean (ledger A1.7):
    /// `sqrt(alpha_t) (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t)`.
    pub fn posterior_mean_coef_xt(&self, t: usize) -> Result<f64> {
        let alpha = self.alpha(t)?;
        Ok(alpha.sqrt() * self.one_minus_alpha_bar(t - 1)? / self.one_minus_alpha_bar(t)?)
    }
    // ANCHOR_END: posterior_coefficients

    /// The [`Level`] of step `t` (`t = 0..=T`): model input `t as f64`, scale
    /// `sqrt(alpha_bar_t)`, std `sqrt(1 - alpha_bar_t)`.
    pub fn level(&self, t: usize) -> Result<Level> {
        Ok(Level {
            t: t as f64,
            scale: self.sqrt_alpha_bar(t)?,
            std: self.sqrt_one_minus_alpha_bar(t)?,
        })
    }
}
