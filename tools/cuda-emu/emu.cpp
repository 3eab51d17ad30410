// The emulated CUDA runtime and block scheduler (see include/cuda_runtime.h).

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "cuda_pipeline.h"
#include "cuda_runtime.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define EMU_ASAN 1
#else
#define EMU_ASAN 0
#endif

namespace emu {
uint3 threadIdx_, blockIdx_;
dim3 blockDim_, gridDim_;

// x86-64 SysV stack switch: saves the callee-saved registers on the current stack, stores the
// stack pointer in *save, loads `to`, restores and returns into the other context.
extern "C" void emu_switch(void** save, void* to);
asm(R"(
.text
.globl emu_switch
.type emu_switch,@function
emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
.size emu_switch,.-emu_switch
)");

namespace {
constexpr std::size_t kStack = 256 * 1024;
// Run: runnable; Barrier: at __syncthreads; Warp: at a warp collective (op, mask, value, src)
enum class State { Run, Barrier, Warp, Done };
struct AsyncCopy {
  void* dst;
  const void* src;
  std::size_t bytes, zfill;
};
struct Fiber {
  void* sp = nullptr;
  char* stack = nullptr;
  bool done = false;
  State state = State::Run;
  emu::WarpOp op = emu::kWarpSync;
  unsigned mask = 0;
  uint64_t value = 0, result = 0;
  int src = 0;
  std::vector<AsyncCopy> pending;               // issued, not yet committed
  std::deque<std::vector<AsyncCopy>> batches;   // committed, not yet waited for
};
void* g_sched_sp = nullptr;
std::vector<Fiber> g_fibers;
// frees the fibers' stacks at exit (before g_fibers, defined earlier, is destroyed): LeakSanitizer
// would report them
struct FiberStacks {
  ~FiberStacks() {
    for (Fiber& f : g_fibers) std::free(f.stack);
  }
} g_fiber_stacks;
int g_cur = -1;
const std::function<void()>* g_body = nullptr;
std::vector<unsigned char> g_dyn;
cudaError_t g_last = cudaSuccess;
long long g_launches = 0;

#if EMU_ASAN
const void* g_sched_bottom = nullptr;
std::size_t g_sched_size = 0;
#endif

void to_scheduler(bool dying) {
  Fiber& f = g_fibers[std::size_t(g_cur)];
#if EMU_ASAN
  void* fake = nullptr;
  __sanitizer_start_switch_fiber(dying ? nullptr : &fake, g_sched_bottom, g_sched_size);
#endif
  (void)dying;
  emu_switch(&f.sp, g_sched_sp);
#if EMU_ASAN
  __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#endif
}

[[noreturn]] void trampoline() {
#if EMU_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &g_sched_bottom, &g_sched_size);
#endif
  (*g_body)();
  g_fibers[std::size_t(g_cur)].done = true;
  to_scheduler(true);
  std::abort();  // never resumed
}

void start(Fiber& f) {
  f.pending.clear();
  f.batches.clear();
#if EMU_ASAN
  ASAN_UNPOISON_MEMORY_REGION(f.stack, kStack);  // frames abandoned by the last fiber on this stack
#endif
  uintptr_t top = (reinterpret_cast<uintptr_t>(f.stack) + kStack) & ~uintptr_t(15);
  void** p = reinterpret_cast<void**>(top);
  *--p = nullptr;                                        // the trampoline's (never used) return address
  *--p = reinterpret_cast<void*>(&trampoline);           // where emu_switch's ret goes
  for (int r = 0; r < 6; ++r) *--p = nullptr;            // rbp rbx r12 r13 r14 r15
  f.sp = p;
  f.done = false;
}

void switch_to(Fiber& f) {
#if EMU_ASAN
  void* fake = nullptr;
  __sanitizer_start_switch_fiber(&fake, f.stack, kStack);
#endif
  emu_switch(&g_sched_sp, f.sp);
#if EMU_ASAN
  // back on the scheduler's stack; the bounds this call could report are the fiber's, not the
  // scheduler's (the trampoline records those), so they are not asked for
  __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#endif
}
}  // namespace

void syncthreads() {
  g_fibers[std::size_t(g_cur)].state = State::Barrier;
  to_scheduler(false);
}

uint64_t warp_collective(WarpOp op, unsigned mask, uint64_t value, int src_lane) {
  Fiber& f = g_fibers[std::size_t(g_cur)];
  f.state = State::Warp;
  f.op = op;
  f.mask = mask;
  f.value = value;
  f.src = src_lane;
  to_scheduler(false);
  return f.result;
}

void pipeline_copy(void* dst, const void* src, std::size_t size, std::size_t zfill) {
  const auto d = reinterpret_cast<std::uintptr_t>(dst), s = reinterpret_cast<std::uintptr_t>(src);
  if ((size != 4 && size != 8 && size != 16) || zfill > size || d % size != 0 || s % size != 0) {
    std::fprintf(stderr, "emu: __pipeline_memcpy_async(%p, %p, %zu, %zu): size must be 4, 8 or 16, both pointers aligned to it, zfill <= size\n", dst, src,
                 size, zfill);
    std::abort();
  }
  // EMU_COPIES=early: the copy lands at once, the earliest a GPU may perform it, so a stage
  // refilled while another thread may still read it shows; the default, late (at the wait that
  // leaves its batch behind), shows shared memory read before its copy landed
  static const bool early = [] {
    const char* e = std::getenv("EMU_COPIES");
    return e && std::strcmp(e, "early") == 0;
  }();
  if (early) {
    std::memcpy(dst, src, size - zfill);
    std::memset(static_cast<char*>(dst) + (size - zfill), 0, zfill);
    return;
  }
  g_fibers[std::size_t(g_cur)].pending.push_back({dst, src, size, zfill});
}

void pipeline_commit() {
  Fiber& f = g_fibers[std::size_t(g_cur)];
  f.batches.push_back(std::move(f.pending));
  f.pending.clear();
}

void pipeline_wait_prior(std::size_t prior) {
  Fiber& f = g_fibers[std::size_t(g_cur)];
  while (f.batches.size() > prior) {
    for (const AsyncCopy& c : f.batches.front()) {
      std::memcpy(c.dst, c.src, c.bytes - c.zfill);
      std::memset(static_cast<char*>(c.dst) + (c.bytes - c.zfill), 0, c.zfill);
    }
    f.batches.pop_front();
  }
}

namespace {
[[noreturn]] void warp_fault(unsigned warp, const char* what) {
  std::fprintf(stderr, "emu: warp %u of block (%u,%u,%u): %s\n", warp, blockIdx_.x, blockIdx_.y, blockIdx_.z, what);
  std::abort();
}

// Completes the warp collectives whose named lanes have all arrived; true if any completed.
bool resolve_warps(unsigned n) {
  bool any = false;
  for (unsigned w0 = 0; w0 < n; w0 += 32) {
    Fiber* lane = &g_fibers[w0];
    const unsigned lanes = std::min(32u, n - w0);
    for (unsigned l = 0; l < lanes; ++l) {
      if (lane[l].state != State::Warp) continue;
      const unsigned mask = lane[l].mask;
      if (mask == 0 || !(mask >> l & 1u)) warp_fault(w0 / 32, "a warp collective whose mask leaves out the calling lane");
      if (lanes < 32 && (mask >> lanes) != 0) warp_fault(w0 / 32, "a warp collective naming lanes that do not exist");
      bool ready = true;
      for (unsigned k = 0; k < lanes; ++k) {
        if (!(mask >> k & 1u)) continue;
        if (lane[k].state != State::Warp) { ready = false; break; }
        if (lane[k].op != lane[l].op || lane[k].mask != mask) warp_fault(w0 / 32, "lanes of one mask at different warp collectives (or with different masks)");
      }
      if (!ready) continue;
      uint64_t ballot = 0, sum = 0;
      for (unsigned k = 0; k < lanes; ++k)
        if (mask >> k & 1u) {
          if (lane[k].value) ballot |= 1ull << k;
          sum += lane[k].value;
        }
      for (unsigned k = 0; k < lanes; ++k) {
        if (!(mask >> k & 1u)) continue;
        Fiber& f = lane[k];
        switch (f.op) {
          case kWarpSync: f.result = 0; break;
          case kWarpBallot: f.result = ballot; break;
          case kWarpReduceAdd: f.result = uint32_t(sum); break;
          case kWarpShfl:
            if (f.src < 0 || unsigned(f.src) >= lanes || !(mask >> f.src & 1u)) warp_fault(w0 / 32, "a shuffle reading a lane outside the mask");
            f.result = lane[f.src].value;
            break;
          case kWarpMatchAny: {
            uint64_t m = 0;
            for (unsigned j = 0; j < lanes; ++j)
              if ((mask >> j & 1u) && lane[j].value == f.value) m |= 1ull << j;
            f.result = m;
            break;
          }
        }
      }
      for (unsigned k = 0; k < lanes; ++k)
        if (mask >> k & 1u) lane[k].state = State::Run;
      any = true;
    }
  }
  return any;
}
}  // namespace

// 128-byte aligned, as a GPU's dynamic shared memory (kernels declare __align__(128))
void* dynamic_shared() { return reinterpret_cast<void*>((reinterpret_cast<std::uintptr_t>(g_dyn.data()) + 127) & ~std::uintptr_t(127)); }

void trap() {
  std::fprintf(stderr, "emu: __trap() in block (%u,%u,%u) thread (%u,%u,%u)\n", blockIdx_.x, blockIdx_.y, blockIdx_.z, threadIdx_.x, threadIdx_.y,
               threadIdx_.z);
  std::abort();
}

// EMU_LAUNCH_LOG=1: every launch, copy and memset on stderr ("emu-launch name blocks threads
// shmem" / "emu-copy kind bytes" / "emu-memset bytes"); EMU_DRY_RUN=1: kernels are not run
bool env_flag(const char* name) {
  const char* e = std::getenv(name);
  return e && *e && std::strcmp(e, "0") != 0;
}
const bool g_log = env_flag("EMU_LAUNCH_LOG") || env_flag("EMU_DRY_RUN");
const bool g_dry = env_flag("EMU_DRY_RUN");
// EMU_SMS=N: the multiprocessors the emulated card reports (4 unless set; 132 as an H100/H200
// gives a dry run the launch shapes of that card)
int sm_count() {
  static const int n = [] {
    const char* e = std::getenv("EMU_SMS");
    const int v = e ? std::atoi(e) : 0;
    return v > 0 ? v : 4;
  }();
  return n;
}

// The emulated card's compute capability major (EMU_CC_MAJOR: 8 or 9 run the tensor-core paths;
// 7 unless set) and its dynamic shared memory per block with opt-in (227 KB from sm_80 on, as
// sm_90; 64 KB on sm_75)
int cc_major() {
  const char* cc = std::getenv("EMU_CC_MAJOR");
  return cc ? std::atoi(cc) : 7;
}
std::size_t max_shared_optin() { return cc_major() >= 8 ? 227 * 1024 : 64 * 1024; }

void launch(const char* name, dim3 grid, dim3 block, std::size_t shmem, const std::function<void()>& body) {
  ++g_launches;
  const unsigned n = block.x * block.y * block.z;
  if (g_log)
    std::fprintf(stderr, "emu-launch %s %llu %u %zu\n", name, (unsigned long long)grid.x * grid.y * grid.z, n, shmem);
  // checked in dry runs too: their sizes are where grids and tiles grow past the limits
  if (n == 0 || n > 1024 || grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.y > 65535 || grid.z > 65535) {
    std::fprintf(stderr, "emu: invalid launch grid (%u,%u,%u) block (%u,%u,%u)\n", grid.x, grid.y, grid.z, block.x, block.y, block.z);
    g_last = cudaErrorInvalidValue;
    return;
  }
  if (shmem > max_shared_optin()) {
    std::fprintf(stderr, "emu: %s asks for %zu bytes of dynamic shared memory; the card allows %zu\n", name, shmem, max_shared_optin());
    g_last = cudaErrorInvalidValue;
    return;
  }
  if (g_dry && !std::strstr(name, "probe")) return;  // probes run: they say which kernels the card has
  static bool noted = false;
  if (shmem > 48 * 1024 && !noted) {
    std::fprintf(stderr, "emu: note: %zu bytes of dynamic shared memory (needs cudaFuncSetAttribute on a GPU)\n", shmem);
    noted = true;
  }
  g_dyn.assign(std::max<std::size_t>(shmem, 16) + 128, 0xFF);
  if (g_fibers.size() < n) g_fibers.resize(n);
  for (auto& f : g_fibers)
    if (!f.stack) f.stack = static_cast<char*>(std::malloc(kStack));
  gridDim_ = grid;
  blockDim_ = block;
  g_body = &body;
  // EMU_ORDER=reverse|shuffle runs blocks and the threads of each barrier phase in another order:
  // results that change with it reveal order-dependent code (races on a GPU)
  static const int order = [] {
    const char* e = std::getenv("EMU_ORDER");
    return e && std::strcmp(e, "reverse") == 0 ? 1 : e && std::strcmp(e, "shuffle") == 0 ? 2 : 0;
  }();
  static uint64_t rng = 0x9e3779b97f4a7c15ull;
  auto next = [] { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng; };
  const uint64_t blocks = uint64_t(grid.x) * grid.y * grid.z;
  std::vector<uint64_t> border(blocks);
  for (uint64_t b = 0; b < blocks; ++b) border[b] = order == 1 ? blocks - 1 - b : b;
  if (order == 2) for (uint64_t b = blocks; b > 1; --b) std::swap(border[b - 1], border[next() % b]);
  std::vector<unsigned> torder(n);
  for (uint64_t bi = 0; bi < blocks; ++bi) {
    const uint64_t b = border[bi];
    const unsigned bx = unsigned(b % grid.x), by = unsigned((b / grid.x) % grid.y), bz = unsigned(b / (uint64_t(grid.x) * grid.y));
    blockIdx_ = {bx, by, bz};
    for (unsigned t = 0; t < n; ++t) {
      start(g_fibers[t]);
      g_fibers[t].state = State::Run;
    }
    unsigned live = n, finished = 0;  // finished: threads that exited since the last barrier
    while (live > 0) {
      // run every runnable thread until it reaches a barrier, a warp collective or its end
      for (unsigned t = 0; t < n; ++t) torder[t] = order == 1 ? n - 1 - t : t;
      if (order == 2) for (unsigned t = n; t > 1; --t) std::swap(torder[t - 1], torder[next() % t]);
      for (unsigned ti = 0; ti < n; ++ti) {
        const unsigned t = torder[ti];
        Fiber& f = g_fibers[t];
        if (f.state != State::Run) continue;
        g_cur = int(t);
        threadIdx_ = {t % block.x, (t / block.x) % block.y, t / (block.x * block.y)};
        switch_to(f);
        if (f.done) {
          f.state = State::Done;
          ++finished;
          --live;
        }
      }
      if (resolve_warps(n)) continue;
      unsigned at_barrier = 0;
      for (unsigned t = 0; t < n; ++t) {
        at_barrier += g_fibers[t].state == State::Barrier;
        if (g_fibers[t].state == State::Warp) warp_fault(t / 32, "a warp collective some lanes of its mask never reach (they are at a barrier or exited)");
      }
      if (at_barrier && finished) {
        std::fprintf(stderr, "emu: divergent __syncthreads in block (%u,%u,%u): %u threads at a barrier, %u exited\n", bx, by, bz, at_barrier, finished);
        std::abort();
      }
      for (unsigned t = 0; t < n; ++t)
        if (g_fibers[t].state == State::Barrier) g_fibers[t].state = State::Run;
      finished = 0;
    }
  }
  g_cur = -1;
}
}  // namespace emu

