//! Adam, AdamW, gradient clipping, warm-up and EMA against steps computed by hand.
//!
//! Every expected value below is written out from the update formulas with literal numbers
//! (not by calling the optimiser). Tolerance: the quantities are O(1) and each expected value
//! is a few dozen f64 operations away from exact, so 1e-12 (≈ 4500 ulps at 1) is loose for
//! rounding yet tight enough to catch a missing bias correction or a misplaced epsilon (which
//! change the results by ≥ 1e-8).

use ndarray::{arr1, ArrayD, IxDyn};
use scoresde::engine::optim::{warmup_lr, Adam, AdamConfig, Ema, WeightDecay};
use scoresde::engine::{Grads, Graph, ParamId, ParamStore, Tensor};
use scoresde::error::Error;

const TOL: f64 = 1e-12;

fn store(vals: &[&[f64]]) -> ParamStore<f64> {
    let mut s = ParamStore::new();
    for (i, v) in vals.iter().enumerate() {
        s.add(format!("p{i}"), arr1(v).into_dyn()).unwrap();
    }
    s
}

/// Gradients equal to `gs` exactly: the loss `Σ_p Σ_i c_{p,i} θ_{p,i}` has gradient `c`.
fn grads(s: &ParamStore<f64>, gs: &[&[f64]]) -> Grads<f64> {
    let mut g = Graph::new();
    let mut total: Option<Tensor<f64>> = None;
    for (i, c) in gs.iter().enumerate() {
        let p = g.param(s, ParamId(i));
        let c = Tensor::constant(arr1(c).into_dyn());
        let prod = g.mul(&p, &c).unwrap();
        let l = g.sum_all(&prod);
        total = Some(match total {
            None => l,
            Some(t) => g.add(&t, &l).unwrap(),
        });
    }
    g.backward(&total.unwrap()).unwrap()
}

fn close(a: &ArrayD<f64>, b: &[f64]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() <= TOL, "{x} vs {y} (diff {:e})", x - y);
    }
}

/// Two Adam steps (lr 0.1, β = (0.9, 0.999), ε = 1e-8) written out by hand:
/// step 1: m = 0.1 g₁, v = 0.001 g₁², m̂ = g₁, v̂ = g₁², θ₁ = θ₀ − 0.1 g₁/(|g₁| + ε);
/// step 2: m = 0.9 m₁ + 0.1 g₂, v = 0.999 v₁ + 0.001 g₂², bias corrections 0.19 and 0.001999.
#[test]
fn adam_matches_two_hand_computed_steps() {
    let mut s = store(&[&[1.0, -2.0]]);
    let cfg = AdamConfig {
        lr: 0.1,
        ..AdamConfig::default()
    };
    let mut opt = Adam::new(cfg, &s).unwrap();
    let g1 = grads(&s, &[&[0.5, -1.0]]);
    opt.step(&mut s, &g1).unwrap();
    let t1 = [
        1.0 - 0.1 * 0.5 / (0.5 + 1e-8),
        -2.0 + 0.1 * 1.0 / (1.0 + 1e-8),
    ];
    close(s.get(ParamId(0)), &t1);
    close(opt.m(ParamId(0)), &[0.05, -0.1]);
    close(opt.v(ParamId(0)), &[0.00025, 0.001]);
    let g2 = grads(&s, &[&[-0.25, 2.0]]);
    opt.step(&mut s, &g2).unwrap();
    // m₂ = [0.045 − 0.025, −0.09 + 0.2], v₂ = [0.00024975 + 0.0000625, 0.000999 + 0.004].
    close(opt.m(ParamId(0)), &[0.02, 0.11]);
    close(opt.v(ParamId(0)), &[0.00031225, 0.004999]);
    let upd = |m: f64, v: f64| 0.1 * (m / 0.19) / ((v / 0.001999).sqrt() + 1e-8);
    close(
        s.get(ParamId(0)),
        &[t1[0] - upd(0.02, 0.00031225), t1[1] - upd(0.11, 0.004999)],
    );
    assert_eq!(opt.step_count(), 2);
}

