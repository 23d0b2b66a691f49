//! Gaussians with full covariance `N(μ, Σ)`, through a hand-written Cholesky factorisation.

use super::diag::DiagGaussian;
use super::special::LN_2PI;
use super::{check_finite, check_len};
use crate::error::{Error, Result};
use ndarray::{Array1, Array2, ArrayView1, ArrayView2};

/// The Cholesky factor `L` (lower triangular, positive diagonal) of a symmetric positive
/// definite matrix `A = L Lᵀ`.
#[derive(Clone, Debug, PartialEq)]
pub struct Cholesky {
    l: Array2<f64>,
}

impl Cholesky {
    // ANCHOR: cholesky
    /// Factorises `a = L Lᵀ` (only the lower triangle of `a` is read). Row by row:
    /// `L_jj = √(a_jj - Σ_{k<j} L_jk²)`, `L_ij = (a_ij - Σ_{k<j} L_ik L_jk) / L_jj` for `i > j`.
    /// Errors: not square, non-finite, or not positive definite (a pivot `≤ 0`).
    pub fn factor(a: ArrayView2<f64>) -> Result<Self> {
        let (n, m) = a.dim();
        if n != m || n == 0 {
            return Err(Error::Shape(format!(
                "Cholesky needs a non-empty square matrix, got {n}×{m}"
            )));
        }
        check_finite("matrix", a.iter())?;
        let mut l = Array2::<f64>::zeros((n, n));
        for j in 0..n {
            let mut pivot = a[[j, j]];
            for k in 0..j {
                pivot -= l[[j, k]] * l[[j, k]];
            }
            if pivot.is_nan() || pivot <= 0.0 {
                return Err(Error::param(
                    "covariance",
                    format!("not positive definite (pivot {j} is {pivot})"),
                ));
            }
            let ljj = pivot.sqrt();
            l[[j, j]] = ljj;
            for i in j + 1..n {
                let mut s = a[[i, j]];
                for k in 0..j {
                    s -= l[[i, k]] * l[[j, k]];
                }
                l[[i, j]] = s / ljj;
            }
        }
        Ok(Self { l })
    }
    // ANCHOR_END: cholesky

    /// The factor `L`.
    pub fn l(&self) -> &Array2<f64> {
        &self.l
    }

    /// Dimension.
    pub fn dim(&self) -> usize {
        self.l.nrows()
    }

    /// `ln det A = 2 Σ_j ln L_jj`.
    pub fn log_det(&self) -> f64 {
        2.0 * self.l.diag().iter().map(|v| v.ln()).sum::<f64>()
    }

    /// Solves `L y = b` by forward substitution (no length check: callers check).
    pub fn solve_lower(&self, b: ArrayView1<f64>) -> Array1<f64> {
        let n = self.dim();
        let mut y = Array1::zeros(n);
        for i in 0..n {
            let mut s = b[i];
            for k in 0..i {
                s -= self.l[[i, k]] * y[k];
            }
            y[i] = s / self.l[[i, i]];
        }
        y
    }

    /// Solves `Lᵀ x = y` by back substitution.
    pub fn solve_upper(&self, y: ArrayView1<f64>) -> Array1<f64> {
        let n = self.dim();
        let mut x = Array1::zeros(n);
        for i in (0..n).rev() {
            let mut s = y[i];
            for k in i + 1..n {
                s -= self.l[[k, i]] * x[k];
            }
            x[i] = s / self.l[[i, i]];
        }
        x
    }

    /// Solves `A x = b`.
    pub fn solve(&self, b: ArrayView1<f64>) -> Array1<f64> {
        let y = self.solve_lower(b);
        self.solve_upper(y.view())
    }

    /// Solves `A X = B` column by column.
    pub fn solve_matrix(&self, b: ArrayView2<f64>) -> Array2<f64> {
        let mut out = Array2::zeros(b.raw_dim());
        for (j, col) in b.columns().into_iter().enumerate() {
            out.column_mut(j).assign(&self.solve(col));
        }
        out
    }
}

