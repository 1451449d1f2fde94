#include "server/sampler/tpe_sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <optional>
#include <random>

#include "server/model/search_space.h"
#include "server/sampler/random_sampler.h"

namespace hpo::server {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

double NormCdf(double z) { return 0.5 * std::erfc(-z / std::sqrt(2.0)); }

double LogSumExp(const std::vector<double>& v) {
  double m = -kInf;
  for (double x : v) m = std::max(m, x);
  if (!std::isfinite(m)) return m;
  double s = 0;
  for (double x : v) s += std::exp(x - m);
  return m + std::log(s);
}

// A numeric parameter in the space the kernels live in: log for log scales,
// integers and steps widened by half a step on each side.
struct NumericSpace {
  double low, high;     // transformed bounds
  bool log = false;
  double half = 0;      // half a grid cell (untransformed); 0 for continuous

  explicit NumericSpace(const ParamSpec& p) : log(p.log) {
    if (p.type == ParamType::kInt) half = 0.5 * (p.step ? *p.step : 1.0);
    else if (p.step) half = 0.5 * *p.step;
    double lo = p.low - half, hi = p.high + half;
    if (log) lo = std::max(lo, p.low * 0.5);
    low = log ? std::log(lo) : lo;
    high = log ? std::log(hi) : hi;
  }
  double To(double x) const { return log ? std::log(x) : x; }
  double From(double t) const { return log ? std::exp(t) : t; }
};

double AsNumber(const ParamValue& v) {
  if (auto* d = std::get_if<double>(&v)) return *d;
  if (auto* i = std::get_if<int64_t>(&v)) return static_cast<double>(*i);
  return 0;
}

size_t ChoiceIndex(const ParamSpec& p, const ParamValue& v) {
  return static_cast<size_t>(std::find(p.choices.begin(), p.choices.end(), v) - p.choices.begin());
}

// Optuna's default weights: flat for the newest 25 observations, ramped down for older ones.
std::vector<double> RecencyWeights(size_t n) {
  std::vector<double> w(n, 1.0);
  if (n > 25) {
    const size_t ramp = n - 25;
    for (size_t i = 0; i < ramp; ++i) {
      w[i] = ramp == 1 ? 1.0 / n : 1.0 / n + (1.0 - 1.0 / n) * static_cast<double>(i) / (ramp - 1);
    }
  }
  return w;
}

class Rng {
 public:
  explicit Rng(uint64_t seed) : gen_(seed) {}
  double Uniform() { return UnitFromBits(gen_()); }
  double Normal() {  // Box-Muller from our own uniforms: the same draws everywhere
    double u1 = std::max(Uniform(), 1e-300), u2 = Uniform();
    return std::sqrt(-2 * std::log(u1)) * std::cos(2 * M_PI * u2);
  }
  size_t Pick(const std::vector<double>& weights) {
    double total = 0;
    for (double w : weights) total += w;
    double u = Uniform() * total;
    for (size_t i = 0; i < weights.size(); ++i) {
      if ((u -= weights[i]) < 0) return i;
    }
    return weights.size() - 1;
  }

