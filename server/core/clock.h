#pragma once

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace hpo::server {

// Time source of the coordinator; tests substitute a clock they advance by hand.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;
};

class RealClock final : public Clock {
 public:
  absl::Time Now() const override { return absl::Now(); }
};

}  // namespace hpo::server
