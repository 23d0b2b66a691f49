//! Tests of the sigma sequences (`scoresde::schedule::sigma`) and the SMLD forward process
//! (`scoresde::chain::smld`): 000 text before eq. 1.14, 003 eq. 1 and §3.4.

use ndarray::{Array1, Array2};
use proptest::prelude::*;
use scoresde::chain::smld::*;
use scoresde::rng::{self, NoiseSource};
use scoresde::schedule::sigma::SigmaSequence;
use scoresde::Error;

// ---------------------------------------------------------------------------------------------
// Sigma sequences.

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// A geometric sequence is strictly decreasing from sigma_max to sigma_min (exactly), every
    /// ratio sigma_{i-1}/sigma_i equals `(sigma_max/sigma_min)^{1/(L-1)}` and the ratios
    /// multiply to sigma_max/sigma_min. Each sigma is exp of an interpolated log (relative
    /// error ~ |ln sigma| * 2e-16 <= 1e-14), so ratios agree to 1e-13 and the product of up to
    /// 300 ratios to 300 * 1e-13.
    #[test]
    fn geometric_sequence_has_constant_ratio_and_exact_ends(
        smax in 0.01f64..100.0, span in 1.001f64..1e5, l in 2usize..300
    ) {
        let smin = smax / span;
        let s = SigmaSequence::geometric(smax, smin, l).unwrap();
        prop_assert_eq!(s.len(), l);
        prop_assert_eq!(s.sigma(1), Some(smax));
        prop_assert_eq!(s.sigma(l), Some(smin));
        prop_assert_eq!(s.sigma(0), None);
        prop_assert_eq!(s.sigma(l + 1), None);
        let gamma = span.powf(1.0 / (l - 1) as f64);
        let ratios = s.ratios();
        prop_assert_eq!(ratios.len(), l - 1);
        for r in &ratios {
            prop_assert!(*r > 1.0);
            prop_assert!((r / gamma - 1.0).abs() < 1e-13);
        }
        prop_assert!((s.gamma().unwrap() / gamma - 1.0).abs() < 1e-13);
        let prod: f64 = ratios.iter().product();
        prop_assert!((prod / span - 1.0).abs() < 3e-11);
    }
}

/// `ascending` is document 003's order: the reverse of document 000's (sigma_1 largest).
#[test]
fn ascending_is_document_003_order() {
    let s = SigmaSequence::from_sigmas(vec![5.0, 2.0, 0.5]).unwrap();
    assert_eq!(s.ascending(), vec![0.5, 2.0, 5.0]);
    assert_eq!(s.sigma_max(), 5.0);
    assert_eq!(s.sigma_min(), 0.5);
    assert_eq!(s.gamma(), Some(10f64.sqrt()));
    let one = SigmaSequence::from_sigmas(vec![1.0]).unwrap();
    assert_eq!(one.gamma(), None);
}

/// Every invalid schedule is an `Error::InvalidSchedule`: L < 2 for `geometric`, L = 0, NaN,
/// infinite, zero or negative sigmas, sigma_min >= sigma_max, increasing or repeated sigmas.
#[test]
fn sigma_sequences_reject_invalid_schedules() {
    let bad = |r: scoresde::Result<SigmaSequence>| matches!(r, Err(Error::InvalidSchedule(_)));
    assert!(bad(SigmaSequence::geometric(1.0, 0.1, 1)));
    assert!(bad(SigmaSequence::geometric(1.0, 0.1, 0)));
    assert!(bad(SigmaSequence::geometric(0.1, 1.0, 5)));
    assert!(bad(SigmaSequence::geometric(1.0, 1.0, 5)));
    assert!(bad(SigmaSequence::geometric(1.0, 0.0, 5)));
    assert!(bad(SigmaSequence::geometric(1.0, -0.1, 5)));
    assert!(bad(SigmaSequence::geometric(f64::NAN, 0.1, 5)));
    assert!(bad(SigmaSequence::geometric(f64::INFINITY, 0.1, 5)));
    assert!(bad(SigmaSequence::from_sigmas(vec![])));
    assert!(bad(SigmaSequence::from_sigmas(vec![1.0, f64::NAN])));
    assert!(bad(SigmaSequence::from_sigmas(vec![1.0, 0.0])));
    assert!(bad(SigmaSequence::from_sigmas(vec![0.1, 1.0])));
    assert!(bad(SigmaSequence::from_sigmas(vec![1.0, 0.5, 0.5])));
    assert!(bad(SigmaSequence::from_sigmas(vec![1.0, 0.5, 0.7])));
}

