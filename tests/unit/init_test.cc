// hpoctl init: InspectDataSet on image folders and IDX files built here, and
// DraftSpec's spec, which must be what the server accepts.
#include "client/init.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "server/model/study_spec.h"
#include "server/pruner/pruner_registry.h"
#include "server/sampler/sampler_registry.h"
#include "tests/testing/image_files.h"
#include "tests/testing/status_matchers.h"
#include "worker/data/dataset.h"
#include "worker/data/inspect.h"

namespace hpo::client {
namespace {

namespace fs = std::filesystem;
using hpo::testing::IsOk;
using hpo::testing::StatusIs;
using nlohmann::ordered_json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using worker::DataSetSummary;

// A smooth pattern, different per seed, so JPEG and PNG encode real content.
std::vector<uint8_t> Pattern(int width, int height, int channels, int seed) {
  std::vector<uint8_t> p(static_cast<size_t>(width) * height * channels);
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x)
      for (int c = 0; c < channels; ++c)
        p[(static_cast<size_t>(y) * width + x) * channels + c] = (x * 7 + y * 3 + c * 50 + seed * 11) % 256;
  return p;
}

void Png(const fs::path& p, int width, int height, int channels, int seed = 0) {
  fs::create_directories(p.parent_path());
  ASSERT_TRUE(
      hpo::testing::WritePng(p.string(), width, height, channels, 8, Pattern(width, height, channels, seed)));
}

void Jpeg(const fs::path& p, int width, int height, int channels, int seed = 0) {
  fs::create_directories(p.parent_path());
  ASSERT_TRUE(
      hpo::testing::WriteJpeg(p.string(), width, height, channels, Pattern(width, height, channels, seed)));
}

void Text(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << text;
}

void Put32(std::vector<uint8_t>* b, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) b->push_back(static_cast<uint8_t>(v >> s));
}

// A raw IDX image/label pair of h x w images with these labels.
void Idx(const fs::path& dir, const std::string& prefix, int h, int w, const std::vector<uint8_t>& labels) {
  std::vector<uint8_t> img, lab;
  Put32(&img, 0x803);
  Put32(&img, static_cast<uint32_t>(labels.size()));
  Put32(&img, h);
  Put32(&img, w);
  img.resize(img.size() + labels.size() * h * w, 128);
  Put32(&lab, 0x801);
  Put32(&lab, static_cast<uint32_t>(labels.size()));
  lab.insert(lab.end(), labels.begin(), labels.end());
  std::ofstream(dir / (prefix + "-images-idx3-ubyte"), std::ios::binary)
      .write(reinterpret_cast<const char*>(img.data()), static_cast<std::streamsize>(img.size()));
  std::ofstream(dir / (prefix + "-labels-idx1-ubyte"), std::ios::binary)
      .write(reinterpret_cast<const char*>(lab.data()), static_cast<std::streamsize>(lab.size()));
}

bool HasParam(const ordered_json& spec, const std::string& name) {
  for (const auto& p : spec["parameters"]) {
    if (p["name"] == name) return true;
  }
  return false;
}

// What the server does with a spec at creation: parse it, then build its sampler and pruner.
absl::Status ServerAccepts(const ordered_json& spec) {
  auto parsed = server::ParseStudySpec(FormatSpec(spec));
  if (!parsed.ok()) return parsed.status();
  if (auto s = server::MakeSampler(*parsed); !s.ok()) return s.status();
  if (auto p = server::MakePruner(*parsed, 0); !p.ok()) return p.status();
  return absl::OkStatus();
}

// What a worker does with the spec's task: load the split it describes.
absl::StatusOr<std::shared_ptr<const worker::DataSplit>> WorkerLoads(const fs::path& data_root,
                                                                     const ordered_json& task) {
  worker::SplitOptions o;
  o.train_examples = task.value("train_examples", 0);
  o.val_examples = task.value("val_examples", 0);
  if (task.contains("image_size")) {
    o.image_height = task["image_size"][0];
    o.image_width = task["image_size"][1];
  }
  o.channels = task.value("channels", 0);
  o.resize = task.value("resize", "");
  return worker::LoadSplit(data_root.string(), task["dataset"].get<std::string>(), o);
}

class InitTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("hpo_init_test_" + std::to_string(::getpid()) + "_" +
                                         ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  void TearDown() override { fs::remove_all(root_); }

  // pets/: train/{cat,dog} and val/{cat,dog}, PNG and JPEG of mixed sizes, gray and colour,
  // plus files that are not images: 3 skipped (README.txt, .DS_Store, broken.jpg).
  fs::path MakePets() {
    const fs::path d = root_ / "pets";
    for (int i = 0; i < 3; ++i)
      Png(d / "train/cat" / ("c" + std::to_string(i) + ".png"), 30, 20, 1, i);  // 20x30
    Jpeg(d / "train/cat/big.jpg", 40, 40, 3);                                   // colour
    Jpeg(d / "train/dog/d0.jpg", 24, 24, 1);
    Jpeg(d / "train/dog/d1.jpg", 24, 24, 1, 1);
    std::vector<uint8_t> indices(16 * 16);
    for (size_t i = 0; i < indices.size(); ++i) indices[i] = i % 2;
    fs::create_directories(d / "train/dog");
    EXPECT_TRUE(hpo::testing::WritePalettePng((d / "train/dog/p.png").string(), 16, 16, indices,
                                              {0, 0, 0, 200, 30, 30}));
    std::vector<uint8_t> deep(30 * 20 * 2, 0x40);
    EXPECT_TRUE(hpo::testing::WritePng((d / "train/dog/deep.png").string(), 30, 20, 1, 16, deep));
    Text(d / "train/dog/broken.jpg", "not a jpeg");
    Text(d / "train/README.txt", "about the pets");
    Text(d / "train/cat/.DS_Store", "finder");
    Png(d / "val/cat/v.png", 30, 20, 3);
    Jpeg(d / "val/dog/v.jpg", 30, 20, 3);
    return d;
  }

  // digits/<class>/ only (no train/ or val/), grayscale, 4:1 imbalanced; big images.
  fs::path MakeImbalanced() {
    const fs::path d = root_ / "digits";
    for (int i = 0; i < 16; ++i) Png(d / "many" / ("m" + std::to_string(i) + ".png"), 80, 100, 1, i);
    for (int i = 0; i < 4; ++i) Jpeg(d / "few" / ("f" + std::to_string(i) + ".jpg"), 80, 100, 1, i);
    Text(d / "README.txt", "stray");
    Text(d / ".DS_Store", "finder");
    return d;
  }

  fs::path root_;
};

TEST_F(InitTest, InspectCountsUsableImagesPerClassAndSplitWithSizesAndColour) {
  auto s = worker::InspectDataSet(MakePets().string());
  ASSERT_THAT(s, IsOk());
  EXPECT_EQ(s->format, "image_folder");
  EXPECT_THAT(s->class_names, ElementsAre("cat", "dog"));
  EXPECT_TRUE(s->train.present);
  EXPECT_THAT(s->train.per_class, ElementsAre(4, 4));
  EXPECT_TRUE(s->val.present);
  EXPECT_THAT(s->val.per_class, ElementsAre(1, 1));
  EXPECT_FALSE(s->test.present);
  EXPECT_EQ(s->train.total(), 8);
  // Heights 16,20,20,20,20,24,24,40 and widths 16,24,24,30,30,30,30,40.
  EXPECT_EQ(s->median_height, 20);
  EXPECT_EQ(s->median_width, 30);
  EXPECT_EQ(s->min_side, 16);
  EXPECT_EQ(s->max_side, 40);
  EXPECT_TRUE(s->colour);
  EXPECT_EQ(s->skipped_files, 3);
  bool broken_named = false;
  for (const std::string& e : s->skipped_examples)
    broken_named = broken_named || e.find("broken.jpg: ") != std::string::npos;
  EXPECT_TRUE(broken_named) << ::testing::PrintToString(s->skipped_examples);
}

