//! Plain Langevin dynamics on closed-form targets (ledger Bc02, Ec03, Ac17, Ec07), run through
//! the library's Langevin sampler (`annealed_langevin`; one level is plain Langevin).
//!
//! - On a Gaussian target the chain is an AR(1) process whose stationary variance is known
//!   exactly; the recursion is checked in f64 and by simulation with CLT bounds.
//! - On a two-mode mixture with well-separated modes, Langevin started in one basin does not
//!   recover the mode weights in any feasible number of steps, while annealed Langevin does.

use ndarray::{Array1, Array2, ArrayView2};
use scoresde::gaussian::{GaussianMixture, MvGaussian};
use scoresde::rng::{seeded, NoiseSource};
use scoresde::sampler::langevin::{annealed_langevin, LangevinConfig};
use scoresde::sampler::Silent;
use scoresde::schedule::sigma::SigmaSequence;
use scoresde::score::{Level, MixtureScore, ScoreModel};

/// 5-sigma two-sided CLT bound: false-alarm rate 5.7e-7 per check.
const Z: f64 = 5.0;

/// The exact score of `N(m, s2)` in one dimension, whatever the level (the target of plain
/// Langevin is the data density itself).
struct GaussianTarget {
    m: f64,
    s2: f64,
}

impl ScoreModel for GaussianTarget {
    fn dim(&self) -> usize {
        1
    }
    fn score(&self, x: ArrayView2<f64>, _level: Level) -> Array2<f64> {
        x.mapv(|v| -(v - self.m) / self.s2)
    }
}

/// Replays given values as the "normal" draws (to read off a linear step's coefficients).
struct Values(Vec<f64>, usize);

impl NoiseSource for Values {
    fn fill_normal(&mut self, out: &mut [f64]) {
        for o in out {
            *o = self.0[self.1];
            self.1 += 1;
        }
    }
}

/// Every draw multiplied by `k` (a sampler with the wrong noise scale).
struct Scaled(scoresde::rng::Rng, f64);

impl NoiseSource for Scaled {
    fn fill_normal(&mut self, out: &mut [f64]) {
        self.0.fill_normal(out);
        out.iter_mut().for_each(|v| *v *= self.1);
    }
}

/// Plain Langevin with step `alpha`: `annealed_langevin` on the single level `sigma` (which
/// only sets the start `x_0 ~ N(0, sigma^2)`), so every step is `x + alpha s + sqrt(2 alpha) z`.
fn langevin(
    model: &dyn ScoreModel,
    sigma: f64,
    alpha: f64,
    steps: usize,
    n: usize,
    noise: &mut dyn NoiseSource,
) -> Array2<f64> {
    let sigmas = SigmaSequence::from_sigmas(vec![sigma]).unwrap();
    let cfg = LangevinConfig {
        steps_per_level: steps,
        eps: alpha,
        n_samples: n,
        denoise: false,
    };
    annealed_langevin(model, &sigmas, cfg, noise, &mut Silent).unwrap()
}

/// Bc02's parameters: target `N(3, 0.8^2)`, `delta = 0.8 s^2`, so `delta/(4 s^2) = 0.2` and the
/// stationary variance is 25% above `s^2`.
const M: f64 = 3.0;
const S2: f64 = 0.64;
const DELTA: f64 = 0.8 * S2;

