// Calibration histogram: argument and state checks, backend dispatch, merge, finalize, and
// equal-mass binning. Per-row math: core/calibration.h.
#include "core/calibration.h"

#include <cmath>
#include <cstdlib>
#include <limits>
#include <sstream>
#include <string>

#include "calmoe/error.h"
#include "core/dispatch.h"
#include "core/format.h"
#include "host/radix_sort.h"

namespace calmoe {
namespace {

using namespace calib;

using limits::kMaxCalibrationBins;
using limits::kMaxCalibrationCells;
using limits::kMaxElements;



const char* kind_name(CalibKind k) {
  switch (k) {
    case CalibKind::TopLabel: return "top-label";
    case CalibKind::Classwise: return "classwise";
    case CalibKind::Binary: return "binary";
    case CalibKind::Confidence: return "confidence";
  }
  return "?";
}

void check_config(const CalibConfig& c) {
  if (c.bins < 1 || c.bins > kMaxCalibrationBins) throw_range("bins: expected an integer in [1, " + std::to_string(kMaxCalibrationBins) + "], got " + std::to_string(c.bins));
  if (c.groups < 1) throw_range("classes: expected at least 1, got " + std::to_string(c.groups));
  if (c.grouped && c.kind == CalibKind::Classwise) throw_range("groups: classwise calibration cannot also be grouped by rows");
  if (c.kind != CalibKind::Classwise && !c.grouped && c.groups != 1) throw_range("groups: only classwise or grouped calibration has more than one histogram");
  if (int64_t(c.groups) * c.bins > kMaxCalibrationCells) throw_range("bins x classes: " + std::to_string(int64_t(c.groups) * c.bins) + " histogram cells is more than the supported " + std::to_string(kMaxCalibrationCells));
  if (c.kind == CalibKind::Confidence && c.extras) throw_range("extras: NLL and Brier need class probabilities; not available from (confidence, correct) input");
}

void describe_issue(const KernelArgs& a, int64_t row) {
  if (a.weighted && a.weights && !weight_ok(a.weights[row]))
    throw_range("weights[" + std::to_string(row) + "] = " + fmt_f32(a.weights[row]) + ": expected a finite number in [0, " + fmt(limits::kMaxWeight) + "]");
  const RowOut r = eval_row(a, row);
  const std::string at = std::to_string(row);
  const char* scores = a.kind == CalibKind::Confidence ? "confidence" : "scores";
  switch (r.issue) {
    case kLabelRange:
      if (a.kind == CalibKind::Binary) throw_range("labels[" + at + "] = " + std::to_string(a.labels[row]) + ": binary labels must be 0 or 1");
      throw_range("labels[" + at + "] = " + std::to_string(a.labels[row]) + " is outside [0, " + std::to_string(a.cols) + ")");
    case kNonFinite:
      throw_range(std::string(scores) + ": row " + at + (a.cols > 1 ? ", column " + std::to_string(r.col) : "") + " is not finite (" + fmt_f32(a.scores[row * a.cols + (r.col < 0 ? 0 : r.col)]) + ")");
    case kProbRange:
      throw_range(std::string(scores) + ": row " + at + (a.cols > 1 ? ", column " + std::to_string(r.col) : "") + " = " + fmt_f32(a.scores[row * a.cols + r.col]) + " is not a probability in [0, 1]" + (a.kind == CalibKind::Confidence ? "" : " (pass input: 'logits' for unnormalised scores)"));
    case kRowSum:
      throw_range(std::string(scores) + ": row " + at + " sums to " + fmt_f32(r.sum) + "; probabilities must sum to 1 within sumTolerance = " + fmt_f32(a.sum_tol) + " (pass input: 'logits' for unnormalised scores)");
    case kCorrectValue:
      throw_range("correct[" + at + "] = " + std::to_string(int(a.correct[row])) + ": expected 0 or 1");
    case kGroupRange:
      throw_range("groups[" + at + "] = " + std::to_string(a.group_ids[row]) + " is outside [0, " + std::to_string(a.groups) + ")");
    default:
      throw_runtime("calibration: the backend reported row " + at + " as invalid but it checks out on the host (backend disagreement; please report)");
  }
}

// Runs the kernel into fresh words and merges them into `state` only when every row was valid.
void run_update(Device dev, const KernelArgs& a, uint64_t* state, std::size_t n_words) {
  if (a.weighted && dev != Device::Cpu) throw_range("weights: weighted calibration runs on the CPU only for now; use device 'cpu' (or 'auto')");
  std::vector<uint64_t> acc(n_words, 0);
  const int64_t bad = dispatch(dev, [&] { return cpu::calib_accumulate(a, acc.data()); },
                               [&] { return cuda::calib_accumulate(a, acc.data()); });
  if (bad >= 0) describe_issue(a, bad);
  acc[kWMagic] = state[kWMagic];
  acc[kWBins] = state[kWBins];
  acc[kWGroups] = state[kWGroups];
  acc[kWFlags] = state[kWFlags];
  calib_merge(state, n_words, acc.data(), n_words);
}

void check_weights(const CalibConfig& cfg, const float* weights) {
  if (weights && !cfg.weighted) throw_type("weights: this accumulator is not weighted; create it with weighted: true to pass row weights");
}

void check_group_ids(const CalibConfig& cfg, const int32_t* group_ids) {
  if (cfg.grouped && group_ids == nullptr) throw_type("groups: this accumulator is grouped; every update needs one group id per row");
  if (!cfg.grouped && group_ids != nullptr) throw_type("groups: this accumulator is not grouped; create it with a group count to pass group ids");
}

KernelArgs args_for(const CalibConfig& cfg) {
  KernelArgs a;
  a.kind = cfg.kind;
  a.bins = cfg.bins;
  a.groups = cfg.groups;
  a.left_closed = cfg.edges == BinEdges::LeftClosed;
  a.extras = cfg.extras;
  a.weighted = cfg.weighted;
  return a;
}

void check_rows(int64_t rows, const char* name) {
  if (rows < 1) throw_range(std::string(name) + ": expected at least one row, got " + std::to_string(rows));
}

double fixed_to_double(uint64_t lo, uint64_t hi, int frac) { return u128_to_double(lo, hi, frac); }

// Metrics of one histogram (M bins of kBinWords words), normalised by its own row count.
CalibGroupSummary summarize_group(const uint64_t* bins, int M) {
  CalibGroupSummary g;
  g.bins.resize(M);
  uint64_t rows = 0, positives = 0;
  for (int b = 0; b < M; ++b) {
    rows += bins[int64_t(b) * kBinWords];
    positives += bins[int64_t(b) * kBinWords + 1];
  }
  g.rows = rows;
  g.weight = double(rows);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  g.accuracy = rows ? double(positives) / double(rows) : nan;
  double ece = 0, mce = 0, sq = 0;
  const double n = double(rows);
  for (int b = 0; b < M; ++b) {
    const uint64_t* w = bins + int64_t(b) * kBinWords;
    CalibBin& out = g.bins[b];
    out.lower = double(b) / M;
    out.upper = double(b + 1) / M;
    out.count = w[0];
    out.weight = double(w[0]);
    if (w[0] == 0) {
      out.mean_confidence = out.accuracy = std::numeric_limits<double>::quiet_NaN();
      continue;
    }
    const double conf_sum = fixed_to_double(w[2], w[3], kConfFracBits);
    const double cnt = double(w[0]);
    out.mean_confidence = conf_sum / cnt;
    out.accuracy = double(w[1]) / cnt;
    const double gap = std::fabs(double(w[1]) - conf_sum);  // n_b * |acc_b - conf_b|
    ece += gap / n;
    const double g1 = gap / cnt;
    if (g1 > mce) mce = g1;
    sq += g1 * g1 * (cnt / n);
  }
  g.ece = rows ? ece : nan;
  g.mce = rows ? mce : nan;
  g.rmsce = rows ? std::sqrt(sq) : nan;
  return g;
}

// Weighted metrics of one histogram: its M weighted cells (kWeightedCellWords each) give each bin's
// weight, positive weight and confidence sum; `bins` (unweighted words) give the row counts.
CalibGroupSummary summarize_weighted(const uint64_t* bins, const uint64_t* cells, int M) {
  CalibGroupSummary g;
  g.bins.resize(M);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  double W = 0, P = 0;
  for (int b = 0; b < M; ++b) {
    const uint64_t* c = cells + int64_t(b) * kWeightedCellWords;
    W += fixed_to_double(c[0], c[1], kWeightFracBits);
    P += fixed_to_double(c[2], c[3], kWeightFracBits);
    g.rows += bins[int64_t(b) * kBinWords];
  }
  g.weight = W;
  g.accuracy = W > 0 ? P / W : nan;
  double ece = 0, mce = 0, sq = 0;
  for (int b = 0; b < M; ++b) {
    const uint64_t* c = cells + int64_t(b) * kWeightedCellWords;
    CalibBin& out = g.bins[b];
    out.lower = double(b) / M;
    out.upper = double(b + 1) / M;
    out.count = bins[int64_t(b) * kBinWords];
    const double wb = fixed_to_double(c[0], c[1], kWeightFracBits);
    out.weight = wb;
    if (!(wb > 0)) {
      out.mean_confidence = out.accuracy = nan;
      continue;
    }
    const double pos = fixed_to_double(c[2], c[3], kWeightFracBits);
    const double conf = fixed_to_double(c[4], c[5], kWeightFracBits + kWConfFracBits);
    out.mean_confidence = conf / wb;
    out.accuracy = pos / wb;
    const double g1 = std::fabs(pos - conf) / wb;  // |acc_b - conf_b|
    ece += (wb / W) * g1;
    if (g1 > mce) mce = g1;
    sq += g1 * g1 * (wb / W);
  }
  g.ece = W > 0 ? ece : nan;
  g.mce = W > 0 ? mce : nan;
  g.rmsce = W > 0 ? std::sqrt(sq) : nan;
  return g;
}

}  // namespace

std::vector<uint64_t> calib_state_new(const CalibConfig& cfg) {
  check_config(cfg);
  std::vector<uint64_t> w(state_words(cfg.bins, cfg.groups, cfg.weighted), 0);
  w[kWMagic] = kMagic;
  w[kWBins] = uint64_t(cfg.bins);
  w[kWGroups] = uint64_t(cfg.groups);
  w[kWFlags] = (cfg.edges == BinEdges::LeftClosed ? kFlagLeftClosed : 0) | (cfg.extras ? kFlagNll | kFlagBrier : 0) |
               (cfg.grouped ? kFlagGrouped : 0) | (cfg.weighted ? kFlagWeighted : 0) | (uint64_t(cfg.kind) << 8);
  return w;
}

namespace {

using u128 = unsigned __int128;
u128 word128(uint64_t lo, uint64_t hi) { return (u128(hi) << 64) | lo; }

// The counts' invariants of a state whose header and length are valid. Bounds on the fixed-point
// sums: confidence <= 1 per row, NLL <= kMaxNll < 28 per row, Brier <= 2 + tolerance < 8 per row.
uint64_t max_rows(const CalibConfig& c) { return c.weighted ? limits::kMaxWeightedStateRows : limits::kMaxStateRows; }

// a <= b * 2^s, without forming b * 2^s (which may not fit 128 bits).
bool le_shifted(u128 a, u128 b, int s) {
  const u128 q = a >> s;
  return q < b || (q == b && (a & ((u128(1) << s) - 1)) == 0);
}

// The weighted section's invariants, against the (already checked) unweighted counts. A row adds
// q = floor(w * 2^32) <= qmax to the total weight, q to the correct weight if it is correct, and
// q to its bin's weight (in every class's histogram, classwise), q to the bin's positive weight
// if positive, q * conf (conf <= 1 at 2^-32) to its confidence sum, q * NLL (< 28) and q * Brier
// (< 8) to the totals. So each weighted sum is bounded by its rows times qmax, the bin weights
// add up to the total weight exactly, and no sum is near 2^128.
template <class Corrupt>
void check_weighted(const uint64_t* w, const CalibConfig& c, const Corrupt& corrupt) {
  const u128 qmax = u128(uint64_t(limits::kMaxWeight)) << kWeightFracBits;
  const uint64_t* ws = w + weighted_offset(c.bins, c.groups);
  const uint64_t* cells = ws + kWeightedHeaderWords;
  const u128 W = word128(ws[0], ws[1]), correct = word128(ws[2], ws[3]);
  if (W > u128(w[kWRows]) * qmax) corrupt("total weight above the rows times the largest weight");
  if (correct > W) corrupt("more correct weight than weight");
  if (correct > u128(w[kWCorrect]) * qmax) corrupt("correct weight above the correct rows times the largest weight");
  if (!le_shifted(word128(ws[4], ws[5]), W * 28, kWNllFracBits)) corrupt("weighted NLL sum above its bound");
  if (!le_shifted(word128(ws[6], ws[7]), W * 8, kWBrierFracBits)) corrupt("weighted Brier sum above its bound");
  if (!c.extras && (ws[4] | ws[5] | ws[6] | ws[7]) != 0) corrupt("weighted NLL or Brier sums without extras");
  const bool per_group = c.kind == CalibKind::Classwise;
  u128 total = 0;
  for (int g = 0; g < c.groups; ++g) {
    u128 sum = 0;
    for (int b = 0; b < c.bins; ++b) {
      const int64_t cell = int64_t(g) * c.bins + b;
      const uint64_t* bin = w + kHeaderWords + cell * kBinWords;
      const uint64_t* cw = cells + cell * kWeightedCellWords;
      const u128 wb = word128(cw[0], cw[1]), pos = word128(cw[2], cw[3]);
      if (wb > u128(bin[0]) * qmax) corrupt("a bin's weight above its rows times the largest weight");
      if (pos > wb) corrupt("a bin with more positive weight than weight");
      if (pos > u128(bin[1]) * qmax) corrupt("a bin's positive weight above its positive rows times the largest weight");
      if (!le_shifted(word128(cw[4], cw[5]), wb, kWConfFracBits)) corrupt("a bin's weighted confidence sum above its weight");
      sum += wb;  // <= the histogram's rows (<= 2^40) times qmax (2^56): no overflow
    }
    if (per_group && sum != W) corrupt("the bin weights of class " + std::to_string(g) + " do not add up to the total weight");
    total += sum;
  }
  if (!per_group && total != W) corrupt("the bin weights do not add up to the total weight");
}

void check_counts(const uint64_t* w, const CalibConfig& c, const std::string& nm) {
  const uint64_t rows = w[kWRows];
  auto corrupt = [&](const std::string& what) { throw_range(nm + ": corrupt calibration state (" + what + ")"); };
  if (rows > max_rows(c)) corrupt("more rows than a state holds");
  if (w[kWCorrect] > rows) corrupt("more correct rows than rows");
  if (word128(w[kWNllLo], w[kWNllHi]) > (u128(rows) * 28) << kNllFracBits) corrupt("NLL sum above its bound");
  if (word128(w[kWBrierLo], w[kWBrierHi]) > (u128(rows) * 8) << kBrierFracBits) corrupt("Brier sum above its bound");
  if (!c.extras && (w[kWNllLo] | w[kWNllHi] | w[kWBrierLo] | w[kWBrierHi]) != 0) corrupt("NLL or Brier sums without extras");
  const bool per_group = c.kind == CalibKind::Classwise;  // every row is in every class's histogram
  uint64_t total = 0;
  for (int g = 0; g < c.groups; ++g) {
    uint64_t sum = 0;
    for (int b = 0; b < c.bins; ++b) {
      const uint64_t* bin = w + kHeaderWords + (int64_t(g) * c.bins + b) * kBinWords;
      if (bin[0] > rows) corrupt("a bin counts more rows than the state");
      if (bin[1] > bin[0]) corrupt("a bin with more positives than rows");
      if (word128(bin[2], bin[3]) > u128(bin[0]) << kConfFracBits) corrupt("a bin's confidence sum above its count");
      sum += bin[0];  // <= 2^53 each, at most 2^26 of them: no overflow
      if (sum > rows) corrupt("bin counts add up to more than the rows");
    }
    if (per_group && sum != rows) corrupt("the bins of class " + std::to_string(g) + " do not add up to the rows");
    total += sum;
    if (!per_group && total > rows) corrupt("bin counts add up to more than the rows");
  }
  if (!per_group && total != rows) corrupt("the bin counts do not add up to the rows");
  if (c.weighted) check_weighted(w, c, corrupt);
}

}  // namespace

CalibConfig calib_state_config(const uint64_t* w, std::size_t n, const char* name) {
  const std::string nm(name);
  if (w == nullptr || n < std::size_t(kHeaderWords) || w[kWMagic] != kMagic)
    throw_range(nm + ": not a calmoe calibration state (bad header)");
  CalibConfig c;
  if (w[kWBins] < 1 || w[kWBins] > uint64_t(kMaxCalibrationBins) || w[kWGroups] < 1 || w[kWGroups] > uint64_t(kMaxCalibrationCells))
    throw_range(nm + ": corrupt calibration state (bins/groups out of range)");
  c.bins = int(w[kWBins]);
  c.groups = int(w[kWGroups]);
  const uint64_t kind = (w[kWFlags] >> 8) & 0xff;
  if (kind > uint64_t(CalibKind::Confidence)) throw_range(nm + ": corrupt calibration state (kind)");
  c.kind = CalibKind(kind);
  c.edges = (w[kWFlags] & kFlagLeftClosed) ? BinEdges::LeftClosed : BinEdges::RightClosed;
  c.extras = (w[kWFlags] & kFlagNll) != 0;
  c.grouped = (w[kWFlags] & kFlagGrouped) != 0;
  c.weighted = (w[kWFlags] & kFlagWeighted) != 0;
  if ((c.grouped && c.kind == CalibKind::Classwise) || (!c.grouped && c.kind != CalibKind::Classwise && c.groups != 1))
    throw_range(nm + ": corrupt calibration state (groups)");
  if (n != state_words(c.bins, c.groups, c.weighted)) throw_range(nm + ": corrupt calibration state (length " + std::to_string(n) + " does not match " + std::to_string(c.bins) + " bins x " + std::to_string(c.groups) + " groups)");
  check_counts(w, c, nm);
  return c;
}

void calib_update_rows(Device dev, const ScoresArg& s, const int32_t* labels, uint64_t* state, std::size_t n_words,
                       const int32_t* group_ids, const float* weights) {
  const CalibConfig cfg = calib_state_config(state, n_words);
  check_group_ids(cfg, group_ids);
  check_weights(cfg, weights);
  if (cfg.kind != CalibKind::TopLabel && cfg.kind != CalibKind::Classwise)
    throw_range(std::string("state: a ") + kind_name(cfg.kind) + " accumulator takes no score matrix");
  check_rows(s.rows, "scores");
  if (s.cols < 1) throw_range("scores: expected at least one column, got " + std::to_string(s.cols));
  if (s.cols > limits::kMaxIds || s.rows > kMaxElements / s.cols) throw_range("scores: " + std::to_string(s.rows) + " x " + std::to_string(s.cols) + " is larger than supported");
  if (cfg.kind == CalibKind::Classwise && s.cols != cfg.groups)
    throw_range("scores: has " + std::to_string(s.cols) + " columns but the classwise accumulator has " + std::to_string(cfg.groups) + " classes");
  if (!(s.sum_tolerance >= 0 && s.sum_tolerance <= 1)) throw_range("sumTolerance: expected a number in [0, 1], got " + fmt(s.sum_tolerance));
  if (s.data == nullptr || labels == nullptr) throw_type("scores/labels: missing data");
  KernelArgs a = args_for(cfg);
  a.scores = s.data;
  a.rows = s.rows;
  a.cols = s.cols;
  a.score_kind = s.kind;
  a.sum_tol = float(s.sum_tolerance);
  a.labels = labels;
  a.group_ids = group_ids;
  a.weights = weights;
  run_update(dev, a, state, n_words);
}

void calib_update_binary(Device dev, const float* p, const int32_t* labels, int64_t n, uint64_t* state, std::size_t n_words,
                         const int32_t* group_ids, const float* weights) {
  const CalibConfig cfg = calib_state_config(state, n_words);
  check_group_ids(cfg, group_ids);
  check_weights(cfg, weights);
  if (cfg.kind != CalibKind::Binary) throw_range(std::string("state: a ") + kind_name(cfg.kind) + " accumulator takes no binary scores");
  check_rows(n, "scores");
  if (n > kMaxElements) throw_range("scores: too many rows");
  KernelArgs a = args_for(cfg);
  a.scores = p;
  a.rows = n;
  a.labels = labels;
  a.group_ids = group_ids;
  a.weights = weights;
  run_update(dev, a, state, n_words);
}

void calib_update_confidence(Device dev, const float* conf, const uint8_t* correct, int64_t n, uint64_t* state, std::size_t n_words,
                             const int32_t* group_ids, const float* weights) {
  const CalibConfig cfg = calib_state_config(state, n_words);
  check_group_ids(cfg, group_ids);
  check_weights(cfg, weights);
  if (cfg.kind != CalibKind::Confidence) throw_range(std::string("state: a ") + kind_name(cfg.kind) + " accumulator takes no (confidence, correct) pairs");
  check_rows(n, "confidence");
  if (n > kMaxElements) throw_range("confidence: too many rows");
  KernelArgs a = args_for(cfg);
  a.scores = conf;
  a.rows = n;
  a.correct = correct;
  a.group_ids = group_ids;
  a.weights = weights;
  run_update(dev, a, state, n_words);
}

Device calib_resolve_device(DeviceRequest request) { return request == DeviceRequest::Auto ? Device::Cpu : resolve_device(request); }

void calib_merge(uint64_t* into, std::size_t n_into, const uint64_t* from, std::size_t n_from) {
  const CalibConfig a = calib_state_config(into, n_into, "into");
  const CalibConfig b = calib_state_config(from, n_from, "from");
  if (a.kind != b.kind || a.bins != b.bins || a.groups != b.groups || a.grouped != b.grouped || a.edges != b.edges || a.extras != b.extras ||
      a.weighted != b.weighted)
    throw_range(std::string("merge: accumulators differ (") + kind_name(a.kind) + ", " + std::to_string(a.bins) + " bins vs " +
                kind_name(b.kind) + ", " + std::to_string(b.bins) + " bins, or in classes, edges, extras or weighting)");
  // Both are valid, so their sum is valid (and no word overflows) when the rows stay in bounds.
  if (into[kWRows] + from[kWRows] > max_rows(a)) throw_range("merge: together the accumulators count more rows than a state holds (" + std::to_string(max_rows(a)) + ")");
  into[kWRows] += from[kWRows];
  into[kWCorrect] += from[kWCorrect];
  u128_add(into[kWNllLo], into[kWNllHi], from[kWNllLo], from[kWNllHi]);
  u128_add(into[kWBrierLo], into[kWBrierHi], from[kWBrierLo], from[kWBrierHi]);
  const std::size_t bins_end = state_words(a.bins, a.groups);
  for (std::size_t k = kHeaderWords; k < bins_end; k += kBinWords) {
    into[k] += from[k];
    into[k + 1] += from[k + 1];
    u128_add(into[k + 2], into[k + 3], from[k + 2], from[k + 3]);
  }
  for (std::size_t k = bins_end; k + 2 <= n_into; k += 2) u128_add(into[k], into[k + 1], from[k], from[k + 1]);  // weighted section
}

// The headline metrics once the histograms are in `s.groups`: classwise, the means over classes;
// grouped, `overall()` (every group's bins together); otherwise the one histogram.
template <class Overall>
CalibSummary finish_summary(CalibSummary& s, Overall overall) {
  const CalibConfig& c = s.config;
  if (c.kind == CalibKind::Classwise) {
    s.ece = s.mce = s.rmsce = 0;
    for (const auto& g : s.groups) {
      s.ece += g.ece / c.groups;
      s.rmsce += g.rmsce / c.groups;
      s.mce += g.mce / c.groups;
    }
    return s;
  }
  s.overall = c.grouped ? overall() : s.groups[0];
  s.ece = s.overall.ece;
  s.mce = s.overall.mce;
  s.rmsce = s.overall.rmsce;
  return s;
}

// The summary of a weighted state (its unweighted header already in `s`): weighted totals, and
// each histogram from its weighted cells.
static CalibSummary finalize_weighted(CalibSummary s, const uint64_t* w, std::size_t) {
  const CalibConfig& c = s.config;
  const int M = c.bins;
  const uint64_t* bins = w + kHeaderWords;
  const uint64_t* ws = w + weighted_offset(c.bins, c.groups);
  const uint64_t* cells = ws + kWeightedHeaderWords;
  const double W = fixed_to_double(ws[0], ws[1], kWeightFracBits);
  if (!(W > 0)) throw_range("weights: all zero (no row carries weight)");
  const double nan = std::numeric_limits<double>::quiet_NaN();
  s.weight = W;
  s.accuracy = fixed_to_double(ws[2], ws[3], kWeightFracBits) / W;
  s.nll = c.extras ? fixed_to_double(ws[4], ws[5], kWeightFracBits + kWNllFracBits) / W : nan;
  s.brier = c.extras ? fixed_to_double(ws[6], ws[7], kWeightFracBits + kWBrierFracBits) / W : nan;
  for (int g = 0; g < c.groups; ++g)
    s.groups.push_back(summarize_weighted(bins + int64_t(g) * M * kBinWords, cells + int64_t(g) * M * kWeightedCellWords, M));
  return finish_summary(s, [&] {
    std::vector<uint64_t> all(std::size_t(M) * kBinWords, 0), wall(std::size_t(M) * kWeightedCellWords, 0);
    for (int g = 0; g < c.groups; ++g) {
      for (int b = 0; b < M; ++b) {
        all[std::size_t(b) * kBinWords] += bins[(int64_t(g) * M + b) * kBinWords];
        const uint64_t* src = cells + (int64_t(g) * M + b) * kWeightedCellWords;
        uint64_t* dst = wall.data() + int64_t(b) * kWeightedCellWords;
        for (int k = 0; k < kWeightedCellWords; k += 2) u128_add(dst[k], dst[k + 1], src[k], src[k + 1]);
      }
    }
    return summarize_weighted(all.data(), wall.data(), M);
  });
}

CalibSummary calib_finalize(const uint64_t* w, std::size_t n_words) {
  CalibSummary s;
  s.config = calib_state_config(w, n_words);
  s.rows = w[kWRows];
  if (s.rows == 0) throw_range("state: no rows have been accumulated");
  const double n = double(s.rows);
  s.accuracy = double(w[kWCorrect]) / n;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  s.nll = s.config.extras ? fixed_to_double(w[kWNllLo], w[kWNllHi], kNllFracBits) / n : nan;
  s.brier = s.config.extras ? fixed_to_double(w[kWBrierLo], w[kWBrierHi], kBrierFracBits) / n : nan;
  s.weight = n;
  const int M = s.config.bins;
  const uint64_t* bins = w + kHeaderWords;
  if (s.config.weighted) return finalize_weighted(s, w, n_words);
  for (int g = 0; g < s.config.groups; ++g) s.groups.push_back(summarize_group(bins + int64_t(g) * M * kBinWords, M));
  return finish_summary(s, [&] {
    std::vector<uint64_t> all(std::size_t(M) * kBinWords, 0);
    for (int g = 0; g < s.config.groups; ++g) {
      for (int b = 0; b < M; ++b) {
        const uint64_t* src = bins + (int64_t(g) * M + b) * kBinWords;
        uint64_t* dst = all.data() + int64_t(b) * kBinWords;
        dst[0] += src[0];
        dst[1] += src[1];
        u128_add(dst[2], dst[3], src[2], src[3]);
      }
    }
    return summarize_group(all.data(), M);
  });
}

CalibSummary calib_equal_mass(Device dev, const EqualMassArg& m) {
  if (m.kind == CalibKind::Classwise) throw_range("binning: equal-mass bins are not available for classwise calibration");
  CalibConfig cfg;
  cfg.kind = m.kind;
  cfg.bins = m.bins;
  cfg.extras = m.kind == CalibKind::Confidence ? false : m.extras;
  check_config(cfg);
  KernelArgs a = args_for(cfg);
  if (m.kind == CalibKind::Confidence) {
    check_rows(m.n, "confidence");
    a.scores = m.confidence;
    a.rows = m.n;
    a.correct = m.correct;
  } else {
    check_rows(m.scores.rows, "scores");
    if (m.kind == CalibKind::TopLabel && (m.scores.cols < 1 || m.scores.cols > limits::kMaxIds || m.scores.rows > kMaxElements / m.scores.cols))
      throw_range("scores: unsupported shape");
    if (!(m.scores.sum_tolerance >= 0 && m.scores.sum_tolerance <= 1)) throw_range("sumTolerance: expected a number in [0, 1], got " + fmt(m.scores.sum_tolerance));
    a.scores = m.scores.data;
    a.rows = m.scores.rows;
    a.cols = m.kind == CalibKind::Binary ? 1 : m.scores.cols;
    a.score_kind = m.scores.kind;
    a.sum_tol = float(m.scores.sum_tolerance);
    a.labels = m.labels;
  }
  const int64_t N = a.rows;
  std::vector<float> conf(N);
  std::vector<uint8_t> pos(N);
  a.out_conf = conf.data();
  a.out_positive = pos.data();
  // The kernel's equal-width bins are discarded; its totals (accuracy, NLL, Brier) are kept.
  std::vector<uint64_t> state = calib_state_new(cfg);
  std::vector<uint64_t> acc(state.size(), 0);
  const int64_t bad = dispatch(dev, [&] { return cpu::calib_accumulate(a, acc.data()); },
                               [&] { return cuda::calib_accumulate(a, acc.data()); });
  if (bad >= 0) describe_issue(a, bad);
  // Sort by (confidence, positive): confidences are in [0, 1], so their float bits order like
  // the values and fit in 31 bits with the flag below them.
  std::vector<uint32_t> keys(N);
  for (int64_t i = 0; i < N; ++i) keys[i] = (f32_bits(conf[i]) << 1) | pos[i];
  cpu::radix_sort_u32(keys);
  const int M = cfg.bins;
  for (int b = 0; b < M; ++b) {
    const int64_t lo = int64_t(b) * N / M, hi = int64_t(b + 1) * N / M;
    uint64_t* w = state.data() + kHeaderWords + int64_t(b) * kBinWords;
    for (int64_t i = lo; i < hi; ++i) {
      w[0] += 1;
      w[1] += keys[i] & 1u;
      u128_add(w[2], w[3], to_fixed(bits_f32(keys[i] >> 1), kConfFracBits));
    }
  }
  for (int k = kWRows; k <= kWBrierHi; ++k) state[k] = acc[k];
  CalibSummary s = calib_finalize(state.data(), state.size());
  for (int b = 0; b < M; ++b) {
    const int64_t lo = int64_t(b) * N / M, hi = int64_t(b + 1) * N / M;
    CalibBin& bin = s.groups[0].bins[b];
    bin.lower = b == 0 ? 0.0 : (lo < N ? double(bits_f32(keys[lo] >> 1)) : 1.0);
    bin.upper = b == M - 1 ? 1.0 : (hi < N ? double(bits_f32(keys[hi] >> 1)) : 1.0);
  }
  s.overall = s.groups[0];
  return s;
}

}  // namespace calmoe
