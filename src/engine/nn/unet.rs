//! `UNet`: the W1 network of `shared/bench/ref_unet.py` (Ho et al.'s DDPM U-Net, scaled
//! down), configurable in channels, depth, resolutions, attention levels and class labels.

use ndarray::{ArrayD, IxDyn};

use super::blocks::{AttnBlock, Downsample, ResBlock, TimeEmbedding, Upsample, GN_EPS};
use super::init::{fan_avg_uniform, ZERO_SCALE};
use super::join;
use super::layers::{Conv2d, GroupNorm};
use crate::engine::{Element, Graph, ParamId, ParamStore, Tensor};
use crate::error::{Error, Result};
use crate::rng;

/// Shape of a [`UNet`]. [`Default`] is W1 (1,623,169 parameters).
#[derive(Clone, Debug, PartialEq)]
pub struct UNetConfig {
    /// Image channels (input and output).
    pub in_channels: usize,
    /// Input height = width.
    pub resolution: usize,
    /// Base channel count `C`.
    pub base_channels: usize,
    /// Level `l` has `C · channel_mult[l]` channels.
    pub channel_mult: Vec<usize>,
    /// Residual blocks per level on the way down (one more on the way up).
    pub num_res_blocks: usize,
    /// Resolutions at which every residual block is followed by attention.
    pub attn_resolutions: Vec<usize>,
    /// GroupNorm groups.
    pub groups: usize,
    /// Width of the sinusoidal timestep embedding.
    pub temb_in: usize,
    /// Width of the time-embedding MLP.
    pub temb_dim: usize,
    /// Number of classes for class conditioning (`label_emb.weight`, `[classes, temb_dim]`,
    /// added to the time embedding); `None` for an unconditional network.
    pub num_classes: Option<usize>,
}

impl Default for UNetConfig {
    fn default() -> Self {
        UNetConfig {
            in_channels: 1,
            resolution: 28,
            base_channels: 32,
            channel_mult: vec![1, 2, 2],
            num_res_blocks: 2,
            attn_resolutions: vec![7],
            groups: 8,
            temb_in: 32,
            temb_dim: 128,
            num_classes: None,
        }
    }
}

impl UNetConfig {
    /// The configuration as a JSON object (for checkpoint metadata).
    pub fn to_json(&self) -> String {
        let list = |v: &[usize]| {
            v.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        format!(
            "{{\"model\":\"unet\",\"in_channels\":{},\"resolution\":{},\"base_channels\":{},\"channel_mult\":[{}],\"num_res_blocks\":{},\"attn_resolutions\":[{}],\"groups\":{},\"temb_in\":{},\"temb_dim\":{},\"num_classes\":{}}}",
            self.in_channels,
            self.resolution,
            self.base_channels,
            list(&self.channel_mult),
            self.num_res_blocks,
            list(&self.attn_resolutions),
            self.groups,
            self.temb_in,
            self.temb_dim,
            self.num_classes.map_or("null".to_string(), |k| k.to_string())
        )
    }
}

/// One entry of the down or up path (a PyTorch `ModuleList` of one or two modules).
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)] // built once per network; boxing buys nothing
pub enum Stage {
    /// A residual block, optionally followed by attention.
    Res(ResBlock, Option<AttnBlock>),
    /// Downsampling (pushes its output as a skip).
    Down(Downsample),
    /// Upsampling.
    Up(Upsample),
}

/// The U-Net. Parameter names follow `UNetW1`'s `state_dict`: `temb.0.weight`, `conv_in.*`,
/// `down.{i}.{0|1}.*`, `mid1.*`, `mid_attn.*`, `mid2.*`, `up.{i}.{0|1}.*`, `norm_out.*`,
/// `conv_out.*` (and `label_emb.weight` with classes).
#[derive(Clone, Debug)]
pub struct UNet {
    /// The configuration.
    pub config: UNetConfig,
    /// Time-embedding MLP.
    pub temb: TimeEmbedding,
    /// Class embedding table `[classes, temb_dim]`.
    pub label_emb: Option<ParamId>,
    /// Input conv.
    pub conv_in: Conv2d,
    /// Down path.
    pub down: Vec<Stage>,
    /// Middle block 1.
    pub mid1: ResBlock,
    /// Middle attention.
    pub mid_attn: AttnBlock,
    /// Middle block 2.
    pub mid2: ResBlock,
    /// Up path.
    pub up: Vec<Stage>,
    /// Output norm.
    pub norm_out: GroupNorm,
    /// Output conv (initialised near zero).
    pub conv_out: Conv2d,
}

