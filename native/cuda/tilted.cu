// CUDA backend of the tilted weights. Each sum is core/tilted.h's tree of runs: a warp takes one
// run of kRun losses (or, on the levels above, of kRun partials), its lanes load the run and
// compute its terms side by side into shared memory, and lane 0 adds them in order, so the sums
// have the CPU backend's bits (the max is the first largest, in any tree). One thread walking its
// run alone would wait on every load and every exp in turn.
#include <algorithm>

#include "cuda/runtime.cuh"
#include "cuda/tilted.cuh"

namespace calmoe::cuda {
namespace tilted {
namespace {

using tilt::kRun;
constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;  // runs per block

__device__ __forceinline__ int64_t size_of(const Losses& in) { return in.count ? int64_t(*in.count) : in.n; }
__device__ __forceinline__ int64_t index_of(const Losses& in, int64_t i) { return in.idx ? int64_t(in.idx[i]) : i; }
// std::max's rule (the first of equal values stays), as the CPU backend's loop
__device__ __forceinline__ double keep_max(double a, double b) { return a < b ? b : a; }

// Up to three arrays of partials reduced side by side (the second pass has three sums).
struct Lanes {
  double* p[3] = {nullptr, nullptr, nullptr};
  // by a selection, not an index: a kernel parameter indexed at run time is copied to the stack
  __device__ __forceinline__ double* at(int a) const { return a == 0 ? p[0] : (a == 1 ? p[1] : p[2]); }
};

int blocks_for(int64_t threads) { return int((threads + kThreads - 1) / kThreads); }
int blocks_for_runs(int64_t runs) { return int((runs + kWarps - 1) / kWarps); }

// Level 1, first pass: per run, max_i eta l_i and sum_i l_i.
__global__ void runs_max_sum(Losses in, double eta, int64_t runs, Lanes out) {
  __shared__ float sl[kWarps][kRun];
  const int w = int(threadIdx.x) / 32, lane = int(threadIdx.x) % 32;
  const int64_t r = int64_t(blockIdx.x) * kWarps + w;
  if (r >= runs) return;  // the whole warp
  const int64_t b = r * kRun, len = max(int64_t(0), min(size_of(in) - b, int64_t(kRun)));
  for (int64_t j = lane; j < len; j += 32) sl[w][j] = in.l[index_of(in, b + j)];
  __syncwarp();
  if (lane != 0) return;
  double mx = -INFINITY, s = 0;
  for (int64_t j = 0; j < len; ++j) {
    mx = keep_max(mx, tilt::scaled(sl[w][j], eta));
    s += double(sl[w][j]);
  }
  out.p[0][r] = mx;
  out.p[1][r] = s;
}

// Level 1, second pass: per run, sum e_i, sum e_i l_i, sum e_i^2 (the lanes compute the e_i).
__global__ void runs_exp(Losses in, double eta, const tilt::Sums* sums, int64_t runs, Lanes out) {
  __shared__ double su[kWarps][kRun];
  __shared__ float sl[kWarps][kRun];
  const int w = int(threadIdx.x) / 32, lane = int(threadIdx.x) % 32;
  const int64_t r = int64_t(blockIdx.x) * kWarps + w;
  if (r >= runs) return;
  const double mx = sums->max_scaled;
  const int64_t b = r * kRun, len = max(int64_t(0), min(size_of(in) - b, int64_t(kRun)));
  for (int64_t j = lane; j < len; j += 32) {
    const float l = in.l[index_of(in, b + j)];
    sl[w][j] = l;
    su[w][j] = tilt::unnormalised(l, eta, mx);
  }
  __syncwarp();
  if (lane != 0) return;
  double s = 0, el = 0, ee = 0;
  for (int64_t j = 0; j < len; ++j) {
    const double u = su[w][j];
    s += u;
    el += u * double(sl[w][j]);
    ee += u * u;
  }
  out.p[0][r] = s;
  out.p[1][r] = el;
  out.p[2][r] = ee;
}

// A level above the runs: out[g] = in[g kRun .. (g + 1) kRun) in order, per array (blockIdx.y);
// array 0 is a max when max0.
__global__ void fold_level(Lanes in, int64_t len, Lanes out, int64_t len_out, bool max0) {
  __shared__ double sv[kWarps][kRun];
  const int w = int(threadIdx.x) / 32, lane = int(threadIdx.x) % 32;
  const int64_t g = int64_t(blockIdx.x) * kWarps + w;
  if (g >= len_out) return;
  const int a = int(blockIdx.y);
  const double* v = in.at(a);
  const int64_t b = g * kRun, n = min(len - b, int64_t(kRun));
  for (int64_t j = lane; j < n; j += 32) sv[w][j] = v[b + j];
  __syncwarp();
  if (lane != 0) return;
  const bool is_max = max0 && a == 0;
  double acc = is_max ? -INFINITY : 0.0;
  for (int64_t j = 0; j < n; ++j) acc = is_max ? keep_max(acc, sv[w][j]) : acc + sv[w][j];
  out.at(a)[g] = acc;
}

__global__ void write_weights(Losses in, double eta, TiltGradient g, const tilt::Sums* sums, float* w, float* c, bool add) {
  const int64_t m = size_of(in);
  const tilt::Sums s = *sums;
  const double robust = tilt::robust_loss(s);
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < m; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t o = index_of(in, i);
    const float l = in.l[o];
    const double wi = tilt::unnormalised(l, eta, s.max_scaled) / s.s;
    if (w) w[o] = float(wi);
    if (c) {
      const float ci = float(tilt::coefficient(wi, l, eta, robust, g));
      c[o] = add ? c[o] + ci : ci;
    }
  }
}

// Level 1 written into `first` (length runs), then folded level by level (ping-pong between
// `first` and `second`) until one value per array is left, written to `last`.
template <class Level1>
void reduce(int arrays, int64_t runs, Lanes first, Lanes second, Lanes last, bool max0, cudaStream_t stream, Level1&& level1) {
  if (runs <= 1) {
    level1(last);
    return;
  }
  level1(first);
  Lanes from = first, to = second;
  for (int64_t len = runs; len > 1;) {
    const int64_t len_out = (len + kRun - 1) / kRun;
    const Lanes dst = len_out == 1 ? last : to;
    fold_level<<<dim3(unsigned(blocks_for_runs(len_out)), unsigned(arrays)), kThreads, 0, stream>>>(from, len, dst, len_out, max0);
    check(cudaGetLastError(), "tilted fold launch");
    std::swap(from, to);
    len = len_out;
  }
}

}  // namespace

int64_t workspace(int64_t n) {
  const int64_t runs = (std::max<int64_t>(n, 1) + kRun - 1) / kRun;
  return 3 * (runs + (runs + kRun - 1) / kRun);
}

void queue_sums(const Losses& in, double eta, tilt::Sums* sums, double* ws, cudaStream_t stream) {
  const int64_t runs = (std::max<int64_t>(in.n, 1) + kRun - 1) / kRun, runs2 = (runs + kRun - 1) / kRun;
  Lanes first, second, last;
  for (int a = 0; a < 3; ++a) {
    first.p[a] = ws + a * runs;
    second.p[a] = ws + 3 * runs + a * runs2;
  }
  last.p[0] = &sums->max_scaled;
  last.p[1] = &sums->sum_l;
  reduce(2, runs, first, second, last, true, stream, [&](Lanes out) {
    runs_max_sum<<<blocks_for_runs(runs), kThreads, 0, stream>>>(in, eta, runs, out);
    check(cudaGetLastError(), "tilted reduce launch");
  });
  last.p[0] = &sums->s;
  last.p[1] = &sums->s_el;
  last.p[2] = &sums->s_ee;
  reduce(3, runs, first, second, last, false, stream, [&](Lanes out) {
    runs_exp<<<blocks_for_runs(runs), kThreads, 0, stream>>>(in, eta, sums, runs, out);
    check(cudaGetLastError(), "tilted reduce launch");
  });
}

void queue_write(const Losses& in, double eta, TiltGradient g, const tilt::Sums* sums, float* weights, float* coef, bool add,
                 cudaStream_t stream) {
  const int blocks = int(std::min<int64_t>(blocks_for(std::max<int64_t>(in.n, 1)), 4096));
  write_weights<<<blocks, kThreads, 0, stream>>>(in, eta, g, sums, weights, coef, add);
  check(cudaGetLastError(), "tilted write launch");
}

}  // namespace tilted

// The public API's entry point (core/tilted.cpp): the losses copied in, the work queued on the
// default stream, the sums and the weights copied back.
tilt::Sums tilted_run(const float* l, int64_t n, double eta, TiltGradient g, float* w, float* c) {
  use_default_device();
  DeviceBuffer<float> d_l{std::size_t(n)}, d_w{w ? std::size_t(n) : 0}, d_c{c ? std::size_t(n) : 0};
  DeviceBuffer<double> ws{std::size_t(tilted::workspace(n))};
  DeviceBuffer<tilt::Sums> d_sums{1};
  d_l.upload(l, std::size_t(n));
  tilted::Losses in;
  in.l = d_l.get();
  in.n = n;
  tilted::queue_sums(in, eta, d_sums.get(), ws.get(), nullptr);
  if (w || c) tilted::queue_write(in, eta, g, d_sums.get(), w ? d_w.get() : nullptr, c ? d_c.get() : nullptr, false, nullptr);
  tilt::Sums r;
  d_sums.download(&r, 1);
  if (w) d_w.download(w, std::size_t(n));
  if (c) d_c.download(c, std::size_t(n));
  return r;
}

}  // namespace calmoe::cuda
