//! Parameter initialisation of the DDPM reference (Ho et al., TensorFlow code, `default_init`):
//! variance scaling with mode "fan_avg" and a uniform distribution.

use ndarray::{ArrayD, IxDyn};
use rand::Rng as _;

use crate::engine::Element;
use crate::error::{Error, Result};
use crate::rng::Rng;

/// Scale used where the reference initialises "to zero" (`default_init(0.)` becomes
/// `1e-10`): the last conv of every residual block, the attention output projection and the
/// network's final conv, so every block starts as (almost) the identity.
pub const ZERO_SCALE: f64 = 1e-10;

// ANCHOR: fan_avg
/// Variance-scaling "fan_avg" uniform initialisation: entries i.i.d. uniform on `[-a, a]`
/// with `a = sqrt(3 s / n_avg)`, `n_avg = (fan_in + fan_out) / 2`, so the variance is
/// `a²/3 = s / n_avg`. For a linear layer `fan_in = in`, `fan_out = out`; for a convolution
/// both are multiplied by the kernel area (`fan_in = C_in kh kw`, `fan_out = C_out kh kw`).
pub fn fan_avg_uniform<E: Element>(
    shape: &[usize],
    fan_in: usize,
    fan_out: usize,
    scale: f64,
    rng: &mut Rng,
) -> Result<ArrayD<E>> {
    if fan_in + fan_out == 0 || !(scale > 0.0 && scale.is_finite()) {
        return Err(Error::param(
            "init",
            format!("fan_in {fan_in}, fan_out {fan_out}, scale {scale}"),
        ));
    }
    let a = (3.0 * scale / ((fan_in + fan_out) as f64 / 2.0)).sqrt();
    let n: usize = shape.iter().product();
    let v = (0..n)
        .map(|_| <E as Element>::from_f64(a * (2.0 * rng.random::<f64>() - 1.0)))
        .collect();
    Ok(ArrayD::from_shape_vec(IxDyn(shape), v).expect("length matches shape"))
}
// ANCHOR_END: fan_avg
