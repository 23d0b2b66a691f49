//! The fast kernels of `engine::kernels` against the slow reference kernels, in f64 and f32,
//! with tolerances from rounding-error bounds; bit-identity on rayon pools of 1 and 2
//! threads; validation errors.
//!
//! Rounding bounds used throughout (u = unit roundoff, `E::EPSILON / 2`): a sum of K terms
//! computed in any order satisfies `|fl(s) - s| <= γ_K Σ|t_i|`, `γ_K = K u / (1 - K u)`
//! (Higham, Accuracy and Stability, §3.1). Two implementations of the same sum therefore
//! differ by at most `2 γ_K Σ|t_i| <= 2 K ε Σ|t_i|` with `ε = E::EPSILON = 2u`, comfortably
//! (the factor 2 covers `1/(1-Ku)` for every K here). The `Σ|t_i|` are computed with the
//! reference kernel on the absolute values of the operands.

use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use scoresde::engine::element::{gemm, gemm_serial, Element};
use scoresde::engine::kernels::{self, reference, Activation, Conv2dGeom, GroupNormGeom};

fn random_vec(len: usize, seed: u64) -> Vec<f64> {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    (0..len).map(|_| r.random::<f64>() * 2.0 - 1.0).collect()
}

/// The f64 vector rounded to f32 and back, so that f32 and f64 kernels see the same numbers.
fn as_f32(v: &[f64]) -> (Vec<f32>, Vec<f64>) {
    let f: Vec<f32> = v.iter().map(|&x| x as f32).collect();
    let d = f.iter().map(|&x| x as f64).collect();
    (f, d)
}

/// `x` in element type `E`.
fn el<E: Element>(x: f64) -> E {
    <E as Element>::from_f64(x)
}

/// `x` as f64 (exact).
fn tf<E: Element>(x: E) -> f64 {
    <E as Element>::to_f64(x)
}

fn abs(v: &[f64]) -> Vec<f64> {
    v.iter().map(|x| x.abs()).collect()
}

/// Asserts `|got_i - want_i| <= k ε Σ|t|_i` for every i.
fn assert_within<E: Element>(
    what: &str,
    got: &[E],
    want: &[f64],
    abs_terms: &[f64],
    k: f64,
    eps: f64,
) {
    assert_eq!(got.len(), want.len());
    for (i, ((&g, &w), &s)) in got.iter().zip(want).zip(abs_terms).enumerate() {
        let tol = k * eps * s;
        let err = (tf(g) - w).abs();
        assert!(
            err <= tol,
            "{what}[{i}]: got {} want {w}, error {err:e} > bound {tol:e}",
            tf(g)
        );
    }
}

/// Runs `f` on a rayon pool of `threads` threads.
fn on_threads<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("pool")
        .install(f)
}

fn geom() -> impl Strategy<Value = Conv2dGeom> {
    (
        1usize..4,
        1usize..6,
        1usize..10,
        1usize..10,
        1usize..6,
        prop_oneof![Just(1usize), Just(3)],
        1usize..3,
        0usize..2,
    )
        .prop_filter_map("kernel must fit", |(n, ci, h, w, co, k, s, p)| {
            Conv2dGeom::new(n, ci, h, w, co, k, k, s, p).ok()
        })
}

/// Reference results and the Σ|terms| of each output for the three convolution passes.
struct ConvCase {
    x: Vec<f64>,
    w: Vec<f64>,
    b: Vec<f64>,
    dy: Vec<f64>,
}

impl ConvCase {
    fn new(g: &Conv2dGeom, seed: u64) -> Self {
        // Values representable in f32, so the f32 kernels see the same inputs.
        Self {
            x: as_f32(&random_vec(g.x_len(), seed)).1,
            w: as_f32(&random_vec(g.w_len(), seed + 1)).1,
            b: as_f32(&random_vec(g.c_out, seed + 2)).1,
            dy: as_f32(&random_vec(g.y_len(), seed + 3)).1,
        }
    }
    fn forward(&self, g: &Conv2dGeom) -> (Vec<f64>, Vec<f64>) {
        let mut y = vec![0.0; g.y_len()];
        let mut s = vec![0.0; g.y_len()];
        reference::conv2d_forward(g, &self.x, &self.w, Some(&self.b), &mut y);
        reference::conv2d_forward(g, &abs(&self.x), &abs(&self.w), Some(&abs(&self.b)), &mut s);
        (y, s)
    }
    fn backward_input(&self, g: &Conv2dGeom) -> (Vec<f64>, Vec<f64>) {
        let mut dx = vec![0.0; g.x_len()];
        let mut s = vec![0.0; g.x_len()];
        reference::conv2d_backward_input(g, &self.dy, &self.w, &mut dx);
        reference::conv2d_backward_input(g, &abs(&self.dy), &abs(&self.w), &mut s);
        (dx, s)
    }
    fn backward_weight(&self, g: &Conv2dGeom) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
        let (mut dw, mut sw) = (vec![0.0; g.w_len()], vec![0.0; g.w_len()]);
        let (mut db, mut sb) = (vec![0.0; g.c_out], vec![0.0; g.c_out]);
        reference::conv2d_backward_weight(g, &self.x, &self.dy, &mut dw, Some(&mut db));
        reference::conv2d_backward_weight(g, &abs(&self.x), &abs(&self.dy), &mut sw, Some(&mut sb));
        (dw, sw, db, sb)
    }
}

/// Checks all three fast passes in element type `E` against the f64 reference. `two` is 2
/// for f64 (both sides round) and 1 for f32 (the f64 reference's rounding is negligible).
fn check_conv<E: Element>(g: &Conv2dGeom, seed: u64, two: f64) {
    check_conv_on::<E>(g, seed, two, false)
}

