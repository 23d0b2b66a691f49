//! Forward values of the engine's ops against independent routes, parameter handling, time
//! embeddings, dropout statistics, f32/f64 agreement, thread-count determinism and errors.

use ndarray::{ArrayD, IxDyn};
use rand::Rng;
use scoresde::engine::{sinusoidal_embedding, Element, GaussianFourier, Graph, ParamStore, Tensor};
use scoresde::{rng, Error};

fn rand_array<E: Element>(r: &mut rng::Rng, shape: &[usize], lo: f64, hi: f64) -> ArrayD<E> {
    let n: usize = shape.iter().product();
    let v = (0..n)
        .map(|_| <E as Element>::from_f64(lo + (hi - lo) * r.random::<f64>()))
        .collect();
    ArrayD::from_shape_vec(IxDyn(shape), v).unwrap()
}

/// Batched matmul with transposes equals the triple loop over the definition. Both sum the
/// same `k <= 7` products; reassociation changes the result by at most `k ε sum|a b|`, under
/// `1e-13` for entries in [-2, 2].
#[test]
fn matmul_equals_triple_loop() {
    let mut r = rng::seeded(1);
    let (b, m, k, n) = (3, 4, 7, 5);
    let a: ArrayD<f64> = rand_array(&mut r, &[b, k, m], -2.0, 2.0); // stored transposed
    let c: ArrayD<f64> = rand_array(&mut r, &[b, k, n], -2.0, 2.0);
    let mut g = Graph::inference();
    let y = g
        .matmul_t(
            &Tensor::constant(a.clone()),
            &Tensor::constant(c.clone()),
            true,
            false,
        )
        .unwrap();
    assert_eq!(y.shape(), &[b, m, n]);
    for bi in 0..b {
        for i in 0..m {
            for j in 0..n {
                let want: f64 = (0..k).map(|l| a[[bi, l, i]] * c[[bi, l, j]]).sum();
                assert!((y.value()[[bi, i, j]] - want).abs() < 1e-13);
            }
        }
    }
}

/// A 1×1 convolution is a linear map over channels at every pixel: compare conv2d with
/// `linear` applied to the pixels laid out as rows (an independent code path, via GEMM).
#[test]
fn one_by_one_conv_equals_linear_over_channels() {
    let mut r = rng::seeded(2);
    let (n, ci, co, h, w) = (2, 3, 4, 5, 6);
    let x: ArrayD<f64> = rand_array(&mut r, &[n, ci, h, w], -2.0, 2.0);
    let wt: ArrayD<f64> = rand_array(&mut r, &[co, ci, 1, 1], -1.0, 1.0);
    let b: ArrayD<f64> = rand_array(&mut r, &[co], -1.0, 1.0);
    let mut g = Graph::inference();
    let (xt, wtt, bt) = (
        Tensor::constant(x),
        Tensor::constant(wt),
        Tensor::constant(b),
    );
    let y = g.conv2d(&xt, &wtt, Some(&bt), 1, 0).unwrap();
    let rows = g.permute(&xt, &[0, 2, 3, 1]).unwrap();
    let w2 = g.reshape(&wtt, &[co, ci]).unwrap();
    let z = g.linear(&rows, &w2, Some(&bt)).unwrap();
    let z = g.permute(&z, &[0, 3, 1, 2]).unwrap();
    for (a, b) in y.as_slice().iter().zip(z.as_slice()) {
        assert!((a - b).abs() < 1e-13, "{a} vs {b}");
    }
}

/// Average pooling undoes nearest upsampling exactly (each 2×2 block holds four copies; the
/// mean of four equal f64 numbers is exact).
#[test]
fn pool_after_upsample_is_identity() {
    let mut r = rng::seeded(3);
    let x: ArrayD<f64> = rand_array(&mut r, &[2, 3, 4, 5], -2.0, 2.0);
    let mut g = Graph::inference();
    let u = g.upsample_nearest2x(&Tensor::constant(x.clone())).unwrap();
    assert_eq!(u.shape(), &[2, 3, 8, 10]);
    assert_eq!(u.value()[[1, 2, 7, 9]], x[[1, 2, 3, 4]]);
    let p = g.avg_pool2x2(&u).unwrap();
    assert_eq!(p.value(), &x);
}

