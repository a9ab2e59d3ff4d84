#!/usr/bin/env bash
# The MPI part of the tests (scripts/test.sh runs it): builds tailor with `--features mpi`, then
# under `mpirun -np 2` checks that two ranks match the gradient-accumulation fixture and
# `--accumulate 2` on one device bit for bit (examples/mpi_parity.rs), that a 2-rank
# `tailor train --distributed mpi` (each rank decoding its half of every batch) writes one run
# identical to `--devices X,X` in one process, and that the run resumes in a single process.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-mpi.sh

# OpenMPI refuses root unless told, and wants as many cores as ranks unless told.
MPIRUN=(mpirun -np 2 --oversubscribe)
if [ "$(id -u)" -eq 0 ]; then MPIRUN+=(--allow-run-as-root); fi

cargo clippy --all-targets --locked --features mpi -- -D warnings
cargo build --locked --features mpi --bin tailor --example mpi_parity
"${MPIRUN[@]}" target/debug/examples/mpi_parity

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
adapter="$(target/debug/tailor devices --json | python3 -c 'import json,sys; print(next(d["name"] for d in json.load(sys.stdin) if d["usable"]).split()[0].rstrip(","))')"
small=(--data assets/fashion-mnist-lt/labels.csv --growth-rate 4 --blocks 1,1 --batch-size 32)
# Augmented, so that the ranks' shards of each batch (each rank decodes only its rows) must draw
# the crops and flips the whole batch draws in one process.
common=("${small[@]}" --epochs 1 --augment)
"${MPIRUN[@]}" target/debug/tailor train "${common[@]}" --out "$out/ranks" --distributed mpi
target/debug/tailor train "${common[@]}" --out "$out/devices" --devices "$adapter,$adapter"
cmp "$out/ranks/model.safetensors" "$out/devices/model.safetensors"
target/debug/tailor train --resume "$out/ranks" --epochs 2

# A rank that dies ends the job (mpirun fails), and the last checkpoint resumes.
"${MPIRUN[@]}" target/debug/tailor train "${small[@]}" --epochs 200 --out "$out/killed" --distributed mpi \
  >"$out/killed.log" 2>&1 &
job=$!
for _ in $(seq 1 300); do
  grep -q "epoch 2/200" "$out/killed.log" 2>/dev/null && break
  sleep 1
done
killed=""
for p in $(pgrep -f "tailor train.*$out/killed" || true); do
  if tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx 'OMPI_COMM_WORLD_RANK=1'; then
    kill -9 "$p" && killed="$p"
  fi
done
if [ -z "$killed" ]; then
  echo "mpi: found no rank 1 to kill" >&2
  cat "$out/killed.log" >&2
  exit 1
fi
if wait "$job"; then
  echo "mpi: the job went on after rank 1 died" >&2
  exit 1
fi
target/debug/tailor train --resume "$out/killed" --epochs 3
echo "mpi: 2 ranks match the fixture and one process with two devices; the run resumes in one process; a dead rank ends the job and its checkpoint resumes"