/// A Gaussian `N(μ, Σ)` with a full covariance; its Cholesky factor is computed once.
#[derive(Clone, Debug, PartialEq)]
pub struct MvGaussian {
    mean: Array1<f64>,
    cov: Array2<f64>,
    chol: Cholesky,
}

/// Relative asymmetry accepted in a user covariance (then symmetrised); rounding in `M Mᵀ`
/// style constructions is a few ulps, far below this.
const SYMMETRY_TOL: f64 = 1e-10;

impl MvGaussian {
    /// `N(mean, cov)`. Errors: shape mismatch, non-finite entries, a covariance that is not
    /// symmetric (to relative `1e-10`) or not positive definite.
    pub fn new(mean: Array1<f64>, cov: Array2<f64>) -> Result<Self> {
        let d = mean.len();
        if d == 0 {
            return Err(Error::Shape("a Gaussian needs dimension >= 1".into()));
        }
        if cov.dim() != (d, d) {
            return Err(Error::Shape(format!(
                "covariance is {:?}, expected {d}×{d}",
                cov.dim()
            )));
        }
        check_finite("mean", mean.iter())?;
        check_finite("covariance", cov.iter())?;
        let scale = cov.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for i in 0..d {
            for j in 0..i {
                if (cov[[i, j]] - cov[[j, i]]).abs() > SYMMETRY_TOL * scale {
                    return Err(Error::param(
                        "covariance",
                        format!("not symmetric at ({i}, {j})"),
                    ));
                }
            }
        }
        Self::from_symmetric(mean, cov)
    }

    /// Symmetrises `cov` (averages the two triangles) and factorises it.
    pub(crate) fn from_symmetric(mean: Array1<f64>, cov: Array2<f64>) -> Result<Self> {
        let cov = (&cov + &cov.t()) * 0.5;
        let chol = Cholesky::factor(cov.view())?;
        Ok(Self { mean, cov, chol })
    }

    /// `N(mean, var · I)`.
    pub fn isotropic(mean: Array1<f64>, var: f64) -> Result<Self> {
        let d = mean.len();
        crate::error::ensure_finite("var", var)?;
        Self::new(mean, Array2::eye(d) * var)
    }

    /// The same distribution as a diagonal Gaussian.
    pub fn from_diag(g: &DiagGaussian) -> Self {
        let cov = Array2::from_diag(g.var());
        Self::from_symmetric(g.mean().clone(), cov).expect("a valid DiagGaussian is PD")
    }

    /// Dimension.
    pub fn dim(&self) -> usize {
        self.mean.len()
    }

    /// The mean `μ`.
    pub fn mean(&self) -> &Array1<f64> {
        &self.mean
    }

    /// The covariance `Σ`.
    pub fn cov(&self) -> &Array2<f64> {
        &self.cov
    }

    /// The Cholesky factor of `Σ`.
    pub fn cholesky(&self) -> &Cholesky {
        &self.chol
    }

    /// `y = L⁻¹ (x - μ)`, the whitened residual (`|y|²` is the squared Mahalanobis distance).
    pub(crate) fn whiten(&self, x: ArrayView1<f64>) -> Array1<f64> {
        let r = &x - &self.mean;
        self.chol.solve_lower(r.view())
    }

    /// `ln N(x; μ, Σ)` and the score at `x` from one whitening (callers check the length).
    pub(crate) fn log_density_and_score(&self, x: ArrayView1<f64>) -> (f64, Array1<f64>) {
        let y = self.whiten(x);
        let lp = self.log_density_whitened(&y);
        let s = -self.chol.solve_upper(y.view());
        (lp, s)
    }

    /// `ln N(x; μ, Σ)` without the length check.
    pub(crate) fn log_density_unchecked(&self, x: ArrayView1<f64>) -> f64 {
        self.log_density_whitened(&self.whiten(x))
    }

    fn log_density_whitened(&self, y: &Array1<f64>) -> f64 {
        -0.5 * (y.dot(y) + self.chol.log_det() + self.dim() as f64 * LN_2PI)
    }

