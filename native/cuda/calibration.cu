// CUDA backend of the calibration histogram: one pass over the rows, a thread per row with the
// shared per-row math, integer sums only (exact and order-independent), flushed to one global
// histogram; inputs streamed in chunks. Rows of up to 16 classes are first staged through shared
// memory a tile at a time with coalesced 16-byte copies (a thread reading its own 40-byte row would
// touch a new cache line per column), through a cp.async ring of kTileStages tiles, so the next
// tiles stream in while one is evaluated (a block that loaded, then computed, kept too few bytes
// in flight: 26% of the H200's bandwidth).
// Where the rows go: with at most 32 cells (the usual ECE: one histogram of <= 32 bins), lane c of
// each warp owns cell c in registers and a warp adds its 32 rows with one ballot and three
// reductions per distinct cell present: no atomics in the loop. (Per-row shared atomics, which
// serialise when many rows of a warp share a bin, ran at about a tenth of the H200's bandwidth.)
// Otherwise: a shared-memory histogram per block (Classwise; <= 1024 cells) or global atomics.
#include <cuda_pipeline.h>

#include <algorithm>
#include <climits>

#include "core/calibration.h"
#include "cuda/runtime.cuh"

namespace calmoe::cuda {
namespace {

using namespace calib;
using ull = unsigned long long;

constexpr int kThreads = 256;
constexpr int kMaxSharedCells = 1024;                 // groups x bins: 1024 x 4 words x 8 B = 32 KB
constexpr int kMaxTileCols = 16;                      // staged tiles: kThreads rows x <= 16 floats (<= 16 KB)
constexpr int kTileStages = 3;                        // tiles in the ring: one evaluated, two in flight
constexpr int64_t kChunkElements = int64_t(1) << 26;  // 256 MB of float scores per chunk

__device__ __forceinline__ void add_row_to_bin(ull* bins, int cell, float conf, bool positive) {
  ull* b = bins + int64_t(cell) * kBinWords;
  atomicAdd(b, 1ull);
  if (positive) atomicAdd(b + 1, 1ull);
  atomic_add_u128(b + 2, b + 3, to_fixed(conf, kConfFracBits));
}

// Floats of one staged tile of kThreads rows of `cols` scores: a multiple of 4, so every slot of the
// ring starts on a 16-byte boundary.
__host__ __device__ __forceinline__ int64_t tile_floats(int64_t cols) { return (int64_t(kThreads) * cols + 3) / 4 * 4; }

struct ThreadTotals {
  ull rows = 0, correct = 0;
  uint64_t nll_lo = 0, nll_hi = 0, br_lo = 0, br_hi = 0;  // 128-bit fixed-point sums (core/fixed_point.h)
};

// What a non-Classwise row adds to the histogram: cell -1 for none (no row, or a bad one).
struct CellAdd {
  int cell = -1;
  float conf = 0;
  bool positive = false;
};

// Evaluates row i (of the args' rows; TopLabel/Classwise scores read at `row`): totals and per-row
// outputs; Classwise rows go straight into `bins` (C cells each), other rows are returned for the
// caller to add.
__device__ __forceinline__ CellAdd take_row(const KernelArgs& a, int64_t i, const float* row, int64_t row0, ull* bins, ull* g_first_bad,
                                            ThreadTotals& t) {
  CellAdd out;
  const RowOut r = eval_row_at(a, i, row);
  if (r.issue != kOk) {
    atomicMin(g_first_bad, ull(row0 + i));
    return out;
  }
  t.rows += 1;
  t.correct += r.correct ? 1 : 0;
  if (a.extras) {
    u128_add(t.nll_lo, t.nll_hi, to_fixed(r.nll, kNllFracBits));
    u128_add(t.br_lo, t.br_hi, to_fixed(r.brier, kBrierFracBits));
  }
  if (a.out_conf) {
    a.out_conf[i] = r.conf;
    a.out_positive[i] = r.positive ? 1 : 0;
  }
  if (a.kind == CalibKind::Classwise) {
    const int M = a.bins;
    const int32_t y = a.labels[i];
    for (int64_t j = 0; j < a.cols; ++j) {
      const float pj = class_prob(row, j, a.score_kind, r);
      add_row_to_bin(bins, int(j) * M + bin_of(pj, M, a.left_closed), pj, j == y);
    }
    return out;
  }
  out.cell = cell_of(a, i, r.conf);
  out.conf = r.conf;
  out.positive = r.positive;
  return out;
}

// Sum over the warp's lanes (full mask).
__device__ __forceinline__ unsigned warp_sum(unsigned v) {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
  return __reduce_add_sync(0xffffffffu, v);
#else
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
#endif
}

// The cells a lane owns when a warp keeps the histogram in registers (lane c: cell c). The
// confidence sum is kept as three sums of 22-bit pieces of the 64-bit fixed-point values: a piece
// summed over 32 lanes fits in 32 bits, and the sums are joined exactly at the end.
struct LaneCell {
  ull count = 0, positives = 0, piece[3] = {0, 0, 0};

