//! Normalisation: group norm (one fused op with its own backward) and layer norm (group norm
//! with one group over the last axis).

use std::sync::Arc;

use ndarray::{ArrayD, IxDyn};
use rayon::prelude::*;

use crate::engine::element::Element;
use crate::engine::graph::{Backward, Graph};
use crate::engine::tensor::Tensor;
use crate::error::{Error, Result};

/// Layout of a group-norm input `[N, C, rest...]` split into `groups` groups of channels.
#[derive(Clone, Copy, Debug)]
struct Blocks {
    n: usize,
    c: usize,
    /// Elements per channel (product of the trailing axes).
    s: usize,
    /// Channels per group.
    cg: usize,
}

impl Blocks {
    /// Elements per `(sample, group)` block: contiguous in memory.
    fn len(&self) -> usize {
        self.cg * self.s
    }
}

/// Per-block `(mean, 1/sqrt(var + eps))`, accumulated in f64 in index order.
fn block_stats<E: Element>(xb: &[E], eps: f64) -> (f64, f64) {
    let m = xb.len() as f64;
    let mean = xb.iter().map(|v| Element::to_f64(*v)).sum::<f64>() / m;
    let var = xb
        .iter()
        .map(|v| {
            let d = Element::to_f64(*v) - mean;
            d * d
        })
        .sum::<f64>()
        / m;
    (mean, 1.0 / (var + eps).sqrt())
}

/// Runs `f(block_index, block)` over the `(sample, group)` blocks, in parallel when large.
/// Each block is handled by one thread from start to end, so results do not depend on the
/// thread count.
fn for_blocks<E: Element>(out: &mut [E], len: usize, f: impl Fn(usize, &mut [E]) + Sync + Send) {
    if len == 0 {
        return;
    }
    if out.len() >= crate::engine::par::PAR_MIN {
        out.par_chunks_mut(len)
            .enumerate()
            .for_each(|(i, b)| f(i, b));
    } else {
        out.chunks_mut(len).enumerate().for_each(|(i, b)| f(i, b));
    }
}

// ANCHOR: group_norm_back
/// Backward of group norm. With `x̂ = (x - μ) r`, `r = 1/sqrt(σ² + ε)` over a block of `M`
/// elements and `g = dy γ`: `dx = r (g - mean(g) - x̂ mean(g x̂))`, `dγ_c = Σ dy x̂`,
/// `dβ_c = Σ dy` (sums over samples and pixels of channel `c`).
struct GroupNormBack<E: Element> {
    b: Blocks,
    x: Arc<ArrayD<E>>,
    gamma: Arc<ArrayD<E>>,
    stats: Vec<(f64, f64)>,
}

impl<E: Element> Backward<E> for GroupNormBack<E> {
    fn backward(self: Box<Self>, dy: ArrayD<E>, needs: &[bool]) -> Vec<Option<ArrayD<E>>> {
        let Blocks { n, c, s, cg } = self.b;
        let groups = c / cg;
        let (x, gamma, dys) = (
            self.x.as_slice().unwrap(),
            self.gamma.as_slice().unwrap(),
            dy.as_slice().unwrap(),
        );
        let xhat =
            |i: usize, blk: usize| (Element::to_f64(x[i]) - self.stats[blk].0) * self.stats[blk].1;
        let dx = needs[0].then(|| {
            let mut dx = vec![E::zero(); x.len()];
            for_blocks(&mut dx, self.b.len(), |blk, dxb| {
                let base = blk * self.b.len();
                let g0 = (blk % groups) * cg;
                let (mut sg, mut sgx) = (0.0, 0.0);
                for (k, _) in dxb.iter().enumerate() {
                    let gk = Element::to_f64(dys[base + k]) * Element::to_f64(gamma[g0 + k / s]);
                    sg += gk;
                    sgx += gk * xhat(base + k, blk);
                }
                let m = dxb.len() as f64;
                let (mg, mgx, r) = (sg / m, sgx / m, self.stats[blk].1);
                for (k, d) in dxb.iter_mut().enumerate() {
                    let gk = Element::to_f64(dys[base + k]) * Element::to_f64(gamma[g0 + k / s]);
                    *d = <E as Element>::from_f64(r * (gk - mg - xhat(base + k, blk) * mgx));
                }
            });
            ArrayD::from_shape_vec(self.x.raw_dim(), dx).unwrap()
        });
        let (dgamma, dbeta) = if needs[1] || needs[2] {
            // Per-(sample, channel) partial sums, then a sum over samples in index order.
            let mut part = vec![(0.0f64, 0.0f64); n * c];
            let fill = |(nc, p): (usize, &mut (f64, f64))| {
                let blk = (nc / c) * groups + (nc % c) / cg;
                #[allow(clippy::needless_range_loop)]
                for i in nc * s..(nc + 1) * s {
                    let d = Element::to_f64(dys[i]);
                    p.0 += d * xhat(i, blk);
                    p.1 += d;
                }
            };
            if x.len() >= crate::engine::par::PAR_MIN {
                part.par_iter_mut().enumerate().for_each(fill);
            } else {
                part.iter_mut().enumerate().for_each(fill);
            }
            let mut dg = vec![E::zero(); c];
            let mut db = vec![E::zero(); c];
            for ch in 0..c {
                let (a, b) = (0..n).fold((0.0, 0.0), |acc, k| {
                    (acc.0 + part[k * c + ch].0, acc.1 + part[k * c + ch].1)
                });
                dg[ch] = <E as Element>::from_f64(a);
                db[ch] = <E as Element>::from_f64(b);
            }
            (
                needs[1].then(|| ArrayD::from_shape_vec(IxDyn(&[c]), dg).unwrap()),
                needs[2].then(|| ArrayD::from_shape_vec(IxDyn(&[c]), db).unwrap()),
            )
        } else {
            (None, None)
        };
        vec![dx, dgamma, dbeta]
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
        if x.ndim() < 2 || groups == 0 || x.shape()[1] % groups != 0 {
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
        let b = Blocks {
            n,
            c,
            s: x.shape()[2..].iter().product(),
            cg: c / groups,
        };
        let xs = x.as_slice();
        let stats: Vec<(f64, f64)> = if b.len() == 0 {
            Vec::new()
        } else if xs.len() >= crate::engine::par::PAR_MIN {
            xs.par_chunks(b.len())
                .map(|xb| block_stats(xb, eps))
                .collect()
        } else {
            xs.chunks(b.len()).map(|xb| block_stats(xb, eps)).collect()
        };
        let (gs, bs) = (gamma.as_slice(), beta.as_slice());
        let mut y = vec![E::zero(); xs.len()];
        for_blocks(&mut y, b.len(), |blk, yb| {
            let base = blk * b.len();
            let c0 = (blk % groups) * b.cg;
            let (mean, r) = stats[blk];
            for (k, v) in yb.iter_mut().enumerate() {
                let ch = c0 + k / b.s;
                let xh = (Element::to_f64(xs[base + k]) - mean) * r;
                *v = <E as Element>::from_f64(
                    xh * Element::to_f64(gs[ch]) + Element::to_f64(bs[ch]),
                );
            }
        });
        let y = ArrayD::from_shape_vec(x.value.raw_dim(), y).unwrap();
        let rule = GroupNormBack {
            b,
            x: Arc::clone(&x.value),
            gamma: Arc::clone(&gamma.value),
            stats,
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
