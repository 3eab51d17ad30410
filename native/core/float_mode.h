// The floating-point mode of host threads: flush-to-zero (results that would be subnormal become
// 0) and denormals-are-zero (subnormal inputs read as 0). x86 cores take a microcode assist, up to
// ~100x slower, on every subnormal operand or result; AdamW's moments of parameters whose gradient
// is zero (always-blank pixels, dead ReLU units, unused experts) decay geometrically into that
// range within a few epochs, which halved training throughput. Training therefore runs with both
// flags set; calls on the caller's own thread keep (and get back) the caller's mode.
//
// Why the math allows it: a flushed value is below 2^-126 ~ 1.2e-38 in magnitude. Every place
// it can reach is either far below one ulp of the other terms (a parameter update, a softmax sum
// that includes its max term = 1) or is clamped first (log max(p, 1e-12)), so only values whose
// effect is already lost to rounding change. IEEE results are kept where a caller asks for them
// (CALMOE_DENORMALS=keep or set_flush_denormals(false)).
#pragma once
#include <cstdint>

namespace calmoe {

// The flush/denormal bits of the calling thread's control register (MXCSR FTZ|DAZ on x86-64,
// FPCR.FZ on AArch64; 0 elsewhere, where the mode cannot be changed).
uint32_t denormal_mode();
void set_denormal_mode(uint32_t bits);
// The bits that flush subnormals on this architecture (0 where it has none).
uint32_t flush_denormal_bits();

// Sets `bits` for the current scope and restores the previous mode on exit.
class ScopedDenormalMode {
 public:
  explicit ScopedDenormalMode(uint32_t bits) : saved_(denormal_mode()) {
    if (bits != saved_) set_denormal_mode(bits);
  }
  ~ScopedDenormalMode() {
    if (denormal_mode() != saved_) set_denormal_mode(saved_);
  }
  ScopedDenormalMode(const ScopedDenormalMode&) = delete;
  ScopedDenormalMode& operator=(const ScopedDenormalMode&) = delete;

 private:
  uint32_t saved_;
};

}  // namespace calmoe
