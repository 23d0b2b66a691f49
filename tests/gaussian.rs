//! Tests of the Gaussian toolkit: special functions, `DiagGaussian`, `MvGaussian`, Cholesky.
//! Every check uses an independent route (quadrature, finite differences, Monte Carlo, a
//! different closed form, or high-precision reference values).

use ndarray::{Array1, Array2};
use proptest::prelude::*;
use scoresde::gaussian::{
    log_std_normal_cdf, std_normal_cdf, std_normal_pdf, Cholesky, DiagGaussian, MvGaussian,
};
use scoresde::{rng, Error};

const EPS: f64 = f64::EPSILON;

/// Composite Simpson rule on `[a, b]` with `n` (even) intervals.
fn simpson(f: impl Fn(f64) -> f64, a: f64, b: f64, n: usize) -> f64 {
    assert!(n.is_multiple_of(2));
    let h = (b - a) / n as f64;
    let mut s = f(a) + f(b);
    for i in 1..n {
        let w = if i % 2 == 1 { 4.0 } else { 2.0 };
        s += w * f(a + i as f64 * h);
    }
    s * h / 3.0
}

/// A symmetric positive definite matrix `M Mᵀ + 0.1 I` from `d²` entries of `M`; its smallest
/// eigenvalue is at least 0.1.
fn spd(d: usize, m: &[f64]) -> Array2<f64> {
    let m = Array2::from_shape_vec((d, d), m.to_vec()).unwrap();
    m.dot(&m.t()) + Array2::<f64>::eye(d) * 0.1
}

/// Upper bound on the condition number of `spd(..)`: `λ_max ≤ tr Σ`, `λ_min ≥ 0.1`.
fn cond_bound(s: &Array2<f64>) -> f64 {
    s.diag().sum() / 0.1
}

fn mvn(mean: &[f64], cov: &[f64]) -> MvGaussian {
    let d = mean.len();
    MvGaussian::new(
        Array1::from_vec(mean.to_vec()),
        Array2::from_shape_vec((d, d), cov.to_vec()).unwrap(),
    )
    .unwrap()
}

// ---------------------------------------------------------------- special functions

