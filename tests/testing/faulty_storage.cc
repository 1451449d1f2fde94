#include "tests/testing/faulty_storage.h"

#include <algorithm>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"

namespace hpo::testing {

using server::Measurement;
using server::Study;
using server::StudyState;
using server::Trial;

const char* WriteKindName(WriteKind kind) {
  switch (kind) {
    case WriteKind::kCreateStudy: return "CreateStudy";
    case WriteKind::kUpdateStudyState: return "UpdateStudyState";
    case WriteKind::kDeleteStudy: return "DeleteStudy";
    case WriteKind::kCreateTrial: return "CreateTrial";
    case WriteKind::kUpdateTrial: return "UpdateTrial";
    case WriteKind::kCommit: return "Commit";
  }
  return "?";
}

FaultyStorage::FaultyStorage(std::unique_ptr<server::Storage> inner)
    : owned_(std::move(inner)), inner_(owned_.get()) {}

FaultyStorage::FaultyStorage(server::Storage* inner) : inner_(inner) {}

void FaultyStorage::FailNthWrite(int n, absl::Status status) {
  absl::MutexLock lock(&mu_);
  nth_ = n;
  nth_status_ = std::move(status);
}

void FaultyStorage::FailEvery(WriteKind kind, absl::Status status) {
  absl::MutexLock lock(&mu_);
  every_.emplace_back(kind, std::move(status));
}

void FaultyStorage::FailLoadAll(absl::Status status) {
  absl::MutexLock lock(&mu_);
  load_status_ = std::move(status);
}

void FaultyStorage::Clear() {
  absl::MutexLock lock(&mu_);
  nth_ = 0;
  nth_status_ = absl::OkStatus();
  every_.clear();
  load_status_ = absl::OkStatus();
}

std::vector<WriteKind> FaultyStorage::writes() const {
  absl::MutexLock lock(&mu_);
  return writes_;
}

int FaultyStorage::failed() const {
  absl::MutexLock lock(&mu_);
  return failed_;
}

absl::Status FaultyStorage::Next(WriteKind kind) {
  absl::MutexLock lock(&mu_);
  writes_.push_back(kind);
  absl::Status out;
  if (nth_ > 0 && --nth_ == 0) out = std::exchange(nth_status_, absl::OkStatus());
  for (const auto& [k, status] : every_) {
    if (out.ok() && k == kind) out = status;
  }
  if (!out.ok()) ++failed_;
  return out;
}

absl::StatusOr<std::vector<Study>> FaultyStorage::LoadAll() {
  {
    absl::MutexLock lock(&mu_);
    if (!load_status_.ok()) return load_status_;
  }
  return inner_->LoadAll();
}

absl::StatusOr<std::vector<server::TrialDetails>> FaultyStorage::LoadTrialDetails(int64_t study_id, int first_number,
                                                                          int limit) {
  {
    absl::MutexLock lock(&mu_);
    if (!load_status_.ok()) return load_status_;
  }
  return inner_->LoadTrialDetails(study_id, first_number, limit);
}

absl::StatusOr<int64_t> FaultyStorage::CreateStudy(const Study& study) {
  if (absl::Status s = Next(WriteKind::kCreateStudy); !s.ok()) return s;
  return inner_->CreateStudy(study);
}

absl::Status FaultyStorage::UpdateStudyState(int64_t study_id, StudyState state) {
  if (absl::Status s = Next(WriteKind::kUpdateStudyState); !s.ok()) return s;
  return inner_->UpdateStudyState(study_id, state);
}

absl::Status FaultyStorage::DeleteStudy(int64_t study_id) {
  if (absl::Status s = Next(WriteKind::kDeleteStudy); !s.ok()) return s;
  return inner_->DeleteStudy(study_id);
}

absl::StatusOr<int64_t> FaultyStorage::CreateTrial(const Trial& trial) {
  if (absl::Status s = Next(WriteKind::kCreateTrial); !s.ok()) return s;
  return inner_->CreateTrial(trial);
}

absl::Status FaultyStorage::UpdateTrial(const Trial& trial, const Measurement* measurement) {
  if (absl::Status s = Next(WriteKind::kUpdateTrial); !s.ok()) return s;
  return inner_->UpdateTrial(trial, measurement);
}

absl::Status FaultyStorage::Transaction(const std::function<absl::Status()>& body) {
  // The wrapped body runs under the store's own lock, one thread at a time, so depth_ counts
  // the nesting of the transaction that is open there.
  return inner_->Transaction([&]() -> absl::Status {
    {
      absl::MutexLock lock(&mu_);
      ++depth_;
    }
    struct Leave {
      FaultyStorage* self;
      ~Leave() {
        absl::MutexLock lock(&self->mu_);
        --self->depth_;
      }
    } leave{this};
    absl::Status s = body();
    if (!s.ok()) return s;
    bool outermost;
    {
      absl::MutexLock lock(&mu_);
      outermost = depth_ == 1;
    }
    return outermost ? Next(WriteKind::kCommit) : absl::OkStatus();
  });
}

namespace {

// As the store spells a time (storage.h): the epoch (a default absl::Time) is "not set" too.
std::string Ms(absl::Time t) {
  if (t == absl::InfinitePast() || t == absl::UnixEpoch()) return "-inf";
  if (t == absl::InfiniteFuture()) return "+inf";
  return absl::StrCat(absl::ToUnixMillis(t));
}

std::string Num(double v) {
  std::ostringstream out;
  out.precision(17);
  out << v;
  return out.str();
}

}  // namespace

std::string DumpStudies(const std::vector<Study>& studies) {
  std::ostringstream out;
  for (const Study& s : studies) {
    out << "study " << s.id << ": state=" << StateName(s.state) << " seed=" << s.seed
        << " created=" << Ms(s.created) << " spec_json=" << s.spec_json << "\n";
    for (const Trial& t : s.trials) {
      out << "  trial " << t.number << " id=" << t.id << " study=" << t.study_id
          << " state=" << StateName(t.state) << " value=" << (t.value ? Num(*t.value) : "none")
          << " best_step=" << t.best_step << " retry_of=" << t.retry_of << " retried=" << t.retried
          << " worker=" << t.worker << " reason=" << t.reason << " created=" << Ms(t.created)
          << " started=" << Ms(t.started) << " finished=" << Ms(t.finished) << "\n";
      out << "    params:";
      for (const auto& [k, v] : t.params) {
        out << " " << k << "=" << server::ToJson(v).dump() << "(" << v.index() << ")";
      }
      out << "\n    final_metrics:";
      for (const auto& [k, v] : t.final_metrics) out << " " << k << "=" << Num(v);
      out << "\n    data: " << (t.data ? server::ToJson(*t.data).dump() : "none") << "\n";
      if (t.classes) {
        const server::ClassReport& c = *t.classes;
        auto list = [&](const auto& xs) {
          std::string r;
          for (const auto& x : xs) absl::StrAppend(&r, Num(static_cast<double>(x)), ",");
          return r;
        };
        out << "    classes: train_count=" << list(c.train_count) << " val_count=" << list(c.val_count)
            << " train_recall=" << list(c.train_recall) << " val_recall=" << list(c.val_recall)
            << " val_confusion=" << list(c.val_confusion) << "\n";
      } else {
        out << "    classes: none\n";
      }
      for (const Measurement& m : t.measurements) {
        out << "    measurement step=" << m.step << " value=" << Num(m.value) << " time=" << Ms(m.time)
            << " metrics:";
        for (const auto& [k, v] : m.metrics) out << " " << k << "=" << Num(v);
        out << "\n";
      }
    }
  }
  return out.str();
}

}  // namespace hpo::testing
