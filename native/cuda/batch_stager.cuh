// Double-buffered input staging for the CUDA MoE engine: a batch's rows (and labels) are written
// on the host into page-locked memory and copied to the device on a copy stream while the compute
// stream still works on the previous batch; take() then queues a device-to-device copy into the
// pass's input buffers (one landing buffer: its copy waits until the previous batch was taken).
//
// Ordering, all through events: a pinned slot is rewritten only after its last copy finished
// (landed_[slot]); the landing buffer is overwritten only after the compute stream copied the
// previous batch out of it (taken_); the compute stream reads a batch only after it landed.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/runtime.cuh"

namespace calmoe::cuda {

class BatchStager {
 public:
  BatchStager() = default;
  ~BatchStager();
  BatchStager(const BatchStager&) = delete;
  BatchStager& operator=(const BatchStager&) = delete;

  // Room for batches of up to `rows` rows of `width` floats (+ a label each when `labels`); the
  // stream and events are created on first use.
  void reserve(int64_t rows, int64_t width, bool labels);

  // Writes a batch of `rows` rows: fill(x, y) on the host into a free pinned slot (x: rows x width
  // floats, y: rows labels or null), then queues its copy to the device. The previous batch must
  // have been taken.
  template <class Fill>
  void stage(int64_t rows, Fill&& fill) {
    const int s = begin_stage(rows);
    fill(hx_[s].get(), labels_ ? hy_[s].get() : nullptr);
    end_stage(s);
  }

  bool pending() const { return pending_; }
  // Drops the staged batch without reading it (its copy still completes in order on the copy stream).
  void discard() { pending_ = false; }
  int64_t pending_rows() const { return rows_; }

  // Queues on `compute`: wait for the staged batch, copy it to x (and y when labels). The stager
  // is then free to stage the next batch.
  void take(float* x, int32_t* y, cudaStream_t compute);

 private:
  int begin_stage(int64_t rows);
  void end_stage(int slot);

  cudaStream_t copy_ = nullptr;
  cudaEvent_t landed_[2] = {nullptr, nullptr}, taken_ = nullptr;
  bool landed_recorded_[2] = {false, false}, taken_recorded_ = false;
  Pinned<float> hx_[2];
  Pinned<int32_t> hy_[2];
  DeviceBuffer<float> dx_;
  DeviceBuffer<int32_t> dy_;
  int64_t cap_rows_ = 0, width_ = 0, rows_ = 0;
  bool labels_ = false, pending_ = false;
  int slot_ = 1;  // the slot of the last staged batch
};

}  // namespace calmoe::cuda