/// Φ(x) = 1/2 + ∫_0^x φ(t) dt, the integral by composite Simpson. Simpson's error is at most
/// `|x|/180 · h⁴ · max|φ⁗|` with `max|φ⁗| = 3 φ(0) < 1.2` (φ⁗ = (t⁴-6t²+3)φ peaks at 0);
/// summing `n` positive terms adds at most `n·eps·Φ`.
#[test]
fn std_normal_cdf_equals_simpson_quadrature_of_pdf() {
    for &x in &[-7.0f64, -4.0, -1.3, -0.2, 0.0, 0.4, 1.0, 2.5, 6.0] {
        let n = 2000 * (1 + x.abs().ceil() as usize);
        let h = x.abs() / n as f64;
        let quad = if x == 0.0 {
            0.5
        } else {
            0.5 + simpson(std_normal_pdf, 0.0, x, n)
        };
        let tol = x.abs() / 180.0 * h.powi(4) * 1.2 + n as f64 * EPS + 4.0 * EPS;
        let got = std_normal_cdf(x);
        assert!(
            (got - quad).abs() <= tol,
            "x={x}: Φ={got}, quad={quad}, tol={tol}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    /// Φ(-x) = 1 - Φ(x): each side is one `erfc` (< 1 ulp) and a halving; the sum is within
    /// a few ulps of 1.
    #[test]
    fn std_normal_cdf_is_symmetric(x in -40.0f64..40.0) {
        let s = std_normal_cdf(-x) + std_normal_cdf(x);
        prop_assert!((s - 1.0).abs() <= 4.0 * EPS, "x={x}: sum={s}");
    }
}

/// Mills-ratio asymptotic series `Φ(x) = φ(x)/(-x) Σ_k (-1)^k (2k-1)!!/x^{2k}`, summed term by
/// term (an independent route from the library's Horner form and from `erfc`).
fn mills_log_cdf(x: f64, terms: usize) -> f64 {
    let u = 1.0 / (x * x);
    let mut sum = 1.0;
    let mut term = 1.0;
    for k in 1..=terms {
        term *= -((2 * k - 1) as f64) * u;
        sum += term;
    }
    -0.5 * x * x - (-x).ln() - 0.5 * (2.0 * std::f64::consts::PI).ln() + sum.ln()
}

/// `ln Φ` in the far lower tail: against 40-digit reference values (mpmath `log(ncdf(x))`) and
/// the Mills series. At x = -30 the series truncated after 12 terms errs by < 23!!/30²⁴ < 1e-23;
/// the only error left is the rounding of `x²/2 ≈ 450` (≈ 450·eps ≈ 1e-13), so 1e-12 absolute.
#[test]
fn log_std_normal_cdf_is_accurate_in_the_far_lower_tail() {
    let reference = [
        (-30.0f64, -454.321_243_956_343_2f64),
        (-40.0, -804.608_442_013_753_8),
        (-100.0, -5_005.524_208_694_205),
        (-5.0, -15.064_998_393_988_726),
    ];
    for &(x, want) in &reference {
        let got = log_std_normal_cdf(x);
        let tol = 1e-12 + 4.0 * EPS * want.abs();
        assert!((got - want).abs() <= tol, "x={x}: {got} vs {want}");
        if x <= -30.0 {
            let series = mills_log_cdf(x, 12);
            assert!(
                (got - series).abs() <= tol,
                "x={x}: {got} vs series {series}"
            );
        }
    }
    // The naive route underflows: Φ(-40) ≈ 3.7e-350 is below the smallest f64.
    assert_eq!(std_normal_cdf(-40.0).ln(), f64::NEG_INFINITY);
}

/// Both branches of `ln Φ` agree where they meet (x = -35 is the switch): the erfc route and
/// the series are both accurate to ~1e-13 absolute there (series error < 17!!·35⁻¹⁸ < 1e-21).
#[test]
fn log_std_normal_cdf_branches_agree_at_the_switch() {
    for &x in &[-34.0, -35.0, -35.000_000_1, -36.0, -37.0] {
        let erfc_route = std_normal_cdf(x).ln();
        let got = log_std_normal_cdf(x);
        assert!(erfc_route.is_finite());
        assert!(
            (got - erfc_route).abs() <= 1e-12,
            "x={x}: {got} vs {erfc_route}"
        );
    }
}

/// Upper tail: `ln Φ(10) = ln(1 - Φ(-10)) ≈ -7.62e-24`, invisible to `ln(Φ(10)) = ln(1) = 0`.
/// Reference from mpmath; `ln1p` keeps full relative accuracy.
#[test]
fn log_std_normal_cdf_keeps_the_upper_tail_deficit() {
    let got = log_std_normal_cdf(10.0);
    let want = -7.619_853_024_160_526e-24;
    assert!((got - want).abs() <= 1e-14 * want.abs(), "{got} vs {want}");
    assert_eq!(std_normal_cdf(10.0).ln(), 0.0);
    assert!(log_std_normal_cdf(f64::NEG_INFINITY) == f64::NEG_INFINITY);
    assert!(log_std_normal_cdf(f64::NAN).is_nan());
}

// ---------------------------------------------------------------- normalisation

/// 1-D density integrates to 1: Simpson over μ ± 12σ (mass outside 2Φ(-12) < 4e-33), rule
/// error ≤ (b-a)/180 h⁴ max|f⁗| with max|f⁗| = 3/(√(2π) σ⁵), rounding ≤ n·eps.
#[test]
fn diag_density_integrates_to_one_in_1d() {
    let (m, v) = (0.7, 2.3);
    let g = DiagGaussian::new(Array1::from_vec(vec![m]), Array1::from_vec(vec![v])).unwrap();
    let s = v.sqrt();
    let (a, b, n) = (m - 12.0 * s, m + 12.0 * s, 4000);
    let f = |x: f64| {
        g.log_density(Array1::from_vec(vec![x]).view())
            .unwrap()
            .exp()
    };
    let total = simpson(f, a, b, n);
    let h = (b - a) / n as f64;
    let tol = (b - a) / 180.0 * h.powi(4) * 3.0 / ((2.0 * std::f64::consts::PI).sqrt() * s.powi(5))
        + n as f64 * EPS;
    assert!((total - 1.0).abs() <= tol, "∫p = {total}, tol {tol}");
}

/// Tensor-product Simpson of a 2-D Gaussian density over the box μ ± 10 √Σ_ii; a wrong
/// density (normalised with `det Σ` instead of `√det Σ`) is the twin that must fail.
fn integrate_2d(f: impl Fn(f64, f64) -> f64, lo: [f64; 2], hi: [f64; 2], n: usize) -> f64 {
    let hx = (hi[0] - lo[0]) / n as f64;
    let hy = (hi[1] - lo[1]) / n as f64;
    let w = |i: usize| {
        if i == 0 || i == n {
            1.0
        } else if i % 2 == 1 {
            4.0
        } else {
            2.0
        }
    };
    let mut s = 0.0;
    for i in 0..=n {
        for j in 0..=n {
            s += w(i) * w(j) * f(lo[0] + i as f64 * hx, lo[1] + j as f64 * hy);
        }
    }
    s * hx * hy / 9.0
}

/// 2-D density integrates to 1. Mass outside the box ≤ 4Φ(-10) < 1e-22. The rule error is
/// estimated by Richardson (`|S_n - S_{n/2}|` bounds the error of `S_n` for an O(h⁴) rule);
/// rounding of the ~(n+1)² positive terms adds ≤ (n+1)²·eps. The twin (missing the ½ on
/// `ln det Σ`) integrates to `det Σ^{-1/2} ≈ 2.2` and must fail the same test.
#[test]
fn mvn_density_integrates_to_one_in_2d() {
    let g = mvn(&[0.3, -1.0], &[1.0, 0.6, 0.6, 0.5]);
    let lo = [0.3 - 10.0, -1.0 - 10.0 * 0.5f64.sqrt()];
    let hi = [0.3 + 10.0, -1.0 + 10.0 * 0.5f64.sqrt()];
    let p = |x: f64, y: f64| {
        g.log_density(Array1::from_vec(vec![x, y]).view())
            .unwrap()
            .exp()
    };
    let n = 300;
    let (fine, coarse) = (integrate_2d(p, lo, hi, n), integrate_2d(p, lo, hi, n / 2));
    let tol = (fine - coarse).abs() + ((n + 1) * (n + 1)) as f64 * EPS;
    assert!((fine - 1.0).abs() <= tol, "∫p = {fine}, tol {tol}");

    let log_det = g.cholesky().log_det();
    let wrong = |x: f64, y: f64| (p(x, y).ln() - 0.5 * log_det).exp();
    let w_fine = integrate_2d(wrong, lo, hi, n);
    assert!((w_fine - 1.0).abs() > tol, "twin integrates to {w_fine}");
}

/// Entropy closed form equals `-∫ p ln p` by Simpson (1-D, μ ± 12σ, outside mass < 1e-30).
/// Rule error estimated by Richardson, `|S_n - S_{n/2}|` (an O(h⁴) rule); rounding of the n
/// terms ≤ n·eps·max|p ln p| ≤ n·eps.
#[test]
fn entropy_equals_quadrature_of_negative_log_density() {
    let g = DiagGaussian::new(Array1::from_vec(vec![-0.4]), Array1::from_vec(vec![0.3])).unwrap();
    let s = 0.3f64.sqrt();
    let f = |x: f64| {
        let lp = g.log_density(Array1::from_vec(vec![x]).view()).unwrap();
        -lp * lp.exp()
    };
    let (a, b, n) = (-0.4 - 12.0 * s, -0.4 + 12.0 * s, 4000);
    let (fine, coarse) = (simpson(f, a, b, n), simpson(f, a, b, n / 2));
    let tol = (fine - coarse).abs() + n as f64 * EPS;
    assert!(
        (g.entropy() - fine).abs() <= tol,
        "{} vs {fine}",
        g.entropy()
    );
    let m = MvGaussian::from_diag(&g);
    assert!((m.entropy() - g.entropy()).abs() <= 8.0 * EPS);
}

// ---------------------------------------------------------------- scores

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Score = central finite difference of the log-density. A Gaussian log-density is
    /// quadratic, so the O(h²) truncation term vanishes identically; what is left is rounding:
    /// `ln N` carries ≲ d²·κ·eps·(1+|ln N|) absolute error, divided by 2h.
    #[test]
    fn mvn_score_equals_finite_difference_of_log_density(
        m in prop::collection::vec(-1.0f64..1.0, 9),
        mu in prop::collection::vec(-2.0f64..2.0, 3),
        x in prop::collection::vec(-3.0f64..3.0, 3),
    ) {
        let cov = spd(3, &m);
        let kappa = cond_bound(&cov);
        let g = MvGaussian::new(Array1::from_vec(mu), cov).unwrap();
        let x = Array1::from_vec(x);
        let s = g.score(x.view()).unwrap();
        let h = 1e-3;
        for i in 0..3 {
            let (mut xp, mut xm) = (x.clone(), x.clone());
            xp[i] += h;
            xm[i] -= h;
            let (lp, lm) = (g.log_density(xp.view()).unwrap(), g.log_density(xm.view()).unwrap());
            let fd = (lp - lm) / (xp[i] - xm[i]);
            let tol = 9.0 * kappa * EPS * (1.0 + lp.abs().max(lm.abs())) / h;
            prop_assert!((fd - s[i]).abs() <= tol, "i={i} fd={fd} s={} tol={tol}", s[i]);
        }
    }

    /// The diagonal score `-(x-μ)/v` equals the finite difference of its log-density (exact
    /// truncation, rounding as above with κ = max v / min v).
    #[test]
    fn diag_score_equals_finite_difference_of_log_density(
        mu in prop::collection::vec(-2.0f64..2.0, 3),
        v in prop::collection::vec(0.1f64..4.0, 3),
        x in prop::collection::vec(-3.0f64..3.0, 3),
    ) {
        let g = DiagGaussian::new(Array1::from_vec(mu), Array1::from_vec(v)).unwrap();
        let x = Array1::from_vec(x);
        let s = g.score(x.view()).unwrap();
        let h = 1e-3;
        for i in 0..3 {
            let (mut xp, mut xm) = (x.clone(), x.clone());
            xp[i] += h;
            xm[i] -= h;
            let (lp, lm) = (g.log_density(xp.view()).unwrap(), g.log_density(xm.view()).unwrap());
            let fd = (lp - lm) / (xp[i] - xm[i]);
            let tol = 16.0 * EPS * (1.0 + lp.abs().max(lm.abs())) / h;
            prop_assert!((fd - s[i]).abs() <= tol, "i={i} fd={fd} s={}", s[i]);
        }
    }
}

/// Batch evaluations equal row-by-row evaluations exactly (same arithmetic per row).
#[test]
fn mvn_batch_equals_rowwise() {
    let g = mvn(&[0.1, 0.2], &[2.0, 0.3, 0.3, 1.0]);
    let x = Array2::from_shape_vec((3, 2), vec![0.0, 1.0, -2.0, 0.5, 3.0, -1.0]).unwrap();
    let lp = g.log_density_batch(x.view()).unwrap();
    let sc = g.score_batch(x.view()).unwrap();
    for (i, row) in x.rows().into_iter().enumerate() {
        assert_eq!(lp[i], g.log_density(row).unwrap());
        assert_eq!(sc.row(i), g.score(row).unwrap());
    }
    assert!(matches!(
        g.log_density_batch(Array2::zeros((2, 3)).view()),
        Err(Error::Shape(_))
    ));
}

// ---------------------------------------------------------------- sampling (CLT)

/// Sample mean and covariance within 5-sigma CLT bounds of the given moments. The covariance
/// estimator uses the known mean: `Ĉ_ij = mean((x_i-μ_i)(x_j-μ_j))`, whose variance for a
/// Gaussian is `(Σ_ii Σ_jj + Σ_ij²)/n`. With `d + d(d+1)/2` checks at two-sided 5σ (false-alarm
/// 5.7e-7 each) the family false-alarm rate is < 1e-5.
fn moments_within_clt(xs: &Array2<f64>, mean: &Array1<f64>, cov: &Array2<f64>) -> bool {
    let n = xs.nrows() as f64;
    let d = mean.len();
    let mut ok = true;
    for i in 0..d {
        let m = xs.column(i).mean().unwrap();
        ok &= (m - mean[i]).abs() <= 5.0 * (cov[[i, i]] / n).sqrt();
        for j in 0..=i {
            let c = xs
                .rows()
                .into_iter()
                .map(|r| (r[i] - mean[i]) * (r[j] - mean[j]))
                .sum::<f64>()
                / n;
            let sd = ((cov[[i, i]] * cov[[j, j]] + cov[[i, j]].powi(2)) / n).sqrt();
            ok &= (c - cov[[i, j]]).abs() <= 5.0 * sd;
        }
    }
    ok
}

fn test_mvn() -> MvGaussian {
    mvn(
        &[1.0, -2.0, 0.5],
        &[4.0, 0.6, -0.3, 0.6, 0.25, 0.05, -0.3, 0.05, 1.0],
    )
}

/// `MvGaussian::sample` has the stated mean and covariance (CLT, 100 000 draws, seed 11).
#[test]
fn mvn_sample_moments_within_clt_bounds() {
    let g = test_mvn();
    let xs = g.sample_n(100_000, &mut rng::seeded(11));
    assert!(moments_within_clt(&xs, g.mean(), g.cov()));
}

/// Twin: a sampler that multiplies the noise by `Σ` instead of its Cholesky factor `L`
/// (a "variance instead of standard deviation" slip) is rejected by the same check.
#[test]
fn mvn_sample_check_rejects_a_wrongly_scaled_sampler() {
    let g = test_mvn();
    let mut r = rng::seeded(11);
    let mut xs = Array2::zeros((100_000, 3));
    for mut row in xs.rows_mut() {
        let z = Array1::from_shape_fn(3, |_| rng::normal(&mut r));
        row.assign(&(g.mean() + &g.cov().dot(&z)));
    }
    assert!(!moments_within_clt(&xs, g.mean(), g.cov()));
}

/// `DiagGaussian::sample` has the stated moments (CLT as above), and its twin that scales the
/// noise by the variance instead of the standard deviation is rejected.
#[test]
fn diag_sample_moments_within_clt_bounds_and_twin_rejected() {
    let mean = Array1::from_vec(vec![0.5, -1.0]);
    let var = Array1::from_vec(vec![3.0, 0.2]);
    let g = DiagGaussian::new(mean.clone(), var.clone()).unwrap();
    let xs = g.sample_n(100_000, &mut rng::seeded(12));
    let cov = Array2::from_diag(&var);
    assert!(moments_within_clt(&xs, &mean, &cov));
    let mut r = rng::seeded(12);
    let wrong = Array2::from_shape_fn((100_000, 2), |(_, j)| {
        mean[j] + var[j] * rng::normal(&mut r)
    });
    assert!(!moments_within_clt(&wrong, &mean, &cov));
}

// ---------------------------------------------------------------- KL and entropy

/// Monte Carlo of `E_p[ln p(x) - ln q(x)]`: estimate and its standard error.
fn mc_kl(p: &MvGaussian, q: &MvGaussian, n: usize, seed: u64) -> (f64, f64) {
    let xs = p.sample_n(n, &mut rng::seeded(seed));
    let lp = p.log_density_batch(xs.view()).unwrap();
    let lq = q.log_density_batch(xs.view()).unwrap();
    let diff = lp - lq;
    let m = diff.mean().unwrap();
    let var = diff.mapv(|v| (v - m).powi(2)).sum() / (n as f64 - 1.0);
    (m, (var / n as f64).sqrt())
}

/// Closed-form KL equals the Monte Carlo estimate within 5 standard errors (false alarm
/// 5.7e-7); the twin — the reversed divergence `KL(q‖p)` offered as `KL(p‖q)` — is rejected.
#[test]
fn kl_closed_form_matches_monte_carlo() {
    let p = mvn(&[0.0, 1.0], &[1.0, 0.5, 0.5, 2.0]);
    let q = mvn(&[1.0, 0.0], &[0.5, -0.1, -0.1, 1.0]);
    let (est, se) = mc_kl(&p, &q, 200_000, 21);
    let kl = p.kl(&q).unwrap();
    assert!((est - kl).abs() <= 5.0 * se, "MC {est} ± {se}, closed {kl}");
    let reversed = q.kl(&p).unwrap();
    assert!(
        (est - reversed).abs() > 5.0 * se,
        "twin {reversed} not rejected"
    );
}

/// The diagonal KL equals the full-covariance KL of the same distributions (per-coordinate
/// sum vs trace/Cholesky route) to rounding; also the diagonal KL against Monte Carlo.
#[test]
fn diag_kl_equals_mvn_kl_and_monte_carlo() {
    let p = DiagGaussian::new(
        Array1::from_vec(vec![0.2, -0.3]),
        Array1::from_vec(vec![1.5, 0.4]),
    )
    .unwrap();
    let q = DiagGaussian::new(
        Array1::from_vec(vec![-0.5, 0.1]),
        Array1::from_vec(vec![0.8, 1.1]),
    )
    .unwrap();
    let (pm, qm) = (MvGaussian::from_diag(&p), MvGaussian::from_diag(&q));
    let (a, b) = (p.kl(&q).unwrap(), pm.kl(&qm).unwrap());
    assert!((a - b).abs() <= 64.0 * EPS * (1.0 + a.abs()), "{a} vs {b}");
    let (est, se) = mc_kl(&pm, &qm, 200_000, 22);
    assert!((est - a).abs() <= 5.0 * se);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// KL(p‖p) = 0 and KL(p‖q) ≥ 0. For p = q the trace term `‖L⁻¹L‖²_F` equals d up to
    /// triangular-solve rounding ≲ d²·κ·eps, and the log-determinants cancel exactly.
    #[test]
    fn kl_is_zero_on_the_diagonal_and_nonnegative(
        a in prop::collection::vec(-1.0f64..1.0, 9),
        b in prop::collection::vec(-1.0f64..1.0, 9),
        mu in prop::collection::vec(-2.0f64..2.0, 3),
        nu in prop::collection::vec(-2.0f64..2.0, 3),
    ) {
        let (sa, sb) = (spd(3, &a), spd(3, &b));
        let kappa = cond_bound(&sa).max(cond_bound(&sb));
        let p = MvGaussian::new(Array1::from_vec(mu), sa).unwrap();
        let q = MvGaussian::new(Array1::from_vec(nu), sb).unwrap();
        let tol = 9.0 * kappa * EPS * 3.0;
        prop_assert!(p.kl(&p).unwrap().abs() <= tol);
        prop_assert!(q.kl(&q).unwrap().abs() <= tol);
        prop_assert!(p.kl(&q).unwrap() >= -tol);
        prop_assert!(q.kl(&p).unwrap() >= -tol);
    }

    /// Diagonal KL(p‖p) = 0 (each term `r - 1 - ln r` with r = 1 is exactly 0) and KL ≥ 0.
    #[test]
    fn diag_kl_is_zero_on_the_diagonal_and_nonnegative(
        mu in prop::collection::vec(-2.0f64..2.0, 4),
        v in prop::collection::vec(0.01f64..10.0, 4),
        nu in prop::collection::vec(-2.0f64..2.0, 4),
        w in prop::collection::vec(0.01f64..10.0, 4),
    ) {
        let p = DiagGaussian::new(Array1::from_vec(mu), Array1::from_vec(v)).unwrap();
        let q = DiagGaussian::new(Array1::from_vec(nu), Array1::from_vec(w)).unwrap();
        prop_assert_eq!(p.kl(&p).unwrap(), 0.0);
        prop_assert!(p.kl(&q).unwrap() >= 0.0);
    }

    /// Product of densities, pointwise: `ln N(x;a,A) + ln N(x;b,B) = ln Z + ln N(x;c,C)` at
    /// random x. Each side is a sum of O(d) terms of size ≤ |lhs|+d·ln 2π, so agreement to
    /// 64·eps of that scale is rounding only.
    #[test]
    fn product_of_densities_holds_pointwise(
        a in prop::collection::vec(-2.0f64..2.0, 3),
        va in prop::collection::vec(0.05f64..4.0, 3),
        b in prop::collection::vec(-2.0f64..2.0, 3),
        vb in prop::collection::vec(0.05f64..4.0, 3),
        x in prop::collection::vec(-3.0f64..3.0, 3),
    ) {
        let p = DiagGaussian::new(Array1::from_vec(a), Array1::from_vec(va)).unwrap();
        let q = DiagGaussian::new(Array1::from_vec(b), Array1::from_vec(vb)).unwrap();
        let (c, log_z) = p.product(&q).unwrap();
        let x = Array1::from_vec(x);
        let lhs = p.log_density(x.view()).unwrap() + q.log_density(x.view()).unwrap();
        let rhs = log_z + c.log_density(x.view()).unwrap();
        let scale = 1.0 + lhs.abs() + log_z.abs() + 3.0 * 1.84;
        prop_assert!((lhs - rhs).abs() <= 1e3 * EPS * scale, "{lhs} vs {rhs}");
    }
}

/// Entropy equals `-E[ln p]` by Monte Carlo (5 standard errors); the twin entropy formula
/// without the `d/2` term (`½ ln det(2πΣ)`) is rejected.
#[test]
fn entropy_matches_monte_carlo_and_twin_is_rejected() {
    let g = test_mvn();
    let xs = g.sample_n(100_000, &mut rng::seeded(31));
    let nl = -g.log_density_batch(xs.view()).unwrap();
    let m = nl.mean().unwrap();
    let se =
        (nl.mapv(|v| (v - m).powi(2)).sum() / (nl.len() as f64 - 1.0) / nl.len() as f64).sqrt();
    assert!((g.entropy() - m).abs() <= 5.0 * se);
    let wrong = g.entropy() - 0.5 * g.dim() as f64;
    assert!((wrong - m).abs() > 5.0 * se);
}

// ---------------------------------------------------------------- Cholesky, push-forward, conditioning

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// `L Lᵀ` reconstructs Σ; L is lower triangular with a positive diagonal. Each entry of
    /// `L Lᵀ` is a sum of ≤ d products, each ≤ √(Σ_ii Σ_jj), so the rounding is ≤ 2d·eps·max Σ_ii.
    #[test]
    fn cholesky_reconstructs_the_matrix(m in prop::collection::vec(-1.0f64..1.0, 16)) {
        let a = spd(4, &m);
        let c = Cholesky::factor(a.view()).unwrap();
        let l = c.l();
        for i in 0..4 {
            prop_assert!(l[[i, i]] > 0.0);
            for j in i + 1..4 {
                prop_assert_eq!(l[[i, j]], 0.0);
            }
        }
        let r = l.dot(&l.t());
        let scale = a.diag().iter().cloned().fold(0.0, f64::max);
        for (x, y) in r.iter().zip(a.iter()) {
            prop_assert!((x - y).abs() <= 8.0 * 4.0 * EPS * scale);
        }
        // `solve` inverts A: the residual of A x = b is ≲ κ·eps·|b| per entry (backward
        // stability of triangular solves), bounded generously by 1e3·κ·eps·max|b|.
        let b = Array1::from_vec(vec![1.0, -2.0, 0.5, 3.0]);
        let x = c.solve(b.view());
        let res = a.dot(&x) - &b;
        prop_assert!(res.iter().all(|v| v.abs() <= 1e3 * cond_bound(&a) * EPS * 4.0));
    }
}

