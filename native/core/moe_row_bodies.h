// The per-row training bodies of the MoE engines: the CPU engine runs them in its row loops
// (cpu/moe_rows_impl.h); they define the bits. The CUDA engine runs row_losses one thread per row
// for rows of more than 256 classes (cuda/moe_rows.cu); otherwise, and for row_backward always, it
// runs warp-per-row forms that keep every reduction's order (cuda/moe_rows_warp.cu). Templated on the backend's Ctx, which has the same member names in both
// (cpu::moe_rows::Ctx, cuda::moe_rows::Ctx); the row's label is passed in because the backends
// find it differently (the CPU through the batch's row indices, CUDA from batch-local labels).
// `static`: each translation unit keeps its own copy, so the AVX2 build of the CPU loops
// (cpu/moe_rows_avx2.cpp, compiled with -mavx2) can never lend its copy to the baseline build.
#pragma once
#include <cstdint>

#include "core/moe_math.h"

namespace calmoe::moe {

// The row kernels' mode flags and sizes for config c with `a` active experts per row.
template <class Ctx>
static inline void set_row_modes(Ctx& r, const MoEConfig& c, int64_t a, bool training) {
  r.K = c.experts;
  r.C = c.classes;
  r.a = a;
  r.routing = (training && c.routing == Routing::Hard) ? Routing::Soft : c.routing;  // hard trains with every expert
  r.hard = training && c.routing == Routing::Hard;
  r.single = c.routing == Routing::TopK && c.top_k == 1;
  r.hard_prediction = r.hard;
  r.inv_tau = 1.0f / c.router_temperature;
}

// Row i's losses (hard: the competitive surrogate sum_k r_k l_ik), what robust-filtered needs
// (regret against the best active expert, routing-weighted disagreement), and correctness.
template <class Ctx>
static CALMOE_HD void row_losses(const Ctx& c, int64_t i, int32_t y) {
  const int64_t C = c.C, a = c.a;
  const float* p = c.p + i * C;
  int64_t arg = 0;
  for (int64_t j = 1; j < C; ++j)
    if (p[j] > p[arg]) arg = j;
  c.correct[i] = arg == y;
  float min_expert = kMaxLoss, expected = 0.0f, dis = 0.0f;
  for (int64_t s = 0; s < a; ++s) {
    const int64_t pos = c.entry_pos[i * a + s];
    const float* pk = c.p_expert + pos * C;
    const float lk = loss_of(pk[y]);
    c.entry_loss[pos] = lk;
    min_expert = lk < min_expert ? lk : min_expert;
    if (c.hard) expected = fm::fma_f32(c.gate[i * a + s], lk, expected);
    if (c.filtered) {
      float sq = 0.0f;
      for (int64_t j = 0; j < C; ++j) sq = fm::fma_f32(pk[j] - p[j], pk[j] - p[j], sq);
      dis = fm::fma_f32(c.gate[i * a + s], sq, dis);
    }
  }
  c.loss[i] = c.hard ? expected : loss_of(p[y]);
  const float reg = c.loss[i] - min_expert;
  c.regret[i] = reg > 0.0f ? reg : 0.0f;
  c.disagree[i] = dis;
}

// The gradients row i sends into its active experts' logits (dz, per entry) and its router
// logits (dg), given its objective coefficient c_i = dL/dl_i (see moe_math.h for the modes).
// gbuf: a floats of scratch (dL/d gate).
template <class Ctx>
static CALMOE_HD void row_backward(const Ctx& c, int64_t i, int32_t y, float* gbuf) {
  const int64_t K = c.K, C = c.C, a = c.a;
  const float ci = c.coef[i];
  const float* r = c.r + i * K;
  float* dr = c.dr + i * K;
  const int32_t* sel = c.sel + i * a;
  const float* gate = c.gate + i * a;
  for (int64_t k = 0; k < K; ++k) dr[k] = 0.0f;
  const float py = c.p[i * C + y];
  for (int64_t s = 0; s < a; ++s) {
    const int64_t pos = c.entry_pos[i * a + s];
    const int32_t k = sel[s];
    const float* pk = c.p_expert + pos * C;
    float scale = 0.0f;
    if (c.hard) {
      if (pk[y] >= kMinProb) scale = ci * r[k];
      dr[k] = ci * c.entry_loss[pos];
    } else if (c.single) {
      if (py >= kMinProb) {
        scale = ci;
        dr[k] = -ci / c.denom[i];  // d(-log p)/dr_k* = -1/r_k*
      }
    } else if (py >= kMinProb) {
      const float inv = 1.0f / py;
      scale = ci * gate[s] * pk[y] * inv;
      gbuf[s] = -ci * pk[y] * inv;  // dL/d gate_s
    } else {
      gbuf[s] = 0.0f;
    }
    expert_logit_grad(pk, C, y, scale, c.inv_temp[k], c.dz + pos * C);
  }
  if (!c.hard && !c.single) {
    if (c.routing == Routing::Soft) {
      for (int64_t s = 0; s < a; ++s) dr[sel[s]] = gbuf[s];
    } else {  // renormalised gates: d gate_s / d r_m = ([s = m] - gate_s) / sum_S r
      float dot = 0.0f;
      for (int64_t s = 0; s < a; ++s) dot = fm::fma_f32(gate[s], gbuf[s], dot);
      for (int64_t s = 0; s < a; ++s) dr[sel[s]] = (gbuf[s] - dot) / c.denom[i];
    }
  }
  if (c.balance)
    for (int64_t k = 0; k < K; ++k) dr[k] += c.balance[k];
  router_logit_grad(r, dr, K, c.inv_tau, c.dg + i * K);
}

}  // namespace calmoe::moe
