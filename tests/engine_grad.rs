//! Gradient checks: every op's analytic (reverse-mode) gradient against central finite
//! differences in f64, on random shapes and values.
//!
//! # The check and its tolerance
//! For an op `y = f(x_1, ..., x_k)` we fix a random cotangent `w` (entries in [-1, 1]) and
//! compare the vector-Jacobian product `w^T J` from `Graph::backward_with` with the central
//! difference of the scalar `L(x) = sum_i w_i y_i(x)`, computed from forward values only (an
//! inference graph, no tape), one input coordinate at a time:
//!
//! `D(h) = (L(x + h e_j) - L(x - h e_j)) / 2h = dL/dx_j + h^2/6 L'''(ξ)` for some `ξ` within
//! `h` of `x_j` (Taylor with remainder). Evaluating `L` in f64 rounds it by at most
//! `c ε S`, where `S = sum_i |w_i y_i| + 1` bounds the terms summed and `c = 128` bounds the
//! number of roundings per term along the short op chains tested (ε = 2^-52), which enters
//! `D(h)` divided by `h`. So
//!
//! `|D(h) - dL/dx_j| <= h^2/6 M_3 + c ε S / h`.
//!
//! `M_3` is bounded from the function itself: the third central difference with a coarser step
//! `H = 1e-2`, `T = (L(x+2H) - 2L(x+H) + 2L(x-H) - L(x-2H)) / 2H^3 = L'''(x) + O(H^2)`, and
//! `M_3 = 4|T| + 1` (the factor covers the variation of `L'''` between `x` and `ξ`, which is
//! `h = 1e-4` away, and the `O(H^2)` error of `T`; the `+1` a floor for points where
//! `L'''` vanishes). With `h = 1e-4` the tolerance is about `2e-9 (1 + 4|T|) + 1.4e-10 S`:
//! gradients of order one are checked to about eight digits. `checker_rejects_a_gradient_off_by_one_part_per_million`
//! shows that a relative error of 1e-6 in one entry is caught.
//!
//! Functions with kinks (relu) are tested only at points farther than `2H` from the kink.

use ndarray::{ArrayD, IxDyn};
use proptest::prelude::*;
use rand::Rng;
use scoresde::engine::kernels::Activation;
use scoresde::engine::{Graph, Tensor};
use scoresde::rng;

const H: f64 = 1e-4;
const H3: f64 = 1e-2;
const C_ROUND: f64 = 128.0;

type Fwd = dyn Fn(&mut Graph<f64>, &[Tensor<f64>]) -> Tensor<f64>;

/// A random array with entries uniform in `[lo, hi]`.
fn rand_array(r: &mut rng::Rng, shape: &[usize], lo: f64, hi: f64) -> ArrayD<f64> {
    let n: usize = shape.iter().product();
    let v = (0..n).map(|_| lo + (hi - lo) * r.random::<f64>()).collect();
    ArrayD::from_shape_vec(IxDyn(shape), v).unwrap()
}

/// `L(x) = sum_i w_i f(x)_i`, forward only.
fn loss(f: &Fwd, xs: &[ArrayD<f64>], w: &ArrayD<f64>) -> (f64, f64) {
    let mut g = Graph::inference();
    let ts: Vec<_> = xs.iter().map(|x| Tensor::constant(x.clone())).collect();
    let y = f(&mut g, &ts);
    assert_eq!(y.shape(), w.shape());
    let mut l = 0.0;
    let mut s = 1.0;
    for (a, b) in y.as_slice().iter().zip(w.iter()) {
        l += a * b;
        s += (a * b).abs();
    }
    (l, s)
}

/// Analytic gradients of `sum w_i f(x)_i` with respect to every input.
fn analytic(f: &Fwd, xs: &[ArrayD<f64>], w: &ArrayD<f64>) -> Vec<ArrayD<f64>> {
    let mut g = Graph::new();
    let ts: Vec<_> = xs.iter().map(|x| g.leaf(x.clone())).collect();
    let y = f(&mut g, &ts);
    let grads = g.backward_with(&y, w.clone()).unwrap();
    ts.iter()
        .zip(xs)
        .map(|(t, x)| {
            grads
                .wrt(t)
                .cloned()
                .unwrap_or_else(|| ArrayD::zeros(x.raw_dim()))
        })
        .collect()
}

