#include "server/core/study_spec.h"

#include <gtest/gtest.h>

#include <fstream>
#include <functional>
#include <sstream>

#include "server/pruner/pruner_registry.h"
#include "server/sampler/sampler_registry.h"
#include "tests/testing/status_matchers.h"

namespace hpo::server {
namespace {

using ::hpo::testing::IsOk;
using ::hpo::testing::StatusIs;
using nlohmann::json;

std::string QuickSpec() {
  std::ifstream in(std::string(HPO_SOURCE_DIR) + "/examples/fmnist-quick.json");
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// The quick-start spec with `params` as its search space.
std::string WithParams(const json& params) {
  json j = json::parse(QuickSpec());
  j["parameters"] = params;
  return j.dump();
}

absl::Status Validate(const std::string& text) {
  auto spec = ParseStudySpec(text);
  if (!spec.ok()) return spec.status();
  if (auto s = MakeSampler(*spec); !s.ok()) return s.status();
  if (auto p = MakePruner(*spec); !p.ok()) return p.status();
  return absl::OkStatus();
}

TEST(StudySpecTest, AcceptsTheQuickStartExampleAsWritten) {
  auto spec = ParseStudySpec(QuickSpec());
  ASSERT_THAT(spec, IsOk());
  EXPECT_EQ(spec->name, "fmnist-quick");
  EXPECT_EQ(spec->direction, Direction::kMaximize);
  EXPECT_EQ(spec->task.train_examples, 6000);
  EXPECT_EQ(spec->task.val_examples, 2000);
  EXPECT_EQ(spec->task.max_epochs, 4);
  ASSERT_EQ(spec->params.size(), 6u);
  EXPECT_TRUE(spec->params[0].log);
  EXPECT_EQ(spec->params[2].choices[1], ParamValue(int64_t{64}));
  EXPECT_EQ(*spec->params[4].step, 8);
  EXPECT_EQ(spec->max_trials, 12);
  EXPECT_EQ(*spec->seed, 42u);
  EXPECT_THAT(Validate(QuickSpec()), IsOk());
}

TEST(StudySpecTest, MalformedJsonNamesLineAndColumn) {
  EXPECT_THAT(ParseStudySpec("{\n  \"name\": \"x\",\n  \"task\": {,\n}"),
              StatusIs(absl::StatusCode::kInvalidArgument, "line 3, column"));
}

struct BadCase {
  const char* what;
  json params;
  const char* message;
};

TEST(StudySpecTest, RefusesBadParametersWithAMessageThatSaysWhy) {
  const BadCase cases[] = {
      {"unknown type", json::parse(R"([{"name": "dropout", "type": "double", "low": 0, "high": 0.5}])"),
       "unknown type \"double\""},
      {"low >= high", json::parse(R"([{"name": "dropout", "type": "float", "low": 0.5, "high": 0.5}])"),
       "must be below high"},
      {"log with low <= 0",
       json::parse(R"([{"name": "learning_rate", "type": "float", "low": 0, "high": 0.1, "log": true}])"),
       "log-scaled range needs low > 0"},
      {"empty choices", json::parse(R"([{"name": "optimizer", "type": "categorical", "choices": []}])"),
       "choices must not be empty"},
      {"duplicate choices",
       json::parse(R"([{"name": "optimizer", "type": "categorical", "choices": ["adam", "adam"]}])"),
       "appears twice"},
      {"duplicate names",
       json::parse(R"([{"name": "dropout", "type": "float", "low": 0, "high": 0.5},
                       {"name": "dropout", "type": "float", "low": 0, "high": 0.2}])"),
       "duplicate parameter name \"dropout\""},
      {"step does not fit",
       json::parse(R"([{"name": "filters", "type": "int", "low": 8, "high": 60, "step": 8}])"),
       "does not fit the range"},
      {"unknown task parameter",
       json::parse(R"([{"name": "colour", "type": "float", "low": 0, "high": 1}])"),
       "not a parameter of the cnn task"},
      {"value the task cannot use",
       json::parse(R"([{"name": "optimizer", "type": "categorical", "choices": ["adam", "lbfgs"]}])"),
       "lbfgs is not supported"},
      {"dropout out of range", json::parse(R"([{"name": "dropout", "type": "float", "low": 0, "high": 1.5}])"),
       "outside what the cnn task accepts"},
      {"float for an int parameter",
       json::parse(R"([{"name": "filters", "type": "float", "low": 8, "high": 64}])"), "takes integers"},
      {"no parameters", json::array(), "non-empty array"},
  };
  for (const BadCase& c : cases) {
    EXPECT_THAT(Validate(WithParams(c.params)), StatusIs(absl::StatusCode::kInvalidArgument, c.message))
        << c.what;
  }
}

TEST(StudySpecTest, RefusesBadStudySettings) {
  json j = json::parse(QuickSpec());
  auto with = [&](const char* key, const json& value) {
    json k = j;
    k[key] = value;
    return Validate(k.dump());
  };
  EXPECT_THAT(with("max_trials", 0), StatusIs(absl::StatusCode::kInvalidArgument, "max_trials must be"));
  EXPECT_THAT(with("sampler", {{"type", "annealing"}}),
              StatusIs(absl::StatusCode::kInvalidArgument, "sampler.type \"annealing\" is unknown"));
  EXPECT_THAT(with("pruner", {{"type", "hyperband2"}}),
              StatusIs(absl::StatusCode::kInvalidArgument, "pruner.type \"hyperband2\" is unknown"));
  EXPECT_THAT(with("pruner", {{"type", "median"}, {"startup", 3}}),
              StatusIs(absl::StatusCode::kInvalidArgument, "unknown option \"startup\""));
  EXPECT_THAT(with("max_trial", 3), StatusIs(absl::StatusCode::kInvalidArgument, "unknown key \"max_trial\""));
  EXPECT_THAT(with("task", {{"type", "rnn"}, {"dataset", "x"}}),
              StatusIs(absl::StatusCode::kInvalidArgument, "task.type \"rnn\" is unknown"));
  EXPECT_THAT(with("task", {{"type", "cnn"}, {"dataset", "../etc"}}),
              StatusIs(absl::StatusCode::kInvalidArgument, "task.dataset"));
  EXPECT_THAT(with("objective", {{"metric", "accuracy"}}),
              StatusIs(absl::StatusCode::kInvalidArgument, "objective.metric \"accuracy\""));
}

// The quick-start spec with its task changed by `edit`.
std::string WithTask(const std::function<void(json&)>& edit) {
  json j = json::parse(QuickSpec());
  edit(j["task"]);
  return j.dump();
}

TEST(StudySpecTest, TaskDefaultsAreLeftToTheWorker) {
  auto spec = ParseStudySpec(WithTask([](json& t) { t.erase("val_examples"); }));
  ASSERT_THAT(spec, IsOk());
  EXPECT_EQ(spec->task.val_examples, 0);  // the worker picks: val/, 10000, or 20%
  EXPECT_EQ(spec->task.image_height, 0);
  EXPECT_EQ(spec->task.image_width, 0);
  EXPECT_EQ(spec->task.channels, 0);
  EXPECT_EQ(spec->task.resize, "");
  EXPECT_EQ(ParseStudySpec(WithTask([](json& t) { t["val_examples"] = 0; }))->task.val_examples, 0);
  EXPECT_EQ(ParseStudySpec(WithTask([](json& t) { t["val_examples"] = 1; }))->task.val_examples, 1);
}

TEST(StudySpecTest, AcceptsImageFolderOptions) {
  auto spec = ParseStudySpec(WithTask([](json& t) {
    t["image_size"] = {64, 48};
    t["channels"] = 3;
    t["resize"] = "pad";
  }));
  ASSERT_THAT(spec, IsOk());
  EXPECT_EQ(spec->task.image_height, 64);
  EXPECT_EQ(spec->task.image_width, 48);
  EXPECT_EQ(spec->task.channels, 3);
  EXPECT_EQ(spec->task.resize, "pad");
  for (const char* mode : {"stretch", "crop"}) {
    EXPECT_THAT(ParseStudySpec(WithTask([&](json& t) { t["resize"] = mode; })), IsOk()) << mode;
  }
  EXPECT_THAT(ParseStudySpec(WithTask([](json& t) { t["image_size"] = {8, 1024}; t["channels"] = 1; })), IsOk());
}

TEST(StudySpecTest, RefusesBadImageOptionsSayingWhatToWrite) {
  const struct {
    const char* key;
    json value;
    const char* message;
  } cases[] = {
      {"image_size", json::array({64}), "task.image_size must be [height, width] with integers in [8, 1024], not [64]"},
      {"image_size", {64, 64, 3}, "task.image_size must be [height, width]"},
      {"image_size", {4, 64}, "integers in [8, 1024], not [4,64]"},
      {"image_size", {64, 1025}, "integers in [8, 1024]"},
      {"image_size", {64.5, 64}, "integers in [8, 1024]"},
      {"image_size", "64x64", "task.image_size must be [height, width]"},
      {"channels", 2, "task.channels must be 1 (grayscale) or 3 (RGB), not 2"},
      {"channels", "rgb", "task.channels must be 1 (grayscale) or 3 (RGB)"},
      {"resize", "zoom", "task.resize must be \"stretch\", \"pad\" or \"crop\", not \"zoom\""},
      {"resize", 1, "task.resize must be"},
      {"val_examples", -1, "task.val_examples must be in [1, 10000000], or 0 / omitted for the default"},
      {"val_examples", 1.5, "task.val_examples must be an integer"},
      {"image_sizes", {64, 64}, "unknown key \"image_sizes\""},
  };
  for (const auto& c : cases) {
    EXPECT_THAT(ParseStudySpec(WithTask([&](json& t) { t[c.key] = c.value; })),
                StatusIs(absl::StatusCode::kInvalidArgument, c.message))
        << c.key << " = " << c.value.dump();
  }
  // Only the cnn task has images.
  json external = json::parse(QuickSpec());
  external["task"] = {{"type", "external"}, {"image_size", {32, 32}}};
  EXPECT_THAT(ParseStudySpec(external.dump()),
              StatusIs(absl::StatusCode::kInvalidArgument, "unknown key \"image_size\""));
}

TEST(StudySpecTest, RefusesDatasetNamesThatCouldLeaveTheDataRoot) {
  const struct {
    std::string name;
    const char* message;
  } cases[] = {
      {"", "task.dataset must not be empty"},
      {".", "would be --data_root itself or the folder above it"},
      {"..", "would be --data_root itself or the folder above it"},
      {"/usr/share/datasets/fashion-mnist", "is an absolute path"},
      {"../etc", "contains '/'"},
      {"fashion-mnist/..", "contains '/'"},
      {"a/b", "contains '/'"},
      {"fashion\nmnist", "must not contain control characters"},
      {std::string("x\0y", 3), "must not contain control characters"},
      {std::string(256, 'a'), "longer than a directory name may be"},
  };
  for (const auto& c : cases) {
    EXPECT_THAT(ParseStudySpec(WithTask([&](json& t) { t["dataset"] = c.name; })),
                StatusIs(absl::StatusCode::kInvalidArgument, c.message))
        << c.name;
  }
  for (const char* ok : {"fashion-mnist", "my..data", ".hidden", "cifar 10"}) {
    EXPECT_THAT(ParseStudySpec(WithTask([&](json& t) { t["dataset"] = ok; })), IsOk()) << ok;
  }
}

TEST(StudySpecTest, AcceptsEveryParameterKind) {
  const json params = json::parse(R"([
    {"name": "learning_rate", "type": "float", "low": 1e-4, "high": 1e-1, "log": true},
    {"name": "dropout", "type": "float", "low": 0.0, "high": 0.5, "step": 0.1},
    {"name": "filters", "type": "int", "low": 8, "high": 64, "log": true},
    {"name": "dense_units", "type": "int", "low": 32, "high": 256, "step": 32},
    {"name": "batch_norm", "type": "categorical", "choices": [true, false]},
    {"name": "weight_decay", "type": "categorical", "choices": [0, 0.0001, 0.001]}])");
  EXPECT_THAT(Validate(WithParams(params)), IsOk());
}

}  // namespace
}  // namespace hpo::server
