#!/usr/bin/env bash
# The CUDA backend's native tests on the CPU emulator (tools/cuda-emu/README.md): the kernels of
# native/cuda/*.cu run on the CPU, so their logic (indexing, dispatch, GEMM semantics and bits,
# the MoE engine end to end) is checked on machines without a GPU. Not a substitute for a GPU
# run (scripts/gpu-verify.sh): no real concurrency, memory model or performance.
#   scripts/cuda-emu-test.sh            (EMU_ASAN=ON for AddressSanitizer + UBSan, slower)
set -euo pipefail
cd "$(dirname "$0")/.."
b="${CALMOE_EMU_BUILD:-build-cuda-emu}"
mkdir -p "$b"
cmake -S tools/cuda-emu -B "$b" -DEMU_ASAN="${EMU_ASAN:-OFF}" > "$b/configure.log" 2>&1 || { cat "$b/configure.log"; exit 1; }
cmake --build "$b" -j "$(nproc 2>/dev/null || echo 2)"
run() { echo "== emulated: ${label:-} $1"; "$b/$1" | grep -vE '^\s+info ' ; }
for t in gemm_cuda_test moe_cuda_test cuda_parity_test temperature_cuda_test audit_cuda_test drift_cuda_test; do run "$t"; done
# the tensor-core paths run when the emulated card reports sm_80 or newer
label="sm_90" EMU_CC_MAJOR=9 run gemm_cuda_test
label="sm_80" EMU_CC_MAJOR=8 T_FILTER=precision run gemm_cuda_test
label="sm_80" EMU_CC_MAJOR=8 T_FILTER=tensor_core run moe_cuda_test
# the cuBLASLt path (the product's TF32/BF16 GEMMs on a card) through the fake cuBLASLt of
# tools/fake-cublaslt: a CPU reference of the calls calmoe makes that checks every attribute,
# layout and leading dimension it is given. Logic only: not cuBLASLt's behaviour on a card.
fake="$PWD/$b/fake-cublaslt/libcublasLt.so.13"
echo "== fake cuBLASLt: its own test, and the loader over toolkit- and Python-like folder trees"
"$b/fake_cublaslt_test" "$fake" 2> "$b/fake-cublaslt-test.err" | tail -1  # stderr: the refusals it provokes
run cublaslt_loader_test
lt_log="$b/fake-cublaslt-calls.log"
: > "$lt_log"
echo "== GEMM library with the fake: $(CALMOE_CUBLASLT="$fake" "$b/calmoe_bench" gemm-library)"
label="sm_80, cuBLASLt (fake)" CALMOE_CUBLASLT="$fake" EMU_CC_MAJOR=8 T_FILTER=tensor_core run moe_cuda_test
label="sm_90, cuBLASLt (fake), calls logged" CALMOE_CUBLASLT="$fake" CALMOE_FAKE_CUBLASLT_LOG="$lt_log" CALMOE_TEST_EXPECT_CUBLASLT=1 \
  EMU_CC_MAJOR=9 T_FILTER=cublaslt run moe_cuda_test
# refused libraries: the self-check or the version check fails, calmoe's kernel runs and says why
for fault in "wrong:self-check failed" "noalgo:no algorithm" "unsupported:CUBLAS_STATUS_NOT_SUPPORTED" "version=120900:not a 13.x library"; do
  label="cuBLASLt refused (${fault%%:*})" CALMOE_CUBLASLT="$fake" CALMOE_FAKE_CUBLASLT="${fault%%:*}" CALMOE_TEST_EXPECT_CUBLASLT=0 \
    CALMOE_TEST_EXPECT_REASON="${fault#*:}" EMU_CC_MAJOR=8 T_FILTER=cublaslt run moe_cuda_test
done
label="sm_80, cuBLASLt refused (wrong results): calmoe's kernel" CALMOE_CUBLASLT="$fake" CALMOE_FAKE_CUBLASLT=wrong EMU_CC_MAJOR=8 \
  T_FILTER=tensor_core run moe_cuda_test
label="CALMOE_CUBLASLT=off" CALMOE_CUBLASLT=off CALMOE_TEST_EXPECT_CUBLASLT=0 CALMOE_TEST_EXPECT_REASON="CALMOE_CUBLASLT=off" EMU_CC_MAJOR=8 \
  T_FILTER=cublaslt run moe_cuda_test
# copies landing as soon as they are issued: a stage of the calibration kernel's cp.async pipeline
# refilled while another thread may still read it shows
label="copies landing early" EMU_COPIES=early T_FILTER=states_identical run cuda_parity_test
# blocks and the threads of each barrier phase in a shuffled order: order-dependent code shows
label="shuffled" EMU_ORDER=shuffle run moe_cuda_test
label="shuffled" EMU_ORDER=shuffle run gemm_cuda_test
label="sm_90, shuffled" EMU_CC_MAJOR=9 EMU_ORDER=shuffle T_FILTER=grouped run gemm_cuda_test
# W1L's real sizes on a 132-SM card, kernels not run: the host side of every mode's step (plans,
# grids, split-K) at full size, and the launches of its last step (tools/cuda-emu/README.md)
for mode in soft top2 top1 hard; do
  echo "== emulated dry run: W1L $mode step on 132 SMs, tf32"
  EMU_SMS=132 EMU_CC_MAJOR=9 EMU_DRY_RUN=1 "$b/calmoe_bench" w1l --device cuda --repeat 2 --modes "$mode" --cuda-gemm tf32 \
    2> "$b/dry-w1l-$mode.log" > /dev/null || { tail -5 "$b/dry-w1l-$mode.log"; exit 1; }
  python3 tools/cuda-emu/launch_audit.py "$b/dry-w1l-$mode.log" --sms 132 | tail -1
done
echo "== emulated CUDA tests passed"
