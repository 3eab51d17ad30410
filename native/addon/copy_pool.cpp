#include "addon/copy_pool.h"

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

namespace calmoe::addon {
namespace {

using Clock = std::chrono::steady_clock;
constexpr std::size_t kPooledBytes = std::size_t(1) << 20;  // smaller copies fault little: plain new
constexpr int kIdleSeconds = 2;

struct Free {
  unsigned char* data;
  std::size_t bytes;
  Clock::time_point since;
};

class Pool {
 public:
  unsigned char* take(std::size_t bytes, std::size_t* got) {
    std::lock_guard<std::mutex> lock(mu_);
    // the smallest kept buffer that fits, and not more than twice the request
    std::size_t best = free_.size();
    for (std::size_t i = 0; i < free_.size(); ++i)
      if (free_[i].bytes >= bytes && free_[i].bytes <= 2 * bytes && (best == free_.size() || free_[i].bytes < free_[best].bytes)) best = i;
    if (best == free_.size()) {
      *got = bytes;
      return new unsigned char[bytes];
    }
    unsigned char* p = free_[best].data;
    *got = free_[best].bytes;
    free_.erase(free_.begin() + std::ptrdiff_t(best));
    return p;
  }

  void give(unsigned char* p, std::size_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    free_.push_back({p, bytes, Clock::now()});
    if (!reaper_) {
      reaper_ = true;
      std::thread([this] { reap(); }).detach();  // lives for the process, like the thread pool
    }
    cv_.notify_all();
  }

 private:
  void reap() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      if (free_.empty()) cv_.wait(lock, [&] { return !free_.empty(); });
      cv_.wait_for(lock, std::chrono::milliseconds(500));
      const auto cutoff = Clock::now() - std::chrono::seconds(kIdleSeconds);
      for (std::size_t i = 0; i < free_.size();) {
        if (free_[i].since < cutoff) {
          delete[] free_[i].data;
          free_[i] = free_.back();
          free_.pop_back();
        } else {
          ++i;
        }
      }
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Free> free_;
  bool reaper_ = false;
};

Pool& pool() {
  static Pool* p = new Pool();  // intentionally leaked: the detached reaper uses it until exit
  return *p;
}

}  // namespace

std::shared_ptr<unsigned char> copy_buffer(std::size_t bytes) {
  if (bytes < kPooledBytes) return std::shared_ptr<unsigned char>(new unsigned char[bytes ? bytes : 1], std::default_delete<unsigned char[]>());
  std::size_t got = 0;
  unsigned char* p = pool().take(bytes, &got);
  return std::shared_ptr<unsigned char>(p, [got](unsigned char* q) { pool().give(q, got); });
}

}  // namespace calmoe::addon
