// Histogram-binned calibration error (ECE, MCE, RMSCE, reliability-diagram bins) with accuracy,
// NLL and Brier score from the same pass. Definitions: ../../shared/DESIGN.md "Calibration metrics".
//
// State is a flat array of uint64 words so that JS can hold it (BigUint64Array), serialise it and
// merge it. Every sum in it is an integer: counts, and confidences / NLL / Brier as fixed-point
// numbers (floor(x * 2^frac)) in 128 bits. Accumulation is therefore exact and order-independent:
// threads, chunks, merges and the CUDA backend all give the same bits.
#pragma once
#include <cstdint>
#include <vector>

#include "calmoe/device.h"
#include "calmoe/limits.h"

namespace calmoe {

enum class BinEdges : uint8_t { RightClosed = 0, LeftClosed = 1 };
enum class ScoreKind : uint8_t { Probabilities = 0, Logits = 1 };
// TopLabel: confidence = row max. Classwise: every (row, class) pair, one histogram per class.
// Binary: a vector of p(y = 1), "accuracy" = share of positives. Confidence: given (conf, correct).
enum class CalibKind : uint8_t { TopLabel = 0, Classwise = 1, Binary = 2, Confidence = 3 };

namespace calib {
constexpr uint64_t kMagic = 0x43414C4D45000001ull;  // "CALME" + layout version 1
constexpr int kHeaderWords = 10;
constexpr int kBinWords = 4;       // count, positives, conf (128-bit: lo, hi)
constexpr int kConfFracBits = 63;  // confidence in [0, 1]
constexpr int kNllFracBits = 58;   // per-row NLL in [0, -log(1e-12)] < 32
constexpr int kBrierFracBits = 60; // per-row Brier in [0, 2 + tolerance] < 8
constexpr float kMinProb = 1e-12f; // NLL clamp: -log(max(p, 1e-12))
// header word indices
enum : int { kWMagic = 0, kWBins, kWGroups, kWFlags, kWRows, kWCorrect, kWNllLo, kWNllHi, kWBrierLo, kWBrierHi };
// flags
constexpr uint64_t kFlagLeftClosed = 1, kFlagNll = 2, kFlagBrier = 4;
constexpr uint64_t kFlagGrouped = 8;  // rows carry a group id; one histogram per group
// Weighted states (per-row weights w_i, see CalibConfig::weighted) append a section after the
// bins: kWeightedHeaderWords (sum q, q*correct, q*nll, q*brier: 128 bits each) then per histogram
// cell kWeightedCellWords (sum q, q*positive, q*conf: 128 bits each), q = floor(w * 2^32). Each
// product q*value is at most 2^88 (w <= limits::kMaxWeight = 2^24, values in 32/27/29 fraction bits),
// so limits::kMaxWeightedStateRows (2^40 - 1) rows fit in 128-bit sums: integer sums, exact and order-independent like the unweighted ones.
constexpr uint64_t kFlagWeighted = 16;
constexpr int kWeightedHeaderWords = 8;
constexpr int kWeightedCellWords = 6;
constexpr int kWeightFracBits = 32;
constexpr int kWConfFracBits = 32;   // confidence in [0, 1]
constexpr int kWNllFracBits = 27;    // NLL < 32
constexpr int kWBrierFracBits = 29;  // Brier < 8
}  // namespace calib

struct CalibConfig {
  CalibKind kind = CalibKind::TopLabel;
  int bins = 15;
  // Classwise: the number of classes. Grouped (TopLabel, Binary, Confidence): the number of row
  // groups, each row naming its group (per-group audits). Otherwise 1.
  int groups = 1;
  bool grouped = false;
  BinEdges edges = BinEdges::RightClosed;
  bool extras = true;  // accumulate NLL and Brier (not available for Confidence)
  // Per-row weights (importance weights for shifts). Weighted metrics, with W_b the weight in bin
  // b and W the total: acc_b = sum_b w_i positive_i / W_b, conf_b = sum_b w_i c_i / W_b,
  // ECE = sum_b (W_b / W) |acc_b - conf_b|, RMSCE = sqrt(sum_b (W_b / W) (acc_b - conf_b)^2), MCE =
  // max over bins with W_b > 0; accuracy, NLL, Brier are weighted means. Rows of weight 0 are
  // validated and add nothing (a bin holding only such rows is empty); the weights need not sum
  // to 1 (every metric is a ratio, so scaling all weights changes nothing); weights are finite,
  // in [0, 2^24], and taken to 2^-32 resolution. An update without weights weighs each row 1.
  bool weighted = false;
};

std::vector<uint64_t> calib_state_new(const CalibConfig& cfg);
// Throws RangeError (naming `name`) if `words` is not a well-formed state: header, length, and
// the counts' invariants (correct <= rows, positives <= count per bin, confidence sums <= counts,
// each histogram's counts add up to the rows, rows <= limits::kMaxStateRows) and, in a weighted
// state, the weighted sums' (correct weight <= weight, per bin positive weight <= weight and
// confidence <= weight, the bin weights add up to the total, every weighted sum at most its rows
// times the largest weight, so none is near 2^128), so that no state gives an impossible result
// (accuracy above 1, an ECE above 1). A merge checks both states with it.
CalibConfig calib_state_config(const uint64_t* words, std::size_t n_words, const char* name = "state");

struct ScoresArg {
  const float* data = nullptr;  // rows x cols, row-major
  int64_t rows = 0;
  int64_t cols = 0;
  ScoreKind kind = ScoreKind::Probabilities;
  double sum_tolerance = 1e-3;  // |row sum - 1| allowed for probabilities
};

// Each update validates its whole input first in the same pass and touches `state` only when all
// of it is valid: a bad row leaves the state as it was and throws a RangeError naming the row.
// `group_ids` (one per row, in [0, groups)) is required by a grouped state and refused otherwise.
// The device a calibration request runs on. 'auto' is the CPU: the rows are in host memory and
// one pass over them is bounded by how fast they move, which host memory does faster than a copy
// to a GPU (H200 machine, W3 10M x 10: 16 CPU threads 8.8 ms, CUDA with the copy 53.8 ms, of
// which the kernel 0.36 ms; bench/results/gpu-h200-2026-11-28). 'cuda' runs there (or throws).
Device calib_resolve_device(DeviceRequest request);

// `weights` (one per row) only for a weighted state (CPU only for now).
void calib_update_rows(Device dev, const ScoresArg& scores, const int32_t* labels, uint64_t* state, std::size_t n_words,
                       const int32_t* group_ids = nullptr, const float* weights = nullptr);
void calib_update_binary(Device dev, const float* prob_pos, const int32_t* labels, int64_t n, uint64_t* state, std::size_t n_words,
                         const int32_t* group_ids = nullptr, const float* weights = nullptr);
void calib_update_confidence(Device dev, const float* conf, const uint8_t* correct, int64_t n, uint64_t* state, std::size_t n_words,
                             const int32_t* group_ids = nullptr, const float* weights = nullptr);
void calib_merge(uint64_t* into, std::size_t n_into, const uint64_t* from, std::size_t n_from);

struct CalibBin {
  double lower = 0, upper = 0;  // edges
  uint64_t count = 0;
  double weight = 0;            // total weight (= count when unweighted)
  double mean_confidence = 0;   // NaN when empty
  double accuracy = 0;          // NaN when empty (share of positives in Binary mode)
};

struct CalibGroupSummary {
  uint64_t rows = 0;       // rows in this histogram
  double weight = 0;       // their total weight (= rows when unweighted)
  double accuracy = 0;     // share of positives over its bins (NaN when empty)
  double ece = 0, mce = 0, rmsce = 0;  // NaN when empty
  std::vector<CalibBin> bins;
};

struct CalibSummary {
  CalibConfig config;
  uint64_t rows = 0;
  double weight = 0;       // total weight (= rows when unweighted)
  double accuracy = 0;     // top-label (or thresholded at 0.5 in Binary mode)
  double nll = 0, brier = 0;  // NaN when not accumulated
  // Classwise: means over classes of the per-class values. Grouped: over all rows (the groups'
  // bins summed). Otherwise the one histogram's values.
  double ece = 0, mce = 0, rmsce = 0;
  CalibGroupSummary overall;              // Grouped: all rows in one histogram; otherwise groups[0] or empty
  std::vector<CalibGroupSummary> groups;  // one per class (Classwise) or group (Grouped), else one
};

CalibSummary calib_finalize(const uint64_t* state, std::size_t n_words);

// Equal-mass (adaptive) binning: rows sorted by (confidence, correct) and cut into `bins` runs of
// floor((b+1)N/M) - floor(bN/M) rows. Not mergeable (needs all rows); kinds TopLabel, Binary and
// Confidence. Edges: 0, the first confidence of bins 1..M-1, 1.
struct EqualMassArg {
  CalibKind kind = CalibKind::TopLabel;
  ScoresArg scores;                     // TopLabel (rows x cols) or Binary (rows x 1)
  const int32_t* labels = nullptr;      // TopLabel, Binary
  const float* confidence = nullptr;    // Confidence
  const uint8_t* correct = nullptr;     // Confidence
  int64_t n = 0;                        // Confidence
  int bins = 15;
  bool extras = true;
};
CalibSummary calib_equal_mass(Device dev, const EqualMassArg& arg);

}  // namespace calmoe
