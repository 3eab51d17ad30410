// Drift: argument and state checks, backend dispatch, KS p-values, multiple-testing corrections,
// PSI, the severity ranking, and the streaming monitor's state. Per-element math: core/drift.h;
// null distributions: core/ks_distribution.h.
#include "core/drift.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <sstream>
#include <string>

#include "calmoe/error.h"
#include "core/dispatch.h"
#include "core/format.h"
#include "core/ks_distribution.h"
#include "host/thread_pool.h"

namespace calmoe {
namespace {

using namespace drift;
using namespace driftmon;

using limits::kMaxDriftBins;
using limits::kMaxElements;
using limits::kMaxSampleRows;
constexpr int64_t kMaxStateWords = int64_t(1) << 28;     // 2 GB of monitor state
constexpr uint64_t kMaxWindowRows = uint64_t(1) << 53;  // a window's rows: exact in a double, no count overflows
constexpr int64_t kScipyMaxExactN = 10000;               // 'auto': exact when max(n1, n2) <= this
constexpr double kMaxExactCells = 4e9;                   // 'exact' falls back beyond this (~10 s)

uint64_t gcd_u64(uint64_t a, uint64_t b) {
  while (b) {
    const uint64_t t = a % b;
    a = b;
    b = t;
  }
  return a;
}

void check_matrix(const FeatureMatrix& m, const char* name, bool allow_empty) {
  const std::string nm(name);
  if (m.cols < 1) throw_range(nm + ": expected at least one column (feature), got " + std::to_string(m.cols));
  if (m.rows < (allow_empty ? 0 : 1)) throw_range(nm + ": expected at least one row, got " + std::to_string(m.rows));
  if (m.rows > kMaxSampleRows) throw_range(nm + ": " + std::to_string(m.rows) + " rows is more than the supported " + std::to_string(kMaxSampleRows));
  if (m.rows > kMaxElements / m.cols) throw_range(nm + ": " + std::to_string(m.rows) + " x " + std::to_string(m.cols) + " is larger than supported");
  if (m.data == nullptr && m.rows > 0) throw_type(nm + ": missing data");
}

[[noreturn]] void throw_nan(const char* name, int64_t flat, int64_t cols) {
  throw_range(std::string(name) + ": row " + std::to_string(flat / cols) + ", column " + std::to_string(flat % cols) +
              " is NaN (drift statistics need every value; drop or impute missing values first)");
}

// SciPy's method choice: 'auto' is exact when max(n1, n2) <= 10000; 'exact' switches to 'asymp'
// when lcm(n1, n2) would not fit an int32 (n1/g >= INT32_MAX / (n2/g), in double).
KsMethod choose_method(KsMethod m, uint64_t n1, uint64_t n2) {
  if (m == KsMethod::Auto) return std::max(n1, n2) <= uint64_t(kScipyMaxExactN) ? KsMethod::Exact : KsMethod::Asymp;
  if (m == KsMethod::Exact) {
    const uint64_t g = gcd_u64(n1, n2);
    if (double(n1 / g) >= double(std::numeric_limits<int32_t>::max()) / double(n2 / g)) return KsMethod::Asymp;
  }
  return m;
}

int64_t effective_n(uint64_t n1, uint64_t n2) {
  const double a = double(n1), b = double(n2);
  const double en = a * b / (a + b);
  // SciPy rounds half to even (np.round); en < 1/2 only for n1 = n2 = 1, where SciPy's kstwo(n=0)
  // gives NaN: calmoe uses n = 1 there.
  return std::max<int64_t>(1, int64_t(std::nearbyint(en)));
}

// p-value of a lattice statistic D = h / lcm(n1, n2) (h valid when the method ends up exact).
KsPValue pvalue_lattice(double D, int64_t h, uint64_t n1, uint64_t n2, KsMethod requested) {
  KsPValue r;
  r.statistic = D;
  r.method = choose_method(requested, n1, n2);
  if (r.method == KsMethod::Exact && ks::two_sample_exact_cells(int64_t(n1), int64_t(n2), h) > kMaxExactCells) r.method = KsMethod::Asymp;
  if (r.method == KsMethod::Exact) {
    bool in_range = true;
    r.p_value = ks::two_sample_exact_sf(int64_t(n1), int64_t(n2), h, &in_range);
    if (!in_range) r.method = KsMethod::Asymp;  // SciPy's fallback (see core/ks_distribution.h)
  }
  if (r.method == KsMethod::Asymp) r.p_value = ks::kolmogorov_sf(effective_n(n1, n2), D);
  return r;
}

// The same from the integer numerator num = max |i n2 - j n1| (D = num / (n1 n2)); n1 < 2^31 and
// n2 < 2^32, so every product here fits in 64 bits.
KsPValue pvalue_numerator(uint64_t num, uint64_t n1, uint64_t n2, KsMethod requested) {
  const uint64_t g = gcd_u64(n1, n2);
  const uint64_t lcm = (n1 / g) * n2;
  const uint64_t h = num / g;  // g divides both n1 and n2, so it divides num
  const double D = double(h) / double(lcm);  // one rounding when both are below 2^53, as SciPy's h / lcm
  return pvalue_lattice(D, int64_t(h), n1, n2, requested);
}

double psi_of(const uint64_t* ref_counts, const uint64_t* cur_counts, int bins, uint64_t n1, uint64_t n2, double eps) {
  double s = 0.0;
  for (int b = 0; b < bins; ++b) {
    const double p = ref_counts[b] ? double(ref_counts[b]) / double(n1) : eps;
    const double q = cur_counts[b] ? double(cur_counts[b]) / double(n2) : eps;
    if (p != q) s += (q - p) * std::log(q / p);
  }
  return s;
}

void check_options(const DriftOptions& o, bool need_psi) {
  if (need_psi && (o.psi_bins < 1 || o.psi_bins > kMaxDriftBins))
    throw_range("bins: expected an integer in [1, " + std::to_string(kMaxDriftBins) + "], got " + std::to_string(o.psi_bins));
  if (!(o.psi_epsilon > 0.0 && o.psi_epsilon <= 1.0)) throw_range("epsilon: expected a number in (0, 1], got " + fmt(o.psi_epsilon));
  if (!(o.alpha >= 0.0 && o.alpha <= 1.0)) throw_range("alpha: expected a number in [0, 1], got " + fmt(o.alpha));
  if (uint8_t(o.method) > uint8_t(KsMethod::Asymp)) throw_range("method: expected 'auto', 'exact' or 'asymp'");
  if (uint8_t(o.correction) > uint8_t(PCorrection::Bonferroni)) throw_range("correction: expected 'bh', 'by', 'bonferroni' or 'none'");
}

// Adjusted p-values, drifted flags and the severity order.
void finish(DriftReport& r, const DriftOptions& o, bool ks) {
  const int64_t d = r.features;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  r.adjusted_p_value.assign(std::size_t(d), nan);
  r.drifted.assign(std::size_t(d), 0);
  if (ks) {
    r.adjusted_p_value = adjust_pvalues(r.p_value.data(), d, o.correction);
    for (int64_t f = 0; f < d; ++f) r.drifted[f] = r.adjusted_p_value[f] <= o.alpha ? 1 : 0;
  }
  r.order.resize(std::size_t(d));
  std::iota(r.order.begin(), r.order.end(), int64_t(0));
  // NaN (not computed) sorts as the least severe.
  auto asc = [](double a, double b) { return (std::isnan(a) ? INFINITY : a) < (std::isnan(b) ? INFINITY : b); };
  auto desc = [](double a, double b) { return (std::isnan(a) ? -INFINITY : a) > (std::isnan(b) ? -INFINITY : b); };
  std::stable_sort(r.order.begin(), r.order.end(), [&](int64_t x, int64_t y) {
    const double ax = r.adjusted_p_value[x], ay = r.adjusted_p_value[y];
    if (asc(ax, ay)) return true;
    if (asc(ay, ax)) return false;
    if (desc(r.statistic[x], r.statistic[y])) return true;
    if (desc(r.statistic[y], r.statistic[x])) return false;
    if (desc(r.psi[x], r.psi[y])) return true;
    if (desc(r.psi[y], r.psi[x])) return false;
    return x < y;
  });
}

// Monitor state layout.
struct Layout {
  int64_t d = 0, F = 0, E = 0;
  std::size_t edges = 0, ref = 0, cur = 0, total = 0;  // word offsets and length
};

Layout layout_of(int64_t d, int64_t bins, int64_t refinement) {
  Layout l;
  l.d = d;
  l.F = bins * refinement;
  l.E = l.F - 1;
  l.edges = kHeaderWords;
  l.ref = l.edges + std::size_t(d * l.E);
  l.cur = l.ref + std::size_t(d * l.F);
  l.total = l.cur + std::size_t(d * l.F);
  return l;
}

void check_monitor_shape(int64_t d, int bins, int refinement) {
  if (bins < 1 || bins > kMaxDriftBins) throw_range("bins: expected an integer in [1, " + std::to_string(kMaxDriftBins) + "], got " + std::to_string(bins));
  if (refinement < 1 || refinement > kMaxDriftBins) throw_range("refinement: expected an integer in [1, " + std::to_string(kMaxDriftBins) + "], got " + std::to_string(refinement));
  if (int64_t(bins) * refinement > kMaxDriftBins)
    throw_range("bins x refinement: " + std::to_string(int64_t(bins) * refinement) + " histogram bins per feature is more than the supported " + std::to_string(kMaxDriftBins));
  if (d * 3 * int64_t(bins) * refinement > kMaxStateWords)
    throw_range("monitor: " + std::to_string(d) + " features x " + std::to_string(int64_t(bins) * refinement) + " bins is a larger state than supported (2^28 words)");
}

}  // namespace

// ---- p-values and corrections -------------------------------------------------------------------

KsPValue ks_2samp_pvalue(double statistic, int64_t n1, int64_t n2, KsMethod method) {
  if (n1 < 1 || n2 < 1) throw_range("n1, n2: expected sample sizes of at least 1, got " + std::to_string(n1) + " and " + std::to_string(n2));
  if (n1 > kMaxSampleRows || n2 > kMaxSampleRows) throw_range("n1, n2: sample sizes above " + std::to_string(kMaxSampleRows) + " are not supported");
  if (!(statistic >= 0.0 && statistic <= 1.0)) throw_range("statistic: expected a number in [0, 1], got " + fmt(statistic));
  if (uint8_t(method) > uint8_t(KsMethod::Asymp)) throw_range("method: expected 'auto', 'exact' or 'asymp'");
  const KsMethod m = choose_method(method, uint64_t(n1), uint64_t(n2));
  if (m == KsMethod::Exact) {
    // As SciPy: h = round(D * lcm) (half to even), D = h / lcm.
    const int64_t g = int64_t(gcd_u64(uint64_t(n1), uint64_t(n2)));
    const double lcm = double(n1 / g) * double(n2);
    const int64_t h = int64_t(std::nearbyint(statistic * lcm));
    return pvalue_lattice(double(h) / lcm, h, uint64_t(n1), uint64_t(n2), KsMethod::Exact);
  }
  return pvalue_lattice(statistic, 0, uint64_t(n1), uint64_t(n2), KsMethod::Asymp);
}

std::vector<double> adjust_pvalues(const double* p, int64_t n, PCorrection method) {
  if (n < 0) throw_range("pValues: negative length");
  if (uint8_t(method) > uint8_t(PCorrection::Bonferroni)) throw_range("method: expected 'bh', 'by', 'bonferroni' or 'none'");
  for (int64_t i = 0; i < n; ++i)
    if (!(p[i] >= 0.0 && p[i] <= 1.0)) throw_range("pValues[" + std::to_string(i) + "] = " + fmt(p[i]) + " is not a probability in [0, 1]");
  std::vector<double> out(p, p + n);
  const double m = double(n);
  switch (method) {
    case PCorrection::None: break;
    case PCorrection::Bonferroni:
      for (auto& v : out) v = std::min(1.0, v * m);
      break;
    case PCorrection::BH:
    case PCorrection::BY: {
      double c = 1.0;  // BY: times sum_{i=1}^m 1/i
      if (method == PCorrection::BY) {
        c = 0.0;
        for (int64_t i = n; i >= 1; --i) c += 1.0 / double(i);
      }
      std::vector<int64_t> order(static_cast<std::size_t>(n));
      std::iota(order.begin(), order.end(), int64_t(0));
      std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return p[a] < p[b]; });
      // step-up: q_(i) = min_{j >= i} p_(j) m / j, capped at 1
      double running = 1.0;
      for (int64_t i = n - 1; i >= 0; --i) {
        const double v = p[order[i]] * (m / double(i + 1)) * c;
        running = std::min(running, v);
        out[order[i]] = std::min(1.0, running);
      }
      break;
    }
  }
  return out;
}

