// The CUDA MoE engine (native/cuda/moe_engine.cu) against the CPU engine, which moe_test checks
// against finite differences of a double-precision reference. In FP32 mode (every config here but
// the tensor-core test's) the CUDA engine keeps every summation order of the CPU engine on its
// builtin GEMM, so results are compared for the SAME BITS (the "exact for TF32-off"):
//   - one forward_backward on the same batch, for every routing mode, expert/router shape,
//     activation, objective, class count (the warp-per-row head's 1, 2, 4 and 8 chunks per lane and
//     the thread-per-row head beyond) and odd batch size: StepStats and every gradient element,
//     and the same bits on a second CUDA run;
//   - the per-row head and backward kernels alone against the CPU's row bodies: every output;
//   - 50-step moe_fit on both devices with the same data, seed and config: per-step objective,
//     epoch logs and final parameters (the gradient norm, a double sum in another order, within
//     1e-12 relative), and two CUDA fits give the same bits;
//   - predict (probs, routing, selected experts, gates, each active expert's probs) over rows that
//     span several prediction chunks;
//   - the dispatch alone (stable order: an expert's entries in ascending row order) against the
//     CPU's fill, with empty experts, one expert taking every row, chunk edges;
//   - a routing truth table (router weights 0, tied biases): ties go to the lower index, empty
//     experts get exactly zero gradient;
//   - the objective's coefficients on the device alone against the CPU's (robust, robust-filtered
//     with a threshold or the batch median), on batches up to 100000 rows;
//   - the update's divergence contract and bad input.
// Skipped, loudly, without a usable GPU (exit 77).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <type_traits>

#include "core/moe_engine.h"
#include "core/moe_math.h"
#include "core/moe_row_bodies.h"
#include "cpu/gemm.h"
#include "moe_cases.h"
#include "test_util.h"

#if CALMOE_WITH_CUDA
#include "cuda/cublaslt_gemm.cuh"
#include "cuda/gemm.cuh"
#include "cuda/moe_rows.cuh"
#include "cuda/objective.cuh"
#include "cuda/runtime.cuh"
#endif

using namespace calmoe;
using moe_cases::Case;
using moe_cases::cfg;
using moe_cases::obj;

