// The summation order of an exact FP32 GEMM, shared by the backends so that the CPU builtin GEMM
// and the CUDA Fp32 kernel give the same bits: each output element is one multiply-add chain over
// k in increasing order within blocks of kGemmSumBlock, the blocks added in k order.
#pragma once
#include <cstdint>

namespace calmoe {

constexpr int64_t kGemmSumBlock = 256;  // one L2-sized panel of k on the CPU; whole k steps on the GPU

}  // namespace calmoe
