//! Each objective of `scoresde::loss`, built in `f32` on the engine's graph, against its
//! defining formula evaluated independently in `f64`.
//!
//! Tolerance: the graph rounds inputs to `f32` (relative 6e-8) and sums at most a few hundred
//! terms of size O(1..100); the accumulated relative error is below `n_terms · 6e-8 ≈ 2e-5`,
//! so relative agreement to `1e-4` is demanded (a wrong weight or target changes the value by
//! O(1)).

use ndarray::Array2;
use proptest::prelude::*;
use scoresde::engine::{Graph, Tensor};
use scoresde::loss::{self, Prediction, ReverseVariance, Weighting};
use scoresde::rng::{seeded, NoiseSource};
use scoresde::schedule::beta::BetaSchedule;
use scoresde::schedule::sigma::SigmaSequence;
use scoresde::sde::{Sde, SubVpSde, VeSde, VpSde};

fn normal(seed: u64, n: usize, d: usize) -> Array2<f64> {
    let mut a = Array2::zeros((n, d));
    seeded(seed).fill_normal(a.as_slice_mut().unwrap());
    a
}

fn tensor(a: &Array2<f64>) -> Tensor<f32> {
    Tensor::from_vec(
        &[a.nrows(), a.ncols()],
        a.iter().map(|&v| v as f32).collect(),
    )
    .unwrap()
}

fn close(got: f64, want: f64) {
    let tol = 1e-4 * want.abs().max(1e-3);
    assert!((got - want).abs() <= tol, "loss {got} vs formula {want}");
}

fn sq(a: ndarray::ArrayView1<f64>) -> f64 {
    a.dot(&a)
}

