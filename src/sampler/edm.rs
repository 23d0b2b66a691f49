//! The EDM sampler of Karras et al. (2022), Algorithm 1 (deterministic Heun), with the Karras
//! noise levels, for a variance-exploding model: `x = x_0 + sigma z`, denoiser
//! `D(x; sigma) = x + sigma^2 score(x, sigma)` (Tweedie), ODE `dx/dsigma = (x - D(x; sigma))/sigma`.

use ndarray::{Array2, ArrayView2, Zip};

use crate::error::{Error, Result};
use crate::rng::NoiseSource;
use crate::sampler::ddpm::{check_start, eps_at, normal_array};
use crate::sampler::Progress;
use crate::score::{Level, ScoreModel};

// ANCHOR: karras_sigmas
/// Karras et al.'s noise levels: `sigma_i = (smax^(1/rho) + i/(n-1) (smin^(1/rho) - smax^(1/rho)))^rho`,
/// `i = 0..n-1`, followed by `sigma_n = 0` (length `n + 1`; `n = 1` gives `[smax, 0]`).
/// Errors: `n = 0`, `0 < smin < smax` violated, `rho` not finite and positive.
pub fn karras_sigmas(n: usize, sigma_min: f64, sigma_max: f64, rho: f64) -> Result<Vec<f64>> {
    if n == 0 {
        return Err(Error::InvalidSchedule(
            "need at least one noise level".into(),
        ));
    }
    if !(sigma_min.is_finite() && sigma_max.is_finite() && sigma_min > 0.0 && sigma_min < sigma_max)
    {
        return Err(Error::InvalidSchedule(format!(
            "need 0 < sigma_min ({sigma_min}) < sigma_max ({sigma_max}), both finite"
        )));
    }
    if !(rho.is_finite() && rho > 0.0) {
        return Err(Error::param("rho", format!("{rho} must be finite and > 0")));
    }
    let (a, b) = (sigma_max.powf(1.0 / rho), sigma_min.powf(1.0 / rho));
    let mut s: Vec<f64> = (0..n)
        .map(|i| {
            if n == 1 {
                sigma_max
            } else if i + 1 == n {
                sigma_min
            } else {
                (a + i as f64 / (n - 1) as f64 * (b - a)).powf(rho)
            }
        })
        .collect();
    s.push(0.0);
    Ok(s)
}
// ANCHOR_END: karras_sigmas

/// The VE level of noise `sigma`: model input `t = sigma`, scale 1, std `sigma`.
pub fn ve_level(sigma: f64) -> Level {
    Level {
        t: sigma,
        scale: 1.0,
        std: sigma,
    }
}

/// The denoiser `D(x; sigma) = x + sigma^2 score = x - sigma eps` of a VE score model.
pub fn denoise(model: &dyn ScoreModel, x: ArrayView2<f64>, sigma: f64) -> Result<Array2<f64>> {
    let eps = eps_at(model, x, ve_level(sigma))?;
    Ok(Zip::from(&x).and(&eps).map_collect(|&x, &e| x - sigma * e))
}

// ANCHOR: edm_heun
/// Algorithm 1 of Karras et al.: Heun steps of `dx/dsigma = (x - D)/sigma` through `sigmas`
/// (strictly decreasing, positive except possibly a final 0); the step to `sigma = 0` is a
/// single Euler step, which returns `D(x; sigma_last)`. `2 (len - 1) - 1` model calls when the
/// list ends at 0.
pub fn edm_heun(
    model: &dyn ScoreModel,
    x: Array2<f64>,
    sigmas: &[f64],
    progress: &mut dyn Progress,
) -> Result<Array2<f64>> {
    check_start(model, x.view())?;
    check_sigmas(sigmas)?;
    let total = sigmas.len() - 1;
    let mut x = x;
    for (i, w) in sigmas.windows(2).enumerate() {
        let (s, s_next) = (w[0], w[1]);
        let h = s_next - s;
        let d = (&x - &denoise(model, x.view(), s)?) / s;
        let x_euler = &x + &(&d * h);
        x = if s_next == 0.0 {
            x_euler
        } else {
            let d2 = (&x_euler - &denoise(model, x_euler.view(), s_next)?) / s_next;
            Zip::from(&x)
                .and(&d)
                .and(&d2)
                .map_collect(|&x, &d, &d2| x + 0.5 * h * (d + d2))
        };
        progress.step(i + 1, total);
    }
    Ok(x)
}
// ANCHOR_END: edm_heun

fn check_sigmas(sigmas: &[f64]) -> Result<()> {
    let n = sigmas.len();
    let ok = n >= 2
        && sigmas.iter().all(|s| s.is_finite())
        && sigmas.windows(2).all(|w| w[1] < w[0])
        && sigmas[n - 2] > 0.0
        && sigmas[n - 1] >= 0.0;
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidSchedule(
            "need at least two finite, strictly decreasing noise levels, all > 0 but the last"
                .into(),
        ))
    }
}

/// `n` samples: `x ~ N(0, sigmas[0]^2 I)` from `noise`, then [`edm_heun`].
pub fn edm_sample(
    model: &dyn ScoreModel,
    n: usize,
    sigmas: &[f64],
    noise: &mut dyn NoiseSource,
    progress: &mut dyn Progress,
) -> Result<Array2<f64>> {
    check_sigmas(sigmas)?;
    let x = normal_array(n, model.dim(), noise) * sigmas[0];
    edm_heun(model, x, sigmas, progress)
}
