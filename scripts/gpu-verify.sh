#!/usr/bin/env bash
# GPU verification in one go (../shared/GPU.md): build the native core with CUDA for the card,
# locate cuBLASLt (the TF32/BF16 GEMMs run on it) and print its version, run the native tests (CUDA kernels against the CPU backend), the native benchmark, a Node smoke
# test when node, dist/ and a CUDA addon are present (scripts/gpu/prepare-carry.sh), the PyTorch
# peers side by side in the same run, compute-sanitizer (memcheck, initcheck, racecheck), then ncu
# profiles of the GEMM and calibration kernels.
# Needs only CMake, nvcc, python3 (+ torch for the peers). Everything goes to one folder:
#   scripts/gpu-verify.sh [out-dir]      (default: $OUT if set, else bench/results/gpu-<date>)
# Time: stages run in the order above within CALMOE_VERIFY_BUDGET seconds (default 470: the whole
# script within 8 minutes); each gets at most what is left, and a stage that cannot start is logged as
# skipped, so a second call with CALMOE_VERIFY_STAGES (e.g. "build,sanitize") can finish the rest.
# Without the build stage, the executables carried in .tools/gpu-bin.tar.xz run (prepare-carry.sh
# builds them here for the card's arch: no device minutes spent compiling).
# CALMOE_VERIFY_QUICK=1 skips torch.compile. At the end every log is packed into logs.tar.gz (the
# device tool returns at most 8 files), summary.txt and the bench-*.jsonl files beside it
# (CALMOE_VERIFY_PACK=0 keeps the loose files).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-bench/results/gpu-$(date -u +%Y%m%d-%H%M)}}"
mkdir -p "$out"
log() { printf '== %s\n' "$*" | tee -a "$out/summary.txt"; }
arch="${CALMOE_CUDA_ARCHS:-90}"
jobs="$(nproc 2>/dev/null || echo 8)"
stages=",${CALMOE_VERIFY_STAGES:-build,test,bench,node,torch,sanitize,profile},"
budget="${CALMOE_VERIFY_BUDGET:-470}"
t0=$(date +%s)
status=0
want() { [[ "$stages" == *",$1,"* ]]; }
# cap N: seconds a step may take (N or what is left of the budget minus a margin); fails when
# fewer than 15 s are left
cap() {
  local left=$((budget - ($(date +%s) - t0) - 10))
  [ "$left" -ge 15 ] || return 1
  echo $(($1 < left ? $1 : left))
}
# run_for N LOG CMD...: CMD under `timeout`, output to LOG; logs a skip or a time-out
run_for() {
  local n="$1" logf="$2" s
  shift 2
  if ! s=$(cap "$n"); then log "skipped (budget spent): $*"; return 2; fi
  timeout "$s" "$@" > "$logf" 2>&1
  local rc=$?
  [ $rc -eq 124 ] && log "timed out after ${s}s: $*"
  return $rc
}

log "machine: $(hostname) $(date -u); stages ${stages//,/ }; budget ${budget}s"
{ nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv 2>&1; nvcc --version 2>&1 | tail -2; cmake --version | head -1; } | tee "$out/machine.txt"

