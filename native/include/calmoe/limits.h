// Every size and range limit calmoe enforces, defined once. The core checks against these, the
// backends size their buffers by them, the addon checks raw JS arguments against them and exports
// them as the frozen `limits` object, and the TypeScript validators read that object (src/limits.ts):
// no layer spells a value of its own. Each value says why it is what it is.
#pragma once
#include <cstdint>

namespace calmoe::limits {

// --- inputs ---------------------------------------------------------------------------------
// Elements (rows x columns) of one input matrix: 4 TiB of float32, far beyond any host, and every
// rows x columns or offset product stays far from int64 overflow.
constexpr int64_t kMaxElements = int64_t(1) << 40;
// Rows of a KS sample (drift): the exact statistic forms i * n2 - j * n1 in int64.
constexpr int64_t kMaxSampleRows = (int64_t(1) << 31) - 1;
// Columns, classes, groups and experts of an input (and the ids that index them): int32 ids.
constexpr int64_t kMaxIds = (int64_t(1) << 31) - 1;
// Rows of a fit's training or validation set: shuffled with int32-sized row indices per epoch.
constexpr int64_t kMaxFitRows = int64_t(1) << 31;

// --- calibration ----------------------------------------------------------------------------
// Equal-width bins per histogram. Bin edges are exact for M < 2^29 (c * M in double); 2^20 bins is
// already finer than float32 confidences near 1 can fill, and keeps a state's cells bounded.
constexpr int64_t kMaxCalibrationBins = int64_t(1) << 20;
// Histogram cells (bins x classes or groups) per state: 2^26 cells x 4 words = 2 GiB of state.
constexpr int64_t kMaxCalibrationCells = int64_t(1) << 26;
// Rows an unweighted state counts: every count stays exact in a double, and no sum of two valid
// states overflows a 64-bit word (a merge past it is refused).
constexpr uint64_t kMaxStateRows = uint64_t(1) << 53;
// Rows a weighted state counts: a row adds at most 2^88 to a 128-bit weighted sum (a weight <= 2^24
// at 2^-32 resolution times a confidence <= 1 at 2^-32), so fewer than 2^40 rows never reach 2^128
// (2^40 rows of weight 2^24 and confidence 1 would wrap the confidence sum to 0).
constexpr uint64_t kMaxWeightedStateRows = (uint64_t(1) << 40) - 1;
// A row's weight (importance weights): at most 2^24, so weight x 2^32 fits 56 bits (see above).
constexpr float kMaxWeight = 16777216.0f;

// --- drift ----------------------------------------------------------------------------------
// PSI bins, and bins x refinement of a monitor's fine histogram, per feature: 3 words per fine
// bin per feature keeps a monitor of many features within its state bound.
constexpr int64_t kMaxDriftBins = int64_t(1) << 16;

// --- models ---------------------------------------------------------------------------------
// Input features, classes and hidden-layer widths: a weight matrix of two of them has < 2^48
// entries (no int64 overflow in any offset), and each is exact in float32 arithmetic on indices.
constexpr int64_t kMaxWidth = int64_t(1) << 24;
// Experts (and top-k): the CUDA engine keeps one int32 per expert in shared memory (16 KiB).
constexpr int64_t kMaxExperts = 4096;
// Hidden layers per expert or router: a model document cannot claim minutes of work.
constexpr int64_t kMaxHiddenLayers = 64;
// Parameters per model: 64 GiB of float32 (and as much again per optimiser moment).
constexpr int64_t kMaxParams = int64_t(1) << 34;

// Standard deviation of a normal initialisation: a generous bound; far below it every draw is a
// finite float32 and a forward pass of a small model stays finite.
constexpr double kMaxInitStd = 1e6;

// --- training -------------------------------------------------------------------------------
// Rows per minibatch: workspaces are sized by it once per fit.
constexpr int64_t kMaxBatchSize = int64_t(1) << 24;
// Epochs (and epoch counts: warm-up, patience, checkpoint interval): a 32-bit epoch index.
constexpr int64_t kMaxEpochs = int64_t(1) << 31;
// Optimiser steps and batch counts (warm-up steps, progress interval): exact in a double.
constexpr int64_t kMaxSteps = int64_t(1) << 40;
// |eta| of the robust objectives: beyond it softmax(eta * l) is a hard max for any float32 loss
// gap above 1e-5, so a larger tilt changes nothing but the risk of overflow in eta * l.
constexpr double kMaxEta = 1e6;
// SGD momentum and AdamW's betas: the optimiser steps in float32, where a beta that rounds to 1
// stops its moment from learning (1 - beta = 0: AdamW's v stays 0 and its steps blow up). The
// largest float32 below 1 is 1 - 2^-24.
constexpr double kMaxMomentum = 1.0 - 1.0 / 16777216.0;
// Epoch logs a fit returns at most (its last ones): a fit of many short epochs holds bounded memory.
constexpr int64_t kMaxHistory = 10000;

// --- runtime --------------------------------------------------------------------------------
// CPU worker threads: per-thread buffers are sized by the count.
constexpr int64_t kMaxThreads = 4096;

}  // namespace calmoe::limits
