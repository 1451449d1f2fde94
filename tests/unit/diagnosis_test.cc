// Each diagnosis rule on a study built to have (or not have) its problem.
#include "server/core/diagnosis.h"

#include <gtest/gtest.h>

#include "server/model/study_spec.h"

namespace hpo::server {
namespace {

using nlohmann::json;

Study MakeStudy(const json& params = json::parse(R"([{"name": "learning_rate", "type": "float", "low": 0.0001, "high": 0.1, "log": true}])")) {
  json spec = {{"name", "d"}, {"task", {{"type", "cnn"}, {"dataset", "x"}, {"max_epochs", 5}}}, {"max_trials", 50},
               {"parameters", params}};
  Study s;
  s.spec = *ParseStudySpec(spec.dump());
  return s;
}

// A completed trial with the given validation and training accuracies per epoch.
Trial Curve(int number, const std::vector<double>& val, const std::vector<double>& train, double lr = 0.001) {
  Trial t;
  t.number = number;
  t.id = number + 1;
  t.state = TrialState::kCompleted;
  t.params["learning_rate"] = lr;
  for (size_t k = 0; k < val.size(); ++k) {
    t.measurements.push_back({static_cast<int>(k + 1), val[k], {{"val_accuracy", val[k]}, {"train_accuracy", train[k]}}, {}});
    if (!t.value || val[k] > *t.value) {
      t.value = val[k];
      t.best_step = static_cast<int>(k + 1);
    }
  }
  return t;
}

bool Names(const std::vector<Finding>& fs, const std::string& cause) {
  return !fs.empty() && fs.front().cause == cause;
}

TEST(DiagnosisTest, OverfittingNeedsAGapAndAStalledValidationCurve) {
  auto f = CheckOverfitting(Curve(0, {0.80, 0.84, 0.83, 0.82}, {0.85, 0.93, 0.97, 0.99}));
  ASSERT_TRUE(f.has_value());
  EXPECT_NE(f->evidence.find("epoch 2"), std::string::npos) << f->evidence;
  EXPECT_NE(f->evidence.find("0.990"), std::string::npos) << f->evidence;
  EXPECT_FALSE(CheckOverfitting(Curve(0, {0.80, 0.84, 0.86, 0.88}, {0.85, 0.93, 0.97, 0.99})));  // still improving
  EXPECT_FALSE(CheckOverfitting(Curve(0, {0.80, 0.84, 0.83, 0.82}, {0.80, 0.85, 0.86, 0.87})));  // small gap
}

TEST(DiagnosisTest, UnderfittingIsLowAndFlatTrainingAccuracy) {
  EXPECT_TRUE(CheckUnderfitting(Curve(0, {0.5, 0.55, 0.56}, {0.52, 0.56, 0.562})));
  EXPECT_FALSE(CheckUnderfitting(Curve(0, {0.5, 0.55, 0.6}, {0.52, 0.56, 0.62})));  // still climbing
  EXPECT_FALSE(CheckUnderfitting(Curve(0, {0.8, 0.85, 0.86}, {0.85, 0.88, 0.885})));
}

TEST(DiagnosisTest, LearningRateTooHighWhenTheStuckTrialsHadHighRates) {
  Study s = MakeStudy();
  s.trials = {Curve(0, {0.10, 0.10}, {0.1, 0.1}, 0.08), Curve(1, {0.11, 0.10}, {0.1, 0.1}, 0.05),
              Curve(2, {0.80, 0.85}, {0.8, 0.86}, 0.001), Curve(3, {0.78, 0.84}, {0.8, 0.85}, 0.0005),
              Curve(4, {0.79, 0.83}, {0.8, 0.84}, 0.002)};
  auto f = CheckLearningRate(s);
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->cause, "learning rate too high (divergence)");
  EXPECT_NE(f->evidence.find("2 trials never left chance level"), std::string::npos) << f->evidence;
  EXPECT_TRUE(Names(Diagnose(s, -1), "learning rate too high (divergence)"));
  s.trials[0].params["learning_rate"] = 0.001;  // stuck trials no longer differ in rate
  s.trials[1].params["learning_rate"] = 0.001;
  EXPECT_FALSE(CheckLearningRate(s));
}

TEST(DiagnosisTest, ClassImbalanceNamesTheWeakClassesAndWhetherWeightingHelped) {
  Study s = MakeStudy(json::parse(R"([{"name": "class_weighting", "type": "categorical", "choices": ["none", "inverse"]}])"));
  Trial plain = Curve(0, {0.70, 0.72}, {0.75, 0.76});
  plain.params = {{"class_weighting", std::string("none")}};
  Trial weighted = Curve(1, {0.78, 0.80}, {0.79, 0.81});
  weighted.params = {{"class_weighting", std::string("inverse")}};
  plain.classes = ClassReport{};
  plain.classes->val_recall = {0.90, 0.90, 0.90, 0.10};
  weighted.classes = ClassReport{};
  weighted.classes->val_recall = {0.85, 0.85, 0.85, 0.60};
  s.trials = {plain, weighted};
  auto f = CheckClassImbalance(s, plain);
  ASSERT_TRUE(f.has_value());
  EXPECT_NE(f->evidence.find("class 3 recall 0.10"), std::string::npos) << f->evidence;
  EXPECT_NE(f->evidence.find("with class weighting or balanced sampling the best val_accuracy is 0.800 (trial 1"),
            std::string::npos) << f->evidence;
  EXPECT_FALSE(CheckClassImbalance(s, weighted));  // 0.60 is not below 0.6 x 0.79
  // Per-class strings in the final metrics are not the contract: only the ClassReport counts.
  Trial legacy = Curve(2, {0.70, 0.72}, {0.75, 0.76});
  for (int c = 0; c < 4; ++c) legacy.final_metrics["val_recall/" + std::to_string(c)] = c == 3 ? 0.10 : 0.90;
  EXPECT_FALSE(CheckClassImbalance(s, legacy));
}

TEST(DiagnosisTest, ClassImbalanceNamesClassesByTheirNames) {
  Study s = MakeStudy();
  s.spec.task.imbalance_classes = {0, 3};
  s.spec.task.imbalance_keep = 0.05;
  Trial t = Curve(0, {0.70, 0.72}, {0.75, 0.76});
  t.data = DataReport{};
  t.data->class_names = {"T-shirt/top", "trouser", "pullover", "coat"};
  t.classes = ClassReport{};
  t.classes->val_recall = {0.30, 0.90, 0.90, 0.90};
  t.classes->train_count = {50, 1000, 1000, 1000};
  s.trials = {t};
  auto f = CheckClassImbalance(s, t);
  ASSERT_TRUE(f.has_value());
  EXPECT_NE(f->evidence.find("class \"T-shirt/top\" recall 0.30 (50 training images), against up to 1000"),
            std::string::npos) << f->evidence;
  EXPECT_NE(f->evidence.find("keeps only 5% of classes \"T-shirt/top\", \"coat\""), std::string::npos) << f->evidence;
  // A weak class that is not a minority in training is not imbalance.
  t.classes->train_count = {1000, 1000, 1000, 1000};
  EXPECT_FALSE(CheckClassImbalance(s, t));
}

TEST(DiagnosisTest, BestValueAtTheEdgeOfItsRange) {
  Study s = MakeStudy();
  Trial t = Curve(0, {0.8}, {0.8}, 0.095);
  auto fs = CheckRangeEdges(s, t);
  ASSERT_EQ(fs.size(), 1u);
  EXPECT_NE(fs[0].evidence.find("upper end"), std::string::npos) << fs[0].evidence;
  EXPECT_TRUE(CheckRangeEdges(s, Curve(0, {0.8}, {0.8}, 0.003)).empty());  // middle in log space
  Study d = MakeStudy(json::parse(R"([{"name": "dropout", "type": "float", "low": 0, "high": 0.5}])"));
  Trial zero = Curve(0, {0.8}, {0.8});
  zero.params = {{"dropout", 0.0}};
  EXPECT_TRUE(CheckRangeEdges(d, zero).empty());  // a range starting at 0 cannot widen downwards
}

TEST(DiagnosisTest, ImportanceNamesTheParameterThatSplitsTheValues) {
  Study s = MakeStudy(json::parse(R"([{"name": "learning_rate", "type": "float", "low": 0.0001, "high": 0.1, "log": true},
                                      {"name": "optimizer", "type": "categorical", "choices": ["adam", "sgd"]}])"));
  for (int i = 0; i < 10; ++i) {
    Trial t = Curve(i, {i % 2 ? 0.85 : 0.6}, {0.8}, 0.0001 * (i + 1));
    t.params["optimizer"] = std::string(i % 2 ? "adam" : "sgd");
    s.trials.push_back(t);
  }
  auto f = ParameterImportance(s);
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->cause, "parameter importance");
  // fANOVA over a forest, named with its sample size; the optimizer first, with its spread across the trees.
  EXPECT_NE(f->evidence.find("fANOVA"), std::string::npos) << f->evidence;
  EXPECT_NE(f->evidence.find("random forest of 64 trees on 10 completed trials"), std::string::npos) << f->evidence;
  EXPECT_NE(f->evidence.find(": optimizer 0."), std::string::npos) << f->evidence;
  EXPECT_EQ(f->evidence.find("low confidence"), std::string::npos) << f->evidence;
  EXPECT_GT(f->figures.at("importance/optimizer"), 0.7);
  EXPECT_LT(f->figures.at("importance/learning_rate"), 0.2);
  EXPECT_GT(f->figures.at("importance_std/optimizer"), 0);
  EXPECT_TRUE(f->figures.count("importance_std/learning_rate"));
  EXPECT_EQ(f->figures.at("completed_trials"), 10);
  EXPECT_EQ(f->figures.at("trees"), 64);
  EXPECT_NE(f->suggestion.find("spend trials on optimizer"), std::string::npos) << f->suggestion;
  // The same trials, the same figures.
  EXPECT_EQ(ParameterImportance(s)->figures, f->figures);
  // Diagnose ends with it.
  EXPECT_EQ(Diagnose(s, -1).back().evidence, f->evidence);
}

