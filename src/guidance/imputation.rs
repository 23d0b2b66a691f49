//! Inpainting (003 §5 and appendix I.2, 004 "image inpainting"; ledger Dc61, Ec12): some
//! coordinates `Ω` of `x(0)` are observed, `x_Ω = y`, and the rest must be drawn from
//! `p_0(x_Ω̄ | x_Ω = y)`.
//!
//! - [`conditional_oracle`]: for a mixture the conditional law is again a mixture
//!   ([`GaussianMixture::conditional`]), so the exact score of its perturbations drives any
//!   sampler over the unobserved coordinates to the exact conditional.
//! - [`replacement_sample`]: the heuristic that runs the unconditional reverse SDE in full and
//!   after every step overwrites the observed coordinates with a fresh noising
//!   `s(t) y + σ(t) z` of the observation. It ignores how the unobserved coordinates at time
//!   `t` depend on `y` through the noise already in them, and is biased (tests and book).

use super::predict_then_project;
use crate::error::{Error, Result};
use crate::gaussian::GaussianMixture;
use crate::rng::NoiseSource;
use crate::sampler::pc::{PcConfig, Samples};
use crate::sampler::predictor::{normals, Predictor};
use crate::sampler::Progress;
use crate::score::{MixtureScore, ScoreModel};
use crate::sde::Sde;
use ndarray::{Array2, ArrayView1, ArrayView2};

// ANCHOR: oracle
/// The exact score model of the unobserved coordinates (in increasing order) given
/// `x[observed] = values`: the mixture's conditional, pushed through the forward process.
pub fn conditional_oracle(
    mixture: &GaussianMixture,
    observed: &[usize],
    values: ArrayView1<f64>,
) -> Result<MixtureScore> {
    Ok(MixtureScore::new(mixture.conditional(observed, values)?))
}
// ANCHOR_END: oracle

/// Full `n × d` points from the unobserved coordinates `x_free` (columns in increasing index
/// order) and the observation. Errors: shapes that do not fit.
pub fn assemble(
    d: usize,
    observed: &[usize],
    values: ArrayView1<f64>,
    x_free: ArrayView2<f64>,
) -> Result<Array2<f64>> {
    if values.len() != observed.len() || x_free.ncols() + observed.len() != d {
        return Err(Error::Shape(format!(
            "{} observed values for {} indices and {} free columns in dimension {d}",
            values.len(),
            observed.len(),
            x_free.ncols()
        )));
    }
    let free: Vec<usize> = (0..d).filter(|i| !observed.contains(i)).collect();
    let mut out = Array2::zeros((x_free.nrows(), d));
    for (mut o, r) in out.rows_mut().into_iter().zip(x_free.rows()) {
        for (j, &i) in free.iter().enumerate() {
            o[i] = r[j];
        }
        for (j, &i) in observed.iter().enumerate() {
            o[i] = values[j];
        }
    }
    Ok(out)
}

// ANCHOR: replacement
/// The replacement heuristic: predictor steps of the unconditional reverse SDE on the grid of
/// [`time_grid`](crate::sampler::pc::time_grid); after the step to `t'`, the observed columns
/// are overwritten with `s(t') y + σ(t') z` (fresh `z`), and the returned points carry `y`
/// itself there.
#[allow(clippy::too_many_arguments)] // the pc sampler's arguments plus the observation
pub fn replacement_sample(
    sde: &dyn Sde,
    model: &dyn ScoreModel,
    predictor: &dyn Predictor,
    observed: &[usize],
    values: ArrayView1<f64>,
    cfg: PcConfig,
    noise: &mut dyn NoiseSource,
    progress: &mut dyn Progress,
) -> Result<Samples> {
    let d = model.dim();
    crate::gaussian::mvn::check_indices(observed, d)?;
    if values.len() != observed.len() {
        return Err(Error::Shape(format!(
            "{} values for {} observed indices",
            values.len(),
            observed.len()
        )));
    }
    crate::gaussian::check_finite("values", values.iter())?;
    let mut out = predict_then_project(
        sde,
        model,
        predictor,
        &cfg,
        noise,
        progress,
        |mut x, t, noise| {
            let (s, sd) = (sde.mean_scale(t)?, sde.marginal_std(t)?);
            let z = normals(noise, (x.nrows(), observed.len()));
            for (mut row, zr) in x.rows_mut().into_iter().zip(z.rows()) {
                for (j, &c) in observed.iter().enumerate() {
                    row[c] = s * values[j] + sd * zr[j];
                }
            }
            Ok(x)
        },
    )?;
    for mut row in out.rows_mut() {
        for (j, &c) in observed.iter().enumerate() {
            row[c] = values[j];
        }
    }
    Ok(Samples {
        x: out,
        nfe: cfg.n_steps * predictor.nfe(),
    })
}
// ANCHOR_END: replacement
