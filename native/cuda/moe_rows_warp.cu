// Warp-per-row forms of the MoE engine's per-row kernels (moe_rows.cuh): the 32 lanes of a warp
// share one row, each lane owning classes j = 32 c + lane, so every load and store of a row's
// class vectors is coalesced and a batch of B rows runs as B warps (one thread per row gave a
// W1L batch 4 warps per SM, each walking 400-byte rows alone).
//
// The bits are the CPU engine's (core/moe_math.h, core/moe_row_bodies.h): element-wise work is
// the same expression per element; every order-dependent reduction keeps the CPU's order:
//   - the softmax's sum is moe::softmax's Sum8 (slot k adds j = k, k + 8, ... ascending): per
//     32-class chunk, slot k takes the exponentials of lanes k, k + 8, k + 16, k + 24 by shuffle;
//   - the mixture, the loss sums over a row's experts and the router's dot products are chains in
//     expert (or router-column) order that every lane runs alike on broadcast values;
//   - the disagreement's sum over classes is one fma chain in class order fed by shuffles;
//   - max and argmax are order-free (ties to the lower index, NaN handled as the CPU's loop).
// The routing and the fused forward keep a row's vector in registers (8 values per lane at most:
// kMaxWarpWidth experts or classes); wider rows use moe_rows.cu's one-thread-per-row kernels.
#include <cmath>
#include <type_traits>

#include "core/moe_math.h"
#include "cuda/moe_rows.cuh"
#include "cuda/moe_rows_warp.cuh"
#include "cuda/runtime.cuh"

namespace calmoe::cuda::moe_rows {
namespace {

constexpr unsigned kFull = 0xffffffffu;
constexpr int kWarpsPerBlock = 4;

__device__ __forceinline__ int lane_id() { return int(threadIdx.x & 31u); }
__device__ __forceinline__ int64_t warp_row() { return int64_t(blockIdx.x) * kWarpsPerBlock + int64_t(threadIdx.x >> 5); }

// Max over the warp; NaN-free lanes win (fmaxf), which is what the CPU's `v > m ? v : m` gives a
// softmax: a NaN anywhere makes every output NaN either way.
__device__ __forceinline__ float warp_max(float m) {
  for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(kFull, m, o));
  return m;
}

// The CPU's scan `arg = first; for each later candidate j: if (v[j] > v[arg]) arg = j` over
// values spread one per lane per chunk: the lowest index of the largest non-NaN candidate, or
// `first` when v[first] is NaN (nothing compares greater than it). (best_v, best_j): this lane's
// best non-NaN candidate (best_j < 0: none); v_first: v[first].
__device__ __forceinline__ int64_t warp_argmax(float best_v, int64_t best_j, float v_first, int64_t first) {
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(kFull, best_v, o);
    const int64_t oj = __shfl_xor_sync(kFull, best_j, o);
    if (oj >= 0 && (best_j < 0 || ov > best_v || (ov == best_v && oj < best_j))) {
      best_v = ov;
      best_j = oj;
    }
  }
  return v_first != v_first ? first : best_j;  // v[first] is NaN
}

// The value lane (j % 32) holds in chunk j / 32, on every lane.
template <int NC>
__device__ __forceinline__ float warp_get(const float (&v)[NC], int64_t j) {
  float t = 0.0f;
#pragma unroll
  for (int c = 0; c < NC; ++c)
    if (c == int(j >> 5)) t = v[c];
  return __shfl_sync(kFull, t, int(j & 31));
}

// moe::softmax of a row of C <= 32 NC values held as v[c] = z[32 c + lane], in place, same bits.
template <int NC>
__device__ __forceinline__ void warp_softmax(float (&v)[NC], int64_t C, float inv_t) {
  const int lane = lane_id();
  float m = -INFINITY;
#pragma unroll
  for (int c = 0; c < NC; ++c)
    if (32 * c + lane < C) m = fmaxf(m, v[c]);
  m = warp_max(m);
  const int slot = lane & 7;  // this lane accumulates Sum8 slot lane % 8 (lanes 8 apart agree)
  float acc = 0.0f;
#pragma unroll
  for (int c = 0; c < NC; ++c) {
    const bool in = 32 * c + lane < C;
    const float e = in ? fm::exp_f32((v[c] - m) * inv_t) : 0.0f;
    if (in) v[c] = e;
#pragma unroll
    for (int q = 0; q < 4; ++q) {  // slot k's classes in this chunk, ascending: lanes k, k+8, k+16, k+24
      const float eq = __shfl_sync(kFull, e, slot + 8 * q);
      if (32 * c + slot + 8 * q < C) acc += eq;
    }
  }
  Sum8 s;
#pragma unroll
  for (int k = 0; k < 8; ++k) s.s[k] = __shfl_sync(kFull, acc, k);
  const float inv = 1.0f / s.total();
#pragma unroll
  for (int c = 0; c < NC; ++c) v[c] *= inv;
}