/// The same step without bias correction would move θ by lr·0.1g/(sqrt(0.001)|g|) ≈ 0.316 lr,
/// not lr: the first hand-computed step above separates the two by far more than TOL.
#[test]
fn first_adam_step_moves_by_lr_not_by_the_uncorrected_ratio() {
    let mut s = store(&[&[0.0]]);
    let mut opt = Adam::new(
        AdamConfig {
            lr: 0.1,
            ..AdamConfig::default()
        },
        &s,
    )
    .unwrap();
    {
        let gr = grads(&s, &[&[3.0]]);
        opt.step(&mut s, &gr)
    }
    .unwrap();
    let moved = -s.get(ParamId(0))[[0]];
    let uncorrected = 0.1 * (0.1 * 3.0) / ((0.001f64 * 9.0).sqrt() + 1e-8);
    assert!((moved - 0.1 * 3.0 / (3.0 + 1e-8)).abs() < TOL);
    assert!((moved - uncorrected).abs() > 0.05);
}

/// AdamW (decoupled decay λ = 0.1, lr 0.1): θ₁ = θ₀(1 − 0.01) − 0.1 g/(|g| + ε); Adam with L2
/// decay instead feeds g + λθ₀ to the moments: θ₁ = θ₀ − 0.1 (g + λθ₀)/(|g + λθ₀| + ε).
#[test]
fn adamw_and_l2_decay_match_hand_computed_steps() {
    let mut s = store(&[&[2.0, -1.0]]);
    let cfg = AdamConfig {
        lr: 0.1,
        weight_decay: Some(WeightDecay::Decoupled(0.1)),
        ..AdamConfig::default()
    };
    let mut opt = Adam::new(cfg, &s).unwrap();
    {
        let gr = grads(&s, &[&[0.5, 0.25]]);
        opt.step(&mut s, &gr)
    }
    .unwrap();
    close(
        s.get(ParamId(0)),
        &[
            2.0 * 0.99 - 0.1 * 0.5 / (0.5 + 1e-8),
            -0.99 - 0.1 * 0.25 / (0.25 + 1e-8),
        ],
    );

    let mut s = store(&[&[2.0, -1.0]]);
    let cfg = AdamConfig {
        lr: 0.1,
        weight_decay: Some(WeightDecay::L2(0.1)),
        ..AdamConfig::default()
    };
    let mut opt = Adam::new(cfg, &s).unwrap();
    {
        let gr = grads(&s, &[&[0.5, 0.25]]);
        opt.step(&mut s, &gr)
    }
    .unwrap();
    // g + λθ = [0.7, 0.15].
    close(opt.m(ParamId(0)), &[0.07, 0.015]);
    close(
        s.get(ParamId(0)),
        &[
            2.0 - 0.1 * 0.7 / (0.7 + 1e-8),
            -1.0 - 0.1 * 0.15 / (0.15 + 1e-8),
        ],
    );
}

/// Global-norm clipping: gradients [3, 0] and [4] have norm 5; with max norm 1 every gradient
/// is scaled by 0.2 before the moments, so m₁ = 0.1 · 0.2 · g = [0.06, 0] and [0.08].
/// A norm below the threshold leaves the gradient alone.
#[test]
fn clipping_scales_all_gradients_by_the_global_norm() {
    let mut s = store(&[&[1.0, 1.0], &[1.0]]);
    let cfg = AdamConfig {
        clip_norm: Some(1.0),
        ..AdamConfig::default()
    };
    let mut opt = Adam::new(cfg, &s).unwrap();
    let info = {
        let gr = grads(&s, &[&[3.0, 0.0], &[4.0]]);
        opt.step(&mut s, &gr)
    }
    .unwrap();
    assert!((info.grad_norm - 5.0).abs() < TOL && (info.clip - 0.2).abs() < TOL);
    close(opt.m(ParamId(0)), &[0.06, 0.0]);
    close(opt.m(ParamId(1)), &[0.08]);
    close(opt.v(ParamId(1)), &[0.001 * 0.64]);

    let mut s = store(&[&[1.0]]);
    let cfg = AdamConfig {
        clip_norm: Some(10.0),
        ..AdamConfig::default()
    };
    let mut opt = Adam::new(cfg, &s).unwrap();
    let info = {
        let gr = grads(&s, &[&[3.0]]);
        opt.step(&mut s, &gr)
    }
    .unwrap();
    assert_eq!(info.clip, 1.0);
    close(opt.m(ParamId(0)), &[0.3]);
}

