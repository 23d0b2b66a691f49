//! The fused linear layer `y = act(x Wᵀ + b)` as one op: one tape record and one output
//! buffer (with SiLU in training also `z` and `σ(z)`, kept for the derivative), no zero fills,
//! no broadcast; see [`crate::engine::kernels::linear`] for how the work is split.

use std::sync::Arc;

use ndarray::{ArrayD, IxDyn};

use crate::engine::element::Element;
use crate::engine::graph::{Backward, Graph};
use crate::engine::kernels::{self, linear::LinearGeom, Activation};
use crate::engine::tensor::Tensor;
use crate::error::{Error, Result};

// ANCHOR: linear_act
/// Backward of `y = act(z)`, `z = x Wᵀ + b`, with `x` `rows × in`, `W` `out × in`:
/// `dz = dy ⊙ act'(z)`, `db = Σ_rows dz`, `dW = dzᵀ x`, `dx = dz W`.
struct LinearActBack<E: Element> {
    x: Arc<ArrayD<E>>,
    w: Arc<ArrayD<E>>,
    /// The pre-activation `z` and the sigmoid `σ(z)` (SiLU only).
    z: Option<Arc<ArrayD<E>>>,
    s: Option<Vec<E>>,
    act: Activation,
    geom: LinearGeom,
}

impl<E: Element> Backward<E> for LinearActBack<E> {
    fn backward(self: Box<Self>, mut g: ArrayD<E>, needs: &[bool]) -> Vec<Option<ArrayD<E>>> {
        let geom = self.geom;
        let want_b = needs.get(2).copied().unwrap_or(false);
        let mut db = want_b.then(|| vec![E::zero(); geom.out]);
        // dW and dx are written in full by the kernel: no zero fill.
        let mut dw = needs[1].then(|| Vec::with_capacity(geom.out * geom.inp));
        let mut dx = needs[0].then(|| Vec::with_capacity(geom.rows * geom.inp));
        kernels::linear::linear_backward_uninit(
            geom,
            self.x.as_slice().expect("standard layout"),
            self.w.as_slice().expect("standard layout"),
            self.z
                .as_ref()
                .map(|z| z.as_slice().expect("standard layout")),
            self.s.as_deref(),
            self.act,
            g.as_slice_mut().expect("gradients are row-major"),
            dx.as_mut()
                .map(|d| &mut d.spare_capacity_mut()[..geom.rows * geom.inp]),
            dw.as_mut()
                .map(|d| &mut d.spare_capacity_mut()[..geom.out * geom.inp]),
            db.as_deref_mut(),
        );
        // SAFETY: `linear_backward_uninit` wrote every element of dx and dW.
        unsafe {
            if let Some(d) = dx.as_mut() {
                d.set_len(geom.rows * geom.inp);
            }
            if let Some(d) = dw.as_mut() {
                d.set_len(geom.out * geom.inp);
            }
        }
        let gx = dx.map(|d| ArrayD::from_shape_vec(self.x.raw_dim(), d).unwrap());
        let gw = dw.map(|d| ArrayD::from_shape_vec(self.w.raw_dim(), d).unwrap());
        let mut v = vec![gx, gw];
        if needs.len() > 2 {
            v.push(db.map(|d| ArrayD::from_shape_vec(IxDyn(&[geom.out]), d).unwrap()));
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
        let geom = LinearGeom { rows, inp, out };
        let b = bias.map(|b| b.as_slice());
        let grad =
            x.requires_grad() || w.requires_grad() || bias.is_some_and(|b| b.requires_grad());
        // Outputs are written in full by the kernel: no zero fill.
        let n = rows * out;
        let mut z: Vec<E> = Vec::with_capacity(n);
        let (xs, ws) = (x.as_slice(), w.as_slice());
        let (y, z, s) = if grad && act == Activation::Silu {
            // SiLU keeps z and σ(z) for its derivative.
            let (mut y, mut s): (Vec<E>, Vec<E>) = (Vec::with_capacity(n), Vec::with_capacity(n));
            let zu = &mut z.spare_capacity_mut()[..n];
            let (yu, su) = (
                &mut y.spare_capacity_mut()[..n],
                &mut s.spare_capacity_mut()[..n],
            );
            kernels::linear::linear_forward_uninit(geom, xs, ws, b, act, zu, Some(yu), Some(su));
            // SAFETY: `linear_forward_uninit` wrote every element of z, y and s.
            unsafe {
                z.set_len(n);
                y.set_len(n);
                s.set_len(n);
            }
            (y, Some(z), Some(s))
        } else {
            let zu = &mut z.spare_capacity_mut()[..n];
            kernels::linear::linear_forward_uninit(geom, xs, ws, b, act, zu, None, None);
            // SAFETY: as above, for z.
            unsafe { z.set_len(n) };
            (z, None, None)
        };
        let y = ArrayD::from_shape_vec(IxDyn(&shape), y).expect("sized");
        let rule = LinearActBack {
            x: Arc::clone(&x.value),
            w: Arc::clone(&w.value),
            z: z.map(|z| Arc::new(ArrayD::from_shape_vec(IxDyn(&shape), z).expect("sized"))),
            s,
            act,
            geom,
        };
        Ok(match bias {
            Some(b) => self.record(y, &[x, w, b], Box::new(rule)),
            None => self.record(y, &[x, w], Box::new(rule)),
        })
    }
}
// ANCHOR_END: linear_act
