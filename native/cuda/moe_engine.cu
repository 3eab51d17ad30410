// CUDA engine of the MoE classifier (the moe::Engine of core/moe_engine.h): the CPU engine's step
// (cpu/moe_engine.cpp) with every array on the device.
//
// State: parameters (copied in at construction; sync_to_host copies them back), gradient and the
// optimiser moments stay on the device for the engine's life. Workspaces are sized once, for
// max_batch rows (training) and for a fixed chunk of rows (prediction, on first use): a step
// allocates nothing.
//
// A training step, all on one stream:
//   input: with the dataset on the device (attach_dataset, when it fits), the batch's row indices
//     go in and its rows are gathered there; otherwise the rows and labels were gathered on the
//     host into pinned staging and copied in on a copy stream (cuda/batch_stager.cuh) while the
//     previous step ran, when that step was told this batch was next (else now).
//   router: one GEMM per layer (bias + activation epilogue, pre-activations saved).
//   route: one thread per row: moe::softmax, moe::select_experts (cuda/moe_rows.cu).
//   dispatch: per-expert counts, exclusive scan, stable fill (entries of an expert in ascending
//     row order), on the device; a tiny plan kernel turns the expert offsets into the grouped
//     GEMMs' descriptors and tile prefix sums, so no host synchronisation is needed before the
//     experts run.
//   experts: one grouped GEMM launch per layer, rows of x gathered inside the operand loads (read
//     as they are when every expert takes every row: soft, hard training).
//   head: expert softmax (each expert's temperature), the mixture (ascending expert order) and
//     the losses in one warp-per-row kernel (cuda/moe_rows_warp.cu).
//   objective: the B coefficients dL/dl_i on the device (cuda/objective.cuh: ERM's 1/B, the
//     tilted weights in the CPU's order of sums, robust-filtered's R compacted in row order), so
//     the backward is queued at once; the losses come back with the step's end, for the
//     objective's value and the finiteness check (a non-finite loss throws before any update).
//   (then the next batch, if known, is gathered on the host and copied in while the kernels run)
//   backward: per-row expert- and router-logit gradients (+ the balance term), then per layer the
//     grouped GEMM for dW (a reduction over each expert's rows, in row order), the fixed-order
//     column sums for the bias gradients, and the grouped GEMM for the delta through the
//     activation; the router the same with single GEMMs.
//   update: global gradient norm (fixed-order tree in double), clipping factor, element-wise
//     opt::update into a scratch copy; the copy is committed only when the norm and every new
//     parameter are finite (the CPU engine's contract); one synchronisation returns the norm.
//
// Prediction: chunks of rows, each copied to pinned staging and on to the device while the chunk
// before it runs; each chunk's outputs come back before the next is queued.
//
// Determinism: no float atomics; every reduction has a fixed order (GEMM: one thread's fma chain
// per output in the CPU GEMM's order; column sums and balance statistics: one thread's loop over
// rows in order, in double; norm: a fixed tree), so a step gives the same bits run to run.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "calmoe/error.h"
#include "core/activation.h"
#include "core/moe_engine.h"
#include "core/moe_math.h"
#include "core/moe_row_bodies.h"
#include "core/objective.h"
#include "core/optimizer.h"
#include "host/thread_pool.h"
#include "cuda/batch_stager.cuh"
#include "cuda/cublaslt_gemm.cuh"
#include "cuda/gemm.cuh"
#include "cuda/moe_rows.cuh"
#include "cuda/objective.cuh"
#include "cuda/phase_timer.cuh"
#include "cuda/runtime.cuh"

