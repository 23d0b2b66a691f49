//! The `eval` command: sample-quality and likelihood metrics of a checkpoint written by
//! `train`, chosen by its data (2-D toys with a known density, or images), and the training of
//! the feature classifier that the image metrics use.

use clap::Args;
use ndarray::{s, ArrayView2};
use scoresde::data::idx::{self, Split};
use scoresde::data::{digits, Dataset, Toy};
use scoresde::eval::classifier::{
    self, accuracy, features_and_probs, label_distribution, save_classifier, Classifier,
    ClassifierTraining,
};
use scoresde::eval::density::{mmd2_gaussian, nll_gap, score_error};
use scoresde::eval::dequantised::ode_bits_per_dim;
use scoresde::eval::elbo::{elbo_sampled, mean_se, net_eps_rows, Grid, SdeChain};
use scoresde::eval::frechet::frechet_distance_of_features;
use scoresde::loss::ReverseVariance;
use scoresde::rng::seeded;
use scoresde::sde::Sde;
use scoresde::train::config::ddpm_schedule;
use scoresde::train::net::json_field;
use scoresde::train::sample::reverse_diffusion;
use scoresde::train::NetScore;
use scoresde::{stats, Error, Result};
use std::path::{Path, PathBuf};

/// Options of `scoresde eval`.
#[derive(Args)]
pub struct EvalArgs {
    /// The model: checkpoint.safetensors of a `train` run.
    #[arg(long, required_unless_present = "train_classifier")]
    checkpoint: Option<PathBuf>,
    /// The feature classifier for image metrics [default: classifier.safetensors next to the
    /// checkpoint]. Train one with --train-classifier.
    #[arg(long)]
    classifier: Option<PathBuf>,
    /// Train the feature classifier on --data instead of evaluating, and write it to --out.
    #[arg(long)]
    train_classifier: bool,
    /// The data: `digits`, `mnist:DIR` or `fashion` (needed for MNIST-format models and
    /// --train-classifier; toys and digits are found from the checkpoint).
    #[arg(long)]
    data: Option<String>,
    /// Where --train-classifier writes the classifier.
    #[arg(long, default_value = "classifier.safetensors")]
    out: PathBuf,
    /// Classifier training steps (--train-classifier).
    #[arg(long, default_value_t = 1500)]
    classifier_steps: u64,
    /// Number of generated samples and of held-out images in each Frechet distance (images),
    /// or of samples in the two-sample metrics (2-D).
    #[arg(long, default_value_t = 180)]
    n: usize,
    /// Reverse-diffusion steps of the sampler.
    #[arg(long, default_value_t = 500)]
    sample_steps: usize,
    /// Steps S of the DDPM chain whose variational bound is estimated.
    #[arg(long, default_value_t = 1000)]
    elbo_steps: usize,
    /// The first steps of the chain computed exactly in the ELBO (their terms are the largest).
    #[arg(long, default_value_t = 50)]
    elbo_exact: usize,
    /// Blocks of the remaining steps, one step drawn per block and image (stratified, unbiased).
    #[arg(long, default_value_t = 16)]
    elbo_draws: usize,
    /// Held-out images (or 2-D points) for the PF-ODE likelihood (each costs an ODE solve).
    #[arg(long, default_value_t = 64)]
    ode_n: usize,
    /// Seed of every random number.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Also write the metrics as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// The model and how its ELBO chain is built.
struct Model {
    score: NetScore,
    sde: Box<dyn Sde>,
    data: String,
    /// Trained on the 1000-step DDPM chain (objective `ddpm`) rather than in continuous time.
    chain_model: bool,
}

fn load_model(path: &Path) -> Result<Model> {
    let bytes =
        std::fs::read(path).map_err(|e| Error::Checkpoint(format!("{}: {e}", path.display())))?;
    let meta = crate::cmd_model::read_metadata(path, &bytes)?;
    if meta.contains_key("classifier") {
        return Err(Error::Checkpoint(format!(
            "{} is a classifier; pass it with --classifier and the model with --checkpoint",
            path.display()
        )));
    }
    let train_json = meta.get("train_config").cloned().unwrap_or_default();
    let m = crate::cmd_model::load(path)?;
    Ok(Model {
        score: m.score,
        sde: m.sde,
        data: m.data,
        chain_model: json_field(&train_json, "objective") == Some("ddpm"),
    })
}

/// (train, held-out) images of `spec`, split as `train` splits them (10%, seed 1234) for the
/// built-in digits; MNIST-format data use their train and t10k files.
fn load_images(spec: &str) -> Result<(Dataset, Dataset, &'static str)> {
    if spec == "digits" {
        let (tr, te) = digits::load()?.split(0.1, 1234)?;
        return Ok((tr, te, "digits"));
    }
    let (dir, name) = if let Some(d) = spec.strip_prefix("mnist:") {
        (PathBuf::from(d), "mnist")
    } else if spec == "fashion" {
        (PathBuf::from(idx::FASHION_MNIST_DIR), "fashion")
    } else {
        return Err(Error::param(
            "data",
            format!("`{spec}` is not digits, mnist:DIR or fashion"),
        ));
    };
    Ok((
        idx::load_mnist_dir(&dir, Split::Train)?,
        idx::load_mnist_dir(&dir, Split::Test)?,
        name,
    ))
}

/// The grid of an image dataset: 17 levels (UCI digits, 0..16) or 256 (8-bit).
fn grid_of(name: &str) -> Grid {
    Grid {
        levels: if name == "digits" { 17 } else { 256 },
    }
}

pub fn eval(a: EvalArgs) -> Result<()> {
    if a.train_classifier {
        return train_classifier_cmd(&a);
    }
    if a.n < 2 {
        return Err(Error::param("n", "need at least 2 samples"));
    }
    let ck = a.checkpoint.clone().expect("required by clap");
    let model = load_model(&ck)?;
    if model.score.net.data_dim() == 2 {
        if let Some(d) = &a.data {
            return Err(Error::param(
                "data",
                format!(
                    "`{d}` given for a 2-D model of `{}`: --data is for image models",
                    model.data
                ),
            ));
        }
        return eval_toy(&a, &model);
    }
    eval_images(&a, &model, &ck)
}

fn train_classifier_cmd(a: &EvalArgs) -> Result<()> {
    let spec = a.data.as_deref().ok_or_else(|| {
        Error::param(
            "data",
            "--train-classifier needs --data digits|mnist:DIR|fashion",
        )
    })?;
    let (train, test, name) = load_images(spec)?;
    let opts = ClassifierTraining {
        steps: a.classifier_steps,
        seed: a.seed,
        ..Default::default()
    };
    let started = std::time::Instant::now();
    let every = (opts.steps / 10).max(1);
    let (clf, store) = classifier::train_classifier(&train, &opts, |k, l| {
        if k % every == 0 {
            eprintln!("classifier step {k}/{} loss {l:.4}", opts.steps);
        }
    })?;
    let (_, prob) = features_and_probs(&clf, &store, test.x.view())?;
    let acc = accuracy(prob.view(), test.labels.as_deref().unwrap_or(&[]))?;
    save_classifier(&a.out, &clf, &store, acc)?;
    println!(
        "trained the {name} classifier ({} steps, batch {}) in {:.1?}: test accuracy {acc:.4} on {} held-out images; wrote {}",
        opts.steps,
        opts.batch,
        started.elapsed(),
        test.len(),
        a.out.display()
    );
    Ok(())
}

struct Report {
    rows: Vec<(String, String, String)>,
}

impl Report {
    fn add(&mut self, key: &str, value: String, note: &str) {
        println!("{key:<34} {value:>22}  {note}");
        self.rows.push((key.into(), value, note.into()));
    }

