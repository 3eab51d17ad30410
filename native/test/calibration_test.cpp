// Calibration histogram (CPU backend) against a naive reference, golden values where libraries
// disagree, exactness (threads, chunks, merges, SIMD vs scalar: identical bits), and bad input.
#include <algorithm>
#include <cstring>
#include <numeric>

#include "core/calibration.h"
#include "test_util.h"

using namespace calmoe;

namespace {

// ---- naive reference ----------------------------------------------------------------------------

// Bin by exact rational comparison with the edges i/M, in integers: c = mant * 2^-k.
int ref_bin(float c, int M, bool left_closed) {
  if (c <= 0.0f) return 0;
  int e = 0;
  const double m = std::frexp(double(c), &e);          // c = m * 2^e, m in [0.5, 1)
  const int k = 24 - e;                                 // c = mant / 2^k
  if (k > 100) return 0;                                // c < 2^-76: below the first edge
  const unsigned __int128 mant = (unsigned __int128)(uint64_t)std::ldexp(m, 24);
  const unsigned __int128 num = mant * (unsigned __int128)M;   // c*M = num / 2^k
  const unsigned __int128 den = (unsigned __int128)1 << k;
  int b;
  if (left_closed) b = int(num / den);                             // floor(c*M)
  else b = int((num + den - 1) / den) - 1;                          // ceil(c*M) - 1
  return std::clamp(b, 0, M - 1);
}

struct RefBin {
  int64_t n = 0, pos = 0;
  long double conf = 0;
};
struct Ref {
  std::vector<RefBin> bins;
  int64_t rows = 0, correct = 0;
  long double nll = 0, brier = 0;
  double ece() const {
    long double e = 0;
    for (const auto& b : bins) e += std::fabs((long double)b.pos - b.conf);
    return double(e / rows);
  }
  double mce() const {
    long double m = 0;
    for (const auto& b : bins) if (b.n) m = std::max(m, std::fabs((long double)b.pos - b.conf) / b.n);
    return double(m);
  }
};

Ref ref_top_label(const std::vector<float>& s, int64_t C, const std::vector<int32_t>& y, int M, bool left, bool logits) {
  Ref r;
  r.bins.resize(M);
  const int64_t N = int64_t(y.size());
  for (int64_t i = 0; i < N; ++i) {
    const float* row = &s[i * C];
    std::vector<double> p(C);
    if (logits) {
      double mx = row[0], z = 0;
      for (int64_t j = 0; j < C; ++j) mx = std::max(mx, double(row[j]));
      for (int64_t j = 0; j < C; ++j) z += std::exp(double(row[j]) - mx);
      for (int64_t j = 0; j < C; ++j) p[j] = std::exp(double(row[j]) - mx) / z;
    } else {
      for (int64_t j = 0; j < C; ++j) p[j] = row[j];
    }
    const int64_t arg = std::max_element(row, row + C) - row;  // first index of the max
    const float conf = logits ? float(p[arg]) : row[arg];
    const int b = ref_bin(conf, M, left);
    r.bins[b].n++;
    r.bins[b].pos += arg == y[i];
    r.bins[b].conf += conf;
    r.rows++;
    r.correct += arg == y[i];
    r.nll += -std::log(std::max(p[y[i]], 1e-12));
    for (int64_t j = 0; j < C; ++j) r.brier += (p[j] - (j == y[i])) * (p[j] - (j == y[i]));
  }
  return r;
}

std::vector<uint64_t> new_state(CalibKind kind, int M, BinEdges e, int groups = 1, bool extras = true) {
  CalibConfig c;
  c.kind = kind;
  c.bins = M;
  c.edges = e;
  c.groups = groups;
  c.extras = extras;
  return calib_state_new(c);
}

CalibSummary run_rows(const std::vector<float>& s, int64_t C, const std::vector<int32_t>& y, int M, BinEdges e,
                      ScoreKind kind = ScoreKind::Probabilities, CalibKind ck = CalibKind::TopLabel) {
  auto st = new_state(ck, M, e, ck == CalibKind::Classwise ? int(C) : 1);
  ScoresArg a;
  a.data = s.data();
  a.rows = int64_t(y.size());
  a.cols = C;
  a.kind = kind;
  calib_update_rows(Device::Cpu, a, y.data(), st.data(), st.size());
  return calib_finalize(st.data(), st.size());
}

CalibSummary run_conf(const std::vector<float>& c, const std::vector<uint8_t>& ok, int M, BinEdges e) {
  auto st = new_state(CalibKind::Confidence, M, e, 1, false);
  calib_update_confidence(Device::Cpu, c.data(), ok.data(), int64_t(c.size()), st.data(), st.size());
  return calib_finalize(st.data(), st.size());
}

// ---- golden values ------------------------------------------------------------------------------

// Guo et al. / sklearn-style right-closed bins put c = 1.0 into the last bin (ECE 0.475); a library
// that opens an extra bin for 1.0 reports 0.525 (see test/fixtures/calibration-golden.json).
// 'auto' keeps calibration on the CPU (rows in host memory); 'cuda' runs there or says why not.
TEST(auto_device_is_the_cpu) {
  CHECK(calib_resolve_device(DeviceRequest::Auto) == Device::Cpu);
  CHECK(calib_resolve_device(DeviceRequest::Cpu) == Device::Cpu);
  std::string why;
  if (t::gpu_usable(&why)) CHECK(calib_resolve_device(DeviceRequest::Cuda) == Device::Cuda);
  else CHECK_THROWS(calib_resolve_device(DeviceRequest::Cuda), ErrorKind::Unavailable, "no GPU is usable");
}

TEST(golden_confidence_one_in_last_bin) {
  for (BinEdges e : {BinEdges::RightClosed, BinEdges::LeftClosed}) {
    const CalibSummary s = run_conf({0.95f, 1.0f}, {1, 0}, 10, e);
    CHECK_CLOSE(s.ece, 0.475, 1e-7, 0);  // inputs are float32: 0.95f = 0.949999988
    CHECK_EQ(s.groups[0].bins[9].count, uint64_t(2));
  }
}

// The edge 0.5 is in bin 4 when bins are right-closed (0.51667) and bin 5 when left-closed (0.15).
TEST(golden_edge_half) {
  const CalibSummary r = run_conf({0.5f, 0.5f, 0.55f}, {1, 1, 0}, 10, BinEdges::RightClosed);
  CHECK_CLOSE(r.ece, (2.0 * 0.5 + 0.55f) / 3.0, 1e-9, 0);  // = 0.516667
  const CalibSummary l = run_conf({0.5f, 0.5f, 0.55f}, {1, 1, 0}, 10, BinEdges::LeftClosed);
  CHECK_CLOSE(l.ece, std::fabs(2.0 / 3.0 - (0.5 + 0.5 + double(0.55f)) / 3.0), 1e-9, 0);  // = 0.15
  CHECK_CLOSE(l.ece, 0.15, 1e-7, 0);
}

// torchmetrics BinaryCalibrationError documentation example: 2 bins -> 0.29 (MCE 0.3167).
TEST(golden_torchmetrics_binary) {
  const std::vector<float> p = {0.25f, 0.25f, 0.55f, 0.75f, 0.75f};
  const std::vector<int32_t> y = {0, 0, 1, 1, 1};
  auto st = new_state(CalibKind::Binary, 2, BinEdges::RightClosed);
  calib_update_binary(Device::Cpu, p.data(), y.data(), 5, st.data(), st.size());
  const CalibSummary s = calib_finalize(st.data(), st.size());
  CHECK_CLOSE(s.ece, 0.29, 1e-7, 0);
  CHECK_CLOSE(s.mce, 0.31666666, 1e-7, 0);
  CHECK_CLOSE(s.accuracy, 1.0, 0, 0);  // thresholded at 0.5, every row is right
}

TEST(zero_and_one_land_in_real_bins) {
  for (BinEdges e : {BinEdges::RightClosed, BinEdges::LeftClosed}) {
    const CalibSummary s = run_conf({0.0f, 1.0f}, {0, 1}, 7, e);
    CHECK_EQ(s.groups[0].bins[0].count, uint64_t(1));
    CHECK_EQ(s.groups[0].bins[6].count, uint64_t(1));
    CHECK_CLOSE(s.ece, 0.0, 0, 0);
  }
}

// ---- parity with the reference ------------------------------------------------------------------

void parity_case(int64_t N, int64_t C, int M, BinEdges e, bool logits, uint64_t seed) {
  t::Rng rng(seed);
  std::vector<float> s = logits ? std::vector<float>(std::size_t(N * C)) : t::random_probs(rng, N, C);
  if (logits) for (auto& v : s) v = rng.normal(3.0f);
  const auto y = t::random_labels(rng, N, C);
  const CalibSummary got = run_rows(s, C, y, M, e, logits ? ScoreKind::Logits : ScoreKind::Probabilities);
  const Ref ref = ref_top_label(s, C, y, M, e == BinEdges::LeftClosed, logits);
  CHECK_EQ(got.rows, uint64_t(N));
  CHECK_CLOSE(got.accuracy, double(ref.correct) / N, 0, 0);
  for (int b = 0; b < M; ++b) {
    if (logits) {  // float vs double softmax may move a row across an edge: allow one per bin
      CHECK(std::llabs(int64_t(got.groups[0].bins[b].count) - ref.bins[b].n) <= 1);
    } else {
      CHECK_EQ(int64_t(got.groups[0].bins[b].count), ref.bins[b].n);
      if (ref.bins[b].n) CHECK_EQ(int64_t(got.groups[0].bins[b].accuracy * ref.bins[b].n + 0.5), ref.bins[b].pos);
      else CHECK(std::isnan(got.groups[0].bins[b].accuracy));
    }
  }
  CHECK_CLOSE(got.ece, ref.ece(), logits ? 2e-6 : 1e-12, logits ? 1e-5 : 1e-9);
  CHECK_CLOSE(got.mce, ref.mce(), logits ? 1e-5 : 1e-12, logits ? 1e-4 : 1e-9);
  CHECK_CLOSE(got.nll, double(ref.nll / N), 1e-6, 1e-5);
  CHECK_CLOSE(got.brier, double(ref.brier / N), 1e-6, 1e-5);
}

TEST(parity_probabilities_odd_sizes) {
  uint64_t seed = 1;
  for (int64_t N : {1, 13, 1977, 100003}) {
    for (int64_t C : {2, 3, 10}) {
      for (int M : {1, 10, 15}) parity_case(N, C, M, M == 10 ? BinEdges::LeftClosed : BinEdges::RightClosed, false, seed++);
    }
  }
  parity_case(1977, 1000, 15, BinEdges::RightClosed, false, 99);
  parity_case(13, 1000, 37, BinEdges::LeftClosed, false, 98);
}

TEST(parity_logits_odd_sizes) {
  uint64_t seed = 100;
  for (int64_t N : {1, 13, 1977, 100003}) {
    for (int64_t C : {2, 3, 10}) parity_case(N, C, 15, BinEdges::RightClosed, true, seed++);
  }
  parity_case(1977, 1000, 15, BinEdges::LeftClosed, true, 199);
}

TEST(classwise_matches_reference) {
  t::Rng rng(7);
  const int64_t N = 1977, C = 3;
  const int M = 10;
  const auto p = t::random_probs(rng, N, C);
  const auto y = t::random_labels(rng, N, C);
  const CalibSummary s = run_rows(p, C, y, M, BinEdges::RightClosed, ScoreKind::Probabilities, CalibKind::Classwise);
  CHECK_EQ(int(s.groups.size()), int(C));
  double mean = 0;
  for (int64_t j = 0; j < C; ++j) {
    std::vector<RefBin> bins(M);
    for (int64_t i = 0; i < N; ++i) {
      const float c = p[i * C + j];
      auto& b = bins[ref_bin(c, M, false)];
      b.n++;
      b.pos += y[i] == j;
      b.conf += c;
    }
    long double e = 0;
    for (int b = 0; b < M; ++b) {
      CHECK_EQ(int64_t(s.groups[j].bins[b].count), bins[b].n);
      e += std::fabs((long double)bins[b].pos - bins[b].conf);
    }
    CHECK_CLOSE(s.groups[j].ece, double(e / N), 1e-12, 1e-9);
    mean += double(e / N) / C;
  }
  CHECK_CLOSE(s.ece, mean, 1e-12, 1e-9);
}

TEST(equal_mass_bins) {
  t::Rng rng(11);
  const int64_t N = 1977;
  const int M = 15;
  std::vector<float> c(N);
  std::vector<uint8_t> ok(N);
  for (int64_t i = 0; i < N; ++i) {
    c[i] = float(std::floor(rng.uniform() * 50) / 50);  // many ties
    ok[i] = rng.uniform() < c[i];
  }
  EqualMassArg a;
  a.kind = CalibKind::Confidence;
  a.confidence = c.data();
  a.correct = ok.data();
  a.n = N;
  a.bins = M;
  a.extras = false;
  const CalibSummary s = calib_equal_mass(Device::Cpu, a);
  std::vector<std::pair<float, int>> v(N);
  for (int64_t i = 0; i < N; ++i) v[i] = {c[i], ok[i]};
  std::sort(v.begin(), v.end());
  long double e = 0;
  for (int b = 0; b < M; ++b) {
    const int64_t lo = b * N / M, hi = (b + 1) * N / M;
    CHECK_EQ(int64_t(s.groups[0].bins[b].count), hi - lo);
    long double conf = 0, pos = 0;
    for (int64_t i = lo; i < hi; ++i) { conf += v[i].first; pos += v[i].second; }
    e += std::fabs(pos - conf);
    if (b > 0) CHECK_CLOSE(s.groups[0].bins[b].lower, v[lo].first, 0, 0);
  }
  CHECK_CLOSE(s.ece, double(e / N), 1e-12, 1e-9);
  // permutation invariant, ties included
  std::vector<int64_t> perm(N);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng.g);
  std::vector<float> c2(N);
  std::vector<uint8_t> ok2(N);
  for (int64_t i = 0; i < N; ++i) { c2[i] = c[perm[i]]; ok2[i] = ok[perm[i]]; }
  a.confidence = c2.data();
  a.correct = ok2.data();
  CHECK_CLOSE(calib_equal_mass(Device::Cpu, a).ece, s.ece, 0, 0);
}

