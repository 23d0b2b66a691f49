//! Finite Gaussian mixtures `p(x) = Σ_k w_k N(x; μ_k, Σ_k)`: exact densities, scores and
//! responsibilities, and the two operations that keep a mixture a mixture: the push-forward
//! through a linear forward process ([`GaussianMixture::perturbed`]) and conditioning on some
//! coordinates ([`GaussianMixture::conditional`]).

use super::mvn::{check_indices, MvGaussian};
use super::{check_finite, check_len};
use crate::error::{Error, Result};
use ndarray::{Array1, Array2, ArrayView1, ArrayView2};
use std::f64::consts::PI;

/// Accepted distance of the weights' sum from 1 (then the weights are renormalised).
const WEIGHT_SUM_TOL: f64 = 1e-9;

/// A mixture of full-covariance Gaussians with weights summing to 1.
#[derive(Clone, Debug, PartialEq)]
pub struct GaussianMixture {
    weights: Array1<f64>,
    log_weights: Array1<f64>,
    components: Vec<MvGaussian>,
}

/// `ln Σ_k exp(a_k)`, shifted by the maximum so that nothing overflows.
fn log_sum_exp(a: &[f64]) -> f64 {
    let m = a.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY || m.is_nan() {
        return m;
    }
    m + a.iter().map(|&v| (v - m).exp()).sum::<f64>().ln()
}

impl GaussianMixture {
    /// A mixture. Errors: no components, lengths differ, components of different dimensions,
    /// a weight that is negative or non-finite, or weights whose sum is not 1 (to `1e-9`).
    pub fn new(weights: Array1<f64>, components: Vec<MvGaussian>) -> Result<Self> {
        if components.is_empty() {
            return Err(Error::param(
                "components",
                "a mixture needs at least one component",
            ));
        }
        check_len("weights", weights.len(), components.len())?;
        check_finite("weights", weights.iter())?;
        if let Some(w) = weights.iter().find(|&&w| w < 0.0) {
            return Err(Error::param(
                "weights",
                format!("weights must be >= 0, got {w}"),
            ));
        }
        let sum = weights.sum();
        if (sum - 1.0).abs() > WEIGHT_SUM_TOL {
            return Err(Error::param(
                "weights",
                format!("weights sum to {sum}, not 1"),
            ));
        }
        let d = components[0].dim();
        for c in &components {
            check_len("component", c.dim(), d)?;
        }
        Ok(Self::normalised(weights, components))
    }

    /// Builds from non-negative weights with a positive sum (renormalised), no checks.
    fn normalised(weights: Array1<f64>, components: Vec<MvGaussian>) -> Self {
        let weights = &weights / weights.sum();
        let log_weights = weights.mapv(f64::ln);
        Self {
            weights,
            log_weights,
            components,
        }
    }

