#include "server/model/study_spec.h"

#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <functional>
#include <sstream>

#include "server/model/worker_reports.h"
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
  if (auto p = MakePruner(*spec, 0); !p.ok()) return p.status();
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

TEST(StudySpecTest, MaxMinutesIsAPositiveNumberOfMinutesUpToAYear) {
  json j = json::parse(QuickSpec());
  EXPECT_EQ(ParseStudySpec(j.dump())->max_minutes, 0);  // left out: no time budget
  auto with = [&](const json& value) {
    json k = j;
    k["max_minutes"] = value;
    return ParseStudySpec(k.dump());
  };
  ASSERT_THAT(with(30), IsOk());
  EXPECT_EQ(with(30)->max_minutes, 30);
  EXPECT_EQ(with(0.5)->max_minutes, 0.5);
  EXPECT_EQ(with(525600)->max_minutes, 525600);
  for (const json& bad : {json(0), json(-5), json(525601), json(1e300)}) {
    EXPECT_THAT(with(bad), StatusIs(absl::StatusCode::kInvalidArgument,
                                    "max_minutes must be a number of minutes above 0 and at most 525600"))
        << bad;
  }
  EXPECT_THAT(with("30"), StatusIs(absl::StatusCode::kInvalidArgument, "spec.max_minutes must be a number, not"));
  EXPECT_THAT(with(nullptr), StatusIs(absl::StatusCode::kInvalidArgument, "spec.max_minutes must be a number"));
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

// An external-task spec (any parameter names) with `params` as its search space.
std::string External(const json& params, const json& sampler = {{"type", "random"}}) {
  json j = {{"name", "hostile"}, {"task", {{"type", "external"}}}, {"parameters", params},
            {"sampler", sampler}, {"max_trials", 5}};
  return j.dump();
}

// The quick-start spec with `key` set to the raw JSON text `raw` (which json could not hold).
std::string WithRaw(const std::string& key, const std::string& raw) {
  json j = json::parse(QuickSpec());
  j.erase(key);
  std::string text = j.dump();
  text.insert(text.size() - 1, ", \"" + key + "\": " + raw);
  return text;
}

TEST(HostileSpecTest, DeepNestingIsRefusedBeforeAnythingRecursesIntoIt) {
  const std::string deep = std::string(70'000, '[') + std::string(70'000, ']');
  // max_trials and pruner reached a recursive dump or copy of the client's JSON and overflowed the stack.
  for (const char* key : {"max_trials", "pruner", "sampler", "name", "task", "max_trials_x"}) {
    EXPECT_THAT(ParseStudySpec(WithRaw(key, deep)),
                StatusIs(absl::StatusCode::kInvalidArgument, "nested deeper than 64"))
        << key;
  }
  EXPECT_THAT(ParseStudySpec(deep), StatusIs(absl::StatusCode::kInvalidArgument, "nested deeper than 64"));
  EXPECT_THAT(ParseStudySpec(std::string(70'000, '{')),
              StatusIs(absl::StatusCode::kInvalidArgument, "nested deeper than 64"));
  // Brackets inside strings are text, not nesting.
  json named = json::parse(QuickSpec());
  named["name"] = std::string(200, '[');
  EXPECT_THAT(ParseStudySpec(named.dump()), IsOk());
  // 64 levels are fine as far as nesting goes (then refused as a bad max_trials).
  EXPECT_THAT(ParseStudySpec(WithRaw("max_trials_x", std::string(63, '[') + std::string(63, ']'))),
              StatusIs(absl::StatusCode::kInvalidArgument, "unknown key \"max_trials_x\""));
}

TEST(HostileSpecTest, ALargeSpecIsRefusedWithTheLimitAndMessagesQuoteOnlyAShortPrefix) {
  json j = json::parse(QuickSpec());
  j["name"] = std::string(1100 * 1024, 'n');
  EXPECT_THAT(ParseStudySpec(j.dump()), StatusIs(absl::StatusCode::kInvalidArgument, "1048576 bytes"));
  // A bad value is quoted, but only its beginning.
  json k = json::parse(QuickSpec());
  k["max_trials"] = std::string(500'000, 'x');
  auto s = ParseStudySpec(k.dump());
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kInvalidArgument, "max_trials must be an integer"));
  EXPECT_LT(s.status().message().size(), 400u);
  json big_array = json::parse(QuickSpec());
  big_array["max_trials"] = json::array();
  for (int i = 0; i < 100'000; ++i) big_array["max_trials"].push_back(i);
  s = ParseStudySpec(big_array.dump());
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kInvalidArgument, "max_trials must be an integer"));
  EXPECT_LT(s.status().message().size(), 400u);
}

TEST(HostileSpecTest, AGridTooLargeIsRefusedBeforeItIsBuilt) {
  // Before: every value of the range was built first (2^40 values: 23.5 GB, OOM-killed).
  const auto start = std::chrono::steady_clock::now();
  EXPECT_THAT(Validate(External(json::parse(R"([{"name": "x", "type": "int", "low": 0, "high": 1099511627776}])"),
                                {{"type", "grid"}})),
              StatusIs(absl::StatusCode::kInvalidArgument, "more than 1000000 points"));
  EXPECT_THAT(Validate(External(json::parse(R"([{"name": "x", "type": "float", "low": 0, "high": 1, "step": 1e-12}])"),
                                {{"type", "grid"}})),
              StatusIs(absl::StatusCode::kInvalidArgument, "more than 1000000 points"));
  // Two parameters of 1,001 values each: 1,002,001 points.
  EXPECT_THAT(Validate(External(json::parse(R"([{"name": "x", "type": "int", "low": 0, "high": 1000},
                                                 {"name": "y", "type": "int", "low": 0, "high": 1000}])"),
                                {{"type", "grid"}})),
              StatusIs(absl::StatusCode::kInvalidArgument, "more than 1000000 points"));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  EXPECT_THAT(Validate(External(json::parse(R"([{"name": "x", "type": "int", "low": 0, "high": 999},
                                                 {"name": "y", "type": "int", "low": 0, "high": 999}])"),
                                {{"type", "grid"}})),
              IsOk());
}

TEST(HostileSpecTest, IntRangesThatCouldOverflowAreRefused) {
  for (const char* range : {R"("low": 0, "high": 9223372036854775807)", R"("low": -9223372036854775808, "high": 0)",
                            R"("low": 0, "high": 18446744073709551615)", R"("low": 0, "high": 9007199254740993)",
                            R"("low": -9007199254740993, "high": 0)",
                            R"("low": 0, "high": 9007199254740992, "step": 9223372036854775807)"}) {
    const std::string p = std::string(R"([{"name": "n", "type": "int", )") + range + "}]";
    EXPECT_THAT(Validate(External(json::parse(p))),
                StatusIs(absl::StatusCode::kInvalidArgument, "9007199254740992"))
        << range;
  }
  EXPECT_THAT(Validate(External(json::parse(R"([{"name": "n", "type": "int", "low": -9007199254740992,
                                                  "high": 9007199254740992}])"))),
              IsOk());
}

TEST(HostileSpecTest, NonFiniteRangesAndStepsAreRefused) {
  // high - low is infinite: the step check compared NaN and let it through.
  EXPECT_THAT(Validate(External(json::parse(R"([{"name": "x", "type": "float", "low": -1e308, "high": 1e308,
                                                  "step": 1e308}])"))),
              StatusIs(absl::StatusCode::kInvalidArgument, "finite"));
  EXPECT_THAT(Validate(External(json::parse(R"([{"name": "x", "type": "float", "low": -1e308, "high": 1e308}])"))),
              StatusIs(absl::StatusCode::kInvalidArgument, "finite"));
  ParamSpec p;
  p.name = "x";
  p.type = ParamType::kFloat;
  p.low = 0;
  p.high = 1;
  for (double step : {std::numeric_limits<double>::infinity(), std::numeric_limits<double>::quiet_NaN()}) {
    p.step = step;
    EXPECT_THAT(ValidateParamSpec(p), StatusIs(absl::StatusCode::kInvalidArgument, "step")) << step;
  }
}

TEST(HostileSpecTest, ValuesJsonOrTheTaskCannotHoldAreRefusedNotThrown) {
  // 1e309 is beyond double range; nlohmann threw out_of_range from the parser.
  EXPECT_THAT(ParseStudySpec(WithRaw("max_retries", "1e309")),
              StatusIs(absl::StatusCode::kInvalidArgument, "not valid JSON"));
  // j.value("type", "") threw type_error on a non-string type.
  EXPECT_THAT(ParseStudySpec(WithTask([](json& t) { t["type"] = 1; })),
              StatusIs(absl::StatusCode::kInvalidArgument, "task.type must be a string"));
  // Invalid UTF-8: refused, and the message itself is valid UTF-8.
  std::string bad = QuickSpec();
  bad.replace(bad.find("fmnist-quick"), 6, "\xff\xfe\x80" "abc");
  auto s = ParseStudySpec(bad);
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kInvalidArgument, "not valid JSON"));
  EXPECT_TRUE(IsValidUtf8(std::string(s.status().message()))) << s.status().message();
  EXPECT_THAT(ParseStudySpec(std::string("{\"name\xff\": 1}")), StatusIs(absl::StatusCode::kInvalidArgument, ""));
}