namespace {

// The name of the parameter tensor holding flat index i ("experts.2.0.weight[17]").
std::string param_name(const ParamLayout& lay, int64_t i) {
  for (const ParamTensor& t : lay.tensors) {
    int64_t n = 1;
    for (int64_t s : t.shape) n *= s;
    if (i >= t.offset && i < t.offset + n) return t.name + "[" + std::to_string(i - t.offset) + "]";
  }
  return "?";
}

// Compares arrays element by element within atol + rtol |want| (0, 0: the same values); reports the first few offenders
// by name (when a layout is given) and returns the count; prints the share of identical bits.
int64_t compare(const char* what, const std::string& tag, const float* got, const float* want, int64_t n, double atol, double rtol,
                const ParamLayout* lay = nullptr, bool quiet = false) {
  int64_t bad = 0, same = 0;
  double worst = 0;
  for (int64_t i = 0; i < n; ++i) {
    same += std::memcmp(&got[i], &want[i], sizeof(float)) == 0;
    worst = std::max(worst, std::fabs(double(got[i]) - double(want[i])));
    if (!t::close(got[i], want[i], atol, rtol)) {
      if (++bad <= 5) {
        char msg[512];
        std::snprintf(msg, sizeof msg, "%s: %s %s: cuda %.9g, cpu %.9g", tag.c_str(), what, lay ? param_name(*lay, i).c_str() : std::to_string(i).c_str(),
                      double(got[i]), double(want[i]));
        t::fail(__FILE__, __LINE__, msg);
      }
    }
  }
  if (bad > 5) t::fail(__FILE__, __LINE__, tag + ": " + what + ": " + std::to_string(bad) + " elements outside the tolerance in all");
  if (!quiet)
    std::printf("  info %s: %s: %lld/%lld bit-identical, max |cuda - cpu| = %.3g\n", tag.c_str(), what, (long long)same, (long long)n, worst);
  return bad;
}

std::vector<Case> step_cases() {
  const auto relu = Activation::Relu, gelu = Activation::Gelu;
  std::vector<Case> cs = {
      {"soft linear K=1 (plain MLP)", cfg(5, 3, 1, Routing::Soft, 1, {}, {}), obj(ObjectiveKind::Erm), 13},
      {"soft mlp K=3 relu", cfg(6, 4, 3, Routing::Soft, 3, {5}, {}), obj(ObjectiveKind::Erm), 13},
      {"soft gelu mlp router temps", cfg(6, 3, 3, Routing::Soft, 3, {4}, {5}, gelu, 0.7f), obj(ObjectiveKind::Erm), 13, true, true},
      {"top2 of 3", cfg(6, 4, 3, Routing::TopK, 2, {5}, {}), obj(ObjectiveKind::Erm), 13},
      {"top2 of 8 B=1977", cfg(20, 10, 8, Routing::TopK, 2, {16}, {}), obj(ObjectiveKind::Robust, TiltGradient::Term, 0.5), 1977},
      {"topK=K of 3", cfg(5, 3, 3, Routing::TopK, 3, {4}, {}), obj(ObjectiveKind::Erm), 13},
      {"top1 switch of 3", cfg(6, 4, 3, Routing::TopK, 1, {5}, {}), obj(ObjectiveKind::Erm), 13},
      {"top1 switch of 8 linear B=1977", cfg(9, 5, 8, Routing::TopK, 1, {}, {}), obj(ObjectiveKind::Erm), 1977},
      {"hard competitive of 3", cfg(6, 4, 3, Routing::Hard, 1, {5}, {}), obj(ObjectiveKind::Erm), 13},
      {"hard mlp router gelu temps", cfg(6, 3, 3, Routing::Hard, 1, {4}, {4}, gelu), obj(ObjectiveKind::Erm), 13, true, true},
      {"hard K=8 B=1977 robust term", cfg(12, 6, 8, Routing::Hard, 1, {10}, {}), obj(ObjectiveKind::Robust, TiltGradient::Term, 2.0), 1977},
      {"robust term soft", cfg(6, 4, 3, Routing::Soft, 3, {5}, {}), obj(ObjectiveKind::Robust, TiltGradient::Term, 2.0), 13},
      {"robust through top2", cfg(6, 4, 3, Routing::TopK, 2, {5}, {}), obj(ObjectiveKind::Robust, TiltGradient::Through, 2.0), 13},
      {"robust through negative eta", cfg(6, 4, 3, Routing::Soft, 3, {}, {}), obj(ObjectiveKind::Robust, TiltGradient::Through, -1.0), 13},
      {"filtered term soft", cfg(6, 4, 3, Routing::Soft, 3, {5}, {}), obj(ObjectiveKind::RobustFiltered, TiltGradient::Term, 2.0), 13},
      {"filtered through top2 of 8", cfg(7, 4, 8, Routing::TopK, 2, {5}, {}), obj(ObjectiveKind::RobustFiltered, TiltGradient::Through, 2.0), 200},
      {"filtered hard (2x ERM)", cfg(6, 4, 3, Routing::Hard, 1, {5}, {}), obj(ObjectiveKind::RobustFiltered), 13},
      {"robust warm-up (inactive)", cfg(6, 4, 3, Routing::Soft, 3, {5}, {}), obj(ObjectiveKind::Robust, TiltGradient::Through, 2.0), 13, false},
      {"balance top2 of 8", cfg(6, 4, 8, Routing::TopK, 2, {5}, {}), obj(ObjectiveKind::Erm, TiltGradient::Term, 0, 0.3), 129},
      {"balance + two hidden layers gelu", cfg(5, 3, 3, Routing::Soft, 3, {4, 3}, {6, 5}, gelu), obj(ObjectiveKind::Erm, TiltGradient::Term, 0, 0.2), 13},
      {"three hidden layers relu top2", cfg(7, 5, 3, Routing::TopK, 2, {9, 6, 4}, {}, relu), obj(ObjectiveKind::Erm), 33},
      {"batch of one top2", cfg(6, 4, 3, Routing::TopK, 2, {5}, {}), obj(ObjectiveKind::Robust, TiltGradient::Through, 2.0), 1},
      {"batch of one hard", cfg(6, 4, 8, Routing::Hard, 1, {5}, {3}), obj(ObjectiveKind::Erm), 1},
      {"d=100 K=8 top2 wide", cfg(100, 10, 8, Routing::TopK, 2, {70}, {}), obj(ObjectiveKind::Robust, TiltGradient::Term, 0.5), 333},
      {"B=1977 soft K=3 long rows", cfg(300, 3, 3, Routing::Soft, 3, {80}, {}), obj(ObjectiveKind::Robust, TiltGradient::Through, 1.0), 1977},
  };
  // rows wider than a warp (the warp-per-row head keeps 1, 2, 4 or 8 chunks of 32 classes per
  // lane; more than 256 classes take the thread-per-row head), router columns past one warp
  cs.push_back({"soft K=16 C=100 temps (the W1L head)", cfg(8, 100, 16, Routing::Soft, 16, {12}, {}), obj(ObjectiveKind::Erm), 70, true, true});
  cs.push_back({"filtered term top2 C=45", cfg(7, 45, 6, Routing::TopK, 2, {5}, {}), obj(ObjectiveKind::RobustFiltered, TiltGradient::Term, 2.0), 40});
  cs.push_back({"hard C=256 robust through temps", cfg(6, 256, 3, Routing::Hard, 1, {5}, {}), obj(ObjectiveKind::Robust, TiltGradient::Through, 1.0), 21, true, true});
  cs.push_back({"top1 C=300 (thread-per-row head)", cfg(6, 300, 4, Routing::TopK, 1, {5}, {}), obj(ObjectiveKind::Erm), 25});
  cs.push_back({"filtered soft C=300 (thread-per-row head)", cfg(6, 300, 3, Routing::Soft, 3, {}, {}), obj(ObjectiveKind::RobustFiltered, TiltGradient::Through, 2.0), 17});
  cs.push_back({"top2 of K=40 C=129 balance", cfg(6, 129, 40, Routing::TopK, 2, {5}, {}), obj(ObjectiveKind::Erm, TiltGradient::Term, 0, 0.1), 37});
  cs.push_back({"soft K=40 C=33 filtered", cfg(5, 33, 40, Routing::Soft, 40, {}, {4}), obj(ObjectiveKind::RobustFiltered, TiltGradient::Term, 1.0), 19});
  ObjectiveConfig med = obj(ObjectiveKind::RobustFiltered, TiltGradient::Through, 2.0);
  med.median_disagreement = true;
  med.tau_regret = 1e30;  // R = {dis above the median} alone (the regret of almost every row is above 1e-6)
  cs.push_back({"filtered median", cfg(6, 4, 3, Routing::Soft, 3, {5}, {}), med, 14});
  // the device objective: an odd batch's median, R over several runs of the tilted sums' tree;
  // R empty with two active experts (thresholds no row passes: 2x ERM, decided on the device)
  cs.push_back({"filtered median top2 of 8 B=1977", cfg(12, 6, 8, Routing::TopK, 2, {10}, {}), med, 1977});
  ObjectiveConfig none = obj(ObjectiveKind::RobustFiltered, TiltGradient::Term, 2.0);
  none.tau_regret = none.tau_disagreement = 1e30;
  cs.push_back({"filtered, R empty", cfg(6, 4, 3, Routing::Soft, 3, {5}, {}), none, 13});
  return cs;
}

// A dataset of n rows (x ~ N(0, 1), uniform labels) and a batch of `batch` distinct rows in a
// scrambled order (so the row gather is exercised).
struct Data {
  std::vector<float> x;
  std::vector<int32_t> y, rows;
};
Data make_data(t::Rng& rng, const MoEConfig& c, int64_t batch) {
  Data d;
  const int64_t n = batch + 7;
  d.x.resize(std::size_t(n * c.input_dim));
  for (auto& v : d.x) v = rng.normal(1.0f);
  d.y = t::random_labels(rng, n, c.classes);
  std::vector<int32_t> all(static_cast<std::size_t>(n));
  std::iota(all.begin(), all.end(), 0);
  std::shuffle(all.begin(), all.end(), rng.g);
  d.rows.assign(all.begin(), all.begin() + batch);
  return d;
}

TEST(forward_backward_matches_cpu_every_mode) {
  uint64_t seed = 100;
  for (const Case& cs : step_cases()) {
    const MoEConfig& c = cs.c;
    const ParamLayout lay = moe_layout(c);
    std::vector<float> params(std::size_t(lay.total));
    moe_init_params(c, params.data(), seed, InitKind::Normal, 0.4f);
    t::Rng rng(seed++);
    Data d = make_data(rng, c, cs.batch);
    std::vector<float> temps(std::size_t(c.experts), 1.0f);
    for (int64_t k = 0; k < c.experts; ++k) temps[k] = 0.5f + 0.3f * float(k);
    const float* tp = cs.temps ? temps.data() : nullptr;
    moe::Batch b{d.x.data(), d.y.data(), d.rows.data(), cs.batch};

    auto cpu = moe::make_engine(Device::Cpu, c, params.data(), tp, cs.batch);
    const StepStats sc = cpu->forward_backward(b, cs.o, cs.robust_active);
    const std::vector<float> gc(cpu->gradient(), cpu->gradient() + lay.total);
    auto gpu = moe::make_engine(Device::Cuda, c, params.data(), tp, cs.batch + 5);
    const StepStats sg = gpu->forward_backward(b, cs.o, cs.robust_active);
    const std::vector<float> gg(gpu->gradient(), gpu->gradient() + lay.total);

    const std::string tag = cs.name;
    CHECK_EQ(sg.objective, sc.objective);
    CHECK_EQ(sg.mean_loss, sc.mean_loss);
    CHECK_EQ(sg.accuracy, sc.accuracy);
    CHECK_EQ(sg.filtered, sc.filtered);
    if (cs.o.median_disagreement) CHECK(sc.filtered > 0 && sc.filtered < cs.batch);  // the median decides
    if (sg.objective != sc.objective) std::printf("  info %s: objective cuda %.17g cpu %.17g\n", tag.c_str(), sg.objective, sc.objective);
    compare("gradient", tag, gg.data(), gc.data(), lay.total, 0, 0, &lay);
    // deterministic: a second step on the same engine gives the same bits
    const StepStats sg2 = gpu->forward_backward(b, cs.o, cs.robust_active);
    const float* gg2 = gpu->gradient();
    CHECK(sg2.objective == sg.objective);
    if (std::memcmp(gg2, gg.data(), gg.size() * sizeof(float)) != 0) t::fail(__FILE__, __LINE__, tag + ": two CUDA steps on the same batch differ");
    // the engine never changed its parameters
    std::vector<float> back(params.size());
    gpu->sync_to_host(back.data());
    CHECK(back == params);
  }
}

// One fit per device; per-step stats through the progress callback.
struct FitRun {
  std::vector<StepStats> steps;
  std::vector<EpochLog> logs;
  std::vector<float> params;
};
FitRun fit_on(Device dev, const MoEConfig& c, const FitConfig& f, const Data& d, const Dataset* val) {
  FitRun r;
  r.params.resize(std::size_t(moe_layout(c).total));
  moe_init_params(c, r.params.data(), 5, InitKind::Default, 0);
  Dataset ds{d.x.data(), d.y.data(), int64_t(d.y.size())};
  r.logs = moe_fit(dev, c, r.params.data(), nullptr, ds, val, f, nullptr, [&](const Progress& p) {
    if (!p.epoch_end) r.steps.push_back(p.step_stats);
  }, nullptr);
  return r;
}

TEST(fifty_step_fits_match_cpu) {
  struct FitCase {
    const char* name;
    MoEConfig c;
    ObjectiveConfig o;
    OptimizerKind opt;
  };
  std::vector<FitCase> cases = {
      {"soft mlp adamw cosine clip", cfg(12, 5, 4, Routing::Soft, 4, {16}, {}), obj(ObjectiveKind::Erm), OptimizerKind::AdamW},
      {"top2 sgd momentum robust term", cfg(12, 5, 4, Routing::TopK, 2, {16}, {}), obj(ObjectiveKind::Robust, TiltGradient::Term, 0.5), OptimizerKind::Sgd},
      {"top1 sgd", cfg(12, 5, 4, Routing::TopK, 1, {16}, {}), obj(ObjectiveKind::Erm), OptimizerKind::Sgd},
      {"hard gelu mlp router robust through", cfg(12, 5, 4, Routing::Hard, 1, {16}, {8}, Activation::Gelu), obj(ObjectiveKind::Robust, TiltGradient::Through, 1.0), OptimizerKind::AdamW},
      {"filtered top2 + balance", cfg(12, 5, 8, Routing::TopK, 2, {16}, {}), obj(ObjectiveKind::RobustFiltered, TiltGradient::Term, 2.0, 0.01), OptimizerKind::Sgd},
  };
  for (const FitCase& fc : cases) {
    t::Rng rng(77);
    const MoEConfig& c = fc.c;
    Data d = make_data(rng, c, 633);  // 640 rows: 10 batches of 64 per epoch, 5 epochs
    for (int64_t i = 0; i < 640; ++i)  // a learnable rule, so the loss moves
      d.y[i] = (d.x[i * c.input_dim] > 0 ? 1 : 0) + (d.x[i * c.input_dim + 1] > 0.5f ? 2 : 0);
    Data v = make_data(rng, c, 93);
    Dataset val{v.x.data(), v.y.data(), int64_t(v.y.size())};
    FitConfig f;
    f.epochs = 5;
    f.batch_size = 64;
    f.seed = 3;
    f.progress_every = 1;
    f.objective = fc.o;
    f.objective.warmup_epochs = fc.o.kind == ObjectiveKind::Erm ? 0 : 1;
    f.optimizer.kind = fc.opt;
    if (fc.opt == OptimizerKind::Sgd) {
      f.optimizer.lr = 0.05;
      f.optimizer.momentum = 0.9;
    } else {
      f.optimizer.lr = 1e-2;
      f.optimizer.clip_norm = 1.0;
      f.schedule.kind = ScheduleKind::Cosine;
      f.schedule.warmup_steps = 5;
    }
    const FitRun a = fit_on(Device::Cpu, c, f, d, &val);
    const FitRun b = fit_on(Device::Cuda, c, f, d, &val);
    const std::string tag = fc.name;
    CHECK_EQ(b.steps.size(), std::size_t(50));
    CHECK_EQ(a.steps.size(), b.steps.size());
    int bad = 0;
    for (std::size_t s = 0; s < std::min(a.steps.size(), b.steps.size()); ++s) {
      const StepStats &x = a.steps[s], &y = b.steps[s];
      // the gradient norm is a double sum in another order (a fixed tree on the device)
      if (y.objective != x.objective || !t::close(y.grad_norm, x.grad_norm, 0, 1e-12) || y.lr != x.lr) {
        if (++bad <= 3) {
          char msg[256];
          std::snprintf(msg, sizeof msg, "%s: step %zu: objective cuda %.9g cpu %.9g, grad norm cuda %.9g cpu %.9g", tag.c_str(), s + 1,
                        y.objective, x.objective, y.grad_norm, x.grad_norm);
          t::fail(__FILE__, __LINE__, msg);
        }
      }
    }
    CHECK_EQ(a.logs.size(), b.logs.size());
    for (std::size_t e = 0; e < std::min(a.logs.size(), b.logs.size()); ++e) {
      CHECK_EQ(b.logs[e].loss, a.logs[e].loss);
      CHECK_EQ(b.logs[e].val_loss, a.logs[e].val_loss);
      CHECK_EQ(b.logs[e].val_accuracy, a.logs[e].val_accuracy);
    }
    std::printf("  info %s: loss %.6f -> %.6f (cpu %.6f -> %.6f)\n", tag.c_str(), b.logs.front().loss, b.logs.back().loss, a.logs.front().loss,
                a.logs.back().loss);
    const ParamLayout lay = moe_layout(c);
    compare("parameters after 50 steps", tag, b.params.data(), a.params.data(), lay.total, 0, 0, &lay);
    const FitRun again = fit_on(Device::Cuda, c, f, d, &val);
    if (again.params != b.params) t::fail(__FILE__, __LINE__, tag + ": two CUDA fits differ");
  }
}

TEST(predict_matches_cpu) {
  t::Rng rng(9);
  struct P {
    MoEConfig c;
    int64_t rows;
  };
  const std::vector<P> ps = {
      {cfg(10, 7, 5, Routing::TopK, 2, {12}, {}), 20011},           // two chunks of 16384 rows
      {cfg(10, 7, 5, Routing::Soft, 5, {12}, {6}, Activation::Gelu), 13},
      {cfg(10, 7, 5, Routing::Hard, 1, {12}, {}), 33000},           // three chunks
      {cfg(10, 7, 8, Routing::TopK, 1, {}, {}), 1},
      {cfg(10, 3, 1, Routing::Soft, 1, {4}, {}), 129},
      {cfg(10, 100, 16, Routing::Soft, 16, {12}, {}), 300},  // warp-per-row head, 4 chunks per lane
      {cfg(10, 257, 4, Routing::TopK, 2, {}, {}), 50},        // thread-per-row head
      {cfg(10, 40, 6, Routing::Hard, 1, {8}, {}), 77},
  };
  for (const P& p : ps) {
    const MoEConfig& c = p.c;
    const int64_t K = c.experts, C = c.classes, a = moe_active_experts(c, false), n = p.rows;
    std::vector<float> params(std::size_t(moe_layout(c).total));
    moe_init_params(c, params.data(), 11, InitKind::Normal, 0.5f);
    std::vector<float> x(std::size_t(n * c.input_dim));
    for (auto& v : x) v = rng.normal();
    std::vector<float> temps(static_cast<std::size_t>(K));
    for (int64_t k = 0; k < K; ++k) temps[k] = 0.6f + 0.2f * float(k);
    struct Out {
      std::vector<float> p, r, g, e;
      std::vector<int32_t> s;
    } o[2];
    for (int dev = 0; dev < 2; ++dev) {
      Out& q = o[dev];
      q.p.resize(std::size_t(n * C));
      q.r.resize(std::size_t(n * K));
      q.g.resize(std::size_t(n * a));
      q.e.resize(std::size_t(n * a * C));
      q.s.resize(std::size_t(n * a));
      PredictOutputs out;
      out.probs = q.p.data();
      out.routing = q.r.data();
      out.gates = q.g.data();
      out.expert_probs = q.e.data();
      out.selected = q.s.data();
      auto e = moe::make_engine(dev ? Device::Cuda : Device::Cpu, c, params.data(), temps.data(), 1);
      e->predict(x.data(), n, out);
    }
    const std::string tag = "predict K=" + std::to_string(K) + " a=" + std::to_string(a) + " rows=" + std::to_string(n);
    compare("probs", tag, o[1].p.data(), o[0].p.data(), n * C, 0, 0);
    compare("routing", tag, o[1].r.data(), o[0].r.data(), n * K, 0, 0);
    compare("gates", tag, o[1].g.data(), o[0].g.data(), n * a, 0, 0);
    compare("expert probs", tag, o[1].e.data(), o[0].e.data(), n * a * C, 0, 0);
    int64_t diff = 0;
    for (int64_t i = 0; i < n * a; ++i) diff += o[1].s[i] != o[0].s[i];
    if (diff) t::fail(__FILE__, __LINE__, tag + ": selected experts differ on " + std::to_string(diff) + " entries");
  }
}

#if CALMOE_WITH_CUDA
// The CPU engine's stable fill (cpu/moe_engine.cpp), for the dispatch test.
void cpu_dispatch(const std::vector<int32_t>& sel, int64_t n, int64_t a, int64_t K, std::vector<int32_t>& pos, std::vector<int32_t>& row,
                  std::vector<int64_t>& offset) {
  std::vector<int64_t> count(std::size_t(K), 0);
  for (int64_t i = 0; i < n * a; ++i) ++count[sel[i]];
  offset.assign(std::size_t(K + 1), 0);
  for (int64_t k = 0; k < K; ++k) offset[k + 1] = offset[k] + count[k];
  std::vector<int64_t> cursor(offset.begin(), offset.begin() + K);
  pos.assign(std::size_t(n * a), -1);
  row.assign(std::size_t(n * a), -1);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t s = 0; s < a; ++s) {
      const int64_t p = cursor[sel[i * a + s]]++;
      pos[i * a + s] = int32_t(p);
      row[p] = int32_t(i);
    }
  }
}