/// With `γ = 1`, `β = 0`, each (sample, group) block of the output has mean 0 and variance
/// `σ²/(σ² + ε)`, where `σ²` is the block's biased variance computed here independently;
/// f64 rounding over 48-element blocks keeps both within 1e-12.
#[test]
fn group_norm_blocks_have_zero_mean_and_normalised_variance() {
    let mut r = rng::seeded(4);
    let (n, c, s, groups, eps) = (3, 6, 4, 2, 1e-3);
    let x: ArrayD<f64> = rand_array(&mut r, &[n, c, s, s], -3.0, 1.0);
    let mut g = Graph::inference();
    let ones = Tensor::constant(ArrayD::ones(IxDyn(&[c])));
    let zeros = Tensor::<f64>::zeros(&[c]);
    let y = g
        .group_norm(&Tensor::constant(x.clone()), groups, &ones, &zeros, eps)
        .unwrap();
    let m = c / groups * s * s;
    for (xb, yb) in x.as_slice().unwrap().chunks(m).zip(y.as_slice().chunks(m)) {
        let mx = xb.iter().sum::<f64>() / m as f64;
        let vx = xb.iter().map(|v| (v - mx).powi(2)).sum::<f64>() / m as f64;
        let my = yb.iter().sum::<f64>() / m as f64;
        let vy = yb.iter().map(|v| (v - my).powi(2)).sum::<f64>() / m as f64;
        assert!(my.abs() < 1e-12);
        assert!((vy - vx / (vx + eps)).abs() < 1e-12);
    }
}

/// Softmax rows are positive, sum to one and are unchanged by adding a constant to a row
/// (f64 rounding: 1e-15 per row of 5).
#[test]
fn softmax_rows_sum_to_one_and_ignore_shifts() {
    let mut r = rng::seeded(5);
    let x: ArrayD<f64> = rand_array(&mut r, &[4, 5], -30.0, 30.0);
    let mut g = Graph::inference();
    let xt = Tensor::constant(x);
    let y = g.softmax(&xt, 1).unwrap();
    let xs = g.add_scalar(&xt, 700.0);
    let ys = g.softmax(&xs, 1).unwrap();
    for i in 0..4 {
        let row: f64 = (0..5).map(|j| y.value()[[i, j]]).sum();
        assert!((row - 1.0).abs() < 1e-15);
    }
    for (a, b) in y.as_slice().iter().zip(ys.as_slice()) {
        assert!(*a >= 0.0 && (a - b).abs() < 1e-12);
    }
}

/// Attention equals the explicit weighted average `sum_j a_ij v_j` with
/// `a_ij ∝ exp(q_i·k_j / sqrt d)`, computed here with plain loops.
#[test]
fn attention_equals_explicit_weighted_average() {
    let mut r = rng::seeded(6);
    let (b, lq, lk, d, dv) = (2, 3, 4, 5, 2);
    let q: ArrayD<f64> = rand_array(&mut r, &[b, lq, d], -2.0, 2.0);
    let k: ArrayD<f64> = rand_array(&mut r, &[b, lk, d], -2.0, 2.0);
    let v: ArrayD<f64> = rand_array(&mut r, &[b, lk, dv], -2.0, 2.0);
    let mut g = Graph::inference();
    let y = g
        .attention(
            &Tensor::constant(q.clone()),
            &Tensor::constant(k.clone()),
            &Tensor::constant(v.clone()),
        )
        .unwrap();
    for bi in 0..b {
        for i in 0..lq {
            let s: Vec<f64> = (0..lk)
                .map(|j| {
                    let dot: f64 = (0..d).map(|l| q[[bi, i, l]] * k[[bi, j, l]]).sum();
                    (dot / (d as f64).sqrt()).exp()
                })
                .collect();
            let z: f64 = s.iter().sum();
            for c in 0..dv {
                let want: f64 = (0..lk).map(|j| s[j] / z * v[[bi, j, c]]).sum();
                assert!((y.value()[[bi, i, c]] - want).abs() < 1e-12);
            }
        }
    }
}

