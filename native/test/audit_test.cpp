// MoE per-row audit (CPU backend) against a float64 reference written from the definitions in
// calmoe/audit.h: dense and active-expert layouts, odd sizes, ties, hard routing, bad input.
#include <algorithm>

#include "core/audit.h"
#include "test_util.h"

using namespace calmoe;

namespace {

struct Data {
  int64_t B, K, E, C;
  std::vector<float> r, P, p;
  std::vector<int32_t> ids, y;
};

// Routing weights (a softmax, or a renormalised top-k of one), experts' probabilities, and the
// mixture sum_k r_k P_k computed in double.
Data make(t::Rng& rng, int64_t B, int64_t K, int64_t C, int64_t E = 0) {
  Data d{B, K, E ? E : K, C, {}, {}, {}, {}, {}};
  d.r = t::random_probs(rng, B, K, 1.5f);
  d.P = t::random_probs(rng, B * K, C, 2.0f);
  d.y = t::random_labels(rng, B, C);
  d.p.resize(B * C);
  for (int64_t i = 0; i < B; ++i) {
    for (int64_t j = 0; j < C; ++j) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k) s += double(d.r[i * K + k]) * d.P[(i * K + k) * C + j];
      d.p[i * C + j] = float(s);
    }
  }
  if (E) {  // distinct ids per row
    d.ids.resize(B * K);
    for (int64_t i = 0; i < B; ++i) {
      std::vector<int32_t> all(E);
      for (int32_t e = 0; e < E; ++e) all[e] = e;
      for (int64_t k = 0; k < K; ++k) std::swap(all[k], all[k + rng.below(E - k)]);
      std::copy_n(all.begin(), K, d.ids.begin() + i * K);
    }
  }
  return d;
}

struct Out {
  std::vector<int32_t> top1;
  std::vector<float> maxw, ent, dis, loss, reg, own;
};

Out run(const Data& d, Device dev = Device::Cpu) {
  MoeAuditArg a;
  a.rows = d.B;
  a.slots = d.K;
  a.experts = d.E;
  a.classes = d.C;
  a.routing = d.r.data();
  a.expert_ids = d.ids.empty() ? nullptr : d.ids.data();
  a.expert_probs = d.P.data();
  a.mixture = d.p.data();
  a.labels = d.y.data();
  Out o;
  o.top1.resize(d.B);
  o.maxw.resize(d.B);
  o.ent.resize(d.B);
  o.dis.resize(d.B);
  o.loss.resize(d.B);
  o.reg.resize(d.B);
  o.own.resize(d.B * d.C);
  MoeAuditOut out{o.top1.data(), o.maxw.data(), o.ent.data(), o.dis.data(), o.loss.data(), o.reg.data(), o.own.data()};
  moe_audit_rows(dev, a, out);
  return o;
}

double ref_nll(double p) { return -std::log(std::max(p, 1e-12)); }

void check_against_reference(const Data& d, const Out& o) {
  for (int64_t i = 0; i < d.B; ++i) {
    const float* r = d.r.data() + i * d.K;
    auto id = [&](int64_t k) { return d.ids.empty() ? int32_t(k) : d.ids[i * d.K + k]; };
    int64_t best = 0;
    for (int64_t k = 1; k < d.K; ++k)
      if (r[k] > r[best] || (r[k] == r[best] && id(k) < id(best))) best = k;
    CHECK_EQ(o.top1[i], id(best));
    CHECK_EQ(o.maxw[i], r[best]);
    double h = 0, dis = 0, bestl = INFINITY;
    for (int64_t k = 0; k < d.K; ++k) {
      if (r[k] > 0) h -= double(r[k]) * std::log(double(r[k]));
      double sq = 0;
      for (int64_t j = 0; j < d.C; ++j) {
        const double diff = double(d.P[(i * d.K + k) * d.C + j]) - d.p[i * d.C + j];
        sq += diff * diff;
      }
      dis += r[k] * sq;
      if (r[k] > 0) bestl = std::min(bestl, ref_nll(d.P[(i * d.K + k) * d.C + d.y[i]]));
    }
    const double l = ref_nll(d.p[i * d.C + d.y[i]]);
    CHECK_CLOSE(o.ent[i], h, 1e-6, 1e-5);
    CHECK_CLOSE(o.dis[i], dis, 1e-7, 1e-5);
    CHECK_CLOSE(o.loss[i], l, 1e-6, 1e-6);
    CHECK_CLOSE(o.reg[i], std::max(0.0, l - bestl), 1e-5, 1e-5);
    for (int64_t j = 0; j < d.C; ++j) CHECK_EQ(o.own[i * d.C + j], d.P[(i * d.K + best) * d.C + j]);
  }
}

TEST(dense_layout_matches_reference) {
  t::Rng rng(1);
  for (int64_t B : {1, 13, 1977}) {
    for (int64_t K : {1, 3, 8}) {
      for (int64_t C : {2, 10, 33}) {
        const Data d = make(rng, B, K, C);
        check_against_reference(d, run(d));
      }
    }
  }
}

TEST(active_expert_layout_matches_reference) {
  t::Rng rng(2);
  for (int64_t B : {1, 13, 1977}) {
    for (int64_t K : {1, 2, 3}) {
      const Data d = make(rng, B, K, 7, 5);
      check_against_reference(d, run(d));
    }
  }
}