// ---------------------------------------------------------------------------------------------
// The perturbation kernel.

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    /// The kernel score `-(x~ - x)/sigma^2` equals the central finite difference of the kernel's
    /// log density. The log density is quadratic in x~, so the difference has no truncation
    /// error; its rounding error is ~2e-16 |log p| / h with h = 1e-3 sigma and |log p| <= 1e3,
    /// i.e. <= 2e-10 / sigma; relative to the score's scale 1/sigma we allow 1e-8.
    #[test]
    fn kernel_score_is_gradient_of_kernel_log_density(
        sigma in 0.05f64..5.0, seed in 0u64..1000, d in 1usize..4
    ) {
        let mut g = rng::seeded(seed);
        let mut x = Array2::<f64>::zeros((3, d));
        g.fill_normal(x.as_slice_mut().unwrap());
        let xt = perturb(x.view(), sigma, &mut g).unwrap();
        let s = kernel_score(xt.view(), x.view(), sigma).unwrap();
        let h = 1e-3 * sigma;
        for j in 0..d {
            let (mut up, mut dn) = (xt.clone(), xt.clone());
            up.column_mut(j).mapv_inplace(|v| v + h);
            dn.column_mut(j).mapv_inplace(|v| v - h);
            let fd: Array1<f64> = (kernel_log_density(up.view(), x.view(), sigma).unwrap()
                - kernel_log_density(dn.view(), x.view(), sigma).unwrap()) / (2.0 * h);
            for i in 0..3 {
                prop_assert!((fd[i] - s[[i, j]]).abs() < 1e-8 / sigma, "{} vs {}", fd[i], s[[i, j]]);
            }
        }
    }
}

/// The kernel density is normalised: Simpson quadrature (4000 panels over x +- 12 sigma; the
/// tails beyond hold 2e-33 and Simpson's error on a Gaussian with h = 0.006 sigma is < 1e-12)
/// gives 1, in 1-D, for several sigma.
#[test]
fn kernel_density_integrates_to_one() {
    for sigma in [0.01, 0.7, 30.0] {
        let x0 = 1.3;
        let (a, b, n) = (x0 - 12.0 * sigma, x0 + 12.0 * sigma, 4000);
        let h = (b - a) / n as f64;
        let grid = Array2::from_shape_fn((n + 1, 1), |(k, _)| a + k as f64 * h);
        let x = Array2::from_elem((n + 1, 1), x0);
        let p = kernel_log_density(grid.view(), x.view(), sigma)
            .unwrap()
            .mapv(f64::exp);
        let mut s = p[0] + p[n];
        for k in 1..n {
            s += if k % 2 == 1 { 4.0 } else { 2.0 } * p[k];
        }
        let total = s * h / 3.0;
        assert!((total - 1.0).abs() < 1e-10, "sigma={sigma}: {total}");
    }
}

/// Sample variance of `n` i.i.d. N(0, s^2) draws has sd `s^2 sqrt(2/(n-1))`; a 5-sd two-sided
/// check has false-alarm 5.7e-7 per use.
fn variance_ok(sample_var: f64, expected: f64, n: usize) -> bool {
    (sample_var - expected).abs() < 5.0 * expected * (2.0 / (n - 1) as f64).sqrt()
}

fn perturbation_sample_variance(sigma: f64, n: usize, seed: u64) -> f64 {
    let x = Array2::<f64>::from_elem((n, 1), 3.0);
    let xt = perturb(x.view(), sigma, &mut rng::seeded(seed)).unwrap();
    let d = &xt - &x;
    d.iter().map(|v| v * v).sum::<f64>() / n as f64 // known mean 0: divide by n
}

/// Monte Carlo: `x~ = x + sigma z` has variance sigma^2 (sigma is a standard deviation). The
/// statistic uses the known mean, so its sd is `sigma^2 sqrt(2/n)`, within the helper's bound.
#[test]
fn perturbation_has_variance_sigma_squared() {
    let n = 50_000;
    for (sigma, seed) in [(2.0, 1u64), (0.3, 2)] {
        let v = perturbation_sample_variance(sigma, n, seed);
        assert!(variance_ok(v, sigma * sigma, n), "sigma={sigma}: {v}");
    }
}