/// Compares `grads` with central differences; `Err` names the worst entry.
fn compare(
    f: &Fwd,
    xs: &[ArrayD<f64>],
    w: &ArrayD<f64>,
    grads: &[ArrayD<f64>],
) -> Result<f64, String> {
    let mut worst: f64 = 0.0;
    for (i, x) in xs.iter().enumerate() {
        assert_eq!(grads[i].shape(), x.shape(), "gradient shape of input {i}");
        for j in 0..x.len() {
            let at = |d: f64| {
                let mut ys = xs.to_vec();
                ys[i].as_slice_mut().unwrap()[j] += d;
                loss(f, &ys, w)
            };
            let ((lp, s), (lm, _)) = (at(H), at(-H));
            let fd = (lp - lm) / (2.0 * H);
            let t3 = (at(2.0 * H3).0 - 2.0 * at(H3).0 + 2.0 * at(-H3).0 - at(-2.0 * H3).0)
                / (2.0 * H3 * H3 * H3);
            let tol = H * H / 6.0 * (4.0 * t3.abs() + 1.0) + C_ROUND * f64::EPSILON * s / H;
            let an = grads[i].as_slice().unwrap()[j];
            let ratio = (an - fd).abs() / tol;
            if ratio > 1.0 {
                return Err(format!(
                    "input {i} entry {j}: analytic {an:e}, finite difference {fd:e}, tolerance {tol:e}"
                ));
            }
            worst = worst.max(ratio);
        }
    }
    Ok(worst)
}

/// The full check: `f` on `xs` with a cotangent drawn from `seed`.
fn check(seed: u64, xs: Vec<ArrayD<f64>>, f: &Fwd) {
    let mut r = rng::stream(seed, 99);
    let mut g = Graph::inference();
    let ts: Vec<_> = xs.iter().map(|x| Tensor::constant(x.clone())).collect();
    let shape = f(&mut g, &ts).shape().to_vec();
    let w = rand_array(&mut r, &shape, -1.0, 1.0);
    let grads = analytic(f, &xs, &w);
    if let Err(e) = compare(f, &xs, &w, &grads) {
        panic!("gradient check failed: {e}");
    }
}

/// The smallest variance over `blocks` equal contiguous blocks of `x` (the groups a group or
/// layer norm normalises over, in standard layout).
fn min_block_variance(x: &ArrayD<f64>, blocks: usize) -> f64 {
    let v = x.as_slice().expect("standard layout");
    v.chunks(v.len() / blocks)
        .map(|b| {
            let m = b.iter().sum::<f64>() / b.len() as f64;
            b.iter().map(|y| (y - m) * (y - m)).sum::<f64>() / b.len() as f64
        })
        .fold(f64::INFINITY, f64::min)
}