fn eval(f: impl FnOnce(&mut Graph<f32>) -> scoresde::Result<Tensor<f32>>) -> f64 {
    let mut g = Graph::<f32>::new();
    f(&mut g).unwrap().item() as f64
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// L_simple with eps prediction equals `E‖eps − eps_hat‖² / d` computed from the batch's
    /// noise in f64 (ledger A1.11 without weight, D3).
    #[test]
    fn eps_loss_equals_mean_squared_noise_error(seed in 0u64..1000, n in 1usize..20, d in 1usize..10) {
        let s = BetaSchedule::linear(1000, 1e-4, 0.02).unwrap();
        let x0 = normal(seed, n, d);
        let b = loss::perturb_ddpm(&s, x0.view(), &mut seeded(seed + 1)).unwrap();
        let out = normal(seed + 2, n, d);
        let got = eval(|g| loss::ddpm_simple(g, &tensor(&out), &b, Prediction::Eps));
        let want: f64 = (0..n).map(|i| sq((&b.eps.row(i) - &out.row(i)).view())).sum::<f64>() / (n * d) as f64;
        close(got, want);
    }

    /// The x0 and v losses of a network whose eps-prediction is `eps_hat` are the eps loss
    /// re-weighted by `(1 − abar)/abar` and `1/abar`: an independent route through the
    /// parameterisation identities `x0 = (xt − std eps)/scale`, `v = (eps − std xt)/scale`.
    #[test]
    fn x0_and_v_losses_are_snr_reweighted_eps_losses(seed in 0u64..1000, n in 1usize..20, d in 1usize..6) {
        // T = 200 keeps abar_T = 0.13 away from 0 so 1/abar stays moderate.
        let s = BetaSchedule::linear(200, 1e-4, 0.02).unwrap();
        let x0 = normal(seed, n, d);
        let b = loss::perturb_ddpm(&s, x0.view(), &mut seeded(seed + 1)).unwrap();
        let eps_hat = normal(seed + 2, n, d);
        let mut x0_hat = Array2::zeros((n, d));
        let mut v_hat = Array2::zeros((n, d));
        let (mut want_x0, mut want_v) = (0.0, 0.0);
        for i in 0..n {
            let (a, sd) = (b.scale[i], b.std[i]);
            x0_hat.row_mut(i).assign(&((&b.xt.row(i) - &(&eps_hat.row(i) * sd)) / a));
            v_hat.row_mut(i).assign(&((&eps_hat.row(i) - &(&b.xt.row(i) * sd)) / a));
            let e2 = sq((&b.eps.row(i) - &eps_hat.row(i)).view());
            want_x0 += sd * sd / (a * a) * e2;
            want_v += e2 / (a * a);
        }
        let nd = (n * d) as f64;
        close(eval(|g| loss::ddpm_simple(g, &tensor(&x0_hat), &b, Prediction::X0)), want_x0 / nd);
        close(eval(|g| loss::ddpm_simple(g, &tensor(&v_hat), &b, Prediction::V)), want_v / nd);
    }

    /// The weighted eps objective (000 eq. 1.11, ledger A1.11) equals the KL divergence
    /// `‖mu~(xt, x0) − mu_theta(xt, eps_hat)‖² / (2 sigma_t²)` between the forward posterior and
    /// the reverse step of equal variance, computed from the posterior mean coefficients.
    #[test]
    fn vlb_weighted_eps_loss_equals_gaussian_kl(seed in 0u64..1000, n in 1usize..12, d in 1usize..6, post in any::<bool>()) {
        let s = BetaSchedule::linear(1000, 1e-4, 0.02).unwrap();
        let var = if post { ReverseVariance::Posterior } else { ReverseVariance::Beta };
        let x0 = normal(seed, n, d);
        let mut b = loss::perturb_ddpm(&s, x0.view(), &mut seeded(seed + 1)).unwrap();
        // Steps from 2: the posterior variance is 0 at t = 1.
        for t in b.index.iter_mut() { *t = (*t).max(2); }
        let steps = b.index.clone();
        let b = loss::Perturbed::new(
            b.x0.clone(), b.eps.clone(), steps.iter().map(|&t| t as f64).collect(),
            steps.iter().map(|&t| s.sqrt_alpha_bar(t).unwrap()).collect(),
            steps.iter().map(|&t| s.sqrt_one_minus_alpha_bar(t).unwrap()).collect(), steps.clone()).unwrap();
        let eps_hat = normal(seed + 2, n, d);
        let mut want = 0.0;
        for (i, &t) in steps.iter().enumerate() {
            let beta = s.beta(t).unwrap();
            let s2 = if post { s.posterior_variance(t).unwrap() } else { beta };
            let mu_post = &b.x0.row(i) * s.posterior_mean_coef_x0(t).unwrap()
                + &b.xt.row(i) * s.posterior_mean_coef_xt(t).unwrap();
            let mu_theta = (&b.xt.row(i) - &(&eps_hat.row(i) * (beta / s.sqrt_one_minus_alpha_bar(t).unwrap())))
                / s.alpha(t).unwrap().sqrt();
            want += sq((&mu_post - &mu_theta).view()) / (2.0 * s2);
        }
        want /= (n * d) as f64;
        close(eval(|g| loss::ddpm_vlb(g, &tensor(&eps_hat), &b, &s, var)), want);
    }

    /// Continuous DSM (003 eq. 7, 000 eq. 1.21; ledger D7, A1.21) equals
    /// `E lambda(t) ‖s_theta − ∇ log p_0t(xt | x0)‖² / d` with `s_theta = −eps_hat / sigma(t)` and
    /// the kernel score `−(xt − s(t) x0) / sigma(t)²` from the perturbed points, for VP, sub-VP
    /// and VE and both weightings (`lambda = sigma²`, `lambda = g²`).
    #[test]
    fn dsm_equals_weighted_score_regression(seed in 0u64..1000, n in 1usize..16, d in 1usize..6, which in 0usize..6) {
        let vp = VpSde::default();
        let sub = SubVpSde::new(Default::default(), 1000).unwrap();
        let ve = VeSde::default();
        let sdes: [&dyn Sde; 3] = [&vp, &sub, &ve];
        let sde = sdes[which % 3];
        let weighting = if which < 3 { Weighting::SigmaSquared } else { Weighting::Likelihood };
        let x0 = normal(seed, n, d);
        let b = loss::perturb_sde(sde, x0.view(), 1e-3, &mut seeded(seed + 1)).unwrap();
        let eps_hat = normal(seed + 2, n, d);
        let mut want = 0.0;
        for i in 0..n {
            let t = b.t[i];
            let (m, sd) = (sde.mean_scale(t).unwrap(), sde.marginal_std(t).unwrap());
            let kernel_score = (&b.xt.row(i) - &(&b.x0.row(i) * m)) * (-1.0 / (sd * sd));
            let model = &eps_hat.row(i) * (-1.0 / sd);
            let lambda = match weighting {
                Weighting::SigmaSquared => sd * sd,
                Weighting::Likelihood => sde.diffusion(t).unwrap().powi(2),
            };
            want += lambda * sq((&model - &kernel_score).view());
        }
        want /= (n * d) as f64;
        close(eval(|g| loss::dsm(g, &tensor(&eps_hat), &b, sde, weighting)), want);
    }
}

