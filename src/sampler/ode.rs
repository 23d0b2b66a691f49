//! The probability-flow ODE `dx/dt = f(x, t) - ½ g(t)² ∇log p_t(x)` (ledger D13, A1.22; 003
//! eq. 13, 000 eq. 1.22) and the solvers that integrate it: Euler, Heun and classical RK4 with
//! fixed steps, and the adaptive Dormand-Prince RK45 pair with `rtol`/`atol` step control (003
//! §4.3 uses this black-box solver, ledger Dc55). Every solver counts its evaluations of the
//! velocity field (NFE: one network call per evaluation).
//!
//! [`decode`](ProbabilityFlow::decode) runs a latent from `t = T` down to `eps` (sampling,
//! ledger Ac47); [`encode`](ProbabilityFlow::encode) runs data from `eps` up to `T` (ledger
//! Dc52). The generic integrators [`integrate_fixed`] and [`integrate_rk45`] act on any
//! `n × m` state, so the likelihood integrates `[x, ∫ div]` with the same code.

use super::Progress;
use crate::error::{Error, Result};
use crate::rng::NoiseSource;
use crate::score::ScoreModel;
use crate::sde::{ReverseSde, Sde};
use ndarray::{Array2, ArrayView2, Zip};

/// A velocity field `v(x, t)` on an `n × m` state.
pub type Field<'f> = dyn FnMut(ArrayView2<f64>, f64) -> Result<Array2<f64>> + 'f;

/// A fixed-step Runge-Kutta scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FixedSolver {
    /// Forward Euler, order 1, one evaluation per step.
    Euler,
    /// Heun's method (explicit trapezoid), order 2, two evaluations per step.
    Heun,
    /// The classical fourth-order Runge-Kutta scheme, four evaluations per step.
    Rk4,
}

impl FixedSolver {
    /// The order of global convergence.
    pub fn order(self) -> u32 {
        match self {
            FixedSolver::Euler => 1,
            FixedSolver::Heun => 2,
            FixedSolver::Rk4 => 4,
        }
    }
}

/// Options of the adaptive Dormand-Prince RK45 solver.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rk45Options {
    /// Relative tolerance (> 0).
    pub rtol: f64,
    /// Absolute tolerance (> 0).
    pub atol: f64,
    /// Upper bound on the number of attempted steps (accepted + rejected).
    pub max_steps: usize,
}

impl Rk45Options {
    /// Validated tolerances; `max_steps = 100_000`.
    pub fn new(rtol: f64, atol: f64) -> Result<Self> {
        for (name, v) in [("rtol", rtol), ("atol", atol)] {
            if !(v.is_finite() && v > 0.0) {
                return Err(Error::param(
                    name,
                    format!("must be finite and > 0, got {v}"),
                ));
            }
        }
        Ok(Self {
            rtol,
            atol,
            max_steps: 100_000,
        })
    }
}

/// How to integrate an ODE.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OdeMethod {
    /// A fixed-step scheme with this many steps.
    Fixed(FixedSolver, usize),
    /// Adaptive Dormand-Prince RK45.
    Rk45(Rk45Options),
}

/// The end state of an integration.
#[derive(Clone, Debug)]
pub struct OdeSolution {
    /// The state at the final time.
    pub x: Array2<f64>,
    /// Number of evaluations of the velocity field.
    pub nfe: usize,
    /// Accepted steps.
    pub steps: usize,
    /// Rejected steps (RK45 only).
    pub rejected: usize,
}

fn check_finite(a: &Array2<f64>, what: &str) -> Result<()> {
    if a.iter().all(|v| v.is_finite()) {
        Ok(())
    } else {
        Err(Error::NonFinite(format!("{what} contains NaN or infinity")))
    }
}

/// Evaluates the field and rejects a wrongly shaped or non-finite velocity.
fn eval(f: &mut Field, x: ArrayView2<f64>, t: f64, nfe: &mut usize) -> Result<Array2<f64>> {
    *nfe += 1;
    let v = f(x, t)?;
    if v.dim() != x.dim() {
        return Err(Error::Shape(format!(
            "velocity of shape {:?} for a state of shape {:?}",
            v.dim(),
            x.dim()
        )));
    }
    check_finite(&v, "the velocity field")?;
    Ok(v)
}