// The routing of row i (route_kernel, moe_rows.cu: moe::softmax of the router logits, the argmax,
// moe::select_experts) with the row's K <= 32 NC weights in registers. The `a` selected experts
// are found by `a` warp argmaxes over the experts not yet taken (select_experts' scan: the first
// candidate unless something beats it, so ties go to the lower index) and listed in ascending
// order from the taken bits (its insertion sort); the renormalisation sums them in that order.
template <int NC>
__global__ void __launch_bounds__(32 * kWarpsPerBlock) route_kernel(const Ctx c) {
  const int64_t i = warp_row();
  if (i >= c.n) return;
  const int lane = lane_id();
  const int64_t K = c.K, a = c.a;
  float v[NC];
#pragma unroll
  for (int q = 0; q < NC; ++q) v[q] = 32 * q + lane < K ? c.g[i * K + 32 * q + lane] : 0.0f;
  warp_softmax(v, K, c.inv_tau);
#pragma unroll
  for (int q = 0; q < NC; ++q)
    if (32 * q + lane < K) c.r[i * K + 32 * q + lane] = v[q];
  // the best of the experts whose bit in `skip` is clear (skip: per chunk, this lane's bit)
  auto best_of = [&](const bool (&skip)[NC]) {
    float bv = 0.0f;
    int64_t bj = -1, first = K;  // first: the lowest candidate (the scan's start)
#pragma unroll
    for (int q = 0; q < NC; ++q) {
      const int64_t k = 32 * q + lane;
      if (k >= K || skip[q]) continue;
      first = k < first ? k : first;
      if (v[q] == v[q] && (bj < 0 || v[q] > bv)) {
        bv = v[q];
        bj = k;
      }
    }
    for (int o = 16; o > 0; o >>= 1) {
      const int64_t f = __shfl_xor_sync(kFull, first, o);
      first = f < first ? f : first;
    }
    return warp_argmax(bv, bj, warp_get(v, first), first);
  };
  if (c.argmax) {
    bool none[NC];
#pragma unroll
    for (int q = 0; q < NC; ++q) none[q] = false;
    const int64_t arg = best_of(none);
    if (lane == 0) c.argmax[i] = int32_t(arg);
  }
  int32_t* sel = c.sel + i * a;
  float* gate = c.gate + i * a;
  if (c.routing == Routing::Soft) {  // every expert, gates r
#pragma unroll
    for (int q = 0; q < NC; ++q) {
      const int64_t k = 32 * q + lane;
      if (k < K) {
        sel[k] = int32_t(k);
        gate[k] = v[q];
      }
    }
    if (lane == 0) c.denom[i] = 1.0f;
    return;
  }
  bool taken[NC];
#pragma unroll
  for (int q = 0; q < NC; ++q) taken[q] = false;
  int64_t b = 0;
  for (int64_t s = 0; s < a; ++s) {
    b = best_of(taken);
#pragma unroll
    for (int q = 0; q < NC; ++q) taken[q] |= 32 * q + lane == b;
  }
  if (a == 1) {  // gate 1 (r / stopgrad r); the denominator is r of the expert
    const float rb = warp_get(v, b);
    if (lane == 0) {
      sel[0] = int32_t(b);
      gate[0] = 1.0f;
      c.denom[i] = rb;
    }
    return;
  }
  // ascending order: the taken bits, chunk by chunk; the denominator sums r over them in order
  float denom = 0.0f;
  int64_t before = 0;
#pragma unroll
  for (int q = 0; q < NC; ++q) {
    const unsigned bits = __ballot_sync(kFull, taken[q]);
    if (taken[q]) sel[before + __popc(bits & ((1u << lane) - 1u))] = int32_t(32 * q + lane);
    for (unsigned rest = bits; rest != 0; rest &= rest - 1) denom += __shfl_sync(kFull, v[q], __ffs(rest) - 1);
    before += __popc(bits);
  }
  before = 0;
#pragma unroll
  for (int q = 0; q < NC; ++q) {
    const unsigned bits = __ballot_sync(kFull, taken[q]);
    if (taken[q]) gate[before + __popc(bits & ((1u << lane) - 1u))] = v[q] / denom;
    before += __popc(bits);
  }
  if (lane == 0) c.denom[i] = denom;
}

