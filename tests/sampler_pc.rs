//! Reverse-SDE, predictor-corrector and annealed-Langevin samplers, proven on the exact score
//! of a Gaussian mixture (`MixtureScore`): each sampler's output must pass a two-sample energy
//! test against exact mixture draws plus CLT checks of the mean and covariance, and a
//! deliberately broken twin of each must fail the same check.
//!
//! Statistical design (shared by every test here): 500 sampler draws against 500 exact draws,
//! energy-distance permutation test with 199 permutations at false-alarm rate `ALPHA = 0.01`
//! (the permutation p-value is super-uniform under the null, so a correct sampler is rejected
//! with probability <= 0.01 per seed; seeds are fixed, so the outcome is deterministic). The
//! mean/covariance checks use a 5-sigma CLT bound per entry (two-sided false-alarm rate
//! 5.7e-7 per entry). Twins are asserted to be rejected by the energy test (p <= 0.01) or
//! by the CLT checks.

use ndarray::{Array2, ArrayView2};
use scoresde::gaussian::GaussianMixture;
use scoresde::rng::{seeded, NoiseSource};
use scoresde::sampler::corrector::{
    AnnealedLangevinCorrector, Corrector, LangevinCorrector, NoneCorrector,
};
use scoresde::sampler::langevin::{annealed_langevin, LangevinConfig};
use scoresde::sampler::pc::{pc_sample, PcConfig};
use scoresde::sampler::predictor::{
    Ancestral, EulerMaruyama, NonePredictor, Predictor, ReverseDiffusion, Step,
};
use scoresde::sampler::Silent;
use scoresde::schedule::continuous::{GeometricSigma, LinearBeta};
use scoresde::schedule::sigma::SigmaSequence;
use scoresde::score::{Level, MixtureScore, ScoreModel};
use scoresde::sde::{ReverseSde, Sde, VeSde, VpSde};
use scoresde::stats;
use scoresde::Error;

const ALPHA: f64 = 0.01;
const N: usize = 500;
const PERMS: usize = 199;

fn mixture() -> GaussianMixture {
    GaussianMixture::lopsided()
}

fn vp() -> VpSde {
    VpSde::default()
}

/// VE with sigma_max = 10 (above the mixture's largest pairwise distance, so p_T ≈ prior).
fn ve(n: usize) -> VeSde {
    VeSde::new(GeometricSigma::new(0.01, 10.0).unwrap(), n).unwrap()
}

/// Exact draws of `mix`.
fn exact(mix: &GaussianMixture, seed: u64) -> Array2<f64> {
    mix.sample_n(N, &mut seeded(seed))
}

/// Outcome of the full check: energy-test p-value and the largest CLT z-score of the mean
/// and covariance entries.
struct Check {
    p: f64,
    z_max: f64,
    energy: f64,
}

impl Check {
    fn passes(&self) -> bool {
        self.p > ALPHA && self.z_max < 5.0
    }
}

/// Energy test against exact draws of `target`, and CLT z-scores of the sample mean (standard
/// error sqrt(Σ_jj / n)) and covariance entries (standard error sqrt(Var[(x_i-m_i)(x_j-m_j)]/n),
/// the fourth moment estimated from a large exact sample of the target).
fn check(x: ArrayView2<f64>, target: &GaussianMixture, seed: u64) -> Check {
    let y = exact(target, seed);
    let t = stats::energy_test(x, y.view(), PERMS, seed + 1).unwrap();
    let n = x.nrows() as f64;
    let m = target.mean();
    let c = target.covariance();
    let mx = stats::mean(x);
    let cx = stats::covariance(x);
    let big = target.sample_n(20_000, &mut seeded(seed + 2));
    let mut z_max: f64 = 0.0;
    for i in 0..2 {
        z_max = z_max.max((mx[i] - m[i]).abs() / (c[[i, i]] / n).sqrt());
        for j in 0..2 {
            let prod: Vec<f64> = big
                .rows()
                .into_iter()
                .map(|r| (r[i] - m[i]) * (r[j] - m[j]))
                .collect();
            let mu = prod.iter().sum::<f64>() / prod.len() as f64;
            let var = prod.iter().map(|v| (v - mu) * (v - mu)).sum::<f64>() / prod.len() as f64;
            z_max = z_max.max((cx[[i, j]] - c[[i, j]]).abs() / (var / n).sqrt());
        }
    }
    Check {
        p: t.p_value,
        z_max,
        energy: t.statistic,
    }
}

