// Warpgroup-level TF32 tensor-core instructions (sm_90a) for the wgmma GEMM kernel (gemm.cu, tcw):
// wgmma.mma_async m64n128k8 with both operands in shared memory, K-major, 128-byte swizzle.
// Operand tile layout (what the descriptor of desc_k_major_sw128 names): rows (m of A, n of B) of
// 32 floats = 128 bytes, row r at byte 128 r of a 1024-byte-aligned tile, its 16-byte chunk c stored
// at chunk c ^ (r % 8) (the hardware applies that XOR to bits 4-6 of the shared-memory address,
// from bits 7-9). A k group of 8 at k0 (0, 8, 16, 24) is named by the tile's start address + 4 k0
// bytes (the XOR stays the row's, since bits 7-9 do not change). Stride between 8-row groups
// (SBO) 1024 bytes; the leading offset (LBO) is unused in this layout (1 by convention).
// Accumulators (per thread, warp w = 0..3 of the warpgroup, g = lane / 4, t = lane % 4):
//   d[4 j + q] = D(16 w + g + 8 (q / 2), 8 j + 2 t + q % 2), j = 0..15 (the mma.sync C fragment,
//   one per 8 columns).
// In the CPU emulator (tools/cuda-emu, CALMOE_CUDA_EMU) these are the emulator's warpgroup
// operations with this model of the layout; only a GPU run checks the model against the hardware.
#pragma once
#include <cstdint>

namespace calmoe::cuda::wgmma {

constexpr int kN = 128;     // the one instruction shape used: m64 n128 k8
constexpr int kAccum = 64;  // FP32 accumulators per thread

// The descriptor of a K-major, 128-byte-swizzled operand whose (row 0, k0) is at shared-memory
// window address `addr` (the tile 1024-byte aligned; addr = tile + 4 k0).
__host__ __device__ __forceinline__ uint64_t desc_k_major_sw128(uint32_t addr) {
  return uint64_t((addr >> 4) & 0x3fffu) | (uint64_t(1) << 16) | (uint64_t(1024 >> 4) << 32) | (uint64_t(1) << 62);
}

#if defined(CALMOE_CUDA_EMU)
inline uint32_t smem_addr(const void* p) { return ::emu::shared_window(p); }
inline void fence() {}
inline void fence_proxy_async() {}
inline void mma(float (&d)[kAccum], uint64_t a, uint64_t b) { ::emu::wgmma_m64n128k8_tf32(d, a, b); }
inline void commit() { ::emu::wgmma_commit(); }
inline void wait_all() { ::emu::wgmma_wait(0); }
inline void fence_operands(float (&)[kAccum]) {}
#elif defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
__device__ __forceinline__ uint32_t smem_addr(const void* p) { return static_cast<uint32_t>(__cvta_generic_to_shared(p)); }
// orders this warpgroup's register and shared-memory accesses before the wgmma that follow
__device__ __forceinline__ void fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
// makes this thread's generic-proxy writes of shared memory (cp.async, stores) visible to wgmma
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }
__device__ __forceinline__ void mma(float (&d)[kAccum], uint64_t a, uint64_t b) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k8.f32.tf32.tf32 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, %64, %65, p, 1, 1;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
      : "l"(a), "l"(b), "r"(1));
}
__device__ __forceinline__ void commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wait_all() { asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory"); }
// the accumulators are read (and written) only after the wait: the compiler must not move their
// uses across it (it cannot see that the asynchronous instruction writes them)
__device__ __forceinline__ void fence_operands(float (&d)[kAccum]) {
#pragma unroll
  for (int i = 0; i < kAccum; ++i) asm volatile("" : "+f"(d[i])::"memory");
}
#endif

}  // namespace calmoe::cuda::wgmma
