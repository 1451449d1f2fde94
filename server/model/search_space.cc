#include "server/model/search_space.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <set>

namespace hpo::server {

uint64_t Mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

uint64_t TrialSeed(uint64_t study_seed, int number) {
  return Mix64(Mix64(study_seed) ^ static_cast<uint64_t>(number));
}

uint64_t ParamSeed(uint64_t trial_seed, const std::string& name) {
  uint64_t h = 1469598103934665603ULL;  // FNV-1a
  for (unsigned char c : name) h = (h ^ c) * 1099511628211ULL;
  return Mix64(trial_seed ^ h);
}

double UnitFromBits(uint64_t bits) { return static_cast<double>(bits >> 11) * 0x1.0p-53; }

ParamValue FromUnit(const ParamSpec& p, double u) {
  u = std::clamp(u, 0.0, std::nextafter(1.0, 0.0));
  switch (p.type) {
    case ParamType::kCategorical: {
      size_t k = std::min(p.choices.size() - 1, static_cast<size_t>(u * p.choices.size()));
      return p.choices[k];
    }
    case ParamType::kFloat: {
      if (p.step) {
        const double n = std::round((p.high - p.low) / *p.step);
        const double k = std::min(n, std::floor(u * (n + 1)));
        return std::min(p.high, p.low + k * *p.step);
      }
      if (p.log) {
        const double v = std::exp(std::log(p.low) + u * (std::log(p.high) - std::log(p.low)));
        return std::clamp(v, p.low, p.high);
      }
      return std::clamp(p.low + u * (p.high - p.low), p.low, p.high);
    }
    case ParamType::kInt: {
      const auto lo = static_cast<int64_t>(p.low), hi = static_cast<int64_t>(p.high);
      if (p.log) {
        // Log-uniform over [low - 0.5, high + 0.5] so every integer has its share of mass.
        const double a = std::log(p.low - 0.5 > 0 ? p.low - 0.5 : p.low * 0.5), b = std::log(p.high + 0.5);
        const auto v = static_cast<int64_t>(std::llround(std::exp(a + u * (b - a))));
        return std::clamp(v, lo, hi);
      }
      const int64_t step = p.step ? static_cast<int64_t>(*p.step) : 1;
      const int64_t n = (hi - lo) / step;
      const int64_t k = std::min(n, static_cast<int64_t>(u * static_cast<double>(n + 1)));
      return lo + k * step;
    }
  }
  return 0.0;
}

bool Contains(const ParamSpec& p, const ParamValue& v) {
  switch (p.type) {
    case ParamType::kCategorical:
      return std::find(p.choices.begin(), p.choices.end(), v) != p.choices.end();
    case ParamType::kFloat: {
      const auto* d = std::get_if<double>(&v);
      return d != nullptr && *d >= p.low && *d <= p.high;
    }
    case ParamType::kInt: {
      const auto* i = std::get_if<int64_t>(&v);
      if (i == nullptr || *i < p.low || *i > p.high) return false;
      if (p.step) return (*i - static_cast<int64_t>(p.low)) % static_cast<int64_t>(*p.step) == 0;
      return true;
    }
  }
  return false;
}

int RungToFit(const Study& study, int n_min) {
  int completed = 0;
  std::map<int, int> reached;  // step -> finished trials that reported it
  for (const Trial& t : study.trials) {
    const bool done = t.state == TrialState::kCompleted && t.value;
    if (!done && t.state != TrialState::kPruned) continue;
    completed += done;
    std::set<int> steps;
    for (const Measurement& m : t.measurements) steps.insert(m.step);
    for (int st : steps) ++reached[st];
  }
  if (completed >= n_min) return -1;
  for (auto it = reached.rbegin(); it != reached.rend(); ++it) {
    if (it->second >= n_min) return it->first;
  }
  return -1;
}

double BestLossUpTo(const Trial& t, int step, double sign) {
  double loss = std::numeric_limits<double>::infinity();
  for (const Measurement& m : t.measurements) {
    if (m.step <= step) loss = std::min(loss, sign * m.value);
  }
  return loss;
}

}  // namespace hpo::server
