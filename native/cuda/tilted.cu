// CUDA backend of the tilted weights: fixed partition of the losses over blocks, a fixed-order
// tree inside each block, block partials combined on the host in block order (deterministic).
#include <algorithm>
#include <vector>

#include "core/tilted.h"
#include "cuda/runtime.cuh"

namespace calmoe::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxBlocks = 1024;

int blocks_for(int64_t n) { return int(std::max<int64_t>(1, std::min<int64_t>(kMaxBlocks, (n + 4095) / 4096))); }

// Fixed-order tree over the block's threads: the same result every run.
template <class Op>
__device__ double block_reduce(double v, double* sh, Op op) {
  sh[threadIdx.x] = v;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (int(threadIdx.x) < s) sh[threadIdx.x] = op(sh[threadIdx.x], sh[threadIdx.x + s]);
    __syncthreads();
  }
  const double r = sh[0];
  __syncthreads();
  return r;
}

struct Max { __device__ double operator()(double a, double b) const { return a > b ? a : b; } };
struct Sum { __device__ double operator()(double a, double b) const { return a + b; } };

__global__ void reduce_max_sum(const float* l, int64_t n, double eta, int64_t per_block, double* out_max, double* out_sum) {
  __shared__ double sh[kThreads];
  const int64_t b = int64_t(blockIdx.x) * per_block, e = min(n, b + per_block);
  double m = -INFINITY, s = 0;
  for (int64_t i = b + threadIdx.x; i < e; i += blockDim.x) {
    m = fmax(m, tilt::scaled(l[i], eta));
    s += double(l[i]);
  }
  m = block_reduce(m, sh, Max{});
  s = block_reduce(s, sh, Sum{});
  if (threadIdx.x == 0) { out_max[blockIdx.x] = m; out_sum[blockIdx.x] = s; }
}

__global__ void reduce_exp(const float* l, int64_t n, double eta, double mx, int64_t per_block, double* out_s, double* out_el, double* out_ee) {
  __shared__ double sh[kThreads];
  const int64_t b = int64_t(blockIdx.x) * per_block, e = min(n, b + per_block);
  double s = 0, el = 0, ee = 0;
  for (int64_t i = b + threadIdx.x; i < e; i += blockDim.x) {
    const double u = tilt::unnormalised(l[i], eta, mx);
    s += u;
    el += u * double(l[i]);
    ee += u * u;
  }
  s = block_reduce(s, sh, Sum{});
  el = block_reduce(el, sh, Sum{});
  ee = block_reduce(ee, sh, Sum{});
  if (threadIdx.x == 0) { out_s[blockIdx.x] = s; out_el[blockIdx.x] = el; out_ee[blockIdx.x] = ee; }
}

__global__ void write_weights(const float* l, int64_t n, double eta, TiltGradient g, double mx, double s, double robust, float* w, float* c) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const double wi = tilt::unnormalised(l[i], eta, mx) / s;
    if (w) w[i] = float(wi);
    if (c) c[i] = float(tilt::coefficient(wi, l[i], eta, robust, g));
  }
}

}  // namespace

tilt::Sums tilted_reduce(const float* l, int64_t n, double eta) {
  use_default_device();
  const int blocks = blocks_for(n);
  const int64_t per_block = (n + blocks - 1) / blocks;
  DeviceBuffer<float> d_l{std::size_t(n)};
  d_l.upload(l, std::size_t(n));
  DeviceBuffer<double> p(static_cast<std::size_t>(blocks) * 3);
  std::vector<double> h(static_cast<std::size_t>(blocks) * 3);
  reduce_max_sum<<<blocks, kThreads>>>(d_l.get(), n, eta, per_block, p.get(), p.get() + blocks);
  check(cudaGetLastError(), "tilted reduce launch");
  p.download(h.data(), std::size_t(blocks) * 2);
  tilt::Sums r;
  for (int b = 0; b < blocks; ++b) {
    r.max_scaled = std::max(r.max_scaled, h[b]);
    r.sum_l += h[blocks + b];
  }
  reduce_exp<<<blocks, kThreads>>>(d_l.get(), n, eta, r.max_scaled, per_block, p.get(), p.get() + blocks, p.get() + 2 * blocks);
  check(cudaGetLastError(), "tilted reduce launch");
  p.download(h.data(), std::size_t(blocks) * 3);
  for (int b = 0; b < blocks; ++b) {
    r.s += h[b];
    r.s_el += h[blocks + b];
    r.s_ee += h[2 * blocks + b];
  }
  return r;
}

void tilted_write(const float* l, int64_t n, double eta, TiltGradient g, double mx, double s, double robust, float* w, float* c) {
  use_default_device();
  DeviceBuffer<float> d_l{std::size_t(n)}, d_w{w ? std::size_t(n) : 0}, d_c{c ? std::size_t(n) : 0};
  d_l.upload(l, std::size_t(n));
  const int blocks = int(std::min<int64_t>((n + kThreads - 1) / kThreads, 4096));
  write_weights<<<blocks, kThreads>>>(d_l.get(), n, eta, g, mx, s, robust, w ? d_w.get() : nullptr, c ? d_c.get() : nullptr);
  check(cudaGetLastError(), "tilted write launch");
  if (w) d_w.download(w, std::size_t(n));
  if (c) d_c.download(c, std::size_t(n));
}

}  // namespace calmoe::cuda