/// The sinusoidal embedding: dim 4 by hand (`f = [1, 1e-4]`), and for dim 32 the identity
/// `<e(t), e(s)> = sum_k cos((t - s) f_k)` (sin a sin b + cos a cos b = cos(a - b)), which
/// holds only for the [sin | cos] layout with a common frequency per pair.
#[test]
fn sinusoidal_embedding_matches_hand_values_and_shift_identity() {
    let e = sinusoidal_embedding::<f64>(&[1.0, 2.5], 4).unwrap();
    let want = [1f64.sin(), 1e-4f64.sin(), 1f64.cos(), 1e-4f64.cos()];
    for (a, b) in e.as_slice()[..4].iter().zip(want) {
        assert!((a - b).abs() < 1e-15);
    }
    let (t, s) = (37.0, 512.25);
    let e = sinusoidal_embedding::<f64>(&[t, s], 32).unwrap();
    let ev = e.value();
    let dot: f64 = (0..32).map(|i| ev[[0, i]] * ev[[1, i]]).sum();
    let want: f64 = (0..16)
        .map(|k| ((t - s) * (-(10000f64.ln()) * k as f64 / 15.0).exp()).cos())
        .sum();
    assert!((dot - want).abs() < 1e-12);
    assert!(matches!(
        sinusoidal_embedding::<f32>(&[1.0], 5),
        Err(Error::InvalidParameter { .. })
    ));
    assert!(matches!(
        sinusoidal_embedding::<f32>(&[f64::NAN], 8),
        Err(Error::NonFinite(_))
    ));
}

/// Sample mean and variance of `n` Gaussian-Fourier frequencies against `N(0, s²)`: the mean
/// has standard deviation `s/sqrt n`, the biased sample variance `s² sqrt(2/n)` (up to
/// O(1/n)); a 5-sigma bound on each gives a false-alarm rate below 1.2e-6.
fn fourier_frequencies_fit(w: &[f64], s: f64) -> bool {
    let n = w.len() as f64;
    let m = w.iter().sum::<f64>() / n;
    let v = w.iter().map(|x| (x - m).powi(2)).sum::<f64>() / n;
    m.abs() < 5.0 * s / n.sqrt() && (v - s * s).abs() < 5.0 * s * s * (2.0 / n).sqrt()
}

/// Gaussian-Fourier frequencies are N(0, scale²), and the embedding is
/// `[sin(2π t w), cos(2π t w)]`.
#[test]
fn gaussian_fourier_frequencies_have_the_stated_law() {
    let gf = GaussianFourier::new(40_000, 16.0, 11).unwrap();
    assert!(fourier_frequencies_fit(gf.frequencies(), 16.0));
    let e = gf.embed::<f64>(&[0.3]).unwrap();
    let w0 = gf.frequencies()[0];
    assert!((e.value()[[0, 0]] - (2.0 * std::f64::consts::PI * 0.3 * w0).sin()).abs() < 1e-12);
    assert!((e.value()[[0, 20_000]] - (2.0 * std::f64::consts::PI * 0.3 * w0).cos()).abs() < 1e-12);
}

/// Twin: the same statistical check rejects a scale 5% off.
#[test]
fn gaussian_fourier_check_rejects_a_wrong_scale() {
    let gf = GaussianFourier::new(40_000, 16.0, 11).unwrap();
    assert!(!fourier_frequencies_fit(gf.frequencies(), 16.0 * 1.05));
}