// Row i's expert softmax (in place in p_expert), the mixture p and, when training (c.labels), the
// row's losses: expert_softmax_kernel + combine_kernel + losses_kernel (moe_rows.cu) in one pass.
template <int NC>
__global__ void __launch_bounds__(32 * kWarpsPerBlock) head_kernel(const Ctx c) {
  const int64_t i = warp_row();
  if (i >= c.n) return;  // whole warps leave together
  const int lane = lane_id();
  const int64_t a = c.a, C = c.C;
  const int32_t* ep = c.entry_pos + i * a;
  const float* gate = c.gate + i * a;
  const bool train = c.labels != nullptr;
  const int32_t y = train ? c.labels[i] : 0;
  int64_t best = 0;  // the argmax gate (hard training's prediction)
  if (c.hard_prediction)
    for (int64_t s = 1; s < a; ++s)
      if (gate[s] > gate[best]) best = s;
  float acc[NC];
#pragma unroll
  for (int q = 0; q < NC; ++q) acc[q] = 0.0f;
  float min_expert = moe::kMaxLoss, expected = 0.0f;
  for (int64_t s = 0; s < a; ++s) {
    const int64_t pos = ep[s];
    float* z = c.p_expert + pos * C;
    float v[NC];
#pragma unroll
    for (int q = 0; q < NC; ++q) v[q] = 32 * q + lane < C ? z[32 * q + lane] : 0.0f;
    warp_softmax(v, C, c.inv_temp[c.entry_k[pos]]);
#pragma unroll
    for (int q = 0; q < NC; ++q) {
      if (32 * q + lane < C) z[32 * q + lane] = v[q];
      if (c.hard_prediction) acc[q] = s == best ? v[q] : acc[q];
      else acc[q] = fm::fma_f32(gate[s], v[q], acc[q]);
    }
    if (train) {  // row_losses' loop over the row's experts, every lane alike
      const float lk = moe::loss_of(warp_get(v, y));
      if (lane == 0) c.entry_loss[pos] = lk;
      min_expert = lk < min_expert ? lk : min_expert;
      if (c.hard) expected = fm::fma_f32(gate[s], lk, expected);
    }
  }
#pragma unroll
  for (int q = 0; q < NC; ++q)
    if (32 * q + lane < C) c.p[i * C + 32 * q + lane] = acc[q];
  if (!train) return;

  // correct: argmax of p
  float bv = 0.0f;
  int64_t bj = -1;
#pragma unroll
  for (int q = 0; q < NC; ++q) {
    const int64_t j = 32 * q + lane;
    if (j < C && acc[q] == acc[q] && (bj < 0 || acc[q] > bv)) {  // not NaN
      bv = acc[q];
      bj = j;
    }
  }
  const int64_t arg = warp_argmax(bv, bj, __shfl_sync(kFull, acc[0], 0), 0);
  // disagreement: per expert, one fma chain over the classes in order (the row's p is final now)
  float dis = 0.0f;
  if (c.filtered) {
    for (int64_t s = 0; s < a; ++s) {
      const float* pk = c.p_expert + int64_t(ep[s]) * C;
      float sq = 0.0f;
#pragma unroll
      for (int q = 0; q < NC; ++q) {
        const float dq = 32 * q + lane < C ? pk[32 * q + lane] - acc[q] : 0.0f;
        for (int t = 0; t < 32; ++t) {
          const float dt = __shfl_sync(kFull, dq, t);
          if (32 * q + t < C) sq = fm::fma_f32(dt, dt, sq);
        }
      }
      dis = fm::fma_f32(gate[s], sq, dis);
    }
  }
  const float py = warp_get(acc, y);
  if (lane == 0) {
    c.correct[i] = arg == y;
    const float li = c.hard ? expected : moe::loss_of(py);
    c.loss[i] = li;
    const float reg = li - min_expert;
    c.regret[i] = reg > 0.0f ? reg : 0.0f;
    c.disagree[i] = dis;
  }
}

