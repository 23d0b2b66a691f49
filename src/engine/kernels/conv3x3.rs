//! Direct 3×3 convolution with stride 1 and padding 1 (every 3×3 convolution of the U-Net but
//! the two downsamplers), in `f32` on AVX-512, with no im2col and no GEMM packing.
//!
//! **Flat shifted planes.** Pad each input plane by one pixel on every side and store it with
//! row stride `S = W + 2`. Number the outputs by `q = i·S + j` (`0 <= q < H·S`; the positions
//! with `j >= W` are scratch and are thrown away). Output `(i, j)`, tap `(a, b)` reads
//! `x[i+a-1, j+b-1] = xpad[(i+a)·S + j+b] = xpad[q + a·S + b]`. So
//!
//! `y[o, q] = Σ_c Σ_t w[o, c, t] · xpad[c, q + off_t]`, with `off_t = a·S + b` for tap `t = 3a + b`:
//!
//! for each tap the "patch row" is the padded plane itself, shifted: a GEMM whose right-hand
//! side needs neither im2col nor packing. The micro-kernel holds an `MR × NV` tile of outputs
//! (`MR` channels, `NV` vectors of 16 consecutive `q`) in registers and, for every input
//! channel and tap, loads `NV` vectors of the shifted plane and broadcasts `MR` weights.
//! Output rows with `j < W` read only their own padded plane (the largest index,
//! `(H-1)·S + W-1 + 2S + 2`, is below `(H+2)·S`), so the scratch positions never leak.
//!
//! - **Input gradient** = the same correlation of the padded `dy` with the kernel transposed
//!   over channels and flipped: `dx[c, q] = Σ_o Σ_t w[o, c, 8-t] · dypad[o, q + off_t]`.
//! - **Weight gradient**: `dw[o, c, t] = Σ_n Σ_{i,j} dy[n, o, i, j] · xpad[n, c, i·S + j + off_t]`,
//!   with 16 output channels in the lanes of a vector (from `dy` transposed to
//!   position-major) and the input value broadcast: no horizontal sums, no scratch positions.
//!
//! Every sum runs in an order fixed by the shape, so results do not depend on the thread count.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::as_uninit;
use super::reduce::{partial_chunk_len, reduce_in_order};
use super::Conv2dGeom;

/// Output channels per register tile of the correlation kernel.
const MR: usize = 8;
/// Vectors of 16 flat positions per register tile (the last tile of a plane may be shorter).
const NV: usize = 3;
/// Lanes of an AVX-512 `f32` vector.
const L: usize = 16;

/// `true` when the CPU runs the AVX-512 kernels of this module (runtime detection).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `true` when `g` is a convolution this module computes: 3×3 kernel, stride 1, padding 1.
pub fn applies(g: &Conv2dGeom) -> bool {
    g.kh == 3 && g.kw == 3 && g.stride == 1 && g.pad == 1
}

/// The flat-plane layout of one image of height `h`, width `w` (see the module comment).
#[derive(Clone, Copy, Debug)]
struct Layout {
    h: usize,
    w: usize,
    /// Row stride `w + 2`.
    s: usize,
    /// Padded plane length `(h + 2)·s`.
    pl: usize,
    /// Vectors covering the `h·s` flat output positions.
    nvec: usize,
}