namespace calmoe::cuda {
namespace {

using moe::Batch;
using moe_rows::Ctx;

// One MLP (router or expert): layer l maps dims[l] -> dims[l + 1] (as the CPU engine's Mlp).
struct Mlp {
  std::vector<int64_t> dims;
  int64_t layers() const { return int64_t(dims.size()) - 1; }
  int64_t weight_offset(int64_t l) const {
    int64_t o = 0;
    for (int64_t i = 0; i < l; ++i) o += dims[i] * dims[i + 1] + dims[i + 1];
    return o;
  }
  int64_t bias_offset(int64_t l) const { return weight_offset(l) + dims[l] * dims[l + 1]; }
  int64_t max_hidden() const {
    int64_t m = 0;
    for (int64_t l = 1; l + 1 < int64_t(dims.size()); ++l) m = std::max(m, dims[l]);
    return m;
  }
};

GemmAct gemm_act(Activation a) { return a == Activation::Gelu ? GemmAct::Gelu : GemmAct::Relu; }

// One expert's GEMM at entry offset 0, and how it moves with the expert's first entry `o` and
// entry count: a.p += o a_step, a.rows += o (rows_shift), b.p += o b_step, c += o c_step,
// pre += o pre_step, dact_pre += o dpre_step; the count is K (count_is_k: dW) or M.
struct ExpertGemm {
  GemmDesc d;
  int64_t a_step = 0, b_step = 0, c_step = 0, pre_step = 0, dpre_step = 0;
  int32_t rows_shift = 0, count_is_k = 0;
};

// Expert k's GEMM from its template t, for its entries o .. o + count (on the device in the plan
// kernel, on the host for the cuBLASLt path).
CALMOE_HD GemmDesc expert_gemm_at(const ExpertGemm& t, int64_t o, int64_t count) {
  GemmDesc d = t.d;
  if (t.count_is_k) d.K = count;
  else d.M = count;
  d.a.p += o * t.a_step;
  if (t.rows_shift) d.a.rows += o;
  d.b.p += o * t.b_step;
  d.c += o * t.c_step;
  if (d.pre) d.pre += o * t.pre_step;
  if (d.dact_pre) d.dact_pre += o * t.dpre_step;
  return d;
}

constexpr int kPlanThreads = 1024;

// descs[s K + k] = template (s, k) moved to expert k's entries; tile_start[s (K + 1) + k]: the
// prefix of tiles over the experts of set s. One block.
__global__ void __launch_bounds__(kPlanThreads) plan_experts_kernel(const ExpertGemm* tmpl, int64_t sets, int64_t K, const int64_t* offset,
                                                                    GemmTile tile, GemmDesc* descs, int64_t* tile_start) {
  for (int64_t idx = threadIdx.x; idx < sets * K; idx += blockDim.x) {
    const int64_t k = idx % K;
    descs[idx] = expert_gemm_at(tmpl[idx], offset[k], offset[k + 1] - offset[k]);
  }
  __syncthreads();
  for (int64_t s = threadIdx.x; s < sets; s += blockDim.x) {
    int64_t tiles = 0;
    for (int64_t k = 0; k < K; ++k) {
      tile_start[s * (K + 1) + k] = tiles;
      tiles += gemm_tiles(descs[s * K + k].M, descs[s * K + k].N, tile);
    }
    tile_start[s * (K + 1) + K] = tiles;
  }
}

// ---- update ------------------------------------------------------------------------------------------
constexpr int kNormThreads = 256;
constexpr int64_t kNormChunk = int64_t(1) << 16;  // elements per block of the first pass
constexpr int kMaxNormBlocks = 4096;

__device__ double block_sum(double v, double* sh) {  // fixed-order tree over the block
  sh[threadIdx.x] = v;
  __syncthreads();
  for (int w = kNormThreads / 2; w > 0; w >>= 1) {
    if (int(threadIdx.x) < w) sh[threadIdx.x] += sh[threadIdx.x + w];
    __syncthreads();
  }
  return sh[0];
}

__global__ void __launch_bounds__(kNormThreads) norm_partial_kernel(const float* g, int64_t P, int64_t per_block, double* partial) {
  __shared__ double sh[kNormThreads];
  const int64_t b = int64_t(blockIdx.x) * per_block, e = min(P, b + per_block);
  double s = 0;
  for (int64_t i = b + threadIdx.x; i < e; i += kNormThreads) s += double(g[i]) * double(g[i]);
  s = block_sum(s, sh);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

__global__ void __launch_bounds__(kNormThreads) norm_final_kernel(const double* partial, int blocks, double clip, double* norm, float* scale) {
  __shared__ double sh[kNormThreads];
  double s = 0;
  for (int b = threadIdx.x; b < blocks; b += kNormThreads) s += partial[b];
  s = block_sum(s, sh);
  if (threadIdx.x == 0) {
    const double nrm = sqrt(s);
    *norm = nrm;
    *scale = (clip > 0 && nrm > clip) ? float(clip / (nrm + 1e-6)) : 1.0f;  // the CPU engine's factor
  }
}

__device__ __forceinline__ bool finite_f64(double x) { return x - x == 0.0; }

__global__ void update_kernel(opt::Hyper h, const double* norm, const float* scale, const float* params, const float* grad, float* m, float* v,
                              float* next, int64_t P, bool first, int32_t* bad) {
  if (!finite_f64(*norm)) return;  // the CPU engine returns before touching anything
  h.grad_scale = *scale;
  bool ok = true;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < P; i += stride) {
    float dummy = 0.0f;
    float& vi = v ? v[i] : dummy;
    const float np = opt::update(h, params[i], grad[i], m[i], vi, first);
    ok &= is_finite_f32(np);
    next[i] = np;
  }
  if (!ok) atomicOr(bad, 1);  // an integer flag: the same result in any order
}

__global__ void commit_kernel(const double* norm, const int32_t* bad, const float* next, float* params, int64_t P) {
  if (!finite_f64(*norm) || *bad != 0) return;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < P; i += stride) params[i] = next[i];
}

// What cuBLASLt's epilogues do not do, after its GEMM (cuda/cublaslt_gemm.cuh): for z < count,
// dst_z = act(src_z) * act'(dpre_z) (each part when asked) over M x N, with the strides of a
// strided batch. GELU is calmoe's (core/activation.h), not cuBLASLt's, so every backend's GELU is
// the same function; ReLU without a saved pre-activation is fused into cuBLASLt's epilogue instead.
__global__ void gemm_epilogue_kernel(int64_t M, int64_t N, const float* src, int64_t ld_src, int64_t stride_src, float* dst, int64_t ld_dst,
                                     int64_t stride_dst, GemmAct a, GemmAct da, const float* dpre, int64_t ld_dpre, int64_t stride_dpre) {
  const int64_t z = blockIdx.y, total = M * N, step = int64_t(gridDim.x) * blockDim.x;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += step) {
    const int64_t i = e / N, j = e % N;
    float v = src[z * stride_src + i * ld_src + j];
    if (a == GemmAct::Relu) v = act::relu(v);
    else if (a == GemmAct::Gelu) v = act::gelu(v);
    if (da != GemmAct::None) {
      const float p = dpre[z * stride_dpre + i * ld_dpre + j];
      v *= da == GemmAct::Relu ? act::relu_grad(p) : act::gelu_grad(p);
    }
    dst[z * stride_dst + i * ld_dst + j] = v;
  }
}

unsigned stride_blocks(int64_t n) { return unsigned(std::min<int64_t>(std::max<int64_t>(1, (n + 255) / 256), 8192)); }

// ---- the engine --------------------------------------------------------------------------------------

class CudaEngine final : public moe::Engine {
 public:
  CudaEngine(const MoEConfig& c, float* params, const float* temps, int64_t max_batch);
  ~CudaEngine() override {
    if (stream_) cudaStreamSynchronize(stream_);  // nothing queued may outlive the buffers
  }
  CudaEngine(const CudaEngine&) = delete;
  CudaEngine& operator=(const CudaEngine&) = delete;

  void attach_dataset(const float* x, const int32_t* y, int64_t rows) override;
  StepStats forward_backward(const Batch& b, const ObjectiveConfig& obj, bool robust_active, const Batch* next = nullptr) override;
  const float* gradient() override;
  double update(const OptimizerConfig& opt, double lr) override;
  void predict(const float* x, int64_t rows, const PredictOutputs& out) override;
  void sync_to_host(float* host) override;
  OptimizerState optimizer_state() override;
  void set_optimizer_state(const OptimizerState& s) override;

 private:
  // Workspace of one forward pass over up to `rows` rows with `a` active experts per row.
  struct Pass {
    int64_t rows = 0, a = 0, entries = 0, sets = 0;
    DeviceBuffer<float> x;                 // rows x d: the pass's rows of x
    DeviceBuffer<float> rpre, ract;        // router hidden layers (rows x h_l each, at rhid[l])
    DeviceBuffer<float> g, r, gate, denom;
    DeviceBuffer<int32_t> sel, argmax;
    DeviceBuffer<int32_t> counts, base, entry_pos, entry_row, entry_k;
    DeviceBuffer<int64_t> offset;          // K + 1
    DeviceBuffer<float> epre, eact;        // expert hidden layers (entries x h_l each, at ehid[l])
    DeviceBuffer<float> p_expert, p;
    DeviceBuffer<ExpertGemm> tmpl;         // sets x K
    std::vector<ExpertGemm> tmpl_host;     // the same on the host (the cuBLASLt path plans there)
    DeviceBuffer<float> xg;                // cuBLASLt path, top-k: the entries' rows of x in entry order (E x d)
    DeviceBuffer<GemmDesc> descs;          // sets x K
    DeviceBuffer<int64_t> tile_start;      // sets x (K + 1)
    std::vector<int64_t> rhid, ehid;
  };

