//! The DDPM chain of 000 eqs. 1.1-1.12 and 003 eqs. 3-4, each formula checked against an
//! independent route: composition of linear-Gaussian kernels, Bayes' rule for Gaussians,
//! finite differences, quadrature, and Monte Carlo with CLT bounds (each with a twin that
//! shows the same check rejecting a wrong formula). Errata of the printed forms are shown
//! failing next to the correct forms.

// Coordinate loops mirror the per-coordinate formulas they check.
#![allow(clippy::needless_range_loop)]

use ndarray::{array, Array1, Array2};
use proptest::prelude::*;
use scoresde::chain::ddpm::{
    decoder_bin_log_prob, decoder_log_likelihood, Ddpm, LinearReverse, HALF_BIN,
};
use scoresde::rng;
use scoresde::schedule::beta::BetaSchedule;
use scoresde::Error;

const EPS: f64 = f64::EPSILON;
const LN_2PI: f64 = 1.837_877_066_409_345_5;

/// ln N(x; m, v) in one dimension, written out independently of the library.
fn ln_normal(x: f64, m: f64, v: f64) -> f64 {
    -0.5 * (LN_2PI + v.ln() + (x - m) * (x - m) / v)
}

/// Naive reference: alpha_bar_t as a running product (index t = 0..=T).
fn alpha_bars(betas: &[f64]) -> Vec<f64> {
    let mut ab = vec![1.0];
    for &b in betas {
        ab.push(ab.last().unwrap() * (1.0 - b));
    }
    ab
}

/// `1 - alpha_bar_t` by the cancellation-free recursion `u_t = u_{t-1}(1 - beta_t) + beta_t`.
fn one_minus_alpha_bars(betas: &[f64]) -> Vec<f64> {
    let mut u = vec![0.0];
    for &b in betas {
        u.push(u.last().unwrap() * (1.0 - b) + b);
    }
    u
}

/// A random schedule, a step t in 1..=T and two 2×3 batches of values in [-3, 3].
fn case() -> impl Strategy<Value = (Vec<f64>, usize, Array2<f64>, Array2<f64>)> {
    prop::collection::vec(1e-4f64..0.4, 1..40).prop_flat_map(|betas| {
        let n = betas.len();
        (
            Just(betas),
            1..=n,
            prop::collection::vec(-3.0f64..3.0, 6),
            prop::collection::vec(-3.0f64..3.0, 6),
        )
            .prop_map(|(b, t, x, y)| {
                (
                    b,
                    t,
                    Array2::from_shape_vec((2, 3), x).unwrap(),
                    Array2::from_shape_vec((2, 3), y).unwrap(),
                )
            })
    })
}