  // Every lane of the warp calls this with its row's contribution (converged, full mask).
  __device__ __forceinline__ void warp_add(const CellAdd& c) {
    const unsigned lane = threadIdx.x & 31u;
    const uint64_t v = c.cell >= 0 ? to_fixed(c.conf, kConfFracBits) : 0;
    const unsigned pos = __ballot_sync(0xffffffffu, c.cell >= 0 && c.positive);
    unsigned pending = __ballot_sync(0xffffffffu, c.cell >= 0);
    while (pending) {  // once per distinct cell among the warp's rows (warp-uniform)
      const int cell = __shfl_sync(0xffffffffu, c.cell, __ffs(pending) - 1);
      const bool mine = c.cell == cell;
      const unsigned m = __ballot_sync(0xffffffffu, mine);
      const unsigned p0 = warp_sum(mine ? unsigned(v & 0x3fffffu) : 0u);
      const unsigned p1 = warp_sum(mine ? unsigned((v >> 22) & 0x3fffffu) : 0u);
      const unsigned p2 = warp_sum(mine ? unsigned(v >> 44) : 0u);
      if (lane == unsigned(cell)) {
        count += __popc(m);
        positives += __popc(m & pos);
        piece[0] += p0;
        piece[1] += p1;
        piece[2] += p2;
      }
      pending &= ~m;
    }
  }

