// backendInfo(), setThreads(n), getThreads(), resetCudaMemoryPeak().
#include "addon/args.h"
#include "addon/bindings.h"
#include "addon/js_error.h"
#include "calmoe/device.h"
#include "calmoe/limits.h"

namespace calmoe::addon {
namespace {

Napi::Value Info(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    const BackendInfo b = backend_info();
    Napi::Object o = Napi::Object::New(env);
    o.Set("cudaCompiled", b.cuda_compiled);
    o.Set("cudaArchitectures", b.cuda_architectures);
    o.Set("cudaRuntimeVersion", b.cuda_runtime_version);
    o.Set("cudaDriverVersion", b.cuda_driver_version);
    Napi::Array gpus = Napi::Array::New(env, b.gpus.size());
    for (std::size_t i = 0; i < b.gpus.size(); ++i) {
      Napi::Object g = Napi::Object::New(env);
      g.Set("index", b.gpus[i].index);
      g.Set("name", b.gpus[i].name);
      g.Set("memoryBytes", double(b.gpus[i].total_memory));
      g.Set("computeCapability", std::to_string(b.gpus[i].cc_major) + "." + std::to_string(b.gpus[i].cc_minor));
      g.Set("multiprocessors", b.gpus[i].multiprocessors);
      gpus.Set(uint32_t(i), g);
    }
    o.Set("gpus", gpus);
    o.Set("cudaUnavailableReason", b.cuda_unavailable_reason);
    o.Set("cpuThreads", b.cpu_threads);
    o.Set("simd", b.simd);
    o.Set("gemm", b.gemm);
    o.Set("blasAvailable", b.blas_available);
    if (b.cuda_compiled) {
      Napi::Object g = Napi::Object::New(info.Env());
      g.Set("library", b.cuda_gemm);
      g.Set("path", b.cuda_gemm_library.empty() ? info.Env().Null() : Napi::String::New(info.Env(), b.cuda_gemm_library));
      g.Set("origin", b.cuda_gemm_library_origin.empty() ? info.Env().Null() : Napi::String::New(info.Env(), b.cuda_gemm_library_origin));
      g.Set("version", b.cuda_gemm_library_version.empty() ? info.Env().Null() : Napi::String::New(info.Env(), b.cuda_gemm_library_version));
      g.Set("reason", b.cuda_gemm_reason.empty() ? info.Env().Null() : Napi::String::New(info.Env(), b.cuda_gemm_reason));
      g.Set("fallbacks", double(b.cuda_gemm_fallbacks));
      o.Set("cudaGemm", g);
    } else {
      o.Set("cudaGemm", info.Env().Null());
    }
    o.Set("cudaMemoryBytes", double(b.cuda_memory_bytes));
    o.Set("cudaMemoryPeakBytes", double(b.cuda_memory_peak_bytes));
    return o;
  });
}

Napi::Value SetThreads(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    set_cpu_threads(int(integer(arg(info, 0, "threads"), "threads", 1, limits::kMaxThreads)));
    return info.Env().Undefined();
  });
}

Napi::Value ResetCudaMemoryPeak(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    reset_cuda_memory_peak();
    return info.Env().Undefined();
  });
}

Napi::Value GetThreads(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), cpu_threads()); }

}  // namespace

void register_backend(Napi::Env env, Napi::Object exports) {
  exports.Set("backendInfo", Napi::Function::New(env, Info, "backendInfo"));
  exports.Set("setThreads", Napi::Function::New(env, SetThreads, "setThreads"));
  exports.Set("getThreads", Napi::Function::New(env, GetThreads, "getThreads"));
  exports.Set("resetCudaMemoryPeak", Napi::Function::New(env, ResetCudaMemoryPeak, "resetCudaMemoryPeak"));
}

}  // namespace calmoe::addon
