#include "server/sampler/gp_sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>

#include "server/model/search_space.h"
#include "server/sampler/random_sampler.h"

namespace hpo::server {
namespace {

constexpr double kSqrt5 = 2.23606797749979;

using Vec = std::vector<double>;

// Lower-triangular Cholesky factor of the n x n row-major matrix `a` (in place). False if not positive definite.
bool Cholesky(Vec& a, int n) {
  for (int j = 0; j < n; ++j) {
    double d = a[j * n + j];
    for (int k = 0; k < j; ++k) d -= a[j * n + k] * a[j * n + k];
    if (!(d > 0)) return false;
    d = std::sqrt(d);
    a[j * n + j] = d;
    for (int i = j + 1; i < n; ++i) {
      double s = a[i * n + j];
      for (int k = 0; k < j; ++k) s -= a[i * n + k] * a[j * n + k];
      a[i * n + j] = s / d;
    }
    for (int k = j + 1; k < n; ++k) a[j * n + k] = 0;
  }
  return true;
}

// Solves L x = b (forward) and L^T x = b (backward) for lower-triangular L.
void Forward(const Vec& l, int n, Vec& b) {
  for (int i = 0; i < n; ++i) {
    double s = b[i];
    for (int k = 0; k < i; ++k) s -= l[i * n + k] * b[k];
    b[i] = s / l[i * n + i];
  }
}
void Backward(const Vec& l, int n, Vec& b) {
  for (int i = n - 1; i >= 0; --i) {
    double s = b[i];
    for (int k = i + 1; k < n; ++k) s -= l[k * n + i] * b[k];
    b[i] = s / l[i * n + i];
  }
}

double NormCdf(double z) { return 0.5 * std::erfc(-z / std::sqrt(2.0)); }

// log(phi(z) + z * Phi(z)), stable for very negative z (Ament et al. 2023).
double LogH(double z) {
  if (z > -5) {
    const double h = std::exp(-0.5 * z * z) / std::sqrt(2 * M_PI) + z * NormCdf(z);
    return std::log(std::max(h, 1e-300));
  }
  // phi(z) + z Phi(z) = phi(z) * (1 - |z| R(|z|)) with Mills ratio R; asymptotically phi(z)/z^2 (1 - 3/z^2 + 15/z^4).
  const double z2 = z * z;
  return -0.5 * z2 - 0.5 * std::log(2 * M_PI) - std::log(z2) + std::log1p(-3 / z2 + 15 / (z2 * z2));
}

// Encoded dimensions of the space: one per number, one per categorical choice.
struct Encoding {
  struct Slot {
    const ParamSpec* p;
    int dim;  // first dimension
  };
  std::vector<Slot> slots;
  int dims = 0;

  explicit Encoding(const StudySpec& spec) {
    for (const ParamSpec& p : spec.params) {
      slots.push_back({&p, dims});
      dims += p.type == ParamType::kCategorical ? static_cast<int>(p.choices.size()) : 1;
    }
  }

  static double Lo(const ParamSpec& p) { return p.log ? std::log(p.low) : p.low; }
  static double Hi(const ParamSpec& p) { return p.log ? std::log(p.high) : p.high; }

  Vec Encode(const ParamMap& params) const {
    Vec x(dims, 0.0);
    for (const Slot& s : slots) {
      auto it = params.find(s.p->name);
      if (s.p->type == ParamType::kCategorical) {
        if (it == params.end()) continue;  // inactive: all zeros
        auto c = std::find(s.p->choices.begin(), s.p->choices.end(), it->second) - s.p->choices.begin();
        if (c < static_cast<long>(s.p->choices.size())) x[s.dim + c] = 1.0;
        continue;
      }
      if (it == params.end()) {
        x[s.dim] = 0.5;  // inactive
        continue;
      }
      double v = std::holds_alternative<double>(it->second) ? std::get<double>(it->second)
                                                              : static_cast<double>(std::get<int64_t>(it->second));
      if (s.p->log) v = std::log(std::max(v, 1e-300));
      x[s.dim] = std::clamp((v - Lo(*s.p)) / (Hi(*s.p) - Lo(*s.p)), 0.0, 1.0);
    }
    return x;
  }

