//! Layers and networks: parameter counts and names against the PyTorch reference modules,
//! output shapes, gradients of every layer by central finite differences in f64, f32 vs f64
//! forward agreement, and bit-identical training steps on 1 and 2 threads.

use ndarray::{ArrayD, IxDyn};
use rand::Rng;
use scoresde::engine::nn::{
    AttnBlock, Conv2d, Downsample, GroupNorm, Linear, MlpConfig, MlpScoreNet, ResBlock,
    TimeEmbedding, UNet, UNetConfig, Upsample,
};
use scoresde::engine::{Graph, ParamStore, Tensor};
use scoresde::error::Error;
use scoresde::rng;

/// W1's parameter count is the one printed by `ref_unet.py --params` (1,623,169), and its
/// breakdown in the spec header: a re-implementation that follows the spec matches it.
#[test]
fn w1_has_the_reference_parameter_count() {
    let mut s = ParamStore::<f32>::new();
    UNet::new(&mut s, UNetConfig::default(), 0).unwrap();
    assert_eq!(s.num_elements(), 1_623_169);
    let sum = |pre: &str| -> usize {
        s.iter()
            .filter(|(_, n, _)| n.starts_with(pre))
            .map(|(_, _, v)| v.len())
            .sum()
    };
    // The spec's breakdown: temb 20,736, conv_in 320, down 438,304, middle 181,504, up 981,952.
    assert_eq!(sum("temb."), 20_736);
    assert_eq!(sum("conv_in."), 320);
    assert_eq!(sum("down."), 438_304);
    assert_eq!(sum("mid"), 181_504);
    assert_eq!(sum("up."), 981_952);
    assert_eq!(sum("norm_out.") + sum("conv_out."), 64 + 289);
}

/// W2's parameter count (18·128+128) + 2(128·128+128) + (128·2+2) = 35,714.
#[test]
fn w2_has_the_reference_parameter_count() {
    let mut s = ParamStore::<f32>::new();
    MlpScoreNet::new(&mut s, MlpConfig::default(), 0).unwrap();
    assert_eq!(s.num_elements(), 35_714);
    let names: Vec<_> = s.iter().map(|(_, n, _)| n.to_string()).collect();
    assert_eq!(
        names,
        [
            "l1.weight",
            "l1.bias",
            "l2.weight",
            "l2.bias",
            "l3.weight",
            "l3.bias",
            "l4.weight",
            "l4.bias"
        ]
    );
}

/// Tensor names and shapes follow the PyTorch `UNetW1.state_dict()` keys (spot checks of every
/// kind of module: Sequential indices, ModuleList nesting, skip convs, attention, Up/Downsample).
#[test]
fn w1_parameter_names_follow_the_pytorch_module() {
    let mut s = ParamStore::<f32>::new();
    UNet::new(&mut s, UNetConfig::default(), 0).unwrap();
    let shape = |n: &str| {
        s.get(s.id(n).unwrap_or_else(|| panic!("missing {n}")))
            .shape()
            .to_vec()
    };
    assert_eq!(shape("temb.0.weight"), [128, 32]);
    assert_eq!(shape("temb.2.bias"), [128]);
    assert_eq!(shape("conv_in.weight"), [32, 1, 3, 3]);
    assert_eq!(shape("down.0.0.conv1.weight"), [32, 32, 3, 3]);
    assert_eq!(shape("down.0.0.temb_proj.weight"), [32, 128]);
    assert_eq!(shape("down.2.0.conv.weight"), [32, 32, 3, 3]); // Downsample(32)
    assert_eq!(shape("down.3.0.skip.weight"), [64, 32, 1, 1]);
    assert_eq!(shape("down.6.1.q.weight"), [64, 64, 1, 1]); // attention at 7x7
    assert_eq!(shape("mid_attn.proj.bias"), [64]);
    assert_eq!(shape("mid2.norm2.weight"), [64]);
    assert_eq!(shape("up.0.0.conv1.weight"), [64, 128, 3, 3]);
    assert_eq!(shape("up.2.1.norm.bias"), [64]);
    assert_eq!(shape("up.3.0.conv.weight"), [64, 64, 3, 3]); // Upsample(64)
    assert_eq!(shape("up.6.0.skip.weight"), [64, 96, 1, 1]);
    assert_eq!(shape("up.8.0.conv1.weight"), [32, 96, 3, 3]);
    assert_eq!(shape("up.10.0.conv2.weight"), [32, 32, 3, 3]);
    assert_eq!(shape("conv_out.weight"), [1, 32, 3, 3]);
    assert!(s.id("down.0.0.skip.weight").is_none());
    assert!(s.id("up.11.0.conv1.weight").is_none());
    // 15 ResBlocks on the down/up paths plus 2 in the middle; 6 attention blocks.
    let count = |suffix: &str| s.iter().filter(|(_, n, _)| n.ends_with(suffix)).count();
    assert_eq!(count("conv1.weight"), 17);
    assert_eq!(count(".q.weight"), 6);
}

