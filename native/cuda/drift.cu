// CUDA backend of drift. Features are processed in groups sized to the device memory: the group's
// columns are copied out of the row-major host matrix (cudaMemcpy2D), turned into 64-bit keys
// (feature index << 32 | order-preserving value key) and sorted with one cub::DeviceRadixSort over
// the whole group, which leaves each feature's sorted column contiguous. KS: one thread per
// element at the end of its run of ties finds the other column's count by binary search; a block
// reduction and one integer atomicMax per block give each feature's numerators (max is
// order-independent, so the result is deterministic and equals the CPU's). Cut points: one thread
// per (feature, cut point). Monitor histograms: one thread per element, integer atomics.
#include <cub/block/block_reduce.cuh>
#include <cub/device/device_radix_sort.cuh>

#include <algorithm>
#include <climits>
#include <vector>

#include "core/drift.h"
#include "cuda/runtime.cuh"

namespace calmoe::cuda {
namespace {

using ull = unsigned long long;
constexpr int kThreads = 256;
constexpr int64_t kChunkElements = int64_t(1) << 26;  // monitor chunks: 256 MB of floats

struct MaxLL {
  __device__ __forceinline__ long long operator()(long long a, long long b) const { return a > b ? a : b; }
};

__global__ void keys_kernel(const float* block, int64_t rows, int64_t g, int64_t d, int64_t f0, ull* keys, ull* first_nan) {
  const int64_t total = rows * g;
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total; idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = idx / g, k = idx - r * g;
    const float v = block[idx];
    if (drift::is_nan_f32(v)) {
      atomicMin(first_nan, ull(r * d + f0 + k));
      continue;
    }
    keys[k * rows + r] = (ull(k) << 32) | ull(drift::key_of(v));
  }
}

// Numerators of feature blockIdx.y: max (i n2 - j n1) and max (j n1 - i n2) over the merge points.
__global__ void ks_kernel(const ull* A, int64_t n1, const ull* B, int64_t n2, long long* plus, long long* minus) {
  const int64_t k = blockIdx.y;
  const ull* a = A + k * n1;
  const ull* b = B + k * n2;
  long long hi = 0, lo = 0;
  for (int64_t p = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; p < n1 + n2; p += int64_t(gridDim.x) * blockDim.x) {
    int64_t i, j;
    if (p < n1) {
      if (p + 1 < n1 && a[p + 1] == a[p]) continue;  // not the last of its ties
      i = p + 1;
      j = drift::count_le(b, n2, a[p]);
    } else {
      const int64_t q = p - n1;
      if (q + 1 < n2 && b[q + 1] == b[q]) continue;
      j = q + 1;
      i = drift::count_le(a, n1, b[q]);
    }
    const long long diff = (long long)(i * n2 - j * n1);
    hi = diff > hi ? diff : hi;
    lo = diff < lo ? diff : lo;
  }
  using Reduce = cub::BlockReduce<long long, kThreads>;
  __shared__ typename Reduce::TempStorage tmp;
  const long long bh = Reduce(tmp).Reduce(hi, MaxLL{});
  __syncthreads();
  const long long bl = Reduce(tmp).Reduce(-lo, MaxLL{});
  if (threadIdx.x == 0) {
    atomicMax(plus + k, bh);
    atomicMax(minus + k, bl);
  }
}

__global__ void edges_kernel(const ull* A, int64_t n1, const ull* B, int64_t n2, int64_t g, const int64_t* index, int64_t E,
                             uint32_t* edge_key, long long* ref_le, long long* cur_le) {
  for (int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; t < g * E; t += int64_t(gridDim.x) * blockDim.x) {
    const int64_t k = t / E, e = t - k * E;
    const ull key = A[k * n1 + index[e]];
    edge_key[t] = uint32_t(key & 0xffffffffull);
    ref_le[t] = drift::count_le(A + k * n1, n1, key);
    cur_le[t] = n2 > 0 ? drift::count_le(B + k * n2, n2, key) : 0;
  }
}

__global__ void bins_kernel(const float* x, int64_t rows, int64_t d, const uint32_t* edges, int64_t E, int64_t row0, ull* counts, ull* first_nan) {
  const int64_t total = rows * d;
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total; idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t f = idx % d;
    const float v = x[idx];
    if (drift::is_nan_f32(v)) {
      atomicMin(first_nan, ull(row0 * d + idx));
      continue;
    }
    const int64_t b = drift::count_lt(edges + f * E, E, drift::key_of(v));
    atomicAdd(counts + f * (E + 1) + b, 1ull);
  }
}

