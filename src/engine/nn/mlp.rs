//! `MlpScoreNet`: the W2 network of `shared/bench/ref_mlp.py`, generalised in data dimension,
//! width and depth.

use super::layers::Linear;
use crate::engine::kernels::Activation;
use crate::engine::{sinusoidal_embedding, Element, Graph, ParamStore, Tensor};
use crate::error::{Error, Result};
use crate::rng;

/// Shape of an [`MlpScoreNet`]. [`Default`] is W2: data 2, width 128, 3 hidden layers,
/// 16-dimensional embedding of `1000 t`.
#[derive(Clone, Debug, PartialEq)]
pub struct MlpConfig {
    /// Data dimension `d` (input and output width).
    pub data_dim: usize,
    /// Width of the hidden layers.
    pub width: usize,
    /// Number of hidden layers (SiLU after each); the network has `hidden + 1` linear layers.
    pub hidden: usize,
    /// Width of the sinusoidal time embedding (even, at least 4).
    pub emb_dim: usize,
    /// The embedding is of `time_scale · t` (1000 in W2).
    pub time_scale: f64,
}

impl Default for MlpConfig {
    fn default() -> Self {
        MlpConfig {
            data_dim: 2,
            width: 128,
            hidden: 3,
            emb_dim: 16,
            time_scale: 1000.0,
        }
    }
}

impl MlpConfig {
    /// The configuration as a JSON object (for checkpoint metadata).
    pub fn to_json(&self) -> String {
        format!(
            "{{\"model\":\"mlp\",\"data_dim\":{},\"width\":{},\"hidden\":{},\"emb_dim\":{},\"time_scale\":{:?}}}",
            self.data_dim, self.width, self.hidden, self.emb_dim, self.time_scale
        )
    }
}

/// `h = [x, e(τ t)]`, then `hidden` layers `h = SiLU(l_i(h))`, then a linear output of width
/// `d`. Parameters `l1.weight, l1.bias, ..., l{hidden+1}.bias` as in the PyTorch module.
#[derive(Clone, Debug)]
pub struct MlpScoreNet {
    /// The configuration.
    pub config: MlpConfig,
    /// `l1 ... l{hidden+1}`.
    pub layers: Vec<Linear>,
}

impl MlpScoreNet {
    /// Adds the parameters to `store`, fan-avg uniform (scale 1) weights from `seed`, zero biases.
    pub fn new<E: Element>(
        store: &mut ParamStore<E>,
        config: MlpConfig,
        seed: u64,
    ) -> Result<Self> {
        if config.data_dim == 0 || config.width == 0 || config.hidden == 0 {
            return Err(Error::param("config", format!("{config:?}")));
        }
        if config.emb_dim < 4 || !config.emb_dim.is_multiple_of(2) {
            return Err(Error::param("emb_dim", "must be even and >= 4"));
        }
        if !config.time_scale.is_finite() {
            return Err(Error::param("time_scale", "must be finite"));
        }
        let mut r = rng::seeded(seed);
        let mut layers = Vec::new();
        let mut fan_in = config.data_dim + config.emb_dim;
        for i in 0..=config.hidden {
            let out = if i == config.hidden {
                config.data_dim
            } else {
                config.width
            };
            layers.push(Linear::new(
                store,
                &format!("l{}", i + 1),
                fan_in,
                out,
                1.0,
                &mut r,
            )?);
            fan_in = out;
        }
        Ok(MlpScoreNet { config, layers })
    }

    /// The output `[B, d]` for points `x` (`[B, d]`) at times `t` (length `B`).
    pub fn forward<E: Element>(
        &self,
        g: &mut Graph<E>,
        store: &ParamStore<E>,
        x: &Tensor<E>,
        t: &[f64],
    ) -> Result<Tensor<E>> {
        if x.ndim() != 2 || x.shape()[1] != self.config.data_dim || x.shape()[0] != t.len() {
            return Err(Error::Shape(format!(
                "MlpScoreNet: x {:?} with {} times, data dim {}",
                x.shape(),
                t.len(),
                self.config.data_dim
            )));
        }
        let tau: Vec<f64> = t.iter().map(|&s| self.config.time_scale * s).collect();
        let e = sinusoidal_embedding::<E>(&tau, self.config.emb_dim)?;
        let mut h = g.concat(&[x, &e], 1)?;
        let last = self.layers.len() - 1;
        for (i, l) in self.layers.iter().enumerate() {
            let act = if i != last {
                Activation::Silu
            } else {
                Activation::Identity
            };
            h = l.forward_act(g, store, &h, act)?;
        }
        Ok(h)
    }
}
