//! Importance sampling of the training time `t` (Song et al. 2021b, "Maximum likelihood
//! training of score-based diffusion models", section 5).
//!
//! The continuous DSM loss (ledger D7) is `L = E_{t~U[t_eps,1]} [w(t) l(t)]` with
//! `w(t) = lambda(t) / sigma(t)^2` the weight of `‖eps_theta − eps‖²` and `l(t)` the expected
//! squared error at time `t`. For the likelihood weighting `lambda = g²` and the VP SDE,
//! `w(t) = beta(t) / (1 − e^{−B(t)})` grows like `1/t` near `t_eps`: a uniform `t` rarely
//! visits the times that dominate the loss, and the Monte Carlo estimate is noisy.
//!
//! Drawing `t` from a density `q` instead and weighting each row by `1 / ((1 − t_eps) q(t))`
//! keeps the estimate unbiased: `E_q[w l / ((1 − t_eps) q)] = ∫ w l dt / (1 − t_eps) = L`.
//! The best `q` for a loss with `l` roughly constant is `q ∝ w`; then every row carries the
//! same weight `Z / (1 − t_eps)`, `Z = ∫ w dt`.
//!
//! Here `q` is `w` made piecewise exact: the interval is cut into `M` cells geometric in `t`
//! (fine where `w` varies fast), a cell is chosen with probability proportional to its
//! trapezoid mass of `w`, and `t` is uniform in it. So `q(t) = P_j / (t_{j+1} − t_j)` on cell
//! `j` is known exactly and the reweighting is exact for any SDE and weighting, whatever the
//! quadrature error of the cell masses (which only makes `q` slightly less than optimal).

use crate::error::{Error, Result};
use crate::loss::Weighting;
use crate::rng::Rng;
use crate::sde::Sde;
use rand::Rng as _;

/// How training times are drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeSampling {
    /// `t ~ U[t_eps, 1]`, every row weighted 1.
    Uniform,
    /// `t ~ q ∝ lambda(t)/sigma(t)²`, each row weighted `1 / ((1 − t_eps) q(t))`.
    Importance,
}

impl TimeSampling {
    /// The name used on the command line and in `config.json`.
    pub fn name(&self) -> &'static str {
        match self {
            TimeSampling::Uniform => "uniform",
            TimeSampling::Importance => "importance",
        }
    }
}

/// The DSM weight `w(t) = lambda(t) / sigma(t)²` of `‖eps_theta − eps‖²` (ledger D7).
pub fn eps_weight(sde: &dyn Sde, weighting: Weighting, t: f64) -> Result<f64> {
    Ok(match weighting {
        Weighting::SigmaSquared => 1.0,
        Weighting::Likelihood => {
            let g = sde.diffusion(t)?;
            let s = sde.marginal_std(t)?;
            g * g / (s * s)
        }
    })
}

// ANCHOR: importance_time
/// The piecewise density `q ∝ w` on `[t_eps, T]` over geometric cells, with its sampler.
#[derive(Clone, Debug)]
pub struct ImportanceTime {
    /// Cell edges `t_0 = t_eps < ... < t_M = T`.
    edges: Vec<f64>,
    /// Cumulative cell probabilities, `cdf[M − 1] = 1`.
    cdf: Vec<f64>,
    /// `1 / (T − t_eps)`, the uniform density.
    uniform: f64,
}

impl ImportanceTime {
    /// `q ∝ eps_weight(sde, weighting, ·)` on `[t_eps, sde.t_end()]` with `cells` cells.
    pub fn new(sde: &dyn Sde, weighting: Weighting, t_eps: f64, cells: usize) -> Result<Self> {
        let t_end = sde.t_end();
        if !(t_eps > 0.0 && t_eps < t_end) {
            return Err(Error::param(
                "t_eps",
                format!("{t_eps} is not in (0, {t_end})"),
            ));
        }
        if cells == 0 {
            return Err(Error::param("cells", "need at least one cell"));
        }
        let ratio = (t_end / t_eps).ln();
        let mut edges: Vec<f64> = (0..=cells)
            .map(|j| t_eps * (ratio * j as f64 / cells as f64).exp())
            .collect();
        edges[0] = t_eps;
        edges[cells] = t_end;
        let w: Vec<f64> = edges
            .iter()
            .map(|&t| eps_weight(sde, weighting, t))
            .collect::<Result<_>>()?;
        let mut cdf = Vec::with_capacity(cells);
        let mut acc = 0.0;
        for j in 0..cells {
            let mass = 0.5 * (w[j] + w[j + 1]) * (edges[j + 1] - edges[j]);
            if !(mass.is_finite() && mass > 0.0) {
                return Err(Error::NonFinite(format!(
                    "importance weight on [{}, {}] is {mass}",
                    edges[j],
                    edges[j + 1]
                )));
            }
            acc += mass;
            cdf.push(acc);
        }
        for c in &mut cdf {
            *c /= acc;
        }
        cdf[cells - 1] = 1.0;
        Ok(ImportanceTime {
            edges,
            cdf,
            uniform: 1.0 / (t_end - t_eps),
        })
    }

    fn cell(&self, t: f64) -> usize {
        let j = self.edges.partition_point(|&e| e <= t);
        j.saturating_sub(1).min(self.cdf.len() - 1)
    }

    /// The density of cell `j`, `P_j / (t_{j+1} − t_j)`.
    fn cell_density(&self, j: usize) -> f64 {
        let p = self.cdf[j] - if j == 0 { 0.0 } else { self.cdf[j - 1] };
        p / (self.edges[j + 1] - self.edges[j])
    }

    /// The density `q(t)` (0 outside `[t_eps, T]`).
    pub fn density(&self, t: f64) -> f64 {
        if t < self.edges[0] || t > *self.edges.last().expect("edges") {
            return 0.0;
        }
        self.cell_density(self.cell(t))
    }

    /// The row weight `u(t) / q(t)` that makes a `q`-sample estimate the uniform-`t` loss.
    pub fn reweight(&self, t: f64) -> f64 {
        self.uniform / self.density(t)
    }

    /// One draw of `t` and its reweight: a cell by its probability, then uniform in the cell.
    pub fn draw(&self, rng: &mut Rng) -> (f64, f64) {
        let u: f64 = rng.random();
        let j = self
            .cdf
            .partition_point(|&c| c <= u)
            .min(self.cdf.len() - 1);
        let v: f64 = rng.random();
        let t = self.edges[j] + v * (self.edges[j + 1] - self.edges[j]);
        (t, self.uniform / self.cell_density(j))
    }
}
// ANCHOR_END: importance_time
