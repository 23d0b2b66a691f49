//! The channels-in-lanes micro-kernel: a tile of `P` rows × `OV` vectors of 16 columns held
//! in registers; for every step of the sum, one value per row broadcast against `OV` vectors
//! of the right-hand side. No lane is idle whatever the number of rows, any row addressing
//! (strides, taps) is the caller's. It runs the stride-2 convolutions of [`super::direct`].
//! (As a GEMM for the W2 layers, 1024 × 128 × 128, it measured no faster than
//! `matrixmultiply`: 0.227 against 0.208 ms per fused linear + SiLU forward on 2 threads.)

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Lanes of an AVX-512 `f32` vector.
const L: usize = 16;

/// Output positions per channels-in-lanes tile for `ov` vectors of output channels: the
/// `P × OV` accumulators stay at 20 registers, and 49 positions (7×7) fill 50 slots.
pub(super) fn lanes_positions(ov: usize) -> usize {
    if ov >= 4 {
        5
    } else {
        10
    }
}

/// One `P × OV` tile of the channels-in-lanes kernel over the input channels `cs`:
/// `out[p·ldout + 16v + lane] = init + Σ_{c ∈ cs} Σ_t bases[p][c·pl + offs[t]] ·
/// wt[(c·K² + t)·ldo + 16v + lane]`, the input value broadcast and `16·OV` output channels in
/// the lanes, where `init` is the bias (`first`; zero when `bias` is null, else read at the
/// lanes of `omask`) or `out` itself (the sum over the earlier channels).
///
/// # Safety
/// AVX-512F; `bases[p]` readable at `c·pl + offs[t]` for `c ∈ cs`, `wt` at
/// `(cs.end·K²)·ldo` floats from the block's first channel, `out` readable (unless `first`) and
/// writable at `P` rows of `16·OV` floats, `ldout` apart.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn lanes_tile<const P: usize, const OV: usize>(
    bases: &[*const f32; P],
    pl: usize,
    offs: &[usize],
    wt: *const f32,
    ldo: usize,
    bias: *const f32,
    omask: &[u16; OV],
    out: *mut f32,
    ldout: usize,
    cs: std::ops::Range<usize>,
    first: bool,
) {
    let mut acc = [[_mm512_setzero_ps(); OV]; P];
    if !first {
        for (p, row) in acc.iter_mut().enumerate() {
            for (v, a) in row.iter_mut().enumerate() {
                *a = _mm512_loadu_ps(out.add(p * ldout + L * v));
            }
        }
    } else if !bias.is_null() {
        for v in 0..OV {
            let b = _mm512_maskz_loadu_ps(omask[v], bias.add(L * v));
            for row in acc.iter_mut() {
                row[v] = b;
            }
        }
    }
    let kk = offs.len();
    for c in cs {
        let wc = wt.add(c * kk * ldo);
        let mut xc = [std::ptr::null::<f32>(); P];
        for (x, b) in xc.iter_mut().zip(bases) {
            *x = b.add(c * pl);
        }
        for (t, &off) in offs.iter().enumerate() {
            let mut wv = [_mm512_setzero_ps(); OV];
            for (v, w) in wv.iter_mut().enumerate() {
                *w = _mm512_loadu_ps(wc.add(t * ldo + L * v));
            }
            for (row, x) in acc.iter_mut().zip(&xc) {
                let xb = _mm512_set1_ps(*x.add(off));
                for (a, &w) in row.iter_mut().zip(&wv) {
                    *a = _mm512_fmadd_ps(xb, w, *a);
                }
            }
        }
    }
    for (p, row) in acc.iter().enumerate() {
        for (v, a) in row.iter().enumerate() {
            _mm512_storeu_ps(out.add(p * ldout + L * v), *a);
        }
    }
}