int grid_for(int64_t n, int sms) { return int(std::max<int64_t>(1, std::min<int64_t>((n + kThreads - 1) / kThreads, int64_t(sms) * 16))); }

int bits_for(int64_t v) {
  int b = 0;
  while (v > 0) {
    ++b;
    v >>= 1;
  }
  return b;
}

}  // namespace

void drift_features(const drift::FeatureArgs& a, drift::FeatureOut& o) {
  use_default_device();
  const int64_t d = a.features, n1 = a.ref_rows, n2 = a.cur_rows, E = a.edges;
  const int64_t mx = std::max(n1, n2);
  int sms = 1;
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
  std::size_t free_b = 0, total_b = 0;
  check(cudaMemGetInfo(&free_b, &total_b), "cudaMemGetInfo");
  // Per feature: raw floats + unsorted keys (max rows) + both sorted columns; CUB's scratch is
  // about one more key array.
  const int64_t per_feature = mx * 4 + mx * 8 + (n1 + n2) * 8 + mx * 8;
  const int64_t budget = std::min<int64_t>(int64_t(free_b) / 2, int64_t(4) << 30);
  int64_t g = std::max<int64_t>(1, std::min<int64_t>(d, budget / std::max<int64_t>(1, per_feature)));
  g = std::min<int64_t>(g, std::max<int64_t>(1, int64_t(INT32_MAX) / std::max<int64_t>(1, mx)));  // CUB item counts
  g = std::min<int64_t>(g, 65535);  // gridDim.y of the KS kernel

  DeviceBuffer<float> raw(std::size_t(g * mx));
  DeviceBuffer<ull> keys(std::size_t(g * mx)), sref(std::size_t(g * n1)), scur(std::size_t(std::max<int64_t>(1, g * n2)));
  DeviceBuffer<ull> bad(2);
  const ull none[2] = {ULLONG_MAX, ULLONG_MAX};
  bad.upload(none, 2);
  DeviceBuffer<long long> plus{std::size_t(g)}, minus{std::size_t(g)};
  DeviceBuffer<int64_t> index(std::size_t(std::max<int64_t>(1, E)));
  if (E > 0) index.upload(a.edge_index, std::size_t(E));
  DeviceBuffer<uint32_t> ekey(std::size_t(std::max<int64_t>(1, g * E)));
  DeviceBuffer<long long> rle(std::size_t(std::max<int64_t>(1, g * E))), cle(std::size_t(std::max<int64_t>(1, g * E)));
  std::size_t temp_bytes = 0;
  check(cub::DeviceRadixSort::SortKeys(nullptr, temp_bytes, keys.get(), sref.get(), int(g * mx), 0, 32 + bits_for(g - 1)), "cub sort size");
  DeviceBuffer<uint8_t> temp(std::max<std::size_t>(1, temp_bytes));
  std::vector<long long> hp(static_cast<std::size_t>(g)), hm(static_cast<std::size_t>(g)), hr(static_cast<std::size_t>(g * E)), hc(static_cast<std::size_t>(g * E));

  auto sort_block = [&](const float* host, int64_t rows, int64_t f0, int64_t gg, ull* sorted, ull* first_nan) {
    check(cudaMemcpy2D(raw.get(), std::size_t(gg) * sizeof(float), host + f0, std::size_t(d) * sizeof(float), std::size_t(gg) * sizeof(float),
                       std::size_t(rows), cudaMemcpyHostToDevice),
          "cudaMemcpy2D H2D");
    keys_kernel<<<grid_for(rows * gg, sms), kThreads>>>(raw.get(), rows, gg, d, f0, keys.get(), first_nan);
    check(cudaGetLastError(), "drift keys kernel launch");
    std::size_t bytes = temp.size();
    check(cub::DeviceRadixSort::SortKeys(temp.get(), bytes, keys.get(), sorted, int(gg * rows), 0, 32 + bits_for(gg - 1)), "cub radix sort");
  };

  for (int64_t f0 = 0; f0 < d; f0 += g) {
    const int64_t gg = std::min(g, d - f0);
    sort_block(a.ref, n1, f0, gg, sref.get(), bad.get());
    if (n2 > 0) sort_block(a.cur, n2, f0, gg, scur.get(), bad.get() + 1);
    if (a.ks && n2 > 0) {
      check(cudaMemset(plus.get(), 0, std::size_t(gg) * sizeof(long long)), "cudaMemset");
      check(cudaMemset(minus.get(), 0, std::size_t(gg) * sizeof(long long)), "cudaMemset");
      const int bx = int(std::max<int64_t>(1, std::min<int64_t>((n1 + n2 + kThreads - 1) / kThreads, std::max<int64_t>(1, int64_t(sms) * 16 / gg))));
      ks_kernel<<<dim3(unsigned(bx), unsigned(gg)), kThreads>>>(sref.get(), n1, scur.get(), n2, plus.get(), minus.get());
      check(cudaGetLastError(), "drift KS kernel launch");
      plus.download(hp.data(), std::size_t(gg));
      minus.download(hm.data(), std::size_t(gg));
      for (int64_t k = 0; k < gg; ++k) {
        o.d_plus[f0 + k] = hp[k];
        o.d_minus[f0 + k] = hm[k];
      }
    }
    if (E > 0) {
      edges_kernel<<<grid_for(gg * E, sms), kThreads>>>(sref.get(), n1, scur.get(), n2, gg, index.get(), E, ekey.get(), rle.get(), cle.get());
      check(cudaGetLastError(), "drift cut-point kernel launch");
      check(cudaMemcpy(o.edge_key + f0 * E, ekey.get(), std::size_t(gg * E) * sizeof(uint32_t), cudaMemcpyDeviceToHost), "cudaMemcpy D2H");
      rle.download(hr.data(), std::size_t(gg * E));
      cle.download(hc.data(), std::size_t(gg * E));
      for (int64_t t = 0; t < gg * E; ++t) {
        o.ref_le[f0 * E + t] = hr[t];
        if (o.cur_le) o.cur_le[f0 * E + t] = hc[t];
      }
    }
  }
  check(cudaDeviceSynchronize(), "drift kernels");
  ull hb[2];
  bad.download(hb, 2);
  o.bad_ref = hb[0] == ULLONG_MAX ? -1 : int64_t(hb[0]);
  o.bad_cur = hb[1] == ULLONG_MAX ? -1 : int64_t(hb[1]);
}

