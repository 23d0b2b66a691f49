//! Training objectives. Each function builds a loss on a [`Graph<f32>`] from the network's
//! output and a batch of perturbed data prepared in `f64`; the loss is a 0-d tensor ready for
//! `backward`.
//!
//! Convention: every loss is the expectation of its defining formula **divided by the data
//! dimension `d`** (a mean over the batch of the squared norm over the `d` coordinates, divided
//! by `d`): the same minimiser, and a number of the same size for 2-D toys and 64-pixel images,
//! which keeps gradient clipping meaningful for both.
//!
//! Points are rows: `x0`, `eps`, `xt` are `n × d`; images are flattened.

use crate::engine::{Graph, Tensor};
use crate::error::{Error, Result};
use crate::rng::NoiseSource;
use crate::schedule::beta::BetaSchedule;
use crate::schedule::sigma::SigmaSequence;
use crate::sde::Sde;
use ndarray::{Array2, ArrayView2};
use rand::Rng as _;

/// A batch of data perturbed by a Gaussian kernel: `xt = scale · x0 + std · eps` row by row.
#[derive(Clone, Debug)]
pub struct Perturbed {
    /// Clean data `n × d`.
    pub x0: Array2<f64>,
    /// The standard normal noise `n × d`.
    pub eps: Array2<f64>,
    /// The perturbed data `n × d`.
    pub xt: Array2<f64>,
    /// The network's time input of each row (continuous `t`, the step index, or sigma).
    pub t: Vec<f64>,
    /// The kernel's mean scale of each row.
    pub scale: Vec<f64>,
    /// The kernel's standard deviation of each row.
    pub std: Vec<f64>,
    /// The discrete step or level index of each row (DDPM `t` in `1..=T`, NCSN level `i`);
    /// empty for continuous time.
    pub index: Vec<usize>,
}

impl Perturbed {
    /// `xt = scale_i x0_i + std_i eps_i`; checks shapes and finiteness.
    pub fn new(
        x0: Array2<f64>,
        eps: Array2<f64>,
        t: Vec<f64>,
        scale: Vec<f64>,
        std: Vec<f64>,
        index: Vec<usize>,
    ) -> Result<Self> {
        let n = x0.nrows();
        if eps.dim() != x0.dim() || t.len() != n || scale.len() != n || std.len() != n {
            return Err(Error::Shape(format!(
                "perturbed batch: x0 {:?}, eps {:?}, {} times, {} scales, {} stds",
                x0.dim(),
                eps.dim(),
                t.len(),
                scale.len(),
                std.len()
            )));
        }
        if !index.is_empty() && index.len() != n {
            return Err(Error::Shape(format!(
                "{} indices for {n} rows",
                index.len()
            )));
        }
        if n == 0 || x0.ncols() == 0 {
            return Err(Error::Shape("empty batch".into()));
        }
        if std.iter().any(|s| !(*s > 0.0 && s.is_finite())) {
            return Err(Error::param(
                "std",
                "every kernel std must be positive and finite",
            ));
        }
        let mut xt = x0.clone();
        for (i, mut row) in xt.rows_mut().into_iter().enumerate() {
            let (a, s) = (scale[i], std[i]);
            row.zip_mut_with(&eps.row(i), |x, &e| *x = a * *x + s * e);
        }
        Ok(Perturbed {
            x0,
            eps,
            xt,
            t,
            scale,
            std,
            index,
        })
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.x0.nrows()
    }

    /// Whether the batch is empty (never, for a constructed batch).
    pub fn is_empty(&self) -> bool {
        self.x0.nrows() == 0
    }

    /// Data dimension.
    pub fn dim(&self) -> usize {
        self.x0.ncols()
    }
}

fn normals(noise: &mut dyn NoiseSource, n: usize, d: usize) -> Array2<f64> {
    let mut z = Array2::zeros((n, d));
    noise.fill_normal(z.as_slice_mut().expect("standard layout"));
    z
}

