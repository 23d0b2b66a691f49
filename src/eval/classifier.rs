//! A small convolutional classifier trained with this crate's engine. Its penultimate layer
//! (64 features) defines the feature space of the Frechet distance ([`super::frechet`]), and
//! its label distribution of generated samples shows which classes a model produces.
//!
//! Architecture for `r × r` one-channel images (`r` divisible by 4: 8x8 digits, 28x28 MNIST):
//! conv 3x3 (1→16) · ReLU · 2x2 average pool · conv 3x3 (16→32) · ReLU · 2x2 average pool ·
//! flatten (`32 r²/16`) · linear → 64 · ReLU (the features) · linear → 10 (the logits).
//! Trained by Adam on the cross-entropy `−log softmax(logits)_label`.

use crate::data::Dataset;
#[cfg(feature = "checkpoint")]
use crate::engine::checkpoint;
use crate::engine::nn::{Conv2d, Linear};
use crate::engine::optim::{Adam, AdamConfig};
use crate::engine::{Graph, ParamStore, Tensor};
use crate::error::{Error, Result};
use crate::rng;
use ndarray::{Array1, Array2, ArrayView2, Axis};
use rand::Rng as _;
use std::collections::BTreeMap;
#[cfg(feature = "checkpoint")]
use std::path::Path;

/// Width of the feature layer.
pub const FEATURES: usize = 64;
/// Number of classes.
pub const CLASSES: usize = 10;

/// The classifier's layers.
#[derive(Clone, Debug)]
pub struct Classifier {
    /// Image side `r`.
    pub resolution: usize,
    conv1: Conv2d,
    conv2: Conv2d,
    fc1: Linear,
    fc2: Linear,
}

/// Training options.
#[derive(Clone, Debug)]
pub struct ClassifierTraining {
    /// Optimiser steps.
    pub steps: u64,
    /// Batch size.
    pub batch: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// Seed of the initialisation and the batches.
    pub seed: u64,
}

impl Default for ClassifierTraining {
    fn default() -> Self {
        ClassifierTraining {
            steps: 1500,
            batch: 64,
            lr: 2e-3,
            seed: 0,
        }
    }
}

impl Classifier {
    /// A freshly initialised classifier for `r × r` images, parameters added to `store`.
    pub fn new(store: &mut ParamStore<f32>, resolution: usize, seed: u64) -> Result<Classifier> {
        if resolution < 4 || !resolution.is_multiple_of(4) {
            return Err(Error::param(
                "resolution",
                format!("the classifier needs a side divisible by 4, got {resolution}"),
            ));
        }
        let mut r = rng::seeded(seed);
        let conv1 = Conv2d::conv3(store, "clf.conv1", 1, 16, 1.0, &mut r)?;
        let conv2 = Conv2d::conv3(store, "clf.conv2", 16, 32, 1.0, &mut r)?;
        let flat = 32 * (resolution / 4) * (resolution / 4);
        let fc1 = Linear::new(store, "clf.fc1", flat, FEATURES, 1.0, &mut r)?;
        let fc2 = Linear::new(store, "clf.fc2", FEATURES, CLASSES, 1.0, &mut r)?;
        Ok(Classifier {
            resolution,
            conv1,
            conv2,
            fc1,
            fc2,
        })
    }

    /// Features `[n, 64]` and logits `[n, 10]` of flattened images `x` (`[n, r²]`).
    pub fn forward(
        &self,
        g: &mut Graph<f32>,
        store: &ParamStore<f32>,
        x: &Tensor<f32>,
    ) -> Result<(Tensor<f32>, Tensor<f32>)> {
        let r = self.resolution;
        let n = x.shape().first().copied().unwrap_or(0);
        if x.len() != n * r * r {
            return Err(Error::Shape(format!(
                "images of shape {:?} for a {r}x{r} classifier",
                x.shape()
            )));
        }
        let h = g.reshape(x, &[n, 1, r, r])?;
        let h = self.conv1.forward(g, store, &h)?;
        let h = g.relu(&h);
        let h = g.avg_pool2x2(&h)?;
        let h = self.conv2.forward(g, store, &h)?;
        let h = g.relu(&h);
        let h = g.avg_pool2x2(&h)?;
        let h = g.reshape(&h, &[n, 32 * (r / 4) * (r / 4)])?;
        let h = self.fc1.forward(g, store, &h)?;
        let feat = g.relu(&h);
        let logits = self.fc2.forward(g, store, &feat)?;
        Ok((feat, logits))
    }