fn check_span(t0: f64, t1: f64) -> Result<()> {
    if !(t0.is_finite() && t1.is_finite()) || t0 == t1 {
        return Err(Error::param(
            "t",
            format!("need finite, distinct end times, got {t0} -> {t1}"),
        ));
    }
    Ok(())
}

// ANCHOR: fixed_step
/// Integrates `dx/dt = f(x, t)` from `t0` to `t1` (either direction) with `n_steps` equal
/// steps `h = (t1 - t0) / n_steps` of `solver`:
/// - Euler: `x + h k1`, `k1 = f(x, t)`;
/// - Heun: `x + h (k1 + k2) / 2`, `k2 = f(x + h k1, t + h)`;
/// - RK4: `x + h (k1 + 2 k2 + 2 k3 + k4) / 6` with the classical stages at `t`, `t + h/2`,
///   `t + h/2`, `t + h`.
pub fn integrate_fixed(
    f: &mut Field,
    x0: ArrayView2<f64>,
    t0: f64,
    t1: f64,
    n_steps: usize,
    solver: FixedSolver,
    progress: &mut dyn Progress,
) -> Result<OdeSolution> {
    check_span(t0, t1)?;
    if n_steps == 0 {
        return Err(Error::param("n_steps", "must be at least 1"));
    }
    check_finite(&x0.to_owned(), "the initial state")?;
    let h = (t1 - t0) / n_steps as f64;
    let mut x = x0.to_owned();
    let mut nfe = 0;
    for i in 0..n_steps {
        let t = t0 + i as f64 * h;
        // The last step lands exactly on t1.
        let t_next = if i + 1 == n_steps { t1 } else { t + h };
        let h = t_next - t;
        let k1 = eval(f, x.view(), t, &mut nfe)?;
        x = match solver {
            FixedSolver::Euler => &x + &(k1 * h),
            FixedSolver::Heun => {
                let k2 = eval(f, (&x + &(&k1 * h)).view(), t_next, &mut nfe)?;
                &x + &((k1 + k2) * (0.5 * h))
            }
            FixedSolver::Rk4 => {
                let k2 = eval(f, (&x + &(&k1 * (0.5 * h))).view(), t + 0.5 * h, &mut nfe)?;
                let k3 = eval(f, (&x + &(&k2 * (0.5 * h))).view(), t + 0.5 * h, &mut nfe)?;
                let k4 = eval(f, (&x + &(&k3 * h)).view(), t_next, &mut nfe)?;
                &x + &((k1 + (k2 + k3) * 2.0 + k4) * (h / 6.0))
            }
        };
        progress.step(i + 1, n_steps);
    }
    Ok(OdeSolution {
        x,
        nfe,
        steps: n_steps,
        rejected: 0,
    })
}
// ANCHOR_END: fixed_step

// ANCHOR: dopri
// Dormand-Prince 5(4) tableau (Dormand & Prince 1980): nodes c, stages a, the fifth-order
// weights b (= the last row of a: the method is FSAL) and the error weights e = b - b*.
const C: [f64; 7] = [0.0, 1.0 / 5.0, 3.0 / 10.0, 4.0 / 5.0, 8.0 / 9.0, 1.0, 1.0];
const A: [[f64; 6]; 7] = [
    [0.0; 6],
    [1.0 / 5.0, 0.0, 0.0, 0.0, 0.0, 0.0],
    [3.0 / 40.0, 9.0 / 40.0, 0.0, 0.0, 0.0, 0.0],
    [44.0 / 45.0, -56.0 / 15.0, 32.0 / 9.0, 0.0, 0.0, 0.0],
    [
        19372.0 / 6561.0,
        -25360.0 / 2187.0,
        64448.0 / 6561.0,
        -212.0 / 729.0,
        0.0,
        0.0,
    ],
    [
        9017.0 / 3168.0,
        -355.0 / 33.0,
        46732.0 / 5247.0,
        49.0 / 176.0,
        -5103.0 / 18656.0,
        0.0,
    ],
    [
        35.0 / 384.0,
        0.0,
        500.0 / 1113.0,
        125.0 / 192.0,
        -2187.0 / 6784.0,
        11.0 / 84.0,
    ],
];
const E: [f64; 7] = [
    71.0 / 57600.0,
    0.0,
    -71.0 / 16695.0,
    71.0 / 1920.0,
    -17253.0 / 339200.0,
    22.0 / 525.0,
    -1.0 / 40.0,
];