 private:
  std::mt19937_64 gen_;
};

// A mixture of truncated normals (numeric) or of smoothed one-hot kernels (categorical), with
// what the densities need that does not depend on the point (computed once by Fit).
struct Kernels {
  std::vector<double> weights;  // normalized component weights (last = prior)
  std::vector<double> log_weights;
  // numeric
  std::optional<NumericSpace> space;
  std::vector<double> mus, sigmas;
  std::vector<double> log_norms;  // log of each truncated normal's mass inside the bounds
  std::vector<double> log_scales;  // log(sigma * sqrt(2 pi))
  // categorical: probs[component][choice], and their logs
  std::vector<std::vector<double>> probs, log_probs;
};

// The per-point constants of Kernels::log_norms etc.
void Finish(Kernels& k) {
  for (double w : k.weights) k.log_weights.push_back(std::log(w));
  for (const auto& row : k.probs) {
    std::vector<double> logs;
    for (double x : row) logs.push_back(std::log(x));
    k.log_probs.push_back(std::move(logs));
  }
  if (!k.space) return;
  const NumericSpace& s = *k.space;
  for (size_t i = 0; i < k.mus.size(); ++i) {
    const double mu = k.mus[i], sg = k.sigmas[i];
    const double z_norm = NormCdf((s.high - mu) / sg) - NormCdf((s.low - mu) / sg);
    k.log_norms.push_back(std::log(std::max(z_norm, 1e-300)));
    k.log_scales.push_back(std::log(sg * std::sqrt(2 * M_PI)));
  }
}

// One parameter's estimator from `obs` (transformed values or choice indices) with `w` recency weights.
Kernels Fit(const ParamSpec& p, const std::vector<double>& obs, const std::vector<double>& w,
            const TpeOptions& o, int n_dims_for_bandwidth) {
  Kernels k;
  const size_t n = obs.size();
  k.weights = w;
  k.weights.push_back(o.prior_weight);
  double total = 0;
  for (double x : k.weights) total += x;
  for (double& x : k.weights) x /= total;
  if (p.type == ParamType::kCategorical) {
    const size_t c = p.choices.size();
    for (size_t i = 0; i <= n; ++i) {
      std::vector<double> row(c, o.prior_weight / c);
      if (i < n) row[static_cast<size_t>(obs[i])] += 1.0;
      double s = 0;
      for (double x : row) s += x;
      for (double& x : row) x /= s;
      k.probs.push_back(std::move(row));
    }
    Finish(k);
    return k;
  }
  const NumericSpace s(p);
  k.space = s;
  const double range = s.high - s.low;
  k.mus = obs;
  k.mus.push_back(0.5 * (s.low + s.high));  // the prior's centre
  const size_t m = k.mus.size();
  k.sigmas.assign(m, range);
  if (n_dims_for_bandwidth > 0) {
    // Multivariate: Scott's rule on the spread of the observations themselves, so the kernels
    // narrow as the good trials cluster (Optuna scales a constant 0.2 of the range instead).
    double sigma = 0.2 * range;
    if (n >= 2) {
      double mean = 0, var = 0;
      for (double x : obs) mean += x / n;
      for (double x : obs) var += (x - mean) * (x - mean) / (n - 1);
      sigma = 1.059 * std::sqrt(var) * std::pow(static_cast<double>(n), -1.0 / (n_dims_for_bandwidth + 4));
    }
    k.sigmas.assign(m, sigma);
  } else {
    // Univariate: distance to the farther neighbour among the kernels' centres (the prior's
    // included); the outermost use their inner neighbour only (bounds are not neighbours).
    std::vector<size_t> order(m);
    for (size_t i = 0; i < m; ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return k.mus[a] < k.mus[b]; });
    std::vector<double> sorted(m + 2);
    sorted[0] = s.low;
    sorted[m + 1] = s.high;
    for (size_t r = 0; r < m; ++r) sorted[r + 1] = k.mus[order[r]];
    for (size_t r = 0; r < m; ++r) {
      double sg = std::max(sorted[r + 1] - sorted[r], sorted[r + 2] - sorted[r + 1]);
      if (m >= 2 && r == 0) sg = sorted[2] - sorted[1];
      if (m >= 2 && r == m - 1) sg = sorted[m] - sorted[m - 1];
      k.sigmas[order[r]] = sg;
    }
  }
  // Magic clip: a floor on the bandwidth that shrinks as observations accumulate.
  const double min_sigma = range / std::min(100.0, 1.0 + m);
  for (double& sg : k.sigmas) sg = std::clamp(sg, min_sigma, range);
  k.sigmas[n] = range;  // the prior
  Finish(k);
  return k;
}

