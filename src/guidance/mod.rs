//! Controllable generation (003 §5 and appendix I, 000 eq. 1.23, 001 SDEdit/ILVR, 002 §3.3,
//! 004 inpainting): steering an unconditional score model towards a condition without
//! retraining it.
//!
//! - [`conditional`]: the conditional reverse SDE (ledger D14, A1.23) through a time-dependent
//!   classifier's gradient, the exact classifier of a class-labelled mixture, and
//!   classifier-free guidance (Cc18);
//! - [`imputation`]: inpainting (Dc61, Ec12), by the exact conditional oracle and by the
//!   replacement heuristic, whose bias the tests expose;
//! - [`colourisation`]: inpainting in an orthogonal basis whose first coordinate is the grey
//!   level (Dc62);
//! - [`sdedit`]: SDEdit, noising a guide to `t0` and denoising it (Bc16), with its exact output
//!   law for a 1-D mixture;
//! - [`ilvr`]: ILVR's low-pass filter and step (Bc17-Bc19) and the per-frequency
//!   signal-to-noise ratio of a noised stationary signal (Bc15);
//! - [`time_classifier`]: training a time-dependent classifier on noised pairs (Dc59).

pub mod colourisation;
pub mod conditional;
pub mod ilvr;
pub mod imputation;
pub mod sdedit;
pub mod time_classifier;

pub use conditional::{Classifier, ClassifierFree, ClassifierGuided, MixtureClassifier};

use crate::error::{Error, Result};
use crate::rng::NoiseSource;
use crate::sampler::pc::{time_grid, PcConfig};
use crate::sampler::predictor::{Predictor, Step};
use crate::sampler::Progress;
use crate::score::ScoreModel;
use crate::sde::{ReverseSde, Sde};
use ndarray::Array2;

// ANCHOR: predict_then_project
/// The loop shared by the projection samplers (replacement inpainting, ILVR): predictor steps
/// of the unconditional reverse SDE on the grid of [`time_grid`], and after the step to each
/// `t' > 0`, `project(x, t', noise)` imposes the condition on the noised sample. Returns the
/// last sample, or the predictor's last mean when `cfg.denoise`; the caller imposes the
/// noise-free condition on it.
pub(crate) fn predict_then_project(
    sde: &dyn Sde,
    model: &dyn ScoreModel,
    predictor: &dyn Predictor,
    cfg: &PcConfig,
    noise: &mut dyn NoiseSource,
    progress: &mut dyn Progress,
    mut project: impl FnMut(Array2<f64>, f64, &mut dyn NoiseSource) -> Result<Array2<f64>>,
) -> Result<Array2<f64>> {
    if cfg.n_samples == 0 {
        return Err(Error::param("n_samples", "need at least one sample"));
    }
    let grid = time_grid(sde.t_end(), cfg.eps, cfg.n_steps)?;
    let rsde = ReverseSde::new(sde, model);
    let mut x = sde.prior_sample(noise, cfg.n_samples, model.dim());
    let mut mean = x.clone();
    for i in 0..cfg.n_steps {
        let step = Step {
            t: grid[i],
            dt: grid[i] - grid[i + 1],
            level: cfg.n_steps - 1 - i,
            n_levels: cfg.n_steps,
        };
        (x, mean) = predictor.step(&rsde, x.view(), step, noise)?;
        if grid[i + 1] > 0.0 {
            x = project(x, grid[i + 1], noise)?;
        }
        progress.step(i + 1, cfg.n_steps);
    }
    Ok(if cfg.denoise { mean } else { x })
}
// ANCHOR_END: predict_then_project
