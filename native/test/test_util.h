// A tiny test harness for the native tests (plain executables under ctest): TEST(name) { ... },
// CHECK(cond), CHECK_CLOSE(got, want, atol, rtol) in the llm.c style |got - want| <= atol + rtol*|want|,
// CHECK_THROWS(expr, kind, substring). Exit code 0 = pass, 1 = fail, 77 = skipped (no GPU).
#pragma once
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "calmoe/calmoe.h"

namespace t {

struct Case {
  const char* name;
  std::function<void()> fn;
};
inline std::vector<Case>& cases() {
  static std::vector<Case> c;
  return c;
}
inline int& failures() {
  static int f = 0;
  return f;
}
struct Register {
  Register(const char* n, std::function<void()> f) { cases().push_back({n, std::move(f)}); }
};

inline void fail(const char* file, int line, const std::string& what) {
  ++failures();
  std::fprintf(stderr, "  FAIL %s:%d: %s\n", file, line, what.c_str());
}

inline bool close(double got, double want, double atol, double rtol) {
  if (std::isnan(want)) return std::isnan(got);
  if (std::isinf(want)) return got == want;
  return std::fabs(got - want) <= atol + rtol * std::fabs(want);
}

// T_FILTER=substring runs only the matching cases (for debugging).
inline int run_all(const char* suite) {
  int failed_cases = 0;
  const char* filter = std::getenv("T_FILTER");
  for (auto& c : cases()) {
    if (filter && std::string(c.name).find(filter) == std::string::npos) continue;
    const int before = failures();
    try {
      c.fn();
    } catch (const std::exception& e) {
      fail(__FILE__, __LINE__, std::string("unexpected exception: ") + e.what());
    }
    const bool ok = failures() == before;
    if (!ok) ++failed_cases;
    std::printf("%s %s.%s\n", ok ? "ok  " : "FAIL", suite, c.name);
  }
  std::printf("%s: %zu cases, %d failed\n", suite, cases().size(), failed_cases);
  return failed_cases ? 1 : 0;
}

// Seeded data generators: the same data on every machine.
struct Rng {
  std::mt19937_64 g;
  explicit Rng(uint64_t seed) : g(seed) {}
  double uniform() { return std::uniform_real_distribution<double>(0.0, 1.0)(g); }
  float normal(float sd = 1.0f) { return std::normal_distribution<float>(0.0f, sd)(g); }
  int32_t below(int64_t n) { return int32_t(std::uniform_int_distribution<int64_t>(0, n - 1)(g)); }
};

// rows x cols probabilities: a softmax of Gaussian logits (scale sets how peaked), rows sum to 1.
inline std::vector<float> random_probs(Rng& r, int64_t rows, int64_t cols, float scale = 2.0f) {
  std::vector<float> p(static_cast<std::size_t>(rows * cols));
  std::vector<double> e(static_cast<std::size_t>(cols));
  for (int64_t i = 0; i < rows; ++i) {
    double s = 0;
    for (int64_t j = 0; j < cols; ++j) s += (e[j] = std::exp(double(r.normal(scale))));
    for (int64_t j = 0; j < cols; ++j) p[i * cols + j] = float(e[j] / s);
  }
  return p;
}

inline std::vector<int32_t> random_labels(Rng& r, int64_t n, int64_t classes) {
  std::vector<int32_t> y(static_cast<std::size_t>(n));
  for (auto& v : y) v = r.below(classes);
  return y;
}

inline bool gpu_usable(std::string* why) {
  const calmoe::BackendInfo info = calmoe::backend_info();
  if (!info.cuda_compiled || !info.cuda_unavailable_reason.empty() || info.gpus.empty()) {
    *why = info.cuda_unavailable_reason.empty() ? "no GPU" : info.cuda_unavailable_reason;
    return false;
  }
  return true;
}

}  // namespace t

#define T_CAT2(a, b) a##b
#define T_CAT(a, b) T_CAT2(a, b)
#define TEST(name)                                                         \
  static void T_CAT(test_, name)();                                        \
  static t::Register T_CAT(reg_, name)(#name, T_CAT(test_, name));         \
  static void T_CAT(test_, name)()

#define CHECK(cond) \
  do { if (!(cond)) t::fail(__FILE__, __LINE__, "CHECK(" #cond ")"); } while (0)

#define CHECK_EQ(got, want)                                                                       \
  do {                                                                                            \
    const auto g_ = (got);                                                                        \
    const auto w_ = (want);                                                                       \
    if (!(g_ == w_)) t::fail(__FILE__, __LINE__, std::string(#got " == " #want ": got ") +        \
                                                     std::to_string(g_) + ", want " + std::to_string(w_)); \
  } while (0)

#define CHECK_CLOSE(got, want, atol, rtol)                                                        \
  do {                                                                                            \
    const double g_ = double(got), w_ = double(want);                                             \
    if (!t::close(g_, w_, (atol), (rtol))) {                                                      \
      char buf_[256];                                                                             \
      std::snprintf(buf_, sizeof buf_, "%s ~ %s: got %.17g, want %.17g", #got, #want, g_, w_);    \
      t::fail(__FILE__, __LINE__, buf_);                                                          \
    }                                                                                             \
  } while (0)

#define CHECK_THROWS(expr, kind_, substr)                                                         \
  do {                                                                                            \
    bool thrown_ = false;                                                                         \
    try {                                                                                         \
      (void)(expr);                                                                               \
    } catch (const calmoe::Error& e_) {                                                           \
      thrown_ = true;                                                                             \
      if (e_.kind() != (kind_)) t::fail(__FILE__, __LINE__, std::string("wrong error kind: ") + e_.what()); \
      if (std::string(e_.what()).find(substr) == std::string::npos)                                \
        t::fail(__FILE__, __LINE__, std::string("message lacks '") + (substr) + "': " + e_.what()); \
    }                                                                                             \
    if (!thrown_) t::fail(__FILE__, __LINE__, "expected " #expr " to throw");                     \
  } while (0)

#define TEST_MAIN(suite) \
  int main() { return t::run_all(suite); }