TEST(DiagnosisTest, ImportanceFromFewTrialsSaysSo) {
  Study s = MakeStudy(json::parse(R"([{"name": "learning_rate", "type": "float", "low": 0.0001, "high": 0.1, "log": true},
                                      {"name": "optimizer", "type": "categorical", "choices": ["adam", "sgd"]}])"));
  for (int i = 0; i < 5; ++i) {
    Trial t = Curve(i, {i % 2 ? 0.85 : 0.6}, {0.8}, 0.0001 * (i + 1));
    t.params["optimizer"] = std::string(i % 2 ? "adam" : "sgd");
    s.trials.push_back(t);
  }
  auto f = ParameterImportance(s);
  ASSERT_TRUE(f.has_value());
  EXPECT_NE(f->evidence.find("low confidence: only 5 completed trials, too few (fewer than 8)"), std::string::npos)
      << f->evidence;
  EXPECT_LT(f->severity, 0.5);
  EXPECT_EQ(f->figures.at("completed_trials"), 5);
  s.trials.resize(2);  // two: nothing at all
  EXPECT_FALSE(ParameterImportance(s));
  // Every value the same: nothing to explain.
  s.trials.clear();
  for (int i = 0; i < 10; ++i) s.trials.push_back(Curve(i, {0.7}, {0.8}, 0.0001 * (i + 1)));
  EXPECT_FALSE(ParameterImportance(s));
}

