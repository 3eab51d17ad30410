// Emulated asynchronous global-to-shared copies (<cuda_pipeline.h>'s primitives). A copy is only
// recorded when issued and is performed when a __pipeline_wait_prior leaves its batch behind, so
// shared memory read before the wait still holds what was there: a missing wait shows as wrong
// data (as it may on a GPU), not as luck. Alignment and size follow CUDA's rules (4, 8 or 16 bytes,
// both pointers aligned to the size, zfill <= size).
#pragma once
#include <cstddef>

namespace emu {
void pipeline_copy(void* dst, const void* src, std::size_t size, std::size_t zfill);
void pipeline_commit();
void pipeline_wait_prior(std::size_t prior);
}  // namespace emu

inline void __pipeline_memcpy_async(void* dst, const void* src, std::size_t size_and_align, std::size_t zfill = 0) {
  ::emu::pipeline_copy(dst, src, size_and_align, zfill);
}
inline void __pipeline_commit() { ::emu::pipeline_commit(); }
inline void __pipeline_wait_prior(std::size_t prior) { ::emu::pipeline_wait_prior(prior); }