/// [`check_conv`] on the dispatching kernels (`gemm = false`) or on the im2col + GEMM path
/// alone (`gemm = true`), which the dispatch bypasses where the direct kernels apply.
fn check_conv_on<E: Element>(g: &Conv2dGeom, seed: u64, two: f64, gemm: bool) {
    let c = ConvCase::new(g, seed);
    let cv = |v: &[f64]| v.iter().map(|&a| el::<E>(a)).collect::<Vec<E>>();
    let eps = tf(E::epsilon());
    let (ho, wo) = (g.h_out(), g.w_out());
    // forward: K = c_in kh kw products plus the bias.
    let (y, s) = c.forward(g);
    let mut got = vec![E::zero(); g.y_len()];
    let (x, w, b) = (cv(&c.x), cv(&c.w), cv(&c.b));
    if gemm {
        kernels::conv::conv2d_forward_gemm(g, &x, &w, Some(&b), &mut got);
    } else {
        kernels::conv2d_forward(g, &x, &w, Some(&b), &mut got);
    }
    assert_within(
        "forward",
        &got,
        &y,
        &s,
        two * (g.c_in * g.kh * g.kw + 1) as f64,
        eps,
    );
    // input gradient: at most c_out kh kw products, summed by a GEMM over c_out then by col2im.
    let (dx, s) = c.backward_input(g);
    let mut got = vec![E::zero(); g.x_len()];
    if gemm {
        kernels::conv::conv2d_backward_input_gemm(g, &cv(&c.dy), &w, &mut got);
    } else {
        kernels::conv2d_backward_input(g, &cv(&c.dy), &w, &mut got);
    }
    assert_within(
        "backward_input",
        &got,
        &dx,
        &s,
        two * (g.c_out * g.kh * g.kw + 1) as f64,
        eps,
    );
    // weight gradient: n ho wo products; bias gradient: n ho wo terms.
    let (dw, sw, db, sb) = c.backward_weight(g);
    let (mut gw, mut gb) = (vec![E::zero(); g.w_len()], vec![E::zero(); g.c_out]);
    if gemm {
        kernels::conv::conv2d_backward_weight_gemm(g, &x, &cv(&c.dy), &mut gw, Some(&mut gb));
    } else {
        kernels::conv2d_backward_weight(g, &x, &cv(&c.dy), &mut gw, Some(&mut gb));
    }
    let k = two * (g.n * ho * wo + 1) as f64;
    assert_within("backward_weight", &gw, &dw, &sw, k, eps);
    assert_within("backward_bias", &gb, &db, &sb, k, eps);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The three fast convolution passes agree with the direct-loop reference in f64 to the
    /// rounding bound `2 K ε Σ|terms|`, over random batch, channels, odd and even sizes,
    /// stride 1/2, padding 0/1 and kernels 1x1/3x3.
    #[test]
    fn conv_fast_matches_reference_f64(g in geom(), seed in 0u64..1000) {
        check_conv::<f64>(&g, seed, 2.0);
    }

    /// The same in f32 against the f64 reference, to `K ε_f32 Σ|terms|`.
    #[test]
    fn conv_fast_matches_reference_f32(g in geom(), seed in 0u64..1000) {
        check_conv::<f32>(&g, seed, 1.0);
    }

    /// The direct kernels (f32, AVX-512: stride 1, 3×3 with padding 1 or 1×1 without, and
    /// the forward pass and weight gradient of 3×3 stride-2 convolutions) agree with the f64
    /// reference to the same bound as every other path, on sizes that exercise every tile
    /// shape: flat rows leaving 0, 1 or 2 vectors after the last full 3-vector tile and a
    /// partial last vector, columns at both image edges (the masked wrap-around), planes whose
    /// flat rows would idle lanes (the channels-in-lanes kernel: output channels in blocks of
    /// 4, 2 and 1 vectors, position tiles of 5 and 10 with a partial last one), output channels
    /// not a multiple of the 8-row tile nor of the 16-lane transpose block, weight-gradient
    /// blocks of 1, 2 or 3 vectors, and (1×1) input channels not a multiple of the 9-row group.
    #[test]
    fn direct_conv_matches_reference_f32(n in 1usize..4, ci in 1usize..30, co in 1usize..80, h in 1usize..20, w in 1usize..20, k3: bool, s2: bool, seed in 0u64..1000) {
        let (k, p) = if k3 { (3, 1) } else { (1, 0) };
        let stride = if k3 && s2 { 2 } else { 1 };
        let g = Conv2dGeom::new(n, ci, h, w, co, k, k, stride, p).unwrap();
        if kernels::direct::available() {
            prop_assert!(kernels::direct::forward_applies(&g) && kernels::direct::weight_applies(&g));
            prop_assert_eq!(kernels::conv::uses_direct::<f32>(&g), stride == 1);
        }
        check_conv::<f32>(&g, seed, 1.0);
    }

    /// The im2col + GEMM path, which the dispatch no longer takes for f32 3×3 stride-1
    /// convolutions on AVX-512 machines, still agrees with the reference there.
    #[test]
    fn conv_gemm_path_matches_reference_f32(g in geom(), seed in 0u64..1000) {
        check_conv_on::<f32>(&g, seed, 1.0, true);
    }

    /// `element::gemm` (rayon-split) and `gemm_serial` agree with a naive triple loop for
    /// every transposition and `beta`, to `2 (k+1) ε Σ|terms|` (one more term for `beta C`).
    #[test]
    fn gemm_matches_naive_product(m in 1usize..300, k in 1usize..40, n in 1usize..300, ta: bool, tb: bool, seed in 0u64..1000) {
        let a = random_vec(m * k, seed);
        let b = random_vec(k * n, seed + 1);
        let c0 = random_vec(m * n, seed + 2);
        let beta = 0.5;
        let at = |i: usize, p: usize| if ta { a[p * m + i] } else { a[i * k + p] };
        let bt = |p: usize, j: usize| if tb { b[j * k + p] } else { b[p * n + j] };
        let mut want = vec![0.0; m * n];
        let mut s = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                want[i * n + j] = beta * c0[i * n + j] + (0..k).map(|p| at(i, p) * bt(p, j)).sum::<f64>();
                s[i * n + j] = (beta * c0[i * n + j]).abs() + (0..k).map(|p| (at(i, p) * bt(p, j)).abs()).sum::<f64>();
            }
        }
        let mut c = c0.clone();
        on_threads(2, || gemm(m, k, n, &a, ta, &b, tb, beta, &mut c));
        assert_within("gemm", &c, &want, &s, 2.0 * (k + 1) as f64, f64::EPSILON);
        let mut c = c0.clone();
        gemm_serial(m, k, n, &a, ta, &b, tb, beta, &mut c);
        assert_within("gemm_serial", &c, &want, &s, 2.0 * (k + 1) as f64, f64::EPSILON);
    }
}

/// Small images are batched into one GEMM ([`kernels::conv::images_per_gemm`]): at W1's 7×7
/// and 14×14 shapes with batch sizes that leave a partial last group (13 images: groups of
/// 11 + 2 at 7×7, four groups of 3 + 1 at 14×14; 37 images: 11 + 11 + 11 + 4, and weight-gradient
/// chunks of 3 images, each one GEMM), all three passes still agree with the reference to the
/// same rounding bound, in f32 and f64.
#[test]
fn conv_batched_small_images_match_reference() {
    for g in [
        Conv2dGeom::new(13, 16, 7, 7, 8, 3, 3, 1, 1).unwrap(),
        Conv2dGeom::new(13, 8, 14, 14, 8, 3, 3, 1, 1).unwrap(),
        Conv2dGeom::new(13, 8, 14, 14, 8, 3, 3, 2, 1).unwrap(),
        Conv2dGeom::new(13, 16, 7, 7, 16, 1, 1, 1, 0).unwrap(),
        Conv2dGeom::new(37, 8, 7, 7, 8, 3, 3, 1, 1).unwrap(),
    ] {
        assert!(
            kernels::conv::images_per_gemm(&g) > 1,
            "{g:?} is not batched"
        );
        check_conv::<f32>(&g, 21, 1.0);
        check_conv::<f64>(&g, 22, 2.0);
    }
}

/// A bias per image and channel (`n·c_out` values, [`kernels::bias_at`]): the reference adds
/// `b[n, o]` to plane `(n, o)` (checked against the bias-free reference plus the planes added
/// by hand, to the rounding bound), and the direct (3×3 and 1×1), strided and batched small-image paths agree
/// with it to the forward rounding bound, in f32 and f64.
#[test]
fn conv_per_image_bias_matches_reference() {
    for g in [
        Conv2dGeom::new(3, 5, 9, 7, 11, 3, 3, 1, 1).unwrap(),
        Conv2dGeom::new(3, 5, 9, 7, 11, 3, 3, 2, 1).unwrap(),
        Conv2dGeom::new(3, 5, 9, 7, 11, 1, 1, 1, 0).unwrap(),
        Conv2dGeom::new(13, 8, 7, 7, 8, 3, 3, 2, 1).unwrap(),
    ] {
        let c = ConvCase::new(&g, 5);
        let bn = as_f32(&random_vec(g.n * g.c_out, 9)).1;
        let pp = g.h_out() * g.w_out();
        let mut want = vec![0.0; g.y_len()];
        reference::conv2d_forward(&g, &c.x, &c.w, None, &mut want);
        for (k, plane) in want.chunks_exact_mut(pp).enumerate() {
            plane.iter_mut().for_each(|v| *v += bn[k]);
        }
        let mut y = vec![0.0; g.y_len()];
        reference::conv2d_forward(&g, &c.x, &c.w, Some(&bn), &mut y);
        let mut s = vec![0.0; g.y_len()];
        reference::conv2d_forward(&g, &abs(&c.x), &abs(&c.w), Some(&abs(&bn)), &mut s);
        let k = (g.c_in * g.kh * g.kw + 1) as f64;
        // Same terms, the bias added first instead of last: within the f64 bound.
        assert_within(
            "reference per-image bias",
            &y,
            &want,
            &s,
            2.0 * k,
            f64::EPSILON,
        );
        let f = |v: &[f64]| as_f32(v).0;
        let mut got = vec![0f32; g.y_len()];
        kernels::conv2d_forward(&g, &f(&c.x), &f(&c.w), Some(&f(&bn)), &mut got);
        assert_within("per-image bias f32", &got, &y, &s, k, tf(f32::EPSILON));
        let mut got = vec![0f64; g.y_len()];
        kernels::conv2d_forward(&g, &c.x, &c.w, Some(&bn), &mut got);
        assert_within("per-image bias f64", &got, &y, &s, 2.0 * k, f64::EPSILON);
    }
}

