// The AVX2+FMA build of the per-row MoE loops (see moe_rows.h); selected only when use_avx2().
#include "cpu/moe_rows.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/moe_math.h"

namespace calmoe::cpu::moe_rows {
#if defined(__AVX2__) && defined(__FMA__)
namespace avx2 {
#include "cpu/moe_rows_impl.h"
const Table& table() { return impl::table(); }
}  // namespace avx2
#else
namespace avx2 {
const Table& table() { return baseline::table(); }  // non-x86 builds: never selected
}  // namespace avx2
#endif
}  // namespace calmoe::cpu::moe_rows