TEST(grouped_equals_separate_accumulators) {
  t::Rng rng(21);
  const int64_t N = 1977, C = 4;
  const int G = 5, M = 12;
  const auto p = t::random_probs(rng, N, C);
  const auto y = t::random_labels(rng, N, C);
  std::vector<int32_t> g(N);
  for (auto& v : g) v = rng.below(G - 1);  // group G-1 stays empty
  CalibConfig cfg;
  cfg.bins = M;
  cfg.groups = G;
  cfg.grouped = true;
  auto st = calib_state_new(cfg);
  ScoresArg a;
  a.data = p.data();
  a.rows = N;
  a.cols = C;
  calib_update_rows(Device::Cpu, a, y.data(), st.data(), st.size(), g.data());
  const CalibSummary s = calib_finalize(st.data(), st.size());
  const CalibSummary all = run_rows(p, C, y, M, BinEdges::RightClosed);
  CHECK_CLOSE(s.ece, all.ece, 0, 0);  // the groups' bins summed are the ungrouped histogram
  CHECK_CLOSE(s.nll, all.nll, 0, 0);
  for (int k = 0; k < G; ++k) {
    std::vector<float> pk;
    std::vector<int32_t> yk;
    for (int64_t i = 0; i < N; ++i) if (g[i] == k) { pk.insert(pk.end(), &p[i * C], &p[i * C] + C); yk.push_back(y[i]); }
    CHECK_EQ(s.groups[k].rows, uint64_t(yk.size()));
    if (yk.empty()) { CHECK(std::isnan(s.groups[k].ece)); continue; }
    const CalibSummary one = run_rows(pk, C, yk, M, BinEdges::RightClosed);
    CHECK_CLOSE(s.groups[k].ece, one.ece, 0, 0);
    CHECK_CLOSE(s.groups[k].accuracy, one.accuracy, 0, 1e-15);
  }
  g[100] = G;
  CHECK_THROWS(calib_update_rows(Device::Cpu, a, y.data(), st.data(), st.size(), g.data()), ErrorKind::Range, "groups[100] = 5 is outside [0, 5)");
  CHECK_THROWS(calib_update_rows(Device::Cpu, a, y.data(), st.data(), st.size()), ErrorKind::Type, "grouped");
}

