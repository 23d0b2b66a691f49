//! Fast 2-D convolution: im2col + a single-threaded GEMM per image, the batch split over the
//! rayon pool. The weight gradient sums over the batch in a fixed order, so every result is
//! bit-identical for any number of threads.
//!
//! Per image, with `K = c_in·kh·kw` rows and `P = h_out·w_out` columns of the patch matrix
//! `col` (`col[(c,a,b), (i,j)] = x[c, i·s+a-p, j·s+b-p]`, zero outside the image):
//! - forward: `y_n = W col_n + bias` (`c_out × K` times `K × P`);
//! - input gradient: `dcol = Wᵀ dy_n`, then `dx_n = col2im(dcol)` (the adjoint of im2col);
//! - weight gradient: `dW = Σ_n dy_n col_nᵀ`, `dbias = Σ_{n,i,j} dy`.
//!
//! A 1×1 convolution with stride 1 and no padding skips im2col: `col_n` is `x_n` itself.

use rayon::prelude::*;

use super::reduce::{bias_grad, reduce_in_order};
use super::Conv2dGeom;
use crate::engine::element::{gemm_serial, Element};

/// `true` when the patch matrix of an image equals the image itself.
fn is_pointwise(g: &Conv2dGeom) -> bool {
    g.kh == 1 && g.kw == 1 && g.stride == 1 && g.pad == 0
}

/// Range of output columns `j` whose input column `j·s + b - p` lies inside `0..w`.
fn valid_range(out: usize, b: usize, s: usize, p: usize, w: usize) -> (usize, usize) {
    // j·s + b >= p  <=>  j >= ceil((p - b)/s) when b < p.
    let lo = if b >= p { 0 } else { (p - b).div_ceil(s) };
    // j·s + b - p <= w - 1  <=>  j <= (w - 1 + p - b)/s.
    let hi = if w + p > b {
        ((w - 1 + p - b) / s + 1).min(out)
    } else {
        0
    };
    (lo.min(hi), hi)
}

// ANCHOR: im2col
/// Fills `col` (`K × P`, row-major) with the patches of one image `x` (`c_in × h × w`).
pub fn im2col<E: Element>(g: &Conv2dGeom, x: &[E], col: &mut [E]) {
    let (ho, wo) = (g.h_out(), g.w_out());
    let (s, p) = (g.stride, g.pad);
    debug_assert_eq!(x.len(), g.c_in * g.h * g.w);
    debug_assert_eq!(col.len(), g.c_in * g.kh * g.kw * ho * wo);
    let mut rows = col.chunks_exact_mut(ho * wo);
    for c in 0..g.c_in {
        let plane = &x[c * g.h * g.w..(c + 1) * g.h * g.w];
        for a in 0..g.kh {
            for b in 0..g.kw {
                let row = rows.next().expect("col has K rows");
                let (jlo, jhi) = valid_range(wo, b, s, p, g.w);
                for (i, out) in row.chunks_exact_mut(wo).enumerate() {
                    let r = (i * s + a) as isize - p as isize;
                    if r < 0 || r as usize >= g.h {
                        out.fill(E::zero());
                        continue;
                    }
                    let src = &plane[r as usize * g.w..(r as usize + 1) * g.w];
                    out[..jlo].fill(E::zero());
                    out[jhi..].fill(E::zero());
                    if jhi == jlo {
                        continue;
                    }
                    let first = jlo * s + b - p;
                    if s == 1 {
                        out[jlo..jhi].copy_from_slice(&src[first..first + (jhi - jlo)]);
                    } else {
                        for (k, o) in out[jlo..jhi].iter_mut().enumerate() {
                            *o = src[first + k * s];
                        }
                    }
                }
            }
        }
    }
}
// ANCHOR_END: im2col

/// The adjoint of [`im2col`]: `dx[c, i·s+a-p, j·s+b-p] += dcol[(c,a,b), (i,j)]`, after
/// zeroing `dx`. The additions into each element happen in a fixed order.
pub fn col2im<E: Element>(g: &Conv2dGeom, dcol: &[E], dx: &mut [E]) {
    let (ho, wo) = (g.h_out(), g.w_out());
    let (s, p) = (g.stride, g.pad);
    dx.fill(E::zero());
    let mut rows = dcol.chunks_exact(ho * wo);
    for c in 0..g.c_in {
        let plane = &mut dx[c * g.h * g.w..(c + 1) * g.h * g.w];
        for a in 0..g.kh {
            for b in 0..g.kw {
                let row = rows.next().expect("dcol has K rows");
                let (jlo, jhi) = valid_range(wo, b, s, p, g.w);
                for (i, d) in row.chunks_exact(wo).enumerate() {
                    let r = (i * s + a) as isize - p as isize;
                    if r < 0 || r as usize >= g.h || jhi == jlo {
                        continue;
                    }
                    let dst = &mut plane[r as usize * g.w..(r as usize + 1) * g.w];
                    let first = jlo * s + b - p;
                    if s == 1 {
                        for (o, v) in dst[first..first + (jhi - jlo)].iter_mut().zip(&d[jlo..jhi]) {
                            *o += *v;
                        }
                    } else {
                        for (k, v) in d[jlo..jhi].iter().enumerate() {
                            dst[first + k * s] += *v;
                        }
                    }
                }
            }
        }
    }
}

fn check(g: &Conv2dGeom, x: usize, w: usize, y: usize) {
    assert_eq!(x, g.x_len(), "conv2d: input length");
    assert_eq!(w, g.w_len(), "conv2d: weight length");
    assert_eq!(y, g.y_len(), "conv2d: output length");
}