// ---- batch comparison ---------------------------------------------------------------------------

DriftReport drift_compare(Device dev, const FeatureMatrix& ref, const FeatureMatrix& cur, const DriftOptions& o) {
  check_matrix(ref, "reference", false);
  check_matrix(cur, "current", false);
  if (cur.cols != ref.cols)
    throw_range("current: has " + std::to_string(cur.cols) + " columns (features) but reference has " + std::to_string(ref.cols));
  if (o.psi_bins != 0 || !o.ks) check_options(o, true);
  else check_options(o, false);
  const int64_t d = ref.cols, n1 = ref.rows, n2 = cur.rows;
  const int B = o.psi_bins;
  const int64_t E = B > 0 ? B - 1 : 0;

  FeatureArgs a;
  a.ref = ref.data;
  a.ref_rows = n1;
  a.cur = cur.data;
  a.cur_rows = n2;
  a.features = d;
  a.ks = o.ks;
  a.edges = E;
  std::vector<int64_t> edge_index(static_cast<std::size_t>(E));
  for (int64_t k = 1; k <= E; ++k) edge_index[k - 1] = cut_index(k, n1, B);
  a.edge_index = edge_index.data();
  std::vector<int64_t> d_plus(std::size_t(d), 0), d_minus(std::size_t(d), 0), ref_le(std::size_t(d * E)), cur_le(std::size_t(d * E));
  std::vector<uint32_t> edge_key(std::size_t(d * E));
  FeatureOut out;
  out.d_plus = d_plus.data();
  out.d_minus = d_minus.data();
  out.edge_key = edge_key.data();
  out.ref_le = ref_le.data();
  out.cur_le = cur_le.data();
  dispatch(dev, [&] { cpu::drift_features(a, out); }, [&] { cuda::drift_features(a, out); });
  if (out.bad_ref >= 0) throw_nan("reference", out.bad_ref, d);
  if (out.bad_cur >= 0) throw_nan("current", out.bad_cur, d);

  DriftReport r;
  r.features = d;
  r.reference_rows = n1;
  r.current_rows = uint64_t(n2);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  r.statistic.assign(std::size_t(d), nan);
  r.p_value.assign(std::size_t(d), nan);
  r.psi.assign(std::size_t(d), nan);
  r.sign.assign(std::size_t(d), 0);
  r.method.assign(std::size_t(d), uint8_t(KsMethod::Auto));
  if (o.ks) {
    // p-values on the host, in parallel over features (the exact ones cost up to n1 * n2).
    cpu::parallel_for(d, [&](int64_t f, int) {
      const int64_t num = std::max(d_plus[f], d_minus[f]);
      const KsPValue p = pvalue_numerator(uint64_t(num), uint64_t(n1), uint64_t(n2), o.method);
      r.statistic[f] = p.statistic;
      r.p_value[f] = p.p_value;
      r.method[f] = uint8_t(p.method);
      r.sign[f] = d_minus[f] > d_plus[f] ? -1 : 1;
    });
  }
  if (B > 0) {
    r.psi_bins = B;
    r.psi_edges.resize(std::size_t(d * E));
    r.psi_reference_counts.resize(std::size_t(d * B));
    r.psi_current_counts.resize(std::size_t(d * B));
    for (int64_t f = 0; f < d; ++f) {
      uint64_t* rc = r.psi_reference_counts.data() + f * B;
      uint64_t* cc = r.psi_current_counts.data() + f * B;
      int64_t prev_r = 0, prev_c = 0;
      for (int64_t b = 0; b < B; ++b) {
        const int64_t lr = b < E ? ref_le[f * E + b] : n1;
        const int64_t lc = b < E ? cur_le[f * E + b] : n2;
        rc[b] = uint64_t(lr - prev_r);
        cc[b] = uint64_t(lc - prev_c);
        prev_r = lr;
        prev_c = lc;
      }
      for (int64_t e = 0; e < E; ++e) r.psi_edges[f * E + e] = value_of(edge_key[f * E + e]);
      r.psi[f] = psi_of(rc, cc, B, uint64_t(n1), uint64_t(n2), o.psi_epsilon);
    }
  }
  finish(r, o, o.ks);
  return r;
}

