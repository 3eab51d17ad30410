#include "core/float_mode.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

#include "calmoe/device.h"

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#include <xmmintrin.h>
#define CALMOE_MXCSR 1
#endif

namespace calmoe {
namespace {

#if defined(CALMOE_MXCSR)
constexpr uint32_t kFlushBits = 0x8040u;  // MXCSR bit 15 (FTZ) | bit 6 (DAZ)
#elif defined(__aarch64__) && (defined(__GNUC__) || defined(__clang__))
constexpr uint32_t kFlushBits = 1u << 24;  // FPCR.FZ (flushes both inputs and results)
#else
constexpr uint32_t kFlushBits = 0;
#endif

// -1: follow CALMOE_DENORMALS; 0/1: set by set_flush_denormals
std::atomic<int> g_flush{-1};

}  // namespace

uint32_t flush_denormal_bits() { return kFlushBits; }

uint32_t denormal_mode() {
#if defined(CALMOE_MXCSR)
  return _mm_getcsr() & kFlushBits;
#elif defined(__aarch64__) && (defined(__GNUC__) || defined(__clang__))
  uint64_t fpcr;
  __asm__ __volatile__("mrs %0, fpcr" : "=r"(fpcr));
  return uint32_t(fpcr) & kFlushBits;
#else
  return 0;
#endif
}

void set_denormal_mode(uint32_t bits) {
  bits &= kFlushBits;
#if defined(CALMOE_MXCSR)
  _mm_setcsr((_mm_getcsr() & ~kFlushBits) | bits);
#elif defined(__aarch64__) && (defined(__GNUC__) || defined(__clang__))
  uint64_t fpcr;
  __asm__ __volatile__("mrs %0, fpcr" : "=r"(fpcr));
  fpcr = (fpcr & ~uint64_t(kFlushBits)) | bits;
  __asm__ __volatile__("msr fpcr, %0" : : "r"(fpcr));
#else
  (void)bits;
#endif
}

bool flush_denormals() {
  const int v = g_flush.load(std::memory_order_relaxed);
  if (v >= 0) return v != 0;
  const char* env = std::getenv("CALMOE_DENORMALS");
  return !(env && std::strcmp(env, "keep") == 0);
}

void set_flush_denormals(bool on) { g_flush.store(on ? 1 : 0, std::memory_order_relaxed); }

}  // namespace calmoe