/// A residual fused into the convolution (`conv2d_forward_add_alloc`: added to the bias
/// before the products on the direct path, after the convolution elsewhere) equals the
/// reference convolution plus the residual, to the forward bound with one more term, on the
/// direct 3×3 and 1×1 shapes (partial last vectors, rows past the 8-row tile) and the GEMM
/// path, in f32 and f64.
#[test]
fn conv_with_residual_matches_reference_plus_residual() {
    for g in [
        Conv2dGeom::new(3, 5, 9, 7, 11, 3, 3, 1, 1).unwrap(),
        Conv2dGeom::new(2, 19, 7, 7, 9, 1, 1, 1, 0).unwrap(),
        Conv2dGeom::new(3, 5, 9, 7, 11, 3, 3, 2, 1).unwrap(),
    ] {
        let c = ConvCase::new(&g, 11);
        let res = random_vec(g.y_len(), 12);
        let mut want = vec![0.0; g.y_len()];
        reference::conv2d_forward(&g, &c.x, &c.w, Some(&c.b), &mut want);
        let mut s = vec![0.0; g.y_len()];
        reference::conv2d_forward(&g, &abs(&c.x), &abs(&c.w), Some(&abs(&c.b)), &mut s);
        for ((w, s), r) in want.iter_mut().zip(&mut s).zip(&res) {
            *w += r;
            *s += r.abs();
        }
        let k = (g.c_in * g.kh * g.kw + 2) as f64;
        let f = |v: &[f64]| as_f32(v).0;
        let got = kernels::conv::conv2d_forward_add_alloc(
            &g,
            &f(&c.x),
            &f(&c.w),
            Some(&f(&c.b)),
            &f(&res),
        );
        assert_within("residual f32", &got, &want, &s, k, tf(f32::EPSILON));
        let got = kernels::conv::conv2d_forward_add_alloc(&g, &c.x, &c.w, Some(&c.b), &res);
        assert_within("residual f64", &got, &want, &s, 2.0 * k, f64::EPSILON);
    }
}

/// The allocating entry points (`conv2d_forward_alloc`, `conv2d_backward_input_alloc`, which
/// skip the zero fill on the direct path) give the same bits as the in-place kernels, on
/// the direct path and on the GEMM path, so every element of the new buffer was written.
#[test]
fn conv_alloc_variants_equal_in_place_kernels() {
    for g in [
        Conv2dGeom::new(3, 5, 9, 7, 11, 3, 3, 1, 1).unwrap(),
        Conv2dGeom::new(3, 5, 9, 7, 11, 3, 3, 2, 1).unwrap(),
        Conv2dGeom::new(2, 4, 1, 1, 3, 3, 3, 1, 1).unwrap(),
    ] {
        let c = ConvCase::new(&g, 3);
        let f = |v: &[f64]| as_f32(v).0;
        let (x, w, b, dy) = (f(&c.x), f(&c.w), f(&c.b), f(&c.dy));
        let mut y = vec![f32::NAN; g.y_len()];
        kernels::conv2d_forward(&g, &x, &w, Some(&b), &mut y);
        let ya = kernels::conv::conv2d_forward_alloc(&g, &x, &w, Some(&b));
        assert_eq!(bits(&ya), bits(&y), "{g:?} forward");
        let mut dx = vec![f32::NAN; g.x_len()];
        kernels::conv2d_backward_input(&g, &dy, &w, &mut dx);
        let dxa = kernels::conv::conv2d_backward_input_alloc(&g, &dy, &w);
        assert_eq!(bits(&dxa), bits(&dx), "{g:?} input gradient");
    }
}

/// The comparison above has teeth: a "convolution" that flips the kernel (true convolution
/// instead of the cross-correlation that PyTorch and the reference compute) is rejected.
#[test]
fn conv_check_rejects_flipped_kernel() {
    let g = Conv2dGeom::new(2, 3, 6, 5, 4, 3, 3, 1, 1).unwrap();
    let c = ConvCase::new(&g, 7);
    let (y, s) = c.forward(&g);
    let mut flipped = c.w.clone();
    for o in 0..g.c_out * g.c_in {
        flipped[o * 9..o * 9 + 9].reverse();
    }
    let mut got = vec![0.0; g.y_len()];
    kernels::conv2d_forward(&g, &c.x, &flipped, Some(&c.b), &mut got);
    let k = 2.0 * (g.c_in * 9 + 1) as f64;
    let rejected =
        std::panic::catch_unwind(|| assert_within("flipped", &got, &y, &s, k, f64::EPSILON));
    assert!(rejected.is_err(), "a flipped kernel passed the check");
}

fn bits<E: Element>(v: &[E]) -> Vec<u64> {
    v.iter().map(|x| tf(*x).to_bits()).collect()
}

/// Every fast kernel gives bit-identical results on rayon pools of 1 and 2 threads (f32,
/// at sizes that split: 37 images for several weight-gradient chunks, a GEMM above the
/// splitting threshold).
#[test]
fn kernels_are_bit_identical_on_1_and_2_threads() {
    let run = |threads: usize| {
        on_threads(threads, || {
            let mut out: Vec<Vec<u64>> = vec![];
            for g in [
                Conv2dGeom::new(37, 8, 11, 9, 12, 3, 3, 1, 1).unwrap(),
                Conv2dGeom::new(37, 8, 11, 9, 12, 3, 3, 2, 1).unwrap(),
                Conv2dGeom::new(37, 8, 11, 9, 12, 1, 1, 1, 0).unwrap(),
            ] {
                let c = ConvCase::new(&g, 11);
                let f = |v: &[f64]| as_f32(v).0;
                let mut y = vec![0f32; g.y_len()];
                kernels::conv2d_forward(&g, &f(&c.x), &f(&c.w), Some(&f(&c.b)), &mut y);
                let mut dx = vec![0f32; g.x_len()];
                kernels::conv2d_backward_input(&g, &f(&c.dy), &f(&c.w), &mut dx);
                let (mut dw, mut db) = (vec![0f32; g.w_len()], vec![0f32; g.c_out]);
                kernels::conv2d_backward_weight(&g, &f(&c.x), &f(&c.dy), &mut dw, Some(&mut db));
                out.extend([bits(&y), bits(&dx), bits(&dw), bits(&db)]);
            }
            let (m, k, n) = (300, 70, 310);
            let a = as_f32(&random_vec(m * k, 1)).0;
            let b = as_f32(&random_vec(k * n, 2)).0;
            let mut cm = vec![0f32; m * n];
            gemm(m, k, n, &a, false, &b, true, 0.0, &mut cm);
            out.push(bits(&cm));
            let gn = GroupNormGeom::new(5, 32, 49, 8).unwrap();
            let x = as_f32(&random_vec(gn.len(), 3)).0;
            let dy = as_f32(&random_vec(gn.len(), 4)).0;
            let ga = as_f32(&random_vec(32, 5)).0;
            let be = as_f32(&random_vec(32, 6)).0;
            let (mut y, mut mu, mut rs) = (vec![0f32; gn.len()], vec![0f32; 40], vec![0f32; 40]);
            kernels::group_norm_forward(
                &gn,
                Activation::Silu,
                1e-5,
                &x,
                &ga,
                &be,
                &mut y,
                &mut mu,
                &mut rs,
            );
            let (mut dx, mut dg, mut db) = (vec![0f32; gn.len()], vec![0f32; 32], vec![0f32; 32]);
            kernels::group_norm_backward(
                &gn,
                Activation::Silu,
                &x,
                &ga,
                &be,
                &mu,
                &rs,
                &dy,
                &mut dx,
                &mut dg,
                &mut db,
            );
            let mut bg = vec![0f32; 32];
            kernels::bias_grad(&dy, 5, 32, 49, &mut bg);
            out.extend([bits(&y), bits(&dx), bits(&dg), bits(&db), bits(&bg)]);
            // Fused linear layer halves at a size that splits over rows and over columns.
            let (rows, cols) = (600, 128);
            let mut z = as_f32(&random_vec(rows * cols, 7)).0;
            let bias = as_f32(&random_vec(cols, 8)).0;
            let mut y = vec![0f32; rows * cols];
            kernels::linear_act_forward(&mut z, Some(&mut y), cols, Some(&bias), Activation::Silu);
            let mut g = as_f32(&random_vec(rows * cols, 9)).0;
            let mut db = vec![0f32; cols];
            kernels::linear_act_backward(Some(&z), &mut g, cols, Activation::Silu, Some(&mut db));
            out.extend([bits(&z), bits(&y), bits(&g), bits(&db)]);
            // The whole fused layer (row blocks and feature blocks depend on the pool size).
            let geom = kernels::linear::LinearGeom {
                rows: 600,
                inp: 70,
                out: 128,
            };
            let x = as_f32(&random_vec(600 * 70, 10)).0;
            let w = as_f32(&random_vec(128 * 70, 11)).0;
            let (mut z, mut y) = (vec![0f32; 600 * 128], vec![0f32; 600 * 128]);
            kernels::linear::linear_forward(
                geom,
                &x,
                &w,
                Some(&bias),
                Activation::Silu,
                &mut z,
                Some(&mut y),
            );
            let mut g = as_f32(&random_vec(600 * 128, 12)).0;
            let (mut dx, mut dw, mut db) =
                (vec![0f32; 600 * 70], vec![0f32; 128 * 70], vec![0f32; 128]);
            kernels::linear::linear_backward(
                geom,
                &x,
                &w,
                Some(&z),
                Activation::Silu,
                &mut g,
                Some(&mut dx),
                Some(&mut dw),
                Some(&mut db),
            );
            out.extend([
                bits(&z),
                bits(&y),
                bits(&g),
                bits(&dx),
                bits(&dw),
                bits(&db),
            ]);
            out
        })
    };
    let (one, two) = (run(1), run(2));
    assert_eq!(one.len(), two.len());
    for (i, (a, b)) in one.iter().zip(&two).enumerate() {
        assert!(a == b, "output {i} differs between 1 and 2 threads");
    }
}

