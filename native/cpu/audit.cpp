// CPU backend of the MoE per-row audit: rows in fixed chunks over the thread pool, each row
// written by the shared math (no reductions, so no order to fix).
#include <algorithm>
#include <atomic>
#include <climits>

#include "core/audit.h"
#include "host/thread_pool.h"

namespace calmoe::cpu {

int64_t moe_audit_rows(const audit::KernelArgs& a) {
  const int64_t per_row = std::max<int64_t>(1, a.in.slots * std::max<int64_t>(1, a.in.classes));
  const int64_t chunk_rows = std::max<int64_t>(64, (int64_t(1) << 16) / per_row);
  const int64_t n_chunks = (a.in.rows + chunk_rows - 1) / chunk_rows;
  std::atomic<int64_t> first_bad{INT64_MAX};
  parallel_for(n_chunks, [&](int64_t c, int) {
    const int64_t begin = c * chunk_rows;
    if (begin > first_bad.load(std::memory_order_relaxed)) return;  // an earlier row already failed
    const int64_t end = std::min(a.in.rows, begin + chunk_rows);
    for (int64_t i = begin; i < end; ++i) {
      if (audit::audit_row(a, i).issue != audit::kOk) {
        int64_t cur = first_bad.load();
        while (i < cur && !first_bad.compare_exchange_weak(cur, i)) {}
        return;
      }
    }
  });
  return first_bad.load() == INT64_MAX ? -1 : first_bad.load();
}

}  // namespace calmoe::cpu
