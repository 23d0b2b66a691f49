//! Predictors: one numerical step of the reverse-time SDE `dx = [f - g² ∇log p_t] dt + g dw̄`
//! (ledger D6, A1.20) from `t` to an earlier time (003 §4.1-4.2, ledger Ac45, Dc09, Dc37,
//! D4, Dc39). Each predictor returns the new state and its mean (the state without the last
//! noise), which the sampler returns at the final step when asked to denoise.
//!
//! Adding a predictor: one struct and one `impl Predictor`.

use crate::error::{Error, Result};
use crate::rng::NoiseSource;
use crate::sde::{ReverseSde, Sde, VeSde, VpSde};
use ndarray::{Array2, ArrayView2};

/// Where a step happens: from `t` to `t - dt`; on a discrete chain this is level `level` of
/// `n_levels` (level `n_levels - 1` at `T`, level 0 next to the data).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Step {
    /// Current time.
    pub t: f64,
    /// Positive time step (the predictor moves to `t - dt`).
    pub dt: f64,
    /// Index of the current level of the discrete chain.
    pub level: usize,
    /// Number of levels of the discrete chain (= the sampler's number of steps).
    pub n_levels: usize,
}

/// `n × d` standard normal draws.
pub(crate) fn normals(noise: &mut dyn NoiseSource, shape: (usize, usize)) -> Array2<f64> {
    let mut z = Array2::zeros(shape);
    if let Some(s) = z.as_slice_mut() {
        noise.fill_normal(s);
    }
    z
}

/// Rejects a non-finite array (a score model that returned NaN or infinity).
pub(crate) fn finite(a: Array2<f64>, what: &str) -> Result<Array2<f64>> {
    if a.iter().all(|v| v.is_finite()) {
        Ok(a)
    } else {
        Err(Error::NonFinite(format!("{what} contains NaN or infinity")))
    }
}

/// One step of a reverse-time sampler.
pub trait Predictor {
    /// A short name for reports.
    fn name(&self) -> &'static str;
    /// Score evaluations per step.
    fn nfe(&self) -> usize {
        1
    }
    /// Moves `x` from `step.t` to `step.t - step.dt`; returns `(x, mean)`.
    fn step(
        &self,
        rsde: &ReverseSde,
        x: ArrayView2<f64>,
        step: Step,
        noise: &mut dyn NoiseSource,
    ) -> Result<(Array2<f64>, Array2<f64>)>;
}

// ANCHOR: euler_maruyama
/// Euler-Maruyama on the reverse SDE: `x_mean = x - [f(x,t) - g(t)² s(x,t)] Δt`,
/// `x = x_mean + g(t) √Δt z` (ledger Ac45, Dc09).
#[derive(Clone, Copy, Debug, Default)]
pub struct EulerMaruyama;

impl Predictor for EulerMaruyama {
    fn name(&self) -> &'static str {
        "euler-maruyama"
    }
    fn step(
        &self,
        rsde: &ReverseSde,
        x: ArrayView2<f64>,
        step: Step,
        noise: &mut dyn NoiseSource,
    ) -> Result<(Array2<f64>, Array2<f64>)> {
        let drift = finite(rsde.reverse_drift(x, step.t)?, "the score")?;
        let mean = &x - &(drift * step.dt);
        let g = rsde.diffusion(step.t)?;
        let x = &mean + &(normals(noise, x.dim()) * (g * step.dt.sqrt()));
        Ok((x, mean))
    }
}
// ANCHOR_END: euler_maruyama

// ANCHOR: reverse_diffusion
/// The reverse-diffusion predictor (003 §4.1, ledger Dc37): if the forward chain's step into
/// level `i` is `x -> x + F_i(x) + G_i z`, the reverse step is
/// `x_mean = x - F_i(x) + G_i² s(x, t)`, `x = x_mean + G_i z`. It uses the SDE's own
/// [`Sde::discretize_level`]: the DDPM/SMLD chain's step into level `i` for VP/VE, and the
/// Euler-Maruyama step at the current time `t` for an SDE without a chain (sub-VP), as
/// score_sde does.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReverseDiffusion;

impl Predictor for ReverseDiffusion {
    fn name(&self) -> &'static str {
        "reverse-diffusion"
    }
    fn step(
        &self,
        rsde: &ReverseSde,
        x: ArrayView2<f64>,
        step: Step,
        noise: &mut dyn NoiseSource,
    ) -> Result<(Array2<f64>, Array2<f64>)> {
        let sde = rsde.sde();
        let (f, g) = sde.discretize_level(x, step.t, step.level, step.n_levels)?;
        let s = finite(rsde.score(x, step.t)?, "the score")?;
        let mean = &x - &f + &(s * (g * g));
        let x = &mean + &(normals(noise, x.dim()) * g);
        Ok((x, mean))
    }
}
// ANCHOR_END: reverse_diffusion