TEST_F(InitTest, InspectGrayFlatFolderCountsStrayFilesAsSkipped) {
  auto s = worker::InspectDataSet(MakeImbalanced().string());
  ASSERT_THAT(s, IsOk());
  EXPECT_THAT(s->class_names, ElementsAre("few", "many"));
  EXPECT_THAT(s->train.per_class, ElementsAre(4, 16));
  EXPECT_FALSE(s->val.present);
  EXPECT_FALSE(s->colour);
  EXPECT_EQ(s->median_height, 100);
  EXPECT_EQ(s->median_width, 80);
  EXPECT_EQ(s->skipped_files, 2);  // README.txt and .DS_Store beside the class folders
}

TEST_F(InitTest, InspectIdxCountsLabelsOfBothSplits) {
  const fs::path d = root_ / "tiny-idx";
  fs::create_directories(d);
  std::vector<uint8_t> train_labels;
  for (int i = 0; i < 40; ++i) train_labels.push_back(i < 30 ? 0 : (i < 36 ? 1 : 2));
  Idx(d, "train", 10, 12, train_labels);
  Idx(d, "t10k", 10, 12, {0, 1, 2, 2});
  Text(d / "classes.txt", "zero\none\ntwo\n");
  auto s = worker::InspectDataSet(d.string());
  ASSERT_THAT(s, IsOk());
  EXPECT_EQ(s->format, "idx");
  EXPECT_THAT(s->class_names, ElementsAre("zero", "one", "two"));
  EXPECT_THAT(s->train.per_class, ElementsAre(30, 6, 4));
  EXPECT_THAT(s->test.per_class, ElementsAre(1, 1, 2));
  EXPECT_FALSE(s->val.present);
  EXPECT_EQ(s->median_height, 10);
  EXPECT_EQ(s->median_width, 12);
  EXPECT_FALSE(s->colour);

  auto draft = DraftSpec(*s, "tiny-idx");
  ASSERT_THAT(draft, IsOk());
  EXPECT_EQ(draft->spec["objective"]["metric"], "val_balanced_accuracy");  // 30:4
  EXPECT_FALSE(draft->spec["task"].contains("image_size"));                // IDX keeps its size
  EXPECT_THAT(ServerAccepts(draft->spec), IsOk());
}

TEST_F(InitTest, InspectRefusesWhatIsNoDataSet) {
  EXPECT_THAT(worker::InspectDataSet((root_ / "missing").string()),
              StatusIs(absl::StatusCode::kNotFound, "missing"));
  Text(root_ / "loose/a.png", "x");
  EXPECT_THAT(worker::InspectDataSet((root_ / "loose").string()),
              StatusIs(absl::StatusCode::kInvalidArgument, "not a data set"));
  Png(root_ / "one/only/a.png", 10, 10, 1);
  EXPECT_THAT(worker::InspectDataSet((root_ / "one").string()),
              StatusIs(absl::StatusCode::kInvalidArgument, "at least two"));
  Text(root_ / "bad-idx/train-images-idx3-ubyte", "garbage");
  EXPECT_THAT(worker::InspectDataSet((root_ / "bad-idx").string()),
              StatusIs(absl::StatusCode::kInvalidArgument, "IDX"));
}

TEST_F(InitTest, BalancedColourFolderDraftsAccuracyAndImageOptions) {
  auto s = worker::InspectDataSet(MakePets().string());
  ASSERT_THAT(s, IsOk());
  auto d = DraftSpec(*s, "pets");
  ASSERT_THAT(d, IsOk());
  const ordered_json& spec = d->spec;
  EXPECT_EQ(spec["objective"]["metric"], "val_accuracy");
  EXPECT_FALSE(HasParam(spec, "class_weighting"));
  EXPECT_FALSE(HasParam(spec, "sampling"));
  EXPECT_EQ(spec["task"]["dataset"], "pets");
  EXPECT_EQ(spec["task"]["image_size"], ordered_json({20, 30}));
  EXPECT_EQ(spec["task"]["channels"], 3);
  EXPECT_EQ(spec["task"]["resize"], "stretch");
  EXPECT_FALSE(spec["task"].contains("val_examples"));  // val/ is the validation set
  for (const char* p : {"learning_rate", "optimizer", "batch_size", "conv_blocks", "filters", "dense_units",
                        "dropout", "batch_norm", "aug_shift", "aug_rotation", "aug_zoom", "aug_hflip"}) {
    EXPECT_TRUE(HasParam(spec, p)) << p;
  }
  EXPECT_EQ(spec["sampler"]["type"], "tpe");
  EXPECT_EQ(spec["pruner"]["type"], "asha");
  EXPECT_THAT(ServerAccepts(spec), IsOk());
  EXPECT_GE(d->reasons.size(), 8u);
  auto split = WorkerLoads(root_, spec["task"]);
  ASSERT_THAT(split, IsOk());
  EXPECT_EQ((*split)->train.count, 8);
  EXPECT_EQ((*split)->val.count, 2);
  EXPECT_EQ((*split)->train.channels, 3);
  EXPECT_EQ((*split)->train.height, 20);
  EXPECT_EQ((*split)->train.width, 30);
}

