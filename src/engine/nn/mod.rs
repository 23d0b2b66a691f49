//! Layers and the two score networks, built from the engine's ops. Every layer keeps only
//! the [`ParamId`](crate::engine::ParamId)s of its parameters; the values live in a
//! [`ParamStore`](crate::engine::ParamStore) under the names the equivalent PyTorch module
//! gives them (`down.0.0.conv1.weight`, `temb.0.bias`, ...), so a checkpoint written from the
//! store loads into the PyTorch module of `shared/bench/ref_unet.py` / `ref_mlp.py`.

pub mod blocks;
pub mod init;
pub mod layers;
pub mod mlp;
pub mod unet;

pub use blocks::{AttnBlock, Downsample, ResBlock, TimeEmbedding, Upsample};
pub use init::fan_avg_uniform;
pub use layers::{Conv2d, GroupNorm, Linear};
pub use mlp::{MlpConfig, MlpScoreNet};
pub use unet::{UNet, UNetConfig};

/// Joins a module prefix and a child name the way PyTorch's `state_dict` does.
pub(crate) fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}