// ---- exactness ----------------------------------------------------------------------------------

TEST(merge_of_chunks_equals_one_shot_bitwise) {
  t::Rng rng(3);
  const int64_t N = 100003, C = 10;
  const auto p = t::random_probs(rng, N, C);
  const auto y = t::random_labels(rng, N, C);
  auto one = new_state(CalibKind::TopLabel, 15, BinEdges::RightClosed);
  ScoresArg a;
  a.data = p.data();
  a.rows = N;
  a.cols = C;
  calib_update_rows(Device::Cpu, a, y.data(), one.data(), one.size());
  auto merged = new_state(CalibKind::TopLabel, 15, BinEdges::RightClosed);
  for (int64_t b = 0; b < N;) {
    const int64_t n = std::min<int64_t>(N - b, 1 + rng.below(20000));
    auto part = new_state(CalibKind::TopLabel, 15, BinEdges::RightClosed);
    ScoresArg c = a;
    c.data = p.data() + b * C;
    c.rows = n;
    calib_update_rows(Device::Cpu, c, y.data() + b, part.data(), part.size());
    calib_merge(merged.data(), merged.size(), part.data(), part.size());
    b += n;
  }
  CHECK(one == merged);
}

TEST(thread_count_and_simd_do_not_change_bits) {
  t::Rng rng(5);
  const int64_t N = 100003, C = 10;
  const auto p = t::random_probs(rng, N, C);
  const auto y = t::random_labels(rng, N, C);
  calib::KernelArgs k;
  k.scores = p.data();
  k.rows = N;
  k.cols = C;
  k.labels = y.data();
  const std::size_t n = calib::state_words(15, 1);
  std::vector<uint64_t> scalar1(n, 0), scalar2(n, 0), simd2(n, 0);
  const int threads = cpu_threads();
  set_cpu_threads(1);
  CHECK_EQ(cpu::calib_accumulate_path(k, scalar1.data(), false), int64_t(-1));
  set_cpu_threads(std::max(2, threads));
  CHECK_EQ(cpu::calib_accumulate_path(k, scalar2.data(), false), int64_t(-1));
  CHECK_EQ(cpu::calib_accumulate_path(k, simd2.data(), true), int64_t(-1));
  set_cpu_threads(threads);
  CHECK(scalar1 == scalar2);
  CHECK(scalar2 == simd2);
}