TEST(dispatch_is_the_cpu_stable_fill) {
  t::Rng rng(21);
  int cases = 0;
  for (int64_t K : {1, 3, 8, 300}) {
    for (int64_t a : {1, 2, 3}) {
      if (a > K) continue;
      for (int64_t n : {1, 127, 128, 129, 1000}) {
        for (int pattern = 0; pattern < 3; ++pattern) {
          // 0: random; 1: every row chooses the first a experts (the others are empty); 2: only
          // the experts of even index are ever chosen (gaps) and rows repeat in blocks
          std::vector<int32_t> sel(std::size_t(n * a));
          for (int64_t i = 0; i < n; ++i) {
            std::vector<int32_t> pick;
            if (pattern == 1) {
              for (int64_t s = 0; s < a; ++s) pick.push_back(int32_t(s));
            } else {
              std::vector<int32_t> all;
              for (int64_t k = 0; k < K; ++k)
                if (pattern == 0 || k % 2 == 0 || (K + 1) / 2 < a) all.push_back(int32_t(k));
              t::Rng local(pattern == 2 ? uint64_t(i / 16) : rng.g());
              std::shuffle(all.begin(), all.end(), local.g);
              pick.assign(all.begin(), all.begin() + a);
              std::sort(pick.begin(), pick.end());
            }
            std::copy(pick.begin(), pick.end(), sel.begin() + i * a);
          }
          std::vector<int32_t> pos(std::size_t(n * a)), row(std::size_t(n * a)), wpos, wrow;
          std::vector<int64_t> off(std::size_t(K + 1)), woff;
          cuda::moe_rows::dispatch_host(sel.data(), n, a, K, pos.data(), row.data(), off.data());
          cpu_dispatch(sel, n, a, K, wpos, wrow, woff);
          const bool ok = pos == wpos && row == wrow && off == woff;
          if (!ok) {
            char msg[160];
            std::snprintf(msg, sizeof msg, "dispatch K=%lld a=%lld n=%lld pattern %d differs from the CPU's stable fill", (long long)K, (long long)a,
                          (long long)n, pattern);
            t::fail(__FILE__, __LINE__, msg);
          }
          ++cases;
        }
      }
    }
  }
  // a == K: every row has every expert (soft, hard training): entry (i, k) = k n + i
  for (int64_t K : {1, 4}) {
    const int64_t n = 130;
    std::vector<int32_t> sel(std::size_t(n * K));
    for (int64_t i = 0; i < n * K; ++i) sel[i] = int32_t(i % K);
    std::vector<int32_t> pos(sel.size()), row(sel.size()), wpos, wrow;
    std::vector<int64_t> off(std::size_t(K + 1)), woff;
    cuda::moe_rows::dispatch_host(sel.data(), n, K, K, pos.data(), row.data(), off.data());
    cpu_dispatch(sel, n, K, K, wpos, wrow, woff);
    CHECK(pos == wpos && row == wrow && off == woff);
  }
  std::printf("  info dispatch: %d selection patterns\n", cases);
}