TEST_F(InitTest, ImbalancedFolderDraftsBalancedAccuracyWeightingAndSampling) {
  auto s = worker::InspectDataSet(MakeImbalanced().string());
  ASSERT_THAT(s, IsOk());
  auto d = DraftSpec(*s, "digits");
  ASSERT_THAT(d, IsOk());
  const ordered_json& spec = d->spec;
  EXPECT_EQ(spec["objective"]["metric"], "val_balanced_accuracy");
  EXPECT_TRUE(HasParam(spec, "class_weighting"));
  EXPECT_TRUE(HasParam(spec, "sampling"));
  EXPECT_FALSE(HasParam(spec, "aug_hflip"));                      // grayscale
  EXPECT_EQ(spec["task"]["image_size"], ordered_json({64, 51}));  // 100x80 scaled to a 64-px long side
  EXPECT_EQ(spec["task"]["channels"], 1);
  EXPECT_EQ(spec["task"]["val_examples"], 4);  // no val/: 20% of 20 held out
  EXPECT_THAT(ServerAccepts(spec), IsOk());
  auto split = WorkerLoads(root_, spec["task"]);
  ASSERT_THAT(split, IsOk());
  EXPECT_EQ((*split)->train.count, 16);
  EXPECT_EQ((*split)->val.count, 4);
  EXPECT_EQ((*split)->train.channels, 1);
  EXPECT_EQ((*split)->train.height, 64);
  EXPECT_EQ((*split)->train.width, 51);
  bool said = false;
  for (const std::string& r : d->reasons)
    said = said || r.find("imbalanced 4:1 (few 4, many 16)") != std::string::npos;
  EXPECT_TRUE(said) << ::testing::PrintToString(d->reasons);
}

DataSetSummary FashionLike(std::vector<int64_t> train) {
  DataSetSummary s;
  s.format = "idx";
  for (size_t c = 0; c < train.size(); ++c) s.class_names.push_back("class" + std::to_string(c));
  s.train = {true, std::move(train)};
  s.val = {false, std::vector<int64_t>(s.class_names.size(), 0)};
  s.test = {true, std::vector<int64_t>(s.class_names.size(), 1000)};
  s.median_height = s.median_width = s.min_side = s.max_side = 28;
  return s;
}

TEST(DraftSpecTest, LargeIdxSetIsCappedForACpuAndAccepted) {
  auto d = DraftSpec(FashionLike(std::vector<int64_t>(10, 6000)), "fashion-mnist");
  ASSERT_THAT(d, IsOk());
  const ordered_json& task = d->spec["task"];
  EXPECT_EQ(task["val_examples"], 5000);
  EXPECT_EQ(task["train_examples"], 12000);
  EXPECT_EQ(task["max_epochs"], 10);
  EXPECT_FALSE(task.contains("image_size"));
  EXPECT_FALSE(task.contains("channels"));
  EXPECT_EQ(d->spec["objective"]["metric"], "val_accuracy");
  EXPECT_THAT(ServerAccepts(d->spec), IsOk());
  const int trials = d->spec["max_trials"];
  EXPECT_GE(trials, 20);
  EXPECT_LE(trials, 50);
}

