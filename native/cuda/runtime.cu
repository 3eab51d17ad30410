#include <algorithm>
#include <mutex>

#include "core/cuda_probe.h"
#include "cuda/runtime.cuh"

namespace calmoe::cuda {

void throw_cuda(cudaError_t err, const char* what) {
  const bool oom = err == cudaErrorMemoryAllocation;
  throw Error(ErrorKind::Runtime, std::string("CUDA ") + what + " failed: " + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ")",
              oom ? "CALMOE_CUDA_OOM" : "CALMOE_CUDA_ERROR");
}

const Probe& probe() {
  static const Probe p = [] {
    Probe r;
    cudaRuntimeGetVersion(&r.runtime_version);
    cudaDriverGetVersion(&r.driver_version);  // 0 when no driver is installed
    int count = 0;
    const cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess) {
      r.reason = std::string("CUDA runtime: ") + cudaGetErrorString(err);
      cudaGetLastError();  // clear the sticky error
      return r;
    }
    if (count == 0) {
      r.reason = "the CUDA runtime found no GPU";
      return r;
    }
    for (int i = 0; i < count; ++i) {
      cudaDeviceProp prop{};
      if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) continue;
      GpuInfo g;
      g.index = i;
      g.name = prop.name;
      g.total_memory = prop.totalGlobalMem;
      g.cc_major = prop.major;
      g.cc_minor = prop.minor;
      g.multiprocessors = prop.multiProcessorCount;
      r.gpus.push_back(g);
    }
    if (r.gpus.empty()) r.reason = "no GPU answered cudaGetDeviceProperties";
    else if (r.gpus[0].cc_major < 7 || (r.gpus[0].cc_major == 7 && r.gpus[0].cc_minor < 5))
      r.reason = "GPU 0 (" + r.gpus[0].name + ") has compute capability " + std::to_string(r.gpus[0].cc_major) + "." +
                 std::to_string(r.gpus[0].cc_minor) + "; calmoe's kernels need 7.5 or newer";
    return r;
  }();
  return p;
}

void use_default_device() { check(cudaSetDevice(0), "cudaSetDevice"); }

namespace {
// Never destroyed: buffers held by statics may be freed after this file's statics are gone.
// Allocations are rare (engines grow their buffers once), so a mutex is enough.
struct MemoryState {
  std::mutex mu;
  DeviceMemoryStats stats;
};
MemoryState& memory_state() {
  static MemoryState* s = new MemoryState();
  return *s;
}
}  // namespace

void note_device_memory(std::size_t bytes, bool allocated) {
  MemoryState& m = memory_state();
  std::lock_guard<std::mutex> lock(m.mu);
  m.stats.live = allocated ? m.stats.live + bytes : m.stats.live - std::min(bytes, m.stats.live);
  m.stats.peak = std::max(m.stats.peak, m.stats.live);
}

DeviceMemoryStats device_memory_stats() {
  MemoryState& m = memory_state();
  std::lock_guard<std::mutex> lock(m.mu);
  return m.stats;
}

void reset_device_memory_peak() {
  MemoryState& m = memory_state();
  std::lock_guard<std::mutex> lock(m.mu);
  m.stats.peak = m.stats.live;
}

double best_event_seconds(int repeat, const std::function<void()>& launch, const std::function<void()>& prepare) {
  cudaEvent_t t0, t1;
  check(cudaEventCreate(&t0), "cudaEventCreate");
  check(cudaEventCreate(&t1), "cudaEventCreate");
  double best = 1e30;
  try {
    for (int r = 0; r <= repeat; ++r) {  // the first run warms up
      if (prepare) prepare();
      check(cudaEventRecord(t0), "cudaEventRecord");
      launch();
      check(cudaEventRecord(t1), "cudaEventRecord");
      check(cudaEventSynchronize(t1), "cudaEventSynchronize");
      float ms = 0;
      check(cudaEventElapsedTime(&ms, t0, t1), "cudaEventElapsedTime");
      if (r > 0) best = std::min(best, double(ms) / 1e3);
    }
  } catch (...) {
    cudaEventDestroy(t0);
    cudaEventDestroy(t1);
    throw;
  }
  cudaEventDestroy(t0);
  cudaEventDestroy(t1);
  return best;
}

double copy_bandwidth_gbs(std::size_t bytes, int repeat) {
  use_default_device();
  DeviceBuffer<char> a(bytes), b(bytes);
  a.zero(bytes);
  const double t = best_event_seconds(repeat, [&] { check(cudaMemcpy(b.get(), a.get(), bytes, cudaMemcpyDeviceToDevice), "cudaMemcpy D2D"); });
  return 2.0 * double(bytes) / t / 1e9;  // read + write
}

}  // namespace calmoe::cuda
