// CPU engine of the MoE classifier: router and experts as (grouped) GEMMs over gathered rows, the
// per-row math of core/moe_math.h in parallel row loops, fixed-order reductions everywhere, so a
// step gives the same bits for any thread count. Workspaces are sized once for the largest batch.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "calmoe/error.h"
#include "core/moe_engine.h"
#include "core/moe_math.h"
#include "core/moe_row_bodies.h"
#include "core/objective.h"
#include "core/optimizer.h"
#include "cpu/gemm.h"
#include "cpu/moe_rows.h"
#include "host/thread_pool.h"

namespace calmoe::cpu {
namespace {

using moe::Batch;

template <class T>
using Vec = std::vector<T>;

constexpr int64_t kRowChunk = 256;  // rows per task of the per-row loops

// Runs fn(begin, end) over [0, n) in chunks on the pool.
template <class F>
void for_rows(int64_t n, F&& fn) {
  const int64_t chunks = (n + kRowChunk - 1) / kRowChunk;
  parallel_for(chunks, [&](int64_t c, int) { fn(c * kRowChunk, std::min(n, (c + 1) * kRowChunk)); });
}

Act gemm_act(Activation a) { return a == Activation::Gelu ? Act::Gelu : Act::Relu; }

// Rows `rows[0..n)` of x as a GEMM operand: a plain view when they are consecutive (prediction,
// soft routing), so the GEMM can read them in place instead of gathering and packing them.
GemmOperand rows_of(const float* x, int64_t d, const int32_t* rows, int64_t n, bool trans) {
  bool consecutive = true;
  for (int64_t j = 1; j < n && consecutive; ++j) consecutive = rows[j] == rows[0] + j;
  if (consecutive && n > 0) return GemmOperand{x + int64_t(rows[0]) * d, d, trans, nullptr};
  return GemmOperand{x, d, trans, rows};
}

// out[j] (+)= sum over rows of m[i * ld + j], rows in order, in double: bias gradients.
void column_sums(const float* m, int64_t rows, int64_t cols, int64_t ld, float* out) {
  const int64_t blocks = (cols + 63) / 64;
  parallel_for(blocks, [&](int64_t b, int) {
    const int64_t j0 = b * 64, j1 = std::min(cols, j0 + 64);
    double acc[64] = {0};
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = j0; j < j1; ++j) acc[j - j0] += m[i * ld + j];
    for (int64_t j = j0; j < j1; ++j) out[j] = float(acc[j - j0]);
  });
}

// One MLP (router or expert): layer l maps dims[l] -> dims[l + 1].
struct Mlp {
  std::vector<int64_t> dims;
  int64_t layers() const { return int64_t(dims.size()) - 1; }
  // offsets of layer l's weight and bias relative to the MLP's first parameter
  int64_t weight_offset(int64_t l) const {
    int64_t o = 0;
    for (int64_t i = 0; i < l; ++i) o += dims[i] * dims[i + 1] + dims[i + 1];
    return o;
  }
  int64_t bias_offset(int64_t l) const { return weight_offset(l) + dims[l] * dims[l + 1]; }
};

class CpuEngine final : public moe::Engine {
 public:
  CpuEngine(const MoEConfig& c, float* params, const float* temps, int64_t max_batch)
      : c_(c), layout_(moe_layout(c)), params_(params), max_batch_(std::max<int64_t>(1, max_batch)) {
    router_.dims.push_back(c.input_dim);
    router_.dims.insert(router_.dims.end(), c.router_hidden.begin(), c.router_hidden.end());
    router_.dims.push_back(c.experts);
    expert_.dims.push_back(c.input_dim);
    expert_.dims.insert(expert_.dims.end(), c.expert_hidden.begin(), c.expert_hidden.end());
    expert_.dims.push_back(c.classes);
    inv_temp_.assign(std::size_t(c.experts), 1.0f);
    if (temps) {
      for (int64_t k = 0; k < c.experts; ++k) {
        if (!(temps[k] > 0.0f) || !std::isfinite(temps[k])) throw_range("temperatures[" + std::to_string(k) + "]: expected a finite number > 0");
        inv_temp_[k] = 1.0f / temps[k];
      }
    }
    grad_.assign(std::size_t(layout_.total), 0.0f);
  }

