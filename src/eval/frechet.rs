//! The Frechet distance between two Gaussians (the "FID" of Heusel et al. 2017 when the
//! Gaussians are fitted to classifier features):
//! `FD = ‖mu1 − mu2‖² + tr(S1 + S2 − 2 (S1^{1/2} S2 S1^{1/2})^{1/2})`,
//! the squared 2-Wasserstein distance between `N(mu1, S1)` and `N(mu2, S2)`.
//!
//! The matrix square roots come from a cyclic Jacobi eigen-decomposition in `f64`.

use crate::error::{Error, Result};
use crate::stats;
use ndarray::{Array1, Array2, ArrayView1, ArrayView2};

/// Eigenvalues and eigenvectors (columns) of a symmetric matrix by cyclic Jacobi rotations.
///
/// Each rotation zeroes one off-diagonal pair; sweeps stop when the off-diagonal Frobenius
/// norm is below `1e-14` times the matrix norm (or after 100 sweeps). Jacobi is backward
/// stable: the eigenvalues are exact for a matrix within `O(u ‖A‖)` of `a`.
pub fn symmetric_eigen(a: ArrayView2<f64>) -> Result<(Array1<f64>, Array2<f64>)> {
    let n = a.nrows();
    if a.ncols() != n {
        return Err(Error::Shape(format!("eigen of a {:?} matrix", a.dim())));
    }
    if a.iter().any(|v| !v.is_finite()) {
        return Err(Error::NonFinite("matrix entry".into()));
    }
    for i in 0..n {
        for j in 0..i {
            let s = a[[i, j]].abs().max(a[[j, i]].abs()).max(1e-300);
            if (a[[i, j]] - a[[j, i]]).abs() > 1e-9 * s {
                return Err(Error::param("matrix", "not symmetric"));
            }
        }
    }
    let mut m = a.to_owned();
    let mut v = Array2::<f64>::eye(n);
    let norm = m.iter().map(|x| x * x).sum::<f64>().sqrt();
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| m[[i, j]] * m[[i, j]])
            .sum::<f64>()
            .sqrt();
        if off <= 1e-14 * norm || norm == 0.0 {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = m[[p, q]];
                if apq == 0.0 {
                    continue;
                }
                // The rotation angle that zeroes m[p, q]: tan(2 theta) = 2 apq / (aqq − app).
                let theta = (m[[q, q]] - m[[p, p]]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (mkp, mkq) = (m[[k, p]], m[[k, q]]);
                    m[[k, p]] = c * mkp - s * mkq;
                    m[[k, q]] = s * mkp + c * mkq;
                }
                for k in 0..n {
                    let (mpk, mqk) = (m[[p, k]], m[[q, k]]);
                    m[[p, k]] = c * mpk - s * mqk;
                    m[[q, k]] = s * mpk + c * mqk;
                }
                for k in 0..n {
                    let (vkp, vkq) = (v[[k, p]], v[[k, q]]);
                    v[[k, p]] = c * vkp - s * vkq;
                    v[[k, q]] = s * vkp + c * vkq;
                }
            }
        }
    }
    Ok((m.diag().to_owned(), v))
}

/// The symmetric square root `V diag(sqrt(max(lambda, 0))) Vᵀ` of a symmetric positive
/// semi-definite matrix (eigenvalues below zero by rounding are clamped to zero).
pub fn sqrtm_psd(a: ArrayView2<f64>) -> Result<Array2<f64>> {
    let (lam, v) = symmetric_eigen(a)?;
    let r = lam.mapv(|l| l.max(0.0).sqrt());
    let vr = &v * &r.view().insert_axis(ndarray::Axis(0));
    Ok(vr.dot(&v.t()))
}

// ANCHOR: frechet
/// `‖mu1 − mu2‖² + tr S1 + tr S2 − 2 tr (S1^{1/2} S2 S1^{1/2})^{1/2}`. The last trace is the
/// sum of the square roots of the eigenvalues of the symmetric PSD `S1^{1/2} S2 S1^{1/2}`
/// (which has the eigenvalues of `S1 S2`).
pub fn frechet_distance(
    mu1: ArrayView1<f64>,
    s1: ArrayView2<f64>,
    mu2: ArrayView1<f64>,
    s2: ArrayView2<f64>,
) -> Result<f64> {
    let d = mu1.len();
    if mu2.len() != d || s1.dim() != (d, d) || s2.dim() != (d, d) {
        return Err(Error::Shape(format!(
            "means of {} and {}, covariances {:?} and {:?}",
            d,
            mu2.len(),
            s1.dim(),
            s2.dim()
        )));
    }
    let r1 = sqrtm_psd(s1)?;
    let mut m = r1.dot(&s2).dot(&r1);
    // Symmetrise away the rounding of the products.
    let mt = m.t().to_owned();
    m = (&m + &mt) * 0.5;
    let (lam, _) = symmetric_eigen(m.view())?;
    let cross: f64 = lam.iter().map(|l| l.max(0.0).sqrt()).sum();
    let dm = &mu1 - &mu2;
    let fd = dm.dot(&dm) + s1.diag().sum() + s2.diag().sum() - 2.0 * cross;
    Ok(fd.max(0.0))
}
// ANCHOR_END: frechet

/// The Frechet distance between Gaussians fitted (mean and unbiased covariance) to two sets of
/// feature rows. Needs at least 2 rows each.
pub fn frechet_distance_of_features(a: ArrayView2<f64>, b: ArrayView2<f64>) -> Result<f64> {
    if a.nrows() < 2 || b.nrows() < 2 || a.ncols() != b.ncols() {
        return Err(Error::Shape(format!(
            "features {:?} and {:?}: need two or more rows of the same width",
            a.dim(),
            b.dim()
        )));
    }
    frechet_distance(
        stats::mean(a).view(),
        stats::covariance(a).view(),
        stats::mean(b).view(),
        stats::covariance(b).view(),
    )
}