/// DDPM training batch: `t ~ U{1..T}`, `eps ~ N(0, I)`, `xt = sqrt(abar_t) x0 + sqrt(1-abar_t) eps`
/// (ledger A1.5). The network input is the step index `t`.
pub fn perturb_ddpm(
    schedule: &BetaSchedule,
    x0: ArrayView2<f64>,
    rng: &mut crate::rng::Rng,
) -> Result<Perturbed> {
    let n = x0.nrows();
    let big_t = schedule.steps();
    let steps: Vec<usize> = (0..n).map(|_| rng.random_range(1..=big_t)).collect();
    let eps = normals(rng, n, x0.ncols());
    let mut scale = Vec::with_capacity(n);
    let mut std = Vec::with_capacity(n);
    for &t in &steps {
        scale.push(schedule.sqrt_alpha_bar(t)?);
        std.push(schedule.sqrt_one_minus_alpha_bar(t)?);
    }
    let t = steps.iter().map(|&s| s as f64).collect();
    Perturbed::new(x0.to_owned(), eps, t, scale, std, steps)
}

/// Continuous-time batch for an SDE: `t ~ U[t_eps, 1]`, `xt ~ p_0t(· | x0) = N(s(t) x0, sigma(t)² I)`
/// (ledger D29). The network input is `t`.
pub fn perturb_sde(
    sde: &dyn Sde,
    x0: ArrayView2<f64>,
    t_eps: f64,
    rng: &mut crate::rng::Rng,
) -> Result<Perturbed> {
    let t_end = sde.t_end();
    if !(t_eps > 0.0 && t_eps < t_end) {
        return Err(Error::param(
            "t_eps",
            format!("{t_eps} is not in (0, {t_end})"),
        ));
    }
    let n = x0.nrows();
    let t: Vec<f64> = (0..n)
        .map(|_| t_eps + (t_end - t_eps) * rng.random::<f64>())
        .collect();
    perturb_sde_at(sde, x0, t, rng)
}

/// [`perturb_sde`] at given times `t` (one per row): `xt = s(t) x0 + sigma(t) eps`, `eps` from
/// `rng`.
pub fn perturb_sde_at(
    sde: &dyn Sde,
    x0: ArrayView2<f64>,
    t: Vec<f64>,
    rng: &mut crate::rng::Rng,
) -> Result<Perturbed> {
    let n = x0.nrows();
    let eps = normals(rng, n, x0.ncols());
    let mut scale = Vec::with_capacity(n);
    let mut std = Vec::with_capacity(n);
    for &s in &t {
        scale.push(sde.mean_scale(s)?);
        std.push(sde.marginal_std(s)?);
    }
    Perturbed::new(x0.to_owned(), eps, t, scale, std, Vec::new())
}

/// NCSN batch: level `i ~ U{0..L-1}`, `x̃ = x0 + sigma_i eps`. The network input is `sigma_i`.
pub fn perturb_ncsn(
    sigmas: &SigmaSequence,
    x0: ArrayView2<f64>,
    rng: &mut crate::rng::Rng,
) -> Result<Perturbed> {
    let n = x0.nrows();
    let l = sigmas.len();
    let idx: Vec<usize> = (0..n).map(|_| rng.random_range(0..l)).collect();
    let eps = normals(rng, n, x0.ncols());
    let std: Vec<f64> = idx.iter().map(|&i| sigmas.as_slice()[i]).collect();
    Perturbed::new(x0.to_owned(), eps, std.clone(), vec![1.0; n], std, idx)
}

fn f32_tensor(a: &Array2<f64>) -> Result<Tensor<f32>> {
    Tensor::from_vec(
        &[a.nrows(), a.ncols()],
        a.iter().map(|&v| v as f32).collect(),
    )
}

fn check_out(out: &Tensor<f32>, n: usize, d: usize) -> Result<Tensor<f32>> {
    if out.len() != n * d || out.shape().first() != Some(&n) {
        return Err(Error::Shape(format!(
            "network output {:?} for a batch of {n} points of dimension {d}",
            out.shape()
        )));
    }
    Ok(out.clone())
}

