//! The fused linear layer `y = act(x Wᵀ + b)` as one op: one tape record, one output buffer
//! (two with SiLU, which keeps `z` for its derivative), the bias and activation applied in one
//! pass over `z` and, backward, the activation derivative and the bias gradient in one.

use std::sync::Arc;

use ndarray::{ArrayD, IxDyn};

use crate::engine::element::{gemm, Element};
use crate::engine::graph::{Backward, Graph};
use crate::engine::kernels::{self, Activation};
use crate::engine::tensor::Tensor;
use crate::error::{Error, Result};

// ANCHOR: linear_act
/// Backward of `y = act(z)`, `z = x Wᵀ + b`, with `x` `rows × in`, `W` `out × in`:
/// `dz = dy ⊙ act'(z)`, `db = Σ_rows dz`, `dW = dzᵀ x`, `dx = dz W`.
struct LinearActBack<E: Element> {
    x: Arc<ArrayD<E>>,
    w: Arc<ArrayD<E>>,
    /// The pre-activation `z` (SiLU only).
    z: Option<Arc<ArrayD<E>>>,
    act: Activation,
    rows: usize,
    inp: usize,
    out: usize,
}

impl<E: Element> Backward<E> for LinearActBack<E> {
    fn backward(self: Box<Self>, mut g: ArrayD<E>, needs: &[bool]) -> Vec<Option<ArrayD<E>>> {
        let (rows, inp, out) = (self.rows, self.inp, self.out);
        let want_b = needs.get(2).copied().unwrap_or(false);
        let mut db = want_b.then(|| vec![E::zero(); out]);
        {
            let gs = g.as_slice_mut().expect("gradients are row-major");
            let z = self
                .z
                .as_ref()
                .map(|z| z.as_slice().expect("standard layout"));
            kernels::linear_act_backward(z, gs, out, self.act, db.as_deref_mut());
        }
        // The saved pre-activation is no longer needed.
        drop(self.z);
        let gs = g.as_slice().expect("gradients are row-major");
        let (x, w) = (self.x.as_slice().unwrap(), self.w.as_slice().unwrap());
        let gw = needs[1].then(|| {
            let mut dw = vec![E::zero(); out * inp];
            gemm(out, rows, inp, gs, true, x, false, E::zero(), &mut dw);
            ArrayD::from_shape_vec(self.w.raw_dim(), dw).unwrap()
        });
        let gx = needs[0].then(|| {
            let mut dx = vec![E::zero(); rows * inp];
            gemm(rows, out, inp, gs, false, w, false, E::zero(), &mut dx);
            ArrayD::from_shape_vec(self.x.raw_dim(), dx).unwrap()
        });
        let mut v = vec![gx, gw];
        if needs.len() > 2 {
            v.push(db.map(|d| ArrayD::from_shape_vec(IxDyn(&[out]), d).unwrap()));
        }
        v
    }

    fn name(&self) -> &'static str {
        match self.act {
            Activation::Identity => "Linear",
            Activation::Silu => "LinearSilu",
        }
    }
}

impl<E: Element> Graph<E> {
    /// `act(x Wᵀ + bias)` as one fused op, for `x` of shape `[..., in]`, `W` `[out, in]` and
    /// `bias` `[out]`; the result is `[..., out]`. The same numbers, bit for bit, as
    /// [`Graph::linear`] followed by [`Graph::silu`] (or by nothing, for
    /// [`Activation::Identity`]), forward and backward, with one tape record instead of three
    /// and no broadcast.
    pub fn linear_act(
        &mut self,
        x: &Tensor<E>,
        w: &Tensor<E>,
        bias: Option<&Tensor<E>>,
        act: Activation,
    ) -> Result<Tensor<E>> {
        if x.ndim() == 0 || w.ndim() != 2 || x.shape()[x.ndim() - 1] != w.shape()[1] {
            return Err(Error::Shape(format!(
                "linear_act: input {:?} and weight {:?}",
                x.shape(),
                w.shape()
            )));
        }
        let (out, inp) = (w.shape()[0], w.shape()[1]);
        if let Some(b) = bias {
            if b.shape() != [out] {
                return Err(Error::Shape(format!(
                    "linear_act: bias {:?} for weight {:?}",
                    b.shape(),
                    w.shape()
                )));
            }
        }
        let rows: usize = x.shape()[..x.ndim() - 1].iter().product();
        let mut shape = x.shape().to_vec();
        *shape.last_mut().expect("ndim >= 1") = out;
        let mut z = vec![E::zero(); rows * out];
        gemm(
            rows,
            inp,
            out,
            x.as_slice(),
            false,
            w.as_slice(),
            true,
            E::zero(),
            &mut z,
        );
        let b = bias.map(|b| b.as_slice());
        let grad =
            x.requires_grad() || w.requires_grad() || bias.is_some_and(|b| b.requires_grad());
        let (y, z) = if grad && act == Activation::Silu {
            let mut y = vec![E::zero(); z.len()];
            kernels::linear_act_forward(&mut z, Some(&mut y), out, b, act);
            (y, Some(z))
        } else {
            kernels::linear_act_forward(&mut z, None, out, b, act);
            (z, None)
        };
        let y = ArrayD::from_shape_vec(IxDyn(&shape), y).expect("sized");
        let rule = LinearActBack {
            x: Arc::clone(&x.value),
            w: Arc::clone(&w.value),
            z: z.map(|z| Arc::new(ArrayD::from_shape_vec(IxDyn(&shape), z).expect("sized"))),
            act,
            rows,
            inp,
            out,
        };
        Ok(match bias {
            Some(b) => self.record(y, &[x, w, b], Box::new(rule)),
            None => self.record(y, &[x, w], Box::new(rule)),
        })
    }
}
// ANCHOR_END: linear_act
