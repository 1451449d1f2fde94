#include "server/sampler/grid_sampler.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <set>

#include "absl/strings/str_cat.h"
#include "server/model/search_space.h"

namespace hpo::server {
namespace {

constexpr size_t kMaxPoints = 1'000'000;

// How many values `p` has, counted in double so that no range can overflow it (2^40 ints, or a
// float with step 1e-12, have far more than kMaxPoints, and must be refused before Values
// builds them).
double ValueCount(const ParamSpec& p) {
  if (p.type == ParamType::kCategorical) return static_cast<double>(p.choices.size());
  return std::round((p.high - p.low) / (p.step ? *p.step : 1.0)) + 1;
}

// Every value of `p`; only called once ValueCount(p) <= kMaxPoints.
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
  for (const ParamSpec& p : spec.params) {
    const double n = ValueCount(p);
    if (!(n <= static_cast<double>(kMaxPoints))) {  // NaN too
      return absl::InvalidArgumentError(absl::StrCat("the grid has more than ", kMaxPoints, " points (\"", p.name,
                                                     "\" alone has ", n, " values): use fewer values, or another sampler"));
    }
  }
  // Without conditions the grid is the full product: refuse it without building anything.
  double product = 1;
  bool conditional = false;
  for (const ParamSpec& p : spec.params) {
    product *= ValueCount(p);
    conditional = conditional || !p.parent.empty();
  }
  if (!conditional && product > static_cast<double>(kMaxPoints)) {
    return absl::InvalidArgumentError(absl::StrCat("the grid has more than ", kMaxPoints, " points (", product,
                                                   "): use fewer values, or another sampler"));
  }
  // Depth-first over the parameters in order; inactive ones are left out. The product of the
  // counts can still be too large: the check inside the loop stops at kMaxPoints + 1 points.
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
