//! A fused linear layer `y = act(z)`, `z = x Wᵀ + b`, on row-major slices: the pointwise
//! halves alone ([`linear_act_forward`], [`linear_act_backward`]) and the whole layer with its
//! products ([`linear_forward`], [`linear_backward`]).
//!
//! Forward: `z = x Wᵀ`, `z[r, j] += b[j]`, then `y = act(z)`. Backward, from `dy`:
//! `dz = dy ⊙ act'(z)`, `db[j] = Σ_r dz[r, j]`, `dx = dz W`, `dW = dzᵀ x`. Every output element
//! is computed by the same scalar formulas in the same order as the unfused ops (the GEMM of
//! [`crate::engine::element::gemm`], `Add`, [`super::activation::silu`],
//! [`super::activation::silu_derivative`], and the bias sum as one running sum over the rows in
//! order), so a fused layer reproduces the composition `silu(x Wᵀ + b)` bit for bit. Work is
//! split over rows, or over output features, never inside a sum, so results do not depend on
//! the number of threads.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::activation::{has_avx2_fma, silu, silu_derivative};
use super::{as_uninit, Activation};
use crate::engine::element::Element;

/// Elements per parallel task; below two tasks' worth everything stays on one thread.
const TASK: usize = 1 << 14;

/// # Safety
/// Every element of `s` must have been written.
unsafe fn assume_init<E>(s: &mut [MaybeUninit<E>]) -> &mut [E] {
    // SAFETY: the caller guarantees initialisation; the layouts agree.
    unsafe { std::slice::from_raw_parts_mut(s.as_mut_ptr().cast(), s.len()) }
}

/// `C = A op(B)` with `A` row-major `m × k`, `B` row-major `k × n` (stored `n × k` when `tb`)
/// and `C` row-major `m × n`, only written (β = 0: `C` need not be initialised), on the
/// calling thread.
fn gemm_into<E: Element>(
    m: usize,
    k: usize,
    n: usize,
    a: &[E],
    b: &[E],
    tb: bool,
    c: &mut [MaybeUninit<E>],
) {
    assert!(
        a.len() == m * k && b.len() == k * n && c.len() == m * n,
        "gemm_into: lengths"
    );
    if k == 0 {
        c.iter_mut().for_each(|v| {
            v.write(E::zero());
        });
        return;
    }
    if m * n == 0 {
        return;
    }
    let (rsb, csb) = if tb { (1, k as isize) } else { (n as isize, 1) };
    // SAFETY: the lengths were checked, so the strides stay in bounds; with β = 0 the GEMM
    // writes every element of C without reading it (matrixmultiply's documented contract),
    // and `c` is a unique borrow.
    unsafe {
        E::gemm_raw(
            m,
            k,
            n,
            E::one(),
            a.as_ptr(),
            k as isize,
            1,
            b.as_ptr(),
            rsb,
            csb,
            E::zero(),
            c.as_mut_ptr().cast(),
            n as isize,
            1,
        )
    }
}

/// Where the forward pass writes the activation.
enum Dest<'a, E> {
    /// `act(z)` in place into `z`.
    InPlace,
    /// `act(z)` into `y`, keeping `z`.
    Out(&'a mut [MaybeUninit<E>]),
    /// SiLU into `y` and `σ(z)` into `s` (for the backward pass), keeping `z`.
    OutSigmoid(&'a mut [MaybeUninit<E>], &'a mut [MaybeUninit<E>]),
}

#[inline(always)]
fn forward_rows<E: Element>(
    z: &mut [E],
    dest: Dest<'_, E>,
    cols: usize,
    bias: Option<&[E]>,
    act: Activation,
) {
    if let Some(b) = bias {
        for row in z.chunks_exact_mut(cols) {
            for (v, &c) in row.iter_mut().zip(b) {
                *v += c;
            }
        }
    }
    if act == Activation::Silu {
        match dest {
            Dest::InPlace => z.iter_mut().for_each(|v| *v = silu(*v)),
            Dest::Out(y) => y.iter_mut().zip(z.iter()).for_each(|(o, &v)| {
                o.write(silu(v));
            }),
            // The denominator of `silu(v) = v / (1 + e^{-v})` and of `σ(v) = 1 / (1 + e^{-v})`
            // as in `silu` and `silu_derivative`: the same bits as those functions.
            Dest::OutSigmoid(y, s) => {
                for ((o, sg), &v) in y.iter_mut().zip(s.iter_mut()).zip(z.iter()) {
                    let d = E::one() + (-v).exp_fast();
                    o.write(v / d);
                    sg.write(E::one() / d);
                }
            }
        }
    }
}

