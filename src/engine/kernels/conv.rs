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
//!
//! Small images are batched: [`images_per_gemm`] images (a function of the shape alone) put
//! their patch matrices side by side, `[col_1 … col_m]`, so each pass is one GEMM with `m·P`
//! columns instead of `m` GEMMs with `P` (49 at 7×7, far too thin for the GEMM to run fast).

use std::any::TypeId;
use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::reduce::{bias_grad, partial_chunk_len, reduce_in_order};
use super::{direct, Conv2dGeom};
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
    let pp = g.h_out() * g.w_out();
    debug_assert_eq!(col.len(), g.c_in * g.kh * g.kw * pp);
    im2col_ld(g, x, col, pp, 0)
}

/// [`im2col`] into columns `off .. off + P` of a `K × ld` row-major matrix (several images
/// side by side, for one GEMM over all of them).
pub fn im2col_ld<E: Element>(g: &Conv2dGeom, x: &[E], col: &mut [E], ld: usize, off: usize) {
    let (ho, wo) = (g.h_out(), g.w_out());
    let (s, p) = (g.stride, g.pad);
    debug_assert_eq!(x.len(), g.c_in * g.h * g.w);
    debug_assert!(col.len() >= (g.c_in * g.kh * g.kw - 1) * ld + off + ho * wo);
    let mut k = 0;
    for c in 0..g.c_in {
        let plane = &x[c * g.h * g.w..(c + 1) * g.h * g.w];
        for a in 0..g.kh {
            for b in 0..g.kw {
                let row = &mut col[k * ld + off..k * ld + off + ho * wo];
                k += 1;
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
    col2im_ld(g, dcol, g.h_out() * g.w_out(), 0, dx)
}

/// [`col2im`] from columns `off .. off + P` of a `K × ld` row-major matrix.
pub fn col2im_ld<E: Element>(g: &Conv2dGeom, dcol: &[E], ld: usize, off: usize, dx: &mut [E]) {
    let (ho, wo) = (g.h_out(), g.w_out());
    let (s, p) = (g.stride, g.pad);
    dx.fill(E::zero());
    let mut k = 0;
    for c in 0..g.c_in {
        let plane = &mut dx[c * g.h * g.w..(c + 1) * g.h * g.w];
        for a in 0..g.kh {
            for b in 0..g.kw {
                let row = &dcol[k * ld + off..k * ld + off + ho * wo];
                k += 1;
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

/// Images whose patch matrices go side by side into one GEMM: enough for about [`COLS`]
/// columns, so that the GEMMs of small images (7×7: 49 columns each) are wide enough to run
/// at speed. A function of the shape only, so results do not depend on the thread count.
pub fn images_per_gemm(g: &Conv2dGeom) -> usize {
    let pp = g.h_out() * g.w_out();
    COLS.div_ceil(pp.max(1)).clamp(1, g.n.max(1))
}

/// Target column count of the batched GEMMs of [`images_per_gemm`].
pub const COLS: usize = 512;

/// Copies the output-shaped planes of `imgs` images (`c × pp` each, image after image in `y`)
/// into a `c × (imgs·pp)` matrix with the images side by side.
fn gather_planes<E: Element>(y: &[E], imgs: usize, c: usize, pp: usize, out: &mut [E]) {
    let cols = imgs * pp;
    for i in 0..imgs {
        for o in 0..c {
            out[o * cols + i * pp..o * cols + (i + 1) * pp]
                .copy_from_slice(&y[(i * c + o) * pp..(i * c + o + 1) * pp]);
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
pub fn conv2d_forward_gemm<E: Element>(
    g: &Conv2dGeom,
    x: &[E],
    w: &[E],
    bias: Option<&[E]>,
    y: &mut [E],
) {
    check(g, x.len(), w.len(), y.len());
    if let Some(b) = bias {
        super::check_bias_len(b.len(), g.n, g.c_out);
    }
    let kk = g.c_in * g.kh * g.kw;
    let pp = g.h_out() * g.w_out();
    let (x_img, y_img) = (g.c_in * g.h * g.w, g.c_out * pp);
    if g.n == 0 || y_img == 0 {
        return;
    }
    let gi = images_per_gemm(g);
    y.par_chunks_mut(y_img * gi)
        .zip(x.par_chunks((x_img * gi).max(1)))
        .enumerate()
        .for_each_init(
            || (Vec::new(), Vec::new()),
            |(col, out), (ci, (yc, xc))| {
                let imgs = yc.len() / y_img;
                let img0 = ci * gi;
                if imgs == 1 {
                    let beta = match bias {
                        Some(b) => {
                            for (o, row) in yc.chunks_exact_mut(pp).enumerate() {
                                row.fill(super::bias_at(b, g.c_out, img0, o));
                            }
                            E::one()
                        }
                        None => E::zero(),
                    };
                    let patches: &[E] = if is_pointwise(g) {
                        xc
                    } else {
                        col.resize(kk * pp, E::zero());
                        im2col(g, xc, col);
                        col
                    };
                    gemm_serial(g.c_out, kk, pp, w, false, patches, false, beta, yc);
                    return;
                }
                // Several small images: one GEMM over their patch matrices side by side.
                let cols = imgs * pp;
                col.resize(kk * cols, E::zero());
                for i in 0..imgs {
                    im2col_ld(g, &xc[i * x_img..(i + 1) * x_img], col, cols, i * pp);
                }
                out.resize(g.c_out * cols, E::zero());
                gemm_serial(g.c_out, kk, cols, w, false, col, false, E::zero(), out);
                for i in 0..imgs {
                    for o in 0..g.c_out {
                        let b = bias.map_or(E::zero(), |b| super::bias_at(b, g.c_out, img0 + i, o));
                        let src = &out[o * cols + i * pp..o * cols + (i + 1) * pp];
                        let dst = &mut yc[(i * g.c_out + o) * pp..(i * g.c_out + o + 1) * pp];
                        for (d, &v) in dst.iter_mut().zip(src) {
                            *d = v + b;
                        }
                    }
                }
            },
        );
}
// ANCHOR_END: conv_forward

/// Gradient with respect to the input: `dx_n = col2im(Wᵀ dy_n)`; overwrites `dx`.
/// Same contract as [`super::reference::conv2d_backward_input`].
pub fn conv2d_backward_input_gemm<E: Element>(g: &Conv2dGeom, dy: &[E], w: &[E], dx: &mut [E]) {
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
    let gi = images_per_gemm(g);
    dx.par_chunks_mut(x_img * gi)
        .zip(dy.par_chunks(y_img * gi))
        .for_each_init(
            || (Vec::new(), Vec::new()),
            |(dcol, dyg), (dxc, dyc)| {
                let imgs = dxc.len() / x_img;
                if imgs == 1 {
                    if is_pointwise(g) {
                        gemm_serial(kk, g.c_out, pp, w, true, dyc, false, E::zero(), dxc);
                    } else {
                        dcol.resize(kk * pp, E::zero());
                        gemm_serial(kk, g.c_out, pp, w, true, dyc, false, E::zero(), dcol);
                        col2im(g, dcol, dxc);
                    }
                    return;
                }
                // Several small images: one GEMM `Wᵀ [dy_1 … dy_m]`, then col2im per image.
                let cols = imgs * pp;
                dyg.resize(g.c_out * cols, E::zero());
                gather_planes(dyc, imgs, g.c_out, pp, dyg);
                dcol.resize(kk * cols, E::zero());
                gemm_serial(kk, g.c_out, cols, w, true, dyg, false, E::zero(), dcol);
                for i in 0..imgs {
                    col2im_ld(g, dcol, cols, i * pp, &mut dxc[i * x_img..(i + 1) * x_img]);
                }
            },
        );
}

// ANCHOR: conv_backward_weight
/// Gradients with respect to the weight and (optionally) the bias; overwrites both.
/// Same contract as [`super::reference::conv2d_backward_weight`].
///
/// The batch is cut into chunks of [`partial_chunk_len`] images (a function of `n` alone); each chunk
/// accumulates `Σ dy_n col_nᵀ` over its images in index order into its own partial, and the
/// partials are added in chunk order. The bias gradient is [`bias_grad`], also fixed-order.
pub fn conv2d_backward_weight_gemm<E: Element>(
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
    let chunk = partial_chunk_len(g.n);
    let n_chunks = g.n.div_ceil(chunk);
    let wl = dw.len();
    let mut partials = vec![E::zero(); wl * n_chunks];
    let gi = images_per_gemm(g);
    partials.par_chunks_mut(wl).enumerate().for_each_init(
        || (Vec::new(), Vec::new()),
        |(col, dyg), (ci, part)| {
            let lo = ci * chunk;
            let hi = (lo + chunk).min(g.n);
            // Groups of up to `gi` images, each one GEMM over their columns side by side.
            let mut start = lo;
            while start < hi {
                let imgs = gi.min(hi - start);
                let beta = if start == lo { E::zero() } else { E::one() };
                let xs = &x[start * x_img..(start + imgs) * x_img];
                let dys = &dy[start * y_img..(start + imgs) * y_img];
                if imgs == 1 {
                    let patches: &[E] = if is_pointwise(g) {
                        xs
                    } else {
                        col.resize(kk * pp, E::zero());
                        im2col(g, xs, col);
                        col
                    };
                    gemm_serial(g.c_out, pp, kk, dys, false, patches, true, beta, part);
                } else {
                    let cols = imgs * pp;
                    col.resize(kk * cols, E::zero());
                    for i in 0..imgs {
                        im2col_ld(g, &xs[i * x_img..(i + 1) * x_img], col, cols, i * pp);
                    }
                    dyg.resize(g.c_out * cols, E::zero());
                    gather_planes(dys, imgs, g.c_out, pp, dyg);
                    gemm_serial(g.c_out, cols, kk, dyg, false, col, true, beta, part);
                }
                start += imgs;
            }
        },
    );
    reduce_in_order(&partials, dw);
}
// ANCHOR_END: conv_backward_weight

/// `s` as `&[f32]` when `E` is `f32`.
fn as_f32<E: Element>(s: &[E]) -> Option<&[f32]> {
    // SAFETY: `E` is `f32` (same type id), so the cast is the identity.
    (TypeId::of::<E>() == TypeId::of::<f32>())
        .then(|| unsafe { std::slice::from_raw_parts(s.as_ptr().cast::<f32>(), s.len()) })
}

/// `s` as `&mut [f32]` when `E` is `f32`.
fn as_f32_mut<E: Element>(s: &mut [E]) -> Option<&mut [f32]> {
    // SAFETY: as in [`as_f32`]; the borrow is moved into the result.
    (TypeId::of::<E>() == TypeId::of::<f32>())
        .then(|| unsafe { std::slice::from_raw_parts_mut(s.as_mut_ptr().cast::<f32>(), s.len()) })
}

/// `true` when the passes of `g` in element type `E` run on the direct kernels of
/// [`direct`] (f32, stride 1, 3×3 with padding 1 or 1×1 without, on a CPU with AVX-512F); otherwise they run
/// as im2col + GEMM.
pub fn uses_direct<E: Element>(g: &Conv2dGeom) -> bool {
    direct_pass::<E>(g, direct::applies)
}

/// `true` when one pass of `g` (whose shapes `applies` accepts) runs on [`direct`]: f32 on a
/// CPU with AVX-512F.
fn direct_pass<E: Element>(g: &Conv2dGeom, applies: fn(&Conv2dGeom) -> bool) -> bool {
    TypeId::of::<E>() == TypeId::of::<f32>() && applies(g) && direct::available()
}

/// `y[n,o,i,j] = bias[o] + Σ_{c,a,b} w[o,c,a,b] x[n,c,i·s+a-p,j·s+b-p]`; overwrites `y`.
/// The bias is per channel or per image and channel ([`super::bias_at`]).
/// Same contract as [`super::reference::conv2d_forward`]: [`direct::forward`] where f32 on
/// AVX-512 and [`direct::forward_applies`], else [`conv2d_forward_gemm`].
pub fn conv2d_forward<E: Element>(
    g: &Conv2dGeom,
    x: &[E],
    w: &[E],
    bias: Option<&[E]>,
    y: &mut [E],
) {
    if direct_pass::<E>(g, direct::forward_applies) {
        check(g, x.len(), w.len(), y.len());
        let b = bias.map(|b| as_f32(b).unwrap());
        let (x, w) = (as_f32(x).unwrap(), as_f32(w).unwrap());
        return direct::forward(g, x, w, b, as_f32_mut(y).unwrap());
    }
    conv2d_forward_gemm(g, x, w, bias, y)
}

/// Gradient with respect to the input; overwrites `dx`. Same contract as
/// [`super::reference::conv2d_backward_input`]: [`direct::backward_input`] where f32 on
/// AVX-512 and [`direct::input_applies`], else [`conv2d_backward_input_gemm`].
pub fn conv2d_backward_input<E: Element>(g: &Conv2dGeom, dy: &[E], w: &[E], dx: &mut [E]) {
    if direct_pass::<E>(g, direct::input_applies) {
        check(g, dx.len(), w.len(), dy.len());
        let (dy, w) = (as_f32(dy).unwrap(), as_f32(w).unwrap());
        return direct::backward_input(g, dy, w, as_f32_mut(dx).unwrap());
    }
    conv2d_backward_input_gemm(g, dy, w, dx)
}

/// Gradients with respect to the weight and (optionally) the bias; overwrites both. Same
/// contract as [`super::reference::conv2d_backward_weight`]: [`direct::backward_weight`]
/// (bias gradient in the same pass) where f32 on AVX-512 and [`direct::weight_applies`], else
/// [`conv2d_backward_weight_gemm`].
pub fn conv2d_backward_weight<E: Element>(
    g: &Conv2dGeom,
    x: &[E],
    dy: &[E],
    dw: &mut [E],
    dbias: Option<&mut [E]>,
) {
    if direct_pass::<E>(g, direct::weight_applies) {
        check(g, x.len(), dw.len(), dy.len());
        if let Some(db) = &dbias {
            assert_eq!(db.len(), g.c_out, "conv2d: bias-gradient length");
        }
        let (x, dy) = (as_f32(x).unwrap(), as_f32(dy).unwrap());
        let db = dbias.map(|db| as_f32_mut(db).unwrap());
        return direct::backward_weight(g, x, dy, as_f32_mut(dw).unwrap(), db);
    }
    conv2d_backward_weight_gemm(g, x, dy, dw, dbias)
}

/// A new vector of `len` elements of `E` (which must be `f32`) whose slots `write` fills as
/// `f32`; `write` must write every slot, as [`direct::forward_uninit`] and
/// [`direct::backward_input_uninit`] do.
fn new_written_f32<E: Element>(len: usize, write: impl FnOnce(&mut [MaybeUninit<f32>])) -> Vec<E> {
    assert_eq!(
        TypeId::of::<E>(),
        TypeId::of::<f32>(),
        "new_written_f32: E is not f32"
    );
    let mut v: Vec<E> = Vec::with_capacity(len);
    // SAFETY: `E` is `f32`, so the spare capacity is `len` slots of `f32`.
    write(unsafe {
        std::slice::from_raw_parts_mut(v.spare_capacity_mut().as_mut_ptr().cast(), len)
    });
    // SAFETY: `write` wrote all `len` slots (the contract above).
    unsafe { v.set_len(len) };
    v
}

/// A new `y` of [`conv2d_forward`]: on the direct path the kernel writes every element into
/// fresh memory, with no zero fill first; elsewhere a zeroed buffer is overwritten.
pub fn conv2d_forward_alloc<E: Element>(
    g: &Conv2dGeom,
    x: &[E],
    w: &[E],
    bias: Option<&[E]>,
) -> Vec<E> {
    let len = g.y_len();
    if direct_pass::<E>(g, direct::forward_applies) {
        check(g, x.len(), w.len(), len);
        let b = bias.map(|b| as_f32(b).unwrap());
        let (xf, wf) = (as_f32(x).unwrap(), as_f32(w).unwrap());
        return new_written_f32(len, |y| direct::forward_uninit(g, xf, wf, b, y));
    }
    let mut y = crate::engine::par::zeros(len);
    conv2d_forward_gemm(g, x, w, bias, &mut y);
    y
}

/// A new `y = res + conv(x)`: [`conv2d_forward_alloc`] plus a residual `res` shaped as `y`
/// (a residual connection fused into the convolution that ends the branch). On the direct
/// path the residual is added to the bias before the products, in the same pass; elsewhere it
/// is added to the finished convolution.
pub fn conv2d_forward_add_alloc<E: Element>(
    g: &Conv2dGeom,
    x: &[E],
    w: &[E],
    bias: Option<&[E]>,
    res: &[E],
) -> Vec<E> {
    let len = g.y_len();
    assert_eq!(res.len(), len, "conv2d: residual length");
    if direct_pass::<E>(g, direct::forward_applies) {
        check(g, x.len(), w.len(), len);
        let b = bias.map(|b| as_f32(b).unwrap());
        let (xf, wf, rf) = (as_f32(x).unwrap(), as_f32(w).unwrap(), as_f32(res).unwrap());
        return new_written_f32(len, |y| {
            direct::forward_add_uninit(g, xf, wf, b, Some(rf), y)
        });
    }
    let mut y = conv2d_forward_alloc(g, x, w, bias);
    y.par_iter_mut()
        .zip(res.par_iter())
        .for_each(|(y, &r)| *y += r);
    y
}

/// A new `dx` of [`conv2d_backward_input`], written without a zero fill on the direct path
/// (as [`conv2d_forward_alloc`]).
pub fn conv2d_backward_input_alloc<E: Element>(g: &Conv2dGeom, dy: &[E], w: &[E]) -> Vec<E> {
    let len = g.x_len();
    if direct_pass::<E>(g, direct::input_applies) {
        check(g, len, w.len(), dy.len());
        let (dyf, wf) = (as_f32(dy).unwrap(), as_f32(w).unwrap());
        return new_written_f32(len, |dx| direct::backward_input_uninit(g, dyf, wf, dx));
    }
    let mut dx = crate::engine::par::zeros(len);
    conv2d_backward_input_gemm(g, dy, w, &mut dx);
    dx
}
