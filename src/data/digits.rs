//! The UCI "Optical Recognition of Handwritten Digits" 8x8 images (1,797 images, 10 classes;
//! Alpaydin & Kaynak, UCI Machine Learning Repository, CC BY 4.0), embedded in the crate as the
//! gzipped CSV that scikit-learn ships (`data/digits.csv.gz`, see `data/README.md`).

use super::{Dataset, ImageShape};
use crate::error::{Error, Result};
use flate2::read::GzDecoder;
use ndarray::Array2;
use std::io::Read;

/// The embedded file.
pub const DIGITS_CSV_GZ: &[u8] = include_bytes!("../../data/digits.csv.gz");

/// Number of images.
pub const N_DIGITS: usize = 1797;

/// Parses gzipped CSV rows of 64 pixel values `0..=16` and a label `0..=9`; pixels are scaled
/// to `[-1, 1]` by `v / 8 − 1`.
pub fn parse_csv_gz(bytes: &[u8]) -> Result<Dataset> {
    let mut text = String::new();
    GzDecoder::new(bytes)
        .read_to_string(&mut text)
        .map_err(|e| Error::Data(format!("digits: not a gzipped text file: {e}")))?;
    let mut x = Vec::new();
    let mut labels = Vec::new();
    for (ln, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let vals: Vec<&str> = line.split(',').collect();
        if vals.len() != 65 {
            return Err(Error::Data(format!(
                "digits line {}: {} fields, expected 65",
                ln + 1,
                vals.len()
            )));
        }
        for (j, v) in vals.iter().enumerate() {
            let f: f64 = v.trim().parse().map_err(|_| {
                Error::Data(format!(
                    "digits line {} field {}: `{v}` is not a number",
                    ln + 1,
                    j + 1
                ))
            })?;
            let max = if j == 64 { 9.0 } else { 16.0 };
            if !(0.0..=max).contains(&f) || f.fract() != 0.0 {
                return Err(Error::Data(format!(
                    "digits line {} field {}: {f} outside 0..={max}",
                    ln + 1,
                    j + 1
                )));
            }
            if j == 64 {
                labels.push(f as u8);
            } else {
                x.push(f / 8.0 - 1.0);
            }
        }
    }
    let n = labels.len();
    if n == 0 {
        return Err(Error::Data("digits: no rows".into()));
    }
    let x = Array2::from_shape_vec((n, 64), x).map_err(|e| Error::Data(e.to_string()))?;
    Dataset::new(
        x,
        Some(labels),
        Some(ImageShape {
            channels: 1,
            height: 8,
            width: 8,
        }),
    )
}

/// The 1,797 embedded digits, pixels in `[-1, 1]`, in file order.
pub fn load() -> Result<Dataset> {
    parse_csv_gz(DIGITS_CSV_GZ)
}