// ---------------------------------------------------------------------------------------------
// Gradient checks.
//
// For a layer y = f(x; θ) we fix a random cotangent w and compare the reverse-mode gradient of
// L = Σ_i w_i y_i (from `backward_with`) with the central difference
// D(h) = (L(+h) − L(−h)) / 2h at a few random coordinates of every parameter and input.
// As derived in tests/engine_grad.rs: |D(h) − ∂L| ≤ h²/6 · M₃ + c ε S / h with
// M₃ = 4|T| + 1 from the third difference T at step H = 1e-2, S = Σ|w_i y_i| + 1,
// c = 4096 roundings per term (layers chain tens of ops, each a sum of up to ~600 products; a
// deliberately generous count that still makes the rounding term ≈ 1e-8 S), h = 1e-4.
// ---------------------------------------------------------------------------------------------

const H: f64 = 1e-4;
const H3: f64 = 1e-2;
const C_ROUND: f64 = 4096.0;
const COORDS: usize = 3;

type LayerFn = dyn Fn(&mut Graph<f64>, &ParamStore<f64>, &[Tensor<f64>]) -> Tensor<f64>;

fn rand_array(r: &mut rng::Rng, shape: &[usize], amp: f64) -> ArrayD<f64> {
    let n: usize = shape.iter().product();
    let v = (0..n)
        .map(|_| amp * (2.0 * r.random::<f64>() - 1.0))
        .collect();
    ArrayD::from_shape_vec(IxDyn(shape), v).unwrap()
}

/// Replaces every parameter by `θ + U(−0.3, 0.3)` so near-zero initialisations (conv2, proj,
/// conv_out) and γ = 1, β = 0 do not hide a wrong gradient.
fn jitter(s: &mut ParamStore<f64>, r: &mut rng::Rng) {
    let ids: Vec<_> = s.ids().collect();
    for id in ids {
        let shape = s.get(id).shape().to_vec();
        let noise = rand_array(r, &shape, 0.3);
        *s.get_mut(id) += &noise;
    }
}

fn eval(f: &LayerFn, s: &ParamStore<f64>, xs: &[ArrayD<f64>], w: &ArrayD<f64>) -> (f64, f64) {
    let mut g = Graph::inference();
    let ts: Vec<_> = xs.iter().map(|x| Tensor::constant(x.clone())).collect();
    let y = f(&mut g, s, &ts);
    assert_eq!(y.shape(), w.shape());
    let (mut l, mut sc) = (0.0, 1.0);
    for (a, b) in y.as_slice().iter().zip(w.iter()) {
        l += a * b;
        sc += (a * b).abs();
    }
    (l, sc)
}

/// Which value a coordinate perturbation acts on.
enum Target {
    Param(scoresde::engine::ParamId),
    Input(usize),
}

fn perturbed(
    f: &LayerFn,
    s: &mut ParamStore<f64>,
    xs: &mut [ArrayD<f64>],
    w: &ArrayD<f64>,
    t: &Target,
    j: usize,
    d: f64,
) -> (f64, f64) {
    let slot = |s: &mut ParamStore<f64>, xs: &mut [ArrayD<f64>], d: f64| match t {
        Target::Param(id) => *s.get_mut(*id).iter_mut().nth(j).unwrap() += d,
        Target::Input(i) => *xs[*i].iter_mut().nth(j).unwrap() += d,
    };
    slot(s, xs, d);
    let out = eval(f, s, xs, w);
    slot(s, xs, -d);
    out
}

