#!/usr/bin/env bash
# Throughput comparison on a GPU machine: jaxnas vs PyTorch (the seed-style loop and
# torch.func.vmap both on the GPU, as a PyTorch user would run them): dense cells at P up
# to 4096, then NAS-Bench-201 conv cells on MNIST-1D, in under 9 minutes.
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
  # contenders train 16 candidates one at a time on the GPU.
  timeout 300 "$PYTHON" -m benchmarks.throughput \
    --population 64 512 4096 --steps 200 --batch-size 128 --width 64 --space dag \
    --seed-max 16 --host-devices 0 --torch-device "$torch_device" \
    --out "$OUT" --name throughput_gpu "$@"
  exec timeout 230 "$PYTHON" -m benchmarks.throughput \
    --population 128 1024 --steps 100 --batch-size 64 --width 16 --space nasbench201 \
    --dataset mnist1d --contenders jaxnas,seed,multiproc --seed-max 16 --host-devices 0 \
    --torch-device "$torch_device" --out "$OUT" --name throughput_gpu_nasbench201 "$@"
fi

echo "no GPU backend: running the CPU fallback (--quick) into $OUT/throughput_gpu.*" >&2
exec timeout 470 "$PYTHON" -m benchmarks.throughput --quick --out "$OUT" \
  --name throughput_gpu "$@"