/// Linear warm-up over 4 steps with peak lr 0.1: steps use 0.025, 0.05, 0.075, 0.1, 0.1, and
/// the first Adam step moves θ by 0.025 (|m̂/sqrt(v̂)| = 1 up to ε).
#[test]
fn warmup_ramps_the_learning_rate_linearly() {
    let expected = [0.025, 0.05, 0.075, 0.1, 0.1];
    for (t, e) in (1..=5).zip(expected) {
        assert!((warmup_lr(0.1, t, 4) - e).abs() < TOL);
    }
    assert_eq!(warmup_lr(0.1, 1, 0), 0.1);
    let mut s = store(&[&[0.0]]);
    let cfg = AdamConfig {
        lr: 0.1,
        warmup: 4,
        ..AdamConfig::default()
    };
    let mut opt = Adam::new(cfg, &s).unwrap();
    let info = {
        let gr = grads(&s, &[&[2.0]]);
        opt.step(&mut s, &gr)
    }
    .unwrap();
    assert!((info.lr - 0.025).abs() < TOL);
    close(s.get(ParamId(0)), &[-0.025 * 2.0 / (2.0 + 1e-8)]);
}

/// EMA (A1.18), m = 0.9, θ' starting at θ₀ = [1, 2]; after θ₁ = [3, −1] and θ₂ = [0, 0]:
/// θ'₁ = 0.9[1, 2] + 0.1[3, −1] = [1.2, 1.7], θ'₂ = 0.9 θ'₁ = [1.08, 1.53], which is the
/// unrolled closed form m² θ₀ + (1−m)(m θ₁ + θ₂).
#[test]
fn ema_matches_hand_computed_updates_and_the_unrolled_sum() {
    let mut s = store(&[&[1.0, 2.0]]);
    let mut ema = Ema::new(&s, 0.9).unwrap();
    s.set(ParamId(0), arr1(&[3.0, -1.0]).into_dyn()).unwrap();
    ema.update(&s).unwrap();
    close(ema.get(ParamId(0)), &[1.2, 1.7]);
    s.set(ParamId(0), arr1(&[0.0, 0.0]).into_dyn()).unwrap();
    ema.update(&s).unwrap();
    close(ema.get(ParamId(0)), &[1.08, 1.53]);
    let unrolled = [
        0.81 * 1.0 + 0.1 * (0.9 * 3.0),
        0.81 * 2.0 + 0.1 * (0.9 * -1.0),
    ];
    close(ema.get(ParamId(0)), &unrolled);
    let avg = ema.averaged(&s).unwrap();
    close(avg.get(ParamId(0)), &[1.08, 1.53]);
}

/// The prose under 000 eq. 1.18 calls θ' "the parameters after step i−1". Read literally that
/// gives m θ₁ + (1−m) θ₂ = [2.7, −0.9] after the two steps above — not the running average
/// [1.08, 1.53] that the recursion defines: θ' is the EMA's own state.
#[test]
fn ema_state_is_not_the_previous_parameters() {
    let mut s = store(&[&[1.0, 2.0]]);
    let mut ema = Ema::new(&s, 0.9).unwrap();
    for v in [[3.0, -1.0], [0.0, 0.0]] {
        s.set(ParamId(0), arr1(&v).into_dyn()).unwrap();
        ema.update(&s).unwrap();
    }
    let literal = [0.9 * 3.0 + 0.1 * 0.0, 0.9 * -1.0 + 0.1 * 0.0];
    let e = ema.get(ParamId(0));
    assert!((e[[0]] - literal[0]).abs() > 1.0 && (e[[1]] - literal[1]).abs() > 1.0);
}

/// Hyper-parameters outside their domain are typed errors.
#[test]
fn bad_hyperparameters_are_rejected() {
    let s = store(&[&[1.0]]);
    for cfg in [
        AdamConfig {
            lr: -1.0,
            ..AdamConfig::default()
        },
        AdamConfig {
            beta1: 1.0,
            ..AdamConfig::default()
        },
        AdamConfig {
            beta2: f64::NAN,
            ..AdamConfig::default()
        },
        AdamConfig {
            eps: 0.0,
            ..AdamConfig::default()
        },
        AdamConfig {
            clip_norm: Some(0.0),
            ..AdamConfig::default()
        },
        AdamConfig {
            weight_decay: Some(WeightDecay::Decoupled(-0.1)),
            ..AdamConfig::default()
        },
    ] {
        assert!(matches!(
            Adam::new(cfg, &s),
            Err(Error::InvalidParameter { .. })
        ));
    }
    assert!(matches!(
        Ema::new(&s, 1.5),
        Err(Error::InvalidParameter { .. })
    ));
    let _ = ArrayD::<f64>::zeros(IxDyn(&[1]));
}