  StepStats forward_backward(const Batch& b, const ObjectiveConfig& obj, bool robust_active, const Batch* next = nullptr) override;
  const float* gradient() override { return grad_.data(); }
  double update(const OptimizerConfig& opt, double lr) override;
  void predict(const float* x, int64_t rows, const PredictOutputs& out) override;
  void sync_to_host(float*) override {}
  OptimizerState optimizer_state() override {
    return {std::vector<float>(m_.begin(), m_.end()), std::vector<float>(v_.begin(), v_.end()), steps_};
  }
  void set_optimizer_state(const OptimizerState& s) override {
    m_.assign(s.m.begin(), s.m.end());
    v_.assign(s.v.begin(), s.v.end());
    next_.assign(m_.empty() ? 0 : std::size_t(layout_.total), 0.0f);
    steps_ = s.steps;
  }

 private:
  // Workspace of one forward pass over n rows with `a` active experts per row.
  struct Pass {
    int64_t n = 0, a = 0, entries = 0;
    Vec<float> rpre, ract;   // router hidden layers, packed (n x h_l per layer)
    Vec<float> g, r;         // router logits, routing weights (n x K)
    Vec<int32_t> sel;        // n x a active experts (ascending)
    Vec<float> gate;         // n x a gates
    Vec<float> denom;        // n: sum_S r
    Vec<int64_t> count, offset;  // per expert: entries, first entry
    Vec<int32_t> entry_pos;  // n x a: entry of (row, slot)
    Vec<int32_t> entry_row;  // entries: batch-local row
    Vec<int32_t> entry_x;    // entries: row of x
    Vec<float> epre, eact;   // expert hidden layers, packed (entries x h_l per layer)
    Vec<float> p_expert;     // entries x C: each active expert's probabilities
    Vec<float> z_expert;     // entries x C: their logits, kept only when keep_logits is set
    bool keep_logits = false;
    Vec<float> p;            // n x C: the prediction
    Vec<int32_t> xrows;      // n: rows of x of this pass
  };

  const float* W(const Mlp& m, int64_t base, int64_t l) const { return params_ + base + m.weight_offset(l); }
  const float* Bias(const Mlp& m, int64_t base, int64_t l) const { return params_ + base + m.bias_offset(l); }
  int64_t hidden_floats(const Mlp& m, int64_t rows) const {
    int64_t s = 0;
    for (int64_t l = 1; l + 1 < int64_t(m.dims.size()); ++l) s += rows * m.dims[l];
    return s;
  }

  void forward(Pass& f, const float* x, const int32_t* xrows, int64_t n, bool training);
  moe_rows::Ctx row_ctx(Pass& f, bool training);
  void size_pass(Pass& f, int64_t n, int64_t a);