TEST(DiagnosisTest, NoiseWhenTheTopTrialsDifferLessThanTheSeedSpread) {
  Study s = MakeStudy();
  s.trials = {Curve(0, {0.80, 0.850}, {0.8, 0.86}), Curve(1, {0.80, 0.845}, {0.8, 0.85})};
  s.trials[0].measurements[1].metrics["val_accuracy_std"] = 0.012;
  s.trials[1].measurements[1].metrics["val_accuracy_std"] = 0.008;
  auto f = CheckNoise(s);
  ASSERT_TRUE(f.has_value());
  EXPECT_NE(f->evidence.find("differ by 0.0050"), std::string::npos) << f->evidence;
  s.trials[0].measurements[1].metrics["val_accuracy_std"] = 0.002;
  s.trials[1].measurements[1].metrics["val_accuracy_std"] = 0.003;
  EXPECT_FALSE(CheckNoise(s));
}

TEST(DiagnosisTest, PrunedTrialsThatWereAheadOfTheEventualBest) {
  Study s = MakeStudy();
  Trial slow = Curve(0, {0.60, 0.75, 0.88}, {0.6, 0.76, 0.9});
  Trial fast = Curve(1, {0.70}, {0.7});
  fast.state = TrialState::kPruned;
  s.trials = {slow, fast};
  auto f = CheckPrunedSlowStarters(s);
  ASSERT_TRUE(f.has_value());
  EXPECT_NE(f->evidence.find("trial 1 was pruned at step 1 with 0.7000, ahead of the eventual best trial 0"),
            std::string::npos) << f->evidence;
  s.trials[1].measurements[0].value = 0.5;  // behind: the pruner was right
  EXPECT_FALSE(CheckPrunedSlowStarters(s));
}

