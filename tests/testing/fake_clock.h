// The coordinator's Clock for unit tests: time moves only when a test says so.
#pragma once

#include "absl/time/time.h"
#include "server/core/clock.h"

namespace hpo::testing {

class FakeClock final : public server::Clock {
 public:
  absl::Time Now() const override { return now_; }
  void Advance(absl::Duration d) { now_ += d; }

 private:
  absl::Time now_ = absl::FromUnixSeconds(1'800'000'000);
};

}  // namespace hpo::testing
