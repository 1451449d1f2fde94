#include "server/rpc/proto_convert.h"

#include "server/model/study_summary.h"

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
  if (t.data) ToProto(*t.data, out->mutable_data());
  if (t.classes) ToProto(*t.classes, out->mutable_classes());
}

void ToProto(const DataReport& d, hpo::v1::DataReport* out) {
  out->set_format(d.format);
  for (const std::string& name : d.class_names) out->add_class_names(name);
  out->set_train_images(d.train_images);
  out->set_val_images(d.val_images);
  out->set_test_images(d.test_images);
  out->set_channels(d.channels);
  out->set_height(d.height);
  out->set_width(d.width);
  out->set_skipped_files(d.skipped_files);
  for (const std::string& e : d.skipped_examples) out->add_skipped_examples(e);
}

void ToProto(const ClassReport& c, hpo::v1::ClassReport* out) {
  out->mutable_train_count()->Add(c.train_count.begin(), c.train_count.end());
  out->mutable_val_count()->Add(c.val_count.begin(), c.val_count.end());
  out->mutable_train_recall()->Add(c.train_recall.begin(), c.train_recall.end());
  out->mutable_val_recall()->Add(c.val_recall.begin(), c.val_recall.end());
  out->mutable_val_confusion()->Add(c.val_confusion.begin(), c.val_confusion.end());
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
  out->set_image_height(t.image_height);
  out->set_image_width(t.image_width);
  out->set_channels(t.channels);
  out->set_resize(t.resize);
  out->mutable_partial_epochs()->Add(t.partial_epochs.begin(), t.partial_epochs.end());
  out->set_training_seed(t.training_seed);
}

void ToProto(const Study& s, hpo::v1::Study* out) { ToProto(Summarize(s), out); }

void ToProto(const StudySummary& summary, hpo::v1::Study* out) {
  const Study& s = summary.study;
  out->set_id(s.id);
  out->set_name(s.spec.name);
  out->set_state(ToProto(s.state));
  out->set_direction(s.spec.direction == Direction::kMaximize ? hpo::v1::MAXIMIZE : hpo::v1::MINIMIZE);
  out->set_metric(s.spec.metric);
  out->set_spec_json(s.spec_json);
  out->set_max_trials(s.spec.max_trials);
  const TrialCounts& c = summary.counts;
  auto* pc = out->mutable_counts();
  pc->set_waiting(c.waiting);
  pc->set_running(c.running);
  pc->set_completed(c.completed);
  pc->set_pruned(c.pruned);
  pc->set_failed(c.failed);
  if (summary.best) {
    out->set_has_best(true);
    out->set_best_value(summary.best->value);
    out->set_best_trial(summary.best->number);
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
  out->set_max_minutes(s.spec.max_minutes);
  if (const absl::Time end = TimeBudgetEnd(s.spec, summary.first_started); end != absl::InfiniteFuture()) {
    out->set_time_budget_end_unix_ms(Ms(end));
  }
}

Measurement FromProto(const hpo::v1::Measurement& m) {
  Measurement out;
  out.step = m.step();
  out.value = m.value();
  for (const auto& [k, v] : m.metrics()) out.metrics[k] = v;
  return out;
}

DataReport FromProto(const hpo::v1::DataReport& d) {
  DataReport out;
  out.format = d.format();
  out.class_names.assign(d.class_names().begin(), d.class_names().end());
  out.train_images = d.train_images();
  out.val_images = d.val_images();
  out.test_images = d.test_images();
  out.channels = d.channels();
  out.height = d.height();
  out.width = d.width();
  out.skipped_files = d.skipped_files();
  out.skipped_examples.assign(d.skipped_examples().begin(), d.skipped_examples().end());
  return out;
}

ClassReport FromProto(const hpo::v1::ClassReport& c) {
  ClassReport out;
  out.train_count.assign(c.train_count().begin(), c.train_count().end());
  out.val_count.assign(c.val_count().begin(), c.val_count().end());
  out.train_recall.assign(c.train_recall().begin(), c.train_recall().end());
  out.val_recall.assign(c.val_recall().begin(), c.val_recall().end());
  out.val_confusion.assign(c.val_confusion().begin(), c.val_confusion().end());
  return out;
}

}  // namespace hpo::server
