//! The conditional reverse SDE (003 eq. 14, 000 eq. 1.23; ledger D14, A1.23, Dc60, Dc10):
//! `dx = {f(x,t) - g(t)² [∇_x log p_t(x) + ∇_x log p_t(y|x)]} dt + g(t) dw̄`. Bayes' rule
//! `p_t(x|y) ∝ p_t(x) p_t(y|x)` makes the bracket the score of `p_t(x|y)`, so any sampler run
//! with [`ClassifierGuided`] samples `p_0(x|y)` from an unconditional model plus a
//! time-dependent classifier (ledger Ac48, Dc58: here the exact classifier of a labelled
//! mixture, [`MixtureClassifier`]).
//!
//! Classifier-free guidance (002 §3.3, ledger Cc18) mixes a conditional and an unconditional
//! score, [`ClassifierFree`].

use crate::error::{Error, Result};
use crate::gaussian::GaussianMixture;
use crate::score::{Level, ScoreModel};
use ndarray::{Array1, Array2, ArrayView2};

/// A time-dependent classifier `p_t(y | x(t))`.
pub trait Classifier: Sync {
    /// Dimension of one point.
    fn dim(&self) -> usize;
    /// Number of classes.
    fn n_classes(&self) -> usize;
    /// `ln p_t(y | x)` at each row of `x`.
    fn log_prob(&self, x: ArrayView2<f64>, level: Level, y: usize) -> Result<Array1<f64>>;
    /// `∇_x ln p_t(y | x)` at each row of `x`.
    fn grad_log_prob(&self, x: ArrayView2<f64>, level: Level, y: usize) -> Result<Array2<f64>>;
}

/// A Gaussian mixture whose components carry class labels: the joint law of `(x(0), y)` with
/// `y` the label of the component `x(0)` came from.
#[derive(Clone, Debug, PartialEq)]
pub struct MixtureClassifier {
    mixture: GaussianMixture,
    labels: Vec<usize>,
    n_classes: usize,
}

impl MixtureClassifier {
    /// Component `k` has class `labels[k]`; classes are `0..=max label`, and every class must
    /// own at least one component of positive weight. Errors: wrong number of labels, an
    /// empty class.
    pub fn new(mixture: GaussianMixture, labels: Vec<usize>) -> Result<Self> {
        if labels.len() != mixture.components().len() {
            return Err(Error::Shape(format!(
                "{} labels for {} components",
                labels.len(),
                mixture.components().len()
            )));
        }
        let n_classes = labels.iter().max().map_or(0, |m| m + 1);
        for y in 0..n_classes {
            let w: f64 = labels
                .iter()
                .zip(mixture.weights())
                .filter(|(&l, _)| l == y)
                .map(|(_, &w)| w)
                .sum();
            if w <= 0.0 {
                return Err(Error::param(
                    "labels",
                    format!("class {y} has no component of positive weight"),
                ));
            }
        }
        Ok(Self {
            mixture,
            labels,
            n_classes,
        })
    }

    /// The unconditional data law.
    pub fn mixture(&self) -> &GaussianMixture {
        &self.mixture
    }

    /// The component labels.
    pub fn labels(&self) -> &[usize] {
        &self.labels
    }

    fn check_class(&self, y: usize) -> Result<()> {
        if y < self.n_classes {
            Ok(())
        } else {
            Err(Error::param(
                "y",
                format!("class {y} is out of range (0..{})", self.n_classes),
            ))
        }
    }

    // ANCHOR: class_mixture
    /// The class-conditional data law `p_0(x | y)`: the components labelled `y`, their weights
    /// renormalised to sum to 1.
    pub fn class_mixture(&self, y: usize) -> Result<GaussianMixture> {
        self.check_class(y)?;
        let (mut w, mut comps) = (Vec::new(), Vec::new());
        for ((c, &wk), &l) in self
            .mixture
            .components()
            .iter()
            .zip(self.mixture.weights())
            .zip(&self.labels)
        {
            if l == y {
                w.push(wk);
                comps.push(c.clone());
            }
        }
        let total: f64 = w.iter().sum();
        GaussianMixture::new(Array1::from_iter(w.iter().map(|v| v / total)), comps)
    }
    // ANCHOR_END: class_mixture

    fn check(&self, x: ArrayView2<f64>) -> Result<()> {
        if x.ncols() == self.mixture.dim() {
            Ok(())
        } else {
            Err(Error::Shape(format!(
                "points of dimension {} for a classifier of dimension {}",
                x.ncols(),
                self.mixture.dim()
            )))
        }
    }
}

impl Classifier for MixtureClassifier {
    fn dim(&self) -> usize {
        self.mixture.dim()
    }

    fn n_classes(&self) -> usize {
        self.n_classes
    }

    // ANCHOR: classifier
    /// `ln p_t(y|x) = ln Σ_{k: label k = y} r_k(x)`, with `r_k` the component posteriors
    /// (responsibilities) of the perturbed mixture `p_t`.
    fn log_prob(&self, x: ArrayView2<f64>, level: Level, y: usize) -> Result<Array1<f64>> {
        self.check_class(y)?;
        self.check(x)?;
        let pt = self.mixture.perturbed(level.scale, level.std)?;
        let mut out = Array1::zeros(x.nrows());
        for (row, o) in x.rows().into_iter().zip(out.iter_mut()) {
            let r = pt.responsibilities(row)?;
            let py: f64 = r
                .iter()
                .zip(&self.labels)
                .filter(|(_, &l)| l == y)
                .map(|(v, _)| v)
                .sum();
            *o = py.ln();
        }
        Ok(out)
    }