// moe::row_backward for row i: dz of each active expert (lanes over classes), dr and dg (lanes
// over router columns); the scalars every lane computes alike. Any C and K.
__global__ void __launch_bounds__(32 * kWarpsPerBlock) backward_kernel(const Ctx c) {
  const int64_t i = warp_row();
  if (i >= c.n) return;
  const int lane = lane_id();
  const int64_t K = c.K, C = c.C, a = c.a;
  const int32_t y = c.labels[i];
  const float ci = c.coef[i];
  const float* r = c.r + i * K;
  float* dr = c.dr + i * K;
  float* gbuf = c.gbuf + i * a;
  const int32_t* sel = c.sel + i * a;
  const float* gate = c.gate + i * a;
  for (int64_t k = lane; k < K; k += 32) dr[k] = 0.0f;
  __syncwarp();
  const float py = c.p[i * C + y];
  for (int64_t s = 0; s < a; ++s) {
    const int64_t pos = c.entry_pos[i * a + s];
    const int32_t k = sel[s];
    const float* pk = c.p_expert + pos * C;
    const float pky = pk[y];
    float scale = 0.0f;
    if (c.hard) {
      if (pky >= moe::kMinProb) scale = ci * r[k];
      if (lane == 0) dr[k] = ci * c.entry_loss[pos];
    } else if (c.single) {
      if (py >= moe::kMinProb) {
        scale = ci;
        if (lane == 0) dr[k] = -ci / c.denom[i];
      }
    } else if (py >= moe::kMinProb) {
      const float inv = 1.0f / py;
      scale = ci * gate[s] * pky * inv;
      if (lane == 0) gbuf[s] = -ci * pky * inv;
    } else if (lane == 0) {
      gbuf[s] = 0.0f;
    }
    const float sc = scale * c.inv_temp[k];  // moe::expert_logit_grad
    float* dz = c.dz + pos * C;
    for (int64_t j = lane; j < C; j += 32) dz[j] = sc * (pk[j] - (j == y ? 1.0f : 0.0f));
  }
  __syncwarp();  // gbuf and dr by lane 0 are visible to the warp
  if (!c.hard && !c.single) {
    if (c.routing == Routing::Soft) {
      for (int64_t s = lane; s < a; s += 32) dr[sel[s]] = gbuf[s];
    } else {
      float dot = 0.0f;
      for (int64_t s = 0; s < a; ++s) dot = fm::fma_f32(gate[s], gbuf[s], dot);
      for (int64_t s = lane; s < a; s += 32) dr[sel[s]] = (gbuf[s] - dot) / c.denom[i];
    }
  }
  __syncwarp();
  if (c.balance)
    for (int64_t k = lane; k < K; k += 32) dr[k] += c.balance[k];
  __syncwarp();
  float dot = 0.0f;  // moe::router_logit_grad
  for (int64_t k = 0; k < K; ++k) dot = fm::fma_f32(r[k], dr[k], dot);
  for (int64_t k = lane; k < K; k += 32) c.dg[i * K + k] = c.inv_tau * r[k] * (dr[k] - dot);
}

unsigned warp_blocks(int64_t n) { return unsigned((n + kWarpsPerBlock - 1) / kWarpsPerBlock); }

// f(std::integral_constant<int, NC>{}) for the fewest chunks NC of 1, 2, 4, 8 that hold `width`
// values (width <= kMaxWarpWidth): the kernel instance whose registers fit the row.
template <class F>
void with_chunks(int64_t width, F f) {
  if (width <= 32) f(std::integral_constant<int, 1>{});
  else if (width <= 64) f(std::integral_constant<int, 2>{});
  else if (width <= 128) f(std::integral_constant<int, 4>{});
  else f(std::integral_constant<int, 8>{});
}

}  // namespace

bool route_warp(const Ctx& c, cudaStream_t stream) {
  if (c.n < 1) return true;
  if (c.K > kMaxWarpWidth) return false;
  with_chunks(c.K, [&](auto nc) {
    constexpr int kChunks = decltype(nc)::value;
    route_kernel<kChunks><<<warp_blocks(c.n), 32 * kWarpsPerBlock, 0, stream>>>(c);
  });
  check(cudaGetLastError(), "moe route launch");
  return true;
}

bool head_warp(const Ctx& c, cudaStream_t stream) {
  if (c.n < 1) return true;
  if (c.C > kMaxWarpWidth) return false;
  with_chunks(c.C, [&](auto nc) {
    constexpr int kChunks = decltype(nc)::value;
    head_kernel<kChunks><<<warp_blocks(c.n), 32 * kWarpsPerBlock, 0, stream>>>(c);
  });
  check(cudaGetLastError(), "moe head launch");
  return true;
}

void backward(const Ctx& c, cudaStream_t stream) {
  if (c.n < 1) return;
  backward_kernel<<<warp_blocks(c.n), 32 * kWarpsPerBlock, 0, stream>>>(c);
  check(cudaGetLastError(), "moe backward launch");
}

}  // namespace calmoe::cuda::moe_rows
