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

    /// `e^x` in a branch-free form that vectorises, for the activation kernels. `f64` uses
    /// the exact `exp`; `f32` uses [`exp_f32`] (within 4 ε relative on its range).
    #[inline(always)]
    fn exp_fast(self) -> Self {
        self.exp()
    }

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
    #[inline(always)]
    fn exp_fast(self) -> Self {
        exp_f32(self)
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

// ANCHOR: exp_f32
/// `e^x` for `f32` without branches or table look-ups, so that loops over it vectorise.
///
/// Range reduction: `x = n ln 2 + r` with `n = round(x / ln 2)`, `|r| <= ln 2 / 2`, where
/// `ln 2 = L_HI + L_LO` and `L_HI = 355/512` has 9 significant bits, so `n L_HI` is exact
/// for `|n| <= 2^15`. Then `e^x = 2^n e^r`, with `e^r` by its Taylor polynomial of degree 7,
/// whose truncation error is below `(ln2/2)^8 / 8! < 6e-9` relative (0.05 ulp), and `2^n`
/// built from its exponent bits. Inputs are clamped to `[-87, 88]` (results in the normal
/// range); the total error is a few rounding errors of the Horner steps, below `4 ε`
/// (`exp_f32_is_within_4_eps_of_exp`).
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const L_HI: f32 = 0.693_359_4; // 355/512
    const L_LO: f32 = -2.121_944_4e-4; // ln 2 - 355/512
                                       // 1.5 · 2^23: adding and subtracting it rounds to the nearest integer.
    const ROUND: f32 = 12_582_912.0;
    // The exponent `n` as an integer comes from the bits of `x log2(e) + ROUND` (for
    // `|n| < 2^22` they are those of ROUND plus `n`), not from a float-to-int cast: Rust's
    // saturating `as i32` does not vectorise.
    const ROUND_BITS: i32 = 0x4B40_0000;
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * LOG2E + ROUND;
    let n = shifted - ROUND;
    let r = (x - n * L_HI) - n * L_LO;
    let mut p = 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    let ni = shifted.to_bits() as i32 - ROUND_BITS;
    let scale = f32::from_bits(((ni + 127) as u32) << 23);
    p * scale
}
// ANCHOR_END: exp_f32

/// Checks the operand lengths of a row-major `m × k` by `k × n` product.
fn check_gemm_lengths(m: usize, k: usize, n: usize, a: usize, b: usize, c: usize) {
    assert_eq!(a, m * k, "gemm: A has {a} elements, expected {m}x{k}");
    assert_eq!(b, k * n, "gemm: B has {b} elements, expected {k}x{n}");
    assert_eq!(c, m * n, "gemm: C has {c} elements, expected {m}x{n}");
}

/// Strides `(row, column)` of a row-major `rows × cols` operand, stored transposed when `t`.
fn strides(rows: usize, cols: usize, t: bool) -> (isize, isize) {
    if t {
        (1, rows as isize)
    } else {
        (cols as isize, 1)
    }
}

// ANCHOR: gemm
/// Row-major matrix product `C <- A B + beta C` for contiguous row-major slices, with
/// optional transposition of `A` (`m × k`, stored `k × m` when `ta`) and `B` (`k × n`, stored
/// `n × k` when `tb`).
///
/// Large products are split over the current rayon pool into blocks of rows (or columns) of
/// `C` whose sizes depend only on the shape; each block is a single-threaded
/// `matrixmultiply` call. Every element of `C` is one dot product whose summation order does
/// not depend on the blocking, so the result is bit-identical for any thread count
/// (`gemm_is_bit_identical_on_1_and_2_threads`).
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
    check_gemm_lengths(m, k, n, a.len(), b.len(), c.len());
    // Below about 4 MFLOP a split costs more than it gains.
    const PAR_FLOPS: usize = 1 << 22;
    const MIN_BLOCK: usize = 64;
    if 2 * m * n * k < PAR_FLOPS || rayon::current_num_threads() == 1 || m.max(n) < 2 * MIN_BLOCK {
        return gemm_serial(m, k, n, a, ta, b, tb, beta, c);
    }
    let (rsa, csa) = strides(m, k, ta);
    let (rsb, csb) = strides(k, n, tb);
    // Split the longer side of C into at most 8 blocks of at least MIN_BLOCK.
    let split_rows = m >= n;
    let len = if split_rows { m } else { n };
    let blocks = (len / MIN_BLOCK).clamp(1, 8);
    let block = len.div_ceil(blocks);
    let (ap, bp, cp) = (
        a.as_ptr() as usize,
        b.as_ptr() as usize,
        c.as_mut_ptr() as usize,
    );
    use rayon::prelude::*;
    (0..len.div_ceil(block)).into_par_iter().for_each(|i| {
        let lo = i * block;
        let hi = (lo + block).min(len);
        let (ap, bp, cp) = (ap as *const E, bp as *const E, cp as *mut E);
        // SAFETY: the lengths were checked above, so every index reached through the
        // offset pointers and strides is in bounds; the blocks write disjoint rows (or
        // columns) of C, and `c` is uniquely borrowed for the duration of the scope.
        unsafe {
            if split_rows {
                E::gemm_raw(
                    hi - lo,
                    k,
                    n,
                    E::one(),
                    ap.offset(lo as isize * rsa),
                    rsa,
                    csa,
                    bp,
                    rsb,
                    csb,
                    beta,
                    cp.add(lo * n),
                    n as isize,
                    1,
                )
            } else {
                E::gemm_raw(
                    m,
                    k,
                    hi - lo,
                    E::one(),
                    ap,
                    rsa,
                    csa,
                    bp.offset(lo as isize * csb),
                    rsb,
                    csb,
                    beta,
                    cp.add(lo),
                    n as isize,
                    1,
                )
            }
        }
    });
}
// ANCHOR_END: gemm

/// [`gemm`] on the calling thread only: the building block of kernels that already split
/// their work over the rayon pool (for example a convolution over the batch).
#[allow(clippy::too_many_arguments)]
pub fn gemm_serial<E: Element>(
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
    check_gemm_lengths(m, k, n, a.len(), b.len(), c.len());
    let (rsa, csa) = strides(m, k, ta);
    let (rsb, csb) = strides(k, n, tb);
    // SAFETY: the length checks guarantee that every index the strides reach is in bounds,
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
