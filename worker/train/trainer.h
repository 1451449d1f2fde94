// Trains one CNN configuration with LibTorch. The interface is free of torch types.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/data/dataset.h"

namespace hpo::worker {

// A CNN configuration; defaults apply to parameters a study does not search.
struct CnnConfig {
  // Optimization
  double learning_rate = 1e-3;
  std::string optimizer = "adam";  // adam | adamw | rmsprop | sgd
  double momentum = -1;            // <0: the optimizer's default (0.9 for sgd, 0 for rmsprop)
  bool nesterov = false;           // sgd only
  int batch_size = 64;
  double weight_decay = 0;         // L2 (decoupled for adamw)
  std::string lr_schedule = "constant";  // constant | cosine | step (x0.1 at 50% and 75% of the epochs)
  double label_smoothing = 0;
  int patience = 0;                // >0: stop after this many epochs without improvement (trial completes)
  // Capacity
  int conv_blocks = 2;             // conv(-BN)-activation-maxpool blocks; filters double per block
  int filters = 32;
  int kernel_size = 3;
  int dense_units = 128;           // 0: no hidden dense layer
  double dropout = 0;
  bool batch_norm = false;
  std::string activation = "relu";      // relu | elu | gelu
  std::string global_pooling = "flatten";  // flatten | average
  // Imbalance
  std::string class_weighting = "none";  // none | inverse | sqrt_inverse (weights in the loss)
  std::string sampling = "shuffle";      // shuffle | balanced (oversample minority classes)
  // Augmentation of training batches only
  double aug_rotation = 0;   // degrees, uniform in [-r, r]
  double aug_shift = 0;      // fraction of width/height
  double aug_zoom = 0;       // scale uniform in [1-z, 1+z]
  double aug_shear = 0;      // degrees
  bool aug_hflip = false;
  std::string aug_fill = "constant";  // constant (black) | nearest | reflect

  uint64_t seed = 0;               // weight init, dropout, shuffling, augmentation
};

// A trial's training seed: follows the study id and the trial number; the spec's task.training_seed moves
// every trial to new seeds (0 keeps the seeds of versions before it existed).
[[nodiscard]] uint64_t TrialSeed(int64_t study_id, int64_t trial_number, int64_t training_seed);

using ParamVariant = std::variant<double, int64_t, std::string, bool>;

// Builds a CnnConfig from trial parameters. kInvalidArgument for an unknown
// name or a value of the wrong type.
[[nodiscard]] absl::StatusOr<CnnConfig> CnnConfigFromParams(const std::map<std::string, ParamVariant>& params,
                                                            uint64_t seed);

struct EpochReport {
  int epoch = 0;  // 1-based
  double val_accuracy = 0, val_loss = 0, val_balanced_accuracy = 0, val_macro_f1 = 0;
  double val_accuracy_std = 0;  // spread over executions (0 with one)
  double train_accuracy = 0, train_loss = 0;  // train_loss: mean over the batches whose loss was finite
  double train_nonfinite_fraction = 0;        // share of batches whose loss was NaN or infinite
  double learning_rate = 0;
  double seconds = 0;             // training + validation time of this epoch (all executions)
  double train_images_per_second = 0;
  int64_t train_images = 0;  // images trained this epoch (per execution): fewer in a partial epoch
};

struct TrainResult {
  int epochs_run = 0;
  bool stopped_early = false;     // the epoch callback said stop
  bool patience_stop = false;     // `patience` epochs without improvement
  bool diverged_stop = false;     // every batch of an epoch had a non-finite loss: the weights cannot recover
  int best_epoch = 0;
  double best_value = 0;          // of the selection metric
  double test_accuracy = -1, test_loss = -1;  // of the best epoch's weights; -1 when stopped early
  std::vector<double> val_recall;              // per class, best epoch
  std::vector<double> train_recall;            // per class, best epoch, on the training batches
  std::vector<std::vector<int64_t>> confusion;  // validation, best epoch: [true][predicted], summed over executions
};

struct TrainOptions {
  int max_epochs = 10;
  int executions = 1;  // train this many seeds in lockstep; reports are their means
  std::string metric = "val_accuracy";  // selects the best epoch and drives patience
  bool minimize = false;
  // Epoch k (1-based) trains on ceil(partial_epochs[k-1] x the training images), a fresh random subset each
  // epoch; later epochs on all (the spec's task.partial_epochs).
  std::vector<double> partial_epochs;
};

// Trains for up to `max_epochs`, calling `on_epoch` after each; training
// stops when it returns false. `cancelled` is checked between batches (then
// kCancelled). Errors from LibTorch come back as kInternal, never as exceptions.
[[nodiscard]] absl::StatusOr<TrainResult> TrainCnn(const CnnConfig& config, const DataSplit& data,
                                                   const TrainOptions& options,
                                                   const std::function<bool(const EpochReport&)>& on_epoch,
                                                   const std::function<bool()>& cancelled);

// Raises glibc's mmap and trim thresholds so freed batch buffers are reused instead of returned to
// the OS (and page-faulted back) on every batch. Costs RSS; hpo-worker's --malloc_tuning.
void KeepFreedBuffers();

}  // namespace hpo::worker