/// Bc02: `x' = x + (delta/2) s(x) + sqrt(delta) z` with `s(x) = -(x - m)/s^2` is the AR(1)
/// process `x' - m = a (x - m) + sqrt(delta) z`, `a = 1 - delta/(2 s^2)`. Its variance obeys
/// `V' = a^2 V + delta`, whose fixed point is `delta/(1 - a^2)`; with
/// `1 - a^2 = (delta/s^2)(1 - delta/(4 s^2))` this is `s^2/(1 - delta/(4 s^2))` (Bc02), and with
/// `delta = 2 eps` it is Ec03's `s^2/(1 - eps/(2 s^2))`.
///
/// Checked in f64 on the library's step: `a` and `b` are read off one step of our sampler
/// (start `m + 1` with zero noise gives `m + a`; start `m` with unit noise gives `m + b`), they
/// equal `1 - delta/(2 s^2)` and `sqrt(delta)` to a few ulps, the closed form is a fixed point
/// of `V' = a^2 V + b^2` to 8 ulps, and 200 iterations of the recursion from `V_0 = 1` reach it
/// (`|a|^400 = 1e-89`). Twin: the naive limit `s^2` is not a fixed point (it misses by
/// `delta^2/(4 s^2)`, 0.064 here).
#[test]
fn langevin_ar1_recursion_has_the_exact_stationary_variance() {
    let target = GaussianTarget { m: M, s2: S2 };
    let alpha = DELTA / 2.0;
    // The start is sigma * (first draw) with sigma = 1.
    let one_step =
        |x0: f64, z: f64| langevin(&target, 1.0, alpha, 1, 1, &mut Values(vec![x0, z], 0))[[0, 0]];
    let a = one_step(M + 1.0, 0.0) - M;
    let b = one_step(M, 1.0) - M;
    let u = f64::EPSILON;
    assert!(
        (a - (1.0 - DELTA / (2.0 * S2))).abs() <= 8.0 * u * M,
        "a = {a}"
    );
    assert!((b - DELTA.sqrt()).abs() <= 8.0 * u * M, "b = {b}");

    let v_inf = S2 / (1.0 - DELTA / (4.0 * S2));
    let fixed = a * a * v_inf + b * b;
    assert!(
        (fixed - v_inf).abs() <= 8.0 * u * v_inf,
        "{fixed} vs {v_inf}"
    );
    let ec03 = {
        let eps = DELTA / 2.0;
        S2 / (1.0 - eps / (2.0 * S2))
    };
    assert!((ec03 - v_inf).abs() <= 4.0 * u * v_inf);

    let mut v = 1.0;
    for _ in 0..200 {
        v = a * a * v + b * b;
    }
    assert!((v - v_inf).abs() <= 1e-12 * v_inf, "{v} vs {v_inf}");

    let naive = a * a * S2 + b * b;
    assert!((naive - S2).abs() > 0.06, "s^2 would be a fixed point");
}

/// Sample mean and (unbiased) variance of the single column.
fn mean_var(x: &Array2<f64>) -> (f64, f64) {
    let c = x.column(0);
    let n = c.len() as f64;
    let m = c.sum() / n;
    (m, c.mapv(|v| (v - m) * (v - m)).sum() / (n - 1.0))
}

/// The exact law after `k` steps from `x_0 ~ N(0, 1)`: mean `m + a^k (0 - m)`, variance
/// `V_inf + a^{2k} (1 - V_inf)` (Gaussian at every step, the step being linear).
fn exact_after(k: usize, noise_var: f64) -> (f64, f64) {
    let a: f64 = 1.0 - DELTA / (2.0 * S2);
    let v_inf = noise_var / (1.0 - a * a);
    let ak = a.powi(k as i32);
    (M - ak * M, v_inf + ak * ak * (1.0 - v_inf))
}

/// Whether a sample of `n` Gaussian draws has mean and variance within `Z` standard errors of
/// `(mean, var)`: mean s.e. `sqrt(var/n)`, variance s.e. `var sqrt(2/(n-1))`.
fn gaussian_moments_ok(x: &Array2<f64>, mean: f64, var: f64) -> bool {
    let n = x.nrows() as f64;
    let (m, v) = mean_var(x);
    (m - mean).abs() <= Z * (var / n).sqrt()
        && (v - var).abs() <= Z * var * (2.0 / (n - 1.0)).sqrt()
}

/// Bc02, Ec03 by simulation: 20 000 chains of 60 steps from `N(0, 1)` (far from the target
/// mean 3: Langevin moves the start towards `p`) end with mean and variance within 5 standard
/// errors of the exact law, whose variance is `s^2/(1 - delta/(4 s^2)) = 1.25 s^2`
/// (`a^120 = 2e-27`, so the transient is gone). The same statistic rejects `s^2` itself (25%
/// off, 18 standard errors). Twin: the sampler with noise `sqrt(2 delta) z` (003's noise with
/// 001's drift; stationary variance `2 V_inf`) is rejected.
#[test]
fn langevin_simulation_matches_the_ar1_stationary_law() {
    let target = GaussianTarget { m: M, s2: S2 };
    let (n, k) = (20_000, 60);
    let x = langevin(&target, 1.0, DELTA / 2.0, k, n, &mut seeded(41));
    let (mean, var) = exact_after(k, DELTA);
    let (m, v) = mean_var(&x);
    println!("Langevin N(3, 0.64), delta = {DELTA}: mean {m:.4} (exact {mean:.4}), var {v:.4} (exact {var:.4}, s^2 = {S2})");
    assert!(gaussian_moments_ok(&x, mean, var));
    assert!(!gaussian_moments_ok(&x, mean, S2), "s^2 not resolved");

    let twin = langevin(
        &target,
        1.0,
        DELTA / 2.0,
        k,
        n,
        &mut Scaled(seeded(41), 2f64.sqrt()),
    );
    assert!(
        !gaussian_moments_ok(&twin, mean, var),
        "wrong noise scale accepted"
    );
}

