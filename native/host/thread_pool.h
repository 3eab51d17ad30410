// A small persistent thread pool (host code both backends use: the CPU backend's kernels, the
// CUDA backend's host-side work). The calling thread takes part in the work;
// several callers (e.g. N-API async workers) may run jobs at once; a parallel_for called from
// inside a task runs inline, so nesting never deadlocks. Pool threads run each job in its caller's
// floating-point mode (flush-to-zero / denormals-are-zero, core/float_mode.h), so results do not
// depend on which thread ran which task, and a caller's own mode is never changed.
#pragma once
#include <cstdint>
#include <functional>

namespace calmoe::cpu {

// Runs fn(task, worker) for every task in [0, n_tasks). No two tasks run at the same time with
// the same worker index. Exceptions thrown by fn are rethrown here (the first one wins).
void parallel_for(int64_t n_tasks, const std::function<void(int64_t task, int worker)>& fn);

// The same with `worker` in [0, max_workers): callers that keep one scratch buffer per worker
// size it by the count they pass here, so setThreads() between sizing and running (from another
// call, at any moment) never hands out an index past the buffers.
void parallel_for(int64_t n_tasks, int max_workers, const std::function<void(int64_t task, int worker)>& fn);

// How many worker indices parallel_for(n_tasks, ...) may use.
int workers_for(int64_t n_tasks);

}  // namespace calmoe::cpu