// The SIMD kernel is specialised per column count up to 16 and by chunk count up to 32: every
// shape, input kind, extras on/off, grouping and per-row records must match the scalar path.
TEST(simd_matches_scalar_bitwise_across_shapes) {
  uint64_t seed = 40;
  for (int64_t C : {1, 2, 3, 7, 8, 9, 10, 15, 16, 17, 24, 31, 32, 33, 100}) {
    t::Rng rng(seed++);
    const int64_t N = 1000 + C;  // not a multiple of 8: exercises the scalar tail
    auto p = t::random_probs(rng, N, C, C == 1 ? 1.0f : 3.0f);
    const auto y = t::random_labels(rng, N, C);
    std::vector<int32_t> g(N);
    for (auto& v : g) v = rng.below(3);
    for (ScoreKind sk : {ScoreKind::Probabilities, ScoreKind::Logits}) {
      std::vector<float> s = p;
      if (sk == ScoreKind::Logits) for (auto& v : s) v = std::log(v) * 1.7f + rng.normal(0.1f);
      for (bool extras : {false, true}) {
        for (bool grouped : {false, true}) {
          calib::KernelArgs k;
          k.scores = s.data();
          k.rows = N;
          k.cols = C;
          k.labels = y.data();
          k.score_kind = sk;
          k.extras = extras;
          k.left_closed = grouped;
          k.bins = 13;
          if (grouped) { k.group_ids = g.data(); k.groups = 3; }
          std::vector<float> c1(N), c2(N);
          std::vector<uint8_t> p1(N), p2(N);
          const std::size_t n = calib::state_words(13, grouped ? 3 : 1);
          std::vector<uint64_t> a(n, 0), b(n, 0);
          k.out_conf = c1.data();
          k.out_positive = p1.data();
          CHECK_EQ(cpu::calib_accumulate_path(k, a.data(), false), int64_t(-1));
          k.out_conf = c2.data();
          k.out_positive = p2.data();
          CHECK_EQ(cpu::calib_accumulate_path(k, b.data(), true), int64_t(-1));
          CHECK(a == b);
          CHECK(c1 == c2);
          CHECK(p1 == p2);
        }
      }
    }
    // tiny confidences (allowed by a generous sumTolerance) take the general fixed-point path
    if (C <= 16) {
      std::vector<float> tiny(static_cast<std::size_t>(N * C), 1e-35f);
      calib::KernelArgs k;
      k.scores = tiny.data();
      k.rows = N;
      k.cols = C;
      k.labels = y.data();
      k.sum_tol = 1.0f;
      std::vector<uint64_t> a(calib::state_words(15, 1), 0), b(calib::state_words(15, 1), 0);
      CHECK_EQ(cpu::calib_accumulate_path(k, a.data(), false), int64_t(-1));
      CHECK_EQ(cpu::calib_accumulate_path(k, b.data(), true), int64_t(-1));
      CHECK(a == b);
    }
    // an invalid row deep inside SIMD blocks is still reported exactly
    std::vector<float> bad = p;
    bad[(N / 2) * C] = NAN;
    calib::KernelArgs k;
    k.scores = bad.data();
    k.rows = N;
    k.cols = C;
    k.labels = y.data();
    std::vector<uint64_t> a(calib::state_words(15, 1), 0);
    CHECK_EQ(cpu::calib_accumulate_path(k, a.data(), true), N / 2);
  }
}

