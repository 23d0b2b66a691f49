//! The variational bound of the discrete DDPM chain in bits per dimension (ledger A1.6, A1.8,
//! A1.11, A1.12; 000 eqs. 1.6-1.12), for a noise-prediction network trained in continuous
//! time on the VP SDE.
//!
//! The chain: `S` steps at times `t_i = i T / S`, with `beta_i = 1 − s(t_i)² / s(t_{i−1})²`
//! (`s` the SDE's mean scale), so that `alpha_bar_i = s(t_i)²` and the chain's marginal at step
//! `i` is exactly the SDE's marginal at `t_i`; the network's `eps_theta(x, t_i)` is then the
//! eps-prediction of step `i` and the reverse mean is eq. 1.10.
//!
//! `L = L_T + Σ_{i=2}^S L_{i−1} + L_0` (eq. 1.6) per image, in nats:
//! `L_T = KL(q(x_S|x_0) ‖ N(0, I))`; `L_{i−1} = KL(q(x_{i−1}|x_i, x_0) ‖ N(mu_theta, sigma_i² I))`
//! (one draw of `x_i` per term); `L_0 = −ln p_theta(x_0|x_1)` with the discretised decoder of
//! eq. 1.12 on the data's grid of `levels` values `2k/(levels−1) − 1` (255 → 8-bit images,
//! 17 → the UCI digits) and `sigma_1² = beta_1`. Bits per dimension: `L / (D ln 2)`.

use crate::chain::ddpm::{log_normal_interval, Ddpm};
use crate::engine::{Graph, Tensor};
use crate::error::{Error, Result};
use crate::loss::{Prediction, ReverseVariance};
use crate::rng::NoiseSource;
use crate::schedule::beta::BetaSchedule;
use crate::sde::Sde;
use crate::train::NetScore;
use ndarray::{s, Array1, Array2, ArrayView1, ArrayView2};
use rand::Rng as _;

/// A noise-prediction model: rows `x` and one time per row in, predicted noise out.
pub type EpsModel<'a> = &'a dyn Fn(ArrayView2<f64>, &[f64]) -> Result<Array2<f64>>;

/// The DDPM chain of `S` steps embedded in a VP-type SDE.
#[derive(Clone, Debug)]
pub struct SdeChain {
    /// The chain (its schedule has `beta_i`, `i = 1..=S`).
    pub chain: Ddpm,
    /// `t_i = i T / S`, index `i − 1`.
    pub times: Vec<f64>,
}

// ANCHOR: sde_chain
impl SdeChain {
    /// The `S`-step chain of `sde`; the SDE must be variance preserving
    /// (`s(t)² + sigma(t)² = 1`, checked at every `t_i`).
    pub fn new(sde: &dyn Sde, steps: usize) -> Result<SdeChain> {
        if steps < 2 {
            return Err(Error::param("steps", "the chain needs at least 2 steps"));
        }
        let big_t = sde.t_end();
        let mut betas = Vec::with_capacity(steps);
        let mut times = Vec::with_capacity(steps);
        let mut prev = 1.0;
        for i in 1..=steps {
            let t = i as f64 * big_t / steps as f64;
            let s = sde.mean_scale(t)?;
            let sd = sde.marginal_std(t)?;
            if (s * s + sd * sd - 1.0).abs() > 1e-9 {
                return Err(Error::param(
                    "sde",
                    "the DDPM bound needs a variance-preserving SDE (use a vp model)",
                ));
            }
            betas.push(1.0 - (s * s) / (prev * prev));
            times.push(t);
            prev = s;
        }
        Ok(SdeChain {
            chain: Ddpm::new(BetaSchedule::from_betas(betas)?),
            times,
        })
    }

    /// A chain given by its own schedule (a model trained on the DDPM chain, e.g. the
    /// 1000-step linear one): step `i` sits at network time `t_i = i / S`.
    pub fn from_schedule(schedule: BetaSchedule) -> SdeChain {
        let s = schedule.steps();
        SdeChain {
            times: (1..=s).map(|i| i as f64 / s as f64).collect(),
            chain: Ddpm::new(schedule),
        }
    }

    /// The step `i` whose time is `t` (nearest), `1..=S`.
    pub fn step_of(&self, t: f64) -> usize {
        let s = self.steps();
        let dt = self.times[0];
        ((t / dt).round() as usize).clamp(1, s)
    }

