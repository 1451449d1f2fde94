#include "worker/data/dataset.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>

namespace hpo::worker {
namespace {

namespace fs = std::filesystem;

void Put32(std::vector<uint8_t>& b, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<uint8_t>(v >> s));
}

// Writes an IDX image/label pair of `n` images of h x w; pixel = (i + y + x) % 256, label = i % classes.
void WriteIdx(const fs::path& dir, const std::string& prefix, int n, int h, int w, int classes, bool gz) {
  std::vector<uint8_t> img, lab;
  Put32(img, 0x803);
  Put32(img, n);
  Put32(img, h);
  Put32(img, w);
  Put32(lab, 0x801);
  Put32(lab, n);
  for (int i = 0; i < n; ++i) {
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x) img.push_back(static_cast<uint8_t>((i + y + x) % 256));
    lab.push_back(static_cast<uint8_t>(i % classes));
  }
  auto write = [&](const std::string& name, const std::vector<uint8_t>& bytes) {
    if (gz) {
      gzFile f = gzopen((dir / (name + ".gz")).c_str(), "wb");
      gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size()));
      gzclose(f);
    } else {
      std::ofstream(dir / name, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    }
  };
  write(prefix + "-images-idx3-ubyte", img);
  write(prefix + "-labels-idx1-ubyte", lab);
}

SplitOptions Opts(int train, int val, int test, uint64_t seed) {
  SplitOptions o;
  o.train_examples = train;
  o.val_examples = val;
  o.test_examples = test;
  o.seed = seed;
  return o;
}

class DatasetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("hpo_dataset_test_" + std::to_string(::getpid()) + "_" +
                                         ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_ / "tiny");
  }
  void TearDown() override { fs::remove_all(root_); }
  fs::path root_;
};

TEST_F(DatasetTest, ReadsRawAndGzipIdx) {
  WriteIdx(root_ / "tiny", "train", 50, 8, 9, 3, /*gz=*/true);
  WriteIdx(root_ / "tiny", "t10k", 20, 8, 9, 3, /*gz=*/false);
  auto train = ReadIdx((root_ / "tiny/train-images-idx3-ubyte").string(), (root_ / "tiny/train-labels-idx1-ubyte").string());
  ASSERT_TRUE(train.ok()) << train.status();
  EXPECT_EQ(train->count, 50);
  EXPECT_EQ(train->height, 8);
  EXPECT_EQ(train->width, 9);
  EXPECT_EQ(train->num_classes, 3);
  EXPECT_EQ(train->pixels[1 * 72 + 2], 3);  // image 1, y 0, x 2
  EXPECT_EQ(train->labels[4], 1);
  auto test = ReadIdx((root_ / "tiny/t10k-images-idx3-ubyte").string(), (root_ / "tiny/t10k-labels-idx1-ubyte").string());
  ASSERT_TRUE(test.ok()) << test.status();
  EXPECT_EQ(test->count, 20);
}

