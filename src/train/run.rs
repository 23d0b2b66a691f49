//! The run directory: `config.json` (the resolved configuration), `metrics.csv` (one row per
//! step: `step,loss,lr,grad_norm,seconds`), `checkpoint.safetensors` (written atomically; the
//! last good one is never overwritten by a diverged state), and the pictures.

use crate::error::{Error, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Header of `metrics.csv`.
pub const METRICS_HEADER: &str = "step,loss,lr,grad_norm,seconds";

/// A run directory.
#[derive(Clone, Debug)]
pub struct RunDir {
    /// Its path.
    pub path: PathBuf,
}

fn atomic_write(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

impl RunDir {
    /// Opens `path` for a run with configuration `config_json`. A fresh run (`resume = false`)
    /// refuses a directory that already holds a checkpoint, so a finished run is never
    /// overwritten by accident. Resuming keeps only the metrics rows up to `resume_step`.
    pub fn open(path: &Path, config_json: &str, resume: Option<u64>) -> Result<RunDir> {
        std::fs::create_dir_all(path)?;
        let dir = RunDir {
            path: path.to_path_buf(),
        };
        match resume {
            None => {
                if dir.checkpoint_path().exists() {
                    return Err(Error::param(
                        "out",
                        format!(
                            "{} already holds a checkpoint: pass --resume to continue it or choose another --out",
                            path.display()
                        ),
                    ));
                }
                atomic_write(&dir.metrics_path(), &format!("{METRICS_HEADER}\n"))?;
            }
            Some(step) => {
                let old = std::fs::read_to_string(dir.metrics_path()).unwrap_or_default();
                let mut keep = format!("{METRICS_HEADER}\n");
                for line in old.lines().skip(1) {
                    let s: Option<u64> = line.split(',').next().and_then(|s| s.parse().ok());
                    if s.is_some_and(|s| s <= step) {
                        keep.push_str(line);
                        keep.push('\n');
                    }
                }
                atomic_write(&dir.metrics_path(), &keep)?;
            }
        }
        atomic_write(&path.join("config.json"), &format!("{config_json}\n"))?;
        Ok(dir)
    }

    /// `checkpoint.safetensors`.
    pub fn checkpoint_path(&self) -> PathBuf {
        self.path.join("checkpoint.safetensors")
    }

    /// `metrics.csv`.
    pub fn metrics_path(&self) -> PathBuf {
        self.path.join("metrics.csv")
    }

    /// Appends rows to `metrics.csv`.
    pub fn append_metrics(&self, rows: &[String]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(self.metrics_path())?;
        for r in rows {
            writeln!(f, "{r}")?;
        }
        Ok(())
    }

    /// `(step, loss)` of every row of `metrics.csv`.
    pub fn loss_history(&self) -> Result<Vec<(f64, f64)>> {
        let text = std::fs::read_to_string(self.metrics_path())?;
        Ok(text
            .lines()
            .skip(1)
            .filter_map(|l| {
                let mut it = l.split(',');
                Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
            })
            .collect())
    }
}
