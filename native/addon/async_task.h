// Running a core call off the event loop (sharp-style AsyncWorker): `work` runs on a libuv thread
// with no JS access and reads only memory the task owns (its inputs are copies, call_inputs.h), and
// `done` builds the result on the main thread. Core errors reject the promise with the same
// TypeError / RangeError / Error (and code) as the synchronous call would throw.
#pragma once
#include <napi.h>

#include <functional>
#include <string>
#include <vector>

#include "addon/js_error.h"

namespace calmoe::addon {

class AsyncTask : public Napi::AsyncWorker {
 public:
  using Work = std::function<void()>;
  using Done = std::function<Napi::Value(Napi::Env)>;

  // Queues the task and returns its promise. `keep` are the JS outputs `work` fills: arrays the
  // call allocated, unreachable from JS until `done` returns them.
  static Napi::Promise Start(Napi::Env env, std::vector<Napi::Value> keep, Work work, Done done);

 private:
  AsyncTask(Napi::Env env, std::vector<Napi::Value> keep, Work work, Done done);
  void Execute() override;
  void OnOK() override;
  void Settle(Napi::Env env);
  void OnError(const Napi::Error& e) override;

  Napi::Promise::Deferred deferred_;
  std::vector<Napi::Reference<Napi::Value>> keep_;
  Work work_;
  Done done_;
  ErrorKind kind_ = ErrorKind::Runtime;
  std::string message_, code_;
  bool failed_ = false;
};

}  // namespace calmoe::addon
