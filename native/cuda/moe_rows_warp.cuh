// The warp-per-row kernels of moe_rows_warp.cu, for moe_rows.cu's launchers.
#pragma once
#include <cuda_runtime.h>

#include "cuda/moe_rows.cuh"

namespace calmoe::cuda::moe_rows {

// The warp-per-row routing and head keep a row's K router weights or C class probabilities in
// registers, 8 per lane at most: wider rows go through the one-thread-per-row kernels.
constexpr int64_t kMaxWarpWidth = 256;

// The routing with a warp per row (softmax, argmax, selection, gates) up to kMaxWarpWidth experts;
// false (nothing queued) beyond.
bool route_warp(const Ctx& c, cudaStream_t stream);

// Expert softmax + mixture (+ losses when c.labels) with a warp per row; false (nothing queued)
// when c.C > kMaxWarpWidth.
bool head_warp(const Ctx& c, cudaStream_t stream);

}  // namespace calmoe::cuda::moe_rows
