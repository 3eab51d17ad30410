// The backend side of an MoE model: one engine per (model, device) owns the workspaces, the
// gradient and the optimiser state, sized once (no allocation per step). The CPU engine works on
// the caller's parameter array in place; a device engine keeps its own copy and syncs on demand.
#pragma once
#include <cstdint>
#include <memory>

#include "calmoe/moe.h"

namespace calmoe::moe {

struct Batch {
  const float* x = nullptr;     // dataset rows x input_dim (host)
  const int32_t* y = nullptr;   // dataset labels (host)
  const int32_t* rows = nullptr;  // this batch's row indices into x and y
  int64_t size = 0;
};

class Engine {
 public:
  virtual ~Engine() = default;
  // The dataset the coming batches index (Batch::x and Batch::y). A device engine may copy it to
  // the device once, when it fits, so that a step moves only the batch's row indices; batches
  // over other arrays still work. The arrays must outlive the engine's use of them.
  virtual void attach_dataset(const float* x, const int32_t* y, int64_t rows) {
    (void)x;
    (void)y;
    (void)rows;
  }
  // Forward and backward of one batch into the engine's gradient; stats of the batch.
  // Throws RangeError if a per-example loss is not finite. `next`: the batch of the following
  // call when the caller knows it; a device engine may copy its rows in while this step runs
  // (its arrays are read during this call; the following call still checks that it got that batch).
  virtual StepStats forward_backward(const Batch& b, const ObjectiveConfig& obj, bool robust_active, const Batch* next = nullptr) = 0;
  // The gradient of the last forward_backward (host memory, parameter layout).
  virtual const float* gradient() = 0;
  // Clips, then updates the parameters; returns the pre-clip global gradient norm. Leaves the
  // parameters unchanged and returns a non-finite norm if the gradient or the update is not finite.
  virtual double update(const OptimizerConfig& opt, double lr) = 0;
  virtual void predict(const float* x, int64_t rows, const PredictOutputs& out) = 0;
  // Copies the engine's parameters to `host` (a no-op when it works on them in place).
  virtual void sync_to_host(float* host) = 0;
  // The optimiser state (checkpoints), and setting it before the first update of a resumed run.
  // set_optimizer_state expects sizes checked by the caller (m, v: empty or the parameter count).
  virtual OptimizerState optimizer_state() = 0;
  virtual void set_optimizer_state(const OptimizerState& s) = 0;
};

std::unique_ptr<Engine> make_engine(Device dev, const MoEConfig& c, float* params, const float* temperatures, int64_t max_batch);

}  // namespace calmoe::moe

namespace calmoe::cpu {
std::unique_ptr<moe::Engine> make_moe_engine(const MoEConfig& c, float* params, const float* temperatures, int64_t max_batch);
}

#if CALMOE_WITH_CUDA
namespace calmoe::cuda {
// The CUDA engine (native/cuda/moe_engine.cu): parameters, gradient and optimiser state on the
// device; the same semantics as the CPU engine. Needs a usable GPU (resolve_device checks first).
std::unique_ptr<moe::Engine> make_moe_engine(const MoEConfig& c, float* params, const float* temperatures, int64_t max_batch);
}
#endif