// The routing, the head (expert softmax, mixture, losses) and the per-row backward alone, on
// random rows, against the CPU's row bodies (core/moe_math.h, core/moe_row_bodies.h) run on the
// same inputs: every output, same bits. Exercises what the engine tests see only through sums:
// each entry's loss, the regret and the disagreement (robust-filtered), correctness, dz, dr, dg,
// the selections and the argmax; logits spread wide enough that some probabilities fall under the
// 1e-12 clamp, and tied logits (ties go to the lower index).
TEST(row_kernels_match_cpu_bodies) {
  namespace mr = cuda::moe_rows;
  struct R {
    const char* name;
    int64_t n, K, C;
    Routing routing;  // as trained: hard trains with every expert (soft selection)
    int64_t a;
    bool hard, filtered, balance;
    float spread;  // logit scale (0: logits j % 4 in every entry: tied maxima, also within a lane)
  };
  const std::vector<R> rs = {
      {"soft K=5 C=100 filtered", 37, 5, 100, Routing::Soft, 5, false, true, false, 3.0f},
      {"top2 of 6 C=45 filtered balance", 41, 6, 45, Routing::TopK, 2, false, true, true, 4.0f},
      {"hard K=3 C=256 filtered", 19, 3, 256, Routing::Soft, 3, true, true, false, 12.0f},
      {"top1 of 4 C=33", 29, 4, 33, Routing::TopK, 1, false, false, false, 15.0f},
      {"soft K=40 C=7 balance", 23, 40, 7, Routing::Soft, 40, false, false, true, 2.0f},
      {"top3 of 40 C=300 filtered (thread-per-row head)", 17, 40, 300, Routing::TopK, 3, false, true, false, 5.0f},
      {"soft K=2 C=1", 5, 2, 1, Routing::Soft, 2, false, true, false, 1.0f},
      {"top2 of 4 C=50 tied logits", 61, 4, 50, Routing::TopK, 2, false, false, false, 0.0f},
      {"top3 of 70 C=9 tied logits", 21, 70, 9, Routing::TopK, 3, false, true, true, 0.0f},
      {"top1 of 200 C=3", 9, 200, 3, Routing::TopK, 1, false, false, false, 3.0f},
      {"top2 of 300 C=5 (thread-per-row routing)", 13, 300, 5, Routing::TopK, 2, false, false, false, 2.0f},
  };
  t::Rng rng(31);
  for (const R& q : rs) {
    const int64_t n = q.n, K = q.K, C = q.C, a = q.a, E = n * a;
    const std::string tag = q.name;
    // routing: the CPU's softmax and selection of random router logits
    std::vector<float> g(static_cast<std::size_t>(n * K)), r(g.size()), gate(static_cast<std::size_t>(E)), denom(static_cast<std::size_t>(n));
    std::vector<int32_t> sel(static_cast<std::size_t>(E));
    for (int64_t e = 0; e < n * K; ++e) g[e] = q.spread > 0 ? rng.normal(2.0f) : float(e % K % 4);
    for (int64_t i = 0; i < n; ++i) {
      moe::softmax(g.data() + i * K, K, 1.25f, r.data() + i * K);
      denom[i] = moe::select_experts(r.data() + i * K, K, q.routing, a, sel.data() + i * a, gate.data() + i * a);
    }
    std::vector<int32_t> pos, row;
    std::vector<int64_t> off;
    cpu_dispatch(sel, n, a, K, pos, row, off);
    std::vector<int32_t> entry_k(static_cast<std::size_t>(E)), labels(static_cast<std::size_t>(n));
    for (int64_t e = 0; e < E; ++e) entry_k[std::size_t(pos[e])] = sel[e];
    for (auto& y : labels) y = q.spread > 0 ? rng.below(C) : (4 * rng.below(2) + 3) % int32_t(C);  // tied: the first or second maximum
    std::vector<float> z(static_cast<std::size_t>(E * C)), inv_temp(static_cast<std::size_t>(K)), coef(static_cast<std::size_t>(n)), balance(static_cast<std::size_t>(K));
    for (int64_t e = 0; e < E * C; ++e) z[e] = q.spread > 0 ? rng.normal(q.spread) : float(e % C % 4);
    for (int64_t k = 0; k < K; ++k) inv_temp[k] = 1.0f / (0.5f + 0.1f * float(k));
    for (auto& v : coef) v = float(rng.uniform()) / float(n);
    for (auto& v : balance) v = rng.normal(0.01f);

    // CPU: the engine's order (softmax per entry, mixture, losses, backward)
    mr::Ctx h;
    h.n = n;
    h.K = K;
    h.C = C;
    h.a = a;
    h.routing = q.routing;
    h.hard = q.hard;
    h.hard_prediction = q.hard;
    h.single = q.routing == Routing::TopK && a == 1;
    h.filtered = q.filtered;
    h.inv_tau = 1.25f;
    std::vector<float> pe = z, p(static_cast<std::size_t>(n * C)), eloss(static_cast<std::size_t>(E)), loss(static_cast<std::size_t>(n)), regret(loss.size()), dis(loss.size());
    std::vector<float> dz(static_cast<std::size_t>(E * C)), dr(static_cast<std::size_t>(n * K)), dg(dr.size()), gbuf(static_cast<std::size_t>(E));
    std::vector<int32_t> correct(static_cast<std::size_t>(n));
    for (int64_t e = 0; e < E; ++e) moe::softmax(pe.data() + e * C, C, inv_temp[entry_k[e]], pe.data() + e * C);
    for (int64_t i = 0; i < n; ++i) {
      std::vector<const float*> ptr(static_cast<std::size_t>(a));
      for (int64_t s = 0; s < a; ++s) ptr[s] = pe.data() + int64_t(pos[i * a + s]) * C;
      if (q.hard) {
        int64_t best = 0;
        for (int64_t s = 1; s < a; ++s)
          if (gate[i * a + s] > gate[i * a + best]) best = s;
        std::copy(ptr[best], ptr[best] + C, p.begin() + i * C);
      } else {
        moe::combine(ptr.data(), gate.data() + i * a, a, C, p.data() + i * C);
      }
    }
    h.r = r.data();
    h.sel = sel.data();
    h.gate = gate.data();
    h.denom = denom.data();
    h.entry_pos = pos.data();
    h.entry_k = entry_k.data();
    h.inv_temp = inv_temp.data();
    h.p_expert = pe.data();
    h.p = p.data();
    h.labels = labels.data();
    h.entry_loss = eloss.data();
    h.loss = loss.data();
    h.regret = regret.data();
    h.disagree = dis.data();
    h.correct = correct.data();
    h.coef = coef.data();
    h.dz = dz.data();
    h.dr = dr.data();
    h.dg = dg.data();
    h.gbuf = gbuf.data();
    h.balance = q.balance ? balance.data() : nullptr;
    for (int64_t i = 0; i < n; ++i) moe::row_losses(h, i, labels[i]);
    for (int64_t i = 0; i < n; ++i) moe::row_backward(h, i, labels[i], gbuf.data() + i * a);

    // CUDA: the same inputs, the engine's launchers
    auto up = [](auto& buf, const auto& v) {
      buf.resize(v.size());
      buf.upload(v.data(), v.size());
      return buf.get();
    };
    auto down = [](const auto& buf, std::size_t count) {
      std::vector<std::remove_cv_t<std::remove_pointer_t<decltype(buf.get())>>> v(count);
      buf.download(v.data(), count);
      return v;
    };
    {  // the routing of the same logits (the balance loss's argmax too)
      std::vector<int32_t> argmax(static_cast<std::size_t>(n));
      for (int64_t i = 0; i < n; ++i) {
        int64_t arg = 0;
        for (int64_t k = 1; k < K; ++k)
          if (r[i * K + k] > r[i * K + arg]) arg = k;
        argmax[i] = int32_t(arg);
      }
      cuda::DeviceBuffer<float> d_g, d_r, d_gate, d_denom;
      cuda::DeviceBuffer<int32_t> d_sel, d_arg;
      mr::Ctx rc;
      rc.n = n;
      rc.K = K;
      rc.a = a;
      rc.routing = q.routing;
      rc.inv_tau = 1.25f;
      rc.g = up(d_g, g);
      rc.r = up(d_r, std::vector<float>(r.size(), -7.0f));
      rc.sel = up(d_sel, std::vector<int32_t>(sel.size(), -7));
      rc.gate = up(d_gate, std::vector<float>(gate.size(), -7.0f));
      rc.denom = up(d_denom, std::vector<float>(denom.size(), -7.0f));
      rc.argmax = up(d_arg, std::vector<int32_t>(argmax.size(), -7));
      mr::route(rc, nullptr);
      compare("routing weights", tag, down(d_r, r.size()).data(), r.data(), n * K, 0, 0, nullptr, true);
      compare("gates", tag, down(d_gate, gate.size()).data(), gate.data(), E, 0, 0, nullptr, true);
      compare("denominators", tag, down(d_denom, denom.size()).data(), denom.data(), n, 0, 0, nullptr, true);
      if (down(d_sel, sel.size()) != sel) t::fail(__FILE__, __LINE__, tag + ": selected experts differ");
      if (down(d_arg, argmax.size()) != argmax) t::fail(__FILE__, __LINE__, tag + ": argmax differs");
    }
    cuda::DeviceBuffer<float> d_r, d_gate, d_denom, d_it, d_pe, d_p, d_el, d_loss, d_reg, d_dis, d_coef, d_dz, d_dr, d_dg, d_gbuf, d_bal;
    cuda::DeviceBuffer<int32_t> d_sel, d_pos, d_k, d_y, d_cor;
    mr::Ctx c = h;
    c.r = up(d_r, r);
    c.sel = up(d_sel, sel);
    c.gate = up(d_gate, gate);
    c.denom = up(d_denom, denom);
    c.entry_pos = up(d_pos, pos);
    c.entry_k = up(d_k, entry_k);
    c.inv_temp = up(d_it, inv_temp);
    c.p_expert = up(d_pe, z);
    c.p = up(d_p, std::vector<float>(p.size(), -7.0f));
    c.labels = up(d_y, labels);
    c.entry_loss = up(d_el, std::vector<float>(eloss.size(), -7.0f));
    c.loss = up(d_loss, std::vector<float>(loss.size(), -7.0f));
    c.regret = up(d_reg, std::vector<float>(loss.size(), -7.0f));
    c.disagree = up(d_dis, std::vector<float>(loss.size(), -7.0f));
    c.correct = up(d_cor, std::vector<int32_t>(correct.size(), -7));
    c.coef = up(d_coef, coef);
    c.dz = up(d_dz, std::vector<float>(dz.size(), -7.0f));
    c.dr = up(d_dr, std::vector<float>(dr.size(), -7.0f));
    c.dg = up(d_dg, std::vector<float>(dg.size(), -7.0f));
    c.gbuf = up(d_gbuf, std::vector<float>(gbuf.size(), -7.0f));
    c.balance = q.balance ? up(d_bal, balance) : nullptr;
    mr::head(c, nullptr);
    mr::backward(c, nullptr);
    cuda::check(cudaDeviceSynchronize(), "row kernels");
    compare("expert probs", tag, down(d_pe, pe.size()).data(), pe.data(), E * C, 0, 0, nullptr, true);
    compare("mixture", tag, down(d_p, p.size()).data(), p.data(), n * C, 0, 0, nullptr, true);
    compare("entry losses", tag, down(d_el, eloss.size()).data(), eloss.data(), E, 0, 0, nullptr, true);
    compare("losses", tag, down(d_loss, loss.size()).data(), loss.data(), n, 0, 0, nullptr, true);
    compare("regret", tag, down(d_reg, loss.size()).data(), regret.data(), n, 0, 0, nullptr, true);
    compare("disagreement", tag, down(d_dis, loss.size()).data(), dis.data(), n, 0, 0, nullptr, true);
    compare("dz", tag, down(d_dz, dz.size()).data(), dz.data(), E * C, 0, 0, nullptr, true);
    compare("dr", tag, down(d_dr, dr.size()).data(), dr.data(), n * K, 0, 0, nullptr, true);
    compare("dg", tag, down(d_dg, dg.size()).data(), dg.data(), n * K, 0, 0, nullptr, true);
    if (down(d_cor, correct.size()) != correct) t::fail(__FILE__, __LINE__, tag + ": correct differs");
    int64_t clamped = 0;
    for (float v : pe) clamped += v < moe::kMinProb;
    std::printf("  info %s: %lld of %lld expert probabilities under the clamp\n", tag.c_str(), (long long)clamped, (long long)pe.size());
  }
}

