//! Exact likelihood through the probability-flow ODE (003 §4.3, ledger Dc47, Dc48, D13).
//!
//! With `v(x, t) = f(t) x - ½ g(t)² s(x, t)` the ODE velocity, the instantaneous change of
//! variables gives `d log p_t(x(t))/dt = -∇·v(x(t), t)` along a trajectory, so
//! `log p_eps(x) = log p_T(x(T)) + ∫_eps^T ∇·v(x(t), t) dt`. The pair `[x, ∫ ∇·v]` is
//! integrated jointly from `eps` to `T` with Dormand-Prince RK45, and
//! `∇·v = d f(t) - ½ g(t)² ∇·s`. The divergence of the score is exact (the closed-form
//! Jacobian of a mixture score, [`mixture_score_divergence`]), by central differences per
//! coordinate with a stated error, or estimated by Hutchinson/Skilling probes.

use crate::error::{Error, Result};
use crate::gaussian::GaussianMixture;
use crate::rng::NoiseSource;
use crate::sampler::ode::{integrate_rk45, Rk45Options};
use crate::score::{Level, MixtureScore, ScoreModel};
use crate::sde::{ReverseSde, Sde};
use ndarray::{s, Array1, Array2, ArrayView1, ArrayView2};

// ANCHOR: mixture_jacobian
/// The Jacobian of the score of a Gaussian mixture at `x`. With responsibilities `r_k`,
/// component scores `s_k = -Σ_k⁻¹ (x - μ_k)` and the mixture score `s = Σ_k r_k s_k`,
/// `∇r_k = r_k (s_k - s)`, so `∇s = Σ_k r_k (-Σ_k⁻¹ + s_k s_kᵀ) - s sᵀ`.
pub fn mixture_score_jacobian(mix: &GaussianMixture, x: ArrayView1<f64>) -> Result<Array2<f64>> {
    let r = mix.responsibilities(x)?;
    let d = mix.dim();
    let mut jac = Array2::zeros((d, d));
    let mut s = Array1::zeros(d);
    for (c, &rk) in mix.components().iter().zip(&r) {
        let sk = c.score(x)?;
        let prec = c.cholesky().solve_matrix(Array2::eye(d).view());
        for i in 0..d {
            for j in 0..d {
                jac[[i, j]] += rk * (sk[i] * sk[j] - prec[[i, j]]);
            }
        }
        s.scaled_add(rk, &sk);
    }
    for i in 0..d {
        for j in 0..d {
            jac[[i, j]] -= s[i] * s[j];
        }
    }
    Ok(jac)
}

/// `∇·s(x) = tr ∇s = Σ_k r_k (|s_k|² - tr Σ_k⁻¹) - |s|²` for the mixture `oracle` perturbed to
/// `level`, at each row of `x`.
pub fn mixture_score_divergence(
    oracle: &MixtureScore,
    x: ArrayView2<f64>,
    level: Level,
) -> Result<Array1<f64>> {
    let mix = oracle.mixture.perturbed(level.scale, level.std)?;
    x.rows()
        .into_iter()
        .map(|r| Ok(mixture_score_jacobian(&mix, r)?.diag().sum()))
        .collect()
}
// ANCHOR_END: mixture_jacobian

/// The distribution of Hutchinson probes `z` (both have `E[z zᵀ] = I`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    /// Standard normal entries.
    Gaussian,
    /// Entries ±1 with probability ½ each: for a symmetric Jacobian the variance of
    /// `zᵀ J z` is `2 Σ_{i≠j} J_ij²`, against `2 Σ_ij J_ij²` for Gaussian probes.
    Rademacher,
}