ordered_json RecommendedFashionSpec() {
  std::ifstream in(std::string(HPO_SOURCE_DIR) + "/examples/fmnist-best.json");
  return ordered_json::parse(in, nullptr, /*allow_exceptions=*/false);
}

DataSetSummary FullFashionMnist() {
  DataSetSummary s = FashionLike(std::vector<int64_t>(10, 6000));
  s.class_names = worker::FashionMnistClassNames();
  return s;
}

TEST(DraftSpecTest, FullFashionMnistGetsTheRecommendedSpec) {
  const ordered_json recommended = RecommendedFashionSpec();
  ASSERT_TRUE(recommended.is_object()) << "examples/fmnist-best.json does not parse";
  auto d = DraftSpec(FullFashionMnist(), "fashion-mnist");
  ASSERT_THAT(d, IsOk());
  EXPECT_EQ(d->spec["name"], "fashion-mnist");
  ordered_json expected = recommended;
  expected["name"] = "fashion-mnist";
  expected["task"]["dataset"] = "fashion-mnist";
  EXPECT_EQ(d->spec, expected);  // the example file itself, not a copy of it
  EXPECT_THAT(ServerAccepts(d->spec), IsOk());
  bool cites = false;
  for (const std::string& r : d->reasons) cites |= r.find("examples/fmnist-best.json") != std::string::npos;
  EXPECT_TRUE(cites);
  // The hour it was measured in is its time budget, and the reasons say so.
  EXPECT_EQ(d->spec["max_minutes"], 60);
  bool budget = false;
  for (const std::string& r : d->reasons) budget |= r.find("max_minutes 60") != std::string::npos;
  EXPECT_TRUE(budget);
  // Another folder name holding the same files: the spec names that folder.
  auto other = DraftSpec(FullFashionMnist(), "fashion_mnist_copy");
  ASSERT_THAT(other, IsOk());
  EXPECT_EQ(other->spec["task"]["dataset"], "fashion_mnist_copy");
  EXPECT_EQ(other->spec["task"]["max_epochs"], recommended["task"]["max_epochs"]);
}

TEST(DraftSpecTest, OnlyFullFashionMnistGetsTheRecommendedSpec) {
  const ordered_json recommended = RecommendedFashionSpec();
  ASSERT_TRUE(recommended.is_object());
  DataSetSummary digits = FullFashionMnist();  // MNIST: the same shape, digit names
  digits.class_names = FashionLike(std::vector<int64_t>(10, 6000)).class_names;
  DataSetSummary subset = FullFashionMnist();  // too few images for 55,000 + 5,000
  subset.train.per_class.assign(10, 1200);
  DataSetSummary resized = FullFashionMnist();
  resized.median_height = resized.median_width = 32;
  for (const DataSetSummary& s : {digits, subset, resized}) {
    auto d = DraftSpec(s, "fashion-mnist");
    ASSERT_THAT(d, IsOk());
    EXPECT_NE(d->spec["parameters"], recommended["parameters"]);
    EXPECT_NE(d->spec["pruner"], recommended["pruner"]);
    EXPECT_THAT(ServerAccepts(d->spec), IsOk());
  }
}

TEST(DraftSpecTest, ThreeToOneIsStillBalancedAndAboveIsNot) {
  auto at = DraftSpec(FashionLike({300, 100}), "x");
  ASSERT_THAT(at, IsOk());
  EXPECT_EQ(at->spec["objective"]["metric"], "val_accuracy");
  auto above = DraftSpec(FashionLike({301, 100}), "x");
  ASSERT_THAT(above, IsOk());
  EXPECT_EQ(above->spec["objective"]["metric"], "val_balanced_accuracy");
  EXPECT_THAT(ServerAccepts(above->spec), IsOk());
}

