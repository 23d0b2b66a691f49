//! The discrete forward chains: DDPM ([`ddpm`]), SMLD ([`smld`]) and the conversions between
//! the eps, x0, score and v parameterisations ([`param`]).

pub mod ddpm;
pub mod param;
pub mod smld;
