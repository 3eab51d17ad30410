// CUDA backend of the MoE per-row audit: a thread per row with the shared per-row math; inputs
// streamed in chunks of rows, outputs copied back per chunk. Per-row outputs only (no
// reductions): the same bits as the CPU backend.
#include <algorithm>
#include <climits>

#include "core/audit.h"
#include "cuda/runtime.cuh"

namespace calmoe::cuda {
namespace {

using ull = unsigned long long;

constexpr int kThreads = 256;
constexpr int64_t kChunkElements = int64_t(1) << 26;  // floats of expert probabilities per chunk

__global__ void audit_kernel(audit::KernelArgs a, int64_t row0, ull* first_bad) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < a.in.rows; i += int64_t(gridDim.x) * blockDim.x) {
    if (audit::audit_row(a, i).issue != audit::kOk) atomicMin(first_bad, ull(row0 + i));
  }
}

template <class T>
void upload_rows(DeviceBuffer<T>& buf, const T* host, int64_t row0, int64_t n, int64_t width, T** dev) {
  if (!host) { *dev = nullptr; return; }
  buf.upload(host + row0 * width, static_cast<std::size_t>(n * width));
  *dev = buf.get();
}

template <class T>
void download_rows(const DeviceBuffer<T>& buf, T* host, int64_t row0, int64_t n, int64_t width) {
  if (host) buf.download(host + row0 * width, static_cast<std::size_t>(n * width));
}

}  // namespace

int64_t moe_audit_rows(const audit::KernelArgs& a) {
  use_default_device();
  const int64_t K = a.in.slots, C = std::max<int64_t>(1, a.in.classes);
  const int64_t chunk_rows = std::max<int64_t>(1, std::min<int64_t>(a.in.rows, kChunkElements / (K * C)));
  const auto n_of = [&](bool on, int64_t width) { return on ? static_cast<std::size_t>(chunk_rows * width) : std::size_t(0); };
  DeviceBuffer<float> d_r(n_of(true, K)), d_P(n_of(a.in.expert_probs, K * C)), d_p(n_of(a.in.mixture, C));
  DeviceBuffer<int32_t> d_ids(n_of(a.in.expert_ids, K)), d_y(n_of(a.in.labels, 1)), d_top1(n_of(a.out.top1, 1));
  DeviceBuffer<float> d_maxw(n_of(a.out.max_weight, 1)), d_ent(n_of(a.out.entropy, 1)), d_dis(n_of(a.out.disagreement, 1)),
      d_loss(n_of(a.out.loss, 1)), d_reg(n_of(a.out.regret, 1)), d_own(n_of(a.out.own_probs, C));
  DeviceBuffer<ull> d_first_bad(1);
  const ull none = ULLONG_MAX;
  d_first_bad.upload(&none, 1);
  int sms = 1;
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
  for (int64_t row0 = 0; row0 < a.in.rows; row0 += chunk_rows) {
    const int64_t n = std::min(chunk_rows, a.in.rows - row0);
    audit::KernelArgs d = a;
    d.in.rows = n;
    float* r = nullptr;
    upload_rows(d_r, a.in.routing, row0, n, K, &r);
    d.in.routing = r;
    int32_t* ids = nullptr;
    upload_rows(d_ids, a.in.expert_ids, row0, n, K, &ids);
    d.in.expert_ids = ids;
    float* P = nullptr;
    upload_rows(d_P, a.in.expert_probs, row0, n, K * C, &P);
    d.in.expert_probs = P;
    float* p = nullptr;
    upload_rows(d_p, a.in.mixture, row0, n, C, &p);
    d.in.mixture = p;
    int32_t* y = nullptr;
    upload_rows(d_y, a.in.labels, row0, n, 1, &y);
    d.in.labels = y;
    d.out.top1 = a.out.top1 ? d_top1.get() : nullptr;
    d.out.max_weight = a.out.max_weight ? d_maxw.get() : nullptr;
    d.out.entropy = a.out.entropy ? d_ent.get() : nullptr;
    d.out.disagreement = a.out.disagreement ? d_dis.get() : nullptr;
    d.out.loss = a.out.loss ? d_loss.get() : nullptr;
    d.out.regret = a.out.regret ? d_reg.get() : nullptr;
    d.out.own_probs = a.out.own_probs ? d_own.get() : nullptr;
    const int blocks = int(std::min<int64_t>((n + kThreads - 1) / kThreads, int64_t(sms) * 8));
    audit_kernel<<<blocks, kThreads>>>(d, row0, d_first_bad.get());
    check(cudaGetLastError(), "audit kernel launch");
    download_rows(d_top1, a.out.top1, row0, n, 1);
    download_rows(d_maxw, a.out.max_weight, row0, n, 1);
    download_rows(d_ent, a.out.entropy, row0, n, 1);
    download_rows(d_dis, a.out.disagreement, row0, n, 1);
    download_rows(d_loss, a.out.loss, row0, n, 1);
    download_rows(d_reg, a.out.regret, row0, n, 1);
    download_rows(d_own, a.out.own_probs, row0, n, C);
  }
  check(cudaDeviceSynchronize(), "audit kernel");
  ull first_bad = 0;
  d_first_bad.download(&first_bad, 1);
  return first_bad == ULLONG_MAX ? -1 : int64_t(first_bad);
}

}  // namespace calmoe::cuda
