//! Direct convolutions with stride 1 and "same" padding: 3×3 with padding 1 (every 3×3
//! convolution of the U-Net but the two downsamplers) and 1×1 with none (the skip and
//! attention projections), in `f32` on AVX-512, with no im2col and no GEMM packing; and the
//! forward pass and weight gradient of 3×3 convolutions with stride 2 (the downsamplers).
//!
//! **Forward and input gradient: flat rows, masked columns.** Number the outputs of a plane
//! `q = i·W + j`, their order in NCHW memory. Store each input plane with `P = K/2` zero rows
//! above and below it and `P` zero floats before and after, rows `W` apart (a 1×1
//! convolution reads the image as it is). Output `q`, tap `(a, b)` then reads
//! `x[i+a-P, j+b-P] = xpad[q + a·W + b]` whenever the column `j+b-P` lies inside the image;
//! when it does not (`j = 0` with `b = 0`, `j = W-1` with `b = 2`) the flat index has wrapped
//! into the neighbouring row, and the kernel zeroes those lanes as it loads them. So
//!
//! `y[o, q] = Σ_c Σ_t w[o, c, t] · m_b(q) · xpad[c, q + a·W + b]`, tap `t = K·a + b`:
//!
//! each tap's "patch row" is the plane itself, shifted and masked. The micro-kernel holds an
//! `MR × NV` tile of outputs (`MR` channels, `NV` vectors of 16 consecutive `q`) in
//! registers, starts it at the bias and, for every input channel and tap, loads `NV` vectors
//! of the shifted plane and broadcasts `MR` weights; it stores straight into the NCHW output,
//! the vector past the end of a plane with a masked store. Every position computed is kept
//! but the tail of a plane's last vector.
//!
//! - **Input gradient** = the same correlation of `dy` with the kernel transposed over
//!   channels and flipped: `dx[c, q] = Σ_o Σ_t w[o, c, K²-1-t] · m_b(q) · dypad[o, q + off_t]`.
//! - **Weight gradient**: `dw[o, c, t] = Σ_n Σ_{i,j} dy[n, o, i, j] · x[n, c, i+a-P, j+b-P]`,
//!   with 16 output channels in the lanes of a vector (`dy` transposed to position-major by
//!   16×16 blocks) and the input value broadcast from a plane padded on all four sides (row
//!   stride `W + 2P`): no masks and no horizontal sums. A 1×1 convolution puts nine input
//!   channels where a 3×3 one has its nine taps; a stride `st` reads input `(i·st, j·st)`.
//! - **Stride 2, forward: output channels in the lanes.** Flat rows do not stride, so the
//!   forward pass of a downsampler keeps 16 output channels per vector instead: a tile of 5
//!   or 10 output positions × 4 or 2 vectors, the input value of each position and tap
//!   broadcast from the framed plane, into a position-major buffer that 16×16 block
//!   transposes turn into NCHW. (Its input gradient, a transposed convolution, stays on
//!   im2col + GEMM.)
//!
//! Every sum runs in an order fixed by the shape, so results do not depend on the thread count.
//!
//! Here: the flat-row kernels (forward, input gradient) and the dispatch; `weight` has the
//! weight gradient, `strided` the stride-2 forward pass, `layout` the framed planes, row copies
//! and 16×16 transposes they share.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::as_uninit;
use super::Conv2dGeom;

mod layout;
mod strided;
mod weight;

use layout::Framed;
use strided::{lanes_correlate, pack_lanes};
pub use weight::backward_weight;

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

/// The kernel size `K` of `g` when this module computes it (stride 1; 3×3 with padding 1 or
/// 1×1 with none; no empty dimension), else `None`.
fn kernel_size(g: &Conv2dGeom) -> Option<usize> {
    if g.n == 0 || g.c_in == 0 || g.c_out == 0 || g.h == 0 || g.w == 0 || g.stride != 1 {
        return None;
    }
    match (g.kh, g.kw, g.pad) {
        (3, 3, 1) => Some(3),
        (1, 1, 0) => Some(1),
        _ => None,
    }
}

/// `true` when this module computes all three passes of `g`: stride 1, 3×3 with padding 1
/// or 1×1 without, and no empty dimension.
pub fn applies(g: &Conv2dGeom) -> bool {
    kernel_size(g).is_some()
}

/// `true` when this module computes the forward pass of `g`: the shapes of [`applies`], and
/// 3×3 convolutions with padding 1 and stride 2 (on the channels-in-lanes kernel).
pub fn forward_applies(g: &Conv2dGeom) -> bool {
    applies(g) || is_3x3_stride2(g)
}