  MoEConfig c_;
  ParamLayout layout_;
  float* params_;
  int64_t max_batch_;
  Mlp router_, expert_;
  Vec<float> inv_temp_;
  Vec<float> grad_, m_, v_, next_;
  int64_t steps_ = 0;
  Pass train_, infer_;
  // backward buffers
  Vec<float> tilt_loss_;  // hard routing, tilt on the top-1 expert's loss
  Vec<float> loss_, coef_, regret_, disagree_, entry_loss_, dz_, dr_, dg_, dh_a_, dh_b_;
  // small per-step scratch, kept so that a step allocates nothing once sized
  Vec<int64_t> cursor_, act_off_;
  Vec<int32_t> correct_, predict_rows_;
  Vec<double> frac_, mean_r_, norm_parts_;
  Vec<float> balance_grad_;
  std::vector<GemmArgs> gemms_;
};

void CpuEngine::size_pass(Pass& f, int64_t n, int64_t a) {
  const int64_t K = c_.experts, C = c_.classes;
  f.n = n;
  f.a = a;
  f.entries = n * a;
  auto grow = [](auto& v, int64_t size) { if (int64_t(v.size()) < size) v.resize(std::size_t(size)); };
  grow(f.rpre, hidden_floats(router_, n));
  grow(f.ract, hidden_floats(router_, n));
  grow(f.g, n * K);
  grow(f.r, n * K);
  grow(f.sel, n * a);
  grow(f.gate, n * a);
  grow(f.denom, n);
  grow(f.count, K);
  grow(f.offset, K + 1);
  grow(f.entry_pos, n * a);
  grow(f.entry_row, n * a);
  grow(f.entry_x, n * a);
  grow(f.epre, hidden_floats(expert_, n * a));
  grow(f.eact, hidden_floats(expert_, n * a));
  grow(f.p_expert, n * a * C);
  grow(f.p, n * C);
  grow(f.xrows, n);
}

// Forward of n rows (x rows given by xrows): router, selection, dispatch, experts, expert
// softmax and the mixture. Training in hard mode runs every expert (the competitive estimator).
void CpuEngine::forward(Pass& f, const float* x, const int32_t* xrows, int64_t n, bool training) {
  const int64_t K = c_.experts, C = c_.classes, d = c_.input_dim;
  const Routing routing = (training && c_.routing == Routing::Hard) ? Routing::Soft : c_.routing;
  const int64_t a = moe_active_experts(c_, training);
  size_pass(f, n, a);
  std::copy(xrows, xrows + n, f.xrows.begin());

  // With every expert active (soft, top-K of K, hard while training) the dispatch does not depend
  // on the routing, so a one-layer router's GEMM joins the experts' first grouped GEMM (no worker
  // idles on the router's small GEMM alone) and the routing runs after the experts.
  const bool all_experts = a == K;
  const bool router_joins = all_experts && router_.layers() == 1;
  GemmArgs router_gemm;
  // router: hidden layers then logits, rows gathered from x
  {
    GemmOperand in = rows_of(x, d, f.xrows.data(), n, false);
    int64_t hoff = 0;
    for (int64_t l = 0; l < router_.layers(); ++l) {
      const bool last = l + 1 == router_.layers();
      const int64_t out_dim = router_.dims[l + 1];
      GemmArgs g;
      g.M = n;
      g.N = out_dim;
      g.K = router_.dims[l];
      g.a = in;
      g.b = GemmOperand{W(router_, layout_.router_offset, l), out_dim, false, nullptr};
      g.bias = Bias(router_, layout_.router_offset, l);
      if (last) {
        g.c = f.g.data();
        g.ldc = K;
      } else {
        g.c = f.ract.data() + hoff;
        g.ldc = out_dim;
        g.act = gemm_act(c_.activation);
        g.pre = training ? f.rpre.data() + hoff : nullptr;  // saved for the backward only
        g.ldpre = out_dim;
        in = GemmOperand{f.ract.data() + hoff, out_dim, false, nullptr};
        hoff += n * out_dim;
      }
      if (last && router_joins) router_gemm = g;
      else sgemm(g);
    }
  }
  // routing weights, selection, gates
  moe_rows::Ctx rc = row_ctx(f, training);
  rc.routing = routing;
  const moe_rows::Table& rows = moe_rows::table();
  if (!router_joins) for_rows(n, [&](int64_t b, int64_t e) { rows.route(rc, b, e); });
  // dispatch: count per expert, prefix sums, stable fill (entries of an expert in row order)
  if (all_experts) {  // entry (i, k) = k n + i: what the fill below gives when every row selects 0..K-1
    for (int64_t k = 0; k < K; ++k) {
      f.count[k] = n;
      f.offset[k] = k * n;
      for (int64_t i = 0; i < n; ++i) {
        f.entry_pos[i * a + k] = int32_t(k * n + i);
        f.entry_row[k * n + i] = int32_t(i);
        f.entry_x[k * n + i] = xrows[i];
      }
    }
    f.offset[K] = K * n;
  } else {
    std::fill(f.count.begin(), f.count.begin() + K, 0);
    for (int64_t i = 0; i < n * a; ++i) ++f.count[f.sel[i]];
    f.offset[0] = 0;
    for (int64_t k = 0; k < K; ++k) f.offset[k + 1] = f.offset[k] + f.count[k];
    Vec<int64_t>& cursor = cursor_;
    cursor.assign(f.offset.begin(), f.offset.begin() + K);
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t s = 0; s < a; ++s) {
        const int64_t pos = cursor[f.sel[i * a + s]]++;
        f.entry_pos[i * a + s] = int32_t(pos);
        f.entry_row[pos] = int32_t(i);
        f.entry_x[pos] = xrows[i];
      }
    }
  }
  // experts: one grouped GEMM per layer over every expert's rows (gather fused into packing)
  {
    const int64_t E = f.entries;
    int64_t hoff = 0, prev_off = 0;
    std::vector<GemmArgs>& gs = gemms_;
    for (int64_t l = 0; l < expert_.layers(); ++l) {
      const bool last = l + 1 == expert_.layers();
      const int64_t in_dim = expert_.dims[l], out_dim = expert_.dims[l + 1];
      gs.clear();
      for (int64_t k = 0; k < K; ++k) {
        const int64_t nk = f.count[k], o = f.offset[k];
        if (nk == 0) continue;
        GemmArgs g;
        g.M = nk;
        g.N = out_dim;
        g.K = in_dim;
        g.a = l == 0 ? rows_of(x, d, f.entry_x.data() + o, nk, false) : GemmOperand{f.eact.data() + prev_off + o * in_dim, in_dim, false, nullptr};
        g.b = GemmOperand{W(expert_, layout_.expert_offset[k], l), out_dim, false, nullptr};
        g.bias = Bias(expert_, layout_.expert_offset[k], l);
        if (last) {
          g.c = f.p_expert.data() + o * C;
          g.ldc = C;
        } else {
          g.c = f.eact.data() + hoff + o * out_dim;
          g.ldc = out_dim;
          g.act = gemm_act(c_.activation);
          g.pre = training ? f.epre.data() + hoff + o * out_dim : nullptr;  // saved for the backward only
          g.ldpre = out_dim;
        }
        gs.push_back(g);
      }
      if (l == 0 && router_joins) gs.push_back(router_gemm);
      sgemm_batch(gs.data(), int64_t(gs.size()));
      if (!last) {
        prev_off = hoff;
        hoff += E * out_dim;
      }
    }
  }
  if (router_joins) for_rows(n, [&](int64_t b, int64_t e) { rows.route(rc, b, e); });
  if (f.keep_logits) {  // the softmax below overwrites the logits in place
    if (int64_t(f.z_expert.size()) < f.entries * C) f.z_expert.resize(std::size_t(f.entries * C));
    std::memcpy(f.z_expert.data(), f.p_expert.data(), std::size_t(f.entries * C) * sizeof(float));
  }
  // expert softmax (temperature of its expert), then the mixture in ascending expert order
  for_rows(f.entries, [&](int64_t b, int64_t e) { rows.expert_softmax(rc, b, e); });
  for_rows(n, [&](int64_t b, int64_t e) { rows.combine(rc, b, e); });
}

