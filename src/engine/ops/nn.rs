//! Network building blocks composed from the primitives, plus dropout (its own op).

use ndarray::ArrayD;
use rand::Rng as _;

use crate::engine::element::Element;
use crate::engine::graph::{Backward, Graph};
use crate::engine::par::CHUNK;
use crate::engine::tensor::Tensor;
use crate::error::{Error, Result};
use crate::rng;

/// Multiplies `data` by the dropout mask of `(seed, p)`, scaled by `1/(1-p)`. Chunk `i` of
/// length [`CHUNK`] draws from `rng::stream(seed, i)`, so the mask depends only on the seed
/// and the element index. Forward and backward apply the same function (`dy ↦ dy m/(1-p)`),
/// so the mask is regenerated instead of stored.
fn apply_dropout_mask<E: Element>(data: &mut [E], p: f64, seed: u64) {
    let scale = <E as Element>::from_f64(1.0 / (1.0 - p));
    for (i, chunk) in data.chunks_mut(CHUNK).enumerate() {
        let mut r = rng::stream(seed, i as u64);
        for v in chunk {
            let u: f64 = r.random();
            *v = if u < p { E::zero() } else { *v * scale };
        }
    }
}

struct DropoutBack {
    p: f64,
    seed: u64,
}

impl<E: Element> Backward<E> for DropoutBack {
    fn backward(self: Box<Self>, mut g: ArrayD<E>, _: &[bool]) -> Vec<Option<ArrayD<E>>> {
        apply_dropout_mask(g.as_slice_mut().unwrap(), self.p, self.seed);
        vec![Some(g)]
    }
}

impl<E: Element> Graph<E> {
    /// Dropout: in training mode each element is zeroed with probability `p` and the rest
    /// scaled by `1/(1-p)`; the mask is a function of `seed` only. Identity in evaluation mode.
    pub fn dropout(&mut self, x: &Tensor<E>, p: f64, seed: u64) -> Result<Tensor<E>> {
        if !(0.0..1.0).contains(&p) {
            return Err(Error::param(
                "p",
                format!("dropout probability must be in [0, 1), got {p}"),
            ));
        }
        if !self.is_training() || p == 0.0 {
            return Ok(x.clone());
        }
        let mut y = (*x.value).clone();
        apply_dropout_mask(y.as_slice_mut().unwrap(), p, seed);
        Ok(self.record(y, &[x], Box::new(DropoutBack { p, seed })))
    }

    /// Mean squared error `mean((pred - target)^2)` over all elements (a 0-d tensor).
    pub fn mse(&mut self, pred: &Tensor<E>, target: &Tensor<E>) -> Result<Tensor<E>> {
        if pred.shape() != target.shape() {
            return Err(Error::Shape(format!(
                "mse: prediction {:?} and target {:?}",
                pred.shape(),
                target.shape()
            )));
        }
        let d = self.sub(pred, target)?;
        let d2 = self.mul(&d, &d)?;
        Ok(self.mean_all(&d2))
    }

    /// Scaled dot-product attention `softmax(q k^T / sqrt(d)) v` with `q`: `[B, Lq, d]`,
    /// `k`: `[B, Lk, d]`, `v`: `[B, Lk, dv]`; the result is `[B, Lq, dv]`.
    pub fn attention(&mut self, q: &Tensor<E>, k: &Tensor<E>, v: &Tensor<E>) -> Result<Tensor<E>> {
        if q.ndim() != 3 || k.ndim() != 3 || v.ndim() != 3 || k.shape()[1] != v.shape()[1] {
            return Err(Error::Shape(format!(
                "attention: q {:?}, k {:?}, v {:?}",
                q.shape(),
                k.shape(),
                v.shape()
            )));
        }
        let d = q.shape()[2];
        let s = self.matmul_t(q, k, false, true)?;
        let s = self.mul_scalar(&s, 1.0 / (d.max(1) as f64).sqrt());
        let a = self.softmax(&s, 2)?;
        self.matmul(&a, v)
    }

    /// [`Graph::attention`] on channel-major tensors, as a 1×1 convolution leaves them:
    /// `q`: `[B, d, Lq]`, `k`: `[B, d, Lk]`, `v`: `[B, dv, Lk]`; the result is `[B, dv, Lq]`,
    /// `v softmax(q^T k / sqrt(d))^T`. The same function as transposing the inputs, calling
    /// [`Graph::attention`] and transposing back, without the four transposes (the products
    /// read their operands transposed).
    pub fn attention_channels(
        &mut self,
        q: &Tensor<E>,
        k: &Tensor<E>,
        v: &Tensor<E>,
    ) -> Result<Tensor<E>> {
        if q.ndim() != 3 || k.ndim() != 3 || v.ndim() != 3 || k.shape()[2] != v.shape()[2] {
            return Err(Error::Shape(format!(
                "attention_channels: q {:?}, k {:?}, v {:?}",
                q.shape(),
                k.shape(),
                v.shape()
            )));
        }
        let d = q.shape()[1];
        let s = self.matmul_t(q, k, true, false)?; // [B, Lq, Lk]
        let s = self.mul_scalar(&s, 1.0 / (d.max(1) as f64).sqrt());
        let a = self.softmax(&s, 2)?;
        self.matmul_t(v, &a, false, true)
    }
}
