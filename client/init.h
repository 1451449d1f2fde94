// `hpoctl init DATA_DIR [--out spec.json]`: inspects a data set folder and
// drafts a study spec for it that searches the usual causes of stalled
// validation accuracy (learning rate, capacity, regularization, augmentation
// and, for imbalanced classes, class weighting and sampling), sized so a
// study fits a CPU. Needs no coordinator.
#pragma once

#include <iosfwd>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "worker/data/inspect.h"

namespace hpo::client {

// Largest/smallest training class above this ratio: the classes are treated as
// imbalanced (balanced-accuracy objective, class weighting and sampling searched).
inline constexpr double kImbalanceRatio = 3.0;

struct DraftedSpec {
  nlohmann::ordered_json spec;       // a study spec, keys in the README's order
  std::vector<std::string> reasons;  // one line per choice, saying why
};

// Drafts a spec for the data set `data` found as DATA_ROOT/`dataset_name`. For Fashion-MNIST
// with all of its 60,000 training images, that is the measured recommended spec,
// examples/fmnist-best.json (renamed for the folder); for any other set, a spec sized from its
// classes, images and balance.
// kInvalidArgument (saying what to fix) when the data cannot be trained on:
// fewer than two classes, or an image folder class without a usable training image.
[[nodiscard]] absl::StatusOr<DraftedSpec> DraftSpec(const worker::DataSetSummary& data,
                                                    const std::string& dataset_name);

// The spec as text: one line per parameter, like the README's examples.
std::string FormatSpec(const nlohmann::ordered_json& spec);

// Shell commands that run the drafted study: a server, two workers reading
// `data_root`, then create/watch/best/diagnose with `spec_path`.
std::vector<std::string> RunCommands(const std::string& data_root, const std::string& spec_path);

// The command: args = {DATA_DIR}. Writes the spec to `out_path` (and the
// reasons and commands to `out`), or, with an empty `out_path`, the spec to
// `out` and the reasons and commands to `err`, so `hpoctl init DIR > spec.json` works.
// Errors: "usage: ..." (kInvalidArgument) for bad arguments, else InspectDataSet's
// or DraftSpec's status, or kPermissionDenied/kInternal when `out_path` cannot be written.
absl::Status Init(const std::vector<std::string>& args, const std::string& out_path, std::ostream& out,
                  std::ostream& err);

}  // namespace hpo::client
