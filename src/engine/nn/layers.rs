//! The three parameterised primitives: `Linear`, `Conv2d` and `GroupNorm`.

use ndarray::{ArrayD, IxDyn};

use super::init::fan_avg_uniform;
use super::join;
use crate::engine::kernels::Activation;
use crate::engine::{Element, Graph, ParamId, ParamStore, Tensor};
use crate::error::{Error, Result};
use crate::rng::Rng;

/// An affine map `y = x Wᵀ + b` (PyTorch `nn.Linear`): weight `[out, in]` named
/// `<prefix>.weight`, bias `[out]` named `<prefix>.bias`.
#[derive(Clone, Debug)]
pub struct Linear {
    /// Weight `[out, in]`.
    pub weight: ParamId,
    /// Bias `[out]`.
    pub bias: ParamId,
    /// Input width.
    pub in_features: usize,
    /// Output width.
    pub out_features: usize,
}

impl Linear {
    /// Adds the layer's parameters: weight fan-avg uniform with `scale`, bias zero.
    pub fn new<E: Element>(
        store: &mut ParamStore<E>,
        prefix: &str,
        in_features: usize,
        out_features: usize,
        scale: f64,
        rng: &mut Rng,
    ) -> Result<Self> {
        if in_features == 0 || out_features == 0 {
            return Err(Error::param("features", "Linear widths must be positive"));
        }
        let w = fan_avg_uniform(
            &[out_features, in_features],
            in_features,
            out_features,
            scale,
            rng,
        )?;
        let weight = store.add(join(prefix, "weight"), w)?;
        let bias = store.add(join(prefix, "bias"), ArrayD::zeros(IxDyn(&[out_features])))?;
        Ok(Linear {
            weight,
            bias,
            in_features,
            out_features,
        })
    }

    /// `x Wᵀ + b` for `x` of shape `[..., in]`.
    pub fn forward<E: Element>(
        &self,
        g: &mut Graph<E>,
        store: &ParamStore<E>,
        x: &Tensor<E>,
    ) -> Result<Tensor<E>> {
        let w = g.param(store, self.weight);
        let b = g.param(store, self.bias);
        g.linear(x, &w, Some(&b))
    }

    /// `act(x Wᵀ + b)` as the single fused op [`Graph::linear_act`] (the same numbers as
    /// [`Linear::forward`] followed by the activation).
    pub fn forward_act<E: Element>(
        &self,
        g: &mut Graph<E>,
        store: &ParamStore<E>,
        x: &Tensor<E>,
        act: Activation,
    ) -> Result<Tensor<E>> {
        let w = g.param(store, self.weight);
        let b = g.param(store, self.bias);
        g.linear_act(x, &w, Some(&b), act)
    }
}

/// A 2-D convolution with bias (PyTorch `nn.Conv2d`): weight `[C_out, C_in, k, k]` (OIHW),
/// bias `[C_out]`, zero padding `pad`, stride `stride`.
#[derive(Clone, Debug)]
pub struct Conv2d {
    /// Weight `[C_out, C_in, k, k]`.
    pub weight: ParamId,
    /// Bias `[C_out]`.
    pub bias: ParamId,
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Kernel size.
    pub kernel: usize,
    /// Stride.
    pub stride: usize,
    /// Zero padding on every side.
    pub pad: usize,
}

impl Conv2d {
    /// Adds the layer's parameters: weight fan-avg uniform with `scale`
    /// (`fan_in = C_in k²`, `fan_out = C_out k²`), bias zero.
    #[allow(clippy::too_many_arguments)]
    pub fn new<E: Element>(
        store: &mut ParamStore<E>,
        prefix: &str,
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        stride: usize,
        pad: usize,
        scale: f64,
        rng: &mut Rng,
    ) -> Result<Self> {
        if in_channels == 0 || out_channels == 0 || kernel == 0 || stride == 0 {
            return Err(Error::param(
                "conv",
                format!("channels {in_channels}->{out_channels}, kernel {kernel}, stride {stride}"),
            ));
        }
        let k2 = kernel * kernel;
        let w = fan_avg_uniform(
            &[out_channels, in_channels, kernel, kernel],
            in_channels * k2,
            out_channels * k2,
            scale,
            rng,
        )?;
        let weight = store.add(join(prefix, "weight"), w)?;
        let bias = store.add(join(prefix, "bias"), ArrayD::zeros(IxDyn(&[out_channels])))?;
        Ok(Conv2d {
            weight,
            bias,
            in_channels,
            out_channels,
            kernel,
            stride,
            pad,
        })
    }

