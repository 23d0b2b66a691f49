//! The statistical checks themselves: the energy test accepts equal distributions at about its
//! false-alarm rate and rejects a shifted or rescaled one.

use ndarray::Array2;
use scoresde::rng::{seeded, NoiseSource};
use scoresde::stats::{energy_distance, energy_test, normal_quantile_two_sided};

fn normal_sample(n: usize, d: usize, shift: f64, scale: f64, seed: u64) -> Array2<f64> {
    let mut r = seeded(seed);
    let mut v = vec![0.0; n * d];
    r.fill_normal(&mut v);
    Array2::from_shape_vec((n, d), v)
        .unwrap()
        .mapv(|z| shift + scale * z)
}

/// Energy distance is zero for identical samples and symmetric.
#[test]
fn energy_distance_is_zero_on_identical_samples_and_symmetric() {
    let x = normal_sample(50, 2, 0.0, 1.0, 1);
    let y = normal_sample(60, 2, 0.3, 1.0, 2);
    assert!(energy_distance(x.view(), x.view()).unwrap().abs() < 1e-12);
    let a = energy_distance(x.view(), y.view()).unwrap();
    let b = energy_distance(y.view(), x.view()).unwrap();
    assert!((a - b).abs() < 1e-12 * a.abs().max(1.0));
}

/// Under the null the test rejects at most at its nominal rate: over 40 independent pairs of
/// equal-distribution samples at alpha = 0.05, the number of rejections is Binomial(40, <=0.05);
/// P(Binomial(40, 0.05) >= 8) < 1e-3, so 8 or more rejections would be a failure of the test.
#[test]
fn energy_test_holds_its_false_alarm_rate_under_the_null() {
    let mut rejections = 0;
    for k in 0..40 {
        let x = normal_sample(40, 2, 0.0, 1.0, 100 + k);
        let y = normal_sample(40, 2, 0.0, 1.0, 200 + k);
        if energy_test(x.view(), y.view(), 99, k)
            .unwrap()
            .rejects(0.05)
        {
            rejections += 1;
        }
    }
    assert!(rejections < 8, "{rejections} of 40 null pairs rejected");
}

/// Twin: a shift of half a standard deviation, or a 1.5x scale, with 300 points per sample is
/// rejected at alpha = 0.01.
#[test]
fn energy_test_rejects_shifted_and_rescaled_samples() {
    let x = normal_sample(300, 2, 0.0, 1.0, 7);
    let y = normal_sample(300, 2, 0.5, 1.0, 8);
    assert!(energy_test(x.view(), y.view(), 199, 3)
        .unwrap()
        .rejects(0.01));
    let z = normal_sample(300, 2, 0.0, 1.5, 9);
    assert!(energy_test(x.view(), z.view(), 199, 4)
        .unwrap()
        .rejects(0.01));
}

/// The two-sided normal quantile matches known values (1.959964 for 5%, 3.290527 for 0.1%).
#[test]
fn normal_quantile_matches_tables() {
    assert!((normal_quantile_two_sided(0.05).unwrap() - 1.959_963_985).abs() < 1e-8);
    assert!((normal_quantile_two_sided(0.001).unwrap() - 3.290_526_731).abs() < 1e-8);
    assert!(normal_quantile_two_sided(0.0).is_err());
}

/// Bad input is a typed error, not a panic.
#[test]
fn energy_test_rejects_bad_input() {
    let x = normal_sample(10, 2, 0.0, 1.0, 1);
    let y = normal_sample(10, 3, 0.0, 1.0, 2);
    assert!(energy_test(x.view(), y.view(), 10, 0).is_err());
    let mut z = normal_sample(10, 2, 0.0, 1.0, 3);
    z[[0, 0]] = f64::NAN;
    assert!(energy_distance(x.view(), z.view()).is_err());
}
