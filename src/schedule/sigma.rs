//! Noise-level sequences for SMLD/NCSN.
//!
//! Index convention (document 000, NCSN): `sigma_1 > sigma_2 > ... > sigma_L`, so index 1 is the
//! **largest** noise level and annealed Langevin dynamics visits the levels in index order.
//! Document 003 (eq. 1 and the VE chain) numbers the same levels the other way round,
//! `sigma_min = sigma_1 < ... < sigma_N = sigma_max`; [`SigmaSequence::ascending`] gives that
//! order.

use crate::error::{Error, Result};

/// A strictly decreasing sequence of noise standard deviations `sigma_1 > ... > sigma_L > 0`
/// (000 text before eq. 1.14; used by eq. 1.15, ledger A1.15).
#[derive(Clone, Debug, PartialEq)]
pub struct SigmaSequence {
    /// Stored in document-000 order: `sigmas[0] = sigma_1` is the largest.
    sigmas: Vec<f64>,
}

impl SigmaSequence {
    /// The geometric sequence from `sigma_max = sigma_1` down to `sigma_min = sigma_L` with `L`
    /// levels: `sigma_i = sigma_max * (sigma_min / sigma_max)^((i-1)/(L-1))`, so every ratio
    /// `sigma_{i-1}/sigma_i` equals `gamma = (sigma_max/sigma_min)^(1/(L-1))` (000 text before
    /// eq. 1.14).
    ///
    /// Errors ([`Error::InvalidSchedule`]): `levels < 2`, a non-finite or non-positive sigma, or
    /// `sigma_min >= sigma_max`.
    // ANCHOR: geometric
    pub fn geometric(sigma_max: f64, sigma_min: f64, levels: usize) -> Result<Self> {
        if levels < 2 {
            return Err(Error::InvalidSchedule(format!(
                "a geometric sigma sequence needs L >= 2 levels, got {levels}"
            )));
        }
        check_sigma("sigma_max", sigma_max)?;
        check_sigma("sigma_min", sigma_min)?;
        if sigma_min >= sigma_max {
            return Err(Error::InvalidSchedule(format!(
                "sigma_min = {sigma_min} must be below sigma_max = {sigma_max}"
            )));
        }
        let (lo, hi) = (sigma_min.ln(), sigma_max.ln());
        let steps = (levels - 1) as f64;
        let mut sigmas: Vec<f64> = (0..levels)
            .map(|i| (hi + (lo - hi) * i as f64 / steps).exp())
            .collect();
        // Pin the ends exactly (exp(ln x) may differ from x in the last bit).
        sigmas[0] = sigma_max;
        sigmas[levels - 1] = sigma_min;
        Ok(SigmaSequence { sigmas })
    }
    // ANCHOR_END: geometric

    /// A sequence given in document-000 order (largest first).
    ///
    /// Errors ([`Error::InvalidSchedule`]): empty, any sigma NaN, infinite or `<= 0`, or not
    /// strictly decreasing.
    pub fn from_sigmas(sigmas: Vec<f64>) -> Result<Self> {
        if sigmas.is_empty() {
            return Err(Error::InvalidSchedule(
                "a sigma sequence needs L >= 1 levels".into(),
            ));
        }
        for &s in &sigmas {
            check_sigma("sigma", s)?;
        }
        if let Some(i) = sigmas.windows(2).position(|w| w[1] >= w[0]) {
            return Err(Error::InvalidSchedule(format!(
                "sigmas must be strictly decreasing (sigma_1 largest): sigma_{} = {} <= sigma_{} = {}",
                i + 1,
                sigmas[i],
                i + 2,
                sigmas[i + 1]
            )));
        }
        Ok(SigmaSequence { sigmas })
    }

    /// The number of levels `L`.
    pub fn len(&self) -> usize {
        self.sigmas.len()
    }

    /// Always `false`: a sequence has at least one level.
    pub fn is_empty(&self) -> bool {
        self.sigmas.is_empty()
    }

    /// `sigma_i` with the document's 1-based index (`i = 1` is the largest). `None` outside
    /// `1..=L`.
    pub fn sigma(&self, i: usize) -> Option<f64> {
        i.checked_sub(1).and_then(|k| self.sigmas.get(k)).copied()
    }

    /// The levels largest first (`[sigma_1, ..., sigma_L]`).
    pub fn as_slice(&self) -> &[f64] {
        &self.sigmas
    }

    /// The levels smallest first: document 003's order `sigma_min = sigma_1 < ... < sigma_N`.
    pub fn ascending(&self) -> Vec<f64> {
        self.sigmas.iter().rev().copied().collect()
    }

    /// The largest level `sigma_1`.
    pub fn sigma_max(&self) -> f64 {
        self.sigmas[0]
    }

    /// The smallest level `sigma_L`.
    pub fn sigma_min(&self) -> f64 {
        self.sigmas[self.sigmas.len() - 1]
    }

    /// The ratios `gamma_i = sigma_{i-1} / sigma_i` for `i = 2..=L` (each `> 1`).
    pub fn ratios(&self) -> Vec<f64> {
        self.sigmas.windows(2).map(|w| w[0] / w[1]).collect()
    }

    /// The common ratio `gamma = (sigma_1 / sigma_L)^(1/(L-1))` of a geometric sequence with
    /// these end points; `None` when `L = 1`.
    pub fn gamma(&self) -> Option<f64> {
        let l = self.len();
        (l >= 2).then(|| ((self.sigma_max() / self.sigma_min()).ln() / (l - 1) as f64).exp())
    }
}

fn check_sigma(name: &str, s: f64) -> Result<()> {
    if !s.is_finite() || s <= 0.0 {
        return Err(Error::InvalidSchedule(format!(
            "{name} = {s} must be finite and positive"
        )));
    }
    Ok(())
}