    // ANCHOR: mvn_density
    /// `ln N(x; μ, Σ) = -½ [ (x-μ)ᵀ Σ⁻¹ (x-μ) + ln det Σ + d ln 2π ]`, with
    /// `(x-μ)ᵀ Σ⁻¹ (x-μ) = |L⁻¹(x-μ)|²` and `ln det Σ = 2 Σ ln L_jj`.
    pub fn log_density(&self, x: ArrayView1<f64>) -> Result<f64> {
        check_len("x", x.len(), self.dim())?;
        Ok(self.log_density_whitened(&self.whiten(x)))
    }

    /// Score `∇_x ln N(x; μ, Σ) = -Σ⁻¹ (x - μ) = -L⁻ᵀ L⁻¹ (x - μ)`.
    pub fn score(&self, x: ArrayView1<f64>) -> Result<Array1<f64>> {
        check_len("x", x.len(), self.dim())?;
        let y = self.whiten(x);
        Ok(-self.chol.solve_upper(y.view()))
    }
    // ANCHOR_END: mvn_density

    /// Log-density of each row of an `n × d` array.
    pub fn log_density_batch(&self, x: ArrayView2<f64>) -> Result<Array1<f64>> {
        check_len("row", x.ncols(), self.dim())?;
        Ok(Array1::from_iter(
            x.rows()
                .into_iter()
                .map(|r| self.log_density_whitened(&self.whiten(r))),
        ))
    }

    /// Score at each row of an `n × d` array.
    pub fn score_batch(&self, x: ArrayView2<f64>) -> Result<Array2<f64>> {
        check_len("row", x.ncols(), self.dim())?;
        let mut out = Array2::zeros(x.raw_dim());
        for (row, mut o) in x.rows().into_iter().zip(out.rows_mut()) {
            o.assign(&self.log_density_and_score(row).1);
        }
        Ok(out)
    }

    /// One draw `μ + L z`, `z ~ N(0, I)`.
    pub fn sample(&self, rng: &mut impl rand::Rng) -> Array1<f64> {
        let z = Array1::from_shape_fn(self.dim(), |_| crate::rng::normal(rng));
        &self.mean + &self.chol.l.dot(&z)
    }

    /// `n` draws as the rows of an `n × d` array.
    pub fn sample_n(&self, n: usize, rng: &mut impl rand::Rng) -> Array2<f64> {
        let mut out = Array2::zeros((n, self.dim()));
        for mut row in out.rows_mut() {
            row.assign(&self.sample(rng));
        }
        out
    }

    /// Differential entropy `½ [ d (1 + ln 2π) + ln det Σ ]`.
    pub fn entropy(&self) -> f64 {
        0.5 * (self.dim() as f64 * (1.0 + LN_2PI) + self.chol.log_det())
    }

    // ANCHOR: mvn_kl
    /// `KL(N(μ₀,Σ₀) ‖ N(μ₁,Σ₁)) = ½ [ tr(Σ₁⁻¹Σ₀) + (μ₁-μ₀)ᵀΣ₁⁻¹(μ₁-μ₀) - d + ln det Σ₁ - ln det Σ₀ ]`,
    /// with `tr(Σ₁⁻¹Σ₀) = ‖L₁⁻¹ L₀‖²_F`.
    pub fn kl(&self, other: &MvGaussian) -> Result<f64> {
        check_len("other", other.dim(), self.dim())?;
        let d = self.dim();
        let mut trace = 0.0;
        for col in self.chol.l.columns() {
            let y = other.chol.solve_lower(col);
            trace += y.dot(&y);
        }
        let y = other.whiten(self.mean.view());
        let maha = y.dot(&y);
        Ok(0.5 * (trace + maha - d as f64 + other.chol.log_det() - self.chol.log_det()))
    }
    // ANCHOR_END: mvn_kl

