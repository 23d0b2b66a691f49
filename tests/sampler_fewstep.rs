//! EDM Heun with Karras sigmas and DPM-Solver++(2M): distribution tests on the exact mixture
//! score with twins, second-order convergence against the exact Gaussian PF-ODE flow, errors.

use ndarray::{array, Array1, Array2, ArrayView2};
use scoresde::gaussian::{GaussianMixture, MvGaussian};
use scoresde::rng::seeded;
use scoresde::sampler::ddim::{timesteps, Ddim, FinalAlpha, Spacing};
use scoresde::sampler::dpm_solver::{dpm_solver_pp_2m, dpm_solver_sample};
use scoresde::sampler::edm::{edm_heun, edm_sample, karras_sigmas};
use scoresde::sampler::Silent;
use scoresde::schedule::beta::BetaSchedule;
use scoresde::score::{Level, MixtureScore, ScoreModel};
use scoresde::stats::{covariance, energy_test, mean, normal_quantile_two_sided};
use scoresde::Error;

const N: usize = 500;
const ALPHA: f64 = 1e-3;

/// The energy permutation test at ALPHA (999 permutations) plus mean and covariance CLT checks
/// at z(ALPHA/5) (Bonferroni over 5 statistics; standard errors estimated from the sample).
fn matches(x: ArrayView2<f64>, mix: &GaussianMixture, seed: u64) -> bool {
    let exact = mix.sample_n(N, &mut seeded(seed));
    let p = energy_test(x, exact.view(), 999, seed + 1).unwrap().p_value;
    let z = normal_quantile_two_sided(ALPHA / 5.0).unwrap();
    let (m, c, mt, ct) = (mean(x), covariance(x), mix.mean(), mix.covariance());
    let n = x.nrows() as f64;
    let mut ok = p > ALPHA;
    for i in 0..2 {
        ok &= (m[i] - mt[i]).abs() < z * (ct[[i, i]] / n).sqrt();
        for j in i..2 {
            let prod: Vec<f64> = x
                .rows()
                .into_iter()
                .map(|r| (r[i] - m[i]) * (r[j] - m[j]))
                .collect();
            let pm = prod.iter().sum::<f64>() / n;
            let pv = prod.iter().map(|v| (v - pm).powi(2)).sum::<f64>() / (n - 1.0);
            ok &= (c[[i, j]] - ct[[i, j]]).abs() < z * (pv / n).sqrt();
        }
    }
    ok
}

/// A model queried at the wrong level: its std is scaled by `factor` (the bug of reading the
/// noise level of the wrong process or the wrong index).
struct WrongLevel(MixtureScore, f64);
impl ScoreModel for WrongLevel {
    fn dim(&self) -> usize {
        self.0.dim()
    }
    fn score(&self, x: ArrayView2<f64>, l: Level) -> Array2<f64> {
        self.0.score(
            x,
            Level {
                std: l.std * self.1,
                ..l
            },
        )
    }
}

/// Karras levels: `rho = 7`, `n = 4` from 80 to 0.002 match the closed form at the ends, are
/// decreasing, end in 0, and the middle ones equal the rho-th power of the linear interpolation
/// of `sigma^(1/rho)` (checked by taking the 1/rho root).
#[test]
fn karras_sigmas_follow_the_rho_schedule() {
    let s = karras_sigmas(4, 0.002, 80.0, 7.0).unwrap();
    assert_eq!(s.len(), 5);
    assert_eq!((s[0], s[3], s[4]), (80.0, 0.002, 0.0));
    let (a, b) = (80f64.powf(1.0 / 7.0), 0.002f64.powf(1.0 / 7.0));
    for (i, &si) in s[..4].iter().enumerate() {
        // a few ulps from powf on each side
        assert!((si.powf(1.0 / 7.0) - (a + i as f64 / 3.0 * (b - a))).abs() < 1e-12);
    }
    assert!(matches!(
        karras_sigmas(0, 0.1, 1.0, 7.0),
        Err(Error::InvalidSchedule(_))
    ));
    assert!(matches!(
        karras_sigmas(5, 1.0, 0.1, 7.0),
        Err(Error::InvalidSchedule(_))
    ));
    assert!(matches!(
        karras_sigmas(5, 0.1, 1.0, -7.0),
        Err(Error::InvalidParameter { .. })
    ));
}

