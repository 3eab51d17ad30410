// MoE configuration checks, the flat parameter layout, and seeded initialisation.
#include <algorithm>
#include <cmath>
#include <string>

#include "calmoe/error.h"
#include "calmoe/moe.h"

namespace calmoe {
namespace {

// splitmix64: a small, portable generator; the same seed gives the same bits everywhere.
struct SplitMix {
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  double uniform() { return double(next() >> 11) * 0x1.0p-53; }  // [0, 1)
  double normal() {                                               // Box-Muller
    const double u1 = 1.0 - uniform(), u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }
};

std::vector<int64_t> dims(int64_t in, const std::vector<int64_t>& hidden, int64_t out) {
  std::vector<int64_t> d{in};
  d.insert(d.end(), hidden.begin(), hidden.end());
  d.push_back(out);
  return d;
}

void add_layers(ParamLayout& l, const std::string& prefix, const std::vector<int64_t>& d) {
  for (std::size_t i = 0; i + 1 < d.size(); ++i) {
    l.tensors.push_back({prefix + "." + std::to_string(i) + ".weight", l.total, {d[i], d[i + 1]}});
    l.total += d[i] * d[i + 1];
    l.tensors.push_back({prefix + "." + std::to_string(i) + ".bias", l.total, {d[i + 1]}});
    l.total += d[i + 1];
  }
}

// Parameters of an MLP with layer widths d, saturating just above limits::kMaxParams (no overflow).
int64_t mlp_params(int64_t in, const std::vector<int64_t>& hidden, int64_t out) {
  int64_t total = 0, prev = in;
  for (std::size_t i = 0; i <= hidden.size(); ++i) {
    const int64_t next = i < hidden.size() ? hidden[i] : out;
    total += prev * next + next;  // each factor <= 2^24: no overflow
    if (total > limits::kMaxParams) return limits::kMaxParams + 1;
    prev = next;
  }
  return total;
}

void check_dim(int64_t v, const char* name) {
  if (v < 1 || v > limits::kMaxWidth) throw_range(std::string(name) + ": expected an integer in [1, " + std::to_string(limits::kMaxWidth) + "], got " + std::to_string(v));
}

}  // namespace

void moe_check_config(const MoEConfig& c) {
  check_dim(c.input_dim, "inputDim");
  check_dim(c.classes, "classes");
  if (c.experts < 1 || c.experts > limits::kMaxExperts)
    throw_range("experts: expected an integer in [1, " + std::to_string(limits::kMaxExperts) + "], got " + std::to_string(c.experts));
  for (const auto* h : {&c.expert_hidden, &c.router_hidden}) {
    if (h->size() > std::size_t(limits::kMaxHiddenLayers))
      throw_range(std::string(h == &c.expert_hidden ? "expertHidden" : "routerHidden") + ": expected at most " + std::to_string(limits::kMaxHiddenLayers) +
                  " hidden layers, got " + std::to_string(h->size()));
  }
  for (int64_t h : c.expert_hidden) check_dim(h, "expertHidden");
  for (int64_t h : c.router_hidden) check_dim(h, "routerHidden");
  if (c.routing == Routing::TopK && (c.top_k < 1 || c.top_k > c.experts))
    throw_range("topK: expected an integer in [1, experts = " + std::to_string(c.experts) + "], got " + std::to_string(c.top_k));
  if (!(c.router_temperature > 0.0f) || !std::isfinite(c.router_temperature))
    throw_range("routerTemperature: expected a finite number > 0");
  if (moe_param_count(c) > limits::kMaxParams) throw_range("model: more than " + std::to_string(limits::kMaxParams) + " parameters");
}

int64_t moe_param_count(const MoEConfig& c) {
  const int64_t router = mlp_params(c.input_dim, c.router_hidden, c.experts);
  const int64_t expert = mlp_params(c.input_dim, c.expert_hidden, c.classes);
  if (router > limits::kMaxParams || expert > limits::kMaxParams / c.experts) return limits::kMaxParams + 1;
  return std::min(limits::kMaxParams + 1, router + expert * c.experts);
}

int64_t moe_active_experts(const MoEConfig& c, bool training) {
  switch (c.routing) {
    case Routing::Soft: return c.experts;
    case Routing::TopK: return c.top_k;
    case Routing::Hard: return training ? c.experts : 1;
  }
  return 1;
}

ParamLayout moe_layout(const MoEConfig& c) {
  ParamLayout l;
  l.router_offset = 0;
  add_layers(l, "router", dims(c.input_dim, c.router_hidden, c.experts));
  l.router_size = l.total;
  for (int64_t k = 0; k < c.experts; ++k) {
    l.expert_offset.push_back(l.total);
    add_layers(l, "experts." + std::to_string(k), dims(c.input_dim, c.expert_hidden, c.classes));
  }
  l.expert_size = c.experts ? (l.total - l.router_size) / c.experts : 0;
  return l;
}

void moe_init_params(const MoEConfig& c, float* params, uint64_t seed, InitKind kind, float normal_std) {
  if (kind == InitKind::Normal && !(normal_std >= 0.0f && normal_std <= limits::kMaxInitStd))
    throw_range("init.std: expected a number in [0, " + std::to_string(int64_t(limits::kMaxInitStd)) + "]");
  const ParamLayout l = moe_layout(c);
  SplitMix rng{seed};
  int64_t fan_in = 1;  // a bias shares the fan_in of the weight before it
  for (const ParamTensor& t : l.tensors) {
    int64_t n = 1;
    for (int64_t s : t.shape) n *= s;
    if (t.shape.size() == 2) fan_in = t.shape[0];
    const double bound = 1.0 / std::sqrt(double(fan_in));
    for (int64_t i = 0; i < n; ++i) {
      const double v = kind == InitKind::Normal ? rng.normal() * normal_std : (2.0 * rng.uniform() - 1.0) * bound;
      params[t.offset + i] = float(v);
    }
  }
}

}  // namespace calmoe
