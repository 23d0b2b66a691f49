//! Controllable generation (003 §5 and appendix I, 000 eq. 1.23, 001 SDEdit/ILVR, 002 §3.3,
//! 004 inpainting): steering an unconditional score model towards a condition without
//! retraining it.
//!
//! - [`conditional`]: the conditional reverse SDE (ledger D14, A1.23) through a time-dependent
//!   classifier's gradient, the exact classifier of a class-labelled mixture, and
//!   classifier-free guidance (Cc18);
//! - [`imputation`]: inpainting (Dc61, Ec12), by the exact conditional oracle and by the
//!   replacement heuristic, whose bias the tests expose;
//! - [`colourisation`]: inpainting in an orthogonal basis whose first coordinate is the grey
//!   level (Dc62);
//! - [`sdedit`]: SDEdit, noising a guide to `t0` and denoising it (Bc16), with its exact output
//!   law for a 1-D mixture;
//! - [`ilvr`]: ILVR's low-pass filter and step (Bc17-Bc19) and the per-frequency
//!   signal-to-noise ratio of a noised stationary signal (Bc15);
//! - [`time_classifier`]: training a time-dependent classifier on noised pairs (Dc59).

pub mod colourisation;
pub mod conditional;
pub mod ilvr;
pub mod imputation;
pub mod sdedit;
pub mod time_classifier;

pub use conditional::{Classifier, ClassifierFree, ClassifierGuided, MixtureClassifier};
