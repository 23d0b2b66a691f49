//! Layers and networks: parameter counts and names against the PyTorch reference modules,
//! output shapes, gradients of every layer by central finite differences in f64, f32 vs f64
//! forward agreement, and bit-identical training steps on 1 and 2 threads.

use ndarray::{ArrayD, IxDyn};
use rand::Rng;
use scoresde::engine::nn::{
    AttnBlock, Conv2d, Downsample, GroupNorm, Linear, MlpConfig, MlpScoreNet, ResBlock,
    TimeEmbedding, UNet, UNetConfig, Upsample,
};
use scoresde::engine::{Element, Graph, ParamStore, Tensor};
use scoresde::error::Error;
use scoresde::rng;

/// W1's parameter count is the one printed by `ref_unet.py --params` (1,623,169), and its
/// breakdown in the spec header: a re-implementation that follows the spec matches it.
#[test]
fn w1_has_the_reference_parameter_count() {
    let mut s = ParamStore::<f32>::new();
    UNet::new(&mut s, UNetConfig::default(), 0).unwrap();
    assert_eq!(s.num_elements(), 1_623_169);
    let sum = |pre: &str| -> usize {
        s.iter()
            .filter(|(_, n, _)| n.starts_with(pre))
            .map(|(_, _, v)| v.len())
            .sum()
    };
    // The spec's breakdown: temb 20,736, conv_in 320, down 438,304, middle 181,504, up 981,952.
    assert_eq!(sum("temb."), 20_736);
    assert_eq!(sum("conv_in."), 320);
    assert_eq!(sum("down."), 438_304);
    assert_eq!(sum("mid"), 181_504);
    assert_eq!(sum("up."), 981_952);
    assert_eq!(sum("norm_out.") + sum("conv_out."), 64 + 289);
}

/// W2's parameter count (18·128+128) + 2(128·128+128) + (128·2+2) = 35,714.
#[test]
fn w2_has_the_reference_parameter_count() {
    let mut s = ParamStore::<f32>::new();
    MlpScoreNet::new(&mut s, MlpConfig::default(), 0).unwrap();
    assert_eq!(s.num_elements(), 35_714);
    let names: Vec<_> = s.iter().map(|(_, n, _)| n.to_string()).collect();
    assert_eq!(
        names,
        ["l1.weight", "l1.bias", "l2.weight", "l2.bias", "l3.weight", "l3.bias", "l4.weight", "l4.bias"]
    );
}

/// Tensor names and shapes follow the PyTorch `UNetW1.state_dict()` keys (spot checks of every
/// kind of module: Sequential indices, ModuleList nesting, skip convs, attention, Up/Downsample).
#[test]
fn w1_parameter_names_follow_the_pytorch_module() {
    let mut s = ParamStore::<f32>::new();
    UNet::new(&mut s, UNetConfig::default(), 0).unwrap();
    let shape = |n: &str| s.get(s.id(n).unwrap_or_else(|| panic!("missing {n}"))).shape().to_vec();
    assert_eq!(shape("temb.0.weight"), [128, 32]);
    assert_eq!(shape("temb.2.bias"), [128]);
    assert_eq!(shape("conv_in.weight"), [32, 1, 3, 3]);
    assert_eq!(shape("down.0.0.conv1.weight"), [32, 32, 3, 3]);
    assert_eq!(shape("down.0.0.temb_proj.weight"), [32, 128]);
    assert_eq!(shape("down.2.0.conv.weight"), [32, 32, 3, 3]); // Downsample(32)
    assert_eq!(shape("down.3.0.skip.weight"), [64, 32, 1, 1]);
    assert_eq!(shape("down.6.1.q.weight"), [64, 64, 1, 1]); // attention at 7x7
    assert_eq!(shape("mid_attn.proj.bias"), [64]);
    assert_eq!(shape("mid2.norm2.weight"), [64]);
    assert_eq!(shape("up.0.0.conv1.weight"), [64, 128, 3, 3]);
    assert_eq!(shape("up.2.1.norm.bias"), [64]);
    assert_eq!(shape("up.3.0.conv.weight"), [64, 64, 3, 3]); // Upsample(64)
    assert_eq!(shape("up.6.0.skip.weight"), [64, 96, 1, 1]);
    assert_eq!(shape("up.8.0.conv1.weight"), [32, 96, 3, 3]);
    assert_eq!(shape("up.10.0.conv2.weight"), [32, 32, 3, 3]);
    assert_eq!(shape("conv_out.weight"), [1, 32, 3, 3]);
    assert!(s.id("down.0.0.skip.weight").is_none());
    assert!(s.id("up.11.0.conv1.weight").is_none());
    // 15 ResBlocks on the down/up paths plus 2 in the middle; 6 attention blocks.
    let count = |suffix: &str| s.iter().filter(|(_, n, _)| n.ends_with(suffix)).count();
    assert_eq!(count("conv1.weight"), 17);
    assert_eq!(count(".q.weight"), 6);
}