  const float* W(const Mlp& m, int64_t base, int64_t l) const { return params_.get() + base + m.weight_offset(l); }
  const float* Bias(const Mlp& m, int64_t base, int64_t l) const { return params_.get() + base + m.bias_offset(l); }
  // gradient w.r.t. expert layer l's output (entries x dims[l + 1]) / router layer l's output
  float* expert_delta(int64_t l) {
    const int64_t L = expert_.layers();
    return l == L - 1 ? dz_.get() : ((L - 2 - l) % 2 == 0 ? dh_a_.get() : dh_b_.get());
  }
  float* router_delta(int64_t l) {
    const int64_t L = router_.layers();
    return l == L - 1 ? dg_.get() : ((L - 2 - l) % 2 == 0 ? dh_a_.get() : dh_b_.get());
  }
  void size_pass(Pass& f, int64_t rows, int64_t a, bool training);
  // Whether hidden layers store their pre-activations: only training needs them, and with ReLU not
  // even training (relu'(x) = relu'(relu(x)) for every x, NaN and -0 included, so the backward
  // reads the activations instead: the same bits, one write of every hidden layer saved).
  bool keep_pre(bool training) const { return training && c_.activation != Activation::Relu; }
  // Training batches over a dataset not on the device: the batch's rows gathered on the host into
  // the stager (staged_ records which batch, so a prefetched one is used only when it is b).
  void stage_batch(const Batch& b);
  bool is_staged(const Batch& b) const;
  void forward(Pass& f, int64_t n, bool training);
  Ctx row_ctx(Pass& f, int64_t n, bool training);
  // bound on the tiles of set `set`, whose M is each expert's count (entries in all)
  int64_t expert_rows_tiles(const Pass& f, int64_t set, int64_t entries, int64_t N) const {
    const GemmTile t = gemm_tile_of(math_);
    return ((entries + t.m - 1) / t.m + c_.experts) * ((N + t.n - 1) / t.n);
  }
  void h2d(void* dst, const void* src, std::size_t bytes) {
    check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_), "cudaMemcpyAsync H2D");
  }
  // One GEMM of the step, or a strided batch of `count` (the experts' GEMMs when every expert reads
  // every row: d1 is expert 1's, whose distance from d0 gives every stride): on cuBLASLt when this
  // engine uses it and the GEMM reads no gathered rows, else on calmoe's kernel.
  void run_gemm(const GemmDesc& d0, const GemmDesc* d1 = nullptr, int64_t count = 1);
  // Set `set` of the experts' GEMMs: one grouped launch planned on the device (calmoe's kernels),
  // or on cuBLASLt from h_offset_ (one strided batch when every expert reads every row, else one
  // GEMM per expert with entries).
  void run_set(Pass& f, int64_t set, int64_t max_tiles);
  void launch_set(Pass& f, int64_t set, int64_t max_tiles) {
    const int64_t K = c_.experts;
    gemm_grouped(f.descs.get() + set * K, f.tile_start.get() + set * (K + 1), int(K), max_tiles, math_, stream_);
  }

  // The stream, destroyed after every buffer (members are destroyed in reverse order), also when
  // the constructor throws half way.
  struct StreamOwner {
    cudaStream_t s = nullptr;
    ~StreamOwner() {
      if (s) {
        cudaStreamSynchronize(s);
        cudaStreamDestroy(s);
      }
    }
  };
  StreamOwner stream_owner_;
  cudaStream_t stream_ = nullptr;
  MoEConfig c_;
  ParamLayout layout_;
  Mlp router_, expert_;
  int64_t P_ = 0, max_batch_ = 1;
  GemmMath math_ = GemmMath::Fp32;

  DeviceBuffer<float> params_, grad_, m_, v_, next_, inv_temp_;
  GemmWorkspace gemm_ws_;  // split-K of the single GEMMs (the router's; gemm.cuh)
  // TF32 / BF16 GEMMs on cuBLASLt (when cublaslt_info().usable; FP32 always on calmoe's kernel)
  std::unique_ptr<LtRunner> lt_;
  // cuBLASLt path: each expert's first entry (K + 1) of the pass that ran last, on the host (its
  // sizes come from there); a pass's backward follows its forward on this engine's one thread
  Pinned<int64_t> h_offset_;
  PhaseTimer phases_;      // CALMOE_CUDA_PHASES=1: per-phase times of each training step
  bool have_m_ = false, have_v_ = false;
  int64_t steps_ = 0;
  std::vector<float> grad_host_;
  Pass train_, infer_;
  // training
  DeviceBuffer<int32_t> labels_, correct_;
  DeviceBuffer<float> loss_, coef_, regret_, disagree_, entry_loss_, dz_, dr_, dg_, gbuf_, dh_a_, dh_b_, balance_grad_;
  DeviceBuffer<double> frac_, mean_r_;
  // update
  int norm_blocks_ = 1;
  int64_t norm_per_block_ = 1;
  DeviceBuffer<double> norm_partial_, norm_;
  DeviceBuffer<float> scale_;
  DeviceBuffer<int32_t> bad_;
  // predict
  DeviceBuffer<float> expert_probs_;
  // the attached dataset on the device (when it fits): a step then copies only its row indices
  const float* data_host_x_ = nullptr;
  const int32_t* data_host_y_ = nullptr;
  DeviceBuffer<float> data_x_;
  DeviceBuffer<int32_t> data_y_, batch_rows_;
  // input staging (batches of a dataset not on the device; prediction chunks)
  BatchStager train_stager_, predict_stager_;
  const float* staged_x_ = nullptr;
  const int32_t* staged_y_ = nullptr;
  std::vector<int32_t> staged_rows_;
  // host staging of the per-step values
  Pinned<float> h_loss_;
  DeviceObjective objective_;  // the coefficients dL/dl_i, computed on the device
  Pinned<int32_t> h_rows_, h_correct_, h_bad_;
  Pinned<double> h_frac_, h_mean_r_, h_norm_;
};

