//! Gaussians with diagonal covariance `N(μ, diag(v))`.

use super::special::LN_2PI;
use super::{check_finite, check_len};
use crate::error::{Error, Result};
use ndarray::{Array1, Array2, ArrayView1};

/// A Gaussian with mean `μ` and per-coordinate variances `v` (covariance `diag(v)`).
#[derive(Clone, Debug, PartialEq)]
pub struct DiagGaussian {
    mean: Array1<f64>,
    var: Array1<f64>,
}

impl DiagGaussian {
    /// `N(mean, diag(var))`. Errors: different lengths, empty, non-finite entries, a variance
    /// that is not > 0.
    pub fn new(mean: Array1<f64>, var: Array1<f64>) -> Result<Self> {
        if mean.is_empty() {
            return Err(Error::Shape("a Gaussian needs dimension >= 1".into()));
        }
        check_len("var", var.len(), mean.len())?;
        check_finite("mean", mean.iter())?;
        check_finite("var", var.iter())?;
        if let Some(v) = var.iter().find(|&&v| v <= 0.0) {
            return Err(Error::param(
                "var",
                format!("variances must be > 0, got {v}"),
            ));
        }
        Ok(Self { mean, var })
    }

    /// `N(mean, var · I)`.
    pub fn isotropic(mean: Array1<f64>, var: f64) -> Result<Self> {
        let n = mean.len();
        Self::new(mean, Array1::from_elem(n, var))
    }

    /// Dimension.
    pub fn dim(&self) -> usize {
        self.mean.len()
    }

    /// The mean `μ`.
    pub fn mean(&self) -> &Array1<f64> {
        &self.mean
    }

    /// The variances `v`.
    pub fn var(&self) -> &Array1<f64> {
        &self.var
    }

    // ANCHOR: diag_density
    /// `ln N(x; μ, diag(v)) = -½ Σ_i [ (x_i-μ_i)²/v_i + ln v_i + ln 2π ]`.
    pub fn log_density(&self, x: ArrayView1<f64>) -> Result<f64> {
        check_len("x", x.len(), self.dim())?;
        let mut acc = 0.0;
        for ((&xi, &m), &v) in x.iter().zip(&self.mean).zip(&self.var) {
            let r = xi - m;
            acc += r * r / v + v.ln() + LN_2PI;
        }
        Ok(-0.5 * acc)
    }

    /// Score `∇_x ln N(x; μ, diag(v)) = -(x-μ)/v`.
    pub fn score(&self, x: ArrayView1<f64>) -> Result<Array1<f64>> {
        check_len("x", x.len(), self.dim())?;
        Ok(Array1::from_iter(
            x.iter()
                .zip(&self.mean)
                .zip(&self.var)
                .map(|((&xi, &m), &v)| -(xi - m) / v),
        ))
    }
    // ANCHOR_END: diag_density

    /// One draw `μ + √v ⊙ z`, `z ~ N(0, I)`.
    pub fn sample(&self, rng: &mut impl rand::Rng) -> Array1<f64> {
        Array1::from_iter(
            self.mean
                .iter()
                .zip(&self.var)
                .map(|(&m, &v)| m + v.sqrt() * crate::rng::normal(rng)),
        )
    }

    /// `n` draws as the rows of an `n × d` array.
    pub fn sample_n(&self, n: usize, rng: &mut impl rand::Rng) -> Array2<f64> {
        let mut out = Array2::zeros((n, self.dim()));
        for mut row in out.rows_mut() {
            row.assign(&self.sample(rng));
        }
        out
    }

    // ANCHOR: diag_kl
    /// Differential entropy `½ Σ_i ln(2πe v_i)`.
    pub fn entropy(&self) -> f64 {
        0.5 * self.var.iter().map(|v| v.ln() + LN_2PI + 1.0).sum::<f64>()
    }

    /// `KL(self ‖ other) = ½ Σ_i [ v_i/w_i + (μ_i-m_i)²/w_i - 1 + ln(w_i/v_i) ]`
    /// for `self = N(μ, diag v)`, `other = N(m, diag w)`.
    pub fn kl(&self, other: &DiagGaussian) -> Result<f64> {
        check_len("other", other.dim(), self.dim())?;
        let mut acc = 0.0;
        for i in 0..self.dim() {
            let (v, w) = (self.var[i], other.var[i]);
            let r = self.mean[i] - other.mean[i];
            let ratio = v / w;
            // ratio - 1 - ln(ratio) written to keep accuracy when ratio ≈ 1.
            acc += r * r / w + (ratio - 1.0) - ratio.ln();
        }
        Ok(0.5 * acc)
    }
    // ANCHOR_END: diag_kl

    // ANCHOR: diag_product
    /// Product of two densities: `N(x; a, A) N(x; b, B) = Z · N(x; c, C)` with
    /// `C = (A⁻¹ + B⁻¹)⁻¹`, `c = C (A⁻¹ a + B⁻¹ b)` and `ln Z = ln N(a; b, A + B)`.
    /// Returns `(N(c, C), ln Z)`.
    pub fn product(&self, other: &DiagGaussian) -> Result<(DiagGaussian, f64)> {
        check_len("other", other.dim(), self.dim())?;
        let d = self.dim();
        let mut c = Array1::zeros(d);
        let mut cv = Array1::zeros(d);
        let mut log_z = 0.0;
        for i in 0..d {
            let (a, va) = (self.mean[i], self.var[i]);
            let (b, vb) = (other.mean[i], other.var[i]);
            let s = va + vb;
            cv[i] = va * vb / s;
            // c = (a/va + b/vb) C = (a vb + b va) / (va + vb)
            c[i] = (a * vb + b * va) / s;
            let r = a - b;
            log_z += -0.5 * (r * r / s + s.ln() + LN_2PI);
        }
        Ok((DiagGaussian::new(c, cv)?, log_z))
    }
    // ANCHOR_END: diag_product
}
