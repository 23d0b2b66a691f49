//! DDPM ancestral sampling fed the exact mixture score: distribution tests with twins, the
//! clipping option, progress reporting and typed errors.

use ndarray::{Array2, ArrayView2};
use scoresde::gaussian::GaussianMixture;
use scoresde::rng::{seeded, NoiseSource, Rng};
use scoresde::sampler::ddpm::{DdpmSampler, ReverseVariance};
use scoresde::sampler::Silent;
use scoresde::schedule::beta::BetaSchedule;
use scoresde::score::{Level, MixtureScore, ScoreModel};
use scoresde::stats::{covariance, energy_test, mean, normal_quantile_two_sided};
use scoresde::Error;

const N: usize = 500;
/// False-alarm rate of each distribution check.
const ALPHA: f64 = 1e-3;

/// Whether `x` passes all checks against `mix`: the energy permutation test at `ALPHA`
/// (999 permutations, so p can reach 1e-3), and every mean coordinate and covariance entry
/// within `z(ALPHA / 5)` CLT standard errors of the exact value (Bonferroni over the 2 means and
/// 3 covariance entries keeps the joint false-alarm rate below ALPHA). The standard error of a
/// covariance entry is `sqrt(Var[(x_i - m_i)(x_j - m_j)] / n)`, estimated from the sample.
fn matches(x: ArrayView2<f64>, mix: &GaussianMixture, seed: u64) -> (bool, f64) {
    let exact = mix.sample_n(N, &mut seeded(seed));
    let p = energy_test(x, exact.view(), 999, seed + 1).unwrap().p_value;
    let z = normal_quantile_two_sided(ALPHA / 5.0).unwrap();
    let (m, c) = (mean(x), covariance(x));
    let (mt, ct) = (mix.mean(), mix.covariance());
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
    (ok, p)
}

fn schedule() -> BetaSchedule {
    BetaSchedule::linear(1000, 1e-4, 0.02).unwrap()
}

/// Noise with the wrong variance: every draw doubled.
struct Doubled(Rng);
impl NoiseSource for Doubled {
    fn fill_normal(&mut self, out: &mut [f64]) {
        self.0.fill_normal(out);
        out.iter_mut().for_each(|v| *v *= 2.0);
    }
}

/// Ancestral sampling with `sigma_t^2 = beta_t` on the exact score of the lopsided mixture
/// passes the energy test and the mean/covariance CLT checks (joint false-alarm rate 2e-3).
#[test]
fn ddpm_beta_variance_matches_mixture() {
    let mix = GaussianMixture::lopsided();
    let model = MixtureScore::new(mix.clone());
    let s = DdpmSampler::new(schedule(), ReverseVariance::Beta);
    let x = s.sample(&model, N, &mut seeded(11), &mut Silent).unwrap();
    let (ok, p) = matches(x.view(), &mix, 12);
    assert!(ok, "p = {p}");
}

/// The same with the posterior variance `beta_tilde_t` on the 8-mode ring (ledger Ac06: both
/// variances give samples of the data distribution).
#[test]
fn ddpm_posterior_variance_matches_ring() {
    let mix = GaussianMixture::ring(8, 2.0, 0.1).unwrap();
    let model = MixtureScore::new(mix.clone());
    let s = DdpmSampler::new(schedule(), ReverseVariance::Posterior);
    let x = s.sample(&model, N, &mut seeded(21), &mut Silent).unwrap();
    let (ok, p) = matches(x.view(), &mix, 22);
    assert!(ok, "p = {p}");
}

/// Twin: the same sampler with every noise draw doubled (reverse variance `4 beta_t`, a wrong
/// variance) is rejected by the same checks.
#[test]
fn ddpm_with_wrong_variance_is_rejected() {
    let mix = GaussianMixture::lopsided();
    let model = MixtureScore::new(mix.clone());
    let s = DdpmSampler::new(schedule(), ReverseVariance::Beta);
    let x = s
        .sample(&model, N, &mut Doubled(seeded(11)), &mut Silent)
        .unwrap();
    let (ok, p) = matches(x.view(), &mix, 12);
    assert!(!ok, "a wrong variance passed, p = {p}");
}

/// A model with the sign of the score flipped (`eps` sign error).
struct Flipped(MixtureScore);
impl ScoreModel for Flipped {
    fn dim(&self) -> usize {
        self.0.dim()
    }
    fn score(&self, x: ArrayView2<f64>, level: Level) -> Array2<f64> {
        -self.0.score(x, level)
    }
}

