//! The objectives inside the training loop: each resumes bit-identically, DDPM's Algorithm 1
//! trains a chain model that ancestral sampling inverts (ledger Ac09, Cc14), sliced score
//! matching trains a model whose probability flow samples the data (ledger Dc31), and the
//! 8-mode ring reaches its quality target with the command-line defaults (ignored: ~2 min).
//!
//! The two-sample checks use the energy test with 199 permutations at level 1% (false alarm
//! 1% per check under the null; the seeds are fixed, so each run is the same run). Each has a
//! twin: the same check on a deliberately wrong sampler or an untrained model rejects.

use ndarray::{s, Array2};
use scoresde::data::Toy;
use scoresde::engine::nn::MlpConfig;
use scoresde::engine::optim::AdamConfig;
use scoresde::loss::{Prediction, Weighting};
use scoresde::rng::seeded;
use scoresde::sampler::ddpm::{DdpmSampler, ReverseVariance};
use scoresde::sampler::ode::{OdeMethod, ProbabilityFlow, Rk45Options};
use scoresde::sampler::Silent;
use scoresde::stats::energy_test;
use scoresde::train::config::{ddpm_schedule, DDPM_STEPS};
use scoresde::train::{
    ModelSpec, Objective, RunDir, SdeKind, Source, TimeSampling, TrainConfig, Trainer,
};
use std::path::PathBuf;

fn config(objective: Objective, width: usize, steps: u64) -> TrainConfig {
    TrainConfig {
        data: "lopsided".into(),
        model: ModelSpec::Mlp(MlpConfig {
            data_dim: 2,
            width,
            hidden: 2,
            emb_dim: 16,
            time_scale: 1000.0,
        }),
        sde: SdeKind::Vp,
        ve_sigma_max: 5.0,
        objective,
        weighting: Weighting::SigmaSquared,
        time_sampling: TimeSampling::Uniform,
        adam: AdamConfig {
            lr: 2e-3,
            warmup: 100,
            clip_norm: Some(1.0),
            ..Default::default()
        },
        ema_decay: 0.99,
        batch: 128,
        steps,
        seed: 5,
        t_eps: 1e-3,
        checkpoint_every: 100,
        max_loss: 1e4,
    }
}

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("scoresde-obj-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn state_bits(t: &Trainer) -> Vec<u32> {
    let mut v = Vec::new();
    for (id, _, a) in t.store.iter() {
        v.extend(a.iter().map(|x| x.to_bits()));
        v.extend(t.ema.get(id).iter().map(|x| x.to_bits()));
        v.extend(t.adam.m(id).iter().map(|x| x.to_bits()));
        v.extend(t.adam.v(id).iter().map(|x| x.to_bits()));
    }
    v
}