bin=build-gpu
prebuilt=0
if want build; then
  log "configure + build (CUDA arch $arch)"
  if ! { cmake -S . -B build-gpu -DCALMOE_BUILD_TESTS=ON -DCALMOE_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$arch" -DCMAKE_BUILD_TYPE=Release \
         && cmake --build build-gpu -j "$jobs"; } > "$out/build.txt" 2>&1; then
    log "BUILD FAILED (see build.txt)"; tail -40 "$out/build.txt"
    # fallback so that one GPU call is not lost to a toolchain difference: executables built for
    # this arch on a build machine (scripts/gpu/prepare-carry.sh), run without ctest
    [ -f .tools/gpu-bin.tar.xz ] || exit 1
    mkdir -p .tools/gpu-bin && tar -xJf .tools/gpu-bin.tar.xz -C .tools/gpu-bin || exit 1
    bin=.tools/gpu-bin prebuilt=1 status=1
    log "running the prebuilt executables in $bin"
  fi
elif [ ! -x build-gpu/calmoe_bench ] && [ -f .tools/gpu-bin.tar.xz ]; then
  # no build stage asked for (device minutes are scarce): the executables carried from a build
  # machine (scripts/gpu/prepare-carry.sh, from this same checkout)
  mkdir -p .tools/gpu-bin && tar -xJf .tools/gpu-bin.tar.xz -C .tools/gpu-bin || exit 1
  bin=.tools/gpu-bin prebuilt=1
  log "no build stage: running the prebuilt executables in $bin"
fi

# cuBLASLt: where calmoe's loader finds it (cuda/cublaslt_loader.h); when it does not, the copy
# PyTorch uses (its environment's nvidia/cu13/lib or nvidia/cublas/lib), passed by CALMOE_CUBLASLT
if [ -z "${CALMOE_CUBLASLT:-}" ] && python3 -c "import torch" > /dev/null 2>&1; then
  tdir="$(python3 -c 'import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))' 2>/dev/null)"
  for so in "$tdir"/nvidia/cu13/lib/libcublasLt.so.13 "$tdir"/nvidia/cublas/lib/libcublasLt.so.12 "$tdir"/nvidia/cublas/lib/libcublasLt.so.13; do
    [ -f "$so" ] && { export CALMOE_CUBLASLT_TORCH="$so"; break; }
  done
fi
if [ -x "$bin/calmoe_bench" ]; then
  lt="$("$bin/calmoe_bench" gemm-library 2>&1 | tail -1)"
  if [[ "$lt" != cublaslt* ]] && [ -n "${CALMOE_CUBLASLT_TORCH:-}" ]; then
    export CALMOE_CUBLASLT="$CALMOE_CUBLASLT_TORCH"
    lt="$("$bin/calmoe_bench" gemm-library 2>&1 | tail -1)"
  fi
  log "GEMM library: $lt"
fi

if want test; then
  log "native tests"
  if [ $prebuilt = 0 ]; then
    run_for 240 "$out/ctest.txt" ctest --test-dir build-gpu --output-on-failure || status=1
  else
    for t in "$bin"/*_test; do
      echo "== $t" >> "$out/ctest.txt"
      run_for 120 "$out/ctest-one.txt" "$t"; rc=$?
      cat "$out/ctest-one.txt" >> "$out/ctest.txt"
      [ $rc -eq 0 ] && echo "*** $t passed" >> "$out/ctest.txt" || { status=1; echo "*** $t Failed (exit $rc)" >> "$out/ctest.txt"; }
    done
  fi
  grep -E "tests passed|Failed|SKIPPED|\*\*\*" "$out/ctest.txt" | tee -a "$out/summary.txt"
fi

if want bench; then
  log "native benchmark: W3 (GPU and CPU); the GEMMs alone; W1, W1L train steps on the GPU (TF32, the default; W1L also BF16, FP32)"
  run_for 60 "$out/bench-w3.err" sh -c "$bin/calmoe_bench w3 --device all >> '$out/bench-native.jsonl'" || status=1
  # the GEMMs of a W1L step on cuBLASLt and on calmoe's kernel, and torch.matmul on the same shapes
  run_for 60 "$out/bench-gemm.err" sh -c "$bin/calmoe_bench cuda-gemm >> '$out/bench-native.jsonl'" || status=1
  if python3 -c "import torch" > /dev/null 2>&1; then
    run_for 60 "$out/bench-torch-gemm.err" sh -c "python3 scripts/gpu/torch_gemm.py >> '$out/bench-pytorch.jsonl'" || log "torch_gemm: exit $?"
    tail -12 "$out/bench-torch-gemm.err" 2> /dev/null | tee -a "$out/summary.txt"
  fi
  # each run on its own (a failure does not stop the others)
  run_for 240 "$out/bench-moe.err" sh -c "rc=0; for args in \
      'w1' 'w1l' 'w1l --cuda-gemm bf16 --modes top2' 'w1l --cuda-gemm fp32 --modes top2'; do \
      $bin/calmoe_bench \$args --device cuda >> '$out/bench-native.jsonl' || { echo \"calmoe_bench \$args: exit \$?\"; rc=1; }; done; exit \$rc" || status=1
  cat "$out/bench-w3.err" "$out/bench-gemm.err" "$out/bench-moe.err" 2> /dev/null | tee -a "$out/summary.txt"
  # where a W1L step's time goes (CALMOE_CUDA_PHASES: one JSON line of per-phase ms per step)
  run_for 90 "$out/phases-w1l.txt" sh -c "for m in soft top2 top1; do echo \"== \$m\"; CALMOE_CUDA_PHASES=1 $bin/calmoe_bench w1l --device cuda --modes \$m --repeat 2 2>&1 > /dev/null | grep -E 'calmoe_cuda_phases' | tail -1; done" || status=1
  tee -a "$out/summary.txt" < "$out/phases-w1l.txt"
fi

if want node; then
  # Node: on the PATH, or carried as .tools/node.xz (the machine may have none); the addon is
  # built with CUDA elsewhere and carried with dist/: see scripts/gpu/prepare-carry.sh
  node_bin="$(command -v node || true)"
  if [ -z "$node_bin" ] && [ -f .tools/node.xz ]; then
    xz -dc .tools/node.xz > /tmp/calmoe-node && chmod +x /tmp/calmoe-node && node_bin=/tmp/calmoe-node
  fi
  if [ -n "$node_bin" ] && [ -f dist/index.js ] && [ -f build/Release/calmoe.node ]; then
    log "Node smoke test ($("$node_bin" --version))"
    CALMOE_ADDON_PATH= run_for 90 "$out/node-smoke.txt" "$node_bin" scripts/gpu/node-smoke.mjs
    rc=$?
    [ $rc -eq 0 ] || [ $rc -eq 2 ] || { status=1; log "node smoke failed (exit $rc)"; }
    [ -f "$out/node-smoke.txt" ] && tail -4 "$out/node-smoke.txt" | tee -a "$out/summary.txt"
  else
    log "no node binary, dist/ or built addon: Node smoke test skipped"
  fi
fi

if want torch; then
  if python3 -c "import torch" > /dev/null 2>&1; then
    log "PyTorch peers (W1L and W3 first, then W1, W2; eager and compile)"
    extra=""
    [ "${CALMOE_VERIFY_QUICK:-0}" = 1 ] && extra="--no-compile"
    # like with like for calmoe's TF32 default: PyTorch with TF32 matmuls allowed (eager), then its default FP32
    run_for 120 "$out/bench-pytorch-tf32.err" sh -c "python3 scripts/gpu/torch_moe.py w1l --tf32 --no-compile >> '$out/bench-pytorch.jsonl'" || log "pytorch tf32 peers: exit $?"
    run_for 180 "$out/bench-pytorch.err" sh -c "python3 scripts/gpu/torch_moe.py w1l w3 w1 w2 $extra >> '$out/bench-pytorch.jsonl'" || log "pytorch peers: exit $?"
    tail -5 "$out/bench-pytorch-tf32.err" "$out/bench-pytorch.err" 2> /dev/null | tee -a "$out/summary.txt"
  else
    log "python3 has no torch: PyTorch peers skipped"
  fi
fi

if want sanitize; then
  if command -v compute-sanitizer > /dev/null; then
    # tool, test, T_FILTER (cases whose name contains it; "-" = all), most important first
    while read -r tool t filter; do
      [ -x "$bin/$t" ] || continue
      f="$filter"; [ "$f" = "-" ] && f=""
      log "compute-sanitizer $tool $t ${filter}"
      T_FILTER="$f" run_for 120 "$out/$tool-$t-$filter.txt" compute-sanitizer --tool "$tool" --error-exitcode 9 "$bin/$t"
      rc=$?
      [ $rc -eq 0 ] || [ $rc -eq 2 ] || { status=1; log "$tool $t $filter: exit $rc"; }
      [ -f "$out/$tool-$t-$filter.txt" ] && tail -2 "$out/$tool-$t-$filter.txt" | tee -a "$out/summary.txt"
    done <<'LIST'
memcheck moe_cuda_test tensor_core
memcheck moe_cuda_test cublaslt
memcheck moe_cuda_test every_mode
memcheck moe_cuda_test row_kernels
racecheck moe_cuda_test every_mode
memcheck gemm_cuda_test grouped
racecheck gemm_cuda_test grouped
memcheck cuda_parity_test -
racecheck cuda_parity_test -
memcheck moe_cuda_test predict
initcheck moe_cuda_test every_mode
racecheck moe_cuda_test dispatch
memcheck temperature_cuda_test -
memcheck audit_cuda_test -
memcheck drift_cuda_test -
racecheck drift_cuda_test first_nan
racecheck drift_cuda_test monitor
racecheck audit_cuda_test outputs
racecheck temperature_cuda_test matches
racecheck drift_cuda_test compare_identical
LIST
  else
    log "compute-sanitizer not found: skipped"
  fi
fi

if want profile; then
  if command -v ncu > /dev/null; then
    # where the time goes, for the next round of kernel work: the tensor-core GEMM kernel on W1L's
    # x.w1 (cuda-gemm --repeat 1 launches 2 per math mode: fp32, tf32, bf16; launch 3 is tf32's
    # timed one, 4 and 5 bf16's) and the W3 kernel
    log "ncu: tensor-core GEMM kernel, W3 kernel"
    run_for 90 "$out/ncu-gemm.txt" ncu --kernel-name regex:gemm_one_ --launch-skip 3 --launch-count 3 \
      --section SpeedOfLight --section Occupancy --section WarpStateStats --section LaunchStats "$bin/calmoe_bench" cuda-gemm --repeat 1
    run_for 60 "$out/ncu-calib.txt" ncu --kernel-name regex:calib_kernel --launch-skip 4 --launch-count 1 \
      --section SpeedOfLight --section Occupancy --section WarpStateStats --section MemoryWorkloadAnalysis "$bin/calmoe_bench" w3 --device cuda --repeat 1
    grep -hE "^  [a-z_]+.*\(|Duration|Compute \(SM\) Throughput|Memory Throughput  |Registers Per|Achieved Occupancy" "$out/ncu-gemm.txt" "$out/ncu-calib.txt" 2> /dev/null | head -60 | tee -a "$out/summary.txt"
  else
    log "ncu not found: profile skipped"
  fi
fi

log "done (status $status, $(($(date +%s) - t0)) s); logs in $out"
# the device tool returns at most 8 files: every log goes into one archive; the summary and the
# benchmark lines stay beside it
if [ "${CALMOE_VERIFY_PACK:-1}" = 1 ]; then
  pack="$(mktemp -u /tmp/calmoe-logs.XXXXXX).tar.gz"
  (cd "$out" && tar -czf "$pack" . && mv "$pack" logs.tar.gz \
    && find . -maxdepth 3 -type f ! -name logs.tar.gz ! -name summary.txt ! -name 'bench-*.jsonl' -delete \
    && find . -mindepth 1 -type d -empty -delete)
fi
exit $status
