//! The `likelihood` command: the PF-ODE negative log-likelihood of a checkpoint on data
//! (ledger Dc47, Dc48; `scoresde::likelihood`).

use crate::cmd_model::load;
use crate::cmd_train::{load_data, Data};
use clap::Args;
use ndarray::{Array1, Array2};
use rand::Rng as _;
use scoresde::likelihood::{bits_per_dim, log_likelihood, Divergence, Probe};
use scoresde::rng::seeded;
use scoresde::sampler::ode::Rk45Options;
use scoresde::{Error, Result};
use std::path::PathBuf;

/// Options of `scoresde likelihood`.
#[derive(Args)]
pub struct LikelihoodArgs {
    /// The checkpoint (checkpoint.safetensors of a run directory).
    #[arg(long)]
    checkpoint: PathBuf,
    /// The data [default: the data the checkpoint was trained on]: a toy (fresh exact draws),
    /// `digits`, `mnist:DIR` (test split) or `fashion` (test split).
    #[arg(long)]
    data: Option<String>,
    /// Number of points.
    #[arg(long, default_value_t = 1000)]
    n: usize,
    /// Seed of the points, the dequantisation noise and the probes.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Hutchinson probes (Rademacher) for the divergence; 0 = exact divergence by central
    /// differences (2d score calls per evaluation instead of 2 per probe).
    #[arg(long, default_value_t = 0)]
    probes: usize,
    /// Relative tolerance of the RK45 integration.
    #[arg(long, default_value_t = 1e-5)]
    rtol: f64,
    /// Absolute tolerance of the RK45 integration.
    #[arg(long, default_value_t = 1e-5)]
    atol: f64,
    /// Finite-difference step of the divergence.
    #[arg(long, default_value_t = 1e-3)]
    h: f64,
}

fn mean_se(v: &Array1<f64>) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.sum() / n;
    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (m, (var / n).sqrt())
}

/// `scoresde likelihood`.
pub fn likelihood(a: LikelihoodArgs) -> Result<()> {
    if a.n < 2 {
        return Err(Error::param("n", "need at least 2 points"));
    }
    let m = load(&a.checkpoint)?;
    let spec = a.data.clone().unwrap_or_else(|| m.data.clone());
    let data = load_data(&spec, true)?;
    let div = if a.probes == 0 {
        Divergence::CentralDifference { h: a.h }
    } else {
        Divergence::Hutchinson {
            probes: a.probes,
            probe: Probe::Rademacher,
            h: a.h,
        }
    };
    let opts = Rk45Options::new(a.rtol, a.atol)?;
    let mut rng = seeded(a.seed);
    let t0 = std::time::Instant::now();
    let eps = m.sde.t_eps();
    match data {
        Data::Toy(toy) => {
            if m.score.net.data_dim() != 2 {
                return Err(Error::Shape(format!(
                    "the model takes points of dimension {}, {spec} is 2-D",
                    m.score.net.data_dim()
                )));
            }
            let x = toy.sample(a.n, &mut rng);
            let ll = log_likelihood(m.sde.as_ref(), &m.score, x.view(), eps, div, opts, &mut rng)?;
            let nll = ll.log_p.mapv(|v| -v);
            let (mn, sn) = mean_se(&nll);
            println!(
                "PF-ODE NLL of {} exact draws of {spec}: {mn:.4} +- {sn:.4} nats ({} velocity evaluations, {:.1?})",
                a.n,
                ll.nfe,
                t0.elapsed()
            );
            if let Some(mix) = toy.mixture() {
                let lp = mix.log_density_batch(x.view())?;
                let ent = lp.mapv(|v| -v);
                let (me, se) = mean_se(&ent);
                let (mg, sg) = mean_se(&(&nll - &ent));
                println!(
                    "true entropy (-mean log p_data on the same points): {me:.4} +- {se:.4} nats"
                );
                println!("gap NLL - entropy (paired): {mg:.4} +- {sg:.4} nats (KL(p_data || p_model) >= 0 in expectation)");
            } else {
                println!("({spec} has no closed-form density: no entropy to compare with)");
            }
        }
        Data::Images(d, name) => {
            if m.score.net.data_dim() != d.dim() {
                return Err(Error::Shape(format!(
                    "the model takes points of dimension {}, {name} has {}",
                    m.score.net.data_dim(),
                    d.dim()
                )));
            }
            // Integer levels of the data: the digits have 17 (0..16), MNIST-format files 256.
            let levels: f64 = if name == "digits" { 17.0 } else { 256.0 };
            let n = a.n.min(d.len());
            let scale_a = levels / 2.0;
            let mut y = Array2::<f64>::zeros((n, d.dim()));
            for (i, mut row) in y.rows_mut().into_iter().enumerate() {
                for (o, &v) in row.iter_mut().zip(d.x.row(i)) {
                    let k = ((v + 1.0) / 2.0 * (levels - 1.0)).round();
                    *o = (k + rng.random::<f64>()) / scale_a - 1.0;
                }
            }
            let ll = log_likelihood(m.sde.as_ref(), &m.score, y.view(), eps, div, opts, &mut rng)?;
            let bpd: Array1<f64> = ll
                .log_p
                .iter()
                .map(|&lp| bits_per_dim(lp, d.dim(), scale_a))
                .collect::<Result<_>>()?;
            let (mb, sb) = mean_se(&bpd);
            println!(
                "PF-ODE bits/dim of {n} {name} images (uniform dequantisation of {levels} levels): {mb:.4} +- {sb:.4} ({} velocity evaluations, {:.1?})",
                ll.nfe,
                t0.elapsed()
            );
        }
    }
    Ok(())
}