namespace {
struct Event { std::chrono::steady_clock::time_point t; };
}

namespace {
// Device memory in use and its peak, reported at exit with EMU_LAUNCH_LOG / EMU_DRY_RUN (what a
// workload needs on the card; pinned host memory not counted)
struct DeviceMemory {
  std::mutex mu;
  std::unordered_map<void*, std::size_t> sizes;
  std::size_t live = 0, peak = 0;
};
// never destroyed: statics destroyed at exit may still free device memory
DeviceMemory& device_memory() {
  static DeviceMemory* m = [] {
    if (emu::g_log) std::atexit([] { std::fprintf(stderr, "emu-device-memory peak %zu bytes\n", device_memory().peak); });
    return new DeviceMemory();
  }();
  return *m;
}

cudaError_t allocate(void** p, std::size_t n) {
  *p = std::malloc(std::max<std::size_t>(n, 1));
  if (!*p) return cudaErrorMemoryAllocation;
  if (!emu::g_dry) std::memset(*p, 0xFF, n);  // a dry run leaves it untouched (sizes too large to fill)
  return cudaSuccess;
}
}  // namespace

cudaError_t cudaMalloc(void** p, std::size_t n) {
  const cudaError_t e = allocate(p, n);
  if (e == cudaSuccess) {
    DeviceMemory& m = device_memory();
    std::lock_guard<std::mutex> lock(m.mu);
    m.sizes[*p] = n;
    m.live += n;
    m.peak = std::max(m.peak, m.live);
  }
  return e;
}
cudaError_t cudaMallocHost(void** p, std::size_t n) { return allocate(p, n); }
cudaError_t cudaFree(void* p) {
  if (p) {
    DeviceMemory& m = device_memory();
    std::lock_guard<std::mutex> lock(m.mu);
    const auto it = m.sizes.find(p);
    if (it != m.sizes.end()) {
      m.live -= it->second;
      m.sizes.erase(it);
    }
  }
  std::free(p);
  return cudaSuccess;
}
cudaError_t cudaFreeHost(void* p) { std::free(p); return cudaSuccess; }
cudaError_t cudaMemcpy(void* d, const void* s, std::size_t n, cudaMemcpyKind k) {
  if (emu::g_log) std::fprintf(stderr, "emu-copy %d %zu\n", int(k), n);
  if (n) std::memmove(d, s, n);
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* d, const void* s, std::size_t n, cudaMemcpyKind k, cudaStream_t) { return cudaMemcpy(d, s, n, k); }
cudaError_t cudaMemcpy2D(void* d, std::size_t dpitch, const void* s, std::size_t spitch, std::size_t width, std::size_t height, cudaMemcpyKind) {
  if (width > dpitch || width > spitch) return cudaErrorInvalidValue;
  for (std::size_t r = 0; r < height; ++r) std::memmove(static_cast<char*>(d) + r * dpitch, static_cast<const char*>(s) + r * spitch, width);
  return cudaSuccess;
}
cudaError_t cudaMemset(void* p, int v, std::size_t n) {
  if (emu::g_log) std::fprintf(stderr, "emu-memset %zu\n", n);
  if (n && !emu::g_dry) std::memset(p, v, n);
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* p, int v, std::size_t n, cudaStream_t) { return cudaMemset(p, v, n); }
cudaError_t cudaMemGetInfo(std::size_t* f, std::size_t* t) { *f = std::size_t(1) << 34; *t = std::size_t(1) << 35; return cudaSuccess; }
cudaError_t cudaStreamCreate(cudaStream_t* s) { *s = reinterpret_cast<cudaStream_t>(new char(0)); return cudaSuccess; }
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned) { return cudaStreamCreate(s); }
cudaError_t cudaStreamDestroy(cudaStream_t s) { delete reinterpret_cast<char*>(s); return cudaSuccess; }
cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
cudaError_t cudaGetLastError() { const cudaError_t e = emu::g_last; emu::g_last = cudaSuccess; return e; }
const char* cudaGetErrorName(cudaError_t e) { return e == cudaSuccess ? "cudaSuccess" : "cudaErrorEmu"; }
const char* cudaGetErrorString(cudaError_t e) { return e == cudaSuccess ? "no error" : "emulated error"; }
cudaError_t cudaGetDeviceCount(int* n) { *n = 1; return cudaSuccess; }
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int) {
  std::memset(p, 0, sizeof *p);
  std::strcpy(p->name, "calmoe CPU emulator (sm_75)");
  p->totalGlobalMem = std::size_t(1) << 35;
  p->major = 7;
  p->minor = 5;
  p->multiProcessorCount = emu::sm_count();
  return cudaSuccess;
}
cudaError_t cudaRuntimeGetVersion(int* v) { *v = 13000; return cudaSuccess; }
cudaError_t cudaDriverGetVersion(int* v) { *v = 13000; return cudaSuccess; }
cudaError_t cudaSetDevice(int) { return cudaSuccess; }
cudaError_t cudaGetDevice(int* d) { *d = 0; return cudaSuccess; }
cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr a, int) {
  *v = a == cudaDevAttrMultiProcessorCount ? emu::sm_count() : a == cudaDevAttrComputeCapabilityMajor ? emu::cc_major()
     : a == cudaDevAttrMaxSharedMemoryPerBlockOptin ? int(emu::max_shared_optin()) : 5;
  return cudaSuccess;
}
cudaError_t cudaEventCreate(cudaEvent_t* e) { *e = reinterpret_cast<cudaEvent_t>(new Event()); return cudaSuccess; }
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned) { return cudaEventCreate(e); }
cudaError_t cudaStreamWaitEvent(cudaStream_t, cudaEvent_t e, unsigned) { return e ? cudaSuccess : cudaErrorInvalidValue; }
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t) { reinterpret_cast<Event*>(e)->t = std::chrono::steady_clock::now(); return cudaSuccess; }
cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t a, cudaEvent_t b) {
  *ms = std::chrono::duration<float, std::milli>(reinterpret_cast<Event*>(b)->t - reinterpret_cast<Event*>(a)->t).count();
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) { delete reinterpret_cast<Event*>(e); return cudaSuccess; }