CudaEngine::CudaEngine(const MoEConfig& c, float* params, const float* temps, int64_t max_batch)
    : c_(c), layout_(moe_layout(c)), max_batch_(std::max<int64_t>(1, max_batch)) {
  const int64_t K = c.experts, C = c.classes, d = c.input_dim;
  std::vector<float> inv_temp(std::size_t(K), 1.0f);
  if (temps) {
    for (int64_t k = 0; k < K; ++k) {
      if (!(temps[k] > 0.0f) || !std::isfinite(temps[k])) throw_range("temperatures[" + std::to_string(k) + "]: expected a finite number > 0");
      inv_temp[k] = 1.0f / temps[k];
    }
  }
  router_.dims.push_back(d);
  router_.dims.insert(router_.dims.end(), c.router_hidden.begin(), c.router_hidden.end());
  router_.dims.push_back(K);
  expert_.dims.push_back(d);
  expert_.dims.insert(expert_.dims.end(), c.expert_hidden.begin(), c.expert_hidden.end());
  expert_.dims.push_back(C);
  P_ = layout_.total;
  math_ = gemm_math_of(c.precision);
  if (math_ != GemmMath::Fp32 && cublaslt_info().usable) lt_ = std::make_unique<LtRunner>();
  const int64_t B = max_batch_, a = moe_active_experts(c, true), E = B * a;
  if (E >= (int64_t(1) << 31)) throw_range("batch: " + std::to_string(B) + " rows x " + std::to_string(a) + " active experts exceed the CUDA engine's 2^31 entries");

  use_default_device();
  check(cudaStreamCreateWithFlags(&stream_owner_.s, cudaStreamNonBlocking), "cudaStreamCreate");
  stream_ = stream_owner_.s;
  // every copy and fill goes through stream_ (a non-blocking stream does not wait for the legacy
  // default stream that DeviceBuffer::upload/zero use); the constructor ends with a sync
  params_.resize(std::size_t(P_));
  h2d(params_.get(), params, std::size_t(P_) * sizeof(float));
  grad_.resize(std::size_t(P_));
  check(cudaMemsetAsync(grad_.get(), 0, std::size_t(P_) * sizeof(float), stream_), "cudaMemsetAsync");
  next_.resize(std::size_t(P_));
  inv_temp_.resize(std::size_t(K));
  h2d(inv_temp_.get(), inv_temp.data(), std::size_t(K) * sizeof(float));

  // training buffers, for max_batch rows
  labels_.resize(std::size_t(B));
  correct_.resize(std::size_t(B));
  loss_.resize(std::size_t(B));
  coef_.resize(std::size_t(B));
  regret_.resize(std::size_t(B));
  disagree_.resize(std::size_t(B));
  entry_loss_.resize(std::size_t(E));
  dz_.resize(std::size_t(E * C));
  dr_.resize(std::size_t(B * K));
  dg_.resize(std::size_t(B * K));
  gbuf_.resize(std::size_t(E));
  const int64_t dh = std::max<int64_t>(1, std::max(E * expert_.max_hidden(), B * router_.max_hidden()));
  dh_a_.resize(std::size_t(dh));
  dh_b_.resize(std::size_t(dh));
  balance_grad_.resize(std::size_t(K));
  frac_.resize(std::size_t(K));
  mean_r_.resize(std::size_t(K));
  size_pass(train_, B, a, true);

  norm_blocks_ = int(std::min<int64_t>(kMaxNormBlocks, std::max<int64_t>(1, (P_ + kNormChunk - 1) / kNormChunk)));
  norm_per_block_ = (P_ + norm_blocks_ - 1) / norm_blocks_;
  norm_partial_.resize(std::size_t(norm_blocks_));
  norm_.resize(1);
  scale_.resize(1);
  bad_.resize(1);

  h_rows_.resize(std::size_t(B));
  batch_rows_.resize(std::size_t(B));
  h_loss_.resize(std::size_t(B));
  objective_.reserve(B);
  h_correct_.resize(std::size_t(B));
  h_frac_.resize(std::size_t(K));
  h_mean_r_.resize(std::size_t(K));
  h_norm_.resize(1);
  h_bad_.resize(1);
  h_offset_.resize(std::size_t(K + 1));
  check(cudaStreamSynchronize(stream_), "engine setup");
}

// Sizes f for `rows` rows and builds its expert GEMM templates (forward; training adds dW and delta).
void CudaEngine::size_pass(Pass& f, int64_t rows, int64_t a, bool training) {
  const int64_t K = c_.experts, C = c_.classes, d = c_.input_dim, E = rows * a;
  if (E >= (int64_t(1) << 31)) throw_range("rows x active experts exceed the CUDA engine's 2^31 entries");
  const int64_t chunks = moe_rows::dispatch_chunks(rows);
  f.rows = rows;
  f.a = a;
  f.entries = E;
  f.x.resize(std::size_t(rows * d));
  f.rhid.assign(std::size_t(std::max<int64_t>(1, router_.layers())), 0);
  int64_t rh = 0;
  for (int64_t l = 0; l + 1 < router_.layers(); ++l) {
    f.rhid[l] = rh;
    rh += rows * router_.dims[l + 1];
  }
  f.rpre.resize(keep_pre(training) ? std::size_t(rh) : 0);
  f.ract.resize(std::size_t(rh));
  f.g.resize(std::size_t(rows * K));
  f.r.resize(std::size_t(rows * K));
  f.gate.resize(std::size_t(E));
  f.denom.resize(std::size_t(rows));
  f.sel.resize(std::size_t(E));
  f.argmax.resize(std::size_t(rows));
  if (a < K) {
    f.counts.resize(std::size_t(K * chunks));
    f.base.resize(std::size_t(K * chunks));
  }
  f.entry_pos.resize(std::size_t(E));
  f.entry_row.resize(std::size_t(E));
  f.entry_k.resize(std::size_t(E));
  f.offset.resize(std::size_t(K + 1));
  f.ehid.assign(std::size_t(std::max<int64_t>(1, expert_.layers())), 0);
  int64_t eh = 0;
  for (int64_t l = 0; l + 1 < expert_.layers(); ++l) {
    f.ehid[l] = eh;
    eh += E * expert_.dims[l + 1];
  }
  f.epre.resize(keep_pre(training) ? std::size_t(eh) : 0);
  f.eact.resize(std::size_t(eh));
  f.p_expert.resize(std::size_t(E * C));
  f.p.resize(std::size_t(rows * C));

  // expert GEMM templates: forward layer l is set l; training adds dW of layer l (set L + l) and
  // the delta through layer l >= 1 (set 2L + l - 1)
  const int64_t L = expert_.layers();
  f.sets = training ? 3 * L - 1 : L;
  std::vector<ExpertGemm> t(std::size_t(f.sets * K));
  // a == K (soft, hard training): expert k's entries are rows 0 .. n - 1 in order, so its first
  // layer reads x as it is, with no row gather
  const bool every_row = a == K;
  // Otherwise calmoe's kernels gather the entries' rows inside their operand loads; cuBLASLt
  // cannot, so on its path they are gathered once into f.xg (entries x d) after the dispatch.
  const bool gather_copy = !every_row && lt_;
  f.xg.resize(gather_copy ? std::size_t(E * d) : 0);
  const float* x0 = gather_copy ? f.xg.get() : f.x.get();
  const int32_t* x0_rows = every_row || gather_copy ? nullptr : f.entry_row.get();
  const int64_t x0_step = gather_copy ? d : 0;
  const GemmAct act = gemm_act(c_.activation);
  for (int64_t k = 0; k < K; ++k) {
    const int64_t base = layout_.expert_offset[k];
    for (int64_t l = 0; l < L; ++l) {
      const int64_t in = expert_.dims[l], out = expert_.dims[l + 1];
      const bool last = l + 1 == L;
      ExpertGemm& e = t[std::size_t(l * K + k)];
      e.d.N = out;
      e.d.K = in;
      if (l == 0) {
        e.d.a = GemmOperand{x0, d, x0_rows, 0};
        e.rows_shift = x0_rows ? 1 : 0;
        e.a_step = x0_step;
      } else {
        e.d.a = GemmOperand{f.eact.get() + f.ehid[l - 1], in, nullptr, 0};
        e.a_step = in;
      }
      e.d.b = GemmOperand{W(expert_, base, l), out, nullptr, 0};
      e.d.bias = Bias(expert_, base, l);
      if (last) {
        e.d.c = f.p_expert.get();
        e.d.ldc = C;
        e.c_step = C;
      } else {
        e.d.c = f.eact.get() + f.ehid[l];
        e.d.ldc = out;
        e.c_step = out;
        e.d.act = act;
        if (keep_pre(training)) {
          e.d.pre = f.epre.get() + f.ehid[l];
          e.d.ldpre = out;
          e.pre_step = out;
        }
      }
      if (!training) continue;
      ExpertGemm& w = t[std::size_t((L + l) * K + k)];  // dW_l = input^T delta_l over the expert's entries
      w.count_is_k = 1;
      w.d.M = in;
      w.d.N = out;
      if (l == 0) {
        w.d.a = GemmOperand{x0, d, x0_rows, 1};
        w.rows_shift = x0_rows ? 1 : 0;
        w.a_step = x0_step;
      } else {
        w.d.a = GemmOperand{f.eact.get() + f.ehid[l - 1], in, nullptr, 1};
        w.a_step = in;
      }
      w.d.b = GemmOperand{expert_delta(l), out, nullptr, 0};
      w.b_step = out;
      w.d.c = grad_.get() + base + expert_.weight_offset(l);
      w.d.ldc = out;
      if (l == 0) continue;
      ExpertGemm& h = t[std::size_t((2 * L + l - 1) * K + k)];  // delta_{l-1} = (delta_l W_l^T) * act'(pre_{l-1})
      h.d.N = in;
      h.d.K = out;
      h.d.a = GemmOperand{expert_delta(l), out, nullptr, 0};
      h.a_step = out;
      h.d.b = GemmOperand{W(expert_, base, l), out, nullptr, 1};
      h.d.c = expert_delta(l - 1);
      h.d.ldc = in;
      h.c_step = in;
      h.d.dact = act;
      h.d.dact_pre = (keep_pre(training) ? f.epre.get() : f.eact.get()) + f.ehid[l - 1];
      h.d.ld_dact = in;
      h.dpre_step = in;
    }
  }
  f.tmpl.resize(t.size());
  h2d(f.tmpl.get(), t.data(), t.size() * sizeof(ExpertGemm));
  f.tmpl_host = t;
  f.descs.resize(t.size());
  f.tile_start.resize(std::size_t(f.sets * (K + 1)));
  check(cudaStreamSynchronize(stream_), "moe templates");  // t is freed on return
}

