//! The engine's hot kernels. Every fast kernel here has a slow, obviously correct twin in
//! [`mod@reference`] and is tested against it.
//!
//! Layouts follow PyTorch: activations NCHW, convolution weights OIHW, all contiguous
//! row-major.

pub mod activation;
pub mod conv;
pub mod direct;
pub mod group_norm;
pub mod lanes;
pub mod linear;
pub mod reduce;
pub mod reference;
pub mod trig;
pub mod upsample;

pub use activation::{silu_backward, silu_forward};
pub use conv::{conv2d_backward_input, conv2d_backward_weight, conv2d_forward};
pub use group_norm::{
    group_norm_backward, group_norm_backward_uninit, group_norm_forward, group_norm_forward_uninit,
    Activation, GroupNormGeom,
};
pub use linear::{linear_act_backward, linear_act_forward};
pub use reduce::bias_grad;
pub use upsample::{upsample_nearest2x_backward, upsample_nearest2x_forward};

use crate::error::{Error, Result};

/// Initialised memory viewed as possibly uninitialised, for the kernels that only write their
/// outputs (sound: `MaybeUninit<E>` has the layout of `E`, and only valid values are written).
pub(crate) fn as_uninit<E>(s: &mut [E]) -> &mut [std::mem::MaybeUninit<E>] {
    // SAFETY: see above.
    unsafe { std::slice::from_raw_parts_mut(s.as_mut_ptr().cast(), s.len()) }
}

/// Memory whose every element has been written, viewed as initialised.
///
/// # Safety
/// Every element of `s` must be initialised.
pub(crate) unsafe fn assume_init_mut<E>(s: &mut [std::mem::MaybeUninit<E>]) -> &mut [E] {
    // SAFETY: `MaybeUninit<E>` has the layout of `E`, and the caller vouches for the values.
    unsafe { std::slice::from_raw_parts_mut(s.as_mut_ptr().cast(), s.len()) }
}

/// The bias of output channel `o` in image `img`. A convolution's bias holds one value per
/// output channel (`c_out` values) or one per image and output channel (`n·c_out`,
/// image-major; for example a per-image time embedding folded into the bias). With one image
/// the two layouts coincide.
#[inline]
pub fn bias_at<E: Copy>(bias: &[E], c_out: usize, img: usize, o: usize) -> E {
    if bias.len() == c_out {
        bias[o]
    } else {
        bias[img * c_out + o]
    }
}

/// Panics unless `len` is a valid bias length for [`bias_at`]: `c_out` or `n·c_out`.
pub fn check_bias_len(len: usize, n: usize, c_out: usize) {
    assert!(
        len == c_out || len == n * c_out,
        "conv2d: bias length {len}, expected {c_out} or {n}x{c_out}"
    );
}

/// Geometry of a 2-D convolution: input `n × c_in × h × w`, weight `c_out × c_in × kh × kw`,
/// symmetric zero padding `pad`, equal `stride` in both directions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dGeom {
    /// Batch size.
    pub n: usize,
    /// Input channels.
    pub c_in: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output channels.
    pub c_out: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Stride in both directions.
    pub stride: usize,
    /// Zero padding on every side.
    pub pad: usize,
}

impl Conv2dGeom {
    /// Validated constructor: the stride is positive, the kernel is non-empty and fits in the
    /// padded input (`kh <= h + 2 pad`, `kw <= w + 2 pad`).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        n: usize,
        c_in: usize,
        h: usize,
        w: usize,
        c_out: usize,
        kh: usize,
        kw: usize,
        stride: usize,
        pad: usize,
    ) -> Result<Self> {
        if stride == 0 {
            return Err(Error::param("stride", "must be at least 1"));
        }
        if kh == 0 || kw == 0 {
            return Err(Error::param("kernel", format!("{kh}x{kw} is empty")));
        }
        if kh > h + 2 * pad || kw > w + 2 * pad {
            return Err(Error::Shape(format!(
                "kernel {kh}x{kw} larger than the padded input {}x{}",
                h + 2 * pad,
                w + 2 * pad
            )));
        }
        Ok(Self {
            n,
            c_in,
            h,
            w,
            c_out,
            kh,
            kw,
            stride,
            pad,
        })
    }
    /// A short name of the shape for profiles: `3x3/s1 64x32x28x28->64`.
    pub fn label(&self) -> String {
        format!(
            "{}x{}/s{} {}x{}x{}x{}->{}",
            self.kh, self.kw, self.stride, self.n, self.c_in, self.h, self.w, self.c_out
        )
    }
    /// Multiply-adds times two: the floating-point operations of the forward pass (and of
    /// each of the two backward passes).
    pub fn flops(&self) -> u64 {
        2 * (self.n * self.c_out * self.h_out() * self.w_out() * self.c_in * self.kh * self.kw)
            as u64
    }
    /// Output height.
    pub fn h_out(&self) -> usize {
        (self.h + 2 * self.pad - self.kh) / self.stride + 1
    }
    /// Output width.
    pub fn w_out(&self) -> usize {
        (self.w + 2 * self.pad - self.kw) / self.stride + 1
    }
    /// Number of input elements.
    pub fn x_len(&self) -> usize {
        self.n * self.c_in * self.h * self.w
    }
    /// Number of weight elements.
    pub fn w_len(&self) -> usize {
        self.c_out * self.c_in * self.kh * self.kw
    }
    /// Number of output elements.
    pub fn y_len(&self) -> usize {
        self.n * self.c_out * self.h_out() * self.w_out()
    }
}
