// A fake libcublasLt for calmoe's emulator tests (tools/fake-cublaslt/README.md): the entry points of
// CALMOE_LT_ENTRY_POINTS (native/cuda/cublaslt_api.h) under their real C names and ABI, computed on
// the host, plus the marker symbol lt::kFakeMarker by which the loader knows it. It follows
// cuBLASLt's documented column-major semantics, D = epilogue(alpha * op(A) op(B) + beta * C + bias),
// for FP32 data, and refuses (with the documented status and one line on stderr naming the rule)
// every call that breaks a rule: it shows logic, not behaviour on a card.
//
// Environment, read at each call:
//   CALMOE_FAKE_CUBLASLT      comma-separated: noalgo | unsupported | wrong | version=NNNNNN
//   CALMOE_FAKE_CUBLASLT_LOG  a file; one line appended per cublasLtMatmul call that computed D
//   EMU_LAUNCH_LOG, EMU_DRY_RUN  as the emulator's: each call listed on stderr ("emu-cublaslt ..."),
//                             and in a dry run checked but not computed
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <type_traits>
#include <vector>

#include "cuda/cublaslt_api.h"

#define FAKE_EXPORT extern "C" __attribute__((visibility("default")))

using namespace calmoe::lt;

namespace calmoe::lt {
// The opaque objects behind the handles (declared, never defined, by cublaslt_api.h).
struct LtContext {
  uint32_t magic;
};
struct LtDesc {
  uint32_t magic;
  int32_t compute, scale;
  int32_t transa = kOpN, transb = kOpN;
  uint32_t epilogue = kEpilogueDefault;
  const void* bias = nullptr;
  int64_t bias_stride = 0;
};
struct LtLayout {
  uint32_t magic;
  uint32_t type;
  int32_t order = kOrderCol;
  uint64_t rows, cols;
  int64_t ld;
  int32_t batch = 1;
  int64_t stride = 0;
};
struct LtPref {
  uint32_t magic;
  uint32_t search = 0;
  uint64_t max_workspace = 0;            // documented default: no workspace
  uint32_t align[4] = {256, 256, 256, 256};  // A, B, C, D; documented default 256 bytes
};
}  // namespace calmoe::lt

