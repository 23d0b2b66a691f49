//! Checkpoints: exact round trip of parameters, Adam state and EMA through a safetensors file
//! on disk, PyTorch names/layouts in the file, and a typed `Error::Checkpoint` naming the problem
//! for truncated, corrupt, foreign and mismatched files (the target left untouched).
#![cfg(feature = "checkpoint")]

use std::collections::BTreeMap;
use std::path::PathBuf;

use scoresde::engine::checkpoint::{from_safetensors, load, save, to_safetensors};
use scoresde::engine::nn::{MlpConfig, MlpScoreNet, UNet, UNetConfig};
use scoresde::engine::optim::{Adam, AdamConfig, Ema};
use scoresde::engine::{Graph, ParamStore, Tensor};
use scoresde::error::Error;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("scoresde-ck-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

/// A small MLP after two Adam steps with an EMA: everything non-trivial.
fn trained(seed: u64) -> (MlpScoreNet, ParamStore<f32>, Adam<f32>, Ema<f32>) {
    let mut s = ParamStore::new();
    let net = MlpScoreNet::new(
        &mut s,
        MlpConfig {
            width: 8,
            hidden: 2,
            ..MlpConfig::default()
        },
        seed,
    )
    .unwrap();
    let mut opt = Adam::new(AdamConfig::default(), &s).unwrap();
    let mut ema = Ema::new(&s, 0.99).unwrap();
    for k in 0..2 {
        let mut g = Graph::new();
        let x = Tensor::from_vec(&[3, 2], vec![0.1, -0.2, 0.3, 0.4, -0.5, 0.6]).unwrap();
        let y = net.forward(&mut g, &s, &x, &[0.1, 0.5, 0.9]).unwrap();
        let tgt = Tensor::from_vec(&[3, 2], vec![k as f32; 6]).unwrap();
        let l = g.mse(&y, &tgt).unwrap();
        let gr = g.backward(&l).unwrap();
        opt.step(&mut s, &gr).unwrap();
        ema.update(&s).unwrap();
    }
    (net, s, opt, ema)
}

fn msg(e: Error) -> String {
    match e {
        Error::Checkpoint(m) => m,
        other => panic!("expected Error::Checkpoint, got {other:?}"),
    }
}

/// Save, then load into a differently-seeded network: every parameter, moment, the step count
/// and the EMA come back bit for bit, and the metadata carries format version and config.
#[test]
fn checkpoint_round_trips_exactly() {
    let (net, s, opt, ema) = trained(1);
    let p = tmp("round.safetensors");
    let mut meta = BTreeMap::new();
    meta.insert("model_config".to_string(), net.config.to_json());
    save(&p, &s, Some(&opt), Some(&ema), &meta).unwrap();
    let (_, mut s2, mut opt2, mut ema2) = trained(2);
    assert_ne!(
        s2.get(s2.ids().next().unwrap()),
        s.get(s.ids().next().unwrap())
    );
    let m = load(&p, &mut s2, Some(&mut opt2), Some(&mut ema2)).unwrap();
    for id in s.ids() {
        assert_eq!(s.get(id), s2.get(id));
        assert_eq!(opt.m(id), opt2.m(id));
        assert_eq!(opt.v(id), opt2.v(id));
        assert_eq!(ema.get(id), ema2.get(id));
    }
    assert_eq!(opt2.step_count(), 2);
    assert_eq!(ema2.decay, 0.99);
    assert_eq!(m["format_version"], "1");
    assert_eq!(m["model_config"], net.config.to_json());
    // No temporary file is left behind by the atomic write.
    let left: Vec<_> = std::fs::read_dir(p.parent().unwrap())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(left.is_empty());
}

/// The file holds the PyTorch `state_dict` names with OIHW conv and out×in linear shapes, in
/// f32, parsed by the safetensors reader independently of our loader.
#[test]
fn checkpoint_uses_pytorch_names_and_layouts() {
    let mut s = ParamStore::<f32>::new();
    let cfg = UNetConfig {
        base_channels: 8,
        channel_mult: vec![1, 2],
        num_res_blocks: 1,
        groups: 4,
        resolution: 8,
        attn_resolutions: vec![4],
        ..UNetConfig::default()
    };
    UNet::new(&mut s, cfg, 0).unwrap();
    let bytes = to_safetensors(&s, None, None, &BTreeMap::new()).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let t = st.tensor("down.0.0.conv1.weight").unwrap();
    assert_eq!(t.shape(), [8, 8, 3, 3]);
    assert_eq!(t.dtype(), safetensors::Dtype::F32);
    assert_eq!(
        st.tensor("down.0.0.temb_proj.weight").unwrap().shape(),
        [8, 128]
    );
    assert_eq!(
        st.tensor("up.0.0.conv1.weight").unwrap().shape(),
        [16, 32, 3, 3]
    );
    assert_eq!(st.len(), s.len());
    // First element of a weight, little-endian f32.
    let id = s.id("down.0.0.conv1.weight").unwrap();
    let first = f32::from_le_bytes(t.data()[..4].try_into().unwrap());
    assert_eq!(first, s.get(id).iter().next().copied().unwrap());
}

/// A file cut short at several places is rejected with a checkpoint error, not a panic, and
/// the store is unchanged.
#[test]
fn truncated_file_is_rejected() {
    let (_, s, opt, ema) = trained(1);
    let bytes = to_safetensors(&s, Some(&opt), Some(&ema), &BTreeMap::new()).unwrap();
    for cut in [0, 4, 8, 20, bytes.len() / 2, bytes.len() - 1] {
        let (_, mut s2, _, _) = trained(2);
        let before: Vec<_> = s2.iter().map(|(_, _, a)| a.clone()).collect();
        let e = msg(from_safetensors(&bytes[..cut], &mut s2, None, None).unwrap_err());
        assert!(e.contains("truncated or corrupt"), "{e}");
        assert!(s2.iter().zip(&before).all(|((_, _, a), b)| a == b));
    }
    let p = tmp("trunc.safetensors");
    std::fs::write(&p, &bytes[..bytes.len() - 3]).unwrap();
    let (_, mut s2, _, _) = trained(2);
    let e = msg(load(&p, &mut s2, None, None).unwrap_err());
    assert!(
        e.contains("trunc.safetensors"),
        "the message names the file: {e}"
    );
}

/// Garbage in the header (JSON broken) and a header length pointing past the end are rejected.
#[test]
fn corrupt_file_is_rejected() {
    let (_, s, _, _) = trained(1);
    let mut bytes = to_safetensors(&s, None, None, &BTreeMap::new()).unwrap();
    bytes[9] = b'#';
    let (_, mut s2, _, _) = trained(2);
    assert!(msg(from_safetensors(&bytes, &mut s2, None, None).unwrap_err()).contains("corrupt"));
    let mut bytes = to_safetensors(&s, None, None, &BTreeMap::new()).unwrap();
    bytes[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(msg(from_safetensors(&bytes, &mut s2, None, None).unwrap_err()).contains("corrupt"));
}

/// A file of another model (other tensor names) is foreign: the error names the unknown
/// tensors; a file missing tensors names the missing ones; a file without optimiser state
/// cannot restore an optimiser.
#[test]
fn foreign_or_incomplete_file_is_rejected() {
    let mut other = ParamStore::<f32>::new();
    UNet::new(
        &mut other,
        UNetConfig {
            base_channels: 8,
            channel_mult: vec![1],
            num_res_blocks: 1,
            groups: 4,
            resolution: 4,
            attn_resolutions: vec![],
            ..UNetConfig::default()
        },
        0,
    )
    .unwrap();
    let bytes = to_safetensors(&other, None, None, &BTreeMap::new()).unwrap();
    let (_, mut s, mut opt, _) = trained(1);
    let e = msg(from_safetensors(&bytes, &mut s, None, None).unwrap_err());
    assert!(e.contains("foreign") && e.contains("conv_in"), "{e}");

    let mut part = ParamStore::<f32>::new();
    MlpScoreNet::new(
        &mut part,
        MlpConfig {
            width: 8,
            hidden: 1,
            ..MlpConfig::default()
        },
        0,
    )
    .unwrap();
    let bytes = to_safetensors(&part, None, None, &BTreeMap::new()).unwrap();
    // l1, l2 exist in both (l2 with another shape); l3 is missing or mismatched first.
    let e = msg(from_safetensors(&bytes, &mut s, None, None).unwrap_err());
    assert!(e.contains("l2.weight") || e.contains("l3"), "{e}");

    let (_, s1, _, _) = trained(1);
    let bytes = to_safetensors(&s1, None, None, &BTreeMap::new()).unwrap();
    let e = msg(from_safetensors(&bytes, &mut s, Some(&mut opt), None).unwrap_err());
    assert!(e.contains("optimiser"), "{e}");
    // The same tensors re-serialised under another format tag.
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut meta = std::collections::HashMap::new();
    meta.insert("format".to_string(), "something.else".to_string());
    let b2 = safetensors::serialize(st.tensors(), Some(meta)).unwrap();
    let e = msg(from_safetensors(&b2, &mut s, None, None).unwrap_err());
    assert!(e.contains("foreign") && e.contains("something.else"), "{e}");
}

/// Same names, different width: the error names the tensor and both shapes.
#[test]
fn mismatched_shape_is_rejected() {
    let mut a = ParamStore::<f32>::new();
    MlpScoreNet::new(
        &mut a,
        MlpConfig {
            width: 16,
            hidden: 2,
            ..MlpConfig::default()
        },
        0,
    )
    .unwrap();
    let bytes = to_safetensors(&a, None, None, &BTreeMap::new()).unwrap();
    let (_, mut s, _, _) = trained(1);
    let e = msg(from_safetensors(&bytes, &mut s, None, None).unwrap_err());
    assert!(
        e.contains("l1.weight") && e.contains("[16, 18]") && e.contains("[8, 18]"),
        "{e}"
    );
}

/// An f32 checkpoint loads into an f64 store exactly (f32 -> f64 is exact).
#[test]
fn f32_checkpoint_loads_into_f64_store_exactly() {
    let (_, s, _, _) = trained(1);
    let bytes = to_safetensors(&s, None, None, &BTreeMap::new()).unwrap();
    let mut d = ParamStore::<f64>::new();
    MlpScoreNet::new(
        &mut d,
        MlpConfig {
            width: 8,
            hidden: 2,
            ..MlpConfig::default()
        },
        9,
    )
    .unwrap();
    from_safetensors(&bytes, &mut d, None, None).unwrap();
    for id in s.ids() {
        assert!(s
            .get(id)
            .iter()
            .zip(d.get(id))
            .all(|(a, b)| *a as f64 == *b));
    }
}