  // Adds the lane's cell into a histogram (shared or global): the pieces joined as 128 bits.
  __device__ __forceinline__ void flush(ull* bins, int cell) const {
    if (count == 0) return;
    ull* b = bins + int64_t(cell) * kBinWords;
    uint64_t lo = piece[0], hi = 0;
    u128_add(lo, hi, piece[1] << 22, piece[1] >> 42);
    u128_add(lo, hi, piece[2] << 44, piece[2] >> 20);
    atomicAdd(b, count);
    atomicAdd(b + 1, positives);
    atomic_add_u128(b + 2, b + 3, lo, hi);
  }
};

// kWarpCells: non-Classwise with <= 32 cells, lane c of each warp owns cell c (LaneCell); else
// kShared: histogram in shared memory (cells <= kMaxSharedCells), else global atomics. kTiled:
// TopLabel/Classwise rows of at most kMaxTileCols classes staged through shared memory (dynamic
// shared memory after the histogram: kTileStages tiles of tile_floats(cols)). Loops are warp-uniform
// (a lane past the last row takes part with no row) so that warps stay converged.
template <bool kWarpCells, bool kShared, bool kTiled>
__global__ void __launch_bounds__(kThreads, 4) calib_kernel(KernelArgs a, int64_t row0, ull* g_state, ull* g_first_bad) {
  extern __shared__ __align__(16) ull s_dyn[];
  __shared__ ull s_tot[kHeaderWords];
  const int64_t cells = int64_t(a.groups) * a.bins;
  ull* bins = kShared ? s_dyn : g_state + kHeaderWords;
  float* tile = reinterpret_cast<float*>(s_dyn + (kShared ? cells * kBinWords : 0));
  if (threadIdx.x < kHeaderWords) s_tot[threadIdx.x] = 0;
  if (kShared) {
    for (int64_t k = threadIdx.x; k < cells * kBinWords; k += blockDim.x) s_dyn[k] = 0;
  }
  __syncthreads();

  ThreadTotals t;
  LaneCell mine;
  auto add = [&](const CellAdd& c) {
    if (kWarpCells) mine.warp_add(c);
    else if (c.cell >= 0) add_row_to_bin(bins, c.cell, c.conf, c.positive);
  };
  if (kTiled) {
    // tiles of blockDim.x rows, block-strided (tile `it` of this block: rows first + it * step ..);
    // every thread of the block runs every iteration
    const int64_t C = a.cols, stage = tile_floats(C);
    const int64_t first = int64_t(blockIdx.x) * blockDim.x, step = int64_t(gridDim.x) * blockDim.x;
    const int64_t tiles = first < a.rows ? (a.rows - first + step - 1) / step : 0;
    auto issue = [&](int64_t it) {  // tile `it` into ring slot it % kTileStages
      const int64_t base = first + it * step, floats = min(int64_t(blockDim.x), a.rows - base) * C;
      const float* src = a.scores + base * C;
      float* dst = tile + (it % kTileStages) * stage;
      // 16-byte copies when the tile starts on a 16-byte boundary (the chunk buffer does; tiles of
      // blockDim.x rows keep it), then the tail
      const int64_t vec = (reinterpret_cast<uintptr_t>(src) & 15u) == 0 ? floats / 4 : 0;
      for (int64_t k = threadIdx.x; k < vec; k += blockDim.x) __pipeline_memcpy_async(dst + 4 * k, src + 4 * k, 16);
      for (int64_t k = vec * 4 + threadIdx.x; k < floats; k += blockDim.x) __pipeline_memcpy_async(dst + k, src + k, 4);
    };
    // kTileStages - 1 tiles in flight before the first is evaluated; one batch committed per tile
    // (empty past the end) so that wait_prior counts tiles
    for (int s = 0; s < kTileStages - 1; ++s) {
      if (s < tiles) issue(s);
      __pipeline_commit();
    }
    for (int64_t it = 0; it < tiles; ++it) {
      __pipeline_wait_prior(kTileStages - 2);  // this thread's copies of tile `it` have landed
      __syncthreads();                         // everyone's have; the slot of tile it - 1 is free
      if (it + kTileStages - 1 < tiles) issue(it + kTileStages - 1);
      __pipeline_commit();
      const int64_t base = first + it * step, n = min(int64_t(blockDim.x), a.rows - base);
      CellAdd c;
      if (threadIdx.x < n) c = take_row(a, base + threadIdx.x, tile + (it % kTileStages) * stage + threadIdx.x * C, row0, bins, g_first_bad, t);
      add(c);
    }
    __pipeline_wait_prior(0);
  } else {
    const int64_t stride = int64_t(gridDim.x) * blockDim.x;
    const bool matrix = a.kind == CalibKind::TopLabel || a.kind == CalibKind::Classwise;
    for (int64_t i0 = int64_t(blockIdx.x) * blockDim.x + (threadIdx.x & ~31u); i0 < a.rows; i0 += stride) {
      const int64_t i = i0 + (threadIdx.x & 31u);
      CellAdd c;
      if (i < a.rows) c = take_row(a, i, matrix ? a.scores + i * a.cols : nullptr, row0, bins, g_first_bad, t);
      add(c);
    }
  }
  if (kWarpCells && (threadIdx.x & 31u) < cells) mine.flush(bins, int(threadIdx.x & 31u));
  atomicAdd(&s_tot[kWRows], t.rows);
  atomicAdd(&s_tot[kWCorrect], t.correct);
  atomic_add_u128(&s_tot[kWNllLo], &s_tot[kWNllHi], t.nll_lo, t.nll_hi);
  atomic_add_u128(&s_tot[kWBrierLo], &s_tot[kWBrierHi], t.br_lo, t.br_hi);
  __syncthreads();
  if (threadIdx.x == 0) {
    atomicAdd(&g_state[kWRows], s_tot[kWRows]);
    atomicAdd(&g_state[kWCorrect], s_tot[kWCorrect]);
    atomic_add_u128(&g_state[kWNllLo], &g_state[kWNllHi], s_tot[kWNllLo], s_tot[kWNllHi]);
    atomic_add_u128(&g_state[kWBrierLo], &g_state[kWBrierHi], s_tot[kWBrierLo], s_tot[kWBrierHi]);
  }
  if (kShared) {
    for (int64_t c = threadIdx.x; c < cells; c += blockDim.x) {
      const ull* s = s_dyn + c * kBinWords;
      if (s[0] == 0) continue;
      ull* g = g_state + kHeaderWords + c * kBinWords;
      atomicAdd(g, s[0]);
      atomicAdd(g + 1, s[1]);
      atomic_add_u128(g + 2, g + 3, s[2], s[3]);
    }
  }
}

// One pass of the kernel over rows already on the device (args hold device pointers).
struct Launch {
  bool warp_cells = false, shared = false, tiled = false;
  std::size_t shmem = 0;
  int sms = 1;

