//! The engine: tensors over `ndarray`, reverse-mode autodiff, the hot kernels and the
//! networks. Independent of the mathematics core.
//!
//! A training step: put the parameters in a [`ParamStore`], build a [`Graph`], take the
//! parameters as leaves with [`Graph::param`], run the forward pass with the graph's ops,
//! call [`Graph::backward`] on the loss, and read gradients by [`ParamId`] from [`Grads`].

pub mod alloc;
#[cfg(feature = "checkpoint")]
pub mod checkpoint;
pub mod element;
pub mod embedding;
pub mod graph;
pub mod kernels;
pub mod nn;
pub mod ops;
pub mod optim;
pub(crate) mod par;
pub mod profile;
pub mod tensor;

pub use element::Element;
pub use embedding::{sinusoidal_embedding, GaussianFourier};
pub use graph::{Grads, Graph};
pub use ops::{Binary, Unary};
pub use tensor::{ParamId, ParamStore, Tensor};