/// Dropout keeps each element with probability `1 - p` and scales kept ones by `1/(1-p)`.
/// The number of zeros among `n` is Binomial(n, p): a 5-sigma bound on the zero fraction
/// (`5 sqrt(p(1-p)/n)`) has false-alarm rate below 1.2e-6.
fn dropout_fraction_fits(zeros: usize, n: usize, p: f64) -> bool {
    let frac = zeros as f64 / n as f64;
    (frac - p).abs() < 5.0 * (p * (1.0 - p) / n as f64).sqrt()
}

fn dropout_zeros(p: f64, seed: u64, n: usize) -> (usize, Vec<f64>) {
    let mut g = Graph::<f64>::new();
    let x = Tensor::constant(ArrayD::from_elem(IxDyn(&[n]), 2.0));
    let y = g.dropout(&x, p, seed).unwrap();
    let z = y.as_slice().iter().filter(|v| **v == 0.0).count();
    (z, y.to_array().into_raw_vec_and_offset().0)
}

/// Dropout's zero fraction is p and kept values are x/(1-p); the mask is a function of the
/// seed; evaluation mode is the identity.
#[test]
fn dropout_zeroes_a_fraction_p_and_rescales_the_rest() {
    let (n, p) = (100_000, 0.3);
    let (z, v) = dropout_zeros(p, 5, n);
    assert!(dropout_fraction_fits(z, n, p));
    assert!(v.iter().all(|&x| x == 0.0 || (x - 2.0 / 0.7).abs() < 1e-15));
    assert_eq!(dropout_zeros(p, 5, n).1, v);
    assert_ne!(dropout_zeros(p, 6, n).1, v);
    let mut g = Graph::<f64>::inference();
    let x = Tensor::constant(ArrayD::from_elem(IxDyn(&[10]), 2.0));
    assert_eq!(g.dropout(&x, p, 5).unwrap().value(), x.value());
}

/// Twin: the binomial check rejects a mask drawn with p = 0.32 when 0.3 is expected.
#[test]
fn dropout_check_rejects_a_wrong_rate() {
    let n = 100_000;
    let (z, _) = dropout_zeros(0.32, 5, n);
    assert!(!dropout_fraction_fits(z, n, 0.3));
}

/// Gradients are keyed by parameter: a parameter used twice accumulates (d/dw of w·x + w·x
/// is 2x), an unused one gets none, the graph shares the store's data and, once `backward`
/// has run, the store can be updated in place without a copy.
#[test]
fn gradients_are_keyed_by_parameter_and_graph_releases_the_store() {
    let mut store = ParamStore::<f64>::new();
    let w = store.add("w", ArrayD::from_elem(IxDyn(&[3]), 1.5)).unwrap();
    let unused = store.add("u", ArrayD::zeros(IxDyn(&[2]))).unwrap();
    assert!(store.add("w", ArrayD::zeros(IxDyn(&[1]))).is_err());
    let x = Tensor::from_vec(&[3], vec![1.0, -2.0, 4.0]).unwrap();
    let ptr = store.get(w).as_ptr();
    let mut g = Graph::new();
    let wt = g.param(&store, w);
    assert_eq!(wt.value().as_ptr(), ptr);
    let a = g.mul(&wt, &x).unwrap();
    let wt2 = g.param(&store, w);
    let b = g.mul(&wt2, &x).unwrap();
    let s = g.add(&a, &b).unwrap();
    let loss = g.sum_all(&s);
    let grads = g.backward(&loss).unwrap();
    drop((wt, wt2, a, b, s, loss));
    assert_eq!(
        grads.param(w).unwrap().as_slice().unwrap(),
        &[2.0, -4.0, 8.0]
    );
    assert!(grads.param(unused).is_none());
    assert_eq!(store.get_mut(w).as_ptr(), ptr);
}

