//! Score estimation in low-density regions and why noise helps (ledger Ac16, Ec04, Ec05, Ec06),
//! shown with the exact object a perfect learner gets from `n` data points: the minimiser of
//! denoising score matching over the empirical sample, which is the score of the Gaussian kernel
//! density estimate ([`EmpiricalScore`]), compared with the exact score of
//! `q_σ = p * N(0, σ² I)` for a Gaussian mixture `p`.
//!
//! Error scale (book, ncsn.md#low-density-regions): with `n_eff(x) = n q_σ(x) (4πσ²)^{d/2}`,
//! the normalised error `e(x) = σ |ŝ(x) - ∇log q_σ(x)|` satisfies `E e² ≈ d / (2 n_eff)` when
//! `n_eff ≫ 1`, and in `d = 2` the delta-method error is a centred isotropic Gaussian, so
//! `e²` is exponential with mean `1/n_eff` and `P(e < τ) ≈ 1 - exp(-τ² n_eff)`.

use ndarray::{array, Array1, Array2, ArrayView1};
use scoresde::empirical_score::{effective_sample_size, EmpiricalScore};
use scoresde::gaussian::{std_normal_cdf, GaussianMixture, MvGaussian};
use scoresde::rng;

const SEED: u64 = 0x10_de45;

/// Two well separated modes: `½ N((-2,0), 0.3² I) + ½ N((2,0), 0.3² I)`; the strip around
/// `x₁ = 0` is the low-density region between them.
fn two_modes() -> GaussianMixture {
    let c = |m: f64| MvGaussian::isotropic(array![m, 0.0], 0.09).unwrap();
    GaussianMixture::new(array![0.5, 0.5], vec![c(-2.0), c(2.0)]).unwrap()
}

fn sample(p: &GaussianMixture, n: usize, stream: u64) -> EmpiricalScore {
    EmpiricalScore::new(p.sample_n(n, &mut rng::stream(SEED, stream))).unwrap()
}

/// `e(x) = σ |ŝ(x) - ∇log q_σ(x)|`.
fn norm_err(est: &EmpiricalScore, q: &GaussianMixture, x: ArrayView1<f64>, sigma: f64) -> f64 {
    let d = est.score_at(x, 1.0, sigma) - q.score(x).unwrap();
    sigma * d.dot(&d).sqrt()
}

fn n_eff(q: &GaussianMixture, n: usize, x: ArrayView1<f64>, sigma: f64) -> f64 {
    effective_sample_size(n, q.log_density(x).unwrap().exp(), sigma, 2)
}

// ---------------------------------------------------------------------------------------------
// The DSM minimiser over an empirical sample is the KDE score
// ---------------------------------------------------------------------------------------------

/// 1-D data for the minimiser check: 7 points of a two-mode mixture, σ = 0.5.
fn dsm_setup() -> (EmpiricalScore, GaussianMixture, f64) {
    let p1 = GaussianMixture::new(
        array![0.3, 0.7],
        vec![
            MvGaussian::isotropic(array![-1.0], 0.2).unwrap(),
            MvGaussian::isotropic(array![1.5], 0.5).unwrap(),
        ],
    )
    .unwrap();
    (sample(&p1, 7, 1), p1, 0.5)
}

/// The empirical DSM objective `L(s) = (1/n) Σ_i ∫ N(y; x_i, σ²) (s(y) - (x_i - y)/σ²)² dy`
/// by the trapezoid rule on `[min x_i - 12σ, max x_i + 12σ]` with step `σ/40` (the integrand is
/// a Gaussian times a smooth function; the truncated mass is below 1e-32).
fn dsm_objective(est: &EmpiricalScore, sigma: f64, s: &dyn Fn(f64) -> f64) -> f64 {
    let xs: Vec<f64> = est.data().column(0).to_vec();
    let lo = xs.iter().copied().fold(f64::INFINITY, f64::min) - 12.0 * sigma;
    let hi = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max) + 12.0 * sigma;
    let h = sigma / 40.0;
    let m = ((hi - lo) / h).ceil() as usize;
    let mut total = 0.0;
    for k in 0..=m {
        let y = lo + k as f64 * h;
        let wq = if k == 0 || k == m { 0.5 * h } else { h };
        let sy = s(y);
        for &xi in &xs {
            let kern = (-(y - xi).powi(2) / (2.0 * sigma * sigma)).exp()
                / (2.0 * std::f64::consts::PI * sigma * sigma).sqrt();
            total += wq * kern * (sy - (xi - y) / (sigma * sigma)).powi(2);
        }
    }
    total / xs.len() as f64
}

