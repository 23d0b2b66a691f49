//! Optimisers for the engine's parameters: Adam and AdamW with bias correction, global
//! gradient-norm clipping, linear learning-rate warm-up, and the exponential moving average
//! of parameters (ledger A1.18, 000 eq. 1.18).
//!
//! State is indexed by [`ParamId`]; the arithmetic of an update is done in `f64` and rounded
//! once to the element type.

use ndarray::{ArrayD, Zip};

use crate::engine::{Element, Grads, ParamId, ParamStore};
use crate::error::{Error, Result};

/// How weight decay enters the update.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum WeightDecay {
    /// Adam with L2 penalty: `g ← g + λ θ` before the moments (PyTorch `Adam(weight_decay=λ)`).
    L2(f64),
    /// AdamW, decoupled: `θ ← θ − lr λ θ` before the Adam step (PyTorch `AdamW`).
    Decoupled(f64),
}

/// Hyper-parameters of [`Adam`]. [`Default`]: lr 1e-3, betas (0.9, 0.999), eps 1e-8, no weight
/// decay, no warm-up, no clipping (PyTorch's defaults).
#[derive(Clone, Debug, PartialEq)]
pub struct AdamConfig {
    /// Peak learning rate.
    pub lr: f64,
    /// First-moment decay β₁.
    pub beta1: f64,
    /// Second-moment decay β₂.
    pub beta2: f64,
    /// Added to `sqrt(v̂)`.
    pub eps: f64,
    /// Weight decay, if any.
    pub weight_decay: Option<WeightDecay>,
    /// Linear warm-up over this many steps (0: none).
    pub warmup: u64,
    /// Clip the global L2 norm of the gradient to this value.
    pub clip_norm: Option<f64>,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: None,
            warmup: 0,
            clip_norm: None,
        }
    }
}

impl AdamConfig {
    /// Checks every field's domain.
    pub fn validate(&self) -> Result<()> {
        let pos = |x: f64| x > 0.0 && x.is_finite();
        if !pos(self.lr) {
            return Err(Error::param(
                "lr",
                format!("must be positive, got {}", self.lr),
            ));
        }
        for (name, b) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&b) {
                return Err(Error::param(name, format!("must be in [0, 1), got {b}")));
            }
        }
        if !pos(self.eps) {
            return Err(Error::param(
                "eps",
                format!("must be positive, got {}", self.eps),
            ));
        }
        if let Some(WeightDecay::L2(l) | WeightDecay::Decoupled(l)) = self.weight_decay {
            if !(l >= 0.0 && l.is_finite()) {
                return Err(Error::param(
                    "weight_decay",
                    format!("must be >= 0, got {l}"),
                ));
            }
        }
        if let Some(c) = self.clip_norm {
            if !pos(c) {
                return Err(Error::param(
                    "clip_norm",
                    format!("must be positive, got {c}"),
                ));
            }
        }
        Ok(())
    }
}

// ANCHOR: warmup
/// Learning rate of step `t` (1-based) under linear warm-up over `w` steps:
/// `lr_t = lr · min(1, t / w)` (`lr` when `w = 0`).
pub fn warmup_lr(lr: f64, t: u64, w: u64) -> f64 {
    if w == 0 {
        lr
    } else {
        lr * (t as f64 / w as f64).min(1.0)
    }
}
// ANCHOR_END: warmup

// ANCHOR: clip
/// The global L2 norm `‖g‖ = sqrt(Σ_p Σ_i g_{p,i}²)` of the gradients of all parameters of
/// `store` (accumulated in `f64`, in parameter order: the same bits for any thread count), and
/// the factor `c = min(1, max_norm / ‖g‖)` that clipping multiplies every gradient by.
pub fn clip_factor<E: Element>(
    store: &ParamStore<E>,
    grads: &Grads<E>,
    max_norm: f64,
) -> (f64, f64) {
    let mut ss = 0.0f64;
    for id in store.ids() {
        if let Some(g) = grads.param(id) {
            ss += g.iter().map(|&x| x.to_f64() * x.to_f64()).sum::<f64>();
        }
    }
    let norm = ss.sqrt();
    let c = if norm > max_norm {
        max_norm / norm
    } else {
        1.0
    };
    (norm, c)
}
// ANCHOR_END: clip

/// What one optimiser step did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepInfo {
    /// The step number (1-based).
    pub step: u64,
    /// The learning rate used.
    pub lr: f64,
    /// The global gradient norm before clipping.
    pub grad_norm: f64,
    /// The clipping factor applied (1 when not clipped).
    pub clip: f64,
}

/// Adam / AdamW (Kingma & Ba; Loshchilov & Hutter) with bias correction.
#[derive(Clone, Debug)]
pub struct Adam<E: Element> {
    /// Hyper-parameters.
    pub config: AdamConfig,
    pub(crate) step: u64,
    pub(crate) m: Vec<ArrayD<E>>,
    pub(crate) v: Vec<ArrayD<E>>,
}

impl<E: Element> Adam<E> {
    /// Zero moments shaped like every parameter of `store`.
    pub fn new(config: AdamConfig, store: &ParamStore<E>) -> Result<Self> {
        config.validate()?;
        let zeros = || {
            store
                .iter()
                .map(|(_, _, a)| ArrayD::zeros(a.raw_dim()))
                .collect()
        };
        Ok(Adam {
            config,
            step: 0,
            m: zeros(),
            v: zeros(),
        })
    }

    /// Number of steps taken.
    pub fn step_count(&self) -> u64 {
        self.step
    }

