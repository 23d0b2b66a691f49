//! The U-Net's building blocks, each following its PyTorch twin in `ref_unet.py`.

use super::init::ZERO_SCALE;
use super::join;
use super::layers::{Conv2d, GroupNorm, Linear};
use crate::engine::{sinusoidal_embedding, Element, Graph, ParamStore, Tensor};
use crate::error::{Error, Result};
use crate::rng::Rng;

/// GroupNorm epsilon of the reference networks.
pub const GN_EPS: f64 = 1e-5;

/// The time-embedding MLP `Linear(d_in, d) → SiLU → Linear(d, d)` applied to the sinusoidal
/// embedding of the timesteps (PyTorch `nn.Sequential`: parameters `temb.0.*`, `temb.2.*`).
#[derive(Clone, Debug)]
pub struct TimeEmbedding {
    /// Width of the sinusoidal embedding.
    pub dim_in: usize,
    /// First linear layer (`<prefix>.0`).
    pub l0: Linear,
    /// Second linear layer (`<prefix>.2`).
    pub l2: Linear,
}

impl TimeEmbedding {
    /// Adds both layers (fan-avg uniform, scale 1).
    pub fn new<E: Element>(
        store: &mut ParamStore<E>,
        prefix: &str,
        dim_in: usize,
        dim: usize,
        rng: &mut Rng,
    ) -> Result<Self> {
        let l0 = Linear::new(store, &join(prefix, "0"), dim_in, dim, 1.0, rng)?;
        let l2 = Linear::new(store, &join(prefix, "2"), dim, dim, 1.0, rng)?;
        Ok(TimeEmbedding { dim_in, l0, l2 })
    }

    /// `[B, dim]` embedding of the timesteps `t` (any real values; integers for DDPM).
    pub fn forward<E: Element>(
        &self,
        g: &mut Graph<E>,
        store: &ParamStore<E>,
        t: &[f64],
    ) -> Result<Tensor<E>> {
        let e = sinusoidal_embedding::<E>(t, self.dim_in)?;
        let h = self.l0.forward(g, store, &e)?;
        let h = g.silu(&h);
        self.l2.forward(g, store, &h)
    }
}

// ANCHOR: resblock
/// Residual block with time-embedding injection:
/// `r = conv1(SiLU(GN(h)))`, `r += temb_proj(SiLU(temb))[:, :, None, None]`,
/// `r = conv2(SiLU(GN(r)))`, output `skip(h) + r` where `skip` is a 1×1 conv when the
/// channel count changes and the identity otherwise. `conv2` starts near zero (scale 1e-10).
#[derive(Clone, Debug)]
pub struct ResBlock {
    /// `norm1`.
    pub norm1: GroupNorm,
    /// `conv1` (3×3).
    pub conv1: Conv2d,
    /// `temb_proj`.
    pub temb_proj: Linear,
    /// `norm2`.
    pub norm2: GroupNorm,
    /// `conv2` (3×3, initialised near zero).
    pub conv2: Conv2d,
    /// `skip` (1×1) when `in != out`.
    pub skip: Option<Conv2d>,
}

impl ResBlock {
    /// Adds the block's parameters under `prefix`.
    pub fn new<E: Element>(
        store: &mut ParamStore<E>,
        prefix: &str,
        cin: usize,
        cout: usize,
        temb_dim: usize,
        groups: usize,
        rng: &mut Rng,
    ) -> Result<Self> {
        let norm1 = GroupNorm::new(store, &join(prefix, "norm1"), groups, cin, GN_EPS)?;
        let conv1 = Conv2d::conv3(store, &join(prefix, "conv1"), cin, cout, 1.0, rng)?;
        let temb_proj = Linear::new(store, &join(prefix, "temb_proj"), temb_dim, cout, 1.0, rng)?;
        let norm2 = GroupNorm::new(store, &join(prefix, "norm2"), groups, cout, GN_EPS)?;
        let conv2 = Conv2d::conv3(store, &join(prefix, "conv2"), cout, cout, ZERO_SCALE, rng)?;
        let skip = if cin != cout {
            Some(Conv2d::nin(
                store,
                &join(prefix, "skip"),
                cin,
                cout,
                1.0,
                rng,
            )?)
        } else {
            None
        };
        Ok(ResBlock {
            norm1,
            conv1,
            temb_proj,
            norm2,
            conv2,
            skip,
        })
    }

    /// The block applied to `h` (`[B, C_in, H, W]`) with `temb` (`[B, temb_dim]`).
    pub fn forward<E: Element>(
        &self,
        g: &mut Graph<E>,
        store: &ParamStore<E>,
        h: &Tensor<E>,
        temb: &Tensor<E>,
    ) -> Result<Tensor<E>> {
        let r = self.norm1.forward_silu(g, store, h)?;
        let te = g.silu(temb);
        let te = self.temb_proj.forward(g, store, &te)?;
        // conv1(r) + te[:, :, None, None], the embedding folded into conv1's bias.
        let r = self.conv1.forward_shifted(g, store, &r, &te)?;
        let r = self.norm2.forward_silu(g, store, &r)?;
        let s = match &self.skip {
            Some(conv) => conv.forward(g, store, h)?,
            None => h.clone(),
        };
        // skip(h) + conv2(r), the residual added inside the convolution.
        self.conv2.forward_add(g, store, &r, &s)
    }
}
// ANCHOR_END: resblock