TEST(DraftSpecTest, RefusesWhatCannotBeTrained) {
  EXPECT_THAT(DraftSpec(FashionLike({100}), "x"),
              StatusIs(absl::StatusCode::kInvalidArgument, "at least two"));
  DataSetSummary empty_class = FashionLike({100, 0, 50});
  empty_class.format = "image_folder";
  EXPECT_THAT(DraftSpec(empty_class, "x"), StatusIs(absl::StatusCode::kInvalidArgument, "class1"));
  // IDX labels may skip a value: the other classes are still trained on.
  EXPECT_THAT(DraftSpec(FashionLike({100, 0, 50}), "x"), IsOk());
  EXPECT_THAT(DraftSpec(FashionLike({100, 100}), ".."),
              StatusIs(absl::StatusCode::kInvalidArgument, "folder name"));
}

TEST_F(InitTest, InitWritesTheSpecFileAndPrintsReasonsAndCommands) {
  const fs::path pets = MakePets();
  const fs::path out_path = root_ / "spec.json";
  std::ostringstream out, err;
  ASSERT_THAT(Init({pets.string() + "/"}, out_path.string(), out, err), IsOk());
  EXPECT_EQ(err.str(), "");
  std::ifstream in(out_path);
  std::stringstream text;
  text << in.rdbuf();
  auto parsed = server::ParseStudySpec(text.str());
  ASSERT_THAT(parsed, IsOk());
  EXPECT_EQ(parsed->task.dataset, "pets");
  EXPECT_THAT(out.str(), HasSubstr("hpo-worker --data_root=" + root_.string()));
  EXPECT_THAT(out.str(), HasSubstr("hpoctl create " + out_path.string()));
  EXPECT_THAT(out.str(), HasSubstr("hpoctl diagnose $STUDY"));
  EXPECT_THAT(out.str(), HasSubstr("classes are balanced"));
}

TEST_F(InitTest, InitWithoutOutPutsTheSpecOnStdoutAndTheReasonsOnStderr) {
  std::ostringstream out, err;
  ASSERT_THAT(Init({MakeImbalanced().string()}, "", out, err), IsOk());
  EXPECT_THAT(server::ParseStudySpec(out.str()), IsOk());
  EXPECT_THAT(err.str(), HasSubstr("val_balanced_accuracy"));
  EXPECT_THAT(err.str(), HasSubstr("hpoctl create spec.json"));
}

TEST_F(InitTest, InitRefusesBadArgumentsAndFoldersWithAClearStatus) {
  std::ostringstream out, err;
  EXPECT_THAT(Init({}, "", out, err), StatusIs(absl::StatusCode::kInvalidArgument, "usage: hpoctl init"));
  EXPECT_THAT(Init({"a", "b"}, "", out, err),
              StatusIs(absl::StatusCode::kInvalidArgument, "usage: hpoctl init"));
  EXPECT_THAT(Init({(root_ / "nope").string()}, "", out, err), StatusIs(absl::StatusCode::kNotFound, "nope"));
  EXPECT_THAT(Init({MakePets().string()}, (root_ / "no/such/dir/spec.json").string(), out, err),
              StatusIs(absl::StatusCode::kPermissionDenied, "cannot write"));
  EXPECT_EQ(out.str(), "");
}

TEST(InitFashionMnistTest, TheInstalledDataSetIsInspected) {
  const std::string dir = "/usr/share/datasets/fashion-mnist";
  if (!fs::exists(dir)) GTEST_SKIP() << dir << " is not installed (apt-get install dataset-fashion-mnist)";
  auto s = worker::InspectDataSet(dir);
  ASSERT_THAT(s, IsOk());
  EXPECT_EQ(s->format, "idx");
  EXPECT_EQ(s->train.total(), 60000);
  EXPECT_EQ(s->test.total(), 10000);
  ASSERT_EQ(s->class_names.size(), 10u);
  EXPECT_EQ(s->class_names[1], "trouser");  // ClassNamesFor's Fashion-MNIST names, not "1"
  auto d = DraftSpec(*s, "fashion-mnist");
  ASSERT_THAT(d, IsOk());
  EXPECT_THAT(ServerAccepts(d->spec), IsOk());
  // The installed files are recognized: the recommended spec.
  ordered_json expected = RecommendedFashionSpec();
  expected["name"] = expected["task"]["dataset"] = "fashion-mnist";
  EXPECT_EQ(d->spec, expected);
}

}  // namespace
}  // namespace hpo::client
