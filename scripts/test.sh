#!/usr/bin/env bash
# The test command README.md gives and CI runs: installs lavapipe where no Vulkan driver is
# present, then checks formatting and lints and runs every test on the GPU wgpu finds; then the
# MPI tests (scripts/test-mpi.sh, which installs OpenMPI).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install Rust with rustup (https://rustup.rs), then run this again" >&2
  exit 1
fi
bash scripts/install-lavapipe.sh

# Mesa warns about XDG_RUNTIME_DIR on machines without a login session; give it one.
if [ -z "${XDG_RUNTIME_DIR:-}" ]; then
  export XDG_RUNTIME_DIR="${TMPDIR:-/tmp}/tailor-xdg-$(id -u)"
  mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
fi

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --all-targets --locked
# The library example that trains, resumes and evaluates a run folder without the CLI.
cargo run --locked --example train_run
# Training across processes over MPI (installs OpenMPI; builds with --features mpi).
bash scripts/test-mpi.sh
