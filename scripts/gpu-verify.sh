#!/usr/bin/env bash
# GPU verification in one go (../shared/GPU.md): build the native core with CUDA for the card,
# run the native tests (CUDA kernels against the CPU backend), compute-sanitizer memcheck (and
# racecheck on the shared-memory kernels), the native benchmark and, side by side in the same run,
# the PyTorch peers; a Node smoke test when a node binary is available. Needs only CMake, nvcc,
# python3 (+ torch for the peers). Everything goes to one folder:
#   scripts/gpu-verify.sh [out-dir]      (default: $OUT if set, else bench/results/gpu-<date>)
# Time budget: about 8 minutes on an H100/H200 with 16 cores (the PyTorch compile runs are the
# slowest part; CALMOE_VERIFY_QUICK=1 skips torch.compile).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-bench/results/gpu-$(date -u +%Y%m%d-%H%M)}}"
mkdir -p "$out"
log() { printf '== %s\n' "$*" | tee -a "$out/summary.txt"; }
arch="${CALMOE_CUDA_ARCHS:-90}"
jobs="$(nproc 2>/dev/null || echo 8)"
status=0

log "machine: $(hostname) $(date -u)"
{ nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv 2>&1; nvcc --version 2>&1 | tail -2; cmake --version | head -1; } | tee "$out/machine.txt"

log "configure + build (CUDA arch $arch)"
if ! { cmake -S . -B build-gpu -DCALMOE_BUILD_TESTS=ON -DCALMOE_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$arch" -DCMAKE_BUILD_TYPE=Release \
       && cmake --build build-gpu -j "$jobs"; } > "$out/build.txt" 2>&1; then
  log "BUILD FAILED (see build.txt)"; tail -40 "$out/build.txt"; exit 1
fi

log "native tests"
ctest --test-dir build-gpu --output-on-failure --timeout 600 > "$out/ctest.txt" 2>&1 || status=1
grep -E "tests passed|Failed|SKIPPED|\*\*\*" "$out/ctest.txt" | tee -a "$out/summary.txt"

if command -v compute-sanitizer > /dev/null; then
  for t in cuda_parity_test temperature_cuda_test audit_cuda_test drift_cuda_test; do
    [ -x "build-gpu/$t" ] || continue
    log "compute-sanitizer memcheck $t"
    compute-sanitizer --tool memcheck --error-exitcode 9 "build-gpu/$t" > "$out/memcheck-$t.txt" 2>&1 || { status=1; log "memcheck $t: errors"; }
    tail -2 "$out/memcheck-$t.txt" | tee -a "$out/summary.txt"
  done
  for t in cuda_parity_test drift_cuda_test; do  # kernels with shared-memory histograms / reductions
    [ -x "build-gpu/$t" ] || continue
    log "compute-sanitizer racecheck $t"
    compute-sanitizer --tool racecheck --error-exitcode 9 "build-gpu/$t" > "$out/racecheck-$t.txt" 2>&1 || { status=1; log "racecheck $t: errors"; }
    tail -2 "$out/racecheck-$t.txt" | tee -a "$out/summary.txt"
  done
  # the MoE engine and its GEMM (native/cuda/moe_engine.cu, gemm.cu, moe_rows.cu): the sanitizers
  # on a subset of their tests (T_FILTER: cases whose name contains it; the full tests ran above).
  # Not yet timed on a GPU: expect a few minutes; drop lines from the list when time is short.
  while read -r tool t filter; do
    [ -x "build-gpu/$t" ] || continue
    log "compute-sanitizer $tool $t ($filter)"
    T_FILTER="$filter" compute-sanitizer --tool "$tool" --error-exitcode 9 "build-gpu/$t" > "$out/$tool-$t-$filter.txt" 2>&1 || { status=1; log "$tool $t $filter: errors"; }
    tail -2 "$out/$tool-$t-$filter.txt" | tee -a "$out/summary.txt"
  done <<'LIST'
memcheck moe_cuda_test every_mode
memcheck moe_cuda_test predict
memcheck gemm_cuda_test grouped
initcheck moe_cuda_test every_mode
racecheck gemm_cuda_test grouped
racecheck moe_cuda_test dispatch
LIST
else
  log "compute-sanitizer not found: skipped"
fi

log "native benchmark (W3 on the GPU and CPU, GEMM on the CPU)"
build-gpu/calmoe_bench w3 --device all > "$out/bench-native.jsonl" 2> "$out/bench-native.err" || status=1
cat "$out/bench-native.err" | tee -a "$out/summary.txt"

log "native benchmark: MoE training steps on the GPU (W1, W1L in TF32, the default; W1L also in BF16 and exact FP32)"
{ build-gpu/calmoe_bench w1 --device cuda && build-gpu/calmoe_bench w1l --device cuda \
  && build-gpu/calmoe_bench w1l --device cuda --cuda-gemm bf16 --modes top2 \
  && build-gpu/calmoe_bench w1l --device cuda --cuda-gemm fp32 --modes top2; } >> "$out/bench-native.jsonl" 2> "$out/bench-moe.err" || status=1
cat "$out/bench-moe.err" | tee -a "$out/summary.txt"

if python3 -c "import torch" > /dev/null 2>&1; then
  log "PyTorch peers (W1, W1L, W2, W3 on the GPU)"
  extra=""
  [ "${CALMOE_VERIFY_QUICK:-0}" = 1 ] && extra="--no-compile"
  timeout 420 python3 scripts/gpu/torch_moe.py $extra > "$out/bench-pytorch.jsonl" 2> "$out/bench-pytorch.err" || log "pytorch peers: exit $?"
  # like with like for calmoe's TF32 default: PyTorch with TF32 matmuls allowed (eager)
  timeout 180 python3 scripts/gpu/torch_moe.py w1l --tf32 --no-compile >> "$out/bench-pytorch.jsonl" 2>> "$out/bench-pytorch.err" || log "pytorch tf32 peers: exit $?"
  tail -5 "$out/bench-pytorch.err" | tee -a "$out/summary.txt"
else
  log "python3 has no torch: PyTorch peers skipped"
fi

# Node: on the PATH, or carried as .tools/node.xz (GPU.md: the machine may have none); the addon
# must be built with CUDA elsewhere and carried (build/Release/calmoe.node, dist/): see
# scripts/gpu/prepare-carry.sh
node_bin="$(command -v node || true)"
if [ -z "$node_bin" ] && [ -f .tools/node.xz ]; then
  xz -dc .tools/node.xz > /tmp/calmoe-node && chmod +x /tmp/calmoe-node && node_bin=/tmp/calmoe-node
fi
if [ -n "$node_bin" ] && [ -f dist/index.js ] && [ -f build/Release/calmoe.node ]; then
  log "Node smoke test ($("$node_bin" --version))"
  CALMOE_ADDON_PATH= "$node_bin" scripts/gpu/node-smoke.mjs > "$out/node-smoke.txt" 2>&1 || { status=1; log "node smoke failed"; }
  tail -4 "$out/node-smoke.txt" | tee -a "$out/summary.txt"
else
  log "no node binary, dist/ or built addon: Node smoke test skipped"
fi

log "done (status $status); logs in $out"
exit $status