fn gn_geom() -> impl Strategy<Value = (GroupNormGeom, bool)> {
    (1usize..4, 1usize..5, 1usize..4, 1usize..30, any::<bool>())
        .prop_map(|(n, g, cg, hw, silu)| (GroupNormGeom::new(n, g * cg, hw, g).unwrap(), silu))
}

/// Group-norm inputs with a non-zero mean (offset 0.5) so that centring matters.
fn gn_inputs(g: &GroupNormGeom, seed: u64) -> [Vec<f64>; 4] {
    let x = random_vec(g.len(), seed)
        .iter()
        .map(|v| as_f32(&[v + 0.5]).1[0])
        .collect();
    [
        x,
        as_f32(&random_vec(g.c, seed + 1)).1,
        as_f32(&random_vec(g.c, seed + 2)).1,
        as_f32(&random_vec(g.len(), seed + 3)).1,
    ]
}

/// Error scale of group norm in element type `E` (see the module header): every output is a
/// sum of at most `N·HW + L` terms followed by O(1) operations; the centring `x - μ` scaled
/// by `r = 1/σ` amplifies the error of μ by `κ = r · max|x|`. Returns `(L + N·HW + 16) ε κ`
/// per group, to be multiplied by the magnitude of the terms that make each output.
fn gn_error_scale(g: &GroupNormGeom, x: &[f64], eps: f64) -> Vec<f64> {
    let l = g.channels_per_group() * g.hw;
    x.chunks(l)
        .map(|xs| {
            let m = xs.iter().sum::<f64>() / l as f64;
            let v = xs.iter().map(|a| (a - m).powi(2)).sum::<f64>() / l as f64;
            let kappa = xs.iter().fold(0.0f64, |a, b| a.max(b.abs())) / (v + 1e-5).sqrt();
            (l + g.n * g.hw + 16) as f64 * eps * kappa.max(1.0)
        })
        .collect()
}

fn check_group_norm<E: Element>(g: &GroupNormGeom, silu: bool, seed: u64, kernel_eps: f64) {
    let [x, ga, be, dy] = gn_inputs(g, seed);
    let cv = |v: &[f64]| v.iter().map(|&a| el::<E>(a)).collect::<Vec<E>>();
    let act = if silu {
        Activation::Silu
    } else {
        Activation::Identity
    };
    let eps_norm = 1e-5;
    let (mut y, mut mu, mut rs) = (
        vec![E::zero(); g.len()],
        vec![E::zero(); g.stats_len()],
        vec![E::zero(); g.stats_len()],
    );
    kernels::group_norm_forward(
        g,
        act,
        el::<E>(kernel_eps),
        &cv(&x),
        &cv(&ga),
        &cv(&be),
        &mut y,
        &mut mu,
        &mut rs,
    );
    let mut yr = vec![0.0; g.len()];
    reference::group_norm_forward(
        g.n, g.c, g.hw, g.groups, silu, eps_norm, &x, &ga, &be, &mut yr,
    );
    let scale = gn_error_scale(g, &x, tf(E::epsilon()));
    let l = g.channels_per_group() * g.hw;
    // forward: |Δy| <= 4 scale (|γ| (1 + |x̂|) + |β| + |y|); the terms of one output.
    let sy: Vec<f64> = (0..g.len())
        .map(|i| {
            let ch = (i / g.hw) % g.c;
            4.0 * scale[i / l]
                * (ga[ch].abs() * (1.0 + 3.0 * yr[i].abs().max(1.0)) + be[ch].abs() + yr[i].abs())
        })
        .collect();
    assert_within("gn forward", &y, &yr, &sy, 1.0, 1.0);
    let (mut dx, mut dg, mut db) = (
        vec![E::zero(); g.len()],
        vec![E::zero(); g.c],
        vec![E::zero(); g.c],
    );
    kernels::group_norm_backward(
        g,
        act,
        &cv(&x),
        &cv(&ga),
        &cv(&be),
        &mu,
        &rs,
        &cv(&dy),
        &mut dx,
        &mut dg,
        &mut db,
    );
    let (mut dxr, mut dgr, mut dbr) = (vec![0.0; g.len()], vec![0.0; g.c], vec![0.0; g.c]);
    reference::group_norm_backward(
        g.n, g.c, g.hw, g.groups, silu, eps_norm, &x, &ga, &be, &dy, &mut dxr, &mut dgr, &mut dbr,
    );
    // backward: dx = r (dx̂ - mean dx̂ - x̂ mean(dx̂ x̂)), terms bounded by
    // r (|dx̂_i| + mean|dx̂| (1 + |x̂_i| max|x̂|)); dγ, dβ: sums of |dz| (1 + |x̂|).
    // |x̂_i| <= √(L-1) for any group (Σ x̂² = L σ²/(σ²+ε) <= L).
    let xhat_max = (l as f64).sqrt();
    let sdx: Vec<f64> = dx
        .iter()
        .enumerate()
        .map(|(i, _)| {
            let grp = i / l;
            let r = 1.0 / {
                let xs = &x[grp * l..(grp + 1) * l];
                let m = xs.iter().sum::<f64>() / l as f64;
                (xs.iter().map(|a| (a - m).powi(2)).sum::<f64>() / l as f64 + 1e-5).sqrt()
            };
            let mabs = dy[grp * l..(grp + 1) * l]
                .iter()
                .map(|d| d.abs())
                .sum::<f64>()
                / l as f64;
            let gmax = ga.iter().fold(0.0f64, |a, b| a.max(b.abs()));
            8.0 * scale[grp] * r * gmax * (dy[i].abs() + mabs * (1.0 + xhat_max * xhat_max)) * 2.0
        })
        .collect();
    assert_within("gn backward dx", &dx, &dxr, &sdx, 1.0, 1.0);
    let sum_abs = |c: usize| -> f64 {
        (0..g.n)
            .map(|n| {
                dy[(n * g.c + c) * g.hw..(n * g.c + c + 1) * g.hw]
                    .iter()
                    .map(|d| d.abs())
                    .sum::<f64>()
            })
            .sum()
    };
    let sg: Vec<f64> = (0..g.c)
        .map(|c| {
            8.0 * scale.iter().fold(0.0f64, |a, &b| a.max(b)) * 1.2 * sum_abs(c) * (1.0 + xhat_max)
        })
        .collect();
    assert_within("gn backward dgamma", &dg, &dgr, &sg, 1.0, 1.0);
    assert_within("gn backward dbeta", &db, &dbr, &sg, 1.0, 1.0);
}

