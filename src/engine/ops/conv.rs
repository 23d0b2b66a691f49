//! Image ops on NCHW tensors: 2-D convolution (through [`crate::engine::kernels`]), nearest
//! upsampling ×2 and 2×2 average pooling.

use std::sync::Arc;

use ndarray::{ArrayD, IxDyn};
use rayon::prelude::*;

use crate::engine::element::Element;
use crate::engine::graph::{Backward, Graph};
use crate::engine::kernels::{self, Conv2dGeom};
use crate::engine::tensor::Tensor;
use crate::error::{Error, Result};

// ANCHOR: conv2d
/// Backward of a convolution: the input gradient is the transposed convolution of `dy` with
/// `w`, the weight gradient the correlation of `x` with `dy`, the bias gradient the sum of
/// `dy` over batch and pixels.
struct Conv2dBack<E: Element> {
    geom: Conv2dGeom,
    x: Arc<ArrayD<E>>,
    w: Arc<ArrayD<E>>,
    /// `[C_out]`, `[N, C_out]` for a bias per image, or empty without a bias.
    bias_shape: Vec<usize>,
    /// A residual was added to the output ([`Graph::conv2d_add`]); its gradient is `dy`.
    residual: bool,
}

/// Runs one convolution kernel, charged in profiles to a detail entry named after the shape
/// and the pass (`SCORESDE_PROFILE`, [`crate::engine::profile::DETAIL`]).
fn detail<T>(geom: &Conv2dGeom, pass: &str, f: impl FnOnce() -> T) -> T {
    use crate::engine::profile;
    if !profile::enabled() {
        return f();
    }
    let name = format!("{}conv {} {pass}", profile::DETAIL, geom.label());
    profile::time(&name, f)
}

impl<E: Element> Backward<E> for Conv2dBack<E> {
    fn backward(self: Box<Self>, g: ArrayD<E>, needs: &[bool]) -> Vec<Option<ArrayD<E>>> {
        let geom = &self.geom;
        let dy = g.as_slice().unwrap();
        let dx = needs[0].then(|| {
            let dx = detail(geom, "input grad", || {
                kernels::conv::conv2d_backward_input_alloc(geom, dy, self.w.as_slice().unwrap())
            });
            ArrayD::from_shape_vec(self.x.raw_dim(), dx).unwrap()
        });
        let has_bias = !self.bias_shape.is_empty();
        let want_b = has_bias && needs[2];
        // A per-image bias `[N, C_out]` has the plane sums of `dy` as its gradient.
        let per_image = self.bias_shape.len() == 2;
        let mut db = crate::engine::par::zeros(if per_image { geom.n } else { 1 } * geom.c_out);
        if want_b && per_image {
            kernels::reduce::plane_sums(dy, geom.h_out() * geom.w_out(), &mut db);
        }
        let dw = if needs[1] || (want_b && !per_image) {
            let mut dw = crate::engine::par::zeros(geom.w_len());
            detail(geom, "weight grad", || {
                kernels::conv2d_backward_weight(
                    geom,
                    self.x.as_slice().unwrap(),
                    dy,
                    &mut dw,
                    (want_b && !per_image).then_some(&mut db[..]),
                )
            });
            needs[1].then(|| ArrayD::from_shape_vec(self.w.raw_dim(), dw).unwrap())
        } else {
            None
        };
        let db = want_b.then(|| ArrayD::from_shape_vec(IxDyn(&self.bias_shape), db).unwrap());
        let mut out = vec![dx, dw];
        if has_bias {
            out.push(db);
        }
        if self.residual {
            // The residual's gradient is `dy` itself, handed over without a copy.
            out.push(needs[out.len()].then_some(g));
        }
        out
    }
}

