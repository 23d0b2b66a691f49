//! The training loop: continuous-time denoising score matching (ledger D7) of a
//! noise-prediction network for any SDE, with Adam, warm-up, clipping and EMA, a run directory
//! (config, metrics, checkpoints written atomically) and bit-identical resumption.
//!
//! Determinism: the batch, times and noise of step `k` come from `rng::stream(seed, k)` alone,
//! and the optimiser and EMA state live in the checkpoint, so stopping after step `j` and
//! resuming gives the same bits as never stopping.
//!
//! Safety: the loss of step `k` is computed with the parameters after step `k − 1`; only when
//! it is finite and below `max_loss` is that state checkpointed (if due) and updated. A
//! diverging run stops with [`Error::NonFinite`] and never overwrites the last good checkpoint.

use crate::data::{Dataset, Toy};
use crate::engine::checkpoint;
use crate::engine::optim::{Adam, Ema};
use crate::engine::{Graph, ParamStore, Tensor};
use crate::error::{Error, Result};
use crate::loss;
use crate::rng::{self, Rng};
use crate::schedule::beta::BetaSchedule;
use crate::sde::Sde;
use ndarray::{Array2, Axis};
use rand::Rng as _;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

pub mod config;
pub mod importance;
pub mod net;
pub mod run;
pub mod sample;

pub use config::{Objective, SdeKind, TrainConfig};
pub use importance::{ImportanceTime, TimeSampling};
pub use net::{ModelSpec, Net, NetScore};
pub use run::RunDir;

/// Where training batches come from.
#[derive(Clone, Debug)]
pub enum Source {
    /// Fresh draws from a 2-D toy every step.
    Toy(Toy),
    /// Uniform draws (with replacement) from a finite dataset.
    Data(Dataset),
}

impl Source {
    /// Dimension of a point.
    pub fn dim(&self) -> usize {
        match self {
            Source::Toy(_) => 2,
            Source::Data(d) => d.dim(),
        }
    }

    /// `n` points drawn with `rng`.
    pub fn batch(&self, n: usize, rng: &mut Rng) -> Array2<f64> {
        match self {
            Source::Toy(t) => t.sample(n, rng),
            Source::Data(d) => {
                let idx: Vec<usize> = (0..n).map(|_| rng.random_range(0..d.len())).collect();
                d.x.select(Axis(0), &idx)
            }
        }
    }
}

/// What one step did, for progress displays.
#[derive(Clone, Copy, Debug)]
pub struct StepReport {
    /// Step number (1-based).
    pub step: u64,
    /// Total steps of the run.
    pub steps: u64,
    /// The loss of this step's batch (before the update).
    pub loss: f64,
    /// Learning rate used.
    pub lr: f64,
    /// Gradient norm before clipping (NaN without clipping).
    pub grad_norm: f64,
    /// Seconds since this session started.
    pub elapsed: f64,
}

/// A model, its optimiser and EMA, and the SDE it is trained for.
pub struct Trainer {
    /// The configuration.
    pub config: TrainConfig,
    /// The network.
    pub net: Net,
    /// Its parameters.
    pub store: ParamStore<f32>,
    /// Adam state (its step count is the number of steps taken).
    pub adam: Adam<f32>,
    /// The parameter EMA.
    pub ema: Ema<f32>,
    sde: Box<dyn Sde>,
    importance: Option<ImportanceTime>,
    chain: Option<BetaSchedule>,
    /// When set (e.g. by a Ctrl-C handler), [`Trainer::train`] stops after the current step,
    /// checks and checkpoints the state as at the end of a run, and returns `Ok`.
    pub stop: Option<Arc<AtomicBool>>,
}

/// Relative step `c` of the central difference in sliced score matching: `h = c sigma(t)`.
pub const SSM_STEP: f64 = 0.05;

/// Cells of the importance density of `t`.
pub const IMPORTANCE_CELLS: usize = 4096;

const META_CONFIG: &str = "train_config";

impl Trainer {
    /// A freshly initialised model.
    pub fn new(config: TrainConfig) -> Result<Trainer> {
        config.validate()?;
        let mut store = ParamStore::new();
        let net = Net::new(&config.model, &mut store, config.seed)?;
        let adam = Adam::new(config.adam.clone(), &store)?;
        let ema = Ema::new(&store, config.ema_decay)?;
        let sde = config.sde.build(config.ve_sigma_max)?;
        let importance = match config.time_sampling {
            TimeSampling::Importance => Some(ImportanceTime::new(
                sde.as_ref(),
                config.weighting,
                config.t_eps,
                IMPORTANCE_CELLS,
            )?),
            TimeSampling::Uniform => None,
        };
        let chain = match config.objective {
            Objective::Ddpm(_) => Some(config::ddpm_schedule()?),
            _ => None,
        };
        Ok(Trainer {
            config,
            net,
            store,
            adam,
            ema,
            sde,
            importance,
            chain,
            stop: None,
        })
    }

