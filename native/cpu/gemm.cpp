// GEMM driver (see gemm.h): path choice, tiling, the packed-panel loops and threading, the scalar
// micro-kernel and epilogue (gemm_avx2.cpp repeats them lane by lane: the same bits), and the
// optional cblas_sgemm path.
//
// Loops, per output tile (one pool task; K is never split, so no cross-thread reduction):
//   for k0 in steps of kKC:                  pack B(k0.., tile columns) once   (slab, L3)
//     for each kMC rows of the tile:          pack A(rows, k0..)               (block, L2; or
//                                             read in place: A not transposed, rows <= 2 KB apart)
//       for each kNR-column sliver of B:       (16 x kKC floats: stays in L1)
//         for each kMR-row sliver of A:         6x16 register tile, kc fused multiply-adds
// Every output element's sum is a chain of fmas over k within each k block, blocks added in k
// order: the result depends only on kKC, never on tiles, threads or the ISA.
#include "cpu/gemm.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include "calmoe/device.h"
#include "calmoe/error.h"
#include "core/activation.h"
#include "cpu/simd.h"
#include "host/thread_pool.h"

#ifndef CALMOE_WITH_BLAS
#define CALMOE_WITH_BLAS 0  // set by CMake when a CBLAS is linked (CALMOE_BLAS option)
#endif
#ifndef CALMOE_OPENBLAS
#define CALMOE_OPENBLAS 0   // set by CMake when that CBLAS is OpenBLAS
#endif
#if CALMOE_WITH_BLAS
#include <cblas.h>
#endif

namespace calmoe::cpu {
using namespace gemm_detail;

namespace {

// ---- tiling constants (measured on Zen 3: 32 KB L1d, 512 KB L2 per core, 32 MB L3) ----------------
constexpr int64_t kMC = 144;              // rows of a packed A block: kMC x kKC floats = 144 KB (L2)
constexpr int64_t kTileN = 2048;          // columns per task: the B slab is kTileN x kKC (2 MB, L3)
constexpr int64_t kInPlaceMaxLd = 512;    // floats: A rows up to 2 KB apart are read in place
// Multiply-adds per tile, at least (~50 us of work): here 256x128x128 as two 2M-FMA tiles on two
// threads ran no faster than as one tile on one thread (pool wake-up and hand-back cost).
constexpr double kMinTileWork = 1 << 22;
// BLAS tiles depend on the shape only, so the BLAS path's bits do not depend on the thread count.
constexpr int64_t kBlasTileM = 128;
constexpr int64_t kBlasTileN = 4096;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

// ---- the epilogue, element by element: the shared activations of core/activation.h (gemm_avx2.cpp
// repeats them lane by lane) ----------------------------------------------------------------------
inline float epilogue_value(float v, const TileOut& o, int i, int j) {
  if (o.bias) v = v + o.bias[j];
  if (o.pre) o.pre[i * o.ldpre + j] = v;
  if (o.act == Act::Relu) v = act::relu(v);
  else if (o.act == Act::Gelu) v = act::gelu(v);
  if (o.dact != Act::None) {
    const float p = o.dpre[i * o.lddpre + j];
    v = v * (o.dact == Act::Relu ? act::relu_grad(p) : act::gelu_grad(p));
  }
  return v;
}

// ---- per-thread workspace: packed panels and BLAS scratch, grown (never shrunk) -----------------
class Workspace {
 public:
  Workspace() = default;
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;
  ~Workspace() { release(); }
  float* get(std::size_t n) {
    if (n > cap_) {
      const std::size_t cap = std::max(n, cap_ + cap_ / 2);
      release();
      p_ = static_cast<float*>(::operator new(cap * sizeof(float), std::align_val_t(64)));
      cap_ = cap;
    }
    return p_;
  }