/// Checks the gradient of `f` at `COORDS` random coordinates of every parameter and input.
fn grad_check(f: &LayerFn, mut s: ParamStore<f64>, mut xs: Vec<ArrayD<f64>>, seed: u64) {
    let mut r = rng::seeded(seed);
    jitter(&mut s, &mut r);
    let y_shape = {
        let mut g = Graph::inference();
        let ts: Vec<_> = xs.iter().map(|x| Tensor::constant(x.clone())).collect();
        f(&mut g, &s, &ts).shape().to_vec()
    };
    let w = rand_array(&mut r, &y_shape, 1.0);
    let (grads, xgrads) = {
        let mut g = Graph::new();
        let ts: Vec<_> = xs.iter().map(|x| g.leaf(x.clone())).collect();
        let y = f(&mut g, &s, &ts);
        let gr = g.backward_with(&y, w.clone()).unwrap();
        let xg: Vec<_> = ts
            .iter()
            .zip(&xs)
            .map(|(t, x)| {
                gr.wrt(t)
                    .cloned()
                    .unwrap_or_else(|| ArrayD::zeros(x.raw_dim()))
            })
            .collect();
        let pg: Vec<_> = s.ids().map(|id| gr.param_or_zeros(&s, id)).collect();
        (pg, xg)
    };
    let mut targets: Vec<(Target, ArrayD<f64>)> = s
        .ids()
        .zip(grads)
        .map(|(id, g)| (Target::Param(id), g))
        .collect();
    targets.extend(
        xgrads
            .into_iter()
            .enumerate()
            .map(|(i, g)| (Target::Input(i), g)),
    );
    let mut checked = 0;
    for (t, an) in &targets {
        for _ in 0..COORDS.min(an.len()) {
            let j = r.random_range(0..an.len());
            let (lp, sp) = perturbed(f, &mut s, &mut xs, &w, t, j, H);
            let (lm, sm) = perturbed(f, &mut s, &mut xs, &w, t, j, -H);
            let d = (lp - lm) / (2.0 * H);
            let mut q = |k: f64| perturbed(f, &mut s, &mut xs, &w, t, j, k * H3).0;
            let t3 = (q(2.0) - 2.0 * q(1.0) + 2.0 * q(-1.0) - q(-2.0)) / (2.0 * H3.powi(3));
            let sc = sp.max(sm);
            let tol = H * H / 6.0 * (4.0 * t3.abs() + 1.0) + C_ROUND * f64::EPSILON * sc / H;
            let a = *an.iter().nth(j).unwrap();
            let name = match t {
                Target::Param(id) => s.name(*id).to_string(),
                Target::Input(i) => format!("input {i}"),
            };
            assert!(
                (a - d).abs() <= tol,
                "{name}[{j}]: analytic {a}, numeric {d}, tol {tol:e}"
            );
            checked += 1;
        }
    }
    assert!(checked > 0);
}

/// `Linear` and `GroupNorm`: analytic gradients of weights, biases and input match central
/// differences.
#[test]
fn linear_and_group_norm_gradients_match_finite_differences() {
    let mut r = rng::seeded(1);
    let mut s = ParamStore::new();
    let lin = Linear::new(&mut s, "l", 5, 3, 1.0, &mut r).unwrap();
    let x = rand_array(&mut r, &[4, 5], 1.0);
    grad_check(
        &move |g, s, x| lin.forward(g, s, &x[0]).unwrap(),
        s,
        vec![x],
        11,
    );

    let mut s = ParamStore::new();
    let gn = GroupNorm::new(&mut s, "n", 2, 4, 1e-5).unwrap();
    let x = rand_array(&mut r, &[2, 4, 3, 3], 1.0);
    grad_check(
        &move |g, s, x| gn.forward(g, s, &x[0]).unwrap(),
        s,
        vec![x],
        12,
    );
}

