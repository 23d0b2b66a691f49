//! Colourisation (003 §5 and appendix I.3; ledger Dc62): the grey level of each pixel is
//! observed and its colour must be drawn. Grey is not a coordinate of RGB, but it is one after
//! an orthogonal change of basis: with `Q` orthogonal and its first row `1/√c (1, …, 1)`, the
//! first coordinate of `Q x` is `√c` times the mean of the `c` channels. Colourisation is
//! inpainting of the other `c - 1` coordinates in that basis, then mapping back with `Qᵀ`.
//!
//! An orthogonal map keeps the isotropic forward noise isotropic (`Q (s x + σ z) = s Q x + σ Q z`
//! with `Q z ~ N(0, I)`), so a score model in the new basis is `Q s(Qᵀ u)`; for a mixture the
//! transformed law is again a mixture, [`GreyBasis::transform_mixture`].

use super::imputation::{assemble, conditional_oracle};
use crate::error::{Error, Result};
use crate::gaussian::{GaussianMixture, MvGaussian};
use crate::score::MixtureScore;
use ndarray::{Array1, Array2, ArrayView1, ArrayView2};

// ANCHOR: helmert
/// The `c × c` Helmert matrix: row 0 is `1/√c (1, …, 1)`, row `k ≥ 1` is
/// `(1, …, 1, -k, 0, …, 0)/√(k(k+1))` with `k` ones. Its rows are orthonormal, so it is
/// orthogonal, and rows `1..c` span the colour directions (those with zero channel sum).
pub fn helmert(c: usize) -> Result<Array2<f64>> {
    if c < 2 {
        return Err(Error::param(
            "channels",
            format!("need >= 2 channels, got {c}"),
        ));
    }
    let mut q = Array2::zeros((c, c));
    for j in 0..c {
        q[[0, j]] = 1.0 / (c as f64).sqrt();
    }
    for k in 1..c {
        let n = ((k * (k + 1)) as f64).sqrt();
        for j in 0..k {
            q[[k, j]] = 1.0 / n;
        }
        q[[k, k]] = -(k as f64) / n;
    }
    Ok(q)
}
// ANCHOR_END: helmert

/// The grey basis of images of `pixels` pixels with `channels` channels each, stored pixel by
/// pixel (`x[p c + ch]`): the block-diagonal matrix with one [`helmert`] block per pixel.
#[derive(Clone, Debug, PartialEq)]
pub struct GreyBasis {
    channels: usize,
    pixels: usize,
    q: Array2<f64>,
}

impl GreyBasis {
    /// The basis. Errors: fewer than 2 channels or no pixel.
    pub fn new(pixels: usize, channels: usize) -> Result<Self> {
        if pixels == 0 {
            return Err(Error::param("pixels", "need at least one pixel"));
        }
        let h = helmert(channels)?;
        let d = pixels * channels;
        let mut q = Array2::zeros((d, d));
        for p in 0..pixels {
            let o = p * channels;
            q.slice_mut(ndarray::s![o..o + channels, o..o + channels])
                .assign(&h);
        }
        Ok(Self {
            channels,
            pixels,
            q,
        })
    }

    /// Dimension `pixels × channels`.
    pub fn dim(&self) -> usize {
        self.pixels * self.channels
    }

    /// The orthogonal matrix `Q`.
    pub fn matrix(&self) -> &Array2<f64> {
        &self.q
    }

    /// The grey coordinates `p c` of the basis.
    pub fn grey_indices(&self) -> Vec<usize> {
        (0..self.pixels).map(|p| p * self.channels).collect()
    }

    /// The grey coordinates' values `√c g_p` for per-pixel grey levels `g_p` (channel means).
    pub fn grey_values(&self, grey: ArrayView1<f64>) -> Result<Array1<f64>> {
        if grey.len() != self.pixels {
            return Err(Error::Shape(format!(
                "{} grey levels for {} pixels",
                grey.len(),
                self.pixels
            )));
        }
        Ok(grey.mapv(|g| g * (self.channels as f64).sqrt()))
    }

    /// The grey level (channel mean) of each pixel of each row of `x`.
    pub fn grey_levels(&self, x: ArrayView2<f64>) -> Array2<f64> {
        Array2::from_shape_fn((x.nrows(), self.pixels), |(i, p)| {
            let o = p * self.channels;
            (0..self.channels).map(|c| x[[i, o + c]]).sum::<f64>() / self.channels as f64
        })
    }

    /// Rows mapped into the basis, `u = Q x`.
    pub fn to_basis(&self, x: ArrayView2<f64>) -> Array2<f64> {
        x.dot(&self.q.t())
    }

    /// Rows mapped back, `x = Qᵀ u`.
    pub fn from_basis(&self, u: ArrayView2<f64>) -> Array2<f64> {
        u.dot(&self.q)
    }

    // ANCHOR: transform_mixture
    /// The law of `Q x` for `x ~ mixture`: components `N(Q μ_k, Q Σ_k Qᵀ)`, weights unchanged.
    pub fn transform_mixture(&self, mixture: &GaussianMixture) -> Result<GaussianMixture> {
        if mixture.dim() != self.dim() {
            return Err(Error::Shape(format!(
                "a mixture of dimension {} in a basis of dimension {}",
                mixture.dim(),
                self.dim()
            )));
        }
        let comps = mixture
            .components()
            .iter()
            .map(|c| {
                let cov = self.q.dot(c.cov()).dot(&self.q.t());
                MvGaussian::new(self.q.dot(c.mean()), (&cov + &cov.t()) * 0.5)
            })
            .collect::<Result<Vec<_>>>()?;
        GaussianMixture::new(mixture.weights().clone(), comps)
    }
    // ANCHOR_END: transform_mixture

    // ANCHOR: colourise
    /// The exact score model of the colour coordinates of the basis given the grey levels:
    /// inpainting of the transformed mixture with the grey coordinates observed.
    pub fn oracle(&self, mixture: &GaussianMixture, grey: ArrayView1<f64>) -> Result<MixtureScore> {
        let values = self.grey_values(grey)?;
        conditional_oracle(
            &self.transform_mixture(mixture)?,
            &self.grey_indices(),
            values.view(),
        )
    }

    /// Images from sampled colour coordinates (columns in increasing basis index, the grey
    /// ones left out): assemble them with the grey coordinates, map back with `Qᵀ`.
    pub fn colourise(&self, grey: ArrayView1<f64>, colour: ArrayView2<f64>) -> Result<Array2<f64>> {
        let values = self.grey_values(grey)?;
        let u = assemble(self.dim(), &self.grey_indices(), values.view(), colour)?;
        Ok(self.from_basis(u.view()))
    }
    // ANCHOR_END: colourise
}