/// Twin: an `eps` sign error is rejected.
#[test]
fn ddpm_with_eps_sign_error_is_rejected() {
    let mix = GaussianMixture::ring(8, 2.0, 0.1).unwrap();
    let model = Flipped(MixtureScore::new(mix.clone()));
    let s = DdpmSampler::new(schedule(), ReverseVariance::Posterior);
    let x = s.sample(&model, N, &mut seeded(21), &mut Silent).unwrap();
    let (ok, _) = matches(x.view(), &mix, 22);
    assert!(!ok);
}

/// Clipping with a bound no prediction reaches takes the posterior-mean route (ledger A1.7 at
/// `x0_hat`) and must agree with Algorithm 2's eps form (ledger A1.9) to rounding: the two are
/// algebraically equal; each step loses a few ulps of values of size ~3, and the reverse chain
/// does not amplify them (its steps contract), so 1e-9 over 1000 steps is generous.
#[test]
fn unreached_clip_equals_algorithm_two_mean() {
    let mix = GaussianMixture::lopsided();
    let model = MixtureScore::new(mix);
    let plain = DdpmSampler::new(schedule(), ReverseVariance::Beta);
    let clipped = plain.clone().with_clip(Some(1e6)).unwrap();
    let a = plain
        .sample(&model, 50, &mut seeded(5), &mut Silent)
        .unwrap();
    let b = clipped
        .sample(&model, 50, &mut seeded(5), &mut Silent)
        .unwrap();
    let err = (&a - &b).iter().fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(err < 1e-9, "{err}");
}

/// Clipping at 1 changes the output of data with mass beyond 1 and keeps the output
/// within the clip bound plus the last step's noise-free mean shrinkage (the final step at
/// `t = 1` returns the posterior mean, a convex-ish combination of the clipped `x0_hat` and `x_1`).
#[test]
fn clipping_is_an_explicit_option_that_changes_samples() {
    let model = MixtureScore::new(GaussianMixture::ring(8, 2.0, 0.1).unwrap());
    let plain = DdpmSampler::new(schedule(), ReverseVariance::Beta);
    let clipped = plain.clone().with_clip(Some(1.0)).unwrap();
    let a = plain
        .sample(&model, 100, &mut seeded(5), &mut Silent)
        .unwrap();
    let b = clipped
        .sample(&model, 100, &mut seeded(5), &mut Silent)
        .unwrap();
    assert!(a.iter().any(|v| v.abs() > 1.5));
    // With x0_hat clipped to [-1, 1] all along, samples stay near the box.
    assert!(
        b.iter().all(|v| v.abs() < 1.2),
        "{}",
        b.iter().fold(0.0f64, |m, v| m.max(v.abs()))
    );
}

/// Progress is reported once per step, T in total; bad input gives typed errors.
#[test]
fn progress_and_errors() {
    let model = MixtureScore::new(GaussianMixture::lopsided());
    let s = DdpmSampler::new(
        BetaSchedule::linear(20, 1e-3, 0.2).unwrap(),
        ReverseVariance::Beta,
    );
    let mut seen = Vec::new();
    let mut cb = |d: usize, t: usize| seen.push((d, t));
    s.sample(&model, 3, &mut seeded(1), &mut cb).unwrap();
    assert_eq!(seen.len(), 20);
    assert_eq!(seen.last(), Some(&(20, 20)));
    assert!(matches!(
        s.clone().with_clip(Some(-1.0)),
        Err(Error::InvalidParameter { .. })
    ));
    let wrong = Array2::zeros((3, 5));
    assert!(matches!(
        s.sample_from(&model, wrong, &mut seeded(1), &mut Silent),
        Err(Error::Shape(_))
    ));
    let nan = Array2::from_elem((3, 2), f64::NAN);
    assert!(matches!(
        s.sample_from(&model, nan, &mut seeded(1), &mut Silent),
        Err(Error::NonFinite(_))
    ));
    // A model returning NaN is rejected as NonFinite.
    struct Bad;
    impl ScoreModel for Bad {
        fn dim(&self) -> usize {
            2
        }
        fn score(&self, x: ArrayView2<f64>, _: Level) -> Array2<f64> {
            Array2::from_elem(x.dim(), f64::NAN)
        }
    }
    assert!(matches!(
        s.sample(&Bad, 3, &mut seeded(1), &mut Silent),
        Err(Error::NonFinite(_))
    ));
}
