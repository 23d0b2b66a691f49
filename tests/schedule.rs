//! Discrete beta schedules: every derived quantity against an independent route (naive running
//! products and a cancellation-free recursion for `1 - alpha_bar`), the cosine schedule against
//! its closed form, monotonicity claims, and typed errors for invalid schedules.

use proptest::prelude::*;
use scoresde::schedule::beta::BetaSchedule;
use scoresde::Error;

const EPS: f64 = f64::EPSILON;

/// Independent reference values for step `t = 0..=T`: `alpha_bar` as a naive running product and
/// `u = 1 - alpha_bar` by the recursion `u_t = u_{t-1} (1 - beta_t) + beta_t`, whose terms are all
/// non-negative, so it has relative error at most about `3 t eps` with no cancellation.
fn reference(betas: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let mut ab = vec![1.0];
    let mut u = vec![0.0];
    for &b in betas {
        ab.push(ab.last().unwrap() * (1.0 - b));
        u.push(u.last().unwrap() * (1.0 - b) + b);
    }
    (ab, u)
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs()) + f64::MIN_POSITIVE
}

fn betas_strategy() -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(1e-5f64..0.5, 1..60)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// alpha_bar_t is the cumulative product of alpha_s = 1 - beta_s (ledger A1.5's definition),
    /// and every derived quantity equals its definition evaluated from independent references.
    /// Tolerance: the library sums `t <= 60` values of `ln_1p` (each within 1 ulp) and the
    /// reference multiplies `t` factors, so both carry relative error below `~4 t eps < 6e-14`;
    /// ratios and square roots at most double that, hence `1e-12`.
    #[test]
    fn derived_quantities_match_their_definitions(betas in betas_strategy()) {
        let s = BetaSchedule::from_betas(betas.clone()).unwrap();
        let (ab, u) = reference(&betas);
        let tol = 1e-12;
        prop_assert_eq!(s.alpha_bar(0).unwrap(), 1.0);
        for t in 1..=betas.len() {
            let b = betas[t - 1];
            prop_assert!(close(s.alpha_bar(t).unwrap(), ab[t], tol));
            prop_assert!(close(s.one_minus_alpha_bar(t).unwrap(), u[t], tol));
            prop_assert!(close(s.alpha(t).unwrap(), 1.0 - b, tol));
            prop_assert!(close(s.sqrt_alpha_bar(t).unwrap(), ab[t].sqrt(), tol));
            prop_assert!(close(s.sqrt_one_minus_alpha_bar(t).unwrap(), u[t].sqrt(), tol));
            prop_assert!(close(s.sqrt_recip_alpha_bar(t).unwrap(), (1.0 / ab[t]).sqrt(), tol));
            prop_assert!(close(s.sqrt_recip_alpha_bar_minus_one(t).unwrap(), (u[t] / ab[t]).sqrt(), tol));
            prop_assert!(close(s.snr(t).unwrap(), ab[t] / u[t], tol));
            // ln SNR: absolute error = relative error of SNR.
            prop_assert!((s.log_snr(t).unwrap() - (ab[t] / u[t]).ln()).abs() <= tol);
            prop_assert!(close(s.posterior_variance(t).unwrap(), u[t - 1] / u[t] * b, tol));
            prop_assert!(close(s.posterior_mean_coef_x0(t).unwrap(), ab[t - 1].sqrt() * b / u[t], tol));
            prop_assert!(close(
                s.posterior_mean_coef_xt(t).unwrap(),
                (1.0 - b).sqrt() * u[t - 1] / u[t],
                tol
            ));
            let lv = s.level(t).unwrap();
            prop_assert!(close(lv.scale, ab[t].sqrt(), tol) && close(lv.std, u[t].sqrt(), tol));
            prop_assert_eq!(lv.t, t as f64);
        }
    }

    /// The posterior variance lies strictly below beta_t for t >= 2 and is 0 at t = 1
    /// (alpha_bar_0 = 1); and the posterior mean is unbiased along a noiseless chain:
    /// `c0 + ct sqrt(alpha_bar_t) = sqrt(alpha_bar_{t-1})` (an identity of 1.7's coefficients that
    /// a wrong coefficient would break). Tolerance 1e-12 as in the test above.
    #[test]
    fn posterior_variance_is_below_beta(betas in betas_strategy()) {
        let s = BetaSchedule::from_betas(betas.clone()).unwrap();
        prop_assert_eq!(s.posterior_variance(1).unwrap(), 0.0);
        for t in 2..=betas.len() {
            let bt = s.posterior_variance(t).unwrap();
            prop_assert!(bt > 0.0 && bt < betas[t - 1]);
            // Unbiasedness of the posterior mean for a noiseless chain: if x_t = sqrt(ab_t) x0
            // exactly then mu_tilde = sqrt(ab_{t-1}) x0, i.e. c0 + ct sqrt(ab_t) = sqrt(ab_{t-1}).
            let lhs = s.posterior_mean_coef_x0(t).unwrap()
                + s.posterior_mean_coef_xt(t).unwrap() * s.sqrt_alpha_bar(t).unwrap();
            prop_assert!(close(lhs, s.sqrt_alpha_bar(t - 1).unwrap(), 1e-12));
        }
    }

    /// SNR(t) = alpha_bar_t / (1 - alpha_bar_t) is strictly decreasing in t for any valid
    /// schedule, and ln SNR agrees with ln of SNR.
    #[test]
    fn snr_is_strictly_decreasing(betas in betas_strategy()) {
        let s = BetaSchedule::from_betas(betas.clone()).unwrap();
        for t in 2..=betas.len() {
            prop_assert!(s.snr(t).unwrap() < s.snr(t - 1).unwrap());
            prop_assert!(s.log_snr(t).unwrap() < s.log_snr(t - 1).unwrap());
        }
        for t in 1..=betas.len() {
            prop_assert!((s.log_snr(t).unwrap() - s.snr(t).unwrap().ln()).abs() < 1e-12);
        }
    }

    /// The cosine schedule's cumulative product equals its closed form
    /// alpha_bar(t) = f(t)/f(0), f(t) = cos^2((t/T + s)/(1+s) pi/2), at every unclipped step.
    /// Tolerance: the closed form has relative error about `4 eps / cos(angle)` from rounding of
    /// the angle near pi/2, i.e. `4 eps / sqrt(alpha_bar)`; the library's product of `t` stably
    /// computed betas has relative error below `8 t eps / sqrt(alpha_bar)` by the same argument;
    /// the bound used is `64 eps (T + 1) / sqrt(alpha_bar)`.
    #[test]
    fn cosine_alpha_bar_matches_closed_form(steps in 2usize..400, s in 0.0f64..0.05) {
        let sch = BetaSchedule::cosine(steps, s).unwrap();
        let f = |t: usize| {
            let c = ((t as f64 / steps as f64 + s) / (1.0 + s) * std::f64::consts::FRAC_PI_2).cos();
            c * c
        };
        let mut clipped_from = steps + 1;
        for t in 1..=steps {
            let naive_beta = 1.0 - f(t) / f(t - 1);
            if naive_beta >= 0.999 {
                prop_assert_eq!(sch.beta(t).unwrap(), 0.999);
                clipped_from = clipped_from.min(t);
                continue;
            }
            // Stable beta equals the defining ratio form to the latter's rounding (~4 eps / f(t-1)).
            prop_assert!((sch.beta(t).unwrap() - naive_beta).abs() <= 16.0 * EPS / f(t - 1));
            if t < clipped_from {
                let closed = f(t) / f(0);
                let tol = 64.0 * EPS * (steps as f64 + 1.0) / closed.sqrt();
                prop_assert!(close(sch.alpha_bar(t).unwrap(), closed, tol),
                    "t={} lib={} closed={}", t, sch.alpha_bar(t).unwrap(), closed);
            }
        }
        // f(T) = 0 exactly in exact arithmetic, so the last step is always clipped.
        prop_assert_eq!(sch.beta(steps).unwrap(), 0.999);
    }
}