// The objective's coefficients on the device (cuda/objective.cuh) against the CPU's
// objective_coefficients, alone, on batches up to several levels of the tilted sums' tree and
// past one block of the single-block kernels: every coefficient, the value and |R|, the same bits.
// The disagreement is continuous, or takes few distinct values (ties at the median); the regret is
// 0 on half the rows (so the threshold decides their membership).
TEST(device_objective_matches_cpu) {
  for (int64_t B : {1, 2, 255, 256, 257, 1024, 1025, 65537, 100000}) for (bool ties : {false, true}) {
    t::Rng rng(uint64_t(B) * 31 + 7 + ties);
    std::vector<float> loss(B), regret(B), dis(B);
    for (int64_t i = 0; i < B; ++i) {
      loss[i] = float(rng.uniform() * 6);
      regret[i] = rng.uniform() < 0.5 ? 0.0f : float(rng.uniform());
      dis[i] = ties ? float(std::floor(rng.uniform() * 8) / 64) : float(rng.uniform() / 8);
    }
    cuda::DeviceBuffer<float> d_loss(B), d_regret(B), d_dis(B), d_coef(B);
    d_loss.upload(loss.data(), B);
    d_regret.upload(regret.data(), B);
    d_dis.upload(dis.data(), B);
    cuda::DeviceObjective dev;
    dev.reserve(B + 3);
    // a batch past the workspaces is an error, not an overrun
    CHECK_THROWS(dev.queue(obj(ObjectiveKind::Robust), true, false, d_loss.get(), d_regret.get(), d_dis.get(), B + 4, d_coef.get(), nullptr),
                 ErrorKind::Range, "objective: expected 1..");
    struct Mode {
      const char* name;
      ObjectiveConfig o;
      bool active, single;
    };
    ObjectiveConfig med = obj(ObjectiveKind::RobustFiltered, TiltGradient::Through, 2.0);
    med.median_disagreement = true;
    ObjectiveConfig med_only = med;
    med_only.tau_regret = 1e30;
    const Mode modes[] = {
        {"erm", obj(ObjectiveKind::Erm), true, false},
        {"robust term", obj(ObjectiveKind::Robust, TiltGradient::Term, 2.0), true, false},
        {"robust through eta -1", obj(ObjectiveKind::Robust, TiltGradient::Through, -1.0), true, false},
        {"robust warm-up", obj(ObjectiveKind::Robust, TiltGradient::Term, 2.0), false, false},
        {"filtered tau", obj(ObjectiveKind::RobustFiltered, TiltGradient::Term, 1.0), true, false},
        {"filtered median", med, true, false},
        {"filtered median alone", med_only, true, false},
        {"filtered one active expert", obj(ObjectiveKind::RobustFiltered, TiltGradient::Term, 1.0), true, true},
        {"filtered warm-up", med, false, false},
    };
    for (const Mode& m : modes) {
      const std::string tag = std::string(m.name) + " B=" + std::to_string(B) + (ties ? " (tied disagreement)" : "");
      moe::ObjectiveInput in;
      in.loss = loss.data();
      in.regret = regret.data();
      in.disagree = dis.data();
      in.batch = B;
      in.single_active = m.single;
      std::vector<float> cc(B), cg(B);
      const moe::ObjectiveResult rc = moe::objective_coefficients(m.o, m.active, in, cc.data());
      dev.queue(m.o, m.active, m.single, d_loss.get(), d_regret.get(), d_dis.get(), B, d_coef.get(), nullptr);
      cuda::check(cudaDeviceSynchronize(), "objective");
      d_coef.download(cg.data(), B);
      const moe::ObjectiveResult rg = dev.result(m.o, m.active, loss.data(), B);
      compare("coefficients", tag, cg.data(), cc.data(), B, 0, 0, nullptr, true);
      CHECK_EQ(rg.value, rc.value);
      CHECK_EQ(rg.filtered, rc.filtered);
      if (rg.value != rc.value || rg.filtered != rc.filtered) std::printf("  info %s: value %.17g / %.17g, |R| %lld / %lld\n", tag.c_str(), rg.value, rc.value, (long long)rg.filtered, (long long)rc.filtered);
      if (m.o.median_disagreement && m.active && B > 2) CHECK(rc.filtered > 0 && rc.filtered < B);  // the threshold decides
    }
  }
}
#endif