Ctx CudaEngine::row_ctx(Pass& f, int64_t n, bool training) {
  Ctx c;
  c.n = n;
  moe::set_row_modes(c, c_, f.a, training);
  c.inv_temp = inv_temp_.get();
  c.g = f.g.get();
  c.r = f.r.get();
  c.sel = f.sel.get();
  c.gate = f.gate.get();
  c.denom = f.denom.get();
  c.argmax = f.argmax.get();
  c.entry_pos = f.entry_pos.get();
  c.entry_k = f.entry_k.get();
  c.p_expert = f.p_expert.get();
  c.p = f.p.get();
  return c;
}

// Forward of the n rows in f.x up to the expert logits: router, selection, dispatch, experts (the
// caller runs moe_rows::head: expert softmax, mixture and, training, the losses).
void CudaEngine::forward(Pass& f, int64_t n, bool training) {
  const int64_t K = c_.experts, d = c_.input_dim, E = n * f.a;
  const GemmAct act = gemm_act(c_.activation);
  // router: hidden layers then logits
  {
    GemmOperand in{f.x.get(), d, nullptr, 0};
    for (int64_t l = 0; l < router_.layers(); ++l) {
      const bool last = l + 1 == router_.layers();
      const int64_t out = router_.dims[l + 1];
      GemmDesc g;
      g.M = n;
      g.N = out;
      g.K = router_.dims[l];
      g.a = in;
      g.b = GemmOperand{W(router_, layout_.router_offset, l), out, nullptr, 0};
      g.bias = Bias(router_, layout_.router_offset, l);
      if (last) {
        g.c = f.g.get();
        g.ldc = K;
      } else {
        g.c = f.ract.get() + f.rhid[l];
        g.ldc = out;
        g.act = act;
        if (keep_pre(training)) {
          g.pre = f.rpre.get() + f.rhid[l];
          g.ldpre = out;
        }
        in = GemmOperand{g.c, out, nullptr, 0};
      }
      run_gemm(g);
    }
  }
  if (training) phases_.mark("router", stream_);
  const Ctx rc = row_ctx(f, n, training);
  moe_rows::route(rc, stream_);
  moe_rows::Dispatch dp;
  dp.counts = f.counts.get();
  dp.base = f.base.get();
  dp.offset = f.offset.get();
  dp.entry_pos = f.entry_pos.get();
  dp.entry_row = f.entry_row.get();
  dp.entry_k = f.entry_k.get();
  moe_rows::dispatch(f.sel.get(), n, f.a, K, dp, stream_);
  if (!lt_) {
    plan_experts_kernel<<<1, kPlanThreads, 0, stream_>>>(f.tmpl.get(), f.sets, K, f.offset.get(), gemm_tile_of(math_), f.descs.get(),
                                                         f.tile_start.get());
    check(cudaGetLastError(), "moe plan launch");
  } else {
    // cuBLASLt takes its sizes from the host: every expert's count is n when each reads every row;
    // else the dispatch's offsets come back (the step's one wait before the experts) and the
    // entries' rows of x are gathered for them
    if (f.a == K) {
      for (int64_t k = 0; k <= K; ++k) h_offset_.get()[k] = k * n;
    } else {
      check(cudaMemcpyAsync(h_offset_.get(), f.offset.get(), std::size_t(K + 1) * sizeof(int64_t), cudaMemcpyDeviceToHost, stream_),
            "cudaMemcpyAsync D2H");
      moe_rows::gather_rows(f.x.get(), f.entry_row.get(), E, d, f.xg.get(), stream_);
      check(cudaStreamSynchronize(stream_), "moe dispatch");
    }
  }
  if (training) phases_.mark("route_dispatch", stream_);
  for (int64_t l = 0; l < expert_.layers(); ++l) run_set(f, l, expert_rows_tiles(f, l, E, expert_.dims[l + 1]));
  if (training) phases_.mark("experts", stream_);
}

void CudaEngine::run_gemm(const GemmDesc& d0, const GemmDesc* d1, int64_t count) {
  // the distance from GEMM 0 to GEMM 1 of a strided batch, in floats (0 for an operand they share)
  const auto step = [&](const float* p0, const float* p1) -> int64_t { return d1 && p0 ? int64_t(p1 - p0) : 0; };
  const int64_t sa = d1 ? step(d0.a.p, d1->a.p) : 0, sb = d1 ? step(d0.b.p, d1->b.p) : 0, sc = d1 ? step(d0.c, d1->c) : 0;
  const int64_t sbias = d1 ? step(d0.bias, d1->bias) : 0, spre = d1 ? step(d0.pre, d1->pre) : 0;
  const int64_t sdpre = d1 ? step(d0.dact_pre, d1->dact_pre) : 0;
  const bool lt_form = lt_ && !d0.a.rows && !d0.b.rows && !(d0.pre && (d0.beta != 0 || d0.act == GemmAct::None));
  if (lt_form) {
    // ReLU without a saved pre-activation goes into cuBLASLt's epilogue; GELU, a saved
    // pre-activation or a backward through the activation run after it (gemm_epilogue_kernel)
    const bool fused = d0.dact == GemmAct::None && !d0.pre && d0.act != GemmAct::Gelu;
    LtGemm g;
    g.M = d0.M;
    g.N = d0.N;
    g.K = d0.K;
    g.a = d0.a.p;
    g.lda = d0.a.ld;
    g.trans_a = d0.a.trans != 0;
    g.b = d0.b.p;
    g.ldb = d0.b.ld;
    g.trans_b = d0.b.trans != 0;
    g.c = d0.pre ? d0.pre : d0.c;
    g.ldc = d0.pre ? d0.ldpre : d0.ldc;
    g.alpha = d0.alpha;
    g.beta = d0.beta;
    g.bias = d0.bias;
    g.relu = fused && d0.act == GemmAct::Relu;
    g.batch = int32_t(count);
    g.stride_a = sa;
    g.stride_b = sb;
    g.stride_c = d0.pre ? spre : sc;
    g.stride_bias = sbias;
    if (lt_->run(g, math_, stream_)) {
      if (!fused && d0.M > 0 && d0.N > 0) {
        const dim3 grid(std::min<unsigned>(stride_blocks(d0.M * d0.N), 1024u), unsigned(count));
        gemm_epilogue_kernel<<<grid, 256, 0, stream_>>>(d0.M, d0.N, g.c, g.ldc, g.stride_c, d0.c, d0.ldc, sc, d0.act, d0.dact, d0.dact_pre,
                                                        d0.ld_dact, sdpre);
        check(cudaGetLastError(), "moe epilogue launch");
      }
      return;
    }
  }
  // calmoe's kernel, one GEMM at a time (GEMM z's pointers moved by z strides)
  for (int64_t z = 0; z < count; ++z) {
    GemmDesc d = d0;
    d.a.p += z * sa;
    d.b.p += z * sb;
    d.c += z * sc;
    if (d.bias) d.bias += z * sbias;
    if (d.pre) d.pre += z * spre;
    if (d.dact_pre) d.dact_pre += z * sdpre;
    gemm_one(d, math_, stream_, &gemm_ws_);
  }
}

