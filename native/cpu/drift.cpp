// CPU backend of drift: features in groups over the thread pool. Each task gathers its group's
// columns from the row-major matrices (one pass over the rows, contiguous reads), turns them into
// order-preserving keys, radix-sorts each column, then walks the merged order of the two sorted
// columns for the KS numerators and searches them for the cut points. Monitor histograms: rows in
// chunks, one partial count array per worker (integers: the merge order does not matter).
#include <algorithm>
#include <atomic>
#include <climits>
#include <vector>

#include "calmoe/device.h"
#include "core/drift.h"
#include "host/radix_sort.h"
#include "host/thread_pool.h"

namespace calmoe::cpu {
namespace {

using namespace drift;

// Scratch per task stays near this many bytes (the group size adapts to the row counts).
constexpr int64_t kGroupBytes = int64_t(64) << 20;

void atomic_min(std::atomic<int64_t>& a, int64_t v) {
  int64_t cur = a.load();
  while (v < cur && !a.compare_exchange_weak(cur, v)) {}
}

// Gathers columns [f0, f0 + g) of x (rows x d) into cols[k * (rows + 1) + r] as keys, each
// column followed by the sentinel 0xffffffff. Returns the flat index of the first NaN (row-major
// order within the group), or -1.
int64_t gather(const float* x, int64_t rows, int64_t d, int64_t f0, int64_t g, uint32_t* cols) {
  const int64_t stride = rows + 1;
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = x + r * d + f0;
    for (int64_t k = 0; k < g; ++k) {
      const float v = row[k];
      if (is_nan_f32(v)) return r * d + f0 + k;
      cols[k * stride + r] = key_of(v);
    }
  }
  for (int64_t k = 0; k < g; ++k) cols[k * stride + rows] = 0xffffffffu;
  return -1;
}

// Max of (i*n2 - j*n1) and of (j*n1 - i*n2) over the points of the merged order, where i, j are
// the counts of a and b that are <= each distinct value (ties consumed together, as ECDFs). One
// element per step without data-dependent branches (merging random data mispredicts otherwise);
// a[n1] and b[n2] must hold the sentinel 0xffffffff, above every key (NaN has no key).
void ks_walk(const uint32_t* a, int64_t n1, const uint32_t* b, int64_t n2, int64_t* plus, int64_t* minus) {
  int64_t i = 0, j = 0, hi = 0, lo = 0;
  for (int64_t s = 0; s < n1 + n2; ++s) {
    const uint32_t ai = a[i], bj = b[j];
    const int64_t take_a = ai <= bj ? 1 : 0;
    const uint32_t v = take_a ? ai : bj;
    i += take_a;
    j += 1 - take_a;
    const bool last_of_value = std::min(a[i], b[j]) != v;
    const int64_t diff = i * n2 - j * n1;
    hi = std::max(hi, last_of_value ? diff : hi);
    lo = std::min(lo, last_of_value ? diff : lo);
  }
  *plus = hi;
  *minus = -lo;
}

}  // namespace

void drift_features(const FeatureArgs& a, FeatureOut& o) {
  const int64_t d = a.features, n1 = a.ref_rows, n2 = a.cur_rows;
  const int64_t per_feature = (n1 + n2) * int64_t(sizeof(uint32_t));
  int64_t group = std::max<int64_t>(1, std::min<int64_t>(16, kGroupBytes / std::max<int64_t>(1, per_feature)));
  // enough tasks to keep every thread busy
  group = std::min(group, std::max<int64_t>(1, d / (2 * int64_t(cpu_threads()))));
  const int64_t tasks = (d + group - 1) / group;
  const int workers = workers_for(tasks);
  struct Scratch {
    std::vector<uint32_t> ref, cur, tmp;
  };
  std::vector<Scratch> scratch(workers);
  std::atomic<int64_t> bad_ref{INT64_MAX}, bad_cur{INT64_MAX};

  // Every task scans its whole group for NaN (so the first NaN reported does not depend on
  // timing); the sorting is skipped once any NaN has been seen.
  parallel_for(tasks, workers, [&](int64_t t, int worker) {
    const int64_t f0 = t * group, g = std::min(group, d - f0);
    Scratch& s = scratch[worker];
    // one sentinel slot after each column
    s.ref.resize(std::size_t(group * (n1 + 1)));
    s.cur.resize(std::size_t(group * (n2 + 1)));
    s.tmp.resize(std::size_t(std::max(n1, n2)));
    const int64_t br = gather(a.ref, n1, d, f0, g, s.ref.data());
    if (br >= 0) {
      atomic_min(bad_ref, br);
      return;
    }
    if (n2 > 0) {
      const int64_t bc = gather(a.cur, n2, d, f0, g, s.cur.data());
      if (bc >= 0) {
        atomic_min(bad_cur, bc);
        return;
      }
    }
    if (bad_ref.load() != INT64_MAX || bad_cur.load() != INT64_MAX) return;
    for (int64_t k = 0; k < g; ++k) {
      const int64_t f = f0 + k;
      uint32_t* rc = s.ref.data() + k * (n1 + 1);
      uint32_t* cc = s.cur.data() + k * (n2 + 1);
      radix_sort_u32(rc, s.tmp.data(), std::size_t(n1));
      if (n2 > 0) radix_sort_u32(cc, s.tmp.data(), std::size_t(n2));
      if (a.ks && n2 > 0) ks_walk(rc, n1, cc, n2, &o.d_plus[f], &o.d_minus[f]);
      for (int64_t e = 0; e < a.edges; ++e) {
        const uint32_t key = rc[a.edge_index[e]];
        o.edge_key[f * a.edges + e] = key;
        o.ref_le[f * a.edges + e] = count_le(rc, n1, key);
        if (n2 > 0) o.cur_le[f * a.edges + e] = count_le(cc, n2, key);
      }
    }
  });
  o.bad_ref = bad_ref.load() == INT64_MAX ? -1 : bad_ref.load();
  o.bad_cur = bad_cur.load() == INT64_MAX ? -1 : bad_cur.load();
}

int64_t drift_bin_counts(const BinArgs& a, uint64_t* counts) {
  const int64_t d = a.features, E = a.edges, cells = d * (E + 1);
  const int64_t chunk_rows = std::max<int64_t>(64, (int64_t(1) << 16) / std::max<int64_t>(1, d));
  const int64_t chunks = (a.rows + chunk_rows - 1) / chunk_rows;
  const int workers = workers_for(chunks);
  std::vector<std::vector<uint64_t>> partial(workers);
  std::atomic<int64_t> first_bad{INT64_MAX};
  parallel_for(chunks, workers, [&](int64_t c, int worker) {
    const int64_t r0 = c * chunk_rows;
    if (r0 * d > first_bad.load(std::memory_order_relaxed)) return;
    const int64_t r1 = std::min(a.rows, r0 + chunk_rows);
    std::vector<uint64_t>& w = partial[worker];
    if (w.empty()) w.assign(std::size_t(cells), 0);
    for (int64_t r = r0; r < r1; ++r) {
      const float* row = a.x + r * d;
      for (int64_t f = 0; f < d; ++f) {
        const float v = row[f];
        if (is_nan_f32(v)) {
          atomic_min(first_bad, r * d + f);
          return;
        }
        w[f * (E + 1) + count_lt(a.edge_key + f * E, E, key_of(v))] += 1;
      }
    }
  });
  if (first_bad.load() != INT64_MAX) return first_bad.load();
  for (const auto& w : partial)
    if (!w.empty())
      for (int64_t k = 0; k < cells; ++k) counts[k] += w[k];
  return -1;
}

}  // namespace calmoe::cpu