// ---- streaming monitor --------------------------------------------------------------------------

std::vector<uint64_t> drift_monitor_new(Device dev, const FeatureMatrix& ref, int bins, int refinement) {
  check_matrix(ref, "reference", false);
  check_monitor_shape(ref.cols, bins, refinement);
  const Layout l = layout_of(ref.cols, bins, refinement);
  const int64_t d = l.d, n1 = ref.rows, E = l.E;
  FeatureArgs a;
  a.ref = ref.data;
  a.ref_rows = n1;
  a.features = d;
  a.ks = false;
  a.edges = E;
  std::vector<int64_t> edge_index(static_cast<std::size_t>(E));
  for (int64_t k = 1; k <= E; ++k) edge_index[k - 1] = cut_index(k, n1, l.F);
  a.edge_index = edge_index.data();
  std::vector<int64_t> ref_le(std::size_t(d * E));
  std::vector<uint32_t> edge_key(std::size_t(d * E));
  FeatureOut out;
  out.edge_key = edge_key.data();
  out.ref_le = ref_le.data();
  dispatch(dev, [&] { cpu::drift_features(a, out); }, [&] { cuda::drift_features(a, out); });
  if (out.bad_ref >= 0) throw_nan("reference", out.bad_ref, d);

  std::vector<uint64_t> w(l.total, 0);
  w[kWMagic] = kMagic;
  w[kWFeatures] = uint64_t(d);
  w[kWBins] = uint64_t(bins);
  w[kWRefinement] = uint64_t(refinement);
  w[kWRefRows] = uint64_t(n1);
  for (int64_t f = 0; f < d; ++f) {
    int64_t prev = 0;
    for (int64_t b = 0; b < l.F; ++b) {
      const int64_t le = b < E ? ref_le[f * E + b] : n1;
      w[l.ref + std::size_t(f * l.F + b)] = uint64_t(le - prev);
      prev = le;
    }
    for (int64_t e = 0; e < E; ++e) w[l.edges + std::size_t(f * E + e)] = edge_key[f * E + e];
  }
  return w;
}