namespace {

constexpr uint32_t kHandleMagic = 0x4c54484e, kDescMagic = 0x4c544453, kLayoutMagic = 0x4c544c59, kPrefMagic = 0x4c545046,
                   kDead = 0xdeadbeef;
constexpr uint64_t kAlgoMagic = 0x66616b65616c676full;  // "fakealgo"
// The fake's one algorithm is "split-K" when k is large and the preference allows a workspace:
// then it needs kSplitKWorkspace bytes (written by every call, so that a too small buffer shows
// under ASan); otherwise it needs none.
constexpr uint64_t kSplitKWorkspace = 64 * 1024;
constexpr uint64_t kSplitKMinK = 256;
constexpr std::size_t kDefaultVersion = 130100;

// ---- environment --------------------------------------------------------------------------------
struct Faults {
  bool noalgo = false, unsupported = false, wrong = false;
  std::size_t version = kDefaultVersion;
};

Faults faults() {
  Faults f;
  const char* e = std::getenv("CALMOE_FAKE_CUBLASLT");
  if (!e) return f;
  std::string s(e);
  std::size_t at = 0;
  while (at <= s.size()) {
    std::size_t end = s.find(',', at);
    if (end == std::string::npos) end = s.size();
    const std::string tok = s.substr(at, end - at);
    at = end + 1;
    if (tok.empty()) continue;
    if (tok == "noalgo") f.noalgo = true;
    else if (tok == "unsupported") f.unsupported = true;
    else if (tok == "wrong") f.wrong = true;
    else if (tok.rfind("version=", 0) == 0 && tok.size() > 8 && tok.find_first_not_of("0123456789", 8) == std::string::npos)
      f.version = std::strtoull(tok.c_str() + 8, nullptr, 10);
    else std::fprintf(stderr, "fake-cublaslt: CALMOE_FAKE_CUBLASLT: unknown token '%s' ignored (noalgo, unsupported, wrong, version=NNNNNN)\n", tok.c_str());
  }
  return f;
}

const char* status_name(Status s) {
  switch (s) {
    case kSuccess: return "CUBLAS_STATUS_SUCCESS";
    case kNotInitialized: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case kAllocFailed: return "CUBLAS_STATUS_ALLOC_FAILED";
    case kInvalidValue: return "CUBLAS_STATUS_INVALID_VALUE";
    case kNotSupported: return "CUBLAS_STATUS_NOT_SUPPORTED";
    default: return "CUBLAS_STATUS_?";
  }
}

// Every refusal: one line on stderr, "fake-cublaslt: <function>: <status> (<code>): <rule broken>".
__attribute__((format(printf, 3, 4))) Status refuse(const char* fn, Status s, const char* fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  std::fprintf(stderr, "fake-cublaslt: %s: %s (%d): %s\n", fn, status_name(s), int(s), buf);
  return s;
}

const char* op_name(int32_t op) { return op == kOpN ? "N" : op == kOpT ? "T" : "?"; }
const char* epilogue_name(uint32_t e) {
  switch (e) {
    case kEpilogueDefault: return "DEFAULT";
    case kEpilogueRelu: return "RELU";
    case kEpilogueBias: return "BIAS";
    case kEpilogueReluBias: return "RELU_BIAS";
    default: return "?";
  }
}
const char* compute_name(int32_t c) {
  switch (c) {
    case kCompute32F: return "32F";
    case kCompute32FFastTF32: return "32F_FAST_TF32";
    case kCompute32FFast16BF: return "32F_FAST_16BF";
    default: return "?";
  }
}
bool has_bias(uint32_t e) { return e == kEpilogueBias || e == kEpilogueReluBias; }
bool has_relu(uint32_t e) { return e == kEpilogueRelu || e == kEpilogueReluBias; }

// ---- the numerics ---------------------------------------------------------------------------------
uint32_t bits_of(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  return u;
}
float float_of(uint32_t u) {
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}
bool finite_bits(uint32_t u) { return (u & 0x7f800000u) != 0x7f800000u; }
// TF32 as cvt.rna.tf32.f32: round to nearest, ties away from zero, 10 mantissa bits kept.
float round_tf32(float x) {
  const uint32_t u = bits_of(x);
  return finite_bits(u) ? float_of((u + 0x1000u) & 0xffffe000u) : x;
}
// BF16: round to nearest, ties to even, 7 mantissa bits kept.
float round_bf16(float x) {
  const uint32_t u = bits_of(x);
  return finite_bits(u) ? float_of((u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u) : x;
}
float round_operand(float x, int32_t compute) {
  if (compute == kCompute32FFastTF32) return round_tf32(x);
  if (compute == kCompute32FFast16BF) return round_bf16(x);
  return x;
}

// ---- problem checks --------------------------------------------------------------------------------
struct Problem {
  uint64_t m, n, k;
  int32_t batch;
};

Status check_layout(const char* fn, const char* name, const LtLayout* l) {
  if (!l || l->magic != kLayoutMagic) return refuse(fn, kInvalidValue, "%s layout is NULL or destroyed", name);
  if (l->type != uint32_t(kR32F)) return refuse(fn, kNotSupported, "%s layout type %u: the fake models CUDA_R_32F (0) only", name, l->type);
  if (l->order != kOrderCol) return refuse(fn, kNotSupported, "%s layout order %d: the fake models CUBLASLT_ORDER_COL (0) only", name, l->order);
  if (l->rows == 0 || l->cols == 0)
    return refuse(fn, kInvalidValue, "%s layout is %llu x %llu: an empty matrix (skip the call instead)", name, (unsigned long long)l->rows,
                  (unsigned long long)l->cols);
  if (l->ld < 1 || uint64_t(l->ld) < l->rows)
    return refuse(fn, kInvalidValue, "%s layout: ld %lld < rows %llu (column order needs ld >= rows)", name, (long long)l->ld,
                  (unsigned long long)l->rows);
  if (l->batch < 1) return refuse(fn, kInvalidValue, "%s layout: batch count %d < 1", name, l->batch);
  if (l->stride < 0) return refuse(fn, kInvalidValue, "%s layout: strided batch offset %lld < 0", name, (long long)l->stride);
  return kSuccess;
}

// The rules shared by the heuristic and the call: valid objects, supported types, and the
// dimensions of op(A) (m x k), op(B) (k x n), C and D (m x n) and the batch counts agree.
Status check_problem(const char* fn, const LtContext* h, const LtDesc* d, const LtLayout* A, const LtLayout* B, const LtLayout* C,
                     const LtLayout* D, Problem* p) {
  if (!h || h->magic != kHandleMagic) return refuse(fn, kNotInitialized, "handle is NULL or destroyed");
  if (!d || d->magic != kDescMagic) return refuse(fn, kInvalidValue, "matmul descriptor is NULL or destroyed");
  if (d->compute != kCompute32F && d->compute != kCompute32FFastTF32 && d->compute != kCompute32FFast16BF)
    return refuse(fn, kNotSupported, "compute type %d: the fake models CUBLAS_COMPUTE_32F (68), _32F_FAST_16BF (75), _32F_FAST_TF32 (77)", d->compute);
  if (d->scale != kR32F) return refuse(fn, kNotSupported, "scale type %d: FP32 compute types need CUDA_R_32F (0)", d->scale);
  if (d->transa != kOpN && d->transa != kOpT) return refuse(fn, kNotSupported, "TRANSA %d: the fake models N (0) and T (1)", d->transa);
  if (d->transb != kOpN && d->transb != kOpT) return refuse(fn, kNotSupported, "TRANSB %d: the fake models N (0) and T (1)", d->transb);
  if (d->epilogue != kEpilogueDefault && d->epilogue != kEpilogueRelu && d->epilogue != kEpilogueBias && d->epilogue != kEpilogueReluBias)
    return refuse(fn, kNotSupported, "epilogue %u: the fake models DEFAULT (1), RELU (2), BIAS (4), RELU_BIAS (6)", d->epilogue);
  const char* names[4] = {"A", "B", "C", "D"};
  const LtLayout* ls[4] = {A, B, C, D};
  for (int i = 0; i < 4; ++i)
    if (Status s = check_layout(fn, names[i], ls[i])) return s;
  const uint64_t m = D->rows, n = D->cols;
  const uint64_t am = d->transa == kOpN ? A->rows : A->cols, ak = d->transa == kOpN ? A->cols : A->rows;
  const uint64_t bk = d->transb == kOpN ? B->rows : B->cols, bn = d->transb == kOpN ? B->cols : B->rows;
  if (am != m)
    return refuse(fn, kInvalidValue, "op(A) (trans%s of %llu x %llu) has %llu rows, D has %llu", op_name(d->transa), (unsigned long long)A->rows,
                  (unsigned long long)A->cols, (unsigned long long)am, (unsigned long long)m);
  if (bn != n)
    return refuse(fn, kInvalidValue, "op(B) (trans%s of %llu x %llu) has %llu columns, D has %llu", op_name(d->transb),
                  (unsigned long long)B->rows, (unsigned long long)B->cols, (unsigned long long)bn, (unsigned long long)n);
  if (ak != bk)
    return refuse(fn, kInvalidValue, "op(A) is %llu x %llu but op(B) is %llu x %llu: inner dimensions differ", (unsigned long long)am,
                  (unsigned long long)ak, (unsigned long long)bk, (unsigned long long)bn);
  if (C->rows != m || C->cols != n)
    return refuse(fn, kInvalidValue, "C is %llu x %llu, D is %llu x %llu", (unsigned long long)C->rows, (unsigned long long)C->cols,
                  (unsigned long long)m, (unsigned long long)n);
  if (A->batch != D->batch || B->batch != D->batch || C->batch != D->batch)
    return refuse(fn, kInvalidValue, "batch counts differ: A %d, B %d, C %d, D %d (share an operand with stride 0 instead)", A->batch, B->batch,
                  C->batch, D->batch);
  if (D->batch > 1 && uint64_t(D->stride) < uint64_t(D->ld) * D->cols)
    return refuse(fn, kInvalidValue, "D's strided batch offset %lld < ld * cols = %llu: the batches of D overlap", (long long)D->stride,
                  (unsigned long long)(uint64_t(D->ld) * D->cols));
  if (has_bias(d->epilogue) && d->bias_stride != 0 && D->batch > 1 && uint64_t(d->bias_stride) < m)
    return refuse(fn, kInvalidValue, "bias batch stride %lld < m = %llu (0 shares one bias)", (long long)d->bias_stride, (unsigned long long)m);
  *p = {m, n, ak, D->batch};
  return kSuccess;
}

uint64_t fnv(uint64_t h, uint64_t v) {
  for (int i = 0; i < 8; ++i) h = (h ^ ((v >> (8 * i)) & 0xff)) * 0x100000001b3ull;
  return h;
}
// What an algorithm was chosen for: every field of the descriptor's operation and the layouts.
uint64_t signature(const LtDesc* d, const LtLayout* const ls[4]) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (uint64_t v : {uint64_t(d->compute), uint64_t(d->transa), uint64_t(d->transb), uint64_t(d->epilogue)}) h = fnv(h, v);
  for (int i = 0; i < 4; ++i)
    for (uint64_t v : {ls[i]->rows, ls[i]->cols, uint64_t(ls[i]->ld), uint64_t(ls[i]->batch), uint64_t(ls[i]->stride)}) h = fnv(h, v);
  return h;
}

// The algorithm's 64 bytes: magic, problem signature, workspace need, alignments, m, n, k.
MatmulAlgo make_algo(uint64_t sig, uint64_t need, const LtPref* pref, const Problem& p) {
  MatmulAlgo a{};
  a.data[0] = kAlgoMagic;
  a.data[1] = sig;
  a.data[2] = need;
  a.data[3] = uint64_t(pref->align[0]) | uint64_t(pref->align[1]) << 32;
  a.data[4] = uint64_t(pref->align[2]) | uint64_t(pref->align[3]) << 32;
  a.data[5] = p.m;
  a.data[6] = p.n;
  a.data[7] = p.k;
  return a;
}

uint64_t workspace_need(const Problem& p, const LtPref* pref) {
  return p.k >= kSplitKMinK && pref->max_workspace >= kSplitKWorkspace ? kSplitKWorkspace : 0;
}

bool env_flag(const char* name) {
  const char* e = std::getenv(name);
  return e && *e && std::strcmp(e, "0") != 0;
}

std::mutex g_log_mutex;

void log_call(const LtDesc* d, const Problem& p) {
  const char* path = std::getenv("CALMOE_FAKE_CUBLASLT_LOG");
  if (!path || !*path) return;
  std::lock_guard<std::mutex> lock(g_log_mutex);
  FILE* f = std::fopen(path, "a");
  if (!f) {
    std::fprintf(stderr, "fake-cublaslt: cannot append to CALMOE_FAKE_CUBLASLT_LOG=%s\n", path);
    return;
  }
  std::fprintf(f, "matmul m=%llu n=%llu k=%llu transa=%s transb=%s batch=%d epilogue=%s compute=%s\n", (unsigned long long)p.m,
               (unsigned long long)p.n, (unsigned long long)p.k, op_name(d->transa), op_name(d->transb), p.batch, epilogue_name(d->epilogue),
               compute_name(d->compute));
  std::fclose(f);
}

// Create and Destroy of the four kinds of object: a NULL out-pointer, or an object that is not live
// (never created, or destroyed: its magic is overwritten first), is refused.
template <class T>
Status create_object(const char* fn, const char* what, T** out, const T& init) {
  if (!out) return refuse(fn, kInvalidValue, "%s pointer is NULL", what);
  *out = new T(init);
  return kSuccess;
}
template <class T>
Status destroy_object(const char* fn, const char* what, T* obj, uint32_t magic, Status refusal = kInvalidValue) {
  if (!obj || obj->magic != magic) return refuse(fn, refusal, "%s is NULL or already destroyed", what);
  obj->magic = kDead;
  delete obj;
  return kSuccess;
}

// One attribute of SetAttribute: the size must be the attribute's own, then `check` may refuse the
// value (returning a status), else it is stored.
template <class T, class Check>
Status set_attr(const char* fn, const char* name, const void* buf, std::size_t size, T* field, Check check) {
  if (size != sizeof(T)) return refuse(fn, kInvalidValue, "%s: size %zu, the attribute holds %zu bytes", name, size, sizeof(T));
  T v;
  std::memcpy(&v, buf, sizeof(T));
  if (const Status s = check(v)) return s;
  *field = v;
  return kSuccess;
}
template <class T>
Status set_attr(const char* fn, const char* name, const void* buf, std::size_t size, T* field) {
  return set_attr(fn, name, buf, size, field, [](T) { return kSuccess; });
}
// What every SetAttribute checks first: a live object and a buffer.
Status attr_call(const char* fn, bool live, const char* what, const void* buf, int32_t attr) {
  if (!live) return refuse(fn, kInvalidValue, "%s is NULL or destroyed", what);
  if (!buf) return refuse(fn, kInvalidValue, "attribute %d: buf is NULL", attr);
  return kSuccess;
}

}  // namespace

