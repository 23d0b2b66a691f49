//! The resolved configuration of a training run.

use super::importance::TimeSampling;
use super::net::ModelSpec;
use crate::engine::optim::AdamConfig;
use crate::error::{Error, Result};
use crate::loss::{Prediction, Weighting};
use crate::schedule::beta::BetaSchedule;
use crate::sde::{Sde, SubVpSde, VeSde, VpSde};

/// Which forward SDE defines the perturbation kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SdeKind {
    /// Variance preserving, beta from 0.1 to 20 (ledger D11).
    Vp,
    /// Sub-VP, same beta (ledger D12).
    SubVp,
    /// Variance exploding, sigma from 0.01 to `ve_sigma_max` (ledger D9).
    Ve,
}

impl SdeKind {
    /// The SDE with its default schedule (`ve_sigma_max` for VE).
    pub fn build(&self, ve_sigma_max: f64) -> Result<Box<dyn Sde>> {
        Ok(match self {
            SdeKind::Vp => Box::new(VpSde::default()),
            SdeKind::SubVp => Box::new(SubVpSde::new(Default::default(), 1000)?),
            SdeKind::Ve => Box::new(VeSde::new(
                crate::schedule::continuous::GeometricSigma::new(0.01, ve_sigma_max)?,
                1000,
            )?),
        })
    }

    /// The name used on the command line and in `config.json`.
    pub fn name(&self) -> &'static str {
        match self {
            SdeKind::Vp => "vp",
            SdeKind::SubVp => "subvp",
            SdeKind::Ve => "ve",
        }
    }
}

/// What the network is trained to minimise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Objective {
    /// Continuous-time denoising score matching for the SDE (ledger D7), the network
    /// predicting the noise.
    Dsm,
    /// Sliced score matching on samples of `p_t` (ledger Dc31): no kernel score needed.
    Ssm,
    /// DDPM `L_simple` over the discrete chain of [`ddpm_schedule`] (ledger Ac09), the
    /// network predicting `eps`, `x0` or `v`; its time input is `t / T`.
    Ddpm(Prediction),
}

impl Objective {
    /// The name used on the command line and in `config.json`.
    pub fn name(&self) -> &'static str {
        match self {
            Objective::Dsm => "dsm",
            Objective::Ssm => "ssm",
            Objective::Ddpm(_) => "ddpm",
        }
    }

    /// The prediction target (`eps` except for DDPM's `x0` and `v`).
    pub fn prediction(&self) -> Prediction {
        match self {
            Objective::Ddpm(p) => *p,
            _ => Prediction::Eps,
        }
    }
}

/// The name of a prediction target.
pub fn prediction_name(p: Prediction) -> &'static str {
    match p {
        Prediction::Eps => "eps",
        Prediction::X0 => "x0",
        Prediction::V => "v",
    }
}

/// Number of steps `T` of the DDPM chain.
pub const DDPM_STEPS: usize = 1000;

/// The DDPM chain: linear betas `1e-4 .. 0.02` over `T = 1000` steps (Ho et al.), the
/// discretisation of the default VP SDE (`beta_i = beta(i/T)/T`), so a chain model is also a
/// model of the VP SDE's score at `t = i / T`.
pub fn ddpm_schedule() -> Result<BetaSchedule> {
    BetaSchedule::linear(DDPM_STEPS, 1e-4, 0.02)
}

