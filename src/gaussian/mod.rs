//! The Gaussian toolkit: the standard normal's special functions ([`special`]), Gaussians with
//! diagonal ([`diag`]) and full ([`mvn`]) covariance, and finite Gaussian mixtures
//! ([`mixture`]), whose perturbed marginals under any linear forward process are again exact
//! Gaussian mixtures. That closure makes a mixture the exact oracle for every later test.

pub mod diag;
pub mod mixture;
pub mod mvn;
pub mod special;

pub use diag::DiagGaussian;
pub use mixture::GaussianMixture;
pub use mvn::{Cholesky, MvGaussian};
pub use special::{log_std_normal_cdf, std_normal_cdf, std_normal_log_pdf, std_normal_pdf, LN_2PI};

use crate::error::{Error, Result};

/// A shape error unless a vector has the expected length.
pub(crate) fn check_len(what: &str, got: usize, want: usize) -> Result<()> {
    if got == want {
        Ok(())
    } else {
        Err(Error::Shape(format!(
            "{what} has length {got}, expected {want}"
        )))
    }
}

/// A non-finite error unless every entry is finite.
pub(crate) fn check_finite<'a>(
    what: &'static str,
    xs: impl IntoIterator<Item = &'a f64>,
) -> Result<()> {
    for &x in xs {
        crate::error::ensure_finite(what, x)?;
    }
    Ok(())
}