TEST(DiagnosisTest, SplitMismatchFromClassFrequenciesOrPixels) {
  Trial t = Curve(0, {0.8}, {0.8});
  t.classes = ClassReport{};
  t.classes->train_count = {10, 100, 100, 100};
  t.classes->val_count = {50, 50, 50, 50};
  auto f = CheckSplitMismatch(t);
  ASSERT_TRUE(f.has_value());
  EXPECT_NE(f->evidence.find("class 0 is 3.2% of training but 25.0% of validation"), std::string::npos) << f->evidence;
  t.classes->train_count[0] = 100;
  EXPECT_FALSE(CheckSplitMismatch(t));
  t.final_metrics["train_pixel_mean"] = 0.29;
  t.final_metrics["val_pixel_mean"] = 0.40;
  ASSERT_TRUE(CheckSplitMismatch(t));
  EXPECT_NE(CheckSplitMismatch(t)->evidence.find("mean pixel value 0.290 in training vs 0.400"), std::string::npos);
  t.final_metrics["val_pixel_mean"] = 0.29;
  t.classes->train_recall = {0.9, 0.9, 0.95, 0.9};
  t.classes->val_recall = {0.9, 0.9, 0.40, 0.9};
  ASSERT_TRUE(CheckSplitMismatch(t));
  EXPECT_NE(CheckSplitMismatch(t)->evidence.find("class 2 (recall 0.95 in training, 0.40 in validation)"),
            std::string::npos) << CheckSplitMismatch(t)->evidence;
  t.classes->val_recall[2] = 0.9;
  EXPECT_FALSE(CheckSplitMismatch(t));
}

TEST(DiagnosisTest, SplitMismatchNamesTheClassesInvolvedByName) {
  Trial t = Curve(0, {0.8}, {0.8});
  t.data = DataReport{};
  t.data->class_names = {"cat", "dog", "shirt", "car"};
  t.classes = ClassReport{};
  t.classes->train_count = {100, 100, 10, 100};
  t.classes->val_count = {50, 50, 50, 50};
  t.classes->train_recall = {0.9, 0.97, 0.95, 0.9};
  t.classes->val_recall = {0.9, 0.42, 0.40, 0.9};
  auto f = CheckSplitMismatch(t);
  ASSERT_TRUE(f.has_value());
  EXPECT_NE(f->evidence.find("class \"shirt\" is 3.2% of training but 25.0% of validation"), std::string::npos)
      << f->evidence;
  EXPECT_NE(f->evidence.find("recall collapses on validation only for class \"dog\" (recall 0.97 in training, 0.42 "
                             "in validation), class \"shirt\" (recall 0.95 in training, 0.40 in validation)"),
            std::string::npos) << f->evidence;
  EXPECT_EQ(f->evidence.find("class 2"), std::string::npos) << f->evidence;  // never by number when named
  // The same through Diagnose on a study, judging this trial.
  Study s = MakeStudy();
  s.trials = {t};
  bool found = false;
  for (const Finding& g : Diagnose(s, 0)) found |= g.cause == "train/validation mismatch" && g.evidence == f->evidence;
  EXPECT_TRUE(found);
}

