//! Group normalisation fused with an activation (identity or SiLU), forward and backward, on
//! NCHW activations.
//!
//! For image `n` and group `g` (the channels `g·C/G .. (g+1)·C/G`, contiguous in NCHW, `L =
//! (C/G)·H·W` elements): `μ = Σx/L`, `σ² = Σ(x-μ)²/L` (biased, as PyTorch), `r = 1/√(σ²+ε)`,
//! `x̂ = (x-μ) r`, `z = γ_c x̂ + β_c`, `y = act(z)`.
//!
//! Backward, with `dz = dy · act'(z)` and `dx̂ = γ_c dz`:
//! `dx = r (dx̂ - mean_g(dx̂) - x̂ · mean_g(dx̂ x̂))`, `dγ_c = Σ_{n,h,w} dz x̂`,
//! `dβ_c = Σ_{n,h,w} dz`. The sums over the batch for `dγ`, `dβ` are taken in image order.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::activation::{has_avx2_fma, has_avx512, silu, silu_derivative};
use super::reduce::{lane_sum_map, lane_sum_zip, reduce_in_order, slice_sum};
use super::{as_uninit, assume_init_mut};
use crate::engine::element::Element;
use crate::error::{Error, Result};

/// The activation applied after the affine map of the normalisation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// `y = z`.
    Identity,
    /// `y = z σ(z)`, the sigmoid-weighted linear unit.
    Silu,
}

/// Shape of a group normalisation: `n × c × hw` activations in `groups` groups of channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupNormGeom {
    /// Batch size.
    pub n: usize,
    /// Channels.
    pub c: usize,
    /// Spatial size `H·W` of one channel.
    pub hw: usize,
    /// Number of groups; divides `c`.
    pub groups: usize,
}

impl GroupNormGeom {
    /// Validates the shape: `groups >= 1`, `groups` divides `c`, `hw >= 1`.
    pub fn new(n: usize, c: usize, hw: usize, groups: usize) -> Result<Self> {
        if groups == 0 || !c.is_multiple_of(groups) {
            return Err(Error::param(
                "groups",
                format!("{groups} groups must be at least 1 and divide {c} channels"),
            ));
        }
        if hw == 0 {
            return Err(Error::param("hw", "spatial size must be positive"));
        }
        Ok(Self { n, c, hw, groups })
    }
    /// Channels per group.
    pub fn channels_per_group(&self) -> usize {
        self.c / self.groups
    }
    /// Number of activations `n·c·hw`.
    pub fn len(&self) -> usize {
        self.n * self.c * self.hw
    }
    /// `true` when there are no activations.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Number of (image, group) pairs, the length of the statistics arrays.
    pub fn stats_len(&self) -> usize {
        self.n * self.groups
    }
    fn check(&self, x: usize, gamma: usize, beta: usize) {
        assert!(
            self.groups > 0 && self.c.is_multiple_of(self.groups),
            "group norm: bad groups"
        );
        assert_eq!(x, self.len(), "group norm: activation length");
        assert_eq!(gamma, self.c, "group norm: gamma length");
        assert_eq!(beta, self.c, "group norm: beta length");
    }
}

// ANCHOR: group_norm_forward
/// Forward pass: writes `y = act(γ x̂ + β)` and the per-(image, group) statistics `mean` and
/// `rstd = 1/√(σ²+ε)` (each of length `n·groups`, index `n·groups + g`), which the backward
/// pass takes back. `x`, `y`: `n·c·hw`; `gamma`, `beta`: `c`.
#[allow(clippy::too_many_arguments)]
pub fn group_norm_forward<E: Element>(
    g: &GroupNormGeom,
    act: Activation,
    eps: E,
    x: &[E],
    gamma: &[E],
    beta: &[E],
    y: &mut [E],
    mean: &mut [E],
    rstd: &mut [E],
) {
    group_norm_forward_with(g, act, eps, x, gamma, beta, y, mean, rstd, true)
}

/// [`group_norm_forward`] into memory that need not be initialised: every element of `y` is
/// written.
#[allow(clippy::too_many_arguments)]
pub fn group_norm_forward_uninit<E: Element>(
    g: &GroupNormGeom,
    act: Activation,
    eps: E,
    x: &[E],
    gamma: &[E],
    beta: &[E],
    y: &mut [MaybeUninit<E>],
    mean: &mut [E],
    rstd: &mut [E],
) {
    forward_impl(g, act, eps, x, gamma, beta, y, mean, rstd, true)
}