// ---- the exported entry points ------------------------------------------------------------------------
FAKE_EXPORT const int calmoe_fake_cublaslt = 1;

FAKE_EXPORT std::size_t cublasLtGetVersion() { return faults().version; }

FAKE_EXPORT Status cublasLtCreate(Handle* h) { return create_object("cublasLtCreate", "handle", h, LtContext{kHandleMagic}); }

FAKE_EXPORT Status cublasLtDestroy(Handle h) { return destroy_object("cublasLtDestroy", "handle", h, kHandleMagic, kNotInitialized); }

FAKE_EXPORT Status cublasLtMatmulDescCreate(MatmulDesc* d, int32_t computeType, int32_t scaleType) {
  return create_object("cublasLtMatmulDescCreate", "descriptor", d, LtDesc{kDescMagic, computeType, scaleType});
}

FAKE_EXPORT Status cublasLtMatmulDescDestroy(MatmulDesc d) { return destroy_object("cublasLtMatmulDescDestroy", "descriptor", d, kDescMagic); }

FAKE_EXPORT Status cublasLtMatmulDescSetAttribute(MatmulDesc d, int32_t attr, const void* buf, std::size_t size) {
  const char* fn = "cublasLtMatmulDescSetAttribute";
  if (const Status s = attr_call(fn, d && d->magic == kDescMagic, "descriptor", buf, attr)) return s;
  switch (attr) {
    case kDescComputeType: return set_attr(fn, "CUBLASLT_MATMUL_DESC_COMPUTE_TYPE", buf, size, &d->compute);
    case kDescScaleType: return set_attr(fn, "CUBLASLT_MATMUL_DESC_SCALE_TYPE", buf, size, &d->scale);
    case kDescTransA:
    case kDescTransB: {
      const char* name = attr == kDescTransA ? "CUBLASLT_MATMUL_DESC_TRANSA" : "CUBLASLT_MATMUL_DESC_TRANSB";
      return set_attr(fn, name, buf, size, attr == kDescTransA ? &d->transa : &d->transb, [&](int32_t v) {
        if (v < 0 || v > 2) return refuse(fn, kInvalidValue, "%s: %d is not a cublasOperation_t", name, v);
        if (v == 2) return refuse(fn, kNotSupported, "%s: CUBLAS_OP_C is not modelled by the fake (N and T are)", name);
        return kSuccess;
      });
    }
    case kDescEpilogue:
      return set_attr(fn, "CUBLASLT_MATMUL_DESC_EPILOGUE", buf, size, &d->epilogue, [&](uint32_t v) {
        return v == kEpilogueDefault || v == kEpilogueRelu || v == kEpilogueBias || v == kEpilogueReluBias
                   ? kSuccess
                   : refuse(fn, kNotSupported, "CUBLASLT_MATMUL_DESC_EPILOGUE: %u is not modelled by the fake (DEFAULT 1, RELU 2, BIAS 4, RELU_BIAS 6)", v);
      });
    case kDescBiasPointer: return set_attr(fn, "CUBLASLT_MATMUL_DESC_BIAS_POINTER", buf, size, &d->bias);
    case kDescBiasBatchStride:
      return set_attr(fn, "CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE", buf, size, &d->bias_stride, [&](int64_t v) {
        return v >= 0 ? kSuccess : refuse(fn, kInvalidValue, "CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE: %lld < 0", (long long)v);
      });
    default:
      return refuse(fn, kNotSupported, "descriptor attribute %d is not modelled by the fake (calmoe uses 0, 1, 3, 4, 7, 8, 10)", attr);
  }
}

