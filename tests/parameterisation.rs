//! Conversions between eps, x0, score and v predictions at a level `x = s x0 + sigma eps`:
//! every conversion of a true prediction gives the other true predictions (built independently
//! from x0 and eps), conversions round-trip, the score form agrees with the DDPM kernel score,
//! Tweedie's formula holds for Gaussian data, and bad levels are typed errors.

use ndarray::{array, Array2};
use proptest::prelude::*;
use scoresde::chain::ddpm::Ddpm;
use scoresde::chain::param::{
    convert, eps_from_score, eps_from_v, eps_from_x0, score_from_eps, v_from_eps, x0_from_eps,
    x0_from_score, x0_from_v, Prediction,
};
use scoresde::schedule::beta::BetaSchedule;
use scoresde::score::Level;
use scoresde::Error;

const EPS: f64 = f64::EPSILON;

fn max_abs(a: &Array2<f64>) -> f64 {
    a.iter().fold(0.0, |m, x| m.max(x.abs()))
}

fn batch() -> impl Strategy<Value = Array2<f64>> {
    prop::collection::vec(-3.0f64..3.0, 6).prop_map(|v| Array2::from_shape_vec((2, 3), v).unwrap())
}

fn level() -> impl Strategy<Value = Level> {
    (0.05f64..2.0, 0.05f64..5.0).prop_map(|(scale, std)| Level { t: 0.0, scale, std })
}

/// The four true predictions for x = s x0 + sigma eps, from their definitions.
fn truths(x0: &Array2<f64>, eps: &Array2<f64>, l: Level) -> [(Prediction, Array2<f64>); 4] {
    [
        (Prediction::Eps, eps.clone()),
        (Prediction::X0, x0.clone()),
        (Prediction::Score, eps.mapv(|e| -e / l.std)),
        (Prediction::V, eps * l.scale - x0 * l.std),
    ]
}

