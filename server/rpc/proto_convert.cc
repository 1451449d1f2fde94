#include "server/rpc/proto_convert.h"

#include "server/core/study_summary.h"

namespace hpo::server {
namespace {

int64_t Ms(absl::Time t) { return t == absl::InfinitePast() ? 0 : absl::ToUnixMillis(t); }

hpo::v1::TrialState ToProto(TrialState s) {
  switch (s) {
    case TrialState::kWaiting: return hpo::v1::TRIAL_WAITING;
    case TrialState::kRunning: return hpo::v1::TRIAL_RUNNING;
    case TrialState::kCompleted: return hpo::v1::TRIAL_COMPLETED;
    case TrialState::kPruned: return hpo::v1::TRIAL_PRUNED;
    case TrialState::kFailed: return hpo::v1::TRIAL_FAILED;
  }
  return hpo::v1::TRIAL_STATE_UNSPECIFIED;
}

hpo::v1::StudyState ToProto(StudyState s) {
  switch (s) {
    case StudyState::kRunning: return hpo::v1::STUDY_RUNNING;
    case StudyState::kCompleted: return hpo::v1::STUDY_COMPLETED;
    case StudyState::kStopped: return hpo::v1::STUDY_STOPPED;
  }
  return hpo::v1::STUDY_STATE_UNSPECIFIED;
}

}  // namespace

void ToProto(const ParamValue& v, hpo::v1::ParamValue* out) {
  if (auto* d = std::get_if<double>(&v)) out->set_float_value(*d);
  else if (auto* i = std::get_if<int64_t>(&v)) out->set_int_value(*i);
  else if (auto* b = std::get_if<bool>(&v)) out->set_bool_value(*b);
  else out->set_string_value(std::get<std::string>(v));
}

void ToProto(const Trial& t, hpo::v1::Trial* out) {
  out->set_id(t.id);
  out->set_study_id(t.study_id);
  out->set_number(t.number);
  out->set_state(ToProto(t.state));
  for (const auto& [name, v] : t.params) ToProto(v, &(*out->mutable_params())[name]);
  for (const Measurement& m : t.measurements) {
    auto* pm = out->add_measurements();
    pm->set_step(m.step);
    pm->set_value(m.value);
    for (const auto& [k, v] : m.metrics) (*pm->mutable_metrics())[k] = v;
    pm->set_time_unix_ms(Ms(m.time));
  }
  out->set_has_value(t.value.has_value());
  if (t.value) out->set_value(*t.value);
  out->set_best_step(t.best_step);
  for (const auto& [k, v] : t.final_metrics) (*out->mutable_final_metrics())[k] = v;
  out->set_reason(t.reason);
  out->set_worker(t.worker);
  out->set_retry_of(t.retry_of);
  out->set_retried(t.retried);
  out->set_created_unix_ms(Ms(t.created));
  out->set_started_unix_ms(Ms(t.started));
  out->set_finished_unix_ms(Ms(t.finished));
}

void ToProto(const TaskSpec& t, hpo::v1::Task* out) {
  out->set_type(t.type);
  out->set_dataset(t.dataset);
  out->set_train_examples(t.train_examples);
  out->set_val_examples(t.val_examples);
  out->set_test_examples(t.test_examples);
  out->set_max_epochs(t.max_epochs);
  out->set_data_seed(t.data_seed);
  out->set_executions_per_trial(t.executions_per_trial);
  for (int c : t.imbalance_classes) out->add_imbalance_classes(c);
  out->set_imbalance_keep(t.imbalance_keep);
}

void ToProto(const Study& s, hpo::v1::Study* out) {
  out->set_id(s.id);
  out->set_name(s.spec.name);
  out->set_state(ToProto(s.state));
  out->set_direction(s.spec.direction == Direction::kMaximize ? hpo::v1::MAXIMIZE : hpo::v1::MINIMIZE);
  out->set_metric(s.spec.metric);
  out->set_spec_json(s.spec_json);
  out->set_max_trials(s.spec.max_trials);
  const TrialCounts c = CountTrials(s);
  auto* pc = out->mutable_counts();
  pc->set_waiting(c.waiting);
  pc->set_running(c.running);
  pc->set_completed(c.completed);
  pc->set_pruned(c.pruned);
  pc->set_failed(c.failed);
  if (const Trial* best = FindBestTrial(s)) {
    out->set_has_best(true);
    out->set_best_value(*best->value);
    out->set_best_trial(best->number);
  }
  ToProto(s.spec.task, out->mutable_task());
  out->set_sampler(s.spec.sampler.value("type", ""));
  if (s.spec.pruner.is_array()) {
    std::string names;
    for (const auto& p : s.spec.pruner) names += (names.empty() ? "" : "+") + p.value("type", std::string());
    out->set_pruner(names);
  } else {
    out->set_pruner(s.spec.pruner.value("type", ""));
  }
  out->set_created_unix_ms(Ms(s.created));
  out->set_seed(s.seed);
}

Measurement FromProto(const hpo::v1::Measurement& m) {
  Measurement out;
  out.step = m.step();
  out.value = m.value();
  for (const auto& [k, v] : m.metrics()) out.metrics[k] = v;
  return out;
}

}  // namespace hpo::server