/// Is `s` a stationary point of the empirical DSM objective? For each direction `h` the central
/// difference `(L(s+εh) - L(s-εh)) / 2ε` (exact for a quadratic) must vanish relative to the
/// curvature `(L(s+εh) + L(s-εh) - 2L(s)) / ε²`, to 1e-8 (f64 rounding of sums of ~10⁴ terms
/// is ~1e-12 relative).
fn is_dsm_stationary(est: &EmpiricalScore, sigma: f64, s: &dyn Fn(f64) -> f64) -> bool {
    let dirs: [&dyn Fn(f64) -> f64; 3] =
        [&|_| 1.0, &|y: f64| y.sin(), &|y: f64| y * (-y * y).exp()];
    let l0 = dsm_objective(est, sigma, s);
    dirs.iter().all(|h| {
        let eps = 0.5;
        let lp = dsm_objective(est, sigma, &|y| s(y) + eps * h(y));
        let lm = dsm_objective(est, sigma, &|y| s(y) - eps * h(y));
        let slope = (lp - lm) / (2.0 * eps);
        let curv = (lp + lm - 2.0 * l0) / (eps * eps);
        curv > 0.0 && slope.abs() <= 1e-8 * curv
    })
}

/// Ac16 (derivation): the DSM objective over an empirical sample is minimised by the KDE score
/// `ŝ(y) = Σ_i w_i(y)(x_i - y)/σ²`: it is stationary in every tested direction and the objective
/// rises by exactly `ε² ∫ q̂ h²` (q̂ the KDE) when `ŝ` is perturbed by `εh`.
#[test]
fn empirical_dsm_is_minimised_by_the_kde_score() {
    let (est, _, sigma) = dsm_setup();
    let shat = |y: f64| est.score_at(array![y].view(), 1.0, sigma)[0];
    assert!(is_dsm_stationary(&est, sigma, &shat));
    // L(ŝ + h) - L(ŝ) = ∫ q̂ h² for h = 1 (∫ q̂ = 1 up to quadrature error ~1e-12).
    let l0 = dsm_objective(&est, sigma, &shat);
    let l1 = dsm_objective(&est, sigma, &|y| shat(y) + 1.0);
    assert!((l1 - l0 - 1.0).abs() < 1e-9, "rise {} for h = 1", l1 - l0);
}

/// Twin: the same stationarity check rejects the exact score of `q_σ` (the population minimiser):
/// with 7 points the empirical objective prefers the KDE score.
#[test]
fn empirical_dsm_check_rejects_the_population_score() {
    let (est, p1, sigma) = dsm_setup();
    let q = p1.perturbed(1.0, sigma).unwrap();
    let s = |y: f64| q.score(array![y].view()).unwrap()[0];
    assert!(!is_dsm_stationary(&est, sigma, &s));
    let shat = |y: f64| est.score_at(array![y].view(), 1.0, sigma)[0];
    assert!(dsm_objective(&est, sigma, &s) > dsm_objective(&est, sigma, &shat));
}

// ---------------------------------------------------------------------------------------------
// Ac16 / Ec04: accurate where data are dense, O(1) wrong in the gap
// ---------------------------------------------------------------------------------------------

const SIGMA_SMALL: f64 = 0.1;
const REPLICATES: u64 = 100;