/// NCSN DSM (000 eqs. 1.14-1.15, ledger A1.15) on a batch holding every level once equals
/// `1/L Σ_i sigma_i² l(theta; sigma_i)` with `l = ½ ‖s_theta(x̃, sigma) + (x̃ − x)/sigma²‖²`
/// and `s_theta = out / sigma` (the s(x)/sigma conditioning).
#[test]
fn ncsn_loss_equals_lambda_weighted_level_average() {
    let sig = SigmaSequence::geometric(10.0, 0.01, 10).unwrap();
    let l = sig.len();
    let d = 3;
    let x0 = normal(1, l, d);
    let eps = normal(2, l, d);
    let sigmas = sig.as_slice().to_vec();
    let b = loss::Perturbed::new(
        x0.clone(),
        eps,
        sigmas.clone(),
        vec![1.0; l],
        sigmas.clone(),
        (0..l).collect(),
    )
    .unwrap();
    let out = normal(3, l, d);
    let mut want = 0.0;
    for (i, &s) in sigmas.iter().enumerate() {
        let model = &out.row(i) / s;
        let r = &model + &((&b.xt.row(i) - &x0.row(i)) / (s * s));
        want += s * s * 0.5 * sq(r.view());
    }
    want /= l as f64 * d as f64;
    close(eval(|g| loss::ncsn_dsm(g, &tensor(&out), &b)), want);
}

/// Sliced score matching with the central-difference directional derivative is exact for an
/// affine score `s(x) = A x + c`: it equals `mean[vᵀ A v + ½ (vᵀ s(x))²] / d` computed in f64.
/// The score is evaluated through the graph (`linear`), as a network would be.
#[test]
fn sliced_score_matching_equals_projected_jacobian_formula_for_affine_score() {
    let (n, d) = (16, 4);
    let a = normal(10, d, d);
    let c: Vec<f64> = normal(11, 1, d).iter().copied().collect();
    let x = normal(12, n, d);
    let v = normal(13, n, d);
    let h = 0.05;
    let want: f64 = (0..n)
        .map(|i| {
            let vi = v.row(i);
            let s = a.dot(&x.row(i)) + ndarray::arr1(&c);
            vi.dot(&a.dot(&vi)) + 0.5 * vi.dot(&s).powi(2)
        })
        .sum::<f64>()
        / (n * d) as f64;
    let got = eval(|g| {
        let w = tensor(&a);
        let bias = Tensor::from_vec(&[d], c.iter().map(|&v| v as f32).collect())?;
        let xp = tensor(&(&x + &(&v * h)));
        let xm = tensor(&(&x - &(&v * h)));
        let sp = g.linear(&xp, &w, Some(&bias))?;
        let sm = g.linear(&xm, &w, Some(&bias))?;
        loss::sliced_score_matching(g, &sp, &sm, &v, h)
    });
    // f32: s(x ± hv) carry absolute rounding ~1e-6, the difference quotient divides by 2h = 0.1:
    // ~1e-5 absolute per row, far below the O(1) value.
    assert!(
        (got - want).abs() < 1e-3 * want.abs().max(1.0),
        "{got} vs {want}"
    );
}

/// The loss builders reject bad input with typed errors instead of panicking.
#[test]
fn objectives_reject_bad_input() {
    let s = BetaSchedule::linear(100, 1e-4, 0.02).unwrap();
    let x0 = normal(1, 4, 2);
    let b = loss::perturb_ddpm(&s, x0.view(), &mut seeded(2)).unwrap();
    let mut g = Graph::<f32>::new();
    // Wrong output shape.
    assert!(loss::ddpm_simple(&mut g, &tensor(&normal(3, 4, 3)), &b, Prediction::Eps).is_err());
    // Negative or non-finite weights.
    assert!(
        loss::weighted_squared_error(&mut g, &tensor(&x0), &x0, &[1.0, f64::NAN, 1.0, 1.0])
            .is_err()
    );
    assert!(loss::weighted_squared_error(&mut g, &tensor(&x0), &x0, &[1.0, 1.0]).is_err());
    // Posterior variance is 0 at t = 1.
    assert!(loss::vlb_weight(&s, 1, ReverseVariance::Posterior).is_err());
    assert!(loss::vlb_weight(&s, 1, ReverseVariance::Beta).is_ok());
    // t_eps outside (0, 1).
    let vp = VpSde::default();
    assert!(loss::perturb_sde(&vp, x0.view(), 0.0, &mut seeded(1)).is_err());
    assert!(loss::perturb_sde(&vp, x0.view(), 1.5, &mut seeded(1)).is_err());
    // Zero std and mismatched lengths.
    assert!(loss::Perturbed::new(
        x0.clone(),
        x0.clone(),
        vec![0.0; 4],
        vec![1.0; 4],
        vec![0.0; 4],
        vec![]
    )
    .is_err());
    assert!(loss::Perturbed::new(
        x0.clone(),
        x0.clone(),
        vec![0.0; 3],
        vec![1.0; 4],
        vec![1.0; 4],
        vec![]
    )
    .is_err());
    // Bad difference step.
    assert!(loss::sliced_score_matching(&mut g, &tensor(&x0), &tensor(&x0), &x0, 0.0).is_err());
}