TEST(routing_truth_table_ties_and_empty_experts) {
  // router weights 0 and biases (1, 1, 0, 1): r ties between experts 0, 1 and 3 on every row;
  // top1 and hard pick expert 0 (ties to the lower index), top2 picks 0 and 1: experts 2 and 3
  // (and 1 for top1 / hard inference) get no rows
  for (Routing rt : {Routing::TopK, Routing::Hard}) {
    for (int64_t k : {1, 2}) {
      if (rt == Routing::Hard && k == 2) continue;
      MoEConfig c = cfg(6, 4, 4, rt, k, {5}, {});
      const ParamLayout lay = moe_layout(c);
      std::vector<float> params(std::size_t(lay.total));
      moe_init_params(c, params.data(), 3, InitKind::Normal, 0.5f);
      for (int64_t i = 0; i < lay.router_size; ++i) params[i] = 0.0f;
      const float bias[4] = {1, 1, 0, 1};
      std::memcpy(params.data() + c.input_dim * c.experts, bias, sizeof bias);
      t::Rng rng(5);
      const int64_t n = 45;
      Data d = make_data(rng, c, n);
      const int64_t a = moe_active_experts(c, false);
      std::vector<int32_t> sel[2];
      std::vector<float> probs[2], grads[2];
      for (int dev = 0; dev < 2; ++dev) {
        sel[dev].resize(std::size_t(n * a));
        probs[dev].resize(std::size_t(n * c.classes));
        PredictOutputs out;
        out.probs = probs[dev].data();
        out.selected = sel[dev].data();
        auto e = moe::make_engine(dev ? Device::Cuda : Device::Cpu, c, params.data(), nullptr, n);
        e->predict(d.x.data(), n, out);
        moe::Batch b{d.x.data(), d.y.data(), d.rows.data(), n};
        e->forward_backward(b, obj(ObjectiveKind::Erm), true);
        grads[dev].assign(e->gradient(), e->gradient() + lay.total);
      }
      const std::string tag = std::string(rt == Routing::Hard ? "hard" : "topk") + " k=" + std::to_string(k);
      for (int64_t i = 0; i < n; ++i) {
        CHECK_EQ(sel[1][i * a], 0);
        if (a == 2) CHECK_EQ(sel[1][i * a + 1], 1);
      }
      CHECK(sel[0] == sel[1]);
      compare("probs", tag, probs[1].data(), probs[0].data(), n * c.classes, 0, 0);
      compare("gradient", tag, grads[1].data(), grads[0].data(), lay.total, 0, 0, &lay);
      // experts without rows in training (topk: not selected; hard trains every expert)
      if (rt == Routing::TopK) {
        for (int64_t e = k; e < 4; ++e) {
          const int64_t o = lay.expert_offset[e];
          bool zero = true;
          for (int64_t i = 0; i < lay.expert_size; ++i) zero &= grads[1][o + i] == 0.0f;
          if (!zero) t::fail(__FILE__, __LINE__, tag + ": expert " + std::to_string(e) + " has no rows but a non-zero gradient");
        }
      }
    }
  }
}

TEST(update_divergence_keeps_parameters) {
  MoEConfig c = cfg(6, 4, 3, Routing::TopK, 2, {5}, {});
  const ParamLayout lay = moe_layout(c);
  std::vector<float> params(std::size_t(lay.total));
  moe_init_params(c, params.data(), 1, InitKind::Normal, 0.5f);
  t::Rng rng(6);
  Data d = make_data(rng, c, 20);
  auto e = moe::make_engine(Device::Cuda, c, params.data(), nullptr, 20);
  moe::Batch b{d.x.data(), d.y.data(), d.rows.data(), 20};
  e->forward_backward(b, obj(ObjectiveKind::Erm), true);
  OptimizerConfig o;
  o.kind = OptimizerKind::Sgd;
  o.weight_decay = 3e38;  // g + wd p ~ 1e38, times lr = 1e38: every non-zero parameter overflows
  const double norm = e->update(o, 1e38);
  CHECK(!std::isfinite(norm));
  std::vector<float> back(params.size());
  e->sync_to_host(back.data());
  CHECK(back == params);
  // one clipped AdamW step on fresh engines: the CPU's step
  std::vector<float> cpu_params = params;
  auto cpu = moe::make_engine(Device::Cpu, c, cpu_params.data(), nullptr, 20);
  auto gpu = moe::make_engine(Device::Cuda, c, params.data(), nullptr, 20);
  cpu->forward_backward(b, obj(ObjectiveKind::Erm), true);
  gpu->forward_backward(b, obj(ObjectiveKind::Erm), true);
  o.kind = OptimizerKind::AdamW;
  o.weight_decay = 1e-2;
  o.clip_norm = 0.1;
  const double n_cpu = cpu->update(o, 1e-2);
  const double n_gpu = gpu->update(o, 1e-2);
  CHECK_CLOSE(n_gpu, n_cpu, 1e-9, 1e-5);
  gpu->sync_to_host(back.data());
  compare("parameters after one clipped AdamW step", "update", back.data(), cpu_params.data(), lay.total, 0, 0, &lay);
}

// The tensor-core precisions (sm_80+; Fp32 elsewhere): close to the CPU in norm (TF32: 10-bit
// mantissas in the products, ||g_cuda - g_cpu|| <= 5% ||g_cpu||, about 1% measured with an
// emulation of the rounding, objective within 1%; BF16: 8-bit mantissas, 8x TF32's unit roundoff,
// so within 25% and 5%), and deterministic. Wrong fragment indexing would be ~100% off. Then the
// same after an SGD step, and the predictions (any copy of the weights a GEMM path keeps must
// follow every update). The top-2 case is small and its routing far from ties in TF32 (a flipped choice would show there).
// ||a - b|| / ||b|| over n floats
double rel_distance(const float* a, const float* b, int64_t n) {
  double diff = 0, ref = 0;
  for (int64_t i = 0; i < n; ++i) {
    diff += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    ref += double(b[i]) * b[i];
  }
  return std::sqrt(diff / ref);
}

TEST(tensor_core_precisions_are_close_and_deterministic) {
  struct P {
    MatmulPrecision p;
    const char* name;
    double grad_rel, obj_rel, pred_abs;
  };
  // predictions: BF16's router logits can flip a top-k selection near a tie, which moves that
  // row's probabilities by up to about one expert's share
  for (const P& prec : {P{MatmulPrecision::Tf32, "tf32", 0.05, 1e-2, 1e-2}, P{MatmulPrecision::Bf16, "bf16", 0.25, 5e-2, 0.5}}) {
    std::vector<Case> cases = {
        {"soft mlp", cfg(64, 10, 4, Routing::Soft, 4, {96}, {}), obj(ObjectiveKind::Erm), 300},
        {"hard mlp router gelu", cfg(48, 7, 3, Routing::Hard, 1, {40, 24}, {16}, Activation::Gelu), obj(ObjectiveKind::Robust), 257},
        {"top-2 mlp", cfg(37, 9, 5, Routing::TopK, 2, {45}, {}), obj(ObjectiveKind::Erm), 203},
    };
    uint64_t seed = 500;
    for (Case& cs : cases) {
      cs.c.precision = prec.p;
      const MoEConfig& c = cs.c;
      const std::string tag = std::string(prec.name) + " " + cs.name;
      const ParamLayout lay = moe_layout(c);
      std::vector<float> params(std::size_t(lay.total));
      moe_init_params(c, params.data(), seed, InitKind::Default, 0);
      t::Rng rng(seed++);
      Data d = make_data(rng, c, cs.batch);
      moe::Batch b{d.x.data(), d.y.data(), d.rows.data(), cs.batch};
      auto cpu = moe::make_engine(Device::Cpu, c, params.data(), nullptr, cs.batch);
      auto gpu = moe::make_engine(Device::Cuda, c, params.data(), nullptr, cs.batch);
      const StepStats sc = cpu->forward_backward(b, cs.o, true);
      const StepStats sg = gpu->forward_backward(b, cs.o, true);
      CHECK_CLOSE(sg.objective, sc.objective, 1e-4, prec.obj_rel);
      const std::vector<float> gc(cpu->gradient(), cpu->gradient() + lay.total);
      const std::vector<float> gg(gpu->gradient(), gpu->gradient() + lay.total);
      double diff = 0, ref = 0;
      for (int64_t i = 0; i < lay.total; ++i) {
        diff += (double(gg[i]) - gc[i]) * (double(gg[i]) - gc[i]);
        ref += double(gc[i]) * gc[i];
      }
      std::printf("  info %s: ||g_cuda - g_cpu|| / ||g_cpu|| = %.3g\n", tag.c_str(), std::sqrt(diff / ref));
      if (!(std::sqrt(diff) <= prec.grad_rel * std::sqrt(ref))) t::fail(__FILE__, __LINE__, tag + ": gradient too far from the CPU's");
      gpu->forward_backward(b, cs.o, true);
      if (std::memcmp(gpu->gradient(), gg.data(), gg.size() * sizeof(float)) != 0) t::fail(__FILE__, __LINE__, tag + ": two runs differ");
      // after an SGD step (which any copy of the weights a GEMM path keeps must follow):
      // still close, with a gradient moved far more than the tolerance (so stale weights would show)
      OptimizerConfig o;
      o.kind = OptimizerKind::Sgd;
      o.clip_norm = 0;
      cpu->update(o, 10.0);
      gpu->update(o, 10.0);
      const StepStats sc2 = cpu->forward_backward(b, cs.o, true);
      const StepStats sg2 = gpu->forward_backward(b, cs.o, true);
      CHECK_CLOSE(sg2.objective, sc2.objective, 1e-4, prec.obj_rel);
      const double moved = rel_distance(cpu->gradient(), gc.data(), lay.total), off = rel_distance(gpu->gradient(), cpu->gradient(), lay.total);
      std::printf("  info %s, after one SGD step: the gradient moved %.3g, ||g_cuda - g_cpu|| / ||g_cpu|| = %.3g\n", tag.c_str(), moved, off);
      CHECK(moved > 2 * prec.grad_rel);
      if (!(off <= prec.grad_rel)) t::fail(__FILE__, __LINE__, tag + ": gradient after an update too far from the CPU's");
      // predictions with the updated parameters (the inference pass reads the same weight copy)
      std::vector<float> pc(std::size_t(cs.batch * c.classes)), pg(pc.size());
      PredictOutputs out_c, out_g;
      out_c.probs = pc.data();
      out_g.probs = pg.data();
      cpu->predict(d.x.data(), cs.batch, out_c);
      gpu->predict(d.x.data(), cs.batch, out_g);
      double worst = 0;
      for (std::size_t i = 0; i < pc.size(); ++i) worst = std::max(worst, std::fabs(double(pg[i]) - pc[i]));
      std::printf("  info %s: predictions after the update within %.3g of the CPU's\n", tag.c_str(), worst);
      if (!(worst <= prec.pred_abs)) t::fail(__FILE__, __LINE__, tag + ": predictions too far from the CPU's");
    }
  }
}

