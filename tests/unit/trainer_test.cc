#include "worker/train/trainer.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>

namespace hpo::worker {
namespace {

// Real Fashion-MNIST (Debian's dataset-fashion-mnist, installed by tests/run.sh).
constexpr char kDataRoot[] = "/usr/share/datasets";

std::shared_ptr<const DataSplit> SmallSplit() {
  auto s = LoadSplit(kDataRoot, "fashion-mnist", 1000, 500, 500, 0);
  EXPECT_TRUE(s.ok()) << s.status() << " (install dataset-fashion-mnist: tests/run.sh does)";
  return s.ok() ? *s : nullptr;
}

TEST(TrainerTest, LearnsFashionMnistWellAboveChance) {
  torch::set_num_threads(1);
  auto data = SmallSplit();
  ASSERT_NE(data, nullptr);
  CnnConfig c;
  c.filters = 8;
  c.dense_units = 32;
  c.conv_blocks = 2;
  std::vector<EpochReport> epochs;
  auto r = TrainCnn(c, *data, 2, [&](const EpochReport& e) { epochs.push_back(e); return true; },
                    [] { return false; });
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(epochs.size(), 2u);
  EXPECT_EQ(epochs[1].epoch, 2);
  EXPECT_GT(epochs[1].val_accuracy, 0.6);  // chance is 0.1
  EXPECT_LT(epochs[1].train_loss, epochs[0].train_loss);
  EXPECT_GT(epochs[1].train_images_per_second, 0);
  EXPECT_GT(r->test_accuracy, 0.6);
  EXPECT_GE(r->best_val_accuracy, epochs[0].val_accuracy);
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
  auto r = TrainCnn(c, *data, 5, [&](const EpochReport&) { return ++calls < 2; }, [] { return false; });
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(r->epochs_run, 2);
  EXPECT_TRUE(r->stopped_early);
  auto cancelled = TrainCnn(c, *data, 5, [](const EpochReport&) { return true; }, [] { return true; });
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
  auto r = TrainCnn(c, d, 8, [](const EpochReport&) { return true; }, [] { return false; });
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_GT(r->test_accuracy, 0.9);  // bright vs dark is easy
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