TEST(HostileSpecTest, ImbalanceClassesMustBeLabelsNotTruncatedIntegers) {
  for (const char* c : {"4294967296", "-4294967296", "18446744073709551615", "256", "-1", "1.0"}) {
    json j = json::parse(QuickSpec());
    j["task"]["imbalance"] = json::parse(std::string(R"({"classes": [)") + c + R"(], "keep_fraction": 0.1})");
    EXPECT_THAT(ParseStudySpec(j.dump()), StatusIs(absl::StatusCode::kInvalidArgument, "integers 0..255")) << c;
  }
  auto ok = ParseStudySpec(WithTask([](json& t) { t["imbalance"] = {{"classes", {0, 255}}, {"keep_fraction", 0.1}}; }));
  ASSERT_THAT(ok, IsOk());
  EXPECT_EQ(ok->task.imbalance_classes, (std::vector<int>{0, 255}));
}

TEST(StudySpecTest, PartialEpochsAreFractionsOfTheFirstEpochs) {
  auto ok = ParseStudySpec(WithTask([](json& t) { t["partial_epochs"] = {0.25, 1}; }));
  ASSERT_THAT(ok, IsOk());
  EXPECT_EQ(ok->task.partial_epochs, (std::vector<double>{0.25, 1.0}));
  EXPECT_TRUE(ParseStudySpec(QuickSpec())->task.partial_epochs.empty());
  // The quick-start spec trains 4 epochs: a fifth entry could never apply.
  for (const char* bad :
       {"[0]", "[-0.5]", "[1.5]", "[\"0.5\"]", "[null]", "0.5", "{}", "[0.1, 0.2, 0.3, 0.4, 0.5]"}) {
    EXPECT_THAT(ParseStudySpec(WithTask([&](json& t) { t["partial_epochs"] = json::parse(bad); })),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         "task.partial_epochs must be a list of at most max_epochs (4)"))
        << bad;
  }
  EXPECT_THAT(ParseStudySpec(WithTask([](json& t) {
                t["partial_epochs"] = {0.5, 2};
              })),
              StatusIs(absl::StatusCode::kInvalidArgument, "entry 1 is 2"));
}

