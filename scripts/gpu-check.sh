#!/usr/bin/env bash
# One prepared check for a machine with a real GPU (Vulkan), meant to finish in under 8 minutes
# there: release build, kernel tests, PyTorch parity tests, the adapters, and `tailor bench` W1
# and W2 as JSON into the folder given as the argument (with the log of every step).
#
#   bash scripts/gpu-check.sh OUT_DIR
#
# TAILOR_ADAPTER picks the adapter (a part of its name, see `tailor devices`); GPU_CHECK_STEPS sets
# the timed bench steps (default 5; 1 for a quick try on lavapipe).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:?give the folder for the results: bash scripts/gpu-check.sh OUT_DIR}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
steps="${GPU_CHECK_STEPS:-5}"
if [ -z "${XDG_RUNTIME_DIR:-}" ]; then
  export XDG_RUNTIME_DIR="${TMPDIR:-/tmp}/tailor-xdg-$(id -u)"
  mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
fi

step() { # name, command...: runs it with its output in $out/NAME.log, timed
  local name="$1"; shift
  local t0=$SECONDS
  echo "== $name: $*"
  if "$@" >"$out/$name.log" 2>&1; then
    echo "   ok ($((SECONDS - t0)) s)"
  else
    echo "   FAILED ($((SECONDS - t0)) s), see $out/$name.log"; tail -20 "$out/$name.log"; return 1
  fi
}

step build cargo build --release --locked --bins --tests
bin=target/release/tailor
step devices "$bin" devices
# The kernel and parity tests on the GPU wgpu picks (TAILOR_ADAPTER is honoured by Gpu::new).
step kernels cargo test --release --locked --test kernels
step parity cargo test --release --locked --test parity --test embedding_parity
for w in w1 w2; do
  step "bench-$w" sh -c "'$bin' bench --workload $w --steps $steps --json > '$out/bench-$w.json'"
done
echo "results in $out: devices.log, kernels.log, parity.log, bench-w1.json, bench-w2.json"