// ---- bad input ----------------------------------------------------------------------------------

TEST(bad_input_names_the_row_and_leaves_state_untouched) {
  std::vector<float> p = {0.2f, 0.8f, 0.5f, 0.5f, 0.9f, 0.1f};
  std::vector<int32_t> y = {1, 0, 1};
  auto st = new_state(CalibKind::TopLabel, 10, BinEdges::RightClosed);
  const auto before = st;
  ScoresArg a;
  a.data = p.data();
  a.rows = 3;
  a.cols = 2;
  y[2] = 2;
  CHECK_THROWS(calib_update_rows(Device::Cpu, a, y.data(), st.data(), st.size()), ErrorKind::Range, "labels[2] = 2 is outside [0, 2)");
  y[2] = 1;
  p[3] = NAN;
  CHECK_THROWS(calib_update_rows(Device::Cpu, a, y.data(), st.data(), st.size()), ErrorKind::Range, "row 1, column 1 is not finite");
  p[3] = 0.7f;
  CHECK_THROWS(calib_update_rows(Device::Cpu, a, y.data(), st.data(), st.size()), ErrorKind::Range, "row 1 sums to 1.2");
  p[3] = 1.5f;
  CHECK_THROWS(calib_update_rows(Device::Cpu, a, y.data(), st.data(), st.size()), ErrorKind::Range, "not a probability");
  CHECK(st == before);
  a.rows = 0;
  CHECK_THROWS(calib_update_rows(Device::Cpu, a, y.data(), st.data(), st.size()), ErrorKind::Range, "at least one row");
  CHECK_THROWS(calib_finalize(st.data(), st.size()), ErrorKind::Range, "no rows");
  CalibConfig c;
  c.bins = 0;
  CHECK_THROWS(calib_state_new(c), ErrorKind::Range, "bins");
  st[0] ^= 1;
  CHECK_THROWS(calib_finalize(st.data(), st.size()), ErrorKind::Range, "not a calmoe calibration state");
  // the first bad row is reported even when several are bad and rows span many chunks
  t::Rng rng(9);
  const int64_t N = 300000;
  auto big = t::random_probs(rng, N, 2);
  auto labels = t::random_labels(rng, N, 2);
  labels[250000] = -1;
  labels[123457] = 7;
  auto st2 = new_state(CalibKind::TopLabel, 15, BinEdges::RightClosed);
  ScoresArg b;
  b.data = big.data();
  b.rows = N;
  b.cols = 2;
  CHECK_THROWS(calib_update_rows(Device::Cpu, b, labels.data(), st2.data(), st2.size()), ErrorKind::Range, "labels[123457] = 7");
}