/// [`group_norm_forward`] with a choice of variant: `simd = false` forces the portable code
/// (for testing); otherwise the AVX2 + FMA variant runs where the CPU has it. Both give the
/// same bits.
#[allow(clippy::too_many_arguments)]
pub fn group_norm_forward_with<E: Element>(
    g: &GroupNormGeom,
    act: Activation,
    eps: E,
    x: &[E],
    gamma: &[E],
    beta: &[E],
    y: &mut [E],
    mean: &mut [E],
    rstd: &mut [E],
    simd: bool,
) {
    forward_impl(g, act, eps, x, gamma, beta, as_uninit(y), mean, rstd, simd)
}

#[allow(clippy::too_many_arguments)]
fn forward_impl<E: Element>(
    g: &GroupNormGeom,
    act: Activation,
    eps: E,
    x: &[E],
    gamma: &[E],
    beta: &[E],
    y: &mut [MaybeUninit<E>],
    mean: &mut [E],
    rstd: &mut [E],
    simd: bool,
) {
    g.check(x.len(), gamma.len(), beta.len());
    assert_eq!(y.len(), g.len(), "group norm: output length");
    assert_eq!(mean.len(), g.stats_len(), "group norm: mean length");
    assert_eq!(rstd.len(), g.stats_len(), "group norm: rstd length");
    let cg = g.channels_per_group();
    let l = cg * g.hw;
    if l == 0 || g.n == 0 {
        return;
    }
    let inv_l = E::one() / E::from_usize(l).expect("group size fits the element type");
    let avx = simd && has_avx2_fma();
    let avx512 = simd && has_avx512();
    y.par_chunks_mut(l)
        .zip(x.par_chunks(l))
        .zip(mean.par_iter_mut().zip(rstd.par_iter_mut()))
        .enumerate()
        .for_each(|(ng, ((yg, xg), (mu, rs)))| {
            let c0 = (ng % g.groups) * cg;
            let (ga, be) = (&gamma[c0..c0 + cg], &beta[c0..c0 + cg]);
            #[cfg(target_arch = "x86_64")]
            if avx512 {
                // SAFETY: AVX-512F, AVX2 and FMA were detected at run time.
                (*mu, *rs) = unsafe { forward_group_avx512(act, eps, inv_l, g.hw, xg, ga, be, yg) };
                return;
            }
            #[cfg(target_arch = "x86_64")]
            if avx {
                // SAFETY: AVX2 and FMA were detected at run time.
                (*mu, *rs) = unsafe { forward_group_avx2(act, eps, inv_l, g.hw, xg, ga, be, yg) };
                return;
            }
            let _ = (avx, avx512);
            (*mu, *rs) = forward_group(act, eps, inv_l, g.hw, xg, ga, be, yg);
        });
}

/// One (image, group) block of the forward pass: statistics, then `y = act(x·scale + shift)`
/// channel by channel. Returns `(mean, rstd)`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn forward_group<E: Element>(
    act: Activation,
    eps: E,
    inv_l: E,
    hw: usize,
    xg: &[E],
    gamma: &[E],
    beta: &[E],
    yg: &mut [MaybeUninit<E>],
) -> (E, E) {
    let m = slice_sum(xg) * inv_l;
    let var = lane_sum_map(xg, |v| (v - m) * (v - m)) * inv_l;
    let r = E::one() / (var + eps).sqrt();
    for ((yc, xc), (&ga, &be)) in yg
        .chunks_exact_mut(hw)
        .zip(xg.chunks_exact(hw))
        .zip(gamma.iter().zip(beta))
    {
        let scale = ga * r;
        let shift = be - m * scale;
        match act {
            Activation::Identity => {
                for (o, &v) in yc.iter_mut().zip(xc) {
                    o.write(v * scale + shift);
                }
            }
            Activation::Silu => {
                for (o, &v) in yc.iter_mut().zip(xc) {
                    o.write(silu(v * scale + shift));
                }
            }
        }
    }
    (m, r)
}

/// [`forward_group`] compiled for AVX2 + FMA (the same operations, vectorised 8 wide for
/// `f32`; Rust never fuses `a * b + c` on its own, so the results are the same bits).
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn forward_group_avx2<E: Element>(
    act: Activation,
    eps: E,
    inv_l: E,
    hw: usize,
    xg: &[E],
    gamma: &[E],
    beta: &[E],
    yg: &mut [MaybeUninit<E>],
) -> (E, E) {
    forward_group(act, eps, inv_l, hw, xg, gamma, beta, yg)
}

