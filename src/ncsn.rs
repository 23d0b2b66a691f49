//! The improved techniques for noise-conditional score networks (Song & Ermon 2020, "NCSNv2",
//! as summarised in document 000 after eq. 1.15):
//!
//! 1. `sigma_1` from the data: the largest pairwise Euclidean distance ([`max_pairwise_distance`]);
//! 2. the geometric ratio `gamma` from the shell-overlap condition, eq. 1.16
//!    ([`shell_overlap`], [`geometric_ratio`]), and the number of levels ([`num_levels`]);
//! 3. the conditioning `s_theta(x, sigma) = s_theta(x) / sigma` ([`divide_by_sigma`],
//!    [`NoiseConditioned`]);
//! 4. the Langevin step size from the variance ratio of Proposition 3, eq. 1.17
//!    ([`langevin_variance_ratio`], [`langevin_step_size`]);
//! 5. the exponential moving average of the parameters, eq. 1.18 ([`Ema`], [`ema_update`]).
//!
//! Step convention of annealed Langevin dynamics (NCSNv2 Alg. 1, 003 eq. 2): at level `i`,
//! `x <- x + alpha_i s(x, sigma_i) + sqrt(2 alpha_i) z` with `alpha_i = eps sigma_i^2 / sigma_L^2`.

use ndarray::{Array2, ArrayView2};

use crate::error::{Error, Result};
use crate::schedule::sigma::SigmaSequence;
use crate::score::{Level, ScoreModel};

/// Standard normal CDF `Phi(x) = erfc(-x/sqrt 2) / 2` (accurate in both tails).
// TODO(lead): switch to `gaussian::std_normal_cdf` once it lands.
fn std_normal_cdf(x: f64) -> f64 {
    0.5 * libm::erfc(-x / std::f64::consts::SQRT_2)
}

// ---------------------------------------------------------------------------------------------
// Technique 1: sigma_1.

/// The largest Euclidean distance between two rows of `data` (shape `n × d`), computed exactly
/// over all `n(n-1)/2` pairs: NCSNv2's choice of `sigma_1` (000 text before
/// eq. 1.16: "as large as the (maximum) pairwise Euclidean distance").
///
/// Errors: [`Error::Shape`] for fewer than two rows or zero columns, [`Error::NonFinite`] for a
/// NaN or infinite entry.
// ANCHOR: max_pairwise_distance
pub fn max_pairwise_distance(data: ArrayView2<f64>) -> Result<f64> {
    let (n, d) = data.dim();
    if n < 2 || d == 0 {
        return Err(Error::Shape(format!(
            "need at least 2 rows and 1 column, got {n} × {d}"
        )));
    }
    if data.iter().any(|v| !v.is_finite()) {
        return Err(Error::NonFinite("data contains NaN or infinity".into()));
    }
    let mut best = 0.0f64;
    for i in 0..n {
        let a = data.row(i);
        for j in (i + 1)..n {
            let b = data.row(j);
            let sq: f64 = a.iter().zip(b.iter()).map(|(p, q)| (p - q) * (p - q)).sum();
            best = best.max(sq);
        }
    }
    Ok(best.sqrt())
}
// ANCHOR_END: max_pairwise_distance

// ---------------------------------------------------------------------------------------------
// Technique 2: the geometric ratio and the number of levels.

/// The left side of eq. 1.16, `Phi(sqrt(2D)(gamma-1) + 3 gamma) - Phi(sqrt(2D)(gamma-1) - 3 gamma)`:
/// the (large-D, Gaussian-radius) probability that a sample of `N(0, sigma_i^2 I)` has a norm
/// within `3 sigma_{i-1}/sqrt 2` of `sqrt(D) sigma_{i-1}`, the typical radius of the previous,
/// larger level, where `gamma = sigma_{i-1}/sigma_i` (ledger A1.16).
// ANCHOR: shell_overlap
pub fn shell_overlap(gamma: f64, dim: usize) -> f64 {
    let k = (2.0 * dim as f64).sqrt();
    std_normal_cdf(k * (gamma - 1.0) + 3.0 * gamma)
        - std_normal_cdf(k * (gamma - 1.0) - 3.0 * gamma)
}
// ANCHOR_END: shell_overlap

