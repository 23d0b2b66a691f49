//! Normalisation: group norm (one op with its own backward, optionally fused with SiLU, on
//! the kernels of [`crate::engine::kernels::group_norm`]) and layer norm (group norm with one
//! group over the last axis).

use std::sync::Arc;

use ndarray::{ArrayD, IxDyn};

use crate::engine::element::Element;
use crate::engine::graph::{Backward, Graph};
use crate::engine::kernels::{self, Activation, GroupNormGeom};
use crate::engine::tensor::Tensor;
use crate::error::{Error, Result};

// ANCHOR: group_norm_back
/// Backward of group norm fused with an activation (`y = act(γ x̂ + β)`): the saved input,
/// affine parameters and per-(sample, group) statistics go to
/// [`kernels::group_norm_backward`], which recomputes `z = γ x̂ + β` (so neither `z` nor
/// `y` is kept) and returns `dx = r (dx̂ - mean(dx̂) - x̂ mean(dx̂ x̂))` with `dx̂ = γ dy act'(z)`,
/// `dγ_c = Σ dy act'(z) x̂`, `dβ_c = Σ dy act'(z)`.
struct GroupNormBack<E: Element> {
    geom: GroupNormGeom,
    act: Activation,
    x: Arc<ArrayD<E>>,
    gamma: Arc<ArrayD<E>>,
    beta: Arc<ArrayD<E>>,
    mean: Vec<E>,
    rstd: Vec<E>,
}

impl<E: Element> Backward<E> for GroupNormBack<E> {
    fn backward(self: Box<Self>, dy: ArrayD<E>, needs: &[bool]) -> Vec<Option<ArrayD<E>>> {
        let g = &self.geom;
        let (mut dgamma, mut dbeta) = (vec![E::zero(); g.c], vec![E::zero(); g.c]);
        let dx = crate::engine::par::written(g.len(), |dx| {
            kernels::group_norm_backward_uninit(
                g,
                self.act,
                self.x.as_slice().unwrap(),
                self.gamma.as_slice().unwrap(),
                self.beta.as_slice().unwrap(),
                &self.mean,
                &self.rstd,
                dy.as_slice().unwrap(),
                dx,
                &mut dgamma,
                &mut dbeta,
            )
        });
        vec![
            needs[0].then(|| ArrayD::from_shape_vec(self.x.raw_dim(), dx).unwrap()),
            needs[1].then(|| ArrayD::from_shape_vec(IxDyn(&[g.c]), dgamma).unwrap()),
            needs[2].then(|| ArrayD::from_shape_vec(IxDyn(&[g.c]), dbeta).unwrap()),
        ]
    }

    fn name(&self) -> &'static str {
        match self.act {
            Activation::Identity => "GroupNorm",
            Activation::Silu => "GroupNormSilu",
        }
    }
}
// ANCHOR_END: group_norm_back

impl<E: Element> Graph<E> {
    /// Group normalisation of `x` (`[N, C, ...]`) over `groups` groups of `C / groups`
    /// channels, then the per-channel affine map `γ_c x̂ + β_c` (`gamma`, `beta`: `[C]`).
    pub fn group_norm(
        &mut self,
        x: &Tensor<E>,
        groups: usize,
        gamma: &Tensor<E>,
        beta: &Tensor<E>,
        eps: f64,
    ) -> Result<Tensor<E>> {
        self.group_norm_act(x, groups, gamma, beta, eps, Activation::Identity)
    }

    /// `silu(group_norm(x))` as one op: one pass over memory instead of two, and only `x` is
    /// saved for the backward pass (the normalised values are recomputed).
    pub fn group_norm_silu(
        &mut self,
        x: &Tensor<E>,
        groups: usize,
        gamma: &Tensor<E>,
        beta: &Tensor<E>,
        eps: f64,
    ) -> Result<Tensor<E>> {
        self.group_norm_act(x, groups, gamma, beta, eps, Activation::Silu)
    }

    fn group_norm_act(
        &mut self,
        x: &Tensor<E>,
        groups: usize,
        gamma: &Tensor<E>,
        beta: &Tensor<E>,
        eps: f64,
        act: Activation,
    ) -> Result<Tensor<E>> {
        if x.ndim() < 2 || groups == 0 || !x.shape()[1].is_multiple_of(groups) {
            return Err(Error::Shape(format!(
                "group_norm: {groups} groups for input {:?}",
                x.shape()
            )));
        }
        let (n, c) = (x.shape()[0], x.shape()[1]);
        if gamma.shape() != [c] || beta.shape() != [c] {
            return Err(Error::Shape(format!(
                "group_norm: gamma {:?} and beta {:?} for {c} channels",
                gamma.shape(),
                beta.shape()
            )));
        }
        if eps.is_nan() || eps <= 0.0 {
            return Err(Error::param("eps", format!("must be positive, got {eps}")));
        }
        let hw: usize = x.shape()[2..].iter().product();
        if x.is_empty() {
            // No element to normalise (zero samples, channels or pixels); the gradients of
            // gamma and beta are zero.
            let y = ArrayD::zeros(x.value.raw_dim());
            let rule = ZeroBack {
                shapes: vec![x.shape().to_vec(), vec![c], vec![c]],
            };
            return Ok(self.record(y, &[x, gamma, beta], Box::new(rule)));
        }
        let geom = GroupNormGeom::new(n, c, hw, groups)?;
        let (mut mean, mut rstd) = (
            vec![E::zero(); geom.stats_len()],
            vec![E::zero(); geom.stats_len()],
        );
        // Every element of `y` is written (the input is not empty).
        let y = crate::engine::par::written(geom.len(), |y| {
            kernels::group_norm_forward_uninit(
                &geom,
                act,
                <E as Element>::from_f64(eps),
                x.as_slice(),
                gamma.as_slice(),
                beta.as_slice(),
                y,
                &mut mean,
                &mut rstd,
            )
        });
        let y = ArrayD::from_shape_vec(x.value.raw_dim(), y).unwrap();
        let rule = GroupNormBack {
            geom,
            act,
            x: Arc::clone(&x.value),
            gamma: Arc::clone(&gamma.value),
            beta: Arc::clone(&beta.value),
            mean,
            rstd,
        };
        Ok(self.record(y, &[x, gamma, beta], Box::new(rule)))
    }

    /// Layer normalisation over the last axis (length `D`) with affine `gamma`, `beta`: `[D]`.
    pub fn layer_norm(
        &mut self,
        x: &Tensor<E>,
        gamma: &Tensor<E>,
        beta: &Tensor<E>,
        eps: f64,
    ) -> Result<Tensor<E>> {
        let Some(&d) = x.shape().last() else {
            return Err(Error::Shape("layer_norm of a 0-dimensional tensor".into()));
        };
        let rows = x.len() / d.max(1);
        let x2 = self.reshape(x, &[rows, d])?;
        let y = self.group_norm(&x2, 1, gamma, beta, eps)?;
        self.reshape(&y, x.shape())
    }
}

/// Backward of an op on empty tensors: zero gradients of the given shapes.
struct ZeroBack {
    shapes: Vec<Vec<usize>>,
}

impl<E: Element> Backward<E> for ZeroBack {
    fn backward(self: Box<Self>, _: ArrayD<E>, _: &[bool]) -> Vec<Option<ArrayD<E>>> {
        self.shapes
            .iter()
            .map(|s| Some(ArrayD::zeros(IxDyn(s))))
            .collect()
    }
}
