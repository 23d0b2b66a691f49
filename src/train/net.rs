//! A trained network as a score model: `f64` points in, an `f32` network predicting the noise,
//! and the conversion `s(x, t) = −eps_theta(x, t) / sigma(t)` (ledger Ac07, Dc19: the
//! eps-parameterisation of the score).

use crate::engine::nn::{MlpConfig, MlpScoreNet, UNet, UNetConfig};
use crate::engine::{Graph, ParamStore, Tensor};
use crate::error::{Error, Result};
use crate::loss::Prediction;
use crate::score::{Level, ScoreModel};
use ndarray::{Array2, ArrayView2};

/// The U-Net reads `TIME_SCALE · t` (continuous `t` in `[0, 1]` becomes a step-like number in
/// `[0, 1000]`, the range its sinusoidal embedding was designed for). The MLP applies its own
/// `time_scale` (1000 in W2).
pub const UNET_TIME_SCALE: f64 = 1000.0;

/// The model architecture.
#[derive(Clone, Debug, PartialEq)]
pub enum ModelSpec {
    /// An MLP on flat points (W2 for 2-D data).
    Mlp(MlpConfig),
    /// A U-Net on square images.
    UNet(UNetConfig),
}

impl ModelSpec {
    /// JSON for checkpoint metadata and the run directory.
    pub fn to_json(&self) -> String {
        match self {
            ModelSpec::Mlp(c) => c.to_json(),
            ModelSpec::UNet(c) => c.to_json(),
        }
    }

    /// Data dimension of a flattened point.
    pub fn data_dim(&self) -> usize {
        match self {
            ModelSpec::Mlp(c) => c.data_dim,
            ModelSpec::UNet(c) => c.in_channels * c.resolution * c.resolution,
        }
    }
}

/// A noise-prediction network built from a [`ModelSpec`].
#[derive(Clone, Debug)]
pub enum Net {
    /// MLP.
    Mlp(MlpScoreNet),
    /// U-Net (boxed: it is much larger than the MLP).
    UNet(Box<UNet>),
}

impl Net {
    /// Builds the network, adding its parameters to `store`, initialised from `seed`.
    pub fn new(spec: &ModelSpec, store: &mut ParamStore<f32>, seed: u64) -> Result<Net> {
        Ok(match spec {
            ModelSpec::Mlp(c) => Net::Mlp(MlpScoreNet::new(store, c.clone(), seed)?),
            ModelSpec::UNet(c) => Net::UNet(Box::new(UNet::new(store, c.clone(), seed)?)),
        })
    }

    /// Data dimension of a flattened point.
    pub fn data_dim(&self) -> usize {
        match self {
            Net::Mlp(m) => m.config.data_dim,
            Net::UNet(u) => u.config.in_channels * u.config.resolution * u.config.resolution,
        }
    }

    /// The predicted noise `[n, d]` for flattened points `x` (`[n, d]`) at times `t`.
    pub fn eps(
        &self,
        g: &mut Graph<f32>,
        store: &ParamStore<f32>,
        x: &Tensor<f32>,
        t: &[f64],
    ) -> Result<Tensor<f32>> {
        match self {
            Net::Mlp(m) => m.forward(g, store, x, t),
            Net::UNet(u) => {
                let c = &u.config;
                let n = x.shape().first().copied().unwrap_or(0);
                let xi = g.reshape(x, &[n, c.in_channels, c.resolution, c.resolution])?;
                let tau: Vec<f64> = t.iter().map(|s| s * UNET_TIME_SCALE).collect();
                let out = u.forward(g, store, &xi, &tau)?;
                g.reshape(&out, &[n, self.data_dim()])
            }
        }
    }
}

/// [`ScoreModel`] of a trained noise-prediction network: `s(x, t) = −eps_theta(x, t) / sigma(t)`
/// with `t = level.t`, `sigma(t) = level.std`. Evaluated in batches of at most `chunk` rows.
pub struct NetScore {
    /// The network.
    pub net: Net,
    /// Its parameters (usually the EMA average).
    pub store: ParamStore<f32>,
    /// Rows per forward pass.
    pub chunk: usize,
    /// What the network predicts (converted to `eps` with the level's scale and std).
    pub prediction: Prediction,
    /// The network's time input is `level.t / time_divisor` (1 for continuous time, `T` for
    /// a DDPM sampler whose levels carry the step index).
    pub time_divisor: f64,
}

impl NetScore {
    /// The score model of `net` with parameters `store`.
    pub fn new(net: Net, store: ParamStore<f32>) -> Self {
        NetScore {
            net,
            store,
            chunk: 512,
            prediction: Prediction::Eps,
            time_divisor: 1.0,
        }
    }

    /// The same network read as predicting `prediction`.
    pub fn with_prediction(mut self, prediction: Prediction) -> Self {
        self.prediction = prediction;
        self
    }

    /// For a sampler whose levels carry the step index `i` of a `steps`-step chain: the
    /// network reads `i / steps`.
    pub fn for_chain(mut self, steps: usize) -> Self {
        self.time_divisor = steps as f64;
        self
    }

