// Input-feature drift: two-sample Kolmogorov-Smirnov tests per feature (statistic and p-value as
// scipy.stats.ks_2samp), multiple-testing corrections, the population stability index, a summary
// ranked by severity, and a mergeable streaming monitor.
//
// Definitions (every backend computes the same integers; the p-values are host math):
// - Values are float32; -0 and +0 are the same value; +-Inf are ordinary (extreme) values; NaN is
//   rejected with a RangeError naming the matrix, row and column.
// - KS statistic D = max_x |F_ref(x) - F_cur(x)| over the pooled sample, computed exactly as the
//   integer max |i*n2 - j*n1| over the merge points (i, j: counts <= x) divided by n1*n2. `sign` is
//   +1 when the largest gap has F_ref above F_cur (SciPy's statistic_sign), -1 otherwise.
// - p-value: two-sided, method 'auto' as SciPy (exact when max(n1, n2) <= 10000, else asymptotic:
//   kstwo.sf(D, round(n1 n2 / (n1 + n2)))); see core/ks_distribution.h. Ties are allowed: the
//   statistic is exact for tied data, the p-value is the continuous-data null distribution (as
//   SciPy).
// - PSI with B bins: cut points c_k (k = 1..B-1) are the reference's inverted-CDF quantiles, the
//   order statistic of rank ceil(k n1 / B); bin b holds (c_b, c_{b+1}] (first bin from -Inf, last
//   to +Inf). PSI = sum_b (q_b - p_b) ln(q_b / p_b), p_b / q_b the reference / current shares,
//   with a share of 0 replaced by epsilon (default 1e-4; bins empty in both samples add 0).
//   Tied reference values give repeated cut points and empty bins.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "calmoe/device.h"
#include "calmoe/limits.h"

namespace calmoe {

enum class KsMethod : uint8_t { Auto = 0, Exact = 1, Asymp = 2 };
// BH / BY: step-up adjusted p-values as scipy.stats.false_discovery_control and statsmodels
// fdr_bh / fdr_by; Bonferroni: min(1, m p).
enum class PCorrection : uint8_t { None = 0, BH = 1, BY = 2, Bonferroni = 3 };

// A row-major float32 matrix: rows x cols (features).
struct FeatureMatrix {
  const float* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
};

struct KsPValue {
  double p_value = 1.0;
  double statistic = 0.0;           // as used (the exact method rounds it onto the lattice h / lcm)
  KsMethod method = KsMethod::Exact;  // the method used: Exact or Asymp
};

// The two-sided p-value of a two-sample statistic, as scipy.stats.ks_2samp(method=...). 'exact'
// falls back to 'asymp' where SciPy does (lcm(n1, n2) beyond int32, and an equal-size closed form
// that rounds above 1, see core/ks_distribution.h) and where the lattice would have more than 4e9
// cells (about 10 s); the method used is reported. One deviation: 'asymp' with n1 = n2 = 1 uses
// n = 1 where SciPy's round(1/2) = 0 gives NaN.
KsPValue ks_2samp_pvalue(double statistic, int64_t n1, int64_t n2, KsMethod method);

// Adjusted p-values (each p must be in [0, 1]; RangeError naming the index otherwise).
std::vector<double> adjust_pvalues(const double* p, int64_t n, PCorrection method);

struct DriftOptions {
  bool ks = true;                 // compute the KS statistic and p-values
  KsMethod method = KsMethod::Auto;
  int psi_bins = 10;              // 0: no PSI
  double psi_epsilon = 1e-4;      // replaces a zero share; in (0, 1]
  PCorrection correction = PCorrection::BH;
  double alpha = 0.05;            // drifted = adjusted p-value <= alpha
};

struct DriftReport {
  int64_t features = 0;
  int64_t reference_rows = 0;
  uint64_t current_rows = 0;
  bool histogram = false;  // statistic from a monitor's histograms (a lower bound on D)
  // Per feature, indexed by feature (NaN where not computed).
  std::vector<double> statistic, p_value, adjusted_p_value, psi;
  std::vector<int8_t> sign;
  std::vector<uint8_t> method;   // KsMethod used: Exact or Asymp
  std::vector<uint8_t> drifted;  // adjusted p-value <= alpha
  // Features by severity: adjusted p-value ascending, then statistic descending, then PSI
  // descending, then feature index.
  std::vector<int64_t> order;
  int psi_bins = 0;
  std::vector<float> psi_edges;                 // features x (psi_bins - 1) cut points
  std::vector<uint64_t> psi_reference_counts;   // features x psi_bins
  std::vector<uint64_t> psi_current_counts;     // features x psi_bins
};

// Reference (n1 x d) against current (n2 x d): 1 <= n1, n2 < 2^31, same d >= 1.
DriftReport drift_compare(Device dev, const FeatureMatrix& reference, const FeatureMatrix& current, const DriftOptions& o);

// ---- streaming monitor ----------------------------------------------------------------------
// Fixed per-feature histograms on the reference's quantile cut points: F = bins * refinement fine
// bins (cut points of rank ceil(k n1 / F)); every refinement-th fine cut point is a PSI cut point
// (the same ones drift_compare uses with psi_bins = bins). Windows add integer counts, so merging
// windows is exact and order-independent, and the PSI of merged windows equals drift_compare's PSI
// on the concatenated rows exactly. The KS statistic is evaluated at the F - 1 fine cut points
// only: it is a lower bound on the exact D (equal when the gap peaks at a cut point), and its
// p-value an upper bound in turn (conservative).
//
// State: uint64 words [header | cut-point keys (d x (F-1)) | reference counts (d x F) | current
// counts (d x F)], so JS can hold, serialise and merge it.
namespace driftmon {
constexpr uint64_t kMagic = 0x43414C4D44000001ull;  // "CALMD" + layout version 1
constexpr int kHeaderWords = 8;
enum : int { kWMagic = 0, kWFeatures, kWBins, kWRefinement, kWRefRows, kWCurRows, kWChunks, kWReserved };
}  // namespace driftmon

struct DriftMonitorConfig {
  int64_t features = 0;
  int bins = 10;
  int refinement = 10;
  uint64_t reference_rows = 0;
  uint64_t current_rows = 0;
  uint64_t chunks = 0;  // non-empty chunks added (merges add theirs)
};

std::vector<uint64_t> drift_monitor_new(Device dev, const FeatureMatrix& reference, int bins, int refinement);
// Throws RangeError (naming `name`) if `words` is not a well-formed monitor state.
DriftMonitorConfig drift_monitor_config(const uint64_t* words, std::size_t n_words, const char* name = "state");
// The same reference and cut points with an empty window.
std::vector<uint64_t> drift_monitor_empty_like(const uint64_t* words, std::size_t n_words);
// Adds a chunk of current rows (0 rows is a no-op). All-or-nothing: a NaN leaves the state as it
// was and throws a RangeError naming the row and column.
void drift_monitor_update(Device dev, const FeatureMatrix& current, uint64_t* words, std::size_t n_words);
void drift_monitor_merge(uint64_t* into, std::size_t n_into, const uint64_t* from, std::size_t n_from);
void drift_monitor_reset(uint64_t* words, std::size_t n_words);
// RangeError when the window is empty. Uses method, psi_epsilon, correction and alpha.
DriftReport drift_monitor_report(const uint64_t* words, std::size_t n_words, const DriftOptions& o);

}  // namespace calmoe
