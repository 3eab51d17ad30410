// Run-time CPU feature detection: the AVX2 kernels are compiled into every x86-64 build and used
// only when the processor has AVX2 and FMA (and CALMOE_SIMD is not set to "scalar").
#pragma once

namespace calmoe::cpu {
bool use_avx2();
const char* simd_level();  // "avx2+fma" or "scalar"
}  // namespace calmoe::cpu
