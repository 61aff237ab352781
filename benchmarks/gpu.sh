#!/usr/bin/env bash
# jaxnas against PyTorch on one GPU, in at most 8 minutes, installing nothing: jax (with
# CUDA), flax, optax and torch must be there, and the repository is the working directory.
#
# In order of priority, each run bounded by what is left of the budget (GPU_BUDGET_S,
# default 470 s):
#   1. nasbench201 cells on digits, width 16, P=1024: jaxnas's accelerator program, the
#      padded select program on the same chunks, the seed-style PyTorch loop on the GPU,
#      and the same loop in 4 processes sharing the GPU (the strongest plain-PyTorch way
#      to fill a GPU with different small models);
#   2. the dense cell (dag, width 64) at P=256, 1024 and 4096 against the loop and
#      torch.func.vmap (PyTorch's own batching of many models);
#   3. jaxnas alone on nasbench201 and conv cells, digits and MNIST-1D shapes, widths 16
#      and 32, P=256, 1024 and 4096.
# Each run writes $OUT/gpu_*.{json,md,png}: candidates/s, the ratios, useful TFLOP/s
# against the device's float32 matmul peak measured in the same run, and the device's name.
# Without a GPU it runs a small CPU fallback (--quick) so the script can be checked anywhere.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-benchmarks/results}"
PYTHON="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
# Without preallocation the device peaks the harness reads are real.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
deadline=$((SECONDS + ${GPU_BUDGET_S:-470}))

run() {
  local left=$((deadline - SECONDS))
  if [ "$left" -lt 40 ]; then echo "skipped, no time left: $*" >&2; return; fi
  timeout "$left" "$PYTHON" -m benchmarks.throughput --out "$OUT" "$@" \
    || echo "failed or out of time ($left s): $*" >&2
}

backend="$("$PYTHON" -c 'import jax; print(jax.default_backend())' 2>/dev/null || echo none)"
cuda="$("$PYTHON" -c 'import torch; print(int(torch.cuda.is_available()))' 2>/dev/null || echo 0)"
echo "jax backend: $backend, torch cuda: $cuda, OUT=$OUT" >&2

if [ "$backend" = "gpu" ] || [ "$backend" = "cuda" ]; then
  torch_device=cpu
  [ "$cuda" = "1" ] && torch_device=cuda
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu_device.csv" \
    2>/dev/null || true
  common=(--host-devices 0 --torch-device "$torch_device" --seed-max 16)
  run --space nasbench201 --dataset digits --width 16 --steps 50 --batch-size 64 \
    --population 1024 --program accelerator --contenders jaxnas,select,seed,multiproc \
    --procs 4 "${common[@]}" --name gpu_nasbench201_digits_w16
  run --space dag --width 64 --steps 100 --batch-size 128 --population 256 1024 4096 \
    --program accelerator --contenders jaxnas,seed,vmap --vmap-max 1024 "${common[@]}" \
    --name gpu_dag
  for space in nasbench201 conv; do
    for dataset in digits mnist1d; do
      for width in 16 32; do
        run --space "$space" --dataset "$dataset" --width "$width" --steps 50 \
          --batch-size 64 --population 256 1024 4096 --program accelerator \
          --contenders jaxnas "${common[@]}" --name "gpu_${space}_${dataset}_w${width}"
      done
    done
  done
  exit 0
fi

echo "no GPU backend: running the CPU fallback (--quick) into $OUT/gpu_fallback.*" >&2
exec timeout 470 "$PYTHON" -m benchmarks.throughput --quick --out "$OUT" \
  --name gpu_fallback "$@"