impl Layout {
    fn new(h: usize, w: usize) -> Self {
        let s = w + 2;
        Self {
            h,
            w,
            s,
            pl: (h + 2) * s,
            nvec: (h * s).div_ceil(L),
        }
    }
    /// Flat output positions rounded up to whole vectors.
    fn qpad(&self) -> usize {
        self.nvec * L
    }
    /// Length of a buffer of `c` padded planes: the last tile of the last plane reads up to
    /// index `off_8 + qpad - 1 <= 2s + 2 + (h·s + 15) - 1 = pl + 16` from the plane's start,
    /// hence `2L` floats of slack.
    fn padded_len(&self, c: usize) -> usize {
        c * self.pl + 2 * L
    }
    /// `off_t = a·s + b` for the taps `t = 3a + b`.
    fn offsets(&self) -> [usize; 9] {
        std::array::from_fn(|t| (t / 3) * self.s + t % 3)
    }
    /// Copies `c` planes `h × w` into the interiors of the padded planes of `xp` (whose
    /// borders and slack are zero and stay zero).
    fn pad(&self, c: usize, x: &[f32], xp: &mut [f32]) {
        let (h, w, s) = (self.h, self.w, self.s);
        assert!(
            x.len() >= c * h * w && xp.len() >= c * self.pl,
            "conv3x3: pad lengths"
        );
        assert!(available(), "conv3x3: AVX-512F is not available");
        for ch in 0..c {
            let src = &x[ch * h * w..(ch + 1) * h * w];
            let dst = &mut xp[ch * self.pl..(ch + 1) * self.pl];
            for i in 0..h {
                let (d, r) = (&mut dst[(i + 1) * s + 1..], &src[i * w..(i + 1) * w]);
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

/// Copies `len` floats with masked 16-lane loads and stores: rows of 7 to 28 floats are
/// too short for `memcpy` to pay its call.
///
/// # Safety
/// AVX-512F; `src` readable and `dst` writable at `len` floats.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn copy_row(src: *const f32, dst: *mut f32, len: usize) {
    let mut k = 0;
    while k < len {
        let m: __mmask16 = if len - k >= L {
            0xffff
        } else {
            (1u16 << (len - k)) - 1
        };
        _mm512_mask_storeu_ps(dst.add(k), m, _mm512_maskz_loadu_ps(m, src.add(k)));
        k += L;
    }
}

/// Packs a weight for the correlation kernel in tiles of [`MR`] output rows:
/// `wp[((blk·k_in + c)·9 + t)·MR + m] = weight(blk·MR + m, c, t)`, zero for rows `>= k_out`.
fn pack(k_out: usize, k_in: usize, weight: impl Fn(usize, usize, usize) -> f32) -> Vec<f32> {
    let blocks = k_out.div_ceil(MR);
    let mut wp = vec![0f32; blocks * k_in * 9 * MR];
    for blk in 0..blocks {
        for c in 0..k_in {
            for t in 0..9 {
                for m in 0..MR {
                    let o = blk * MR + m;
                    if o < k_out {
                        wp[((blk * k_in + c) * 9 + t) * MR + m] = weight(o, c, t);
                    }
                }
            }
        }
    }
    wp
}

/// One `MR × NVV` tile: `out[m·ld + 16v + lane] = Σ_c Σ_t wp[(c·9 + t)·MR + m] ·
/// xp[c·pl + off_t + 16v + lane]`, the sum over `c` outer and `t` inner.
///
/// # Safety
/// AVX-512F must be available; `xp` must be readable at `c·pl + off_t + 16·NVV` for every
/// `c < k_in`, `wp` at `k_in·9·MR` floats, `out` writable at `(MR-1)·ld + 16·NVV`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile<const NVV: usize>(
    xp: *const f32,
    pl: usize,
    k_in: usize,
    offs: &[usize; 9],
    wp: *const f32,
    out: *mut f32,
    ld: usize,
) {
    let mut acc = [[_mm512_setzero_ps(); NVV]; MR];
    for c in 0..k_in {
        let xc = xp.add(c * pl);
        let wc = wp.add(c * 9 * MR);
        for (t, &off) in offs.iter().enumerate() {
            let xt = xc.add(off);
            let mut xv = [_mm512_setzero_ps(); NVV];
            for (v, xv) in xv.iter_mut().enumerate() {
                *xv = _mm512_loadu_ps(xt.add(L * v));
            }
            let wt = wc.add(t * MR);
            for (m, row) in acc.iter_mut().enumerate() {
                let wv = _mm512_set1_ps(*wt.add(m));
                for (a, &x) in row.iter_mut().zip(&xv) {
                    *a = _mm512_fmadd_ps(wv, x, *a);
                }
            }
        }
    }
    for (m, row) in acc.iter().enumerate() {
        for (v, a) in row.iter().enumerate() {
            _mm512_storeu_ps(out.add(m * ld + L * v), *a);
        }
    }
}

/// The correlation of one image: `k_in` padded planes in `xp` (layout `lay`) with the packed
/// weight `wp` into `out` (`blocks·MR` rows of `lay.qpad()` flat positions).
#[cfg(target_arch = "x86_64")]
fn correlate_image(
    lay: &Layout,
    k_in: usize,
    k_out: usize,
    xp: &[f32],
    wp: &[f32],
    out: &mut [f32],
) {
    let blocks = k_out.div_ceil(MR);
    let ld = lay.qpad();
    assert!(
        xp.len() >= lay.padded_len(k_in),
        "conv3x3: padded input length"
    );
    assert_eq!(
        wp.len(),
        blocks * k_in * 9 * MR,
        "conv3x3: packed weight length"
    );
    assert_eq!(out.len(), blocks * MR * ld, "conv3x3: output buffer length");
    assert!(available(), "conv3x3: AVX-512F is not available");
    let offs = lay.offsets();
    // Tiles of NV = 3 vectors, the remainder as one tile of 2 or, instead of a lone vector
    // (8 broadcasts for 8 FMAs), two tiles of 2 in place of the last 3 + 1.
    let mut tiles = Vec::with_capacity(lay.nvec / NV + 2);
    let (mut v, mut left) = (0, lay.nvec);
    while left > 0 {
        let nv = match left {
            4 => 2,
            l => l.min(NV),
        };
        tiles.push((v * L, nv));
        v += nv;
        left -= nv;
    }
    for blk in 0..blocks {
        let wb = &wp[blk * k_in * 9 * MR..(blk + 1) * k_in * 9 * MR];
        let ob = &mut out[blk * MR * ld..(blk + 1) * MR * ld];
        // SAFETY: AVX-512F was checked above. Tile `v0` reads `xp` up to index
        // `(k_in-1)·pl + off_8 + 16·nvec - 1 <= k_in·pl + 16` (see `Layout::padded_len`) and
        // writes `ob` up to `(MR-1)·ld + 16·nvec = MR·ld`, both within the lengths asserted.
        unsafe {
            let (x, w, o) = (xp.as_ptr(), wb.as_ptr(), ob.as_mut_ptr());
            for &(v0, nv) in &tiles {
                let (x, o) = (x.add(v0), o.add(v0));
                match nv {
                    1 => tile::<1>(x, lay.pl, k_in, &offs, w, o, ld),
                    2 => tile::<2>(x, lay.pl, k_in, &offs, w, o, ld),
                    _ => tile::<NV>(x, lay.pl, k_in, &offs, w, o, ld),
                }
            }
        }
    }
}

/// Correlates `n` images of `k_in` planes (`src`, NCHW) into `k_out` planes (`dst`, NCHW,
/// overwritten), `dst[o] = bias[o] + Σ_c Σ_t wp(o, c, t) src[c] shifted by tap t` (bias per
/// channel or per image and channel, [`super::bias_at`]), one image
/// per rayon task.
#[allow(clippy::too_many_arguments)]
fn correlate(
    n: usize,
    lay: &Layout,
    k_in: usize,
    k_out: usize,
    src: &[f32],
    wp: &[f32],
    bias: Option<&[f32]>,
    dst: &mut [MaybeUninit<f32>],
) {
    let hw = lay.h * lay.w;
    let (in_img, out_img) = (k_in * hw, k_out * hw);
    assert_eq!(src.len(), n * in_img, "conv3x3: input length");
    assert_eq!(dst.len(), n * out_img, "conv3x3: output length");
    if n == 0 || out_img == 0 {
        return;
    }
    let rows = k_out.div_ceil(MR) * MR;
    dst.par_chunks_mut(out_img)
        .zip(src.par_chunks(in_img.max(1)))
        .enumerate()
        .for_each_init(
            || {
                (
                    vec![0f32; lay.padded_len(k_in)],
                    vec![0f32; rows * lay.qpad()],
                )
            },
            |(xp, tmp), (img, (d, s))| {
                lay.pad(k_in, s, xp);
                #[cfg(target_arch = "x86_64")]
                correlate_image(lay, k_in, k_out, xp, wp, tmp);
                for o in 0..k_out {
                    let b = bias.map_or(0.0, |b| super::bias_at(b, k_out, img, o));
                    let plane = &tmp[o * lay.qpad()..];
                    for i in 0..lay.h {
                        let row = &plane[i * lay.s..i * lay.s + lay.w];
                        let out = &mut d[o * hw + i * lay.w..o * hw + (i + 1) * lay.w];
                        for (y, &v) in out.iter_mut().zip(row) {
                            y.write(v + b);
                        }
                    }
                }
            },
        );
}

fn check(g: &Conv2dGeom) {
    assert!(
        applies(g),
        "conv3x3: not a 3x3 stride-1 padding-1 convolution: {g:?}"
    );
    assert!(available(), "conv3x3: AVX-512F is not available");
}

// ANCHOR: conv3x3_forward
/// `y[n,o,i,j] = bias[o] + Σ_{c,a,b} w[o,c,a,b] x[n,c,i+a-1,j+b-1]`; overwrites `y`. The
/// contract of [`super::reference::conv2d_forward`] for 3×3, stride 1, padding 1.
///
/// # Panics
/// If `g` is not such a convolution, if the CPU lacks AVX-512F ([`available`]), or on
/// slice lengths that do not match `g`.
pub fn forward(g: &Conv2dGeom, x: &[f32], w: &[f32], bias: Option<&[f32]>, y: &mut [f32]) {
    forward_uninit(g, x, w, bias, as_uninit(y))
}

/// [`forward`] into memory that need not be initialised: every element of `y` is written.
pub fn forward_uninit(
    g: &Conv2dGeom,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    y: &mut [MaybeUninit<f32>],
) {
    check(g);
    assert_eq!(w.len(), g.w_len(), "conv3x3: weight length");
    if let Some(b) = bias {
        super::check_bias_len(b.len(), g.n, g.c_out);
    }
    let lay = Layout::new(g.h, g.w);
    let (ci, co) = (g.c_in, g.c_out);
    let wp = pack(co, ci, |o, c, t| w[(o * ci + c) * 9 + t]);
    correlate(g.n, &lay, ci, co, x, &wp, bias, y);
}
// ANCHOR_END: conv3x3_forward

/// Input gradient `dx[n,c,i,j] = Σ_{o,a,b} w[o,c,a,b] dy[n,o,i-a+1,j-b+1]`: the correlation of
/// `dy` with the kernel transposed over channels and flipped (`t -> 8 - t`); overwrites `dx`.
///
/// # Panics
/// As [`forward`].
pub fn backward_input(g: &Conv2dGeom, dy: &[f32], w: &[f32], dx: &mut [f32]) {
    backward_input_uninit(g, dy, w, as_uninit(dx))
}

/// [`backward_input`] into memory that need not be initialised: every element of `dx` is
/// written.
pub fn backward_input_uninit(g: &Conv2dGeom, dy: &[f32], w: &[f32], dx: &mut [MaybeUninit<f32>]) {
    check(g);
    assert_eq!(w.len(), g.w_len(), "conv3x3: weight length");
    let lay = Layout::new(g.h, g.w);
    let (ci, co) = (g.c_in, g.c_out);
    let wp = pack(ci, co, |c, o, t| w[(o * ci + c) * 9 + (8 - t)]);
    correlate(g.n, &lay, co, ci, dy, &wp, None, dx);
}

/// Adds one image's contribution to a `9 × OV` tile of the weight gradient, output
/// channels in the lanes: `acc[t][v] += Σ_{i,j} dyt[(i·w + j)·ldo + 16v ..] ·
/// xc[i·s + j + off_t]` (the second factor broadcast), positions in row-major order.
///
/// # Safety
/// AVX-512F; `dyt` readable at `(h·w - 1)·ldo + 16·OV`, `xc` at `(h-1)·s + w + off_8`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn wgrad_image<const OV: usize>(
    lay: &Layout,
    dyt: *const f32,
    ldo: usize,
    xc: *const f32,
    offs: &[usize; 9],
    acc: &mut [[__m512; OV]; 9],
) {
    let mut a = *acc;
    for i in 0..lay.h {
        for j in 0..lay.w {
            let d_row = dyt.add((i * lay.w + j) * ldo);
            let mut d = [_mm512_setzero_ps(); OV];
            for (v, d) in d.iter_mut().enumerate() {
                *d = _mm512_loadu_ps(d_row.add(L * v));
            }
            let xq = xc.add(i * lay.s + j);
            for (t, &off) in offs.iter().enumerate() {
                let xb = _mm512_set1_ps(*xq.add(off));
                for (a, &d) in a[t].iter_mut().zip(&d) {
                    *a = _mm512_fmadd_ps(xb, d, *a);
                }
            }
        }
    }
    *acc = a;
}

/// One image's weight gradient for the `16·OV` output channels from `o0` and input channel
/// `c`, added lane-wise to `accm` (`9 × OV` vectors, tap-major), the running sum over the
/// images of a chunk.
///
/// # Safety
/// AVX-512F; `dyt` and `xc` laid out as in [`wgrad_image`], `o0 + 16·OV <= ldo`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn wgrad_block<const OV: usize>(
    lay: &Layout,
    dyt: &[f32],
    ldo: usize,
    xc: &[f32],
    accm: &mut [f32],
) {
    debug_assert_eq!(accm.len(), 9 * OV * L);
    let offs = lay.offsets();
    let mut acc = [[_mm512_setzero_ps(); OV]; 9];
    wgrad_image::<OV>(lay, dyt.as_ptr(), ldo, xc.as_ptr(), &offs, &mut acc);
    for (t, row) in acc.iter().enumerate() {
        for (v, a) in row.iter().enumerate() {
            let m = accm.as_mut_ptr().add((t * OV + v) * L);
            _mm512_storeu_ps(m, _mm512_add_ps(_mm512_loadu_ps(m), *a));
        }
    }
}