moe_rows::Ctx CpuEngine::row_ctx(Pass& f, bool training) {
  moe_rows::Ctx c;
  moe::set_row_modes(c, c_, f.a, training);
  c.inv_temp = inv_temp_.data();
  c.g = f.g.data();
  c.r = f.r.data();
  c.sel = f.sel.data();
  c.gate = f.gate.data();
  c.denom = f.denom.data();
  c.offset = f.offset.data();
  c.entry_pos = f.entry_pos.data();
  c.p_expert = f.p_expert.data();
  c.p = f.p.data();
  return c;
}

StepStats CpuEngine::forward_backward(const Batch& b, const ObjectiveConfig& obj, bool robust_active, const Batch* /*next: the rows are read in place*/) {
  const int64_t n = b.size, K = c_.experts, C = c_.classes, d = c_.input_dim;
  if (n < 1 || n > max_batch_) throw_range("batch: expected 1.." + std::to_string(max_batch_) + " rows, got " + std::to_string(n));
  Pass& f = train_;
  forward(f, b.x, b.rows, n, true);
  const int64_t E = f.entries;
  const bool hard = c_.routing == Routing::Hard;
  const bool single = c_.routing == Routing::TopK && c_.top_k == 1;
  const bool filtered = robust_active && obj.kind == ObjectiveKind::RobustFiltered;
  auto grow = [](Vec<float>& v, int64_t s) { if (int64_t(v.size()) < s) v.resize(std::size_t(s)); };
  grow(loss_, n);
  grow(coef_, n);
  grow(regret_, n);
  grow(disagree_, n);
  grow(entry_loss_, E);
  grow(dz_, E * C);
  grow(dr_, n * K);
  grow(dg_, n * K);

  // per-example losses (and what robust-filtered needs), predictions
  Vec<int32_t>& correct = correct_;
  correct.assign(static_cast<std::size_t>(n), 0);
  moe_rows::Ctx rc = row_ctx(f, true);
  rc.filtered = filtered;
  rc.labels = b.y;
  rc.rows = b.rows;
  rc.entry_loss = entry_loss_.data();
  rc.loss = loss_.data();
  rc.regret = regret_.data();
  rc.disagree = disagree_.data();
  rc.correct = correct.data();
  const moe_rows::Table& rows = moe_rows::table();
  for_rows(n, [&](int64_t lo, int64_t hi) { rows.losses(rc, lo, hi); });
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(loss_[i])) throw_range("loss: not finite at row " + std::to_string(b.rows[i]) + " of the batch");
  }
  moe::ObjectiveInput oin;
  oin.loss = loss_.data();
  oin.regret = regret_.data();
  oin.disagree = disagree_.data();
  oin.batch = n;
  oin.single_active = hard || single;
  if (hard && robust_active && obj.kind == ObjectiveKind::Robust && obj.hard_tilt == HardTilt::Top1) {
    // the routed top-1 expert's loss (every expert is active in hard training: slot k is expert k)
    grow(tilt_loss_, n);
    for (int64_t i = 0; i < n; ++i) {
      const float* r = f.r.data() + i * K;
      int64_t arg = 0;
      for (int64_t k = 1; k < K; ++k) if (r[k] > r[arg]) arg = k;
      tilt_loss_[i] = entry_loss_[f.entry_pos[i * f.a + arg]];
    }
    oin.tilt_loss = tilt_loss_.data();
  }
  const moe::ObjectiveResult objr = moe::objective_coefficients(obj, robust_active, oin, coef_.data());

  // load-balancing loss: Switch alpha K sum_k f_k P_k (f_k = share of rows whose argmax is k, held
  // constant), or the squared-mean-gate form alpha K sum_k P_k^2; P_k = mean_B r_k
  Vec<double>& frac = frac_;
  Vec<double>& mean_r = mean_r_;
  frac.assign(std::size_t(K), 0.0);
  mean_r.assign(std::size_t(K), 0.0);
  double balance = 0;
  if (obj.balance_alpha > 0) {
    for (int64_t i = 0; i < n; ++i) {
      const float* r = f.r.data() + i * K;
      int64_t arg = 0;
      for (int64_t k = 1; k < K; ++k) if (r[k] > r[arg]) arg = k;
      frac[arg] += 1.0 / double(n);
      for (int64_t k = 0; k < K; ++k) mean_r[k] += double(r[k]) / double(n);
    }
    for (int64_t k = 0; k < K; ++k)
      balance += obj.balance_alpha * double(K) * (obj.balance_form == BalanceForm::Switch ? frac[k] : mean_r[k]) * mean_r[k];
  }

  // backward of the per-row math: expert-logit gradients (per entry) and router-logit gradients
  Vec<float>& balance_grad = balance_grad_;
  if (obj.balance_alpha > 0) {
    balance_grad.resize(static_cast<std::size_t>(K));
    // d/d r_ik: alpha K f_k / n (Switch), 2 alpha K P_k / n (squared mean)
    for (int64_t k = 0; k < K; ++k)
      balance_grad[k] = float(obj.balance_alpha * double(K) * (obj.balance_form == BalanceForm::Switch ? frac[k] : 2.0 * mean_r[k]) / double(n));
    rc.balance = balance_grad.data();
  }
  rc.coef = coef_.data();
  rc.dz = dz_.data();
  rc.dr = dr_.data();
  rc.dg = dg_.data();
  for_rows(n, [&](int64_t lo, int64_t hi) { rows.backward(rc, lo, hi); });

  // experts backward: per layer from the last, one grouped GEMM per product
  std::fill(grad_.begin(), grad_.end(), 0.0f);
  {
    const int64_t L = expert_.layers();
    Vec<int64_t>& act_off = act_off_;  // offset of hidden layer l's activations (l >= 1)
    act_off.assign(std::size_t(L), 0);
    for (int64_t l = 1, off = 0; l < L; ++l) {
      act_off[l] = off;
      off += E * expert_.dims[l];
    }
    grow(dh_a_, E * *std::max_element(expert_.dims.begin(), expert_.dims.end()));
    grow(dh_b_, E * *std::max_element(expert_.dims.begin(), expert_.dims.end()));
    float* delta = dz_.data();  // gradient w.r.t. layer l's output, entries x dims[l + 1]
    std::vector<GemmArgs>& gs = gemms_;
    for (int64_t l = L - 1; l >= 0; --l) {
      const int64_t in_dim = expert_.dims[l], out_dim = expert_.dims[l + 1];
      gs.clear();
      for (int64_t k = 0; k < K; ++k) {
        const int64_t nk = f.count[k], o = f.offset[k];
        if (nk == 0) continue;
        GemmArgs g;  // dW_l = input^T delta  (in_dim x out_dim), summed over the expert's rows
        g.M = in_dim;
        g.N = out_dim;
        g.K = nk;
        g.a = l == 0 ? GemmOperand{b.x, d, true, f.entry_x.data() + o} : GemmOperand{f.eact.data() + act_off[l] + o * in_dim, in_dim, true, nullptr};
        g.b = GemmOperand{delta + o * out_dim, out_dim, false, nullptr};
        g.c = grad_.data() + layout_.expert_offset[k] + expert_.weight_offset(l);
        g.ldc = out_dim;
        gs.push_back(g);
      }
      sgemm_batch(gs.data(), int64_t(gs.size()));
      for (int64_t k = 0; k < K; ++k) {
        if (f.count[k] == 0) continue;
        column_sums(delta + f.offset[k] * out_dim, f.count[k], out_dim, out_dim, grad_.data() + layout_.expert_offset[k] + expert_.bias_offset(l));
      }
      if (l == 0) break;
      // delta of the previous layer: (delta W_l^T) * act'(pre_{l})
      float* next = delta == dh_a_.data() ? dh_b_.data() : dh_a_.data();
      gs.clear();
      for (int64_t k = 0; k < K; ++k) {
        const int64_t nk = f.count[k], o = f.offset[k];
        if (nk == 0) continue;
        GemmArgs g;
        g.M = nk;
        g.N = in_dim;
        g.K = out_dim;
        g.a = GemmOperand{delta + o * out_dim, out_dim, false, nullptr};
        g.b = GemmOperand{W(expert_, layout_.expert_offset[k], l), out_dim, true, nullptr};
        g.c = next + o * in_dim;
        g.ldc = in_dim;
        g.dact = gemm_act(c_.activation);
        g.dact_pre = f.epre.data() + act_off[l] + o * in_dim;
        g.ld_dact = in_dim;
        gs.push_back(g);
      }
      sgemm_batch(gs.data(), int64_t(gs.size()));
      delta = next;
    }
  }
  // router backward (same structure, batch rows gathered from x)
  {
    const int64_t L = router_.layers();
    Vec<int64_t>& act_off = act_off_;
    act_off.assign(std::size_t(L), 0);
    for (int64_t l = 1, off = 0; l < L; ++l) {
      act_off[l] = off;
      off += n * router_.dims[l];
    }
    grow(dh_a_, n * *std::max_element(router_.dims.begin(), router_.dims.end()));
    grow(dh_b_, n * *std::max_element(router_.dims.begin(), router_.dims.end()));
    float* delta = dg_.data();
    for (int64_t l = L - 1; l >= 0; --l) {
      const int64_t in_dim = router_.dims[l], out_dim = router_.dims[l + 1];
      GemmArgs g;
      g.M = in_dim;
      g.N = out_dim;
      g.K = n;
      g.a = l == 0 ? GemmOperand{b.x, d, true, f.xrows.data()} : GemmOperand{f.ract.data() + act_off[l], in_dim, true, nullptr};
      g.b = GemmOperand{delta, out_dim, false, nullptr};
      g.c = grad_.data() + layout_.router_offset + router_.weight_offset(l);
      g.ldc = out_dim;
      sgemm(g);
      column_sums(delta, n, out_dim, out_dim, grad_.data() + layout_.router_offset + router_.bias_offset(l));
      if (l == 0) break;
      float* next = delta == dh_a_.data() ? dh_b_.data() : dh_a_.data();
      GemmArgs h;
      h.M = n;
      h.N = in_dim;
      h.K = out_dim;
      h.a = GemmOperand{delta, out_dim, false, nullptr};
      h.b = GemmOperand{W(router_, layout_.router_offset, l), out_dim, true, nullptr};
      h.c = next;
      h.ldc = in_dim;
      h.dact = gemm_act(c_.activation);
      h.dact_pre = f.rpre.data() + act_off[l];
      h.ld_dact = in_dim;
      sgemm(h);
      delta = next;
    }
  }

  StepStats st;
  double loss_sum = 0;
  int64_t hits = 0;
  for (int64_t i = 0; i < n; ++i) {
    loss_sum += loss_[i];
    hits += correct[i];
  }
  st.mean_loss = loss_sum / double(n);
  st.objective = objr.value + balance;
  st.accuracy = double(hits) / double(n);
  st.filtered = objr.filtered;
  return st;
}