/// The ratio `gamma > 1` that solves eq. 1.16, `shell_overlap(gamma, dim) = target` (the
/// document uses `target = 0.5`), by bisection.
///
/// For `D >= 5` the overlap rises from `Phi(3) - Phi(-3) = 0.9973` at `gamma = 1` to a single
/// maximum and then falls to 0 (its derivative changes sign once, where
/// `3 sqrt(2D) gamma (gamma - 1) = ln((sqrt(2D)+3)/(sqrt(2D)-3))/2`), so every target in
/// `(0, Phi(3) - Phi(-3))` has exactly one root above 1; it is bracketed by `[1, g]` with `g`
/// found by doubling `g - 1`.
///
/// Errors: [`Error::InvalidParameter`] for `dim < 5` (for `sqrt(2D) <= 3` the overlap does not
/// fall to 0 and the equation has no usable root) or a target outside that interval.
// ANCHOR: geometric_ratio
pub fn geometric_ratio(dim: usize, target: f64) -> Result<f64> {
    if dim < 5 {
        return Err(Error::param(
            "dim",
            format!("eq. 1.16 needs D >= 5 (sqrt(2D) > 3), got {dim}"),
        ));
    }
    let f = |g: f64| shell_overlap(g, dim) - target;
    let at_one = f(1.0) + target;
    if !(target > 0.0 && target < at_one) {
        return Err(Error::param(
            "target",
            format!("must lie in (0, {at_one:.6}), got {target}"),
        ));
    }
    let (mut lo, mut step) = (1.0, 1.0 / (2.0 * dim as f64).sqrt());
    let mut hi = lo + step;
    while f(hi) > 0.0 {
        // f(1) > 0 and f -> -target < 0, so this terminates; keep lo on the positive side.
        lo = hi;
        step *= 2.0;
        hi = 1.0 + step;
    }
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi {
            break;
        }
        if f(mid) > 0.0 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(0.5 * (lo + hi))
}
// ANCHOR_END: geometric_ratio

/// The smallest number of levels `L >= 2` for which the geometric sequence from `sigma_1` to
/// `sigma_L` has ratio at most `gamma`: `L = 1 + ceil(ln(sigma_1/sigma_L) / ln gamma)`.
///
/// Errors: [`Error::InvalidParameter`] for non-finite or non-positive sigmas, `sigma_l >=
/// sigma_1`, or `gamma <= 1`; also when `L` would not fit in `usize`.
// ANCHOR: num_levels
pub fn num_levels(sigma_1: f64, sigma_l: f64, gamma: f64) -> Result<usize> {
    for (name, v) in [("sigma_1", sigma_1), ("sigma_l", sigma_l)] {
        if !v.is_finite() || v <= 0.0 {
            return Err(Error::param(
                name,
                format!("must be finite and positive, got {v}"),
            ));
        }
    }
    if sigma_l >= sigma_1 {
        return Err(Error::param("sigma_l", "must be below sigma_1"));
    }
    if !gamma.is_finite() || gamma <= 1.0 {
        return Err(Error::param(
            "gamma",
            format!("must be finite and > 1, got {gamma}"),
        ));
    }
    let span = (sigma_1 / sigma_l).ln();
    let gaps = (span / gamma.ln()).ceil();
    if gaps > 1e9 {
        return Err(Error::param(
            "gamma",
            "too close to 1: more than 1e9 levels",
        ));
    }
    let mut gaps = (gaps as usize).max(1);
    // ln and the division carry a few ulps of rounding: if one gap fewer already meets gamma up
    // to that rounding (relative 1e-12 >> a few ulps), it is the exact answer.
    if gaps > 1 && (span / (gaps - 1) as f64).exp() <= gamma * (1.0 + 1e-12) {
        gaps -= 1;
    }
    Ok(gaps + 1)
}
// ANCHOR_END: num_levels

/// NCSNv2's sigma sequence for a data set: `sigma_1` = the largest pairwise distance,
/// `gamma` from eq. 1.16 with the given target (0.5 in the document) and `D = d`, and the
/// smallest `L` whose geometric sequence down to `sigma_min` has ratio `<= gamma`.
pub fn ncsnv2_sigmas(data: ArrayView2<f64>, sigma_min: f64, target: f64) -> Result<SigmaSequence> {
    let sigma_1 = max_pairwise_distance(data)?;
    let gamma = geometric_ratio(data.ncols(), target)?;
    let levels = num_levels(sigma_1, sigma_min, gamma)?;
    SigmaSequence::geometric(sigma_1, sigma_min, levels)
}

// ---------------------------------------------------------------------------------------------
// Technique 3: conditioning on sigma.