proptest! {
    /// The vectorising forms of the fixed-order sum give the very bits of `lane_sum`
    /// (accumulator `i mod 8`, then the pairwise combination), in f32 where rounding shows
    /// any change of order: group norm's statistics moved to them without changing a result.
    #[test]
    fn lane_sum_forms_give_the_same_bits(len in 0usize..200, seed in 0u64..1000) {
        use scoresde::engine::kernels::reduce::{lane_sum, lane_sum_map, lane_sum_zip, slice_sum};
        let x: Vec<f32> = random_vec(len, seed).iter().map(|&v| (v * 1e3) as f32).collect();
        let y: Vec<f32> = random_vec(len, seed + 1).iter().map(|&v| v as f32).collect();
        let sq = |v: f32| (v - 0.3) * (v - 0.3);
        prop_assert_eq!(lane_sum_map(&x, sq).to_bits(), lane_sum(x.iter().map(|&v| sq(v))).to_bits());
        prop_assert_eq!(lane_sum_map(&x, |v| v).to_bits(), slice_sum(&x).to_bits());
        let prod = |a: f32, b: f32| a * (b - 0.1);
        prop_assert_eq!(
            lane_sum_zip(&x, &y, prod).to_bits(),
            lane_sum(x.iter().zip(&y).map(|(&a, &b)| prod(a, b))).to_bits()
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Fused group norm (+ SiLU) forward and backward agree with the definition (forward)
    /// and the full-Jacobian reference (backward) in f64, within the error scale of
    /// `gn_error_scale`.
    #[test]
    fn group_norm_matches_reference_f64((g, silu) in gn_geom(), seed in 0u64..1000) {
        check_group_norm::<f64>(&g, silu, seed, 1e-5);
    }

    /// The same for the f32 kernel against the f64 reference.
    #[test]
    fn group_norm_matches_reference_f32((g, silu) in gn_geom(), seed in 0u64..1000) {
        check_group_norm::<f32>(&g, silu, seed, 1e-5);
    }

    /// The full-Jacobian reference backward equals central finite differences of the
    /// reference forward: for `L(x, γ, β) = Σ dy·y`, `(L(θ+h) - L(θ-h))/2h` has truncation
    /// error `h² |L'''|/6` (~1e-6·O(10) for h = 1e-3 with inputs of order 1, r <= 10 here)
    /// plus rounding `ε Σ|dy y| / h` (~1e-12); tolerance 1e-4 absolute + 1e-4 relative.
    #[test]
    fn group_norm_reference_backward_matches_finite_differences((g, silu) in gn_geom(), seed in 0u64..1000) {
        let [x, ga, be, dy] = gn_inputs(&g, seed);
        let loss = |x: &[f64], ga: &[f64], be: &[f64]| {
            let mut y = vec![0.0; g.len()];
            reference::group_norm_forward(g.n, g.c, g.hw, g.groups, silu, 1e-5, x, ga, be, &mut y);
            y.iter().zip(&dy).map(|(a, b)| a * b).sum::<f64>()
        };
        let (mut dx, mut dg, mut db) = (vec![0.0; g.len()], vec![0.0; g.c], vec![0.0; g.c]);
        reference::group_norm_backward(g.n, g.c, g.hw, g.groups, silu, 1e-5, &x, &ga, &be, &dy, &mut dx, &mut dg, &mut db);
        // Central differences at h and h/2: the truncation error is c h² + O(h⁴), so
        // (fd(h) − fd(h/2))/3 estimates the error of fd(h/2) (Richardson); we allow twice that
        // estimate plus the rounding term ε·Σ|y·dy|/h of the differenced sums. A fixed tolerance
        // would fail where a group's values nearly coincide (small σ, large third derivative).
        let fd_at = |h: f64, which: usize, i: usize| {
            let (mut a, mut b) = ([x.clone(), ga.clone(), be.clone()], [x.clone(), ga.clone(), be.clone()]);
            a[which][i] += h;
            b[which][i] -= h;
            (loss(&a[0], &a[1], &a[2]) - loss(&b[0], &b[1], &b[2])) / (2.0 * h)
        };
        let h = 1e-3;
        // Σ|y·dy| bounds the magnitude of the terms summed in the loss.
        let scale: f64 = {
            let mut y = vec![0.0; g.len()];
            reference::group_norm_forward(g.n, g.c, g.hw, g.groups, silu, 1e-5, &x, &ga, &be, &mut y);
            y.iter().zip(&dy).map(|(a, b)| (a * b).abs()).sum::<f64>() * g.len() as f64
        };
        let check = |which: usize, i: usize, analytic: f64, what: &str| -> Result<(), TestCaseError> {
            let (f1, f2) = (fd_at(h, which, i), fd_at(h / 2.0, which, i));
            let tol = 2.0 * (f1 - f2).abs() / 3.0 + 64.0 * f64::EPSILON * scale / h;
            prop_assert!((f2 - analytic).abs() <= tol, "{}[{}]: fd {} analytic {} tol {}", what, i, f2, analytic, tol);
            Ok(())
        };
        // groups of size 1 have σ = 0 and x̂ = 0 with r = 1/√ε = 316: skip x there.
        let l = g.channels_per_group() * g.hw;
        for i in (0..g.len()).step_by(7) {
            if l > 1 {
                check(0, i, dx[i], "dx")?;
            }
        }
        for c in 0..g.c {
            check(1, c, dg[c], "dgamma")?;
            check(2, c, db[c], "dbeta")?;
        }
    }

    /// Bias gradient against the reference: sums of N·HW terms, bound `2 N·HW ε Σ|dy|`.
    #[test]
    fn bias_grad_matches_reference(n in 1usize..5, c in 1usize..9, hw in 1usize..200, seed in 0u64..1000) {
        let dy = random_vec(n * c * hw, seed);
        let (mut got, mut want, mut s) = (vec![0.0; c], vec![0.0; c], vec![0.0; c]);
        kernels::bias_grad(&dy, n, c, hw, &mut got);
        reference::bias_grad(&dy, n, c, hw, &mut want);
        reference::bias_grad(&abs(&dy), n, c, hw, &mut s);
        assert_within("bias_grad", &got, &want, &s, 2.0 * (n * hw) as f64, f64::EPSILON);
    }

    /// Nearest upsampling: the forward copies exactly (bit-equal to the reference); the
    /// backward sums 4 terms (bound `2·4 ε Σ|dy|`) and is the adjoint of the forward,
    /// `<U x, v> = <x, Uᵀ v>` to the rounding of two sums of `4 P h w` products.
    #[test]
    fn upsample_matches_reference_and_is_adjoint(planes in 1usize..6, h in 1usize..9, w in 1usize..9, seed in 0u64..1000) {
        let x = random_vec(planes * h * w, seed);
        let v = random_vec(4 * planes * h * w, seed + 1);
        let (mut y, mut yr) = (vec![0.0; v.len()], vec![0.0; v.len()]);
        kernels::upsample_nearest2x_forward(&x, planes, h, w, &mut y);
        reference::upsample_nearest2x_forward(&x, planes, h, w, &mut yr);
        prop_assert_eq!(&y, &yr);
        let (mut dx, mut dxr, mut s) = (vec![0.0; x.len()], vec![0.0; x.len()], vec![0.0; x.len()]);
        kernels::upsample_nearest2x_backward(&v, planes, h, w, &mut dx);
        reference::upsample_nearest2x_backward(&v, planes, h, w, &mut dxr);
        reference::upsample_nearest2x_backward(&abs(&v), planes, h, w, &mut s);
        assert_within("upsample backward", &dx, &dxr, &s, 8.0, f64::EPSILON);
        let lhs: f64 = y.iter().zip(&v).map(|(a, b)| a * b).sum();
        let rhs: f64 = x.iter().zip(&dx).map(|(a, b)| a * b).sum();
        let mag: f64 = y.iter().zip(&v).map(|(a, b)| (a * b).abs()).sum();
        prop_assert!((lhs - rhs).abs() <= 4.0 * v.len() as f64 * f64::EPSILON * mag);
    }

    /// SiLU backward equals the central difference of SiLU forward: truncation
    /// `h² |silu'''|/6 <= h²/6` (|silu'''| < 1) plus rounding `ε |silu| / h`; with h = 1e-4,
    /// tolerance 1e-8 + 1e-11.
    #[test]
    fn silu_backward_matches_finite_differences(xs in prop::collection::vec(-8.0f64..8.0, 1..50)) {
        let dy = vec![1.0; xs.len()];
        let mut d = vec![0.0; xs.len()];
        kernels::silu_backward(&xs, &dy, &mut d);
        let h = 1e-4;
        let (mut p, mut m) = (vec![0.0; xs.len()], vec![0.0; xs.len()]);
        let xp: Vec<f64> = xs.iter().map(|v| v + h).collect();
        let xm: Vec<f64> = xs.iter().map(|v| v - h).collect();
        kernels::silu_forward(&xp, &mut p);
        kernels::silu_forward(&xm, &mut m);
        for i in 0..xs.len() {
            let fd = (p[i] - m[i]) / (2.0 * h);
            prop_assert!((fd - d[i]).abs() <= 1e-8 + 1e-11, "x {}: fd {} analytic {}", xs[i], fd, d[i]);
        }
    }
}

/// The group-norm check has teeth: a kernel run with ε = 1e-3 instead of the reference's
/// 1e-5 (a relative change of about 1.5e-3 in 1/σ for variance ~1/3) is rejected, in f32.
#[test]
fn group_norm_check_rejects_wrong_epsilon() {
    let g = GroupNormGeom::new(2, 16, 25, 4).unwrap();
    let rejected = std::panic::catch_unwind(|| check_group_norm::<f32>(&g, true, 3, 1e-3));
    assert!(rejected.is_err(), "a wrong epsilon passed the check");
}

/// Invalid geometries are typed errors, not panics.
#[test]
fn invalid_geometries_are_errors() {
    use scoresde::Error;
    assert!(matches!(
        Conv2dGeom::new(1, 1, 4, 4, 1, 3, 3, 0, 1),
        Err(Error::InvalidParameter { name: "stride", .. })
    ));
    assert!(matches!(
        Conv2dGeom::new(1, 1, 4, 4, 1, 0, 3, 1, 1),
        Err(Error::InvalidParameter { .. })
    ));
    assert!(matches!(
        Conv2dGeom::new(1, 1, 2, 2, 1, 5, 5, 1, 1),
        Err(Error::Shape(_))
    ));
    assert!(matches!(
        GroupNormGeom::new(1, 30, 4, 8),
        Err(Error::InvalidParameter { name: "groups", .. })
    ));
    assert!(matches!(
        GroupNormGeom::new(1, 32, 4, 0),
        Err(Error::InvalidParameter { name: "groups", .. })
    ));
    assert!(matches!(
        GroupNormGeom::new(1, 32, 0, 8),
        Err(Error::InvalidParameter { name: "hw", .. })
    ));
    assert!(Conv2dGeom::new(64, 32, 28, 28, 32, 3, 3, 1, 1).is_ok());
}

/// The branch-free `exp_f32` is within 4 ε_f32 relative of the f64 `exp` on a dense sweep of
/// its range [-87, 88] (2·10^6 points): the degree-7 Taylor truncation is below 6e-9
/// relative and each of the ~10 roundings adds at most ε/2 relative to intermediate values
/// of size ≤ 1.5 (see the function's comment).
#[test]
fn exp_f32_is_within_4_eps_of_exp() {
    use scoresde::engine::element::exp_f32;
    let steps = 2_000_000;
    let mut worst = 0.0f64;
    for i in 0..=steps {
        let x = (-87.0 + 175.0 * i as f64 / steps as f64) as f32;
        let want = (x as f64).exp();
        let rel = ((exp_f32(x) as f64) - want).abs() / want;
        worst = worst.max(rel);
    }
    assert!(
        worst <= 4.0 * f32::EPSILON as f64,
        "worst relative error {worst:e}"
    );
}

/// Outside the sweep: NaN stays NaN (training's divergence check relies on it, and the
/// vectorised integer conversion must not turn it into a number), the clamp gives
/// `e^-87` and `e^88` for the infinities, and a NaN among finite inputs of a SiLU slice
/// poisons only its own output.
#[test]
fn exp_f32_propagates_nan_and_clamps_infinities() {
    use scoresde::engine::element::exp_f32;
    assert!(exp_f32(f32::NAN).is_nan());
    assert_eq!(exp_f32(f32::NEG_INFINITY), exp_f32(-87.0));
    assert_eq!(exp_f32(f32::INFINITY), exp_f32(88.0));
    assert!(exp_f32(88.0).is_finite() && exp_f32(-87.0) > 0.0);
    let mut x = vec![0.5f32; 37];
    x[20] = f32::NAN;
    let mut y = vec![0f32; 37];
    kernels::silu_forward(&x, &mut y);
    for (i, v) in y.iter().enumerate() {
        assert_eq!(v.is_nan(), i == 20, "silu output {i} = {v}");
    }
}

/// `exp_f32` reads the exponent `n` from the bits of `x log2(e) + 1.5·2^23` instead of casting
/// `n` to an integer; on every 97th f32 of the clamped range [-87, 88] (about 23 million
/// values) and the points just outside it, that gives the bits of the cast formula.
#[test]
fn exp_f32_bit_trick_equals_the_cast() {
    use scoresde::engine::element::exp_f32;
    let cast = |x: f32| {
        let x = x.clamp(-87.0, 88.0);
        let n = (x * std::f32::consts::LOG2_E + 12_582_912.0) - 12_582_912.0;
        let r = (x - n * 0.693_359_4) - n * -2.121_944_4e-4;
        let mut p = 1.0 / 5040.0;
        for c in [
            1.0 / 720.0,
            1.0 / 120.0,
            1.0 / 24.0,
            1.0 / 6.0,
            0.5,
            1.0,
            1.0,
        ] {
            p = p * r + c;
        }
        p * f32::from_bits(((n as i32 + 127) as u32) << 23)
    };
    let mut checked = 0u64;
    for (lo, hi) in [(0u32, 88f32.to_bits()), (1u32 << 31, (-87f32).to_bits())] {
        let mut b = lo;
        while b <= hi {
            let x = f32::from_bits(b);
            assert_eq!(exp_f32(x).to_bits(), cast(x).to_bits(), "x = {x:e}");
            checked += 1;
            b += 97;
        }
    }
    for x in [-87.0f32, 88.0, -1e3, 1e3, -87.5, 88.5, f32::MIN, f32::MAX] {
        assert_eq!(exp_f32(x).to_bits(), cast(x).to_bits(), "x = {x:e}");
    }
    assert!(checked > 20_000_000);
}

/// The twin: the same sweep rejects a degree-5 polynomial (truncation (ln2/2)^6/6! ≈ 2.4e-6
/// relative, 20 ε), so the 4 ε bound discriminates.
#[test]
fn exp_check_rejects_degree_5_polynomial() {
    let exp5 = |x: f32| {
        let n = (x * std::f32::consts::LOG2_E).round();
        let r = (x - n * 0.693_359_4) - n * -2.121_944_4e-4;
        let p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r / 120.0))));
        p * 2f32.powi(n as i32)
    };
    let worst = (0..=20_000)
        .map(|i| -10.0 + 20.0 * i as f64 / 20_000.0)
        .map(|x| {
            ((exp5(x as f32) as f64) - (x as f32 as f64).exp()).abs() / (x as f32 as f64).exp()
        })
        .fold(0.0f64, f64::max);
    assert!(
        worst > 4.0 * f32::EPSILON as f64,
        "degree 5 passed: {worst:e}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// f32 SiLU forward and backward (AVX2 and portable variants) are bit-identical to each
    /// other and within bound of the f64 reference formulas `z/(1+e^{-z})` and
    /// `σ(1 + z(1-σ))`: the exp error 4ε propagates through `1/(1+e)` with factor ≤ 1, plus
    /// ≤ 4 more roundings, so |Δ| <= 12 ε (|silu(z)| + |z| σ(z)(1-σ(z)) + ...) ≤ 12 ε (|z| + 1).
    #[test]
    fn silu_f32_variants_agree_and_match_f64(xs in prop::collection::vec(-90.0f32..90.0, 1..3000)) {
        let dy: Vec<f32> = xs.iter().map(|v| 1.0 - v / 100.0).collect();
        let n = xs.len();
        let (mut a, mut b, mut da, mut db) = (vec![0f32; n], vec![0f32; n], vec![0f32; n], vec![0f32; n]);
        kernels::activation::silu_forward_with(&xs, &mut a, true);
        kernels::activation::silu_forward_with(&xs, &mut b, false);
        kernels::activation::silu_backward_with(&xs, &dy, &mut da, true);
        kernels::activation::silu_backward_with(&xs, &dy, &mut db, false);
        prop_assert_eq!(bits(&a), bits(&b));
        prop_assert_eq!(bits(&da), bits(&db));
        for i in 0..n {
            let z = xs[i] as f64;
            let s = 1.0 / (1.0 + (-z).exp());
            let tol = 12.0 * f32::EPSILON as f64 * (z.abs() + 1.0);
            prop_assert!((a[i] as f64 - z * s).abs() <= tol, "silu({}) = {} vs {}", z, a[i], z * s);
            let d = dy[i] as f64 * s * (1.0 + z * (1.0 - s));
            prop_assert!((da[i] as f64 - d).abs() <= tol * (dy[i] as f64).abs(), "silu'({})", z);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// The AVX2 + FMA group-norm kernels (forward and backward, identity and SiLU) give the
    /// same bits as the portable code: the same operations in the same order, and Rust never
    /// contracts `a * b + c` into an FMA. Together with `group_norm_matches_reference_f32`
    /// (which runs the AVX2 variant where the CPU has it) this ties both variants to the
    /// reference. On a CPU without AVX2 both calls run the portable code.
    #[test]
    fn group_norm_simd_and_portable_are_bit_identical((g, silu) in gn_geom(), seed in 0u64..1000) {
        let [x, ga, be, dy] = gn_inputs(&g, seed);
        let f = |v: &[f64]| as_f32(v).0;
        let (x, ga, be, dy) = (f(&x), f(&ga), f(&be), f(&dy));
        let act = if silu { Activation::Silu } else { Activation::Identity };
        let run = |simd: bool| {
            let (mut y, mut mu, mut rs) = (vec![0f32; g.len()], vec![0f32; g.stats_len()], vec![0f32; g.stats_len()]);
            kernels::group_norm::group_norm_forward_with(&g, act, 1e-5, &x, &ga, &be, &mut y, &mut mu, &mut rs, simd);
            let (mut dx, mut dg, mut db) = (vec![0f32; g.len()], vec![0f32; g.c], vec![0f32; g.c]);
            kernels::group_norm::group_norm_backward_with(&g, act, &x, &ga, &be, &mu, &rs, &dy, &mut dx, &mut dg, &mut db, simd);
            [bits(&y), bits(&mu), bits(&rs), bits(&dx), bits(&dg), bits(&db)]
        };
        prop_assert_eq!(run(true), run(false));
    }
}

/// Rows × columns of a fused linear layer, sizes reaching both the serial and the parallel
/// paths (the kernels split at 2^15 elements and 64 columns).
fn linear_geom() -> impl Strategy<Value = (usize, usize, bool, bool)> {
    (1usize..400, 1usize..140, any::<bool>(), any::<bool>())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// The fused linear-layer halves against the reference. In f64 `exp_fast` is `exp`, and
    /// fast and reference kernels evaluate the same formulas in the same order (the bias sum
    /// is one running sum over rows in both), so they agree bit for bit, SIMD or not.
    #[test]
    fn linear_act_matches_reference_f64((rows, cols, silu, with_bias) in linear_geom(), seed in 0u64..1000) {
        let act = if silu { Activation::Silu } else { Activation::Identity };
        let z0 = random_vec(rows * cols, seed).iter().map(|v| 4.0 * v).collect::<Vec<_>>();
        let bias = random_vec(cols, seed + 1);
        let dy = random_vec(rows * cols, seed + 2);
        let b = with_bias.then_some(&bias[..]);
        let want = reference::linear_act_forward(&z0, cols, b, act);
        let s: Vec<f64> = reference::linear_act_forward(&z0, cols, b, Activation::Identity);
        let (want_dz, want_db) = reference::linear_act_backward(&s, &dy, cols, act);
        for simd in [true, false] {
            let mut z = z0.clone();
            let mut y = vec![0.0; z.len()];
            kernels::linear::linear_act_forward_with(&mut z, silu.then_some(&mut y[..]), cols, b, act, simd);
            let got = if silu { &y } else { &z };
            prop_assert_eq!(bits(got), bits(&want));
            prop_assert_eq!(bits(&z), bits(&s));
            let mut g = dy.clone();
            let mut db = vec![0.0; cols];
            kernels::linear::linear_act_backward_with(Some(&z), &mut g, cols, act, Some(&mut db), simd);
            prop_assert_eq!(bits(&g), bits(&want_dz));
            prop_assert_eq!(bits(&db), bits(&want_db));
        }
    }

    /// In f32 the SIMD and portable variants agree bit for bit, and both are within rounding
    /// bounds of the f64 reference on the same (f32) inputs. Forward: `fl(z + b)` is off by
    /// `u|s|`, which SiLU (slope at most 1.1) carries over, plus the SiLU bound `12 ε (|s| + 1)`
    /// of `silu_f32_variants_agree_and_match_f64`: at most `13 ε (|s| + 1)`. Backward: the
    /// same test's bound `12 ε (|z| + 1) |dy|` per element, and the bias gradient within the sum
    /// bound `2 K ε Σ|dz|` (K = rows) of the exact sum of the f32 `dz` it adds.
    #[test]
    fn linear_act_f32_variants_agree_and_match_f64((rows, cols, silu, with_bias) in linear_geom(), seed in 0u64..1000) {
        let act = if silu { Activation::Silu } else { Activation::Identity };
        let (z32, z64) = as_f32(&random_vec(rows * cols, seed).iter().map(|v| 20.0 * v).collect::<Vec<_>>());
        let (b32, b64) = as_f32(&random_vec(cols, seed + 1));
        let (dy32, dy64) = as_f32(&random_vec(rows * cols, seed + 2));
        let eps = f32::EPSILON as f64;
        let mut outs = vec![];
        for simd in [true, false] {
            let mut z = z32.clone();
            let mut y = vec![0f32; z.len()];
            kernels::linear::linear_act_forward_with(&mut z, silu.then_some(&mut y[..]), cols, with_bias.then_some(&b32[..]), act, simd);
            let y = if silu { y } else { z.clone() };
            let mut g = dy32.clone();
            let mut db = vec![0f32; cols];
            kernels::linear::linear_act_backward_with(Some(&z), &mut g, cols, act, Some(&mut db), simd);
            outs.push([bits(&y), bits(&z), bits(&g), bits(&db)]);
            let s = reference::linear_act_forward(&z64, cols, with_bias.then_some(&b64[..]), Activation::Identity);
            let want = reference::linear_act_forward(&z64, cols, with_bias.then_some(&b64[..]), act);
            for i in 0..y.len() {
                let tol = 13.0 * eps * (s[i].abs() + 1.0);
                prop_assert!((y[i] as f64 - want[i]).abs() <= tol, "y[{}] = {} vs {}", i, y[i], want[i]);
            }
            let zf: Vec<f64> = z.iter().map(|&v| v as f64).collect();
            let (want_dz, _) = reference::linear_act_backward(&zf, &dy64, cols, act);
            for i in 0..g.len() {
                let tol = 12.0 * eps * (zf[i].abs() + 1.0) * dy64[i].abs();
                prop_assert!((g[i] as f64 - want_dz[i]).abs() <= tol, "dz[{}] = {} vs {}", i, g[i], want_dz[i]);
            }
            let gf: Vec<f64> = g.iter().map(|&v| v as f64).collect();
            let (_, exact_db) = reference::linear_act_backward(&zf, &gf, cols, Activation::Identity);
            let (_, abs_db) = reference::linear_act_backward(&zf, &abs(&gf), cols, Activation::Identity);
            for j in 0..cols {
                let tol = 2.0 * rows as f64 * eps * abs_db[j];
                prop_assert!((db[j] as f64 - exact_db[j]).abs() <= tol, "db[{}]", j);
            }
        }
        prop_assert_eq!(&outs[0], &outs[1]);
    }
}

/// `C = A B` for row-major `m × k` and `k × n` (f64, naive).
fn naive_matmul(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
        }
    }
    c
}