TEST(StudySpecTest, TrainingSeedIsANonNegative32BitInteger) {
  EXPECT_EQ(ParseStudySpec(QuickSpec())->task.training_seed, 0);
  auto ok = ParseStudySpec(WithTask([](json& t) { t["training_seed"] = 2147483647; }));
  ASSERT_THAT(ok, IsOk());
  EXPECT_EQ(ok->task.training_seed, 2147483647);
  for (const char* bad : {"-1", "2147483648", "18446744073709551615"}) {
    EXPECT_THAT(ParseStudySpec(WithTask([&](json& t) { t["training_seed"] = json::parse(bad); })),
                StatusIs(absl::StatusCode::kInvalidArgument, "task.training_seed must be in [0, 2147483647]"))
        << bad;
  }
  for (const char* bad : {"\"1\"", "1.5", "1e20"}) {
    EXPECT_THAT(ParseStudySpec(WithTask([&](json& t) { t["training_seed"] = json::parse(bad); })),
                StatusIs(absl::StatusCode::kInvalidArgument, "task.training_seed must be an integer"))
        << bad;
  }
}

TEST(HostileSpecTest, ChoicesAndParametersAreCountedAndDuplicatesFoundFast) {
  // 480,000 distinct choices: the pairwise duplicate check took 81 s.
  ParamSpec p;
  p.name = "c";
  p.type = ParamType::kCategorical;
  for (int64_t i = 0; i < 480'000; ++i) p.choices.emplace_back(i);
  p.choices.emplace_back(std::string("s"));
  p.choices.emplace_back(2.5);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_THAT(ValidateParamSpec(p), IsOk());
  p.choices.emplace_back(int64_t{479'999});
  EXPECT_THAT(ValidateParamSpec(p), StatusIs(absl::StatusCode::kInvalidArgument, "choice 479999 appears twice"));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  // A spec may hold at most 10,000 choices per parameter and 1,000 parameters.
  json choices = json::array();
  for (int i = 0; i < 10'001; ++i) choices.push_back(i);
  EXPECT_THAT(ParseStudySpec(External({{{"name", "c"}, {"type", "categorical"}, {"choices", choices}}})),
              StatusIs(absl::StatusCode::kInvalidArgument, "at most 10000 choices"));
  choices.erase(choices.size() - 1);
  EXPECT_THAT(ParseStudySpec(External({{{"name", "c"}, {"type", "categorical"}, {"choices", choices}}})), IsOk());
  json params = json::array();
  for (int i = 0; i < 1'001; ++i) {
    params.push_back({{"name", "p" + std::to_string(i)}, {"type", "float"}, {"low", 0}, {"high", 1}});
  }
  EXPECT_THAT(ParseStudySpec(External(params)), StatusIs(absl::StatusCode::kInvalidArgument, "at most 1000 parameters"));
  params.erase(params.size() - 1);
  EXPECT_THAT(ParseStudySpec(External(params)), IsOk());
}

TEST(HostileSpecTest, NamesHaveALengthLimit) {
  json j = json::parse(QuickSpec());
  j["name"] = std::string(257, 'n');
  EXPECT_THAT(ParseStudySpec(j.dump()), StatusIs(absl::StatusCode::kInvalidArgument, "at most 256 bytes"));
  j["name"] = std::string(256, 'n');
  EXPECT_THAT(ParseStudySpec(j.dump()), IsOk());
  EXPECT_THAT(ParseStudySpec(External({{{"name", std::string(129, 'p')}, {"type", "float"}, {"low", 0}, {"high", 1}}})),
              StatusIs(absl::StatusCode::kInvalidArgument, "at most 128 bytes"));
  json ext = json::parse(External({{{"name", "x"}, {"type", "float"}, {"low", 0}, {"high", 1}}}));
  ext["objective"] = {{"metric", std::string(129, 'm')}};
  EXPECT_THAT(ParseStudySpec(ext.dump()), StatusIs(absl::StatusCode::kInvalidArgument, "at most 128 bytes"));
  EXPECT_THAT(ParseStudySpec(External({{{"name", "c"}, {"type", "categorical"}, {"choices", {std::string(1025, 'c')}}}})),
              StatusIs(absl::StatusCode::kInvalidArgument, "at most 1024 bytes"));
}

}  // namespace
}  // namespace hpo::server
