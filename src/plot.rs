//! Pictures: scatter plots of 2-D samples over a density map, and grids of images, written as
//! PNG. A tiny rasteriser; the `png` crate does the encoding.

use crate::{Error, Result};
use std::path::Path;

/// An RGB raster.
#[derive(Clone, Debug)]
pub struct Canvas {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Row-major RGB bytes.
    pub rgb: Vec<u8>,
}

impl Canvas {
    /// A white canvas.
    pub fn new(width: usize, height: usize) -> Self {
        Canvas {
            width,
            height,
            rgb: vec![255; width * height * 3],
        }
    }

    /// Sets one pixel, ignoring coordinates outside the canvas.
    pub fn put(&mut self, x: i64, y: i64, c: [u8; 3]) {
        if x >= 0 && y >= 0 && (x as usize) < self.width && (y as usize) < self.height {
            let i = (y as usize * self.width + x as usize) * 3;
            self.rgb[i..i + 3].copy_from_slice(&c);
        }
    }

    /// A filled disc of radius `r` pixels.
    pub fn dot(&mut self, x: f64, y: f64, r: f64, c: [u8; 3]) {
        let (x0, y0) = (x.round() as i64, y.round() as i64);
        let ri = r.ceil() as i64;
        for dy in -ri..=ri {
            for dx in -ri..=ri {
                if ((dx * dx + dy * dy) as f64) <= r * r {
                    self.put(x0 + dx, y0 + dy, c);
                }
            }
        }
    }

    /// Writes the canvas as an 8-bit RGB PNG, atomically (temporary file, then rename).
    pub fn save_png(&self, path: &Path) -> Result<()> {
        write_png(
            path,
            self.width,
            self.height,
            png::ColorType::Rgb,
            &self.rgb,
        )
    }
}

/// Writes raw 8-bit pixels as a PNG through a temporary file and a rename, so a reader never
/// sees a half-written image.
fn write_png(path: &Path, w: usize, h: usize, color: png::ColorType, data: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)?;
        }
    }
    let tmp = path.with_extension("png.tmp");
    {
        let file = std::fs::File::create(&tmp)?;
        let mut enc = png::Encoder::new(std::io::BufWriter::new(file), w as u32, h as u32);
        enc.set_color(color);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc
            .write_header()
            .map_err(|e| Error::Data(format!("png header: {e}")))?;
        writer
            .write_image_data(data)
            .map_err(|e| Error::Data(format!("png data: {e}")))?;
    }
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// A perceptually ordered colour ramp (white to deep blue) for densities in [0, 1].
fn ramp(v: f64) -> [u8; 3] {
    let v = v.clamp(0.0, 1.0);
    let lerp = |a: f64, b: f64| (a + (b - a) * v).round() as u8;
    [lerp(255.0, 30.0), lerp(255.0, 80.0), lerp(255.0, 170.0)]
}

/// The square region `[lo, hi]²` of the plane that a scatter plot shows.
#[derive(Clone, Copy, Debug)]
pub struct View {
    /// Lower bound of both axes.
    pub lo: f64,
    /// Upper bound of both axes.
    pub hi: f64,
}

/// Draws a scatter plot of 2-D `points` (red) over a shaded map of `density` (blue, scaled to
/// its maximum over the view) and writes it as a PNG of `size × size` pixels.
pub fn scatter_over_density(
    path: &Path,
    points: &[[f64; 2]],
    density: impl Fn(f64, f64) -> f64,
    view: View,
    size: usize,
) -> Result<()> {
    if view.hi <= view.lo || !view.lo.is_finite() || !view.hi.is_finite() {
        return Err(Error::param("view", "needs finite lo < hi"));
    }
    let mut c = Canvas::new(size, size);
    let span = view.hi - view.lo;
    let to_world = |p: usize| view.lo + (p as f64 + 0.5) / size as f64 * span;
    let mut dens = vec![0.0; size * size];
    let mut max = 0.0f64;
    for py in 0..size {
        for px in 0..size {
            let d = density(to_world(px), view.hi - (to_world(py) - view.lo));
            dens[py * size + px] = d;
            if d.is_finite() {
                max = max.max(d);
            }
        }
    }
    if max > 0.0 {
        for py in 0..size {
            for px in 0..size {
                c.put(px as i64, py as i64, ramp(dens[py * size + px] / max));
            }
        }
    }
    for p in points {
        let x = (p[0] - view.lo) / span * size as f64;
        let y = (view.hi - p[1]) / span * size as f64;
        c.dot(x, y, 1.2, [200, 30, 30]);
    }
    c.save_png(path)
}

