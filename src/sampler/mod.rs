//! Samplers: every sampler of the source documents, plus the few-step samplers users pick
//! today. Each works with any [`ScoreModel`](crate::score::ScoreModel) and a matching forward
//! process, draws its noise from an injectable [`NoiseSource`](crate::rng::NoiseSource) and
//! reports progress through a [`Progress`] callback.
//!
//! Continuous time (reverse SDE, predictor-corrector, probability-flow ODE, annealed Langevin):
//! [`predictor`], [`corrector`], [`pc`], [`langevin`], [`ode`]. Discrete time and few-step
//! samplers: [`ddpm`], [`ddim`], [`edm`], [`dpm_solver`].

pub mod corrector;
pub mod ddim;
pub mod ddpm;
pub mod dpm_solver;
pub mod edm;
pub mod langevin;
pub mod ode;
pub mod pc;
pub mod predictor;

/// Progress reporting: called after each step with the number of steps done and the total.
pub trait Progress {
    /// `done` of `total` steps are complete.
    fn step(&mut self, done: usize, total: usize);
}

/// No progress reporting.
#[derive(Clone, Copy, Debug, Default)]
pub struct Silent;

impl Progress for Silent {
    fn step(&mut self, _done: usize, _total: usize) {}
}

impl<F: FnMut(usize, usize)> Progress for F {
    fn step(&mut self, done: usize, total: usize) {
        self(done, total)
    }
}