    /// Metadata that identifies a classifier checkpoint.
    pub fn metadata(&self, test_accuracy: f64) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        m.insert(
            "classifier".into(),
            format!(
                "{{\"resolution\":{},\"features\":{FEATURES},\"classes\":{CLASSES}}}",
                self.resolution
            ),
        );
        m.insert("test_accuracy".into(), format!("{test_accuracy}"));
        m
    }

    #[cfg(feature = "checkpoint")]
    /// Loads a classifier written by [`save_classifier`]; returns it, its parameters and the
    /// test accuracy recorded at training time.
    pub fn load(path: &Path) -> Result<(Classifier, ParamStore<f32>, f64)> {
        let bytes = std::fs::read(path)
            .map_err(|e| Error::Checkpoint(format!("{}: {e}", path.display())))?;
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| {
            Error::Checkpoint(format!("{}: not a safetensors file: {e}", path.display()))
        })?;
        let meta = header.metadata().clone().unwrap_or_default();
        let json = meta.get("classifier").ok_or_else(|| {
            Error::Checkpoint(format!(
                "{}: not a classifier checkpoint (no `classifier` metadata; train one with `scoresde eval train-classifier`)",
                path.display()
            ))
        })?;
        let res: usize = crate::train::net::json_field(json, "resolution")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| {
                Error::Checkpoint(format!(
                    "{}: bad classifier metadata {json}",
                    path.display()
                ))
            })?;
        let mut store = ParamStore::new();
        let clf = Classifier::new(&mut store, res, 0)?;
        checkpoint::from_safetensors(&bytes, &mut store, None, None)
            .map_err(|e| Error::Checkpoint(format!("{}: {e}", path.display())))?;
        let acc = meta
            .get("test_accuracy")
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN);
        Ok((clf, store, acc))
    }
}

#[cfg(feature = "checkpoint")]
/// Writes the classifier's parameters and metadata atomically to `path`.
pub fn save_classifier(
    path: &Path,
    clf: &Classifier,
    store: &ParamStore<f32>,
    test_accuracy: f64,
) -> Result<()> {
    checkpoint::save(path, store, None, None, &clf.metadata(test_accuracy))
}

fn to_tensor(x: ArrayView2<f64>) -> Result<Tensor<f32>> {
    Tensor::from_vec(
        &[x.nrows(), x.ncols()],
        x.iter().map(|&v| v as f32).collect(),
    )
}

/// Mean cross-entropy `mean_i [logsumexp(z_i) − z_i,label_i]` of logits `[n, 10]`, with the
/// row maximum subtracted first (as a constant) so that `exp` cannot overflow.
pub fn cross_entropy(
    g: &mut Graph<f32>,
    logits: &Tensor<f32>,
    labels: &[u8],
) -> Result<Tensor<f32>> {
    let n = labels.len();
    if logits.shape() != [n, CLASSES] {
        return Err(Error::Shape(format!(
            "logits {:?} for {n} labels",
            logits.shape()
        )));
    }
    let v = logits.as_slice();
    let maxes: Vec<f32> = (0..n)
        .map(|i| {
            v[i * CLASSES..(i + 1) * CLASSES]
                .iter()
                .cloned()
                .fold(f32::MIN, f32::max)
        })
        .collect();
    let m = Tensor::from_vec(&[n, 1], maxes)?;
    let mut onehot = vec![0f32; n * CLASSES];
    for (i, &l) in labels.iter().enumerate() {
        if l as usize >= CLASSES {
            return Err(Error::Data(format!("label {l} is not a digit 0..9")));
        }
        onehot[i * CLASSES + l as usize] = 1.0;
    }
    let onehot = Tensor::from_vec(&[n, CLASSES], onehot)?;
    let z = g.sub(logits, &m)?;
    let e = g.exp(&z);
    let s = g.sum(&e, &[1], true)?;
    let lse = g.log(&s);
    let zl = g.mul(&z, &onehot)?;
    let zl = g.sum(&zl, &[1], true)?;
    let per = g.sub(&lse, &zl)?;
    Ok(g.mean_all(&per))
}