/// Ho et al.'s linear schedule has the stated end points and constant spacing; the scaled-linear
/// schedule is linear in sqrt(beta); the constant schedule is constant.
#[test]
fn linear_scaled_linear_and_constant_have_their_shapes() {
    let lin = BetaSchedule::linear(1000, 1e-4, 0.02).unwrap();
    let b = lin.betas();
    assert_eq!((b[0], b[999]), (1e-4, 0.02));
    let h = (0.02 - 1e-4) / 999.0;
    for w in b.windows(2) {
        // Spacing computed as a + h i: rounding of |a + h i| <= 0.02 is below 0.02 eps per value.
        assert!((w[1] - w[0] - h).abs() < 0.1 * EPS);
    }
    // ln alpha_bar_T = sum ln(1 - beta) lies between -sum beta = -10.05 and
    // -sum beta - sum beta^2/2 - sum beta^3/3 - ... > -10.05 - 0.0670 - 0.0007 > -10.12
    // (sum beta^2 = 0.1340, sum beta^3 = 0.0020 for this schedule), i.e. alpha_bar_T ~ 4.0e-5.
    let abt = lin.alpha_bar(1000).unwrap();
    assert!(
        abt > (-10.05f64 - 0.07).exp() && abt < (-10.05f64).exp(),
        "{abt}"
    );

    let sl = BetaSchedule::scaled_linear(10, 1e-4, 0.04).unwrap();
    let r: Vec<f64> = sl.betas().iter().map(|b| b.sqrt()).collect();
    assert!((r[0] - 0.01).abs() < 1e-17 && (r[9] - 0.2).abs() < 1e-16);
    for w in r.windows(2) {
        assert!((w[1] - w[0] - 0.19 / 9.0).abs() < 1e-15);
    }
    let c = BetaSchedule::constant(7, 0.1).unwrap();
    assert!(c.betas().iter().all(|&b| b == 0.1));
    // T = 1 is allowed for every constructor.
    assert_eq!(BetaSchedule::linear(1, 0.3, 0.5).unwrap().betas(), &[0.3]);
}