DriftMonitorConfig drift_monitor_config(const uint64_t* w, std::size_t n, const char* name) {
  const std::string nm(name);
  if (w == nullptr || n < std::size_t(kHeaderWords) || w[kWMagic] != kMagic) throw_range(nm + ": not a calmoe drift monitor state (bad header)");
  if (w[kWFeatures] < 1 || w[kWFeatures] > uint64_t(kMaxStateWords) || w[kWBins] < 1 || w[kWBins] > uint64_t(kMaxDriftBins) ||
      w[kWRefinement] < 1 || w[kWRefinement] > uint64_t(kMaxDriftBins) || w[kWBins] * w[kWRefinement] > uint64_t(kMaxDriftBins) ||
      w[kWRefRows] < 1 || w[kWRefRows] > uint64_t(kMaxSampleRows))
    throw_range(nm + ": corrupt drift monitor state (header out of range)");
  DriftMonitorConfig c;
  c.features = int64_t(w[kWFeatures]);
  c.bins = int(w[kWBins]);
  c.refinement = int(w[kWRefinement]);
  c.reference_rows = w[kWRefRows];
  c.current_rows = w[kWCurRows];
  c.chunks = w[kWChunks];
  if (c.current_rows > kMaxWindowRows) throw_range(nm + ": corrupt drift monitor state (more than 2^53 current rows)");
  if (c.chunks > c.current_rows) throw_range(nm + ": corrupt drift monitor state (more chunks than current rows)");
  if (c.features * 3 * int64_t(c.bins) * c.refinement > kMaxStateWords) throw_range(nm + ": corrupt drift monitor state (too large)");
  const Layout l = layout_of(c.features, c.bins, c.refinement);
  if (n != l.total)
    throw_range(nm + ": corrupt drift monitor state (length " + std::to_string(n) + " does not match " + std::to_string(c.features) + " features x " +
                std::to_string(l.F) + " bins)");
  for (int64_t f = 0; f < c.features; ++f) {
    // Each count at most its rows (<= 2^53) and at most 2^16 bins: the sums cannot wrap, so a
    // state whose counts add up only modulo 2^64 is caught.
    uint64_t sr = 0, sc = 0;
    bool over = false;
    for (int64_t b = 0; b < l.F; ++b) {
      const uint64_t r = w[l.ref + std::size_t(f * l.F + b)], k = w[l.cur + std::size_t(f * l.F + b)];
      over |= r > c.reference_rows || k > c.current_rows;
      sr += r;
      sc += k;
    }
    if (over || sr != c.reference_rows || sc != c.current_rows)
      throw_range(nm + ": corrupt drift monitor state (the counts of feature " + std::to_string(f) + " do not add up to the row counts)");
    for (int64_t e = 0; e < l.E; ++e) {
      const uint64_t k = w[l.edges + std::size_t(f * l.E + e)];
      if (k > 0xffffffffull || (e > 0 && k < w[l.edges + std::size_t(f * l.E + e - 1)]) || is_nan_f32(value_of(uint32_t(k))))
        throw_range(nm + ": corrupt drift monitor state (cut points of feature " + std::to_string(f) + ")");
    }
  }
  return c;
}

