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

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::as_uninit;
use super::lanes::{lanes_positions, lanes_tile};
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

/// Packs a weight for the channels-in-lanes kernel: `wt[(c·kk + t)·ldo + o] = weight(o, c,
/// t)`, `ldo = k_out` rounded up to 16, zero for `o >= k_out`.
fn pack_lanes(
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
unsafe fn transpose16(
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
unsafe fn copy_row(src: *const f32, dst: *mut f32, len: usize) {
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
struct Framed {
    h: usize,
    w: usize,
    p: usize,
    s: usize,
    pl: usize,
    st: usize,
    ho: usize,
    wo: usize,
}

impl Framed {
    fn new(g: &Conv2dGeom) -> Self {
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
    fn taps(&self, k: usize) -> Vec<usize> {
        (0..k * k).map(|t| (t / k) * self.s + t % k).collect()
    }
    /// Copies `c` planes `h × w` into the interiors of the framed planes of `xp` (whose
    /// frames stay zero).
    fn pad(&self, c: usize, x: &[f32], xp: &mut [f32]) {
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

/// `dyt[p·ldo + o] = dy[o·hw + p]` for `o < co` (one image; the padding channels
/// `co <= o < ldo` get zeros), by 16×16 blocks.
fn transpose_positions(dy: &[f32], co: usize, hw: usize, dyt: &mut [f32], ldo: usize) {
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

/// Input channels per pass of the channels-in-lanes kernel: at 3×3 and 4 vectors, the
/// weights of 8 channels are 18 KiB, which stay in L1 while every position tile of the image uses them.
const LANES_CHUNK: usize = 8;

/// The channels-in-lanes correlation of `n` images (`src`, NCHW, `k_in` planes framed as
/// `fr` says) with `wt` (`wt[(c·K² + t)·ldo + o]`, zero for `o >= k_out`) into `dst` (NCHW,
/// `k_out` planes `ho × wo`, every element written): `dst[o, q] = bias(o) + Σ_c Σ_t
/// wt(c, t, o) · x[c, position of q shifted by tap t] (+ res[o, q])`. Per image: tiles of
/// output positions × 16-channel vectors into a position-major buffer, then 16×16 block
/// transposes into the NCHW output. No lane is idle whatever the plane size, and any stride
/// is one more multiplication in the positions' addresses.
#[allow(clippy::too_many_arguments)]
fn lanes_correlate(
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
        super::check_bias_len(b.len(), n, k_out);
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
            || {
                (
                    vec![0f32; if k == 3 { k_in * fr.pl } else { 0 }],
                    vec![0f32; rows * ldo],
                )
            },
            |(xp, buf), (img, (d, s))| {
                let planes: &[f32] = if k == 3 {
                    fr.pad(k_in, s, xp);
                    xp
                } else {
                    s
                };
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
                                match nv {
                                    4 => {
                                        let bs: [*const f32; 5] = std::array::from_fn(at);
                                        let m = [omask[0], omask[1], omask[2], omask[3]];
                                        lanes_tile::<5, 4>(
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
                                            c0 == 0,
                                        )
                                    }
                                    2 => {
                                        let bs: [*const f32; 10] = std::array::from_fn(at);
                                        let m = [omask[0], omask[1]];
                                        lanes_tile::<10, 2>(
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
                                            c0 == 0,
                                        )
                                    }
                                    _ => {
                                        let bs: [*const f32; 10] = std::array::from_fn(at);
                                        lanes_tile::<10, 1>(
                                            &bs,
                                            fr.pl,
                                            &offs,
                                            w,
                                            ldo,
                                            b,
                                            &[omask[0]],
                                            out,
                                            ldo,
                                            cs.clone(),
                                            c0 == 0,
                                        )
                                    }
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
                    let d = unsafe { super::assume_init_mut(d) };
                    for (y, &r) in d.iter_mut().zip(&r[img * out_img..(img + 1) * out_img]) {
                        *y += r;
                    }
                }
            },
        );
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
/// As [`forward`].
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
    let group = |gi: usize| -> (usize, [usize; 9]) {
        if k == 3 {
            (gi * fr.pl, std::array::from_fn(|t| (t / 3) * fr.s + t % 3))
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
