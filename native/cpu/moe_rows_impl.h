// Included by moe_rows.cpp (baseline) and moe_rows_avx2.cpp (AVX2+FMA) inside their namespace,
// after their own global includes of <algorithm>, <cstring>, <vector>, core/moe_math.h and
// cpu/moe_rows.h (so it includes nothing itself), and after each defines
// row_softmax(v, n, inv_temperature, out) (moe::softmax, or a vector version with its bits) and
// rows_softmax(rows, count, n, inv_temperature) (in place over `count` consecutive rows of n);
// see moe_rows.h. The bodies are the per-row
// halves of cpu/moe_engine.cpp's forward and backward.

namespace impl {

using calmoe::cpu::moe_rows::Ctx;
namespace moe = calmoe::moe;
namespace fm = calmoe::fm;

inline void route(const Ctx& c, int64_t b, int64_t e) {
  for (int64_t i = b; i < e; ++i) {
    row_softmax(c.g + i * c.K, c.K, c.inv_tau, c.r + i * c.K);
    c.denom[i] = moe::select_experts(c.r + i * c.K, c.K, c.routing, c.a, c.sel + i * c.a, c.gate + i * c.a);
  }
}

inline void expert_softmax(const Ctx& c, int64_t b, int64_t e) {
  int64_t k = 0;
  for (int64_t pos = b; pos < e;) {
    while (c.offset[k + 1] <= pos) ++k;
    const int64_t run = std::min(e, c.offset[k + 1]) - pos;  // entries of expert k: one temperature
    rows_softmax(c.p_expert + pos * c.C, run, c.C, c.inv_temp[k]);
    pos += run;
  }
}

inline void combine(const Ctx& c, int64_t b, int64_t e) {
  const float* small[64];
  std::vector<const float*> big;
  const float** ptr = c.a <= 64 ? small : (big.resize(std::size_t(c.a)), big.data());
  for (int64_t i = b; i < e; ++i) {
    for (int64_t s = 0; s < c.a; ++s) ptr[s] = c.p_expert + int64_t(c.entry_pos[i * c.a + s]) * c.C;
    if (c.hard_prediction) {  // the argmax expert alone (its gate r is the largest)
      int64_t best = 0;
      for (int64_t s = 1; s < c.a; ++s) if (c.gate[i * c.a + s] > c.gate[i * c.a + best]) best = s;
      std::memcpy(c.p + i * c.C, ptr[best], std::size_t(c.C) * sizeof(float));
    } else {
      moe::combine(ptr, c.gate + i * c.a, c.a, c.C, c.p + i * c.C);
    }
  }
}

// Per-example losses (hard: the competitive surrogate sum_k r_k l_ik), what robust-filtered
// needs (regret against the best active expert, routing-weighted disagreement), correctness.
inline void losses(const Ctx& c, int64_t b, int64_t e) {
  const int64_t C = c.C, a = c.a;
  for (int64_t i = b; i < e; ++i) {
    const int32_t y = c.labels[c.rows[i]];
    const float* p = c.p + i * C;
    int64_t arg = 0;
    for (int64_t j = 1; j < C; ++j) if (p[j] > p[arg]) arg = j;
    c.correct[i] = arg == y;
    float min_expert = moe::kMaxLoss, expected = 0.0f, dis = 0.0f;
    for (int64_t s = 0; s < a; ++s) {
      const int64_t pos = c.entry_pos[i * a + s];
      const float* pk = c.p_expert + pos * C;
      const float lk = moe::loss_of(pk[y]);
      c.entry_loss[pos] = lk;
      min_expert = std::min(min_expert, lk);
      if (c.hard) expected = fm::fma_f32(c.gate[i * a + s], lk, expected);
      if (c.filtered) {
        float sq = 0.0f;
        for (int64_t j = 0; j < C; ++j) sq = fm::fma_f32(pk[j] - p[j], pk[j] - p[j], sq);
        dis = fm::fma_f32(c.gate[i * a + s], sq, dis);
      }
    }
    c.loss[i] = c.hard ? expected : moe::loss_of(p[y]);
    c.regret[i] = std::max(0.0f, c.loss[i] - min_expert);
    c.disagree[i] = dis;
  }
}

// The gradients one row sends into its active experts' logits (dz, per entry) and its router
// logits (dg), given its objective coefficient c_i = dL/dl_i (see moe_math.h for the modes).
inline void backward(const Ctx& c, int64_t b, int64_t e) {
  const int64_t K = c.K, C = c.C, a = c.a;
  float small[64];
  std::vector<float> big;
  float* gbuf = a <= 64 ? small : (big.resize(std::size_t(a)), big.data());
  for (int64_t i = b; i < e; ++i) {
    const int32_t y = c.labels[c.rows[i]];
    const float ci = c.coef[i];
    const float* r = c.r + i * K;
    float* dr = c.dr + i * K;
    std::fill(dr, dr + K, 0.0f);
    const float py = c.p[i * C + y];
    for (int64_t s = 0; s < a; ++s) {
      const int64_t pos = c.entry_pos[i * a + s];
      const int32_t k = c.sel[i * a + s];
      const float* pk = c.p_expert + pos * C;
      float scale = 0.0f;
      if (c.hard) {
        if (pk[y] >= moe::kMinProb) scale = ci * r[k];
        dr[k] = ci * c.entry_loss[pos];
      } else if (c.single) {
        if (py >= moe::kMinProb) {
          scale = ci;
          dr[k] = -ci / c.denom[i];  // d(-log p)/dr_k* = -1/r_k*
        }
      } else if (py >= moe::kMinProb) {
        const float inv = 1.0f / py;
        scale = ci * c.gate[i * a + s] * pk[y] * inv;
        gbuf[s] = -ci * pk[y] * inv;  // dL/d gate_s
      } else {
        gbuf[s] = 0.0f;
      }
      moe::expert_logit_grad(pk, C, y, scale, c.inv_temp[k], c.dz + pos * C);
    }
    if (!c.hard && !c.single) {
      if (c.routing == calmoe::Routing::Soft) {
        for (int64_t s = 0; s < a; ++s) dr[c.sel[i * a + s]] = gbuf[s];
      } else {  // renormalised gates: d gate_s / d r_m = ([s = m] - gate_s) / sum_S r
        float dot = 0.0f;
        for (int64_t s = 0; s < a; ++s) dot = fm::fma_f32(c.gate[i * a + s], gbuf[s], dot);
        for (int64_t s = 0; s < a; ++s) dr[c.sel[i * a + s]] = (gbuf[s] - dot) / c.denom[i];
      }
    }
    if (c.balance)
      for (int64_t k = 0; k < K; ++k) dr[k] += c.balance[k];
    moe::router_logit_grad(r, dr, K, c.inv_tau, c.dg + i * K);
  }
}

inline const calmoe::cpu::moe_rows::Table& table() {
  static const calmoe::cpu::moe_rows::Table t{route, expert_softmax, combine, losses, backward};
  return t;
}

}  // namespace impl