    /// Steps taken so far.
    pub fn step_count(&self) -> u64 {
        self.adam.step_count()
    }

    /// The SDE.
    pub fn sde(&self) -> &dyn Sde {
        self.sde.as_ref()
    }

    /// Training times of a batch of `n` and the reweight of each (1 for uniform times).
    fn draw_times(&self, n: usize, r: &mut Rng) -> (Vec<f64>, Vec<f64>) {
        let (t_eps, t_end) = (self.config.t_eps, self.sde.t_end());
        match &self.importance {
            None => (
                (0..n)
                    .map(|_| t_eps + (t_end - t_eps) * r.random::<f64>())
                    .collect(),
                vec![1.0; n],
            ),
            Some(q) => (0..n).map(|_| q.draw(r)).unzip(),
        }
    }

    // ANCHOR: loss_at
    /// The graph and loss of step `k` (its batch depends only on `(seed, k)`).
    fn loss_at(&self, k: u64, source: &Source) -> Result<(Graph<f32>, Tensor<f32>)> {
        let mut r = rng::stream(self.config.seed, k);
        let x0 = source.batch(self.config.batch, &mut r);
        let mut g = Graph::<f32>::new();
        let to_f32 = |a: &Array2<f64>| {
            Tensor::from_vec(
                &[a.nrows(), a.ncols()],
                a.iter().map(|&v| v as f32).collect(),
            )
        };
        let l = match self.config.objective {
            Objective::Ddpm(prediction) => {
                // Algorithm 1: t ~ U{1..T}, x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps.
                let chain = self.chain.as_ref().expect("chain of a ddpm objective");
                let b = loss::perturb_ddpm(chain, x0.view(), &mut r)?;
                let tau: Vec<f64> = b.t.iter().map(|t| t / chain.steps() as f64).collect();
                let out = self.net.eps(&mut g, &self.store, &to_f32(&b.xt)?, &tau)?;
                loss::ddpm_simple(&mut g, &out, &b, prediction)?
            }
            Objective::Dsm => {
                let (t, reweight) = self.draw_times(x0.nrows(), &mut r);
                let b = loss::perturb_sde_at(self.sde.as_ref(), x0.view(), t, &mut r)?;
                let out = self.net.eps(&mut g, &self.store, &to_f32(&b.xt)?, &b.t)?;
                let w = self.row_weights(&b, &reweight)?;
                loss::weighted_squared_error(&mut g, &out, &b.eps, &w)?
            }
            Objective::Ssm => {
                // x(t) ~ p_t by the kernel; the score's directional derivative along Gaussian
                // probes v by central differences of step h = c sigma(t).
                let (t, reweight) = self.draw_times(x0.nrows(), &mut r);
                let b = loss::perturb_sde_at(self.sde.as_ref(), x0.view(), t, &mut r)?;
                let mut v = Array2::<f64>::zeros(b.xt.raw_dim());
                crate::rng::NoiseSource::fill_normal(
                    &mut r,
                    v.as_slice_mut().expect("standard layout"),
                );
                let mut xp = b.xt.clone();
                let mut xm = b.xt.clone();
                for i in 0..b.len() {
                    let h = SSM_STEP * b.std[i];
                    xp.row_mut(i).scaled_add(h, &v.row(i));
                    xm.row_mut(i).scaled_add(-h, &v.row(i));
                }
                let ep = self.net.eps(&mut g, &self.store, &to_f32(&xp)?, &b.t)?;
                let em = self.net.eps(&mut g, &self.store, &to_f32(&xm)?, &b.t)?;
                let w = self.row_weights(&b, &reweight)?;
                loss::sliced_score_matching_eps(&mut g, &ep, &em, &v, SSM_STEP, &w)?
            }
        };
        Ok((g, l))
    }
    // ANCHOR_END: loss_at

    /// `lambda(t) / sigma(t)²` times the importance reweight, per row.
    fn row_weights(&self, b: &loss::Perturbed, reweight: &[f64]) -> Result<Vec<f64>> {
        b.t.iter()
            .zip(reweight)
            .map(|(&t, &q)| {
                importance::eps_weight(self.sde.as_ref(), self.config.weighting, t).map(|w| w * q)
            })
            .collect()
    }

    fn check_loss(&self, k: u64, l: f64, last_good: &Option<(u64, PathBuf)>) -> Result<()> {
        if l.is_finite() && l <= self.config.max_loss {
            return Ok(());
        }
        let why = if l.is_finite() {
            format!(
                "loss {l:.3e} exceeds max_loss {:.1e} (the run is diverging)",
                self.config.max_loss
            )
        } else {
            format!("loss is {l}")
        };
        let keep = match last_good {
            Some((s, p)) => format!(
                "the last good checkpoint (step {s}) is kept at {}",
                p.display()
            ),
            None => "no checkpoint was written".to_string(),
        };
        Err(Error::NonFinite(format!(
            "training stopped at step {k}: {why}; lower the learning rate (now {:e}) or clip gradients; {keep}",
            self.config.adam.lr
        )))
    }

