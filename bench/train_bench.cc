// hpo-train-bench: trains the anchor's small CNN (conv32-pool-conv64-pool-fc128-fc10, batch 128,
// Adam 1e-3; ../shared/anchors/torch_fmnist.py) with hpo's trainer and prints what it measured as JSON.
// Run by bench/train_bench.py, alternately with the PyTorch anchor.
#include <sys/resource.h>
#include <torch/torch.h>

#include <cstdio>
#include <iostream>

#include <nlohmann/json.hpp>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "worker/train/trainer.h"

ABSL_FLAG(std::string, data_root, "/usr/share/datasets", "data sets");
ABSL_FLAG(std::string, dataset, "fashion-mnist", "data set name");
ABSL_FLAG(int, train, 50000, "training images");
ABSL_FLAG(int, val, 10000, "validation images");
ABSL_FLAG(int, epochs, 3, "epochs");
ABSL_FLAG(int, threads, 2, "LibTorch threads");
ABSL_FLAG(int, seed, 0, "seed");
ABSL_FLAG(int, batch, 128, "batch size");
ABSL_FLAG(int, filters, 32, "filters of the first block (the anchor: 32)");
ABSL_FLAG(int, conv_blocks, 2, "conv blocks (the anchor: 2)");
ABSL_FLAG(std::string, optimizer, "adam", "optimizer (the anchor: adam)");
ABSL_FLAG(bool, augment, false, "augment every batch: rotation 10, shift 0.1, zoom 0.1, shear 5, flips");
ABSL_FLAG(bool, mkldnn, true, "let LibTorch use oneDNN convolutions");
ABSL_FLAG(bool, flush_denormal, false, "flush denormal floats to zero");
ABSL_FLAG(bool, malloc_tuning, true, "raise glibc's mmap/trim thresholds, as hpo-worker does");

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  torch::set_num_threads(absl::GetFlag(FLAGS_threads));
  at::globalContext().setUserEnabledMkldnn(absl::GetFlag(FLAGS_mkldnn));
  if (absl::GetFlag(FLAGS_flush_denormal)) at::globalContext().setFlushDenormal(true);
  if (absl::GetFlag(FLAGS_malloc_tuning)) hpo::worker::KeepFreedBuffers();
  hpo::worker::SplitOptions split;
  split.train_examples = absl::GetFlag(FLAGS_train);
  split.val_examples = absl::GetFlag(FLAGS_val);
  split.seed = 0;
  auto data = hpo::worker::LoadSplit(absl::GetFlag(FLAGS_data_root), absl::GetFlag(FLAGS_dataset), split);
  if (!data.ok()) {
    std::cerr << data.status() << "\n";
    return 1;
  }
  hpo::worker::CnnConfig c;  // the anchor's model
  c.conv_blocks = absl::GetFlag(FLAGS_conv_blocks);
  c.filters = absl::GetFlag(FLAGS_filters);
  c.optimizer = absl::GetFlag(FLAGS_optimizer);
  c.kernel_size = 3;
  c.dense_units = 128;
  c.batch_size = absl::GetFlag(FLAGS_batch);
  c.learning_rate = 1e-3;
  c.seed = static_cast<uint64_t>(absl::GetFlag(FLAGS_seed));
  if (absl::GetFlag(FLAGS_augment)) {
    c.aug_rotation = 10;
    c.aug_shift = 0.1;
    c.aug_zoom = 0.1;
    c.aug_shear = 5;
    c.aug_hflip = true;
  }
  hpo::worker::TrainOptions o;
  o.max_epochs = absl::GetFlag(FLAGS_epochs);
  nlohmann::json epochs = nlohmann::json::array();
  auto r = hpo::worker::TrainCnn(c, **data, o,
                                 [&](const hpo::worker::EpochReport& e) {
                                   epochs.push_back({{"epoch", e.epoch},
                                                     {"val_acc", e.val_accuracy},
                                                     {"train_img_per_s", e.train_images_per_second},
                                                     {"epoch_s", e.seconds}});
                                   std::fprintf(stderr, "hpo epoch %d: val_acc %.4f, %.0f train img/s\n", e.epoch,
                                                e.val_accuracy, e.train_images_per_second);
                                   return true;
                                 },
                                 [] { return false; });
  if (!r.ok()) {
    std::cerr << r.status() << "\n";
    return 1;
  }
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  nlohmann::json out = {{"threads", torch::get_num_threads()},
                        {"history", epochs},
                        {"test_acc", r->test_accuracy},
                        {"peak_rss_mb", ru.ru_maxrss / 1024.0}};
  std::cout << out.dump() << "\n";
  return 0;
}