 private:
  void release() {
    if (p_) ::operator delete(p_, std::align_val_t(64));
    p_ = nullptr;
    cap_ = 0;
  }
  float* p_ = nullptr;
  std::size_t cap_ = 0;
};
thread_local Workspace t_pack;
#if CALMOE_WITH_BLAS
thread_local Workspace t_blas;
#endif

// ---- path choice -----------------------------------------------------------------------------------
enum class Impl : int { Avx2 = 0, Scalar = 1, Blas = 2 };
constexpr bool kBlasBuilt = CALMOE_WITH_BLAS != 0;
std::atomic<int> g_impl{-1};

Impl builtin_impl() { return use_avx2() ? Impl::Avx2 : Impl::Scalar; }

Impl current_impl() {
  int v = g_impl.load(std::memory_order_relaxed);
  if (v < 0) {
    const char* env = std::getenv("CALMOE_GEMM");
    const Impl d = (env && std::strcmp(env, "blas") == 0 && kBlasBuilt) ? Impl::Blas : builtin_impl();
    int expected = -1;
    g_impl.compare_exchange_strong(expected, int(d));
    v = g_impl.load();
  }
  return Impl(v);
}

// ---- the builtin path: one output tile -------------------------------------------------------------
struct Kern {
  void (*pack_a)(const GemmOperand&, int64_t, int64_t, int64_t, int64_t, float*);
  void (*pack_b)(const GemmOperand&, int64_t, int64_t, int64_t, int64_t, float*);
  void (*kernel)(int64_t, const float*, const float*, const TileOut&);
  void (*kernel_rows)(int64_t, const float* const*, const float*, const TileOut&);  // null: always pack A
};

Kern kern_for(Impl impl) {
  if (impl == Impl::Avx2) return {avx2::pack_a, avx2::pack_b, avx2::kernel, avx2::kernel_rows};
  return {pack_a_scalar, pack_b_scalar, kernel_scalar, nullptr};
}

TileOut tile_out(const GemmArgs& g, int64_t i0, int64_t j0, int m, int n) {
  TileOut o{};
  o.c = g.c + i0 * g.ldc + j0;
  o.ldc = g.ldc;
  o.m = m;
  o.n = n;
  o.alpha = g.alpha;
  o.beta = g.beta;
  o.bias = g.bias ? g.bias + j0 : nullptr;
  o.act = g.act;
  o.pre = g.pre ? g.pre + i0 * g.ldpre + j0 : nullptr;
  o.ldpre = g.ldpre;
  o.dact = g.dact;
  o.dpre = g.dact != Act::None ? g.dact_pre + i0 * g.ld_dact + j0 : nullptr;
  o.lddpre = g.ld_dact;
  return o;
}

void run_tile(const GemmArgs& g, const Kern& kn, int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
  // alpha == 0 or K == 0: C = beta C plus the epilogue, A and B unread (one pass with kc = 0).
  const int64_t K = g.alpha == 0.0f ? 0 : g.K;
  const int64_t kcmax = std::min(K, kKC);
  const int64_t nb = ceil_div(j1 - j0, kNR) * b_sliver(kcmax);
  const int64_t ma = ceil_div(std::min(i1 - i0, kMC), kMR) * a_sliver(kcmax);
  float* pb = t_pack.get(std::size_t(nb + ma));
  float* pa = pb + nb;
  // A not transposed, with short rows: the kernel reads it in place (packing it would cost about as
  // much as it saves when N is small); long rows (many pages per block) are packed.
  const bool in_place = K > 0 && kn.kernel_rows && !g.a.trans && g.a.ld <= kInPlaceMaxLd;
  for (int64_t k0 = 0; k0 == 0 || k0 < K; k0 += kKC) {
    const int64_t kc = std::min(kKC, K - k0);
    if (kc > 0) kn.pack_b(g.b, k0, kc, j0, j1 - j0, pb);
    for (int64_t ic = i0; ic < i1; ic += kMC) {
      const int64_t ie = std::min(i1, ic + kMC);
      if (kc > 0 && !in_place) kn.pack_a(g.a, ic, ie - ic, k0, kc, pa);
      for (int64_t j = j0; j < j1; j += kNR) {
        const int n = int(std::min<int64_t>(kNR, j1 - j));
        for (int64_t i = ic; i < ie; i += kMR) {
          const int m = int(std::min<int64_t>(kMR, ie - i));
          TileOut o = tile_out(g, i, j, m, n);
          o.first = k0 == 0;
          o.last = k0 + kKC >= K;
          if (in_place) {
            const float* ar[kMR];
            for (int r = 0; r < kMR; ++r) ar[r] = g.a.p + (g.a.rows ? g.a.rows[i + std::min(r, m - 1)] : i + std::min(r, m - 1)) * g.a.ld + k0;
            kn.kernel_rows(kc, ar, pb + (j - j0) / kNR * b_sliver(kc), o);
          } else {
            kn.kernel(kc, pa + (i - ic) / kMR * a_sliver(kc), pb + (j - j0) / kNR * b_sliver(kc), o);
          }
        }
      }
    }
  }
}

// ---- the BLAS path: one output tile through cblas_sgemm --------------------------------------------
#if CALMOE_WITH_BLAS
// Whether rows of op's storage can be handed to cblas as they are (else they are copied).
bool blas_direct(const GemmOperand& op, int64_t len) {
  return !op.rows && op.ld >= std::max<int64_t>(1, len) && op.ld <= std::numeric_limits<int>::max();
}

// The logical rows [r0, r0 + nr) of op's storage (each `len` floats from column c0) as a plain
// row-major matrix: a pointer into op when usable as is, else a copy in `scratch`.
const float* contiguous(const GemmOperand& op, int64_t r0, int64_t nr, int64_t c0, int64_t len, float* scratch, int64_t* ld) {
  if (blas_direct(op, len)) {
    *ld = op.ld;
    return op.p + r0 * op.ld + c0;
  }
  for (int64_t r = 0; r < nr; ++r) {
    const int64_t src = op.rows ? op.rows[r0 + r] : r0 + r;
    std::memcpy(scratch + r * len, op.p + src * op.ld + c0, std::size_t(len) * sizeof(float));
  }
  *ld = std::max<int64_t>(1, len);
  return scratch;
}

void blas_init() {
  static std::once_flag once;
  // calmoe's pool already runs one BLAS call per core: OpenBLAS's own threads would oversubscribe.
  // This sets OpenBLAS's process-wide thread count.
  std::call_once(once, [] {
#if CALMOE_OPENBLAS
    openblas_set_num_threads(1);
#endif
  });
}

void run_blas_tile(const GemmArgs& g, bool simd, int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
  const int64_t m = i1 - i0, n = j1 - j0, K = g.K;
  // Storage rows of A's tile: A(i0..i1, :) is rows i0..i1 (or, transposed, all K rows, columns
  // i0..i1); likewise for B's columns j0..j1.
  const int64_t a_rows = g.a.trans ? K : m, a_len = g.a.trans ? m : K;
  const int64_t b_rows = g.b.trans ? n : K, b_len = g.b.trans ? K : n;
  const int64_t a_copy = blas_direct(g.a, a_len) ? 0 : a_rows * a_len;
  const int64_t b_copy = blas_direct(g.b, b_len) ? 0 : b_rows * b_len;
  float* s = t_blas.get(std::size_t(a_copy + b_copy));
  int64_t lda = 0, ldb = 0;
  const float* pa = g.a.trans ? contiguous(g.a, 0, K, i0, m, s, &lda) : contiguous(g.a, i0, m, 0, K, s, &lda);
  const float* pb = g.b.trans ? contiguous(g.b, j0, n, 0, K, s + a_copy, &ldb) : contiguous(g.b, 0, K, j0, n, s + a_copy, &ldb);
  float* c = g.c + i0 * g.ldc + j0;
  cblas_sgemm(CblasRowMajor, g.a.trans ? CblasTrans : CblasNoTrans, g.b.trans ? CblasTrans : CblasNoTrans, int(m), int(n),
              int(K), g.alpha, pa, int(lda), pb, int(ldb), g.beta, c, int(g.ldc));
  if (g.bias || g.pre || g.act != Act::None || g.dact != Act::None) {
    const TileOut o = tile_out(g, i0, j0, int(m), int(n));
    simd ? avx2::epilogue(o) : epilogue_scalar(o);
  }
}
#endif

// ---- tiling and threading ----------------------------------------------------------------------------
struct Tile {
  int64_t g, i0, i1, j0, j1;
  double work;
  bool blas;  // through cblas_sgemm
};

// Cuts g's output into tiles: column blocks of at most kTileN (the B slab), then row blocks (rows
// first: a row split repeats only the small B slab's packing, and MoE batches are tall) and, when
// rows run out, column blocks, until there are `want` tiles or tiles would fall under
// kMinTileWork. Blocks are balanced multiples of the register tile. The BLAS path uses a grid
// fixed by the shape.
void add_tiles(int64_t gi, const GemmArgs& g, bool blas, int64_t want, std::vector<Tile>& out) {
  const int64_t M = g.M, N = g.N;
  const double k = double(std::max<int64_t>(g.K, 1));
  int64_t pm, pn;
  if (blas) {
    pm = ceil_div(M, kBlasTileM);
    pn = ceil_div(N, kBlasTileN);
  } else {
    pm = 1;
    pn = ceil_div(N, kTileN);
    const int64_t max_pm = std::max<int64_t>(1, M / (2 * kMR)), max_pn = ceil_div(N, kNR);
    while (pm * pn < want) {
      const int64_t qm = pm < max_pm ? pm + 1 : pm, qn = pm < max_pm ? pn : pn + 1;
      if (qn > max_pn || double(ceil_div(M, qm)) * double(ceil_div(N, qn)) * k < kMinTileWork) break;
      pm = qm;
      pn = qn;
    }
  }
  const int64_t bm = round_up(ceil_div(M, pm), blas ? 1 : kMR), bn = round_up(ceil_div(N, pn), blas ? 1 : kNR);
  for (int64_t i0 = 0; i0 < M; i0 += bm)
    for (int64_t j0 = 0; j0 < N; j0 += bn) {
      const int64_t i1 = std::min(M, i0 + bm), j1 = std::min(N, j0 + bn);
      out.push_back({gi, i0, i1, j0, j1, double(i1 - i0) * double(j1 - j0) * k, blas});
    }
}

void check(const GemmArgs& g, int64_t index) {
  const auto at = [&] { return index < 0 ? std::string("sgemm: ") : "sgemm_batch[" + std::to_string(index) + "]: "; };
  if (g.M < 0 || g.N < 0 || g.K < 0)
    throw_range(at() + "M, N, K must be >= 0, got " + std::to_string(g.M) + ", " + std::to_string(g.N) + ", " + std::to_string(g.K));
  if (g.M == 0 || g.N == 0) return;
  if (!g.c) throw_type(at() + "c is null");
  if (g.M > 1 && g.ldc < g.N) throw_range(at() + "ldc = " + std::to_string(g.ldc) + " < N = " + std::to_string(g.N));
  if (g.pre && g.M > 1 && g.ldpre < g.N) throw_range(at() + "ldpre = " + std::to_string(g.ldpre) + " < N = " + std::to_string(g.N));
  if (g.dact != Act::None && !g.dact_pre) throw_type(at() + "dact is set but dact_pre is null");
  if (g.K > 0 && g.alpha != 0.0f && (!g.a.p || !g.b.p)) throw_type(at() + "a.p or b.p is null");
}

// BLAS needs int dimensions and ldc >= N; K == 0 and alpha == 0 go the builtin way (C = beta C,
// A and B unread).
bool blas_ok(const GemmArgs& g) {
  const int64_t lim = std::numeric_limits<int>::max();
  return g.K > 0 && g.alpha != 0.0f && g.M <= lim && g.N <= lim && g.K <= lim && g.ldc >= g.N && g.ldc <= lim;
}

// The tile list of the current call, reused (no allocation in steady state). run() never runs
// twice at once on one thread: the caller of a parallel_for only runs that job's tasks.
thread_local std::vector<Tile> t_tiles;

struct Job {
  const GemmArgs* gs;
  const Tile* tiles;
  Kern kn;
  bool simd;
};

void run(const GemmArgs* gs, int64_t count, int64_t first_index) {
  const Impl impl = current_impl();
  const bool simd = impl == Impl::Avx2 || (impl == Impl::Blas && use_avx2());
  double total = 0;
  for (int64_t i = 0; i < count; ++i) {
    check(gs[i], count == 1 ? first_index : i);
    total += double(gs[i].M) * double(gs[i].N) * double(std::max<int64_t>(gs[i].K, 1));
  }
  if (total == 0) return;
  // Enough tiles to keep the workers busy, each GEMM's share in proportion to its work.
  const int64_t workers = workers_for(std::numeric_limits<int64_t>::max());
  const double want = double(count == 1 ? workers : 2 * workers);
  std::vector<Tile>& tiles = t_tiles;
  tiles.clear();
  for (int64_t i = 0; i < count; ++i) {
    const GemmArgs& g = gs[i];
    if (g.M == 0 || g.N == 0) continue;
    const double w = double(g.M) * double(g.N) * double(std::max<int64_t>(g.K, 1));
    add_tiles(i, g, impl == Impl::Blas && blas_ok(g), int64_t(std::ceil(want * w / total)), tiles);
  }
  // Largest first: the dynamic hand-out then balances uneven GEMMs well.
  if (count > 1)
    std::sort(tiles.begin(), tiles.end(), [](const Tile& a, const Tile& b) {
      return a.work != b.work ? a.work > b.work : (a.g != b.g ? a.g < b.g : (a.i0 != b.i0 ? a.i0 < b.i0 : a.j0 < b.j0));
    });
#if CALMOE_WITH_BLAS
  if (impl == Impl::Blas) blas_init();
#endif
  const Job job{gs, tiles.data(), kern_for(simd ? Impl::Avx2 : Impl::Scalar), simd};
  const Job* jp = &job;  // one pointer: the std::function stores it without allocating
  parallel_for(int64_t(tiles.size()), [jp](int64_t t, int) {
    const Tile& tl = jp->tiles[t];
    const GemmArgs& g = jp->gs[tl.g];
#if CALMOE_WITH_BLAS
    if (tl.blas) return run_blas_tile(g, jp->simd, tl.i0, tl.i1, tl.j0, tl.j1);
#endif
    run_tile(g, jp->kn, tl.i0, tl.i1, tl.j0, tl.j1);
  });
}

}  // namespace

// ---- scalar packing, micro-kernel and epilogue --------------------------------------------------------
namespace gemm_detail {

namespace {
// Element (i, j) of op's logical matrix (see GemmOperand).
inline float element(const GemmOperand& op, int64_t i, int64_t j) {
  const int64_t r = op.trans ? j : i, c = op.trans ? i : j;
  return op.p[(op.rows ? op.rows[r] : r) * op.ld + c];
}
}  // namespace

void pack_a_scalar(const GemmOperand& a, int64_t i0, int64_t m, int64_t k0, int64_t kc, float* dst) {
  for (int64_t s = 0; s < m; s += kMR, dst += a_sliver(kc)) {
    const int mr = int(std::min<int64_t>(kMR, m - s));
    for (int64_t k = 0; k < kc; ++k)
      for (int r = 0; r < kMR; ++r) dst[k * kMR + r] = r < mr ? element(a, i0 + s + r, k0 + k) : 0.0f;
  }
}

void pack_b_scalar(const GemmOperand& b, int64_t k0, int64_t kc, int64_t j0, int64_t n, float* dst) {
  for (int64_t s = 0; s < n; s += kNR, dst += b_sliver(kc)) {
    const int nr = int(std::min<int64_t>(kNR, n - s));
    for (int64_t k = 0; k < kc; ++k)
      for (int c = 0; c < kNR; ++c) dst[k * kNR + c] = c < nr ? element(b, k0 + k, j0 + s + c) : 0.0f;
  }
}

void kernel_scalar(int64_t kc, const float* a, const float* b, const TileOut& o) {
  float acc[kMR][kNR] = {};
  for (int64_t k = 0; k < kc; ++k, a += kMR, b += kNR)
    for (int i = 0; i < kMR; ++i)
      for (int j = 0; j < kNR; ++j) acc[i][j] = std::fma(a[i], b[j], acc[i][j]);
  for (int i = 0; i < o.m; ++i) {
    float* c = o.c + i * o.ldc;
    for (int j = 0; j < o.n; ++j) {
      float v;
      if (o.first) {
        v = o.alpha * acc[i][j];
        if (o.beta != 0.0f) v = std::fma(o.beta, c[j], v);
      } else {
        v = std::fma(o.alpha, acc[i][j], c[j]);
      }
      c[j] = o.last ? epilogue_value(v, o, i, j) : v;
    }
  }
}

void epilogue_scalar(const TileOut& o) {
  for (int i = 0; i < o.m; ++i)
    for (int j = 0; j < o.n; ++j) o.c[i * o.ldc + j] = epilogue_value(o.c[i * o.ldc + j], o, i, j);
}

}  // namespace gemm_detail

// ---- public entry points -----------------------------------------------------------------------------
void sgemm(const GemmArgs& g) { run(&g, 1, -1); }

void sgemm_batch(const GemmArgs* g, int64_t count) {
  if (count < 0) throw_range("sgemm_batch: count must be >= 0, got " + std::to_string(count));
  if (count > 0 && !g) throw_type("sgemm_batch: g is null");
  run(g, count, 0);
}

bool gemm_blas_available() { return kBlasBuilt; }

const char* gemm_backend() {
  switch (current_impl()) {
    case Impl::Avx2: return "builtin-avx2";
    case Impl::Scalar: return "builtin-scalar";
    case Impl::Blas: return CALMOE_OPENBLAS ? "openblas" : "blas";
  }
  return "builtin-scalar";
}

bool set_gemm_backend(const char* name) {
  const std::string s = name ? name : "";
  Impl to;
  if (s == "builtin") to = builtin_impl();
  else if (s == "builtin-avx2" && use_avx2()) to = Impl::Avx2;
  else if (s == "builtin-scalar") to = Impl::Scalar;
  else if ((s == "blas" || s == "openblas") && kBlasBuilt) to = Impl::Blas;
  else return false;
  g_impl.store(int(to));
  return true;
}

}  // namespace calmoe::cpu