impl UNet {
    /// Builds the network, adding its parameters to `store` in the PyTorch module's order,
    /// initialised as in the DDPM reference from `seed`.
    pub fn new<E: Element>(
        store: &mut ParamStore<E>,
        config: UNetConfig,
        seed: u64,
    ) -> Result<Self> {
        let c = &config;
        if c.in_channels == 0 || c.base_channels == 0 || c.channel_mult.is_empty() || c.groups == 0
        {
            return Err(Error::param("config", format!("{c:?}")));
        }
        if c.channel_mult
            .iter()
            .any(|&m| m == 0 || !(c.base_channels * m).is_multiple_of(c.groups))
            || !c.base_channels.is_multiple_of(c.groups)
        {
            return Err(Error::param(
                "groups",
                format!(
                    "every level's channel count must be a multiple of {}",
                    c.groups
                ),
            ));
        }
        let levels = c.channel_mult.len();
        if c.resolution == 0 || !c.resolution.is_multiple_of(1 << (levels - 1)) {
            return Err(Error::param(
                "resolution",
                format!("{} is not divisible by 2^{}", c.resolution, levels - 1),
            ));
        }
        if c.num_classes == Some(0) {
            return Err(Error::param("num_classes", "must be positive"));
        }
        let mut r = rng::seeded(seed);
        let r = &mut r;
        let (ch, g) = (c.base_channels, c.groups);
        let temb = TimeEmbedding::new(store, "temb", c.temb_in, c.temb_dim, r)?;
        let label_emb = match c.num_classes {
            Some(k) => {
                let w = fan_avg_uniform(&[k, c.temb_dim], k, c.temb_dim, 1.0, r)?;
                Some(store.add("label_emb.weight", w)?)
            }
            None => None,
        };
        let conv_in = Conv2d::conv3(store, "conv_in", c.in_channels, ch, 1.0, r)?;
        let mut down = Vec::new();
        let mut skip_ch = vec![ch];
        let (mut cur, mut res) = (ch, c.resolution);
        for (lvl, &m) in c.channel_mult.iter().enumerate() {
            for _ in 0..c.num_res_blocks {
                let p = format!("down.{}", down.len());
                let rb = ResBlock::new(store, &join(&p, "0"), cur, ch * m, c.temb_dim, g, r)?;
                cur = ch * m;
                let at = if c.attn_resolutions.contains(&res) {
                    Some(AttnBlock::new(store, &join(&p, "1"), cur, g, r)?)
                } else {
                    None
                };
                down.push(Stage::Res(rb, at));
                skip_ch.push(cur);
            }
            if lvl != levels - 1 {
                let p = format!("down.{}.0", down.len());
                down.push(Stage::Down(Downsample::new(store, &p, cur, r)?));
                skip_ch.push(cur);
                res /= 2;
            }
        }
        let mid1 = ResBlock::new(store, "mid1", cur, cur, c.temb_dim, g, r)?;
        let mid_attn = AttnBlock::new(store, "mid_attn", cur, g, r)?;
        let mid2 = ResBlock::new(store, "mid2", cur, cur, c.temb_dim, g, r)?;
        let mut up = Vec::new();
        for lvl in (0..levels).rev() {
            for _ in 0..=c.num_res_blocks {
                let p = format!("up.{}", up.len());
                let cin = cur + skip_ch.pop().expect("one skip per up block");
                let cout = ch * c.channel_mult[lvl];
                let rb = ResBlock::new(store, &join(&p, "0"), cin, cout, c.temb_dim, g, r)?;
                cur = cout;
                let at = if c.attn_resolutions.contains(&res) {
                    Some(AttnBlock::new(store, &join(&p, "1"), cur, g, r)?)
                } else {
                    None
                };
                up.push(Stage::Res(rb, at));
            }
            if lvl != 0 {
                let p = format!("up.{}.0", up.len());
                up.push(Stage::Up(Upsample::new(store, &p, cur, r)?));
                res *= 2;
            }
        }
        debug_assert!(skip_ch.is_empty());
        let norm_out = GroupNorm::new(store, "norm_out", g, cur, GN_EPS)?;
        let conv_out = Conv2d::conv3(store, "conv_out", cur, c.in_channels, ZERO_SCALE, r)?;
        Ok(UNet {
            config,
            temb,
            label_emb,
            conv_in,
            down,
            mid1,
            mid_attn,
            mid2,
            up,
            norm_out,
            conv_out,
        })
    }

