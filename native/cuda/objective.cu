// The objective's coefficients on the device (objective.cuh): ERM's constant 1/B, robust's tilted
// coefficients (cuda/tilted.cuh), and robust-filtered's R (regret or disagreement above a
// threshold, the batch median found by a radix select), compacted in row order, and tilted.
// Everything the CPU's objective_coefficients (core/objective.cpp) does, with its bits.
#include <algorithm>
#include <string>

#include "calmoe/error.h"
#include "cuda/objective.cuh"
#include "cuda/tilted.cuh"

namespace calmoe::cuda {
namespace {

constexpr int kBlock = 1024;  // the single-block kernels (one batch of per-row scalars)

__global__ void fill_kernel(float* coef, int64_t n, float v) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) coef[i] = v;
}

// robust-filtered's mean term: 1/B each, or 2/B when R is empty
__global__ void fill_filtered_kernel(float* coef, int64_t n, const int32_t* count, float one, float two) {
  const float v = *count == 0 ? two : one;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) coef[i] = v;
}

// Floats as unsigned keys in the same order (negatives reversed below the positives).
__device__ __forceinline__ uint32_t order_key(float v) {
  const uint32_t u = f32_bits(v);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
__device__ __forceinline__ float key_value(uint32_t k) { return bits_f32((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k); }

// The k-th smallest of v (0-based), by the block: four passes, each fixing 8 bits of its key from
// a histogram of the keys that match the bits fixed so far (integer counts: exact).
__device__ float select_kth(const float* v, int64_t n, int64_t k, uint32_t* hist, uint32_t* prefix_sh, int64_t* k_sh) {
  uint32_t prefix = 0, mask = 0;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int b = threadIdx.x; b < 256; b += blockDim.x) hist[b] = 0;
    __syncthreads();
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
      const uint32_t key = order_key(v[i]);
      if ((key & mask) == prefix) atomicAdd(&hist[(key >> shift) & 255u], 1u);
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      uint32_t d = 0;
      while (d < 255 && k >= int64_t(hist[d])) k -= int64_t(hist[d++]);
      *prefix_sh = prefix | (d << shift);
      *k_sh = k;
    }
    __syncthreads();
    prefix = *prefix_sh;
    k = *k_sh;
    mask |= 255u << shift;
    __syncthreads();  // everyone has read them before the next pass writes
  }
  return key_value(prefix);
}

// The batch median of the disagreement as the CPU takes it: d[B/2] of the sorted values, or for
// even B its mean with d[B/2 - 1].
__global__ void median_kernel(const float* dis, int64_t n, double* out) {
  __shared__ uint32_t hist[256];
  __shared__ uint32_t prefix;
  __shared__ int64_t k;
  const float hi = select_kth(dis, n, n / 2, hist, &prefix, &k);
  double t = double(hi);
  if (n % 2 == 0) {
    const float lo = select_kth(dis, n, n / 2 - 1, hist, &prefix, &k);
    t = 0.5 * (double(hi) + double(lo));
  }
  if (threadIdx.x == 0) *out = t;
}

__device__ __forceinline__ bool in_r(const float* regret, const float* dis, int64_t i, double tau_r, double threshold) {
  return double(regret[i]) > tau_r || double(dis[i]) > threshold;
}

// Inclusive prefix sum over the block (shuffles within warps, then over the warps' totals).
__device__ int block_inclusive_scan(int v, int* warp_sums) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int off = 1; off < 32; off <<= 1) {
    const int y = __shfl_up_sync(0xffffffffu, v, off);
    if (lane >= off) v += y;
  }
  if (lane == 31) warp_sums[warp] = v;
  __syncthreads();
  if (warp == 0) {
    int w = lane < int(blockDim.x >> 5) ? warp_sums[lane] : 0;
    for (int off = 1; off < 32; off <<= 1) {
      const int y = __shfl_up_sync(0xffffffffu, w, off);
      if (lane >= off) w += y;
    }
    warp_sums[lane] = w;
  }
  __syncthreads();
  return v + (warp > 0 ? warp_sums[warp - 1] : 0);
}