/// Twin (erratum: 000 calls sigma_i "the variance" of the Gaussian): the same check rejects
/// "variance = sigma" for sigma = 2 and 0.3.
#[test]
fn perturbation_variance_is_not_sigma() {
    let n = 50_000;
    for (sigma, seed) in [(2.0, 1u64), (0.3, 2)] {
        let v = perturbation_sample_variance(sigma, n, seed);
        assert!(!variance_ok(v, sigma, n), "sigma={sigma}: {v}");
    }
}

/// Shapes must agree and sigma must be positive.
#[test]
fn kernel_functions_reject_bad_input() {
    let a = Array2::<f64>::zeros((2, 3));
    let b = Array2::<f64>::zeros((2, 2));
    assert!(matches!(
        kernel_score(a.view(), b.view(), 1.0),
        Err(Error::Shape(_))
    ));
    assert!(matches!(
        kernel_log_density(a.view(), b.view(), 1.0),
        Err(Error::Shape(_))
    ));
    for s in [0.0, -1.0, f64::NAN] {
        assert!(matches!(
            kernel_score(a.view(), a.view(), s),
            Err(Error::InvalidParameter { .. })
        ));
        assert!(matches!(
            perturb(a.view(), s, &mut rng::seeded(0)),
            Err(Error::InvalidParameter { .. })
        ));
    }
}

// ---------------------------------------------------------------------------------------------
// The SMLD chain.

/// Per-coordinate sample means and variances of every step of a chain run on `n` copies of x0,
/// given a step function (so the same statistic checks the right and a wrong chain).
fn chain_moments(
    sigmas: &[f64],
    x0: &[f64],
    n: usize,
    seed: u64,
    increment: impl Fn(usize) -> f64,
) -> Vec<(Vec<f64>, Vec<f64>)> {
    let d = x0.len();
    let mut g = rng::seeded(seed);
    let mut x = Array2::from_shape_fn((n, d), |(_, j)| x0[j]);
    let mut z = Array2::<f64>::zeros((n, d));
    let mut out = vec![];
    for k in 1..=sigmas.len() {
        g.fill_normal(z.as_slice_mut().unwrap());
        x = &x + &(&z * increment(k));
        let mean: Vec<f64> = (0..d).map(|j| x.column(j).sum() / n as f64).collect();
        let var: Vec<f64> = (0..d)
            .map(|j| {
                x.column(j)
                    .iter()
                    .map(|v| (v - mean[j]).powi(2))
                    .sum::<f64>()
                    / (n - 1) as f64
            })
            .collect();
        out.push((mean, var));
    }
    out
}

/// Does every step's marginal match N(x0, sigma_k^2 I)? Mean: sd sigma_k/sqrt n; variance: sd
/// sigma_k^2 sqrt(2/(n-1)); both at 5 sd. With 4 steps x 2 coordinates x 2 statistics = 16
/// checks the family-wise false-alarm rate is below 16 * 5.7e-7 = 1e-5.
fn marginals_match(moments: &[(Vec<f64>, Vec<f64>)], asc: &[f64], x0: &[f64], n: usize) -> bool {
    moments.iter().zip(asc).all(|((mean, var), &s)| {
        (0..x0.len()).all(|j| {
            (mean[j] - x0[j]).abs() < 5.0 * s / (n as f64).sqrt() && variance_ok(var[j], s * s, n)
        })
    })
}

const CHAIN_N: usize = 40_000;

fn chain_setup() -> (SigmaSequence, Vec<f64>) {
    (
        SigmaSequence::from_sigmas(vec![10.0, 3.0, 1.0, 0.2]).unwrap(),
        vec![1.5, -0.5],
    )
}

