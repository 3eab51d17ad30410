// The per-row and per-expert kernels of the CUDA MoE engine (moe_rows.cu): routing softmax and
// selection, the dispatch of (row, expert) entries to experts, expert softmax, the mixture,
// losses, the per-row backward, the load-balancing statistics and the fixed-order column sums of
// the bias gradients. The per-row bodies are those of cpu/moe_rows_impl.h, line for line, on the
// shared math of core/moe_math.h (so a row gives the bits the CPU engine gives it).
//
// Plain C++ outside __CUDACC__ (host tests include it). All pointers are device pointers; every
// launcher only enqueues work on `stream` (no host synchronisation) unless it says otherwise.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "calmoe/moe.h"

namespace calmoe::cuda::moe_rows {

// What the row kernels read and write (cpu::moe_rows::Ctx, with batch-local labels).
struct Ctx {
  int64_t n = 0, K = 0, C = 0, a = 0;  // rows, experts, classes, active experts per row
  Routing routing = Routing::Soft;     // the selection rule in use (hard trains with Soft)
  bool hard = false;                   // hard routing while training: the competitive estimator
  bool single = false;                 // topk with k = 1 (Switch-style)
  bool filtered = false;               // robust-filtered active: disagreement needed
  bool hard_prediction = false;        // the prediction is the argmax expert (hard while training)
  float inv_tau = 1;
  const float* inv_temp = nullptr;     // K
  // forward state
  const float* g = nullptr;            // n x K router logits
  float* r = nullptr;                  // n x K routing weights
  int32_t* sel = nullptr;              // n x a active experts, ascending
  float* gate = nullptr;               // n x a
  float* denom = nullptr;              // n
  int32_t* argmax = nullptr;           // n: argmax r (the balance loss's f)
  const int32_t* entry_pos = nullptr;  // n x a: entry of (row, slot)
  const int32_t* entry_k = nullptr;    // entries: expert of the entry
  float* p_expert = nullptr;           // entries x C
  float* p = nullptr;                  // n x C
  // training
  const int32_t* labels = nullptr;     // n: the batch's labels
  float* entry_loss = nullptr;         // entries
  float* loss = nullptr;               // n
  float* regret = nullptr;             // n
  float* disagree = nullptr;           // n
  int32_t* correct = nullptr;          // n
  const float* coef = nullptr;         // n: dL/dl_i
  float* dz = nullptr;                 // entries x C
  float* dr = nullptr;                 // n x K
  float* dg = nullptr;                 // n x K
  float* gbuf = nullptr;               // n x a scratch: dL/d gate
  const float* balance = nullptr;      // K: d(balance)/dr_ik, or null
};

void route(const Ctx& c, cudaStream_t stream);  // r, sel, gate, denom, argmax
// The head of the forward: each entry's expert softmax (p_expert in place), the mixture p and,
// when c.labels is set (training), entry_loss, loss, regret, disagree, correct. A warp per row
// (moe_rows_warp.cu) up to 256 classes, a thread per row and step beyond.
void head(const Ctx& c, cudaStream_t stream);
void backward(const Ctx& c, cudaStream_t stream);  // dz, dr, dg: a warp per row (moe_rows_warp.cu)

// Dispatch: entries of expert k are offset[k] .. offset[k + 1] - 1, in ascending row order (the
// CPU engine's stable fill). a == K (soft, hard training, top-K of K): every row has every expert,
// entry (i, k) = k n + i. a < K: per-chunk counts (integer shared-memory atomics: exact), one
// exclusive scan over the (expert, chunk) counts in expert-major order, then each (row, slot)
// takes its chunk's base plus the number of earlier rows of its chunk that chose the same expert.
// Deterministic; no host synchronisation.
constexpr int64_t kDispatchRows = 128;  // rows per chunk
inline int64_t dispatch_chunks(int64_t n) { return (n + kDispatchRows - 1) / kDispatchRows; }
struct Dispatch {
  int32_t* counts = nullptr;     // K x chunks (a < K only)
  int32_t* base = nullptr;       // K x chunks (a < K only)
  int64_t* offset = nullptr;     // K + 1
  int32_t* entry_pos = nullptr;  // n x a
  int32_t* entry_row = nullptr;  // entries: batch-local row
  int32_t* entry_k = nullptr;    // entries: expert
};
void dispatch(const int32_t* sel, int64_t n, int64_t a, int64_t K, const Dispatch& d, cudaStream_t stream);

// Load balance (Switch): frac[k] = sum over rows with argmax k of 1/n, mean_r[k] = sum_i r_ik / n
// (double, rows in order: the CPU engine's sums), grad[k] = float(alpha K frac[k] / n).
void balance(const float* r, const int32_t* argmax, int64_t n, int64_t K, double alpha, double* frac, double* mean_r, float* grad,
             cudaStream_t stream);

// Bias gradients: out[g * out_stride + j] = float(sum over rows r of group g, in order, of double
// m[r * ld + j]); group g's rows are offset[g] .. offset[g + 1] - 1 (offset: device, groups + 1),
// or 0 .. rows - 1 for one group when offset is null. A block per (group, 32 columns).
void column_sums(const float* m, int64_t ld, int64_t cols, const int64_t* offset, int64_t rows, int64_t groups, float* out,
                 int64_t out_stride, cudaStream_t stream);

// dst[e * C + j] = src[idx[e] * C + j] for e < count (predict: each active expert's probabilities;
// training: a batch's rows of a device-resident dataset and its labels).
void gather_rows(const float* src, const int32_t* idx, int64_t count, int64_t C, float* dst, cudaStream_t stream);
void gather_rows(const int32_t* src, const int32_t* idx, int64_t count, int64_t C, int32_t* dst, cudaStream_t stream);

// For tests: the dispatch of host `sel` (n x a), results copied back to host arrays
// (entry_pos: n x a, entry_row: n x a, offset: K + 1). Synchronises.
void dispatch_host(const int32_t* sel, int64_t n, int64_t a, int64_t K, int32_t* entry_pos, int32_t* entry_row, int64_t* offset);

}  // namespace calmoe::cuda::moe_rows