void CudaEngine::run_set(Pass& f, int64_t set, int64_t max_tiles) {
  if (!lt_) {
    launch_set(f, set, max_tiles);
    return;
  }
  const int64_t K = c_.experts;
  const auto at = [&](int64_t k) {
    const int64_t o = h_offset_.get()[k];
    return expert_gemm_at(f.tmpl_host[std::size_t(set * K + k)], o, h_offset_.get()[k + 1] - o);
  };
  if (f.a == K && K > 1) {  // every expert reads every row: one strided batch
    const GemmDesc d0 = at(0), d1 = at(1);
    run_gemm(d0, &d1, K);
    return;
  }
  for (int64_t k = 0; k < K; ++k) {
    if (h_offset_.get()[k + 1] == h_offset_.get()[k]) continue;  // no entries (its dW stays the step's zero)
    run_gemm(at(k));
  }
}

void CudaEngine::stage_batch(const Batch& b) {
  const int64_t n = b.size, d = c_.input_dim;
  train_stager_.reserve(max_batch_, d, true);  // once, on first use
  train_stager_.stage(n, [&](float* hx, int32_t* hy) {
    const int64_t chunk = 256, chunks = (n + chunk - 1) / chunk;
    cpu::parallel_for(chunks, [&](int64_t t, int) {
      for (int64_t i = t * chunk, e = std::min(n, (t + 1) * chunk); i < e; ++i) {
        std::memcpy(hx + i * d, b.x + int64_t(b.rows[i]) * d, std::size_t(d) * sizeof(float));
        hy[i] = b.y[b.rows[i]];
      }
    });
  });
  staged_x_ = b.x;
  staged_y_ = b.y;
  staged_rows_.assign(b.rows, b.rows + n);
}

bool CudaEngine::is_staged(const Batch& b) const {
  return train_stager_.pending() && staged_x_ == b.x && staged_y_ == b.y && int64_t(staged_rows_.size()) == b.size &&
         std::memcmp(staged_rows_.data(), b.rows, std::size_t(b.size) * sizeof(int32_t)) == 0;
}

