//! Metrics for 2-D models whose data distribution is a Gaussian mixture with a known density:
//! the kernel distance of samples to exact draws, the learned score's error against the exact
//! mixture score, and the PF-ODE negative log-likelihood's gap to the true entropy (ledger
//! Dc47, Dc48 through [`crate::likelihood`]).

use crate::error::{Error, Result};
use crate::gaussian::GaussianMixture;
use crate::likelihood::{log_likelihood, mixture_score_divergence, Divergence, Probe};
use crate::rng::seeded;
use crate::sampler::ode::Rk45Options;
use crate::score::{MixtureScore, ScoreModel};
use crate::sde::Sde;
use ndarray::{Array1, ArrayView2};

/// The unbiased squared maximum mean discrepancy with the Gaussian kernel
/// `k(a, b) = exp(−‖a − b‖² / (2 h²))`:
/// `MMD² = mean_{i≠j} k(x_i, x_j) + mean_{i≠j} k(y_i, y_j) − 2 mean_{i,j} k(x_i, y_j)`,
/// zero in expectation iff the two distributions are equal (the kernel is characteristic).
pub fn mmd2_gaussian(x: ArrayView2<f64>, y: ArrayView2<f64>, h: f64) -> Result<f64> {
    if x.nrows() < 2 || y.nrows() < 2 || x.ncols() != y.ncols() {
        return Err(Error::Shape(format!(
            "samples {:?} and {:?}: need two or more rows of the same width",
            x.dim(),
            y.dim()
        )));
    }
    if !(h > 0.0 && h.is_finite()) {
        return Err(Error::param("h", format!("bandwidth {h} must be positive")));
    }
    let k = |a: ndarray::ArrayView1<f64>, b: ndarray::ArrayView1<f64>| {
        let d2: f64 = a.iter().zip(b).map(|(p, q)| (p - q) * (p - q)).sum();
        (-d2 / (2.0 * h * h)).exp()
    };
    let within = |z: ArrayView2<f64>| {
        let n = z.nrows();
        let mut s = 0.0;
        for i in 0..n {
            for j in 0..n {
                if i != j {
                    s += k(z.row(i), z.row(j));
                }
            }
        }
        s / (n * (n - 1)) as f64
    };
    let mut cross = 0.0;
    for a in x.rows() {
        for b in y.rows() {
            cross += k(a, b);
        }
    }
    Ok(within(x) + within(y) - 2.0 * cross / (x.nrows() * y.nrows()) as f64)
}

/// The learned score's error at time `t`, weighted by the perturbed marginal:
/// `sigma(t)² E_{x ~ p_t} ‖s_theta(x, t) − ∇ log p_t(x)‖² / d` with `n` draws of the exact
/// perturbed mixture `p_t` (the DSM weighting `lambda = sigma²` of the training loss, so the
/// number is an `eps`-prediction error).
pub fn score_error(
    sde: &dyn Sde,
    model: &dyn ScoreModel,
    mixture: &GaussianMixture,
    t: f64,
    n: usize,
    seed: u64,
) -> Result<f64> {
    if n == 0 {
        return Err(Error::param("n", "need at least one point"));
    }
    if model.dim() != mixture.dim() {
        return Err(Error::Shape(format!(
            "a model of dimension {} for data of dimension {}",
            model.dim(),
            mixture.dim()
        )));
    }
    let level = sde.level(t)?;
    let pt = mixture.perturbed(level.scale, level.std)?;
    let x = pt.sample_n(n, &mut seeded(seed));
    let exact = MixtureScore::new(mixture.clone()).score(x.view(), level);
    let learned = model.score(x.view(), level);
    let d2: f64 = (&learned - &exact).iter().map(|v| v * v).sum();
    let e = level.std * level.std * d2 / (n * mixture.dim()) as f64;
    crate::error::ensure_finite("score error", e)
}

/// The PF-ODE negative log-likelihood of the model minus the true one, per point, at `n`
/// exact draws of the mixture: `−log p_theta,eps(x) + log p_eps(x)` with `p_eps` the mixture
/// perturbed to `t = eps` (the density the ODE computes). Its mean is
/// `KL(p_eps ‖ p_theta,eps) >= 0`, zero for the exact score up to the solver's tolerance.
/// The divergence of the learned score is Hutchinson's with 4 Rademacher probes.
pub fn nll_gap(
    sde: &dyn Sde,
    model: &dyn ScoreModel,
    mixture: &GaussianMixture,
    eps: f64,
    n: usize,
    seed: u64,
) -> Result<Array1<f64>> {
    let x = mixture.sample_n(n, &mut seeded(seed));
    let opts = Rk45Options::new(1e-6, 1e-6)?;
    let ll = log_likelihood(
        sde,
        model,
        x.view(),
        eps,
        Divergence::Hutchinson {
            probes: 4,
            probe: Probe::Rademacher,
            h: 1e-4,
        },
        opts,
        &mut seeded(seed ^ 0x0de),
    )?;
    let level = sde.level(eps)?;
    let pe = mixture.perturbed(level.scale, level.std)?;
    let truth = pe.log_density_batch(x.view())?;
    Ok(&truth - &ll.log_p)
}

/// The same gap for the exact mixture score with its closed-form divergence (a check of the
/// ODE machinery: the mean is zero up to the solver's tolerance).
pub fn nll_gap_exact_score(
    sde: &dyn Sde,
    oracle: &MixtureScore,
    eps: f64,
    n: usize,
    seed: u64,
) -> Result<Array1<f64>> {
    let x = oracle.mixture.sample_n(n, &mut seeded(seed));
    let div = |y: ArrayView2<f64>, l| mixture_score_divergence(oracle, y, l);
    let ll = log_likelihood(
        sde,
        oracle,
        x.view(),
        eps,
        Divergence::Analytic(&div),
        Rk45Options::new(1e-8, 1e-8)?,
        &mut seeded(seed),
    )?;
    let level = sde.level(eps)?;
    let pe = oracle.mixture.perturbed(level.scale, level.std)?;
    Ok(&pe.log_density_batch(x.view())? - &ll.log_p)
}
