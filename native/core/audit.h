// Per-row MoE audit math shared by the backends (and meant for the robust-filtered training
// objective, which needs the same dis_i and regret_i), and the backend contract.
// Public API and definitions: calmoe/audit.h.
#pragma once
#include <cmath>

#include "calmoe/audit.h"
#include "core/calibration.h"  // calib::nll_of: the package's NLL definition
#include "fastmath.h"
#include "hd.h"

namespace calmoe::audit {

enum Issue : int32_t {
  kOk = 0,
  kRoutingValue = 1,  // routing weight not finite or outside [0, 1]
  kRoutingSum = 2,    // routing row does not sum to 1
  kExpertId = 3,      // expert id outside [0, E)
  kExpertProb = 4,    // expert probability not finite or outside [0, 1]
  kExpertSum = 5,     // an expert's probability row does not sum to 1
  kMixtureProb = 6,   // mixture probability not finite or outside [0, 1]
  kMixtureSum = 7,    // mixture row does not sum to 1
  kLabel = 8          // label outside [0, C)
};

struct RowIssue {
  int32_t issue = kOk;
  int32_t slot = -1;  // offending slot (routing, ids, expert probabilities)
  int32_t col = -1;   // offending column
  float sum = 0;      // offending row sum
};

// A probability row: every value in [0, 1] (NaN fails) and |sum - 1| <= tol.
// Returns 0 (ok), 1 (a value; *col set) or 2 (the sum; *sum set).
CALMOE_HD int check_probs(const float* p, int64_t C, float tol, int32_t* col, float* sum) {
  float s = 0.0f;
  for (int64_t j = 0; j < C; ++j) {
    const float v = p[j];
    if (!(v >= 0.0f && v <= 1.0f)) { *col = int32_t(j); return 1; }
    s += v;
  }
  *sum = s;
  return fabsf(s - 1.0f) <= tol ? 0 : 2;
}

// Expert id of slot k (dense layout: the slot itself).
CALMOE_HD int32_t expert_of(const int32_t* ids, int64_t k) { return ids ? ids[k] : int32_t(k); }

// Top-1 slot: the largest weight, ties to the lower expert id.
CALMOE_HD int64_t top_slot(const float* r, const int32_t* ids, int64_t K) {
  int64_t best = 0;
  for (int64_t k = 1; k < K; ++k) {
    if (r[k] > r[best] || (r[k] == r[best] && expert_of(ids, k) < expert_of(ids, best))) best = k;
  }
  return best;
}

// -sum_k r_k log r_k, in nats (0 log 0 = 0).
CALMOE_HD float routing_entropy(const float* r, int64_t K) {
  float h = 0.0f;
  for (int64_t k = 0; k < K; ++k) {
    if (r[k] > 0.0f) h = fm::fma_f32(-r[k], fm::log_f32(r[k]), h);
  }
  return h > 0.0f ? h : 0.0f;
}

// dis = sum_k r_k ||P_k - p||^2 over the K x C expert probabilities P of one row.
CALMOE_HD float disagreement(const float* r, const float* P, const float* p, int64_t K, int64_t C) {
  float dis = 0.0f;
  for (int64_t k = 0; k < K; ++k) {
    if (r[k] == 0.0f) continue;
    const float* pk = P + k * C;
    float sq = 0.0f;
    for (int64_t j = 0; j < C; ++j) {
      const float d = pk[j] - p[j];
      sq = fm::fma_f32(d, d, sq);
    }
    dis = fm::fma_f32(r[k], sq, dis);
  }
  return dis;
}

// relu(loss - min over active experts (r_k > 0) of -log max(P_k[y], 1e-12)).
CALMOE_HD float regret(const float* r, const float* P, int64_t K, int64_t C, int32_t y, float loss) {
  float best = INFINITY;
  for (int64_t k = 0; k < K; ++k) {
    if (r[k] == 0.0f) continue;
    const float lk = calib::nll_of(P[k * C + y]);
    if (lk < best) best = lk;
  }
  const float g = loss - best;
  return g > 0.0f ? g : 0.0f;
}

// Everything a backend kernel needs: inputs and outputs (host or device pointers).
struct KernelArgs {
  MoeAuditArg in;
  MoeAuditOut out;
  float tol = 1e-3f;
};

// Validates row i and writes its outputs (the shared loop body of every backend).
CALMOE_HD RowIssue audit_row(const KernelArgs& a, int64_t i) {
  RowIssue bad;
  const int64_t K = a.in.slots, C = a.in.classes;
  const float* r = a.in.routing + i * K;
  const int32_t* ids = a.in.expert_ids ? a.in.expert_ids + i * K : nullptr;
  // routing weights and expert ids
  float rs = 0.0f;
  for (int64_t k = 0; k < K; ++k) {
    if (!(r[k] >= 0.0f && r[k] <= 1.0f)) { bad.issue = kRoutingValue; bad.slot = int32_t(k); return bad; }
    rs += r[k];
    if (ids && (ids[k] < 0 || int64_t(ids[k]) >= a.in.experts)) { bad.issue = kExpertId; bad.slot = int32_t(k); return bad; }
  }
  if (!(fabsf(rs - 1.0f) <= a.tol)) { bad.issue = kRoutingSum; bad.sum = rs; return bad; }
  // probabilities
  const float* P = a.in.expert_probs ? a.in.expert_probs + i * K * C : nullptr;
  const float* p = a.in.mixture ? a.in.mixture + i * C : nullptr;
  if (P) {
    for (int64_t k = 0; k < K; ++k) {
      const int c = check_probs(P + k * C, C, a.tol, &bad.col, &bad.sum);
      if (c) { bad.issue = c == 1 ? kExpertProb : kExpertSum; bad.slot = int32_t(k); return bad; }
    }
  }
  if (p) {
    const int c = check_probs(p, C, a.tol, &bad.col, &bad.sum);
    if (c) { bad.issue = c == 1 ? kMixtureProb : kMixtureSum; return bad; }
  }
  int32_t y = 0;
  if (a.in.labels) {
    y = a.in.labels[i];
    if (y < 0 || int64_t(y) >= C) { bad.issue = kLabel; return bad; }
  }
  // outputs
  const int64_t top = top_slot(r, ids, K);
  if (a.out.top1) a.out.top1[i] = expert_of(ids, top);
  if (a.out.max_weight) a.out.max_weight[i] = r[top];
  if (a.out.entropy) a.out.entropy[i] = routing_entropy(r, K);
  if (a.out.disagreement) a.out.disagreement[i] = disagreement(r, P, p, K, C);
  const float loss = (p && a.in.labels) ? calib::nll_of(p[y]) : 0.0f;
  if (a.out.loss) a.out.loss[i] = loss;
  if (a.out.regret) a.out.regret[i] = regret(r, P, K, C, y, loss);
  if (a.out.own_probs) {
    const float* src = P + top * C;
    float* dst = a.out.own_probs + i * C;
    for (int64_t j = 0; j < C; ++j) dst[j] = src[j];
  }
  return bad;
}

}  // namespace calmoe::audit

// Backend entry points: fill the outputs of every row; return the first invalid row or -1.
namespace calmoe::cpu {
int64_t moe_audit_rows(const audit::KernelArgs& args);
}
namespace calmoe::cuda {
int64_t moe_audit_rows(const audit::KernelArgs& args);
}