std::vector<uint64_t> drift_monitor_empty_like(const uint64_t* w, std::size_t n) {
  drift_monitor_config(w, n);
  std::vector<uint64_t> out(w, w + n);
  drift_monitor_reset(out.data(), out.size());
  return out;
}

void drift_monitor_reset(uint64_t* w, std::size_t n) {
  const DriftMonitorConfig c = drift_monitor_config(w, n);
  const Layout l = layout_of(c.features, c.bins, c.refinement);
  std::fill(w + l.cur, w + l.total, 0);
  w[kWCurRows] = 0;
  w[kWChunks] = 0;
}

void drift_monitor_update(Device dev, const FeatureMatrix& cur, uint64_t* w, std::size_t n) {
  const DriftMonitorConfig c = drift_monitor_config(w, n);
  check_matrix(cur, "current", true);
  if (cur.cols != c.features)
    throw_range("current: has " + std::to_string(cur.cols) + " columns (features) but the monitor's reference has " + std::to_string(c.features));
  if (cur.rows == 0) return;
  if (c.current_rows + uint64_t(cur.rows) > kMaxWindowRows) throw_range("current: the window would count more than 2^53 rows (reset it)");
  const Layout l = layout_of(c.features, c.bins, c.refinement);
  std::vector<uint32_t> keys(std::size_t(l.d * l.E));
  for (std::size_t k = 0; k < keys.size(); ++k) keys[k] = uint32_t(w[l.edges + k]);
  BinArgs a;
  a.x = cur.data;
  a.rows = cur.rows;
  a.features = l.d;
  a.edge_key = keys.data();
  a.edges = l.E;
  std::vector<uint64_t> counts(std::size_t(l.d * l.F), 0);
  const int64_t bad = dispatch(dev, [&] { return cpu::drift_bin_counts(a, counts.data()); },
                               [&] { return cuda::drift_bin_counts(a, counts.data()); });
  if (bad >= 0) throw_nan("current", bad, l.d);
  for (std::size_t k = 0; k < counts.size(); ++k) w[l.cur + k] += counts[k];
  w[kWCurRows] += uint64_t(cur.rows);
  w[kWChunks] += 1;
}