TEST(DiagnosisTest, ChanceLevelCountsTheReportedClasses) {
  // Two classes: chance is 0.5, so trials stuck near 0.5 never left it, whatever their training curve.
  Study s = MakeStudy();
  s.trials = {Curve(0, {0.50, 0.52}, {0.5, 0.5}, 0.08), Curve(1, {0.51, 0.50}, {0.5, 0.5}, 0.05),
              Curve(2, {0.90, 0.95}, {0.9, 0.96}, 0.001), Curve(3, {0.91, 0.94}, {0.9, 0.95}, 0.0005)};
  EXPECT_FALSE(CheckLearningRate(s));  // chance unknown: taken as 0.1, and 0.52 is far above it
  for (Trial& t : s.trials) {
    t.classes = ClassReport{};
    t.classes->val_recall = {0.5, 0.5};
  }
  auto f = CheckLearningRate(s);
  ASSERT_TRUE(f.has_value());
  EXPECT_NE(f->evidence.find("never left chance level (0.50)"), std::string::npos) << f->evidence;
}

// Adds a training loss (and optionally the share of non-finite batches) to each epoch of a curve.
Trial WithLoss(Trial t, const std::vector<double>& loss, const std::vector<double>& nonfinite = {}) {
  for (size_t k = 0; k < t.measurements.size() && k < loss.size(); ++k) {
    t.measurements[k].metrics["train_loss"] = loss[k];
    if (k < nonfinite.size()) t.measurements[k].metrics["train_nonfinite_fraction"] = nonfinite[k];
  }
  return t;
}

TEST(DiagnosisTest, LossCurveNamesNonFiniteDivergingAndOscillatingLoss) {
  const Trial base = Curve(0, {0.5, 0.6, 0.62, 0.63, 0.64}, {0.5, 0.6, 0.62, 0.63, 0.64}, 0.04);
  // A healthy, falling loss: nothing, even with small bumps (< 3%) or a single rise.
  EXPECT_FALSE(CheckLossCurve(WithLoss(base, {1.2, 0.9, 0.8, 0.75, 0.72})));
  EXPECT_FALSE(CheckLossCurve(WithLoss(base, {1.2, 0.9, 0.91, 0.85, 0.80})));
  EXPECT_FALSE(CheckLossCurve(WithLoss(base, {1.2, 0.9, 0.95, 0.85, 0.80})));
  EXPECT_FALSE(CheckLossCurve(base));  // no loss recorded: no claim
  // A memorizing network's loss near zero bounces by large factors: noise, not instability.
  EXPECT_FALSE(CheckLossCurve(WithLoss(base, {0.05, 0.01, 0.02, 0.008, 0.016})));

  auto nan = CheckLossCurve(WithLoss(base, {1.2, 0.9, 0.8}, {0, 0, 0.25}));
  ASSERT_TRUE(nan.has_value());
  EXPECT_EQ(nan->cause, "unstable training: non-finite loss");
  EXPECT_NE(nan->evidence.find("25% of the batches of epoch 3"), std::string::npos) << nan->evidence;
  EXPECT_NE(nan->evidence.find("learning rate 0.04"), std::string::npos) << nan->evidence;

  auto up = CheckLossCurve(WithLoss(base, {1.2, 0.6, 0.7, 1.0, 1.1}));
  ASSERT_TRUE(up.has_value());
  EXPECT_EQ(up->cause, "unstable training: diverging loss");
  EXPECT_NE(up->evidence.find("from 0.600 (epoch 2) to 1.000 (epoch 4)"), std::string::npos) << up->evidence;

  auto osc = CheckLossCurve(WithLoss(base, {1.2, 0.8, 0.9, 0.7, 0.85}));
  ASSERT_TRUE(osc.has_value());
  EXPECT_EQ(osc->cause, "unstable training: oscillating loss");
  EXPECT_NE(osc->evidence.find("at epochs 3, 5"), std::string::npos) << osc->evidence;
  EXPECT_NE(osc->evidence.find("1.200, 0.800, 0.900, 0.700, 0.850"), std::string::npos) << osc->evidence;

  Trial failed = base;
  failed.state = TrialState::kFailed;
  failed.reason = "training diverged: val_accuracy is nan at epoch 2";
  ASSERT_TRUE(CheckLossCurve(failed));
  EXPECT_NE(CheckLossCurve(failed)->evidence.find("val_accuracy is nan"), std::string::npos);
}