FAKE_EXPORT Status cublasLtMatrixLayoutCreate(MatrixLayout* l, int32_t type, uint64_t rows, uint64_t cols, int64_t ld) {
  return create_object("cublasLtMatrixLayoutCreate", "layout", l, LtLayout{kLayoutMagic, uint32_t(type), kOrderCol, rows, cols, ld});
}

FAKE_EXPORT Status cublasLtMatrixLayoutDestroy(MatrixLayout l) { return destroy_object("cublasLtMatrixLayoutDestroy", "layout", l, kLayoutMagic); }

FAKE_EXPORT Status cublasLtMatrixLayoutSetAttribute(MatrixLayout l, int32_t attr, const void* buf, std::size_t size) {
  const char* fn = "cublasLtMatrixLayoutSetAttribute";
  if (const Status s = attr_call(fn, l && l->magic == kLayoutMagic, "layout", buf, attr)) return s;
  switch (attr) {
    case kLayoutType: return set_attr(fn, "CUBLASLT_MATRIX_LAYOUT_TYPE", buf, size, &l->type);
    case kLayoutOrder:
      return set_attr(fn, "CUBLASLT_MATRIX_LAYOUT_ORDER", buf, size, &l->order, [&](int32_t v) {
        return v == kOrderCol ? kSuccess : refuse(fn, kNotSupported, "CUBLASLT_MATRIX_LAYOUT_ORDER: %d is not modelled by the fake (COL 0 is)", v);
      });
    case kLayoutRows: return set_attr(fn, "CUBLASLT_MATRIX_LAYOUT_ROWS", buf, size, &l->rows);
    case kLayoutCols: return set_attr(fn, "CUBLASLT_MATRIX_LAYOUT_COLS", buf, size, &l->cols);
    case kLayoutLd: return set_attr(fn, "CUBLASLT_MATRIX_LAYOUT_LD", buf, size, &l->ld);
    case kLayoutBatchCount:
      return set_attr(fn, "CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT", buf, size, &l->batch, [&](int32_t v) {
        return v >= 1 ? kSuccess : refuse(fn, kInvalidValue, "CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT: %d < 1", v);
      });
    case kLayoutStridedBatchOffset:
      return set_attr(fn, "CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET", buf, size, &l->stride, [&](int64_t v) {
        return v >= 0 ? kSuccess : refuse(fn, kInvalidValue, "CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET: %lld < 0", (long long)v);
      });
    default:
      return refuse(fn, kNotSupported, "layout attribute %d is not modelled by the fake (calmoe uses 0..6)", attr);
  }
}