    /// `k` isotropic modes `N(r (cos 2πi/k, sin 2πi/k), std² I)` with equal weights on the circle
    /// of radius `radius` (`ring(8, 2.0, 0.1)` is the standard 8-mode ring).
    pub fn ring(k: usize, radius: f64, std: f64) -> Result<Self> {
        if k == 0 {
            return Err(Error::param("k", "need at least one mode"));
        }
        crate::error::ensure_finite("radius", radius)?;
        check_std(std)?;
        let comps = (0..k)
            .map(|i| {
                let a = 2.0 * PI * i as f64 / k as f64;
                MvGaussian::isotropic(
                    Array1::from_vec(vec![radius * a.cos(), radius * a.sin()]),
                    std * std,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self::normalised(Array1::ones(k), comps))
    }

    /// A `k × k` grid of isotropic modes with equal weights, spaced `spacing` apart and centred on
    /// the origin: means `((i - (k-1)/2) spacing, (j - (k-1)/2) spacing)`.
    pub fn grid(k: usize, spacing: f64, std: f64) -> Result<Self> {
        if k == 0 {
            return Err(Error::param("k", "need at least one mode per side"));
        }
        crate::error::ensure_finite("spacing", spacing)?;
        check_std(std)?;
        let c = (k as f64 - 1.0) / 2.0;
        let mut comps = Vec::with_capacity(k * k);
        for i in 0..k {
            for j in 0..k {
                let m = vec![(i as f64 - c) * spacing, (j as f64 - c) * spacing];
                comps.push(MvGaussian::isotropic(Array1::from_vec(m), std * std)?);
            }
        }
        Ok(Self::normalised(Array1::ones(k * k), comps))
    }

    /// A lopsided 2-D mixture: three correlated components with weights 0.6, 0.3, 0.1, so that
    /// any sampler that loses the relative weights of modes is caught.
    pub fn lopsided() -> Self {
        let comp = |m: [f64; 2], c: [[f64; 2]; 2]| {
            MvGaussian::new(
                Array1::from_vec(m.to_vec()),
                Array2::from_shape_fn((2, 2), |(i, j)| c[i][j]),
            )
            .expect("constant covariance is PD")
        };
        let comps = vec![
            comp([-1.5, -0.5], [[0.30, 0.12], [0.12, 0.20]]),
            comp([1.5, 1.0], [[0.15, -0.08], [-0.08, 0.25]]),
            comp([0.5, -2.0], [[0.05, 0.0], [0.0, 0.40]]),
        ];
        Self::normalised(Array1::from_vec(vec![0.6, 0.3, 0.1]), comps)
    }

    /// Dimension.
    pub fn dim(&self) -> usize {
        self.components[0].dim()
    }

    /// The weights `w_k`.
    pub fn weights(&self) -> &Array1<f64> {
        &self.weights
    }

    /// The components.
    pub fn components(&self) -> &[MvGaussian] {
        &self.components
    }

    /// `ln w_k + ln N(x; μ_k, Σ_k)` for every component, and the component scores.
    fn joint(&self, x: ArrayView1<f64>) -> (Vec<f64>, Vec<Array1<f64>>) {
        let mut lj = Vec::with_capacity(self.components.len());
        let mut sc = Vec::with_capacity(self.components.len());
        for (c, &lw) in self.components.iter().zip(&self.log_weights) {
            let (lp, s) = c.log_density_and_score(x);
            lj.push(lw + lp);
            sc.push(s);
        }
        (lj, sc)
    }

    fn joint_log(&self, x: ArrayView1<f64>) -> Vec<f64> {
        self.components
            .iter()
            .zip(&self.log_weights)
            .map(|(c, &lw)| lw + c.log_density_unchecked(x))
            .collect()
    }

    // ANCHOR: mixture_density
    /// `ln p(x) = ln Σ_k exp(ln w_k + ln N(x; μ_k, Σ_k))`, by log-sum-exp.
    pub fn log_density(&self, x: ArrayView1<f64>) -> Result<f64> {
        check_len("x", x.len(), self.dim())?;
        Ok(log_sum_exp(&self.joint_log(x)))
    }

    /// Responsibilities (component posteriors) `r_k(x) = w_k N(x; μ_k, Σ_k) / p(x)`.
    pub fn responsibilities(&self, x: ArrayView1<f64>) -> Result<Array1<f64>> {
        check_len("x", x.len(), self.dim())?;
        let lj = self.joint_log(x);
        let lse = log_sum_exp(&lj);
        Ok(Array1::from_iter(lj.iter().map(|&l| (l - lse).exp())))
    }

    /// Score `∇ ln p(x) = Σ_k r_k(x) (-Σ_k⁻¹ (x - μ_k))`.
    pub fn score(&self, x: ArrayView1<f64>) -> Result<Array1<f64>> {
        check_len("x", x.len(), self.dim())?;
        Ok(self.score_unchecked(x))
    }

    fn score_unchecked(&self, x: ArrayView1<f64>) -> Array1<f64> {
        let (lj, sc) = self.joint(x);
        let lse = log_sum_exp(&lj);
        let mut out = Array1::zeros(self.dim());
        for (l, s) in lj.iter().zip(&sc) {
            out.scaled_add((l - lse).exp(), s);
        }
        out
    }
    // ANCHOR_END: mixture_density

    /// Log-density of each row of an `n × d` array.
    pub fn log_density_batch(&self, x: ArrayView2<f64>) -> Result<Array1<f64>> {
        check_len("row", x.ncols(), self.dim())?;
        Ok(Array1::from_iter(
            x.rows()
                .into_iter()
                .map(|r| log_sum_exp(&self.joint_log(r))),
        ))
    }

    /// Score at each row of an `n × d` array.
    pub fn score_batch(&self, x: ArrayView2<f64>) -> Result<Array2<f64>> {
        check_len("row", x.ncols(), self.dim())?;
        let mut out = Array2::zeros(x.raw_dim());
        for (r, mut o) in x.rows().into_iter().zip(out.rows_mut()) {
            o.assign(&self.score_unchecked(r));
        }
        Ok(out)
    }

    // ANCHOR: mixture_sample
    /// One draw: a component `k` with probability `w_k` (inverse CDF of one uniform), then a
    /// draw from component `k`.
    pub fn sample(&self, rng: &mut impl rand::Rng) -> Array1<f64> {
        let u: f64 = rng.random::<f64>();
        let mut acc = 0.0;
        let mut k = self.components.len() - 1;
        for (i, &w) in self.weights.iter().enumerate() {
            acc += w;
            if u < acc {
                k = i;
                break;
            }
        }
        self.components[k].sample(rng)
    }
    // ANCHOR_END: mixture_sample

    /// `n` draws as the rows of an `n × d` array.
    pub fn sample_n(&self, n: usize, rng: &mut impl rand::Rng) -> Array2<f64> {
        let mut out = Array2::zeros((n, self.dim()));
        for mut row in out.rows_mut() {
            row.assign(&self.sample(rng));
        }
        out
    }

    // ANCHOR: mixture_moments
    /// Mixture mean `m = Σ_k w_k μ_k`.
    pub fn mean(&self) -> Array1<f64> {
        let mut m = Array1::zeros(self.dim());
        for (c, &w) in self.components.iter().zip(&self.weights) {
            m.scaled_add(w, c.mean());
        }
        m
    }

    /// Mixture covariance (law of total covariance)
    /// `Σ_k w_k [ Σ_k + (μ_k - m)(μ_k - m)ᵀ ]`.
    pub fn covariance(&self) -> Array2<f64> {
        let m = self.mean();
        let d = self.dim();
        let mut c = Array2::zeros((d, d));
        for (comp, &w) in self.components.iter().zip(&self.weights) {
            let r = comp.mean() - &m;
            c.scaled_add(w, comp.cov());
            for i in 0..d {
                for j in 0..d {
                    c[[i, j]] += w * r[i] * r[j];
                }
            }
        }
        c
    }
    // ANCHOR_END: mixture_moments

    // ANCHOR: perturbed
    /// The exact law of `x_t = s x_0 + σ z` for `x_0 ~ self`, `z ~ N(0, I)`:
    /// `Σ_k w_k N(s μ_k, s² Σ_k + σ² I)` (weights unchanged). Errors: non-finite `s`, `σ`, or a
    /// singular result (`s = σ = 0`).
    pub fn perturbed(&self, scale: f64, std: f64) -> Result<GaussianMixture> {
        let comps = self
            .components
            .iter()
            .map(|c| c.affine(scale, std))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            weights: self.weights.clone(),
            log_weights: self.log_weights.clone(),
            components: comps,
        })
    }
    // ANCHOR_END: perturbed