/// RMS of `e(x)` over `REPLICATES` independent data sets of size `n`, and the smallest `e`.
fn rms_and_min_err(n: usize, x: ArrayView1<f64>, salt: u64) -> (f64, f64) {
    let p = two_modes();
    let q = p.perturbed(1.0, SIGMA_SMALL).unwrap();
    let errs: Vec<f64> = (0..REPLICATES)
        .map(|r| norm_err(&sample(&p, n, salt + r), &q, x, SIGMA_SMALL))
        .collect();
    let rms = (errs.iter().map(|e| e * e).sum::<f64>() / errs.len() as f64).sqrt();
    (rms, errs.iter().copied().fold(f64::INFINITY, f64::min))
}

/// Ac16 / Ec04: at σ = 0.1 and n ∈ {500, 2000, 8000}, over 100 independent data sets each:
/// at the mode centre `(2, 0)` (`n_eff` = 50, 200, 800) the RMS of `e` is `sqrt(1/n_eff)` within
/// ±20% (RMS of 100 exponential draws: relative sd 5%, so ±20% is 4 sd; the leading-order
/// constant at a Gaussian mode's centre is 0.947 × 1.05 ≈ 1.0, bias O(1/n_eff)), so it falls
/// like `n^{-1/2}` (ratio 8000 vs 500 in `[0.18, 0.32]`, 4 sd around 1/4). In the gap point
/// `(0, 0.5)` (`n_eff` < 1e-6) every replicate has `e ≥ 1`: there ŝ points at the nearest
/// samples, at distance ≳ 1 ≫ σ, so `e ≈ dist/σ - σ|s| ≫ 1`; `e < 1` needs a sample within
/// about `1.5σ`, probability ~ `n_eff` per replicate. The gap error does not shrink with n
/// (RMS at n = 8000 is more than half its value at n = 500, where `n^{-1/2}` would give 1/4).
#[test]
fn kde_score_is_accurate_at_the_modes_and_wrong_between_them() {
    let p = two_modes();
    let q = p.perturbed(1.0, SIGMA_SMALL).unwrap();
    let mode = array![2.0, 0.0];
    let gap = array![0.0, 0.5];
    let mut mode_rms = vec![];
    let mut gap_rms = vec![];
    for (k, &n) in [500usize, 2000, 8000].iter().enumerate() {
        let (rm, _) = rms_and_min_err(n, mode.view(), 1000 * (k as u64 + 1));
        let (rg, mg) = rms_and_min_err(n, gap.view(), 1000 * (k as u64 + 1));
        let ne = n_eff(&q, n, mode.view(), SIGMA_SMALL);
        let neg = n_eff(&q, n, gap.view(), SIGMA_SMALL);
        let pred = (1.0 / ne).sqrt();
        println!(
            "n {n}: mode n_eff {ne:.1} rms e {rm:.4} (pred {pred:.4}) | gap n_eff {neg:.1e} rms e {rg:.2} min e {mg:.2}"
        );
        assert!(
            (0.8..=1.2).contains(&(rm / pred)),
            "mode rms {rm} vs {pred}"
        );
        assert!(neg < 1e-5 && mg >= 1.0, "gap min error {mg}");
        mode_rms.push(rm);
        gap_rms.push(rg);
    }
    let decay = mode_rms[2] / mode_rms[0];
    assert!((0.18..=0.32).contains(&decay), "mode error ratio {decay}");
    assert!(
        gap_rms[2] > 0.5 * gap_rms[0],
        "gap error ratio {}",
        gap_rms[2] / gap_rms[0]
    );
}

/// The low-density strip between the modes: `x₁ ∈ {-0.5, …, 0.5}`, `x₂ ∈ {-1, …, 1}`, step 0.25.
fn strip() -> Vec<Array1<f64>> {
    let mut v = vec![];
    for i in 0..5 {
        for j in 0..9 {
            v.push(array![-0.5 + 0.25 * i as f64, -1.0 + 0.25 * j as f64]);
        }
    }
    v
}

/// Total variation between one Langevin step `x' = x + (ε/2) s(x) + √ε z` (ε = σ²) taken with ŝ
/// and with the exact score: two Gaussians with covariance `εI` whose means differ by
/// `Δ = (ε/2)|ŝ - s|`, so `TV = 2Φ(Δ / (2√ε)) - 1 = 2Φ(e/4) - 1`. It is the smallest possible
/// probability, over all couplings, that the two steps land in different places.
fn step_tv(est: &EmpiricalScore, q: &GaussianMixture, x: ArrayView1<f64>, sigma: f64) -> f64 {
    2.0 * std_normal_cdf(norm_err(est, q, x, sigma) / 4.0) - 1.0
}

