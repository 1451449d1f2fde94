#include "server/sampler/grid_sampler.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <set>

#include "absl/strings/str_cat.h"
#include "server/core/search_space.h"

namespace hpo::server {
namespace {

constexpr size_t kMaxPoints = 1'000'000;

std::vector<ParamValue> Values(const ParamSpec& p) {
  std::vector<ParamValue> out;
  if (p.type == ParamType::kCategorical) return p.choices;
  const double step = p.step ? *p.step : 1.0;
  const auto n = static_cast<int64_t>(std::llround((p.high - p.low) / step));
  for (int64_t k = 0; k <= n; ++k) {
    if (p.type == ParamType::kInt) {
      out.emplace_back(static_cast<int64_t>(p.low) + k * static_cast<int64_t>(step));
    } else {
      out.emplace_back(std::min(p.high, p.low + static_cast<double>(k) * step));
    }
  }
  return out;
}

class GridSampler final : public Sampler {
 public:
  explicit GridSampler(std::vector<ParamMap> points) : points_(std::move(points)) {}

  absl::StatusOr<ParamMap> Sample(const Study& study, int, uint64_t) override {
    if (!shuffled_) {
      std::mt19937_64 rng(Mix64(study.seed ^ 0x6772696400000000ULL));
      for (size_t i = points_.size(); i > 1; --i) std::swap(points_[i - 1], points_[rng() % i]);
      shuffled_ = true;
    }
    std::set<ParamMap> taken;
    for (const Trial& t : study.trials) taken.insert(t.params);
    for (const ParamMap& p : points_) {
      if (!taken.count(p)) return p;
    }
    return absl::OutOfRangeError(absl::StrCat("every one of the ", points_.size(), " grid points has a trial"));
  }

 private:
  std::vector<ParamMap> points_;
  bool shuffled_ = false;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Sampler>> NewGridSampler(const StudySpec& spec) {
  for (const ParamSpec& p : spec.params) {
    if (p.type == ParamType::kFloat && !p.step) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the grid sampler needs a finite space; it is not finite because \"", p.name,
          "\" is a continuous float: give it a step, or make it categorical"));
    }
    if (p.type != ParamType::kCategorical && p.log) {
      return absl::InvalidArgumentError(absl::StrCat("the grid sampler cannot enumerate the log-scaled \"",
                                                     p.name, "\": use a categorical list of values"));
    }
  }
  // Depth-first over the parameters in order; inactive ones are left out.
  std::vector<ParamMap> points = {ParamMap{}};
  for (const ParamSpec& p : spec.params) {
    const std::vector<ParamValue> values = Values(p);
    std::vector<ParamMap> next;
    for (const ParamMap& partial : points) {
      if (!IsActive(p, partial)) {
        next.push_back(partial);
        continue;
      }
      for (const ParamValue& v : values) {
        ParamMap m = partial;
        m[p.name] = v;
        next.push_back(std::move(m));
        if (next.size() > kMaxPoints) {
          return absl::InvalidArgumentError(absl::StrCat("the grid has more than ", kMaxPoints,
                                                         " points: use fewer values, or another sampler"));
        }
      }
    }
    points = std::move(next);
  }
  return std::unique_ptr<Sampler>(std::make_unique<GridSampler>(std::move(points)));
}

}  // namespace hpo::server
