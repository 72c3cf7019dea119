#!/usr/bin/env bash
# GPU check of the fused token-statistics kernels, under 8 minutes on one H100/H200:
#   1. the kernel tests with the Pallas kernels compiled by Triton (no interpret mode), fp32
#      matmuls at "highest" precision so fp32 tolerances apply;
#   2. kernels/bench.py on the "gpu" grid (N = 1k, 8k, 32k; V = 32k, 152k; H = 1024; bf16):
#      reference, xla_chunked and pallas, forward and forward+backward, temp memory and time.
# Results go to $OUT (or kernels/results): gpu_device.txt, gpu_tests.xml, gpu_tests.log,
# bench_gpu.json.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-kernels/results}"
mkdir -p "$out"
export JAX_PLATFORMS=cuda XLA_PYTHON_CLIENT_MEM_FRACTION=0.9

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
  python3 -c "import jax; print(jax.__version__, jax.devices())"; } | tee "$out/gpu_device.txt"
if ! python3 -c "import jax, sys; sys.exit(jax.default_backend() != 'gpu')"; then
  echo "JAX has no GPU backend here (install jax[cuda12] or jax[cuda13]); stopping." >&2
  exit 2
fi

JAX_DEFAULT_MATMUL_PRECISION=highest timeout 240 python3 -m pytest tests/kernels -q \
  -p no:cacheprovider --junitxml="$out/gpu_tests.xml" 2>&1 | tee "$out/gpu_tests.log"
tests_rc=${PIPESTATUS[0]}

timeout 210 python3 -m rljax.kernels.bench --grid gpu --out "$out/bench_gpu.json" 2>&1 | tail -n 60
bench_rc=${PIPESTATUS[0]}

echo "tests rc=$tests_rc bench rc=$bench_rc"
exit $(( tests_rc != 0 || bench_rc != 0 ))
