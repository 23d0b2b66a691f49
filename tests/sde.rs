//! Tests of the score SDEs (VP, sub-VP, VE), their Gaussian kernels (003 eq. 29), their
//! discretisations (the DDPM and SMLD chains), the reverse-time SDE (003 eq. 6) and the
//! probability-flow ODE (003 eq. 13).
//!
//! The exact score models are written here from the kernel: for data `N(m, v)` the perturbed
//! marginal at level `(s, sigma)` is `N(s m, s² v + sigma²)`.

use ndarray::{array, Array2, ArrayView2};
use proptest::prelude::*;
use scoresde::schedule::continuous::{GeometricSigma, LinearBeta};
use scoresde::score::{Level, ScoreModel};
use scoresde::sde::{level_index, level_time, ReverseSde, Sde, SubVpSde, VeSde, VpSde};
use scoresde::{rng, Error};

const EPS: f64 = f64::EPSILON;

// ---------------------------------------------------------------- helpers

/// Exact score of isotropic Gaussian data `N(m 1, v I)` in dimension `d`.
struct GaussianScore {
    m: f64,
    v: f64,
    d: usize,
}

impl ScoreModel for GaussianScore {
    fn dim(&self) -> usize {
        self.d
    }
    fn score(&self, x: ArrayView2<f64>, l: Level) -> Array2<f64> {
        let p = l.scale * l.scale * self.v + l.std * l.std;
        x.mapv(|xi| -(xi - l.scale * self.m) / p)
    }
}

/// Exact score of a 1-D Gaussian mixture `sum_i w_i N(m_i, v_i)`.
struct MixtureScore {
    w: Vec<f64>,
    m: Vec<f64>,
    v: Vec<f64>,
}

