//! The element type of engine tensors: `f32` for training and sampling, `f64` for tight
//! gradient checks. Every kernel is generic over [`Element`].

use std::fmt::Debug;

/// A floating-point element the engine computes with.
pub trait Element:
    num_traits::Float
    + num_traits::FromPrimitive
    + ndarray::LinalgScalar
    + ndarray::ScalarOperand
    + std::iter::Sum
    + std::ops::AddAssign
    + std::ops::SubAssign
    + std::ops::MulAssign
    + std::ops::DivAssign
    + Debug
    + Default
    + Send
    + Sync
    + 'static
{
    /// Converts from `f64` (rounding for `f32`).
    fn from_f64(x: f64) -> Self;
    /// Converts to `f64` (exact).
    fn to_f64(self) -> f64;

    /// General matrix product `C <- alpha * A B + beta * C`, with `A` an `m × k` and `B` a
    /// `k × n` matrix given by a pointer and row/column strides in elements, and `C` an `m × n`
    /// matrix likewise (the `matrixmultiply` convention).
    ///
    /// # Safety
    /// The pointers and strides must describe valid, non-overlapping (for `C`) memory.
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm_raw(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    );
}

impl Element for f32 {
    fn from_f64(x: f64) -> Self {
        x as f32
    }
    fn to_f64(self) -> f64 {
        self as f64
    }
    unsafe fn gemm_raw(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    ) {
        // SAFETY: forwarded from the caller's contract.
        unsafe {
            matrixmultiply::sgemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc)
        }
    }
}

impl Element for f64 {
    fn from_f64(x: f64) -> Self {
        x
    }
    fn to_f64(self) -> f64 {
        self
    }
    unsafe fn gemm_raw(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    ) {
        // SAFETY: forwarded from the caller's contract.
        unsafe {
            matrixmultiply::dgemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc)
        }
    }
}

/// Row-major matrix product `C <- A B + beta C` for contiguous row-major slices, with
/// optional transposition of `A` (`m × k`, stored `k × m` when `ta`) and `B` (`k × n`, stored
/// `n × k` when `tb`).
#[allow(clippy::too_many_arguments)]
pub fn gemm<E: Element>(
    m: usize,
    k: usize,
    n: usize,
    a: &[E],
    ta: bool,
    b: &[E],
    tb: bool,
    beta: E,
    c: &mut [E],
) {
    assert_eq!(
        a.len(),
        m * k,
        "gemm: A has {} elements, expected {m}x{k}",
        a.len()
    );
    assert_eq!(
        b.len(),
        k * n,
        "gemm: B has {} elements, expected {k}x{n}",
        b.len()
    );
    assert_eq!(
        c.len(),
        m * n,
        "gemm: C has {} elements, expected {m}x{n}",
        c.len()
    );
    let (rsa, csa) = if ta { (1, m as isize) } else { (k as isize, 1) };
    let (rsb, csb) = if tb { (1, k as isize) } else { (n as isize, 1) };
    // SAFETY: the asserts above guarantee that every index the strides reach is in bounds,
    // and `c` is a unique borrow.
    unsafe {
        E::gemm_raw(
            m,
            k,
            n,
            E::one(),
            a.as_ptr(),
            rsa,
            csa,
            b.as_ptr(),
            rsb,
            csb,
            beta,
            c.as_mut_ptr(),
            n as isize,
            1,
        )
    }
}