    /// Number of steps `S`.
    pub fn steps(&self) -> usize {
        self.times.len()
    }

    /// `sigma_i²` of the reverse step `i` (`i >= 2`; the decoder always uses `beta_1`).
    pub fn reverse_variance(&self, i: usize, var: ReverseVariance) -> Result<f64> {
        let s = self.chain.schedule();
        match var {
            ReverseVariance::Beta => s.beta(i),
            ReverseVariance::Posterior if i >= 2 => s.posterior_variance(i),
            ReverseVariance::Posterior => s.beta(1),
        }
    }
}
// ANCHOR_END: sde_chain

/// The grid of `levels` values `2k/(levels−1) − 1`, `k = 0..levels−1`, on which discrete data
/// in `[-1, 1]` lie.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grid {
    /// Number of values (`256` for 8-bit images, `17` for the UCI digits).
    pub levels: usize,
}

impl Grid {
    /// The index of `x` on the grid, or an error if it is off the grid.
    pub fn index(&self, x: f64) -> Result<usize> {
        let h = (self.levels - 1) as f64;
        let k = ((x + 1.0) * h / 2.0).round();
        if !(0.0..=h).contains(&k) || ((2.0 * k / h - 1.0) - x).abs() > 1e-9 {
            return Err(Error::Data(format!(
                "{x} is not on the grid of {} levels in [-1, 1]",
                self.levels
            )));
        }
        Ok(k as usize)
    }

    // ANCHOR: grid_decoder
    /// `ln P(k)` of the discretised decoder (ledger A1.12, eq. 1.12, on this grid): the mass of
    /// `N(mean, sigma²)` on `[x − 1/(L−1), x + 1/(L−1)]`, `x = 2k/(L−1) − 1`, the outer edges of
    /// the first and last bins moved to `∓∞` (so the masses of the `L` bins sum to 1).
    pub fn log_prob(&self, k: usize, mean: f64, sigma: f64) -> f64 {
        let h = (self.levels - 1) as f64;
        let x = 2.0 * k as f64 / h - 1.0;
        let half = 1.0 / h;
        let lo = if k == 0 {
            f64::NEG_INFINITY
        } else {
            (x - half - mean) / sigma
        };
        let hi = if k + 1 == self.levels {
            f64::INFINITY
        } else {
            (x + half - mean) / sigma
        };
        log_normal_interval(lo, hi)
    }
    // ANCHOR_END: grid_decoder
}

// ANCHOR: step_term
/// Term `i` of the bound for each row (`i` per row in `steps`), with the forward noise `noise`
/// (`n × d`): `x_i = sqrt(abar_i) x_0 + sqrt(1 − abar_i) noise`, `mu_theta` from eq. 1.10 with
/// the model's `eps_theta(x_i, t_i)`, and
/// * `i = 1`: `L_0 = −Σ_j ln P(x_0^j | mu_theta^j, sqrt(beta_1))` (eq. 1.12);
/// * `i >= 2`: `L_{i−1} = d/2 (r − 1 − ln r) + ‖mu_tilde − mu_theta‖² / (2 sigma_i²)`,
///   `r = beta_tilde_i / sigma_i²` (the Gaussian KL, eq. 1.8 with its constant).
pub fn step_terms(
    sc: &SdeChain,
    x0: ArrayView2<f64>,
    steps: &[usize],
    noise: ArrayView2<f64>,
    model: EpsModel,
    var: ReverseVariance,
    grid: Grid,
) -> Result<Array1<f64>> {
    let (n, d) = x0.dim();
    if steps.len() != n || noise.dim() != (n, d) {
        return Err(Error::Shape(format!(
            "{} steps and noise {:?} for data {:?}",
            steps.len(),
            noise.dim(),
            x0.dim()
        )));
    }
    let sch = sc.chain.schedule();
    let mut xt = Array2::zeros((n, d));
    let mut times = Vec::with_capacity(n);
    for (r, &i) in steps.iter().enumerate() {
        if i == 0 || i > sc.steps() {
            return Err(Error::param(
                "step",
                format!("{i} is not in 1..={}", sc.steps()),
            ));
        }
        let (a, s) = (sch.sqrt_alpha_bar(i)?, sch.sqrt_one_minus_alpha_bar(i)?);
        for j in 0..d {
            xt[[r, j]] = a * x0[[r, j]] + s * noise[[r, j]];
        }
        times.push(sc.times[i - 1]);
    }
    let eps = model(xt.view(), &times)?;
    if eps.dim() != (n, d) {
        return Err(Error::Shape(format!("model output {:?}", eps.dim())));
    }
    let mut out = Array1::zeros(n);
    for (r, &i) in steps.iter().enumerate() {
        let beta = sch.beta(i)?;
        let ra = 1.0 / (1.0 - beta).sqrt();
        let c = beta / sch.sqrt_one_minus_alpha_bar(i)?;
        let mu = |j: usize| ra * (xt[[r, j]] - c * eps[[r, j]]);
        if i == 1 {
            let sigma = beta.sqrt();
            let mut nll = 0.0;
            for j in 0..d {
                nll -= grid.log_prob(grid.index(x0[[r, j]])?, mu(j), sigma);
            }
            out[r] = nll;
        } else {
            let s2 = sc.reverse_variance(i, var)?;
            let bt = sch.posterior_variance(i)?;
            let (c0, ct) = (
                sch.posterior_mean_coef_x0(i)?,
                sch.posterior_mean_coef_xt(i)?,
            );
            let mut r2 = 0.0;
            for j in 0..d {
                let m = c0 * x0[[r, j]] + ct * xt[[r, j]];
                r2 += (m - mu(j)).powi(2);
            }
            let ratio = bt / s2;
            out[r] = 0.5 * d as f64 * (ratio - 1.0 - ratio.ln()) + 0.5 * r2 / s2;
        }
    }
    Ok(out)
}
// ANCHOR_END: step_term

