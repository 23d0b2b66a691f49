//! Evaluation of trained models (issue 5, part 4): the Frechet distance in a classifier's
//! feature space, the classifier itself, the DDPM variational bound in bits per dimension,
//! and the metrics of 2-D models with a known density.

pub mod classifier;
pub mod density;
pub mod dequantised;
pub mod elbo;
pub mod frechet;
