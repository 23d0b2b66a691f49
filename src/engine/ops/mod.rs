//! The differentiable ops, as methods of [`crate::engine::Graph`]. Each file keeps each op's
//! forward rule next to its backward rule.

pub mod conv;
pub mod linear;
pub mod matmul;
pub mod nn;
pub mod norm;
pub mod pointwise;
pub mod reduce;
pub mod shape;

pub use pointwise::{Binary, Unary};
