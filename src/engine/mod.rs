//! The engine: tensors over `ndarray`, reverse-mode autodiff, the hot kernels and the
//! networks. Independent of the mathematics core.

pub mod element;
pub mod kernels;

pub use element::Element;
