// Emulated nvcuda::wmma (the shapes calmoe uses): every thread of a warp holds the whole fragment
// and does the whole warp's work (the same values are stored by each thread).
#pragma once
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#include "cuda_bf16.h"

namespace nvcuda {
namespace wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
namespace precision { struct tf32 {}; }
enum layout_t { mem_row_major, mem_col_major };

template <class Use, int M, int N, int K, class T, class Layout = void>
struct fragment {
  static constexpr int rows = std::is_same<Use, matrix_b>::value ? K : M;
  static constexpr int cols = std::is_same<Use, matrix_a>::value ? K : N;
  static constexpr int num_elements = rows * cols;
  float x[rows * cols];
};

// cvt.rna.tf32.f32: round to nearest, ties away from zero, to 10 explicit mantissa bits
inline float __float_to_tf32(float f) {
  unsigned u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7f800000u) != 0x7f800000u) {
    u += 0x1000u;
    u &= ~0x1fffu;
  }
  std::memcpy(&f, &u, 4);
  return f;
}

// The CUDA rules for load/store_matrix_sync: a 256-bit aligned pointer, ldm a multiple of 16 bytes.
inline void check_matrix_arg(const void* p, unsigned ldm, unsigned elem_bytes, const char* what) {
  if (reinterpret_cast<std::uintptr_t>(p) % 32 != 0 || (ldm * elem_bytes) % 16 != 0) {
    std::fprintf(stderr, "emu: %s: pointer %p not 32-byte aligned or ldm %u x %u bytes not a multiple of 16\n", what, p, ldm, elem_bytes);
    std::abort();
  }
}

template <class Use, int M, int N, int K, class T, class L>
void fill_fragment(fragment<Use, M, N, K, T, L>& f, float v) {
  for (int e = 0; e < f.num_elements; ++e) f.x[e] = v;
}

inline float to_float(float v) { return v; }
inline float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

// E: float (tf32 fragments) or __nv_bfloat16 (bf16 fragments); the fragment holds floats.
template <class Use, int M, int N, int K, class T, class L, class E>
void load_matrix_sync(fragment<Use, M, N, K, T, L>& f, const E* p, unsigned ldm) {
  check_matrix_arg(p, ldm, sizeof(E), "load_matrix_sync");
  using F = fragment<Use, M, N, K, T, L>;
  for (int r = 0; r < F::rows; ++r)
    for (int c = 0; c < F::cols; ++c) f.x[r * F::cols + c] = to_float(std::is_same<L, col_major>::value ? p[c * ldm + r] : p[r * ldm + c]);
}

template <int M, int N, int K, class TA, class LA, class TB, class LB>
void mma_sync(fragment<accumulator, M, N, K, float>& d, const fragment<matrix_a, M, N, K, TA, LA>& a,
              const fragment<matrix_b, M, N, K, TB, LB>& b, const fragment<accumulator, M, N, K, float>& c) {
  float out[M * N];
  for (int m = 0; m < M; ++m)
    for (int n = 0; n < N; ++n) {
      float s = c.x[m * N + n];
      for (int k = 0; k < K; ++k) s += a.x[m * K + k] * b.x[k * N + n];
      out[m * N + n] = s;
    }
  std::memcpy(d.x, out, sizeof out);
}

template <int M, int N, int K>
void store_matrix_sync(float* p, const fragment<accumulator, M, N, K, float>& f, unsigned ldm, layout_t l) {
  check_matrix_arg(p, ldm, 4, "store_matrix_sync");
  for (int r = 0; r < M; ++r)
    for (int c = 0; c < N; ++c) (l == mem_row_major ? p[r * ldm + c] : p[c * ldm + r]) = f.x[r * N + c];
}
}  // namespace wmma
}  // namespace nvcuda