/// [`forward_group`] compiled for AVX-512 (16 wide for `f32`; same operations, same bits).
///
/// # Safety
/// The CPU must support AVX-512F, AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn forward_group_avx512<E: Element>(
    act: Activation,
    eps: E,
    inv_l: E,
    hw: usize,
    xg: &[E],
    gamma: &[E],
    beta: &[E],
    yg: &mut [MaybeUninit<E>],
) -> (E, E) {
    forward_group(act, eps, inv_l, hw, xg, gamma, beta, yg)
}
// ANCHOR_END: group_norm_forward

// ANCHOR: group_norm_backward
/// Backward pass: from `x`, the affine parameters, the statistics of the forward pass and
/// the output gradient `dy`, overwrites `dx` (`n·c·hw`) and `dgamma`, `dbeta` (`c`).
#[allow(clippy::too_many_arguments)]
pub fn group_norm_backward<E: Element>(
    g: &GroupNormGeom,
    act: Activation,
    x: &[E],
    gamma: &[E],
    beta: &[E],
    mean: &[E],
    rstd: &[E],
    dy: &[E],
    dx: &mut [E],
    dgamma: &mut [E],
    dbeta: &mut [E],
) {
    group_norm_backward_with(
        g, act, x, gamma, beta, mean, rstd, dy, dx, dgamma, dbeta, true,
    )
}

/// [`group_norm_backward`] into memory that need not be initialised: every element of `dx`
/// is written.
#[allow(clippy::too_many_arguments)]
pub fn group_norm_backward_uninit<E: Element>(
    g: &GroupNormGeom,
    act: Activation,
    x: &[E],
    gamma: &[E],
    beta: &[E],
    mean: &[E],
    rstd: &[E],
    dy: &[E],
    dx: &mut [MaybeUninit<E>],
    dgamma: &mut [E],
    dbeta: &mut [E],
) {
    backward_impl(
        g, act, x, gamma, beta, mean, rstd, dy, dx, dgamma, dbeta, true,
    )
}

/// [`group_norm_backward`] with a choice of variant, as in [`group_norm_forward_with`].
#[allow(clippy::too_many_arguments)]
pub fn group_norm_backward_with<E: Element>(
    g: &GroupNormGeom,
    act: Activation,
    x: &[E],
    gamma: &[E],
    beta: &[E],
    mean: &[E],
    rstd: &[E],
    dy: &[E],
    dx: &mut [E],
    dgamma: &mut [E],
    dbeta: &mut [E],
    simd: bool,
) {
    backward_impl(
        g,
        act,
        x,
        gamma,
        beta,
        mean,
        rstd,
        dy,
        as_uninit(dx),
        dgamma,
        dbeta,
        simd,
    )
}

#[allow(clippy::too_many_arguments)]
fn backward_impl<E: Element>(
    g: &GroupNormGeom,
    act: Activation,
    x: &[E],
    gamma: &[E],
    beta: &[E],
    mean: &[E],
    rstd: &[E],
    dy: &[E],
    dx: &mut [MaybeUninit<E>],
    dgamma: &mut [E],
    dbeta: &mut [E],
    simd: bool,
) {
    g.check(x.len(), gamma.len(), beta.len());
    assert_eq!(dy.len(), g.len(), "group norm: output-gradient length");
    assert_eq!(dx.len(), g.len(), "group norm: input-gradient length");
    assert_eq!(mean.len(), g.stats_len(), "group norm: mean length");
    assert_eq!(rstd.len(), g.stats_len(), "group norm: rstd length");
    assert_eq!(dgamma.len(), g.c, "group norm: dgamma length");
    assert_eq!(dbeta.len(), g.c, "group norm: dbeta length");
    let cg = g.channels_per_group();
    let l = cg * g.hw;
    if l == 0 || g.n == 0 {
        dgamma.fill(E::zero());
        dbeta.fill(E::zero());
        return;
    }
    let inv_l = E::one() / E::from_usize(l).expect("group size fits the element type");
    // Per-image partials of dgamma and dbeta (n × c), reduced over n in index order below.
    let mut pg = vec![E::zero(); g.n * g.c];
    let mut pb = vec![E::zero(); g.n * g.c];
    let avx = simd && has_avx2_fma();
    let avx512 = simd && has_avx512();
    dx.par_chunks_mut(l)
        .zip(x.par_chunks(l).zip(dy.par_chunks(l)))
        .zip(pg.par_chunks_mut(cg).zip(pb.par_chunks_mut(cg)))
        .enumerate()
        .for_each(|(ng, ((dxg, (xg, dyg)), (pgg, pbg)))| {
            let c0 = (ng % g.groups) * cg;
            let (ga, be) = (&gamma[c0..c0 + cg], &beta[c0..c0 + cg]);
            let blk = BackBlock {
                act,
                hw: g.hw,
                inv_l,
                m: mean[ng],
                r: rstd[ng],
            };
            #[cfg(target_arch = "x86_64")]
            if avx512 {
                // SAFETY: AVX-512F, AVX2 and FMA were detected at run time.
                return unsafe { backward_group_avx512(&blk, xg, dyg, ga, be, dxg, pgg, pbg) };
            }
            #[cfg(target_arch = "x86_64")]
            if avx {
                // SAFETY: AVX2 and FMA were detected at run time.
                return unsafe { backward_group_avx2(&blk, xg, dyg, ga, be, dxg, pgg, pbg) };
            }
            let _ = (avx, avx512);
            backward_group(&blk, xg, dyg, ga, be, dxg, pgg, pbg)
        });
    reduce_in_order(&pg, dgamma);
    reduce_in_order(&pb, dbeta);
}
// ANCHOR_END: group_norm_backward

