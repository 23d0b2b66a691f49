//! The score of a finite sample perturbed by Gaussian noise: the exact minimiser of denoising
//! score matching (document 000 eq. 1.14) over an empirical sample `{x_i}`, i.e. the score of the
//! Gaussian kernel density estimate. It is what a perfect learner gets from `n` points, so it
//! shows without training where a learned score can and cannot be accurate (ledger `Ac16`,
//! `Ec04`, `Ec05`, `Ec06`).

use crate::error::{Error, Result};
use crate::score::{Level, ScoreModel};
use ndarray::{Array1, Array2, ArrayView1, ArrayView2};

/// The empirical score model of a data set (rows are points).
#[derive(Clone, Debug, PartialEq)]
pub struct EmpiricalScore {
    data: Array2<f64>,
}

impl EmpiricalScore {
    /// The model of `data` (`n × d`). Errors: no rows, no columns, or a non-finite entry.
    pub fn new(data: Array2<f64>) -> Result<Self> {
        if data.nrows() == 0 || data.ncols() == 0 {
            return Err(Error::param(
                "data",
                "need at least one point of dimension >= 1",
            ));
        }
        if data.iter().any(|v| !v.is_finite()) {
            return Err(Error::NonFinite("data contains NaN or infinity".into()));
        }
        Ok(Self { data })
    }

    /// Number of points `n`.
    pub fn len(&self) -> usize {
        self.data.nrows()
    }

    /// Always false: a model has at least one point.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The data.
    pub fn data(&self) -> &Array2<f64> {
        &self.data
    }

    // ANCHOR: empirical_score
    /// The score at `x` of the empirical law of `scale · x_i + std · z`, `z ~ N(0, I)`:
    /// `ŝ(x) = Σ_i w_i(x) (scale x_i - x) / std²`, `w = softmax_i(-|x - scale x_i|² / (2 std²))`
    /// (the softmax is shifted by its maximum, so far from the data it does not underflow).
    /// `x` must have the data's dimension and `std > 0`; [`EmpiricalScore::try_score`] checks.
    pub fn score_at(&self, x: ArrayView1<f64>, scale: f64, std: f64) -> Array1<f64> {
        let d = self.data.ncols();
        let logits: Vec<f64> = self
            .data
            .rows()
            .into_iter()
            .map(|xi| {
                let r2: f64 = xi.iter().zip(x).map(|(a, b)| (scale * a - b).powi(2)).sum();
                -r2 / (2.0 * std * std)
            })
            .collect();
        let m = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let mut num = Array1::<f64>::zeros(d);
        let mut den = 0.0;
        for (xi, l) in self.data.rows().into_iter().zip(&logits) {
            let w = (l - m).exp();
            den += w;
            for j in 0..d {
                num[j] += w * (scale * xi[j] - x[j]);
            }
        }
        num / (den * std * std)
    }
    // ANCHOR_END: empirical_score

    /// The empirical score at each row of `x`. Errors: `x` of the wrong width, non-finite `x`,
    /// or a level with non-finite `scale` or `std <= 0`.
    pub fn try_score(&self, x: ArrayView2<f64>, level: Level) -> Result<Array2<f64>> {
        if x.ncols() != self.data.ncols() {
            return Err(Error::Shape(format!(
                "points have {} coordinates, the data {}",
                x.ncols(),
                self.data.ncols()
            )));
        }
        if x.iter().any(|v| !v.is_finite()) {
            return Err(Error::NonFinite("x contains NaN or infinity".into()));
        }
        if !(level.scale.is_finite() && level.std > 0.0 && level.std.is_finite()) {
            return Err(Error::param(
                "level",
                format!(
                    "need a finite scale and a finite std > 0, got scale {} std {}",
                    level.scale, level.std
                ),
            ));
        }
        let mut out = Array2::zeros((x.nrows(), self.data.ncols()));
        for (i, row) in x.rows().into_iter().enumerate() {
            out.row_mut(i)
                .assign(&self.score_at(row, level.scale, level.std));
        }
        Ok(out)
    }
}

impl ScoreModel for EmpiricalScore {
    fn dim(&self) -> usize {
        self.data.ncols()
    }

    /// The empirical score; an invalid input yields NaN (see [`EmpiricalScore::try_score`]).
    fn score(&self, x: ArrayView2<f64>, level: Level) -> Array2<f64> {
        self.try_score(x, level)
            .unwrap_or_else(|_| Array2::from_elem((x.nrows(), self.data.ncols()), f64::NAN))
    }
}

// ANCHOR: effective_sample_size
/// The effective number of data points that inform the empirical score at a point where the
/// perturbed density is `density`: `n_eff = n q_σ(x) (4π σ²)^{d/2}`. The score's error is
/// `σ |ŝ - ∇log q_σ| ≈ sqrt(d / (2 n_eff))` when `n_eff ≫ 1` (derivation in the book, chapter
/// "SMLD", section on low-density regions) and `O(1)` or larger when `n_eff ≪ 1`.
pub fn effective_sample_size(n: usize, density: f64, std: f64, dim: usize) -> f64 {
    n as f64 * density * (4.0 * std::f64::consts::PI * std * std).powf(dim as f64 / 2.0)
}
// ANCHOR_END: effective_sample_size
