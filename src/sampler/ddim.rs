//! DDIM (Song, Meng and Ermon 2021): the non-Markovian family of reverse steps
//! `x_prev = s_prev x0_hat + sqrt(std_prev^2 - sigma^2) eps + sigma z` (ledger Bc10-Bc12,
//! 001 "From DDPM to DDIM"), any eta, any sub-sequence of timesteps, an explicit final-step
//! convention, and DDIM inversion (ledger Bc21).
//!
//! Timesteps are the peers' (diffusers') 0-based indices `k = 0..T-1`; index `k` is Ho's step
//! `t = k + 1`, so its level is [`BetaSchedule::level`]`(k + 1)`.

use ndarray::{Array2, ArrayView2, Zip};

use crate::error::{Error, Result};
use crate::rng::NoiseSource;
use crate::sampler::ddpm::{check_clip, check_start, eps_at, normal_array};
use crate::sampler::Progress;
use crate::schedule::beta::BetaSchedule;
use crate::score::{Level, ScoreModel};

/// How `S` timesteps are chosen among `T` training steps (diffusers' `timestep_spacing`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spacing {
    /// `k_i = i * (T div S)`, `i = S-1, ..., 0`: ends at 0, may never reach `T - 1`.
    Leading,
    /// `k_i = round(T - i T/S) - 1`, `i = 0, ..., S-1`: starts at `T - 1`.
    Trailing,
    /// `S` points from `T - 1` down to 0, evenly spaced then rounded (ties to even).
    Linspace,
}

/// What `alpha_bar_prev` is at the last step (diffusers' `set_alpha_to_one`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinalAlpha {
    /// `alpha_bar_prev = 1`: the last step lands on the data, returning `x0_hat`.
    One,
    /// `alpha_bar_prev = alpha_bar` of index 0 (Ho's `alpha_bar_1`): the last step lands on the
    /// first training level, not on the data.
    First,
}

/// Where a DDIM step from a scheduled timestep lands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PrevRule {
    /// The next timestep of the sequence (the final level after the last): the sampler visits
    /// exactly the scheduled levels (ours, the default).
    #[default]
    NextInSequence,
    /// `k - floor(T/S)` whatever the spacing (the final level when negative), as diffusers'
    /// `DDIMScheduler.step` does. For `Linspace`, or `Trailing` when `S` does not divide `T`,
    /// this is not the next scheduled timestep: the step lands on one level and the next step
    /// starts from another (book: peers chapter).
    FixedStride,
}

// ANCHOR: timesteps
/// The `steps` timesteps (0-based, descending) chosen among `train_steps` by `spacing`.
/// Errors: `steps = 0` or `steps > train_steps`.
pub fn timesteps(train_steps: usize, steps: usize, spacing: Spacing) -> Result<Vec<usize>> {
    if steps == 0 || steps > train_steps {
        return Err(Error::param(
            "steps",
            format!("{steps} sampling steps must be in 1..={train_steps}"),
        ));
    }
    let (t, s) = (train_steps as f64, steps as f64);
    let ts: Vec<usize> = match spacing {
        Spacing::Leading => {
            let ratio = train_steps / steps;
            (0..steps).rev().map(|i| i * ratio).collect()
        }
        Spacing::Trailing => {
            let ratio = t / s;
            (0..steps)
                .map(|i| (t - i as f64 * ratio).round_ties_even() as usize - 1)
                .collect()
        }
        Spacing::Linspace => {
            if steps == 1 {
                return Ok(vec![0]);
            }
            let h = (t - 1.0) / (s - 1.0);
            (0..steps)
                .rev()
                .map(|i| {
                    let v = if i + 1 == steps {
                        t - 1.0
                    } else {
                        i as f64 * h
                    };
                    v.round_ties_even() as usize
                })
                .collect()
        }
    };
    Ok(ts)
}
// ANCHOR_END: timesteps

/// The coefficients of one DDIM step `x_to = x0 * x0_hat + eps * eps_hat + sigma * z`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DdimCoefficients {
    /// Coefficient of the predicted data: the scale of the target level.
    pub x0: f64,
    /// Coefficient of the predicted noise: `sqrt(std_to^2 - sigma^2)`.
    pub eps: f64,
    /// Standard deviation of the fresh noise.
    pub sigma: f64,
}