/// Everything that determines a run. Two runs with equal configurations produce the same
/// bits; `steps` may grow when resuming.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    /// The data's name (`digits`, `ring8`, `mnist`, ...), recorded for `sample` and the
    /// run directory.
    pub data: String,
    /// The network.
    pub model: ModelSpec,
    /// The forward SDE.
    pub sde: SdeKind,
    /// `sigma_max` of the VE SDE (ignored otherwise).
    pub ve_sigma_max: f64,
    /// The objective.
    pub objective: Objective,
    /// DSM/SSM weighting `lambda(t)`.
    pub weighting: Weighting,
    /// How training times are drawn (DSM/SSM).
    pub time_sampling: TimeSampling,
    /// Adam, warm-up and clipping.
    pub adam: AdamConfig,
    /// EMA decay of the parameters used for sampling.
    pub ema_decay: f64,
    /// Batch size.
    pub batch: usize,
    /// Total optimiser steps.
    pub steps: u64,
    /// Seed of initialisation, batches, times and noise.
    pub seed: u64,
    /// Training times lie in `[t_eps, 1]`.
    pub t_eps: f64,
    /// Write a checkpoint every this many steps (and at the end).
    pub checkpoint_every: u64,
    /// Stop when the loss exceeds this (divergence), or is not finite.
    pub max_loss: f64,
}

impl TrainConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        self.adam.validate()?;
        if !(0.0..1.0).contains(&self.ema_decay) {
            return Err(Error::param(
                "ema",
                format!("decay {} is not in [0, 1)", self.ema_decay),
            ));
        }
        if self.batch == 0 {
            return Err(Error::param("batch", "must be at least 1"));
        }
        if self.steps == 0 {
            return Err(Error::param("steps", "must be at least 1"));
        }
        if !(self.t_eps > 0.0 && self.t_eps < 1.0) {
            return Err(Error::param(
                "t_eps",
                format!("{} is not in (0, 1)", self.t_eps),
            ));
        }
        if self.checkpoint_every == 0 {
            return Err(Error::param("checkpoint_every", "must be at least 1"));
        }
        if self.max_loss.is_nan() || self.max_loss <= 0.0 {
            return Err(Error::param("max_loss", "must be positive"));
        }
        if matches!(self.objective, Objective::Ddpm(_))
            && (self.time_sampling != TimeSampling::Uniform || self.sde != SdeKind::Vp)
        {
            return Err(Error::param(
                "objective",
                "ddpm trains on its own chain (the VP discretisation): it takes neither --sde ve/subvp nor importance t-sampling",
            ));
        }
        if !(self.ve_sigma_max > 0.01 && self.ve_sigma_max.is_finite()) {
            return Err(Error::param("ve_sigma_max", "must exceed sigma_min = 0.01"));
        }
        Ok(())
    }

    /// Everything but `steps`, as JSON: a resumed run must match it exactly.
    pub fn identity_json(&self) -> String {
        let a = &self.adam;
        format!(
            "{{\"data\":\"{}\",\"model\":{},\"sde\":\"{}\",\"ve_sigma_max\":{:?},\"objective\":\"{}\",\"prediction\":\"{}\",\"weighting\":\"{}\",\"t_sampling\":\"{}\",\"lr\":{:?},\"beta1\":{:?},\"beta2\":{:?},\"eps\":{:?},\"warmup\":{},\"clip_norm\":{},\"ema_decay\":{:?},\"batch\":{},\"seed\":{},\"t_eps\":{:?},\"checkpoint_every\":{},\"max_loss\":{:?}}}",
            self.data,
            self.model.to_json(),
            self.sde.name(),
            self.ve_sigma_max,
            self.objective.name(),
            prediction_name(self.objective.prediction()),
            match self.weighting {
                Weighting::SigmaSquared => "sigma2",
                Weighting::Likelihood => "likelihood",
            },
            self.time_sampling.name(),
            a.lr,
            a.beta1,
            a.beta2,
            a.eps,
            a.warmup,
            a.clip_norm.map_or("null".into(), |c| format!("{c:?}")),
            self.ema_decay,
            self.batch,
            self.seed,
            self.t_eps,
            self.checkpoint_every,
            self.max_loss
        )
    }

    /// The full configuration as JSON (`config.json` of the run directory).
    pub fn to_json(&self) -> String {
        let id = self.identity_json();
        format!("{{\"steps\":{},{}", self.steps, &id[1..])
    }
}
