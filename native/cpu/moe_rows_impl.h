// Included by moe_rows.cpp (baseline) and moe_rows_avx2.cpp (AVX2+FMA) inside their namespace,
// after their own global includes of <algorithm>, <cstring>, <vector>, core/moe_math.h,
// core/moe_row_bodies.h and cpu/moe_rows.h (so it includes nothing itself), and after each defines
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

// Per-example losses and the per-row backward: core/moe_row_bodies.h (shared with CUDA).
inline void losses(const Ctx& c, int64_t b, int64_t e) {
  for (int64_t i = b; i < e; ++i) moe::row_losses(c, i, c.labels[c.rows[i]]);
}

inline void backward(const Ctx& c, int64_t b, int64_t e) {
  float small[64];
  std::vector<float> big;
  float* gbuf = c.a <= 64 ? small : (big.resize(std::size_t(c.a)), big.data());
  for (int64_t i = b; i < e; ++i) moe::row_backward(c, i, c.labels[c.rows[i]], gbuf);
}

inline const calmoe::cpu::moe_rows::Table& table() {
  static const calmoe::cpu::moe_rows::Table t{route, expert_softmax, combine, losses, backward};
  return t;
}

}  // namespace impl