// Log density (or log probability of the grid cell) of every component at transformed value `t`.
std::vector<double> ComponentLogPdfs(const ParamSpec& p, const Kernels& k, double t) {
  std::vector<double> out(k.weights.size());
  if (p.type == ParamType::kCategorical) {
    const size_t c = static_cast<size_t>(t);
    for (size_t i = 0; i < out.size(); ++i) out[i] = k.log_probs[i][c];
    return out;
  }
  const NumericSpace& s = *k.space;
  if (s.half > 0) {
    const double x = s.From(t);
    const double a = std::max(s.low, s.To(std::max(x - s.half, s.log ? 1e-300 : -kInf)));
    const double b = std::min(s.high, s.To(x + s.half));
    for (size_t i = 0; i < out.size(); ++i) {
      const double mu = k.mus[i], sg = k.sigmas[i];
      const double mass = NormCdf((b - mu) / sg) - NormCdf((a - mu) / sg);
      out[i] = std::log(std::max(mass, 1e-300)) - k.log_norms[i];
    }
    return out;
  }
  for (size_t i = 0; i < out.size(); ++i) {
    const double z = (t - k.mus[i]) / k.sigmas[i];
    out[i] = -0.5 * z * z - k.log_scales[i] - k.log_norms[i];
  }
  return out;
}

// ComponentLogPdfs, remembered per point for parameters with few distinct values (choices, grid
// cells), which the candidates hit again and again.
class PdfCache {
 public:
  PdfCache(const ParamSpec& p, const Kernels& k) : p_(p), k_(k) {}
  const std::vector<double>& At(double t) {
    const bool discrete = p_.type == ParamType::kCategorical || k_.space->half > 0;
    if (!discrete) {
      last_ = ComponentLogPdfs(p_, k_, t);
      return last_;
    }
    auto it = cache_.find(t);
    if (it == cache_.end()) it = cache_.emplace(t, ComponentLogPdfs(p_, k_, t)).first;
    return it->second;
  }

 private:
  const ParamSpec& p_;
  const Kernels& k_;
  std::map<double, std::vector<double>> cache_;
  std::vector<double> last_;
};

double SampleComponent(const ParamSpec& p, const Kernels& k, size_t i, Rng& rng) {
  if (p.type == ParamType::kCategorical) return static_cast<double>(rng.Pick(k.probs[i]));
  const NumericSpace s(p);
  for (int tries = 0; tries < 100; ++tries) {
    const double t = k.mus[i] + k.sigmas[i] * rng.Normal();
    if (t >= s.low && t <= s.high) return t;
  }
  return std::clamp(k.mus[i], s.low, s.high);
}

// Transformed representation of a value (choice index for categoricals).
double Encode(const ParamSpec& p, const ParamValue& v) {
  if (p.type == ParamType::kCategorical) return static_cast<double>(ChoiceIndex(p, v));
  return NumericSpace(p).To(AsNumber(v));
}

// The parameter value nearest to transformed value `t` (snapped to ints / the step grid).
ParamValue Decode(const ParamSpec& p, double t) {
  if (p.type == ParamType::kCategorical) return p.choices[static_cast<size_t>(t)];
  const NumericSpace s(p);
  double x = std::clamp(s.From(t), p.low, p.high);
  if (p.type == ParamType::kInt) {
    const double step = p.step ? *p.step : 1.0;
    const double k = std::round((x - p.low) / step);
    return std::clamp(static_cast<int64_t>(p.low + k * step), static_cast<int64_t>(p.low),
                      static_cast<int64_t>(p.high));
  }
  if (p.step) x = std::min(p.high, p.low + std::round((x - p.low) / *p.step) * *p.step);
  return x;
}

// A trial as evidence: its loss (lower is better) and how it ranks.
struct Evidence {
  const Trial* trial;
  int group;    // 0 completed, 1 pruned, 2 running (constant liar)
  int step;     // pruned: the last step it reached
  double loss;
};

class TpeSampler final : public Sampler {
 public:
  explicit TpeSampler(const TpeOptions& o) : o_(o), random_(NewRandomSampler()) {}

