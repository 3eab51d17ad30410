#include "cpu/calibration_avx2.h"

namespace calmoe::cpu::avx2 {
// Filled in with the vectorised top-label kernel; until then the scalar path runs.
bool calib_supported(const calib::KernelArgs&) { return false; }
int64_t calib_accumulate(const calib::KernelArgs&, int64_t, int64_t, uint64_t*) { return -1; }
}  // namespace calmoe::cpu::avx2