    /// The output `[B, C, H, W]` for images `x` at timesteps `t` (length `B`), unconditional.
    pub fn forward<E: Element>(
        &self,
        g: &mut Graph<E>,
        store: &ParamStore<E>,
        x: &Tensor<E>,
        t: &[f64],
    ) -> Result<Tensor<E>> {
        self.forward_cond(g, store, x, t, None)
    }

    /// The output with optional class labels (required when the network has classes).
    pub fn forward_cond<E: Element>(
        &self,
        g: &mut Graph<E>,
        store: &ParamStore<E>,
        x: &Tensor<E>,
        t: &[f64],
        labels: Option<&[usize]>,
    ) -> Result<Tensor<E>> {
        let c = &self.config;
        let want = [
            x.shape().first().copied().unwrap_or(0),
            c.in_channels,
            c.resolution,
            c.resolution,
        ];
        if x.shape() != want || t.len() != want[0] {
            return Err(Error::Shape(format!(
                "UNet: x {:?} with {} times, expected [B, {}, {}, {}]",
                x.shape(),
                t.len(),
                c.in_channels,
                c.resolution,
                c.resolution
            )));
        }
        let mut temb = self.temb.forward(g, store, t)?;
        match (self.label_emb, labels, c.num_classes) {
            (Some(id), Some(y), Some(k)) => {
                if y.len() != t.len() || y.iter().any(|&l| l >= k) {
                    return Err(Error::param(
                        "labels",
                        format!("need {} labels < {k}", t.len()),
                    ));
                }
                // Embedding lookup as a one-hot matrix product (gradient flows to the rows used).
                let mut oh = ArrayD::<E>::zeros(IxDyn(&[y.len(), k]));
                for (i, &l) in y.iter().enumerate() {
                    oh[[i, l]] = E::one();
                }
                let w = g.param(store, id);
                let le = g.matmul(&Tensor::constant(oh), &w)?;
                temb = g.add(&temb, &le)?;
            }
            (None, None, _) => {}
            (Some(_), None, _) => {
                return Err(Error::param(
                    "labels",
                    "class-conditional UNet needs labels",
                ))
            }
            _ => return Err(Error::param("labels", "unconditional UNet takes no labels")),
        }
        let mut hs = vec![self.conv_in.forward(g, store, x)?];
        for s in &self.down {
            let h = hs.last().expect("non-empty").clone();
            let h = match s {
                Stage::Res(rb, at) => {
                    let h = rb.forward(g, store, &h, &temb)?;
                    match at {
                        Some(a) => a.forward(g, store, &h)?,
                        None => h,
                    }
                }
                Stage::Down(d) => d.forward(g, store, &h)?,
                Stage::Up(_) => unreachable!("no upsampling on the down path"),
            };
            hs.push(h);
        }
        let mut h = hs.last().expect("non-empty").clone();
        h = self.mid1.forward(g, store, &h, &temb)?;
        h = self.mid_attn.forward(g, store, &h)?;
        h = self.mid2.forward(g, store, &h, &temb)?;
        for s in &self.up {
            h = match s {
                Stage::Res(rb, at) => {
                    let skip = hs.pop().expect("one skip per up block");
                    let hc = g.concat(&[&h, &skip], 1)?;
                    let h = rb.forward(g, store, &hc, &temb)?;
                    match at {
                        Some(a) => a.forward(g, store, &h)?,
                        None => h,
                    }
                }
                Stage::Up(u) => u.forward(g, store, &h)?,
                Stage::Down(_) => unreachable!("no downsampling on the up path"),
            };
        }
        let h = self.norm_out.forward_silu(g, store, &h)?;
        self.conv_out.forward(g, store, &h)
    }
}
