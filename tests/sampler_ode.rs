//! The probability-flow ODE (ledger D13, A1.22, Ac47, Dc52, Dc54, Dc55), proven on exact
//! scores: every solver samples the mixture (energy test + CLT, twin rejected), the fixed-step
//! solvers converge at orders 1, 2, 4 against the closed-form Gaussian flow map, RK45 trades
//! NFE for accuracy within its tolerance, and encode/decode round-trips.

use ndarray::{array, Array2, ArrayView2};
use scoresde::gaussian::GaussianMixture;
use scoresde::rng::seeded;
use scoresde::sampler::ode::{
    integrate_fixed, integrate_rk45, FixedSolver, OdeMethod, ProbabilityFlow, Rk45Options,
};
use scoresde::sampler::Silent;
use scoresde::score::{Level, MixtureScore, ScoreModel};
use scoresde::sde::{ReverseSde, Sde, VpSde};
use scoresde::stats;
use scoresde::Error;

const ALPHA: f64 = 0.01;
const N: usize = 500;

/// Energy test (199 permutations, false-alarm rate 0.01) against 500 exact draws, and the
/// largest CLT z-score of the two mean entries (5-sigma bound, false-alarm rate 5.7e-7 each).
fn check(x: ArrayView2<f64>, mix: &GaussianMixture, seed: u64) -> (f64, f64) {
    let y = mix.sample_n(N, &mut seeded(seed));
    let t = stats::energy_test(x, y.view(), 199, seed + 1).unwrap();
    let (m, c, mx) = (mix.mean(), mix.covariance(), stats::mean(x));
    let n = x.nrows() as f64;
    let z = (0..2)
        .map(|i| (mx[i] - m[i]).abs() / (c[[i, i]] / n).sqrt())
        .fold(0.0, f64::max);
    println!(
        "p = {:.3}, z_mean = {z:.2}, energy = {:.5}",
        t.p_value, t.statistic
    );
    (t.p_value, z)
}

fn flow_samples(method: OdeMethod, seed: u64) -> Array2<f64> {
    let sde = VpSde::default();
    let model = MixtureScore::new(GaussianMixture::lopsided());
    let flow = ProbabilityFlow::new(&sde, &model, 1e-3).unwrap();
    flow.sample(N, method, &mut seeded(seed), &mut Silent)
        .unwrap()
        .x
}

/// Sampling by the PF-ODE with each solver produces the mixture (ledger Ac47, Dc04, Dc54):
/// Euler 500 steps, Heun 100, RK4 50, RK45 at rtol = atol = 1e-5. The step counts put the
/// discretisation error (measured in `fixed_step_solvers_converge_at_their_orders`) far below
/// the energy test's resolution.
#[test]
fn pf_ode_with_each_solver_samples_the_mixture() {
    let mix = GaussianMixture::lopsided();
    let methods = [
        OdeMethod::Fixed(FixedSolver::Euler, 500),
        OdeMethod::Fixed(FixedSolver::Heun, 100),
        OdeMethod::Fixed(FixedSolver::Rk4, 50),
        OdeMethod::Rk45(Rk45Options::new(1e-5, 1e-5).unwrap()),
    ];
    for (i, m) in methods.into_iter().enumerate() {
        let x = flow_samples(m, 30 + i as u64);
        let (p, z) = check(x.view(), &mix, 300 + i as u64);
        assert!(p > ALPHA && z < 5.0, "{m:?}: p = {p}, z = {z}");
    }
}

/// Twin: the ODE without the ½ (`f - g² s`, the reverse SDE's drift without its noise) is
/// rejected: it over-contracts every mode.
#[test]
fn twin_ode_without_the_half_is_rejected() {
    let sde = VpSde::default();
    let model = MixtureScore::new(GaussianMixture::lopsided());
    let rsde = ReverseSde::new(&sde, &model);
    let latent = sde.prior_sample(&mut seeded(40), N, 2);
    let mut f = |x: ArrayView2<f64>, t: f64| rsde.reverse_drift(x, t);
    let x = integrate_fixed(
        &mut f,
        latent.view(),
        1.0,
        1e-3,
        50,
        FixedSolver::Rk4,
        &mut Silent,
    )
    .unwrap()
    .x;
    let (p, z) = check(x.view(), &GaussianMixture::lopsided(), 400);
    assert!(p <= ALPHA || z >= 5.0, "twin not rejected: p = {p}");
}