StepStats CudaEngine::forward_backward(const Batch& b, const ObjectiveConfig& obj, bool robust_active, const Batch* next) {
  const int64_t n = b.size, K = c_.experts, d = c_.input_dim;
  if (n < 1 || n > max_batch_) throw_range("batch: expected 1.." + std::to_string(max_batch_) + " rows, got " + std::to_string(n));
  use_default_device();
  // the staging buffers are rewritten below: nothing queued may still read them (an earlier call
  // may have thrown with copies in flight)
  check(cudaStreamSynchronize(stream_), "moe step");
  Pass& f = train_;
  const bool hard = c_.routing == Routing::Hard;
  const bool single = c_.routing == Routing::TopK && c_.top_k == 1;
  const bool filtered = robust_active && obj.kind == ObjectiveKind::RobustFiltered;
  const bool balanced = obj.balance_alpha > 0;
  phases_.begin(stream_);

  const auto on_device = [&](const Batch& q) { return q.x == data_host_x_ && q.y == data_host_y_ && data_host_x_; };
  if (next && (next->size < 1 || next->size > max_batch_)) next = nullptr;  // checked when it comes
  if (on_device(b)) {
    // the dataset is on the device: the row indices go in, the rows are gathered there
    std::memcpy(h_rows_.get(), b.rows, std::size_t(n) * sizeof(int32_t));
    h2d(batch_rows_.get(), h_rows_.get(), std::size_t(n) * sizeof(int32_t));
    moe_rows::gather_rows(data_x_.get(), batch_rows_.get(), n, d, f.x.get(), stream_);
    moe_rows::gather_rows(data_y_.get(), batch_rows_.get(), n, 1, labels_.get(), stream_);
  } else {
    // the batch's rows of x and labels, gathered on the host into pinned staging and copied in
    // (by the previous step when it was told this batch was next)
    if (!is_staged(b)) {
      train_stager_.discard();  // a prefetch that was not this batch
      stage_batch(b);
    }
    train_stager_.take(f.x.get(), labels_.get(), stream_);
  }
  phases_.mark("input", stream_);
  forward(f, n, true);
  // the next batch's rows, gathered and copied in while this step's kernels run
  if (next && !on_device(*next)) stage_batch(*next);
  const int64_t E = n * f.a;

  Ctx rc = row_ctx(f, n, true);
  rc.filtered = filtered;
  rc.labels = labels_.get();
  rc.entry_loss = entry_loss_.get();
  rc.loss = loss_.get();
  rc.regret = regret_.get();
  rc.disagree = disagree_.get();
  rc.correct = correct_.get();
  moe_rows::head(rc, stream_);  // expert softmax, mixture, losses
  if (balanced) moe_rows::balance(f.r.get(), f.argmax.get(), n, K, obj.balance_alpha, frac_.get(), mean_r_.get(), balance_grad_.get(), stream_);
  phases_.mark("mixture_losses", stream_);

  // the objective's coefficients on the device (no round trip through the host mid-step); the
  // losses (and the balance statistics) come back with the step's end, for the objective's value
  // and the finiteness check
  auto d2h = [&](void* dst, const void* src, std::size_t bytes) {
    check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_), "cudaMemcpyAsync D2H");
  };
  d2h(h_loss_.get(), loss_.get(), std::size_t(n) * sizeof(float));
  d2h(h_correct_.get(), correct_.get(), std::size_t(n) * sizeof(int32_t));
  if (balanced) {
    d2h(h_frac_.get(), frac_.get(), std::size_t(K) * sizeof(double));
    d2h(h_mean_r_.get(), mean_r_.get(), std::size_t(K) * sizeof(double));
  }
  check(cudaMemsetAsync(grad_.get(), 0, std::size_t(P_) * sizeof(float), stream_), "cudaMemsetAsync grad");
  objective_.queue(obj, robust_active, hard || single, loss_.get(), regret_.get(), disagree_.get(), n, coef_.get(), stream_);
  phases_.mark("objective", stream_);

  // per-row backward: expert-logit gradients (per entry) and router-logit gradients
  rc.coef = coef_.get();
  rc.dz = dz_.get();
  rc.dr = dr_.get();
  rc.dg = dg_.get();
  rc.gbuf = gbuf_.get();
  rc.balance = balanced ? balance_grad_.get() : nullptr;
  moe_rows::backward(rc, stream_);
  phases_.mark("row_gradients", stream_);
  // experts backward: per layer from the last, grouped GEMMs over every expert's entries
  {
    const int64_t L = expert_.layers();
    float* gexp = grad_.get() + layout_.expert_offset[0];
    for (int64_t l = L - 1; l >= 0; --l) {
      const int64_t in = expert_.dims[l], out = expert_.dims[l + 1];
      run_set(f, L + l, K * gemm_tiles(in, out, gemm_tile_of(math_)));
      moe_rows::column_sums(expert_delta(l), out, out, f.offset.get(), 0, K, gexp + expert_.bias_offset(l), layout_.expert_size, stream_);
      if (l == 0) break;
      run_set(f, 2 * L + l - 1, expert_rows_tiles(f, 2 * L + l - 1, E, in));
    }
  }
  phases_.mark("experts_backward", stream_);
  // router backward (single GEMMs over the batch's rows)
  {
    const int64_t L = router_.layers();
    const GemmAct act = gemm_act(c_.activation);
    float* grt = grad_.get() + layout_.router_offset;
    for (int64_t l = L - 1; l >= 0; --l) {
      const int64_t in = router_.dims[l], out = router_.dims[l + 1];
      float* delta = router_delta(l);
      GemmDesc g;
      g.M = in;
      g.N = out;
      g.K = n;
      g.a = l == 0 ? GemmOperand{f.x.get(), d, nullptr, 1} : GemmOperand{f.ract.get() + f.rhid[l - 1], in, nullptr, 1};
      g.b = GemmOperand{delta, out, nullptr, 0};
      g.c = grt + router_.weight_offset(l);
      g.ldc = out;
      run_gemm(g);
      moe_rows::column_sums(delta, out, out, nullptr, n, 1, grt + router_.bias_offset(l), 0, stream_);
      if (l == 0) break;
      GemmDesc h;
      h.M = n;
      h.N = in;
      h.K = out;
      h.a = GemmOperand{delta, out, nullptr, 0};
      h.b = GemmOperand{W(router_, layout_.router_offset, l), out, nullptr, 1};
      h.c = router_delta(l - 1);
      h.ldc = in;
      h.dact = act;
      h.dact_pre = (keep_pre(true) ? f.rpre.get() : f.ract.get()) + f.rhid[l - 1];
      h.ld_dact = in;
      run_gemm(h);
    }
  }

  phases_.mark("router_backward", stream_);
  check(cudaStreamSynchronize(stream_), "moe step");  // the losses and the objective's sums are in
  const float* loss = h_loss_.get();
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(loss[i])) throw_range("loss: not finite at row " + std::to_string(b.rows[i]) + " of the batch");
  }
  const moe::ObjectiveResult objr = objective_.result(obj, robust_active, loss, n);
  double balance = 0;
  if (balanced) {
    for (int64_t k = 0; k < K; ++k) balance += obj.balance_alpha * double(K) * h_frac_.get()[k] * h_mean_r_.get()[k];
  }
  StepStats st;
  double loss_sum = 0;
  int64_t hits = 0;
  for (int64_t i = 0; i < n; ++i) {
    loss_sum += loss[i];
    hits += h_correct_.get()[i];
  }
  st.mean_loss = loss_sum / double(n);
  st.objective = objr.value + balance;
  st.accuracy = double(hits) / double(n);
  st.filtered = objr.filtered;
  return st;
}

// Copies the dataset to the device when it takes at most half of the free memory; otherwise (or
// if the allocation fails) batches keep going through host staging.
void CudaEngine::attach_dataset(const float* x, const int32_t* y, int64_t rows) {
  use_default_device();
  check(cudaStreamSynchronize(stream_), "moe dataset");  // nothing queued may read the old copy
  data_host_x_ = nullptr;
  data_host_y_ = nullptr;
  if (!x || !y || rows < 1) return;
  const int64_t d = c_.input_dim;
  const double bytes = double(rows) * double(d + 1) * 4.0;
  std::size_t free_b = 0, total_b = 0;
  if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess || bytes > 0.5 * double(free_b)) return;
  try {
    data_x_.resize(std::size_t(rows * d));
    data_y_.resize(std::size_t(rows));
  } catch (const std::exception&) {
    cudaGetLastError();  // a failed allocation is not sticky: staging it is
    return;
  }
  check(cudaMemcpyAsync(data_x_.get(), x, std::size_t(rows * d) * sizeof(float), cudaMemcpyHostToDevice, stream_), "cudaMemcpyAsync H2D");
  check(cudaMemcpyAsync(data_y_.get(), y, std::size_t(rows) * sizeof(int32_t), cudaMemcpyHostToDevice, stream_), "cudaMemcpyAsync H2D");
  check(cudaStreamSynchronize(stream_), "moe dataset");
  data_host_x_ = x;
  data_host_y_ = y;
}

const float* CudaEngine::gradient() {
  use_default_device();
  grad_host_.resize(std::size_t(P_));
  check(cudaMemcpyAsync(grad_host_.data(), grad_.get(), std::size_t(P_) * sizeof(float), cudaMemcpyDeviceToHost, stream_), "cudaMemcpyAsync D2H");
  check(cudaStreamSynchronize(stream_), "moe backward");
  return grad_host_.data();
}

