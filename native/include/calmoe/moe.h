// Mixture-of-Experts classifier: configuration, parameter layout, inference and training.
// The model and objectives are defined in ../../shared/DESIGN.md ("Model", "Objectives").
//
// Parameters live in one flat float32 array owned by the caller (JS holds it as a Float32Array),
// laid out by moe_layout(): the router's layers, then each expert's layers; a layer is its
// weight (in x out, row-major: y = x W + b) followed by its bias (out).
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "calmoe/device.h"
#include "calmoe/limits.h"
#include "calmoe/tilted.h"

namespace calmoe {

enum class Routing : uint8_t {
  Soft = 0,  // p = sum_k r_k p_k over all experts
  TopK = 1,  // the k largest r (ties to the lower index), renormalised; k = 1 is Switch-style top-1
  Hard = 2,  // p = p_k* (k* = argmax r); trained with the competitive estimator (see moe_math.h)
};
enum class Activation : uint8_t { Relu = 0, Gelu = 1 };
// Arithmetic of the CUDA engine's GEMMs (the CPU always computes in FP32): TF32 tensor cores
// (inputs rounded to 10-bit mantissas, FP32 accumulation), exact FP32 (the CPU's summation order,
// so the CPU's bits), or BF16 tensor cores (inputs rounded to 8-bit mantissas, FP32 accumulation).
enum class MatmulPrecision : uint8_t { Tf32 = 0, Fp32 = 1, Bf16 = 2 };

struct MoEConfig {
  int64_t input_dim = 0, classes = 0, experts = 0;
  std::vector<int64_t> expert_hidden;  // hidden sizes of each expert MLP; empty = linear experts
  std::vector<int64_t> router_hidden;  // hidden sizes of the router; empty = linear router
  Activation activation = Activation::Relu;
  Routing routing = Routing::Soft;
  int64_t top_k = 2;                   // TopK only, in [1, experts]
  float router_temperature = 1.0f;     // r = softmax(g / tau)
  MatmulPrecision precision = MatmulPrecision::Tf32;  // how the CUDA engine multiplies; no effect on the CPU
};

// The device MoE work runs on for a request: as resolve_device ('auto': CUDA when a GPU is usable).
Device moe_resolve_device(DeviceRequest request);

// Throws RangeError naming the field when the configuration is unusable. Costs O(layers): no
// allocation from the sizes a configuration claims (a hostile model document is cheap to refuse).
void moe_check_config(const MoEConfig& c);

// The parameter count of a checked configuration (moe_layout(c).total without building it).
int64_t moe_param_count(const MoEConfig& c);

// Experts active per row: K (soft), top_k (topk), 1 (hard at inference).
int64_t moe_active_experts(const MoEConfig& c, bool training);

struct ParamTensor {
  std::string name;  // "router.0.weight", "experts.3.1.bias", ...
  int64_t offset = 0;
  std::vector<int64_t> shape;
};
struct ParamLayout {
  std::vector<ParamTensor> tensors;
  int64_t total = 0;
  // offsets of the first router layer / expert k's first layer, and sizes, for the kernels
  int64_t router_offset = 0, router_size = 0;
  std::vector<int64_t> expert_offset;
  int64_t expert_size = 0;
};
ParamLayout moe_layout(const MoEConfig& c);

enum class InitKind : uint8_t {
  Default = 0,  // PyTorch Linear default: weight and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in))
  Normal = 1,   // every parameter ~ N(0, std)
};
// Seeded, portable (the same bits on every machine and backend).
void moe_init_params(const MoEConfig& c, float* params, uint64_t seed, InitKind kind, float normal_std);

// ---- inference ---------------------------------------------------------------------------------
struct PredictOutputs {
  float* probs = nullptr;          // rows x C (required)
  float* routing = nullptr;        // rows x K: r = softmax(g / tau)          (optional)
  int32_t* selected = nullptr;     // rows x A: active experts, ascending      (optional)
  float* gates = nullptr;          // rows x A: mixture weight of each active  (optional)
  float* expert_probs = nullptr;   // rows x A x C: each active expert's p_k  (optional)
  float* expert_logits = nullptr;  // rows x A x C: each active expert's logits z_k, before its
                                   // temperature (optional; CPU engine only for now)
};
// A (active experts per row) = moe_active_experts(c, false). `temperatures` (K, may be null = 1).
void moe_predict(Device dev, const MoEConfig& c, const float* params, const float* temperatures, const float* x,
                 int64_t rows, const PredictOutputs& out);

// ---- training ----------------------------------------------------------------------------------
enum class ObjectiveKind : uint8_t { Erm = 0, Robust = 1, RobustFiltered = 2 };
// Load-balancing term: Switch: alpha K sum_k f_k P_k (f_k = share of rows whose argmax is k, held
// constant; P_k = mean_B r_k); SquaredMean: alpha K sum_k P_k^2 (smooth, minimised by equal P_k).
enum class BalanceForm : uint8_t { Switch = 0, SquaredMean = 1 };
// Hard routing, objective Robust: the per-example loss the tilt weights w = softmax(eta l) come
// from. Competitive: the training loss itself (sum_k r_k l_ik); Top1: the routed top-1 expert's
// loss l_ik* (k* = argmax r, ties to the lower index), the loss of what hard routing predicts.
// Either way the weights multiply the competitive loss; Top1 needs gradient Term (w constant).
enum class HardTilt : uint8_t { Competitive = 0, Top1 = 1 };
struct ObjectiveConfig {
  ObjectiveKind kind = ObjectiveKind::Erm;
  double eta = 2.0;
  TiltGradient gradient = TiltGradient::Term;
  int64_t warmup_epochs = 0;       // ERM epochs before the robust term
  double tau_regret = 1e-6, tau_disagreement = 0.01;
  bool median_disagreement = false;  // filter: disagreement above the batch median instead of tau_d
  double balance_alpha = 0;          // load-balancing loss weight (0 = off)
  BalanceForm balance_form = BalanceForm::Switch;
  HardTilt hard_tilt = HardTilt::Competitive;
};

enum class OptimizerKind : uint8_t { Sgd = 0, AdamW = 1 };
struct OptimizerConfig {
  OptimizerKind kind = OptimizerKind::AdamW;
  double lr = 1e-3;
  double weight_decay = 1e-4;  // AdamW: decoupled; SGD: added to the gradient (L2)
  double momentum = 0.0;       // SGD
  bool nesterov = false;       // SGD
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;  // AdamW
  double clip_norm = 0;        // global gradient-norm clipping (0 = off)
};

enum class ScheduleKind : uint8_t { Constant = 0, Cosine = 1 };
struct ScheduleConfig {
  ScheduleKind kind = ScheduleKind::Constant;
  int64_t warmup_steps = 0;   // linear warm-up from 0 to lr
  double min_lr_ratio = 0.0;  // cosine floor as a fraction of lr
};
double schedule_lr(const ScheduleConfig& s, double base_lr, int64_t step, int64_t total_steps);

// The optimiser's state between steps (checkpoints): m (SGD momentum buffer / AdamW first moment)
// and v (AdamW second moment), each empty before the first step or the parameter count long, and
// the count of steps taken (AdamW's bias correction, SGD's first-step momentum).
struct OptimizerState {
  std::vector<float> m, v;
  int64_t steps = 0;
};

struct FitConfig {
  int64_t epochs = 1, batch_size = 128;
  bool shuffle = true;
  uint64_t seed = 0;
  ObjectiveConfig objective;
  OptimizerConfig optimizer;
  ScheduleConfig schedule;
  int64_t progress_every = 0;  // batches between progress reports (0: epoch ends only)
  bool snapshot_epochs = false;  // epoch-end reports carry a copy of the parameters (best checkpoints, early stopping)
  // Checkpoints: every this many epochs (0: never) the epoch-end report carries the parameters, the
  // optimiser state and the shuffle RNG state.
  int64_t checkpoint_every = 0;
  // Resume: start at this epoch (0: a fresh run) with this optimiser state; the shuffles of the
  // finished epochs are replayed from `seed`, and the RNG must then equal `resume_rng` (else a
  // RangeError: the data or the options differ from the checkpointed run's).
  int64_t start_epoch = 0;
  OptimizerState resume;
  uint64_t resume_rng = 0;
};

struct StepStats {
  double objective = 0;   // the minimised value (incl. balance loss)
  double mean_loss = 0;   // mean per-example loss (hard: the competitive surrogate)
  double accuracy = 0;    // of the batch's predictions
  double grad_norm = 0;   // before clipping
  double lr = 0;
  int64_t filtered = 0;   // robust-filtered: rows in R
};

struct EpochLog {
  int64_t epoch = 0, steps = 0;
  double loss = 0, objective = 0, accuracy = 0, lr = 0, seconds = 0, examples_per_s = 0;
  bool has_validation = false;
  double val_loss = 0, val_accuracy = 0, val_ece = 0;
  bool robust_active = false;
};

struct Progress {
  bool epoch_end = false;
  int64_t epoch = 0, batch = 0, batches = 0, step = 0;
  StepStats step_stats;
  EpochLog epoch_log;
  std::vector<float> parameters;  // at an epoch end with FitConfig::snapshot_epochs: the parameters then
  bool checkpoint = false;        // at a FitConfig::checkpoint_every epoch end: parameters, optimizer and rng are set
  OptimizerState optimizer;
  uint64_t rng = 0;               // the shuffle RNG's state after this epoch's shuffle
};

struct Dataset {
  const float* x = nullptr;   // rows x input_dim
  const int32_t* y = nullptr; // rows
  int64_t rows = 0;
};

// Trains `params` in place; on return they hold the last finished step (cancelled or not).
// `cancel` is polled between steps. A non-finite loss or gradient stops training with a
// RangeError naming the step; the parameters keep their last finite values.
// `report` is called on the training thread (must not throw).
std::vector<EpochLog> moe_fit(Device dev, const MoEConfig& c, float* params, const float* temperatures,
                              const Dataset& train, const Dataset* validation, const FitConfig& fit,
                              const std::atomic<bool>* cancel, const std::function<void(const Progress&)>& report,
                              bool* cancelled);

}  // namespace calmoe