/// For every objective (DSM with importance-sampled t and the likelihood weighting, SSM,
/// DDPM with eps, x0 and v prediction): 300 steps in one go and 150 steps + resume from the
/// checkpoint + 150 more give bit-identical parameters, Adam moments and EMA.
#[test]
fn every_objective_resumes_bit_identically() {
    let cases: Vec<(&str, Objective, bool)> = vec![
        ("dsm-importance", Objective::Dsm, true),
        ("ssm", Objective::Ssm, false),
        ("ddpm-eps", Objective::Ddpm(Prediction::Eps), false),
        ("ddpm-x0", Objective::Ddpm(Prediction::X0), false),
        ("ddpm-v", Objective::Ddpm(Prediction::V), false),
    ];
    let src = Source::Toy(Toy::Lopsided);
    for (tag, objective, importance) in cases {
        let cfg = |steps| {
            let mut c = config(objective, 16, steps);
            if importance {
                c.weighting = Weighting::Likelihood;
                c.time_sampling = TimeSampling::Importance;
            }
            c
        };
        let mut a = Trainer::new(cfg(300)).unwrap();
        a.train(&src, None, &mut |_| {}).unwrap();
        let dir = tempdir(tag);
        let mut b = Trainer::new(cfg(150)).unwrap();
        let rb = RunDir::open(&dir, &b.config.to_json(), None).unwrap();
        b.train(&src, Some(&rb), &mut |_| {}).unwrap();
        let mut c = Trainer::new(cfg(300)).unwrap();
        c.resume(&rb.checkpoint_path()).unwrap();
        c.train(&src, None, &mut |_| {}).unwrap();
        assert_eq!(c.step_count(), 300, "{tag}");
        assert!(
            state_bits(&a) == state_bits(&c),
            "{tag}: resumed run differs"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

fn two_sample_p(x: &Array2<f64>, toy: Toy, seed: u64) -> f64 {
    let m = x.nrows();
    let exact = toy.sample(m, &mut seeded(seed));
    energy_test(x.slice(s![.., ..]), exact.slice(s![.., ..]), 199, seed)
        .unwrap()
        .p_value
}

/// Ledger Ac09, Cc14 (DDPM Algorithm 1 and the training steps of 002 section 3.2): a small
/// MLP trained by `L_simple` on `t ~ U{1..T}`, `x_t = sqrt(abar_t) x0 + sqrt(1 − abar_t) eps`
/// for the 3-component `lopsided` mixture, then sampled by Algorithm 2 over the same
/// 1000-step chain, gives 500 samples the energy test does not tell from exact draws at 1%.
/// Twin: the same model sampled with its time input off by the factor T (the network reads
/// the step index `i` as if it were `i / T`) is rejected.
#[test]
fn ddpm_algorithm1_trains_a_chain_that_ancestral_sampling_inverts() {
    let mut t = Trainer::new(config(Objective::Ddpm(Prediction::Eps), 64, 4000)).unwrap();
    t.train(&Source::Toy(Toy::Lopsided), None, &mut |_| {})
        .unwrap();
    let model = t.score_model().unwrap().for_chain(DDPM_STEPS);
    let sampler = DdpmSampler::new(ddpm_schedule().unwrap(), ReverseVariance::Beta);
    let x = sampler
        .sample(&model, 500, &mut seeded(21), &mut Silent)
        .unwrap();
    let p = two_sample_p(&x, Toy::Lopsided, 22);
    assert!(p > 0.01, "DDPM samples rejected: p = {p}");
    let wrong = t.score_model().unwrap();
    let y = sampler
        .sample(&wrong, 500, &mut seeded(21), &mut Silent)
        .unwrap();
    let q = two_sample_p(&y, Toy::Lopsided, 22);
    assert!(
        q <= 0.01,
        "the wrongly timed sampler was not rejected: p = {q}"
    );
}

/// Ledger Dc31 (003 section 3.3): sliced score matching on samples of `p_t` (drawn through
/// the kernel), with no use of `∇ log p_0t`, trains a model whose probability-flow ODE (RK45,
/// rtol = atol = 1e-5) maps 500 prior draws to samples the energy test does not tell from the
/// `lopsided` mixture at 1%. Twin: the untrained network (same seed, 0 steps) is rejected.
#[test]
fn sliced_score_matching_trains_a_model_whose_flow_samples_the_data() {
    let src = Source::Toy(Toy::Lopsided);
    let flow_samples = |t: &Trainer| {
        let model = t.score_model().unwrap();
        let sde = t.sde();
        let flow = ProbabilityFlow::new(sde, &model, sde.t_eps()).unwrap();
        flow.sample(
            500,
            OdeMethod::Rk45(Rk45Options::new(1e-5, 1e-5).unwrap()),
            &mut seeded(31),
            &mut Silent,
        )
        .unwrap()
        .x
    };
    let mut t = Trainer::new(config(Objective::Ssm, 64, 4000)).unwrap();
    let untrained = flow_samples(&t);
    t.train(&src, None, &mut |_| {}).unwrap();
    let x = flow_samples(&t);
    let p = two_sample_p(&x, Toy::Lopsided, 32);
    assert!(p > 0.01, "SSM flow samples rejected: p = {p}");
    let q = two_sample_p(&untrained, Toy::Lopsided, 32);
    assert!(q <= 0.01, "the untrained model was not rejected: p = {q}");
}

/// The quality target of issue 5 for the 8-mode ring, end to end through the binary with the
/// command-line defaults (DSM, likelihood weighting, importance-sampled t, 20,000 steps,
/// lr 2e-3, EMA 0.999): training takes under 2 minutes of wall time, the energy test of
/// 1,000 reverse-diffusion samples against exact draws does not reject at 1%, and the PF-ODE
/// NLL of 1,000 exact draws is within 0.1 nats of the true entropy on the same points (the
/// paired gap's point estimate; its standard error is printed). Ignored: it trains for about
/// 1.5 minutes on 2 cores. Run with `cargo test --release --test train_objectives -- --ignored`.
#[test]
#[ignore]
fn ring8_quality_target_end_to_end() {
    let bin = env!("CARGO_BIN_EXE_scoresde");
    let dir = tempdir("ring8");
    let started = std::time::Instant::now();
    let out = std::process::Command::new(bin)
        .args(["train", "--data", "ring8", "--out"])
        .arg(&dir)
        .output()
        .unwrap();
    let secs = started.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    println!("{text}");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let trained: f64 = text
        .lines()
        .find(|l| l.starts_with("trained"))
        .and_then(|l| l.split(" in ").nth(1))
        .and_then(|l| l.split('s').next())
        .and_then(|v| v.parse().ok())
        .expect("training time line");
    println!("training {trained:.1} s (whole command {secs:.1} s)");
    assert!(trained < 120.0, "training took {trained} s");
    assert!(
        text.contains("not rejected at 1%"),
        "energy test rejected the samples"
    );
    let out = std::process::Command::new(bin)
        .args(["likelihood", "--n", "1000", "--checkpoint"])
        .arg(dir.join("checkpoint.safetensors"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    println!("{text}");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let gap: f64 = text
        .lines()
        .find(|l| l.starts_with("gap"))
        .and_then(|l| l.split(": ").nth(1))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("gap line");
    assert!(gap.abs() < 0.1, "NLL - entropy = {gap} nats");
    let _ = std::fs::remove_dir_all(&dir);
}