/// A composite forward/backward (conv, group norm, silu, attention, linear, mse) in f32
/// agrees with the same computation in f64 on the same (f32-representable) inputs.
///
/// Tolerance: f32 unit roundoff u = 2^-24 ≈ 6e-8. Each op rounds its result relative to the
/// magnitudes it sums, at most `k u` for sums of length `k <= 72` here; about 12 ops lie between
/// the inputs and any gradient, and the network's sensitivities (Lipschitz factors of order
/// one to ten, with the group-norm scale 1/σ) amplify them at most tenfold:
/// `12 · 72 · 6e-8 · 10 ≈ 5e-4`. We require a max-norm error below 1e-3 relative to the
/// largest entry of each compared array.
fn composite<E: Element>(x: &ArrayD<f64>, store64: &ParamStore<f64>) -> (f64, Vec<ArrayD<f64>>) {
    let mut store = ParamStore::<E>::new();
    for (_, name, v) in store64.iter() {
        store.add(name, v.mapv(<E as Element>::from_f64)).unwrap();
    }
    let ids: Vec<_> = store.ids().collect();
    let mut g = Graph::<E>::new();
    let p: Vec<_> = ids.iter().map(|&i| g.param(&store, i)).collect();
    let x = Tensor::constant(x.mapv(<E as Element>::from_f64));
    let h = g.conv2d(&x, &p[0], Some(&p[1]), 1, 1).unwrap();
    let h = g.group_norm(&h, 2, &p[2], &p[3], 1e-5).unwrap();
    let h = g.silu(&h);
    let (n, c, hh, ww) = (h.shape()[0], h.shape()[1], h.shape()[2], h.shape()[3]);
    let t = g.reshape(&h, &[n, c, hh * ww]).unwrap();
    let t = g.transpose(&t, 1, 2).unwrap();
    let a = g.attention(&t, &t, &t).unwrap();
    let f = g.reshape(&a, &[n, hh * ww * c]).unwrap();
    let o = g.linear(&f, &p[4], Some(&p[5])).unwrap();
    let target = Tensor::constant(ArrayD::from_elem(
        IxDyn(o.shape()),
        <E as Element>::from_f64(0.25),
    ));
    let loss = g.mse(&o, &target).unwrap();
    let l = Element::to_f64(loss.item());
    let grads = g.backward(&loss).unwrap();
    let gs = ids
        .iter()
        .map(|&i| grads.param(i).unwrap().mapv(Element::to_f64))
        .collect();
    (l, gs)
}

fn f32_exact(r: &mut rng::Rng, shape: &[usize], lo: f64, hi: f64) -> ArrayD<f64> {
    rand_array::<f32>(r, shape, lo, hi).mapv(|v| v as f64)
}

#[test]
fn f32_path_agrees_with_f64_path() {
    let mut r = rng::seeded(8);
    let x = f32_exact(&mut r, &[2, 2, 4, 4], -2.0, 2.0);
    let mut store = ParamStore::<f64>::new();
    store
        .add("conv.weight", f32_exact(&mut r, &[4, 2, 3, 3], -0.5, 0.5))
        .unwrap();
    store
        .add("conv.bias", f32_exact(&mut r, &[4], -0.5, 0.5))
        .unwrap();
    store
        .add("norm.weight", f32_exact(&mut r, &[4], 0.5, 1.5))
        .unwrap();
    store
        .add("norm.bias", f32_exact(&mut r, &[4], -0.5, 0.5))
        .unwrap();
    store
        .add("out.weight", f32_exact(&mut r, &[3, 64], -0.3, 0.3))
        .unwrap();
    store
        .add("out.bias", f32_exact(&mut r, &[3], -0.3, 0.3))
        .unwrap();
    let (l64, g64) = composite::<f64>(&x, &store);
    let (l32, g32) = composite::<f32>(&x, &store);
    assert!((l64 - l32).abs() <= 1e-3 * l64.abs());
    for (a, b) in g64.iter().zip(&g32) {
        let scale = a.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let err = a
            .iter()
            .zip(b)
            .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()));
        assert!(err <= 1e-3 * scale, "error {err:e} for scale {scale:e}");
    }
}

