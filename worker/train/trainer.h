// Trains one CNN configuration with LibTorch. The interface is free of torch types.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <variant>

#include "absl/status/statusor.h"
#include "worker/train/dataset.h"

namespace hpo::worker {

// A CNN configuration; defaults apply to parameters a study does not search.
struct CnnConfig {
  double learning_rate = 1e-3;
  std::string optimizer = "adam";  // adam | rmsprop | sgd
  double momentum = -1;            // <0: the optimizer's default (0.9 for sgd, 0 for rmsprop)
  int batch_size = 64;
  double weight_decay = 0;
  int conv_blocks = 2;             // conv(-BN)-ReLU-maxpool blocks; filters double per block
  int filters = 32;
  int kernel_size = 3;
  int dense_units = 128;           // 0: no hidden dense layer
  double dropout = 0;
  bool batch_norm = false;
  uint64_t seed = 0;               // weight init, dropout and shuffling
};

using ParamVariant = std::variant<double, int64_t, std::string, bool>;

// Builds a CnnConfig from trial parameters. kInvalidArgument for an unknown
// name or a value of the wrong type.
[[nodiscard]] absl::StatusOr<CnnConfig> CnnConfigFromParams(
    const std::map<std::string, ParamVariant>& params, uint64_t seed);

struct EpochReport {
  int epoch = 0;  // 1-based
  double val_accuracy = 0, val_loss = 0, train_accuracy = 0, train_loss = 0;
  double learning_rate = 0;
  double seconds = 0;             // training + validation time of this epoch
  double train_images_per_second = 0;
};

struct TrainResult {
  int epochs_run = 0;
  bool stopped_early = false;     // the epoch callback said stop
  int best_epoch = 0;
  double best_val_accuracy = 0;
  double test_accuracy = -1, test_loss = -1;  // of the best epoch's weights; -1 when stopped early
};

// Trains for up to `max_epochs`, calling `on_epoch` after each; training
// stops when it returns false. `cancelled` is checked between batches (then
// kCancelled). Errors from LibTorch come back as kInternal, never as exceptions.
[[nodiscard]] absl::StatusOr<TrainResult> TrainCnn(const CnnConfig& config, const DataSplit& data,
                                                   int max_epochs,
                                                   const std::function<bool(const EpochReport&)>& on_epoch,
                                                   const std::function<bool()>& cancelled);

}  // namespace hpo::worker