/// Monte Carlo: the chain `x_k = x_{k-1} + sqrt(sigma_k^2 - sigma_{k-1}^2) z` (003 §3.4) has
/// marginal N(x0, sigma_k^2 I) at every step, i.e. its marginals are the SMLD perturbation
/// kernels. Uses `SmldChain::increment_std`; a separate run through `SmldChain::run` checks the
/// last step the same way.
#[test]
fn smld_chain_marginals_are_the_perturbation_kernels() {
    let (s, x0) = chain_setup();
    let chain = SmldChain::new(&s);
    let asc = s.ascending();
    let m = chain_moments(&asc, &x0, CHAIN_N, 5, |k| chain.increment_std(k).unwrap());
    assert!(marginals_match(&m, &asc, &x0, CHAIN_N));
    let start = Array2::from_shape_fn((CHAIN_N, 2), |(_, j)| x0[j]);
    let traj = chain.run(start.view(), &mut rng::seeded(6)).unwrap();
    assert_eq!(traj.len(), 4);
    for (k, xk) in traj.iter().enumerate() {
        let sk = chain.marginal_std(k + 1).unwrap();
        for (j, &x0j) in x0.iter().enumerate() {
            let col = xk.column(j);
            let mean = col.sum() / CHAIN_N as f64;
            let var = col.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (CHAIN_N - 1) as f64;
            assert!((mean - x0j).abs() < 5.0 * sk / (CHAIN_N as f64).sqrt());
            assert!(
                variance_ok(var, sk * sk, CHAIN_N),
                "step {k}: {var} vs {}",
                sk * sk
            );
        }
    }
}

/// Twin: the same check rejects a chain that adds standard deviations linearly,
/// `x_k = x_{k-1} + (sigma_k - sigma_{k-1}) z` (variances, not standard deviations, add).
#[test]
fn smld_chain_check_rejects_linear_std_increments() {
    let (s, x0) = chain_setup();
    let asc = s.ascending();
    let prev = |k: usize| if k == 1 { 0.0 } else { asc[k - 2] };
    let m = chain_moments(&asc, &x0, CHAIN_N, 5, |k| asc[k - 1] - prev(k));
    assert!(!marginals_match(&m, &asc, &x0, CHAIN_N));
}

/// Step 0 and steps beyond N are rejected with a typed error; sigma_0 = 0.
#[test]
fn smld_chain_rejects_bad_step() {
    let (s, _) = chain_setup();
    let chain = SmldChain::new(&s);
    assert_eq!(chain.sigma(0), Some(0.0));
    assert_eq!(chain.increment_std(0), None);
    assert_eq!(chain.increment_std(5), None);
    let x = Array2::<f64>::zeros((1, 2));
    for k in [0, 5] {
        assert!(matches!(
            chain.step(x.view(), k, &mut rng::seeded(0)),
            Err(Error::InvalidParameter { .. })
        ));
    }
}

// ---------------------------------------------------------------------------------------------
// sigma_L must be small (erratum: 000 prints "sigma_L should be large enough").

/// KL(p_data || q_sigma) by Simpson quadrature over [-12, 12] (20 000 panels) for 1-D data
/// 0.5 N(-2, 0.25) + 0.5 N(2, 0.25), whose perturbed density is the same mixture with variances
/// 0.25 + sigma^2.
fn kl_data_to_perturbed(sigma: f64) -> f64 {
    let mix = |x: f64, v: f64| {
        let g = |m: f64| {
            (-(x - m) * (x - m) / (2.0 * v)).exp() / (2.0 * std::f64::consts::PI * v).sqrt()
        };
        0.5 * g(-2.0) + 0.5 * g(2.0)
    };
    let f = |x: f64| {
        let p = mix(x, 0.25);
        if p < 1e-300 {
            0.0
        } else {
            p * (p / mix(x, 0.25 + sigma * sigma)).ln()
        }
    };
    let (a, b, n) = (-12.0, 12.0, 20_000);
    let h = (b - a) / n as f64;
    let mut s = f(a) + f(b);
    for k in 1..n {
        s += if k % 2 == 1 { 4.0 } else { 2.0 } * f(a + k as f64 * h);
    }
    s * h / 3.0
}

/// With sigma_L = 0.01 (the document's value) the perturbed density is within KL 1e-7 of the
/// data: by joint convexity KL is at most the per-component Gaussian KL
/// `(v/(v+s^2) - 1 + ln(1 + s^2/v))/2 ~ (s^2/v)^2/4 = 4e-8` (v = 0.25), so sampling
/// the last level samples the data; with a large sigma_L (= 3, "large enough") it is far
/// (KL > 0.1), so the printed "sigma_L should be large enough" is wrong: it must be small.
#[test]
fn small_sigma_l_makes_perturbed_density_match_data() {
    let small = kl_data_to_perturbed(0.01);
    assert!((-1e-12..1e-7).contains(&small), "{small}");
    let large = kl_data_to_perturbed(3.0);
    assert!(large > 0.1, "{large}");
}