/// Integrates `dx/dt = f(x, t)` from `t0` to `t1` with the adaptive Dormand-Prince 5(4) pair.
///
/// Step control: the error estimate `err = h Σ_j e_j k_j` is measured in the RMS norm
/// `‖err / (atol + rtol max(|x|, |x_new|))‖` over every entry of the state; a step is accepted
/// when that norm is `<= 1`, and the next step is `h · min(5, max(0.2, 0.9 norm^{-1/5}))`
/// (after a rejection the step never grows). The first step follows Hairer, Nørsett & Wanner's
/// starting-step heuristic. The solution advances with the fifth-order weights (local
/// extrapolation) and reuses the last stage as the next first stage (FSAL).
pub fn integrate_rk45(
    f: &mut Field,
    x0: ArrayView2<f64>,
    t0: f64,
    t1: f64,
    opts: Rk45Options,
) -> Result<OdeSolution> {
    check_span(t0, t1)?;
    let opts = Rk45Options::new(opts.rtol, opts.atol).map(|o| Rk45Options {
        max_steps: opts.max_steps,
        ..o
    })?;
    check_finite(&x0.to_owned(), "the initial state")?;
    let dir = (t1 - t0).signum();
    let span = (t1 - t0).abs();
    let mut nfe = 0;
    let mut x = x0.to_owned();
    let mut t = t0;
    let mut k1 = eval(f, x.view(), t, &mut nfe)?;
    let size = x.len().max(1) as f64;
    let rms = |a: &Array2<f64>, scale: &Array2<f64>| -> f64 {
        (Zip::from(a)
            .and(scale)
            .fold(0.0, |s, &v, &w| s + (v / w) * (v / w))
            / size)
            .sqrt()
    };
    // Starting step (Hairer-Nørsett-Wanner II.4): h0 = 0.01 |x|/|f|, refined by one Euler probe.
    let sc0 = x.mapv(|v| opts.atol + opts.rtol * v.abs());
    let (d0, d1) = (rms(&x, &sc0), rms(&k1, &sc0));
    let mut h = if d0 < 1e-5 || d1 < 1e-5 {
        1e-6
    } else {
        0.01 * d0 / d1
    };
    h = h.min(span);
    let probe = &x + &(&k1 * (dir * h));
    let k_probe = eval(f, probe.view(), t + dir * h, &mut nfe)?;
    let d2 = rms(&(&k_probe - &k1), &sc0) / h;
    let h1 = if d1.max(d2) <= 1e-15 {
        (h * 1e-3).max(1e-6)
    } else {
        (0.01 / d1.max(d2)).powf(0.2)
    };
    h = (100.0 * h).min(h1).min(span);

    let (mut steps, mut rejected) = (0, 0);
    let mut last_rejected = false;
    while (t1 - t) * dir > 0.0 {
        if steps + rejected >= opts.max_steps {
            return Err(Error::param(
                "max_steps",
                format!("RK45 did not reach t = {t1} in {} steps", opts.max_steps),
            ));
        }
        if h < 1e-14 * span.max(t.abs()) {
            return Err(Error::NonFinite(format!(
                "RK45 step size underflow at t = {t}"
            )));
        }
        let hs = h.min((t1 - t).abs());
        let hd = dir * hs;
        let mut k = vec![k1.clone()];
        let mut x_new = x.clone();
        for s in 1..7 {
            let mut xs = x.clone();
            for (j, kj) in k.iter().enumerate() {
                if A[s][j] != 0.0 {
                    xs.scaled_add(hd * A[s][j], kj);
                }
            }
            let ks = eval(f, xs.view(), t + C[s] * hd, &mut nfe)?;
            if s == 6 {
                // Stage 7 is evaluated at the fifth-order solution (FSAL).
                x_new = xs;
            }
            k.push(ks);
        }
        let mut err = Array2::zeros(x.raw_dim());
        for (j, kj) in k.iter().enumerate() {
            if E[j] != 0.0 {
                err.scaled_add(hd * E[j], kj);
            }
        }
        let scale = Zip::from(&x)
            .and(&x_new)
            .map_collect(|&a, &b| opts.atol + opts.rtol * a.abs().max(b.abs()));
        let norm = rms(&err, &scale);
        let factor = if norm == 0.0 {
            5.0
        } else {
            (0.9 * norm.powf(-0.2)).clamp(0.2, 5.0)
        };
        if norm <= 1.0 {
            t = if hs == (t1 - t).abs() { t1 } else { t + hd };
            x = x_new;
            k1 = k.pop().expect("seven stages");
            steps += 1;
            h = if last_rejected {
                hs * factor.min(1.0)
            } else {
                hs * factor
            };
            last_rejected = false;
        } else {
            rejected += 1;
            h = hs * factor.min(1.0);
            last_rejected = true;
        }
    }
    Ok(OdeSolution {
        x,
        nfe,
        steps,
        rejected,
    })
}
// ANCHOR_END: dopri