impl<E: Element> Graph<E> {
    /// 2-D convolution (cross-correlation, as in PyTorch): `x` is `N×C_in×H×W`, `w` is
    /// `C_out×C_in×kh×kw`, `bias` is `[C_out]` or, for a bias that differs between images
    /// (a time embedding folded in), `[N, C_out]`; zero padding `pad` on every side,
    /// `stride` in both directions.
    pub fn conv2d(
        &mut self,
        x: &Tensor<E>,
        w: &Tensor<E>,
        bias: Option<&Tensor<E>>,
        stride: usize,
        pad: usize,
    ) -> Result<Tensor<E>> {
        self.conv2d_res(x, w, bias, stride, pad, None)
    }

    /// `res + conv2d(x, w, bias)`: a residual connection fused into the convolution that
    /// ends a branch (`res` has the output's shape). One pass over the output instead of two,
    /// and the residual's gradient is the output gradient itself, passed on without a copy.
    pub fn conv2d_add(
        &mut self,
        x: &Tensor<E>,
        w: &Tensor<E>,
        bias: Option<&Tensor<E>>,
        stride: usize,
        pad: usize,
        res: &Tensor<E>,
    ) -> Result<Tensor<E>> {
        self.conv2d_res(x, w, bias, stride, pad, Some(res))
    }

    fn conv2d_res(
        &mut self,
        x: &Tensor<E>,
        w: &Tensor<E>,
        bias: Option<&Tensor<E>>,
        stride: usize,
        pad: usize,
        res: Option<&Tensor<E>>,
    ) -> Result<Tensor<E>> {
        let (&[n, c_in, h, wd], &[c_out, c_in2, kh, kw]) = (x.shape(), w.shape()) else {
            return Err(Error::Shape(format!(
                "conv2d needs NCHW input and OIHW weight, got {:?} and {:?}",
                x.shape(),
                w.shape()
            )));
        };
        if c_in != c_in2
            || stride == 0
            || kh == 0
            || kw == 0
            || h + 2 * pad < kh
            || wd + 2 * pad < kw
        {
            return Err(Error::Shape(format!(
                "conv2d: input {:?}, weight {:?}, stride {stride}, padding {pad}",
                x.shape(),
                w.shape()
            )));
        }
        if let Some(b) = bias {
            if b.shape() != [c_out] && b.shape() != [n, c_out] {
                return Err(Error::Shape(format!(
                    "conv2d: bias {:?} for {c_out} output channels and {n} images \
                     (expected [{c_out}] or [{n}, {c_out}])",
                    b.shape()
                )));
            }
        }
        let geom = Conv2dGeom {
            n,
            c_in,
            h,
            w: wd,
            c_out,
            kh,
            kw,
            stride,
            pad,
        };
        let y_shape = [n, c_out, geom.h_out(), geom.w_out()];
        if let Some(r) = res {
            if r.shape() != y_shape {
                return Err(Error::Shape(format!(
                    "conv2d_add: residual {:?} for an output {y_shape:?}",
                    r.shape()
                )));
            }
        }
        let (xs, ws, bs) = (x.as_slice(), w.as_slice(), bias.map(|b| b.as_slice()));
        let y = detail(&geom, "forward", || match res {
            Some(r) => kernels::conv::conv2d_forward_add_alloc(&geom, xs, ws, bs, r.as_slice()),
            None => kernels::conv::conv2d_forward_alloc(&geom, xs, ws, bs),
        });
        let y = ArrayD::from_shape_vec(IxDyn(&y_shape), y).unwrap();
        let rule = Conv2dBack {
            geom,
            x: Arc::clone(&x.value),
            w: Arc::clone(&w.value),
            bias_shape: bias.map_or(vec![], |b| b.shape().to_vec()),
            residual: res.is_some(),
        };
        let mut inputs = vec![x, w];
        inputs.extend(bias);
        inputs.extend(res);
        Ok(self.record(y, &inputs, Box::new(rule)))
    }
    // ANCHOR_END: conv2d

