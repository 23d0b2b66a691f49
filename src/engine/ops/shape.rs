//! Shape ops: reshape, permute, concatenation and narrowing. Their backward rules move the
//! gradient back without arithmetic.

use std::mem::MaybeUninit;

use ndarray::{ArrayD, Axis, IxDyn, Slice};
use rayon::prelude::*;

use crate::engine::element::Element;
use crate::engine::graph::{Backward, Graph};
use crate::engine::tensor::Tensor;
use crate::error::{Error, Result};

struct ReshapeBack {
    in_shape: Vec<usize>,
}

impl<E: Element> Backward<E> for ReshapeBack {
    fn backward(self: Box<Self>, g: ArrayD<E>, _: &[bool]) -> Vec<Option<ArrayD<E>>> {
        let g = g
            .into_shape_with_order(IxDyn(&self.in_shape))
            .expect("same size");
        vec![Some(g)]
    }
}

struct PermuteBack {
    inverse: Vec<usize>,
}

impl<E: Element> Backward<E> for PermuteBack {
    fn backward(self: Box<Self>, g: ArrayD<E>, _: &[bool]) -> Vec<Option<ArrayD<E>>> {
        vec![Some(permuted(&g, &self.inverse))]
    }
}

/// `x` with its axes permuted (`y` axis `i` is `x` axis `axes[i]`), in standard layout. A swap
/// of the last two axes (a batch of matrix transposes, as attention does) runs as blocked
/// transposes, the batch split over the rayon pool; other permutations go through ndarray.
fn permuted<E: Element>(x: &ArrayD<E>, axes: &[usize]) -> ArrayD<E> {
    let nd = axes.len();
    let swaps_last_two = nd >= 2
        && axes[nd - 2] == nd - 1
        && axes[nd - 1] == nd - 2
        && axes[..nd - 2].iter().enumerate().all(|(i, &a)| i == a);
    let Some(xs) = x.as_slice().filter(|_| swaps_last_two) else {
        return x
            .view()
            .permuted_axes(IxDyn(axes))
            .as_standard_layout()
            .into_owned();
    };
    let (m, n) = (x.shape()[nd - 2], x.shape()[nd - 1]);
    let mut shape = x.shape().to_vec();
    shape.swap(nd - 2, nd - 1);
    let y = crate::engine::par::written(xs.len(), |y| {
        if m * n == 0 {
            return;
        }
        let one = |(dst, src): (&mut [MaybeUninit<E>], &[E])| transpose_block(src, m, n, dst);
        if xs.len() >= crate::engine::par::PAR_MIN {
            y.par_chunks_mut(m * n)
                .zip(xs.par_chunks(m * n))
                .for_each(one);
        } else {
            y.chunks_mut(m * n).zip(xs.chunks(m * n)).for_each(one);
        }
    });
    ArrayD::from_shape_vec(IxDyn(&shape), y).expect("same length")
}

/// `dst[j·m + i] = src[i·n + j]` for an `m × n` matrix, by 16×16 tiles (both sides stay in
/// cache lines); writes every element of `dst`.
fn transpose_block<E: Copy>(src: &[E], m: usize, n: usize, dst: &mut [MaybeUninit<E>]) {
    const T: usize = 16;
    for i0 in (0..m).step_by(T) {
        for j0 in (0..n).step_by(T) {
            for j in j0..(j0 + T).min(n) {
                for i in i0..(i0 + T).min(m) {
                    dst[j * m + i].write(src[i * n + j]);
                }
            }
        }
    }
}

struct ConcatBack {
    axis: usize,
    sizes: Vec<usize>,
}

/// `(outer, inner)`: the products of the axes before and after `axis`, so that a row-major
/// array is `outer` blocks, each holding `shape[axis] · inner` contiguous elements.
fn outer_inner(shape: &[usize], axis: usize) -> (usize, usize) {
    (
        shape[..axis].iter().product(),
        shape[axis + 1..].iter().product(),
    )
}

impl<E: Element> Backward<E> for ConcatBack {
    fn backward(self: Box<Self>, g: ArrayD<E>, needs: &[bool]) -> Vec<Option<ArrayD<E>>> {
        let (outer, inner) = outer_inner(g.shape(), self.axis);
        let total: usize = self.sizes.iter().sum();
        let gs = g.as_slice().expect("gradients are standard layout");
        let mut start = 0;
        let mut out = Vec::with_capacity(self.sizes.len());
        for (i, &s) in self.sizes.iter().enumerate() {
            let part = needs[i].then(|| {
                let mut shape = g.shape().to_vec();
                shape[self.axis] = s;
                let len = outer * s * inner;
                // Every block is copied (when a block is empty, so is `v`).
                let v = crate::engine::par::written(len, |v| {
                    let block = |(o, dst): (usize, &mut [MaybeUninit<E>])| {
                        let src = o * total * inner + start * inner;
                        crate::engine::par::write_slice(dst, &gs[src..src + s * inner]);
                    };
                    if s * inner > 0 {
                        if len >= crate::engine::par::PAR_MIN {
                            v.par_chunks_exact_mut(s * inner)
                                .enumerate()
                                .for_each(block);
                        } else {
                            v.chunks_exact_mut(s * inner).enumerate().for_each(block);
                        }
                    }
                });
                ArrayD::from_shape_vec(IxDyn(&shape), v).expect("sizes")
            });
            out.push(part);
            start += s;
        }
        out
    }
}

struct NarrowBack {
    in_shape: Vec<usize>,
    axis: usize,
    start: usize,
}