/// `true` when this module computes the weight gradient of `g`: as [`forward_applies`].
pub fn weight_applies(g: &Conv2dGeom) -> bool {
    forward_applies(g)
}

/// `true` when this module computes the input gradient of `g`: the shapes of [`applies`].
pub fn input_applies(g: &Conv2dGeom) -> bool {
    applies(g)
}

fn is_3x3_stride2(g: &Conv2dGeom) -> bool {
    let nonempty = g.n > 0 && g.c_in > 0 && g.c_out > 0 && g.h > 0 && g.w > 0;
    nonempty && (g.kh, g.kw, g.pad, g.stride) == (3, 3, 1, 2)
}

/// `true` when the forward pass of `g` runs on the channels-in-lanes kernel: stride 2. (At
/// 7×7, where flat rows leave 15 of 64 lanes idle, the channels-in-lanes kernel measured no
/// faster: 0.895 against 0.907 ms for 64 -> 64 channels at batch 64 on 2 threads.)
fn uses_lanes(g: &Conv2dGeom) -> bool {
    g.stride != 1
}

/// The flat-row planes of the correlation kernel for `h × w` images and a `k × k` kernel
/// (see the module comment).
#[derive(Clone, Copy, Debug)]
struct Rows {
    k: usize,
    h: usize,
    w: usize,
    /// Plane length `(h + 2p)·w + 2p`, `p = k/2`; `h·w` for `k = 1`.
    pl: usize,
    /// Vectors covering the `h·w` positions.
    nvec: usize,
}

impl Rows {
    fn new(k: usize, h: usize, w: usize) -> Self {
        let p = k / 2;
        Self {
            k,
            h,
            w,
            pl: (h + 2 * p) * w + 2 * p,
            nvec: (h * w).div_ceil(L),
        }
    }
    fn hw(&self) -> usize {
        self.h * self.w
    }
    /// Length of a buffer of `c` padded planes (`k = 3`): the last vector of the last plane
    /// reads up to index `16·nvec - 1 + 2w + 2 <= h·w + 15 + 2w + 2 = pl + 15` from the
    /// plane's start, hence `L` floats of slack, which stay zero.
    fn buf_len(&self, c: usize) -> usize {
        c * self.pl + L
    }
    /// Copies `c` planes `h × w` into the padded planes of `xp` (borders and slack stay zero).
    fn pad(&self, c: usize, x: &[f32], xp: &mut [f32]) {
        let (hw, p) = (self.hw(), self.k / 2);
        assert!(
            x.len() >= c * hw && xp.len() >= self.buf_len(c),
            "direct conv: pad lengths"
        );
        for ch in 0..c {
            let start = ch * self.pl + p + p * self.w;
            xp[start..start + hw].copy_from_slice(&x[ch * hw..(ch + 1) * hw]);
        }
    }
    /// The register tiles of a plane: `NV` vectors each, the remainder as one tile of 1 or
    /// 2 vectors, except that a remainder of 1 after a full tile becomes two tiles of 2
    /// (a lone vector costs 8 broadcasts per 8 FMAs). Each with its load and store masks.
    fn tiles(&self) -> Vec<Tile> {
        let mut tiles = Vec::with_capacity(self.nvec / NV + 2);
        let (mut v, mut left) = (0, self.nvec);
        while left > 0 {
            let nv = match left {
                4 => 2,
                l => l.min(NV),
            };
            tiles.push(self.tile_at(v * L, nv));
            v += nv;
            left -= nv;
        }
        tiles
    }
    fn tile_at(&self, q0: usize, nv: usize) -> Tile {
        let (w, hw) = (self.w, self.hw());
        let mask = |v: usize, keep: &dyn Fn(usize) -> bool| -> u16 {
            (0..L)
                .filter(|&l| keep(q0 + v * L + l))
                .fold(0u16, |m, l| m | (1 << l))
        };
        Tile {
            q0,
            nv,
            left: std::array::from_fn(|v| mask(v, &|q| q % w != 0)),
            right: std::array::from_fn(|v| mask(v, &|q| q % w != w - 1)),
            tail: std::array::from_fn(|v| mask(v, &|q| q < hw)),
        }
    }
}

/// One register tile of a plane: positions `q0 .. q0 + 16·nv` and, per vector, the lanes
/// whose column has a left neighbour (`left`), a right neighbour (`right`), and that lie
/// inside the plane (`tail`).
#[derive(Clone, Copy, Debug)]
struct Tile {
    q0: usize,
    nv: usize,
    left: [u16; NV],
    right: [u16; NV],
    tail: [u16; NV],
}