void drift_monitor_merge(uint64_t* into, std::size_t n_into, const uint64_t* from, std::size_t n_from) {
  const DriftMonitorConfig a = drift_monitor_config(into, n_into, "into");
  const DriftMonitorConfig b = drift_monitor_config(from, n_from, "from");
  if (a.features != b.features || a.bins != b.bins || a.refinement != b.refinement || a.reference_rows != b.reference_rows)
    throw_range("merge: monitors differ (" + std::to_string(a.features) + " features, " + std::to_string(a.bins) + " x " + std::to_string(a.refinement) +
                " bins, " + std::to_string(a.reference_rows) + " reference rows vs " + std::to_string(b.features) + ", " + std::to_string(b.bins) + " x " +
                std::to_string(b.refinement) + ", " + std::to_string(b.reference_rows) + ")");
  const Layout l = layout_of(a.features, a.bins, a.refinement);
  for (std::size_t k = l.edges; k < l.cur; ++k)
    if (into[k] != from[k])
      throw_range("merge: the monitors were built from different references (cut points or reference counts of feature " +
                  std::to_string(k < l.ref ? int64_t(k - l.edges) / l.E : int64_t(k - l.ref) / l.F) + " differ)");
  if (a.current_rows + b.current_rows > kMaxWindowRows) throw_range("merge: together the windows count more than 2^53 rows");
  for (std::size_t k = l.cur; k < l.total; ++k) into[k] += from[k];
  into[kWCurRows] += from[kWCurRows];
  into[kWChunks] += from[kWChunks];
}

