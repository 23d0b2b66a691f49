//! The SiLU activation `silu(z) = z σ(z)`, `σ(z) = 1/(1+e^{-z})`, elementwise over slices.

use rayon::prelude::*;

use crate::engine::element::Element;

/// Elements per parallel task of the slice kernels.
const TASK: usize = 1 << 14;

/// `z σ(z)`.
#[inline]
pub fn silu<E: Element>(z: E) -> E {
    z / (E::one() + (-z).exp_fast())
}

/// `d/dz [z σ(z)] = σ(z) (1 + z (1 - σ(z)))`.
#[inline]
pub fn silu_derivative<E: Element>(z: E) -> E {
    let s = E::one() / (E::one() + (-z).exp_fast());
    s * (E::one() + z * (E::one() - s))
}

#[inline(always)]
fn silu_chunk<E: Element>(x: &[E], y: &mut [E]) {
    y.iter_mut().zip(x).for_each(|(o, &v)| *o = silu(v));
}

#[inline(always)]
fn silu_backward_chunk<E: Element>(x: &[E], dy: &[E], dx: &mut [E]) {
    for ((o, &v), &d) in dx.iter_mut().zip(x).zip(dy) {
        *o = d * silu_derivative(v);
    }
}

/// [`silu_chunk`] compiled for AVX2 + FMA (the same code, vectorised 8 wide for `f32`).
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn silu_chunk_avx2<E: Element>(x: &[E], y: &mut [E]) {
    silu_chunk(x, y)
}

/// [`silu_backward_chunk`] compiled for AVX2 + FMA.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn silu_backward_chunk_avx2<E: Element>(x: &[E], dy: &[E], dx: &mut [E]) {
    silu_backward_chunk(x, dy, dx)
}

/// `true` when the AVX-512 variants (compiled with AVX-512F, AVX2 and FMA) may run.
pub fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        has_avx2_fma() && is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `true` when the AVX2 + FMA variants may run (runtime detection; `false` off x86-64).
pub fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `y = silu(x)` elementwise; `x`, `y` of equal length. `simd = false` forces the portable
/// variant (for testing); otherwise the AVX2 variant runs where the CPU has it. Both compute
/// the same operations, so they agree to the last bit except where FMA contraction is
/// allowed (it is not: Rust never contracts `a * b + c` on its own), i.e. exactly.
pub fn silu_forward_with<E: Element>(x: &[E], y: &mut [E], simd: bool) {
    assert_eq!(x.len(), y.len(), "silu: lengths");
    let avx = simd && has_avx2_fma();
    y.par_chunks_mut(TASK)
        .zip(x.par_chunks(TASK))
        .for_each(|(yc, xc)| {
            #[cfg(target_arch = "x86_64")]
            if avx {
                // SAFETY: AVX2 and FMA were detected at run time.
                return unsafe { silu_chunk_avx2(xc, yc) };
            }
            let _ = avx;
            silu_chunk(xc, yc)
        });
}

/// `y = silu(x)` elementwise, the fastest variant this CPU runs; see [`silu_forward_with`].
pub fn silu_forward<E: Element>(x: &[E], y: &mut [E]) {
    silu_forward_with(x, y, true)
}

/// `dx = dy · silu'(x)` elementwise; all three of equal length; `simd` as in
/// [`silu_forward_with`].
pub fn silu_backward_with<E: Element>(x: &[E], dy: &[E], dx: &mut [E], simd: bool) {
    assert_eq!(x.len(), dy.len(), "silu: lengths");
    assert_eq!(x.len(), dx.len(), "silu: lengths");
    let avx = simd && has_avx2_fma();
    dx.par_chunks_mut(TASK)
        .zip(x.par_chunks(TASK).zip(dy.par_chunks(TASK)))
        .for_each(|(o, (xc, dc))| {
            #[cfg(target_arch = "x86_64")]
            if avx {
                // SAFETY: AVX2 and FMA were detected at run time.
                return unsafe { silu_backward_chunk_avx2(xc, dc, o) };
            }
            let _ = avx;
            silu_backward_chunk(xc, dc, o)
        });
}

/// `dx = dy · silu'(x)`, the fastest variant this CPU runs; see [`silu_backward_with`].
pub fn silu_backward<E: Element>(x: &[E], dy: &[E], dx: &mut [E]) {
    silu_backward_with(x, dy, dx, true)
}