/// Smallest and largest one-step TV over the strip, and the largest `n_eff` on it (n = 2000).
fn strip_tv(sigma: f64) -> (f64, f64, f64) {
    let p = two_modes();
    let q = p.perturbed(1.0, sigma).unwrap();
    let est = sample(&p, 2000, 7);
    let pts = strip();
    let tv: Vec<f64> = pts
        .iter()
        .map(|x| step_tv(&est, &q, x.view(), sigma))
        .collect();
    let ne = pts
        .iter()
        .map(|x| n_eff(&q, 2000, x.view(), sigma))
        .fold(0.0, f64::max);
    (
        tv.iter().copied().fold(f64::INFINITY, f64::min),
        tv.iter().copied().fold(0.0, f64::max),
        ne,
    )
}

/// Ec04 ("derails sampling"): at σ = 0.1 with n = 2000 every point of the strip between the
/// modes has `n_eff < 3e-3`, and a Langevin step from it with ŝ differs from the exact step
/// with probability ≥ 1/2 (TV ≥ 0.5, i.e. `e ≥ 2.7`; there `e ≈ dist/σ` with the nearest
/// samples ≳ 0.5 away, so `e ≳ 5 - σ|s| ≥ 3.5`). At the mode centres the same step is
/// faithful: TV ≤ 0.1 (`e ≈ 0.07`, and `e > 0.8` has probability `exp(-0.64·200) ≈ 0`).
#[test]
fn langevin_step_from_the_gap_is_derailed_by_the_estimated_score() {
    let (tv_min, _, ne) = strip_tv(SIGMA_SMALL);
    println!("sigma {SIGMA_SMALL}: strip max n_eff {ne:.2e}, min one-step TV {tv_min:.3}");
    assert!(ne < 3e-3 && tv_min >= 0.5);
    let p = two_modes();
    let q = p.perturbed(1.0, SIGMA_SMALL).unwrap();
    let est = sample(&p, 2000, 7);
    for x in [array![2.0, 0.0], array![-2.0, 0.0]] {
        let tv = step_tv(&est, &q, x.view(), SIGMA_SMALL);
        println!("mode {x}: one-step TV {tv:.4}");
        assert!(tv <= 0.1);
    }
}

/// Twin (and Ec05 in one line): the same strip check fails at σ = 1, where every strip point has
/// `n_eff > 100` and the step is faithful (largest TV < 0.5).
#[test]
fn gap_derailment_check_fails_once_the_noise_covers_the_gap() {
    let (_, tv_max, _) = strip_tv(1.0);
    let p = two_modes();
    let q = p.perturbed(1.0, 1.0).unwrap();
    let ne_min = strip()
        .iter()
        .map(|x| n_eff(&q, 2000, x.view(), 1.0))
        .fold(f64::INFINITY, f64::min);
    println!("sigma 1: strip min n_eff {ne_min:.0}, max one-step TV {tv_max:.4}");
    assert!(ne_min > 100.0 && tv_max < 0.5);
}

// ---------------------------------------------------------------------------------------------
// Ec05 / Ec06: noise enlarges the accurate region, at the price of moving q_σ away from p
// ---------------------------------------------------------------------------------------------

const SIGMAS: [f64; 7] = [0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 4.0];
const TAU: f64 = 0.2;
const N_FRAC: usize = 1000;
const FRAC_REPS: u64 = 5;

/// A 41 × 41 grid on the window `[-5, 5]²`, which holds the data and the gap around it.
fn window() -> Array2<f64> {
    let k = 41;
    Array2::from_shape_fn((k * k, 2), |(i, j)| {
        let idx = if j == 0 { i / k } else { i % k };
        -5.0 + 10.0 * idx as f64 / (k - 1) as f64
    })
}

