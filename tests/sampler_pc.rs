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
use scoresde::schedule::continuous::GeometricSigma;
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
    println!(
        "{name}: p = {:.3}, z_max = {:.2}, energy = {:.5}",
        c.p, c.z_max, c.energy
    );
    assert!(
        c.passes(),
        "{name} failed: p = {}, z_max = {}",
        c.p,
        c.z_max
    );
}

fn assert_rejected(name: &str, c: &Check) {
    println!(
        "{name} (twin): p = {:.3}, z_max = {:.2}, energy = {:.5}",
        c.p, c.z_max, c.energy
    );
    assert!(
        !c.passes(),
        "{name} twin was not rejected: p = {}, z_max = {}",
        c.p,
        c.z_max
    );
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

/// Reverse diffusion whose noise variance is `2 G_i²` instead of `G_i²` (the increment of the
/// wrong process: the forward SDE run at twice the rate).
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
        let (xn, mean) = ReverseDiffusion.step(rsde, x, step, noise)?;
        let noisy = &mean + &((&xn - &mean) * std::f64::consts::SQRT_2);
        Ok((noisy, mean))
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

/// VE ancestral step whose mean jumps by the level's whole variance, `x + sigma_i² s`
/// (Tweedie's denoised estimate) instead of `x + (sigma_i² - sigma_{i-1}²) s`.
struct TweedieJumpAncestral(VeSde);
impl Predictor for TweedieJumpAncestral {
    fn name(&self) -> &'static str {
        "tweedie-jump-ancestral"
    }
    fn step(
        &self,
        rsde: &ReverseSde,
        x: ArrayView2<f64>,
        step: Step,
        noise: &mut dyn NoiseSource,
    ) -> scoresde::Result<(Array2<f64>, Array2<f64>)> {
        let (xn, mean) = Ancestral::ve(&self.0).step(rsde, x, step, noise)?;
        let si = self.0.discrete_sigma(step.level, step.n_levels);
        let jump = &x + &(rsde.score(x, step.t)? * (si * si));
        Ok((&xn - &mean + &jump, jump))
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
/// A1.20, Ac41, Ac45, Dc09). N = 500 steps: the weak error is O(1/N) (see
/// `euler_maruyama_weak_order_one_on_the_variance`), far below the test's resolution.
#[test]
fn euler_maruyama_vp_samples_the_mixture() {
    let x = run_pc(&vp(), &EulerMaruyama, &NoneCorrector, 500, 0, 11);
    assert_passes("EM/VP", &check(x.view(), &mixture(), 101));
}

/// Twin: the half-score EM (drift `f - ½ g² s` with noise `g dw`) is rejected.
#[test]
fn twin_half_score_euler_maruyama_is_rejected() {
    let x = run_pc(&vp(), &HalfScoreEm, &NoneCorrector, 500, 0, 11);
    assert_rejected("EM/VP half score", &check(x.view(), &mixture(), 101));
}

// ---------------------------------------------------------------------------------------------
// Reverse diffusion and ancestral sampling.

/// The reverse-diffusion predictor on the VE SDE samples the mixture (ledger Dc37).
#[test]
fn reverse_diffusion_ve_samples_the_mixture() {
    let x = run_pc(&ve(500), &ReverseDiffusion, &NoneCorrector, 500, 0, 12);
    assert_passes("RD/VE", &check(x.view(), &mixture(), 102));
}

/// Twin: reverse diffusion with noise variance `2 G²` is rejected.
#[test]
fn twin_wrong_variance_reverse_diffusion_is_rejected() {
    let x = run_pc(
        &ve(500),
        &WrongVarianceReverseDiffusion,
        &NoneCorrector,
        500,
        0,
        12,
    );
    assert_rejected("RD/VE 2G²", &check(x.view(), &mixture(), 102));
}

/// The reverse-diffusion predictor on the VP SDE (the DDPM chain's increments) samples the
/// mixture (ledger Dc37).
#[test]
fn reverse_diffusion_vp_samples_the_mixture() {
    let x = run_pc(&vp(), &ReverseDiffusion, &NoneCorrector, 500, 0, 13);
    assert_passes("RD/VP", &check(x.view(), &mixture(), 103));
}

/// DDPM ancestral sampling (003 eq. 4, ledger D4, Dc36) samples the mixture.
#[test]
fn ancestral_vp_samples_the_mixture() {
    let sde = vp();
    let x = run_pc(&sde, &Ancestral::vp(&sde), &NoneCorrector, 500, 0, 14);
    assert_passes("ancestral/VP", &check(x.view(), &mixture(), 104));
}

/// Twin: the VP ancestral step dividing by `1 - beta` instead of `sqrt(1 - beta)` is rejected.
#[test]
fn twin_wrong_scale_ancestral_vp_is_rejected() {
    let sde = vp();
    let x = run_pc(&sde, &WrongScaleAncestral(sde), &NoneCorrector, 500, 0, 14);
    assert_rejected("ancestral/VP 1/(1-b)", &check(x.view(), &mixture(), 104));
}

/// SMLD ancestral sampling (ledger Dc39, posterior variance
/// `sigma_{i-1}²(sigma_i² - sigma_{i-1}²)/sigma_i²`) samples the mixture.
#[test]
fn ancestral_ve_samples_the_mixture() {
    let sde = ve(500);
    let x = run_pc(&sde, &Ancestral::ve(&sde), &NoneCorrector, 500, 0, 15);
    assert_passes("ancestral/VE", &check(x.view(), &mixture(), 105));
}

/// Twin: SMLD ancestral sampling whose mean jumps by `sigma_i² s` is rejected.
///
/// (Replacing the posterior variance by the forward increment `sigma_i² - sigma_{i-1}²` is
/// *not* detectable here: the two differ by the factor `sigma_{i-1}²/sigma_i² = 0.97` at
/// N = 500, and the run passes the test (p = 0.25 at N = 1000), the VE analogue of 000's
/// remark that the two DDPM variances give similar samples, ledger Ac06.)
#[test]
fn twin_tweedie_jump_ancestral_ve_is_rejected() {
    let sde = ve(500);
    let x = run_pc(&sde, &TweedieJumpAncestral(sde), &NoneCorrector, 500, 0, 15);
    assert_rejected(
        "ancestral/VE sigma² jump",
        &check(x.view(), &mixture(), 105),
    );
}

// ---------------------------------------------------------------------------------------------
// Predictor-corrector.

/// PC: reverse diffusion + one Langevin step (snr 0.16) on VE samples the mixture (ledger
/// Dc40, Ac46, D2).
#[test]
fn pc_reverse_diffusion_langevin_ve_samples_the_mixture() {
    let c = LangevinCorrector::new(0.16).unwrap();
    let x = run_pc(&ve(500), &ReverseDiffusion, &c, 500, 1, 16);
    assert_passes("PC RD+L/VE", &check(x.view(), &mixture(), 106));
}

/// Twin: the same PC sampler with the corrector's score sign flipped is rejected.
#[test]
fn twin_flipped_langevin_corrector_is_rejected() {
    let c = FlippedLangevin(LangevinCorrector::new(0.16).unwrap());
    let x = run_pc(&ve(500), &ReverseDiffusion, &c, 500, 1, 16);
    assert_rejected("PC RD+flipped L/VE", &check(x.view(), &mixture(), 106));
}

/// PC: Euler-Maruyama + two Langevin steps (snr 0.1) on VP samples the mixture (any pairing,
/// several corrector steps).
#[test]
fn pc_euler_maruyama_two_langevin_steps_vp_samples_the_mixture() {
    let c = LangevinCorrector::new(0.1).unwrap();
    let x = run_pc(&vp(), &EulerMaruyama, &c, 500, 2, 17);
    assert_passes("PC EM+2L/VP", &check(x.view(), &mixture(), 107));
}

/// PC with one corrector step against predictor-only at the same NFE (003 §4.2, ledger Dc43,
/// Dc44): reports the energy distance to exact mixture draws for P(2N) and PC(N) at several
/// N, and asserts only what it can: at the generous NFE = 400 both pass the two-sample test.
#[test]
fn pc_versus_predictor_only_at_equal_nfe() {
    let c = LangevinCorrector::new(0.16).unwrap();
    let y = exact(&mixture(), 999);
    for n in [25usize, 50, 100] {
        let p = run_pc(&ve(2 * n), &ReverseDiffusion, &NoneCorrector, 2 * n, 0, 18);
        let pc = run_pc(&ve(n), &ReverseDiffusion, &c, n, 1, 18);
        let ep = stats::energy_distance(p.view(), y.view()).unwrap();
        let epc = stats::energy_distance(pc.view(), y.view()).unwrap();
        println!(
            "NFE {}: P{} energy = {ep:.5}, PC{n} energy = {epc:.5}",
            2 * n,
            2 * n
        );
    }
    let p = run_pc(&ve(400), &ReverseDiffusion, &NoneCorrector, 400, 0, 19);
    let pc = run_pc(&ve(200), &ReverseDiffusion, &c, 200, 1, 19);
    assert_passes("P400", &check(p.view(), &mixture(), 108));
    assert_passes("PC200", &check(pc.view(), &mixture(), 109));
}

// ---------------------------------------------------------------------------------------------
// Annealed Langevin dynamics.

/// Noise scaled by `1/sqrt 2`: turns the step `x + alpha s + sqrt(2 alpha) z` into
/// `x + alpha s + sqrt(alpha) z`, the bug of mixing 000 Fig. 1.3's noise with 003 eq. 2's drift.
struct HalfVarianceNoise(scoresde::rng::Rng);
impl NoiseSource for HalfVarianceNoise {
    fn fill_normal(&mut self, out: &mut [f64]) {
        self.0.fill_normal(out);
        out.iter_mut()
            .for_each(|v| *v *= std::f64::consts::FRAC_1_SQRT_2);
    }
}

fn smld_setup() -> (SigmaSequence, LangevinConfig, GaussianMixture) {
    // 30 geometric levels from 10 to sigma_L = 0.05. The step at level i is
    // alpha_i = eps sigma_i²/sigma_L² with eps = 0.1 sigma_L², so alpha_i / sigma_i² = 0.1:
    // per level T alpha_i/(v + sigma_i²) relaxation times; T = 100 gives ~10 at every level
    // with sigma_i² >= v, and the stationary variance bias alpha/(2V) is <= 5% of sigma_i²,
    // i.e. <= 0.25% of the final level's variance. The target is p_{sigma_L}, the mixture
    // perturbed by N(0, sigma_L² I).
    let sigmas = SigmaSequence::geometric(10.0, 0.05, 30).unwrap();
    let cfg = LangevinConfig {
        steps_per_level: 100,
        eps: 0.1 * 0.05 * 0.05,
        n_samples: N,
        denoise: false,
    };
    (sigmas, cfg, mixture().perturbed(1.0, 0.05).unwrap())
}

/// Annealed Langevin dynamics with the exact scores samples `p_{sigma_L}` (Song & Ermon 2019
/// Alg. 1; ledger Ac24, D2, Dc15, Ac17: the lopsided weights 0.6/0.3/0.1 are recovered).
#[test]
fn annealed_langevin_samples_the_perturbed_mixture() {
    let (sigmas, cfg, target) = smld_setup();
    let model = MixtureScore::new(mixture());
    let x = annealed_langevin(&model, &sigmas, cfg, &mut seeded(20), &mut Silent).unwrap();
    assert_passes("SMLD", &check(x.view(), &target, 110));
}

/// Twin: annealed Langevin with noise `sqrt(alpha) z` instead of `sqrt(2 alpha) z` is rejected.
#[test]
fn twin_half_noise_annealed_langevin_is_rejected() {
    let (sigmas, cfg, target) = smld_setup();
    let model = MixtureScore::new(mixture());
    let mut noise = HalfVarianceNoise(seeded(20));
    let x = annealed_langevin(&model, &sigmas, cfg, &mut noise, &mut Silent).unwrap();
    assert_rejected("SMLD half noise", &check(x.view(), &target, 110));
}

// ---------------------------------------------------------------------------------------------
// Weak order of Euler-Maruyama.

/// A noise source of ones (extracts the noise coefficient of a linear step).
struct OneNoise;
impl NoiseSource for OneNoise {
    fn fill_normal(&mut self, out: &mut [f64]) {
        out.fill(1.0);
    }
}

/// Final variance of Euler-Maruyama on the reverse VP SDE for data N(0, v I), computed without
/// Monte Carlo: for Gaussian data the score is linear, so each EM step is `x' = a x + b z`
/// with `a` read off the predictor at `x = 1` with zero noise and `b` at `x = 0` with unit
/// noise, and the variance obeys `V' = a² V + b²` exactly. The grid is uniform
/// (`eps = T/N`), started from the exact `p_T` variance.
fn em_final_variance(v: f64, n: usize) -> f64 {
    let sde = vp();
    let mix = GaussianMixture::ring(1, 0.0, v.sqrt()).unwrap();
    let model = MixtureScore::new(mix);
    let rsde = ReverseSde::new(&sde, &model);
    let grid = scoresde::sampler::pc::time_grid(1.0, 1.0 / n as f64, n).unwrap();
    let lt = sde.level(1.0).unwrap();
    let mut var = lt.scale * lt.scale * v + lt.std * lt.std;
    for i in 0..n {
        let step = Step {
            t: grid[i],
            dt: grid[i] - grid[i + 1],
            level: n - 1 - i,
            n_levels: n,
        };
        let one = Array2::from_elem((1, 2), 1.0);
        let zero = Array2::zeros((1, 2));
        let a = EulerMaruyama
            .step(&rsde, one.view(), step, &mut ZeroNoise)
            .unwrap()
            .0[[0, 0]];
        let b = EulerMaruyama
            .step(&rsde, zero.view(), step, &mut OneNoise)
            .unwrap()
            .0[[0, 0]];
        var = a * a * var + b * b;
    }
    var
}

/// Euler-Maruyama has weak order 1: the error of the final variance against the exact `v`
/// halves as N doubles. With `e(N) = C/N + D/N² + ...`, `e(N)/e(2N) = 2 (1 + D/(C N) + ...)`,
/// so the observed order `log2(e(N)/e(2N))` deviates from 1 by O(1/N): the check is that it is
/// within 0.05 at N = 1600 and that the deviation shrinks as N doubles.
#[test]
fn euler_maruyama_weak_order_one_on_the_variance() {
    let v = 0.3;
    let errs: Vec<f64> = [200usize, 400, 800, 1600, 3200]
        .iter()
        .map(|&n| (em_final_variance(v, n) - v).abs())
        .collect();
    let orders: Vec<f64> = errs.windows(2).map(|w| (w[0] / w[1]).log2()).collect();
    println!("EM variance errors {errs:?}, observed orders {orders:?}");
    let dev: Vec<f64> = orders.iter().map(|p| (p - 1.0).abs()).collect();
    assert!(dev[3] < 0.05, "observed order {} is not 1", orders[3]);
    assert!(dev[3] <= dev[1], "order deviation does not shrink: {dev:?}");
}

// ---------------------------------------------------------------------------------------------
// Errors.

/// Bad configurations and a non-finite score return typed errors, never panics.
#[test]
fn bad_input_returns_typed_errors() {
    let model = MixtureScore::new(mixture());
    let sde = vp();
    let run = |cfg: PcConfig| {
        pc_sample(
            &sde,
            &model,
            &EulerMaruyama,
            &NoneCorrector,
            cfg,
            &mut seeded(0),
            &mut Silent,
        )
    };
    assert!(matches!(
        run(PcConfig::new(1, 10)),
        Err(Error::InvalidParameter { .. })
    ));
    assert!(matches!(
        run(PcConfig::new(10, 0)),
        Err(Error::InvalidParameter { .. })
    ));
    let mut c = PcConfig::new(10, 10);
    c.eps = 0.0;
    assert!(matches!(run(c), Err(Error::InvalidParameter { .. })));
    assert!(matches!(
        LangevinCorrector::new(-1.0),
        Err(Error::InvalidParameter { .. })
    ));
    assert!(matches!(
        AnnealedLangevinCorrector::new(1e-3, 0.0),
        Err(Error::InvalidParameter { .. })
    ));
    // A model whose score is NaN.
    struct Nan;
    impl ScoreModel for Nan {
        fn dim(&self) -> usize {
            2
        }
        fn score(&self, x: ArrayView2<f64>, _l: Level) -> Array2<f64> {
            Array2::from_elem(x.dim(), f64::NAN)
        }
    }
    for p in [
        &EulerMaruyama as &dyn Predictor,
        &ReverseDiffusion,
        &Ancestral::vp(&sde),
    ] {
        let r = pc_sample(
            &sde,
            &Nan,
            p,
            &NoneCorrector,
            PcConfig::new(100, 3),
            &mut seeded(0),
            &mut Silent,
        );
        assert!(matches!(r, Err(Error::NonFinite(_))), "{}", p.name());
    }
    let r = pc_sample(
        &sde,
        &Nan,
        &NonePredictor,
        &LangevinCorrector::new(0.1).unwrap(),
        PcConfig {
            corrector_steps: 1,
            ..PcConfig::new(10, 3)
        },
        &mut seeded(0),
        &mut Silent,
    );
    assert!(matches!(r, Err(Error::NonFinite(_))));
    let sig = SigmaSequence::geometric(1.0, 0.1, 3).unwrap();
    let cfg = LangevinConfig {
        steps_per_level: 0,
        eps: 1e-3,
        n_samples: 2,
        denoise: true,
    };
    assert!(matches!(
        annealed_langevin(&model, &sig, cfg, &mut seeded(0), &mut Silent),
        Err(Error::InvalidParameter { .. })
    ));
    let cfg = LangevinConfig {
        steps_per_level: 2,
        ..cfg
    };
    assert!(matches!(
        annealed_langevin(&Nan, &sig, cfg, &mut seeded(0), &mut Silent),
        Err(Error::NonFinite(_))
    ));
}
