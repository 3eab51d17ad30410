// CUDA backend of the MoE per-row audit against the CPU backend: the same bits (per-row float32
// math with explicit FMAs and calmoe's own log), the same first bad row. Skipped, loudly, without
// a GPU.
#include "core/audit.h"
#include "test_util.h"

using namespace calmoe;

namespace {

struct Out {
  std::vector<int32_t> top1;
  std::vector<float> maxw, ent, dis, loss, reg, own;
  bool operator==(const Out& o) const {
    return top1 == o.top1 && maxw == o.maxw && ent == o.ent && dis == o.dis && loss == o.loss && reg == o.reg && own == o.own;
  }
};

Out run(Device dev, const MoeAuditArg& a) {
  Out o;
  const std::size_t B = std::size_t(a.rows);
  o.top1.resize(B);
  o.maxw.resize(B);
  o.ent.resize(B);
  o.dis.resize(B);
  o.loss.resize(B);
  o.reg.resize(B);
  o.own.resize(B * std::size_t(a.classes));
  moe_audit_rows(dev, a, MoeAuditOut{o.top1.data(), o.maxw.data(), o.ent.data(), o.dis.data(), o.loss.data(), o.reg.data(), o.own.data()});
  return o;
}

TEST(outputs_identical) {
  uint64_t seed = 1;
  for (int64_t B : {1, 13, 1977, 100003, 1000003}) {
    for (int64_t K : {1, 3, 8}) {
      for (int64_t C : {2, 10, 100}) {
        if (B * K * C > 60000000) continue;
        t::Rng rng(seed++);
        const auto r = t::random_probs(rng, B, K, 1.5f);
        const auto P = t::random_probs(rng, B * K, C, 2.0f);
        const auto y = t::random_labels(rng, B, C);
        std::vector<float> p(B * C);
        for (int64_t i = 0; i < B; ++i)
          for (int64_t j = 0; j < C; ++j) {
            double s = 0;
            for (int64_t k = 0; k < K; ++k) s += double(r[i * K + k]) * P[(i * K + k) * C + j];
            p[i * C + j] = float(s);
          }
        MoeAuditArg a;
        a.rows = B;
        a.slots = K;
        a.classes = C;
        a.routing = r.data();
        a.expert_probs = P.data();
        a.mixture = p.data();
        a.labels = y.data();
        CHECK(run(Device::Cpu, a) == run(Device::Cuda, a));
      }
    }
  }
}

TEST(first_bad_row_agrees) {
  t::Rng rng(2);
  const int64_t B = 100003, K = 2, C = 3;
  const auto r = t::random_probs(rng, B, K);
  auto y = t::random_labels(rng, B, C);
  const auto P = t::random_probs(rng, B * K, C);
  std::vector<float> p(P.begin(), P.begin() + B * C);
  y[77777] = 3;
  y[99999] = -1;
  MoeAuditArg a;
  a.rows = B;
  a.slots = K;
  a.classes = C;
  a.routing = r.data();
  a.expert_probs = P.data();
  a.mixture = p.data();
  a.labels = y.data();
  CHECK_THROWS(run(Device::Cpu, a), ErrorKind::Range, "labels[77777] = 3");
  CHECK_THROWS(run(Device::Cuda, a), ErrorKind::Range, "labels[77777] = 3");
}

}  // namespace

int main() {
  std::string why;
  if (!t::gpu_usable(&why)) {
    std::printf("SKIPPED audit_cuda_test: no usable GPU (%s)\n", why.c_str());
    return 77;
  }
  return t::run_all("audit_cuda");
}
