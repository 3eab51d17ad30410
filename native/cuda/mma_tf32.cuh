// Warp-level TF32 tensor-core instructions (sm_80+) for the mma.sync GEMM kernel (gemm.cu, tcm):
// mma.sync m16n8k8, ldmatrix x4 of 32-bit words, cvt.rna to TF32. Fragment layouts (PTX ISA), with
// g = lane / 4 and t = lane % 4:
//   A 16 x 8 (row): a0 (g, t), a1 (g + 8, t), a2 (g, t + 4), a3 (g + 8, t + 4)
//   B 8 x 8 (col):  b0 (t, g), b1 (t + 4, g)
//   C 16 x 8 (f32): c0 (g, 2t), c1 (g, 2t + 1), c2 (g + 8, 2t), c3 (g + 8, 2t + 1)
// ldmatrix x4: lane l gives the address of row l % 8 of matrix l / 8 (16 bytes = 4 words, 16-byte
// aligned, shared memory); register q receives word t of row g of matrix q.
// In the CPU emulator (tools/cuda-emu, CALMOE_CUDA_EMU) the same functions are warp-wide
// operations of the emulator with these layouts.
#pragma once
#include <cstdint>

#include <mma.h>

namespace calmoe::cuda::mma {

#if defined(CALMOE_CUDA_EMU)
inline void ldsm_x4(uint32_t (&r)[4], const float* row) { ::emu::ldmatrix_x4(r, row); }
inline void mma_tf32(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) { ::emu::mma_m16n8k8_tf32(d, a, b); }
inline uint32_t tf32_bits(float x) { return __float_as_uint(nvcuda::wmma::__float_to_tf32(x)); }
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], const float* row) {
  const unsigned a = static_cast<unsigned>(__cvta_generic_to_shared(row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a));
}
__device__ __forceinline__ void mma_tf32(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
// round to nearest, ties away from zero (as wmma::__float_to_tf32: the other TF32 kernels' rounding)
__device__ __forceinline__ uint32_t tf32_bits(float x) {
  uint32_t r;
  asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(x));
  return r;
}
#endif

}  // namespace calmoe::cuda::mma
