#!/usr/bin/env bash
# The tabular benchmark (every unique NAS-Bench-201 cell on MNIST-1D) and the
# search-quality report on it, on a GPU machine. Installs nothing; expects jax (with
# CUDA), flax, optax and the mnist1d package, and the repository as the working
# directory. Results: $OUT/nb201_mnist1d_gpu.json and
# $OUT/quality_nb201_mnist1d_gpu.{json,md,png}.
# The table is resumable: if the time limit stops it, run the script again.
# On a CPU the table takes hours at this budget, so without a GPU the script stops.
# Extra arguments are passed on to benchmarks.tabulate.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-benchmarks/results}"
PYTHON="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

backend="$("$PYTHON" -c 'import jax; print(jax.default_backend())' 2>/dev/null || echo none)"
if [ "$backend" != "gpu" ] && [ "$backend" != "cuda" ]; then
  echo "no GPU backend (jax: $backend): run python -m benchmarks.tabulate on the CPU" \
       "yourself (resumable, hours at this budget)" >&2
  exit 2
fi
timeout 480 "$PYTHON" -m benchmarks.tabulate --steps 600 --batch-size 128 --width 32 \
  --chunk 2048 --out "$OUT/nb201_mnist1d_gpu.json" "$@"
exec "$PYTHON" -m benchmarks.quality --table "$OUT/nb201_mnist1d_gpu.json" \
  --out "$OUT/quality_nb201_mnist1d_gpu"