/// Rounding bound for a conversion at a level: every map is linear with coefficients bounded by
/// `k = 1 + s + sigma + 1/s + 1/sigma` (the V inversion divides by `s^2 + sigma^2`, whose
/// reciprocal is below `k^2`), two maps compose, and the inputs are below `1 + 3k` in size, so
/// `64 eps k^4 (1 + 3k)` is a safe bound on the absolute error.
fn tol(l: Level) -> f64 {
    let k = 1.0 + l.scale + l.std + 1.0 / l.scale + 1.0 / l.std;
    64.0 * EPS * k.powi(4) * (1.0 + 3.0 * k)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Converting any true prediction (eps, x0, score = -eps/sigma, v = s eps - sigma x0) into any
    /// other kind gives the true value of that kind, for arbitrary scale and std (no
    /// s^2 + sigma^2 = 1 assumption), through `convert` and the named shorthands.
    #[test]
    fn true_predictions_convert_into_each_other(x0 in batch(), eps in batch(), l in level()) {
        let x = &x0 * l.scale + &eps * l.std;
        let all = truths(&x0, &eps, l);
        for (from, p) in &all {
            for (to, q) in &all {
                let got = convert(x.view(), p.view(), *from, *to, l).unwrap();
                prop_assert!(max_abs(&(&got - q)) < tol(l), "{:?} -> {:?}", from, to);
            }
        }
        let (e, x0t, sc, v) = (&all[0].1, &all[1].1, &all[2].1, &all[3].1);
        prop_assert!(max_abs(&(score_from_eps(x.view(), e.view(), l).unwrap() - sc)) < tol(l));
        prop_assert!(max_abs(&(eps_from_score(x.view(), sc.view(), l).unwrap() - e)) < tol(l));
        prop_assert!(max_abs(&(x0_from_eps(x.view(), e.view(), l).unwrap() - x0t)) < tol(l));
        prop_assert!(max_abs(&(eps_from_x0(x.view(), x0t.view(), l).unwrap() - e)) < tol(l));
        prop_assert!(max_abs(&(x0_from_score(x.view(), sc.view(), l).unwrap() - x0t)) < tol(l));
        prop_assert!(max_abs(&(v_from_eps(x.view(), e.view(), l).unwrap() - v)) < tol(l));
        prop_assert!(max_abs(&(eps_from_v(x.view(), v.view(), l).unwrap() - e)) < tol(l));
        prop_assert!(max_abs(&(x0_from_v(x.view(), v.view(), l).unwrap() - x0t)) < tol(l));
    }

    /// Every conversion is invertible: from -> to -> from returns an arbitrary prediction (not
    /// only a true one) at an arbitrary point.
    #[test]
    fn conversions_round_trip(x in batch(), p in batch(), l in level()) {
        for from in Prediction::ALL {
            for to in Prediction::ALL {
                let q = convert(x.view(), p.view(), from, to, l).unwrap();
                let back = convert(x.view(), q.view(), to, from, l).unwrap();
                prop_assert!(max_abs(&(&back - &p)) < 4.0 * tol(l));
            }
        }
    }

    /// On a variance-preserving level (s^2 + sigma^2 = 1) (x, v) is a rotation of (x0, eps):
    /// x0 = s x - sigma v, eps = sigma x + s v, and |x|^2 + |v|^2 = |x0|^2 + |eps|^2.
    #[test]
    fn v_is_a_rotation_on_variance_preserving_levels(x0 in batch(), eps in batch(), angle in 0.05f64..1.5) {
        let l = Level { t: 0.0, scale: angle.cos(), std: angle.sin() };
        let x = &x0 * l.scale + &eps * l.std;
        let v = v_from_eps(x.view(), eps.view(), l).unwrap();
        let x0r = &x * l.scale - &v * l.std;
        let er = &x * l.std + &v * l.scale;
        prop_assert!(max_abs(&(&x0r - &x0)) < tol(l));
        prop_assert!(max_abs(&(&er - &eps)) < tol(l));
        let lhs = x.mapv(|a| a * a).sum() + v.mapv(|a| a * a).sum();
        let rhs = x0.mapv(|a| a * a).sum() + eps.mapv(|a| a * a).sum();
        prop_assert!((lhs - rhs).abs() < 1e3 * tol(l));
    }

    /// The score form at a DDPM level equals the DDPM kernel score grad ln q(x_t|x_0) (computed by
    /// the chain module from x0 and x_t, not from eps).
    #[test]
    fn score_from_eps_equals_ddpm_kernel_score(x0 in batch(), eps in batch(), t in 1usize..50) {
        let ddpm = Ddpm::new(BetaSchedule::linear(50, 1e-3, 0.05).unwrap());
        let l = ddpm.schedule().level(t).unwrap();
        let xt = ddpm.marginal_sample(x0.view(), t, eps.view()).unwrap();
        let a = score_from_eps(xt.view(), eps.view(), l).unwrap();
        let b = ddpm.marginal_score(x0.view(), xt.view(), t).unwrap();
        prop_assert!(max_abs(&(&a - &b)) < 1e-12 / (l.std * l.std));
    }

    /// Tweedie: for data N(m, v) per coordinate, x0_from_score applied to the exact marginal
    /// score -(x - s m)/(s^2 v + sigma^2) gives the Bayesian posterior mean E[x0|x] =
    /// m + s v (x - s m)/(s^2 v + sigma^2) (the conditional Gaussian formula).
    #[test]
    fn x0_from_exact_marginal_score_is_the_posterior_mean(
        x in batch(), m in -2.0f64..2.0, v in 0.01f64..4.0, l in level(),
    ) {
        let var = l.scale * l.scale * v + l.std * l.std;
        let score = x.mapv(|xi| -(xi - l.scale * m) / var);
        let x0 = x0_from_score(x.view(), score.view(), l).unwrap();
        let post = x.mapv(|xi| m + l.scale * v * (xi - l.scale * m) / var);
        prop_assert!(max_abs(&(&x0 - &post)) < tol(l) * (1.0 + v + 1.0 / var));
    }
}

/// Levels with a zero, negative or non-finite scale or std, and mismatched shapes, are typed
/// errors.
#[test]
fn invalid_levels_and_shapes_are_typed_errors() {
    let x = array![[1.0, 2.0]];
    for (scale, std) in [
        (0.0, 1.0),
        (1.0, 0.0),
        (-1.0, 1.0),
        (f64::NAN, 1.0),
        (1.0, f64::INFINITY),
    ] {
        let l = Level { t: 0.0, scale, std };
        for to in Prediction::ALL {
            assert!(matches!(
                convert(x.view(), x.view(), Prediction::Eps, to, l),
                Err(Error::InvalidParameter { name: "level", .. })
            ));
        }
    }
    let l = Level {
        t: 0.0,
        scale: 1.0,
        std: 1.0,
    };
    assert!(matches!(
        convert(
            x.view(),
            array![[1.0]].view(),
            Prediction::X0,
            Prediction::V,
            l
        ),
        Err(Error::Shape(_))
    ));
}