  explicit Launch(const KernelArgs& a) {
    const int64_t cells = int64_t(a.groups) * a.bins;
    shared = cells <= kMaxSharedCells;
    warp_cells = shared && cells <= 32 && a.kind != CalibKind::Classwise;
    tiled = (a.kind == CalibKind::TopLabel || a.kind == CalibKind::Classwise) && a.cols <= kMaxTileCols;
    shmem = (shared ? std::size_t(cells) * kBinWords * sizeof(ull) : 0) + (tiled ? std::size_t(kTileStages * tile_floats(a.cols)) * sizeof(float) : 0);
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
    if (shmem > 48 * 1024) {  // a large shared histogram, or a ring of wide tiles (<= 48 KB) after a histogram
      if (warp_cells && tiled) set_shmem(calib_kernel<true, true, true>);
      else if (shared && tiled) set_shmem(calib_kernel<false, true, true>);
      else if (shared) set_shmem(calib_kernel<false, true, false>);
      else if (tiled) set_shmem(calib_kernel<false, false, true>);
    }
  }
  template <class Kernel>
  void set_shmem(Kernel k) const {
    check(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, int(shmem)), "cudaFuncSetAttribute");
  }
  void run(const KernelArgs& d, int64_t row0, ull* state, ull* first_bad) const {
    const int blocks = int(std::max<int64_t>(1, std::min<int64_t>((d.rows + kThreads - 1) / kThreads, int64_t(sms) * 8)));
    if (warp_cells && tiled) calib_kernel<true, true, true><<<blocks, kThreads, shmem>>>(d, row0, state, first_bad);
    else if (warp_cells) calib_kernel<true, true, false><<<blocks, kThreads, shmem>>>(d, row0, state, first_bad);
    else if (shared && tiled) calib_kernel<false, true, true><<<blocks, kThreads, shmem>>>(d, row0, state, first_bad);
    else if (shared) calib_kernel<false, true, false><<<blocks, kThreads, shmem>>>(d, row0, state, first_bad);
    else if (tiled) calib_kernel<false, false, true><<<blocks, kThreads, shmem>>>(d, row0, state, first_bad);
    else calib_kernel<false, false, false><<<blocks, kThreads, shmem>>>(d, row0, state, first_bad);
    check(cudaGetLastError(), "calibration kernel launch");
  }
};

}  // namespace