TEST(merge_rejects_different_configs) {
  auto a = new_state(CalibKind::TopLabel, 10, BinEdges::RightClosed);
  auto b = new_state(CalibKind::TopLabel, 15, BinEdges::RightClosed);
  CHECK_THROWS(calib_merge(a.data(), a.size(), b.data(), b.size()), ErrorKind::Range, "merge");
}

// The 64 x 64 -> 128-bit multiply-add of the weighted sums, against the compiler's 128-bit type.
TEST(weighted_u128_mul_add_is_exact) {
#if defined(__SIZEOF_INT128__)
  t::Rng rng(41);
  const uint64_t edge[] = {0, 1, 0xffffffffu, 0x100000000ull, ~0ull, ~0ull - 1, 1ull << 63, (1ull << 56) - 1};
  unsigned __int128 want = 0;
  uint64_t lo = 0, hi = 0;
  for (int k = 0; k < 20000; ++k) {
    const uint64_t a = k < 64 ? edge[k % 8] : rng.g(), b = k < 64 ? edge[k / 8] : rng.g() >> (k % 64);
    calib::u128_mul_add(lo, hi, a, b);
    want += (unsigned __int128)a * b;
    if (lo != uint64_t(want) || hi != uint64_t(want >> 64)) {
      CHECK(false);
      break;
    }
  }
#else
  std::printf("  (no 128-bit integer type here: the multiply is checked through the weighted metrics only)\n");
#endif
}

