//! The standard normal density, its CDF `Φ` and `log Φ`, accurate in both tails. Used by the
//! discretised decoder of ledger A1.12 (000 eq. 1.12), which integrates a Gaussian over the
//! bins of a quantised pixel.

use std::f64::consts::{FRAC_1_SQRT_2, PI};

/// `ln(2π)`.
pub const LN_2PI: f64 = 1.837_877_066_409_345_5;

/// Below this point `log Φ` switches from `ln(erfc(-x/√2)/2)` to the asymptotic (Mills ratio)
/// series; `erfc` stays in the normal range of f64 down to about -37.5.
const LOG_CDF_ASYMPTOTIC_BELOW: f64 = -35.0;

// ANCHOR: std_normal
/// Standard normal density `φ(x) = exp(-x²/2) / √(2π)`.
pub fn std_normal_pdf(x: f64) -> f64 {
    (-0.5 * x * x).exp() / (2.0 * PI).sqrt()
}

/// `ln φ(x) = -x²/2 - ln(2π)/2`.
pub fn std_normal_log_pdf(x: f64) -> f64 {
    -0.5 * x * x - 0.5 * LN_2PI
}

/// Standard normal CDF `Φ(x) = erfc(-x/√2) / 2`. Written through `erfc`, not `1 + erf`, so the
/// lower tail keeps full relative accuracy (`Φ(-30) ≈ 4.9e-198` is not rounded to zero).
pub fn std_normal_cdf(x: f64) -> f64 {
    0.5 * libm::erfc(-x * FRAC_1_SQRT_2)
}

/// `ln Φ(x)`, accurate in both tails.
///
/// * `x > 0`: `ln Φ(x) = ln1p(-Φ(-x))`, exact even when `Φ(x)` rounds to 1;
/// * `-35 ≤ x ≤ 0`: `ln(erfc(-x/√2)/2)`;
/// * `x < -35`: the Mills-ratio expansion
///   `ln Φ(x) = -x²/2 - ln(-x) - ln(2π)/2 + ln(1 - 1/x² + 3/x⁴ - 15/x⁶ + …)`,
///   truncated after the `x⁻¹⁶` term (next term `< 2.1e6 / 35¹⁸ < 1e-21`).
pub fn log_std_normal_cdf(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    if x > 0.0 {
        (-std_normal_cdf(-x)).ln_1p()
    } else if x >= LOG_CDF_ASYMPTOTIC_BELOW {
        std_normal_cdf(x).ln()
    } else if x == f64::NEG_INFINITY {
        f64::NEG_INFINITY
    } else {
        let u = 1.0 / (x * x);
        // 1 + Σ_k (-1)^k (2k-1)!! u^k, k = 1..8, by Horner.
        let mut series = 0.0;
        for k in (1..=8).rev() {
            series = -((2 * k - 1) as f64) * u * (1.0 + series);
        }
        -0.5 * x * x - (-x).ln() - 0.5 * LN_2PI + series.ln_1p()
    }
}
// ANCHOR_END: std_normal