fn run_pc(
    sde: &dyn Sde,
    p: &dyn Predictor,
    c: &dyn Corrector,
    n_steps: usize,
    corr: usize,
    seed: u64,
) -> Array2<f64> {
    let model = MixtureScore::new(mixture());
    let mut cfg = PcConfig::new(n_steps, N);
    cfg.corrector_steps = corr;
    pc_sample(sde, &model, p, c, cfg, &mut seeded(seed), &mut Silent)
        .unwrap()
        .x
}

fn assert_passes(name: &str, c: &Check) {
    println!("{name}: p = {:.3}, z_max = {:.2}, energy = {:.5}", c.p, c.z_max, c.energy);
    assert!(c.passes(), "{name} failed: p = {}, z_max = {}", c.p, c.z_max);
}

fn assert_rejected(name: &str, c: &Check) {
    println!("{name} (twin): p = {:.3}, z_max = {:.2}, energy = {:.5}", c.p, c.z_max, c.energy);
    assert!(!c.passes(), "{name} twin was not rejected: p = {}, z_max = {}", c.p, c.z_max);
}

// ---------------------------------------------------------------------------------------------
// Twins: deliberately wrong predictors and correctors.

/// Euler-Maruyama with the probability-flow drift `f - ½ g² s` but the SDE's noise `g √Δt z`:
/// the classic half-score bug; its marginals are too wide.
struct HalfScoreEm;
impl Predictor for HalfScoreEm {
    fn name(&self) -> &'static str {
        "half-score-em"
    }
    fn step(
        &self,
        rsde: &ReverseSde,
        x: ArrayView2<f64>,
        step: Step,
        noise: &mut dyn NoiseSource,
    ) -> scoresde::Result<(Array2<f64>, Array2<f64>)> {
        let mean = &x - &(rsde.ode_drift(x, step.t)? * step.dt);
        let mut z = Array2::zeros(x.dim());
        noise.fill_normal(z.as_slice_mut().unwrap());
        let g = rsde.diffusion(step.t)?;
        Ok((&mean + &(z * (g * step.dt.sqrt())), mean))
    }
}

/// Reverse diffusion whose noise has the variance of the wrong process: the marginal variance
/// `sigma_i²` of the level instead of the increment `G_i²`.
struct WrongVarianceReverseDiffusion;
impl Predictor for WrongVarianceReverseDiffusion {
    fn name(&self) -> &'static str {
        "wrong-variance-rd"
    }
    fn step(
        &self,
        rsde: &ReverseSde,
        x: ArrayView2<f64>,
        step: Step,
        noise: &mut dyn NoiseSource,
    ) -> scoresde::Result<(Array2<f64>, Array2<f64>)> {
        let (_, mean) = ReverseDiffusion.step(rsde, x, step, &mut ZeroNoise)?;
        let sd = rsde.sde().marginal_std(step.t)? * 0.1;
        let mut z = Array2::zeros(x.dim());
        noise.fill_normal(z.as_slice_mut().unwrap());
        Ok((&mean + &(z * sd), mean))
    }
}