  absl::StatusOr<ParamMap> Sample(const Study& study, int number, uint64_t trial_seed) override {
    const double sign = study.spec.direction == Direction::kMaximize ? -1.0 : 1.0;
    std::vector<Evidence> ev;
    int finished = 0;
    for (const Trial& t : study.trials) {
      if (t.state == TrialState::kCompleted && t.value) {
        ev.push_back({&t, 0, 0, sign * *t.value});
        ++finished;
      } else if (o_.use_pruned && t.state == TrialState::kPruned && !t.measurements.empty()) {
        ev.push_back({&t, 1, t.measurements.back().step, sign * t.measurements.back().value});
        ++finished;
      } else if (o_.constant_liar && t.state == TrialState::kRunning && !t.params.empty()) {
        ev.push_back({&t, 2, 0, kInf});
      }
    }
    if (finished < o_.n_startup_trials) return random_->Sample(study, number, trial_seed);
    size_t n_ranked = ev.size();
    if (const int rung = FitRung(study); rung >= 0) {
      // Rank at that rung: every trial that reached it by its best value so far; the rest below.
      n_ranked = 0;
      for (Evidence& e : ev) {
        if (e.group == 2) continue;
        const bool reached = e.group == 0 || e.step >= rung;
        if (!reached) continue;
        e.group = 0;
        e.loss = BestLossUpTo(*e.trial, rung, sign);
        ++n_ranked;
      }
    }
    // Completed first (by loss), then pruned (deeper steps first, then loss), then running.
    std::stable_sort(ev.begin(), ev.end(), [](const Evidence& a, const Evidence& b) {
      if (a.group != b.group) return a.group < b.group;
      if (a.group == 1 && a.step != b.step) return a.step > b.step;
      return a.loss < b.loss;
    });
    const size_t n_good = std::max<size_t>(1, std::min<size_t>(
        static_cast<size_t>(o_.max_good), static_cast<size_t>(std::ceil(o_.gamma * static_cast<double>(n_ranked)))));
    std::vector<const Trial*> good, bad;
    for (size_t i = 0; i < ev.size(); ++i) (i < n_good ? good : bad).push_back(ev[i].trial);
    auto by_number = [](const Trial* a, const Trial* b) { return a->number < b->number; };
    std::sort(good.begin(), good.end(), by_number);  // recency weights follow trial order
    std::sort(bad.begin(), bad.end(), by_number);

    Rng rng(trial_seed);
    ParamMap out;
    std::vector<const ParamSpec*> joint, single;
    for (const ParamSpec& p : study.spec.params) {
      (o_.multivariate && p.parent.empty() ? joint : single).push_back(&p);
    }
    if (joint.size() > 1) {
      SampleJoint(joint, good, bad, rng, &out);
    } else {
      single.insert(single.begin(), joint.begin(), joint.end());
    }
    for (const ParamSpec& sp : study.spec.params) {
      const ParamSpec* p = &sp;
      if (std::find(single.begin(), single.end(), p) == single.end()) continue;
      if (!IsActive(*p, out)) continue;
      out[p->name] = SampleOne(*p, good, bad, rng);
    }
    return out;
  }

 private:
  // BOHB's budget: -1 (rank completed trials first) when enough trials completed or rung fitting is off.
  int FitRung(const Study& study) const {
    if (!o_.rung_fit || !o_.use_pruned) return -1;
    return RungToFit(study, o_.rung_min_trials > 0 ? o_.rung_min_trials
                                                   : static_cast<int>(study.spec.params.size()) + 3);
  }

  // Observations of `p` among `trials` (where it was active), with recency weights.
  static void Observe(const ParamSpec& p, const std::vector<const Trial*>& trials, std::vector<double>* obs,
                      std::vector<double>* w) {
    for (const Trial* t : trials) {
      auto it = t->params.find(p.name);
      if (it != t->params.end() && Contains(p, it->second)) obs->push_back(Encode(p, it->second));
    }
    *w = RecencyWeights(obs->size());
  }