/// `Conv2d` (3×3 pad 1, 1×1, and stride 2) gradients match central differences.
#[test]
fn conv_gradients_match_finite_differences() {
    let mut r = rng::seeded(2);
    for (k, stride, pad) in [(3, 1, 1), (1, 1, 0), (3, 2, 1)] {
        let mut s = ParamStore::new();
        let c = Conv2d::new(&mut s, "c", 3, 2, k, stride, pad, 1.0, &mut r).unwrap();
        let x = rand_array(&mut r, &[2, 3, 5, 5], 1.0);
        grad_check(
            &move |g, s, x| c.forward(g, s, &x[0]).unwrap(),
            s,
            vec![x],
            20 + k as u64,
        );
    }
}

/// `ResBlock` (with and without a skip conv) gradients, including through the time embedding
/// input, match central differences.
#[test]
fn resblock_gradients_match_finite_differences() {
    let mut r = rng::seeded(3);
    for (cin, cout) in [(4, 4), (4, 6)] {
        let mut s = ParamStore::new();
        let b = ResBlock::new(&mut s, "rb", cin, cout, 5, 2, &mut r).unwrap();
        let x = rand_array(&mut r, &[2, cin, 4, 4], 1.0);
        let te = rand_array(&mut r, &[2, 5], 1.0);
        grad_check(
            &move |g, s, x| b.forward(g, s, &x[0], &x[1]).unwrap(),
            s,
            vec![x, te],
            30,
        );
    }
}

/// `AttnBlock`, `Downsample`, `Upsample` and the time-embedding MLP gradients match central
/// differences.
#[test]
fn attention_resampling_and_time_embedding_gradients_match_finite_differences() {
    let mut r = rng::seeded(4);
    let mut s = ParamStore::new();
    let a = AttnBlock::new(&mut s, "a", 4, 2, &mut r).unwrap();
    let x = rand_array(&mut r, &[2, 4, 3, 3], 1.0);
    grad_check(
        &move |g, s, x| a.forward(g, s, &x[0]).unwrap(),
        s,
        vec![x],
        40,
    );

    let mut s = ParamStore::new();
    let d = Downsample::new(&mut s, "d", 3, &mut r).unwrap();
    let x = rand_array(&mut r, &[1, 3, 6, 6], 1.0);
    grad_check(
        &move |g, s, x| d.forward(g, s, &x[0]).unwrap(),
        s,
        vec![x],
        41,
    );

    let mut s = ParamStore::new();
    let u = Upsample::new(&mut s, "u", 3, &mut r).unwrap();
    let x = rand_array(&mut r, &[1, 3, 3, 3], 1.0);
    grad_check(
        &move |g, s, x| u.forward(g, s, &x[0]).unwrap(),
        s,
        vec![x],
        42,
    );

    let mut s = ParamStore::new();
    let te = TimeEmbedding::new(&mut s, "temb", 8, 6, &mut r).unwrap();
    grad_check(
        &move |g, s, _| te.forward(g, s, &[3.0, 517.0]).unwrap(),
        s,
        vec![],
        43,
    );
}

fn tiny_unet_config(classes: Option<usize>) -> UNetConfig {
    UNetConfig {
        in_channels: 2,
        resolution: 4,
        base_channels: 4,
        channel_mult: vec![1, 2],
        num_res_blocks: 1,
        attn_resolutions: vec![2],
        groups: 2,
        temb_in: 4,
        temb_dim: 8,
        num_classes: classes,
    }
}

