//! The weight gradient of the direct convolutions: output channels in the lanes, the input
//! broadcast from framed planes (see the parent module).

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::layout::{transpose_positions, Framed};
use super::{available, weight_applies, L};
use crate::engine::kernels::reduce::{partial_chunk_len, reduce_in_order};
use crate::engine::kernels::Conv2dGeom;

/// Adds one image's contribution to a `9 × OV` tile of the weight gradient, output
/// channels in the lanes: `acc[t][v] += Σ_{i,j} dyt[(i·wo + j)·ldo + 16v ..] ·
/// xc[i·st·s + j·st + offs[t]]` (the second factor broadcast), output positions in
/// row-major order; with `B`, also the bias gradient `accb[v] += Σ_{i,j} dyt[(i·wo + j)·ldo
/// + 16v ..]`.
///
/// # Safety
/// AVX-512F; `dyt` readable at `(ho·wo - 1)·ldo + 16·OV`, `xc` at
/// `(ho-1)·st·s + (wo-1)·st + offs[t]`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn wgrad_image<const OV: usize, const B: bool>(
    fr: &Framed,
    dyt: *const f32,
    ldo: usize,
    xc: *const f32,
    offs: &[usize; 9],
    acc: &mut [[__m512; OV]; 9],
    accb: &mut [__m512; OV],
) {
    let mut a = *acc;
    let mut ab = *accb;
    for i in 0..fr.ho {
        for j in 0..fr.wo {
            let d_row = dyt.add((i * fr.wo + j) * ldo);
            let mut d = [_mm512_setzero_ps(); OV];
            for (v, d) in d.iter_mut().enumerate() {
                *d = _mm512_loadu_ps(d_row.add(L * v));
            }
            let xq = xc.add(i * fr.st * fr.s + j * fr.st);
            for (t, &off) in offs.iter().enumerate() {
                let xb = _mm512_set1_ps(*xq.add(off));
                for (a, &d) in a[t].iter_mut().zip(&d) {
                    *a = _mm512_fmadd_ps(xb, d, *a);
                }
            }
            if B {
                for (a, &d) in ab.iter_mut().zip(&d) {
                    *a = _mm512_add_ps(*a, d);
                }
            }
        }
    }
    *acc = a;
    *accb = ab;
}

/// One image's weight gradient for the `16·OV` output channels of a block and the nine
/// broadcast rows `xc + offs[t]`, written (`first`, the chunk's first image) or added
/// lane-wise to `accm` (`9 × OV` vectors, row-major): the running sum over the images of a
/// chunk; given `accb`, the bias gradient of the block's channels likewise.
///
/// # Safety
/// As [`wgrad_image`], and `accm` has `9·16·OV` floats (`accb`, `16·OV`), initialised
/// unless `first`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn wgrad_block<const OV: usize>(
    fr: &Framed,
    dyt: &[f32],
    ldo: usize,
    xc: *const f32,
    offs: &[usize; 9],
    accm: &mut [MaybeUninit<f32>],
    accb: Option<&mut [MaybeUninit<f32>]>,
    first: bool,
) {
    debug_assert_eq!(accm.len(), 9 * OV * L);
    let mut acc = [[_mm512_setzero_ps(); OV]; 9];
    let mut ab = [_mm512_setzero_ps(); OV];
    if accb.is_some() {
        wgrad_image::<OV, true>(fr, dyt.as_ptr(), ldo, xc, offs, &mut acc, &mut ab);
    } else {
        wgrad_image::<OV, false>(fr, dyt.as_ptr(), ldo, xc, offs, &mut acc, &mut ab);
    }
    let put = |m: *mut f32, a: __m512| {
        if first {
            _mm512_storeu_ps(m, a);
        } else {
            _mm512_storeu_ps(m, _mm512_add_ps(_mm512_loadu_ps(m), a));
        }
    };
    for (t, row) in acc.iter().enumerate() {
        for (v, a) in row.iter().enumerate() {
            put(accm.as_mut_ptr().add((t * OV + v) * L).cast::<f32>(), *a);
        }
    }
    if let Some(accb) = accb {
        debug_assert_eq!(accb.len(), OV * L);
        for (v, a) in ab.iter().enumerate() {
            put(accb.as_mut_ptr().add(v * L).cast::<f32>(), *a);
        }
    }
}