/// VP ancestral step dividing by `1 - beta` instead of `sqrt(1 - beta)`.
struct WrongScaleAncestral(VpSde);
impl Predictor for WrongScaleAncestral {
    fn name(&self) -> &'static str {
        "wrong-scale-ancestral"
    }
    fn step(
        &self,
        rsde: &ReverseSde,
        x: ArrayView2<f64>,
        step: Step,
        noise: &mut dyn NoiseSource,
    ) -> scoresde::Result<(Array2<f64>, Array2<f64>)> {
        let b = self.0.discrete_beta(step.level, step.n_levels);
        let s = rsde.score(x, step.t)?;
        let mean = (&x + &(s * b)) / (1.0 - b);
        let mut z = Array2::zeros(x.dim());
        noise.fill_normal(z.as_slice_mut().unwrap());
        Ok((&mean + &(z * b.sqrt()), mean))
    }
}

/// VE ancestral step that uses the forward increment `sigma_i² - sigma_{i-1}²` as the noise
/// variance (the variance of the forward, not the posterior, process).
struct ForwardVarianceAncestral(VeSde);
impl Predictor for ForwardVarianceAncestral {
    fn name(&self) -> &'static str {
        "forward-variance-ancestral"
    }
    fn step(
        &self,
        rsde: &ReverseSde,
        x: ArrayView2<f64>,
        step: Step,
        noise: &mut dyn NoiseSource,
    ) -> scoresde::Result<(Array2<f64>, Array2<f64>)> {
        let (k, n) = (step.level, step.n_levels);
        let si = self.0.discrete_sigma(k, n);
        let sp = if k == 0 { 0.0 } else { self.0.discrete_sigma(k - 1, n) };
        let d = si * si - sp * sp;
        let mean = &x + &(rsde.score(x, step.t)? * d);
        let mut z = Array2::zeros(x.dim());
        noise.fill_normal(z.as_slice_mut().unwrap());
        Ok((&mean + &(z * d.sqrt()), mean))
    }
}

/// Langevin corrector with the score's sign flipped (it pushes samples downhill).
struct FlippedLangevin(LangevinCorrector);
impl Corrector for FlippedLangevin {
    fn name(&self) -> &'static str {
        "flipped-langevin"
    }
    fn step(
        &self,
        rsde: &ReverseSde,
        x: ArrayView2<f64>,
        step: Step,
        noise: &mut dyn NoiseSource,
    ) -> scoresde::Result<(Array2<f64>, Array2<f64>)> {
        // x' = x - 2 ε s + noise: run the correct step and reflect the drift.
        let (_, mean) = self.0.step(rsde, x, step, &mut ZeroNoise)?;
        let drift = &mean - &x;
        let back = &x - &drift;
        let (noisy, m2) = self.0.step(rsde, x, step, noise)?;
        Ok((&back + &(&noisy - &m2), back))
    }
}

/// A noise source of zeros.
struct ZeroNoise;
impl NoiseSource for ZeroNoise {
    fn fill_normal(&mut self, out: &mut [f64]) {
        out.fill(0.0);
    }
}

// ---------------------------------------------------------------------------------------------
// Euler-Maruyama.

/// Euler-Maruyama on the reverse VP SDE with the exact score samples the mixture (ledger D6,
/// A1.20, Ac41, Ac45, Dc09). N = 1000 steps: the weak error is O(1/N) (see
/// `euler_maruyama_weak_order_one_on_the_variance`), far below the test's resolution.
#[test]
fn euler_maruyama_vp_samples_the_mixture() {
    let x = run_pc(&vp(), &EulerMaruyama, &NoneCorrector, 1000, 0, 11);
    assert_passes("EM/VP", &check(x.view(), &mixture(), 101));
}

/// Twin: the half-score EM (drift `f - ½ g² s` with noise `g dw`) is rejected.
#[test]
fn twin_half_score_euler_maruyama_is_rejected() {
    let x = run_pc(&vp(), &HalfScoreEm, &NoneCorrector, 1000, 0, 11);
    assert_rejected("EM/VP half score", &check(x.view(), &mixture(), 101));
}