impl MixtureScore {
    fn components(&self, l: Level) -> impl Iterator<Item = (f64, f64, f64)> + '_ {
        (0..self.w.len()).map(move |i| {
            let p = l.scale * l.scale * self.v[i] + l.std * l.std;
            (self.w[i], l.scale * self.m[i], p)
        })
    }
    /// CDF of the perturbed marginal at `x`.
    fn cdf(&self, x: f64, l: Level) -> f64 {
        self.components(l)
            .map(|(w, mu, p)| w * 0.5 * libm::erfc(-(x - mu) / (2.0 * p).sqrt()))
            .sum()
    }
    /// Inverse of the data CDF by bisection.
    fn quantile(&self, u: f64, l: Level) -> f64 {
        let (mut lo, mut hi) = (-50.0, 50.0);
        for _ in 0..200 {
            let mid = 0.5 * (lo + hi);
            if self.cdf(mid, l) < u {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        0.5 * (lo + hi)
    }
}

impl ScoreModel for MixtureScore {
    fn dim(&self) -> usize {
        1
    }
    fn score(&self, x: ArrayView2<f64>, l: Level) -> Array2<f64> {
        x.mapv(|xi| {
            let (mut num, mut den) = (0.0, 0.0);
            for (w, mu, p) in self.components(l) {
                let dens = w * (-(xi - mu).powi(2) / (2.0 * p)).exp() / p.sqrt();
                num += dens * (-(xi - mu) / p);
                den += dens;
            }
            num / den
        })
    }
}

/// The three default SDEs.
fn sdes() -> Vec<(&'static str, Box<dyn Sde>)> {
    vec![
        ("vp", Box::new(VpSde::default())),
        ("subvp", Box::new(SubVpSde::default())),
        ("ve", Box::new(VeSde::default())),
    ]
}

/// Kernel variance `sigma(t)²`.
fn var(sde: &dyn Sde, t: f64) -> f64 {
    sde.marginal_std(t).unwrap().powi(2)
}

/// Classical RK4 for `y' = f(t, y)` from `t0` to `t1` in `n` steps; returns every state.
fn rk4(
    mut f: impl FnMut(f64, &[f64]) -> Vec<f64>,
    y0: &[f64],
    t0: f64,
    t1: f64,
    n: usize,
) -> Vec<Vec<f64>> {
    let h = (t1 - t0) / n as f64;
    let at = |i: f64| (t0 + (t1 - t0) * i / n as f64).clamp(0.0, 1.0);
    let axpy = |y: &[f64], k: &[f64], c: f64| -> Vec<f64> {
        y.iter().zip(k).map(|(a, b)| a + c * b).collect()
    };
    let mut out = vec![y0.to_vec()];
    let mut y = y0.to_vec();
    for i in 0..n {
        let (ta, tm, tb) = (at(i as f64), at(i as f64 + 0.5), at(i as f64 + 1.0));
        let k1 = f(ta, &y);
        let k2 = f(tm, &axpy(&y, &k1, h / 2.0));
        let k3 = f(tm, &axpy(&y, &k2, h / 2.0));
        let k4 = f(tb, &axpy(&y, &k3, h));
        for j in 0..y.len() {
            y[j] += h / 6.0 * (k1[j] + 2.0 * k2[j] + 2.0 * k3[j] + k4[j]);
        }
        out.push(y.clone());
    }
    out
}

/// The affine map `x -> a x + b` of a 1-D linear velocity field, read off at `x = 0, 1`.
fn affine(field: impl Fn(ArrayView2<f64>) -> Array2<f64>) -> (f64, f64) {
    let r = field(array![[0.0], [1.0]].view());
    (r[[1, 0]] - r[[0, 0]], r[[0, 0]])
}

// ---------------------------------------------------------------- continuous schedules

/// `B(t)` equals Simpson quadrature of `beta` (exact for a linear integrand; 1e-12 covers
/// the rounding of a few dozen operations on numbers of size <= 20).
#[test]
fn linear_beta_integral_matches_simpson_quadrature() {
    let b = LinearBeta::new(0.3, 17.0).unwrap();
    for &t in &[0.0, 0.1, 0.37, 0.5, 0.9, 1.0] {
        let simpson = t / 6.0 * (b.beta(0.0) + 4.0 * b.beta(t / 2.0) + b.beta(t));
        assert!((b.integral(t) - simpson).abs() < 1e-12, "t = {t}");
    }
    assert_eq!(b.beta(0.0), 0.3);
    assert_eq!(b.beta(1.0), 17.0);
}

/// `d sigma²/dt` equals the central difference of `sigma(t)²`; the truncation error is
/// `h²/6 max|(sigma²)'''| = h²/6 (2 ln r)³ sigma_max²`, plus rounding `~8 eps sigma_max² / h`.
#[test]
fn geometric_sigma_derivative_matches_central_difference() {
    let s = GeometricSigma::default();
    let h = 1e-4;
    let l2 = 2.0 * s.log_ratio();
    let smax2 = s.sigma_max().powi(2);
    let tol = h * h / 6.0 * l2.powi(3) * smax2 + 8.0 * EPS * smax2 / h;
    for i in 1..50 {
        let t = i as f64 / 50.0;
        let fd = (s.sigma(t + h).powi(2) - s.sigma(t - h).powi(2)) / (2.0 * h);
        assert!((fd - s.d_sigma2_dt(t)).abs() < tol, "t = {t}");
    }
    assert!((s.sigma(0.0) - 0.01).abs() < 1e-17);
    assert!((s.sigma(1.0) - 50.0).abs() < 1e-12);
}

/// Invalid schedules are typed `InvalidSchedule` errors.
#[test]
fn invalid_schedules_are_typed_errors() {
    for (lo, hi) in [
        (-0.1, 1.0),
        (2.0, 1.0),
        (f64::NAN, 1.0),
        (0.1, f64::INFINITY),
        (0.0, 0.0),
    ] {
        assert!(
            matches!(LinearBeta::new(lo, hi), Err(Error::InvalidSchedule(_))),
            "beta {lo} {hi}"
        );
    }
    for (lo, hi) in [
        (0.0, 1.0),
        (-1.0, 1.0),
        (2.0, 2.0),
        (3.0, 2.0),
        (f64::NAN, 1.0),
    ] {
        assert!(
            matches!(GeometricSigma::new(lo, hi), Err(Error::InvalidSchedule(_))),
            "sigma {lo} {hi}"
        );
    }
    // beta_max / n >= 1 cannot give DDPM betas below 1.
    let b = LinearBeta::new(0.1, 20.0).unwrap();
    assert!(matches!(VpSde::new(b, 10), Err(Error::InvalidSchedule(_))));
    assert!(matches!(
        VpSde::new(b, 1),
        Err(Error::InvalidParameter { .. })
    ));
    assert!(matches!(
        VeSde::new(GeometricSigma::default(), 1),
        Err(Error::InvalidParameter { .. })
    ));
    assert!(matches!(
        SubVpSde::new(b, 0),
        Err(Error::InvalidParameter { .. })
    ));
}

// ---------------------------------------------------------------- kernels (eq. 29)

/// Bounds on the third derivatives of `s(t)` and `sigma(t)²` for the central-difference test.
/// For `e^u` with `u` quadratic: `|(e^u)'''| <= |u'|³ + 3 |u'| |u''|` while `e^u <= 1`.
fn third_derivative_bounds(name: &str) -> (f64, f64) {
    let (b, db) = (20.0, 19.9);
    let exp_bound = |c: f64| (c * b).powi(3) + 3.0 * (c * b) * (c * db);
    match name {
        // s = e^{-B/2}; sigma² = 1 - e^{-B}.
        "vp" => (exp_bound(0.5), exp_bound(1.0)),
        // sigma² = 1 - 2 e^{-B} + e^{-2B}.
        "subvp" => (exp_bound(0.5), 2.0 * exp_bound(1.0) + exp_bound(2.0)),
        // s = 1; sigma² = sigma_min² (r^{2t} - 1).
        _ => {
            let s = GeometricSigma::default();
            (0.0, (2.0 * s.log_ratio()).powi(3) * s.sigma_max().powi(2))
        }
    }
}

/// The kernels of eq. 29 solve the moment ODEs of a linear SDE: `s' = f(t) s` and
/// `(sigma²)' = 2 f(t) sigma² + g(t)²`. Central differences with `h = 1e-4`; tolerance
/// `h²/6 max|y'''|` (bounds above) plus rounding `8 eps max|y| / h`.
#[test]
fn kernels_solve_their_moment_odes_by_central_differences() {
    let h = 1e-4;
    for (name, sde) in sdes() {
        let (m3s, m3v) = third_derivative_bounds(name);
        let ymax = sde.prior_std().powi(2).max(1.0);
        for i in 1..100 {
            let t = i as f64 / 100.0;
            let f = sde.drift_coef(t).unwrap();
            let g2 = sde.diffusion(t).unwrap().powi(2);
            let s = |t| sde.mean_scale(t).unwrap();
            let ds = (s(t + h) - s(t - h)) / (2.0 * h);
            let tol_s = h * h / 6.0 * m3s + 8.0 * EPS / h;
            assert!((ds - f * s(t)).abs() < tol_s, "{name} mean, t = {t}");
            let dv = (var(&*sde, t + h) - var(&*sde, t - h)) / (2.0 * h);
            let tol_v = h * h / 6.0 * m3v + 8.0 * EPS * ymax / h;
            let rhs = 2.0 * f * var(&*sde, t) + g2;
            assert!(
                (dv - rhs).abs() < tol_v,
                "{name} variance, t = {t}: {dv} vs {rhs}"
            );
        }
    }
}

/// Integrating the moment ODEs from `s(0) = 1, sigma(0)² = 0` with RK4 (4000 steps) gives the
/// kernels of eq. 29. RK4's global error is `O((lambda h)^4)` relative, with `lambda` the
/// fastest rate of the system: `2 beta_max = 40` for VP/sub-VP, `2 ln(r) = 17` for VE's
/// `g²`; `(40 / 4000)^4 = 1e-8`, so tolerance `1e-8 max(1, sigma_max²)`.
#[test]
fn kernels_match_rk4_integration_of_moment_odes() {
    let n = 4000;
    for (name, sde) in sdes() {
        let ys = rk4(
            |t, y| {
                let f = sde.drift_coef(t).unwrap();
                let g = sde.diffusion(t).unwrap();
                vec![f * y[0], 2.0 * f * y[1] + g * g]
            },
            &[1.0, 0.0],
            0.0,
            1.0,
            n,
        );
        let tol = 1e-8 * sde.prior_std().powi(2).max(1.0);
        for &t in &[0.1, 0.25, 0.5, 0.75, 1.0] {
            let y = &ys[(t * n as f64).round() as usize];
            assert!(
                (y[0] - sde.mean_scale(t).unwrap()).abs() < tol,
                "{name} t={t}"
            );
            assert!((y[1] - var(&*sde, t)).abs() < tol, "{name} t={t}");
        }
    }
}

/// Eq. 29's VE variance `sigma(t)² - sigma(0)²` is the right one for eq. 9 started at `x(0)`:
/// the RK4 solution of `(sigma²)' = g²` from 0 matches it, while the common shorthand
/// `sigma(t)²` (the kernel used by SMLD/NCSN) is off by `sigma_min² = 1e-4`, far beyond the
/// RK4 tolerance `1e-8 sigma_max² = 2.5e-5` of the test above.
#[test]
fn ve_kernel_variance_is_sigma_squared_minus_sigma_min_squared() {
    let sde = VeSde::default();
    let sig = *sde.sigma();
    let ys = rk4(
        |t, _| vec![sde.diffusion(t).unwrap().powi(2)],
        &[0.0],
        0.0,
        1.0,
        4000,
    );
    for &t in &[0.0, 0.3, 1.0] {
        let y = ys[(t * 4000.0) as usize][0];
        assert!((y - (sig.sigma(t).powi(2) - 1e-4)).abs() < 2.5e-5);
        assert!(
            (y - sig.sigma(t).powi(2)).abs() > 5e-5,
            "shorthand must fail"
        );
    }
    assert_eq!(sde.marginal_std(0.0).unwrap(), 0.0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// VP keeps the variance at 1 for unit-variance data (003 §3.4): `s² + sigma² = 1` up to
    /// a few ulps; and for any data variance `v` the variance is `1 + (v - 1) e^{-B(t)}`,
    /// which tends to 1 (000's "variance 1 as t grows"), checked against RK4 of the variance
    /// ODE `V' = -beta V + beta` (200 steps, `(beta_max h)^4 <= 1e-4` relative, on O(1) values).
    #[test]
    fn vp_preserves_unit_variance_for_unit_variance_data(
        bmin in 0.0..5.0f64, dbeta in 0.0..25.0f64, t in 0.0..=1.0f64, v in 0.0..4.0f64,
    ) {
        let sde = VpSde::new(LinearBeta::new(bmin, bmin + dbeta).unwrap(), 1000).unwrap();
        let s = sde.mean_scale(t).unwrap();
        let total = s * s + var(&sde, t);
        prop_assert!((total - 1.0).abs() < 8.0 * EPS);
        let ys = rk4(|t, y| {
            let f = sde.drift_coef(t).unwrap();
            let g = sde.diffusion(t).unwrap();
            vec![2.0 * f * y[0] + g * g]
        }, &[v], 0.0, t, 200);
        let vt = s * s * v + var(&sde, t);
        prop_assert!((ys[200][0] - vt).abs() < 1e-4 * (1.0 + v));
        prop_assert!((vt - 1.0).abs() <= (v - 1.0).abs() + 8.0 * EPS);
    }

    /// The sub-VP marginal variance never exceeds the VP one for the same `beta` and data
    /// variance (003 §3.4): `(1 - e^{-B})² <= 1 - e^{-B}`; strict for `0 < B`.
    #[test]
    fn subvp_variance_never_exceeds_vp(
        bmin in 0.0..5.0f64, dbeta in 0.0..25.0f64, t in 0.0..=1.0f64, v in 0.0..10.0f64,
    ) {
        let b = LinearBeta::new(bmin, bmin + dbeta).unwrap();
        let (vp, sub) = (VpSde::new(b, 1000).unwrap(), SubVpSde::new(b, 1000).unwrap());
        let s = vp.mean_scale(t).unwrap();
        prop_assert_eq!(s, sub.mean_scale(t).unwrap());
        let (v_vp, v_sub) = (s * s * v + var(&vp, t), s * s * v + var(&sub, t));
        prop_assert!(v_sub <= v_vp + 4.0 * EPS);
        if b.integral(t) > 1e-6 {
            prop_assert!(v_sub < v_vp);
        }
    }
}

// ---------------------------------------------------------------- discretisations

/// Runs the forward chain of `sde.discretize` for 1-D `x` on the level grid, returning
/// `(scale, variance)` of the chain's marginal after reaching level `k_end`.
fn chain_marginal(sde: &dyn Sde, n: usize, k_end: usize) -> (f64, f64) {
    let (mut s, mut v) = (1.0, 0.0);
    for k in 0..=k_end {
        let (f, g) = sde
            .discretize(array![[1.0]].view(), level_time(k, n, 1.0), n)
            .unwrap();
        let a = 1.0 + f[[0, 0]];
        s *= a;
        v = a * a * v + g * g;
    }
    (s, v)
}

/// The VP discretisation is DDPM's chain: at `N = 1000` its betas are DDPM's linear schedule
/// `1e-4 .. 0.02` (003 §2.2), and the chain's marginal is DDPM's closed form
/// `N(sqrt(alpha_k) x0, (1 - alpha_k) I)` with `alpha_k = prod (1 - beta_j)`, computed here
/// from the schedule directly (tolerance: 1000 products, `1e-12`).
#[test]
fn vp_discretisation_is_the_ddpm_chain() {
    let sde = VpSde::default();
    let n = 1000;
    let mut alpha = 1.0;
    for k in 0..n {
        let ddpm_beta = 1e-4 + (0.02 - 1e-4) * k as f64 / (n - 1) as f64;
        assert!((sde.discrete_beta(k, n) - ddpm_beta).abs() < 1e-17);
        alpha *= 1.0 - ddpm_beta;
        if k % 97 == 0 || k == n - 1 {
            let (s, v) = chain_marginal(&sde, n, k);
            assert!((s - alpha.sqrt()).abs() < 1e-12, "k = {k}");
            assert!((v - (1.0 - alpha)).abs() < 1e-12, "k = {k}");
        }
    }
    // Sampling on linspace(1, eps, N) visits each level once.
    assert_eq!(level_index(1.0, 1.0, n).unwrap(), n - 1);
    assert_eq!(level_index(1e-3, 1.0, n).unwrap(), 1);
    assert_eq!(level_index(1e-5, 1.0, n).unwrap(), 0);
}

/// The chain's marginal converges to eq. 29 at first order: the error at `t = 0.5` halves
/// when the number of intervals doubles (ratio in [1.9, 2.1]: the first-order term dominates,
/// the next term changes the ratio by `O(1/N) < 1%` at `N >= 200`).
#[test]
fn vp_chain_marginal_converges_to_kernel_at_first_order() {
    let sde = VpSde::default();
    let err = |intervals: usize| {
        let n = intervals + 1;
        let (s, v) = chain_marginal(&sde, n, intervals / 2);
        (
            (s - sde.mean_scale(0.5).unwrap()).abs(),
            (v - var(&sde, 0.5)).abs(),
        )
    };
    let (e1, e2, e4) = (err(200), err(400), err(800));
    for (a, b) in [(e1.0, e2.0), (e2.0, e4.0), (e1.1, e2.1), (e2.1, e4.1)] {
        assert!((1.9..2.1).contains(&(a / b)), "ratio {}", a / b);
    }
}

/// The sub-VP Euler-Maruyama chain (the default `discretize`, `dt = 1/N`, coefficients at the
/// left end) converges to eq. 29 at first order: error ratio at `N` and `2N` in [1.9, 2.1].
#[test]
fn subvp_euler_chain_converges_to_kernel_at_first_order() {
    let sde = SubVpSde::default();
    let err = |n: usize| {
        let (mut s, mut v) = (1.0, 0.0);
        for j in 0..n / 2 {
            let (f, g) = sde
                .discretize(array![[1.0]].view(), j as f64 / n as f64, n)
                .unwrap();
            let a = 1.0 + f[[0, 0]];
            s *= a;
            v = a * a * v + g * g;
        }
        (
            (s - sde.mean_scale(0.5).unwrap()).abs(),
            (v - var(&sde, 0.5)).abs(),
        )
    };
    let (e1, e2, e4) = (err(400), err(800), err(1600));
    for (a, b) in [(e1.0, e2.0), (e2.0, e4.0), (e1.1, e2.1), (e2.1, e4.1)] {
        assert!((1.9..2.1).contains(&(a / b)), "ratio {}", a / b);
    }
}

/// The VE discretisation is the SMLD chain of eq. 8 with `sigma_{-1} = 0`: its level-`k`
/// variance is exactly `sigma_k² = sigma(t_k)²` (the increments telescope; tolerance
/// `N eps sigma_max²`), which is eq. 29's VE variance plus `sigma_min²` at every `N`: the
/// chain is eq. 9 started from data already perturbed at `sigma_min`. Its increments are
/// consistent with `g² dt` at first order: `G_k² / (g(t_k)² dt) - 1 ≈ -ln(r) dt` halves with
/// `dt` (ratio in [1.9, 2.1]).
#[test]
fn ve_discretisation_is_the_smld_chain() {
    let sde = VeSde::default();
    let n = 1000;
    let tol = n as f64 * EPS * 2500.0;
    for &k in &[0, 1, 250, 500, 999] {
        let t = level_time(k, n, 1.0);
        let (s, v) = chain_marginal(&sde, n, k);
        assert_eq!(s, 1.0);
        let smld = 0.01 * 5000f64.powf(k as f64 / 999.0);
        assert!((v - smld * smld).abs() < tol, "k = {k}");
        assert!((v - (var(&sde, t) + 1e-4)).abs() < tol, "k = {k}");
    }
    let rel = |n: usize| {
        let k = (n - 1) / 2;
        let t = level_time(k, n, 1.0);
        let (_, g) = sde.discretize(array![[0.0]].view(), t, n).unwrap();
        let dt = 1.0 / (n - 1) as f64;
        (g * g / (sde.diffusion(t).unwrap().powi(2) * dt) - 1.0).abs()
    };
    let (r1, r2, r4) = (rel(201), rel(401), rel(801));
    assert!((1.9..2.1).contains(&(r1 / r2)) && (1.9..2.1).contains(&(r2 / r4)));
}

// ---------------------------------------------------------------- reverse SDE and PF-ODE

/// Integrates the mean and variance ODEs of a linear 1-D process run backward in time,
/// `y(t - dτ) = y(t) - r(y, t) dτ + g(t) dw`, from the forward marginal at `t = 1` down to `t = 0`, where the
/// process is the reverse SDE (`r = reverse_drift`) or a wrong variant. Returns the states
/// at `t = 1, 0.75, 0.5, 0.25, 0` and the largest rate `|2 a|` seen.
fn reverse_moments(
    sde: &dyn Sde,
    data: &GaussianScore,
    drift: impl Fn(ArrayView2<f64>, f64) -> Array2<f64>,
    noise: bool,
) -> (Vec<Vec<f64>>, f64) {
    let n = 4000;
    let start = [
        sde.mean_scale(1.0).unwrap() * data.m,
        sde.mean_scale(1.0).unwrap().powi(2) * data.v + var(sde, 1.0),
    ];
    let mut rate: f64 = 0.0;
    let ys = rk4(
        |t, y| {
            let (a, b) = affine(|x| drift(x, t));
            rate = rate.max(2.0 * a.abs());
            let g2 = if noise {
                sde.diffusion(t).unwrap().powi(2)
            } else {
                0.0
            };
            // RK4 runs in t with a negative step; the process moves by `y -> y - r dτ + g dw`
            // with `dτ = -dt`, so `dμ/dt = a μ + b` and `dV/dt = 2 a V - g²`.
            vec![a * y[0] + b, 2.0 * a * y[1] - g2]
        },
        &start,
        1.0,
        0.0,
        n,
    );
    let picks = [0, 1000, 2000, 3000, 4000].map(|i| ys[i].clone()).to_vec();
    (picks, rate)
}

/// The reverse SDE (eq. 6) with the exact score of Gaussian data `N(1.5, 0.25)` reproduces the
/// forward marginals `N(s m, s² v + sigma²)` backward in time, for VP, sub-VP and VE. RK4 with
/// `h = 1/4000`: relative error `<= (rate h)^4` with the largest rate measured on the way
/// (at most ~180, so `<= 4e-6`).
#[test]
fn reverse_sde_reproduces_forward_marginals_backward_in_time() {
    let data = GaussianScore {
        m: 1.5,
        v: 0.25,
        d: 1,
    };
    for (name, sde) in sdes() {
        let rev = ReverseSde::new(&*sde, &data);
        let (ys, rate) =
            reverse_moments(&*sde, &data, |x, t| rev.reverse_drift(x, t).unwrap(), true);
        let tol = (rate / 4000.0).powi(4).max(1e-12);
        for (y, t) in ys.iter().zip([1.0, 0.75, 0.5, 0.25, 0.0]) {
            let s = sde.mean_scale(t).unwrap();
            let p = s * s * data.v + var(&*sde, t);
            assert!(
                (y[0] - s * data.m).abs() < tol * (1.0 + data.m),
                "{name} mean t={t} {} {} tol {tol}",
                y[0],
                s * data.m
            );
            assert!(
                (y[1] - p).abs() < tol * p.max(1.0),
                "{name} var t={t}: {} vs {p}",
                y[1]
            );
        }
    }
}

/// Twin of the test above: with the probability-flow factor `½ g²` in a stochastic reverse
/// process (`dx = [f - ½ g² score] dt + g dw̄`) the variance at `t = 0` is far from the data
/// variance 0.25, so the check rejects the wrong factor.
#[test]
fn reverse_sde_with_half_score_factor_fails_the_marginal_check() {
    let data = GaussianScore {
        m: 1.5,
        v: 0.25,
        d: 1,
    };
    for (name, sde) in sdes() {
        let rev = ReverseSde::new(&*sde, &data);
        let (ys, _) = reverse_moments(&*sde, &data, |x, t| rev.ode_drift(x, t).unwrap(), true);
        assert!((ys[4][1] - data.v).abs() > 0.1, "{name}: {}", ys[4][1]);
    }
}

/// The probability-flow ODE (eq. 13) maps the data Gaussian to the right marginal at every `t`:
/// its flow is affine, so mean and variance obey `μ' = a μ + b`, `V' = 2 a V` with no noise
/// term; integrated backward from `t = 1` they match the forward kernel (same RK4 bound).
/// Twin: the reverse-SDE velocity `f - g² score` used as an ODE misses the marginal.
#[test]
fn probability_flow_ode_transports_gaussian_marginals() {
    let data = GaussianScore {
        m: -0.7,
        v: 2.0,
        d: 1,
    };
    for (name, sde) in sdes() {
        let rev = ReverseSde::new(&*sde, &data);
        let (ys, rate) = reverse_moments(&*sde, &data, |x, t| rev.ode_drift(x, t).unwrap(), false);
        let tol = (rate / 4000.0).powi(4).max(1e-12);
        for (y, t) in ys.iter().zip([1.0, 0.75, 0.5, 0.25, 0.0]) {
            let s = sde.mean_scale(t).unwrap();
            let p = s * s * data.v + var(&*sde, t);
            assert!(
                (y[0] - s * data.m).abs() < tol * (1.0 + data.m.abs()),
                "{name} t={t}"
            );
            assert!((y[1] - p).abs() < tol * p.max(1.0), "{name} t={t}");
        }
        let (wrong, _) =
            reverse_moments(&*sde, &data, |x, t| rev.reverse_drift(x, t).unwrap(), false);
        assert!((wrong[4][1] - data.v).abs() > 0.1, "{name} twin");
    }
}

/// For non-Gaussian data (a two-component 1-D mixture) the probability-flow ODE transports
/// `p_0` to `p_t`: its flow map is monotone, so it carries quantiles to quantiles,
/// `F_t(x(t)) = F_0(x(0))`, with `F_t` the mixture CDF at the kernel of eq. 29. Points start
/// at the data quantiles `u`; RK4 with 4000 steps from `t = 0` to 1; tolerance `1e-5` in CDF
/// units (`(rate h)^4` with rates below ~100, times a density below 1.3). Twin: the
/// reverse-SDE velocity used as an ODE misplaces the quantiles by more than 0.01.
#[test]
fn probability_flow_ode_carries_mixture_quantiles() {
    let data = MixtureScore {
        w: vec![0.3, 0.7],
        m: vec![-2.0, 1.5],
        v: vec![0.1, 0.3],
    };
    let us = [0.05, 0.2, 0.5, 0.8, 0.95];
    let n = 4000;
    for (name, sde) in sdes() {
        let rev = ReverseSde::new(&*sde, &data);
        let x0: Vec<f64> = us
            .iter()
            .map(|&u| data.quantile(u, sde.level(0.0).unwrap()))
            .collect();
        let flow = |wrong: bool| {
            rk4(
                |t, y| {
                    let x = Array2::from_shape_vec((y.len(), 1), y.to_vec()).unwrap();
                    let v = if wrong {
                        rev.reverse_drift(x.view(), t).unwrap()
                    } else {
                        rev.ode_drift(x.view(), t).unwrap()
                    };
                    v.into_raw_vec_and_offset().0
                },
                &x0,
                0.0,
                1.0,
                n,
            )
        };
        let ys = flow(false);
        for &t in &[0.25, 0.5, 1.0] {
            let l = sde.level(t).unwrap();
            let xs = &ys[(t * n as f64) as usize];
            for (x, u) in xs.iter().zip(us) {
                let fu = data.cdf(*x, l);
                assert!((fu - u).abs() < 1e-5, "{name} t={t} u={u}: {fu}");
            }
        }
        let bad = flow(true);
        let l = sde.level(1.0).unwrap();
        let worst = bad[n]
            .iter()
            .zip(us)
            .map(|(x, u)| (data.cdf(*x, l) - u).abs())
            .fold(0.0, f64::max);
        assert!(worst > 0.01, "{name} twin: {worst}");
    }
}

/// The reverse discretisation (the reverse-diffusion predictor `x -> x - (F - G² s) + G z`)
/// with the exact score takes the VP marginal at `t = 1` back to the data Gaussian with a
/// first-order error: the moment recursion's error at `t = 0` halves when `N` doubles
/// (ratio in [1.9, 2.1]).
#[test]
fn reverse_diffusion_step_converges_to_data_at_first_order() {
    let data = GaussianScore {
        m: 1.5,
        v: 0.25,
        d: 1,
    };
    let sde = VpSde::default();
    let rev = ReverseSde::new(&sde, &data);
    let err = |n: usize| {
        let s1 = sde.mean_scale(1.0).unwrap();
        let (mut mu, mut v) = (s1 * data.m, s1 * s1 * data.v + var(&sde, 1.0));
        for k in (0..n).rev() {
            let t = level_time(k, n, 1.0);
            let (a, b) = affine(|x| rev.discretize(x, t, n).unwrap().0);
            let g = rev.discretize(array![[0.0]].view(), t, n).unwrap().1;
            // x -> x - (a x + b) + g z.
            mu = mu - (a * mu + b);
            v = (1.0 - a).powi(2) * v + g * g;
        }
        ((mu - data.m).abs(), (v - data.v).abs())
    };
    let (e1, e2, e4) = (err(500), err(1000), err(2000));
    for (a, b) in [(e1.0, e2.0), (e2.0, e4.0), (e1.1, e2.1), (e2.1, e4.1)] {
        assert!((1.9..2.1).contains(&(a / b)), "ratio {}", a / b);
    }
}

// ---------------------------------------------------------------- priors

/// The prior log-density is a normalised density with the prior's variance: trapezoid sums of
/// `exp(log p)` over `[-10 sd, 10 sd]²` (d = 2) give 1 and of `x² p` (d = 1) give `sd²`
/// (the trapezoid rule is spectrally accurate for Gaussians; tails `< e^-50`; tolerance 1e-10).
#[test]
fn prior_log_density_is_a_normalised_gaussian_with_prior_variance() {
    for (name, sde) in sdes() {
        let sd = sde.prior_std();
        let m = 400;
        let h = 20.0 * sd / m as f64;
        let grid: Vec<f64> = (0..=m).map(|i| -10.0 * sd + h * i as f64).collect();
        let (mut mass, mut second) = (0.0, 0.0);
        for &a in &grid {
            for &b in &grid {
                mass += sde.prior_log_density(array![a, b].view()).exp() * h * h;
            }
            second += a * a * sde.prior_log_density(array![a].view()).exp() * h;
        }
        assert!((mass - 1.0).abs() < 1e-10, "{name}: {mass}");
        assert!((second / (sd * sd) - 1.0).abs() < 1e-10, "{name}: {second}");
    }
}

/// Sample moments of `n d = 60000` prior draws against the prior (CLT, 5 sigma per check,
/// false-alarm rate < 6e-7 each): each coordinate mean within `5 sd / sqrt(n)`, pooled
/// variance ratio within `5 sqrt(2 / (n d))`. Returns whether all checks pass.
fn prior_moments_pass(samples: &Array2<f64>, sd: f64) -> bool {
    let (n, d) = samples.dim();
    let means_ok = (0..d).all(|j| {
        let mean = samples.column(j).sum() / n as f64;
        mean.abs() < 5.0 * sd / (n as f64).sqrt()
    });
    let total = (n * d) as f64;
    let ratio = samples.iter().map(|x| x * x).sum::<f64>() / total / (sd * sd);
    means_ok && (ratio - 1.0).abs() < 5.0 * (2.0 / total).sqrt()
}

/// Prior samples have the prior's moments (VP/sub-VP: `N(0, I)`; VE: `N(0, sigma_max² I)`).
#[test]
fn prior_samples_have_prior_moments() {
    for (i, (name, sde)) in sdes().into_iter().enumerate() {
        let mut r = rng::seeded(2024 + i as u64);
        let x = sde.prior_sample(&mut r, 20000, 3);
        assert_eq!(x.dim(), (20000, 3));
        assert!(prior_moments_pass(&x, sde.prior_std()), "{name}");
    }
}

/// Twin: the same check rejects a sampler whose scale is 5% too large (variance ratio 1.1025
/// against a tolerance of 0.029).
#[test]
fn prior_moment_check_rejects_wrong_prior_scale() {
    for (i, (name, sde)) in sdes().into_iter().enumerate() {
        let mut r = rng::seeded(2024 + i as u64);
        let x = sde.prior_sample(&mut r, 20000, 3) * 1.05;
        assert!(!prior_moments_pass(&x, sde.prior_std()), "{name}");
    }
}

// ---------------------------------------------------------------- errors

/// Times outside `[0, 1]` (and NaN/inf), too few steps and mismatched shapes are typed errors.
#[test]
fn bad_times_steps_and_shapes_are_typed_errors() {
    let x = array![[0.5, 1.0]];
    for (name, sde) in sdes() {
        for t in [-0.1, 1.0 + 1e-9, f64::NAN, f64::INFINITY] {
            let bad = |r: Result<f64, Error>| matches!(r, Err(Error::InvalidParameter { .. }));
            assert!(bad(sde.drift_coef(t)), "{name} {t}");
            assert!(bad(sde.diffusion(t)), "{name} {t}");
            assert!(bad(sde.mean_scale(t)), "{name} {t}");
            assert!(bad(sde.marginal_std(t)), "{name} {t}");
            assert!(sde.level(t).is_err() && sde.drift(x.view(), t).is_err());
            assert!(sde.discretize(x.view(), t, 100).is_err(), "{name} {t}");
        }
        assert!(matches!(
            sde.discretize(x.view(), 0.5, 0),
            Err(Error::InvalidParameter { .. })
        ));
        let model = GaussianScore {
            m: 0.0,
            v: 1.0,
            d: 3,
        };
        let rev = ReverseSde::new(&*sde, &model);
        assert!(matches!(
            rev.reverse_drift(x.view(), 0.5),
            Err(Error::Shape(_))
        ));
        assert!(matches!(rev.ode_drift(x.view(), 0.5), Err(Error::Shape(_))));
        assert!(matches!(
            rev.discretize(x.view(), 0.5, 100),
            Err(Error::Shape(_))
        ));
    }
    assert!(level_index(0.5, 1.0, 1).is_err());
    assert!(VpSde::default().discretize(x.view(), 0.5, 1).is_err());
    assert!(VpSde::default().discretize(x.view(), 0.5, 10).is_err());
}