FAKE_EXPORT Status cublasLtMatmulPreferenceCreate(Preference* p) {
  return create_object("cublasLtMatmulPreferenceCreate", "preference", p, LtPref{kPrefMagic});
}

FAKE_EXPORT Status cublasLtMatmulPreferenceDestroy(Preference p) {
  return destroy_object("cublasLtMatmulPreferenceDestroy", "preference", p, kPrefMagic);
}

FAKE_EXPORT Status cublasLtMatmulPreferenceSetAttribute(Preference p, int32_t attr, const void* buf, std::size_t size) {
  const char* fn = "cublasLtMatmulPreferenceSetAttribute";
  if (const Status s = attr_call(fn, p && p->magic == kPrefMagic, "preference", buf, attr)) return s;
  switch (attr) {
    case kPrefSearchMode:
      return set_attr(fn, "CUBLASLT_MATMUL_PREF_SEARCH_MODE", buf, size, &p->search, [&](uint32_t v) {
        return v == 0 ? kSuccess : refuse(fn, kNotSupported, "CUBLASLT_MATMUL_PREF_SEARCH_MODE: %u is not modelled by the fake (BEST_FIT 0 is)", v);
      });
    case kPrefMaxWorkspaceBytes: return set_attr(fn, "CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES", buf, size, &p->max_workspace);
    case kPrefMinAlignmentA:
    case kPrefMinAlignmentB:
    case kPrefMinAlignmentC:
    case kPrefMinAlignmentD: {
      static const char* const names[4] = {"CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES", "CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES",
                                           "CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES", "CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES"};
      const int i = attr - kPrefMinAlignmentA;
      return set_attr(fn, names[i], buf, size, &p->align[i], [&](uint32_t v) {
        return v != 0 && (v & (v - 1)) == 0 ? kSuccess : refuse(fn, kInvalidValue, "%s: %u is not a power of two", names[i], v);
      });
    }
    default:
      return refuse(fn, kNotSupported, "preference attribute %d is not modelled by the fake (calmoe uses 0, 1, 5..8)", attr);
  }
}