/// Fraction of (window point, data set) pairs, over `FRAC_REPS` data sets of `N_FRAC` points,
/// where `σ|ŝ - r| < TAU` for the reference score `r` (∇log q_σ, or ∇log p for the twin); and
/// the CLT prediction `mean_x (1 - exp(-TAU² n_eff(x)))`.
fn accurate_fraction(sigma: f64, reference: &GaussianMixture) -> (f64, f64) {
    let p = two_modes();
    let q = p.perturbed(1.0, sigma).unwrap();
    let g = window();
    let mut hits = 0usize;
    for r in 0..FRAC_REPS {
        let est = sample(&p, N_FRAC, 50_000 + r);
        for x in g.rows() {
            let d = est.score_at(x, 1.0, sigma) - reference.score(x).unwrap();
            if sigma * d.dot(&d).sqrt() < TAU {
                hits += 1;
            }
        }
    }
    let pred = g
        .rows()
        .into_iter()
        .map(|x| 1.0 - (-TAU * TAU * n_eff(&q, N_FRAC, x, sigma)).exp())
        .sum::<f64>()
        / g.nrows() as f64;
    (hits as f64 / (g.nrows() as u64 * FRAC_REPS) as f64, pred)
}

/// Ec05: the fraction of the window where the estimated score is accurate (`e < 0.2`) rises
/// strictly with σ along the grid 0.05 … 2, each step by more than 4 binomial sds of the
/// difference of two fractions of 8405 draws (`4 √((a(1-a) + b(1-b)) / 8405)`; grid points are
/// 0.25 apart, ≥ σ where the fractions are small, so their errors are nearly independent
/// there; where σ is larger the steps are tens of sds), from < 5% at σ = 0.1 to > 95% at
/// σ = 2; and it is at least the flat-density CLT prediction minus 0.02 (the prediction takes
/// `q_{σ/√2} = q_σ`; in Gaussian tails and in the valley `q_{σ/√2} < q_σ`, so it overstates the
/// variance there).
#[test]
fn noise_enlarges_the_region_where_the_score_is_accurate() {
    let mut prev = 0.0;
    for &sigma in &SIGMAS[..6] {
        let q = two_modes().perturbed(1.0, sigma).unwrap();
        let (acc, pred) = accurate_fraction(sigma, &q);
        println!("sigma {sigma}: accurate fraction {acc:.3} (CLT prediction {pred:.3})");
        assert!(acc >= pred - 0.02, "sigma {sigma}: {acc} < {pred}");
        let m = (window().nrows() as u64 * FRAC_REPS) as f64;
        let sd = ((acc * (1.0 - acc) + prev * (1.0 - prev)) / m).sqrt();
        assert!(
            acc > prev + 4.0 * sd || acc > 0.99,
            "sigma {sigma}: {acc} after {prev}"
        );
        prev = acc;
    }
    assert!(accurate_fraction(0.1, &two_modes().perturbed(1.0, 0.1).unwrap()).0 < 0.05);
    assert!(prev > 0.95);
}

/// Twin: measured against the unperturbed data score ∇log p, the same fraction does not rise
/// with σ (from σ = 0.2 on it falls): noise makes ŝ accurate for ∇log q_σ, not for ∇log p.
#[test]
fn enlargement_check_fails_against_the_unperturbed_score() {
    let p = two_modes();
    let fr: Vec<f64> = SIGMAS[2..6]
        .iter()
        .map(|&s| accurate_fraction(s, &p).0)
        .collect();
    println!("fraction accurate for grad log p at sigma 0.2, 0.5, 1, 2: {fr:.3?}");
    assert!(fr.windows(2).any(|w| w[1] <= w[0] + 0.02));
}