// ANCHOR: conv3x3_backward_weight
/// Weight gradient `dw[o,c,a,b] = Σ_{n,i,j} dy[n,o,i,j] x[n,c,i+a-1,j+b-1]`; overwrites `dw`.
///
/// The output gradient is transposed to `dyt[n, i·w+j, o]` (channels padded to a multiple
/// of 16), so that 16 output channels share a vector: for every position, a tile of
/// `9 taps × OV vectors` adds `x[c, tap] · dyt[position, o..o+16]`, the input value
/// broadcast. The batch is cut into chunks of [`partial_chunk_len`] images; each lane sums its
/// chunk's images and positions in order, and the chunk partials are added in chunk order.
/// (The bias gradient is [`super::bias_grad`].)
///
/// # Panics
/// As [`forward`].
pub fn backward_weight(g: &Conv2dGeom, x: &[f32], dy: &[f32], dw: &mut [f32]) {
    check(g);
    assert_eq!(x.len(), g.x_len(), "conv3x3: input length");
    assert_eq!(dy.len(), g.y_len(), "conv3x3: output-gradient length");
    assert_eq!(dw.len(), g.w_len(), "conv3x3: weight-gradient length");
    let lay = Layout::new(g.h, g.w);
    let (n, ci, co, hw) = (g.n, g.c_in, g.c_out, g.h * g.w);
    if n == 0 || hw == 0 {
        dw.fill(0.0);
        return;
    }
    let chunk = partial_chunk_len(n);
    let n_chunks = n.div_ceil(chunk);
    let wl = dw.len();
    let mut partials = crate::engine::par::zeros::<f32>(wl * n_chunks);
    let xl = lay.padded_len(ci);
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
    partials.par_chunks_mut(wl).enumerate().for_each_init(
        // One image's padded input and transposed output gradient (zero in the padding
        // channels, which are never written), and the chunk's lane-wise running sums: per
        // input channel, per block, 9 taps times the block's vectors (`9·ldo` floats).
        || {
            (
                vec![0f32; xl],
                vec![0f32; hw * ldo],
                vec![0f32; ci * 9 * ldo],
            )
        },
        |(xp, dyt, accm), (k, part)| {
            let lo = k * chunk;
            accm.fill(0.0);
            for img in lo..(lo + chunk).min(n) {
                lay.pad(ci, &x[img * ci * hw..(img + 1) * ci * hw], xp);
                let src = &dy[img * co * hw..(img + 1) * co * hw];
                // Blocks of 32 positions, so that the rows written stay in L1.
                for p0 in (0..hw).step_by(32) {
                    let p1 = (p0 + 32).min(hw);
                    for (o, plane) in src.chunks_exact(hw).enumerate() {
                        for (p, &v) in (p0..p1).zip(&plane[p0..p1]) {
                            dyt[p * ldo + o] = v;
                        }
                    }
                }
                #[cfg(target_arch = "x86_64")]
                for c in 0..ci {
                    let xc = &xp[c * lay.pl..(c + 1) * lay.pl];
                    for &(o0, nv) in &blocks {
                        let am = &mut accm[c * 9 * ldo + 9 * o0..c * 9 * ldo + 9 * (o0 + nv * L)];
                        let d = &dyt[o0..];
                        // SAFETY: AVX-512F was checked by `check`; the rows of `d` are `ldo`
                        // apart and the block's vectors end at `o0 + 16·nv <= ldo`; reads of
                        // `xc` stay inside the plane (largest index `(h+1)·s + w + 1 < pl`).
                        unsafe {
                            match nv {
                                1 => wgrad_block::<1>(&lay, d, ldo, xc, am),
                                2 => wgrad_block::<2>(&lay, d, ldo, xc, am),
                                _ => wgrad_block::<3>(&lay, d, ldo, xc, am),
                            }
                        }
                    }
                }
            }
            for c in 0..ci {
                for &(o0, nv) in &blocks {
                    let am = &accm[c * 9 * ldo + 9 * o0..];
                    for t in 0..9 {
                        for v in 0..nv {
                            for l in 0..L {
                                let o = o0 + L * v + l;
                                if o < co {
                                    part[(o * ci + c) * 9 + t] = am[(t * nv + v) * L + l];
                                }
                            }
                        }
                    }
                }
            }
        },
    );
    reduce_in_order(&partials, dw);
}
// ANCHOR_END: conv3x3_backward_weight