/// [`forward_rows`] compiled for AVX2 + FMA.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn forward_rows_avx2<E: Element>(
    z: &mut [E],
    dest: Dest<'_, E>,
    cols: usize,
    bias: Option<&[E]>,
    act: Activation,
) {
    forward_rows(z, dest, cols, bias, act)
}

fn forward_block<E: Element>(
    z: &mut [E],
    dest: Dest<'_, E>,
    cols: usize,
    bias: Option<&[E]>,
    act: Activation,
    simd: bool,
) {
    #[cfg(target_arch = "x86_64")]
    if simd {
        // SAFETY: the caller passes `simd` only when AVX2 and FMA were detected at run time.
        return unsafe { forward_rows_avx2(z, dest, cols, bias, act) };
    }
    let _ = simd;
    forward_rows(z, dest, cols, bias, act)
}

/// Forward half of a fused linear layer on `z = x Wᵀ` (`rows × cols`, row-major): adds the
/// bias to every row of `z` in place, then writes `act(z)` to `y` when given (keeping `z` for
/// the backward pass), or in place into `z` otherwise. With [`Activation::Identity`] the
/// output is `z` itself and `y` must be `None`. `simd = false` forces the portable variant.
pub fn linear_act_forward_with<E: Element>(
    z: &mut [E],
    y: Option<&mut [E]>,
    cols: usize,
    bias: Option<&[E]>,
    act: Activation,
    simd: bool,
) {
    assert!(
        cols > 0 && z.len().is_multiple_of(cols),
        "linear_act: z is not rows x cols"
    );
    if let Some(b) = bias {
        assert_eq!(b.len(), cols, "linear_act: bias length");
    }
    if let Some(y) = &y {
        assert_eq!(y.len(), z.len(), "linear_act: output length");
        assert_eq!(
            act,
            Activation::Silu,
            "linear_act: identity writes z in place"
        );
    }
    let y = y.map(as_uninit);
    let simd = simd && has_avx2_fma();
    let rows_per_task = TASK.div_ceil(cols).max(1);
    let step = rows_per_task * cols;
    if z.len() < 2 * TASK {
        let dest = y.map_or(Dest::InPlace, Dest::Out);
        return forward_block(z, dest, cols, bias, act, simd);
    }
    match y {
        Some(y) => z
            .par_chunks_mut(step)
            .zip(y.par_chunks_mut(step))
            .for_each(|(zc, yc)| forward_block(zc, Dest::Out(yc), cols, bias, act, simd)),
        None => z
            .par_chunks_mut(step)
            .for_each(|zc| forward_block(zc, Dest::InPlace, cols, bias, act, simd)),
    }
}

/// [`linear_act_forward_with`], the fastest variant this CPU runs.
pub fn linear_act_forward<E: Element>(
    z: &mut [E],
    y: Option<&mut [E]>,
    cols: usize,
    bias: Option<&[E]>,
    act: Activation,
) {
    linear_act_forward_with(z, y, cols, bias, act, true)
}

#[inline(always)]
fn silu_back_rows<E: Element>(z: &[E], g: &mut [E]) {
    for (d, &v) in g.iter_mut().zip(z) {
        *d *= silu_derivative(v);
    }
}

/// `g ← g σ(z)(1 + z(1 − σ(z)))` from the saved `s = σ(z)`: the same bits as
/// [`silu_back_rows`], without the exponential and the division.
#[inline(always)]
fn silu_back_rows_saved<E: Element>(z: &[E], s: &[E], g: &mut [E]) {
    for ((d, &v), &sg) in g.iter_mut().zip(z).zip(s) {
        *d *= sg * (E::one() + v * (E::one() - sg));
    }
}

