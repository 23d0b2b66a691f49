//! The engine's hot kernels. Every fast kernel here has a slow, obviously correct twin in
//! [`reference`] and is tested against it.
//!
//! Layouts follow PyTorch: activations NCHW, convolution weights OIHW, all contiguous
//! row-major.

pub mod reference;

pub use reference::{conv2d_backward_input, conv2d_backward_weight, conv2d_forward};

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