    /// The marginal of the coordinates `idx` (in that order): every component marginalised,
    /// weights unchanged.
    pub fn marginal(&self, idx: &[usize]) -> Result<GaussianMixture> {
        let comps = self
            .components
            .iter()
            .map(|c| c.marginal(idx))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            weights: self.weights.clone(),
            log_weights: self.log_weights.clone(),
            components: comps,
        })
    }

    // ANCHOR: mixture_conditional
    /// The exact conditional mixture of the unobserved coordinates (in increasing order) given
    /// `x[observed] = values`: component `k` becomes its Gaussian conditional and its weight
    /// becomes `w_k N(x_o; μ_{k,o}, Σ_{k,oo}) / Σ_j w_j N(x_o; μ_{j,o}, Σ_{j,oo})`.
    pub fn conditional(
        &self,
        observed: &[usize],
        values: ArrayView1<f64>,
    ) -> Result<GaussianMixture> {
        check_indices(observed, self.dim())?;
        let mut comps = Vec::with_capacity(self.components.len());
        let mut lw = Vec::with_capacity(self.components.len());
        for (c, &l) in self.components.iter().zip(&self.log_weights) {
            let (cond, log_lik) = c.conditional(observed, values)?;
            comps.push(cond);
            lw.push(l + log_lik);
        }
        let lse = log_sum_exp(&lw);
        if !lse.is_finite() {
            return Err(Error::NonFinite(format!(
                "the observation has log-likelihood {lse} under every component"
            )));
        }
        let weights = Array1::from_iter(lw.iter().map(|&l| (l - lse).exp()));
        Ok(Self::normalised(weights, comps))
    }
    // ANCHOR_END: mixture_conditional
}

fn check_std(std: f64) -> Result<()> {
    crate::error::ensure_finite("std", std)?;
    if std <= 0.0 {
        return Err(Error::param("std", format!("must be > 0, got {std}")));
    }
    Ok(())
}