// ANCHOR: ddim_coefficients
/// The DDIM step from level `from` to level `to` with parameter `eta` (ledger Bc12):
/// `sigma^2 = eta^2 std_to^2 (std_from^2 - r^2 std_to^2) / std_from^2`, `r = scale_from/scale_to`,
/// which is the posterior variance of `x_to` given `x_from` and `x_0` under the linear forward
/// process (for VP, `eta^2 (1-ab_to)/(1-ab_from) (1 - ab_from/ab_to)`; `eta = 1` between
/// neighbouring steps is DDPM's `beta_tilde_t`).
///
/// Errors: `eta` negative or non-finite; `eta > 0` on a step that does not remove noise;
/// `sigma > std_to` (only possible for `eta > 1`); a level with non-positive scale.
pub fn ddim_coefficients(from: Level, to: Level, eta: f64) -> Result<DdimCoefficients> {
    if !(eta.is_finite() && eta >= 0.0) {
        return Err(Error::param(
            "eta",
            format!("{eta} must be finite and >= 0"),
        ));
    }
    for l in [from, to] {
        if !(l.scale.is_finite() && l.scale > 0.0 && l.std.is_finite() && l.std >= 0.0) {
            return Err(Error::param(
                "level",
                format!("scale {} must be > 0 and std {} >= 0", l.scale, l.std),
            ));
        }
    }
    let sigma2 = if eta == 0.0 {
        0.0
    } else {
        let r = from.scale / to.scale;
        let removed = from.std * from.std - r * r * to.std * to.std;
        if from.std == 0.0 || removed < 0.0 {
            return Err(Error::param(
                "eta",
                "eta > 0 needs a step from a noisier to a less noisy level",
            ));
        }
        eta * eta * to.std * to.std * removed / (from.std * from.std)
    };
    let rest = to.std * to.std - sigma2;
    if rest < 0.0 {
        return Err(Error::param(
            "eta",
            format!("eta = {eta} makes the fresh noise exceed the target std"),
        ));
    }
    Ok(DdimCoefficients {
        x0: to.scale,
        eps: rest.sqrt(),
        sigma: sigma2.sqrt(),
    })
}
// ANCHOR_END: ddim_coefficients

// ANCHOR: ddim_step
/// One DDIM step of the points `x` from level `from` to level `to`:
/// `x0_hat = (x - std_from eps)/scale_from` (optionally clipped to `[-clip, clip]`; the model's
/// `eps` is kept, as the peers do), then `x_to = scale_to x0_hat + sqrt(std_to^2 - sigma^2) eps + sigma z`.
/// At a noiseless `from` (`std = 0`, the start of an inversion) `eps = 0` and the model is not called.
#[allow(clippy::too_many_arguments)]
pub fn ddim_step(
    model: &dyn ScoreModel,
    x: ArrayView2<f64>,
    from: Level,
    to: Level,
    eta: f64,
    clip: Option<f64>,
    noise: &mut dyn NoiseSource,
) -> Result<Array2<f64>> {
    let c = ddim_coefficients(from, to, eta)?;
    let clip = check_clip(clip)?;
    let eps = if from.std == 0.0 {
        Array2::zeros(x.dim())
    } else {
        eps_at(model, x, from)?
    };
    let mut out = Zip::from(&x).and(&eps).map_collect(|&x, &e| {
        let mut x0 = (x - from.std * e) / from.scale;
        if let Some(b) = clip {
            x0 = x0.clamp(-b, b);
        }
        c.x0 * x0 + c.eps * e
    });
    if c.sigma > 0.0 {
        let z = normal_array(x.nrows(), x.ncols(), noise);
        out.zip_mut_with(&z, |o, &z| *o += c.sigma * z);
    }
    Ok(out)
}
// ANCHOR_END: ddim_step