/// [`silu_back_rows_saved`] compiled for AVX2 + FMA.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn silu_back_rows_saved_avx2<E: Element>(z: &[E], s: &[E], g: &mut [E]) {
    silu_back_rows_saved(z, s, g)
}

/// [`silu_back_rows`] compiled for AVX2 + FMA.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn silu_back_rows_avx2<E: Element>(z: &[E], g: &mut [E]) {
    silu_back_rows(z, g)
}

#[inline(always)]
fn column_sums_rows<E: Element>(g: &[E], cols: usize, lo: usize, db: &mut [E]) {
    db.iter_mut().for_each(|v| *v = E::zero());
    let w = db.len();
    for row in g.chunks_exact(cols) {
        for (a, &v) in db.iter_mut().zip(&row[lo..lo + w]) {
            *a += v;
        }
    }
}

/// [`column_sums_rows`] compiled for AVX2 + FMA.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn column_sums_rows_avx2<E: Element>(g: &[E], cols: usize, lo: usize, db: &mut [E]) {
    column_sums_rows(g, cols, lo, db)
}

/// Backward half of a fused linear layer: `g ← g ⊙ act'(z)` in place (`z` is needed for
/// [`Activation::Silu`] only), then, when `db` is given, `db[j] = Σ_r g[r, j]` summed as one
/// running sum over the rows in order. `simd = false` forces the portable variant.
pub fn linear_act_backward_with<E: Element>(
    z: Option<&[E]>,
    g: &mut [E],
    cols: usize,
    act: Activation,
    db: Option<&mut [E]>,
    simd: bool,
) {
    assert!(
        cols > 0 && g.len().is_multiple_of(cols),
        "linear_act: g is not rows x cols"
    );
    let simd = simd && has_avx2_fma();
    if act == Activation::Silu {
        let z = z.expect("linear_act: SiLU backward needs z");
        assert_eq!(z.len(), g.len(), "linear_act: z length");
        let run = |(gc, zc): (&mut [E], &[E])| {
            #[cfg(target_arch = "x86_64")]
            if simd {
                // SAFETY: AVX2 and FMA were detected at run time.
                return unsafe { silu_back_rows_avx2(zc, gc) };
            }
            silu_back_rows(zc, gc)
        };
        if g.len() < 2 * TASK {
            run((g, z));
        } else {
            g.par_chunks_mut(TASK).zip(z.par_chunks(TASK)).for_each(run);
        }
    }
    let Some(db) = db else { return };
    assert_eq!(db.len(), cols, "linear_act: bias gradient length");
    let g: &[E] = g;
    let sums = |(k, d): (usize, &mut [E])| {
        #[cfg(target_arch = "x86_64")]
        if simd {
            // SAFETY: AVX2 and FMA were detected at run time.
            return unsafe { column_sums_rows_avx2(g, cols, k * COL_BLOCK, d) };
        }
        column_sums_rows(g, cols, k * COL_BLOCK, d)
    };
    // Columns are split into blocks; each column's sum keeps its row order.
    const COL_BLOCK: usize = 32;
    if g.len() < 2 * TASK || cols < 2 * COL_BLOCK {
        db.chunks_mut(COL_BLOCK).enumerate().for_each(sums);
    } else {
        db.par_chunks_mut(COL_BLOCK).enumerate().for_each(sums);
    }
}

/// [`linear_act_backward_with`], the fastest variant this CPU runs.
pub fn linear_act_backward<E: Element>(
    z: Option<&[E]>,
    g: &mut [E],
    cols: usize,
    act: Activation,
    db: Option<&mut [E]>,
) {
    linear_act_backward_with(z, g, cols, act, db, true)
}

/// Below this many floating-point operations (`2 · rows · in · out`) a layer runs on the
/// calling thread: a fork-join costs about 5-20 µs, the work of 2^22 flops about 30 µs.
const PAR_FLOPS: usize = 1 << 22;

/// Length of the blocks that split `len` items into about `parts` pieces of at least `min`.
fn block_len(len: usize, parts: usize, min: usize) -> usize {
    len.div_ceil(parts.max(1)).max(min).min(len.max(1))
}

/// Geometry of a fused linear layer: `x` is `rows × inp`, `W` is `out × inp`, `z` and `y`
/// are `rows × out` (all row-major).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinearGeom {
    /// Rows of `x` (the batch).
    pub rows: usize,
    /// Input width.
    pub inp: usize,
    /// Output width.
    pub out: usize,
}

