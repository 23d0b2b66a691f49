//! Tests of `GaussianMixture` and the `MixtureScore` oracle: exact density, responsibilities,
//! score, sampling, the perturbed marginal (Monte Carlo and quadrature convolution) and the
//! conditional mixture, each against an independent route.

use ndarray::{Array1, Array2};
use proptest::prelude::*;
use rand::Rng;
use scoresde::gaussian::{GaussianMixture, MvGaussian};
use scoresde::rng;
use scoresde::score::{Level, MixtureScore, ScoreModel};
use scoresde::Error;

const EPS: f64 = f64::EPSILON;

/// Composite Simpson rule on `[a, b]` with `n` (even) intervals.
fn simpson(f: impl Fn(f64) -> f64, a: f64, b: f64, n: usize) -> f64 {
    let h = (b - a) / n as f64;
    let mut s = f(a) + f(b);
    for i in 1..n {
        s += if i % 2 == 1 { 4.0 } else { 2.0 } * f(a + i as f64 * h);
    }
    s * h / 3.0
}

/// Simpson with its Richardson error estimate: for an O(h⁴) rule `|S_n - S_{n/2}|` exceeds
/// the error of `S_n` (≈ |S_n - S_{n/2}|/15); rounding of n positive terms adds n·eps·S.
fn simpson_with_bound(f: impl Fn(f64) -> f64, a: f64, b: f64, n: usize) -> (f64, f64) {
    let fine = simpson(&f, a, b, n);
    let coarse = simpson(&f, a, b, n / 2);
    (fine, (fine - coarse).abs() + n as f64 * EPS * fine.abs())
}

fn v(xs: &[f64]) -> Array1<f64> {
    Array1::from_vec(xs.to_vec())
}

fn mvn(mean: &[f64], cov: &[f64]) -> MvGaussian {
    let d = mean.len();
    MvGaussian::new(
        v(mean),
        Array2::from_shape_vec((d, d), cov.to_vec()).unwrap(),
    )
    .unwrap()
}

/// A 1-D mixture with unequal weights and widths.
fn mixture_1d() -> GaussianMixture {
    GaussianMixture::new(
        v(&[0.5, 0.3, 0.2]),
        vec![
            mvn(&[-1.0], &[0.2]),
            mvn(&[0.5], &[0.05]),
            mvn(&[2.0], &[0.5]),
        ],
    )
    .unwrap()
}

/// `ln Σ_k w_k exp(ln N_k(x))` summed directly, without log-sum-exp (fine at moderate x).
fn direct_log_density(m: &GaussianMixture, x: &Array1<f64>) -> f64 {
    m.components()
        .iter()
        .zip(m.weights())
        .map(|(c, w)| w * c.log_density(x.view()).unwrap().exp())
        .sum::<f64>()
        .ln()
}

// ---------------------------------------------------------------- density and responsibilities

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]
    /// Responsibilities sum to 1 and equal Bayes' rule `w_k N_k(x) / Σ_j w_j N_j(x)` computed by
    /// direct exponentials; the log-density equals the direct log of the weighted sum. Error of
    /// `exp(l_k - lse)` is ≲ eps·(|l_k| + |lse|) relative, so every check scales with that.
    #[test]
    fn responsibilities_sum_to_one_and_equal_bayes_rule(x in -3.0f64..3.0, y in -3.0f64..3.0) {
        let m = GaussianMixture::lopsided();
        let x = v(&[x, y]);
        let r = m.responsibilities(x.view()).unwrap();
        let joint: Vec<f64> = m.components().iter().zip(m.weights())
            .map(|(c, w)| w * c.log_density(x.view()).unwrap().exp()).collect();
        let total: f64 = joint.iter().sum();
        let lp = m.log_density(x.view()).unwrap();
        let scale = 1.0 + lp.abs() + m.components().iter()
            .map(|c| c.log_density(x.view()).unwrap().abs()).fold(0.0, f64::max);
        prop_assert!((r.sum() - 1.0).abs() <= 16.0 * EPS * scale);
        for k in 0..3 {
            let bayes = joint[k] / total;
            prop_assert!((r[k] - bayes).abs() <= 16.0 * EPS * scale * bayes.max(EPS), "k={k}");
        }
        prop_assert!((lp - direct_log_density(&m, &x)).abs() <= 16.0 * EPS * scale);
    }
}

