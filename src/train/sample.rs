//! The reverse-diffusion sampler used by `train` and `sample` until the samplers issue lands:
//! from the prior at `t = 1`, the reverse SDE's discretisation on the grid
//! `t_k = t_eps + k (1 − t_eps) / (N − 1)` down to `t_eps = sde.t_eps()` (a trained score is not
//! defined at `sigma(0) = 0`), returning the mean at the last step (003, the reverse-diffusion
//! predictor; the loop of the `demo` command with Song et al.'s `linspace(T, eps, N)`).

use crate::error::{Error, Result};
use crate::rng::{seeded, NoiseSource};
use crate::score::ScoreModel;
use crate::sde::{ReverseSde, Sde};
use ndarray::Array2;

/// Checks, before any work is done, that [`reverse_diffusion`] can run `steps` levels of `sde`
/// (at least 2, and a discretisation the SDE accepts, e.g. VP needs `beta_max / steps < 1`).
pub fn check_sampling_steps(sde: &dyn Sde, steps: usize) -> Result<()> {
    if steps < 2 {
        return Err(Error::param("steps", "need at least 2 sampling steps"));
    }
    let x = Array2::<f64>::zeros((1, 1));
    sde.discretize(x.view(), sde.t_end(), steps).map(|_| ())
}

/// `n` samples of dimension `score.dim()` with `steps` reverse-diffusion steps from `seed`.
pub fn reverse_diffusion(
    sde: &dyn Sde,
    score: &dyn ScoreModel,
    n: usize,
    steps: usize,
    seed: u64,
) -> Result<Array2<f64>> {
    if steps < 2 {
        return Err(Error::param("steps", "need at least 2 sampling steps"));
    }
    let d = score.dim();
    let t_eps = sde.t_eps();
    let reverse = ReverseSde::new(sde, score);
    let mut noise = seeded(seed);
    let mut x = sde.prior_sample(&mut noise, n, d);
    let mut z = Array2::<f64>::zeros((n, d));
    for k in (0..steps).rev() {
        let t = t_eps + k as f64 * (sde.t_end() - t_eps) / (steps - 1) as f64;
        let (f, g) = reverse.discretize(x.view(), t, steps)?;
        x -= &f;
        if k > 0 {
            noise.fill_normal(z.as_slice_mut().expect("standard layout"));
            x.scaled_add(g, &z);
        }
    }
    if x.iter().any(|v| !v.is_finite()) {
        return Err(Error::NonFinite("samples diverged".into()));
    }
    Ok(x)
}