  // The parameter values nearest to x (snapped), inactive parameters left out.
  ParamMap Decode(const Vec& x) const {
    ParamMap out;
    for (const Slot& s : slots) {
      const ParamSpec& p = *s.p;
      if (!IsActive(p, out)) continue;
      if (p.type == ParamType::kCategorical) {
        int best = 0;
        for (int c = 1; c < static_cast<int>(p.choices.size()); ++c) {
          if (x[s.dim + c] > x[s.dim + best]) best = c;
        }
        out[p.name] = p.choices[best];
        continue;
      }
      double v = Lo(p) + std::clamp(x[s.dim], 0.0, 1.0) * (Hi(p) - Lo(p));
      if (p.log) v = std::exp(v);
      v = std::clamp(v, p.low, p.high);
      if (p.type == ParamType::kInt) {
        const double step = p.step ? *p.step : 1.0;
        out[p.name] = static_cast<int64_t>(std::clamp(p.low + std::round((v - p.low) / step) * step, p.low, p.high));
      } else {
        if (p.step) v = std::min(p.high, p.low + std::round((v - p.low) / *p.step) * *p.step);
        out[p.name] = v;
      }
    }
    return out;
  }

  // A point of the space drawn uniformly (valid one-hot vectors), already snapped.
  Vec Random(std::mt19937_64& rng) const {
    Vec x(dims, 0.0);
    for (const Slot& s : slots) {
      if (s.p->type == ParamType::kCategorical) {
        x[s.dim + static_cast<int>(rng() % s.p->choices.size())] = 1.0;
      } else {
        x[s.dim] = UnitFromBits(rng());
      }
    }
    return Encode(Decode(x));
  }

  // A neighbour of x: numbers moved by N(0, radius), sometimes another choice; snapped.
  Vec Perturb(const Vec& x, double radius, std::mt19937_64& rng) const {
    Vec y = x;
    for (const Slot& s : slots) {
      if (s.p->type == ParamType::kCategorical) {
        if (UnitFromBits(rng()) < 0.2) {
          std::fill(y.begin() + s.dim, y.begin() + s.dim + s.p->choices.size(), 0.0);
          y[s.dim + static_cast<int>(rng() % s.p->choices.size())] = 1.0;
        }
        continue;
      }
      const double u1 = std::max(UnitFromBits(rng()), 1e-300), u2 = UnitFromBits(rng());
      y[s.dim] = std::clamp(y[s.dim] + radius * std::sqrt(-2 * std::log(u1)) * std::cos(2 * M_PI * u2), 0.0, 1.0);
    }
    return Encode(Decode(y));
  }
};

// Kernel hyperparameters, all in log space: length scales, signal variance, noise variance.
struct Hyper {
  Vec log_ls;
  double log_signal = 0;
  double log_noise = std::log(1e-3);
};

double Kern(const Hyper& h, const double* a, const double* b, int d) {
  double r2 = 0;
  for (int j = 0; j < d; ++j) {
    const double t = (a[j] - b[j]) / std::exp(h.log_ls[j]);
    r2 += t * t;
  }
  const double r = std::sqrt(r2);
  return std::exp(h.log_signal) * (1 + kSqrt5 * r + 5.0 / 3.0 * r2) * std::exp(-kSqrt5 * r);
}

class Gp {
 public:
  // Factorizes K + noise I for points X (n x d) and targets y.
  bool Fit(const Hyper& h, const Vec& x, const Vec& y, int n, int d) {
    h_ = h;
    x_ = x;
    n_ = n;
    d_ = d;
    l_.assign(n * n, 0.0);
    for (int i = 0; i < n; ++i) {
      for (int j = 0; j <= i; ++j) {
        const double k = Kern(h, &x[i * d], &x[j * d], d);
        l_[i * n + j] = l_[j * n + i] = k;
      }
      l_[i * n + i] += std::exp(h.log_noise) + 1e-9;
    }
    if (!Cholesky(l_, n)) return false;
    alpha_ = y;
    Forward(l_, n, alpha_);
    Backward(l_, n, alpha_);
    return true;
  }

  void Predict(const double* q, double* mean, double* sd) const {
    Vec k(n_);
    double m = 0;
    for (int i = 0; i < n_; ++i) {
      k[i] = Kern(h_, q, &x_[i * d_], d_);
      m += k[i] * alpha_[i];
    }
    Forward(l_, n_, k);
    double v = std::exp(h_.log_signal);
    for (double t : k) v -= t * t;
    *mean = m;
    *sd = std::sqrt(std::max(v, 1e-12));
  }

 private:

  Hyper h_;
  Vec x_, l_, alpha_;
  int n_ = 0, d_ = 0;
};

// Log marginal likelihood plus log priors, and its gradient (same layout as the hyperparameters).
double Objective(const Hyper& h, const Vec& x, const Vec& y, int n, int d, Vec* grad) {
  Vec kmat(n * n), dk_signal(n * n);
  std::vector<Vec> dk_ls(d, Vec(n * n, 0.0));
  const double s2 = std::exp(h.log_signal);
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j <= i; ++j) {
      double r2 = 0;
      Vec t2(d);
      for (int q = 0; q < d; ++q) {
        const double t = (x[i * d + q] - x[j * d + q]) / std::exp(h.log_ls[q]);
        t2[q] = t * t;
        r2 += t2[q];
      }
      const double r = std::sqrt(r2), e = std::exp(-kSqrt5 * r);
      const double k = s2 * (1 + kSqrt5 * r + 5.0 / 3.0 * r2) * e;
      kmat[i * n + j] = kmat[j * n + i] = k;
      dk_signal[i * n + j] = dk_signal[j * n + i] = k;
      const double common = 5.0 / 3.0 * s2 * (1 + kSqrt5 * r) * e;
      for (int q = 0; q < d; ++q) dk_ls[q][i * n + j] = dk_ls[q][j * n + i] = common * t2[q];
    }
    kmat[i * n + i] += std::exp(h.log_noise) + 1e-9;
  }
  Vec l = kmat;
  if (!Cholesky(l, n)) return -std::numeric_limits<double>::infinity();
  Vec alpha = y;
  Forward(l, n, alpha);
  double quad = 0;
  for (double a : alpha) quad += a * a;
  Backward(l, n, alpha);
  double logdet = 0;
  for (int i = 0; i < n; ++i) logdet += std::log(l[i * n + i]);
  double value = -0.5 * quad - logdet - 0.5 * n * std::log(2 * M_PI);
  // Priors: log length scale ~ N(sqrt2 + log(d)/2, 3); log signal ~ N(0, 1); log noise ~ N(log 1e-3, 4).
  const double mu_ls = std::sqrt(2.0) + 0.5 * std::log(static_cast<double>(d));
  for (double v : h.log_ls) value -= 0.5 * (v - mu_ls) * (v - mu_ls) / 3.0;
  value -= 0.5 * h.log_signal * h.log_signal;
  value -= 0.5 * (h.log_noise - std::log(1e-3)) * (h.log_noise - std::log(1e-3)) / 4.0;
  if (grad == nullptr) return value;
  // W = alpha alpha^T - K^{-1}; d/dtheta = 0.5 tr(W dK).
  Vec kinv(n * n, 0.0);
  for (int c = 0; c < n; ++c) {
    Vec e(n, 0.0);
    e[c] = 1;
    Forward(l, n, e);
    Backward(l, n, e);
    for (int r = 0; r < n; ++r) kinv[r * n + c] = e[r];
  }
  auto trace = [&](const Vec& dk) {
    double s = 0;
    for (int i = 0; i < n; ++i) {
      for (int j = 0; j < n; ++j) s += (alpha[i] * alpha[j] - kinv[i * n + j]) * dk[j * n + i];
    }
    return 0.5 * s;
  };
  grad->assign(d + 2, 0.0);
  for (int q = 0; q < d; ++q) (*grad)[q] = trace(dk_ls[q]) - (h.log_ls[q] - mu_ls) / 3.0;
  (*grad)[d] = trace(dk_signal) - h.log_signal;
  double tr_noise = 0;
  for (int i = 0; i < n; ++i) tr_noise += alpha[i] * alpha[i] - kinv[i * n + i];
  (*grad)[d + 1] = 0.5 * tr_noise * std::exp(h.log_noise) - (h.log_noise - std::log(1e-3)) / 4.0;
  return value;
}

// Maximizes Objective by Adam from `start`; keeps the best point seen.
Hyper FitHyper(Hyper start, const Vec& x, const Vec& y, int n, int d, int iters) {
  const int p = d + 2;
  Vec theta(p), m(p, 0.0), v(p, 0.0), g;
  auto unpack = [&](const Vec& t) {
    Hyper h;
    h.log_ls.assign(t.begin(), t.begin() + d);
    h.log_signal = t[d];
    h.log_noise = std::max(t[d + 1], std::log(1e-6));
    return h;
  };
  std::copy(start.log_ls.begin(), start.log_ls.end(), theta.begin());
  theta[d] = start.log_signal;
  theta[d + 1] = start.log_noise;
  Hyper best = start;
  double best_value = Objective(start, x, y, n, d, nullptr);
  for (int it = 1; it <= iters; ++it) {
    const Hyper h = unpack(theta);
    const double value = Objective(h, x, y, n, d, &g);
    if (!std::isfinite(value)) break;
    if (value > best_value) {
      best_value = value;
      best = h;
    }
    for (int q = 0; q < p; ++q) {
      m[q] = 0.9 * m[q] + 0.1 * g[q];
      v[q] = 0.999 * v[q] + 0.001 * g[q] * g[q];
      const double mh = m[q] / (1 - std::pow(0.9, it)), vh = v[q] / (1 - std::pow(0.999, it));
      theta[q] += 0.08 * mh / (std::sqrt(vh) + 1e-8);
      theta[q] = std::clamp(theta[q], -9.0, 6.0);
    }
  }
  return best;
}