// Weighted states: chunked updates merged in any order give the one-shot state bit for bit, on
// every thread count; every row at weight 1 gives the unweighted metrics; a weight of 0 adds a
// row to the counts only; CUDA and unweighted states refuse weights.
TEST(weighted_merge_exact_and_weight_one_is_unweighted) {
  t::Rng rng(43);
  const int64_t N = 20011, C = 7;
  const auto p = t::random_probs(rng, N, C);
  const auto y = t::random_labels(rng, N, C);
  std::vector<float> w(N);
  for (int64_t i = 0; i < N; ++i) w[i] = i % 5 == 0 ? 0.0f : float(rng.uniform() * 30);
  CalibConfig cfg;
  cfg.weighted = true;
  ScoresArg a;
  a.data = p.data();
  a.rows = N;
  a.cols = C;
  auto one = calib_state_new(cfg);
  calib_update_rows(Device::Cpu, a, y.data(), one.data(), one.size(), nullptr, w.data());
  const int threads = cpu_threads();
  set_cpu_threads(1);
  auto serial = calib_state_new(cfg);
  calib_update_rows(Device::Cpu, a, y.data(), serial.data(), serial.size(), nullptr, w.data());
  set_cpu_threads(threads);
  CHECK(one == serial);
  auto merged = calib_state_new(cfg);
  std::vector<std::vector<uint64_t>> parts;
  for (int64_t b = 0; b < N;) {
    const int64_t n = std::min<int64_t>(N - b, 1 + rng.below(5000));
    auto part = calib_state_new(cfg);
    ScoresArg c = a;
    c.data = p.data() + b * C;
    c.rows = n;
    calib_update_rows(Device::Cpu, c, y.data() + b, part.data(), part.size(), nullptr, w.data() + b);
    parts.push_back(part);
    b += n;
  }
  for (auto it = parts.rbegin(); it != parts.rend(); ++it) calib_merge(merged.data(), merged.size(), it->data(), it->size());
  CHECK(one == merged);
  // weight 1 everywhere: the weighted summary equals the unweighted one
  auto plain = new_state(CalibKind::TopLabel, 15, BinEdges::RightClosed);
  calib_update_rows(Device::Cpu, a, y.data(), plain.data(), plain.size());
  auto ones = calib_state_new(cfg);
  calib_update_rows(Device::Cpu, a, y.data(), ones.data(), ones.size());  // no weights: each row weighs 1
  const CalibSummary sp = calib_finalize(plain.data(), plain.size()), so = calib_finalize(ones.data(), ones.size());
  CHECK_CLOSE(so.ece, sp.ece, 1e-9, 0);
  CHECK_CLOSE(so.accuracy, sp.accuracy, 1e-12, 0);
  CHECK_CLOSE(so.nll, sp.nll, 1e-7, 1e-7);
  CHECK_CLOSE(so.brier, sp.brier, 1e-7, 1e-7);
  CHECK(so.weight == double(N) && so.rows == uint64_t(N));
  for (int b = 0; b < 15; ++b) CHECK(so.overall.bins[b].weight == double(sp.overall.bins[b].count));
  // refusals
  CHECK_THROWS(calib_update_rows(Device::Cpu, a, y.data(), plain.data(), plain.size(), nullptr, w.data()), ErrorKind::Type, "not weighted");
  std::vector<float> bad(w);
  bad[17] = -1.0f;
  CHECK_THROWS(calib_update_rows(Device::Cpu, a, y.data(), one.data(), one.size(), nullptr, bad.data()), ErrorKind::Range, "weights[17]");
  CHECK_THROWS(calib_merge(plain.data(), plain.size(), one.data(), one.size()), ErrorKind::Range, "weighting");
}

}  // namespace

TEST_MAIN("calibration")
