// Checks calmoe's own cuBLASLt declarations (cuda/cublaslt_api.h) against NVIDIA's header when the
// build finds one (CMake defines CALMOE_CUBLASLT_HEADER_CHECK): every enum value, the layout of the
// structs passed by value or filled in, and each entry point's type. A mismatch fails the build.
// Without the header (the usual build machine) this file is empty.
#if defined(CALMOE_CUBLASLT_HEADER_CHECK)
#include <cublasLt.h>

#include <cstddef>
#include <type_traits>

#include "cuda/cublaslt_api.h"

namespace calmoe::lt {

constexpr bool same(long long a, long long b) { return a == b; }  // across enum types

static_assert(same(kSuccess, CUBLAS_STATUS_SUCCESS) && same(kNotInitialized, CUBLAS_STATUS_NOT_INITIALIZED) && same(kAllocFailed, CUBLAS_STATUS_ALLOC_FAILED) &&
              same(kInvalidValue, CUBLAS_STATUS_INVALID_VALUE) && same(kArchMismatch, CUBLAS_STATUS_ARCH_MISMATCH) &&
              same(kExecutionFailed, CUBLAS_STATUS_EXECUTION_FAILED) && same(kInternalError, CUBLAS_STATUS_INTERNAL_ERROR) &&
              same(kNotSupported, CUBLAS_STATUS_NOT_SUPPORTED));
static_assert(same(kR32F, CUDA_R_32F) && same(kCompute32F, CUBLAS_COMPUTE_32F) && same(kCompute32FFast16BF, CUBLAS_COMPUTE_32F_FAST_16BF) &&
              same(kCompute32FFastTF32, CUBLAS_COMPUTE_32F_FAST_TF32));
static_assert(same(kOpN, CUBLAS_OP_N) && same(kOpT, CUBLAS_OP_T) && same(kOrderCol, CUBLASLT_ORDER_COL));
static_assert(same(kDescComputeType, CUBLASLT_MATMUL_DESC_COMPUTE_TYPE) && same(kDescScaleType, CUBLASLT_MATMUL_DESC_SCALE_TYPE) &&
              same(kDescTransA, CUBLASLT_MATMUL_DESC_TRANSA) && same(kDescTransB, CUBLASLT_MATMUL_DESC_TRANSB) &&
              same(kDescEpilogue, CUBLASLT_MATMUL_DESC_EPILOGUE) && same(kDescBiasPointer, CUBLASLT_MATMUL_DESC_BIAS_POINTER) &&
              same(kDescBiasBatchStride, CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE));
static_assert(same(kLayoutType, CUBLASLT_MATRIX_LAYOUT_TYPE) && same(kLayoutOrder, CUBLASLT_MATRIX_LAYOUT_ORDER) &&
              same(kLayoutRows, CUBLASLT_MATRIX_LAYOUT_ROWS) && same(kLayoutCols, CUBLASLT_MATRIX_LAYOUT_COLS) && same(kLayoutLd, CUBLASLT_MATRIX_LAYOUT_LD) &&
              same(kLayoutBatchCount, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT) &&
              same(kLayoutStridedBatchOffset, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET));
static_assert(same(kPrefSearchMode, CUBLASLT_MATMUL_PREF_SEARCH_MODE) && same(kPrefMaxWorkspaceBytes, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES) &&
              same(kPrefMinAlignmentA, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES) && same(kPrefMinAlignmentB, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES) &&
              same(kPrefMinAlignmentC, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES) && same(kPrefMinAlignmentD, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES));
static_assert(same(kEpilogueDefault, CUBLASLT_EPILOGUE_DEFAULT) && same(kEpilogueRelu, CUBLASLT_EPILOGUE_RELU) &&
              same(kEpilogueBias, CUBLASLT_EPILOGUE_BIAS) && same(kEpilogueReluBias, CUBLASLT_EPILOGUE_RELU_BIAS));
static_assert(sizeof(MatmulAlgo) == sizeof(cublasLtMatmulAlgo_t) && alignof(MatmulAlgo) == alignof(cublasLtMatmulAlgo_t));
static_assert(sizeof(HeuristicResult) == sizeof(cublasLtMatmulHeuristicResult_t) &&
              offsetof(HeuristicResult, workspaceSize) == offsetof(cublasLtMatmulHeuristicResult_t, workspaceSize) &&
              offsetof(HeuristicResult, state) == offsetof(cublasLtMatmulHeuristicResult_t, state) &&
              offsetof(HeuristicResult, wavesCount) == offsetof(cublasLtMatmulHeuristicResult_t, wavesCount));
static_assert(sizeof(Status) == sizeof(cublasStatus_t) && sizeof(int32_t) == sizeof(cublasLtMatmulDescAttributes_t) &&
              sizeof(int32_t) == sizeof(cublasComputeType_t) && sizeof(int32_t) == sizeof(cudaDataType_t));

// Every entry point: the real function, with calmoe's enums and opaque pointers in place of NVIDIA's
// types of the same size, has calmoe's parameter count and result type.
template <class R, class... A>
constexpr std::size_t arity(R (*)(A...)) {
  return sizeof...(A);
}
template <class R, class... A>
R result_of(R (*)(A...));
#define CALMOE_LT_CHECK(member, name)                                                                                 \
  static_assert(arity(decltype(Api{}.member){}) == arity(&::name), #name ": parameter count");                        \
  static_assert(sizeof(decltype(result_of(decltype(Api{}.member){}))) == sizeof(decltype(result_of(&::name))), #name ": result");
CALMOE_LT_ENTRY_POINTS(CALMOE_LT_CHECK)
#undef CALMOE_LT_CHECK

}  // namespace calmoe::lt
#endif
