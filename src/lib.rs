//! # scoresde
//!
//! A pure-Rust, CPU-only reference implementation of diffusion and score-based generative
//! models (DDPM, NCSN/SMLD, DDIM and the score-SDE framework), in which every formula of the
//! source documents is checked by a test. The formula ledger lives in `reference/ledger.toml`;
//! doc comments cite its ids (for example `A05` for document 000, eq. 1.5).
//!
//! Layers (each depends only on those above it):
//! 1. numbers: [`gaussian`], [`schedule`];
//! 2. processes: [`chain`] (discrete DDPM and SMLD chains), [`sde`] (VP, sub-VP, VE), [`ncsn`];
//! 3. score models: [`score`];
//! 4. the engine: [`engine`] (tensors, reverse-mode autodiff, kernels, networks) — independent
//!    of the mathematics core;
//! 5. samplers: [`sampler`];
//! 6. controllable generation: [`guidance`] (conditional sampling, inpainting, SDEdit, ILVR).

pub mod chain;
pub mod data;
pub mod empirical_score;
pub mod engine;
pub mod error;
pub mod eval;
pub mod gaussian;
pub mod guidance;
pub mod likelihood;
pub mod loss;
pub mod ncsn;
#[cfg(feature = "plot")]
pub mod plot;
pub mod rng;
pub mod sampler;
pub mod schedule;
pub mod score;
pub mod sde;
pub mod stats;
pub mod train;

pub use error::{Error, Result};
