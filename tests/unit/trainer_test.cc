#include "worker/train/trainer.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <set>

namespace hpo::worker {
namespace {

// Real Fashion-MNIST (Debian's dataset-fashion-mnist, installed by tests/run.sh).
constexpr char kDataRoot[] = "/usr/share/datasets";

TrainOptions Epochs(int n) {
  TrainOptions o;
  o.max_epochs = n;
  return o;
}

std::shared_ptr<const DataSplit> SmallSplit() {
  SplitOptions o;
  o.train_examples = 1000;
  o.val_examples = 500;
  o.test_examples = 500;
  auto s = LoadSplit(kDataRoot, "fashion-mnist", o);
  EXPECT_TRUE(s.ok()) << s.status() << " (install dataset-fashion-mnist: tests/run.sh does)";
  return s.ok() ? *s : nullptr;
}

// A network small enough to train on SmallSplit() in about a second.
CnnConfig TinyConfig() {
  CnnConfig c;
  c.filters = 8;
  c.dense_units = 32;
  return c;
}

TEST(TrainerTest, LearnsFashionMnistWellAboveChance) {
  torch::set_num_threads(1);
  auto data = SmallSplit();
  ASSERT_NE(data, nullptr);
  CnnConfig c = TinyConfig();
  c.conv_blocks = 2;
  std::vector<EpochReport> epochs;
  auto r = TrainCnn(c, *data, Epochs(2), [&](const EpochReport& e) { epochs.push_back(e); return true; },
                    [] { return false; });
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(epochs.size(), 2u);
  EXPECT_EQ(epochs[1].epoch, 2);
  EXPECT_GT(epochs[1].val_accuracy, 0.6);  // chance is 0.1
  EXPECT_LT(epochs[1].train_loss, epochs[0].train_loss);
  EXPECT_GT(epochs[1].train_images_per_second, 0);
  EXPECT_GT(r->test_accuracy, 0.6);
  EXPECT_GE(r->best_value, epochs[0].val_accuracy);
  EXPECT_GT(epochs[1].val_balanced_accuracy, 0.5);
  EXPECT_GT(epochs[1].val_macro_f1, 0.5);
  ASSERT_EQ(r->val_recall.size(), 10u);
  int64_t total = 0;
  for (const auto& row : r->confusion) for (int64_t v : row) total += v;
  EXPECT_EQ(total, 500);  // every validation image once
  EXPECT_FALSE(r->stopped_early);
}

TEST(TrainerTest, StopsWhenTheEpochCallbackSaysSoAndWhenCancelled) {
  torch::set_num_threads(1);
  auto data = SmallSplit();
  ASSERT_NE(data, nullptr);
  CnnConfig c;
  c.filters = 4;
  c.dense_units = 0;
  int calls = 0;
  auto r = TrainCnn(c, *data, Epochs(5), [&](const EpochReport&) { return ++calls < 2; }, [] { return false; });
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(r->epochs_run, 2);
  EXPECT_TRUE(r->stopped_early);
  auto cancelled = TrainCnn(c, *data, Epochs(5), [](const EpochReport&) { return true; }, [] { return true; });
  EXPECT_EQ(cancelled.status().code(), absl::StatusCode::kCancelled);
}

TEST(TrainerTest, TinyImagesWithManyBlocksNeverPoolBelowOnePixel) {
  torch::set_num_threads(1);
  DataSplit d;
  for (ImageSet* s : {&d.train, &d.val, &d.test}) {
    s->count = 64;
    s->height = s->width = 8;
    s->num_classes = 2;
    for (int i = 0; i < 64; ++i) {
      for (int p = 0; p < 64; ++p) s->pixels.push_back(static_cast<uint8_t>(i % 2 ? 200 : 20));
      s->labels.push_back(static_cast<uint8_t>(i % 2));
    }
  }
  CnnConfig c;
  c.conv_blocks = 5;  // 8 -> 4 -> 2 -> 1 -> 1 -> 1
  c.filters = 4;
  c.batch_norm = true;
  c.dropout = 0.2;
  c.batch_size = 8;
  c.learning_rate = 0.003;
  auto r = TrainCnn(c, d, Epochs(8), [](const EpochReport&) { return true; }, [] { return false; });
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_GT(r->test_accuracy, 0.9);  // bright vs dark is easy
}

TEST(TrainerTest, PatienceEndsATrialThatStoppedImproving) {
  torch::set_num_threads(1);
  auto data = SmallSplit();
  ASSERT_NE(data, nullptr);
  CnnConfig c;
  c.filters = 4;
  c.dense_units = 0;
  c.learning_rate = 1e-9;  // nothing improves after the first epoch
  c.patience = 2;
  int epochs = 0;
  auto r = TrainCnn(c, *data, Epochs(10), [&](const EpochReport&) { ++epochs; return true; }, [] { return false; });
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->patience_stop);
  EXPECT_EQ(r->epochs_run, 3);
  EXPECT_EQ(epochs, 3);
  EXPECT_EQ(r->best_epoch, 1);
  EXPECT_GE(r->test_accuracy, 0.0);  // completed: the best epoch's weights were tested
}

TEST(TrainerTest, PartialEpochsTrainOnAFractionOfTheImages) {
  torch::set_num_threads(1);
  auto data = SmallSplit();
  ASSERT_NE(data, nullptr);
  TrainOptions o = Epochs(3);
  o.partial_epochs = {0.25, 0.0015};  // 250 images, then ceil(1.5) = 2; epoch 3 on all 1000
  std::vector<int64_t> images;
  auto r = TrainCnn(
      TinyConfig(), *data, o,
      [&](const EpochReport& e) {
        images.push_back(e.train_images);
        return true;
      },
      [] { return false; });
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(images, (std::vector<int64_t>{250, 2, 1000}));
  EXPECT_EQ(r->epochs_run, 3);
  EXPECT_GE(r->test_accuracy, 0.0);
}

TEST(TrainerTest, TrainingSeedMovesEveryTrialToNewSeedsAndZeroKeepsTheOldOnes) {
  // The seeds trials had before task.training_seed existed: recorded results stay reproducible.
  EXPECT_EQ(TrialSeed(1, 0, 0), 0x9E3779B97F4A7C15ULL * 2);
  EXPECT_EQ(TrialSeed(3, 7, 0), 0x9E3779B97F4A7C15ULL * 4 + 7);
  std::set<uint64_t> seeds;
  for (int64_t study : {1, 2}) {
    for (int64_t number : {0, 1, 2}) {
      for (int64_t training_seed : {0, 1, 2, 1000}) seeds.insert(TrialSeed(study, number, training_seed));
    }
  }
  EXPECT_EQ(seeds.size(), 24u);  // every (study, trial, training_seed) trains on its own seed
}

TEST(TrainerTest, ExecutionsReportTheirMeanAndSpread) {
  torch::set_num_threads(1);
  auto data = SmallSplit();
  ASSERT_NE(data, nullptr);
  CnnConfig c;
  c.filters = 4;
  c.dense_units = 16;
  TrainOptions o = Epochs(1);
  o.executions = 3;
  EpochReport last;
  auto r = TrainCnn(c, *data, o, [&](const EpochReport& e) { last = e; return true; }, [] { return false; });
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_GT(last.val_accuracy_std, 0.0);  // three seeds do not agree to the image
  EXPECT_LT(last.val_accuracy_std, 0.2);
  int64_t total = 0;
  for (const auto& row : r->confusion) for (int64_t v : row) total += v;
  EXPECT_EQ(total, 3 * 500);
}

TEST(TrainerTest, EveryOptionTrains) {
  torch::set_num_threads(1);
  auto data = SmallSplit();
  ASSERT_NE(data, nullptr);
  CnnConfig c;
  c.filters = 16;
  c.dense_units = 16;
  c.batch_size = 16;
  c.learning_rate = 0.005;
  c.batch_norm = true;
  c.activation = "gelu";
  c.global_pooling = "average";
  c.optimizer = "adamw";
  c.weight_decay = 0.01;
  c.lr_schedule = "cosine";
  c.label_smoothing = 0.1;
  c.class_weighting = "sqrt_inverse";
  c.sampling = "balanced";
  c.aug_rotation = 15;
  c.aug_shift = 0.1;
  c.aug_zoom = 0.1;
  c.aug_shear = 10;
  c.aug_hflip = true;
  c.aug_fill = "nearest";
  std::vector<double> rates;
  auto r = TrainCnn(c, *data, Epochs(2), [&](const EpochReport& e) { rates.push_back(e.learning_rate); return true; },
                    [] { return false; });
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_GT(r->test_accuracy, 0.2);  // chance is 0.1
  ASSERT_EQ(rates.size(), 2u);
  EXPECT_LT(rates[1], rates[0]);  // cosine schedule
  c.optimizer = "sgd";
  c.nesterov = true;
  c.activation = "elu";
  c.lr_schedule = "step";
  c.aug_fill = "reflect";
  EXPECT_TRUE(TrainCnn(c, *data, Epochs(1), [](const EpochReport&) { return true; }, [] { return false; }).ok());
}

TEST(TrainerTest, AugmentedTrainingStillLearns) {
  torch::set_num_threads(1);
  auto data = SmallSplit();
  ASSERT_NE(data, nullptr);
  CnnConfig c = TinyConfig();
  c.aug_rotation = 10;
  c.aug_shift = 0.1;
  c.aug_zoom = 0.1;
  c.aug_shear = 5;
  auto r = TrainCnn(c, *data, Epochs(2), [](const EpochReport&) { return true; }, [] { return false; });
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_GT(r->test_accuracy, 0.55);  // mild augmentation of upright clothes keeps them recognizable
}

// On a training split with few images of half the classes, weighting the loss
// by inverse class frequency raises the recall of those classes.
TEST(TrainerTest, ClassWeightingHelpsMinorityClasses) {
  torch::set_num_threads(1);
  SplitOptions o;
  o.train_examples = 2000;
  o.val_examples = 1000;
  o.test_examples = 200;
  o.imbalance_classes = {0, 2, 4, 6};
  o.imbalance_keep = 0.05;
  auto data = LoadSplit(kDataRoot, "fashion-mnist", o);
  ASSERT_TRUE(data.ok()) << data.status();
  auto minority_recall = [&](const std::string& weighting) {
    CnnConfig c = TinyConfig();
    c.class_weighting = weighting;
    auto r = TrainCnn(c, **data, Epochs(3), [](const EpochReport&) { return true; }, [] { return false; });
    EXPECT_TRUE(r.ok()) << r.status();
    return (r->val_recall[0] + r->val_recall[2] + r->val_recall[4] + r->val_recall[6]) / 4;
  };
  const double plain = minority_recall("none"), weighted = minority_recall("inverse");
  EXPECT_GT(weighted, plain + 0.05) << "weighted " << weighted << " plain " << plain;
}

// A learning rate far too high: the loss turns NaN, the share of such batches is reported per epoch,
// and training ends after the first epoch in which every batch diverged (the weights are NaN).
TEST(TrainerTest, DivergedTrainingReportsNonFiniteBatchesAndStops) {
  torch::set_num_threads(1);
  auto data = SmallSplit();
  ASSERT_NE(data, nullptr);
  CnnConfig c = TinyConfig();
  c.optimizer = "sgd";
  c.learning_rate = 1e8;
  std::vector<EpochReport> epochs;
  auto r = TrainCnn(c, *data, Epochs(6), [&](const EpochReport& e) { epochs.push_back(e); return true; },
                    [] { return false; });
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->diverged_stop);
  ASSERT_FALSE(epochs.empty());
  EXPECT_LT(epochs.size(), 6u);
  EXPECT_GT(epochs.front().train_nonfinite_fraction, 0.0);
  EXPECT_EQ(epochs.back().train_nonfinite_fraction, 1.0);
  EXPECT_TRUE(std::isnan(epochs.back().train_loss));  // no finite batch left to average
  // A healthy run reports no such batch.
  c.learning_rate = 1e-3;
  c.optimizer = "adam";
  epochs.clear();
  r = TrainCnn(c, *data, Epochs(1), [&](const EpochReport& e) { epochs.push_back(e); return true; },
               [] { return false; });
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->diverged_stop);
  ASSERT_EQ(epochs.size(), 1u);
  EXPECT_EQ(epochs[0].train_nonfinite_fraction, 0.0);
}

TEST(TrainerTest, ConfigFromParamsChecksNamesAndTypes) {
  auto c = CnnConfigFromParams({{"learning_rate", 0.01}, {"batch_size", int64_t{32}},
                                {"optimizer", std::string("sgd")}, {"batch_norm", true}}, 7);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->batch_size, 32);
  EXPECT_EQ(c->optimizer, "sgd");
  EXPECT_TRUE(c->batch_norm);
  EXPECT_EQ(c->seed, 7u);
  EXPECT_FALSE(CnnConfigFromParams({{"colour", 1.0}}, 0).ok());
  EXPECT_FALSE(CnnConfigFromParams({{"optimizer", std::string("lbfgs")}}, 0).ok());
  EXPECT_FALSE(CnnConfigFromParams({{"batch_size", std::string("big")}}, 0).ok());
}

}  // namespace
}  // namespace hpo::worker