/// The exact flow map for data `N(0, v I)` under a linear SDE. The marginal is
/// `N(0, (s(t)² v + sigma(t)²) I)`; the PF-ODE velocity `f(t) x + ½ g² x / (s² v + sigma²)`
/// is linear in `x`, so trajectories are `x(t) = c(t) x(T)`, and because the flow carries
/// `p_T` to `p_t`, `c(t) = sd(t) / sd(T)` with `sd(t) = sqrt(s(t)² v + sigma(t)²)`.
fn exact_gaussian_flow(sde: &dyn Sde, v: f64, x_t: f64, t_from: f64, t_to: f64) -> f64 {
    let sd = |t: f64| {
        let l = sde.level(t).unwrap();
        (l.scale * l.scale * v + l.std * l.std).sqrt()
    };
    x_t * sd(t_to) / sd(t_from)
}

fn gaussian_model(v: f64) -> MixtureScore {
    MixtureScore::new(GaussianMixture::ring(1, 0.0, v.sqrt()).unwrap())
}

/// Euler, Heun and RK4 converge at orders 1, 2, 4 against the closed-form Gaussian flow map
/// (ledger Dc54). With `e(h) = C h^p (1 + K h + ...)`, the observed order
/// `log2(e(h)/e(h/2)) = p + O(h)`: the check is that it is within 0.1 of `p` at the finest
/// pair and that its deviation shrinks as h halves (the O(h) term).
#[test]
fn fixed_step_solvers_converge_at_their_orders() {
    let sde = VpSde::default();
    let v = 0.25;
    let model = gaussian_model(v);
    let flow = ProbabilityFlow::new(&sde, &model, 1e-3).unwrap();
    let latent = array![[1.3, -0.7]];
    let exact = exact_gaussian_flow(&sde, v, 1.3, 1.0, 1e-3);
    for (solver, ns) in [
        (FixedSolver::Euler, [64usize, 128, 256, 512, 1024]),
        (FixedSolver::Heun, [16, 32, 64, 128, 256]),
        (FixedSolver::Rk4, [8, 16, 32, 64, 128]),
    ] {
        let errs: Vec<f64> = ns
            .iter()
            .map(|&n| {
                let x = flow
                    .decode(latent.view(), OdeMethod::Fixed(solver, n), &mut Silent)
                    .unwrap()
                    .x;
                (x[[0, 0]] - exact).abs()
            })
            .collect();
        let orders: Vec<f64> = errs.windows(2).map(|w| (w[0] / w[1]).log2()).collect();
        println!("{solver:?}: errors {errs:?}, orders {orders:?}");
        let p = solver.order() as f64;
        let dev: Vec<f64> = orders.iter().map(|o| (o - p).abs()).collect();
        assert!(
            dev[3] < 0.1,
            "{solver:?}: observed order {} vs {p}",
            orders[3]
        );
        assert!(
            dev[3] <= dev[1] + 1e-3,
            "{solver:?}: deviation does not shrink {dev:?}"
        );
    }
}

/// RK45 at a looser tolerance uses fewer NFE (ledger Dc55), and at each tolerance the global
/// error stays within `steps × (atol + rtol |x|)`: each accepted step's local error is below
/// `atol + rtol |x|` (RMS-weighted), and the decoding flow `x(t) = c(t) x(T)` with
/// `c = sd(eps)/sd(t) <= 1` (sd increases with t for v <= 1) does not amplify earlier errors.
#[test]
fn rk45_looser_tolerance_uses_fewer_nfe_within_tolerance() {
    let sde = VpSde::default();
    let v = 0.25;
    let model = gaussian_model(v);
    let flow = ProbabilityFlow::new(&sde, &model, 1e-3).unwrap();
    let latent = array![[1.3, -0.7]];
    let exact = exact_gaussian_flow(&sde, v, 1.3, 1.0, 1e-3);
    let mut last_nfe = 0;
    for tol in [1e-9, 1e-6, 1e-3] {
        let sol = flow
            .decode(
                latent.view(),
                OdeMethod::Rk45(Rk45Options::new(tol, tol).unwrap()),
                &mut Silent,
            )
            .unwrap();
        let err = (sol.x[[0, 0]] - exact).abs();
        let bound = sol.steps as f64 * (tol + tol * 1.3);
        println!(
            "tol {tol:e}: NFE {}, steps {}, rejected {}, error {err:e}",
            sol.nfe, sol.steps, sol.rejected
        );
        assert!(err <= bound, "tol {tol}: error {err} > {bound}");
        if last_nfe > 0 {
            assert!(
                sol.nfe < last_nfe,
                "looser tolerance used {} >= {last_nfe} NFE",
                sol.nfe
            );
        }
        last_nfe = sol.nfe;
    }
}