impl LinearGeom {
    fn parallel(&self) -> bool {
        2 * self.rows * self.inp * self.out >= PAR_FLOPS && rayon::current_num_threads() > 1
    }
}

// ANCHOR: linear_layer
/// Forward pass of a fused linear layer: `z = x Wᵀ (+ b)` and `y = act(z)`, written to `y`
/// when given (SiLU keeping `z`), else in place into `z`. Rows are split into blocks, one
/// per task, and each task runs the product of its rows ([`gemm_serial`]) and then the
/// bias and activation on them while they are in cache: one fork-join for the whole layer.
/// Every element of `z` is one dot product in the order of the GEMM kernel, whatever the
/// blocking, so the result does not depend on the number of threads.
///
/// [`gemm_serial`]: crate::engine::element::gemm_serial
#[allow(clippy::too_many_arguments)]
pub fn linear_forward<E: Element>(
    geom: LinearGeom,
    x: &[E],
    w: &[E],
    bias: Option<&[E]>,
    act: Activation,
    z: &mut [E],
    y: Option<&mut [E]>,
) {
    linear_forward_uninit(geom, x, w, bias, act, as_uninit(z), y.map(as_uninit), None)
}

/// [`linear_forward`] into memory that need not be initialised: on return every element of
/// `z` (and of `y` and `s`, when given) has been written. With `s` (SiLU with `y` only), the
/// sigmoid `σ(z)` is kept there for [`linear_backward_uninit`], which then needs neither an
/// exponential nor a division.
#[allow(clippy::too_many_arguments)]
pub fn linear_forward_uninit<E: Element>(
    geom: LinearGeom,
    x: &[E],
    w: &[E],
    bias: Option<&[E]>,
    act: Activation,
    z: &mut [MaybeUninit<E>],
    y: Option<&mut [MaybeUninit<E>]>,
    s: Option<&mut [MaybeUninit<E>]>,
) {
    let LinearGeom { rows, inp, out } = geom;
    assert_eq!(x.len(), rows * inp, "linear: x length");
    assert_eq!(w.len(), out * inp, "linear: W length");
    assert_eq!(z.len(), rows * out, "linear: z length");
    if let Some(b) = bias {
        assert_eq!(b.len(), out, "linear: bias length");
    }
    if let Some(y) = &y {
        assert_eq!(y.len(), z.len(), "linear: output length");
        assert_eq!(act, Activation::Silu, "linear: identity writes z in place");
    }
    if let Some(s) = &s {
        assert!(
            y.is_some() && s.len() == z.len(),
            "linear: sigmoid needs y, same length"
        );
    }
    if z.is_empty() {
        return;
    }
    let simd = has_avx2_fma();
    let run = |xb: &[E], zb: &mut [MaybeUninit<E>], dest: Dest<'_, E>| {
        let r = zb.len() / out;
        gemm_into(r, inp, out, xb, w, true, zb);
        // SAFETY: the product wrote every element of the block.
        let zb = unsafe { assume_init(zb) };
        forward_block(zb, dest, out, bias, act, simd);
    };
    if !geom.parallel() {
        let dest = match (y, s) {
            (Some(y), Some(s)) => Dest::OutSigmoid(y, s),
            (Some(y), None) => Dest::Out(y),
            _ => Dest::InPlace,
        };
        return run(x, z, dest);
    }
    // Two blocks per thread balance the load when another process takes a core for a while.
    let blk = block_len(rows, 2 * rayon::current_num_threads(), 16);
    let n = blk * out;
    let xs = x.par_chunks(blk * inp);
    match (y, s) {
        (Some(y), Some(s)) => z
            .par_chunks_mut(n)
            .zip(y.par_chunks_mut(n).zip(s.par_chunks_mut(n)))
            .zip(xs)
            .for_each(|((zb, (yb, sb)), xb)| run(xb, zb, Dest::OutSigmoid(yb, sb))),
        (Some(y), None) => z
            .par_chunks_mut(n)
            .zip(y.par_chunks_mut(n))
            .zip(xs)
            .for_each(|((zb, yb), xb)| run(xb, zb, Dest::Out(yb))),
        _ => z
            .par_chunks_mut(n)
            .zip(xs)
            .for_each(|(zb, xb)| run(xb, zb, Dest::InPlace)),
    }
}

