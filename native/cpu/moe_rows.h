// The per-row loops of the CPU MoE engine (routing softmax and selection, expert softmax, the
// mixture, losses, and the per-row backward). They are compiled twice from moe_rows_impl.h: a
// baseline build and an AVX2+FMA build (moe_rows_avx2.cpp), where the fused multiply-adds of the
// shared math become single instructions instead of libm calls. fmaf is exact either way, so both
// builds give the same bits; the engine picks one at run time.
#pragma once
#include <cstdint>

#include "calmoe/moe.h"

namespace calmoe::cpu::moe_rows {

struct Ctx {
  int64_t K = 0, C = 0, a = 0;
  Routing routing = Routing::Soft;  // the selection rule in use (hard trains with Soft)
  bool hard = false;                // hard routing (training: competitive estimator)
  bool single = false;              // topk with k = 1 (Switch-style)
  bool filtered = false;            // robust-filtered objective active: disagreement needed
  bool hard_prediction = false;     // the prediction is the argmax expert (hard while training)
  float inv_tau = 1;
  const float* inv_temp = nullptr;  // K
  // forward state
  const float* g = nullptr;
  float* r = nullptr;
  int32_t* sel = nullptr;
  float* gate = nullptr;
  float* denom = nullptr;
  const int64_t* offset = nullptr;  // K + 1
  const int32_t* entry_pos = nullptr;
  float* p_expert = nullptr;
  float* p = nullptr;
  // training
  const int32_t* labels = nullptr;  // dataset labels
  const int32_t* rows = nullptr;    // batch rows into the dataset
  float* entry_loss = nullptr;
  float* loss = nullptr;
  float* regret = nullptr;
  float* disagree = nullptr;
  int32_t* correct = nullptr;
  const float* coef = nullptr;
  float* dz = nullptr;
  float* dr = nullptr;
  float* dg = nullptr;
  const float* balance = nullptr;  // K: d(balance loss)/dr_ik, the same for every row (or null)
};

struct Table {
  void (*route)(const Ctx&, int64_t begin, int64_t end);           // rows
  void (*expert_softmax)(const Ctx&, int64_t begin, int64_t end);  // entries
  void (*combine)(const Ctx&, int64_t begin, int64_t end);         // rows
  void (*losses)(const Ctx&, int64_t begin, int64_t end);          // rows
  void (*backward)(const Ctx&, int64_t begin, int64_t end);        // rows
};

const Table& table();  // the AVX2+FMA build when use_avx2(), else the baseline

namespace baseline { const Table& table(); }
namespace avx2 { const Table& table(); }

}  // namespace calmoe::cpu::moe_rows