double CpuEngine::update(const OptimizerConfig& o, double lr) {
  const int64_t P = layout_.total;
  // global gradient norm in a fixed order (chunks of 64K, partials summed in order)
  const int64_t chunk = int64_t(1) << 16, chunks = (P + chunk - 1) / chunk;
  Vec<double>& part = norm_parts_;
  part.assign(std::size_t(chunks), 0.0);
  parallel_for(chunks, [&](int64_t c2, int) {
    double s = 0;
    for (int64_t i = c2 * chunk, e = std::min(P, (c2 + 1) * chunk); i < e; ++i) s += double(grad_[i]) * double(grad_[i]);
    part[c2] = s;
  });
  double sq = 0;
  for (double v : part) sq += v;
  const double norm = std::sqrt(sq);
  if (!std::isfinite(norm)) return norm;
  if (m_.empty()) {
    m_.assign(std::size_t(P), 0.0f);
    if (o.kind == OptimizerKind::AdamW) v_.assign(std::size_t(P), 0.0f);
    next_.assign(std::size_t(P), 0.0f);
  }
  ++steps_;
  const float scale = (o.clip_norm > 0 && norm > o.clip_norm) ? float(o.clip_norm / (norm + 1e-6)) : 1.0f;
  const opt::Hyper h = opt::hyper(o, lr, steps_, scale);
  const bool first = steps_ == 1;
  std::atomic<bool> finite{true};
  float* vs = v_.empty() ? nullptr : v_.data();
  parallel_for(chunks, [&](int64_t c2, int) {
    bool ok = true;
    float dummy = 0.0f;
    for (int64_t i = c2 * chunk, e = std::min(P, (c2 + 1) * chunk); i < e; ++i) {
      float& vi = vs ? vs[i] : dummy;
      const float np = opt::update(h, params_[i], grad_[i], m_[i], vi, first);
      ok &= std::isfinite(np);
      next_[i] = np;
    }
    if (!ok) finite.store(false);
  });
  if (!finite.load()) return std::numeric_limits<double>::infinity();
  std::memcpy(params_, next_.data(), std::size_t(P) * sizeof(float));
  return norm;
}