// Which GEMM library runs is reported, and the cuBLASLt path runs the experts as the issue asks:
// one strided-batched call per layer and pass when every expert reads every row, one call per
// expert with entries in top-k. The emulated suite (scripts/cuda-emu-test.sh) runs this with the
// fake cuBLASLt (tools/fake-cublaslt) logging its calls (CALMOE_FAKE_CUBLASLT_LOG) and says what
// to expect: CALMOE_TEST_EXPECT_CUBLASLT=1 (used) or 0 (refused, the reason containing
// CALMOE_TEST_EXPECT_REASON); without it (a GPU machine), only the report is printed.
#if CALMOE_WITH_CUDA
TEST(cublaslt_reported_and_called_as_planned) {
  const cuda::LtInfo& info = cuda::cublaslt_info();
  std::printf("  info GEMM library: %s\n", cuda::cublaslt_summary().c_str());
  const char* expect = std::getenv("CALMOE_TEST_EXPECT_CUBLASLT");
  if (!expect && !info.usable) return;  // a machine without cuBLASLt: nothing more to check
  if (expect && std::string(expect) == "0") {
    CHECK(!info.usable);
    const char* why = std::getenv("CALMOE_TEST_EXPECT_REASON");
    if (why && info.reason.find(why) == std::string::npos) t::fail(__FILE__, __LINE__, "reason '" + info.reason + "' does not mention '" + why + "'");
    return;
  }
  CHECK(info.usable);
  const char* log_path = std::getenv("CALMOE_FAKE_CUBLASLT_LOG");  // the fake's call log (emulated runs)
  auto read_log = [&] {
    std::vector<std::string> lines;
    if (FILE* f = log_path ? std::fopen(log_path, "r") : nullptr) {
      char buf[512];
      while (std::fgets(buf, sizeof buf, f)) lines.emplace_back(buf);
      std::fclose(f);
    }
    return lines;
  };
  struct Want {
    const char* name;
    MoEConfig c;
    int64_t batch;
    std::size_t calls;   // cuBLASLt calls of one training step
    int64_t batched;     // of them, strided batches of every expert (batch=K)
  };
  // soft, 1 hidden layer, linear router: router 1 + experts 2 forward; experts dW 2 + delta 1,
  // router dW 1 backward. Top-2 over 4 experts with a router MLP: router 2 forward, 1 call per
  // expert with entries per set (every expert gets rows here), 2 + 1 backward for the router.
  const std::vector<Want> wants = {
      {"soft", cfg(24, 5, 3, Routing::Soft, 3, {20}, {}), 64, 7, 5},
      {"top-2", cfg(24, 5, 4, Routing::TopK, 2, {20}, {12}), 96, 2 + 4 * 5 + 3, 0},
  };
  for (const Want& w : wants) {
    MoEConfig c = w.c;
    c.precision = MatmulPrecision::Tf32;
    const ParamLayout lay = moe_layout(c);
    std::vector<float> params(std::size_t(lay.total));
    moe_init_params(c, params.data(), 71, InitKind::Default, 0);
    t::Rng rng(72);
    Data d = make_data(rng, c, w.batch);
    moe::Batch b{d.x.data(), d.y.data(), d.rows.data(), w.batch};
    auto e = moe::make_engine(Device::Cuda, c, params.data(), nullptr, w.batch);
    const std::size_t before = read_log().size();
    e->forward_backward(b, obj(ObjectiveKind::Erm), true);
    const std::vector<std::string> lines = read_log();
    const std::size_t calls = lines.size() - before;
    int64_t batched = 0;
    const std::string tag = " batch=" + std::to_string(c.experts) + " ";
    for (std::size_t i = before; i < lines.size(); ++i) batched += lines[i].find(tag) != std::string::npos ? 1 : 0;
    if (log_path) std::printf("  info %s step: %zu cuBLASLt calls, %lld of them batched over the %lld experts\n", w.name, calls, (long long)batched,
                (long long)c.experts);
    if (log_path && (calls != w.calls || batched != w.batched))
      t::fail(__FILE__, __LINE__, std::string(w.name) + ": " + std::to_string(calls) + " calls (" + std::to_string(batched) + " batched), expected " +
                                      std::to_string(w.calls) + " (" + std::to_string(w.batched) + ")");
    // deterministic across engines too (each asks the heuristic anew, with its own workspace): the
    // same bits on one card and one cuBLASLt version (on a GPU this checks the real library)
    const std::vector<float> g1(e->gradient(), e->gradient() + lay.total);
    auto e2 = moe::make_engine(Device::Cuda, c, params.data(), nullptr, w.batch);
    e2->forward_backward(b, obj(ObjectiveKind::Erm), true);
    if (std::memcmp(e2->gradient(), g1.data(), g1.size() * sizeof(float)) != 0) t::fail(__FILE__, __LINE__, std::string(w.name) + ": two engines differ");
  }
}
#endif

// A small top-2 model and two datasets of 300 rows (+ 7 not in the batch) for the staging tests.
struct StagingCase {
  MoEConfig c = cfg(11, 5, 4, Routing::TopK, 2, {9}, {});
  ParamLayout lay = moe_layout(c);
  std::vector<float> params;
  Data d, other;
  explicit StagingCase(uint64_t seed) : params(std::size_t(lay.total)) {
    moe_init_params(c, params.data(), seed, InitKind::Normal, 0.5f);
    t::Rng rng(seed + 1);
    d = make_data(rng, c, 300);
    other = make_data(rng, c, 300);
  }
};

// A dataset attached to the engine (copied to the device; a step then gathers its rows there)
// gives the bits of host staging; batches over other arrays still go through staging.
TEST(attached_dataset_same_bits_as_staging) {
  StagingCase sc(77);
  auto& [c, lay, params, d, other] = sc;
  auto staged = moe::make_engine(Device::Cuda, c, params.data(), nullptr, 300);
  auto attached = moe::make_engine(Device::Cuda, c, params.data(), nullptr, 300);
  attached->attach_dataset(d.x.data(), d.y.data(), int64_t(d.y.size()));
  const ObjectiveConfig o = obj(ObjectiveKind::Robust, TiltGradient::Through, 1.0);
  for (const Data* data : {&d, &other, &d}) {
    const moe::Batch b{data->x.data(), data->y.data(), data->rows.data(), 300};
    const StepStats s1 = staged->forward_backward(b, o, true);
    const std::vector<float> g1(staged->gradient(), staged->gradient() + lay.total);
    const StepStats s2 = attached->forward_backward(b, o, true);
    CHECK(s1.objective == s2.objective && s1.accuracy == s2.accuracy);
    CHECK(std::memcmp(g1.data(), attached->gradient(), g1.size() * sizeof(float)) == 0);
  }
}