fn max_abs(a: &Array2<f64>) -> f64 {
    a.iter().fold(0.0, |m, x| m.max(x.abs()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Ledger A1.5: composing the one-step kernels q(x_s|x_{s-1}) of A1.3 for s = 1..t gives
    /// q(x_t|x_0). A linear-Gaussian kernel N(a x, b) maps N(m, v) to N(a m, a^2 v + b); the test
    /// pushes N(x_0, 0) through the library's kernels and compares with the library's marginal.
    /// Tolerance: t <= 40 steps of two roundings each on values of size <= 3 give < 1e-13.
    #[test]
    fn marginal_equals_chained_one_step_kernels((betas, t, x0, _y) in case()) {
        let ddpm = Ddpm::new(BetaSchedule::from_betas(betas).unwrap());
        let mut mean = x0.clone();
        let mut var = 0.0;
        for s in 1..=t {
            let k = ddpm.kernel(mean.view(), s).unwrap();
            let a = ddpm.kernel(array![[1.0]].view(), s).unwrap().mean[[0, 0]];
            mean = k.mean;
            var = a * a * var + k.var;
        }
        let q = ddpm.marginal(x0.view(), t).unwrap();
        prop_assert!(max_abs(&(&q.mean - &mean)) < 1e-13);
        prop_assert!((q.var - var).abs() < 1e-13);
    }

    /// Ledger A1.7: the posterior q(x_{t-1}|x_t,x_0) is the normalised product
    /// q(x_t|x_{t-1}) q(x_{t-1}|x_0). As a function of x_{t-1} the first factor is
    /// N(x_t/sqrt(alpha_t), beta_t/alpha_t) and the second N(sqrt(ab_{t-1}) x_0, 1 - ab_{t-1});
    /// the product of Gaussians has precision equal to the sum of precisions and mean equal to the
    /// precision-weighted mean, computed here from naive references. At t = 1 the second factor
    /// is a point mass at x_0, so the posterior is that point mass.
    /// Tolerance: both routes have relative error < 100 eps per coefficient (T <= 40 products);
    /// absolute 1e-12 (values <= 3, coefficients <= 1/sqrt(alpha) < 1.3).
    #[test]
    fn posterior_equals_bayesian_product((betas, t, x0, xt) in case()) {
        let ddpm = Ddpm::new(BetaSchedule::from_betas(betas.clone()).unwrap());
        let post = ddpm.posterior(x0.view(), xt.view(), t).unwrap();
        if t == 1 {
            prop_assert_eq!(post.var, 0.0);
            prop_assert!(max_abs(&(&post.mean - &x0)) < 1e-12);
        } else {
            let ab = alpha_bars(&betas);
            let u = one_minus_alpha_bars(&betas);
            let (alpha, beta) = (1.0 - betas[t - 1], betas[t - 1]);
            let prec_like = alpha / beta;
            let prec_prior = 1.0 / u[t - 1];
            let var = 1.0 / (prec_like + prec_prior);
            let mean = (&xt * (prec_like / alpha.sqrt()) + &x0 * (ab[t - 1].sqrt() * prec_prior)) * var;
            prop_assert!((post.var - var).abs() <= 1e-12 * var);
            prop_assert!(max_abs(&(&post.mean - &mean)) < 1e-12);
        }
    }

    /// Ledger A1.9-A1.10: with x_t = sqrt(ab_t) x_0 + sqrt(1-ab_t) eps (true noise), the eps-form
    /// mean (x_t - beta_t/sqrt(1-ab_t) eps)/sqrt(alpha_t) equals the posterior mean
    /// mu_tilde_t(x_t, x_0), and x_0 is recovered from (x_t, eps).
    /// Tolerance: values <= 3 and coefficients <= 1/sqrt(alpha) < 1.3 give absolute errors below
    /// 1e-14 for the means; recovering x_0 divides by sqrt(ab_t), so its bound is 1e-14/sqrt(ab_t).
    #[test]
    fn eps_form_mean_equals_posterior_mean_for_true_noise((betas, t, x0, eps) in case()) {
        let ddpm = Ddpm::new(BetaSchedule::from_betas(betas).unwrap());
        let xt = ddpm.marginal_sample(x0.view(), t, eps.view()).unwrap();
        let post = ddpm.posterior(x0.view(), xt.view(), t).unwrap();
        let mu = ddpm.reverse_mean_from_eps(xt.view(), eps.view(), t).unwrap();
        prop_assert!(max_abs(&(&mu - &post.mean)) < 1e-13);
        let x0_back = ddpm.x0_from_eps(xt.view(), eps.view(), t).unwrap();
        let sab = ddpm.schedule().sqrt_alpha_bar(t).unwrap();
        prop_assert!(max_abs(&(&x0_back - &x0)) < 1e-13 / sab);
    }

    /// Ledger A1.8 = A1.11: for t >= 2, a model N(mu_theta, sigma^2 I) with mu_theta in eps form
    /// (A1.10), KL(posterior || model) - C equals
    /// beta_t^2/(2 sigma^2 alpha_t (1-ab_t)) |eps - eps_theta|^2 exactly; C is the
    /// variance-only part of the KL. The twin shows the same check rejects the weight without
    /// alpha_t and the unweighted 1/(2 sigma^2).
    /// Tolerance (f64 rounding): each mean coordinate is a sum of two products of size <= M
    /// (M bounds |coef * value|), so the difference of the two means carries absolute error
    /// delta <= 16 eps M; the squared norm then errs by <= d (2 |Delta|max delta + delta^2), and
    /// subtracting C costs 4 eps |C|; everything is divided by 2 sigma^2.
    #[test]
    fn kl_equals_weighted_eps_loss(
        (betas, t, x0, eps) in case(),
        d_eps in prop::collection::vec(-2.0f64..2.0, 6),
        sigma2_scale in 0.2f64..5.0,
    ) {
        prop_assume!(t >= 2);
        let ddpm = Ddpm::new(BetaSchedule::from_betas(betas.clone()).unwrap());
        let sch = ddpm.schedule();
        let sigma2 = sigma2_scale * betas[t - 1];
        let eps_theta = &eps + &Array2::from_shape_vec((2, 3), d_eps).unwrap();
        let xt = ddpm.marginal_sample(x0.view(), t, eps.view()).unwrap();
        let mu_theta = ddpm.reverse_mean_from_eps(xt.view(), eps_theta.view(), t).unwrap();
        let kl = ddpm.kl_posterior(x0.view(), xt.view(), t, mu_theta.view(), sigma2).unwrap();
        let c = ddpm.kl_constant(t, sigma2, 3).unwrap();
        let w = ddpm.eps_loss_weight(t, sigma2).unwrap();
        let alpha = 1.0 - betas[t - 1];
        let u = sch.one_minus_alpha_bar(t).unwrap();
        let coef = betas[t - 1] / (alpha.sqrt() * u.sqrt());
        let m = 3.0 * (1.0 / alpha.sqrt()) * (max_abs(&xt) + 1.0) + coef * max_abs(&eps_theta) + 3.0;
        let delta = 16.0 * EPS * m;
        let dmax = coef * 2.0 + delta;
        let tol = (3.0 * (2.0 * dmax * delta + delta * delta)) / (2.0 * sigma2) + 4.0 * EPS * c.abs();
        for i in 0..2 {
            let sq: f64 = (0..3).map(|j| (eps[[i, j]] - eps_theta[[i, j]]).powi(2)).sum();
            let lhs = kl[i] - c;
            prop_assert!((lhs - w * sq).abs() <= tol + 8.0 * EPS * w * sq, "lhs {} rhs {} tol {}", lhs, w * sq, tol);
            // Twin: wrong weights are rejected by the same tolerance whenever the loss is not tiny.
            if w * sq > 1e3 * tol {
                let no_alpha = betas[t - 1].powi(2) / (2.0 * sigma2 * u);
                prop_assert!((lhs - no_alpha * sq).abs() > tol + 8.0 * EPS * w * sq);
                let flat = 1.0 / (2.0 * sigma2);
                prop_assert!((lhs - flat * sq).abs() > tol + 8.0 * EPS * w * sq);
            }
        }
    }

    /// The kernel's score grad_{x_t} ln q(x_t|x_0) equals -eps/sqrt(1-ab_t) (004's "score is
    /// scaled noise", 003 eq. 3's target), checked against central finite differences of
    /// ln q(x_t|x_0). ln q is quadratic in x_t, so central differences have no truncation error;
    /// the rounding error is <= 2 eps |ln q| / h, plus 1e-12 for the values of size <= 3/(1-ab).
    #[test]
    fn kernel_score_equals_scaled_noise_and_finite_differences((betas, t, x0, eps) in case()) {
        let ddpm = Ddpm::new(BetaSchedule::from_betas(betas).unwrap());
        let sch = ddpm.schedule();
        let xt = ddpm.marginal_sample(x0.view(), t, eps.view()).unwrap();
        let score = ddpm.marginal_score(x0.view(), xt.view(), t).unwrap();
        let sd = sch.sqrt_one_minus_alpha_bar(t).unwrap();
        let expected = eps.mapv(|e| -e / sd);
        prop_assert!(max_abs(&(&score - &expected)) < 1e-12 / (sd * sd));
        let h = 1e-3 * sd;
        let lp = ddpm.marginal_log_density(x0.view(), xt.view(), t).unwrap();
        for i in 0..2 {
            for j in 0..3 {
                let mut xp = xt.clone();
                let mut xm = xt.clone();
                xp[[i, j]] += h;
                xm[[i, j]] -= h;
                let fp = ddpm.marginal_log_density(x0.view(), xp.view(), t).unwrap()[i];
                let fm = ddpm.marginal_log_density(x0.view(), xm.view(), t).unwrap()[i];
                let fd = (fp - fm) / (2.0 * h);
                let tol = 4.0 * EPS * (lp[i].abs() + 1.0) / h + 1e-12 / (sd * sd);
                prop_assert!((fd - score[[i, j]]).abs() < tol, "fd {} score {}", fd, score[[i, j]]);
            }
        }
    }

    /// Ledger D4: 003 eq. 4's mean (x_t + beta_t s)/sqrt(1 - beta_t) equals the eps-form mean of
    /// A1.10 when s = -eps/sqrt(1-ab_t). Tolerance as in the eps-form test.
    #[test]
    fn score_form_mean_of_003_eq4_equals_eps_form((betas, t, xt, eps) in case()) {
        let ddpm = Ddpm::new(BetaSchedule::from_betas(betas).unwrap());
        let sd = ddpm.schedule().sqrt_one_minus_alpha_bar(t).unwrap();
        let s = eps.mapv(|e| -e / sd);
        let a = ddpm.reverse_mean_from_eps(xt.view(), eps.view(), t).unwrap();
        let b = ddpm.reverse_mean_from_score(xt.view(), s.view(), t).unwrap();
        prop_assert!(max_abs(&(&a - &b)) < 1e-13);
    }

    /// Ledger D3: the (1 - ab_i)-weighted denoising score matching loss of 003 eq. 3 equals
    /// Ho et al.'s L_simple |eps - eps_theta|^2 under s_theta = -eps_theta/sqrt(1 - ab_i), because
    /// grad ln q(x~|x) = -eps/sqrt(1 - ab_i). Tolerance: terms of size <= (6/sd)^2 (1-ab), rounding 1e-12.
    #[test]
    fn weighted_dsm_of_003_eq3_equals_eps_loss(
        (betas, t, x0, eps) in case(),
        eps_theta in prop::collection::vec(-3.0f64..3.0, 6),
    ) {
        let ddpm = Ddpm::new(BetaSchedule::from_betas(betas).unwrap());
        let sd = ddpm.schedule().sqrt_one_minus_alpha_bar(t).unwrap();
        let eps_theta = Array2::from_shape_vec((2, 3), eps_theta).unwrap();
        let xt = ddpm.marginal_sample(x0.view(), t, eps.view()).unwrap();
        let target = ddpm.marginal_score(x0.view(), xt.view(), t).unwrap();
        let s_theta = eps_theta.mapv(|e| -e / sd);
        let dsm = (sd * sd) * (&s_theta - &target).mapv(|x| x * x).sum();
        let simple = (&eps - &eps_theta).mapv(|x| x * x).sum();
        prop_assert!((dsm - simple).abs() < 1e-11 * (1.0 + simple));
    }

    /// Ho et al. §3.2 as quoted in 000 (ledger Ac05): the optimal reverse variance is beta_t for
    /// x_0 ~ N(0, 1) and beta_tilde_t for a point mass. The library's true reverse conditional
    /// (precision form) is checked against covariance conditioning written out here:
    /// with P = Var x_{t-1}, Var(x_{t-1}|x_t) = P - alpha_t P^2/(alpha_t P + beta_t) and
    /// E(x_{t-1}|x_t) = mu_p + sqrt(alpha_t) P (x_t - sqrt(alpha_t) mu_p)/(alpha_t P + beta_t).
    /// Tolerance: relative 1e-12 (T <= 40 products, a few operations).
    #[test]
    fn optimal_reverse_variance_is_beta_for_standard_normal_and_beta_tilde_for_point_mass(
        (betas, t, _x, _y) in case(),
        m in -3.0f64..3.0,
        v in 0.0f64..4.0,
        xt in -3.0f64..3.0,
    ) {
        let ddpm = Ddpm::new(BetaSchedule::from_betas(betas.clone()).unwrap());
        let sch = ddpm.schedule();
        let std_normal = ddpm.true_reverse(t, 0.0, 1.0).unwrap();
        prop_assert!((std_normal.var - betas[t - 1]).abs() <= 1e-12 * betas[t - 1]);
        let point = ddpm.true_reverse(t, m, 0.0).unwrap();
        let bt = sch.posterior_variance(t).unwrap();
        prop_assert!((point.var - bt).abs() <= 1e-12 * betas[t - 1]);
        // A point mass at m: the true reverse mean is the posterior mean with x_0 = m.
        let post = ddpm.posterior(array![[m]].view(), array![[xt]].view(), t).unwrap();
        prop_assert!((point.scale * xt + point.shift - post.mean[[0, 0]]).abs() < 1e-12 * (1.0 + xt.abs() + m.abs()));
        // General Gaussian data against covariance conditioning.
        let ab = alpha_bars(&betas);
        let u = one_minus_alpha_bars(&betas);
        let (alpha, beta) = (1.0 - betas[t - 1], betas[t - 1]);
        let p = ab[t - 1] * v + u[t - 1];
        let mu_p = ab[t - 1].sqrt() * m;
        let var = p - alpha * p * p / (alpha * p + beta);
        let mean = mu_p + alpha.sqrt() * p * (xt - alpha.sqrt() * mu_p) / (alpha * p + beta);
        let r = ddpm.true_reverse(t, m, v).unwrap();
        prop_assert!((r.var - var).abs() <= 1e-12 * p);
        prop_assert!((r.scale * xt + r.shift - mean).abs() <= 1e-12 * (1.0 + xt.abs() + m.abs()));
    }

    /// Ledger A1.12: the decoder's 256 bin probabilities sum to 1 for any mean and sigma, thanks
    /// to the edges at -1 and 1 being moved to -inf and +inf. Tolerance: 256 terms each with
    /// relative error < 16 eps sum to within 256 * 16 eps < 1e-12.
    #[test]
    fn decoder_probabilities_sum_to_one(mean in -3.0f64..3.0, sigma in 1e-3f64..3.0) {
        let total: f64 = (0..=255u8).map(|k| decoder_bin_log_prob(k, mean, sigma).unwrap().exp()).sum();
        prop_assert!((total - 1.0).abs() < 1e-12, "total {}", total);
    }

    /// Ledger A1.12: each interior bin's probability equals Simpson quadrature of the density
    /// N(mean, sigma^2) over [x - 1/255, x + 1/255]. With 1024 panels (h = w/1024, w = 2/255) the
    /// Simpson error is <= w h^4 max|f''''|/180 <= 1.2 w h^4 / (180 sigma^5) < 1e-16 for
    /// sigma >= 0.02, against a bin mass >= 4e-4 when |x - mean| <= 3 sigma; relative 1e-10.
    #[test]
    fn decoder_bin_equals_quadrature(k in 1u8..255, z0 in -3.0f64..3.0, sigma in 0.02f64..2.0) {
        let x = 2.0 * k as f64 / 255.0 - 1.0;
        let mean = x + z0 * sigma;
        let (a, b) = (x - HALF_BIN, x + HALF_BIN);
        let f = |y: f64| ln_normal(y, mean, sigma * sigma).exp();
        let quad = simpson(f, a, b, 1024);
        let lib = decoder_bin_log_prob(k, mean, sigma).unwrap().exp();
        prop_assert!((lib - quad).abs() <= 1e-10 * quad, "lib {} quad {}", lib, quad);
    }
}

/// Composite Simpson rule with `n` (even) panels.
fn simpson(f: impl Fn(f64) -> f64, a: f64, b: f64, n: usize) -> f64 {
    let h = (b - a) / n as f64;
    let mut s = f(a) + f(b);
    for i in 1..n {
        s += f(a + h * i as f64) * if i % 2 == 1 { 4.0 } else { 2.0 };
    }
    s * h / 3.0
}

/// Ledger A1.12 twin: without the extension of the outer edges to +-inf (bins [x - 1/255,
/// x + 1/255] everywhere) the 256 probabilities miss the mass outside [-1 - 1/255, 1 + 1/255]:
/// for mean 1 and sigma 0.5 about half. The sum-to-one check above would reject it.
#[test]
fn decoder_without_infinite_edges_loses_mass() {
    let (mean, sigma) = (1.0, 0.5);
    let phi = |z: f64| 0.5 * libm::erfc(-z / std::f64::consts::SQRT_2);
    let total: f64 = (0..=255u32)
        .map(|k| {
            let x = 2.0 * k as f64 / 255.0 - 1.0;
            phi((x + HALF_BIN - mean) / sigma) - phi((x - HALF_BIN - mean) / sigma)
        })
        .sum();
    assert!((total - 1.0).abs() > 0.4, "{total}");
    let lib: f64 = (0..=255u8)
        .map(|k| decoder_bin_log_prob(k, mean, sigma).unwrap().exp())
        .sum();
    assert!((lib - 1.0).abs() < 1e-12);
}

/// The decoder stays finite and accurate far in the tails (bin masses near e^-5000 and
/// e^-11000, where a difference of CDFs underflows to 0). Reference: with z = l + s,
/// ln P = ln phi(l) + ln int_0^{w} exp(-l s - s^2/2) ds, the integral by Simpson on
/// [0, min(w, 0.3)] (the rest is below e^{-0.3 l} < 1e-13 relative for l >= 100) with 16384
/// panels: error <= 0.3 h^4 l^4/180 relative to 1/l, below 1e-10 for l <= 150.
#[test]
fn decoder_far_tail_is_finite_and_accurate() {
    let sigma = 0.01;
    let mean = -0.5;
    for k in [200u8, 230, 255] {
        let x = 2.0 * k as f64 / 255.0 - 1.0;
        let l = (x - HALF_BIN - mean) / sigma;
        let w = if k == 255 {
            f64::INFINITY
        } else {
            2.0 * HALF_BIN / sigma
        };
        let top = w.min(0.3);
        let integral = simpson(|s| (-l * s - 0.5 * s * s).exp(), 0.0, top, 16384);
        let reference = -0.5 * l * l - 0.5 * LN_2PI + integral.ln();
        let lib = decoder_bin_log_prob(k, mean, sigma).unwrap();
        assert!(lib.is_finite());
        assert!(
            (lib - reference).abs() < 1e-9,
            "k {k}: lib {lib} ref {reference}"
        );
    }
    // The mirror image: lower tail bins.
    let a = decoder_bin_log_prob(0, 0.5, sigma).unwrap();
    let b = decoder_bin_log_prob(255, -0.5, sigma).unwrap();
    assert!((a - b).abs() < 1e-12 * a.abs());
}

/// The decoder log-likelihood of a batch is the sum of per-coordinate bin log-probabilities, and
/// rejects data off the 8-bit grid with a typed error.
#[test]
fn decoder_log_likelihood_sums_bins_and_rejects_off_grid_data() {
    let x0 = array![[-1.0, 1.0, 2.0 * 100.0 / 255.0 - 1.0]];
    let mean = array![[-0.9, 0.8, 0.0]];
    let ll = decoder_log_likelihood(x0.view(), mean.view(), 0.1).unwrap();
    let expect = decoder_bin_log_prob(0, -0.9, 0.1).unwrap()
        + decoder_bin_log_prob(255, 0.8, 0.1).unwrap()
        + decoder_bin_log_prob(100, 0.0, 0.1).unwrap();
    assert!((ll[0] - expect).abs() < 1e-12 * expect.abs());
    let off = array![[0.001, 0.0, 0.0]];
    assert!(matches!(
        decoder_log_likelihood(off.view(), mean.view(), 0.1),
        Err(Error::InvalidParameter { name: "x0", .. })
    ));
    assert!(matches!(
        decoder_log_likelihood(x0.view(), mean.view(), 0.0),
        Err(Error::InvalidParameter { name: "sigma", .. })
    ));
    assert!(matches!(
        decoder_log_likelihood(x0.view(), array![[0.0]].view(), 0.1),
        Err(Error::Shape(_))
    ));
}

/// Per-coordinate sample moments agree with N(mu_j, var) within 5 standard errors: the sample
/// mean has standard error sqrt(var/n), the sample variance sqrt(2 var^2/(n-1)) (Gaussian).
/// Each comparison has a two-sided false-alarm rate of 5.7e-7; 4 comparisons < 2.3e-6.
fn moments_agree(samples: &Array2<f64>, mu: &[f64], var: f64) -> bool {
    let n = samples.nrows() as f64;
    samples.columns().into_iter().zip(mu).all(|(c, &m)| {
        let mean = c.sum() / n;
        let s2 = c.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
        (mean - m).abs() < 5.0 * (var / n).sqrt()
            && (s2 - var).abs() < 5.0 * (2.0 * var * var / (n - 1.0)).sqrt()
    })
}

/// Ledger A1.3 -> A1.5 by Monte Carlo: running the chain step by step with the library's
/// forward_step from a fixed x_0 gives samples whose moments match q(x_t|x_0) (20000 draws, 5
/// sigma). Twin: the same check rejects a chain whose drift is (1 - beta_t) instead of
/// sqrt(1 - beta_t) (its mean is off by ~50 standard errors).
#[test]
fn monte_carlo_chain_matches_marginal_and_rejects_wrong_drift() {
    let n = 20_000;
    let ddpm = Ddpm::new(BetaSchedule::linear(20, 0.01, 0.2).unwrap());
    let x0 = [1.5, -0.7];
    let start = Array2::from_shape_fn((n, 2), |(_, j)| x0[j]);
    let mut rng = rng::seeded(11);
    let mut x = start.clone();
    for t in 1..=20 {
        x = ddpm.forward_step(x.view(), t, &mut rng).unwrap();
    }
    let q = ddpm.marginal(array![x0].view(), 20).unwrap();
    let mu = [q.mean[[0, 0]], q.mean[[0, 1]]];
    assert!(moments_agree(&x, &mu, q.var));

    let mut rng = rng::seeded(12);
    let mut wrong = start;
    for t in 1..=20 {
        let b = ddpm.schedule().beta(t).unwrap();
        wrong.mapv_inplace(|v| (1.0 - b) * v + b.sqrt() * rng::normal(&mut rng));
    }
    assert!(!moments_agree(&wrong, &mu, q.var));
}

/// A reverse model with linear means for the ELBO tests: the true reverse conditional for data
/// N(m, v I), perturbed (scale x1.05, shift +0.1) so that it is not exact, with variance beta_t.
fn perturbed_model(ddpm: &Ddpm, m: &[f64], v: f64) -> LinearReverse {
    let steps = ddpm.schedule().steps();
    let mut model = LinearReverse {
        scale: vec![],
        shift: vec![],
        var: vec![],
    };
    for t in 1..=steps {
        let r0 = ddpm.true_reverse(t, 0.0, v).unwrap();
        model.scale.push(1.05 * r0.scale);
        model.shift.push(Array1::from_iter(
            m.iter()
                .map(|&mi| ddpm.true_reverse(t, mi, v).unwrap().shift + 0.1),
        ));
        model.var.push(ddpm.schedule().beta(t).unwrap());
    }
    model
}

/// Ledger A1.4 = A1.6: the closed-form decomposition L_T + sum_{t>1} L_{t-1} + L_0 for data
/// N(m, v I) equals a Monte Carlo estimate of the expectation form of 1.4,
/// E_q[-ln p(x_T) - sum_t ln(p_theta(x_{t-1}|x_t) / q(x_t|x_{t-1}))], with the chain and all
/// densities written out in this test (200000 chains; 5 standard errors, false-alarm rate 5.7e-7).
/// Twin: the same check rejects a decomposition whose KL terms use beta_t instead of
/// beta_tilde_t as the posterior variance.
#[test]
fn elbo_decomposition_matches_monte_carlo_of_expectation_form() {
    let steps = 6;
    let ddpm = Ddpm::new(BetaSchedule::linear(steps, 0.05, 0.4).unwrap());
    let sch = ddpm.schedule();
    let (m, v) = ([0.5, -1.0], 0.3);
    let model = perturbed_model(&ddpm, &m, v);
    let terms = ddpm
        .elbo_gaussian_data(ndarray::ArrayView1::from(&m[..]), v, &model)
        .unwrap();
    let closed = terms.total();

    let n = 200_000;
    let mut rng = rng::seeded(2024);
    let (mut sum, mut sum2) = (0.0, 0.0);
    let mut xs = vec![[0.0f64; 2]; steps + 1];
    for _ in 0..n {
        for j in 0..2 {
            xs[0][j] = m[j] + v.sqrt() * rng::normal(&mut rng);
        }
        let mut l = 0.0;
        for t in 1..=steps {
            let b = sch.beta(t).unwrap();
            for j in 0..2 {
                let mean = (1.0 - b).sqrt() * xs[t - 1][j];
                xs[t][j] = mean + b.sqrt() * rng::normal(&mut rng);
                l += ln_normal(xs[t][j], mean, b); // + ln q(x_t|x_{t-1})
                let pm = model.scale[t - 1] * xs[t][j] + model.shift[t - 1][j];
                l -= ln_normal(xs[t - 1][j], pm, model.var[t - 1]); // - ln p_theta(x_{t-1}|x_t)
            }
        }
        for j in 0..2 {
            l -= ln_normal(xs[steps][j], 0.0, 1.0); // - ln p(x_T)
        }
        sum += l;
        sum2 += l * l;
    }
    let mc = sum / n as f64;
    let se = ((sum2 / n as f64 - mc * mc) / n as f64).sqrt();
    assert!(
        (mc - closed).abs() < 5.0 * se,
        "mc {mc} closed {closed} se {se}"
    );

    // Twin: replace C(beta_tilde_t) by C(beta_t) in every L_{t-1}.
    let c = |var_q: f64, s2: f64| 0.5 * 2.0 * (var_q / s2 - 1.0 - (var_q / s2).ln());
    let mut wrong = closed;
    for t in 2..=steps {
        let s2 = model.var[t - 1];
        wrong += c(sch.beta(t).unwrap(), s2) - c(sch.posterior_variance(t).unwrap(), s2);
    }
    assert!((mc - wrong).abs() > 5.0 * se, "twin not rejected");
}

/// Ledger A1.1, A1.4 (the inequality): E_q[-ln p_theta(x_0)] <= L. The model's marginal
/// p_theta(x_0) of A1.1 is Gaussian per coordinate (push N(0,1) through the linear-Gaussian
/// reverse kernels), so its cross-entropy with the data N(m, v) is closed form. For the exact
/// model the gap is only the mismatch of q(x_T) with N(0, I), which is tiny for a long chain.
#[test]
fn negative_log_likelihood_is_bounded_by_the_elbo() {
    for (steps, b1, bt) in [(6, 0.05, 0.4), (200, 1e-3, 0.1)] {
        let ddpm = Ddpm::new(BetaSchedule::linear(steps, b1, bt).unwrap());
        let (m, v) = ([0.5, -1.0], 0.3);
        let model = perturbed_model(&ddpm, &m, v);
        let nll = |model: &LinearReverse| -> f64 {
            (0..2)
                .map(|j| {
                    let (mut mm, mut s) = (0.0, 1.0);
                    for t in (1..=steps).rev() {
                        mm = model.scale[t - 1] * mm + model.shift[t - 1][j];
                        s = model.scale[t - 1].powi(2) * s + model.var[t - 1];
                    }
                    0.5 * (LN_2PI + s.ln()) + ((m[j] - mm).powi(2) + v) / (2.0 * s)
                })
                .sum()
        };
        let elbo = |model: &LinearReverse| {
            ddpm.elbo_gaussian_data(ndarray::ArrayView1::from(&m[..]), v, model)
                .unwrap()
                .total()
        };
        assert!(nll(&model) <= elbo(&model));
        // The exact reverse model (true reverse conditionals) nearly closes the gap.
        let mut exact = model.clone();
        for t in 1..=steps {
            let r = ddpm.true_reverse(t, 0.0, v).unwrap();
            exact.scale[t - 1] = r.scale;
            exact.var[t - 1] = r.var;
            for j in 0..2 {
                exact.shift[t - 1][j] = ddpm.true_reverse(t, m[j], v).unwrap().shift;
            }
        }
        let gap = elbo(&exact) - nll(&exact);
        assert!(gap >= -1e-12);
        if steps == 200 {
            // q(x_T|x_0) is within alpha_bar_T ~ 4e-5 of N(0, I): the gap is of that order.
            assert!(gap < 1e-3, "gap {gap}");
        }
    }
}

/// Ledger A1.6 (L_T): the prior term equals the general KL between diagonal Gaussians,
/// sum_j 1/2 (v_q/v_p + (mu_q - mu_p)^2/v_p - 1 - ln(v_q/v_p)), written out here; it does not
/// depend on any model parameter (000's remark that L_T is a constant). Tolerance 1e-12 relative.
#[test]
fn prior_term_equals_gaussian_kl() {
    let ddpm = Ddpm::new(BetaSchedule::linear(50, 1e-3, 0.1).unwrap());
    let sch = ddpm.schedule();
    let x0 = array![[0.3, -1.2, 2.0], [0.0, 0.0, 0.0]];
    let lt = ddpm.prior_kl(x0.view()).unwrap();
    let ab = alpha_bars(sch.betas())[50];
    let vq = one_minus_alpha_bars(sch.betas())[50];
    for i in 0..2 {
        let kl: f64 = (0..3)
            .map(|j| {
                let mq = ab.sqrt() * x0[[i, j]];
                0.5 * (vq + mq * mq - 1.0 - vq.ln())
            })
            .sum();
        assert!((lt[i] - kl).abs() <= 1e-12 * kl.abs().max(1e-3));
    }
}

/// Ledger D3 (claim): the weight (1 - ab_i) of 003 eq. 3 is proportional to
/// 1/E|grad ln q(x~|x)|^2, since that expectation is d/(1 - ab_i). Monte Carlo with 20000 draws:
/// |grad|^2 (1 - ab) = |eps|^2 is chi-squared with d = 3 (variance 2d), 5 standard errors.
/// Twin: the weight sqrt(1 - ab_i) fails the same check.
#[test]
fn dsm_weight_is_inverse_expected_squared_kernel_score() {
    let ddpm = Ddpm::new(BetaSchedule::constant(10, 0.05).unwrap());
    let t = 7;
    let n = 20_000;
    let mut rng = rng::seeded(99);
    let x0 = Array2::from_shape_fn((n, 3), |(i, j)| (i % 7) as f64 * 0.1 - j as f64);
    let eps = Array2::from_shape_fn((n, 3), |_| rng::normal(&mut rng));
    let xt = ddpm.marginal_sample(x0.view(), t, eps.view()).unwrap();
    let g = ddpm.marginal_score(x0.view(), xt.view(), t).unwrap();
    let mean_sq = g.mapv(|x| x * x).sum() / n as f64;
    let u = ddpm.schedule().one_minus_alpha_bar(t).unwrap();
    let se = (2.0 * 3.0 / n as f64).sqrt();
    assert!((u * mean_sq - 3.0).abs() < 5.0 * se);
    assert!(
        (u.sqrt() * mean_sq - 3.0).abs() > 5.0 * se,
        "twin not rejected"
    );
}

/// Ledger D4 and Ac01: for x_0 ~ N(0, I) the perturbed marginals are all N(0, I), the exact
/// score is -x, and 003 eq. 4's ancestral step x -> (x + beta s(x))/sqrt(1-beta) + sqrt(beta) z
/// becomes N(sqrt(1 - beta) x, beta): exactly the true reverse conditional q(x_{t-1}|x_t).
#[test]
fn ancestral_step_of_003_eq4_is_exact_for_standard_normal_data() {
    let ddpm = Ddpm::new(BetaSchedule::linear(30, 1e-3, 0.3).unwrap());
    let x = array![[0.7, -2.0, 1.3]];
    for t in 1..=30 {
        let mean = ddpm
            .reverse_mean_from_score(x.view(), x.mapv(|v| -v).view(), t)
            .unwrap();
        let r = ddpm.true_reverse(t, 0.0, 1.0).unwrap();
        let beta = ddpm.schedule().beta(t).unwrap();
        for j in 0..3 {
            assert!((mean[[0, j]] - r.scale * x[[0, j]]).abs() < 1e-14);
        }
        assert!((r.var - beta).abs() < 1e-15);
    }
}

/// Erratum A1.10: 000 prints mu_theta = mu_tilde_t(x_t, (x_t - sqrt(1-ab_t) eps)/sqrt(ab_T)) with
/// a capital T. With ab_T the middle expression differs from the right-hand side
/// (x_t - beta_t/sqrt(1-ab_t) eps)/sqrt(alpha_t); with ab_t (the correct form) they agree.
#[test]
fn erratum_1_10_alpha_bar_capital_t_breaks_the_identity() {
    let ddpm = Ddpm::new(BetaSchedule::linear(10, 0.05, 0.3).unwrap());
    let sch = ddpm.schedule();
    let t = 3;
    let xt = array![[0.4, -1.1]];
    let eps = array![[0.9, 0.2]];
    let rhs = ddpm
        .reverse_mean_from_eps(xt.view(), eps.view(), t)
        .unwrap();
    let sd = sch.sqrt_one_minus_alpha_bar(t).unwrap();
    let x0_with = |sab: f64| xt.mapv(|v| v / sab) - eps.mapv(|e| sd * e / sab);
    let correct = ddpm
        .posterior(x0_with(sch.sqrt_alpha_bar(t).unwrap()).view(), xt.view(), t)
        .unwrap()
        .mean;
    let printed = ddpm
        .posterior(
            x0_with(sch.sqrt_alpha_bar(10).unwrap()).view(),
            xt.view(),
            t,
        )
        .unwrap()
        .mean;
    assert!(max_abs(&(&correct - &rhs)) < 1e-14);
    assert!(max_abs(&(&printed - &rhs)) > 0.1);
}

/// Erratum A1.2: 000 prints p_theta(x_{t-1}|x_t) = N(x_{t-1}; mu_theta(x_{t-1}, t), Sigma). A mean
/// that depends on the variable itself does not give a density: with the eps-form mean, linear
/// with slope a = 1/sqrt(alpha_t), the integral over x_{t-1} is 1/|1 - a| (about 19.5 here), while
/// the correct N(x_{t-1}; mu_theta(x_t, t), Sigma) integrates to 1. Simpson with 200000 panels on
/// a +-40-standard-deviation window: error < 1e-9.
#[test]
fn erratum_1_2_mean_of_x_t_minus_1_is_not_a_density() {
    let ddpm = Ddpm::new(BetaSchedule::constant(5, 0.1).unwrap());
    let t = 2;
    let (alpha, beta) = (0.9f64, 0.1f64);
    let eps = 0.3;
    let c = beta / ddpm.schedule().sqrt_one_minus_alpha_bar(t).unwrap();
    let mean_of = |x: f64| (x - c * eps) / alpha.sqrt();
    let a = 1.0 / alpha.sqrt();
    let xt = 0.5;
    // Printed: the mean is evaluated at the integration variable y = x_{t-1}; the integrand is a
    // Gaussian in y centred at y* = mean_of(0)/(1 - a) with std sqrt(beta)/|1 - a|.
    let centre = mean_of(0.0) / (1.0 - a);
    let width = 40.0 * beta.sqrt() / (a - 1.0);
    let printed = simpson(
        |y| ln_normal(y, mean_of(y), beta).exp(),
        centre - width,
        centre + width,
        200_000,
    );
    let correct = simpson(
        |y| ln_normal(y, mean_of(xt), beta).exp(),
        mean_of(xt) - 40.0 * beta.sqrt(),
        mean_of(xt) + 40.0 * beta.sqrt(),
        200_000,
    );
    assert!((correct - 1.0).abs() < 1e-9);
    assert!((printed - 1.0 / (a - 1.0)).abs() < 1e-7 * printed);
    assert!((printed - 1.0).abs() > 1.0);
}

/// Bad input is a typed error, never a panic: mismatched shapes, out-of-range steps, a KL at
/// t = 1 (point-mass posterior), non-positive model variances, negative data variance.
#[test]
fn invalid_inputs_are_typed_errors() {
    let ddpm = Ddpm::new(BetaSchedule::constant(5, 0.1).unwrap());
    let a = array![[0.0, 1.0]];
    let b = array![[0.0, 1.0, 2.0]];
    assert!(matches!(
        ddpm.posterior(a.view(), b.view(), 2),
        Err(Error::Shape(_))
    ));
    assert!(matches!(
        ddpm.marginal_sample(a.view(), 2, b.view()),
        Err(Error::Shape(_))
    ));
    assert!(matches!(
        ddpm.kernel(a.view(), 6),
        Err(Error::InvalidParameter { name: "t", .. })
    ));
    assert!(matches!(
        ddpm.kernel(a.view(), 0),
        Err(Error::InvalidParameter { name: "t", .. })
    ));
    assert!(matches!(
        ddpm.kl_posterior(a.view(), a.view(), 1, a.view(), 0.1),
        Err(Error::InvalidParameter { name: "t", .. })
    ));
    assert!(matches!(
        ddpm.kl_constant(3, 0.0, 2),
        Err(Error::InvalidParameter { name: "sigma2", .. })
    ));
    assert!(matches!(
        ddpm.eps_loss_weight(3, f64::NAN),
        Err(Error::InvalidParameter { name: "sigma2", .. })
    ));
    assert!(matches!(
        ddpm.true_reverse(3, 0.0, -1.0),
        Err(Error::InvalidParameter { name: "v", .. })
    ));
    assert!(matches!(
        ddpm.marginal_score(a.view(), a.view(), 0),
        Err(Error::InvalidParameter { name: "t", .. })
    ));
    let model = perturbed_model(&ddpm, &[0.0, 0.0], 1.0);
    let mut short = model.clone();
    short.var.pop();
    let m = ndarray::arr1(&[0.0, 0.0]);
    assert!(matches!(
        ddpm.elbo_gaussian_data(m.view(), 1.0, &short),
        Err(Error::Shape(_))
    ));
    assert!(matches!(
        ddpm.elbo_gaussian_data(m.view(), -1.0, &model),
        Err(Error::InvalidParameter { name: "var", .. })
    ));
    assert!(matches!(
        decoder_bin_log_prob(3, f64::NAN, 0.1),
        Err(Error::NonFinite(_))
    ));
}