void CpuEngine::predict(const float* x, int64_t rows, const PredictOutputs& out) {
  const int64_t K = c_.experts, C = c_.classes;
  // ~1024 rows per expert per chunk keeps each expert's input and hidden activations in cache
  // (measured on W2: soft best at 1024-row chunks, top-1 flat from 4096 rows up)
  const int64_t a = moe_active_experts(c_, false);
  const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(rows, std::clamp<int64_t>(1024 * K / a, 1024, 8192)));
  Vec<int32_t>& idx = predict_rows_;
  idx.resize(static_cast<std::size_t>(chunk));
  infer_.keep_logits = out.expert_logits != nullptr;
  for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
    const int64_t n = std::min(chunk, rows - r0);
    for (int64_t i = 0; i < n; ++i) idx[i] = int32_t(r0 + i);
    forward(infer_, x, idx.data(), n, false);
    std::memcpy(out.probs + r0 * C, infer_.p.data(), std::size_t(n * C) * sizeof(float));
    if (out.routing) std::memcpy(out.routing + r0 * K, infer_.r.data(), std::size_t(n * K) * sizeof(float));
    if (out.selected) std::memcpy(out.selected + r0 * a, infer_.sel.data(), std::size_t(n * a) * sizeof(int32_t));
    if (out.gates) std::memcpy(out.gates + r0 * a, infer_.gate.data(), std::size_t(n * a) * sizeof(float));
    if (out.expert_probs) {
      for (int64_t i = 0; i < n; ++i)
        for (int64_t s = 0; s < a; ++s)
          std::memcpy(out.expert_probs + ((r0 + i) * a + s) * C, infer_.p_expert.data() + int64_t(infer_.entry_pos[i * a + s]) * C,
                      std::size_t(C) * sizeof(float));
    }
    if (out.expert_logits) {
      for (int64_t i = 0; i < n; ++i)
        for (int64_t s = 0; s < a; ++s)
          std::memcpy(out.expert_logits + ((r0 + i) * a + s) * C, infer_.z_expert.data() + int64_t(infer_.entry_pos[i * a + s]) * C,
                      std::size_t(C) * sizeof(float));
    }
  }
}

}  // namespace

std::unique_ptr<moe::Engine> make_moe_engine(const MoEConfig& c, float* params, const float* temps, int64_t max_batch) {
  return std::make_unique<CpuEngine>(c, params, temps, max_batch);
}

}  // namespace calmoe::cpu
