//! The stride-2 forward pass on the channels-in-lanes tile ([`crate::engine::kernels::lanes`]):
//! 16 output channels per vector, tiles of output positions into a position-major buffer,
//! 16×16 transposes into NCHW.

use std::mem::MaybeUninit;

use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
use super::layout::transpose16;
use super::layout::Framed;
use super::{available, L};
use crate::engine::kernels::lanes::{lanes_positions, lanes_tile};

/// Packs a weight for the channels-in-lanes kernel: `wt[(c·kk + t)·ldo + o] = weight(o, c,
/// t)`, `ldo = k_out` rounded up to 16, zero for `o >= k_out`.
pub(super) fn pack_lanes(
    k_out: usize,
    k_in: usize,
    kk: usize,
    weight: impl Fn(usize, usize, usize) -> f32,
) -> Vec<f32> {
    let ldo = k_out.div_ceil(L) * L;
    let mut wt = vec![0f32; k_in * kk * ldo];
    for c in 0..k_in {
        for t in 0..kk {
            for o in 0..k_out {
                wt[(c * kk + t) * ldo + o] = weight(o, c, t);
            }
        }
    }
    wt
}

/// Input channels per pass of the channels-in-lanes kernel: at 3×3 and 4 vectors, the
/// weights of 8 channels are 18 KiB, which stay in L1 while every position tile of the image
/// uses them.
const LANES_CHUNK: usize = 8;