/// Runs DDIM steps through `levels[0] -> levels[1] -> ...`, reporting each step. Works in either
/// direction (decreasing noise samples; increasing noise with `eta = 0` encodes).
#[allow(clippy::too_many_arguments)]
pub fn ddim_levels(
    model: &dyn ScoreModel,
    x: Array2<f64>,
    levels: &[Level],
    eta: f64,
    clip: Option<f64>,
    noise: &mut dyn NoiseSource,
    progress: &mut dyn Progress,
) -> Result<Array2<f64>> {
    check_start(model, x.view())?;
    if levels.len() < 2 {
        return Err(Error::param("levels", "need at least two levels"));
    }
    let total = levels.len() - 1;
    let mut x = x;
    for (i, w) in levels.windows(2).enumerate() {
        x = ddim_step(model, x.view(), w[0], w[1], eta, clip, noise)?;
        progress.step(i + 1, total);
    }
    Ok(x)
}

/// The DDIM sampler over a beta schedule.
#[derive(Clone, Debug, PartialEq)]
pub struct Ddim {
    schedule: BetaSchedule,
    timesteps: Vec<usize>,
    final_alpha: FinalAlpha,
    eta: f64,
    clip: Option<f64>,
    prev_rule: PrevRule,
}

impl Ddim {
    /// `steps` timesteps chosen by `spacing`. Errors: bad `steps` or `eta`.
    pub fn new(
        schedule: BetaSchedule,
        steps: usize,
        spacing: Spacing,
        final_alpha: FinalAlpha,
        eta: f64,
    ) -> Result<Self> {
        let ts = timesteps(schedule.steps(), steps, spacing)?;
        Self::with_timesteps(schedule, ts, final_alpha, eta)
    }

    /// An explicit list of 0-based timesteps, strictly decreasing and below `T`.
    pub fn with_timesteps(
        schedule: BetaSchedule,
        timesteps: Vec<usize>,
        final_alpha: FinalAlpha,
        eta: f64,
    ) -> Result<Self> {
        if !(eta.is_finite() && eta >= 0.0) {
            return Err(Error::param(
                "eta",
                format!("{eta} must be finite and >= 0"),
            ));
        }
        if timesteps.is_empty()
            || timesteps.windows(2).any(|w| w[1] >= w[0])
            || timesteps[0] >= schedule.steps()
        {
            return Err(Error::param(
                "timesteps",
                format!(
                    "need a non-empty strictly decreasing list below {}",
                    schedule.steps()
                ),
            ));
        }
        Ok(Self {
            schedule,
            timesteps,
            final_alpha,
            eta,
            clip: None,
            prev_rule: PrevRule::NextInSequence,
        })
    }

    /// Chooses where each step lands (default [`PrevRule::NextInSequence`]). With
    /// [`PrevRule::FixedStride`] the stride is `T div S`, `S` the number of timesteps.
    pub fn with_prev_rule(mut self, rule: PrevRule) -> Self {
        self.prev_rule = rule;
        self
    }

    /// Clip `x0_hat` to `[-bound, bound]` (off by default).
    pub fn with_clip(mut self, bound: Option<f64>) -> Result<Self> {
        self.clip = check_clip(bound)?;
        Ok(self)
    }

    /// The 0-based timesteps, descending.
    pub fn timesteps(&self) -> &[usize] {
        &self.timesteps
    }

    /// The level after the last step: `alpha_bar = 1` ([`FinalAlpha::One`], model input `t = 0`)
    /// or the level of index 0 ([`FinalAlpha::First`]).
    pub fn final_level(&self) -> Result<Level> {
        match self.final_alpha {
            FinalAlpha::One => Ok(Level {
                t: 0.0,
                scale: 1.0,
                std: 0.0,
            }),
            FinalAlpha::First => self.schedule.level(1),
        }
    }

    /// The levels visited: each timestep's level (index `k` -> Ho step `k + 1`), then the final.
    pub fn levels(&self) -> Result<Vec<Level>> {
        let mut v = self
            .timesteps
            .iter()
            .map(|&k| self.schedule.level(k + 1))
            .collect::<Result<Vec<_>>>()?;
        v.push(self.final_level()?);
        Ok(v)
    }

