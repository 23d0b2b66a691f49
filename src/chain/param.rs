//! Conversions between the four things a network can predict at a level `x = s x_0 + sigma eps`
//! (scale `s`, std `sigma`, see [`Level`]): the noise `eps`, the data `x_0`, the score
//! `-eps / sigma`, and the velocity `v = s eps - sigma x_0`.
//!
//! Everything goes through `eps`: `to_eps` inverts each definition, `from_eps` applies it. The
//! formulas hold for any level (VP, sub-VP or VE); none assumes `s^2 + sigma^2 = 1`.

use ndarray::{Array2, ArrayView2, Zip};

use crate::error::{Error, Result};
use crate::score::Level;

/// What a model predicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Prediction {
    /// The noise `eps`.
    Eps,
    /// The clean data `x_0`.
    X0,
    /// The score `-eps / sigma`.
    Score,
    /// The velocity `v = s eps - sigma x_0`.
    V,
}

impl Prediction {
    /// All four, for iteration.
    pub const ALL: [Prediction; 4] = [Self::Eps, Self::X0, Self::Score, Self::V];
}

fn check(x: &ArrayView2<f64>, p: &ArrayView2<f64>, level: Level) -> Result<(f64, f64)> {
    if x.dim() != p.dim() {
        return Err(Error::Shape(format!(
            "x {:?} and prediction {:?}",
            x.dim(),
            p.dim()
        )));
    }
    let (s, sd) = (level.scale, level.std);
    if !(s.is_finite() && s > 0.0 && sd.is_finite() && sd > 0.0) {
        return Err(Error::param(
            "level",
            format!("scale {s} and std {sd} must be finite and > 0"),
        ));
    }
    Ok((s, sd))
}

// ANCHOR: conversions
/// The noise implied by a prediction `pred` of kind `from` at point `x`:
/// `eps = -sigma score`, `eps = (x - s x_0)/sigma`, `eps = (sigma x + s v)/(s^2 + sigma^2)`.
pub fn to_eps(
    x: ArrayView2<f64>,
    pred: ArrayView2<f64>,
    from: Prediction,
    level: Level,
) -> Result<Array2<f64>> {
    let (s, sd) = check(&x, &pred, level)?;
    let n2 = s * s + sd * sd;
    Ok(match from {
        Prediction::Eps => pred.to_owned(),
        Prediction::Score => pred.mapv(|g| -sd * g),
        Prediction::X0 => Zip::from(&x)
            .and(&pred)
            .map_collect(|&x, &x0| (x - s * x0) / sd),
        Prediction::V => Zip::from(&x)
            .and(&pred)
            .map_collect(|&x, &v| (sd * x + s * v) / n2),
    })
}

/// The prediction of kind `to` implied by the noise `eps` at point `x`:
/// `score = -eps/sigma`, `x_0 = (x - sigma eps)/s`, `v = s eps - sigma x_0` with that `x_0`.
pub fn from_eps(
    x: ArrayView2<f64>,
    eps: ArrayView2<f64>,
    to: Prediction,
    level: Level,
) -> Result<Array2<f64>> {
    let (s, sd) = check(&x, &eps, level)?;
    Ok(match to {
        Prediction::Eps => eps.to_owned(),
        Prediction::Score => eps.mapv(|e| -e / sd),
        Prediction::X0 => Zip::from(&x)
            .and(&eps)
            .map_collect(|&x, &e| (x - sd * e) / s),
        Prediction::V => Zip::from(&x)
            .and(&eps)
            .map_collect(|&x, &e| s * e - sd * (x - sd * e) / s),
    })
}
// ANCHOR_END: conversions

/// Converts a prediction of kind `from` into one of kind `to` at point `x` and `level`.
pub fn convert(
    x: ArrayView2<f64>,
    pred: ArrayView2<f64>,
    from: Prediction,
    to: Prediction,
    level: Level,
) -> Result<Array2<f64>> {
    let eps = to_eps(x, pred, from, level)?;
    from_eps(x, eps.view(), to, level)
}

/// `score = -eps / sigma`.
pub fn score_from_eps(
    x: ArrayView2<f64>,
    eps: ArrayView2<f64>,
    level: Level,
) -> Result<Array2<f64>> {
    from_eps(x, eps, Prediction::Score, level)
}

/// `eps = -sigma score`.
pub fn eps_from_score(
    x: ArrayView2<f64>,
    score: ArrayView2<f64>,
    level: Level,
) -> Result<Array2<f64>> {
    to_eps(x, score, Prediction::Score, level)
}

/// `x_0 = (x - sigma eps) / s`.
pub fn x0_from_eps(x: ArrayView2<f64>, eps: ArrayView2<f64>, level: Level) -> Result<Array2<f64>> {
    from_eps(x, eps, Prediction::X0, level)
}

/// `eps = (x - s x_0) / sigma`.
pub fn eps_from_x0(x: ArrayView2<f64>, x0: ArrayView2<f64>, level: Level) -> Result<Array2<f64>> {
    to_eps(x, x0, Prediction::X0, level)
}

/// `x_0 = (x + sigma^2 score) / s` (Tweedie's formula when the score is the marginal score).
pub fn x0_from_score(
    x: ArrayView2<f64>,
    score: ArrayView2<f64>,
    level: Level,
) -> Result<Array2<f64>> {
    convert(x, score, Prediction::Score, Prediction::X0, level)
}

/// `v = s eps - sigma x_0`.
pub fn v_from_eps(x: ArrayView2<f64>, eps: ArrayView2<f64>, level: Level) -> Result<Array2<f64>> {
    from_eps(x, eps, Prediction::V, level)
}

/// `eps = (sigma x + s v) / (s^2 + sigma^2)`.
pub fn eps_from_v(x: ArrayView2<f64>, v: ArrayView2<f64>, level: Level) -> Result<Array2<f64>> {
    to_eps(x, v, Prediction::V, level)
}

/// `x_0 = (s x - sigma v) / (s^2 + sigma^2)`.
pub fn x0_from_v(x: ArrayView2<f64>, v: ArrayView2<f64>, level: Level) -> Result<Array2<f64>> {
    convert(x, v, Prediction::V, Prediction::X0, level)
}
