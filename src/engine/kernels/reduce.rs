//! Fixed-order reductions: sums whose order depends only on the shape, never on the number
//! of threads, so results are bit-identical on any rayon pool.

use rayon::prelude::*;

use crate::engine::element::Element;

/// Sum of a sequence with 8 interleaved accumulators (`acc[i mod 8] += x_i`, then the
/// accumulators added pairwise): a fixed order that the compiler can vectorise, and whose
/// rounding error is about 8 times smaller than a single running sum's.
pub fn lane_sum<E: Element>(xs: impl IntoIterator<Item = E>) -> E {
    let mut acc = [E::zero(); 8];
    for (i, v) in xs.into_iter().enumerate() {
        acc[i & 7] += v;
    }
    ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))
}

/// `lane_sum(xs.iter().map(f))`, the same order and bits, in a form that vectorises (the
/// eight accumulators advance together over chunks of eight).
#[inline(always)]
pub fn lane_sum_map<E: Element>(xs: &[E], f: impl Fn(E) -> E) -> E {
    let mut acc = [E::zero(); 8];
    let mut chunks = xs.chunks_exact(8);
    for ch in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(ch) {
            *a += f(v);
        }
    }
    for (a, &v) in acc.iter_mut().zip(chunks.remainder()) {
        *a += f(v);
    }
    ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))
}

/// `lane_sum(xs.iter().zip(ys).map(|(&x, &y)| f(x, y)))` for slices of equal length, the
/// same order and bits, in a form that vectorises.
#[inline(always)]
pub fn lane_sum_zip<E: Element>(xs: &[E], ys: &[E], f: impl Fn(E, E) -> E) -> E {
    assert_eq!(xs.len(), ys.len(), "lane_sum_zip: lengths");
    let mut acc = [E::zero(); 8];
    let (mut cx, mut cy) = (xs.chunks_exact(8), ys.chunks_exact(8));
    for (a8, b8) in (&mut cx).zip(&mut cy) {
        for ((a, &x), &y) in acc.iter_mut().zip(a8).zip(b8) {
            *a += f(x, y);
        }
    }
    for ((a, &x), &y) in acc.iter_mut().zip(cx.remainder()).zip(cy.remainder()) {
        *a += f(x, y);
    }
    ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))
}

/// Sum of a slice in the same order as [`lane_sum`], in a form that vectorises.
pub fn slice_sum<E: Element>(xs: &[E]) -> E {
    lane_sum_map(xs, |v| v)
}

// ANCHOR: bias_grad
/// Bias gradient of an NCHW tensor: `db[c] = Σ_n Σ_k dy[(n·C + c)·HW + k]`, overwriting `db`
/// (length `c`; `dy` has length `n·c·hw`). Each channel sums its planes in image order, each
/// plane with [`slice_sum`]; channels run in parallel.
pub fn bias_grad<E: Element>(dy: &[E], n: usize, c: usize, hw: usize, db: &mut [E]) {
    assert_eq!(dy.len(), n * c * hw, "bias_grad: gradient length");
    assert_eq!(db.len(), c, "bias_grad: output length");
    db.par_iter_mut().enumerate().for_each(|(ch, out)| {
        let mut acc = E::zero();
        for img in 0..n {
            let base = (img * c + ch) * hw;
            acc += slice_sum(&dy[base..base + hw]);
        }
        *out = acc;
    });
}
// ANCHOR_END: bias_grad

/// Images per weight-gradient partial in the convolutions: `n/16` rounded up (at most 16
/// partials), a function of the batch size alone (never of the thread count), so the sum of
/// the partials in [`reduce_in_order`] has a fixed order.
pub fn partial_chunk_len(n: usize) -> usize {
    const MAX_PARTIALS: usize = 16;
    n.div_ceil(MAX_PARTIALS).max(1)
}

/// `out[k] = Σ x[k·len .. (k+1)·len]` for each plane `k` ([`slice_sum`] order), planes in
/// parallel: the gradient of a bias held per image and channel.
pub fn plane_sums<E: Element>(x: &[E], len: usize, out: &mut [E]) {
    assert_eq!(x.len(), len * out.len(), "plane_sums: lengths");
    if len == 0 {
        out.fill(E::zero());
        return;
    }
    out.par_iter_mut()
        .zip(x.par_chunks(len))
        .for_each(|(o, p)| *o = slice_sum(p));
}

/// `out[i] = ((p_0[i] + p_1[i]) + p_2[i]) + …` for partials `p_k` of length `out.len()` laid
/// end to end in `partials`; split over elements (never over partials), so every sum has a
/// fixed order.
pub fn reduce_in_order<E: Element>(partials: &[E], out: &mut [E]) {
    let len = out.len();
    assert!(
        len > 0 && partials.len().is_multiple_of(len) && !partials.is_empty(),
        "reduce_in_order: partials must be a positive multiple of the output length"
    );
    const BLOCK: usize = 4096;
    out.par_chunks_mut(BLOCK).enumerate().for_each(|(bi, o)| {
        let (off, m) = (bi * BLOCK, o.len());
        o.copy_from_slice(&partials[off..off + m]);
        for p in partials.chunks_exact(len).skip(1) {
            for (v, q) in o.iter_mut().zip(&p[off..off + m]) {
                *v += *q;
            }
        }
    });
}