FAKE_EXPORT Status cublasLtMatmulAlgoGetHeuristic(Handle h, MatmulDesc d, MatrixLayout A, MatrixLayout B, MatrixLayout C, MatrixLayout D,
                                                  Preference pref, int requested, HeuristicResult* results, int* returned) {
  const char* fn = "cublasLtMatmulAlgoGetHeuristic";
  if (returned) *returned = 0;
  if (!returned || !results) return refuse(fn, kInvalidValue, "heuristicResultsArray or returnAlgoCount is NULL");
  if (requested <= 0) return refuse(fn, kInvalidValue, "requestedAlgoCount %d <= 0", requested);
  if (!pref || pref->magic != kPrefMagic) return refuse(fn, kInvalidValue, "preference is NULL or destroyed");
  Problem p{};
  if (Status s = check_problem(fn, h, d, A, B, C, D, &p)) return s;
  if (faults().noalgo) return refuse(fn, kNotSupported, "no algorithm (CALMOE_FAKE_CUBLASLT=noalgo)");
  const LtLayout* ls[4] = {A, B, C, D};
  const uint64_t need = workspace_need(p, pref);
  HeuristicResult r{};
  r.algo = make_algo(signature(d, ls), need, pref, p);
  r.workspaceSize = need;
  r.state = kSuccess;
  r.wavesCount = 1.0f;
  results[0] = r;
  *returned = 1;
  return kSuccess;
}

