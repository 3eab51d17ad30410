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
#include <string>
#include <vector>

#include "calmoe/error.h"
#include "core/moe_engine.h"
#include "core/moe_math.h"
#include "core/moe_row_bodies.h"
#include "core/objective.h"
#include "core/optimizer.h"
#include "cpu/thread_pool.h"
#include "cuda/batch_stager.cuh"
#include "cuda/gemm.cuh"
#include "cuda/moe_rows.cuh"
#include "cuda/objective.cuh"
#include "cuda/mma_tf32.cuh"
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
// pre += o pre_step, dact_pre += o dpre_step; the count is K (count_is_k: dW) or M. padded: a.p and
// b.p move by the expert's first column in a layout whose expert ranges start on multiples of 4
// (padded_offsets), so that k-contiguous rows of entries stay 16-byte aligned.
struct ExpertGemm {
  GemmDesc d;
  int64_t a_step = 0, b_step = 0, c_step = 0, pre_step = 0, dpre_step = 0;
  int32_t rows_shift = 0, count_is_k = 0, padded = 0, reserved = 0;  // padded: B's entries in the padded layout (x^T's columns)
  GemmTile tile;  // the shape its set's grouped launch runs (gemm_tile of the math and the set's form)
};

// The first column of expert k when every expert's range of entries is padded to a multiple of 4
// (the k-contiguous operands of the wgmma path): sum over j < k of ceil4(count_j).
__device__ __forceinline__ int64_t padded_offset(const int64_t* offset, int64_t k) {
  int64_t p = 0;
  for (int64_t j = 0; j < k; ++j) p += (offset[j + 1] - offset[j] + 3) / 4 * 4;
  return p;
}

constexpr int kPlanThreads = 1024;