/// A per-image estimate of the bound.
#[derive(Clone, Debug)]
pub struct ElboEstimate {
    /// The estimate of `L` (nats) of each image.
    pub per_image: Array1<f64>,
    /// `E L_T`, then the mean of each term `L_0, L_1, ..., L_{S−1}` over images (full
    /// estimator only; empty for the sampled one).
    pub terms: Vec<f64>,
    /// Data dimension `D`.
    pub dim: usize,
}

impl ElboEstimate {
    /// Mean bound in nats per image and its standard error (images independent).
    pub fn nats(&self) -> (f64, f64) {
        mean_se(self.per_image.view())
    }

    /// Mean bound in bits per dimension and its standard error.
    pub fn bpd(&self) -> (f64, f64) {
        let (m, se) = self.nats();
        let k = 1.0 / (self.dim as f64 * std::f64::consts::LN_2);
        (m * k, se * k)
    }
}

/// Mean and standard error `sd / sqrt(n)` of a sample.
pub fn mean_se(v: ArrayView1<f64>) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.sum() / n;
    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (m, (var / n).sqrt())
}

fn normals(noise: &mut dyn NoiseSource, n: usize, d: usize) -> Array2<f64> {
    let mut z = Array2::zeros((n, d));
    noise.fill_normal(z.as_slice_mut().expect("standard layout"));
    z
}

fn check_data(x0: ArrayView2<f64>, grid: Grid) -> Result<()> {
    if x0.nrows() == 0 || x0.ncols() == 0 {
        return Err(Error::param("x0", "need at least one image"));
    }
    if grid.levels < 2 {
        return Err(Error::param("levels", "need at least 2 grid levels"));
    }
    for &x in x0.iter() {
        grid.index(x)?;
    }
    Ok(())
}

/// Every term of the bound for every image (`S` model calls on all images): exact in `t`,
/// one draw of `x_i` per term.
pub fn elbo_full(
    sc: &SdeChain,
    x0: ArrayView2<f64>,
    model: EpsModel,
    var: ReverseVariance,
    grid: Grid,
    noise: &mut dyn NoiseSource,
) -> Result<ElboEstimate> {
    check_data(x0, grid)?;
    let (n, d) = x0.dim();
    let prior = sc.chain.prior_kl(x0)?;
    let mut terms = vec![prior.mean().unwrap_or(0.0)];
    let mut total = prior;
    for i in 1..=sc.steps() {
        let z = normals(noise, n, d);
        let t = step_terms(sc, x0, &vec![i; n], z.view(), model, var, grid)?;
        terms.push(t.mean().unwrap_or(0.0));
        total += &t;
    }
    Ok(ElboEstimate {
        per_image: total,
        terms,
        dim: d,
    })
}