/// The whole `UNet` (small config with attention, skip concatenations, up/downsampling and class
/// conditioning) and the whole `MlpScoreNet`: every parameter tensor's gradient matches central
/// differences at random coordinates.
#[test]
fn network_gradients_match_finite_differences() {
    let mut s = ParamStore::new();
    let net = UNet::new(&mut s, tiny_unet_config(Some(3)), 5).unwrap();
    let mut r = rng::seeded(50);
    let x = rand_array(&mut r, &[2, 2, 4, 4], 1.0);
    grad_check(
        &move |g, s, x| {
            net.forward_cond(g, s, &x[0], &[10.0, 700.0], Some(&[2, 0]))
                .unwrap()
        },
        s,
        vec![x],
        51,
    );
    let mut s = ParamStore::new();
    let mlp = MlpScoreNet::new(
        &mut s,
        MlpConfig {
            data_dim: 3,
            width: 6,
            hidden: 2,
            ..MlpConfig::default()
        },
        6,
    )
    .unwrap();
    let x = rand_array(&mut r, &[4, 3], 1.0);
    grad_check(
        &move |g, s, x| mlp.forward(g, s, &x[0], &[0.01, 0.3, 0.5, 1.0]).unwrap(),
        s,
        vec![x],
        52,
    );
}

/// The checker itself rejects a wrong layer gradient: a "Linear" whose backward sees the weight
/// scaled by 1.001 (forward uses W, the tape records 1.001·W's product rule through a detached
/// correction) fails the check.
#[test]
fn gradient_check_rejects_a_wrong_gradient() {
    let mut r = rng::seeded(7);
    let mut s = ParamStore::new();
    let lin = Linear::new(&mut s, "l", 4, 3, 1.0, &mut r).unwrap();
    let x = rand_array(&mut r, &[2, 4], 1.0);
    // y = 1.001·(x Wᵀ + b) − 0.001·detach(x Wᵀ + b): same value, gradient 1.001 times too big.
    let wrong = move |g: &mut Graph<f64>, s: &ParamStore<f64>, x: &[Tensor<f64>]| {
        let y = lin.forward(g, s, &x[0]).unwrap();
        let big = g.mul_scalar(&y, 1.001);
        let corr = Tensor::constant(y.value().mapv(|v| -0.001 * v));
        g.add(&big, &corr).unwrap()
    };
    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        grad_check(&wrong, s, vec![x], 70)
    }));
    assert!(res.is_err(), "a 0.1% gradient error must be caught");
}

/// Output shapes: W1 maps `[2,1,28,28]` to `[2,1,28,28]`, W2 `[5,2]` to `[5,2]`; the
/// near-zero final conv makes the fresh U-Net's output tiny (|y| ≤ 1e-3), as in the reference.
#[test]
fn w1_and_w2_output_shapes() {
    let mut s = ParamStore::<f32>::new();
    let net = UNet::new(&mut s, UNetConfig::default(), 0).unwrap();
    let x = Tensor::from_vec(
        &[2, 1, 28, 28],
        (0..1568).map(|i| (i as f32 * 0.01).sin()).collect(),
    )
    .unwrap();
    let mut g = Graph::inference();
    let y = net.forward(&mut g, &s, &x, &[3.0, 999.0]).unwrap();
    assert_eq!(y.shape(), [2, 1, 28, 28]);
    assert!(y
        .as_slice()
        .iter()
        .all(|v| v.is_finite() && v.abs() <= 1e-3));
    let mut s = ParamStore::<f32>::new();
    let mlp = MlpScoreNet::new(&mut s, MlpConfig::default(), 0).unwrap();
    let x = Tensor::from_vec(&[5, 2], vec![0.5; 10]).unwrap();
    let y = mlp
        .forward(&mut Graph::inference(), &s, &x, &[0.0, 0.1, 0.2, 0.5, 1.0])
        .unwrap();
    assert_eq!(y.shape(), [5, 2]);
}