  static double LogMixture(const Kernels& k, const std::vector<double>& pdfs) {
    std::vector<double> terms(k.weights.size());
    for (size_t i = 0; i < k.weights.size(); ++i) terms[i] = k.log_weights[i] + pdfs[i];
    return LogSumExp(terms);
  }

  ParamValue SampleOne(const ParamSpec& p, const std::vector<const Trial*>& good,
                       const std::vector<const Trial*>& bad, Rng& rng) const {
    std::vector<double> og, wg, ob, wb;
    Observe(p, good, &og, &wg);
    Observe(p, bad, &ob, &wb);
    const Kernels l = Fit(p, og, wg, o_, 0), g = Fit(p, ob, wb, o_, 0);
    PdfCache lc(p, l), gc(p, g);
    double best_t = 0, best_score = -kInf;
    for (int c = 0; c < o_.n_ei_candidates; ++c) {
      double t = SampleComponent(p, l, rng.Pick(l.weights), rng);
      if (p.type != ParamType::kCategorical) t = Encode(p, Decode(p, t));  // score what will be used
      const double score = LogMixture(l, lc.At(t)) - LogMixture(g, gc.At(t));
      if (score > best_score) {
        best_score = score;
        best_t = t;
      }
    }
    return Decode(p, best_t);
  }

  // Joint kernels: one component per good (bad) trial plus the prior.
  void SampleJoint(const std::vector<const ParamSpec*>& params, const std::vector<const Trial*>& good,
                   const std::vector<const Trial*>& bad, Rng& rng, ParamMap* out) const {
    const int d = static_cast<int>(params.size());
    auto fit = [&](const std::vector<const Trial*>& trials) {
      std::vector<const Trial*> usable;  // trials with a value for every parameter of the group
      for (const Trial* t : trials) {
        bool ok = true;
        for (const ParamSpec* p : params) {
          auto it = t->params.find(p->name);
          ok = ok && it != t->params.end() && Contains(*p, it->second);
        }
        if (ok) usable.push_back(t);
      }
      std::vector<Kernels> ks;
      for (const ParamSpec* p : params) {
        std::vector<double> obs;
        for (const Trial* t : usable) obs.push_back(Encode(*p, t->params.at(p->name)));
        ks.push_back(Fit(*p, obs, RecencyWeights(obs.size()), o_, d));
      }
      return ks;
    };
    const std::vector<Kernels> l = fit(good), g = fit(bad);
    std::vector<PdfCache> lc, gc;
    for (int j = 0; j < d; ++j) {
      lc.emplace_back(*params[j], l[j]);
      gc.emplace_back(*params[j], g[j]);
    }
    auto log_joint = [&](const std::vector<Kernels>& ks, std::vector<PdfCache>& caches,
                         const std::vector<double>& x) {
      std::vector<double> terms(ks[0].log_weights);
      for (int j = 0; j < d; ++j) {
        const std::vector<double>& pdfs = caches[j].At(x[j]);
        for (size_t i = 0; i < terms.size(); ++i) terms[i] += pdfs[i];
      }
      return LogSumExp(terms);
    };
    std::vector<double> best;
    double best_score = -kInf;
    for (int c = 0; c < o_.n_ei_candidates; ++c) {
      const size_t comp = rng.Pick(l[0].weights);
      std::vector<double> x(d);
      for (int j = 0; j < d; ++j) {
        x[j] = SampleComponent(*params[j], l[j], comp, rng);
        if (params[j]->type != ParamType::kCategorical) x[j] = Encode(*params[j], Decode(*params[j], x[j]));
      }
      const double score = log_joint(l, lc, x) - log_joint(g, gc, x);
      if (score > best_score) {
        best_score = score;
        best = x;
      }
    }
    for (int j = 0; j < d; ++j) (*out)[params[j]->name] = Decode(*params[j], best[j]);
  }

  TpeOptions o_;
  std::unique_ptr<Sampler> random_;
};

}  // namespace

std::unique_ptr<Sampler> NewTpeSampler(const TpeOptions& options) {
  return std::make_unique<TpeSampler>(options);
}

}  // namespace hpo::server