    /// Checkpoint metadata: the configuration and the model.
    pub fn metadata(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        m.insert(META_CONFIG.into(), self.config.identity_json());
        m.insert("model_config".into(), self.config.model.to_json());
        m.insert("steps_planned".into(), self.config.steps.to_string());
        m
    }

    /// Writes parameters, Adam and EMA atomically to `path`.
    pub fn save(&self, path: &Path) -> Result<()> {
        checkpoint::save(
            path,
            &self.store,
            Some(&self.adam),
            Some(&self.ema),
            &self.metadata(),
        )
    }

    /// Loads a checkpoint written by [`Trainer::save`] with the same configuration (apart from
    /// `steps`); nothing changes unless it fits.
    pub fn resume(&mut self, path: &Path) -> Result<()> {
        let bytes = std::fs::read(path)
            .map_err(|e| Error::Checkpoint(format!("{}: {e}", path.display())))?;
        let mut store = self.store.clone();
        let mut adam = self.adam.clone();
        let mut ema = self.ema.clone();
        let meta =
            checkpoint::from_safetensors(&bytes, &mut store, Some(&mut adam), Some(&mut ema))
                .map_err(|e| Error::Checkpoint(format!("{}: {e}", path.display())))?;
        let want = self.config.identity_json();
        match meta.get(META_CONFIG) {
            Some(c) if *c == want => {}
            Some(c) => {
                return Err(Error::Checkpoint(format!(
                    "{} was trained with a different configuration:\n  checkpoint: {c}\n  now:        {want}",
                    path.display()
                )))
            }
            None => return Err(Error::Checkpoint(format!("{}: no training configuration", path.display()))),
        }
        self.store = store;
        self.adam = adam;
        self.ema = ema;
        Ok(())
    }

    /// Trains from the current step to `config.steps`. With a run directory, checkpoints every
    /// `checkpoint_every` steps and at the end, and appends to `metrics.csv`. `on_step` sees
    /// every step.
    pub fn train(
        &mut self,
        source: &Source,
        run: Option<&RunDir>,
        on_step: &mut dyn FnMut(&StepReport),
    ) -> Result<()> {
        if source.dim() != self.net.data_dim() {
            return Err(Error::Shape(format!(
                "data of dimension {}, the model takes {}",
                source.dim(),
                self.net.data_dim()
            )));
        }
        let start = Instant::now();
        let mut last_good: Option<(u64, PathBuf)> = run
            .map(|r| r.checkpoint_path())
            .filter(|p| p.is_file())
            .map(|p| (self.step_count(), p));
        let mut rows: Vec<String> = Vec::new();
        let total = self.config.steps;
        while self.step_count() < total {
            if self.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst)) {
                break;
            }
            let k = self.step_count() + 1;
            let (g, l) = self.loss_at(k, source)?;
            let lv = l.item() as f64;
            self.check_loss(k, lv, &last_good)?;
            // The state after step k-1 has a sane loss: checkpoint it if due.
            if let Some(r) = run {
                if k > 1 && (k - 1).is_multiple_of(self.config.checkpoint_every) {
                    r.append_metrics(&std::mem::take(&mut rows))?;
                    self.save(&r.checkpoint_path())?;
                    last_good = Some((k - 1, r.checkpoint_path()));
                }
            }
            let grads = g.backward(&l)?;
            let info = self
                .adam
                .step(&mut self.store, &grads)
                .map_err(|e| match e {
                    Error::NonFinite(m) => Error::NonFinite(format!(
                        "training stopped at step {k}: {m}; {}",
                        last_good.as_ref().map_or(
                            "no checkpoint was written".to_string(),
                            |(s, p)| format!(
                                "the last good checkpoint (step {s}) is kept at {}",
                                p.display()
                            )
                        )
                    )),
                    e => e,
                })?;
            self.ema.update(&self.store)?;
            let rep = StepReport {
                step: k,
                steps: total,
                loss: lv,
                lr: info.lr,
                grad_norm: info.grad_norm,
                elapsed: start.elapsed().as_secs_f64(),
            };
            rows.push(format!(
                "{},{:e},{:e},{:e},{:.3}",
                k, lv, info.lr, info.grad_norm, rep.elapsed
            ));
            on_step(&rep);
        }
        // Final state: check it on the next batch before writing it.
        if let Some(r) = run {
            let k = self.step_count() + 1;
            let (_, l) = self.loss_at(k, source)?;
            self.check_loss(k, l.item() as f64, &last_good)?;
            r.append_metrics(&rows)?;
            self.save(&r.checkpoint_path())?;
        }
        Ok(())
    }

    /// The score model of the EMA parameters (continuous time `t` in `[0, 1]` as the level's
    /// time; see [`NetScore::for_chain`] for the DDPM sampler's step indices).
    pub fn score_model(&self) -> Result<NetScore> {
        Ok(
            NetScore::new(self.net.clone(), self.ema.averaged(&self.store)?)
                .with_prediction(self.config.objective.prediction()),
        )
    }
}