/// Packs a weight for the correlation kernel in tiles of [`MR`] output rows:
/// `wp[((blk·k_in + c)·kk + t)·MR + m] = weight(blk·MR + m, c, t)`, zero for rows `>= k_out`.
fn pack(
    k_out: usize,
    k_in: usize,
    kk: usize,
    weight: impl Fn(usize, usize, usize) -> f32,
) -> Vec<f32> {
    let blocks = k_out.div_ceil(MR);
    let mut wp = vec![0f32; blocks * k_in * kk * MR];
    for blk in 0..blocks {
        for c in 0..k_in {
            for t in 0..kk {
                for m in 0..MR {
                    let o = blk * MR + m;
                    if o < k_out {
                        wp[((blk * k_in + c) * kk + t) * MR + m] = weight(o, c, t);
                    }
                }
            }
        }
    }
    wp
}

/// One tap of [`tile`]: loads the `NVV` vectors at `$xt` (each through `$load`) and adds
/// `weight[m] · x` to every row `m` of the accumulator tile.
#[cfg(target_arch = "x86_64")]
macro_rules! tap {
    ($acc:ident, $xt:expr, $wt:expr, |$p:ident, $v:ident| $load:expr) => {{
        let xt: *const f32 = $xt;
        let mut xv = [_mm512_setzero_ps(); NVV];
        for ($v, x) in xv.iter_mut().enumerate() {
            let $p = xt.add(L * $v);
            *x = $load;
        }
        let wt: *const f32 = $wt;
        for (m, row) in $acc.iter_mut().enumerate() {
            let wv = _mm512_set1_ps(*wt.add(m));
            for (a, &x) in row.iter_mut().zip(&xv) {
                *a = _mm512_fmadd_ps(wv, x, *a);
            }
        }
    }};
}

/// One `MR × NVV` tile of a `K × K` correlation: `out[m·ld + 16v + lane] = (bias[m] +
/// res[m·ld + 16v + lane]) + Σ_c Σ_{a,b} wp[(c·K² + K·a + b)·MR + m] · m_b · xp[c·pl + a·w + b + 16v + lane]`, the sum
/// over `c` outer and the taps inner, where `m_b` zeroes the lanes outside `tile.left` (`b =
/// 0`), outside `tile.right` (`b = 2`) and, for `K = 1`, outside `tile.tail`. Stores rows
/// `m < rows`, each vector's lanes in `tile.tail`.
///
/// # Safety
/// AVX-512F must be available; `xp` must be readable at `c·pl + (K-1)·(w+1) + 16·NVV` for
/// every `c < k_in` (for `K = 1`, at the lanes in `tile.tail`), `wp` at `k_in·K²·MR` floats,
/// `out` writable at `m·ld + 16v + lane` for `m < rows` and the lanes in `tile.tail`; `res`
/// null or readable there.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile<const K: usize, const NVV: usize>(
    xp: *const f32,
    pl: usize,
    k_in: usize,
    w: usize,
    tile: &Tile,
    wp: *const f32,
    bias: &[f32; MR],
    res: *const f32,
    out: *mut f32,
    ld: usize,
    rows: usize,
) {
    let left: [__mmask16; NVV] = std::array::from_fn(|v| tile.left[v]);
    let right: [__mmask16; NVV] = std::array::from_fn(|v| tile.right[v]);
    let tail: [__mmask16; NVV] = std::array::from_fn(|v| tile.tail[v]);
    let mut acc = [[_mm512_setzero_ps(); NVV]; MR];
    for (row, &b) in acc.iter_mut().zip(bias) {
        *row = [_mm512_set1_ps(b); NVV];
    }
    if !res.is_null() {
        for (m, row) in acc.iter_mut().enumerate().take(rows) {
            for (v, a) in row.iter_mut().enumerate() {
                let r = _mm512_maskz_loadu_ps(tail[v], res.add(m * ld + L * v));
                *a = _mm512_add_ps(*a, r);
            }
        }
    }
    for c in 0..k_in {
        let xc = xp.add(c * pl);
        let wc = wp.add(c * K * K * MR);
        if K == 1 {
            tap!(acc, xc, wc, |p, v| _mm512_maskz_loadu_ps(tail[v], p));
        } else {
            for a in 0..K {
                let (xa, wa) = (xc.add(a * w), wc.add(a * K * MR));
                tap!(acc, xa, wa, |p, v| _mm512_maskz_loadu_ps(left[v], p));
                tap!(acc, xa.add(1), wa.add(MR), |p, v| _mm512_loadu_ps(p));
                tap!(
                    acc,
                    xa.add(2),
                    wa.add(2 * MR),
                    |p, v| _mm512_maskz_loadu_ps(right[v], p)
                );
            }
        }
    }
    for (m, row) in acc.iter().enumerate().take(rows) {
        for (v, a) in row.iter().enumerate() {
            let p = out.add(m * ld + L * v);
            if tail[v] == u16::MAX {
                _mm512_storeu_ps(p, *a);
            } else {
                _mm512_mask_storeu_ps(p, tail[v], *a);
            }
        }
    }
}