double CudaEngine::update(const OptimizerConfig& o, double lr) {
  use_default_device();
  const int64_t P = P_;
  norm_partial_kernel<<<unsigned(norm_blocks_), kNormThreads, 0, stream_>>>(grad_.get(), P, norm_per_block_, norm_partial_.get());
  check(cudaGetLastError(), "moe norm launch");
  norm_final_kernel<<<1, kNormThreads, 0, stream_>>>(norm_partial_.get(), norm_blocks_, o.clip_norm, norm_.get(), scale_.get());
  check(cudaGetLastError(), "moe norm launch");
  if (!have_m_) {
    m_.resize(std::size_t(P));
    check(cudaMemsetAsync(m_.get(), 0, std::size_t(P) * sizeof(float), stream_), "cudaMemsetAsync");
    have_m_ = true;
  }
  if (o.kind == OptimizerKind::AdamW && !have_v_) {
    v_.resize(std::size_t(P));
    check(cudaMemsetAsync(v_.get(), 0, std::size_t(P) * sizeof(float), stream_), "cudaMemsetAsync");
    have_v_ = true;
  }
  ++steps_;  // taken back below if the norm is not finite (the CPU engine counts finite-norm steps)
  const opt::Hyper h = opt::hyper(o, lr, steps_, 1.0f);  // grad_scale comes from the device
  check(cudaMemsetAsync(bad_.get(), 0, sizeof(int32_t), stream_), "cudaMemsetAsync");
  update_kernel<<<stride_blocks(P), 256, 0, stream_>>>(h, norm_.get(), scale_.get(), params_.get(), grad_.get(), m_.get(),
                                                       o.kind == OptimizerKind::AdamW ? v_.get() : nullptr, next_.get(), P, steps_ == 1,
                                                       bad_.get());
  check(cudaGetLastError(), "moe update launch");
  commit_kernel<<<stride_blocks(P), 256, 0, stream_>>>(norm_.get(), bad_.get(), next_.get(), params_.get(), P);
  check(cudaGetLastError(), "moe update launch");
  check(cudaMemcpyAsync(h_norm_.get(), norm_.get(), sizeof(double), cudaMemcpyDeviceToHost, stream_), "cudaMemcpyAsync D2H");
  check(cudaMemcpyAsync(h_bad_.get(), bad_.get(), sizeof(int32_t), cudaMemcpyDeviceToHost, stream_), "cudaMemcpyAsync D2H");
  phases_.mark("update", stream_);
  check(cudaStreamSynchronize(stream_), "moe update");
  phases_.report();
  const double norm = h_norm_.get()[0];
  if (!std::isfinite(norm)) {
    --steps_;
    return norm;
  }
  if (h_bad_.get()[0] != 0) return std::numeric_limits<double>::infinity();
  return norm;
}

void CudaEngine::predict(const float* x, int64_t rows, const PredictOutputs& out) {
  use_default_device();
  const int64_t K = c_.experts, C = c_.classes, d = c_.input_dim;
  const int64_t a = moe_active_experts(c_, false);
  // chunks of about 64K entries (rows x active experts): big GEMMs, bounded workspaces
  const int64_t cap = std::clamp<int64_t>(65536 / a, 256, 16384);
  const int64_t chunk = std::max<int64_t>(1, std::min(rows, cap));
  if (infer_.rows < chunk) size_pass(infer_, chunk, a, false);
  if (out.expert_probs) expert_probs_.resize(std::size_t(infer_.rows * a * C));
  Pass& f = infer_;
  auto d2h = [&](void* dst, const void* src, std::size_t bytes) {
    check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_), "cudaMemcpyAsync D2H");
  };
  // chunk i + 1 is copied into pinned staging and on to the device while chunk i runs
  predict_stager_.discard();  // an earlier call may have thrown with a chunk staged
  predict_stager_.reserve(chunk, d, false);
  auto stage = [&](int64_t r0) {
    const int64_t n = std::min(chunk, rows - r0);
    predict_stager_.stage(n, [&](float* hx, int32_t*) {
      const int64_t part = 256, parts = (n + part - 1) / part;
      cpu::parallel_for(parts, [&](int64_t t, int) {
        const int64_t i = t * part, e = std::min(n, i + part);
        std::memcpy(hx + i * d, x + (r0 + i) * d, std::size_t((e - i) * d) * sizeof(float));
      });
    });
  };
  stage(0);
  for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
    const int64_t n = std::min(chunk, rows - r0);
    predict_stager_.take(f.x.get(), nullptr, stream_);
    forward(f, n, false);
    moe_rows::head(row_ctx(f, n, false), stream_);
    if (r0 + chunk < rows) stage(r0 + chunk);
    d2h(out.probs + r0 * C, f.p.get(), std::size_t(n * C) * sizeof(float));
    if (out.routing) d2h(out.routing + r0 * K, f.r.get(), std::size_t(n * K) * sizeof(float));
    if (out.selected) d2h(out.selected + r0 * a, f.sel.get(), std::size_t(n * a) * sizeof(int32_t));
    if (out.gates) d2h(out.gates + r0 * a, f.gate.get(), std::size_t(n * a) * sizeof(float));
    if (out.expert_probs) {
      moe_rows::gather_rows(f.p_expert.get(), f.entry_pos.get(), n * a, C, expert_probs_.get(), stream_);
      d2h(out.expert_probs + r0 * a * C, expert_probs_.get(), std::size_t(n * a * C) * sizeof(float));
    }
    check(cudaStreamSynchronize(stream_), "moe predict");
  }
}

void CudaEngine::sync_to_host(float* host) {
  use_default_device();
  check(cudaMemcpyAsync(host, params_.get(), std::size_t(P_) * sizeof(float), cudaMemcpyDeviceToHost, stream_), "cudaMemcpyAsync D2H");
  check(cudaStreamSynchronize(stream_), "moe sync");
}

// Checkpoints: the moments copied through stream_ (a non-blocking stream: plain cudaMemcpy would
// not wait for it); the same layout and step count as the CPU engine's.
OptimizerState CudaEngine::optimizer_state() {
  use_default_device();
  OptimizerState s;
  s.steps = steps_;
  if (have_m_) s.m.resize(std::size_t(P_));
  if (have_v_) s.v.resize(std::size_t(P_));
  if (have_m_) check(cudaMemcpyAsync(s.m.data(), m_.get(), std::size_t(P_) * sizeof(float), cudaMemcpyDeviceToHost, stream_), "cudaMemcpyAsync D2H");
  if (have_v_) check(cudaMemcpyAsync(s.v.data(), v_.get(), std::size_t(P_) * sizeof(float), cudaMemcpyDeviceToHost, stream_), "cudaMemcpyAsync D2H");
  check(cudaStreamSynchronize(stream_), "moe optimizer state");
  return s;
}

void CudaEngine::set_optimizer_state(const OptimizerState& s) {
  if ((!s.m.empty() && int64_t(s.m.size()) != P_) || (!s.v.empty() && int64_t(s.v.size()) != P_))
    throw_range("optimizer state: expected " + std::to_string(P_) + " values per moment");
  use_default_device();
  check(cudaStreamSynchronize(stream_), "moe optimizer state");
  have_m_ = !s.m.empty();
  have_v_ = !s.v.empty();
  if (have_m_) {
    m_.resize(std::size_t(P_));
    check(cudaMemcpyAsync(m_.get(), s.m.data(), std::size_t(P_) * sizeof(float), cudaMemcpyHostToDevice, stream_), "cudaMemcpyAsync H2D");
  }
  if (have_v_) {
    v_.resize(std::size_t(P_));
    check(cudaMemcpyAsync(v_.get(), s.v.data(), std::size_t(P_) * sizeof(float), cudaMemcpyHostToDevice, stream_), "cudaMemcpyAsync H2D");
  }
  check(cudaStreamSynchronize(stream_), "moe optimizer state");
  steps_ = s.steps;
}

}  // namespace

std::unique_ptr<moe::Engine> make_moe_engine(const MoEConfig& c, float* params, const float* temps, int64_t max_batch) {
  return std::make_unique<CudaEngine>(c, params, temps, max_batch);
}

}  // namespace calmoe::cuda