    fn write_json(&self, path: &Path) -> Result<()> {
        let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        let body: Vec<String> = self
            .rows
            .iter()
            .map(|(k, v, n)| {
                format!(
                    "  \"{}\": {{\"value\": \"{}\", \"note\": \"{}\"}}",
                    esc(k),
                    esc(v),
                    esc(n)
                )
            })
            .collect();
        std::fs::write(path, format!("{{\n{}\n}}\n", body.join(",\n")))?;
        println!("wrote {}", path.display());
        Ok(())
    }
}

fn eval_images(a: &EvalArgs, model: &Model, ck: &Path) -> Result<()> {
    let spec = match (model.data.as_str(), a.data.as_deref()) {
        (_, Some(d)) => d.to_string(),
        ("digits", None) => "digits".to_string(),
        (other, None) => {
            return Err(Error::param(
                "data",
                format!("the model was trained on `{other}`: pass its files with --data mnist:DIR (or fashion)"),
            ))
        }
    };
    let (train, test, name) = load_images(&spec)?;
    if train.dim() != model.score.net.data_dim() {
        return Err(Error::Shape(format!(
            "{name} images have {} pixels, the model takes {}: wrong --data for this checkpoint",
            train.dim(),
            model.score.net.data_dim()
        )));
    }
    let clf_path = a
        .classifier
        .clone()
        .unwrap_or_else(|| ck.with_file_name("classifier.safetensors"));
    if !clf_path.is_file() {
        return Err(Error::param(
            "classifier",
            format!(
                "{} not found; train one with `scoresde eval --train-classifier --data {spec} --out {}`",
                clf_path.display(),
                clf_path.display()
            ),
        ));
    }
    let (clf, cstore, clf_acc) = Classifier::load(&clf_path)?;
    if clf.resolution * clf.resolution != train.dim() {
        return Err(Error::Shape(format!(
            "the classifier takes {r}x{r} images, the data are {} pixels",
            train.dim(),
            r = clf.resolution
        )));
    }
    let n = a.n.min(test.len()).min(train.len());
    println!(
        "evaluating {} ({name}, {} pixels) with n = {n}, seed {}",
        ck.display(),
        train.dim(),
        a.seed
    );
    let mut rep = Report { rows: vec![] };
    rep.add(
        "classifier test accuracy",
        format!("{clf_acc:.4}"),
        "recorded when the classifier was trained",
    );
    let t0 = std::time::Instant::now();
    let samples = reverse_diffusion(model.sde.as_ref(), &model.score, n, a.sample_steps, a.seed)?
        .mapv(|v| v.clamp(-1.0, 1.0));
    let sample_time = t0.elapsed();
    let (fs, ps) = features_and_probs(&clf, &cstore, samples.view())?;
    let (ft, _) = features_and_probs(&clf, &cstore, test.x.slice(s![..n, ..]))?;
    let (fr, _) = features_and_probs(&clf, &cstore, train.x.slice(s![..n, ..]))?;
    let fd = frechet_distance_of_features(fs.view(), ft.view())?;
    let floor = frechet_distance_of_features(fr.view(), ft.view())?;
    rep.add(
        "Frechet distance (samples, test)",
        format!("{fd:.3}"),
        &format!(
            "{n} samples, {} reverse-diffusion steps ({sample_time:.1?})",
            a.sample_steps
        ),
    );
    rep.add(
        "Frechet floor (train, test)",
        format!("{floor:.3}"),
        &format!("{n} training vs {n} held-out images"),
    );
    let ld = label_distribution(ps.view())?;
    rep.add(
        "sample label counts 0..9",
        format!("{:?}", ld.counts),
        "argmax of the classifier",
    );
    rep.add(
        "entropy of mean label distribution",
        format!("{:.3}", ld.entropy),
        "nats; ln 10 = 2.303 for balanced classes",
    );
    // ELBO of the DDPM chain on the held-out images.
    let grid = grid_of(name);
    let x_test = test.x.slice(s![..n, ..]).to_owned();
    // A model of the DDPM chain is bounded on its own chain; a continuous-time model on the
    // S-step chain embedded in its SDE.
    let chain = if model.chain_model {
        SdeChain::from_schedule(ddpm_schedule()?)
    } else {
        SdeChain::new(model.sde.as_ref(), a.elbo_steps)?
    };
    let eps = |x: ArrayView2<f64>, t: &[f64]| net_eps_rows(&model.score, &chain, x, t);
    let t0 = std::time::Instant::now();
    let mut rng = seeded(a.seed ^ 0xe1b0);
    let est = elbo_sampled(
        &chain,
        x_test.view(),
        &eps,
        ReverseVariance::Beta,
        grid,
        a.elbo_exact.min(chain.steps()),
        a.elbo_draws,
        &mut rng,
    )?;
    let (bpd, se) = est.bpd();
    rep.add(
        "ELBO bits/dim (held-out)",
        format!("{bpd:.4} ± {se:.4}"),
        &format!(
            "S = {}, sigma^2 = beta, first {} steps exact + {} stratified draws, {} grid levels, {:.1?}",
            chain.steps(), a.elbo_exact.min(chain.steps()), a.elbo_draws, grid.levels, t0.elapsed()
        ),
    );
    // PF-ODE bits/dim on uniformly dequantised held-out images.
    let m = a.ode_n.min(n);
    if m > 0 {
        let t0 = std::time::Instant::now();
        let t_eps = 1e-3;
        let (b, nfe) = ode_bits_per_dim(
            model.sde.as_ref(),
            &model.score,
            x_test.slice(s![..m, ..]),
            grid,
            t_eps,
            1,
            1e-5,
            a.seed ^ 0xde9,
        )?;
        let (ob, ose) = mean_se(b.view());
        let scale_a = (grid.levels - 1) as f64 / 2.0;
        rep.add(
            "PF-ODE bits/dim (held-out)",
            format!("{ob:.4} ± {ose:.4}"),
            &format!(
                "{m} images, uniform dequantisation, offset log2 {scale_a} = {:.3}, t_eps = {t_eps}, 1 Rademacher probe, rtol 1e-5, {nfe} NFE, {:.1?}",
                scale_a.log2(),
                t0.elapsed()
            ),
        );
        let (eb_m, _) = {
            // The ELBO on the same m images for a paired comparison.
            let v = est.per_image.slice(s![..m]).to_owned()
                / (train.dim() as f64 * std::f64::consts::LN_2);
            mean_se(v.view())
        };
        rep.add(
            "ODE bpd < ELBO bpd (same images)?",
            format!("{}", ob < eb_m),
            &format!("ELBO on these {m} images {eb_m:.4}"),
        );
    }
    if let Some(p) = &a.json {
        rep.write_json(p)?;
    }
    Ok(())
}

fn eval_toy(a: &EvalArgs, model: &Model) -> Result<()> {
    let toy = Toy::from_name(&model.data).map_err(|_| {
        Error::param(
            "checkpoint",
            format!("a 2-D model trained on `{}`, not a known toy", model.data),
        )
    })?;
    let mut rep = Report { rows: vec![] };
    println!(
        "evaluating a 2-D model of `{}` with n = {}",
        toy.name(),
        a.n
    );
    let samples = reverse_diffusion(
        model.sde.as_ref(),
        &model.score,
        a.n,
        a.sample_steps,
        a.seed,
    )?;
    let exact = toy.sample(a.n, &mut seeded(a.seed ^ 0x5eed));
    let exact2 = toy.sample(a.n, &mut seeded(a.seed ^ 0xfeed));
    let ed = stats::energy_distance(samples.view(), exact.view())?;
    let ed0 = stats::energy_distance(exact2.view(), exact.view())?;
    rep.add(
        "energy distance (samples, exact)",
        format!("{ed:.5}"),
        &format!("{} each", a.n),
    );
    rep.add(
        "energy distance floor (exact, exact)",
        format!("{ed0:.5}"),
        "two independent exact samples",
    );
    let h = 0.5;
    let k = a.n.min(1000);
    let mmd = mmd2_gaussian(samples.slice(s![..k, ..]), exact.slice(s![..k, ..]), h)?;
    let mmd0 = mmd2_gaussian(exact2.slice(s![..k, ..]), exact.slice(s![..k, ..]), h)?;
    rep.add(
        "MMD^2 (Gaussian kernel h = 0.5)",
        format!("{mmd:.5}"),
        &format!("floor {mmd0:.5}"),
    );
    let t = stats::energy_test(
        samples.slice(s![..k.min(500), ..]),
        exact.slice(s![..k.min(500), ..]),
        199,
        a.seed,
    )?;
    rep.add(
        "energy two-sample test p-value",
        format!("{:.3}", t.p_value),
        "199 permutations",
    );
    if let Some(mix) = toy.mixture() {
        for tt in [0.01, 0.1, 0.3, 1.0] {
            let e = score_error(model.sde.as_ref(), &model.score, &mix, tt, 2000, a.seed)?;
            rep.add(
                &format!("score error at t = {tt}"),
                format!("{e:.5}"),
                "sigma^2 E_pt |s - s*|^2 / d",
            );
        }
        let m = a.ode_n.max(2);
        let gap = nll_gap(model.sde.as_ref(), &model.score, &mix, 1e-3, m, a.seed)?;
        let (g, gse) = mean_se(gap.view());
        let x = mix.sample_n(20000, &mut seeded(a.seed ^ 0xe27));
        let lp = mix.log_density_batch(x.view())?;
        let (h_true, h_se) = mean_se(lp.mapv(|v| -v).view());
        rep.add(
            "true entropy (nats)",
            format!("{h_true:.4} ± {h_se:.4}"),
            "Monte Carlo, 20000 draws",
        );
        rep.add(
            "PF-ODE NLL gap (nats)",
            format!("{g:.4} ± {gse:.4}"),
            &format!("{m} exact draws, t_eps = 1e-3; target < 0.1"),
        );
    } else {
        rep.add(
            "score error / NLL gap",
            "n/a".into(),
            "this toy has no closed-form density",
        );
    }
    if let Some(p) = &a.json {
        rep.write_json(p)?;
    }
    Ok(())
}