/// Ec06: over σ ∈ {0.05, …, 4} report the accurate fraction (as above) and bounds on the
/// 2-Wasserstein distance of `q_σ` from `p`: `√(T + dσ²) - √T ≤ W₂ ≤ σ√d`, `T = tr Cov p`
/// (upper: the coupling `(x, x + σz)`; lower: the triangle inequality in L² for centred
/// variables with equal means, and `tr Cov q_σ = T + dσ²`, checked exactly on the mixture).
/// The trade-off: no σ has both an accurate fraction ≥ 1/2 and `W₂ ≤ 0.3` (the mode width):
/// every σ either leaves most of the window poorly estimated or moves `q_σ` by more than a
/// mode's width.
#[test]
fn noise_level_trades_distortion_for_coverage() {
    let p = two_modes();
    let t = p.covariance().diag().sum();
    for &sigma in &SIGMAS {
        let q = p.perturbed(1.0, sigma).unwrap();
        let tq = q.covariance().diag().sum();
        assert!((tq - t - 2.0 * sigma * sigma).abs() < 1e-12 * tq);
        let (acc, _) = accurate_fraction(sigma, &q);
        let (lo, hi) = (
            (t + 2.0 * sigma * sigma).sqrt() - t.sqrt(),
            sigma * 2f64.sqrt(),
        );
        println!("sigma {sigma}: accurate fraction {acc:.3}, W2(q_sigma, p) in [{lo:.4}, {hi:.4}]");
        assert!(
            acc < 0.5 || lo > 0.3,
            "sigma {sigma}: {acc} with W2 >= {lo}"
        );
    }
}

/// Bad input gives a typed error, not a panic: no points, a NaN in the data, points of the wrong
/// width, `std ≤ 0`; the trait method returns NaN for the same level.
#[test]
fn empirical_score_rejects_bad_input() {
    use scoresde::score::{Level, ScoreModel};
    assert!(EmpiricalScore::new(Array2::zeros((0, 2))).is_err());
    assert!(EmpiricalScore::new(array![[0.0, f64::NAN]]).is_err());
    let est = EmpiricalScore::new(array![[0.0, 1.0], [1.0, 0.0]]).unwrap();
    let ok = Level {
        t: 0.0,
        scale: 1.0,
        std: 0.5,
    };
    let bad = Level { std: 0.0, ..ok };
    assert!(est.try_score(array![[0.0, 0.0, 0.0]].view(), ok).is_err());
    assert!(est.try_score(array![[0.0, 0.0]].view(), bad).is_err());
    assert!(est.score(array![[0.0, 0.0]].view(), bad)[[0, 0]].is_nan());
    // Symmetric data: the score at the midpoint is zero.
    let s = est.try_score(array![[0.5, 0.5]].view(), ok).unwrap();
    assert!(s.iter().all(|v| v.abs() < 1e-15));
}

/// `ŝ` is the gradient of `ln q̂(x) = ln (1/n) Σ_i N(x; scale x_i, std² I)` (the KDE of the
/// scaled data, here with scale 0.8 as on a VP process): central differences with step 1e-5
/// have truncation error ~ h² |∂³ ln q̂| ≈ 1e-10·(1/std)³ and rounding ~ 1e-16/h ≈ 1e-11 of
/// `ln q̂`; tolerance 1e-6 relative to `1/std`.
#[test]
fn empirical_score_is_the_gradient_of_the_log_kde() {
    let p = two_modes();
    let est = sample(&p, 50, 3);
    let (scale, std) = (0.8, 0.4);
    let log_kde = |x: &Array1<f64>| {
        let l: Vec<f64> = est
            .data()
            .rows()
            .into_iter()
            .map(|xi| -(&(&xi * scale) - x).mapv(|v| v * v).sum() / (2.0 * std * std))
            .collect();
        let m = l.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        m + l.iter().map(|v| (v - m).exp()).sum::<f64>().ln()
    };
    let h = 1e-5;
    for x in [array![1.5, 0.2], array![0.0, 0.0], array![-1.0, 0.7]] {
        let s = est.score_at(x.view(), scale, std);
        for j in 0..2 {
            let mut xp = x.clone();
            let mut xm = x.clone();
            xp[j] += h;
            xm[j] -= h;
            let fd = (log_kde(&xp) - log_kde(&xm)) / (2.0 * h);
            assert!(
                (fd - s[j]).abs() < 1e-6 / std,
                "x {x} coord {j}: {fd} vs {}",
                s[j]
            );
        }
    }
}