// ANCHOR: weighted_sq
/// `(1 / (n d)) Σ_i w_i ‖out_i − target_i‖²`: the weighted squared error the objectives share.
/// `out` is the network output (any shape with `n` rows of `d` numbers), `target` is `n × d`.
pub fn weighted_squared_error(
    g: &mut Graph<f32>,
    out: &Tensor<f32>,
    target: &Array2<f64>,
    weights: &[f64],
) -> Result<Tensor<f32>> {
    let (n, d) = target.dim();
    if weights.len() != n {
        return Err(Error::Shape(format!(
            "{} weights for {n} rows",
            weights.len()
        )));
    }
    if let Some(w) = weights.iter().find(|w| !(w.is_finite() && **w >= 0.0)) {
        return Err(Error::NonFinite(format!("loss weight {w}")));
    }
    let out = check_out(out, n, d)?;
    let out = g.reshape(&out, &[n, d])?;
    let diff = g.sub(&out, &f32_tensor(target)?)?;
    let sq = g.mul(&diff, &diff)?;
    let per_row = g.sum(&sq, &[1], false)?;
    let w = Tensor::from_vec(&[n], weights.iter().map(|&v| v as f32).collect())?;
    let weighted = g.mul(&per_row, &w)?;
    let total = g.sum_all(&weighted);
    Ok(g.mul_scalar(&total, 1.0 / (n * d) as f64))
}
// ANCHOR_END: weighted_sq

/// What a DDPM network predicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prediction {
    /// The noise `eps` (Ho et al.).
    Eps,
    /// The clean data `x0`.
    X0,
    /// The velocity `v = sqrt(abar) eps − sqrt(1 − abar) x0` (Salimans & Ho).
    V,
}

// ANCHOR: ddpm_simple
/// `L_simple` (ledger A1.11 without its weight, D3; 000 eq. 1.11, 003 eq. 3): the unweighted
/// regression of the network output on its target, `E ‖target − out‖² / d` with target `eps`,
/// `x0`, or `v = scale · eps − std · x0` by `prediction`.
pub fn ddpm_simple(
    g: &mut Graph<f32>,
    out: &Tensor<f32>,
    batch: &Perturbed,
    prediction: Prediction,
) -> Result<Tensor<f32>> {
    let target = match prediction {
        Prediction::Eps => batch.eps.clone(),
        Prediction::X0 => batch.x0.clone(),
        Prediction::V => {
            let mut v = batch.eps.clone();
            for (i, mut row) in v.rows_mut().into_iter().enumerate() {
                let (a, s) = (batch.scale[i], batch.std[i]);
                row.zip_mut_with(&batch.x0.row(i), |e, &x| *e = a * *e - s * x);
            }
            v
        }
    };
    weighted_squared_error(g, out, &target, &vec![1.0; batch.len()])
}
// ANCHOR_END: ddpm_simple

/// The reverse-process variance `sigma_t²` of `p_theta(x_{t-1} | x_t)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReverseVariance {
    /// `sigma_t² = beta_t` (the upper bound on the entropy).
    Beta,
    /// `sigma_t² = beta~_t = (1 − abar_{t−1}) / (1 − abar_t) beta_t`, the posterior variance
    /// (undefined at `t = 1`, where it is 0).
    Posterior,
}

/// The weight of `‖eps − eps_theta‖²` in `L_{t−1}` (ledger A1.11; 000 eq. 1.11):
/// `beta_t² / (2 sigma_t² alpha_t (1 − abar_t))`.
pub fn vlb_weight(schedule: &BetaSchedule, t: usize, var: ReverseVariance) -> Result<f64> {
    let beta = schedule.beta(t)?;
    let s2 = match var {
        ReverseVariance::Beta => beta,
        ReverseVariance::Posterior => schedule.posterior_variance(t)?,
    };
    if s2 <= 0.0 {
        return Err(Error::param(
            "t",
            format!("the reverse variance at t = {t} is 0"),
        ));
    }
    Ok(beta * beta / (2.0 * s2 * schedule.alpha(t)? * schedule.one_minus_alpha_bar(t)?))
}

// ANCHOR: ddpm_vlb
/// The weighted eps-objective of 000 eq. 1.11 (ledger A1.11): `L_{t−1} − C =
/// E[beta_t² / (2 sigma_t² alpha_t (1 − abar_t)) ‖eps − eps_theta‖²] / d`, in nats per dimension,
/// with `t` from `batch.index`. It equals the KL divergence between the forward posterior and the
/// reverse step when both have variance `sigma_t²` (see the test).
pub fn ddpm_vlb(
    g: &mut Graph<f32>,
    eps_out: &Tensor<f32>,
    batch: &Perturbed,
    schedule: &BetaSchedule,
    var: ReverseVariance,
) -> Result<Tensor<f32>> {
    if batch.index.len() != batch.len() {
        return Err(Error::param("batch", "needs the DDPM step of each row"));
    }
    let w: Vec<f64> = batch
        .index
        .iter()
        .map(|&t| vlb_weight(schedule, t, var))
        .collect::<Result<_>>()?;
    weighted_squared_error(g, eps_out, &batch.eps, &w)
}
// ANCHOR_END: ddpm_vlb