/// Bad configurations and inputs are typed errors, never panics.
#[test]
fn bad_configs_and_inputs_are_rejected() {
    let mut s = ParamStore::<f32>::new();
    let bad = [
        UNetConfig {
            groups: 3,
            ..UNetConfig::default()
        },
        UNetConfig {
            resolution: 27,
            ..UNetConfig::default()
        },
        UNetConfig {
            channel_mult: vec![],
            ..UNetConfig::default()
        },
        UNetConfig {
            num_classes: Some(0),
            ..UNetConfig::default()
        },
    ];
    for c in bad {
        assert!(matches!(
            UNet::new(&mut s, c, 0),
            Err(Error::InvalidParameter { .. })
        ));
    }
    assert!(MlpScoreNet::new(
        &mut ParamStore::<f32>::new(),
        MlpConfig {
            emb_dim: 5,
            ..MlpConfig::default()
        },
        0
    )
    .is_err());
    let mut s = ParamStore::<f32>::new();
    let net = UNet::new(&mut s, tiny_unet_config(Some(3)), 0).unwrap();
    let x = Tensor::<f32>::zeros(&[1, 2, 4, 4]);
    let mut g = Graph::inference();
    assert!(matches!(
        net.forward(&mut g, &s, &x, &[1.0]),
        Err(Error::InvalidParameter { .. })
    ));
    assert!(net
        .forward_cond(&mut g, &s, &x, &[1.0], Some(&[3]))
        .is_err());
    assert!(matches!(
        net.forward_cond(
            &mut g,
            &s,
            &Tensor::zeros(&[1, 2, 8, 8]),
            &[1.0],
            Some(&[0])
        ),
        Err(Error::Shape(_))
    ));
    assert!(matches!(
        net.forward_cond(&mut g, &s, &x, &[1.0, 2.0], Some(&[0])),
        Err(Error::Shape(_))
    ));
}

/// A copy of an f64 store rounded to f32 (same names, same ids).
fn to_f32(s: &ParamStore<f64>) -> ParamStore<f32> {
    let mut o = ParamStore::new();
    for (_, n, a) in s.iter() {
        o.add(n, a.mapv(|v| v as f32)).unwrap();
    }
    o
}

/// f32 and f64 forward passes agree. Tolerance: each of the ≤ L layers along the deepest path
/// rounds a dot product of ≤ k terms with error ≤ k·u·Σ|terms| (u = 2⁻²⁴ in f32) and the f32
/// parameters themselves carry relative error u; with terms O(1) the output error is at most
/// L·k·u·(max|y| + 1). W2: L = 4, k = 128. Small U-Net: L = 30 (convs, norms, attention),
/// k = 9·16 = 144.
#[test]
fn f32_forward_agrees_with_f64() {
    let u = f32::EPSILON as f64 / 2.0;
    // W2.
    let mut s = ParamStore::<f64>::new();
    let mlp = MlpScoreNet::new(&mut s, MlpConfig::default(), 3).unwrap();
    let s32 = to_f32(&s);
    let mut r = rng::seeded(8);
    let x = rand_array(&mut r, &[16, 2], 2.0);
    let t: Vec<f64> = (0..16).map(|i| i as f64 / 16.0).collect();
    let y64 = mlp
        .forward(
            &mut Graph::inference(),
            &s,
            &Tensor::constant(x.clone()),
            &t,
        )
        .unwrap();
    let y32 = mlp
        .forward(
            &mut Graph::inference(),
            &s32,
            &Tensor::constant(x.mapv(|v| v as f32)),
            &t,
        )
        .unwrap();
    let m = y64.as_slice().iter().fold(0.0f64, |a, v| a.max(v.abs()));
    let tol = 4.0 * 128.0 * u * (m + 1.0);
    for (a, b) in y64.as_slice().iter().zip(y32.as_slice()) {
        assert!((a - *b as f64).abs() <= tol, "{a} vs {b}, tol {tol:e}");
    }
    // Small U-Net with perturbed (non-zero) output layers.
    let mut s = ParamStore::<f64>::new();
    let cfg = UNetConfig {
        in_channels: 1,
        resolution: 8,
        base_channels: 8,
        channel_mult: vec![1, 2],
        num_res_blocks: 1,
        attn_resolutions: vec![4],
        groups: 4,
        temb_in: 8,
        temb_dim: 16,
        num_classes: None,
    };
    let net = UNet::new(&mut s, cfg, 4).unwrap();
    jitter(&mut s, &mut r);
    let s32 = to_f32(&s);
    let x = rand_array(&mut r, &[2, 1, 8, 8], 1.0);
    let y64 = net
        .forward(
            &mut Graph::inference(),
            &s,
            &Tensor::constant(x.clone()),
            &[5.0, 600.0],
        )
        .unwrap();
    let y32 = net
        .forward(
            &mut Graph::inference(),
            &s32,
            &Tensor::constant(x.mapv(|v| v as f32)),
            &[5.0, 600.0],
        )
        .unwrap();
    let m = y64.as_slice().iter().fold(0.0f64, |a, v| a.max(v.abs()));
    let tol = 30.0 * 144.0 * u * (m + 1.0);
    let worst = y64
        .as_slice()
        .iter()
        .zip(y32.as_slice())
        .map(|(a, b)| (a - *b as f64).abs())
        .fold(0.0, f64::max);
    assert!(worst <= tol, "worst {worst:e}, tol {tol:e}");
    assert!(m > 0.1, "outputs are not trivially small");
}