DriftReport drift_monitor_report(const uint64_t* w, std::size_t n, const DriftOptions& o) {
  const DriftMonitorConfig c = drift_monitor_config(w, n);
  check_options(o, false);
  if (c.current_rows == 0) throw_range("state: the window is empty (no current rows have been added)");
  const Layout l = layout_of(c.features, c.bins, c.refinement);
  const int64_t d = l.d, F = l.F, E = l.E, B = c.bins, R = c.refinement;
  const uint64_t n1 = c.reference_rows, n2 = c.current_rows;
  DriftReport r;
  r.features = d;
  r.reference_rows = int64_t(n1);
  r.current_rows = n2;
  r.histogram = true;
  r.statistic.resize(std::size_t(d));
  r.p_value.resize(std::size_t(d));
  r.psi.resize(std::size_t(d));
  r.sign.resize(std::size_t(d));
  r.method.resize(std::size_t(d));
  r.psi_bins = int(B);
  r.psi_edges.resize(std::size_t(d * (B - 1)));
  r.psi_reference_counts.assign(std::size_t(d * B), 0);
  r.psi_current_counts.assign(std::size_t(d * B), 0);
  cpu::parallel_for(d, [&](int64_t f, int) {
    const uint64_t* rc = w + l.ref + std::size_t(f * F);
    const uint64_t* cc = w + l.cur + std::size_t(f * F);
    // KS at the fine cut points: max |le_ref n2 - le_cur n1|, exactly in 64 bits while the window
    // has fewer than 2^32 rows (le_ref <= n1 < 2^31); beyond that (only the asymptotic method can
    // apply) the gaps le_ref / n1 - le_cur / n2 are formed in double.
    uint64_t plus = 0, minus = 0;
    double dplus = 0, dminus = 0;
    uint64_t lr = 0, lc = 0;
    const bool exact_int = n2 < (uint64_t(1) << 32);
    for (int64_t e = 0; e < E; ++e) {
      lr += rc[e];
      lc += cc[e];
      if (exact_int) {
        const uint64_t x = lr * n2, y = lc * n1;
        if (x > y) plus = std::max(plus, x - y);
        else minus = std::max(minus, y - x);
      } else {
        const double gap = double(lr) / double(n1) - double(lc) / double(n2);
        dplus = std::max(dplus, gap);
        dminus = std::max(dminus, -gap);
      }
    }
    KsPValue p;
    if (exact_int) {
      p = pvalue_numerator(std::max(plus, minus), n1, n2, o.method);
    } else {
      p = pvalue_lattice(std::max(dplus, dminus), 0, n1, n2, KsMethod::Asymp);
      plus = dplus >= dminus ? 1 : 0;
      minus = dminus > dplus ? 1 : 0;
    }
    r.statistic[f] = p.statistic;
    r.p_value[f] = p.p_value;
    r.method[f] = uint8_t(p.method);
    r.sign[f] = minus > plus ? -1 : 1;
    uint64_t* prc = r.psi_reference_counts.data() + f * B;
    uint64_t* pcc = r.psi_current_counts.data() + f * B;
    for (int64_t b = 0; b < F; ++b) {
      prc[b / R] += rc[b];
      pcc[b / R] += cc[b];
    }
    for (int64_t k = 1; k < B; ++k) r.psi_edges[f * (B - 1) + k - 1] = value_of(uint32_t(w[l.edges + std::size_t(f * E + k * R - 1)]));
    r.psi[f] = psi_of(prc, pcc, int(B), n1, n2, o.psi_epsilon);
  });
  finish(r, o, true);
  return r;
}

}  // namespace calmoe