// ANCHOR: attnblock
/// Single-head self-attention over the `H·W` positions: `n = GN(h)`, `q, k, v` = 1×1 convs
/// of `n`, `a = softmax(qᵀk / sqrt(C)) v` per position, output `h + proj(a)` with `proj`
/// initialised near zero (scale 1e-10).
#[derive(Clone, Debug)]
pub struct AttnBlock {
    /// `norm`.
    pub norm: GroupNorm,
    /// `q` (1×1).
    pub q: Conv2d,
    /// `k` (1×1).
    pub k: Conv2d,
    /// `v` (1×1).
    pub v: Conv2d,
    /// `proj` (1×1, initialised near zero).
    pub proj: Conv2d,
}

impl AttnBlock {
    /// Adds the block's parameters under `prefix`.
    pub fn new<E: Element>(
        store: &mut ParamStore<E>,
        prefix: &str,
        ch: usize,
        groups: usize,
        rng: &mut Rng,
    ) -> Result<Self> {
        Ok(AttnBlock {
            norm: GroupNorm::new(store, &join(prefix, "norm"), groups, ch, GN_EPS)?,
            q: Conv2d::nin(store, &join(prefix, "q"), ch, ch, 1.0, rng)?,
            k: Conv2d::nin(store, &join(prefix, "k"), ch, ch, 1.0, rng)?,
            v: Conv2d::nin(store, &join(prefix, "v"), ch, ch, 1.0, rng)?,
            proj: Conv2d::nin(store, &join(prefix, "proj"), ch, ch, ZERO_SCALE, rng)?,
        })
    }

    /// The block applied to `h` (`[B, C, H, W]`).
    pub fn forward<E: Element>(
        &self,
        g: &mut Graph<E>,
        store: &ParamStore<E>,
        h: &Tensor<E>,
    ) -> Result<Tensor<E>> {
        let &[b, c, hh, ww] = h.shape() else {
            return Err(Error::Shape(format!(
                "AttnBlock needs NCHW, got {:?}",
                h.shape()
            )));
        };
        let n = self.norm.forward(g, store, h)?;
        // [B, C, H, W] -> [B, C, HW]: tokens as columns, attention on the channel-major layout.
        let tokens = |conv: &Conv2d, g: &mut Graph<E>| -> Result<Tensor<E>> {
            let y = conv.forward(g, store, &n)?;
            g.reshape(&y, &[b, c, hh * ww])
        };
        let q = tokens(&self.q, g)?;
        let k = tokens(&self.k, g)?;
        let v = tokens(&self.v, g)?;
        let a = g.attention_channels(&q, &k, &v)?; // [B, C, HW]
        let a = g.reshape(&a, &[b, c, hh, ww])?;
        // h + proj(a), the residual added inside the convolution.
        self.proj.forward_add(g, store, &a, h)
    }
}
// ANCHOR_END: attnblock

/// Downsampling: a 3×3 convolution with stride 2 and padding 1 (`<prefix>.conv`).
#[derive(Clone, Debug)]
pub struct Downsample {
    /// `conv`.
    pub conv: Conv2d,
}

impl Downsample {
    /// Adds the conv under `<prefix>.conv`.
    pub fn new<E: Element>(
        store: &mut ParamStore<E>,
        prefix: &str,
        ch: usize,
        rng: &mut Rng,
    ) -> Result<Self> {
        Ok(Downsample {
            conv: Conv2d::new(store, &join(prefix, "conv"), ch, ch, 3, 2, 1, 1.0, rng)?,
        })
    }

    /// `H×W -> ceil(H/2)×ceil(W/2)`.
    pub fn forward<E: Element>(
        &self,
        g: &mut Graph<E>,
        store: &ParamStore<E>,
        h: &Tensor<E>,
    ) -> Result<Tensor<E>> {
        self.conv.forward(g, store, h)
    }
}

/// Upsampling: nearest-neighbour ×2, then a 3×3 convolution (`<prefix>.conv`).
#[derive(Clone, Debug)]
pub struct Upsample {
    /// `conv`.
    pub conv: Conv2d,
}

impl Upsample {
    /// Adds the conv under `<prefix>.conv`.
    pub fn new<E: Element>(
        store: &mut ParamStore<E>,
        prefix: &str,
        ch: usize,
        rng: &mut Rng,
    ) -> Result<Self> {
        Ok(Upsample {
            conv: Conv2d::conv3(store, &join(prefix, "conv"), ch, ch, 1.0, rng)?,
        })
    }

    /// `H×W -> 2H×2W`.
    pub fn forward<E: Element>(
        &self,
        g: &mut Graph<E>,
        store: &ParamStore<E>,
        h: &Tensor<E>,
    ) -> Result<Tensor<E>> {
        let u = g.upsample_nearest2x(h)?;
        self.conv.forward(g, store, &u)
    }
}
