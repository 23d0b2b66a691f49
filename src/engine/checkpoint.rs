//! Checkpoints in the `safetensors` format, with PyTorch names and layouts.
//!
//! A file holds the parameters under their own names (`down.0.0.conv1.weight`, OIHW conv
//! weights, `out × in` linear weights: exactly a PyTorch `state_dict`), and optionally the Adam
//! moments (`adam.m.<name>`, `adam.v.<name>`) and the EMA (`ema.<name>`). The header metadata
//! holds `format = scoresde.checkpoint`, `format_version = 1`, `adam.step`, `ema.decay` and any
//! caller-supplied entries (e.g. `model_config`, a JSON string). In Python,
//! `{k: v for k, v in load_file(p).items() if not k.startswith(("adam.", "ema."))}` is the
//! module's `state_dict`.
//!
//! Files are written atomically (temporary file in the same directory, `fsync`, `rename`).
//! Loading checks everything before it changes anything: a truncated, corrupt or foreign
//! file, a missing or unexpected tensor, a wrong shape or dtype gives [`Error::Checkpoint`]
//! naming the problem, and leaves the store, optimiser and EMA untouched.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io::Write;
use std::path::Path;

use ndarray::{ArrayD, IxDyn};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::engine::optim::{Adam, Ema};
use crate::engine::{Element, ParamStore};
use crate::error::{Error, Result};

/// Value of the `format` metadata key.
pub const FORMAT: &str = "scoresde.checkpoint";
/// Value of the `format_version` metadata key.
pub const FORMAT_VERSION: &str = "1";

const ADAM_M: &str = "adam.m.";
const ADAM_V: &str = "adam.v.";
const EMA: &str = "ema.";

fn ck(msg: impl Into<String>) -> Error {
    Error::Checkpoint(msg.into())
}

fn dtype_of<E: Element>() -> Dtype {
    if std::mem::size_of::<E>() == 4 {
        Dtype::F32
    } else {
        Dtype::F64
    }
}

/// Little-endian bytes of an array in its element type.
fn to_bytes<E: Element>(a: &ArrayD<E>) -> Vec<u8> {
    let mut out = Vec::with_capacity(a.len() * std::mem::size_of::<E>());
    for &x in a.iter() {
        if std::mem::size_of::<E>() == 4 {
            out.extend_from_slice(&(x.to_f64() as f32).to_le_bytes());
        } else {
            out.extend_from_slice(&x.to_f64().to_le_bytes());
        }
    }
    out
}

/// The array a stored tensor holds, converted to `E` (F32 or F64 files are accepted; f32 -> f64
/// is exact, f64 -> f32 rounds).
fn from_view<E: Element>(name: &str, t: &TensorView<'_>, shape: &[usize]) -> Result<ArrayD<E>> {
    if t.shape() != shape {
        return Err(ck(format!(
            "tensor `{name}` has shape {:?}, the model expects {shape:?}",
            t.shape()
        )));
    }
    let d = t.data();
    let v: Vec<E> = match t.dtype() {
        Dtype::F32 => d
            .chunks_exact(4)
            .map(|b| <E as Element>::from_f64(f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64))
            .collect(),
        Dtype::F64 => d
            .chunks_exact(8)
            .map(|b| <E as Element>::from_f64(f64::from_le_bytes(b.try_into().expect("8 bytes"))))
            .collect(),
        other => {
            return Err(ck(format!(
                "tensor `{name}` has dtype {other:?}, expected F32 or F64"
            )))
        }
    };
    ArrayD::from_shape_vec(IxDyn(shape), v).map_err(|e| ck(format!("tensor `{name}`: {e}")))
}