/// `dW[j0.., :] = g[:, j0..j0+m]ᵀ x` for the `m = dw.len() / inp` rows of `dW` starting at `j0`.
fn weight_grad_rows<E: Element>(
    g: &[E],
    x: &[E],
    geom: LinearGeom,
    j0: usize,
    dw: &mut [MaybeUninit<E>],
) {
    let LinearGeom { rows, inp, out } = geom;
    let m = dw.len() / inp;
    assert!(j0 + m <= out && g.len() == rows * out && x.len() == rows * inp);
    if m == 0 || inp == 0 {
        return;
    }
    if rows == 0 {
        dw.iter_mut().for_each(|v| {
            v.write(E::zero());
        });
        return;
    }
    // SAFETY: A = g[:, j0..j0+m]ᵀ is m × rows with element (i, r) at g[r·out + j0 + i]
    // (row stride 1, column stride out), in bounds for i < m <= out - j0, r < rows; B = x is
    // rows × inp row-major; C = dw is m × inp row-major and uniquely borrowed, and with β = 0
    // it is written without being read.
    unsafe {
        E::gemm_raw(
            m,
            rows,
            inp,
            E::one(),
            g.as_ptr().add(j0),
            1,
            out as isize,
            x.as_ptr(),
            inp as isize,
            1,
            E::zero(),
            dw.as_mut_ptr().cast(),
            inp as isize,
            1,
        )
    }
}

/// Backward pass of a fused linear layer from `g = dy` (overwritten with `dz`):
/// `dz = dy ⊙ act'(z)`, `dx = dz W`, `dW = dzᵀ x`, `db = Σ_rows dz` (each output optional).
/// Two fork-joins: row blocks compute their `dz` and then their rows of `dx`; blocks of
/// output features then compute their rows of `dW` and entries of `db` (one running sum over
/// the rows in order per entry). No sum is split, so the result does not depend on the
/// number of threads; it equals the unfused ops' bits (see [`self`]).
#[allow(clippy::too_many_arguments)]
pub fn linear_backward<E: Element>(
    geom: LinearGeom,
    x: &[E],
    w: &[E],
    z: Option<&[E]>,
    act: Activation,
    g: &mut [E],
    dx: Option<&mut [E]>,
    dw: Option<&mut [E]>,
    db: Option<&mut [E]>,
) {
    let (dx, dw) = (dx.map(as_uninit), dw.map(as_uninit));
    linear_backward_uninit(geom, x, w, z, None, act, g, dx, dw, db)
}

