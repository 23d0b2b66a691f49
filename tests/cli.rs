//! The built binary: every subcommand's `--help`, and bad arguments, missing, corrupt and
//! foreign files, each answered by a non-zero exit code and one clear `error:` line, never a
//! panic. Also Ctrl-C during training: the state is saved and the process exits cleanly.

use std::path::PathBuf;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_scoresde");

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("run the binary")
}

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("scoresde-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Our own errors: exit code 1, exactly one line on stderr starting with `error:` and
/// containing `needle`, no panic text, nothing on stdout.
fn fails_clearly(args: &[&str], needle: &str) {
    let out = run(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{args:?}: not one line: {err}");
    assert!(lines[0].starts_with("error: "), "{args:?}: {err}");
    assert!(
        lines[0].contains(needle),
        "{args:?}: `{needle}` not in {err}"
    );
}

/// Argument-parser errors (unknown option or value): exit code 2, stderr starting with
/// `error:`, no panic.
fn rejected_by_parser(args: &[&str]) {
    let out = run(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert!(err.starts_with("error: "), "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{args:?}: {err}");
}

/// `scoresde --help` and each subcommand's `--help` succeed and describe their options.
#[test]
fn every_subcommand_has_help() {
    let top = run(&["--help"]);
    assert!(top.status.success());
    let text = String::from_utf8_lossy(&top.stdout).to_string();
    for sub in [
        "demo",
        "train",
        "sample",
        "likelihood",
        "inspect",
        "eval",
        "schedule",
    ] {
        assert!(text.contains(sub), "top-level help lacks {sub}");
        let out = run(&[sub, "--help"]);
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{sub} --help failed");
        assert!(help.contains("Usage:"), "{sub} --help: {help}");
    }
    let train = String::from_utf8_lossy(&run(&["train", "--help"]).stdout).to_string();
    for opt in [
        "--objective",
        "--prediction",
        "--t-sampling",
        "--weighting",
        "--resume",
    ] {
        assert!(train.contains(opt), "train --help lacks {opt}");
    }
    let sample = String::from_utf8_lossy(&run(&["sample", "--help"]).stdout).to_string();
    for opt in [
        "--sampler",
        "--snr",
        "--eta",
        "--spacing",
        "--rtol",
        "--raw-f32",
    ] {
        assert!(sample.contains(opt), "sample --help lacks {opt}");
    }
}

/// Bad arguments and missing files give one clear line.
#[test]
fn bad_arguments_and_missing_files_fail_clearly() {
    let dir = tempdir("bad");
    let out = dir.join("run");
    let out = out.to_str().unwrap();
    fails_clearly(&["train", "--data", "nosuch", "--out", out], "nosuch");
    fails_clearly(
        &["train", "--data", "ring8", "--steps", "0", "--out", out],
        "steps",
    );
    fails_clearly(
        &["train", "--data", "ring8", "--ema", "1.5", "--out", out],
        "ema",
    );
    fails_clearly(
        &[
            "train",
            "--data",
            "ring8",
            "--objective",
            "ddpm",
            "--sde",
            "ve",
            "--out",
            out,
        ],
        "ddpm",
    );
    fails_clearly(
        &["train", "--data", "mnist:/nonexistent/dir", "--out", out],
        "/nonexistent/dir",
    );
    fails_clearly(
        &["train", "--data", "ring8", "--resume", "--out", out],
        "checkpoint",
    );
    let missing = dir.join("missing.safetensors");
    let missing = missing.to_str().unwrap();
    fails_clearly(&["sample", "--checkpoint", missing], "missing.safetensors");
    fails_clearly(
        &["likelihood", "--checkpoint", missing],
        "missing.safetensors",
    );
    fails_clearly(&["inspect", missing], "missing.safetensors");
    fails_clearly(&["schedule", "--every", "0"], "every");
    rejected_by_parser(&["train", "--objective", "nosuch"]);
    rejected_by_parser(&["sample", "--checkpoint", missing, "--sampler", "nosuch"]);
    rejected_by_parser(&["train", "--steps", "ten"]);
    rejected_by_parser(&["nosuch"]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A corrupt file (random bytes, a truncated header) and a foreign safetensors file (valid,
/// but without this tool's model configuration) are refused with one clear line by
/// `sample`, `likelihood` and `inspect` (`inspect` lists a foreign file's tensors and says it
/// was not written by `train`).
#[test]
fn corrupt_and_foreign_checkpoints_fail_clearly() {
    let dir = tempdir("corrupt");
    let junk = dir.join("junk.safetensors");
    std::fs::write(&junk, b"this is not a checkpoint at all").unwrap();
    let trunc = dir.join("trunc.safetensors");
    std::fs::write(&trunc, 500u64.to_le_bytes()).unwrap();
    for f in [&junk, &trunc] {
        let p = f.to_str().unwrap();
        fails_clearly(
            &["sample", "--checkpoint", p],
            "not a safetensors checkpoint",
        );
        fails_clearly(
            &["likelihood", "--checkpoint", p],
            "not a safetensors checkpoint",
        );
        fails_clearly(&["inspect", p], "not a safetensors checkpoint");
    }
    // A well-formed safetensors file with one tensor and no metadata.
    let header = br#"{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    bytes.extend_from_slice(&1f32.to_le_bytes());
    let foreign = dir.join("foreign.safetensors");
    std::fs::write(&foreign, &bytes).unwrap();
    let p = foreign.to_str().unwrap();
    fails_clearly(&["sample", "--checkpoint", p], "no model_config");
    fails_clearly(&["likelihood", "--checkpoint", p], "no model_config");
    let out = run(&["inspect", p]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("x") && text.contains("F32") && text.contains("not written by"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Ctrl-C (SIGINT) during `train`: the process finishes its step, saves a checkpoint, says so
/// and exits with code 0; `inspect` shows the saved step, and `--resume` continues from it.
#[cfg(unix)]
#[test]
fn ctrl_c_saves_a_checkpoint_and_exits_cleanly() {
    let dir = tempdir("ctrlc");
    let out = dir.join("run");
    let child = Command::new(BIN)
        .args([
            "train", "--data", "ring8", "--width", "16", "--steps", "10000000", "--out",
        ])
        .arg(&out)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until training has started (the metrics file has a row), then interrupt.
    let metrics = out.join("metrics.csv");
    let t0 = std::time::Instant::now();
    while std::fs::read_to_string(&metrics).map_or(true, |s| s.lines().count() < 1)
        && t0.elapsed().as_secs() < 60
    {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let st = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let res = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&res.stdout);
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    assert!(text.contains("interrupted"), "{text}");
    let ck = out.join("checkpoint.safetensors");
    let info = run(&["inspect", ck.to_str().unwrap()]);
    let info = String::from_utf8_lossy(&info.stdout);
    let step: u64 = info
        .lines()
        .find_map(|l| l.trim().strip_prefix("adam.step = "))
        .and_then(|v| v.parse().ok())
        .expect("adam.step");
    assert!(step > 0 && step < 10_000_000, "saved step {step}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `train` with each objective runs end to end on a toy (a few steps) and writes the whole
/// run directory, including the loss plot when the loss is negative (SSM); `sample` then runs
/// a chain sampler and an ODE sampler on the checkpoint and writes raw `f32` of the right size.
#[test]
fn each_objective_trains_end_to_end_and_its_checkpoint_samples() {
    let dir = tempdir("objectives");
    for obj in ["dsm", "ssm", "ddpm"] {
        let out = dir.join(obj);
        let o = out.to_str().unwrap();
        let res = run(&[
            "train",
            "--data",
            "lopsided",
            "--objective",
            obj,
            "--steps",
            "30",
            "--width",
            "16",
            "--samples",
            "20",
            "--sample-steps",
            "50",
            "--out",
            o,
        ]);
        assert!(
            res.status.success(),
            "{obj}: {}",
            String::from_utf8_lossy(&res.stderr)
        );
        for f in [
            "config.json",
            "metrics.csv",
            "loss.png",
            "samples.png",
            "checkpoint.safetensors",
        ] {
            assert!(out.join(f).is_file(), "{obj}: no {f}");
        }
        let ck = out.join("checkpoint.safetensors");
        for sampler in ["ddim", "ode-rk45"] {
            let raw = out.join(format!("{sampler}.f32"));
            let res = run(&[
                "sample",
                "--checkpoint",
                ck.to_str().unwrap(),
                "--sampler",
                sampler,
                "--steps",
                "20",
                "--samples",
                "10",
                "--raw-f32",
                raw.to_str().unwrap(),
                "--rtol",
                "1e-3",
                "--atol",
                "1e-3",
            ]);
            assert!(
                res.status.success(),
                "{obj}/{sampler}: {}",
                String::from_utf8_lossy(&res.stderr)
            );
            assert_eq!(std::fs::metadata(&raw).unwrap().len(), 10 * 2 * 4);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A sampling step count the SDE cannot discretise (VP needs `beta_max / n < 1`, so 5 levels
/// fail) is rejected before training starts: one clear line, and no checkpoint is written.
#[test]
fn bad_sample_steps_are_rejected_before_training() {
    let dir = tempdir("samplesteps");
    let out = dir.join("run");
    fails_clearly(
        &[
            "train",
            "--data",
            "ring8",
            "--steps",
            "50",
            "--sample-steps",
            "5",
            "--out",
            out.to_str().unwrap(),
        ],
        "beta_max / n",
    );
    assert!(!out.join("checkpoint.safetensors").exists());
}
