//! The SMLD forward process: the Gaussian perturbation kernel `p_sigma(x~|x) = N(x, sigma^2 I)`
//! (003 §2.1, 000 eq. 1.14), its score, and the Markov chain
//! `x_i = x_{i-1} + sqrt(sigma_i^2 - sigma_{i-1}^2) z_{i-1}` (003 §3.4, the VE discretisation)
//! whose marginals are exactly the kernels.
//!
//! The chain runs from the data towards more noise, so it visits the levels **smallest first**
//! (document 003's numbering, `sigma_0 = 0`); in document 000's numbering its step `k` uses
//! `sigma_{L+1-k}`.

use ndarray::{Array1, Array2, ArrayView2, Axis};

use crate::error::{Error, Result};
use crate::rng::NoiseSource;
use crate::schedule::sigma::SigmaSequence;

fn check_sigma(sigma: f64) -> Result<()> {
    if !sigma.is_finite() || sigma <= 0.0 {
        return Err(Error::param(
            "sigma",
            format!("must be finite and positive, got {sigma}"),
        ));
    }
    Ok(())
}

fn check_same_shape(a: &ArrayView2<f64>, b: &ArrayView2<f64>) -> Result<()> {
    if a.dim() != b.dim() {
        return Err(Error::Shape(format!(
            "x_tilde is {:?} but x is {:?}",
            a.dim(),
            b.dim()
        )));
    }
    Ok(())
}

/// Draws `x~ = x + sigma z`, `z ~ N(0, I)`: a sample of the perturbation kernel
/// `p_sigma(x~|x) = N(x~; x, sigma^2 I)` for each row of `x` (ledger A1.14, D1).
pub fn perturb(
    x: ArrayView2<f64>,
    sigma: f64,
    noise: &mut impl NoiseSource,
) -> Result<Array2<f64>> {
    check_sigma(sigma)?;
    let mut z = Array2::<f64>::zeros(x.raw_dim());
    noise.fill_normal(z.as_slice_mut().expect("fresh array is contiguous"));
    Ok(&x + &(z * sigma))
}

/// `log N(x~; x, sigma^2 I)` for each row pair (ledger A1.14).
pub fn kernel_log_density(
    x_tilde: ArrayView2<f64>,
    x: ArrayView2<f64>,
    sigma: f64,
) -> Result<Array1<f64>> {
    check_sigma(sigma)?;
    check_same_shape(&x_tilde, &x)?;
    let d = x.ncols() as f64;
    let norm = -0.5 * d * (2.0 * std::f64::consts::PI * sigma * sigma).ln();
    let diff = &x_tilde - &x;
    Ok(diff
        .map_axis(Axis(1), |r| r.dot(&r))
        .mapv(|q| norm - 0.5 * q / (sigma * sigma)))
}

/// The score of the perturbation kernel, `grad_x~ log p_sigma(x~|x) = -(x~ - x) / sigma^2`: the
/// regression target of denoising score matching (ledger A1.14, D1).
// ANCHOR: kernel_score
pub fn kernel_score(
    x_tilde: ArrayView2<f64>,
    x: ArrayView2<f64>,
    sigma: f64,
) -> Result<Array2<f64>> {
    check_sigma(sigma)?;
    check_same_shape(&x_tilde, &x)?;
    Ok((&x - &x_tilde) / (sigma * sigma))
}
// ANCHOR_END: kernel_score

/// The SMLD Markov chain over a sigma sequence, run from data (`sigma_0 = 0`) to the largest
/// level.
#[derive(Clone, Debug)]
pub struct SmldChain {
    /// Levels smallest first (003 numbering): `ascending[k-1] = sigma_k`.
    ascending: Vec<f64>,
}

impl SmldChain {
    /// The chain through the levels of `sigmas` (any valid [`SigmaSequence`]).
    pub fn new(sigmas: &SigmaSequence) -> Self {
        SmldChain {
            ascending: sigmas.ascending(),
        }
    }

    /// The number of steps `N = L`.
    pub fn steps(&self) -> usize {
        self.ascending.len()
    }

    /// `sigma_k` in the chain's (003) numbering, `sigma_0 = 0`; `None` beyond `N`.
    pub fn sigma(&self, k: usize) -> Option<f64> {
        match k {
            0 => Some(0.0),
            _ => self.ascending.get(k - 1).copied(),
        }
    }

    /// The standard deviation of step `k`'s increment, `sqrt(sigma_k^2 - sigma_{k-1}^2)`
    /// (003 §3.4, unnumbered; the VE discretisation). `None` unless `1 <= k <= N`.
    // ANCHOR: increment_std
    pub fn increment_std(&self, k: usize) -> Option<f64> {
        if k == 0 {
            return None;
        }
        let (prev, cur) = (self.sigma(k - 1)?, self.sigma(k)?);
        Some(((cur - prev) * (cur + prev)).sqrt())
    }
    // ANCHOR_END: increment_std

    /// One step `x_k = x_{k-1} + sqrt(sigma_k^2 - sigma_{k-1}^2) z_{k-1}`.
    ///
    /// Errors: [`Error::InvalidParameter`] unless `1 <= k <= N`.
    pub fn step(
        &self,
        x_prev: ArrayView2<f64>,
        k: usize,
        noise: &mut impl NoiseSource,
    ) -> Result<Array2<f64>> {
        let s = self.increment_std(k).ok_or_else(|| {
            Error::param(
                "k",
                format!("step must be in 1..={}, got {k}", self.steps()),
            )
        })?;
        let mut z = Array2::<f64>::zeros(x_prev.raw_dim());
        noise.fill_normal(z.as_slice_mut().expect("fresh array is contiguous"));
        Ok(&x_prev + &(z * s))
    }

    /// Runs the whole chain from `x0`; returns `[x_1, ..., x_N]` (003 numbering, increasing
    /// noise).
    pub fn run(
        &self,
        x0: ArrayView2<f64>,
        noise: &mut impl NoiseSource,
    ) -> Result<Vec<Array2<f64>>> {
        let mut out = Vec::with_capacity(self.steps());
        let mut x = x0.to_owned();
        for k in 1..=self.steps() {
            x = self.step(x.view(), k, noise)?;
            out.push(x.clone());
        }
        Ok(out)
    }

    /// The marginal of step `k`: `p(x_k | x_0) = N(x_0, sigma_k^2 I)`, returned as its standard
    /// deviation `sigma_k` (003 §3.4: the chain's marginals are the perturbation kernels).
    pub fn marginal_std(&self, k: usize) -> Option<f64> {
        self.sigma(k)
    }
}