/// Which chain the ancestral predictor reverses.
#[derive(Clone, Copy, Debug)]
pub enum AncestralChain {
    /// The DDPM chain of a VP SDE.
    Vp(VpSde),
    /// The SMLD chain of a VE SDE.
    Ve(VeSde),
}

// ANCHOR: ancestral
/// Ancestral sampling: the exact posterior step of the discrete chain with the score in place
/// of the unknown data.
///
/// VP (DDPM, 003 eq. 4, ledger D4): with `beta_i` the level's discrete beta,
/// `x_mean = (x + beta_i s(x, i)) / sqrt(1 - beta_i)`, `x = x_mean + sqrt(beta_i) z`.
///
/// VE (SMLD, ledger Dc39; derived in the book): the chain `x_i = x_{i-1} + sqrt(sigma_i² -
/// sigma_{i-1}²) z` has the Gaussian posterior `q(x_{i-1} | x_i, x_0)` with mean
/// `x_i - (sigma_i² - sigma_{i-1}²)(x_i - x_0)/sigma_i²` and variance
/// `sigma_{i-1}² (sigma_i² - sigma_{i-1}²) / sigma_i²`; Tweedie's `E[x_0 | x_i] = x_i +
/// sigma_i² s(x_i)` turns the mean into `x_i + (sigma_i² - sigma_{i-1}²) s(x_i, sigma_i)`.
/// Level 0 steps to the data (`sigma_{-1} = 0`, no noise).
#[derive(Clone, Copy, Debug)]
pub struct Ancestral {
    chain: AncestralChain,
}

impl Ancestral {
    /// Ancestral sampling of the DDPM chain of `sde` (the sampler must run on the same SDE).
    pub fn vp(sde: &VpSde) -> Self {
        Self {
            chain: AncestralChain::Vp(*sde),
        }
    }
    /// Ancestral sampling of the SMLD chain of `sde` (the sampler must run on the same SDE).
    pub fn ve(sde: &VeSde) -> Self {
        Self {
            chain: AncestralChain::Ve(*sde),
        }
    }
}

impl Predictor for Ancestral {
    fn name(&self) -> &'static str {
        "ancestral"
    }
    fn step(
        &self,
        rsde: &ReverseSde,
        x: ArrayView2<f64>,
        step: Step,
        noise: &mut dyn NoiseSource,
    ) -> Result<(Array2<f64>, Array2<f64>)> {
        let (k, n) = (step.level, step.n_levels);
        let s = finite(rsde.score(x, step.t)?, "the score")?;
        let (mean, sd) = match &self.chain {
            AncestralChain::Vp(sde) => {
                crate::sde::vp::check_levels(sde.beta(), n)?;
                let b = sde.discrete_beta(k, n);
                ((&x + &(s * b)) / (1.0 - b).sqrt(), b.sqrt())
            }
            AncestralChain::Ve(sde) => {
                let si = sde.discrete_sigma(k, n);
                let sp = if k == 0 {
                    0.0
                } else {
                    sde.discrete_sigma(k - 1, n)
                };
                let d = si * si - sp * sp;
                (&x + &(s * d), (sp * sp * d / (si * si)).sqrt())
            }
        };
        let x = &mean + &(normals(noise, x.dim()) * sd);
        Ok((x, mean))
    }
}
// ANCHOR_END: ancestral

/// The identity predictor (PC with it is corrector-only sampling, e.g. SMLD, ledger Dc41).
#[derive(Clone, Copy, Debug, Default)]
pub struct NonePredictor;

impl Predictor for NonePredictor {
    fn name(&self) -> &'static str {
        "none"
    }
    fn nfe(&self) -> usize {
        0
    }
    fn step(
        &self,
        _rsde: &ReverseSde,
        x: ArrayView2<f64>,
        _step: Step,
        _noise: &mut dyn NoiseSource,
    ) -> Result<(Array2<f64>, Array2<f64>)> {
        Ok((x.to_owned(), x.to_owned()))
    }
}

/// `alpha_i` of the Langevin corrector: `(1 + a)²` where the forward step into level `i` is
/// `x -> (1 + a) x + G z` (`1 - beta_i` for VP, 1 for VE; for sub-VP the Euler step at `t`,
/// [`Sde::discretize_level`]).
pub(crate) fn level_alpha(sde: &dyn Sde, step: Step) -> Result<f64> {
    let one = Array2::from_elem((1, 1), 1.0);
    let (f, _) = sde.discretize_level(one.view(), step.t, step.level, step.n_levels)?;
    Ok((1.0 + f[[0, 0]]).powi(2))
}