TEST_F(DatasetTest, SplitIsDisjointFixedBySeedAndSized) {
  WriteIdx(root_ / "tiny", "train", 100, 8, 8, 10, true);
  WriteIdx(root_ / "tiny", "t10k", 30, 8, 8, 10, true);
  auto a = LoadSplit(root_.string(), "tiny", Opts(60, 25, 0, 1));
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ((*a)->train.count, 60);
  EXPECT_EQ((*a)->val.count, 25);
  EXPECT_EQ((*a)->test.count, 30);
  // Image i has pixel (0,0) == i: identify images by it.
  std::set<int> train_ids, val_ids;
  for (int i = 0; i < 60; ++i) train_ids.insert((*a)->train.pixels[i * 64]);
  for (int i = 0; i < 25; ++i) val_ids.insert((*a)->val.pixels[i * 64]);
  EXPECT_EQ(train_ids.size(), 60u);
  for (int id : val_ids) EXPECT_EQ(train_ids.count(id), 0u) << "image " << id << " in both splits";
  auto b = LoadSplit(root_.string(), "tiny", Opts(60, 25, 0, 1));
  EXPECT_EQ((*a)->val.pixels, (*b)->val.pixels);
  auto c = LoadSplit(root_.string(), "tiny", Opts(60, 25, 0, 2));
  EXPECT_NE((*a)->val.pixels, (*c)->val.pixels);
  auto all = LoadSplit(root_.string(), "tiny", Opts(0, 25, 10, 1));
  EXPECT_EQ((*all)->train.count, 75);
  EXPECT_EQ((*all)->test.count, 10);
  EXPECT_EQ(LoadSplit(root_.string(), "tiny", Opts(80, 25, 0, 1)).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(DatasetTest, CorruptOrMissingFilesAreClearErrors) {
  EXPECT_EQ(LoadSplit(root_.string(), "absent", Opts(10, 10, 0, 1)).status().code(), absl::StatusCode::kNotFound);
  WriteIdx(root_ / "tiny", "train", 40, 8, 8, 2, false);
  WriteIdx(root_ / "tiny", "t10k", 10, 8, 8, 2, false);
  fs::resize_file(root_ / "tiny/train-images-idx3-ubyte", 16 + 39 * 64 + 5);
  auto s = LoadSplit(root_.string(), "tiny", Opts(10, 10, 0, 1));
  EXPECT_EQ(s.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(std::string(s.status().message()).find("truncated"), std::string::npos) << s.status();
  std::ofstream(root_ / "tiny/train-images-idx3-ubyte", std::ios::binary) << "not an idx file at all";
  s = LoadSplit(root_.string(), "tiny", Opts(10, 10, 0, 1));
  EXPECT_NE(std::string(s.status().message()).find("not an IDX image file"), std::string::npos) << s.status();
  WriteIdx(root_ / "tiny", "train", 40, 7, 7, 2, false);
  s = LoadSplit(root_.string(), "tiny", Opts(10, 10, 0, 1));
  EXPECT_NE(std::string(s.status().message()).find("at least 8x8"), std::string::npos) << s.status();
}

TEST_F(DatasetTest, ImbalanceKeepsAFractionOfTheListedClassesInTrainingOnly) {
  WriteIdx(root_ / "tiny", "train", 400, 8, 8, 4, true);
  WriteIdx(root_ / "tiny", "t10k", 40, 8, 8, 4, true);
  SplitOptions o = Opts(0, 100, 0, 3);
  o.imbalance_classes = {1, 2};
  o.imbalance_keep = 0.1;
  auto s = LoadSplit(root_.string(), "tiny", o);
  ASSERT_TRUE(s.ok()) << s.status();
  std::map<int, int> train, val;
  for (uint8_t l : (*s)->train.labels) ++train[l];
  for (uint8_t l : (*s)->val.labels) ++val[l];
  EXPECT_NEAR(train[1], 0.1 * 75, 2);  // ~75 of each class remain after validation
  EXPECT_NEAR(train[2], 0.1 * 75, 2);
  EXPECT_GT(train[0], 60);
  EXPECT_GT(val[1], 15);  // validation stays representative
}

TEST_F(DatasetTest, ReadsCifar10Binary) {
  fs::create_directories(root_ / "cifar");
  auto write = [&](const std::string& name, int n, int label_offset) {
    std::ofstream f(root_ / "cifar" / name, std::ios::binary);
    for (int i = 0; i < n; ++i) {
      f.put(static_cast<char>((i + label_offset) % 10));
      for (int k = 0; k < 3072; ++k) f.put(static_cast<char>(k < 1024 ? 10 : k < 2048 ? 20 : 30));
    }
  };
  for (int b = 1; b <= 5; ++b) write("data_batch_" + std::to_string(b) + ".bin", 20, b);
  write("test_batch.bin", 10, 0);
  auto s = LoadSplit(root_.string(), "cifar", Opts(0, 30, 0, 1));
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ((*s)->train.count, 70);
  EXPECT_EQ((*s)->train.channels, 3);
  EXPECT_EQ((*s)->train.height, 32);
  EXPECT_EQ((*s)->test.count, 10);
  EXPECT_EQ((*s)->train.num_classes, 10);
  EXPECT_EQ((*s)->test.pixels[1024], 20);  // channel planes in order
  fs::resize_file(root_ / "cifar/test_batch.bin", 3073 * 10 - 7);
  EXPECT_EQ(LoadSplit(root_.string(), "cifar2", Opts(0, 30, 0, 1)).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(ReadCifar({(root_ / "cifar/test_batch.bin").string()}).status().code(), absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace hpo::worker
