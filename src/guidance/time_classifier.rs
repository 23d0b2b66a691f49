//! Training a time-dependent classifier (003 §5; ledger Dc59): pairs `(x(t), y)` are made by
//! drawing `(x(0), y)`, a time `t ~ U(eps, T)` and `x(t) ~ p_0t(x(t) | x(0))`; the classifier
//! minimises the cross-entropy averaged over those times (a mixture of cross-entropies over `t`
//! with the uniform weight).
//!
//! The model is a two-class logistic regression on quadratic features of `x` times polynomials
//! in `u = s(t)²`: for one Gaussian per class the exact log-odds is a quadratic in `x` whose
//! coefficients are rational functions of `u` (through `(s² Σ_k + σ² I)⁻¹`), which the
//! polynomials approximate. The loss is convex, so it is minimised by Newton's method in f64:
//! deterministic and free of learning-rate tuning.

use super::conditional::{Classifier, MixtureClassifier};
use crate::error::{Error, Result};
use crate::gaussian::Cholesky;
use crate::score::Level;
use crate::sde::Sde;
use ndarray::{Array1, Array2, ArrayView1, ArrayView2};

/// Training pairs: points `x(t)`, their `u = s(t)²` and labels.
#[derive(Clone, Debug)]
pub struct Pairs {
    /// The noised points, one per row.
    pub x: Array2<f64>,
    /// `s(t)²` of each point's time.
    pub u: Vec<f64>,
    /// The class of each point's component.
    pub y: Vec<usize>,
}

// ANCHOR: pairs
/// `n` training pairs of a two-class labelled mixture: a component by its weight (its label is
/// `y`), `x(0)` from it, `t ~ U(t_min, t_max)`, `x(t) = s(t) x(0) + σ(t) z`. Use
/// `t_min = t_max` for a classifier of one level only.
pub fn training_pairs(
    labelled: &MixtureClassifier,
    sde: &dyn Sde,
    n: usize,
    (t_min, t_max): (f64, f64),
    rng: &mut impl rand::Rng,
) -> Result<Pairs> {
    if labelled.n_classes() != 2 {
        return Err(Error::param(
            "classes",
            "the logistic classifier has two classes",
        ));
    }
    if !(t_min > 0.0 && t_min <= t_max && t_max <= sde.t_end()) {
        return Err(Error::param(
            "times",
            format!("need 0 < t_min <= t_max <= T, got ({t_min}, {t_max})"),
        ));
    }
    let mix = labelled.mixture();
    let d = mix.dim();
    let mut x = Array2::zeros((n, d));
    let (mut u, mut y) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for mut row in x.rows_mut() {
        let r: f64 = rng.random();
        let mut acc = 0.0;
        let mut k = mix.weights().len() - 1;
        for (i, &w) in mix.weights().iter().enumerate() {
            acc += w;
            if r < acc {
                k = i;
                break;
            }
        }
        let x0 = mix.components()[k].sample(rng);
        let t = t_min + (t_max - t_min) * rng.random::<f64>();
        let (s, sd) = (sde.mean_scale(t)?, sde.marginal_std(t)?);
        for (o, v) in row.iter_mut().zip(&x0) {
            *o = s * v + sd * crate::rng::normal(rng);
        }
        u.push(s * s);
        y.push(labelled.labels()[k]);
    }
    Ok(Pairs { x, u, y })
}
// ANCHOR_END: pairs

/// Logistic regression `p(y = 1 | x, t) = sigmoid(θ · φ(x, u))` with `φ = ψ(x) ⊗ (1, u, …, u^m)`
/// and `ψ(x) = (1, x_i, x_i x_j (i <= j))`.
#[derive(Clone, Debug, PartialEq)]
pub struct QuadraticTimeClassifier {
    dim: usize,
    degree: usize,
    theta: Array1<f64>,
}

fn quad_len(d: usize) -> usize {
    1 + d + d * (d + 1) / 2
}

/// `ψ(x)` and its Jacobian `∂ψ_j/∂x_i` (`len × d`).
fn psi(x: ArrayView1<f64>) -> (Vec<f64>, Array2<f64>) {
    let d = x.len();
    let mut v = Vec::with_capacity(quad_len(d));
    let mut jac = Array2::zeros((quad_len(d), d));
    v.push(1.0);
    for i in 0..d {
        jac[[v.len(), i]] = 1.0;
        v.push(x[i]);
    }
    for i in 0..d {
        for j in i..d {
            let r = v.len();
            jac[[r, i]] += x[j];
            jac[[r, j]] += x[i];
            v.push(x[i] * x[j]);
        }
    }
    (v, jac)
}

impl QuadraticTimeClassifier {
    fn features(&self, x: ArrayView1<f64>, u: f64) -> (Array1<f64>, Array2<f64>) {
        let (p, jac) = psi(x);
        let m = self.degree + 1;
        let mut f = Array1::zeros(p.len() * m);
        let mut g = Array2::zeros((p.len() * m, self.dim));
        for (j, &pj) in p.iter().enumerate() {
            let mut uk = 1.0;
            for k in 0..m {
                f[j * m + k] = pj * uk;
                for i in 0..self.dim {
                    g[[j * m + k, i]] = jac[[j, i]] * uk;
                }
                uk *= u;
            }
        }
        (f, g)
    }