/// Trains a classifier on `train` (labelled square one-channel images); returns it and its
/// parameters. Batch `k` depends only on `(seed, k)`.
pub fn train_classifier(
    train: &Dataset,
    opts: &ClassifierTraining,
    mut on_step: impl FnMut(u64, f64),
) -> Result<(Classifier, ParamStore<f32>)> {
    let labels = train
        .labels
        .as_ref()
        .ok_or_else(|| Error::Data("the classifier needs labelled data".into()))?;
    let shape = train
        .image
        .ok_or_else(|| Error::Data("the classifier needs image data".into()))?;
    if shape.channels != 1 || shape.height != shape.width {
        return Err(Error::Data(format!(
            "the classifier needs square one-channel images, got {shape:?}"
        )));
    }
    if opts.batch == 0 || opts.steps == 0 {
        return Err(Error::param("batch/steps", "must be at least 1"));
    }
    let mut store = ParamStore::new();
    let clf = Classifier::new(&mut store, shape.height, opts.seed)?;
    let mut adam = Adam::new(
        AdamConfig {
            lr: opts.lr,
            ..Default::default()
        },
        &store,
    )?;
    for k in 1..=opts.steps {
        let mut r = rng::stream(opts.seed ^ 0xc1a55, k);
        let idx: Vec<usize> = (0..opts.batch)
            .map(|_| r.random_range(0..train.len()))
            .collect();
        let xb = train.x.select(Axis(0), &idx);
        let lb: Vec<u8> = idx.iter().map(|&i| labels[i]).collect();
        let mut g = Graph::<f32>::new();
        let (_, logits) = clf.forward(&mut g, &store, &to_tensor(xb.view())?)?;
        let loss = cross_entropy(&mut g, &logits, &lb)?;
        let lv = loss.item() as f64;
        if !lv.is_finite() {
            return Err(Error::NonFinite(format!(
                "classifier loss {lv} at step {k}; lower the learning rate"
            )));
        }
        let grads = g.backward(&loss)?;
        adam.step(&mut store, &grads)?;
        on_step(k, lv);
    }
    Ok((clf, store))
}

/// Features `[n, 64]` and class probabilities `[n, 10]` of flattened images, in chunks.
pub fn features_and_probs(
    clf: &Classifier,
    store: &ParamStore<f32>,
    x: ArrayView2<f64>,
) -> Result<(Array2<f64>, Array2<f64>)> {
    let n = x.nrows();
    let mut feat = Array2::zeros((n, FEATURES));
    let mut prob = Array2::zeros((n, CLASSES));
    let chunk = 256;
    let mut start = 0;
    while start < n {
        let m = chunk.min(n - start);
        let rows = x.slice(ndarray::s![start..start + m, ..]);
        let mut g = Graph::<f32>::inference();
        let (f, l) = clf.forward(&mut g, store, &to_tensor(rows)?)?;
        let p = g.softmax(&l, 1)?;
        for (o, &v) in feat
            .slice_mut(ndarray::s![start..start + m, ..])
            .iter_mut()
            .zip(f.as_slice())
        {
            *o = v as f64;
        }
        for (o, &v) in prob
            .slice_mut(ndarray::s![start..start + m, ..])
            .iter_mut()
            .zip(p.as_slice())
        {
            *o = v as f64;
        }
        start += m;
    }
    Ok((feat, prob))
}

/// The fraction of rows whose most probable class is the label.
pub fn accuracy(prob: ArrayView2<f64>, labels: &[u8]) -> Result<f64> {
    if prob.nrows() != labels.len() || labels.is_empty() {
        return Err(Error::Shape(format!(
            "{} predictions for {} labels",
            prob.nrows(),
            labels.len()
        )));
    }
    let right = prob
        .rows()
        .into_iter()
        .zip(labels)
        .filter(|(p, &l)| argmax(p.as_slice().unwrap_or(&p.to_vec())) == l as usize)
        .count();
    Ok(right as f64 / labels.len() as f64)
}

fn argmax(p: &[f64]) -> usize {
    let mut best = 0;
    for (i, &v) in p.iter().enumerate() {
        if v > p[best] {
            best = i;
        }
    }
    best
}

/// The classifier's view of a set of samples: counts of the most probable class, the mean
/// label distribution and its entropy (nats; `ln 10 = 2.303` for balanced classes).
#[derive(Clone, Debug)]
pub struct LabelDistribution {
    /// Samples assigned to each class (argmax).
    pub counts: [usize; CLASSES],
    /// `mean_i p(y | x_i)`.
    pub mean: Array1<f64>,
    /// `−Σ_y p̄(y) ln p̄(y)` of the mean distribution.
    pub entropy: f64,
}

/// The label distribution of rows of class probabilities.
pub fn label_distribution(prob: ArrayView2<f64>) -> Result<LabelDistribution> {
    if prob.nrows() == 0 || prob.ncols() != CLASSES {
        return Err(Error::Shape(format!("probabilities {:?}", prob.dim())));
    }
    let mut counts = [0usize; CLASSES];
    for r in prob.rows() {
        counts[argmax(&r.to_vec())] += 1;
    }
    let mean = prob.mean_axis(Axis(0)).expect("non-empty");
    let entropy = -mean
        .iter()
        .filter(|&&p| p > 0.0)
        .map(|&p| p * p.ln())
        .sum::<f64>();
    Ok(LabelDistribution {
        counts,
        mean,
        entropy,
    })
}