/// The weighting `lambda(t)` of continuous-time denoising score matching.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Weighting {
    /// `lambda(t) = sigma(t)²`, proportional to `1 / E‖∇ log p_0t‖²` (the documents' choice,
    /// 003 after eq. 7, 000 after eq. 1.21).
    SigmaSquared,
    /// `lambda(t) = g(t)²`, the likelihood weighting (Song et al. 2021b): the loss then bounds
    /// the negative log-likelihood.
    Likelihood,
}

/// `lambda(t)` of each row of a continuous batch.
pub fn dsm_lambda(sde: &dyn Sde, batch: &Perturbed, weighting: Weighting) -> Result<Vec<f64>> {
    batch
        .t
        .iter()
        .zip(&batch.std)
        .map(|(&t, &s)| match weighting {
            Weighting::SigmaSquared => Ok(s * s),
            Weighting::Likelihood => sde.diffusion(t).map(|g| g * g),
        })
        .collect()
}

// ANCHOR: dsm
/// Continuous-time denoising score matching (ledger D7, A1.21; 003 eq. 7, 000 eq. 1.21) for a
/// network that predicts the noise, `s_theta(x, t) = −eps_theta(x, t) / sigma(t)`:
/// `E_t{lambda(t) E‖s_theta(x(t), t) − ∇ log p_0t(x(t) | x(0))‖²} / d`, `t ~ U[t_eps, 1]`.
/// Since `∇ log p_0t = −eps / sigma(t)`, each term is `lambda(t) / sigma(t)² ‖eps_theta − eps‖²`,
/// which is what is built here (no division of two small numbers in `f32`).
pub fn dsm(
    g: &mut Graph<f32>,
    eps_out: &Tensor<f32>,
    batch: &Perturbed,
    sde: &dyn Sde,
    weighting: Weighting,
) -> Result<Tensor<f32>> {
    let lambda = dsm_lambda(sde, batch, weighting)?;
    let w: Vec<f64> = lambda
        .iter()
        .zip(&batch.std)
        .map(|(l, s)| l / (s * s))
        .collect();
    weighted_squared_error(g, eps_out, &batch.eps, &w)
}
// ANCHOR_END: dsm

// ANCHOR: ncsn_dsm
/// NCSN denoising score matching over a sigma sequence with `lambda(sigma) = sigma²` (ledger
/// A1.15; 000 eqs. 1.14-1.15) and the improved-NCSN conditioning `s_theta(x, sigma) =
/// out(x) / sigma`: each row contributes `sigma² · ½ ‖s_theta(x̃, sigma) + (x̃ − x) / sigma²‖²`
/// `= ½ ‖out + eps‖²`, averaged over the batch (levels drawn uniformly, so this estimates the
/// `1/L Σ_i` of eq. 1.15) and divided by `d`.
pub fn ncsn_dsm(g: &mut Graph<f32>, out: &Tensor<f32>, batch: &Perturbed) -> Result<Tensor<f32>> {
    let neg_eps = batch.eps.mapv(|e| -e);
    weighted_squared_error(g, out, &neg_eps, &vec![0.5; batch.len()])
}
// ANCHOR_END: ncsn_dsm

// ANCHOR: ssm
/// Sliced score matching (Song et al. 2019), with the directional derivative taken by a
/// central difference (Pang et al. 2020): for projections `v` (`n × d`) and the score
/// evaluated at `x ± h v` (`s_plus`, `s_minus`),
/// `J = E[ vᵀ (s_plus − s_minus) / (2h) + ½ (vᵀ (s_plus + s_minus) / 2)² ] / d`,
/// which is `E[vᵀ ∇_x s(x) v + ½ (vᵀ s(x))²] / d` up to `O(h²)` (exact for an affine score).
/// With `v ~ N(0, I)` its expectation is the implicit score-matching objective
/// `E[tr ∇_x s + ½ ‖s‖²]` (000 eq. 1.13): no kernel and no noise level needed.
pub fn sliced_score_matching(
    g: &mut Graph<f32>,
    s_plus: &Tensor<f32>,
    s_minus: &Tensor<f32>,
    v: &Array2<f64>,
    h: f64,
) -> Result<Tensor<f32>> {
    let n = v.nrows();
    sliced_score_matching_weighted(g, s_plus, s_minus, v, &vec![h; n], &vec![1.0; n])
}

