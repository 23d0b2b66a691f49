//! The pointwise halves of a fused linear layer `y = act(z)`, `z = x Wᵀ + b` (the product
//! itself is [`crate::engine::element::gemm`]), on row-major `rows × cols` slices.
//!
//! Forward: `z[r, j] += b[j]`, then `y = act(z)`. Backward, from `dy`:
//! `dz = dy ⊙ act'(z)` and `db[j] = Σ_r dz[r, j]`. Every output element is computed by the
//! same scalar formulas as the unfused ops (`Add`, [`super::activation::silu`],
//! [`super::activation::silu_derivative`], and the bias sum as one running sum over rows in
//! row order), so a fused layer reproduces the composition `silu(x Wᵀ + b)` bit for bit.
//! Rows are independent and the bias sum is split over columns only, so results do not
//! depend on the number of threads.

use rayon::prelude::*;

use super::activation::{has_avx2_fma, silu, silu_derivative};
use super::Activation;
use crate::engine::element::Element;

/// Elements per parallel task; below two tasks' worth everything stays on one thread.
const TASK: usize = 1 << 14;

#[inline(always)]
fn forward_rows<E: Element>(
    z: &mut [E],
    y: Option<&mut [E]>,
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
        match y {
            Some(y) => y.iter_mut().zip(z.iter()).for_each(|(o, &v)| *o = silu(v)),
            None => z.iter_mut().for_each(|v| *v = silu(*v)),
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
    y: Option<&mut [E]>,
    cols: usize,
    bias: Option<&[E]>,
    act: Activation,
) {
    forward_rows(z, y, cols, bias, act)
}

fn forward_block<E: Element>(
    z: &mut [E],
    y: Option<&mut [E]>,
    cols: usize,
    bias: Option<&[E]>,
    act: Activation,
    simd: bool,
) {
    #[cfg(target_arch = "x86_64")]
    if simd {
        // SAFETY: the caller passes `simd` only when AVX2 and FMA were detected at run time.
        return unsafe { forward_rows_avx2(z, y, cols, bias, act) };
    }
    let _ = simd;
    forward_rows(z, y, cols, bias, act)
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
        cols > 0 && z.len() % cols == 0,
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
    let simd = simd && has_avx2_fma();
    let rows_per_task = TASK.div_ceil(cols).max(1);
    let step = rows_per_task * cols;
    if z.len() < 2 * TASK {
        return forward_block(z, y, cols, bias, act, simd);
    }
    match y {
        Some(y) => z
            .par_chunks_mut(step)
            .zip(y.par_chunks_mut(step))
            .for_each(|(zc, yc)| forward_block(zc, Some(yc), cols, bias, act, simd)),
        None => z
            .par_chunks_mut(step)
            .for_each(|zc| forward_block(zc, None, cols, bias, act, simd)),
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
        *d = *d * silu_derivative(v);
    }
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
        cols > 0 && g.len() % cols == 0,
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
