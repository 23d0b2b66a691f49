//! Time embeddings: functions of the diffusion time producing constant tensors.

use ndarray::{ArrayD, IxDyn};

use super::element::Element;
use super::kernels;
use super::tensor::Tensor;
use crate::error::{Error, Result};
use crate::rng;

// ANCHOR: sinusoidal
/// The sinusoidal embedding of Ho et al.: for `dim = 2h`, row `i` is
/// `[sin(t_i f_0), ..., sin(t_i f_{h-1}), cos(t_i f_0), ..., cos(t_i f_{h-1})]` with
/// `f_k = 10000^{-k/(h-1)}`. Shape `[t.len(), dim]`. `dim` must be even and at least 4.
pub fn sinusoidal_embedding<E: Element>(t: &[f64], dim: usize) -> Result<Tensor<E>> {
    if dim < 4 || !dim.is_multiple_of(2) {
        return Err(Error::param(
            "dim",
            format!("must be even and >= 4, got {dim}"),
        ));
    }
    let half = dim / 2;
    let freqs: Vec<f64> = (0..half)
        .map(|k| (-(10000f64.ln()) * k as f64 / (half - 1) as f64).exp())
        .collect();
    rows(t, &freqs)
}
// ANCHOR_END: sinusoidal

/// `[sin(t f_k)_k, cos(t f_k)_k]` for every `t`, through the vectorised
/// [`kernels::trig::sin_cos_slice`] (within 6 ε_f64 of the exact values, so the `f32` entries
/// are the correctly rounded ones but for arguments within 6 ε_f64 of a rounding boundary);
/// arguments beyond its range take the standard library's `sin` and `cos`.
fn rows<E: Element>(t: &[f64], freqs: &[f64]) -> Result<Tensor<E>> {
    let half = freqs.len();
    if let Some(ti) = t.iter().find(|ti| !ti.is_finite()) {
        return Err(Error::NonFinite(format!("embedding time {ti}")));
    }
    let x: Vec<f64> = t
        .iter()
        .flat_map(|&ti| freqs.iter().map(move |f| ti * f))
        .collect();
    let (mut sin, mut cos) = (vec![0.0; x.len()], vec![0.0; x.len()]);
    if x.iter().all(|v| v.abs() <= kernels::trig::MAX_ARG) {
        kernels::trig::sin_cos_slice(&x, &mut sin, &mut cos);
    } else {
        for ((v, s), c) in x.iter().zip(&mut sin).zip(&mut cos) {
            (*s, *c) = (v.sin(), v.cos());
        }
    }
    let mut out = Vec::with_capacity(t.len() * 2 * half);
    for (s, c) in sin.chunks(half.max(1)).zip(cos.chunks(half.max(1))) {
        out.extend(s.iter().map(|&v| <E as Element>::from_f64(v)));
        out.extend(c.iter().map(|&v| <E as Element>::from_f64(v)));
    }
    Ok(Tensor::constant(
        ArrayD::from_shape_vec(IxDyn(&[t.len(), 2 * half]), out).expect("sized"),
    ))
}

/// Gaussian random Fourier features (Song et al.): fixed frequencies `w_k ~ N(0, scale²)`
/// drawn from a seed, embedding `[sin(2π t w_k)_k, cos(2π t w_k)_k]`.
#[derive(Clone, Debug, PartialEq)]
pub struct GaussianFourier {
    w: Vec<f64>,
}

impl GaussianFourier {
    /// `dim / 2` frequencies with standard deviation `scale`; `dim` must be even and positive.
    pub fn new(dim: usize, scale: f64, seed: u64) -> Result<Self> {
        if dim == 0 || !dim.is_multiple_of(2) {
            return Err(Error::param(
                "dim",
                format!("must be even and positive, got {dim}"),
            ));
        }
        if !(scale > 0.0 && scale.is_finite()) {
            return Err(Error::param(
                "scale",
                format!("must be positive and finite, got {scale}"),
            ));
        }
        let mut r = rng::seeded(seed);
        let w = (0..dim / 2).map(|_| scale * rng::normal(&mut r)).collect();
        Ok(GaussianFourier { w })
    }

    /// From given frequencies `w_k` (e.g. loaded from a checkpoint).
    pub fn from_frequencies(w: Vec<f64>) -> Self {
        GaussianFourier { w }
    }

    /// The frequencies `w_k`.
    pub fn frequencies(&self) -> &[f64] {
        &self.w
    }

    /// Embedding dimension.
    pub fn dim(&self) -> usize {
        2 * self.w.len()
    }

    /// Embeds times `t`: shape `[t.len(), dim]`.
    pub fn embed<E: Element>(&self, t: &[f64]) -> Result<Tensor<E>> {
        let freqs: Vec<f64> = self
            .w
            .iter()
            .map(|w| 2.0 * std::f64::consts::PI * w)
            .collect();
        rows(t, &freqs)
    }
}