    /// First moment of a parameter.
    pub fn m(&self, id: ParamId) -> &ArrayD<E> {
        &self.m[id.0]
    }

    /// Second moment of a parameter.
    pub fn v(&self, id: ParamId) -> &ArrayD<E> {
        &self.v[id.0]
    }

    // ANCHOR: adam_step
    /// One step. With `c` the clipping factor, `g ← c g` (plus `λθ` for L2 decay),
    /// `m ← β₁ m + (1−β₁) g`, `v ← β₂ v + (1−β₂) g²`,
    /// `θ ← θ − lr_t (m / (1−β₁ᵗ)) / (sqrt(v / (1−β₂ᵗ)) + ε)`, and for AdamW first
    /// `θ ← θ (1 − lr_t λ)`. Parameters without a gradient are left alone (their moments too).
    pub fn step(&mut self, store: &mut ParamStore<E>, grads: &Grads<E>) -> Result<StepInfo> {
        if store.len() != self.m.len() {
            return Err(Error::Shape(format!(
                "optimiser has {} parameters, store {}",
                self.m.len(),
                store.len()
            )));
        }
        let cfg = &self.config;
        let (grad_norm, clip) = match cfg.clip_norm {
            Some(c) => clip_factor(store, grads, c),
            None => (f64::NAN, 1.0),
        };
        if cfg.clip_norm.is_some() && !grad_norm.is_finite() {
            return Err(Error::NonFinite(format!("gradient norm {grad_norm}")));
        }
        self.step += 1;
        let t = self.step;
        let lr = warmup_lr(cfg.lr, t, cfg.warmup);
        let (b1, b2, eps) = (cfg.beta1, cfg.beta2, cfg.eps);
        let bc1 = 1.0 - b1.powi(t as i32);
        let bc2 = 1.0 - b2.powi(t as i32);
        let (l2, decay) = match cfg.weight_decay {
            Some(WeightDecay::L2(l)) => (l, 1.0),
            Some(WeightDecay::Decoupled(l)) => (0.0, 1.0 - lr * l),
            None => (0.0, 1.0),
        };
        let ids: Vec<ParamId> = store.ids().collect();
        for id in ids {
            let Some(g) = grads.param(id) else { continue };
            let theta = store.get_mut(id);
            if g.shape() != theta.shape() {
                return Err(Error::Shape(format!(
                    "gradient {:?} for parameter {:?}",
                    g.shape(),
                    theta.shape()
                )));
            }
            Zip::from(theta)
                .and(&mut self.m[id.0])
                .and(&mut self.v[id.0])
                .and(g)
                .for_each(|th, m, v, &g| {
                    let th0 = th.to_f64();
                    let g = clip * g.to_f64() + l2 * th0;
                    let mn = b1 * m.to_f64() + (1.0 - b1) * g;
                    let vn = b2 * v.to_f64() + (1.0 - b2) * g * g;
                    *m = <E as Element>::from_f64(mn);
                    *v = <E as Element>::from_f64(vn);
                    let upd = lr * (mn / bc1) / ((vn / bc2).sqrt() + eps);
                    *th = <E as Element>::from_f64(th0 * decay - upd);
                });
        }
        Ok(StepInfo {
            step: t,
            lr,
            grad_norm,
            clip,
        })
    }
    // ANCHOR_END: adam_step
}

/// Exponential moving average of parameters, `θ' ← m θ' + (1 − m) θ` (ledger A1.18,
/// 000 eq. 1.18), with `m` the decay (e.g. 0.999 or 0.9999) and `θ'` starting at `θ`.
#[derive(Clone, Debug)]
pub struct Ema<E: Element> {
    /// The decay `m` in `[0, 1]`.
    pub decay: f64,
    pub(crate) shadow: Vec<ArrayD<E>>,
}

impl<E: Element> Ema<E> {
    /// A shadow copy of every parameter of `store`.
    pub fn new(store: &ParamStore<E>, decay: f64) -> Result<Self> {
        if !(0.0..=1.0).contains(&decay) {
            return Err(Error::param(
                "decay",
                format!("must be in [0, 1], got {decay}"),
            ));
        }
        Ok(Ema {
            decay,
            shadow: store.iter().map(|(_, _, a)| a.clone()).collect(),
        })
    }

    // ANCHOR: ema
    /// `θ' ← m θ' + (1 − m) θ` for every parameter (in `f64`, rounded once).
    pub fn update(&mut self, store: &ParamStore<E>) -> Result<()> {
        if store.len() != self.shadow.len() {
            return Err(Error::Shape("EMA and store differ in parameters".into()));
        }
        let m = self.decay;
        for (id, _, theta) in store.iter() {
            Zip::from(&mut self.shadow[id.0])
                .and(theta)
                .for_each(|s, &th| {
                    *s = <E as Element>::from_f64(m * s.to_f64() + (1.0 - m) * th.to_f64());
                });
        }
        Ok(())
    }
    // ANCHOR_END: ema

    /// The averaged value of a parameter.
    pub fn get(&self, id: ParamId) -> &ArrayD<E> {
        &self.shadow[id.0]
    }

    /// A copy of `store` holding the averaged parameters (for sampling).
    pub fn averaged(&self, store: &ParamStore<E>) -> Result<ParamStore<E>> {
        let mut out = store.clone();
        for (i, s) in self.shadow.iter().enumerate() {
            out.set(ParamId(i), s.clone())?;
        }
        Ok(out)
    }
}