impl<E: Element> Backward<E> for NarrowBack {
    fn backward(self: Box<Self>, g: ArrayD<E>, _: &[bool]) -> Vec<Option<ArrayD<E>>> {
        let mut gx = ArrayD::zeros(IxDyn(&self.in_shape));
        let len = g.shape()[self.axis];
        gx.slice_axis_mut(Axis(self.axis), Slice::from(self.start..self.start + len))
            .assign(&g);
        vec![Some(gx)]
    }
}

impl<E: Element> Graph<E> {
    /// The same elements in row-major order under a new shape.
    pub fn reshape(&mut self, x: &Tensor<E>, shape: &[usize]) -> Result<Tensor<E>> {
        let n: usize = shape.iter().product();
        if n != x.len() {
            return Err(Error::Shape(format!(
                "cannot reshape {:?} to {shape:?}",
                x.shape()
            )));
        }
        let y = (*x.value)
            .clone()
            .into_shape_with_order(IxDyn(shape))
            .expect("size checked");
        let rule = ReshapeBack {
            in_shape: x.shape().to_vec(),
        };
        Ok(self.record(y, &[x], Box::new(rule)))
    }

    /// Axis permutation: output axis `i` is input axis `axes[i]`.
    pub fn permute(&mut self, x: &Tensor<E>, axes: &[usize]) -> Result<Tensor<E>> {
        let mut seen = vec![false; x.ndim()];
        if axes.len() != x.ndim()
            || axes
                .iter()
                .any(|&a| a >= x.ndim() || std::mem::replace(&mut seen[a], true))
        {
            return Err(Error::Shape(format!(
                "{axes:?} is not a permutation of the axes of {:?}",
                x.shape()
            )));
        }
        let mut inverse = vec![0; axes.len()];
        for (i, &a) in axes.iter().enumerate() {
            inverse[a] = i;
        }
        let y = permuted(&x.value, axes);
        Ok(self.record(y, &[x], Box::new(PermuteBack { inverse })))
    }

    /// Swaps two axes.
    pub fn transpose(&mut self, x: &Tensor<E>, a: usize, b: usize) -> Result<Tensor<E>> {
        if a >= x.ndim() || b >= x.ndim() {
            return Err(Error::Shape(format!(
                "cannot swap axes {a}, {b} of {:?}",
                x.shape()
            )));
        }
        let mut axes: Vec<usize> = (0..x.ndim()).collect();
        axes.swap(a, b);
        self.permute(x, &axes)
    }

    /// Concatenation along `axis`; all other axes must agree.
    pub fn concat(&mut self, xs: &[&Tensor<E>], axis: usize) -> Result<Tensor<E>> {
        let first = xs
            .first()
            .ok_or_else(|| Error::Shape("concat of no tensors".into()))?;
        if axis >= first.ndim() {
            return Err(Error::Shape(format!(
                "concat axis {axis} for shape {:?}",
                first.shape()
            )));
        }
        for t in xs {
            let ok = t.ndim() == first.ndim()
                && (0..t.ndim()).all(|i| i == axis || t.shape()[i] == first.shape()[i]);
            if !ok {
                return Err(Error::Shape(format!(
                    "cannot concatenate {:?} and {:?} along axis {axis}",
                    first.shape(),
                    t.shape()
                )));
            }
        }
        // Row-major: each of the `outer` output blocks is the inputs' blocks end to end.
        let (outer, inner) = outer_inner(first.shape(), axis);
        let total: usize = xs.iter().map(|t| t.shape()[axis]).sum();
        let mut shape = first.shape().to_vec();
        shape[axis] = total;
        let len = outer * total * inner;
        // Every output block is the inputs' blocks end to end (when a block is empty, so is
        // `y`).
        let y = crate::engine::par::written(len, |y| {
            let block = |(o, dst): (usize, &mut [MaybeUninit<E>])| {
                let mut at = 0;
                for t in xs {
                    let l = t.shape()[axis] * inner;
                    crate::engine::par::write_slice(
                        &mut dst[at..at + l],
                        &t.as_slice()[o * l..(o + 1) * l],
                    );
                    at += l;
                }
            };
            if total * inner > 0 {
                if len >= crate::engine::par::PAR_MIN {
                    y.par_chunks_exact_mut(total * inner)
                        .enumerate()
                        .for_each(block);
                } else {
                    y.chunks_exact_mut(total * inner)
                        .enumerate()
                        .for_each(block);
                }
            }
        });
        let y = ArrayD::from_shape_vec(IxDyn(&shape), y).expect("sizes");
        let rule = ConcatBack {
            axis,
            sizes: xs.iter().map(|t| t.shape()[axis]).collect(),
        };
        Ok(self.record(y, xs, Box::new(rule)))
    }

    /// Elements `start..start + len` along `axis`.
    pub fn narrow(
        &mut self,
        x: &Tensor<E>,
        axis: usize,
        start: usize,
        len: usize,
    ) -> Result<Tensor<E>> {
        if axis >= x.ndim() || start + len > x.shape()[axis] {
            return Err(Error::Shape(format!(
                "narrow({axis}, {start}, {len}) out of range for {:?}",
                x.shape()
            )));
        }
        let y = x
            .value
            .slice_axis(Axis(axis), Slice::from(start..start + len))
            .as_standard_layout()
            .into_owned();
        let rule = NarrowBack {
            in_shape: x.shape().to_vec(),
            axis,
            start,
        };
        Ok(self.record(y, &[x], Box::new(rule)))
    }
}
