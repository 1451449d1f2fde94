// The storage interface: the durable record of studies, trials and measurements.
// The coordinator keeps the working copy in memory and writes through this
// interface before it acknowledges anything.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/core/types.h"

namespace hpo::server {

class Storage {
 public:
  virtual ~Storage() = default;

  // Every study with its trials (index == number) and measurements, oldest first.
  [[nodiscard]] virtual absl::StatusOr<std::vector<Study>> LoadAll() = 0;
  // Stores a new study (id ignored); returns its id.
  [[nodiscard]] virtual absl::StatusOr<int64_t> CreateStudy(const Study& study) = 0;
  [[nodiscard]] virtual absl::Status UpdateStudyState(int64_t study_id, StudyState state) = 0;
  // Stores a new trial with its parameters (id ignored); returns its id.
  [[nodiscard]] virtual absl::StatusOr<int64_t> CreateTrial(const Trial& trial) = 0;
  // Stores the trial's mutable fields (state, parameters, value, best step, final
  // metrics, reason, worker, retried, times, data and class reports) and, when
  // `measurement` is not null, appends it, all in one transaction.
  [[nodiscard]] virtual absl::Status UpdateTrial(const Trial& trial,
                                                 const Measurement* measurement) = 0;
  // Runs `body` so that all its writes commit together or not at all.
  [[nodiscard]] virtual absl::Status Transaction(const std::function<absl::Status()>& body) = 0;
};

}  // namespace hpo::server
