#include "server/core/importance.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

namespace hpo::server {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// splitmix64: small, seeded and the same on every platform (std:: distributions are not).
struct Rng {
  uint64_t s;
  uint64_t Next() {
    uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  size_t Below(size_t n) { return static_cast<size_t>(Next() % n); }
};

// A leaf: its prediction and its box, (lo[d], hi[d]] in every dimension.
struct Leaf {
  double value;
  std::vector<double> lo, hi;
};

class TreeBuilder {
 public:
  TreeBuilder(const std::vector<std::vector<double>>& x, const std::vector<double>& y, const ForestOptions& o,
              Rng& rng)
      : x_(x), y_(y), o_(o), rng_(rng), dims_(x.empty() ? 0 : x[0].size()) {}

  // A tree on the rows `sample` (with repeats): each node keeps its rows sorted by every dimension,
  // sorted once here and split stably, so a split costs O(dimensions x rows) and no sort.
  std::vector<Leaf> Build(const std::vector<size_t>& sample) {
    leaves_.clear();
    rows_ = sample;
    left_.assign(sample.size(), 0);
    std::vector<std::vector<uint32_t>> sorted(dims_, std::vector<uint32_t>(sample.size()));
    for (size_t d = 0; d < dims_; ++d) {
      std::iota(sorted[d].begin(), sorted[d].end(), 0);
      std::stable_sort(sorted[d].begin(), sorted[d].end(),
                       [&](uint32_t a, uint32_t b) { return X(a, d) < X(b, d); });
    }
    std::vector<double> lo(dims_, -kInf), hi(dims_, kInf);
    Grow(sorted, 0, lo, hi);
    return std::move(leaves_);
  }

 private:
  double X(uint32_t id, size_t d) const { return x_[rows_[id]][d]; }
  double Y(uint32_t id) const { return y_[rows_[id]]; }

  void Grow(std::vector<std::vector<uint32_t>>& sorted, int depth, std::vector<double>& lo, std::vector<double>& hi) {
    const std::vector<uint32_t>& ids = sorted[0];
    const size_t n = ids.size();
    double sum = 0;
    for (uint32_t i : ids) sum += Y(i);
    const double mean = sum / n;
    double sse = 0;
    for (uint32_t i : ids) sse += (Y(i) - mean) * (Y(i) - mean);
    const size_t min_leaf = std::max(1, o_.min_samples_leaf);
    if (depth >= o_.max_depth || n < 2 * min_leaf || sse <= 1e-12 * (1 + mean * mean) * n) {
      leaves_.push_back(Leaf{mean, lo, hi});
      return;
    }
    // A random subset of the dimensions; when none of them can split, the others are tried too.
    std::vector<size_t> order(dims_);
    std::iota(order.begin(), order.end(), 0);
    for (size_t i = 0; i + 1 < dims_; ++i) std::swap(order[i], order[i + rng_.Below(dims_ - i)]);
    const size_t tried = std::clamp<size_t>(static_cast<size_t>(std::ceil(o_.max_features * dims_ - 1e-9)), 1, dims_);
    int best_dim = -1;
    double best_score = sum * sum / n * (1 + 1e-12) + 1e-15, best_thr = 0;
    for (size_t k = 0; k < dims_; ++k) {
      if (k == tried && best_dim >= 0) break;
      const size_t d = order[k];
      const std::vector<uint32_t>& by = sorted[d];
      double left = 0;
      for (size_t i = 0; i + 1 < n; ++i) {
        left += Y(by[i]);
        const size_t nl = i + 1, nr = n - nl;
        if (nl < min_leaf || nr < min_leaf) continue;
        const double a = X(by[i], d), b = X(by[i + 1], d);
        if (!(a < b)) continue;
        const double right = sum - left;
        const double score = left * left / nl + right * right / nr;  // larger: lower squared error
        if (score > best_score) {
          best_score = score;
          best_dim = static_cast<int>(d);
          best_thr = 0.5 * (a + b);
        }
      }
    }
    if (best_dim < 0) {
      leaves_.push_back(Leaf{mean, lo, hi});
      return;
    }
    for (uint32_t i : ids) left_[i] = X(i, best_dim) <= best_thr;
    std::vector<std::vector<uint32_t>> l(dims_), r(dims_);
    for (size_t d = 0; d < dims_; ++d) {
      for (uint32_t i : sorted[d]) (left_[i] ? l[d] : r[d]).push_back(i);
    }
    sorted.clear();
    sorted.shrink_to_fit();
    const double old_hi = hi[best_dim], old_lo = lo[best_dim];
    hi[best_dim] = best_thr;
    Grow(l, depth + 1, lo, hi);
    hi[best_dim] = old_hi;
    lo[best_dim] = best_thr;
    Grow(r, depth + 1, lo, hi);
    lo[best_dim] = old_lo;
  }

