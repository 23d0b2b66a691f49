//! Reductions (sum, mean over axes) and the softmax along an axis.

use std::sync::Arc;

use ndarray::{ArrayD, Axis, IxDyn, Zip};
use rayon::prelude::*;

use crate::engine::element::Element;
use crate::engine::graph::{Backward, Graph};
use crate::engine::tensor::{standard, Tensor};
use crate::error::{Error, Result};

/// Checks that `axes` are distinct and in range; returns them sorted.
pub(crate) fn check_axes(shape: &[usize], axes: &[usize]) -> Result<Vec<usize>> {
    let mut a = axes.to_vec();
    a.sort_unstable();
    a.dedup();
    if a.len() != axes.len() || a.last().is_some_and(|&m| m >= shape.len()) {
        return Err(Error::Shape(format!(
            "axes {axes:?} invalid for shape {shape:?}"
        )));
    }
    Ok(a)
}

// ANCHOR: sum
/// Backward of a sum: the output gradient, broadcast back over the summed axes.
struct SumBack {
    in_shape: Vec<usize>,
    keep_shape: Vec<usize>,
}

impl<E: Element> Backward<E> for SumBack {
    fn backward(self: Box<Self>, g: ArrayD<E>, _: &[bool]) -> Vec<Option<ArrayD<E>>> {
        if g.len() == 1 {
            // The gradient of a full sum (a loss): one value everywhere, without a broadcast
            // view's element-by-element copy.
            let v = g.iter().next().copied().expect("one element");
            return vec![Some(ArrayD::from_elem(IxDyn(&self.in_shape), v))];
        }
        let g = g
            .into_shape_with_order(IxDyn(&self.keep_shape))
            .expect("same size");
        let gx = g
            .broadcast(IxDyn(&self.in_shape))
            .expect("keepdims shape broadcasts")
            .to_owned();
        vec![Some(standard(gx))]
    }
}

impl<E: Element> Graph<E> {
    /// Sum over `axes`; with `keepdim` the summed axes stay with length 1.
    pub fn sum(&mut self, x: &Tensor<E>, axes: &[usize], keepdim: bool) -> Result<Tensor<E>> {
        let axes = check_axes(x.shape(), axes)?;
        let mut y = (*x.value).clone();
        let mut keep_shape = x.shape().to_vec();
        for &a in axes.iter().rev() {
            y = y.sum_axis(Axis(a));
            keep_shape[a] = 1;
        }
        if keepdim {
            y = y
                .into_shape_with_order(IxDyn(&keep_shape))
                .expect("same size");
        }
        let rule = SumBack {
            in_shape: x.shape().to_vec(),
            keep_shape,
        };
        Ok(self.record(y, &[x], Box::new(rule)))
    }
    // ANCHOR_END: sum

    /// Mean over `axes`.
    pub fn mean(&mut self, x: &Tensor<E>, axes: &[usize], keepdim: bool) -> Result<Tensor<E>> {
        let axes = check_axes(x.shape(), axes)?;
        let count: usize = axes.iter().map(|&a| x.shape()[a]).product();
        let s = self.sum(x, &axes, keepdim)?;
        Ok(self.mul_scalar(&s, 1.0 / count.max(1) as f64))
    }

    /// Sum of all elements (a 0-dimensional tensor).
    pub fn sum_all(&mut self, x: &Tensor<E>) -> Tensor<E> {
        let axes: Vec<usize> = (0..x.ndim()).collect();
        self.sum(x, &axes, false).expect("all axes are valid")
    }

    /// Mean of all elements (a 0-dimensional tensor).
    pub fn mean_all(&mut self, x: &Tensor<E>) -> Tensor<E> {
        let axes: Vec<usize> = (0..x.ndim()).collect();
        self.mean(x, &axes, false).expect("all axes are valid")
    }

    /// Softmax along `axis`: `y_i = e^{x_i - max x} / sum_j e^{x_j - max x}`.
    pub fn softmax(&mut self, x: &Tensor<E>, axis: usize) -> Result<Tensor<E>> {
        if axis >= x.ndim() {
            return Err(Error::Shape(format!(
                "softmax axis {axis} for shape {:?}",
                x.shape()
            )));
        }
        let mut y = (*x.value).clone();
        let n = x.shape()[axis];
        // A row `[m, …]` as a slice: exponentiate its shifts from the maximum, normalise.
        let row = |lane: &mut [E]| {
            let m = lane.iter().fold(E::neg_infinity(), |m, &v| m.max(v));
            lane.iter_mut().for_each(|v| *v = (*v - m).exp());
            let s: E = lane.iter().copied().sum();
            lane.iter_mut().for_each(|v| *v /= s);
        };
        match y.as_slice_mut() {
            // The last axis of a standard-layout array: contiguous rows, split over the pool.
            Some(ys) if axis + 1 == x.ndim() && n > 0 => {
                if ys.len() >= crate::engine::par::PAR_MIN {
                    ys.par_chunks_mut(n).for_each(row);
                } else {
                    ys.chunks_mut(n).for_each(row);
                }
            }
            _ => {
                for mut lane in y.lanes_mut(Axis(axis)) {
                    let m = lane.fold(E::neg_infinity(), |m, &v| m.max(v));
                    lane.mapv_inplace(|v| (v - m).exp());
                    let s: E = lane.iter().copied().sum();
                    lane.mapv_inplace(|v| v / s);
                }
            }
        }
        let y = Arc::new(y);
        let rule = SoftmaxBack {
            y: Arc::clone(&y),
            axis,
        };
        Ok(self.record_shared(y, &[x], Box::new(rule)))
    }
}

/// `dx = y (dy - <dy, y>)` along the softmax axis.
struct SoftmaxBack<E: Element> {
    y: Arc<ArrayD<E>>,
    axis: usize,
}

impl<E: Element> Backward<E> for SoftmaxBack<E> {
    fn backward(self: Box<Self>, mut g: ArrayD<E>, _: &[bool]) -> Vec<Option<ArrayD<E>>> {
        let n = g.shape()[self.axis];
        let last = self.axis + 1 == g.ndim() && n > 0;
        if let (true, Some(ys)) = (last, self.y.as_slice()) {
            if let Some(gs) = g.as_slice_mut() {
                // Contiguous rows, split over the pool: `dot` is summed in the same order as
                // below.
                let row = |(gl, yl): (&mut [E], &[E])| {
                    let dot: E = gl.iter().zip(yl).map(|(&a, &b)| a * b).sum();
                    gl.iter_mut()
                        .zip(yl)
                        .for_each(|(g, &y)| *g = y * (*g - dot));
                };
                if gs.len() >= crate::engine::par::PAR_MIN {
                    gs.par_chunks_mut(n).zip(ys.par_chunks(n)).for_each(row);
                } else {
                    gs.chunks_mut(n).zip(ys.chunks(n)).for_each(row);
                }
                return vec![Some(g)];
            }
        }
        let ax = Axis(self.axis);
        Zip::from(g.lanes_mut(ax))
            .and(self.y.lanes(ax))
            .for_each(|mut gl, yl| {
                let dot: E = gl.iter().zip(yl.iter()).map(|(&a, &b)| a * b).sum();
                gl.zip_mut_with(&yl, |g, &y| *g = y * (*g - dot));
            });
        vec![Some(g)]
    }
}
