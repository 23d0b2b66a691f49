#!/usr/bin/env bash
# Runs our bench (examples/bench.rs) and the PyTorch reference scripts (shared/bench/) back to
# back on the same machine, configuration by configuration, and prints each median with the
# ratio PyTorch / ours (>= 1 means we are at least as fast; the issue-3 targets are ratios).
#
# Usage: benches/compare_pytorch.sh [quick]
#   PYTHON      python with torch installed (default /tmp/torchvenv/bin/python)
#   BENCH_DIR   the PyTorch scripts (default ../shared/bench relative to the repository)
#   STEPS       timed W1 repetitions (default 5; "quick": 3)
#   MAX_RETRY   seconds a disturbed repetition is redone, both sides (protocol: 120)
# Both sides use the same protocol: untimed warm-up, individually timed repetitions, a
# repetition during which other processes used more than 0.1 core redone for at most
# MAX_RETRY seconds, median / min / max, peak RSS (VmHWM / ru_maxrss).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-/tmp/torchvenv/bin/python}"
BENCH_DIR="${BENCH_DIR:-$here/../shared/bench}"
[ -d "$BENCH_DIR" ] || BENCH_DIR=/work/shared/bench
STEPS="${STEPS:-5}"
[ "${1:-}" = quick ] && STEPS=3
MAX_RETRY="${MAX_RETRY:-120}"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

cargo build --release --example bench --manifest-path "$here/Cargo.toml" >&2
ours="$here/target/release/examples/bench"

# Runs a PyTorch script with the retry limit of bench_util.timed_reps set to MAX_RETRY.
torch_run() {
    local script="$1"
    shift
    "$PYTHON" - "$BENCH_DIR/$script" "$MAX_RETRY" "$@" <<'PY'
import runpy, sys
path, retry = sys.argv[1], float(sys.argv[2])
sys.argv = [path] + sys.argv[3:]
sys.path.insert(0, __import__("os").path.dirname(path))
import bench_util
bench_util.timed_reps.__defaults__ = (1, bench_util.MAX_FOREIGN, retry)
runpy.run_path(path, run_name="__main__")
PY
}

printf '%-22s %12s %12s %8s %10s %10s  %s\n' config "ours s" "torch s" "ratio" "ours MB" "torch MB" "load"
row() { # name ours.json torch-median torch-rss
    "$PYTHON" - "$@" <<'PY'
import json, sys
name, ours, tmed, trss = sys.argv[1], json.load(open(sys.argv[2])), float(sys.argv[3]), sys.argv[4]
print(f"{name:<22} {ours['median_s']:12.5f} {tmed:12.5f} {tmed / ours['median_s']:8.2f} "
      f"{ours['peak_rss_mb']:10.0f} {trss:>10}  {ours['load1']}")
PY
}

for threads in 2 1; do
    for mode in train infer; do
        flag=""
        [ "$mode" = infer ] && flag="--forward-only"
        "$ours" w1 --batch 64 --threads "$threads" --steps "$STEPS" --max-retry "$MAX_RETRY" \
            $flag --json > "$out/ours.json"
        torch_run ref_unet.py --mode "$mode" --batch 64 --threads "$threads" --steps "$STEPS" \
            --json - | tail -1 > "$out/torch.json"
        read -r tmed trss < <("$PYTHON" -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["median_s"], round(r.get("peak_rss_mb", float("nan"))))' "$out/torch.json")
        row "W1 $mode b64 T$threads" "$out/ours.json" "$tmed" "$trss"
    done
    "$ours" w2 --batch 1024 --threads "$threads" --steps 15 --max-retry "$MAX_RETRY" \
        --json > "$out/ours.json"
    torch_run ref_mlp.py --threads "$threads" --reps 15 --json - | tail -1 > "$out/torch.json"
    read -r tmed < <("$PYTHON" -c 'import json,sys
runs=json.load(open(sys.argv[1]))
print(next(r["median_s"] for r in runs if r["mode"]=="train" and r["batch"]==1024))' "$out/torch.json")
    row "W2 train b1024 T$threads" "$out/ours.json" "$tmed" "-"
done