/// An analytic divergence of the score: `(x, level) -> ∇·s` per row.
pub type AnalyticDivergence<'a> = &'a (dyn Fn(ArrayView2<f64>, Level) -> Result<Array1<f64>> + 'a);

/// How to compute `∇·s`.
#[derive(Clone, Copy)]
pub enum Divergence<'a> {
    /// A closed form supplied by the caller (e.g. [`mixture_score_divergence`]).
    Analytic(AnalyticDivergence<'a>),
    /// Central differences per coordinate with step `h`:
    /// `Σ_j [s_j(x + h e_j) - s_j(x - h e_j)] / (2h)`. Error per coordinate:
    /// `h² |∂_j³ s_j| / 6` (Taylor remainder) plus `u |s| / h` (rounding, `u = 2^-53`);
    /// minimal near `h = (3 u |s| / |∂³s|)^{1/3}`, about `1e-5` times the length scale of
    /// the score, where the error is about `1e-10` relative. Costs `2d` score calls.
    CentralDifference {
        /// The step.
        h: f64,
    },
    /// The Hutchinson/Skilling estimator `zᵀ (∇s) z` averaged over `probes` probes drawn once
    /// per trajectory, with `zᵀ (∇s) z ≈ zᵀ [s(x + h z) - s(x - h z)] / (2h)`. Costs
    /// `2 probes` score calls.
    Hutchinson {
        /// Number of probes averaged.
        probes: usize,
        /// Probe distribution.
        probe: Probe,
        /// Finite-difference step of the directional derivative.
        h: f64,
    },
}

// ANCHOR: hutchinson
/// `zᵀ (∇s(x)) z` for each row of `x` and one probe row each of `z`, by a central difference
/// along `z`: `zᵀ [s(x + h z) - s(x - h z)] / (2h)` (error `O(h²)`). Its expectation over
/// probes with `E[z zᵀ] = I` is `tr ∇s = ∇·s` (Hutchinson's estimator).
pub fn hutchinson_term(
    score: &dyn Fn(ArrayView2<f64>) -> Result<Array2<f64>>,
    x: ArrayView2<f64>,
    z: ArrayView2<f64>,
    h: f64,
) -> Result<Array1<f64>> {
    let sp = score((&x + &(&z * h)).view())?;
    let sm = score((&x - &(&z * h)).view())?;
    Ok(((sp - sm) * z).sum_axis(ndarray::Axis(1)) / (2.0 * h))
}
// ANCHOR_END: hutchinson

/// `n × d` probes.
pub fn draw_probes(probe: Probe, n: usize, d: usize, noise: &mut dyn NoiseSource) -> Array2<f64> {
    let mut z = Array2::zeros((n, d));
    if let Some(sl) = z.as_slice_mut() {
        noise.fill_normal(sl);
    }
    if probe == Probe::Rademacher {
        // The sign of a standard normal is a fair ±1.
        z.mapv_inplace(|v| if v >= 0.0 { 1.0 } else { -1.0 });
    }
    z
}

/// Divergence of the score at the rows of `x` at time `t`.
fn score_divergence(
    rsde: &ReverseSde,
    sde: &dyn Sde,
    x: ArrayView2<f64>,
    t: f64,
    method: Divergence,
    probes: &[Array2<f64>],
) -> Result<Array1<f64>> {
    let score = |y: ArrayView2<f64>| rsde.score(y, t);
    match method {
        Divergence::Analytic(f) => f(x, sde.level(t)?),
        Divergence::CentralDifference { h } => {
            let (n, d) = x.dim();
            let mut div = Array1::zeros(n);
            for j in 0..d {
                let mut e = Array2::zeros((n, d));
                e.column_mut(j).fill(1.0);
                let sp = score((&x + &(&e * h)).view())?;
                let sm = score((&x - &(&e * h)).view())?;
                div += &((&sp.column(j) - &sm.column(j)) / (2.0 * h));
            }
            Ok(div)
        }
        Divergence::Hutchinson { h, .. } => {
            let mut acc = Array1::zeros(x.nrows());
            for z in probes {
                acc += &hutchinson_term(&score, x, z.view(), h)?;
            }
            Ok(acc / probes.len() as f64)
        }
    }
}

/// The result of a likelihood computation, per data row.
#[derive(Clone, Debug)]
pub struct LogLikelihood {
    /// `log p_eps(x)` with the SDE's prior at `T`.
    pub log_p: Array1<f64>,
    /// The prior term `log p_T(x(T))`.
    pub prior: Array1<f64>,
    /// `∫_eps^T ∇·v(x(t), t) dt`.
    pub delta: Array1<f64>,
    /// The latents `x(T)`.
    pub latent: Array2<f64>,
    /// Evaluations of the augmented velocity (each costs one score call, plus the divergence).
    pub nfe: usize,
}

// ANCHOR: log_likelihood
/// `log p_eps(x)` for each row of `x` by the PF-ODE and the instantaneous change of variables
/// (ledger Dc47), integrating `[x, ∫ ∇·v]` from `eps` to `T` with RK45.
/// The divergence `∇·v = d f(t) - ½ g(t)² ∇·s`; the prior term is the SDE's
/// [`Sde::prior_log_density`]. Hutchinson probes are drawn once from `noise` and kept fixed
/// along the trajectory (so the integrand is a smooth function of `t`).
pub fn log_likelihood(
    sde: &dyn Sde,
    model: &dyn ScoreModel,
    x: ArrayView2<f64>,
    eps: f64,
    divergence: Divergence,
    opts: Rk45Options,
    noise: &mut dyn NoiseSource,
) -> Result<LogLikelihood> {
    let (n, d) = x.dim();
    if d != model.dim() {
        return Err(Error::Shape(format!(
            "points of dimension {d} for a model of dimension {}",
            model.dim()
        )));
    }
    if n == 0 {
        return Err(Error::param("x", "need at least one point"));
    }
    if !(eps.is_finite() && eps >= 0.0 && eps < sde.t_end()) {
        return Err(Error::param(
            "eps",
            format!("must lie in [0, T), got {eps}"),
        ));
    }
    let probes = match divergence {
        Divergence::Hutchinson { probes, probe, h } => {
            if probes == 0 {
                return Err(Error::param("probes", "need at least one probe"));
            }
            check_h(h)?;
            (0..probes)
                .map(|_| draw_probes(probe, n, d, noise))
                .collect()
        }
        Divergence::CentralDifference { h } => {
            check_h(h)?;
            vec![]
        }
        Divergence::Analytic(_) => vec![],
    };
    let rsde = ReverseSde::new(sde, model);
    let mut field = |y: ArrayView2<f64>, t: f64| -> Result<Array2<f64>> {
        let xs = y.slice(s![.., ..d]);
        let v = rsde.ode_drift(xs, t)?;
        let g = sde.diffusion(t)?;
        let div_s = score_divergence(&rsde, sde, xs, t, divergence, &probes)?;
        let div_v = div_s.mapv(|ds| -0.5 * g * g * ds) + d as f64 * sde.drift_coef(t)?;
        let mut out = Array2::zeros(y.raw_dim());
        out.slice_mut(s![.., ..d]).assign(&v);
        out.column_mut(d).assign(&div_v);
        Ok(out)
    };
    let mut y0 = Array2::zeros((n, d + 1));
    y0.slice_mut(s![.., ..d]).assign(&x);
    let sol = integrate_rk45(&mut field, y0.view(), eps, sde.t_end(), opts)?;
    let latent = sol.x.slice(s![.., ..d]).to_owned();
    let delta = sol.x.column(d).to_owned();
    let prior = Array1::from_iter(latent.rows().into_iter().map(|r| sde.prior_log_density(r)));
    Ok(LogLikelihood {
        log_p: &prior + &delta,
        prior,
        delta,
        latent,
        nfe: sol.nfe,
    })
}
// ANCHOR_END: log_likelihood

fn check_h(h: f64) -> Result<()> {
    if h.is_finite() && h > 0.0 {
        Ok(())
    } else {
        Err(Error::param(
            "h",
            format!("must be finite and > 0, got {h}"),
        ))
    }
}

// ANCHOR: bits_per_dim
/// Bits per dimension of 8-bit data under uniform dequantisation (ledger Dc48).
///
/// Integer data `k ∈ {0, ..., 255}^D` is dequantised to `u = k + U`, `U ~ Uniform[0, 1)^D`, and
/// scaled to the model's range by `y = u / a + b` (`a = 256, b = 0` for `[0, 1)`;
/// `a = 128, b = -1` for `[-1, 1)`, the score-SDE convention). A density `p_y` of the model
/// gives the density of `u`: `log p_u(u) = log p_y(y) - D ln a` (change of variables, the
/// Jacobian of `u -> y` is `a^{-D}`), and the bits per dimension are
/// `bpd = -log p_u / (D ln 2) = -log p_y / (D ln 2) + log2 a`: the offset is 8 bits for
/// `[0, 1)` and 7 for `[-1, 1)`. (With the common `y = u / 127.5 - 1` the offset is
/// `log2 127.5 = 6.994`, but then `y` ranges over `[-1, 1.0078)`.) Because `∫ p_u` over each
/// unit cell is a probability of the discrete data, Jensen gives `-log2 P(k) <= bpd` averaged
/// over `U`: the dequantised bpd bounds the discrete one from above.
pub fn bits_per_dim(log_p_y: f64, dim: usize, scale_a: f64) -> Result<f64> {
    if dim == 0 {
        return Err(Error::param("dim", "must be at least 1"));
    }
    if !(scale_a.is_finite() && scale_a > 0.0) {
        return Err(Error::param(
            "scale_a",
            format!("must be > 0, got {scale_a}"),
        ));
    }
    if !log_p_y.is_finite() {
        return Err(Error::NonFinite(format!("log p = {log_p_y}")));
    }
    Ok(-log_p_y / (dim as f64 * std::f64::consts::LN_2) + scale_a.log2())
}

/// The dequantised, scaled point `y = (k + u) / a + b` of 8-bit data `k` with uniforms `u`.
pub fn dequantise(k: &[u8], u: &[f64], scale_a: f64, shift_b: f64) -> Result<Array1<f64>> {
    if k.len() != u.len() {
        return Err(Error::Shape(format!(
            "{} values, {} uniforms",
            k.len(),
            u.len()
        )));
    }
    if u.iter().any(|&v| !(0.0..1.0).contains(&v)) {
        return Err(Error::param("u", "uniforms must lie in [0, 1)"));
    }
    Ok(Array1::from_iter(
        k.iter()
            .zip(u)
            .map(|(&k, &u)| (k as f64 + u) / scale_a + shift_b),
    ))
}
// ANCHOR_END: bits_per_dim
