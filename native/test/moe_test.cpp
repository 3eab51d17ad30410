// MoE CPU engine against the naive double-precision reference (moe_reference.h): objective values,
// every parameter's gradient against finite differences of the reference (ScatterMoE-style), on
// odd sizes and every routing mode, objective and layer shape; plus routing truth tables, a
// one-expert MoE as a plain MLP, top-k with k = K as soft, predict outputs, determinism across
// thread counts, and bad input.
#include <cstring>

#include "core/moe_engine.h"
#include "core/moe_math.h"
#include "cpu/moe_rows.h"
#include "moe_reference.h"
#include "moe_cases.h"
#include "test_util.h"

using namespace calmoe;
using moe_cases::Case;
using moe_cases::cfg;
using moe_cases::obj;

namespace {

// Checks the engine's objective and gradient against the reference at a random point.
void check_case(const Case& cs, uint64_t seed, int max_params_checked = 400) {
  const MoEConfig& c = cs.c;
  const ParamLayout lay = moe_layout(c);
  std::vector<float> params(lay.total);
  moe_init_params(c, params.data(), seed, InitKind::Normal, 0.6f);  // large weights: peaked, varied routing
  t::Rng rng(seed);
  const int64_t B = cs.batch;
  std::vector<float> x(B * c.input_dim);
  for (auto& v : x) v = rng.normal(1.0f);
  const auto y = t::random_labels(rng, B, c.classes);
  std::vector<int32_t> rows(B);
  for (int64_t i = 0; i < B; ++i) rows[i] = int32_t(i);
  std::vector<float> temps(c.experts, 1.0f);
  if (cs.temps) for (int64_t k = 0; k < c.experts; ++k) temps[k] = 0.5f + 0.3f * float(k);

  auto engine = moe::make_engine(Device::Cpu, c, params.data(), cs.temps ? temps.data() : nullptr, B);
  moe::Batch b{x.data(), y.data(), rows.data(), B};
  const StepStats st = engine->forward_backward(b, cs.o, cs.robust_active);
  const float* g = engine->gradient();

  std::vector<double> pd(params.begin(), params.end());
  ref::Frozen fz;
  const double L0 = ref::objective(c, cs.o, cs.robust_active, pd.data(), temps, x.data(), y.data(), B, nullptr, &fz);
  double balance = 0;
  (void)balance;
  CHECK_CLOSE(st.objective, L0, 1e-5, 1e-4);

  // finite differences of the reference in double, on every parameter (or a seeded sample)
  std::vector<int64_t> which(lay.total);
  for (int64_t i = 0; i < lay.total; ++i) which[i] = i;
  if (lay.total > max_params_checked) {
    std::shuffle(which.begin(), which.end(), rng.g);
    which.resize(max_params_checked);
  }
  int bad = 0;
  for (int64_t i : which) {
    const double h = 1e-6 * std::max(1.0, std::fabs(pd[i]));
    const double keep = pd[i];
    pd[i] = keep + h;
    const double up = ref::objective(c, cs.o, cs.robust_active, pd.data(), temps, x.data(), y.data(), B, &fz, nullptr);
    pd[i] = keep - h;
    const double dn = ref::objective(c, cs.o, cs.robust_active, pd.data(), temps, x.data(), y.data(), B, &fz, nullptr);
    pd[i] = keep;
    const double fd = (up - dn) / (2 * h);
    if (!t::close(g[i], fd, 2e-5, 2e-3)) {
      if (++bad <= 5) {
        char msg[256];
        std::snprintf(msg, sizeof msg, "%s: d/d param %lld: engine %.8g, reference %.8g", cs.name, (long long)i, double(g[i]), fd);
        t::fail(__FILE__, __LINE__, msg);
      }
    }
  }
}

TEST(gradients_match_the_reference_every_mode) {
  const auto relu = Activation::Relu, gelu = Activation::Gelu;
  std::vector<Case> cases = {
      {"soft linear K=1 (plain MLP)", cfg(5, 3, 1, Routing::Soft, 1, {}, {}), obj(ObjectiveKind::Erm), 13},
      {"soft mlp K=3", cfg(6, 4, 3, Routing::Soft, 3, {5}, {}), obj(ObjectiveKind::Erm), 13},
      {"soft gelu mlp router", cfg(6, 3, 3, Routing::Soft, 3, {4}, {5}, gelu, 0.7f), obj(ObjectiveKind::Erm), 13, true, true},
      {"top2 of 3", cfg(6, 4, 3, Routing::TopK, 2, {5}, {}), obj(ObjectiveKind::Erm), 13},
      {"top2 of 8", cfg(5, 3, 8, Routing::TopK, 2, {4}, {}), obj(ObjectiveKind::Erm), 13},
      {"topK=K of 3", cfg(5, 3, 3, Routing::TopK, 3, {4}, {}), obj(ObjectiveKind::Erm), 13},
      {"top1 switch of 3", cfg(6, 4, 3, Routing::TopK, 1, {5}, {}), obj(ObjectiveKind::Erm), 13},
      {"hard competitive of 3", cfg(6, 4, 3, Routing::Hard, 1, {5}, {}), obj(ObjectiveKind::Erm), 13},
      {"hard mlp router gelu", cfg(6, 3, 3, Routing::Hard, 1, {4}, {4}, gelu), obj(ObjectiveKind::Erm), 13, true, true},
      {"robust term soft", cfg(6, 4, 3, Routing::Soft, 3, {5}, {}), obj(ObjectiveKind::Robust, TiltGradient::Term, 2.0), 13},
      {"robust through top2", cfg(6, 4, 3, Routing::TopK, 2, {5}, {}), obj(ObjectiveKind::Robust, TiltGradient::Through, 2.0), 13},
      {"robust through negative eta", cfg(6, 4, 3, Routing::Soft, 3, {}, {}), obj(ObjectiveKind::Robust, TiltGradient::Through, -1.0), 13},
      {"robust hard", cfg(6, 4, 3, Routing::Hard, 1, {5}, {}), obj(ObjectiveKind::Robust, TiltGradient::Through, 1.0), 13},
      {"filtered term soft", cfg(6, 4, 3, Routing::Soft, 3, {5}, {}), obj(ObjectiveKind::RobustFiltered, TiltGradient::Term, 2.0), 13},
      {"filtered through top2", cfg(6, 4, 3, Routing::TopK, 2, {5}, {}), obj(ObjectiveKind::RobustFiltered, TiltGradient::Through, 2.0), 13},
      {"filtered hard (reduces to 2x ERM)", cfg(6, 4, 3, Routing::Hard, 1, {5}, {}), obj(ObjectiveKind::RobustFiltered), 13},
      {"robust warm-up (inactive)", cfg(6, 4, 3, Routing::Soft, 3, {5}, {}), obj(ObjectiveKind::Robust, TiltGradient::Through, 2.0), 13, false},
      {"balance loss top2", cfg(6, 4, 3, Routing::TopK, 2, {5}, {}), obj(ObjectiveKind::Erm, TiltGradient::Term, 0, 0.3), 13},
      {"balance + two hidden layers", cfg(5, 3, 3, Routing::Soft, 3, {4, 3}, {}, relu), obj(ObjectiveKind::Erm, TiltGradient::Term, 0, 0.2), 13},
      {"batch of one", cfg(6, 4, 3, Routing::TopK, 2, {5}, {}), obj(ObjectiveKind::Robust, TiltGradient::Through, 2.0), 1},
      {"d=100 K=8 top2", cfg(100, 10, 8, Routing::TopK, 2, {8}, {}), obj(ObjectiveKind::Robust, TiltGradient::Term, 0.5), 33},
      {"B=1977 soft", cfg(7, 3, 3, Routing::Soft, 3, {4}, {}), obj(ObjectiveKind::Robust, TiltGradient::Through, 1.0), 1977},
  };
  ObjectiveConfig sq = obj(ObjectiveKind::Erm, TiltGradient::Term, 0, 0.3);
  sq.balance_form = BalanceForm::SquaredMean;
  cases.push_back({"squared-mean balance soft", cfg(6, 4, 3, Routing::Soft, 3, {5}, {}), sq, 13});
  cases.push_back({"squared-mean balance top2", cfg(6, 4, 4, Routing::TopK, 2, {5}, {}), sq, 13});
  sq.kind = ObjectiveKind::Robust;
  cases.push_back({"squared-mean balance hard robust", cfg(6, 4, 3, Routing::Hard, 1, {5}, {}), sq, 13});
  ObjectiveConfig top1 = obj(ObjectiveKind::Robust, TiltGradient::Term, 2.0);
  top1.hard_tilt = HardTilt::Top1;
  cases.push_back({"hard robust, tilt on the top-1 expert's loss", cfg(6, 4, 3, Routing::Hard, 1, {5}, {}), top1, 13});
  cases.push_back({"hard robust, tilt on top-1, mlp router", cfg(6, 3, 4, Routing::Hard, 1, {4}, {4}), top1, 17});
  ObjectiveConfig med = obj(ObjectiveKind::RobustFiltered, TiltGradient::Through, 2.0);
  med.median_disagreement = true;
  cases.push_back({"filtered median", cfg(6, 4, 3, Routing::Soft, 3, {5}, {}), med, 14});
  uint64_t seed = 100;
  for (const Case& cs : cases) check_case(cs, seed++, cs.batch > 100 ? 60 : 400);
}

TEST(routing_truth_tables) {
  int32_t sel[4];
  float gate[4];
  const float r[4] = {0.1f, 0.4f, 0.4f, 0.1f};
  moe::select_experts(r, 4, Routing::TopK, 2, sel, gate);
  CHECK(sel[0] == 1 && sel[1] == 2);  // the tie 0.4 = 0.4 keeps both, ascending
  CHECK_CLOSE(gate[0], 0.5, 0, 1e-7);
  moe::select_experts(r, 4, Routing::TopK, 1, sel, gate);
  CHECK(sel[0] == 1 && gate[0] == 1.0f);  // ties go to the lower index
  const float r2[4] = {0.25f, 0.25f, 0.25f, 0.25f};
  moe::select_experts(r2, 4, Routing::TopK, 3, sel, gate);
  CHECK(sel[0] == 0 && sel[1] == 1 && sel[2] == 2);
  moe::select_experts(r2, 4, Routing::Hard, 1, sel, gate);
  CHECK(sel[0] == 0);
  const float r3[3] = {0.2f, 0.3f, 0.5f};
  const float denom = moe::select_experts(r3, 3, Routing::TopK, 2, sel, gate);
  CHECK(sel[0] == 1 && sel[1] == 2);
  CHECK_CLOSE(denom, 0.8, 0, 1e-6);
  CHECK_CLOSE(gate[0], 0.375, 0, 1e-6);
}

std::vector<float> predict_probs(const MoEConfig& c, const std::vector<float>& params, const std::vector<float>& x, int64_t n,
                                 PredictOutputs* extra = nullptr) {
  std::vector<float> p(n * c.classes);
  PredictOutputs out;
  if (extra) out = *extra;
  out.probs = p.data();
  moe_predict(Device::Cpu, c, params.data(), nullptr, x.data(), n, out);
  return p;
}

TEST(one_expert_is_a_plain_mlp_and_topk_K_is_soft) {
  t::Rng rng(7);
  const int64_t n = 37;
  MoEConfig c = cfg(9, 4, 1, Routing::Soft, 1, {6}, {});
  std::vector<float> params(moe_layout(c).total);
  moe_init_params(c, params.data(), 3, InitKind::Default, 0);
  std::vector<float> x(n * 9);
  for (auto& v : x) v = rng.normal();
  const auto p = predict_probs(c, params, x, n);
  std::vector<double> pd(params.begin(), params.end());
  const ParamLayout lay = moe_layout(c);
  for (int64_t i = 0; i < n; ++i) {
    ref::V xi(x.begin() + i * 9, x.begin() + (i + 1) * 9);
    const ref::V want = ref::softmax(ref::mlp(c, {9, 6, 4}, pd.data() + lay.expert_offset[0], xi), 1.0);
    for (int j = 0; j < 4; ++j) CHECK_CLOSE(p[i * 4 + j], want[j], 1e-6, 1e-5);
  }
  MoEConfig soft = cfg(9, 4, 5, Routing::Soft, 5, {6}, {});
  MoEConfig topk = soft;
  topk.routing = Routing::TopK;
  std::vector<float> p5(moe_layout(soft).total);
  moe_init_params(soft, p5.data(), 4, InitKind::Default, 0);
  const auto a = predict_probs(soft, p5, x, n), b = predict_probs(topk, p5, x, n);
  for (std::size_t i = 0; i < a.size(); ++i) CHECK_CLOSE(b[i], a[i], 1e-7, 1e-5);
}

TEST(predict_returns_routing_selection_and_expert_probs) {
  t::Rng rng(8);
  const int64_t n = 13, K = 4, C = 3;
  MoEConfig c = cfg(5, C, K, Routing::TopK, 2, {4}, {});
  std::vector<float> params(moe_layout(c).total);
  moe_init_params(c, params.data(), 5, InitKind::Normal, 0.8f);
  std::vector<float> x(n * 5);
  for (auto& v : x) v = rng.normal();
  std::vector<float> r(n * K), gate(n * 2), ep(n * 2 * C);
  std::vector<int32_t> sel(n * 2);
  PredictOutputs o;
  o.routing = r.data();
  o.selected = sel.data();
  o.gates = gate.data();
  o.expert_probs = ep.data();
  const auto p = predict_probs(c, params, x, n, &o);
  for (int64_t i = 0; i < n; ++i) {
    double sr = 0;
    for (int64_t k = 0; k < K; ++k) sr += r[i * K + k];
    CHECK_CLOSE(sr, 1.0, 1e-6, 0);
    CHECK(sel[i * 2] < sel[i * 2 + 1]);
    for (int64_t j = 0; j < C; ++j)
      CHECK_CLOSE(p[i * C + j], gate[i * 2] * ep[(i * 2) * C + j] + gate[i * 2 + 1] * ep[(i * 2 + 1) * C + j], 1e-7, 1e-6);
  }
  c.routing = Routing::Hard;
  std::vector<float> g1(n), e1(n * C);
  std::vector<int32_t> s1(n);
  PredictOutputs h;
  h.routing = r.data();
  h.selected = s1.data();
  h.gates = g1.data();
  h.expert_probs = e1.data();
  const auto ph = predict_probs(c, params, x, n, &h);
  for (int64_t i = 0; i < n; ++i) {
    int64_t arg = 0;
    for (int64_t k = 1; k < K; ++k) if (r[i * K + k] > r[i * K + arg]) arg = k;
    CHECK_EQ(s1[i], int32_t(arg));
    CHECK_EQ(g1[i], 1.0f);
    for (int64_t j = 0; j < C; ++j) CHECK_EQ(ph[i * C + j], e1[i * C + j]);  // exactly the chosen expert
  }
}

TEST(training_is_deterministic_across_thread_counts) {
  t::Rng rng(9);
  const int64_t n = 700;
  MoEConfig c = cfg(12, 5, 4, Routing::TopK, 2, {16}, {});
  std::vector<float> x(n * 12);
  for (auto& v : x) v = rng.normal();
  const auto y = t::random_labels(rng, n, 5);
  Dataset ds{x.data(), y.data(), n};
  FitConfig f;
  f.epochs = 2;
  f.batch_size = 64;
  f.seed = 11;
  f.objective = obj(ObjectiveKind::Robust, TiltGradient::Term, 1.0, 0.01);
  std::vector<std::vector<float>> out;
  const int threads = cpu_threads();
  for (int th : {1, 2}) {
    set_cpu_threads(th);
    std::vector<float> params(moe_layout(c).total);
    moe_init_params(c, params.data(), 1, InitKind::Default, 0);
    moe_fit(Device::Cpu, c, params.data(), nullptr, ds, nullptr, f, nullptr, {}, nullptr);
    out.push_back(params);
  }
  set_cpu_threads(threads);
  CHECK(out[0] == out[1]);
}

TEST(training_reduces_the_loss_and_divergence_is_caught) {
  t::Rng rng(10);
  const int64_t n = 512;
  MoEConfig c = cfg(8, 3, 3, Routing::Soft, 3, {16}, {});
  std::vector<float> x(n * 8);
  std::vector<int32_t> y(n);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < 8; ++j) x[i * 8 + j] = rng.normal();
    y[i] = x[i * 8] > 0.5f ? 2 : (x[i * 8 + 1] > 0 ? 1 : 0);
  }
  Dataset ds{x.data(), y.data(), n};
  FitConfig f;
  f.epochs = 15;
  f.batch_size = 64;
  f.optimizer.lr = 1e-2;
  std::vector<float> params(moe_layout(c).total);
  moe_init_params(c, params.data(), 1, InitKind::Default, 0);
  const auto hist = moe_fit(Device::Cpu, c, params.data(), nullptr, ds, &ds, f, nullptr, {}, nullptr);
  CHECK(hist.back().loss < 0.5 * hist.front().loss);
  CHECK(hist.back().val_accuracy > 0.9);
  // a huge learning rate diverges: the error names the step and the parameters stay finite
  f.optimizer.kind = OptimizerKind::Sgd;
  f.optimizer.lr = 1e30;
  f.epochs = 3;
  CHECK_THROWS(moe_fit(Device::Cpu, c, params.data(), nullptr, ds, nullptr, f, nullptr, {}, nullptr), ErrorKind::Range, "training diverged at step");
  for (float v : params) CHECK(std::isfinite(v));
}