/// [`sliced_score_matching`] with a step `h_i` and a weight `w_i` per row:
/// `(1 / (n d)) Σ_i w_i [v_iᵀ (s⁺_i − s⁻_i) / (2 h_i) + ½ (v_iᵀ (s⁺_i + s⁻_i) / 2)²]`.
/// With `w_i = lambda(t_i)` it is the SSM form of the continuous objective (ledger Dc31).
pub fn sliced_score_matching_weighted(
    g: &mut Graph<f32>,
    s_plus: &Tensor<f32>,
    s_minus: &Tensor<f32>,
    v: &Array2<f64>,
    h: &[f64],
    weights: &[f64],
) -> Result<Tensor<f32>> {
    let (n, d) = v.dim();
    if h.len() != n || weights.len() != n {
        return Err(Error::Shape(format!(
            "{} steps and {} weights for {n} rows",
            h.len(),
            weights.len()
        )));
    }
    if let Some(h) = h.iter().find(|h| !(**h > 0.0 && h.is_finite())) {
        return Err(Error::param("h", format!("must be positive, got {h}")));
    }
    if let Some(w) = weights.iter().find(|w| !(w.is_finite() && **w >= 0.0)) {
        return Err(Error::NonFinite(format!("loss weight {w}")));
    }
    let sp = check_out(s_plus, n, d)?;
    let sm = check_out(s_minus, n, d)?;
    let sp = g.reshape(&sp, &[n, d])?;
    let sm = g.reshape(&sm, &[n, d])?;
    let vt = f32_tensor(v)?;
    let diff = g.sub(&sp, &sm)?;
    let dv = g.mul(&diff, &vt)?;
    let jac = g.sum(&dv, &[1], false)?;
    let inv2h = Tensor::from_vec(&[n], h.iter().map(|&h| (0.5 / h) as f32).collect())?;
    let jac = g.mul(&jac, &inv2h)?;
    let mid = g.add(&sp, &sm)?;
    let mv = g.mul(&mid, &vt)?;
    let proj = g.sum(&mv, &[1], false)?;
    let proj = g.mul_scalar(&proj, 0.5);
    let sq = g.mul(&proj, &proj)?;
    let sq = g.mul_scalar(&sq, 0.5);
    let per_row = g.add(&jac, &sq)?;
    let w = Tensor::from_vec(&[n], weights.iter().map(|&v| v as f32).collect())?;
    let per_row = g.mul(&per_row, &w)?;
    let total = g.sum_all(&per_row);
    Ok(g.mul_scalar(&total, 1.0 / (n * d) as f64))
}
// ANCHOR_END: ssm

// ANCHOR: ssm_eps
/// Sliced score matching for a noise-prediction network `s = −eps_theta / sigma(t)` (ledger
/// Dc31), with the difference step proportional to the noise level, `h_i = c sigma_i`:
/// substituting into [`sliced_score_matching_weighted`] with weights `lambda_i`,
/// `lambda [vᵀ(s⁺ − s⁻)/(2h) + ½ (vᵀ s̄)²] = (lambda / sigma²) [−vᵀ(e⁺ − e⁻)/(2c) + ½ (vᵀ ē)²]`
/// (`s̄`, `ē` the means of the ± evaluations). Every quantity is O(1) in `f32` even when
/// `sigma` is small. `weights` are `lambda_i / sigma_i²` (times any importance reweight).
pub fn sliced_score_matching_eps(
    g: &mut Graph<f32>,
    e_plus: &Tensor<f32>,
    e_minus: &Tensor<f32>,
    v: &Array2<f64>,
    c: f64,
    weights: &[f64],
) -> Result<Tensor<f32>> {
    // The eps form is the score form with s = −e and h = −c (the minus signs cancel in the
    // squared term and flip the Jacobian term): reuse it with e⁺, e⁻ swapped and step c.
    let n = v.nrows();
    sliced_score_matching_weighted(g, e_minus, e_plus, v, &vec![c; n], weights)
}
// ANCHOR_END: ssm_eps
// ANCHOR_END: ssm