// Batches staged ahead (forward_backward's `next`, over a dataset not on the device) give the
// bits of batches staged in their own step: a prefetched batch is used when it comes, and dropped
// when another comes instead (other arrays, other rows, or its rows array changed since).
TEST(prefetched_batches_same_bits) {
  StagingCase sc(81);
  auto& [c, lay, params, d, other] = sc;
  std::vector<int32_t> r0(d.rows.begin(), d.rows.begin() + 150), r1(d.rows.begin() + 150, d.rows.end()), r2(d.rows.rbegin(), d.rows.rbegin() + 100);
  const moe::Batch b0{d.x.data(), d.y.data(), r0.data(), 150}, b1{d.x.data(), d.y.data(), r1.data(), 150}, b2{d.x.data(), d.y.data(), r2.data(), 100},
      bo{other.x.data(), other.y.data(), other.rows.data(), 300};
  auto plain = moe::make_engine(Device::Cuda, c, params.data(), nullptr, 300);
  auto ahead = moe::make_engine(Device::Cuda, c, params.data(), nullptr, 300);
  const ObjectiveConfig o = obj(ObjectiveKind::Robust, TiltGradient::Through, 1.0);
  struct Step {
    const moe::Batch* b;
    const moe::Batch* next;
    bool change_rows_after;  // rewrite r2 after the step (r2 staged as next: must not be used)
  };
  const Step steps[] = {{&b0, &b1, false}, {&b1, &b2, false}, {&bo, &b0, false}, {&b0, &b2, true}, {&b2, &b0, false}, {&b0, nullptr, false}};
  int i = 0;
  for (const Step& st : steps) {
    const StepStats s2 = ahead->forward_backward(*st.b, o, true, st.next);
    const std::vector<float> g2(ahead->gradient(), ahead->gradient() + lay.total);
    if (st.change_rows_after) std::reverse(r2.begin(), r2.end());
    const StepStats s1 = plain->forward_backward(*st.b, o, true);
    const std::string tag = "step " + std::to_string(i++);
    if (!(s1.objective == s2.objective && s1.accuracy == s2.accuracy)) t::fail(__FILE__, __LINE__, tag + ": stats differ");
    if (std::memcmp(g2.data(), plain->gradient(), g2.size() * sizeof(float)) != 0) t::fail(__FILE__, __LINE__, tag + ": gradients differ");
  }
}

// The device memory an engine holds (what calmoe_bench reports as memory_peak): at its peak at
// least the parameters, gradient, AdamW's two moments and the attached dataset; all of it given back
// when the engine goes, after steps, an update and a prediction.
#if CALMOE_WITH_CUDA  // device memory stats exist in CUDA builds only
TEST(device_memory_accounted_and_released) {
  StagingCase sc(91);
  auto& [c, lay, params, d, other] = sc;
  const std::size_t before = cuda::device_memory_stats().live;
  cuda::reset_device_memory_peak();
  {
    auto e = moe::make_engine(Device::Cuda, c, params.data(), nullptr, 300);
    e->attach_dataset(d.x.data(), d.y.data(), int64_t(d.y.size()));
    const moe::Batch b{d.x.data(), d.y.data(), d.rows.data(), 300};
    e->forward_backward(b, obj(ObjectiveKind::Robust, TiltGradient::Through, 1.0), true);
    OptimizerConfig o;
    o.kind = OptimizerKind::AdamW;
    CHECK(std::isfinite(e->update(o, 1e-3)));
    std::vector<float> probs(std::size_t(300 * c.classes));
    PredictOutputs out;
    out.probs = probs.data();
    e->predict(d.x.data(), 300, out);
    const std::size_t floats = std::size_t(lay.total) * 4 + d.x.size();  // params, gradient, m, v; the dataset
    const cuda::DeviceMemoryStats now = cuda::device_memory_stats();
    CHECK(now.live > before);
    CHECK(now.peak >= now.live);
    CHECK(now.peak - before >= floats * sizeof(float));
  }
  CHECK(cuda::device_memory_stats().live == before);
}
#endif

TEST(bad_input) {
  MoEConfig c = cfg(4, 3, 2, Routing::TopK, 1, {}, {});
  std::vector<float> params(std::size_t(moe_layout(c).total), 0.1f);
  const float bad_t[2] = {1.0f, 0.0f};
  CHECK_THROWS(moe::make_engine(Device::Cuda, c, params.data(), bad_t, 4), ErrorKind::Range, "temperatures[1]");
  auto e = moe::make_engine(Device::Cuda, c, params.data(), nullptr, 4);
  std::vector<float> x(40, 0.5f);
  std::vector<int32_t> y(10, 0), rows = {0, 1, 2, 3, 4};
  moe::Batch b{x.data(), y.data(), rows.data(), 5};
  CHECK_THROWS(e->forward_backward(b, obj(ObjectiveKind::Erm), true), ErrorKind::Range, "batch: expected 1..4 rows, got 5");
  // a non-finite loss is an error naming the row, on both devices, whether the objective waits for
  // the losses mid-step (robust) or reads them when the step's work is queued (ERM, and robust
  // during warm-up); the parameters are untouched. A NaN feature in dataset row 5 (batch row 2)
  // makes hard routing's loss, sum_k r_k l_k, NaN (a NaN probability alone is clamped to 1e-12).
  const MoEConfig hc = cfg(4, 3, 2, Routing::Hard, 1, {}, {});
  const std::vector<float> hp(std::size_t(moe_layout(hc).total), 0.1f);
  x[5 * 4 + 1] = std::nanf("");
  const std::vector<int32_t> nan_rows = {3, 0, 5, 1};
  const moe::Batch nb{x.data(), y.data(), nan_rows.data(), 4};
  for (Device dev : {Device::Cpu, Device::Cuda}) {
    std::vector<float> params_in = hp;
    auto en = moe::make_engine(dev, hc, params_in.data(), nullptr, 4);
    CHECK_THROWS(en->forward_backward(nb, obj(ObjectiveKind::Erm), true), ErrorKind::Range, "loss: not finite at row 5 of the batch");
    CHECK_THROWS(en->forward_backward(nb, obj(ObjectiveKind::Robust), true), ErrorKind::Range, "loss: not finite at row 5 of the batch");
    CHECK_THROWS(en->forward_backward(nb, obj(ObjectiveKind::Robust), false), ErrorKind::Range, "loss: not finite at row 5 of the batch");
    en->sync_to_host(params_in.data());  // the CPU engine works in params_in itself
    CHECK(params_in == hp);
    const moe::Batch ok{x.data(), y.data(), rows.data(), 4};  // rows 0..3: finite; the engine still works
    const StepStats st = en->forward_backward(ok, obj(ObjectiveKind::Erm), true);
    CHECK(std::isfinite(st.objective));
  }
}

// Checkpoints on the device: a fit resumed from an epoch-end checkpoint (parameters, the engine's
// optimiser state, the shuffle RNG) gives the bits of the uninterrupted CUDA fit, for AdamW
// (m, v) with a cosine schedule and for SGD with momentum (m only).
TEST(resumed_fit_same_bits) {
  for (const OptimizerKind kind : {OptimizerKind::AdamW, OptimizerKind::Sgd}) {
    t::Rng rng(61);
    const MoEConfig c = cfg(12, 5, 4, Routing::TopK, 2, {16}, {});
    Data d = make_data(rng, c, 313);  // 320 rows: 5 batches of 64
    FitConfig f;
    f.epochs = 4;
    f.batch_size = 64;
    f.seed = 9;
    f.optimizer.kind = kind;
    f.optimizer.lr = kind == OptimizerKind::Sgd ? 0.05 : 1e-2;
    f.optimizer.momentum = 0.9;
    f.schedule.kind = ScheduleKind::Cosine;
    f.checkpoint_every = 2;
    const int64_t P = moe_layout(c).total;
    std::vector<float> straight(static_cast<std::size_t>(P));
    moe_init_params(c, straight.data(), 5, InitKind::Default, 0);
    Dataset ds{d.x.data(), d.y.data(), int64_t(d.y.size())};
    Progress at2;  // the checkpoint after epoch 2
    moe_fit(Device::Cuda, c, straight.data(), nullptr, ds, nullptr, f, nullptr, [&](const Progress& p) {
      if (p.checkpoint && p.epoch == 1) at2 = p;
    }, nullptr);
    const std::string tag = kind == OptimizerKind::Sgd ? "sgd" : "adamw";
    if (!at2.checkpoint) {
      t::fail(__FILE__, __LINE__, tag + ": no checkpoint after epoch 2");
      continue;
    }
    CHECK_EQ(at2.optimizer.steps, int64_t(10));
    CHECK_EQ(int64_t(at2.optimizer.m.size()), P);
    CHECK_EQ(int64_t(at2.optimizer.v.size()), kind == OptimizerKind::AdamW ? P : int64_t(0));
    FitConfig r = f;
    r.start_epoch = 2;
    r.resume = at2.optimizer;
    r.resume_rng = at2.rng;
    std::vector<float> resumed = at2.parameters;
    const auto logs = moe_fit(Device::Cuda, c, resumed.data(), nullptr, ds, nullptr, r, nullptr, nullptr, nullptr);
    CHECK_EQ(logs.size(), std::size_t(2));
    if (resumed != straight) t::fail(__FILE__, __LINE__, tag + ": the resumed CUDA fit differs from the uninterrupted one");
  }
}

}  // namespace

int main() {
  std::string why;
  if (!t::gpu_usable(&why)) {
    std::printf("SKIPPED moe_cuda_test: no usable GPU (%s)\n", why.c_str());
    return 77;
  }
  cpu::set_gemm_backend("builtin");  // the CPU GEMM whose summation order the CUDA GEMM follows
  return t::run_all("moe_cuda");
}