/// EDM Heun, 32 Karras levels (63 model calls) from sigma 80 to 0.002 then 0, on the exact VE
/// score of the lopsided mixture, passes the distribution checks. Starting from N(0, 80^2 I)
/// instead of the true p_80 changes the variance by at most 0.4/6400, far below resolution.
#[test]
fn edm_heun_matches_mixture() {
    let mix = GaussianMixture::lopsided();
    let model = MixtureScore::new(mix.clone());
    let sig = karras_sigmas(32, 0.002, 80.0, 7.0).unwrap();
    let x = edm_sample(&model, N, &sig, &mut seeded(51), &mut Silent).unwrap();
    assert!(matches(x.view(), &mix, 52));
}

/// Twin: the same sampler querying the score at 1.5 times the noise level is rejected.
#[test]
fn edm_heun_with_wrong_level_is_rejected() {
    let mix = GaussianMixture::lopsided();
    let model = WrongLevel(MixtureScore::new(mix.clone()), 1.5);
    let sig = karras_sigmas(32, 0.002, 80.0, 7.0).unwrap();
    let x = edm_sample(&model, N, &sig, &mut seeded(51), &mut Silent).unwrap();
    assert!(!matches(x.view(), &mix, 52));
}

fn vp_schedule_levels(steps: usize) -> Vec<Level> {
    let d = Ddim::new(
        BetaSchedule::linear(1000, 1e-4, 0.02).unwrap(),
        steps,
        Spacing::Trailing,
        FinalAlpha::One,
        0.0,
    )
    .unwrap();
    d.levels().unwrap()
}

/// DPM-Solver++(2M) with 25 trailing steps of the DDPM schedule (final step to alpha_bar = 1) on
/// the exact VP score of the lopsided mixture passes the distribution checks.
#[test]
fn dpm_solver_2m_matches_mixture() {
    let mix = GaussianMixture::lopsided();
    let model = MixtureScore::new(mix.clone());
    let x = dpm_solver_sample(
        &model,
        N,
        &vp_schedule_levels(25),
        &mut seeded(61),
        &mut Silent,
    )
    .unwrap();
    assert!(matches(x.view(), &mix, 62));
}

/// Twin: the same solver querying the score at 1.5 times the noise std is rejected.
#[test]
fn dpm_solver_2m_with_wrong_level_is_rejected() {
    let mix = GaussianMixture::lopsided();
    let model = WrongLevel(MixtureScore::new(mix.clone()), 1.5);
    let x = dpm_solver_sample(
        &model,
        N,
        &vp_schedule_levels(25),
        &mut seeded(61),
        &mut Silent,
    )
    .unwrap();
    assert!(!matches(x.view(), &mix, 62));
}

fn gaussian_model(v: f64) -> MixtureScore {
    let g = MvGaussian::isotropic(Array1::zeros(2), v).unwrap();
    MixtureScore::new(GaussianMixture::new(array![1.0], vec![g]).unwrap())
}

fn max_err(a: &Array2<f64>, b: &Array2<f64>) -> f64 {
    (a - b).iter().fold(0.0f64, |m, e| m.max(e.abs()))
}