  const std::vector<std::vector<double>>& x_;
  const std::vector<double>& y_;
  const ForestOptions& o_;
  Rng& rng_;
  const size_t dims_;
  std::vector<size_t> rows_;  // the tree's sample: id -> row
  std::vector<char> left_;    // by id, during a split
  std::vector<Leaf> leaves_;
};

// Main effects of one tree: for each dimension, Var(marginal prediction) / Var(prediction) under the
// product measure of `dims`; false when the tree's prediction does not vary.
bool TreeMainEffects(const std::vector<FanovaDim>& dims, const std::vector<Leaf>& leaves, std::vector<double>& out) {
  const size_t nd = dims.size(), nl = leaves.size();
  std::vector<std::vector<double>> mass(nl, std::vector<double>(nd));  // each leaf's mass in each dimension
  std::vector<double> weight(nl);
  double mean = 0;
  for (size_t j = 0; j < nl; ++j) {
    weight[j] = 1;
    for (size_t d = 0; d < nd; ++d) {
      mass[j][d] = std::max(0.0, dims[d].Cdf(leaves[j].hi[d]) - dims[d].Cdf(leaves[j].lo[d]));
      weight[j] *= mass[j][d];
    }
    mean += weight[j] * leaves[j].value;
  }
  double total = 0, scale = 0;
  for (size_t j = 0; j < nl; ++j) {
    total += weight[j] * (leaves[j].value - mean) * (leaves[j].value - mean);
    scale = std::max(scale, std::abs(leaves[j].value));
  }
  if (!(total > 1e-14 * (1 + scale * scale))) return false;
  out.assign(nd, 0);
  std::vector<double> cuts, acc;
  for (size_t d = 0; d < nd; ++d) {
    // Cells of dimension d between the tree's thresholds on it: the marginal is constant on each.
    cuts.clear();
    for (const Leaf& l : leaves) {
      if (std::isfinite(l.lo[d])) cuts.push_back(l.lo[d]);
      if (std::isfinite(l.hi[d])) cuts.push_back(l.hi[d]);
    }
    std::sort(cuts.begin(), cuts.end());
    cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
    const size_t cells = cuts.size() + 1;  // (-inf, c0], (c0, c1], ..., (c_last, inf)
    acc.assign(cells + 1, 0);
    for (size_t j = 0; j < nl; ++j) {
      double rest = 1;
      for (size_t e = 0; e < nd; ++e) {
        if (e != d) rest *= mass[j][e];
      }
      if (rest == 0) continue;
      const size_t a = std::isfinite(leaves[j].lo[d])
                           ? std::lower_bound(cuts.begin(), cuts.end(), leaves[j].lo[d]) - cuts.begin() + 1
                           : 0;
      const size_t b = std::isfinite(leaves[j].hi[d])
                           ? std::lower_bound(cuts.begin(), cuts.end(), leaves[j].hi[d]) - cuts.begin()
                           : cells - 1;
      acc[a] += rest * leaves[j].value;  // the leaf covers cells a..b
      acc[b + 1] -= rest * leaves[j].value;
    }
    double marginal = 0, var = 0;
    for (size_t c = 0; c < cells; ++c) {
      marginal += acc[c];
      const double lo = c == 0 ? -kInf : cuts[c - 1], hi = c + 1 == cells ? kInf : cuts[c];
      const double m = std::max(0.0, dims[d].Cdf(hi) - dims[d].Cdf(lo));
      var += m * (marginal - mean) * (marginal - mean);
    }
    out[d] = std::clamp(var / total, 0.0, 1.0);
  }
  return true;
}

bool Same(const ParamValue& a, const ParamValue& b) { return a == b || ToString(a) == ToString(b); }

}  // namespace

double FanovaDim::Cdf(double x) const {
  double c = x >= kInactive ? inactive_mass : 0;
  if (categories > 0) {
    c += (1 - inactive_mass) * std::clamp(std::floor(x) + 1, 0.0, static_cast<double>(categories)) / categories;
  } else {
    c += (1 - inactive_mass) * std::clamp(x, 0.0, 1.0);
  }
  return c;
}

FanovaResult Fanova(const std::vector<FanovaDim>& dims, const std::vector<std::vector<double>>& x,
                    const std::vector<double>& y, const ForestOptions& options) {
  FanovaResult result;
  result.effects.resize(dims.size());
  const size_t n = y.size();
  if (n < 2 || dims.empty() || options.trees <= 0) return result;
  Rng rng{options.seed};
  TreeBuilder builder(x, y, options, rng);
  std::vector<std::vector<double>> shares;  // per varying tree
  std::vector<double> share;
  for (int t = 0; t < options.trees; ++t) {
    std::vector<size_t> rows(n);
    for (size_t& r : rows) r = rng.Below(n);  // bootstrap sample
    const std::vector<Leaf> leaves = builder.Build(rows);
    ++result.trees;
    if (TreeMainEffects(dims, leaves, share)) shares.push_back(share);
  }
  result.varying_trees = static_cast<int>(shares.size());
  if (shares.empty()) return result;
  for (size_t d = 0; d < dims.size(); ++d) {
    double mean = 0;
    for (const auto& s : shares) mean += s[d] / shares.size();
    double var = 0;
    for (const auto& s : shares) var += (s[d] - mean) * (s[d] - mean);
    result.effects[d] = {mean, shares.size() > 1 ? std::sqrt(var / (shares.size() - 1)) : 0.0};
  }
  return result;
}

ImportanceResult ComputeImportance(const StudySpec& spec, const std::vector<const Trial*>& completed,
                                   const ForestOptions& options) {
  ImportanceResult out;
  std::vector<const Trial*> rows;
  for (const Trial* t : completed) {
    if (t->value && std::isfinite(*t->value)) rows.push_back(t);
  }
  out.trials = static_cast<int>(rows.size());
  const size_t nd = spec.params.size();
  std::vector<FanovaDim> dims(nd);
  std::vector<std::vector<double>> x(rows.size(), std::vector<double>(nd, kInactive));
  std::vector<double> y;
  for (const Trial* t : rows) y.push_back(*t->value);
  for (size_t d = 0; d < nd; ++d) {
    const ParamSpec& p = spec.params[d];
    if (p.type == ParamType::kCategorical) dims[d].categories = std::max<int>(1, p.choices.size());
    int inactive = 0;
    for (size_t i = 0; i < rows.size(); ++i) {
      auto it = rows[i]->params.find(p.name);
      double v = kInactive;
      if (it != rows[i]->params.end()) {
        if (p.type == ParamType::kCategorical) {
          for (size_t c = 0; c < p.choices.size(); ++c) {
            if (Same(p.choices[c], it->second)) {
              v = static_cast<double>(c);
              break;
            }
          }
        } else {
          double raw = NAN;
          if (auto* f = std::get_if<double>(&it->second)) raw = *f;
          if (auto* k = std::get_if<int64_t>(&it->second)) raw = static_cast<double>(*k);
          const bool log = p.log && p.low > 0 && raw > 0;
          const auto tr = [&](double z) { return log ? std::log(z) : z; };
          const double span = tr(p.high) - tr(p.low);
          if (std::isfinite(raw)) v = span > 0 ? std::clamp((tr(raw) - tr(p.low)) / span, 0.0, 1.0) : 0.5;
        }
      }
      if (v == kInactive) ++inactive;
      x[i][d] = v;
    }
    dims[d].inactive_mass = rows.empty() ? 0 : static_cast<double>(inactive) / rows.size();
  }
  const FanovaResult f = Fanova(dims, x, y, options);
  out.trees = f.trees;
  out.varying_trees = f.varying_trees;
  for (size_t d = 0; d < nd; ++d) out.params.push_back({spec.params[d].name, f.effects[d]});
  return out;
}

}  // namespace hpo::server