FAKE_EXPORT Status cublasLtMatmul(Handle h, MatmulDesc d, const void* alpha, const void* A, MatrixLayout Al, const void* B, MatrixLayout Bl,
                                  const void* beta, const void* C, MatrixLayout Cl, void* D, MatrixLayout Dl, const MatmulAlgo* algo,
                                  void* workspace, std::size_t workspaceBytes, Stream /*stream*/) {
  const char* fn = "cublasLtMatmul";
  Problem p{};
  if (Status s = check_problem(fn, h, d, Al, Bl, Cl, Dl, &p)) return s;
  const LtLayout* ls[4] = {Al, Bl, Cl, Dl};
  // No algorithm: the documented implicit heuristic query with default preferences.
  MatmulAlgo implicit{};
  if (!algo) {
    if (faults().noalgo) return refuse(fn, kNotSupported, "algo NULL and the implicit heuristic finds none (CALMOE_FAKE_CUBLASLT=noalgo)");
    LtPref defaults{kPrefMagic};
    implicit = make_algo(signature(d, ls), workspace_need(p, &defaults), &defaults, p);
    algo = &implicit;
  }
  if (algo->data[0] != kAlgoMagic) return refuse(fn, kInvalidValue, "algo was not returned by cublasLtMatmulAlgoGetHeuristic");
  if (algo->data[1] != signature(d, ls))
    return refuse(fn, kInvalidValue, "algo was chosen for another problem (m=%llu n=%llu k=%llu, or other layouts/descriptor); this call is m=%llu n=%llu k=%llu",
                  (unsigned long long)algo->data[5], (unsigned long long)algo->data[6], (unsigned long long)algo->data[7], (unsigned long long)p.m,
                  (unsigned long long)p.n, (unsigned long long)p.k);
  if (!alpha || !beta) return refuse(fn, kInvalidValue, "alpha or beta is NULL");
  const void* ptrs[4] = {A, B, C, D};
  const char* names[4] = {"A", "B", "C", "D"};
  const uint32_t align[4] = {uint32_t(algo->data[3]), uint32_t(algo->data[3] >> 32), uint32_t(algo->data[4]), uint32_t(algo->data[4] >> 32)};
  for (int i = 0; i < 4; ++i) {
    if (!ptrs[i]) return refuse(fn, kInvalidValue, "%s is NULL", names[i]);
    const uintptr_t u = reinterpret_cast<uintptr_t>(ptrs[i]);
    const uint32_t need = align[i] < 4 ? 4 : align[i];
    if (u % need != 0)
      return refuse(fn, kInvalidValue, "%s = %p is not aligned to %u bytes (CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_%s_BYTES%s)", names[i], ptrs[i], need,
                    names[i], align[i] == 256 ? ", default 256" : "");
  }
  if (C == D && (Cl->ld != Dl->ld || Cl->stride != Dl->stride))
    return refuse(fn, kInvalidValue, "in place (C == D) needs the same layout: C ld %lld stride %lld, D ld %lld stride %lld", (long long)Cl->ld,
                  (long long)Cl->stride, (long long)Dl->ld, (long long)Dl->stride);
  const bool bias_epilogue = has_bias(d->epilogue);
  if (bias_epilogue && !d->bias) return refuse(fn, kInvalidValue, "epilogue %s without CUBLASLT_MATMUL_DESC_BIAS_POINTER", epilogue_name(d->epilogue));
  if (!bias_epilogue && d->bias)
    return refuse(fn, kInvalidValue, "CUBLASLT_MATMUL_DESC_BIAS_POINTER set but epilogue %s adds no bias (cuBLASLt would ignore it)",
                  epilogue_name(d->epilogue));
  if (bias_epilogue && reinterpret_cast<uintptr_t>(d->bias) % 4 != 0) return refuse(fn, kInvalidValue, "bias %p is not float-aligned", d->bias);
  const uint64_t ws_need = algo->data[2];
  if (workspaceBytes < ws_need)
    return refuse(fn, kInvalidValue, "workspaceSizeInBytes %zu < %llu that the algo needs", workspaceBytes, (unsigned long long)ws_need);
  if (ws_need && !workspace) return refuse(fn, kInvalidValue, "workspace is NULL but the algo needs %llu bytes", (unsigned long long)ws_need);
  const Faults f = faults();
  if (f.unsupported) return refuse(fn, kNotSupported, "CALMOE_FAKE_CUBLASLT=unsupported");
  // The emulator's launch log and dry run (tools/cuda-emu/README.md): the call is listed among the
  // launches, and a dry run (full sizes) checks it but does not compute it.
  if (env_flag("EMU_LAUNCH_LOG") || env_flag("EMU_DRY_RUN"))
    std::fprintf(stderr, "emu-cublaslt m=%llu n=%llu k=%llu batch=%d %s%s %s %s\n", (unsigned long long)p.m, (unsigned long long)p.n,
                 (unsigned long long)p.k, p.batch, op_name(d->transa), op_name(d->transb), epilogue_name(d->epilogue), compute_name(d->compute));
  if (env_flag("EMU_DRY_RUN")) {
    log_call(d, p);
    return kSuccess;
  }

  // The algo's workspace: scribbled on, as a split-K algorithm would.
  if (ws_need) std::memset(workspace, 0xA5, ws_need);
  float a_s, b_s;
  std::memcpy(&a_s, alpha, 4);
  std::memcpy(&b_s, beta, 4);
  const uint64_t m = p.m, n = p.n, k = p.k;
  std::vector<float> opa(m * k), opb(k * n);  // op(A) by rows, op(B) by columns, rounded to the compute type
  const float* bias = static_cast<const float*>(d->bias);
  for (int32_t b = 0; b < p.batch; ++b) {
    const float* Ab = static_cast<const float*>(A) + b * Al->stride;
    const float* Bb = static_cast<const float*>(B) + b * Bl->stride;
    const float* Cb = static_cast<const float*>(C) + b * Cl->stride;
    float* Db = static_cast<float*>(D) + b * Dl->stride;
    for (uint64_t i = 0; i < m; ++i)
      for (uint64_t q = 0; q < k; ++q)
        opa[i * k + q] = round_operand(d->transa == kOpN ? Ab[i + q * Al->ld] : Ab[q + i * Al->ld], d->compute);
    for (uint64_t j = 0; j < n; ++j)
      for (uint64_t q = 0; q < k; ++q)
        opb[j * k + q] = round_operand(d->transb == kOpN ? Bb[q + j * Bl->ld] : Bb[j + q * Bl->ld], d->compute);
    const float* biasb = bias ? bias + b * d->bias_stride : nullptr;
    for (uint64_t j = 0; j < n; ++j) {
      for (uint64_t i = 0; i < m; ++i) {
        float acc = 0.0f;  // FP32, k increasing; fmaf as the tensor cores' FP32 accumulate
        const float* x = &opa[i * k];
        const float* y = &opb[j * k];
        for (uint64_t q = 0; q < k; ++q) acc = std::fmaf(x[q], y[q], acc);
        float v = a_s * acc;
        if (b_s != 0.0f) v = std::fmaf(b_s, Cb[i + j * Cl->ld], v);  // beta == 0: C is not read
        if (biasb) v = v + biasb[i];
        if (has_relu(d->epilogue)) v = v > 0.0f ? v : 0.0f;  // as cuBLASLt: ReLU(NaN) = 0
        Db[i + j * Dl->ld] = v;
      }
    }
    if (f.wrong) Db[0] += 1.0f;
  }
  log_call(d, p);
  return kSuccess;
}

// The exported signatures are exactly those calmoe's Api declares.
#define FAKE_CHECK_SIGNATURE(member, name) \
  static_assert(std::is_same<decltype(&name), decltype(Api::member)>::value, #name " differs from calmoe::lt::Api::" #member);
CALMOE_LT_ENTRY_POINTS(FAKE_CHECK_SIGNATURE)
#undef FAKE_CHECK_SIGNATURE
