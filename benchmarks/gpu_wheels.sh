#!/usr/bin/env bash
# Wheels for a GPU machine that cannot reach a package index, for benchmarks/gpu_throughput.py.
#
#   bash benchmarks/gpu_wheels.sh [PYTHON_VERSION]     # writes .whl/ (git-ignored); default 3.12
#
# Run it here, in the project's environment (its versions are the ones pinned). It fetches what the
# script imports beyond a CUDA PyTorch image (torch, lightning, numpy, scipy, scikit-learn, pandas,
# numba, h5py): anndata and pydantic with what they need, pynndescent. On the GPU machine, from the
# repository root with .whl/ copied there:
#
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
#   PYTHONPATH=/tmp/site timeout 540 python3 benchmarks/gpu_throughput.py --cells 100000 --genes 2000 \
#     --batch-sizes 512 2048 --workers 8
set -euo pipefail
cd "$(dirname "$0")/.."
python_version="${1:-3.12}"
packages=(anndata annotated-types array-api-compat donfig google-crc32c legacy-api-wrap natsort numcodecs
          pydantic pydantic_core pynndescent scverse-misc typing-inspection zarr)
pins=()
for package in "${packages[@]}"; do
  version=$(python -m pip show "$package" 2>/dev/null | awk '/^Version:/ {print $2}')
  if [ -z "$version" ]; then
    echo "$package is not installed here: install the project first (pip install -e .)" >&2
    exit 1
  fi
  pins+=("$package==$version")
done
python -m pip download --no-deps --only-binary=:all: --python-version "$python_version" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl "${pins[@]}"
du -sh .whl