/// The transpose of a row-major `r × c` matrix.
fn transpose(a: &[f64], r: usize, c: usize) -> Vec<f64> {
    (0..c * r).map(|i| a[(i % r) * c + i / r]).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// The whole fused layer (`linear_forward`, `linear_backward`) in f64 against the naive
    /// products plus the reference pointwise halves. The products are sums of `k` terms in a
    /// different order, so within `2 k ε Σ|terms|` (module header); `z` then passes through
    /// the pointwise half (SiLU's slope is below 1.1, so `y` is within 1.1 times that plus a
    /// few roundings of `|y|`), and `dz`, fed from a `z` that is off by that much, is compared
    /// with the bound of the derivative's Lipschitz constant (|silu''| <= 0.5) times it.
    /// `dx`, `dW` and `db` are then checked against products of the kernel's own `dz`. Half
    /// the cases have 800-900 rows, enough for the parallel path when `inp · out` is large.
    #[test]
    fn linear_layer_matches_naive_f64(rows in prop_oneof![1usize..90, 800usize..900], inp in 1usize..40, out in 1usize..70, silu in any::<bool>(), seed in 0u64..1000) {
        let act = if silu { Activation::Silu } else { Activation::Identity };
        let geom = kernels::linear::LinearGeom { rows, inp, out };
        let x = random_vec(rows * inp, seed);
        let w = random_vec(out * inp, seed + 1);
        let b = random_vec(out, seed + 2);
        let dy = random_vec(rows * out, seed + 3);
        let eps = f64::EPSILON;
        let (mut z, mut y) = (vec![0.0; rows * out], vec![0.0; rows * out]);
        kernels::linear::linear_forward(geom, &x, &w, Some(&b), act, &mut z, silu.then_some(&mut y[..]));
        let y = if silu { y } else { z.clone() };
        let wt = transpose(&w, out, inp);
        let zw = naive_matmul(&x, &wt, rows, inp, out);
        let zabs = naive_matmul(&abs(&x), &abs(&wt), rows, inp, out);
        let want_z = reference::linear_act_forward(&zw, out, Some(&b), Activation::Identity);
        let want_y = reference::linear_act_forward(&zw, out, Some(&b), act);
        for i in 0..z.len() {
            let tz = 2.0 * inp as f64 * eps * zabs[i] + 2.0 * eps * want_z[i].abs();
            prop_assert!((z[i] - want_z[i]).abs() <= tz, "z[{}]", i);
            let ty = 1.1 * tz + 8.0 * eps * (want_y[i].abs() + 1.0);
            prop_assert!((y[i] - want_y[i]).abs() <= ty, "y[{}]", i);
        }
        let mut g = dy.clone();
        let (mut dx, mut dw, mut db) = (vec![0.0; rows * inp], vec![0.0; out * inp], vec![0.0; out]);
        kernels::linear::linear_backward(geom, &x, &w, Some(&z), act, &mut g, Some(&mut dx), Some(&mut dw), Some(&mut db));
        // dz from the kernel's own z: the pointwise half is exact against the reference in f64.
        let (want_dz, want_db) = reference::linear_act_backward(&z, &dy, out, act);
        prop_assert_eq!(bits(&g), bits(&want_dz));
        prop_assert_eq!(bits(&db), bits(&want_db));
        let want_dx = naive_matmul(&g, &w, rows, out, inp);
        let abs_dx = naive_matmul(&abs(&g), &abs(&w), rows, out, inp);
        for i in 0..dx.len() {
            prop_assert!((dx[i] - want_dx[i]).abs() <= 2.0 * out as f64 * eps * abs_dx[i], "dx[{}]", i);
        }
        let gt = transpose(&g, rows, out);
        let want_dw = naive_matmul(&gt, &x, out, rows, inp);
        let abs_dw = naive_matmul(&abs(&gt), &abs(&x), out, rows, inp);
        for i in 0..dw.len() {
            prop_assert!((dw[i] - want_dw[i]).abs() <= 2.0 * rows as f64 * eps * abs_dw[i], "dW[{}]", i);
        }
    }
}

