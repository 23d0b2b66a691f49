//! MNIST-format IDX files (raw or gzipped): `00 00 08 ndims`, `ndims` big-endian `u32` sizes,
//! then the unsigned bytes. Readers for the MNIST and Fashion-MNIST file pairs in a directory.

use super::{Dataset, ImageShape};
use crate::error::{Error, Result};
use flate2::read::GzDecoder;
use ndarray::Array2;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Where Debian's `dataset-fashion-mnist` package installs Fashion-MNIST.
pub const FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// A parsed IDX array of unsigned bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Idx {
    /// The sizes of each dimension.
    pub dims: Vec<usize>,
    /// The values in row-major order.
    pub data: Vec<u8>,
}

/// Parses IDX bytes (gunzipping first when they start with the gzip magic `1f 8b`). `what`
/// names the source in error messages.
pub fn parse(bytes: &[u8], what: &str) -> Result<Idx> {
    let err = |m: String| Error::Data(format!("{what}: {m}"));
    let raw;
    let b: &[u8] = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut v = Vec::new();
        GzDecoder::new(bytes)
            .read_to_end(&mut v)
            .map_err(|e| err(format!("corrupt gzip stream: {e}")))?;
        raw = v;
        &raw
    } else {
        bytes
    };
    if b.len() < 4 {
        return Err(err(format!(
            "{} bytes, too short for an IDX header",
            b.len()
        )));
    }
    if b[0] != 0 || b[1] != 0 {
        return Err(err(format!(
            "wrong magic {:02x} {:02x} {:02x} {:02x}: not an IDX file",
            b[0], b[1], b[2], b[3]
        )));
    }
    if b[2] != 0x08 {
        return Err(err(format!(
            "element type 0x{:02x}, only unsigned bytes (0x08) are supported",
            b[2]
        )));
    }
    let nd = b[3] as usize;
    if nd == 0 {
        return Err(err("zero dimensions".into()));
    }
    let head = 4 + 4 * nd;
    if b.len() < head {
        return Err(err(format!(
            "truncated header: {} bytes, need {head}",
            b.len()
        )));
    }
    let dims: Vec<usize> = (0..nd)
        .map(|i| u32::from_be_bytes(b[4 + 4 * i..8 + 4 * i].try_into().expect("4 bytes")) as usize)
        .collect();
    let count = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| err(format!("dimensions {dims:?} overflow")))?;
    let have = b.len() - head;
    if have != count {
        return Err(err(format!(
            "{} data bytes, the header {dims:?} promises {count} ({})",
            have,
            if have < count {
                "truncated"
            } else {
                "trailing bytes"
            }
        )));
    }
    Ok(Idx {
        dims,
        data: b[head..].to_vec(),
    })
}

/// Reads an IDX file (raw or .gz).
pub fn read(path: &Path) -> Result<Idx> {
    let bytes = std::fs::read(path).map_err(|e| Error::Data(format!("{}: {e}", path.display())))?;
    parse(&bytes, &path.display().to_string())
}

/// Which half of an MNIST-format dataset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// `train-*` (60,000 images).
    Train,
    /// `t10k-*` (10,000 images).
    Test,
}

fn find(dir: &Path, stem: &str) -> Result<PathBuf> {
    for name in [stem.to_string(), format!("{stem}.gz")] {
        let p = dir.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(Error::Data(format!(
        "{}: no `{stem}` or `{stem}.gz`",
        dir.display()
    )))
}

/// Loads the images and labels of one split of an MNIST-format dataset in `dir`
/// (`{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`), pixels scaled to `[-1, 1]` by
/// `v / 127.5 − 1`.
pub fn load_mnist_dir(dir: &Path, split: Split) -> Result<Dataset> {
    let prefix = match split {
        Split::Train => "train",
        Split::Test => "t10k",
    };
    let ip = find(dir, &format!("{prefix}-images-idx3-ubyte"))?;
    let lp = find(dir, &format!("{prefix}-labels-idx1-ubyte"))?;
    let images = read(&ip)?;
    let labels = read(&lp)?;
    if images.dims.len() != 3 {
        return Err(Error::Data(format!(
            "{}: {} dimensions, images need 3",
            ip.display(),
            images.dims.len()
        )));
    }
    if labels.dims.len() != 1 {
        return Err(Error::Data(format!(
            "{}: {} dimensions, labels need 1",
            lp.display(),
            labels.dims.len()
        )));
    }
    let (n, h, w) = (images.dims[0], images.dims[1], images.dims[2]);
    if labels.dims[0] != n {
        return Err(Error::Data(format!(
            "{n} images but {} labels",
            labels.dims[0]
        )));
    }
    if let Some(bad) = labels.data.iter().find(|&&l| l > 9) {
        return Err(Error::Data(format!(
            "{}: label {bad} outside 0..=9",
            lp.display()
        )));
    }
    let x = Array2::from_shape_vec(
        (n, h * w),
        images
            .data
            .iter()
            .map(|&v| v as f64 / 127.5 - 1.0)
            .collect(),
    )
    .map_err(|e| Error::Data(e.to_string()))?;
    Dataset::new(
        x,
        Some(labels.data),
        Some(ImageShape {
            channels: 1,
            height: h,
            width: w,
        }),
    )
}
