//! Nearest-neighbour upsampling by 2 in both directions, on `planes × h × w` tensors (an NCHW
//! tensor is `n·c` planes): `y[p, 2r+a, 2s+b] = x[p, r, s]` for `a, b ∈ {0, 1}`.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::engine::element::Element;

/// Forward: `x` is `planes × h × w`, `y` is `planes × 2h × 2w`; overwrites `y`.
pub fn upsample_nearest2x_forward<E: Element>(
    x: &[E],
    planes: usize,
    h: usize,
    w: usize,
    y: &mut [E],
) {
    upsample_nearest2x_forward_uninit(x, planes, h, w, super::as_uninit(y))
}

/// [`upsample_nearest2x_forward`] into memory that need not be initialised: every element
/// of `y` is written.
pub fn upsample_nearest2x_forward_uninit<E: Element>(
    x: &[E],
    planes: usize,
    h: usize,
    w: usize,
    y: &mut [MaybeUninit<E>],
) {
    assert_eq!(x.len(), planes * h * w, "upsample: input length");
    assert_eq!(y.len(), 4 * planes * h * w, "upsample: output length");
    if h * w == 0 {
        return;
    }
    y.par_chunks_mut(4 * h * w)
        .zip(x.par_chunks(h * w))
        .for_each(|(yp, xp)| {
            for (rows, xr) in yp.chunks_exact_mut(4 * w).zip(xp.chunks_exact(w)) {
                let (top, bottom) = rows.split_at_mut(2 * w);
                for ((t, b), &v) in top
                    .chunks_exact_mut(2)
                    .zip(bottom.chunks_exact_mut(2))
                    .zip(xr)
                {
                    t[0].write(v);
                    t[1].write(v);
                    b[0].write(v);
                    b[1].write(v);
                }
            }
        });
}

/// Backward (the adjoint): `dx[p, r, s] = (dy[2r, 2s] + dy[2r, 2s+1]) + (dy[2r+1, 2s] +
/// dy[2r+1, 2s+1])` in that order; `dy` is `planes × 2h × 2w`, `dx` is `planes × h × w`.
pub fn upsample_nearest2x_backward<E: Element>(
    dy: &[E],
    planes: usize,
    h: usize,
    w: usize,
    dx: &mut [E],
) {
    assert_eq!(dx.len(), planes * h * w, "upsample: input-gradient length");
    assert_eq!(
        dy.len(),
        4 * planes * h * w,
        "upsample: output-gradient length"
    );
    if h * w == 0 {
        return;
    }
    dx.par_chunks_mut(h * w)
        .zip(dy.par_chunks(4 * h * w))
        .for_each(|(xp, yp)| {
            for (xr, rows) in xp.chunks_exact_mut(w).zip(yp.chunks_exact(4 * w)) {
                let (top, bottom) = rows.split_at(2 * w);
                for ((o, t), b) in xr
                    .iter_mut()
                    .zip(top.chunks_exact(2))
                    .zip(bottom.chunks_exact(2))
                {
                    *o = (t[0] + t[1]) + (b[0] + b[1]);
                }
            }
        });
}
