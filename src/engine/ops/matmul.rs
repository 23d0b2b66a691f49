//! Matrix products, 2-D and batched 3-D, through [`crate::engine::element::gemm`].

use std::sync::Arc;

use ndarray::{ArrayD, IxDyn};
use rayon::prelude::*;

use crate::engine::element::{gemm, Element};
use crate::engine::graph::{Backward, Graph};
use crate::engine::tensor::Tensor;
use crate::error::{Error, Result};

/// Shape of a (possibly batched) matrix operand: `(batch, rows, cols)` as stored.
fn dims(shape: &[usize]) -> Option<(usize, usize, usize)> {
    match *shape {
        [r, c] => Some((1, r, c)),
        [b, r, c] => Some((b, r, c)),
        _ => None,
    }
}

/// `C[i] = op(A[i]) op(B[i]) (+ beta C[i])` for every batch entry, with `op` the transpose
/// when the flag is set. `a` is `batch × (m·k)` stored, `b` `batch × (k·n)`, `c`
/// `batch × (m·n)`. Batch entries are independent, so splitting them over threads does not
/// change any result.
#[allow(clippy::too_many_arguments)]
fn batched_gemm<E: Element>(
    batch: usize,
    m: usize,
    k: usize,
    n: usize,
    a: &[E],
    ta: bool,
    b: &[E],
    tb: bool,
    c: &mut [E],
) {
    if m * n == 0 {
        return;
    }
    let (sa, sb, sc) = (m * k, k * n, m * n);
    let run = |(i, ci): (usize, &mut [E])| {
        gemm(
            m,
            k,
            n,
            &a[i * sa..(i + 1) * sa],
            ta,
            &b[i * sb..(i + 1) * sb],
            tb,
            E::zero(),
            ci,
        )
    };
    if batch > 1 && batch * m * n * k >= 1 << 16 {
        c.par_chunks_mut(sc).enumerate().for_each(run);
    } else {
        c.chunks_mut(sc).enumerate().for_each(run);
    }
}

// ANCHOR: matmul
/// Backward of `C = op(A) op(B)`, with `op` the transpose when its flag is set:
/// `dA = dC op(B)^T` (stored transposed when `ta`) and `dB = op(A)^T dC` (likewise).
struct MatmulBack<E: Element> {
    a: Arc<ArrayD<E>>,
    b: Arc<ArrayD<E>>,
    ta: bool,
    tb: bool,
    batch: usize,
    m: usize,
    k: usize,
    n: usize,
}

impl<E: Element> Backward<E> for MatmulBack<E> {
    fn backward(self: Box<Self>, g: ArrayD<E>, needs: &[bool]) -> Vec<Option<ArrayD<E>>> {
        let (bt, m, k, n) = (self.batch, self.m, self.k, self.n);
        let (a, b) = (self.a.as_slice().unwrap(), self.b.as_slice().unwrap());
        let gs = g.as_slice().unwrap();
        let ga = needs[0].then(|| {
            let mut da = crate::engine::par::zeros(bt * m * k);
            if self.ta {
                // A stored k×m: dA = op(B) dC^T.
                batched_gemm(bt, k, n, m, b, self.tb, gs, true, &mut da);
            } else {
                // A stored m×k: dA = dC op(B)^T.
                batched_gemm(bt, m, n, k, gs, false, b, !self.tb, &mut da);
            }
            ArrayD::from_shape_vec(self.a.raw_dim(), da).unwrap()
        });
        let gb = needs[1].then(|| {
            let mut db = crate::engine::par::zeros(bt * k * n);
            if self.tb {
                // B stored n×k: dB = dC^T op(A).
                batched_gemm(bt, n, m, k, gs, true, a, self.ta, &mut db);
            } else {
                // B stored k×n: dB = op(A)^T dC.
                batched_gemm(bt, k, m, n, a, !self.ta, gs, false, &mut db);
            }
            ArrayD::from_shape_vec(self.b.raw_dim(), db).unwrap()
        });
        vec![ga, gb]
    }
}

impl<E: Element> Graph<E> {
    /// `op(a) op(b)` where `op` transposes the last two axes when its flag is set. Operands are
    /// both 2-D, or both 3-D with the same leading (batch) length.
    pub fn matmul_t(
        &mut self,
        a: &Tensor<E>,
        b: &Tensor<E>,
        ta: bool,
        tb: bool,
    ) -> Result<Tensor<E>> {
        let err = || {
            Error::Shape(format!(
                "matmul of {:?}{} and {:?}{}",
                a.shape(),
                if ta { "^T" } else { "" },
                b.shape(),
                if tb { "^T" } else { "" }
            ))
        };
        let (Some((ba, ra, ca)), Some((bb, rb, cb))) = (dims(a.shape()), dims(b.shape())) else {
            return Err(err());
        };
        let (m, k) = if ta { (ca, ra) } else { (ra, ca) };
        let (k2, n) = if tb { (cb, rb) } else { (rb, cb) };
        if a.ndim() != b.ndim() || ba != bb || k != k2 {
            return Err(err());
        }
        let mut c = crate::engine::par::zeros(ba * m * n);
        batched_gemm(ba, m, k, n, a.as_slice(), ta, b.as_slice(), tb, &mut c);
        let shape: Vec<usize> = if a.ndim() == 2 {
            vec![m, n]
        } else {
            vec![ba, m, n]
        };
        let y = ArrayD::from_shape_vec(IxDyn(&shape), c).unwrap();
        let rule = MatmulBack {
            a: Arc::clone(&a.value),
            b: Arc::clone(&b.value),
            ta,
            tb,
            batch: ba,
            m,
            k,
            n,
        };
        Ok(self.record(y, &[a, b], Box::new(rule)))
    }
    // ANCHOR_END: matmul

    /// `a b` for 2-D (`m×k · k×n`) or batched 3-D (`b×m×k · b×k×n`) operands.
    pub fn matmul(&mut self, a: &Tensor<E>, b: &Tensor<E>) -> Result<Tensor<E>> {
        self.matmul_t(a, b, false, false)
    }

    /// The affine map of a PyTorch `Linear`: `x W^T + bias`, with `x` of shape `[..., in]`,
    /// `W` of shape `[out, in]` and `bias` of shape `[out]`; the result is `[..., out]`.
    pub fn linear(
        &mut self,
        x: &Tensor<E>,
        w: &Tensor<E>,
        bias: Option<&Tensor<E>>,
    ) -> Result<Tensor<E>> {
        if x.ndim() == 0 || w.ndim() != 2 || x.shape()[x.ndim() - 1] != w.shape()[1] {
            return Err(Error::Shape(format!(
                "linear: input {:?} and weight {:?}",
                x.shape(),
                w.shape()
            )));
        }
        let lead: Vec<usize> = x.shape()[..x.ndim() - 1].to_vec();
        let rows: usize = lead.iter().product();
        let x2 = if x.ndim() == 2 {
            x.clone()
        } else {
            self.reshape(x, &[rows, w.shape()[1]])?
        };
        let mut y = self.matmul_t(&x2, w, false, true)?;
        if let Some(b) = bias {
            if b.shape() != [w.shape()[0]] {
                return Err(Error::Shape(format!(
                    "linear: bias {:?} for weight {:?}",
                    b.shape(),
                    w.shape()
                )));
            }
            y = self.add(&y, b)?;
        }
        if x.ndim() == 2 {
            return Ok(y);
        }
        let mut shape = lead;
        shape.push(w.shape()[0]);
        self.reshape(&y, &shape)
    }
}
