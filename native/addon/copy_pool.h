// Memory for the copies async calls make of their inputs (call_inputs.h). Fresh memory costs a
// page fault per page when first written, several times the copy itself (W3's 440 MB: 0.64 s
// fresh, 0.07 s into memory written before, on the 2-core EPYC VM of bench/results). So large
// buffers are kept after use and handed to the next copy that fits; a reaper thread frees those
// unused for kIdleSeconds, so a process that stops making async calls gets its memory back.
#pragma once
#include <cstddef>
#include <memory>

namespace calmoe::addon {

// A buffer of at least `bytes` (not zeroed). Dropping the last reference returns it to the pool.
std::shared_ptr<unsigned char> copy_buffer(std::size_t bytes);

}  // namespace calmoe::addon
