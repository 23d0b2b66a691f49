//! Layouts around the direct kernels: framed planes (padded on all four sides, for the
//! broadcast reads of the weight gradient and the stride-2 kernel), masked row copies and
//! 16×16 register transposes.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use super::{available, L};
use crate::engine::kernels::Conv2dGeom;

/// Transposes `rows` planes of `len` positions (`src[r·len + p]`, `rows <= 16`, missing rows
/// read as zero) at positions `p0 .. p0 + np` (`np <= 16`) into `dst[(p - p0)·ld + r]`
/// for `r < keep` (`keep <= 16`): one 16×16 block, in registers (interleaves of 32 and 64
/// bits within 128-bit lanes, then two rounds of 128-bit lane shuffles).
///
/// # Safety
/// AVX-512F; `src` readable at `r·len + p0 .. r·len + p0 + np` for `r < rows`, `dst`
/// writable at `k·ld .. k·ld + keep` for `k < np`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn transpose16(
    src: *const f32,
    len: usize,
    rows: usize,
    p0: usize,
    np: usize,
    dst: *mut f32,
    ld: usize,
    keep: usize,
) {
    let m: __mmask16 = if np >= L { u16::MAX } else { (1u16 << np) - 1 };
    let mut r = [_mm512_setzero_ps(); L];
    for (k, r) in r.iter_mut().enumerate().take(rows) {
        *r = _mm512_maskz_loadu_ps(m, src.add(k * len + p0));
    }
    // t[2i] = (a0 b0 a1 b1 | a4 b4 a5 b5 | …) for rows a = r[2i], b = r[2i+1]; t[2i+1] the
    // high halves (a2 b2 a3 b3 | …).
    let mut t = [_mm512_setzero_ps(); L];
    for i in 0..L / 2 {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    // u[4i + s] holds, in 128-bit lane j, position 4j + s of rows 4i .. 4i+4.
    let mut u = [_mm512_setzero_ps(); L];
    for i in 0..L / 4 {
        let b = 4 * i;
        let (t0, t1) = (_mm512_castps_pd(t[b]), _mm512_castps_pd(t[b + 1]));
        let (t2, t3) = (_mm512_castps_pd(t[b + 2]), _mm512_castps_pd(t[b + 3]));
        u[b] = _mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2));
        u[b + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2));
        u[b + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3));
        u[b + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3));
    }
    // For each half of the rows (h = 0, 1) and s < 4: v[8h + s] = (position s, rows 0-3 |
    // position s+8, rows 0-3 | position s, rows 4-7 | position s+8, rows 4-7) of that half,
    // v[8h + 4 + s] the same for positions s+4 and s+12.
    let mut v = [_mm512_setzero_ps(); L];
    for h in 0..2 {
        for s in 0..4 {
            let (x, y) = (u[8 * h + s], u[8 * h + 4 + s]);
            v[8 * h + s] = _mm512_shuffle_f32x4::<0x88>(x, y);
            v[8 * h + 4 + s] = _mm512_shuffle_f32x4::<0xdd>(x, y);
        }
    }
    // Position k = s + 4e + 8f: lanes (0, 2) of v[4e + s] and of v[8 + 4e + s] for f = 0,
    // lanes (1, 3) for f = 1.
    for k in 0..np.min(L) {
        let (s, e) = (k % 4, (k / 4) % 2);
        let (x, y) = (v[4 * e + s], v[8 + 4 * e + s]);
        let col = if k < 8 {
            _mm512_shuffle_f32x4::<0x88>(x, y)
        } else {
            _mm512_shuffle_f32x4::<0xdd>(x, y)
        };
        if keep >= L {
            _mm512_storeu_ps(dst.add(k * ld), col);
        } else {
            _mm512_mask_storeu_ps(dst.add(k * ld), (1u16 << keep) - 1, col);
        }
    }
}

