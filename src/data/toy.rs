//! Two-dimensional toy distributions. The Gaussian mixtures have a known density and score
//! (through [`GaussianMixture`]); the others are samplers only.

use crate::error::{Error, Result};
use crate::gaussian::GaussianMixture;
use crate::rng::Rng;
use ndarray::Array2;
use rand::Rng as _;
use std::f64::consts::PI;

/// A built-in 2-D distribution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Toy {
    /// 8 Gaussians of std 0.1 on a circle of radius 2 (`GaussianMixture::ring(8, 2, 0.1)`).
    Ring8,
    /// A 5 × 5 grid of Gaussians, spacing 1, std 0.1 (`GaussianMixture::grid(5, 1, 0.1)`).
    Grid,
    /// Two unequal, correlated Gaussians (`GaussianMixture::lopsided()`).
    Lopsided,
    /// Two interleaved half circles with noise 0.1, centred and scaled by 2.
    Moons,
    /// A noisy 2-D Swiss roll, radius up to about 2.8.
    SwissRoll,
    /// Three concentric rings of radii 0.75, 1.5, 2.25 with noise 0.05.
    Rings,
    /// Uniform on the dark squares of a 4 × 4 checkerboard on `[-2, 2]²`.
    Checkerboard,
}

impl Toy {
    /// Every toy with its command-line name.
    pub const ALL: [(&'static str, Toy); 7] = [
        ("ring8", Toy::Ring8),
        ("grid", Toy::Grid),
        ("lopsided", Toy::Lopsided),
        ("moons", Toy::Moons),
        ("swissroll", Toy::SwissRoll),
        ("rings", Toy::Rings),
        ("checkerboard", Toy::Checkerboard),
    ];

    /// The toy called `name` (see [`Toy::ALL`]).
    pub fn from_name(name: &str) -> Result<Toy> {
        Self::ALL
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| *t)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|(n, _)| *n).collect();
                Error::param(
                    "data",
                    format!("unknown toy `{name}`; one of {}", names.join(", ")),
                )
            })
    }

    /// The command-line name.
    pub fn name(&self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, t)| t == self)
            .map(|(n, _)| *n)
            .unwrap_or("?")
    }

    /// The exact mixture, for the toys that are Gaussian mixtures.
    pub fn mixture(&self) -> Option<GaussianMixture> {
        match self {
            Toy::Ring8 => GaussianMixture::ring(8, 2.0, 0.1).ok(),
            Toy::Grid => GaussianMixture::grid(5, 1.0, 0.1).ok(),
            Toy::Lopsided => Some(GaussianMixture::lopsided()),
            _ => None,
        }
    }

    /// `n` independent draws as an `n × 2` matrix.
    pub fn sample(&self, n: usize, rng: &mut Rng) -> Array2<f64> {
        if let Some(m) = self.mixture() {
            return m.sample_n(n, rng);
        }
        let mut out = Array2::zeros((n, 2));
        for mut row in out.rows_mut() {
            let p = self.draw(rng);
            row[0] = p[0];
            row[1] = p[1];
        }
        out
    }

    fn draw(&self, rng: &mut Rng) -> [f64; 2] {
        let mut z = || crate::rng::normal(rng);
        match self {
            Toy::Moons => {
                let (nx, ny) = (z(), z());
                let th = PI * rng.random::<f64>();
                let (x, y) = if rng.random::<bool>() {
                    (th.cos(), th.sin())
                } else {
                    (1.0 - th.cos(), 0.5 - th.sin())
                };
                [2.0 * (x - 0.5) + 0.1 * nx, 2.0 * (y - 0.25) + 0.1 * ny]
            }
            Toy::SwissRoll => {
                let (nx, ny) = (z(), z());
                let th = 1.5 * PI * (1.0 + 2.0 * rng.random::<f64>());
                [
                    th * th.cos() / 5.0 + 0.05 * nx,
                    th * th.sin() / 5.0 + 0.05 * ny,
                ]
            }
            Toy::Rings => {
                let (nx, ny) = (z(), z());
                let r = 0.75 * (1 + rng.random_range(0..3usize)) as f64;
                let th = 2.0 * PI * rng.random::<f64>();
                [r * th.cos() + 0.05 * nx, r * th.sin() + 0.05 * ny]
            }
            Toy::Checkerboard => loop {
                let x = 4.0 * rng.random::<f64>() - 2.0;
                let y = 4.0 * rng.random::<f64>() - 2.0;
                if (x.floor() as i64 + y.floor() as i64).rem_euclid(2) == 0 {
                    break [x, y];
                }
            },
            Toy::Ring8 | Toy::Grid | Toy::Lopsided => unreachable!("mixtures sample above"),
        }
    }
}