/// RK45 matches the closed form `x(t) = x0 exp(-t)` of `dx/dt = -x` to its tolerance (the
/// Dormand-Prince tableau is right) and integrates backwards as well as forwards.
#[test]
fn rk45_solves_linear_decay() {
    let mut f = |x: ArrayView2<f64>, _t: f64| Ok(x.mapv(|v| -v));
    let x0 = array![[1.0, 2.0]];
    let o = Rk45Options::new(1e-10, 1e-12).unwrap();
    let fwd = integrate_rk45(&mut f, x0.view(), 0.0, 3.0, o).unwrap();
    let back = integrate_rk45(&mut f, fwd.x.view(), 3.0, 0.0, o).unwrap();
    // Local errors <= 1e-10 relative per step; a few dozen steps: 1e-8 is a safe global bound.
    assert!((fwd.x[[0, 1]] - 2.0 * (-3.0f64).exp()).abs() < 1e-8 * 2.0);
    assert!((back.x[[0, 0]] - 1.0).abs() < 1e-8);
}

/// Encoding data to latents and decoding back recovers the data (ledger Dc52): RK45 at
/// rtol = atol = 1e-9; the round-trip error is the sum of both solves' global errors, each at
/// most `steps × 2e-9 × max|x|` by the argument of the test above, amplified by the decoding
/// Jacobian (at most `sd(eps)/sd(T)`-like factors of order 1 for this mixture): 1e-5 leaves a
/// wide margin. Also the latents of mixture data look like the prior (energy test).
#[test]
fn encode_decode_round_trips() {
    let sde = VpSde::default();
    let mix = GaussianMixture::lopsided();
    let model = MixtureScore::new(mix.clone());
    let flow = ProbabilityFlow::new(&sde, &model, 1e-3).unwrap();
    let x = mix.sample_n(200, &mut seeded(50));
    let o = OdeMethod::Rk45(Rk45Options::new(1e-9, 1e-9).unwrap());
    let z = flow.encode(x.view(), o, &mut Silent).unwrap();
    let back = flow.decode(z.x.view(), o, &mut Silent).unwrap();
    let err = (&back.x - &x).iter().fold(0.0f64, |m, v| m.max(v.abs()));
    println!("round-trip max error {err:e}, NFE {} + {}", z.nfe, back.nfe);
    assert!(err < 1e-5);
    let prior = sde.prior_sample(&mut seeded(51), 200, 2);
    let t = stats::energy_test(z.x.view(), prior.view(), 199, 52).unwrap();
    assert!(
        t.p_value > ALPHA,
        "latents are not N(0, I): p = {}",
        t.p_value
    );
}

/// Bad input returns typed errors: eps outside [0, T), zero steps, equal end times, bad
/// tolerances, a non-finite score, a wrong shape.
#[test]
fn bad_input_returns_typed_errors() {
    let sde = VpSde::default();
    let model = gaussian_model(1.0);
    assert!(matches!(
        ProbabilityFlow::new(&sde, &model, 1.0),
        Err(Error::InvalidParameter { .. })
    ));
    assert!(matches!(
        ProbabilityFlow::new(&sde, &model, f64::NAN),
        Err(Error::InvalidParameter { .. })
    ));
    assert!(matches!(
        Rk45Options::new(0.0, 1e-3),
        Err(Error::InvalidParameter { .. })
    ));
    let flow = ProbabilityFlow::new(&sde, &model, 1e-3).unwrap();
    let x = array![[0.1, 0.2]];
    let r = flow.decode(x.view(), OdeMethod::Fixed(FixedSolver::Rk4, 0), &mut Silent);
    assert!(matches!(r, Err(Error::InvalidParameter { .. })));
    let r = flow.decode(
        array![[0.1, 0.2, 0.3]].view(),
        OdeMethod::Fixed(FixedSolver::Rk4, 4),
        &mut Silent,
    );
    assert!(matches!(r, Err(Error::Shape(_))));
    struct Nan;
    impl ScoreModel for Nan {
        fn dim(&self) -> usize {
            2
        }
        fn score(&self, x: ArrayView2<f64>, _l: Level) -> Array2<f64> {
            Array2::from_elem(x.dim(), f64::NAN)
        }
    }
    let flow = ProbabilityFlow::new(&sde, &Nan, 1e-3).unwrap();
    for m in [
        OdeMethod::Fixed(FixedSolver::Euler, 4),
        OdeMethod::Rk45(Rk45Options::new(1e-3, 1e-3).unwrap()),
    ] {
        assert!(matches!(
            flow.decode(x.view(), m, &mut Silent),
            Err(Error::NonFinite(_))
        ));
    }
    let mut f = |x: ArrayView2<f64>, _t: f64| Ok(x.to_owned());
    assert!(integrate_fixed(
        &mut f,
        x.view(),
        0.5,
        0.5,
        4,
        FixedSolver::Euler,
        &mut Silent
    )
    .is_err());
}