int64_t drift_bin_counts(const drift::BinArgs& a, uint64_t* counts) {
  use_default_device();
  const int64_t d = a.features, E = a.edges, cells = d * (E + 1);
  int sms = 1;
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
  const int64_t chunk_rows = std::max<int64_t>(1, std::min<int64_t>(a.rows, kChunkElements / d));
  DeviceBuffer<float> x(std::size_t(chunk_rows * d));
  DeviceBuffer<uint32_t> edges(std::size_t(std::max<int64_t>(1, d * E)));
  if (E > 0) edges.upload(a.edge_key, std::size_t(d * E));
  DeviceBuffer<ull> c{std::size_t(cells)}, bad{1};
  c.zero(std::size_t(cells));
  const ull none = ULLONG_MAX;
  bad.upload(&none, 1);
  for (int64_t r0 = 0; r0 < a.rows; r0 += chunk_rows) {
    const int64_t n = std::min(chunk_rows, a.rows - r0);
    x.upload(a.x + r0 * d, std::size_t(n * d));
    bins_kernel<<<grid_for(n * d, sms), kThreads>>>(x.get(), n, d, edges.get(), E, r0, c.get(), bad.get());
    check(cudaGetLastError(), "drift histogram kernel launch");
  }
  check(cudaDeviceSynchronize(), "drift histogram kernel");
  ull first = 0;
  bad.download(&first, 1);
  if (first != ULLONG_MAX) return int64_t(first);
  std::vector<ull> h(static_cast<std::size_t>(cells));
  c.download(h.data(), std::size_t(cells));
  for (int64_t k = 0; k < cells; ++k) counts[k] += h[k];
  return -1;
}

}  // namespace calmoe::cuda
