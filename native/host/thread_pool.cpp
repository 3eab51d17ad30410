#include "host/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "calmoe/device.h"
#include "calmoe/error.h"
#include "calmoe/limits.h"
#include "core/float_mode.h"

namespace calmoe {
namespace {

int default_threads() {
  if (const char* env = std::getenv("CALMOE_NUM_THREADS")) {
    const int n = std::atoi(env);
    if (n >= 1 && n <= limits::kMaxThreads) return n;
  }
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : int(hw);
}

std::atomic<int> g_threads{0};

}  // namespace

int cpu_threads() {
  int n = g_threads.load(std::memory_order_relaxed);
  if (n == 0) {
    int expected = 0;
    g_threads.compare_exchange_strong(expected, default_threads());
    n = g_threads.load();
  }
  return n;
}

void set_cpu_threads(int n) {
  if (n < 1 || n > limits::kMaxThreads)
    throw_range("threads: expected an integer in [1, " + std::to_string(limits::kMaxThreads) + "], got " + std::to_string(n));
  g_threads.store(n);
}

namespace cpu {
namespace {

thread_local bool t_inside_task = false;

struct Job {
  const std::function<void(int64_t, int)>* fn = nullptr;
  int64_t n = 0;
  int max_workers = 1;
  int workers = 1;              // worker indices handed out (the caller is 0); guarded by the pool mutex
  std::atomic<int64_t> next{0}; // next task to hand out
  uint32_t fp_mode = 0;         // the caller's flush/denormal mode: every worker runs the job in it
  int active = 0;               // pool threads inside run(); guarded by mu
  std::mutex mu;
  std::condition_variable cv;
  std::exception_ptr error;     // guarded by mu

  void run(int worker) {
    const bool was_inside = t_inside_task;
    t_inside_task = true;
    for (;;) {
      const int64_t t = next.fetch_add(1);
      if (t >= n) break;
      try {
        (*fn)(t, worker);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mu);
        if (!error) error = std::current_exception();
        next.store(n);  // hand out no more tasks
      }
    }
    t_inside_task = was_inside;
  }
};

class Pool {
 public:
  void ensure_threads(int n) {
    std::lock_guard<std::mutex> lock(mu_);
    while (int(threads_.size()) < n) {
      threads_.emplace_back([this] { loop(); });
      threads_.back().detach();  // the pool lives for the process
    }
  }

  void submit(Job* job) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      jobs_.push_back(job);
    }
    cv_.notify_all();
  }

  // After retire() no pool thread joins `job`; the caller then waits for those inside to leave.
  void retire(Job* job) {
    std::lock_guard<std::mutex> lock(mu_);
    jobs_.erase(std::remove(jobs_.begin(), jobs_.end(), job), jobs_.end());
  }

 private:
  Job* pick(int* worker) {
    for (Job* j : jobs_) {
      if (j->next.load() < j->n && j->workers < j->max_workers) {
        *worker = j->workers++;
        std::lock_guard<std::mutex> lock(j->mu);
        ++j->active;
        return j;
      }
    }
    return nullptr;
  }

  void loop() {
    for (;;) {
      Job* job = nullptr;
      int worker = 0;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return (job = pick(&worker)) != nullptr; });
      }
      {
        // the caller's floating-point mode, so a job's results do not depend on which thread ran a task
        ScopedDenormalMode mode(job->fp_mode);
        job->run(worker);
      }
      std::lock_guard<std::mutex> lock(job->mu);
      if (--job->active == 0) job->cv.notify_all();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Job*> jobs_;
  std::vector<std::thread> threads_;
};

Pool& pool() {
  static Pool* p = new Pool();  // intentionally leaked: detached threads use it until exit
  return *p;
}

}  // namespace

int workers_for(int64_t n_tasks) {
  if (t_inside_task || n_tasks <= 1) return 1;
  return int(std::min<int64_t>(cpu_threads(), n_tasks));
}

void parallel_for(int64_t n_tasks, const std::function<void(int64_t, int)>& fn) { parallel_for(n_tasks, INT32_MAX, fn); }

void parallel_for(int64_t n_tasks, int max_workers, const std::function<void(int64_t, int)>& fn) {
  if (n_tasks <= 0) return;
  // One reading of the thread count per call: the job hands out indices below `workers` only.
  const int workers = std::max(1, std::min(workers_for(n_tasks), max_workers));
  Job job;
  job.fn = &fn;
  job.n = n_tasks;
  job.max_workers = workers;
  job.fp_mode = denormal_mode();
  if (workers > 1) {
    pool().ensure_threads(workers - 1);
    pool().submit(&job);
  }
  job.run(0);
  if (workers > 1) {
    pool().retire(&job);
    std::unique_lock<std::mutex> lock(job.mu);
    job.cv.wait(lock, [&] { return job.active == 0; });
  }
  if (job.error) std::rethrow_exception(job.error);
}

}  // namespace cpu

void host_copy(void* dst, const void* src, std::size_t bytes) {
  constexpr std::size_t kChunk = std::size_t(4) << 20;
  if (bytes <= kChunk) {
    if (bytes) std::memcpy(dst, src, bytes);
    return;
  }
  const int64_t chunks = int64_t((bytes + kChunk - 1) / kChunk);
  cpu::parallel_for(chunks, [&](int64_t c, int) {
    const std::size_t off = std::size_t(c) * kChunk;
    std::memcpy(static_cast<char*>(dst) + off, static_cast<const char*>(src) + off, std::min(kChunk, bytes - off));
  });
}

}  // namespace calmoe