/// The probability-flow ODE of a forward SDE with a score model.
#[derive(Clone, Copy)]
pub struct ProbabilityFlow<'a> {
    reverse: ReverseSde<'a>,
    dim: usize,
    eps: f64,
}

impl<'a> ProbabilityFlow<'a> {
    /// The flow of `sde` with `score`, integrated between `eps` and `T`; `eps` in `[0, T)`.
    pub fn new(sde: &'a dyn Sde, score: &'a dyn ScoreModel, eps: f64) -> Result<Self> {
        if !(eps.is_finite() && eps >= 0.0 && eps < sde.t_end()) {
            return Err(Error::param(
                "eps",
                format!("must lie in [0, T) = [0, {}), got {eps}", sde.t_end()),
            ));
        }
        Ok(Self {
            reverse: ReverseSde::new(sde, score),
            dim: score.dim(),
            eps,
        })
    }

    /// The end time `eps` near the data.
    pub fn eps(&self) -> f64 {
        self.eps
    }

    /// The reverse SDE this flow is built on.
    pub fn reverse(&self) -> &ReverseSde<'a> {
        &self.reverse
    }

    // ANCHOR: pf_velocity
    /// The velocity `f(x, t) - ½ g(t)² s(x, t)` (ledger D13), rejecting a non-finite score.
    pub fn velocity(&self, x: ArrayView2<f64>, t: f64) -> Result<Array2<f64>> {
        let v = self.reverse.ode_drift(x, t)?;
        check_finite(&v, "the score")?;
        Ok(v)
    }
    // ANCHOR_END: pf_velocity

    fn run(
        &self,
        x: ArrayView2<f64>,
        t0: f64,
        t1: f64,
        method: OdeMethod,
        progress: &mut dyn Progress,
    ) -> Result<OdeSolution> {
        let mut f = |x: ArrayView2<f64>, t: f64| self.velocity(x, t);
        match method {
            OdeMethod::Fixed(s, n) => integrate_fixed(&mut f, x, t0, t1, n, s, progress),
            OdeMethod::Rk45(o) => integrate_rk45(&mut f, x, t0, t1, o),
        }
    }

    /// Latent `x(T)` to sample `x(eps)`: integrate from `T` down to `eps`.
    pub fn decode(
        &self,
        latent: ArrayView2<f64>,
        method: OdeMethod,
        progress: &mut dyn Progress,
    ) -> Result<OdeSolution> {
        let t_end = self.reverse.sde().t_end();
        self.run(latent, t_end, self.eps, method, progress)
    }

    /// Data `x(eps)` to latent `x(T)`: integrate from `eps` up to `T`.
    pub fn encode(
        &self,
        x: ArrayView2<f64>,
        method: OdeMethod,
        progress: &mut dyn Progress,
    ) -> Result<OdeSolution> {
        let t_end = self.reverse.sde().t_end();
        self.run(x, self.eps, t_end, method, progress)
    }

    /// `n` samples: latents drawn from the prior `p_T`, then decoded.
    pub fn sample(
        &self,
        n: usize,
        method: OdeMethod,
        noise: &mut dyn NoiseSource,
        progress: &mut dyn Progress,
    ) -> Result<OdeSolution> {
        if n == 0 {
            return Err(Error::param("n", "need at least one sample"));
        }
        let latent = self.reverse.sde().prior_sample(noise, n, self.dim());
        self.decode(latent.view(), method, progress)
    }

    /// The data dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }
}