/// Copies `len` floats with masked 16-lane loads and stores: rows of 7 to 28 floats are
/// too short for `memcpy` to pay its call.
///
/// # Safety
/// AVX-512F; `src` readable and `dst` writable at `len` floats.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn copy_row(src: *const f32, dst: *mut f32, len: usize) {
    let mut k = 0;
    while k < len {
        let m: __mmask16 = if len - k >= L {
            u16::MAX
        } else {
            (1u16 << (len - k)) - 1
        };
        _mm512_mask_storeu_ps(dst.add(k), m, _mm512_maskz_loadu_ps(m, src.add(k)));
        k += L;
    }
}

/// The framed planes of the weight-gradient and channels-in-lanes kernels for `h × w`
/// images and a `k × k` kernel with stride `st`: padded by `p = k/2` on all four sides, row
/// stride `s = w + 2p`, plane length `pl = (h + 2p)·s` (for `k = 1`, the image itself); the
/// output is `ho × wo`, and output `(i, j)`, tap `(a, b)` reads `(i·st + a)·s + j·st + b`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Framed {
    pub(super) h: usize,
    pub(super) w: usize,
    pub(super) p: usize,
    pub(super) s: usize,
    pub(super) pl: usize,
    pub(super) st: usize,
    pub(super) ho: usize,
    pub(super) wo: usize,
}

impl Framed {
    pub(super) fn new(g: &Conv2dGeom) -> Self {
        let p = g.kh / 2;
        let s = g.w + 2 * p;
        Self {
            h: g.h,
            w: g.w,
            p,
            s,
            pl: (g.h + 2 * p) * s,
            st: g.stride,
            ho: g.h_out(),
            wo: g.w_out(),
        }
    }
    /// The offsets `a·s + b` of the `k²` taps.
    pub(super) fn taps(&self, k: usize) -> Vec<usize> {
        (0..k * k).map(|t| (t / k) * self.s + t % k).collect()
    }
    /// Copies `c` planes `h × w` into the interiors of the framed planes of `xp` (whose
    /// frames stay zero).
    pub(super) fn pad(&self, c: usize, x: &[f32], xp: &mut [f32]) {
        let (h, w, s, p) = (self.h, self.w, self.s, self.p);
        assert!(
            x.len() >= c * h * w && xp.len() >= c * self.pl,
            "direct conv: frame lengths"
        );
        assert!(available(), "direct conv: AVX-512F is not available");
        for ch in 0..c {
            let src = &x[ch * h * w..(ch + 1) * h * w];
            let dst = &mut xp[ch * self.pl..(ch + 1) * self.pl];
            for i in 0..h {
                let (d, r) = (&mut dst[(i + p) * s + p..], &src[i * w..(i + 1) * w]);
                // SAFETY: AVX-512F checked above; `r` has `w` floats and `d` at least `w`
                // (the row's interior lies inside the plane).
                #[cfg(target_arch = "x86_64")]
                unsafe {
                    copy_row(r.as_ptr(), d.as_mut_ptr(), w)
                };
            }
        }
    }
}

/// `dyt[p·ldo + o] = dy[o·hw + p]` for `o < co` (one image; the padding channels
/// `co <= o < ldo` get zeros), by 16×16 blocks.
pub(super) fn transpose_positions(dy: &[f32], co: usize, hw: usize, dyt: &mut [f32], ldo: usize) {
    assert!(
        dy.len() == co * hw && dyt.len() == hw * ldo && co <= ldo && ldo.is_multiple_of(L),
        "direct conv: transpose lengths"
    );
    assert!(available(), "direct conv: AVX-512F is not available");
    for p0 in (0..hw).step_by(L) {
        let np = L.min(hw - p0);
        for o0 in (0..ldo).step_by(L) {
            let rows = L.min(co.saturating_sub(o0));
            // SAFETY: AVX-512F checked above; rows `o0 + r < co` of `dy` are read at
            // positions `p0 .. p0 + np <= hw`, rows `p0 + k < hw` of `dyt` written at
            // `o0 .. o0 + 16 <= ldo`.
            #[cfg(target_arch = "x86_64")]
            unsafe {
                transpose16(
                    dy.as_ptr().add(o0.min(co) * hw),
                    hw,
                    rows,
                    p0,
                    np,
                    dyt.as_mut_ptr().add(p0 * ldo + o0),
                    ldo,
                    L,
                )
            };
        }
    }
}