/// Non-positive-definite, non-square, non-finite and asymmetric inputs give typed errors.
#[test]
fn cholesky_and_mvn_reject_bad_matrices() {
    let indefinite = Array2::from_shape_vec((2, 2), vec![1.0, 2.0, 2.0, 1.0]).unwrap();
    assert!(matches!(
        Cholesky::factor(indefinite.view()),
        Err(Error::InvalidParameter { .. })
    ));
    let singular = Array2::from_shape_vec((2, 2), vec![1.0, 1.0, 1.0, 1.0]).unwrap();
    assert!(Cholesky::factor(singular.view()).is_err());
    assert!(matches!(
        Cholesky::factor(Array2::zeros((2, 3)).view()),
        Err(Error::Shape(_))
    ));
    let nan = Array2::from_shape_vec((1, 1), vec![f64::NAN]).unwrap();
    assert!(matches!(
        Cholesky::factor(nan.view()),
        Err(Error::NonFinite(_))
    ));
    let asym = Array2::from_shape_vec((2, 2), vec![1.0, 0.5, 0.0, 1.0]).unwrap();
    assert!(matches!(
        MvGaussian::new(Array1::zeros(2), asym),
        Err(Error::InvalidParameter { .. })
    ));
    assert!(matches!(
        MvGaussian::new(Array1::zeros(3), Array2::eye(2)),
        Err(Error::Shape(_))
    ));
    assert!(MvGaussian::new(Array1::zeros(0), Array2::zeros((0, 0))).is_err());
    assert!(matches!(
        MvGaussian::new(Array1::zeros(2), indefinite),
        Err(Error::InvalidParameter { .. })
    ));
    let g = test_mvn();
    assert!(matches!(
        g.log_density(Array1::zeros(2).view()),
        Err(Error::Shape(_))
    ));
    assert!(matches!(g.kl(&mvn(&[0.0], &[1.0])), Err(Error::Shape(_))));
    assert!(g.affine(0.0, 0.0).is_err());
    assert!(matches!(g.affine(f64::NAN, 1.0), Err(Error::NonFinite(_))));
}