    /// The predicted noise at `level` (ledger Ac07): `eps` itself, or from `x0` prediction
    /// `eps = (x − scale x0) / std`, or from `v = scale eps − std x0`,
    /// `eps = (scale v + std x) / (scale² + std²)`.
    pub fn try_eps_at(&self, x: ArrayView2<f64>, level: Level) -> Result<Array2<f64>> {
        let out = self.try_eps(x, level.t / self.time_divisor)?;
        let (a, s) = (level.scale, level.std);
        Ok(match self.prediction {
            Prediction::Eps => out,
            Prediction::X0 => {
                let mut e = x.to_owned();
                e.zip_mut_with(&out, |x, &o| *x = (*x - a * o) / s);
                e
            }
            Prediction::V => {
                let mut e = x.to_owned();
                let n2 = a * a + s * s;
                e.zip_mut_with(&out, |x, &o| *x = (a * o + s * *x) / n2);
                e
            }
        })
    }

    /// The raw network output of each row at network time `t`, or the error.
    pub fn try_eps(&self, x: ArrayView2<f64>, t: f64) -> Result<Array2<f64>> {
        let (n, d) = x.dim();
        if d != self.net.data_dim() {
            return Err(Error::Shape(format!(
                "points of dimension {d}, the network takes {}",
                self.net.data_dim()
            )));
        }
        let mut out = Array2::zeros((n, d));
        let mut start = 0;
        while start < n {
            let m = self.chunk.min(n - start);
            let rows = x.slice(ndarray::s![start..start + m, ..]);
            let xt = Tensor::from_vec(&[m, d], rows.iter().map(|&v| v as f32).collect())?;
            let mut g = Graph::<f32>::inference();
            let e = self.net.eps(&mut g, &self.store, &xt, &vec![t; m])?;
            for (o, &v) in out
                .slice_mut(ndarray::s![start..start + m, ..])
                .iter_mut()
                .zip(e.as_slice())
            {
                *o = v as f64;
            }
            start += m;
        }
        Ok(out)
    }

    /// The score of each row, or the error.
    pub fn try_score(&self, x: ArrayView2<f64>, level: Level) -> Result<Array2<f64>> {
        if !(level.std > 0.0 && level.std.is_finite()) {
            return Err(Error::param(
                "level",
                format!("std {} must be positive", level.std),
            ));
        }
        Ok(self.try_eps_at(x, level)? * (-1.0 / level.std))
    }
}

impl ScoreModel for NetScore {
    fn dim(&self) -> usize {
        self.net.data_dim()
    }

    /// The score; on error (shape, zero std) an array of NaN that samplers reject.
    fn score(&self, x: ArrayView2<f64>, level: Level) -> Array2<f64> {
        self.try_score(x, level)
            .unwrap_or_else(|_| Array2::from_elem((x.nrows(), self.dim()), f64::NAN))
    }
}

/// The value of `"key":` in a flat JSON object written by this crate (numbers, strings,
/// `null`, or a list of numbers), as raw text.
pub fn json_field<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!("\"{key}\":");
    let start = json.find(&pat)? + pat.len();
    let rest = &json[start..];
    let end = if rest.starts_with('[') {
        rest.find(']')? + 1
    } else {
        rest.find([',', '}'])?
    };
    Some(rest[..end].trim().trim_matches('"'))
}

impl ModelSpec {
    /// Reads the JSON of [`ModelSpec::to_json`] back.
    pub fn from_json(json: &str) -> Result<ModelSpec> {
        let bad =
            |k: &str| Error::Checkpoint(format!("model config: missing or bad `{k}` in {json}"));
        let num = |k: &str| -> Result<usize> {
            json_field(json, k)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| bad(k))
        };
        let list = |k: &str| -> Result<Vec<usize>> {
            let v = json_field(json, k).ok_or_else(|| bad(k))?;
            v.trim_matches(['[', ']'])
                .split(',')
                .filter(|s| !s.trim().is_empty())
                .map(|s| s.trim().parse().map_err(|_| bad(k)))
                .collect()
        };
        match json_field(json, "model") {
            Some("mlp") => Ok(ModelSpec::Mlp(MlpConfig {
                data_dim: num("data_dim")?,
                width: num("width")?,
                hidden: num("hidden")?,
                emb_dim: num("emb_dim")?,
                time_scale: json_field(json, "time_scale")
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| bad("time_scale"))?,
            })),
            Some("unet") => Ok(ModelSpec::UNet(UNetConfig {
                in_channels: num("in_channels")?,
                resolution: num("resolution")?,
                base_channels: num("base_channels")?,
                channel_mult: list("channel_mult")?,
                num_res_blocks: num("num_res_blocks")?,
                attn_resolutions: list("attn_resolutions")?,
                groups: num("groups")?,
                temb_in: num("temb_in")?,
                temb_dim: num("temb_dim")?,
                num_classes: match json_field(json, "num_classes") {
                    Some("null") | None => None,
                    Some(v) => Some(v.parse().map_err(|_| bad("num_classes"))?),
                },
            })),
            _ => Err(bad("model")),
        }
    }
}
