//! The reverse-time SDE `dx = [f(x, t) - g(t)² ∇log p_t(x)] dt + g(t) dw̄` (ledger D6, A1.20;
//! 003 eq. 6, 000 eq. 1.20), run from `T` to 0 with negative `dt`, and the probability-flow ODE
//! `dx = [f(x, t) - ½ g(t)² ∇log p_t(x)] dt` (ledger D13, A1.22; 003 eq. 13, 000 eq. 1.22),
//! built from a forward [`Sde`] and a [`ScoreModel`] that is called at `sde.level(t)`.

use super::Sde;
use crate::error::{Error, Result};
use crate::score::ScoreModel;
use ndarray::{Array2, ArrayView2};

/// The reverse of a forward SDE, given the score of its marginals.
#[derive(Clone, Copy)]
pub struct ReverseSde<'a> {
    sde: &'a dyn Sde,
    score: &'a dyn ScoreModel,
}

impl<'a> ReverseSde<'a> {
    /// The reverse of `sde` with the score `score`.
    pub fn new(sde: &'a dyn Sde, score: &'a dyn ScoreModel) -> Self {
        Self { sde, score }
    }

    /// The forward SDE.
    pub fn sde(&self) -> &'a dyn Sde {
        self.sde
    }

    /// The score at each row of `x` at time `t`, after checking the shape.
    pub fn score(&self, x: ArrayView2<f64>, t: f64) -> Result<Array2<f64>> {
        if x.ncols() != self.score.dim() {
            return Err(Error::Shape(format!(
                "points of dimension {} for a score model of dimension {}",
                x.ncols(),
                self.score.dim()
            )));
        }
        let level = self.sde.level(t)?;
        let s = self.score.score(x, level);
        if s.dim() != x.dim() {
            return Err(Error::Shape(format!(
                "score of shape {:?} for points of shape {:?}",
                s.dim(),
                x.dim()
            )));
        }
        Ok(s)
    }

    // ANCHOR: reverse_drift
    /// `f(x, t) - g(t)² ∇log p_t(x)`: the `dt` coefficient of the reverse SDE (`dt < 0`).
    pub fn reverse_drift(&self, x: ArrayView2<f64>, t: f64) -> Result<Array2<f64>> {
        let g = self.sde.diffusion(t)?;
        Ok(self.sde.drift(x, t)? - self.score(x, t)? * (g * g))
    }

    /// `f(x, t) - ½ g(t)² ∇log p_t(x)`: the probability-flow ODE's velocity.
    pub fn ode_drift(&self, x: ArrayView2<f64>, t: f64) -> Result<Array2<f64>> {
        let g = self.sde.diffusion(t)?;
        Ok(self.sde.drift(x, t)? - self.score(x, t)? * (0.5 * g * g))
    }
    // ANCHOR_END: reverse_drift

    /// The diffusion coefficient `g(t)` of the reverse SDE (that of the forward SDE).
    pub fn diffusion(&self, t: f64) -> Result<f64> {
        self.sde.diffusion(t)
    }

    // ANCHOR: reverse_discretize
    /// The reverse discretisation used by the reverse-diffusion predictor: if the forward step
    /// at `t` is `x -> x + F + G z`, the reverse step is `x -> x - (F - G² s(x, t)) + G z`.
    /// Returns `(F - G² s(x, t), G)`.
    pub fn discretize(
        &self,
        x: ArrayView2<f64>,
        t: f64,
        n_steps: usize,
    ) -> Result<(Array2<f64>, f64)> {
        let (f, g) = self.sde.discretize(x, t, n_steps)?;
        Ok((f - self.score(x, t)? * (g * g), g))
    }

    /// The same for the probability-flow ODE: `(F - ½ G² s(x, t), 0)`.
    pub fn ode_discretize(
        &self,
        x: ArrayView2<f64>,
        t: f64,
        n_steps: usize,
    ) -> Result<(Array2<f64>, f64)> {
        let (f, g) = self.sde.discretize(x, t, n_steps)?;
        Ok((f - self.score(x, t)? * (0.5 * g * g), 0.0))
    }
    // ANCHOR_END: reverse_discretize
}
