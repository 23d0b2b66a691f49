//! `sin` and `cos` of `f64` slices without branches, so that the loop vectorises: the time
//! embeddings evaluate thousands of them per step (W2: 8192 of each at batch 1024).
//!
//! Range reduction: `x = k π/2 + r`, `k = round(x · 2/π)`, `|r| <= π/4` (plus rounding), with
//! `π/2 = P1 + P2 + P3`, where `P1` and `P2` have 33 significant bits, so that `k P1` and
//! `k P2` are exact for `|k| < 2^20`, and `x − k P1` is exact by Sterbenz's lemma: `r` is
//! then off by one rounding of `|r| <= 0.8` plus `|k| · |π/2 − P1 − P2 − P3| < 2^20 · 1e-37`.
//! On `[-π/4, π/4]`, `sin r` and `cos r` are their Taylor polynomials up to `r^17` and `r^18`,
//! whose truncation errors are below `(π/4)^19/19! < 1e-19` and `(π/4)^20/20! < 1e-20`;
//! Horner's rule adds at most one rounding per step on values below 1.1. The quadrant
//! `k mod 4` swaps and negates the pair. For `|x| <= 2^20` the result is within `6 ε` (ε the
//! f64 machine epsilon) of the exact value (`sin_cos_matches_std`).

use super::activation::has_avx2_fma;

/// `P1 + P2 + P3 = π/2`: 33 + 33 + 53 significant bits.
const P1: f64 = 1.570_796_326_734_125_6; // 0x1.921fb544p+0
const P2: f64 = 6.077_100_506_303_966e-11; // 0x1.0b4611a6p-34
const P3: f64 = 2.022_266_248_795_950_6e-21; // 0x1.3198a2e037073p-69
/// `2/π`.
const TWO_OVER_PI: f64 = std::f64::consts::FRAC_2_PI;
/// `1.5 · 2^52`: adding and subtracting it rounds to the nearest integer, whose low bits are
/// then the low bits of the sum.
const ROUND: f64 = 6_755_399_441_055_744.0;

/// Largest `|x|` for which [`sin_cos`] keeps its accuracy (`|k| < 2^20`).
pub const MAX_ARG: f64 = 1_000_000.0;

/// `(sin x, cos x)` for `|x| <= MAX_ARG` (see the module documentation).
#[inline(always)]
pub fn sin_cos(x: f64) -> (f64, f64) {
    let shifted = x * TWO_OVER_PI + ROUND;
    let k = shifted - ROUND;
    let q = shifted.to_bits() & 3;
    let r = ((x - k * P1) - k * P2) - k * P3;
    let r2 = r * r;
    // sin r = r (1 - r²/3! + r⁴/5! - ... - r^16/17!), cos r = 1 - r²/2! + ... + r^18/18!.
    let mut s = -1.0 / 355_687_428_096_000.0; // -1/17!
    s = s * r2 + 1.0 / 1_307_674_368_000.0; // 1/15!
    s = s * r2 - 1.0 / 6_227_020_800.0; // 1/13!
    s = s * r2 + 1.0 / 39_916_800.0; // 1/11!
    s = s * r2 - 1.0 / 362_880.0; // 1/9!
    s = s * r2 + 1.0 / 5_040.0;
    s = s * r2 - 1.0 / 120.0;
    s = s * r2 + 1.0 / 6.0;
    let sin_r = r - (r * r2) * s;
    let mut c = 1.0 / 6_402_373_705_728_000.0; // 1/18!
    c = c * r2 - 1.0 / 20_922_789_888_000.0; // 1/16!
    c = c * r2 + 1.0 / 87_178_291_200.0; // 1/14!
    c = c * r2 - 1.0 / 479_001_600.0; // 1/12!
    c = c * r2 + 1.0 / 3_628_800.0; // 1/10!
    c = c * r2 - 1.0 / 40_320.0;
    c = c * r2 + 1.0 / 720.0;
    c = c * r2 - 1.0 / 24.0;
    c = c * r2 + 0.5;
    let cos_r = 1.0 - r2 * c;
    // x = k π/2 + r: quadrant 1 maps (sin, cos) to (cos r, -sin r), 2 to (-sin r, -cos r),
    // 3 to (-cos r, sin r).
    let (a, b) = if q & 1 == 1 {
        (cos_r, sin_r)
    } else {
        (sin_r, cos_r)
    };
    let sa = if q & 2 == 2 { -a } else { a };
    let sb = if (q + 1) & 2 == 2 { -b } else { b };
    (sa, sb)
}

#[inline(always)]
fn sin_cos_loop(x: &[f64], sin: &mut [f64], cos: &mut [f64]) {
    for ((&v, s), c) in x.iter().zip(sin.iter_mut()).zip(cos.iter_mut()) {
        (*s, *c) = sin_cos(v);
    }
}

/// [`sin_cos_loop`] compiled for AVX2 + FMA.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn sin_cos_loop_avx2(x: &[f64], sin: &mut [f64], cos: &mut [f64]) {
    sin_cos_loop(x, sin, cos)
}

/// `sin[i] = sin x[i]`, `cos[i] = cos x[i]` for `|x[i]| <= MAX_ARG` (panics otherwise, and on
/// different lengths). The same bits with or without SIMD (no FMA contraction in Rust).
pub fn sin_cos_slice(x: &[f64], sin: &mut [f64], cos: &mut [f64]) {
    assert!(
        x.len() == sin.len() && x.len() == cos.len(),
        "sin_cos: lengths"
    );
    assert!(
        x.iter().all(|v| v.abs() <= MAX_ARG),
        "sin_cos: argument beyond {MAX_ARG:e}"
    );
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: AVX2 and FMA were detected at run time.
        return unsafe { sin_cos_loop_avx2(x, sin, cos) };
    }
    sin_cos_loop(x, sin, cos)
}