/// `s_theta(x, sigma) = s_theta(x) / sigma`: an unconditional network output divided by the noise
/// level (000 text after eq. 1.16).
///
/// Errors: [`Error::InvalidParameter`] unless `sigma` is finite and positive.
pub fn divide_by_sigma(output: ArrayView2<f64>, sigma: f64) -> Result<Array2<f64>> {
    if !sigma.is_finite() || sigma <= 0.0 {
        return Err(Error::param(
            "sigma",
            format!("must be finite and positive, got {sigma}"),
        ));
    }
    Ok(output.mapv(|v| v / sigma))
}

/// A score model `s(x, sigma) = inner(x) / sigma` built from an unconditional model `inner`
/// (which is called with the same level and should ignore it). The level's `std` must be
/// positive (samplers take it from a validated schedule).
#[derive(Clone, Debug)]
pub struct NoiseConditioned<M> {
    /// The unconditional model.
    pub inner: M,
}

impl<M: ScoreModel> ScoreModel for NoiseConditioned<M> {
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    fn score(&self, x: ArrayView2<f64>, level: Level) -> Array2<f64> {
        self.inner.score(x, level) / level.std
    }
}

// ---------------------------------------------------------------------------------------------
// Technique 4: the Langevin step size.

fn check_langevin(sigma_min: f64, gamma: f64, steps: usize) -> Result<()> {
    if !sigma_min.is_finite() || sigma_min <= 0.0 {
        return Err(Error::param(
            "sigma_min",
            format!("must be finite and positive, got {sigma_min}"),
        ));
    }
    if !gamma.is_finite() || gamma <= 1.0 {
        return Err(Error::param(
            "gamma",
            format!("must be finite and > 1, got {gamma}"),
        ));
    }
    if steps == 0 {
        return Err(Error::param(
            "steps",
            "need T >= 1 Langevin steps per level",
        ));
    }
    Ok(())
}

/// `s_T^2 / sigma_i^2` of NCSNv2 Proposition 3 (eq. 1.17, ledger A1.17): the variance ratio after
/// `T` Langevin steps at level `i` with step `alpha_i = eps sigma_i^2 / sigma_L^2`, started from
/// `N(0, sigma_{i-1}^2 I)` with the exact score of `N(0, sigma_i^2 I)` (data at a single point):
///
/// `(1 - u)^{2T} (gamma^2 - r) + r`, `u = eps / sigma_L^2`, `r = 2 eps / (sigma_L^2 - sigma_L^2
/// (1-u)^2) = 2 / (2 - u)`; the last form avoids the cancellation of the printed one for small
/// `u`. It does not depend on `i`.
///
/// Errors: [`Error::InvalidParameter`] for `sigma_min` not positive, `gamma <= 1`, `steps = 0`,
/// or `eps` outside `(0, 2 sigma_L^2)` (outside that interval Langevin on a Gaussian diverges).
// ANCHOR: langevin_variance_ratio
pub fn langevin_variance_ratio(eps: f64, sigma_min: f64, gamma: f64, steps: usize) -> Result<f64> {
    check_langevin(sigma_min, gamma, steps)?;
    let u = eps / (sigma_min * sigma_min);
    if !(u > 0.0 && u < 2.0) {
        return Err(Error::param(
            "eps",
            format!(
                "must lie in (0, 2 sigma_L^2) = (0, {}), got {eps}",
                2.0 * sigma_min * sigma_min
            ),
        ));
    }
    Ok(ratio_of_u(u, gamma, steps))
}
// ANCHOR_END: langevin_variance_ratio

fn ratio_of_u(u: f64, gamma: f64, steps: usize) -> f64 {
    let fixed = 2.0 / (2.0 - u);
    (1.0 - u).powf(2.0 * steps as f64) * (gamma * gamma - fixed) + fixed
}

