//! Datasets: 2-D toys with and without known densities, the embedded UCI 8x8 digits, and
//! MNIST-format IDX files. Every dataset is a matrix of rows (images flattened, scaled to
//! [-1, 1]) with optional labels; shuffling and splitting are seeded.

use crate::error::{Error, Result};
use ndarray::{Array2, Axis};
use rand::seq::SliceRandom;

pub mod digits;
pub mod idx;
pub mod toy;

pub use toy::Toy;

/// The shape of one image (`channels × height × width`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageShape {
    /// Channels.
    pub channels: usize,
    /// Height.
    pub height: usize,
    /// Width.
    pub width: usize,
}

impl ImageShape {
    /// Number of values of one image.
    pub fn len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Whether an image has no pixels.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A finite dataset: rows of `x` are points (flattened images), optional labels per row.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// The points, `n × d`.
    pub x: Array2<f64>,
    /// The label of each row, if known.
    pub labels: Option<Vec<u8>>,
    /// The image shape of a row, for image data.
    pub image: Option<ImageShape>,
}

impl Dataset {
    /// A dataset; checks that labels and image shape fit the rows and that values are finite.
    pub fn new(x: Array2<f64>, labels: Option<Vec<u8>>, image: Option<ImageShape>) -> Result<Self> {
        if let Some(l) = &labels {
            if l.len() != x.nrows() {
                return Err(Error::Shape(format!(
                    "{} labels for {} rows",
                    l.len(),
                    x.nrows()
                )));
            }
        }
        if let Some(s) = image {
            if s.len() != x.ncols() {
                return Err(Error::Shape(format!(
                    "image {s:?} for rows of {}",
                    x.ncols()
                )));
            }
        }
        if x.iter().any(|v| !v.is_finite()) {
            return Err(Error::NonFinite("dataset value".into()));
        }
        Ok(Dataset { x, labels, image })
    }

    /// Number of points.
    pub fn len(&self) -> usize {
        self.x.nrows()
    }

    /// Whether there are no points.
    pub fn is_empty(&self) -> bool {
        self.x.nrows() == 0
    }

    /// Dimension of a point.
    pub fn dim(&self) -> usize {
        self.x.ncols()
    }

    /// The rows `idx`, in that order.
    pub fn select(&self, idx: &[usize]) -> Dataset {
        Dataset {
            x: self.x.select(Axis(0), idx),
            labels: self
                .labels
                .as_ref()
                .map(|l| idx.iter().map(|&i| l[i]).collect()),
            image: self.image,
        }
    }

    /// A seeded permutation of the rows (the same for the same seed on every platform).
    pub fn shuffled(&self, seed: u64) -> Dataset {
        let mut idx: Vec<usize> = (0..self.len()).collect();
        idx.shuffle(&mut crate::rng::seeded(seed));
        self.select(&idx)
    }

    /// Splits a seeded shuffle into (train, held-out) with `round(fraction · n)` held-out points;
    /// both parts are non-empty.
    pub fn split(&self, held_out: f64, seed: u64) -> Result<(Dataset, Dataset)> {
        if !(held_out > 0.0 && held_out < 1.0) {
            return Err(Error::param(
                "held_out",
                format!("{held_out} is not in (0, 1)"),
            ));
        }
        let n = self.len();
        let k = (held_out * n as f64).round() as usize;
        if k == 0 || k >= n {
            return Err(Error::param(
                "held_out",
                format!("{held_out} of {n} points leaves an empty part"),
            ));
        }
        let s = self.shuffled(seed);
        let train: Vec<usize> = (k..n).collect();
        let test: Vec<usize> = (0..k).collect();
        Ok((s.select(&train), s.select(&test)))
    }
}
