//! The SiLU activation `silu(z) = z σ(z)`, `σ(z) = 1/(1+e^{-z})`, elementwise over slices.

use rayon::prelude::*;

use crate::engine::element::Element;

/// Elements per parallel task of the slice kernels.
const TASK: usize = 1 << 14;

/// `z σ(z)`.
#[inline]
pub fn silu<E: Element>(z: E) -> E {
    z / (E::one() + (-z).exp())
}

/// `d/dz [z σ(z)] = σ(z) (1 + z (1 - σ(z)))`.
#[inline]
pub fn silu_derivative<E: Element>(z: E) -> E {
    let s = E::one() / (E::one() + (-z).exp());
    s * (E::one() + z * (E::one() - s))
}

/// `y = silu(x)` elementwise; `x`, `y` of equal length.
pub fn silu_forward<E: Element>(x: &[E], y: &mut [E]) {
    assert_eq!(x.len(), y.len(), "silu: lengths");
    y.par_chunks_mut(TASK)
        .zip(x.par_chunks(TASK))
        .for_each(|(yc, xc)| yc.iter_mut().zip(xc).for_each(|(o, &v)| *o = silu(v)));
}

/// `dx = dy · silu'(x)` elementwise; all three of equal length.
pub fn silu_backward<E: Element>(x: &[E], dy: &[E], dx: &mut [E]) {
    assert_eq!(x.len(), dy.len(), "silu: lengths");
    assert_eq!(x.len(), dx.len(), "silu: lengths");
    dx.par_chunks_mut(TASK)
        .zip(x.par_chunks(TASK).zip(dy.par_chunks(TASK)))
        .for_each(|(o, (xc, dc))| {
            for ((o, &v), &d) in o.iter_mut().zip(xc).zip(dc) {
                *o = d * silu_derivative(v);
            }
        });
}