/// The branch-free `sin_cos` against the standard library's `sin` and `cos` (within one ulp,
/// ≤ ε, of the exact values): |Δ| <= 6 ε (the kernel's bound, module `trig`) + ε, on a dense
/// sweep of [-2000, 2000] (beyond the time embeddings' 1000), the points k π/4 where the
/// reduction switches quadrant, and random arguments up to `MAX_ARG`; SIMD and portable
/// loops agree bit for bit.
#[test]
fn sin_cos_matches_std() {
    use scoresde::engine::kernels::trig::{sin_cos, sin_cos_slice, MAX_ARG};
    let mut xs: Vec<f64> = (0..=1_000_000)
        .map(|i| -2000.0 + 4000.0 * i as f64 / 1e6)
        .collect();
    for k in (-3000i32..=3000).filter(|&k| k != 0) {
        let c = k as f64 * std::f64::consts::FRAC_PI_4;
        xs.extend([
            c,
            f64::from_bits(c.to_bits() + 1),
            f64::from_bits(c.to_bits().wrapping_sub(1)),
        ]);
    }
    let mut r = ChaCha8Rng::seed_from_u64(3);
    xs.extend((0..100_000).map(|_| (r.random::<f64>() * 2.0 - 1.0) * MAX_ARG));
    let (mut s, mut c) = (vec![0.0; xs.len()], vec![0.0; xs.len()]);
    sin_cos_slice(&xs, &mut s, &mut c);
    let tol = 7.0 * f64::EPSILON;
    for (i, &x) in xs.iter().enumerate() {
        let (ps, pc) = sin_cos(x);
        assert_eq!(
            (ps.to_bits(), pc.to_bits()),
            (s[i].to_bits(), c[i].to_bits())
        );
        let e = (s[i] - x.sin()).abs().max((c[i] - x.cos()).abs());
        assert!(
            e <= tol,
            "x = {x:e}: sin {} vs {}, cos {} vs {}",
            s[i],
            x.sin(),
            c[i],
            x.cos()
        );
    }
}