/// The bytes of a checkpoint (what [`save`] writes).
pub fn to_safetensors<E: Element>(
    store: &ParamStore<E>,
    optim: Option<&Adam<E>>,
    ema: Option<&Ema<E>>,
    metadata: &BTreeMap<String, String>,
) -> Result<Vec<u8>> {
    let mut names: Vec<String> = Vec::new();
    let mut data: Vec<Vec<u8>> = Vec::new();
    let mut shapes: Vec<Vec<usize>> = Vec::new();
    let mut push = |n: String, a: &ArrayD<E>| {
        names.push(n);
        shapes.push(a.shape().to_vec());
        data.push(to_bytes(a));
    };
    for (_, name, a) in store.iter() {
        push(name.to_string(), a);
    }
    let mut meta: HashMap<String, String> = metadata.clone().into_iter().collect();
    meta.insert("format".into(), FORMAT.into());
    meta.insert("format_version".into(), FORMAT_VERSION.into());
    if let Some(o) = optim {
        if o.m.len() != store.len() {
            return Err(ck("optimiser state does not match the store"));
        }
        for (id, name, _) in store.iter() {
            push(format!("{ADAM_M}{name}"), &o.m[id.0]);
            push(format!("{ADAM_V}{name}"), &o.v[id.0]);
        }
        meta.insert("adam.step".into(), o.step.to_string());
    }
    if let Some(e) = ema {
        if e.shadow.len() != store.len() {
            return Err(ck("EMA does not match the store"));
        }
        for (id, name, _) in store.iter() {
            push(format!("{EMA}{name}"), &e.shadow[id.0]);
        }
        meta.insert("ema.decay".into(), format!("{:e}", e.decay));
    }
    let dt = dtype_of::<E>();
    let views = names
        .iter()
        .zip(shapes)
        .zip(&data)
        .map(|((n, s), d)| {
            Ok((
                n.clone(),
                TensorView::new(dt, s, d).map_err(|e| ck(e.to_string()))?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::serialize(views, Some(meta)).map_err(|e| ck(format!("serialise: {e}")))
}

/// Writes a checkpoint atomically: to a temporary file next to `path`, `fsync`, then `rename`
/// over `path` (a crash leaves either the old file or the new one, never half of one).
pub fn save<E: Element>(
    path: &Path,
    store: &ParamStore<E>,
    optim: Option<&Adam<E>>,
    ema: Option<&Ema<E>>,
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    let bytes = to_safetensors(store, optim, ema, metadata)?;
    let file = path
        .file_name()
        .ok_or_else(|| ck(format!("{}: not a file path", path.display())))?;
    let tmp = path.with_file_name(format!(
        ".{}.tmp{}",
        file.to_string_lossy(),
        std::process::id()
    ));
    let write = || -> std::io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // Make the rename itself durable; not every platform can open a directory.
            if let Ok(d) = fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    };
    write().inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })?;
    Ok(())
}

/// Reads a checkpoint written by [`save`] (or any safetensors `state_dict` with the same
/// names) into `store`, and when given, into `optim` and `ema` (the file must then hold them).
/// Returns the header metadata. Nothing is changed unless the whole file checks out.
pub fn load<E: Element>(
    path: &Path,
    store: &mut ParamStore<E>,
    optim: Option<&mut Adam<E>>,
    ema: Option<&mut Ema<E>>,
) -> Result<BTreeMap<String, String>> {
    let bytes = fs::read(path)?;
    from_safetensors(&bytes, store, optim, ema).map_err(|e| match e {
        Error::Checkpoint(m) => ck(format!("{}: {m}", path.display())),
        e => e,
    })
}

/// [`load`] from bytes in memory.
pub fn from_safetensors<E: Element>(
    bytes: &[u8],
    store: &mut ParamStore<E>,
    optim: Option<&mut Adam<E>>,
    ema: Option<&mut Ema<E>>,
) -> Result<BTreeMap<String, String>> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| {
        ck(format!(
            "not a valid safetensors file (truncated or corrupt?): {e}"
        ))
    })?;
    let (_, header) =
        SafeTensors::read_metadata(bytes).map_err(|e| ck(format!("unreadable header: {e}")))?;
    let meta: BTreeMap<String, String> = header
        .metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    if let Some(f) = meta.get("format") {
        if f != FORMAT {
            return Err(ck(format!(
                "foreign file: format `{f}`, expected `{FORMAT}`"
            )));
        }
        let v = meta
            .get("format_version")
            .map(String::as_str)
            .unwrap_or("?");
        if v != FORMAT_VERSION {
            return Err(ck(format!(
                "format version {v}, this build reads {FORMAT_VERSION}"
            )));
        }
    }
    // Every name the file may hold, and which of them are required.
    let names: Vec<String> = store.iter().map(|(_, n, _)| n.to_string()).collect();
    let mut known: HashSet<String> = names.iter().cloned().collect();
    for n in &names {
        for p in [ADAM_M, ADAM_V, EMA] {
            known.insert(format!("{p}{n}"));
        }
    }
    let mut unexpected: Vec<&str> = st
        .names()
        .into_iter()
        .filter(|n| !known.contains(*n))
        .collect();
    if !unexpected.is_empty() {
        unexpected.sort_unstable();
        let more = if unexpected.len() > 3 { ", ..." } else { "" };
        return Err(ck(format!(
            "foreign file: {} tensor(s) the model does not have ({}{more})",
            unexpected.len(),
            unexpected[..unexpected.len().min(3)].join(", ")
        )));
    }
    let read_all = |prefix: &str| -> Result<Vec<ArrayD<E>>> {
        let mut missing = Vec::new();
        let mut out = Vec::new();
        for (_, n, a) in store.iter() {
            let key = format!("{prefix}{n}");
            match st.tensor(&key) {
                Ok(t) => out.push(from_view::<E>(&key, &t, a.shape())?),
                Err(_) => missing.push(key),
            }
        }
        if missing.is_empty() {
            Ok(out)
        } else {
            let more = if missing.len() > 3 { ", ..." } else { "" };
            Err(ck(format!(
                "{} tensor(s) missing ({}{more})",
                missing.len(),
                missing[..missing.len().min(3)].join(", ")
            )))
        }
    };
    let params = read_all("")?;
    let adam = match &optim {
        Some(_) => {
            let step = meta
                .get("adam.step")
                .ok_or_else(|| ck("no optimiser state (`adam.step` missing)"))?
                .parse::<u64>()
                .map_err(|e| ck(format!("`adam.step`: {e}")))?;
            Some((read_all(ADAM_M)?, read_all(ADAM_V)?, step))
        }
        None => None,
    };
    let ema_state = match &ema {
        Some(_) => {
            let decay = meta
                .get("ema.decay")
                .ok_or_else(|| ck("no EMA (`ema.decay` missing)"))?
                .parse::<f64>()
                .map_err(|e| ck(format!("`ema.decay`: {e}")))?;
            if !(0.0..=1.0).contains(&decay) {
                return Err(ck(format!("`ema.decay` = {decay} outside [0, 1]")));
            }
            Some((read_all(EMA)?, decay))
        }
        None => None,
    };
    // Everything checked: commit.
    let ids: Vec<_> = store.ids().collect();
    for (id, a) in ids.into_iter().zip(params) {
        store.set(id, a)?;
    }
    if let (Some(o), Some((m, v, step))) = (optim, adam) {
        o.m = m;
        o.v = v;
        o.step = step;
    }
    if let (Some(e), Some((s, decay))) = (ema, ema_state) {
        e.shadow = s;
        e.decay = decay;
    }
    Ok(meta)
}