// ANCHOR: elbo_sampled
/// The unbiased estimate `L_T + Σ_{i <= head} term_i + Σ_j |B_j| term_{i_j}`: the first `head`
/// steps (where a trained network's terms are largest and vary most, roughly as `1/i`) are
/// computed exactly, and the remaining steps `head+1..=S` are cut into `draws` consecutive
/// blocks `B_j` of near-equal size with one step `i_j` drawn uniformly in each block, per image
/// (`head + draws` model calls on all images). Each block's term is an unbiased estimate of
/// that block's sum, so the total is unbiased for the full bound; the mean over images carries
/// the standard error of [`ElboEstimate::bpd`].
#[allow(clippy::too_many_arguments)]
pub fn elbo_sampled(
    sc: &SdeChain,
    x0: ArrayView2<f64>,
    model: EpsModel,
    var: ReverseVariance,
    grid: Grid,
    head: usize,
    draws: usize,
    rng: &mut crate::rng::Rng,
) -> Result<ElboEstimate> {
    check_data(x0, grid)?;
    let s = sc.steps();
    if head > s {
        return Err(Error::param(
            "head",
            format!("{head} exact steps exceed S = {s}"),
        ));
    }
    let rest = s - head;
    if (draws == 0 && rest > 0) || draws > rest {
        return Err(Error::param(
            "draws",
            format!("need between 1 and {rest} sampled steps per image, got {draws}"),
        ));
    }
    let (n, d) = x0.dim();
    let mut total = sc.chain.prior_kl(x0)?;
    for i in 1..=head {
        let z = normals(rng, n, d);
        total += &step_terms(sc, x0, &vec![i; n], z.view(), model, var, grid)?;
    }
    for j in 0..draws {
        // Block j is lo..=hi.
        let (lo, hi) = (head + 1 + j * rest / draws, head + (j + 1) * rest / draws);
        let steps: Vec<usize> = (0..n).map(|_| rng.random_range(lo..=hi)).collect();
        let z = normals(rng, n, d);
        let t = step_terms(sc, x0, &steps, z.view(), model, var, grid)?;
        total.scaled_add((hi + 1 - lo) as f64, &t);
    }
    Ok(ElboEstimate {
        per_image: total,
        terms: vec![],
        dim: d,
    })
}
// ANCHOR_END: elbo_sampled

/// A trained network's `eps_theta(x_r, t_r)` with one time per row, in chunks of
/// `score.chunk` rows: the [`EpsModel`] of a checkpoint on the chain `sc`. A network that
/// predicts `x0` or `v` is converted to `eps` with the scale `sqrt(abar_i)` and std
/// `sqrt(1 − abar_i)` of the row's step (ledger Ac07).
pub fn net_eps_rows(
    score: &NetScore,
    sc: &SdeChain,
    x: ArrayView2<f64>,
    t: &[f64],
) -> Result<Array2<f64>> {
    let mut out = net_output_rows(score, x, t)?;
    if score.prediction != Prediction::Eps {
        let sch = sc.chain.schedule();
        for (r, &ti) in t.iter().enumerate() {
            let i = sc.step_of(ti);
            let (a, s) = (sch.sqrt_alpha_bar(i)?, sch.sqrt_one_minus_alpha_bar(i)?);
            for j in 0..x.ncols() {
                let (xv, o) = (x[[r, j]], out[[r, j]]);
                out[[r, j]] = match score.prediction {
                    Prediction::X0 => (xv - a * o) / s,
                    Prediction::V => (a * o + s * xv) / (a * a + s * s),
                    Prediction::Eps => o,
                };
            }
        }
    }
    Ok(out)
}

fn net_output_rows(score: &NetScore, x: ArrayView2<f64>, t: &[f64]) -> Result<Array2<f64>> {
    let (n, d) = x.dim();
    let mut out = Array2::zeros((n, d));
    let mut start = 0;
    while start < n {
        let m = score.chunk.min(n - start);
        let rows = x.slice(s![start..start + m, ..]);
        let xt = Tensor::from_vec(&[m, d], rows.iter().map(|&v| v as f32).collect())?;
        let mut g = Graph::<f32>::inference();
        let e = score
            .net
            .eps(&mut g, &score.store, &xt, &t[start..start + m])?;
        for (o, &v) in out
            .slice_mut(s![start..start + m, ..])
            .iter_mut()
            .zip(e.as_slice())
        {
            *o = v as f64;
        }
        start += m;
    }
    Ok(out)
}
