//! A per-op profiler for the engine, switched on by the environment variable
//! `SCORESDE_PROFILE=1` (read once). When it is off, the only cost is one relaxed atomic load
//! per recorded op.
//!
//! Forward time of an op is the wall time since the previous op was recorded on the same
//! [`crate::engine::Graph`] (so glue code between ops is charged to the next op); backward
//! time is the time spent in the op's backward rule plus the accumulation of its input
//! gradients. Ops are named after their backward rule's type (`Conv2dBack`, ...).
//! [`report`] prints a table sorted by total time; [`reset`] clears it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// 0: not read yet, 1: off, 2: on.
static STATE: AtomicU8 = AtomicU8::new(0);
static TABLE: Mutex<Option<HashMap<String, (f64, u64)>>> = Mutex::new(None);

/// `true` when `SCORESDE_PROFILE` is set to anything but `0` or the empty string.
pub fn enabled() -> bool {
    match STATE.load(Ordering::Relaxed) {
        1 => false,
        2 => true,
        _ => {
            let on = std::env::var("SCORESDE_PROFILE").is_ok_and(|v| !v.is_empty() && v != "0");
            STATE.store(if on { 2 } else { 1 }, Ordering::Relaxed);
            on
        }
    }
}

/// Forces the profiler on or off (overrides the environment).
pub fn set_enabled(on: bool) {
    STATE.store(if on { 2 } else { 1 }, Ordering::Relaxed);
}

/// Adds `secs` seconds (one call) to the entry `name`.
pub fn add(name: &str, secs: f64) {
    let mut t = TABLE.lock().unwrap_or_else(|e| e.into_inner());
    let e = t
        .get_or_insert_with(HashMap::new)
        .entry(name.to_string())
        .or_insert((0.0, 0));
    e.0 += secs;
    e.1 += 1;
}

/// Prefix of a detail entry: a part of an op's time (one kernel of a convolution, say),
/// listed in the table under its op but left out of the total, which it would count twice.
pub const DETAIL: &str = "  ";

/// Runs `f`, charging its wall time to `name` when profiling is on.
pub fn time<T>(name: &str, f: impl FnOnce() -> T) -> T {
    if !enabled() {
        return f();
    }
    let t0 = Instant::now();
    let out = f();
    add(name, t0.elapsed().as_secs_f64());
    out
}

/// The last path segment of a type name without generic arguments:
/// `scoresde::engine::ops::conv::Conv2dBack<f32>` becomes `Conv2dBack`.
pub(crate) fn short_name(full: &str) -> &str {
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base)
}

/// `(name, total seconds, calls)` sorted by decreasing total time.
pub fn entries() -> Vec<(String, f64, u64)> {
    let t = TABLE.lock().unwrap_or_else(|e| e.into_inner());
    let mut v: Vec<_> = t
        .iter()
        .flat_map(|m| m.iter())
        .map(|(k, (s, n))| (k.clone(), *s, *n))
        .collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1));
    v
}

/// A table of the profile: name, total seconds, share of the total, calls, ms per call.
pub fn report() -> String {
    let v = entries();
    let total: f64 = v
        .iter()
        .filter(|e| !e.0.starts_with(DETAIL))
        .map(|e| e.1)
        .sum();
    let mut s = format!(
        "{:<28} {:>9} {:>6} {:>7} {:>9}\n",
        "op", "total s", "%", "calls", "ms/call"
    );
    for (name, secs, n) in &v {
        s += &format!(
            "{:<28} {:>9.4} {:>6.1} {:>7} {:>9.3}\n",
            name,
            secs,
            100.0 * secs / total.max(1e-300),
            n,
            1e3 * secs / (*n).max(1) as f64
        );
    }
    s += &format!("{:<28} {:>9.4}\n", "total", total);
    s
}

/// Clears the table.
pub fn reset() {
    let mut t = TABLE.lock().unwrap_or_else(|e| e.into_inner());
    *t = None;
}
