// A fixed set of threads running submitted tasks, with a bounded queue: the coordinator's
// sampling pool (samplers run here, not on gRPC's callback threads).
#pragma once

#include <cstddef>
#include <deque>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/synchronization/mutex.h"

namespace hpo::server {

class WorkPool {
 public:
  // `threads` workers; at most `capacity` tasks wait (those running do not count).
  WorkPool(int threads, size_t capacity);
  // Runs every task already accepted, then joins the threads.
  ~WorkPool();
  WorkPool(const WorkPool&) = delete;
  WorkPool& operator=(const WorkPool&) = delete;

  // Queues `task`; false (and `task` is not run) when `capacity` tasks already wait.
  [[nodiscard]] bool TrySubmit(absl::AnyInvocable<void() &&> task);
  size_t capacity() const { return capacity_; }

 private:
  void Loop();

  const size_t capacity_;
  absl::Mutex mu_;
  std::deque<absl::AnyInvocable<void() &&>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace hpo::server