/// A forward/backward large enough to take every parallel path (pointwise maps, group norm,
/// pooling, batched matmul, conv) gives the same bits with 1 and 2 threads.
#[test]
fn results_do_not_depend_on_thread_count() {
    let run = || {
        let mut r = rng::seeded(9);
        let mut store = ParamStore::<f32>::new();
        let cw = store
            .add("cw", rand_array(&mut r, &[8, 8, 3, 3], -0.2, 0.2))
            .unwrap();
        let gm = store.add("gm", rand_array(&mut r, &[8], 0.5, 1.5)).unwrap();
        let bt = store
            .add("bt", rand_array(&mut r, &[8], -0.5, 0.5))
            .unwrap();
        let x = Tensor::constant(rand_array::<f32>(&mut r, &[2, 8, 48, 48], -2.0, 2.0));
        let mut g = Graph::new();
        let (cw, gm, bt) = (
            g.param(&store, cw),
            g.param(&store, gm),
            g.param(&store, bt),
        );
        let h = g.conv2d(&x, &cw, None, 1, 1).unwrap();
        let h = g.group_norm(&h, 4, &gm, &bt, 1e-5).unwrap();
        let h = g.silu(&h);
        let h = g.dropout(&h, 0.1, 3).unwrap();
        let h = g.avg_pool2x2(&h).unwrap();
        let h = g.avg_pool2x2(&h).unwrap(); // [2, 8, 12, 12]
        let t = g.reshape(&h, &[16, 12, 12]).unwrap();
        let a = g.attention(&t, &t, &t).unwrap();
        let a = g.reshape(&a, &[2, 8, 12, 12]).unwrap();
        let u = g.upsample_nearest2x(&a).unwrap();
        let u = g.upsample_nearest2x(&u).unwrap();
        let loss = g.mse(&u, &x.detach()).unwrap();
        let l = loss.item();
        let grads = g.backward(&loss).unwrap();
        let mut bits = vec![l.to_bits()];
        for (_, gr) in grads.params() {
            bits.extend(gr.iter().map(|v| v.to_bits()));
        }
        bits
    };
    let pool = |k| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(k)
            .build()
            .unwrap()
    };
    let one = pool(1).install(run);
    let two = pool(2).install(run);
    assert_eq!(one, two);
}

