// CPU emulation of the CUDA runtime and device model, for running calmoe's CUDA backend logic on a
// machine without a GPU (developer tool; not part of the project build). Blocks run one after
// another; the threads of a block run as fibers that switch at __syncthreads (so barriers behave,
// but races between barriers are not exposed). Device memory is host memory filled with 0xFF
// bytes (NaN floats, -1 integers) so reads of never-written memory show.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <algorithm>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))
#define __restrict__ __restrict
#define CALMOE_CUDA_EMU 1

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct uint3 { unsigned x, y, z; };
struct alignas(16) float4 { float x, y, z, w; };

namespace emu {
extern uint3 threadIdx_, blockIdx_;
extern dim3 blockDim_, gridDim_;
void syncthreads();
// Warp collectives: the calling thread waits until every lane named in `mask` has reached a
// collective of the same kind, then each gets its result (lanes are linear thread ids mod 32).
enum WarpOp : int { kWarpSync, kWarpBallot, kWarpReduceAdd, kWarpShfl, kWarpMatchAny };
uint64_t warp_collective(WarpOp op, unsigned mask, uint64_t value, int src_lane);
void* dynamic_shared();
// `name`: the kernel as written at the launch (EMU_LAUNCH_LOG=1 prints each launch's shape on
// stderr; EMU_DRY_RUN=1 also skips the kernels' bodies: a step's launches at sizes too large to emulate)
void launch(const char* name, dim3 grid, dim3 block, std::size_t shmem, const std::function<void()>& body);
[[noreturn]] void trap();
}  // namespace emu
#define threadIdx (::emu::threadIdx_)
#define blockIdx (::emu::blockIdx_)
#define blockDim (::emu::blockDim_)
#define gridDim (::emu::gridDim_)
inline void __syncthreads() { ::emu::syncthreads(); }
[[noreturn]] inline void __trap() { ::emu::trap(); }

inline unsigned emu_lane() { return (threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z)) % 32u; }
inline void __syncwarp(unsigned mask = 0xffffffffu) { ::emu::warp_collective(::emu::kWarpSync, mask, 0, 0); }
inline unsigned __ballot_sync(unsigned mask, int pred) { return unsigned(::emu::warp_collective(::emu::kWarpBallot, mask, pred != 0, 0)); }
inline int __any_sync(unsigned mask, int pred) { return __ballot_sync(mask, pred) != 0; }
inline int __all_sync(unsigned mask, int pred) { return __ballot_sync(mask, pred) == mask; }
inline unsigned __reduce_add_sync(unsigned mask, unsigned v) { return unsigned(::emu::warp_collective(::emu::kWarpReduceAdd, mask, v, 0)); }
inline unsigned __match_any_sync(unsigned mask, unsigned v) { return unsigned(::emu::warp_collective(::emu::kWarpMatchAny, mask, v, 0)); }
inline unsigned __match_any_sync(unsigned mask, unsigned long long v) { return unsigned(::emu::warp_collective(::emu::kWarpMatchAny, mask, v, 0)); }
// shuffles of values of up to 8 bytes; width partitions the warp into segments as on a GPU
template <class T> inline T emu_shfl_from(unsigned mask, T v, int src) {
  static_assert(sizeof(T) <= 8, "shuffle of more than 8 bytes");
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  bits = ::emu::warp_collective(::emu::kWarpShfl, mask, bits, src);
  T out;
  std::memcpy(&out, &bits, sizeof(T));
  return out;
}
template <class T> inline T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
  const int lane = int(emu_lane()), base = lane & ~(width - 1);
  return emu_shfl_from(mask, v, base + (src & (width - 1)));
}
template <class T> inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  const int lane = int(emu_lane()), base = lane & ~(width - 1), src = lane ^ lane_mask;
  return emu_shfl_from(mask, v, src >= base + width ? lane : src);
}
template <class T> inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  const int lane = int(emu_lane()), base = lane & ~(width - 1), src = lane + int(delta);
  return emu_shfl_from(mask, v, src >= base + width ? lane : src);
}
template <class T> inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  const int lane = int(emu_lane()), base = lane & ~(width - 1), src = lane - int(delta);
  return emu_shfl_from(mask, v, src < base ? lane : src);
}
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __ffs(unsigned x) { return __builtin_ffs(int(x)); }
inline int __clz(unsigned x) { return x ? __builtin_clz(x) : 32; }

inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
inline double __fma_rn(double a, double b, double c) { return std::fma(a, b, c); }
inline long long __double_as_longlong(double x) { long long u; std::memcpy(&u, &x, 8); return u; }
inline double __longlong_as_double(long long u) { double x; std::memcpy(&x, &u, 8); return x; }
inline unsigned __float_as_uint(float x) { unsigned u; std::memcpy(&u, &x, 4); return u; }
inline float __uint_as_float(unsigned u) { float x; std::memcpy(&x, &u, 4); return x; }
template <class T> inline T min(T a, T b) { return b < a ? b : a; }
template <class T> inline T max(T a, T b) { return a < b ? b : a; }
template <class T> inline T atomicAdd(T* p, T v) { T o = *p; *p = o + v; return o; }
template <class T> inline T atomicOr(T* p, T v) { T o = *p; *p = o | v; return o; }
template <class T> inline T atomicMin(T* p, T v) { T o = *p; if (v < o) *p = v; return o; }
template <class T> inline T atomicMax(T* p, T v) { T o = *p; if (o < v) *p = v; return o; }

enum cudaError_t { cudaSuccess = 0, cudaErrorInvalidValue = 1, cudaErrorMemoryAllocation = 2, cudaErrorLaunchFailure = 719 };
enum cudaMemcpyKind { cudaMemcpyHostToHost = 0, cudaMemcpyHostToDevice = 1, cudaMemcpyDeviceToHost = 2, cudaMemcpyDeviceToDevice = 3, cudaMemcpyDefault = 4 };
enum cudaDeviceAttr { cudaDevAttrMultiProcessorCount = 16, cudaDevAttrComputeCapabilityMajor = 75, cudaDevAttrComputeCapabilityMinor = 76,
                      cudaDevAttrMaxSharedMemoryPerBlockOptin = 97 };
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
#define cudaStreamNonBlocking 0x01
typedef struct CUstream_st* cudaStream_t;
typedef struct CUevent_st* cudaEvent_t;
struct cudaDeviceProp {
  char name[256];
  std::size_t totalGlobalMem;
  int major, minor, multiProcessorCount;
};

cudaError_t cudaMalloc(void** p, std::size_t n);
template <class T> cudaError_t cudaMalloc(T** p, std::size_t n) { return cudaMalloc(reinterpret_cast<void**>(p), n); }
cudaError_t cudaMallocHost(void** p, std::size_t n);
template <class T> cudaError_t cudaMallocHost(T** p, std::size_t n) { return cudaMallocHost(reinterpret_cast<void**>(p), n); }
cudaError_t cudaFree(void* p);
cudaError_t cudaFreeHost(void* p);
cudaError_t cudaMemcpy(void* d, const void* s, std::size_t n, cudaMemcpyKind k);
cudaError_t cudaMemcpyAsync(void* d, const void* s, std::size_t n, cudaMemcpyKind k, cudaStream_t st = nullptr);
cudaError_t cudaMemcpy2D(void* d, std::size_t dpitch, const void* s, std::size_t spitch, std::size_t width, std::size_t height, cudaMemcpyKind k);
cudaError_t cudaMemset(void* p, int v, std::size_t n);
cudaError_t cudaMemsetAsync(void* p, int v, std::size_t n, cudaStream_t st = nullptr);
cudaError_t cudaMemGetInfo(std::size_t* free_b, std::size_t* total_b);
cudaError_t cudaStreamCreate(cudaStream_t* s);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaDeviceSynchronize();
cudaError_t cudaGetLastError();
const char* cudaGetErrorName(cudaError_t e);
const char* cudaGetErrorString(cudaError_t e);
cudaError_t cudaGetDeviceCount(int* n);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int dev);
cudaError_t cudaRuntimeGetVersion(int* v);
cudaError_t cudaDriverGetVersion(int* v);
cudaError_t cudaSetDevice(int d);
cudaError_t cudaGetDevice(int* d);
cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr a, int dev);
template <class F> cudaError_t cudaFuncSetAttribute(F, cudaFuncAttribute, int) { return cudaSuccess; }
cudaError_t cudaEventCreate(cudaEvent_t* e);
#define cudaEventDisableTiming 0x02
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned flags);
// streams run in issue order here (every call completes at once), so waits are already satisfied
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned flags = 0);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s = nullptr);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t a, cudaEvent_t b);
cudaError_t cudaEventDestroy(cudaEvent_t e);
