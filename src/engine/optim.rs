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
        for id in store.ids() {
            if let Some(g) = grads.param(id) {
                if g.shape() != store.get(id).shape() {
                    return Err(Error::Shape(format!(
                        "gradient {:?} for parameter {:?}",
                        g.shape(),
                        store.get(id).shape()
                    )));
                }
            }
        }
        let h = AdamScalars {
            clip,
            l2,
            b1,
            b2,
            lr_bc1: lr / bc1,
            inv_bc2: 1.0 / bc2,
            eps,
            decay,
        };
        // Every parameter with a gradient, cut into chunks of at most CHUNK elements: the
        // update is elementwise, so the chunks can run on any threads in any order.
        const CHUNK: usize = 1 << 13;
        type Work<'a, E> = (&'a mut [E], &'a mut [E], &'a mut [E], &'a [E]);
        let mut work: Vec<Work<'_, E>> = Vec::new();
        let mut total = 0;
        let has = |id: ParamId| grads.param(id).is_some();
        let moments = self.m.iter_mut().zip(self.v.iter_mut());
        let mut moments: Vec<_> = moments.map(Some).collect();
        for (id, theta) in store.values_mut_where(has) {
            let g = grads.param(id).expect("filtered");
            let (m, v) = moments[id.0].take().expect("one parameter per id");
            let contiguous = [theta.is_standard_layout(), m.is_standard_layout()]
                .into_iter()
                .chain([v.is_standard_layout(), g.is_standard_layout()])
                .all(|c| c);
            if contiguous {
                let th = theta.as_slice_mut().expect("standard layout");
                let (m, v) = (m.as_slice_mut().unwrap(), v.as_slice_mut().unwrap());
                let g = g.as_slice().expect("standard layout");
                total += th.len();
                let chunks = th
                    .chunks_mut(CHUNK)
                    .zip(m.chunks_mut(CHUNK))
                    .zip(v.chunks_mut(CHUNK))
                    .zip(g.chunks(CHUNK));
                work.extend(chunks.map(|(((a, b), c), d)| (a, b, c, d)));
            } else {
                // Never for parameters and moments; a gradient could be strided: the same
                // update through ndarray's iterators.
                Zip::from(theta)
                    .and(m)
                    .and(v)
                    .and(g)
                    .for_each(|th, m, v, &g| h.update(th, m, v, g));
            }
        }
        let simd = crate::engine::kernels::activation::has_avx2_fma();
        let run = |(th, m, v, g): Work<'_, E>| {
            #[cfg(target_arch = "x86_64")]
            if simd {
                // SAFETY: AVX2 and FMA were detected at run time.
                return unsafe { adam_chunk_avx2(&h, th, m, v, g) };
            }
            let _ = simd;
            adam_chunk(&h, th, m, v, g)
        };
        if total >= 1 << 15 && work.len() > 1 {
            use rayon::prelude::*;
            work.into_par_iter().for_each(run);
        } else {
            work.into_iter().for_each(run);
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

/// The scalars of one Adam step.
struct AdamScalars {
    clip: f64,
    l2: f64,
    b1: f64,
    b2: f64,
    /// `lr / (1 − β₁ᵗ)`.
    lr_bc1: f64,
    /// `1 / (1 − β₂ᵗ)`.
    inv_bc2: f64,
    eps: f64,
    decay: f64,
}

impl AdamScalars {
    /// The update of one parameter entry, in `f64`, rounded once to `E` (see [`Adam::step`]).
    #[inline(always)]
    fn update<E: Element>(&self, th: &mut E, m: &mut E, v: &mut E, g: E) {
        let th0 = th.to_f64();
        let g = self.clip * g.to_f64() + self.l2 * th0;
        let mn = self.b1 * m.to_f64() + (1.0 - self.b1) * g;
        let vn = self.b2 * v.to_f64() + (1.0 - self.b2) * g * g;
        *m = <E as Element>::from_f64(mn);
        *v = <E as Element>::from_f64(vn);
        // lr (m / bc1) / (sqrt(v / bc2) + eps) with the two constant divisions folded into
        // factors `lr / bc1` and `1 / bc2`: one division and one square root per entry (the
        // f64 divider is what bounds this loop).
        let upd = self.lr_bc1 * mn / ((vn * self.inv_bc2).sqrt() + self.eps);
        *th = <E as Element>::from_f64(th0 * self.decay - upd);
    }
}

#[inline(always)]
fn adam_chunk<E: Element>(h: &AdamScalars, th: &mut [E], m: &mut [E], v: &mut [E], g: &[E]) {
    for (((th, m), v), &g) in th.iter_mut().zip(m).zip(v).zip(g) {
        h.update(th, m, v, g);
    }
}

/// [`adam_chunk`] compiled for AVX2 + FMA (the same operations, 4 `f64` lanes; Rust never
/// contracts to FMA, so the bits are those of the portable code).
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn adam_chunk_avx2<E: Element>(
    h: &AdamScalars,
    th: &mut [E],
    m: &mut [E],
    v: &mut [E],
    g: &[E],
) {
    adam_chunk(h, th, m, v, g)
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