TEST(cancellation_stops_between_steps) {
  t::Rng rng(12);
  const int64_t n = 256;
  MoEConfig c = cfg(4, 2, 2, Routing::Soft, 2, {}, {});
  std::vector<float> x(n * 4);
  for (auto& v : x) v = rng.normal();
  const auto y = t::random_labels(rng, n, 2);
  Dataset ds{x.data(), y.data(), n};
  FitConfig f;
  f.epochs = 100;
  f.batch_size = 16;
  f.progress_every = 1;
  std::atomic<bool> cancel{false};
  int64_t seen = 0;
  bool cancelled = false;
  std::vector<float> params(moe_layout(c).total);
  moe_init_params(c, params.data(), 1, InitKind::Default, 0);
  const auto hist = moe_fit(Device::Cpu, c, params.data(), nullptr, ds, nullptr, f, &cancel,
                            [&](const Progress& p) { if (!p.epoch_end && ++seen == 5) cancel.store(true); }, &cancelled);
  CHECK(cancelled);
  CHECK_EQ(seen, int64_t(5));
  CHECK(hist.empty());
}

// The per-row loops are built twice (baseline and AVX2+FMA); both must give the same bits.
TEST(row_loops_simd_matches_baseline) {
  t::Rng rng(13);
  for (int64_t n : {1, 7, 8, 9, 16, 17, 100}) {  // softmax widths (router K and classes C)
    const int64_t rows = 37;
    std::vector<float> g(rows * n);
    for (auto& v : g) v = rng.normal(4.0f);
    for (int pass = 0; pass < 2; ++pass) {
      cpu::moe_rows::Ctx c;
      c.K = n;
      c.a = std::min<int64_t>(n, 2);
      c.routing = Routing::TopK;
      c.inv_tau = 0.7f;
      std::vector<float> r1(rows * n), r2(rows * n), gate1(rows * 2), gate2(rows * 2), d1(rows), d2(rows);
      std::vector<int32_t> s1(rows * 2), s2(rows * 2);
      c.g = g.data();
      c.r = r1.data(); c.sel = s1.data(); c.gate = gate1.data(); c.denom = d1.data();
      cpu::moe_rows::baseline::table().route(c, 0, rows);
      c.r = r2.data(); c.sel = s2.data(); c.gate = gate2.data(); c.denom = d2.data();
      cpu::moe_rows::avx2::table().route(c, 0, rows);
      CHECK(r1 == r2);
      CHECK(s1 == s2);
      CHECK(gate1 == gate2);
    }
  }
  // expert softmax over runs of entries (blocks of 8 rows and a remainder), per temperature
  for (int64_t C : {1, 3, 8, 10, 16, 17}) {
    const int64_t entries = 45;
    std::vector<float> z(entries * C);
    for (auto& v : z) v = rng.normal(3.0f);
    std::vector<int64_t> offset = {0, 9, 9, 30, entries};  // experts of 9, 0, 21 and 15 entries
    std::vector<float> inv_t = {1.0f, 0.5f, 2.0f, 0.8f};
    cpu::moe_rows::Ctx c;
    c.C = C;
    c.offset = offset.data();
    c.inv_temp = inv_t.data();
    std::vector<float> a = z, b = z;
    c.p_expert = a.data();
    cpu::moe_rows::baseline::table().expert_softmax(c, 0, entries);
    c.p_expert = b.data();
    cpu::moe_rows::avx2::table().expert_softmax(c, 3, 40);  // a run split at both ends
    cpu::moe_rows::avx2::table().expert_softmax(c, 0, 3);
    cpu::moe_rows::avx2::table().expert_softmax(c, 40, entries);
    CHECK(a == b);
  }
}