fn cfg() -> ProptestConfig {
    ProptestConfig {
        cases: 6,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Inputs for a unary op on `[-2, 2]` (or `[0.5, 2]` when `positive`).
fn unary_case(seed: u64, shape: &[usize], positive: bool) -> Vec<ArrayD<f64>> {
    let mut r = rng::seeded(seed);
    let (lo, hi) = if positive { (0.5, 2.0) } else { (-2.0, 2.0) };
    vec![rand_array(&mut r, shape, lo, hi)]
}

proptest! {
    #![proptest_config(cfg())]

    /// Every entry of the unary table (neg, shift, scale, exp, log, sqrt, pow, sigmoid, tanh,
    /// silu) has the derivative its backward rule uses.
    #[test]
    fn unary_ops_match_finite_differences(seed in any::<u64>(), a in 1usize..4, b in 1usize..5, c in -2.0f64..3.0) {
        let s = [a, b];
        check(seed, unary_case(seed, &s, false), &|g, x| g.neg(&x[0]));
        check(seed, unary_case(seed, &s, false), &move |g, x| g.add_scalar(&x[0], c));
        check(seed, unary_case(seed, &s, false), &move |g, x| g.mul_scalar(&x[0], c));
        check(seed, unary_case(seed, &s, false), &|g, x| g.exp(&x[0]));
        check(seed, unary_case(seed, &s, true), &|g, x| g.log(&x[0]));
        check(seed, unary_case(seed, &s, true), &|g, x| g.sqrt(&x[0]));
        check(seed, unary_case(seed, &s, true), &move |g, x| g.powf(&x[0], c));
        check(seed, unary_case(seed, &s, false), &|g, x| g.sigmoid(&x[0]));
        check(seed, unary_case(seed, &s, false), &|g, x| g.tanh(&x[0]));
        check(seed, unary_case(seed, &s, false), &|g, x| g.silu(&x[0]));
    }

    /// relu away from its kink (|x| >= 0.1 > 2H).
    #[test]
    fn relu_matches_finite_differences_away_from_zero(seed in any::<u64>(), n in 1usize..10) {
        let mut x = unary_case(seed, &[n], false);
        x[0].mapv_inplace(|v| if v.abs() < 0.1 { v.signum() * 0.1 + v } else { v });
        check(seed, x, &|g, x| g.relu(&x[0]));
    }

    /// Broadcasting add, sub, mul, div: the gradient of a broadcast operand is the sum over
    /// the broadcast axes. Shapes include the block broadcasts of the fast path (a bias `[m]`
    /// against `[n, m]`, `[n, 1]` against `[n, m]`, a time embedding `[n, m, 1, 1]` against
    /// `[n, m, 2, 3]`) and one that is not (`[1, 1, m]`, which also adds an axis).
    #[test]
    fn binary_ops_with_broadcasting_match_finite_differences(seed in any::<u64>(), n in 1usize..4, m in 1usize..4, kind in 0usize..5) {
        let mut r = rng::seeded(seed);
        let (a_shape, b_shape): (Vec<usize>, Vec<usize>) = match kind {
            0 => (vec![n, m], vec![n, m]),
            1 => (vec![n, m], vec![m]),
            2 => (vec![n, m], vec![n, 1]),
            3 => (vec![n, m, 2, 3], vec![n, m, 1, 1]),
            _ => (vec![n, m], vec![1, 1, m]),
        };
        let a = rand_array(&mut r, &a_shape, -2.0, 2.0);
        let b = rand_array(&mut r, &b_shape, 0.5, 2.0);
        let xs = vec![a, b];
        check(seed, xs.clone(), &|g, x| g.add(&x[0], &x[1]).unwrap());
        check(seed, xs.clone(), &|g, x| g.sub(&x[0], &x[1]).unwrap());
        check(seed, xs.clone(), &|g, x| g.mul(&x[0], &x[1]).unwrap());
        check(seed, xs.clone(), &|g, x| g.div(&x[0], &x[1]).unwrap());
        // The broadcast operand on the left.
        let ys = vec![xs[1].clone(), xs[0].mapv(|v| v.abs() + 0.5)];
        check(seed, ys, &|g, x| g.div(&x[0], &x[1]).unwrap());
    }

    /// A tensor used twice (`x * x`, `x + x`) accumulates both contributions.
    #[test]
    fn reused_tensor_accumulates_gradients(seed in any::<u64>(), n in 1usize..6) {
        check(seed, unary_case(seed, &[n], false), &|g, x| {
            let y = g.mul(&x[0], &x[0]).unwrap();
            g.add(&y, &x[0]).unwrap()
        });
    }

    /// sum and mean over random axis sets, with and without keepdim.
    #[test]
    fn sum_and_mean_match_finite_differences(seed in any::<u64>(), a in 1usize..4, b in 1usize..4, c in 1usize..4, mask in 1usize..8, keep in any::<bool>()) {
        let axes: Vec<usize> = (0..3).filter(|i| mask & (1 << i) != 0).collect();
        let x = unary_case(seed, &[a, b, c], false);
        let ax = axes.clone();
        check(seed, x.clone(), &move |g, x| g.sum(&x[0], &ax, keep).unwrap());
        check(seed, x.clone(), &move |g, x| g.mean(&x[0], &axes, keep).unwrap());
        check(seed, x.clone(), &|g, x| g.sum_all(&x[0]));
        check(seed, x, &|g, x| g.mean_all(&x[0]));
    }

    /// softmax along a random axis.
    #[test]
    fn softmax_matches_finite_differences(seed in any::<u64>(), a in 1usize..4, b in 1usize..5, axis in 0usize..2) {
        check(seed, unary_case(seed, &[a, b], false), &move |g, x| g.softmax(&x[0], axis).unwrap());
    }

    /// reshape, permute, transpose, narrow and concat move gradients back unchanged.
    #[test]
    fn shape_ops_match_finite_differences(seed in any::<u64>(), a in 1usize..4, b in 1usize..4, c in 1usize..4, axis in 0usize..3) {
        let x = unary_case(seed, &[a, b, c], false);
        check(seed, x.clone(), &move |g, x| g.reshape(&x[0], &[c, a * b]).unwrap());
        check(seed, x.clone(), &|g, x| g.permute(&x[0], &[2, 0, 1]).unwrap());
        check(seed, x.clone(), &|g, x| g.transpose(&x[0], 0, 2).unwrap());
        let len = x[0].shape()[axis];
        check(seed, x.clone(), &move |g, x| g.narrow(&x[0], axis, len / 2, len - len / 2).unwrap());
        let mut r = rng::seeded(seed ^ 1);
        let mut s2 = vec![a, b, c];
        s2[axis] += 1;
        let y = rand_array(&mut r, &s2, -2.0, 2.0);
        check(seed, vec![x[0].clone(), y], &move |g, x| g.concat(&[&x[0], &x[1], &x[0]], axis).unwrap());
    }

    /// matmul in 2-D and batched 3-D with every combination of transposition flags, and linear.
    #[test]
    fn matmul_matches_finite_differences(seed in any::<u64>(), bt in 1usize..3, m in 1usize..4, k in 1usize..4, n in 1usize..4, ta in any::<bool>(), tb in any::<bool>()) {
        let mut r = rng::seeded(seed);
        let sa = if ta { [k, m] } else { [m, k] };
        let sb = if tb { [n, k] } else { [k, n] };
        let a = rand_array(&mut r, &sa, -2.0, 2.0);
        let b = rand_array(&mut r, &sb, -2.0, 2.0);
        check(seed, vec![a, b], &move |g, x| g.matmul_t(&x[0], &x[1], ta, tb).unwrap());
        let a3 = rand_array(&mut r, &[bt, sa[0], sa[1]], -2.0, 2.0);
        let b3 = rand_array(&mut r, &[bt, sb[0], sb[1]], -2.0, 2.0);
        check(seed, vec![a3, b3], &move |g, x| g.matmul_t(&x[0], &x[1], ta, tb).unwrap());
        let x = rand_array(&mut r, &[bt, m, k], -2.0, 2.0);
        let w = rand_array(&mut r, &[n, k], -1.0, 1.0);
        let bias = rand_array(&mut r, &[n], -1.0, 1.0);
        check(seed, vec![x, w, bias], &|g, x| g.linear(&x[0], &x[1], Some(&x[2])).unwrap());
    }

    /// The fused linear layer `act(x Wᵀ + b)` (identity and SiLU, with and without bias, on
    /// 2-D and 3-D inputs) in all three arguments.
    #[test]
    fn linear_act_matches_finite_differences(seed in any::<u64>(), bt in 1usize..3, m in 1usize..4, k in 1usize..4, n in 1usize..4, silu in any::<bool>(), three_d in any::<bool>()) {
        let mut r = rng::seeded(seed);
        let act = if silu { Activation::Silu } else { Activation::Identity };
        let x = if three_d {
            rand_array(&mut r, &[bt, m, k], -2.0, 2.0)
        } else {
            rand_array(&mut r, &[m, k], -2.0, 2.0)
        };
        let w = rand_array(&mut r, &[n, k], -1.0, 1.0);
        let bias = rand_array(&mut r, &[n], -1.0, 1.0);
        check(seed, vec![x.clone(), w.clone(), bias], &move |g, x| g.linear_act(&x[0], &x[1], Some(&x[2]), act).unwrap());
        check(seed, vec![x, w], &move |g, x| g.linear_act(&x[0], &x[1], None, act).unwrap());
    }

    /// conv2d with random kernel size, stride and padding, without bias, with a bias per
    /// channel and with one per image and channel.
    #[test]
    fn conv2d_matches_finite_differences(seed in any::<u64>(), n in 1usize..3, ci in 1usize..3, co in 1usize..3, h in 3usize..6, w in 3usize..6, k in 1usize..4, stride in 1usize..3, pad in 0usize..2) {
        let mut r = rng::seeded(seed);
        let x = rand_array(&mut r, &[n, ci, h, w], -2.0, 2.0);
        let wt = rand_array(&mut r, &[co, ci, k, k], -1.0, 1.0);
        let b = rand_array(&mut r, &[co], -1.0, 1.0);
        check(seed, vec![x.clone(), wt.clone(), b], &move |g, x| g.conv2d(&x[0], &x[1], Some(&x[2]), stride, pad).unwrap());
        check(seed, vec![x.clone(), wt.clone()], &move |g, x| g.conv2d(&x[0], &x[1], None, stride, pad).unwrap());
        // A bias per image and channel `[N, C_out]` (the folded time embedding).
        let bn = rand_array(&mut r, &[n, co], -1.0, 1.0);
        check(seed, vec![x.clone(), wt.clone(), bn], &move |g, x| g.conv2d(&x[0], &x[1], Some(&x[2]), stride, pad).unwrap());
        // A residual added inside the convolution (`conv2d_add`), with and without a bias:
        // its gradient is the output gradient.
        let (ho, wo) = ((h + 2 * pad - k) / stride + 1, (w + 2 * pad - k) / stride + 1);
        let res = rand_array(&mut r, &[n, co, ho, wo], -1.0, 1.0);
        let b = rand_array(&mut r, &[co], -1.0, 1.0);
        check(seed, vec![x.clone(), wt.clone(), b, res.clone()], &move |g, x| g.conv2d_add(&x[0], &x[1], Some(&x[2]), stride, pad, &x[3]).unwrap());
        check(seed, vec![x, wt, res], &move |g, x| g.conv2d_add(&x[0], &x[1], None, stride, pad, &x[2]).unwrap());
    }

    /// Nearest upsampling ×2 and 2×2 average pooling.
    #[test]
    fn upsample_and_pool_match_finite_differences(seed in any::<u64>(), n in 1usize..3, c in 1usize..3, h in 1usize..4, w in 1usize..4) {
        check(seed, unary_case(seed, &[n, c, h, w], false), &|g, x| g.upsample_nearest2x(&x[0]).unwrap());
        check(seed, unary_case(seed, &[n, c, 2 * h, 2 * w], false), &|g, x| g.avg_pool2x2(&x[0]).unwrap());
    }

    /// Group norm (input, gamma, beta) on 4-D and 3-D inputs, and layer norm.
    #[test]
    fn group_and_layer_norm_match_finite_differences(seed in any::<u64>(), n in 1usize..3, groups in 1usize..3, cg in 1usize..3, s in 2usize..4) {
        let mut r = rng::seeded(seed);
        let c = groups * cg;
        let x = rand_array(&mut r, &[n, c, s, s], -2.0, 2.0);
        let gamma = rand_array(&mut r, &[c], 0.5, 1.5);
        let beta = rand_array(&mut r, &[c], -1.0, 1.0);
        let x3 = rand_array(&mut r, &[n, c, s], -2.0, 2.0);
        let xl = rand_array(&mut r, &[n, s, c + 1], -2.0, 2.0);
        // The truncation bound estimates the third derivative with steps of H3 = 1e-2; the
        // k-th derivative of a normalisation grows like var^{-k/2}, so a group whose variance
        // is tiny (two nearly equal entries) makes that estimate meaningless. Keep every
        // normalised block's variance >= 0.1 (std >= 0.32, 30x the step).
        prop_assume!(min_block_variance(&x, n * groups) >= 0.1);
        prop_assume!(min_block_variance(&x3, n * groups) >= 0.1);
        prop_assume!(min_block_variance(&xl, n * s) >= 0.1);
        check(seed, vec![x, gamma.clone(), beta.clone()], &move |g, x| g.group_norm(&x[0], groups, &x[1], &x[2], 1e-5).unwrap());
        check(seed, vec![x3, gamma.clone(), beta.clone()], &move |g, x| g.group_norm(&x[0], groups, &x[1], &x[2], 1e-5).unwrap());
        let gl = rand_array(&mut r, &[c + 1], 0.5, 1.5);
        let bl = rand_array(&mut r, &[c + 1], -1.0, 1.0);
        check(seed, vec![xl, gl, bl], &|g, x| g.layer_norm(&x[0], &x[1], &x[2], 1e-5).unwrap());
    }

    /// The fused `group_norm_silu` op (input, gamma, beta) on 4-D and 3-D inputs: the
    /// backward of the fused kernel, which recomputes `z = γ x̂ + β` instead of saving it.
    #[test]
    fn fused_group_norm_silu_matches_finite_differences(seed in any::<u64>(), n in 1usize..3, groups in 1usize..3, cg in 1usize..3, s in 2usize..4) {
        let mut r = rng::seeded(seed);
        let c = groups * cg;
        let x = rand_array(&mut r, &[n, c, s, s], -2.0, 2.0);
        let gamma = rand_array(&mut r, &[c], 0.5, 1.5);
        let beta = rand_array(&mut r, &[c], -1.0, 1.0);
        let x3 = rand_array(&mut r, &[n, c, s], -2.0, 2.0);
        // As for group norm: no near-degenerate group (see there).
        prop_assume!(min_block_variance(&x, n * groups) >= 0.1);
        prop_assume!(min_block_variance(&x3, n * groups) >= 0.1);
        check(seed, vec![x, gamma.clone(), beta.clone()], &move |g, x| g.group_norm_silu(&x[0], groups, &x[1], &x[2], 1e-5).unwrap());
        check(seed, vec![x3, gamma, beta], &move |g, x| g.group_norm_silu(&x[0], groups, &x[1], &x[2], 1e-5).unwrap());
    }

    /// Scaled dot-product attention with respect to q, k and v.
    #[test]
    fn attention_matches_finite_differences(seed in any::<u64>(), b in 1usize..3, lq in 1usize..4, lk in 1usize..4, d in 1usize..4, dv in 1usize..3) {
        let mut r = rng::seeded(seed);
        let q = rand_array(&mut r, &[b, lq, d], -2.0, 2.0);
        let k = rand_array(&mut r, &[b, lk, d], -2.0, 2.0);
        let v = rand_array(&mut r, &[b, lk, dv], -2.0, 2.0);
        check(seed, vec![q.clone(), k.clone(), v.clone()], &|g, x| g.attention(&x[0], &x[1], &x[2]).unwrap());
        // The channel-major form: its own gradients, and the same values as the row form
        // with every operand and the result transposed.
        let t = |a: &ndarray::ArrayD<f64>| a.view().permuted_axes(ndarray::IxDyn(&[0, 2, 1])).as_standard_layout().into_owned();
        let (qc, kc, vc) = (t(&q), t(&k), t(&v));
        check(seed, vec![qc.clone(), kc.clone(), vc.clone()], &|g, x| g.attention_channels(&x[0], &x[1], &x[2]).unwrap());
        let mut g = Graph::<f64>::new();
        let rows = g.attention(&Tensor::constant(q), &Tensor::constant(k), &Tensor::constant(v)).unwrap();
        let cols = g.attention_channels(&Tensor::constant(qc), &Tensor::constant(kc), &Tensor::constant(vc)).unwrap();
        let want = t(rows.value());
        for (a, b) in cols.value().iter().zip(want.iter()) {
            // The same products, summed by GEMMs whose order may differ. Scores are sums of at
            // most 3 products of size <= 4: they differ by at most 2·3·4·3ε ≈ 1.6e-14; the
            // softmax weights then by at most twice that, and the outputs (averages of values
            // <= 2, 3 terms) by at most ~1e-13 with the final sums' own rounding.
            prop_assert!((a - b).abs() <= 1e-13, "{a} vs {b}");
        }
    }

    /// Dropout (with a fixed seed the op is linear in x) and the MSE loss in both arguments.
    #[test]
    fn dropout_and_mse_match_finite_differences(seed in any::<u64>(), n in 1usize..5, m in 1usize..5, p in 0.0f64..0.9) {
        let mut r = rng::seeded(seed);
        let x = rand_array(&mut r, &[n, m], -2.0, 2.0);
        let t = rand_array(&mut r, &[n, m], -2.0, 2.0);
        // The finite differences run on an inference graph, where dropout is the identity,
        // so the training-mode op is checked on a training graph for both routes.
        let f: &Fwd = &move |g, x| {
            g.set_training(true);
            g.dropout(&x[0], p, seed).unwrap()
        };
        check(seed, vec![x.clone()], f);
        check(seed, vec![x, t], &|g, x| g.mse(&x[0], &x[1]).unwrap());
    }

    /// A composite: conv → group norm → silu → upsample → pool → linear over the flattened
    /// features, checked end to end.
    #[test]
    fn composite_network_matches_finite_differences(seed in any::<u64>()) {
        let mut r = rng::seeded(seed);
        let x = rand_array(&mut r, &[2, 2, 4, 4], -2.0, 2.0);
        let w = rand_array(&mut r, &[4, 2, 3, 3], -0.5, 0.5);
        let gamma = rand_array(&mut r, &[4], 0.5, 1.5);
        let beta = rand_array(&mut r, &[4], -0.5, 0.5);
        let lw = rand_array(&mut r, &[3, 64], -0.5, 0.5);
        check(seed, vec![x, w, gamma, beta, lw], &|g, x| {
            let h = g.conv2d(&x[0], &x[1], None, 1, 1).unwrap();
            let h = g.group_norm(&h, 2, &x[2], &x[3], 1e-5).unwrap();
            let h = g.silu(&h);
            let h = g.upsample_nearest2x(&h).unwrap();
            let h = g.avg_pool2x2(&h).unwrap();
            let h = g.reshape(&h, &[2, 64]).unwrap();
            g.linear(&h, &x[4], None).unwrap()
        });
    }
}

/// The fused op is the composition it replaces: `group_norm_silu(x)` equals
/// `silu(group_norm(x))` in f64 to a few roundings (both run the same normalisation; the
/// fused kernel applies SiLU to the same `z`, so the difference is at most the rounding of
/// `z` itself, far below 1e-12 for values of order one).
#[test]
fn fused_group_norm_silu_equals_the_composition() {
    let mut r = rng::seeded(5);
    let x = Tensor::constant(rand_array(&mut r, &[3, 8, 5, 5], -2.0, 2.0));
    let gamma = Tensor::constant(rand_array(&mut r, &[8], 0.5, 1.5));
    let beta = Tensor::constant(rand_array(&mut r, &[8], -1.0, 1.0));
    let mut g = Graph::inference();
    let fused = g.group_norm_silu(&x, 4, &gamma, &beta, 1e-5).unwrap();
    let gn = g.group_norm(&x, 4, &gamma, &beta, 1e-5).unwrap();
    let composed = g.silu(&gn);
    let worst = fused
        .as_slice()
        .iter()
        .zip(composed.as_slice())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f64, f64::max);
    assert!(worst <= 1e-12, "worst difference {worst:e}");
    // Twin: group norm without the activation differs by O(1).
    let plain = gn
        .as_slice()
        .iter()
        .zip(fused.as_slice())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f64, f64::max);
    assert!(plain > 0.1);
}

/// The check is not vacuous: perturbing one entry of a correct gradient by one part per
/// million makes it fail (the tolerances are near 1e-8 for entries of order one).
#[test]
fn checker_rejects_a_gradient_off_by_one_part_per_million() {
    let mut r = rng::seeded(7);
    let xs = vec![rand_array(&mut r, &[3, 4], -2.0, 2.0)];
    let f: &Fwd = &|g, x| g.silu(&x[0]);
    let w = rand_array(&mut r, &[3, 4], 0.5, 1.0);
    let mut grads = analytic(f, &xs, &w);
    assert!(compare(f, &xs, &w, &grads).is_ok());
    grads[0].as_slice_mut().unwrap()[5] *= 1.0 + 1e-6;
    assert!(compare(f, &xs, &w, &grads).is_err());
}