/// Two well-separated modes: `0.3 N(0, 0.25) + 0.7 N(8, 0.25)`. The density at the midpoint
/// is `e^{-32}` times that at the modes.
fn two_modes() -> GaussianMixture {
    let c = |m: f64| MvGaussian::isotropic(Array1::from(vec![m]), 0.25).unwrap();
    GaussianMixture::new(Array1::from(vec![0.3, 0.7]), vec![c(0.0), c(8.0)]).unwrap()
}

/// Fraction of the samples above the midpoint 4 (in the basin of the weight-0.7 mode).
fn upper_fraction(x: &Array2<f64>) -> f64 {
    x.column(0).iter().filter(|&&v| v > 4.0).count() as f64 / x.nrows() as f64
}

const CHAINS: usize = 2000;

/// Ac17, Ec03 (relative weights): Langevin with the EXACT score of `two_modes` (at the
/// smallest level sigma = 0.05, the target of the annealed run below), started in the basin of
/// the mode at 0 (`x_0 ~ N(0, 0.05^2)`), 2000 chains of 3000 steps with `alpha = 0.025` (a
/// tenth of a mode's variance: total time 75, 300 relaxation times of a mode): no chain
/// reaches the other basin, so the fraction there is 0 against the true weight 0.7 (68
/// standard errors away). The bound: crossing needs climbing `Delta U ~ 32` nats; Kramers' rate
/// `~ (1/(2 pi 0.25)) e^{-32} ~ 1e-14` per unit time gives an expected number of crossings
/// `~ 2000 x 75 x 1e-14 ~ 2e-9`, so "no crossing" has false-alarm rate below 1e-8. At that rate
/// the weights would need ~1e13 time units to equilibrate: not feasible.
#[test]
fn langevin_started_in_one_basin_does_not_recover_the_mode_weights() {
    let model = MixtureScore::new(two_modes());
    let x = langevin(&model, 0.05, 0.025, 3000, CHAINS, &mut seeded(42));
    let frac = upper_fraction(&x);
    let se = (0.7 * 0.3 / CHAINS as f64).sqrt();
    println!("plain Langevin: fraction in the weight-0.7 basin {frac} (true 0.7, s.e. {se:.4})");
    assert_eq!(frac, 0.0);
    assert!((frac - 0.7).abs() > Z * se);
}

/// Ac17, Ec07 twin: annealed Langevin (Song & Ermon Alg. 1; 30 geometric levels from 20, above
/// the mode distance 8, down to 0.05, 100 steps each, `alpha_i = 0.1 sigma_i^2`: the same 3000
/// steps) with the same exact scores recovers the weights: the fraction above 4 is within 5
/// binomial standard errors of 0.7 (false-alarm rate 5.7e-7), and the samples pass the
/// per-mode mean checks. Large noise first, then small (Ec07): the weights are set while the
/// levels are large enough for chains to cross, and frozen in as they shrink.
#[test]
fn annealed_langevin_recovers_the_mode_weights() {
    let model = MixtureScore::new(two_modes());
    let sigmas = SigmaSequence::geometric(20.0, 0.05, 30).unwrap();
    let cfg = LangevinConfig {
        steps_per_level: 100,
        eps: 0.1 * 0.05 * 0.05,
        n_samples: CHAINS,
        denoise: false,
    };
    let x = annealed_langevin(&model, &sigmas, cfg, &mut seeded(43), &mut Silent).unwrap();
    let frac = upper_fraction(&x);
    let se = (0.7 * 0.3 / CHAINS as f64).sqrt();
    println!(
        "annealed Langevin: fraction in the weight-0.7 basin {frac:.4} (true 0.7, s.e. {se:.4})"
    );
    assert!((frac - 0.7).abs() <= Z * se, "fraction {frac}");
    // Within each basin the law is the perturbed mode N(mu, 0.25 + 0.05^2).
    let v = 0.25 + 0.05 * 0.05;
    for (lo, hi, mu) in [(f64::NEG_INFINITY, 4.0, 0.0), (4.0, f64::INFINITY, 8.0)] {
        let xs: Vec<f64> = x
            .column(0)
            .iter()
            .copied()
            .filter(|&t| t > lo && t <= hi)
            .collect();
        let n = xs.len() as f64;
        let m = xs.iter().sum::<f64>() / n;
        assert!((m - mu).abs() <= Z * (v / n).sqrt(), "mode {mu}: mean {m}");
    }
}