    /// Nearest-neighbour upsampling by 2 in both directions: `y[n,c,i,j] = x[n,c,i/2,j/2]`.
    pub fn upsample_nearest2x(&mut self, x: &Tensor<E>) -> Result<Tensor<E>> {
        let &[n, c, h, w] = x.shape() else {
            return Err(Error::Shape(format!(
                "upsample needs NCHW, got {:?}",
                x.shape()
            )));
        };
        // Every element is written (when a plane is empty, so is `y`).
        let y = crate::engine::par::written(n * c * 4 * h * w, |y| {
            kernels::upsample::upsample_nearest2x_forward_uninit(x.as_slice(), n * c, h, w, y)
        });
        let y = ArrayD::from_shape_vec(IxDyn(&[n, c, 2 * h, 2 * w]), y).unwrap();
        Ok(self.record(
            y,
            &[x],
            Box::new(Pool2Back {
                up: true,
                shape: [n, c, h, w],
            }),
        ))
    }

    /// 2×2 average pooling with stride 2: `y[n,c,i,j] = mean of x[n,c,2i..2i+2,2j..2j+2]`.
    /// Height and width must be even.
    pub fn avg_pool2x2(&mut self, x: &Tensor<E>) -> Result<Tensor<E>> {
        let &[n, c, h, w] = x.shape() else {
            return Err(Error::Shape(format!(
                "avg_pool needs NCHW, got {:?}",
                x.shape()
            )));
        };
        if h % 2 != 0 || w % 2 != 0 || h * w == 0 {
            return Err(Error::Shape(format!(
                "avg_pool2x2 needs even, positive H and W, got {:?}",
                x.shape()
            )));
        }
        let y = pool_sum(x.as_slice(), n * c, h, w, <E as Element>::from_f64(0.25));
        let y = ArrayD::from_shape_vec(IxDyn(&[n, c, h / 2, w / 2]), y).unwrap();
        Ok(self.record(
            y,
            &[x],
            Box::new(Pool2Back {
                up: false,
                shape: [n, c, h, w],
            }),
        ))
    }
}

/// `scale` times the sum of each 2×2 block of `planes` planes of size `h × w`.
fn pool_sum<E: Element>(x: &[E], planes: usize, h: usize, w: usize, scale: E) -> Vec<E> {
    let (ho, wo) = (h / 2, w / 2);
    let mut y = crate::engine::par::zeros(planes * ho * wo);
    let plane = |(p, yp): (usize, &mut [E])| {
        let xp = &x[p * h * w..(p + 1) * h * w];
        for i in 0..ho {
            for j in 0..wo {
                let r = 2 * i * w + 2 * j;
                yp[i * wo + j] = scale * (xp[r] + xp[r + 1] + xp[r + w] + xp[r + w + 1]);
            }
        }
    };
    if ho * wo == 0 {
        return y;
    }
    if y.len() >= crate::engine::par::PAR_MIN {
        y.par_chunks_mut(ho * wo).enumerate().for_each(plane);
    } else {
        y.chunks_mut(ho * wo).enumerate().for_each(plane);
    }
    y
}

/// Backward of upsampling (each input pixel feeds a 2×2 block: sum the block) and of average
/// pooling (each output spreads a quarter of its gradient over its block).
struct Pool2Back {
    up: bool,
    shape: [usize; 4],
}

impl<E: Element> Backward<E> for Pool2Back {
    fn backward(self: Box<Self>, g: ArrayD<E>, _: &[bool]) -> Vec<Option<ArrayD<E>>> {
        let [n, c, h, w] = self.shape;
        let gs = g.as_slice().unwrap();
        let dx = if self.up {
            let mut dx = crate::engine::par::zeros(n * c * h * w);
            kernels::upsample_nearest2x_backward(gs, n * c, h, w, &mut dx);
            dx
        } else {
            let q = <E as Element>::from_f64(0.25);
            let mut dx = crate::engine::par::zeros(n * c * h * w);
            let (ho, wo) = (h / 2, w / 2);
            for (p, dxp) in dx.chunks_mut(h * w).enumerate() {
                for i in 0..h {
                    for j in 0..w {
                        dxp[i * w + j] = q * gs[(p * ho + i / 2) * wo + j / 2];
                    }
                }
            }
            dx
        };
        vec![Some(
            ArrayD::from_shape_vec(IxDyn(&[n, c, h, w]), dx).unwrap(),
        )]
    }
}
