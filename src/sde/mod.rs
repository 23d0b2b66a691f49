//! Score SDEs `dx = f(x, t) dt + g(t) dw` (ledger D5, A1.19; 003 eq. 5, 000 eq. 1.19) on
//! `t in [0, T]`, `T = 1`.
//!
//! Every SDE here has a linear drift `f(x, t) = f(t) x` and a scalar diffusion `g(t)`, so its
//! perturbation kernel is Gaussian, `p_0t(x(t) | x(0)) = N(s(t) x(0), sigma(t)² I)` (ledger D29).
//! An SDE implements [`Sde`] in one file: the four scalar functions `f`, `g`, `s`, `sigma`
//! and its prior; `drift`, `level`, the prior sampler and an Euler-Maruyama `discretize`
//! come for free. Registering it is one `pub mod` line below.
//!
//! The reverse-time SDE and the probability-flow ODE built from any [`Sde`] and a score model
//! live in [`reverse`].

use crate::error::{Error, Result};
use crate::rng::NoiseSource;
use crate::score::Level;
use ndarray::{Array2, ArrayView1, ArrayView2};

pub mod reverse;
pub mod subvp;
pub mod ve;
pub mod vp;

pub use reverse::ReverseSde;
pub use subvp::SubVpSde;
pub use ve::{KernelStd, VeSde};
pub use vp::VpSde;

/// Returns `t` if it is finite and in `[0, t_end]`, else a typed error.
pub fn check_time(t: f64, t_end: f64) -> Result<f64> {
    if t.is_finite() && (0.0..=t_end).contains(&t) {
        Ok(t)
    } else {
        Err(Error::param("t", format!("{t} is outside [0, {t_end}]")))
    }
}

// ANCHOR: level_grid
/// The discrete chain of `n` noise levels `k = 0, ..., n-1` sits at times
/// `t_k = k T / (n - 1)` (so level `n-1` is `t = T`). Returns the level nearest to `t`.
/// A sampler on `linspace(T, eps, n)` visits every level once.
pub fn level_index(t: f64, t_end: f64, n: usize) -> Result<usize> {
    check_time(t, t_end)?;
    if n < 2 {
        return Err(Error::param("n_steps", format!("{n} < 2 noise levels")));
    }
    Ok(((t / t_end) * (n - 1) as f64).round() as usize)
}

/// How a time is mapped to a level of the discrete chain.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LevelRounding {
    /// The nearest level, `round(t (n-1)/T)` (ours, the default).
    #[default]
    Nearest,
    /// The level at or below, `floor(t (n-1)/T)`: score_sde's `(t * (N - 1) / T).long()`.
    /// A value within a few ulps of an integer counts as that integer, so that the chain time
    /// `level_time(k)` maps back to `k` (in f64, `(k/(n-1))(n-1)` can fall one ulp below `k`,
    /// e.g. `k = 63`, `n = 1000`); this never changes a time of the peer's grid, whose
    /// `t (n-1)` stays far from integers.
    Floor,
}

/// [`level_index`] with an explicit rounding rule. Errors as [`level_index`].
pub fn level_index_with(t: f64, t_end: f64, n: usize, rounding: LevelRounding) -> Result<usize> {
    let nearest = level_index(t, t_end, n)?;
    Ok(match rounding {
        LevelRounding::Nearest => nearest,
        LevelRounding::Floor => {
            let v = (t / t_end) * (n - 1) as f64;
            // 8 ulps of the value: far above the 2-3 roundings of t = k T/(n-1) and back.
            if (v - nearest as f64).abs() <= 8.0 * f64::EPSILON * v.max(1.0) {
                nearest
            } else {
                v.floor() as usize
            }
        }
    })
}

/// Checks that `level` is a level of an `n`-level chain (`n >= 2`, `level < n`).
pub(crate) fn check_level(level: usize, n: usize) -> Result<()> {
    if n >= 2 && level < n {
        Ok(())
    } else {
        Err(Error::param(
            "level",
            format!("level {level} of a {n}-level chain (need n >= 2 and level < n)"),
        ))
    }
}

/// The time `t_k = k T / (n - 1)` of level `k` of an `n`-level chain.
pub fn level_time(k: usize, n: usize, t_end: f64) -> f64 {
    k as f64 * t_end / (n - 1) as f64
}
// ANCHOR_END: level_grid

