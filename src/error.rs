//! The crate's typed error. Anything that comes from a user or a file is checked and reported
//! through [`Error`], never through a panic.

use thiserror::Error as ThisError;

/// Every failure the library reports.
#[derive(Debug, ThisError)]
pub enum Error {
    /// A noise schedule that violates its constraints (beta outside (0,1), non-monotone sigma,
    /// zero steps, sigma_min >= sigma_max, ...).
    #[error("invalid schedule: {0}")]
    InvalidSchedule(String),
    /// A parameter outside its domain.
    #[error("invalid parameter `{name}`: {reason}")]
    InvalidParameter {
        /// The parameter's name.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Arrays whose shapes do not fit together.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// A NaN or infinity where a finite number is required.
    #[error("non-finite value: {0}")]
    NonFinite(String),
    /// A checkpoint file that is truncated, corrupt, foreign or does not match the model.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// A data file that cannot be read as the expected format.
    #[error("data: {0}")]
    Data(String),
    /// An operating-system I/O failure.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Shorthand for [`Error::InvalidParameter`].
    pub fn param(name: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidParameter {
            name,
            reason: reason.into(),
        }
    }
}

/// Returns an error unless `x` is finite.
pub fn ensure_finite(name: &'static str, x: f64) -> Result<f64> {
    if x.is_finite() {
        Ok(x)
    } else {
        Err(Error::NonFinite(format!("{name} = {x}")))
    }
}