// R's rows in ascending order: each thread takes a contiguous range of rows, counts its members,
// and writes them after the members of the ranges before it.
__global__ void members_kernel(const float* regret, const float* dis, int64_t n, double tau_r, double tau_d, const double* median,
                               int32_t* members, int32_t* count) {
  __shared__ int warp_sums[32];
  const double threshold = median ? *median : tau_d;
  const int64_t per = (n + blockDim.x - 1) / blockDim.x, b = int64_t(threadIdx.x) * per, e = min(n, b + per);
  int c = 0;
  for (int64_t i = b; i < e; ++i) c += in_r(regret, dis, i, tau_r, threshold);
  const int incl = block_inclusive_scan(c, warp_sums);
  int at = incl - c;
  for (int64_t i = b; i < e; ++i) {
    if (in_r(regret, dis, i, tau_r, threshold)) members[at++] = int32_t(i);
  }
  if (threadIdx.x == blockDim.x - 1) *count = incl;
}

int fill_blocks(int64_t n) { return int(std::min<int64_t>((n + 255) / 256, 1024)); }

}  // namespace

void DeviceObjective::reserve(int64_t max_batch) {
  max_batch_ = std::max(max_batch_, max_batch);
  ws_.resize(std::size_t(tilted::workspace(max_batch)));
  sums_.resize(1);
  members_.resize(std::size_t(max_batch));
  count_.resize(1);
  threshold_.resize(1);
  h_sums_.resize(1);
  h_count_.resize(1);
}

void DeviceObjective::queue(const ObjectiveConfig& cfg, bool robust_active, bool single_active, const float* loss, const float* regret,
                            const float* disagree, int64_t n, float* coef, cudaStream_t stream) {
  auto copy_back = [&](void* dst, const void* src, std::size_t bytes) {
    check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync D2H");
  };
  if (n < 1 || n > max_batch_) throw_range("objective: expected 1.." + std::to_string(max_batch_) + " rows, got " + std::to_string(n));
  const bool filtered = cfg.kind == ObjectiveKind::RobustFiltered;
  *h_count_.get() = 0;  // the host's copy, read after the stream synchronised
  if (!moe::objective_needs_losses(cfg, robust_active) || (filtered && single_active)) {
    // ERM, or R empty: a constant
    const float v = moe::erm_coefficient(n, filtered && robust_active ? 2.0 : 1.0);
    fill_kernel<<<fill_blocks(n), 256, 0, stream>>>(coef, n, v);
    check(cudaGetLastError(), "objective fill launch");
    return;
  }
  tilted::Losses in;
  in.l = loss;
  in.n = n;
  if (filtered) {
    if (cfg.median_disagreement) {
      median_kernel<<<1, kBlock, 0, stream>>>(disagree, n, threshold_.get());
      check(cudaGetLastError(), "objective median launch");
    }
    members_kernel<<<1, kBlock, 0, stream>>>(regret, disagree, n, cfg.tau_regret, cfg.tau_disagreement,
                                             cfg.median_disagreement ? threshold_.get() : nullptr, members_.get(), count_.get());
    check(cudaGetLastError(), "objective members launch");
    fill_filtered_kernel<<<fill_blocks(n), 256, 0, stream>>>(coef, n, count_.get(), moe::erm_coefficient(n, 1.0), moe::erm_coefficient(n, 2.0));
    check(cudaGetLastError(), "objective fill launch");
    in.idx = members_.get();
    in.count = count_.get();
    copy_back(h_count_.get(), count_.get(), sizeof(int32_t));
  }
  tilted::queue_sums(in, cfg.eta, sums_.get(), ws_.get(), stream);
  tilted::queue_write(in, cfg.eta, cfg.gradient, sums_.get(), nullptr, coef, filtered, stream);
  copy_back(h_sums_.get(), sums_.get(), sizeof(tilt::Sums));
}

moe::ObjectiveResult DeviceObjective::result(const ObjectiveConfig& cfg, bool robust_active, const float* host_loss, int64_t n) const {
  return moe::objective_value(cfg, robust_active, host_loss, n, *h_count_.get(), *h_sums_.get());
}

}  // namespace calmoe::cuda