TEST(bad_input) {
  MoEConfig c = cfg(4, 3, 2, Routing::TopK, 3, {}, {});
  CHECK_THROWS(moe_check_config(c), ErrorKind::Range, "topK: expected an integer in [1, experts = 2]");
  c.top_k = 1;
  c.router_temperature = 0;
  CHECK_THROWS(moe_check_config(c), ErrorKind::Range, "routerTemperature");
  c.router_temperature = 1;
  std::vector<float> params(moe_layout(c).total, 0.0f);
  std::vector<float> x(8, 0.0f);
  std::vector<int32_t> y = {0, 3};
  Dataset ds{x.data(), y.data(), 2};
  FitConfig f;
  CHECK_THROWS(moe_fit(Device::Cpu, c, params.data(), nullptr, ds, nullptr, f, nullptr, {}, nullptr), ErrorKind::Range, "labels[1] = 3 is outside [0, 3)");
  y[1] = 1;
  x[5] = NAN;
  CHECK_THROWS(moe_fit(Device::Cpu, c, params.data(), nullptr, ds, nullptr, f, nullptr, {}, nullptr), ErrorKind::Range, "row 1, feature 1 is not finite");
  x[5] = 0;
  f.batch_size = 0;
  CHECK_THROWS(moe_fit(Device::Cpu, c, params.data(), nullptr, ds, nullptr, f, nullptr, {}, nullptr), ErrorKind::Range, "batchSize");
}

}  // namespace

TEST_MAIN("moe")