// ANCHOR: direct_backward_weight
/// Weight gradient `dw[o,c,a,b] = Σ_{n,i,j} dy[n,o,i,j] x[n,c,i+a-P,j+b-P]`; overwrites `dw`.
///
/// The output gradient is transposed to `dyt[n, i·w+j, o]` (channels padded to a multiple
/// of 16), so that 16 output channels share a vector: for every position, a tile of
/// `9 rows × OV vectors` adds `x[row] · dyt[position, o..o+16]`, the input value broadcast.
/// The nine rows are the nine taps of one input channel (3×3) or nine input channels (1×1).
/// The batch is cut into chunks of [`partial_chunk_len`] images; each lane sums its chunk's
/// images and positions in order, and the chunk partials are added in chunk order. Given
/// `dbias`, the bias gradient `Σ_{n,i,j} dy[n,o,i,j]` comes in the same pass (one more
/// vector per block of the first group, added without a product) and in the same order.
///
/// # Panics
/// As [`super::forward`].
pub fn backward_weight(
    g: &Conv2dGeom,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    dbias: Option<&mut [f32]>,
) {
    assert!(
        weight_applies(g) && available(),
        "direct conv: no weight-gradient kernel for {g:?} on this CPU"
    );
    let k = g.kh;
    assert_eq!(x.len(), g.x_len(), "direct conv: input length");
    assert_eq!(dy.len(), g.y_len(), "direct conv: output-gradient length");
    assert_eq!(dw.len(), g.w_len(), "direct conv: weight-gradient length");
    if let Some(db) = &dbias {
        assert_eq!(db.len(), g.c_out, "direct conv: bias-gradient length");
    }
    let fr = Framed::new(g);
    // Input planes `hw` floats, output planes `hwo`.
    let (n, ci, co, hw, hwo) = (g.n, g.c_in, g.c_out, g.h * g.w, fr.ho * fr.wo);
    // Groups of nine broadcast rows: one input channel's taps `a·s + b` (3×3), or nine input
    // channels `c0 .. c0 + 9` (1×1; the last group repeats its last channel, unused).
    let groups = if k == 3 { ci } else { ci.div_ceil(9) };
    let taps: [usize; 9] = if k == 3 {
        fr.taps(3).try_into().expect("nine taps")
    } else {
        [0; 9]
    };
    let group = |gi: usize| -> (usize, [usize; 9]) {
        if k == 3 {
            (gi * fr.pl, taps)
        } else {
            let c0 = 9 * gi;
            (
                c0 * hw,
                std::array::from_fn(|t| ((c0 + t).min(ci - 1) - c0) * hw),
            )
        }
    };
    let chunk = partial_chunk_len(n);
    let n_chunks = n.div_ceil(chunk);
    let ldo = co.div_ceil(L) * L;
    // Blocks of output-channel vectors: 4 splits as 2 + 2, else 3s then the rest.
    let mut blocks = vec![];
    let mut o0 = 0;
    while o0 < ldo {
        let nv = match (ldo - o0) / L {
            4 => 2,
            r => r.min(3),
        };
        blocks.push((o0, nv));
        o0 += nv * L;
    }
    // Each chunk's partial sums stay in the kernel's lane layout: per group, per block, 9
    // rows times the block's vectors (`9·ldo` floats per group). They are added in chunk
    // order, then reordered into OIHW once.
    // With a bias, `ldo` more floats per chunk: the lane-wise sums of `dy`, accumulated with
    // the first group.
    let want_b = dbias.is_some();
    let aw = groups * 9 * ldo;
    let al = aw + if want_b { ldo } else { 0 };
    // Every element is written by the first image of its chunk (no zero fill first).
    let partials = crate::engine::par::written::<f32>(al * n_chunks, |partials| {
        partials.par_chunks_mut(al).enumerate().for_each_init(
            // One image's framed input (3×3 only) and transposed output gradient.
            || {
                (
                    vec![0f32; if k == 3 { ci * fr.pl } else { 0 }],
                    vec![0f32; hwo * ldo],
                )
            },
            |(xp, dyt), (kc, accm)| {
                let lo = kc * chunk;
                for img in lo..(lo + chunk).min(n) {
                    let xi = &x[img * ci * hw..(img + 1) * ci * hw];
                    let planes: &[f32] = if k == 3 {
                        fr.pad(ci, xi, xp);
                        xp
                    } else {
                        xi
                    };
                    let dyi = &dy[img * co * hwo..(img + 1) * co * hwo];
                    transpose_positions(dyi, co, hwo, dyt, ldo);
                    #[cfg(target_arch = "x86_64")]
                    for gi in 0..groups {
                        let (base, offs) = group(gi);
                        let xc = planes[base..].as_ptr();
                        for &(o0, nv) in &blocks {
                            let (aws, abs) = accm.split_at_mut(aw);
                            let am =
                                &mut aws[gi * 9 * ldo + 9 * o0..gi * 9 * ldo + 9 * (o0 + nv * L)];
                            let ab = (want_b && gi == 0).then(|| &mut abs[o0..o0 + nv * L]);
                            let d = &dyt[o0..];
                            // SAFETY: AVX-512F was checked by `check`; the rows of `d` are `ldo`
                            // apart and the block's vectors end at `o0 + 16·nv <= ldo`. Reads of
                            // `xc` stay inside `planes`: 3×3, the largest index of a plane is
                            // `(ho-1)·st·s + (wo-1)·st + 2s + 2 <= (h+1)·s + w + 1 < pl`
                            // (`(ho-1)·st <= h - 1`); 1×1, `(ci-1)·hw + hw - 1`.
                            unsafe {
                                match nv {
                                    1 => {
                                        wgrad_block::<1>(&fr, d, ldo, xc, &offs, am, ab, img == lo)
                                    }
                                    2 => {
                                        wgrad_block::<2>(&fr, d, ldo, xc, &offs, am, ab, img == lo)
                                    }
                                    _ => {
                                        wgrad_block::<3>(&fr, d, ldo, xc, &offs, am, ab, img == lo)
                                    }
                                }
                            }
                        }
                    }
                }
            },
        );
    });
    let mut sum = vec![0f32; al];
    reduce_in_order(&partials, &mut sum);
    if let Some(db) = dbias {
        db.copy_from_slice(&sum[aw..aw + co]);
    }
    // Row `t` of group `gi` is input channel `c`, tap `tap`: 3×3, the nine taps of channel
    // `gi`; 1×1, channels `9·gi + t` (the rows past `ci` are unused).
    for gi in 0..groups {
        for t in 0..9 {
            let (c, tap) = if k == 3 { (gi, t) } else { (9 * gi + t, 0) };
            if c >= ci {
                break;
            }
            for &(o0, nv) in &blocks {
                let am = &sum[gi * 9 * ldo + 9 * o0..];
                for v in 0..nv {
                    for l in 0..L {
                        let o = o0 + L * v + l;
                        if o < co {
                            dw[(o * ci + c) * k * k + tap] = am[(t * nv + v) * L + l];
                        }
                    }
                }
            }
        }
    }
}
// ANCHOR_END: direct_backward_weight
