// CUDA backend of the temperature-scaling NLL: a thread per row with the shared per-row math, a
// fixed partition of the rows over blocks (it depends on the row count only), a fixed-order
// float64 tree inside each block, block partials combined on the host in block order: the same
// bits on every run and every GPU. Scaling (apply) is a thread per row. Inputs are streamed in
// chunks of rows.
#include <algorithm>
#include <climits>
#include <vector>

#include "core/temperature.h"
#include "cuda/runtime.cuh"

namespace calmoe::cuda {
namespace {

using ull = unsigned long long;

constexpr int kThreads = 256;
constexpr int kMaxBlocks = 1024;
constexpr int64_t kChunkElements = int64_t(1) << 26;  // 256 MB of float scores per chunk
constexpr int kSums = 5;                               // weight, nll, d1, d2, rows

int blocks_for(int64_t n) { return int(std::max<int64_t>(1, std::min<int64_t>(kMaxBlocks, (n + 1023) / 1024))); }

__device__ double block_sum(double v, double* sh) {
  sh[threadIdx.x] = v;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (int(threadIdx.x) < s) sh[threadIdx.x] += sh[threadIdx.x + s];
    __syncthreads();
  }
  const double r = sh[0];
  __syncthreads();
  return r;
}

// `a` holds device pointers for rows [row0, row0 + a.rows) of the whole input.
__global__ void nll_kernel(temp::KernelArgs a, int64_t row0, int64_t per_block, double* partial, ull* first_bad) {
  __shared__ double sh[kThreads];
  const int64_t b = int64_t(blockIdx.x) * per_block, e = min(a.rows, b + per_block);
  TemperatureEval s;
  for (int64_t i = b + threadIdx.x; i < e; i += blockDim.x) {
    if (temp::add_row(a, i, s) != temp::kOk) atomicMin(first_bad, ull(row0 + i));
  }
  const double v[kSums] = {s.weight, s.nll, s.d1, s.d2, double(s.rows)};
  for (int k = 0; k < kSums; ++k) {
    const double t = block_sum(v[k], sh);
    if (threadIdx.x == 0) partial[int64_t(k) * gridDim.x + blockIdx.x] = t;
  }
}

__global__ void apply_kernel(temp::KernelArgs a, int64_t row0, float* out, ull* first_bad) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < a.rows; i += int64_t(gridDim.x) * blockDim.x) {
    if (temp::row_apply(a.scores + i * a.stride, a.cols, a.beta, a.kind, a.tol, out + i * a.cols).issue != temp::kOk)
      atomicMin(first_bad, ull(row0 + i));
  }
}

}  // namespace

int64_t temperature_apply(const temp::KernelArgs& a, float* out) {
  use_default_device();
  const int64_t chunk_rows = std::max<int64_t>(1, std::min<int64_t>(a.rows, kChunkElements / a.stride));
  DeviceBuffer<float> d_scores(static_cast<std::size_t>((chunk_rows - 1) * a.stride + a.cols));
  DeviceBuffer<float> d_out(static_cast<std::size_t>(chunk_rows * a.cols));
  DeviceBuffer<ull> d_first_bad(1);
  const ull none = ULLONG_MAX;
  d_first_bad.upload(&none, 1);
  int sms = 1;
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
  for (int64_t row0 = 0; row0 < a.rows; row0 += chunk_rows) {
    const int64_t n = std::min(chunk_rows, a.rows - row0);
    temp::KernelArgs d = a;
    d.rows = n;
    d_scores.upload(a.scores + row0 * a.stride, static_cast<std::size_t>((n - 1) * a.stride + a.cols));
    d.scores = d_scores.get();
    const int blocks = int(std::min<int64_t>((n + kThreads - 1) / kThreads, int64_t(sms) * 8));
    apply_kernel<<<blocks, kThreads>>>(d, row0, d_out.get(), d_first_bad.get());
    check(cudaGetLastError(), "temperature apply launch");
    d_out.download(out + row0 * a.cols, static_cast<std::size_t>(n * a.cols));
  }
  ull first_bad = 0;
  d_first_bad.download(&first_bad, 1);
  return first_bad == ULLONG_MAX ? -1 : int64_t(first_bad);
}

int64_t temperature_reduce(const temp::KernelArgs& a, TemperatureEval& out) {
  use_default_device();
  const int64_t chunk_rows = std::max<int64_t>(1, std::min<int64_t>(a.rows, kChunkElements / a.stride));
  const std::size_t span = static_cast<std::size_t>((chunk_rows - 1) * a.stride + a.cols);
  DeviceBuffer<float> d_scores(span);
  DeviceBuffer<int32_t> d_labels(static_cast<std::size_t>(chunk_rows));
  DeviceBuffer<float> d_weights(a.weights ? static_cast<std::size_t>(chunk_rows) : 0);
  DeviceBuffer<double> d_partial(static_cast<std::size_t>(kMaxBlocks) * kSums);
  DeviceBuffer<ull> d_first_bad(1);
  const ull none = ULLONG_MAX;
  d_first_bad.upload(&none, 1);
  std::vector<double> h(static_cast<std::size_t>(kMaxBlocks) * kSums);
  TemperatureEval r;
  double rows = 0;
  for (int64_t row0 = 0; row0 < a.rows; row0 += chunk_rows) {
    const int64_t n = std::min(chunk_rows, a.rows - row0);
    temp::KernelArgs d = a;
    d.rows = n;
    d_scores.upload(a.scores + row0 * a.stride, static_cast<std::size_t>((n - 1) * a.stride + a.cols));
    d.scores = d_scores.get();
    d_labels.upload(a.labels + row0, static_cast<std::size_t>(n));
    d.labels = d_labels.get();
    if (a.weights) {
      d_weights.upload(a.weights + row0, static_cast<std::size_t>(n));
      d.weights = d_weights.get();
    }
    const int blocks = blocks_for(n);
    const int64_t per_block = (n + blocks - 1) / blocks;
    nll_kernel<<<blocks, kThreads>>>(d, row0, per_block, d_partial.get(), d_first_bad.get());
    check(cudaGetLastError(), "temperature kernel launch");
    d_partial.download(h.data(), static_cast<std::size_t>(blocks) * kSums);  // synchronises
    for (int k = 0; k < blocks; ++k) {
      r.weight += h[k];
      r.nll += h[blocks + k];
      r.d1 += h[2 * blocks + k];
      r.d2 += h[3 * blocks + k];
      rows += h[4 * blocks + k];
    }
  }
  ull first_bad = 0;
  d_first_bad.download(&first_bad, 1);
  if (first_bad != ULLONG_MAX) return int64_t(first_bad);
  r.rows = int64_t(rows);
  out = r;
  return -1;
}

}  // namespace calmoe::cuda