    // ANCHOR: affine
    /// Push-forward through `x ↦ s x + σ z`, `z ~ N(0, I)` independent of `x`:
    /// `N(s μ, s² Σ + σ² I)`. Errors: non-finite `s` or `σ`, or a singular result
    /// (e.g. `s = σ = 0`).
    pub fn affine(&self, scale: f64, std: f64) -> Result<MvGaussian> {
        crate::error::ensure_finite("scale", scale)?;
        crate::error::ensure_finite("std", std)?;
        let mean = &self.mean * scale;
        let mut cov = &self.cov * (scale * scale);
        for i in 0..self.dim() {
            cov[[i, i]] += std * std;
        }
        Self::from_symmetric(mean, cov)
    }
    // ANCHOR_END: affine

    /// The marginal of the coordinates `idx` (in that order): `N(μ_idx, Σ_idx,idx)`.
    pub fn marginal(&self, idx: &[usize]) -> Result<MvGaussian> {
        check_indices(idx, self.dim())?;
        if idx.is_empty() {
            return Err(Error::param(
                "indices",
                "a marginal needs at least one index",
            ));
        }
        let mean = Array1::from_iter(idx.iter().map(|&i| self.mean[i]));
        let cov =
            Array2::from_shape_fn((idx.len(), idx.len()), |(a, b)| self.cov[[idx[a], idx[b]]]);
        Self::from_symmetric(mean, cov)
    }

    // ANCHOR: conditional
    /// The conditional law of the remaining coordinates (in increasing order) given
    /// `x[observed] = values`. With `u` the unobserved and `o` the observed block:
    /// `μ_{u|o} = μ_u + Σ_uo Σ_oo⁻¹ (x_o - μ_o)` and the Schur complement
    /// `Σ_{u|o} = Σ_uu - Σ_uo Σ_oo⁻¹ Σ_ou`.
    /// Also returns `ln N(x_o; μ_o, Σ_oo)`, the marginal likelihood of the observation.
    pub fn conditional(
        &self,
        observed: &[usize],
        values: ArrayView1<f64>,
    ) -> Result<(MvGaussian, f64)> {
        let d = self.dim();
        check_indices(observed, d)?;
        check_len("values", values.len(), observed.len())?;
        check_finite("values", values.iter())?;
        let unobserved: Vec<usize> = (0..d).filter(|i| !observed.contains(i)).collect();
        if unobserved.is_empty() {
            return Err(Error::param(
                "observed",
                "every coordinate is observed; nothing is left to condition",
            ));
        }
        if observed.is_empty() {
            return Ok((self.clone(), 0.0));
        }
        let block = |rows: &[usize], cols: &[usize]| {
            Array2::from_shape_fn((rows.len(), cols.len()), |(a, b)| {
                self.cov[[rows[a], cols[b]]]
            })
        };
        let s_oo = MvGaussian::from_symmetric(
            Array1::from_iter(observed.iter().map(|&i| self.mean[i])),
            block(observed, observed),
        )?;
        let s_uo = block(&unobserved, observed);
        let s_uu = block(&unobserved, &unobserved);
        // Σ_oo⁻¹ (x_o - μ_o) and Σ_oo⁻¹ Σ_ou.
        let resid = &values - s_oo.mean();
        let alpha = s_oo.chol.solve(resid.view());
        let gain_t = s_oo.chol.solve_matrix(s_uo.t());
        let mean_u = Array1::from_iter(unobserved.iter().map(|&i| self.mean[i])) + s_uo.dot(&alpha);
        let cov_u = s_uu - s_uo.dot(&gain_t);
        let log_lik = s_oo.log_density_whitened(&s_oo.whiten(values));
        Ok((MvGaussian::from_symmetric(mean_u, cov_u)?, log_lik))
    }
    // ANCHOR_END: conditional
}

/// Indices must be distinct and `< d`.
pub(crate) fn check_indices(idx: &[usize], d: usize) -> Result<()> {
    for (a, &i) in idx.iter().enumerate() {
        if i >= d {
            return Err(Error::param(
                "indices",
                format!("index {i} is out of range for dimension {d}"),
            ));
        }
        if idx[..a].contains(&i) {
            return Err(Error::param("indices", format!("index {i} appears twice")));
        }
    }
    Ok(())
}