    // ANCHOR: step_pairs
    /// The `(from, to)` levels of each step under the previous-step rule: with
    /// [`PrevRule::NextInSequence`] consecutive entries of [`Ddim::levels`]; with
    /// [`PrevRule::FixedStride`] from timestep `k` to index `k - T div S` (the final level when
    /// that is negative).
    pub fn step_levels(&self) -> Result<Vec<(Level, Level)>> {
        let levels = self.levels()?;
        match self.prev_rule {
            PrevRule::NextInSequence => Ok(levels.windows(2).map(|w| (w[0], w[1])).collect()),
            PrevRule::FixedStride => {
                let stride = self.schedule.steps() / self.timesteps.len();
                self.timesteps
                    .iter()
                    .zip(&levels)
                    .map(|(&k, &from)| {
                        let to = match k.checked_sub(stride) {
                            Some(p) => self.schedule.level(p + 1)?,
                            None => self.final_level()?,
                        };
                        Ok((from, to))
                    })
                    .collect()
            }
        }
    }
    // ANCHOR_END: step_pairs

    /// Step `i` (0-based, of `timesteps().len()`) alone, from `x` at the level of timestep `i`
    /// to the level the previous-step rule picks. Errors: `i` out of range, as [`ddim_step`].
    pub fn step(
        &self,
        model: &dyn ScoreModel,
        x: ArrayView2<f64>,
        i: usize,
        noise: &mut dyn NoiseSource,
    ) -> Result<Array2<f64>> {
        check_start(model, x)?;
        let pairs = self.step_levels()?;
        let &(from, to) = pairs.get(i).ok_or_else(|| {
            Error::param("i", format!("step {i} of a {}-step sampler", pairs.len()))
        })?;
        ddim_step(model, x, from, to, self.eta, self.clip, noise)
    }

    /// Runs the sampler from `x` at the first timestep's level.
    pub fn sample_from(
        &self,
        model: &dyn ScoreModel,
        x: Array2<f64>,
        noise: &mut dyn NoiseSource,
        progress: &mut dyn Progress,
    ) -> Result<Array2<f64>> {
        if self.prev_rule == PrevRule::NextInSequence {
            return ddim_levels(
                model,
                x,
                &self.levels()?,
                self.eta,
                self.clip,
                noise,
                progress,
            );
        }
        check_start(model, x.view())?;
        let pairs = self.step_levels()?;
        let mut x = x;
        for (i, &(from, to)) in pairs.iter().enumerate() {
            x = ddim_step(model, x.view(), from, to, self.eta, self.clip, noise)?;
            progress.step(i + 1, pairs.len());
        }
        Ok(x)
    }

    /// `n` samples from `x ~ N(0, I)` drawn from `noise`.
    pub fn sample(
        &self,
        model: &dyn ScoreModel,
        n: usize,
        noise: &mut dyn NoiseSource,
        progress: &mut dyn Progress,
    ) -> Result<Array2<f64>> {
        let x = normal_array(n, model.dim(), noise);
        self.sample_from(model, x, noise, progress)
    }

    // ANCHOR: invert
    /// DDIM inversion (ledger Bc21): the deterministic (`eta = 0`) steps run backwards, from
    /// the final level up to the first timestep's level, each using the noise predicted at the
    /// level it starts from. Decoding the result with an `eta = 0` sampler returns `x0` up to
    /// the discretisation error. Inversion always runs through the scheduled levels
    /// ([`PrevRule::NextInSequence`]): the fixed-stride rule does not form a chain.
    pub fn invert(
        &self,
        model: &dyn ScoreModel,
        x0: Array2<f64>,
        progress: &mut dyn Progress,
    ) -> Result<Array2<f64>> {
        let mut levels = self.levels()?;
        levels.reverse();
        let mut silent = NoNoise;
        ddim_levels(model, x0, &levels, 0.0, None, &mut silent, progress)
    }
    // ANCHOR_END: invert
}

/// A noise source for deterministic runs: never called with `eta = 0`.
struct NoNoise;

impl NoiseSource for NoNoise {
    fn fill_normal(&mut self, out: &mut [f64]) {
        out.fill(0.0);
    }
}