/// A forward SDE with linear drift `f(x, t) = f(t) x` and scalar diffusion `g(t)`.
pub trait Sde: Send + Sync {
    /// The end time `T` (1 for every SDE here).
    fn t_end(&self) -> f64 {
        1.0
    }

    /// A small positive time where samplers stop, because the score at `t = 0` is that of the
    /// data (singular for the VE kernel, whose `sigma(0) = 0`).
    fn t_eps(&self) -> f64 {
        1e-3
    }

    /// The default number `N` of discretisation steps / noise levels.
    fn n(&self) -> usize;

    /// The drift coefficient `f(t)` in `f(x, t) = f(t) x`.
    fn drift_coef(&self, t: f64) -> Result<f64>;

    /// The diffusion coefficient `g(t)`.
    fn diffusion(&self, t: f64) -> Result<f64>;

    /// The mean scale `s(t)` of the kernel `p_0t` (ledger D29).
    fn mean_scale(&self, t: f64) -> Result<f64>;

    /// The standard deviation `sigma(t)` of the kernel `p_0t` (ledger D29).
    fn marginal_std(&self, t: f64) -> Result<f64>;

    /// The standard deviation of the isotropic Gaussian prior `p_T`.
    fn prior_std(&self) -> f64;

    /// `f(x, t) = f(t) x` for each row of `x`.
    fn drift(&self, x: ArrayView2<f64>, t: f64) -> Result<Array2<f64>> {
        let a = self.drift_coef(t)?;
        Ok(x.mapv(|v| a * v))
    }

    /// The score model's level at time `t`: `(t, s(t), sigma(t))`.
    fn level(&self, t: f64) -> Result<Level> {
        Ok(Level {
            t,
            scale: self.mean_scale(t)?,
            std: self.marginal_std(t)?,
        })
    }

    /// `n` draws of dimension `d` from the prior `N(0, prior_std² I)`.
    fn prior_sample(&self, rng: &mut dyn NoiseSource, n: usize, d: usize) -> Array2<f64> {
        let mut out = Array2::zeros((n, d));
        if let Some(s) = out.as_slice_mut() {
            rng.fill_normal(s);
        }
        let sd = self.prior_std();
        out.mapv_inplace(|v| sd * v);
        out
    }

    /// `log N(x; 0, prior_std² I)` of one point.
    fn prior_log_density(&self, x: ArrayView1<f64>) -> f64 {
        let sd = self.prior_std();
        let d = x.len() as f64;
        let r2 = x.dot(&x) / (sd * sd);
        -0.5 * d * (2.0 * std::f64::consts::PI * sd * sd).ln() - 0.5 * r2
    }

    // ANCHOR: euler_discretize
    /// One forward step `x -> x + F + G z` of an `n_steps` discretisation at time `t`.
    /// The default is Euler-Maruyama: `F = f(x, t) Δt`, `G = g(t) √Δt`, `Δt = T / n_steps`.
    fn discretize(&self, x: ArrayView2<f64>, t: f64, n_steps: usize) -> Result<(Array2<f64>, f64)> {
        if n_steps == 0 {
            return Err(Error::param("n_steps", "must be at least 1"));
        }
        let dt = self.t_end() / n_steps as f64;
        let f = self.drift(x, t)? * dt;
        Ok((f, self.diffusion(t)? * dt.sqrt()))
    }
    // ANCHOR_END: euler_discretize

    // ANCHOR: discretize_level
    /// The forward step a sampler reverses at grid time `t`, which is level `level` of an
    /// `n_steps`-level chain. An SDE with a discrete chain (VP: DDPM, VE: SMLD) takes the
    /// chain's step into `level` (the time only names the level); the default, for an SDE
    /// without one (sub-VP), is [`Sde::discretize`] at `t` itself, as score_sde does. Using the
    /// level's time `level_time(level)` there instead would evaluate `f` and `g` at a time
    /// the sampler is not at (off by up to `T/(n-1)`).
    fn discretize_level(
        &self,
        x: ArrayView2<f64>,
        t: f64,
        level: usize,
        n_steps: usize,
    ) -> Result<(Array2<f64>, f64)> {
        let _ = level;
        self.discretize(x, t, n_steps)
    }
    // ANCHOR_END: discretize_level
}
