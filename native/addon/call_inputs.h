// Who owns an input while a call reads it. A synchronous call reads the caller's typed arrays in
// place: no JavaScript runs until it returns. An async call copies them when it starts, on the
// main thread, so its worker reads memory the call owns: the caller may transfer (detach), shrink,
// overwrite or drop its buffers at any moment and the result is still the one on the data as it
// was at the call, never a read of freed memory. Outputs are arrays the call allocates itself and
// hands to JavaScript only when it settles, so they need no copy. The copy runs on the CPU worker
// threads into pooled memory (copy_pool.h): its cost is bench/async-inputs.ts's async vs sync.
// One exception: an async calibration histogram update on the CPU makes its single pass over the
// inputs during the call instead of copying them (calibration_binding.cpp, run_update).
#pragma once
#include <cstddef>
#include <cstring>
#include <memory>
#include <vector>

#include "addon/args.h"
#include "addon/copy_pool.h"
#include "calmoe/device.h"

namespace calmoe::addon {

class CallInputs {
 public:
  explicit CallInputs(bool copy) : copy_(copy) {}

  // The memory a core call may read for `v`: v itself (sync) or a copy owned by this object.
  template <class T>
  const T* hold(View<const T> v) {
    if (!copy_ || v.data == nullptr) return v.data;
    std::shared_ptr<unsigned char> owned = copy_buffer(v.length * sizeof(T));  // new or aligned reuse
    host_copy(owned.get(), v.data, v.length * sizeof(T));
    const T* p = reinterpret_cast<const T*>(owned.get());
    copies_.push_back(std::move(owned));
    return p;
  }
  template <class T>
  const T* hold(View<T> v) { return hold(View<const T>{v.data, v.length}); }

  bool copies() const { return copy_; }

 private:
  bool copy_;
  std::vector<std::shared_ptr<unsigned char>> copies_;
};

}  // namespace calmoe::addon