/// The step size `eps` of eq. 1.17 (000: "choose T as large as the budget allows, then eps so
/// that `s_T^2/sigma_i^2` is as close to `target` (1) as possible").
///
/// The ratio depends on `eps` only through `u = eps/sigma_L^2`; it equals `gamma^2` at `u = 0`
/// and `r = 2/(2-u) > 1` is its limit for `T -> infinity`, so it is `> 1` for every `u`: the
/// target 1 itself is never reached. This searches `u` in `(0, 1]`: a log grid of 4000 points
/// then golden-section refinement. If the target is below the smallest attainable ratio the
/// minimiser is returned; otherwise the smallest `eps` at which the ratio equals the target
/// (bisection on the first grid interval that crosses it).
///
/// Errors: as [`langevin_variance_ratio`], and [`Error::InvalidParameter`] for a target outside
/// `(0, gamma^2)`.
// ANCHOR: langevin_step_size
pub fn langevin_step_size(sigma_min: f64, gamma: f64, steps: usize, target: f64) -> Result<f64> {
    check_langevin(sigma_min, gamma, steps)?;
    if !(target > 0.0 && target < gamma * gamma) {
        return Err(Error::param(
            "target",
            format!(
                "must lie in (0, gamma^2) = (0, {}), got {target}",
                gamma * gamma
            ),
        ));
    }
    let r = |u: f64| ratio_of_u(u, gamma, steps);
    const N: usize = 4000;
    let grid: Vec<f64> = (0..N)
        .map(|j| 10f64.powf(-12.0 + 12.0 * j as f64 / (N - 1) as f64))
        .collect();
    let vals: Vec<f64> = grid.iter().map(|&u| r(u)).collect();
    let u = if let Some(j) = vals.iter().position(|&v| v <= target) {
        // Crossing between grid[j-1] (or u = 0, where r = gamma^2 > target) and grid[j].
        let (mut lo, mut hi) = (if j == 0 { 0.0 } else { grid[j - 1] }, grid[j]);
        for _ in 0..200 {
            let mid = 0.5 * (lo + hi);
            if mid <= lo || mid >= hi {
                break;
            }
            if r(mid) > target {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        0.5 * (lo + hi)
    } else {
        let j = vals
            .iter()
            .enumerate()
            .min_by(|a, b| a.1.total_cmp(b.1))
            .map(|(j, _)| j)
            .expect("grid is non-empty");
        let (mut a, mut b) = (grid[j.saturating_sub(1)], grid[(j + 1).min(N - 1)]);
        let phi = 0.5 * (5f64.sqrt() - 1.0);
        for _ in 0..200 {
            let c = b - phi * (b - a);
            let d = a + phi * (b - a);
            if r(c) <= r(d) {
                b = d;
            } else {
                a = c;
            }
        }
        0.5 * (a + b)
    };
    Ok(u * sigma_min * sigma_min)
}
// ANCHOR_END: langevin_step_size

// ---------------------------------------------------------------------------------------------
// Technique 5: exponential moving average.

/// One EMA step in place, `theta' <- m theta' + (1 - m) theta` (eq. 1.18, ledger A1.18).
///
/// Errors: [`Error::InvalidParameter`] unless `0 <= m < 1`; [`Error::Shape`] for slices of
/// different lengths; [`Error::NonFinite`] for a non-finite `theta`.
// ANCHOR: ema_update
pub fn ema_update(shadow: &mut [f64], theta: &[f64], m: f64) -> Result<()> {
    if !(0.0..1.0).contains(&m) {
        return Err(Error::param(
            "m",
            format!("momentum must lie in [0, 1), got {m}"),
        ));
    }
    if shadow.len() != theta.len() {
        return Err(Error::Shape(format!(
            "EMA has {} parameters, update has {}",
            shadow.len(),
            theta.len()
        )));
    }
    if theta.iter().any(|v| !v.is_finite()) {
        return Err(Error::NonFinite(
            "EMA update contains NaN or infinity".into(),
        ));
    }
    for (s, &t) in shadow.iter_mut().zip(theta) {
        *s = m * *s + (1.0 - m) * t;
    }
    Ok(())
}
// ANCHOR_END: ema_update

/// The exponential moving average `theta'` of a parameter vector (eq. 1.18).
#[derive(Clone, Debug, PartialEq)]
pub struct Ema {
    momentum: f64,
    shadow: Vec<f64>,
}

impl Ema {
    /// An average with momentum `m` in `[0, 1)`, started at `initial`.
    pub fn new(momentum: f64, initial: &[f64]) -> Result<Self> {
        if !(0.0..1.0).contains(&momentum) {
            return Err(Error::param(
                "m",
                format!("momentum must lie in [0, 1), got {momentum}"),
            ));
        }
        if initial.iter().any(|v| !v.is_finite()) {
            return Err(Error::NonFinite(
                "EMA start contains NaN or infinity".into(),
            ));
        }
        Ok(Ema {
            momentum,
            shadow: initial.to_vec(),
        })
    }

    /// Folds in the parameters after one more training step.
    pub fn update(&mut self, theta: &[f64]) -> Result<()> {
        ema_update(&mut self.shadow, theta, self.momentum)
    }

    /// The averaged parameters `theta'`.
    pub fn params(&self) -> &[f64] {
        &self.shadow
    }

    /// The momentum `m`.
    pub fn momentum(&self) -> f64 {
        self.momentum
    }
}