    /// `∇_x ln p_t(y|x) = Σ_{k∈y} r_k (s_k - s) / Σ_{k∈y} r_k`, where `s_k` is component `k`'s
    /// score and `s = Σ_j r_j s_j` the mixture score: the gradient of a sum of posteriors,
    /// `∇ r_k = r_k (s_k - s)`.
    fn grad_log_prob(&self, x: ArrayView2<f64>, level: Level, y: usize) -> Result<Array2<f64>> {
        self.check_class(y)?;
        self.check(x)?;
        let pt = self.mixture.perturbed(level.scale, level.std)?;
        let d = self.dim();
        let mut out = Array2::zeros(x.raw_dim());
        for (row, mut o) in x.rows().into_iter().zip(out.rows_mut()) {
            let r = pt.responsibilities(row)?;
            let scores = pt
                .components()
                .iter()
                .map(|c| c.score(row))
                .collect::<Result<Vec<_>>>()?;
            let mut s = Array1::zeros(d);
            for (sk, &rk) in scores.iter().zip(&r) {
                s.scaled_add(rk, sk);
            }
            let (mut num, mut py) = (Array1::<f64>::zeros(d), 0.0);
            for ((sk, &rk), &l) in scores.iter().zip(&r).zip(&self.labels) {
                if l == y {
                    num.scaled_add(rk, &(sk - &s));
                    py += rk;
                }
            }
            if py.is_nan() || py <= 0.0 {
                return Err(Error::NonFinite(format!(
                    "p_t(y = {y} | x) underflows to {py} at a point"
                )));
            }
            o.assign(&(num / py));
        }
        Ok(out)
    }
    // ANCHOR_END: classifier
}

// ANCHOR: classifier_guided
/// The score of the conditional reverse SDE (003 eq. 14): `s(x, t) + λ ∇_x ln p_t(y | x)`.
/// With `λ = 1` (`scale`) and exact parts it is the score of `p_t(x | y)`; other `λ` sample
/// `∝ p_t(x) p_t(y|x)^λ` only approximately (guidance strength).
pub struct ClassifierGuided<'a> {
    base: &'a dyn ScoreModel,
    classifier: &'a dyn Classifier,
    class: usize,
    scale: f64,
}

impl<'a> ClassifierGuided<'a> {
    /// Guides `base` towards class `class` of `classifier` with strength `scale`. Errors:
    /// dimensions differ, class out of range, non-finite scale.
    pub fn new(
        base: &'a dyn ScoreModel,
        classifier: &'a dyn Classifier,
        class: usize,
        scale: f64,
    ) -> Result<Self> {
        if base.dim() != classifier.dim() {
            return Err(Error::Shape(format!(
                "score model of dimension {} with a classifier of dimension {}",
                base.dim(),
                classifier.dim()
            )));
        }
        if class >= classifier.n_classes() {
            return Err(Error::param(
                "class",
                format!("{class} is out of range (0..{})", classifier.n_classes()),
            ));
        }
        crate::error::ensure_finite("scale", scale)?;
        Ok(Self {
            base,
            classifier,
            class,
            scale,
        })
    }
}

impl ScoreModel for ClassifierGuided<'_> {
    fn dim(&self) -> usize {
        self.base.dim()
    }

    /// `s(x, t) + λ ∇ ln p_t(y|x)`; a classifier error (e.g. a posterior that underflows)
    /// yields NaN rows, which samplers reject as [`Error::NonFinite`].
    fn score(&self, x: ArrayView2<f64>, level: Level) -> Array2<f64> {
        let s = self.base.score(x, level);
        match self.classifier.grad_log_prob(x, level, self.class) {
            Ok(g) => s + g * self.scale,
            Err(_) => Array2::from_elem(x.raw_dim(), f64::NAN),
        }
    }
}
// ANCHOR_END: classifier_guided

// ANCHOR: classifier_free
/// Classifier-free guidance (002 §3.3, ledger Cc18): `(1 + w) s(x | y, t) - w s(x, t)`, the
/// score of the tilted density `p_t(x|y)^{1+w} p_t(x)^{-w}` at every level. For `w > 0` this
/// sharpens `p(x|y)`: fidelity up, diversity down.
pub struct ClassifierFree<'a> {
    conditional: &'a dyn ScoreModel,
    unconditional: &'a dyn ScoreModel,
    weight: f64,
}

impl<'a> ClassifierFree<'a> {
    /// Guidance weight `w` (`w = 0` is the conditional model). Errors: dimensions differ,
    /// non-finite weight.
    pub fn new(
        conditional: &'a dyn ScoreModel,
        unconditional: &'a dyn ScoreModel,
        weight: f64,
    ) -> Result<Self> {
        if conditional.dim() != unconditional.dim() {
            return Err(Error::Shape(format!(
                "conditional model of dimension {} with an unconditional one of dimension {}",
                conditional.dim(),
                unconditional.dim()
            )));
        }
        crate::error::ensure_finite("weight", weight)?;
        Ok(Self {
            conditional,
            unconditional,
            weight,
        })
    }
}

impl ScoreModel for ClassifierFree<'_> {
    fn dim(&self) -> usize {
        self.conditional.dim()
    }

    fn score(&self, x: ArrayView2<f64>, level: Level) -> Array2<f64> {
        let w = self.weight;
        self.conditional.score(x, level) * (1.0 + w) - self.unconditional.score(x, level) * w
    }
}
// ANCHOR_END: classifier_free