/// Bad input gives typed errors, never panics.
#[test]
fn bad_shapes_and_parameters_are_typed_errors() {
    let mut g = Graph::<f64>::new();
    let a = Tensor::<f64>::zeros(&[2, 3]);
    let b = Tensor::<f64>::zeros(&[4, 5]);
    let shape = |r: scoresde::Result<Tensor<f64>>| matches!(r, Err(Error::Shape(_)));
    assert!(shape(g.add(&a, &b)));
    assert!(shape(g.matmul(&a, &b)));
    assert!(shape(g.reshape(&a, &[5])));
    assert!(shape(g.permute(&a, &[0, 0])));
    assert!(shape(g.sum(&a, &[2], false)));
    assert!(shape(g.softmax(&a, 2)));
    assert!(shape(g.narrow(&a, 1, 2, 2)));
    assert!(shape(g.concat(&[&a, &b], 0)));
    assert!(shape(g.concat(&[], 0)));
    assert!(shape(g.conv2d(&a, &b, None, 1, 0)));
    let x4 = Tensor::<f64>::zeros(&[1, 2, 3, 3]);
    let w4 = Tensor::<f64>::zeros(&[1, 3, 3, 3]);
    assert!(shape(g.conv2d(&x4, &w4, None, 1, 0)));
    // A bias must be [C_out] or [N, C_out]: [C_out, N] and [N+1, C_out] are rejected.
    let x2 = Tensor::<f64>::zeros(&[2, 3, 3, 3]);
    let w1 = Tensor::<f64>::zeros(&[4, 3, 1, 1]);
    // Channel-major attention: q, k [B, d, L], v [B, dv, Lk] with the same Lk as k.
    let (q3, k3) = (
        Tensor::<f64>::zeros(&[2, 4, 5]),
        Tensor::<f64>::zeros(&[2, 4, 6]),
    );
    assert!(g
        .attention_channels(&q3, &k3, &Tensor::zeros(&[2, 3, 6]))
        .is_ok());
    assert!(shape(g.attention_channels(
        &q3,
        &k3,
        &Tensor::zeros(&[2, 3, 5])
    )));
    assert!(shape(g.attention_channels(
        &q3,
        &k3,
        &Tensor::zeros(&[2, 3])
    )));
    assert!(shape(g.attention_channels(
        &q3,
        &Tensor::zeros(&[2, 3, 6]),
        &Tensor::zeros(&[2, 3, 6])
    )));
    // A fused residual must have the output's shape [2, 4, 3, 3].
    let res = Tensor::<f64>::zeros(&[2, 4, 3, 3]);
    assert!(g.conv2d_add(&x2, &w1, None, 1, 0, &res).is_ok());
    assert!(shape(g.conv2d_add(
        &x2,
        &w1,
        None,
        1,
        0,
        &Tensor::zeros(&[2, 4, 3, 2])
    )));
    assert!(shape(g.conv2d_add(
        &x2,
        &w1,
        None,
        1,
        0,
        &Tensor::zeros(&[2, 3, 3, 3])
    )));
    assert!(g
        .conv2d(&x2, &w1, Some(&Tensor::zeros(&[2, 4])), 1, 0)
        .is_ok());
    assert!(shape(g.conv2d(
        &x2,
        &w1,
        Some(&Tensor::zeros(&[4, 2])),
        1,
        0
    )));
    assert!(shape(g.conv2d(
        &x2,
        &w1,
        Some(&Tensor::zeros(&[3, 4])),
        1,
        0
    )));
    assert!(shape(g.avg_pool2x2(&x4)));
    let c2 = Tensor::<f64>::zeros(&[2]);
    assert!(shape(g.group_norm(&x4, 3, &c2, &c2, 1e-5)));
    assert!(matches!(
        g.group_norm(&x4, 2, &c2, &c2, 0.0),
        Err(Error::InvalidParameter { .. })
    ));
    assert!(matches!(
        g.dropout(&a, 1.0, 0),
        Err(Error::InvalidParameter { .. })
    ));
    assert!(shape(g.attention(&a, &a, &a)));
    assert!(shape(g.mse(&a, &b)));
    assert!(Tensor::<f64>::from_vec(&[2, 2], vec![1.0]).is_err());
    let l = g.leaf(ArrayD::zeros(IxDyn(&[2])));
    assert!(matches!(g.backward(&l), Err(Error::Shape(_))));
    assert!(GaussianFourier::new(3, 1.0, 0).is_err());
    assert!(GaussianFourier::new(4, -1.0, 0).is_err());
}

/// The allocator settings of `engine::alloc` are accepted by glibc (both values within
/// `mallopt`'s limits), so the CLI and the bench really run with them; a large buffer freed
/// and allocated again afterwards is still zeroed where `vec!` promises it.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn allocator_settings_are_applied() {
    assert!(scoresde::engine::alloc::keep_freed_memory());
    let a = vec![7.0f32; 3 << 20];
    drop(a);
    let b = vec![0.0f32; 3 << 20];
    assert!(b.iter().all(|&v| v == 0.0));
}