/// Diagonal validation: variances must be > 0 and finite, lengths must match.
#[test]
fn diag_rejects_bad_parameters() {
    let m = Array1::zeros(2);
    for bad in [0.0, -1.0] {
        assert!(matches!(
            DiagGaussian::new(m.clone(), Array1::from_vec(vec![1.0, bad])),
            Err(Error::InvalidParameter { .. })
        ));
    }
    for bad in [f64::NAN, f64::INFINITY] {
        assert!(matches!(
            DiagGaussian::new(m.clone(), Array1::from_vec(vec![1.0, bad])),
            Err(Error::NonFinite(_))
        ));
    }
    assert!(matches!(
        DiagGaussian::new(m.clone(), Array1::ones(3)),
        Err(Error::Shape(_))
    ));
    assert!(matches!(
        DiagGaussian::isotropic(m.clone(), 0.0),
        Err(Error::InvalidParameter { .. })
    ));
    let g = DiagGaussian::isotropic(m, 1.0).unwrap();
    assert!(matches!(
        g.score(Array1::zeros(3).view()),
        Err(Error::Shape(_))
    ));
    let h = DiagGaussian::isotropic(Array1::zeros(1), 1.0).unwrap();
    assert!(matches!(g.kl(&h), Err(Error::Shape(_))));
    assert!(matches!(g.product(&h), Err(Error::Shape(_))));
}