/// The sinusoidal embedding in f32 equals the standard library's `sin`/`cos` rounded to f32
/// up to one f32 ulp (the two f64 values differ by at most 7 ε_f64, so they round to different
/// f32 only when within that of a rounding boundary), and almost always exactly.
#[test]
fn sinusoidal_embedding_matches_std_sin_cos() {
    let t: Vec<f64> = (0..4096)
        .map(|i| 1000.0 * (i as f64 + 0.5) / 4096.0)
        .collect();
    let e = scoresde::engine::sinusoidal_embedding::<f32>(&t, 16).unwrap();
    let half = 8;
    let freqs: Vec<f64> = (0..half)
        .map(|k| (-(10000f64.ln()) * k as f64 / (half - 1) as f64).exp())
        .collect();
    let mut differ = 0;
    for (i, &ti) in t.iter().enumerate() {
        for (k, f) in freqs.iter().enumerate() {
            for (got, want) in [
                (e.as_slice()[i * 16 + k], (ti * f).sin() as f32),
                (e.as_slice()[i * 16 + half + k], (ti * f).cos() as f32),
            ] {
                let ulps = (got.to_bits() as i64 - want.to_bits() as i64).abs();
                assert!(ulps <= 1, "t = {ti}, f = {f}: {got} vs {want}");
                differ += (ulps != 0) as usize;
            }
        }
    }
    assert!(differ <= 4, "{differ} of 65536 entries differ");
}