/// The scalars of one (image, group) block of the backward pass.
struct BackBlock<E> {
    act: Activation,
    hw: usize,
    inv_l: E,
    m: E,
    r: E,
}

/// One (image, group) block of the backward pass: writes `dx` and the block's per-channel
/// partials `Σdz·x̂` (`pg`) and `Σdz` (`pb`).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn backward_group<E: Element>(
    b: &BackBlock<E>,
    xg: &[E],
    dyg: &[E],
    gamma: &[E],
    beta: &[E],
    dxg: &mut [MaybeUninit<E>],
    pg: &mut [E],
    pb: &mut [E],
) {
    let (m, r, hw) = (b.m, b.r, b.hw);
    // Pass 1: dz into dx; per-channel Σdz and Σdz·x̂.
    let (mut sum_dxhat, mut sum_dxhat_xhat) = (E::zero(), E::zero());
    for ch in 0..gamma.len() {
        let (dxc, xc, dyc) = (
            &mut dxg[ch * hw..(ch + 1) * hw],
            &xg[ch * hw..(ch + 1) * hw],
            &dyg[ch * hw..(ch + 1) * hw],
        );
        let (ga, be) = (gamma[ch], beta[ch]);
        match b.act {
            Activation::Identity => {
                for (o, &d) in dxc.iter_mut().zip(dyc) {
                    o.write(d);
                }
            }
            Activation::Silu => {
                for ((o, &v), &d) in dxc.iter_mut().zip(xc).zip(dyc) {
                    o.write(d * silu_derivative(ga * ((v - m) * r) + be));
                }
            }
        }
        // SAFETY: every element of the channel was written just above.
        let dxc = unsafe { assume_init_mut(dxc) };
        let sdz = slice_sum(dxc);
        let sdzx = lane_sum_zip(dxc, xc, |dz, v| dz * ((v - m) * r));
        pb[ch] = sdz;
        pg[ch] = sdzx;
        sum_dxhat += ga * sdz;
        sum_dxhat_xhat += ga * sdzx;
    }
    let (mean_dxhat, mean_dxhat_xhat) = (sum_dxhat * b.inv_l, sum_dxhat_xhat * b.inv_l);
    // SAFETY: pass 1 wrote every channel of the block.
    let dxg = unsafe { assume_init_mut(dxg) };
    // Pass 2: dx = r (γ dz - mean(dx̂) - x̂ mean(dx̂ x̂)).
    for (ch, (dxc, xc)) in dxg
        .chunks_exact_mut(hw)
        .zip(xg.chunks_exact(hw))
        .enumerate()
    {
        let ga = gamma[ch];
        for (o, &v) in dxc.iter_mut().zip(xc) {
            let xhat = (v - m) * r;
            *o = r * (ga * *o - mean_dxhat - xhat * mean_dxhat_xhat);
        }
    }
}

/// [`backward_group`] compiled for AVX2 + FMA (same operations, same bits).
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn backward_group_avx2<E: Element>(
    b: &BackBlock<E>,
    xg: &[E],
    dyg: &[E],
    gamma: &[E],
    beta: &[E],
    dxg: &mut [MaybeUninit<E>],
    pg: &mut [E],
    pb: &mut [E],
) {
    backward_group(b, xg, dyg, gamma, beta, dxg, pg, pb)
}

/// [`backward_group`] compiled for AVX-512 (same operations, same bits).
///
/// # Safety
/// The CPU must support AVX-512F, AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn backward_group_avx512<E: Element>(
    b: &BackBlock<E>,
    xg: &[E],
    dyg: &[E],
    gamma: &[E],
    beta: &[E],
    dxg: &mut [MaybeUninit<E>],
    pg: &mut [E],
    pb: &mut [E],
) {
    backward_group(b, xg, dyg, gamma, beta, dxg, pg, pb)
}