/// The correlation of one image: `k_in` planes in `xp` (padded as [`Rows`] says for `K = 3`,
/// the image itself for `K = 1`) with the packed weight `wp` into the `k_out` NCHW planes of
/// `out`, each starting at `bias(o)` plus, given a residual `res` (`k_out` planes), its
/// element.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
fn correlate_image<const K: usize>(
    rows: &Rows,
    tiles: &[Tile],
    k_in: usize,
    k_out: usize,
    xp: &[f32],
    wp: &[f32],
    bias: impl Fn(usize) -> f32,
    res: Option<&[f32]>,
    out: &mut [MaybeUninit<f32>],
) {
    let (hw, kk, blocks) = (rows.hw(), K * K, k_out.div_ceil(MR));
    if let Some(r) = res {
        assert_eq!(r.len(), k_out * hw, "direct conv: residual length");
    }
    assert_eq!(rows.k, K, "direct conv: kernel size");
    let need = if K == 1 {
        k_in * hw
    } else {
        rows.buf_len(k_in)
    };
    assert!(xp.len() >= need, "direct conv: input planes length");
    assert_eq!(
        wp.len(),
        blocks * k_in * kk * MR,
        "direct conv: packed weight length"
    );
    assert_eq!(out.len(), k_out * hw, "direct conv: output length");
    assert!(available(), "direct conv: AVX-512F is not available");
    let pl = if K == 1 { hw } else { rows.pl };
    for blk in 0..blocks {
        let o0 = blk * MR;
        let valid = MR.min(k_out - o0);
        let b: [f32; MR] = std::array::from_fn(|m| if m < valid { bias(o0 + m) } else { 0.0 });
        let wb = &wp[blk * k_in * kk * MR..(blk + 1) * k_in * kk * MR];
        // SAFETY: AVX-512F was checked above. For K = 3 a tile reads `xp` up to index
        // `(k_in-1)·pl + 2w + 2 + 16·nvec - 1 <= k_in·pl + 15 < buf_len(k_in)`; for K = 1
        // only lanes `q < hw` of each plane, below `k_in·hw`. It writes rows `o0 + m < k_out`
        // at positions `q < hw` of their planes, inside `out` (length `k_out·hw`), and reads
        // the residual at the same places.
        unsafe {
            let (x, w, o) = (xp.as_ptr(), wb.as_ptr(), out.as_mut_ptr().cast::<f32>());
            for t in tiles {
                let at = o0 * hw + t.q0;
                let (x, o) = (x.add(t.q0), o.add(at));
                let r = res.map_or(std::ptr::null(), |r| r.as_ptr().add(at));
                match t.nv {
                    1 => tile::<K, 1>(x, pl, k_in, rows.w, t, w, &b, r, o, hw, valid),
                    2 => tile::<K, 2>(x, pl, k_in, rows.w, t, w, &b, r, o, hw, valid),
                    _ => tile::<K, NV>(x, pl, k_in, rows.w, t, w, &b, r, o, hw, valid),
                }
            }
        }
    }
}

