#include "cpu/moe_rows.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/moe_math.h"
#include "core/moe_row_bodies.h"

#include "cpu/simd.h"

namespace calmoe::cpu::moe_rows {
namespace baseline {
inline void row_softmax(const float* v, int64_t n, float inv_t, float* out) { moe::softmax(v, n, inv_t, out); }
inline void rows_softmax(float* rows, int64_t count, int64_t n, float inv_t) {
  for (int64_t r = 0; r < count; ++r) moe::softmax(rows + r * n, n, inv_t, rows + r * n);
}
#include "cpu/moe_rows_impl.h"
const Table& table() { return impl::table(); }
}  // namespace baseline

const Table& table() { return use_avx2() ? avx2::table() : baseline::table(); }
}  // namespace calmoe::cpu::moe_rows