/// Writes a grid of grayscale images (each `h × w`, values in [-1, 1]) as one PNG with `cols`
/// images per row and a one-pixel gap.
pub fn image_grid(path: &Path, images: &[Vec<f64>], h: usize, w: usize, cols: usize) -> Result<()> {
    if images.is_empty() || cols == 0 {
        return Err(Error::param(
            "images",
            "need at least one image and one column",
        ));
    }
    if let Some(bad) = images.iter().position(|im| im.len() != h * w) {
        return Err(Error::Shape(format!(
            "image {bad} has {} pixels, expected {h}x{w}",
            images[bad].len()
        )));
    }
    let rows = images.len().div_ceil(cols);
    let (gw, gh) = (cols * (w + 1) + 1, rows * (h + 1) + 1);
    let mut buf = vec![128u8; gw * gh];
    for (k, im) in images.iter().enumerate() {
        let (r, q) = (k / cols, k % cols);
        for i in 0..h {
            for j in 0..w {
                let v = ((im[i * w + j] + 1.0) * 127.5).round().clamp(0.0, 255.0) as u8;
                buf[(r * (h + 1) + 1 + i) * gw + q * (w + 1) + 1 + j] = v;
            }
        }
    }
    write_png(path, gw, gh, png::ColorType::Grayscale, &buf)
}

/// Draws a line plot of `(x, y)` points (a training-loss curve) as a PNG of `w × h` pixels:
/// the raw values in light grey, a running mean over `smooth` points in dark blue, grid lines at
/// every power of ten of `y` when `log_y` (else at quarters), and a frame. No text: the axis
/// ranges are the caller's to print.
pub fn line_plot(
    path: &Path,
    points: &[(f64, f64)],
    log_y: bool,
    smooth: usize,
    w: usize,
    h: usize,
) -> Result<()> {
    let pts: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|(x, y)| x.is_finite() && y.is_finite() && (!log_y || *y > 0.0))
        .map(|(x, y)| (x, if log_y { y.log10() } else { y }))
        .collect();
    if pts.len() < 2 || w < 16 || h < 16 {
        return Err(Error::param(
            "points",
            "need at least two finite points and 16 pixels",
        ));
    }
    let (x0, x1) = pts
        .iter()
        .fold((f64::MAX, f64::MIN), |a, p| (a.0.min(p.0), a.1.max(p.0)));
    let (mut y0, mut y1) = pts
        .iter()
        .fold((f64::MAX, f64::MIN), |a, p| (a.0.min(p.1), a.1.max(p.1)));
    if y1 - y0 < 1e-12 {
        y0 -= 0.5;
        y1 += 0.5;
    }
    let xspan = (x1 - x0).max(1e-12);
    let m = 8.0;
    let px = |x: f64| m + (x - x0) / xspan * (w as f64 - 2.0 * m);
    let py = |y: f64| h as f64 - m - (y - y0) / (y1 - y0) * (h as f64 - 2.0 * m);
    let mut c = Canvas::new(w, h);
    let grid = [225, 225, 225];
    let ticks: Vec<f64> = if log_y {
        (y0.floor() as i64..=y1.ceil() as i64)
            .map(|k| k as f64)
            .collect()
    } else {
        (0..=4).map(|k| y0 + (y1 - y0) * k as f64 / 4.0).collect()
    };
    for t in ticks.into_iter().filter(|t| *t >= y0 && *t <= y1) {
        let y = py(t).round() as i64;
        for x in 0..w as i64 {
            c.put(x, y, grid);
        }
    }
    let line = |c: &mut Canvas, a: (f64, f64), b: (f64, f64), col: [u8; 3]| {
        let n = ((b.0 - a.0).abs().max((b.1 - a.1).abs()).ceil() as usize).max(1);
        for i in 0..=n {
            let s = i as f64 / n as f64;
            c.put(
                (a.0 + s * (b.0 - a.0)).round() as i64,
                (a.1 + s * (b.1 - a.1)).round() as i64,
                col,
            );
        }
    };
    for p in pts.windows(2) {
        line(
            &mut c,
            (px(p[0].0), py(p[0].1)),
            (px(p[1].0), py(p[1].1)),
            [190, 190, 190],
        );
    }
    let k = smooth.max(1);
    let mut acc = 0.0;
    let mut sm = Vec::with_capacity(pts.len());
    for (i, p) in pts.iter().enumerate() {
        acc += p.1;
        if i >= k {
            acc -= pts[i - k].1;
        }
        sm.push((p.0, acc / (i + 1).min(k) as f64));
    }
    for p in sm.windows(2) {
        line(
            &mut c,
            (px(p[0].0), py(p[0].1)),
            (px(p[1].0), py(p[1].1)),
            [30, 60, 160],
        );
    }
    for x in 0..w as i64 {
        c.put(x, 0, [0, 0, 0]);
        c.put(x, h as i64 - 1, [0, 0, 0]);
    }
    for y in 0..h as i64 {
        c.put(0, y, [0, 0, 0]);
        c.put(w as i64 - 1, y, [0, 0, 0]);
    }
    c.save_png(path)
}
