#!/usr/bin/env bash
# Installs what `--features mpi` builds and runs with: Debian's OpenMPI (library, headers,
# mpirun) and libclang (rsmpi generates its MPI bindings with bindgen). Does nothing when they
# are there already.
set -euo pipefail

if command -v mpirun >/dev/null 2>&1 && command -v mpicc >/dev/null 2>&1 &&
  compgen -G "/usr/lib/llvm-*/lib/libclang*.so*" >/dev/null; then
  echo "mpi: OpenMPI and libclang already installed"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "mpi: no apt-get here; install an MPI (OpenMPI or MPICH, with mpicc and mpirun) and libclang by hand" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q libopenmpi-dev openmpi-bin libclang-dev