// descs[s K + k] = template (s, k) moved to expert k's entries; tile_start[s (K + 1) + k]: the
// prefix of tiles over the experts of set s. One block.
// shift[k] (K entries, when given) = padded_offset(k) - offset[k]: where expert k's entries move to
// in the padded layout.
__global__ void __launch_bounds__(kPlanThreads) plan_experts_kernel(const ExpertGemm* tmpl, int64_t sets, int64_t K, const int64_t* offset,
                                                                    GemmDesc* descs, int64_t* tile_start, int64_t* shift) {
  for (int64_t idx = threadIdx.x; idx < sets * K; idx += blockDim.x) {
    const int64_t k = idx % K;
    const ExpertGemm& t = tmpl[idx];
    const int64_t o = offset[k], count = offset[k + 1] - o, po = t.padded ? padded_offset(offset, k) : o;
    GemmDesc d = t.d;
    if (t.count_is_k) d.K = count;
    else d.M = count;
    d.a.p += o * t.a_step;
    if (t.rows_shift) d.a.rows += o;
    d.b.p += po * t.b_step;
    d.c += o * t.c_step;
    if (d.pre) d.pre += o * t.pre_step;
    if (d.dact_pre) d.dact_pre += o * t.dpre_step;
    descs[idx] = d;
  }
  __syncthreads();
  for (int64_t s = threadIdx.x; s < sets; s += blockDim.x) {
    int64_t tiles = 0;
    for (int64_t k = 0; k < K; ++k) {
      tile_start[s * (K + 1) + k] = tiles;
      tiles += gemm_tiles(descs[s * K + k].M, descs[s * K + k].N, tmpl[s * K + k].tile);
    }
    tile_start[s * (K + 1) + K] = tiles;
  }
  if (shift) {
    for (int64_t k = threadIdx.x; k < K; k += blockDim.x) shift[k] = padded_offset(offset, k) - offset[k];
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

// dst_z (cols x rows, ld_dst) = src_z^T for z = blockIdx.z: src_z is rows x cols (ld_src) with row r
// at row `rows_idx[r]` when given; src_z, dst_z are z stride_src / stride_dst floats on; row r goes
// to column r + col_shift[row_group[r]] when given (the padded layout of plan_experts_kernel);
// round_tf32: the values are written rounded to TF32 as the TF32 GEMM kernels round them (for
// operands marked GemmOperand::tf32; sm_80+). Through 32 x 32 shared tiles: coalesced reads and
// writes.
__global__ void __launch_bounds__(256) transpose_kernel(const float* __restrict__ src, const int32_t* __restrict__ rows_idx, int64_t ld_src,
                                                        float* __restrict__ dst, int64_t ld_dst, int64_t rows, int64_t cols, int64_t stride_src,
                                                        int64_t stride_dst, const int32_t* __restrict__ row_group, const int64_t* __restrict__ col_shift,
                                                        bool round_tf32) {
  __shared__ float tile[32][33];  // 33: the column reads hit 32 banks
  const float* s = src + int64_t(blockIdx.z) * stride_src;
  float* o = dst + int64_t(blockIdx.z) * stride_dst;
  const int64_t r0 = int64_t(blockIdx.y) * 32, c0 = int64_t(blockIdx.x) * 32;
  for (int i = int(threadIdx.y); i < 32; i += 8) {
    const int64_t r = r0 + i, c = c0 + threadIdx.x;
    if (r < rows && c < cols) tile[i][threadIdx.x] = s[(rows_idx ? int64_t(rows_idx[r]) : r) * ld_src + c];
  }
  __syncthreads();
  for (int i = int(threadIdx.y); i < 32; i += 8) {
    const int64_t c = c0 + i, r = r0 + threadIdx.x;
    if (r < rows && c < cols) {
      float v = tile[threadIdx.x][i];
#if defined(CALMOE_CUDA_EMU) || (defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800)
      if (round_tf32) v = __uint_as_float(mma::tf32_bits(v));
#endif
      o[c * ld_dst + r + (row_group ? col_shift[row_group[r]] : 0)] = v;
    }
  }
}

// p[0 .. n) rounded to TF32 in place, as the TF32 GEMM kernels round (sm_80+).
__global__ void round_tf32_kernel(float* p, int64_t n) {
#if defined(CALMOE_CUDA_EMU) || (defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800)
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) p[i] = __uint_as_float(mma::tf32_bits(p[i]));
#else
  (void)p;
  (void)n;
#endif
}

// Queues transpose_kernel over `count` matrices, rounding to TF32 (the wgmma path's operands).
void transpose_tf32(const float* src, const int32_t* rows_idx, int64_t ld_src, float* dst, int64_t ld_dst, int64_t rows, int64_t cols, int64_t count,
                    int64_t stride_src, int64_t stride_dst, cudaStream_t stream, const int32_t* row_group = nullptr, const int64_t* col_shift = nullptr) {
  if (rows < 1 || cols < 1 || count < 1) return;
  const dim3 grid(unsigned((cols + 31) / 32), unsigned((rows + 31) / 32), unsigned(count));
  transpose_kernel<<<grid, dim3(32, 8), 0, stream>>>(src, rows_idx, ld_src, dst, ld_dst, rows, cols, stride_src, stride_dst, row_group, col_shift, true);
  check(cudaGetLastError(), "moe transpose launch");
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
    // wt_forward_ training: the first layer's dW reads x transposed (d x xt_ld: k-contiguous, as
    // the wgmma kernel reads B; its delta is read as it is, through registers)
    // (top-k: expert ranges padded to multiples of 4 columns, shift: plan_experts_kernel's)
    DeviceBuffer<float> xt;
    // wt_forward_ training, experts of two layers or more: the dW of a deeper layer l reads its
    // delta transposed (out_l x t_ld, the padded layout), one layer at a time
    DeviceBuffer<float> dt;
    DeviceBuffer<int64_t> shift;
    int64_t xt_ld = 0, t_ld = 0;
    DeviceBuffer<ExpertGemm> tmpl;         // sets x K
    DeviceBuffer<GemmDesc> descs;          // sets x K
    DeviceBuffer<int64_t> tile_start;      // sets x (K + 1)
    std::vector<int32_t> forms;            // per set: the operand form of its GEMMs (gemm_form_of)
    std::vector<GemmTile> tiles;           // per set: the tile its launch runs (gemm_tile)
    std::vector<int64_t> rhid, ehid;
  };

  const float* W(const Mlp& m, int64_t base, int64_t l) const { return params_.get() + base + m.weight_offset(l); }
  // Expert k's layer l weights transposed (wt_forward_ only): out rows of wt_ld(l) = ceil4(in)
  // floats (16-byte aligned rows), the experts' matrices of a layer one after another.
  int64_t wt_ld(int64_t l) const { return (expert_.dims[l] + 3) / 4 * 4; }
  int64_t wt_matrix(int64_t l) const { return expert_.dims[l + 1] * wt_ld(l); }
  int64_t wt_offset(int64_t k, int64_t l) const {
    int64_t o = 0;
    for (int64_t i = 0; i < l; ++i) o += c_.experts * wt_matrix(i);
    return o + k * wt_matrix(l);
  }
  const float* WT(int64_t k, int64_t l) const { return wt_.get() + wt_offset(k, l); }
  void transpose_expert_weights();
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
    const GemmTile t = f.tiles[std::size_t(set)];
    return ((entries + t.m - 1) / t.m + c_.experts) * ((N + t.n - 1) / t.n);
  }
  void h2d(void* dst, const void* src, std::size_t bytes) {
    check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_), "cudaMemcpyAsync H2D");
  }
  void launch_set(Pass& f, int64_t set, int64_t max_tiles) {
    const int64_t K = c_.experts;
    gemm_grouped(f.descs.get() + set * K, f.tile_start.get() + set * (K + 1), int(K), max_tiles, math_, stream_, f.forms[std::size_t(set)],
                 f.tiles[std::size_t(set)]);
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
  // With the wgmma TF32 kernel, which reads only k-contiguous operands (gemm.cuh, form 2), the
  // experts' forward reads a transposed copy of their weights, refreshed whenever params_ change.
  bool wt_forward_ = false;
  DeviceBuffer<float> wt_;
  GemmWorkspace gemm_ws_;  // split-K of the single GEMMs (the router's; gemm.cuh)
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
  const int64_t B = max_batch_, a = moe_active_experts(c, true), E = B * a;
  if (E >= (int64_t(1) << 31)) throw_range("batch: " + std::to_string(B) + " rows x " + std::to_string(a) + " active experts exceed the CUDA engine's 2^31 entries");

  use_default_device();
  check(cudaStreamCreateWithFlags(&stream_owner_.s, cudaStreamNonBlocking), "cudaStreamCreate");
  stream_ = stream_owner_.s;
  // every copy and fill goes through stream_ (a non-blocking stream does not wait for the legacy
  // default stream that DeviceBuffer::upload/zero use); the constructor ends with a sync
  params_.resize(std::size_t(P_));
  h2d(params_.get(), params, std::size_t(P_) * sizeof(float));
  wt_forward_ = math_ == GemmMath::Tf32 && gemm_tf32_kernel_is_wgmma(gemm_tf32_kernel());
  if (wt_forward_) {
    wt_.resize(std::size_t(wt_offset(0, expert_.layers())));
    transpose_expert_weights();
  }
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
  const int32_t* x_rows = every_row ? nullptr : f.entry_row.get();
  // the transposed operand of the first layer's dW (wt_forward_): x^T once for every expert when
  // each reads every row, else the entries' rows of x, transposed, in entry order
  const bool dw0_t = training && wt_forward_;
  // (row lengths multiples of 4 and, per expert, room for its padding: 16-byte aligned rows)
  f.t_ld = (E + 3 * K + 3) / 4 * 4;
  f.xt_ld = every_row ? (rows + 3) / 4 * 4 : f.t_ld;
  f.xt.resize(dw0_t ? std::size_t(d * f.xt_ld) : 0);
  int64_t widest_deeper = 0;  // the widest output of a layer past the first
  for (int64_t l = 1; l < expert_.layers(); ++l) widest_deeper = std::max(widest_deeper, expert_.dims[l + 1]);
  f.dt.resize(dw0_t ? std::size_t(widest_deeper * f.t_ld) : 0);
  f.shift.resize(dw0_t ? std::size_t(K) : 0);
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
        e.d.a = GemmOperand{f.x.get(), d, x_rows, 0, wt_forward_ ? 1 : 0};  // rounded by forward()
        e.rows_shift = every_row ? 0 : 1;
      } else {
        e.d.a = GemmOperand{f.eact.get() + f.ehid[l - 1], in, nullptr, 0};
        e.a_step = in;
      }
      e.d.b = wt_forward_ ? GemmOperand{WT(k, l), wt_ld(l), nullptr, 1, 1} : GemmOperand{W(expert_, base, l), out, nullptr, 0};
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
      if (l == 0 && dw0_t) {
        // dW_0^T = delta_0^T x, operand form 3 (wgmma with A from registers): A = delta_0^T read
        // as it is stored (entries x out), B^T = x^T (d x entries, padded), C stored transposed
        w.d.M = out;
        w.d.N = in;
        w.d.a = GemmOperand{expert_delta(0), out, nullptr, 1, 0};
        w.a_step = out;
        w.d.b = GemmOperand{f.xt.get(), f.xt_ld, nullptr, 1, 1};
        w.b_step = every_row ? 0 : 1;
        w.padded = 1;
        w.d.ct = 1;
      } else if (l == 0) {
        w.d.a = GemmOperand{f.x.get(), d, x_rows, 1};
        w.rows_shift = every_row ? 0 : 1;
      } else {
        w.d.a = GemmOperand{f.eact.get() + f.ehid[l - 1], in, nullptr, 1};
        w.a_step = in;
      }
      if (l > 0 && dw0_t) {
        // dW_l = act^T delta_l, operand form 3 (wgmma, A through registers): B^T = delta_l^T,
        // copied in the step into the padded layout (out x t_ld), as x^T is for top-k
        w.d.b = GemmOperand{f.dt.get(), f.t_ld, nullptr, 1, 1};
        w.b_step = 1;
        w.padded = 1;
      } else if (l > 0 || !dw0_t) {
        w.d.b = GemmOperand{expert_delta(l), out, nullptr, 0};
        w.b_step = out;
      }
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
  f.forms.assign(std::size_t(f.sets), kGemmFormAny);
  f.tiles.assign(std::size_t(f.sets), GemmTile{});
  for (int64_t set = 0; set < f.sets; ++set) {  // one form for the set's GEMMs, as built above; its widest N
    const int32_t form = gemm_form_of(t[std::size_t(set * K)].d);
    bool same = true;
    int64_t n_max = 0;
    for (int64_t k = 0; k < K; ++k) {
      same &= gemm_form_of(t[std::size_t(set * K + k)].d) == form;
      n_max = std::max(n_max, t[std::size_t(set * K + k)].d.N);
    }
    f.forms[std::size_t(set)] = same ? form : kGemmFormAny;
    f.tiles[std::size_t(set)] = gemm_tile(math_, f.forms[std::size_t(set)], n_max);
    for (int64_t k = 0; k < K; ++k) t[std::size_t(set * K + k)].tile = f.tiles[std::size_t(set)];
  }
  f.tmpl.resize(t.size());
  h2d(f.tmpl.get(), t.data(), t.size() * sizeof(ExpertGemm));
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
  // wt_forward_: x only enters TF32 GEMMs, so it is rounded once here and marked (the first
  // layer's GEMMs then skip their rounding pass over it)
  if (wt_forward_) {
    round_tf32_kernel<<<stride_blocks(n * d), 256, 0, stream_>>>(f.x.get(), n * d);
    check(cudaGetLastError(), "moe round launch");
  }
  // router: hidden layers then logits
  {
    GemmOperand in{f.x.get(), d, nullptr, 0, wt_forward_ ? 1 : 0};
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
      gemm_one(g, math_, stream_, &gemm_ws_);
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
  plan_experts_kernel<<<1, kPlanThreads, 0, stream_>>>(f.tmpl.get(), f.sets, K, f.offset.get(), f.descs.get(), f.tile_start.get(),
                                                       f.shift.size() > 0 ? f.shift.get() : nullptr);
  check(cudaGetLastError(), "moe plan launch");
  if (training) phases_.mark("route_dispatch", stream_);
  for (int64_t l = 0; l < expert_.layers(); ++l) launch_set(f, l, expert_rows_tiles(f, l, E, expert_.dims[l + 1]));
  if (training) phases_.mark("experts", stream_);
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
      const bool dw0_t = l == 0 && f.xt.size() > 0;  // the first layer's dW as dW^T = delta^T x on wgmma (wt_forward_)
      if (dw0_t) {  // its B^T: x^T shared by every expert when each reads every row; else the entries' rows, padded
        if (f.a == K) transpose_tf32(f.x.get(), nullptr, d, f.xt.get(), f.xt_ld, n, d, 1, 0, 0, stream_);
        else transpose_tf32(f.x.get(), f.entry_row.get(), d, f.xt.get(), f.xt_ld, E, d, 1, 0, 0, stream_, f.entry_k.get(), f.shift.get());
      } else if (f.dt.size() > 0) {  // a deeper layer's dW on wgmma: its B^T = delta_l^T, padded
        transpose_tf32(expert_delta(l), nullptr, out, f.dt.get(), f.t_ld, E, out, 1, 0, 0, stream_, f.entry_k.get(), f.shift.get());
      }
      launch_set(f, L + l, K * (dw0_t ? gemm_tiles(out, in, f.tiles[std::size_t(L + l)]) : gemm_tiles(in, out, f.tiles[std::size_t(L + l)])));
      moe_rows::column_sums(expert_delta(l), out, out, f.offset.get(), 0, K, gexp + expert_.bias_offset(l), layout_.expert_size, stream_);
      if (l == 0) break;
      launch_set(f, 2 * L + l - 1, expert_rows_tiles(f, 2 * L + l - 1, E, in));
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
      gemm_one(g, math_, stream_, &gemm_ws_);
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
      gemm_one(h, math_, stream_, &gemm_ws_);
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
  if (wt_forward_) transpose_expert_weights();
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

void CudaEngine::transpose_expert_weights() {
  const int64_t base = layout_.expert_offset[0];
  for (int64_t l = 0; l < expert_.layers(); ++l) {
    const int64_t in = expert_.dims[l], out = expert_.dims[l + 1], at = base + expert_.weight_offset(l);
    transpose_tf32(params_.get() + at, nullptr, out, wt_.get() + wt_offset(0, l), wt_ld(l), in, out, c_.experts, layout_.expert_size, wt_matrix(l), stream_);
  }
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

}  // namespace

std::unique_ptr<moe::Engine> make_moe_engine(const MoEConfig& c, float* params, const float* temps, int64_t max_batch) {
  return std::make_unique<CudaEngine>(c, params, temps, max_batch);
}

}  // namespace calmoe::cuda
