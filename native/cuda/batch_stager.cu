// Double-buffered input staging (see batch_stager.cuh).
#include "cuda/batch_stager.cuh"

#include <string>

namespace calmoe::cuda {

BatchStager::~BatchStager() {
  if (copy_) {
    cudaStreamSynchronize(copy_);  // no copy may outlive the buffers
    cudaStreamDestroy(copy_);
  }
  for (cudaEvent_t e : {landed_[0], landed_[1], taken_})
    if (e) cudaEventDestroy(e);
}

void BatchStager::reserve(int64_t rows, int64_t width, bool labels) {
  if (!copy_) {
    check(cudaStreamCreateWithFlags(&copy_, cudaStreamNonBlocking), "cudaStreamCreate");
    for (cudaEvent_t* e : {&landed_[0], &landed_[1], &taken_}) check(cudaEventCreateWithFlags(e, cudaEventDisableTiming), "cudaEventCreate");
  }
  if (rows <= cap_rows_ && width == width_ && labels == labels_) return;
  if (pending_) throw_runtime("BatchStager::reserve with a batch staged");
  check(cudaStreamSynchronize(copy_), "staging");  // the buffers below may be replaced: no copy may
  if (taken_recorded_) check(cudaEventSynchronize(taken_), "staging");  // still use them
  const std::size_t n = std::size_t(rows * width);
  for (int s = 0; s < 2; ++s) {
    hx_[s].resize(n);
    if (labels) hy_[s].resize(std::size_t(rows));
  }
  dx_.resize(n);
  if (labels) dy_.resize(std::size_t(rows));
  cap_rows_ = rows;
  width_ = width;
  labels_ = labels;
}

int BatchStager::begin_stage(int64_t rows) {
  if (pending_) throw_runtime("BatchStager::stage: the previous batch was not taken");
  if (rows < 1 || rows > cap_rows_) throw_runtime("BatchStager::stage: " + std::to_string(rows) + " rows, room for " + std::to_string(cap_rows_));
  const int s = 1 - slot_;
  if (landed_recorded_[s]) check(cudaEventSynchronize(landed_[s]), "staging");  // its last copy has read it
  rows_ = rows;
  return s;
}

void BatchStager::end_stage(int s) {
  if (taken_recorded_) check(cudaStreamWaitEvent(copy_, taken_, 0), "cudaStreamWaitEvent");  // the landing buffer is free
  check(cudaMemcpyAsync(dx_.get(), hx_[s].get(), std::size_t(rows_ * width_) * sizeof(float), cudaMemcpyHostToDevice, copy_), "cudaMemcpyAsync H2D");
  if (labels_) check(cudaMemcpyAsync(dy_.get(), hy_[s].get(), std::size_t(rows_) * sizeof(int32_t), cudaMemcpyHostToDevice, copy_), "cudaMemcpyAsync H2D");
  check(cudaEventRecord(landed_[s], copy_), "cudaEventRecord");
  landed_recorded_[s] = true;
  slot_ = s;
  pending_ = true;
}

void BatchStager::take(float* x, int32_t* y, cudaStream_t compute) {
  if (!pending_) throw_runtime("BatchStager::take: nothing staged");
  check(cudaStreamWaitEvent(compute, landed_[slot_], 0), "cudaStreamWaitEvent");
  check(cudaMemcpyAsync(x, dx_.get(), std::size_t(rows_ * width_) * sizeof(float), cudaMemcpyDeviceToDevice, compute), "cudaMemcpyAsync D2D");
  if (labels_ && y) check(cudaMemcpyAsync(y, dy_.get(), std::size_t(rows_) * sizeof(int32_t), cudaMemcpyDeviceToDevice, compute), "cudaMemcpyAsync D2D");
  check(cudaEventRecord(taken_, compute), "cudaEventRecord");
  taken_recorded_ = true;
  pending_ = false;
}

}  // namespace calmoe::cuda
