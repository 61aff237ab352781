#!/usr/bin/env bash
# Throughput comparison on a GPU machine: jaxnas vs PyTorch (seed-style loop on the CPU
# cores, torch.func.vmap on the GPU), P up to 4096, in under 8 minutes.
# Installs nothing; expects jax (with CUDA), flax, optax and torch preinstalled and the
# repository as the working directory. Results: $OUT/throughput_gpu.{json,md,png}.
# Without a GPU it runs a small CPU fallback (same harness, --quick) so the script itself
# can be checked anywhere. Extra arguments are passed on to the harness.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-benchmarks/results}"
PYTHON="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
# Separate processes anyway; without preallocation the reported device peaks are real.
export XLA_PYTHON_CLIENT_PREALLOCATE=false

backend="$("$PYTHON" -c 'import jax; print(jax.default_backend())' 2>/dev/null || echo none)"
cuda="$("$PYTHON" -c 'import torch; print(int(torch.cuda.is_available()))' 2>/dev/null || echo 0)"
echo "jax backend: $backend, torch cuda: $cuda, OUT=$OUT" >&2

if [ "$backend" = "gpu" ] || [ "$backend" = "cuda" ]; then
  torch_device=cpu
  [ "$cuda" = "1" ] && torch_device=cuda
  # Budget: ~25 s of process start-up and compiles per contender and P; the seed-style
  # loop runs on the CPU cores (benchmarks.twin has no device option) on 16 candidates.
  exec timeout 470 "$PYTHON" -m benchmarks.throughput \
    --population 64 512 4096 --steps 200 --batch-size 128 --width 64 --space dag \
    --seed-max 16 --host-devices 0 --torch-device "$torch_device" \
    --out "$OUT" --name throughput_gpu "$@"
fi

echo "no GPU backend: running the CPU fallback (--quick) into $OUT/throughput_gpu.*" >&2
exec timeout 470 "$PYTHON" -m benchmarks.throughput --quick --out "$OUT" \
  --name throughput_gpu "$@"