/// The clipped log posterior variance replaces t = 1 (where beta_tilde_1 = 0) by t = 2's value,
/// and equals ln beta_tilde_t elsewhere; with T = 1 it falls back to ln beta_1.
#[test]
fn clipped_log_posterior_variance_uses_step_two_at_step_one() {
    let s = BetaSchedule::linear(5, 0.1, 0.3).unwrap();
    let v2 = s.posterior_variance(2).unwrap();
    assert_eq!(s.posterior_log_variance_clipped(1).unwrap(), v2.ln());
    for t in 2..=5 {
        assert_eq!(
            s.posterior_log_variance_clipped(t).unwrap(),
            s.posterior_variance(t).unwrap().ln()
        );
    }
    let one = BetaSchedule::constant(1, 0.2).unwrap();
    assert_eq!(one.posterior_log_variance_clipped(1).unwrap(), 0.2f64.ln());
}

/// Near alpha_bar = 1 (tiny betas) the stable forms keep full relative precision where the
/// naive `1 - prod` would lose it: with beta = 1e-12 at one step, 1 - alpha_bar_1 must be 1e-12
/// to relative 1e-15, and SNR 1e12 - 0.5 likewise.
#[test]
fn tiny_betas_keep_relative_precision() {
    let s = BetaSchedule::from_betas(vec![1e-12, 1e-12]).unwrap();
    let u = s.one_minus_alpha_bar(1).unwrap();
    assert!((u / 1e-12 - 1.0).abs() < 4.0 * EPS);
    // 1 - (1 - b)^2 = 2b - b^2.
    let u2 = s.one_minus_alpha_bar(2).unwrap();
    assert!((u2 / (2e-12 - 1e-24) - 1.0).abs() < 8.0 * EPS);
    // SNR = (1 - b)/b = 1/b - 1.
    assert!((s.snr(1).unwrap() / (1e12 - 1.0) - 1.0).abs() < 8.0 * EPS);
}

fn is_invalid_schedule<T: std::fmt::Debug>(r: Result<T, Error>) -> bool {
    matches!(r, Err(Error::InvalidSchedule(_)))
}

/// Invalid schedules are typed errors, never panics: beta = 0, beta = 1, negative, NaN,
/// infinite, T = 0, and a negative or NaN cosine offset. Out-of-range steps are parameter errors.
#[test]
fn invalid_schedules_are_typed_errors() {
    for bad in [0.0, 1.0, -0.1, 1.5, f64::NAN, f64::INFINITY] {
        assert!(is_invalid_schedule(BetaSchedule::from_betas(vec![
            0.1, bad
        ])));
        assert!(is_invalid_schedule(BetaSchedule::constant(3, bad)));
        assert!(is_invalid_schedule(BetaSchedule::linear(3, bad, 0.1)));
        assert!(is_invalid_schedule(BetaSchedule::linear(3, 0.1, bad)));
        assert!(is_invalid_schedule(BetaSchedule::scaled_linear(
            3, bad, 0.1
        )));
    }
    assert!(is_invalid_schedule(BetaSchedule::from_betas(vec![])));
    assert!(is_invalid_schedule(BetaSchedule::linear(0, 1e-4, 0.02)));
    assert!(is_invalid_schedule(BetaSchedule::scaled_linear(
        0, 1e-4, 0.02
    )));
    assert!(is_invalid_schedule(BetaSchedule::constant(0, 0.1)));
    assert!(is_invalid_schedule(BetaSchedule::cosine(0, 0.008)));
    assert!(is_invalid_schedule(BetaSchedule::cosine(10, -0.1)));
    assert!(is_invalid_schedule(BetaSchedule::cosine(10, f64::NAN)));

    let s = BetaSchedule::constant(4, 0.1).unwrap();
    let bad_t = |r: Result<f64, Error>| matches!(r, Err(Error::InvalidParameter { name: "t", .. }));
    assert!(bad_t(s.beta(0)));
    assert!(bad_t(s.beta(5)));
    assert!(bad_t(s.alpha_bar(5)));
    assert!(bad_t(s.snr(0)));
    assert!(bad_t(s.posterior_variance(0)));
    assert!(bad_t(s.posterior_log_variance_clipped(5)));
    assert!(s.alpha_bar(0).is_ok() && s.alpha_bar(4).is_ok());
}