TEST(ties_go_to_the_lower_expert_id) {
  Data d{1, 3, 6, 2, {0.25f, 0.375f, 0.375f}, {0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f}, {0.5f, 0.5f}, {4, 5, 2}, {0}};
  CHECK_EQ(run(d).top1[0], 2);
  d.ids = {4, 1, 2};
  CHECK_EQ(run(d).top1[0], 1);
  d.ids.clear();
  d.E = 3;
  CHECK_EQ(run(d).top1[0], 1);
}

TEST(hard_routing_has_no_regret_and_no_disagreement) {
  t::Rng rng(3);
  Data d = make(rng, 257, 4, 5);
  for (int64_t i = 0; i < d.B; ++i) {
    const int64_t k = rng.below(4);
    for (int64_t s = 0; s < 4; ++s) d.r[i * 4 + s] = s == k ? 1.0f : 0.0f;
    std::copy_n(d.P.data() + (i * 4 + k) * 5, 5, d.p.data() + i * 5);
  }
  const Out o = run(d);
  for (int64_t i = 0; i < d.B; ++i) {
    CHECK_EQ(o.reg[i], 0.0f);
    CHECK_EQ(o.dis[i], 0.0f);
    CHECK_EQ(o.ent[i], 0.0f);
    CHECK_EQ(o.maxw[i], 1.0f);
  }
  // the blend is never better than its best active expert: regret >= 0 everywhere
  const Data s = make(rng, 1977, 3, 4);
  const Out os = run(s);
  for (float v : os.reg) CHECK(v >= 0.0f);
}

TEST(same_bits_for_any_thread_count) {
  t::Rng rng(4);
  const Data d = make(rng, 50003, 4, 10);
  const int before = cpu_threads();
  set_cpu_threads(1);
  const Out a = run(d);
  set_cpu_threads(3);
  const Out b = run(d);
  set_cpu_threads(before);
  CHECK(a.dis == b.dis && a.reg == b.reg && a.ent == b.ent && a.top1 == b.top1 && a.own == b.own);
}

TEST(outputs_need_their_inputs) {
  t::Rng rng(5);
  const Data d = make(rng, 4, 2, 3);
  std::vector<float> dis(4);
  std::vector<int32_t> top(4);
  MoeAuditArg a;
  a.rows = 4;
  a.slots = 2;
  a.routing = d.r.data();
  MoeAuditOut o;
  o.top1 = top.data();
  moe_audit_rows(Device::Cpu, a, o);  // routing alone: top-1, max weight and entropy
  o.disagreement = dis.data();
  CHECK_THROWS(moe_audit_rows(Device::Cpu, a, o), ErrorKind::Type, "expertProbs: needed");
  a.expert_probs = d.P.data();
  a.classes = 3;
  CHECK_THROWS(moe_audit_rows(Device::Cpu, a, o), ErrorKind::Type, "mixture: needed");
}

TEST(bad_input) {
  t::Rng rng(6);
  const Data good = make(rng, 5, 3, 4);
  auto expect = [&](auto mutate, ErrorKind kind, const char* msg) {
    Data d = good;
    mutate(d);
    CHECK_THROWS(run(d), kind, msg);
  };
  expect([](Data& d) { d.r[1 * 3 + 2] = NAN; }, ErrorKind::Range, "routing: row 1, column 2 = nan is not a weight in [0, 1]");
  expect([](Data& d) { d.r[2 * 3 + 0] = -0.25f; }, ErrorKind::Range, "routing: row 2, column 0 = -0.25");
  expect([](Data& d) { std::fill_n(d.r.begin() + 9, 3, 0.5f); }, ErrorKind::Range, "routing: row 3 sums to");
  expect([](Data& d) { d.P[(4 * 3 + 1) * 4 + 2] = 2.0f; }, ErrorKind::Range, "expertProbs: row 4, expert slot 1, column 2 = 2 is not a probability");
  expect([](Data& d) { std::fill_n(d.P.begin() + 8, 4, 0.5f); }, ErrorKind::Range, "expertProbs: row 0, expert slot 2 sums to");
  expect([](Data& d) { d.p[1 * 4 + 3] = INFINITY; }, ErrorKind::Range, "mixture: row 1, column 3 = inf");
  expect([](Data& d) { std::fill_n(d.p.begin() + 8, 4, 0.3f); }, ErrorKind::Range, "mixture: row 2 sums to");
  expect([](Data& d) { d.y[4] = 4; }, ErrorKind::Range, "labels[4] = 4 is outside [0, 4)");
  expect([](Data& d) { d.ids.assign(15, 0); d.ids[7] = 9; d.E = 5; }, ErrorKind::Range, "experts: row 2, column 1 = 9 is outside [0, 5)");
  expect([](Data& d) { d.B = 0; }, ErrorKind::Range, "routing: expected at least one row");
  expect([](Data& d) { d.E = 7; }, ErrorKind::Range, "numExperts: 7 differs from the 3 routing columns");
  // the first bad row is reported, whatever the chunking
  Data big = make(rng, 100003, 2, 3);
  big.y[77777] = 3;
  big.y[99999] = -1;
  CHECK_THROWS(run(big), ErrorKind::Range, "labels[77777] = 3");
}

}  // namespace

TEST_MAIN("audit")
