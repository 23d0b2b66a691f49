//! Noise schedules: discrete beta schedules with every derived quantity ([`beta`]), geometric
//! sigma sequences for SMLD/NCSN ([`sigma`]) and continuous beta(t), sigma(t) ([`continuous`]).

pub mod beta;
pub mod continuous;
pub mod sigma;