/// Correlates `n` images of `k_in` planes (`src`, NCHW) into `k_out` planes (`dst`, NCHW,
/// every element written), `dst[o] = bias[o] + Σ_c Σ_t wp(o, c, t) · (src[c] shifted by tap
/// t)` (bias per channel or per image and channel, [`super::bias_at`]) plus, given one,
/// `res` (shaped as `dst`), one image per rayon task.
#[allow(clippy::too_many_arguments)]
fn correlate<const K: usize>(
    g: &Conv2dGeom,
    k_in: usize,
    k_out: usize,
    src: &[f32],
    wp: &[f32],
    bias: Option<&[f32]>,
    res: Option<&[f32]>,
    dst: &mut [MaybeUninit<f32>],
) {
    let rows = Rows::new(K, g.h, g.w);
    let hw = rows.hw();
    let (in_img, out_img) = (k_in * hw, k_out * hw);
    assert_eq!(src.len(), g.n * in_img, "direct conv: input length");
    assert_eq!(dst.len(), g.n * out_img, "direct conv: output length");
    if let Some(r) = res {
        assert_eq!(r.len(), dst.len(), "direct conv: residual length");
    }
    let tiles = rows.tiles();
    dst.par_chunks_mut(out_img)
        .zip(src.par_chunks(in_img))
        .enumerate()
        .for_each_init(
            || {
                if K == 1 {
                    vec![]
                } else {
                    vec![0f32; rows.buf_len(k_in)]
                }
            },
            |xp, (img, (d, s))| {
                let planes: &[f32] = if K == 1 {
                    s
                } else {
                    rows.pad(k_in, s, xp);
                    xp
                };
                let b = |o: usize| bias.map_or(0.0, |b| super::bias_at(b, k_out, img, o));
                let r = res.map(|r| &r[img * out_img..(img + 1) * out_img]);
                #[cfg(target_arch = "x86_64")]
                correlate_image::<K>(&rows, &tiles, k_in, k_out, planes, wp, b, r, d);
            },
        );
}

/// Panics unless `g` is a convolution of this module on a CPU that runs it; returns `K`.
fn check(g: &Conv2dGeom) -> usize {
    let Some(k) = kernel_size(g) else {
        panic!("direct conv: not a stride-1 3x3/padding-1 or 1x1/padding-0 convolution: {g:?}")
    };
    assert!(available(), "direct conv: AVX-512F is not available");
    k
}

// ANCHOR: direct_forward
/// `y[n,o,i,j] = bias[o] + Σ_{c,a,b} w[o,c,a,b] x[n,c,i+a-P,j+b-P]`; overwrites `y`. The
/// contract of [`super::reference::conv2d_forward`] for the shapes of [`applies`].
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
    forward_add_uninit(g, x, w, bias, None, y)
}

/// [`forward_uninit`] plus a residual: `y = res + conv(x)` (`res` shaped as `y`), the
/// residual added to the bias before the products, in the same pass.
pub fn forward_add_uninit(
    g: &Conv2dGeom,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    res: Option<&[f32]>,
    y: &mut [MaybeUninit<f32>],
) {
    assert!(
        forward_applies(g) && available(),
        "direct conv: no forward kernel for {g:?} on this CPU"
    );
    assert_eq!(w.len(), g.w_len(), "direct conv: weight length");
    if let Some(b) = bias {
        super::check_bias_len(b.len(), g.n, g.c_out);
    }
    let (ci, co, k) = (g.c_in, g.c_out, g.kh);
    let kk = k * k;
    if uses_lanes(g) {
        let wt = pack_lanes(co, ci, kk, |o, c, t| w[(o * ci + c) * kk + t]);
        return lanes_correlate(&Framed::new(g), k, g.n, ci, co, x, &wt, bias, res, y);
    }
    let wp = pack(co, ci, kk, |o, c, t| w[(o * ci + c) * kk + t]);
    if k == 1 {
        correlate::<1>(g, ci, co, x, &wp, bias, res, y)
    } else {
        correlate::<3>(g, ci, co, x, &wp, bias, res, y)
    }
}
// ANCHOR_END: direct_forward

/// Input gradient `dx[n,c,i,j] = Σ_{o,a,b} w[o,c,a,b] dy[n,o,i-a+P,j-b+P]`: the correlation of
/// `dy` with the kernel transposed over channels and flipped (`t -> K²-1-t`); overwrites
/// `dx`.
///
/// # Panics
/// As [`forward`].
pub fn backward_input(g: &Conv2dGeom, dy: &[f32], w: &[f32], dx: &mut [f32]) {
    backward_input_uninit(g, dy, w, as_uninit(dx))
}

/// [`backward_input`] into memory that need not be initialised: every element of `dx` is
/// written.
pub fn backward_input_uninit(g: &Conv2dGeom, dy: &[f32], w: &[f32], dx: &mut [MaybeUninit<f32>]) {
    let k = check(g);
    assert_eq!(w.len(), g.w_len(), "direct conv: weight length");
    let (ci, co, kk) = (g.c_in, g.c_out, k * k);
    let wp = pack(ci, co, kk, |c, o, t| w[(o * ci + c) * kk + (kk - 1 - t)]);
    if k == 1 {
        correlate::<1>(g, co, ci, dy, &wp, None, None, dx)
    } else {
        correlate::<3>(g, co, ci, dy, &wp, None, None, dx)
    }
}
