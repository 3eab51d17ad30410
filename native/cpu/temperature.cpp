// CPU backend of the temperature-scaling NLL: rows cut into fixed chunks (their size depends on
// the number of columns only), each chunk summed in row order in float64 on the thread pool,
// chunk partials combined in chunk order: the same bits for any thread count. Scaling (apply)
// writes each row independently.
#include <algorithm>
#include <atomic>
#include <climits>
#include <vector>

#include "core/temperature.h"
#include "host/thread_pool.h"

namespace calmoe::cpu {

int64_t temperature_reduce(const temp::KernelArgs& a, TemperatureEval& out) {
  const int64_t chunk_rows = std::max<int64_t>(64, (int64_t(1) << 15) / std::max<int64_t>(1, a.cols));
  const int64_t n_chunks = (a.rows + chunk_rows - 1) / chunk_rows;
  std::vector<TemperatureEval> partial(static_cast<std::size_t>(n_chunks));
  std::atomic<int64_t> first_bad{INT64_MAX};
  parallel_for(n_chunks, [&](int64_t c, int) {
    const int64_t begin = c * chunk_rows;
    if (begin > first_bad.load(std::memory_order_relaxed)) return;  // an earlier row already failed
    const int64_t end = std::min(a.rows, begin + chunk_rows);
    TemperatureEval s;
    for (int64_t i = begin; i < end; ++i) {
      if (temp::add_row(a, i, s) != temp::kOk) {
        int64_t cur = first_bad.load();
        while (i < cur && !first_bad.compare_exchange_weak(cur, i)) {}
        return;
      }
    }
    partial[c] = s;
  });
  if (first_bad.load() != INT64_MAX) return first_bad.load();
  TemperatureEval r;
  for (const TemperatureEval& p : partial) {
    r.weight += p.weight;
    r.nll += p.nll;
    r.d1 += p.d1;
    r.d2 += p.d2;
    r.rows += p.rows;
  }
  out = r;
  return -1;
}

int64_t temperature_apply(const temp::KernelArgs& a, float* out) {
  const int64_t chunk_rows = std::max<int64_t>(64, (int64_t(1) << 15) / std::max<int64_t>(1, a.cols));
  const int64_t n_chunks = (a.rows + chunk_rows - 1) / chunk_rows;
  std::atomic<int64_t> first_bad{INT64_MAX};
  parallel_for(n_chunks, [&](int64_t c, int) {
    const int64_t begin = c * chunk_rows;
    if (begin > first_bad.load(std::memory_order_relaxed)) return;
    const int64_t end = std::min(a.rows, begin + chunk_rows);
    for (int64_t i = begin; i < end; ++i) {
      if (temp::row_apply(a.scores + i * a.stride, a.cols, a.beta, a.kind, a.tol, out + i * a.cols).issue != temp::kOk) {
        int64_t cur = first_bad.load();
        while (i < cur && !first_bad.compare_exchange_weak(cur, i)) {}
        return;
      }
    }
  });
  return first_bad.load() == INT64_MAX ? -1 : first_bad.load();
}

}  // namespace calmoe::cpu