/// One W1 L_simple training step (batch 2, Adam lr 2e-4) run on rayon pools of 1 and 2 threads
/// leaves bit-identical parameters (no reduction is split across threads).
#[test]
fn w1_training_step_is_bit_identical_on_1_and_2_threads() {
    use scoresde::engine::optim::{Adam, AdamConfig};
    let run = |threads: usize| -> Vec<f32> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let mut s = ParamStore::<f32>::new();
            let net = UNet::new(&mut s, UNetConfig::default(), 42).unwrap();
            let mut opt = Adam::new(
                AdamConfig {
                    lr: 2e-4,
                    ..AdamConfig::default()
                },
                &s,
            )
            .unwrap();
            let mut r = rng::seeded(43);
            let x0: Vec<f32> = (0..2 * 784).map(|_| rng::normal(&mut r) as f32).collect();
            let eps: Vec<f32> = (0..2 * 784).map(|_| rng::normal(&mut r) as f32).collect();
            let t = [17usize, 901];
            // abar_t for linear betas 1e-4..0.02, T = 1000.
            let abar = |t: usize| {
                (0..=t)
                    .map(|s| 1.0 - (1e-4 + (0.02 - 1e-4) * s as f64 / 999.0))
                    .product::<f64>()
            };
            let xt: Vec<f32> = (0..2 * 784)
                .map(|i| {
                    let a = abar(t[i / 784]);
                    (a.sqrt() * x0[i] as f64 + (1.0 - a).sqrt() * eps[i] as f64) as f32
                })
                .collect();
            let mut g = Graph::new();
            let y = net
                .forward(
                    &mut g,
                    &s,
                    &Tensor::from_vec(&[2, 1, 28, 28], xt).unwrap(),
                    &[17.0, 901.0],
                )
                .unwrap();
            let loss = g
                .mse(&y, &Tensor::from_vec(&[2, 1, 28, 28], eps).unwrap())
                .unwrap();
            let gr = g.backward(&loss).unwrap();
            opt.step(&mut s, &gr).unwrap();
            s.iter()
                .flat_map(|(_, _, a)| a.iter().copied().collect::<Vec<_>>())
                .collect()
        })
    };
    let (a, b) = (run(1), run(2));
    assert_eq!(a.len(), 1_623_169);
    assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));
}

/// DDPM initialisation: weights of `up.0.0.conv1` (fan_in 1152, fan_out 576, 73,728 entries)
/// have sample variance 1/n_avg = 1/864 within a 5-sigma CLT band (false alarm < 6e-7): for
/// U(−a, a), Var(w²) = 4a⁴/45, so the sample variance has relative s.d. sqrt(4/5)/sqrt(n) =
/// 0.33%. Its twin: the "fan_in" variance 1/1152 is 25% lower and falls outside the band. The
/// near-zero layers (conv2, proj, conv_out) are bounded by sqrt(3e-10/n_avg) and biases are 0.
#[test]
fn initialisation_follows_ddpm_fan_avg() {
    let mut s = ParamStore::<f64>::new();
    UNet::new(&mut s, UNetConfig::default(), 0).unwrap();
    let w = s.get(s.id("up.0.0.conv1.weight").unwrap());
    let n = w.len() as f64;
    let var = w.iter().map(|v| v * v).sum::<f64>() / n;
    let band = |target: f64| (var - target).abs() <= 5.0 * (0.8f64).sqrt() / n.sqrt() * target;
    assert!(band(1.0 / 864.0), "variance {var}");
    assert!(!band(1.0 / 1152.0), "twin: fan_in scaling must be rejected");
    for (_, name, a) in s.iter() {
        if name.ends_with("conv2.weight")
            || name.ends_with(".proj.weight")
            || name == "conv_out.weight"
        {
            assert!(a.iter().all(|v| v.abs() <= 1e-5), "{name}");
        }
        if name.ends_with(".bias") {
            assert!(a.iter().all(|&v| v == 0.0), "{name}");
        }
        if name.contains("norm") && name.ends_with(".weight") {
            assert!(a.iter().all(|&v| v == 1.0), "{name}");
        }
    }
}