/// [`linear_backward`] with `dx` and `dW` in memory that need not be initialised: on return
/// every element of them has been written. `s`, when given, is `σ(z)` as saved by
/// [`linear_forward_uninit`] (the same bits as recomputing it).
#[allow(clippy::too_many_arguments)]
pub fn linear_backward_uninit<E: Element>(
    geom: LinearGeom,
    x: &[E],
    w: &[E],
    z: Option<&[E]>,
    s: Option<&[E]>,
    act: Activation,
    g: &mut [E],
    dx: Option<&mut [MaybeUninit<E>]>,
    dw: Option<&mut [MaybeUninit<E>]>,
    db: Option<&mut [E]>,
) {
    let LinearGeom { rows, inp, out } = geom;
    assert_eq!(x.len(), rows * inp, "linear: x length");
    assert_eq!(w.len(), out * inp, "linear: W length");
    assert_eq!(g.len(), rows * out, "linear: gradient length");
    if act == Activation::Silu {
        assert_eq!(
            z.map(<[E]>::len),
            Some(g.len()),
            "linear: SiLU backward needs z"
        );
    }
    if let Some(s) = s {
        assert_eq!(s.len(), g.len(), "linear: saved sigmoid length");
    }
    if let Some(d) = &dx {
        assert_eq!(d.len(), rows * inp, "linear: dx length");
    }
    if let Some(d) = &dw {
        assert_eq!(d.len(), out * inp, "linear: dW length");
    }
    if let Some(d) = &db {
        assert_eq!(d.len(), out, "linear: db length");
    }
    if g.is_empty() {
        if let Some(d) = dw {
            d.iter_mut().for_each(|v| {
                v.write(E::zero());
            });
        }
        if let Some(d) = db {
            d.iter_mut().for_each(|v| *v = E::zero());
        }
        return;
    }
    let simd = has_avx2_fma();
    let par = geom.parallel();
    let threads = rayon::current_num_threads();
    // 1. Row blocks: dz in place, then dx = dz W on the same rows.
    type Saved<'a, E> = Option<(&'a [E], Option<&'a [E]>)>;
    let rows_task = |gb: &mut [E], zs: Saved<'_, E>, dxb: Option<&mut [MaybeUninit<E>]>| {
        if act == Activation::Silu {
            let (zb, sb) = zs.expect("checked");
            match sb {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: AVX2 and FMA were detected at run time.
                Some(sb) if simd => unsafe { silu_back_rows_saved_avx2(zb, sb, gb) },
                Some(sb) => silu_back_rows_saved(zb, sb, gb),
                #[cfg(target_arch = "x86_64")]
                // SAFETY: as above.
                None if simd => unsafe { silu_back_rows_avx2(zb, gb) },
                None => silu_back_rows(zb, gb),
            }
        }
        if let Some(dxb) = dxb {
            let r = gb.len() / out;
            gemm_into(r, out, inp, gb, w, false, dxb);
        }
    };
    if !par || (act == Activation::Identity && dx.is_none()) {
        rows_task(g, z.map(|z| (z, s)), dx);
    } else {
        let blk = block_len(rows, 2 * threads, 16);
        let zc: Vec<Saved<'_, E>> = match (z, s) {
            (Some(z), Some(s)) => z
                .chunks(blk * out)
                .zip(s.chunks(blk * out))
                .map(|(zb, sb)| Some((zb, Some(sb))))
                .collect(),
            (Some(z), None) => z.chunks(blk * out).map(|zb| Some((zb, None))).collect(),
            _ => vec![None; rows.div_ceil(blk)],
        };
        match dx {
            Some(dx) => g
                .par_chunks_mut(blk * out)
                .zip(zc)
                .zip(dx.par_chunks_mut(blk * inp))
                .for_each(|((gb, zb), dxb)| rows_task(gb, zb, Some(dxb))),
            None => g
                .par_chunks_mut(blk * out)
                .zip(zc)
                .for_each(|(gb, zb)| rows_task(gb, zb, None)),
        }
    }
    // 2. Blocks of output features: their rows of dW and entries of db.
    let g: &[E] = g;
    let feats_task = |j0: usize, dwb: Option<&mut [MaybeUninit<E>]>, dbb: Option<&mut [E]>| {
        if let Some(dwb) = dwb {
            weight_grad_rows(g, x, geom, j0, dwb);
        }
        if let Some(dbb) = dbb {
            #[cfg(target_arch = "x86_64")]
            if simd {
                // SAFETY: AVX2 and FMA were detected at run time.
                return unsafe { column_sums_rows_avx2(g, out, j0, dbb) };
            }
            column_sums_rows(g, out, j0, dbb);
        }
    };
    let fb = if par {
        block_len(out, threads, 8)
    } else {
        out.max(1)
    };
    let nb = out.div_ceil(fb);
    let dwc: Vec<Option<&mut [MaybeUninit<E>]>> = match dw {
        Some(d) => d.chunks_mut(fb * inp.max(1)).map(Some).collect(),
        None => (0..nb).map(|_| None).collect(),
    };
    let dbc: Vec<Option<&mut [E]>> = match db {
        Some(d) => d.chunks_mut(fb).map(Some).collect(),
        None => (0..nb).map(|_| None).collect(),
    };
    if par && nb > 1 {
        dwc.into_par_iter()
            .zip(dbc)
            .enumerate()
            .for_each(|(k, (dwb, dbb))| feats_task(k * fb, dwb, dbb));
    } else {
        dwc.into_iter()
            .zip(dbc)
            .enumerate()
            .for_each(|(k, (dwb, dbb))| feats_task(k * fb, dwb, dbb));
    }
}
// ANCHOR_END: linear_layer
