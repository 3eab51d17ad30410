// Per-row math of the MoE classifier, shared by the CPU and CUDA backends. The batch-level work
// (GEMMs, dispatch, reductions) lives in the backends; everything a single row decides --
// routing softmax, expert selection, gates, expert softmax, the mixture, the loss and the
// gradients that flow back into expert logits and router logits -- is written once here.
//
// Routing modes (DESIGN.md "Model"):
//   soft        p = sum_k r_k p_k over all K experts; gates r.
//   topk, k>=2  S = the k largest r (ties to the lower index), gates r~ = r_S / sum_S r.
//   topk, k=1   Switch-style: p = p_k* r_k* / stopgrad(r_k*): the value is p_k*, and the router
//               gets d(-log p)/dr_k* = -1/r_k*.
//   hard        inference: p = p_k*, k* = argmax r. Training uses the competitive estimator of
//               Jacobs et al. (1991): per-example loss l_i = sum_k r_ik l_ik over all experts,
//               l_ik = -log max(p_ik[y], 1e-12). Its gradient sends each expert the rows in
//               proportion to its responsibility and moves the router toward the expert with
//               the lowest loss on each row; since l_i is linear in r, its minimum is a one-hot
//               r, so the soft training objective converges toward the hard predictor it trains.
#pragma once
#include <cmath>

#include "activation.h"
#include "calmoe/moe.h"
#include "fastmath.h"
#include "hd.h"
#include "sum8.h"

namespace calmoe::moe {

constexpr float kMinProb = 1e-12f;
constexpr float kMaxLoss = 27.6310215f;  // -log(1e-12)

CALMOE_HD float loss_of(float p) { return -fm::log_f32(p > kMinProb ? p : kMinProb); }

// Stable softmax of v[0..n) / temperature into out (v and out may alias). Sums in Sum8 order.
CALMOE_HD void softmax(const float* v, int64_t n, float inv_temperature, float* out) {
  float m = v[0];
  for (int64_t j = 1; j < n; ++j) m = v[j] > m ? v[j] : m;
  Sum8 s;
  for (int64_t j0 = 0; j0 < n; j0 += 8) {
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
    for (int k = 0; k < 8; ++k) {
      const int64_t j = j0 + k;
      if (j >= n) break;
      const float e = fm::exp_f32((v[j] - m) * inv_temperature);
      out[j] = e;
      s.s[k] += e;
    }
  }
  const float inv = 1.0f / s.total();
  for (int64_t j = 0; j < n; ++j) out[j] *= inv;
}

// The `a` experts a row uses, ascending, and their gates. r: the row's routing weights (K).
// Soft: all K, gates r. TopK (a >= 2): the a largest r, ties to the lower index, renormalised.
// TopK a = 1 and Hard at inference: the argmax, gate 1 (the value of r/stopgrad(r)).
// Returns sum_S r (the renormalisation denominator; 1 for soft).
CALMOE_HD float select_experts(const float* r, int64_t K, Routing routing, int64_t a, int32_t* sel, float* gate) {
  if (routing == Routing::Soft) {
    for (int64_t k = 0; k < K; ++k) {
      sel[k] = int32_t(k);
      gate[k] = r[k];
    }
    return 1.0f;
  }
  // selection sort of the a largest (K is small); strict '>' keeps the lower index on ties
  for (int64_t s = 0; s < a; ++s) {
    int64_t best = -1;
    for (int64_t k = 0; k < K; ++k) {
      bool taken = false;
      for (int64_t t = 0; t < s; ++t) taken |= (sel[t] == k);
      if (taken) continue;
      if (best < 0 || r[k] > r[best]) best = k;
    }
    sel[s] = int32_t(best);
  }
  // ascending expert order: the combine order of every backend
  for (int64_t s = 1; s < a; ++s) {
    const int32_t v = sel[s];
    int64_t t = s;
    while (t > 0 && sel[t - 1] > v) {
      sel[t] = sel[t - 1];
      --t;
    }
    sel[t] = v;
  }
  if (a == 1) {
    gate[0] = 1.0f;
    return r[sel[0]];
  }
  float denom = 0.0f;
  for (int64_t s = 0; s < a; ++s) denom += r[sel[s]];
  for (int64_t s = 0; s < a; ++s) gate[s] = r[sel[s]] / denom;
  return denom;
}

// p[j] = sum_s gate[s] * expert_p[s][j], s ascending (expert_p rows are C apart, `stride` floats
// between a row's consecutive experts).
CALMOE_HD void combine(const float* const* expert_p, const float* gate, int64_t a, int64_t C, float* p) {
  for (int64_t j = 0; j < C; ++j) {
    float acc = 0.0f;
    for (int64_t s = 0; s < a; ++s) acc = fm::fma_f32(gate[s], expert_p[s][j], acc);
    p[j] = acc;
  }
}

// The gradient the loss sends into one active expert's logits z (before its temperature):
// dL/dz[j] = scale * (p_k[j] - [j = y]) / T_k, where
//   mixture (soft, topk a >= 2): scale = c_i * gate_s * p_k[y] / p[y]   (the expert's responsibility)
//   single expert (topk a = 1):   scale = c_i
//   hard (competitive):           scale = c_i * r_k
// and scale = 0 when the clamp max(p, 1e-12) is active.
CALMOE_HD void expert_logit_grad(const float* pk, int64_t C, int32_t y, float scale, float inv_temperature, float* dz) {
  const float s = scale * inv_temperature;
  for (int64_t j = 0; j < C; ++j) dz[j] = s * (pk[j] - (j == y ? 1.0f : 0.0f));
}

// Softmax backward into the router logits: dg_j = (1/tau) r_j (dr_j - sum_m r_m dr_m).
CALMOE_HD void router_logit_grad(const float* r, const float* dr, int64_t K, float inv_tau, float* dg) {
  float dot = 0.0f;
  for (int64_t k = 0; k < K; ++k) dot = fm::fma_f32(r[k], dr[k], dot);
  for (int64_t k = 0; k < K; ++k) dg[k] = inv_tau * r[k] * (dr[k] - dot);
}

}  // namespace calmoe::moe