/// Swapping the last two axes (the blocked, batch-parallel transpose that attention uses)
/// gives `y[b, j, i] = x[b, i, j]` exactly, below and above the parallel threshold and for
/// sides that are not multiples of the 16×16 tile, and moves the gradient back transposed:
/// for `L = Σ y ∘ w`, `dL/dx[b, i, j] = w[b, j, i]`.
#[test]
fn last_two_axes_swap_is_the_transpose_and_sends_the_gradient_back() {
    let mut r = rng::seeded(31);
    for &(b, m, n) in &[
        (1, 1, 1),
        (3, 5, 17),
        (2, 33, 18),
        (64, 49, 64),
        (16, 40, 70),
    ] {
        let x: ArrayD<f64> = rand_array(&mut r, &[b, m, n], -1.0, 1.0);
        let w: ArrayD<f64> = rand_array(&mut r, &[b, n, m], -1.0, 1.0);
        let mut g = Graph::<f64>::new();
        let xt = g.leaf(x.clone());
        let y = g.transpose(&xt, 1, 2).unwrap();
        assert_eq!(y.shape(), &[b, n, m]);
        for ((bb, j, i), &v) in y
            .value()
            .indexed_iter()
            .map(|(ix, v)| ((ix[0], ix[1], ix[2]), v))
        {
            assert_eq!(v, x[[bb, i, j]]);
        }
        let wt = Tensor::constant(w.clone());
        let p = g.mul(&y, &wt).unwrap();
        let l = g.sum(&p, &[0, 1, 2], false).unwrap();
        let grads = g.backward(&l).unwrap();
        let dx = grads.wrt(&xt).unwrap();
        for ((bb, i, j), &v) in dx.indexed_iter().map(|(ix, v)| ((ix[0], ix[1], ix[2]), v)) {
            assert_eq!(v, w[[bb, j, i]]);
        }
    }
}

/// Softmax over the last axis of a batch above the parallel threshold (rows split over the
/// pool, as attention's [64, 49, 49] scores are) gives exactly the row-by-row definition
/// computed in the same order (max, shifted exponentials, their sum, division), and its
/// backward exactly `y (dy - <dy, y>)` row by row.
#[test]
fn softmax_rows_in_parallel_equal_the_row_definition() {
    let mut r = rng::seeded(77);
    let (b, m, n) = (64, 49, 49);
    let x: ArrayD<f32> = rand_array(&mut r, &[b, m, n], -4.0, 4.0);
    let dy: ArrayD<f32> = rand_array(&mut r, &[b, m, n], -1.0, 1.0);
    let mut g = Graph::<f32>::new();
    let xt = g.leaf(x.clone());
    let y = g.softmax(&xt, 2).unwrap();
    let l = g.mul(&y, &Tensor::constant(dy.clone())).unwrap();
    let l = g.sum(&l, &[0, 1, 2], false).unwrap();
    let grads = g.backward(&l).unwrap();
    let (xs, ys, dys) = (
        x.as_slice().unwrap(),
        y.value().as_slice().unwrap(),
        dy.as_slice().unwrap(),
    );
    let dx = grads.wrt(&xt).unwrap().as_slice().unwrap().to_vec();
    for k in 0..b * m {
        let row = &xs[k * n..(k + 1) * n];
        let mx = row.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v));
        let e: Vec<f32> = row.iter().map(|&v| (v - mx).exp()).collect();
        let s: f32 = e.iter().copied().sum();
        let want: Vec<f32> = e.iter().map(|&v| v / s).collect();
        assert_eq!(&ys[k * n..(k + 1) * n], &want[..], "row {k}");
        let dyr = &dys[k * n..(k + 1) * n];
        let dot: f32 = dyr.iter().zip(&want).map(|(&a, &b)| a * b).sum();
        for j in 0..n {
            assert_eq!(dx[k * n + j], want[j] * (dyr[j] - dot), "row {k}, {j}");
        }
    }
}
