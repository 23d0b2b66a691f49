//! Reading a checkpoint written by `train` back into a score model, and the `inspect` command.

use clap::Args;
use scoresde::engine::checkpoint;
use scoresde::engine::optim::Ema;
use scoresde::engine::ParamStore;
use scoresde::loss::Prediction;
use scoresde::sde::Sde;
use scoresde::train::net::json_field;
use scoresde::train::{ModelSpec, Net, NetScore, SdeKind};
use scoresde::{Error, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A trained model read from a checkpoint.
pub struct Loaded {
    /// The network with its (EMA when present) parameters, as a score model.
    pub score: NetScore,
    /// The forward SDE it was trained for.
    pub sde: Box<dyn Sde>,
    /// Which SDE.
    pub sde_kind: SdeKind,
    /// `sigma_max` of a VE SDE.
    pub ve_sigma_max: f64,
    /// The data name recorded at training time (`ring8`, `digits`, ...).
    pub data: String,
}

fn bad(path: &Path, what: impl std::fmt::Display) -> Error {
    Error::Checkpoint(format!("{}: {what}", path.display()))
}

/// The safetensors header metadata of `bytes`, or a clear error for a foreign or corrupt file.
pub fn read_metadata(path: &Path, bytes: &[u8]) -> Result<HashMap<String, String>> {
    let (_, header) = safetensors::SafeTensors::read_metadata(bytes).map_err(|e| {
        bad(
            path,
            format!("not a safetensors checkpoint written by `scoresde train` ({e})"),
        )
    })?;
    Ok(header.metadata().clone().unwrap_or_default())
}

/// Reads `path` (a checkpoint of `train`) into a score model.
pub fn load(path: &Path) -> Result<Loaded> {
    let bytes = std::fs::read(path).map_err(|e| bad(path, e))?;
    let meta = read_metadata(path, &bytes)?;
    let model_json = meta.get("model_config").ok_or_else(|| {
        bad(
            path,
            "no model_config: not a checkpoint written by `scoresde train`",
        )
    })?;
    let train_json = meta.get("train_config").cloned().unwrap_or_default();
    let spec = ModelSpec::from_json(model_json).map_err(|e| bad(path, e))?;
    let sde_kind = match json_field(&train_json, "sde") {
        Some("subvp") => SdeKind::SubVp,
        Some("ve") => SdeKind::Ve,
        _ => SdeKind::Vp,
    };
    let ve_sigma_max = json_field(&train_json, "ve_sigma_max")
        .and_then(|v| v.parse().ok())
        .unwrap_or(5.0);
    let sde = sde_kind.build(ve_sigma_max)?;
    let prediction = match json_field(&train_json, "prediction") {
        Some("x0") => Prediction::X0,
        Some("v") => Prediction::V,
        _ => Prediction::Eps,
    };
    let mut store = ParamStore::<f32>::new();
    let net = Net::new(&spec, &mut store, 0)?;
    // Sample with the EMA parameters when the file has them.
    let mut ema = Ema::new(&store, 0.0)?;
    let has_ema = meta.contains_key("ema.decay");
    checkpoint::from_safetensors(
        &bytes,
        &mut store,
        None,
        if has_ema { Some(&mut ema) } else { None },
    )
    .map_err(|e| bad(path, e))?;
    let params = if has_ema {
        ema.averaged(&store)?
    } else {
        store
    };
    Ok(Loaded {
        score: NetScore::new(net, params).with_prediction(prediction),
        sde,
        sde_kind,
        ve_sigma_max,
        data: json_field(&train_json, "data").unwrap_or("").to_string(),
    })
}

/// Options of `scoresde inspect`.
#[derive(Args)]
pub struct InspectArgs {
    /// The checkpoint (checkpoint.safetensors of a run directory).
    checkpoint: PathBuf,
}

/// Prints a checkpoint's metadata and its tensors' names, shapes and dtypes.
pub fn inspect(a: InspectArgs) -> Result<()> {
    let path = a.checkpoint.as_path();
    let bytes = std::fs::read(path).map_err(|e| bad(path, e))?;
    let meta = read_metadata(path, &bytes)?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| bad(path, e))?;
    println!("{} ({} bytes)", path.display(), bytes.len());
    let mut keys: Vec<_> = meta.keys().collect();
    keys.sort();
    for k in keys {
        println!("  {k} = {}", meta[k]);
    }
    let mut names = st.names();
    names.sort();
    let mut total = 0usize;
    println!("{} tensors:", names.len());
    for n in names {
        let t = st.tensor(n).map_err(|e| bad(path, e))?;
        let count: usize = t.shape().iter().product();
        total += count;
        println!("  {n:<48} {:?} {:?}", t.dtype(), t.shape());
    }
    println!("{total} numbers in all");
    if !meta.contains_key("model_config") {
        println!("(no model_config: this file was not written by `scoresde train`)");
    }
    Ok(())
}
