#include "addon/async_task.h"

namespace calmoe::addon {

AsyncTask::AsyncTask(Napi::Env env, std::vector<Napi::Value> keep, Work work, Done done)
    : Napi::AsyncWorker(env, "calmoe"), deferred_(Napi::Promise::Deferred::New(env)), work_(std::move(work)), done_(std::move(done)) {
  for (auto& v : keep) keep_.push_back(Napi::Persistent(v));
}

Napi::Promise AsyncTask::Start(Napi::Env env, std::vector<Napi::Value> keep, Work work, Done done) {
  auto* task = new AsyncTask(env, std::move(keep), std::move(work), std::move(done));
  Napi::Promise p = task->deferred_.Promise();
  task->Queue();  // deleted by node-addon-api after OnOK / OnError
  return p;
}

void AsyncTask::Execute() {
  try {
    work_();
  } catch (const calmoe::Error& e) {
    failed_ = true;
    kind_ = e.kind();
    message_ = e.what();
    code_ = e.code();
  } catch (const std::bad_alloc&) {
    failed_ = true;
    message_ = "calmoe: out of host memory";
    code_ = "CALMOE_OOM";
  } catch (const std::exception& e) {
    failed_ = true;
    message_ = std::string("calmoe: ") + e.what();
    code_ = "CALMOE_RUNTIME";
  }
}

void AsyncTask::OnOK() {
  Napi::Env env = Env();
  Napi::HandleScope scope(env);
  try {
    Settle(env);
  } catch (const Napi::Error&) {
    // JS is being stopped (worker.terminate()): no one is left to settle the promise for
  }
}

void AsyncTask::Settle(Napi::Env env) {
  if (failed_) {
    deferred_.Reject(to_js_error(env, kind_, message_, code_).Value());
    return;
  }
  try {
    deferred_.Resolve(done_(env));
  } catch (const Napi::Error& e) {
    deferred_.Reject(e.Value());
  } catch (const calmoe::Error& e) {
    deferred_.Reject(to_js_error(env, e.kind(), e.what(), e.code()).Value());
  }
}

void AsyncTask::OnError(const Napi::Error& e) { deferred_.Reject(e.Value()); }

}  // namespace calmoe::addon