/// Push-forward `y = s x + σ z`: empirical moments of pushed samples match `affine(s, σ)`
/// (CLT as in `moments_within_clt`); the twin kernel `N(s μ, s Σ + σ² I)` (scale not squared)
/// is rejected by the same check on the same samples.
#[test]
fn affine_push_forward_matches_monte_carlo() {
    let g = test_mvn();
    let (s, sigma) = (0.6, 0.8);
    let mut r = rng::seeded(41);
    let mut ys = g.sample_n(100_000, &mut r);
    ys.mapv_inplace(|v| s * v + sigma * rng::normal(&mut r));
    let push = g.affine(s, sigma).unwrap();
    assert!(moments_within_clt(&ys, push.mean(), push.cov()));
    let wrong_cov = g.cov() * s + Array2::<f64>::eye(3) * (sigma * sigma);
    assert!(!moments_within_clt(&ys, push.mean(), &wrong_cov));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Conditioning by Schur complement: `ln N(x) = ln N(x_o; marginal) + ln N(x_u | x_o)` at
    /// random points, where the marginal is the sub-block (an independent route) and the
    /// returned marginal log-likelihood equals it too. Rounding ≲ d²·κ·eps per term.
    #[test]
    fn conditional_times_marginal_equals_joint(
        m in prop::collection::vec(-1.0f64..1.0, 16),
        mu in prop::collection::vec(-2.0f64..2.0, 4),
        x in prop::collection::vec(-3.0f64..3.0, 4),
        pick in 0usize..4,
    ) {
        let cov = spd(4, &m);
        let kappa = cond_bound(&cov);
        let g = MvGaussian::new(Array1::from_vec(mu), cov).unwrap();
        let x = Array1::from_vec(x);
        // observe two coordinates in a scrambled order, leave the others
        let observed = [(pick + 2) % 4, pick];
        let unobserved: Vec<usize> = (0..4).filter(|i| !observed.contains(i)).collect();
        let xo = Array1::from_iter(observed.iter().map(|&i| x[i]));
        let xu = Array1::from_iter(unobserved.iter().map(|&i| x[i]));
        let (cond, log_lik) = g.conditional(&observed, xo.view()).unwrap();
        let marg = g.marginal(&observed).unwrap();
        let joint = g.log_density(x.view()).unwrap();
        let lm = marg.log_density(xo.view()).unwrap();
        let lc = cond.log_density(xu.view()).unwrap();
        let tol = 16.0 * kappa * kappa * EPS * (1.0 + joint.abs() + lm.abs() + lc.abs());
        prop_assert!((joint - (lm + lc)).abs() <= tol, "{joint} vs {lm} + {lc}");
        prop_assert!((log_lik - lm).abs() <= tol);
    }
}

/// Conditioning errors: repeated or out-of-range indices, wrong number of values, and
/// observing every coordinate.
#[test]
fn conditional_rejects_bad_indices() {
    let g = test_mvn();
    let v2 = Array1::zeros(2);
    assert!(matches!(
        g.conditional(&[0, 0], v2.view()),
        Err(Error::InvalidParameter { .. })
    ));
    assert!(matches!(
        g.conditional(&[0, 5], v2.view()),
        Err(Error::InvalidParameter { .. })
    ));
    assert!(matches!(
        g.conditional(&[0], v2.view()),
        Err(Error::Shape(_))
    ));
    assert!(g.conditional(&[0, 1, 2], Array1::zeros(3).view()).is_err());
    assert!(g.marginal(&[]).is_err());
}
