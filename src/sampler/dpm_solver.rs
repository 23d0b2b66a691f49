//! DPM-Solver++(2M) of Lu et al. (2022): a second-order multistep solver of the probability-flow
//! ODE written in the data prediction `x0_hat` and the half log-SNR `lambda = ln(scale/std)`.
//!
//! Exactly, `x_t = (std_t/std_s) x_s + std_t ∫_{lambda_s}^{lambda_t} e^{lambda} x0_hat dlambda`; freezing
//! `x0_hat` gives the first-order step `x_t = (std_t/std_s) x_s - scale_t expm1(-h) x0_hat`,
//! `h = lambda_t - lambda_s` (which is DDIM with eta = 0); 2M replaces `x0_hat` by the linear
//! extrapolation `(1 + 1/(2r)) x0_i - 1/(2r) x0_{i-1}`, `r = h_prev / h`.

use ndarray::{Array2, ArrayView2, Zip};

use crate::error::{Error, Result};
use crate::rng::NoiseSource;
use crate::sampler::ddpm::{check_start, eps_at, normal_array};
use crate::sampler::Progress;
use crate::score::{Level, ScoreModel};

/// The data prediction `x0_hat = (x - std eps)/scale` at `level`.
pub fn predict_x0(model: &dyn ScoreModel, x: ArrayView2<f64>, level: Level) -> Result<Array2<f64>> {
    let eps = eps_at(model, x, level)?;
    Ok(Zip::from(&x)
        .and(&eps)
        .map_collect(|&x, &e| (x - level.std * e) / level.scale))
}

fn check_levels(levels: &[Level]) -> Result<()> {
    let n = levels.len();
    let finite = |l: &Level| l.scale.is_finite() && l.scale > 0.0 && l.std.is_finite();
    let lambda = |l: &Level| (l.scale / l.std).ln();
    let ok = n >= 2
        && levels.iter().all(finite)
        && levels[..n - 1].iter().all(|l| l.std > 0.0)
        && levels[n - 1].std >= 0.0
        && levels.windows(2).all(|w| lambda(&w[1]) > lambda(&w[0]));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidSchedule(
            "DPM-Solver needs at least two levels with strictly increasing scale/std, std > 0 \
             except possibly at the last"
                .into(),
        ))
    }
}

// ANCHOR: dpm_solver_2m
/// DPM-Solver++(2M) through `levels` (noise decreasing). The first step is first order; so is a
/// final step to `std = 0` (where `h` is infinite), which returns `scale x0_hat`. One model
/// call per step except the last when it ends at `std = 0`.
pub fn dpm_solver_pp_2m(
    model: &dyn ScoreModel,
    x: Array2<f64>,
    levels: &[Level],
    progress: &mut dyn Progress,
) -> Result<Array2<f64>> {
    check_start(model, x.view())?;
    check_levels(levels)?;
    let lambda = |l: &Level| (l.scale / l.std).ln();
    let total = levels.len() - 1;
    let mut x = x;
    let mut prev: Option<(Array2<f64>, f64)> = None; // (x0 at the previous level, its h)
    for (i, w) in levels.windows(2).enumerate() {
        let (from, to) = (w[0], w[1]);
        let x0 = predict_x0(model, x.view(), from)?;
        if to.std == 0.0 {
            x = x0 * to.scale;
        } else {
            let h = lambda(&to) - lambda(&from);
            let d = match &prev {
                None => x0.clone(),
                Some((x0_prev, h_prev)) => {
                    let c = 0.5 * h / h_prev; // 1/(2r)
                    Zip::from(&x0)
                        .and(x0_prev)
                        .map_collect(|&a, &b| (1.0 + c) * a - c * b)
                }
            };
            let (a, b) = (to.std / from.std, -to.scale * (-h).exp_m1());
            x = Zip::from(&x).and(&d).map_collect(|&x, &d| a * x + b * d);
            prev = Some((x0, h));
        }
        progress.step(i + 1, total);
    }
    Ok(x)
}
// ANCHOR_END: dpm_solver_2m

/// `n` samples from `x ~ N(0, I) * sqrt(scale_0^2 + std_0^2)` (the VP prior is `N(0, I)`), then
/// [`dpm_solver_pp_2m`].
pub fn dpm_solver_sample(
    model: &dyn ScoreModel,
    n: usize,
    levels: &[Level],
    noise: &mut dyn NoiseSource,
    progress: &mut dyn Progress,
) -> Result<Array2<f64>> {
    check_levels(levels)?;
    let l0 = levels[0];
    let x = normal_array(n, model.dim(), noise) * (l0.scale * l0.scale + l0.std * l0.std).sqrt();
    dpm_solver_pp_2m(model, x, levels, progress)
}
