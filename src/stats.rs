//! Statistical checks used to prove samplers: the energy distance between two samples and its
//! permutation test, and CLT bounds for sample means and covariances.
//!
//! A sampler fed the exact score must produce the target distribution; these tests say so with
//! a stated false-alarm rate, and the same tests must reject a deliberately broken sampler.

use crate::{Error, Result};
use ndarray::{Array1, Array2, ArrayView2, Axis};
use rand::seq::SliceRandom;

/// Pairwise Euclidean distances of the rows of `z` (`n × n`).
fn distance_matrix(z: ArrayView2<f64>) -> Array2<f64> {
    let n = z.nrows();
    let mut d = Array2::zeros((n, n));
    for i in 0..n {
        for j in (i + 1)..n {
            let mut s = 0.0;
            for k in 0..z.ncols() {
                let t = z[[i, k]] - z[[j, k]];
                s += t * t;
            }
            let v = s.sqrt();
            d[[i, j]] = v;
            d[[j, i]] = v;
        }
    }
    d
}

/// Energy distance from a precomputed pooled distance matrix, where `first[i]` says whether
/// pooled row `i` belongs to the first sample:
/// `2 E|X-Y| - E|X-X'| - E|Y-Y'|` with the V-statistic (all pairs) estimator.
fn energy_from_matrix(d: &Array2<f64>, first: &[bool]) -> f64 {
    let (mut xy, mut xx, mut yy) = (0.0, 0.0, 0.0);
    let n = first.iter().filter(|&&f| f).count() as f64;
    let m = first.len() as f64 - n;
    for i in 0..first.len() {
        for j in 0..first.len() {
            let v = d[[i, j]];
            match (first[i], first[j]) {
                (true, true) => xx += v,
                (false, false) => yy += v,
                _ => xy += v,
            }
        }
    }
    // xy counts each cross pair twice (i in X, j in Y and the reverse).
    xy / (n * m) - xx / (n * n) - yy / (m * m)
}

/// The energy distance between the empirical distributions of the rows of `x` and `y`
/// (Székely & Rizzo): zero exactly when the distributions are equal, positive otherwise.
pub fn energy_distance(x: ArrayView2<f64>, y: ArrayView2<f64>) -> Result<f64> {
    check_pair(x, y)?;
    let pooled = pool(x, y);
    let first: Vec<bool> = (0..pooled.nrows()).map(|i| i < x.nrows()).collect();
    Ok(energy_from_matrix(&distance_matrix(pooled.view()), &first))
}

fn check_pair(x: ArrayView2<f64>, y: ArrayView2<f64>) -> Result<()> {
    if x.ncols() != y.ncols() {
        return Err(Error::Shape(format!(
            "samples have {} and {} columns",
            x.ncols(),
            y.ncols()
        )));
    }
    if x.nrows() < 2 || y.nrows() < 2 {
        return Err(Error::param(
            "samples",
            "each sample needs at least two rows",
        ));
    }
    if x.iter().chain(y.iter()).any(|v| !v.is_finite()) {
        return Err(Error::NonFinite("a sample contains NaN or infinity".into()));
    }
    Ok(())
}

/// The pooled sample `[x; y]` (columns already checked equal).
fn pool(x: ArrayView2<f64>, y: ArrayView2<f64>) -> Array2<f64> {
    let mut p = Array2::zeros((x.nrows() + y.nrows(), x.ncols()));
    p.slice_mut(ndarray::s![..x.nrows(), ..]).assign(&x);
    p.slice_mut(ndarray::s![x.nrows().., ..]).assign(&y);
    p
}

/// The outcome of a two-sample permutation test.
#[derive(Clone, Copy, Debug)]
pub struct TwoSample {
    /// The observed energy distance.
    pub statistic: f64,
    /// The permutation p-value `(1 + #{perm >= observed}) / (1 + permutations)`.
    pub p_value: f64,
}

impl TwoSample {
    /// Whether the test rejects "same distribution" at false-alarm rate `alpha`. Under the null
    /// hypothesis the permutation p-value is super-uniform, so `P(p <= alpha) <= alpha`.
    pub fn rejects(&self, alpha: f64) -> bool {
        self.p_value <= alpha
    }
}

/// Energy-distance permutation test of "the rows of `x` and `y` come from the same
/// distribution", with `permutations` random relabellings drawn from `seed`.
pub fn energy_test(
    x: ArrayView2<f64>,
    y: ArrayView2<f64>,
    permutations: usize,
    seed: u64,
) -> Result<TwoSample> {
    check_pair(x, y)?;
    if permutations == 0 {
        return Err(Error::param("permutations", "must be at least 1"));
    }
    let pooled = pool(x, y);
    let d = distance_matrix(pooled.view());
    let mut labels: Vec<bool> = (0..pooled.nrows()).map(|i| i < x.nrows()).collect();
    let observed = energy_from_matrix(&d, &labels);
    let mut rng = crate::rng::seeded(seed);
    let mut at_least = 0usize;
    for _ in 0..permutations {
        labels.shuffle(&mut rng);
        if energy_from_matrix(&d, &labels) >= observed {
            at_least += 1;
        }
    }
    Ok(TwoSample {
        statistic: observed,
        p_value: (1 + at_least) as f64 / (1 + permutations) as f64,
    })
}

/// Sample mean of the rows.
pub fn mean(x: ArrayView2<f64>) -> Array1<f64> {
    x.mean_axis(Axis(0))
        .unwrap_or_else(|| Array1::zeros(x.ncols()))
}

/// Unbiased sample covariance of the rows.
pub fn covariance(x: ArrayView2<f64>) -> Array2<f64> {
    let n = x.nrows();
    let m = mean(x);
    let c = &x - &m;
    c.t().dot(&c) / (n.max(2) - 1) as f64
}

/// The two-sided standard-normal quantile `z` with `P(|Z| > z) = alpha`, by bisection on
/// `erfc` (used to turn a stated false-alarm rate into a CLT bound).
pub fn normal_quantile_two_sided(alpha: f64) -> Result<f64> {
    if !(alpha > 0.0 && alpha < 1.0) {
        return Err(Error::param("alpha", format!("{alpha} is not in (0, 1)")));
    }
    let tail = |z: f64| libm::erfc(z / std::f64::consts::SQRT_2);
    let (mut lo, mut hi) = (0.0f64, 40.0f64);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if tail(mid) > alpha {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(0.5 * (lo + hi))
}
