// Where a CUDA engine step spends its time, for profiling runs: with CALMOE_CUDA_PHASES=1 the
// engine marks the end of each phase with an event on its stream and, once the step has
// synchronised, prints one JSON line to stderr: {"calmoe_cuda_phases":{"input":ms,...},"total_ms":ms}.
// Off (the default) it records nothing. Host code only.
#pragma once
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "cuda/runtime.cuh"

namespace calmoe::cuda {

class PhaseTimer {
 public:
  PhaseTimer() : on_(std::getenv("CALMOE_CUDA_PHASES") && std::strcmp(std::getenv("CALMOE_CUDA_PHASES"), "1") == 0) {}
  ~PhaseTimer() {
    for (cudaEvent_t e : events_) cudaEventDestroy(e);
  }
  PhaseTimer(const PhaseTimer&) = delete;
  PhaseTimer& operator=(const PhaseTimer&) = delete;

  bool on() const { return on_; }
  // The start of a step (drops marks of a step that did not report, e.g. one that threw).
  void begin(cudaStream_t s) {
    if (!on_) return;
    names_.clear();
    used_ = 0;
    record(s);
  }
  void mark(const char* name, cudaStream_t s) {
    if (!on_ || used_ == 0) return;
    names_.push_back(name);
    record(s);
  }
  // After the stream has synchronised past the last mark: the line, then a fresh start.
  void report() {
    if (!on_ || used_ < 2) return;
    std::string line = "{\"calmoe_cuda_phases\":{";
    float total = 0;
    for (std::size_t i = 0; i + 1 < used_; ++i) {
      float ms = 0;
      check(cudaEventElapsedTime(&ms, events_[i], events_[i + 1]), "cudaEventElapsedTime");
      total += ms;
      char item[96];
      std::snprintf(item, sizeof item, "%s\"%s\":%.4f", i ? "," : "", names_[i], ms);
      line += item;
    }
    char tail[64];
    std::snprintf(tail, sizeof tail, "},\"total_ms\":%.4f}\n", total);
    line += tail;
    std::fputs(line.c_str(), stderr);
    used_ = 0;
  }

 private:
  void record(cudaStream_t s) {
    if (used_ == events_.size()) {
      cudaEvent_t e = nullptr;
      check(cudaEventCreate(&e), "cudaEventCreate");
      events_.push_back(e);
    }
    check(cudaEventRecord(events_[used_++], s), "cudaEventRecord");
  }
  bool on_;
  std::vector<cudaEvent_t> events_;
  std::vector<const char*> names_;
  std::size_t used_ = 0;
};

}  // namespace calmoe::cuda