/// EDM Heun is second order: on Gaussian data N(0, v I) the VE PF-ODE flow is
/// `x_sigma = x_max sqrt(v + sigma^2)/sqrt(v + sigma_max^2)`. Heun through n = 8..128 Karras
/// levels from 80 to 0.002 (without the final Euler step to 0, whose error does not shrink with
/// n) has error ratio -> 4 as n doubles; the observed order at the finest pair must be within 0.15
/// of 2 (the next term is O(1/n) relative, a few percent at n = 128).
#[test]
fn edm_heun_is_second_order_against_exact_gaussian_flow() {
    let v = 0.5;
    let model = gaussian_model(v);
    let x = array![[40.0, -20.0]];
    let mut errs = Vec::new();
    for n in [8usize, 16, 32, 64, 128] {
        let mut s = karras_sigmas(n, 0.002, 80.0, 7.0).unwrap();
        s.pop();
        let exact = &x * ((v + 0.002f64.powi(2)).sqrt() / (v + 6400.0f64).sqrt());
        let y = edm_heun(&model, x.clone(), &s, &mut Silent).unwrap();
        errs.push(max_err(&y, &exact));
    }
    let orders: Vec<f64> = errs.windows(2).map(|w| (w[0] / w[1]).log2()).collect();
    eprintln!("EDM Heun errors {errs:?} orders {orders:?}");
    assert!((orders[3] - 2.0).abs() < 0.15, "{orders:?}");
}

/// A continuous VP level (beta(t) = 0.1 + 19.9 t): `ln scale = -(0.1 t + 19.9 t^2/2)/2`.
fn vp_level(t: f64) -> Level {
    let ls = -0.5 * (0.1 * t + 0.5 * 19.9 * t * t);
    Level {
        t,
        scale: ls.exp(),
        std: (-(2.0 * ls).exp_m1()).sqrt(),
    }
}

/// DPM-Solver++(2M) is second order: on Gaussian data the VP flow is
/// `x_t = x_1 sqrt(s_t^2 v + std_t^2)/sqrt(s_1^2 v + std_1^2)`; on uniform grids in t from 1 to
/// 0.01 with S = 16..256 steps the observed order at the finest pair is within 0.15 of 2
/// (the first step is first order but its local error O(h^2) is of the global second order).
#[test]
fn dpm_solver_2m_is_second_order_against_exact_gaussian_flow() {
    let v = 0.5;
    let model = gaussian_model(v);
    let spread = |l: Level| (l.scale * l.scale * v + l.std * l.std).sqrt();
    let x = array![[1.0, -0.5]];
    let mut errs = Vec::new();
    for s in [16usize, 32, 64, 128, 256] {
        let levels: Vec<Level> = (0..=s)
            .map(|i| vp_level(1.0 - 0.99 * i as f64 / s as f64))
            .collect();
        let exact = &x * (spread(levels[s]) / spread(levels[0]));
        let y = dpm_solver_pp_2m(&model, x.clone(), &levels, &mut Silent).unwrap();
        errs.push(max_err(&y, &exact));
    }
    let orders: Vec<f64> = errs.windows(2).map(|w| (w[0] / w[1]).log2()).collect();
    eprintln!("DPM-Solver++(2M) errors {errs:?} orders {orders:?}");
    assert!((orders[3] - 2.0).abs() < 0.15, "{orders:?}");
}

/// Typed errors: unsorted sigmas, levels that add noise, wrong shapes.
#[test]
fn few_step_samplers_reject_bad_input() {
    let model = gaussian_model(1.0);
    let x = array![[1.0, 2.0]];
    assert!(matches!(
        edm_heun(&model, x.clone(), &[1.0, 2.0], &mut Silent),
        Err(Error::InvalidSchedule(_))
    ));
    assert!(matches!(
        edm_heun(&model, x.clone(), &[1.0, 0.0, 0.0], &mut Silent),
        Err(Error::InvalidSchedule(_))
    ));
    let up = [vp_level(0.1), vp_level(0.5)];
    assert!(matches!(
        dpm_solver_pp_2m(&model, x.clone(), &up, &mut Silent),
        Err(Error::InvalidSchedule(_))
    ));
    assert!(matches!(
        edm_heun(&model, array![[1.0, 2.0, 3.0]], &[1.0, 0.0], &mut Silent),
        Err(Error::Shape(_))
    ));
    assert_eq!(timesteps(1000, 25, Spacing::Trailing).unwrap().len(), 25);
}