/// The channels-in-lanes correlation of `n` images (`src`, NCHW, `k_in` planes framed as
/// `fr` says) with `wt` (`wt[(c·K² + t)·ldo + o]`, zero for `o >= k_out`) into `dst` (NCHW,
/// `k_out` planes `ho × wo`, every element written): `dst[o, q] = bias(o) + Σ_c Σ_t
/// wt(c, t, o) · x[c, position of q shifted by tap t] (+ res[o, q])`. Per image: tiles of
/// output positions × 16-channel vectors into a position-major buffer, then 16×16 block
/// transposes into the NCHW output. No lane is idle whatever the plane size, and any stride
/// is one more multiplication in the positions' addresses.
#[allow(clippy::too_many_arguments)]
pub(super) fn lanes_correlate(
    fr: &Framed,
    k: usize,
    n: usize,
    k_in: usize,
    k_out: usize,
    src: &[f32],
    wt: &[f32],
    bias: Option<&[f32]>,
    res: Option<&[f32]>,
    dst: &mut [MaybeUninit<f32>],
) {
    let (hw, hwo) = (fr.h * fr.w, fr.ho * fr.wo);
    let (in_img, out_img) = (k_in * hw, k_out * hwo);
    let ldo = k_out.div_ceil(L) * L;
    assert_eq!(src.len(), n * in_img, "direct conv: input length");
    assert_eq!(dst.len(), n * out_img, "direct conv: output length");
    assert_eq!(
        wt.len(),
        k_in * k * k * ldo,
        "direct conv: packed weight length"
    );
    if let Some(r) = res {
        assert_eq!(r.len(), dst.len(), "direct conv: residual length");
    }
    if let Some(b) = bias {
        crate::engine::kernels::check_bias_len(b.len(), n, k_out);
    }
    assert!(available(), "direct conv: AVX-512F is not available");
    let offs = fr.taps(k);
    // Blocks of 4 output-channel vectors, then 2 and 1.
    let mut blocks = vec![];
    let mut o0 = 0;
    while o0 < ldo {
        let nv = match (ldo - o0) / L {
            r if r >= 4 => 4,
            r => 1 << (r.ilog2()),
        };
        blocks.push((o0, nv));
        o0 += nv * L;
    }
    // Position rows of the buffer: the last tile may run past `hwo` (positions repeated).
    let rows = hwo.div_ceil(10) * 10;
    dst.par_chunks_mut(out_img)
        .zip(src.par_chunks(in_img))
        .enumerate()
        .for_each_init(
            || (vec![0f32; k_in * fr.pl], vec![0f32; rows * ldo]),
            |(xp, buf), (img, (d, s))| {
                fr.pad(k_in, s, xp);
                let planes: &[f32] = xp;
                let brow = bias.map(|b| {
                    if b.len() == k_out {
                        b
                    } else {
                        &b[img * k_out..(img + 1) * k_out]
                    }
                });
                let pos = |q: usize| (q / fr.wo) * fr.st * fr.s + (q % fr.wo) * fr.st;
                #[cfg(target_arch = "x86_64")]
                for &(o0, nv) in &blocks {
                    let p = lanes_positions(nv);
                    let omask: [u16; 4] = std::array::from_fn(|v| {
                        let valid = k_out.saturating_sub(o0 + L * v).min(L);
                        if valid >= L {
                            u16::MAX
                        } else {
                            (1u16 << valid) - 1
                        }
                    });
                    let b = brow.map_or(std::ptr::null(), |b| b[o0..].as_ptr());
                    // Input channels in chunks whose weights stay in L1 (`LANES_CHUNK·K²·16·nv`
                    // floats); the partial sums wait in the buffer between chunks.
                    for c0 in (0..k_in).step_by(LANES_CHUNK) {
                        let cs = c0..(c0 + LANES_CHUNK).min(k_in);
                        for q0 in (0..hwo).step_by(p) {
                            let x = planes.as_ptr();
                            let w = wt[o0..].as_ptr();
                            let out = buf[q0 * ldo + o0..].as_mut_ptr();
                            // SAFETY: AVX-512F was checked above. Positions `q < hwo` (the last
                            // tile repeats the last one) read a framed plane at `pos(q) + offs[t]
                            // <= (ho-1)·st·s + (wo-1)·st + 2s + 2 < pl` plus `c·pl`, inside
                            // `planes` (for 1×1, `pos(q) = q < hw`); weights up to
                            // `(k_in·K² - 1)·ldo + o0 + 16·nv <= wt.len()`; the bias row at
                            // the lanes of `omask` (`o < k_out`); the buffer rows `q0 .. q0 + p
                            // <= rows`.
                            unsafe {
                                let at = |i: usize| x.add(pos((q0 + i).min(hwo - 1)));
                                // A tile of `$p` positions × `$ov` vectors (`$p` is
                                // `lanes_positions($ov)`, the step of `q0`).
                                macro_rules! tile {
                                    ($p:literal, $ov:literal) => {{
                                        debug_assert_eq!(p, $p);
                                        let bs: [*const f32; $p] = std::array::from_fn(at);
                                        let m: [u16; $ov] = std::array::from_fn(|v| omask[v]);
                                        let first = c0 == 0;
                                        lanes_tile::<$p, $ov>(
                                            &bs,
                                            fr.pl,
                                            &offs,
                                            w,
                                            ldo,
                                            b,
                                            &m,
                                            out,
                                            ldo,
                                            cs.clone(),
                                            first,
                                        )
                                    }};
                                }
                                match nv {
                                    4 => tile!(5, 4),
                                    2 => tile!(10, 2),
                                    _ => tile!(10, 1),
                                }
                            }
                        }
                    }
                }
                // Position-major buffer -> NCHW planes, 16×16 blocks.
                let dp = d.as_mut_ptr().cast::<f32>();
                for q0 in (0..hwo).step_by(L) {
                    let keep = L.min(hwo - q0);
                    for o0 in (0..k_out).step_by(L) {
                        // SAFETY: AVX-512F checked above; reads buffer rows `q0 .. q0 + 16 <=
                        // rows` (positions past `hwo` are read but not kept) at channels
                        // `o0 .. o0 + 16 <= ldo`; writes planes `o0 + r < k_out` at positions
                        // `q0 .. q0 + keep <= hwo`, inside this image's output.
                        #[cfg(target_arch = "x86_64")]
                        unsafe {
                            transpose16(
                                buf.as_ptr().add(q0 * ldo),
                                ldo,
                                L.min(rows - q0),
                                o0,
                                L.min(k_out - o0),
                                dp.add(o0 * hwo + q0),
                                hwo,
                                keep,
                            )
                        };
                    }
                }
                if let Some(r) = res {
                    // SAFETY: the transposes wrote every element of the image's planes.
                    let d = unsafe { crate::engine::kernels::assume_init_mut(d) };
                    for (y, &r) in d.iter_mut().zip(&r[img * out_img..(img + 1) * out_img]) {
                        *y += r;
                    }
                }
            },
        );
}
