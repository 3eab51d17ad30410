// calmoe's own declarations of the part of cuBLASLt it calls. The library is opened at run time
// (cuda/cublaslt_loader.h), so the build needs no cuBLAS headers and links no cuBLAS library: the
// machines that build calmoe have nvcc but not cuBLAS, and the machines that train have cuBLASLt
// wherever the CUDA toolkit or PyTorch is. Values are those of NVIDIA's cublasLt.h / cublas_api.h /
// library_types.h (CUDA 12 and 13 agree on every one used here). When a real cublasLt.h is found at
// configure time, cuda/cublaslt_api_check.cpp static_asserts every value and signature below against
// it (CMake option CALMOE_CUBLASLT_HEADER_CHECK).
//
// Plain C++ (no CUDA types but the stream, an opaque pointer): the loader, the fake library of the
// emulator tests (tools/fake-cublaslt) and the GEMM layer share it.
#pragma once
#include <cstddef>
#include <cstdint>

namespace calmoe::lt {

using Status = int32_t;  // cublasStatus_t
constexpr Status kSuccess = 0, kNotInitialized = 1, kAllocFailed = 3, kInvalidValue = 7, kArchMismatch = 8, kExecutionFailed = 13,
                 kInternalError = 14, kNotSupported = 15;

using Handle = struct LtContext*;       // cublasLtHandle_t (opaque)
using MatmulDesc = struct LtDesc*;      // cublasLtMatmulDesc_t (opaque to calmoe)
using MatrixLayout = struct LtLayout*;  // cublasLtMatrixLayout_t
using Preference = struct LtPref*;      // cublasLtMatmulPreference_t
using Stream = void*;                   // cudaStream_t

struct MatmulAlgo {  // cublasLtMatmulAlgo_t: 64 opaque bytes, copied by value
  uint64_t data[8];
};
struct HeuristicResult {  // cublasLtMatmulHeuristicResult_t
  MatmulAlgo algo;
  std::size_t workspaceSize;
  Status state;
  float wavesCount;
  int reserved[4];
};

// cudaDataType_t
constexpr int32_t kR32F = 0;
// cublasComputeType_t: FP32 data with TF32 / BF16 tensor-core products, FP32 accumulation
constexpr int32_t kCompute32F = 68, kCompute32FFast16BF = 75, kCompute32FFastTF32 = 77;
// cublasOperation_t
constexpr int32_t kOpN = 0, kOpT = 1;
// cublasLtOrder_t
constexpr int32_t kOrderCol = 0;

// cublasLtMatmulDescAttributes_t
enum DescAttr : int32_t {
  kDescComputeType = 0,
  kDescScaleType = 1,
  kDescTransA = 3,   // int32_t
  kDescTransB = 4,   // int32_t
  kDescEpilogue = 7, // uint32_t
  kDescBiasPointer = 8,       // const void*
  kDescBiasBatchStride = 10,  // int64_t
};
// cublasLtMatrixLayoutAttribute_t
enum LayoutAttr : int32_t {
  kLayoutType = 0,
  kLayoutOrder = 1,
  kLayoutRows = 2,
  kLayoutCols = 3,
  kLayoutLd = 4,
  kLayoutBatchCount = 5,          // int32_t
  kLayoutStridedBatchOffset = 6,  // int64_t
};
// cublasLtMatmulPreferenceAttributes_t
enum PrefAttr : int32_t {
  kPrefSearchMode = 0,
  kPrefMaxWorkspaceBytes = 1,  // uint64_t
  kPrefMinAlignmentA = 5,      // uint32_t bytes (default 256: a less aligned operand needs it said)
  kPrefMinAlignmentB = 6,
  kPrefMinAlignmentC = 7,
  kPrefMinAlignmentD = 8,
};
// cublasLtEpilogue_t (the ones calmoe uses; bias is added before the activation)
enum Epilogue : uint32_t {
  kEpilogueDefault = 1,
  kEpilogueRelu = 2,
  kEpilogueBias = 4,
  kEpilogueReluBias = 6,
};

// The entry points, as function-pointer types (resolved with dlsym by name).
struct Api {
  std::size_t (*GetVersion)() = nullptr;
  Status (*Create)(Handle*) = nullptr;
  Status (*Destroy)(Handle) = nullptr;
  Status (*MatmulDescCreate)(MatmulDesc*, int32_t computeType, int32_t scaleType) = nullptr;
  Status (*MatmulDescDestroy)(MatmulDesc) = nullptr;
  Status (*MatmulDescSetAttribute)(MatmulDesc, int32_t attr, const void* buf, std::size_t size) = nullptr;
  Status (*MatrixLayoutCreate)(MatrixLayout*, int32_t type, uint64_t rows, uint64_t cols, int64_t ld) = nullptr;
  Status (*MatrixLayoutDestroy)(MatrixLayout) = nullptr;
  Status (*MatrixLayoutSetAttribute)(MatrixLayout, int32_t attr, const void* buf, std::size_t size) = nullptr;
  Status (*MatmulPreferenceCreate)(Preference*) = nullptr;
  Status (*MatmulPreferenceDestroy)(Preference) = nullptr;
  Status (*MatmulPreferenceSetAttribute)(Preference, int32_t attr, const void* buf, std::size_t size) = nullptr;
  Status (*MatmulAlgoGetHeuristic)(Handle, MatmulDesc, MatrixLayout a, MatrixLayout b, MatrixLayout c, MatrixLayout d, Preference,
                                   int requested, HeuristicResult* results, int* returned) = nullptr;
  Status (*Matmul)(Handle, MatmulDesc, const void* alpha, const void* A, MatrixLayout, const void* B, MatrixLayout, const void* beta,
                   const void* C, MatrixLayout, void* D, MatrixLayout, const MatmulAlgo* algo, void* workspace, std::size_t workspaceBytes,
                   Stream stream) = nullptr;
};

// The exported names of Api's members, in its order (the loader resolves each; the header check
// and the fake library use the same list).
#define CALMOE_LT_ENTRY_POINTS(X)                                                                                                 \
  X(GetVersion, cublasLtGetVersion)                                                                                               \
  X(Create, cublasLtCreate)                                                                                                       \
  X(Destroy, cublasLtDestroy)                                                                                                     \
  X(MatmulDescCreate, cublasLtMatmulDescCreate)                                                                                   \
  X(MatmulDescDestroy, cublasLtMatmulDescDestroy)                                                                                 \
  X(MatmulDescSetAttribute, cublasLtMatmulDescSetAttribute)                                                                       \
  X(MatrixLayoutCreate, cublasLtMatrixLayoutCreate)                                                                               \
  X(MatrixLayoutDestroy, cublasLtMatrixLayoutDestroy)                                                                             \
  X(MatrixLayoutSetAttribute, cublasLtMatrixLayoutSetAttribute)                                                                   \
  X(MatmulPreferenceCreate, cublasLtMatmulPreferenceCreate)                                                                       \
  X(MatmulPreferenceDestroy, cublasLtMatmulPreferenceDestroy)                                                                     \
  X(MatmulPreferenceSetAttribute, cublasLtMatmulPreferenceSetAttribute)                                                           \
  X(MatmulAlgoGetHeuristic, cublasLtMatmulAlgoGetHeuristic)                                                                       \
  X(Matmul, cublasLtMatmul)

// A library that exports this symbol is tools/fake-cublaslt (a CPU reference for the emulator
// tests): the loader refuses it unless told the process is emulated, since it dereferences "device"
// pointers on the host.
constexpr const char* kFakeMarker = "calmoe_fake_cublaslt";

}  // namespace calmoe::lt