TEST(DiagnosisTest, LearningRateTooHighWhenTheUnstableTrialsHadHighRates) {
  Study s = MakeStudy();
  // Three trials learned a little but their loss oscillated or went NaN; all had high rates.
  s.trials = {WithLoss(Curve(0, {0.6, 0.7, 0.65, 0.7, 0.66}, {0.6, 0.7, 0.66, 0.7, 0.67}, 0.05), {1.0, 0.7, 0.8, 0.6, 0.75}),
              WithLoss(Curve(1, {0.6, 0.62, 0.61}, {0.6, 0.6, 0.6}, 0.03), {1.0, 0.8, 0.9}, {0, 0, 0.5}),
              WithLoss(Curve(2, {0.82, 0.85, 0.86}, {0.8, 0.86, 0.87}, 0.002), {0.6, 0.45, 0.4}),
              WithLoss(Curve(3, {0.80, 0.84, 0.85}, {0.8, 0.85, 0.86}, 0.001), {0.6, 0.5, 0.42}),
              WithLoss(Curve(4, {0.81, 0.84, 0.86}, {0.8, 0.85, 0.87}, 0.003), {0.65, 0.48, 0.41})};
  auto f = CheckLearningRate(s);
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->cause, "learning rate too high (divergence)");
  EXPECT_NE(f->evidence.find("2 trials had an unstable training loss: 0 (lr 0.05, oscillating loss), "
                             "1 (lr 0.03, non-finite loss)"),
            std::string::npos) << f->evidence;
  EXPECT_EQ(f->evidence.find("chance"), std::string::npos) << f->evidence;
  s.trials[2].params["learning_rate"] = 0.04;  // the stable trials had high rates too: no claim
  s.trials[3].params["learning_rate"] = 0.05;
  s.trials[4].params["learning_rate"] = 0.03;
  EXPECT_FALSE(CheckLearningRate(s));
}

TEST(DiagnosisTest, SlowImprovementWithLowRatesIsNamed) {
  Study s = MakeStudy();
  s.trials = {Curve(0, {0.80, 0.85, 0.87}, {0.8, 0.86, 0.88}, 0.003), Curve(1, {0.81, 0.85, 0.86}, {0.8, 0.85, 0.87}, 0.002),
              Curve(2, {0.40, 0.55, 0.66}, {0.4, 0.55, 0.66}, 0.0002), Curve(3, {0.35, 0.50, 0.62}, {0.35, 0.5, 0.62}, 0.0001)};
  auto f = CheckSlowLearning(s);
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->cause, "learning rate too low (slow improvement)");
  EXPECT_NE(f->evidence.find("2 (lr 0.0002: +0.110 over its last epoch, 0.210 behind)"), std::string::npos)
      << f->evidence;
  EXPECT_TRUE(Names(Diagnose(s, -1), "learning rate too low (slow improvement)"));
  // Slow trials that had ordinary rates: the rate is not the explanation.
  s.trials[2].params["learning_rate"] = 0.002;
  s.trials[3].params["learning_rate"] = 0.003;
  EXPECT_FALSE(CheckSlowLearning(s));
  // Trials that had levelled off are not slow, whatever their rate.
  s.trials[2] = Curve(2, {0.40, 0.55, 0.555}, {0.4, 0.55, 0.56}, 0.0002);
  s.trials[3] = Curve(3, {0.35, 0.50, 0.505}, {0.35, 0.5, 0.51}, 0.0001);
  EXPECT_FALSE(CheckSlowLearning(s));
}

TEST(DiagnosisTest, AHealthyStudyRaisesNoAlarm) {
  Study s = MakeStudy();
  s.trials = {Curve(0, {0.80, 0.84, 0.86}, {0.82, 0.86, 0.88}, 0.003), Curve(1, {0.78, 0.82, 0.85}, {0.8, 0.84, 0.86}, 0.002)};
  auto fs = Diagnose(s, -1);
  ASSERT_FALSE(fs.empty());
  EXPECT_EQ(fs.front().cause, "nothing stands out");
}

}  // namespace
}  // namespace hpo::server