int64_t calib_accumulate(const KernelArgs& a, uint64_t* acc) {
  use_default_device();
  const bool matrix = a.kind == CalibKind::TopLabel || a.kind == CalibKind::Classwise;
  const int64_t cols = matrix ? a.cols : 1;
  const int64_t chunk_rows = std::max<int64_t>(1, std::min<int64_t>(a.rows, kChunkElements / cols));
  const std::size_t n_words = state_words(a.bins, a.groups);

  DeviceBuffer<float> d_scores(static_cast<std::size_t>(chunk_rows * cols));
  DeviceBuffer<int32_t> d_labels(a.labels ? std::size_t(chunk_rows) : 0);
  DeviceBuffer<uint8_t> d_correct(a.correct ? std::size_t(chunk_rows) : 0);
  DeviceBuffer<int32_t> d_groups(a.group_ids ? std::size_t(chunk_rows) : 0);
  DeviceBuffer<float> d_out_conf(a.out_conf ? std::size_t(chunk_rows) : 0);
  DeviceBuffer<uint8_t> d_out_pos(a.out_conf ? std::size_t(chunk_rows) : 0);
  DeviceBuffer<ull> d_state(n_words), d_first_bad(1);
  d_state.zero(n_words);
  const ull none = ULLONG_MAX;
  d_first_bad.upload(&none, 1);

  const Launch launch(a);

  for (int64_t row0 = 0; row0 < a.rows; row0 += chunk_rows) {
    const int64_t n = std::min(chunk_rows, a.rows - row0);
    KernelArgs d = a;
    d.rows = n;
    d_scores.upload(a.scores + row0 * cols, std::size_t(n * cols));
    d.scores = d_scores.get();
    if (a.labels) { d_labels.upload(a.labels + row0, std::size_t(n)); d.labels = d_labels.get(); }
    if (a.correct) { d_correct.upload(a.correct + row0, std::size_t(n)); d.correct = d_correct.get(); }
    if (a.group_ids) { d_groups.upload(a.group_ids + row0, std::size_t(n)); d.group_ids = d_groups.get(); }
    if (a.out_conf) { d.out_conf = d_out_conf.get(); d.out_positive = d_out_pos.get(); }
    launch.run(d, row0, d_state.get(), d_first_bad.get());
    if (a.out_conf) {
      check(cudaMemcpy(a.out_conf + row0, d_out_conf.get(), n * sizeof(float), cudaMemcpyDeviceToHost), "cudaMemcpy D2H");
      check(cudaMemcpy(a.out_positive + row0, d_out_pos.get(), n, cudaMemcpyDeviceToHost), "cudaMemcpy D2H");
    }
  }
  check(cudaDeviceSynchronize(), "calibration kernel");
  ull first_bad = 0;
  d_first_bad.download(&first_bad, 1);
  if (first_bad != ULLONG_MAX) return int64_t(first_bad);
  d_state.download(reinterpret_cast<ull*>(acc), n_words);
  return -1;
}

double calib_kernel_seconds(const KernelArgs& a, int repeat) {
  use_default_device();
  const int64_t cols = (a.kind == CalibKind::TopLabel || a.kind == CalibKind::Classwise) ? a.cols : 1;
  const std::size_t n_words = state_words(a.bins, a.groups);
  DeviceBuffer<float> d_scores(static_cast<std::size_t>(a.rows * cols));
  DeviceBuffer<int32_t> d_labels(static_cast<std::size_t>(a.rows));
  DeviceBuffer<ull> d_state(n_words), d_first_bad(1);
  d_scores.upload(a.scores, std::size_t(a.rows * cols));
  d_labels.upload(a.labels, std::size_t(a.rows));
  KernelArgs d = a;
  d.scores = d_scores.get();
  d.labels = d_labels.get();
  d.correct = nullptr;
  d.group_ids = nullptr;
  d.out_conf = nullptr;
  d.out_positive = nullptr;
  const Launch launch(d);
  return best_event_seconds(
      repeat, [&] { launch.run(d, 0, d_state.get(), d_first_bad.get()); },
      [&] {  // a fresh state for every pass
        d_state.zero(n_words);
        const ull none = ULLONG_MAX;
        d_first_bad.upload(&none, 1);
      });
}

}  // namespace calmoe::cuda