    /// A 3×3 convolution, stride 1, padding 1 ("conv3").
    pub fn conv3<E: Element>(
        store: &mut ParamStore<E>,
        prefix: &str,
        cin: usize,
        cout: usize,
        scale: f64,
        rng: &mut Rng,
    ) -> Result<Self> {
        Self::new(store, prefix, cin, cout, 3, 1, 1, scale, rng)
    }

    /// A 1×1 convolution ("nin").
    pub fn nin<E: Element>(
        store: &mut ParamStore<E>,
        prefix: &str,
        cin: usize,
        cout: usize,
        scale: f64,
        rng: &mut Rng,
    ) -> Result<Self> {
        Self::new(store, prefix, cin, cout, 1, 1, 0, scale, rng)
    }

    /// The convolution of an `N×C_in×H×W` input.
    pub fn forward<E: Element>(
        &self,
        g: &mut Graph<E>,
        store: &ParamStore<E>,
        x: &Tensor<E>,
    ) -> Result<Tensor<E>> {
        let w = g.param(store, self.weight);
        let b = g.param(store, self.bias);
        g.conv2d(x, &w, Some(&b), self.stride, self.pad)
    }

    /// `res + conv(x)` for a residual `res` shaped as the output, in one op
    /// ([`Graph::conv2d_add`]).
    pub fn forward_add<E: Element>(
        &self,
        g: &mut Graph<E>,
        store: &ParamStore<E>,
        x: &Tensor<E>,
        res: &Tensor<E>,
    ) -> Result<Tensor<E>> {
        let w = g.param(store, self.weight);
        let b = g.param(store, self.bias);
        g.conv2d_add(x, &w, Some(&b), self.stride, self.pad, res)
    }

    /// `conv(x) + shift[:, :, None, None]` for a per-image shift `[N, C_out]`, computed as
    /// one convolution whose bias is `bias + shift` (per image): the same sum as adding the
    /// broadcast shift to the output, without a pass over the output.
    pub fn forward_shifted<E: Element>(
        &self,
        g: &mut Graph<E>,
        store: &ParamStore<E>,
        x: &Tensor<E>,
        shift: &Tensor<E>,
    ) -> Result<Tensor<E>> {
        let w = g.param(store, self.weight);
        let b = g.param(store, self.bias);
        let b = g.add(shift, &b)?;
        g.conv2d(x, &w, Some(&b), self.stride, self.pad)
    }
}

/// Group normalisation with a per-channel affine map (PyTorch `nn.GroupNorm`, affine):
/// `weight` (γ) initialised to one, `bias` (β) to zero.
#[derive(Clone, Debug)]
pub struct GroupNorm {
    /// γ, `[C]`.
    pub weight: ParamId,
    /// β, `[C]`.
    pub bias: ParamId,
    /// Number of groups.
    pub groups: usize,
    /// Number of channels.
    pub channels: usize,
    /// Added to the variance.
    pub eps: f64,
}

impl GroupNorm {
    /// Adds γ = 1 and β = 0; `channels` must be a multiple of `groups`.
    pub fn new<E: Element>(
        store: &mut ParamStore<E>,
        prefix: &str,
        groups: usize,
        channels: usize,
        eps: f64,
    ) -> Result<Self> {
        if groups == 0 || channels == 0 || !channels.is_multiple_of(groups) {
            return Err(Error::param(
                "groups",
                format!("{channels} channels cannot be split into {groups} groups"),
            ));
        }
        if !(eps > 0.0 && eps.is_finite()) {
            return Err(Error::param("eps", format!("must be positive, got {eps}")));
        }
        let weight = store.add(join(prefix, "weight"), ArrayD::ones(IxDyn(&[channels])))?;
        let bias = store.add(join(prefix, "bias"), ArrayD::zeros(IxDyn(&[channels])))?;
        Ok(GroupNorm {
            weight,
            bias,
            groups,
            channels,
            eps,
        })
    }

    /// The normalisation of an `N×C×...` input.
    pub fn forward<E: Element>(
        &self,
        g: &mut Graph<E>,
        store: &ParamStore<E>,
        x: &Tensor<E>,
    ) -> Result<Tensor<E>> {
        let gamma = g.param(store, self.weight);
        let beta = g.param(store, self.bias);
        g.group_norm(x, self.groups, &gamma, &beta, self.eps)
    }

    /// `silu(GroupNorm(x))` as the single fused op [`Graph::group_norm_silu`].
    pub fn forward_silu<E: Element>(
        &self,
        g: &mut Graph<E>,
        store: &ParamStore<E>,
        x: &Tensor<E>,
    ) -> Result<Tensor<E>> {
        let gamma = g.param(store, self.weight);
        let beta = g.param(store, self.bias);
        g.group_norm_silu(x, self.groups, &gamma, &beta, self.eps)
    }
}