class GpSampler final : public Sampler {
 public:
  explicit GpSampler(const GpOptions& o) : o_(o), random_(NewRandomSampler()) {}

  absl::StatusOr<ParamMap> Sample(const Study& study, int number, uint64_t trial_seed) override {
    const double sign = study.spec.direction == Direction::kMaximize ? -1.0 : 1.0;
    const Encoding enc(study.spec);
    const int d = enc.dims;
    std::vector<std::pair<Vec, double>> data;
    std::vector<Vec> pending;
    const int rung = o_.rung_fit ? RungToFit(study, static_cast<int>(study.spec.params.size()) + 3) : -1;
    std::vector<Vec> stopped;  // pruned below the fitted step: they join at the worst fitted value
    for (const Trial& t : study.trials) {
      const bool pruned = t.state == TrialState::kPruned && !t.measurements.empty();
      if (rung >= 0 && ((t.state == TrialState::kCompleted && t.value) ||
                        (pruned && t.measurements.back().step >= rung))) {
        const double y = BestLossUpTo(t, rung, sign);
        if (std::isfinite(y)) data.emplace_back(enc.Encode(t.params), y);
      } else if (t.state == TrialState::kCompleted && t.value) {
        data.emplace_back(enc.Encode(t.params), sign * *t.value);
      } else if (pruned && o_.rung_fit) {
        stopped.push_back(enc.Encode(t.params));
      } else if (o_.kriging_believer && t.state == TrialState::kRunning && !t.params.empty()) {
        pending.push_back(enc.Encode(t.params));
      }
    }
    if (!data.empty()) {
      double worst = data[0].second;
      for (const auto& [x, y] : data) worst = std::max(worst, y);
      for (Vec& x : stopped) data.emplace_back(std::move(x), worst);
    }
    if (static_cast<int>(data.size()) < std::max(2, o_.n_startup_trials)) {
      return random_->Sample(study, number, trial_seed);
    }
    // Standardize the losses (the posterior below uses all of them).
    double mean = 0, var = 0;
    for (const auto& [x, y] : data) mean += y;
    mean /= data.size();
    for (const auto& [x, y] : data) var += (y - mean) * (y - mean);
    const double sd = std::sqrt(var / data.size()) + 1e-12;
    auto pack = [&](const std::vector<size_t>& which, Vec* x, Vec* y) {
      x->clear();
      y->clear();
      for (size_t i : which) {
        x->insert(x->end(), data[i].first.begin(), data[i].first.end());
        y->push_back((data[i].second - mean) / sd);
      }
    };
    const Hyper h0 = FitHyperparameters(data, d);

    // Posterior on every completed trial, then running trials at the model's mean (kriging believer).
    std::vector<size_t> all(data.size());
    std::iota(all.begin(), all.end(), 0);
    Vec x, y;
    pack(all, &x, &y);
    Gp gp;
    int n = static_cast<int>(all.size());
    Hyper h = h0;
    while (!gp.Fit(h, x, y, n, d)) h.log_noise += 1.0;
    double best_y = *std::min_element(y.begin(), y.end());
    if (!pending.empty()) {
      for (const Vec& p : pending) {
        double m, s;
        gp.Predict(p.data(), &m, &s);
        x.insert(x.end(), p.begin(), p.end());
        y.push_back(m);
      }
      n = static_cast<int>(y.size());
      while (!gp.Fit(h, x, y, n, d)) h.log_noise += 1.0;
    }

    auto log_ei = [&](const Vec& q) {
      double m, s;
      gp.Predict(q.data(), &m, &s);
      return std::log(s) + LogH((best_y - m) / s);
    };
    std::mt19937_64 rng(trial_seed);
    std::vector<std::pair<double, Vec>> scored;
    for (int c = 0; c < o_.n_candidates; ++c) {
      Vec q = enc.Random(rng);
      scored.emplace_back(log_ei(q), std::move(q));
    }
    // Candidates near the best trials too.
    std::vector<size_t> order = all;
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return data[a].second < data[b].second; });
    for (size_t i = 0; i < std::min<size_t>(5, order.size()); ++i) {
      for (int c = 0; c < 20; ++c) {
        Vec q = enc.Perturb(data[order[i]].first, 0.05, rng);
        scored.emplace_back(log_ei(q), std::move(q));
      }
    }
    std::partial_sort(scored.begin(), scored.begin() + std::min<size_t>(o_.n_refine, scored.size()), scored.end(),
                      [](const auto& a, const auto& b) { return a.first > b.first; });
    // Local refinement: shrinking random steps, accepted when log-EI improves.
    for (int r = 0; r < std::min<int>(o_.n_refine, static_cast<int>(scored.size())); ++r) {
      double radius = 0.1;
      for (int it = 0; it < 40; ++it) {
        Vec q = enc.Perturb(scored[r].second, radius, rng);
        const double v = log_ei(q);
        if (v > scored[r].first) {
          scored[r] = {v, std::move(q)};
        } else {
          radius = std::max(0.005, radius * 0.85);
        }
      }
    }
    const auto best = std::max_element(scored.begin(), scored.begin() + std::min<size_t>(o_.n_refine, scored.size()),
                                       [](const auto& a, const auto& b) { return a.first < b.first; });
    return enc.Decode(best->second);
  }

 private:
  // Hyperparameters for `data`: a short fit warm-started from the anchor's, the anchor being the first
  // multiple of kAnchorEvery points (trial order), fitted from the prior's centre. Both are functions of
  // the history alone, so a fresh sampler (a restarted coordinator) suggests exactly what one that ran
  // from the start does; anchor_ only caches the anchor's fit, keyed by its exact data.
  Hyper FitHyperparameters(const std::vector<std::pair<Vec, double>>& data, int d) {
    constexpr size_t kAnchorEvery = 10;
    Hyper start;
    start.log_ls.assign(d, std::sqrt(2.0) + 0.5 * std::log(static_cast<double>(d)));
    Vec fx, fy;
    const int nf = FitPoints(data, data.size(), &fx, &fy);
    const size_t m = data.size() / kAnchorEvery * kAnchorEvery;
    if (m == 0) return FitHyper(start, fx, fy, nf, d, 100);
    if (anchor_dims_ != d || anchor_data_.size() != m || !std::equal(anchor_data_.begin(), anchor_data_.end(), data.begin())) {
      Vec ax, ay;
      const int na = FitPoints(data, m, &ax, &ay);
      anchor_ = FitHyper(start, ax, ay, na, d, 100);
      anchor_data_.assign(data.begin(), data.begin() + m);
      anchor_dims_ = d;
    }
    return FitHyper(anchor_, fx, fy, nf, d, 25);
  }

  // Standardized losses of data[0, count) to fit hyperparameters on, at most max_fit_points of them (the
  // best half and the newest); returns how many.
  int FitPoints(const std::vector<std::pair<Vec, double>>& data, size_t count, Vec* fx, Vec* fy) const {
    double mean = 0, var = 0;
    for (size_t i = 0; i < count; ++i) mean += data[i].second;
    mean /= count;
    for (size_t i = 0; i < count; ++i) var += (data[i].second - mean) * (data[i].second - mean);
    const double sd = std::sqrt(var / count) + 1e-12;
    std::vector<size_t> idx(count);
    std::iota(idx.begin(), idx.end(), 0);
    if (static_cast<int>(idx.size()) > o_.max_fit_points) {
      std::vector<size_t> by_loss = idx;
      std::sort(by_loss.begin(), by_loss.end(), [&](size_t a, size_t b) { return data[a].second < data[b].second; });
      std::vector<char> keep(count, 0);
      for (int i = 0; i < o_.max_fit_points / 2; ++i) keep[by_loss[i]] = 1;
      for (size_t i = count; i-- > 0 && std::count(keep.begin(), keep.end(), 1) < o_.max_fit_points;) keep[i] = 1;
      idx.clear();
      for (size_t i = 0; i < count; ++i) if (keep[i]) idx.push_back(i);
    }
    fx->clear();
    fy->clear();
    for (size_t i : idx) {
      fx->insert(fx->end(), data[i].first.begin(), data[i].first.end());
      fy->push_back((data[i].second - mean) / sd);
    }
    return static_cast<int>(idx.size());
  }

  GpOptions o_;
  std::unique_ptr<Sampler> random_;
  // The anchor's data and fitted hyperparameters (a cache: see FitHyperparameters).
  std::vector<std::pair<Vec, double>> anchor_data_;
  Hyper anchor_;
  int anchor_dims_ = -1;
};

}  // namespace

std::unique_ptr<Sampler> NewGpSampler(const GpOptions& options) { return std::make_unique<GpSampler>(options); }

}  // namespace hpo::server
