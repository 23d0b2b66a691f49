//! The training loop: bit-identical resumption, divergence stops that keep the last good
//! checkpoint, configuration checks, and the eps -> score conversion of a trained network.

use scoresde::data::Toy;
use scoresde::engine::nn::MlpConfig;
use scoresde::engine::optim::AdamConfig;
use scoresde::engine::{Graph, Tensor};
use scoresde::loss::Weighting;
use scoresde::score::{Level, ScoreModel};
use scoresde::train::{
    ModelSpec, Objective, RunDir, SdeKind, Source, TimeSampling, TrainConfig, Trainer,
};
use scoresde::Error;
use std::path::PathBuf;

fn tiny(steps: u64) -> TrainConfig {
    TrainConfig {
        data: "ring8".into(),
        model: ModelSpec::Mlp(MlpConfig {
            data_dim: 2,
            width: 16,
            hidden: 2,
            emb_dim: 8,
            time_scale: 1000.0,
        }),
        sde: SdeKind::Vp,
        ve_sigma_max: 5.0,
        objective: Objective::Dsm,
        weighting: Weighting::SigmaSquared,
        time_sampling: TimeSampling::Uniform,
        adam: AdamConfig {
            lr: 2e-3,
            warmup: 50,
            clip_norm: Some(1.0),
            ..Default::default()
        },
        ema_decay: 0.99,
        batch: 32,
        steps,
        seed: 11,
        t_eps: 1e-3,
        checkpoint_every: 300,
        max_loss: 1e4,
    }
}

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("scoresde-train-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn params(t: &Trainer) -> Vec<u32> {
    let mut v = Vec::new();
    for (_, _, a) in t.store.iter() {
        v.extend(a.iter().map(|x| x.to_bits()));
    }
    for (id, _, _) in t.store.iter() {
        v.extend(t.ema.get(id).iter().map(|x| x.to_bits()));
        v.extend(t.adam.m(id).iter().map(|x| x.to_bits()));
        v.extend(t.adam.v(id).iter().map(|x| x.to_bits()));
    }
    v
}

/// Training 2,000 steps in one go and 1,000 steps + resume from the checkpoint + 1,000 more
/// give bit-identical parameters, Adam moments and EMA (the batch of step k depends only on
/// (seed, k); the state is in the checkpoint). The loss also falls (a sanity check that the
/// loop learns: the mean loss of the last 200 steps is below that of the first 50).
#[test]
fn resume_is_bit_identical() {
    let src = Source::Toy(Toy::Ring8);
    let da = tempdir("a");
    let mut a = Trainer::new(tiny(2000)).unwrap();
    let ra = RunDir::open(&da, &a.config.to_json(), None).unwrap();
    let mut losses = Vec::new();
    a.train(&src, Some(&ra), &mut |r| losses.push(r.loss))
        .unwrap();
    let first: f64 = losses[..50].iter().sum::<f64>() / 50.0;
    let last: f64 = losses[1800..].iter().sum::<f64>() / 200.0;
    assert!(last < first, "loss did not fall: {first} -> {last}");

    let db = tempdir("b");
    let mut b = Trainer::new(tiny(1000)).unwrap();
    let rb = RunDir::open(&db, &b.config.to_json(), None).unwrap();
    b.train(&src, Some(&rb), &mut |_| {}).unwrap();
    let mut c = Trainer::new(tiny(2000)).unwrap();
    c.resume(&rb.checkpoint_path()).unwrap();
    assert_eq!(c.step_count(), 1000);
    let rc = RunDir::open(&db, &c.config.to_json(), Some(1000)).unwrap();
    c.train(&src, Some(&rc), &mut |_| {}).unwrap();
    assert_eq!(c.step_count(), 2000);
    assert!(
        params(&a) == params(&c),
        "resumed run differs from the uninterrupted one"
    );
    // The metrics file of the resumed run has exactly one row per step.
    assert_eq!(rc.loss_history().unwrap().len(), 2000);
    // A fresh run refuses to overwrite a directory with a checkpoint.
    assert!(RunDir::open(&db, "{}", None).is_err());
}