/// The losses are differentiable end to end: the gradient of the eps loss with respect to the
/// output is `2 (out − eps) / (n d)`, checked against the closed form.
#[test]
fn eps_loss_gradient_is_twice_the_residual() {
    let s = BetaSchedule::linear(100, 1e-4, 0.02).unwrap();
    let (n, d) = (5, 3);
    let b = loss::perturb_ddpm(&s, normal(1, n, d).view(), &mut seeded(2)).unwrap();
    let out = normal(3, n, d);
    let mut g = Graph::<f32>::new();
    let leaf = g.leaf(out.mapv(|v| v as f32).into_dyn());
    let l = loss::ddpm_simple(&mut g, &leaf, &b, Prediction::Eps).unwrap();
    let grads = g.backward(&l).unwrap();
    let gr = grads.wrt(&leaf).unwrap();
    for ((o, e), gv) in out.iter().zip(b.eps.iter()).zip(gr.iter()) {
        let want = 2.0 * (o - e) / (n * d) as f64;
        assert!((*gv as f64 - want).abs() < 1e-6, "{gv} vs {want}");
    }
}

/// Ledger Dc31: the eps form of sliced score matching equals its score form. For a network
/// `e` with score `s = −e / sigma` and difference step `h = c sigma`, the score form
/// `lambda [vᵀ(s⁺ − s⁻)/(2h) + ½ (vᵀ s̄)²]` (weights `lambda`) and the eps form
/// `(lambda / sigma²) [−vᵀ(e⁺ − e⁻)/(2c) + ½ (vᵀ ē)²]` (weights `lambda / sigma²`) agree to
/// the `f32` tolerance of this file, at noise levels from 0.01 to 1 (where the score form
/// divides by small numbers). A weight of `lambda` instead of `lambda / sigma²` in the eps form
/// (the natural slip) is far off.
#[test]
fn ssm_eps_form_equals_score_form() {
    let (n, d) = (24, 3);
    let ep = normal(41, n, d);
    let em = &ep + &(normal(42, n, d) * 0.1);
    let v = normal(43, n, d);
    let sigma: Vec<f64> = (0..n)
        .map(|i| 0.01 * 100f64.powf(i as f64 / (n - 1) as f64))
        .collect();
    let lambda: Vec<f64> = (0..n).map(|i| 0.5 + (i % 5) as f64).collect();
    let c = 0.05;
    let mut sp = ep.clone();
    let mut sm = em.clone();
    for (i, &sg) in sigma.iter().enumerate() {
        sp.row_mut(i).mapv_inplace(|e| -e / sg);
        sm.row_mut(i).mapv_inplace(|e| -e / sg);
    }
    let h: Vec<f64> = sigma.iter().map(|s| c * s).collect();
    // The score form in f64, directly from its formula.
    let mut want = 0.0;
    for i in 0..n {
        let jac = v.row(i).dot(&(&sp.row(i) - &sm.row(i))) / (2.0 * h[i]);
        let mid = v.row(i).dot(&((&sp.row(i) + &sm.row(i)) * 0.5));
        want += lambda[i] * (jac + 0.5 * mid * mid);
    }
    want /= (n * d) as f64;
    let score_form = eval(|g| {
        loss::sliced_score_matching_weighted(g, &tensor(&sp), &tensor(&sm), &v, &h, &lambda)
    });
    close(score_form, want);
    let w: Vec<f64> = lambda
        .iter()
        .zip(&sigma)
        .map(|(l, s)| l / (s * s))
        .collect();
    let eps_form =
        eval(|g| loss::sliced_score_matching_eps(g, &tensor(&ep), &tensor(&em), &v, c, &w));
    close(eps_form, want);
    let wrong =
        eval(|g| loss::sliced_score_matching_eps(g, &tensor(&ep), &tensor(&em), &v, c, &lambda));
    assert!(
        (wrong - want).abs() > 0.1 * want.abs(),
        "weights lambda instead of lambda/sigma^2 should differ: {wrong} vs {want}"
    );
}