// ANCHOR: conv_forward
/// `y[n,o,i,j] = bias[o] + Σ_{c,a,b} w[o,c,a,b] x[n,c,i·s+a-p,j·s+b-p]`; overwrites `y`.
/// Same contract as [`super::reference::conv2d_forward`].
pub fn conv2d_forward<E: Element>(
    g: &Conv2dGeom,
    x: &[E],
    w: &[E],
    bias: Option<&[E]>,
    y: &mut [E],
) {
    check(g, x.len(), w.len(), y.len());
    if let Some(b) = bias {
        assert_eq!(b.len(), g.c_out, "conv2d: bias length");
    }
    let kk = g.c_in * g.kh * g.kw;
    let pp = g.h_out() * g.w_out();
    let (x_img, y_img) = (g.c_in * g.h * g.w, g.c_out * pp);
    if g.n == 0 || y_img == 0 {
        return;
    }
    y.par_chunks_mut(y_img)
        .zip(x.par_chunks(x_img.max(1)))
        .for_each_init(Vec::new, |col, (yn, xn)| {
            let beta = match bias {
                Some(b) => {
                    for (row, &bo) in yn.chunks_exact_mut(pp).zip(b) {
                        row.fill(bo);
                    }
                    E::one()
                }
                None => E::zero(),
            };
            let patches: &[E] = if is_pointwise(g) {
                xn
            } else {
                col.resize(kk * pp, E::zero());
                im2col(g, xn, col);
                col
            };
            gemm_serial(g.c_out, kk, pp, w, false, patches, false, beta, yn);
        });
}
// ANCHOR_END: conv_forward

/// Gradient with respect to the input: `dx_n = col2im(Wᵀ dy_n)`; overwrites `dx`.
/// Same contract as [`super::reference::conv2d_backward_input`].
pub fn conv2d_backward_input<E: Element>(g: &Conv2dGeom, dy: &[E], w: &[E], dx: &mut [E]) {
    check(g, dx.len(), w.len(), dy.len());
    let kk = g.c_in * g.kh * g.kw;
    let pp = g.h_out() * g.w_out();
    let (x_img, y_img) = (g.c_in * g.h * g.w, g.c_out * pp);
    if g.n == 0 || x_img == 0 {
        return;
    }
    if y_img == 0 {
        dx.fill(E::zero());
        return;
    }
    dx.par_chunks_mut(x_img)
        .zip(dy.par_chunks(y_img))
        .for_each_init(Vec::new, |dcol, (dxn, dyn_)| {
            if is_pointwise(g) {
                gemm_serial(kk, g.c_out, pp, w, true, dyn_, false, E::zero(), dxn);
            } else {
                dcol.resize(kk * pp, E::zero());
                gemm_serial(kk, g.c_out, pp, w, true, dyn_, false, E::zero(), dcol);
                col2im(g, dcol, dxn);
            }
        });
}

/// Number of images whose weight-gradient partials one task accumulates: a function of the
/// batch size only (never of the thread count), so the reduction order is fixed.
fn chunk_len(n: usize) -> usize {
    const MAX_PARTIALS: usize = 16;
    n.div_ceil(MAX_PARTIALS).max(1)
}

// ANCHOR: conv_backward_weight
/// Gradients with respect to the weight and (optionally) the bias; overwrites both.
/// Same contract as [`super::reference::conv2d_backward_weight`].
///
/// The batch is cut into chunks of [`chunk_len`] images (a function of `n` alone); each chunk
/// accumulates `Σ dy_n col_nᵀ` over its images in index order into its own partial, and the
/// partials are added in chunk order. The bias gradient is [`bias_grad`], also fixed-order.
pub fn conv2d_backward_weight<E: Element>(
    g: &Conv2dGeom,
    x: &[E],
    dy: &[E],
    dw: &mut [E],
    dbias: Option<&mut [E]>,
) {
    check(g, x.len(), dw.len(), dy.len());
    let kk = g.c_in * g.kh * g.kw;
    let pp = g.h_out() * g.w_out();
    let (x_img, y_img) = (g.c_in * g.h * g.w, g.c_out * pp);
    if let Some(db) = dbias {
        assert_eq!(db.len(), g.c_out, "conv2d: bias-gradient length");
        bias_grad(dy, g.n, g.c_out, pp, db);
    }
    if g.n == 0 || y_img == 0 || x_img == 0 {
        dw.fill(E::zero());
        return;
    }
    let chunk = chunk_len(g.n);
    let n_chunks = g.n.div_ceil(chunk);
    let wl = dw.len();
    let mut partials = vec![E::zero(); wl * n_chunks];
    partials
        .par_chunks_mut(wl)
        .enumerate()
        .for_each_init(Vec::new, |col, (ci, part)| {
            let lo = ci * chunk;
            let hi = (lo + chunk).min(g.n);
            for img in lo..hi {
                let xn = &x[img * x_img..(img + 1) * x_img];
                let dyn_ = &dy[img * y_img..(img + 1) * y_img];
                let patches: &[E] = if is_pointwise(g) {
                    xn
                } else {
                    col.resize(kk * pp, E::zero());
                    im2col(g, xn, col);
                    col
                };
                let beta = if img == lo { E::zero() } else { E::one() };
                gemm_serial(g.c_out, pp, kk, dyn_, false, patches, true, beta, part);
            }
        });
    reduce_in_order(&partials, dw);
}
// ANCHOR_END: conv_backward_weight