/// Log-sum-exp keeps the log-density finite far from every mode, where the direct sum
/// underflows to `ln 0 = -inf`.
#[test]
fn log_density_survives_where_the_direct_sum_underflows() {
    let m = GaussianMixture::lopsided();
    let x = v(&[60.0, -60.0]);
    assert_eq!(direct_log_density(&m, &x), f64::NEG_INFINITY);
    let lp = m.log_density(x.view()).unwrap();
    assert!(lp.is_finite());
    // and it equals the largest weighted component term up to ln(1 + tiny)
    let best = m
        .components()
        .iter()
        .zip(m.weights())
        .map(|(c, w)| w.ln() + c.log_density(x.view()).unwrap())
        .fold(f64::NEG_INFINITY, f64::max);
    assert!((lp - best).abs() <= 1e-12 * best.abs() && lp >= best);
}

/// The lopsided mixture's density integrates to 1 over a box holding all but < 1e-26 of its
/// mass (every component mean is ≥ 11 marginal standard deviations from every edge:
/// 4Φ(-11) < 1e-27), by tensor Simpson with the Richardson estimate as the rule's error bound.
#[test]
fn mixture_density_integrates_to_one_in_2d() {
    let m = GaussianMixture::lopsided();
    let (lo, hi) = ([-8.0, -9.0], [8.0, 7.0]);
    let p = |x: f64, y: f64| m.log_density(v(&[x, y]).view()).unwrap().exp();
    let integrate = |n: usize| {
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
                s += w(i) * w(j) * p(lo[0] + i as f64 * hx, lo[1] + j as f64 * hy);
            }
        }
        s * hx * hy / 9.0
    };
    let n = 560;
    let (fine, coarse) = (integrate(n), integrate(n / 2));
    let tol = (fine - coarse).abs() + ((n + 1) * (n + 1)) as f64 * EPS;
    assert!(
        (fine - 1.0).abs() <= tol,
        "∫p = {fine} (coarse {coarse}), tol {tol}"
    );
}

// ---------------------------------------------------------------- score

