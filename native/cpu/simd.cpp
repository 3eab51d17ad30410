#include "cpu/simd.h"

#include <cstdlib>
#include <cstring>

namespace calmoe::cpu {

bool use_avx2() {
  static const bool enabled = [] {
    const char* env = std::getenv("CALMOE_SIMD");
    if (env && std::strcmp(env, "scalar") == 0) return false;
#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return false;
#endif
  }();
  return enabled;
}

const char* simd_level() { return use_avx2() ? "avx2+fma" : "scalar"; }

}  // namespace calmoe::cpu