/// One W2 training step (VP-SDE DSM batch as in `examples/bench.rs`, MSE against the noise,
/// Adam lr 1e-3) from `net`'s parameters; returns the output, every gradient and the updated
/// parameters. `fused = false` builds each layer from the unfused ops `linear` + `silu`.
fn w2_step(batch: usize, fused: bool) -> Vec<Vec<u32>> {
    use scoresde::engine::optim::{Adam, AdamConfig};
    let mut s = ParamStore::<f32>::new();
    let net = MlpScoreNet::new(&mut s, MlpConfig::default(), 11).unwrap();
    let mut opt = Adam::new(AdamConfig::default(), &s).unwrap();
    let mut r = rng::seeded(12);
    let t: Vec<f64> = (0..batch)
        .map(|_| 1e-3 + 0.999 * r.random::<f64>())
        .collect();
    let x: Vec<f32> = (0..2 * batch).map(|_| rng::normal(&mut r) as f32).collect();
    let eps: Vec<f32> = (0..2 * batch).map(|_| rng::normal(&mut r) as f32).collect();
    let x = Tensor::from_vec(&[batch, 2], x).unwrap();
    let mut g = Graph::new();
    let y = if fused {
        net.forward(&mut g, &s, &x, &t).unwrap()
    } else {
        let tau: Vec<f64> = t.iter().map(|&v| 1000.0 * v).collect();
        let e = scoresde::engine::sinusoidal_embedding::<f32>(&tau, 16).unwrap();
        let mut h = g.concat(&[&x, &e], 1).unwrap();
        for (i, l) in net.layers.iter().enumerate() {
            h = l.forward(&mut g, &s, &h).unwrap();
            if i + 1 < net.layers.len() {
                h = g.silu(&h);
            }
        }
        h
    };
    let loss = g
        .mse(&y, &Tensor::from_vec(&[batch, 2], eps).unwrap())
        .unwrap();
    let gr = g.backward(&loss).unwrap();
    let mut out = vec![y.as_slice().iter().map(|v| v.to_bits()).collect::<Vec<_>>()];
    for (_, gp) in gr.params() {
        out.push(gp.iter().map(|v| v.to_bits()).collect());
    }
    opt.step(&mut s, &gr).unwrap();
    for (_, _, a) in s.iter() {
        out.push(a.iter().map(|v| v.to_bits()).collect());
    }
    out
}

/// The fused linear layers of `MlpScoreNet` (`Graph::linear_act`) compute the same bits as the
/// unfused composition `linear` + `silu` they replaced: output, all eight gradients and the
/// parameters after an Adam step, at a batch large enough for every kernel to split.
#[test]
fn w2_fused_layers_equal_the_unfused_composition_bit_for_bit() {
    let (fused, plain) = (w2_step(1024, true), w2_step(1024, false));
    assert_eq!(fused.len(), 1 + 8 + 8);
    for (i, (a, b)) in fused.iter().zip(&plain).enumerate() {
        assert!(a == b, "entry {i} differs");
    }
}

/// The W2 twin of `w1_training_step_is_bit_identical_on_1_and_2_threads`: a training step at
/// batch 1024 gives the same bits on rayon pools of 1 and 2 threads.
#[test]
fn w2_training_step_is_bit_identical_on_1_and_2_threads() {
    let run = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| w2_step(1024, true))
    };
    let (a, b) = (run(1), run(2));
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!(x == y, "entry {i} differs between 1 and 2 threads");
    }
}