    // ANCHOR: fit
    /// Minimises the mean cross-entropy plus `ridge/2 |θ|²` over `pairs` by Newton's method
    /// (at most 100 steps, stopping when the step is below `1e-10 (1 + |θ|)`). Errors: no
    /// pairs, a label other than 0 or 1, a singular Hessian, no convergence.
    pub fn fit(pairs: &Pairs, degree: usize, ridge: f64) -> Result<Self> {
        let (n, d) = pairs.x.dim();
        if n == 0 || pairs.u.len() != n || pairs.y.len() != n {
            return Err(Error::Shape("empty or inconsistent training pairs".into()));
        }
        if pairs.y.iter().any(|&y| y > 1) {
            return Err(Error::param("y", "labels must be 0 or 1"));
        }
        crate::error::ensure_finite("ridge", ridge)?;
        let mut model = Self {
            dim: d,
            degree,
            theta: Array1::zeros(quad_len(d) * (degree + 1)),
        };
        let feats: Vec<Array1<f64>> = (0..n)
            .map(|i| model.features(pairs.x.row(i), pairs.u[i]).0)
            .collect();
        let p = model.theta.len();
        for _ in 0..100 {
            let mut grad = &model.theta * ridge;
            let mut hess = Array2::<f64>::eye(p) * ridge;
            for (f, &y) in feats.iter().zip(&pairs.y) {
                let q = sigmoid(f.dot(&model.theta));
                grad.scaled_add((q - y as f64) / n as f64, f);
                let w = q * (1.0 - q) / n as f64;
                for a in 0..p {
                    let wa = w * f[a];
                    for b in 0..=a {
                        hess[[a, b]] += wa * f[b];
                    }
                }
            }
            for a in 0..p {
                for b in 0..a {
                    hess[[b, a]] = hess[[a, b]];
                }
            }
            let step = Cholesky::factor(hess.view())?.solve(grad.view());
            model.theta -= &step;
            let size = step.dot(&step).sqrt();
            if size <= 1e-10 * (1.0 + model.theta.dot(&model.theta).sqrt()) {
                return Ok(model);
            }
        }
        Err(Error::NonFinite(
            "Newton's method did not converge in 100 steps".into(),
        ))
    }
    // ANCHOR_END: fit

    /// The log-odds `ln p(1|x)/p(0|x)` at a point and its gradient in `x`.
    pub fn logit_and_grad(&self, x: ArrayView1<f64>, u: f64) -> (f64, Array1<f64>) {
        let (f, g) = self.features(x, u);
        (f.dot(&self.theta), g.t().dot(&self.theta))
    }

    fn check(&self, x: ArrayView2<f64>, y: usize) -> Result<()> {
        if x.ncols() != self.dim {
            return Err(Error::Shape(format!(
                "points of dimension {} for a classifier of dimension {}",
                x.ncols(),
                self.dim
            )));
        }
        if y > 1 {
            return Err(Error::param("y", format!("class {y} is not 0 or 1")));
        }
        Ok(())
    }
}

fn sigmoid(a: f64) -> f64 {
    if a >= 0.0 {
        1.0 / (1.0 + (-a).exp())
    } else {
        let e = a.exp();
        e / (1.0 + e)
    }
}

impl Classifier for QuadraticTimeClassifier {
    fn dim(&self) -> usize {
        self.dim
    }

    fn n_classes(&self) -> usize {
        2
    }

    /// `ln sigmoid(±a)` with `a` the log-odds at `u = s²` of the level.
    fn log_prob(&self, x: ArrayView2<f64>, level: Level, y: usize) -> Result<Array1<f64>> {
        self.check(x, y)?;
        let u = level.scale * level.scale;
        Ok(Array1::from_iter(x.rows().into_iter().map(|r| {
            let a = self.logit_and_grad(r, u).0;
            sigmoid(if y == 1 { a } else { -a }).ln()
        })))
    }

    /// `∇ ln p(1|x) = (1 - sigmoid(a)) ∇a`, `∇ ln p(0|x) = -sigmoid(a) ∇a`.
    fn grad_log_prob(&self, x: ArrayView2<f64>, level: Level, y: usize) -> Result<Array2<f64>> {
        self.check(x, y)?;
        let u = level.scale * level.scale;
        let mut out = Array2::zeros(x.raw_dim());
        for (r, mut o) in x.rows().into_iter().zip(out.rows_mut()) {
            let (a, g) = self.logit_and_grad(r, u);
            let c = if y == 1 {
                1.0 - sigmoid(a)
            } else {
                -sigmoid(a)
            };
            o.assign(&(g * c));
        }
        Ok(out)
    }
}