/// An absurd learning rate (10, warmed up linearly over 1,000 steps) makes the loss explode: training
/// stops with `Error::NonFinite` naming the step and the kept checkpoint, and the checkpoint
/// on disk is the last state whose loss was checked (after step k − 2 when step k's loss,
/// computed from the state after step k − 1, is the first bad one), with finite parameters and a loss below
/// `max_loss` (checked by resuming it and evaluating one step's loss through a 1-step run).
#[test]
fn exploding_loss_stops_and_keeps_last_good_checkpoint() {
    let mut cfg = tiny(1000);
    cfg.adam = AdamConfig {
        lr: 10.0,
        warmup: 1000,
        ..Default::default()
    };
    cfg.checkpoint_every = 1;
    let dir = tempdir("nan");
    let mut t = Trainer::new(cfg.clone()).unwrap();
    let r = RunDir::open(&dir, &cfg.to_json(), None).unwrap();
    let err = t
        .train(&Source::Toy(Toy::Ring8), Some(&r), &mut |_| {})
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::NonFinite(_)), "{msg}");
    assert!(
        msg.contains("training stopped at step") && msg.contains("last good checkpoint"),
        "{msg}"
    );
    let failed: u64 = msg
        .split("step ")
        .nth(1)
        .unwrap()
        .split(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        failed > 2,
        "diverged too early to test the checkpoint ({msg})"
    );
    let mut back = Trainer::new(cfg.clone()).unwrap();
    back.resume(&r.checkpoint_path()).unwrap();
    // The loss of step k is that of the state after step k - 1: that state is the bad one,
    // the last good checkpoint is the state after step k - 2.
    assert_eq!(back.step_count(), failed - 2);
    assert!(back
        .store
        .iter()
        .all(|(_, _, a)| a.iter().all(|v| v.is_finite())));
}

/// A loss that becomes infinite or NaN (learning rate 1e30, no bound on the loss) stops the
/// run at step 2 with a clear message and writes no checkpoint.
#[test]
fn non_finite_loss_stops_without_writing_a_checkpoint() {
    let mut cfg = tiny(100);
    cfg.adam = AdamConfig {
        lr: 1e30,
        ..Default::default()
    };
    cfg.max_loss = f64::MAX;
    cfg.checkpoint_every = 1;
    let dir = tempdir("inf");
    let mut t = Trainer::new(cfg.clone()).unwrap();
    let r = RunDir::open(&dir, &cfg.to_json(), None).unwrap();
    let msg = t
        .train(&Source::Toy(Toy::Ring8), Some(&r), &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("step 2") && msg.contains("no checkpoint was written"),
        "{msg}"
    );
    assert!(!r.checkpoint_path().exists());
}

/// Bad configurations and mismatched resumes are typed errors: zero batch, EMA decay 1,
/// t_eps outside (0,1), a non-positive learning rate, data of the wrong dimension, and a
/// checkpoint trained with another seed.
#[test]
fn bad_configurations_are_rejected() {
    let bad = |f: &dyn Fn(&mut TrainConfig)| {
        let mut c = tiny(10);
        f(&mut c);
        Trainer::new(c).is_err()
    };
    assert!(bad(&|c| c.batch = 0));
    assert!(bad(&|c| c.ema_decay = 1.0));
    assert!(bad(&|c| c.t_eps = 0.0));
    assert!(bad(&|c| c.adam.lr = -1.0));
    assert!(bad(&|c| c.steps = 0));
    let mut t = Trainer::new(tiny(10)).unwrap();
    let digits = scoresde::data::digits::load().unwrap();
    assert!(matches!(
        t.train(&Source::Data(digits), None, &mut |_| {}),
        Err(Error::Shape(_))
    ));
    let dir = tempdir("seed");
    let r = RunDir::open(&dir, "{}", None).unwrap();
    t.train(&Source::Toy(Toy::Ring8), Some(&r), &mut |_| {})
        .unwrap();
    let mut other = tiny(10);
    other.seed = 12;
    let mut u = Trainer::new(other).unwrap();
    assert!(
        matches!(u.resume(&r.checkpoint_path()), Err(Error::Checkpoint(m)) if m.contains("different configuration"))
    );
}

/// `NetScore` is `−eps_theta(x, t) / sigma`: compared with the network output evaluated
/// directly through the graph, at a level whose std is 0.3 (exact up to f32 rounding of the
/// output, relative 1e-6).
#[test]
fn net_score_is_minus_eps_over_sigma() {
    let t = Trainer::new(tiny(10)).unwrap();
    let s = t.score_model().unwrap();
    let x = ndarray::arr2(&[[0.5, -1.0], [2.0, 0.1], [0.0, 0.0]]);
    let level = Level {
        t: 0.4,
        scale: 0.7,
        std: 0.3,
    };
    let got = s.score(x.view(), level);
    let mut g = Graph::<f32>::inference();
    let xt = Tensor::from_vec(&[3, 2], x.iter().map(|&v| v as f32).collect()).unwrap();
    let store = t.ema.averaged(&t.store).unwrap();
    let e = t.net.eps(&mut g, &store, &xt, &[0.4; 3]).unwrap();
    for (gv, ev) in got.iter().zip(e.as_slice()) {
        let want = -(*ev as f64) / 0.3;
        assert!(
            (gv - want).abs() <= 1e-6 * want.abs().max(1.0),
            "{gv} vs {want}"
        );
    }
    // A zero std is refused (NaN score for the sampler, typed error from try_score).
    assert!(s
        .try_score(
            x.view(),
            Level {
                t: 0.0,
                scale: 1.0,
                std: 0.0
            }
        )
        .is_err());
    assert!(s
        .score(
            x.view(),
            Level {
                t: 0.0,
                scale: 1.0,
                std: 0.0
            }
        )
        .iter()
        .all(|v| v.is_nan()));
}