/// Checks `score = ∇ ln p` by central differences at step h and h/2: the O(h²) truncation
/// error of D(h/2) is ≈ |D(h) - D(h/2)|/3, so that difference bounds it; rounding adds
/// `2·c·eps·(1+|ln p|)/h` with c = 64 covering the per-evaluation rounding of ln p.
fn score_matches_fd(
    lp: impl Fn(&Array1<f64>) -> f64,
    score: &Array1<f64>,
    x: &Array1<f64>,
    h: f64,
) -> std::result::Result<(), String> {
    let fd = |h: f64, i: usize| {
        let (mut a, mut b) = (x.clone(), x.clone());
        a[i] += h;
        b[i] -= h;
        (lp(&a) - lp(&b)) / (a[i] - b[i])
    };
    for i in 0..x.len() {
        let (d1, d2) = (fd(h, i), fd(h / 2.0, i));
        let tol = (d1 - d2).abs() + 128.0 * EPS * (1.0 + lp(x).abs()) / h;
        if (d2 - score[i]).abs() > tol {
            return Err(format!("i={i}: fd={d2}, score={}, tol={tol}", score[i]));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// The mixture score (responsibility-weighted component scores) equals the finite-difference
    /// gradient of the mixture log-density, for the lopsided mixture and the 8-mode ring.
    #[test]
    fn mixture_score_equals_finite_difference_of_log_density(
        x in -3.0f64..3.0, y in -3.0f64..3.0,
    ) {
        let x = v(&[x, y]);
        for m in [GaussianMixture::lopsided(), GaussianMixture::ring(8, 2.0, 0.3).unwrap()] {
            let s = m.score(x.view()).unwrap();
            let r = score_matches_fd(|p| m.log_density(p.view()).unwrap(), &s, &x, 1e-4);
            prop_assert!(r.is_ok(), "{:?}", r);
        }
    }
}

/// Batch evaluations equal the row-by-row ones exactly; wrong widths give `Error::Shape`.
#[test]
fn mixture_batch_equals_rowwise() {
    let m = GaussianMixture::lopsided();
    let x = Array2::from_shape_vec((3, 2), vec![0.0, 1.0, -2.0, 0.5, 3.0, -1.0]).unwrap();
    let lp = m.log_density_batch(x.view()).unwrap();
    let sc = m.score_batch(x.view()).unwrap();
    for (i, row) in x.rows().into_iter().enumerate() {
        assert_eq!(lp[i], m.log_density(row).unwrap());
        assert_eq!(sc.row(i), m.score(row).unwrap());
    }
    let bad = Array2::zeros((2, 3));
    assert!(matches!(
        m.log_density_batch(bad.view()),
        Err(Error::Shape(_))
    ));
    assert!(matches!(m.score_batch(bad.view()), Err(Error::Shape(_))));
    assert!(matches!(m.score(v(&[1.0]).view()), Err(Error::Shape(_))));
    assert!(matches!(
        m.responsibilities(v(&[1.0]).view()),
        Err(Error::Shape(_))
    ));
}

// ---------------------------------------------------------------- sampling and moments (CLT)

/// Sample mean and (known-mean) covariance within 5 standard errors of the given moments, the
/// standard errors from the empirical variance of each statistic (the data need not be
/// Gaussian). 5 checks for d = 2 at two-sided 5σ: family false-alarm < 3e-6.
fn moments_within_clt(xs: &Array2<f64>, mean: &Array1<f64>, cov: &Array2<f64>) -> bool {
    let n = xs.nrows() as f64;
    let d = mean.len();
    let check = |vals: Vec<f64>, target: f64| {
        let m = vals.iter().sum::<f64>() / n;
        let var = vals.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (n - 1.0);
        (m - target).abs() <= 5.0 * (var / n).sqrt()
    };
    let mut ok = true;
    for i in 0..d {
        ok &= check(xs.column(i).to_vec(), mean[i]);
        for j in 0..=i {
            let prods = xs
                .rows()
                .into_iter()
                .map(|r| (r[i] - mean[i]) * (r[j] - mean[j]))
                .collect();
            ok &= check(prods, cov[[i, j]]);
        }
    }
    ok
}

/// Samples of the lopsided mixture have the closed-form mixture mean and covariance (law of
/// total covariance), 200 000 draws, seed 5.
#[test]
fn mixture_sample_moments_match_closed_form() {
    let m = GaussianMixture::lopsided();
    let xs = m.sample_n(200_000, &mut rng::seeded(5));
    assert!(moments_within_clt(&xs, &m.mean(), &m.covariance()));
}

/// Twin: a sampler that picks components uniformly (ignoring the weights 0.6/0.3/0.1) is
/// rejected by the same check.
#[test]
fn mixture_sample_check_rejects_a_sampler_that_ignores_weights() {
    let m = GaussianMixture::lopsided();
    let mut r = rng::seeded(5);
    let mut xs = Array2::zeros((200_000, 2));
    for mut row in xs.rows_mut() {
        let k = r.random_range(0..3);
        row.assign(&m.components()[k].sample(&mut r));
    }
    assert!(!moments_within_clt(&xs, &m.mean(), &m.covariance()));
}

/// The symmetric constructors have the moments of their geometry, derived independently of the
/// law of total covariance: a ring of k ≥ 3 equally spaced modes has mean 0 and covariance
/// `(r²/2 + std²) I` (Σ_i cos²(2πi/k) = k/2); a k×k grid has covariance
/// `(spacing²(k²-1)/12 + std²) I` (variance of a discrete uniform on k points).
#[test]
fn ring_and_grid_have_the_moments_of_their_geometry() {
    let (r, s) = (2.0, 0.1);
    let ring = GaussianMixture::ring(8, r, s).unwrap();
    assert_eq!(ring.components().len(), 8);
    for c in ring.components() {
        let rad = c.mean().dot(c.mean()).sqrt();
        assert!((rad - r).abs() <= 4.0 * EPS * r);
    }
    assert!(ring.weights().iter().all(|&w| (w - 0.125).abs() <= EPS));
    let want = r * r / 2.0 + s * s;
    let (mean, cov) = (ring.mean(), ring.covariance());
    assert!(mean.iter().all(|m| m.abs() <= 16.0 * EPS * r));
    assert!((cov[[0, 0]] - want).abs() <= 32.0 * EPS * want);
    assert!((cov[[1, 1]] - want).abs() <= 32.0 * EPS * want);
    assert!(cov[[0, 1]].abs() <= 32.0 * EPS * want);

    let (k, sp) = (3usize, 1.5);
    let grid = GaussianMixture::grid(k, sp, s).unwrap();
    assert_eq!(grid.components().len(), 9);
    let want = sp * sp * ((k * k - 1) as f64) / 12.0 + s * s;
    let (mean, cov) = (grid.mean(), grid.covariance());
    assert!(mean.iter().all(|m| m.abs() <= 16.0 * EPS));
    assert!((cov[[0, 0]] - want).abs() <= 32.0 * EPS * want);
    assert!((cov[[1, 1]] - want).abs() <= 32.0 * EPS * want);
    assert!(cov[[0, 1]].abs() <= 32.0 * EPS * want);

    let lop = GaussianMixture::lopsided();
    for (w, want) in lop.weights().iter().zip([0.6, 0.3, 0.1]) {
        assert!((w - want).abs() <= 2.0 * EPS);
    }
}

// ---------------------------------------------------------------- perturbed marginal

/// `perturbed(s, σ)` is the law of `s x_0 + σ z`: sample x_0 from the mixture, push each draw
/// through the kernel, and compare the empirical moments with the closed-form moments of the
/// perturbed mixture (CLT, 200 000 draws). The twin — a kernel covariance `s Σ + σ² I` (scale
/// not squared) — is rejected on the same draws.
#[test]
fn perturbed_matches_monte_carlo_of_the_forward_kernel() {
    let m = GaussianMixture::lopsided();
    let (s, sigma) = (0.5, 0.7);
    let mut r = rng::seeded(7);
    let mut xs = m.sample_n(200_000, &mut r);
    xs.mapv_inplace(|x| s * x + sigma * rng::normal(&mut r));
    let pt = m.perturbed(s, sigma).unwrap();
    assert!(moments_within_clt(&xs, &pt.mean(), &pt.covariance()));

    let wrong = GaussianMixture::new(
        m.weights().clone(),
        m.components()
            .iter()
            .map(|c| {
                MvGaussian::new(
                    c.mean() * s,
                    c.cov() * s + Array2::<f64>::eye(2) * (sigma * sigma),
                )
                .unwrap()
            })
            .collect(),
    )
    .unwrap();
    assert!(!moments_within_clt(&xs, &wrong.mean(), &wrong.covariance()));
}

/// Exact check: the perturbed density equals the convolution
/// `p_t(y) = ∫ p_0(x) N(y; s x, σ²) dx` by Simpson quadrature (1-D, x ∈ [-7, 9] holds all
/// but < 1e-25 of p_0's mass; Richardson bound on the rule). The twin kernel `s Σ + σ²`
/// misses the quadrature by far more than the bound.
#[test]
fn perturbed_density_equals_convolution_quadrature() {
    let m = mixture_1d();
    let kernel = |y: f64, x: f64, s: f64, sigma: f64| {
        (-(y - s * x).powi(2) / (2.0 * sigma * sigma)).exp()
            / (2.0 * std::f64::consts::PI * sigma * sigma).sqrt()
    };
    for &(s, sigma) in &[(1.0, 0.3), (0.8, 0.6), (0.3, 0.95), (1.0, 5.0)] {
        let pt = m.perturbed(s, sigma).unwrap();
        let wrong_comps: Vec<MvGaussian> = m
            .components()
            .iter()
            .map(|c| mvn(&[s * c.mean()[0]], &[s * c.cov()[[0, 0]] + sigma * sigma]))
            .collect();
        let wrong = GaussianMixture::new(m.weights().clone(), wrong_comps).unwrap();
        for &y in &[-2.0, -0.7, 0.0, 0.4, 1.3, 3.0] {
            let f = |x: f64| m.log_density(v(&[x]).view()).unwrap().exp() * kernel(y, x, s, sigma);
            let (quad, bound) = simpson_with_bound(f, -7.0, 9.0, 4000);
            let got = pt.log_density(v(&[y]).view()).unwrap().exp();
            let tol = bound + 1e-25 + 8.0 * EPS * quad;
            assert!(
                (got - quad).abs() <= tol,
                "s={s} σ={sigma} y={y}: {got} vs {quad}"
            );
            let bad = wrong.log_density(v(&[y]).view()).unwrap().exp();
            if s != 1.0 {
                assert!((bad - quad).abs() > tol, "twin not rejected at s={s} y={y}");
            }
        }
    }
}

/// `perturbed(1, 0)` is the identity, and `perturbed(0, 1)` forgets the data: every component
/// becomes `N(0, I)` so the score is exactly `-x`.
#[test]
fn perturbed_limits_are_identity_and_standard_normal() {
    let m = GaussianMixture::lopsided();
    let same = m.perturbed(1.0, 0.0).unwrap();
    let x = v(&[0.3, -0.8]);
    assert_eq!(
        same.log_density(x.view()).unwrap(),
        m.log_density(x.view()).unwrap()
    );
    // Σ_k r_k (-x) with r_k = w_k up to rounding: within a few ulps of -x.
    let prior = m.perturbed(0.0, 1.0).unwrap();
    let s = prior.score(x.view()).unwrap();
    assert!((&s + &x).iter().all(|e| e.abs() <= 8.0 * EPS));
    assert!(m.perturbed(0.0, 0.0).is_err());
    assert!(matches!(
        m.perturbed(f64::INFINITY, 1.0),
        Err(Error::NonFinite(_))
    ));
}

// ---------------------------------------------------------------- conditional

/// `conditional` equals `p(x_o, x_u) / p(x_o)` with `p(x_o) = ∫ p(x_o, u) du` by Simpson
/// (u ∈ [-12, 12] holds every component's conditional mass to < 1e-20; Richardson bound),
/// for each observed coordinate of the lopsided mixture.
#[test]
fn conditional_equals_joint_over_quadrature_marginal() {
    let m = GaussianMixture::lopsided();
    for obs in 0..2usize {
        for &a in &[-1.5, 0.0, 0.7, 1.8] {
            let cond = m.conditional(&[obs], v(&[a]).view()).unwrap();
            assert_eq!(cond.dim(), 1);
            let point = |u: f64| if obs == 0 { v(&[a, u]) } else { v(&[u, a]) };
            let joint = |u: f64| m.log_density(point(u).view()).unwrap().exp();
            let (marg, bound) = simpson_with_bound(joint, -12.0, 12.0, 6000);
            for &u in &[-2.0, -0.5, 0.3, 1.1] {
                let lc = cond.log_density(v(&[u]).view()).unwrap();
                let want = joint(u) / marg;
                let rel = bound / marg + 64.0 * EPS * (1.0 + lc.abs());
                assert!(
                    (lc.exp() - want).abs() <= rel * want + 1e-300,
                    "obs={obs} a={a} u={u}: {} vs {want}",
                    lc.exp()
                );
            }
        }
    }
}

/// A random 3-D, 2-component mixture: `ln p(x) = ln p(x_o) + ln p(x_u | x_o)` at random points,
/// with `p(x_o)` from `marginal` (sub-blocks, weights unchanged: an independent route from the
/// re-weighting by marginal likelihoods). Rounding ≲ κ²·eps per term.
fn spd3(m: &[f64]) -> Array2<f64> {
    let m = Array2::from_shape_vec((3, 3), m.to_vec()).unwrap();
    m.dot(&m.t()) + Array2::<f64>::eye(3) * 0.2
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn conditional_mixture_times_marginal_equals_joint(
        a in prop::collection::vec(-1.0f64..1.0, 9),
        b in prop::collection::vec(-1.0f64..1.0, 9),
        mu in prop::collection::vec(-2.0f64..2.0, 6),
        w in 0.05f64..0.95,
        x in prop::collection::vec(-2.5f64..2.5, 3),
    ) {
        let (ca, cb) = (spd3(&a), spd3(&b));
        let kappa = (ca.diag().sum() / 0.2).max(cb.diag().sum() / 0.2);
        let m = GaussianMixture::new(
            v(&[w, 1.0 - w]),
            vec![
                MvGaussian::new(v(&mu[..3]), ca).unwrap(),
                MvGaussian::new(v(&mu[3..]), cb).unwrap(),
            ],
        ).unwrap();
        let x = v(&x);
        let observed = [2usize, 0];
        let xo = v(&[x[2], x[0]]);
        let xu = v(&[x[1]]);
        let cond = m.conditional(&observed, xo.view()).unwrap();
        let marg = m.marginal(&observed).unwrap();
        let joint = m.log_density(x.view()).unwrap();
        let lm = marg.log_density(xo.view()).unwrap();
        let lc = cond.log_density(xu.view()).unwrap();
        let tol = 16.0 * kappa * kappa * EPS * (1.0 + joint.abs() + lm.abs() + lc.abs());
        prop_assert!((joint - (lm + lc)).abs() <= tol, "{joint} vs {lm} + {lc}");
        prop_assert!((cond.weights().sum() - 1.0).abs() <= 4.0 * EPS);
    }
}

// ---------------------------------------------------------------- one component, validation

/// A one-component mixture is exactly its component: log-sum-exp of one term is that term
/// (`m + ln(exp(0)) = m`), the responsibility is exactly 1, so densities and scores agree
/// bit for bit, and so do the perturbed and conditional laws.
#[test]
fn single_component_mixture_reduces_to_mvgaussian() {
    let g = mvn(
        &[0.5, -1.0, 2.0],
        &[1.0, 0.3, 0.1, 0.3, 0.7, -0.2, 0.1, -0.2, 0.4],
    );
    let m = GaussianMixture::new(v(&[1.0]), vec![g.clone()]).unwrap();
    for x in [
        v(&[0.0, 0.0, 0.0]),
        v(&[1.3, -2.2, 0.4]),
        v(&[-3.0, 4.0, 10.0]),
    ] {
        assert_eq!(
            m.log_density(x.view()).unwrap(),
            g.log_density(x.view()).unwrap()
        );
        assert_eq!(m.score(x.view()).unwrap(), g.score(x.view()).unwrap());
        assert_eq!(m.responsibilities(x.view()).unwrap(), v(&[1.0]));
    }
    assert_eq!(m.mean(), *g.mean());
    assert_eq!(m.covariance(), *g.cov());
    let pt = m.perturbed(0.7, 0.4).unwrap();
    assert_eq!(pt.components()[0], g.affine(0.7, 0.4).unwrap());
    let c = m.conditional(&[1], v(&[0.2]).view()).unwrap();
    assert_eq!(
        c.components()[0],
        g.conditional(&[1], v(&[0.2]).view()).unwrap().0
    );
    assert_eq!(c.weights(), &v(&[1.0]));
}

/// Invalid weights, shapes, constructor arguments and conditioning requests give typed errors.
#[test]
fn mixture_rejects_bad_input() {
    let c = || mvn(&[0.0, 0.0], &[1.0, 0.0, 0.0, 1.0]);
    let bad_param =
        |r: scoresde::Result<GaussianMixture>| matches!(r, Err(Error::InvalidParameter { .. }));
    assert!(bad_param(GaussianMixture::new(v(&[]), vec![])));
    assert!(bad_param(GaussianMixture::new(
        v(&[0.5, 0.4]),
        vec![c(), c()]
    )));
    assert!(bad_param(GaussianMixture::new(
        v(&[1.5, -0.5]),
        vec![c(), c()]
    )));
    assert!(matches!(
        GaussianMixture::new(v(&[f64::NAN, 0.5]), vec![c(), c()]),
        Err(Error::NonFinite(_))
    ));
    assert!(matches!(
        GaussianMixture::new(v(&[1.0]), vec![c(), c()]),
        Err(Error::Shape(_))
    ));
    assert!(matches!(
        GaussianMixture::new(v(&[0.5, 0.5]), vec![c(), mvn(&[0.0], &[1.0])]),
        Err(Error::Shape(_))
    ));
    // 1/3 + 1/3 + 1/3 is not exactly 1 in floating point, but is accepted.
    assert!(GaussianMixture::new(v(&[1.0 / 3.0; 3]), vec![c(), c(), c()]).is_ok());
    assert!(bad_param(GaussianMixture::ring(0, 1.0, 0.1)));
    assert!(bad_param(GaussianMixture::ring(4, 1.0, 0.0)));
    assert!(matches!(
        GaussianMixture::ring(4, f64::NAN, 0.1),
        Err(Error::NonFinite(_))
    ));
    assert!(bad_param(GaussianMixture::grid(0, 1.0, 0.1)));
    assert!(bad_param(GaussianMixture::grid(2, 1.0, -0.1)));
    let m = GaussianMixture::lopsided();
    assert!(m.conditional(&[0, 1], v(&[0.0, 0.0]).view()).is_err());
    assert!(m.conditional(&[2], v(&[0.0]).view()).is_err());
    assert!(matches!(
        m.conditional(&[0], v(&[0.0, 1.0]).view()),
        Err(Error::Shape(_))
    ));
    assert!(matches!(
        m.conditional(&[0], v(&[f64::NAN]).view()),
        Err(Error::NonFinite(_))
    ));
    assert!(m.marginal(&[0, 0]).is_err());
}

// ---------------------------------------------------------------- the oracle

/// The oracle's score at a level equals the finite-difference gradient of its own exact
/// perturbed log-density (`MixtureScore::log_density`), with the Richardson-bounded tolerance
/// of `score_matches_fd`, at several levels of a VP-like path `scale² + std² = 1` and a VE level.
#[test]
fn mixture_score_oracle_equals_gradient_of_its_log_density() {
    let oracle = MixtureScore::new(GaussianMixture::ring(8, 2.0, 0.1).unwrap());
    assert_eq!(oracle.dim(), 2);
    let xs =
        Array2::from_shape_vec((4, 2), vec![0.0, 0.0, 1.9, 0.1, -1.0, 1.2, 3.0, -2.5]).unwrap();
    for &(scale, std) in &[(1.0, 0.01), (0.8, 0.6), (0.1, 0.995), (1.0, 3.0)] {
        let level = Level { t: 0.0, scale, std };
        let s = oracle.score(xs.view(), level);
        assert_eq!(s, oracle.try_score(xs.view(), level).unwrap());
        for (i, row) in xs.rows().into_iter().enumerate() {
            let lp = |p: &Array1<f64>| {
                oracle
                    .log_density(p.view().insert_axis(ndarray::Axis(0)), level)
                    .unwrap()[0]
            };
            let h = 1e-3 * std;
            let r = score_matches_fd(lp, &s.row(i).to_owned(), &row.to_owned(), h);
            assert!(r.is_ok(), "level {level:?}: {r:?}");
        }
    }
}

/// The trait cannot return an error: a degenerate level (`scale = std = 0`) or a wrongly shaped
/// batch yields NaN of shape `n × dim` (no panic), and `try_score` gives the typed error.
#[test]
fn mixture_score_oracle_reports_degenerate_levels_without_panicking() {
    let oracle = MixtureScore::new(GaussianMixture::lopsided());
    let x = Array2::zeros((3, 2));
    let level = Level {
        t: 0.0,
        scale: 0.0,
        std: 0.0,
    };
    let s = oracle.score(x.view(), level);
    assert_eq!(s.dim(), (3, 2));
    assert!(s.iter().all(|v| v.is_nan()));
    assert!(oracle.try_score(x.view(), level).is_err());
    assert!(oracle.log_density(x.view(), level).is_err());
    let wide = Array2::zeros((3, 5));
    let ok_level = Level {
        t: 0.0,
        scale: 1.0,
        std: 0.5,
    };
    assert_eq!(oracle.score(wide.view(), ok_level).dim(), (3, 2));
    assert!(matches!(
        oracle.try_score(wide.view(), ok_level),
        Err(Error::Shape(_))
    ));
}
