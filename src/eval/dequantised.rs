//! PF-ODE bits per dimension of discrete data on a grid under uniform dequantisation (ledger
//! Dc47, Dc48; 003 §4.3).
//!
//! A value `x = 2k/(L−1) − 1` of a grid with `L` levels becomes `y = x + (2u − 1)/(L−1)`,
//! `u ~ U[0, 1)`: uniform on its bin of width `2/(L−1)`, so `y = (k + u)/a − 1 − 1/(2a)` with
//! `a = (L−1)/2` bins per unit of `y`. A model density `p(y)` gives the bin-index density
//! `p(y) a^{−D}`, whence `bpd = −log p(y)/(D ln 2) + log2 a` ([`bits_per_dim`]): the offset is
//! `log2 8 = 3` for the 17-level digits and `log2 127.5 = 6.994` for 8-bit images. By Jensen the
//! mean over `u` bounds the discrete `−log2 P(k)/D` from above, as the ELBO does.

use super::elbo::Grid;
use crate::error::Result;
use crate::likelihood::{bits_per_dim, log_likelihood, Divergence, Probe};
use crate::rng::seeded;
use crate::sampler::ode::Rk45Options;
use crate::score::ScoreModel;
use crate::sde::Sde;
use ndarray::{Array1, Array2, ArrayView2};
use rand::Rng as _;

/// PF-ODE bits/dim of each row of grid data `x`, dequantised with uniforms from `seed`,
/// integrated from `t_eps` with RK45 at `rtol = atol = tol`, the divergence by Hutchinson with
/// `probes` Rademacher probes. Returns the bits/dim per row and the number of velocity
/// evaluations.
#[allow(clippy::too_many_arguments)]
pub fn ode_bits_per_dim(
    sde: &dyn Sde,
    model: &dyn ScoreModel,
    x: ArrayView2<f64>,
    grid: Grid,
    t_eps: f64,
    probes: usize,
    tol: f64,
    seed: u64,
) -> Result<(Array1<f64>, usize)> {
    for &v in x.iter() {
        grid.index(v)?;
    }
    let (n, d) = x.dim();
    let half = 1.0 / (grid.levels - 1) as f64;
    let mut r = seeded(seed);
    let y = Array2::from_shape_fn((n, d), |(i, j)| {
        x[[i, j]] + (2.0 * r.random::<f64>() - 1.0) * half
    });
    let ll = log_likelihood(
        sde,
        model,
        y.view(),
        t_eps,
        Divergence::Hutchinson {
            probes,
            probe: Probe::Rademacher,
            h: 1e-3,
        },
        Rk45Options::new(tol, tol)?,
        &mut seeded(seed ^ 0x0de),
    )?;
    let a = (grid.levels - 1) as f64 / 2.0;
    let bpd = ll
        .log_p
        .iter()
        .map(|&l| bits_per_dim(l, d, a))
        .collect::<Result<Array1<f64>>>()?;
    Ok((bpd, ll.nfe))
}
