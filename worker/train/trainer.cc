#include "worker/train/trainer.h"

#include <malloc.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "worker/train/pool_ops.h"

namespace hpo::worker {
namespace {

namespace F = torch::nn::functional;

absl::Status WrongType(const std::string& name, const char* want) {
  return absl::InvalidArgumentError(absl::StrCat("parameter ", name, " must be ", want));
}

bool AsDouble(const ParamVariant& v, double* out) {
  if (auto* d = std::get_if<double>(&v)) { *out = *d; return true; }
  if (auto* i = std::get_if<int64_t>(&v)) { *out = static_cast<double>(*i); return true; }
  return false;
}

bool AsInt(const ParamVariant& v, int* out) {
  if (auto* i = std::get_if<int64_t>(&v)) { *out = static_cast<int>(*i); return true; }
  if (auto* d = std::get_if<double>(&v); d && std::floor(*d) == *d) { *out = static_cast<int>(*d); return true; }
  return false;
}

bool AsBool(const ParamVariant& v, bool* out) {
  if (auto* b = std::get_if<bool>(&v)) { *out = *b; return true; }
  if (auto* i = std::get_if<int64_t>(&v)) { *out = *i != 0; return true; }
  return false;
}

bool OneOf(const ParamVariant& v, std::initializer_list<const char*> allowed, std::string* out) {
  auto* s = std::get_if<std::string>(&v);
  if (s == nullptr) return false;
  for (const char* a : allowed) {
    if (*s == a) {
      *out = *s;
      return true;
    }
  }
  return false;
}

torch::nn::AnyModule Activation(const std::string& name) {
  if (name == "elu") return torch::nn::AnyModule(torch::nn::ELU());
  if (name == "gelu") return torch::nn::AnyModule(torch::nn::GELU());
  return torch::nn::AnyModule(torch::nn::ReLU());
}

struct Net : torch::nn::Module {
  Net(const CnnConfig& c, const ImageSet& shape) {
    int channels = shape.channels, h = shape.height, w = shape.width;
    const int pad = c.kernel_size / 2;
    for (int b = 0; b < c.conv_blocks; ++b) {
      const int out = c.filters << std::min(b, 10);
      features->push_back(torch::nn::Conv2d(torch::nn::Conv2dOptions(channels, out, c.kernel_size).padding(pad)));
      h = h + 2 * pad - c.kernel_size + 1;
      w = w + 2 * pad - c.kernel_size + 1;
      if (c.batch_norm) features->push_back(torch::nn::BatchNorm2d(out));
      // Max-pooling commutes with a non-decreasing activation (relu, elu): pooling first
      // computes the activation, and its gradient, on a quarter of the values. ReLU is fused
      // into the pooling op (pool_ops.h).
      const bool pool = h >= 2 && w >= 2;  // never pool a feature map below 1x1
      const bool pool_first = pool && c.activation != "gelu";
      const bool fused_relu = pool_first && c.activation == "relu";
      if (pool_first) features->push_back(MaxPool2x2(fused_relu));
      if (!fused_relu) features->push_back(Activation(c.activation));
      if (pool && !pool_first) features->push_back(MaxPool2x2(/*relu=*/false));
      if (pool) {
        h /= 2;
        w /= 2;
      }
      channels = out;
    }
    if (c.global_pooling == "average") {
      features->push_back(torch::nn::AdaptiveAvgPool2d(torch::nn::AdaptiveAvgPool2dOptions({1, 1})));
      h = w = 1;
    }
    features->push_back(torch::nn::Flatten());
    if (c.dropout > 0) features->push_back(torch::nn::Dropout(c.dropout));
    int64_t in = static_cast<int64_t>(channels) * h * w;
    if (c.dense_units > 0) {
      features->push_back(torch::nn::Linear(in, c.dense_units));
      features->push_back(Activation(c.activation));
      if (c.dropout > 0) features->push_back(torch::nn::Dropout(c.dropout));
      in = c.dense_units;
    }
    features->push_back(torch::nn::Linear(in, shape.num_classes));
    register_module("features", features);
  }
  torch::Tensor forward(torch::Tensor x) { return features->forward(x); }
  torch::nn::Sequential features;
};

struct Tensors {
  torch::Tensor images;  // uint8 N,C,H,W (a view over the DataSplit's bytes)
  torch::Tensor labels;  // int64 N
};

Tensors View(const ImageSet& s) {
  auto images = torch::from_blob(const_cast<uint8_t*>(s.pixels.data()), {s.count, s.channels, s.height, s.width},
                                 torch::kUInt8);
  auto labels = torch::from_blob(const_cast<uint8_t*>(s.labels.data()), {s.count}, torch::kUInt8).to(torch::kInt64);
  return {images, labels};
}

// The training split's per-channel mean and standard deviation, as broadcastable tensors.
std::pair<torch::Tensor, torch::Tensor> NormalizationTensors(const ImageSet& s) {
  const ChannelStats stats = ComputeChannelStats(s);
  std::vector<float> mean(s.channels), std(s.channels);
  for (int c = 0; c < s.channels; ++c) {
    mean[c] = static_cast<float>(stats.mean[c]);
    std[c] = static_cast<float>(std::max(1e-6, stats.std[c]));
  }
  return {torch::tensor(mean).view({1, s.channels, 1, 1}), torch::tensor(std).view({1, s.channels, 1, 1})};
}

// Random affine transforms (rotation, shear, zoom, shift, flip) of a batch on the [0, 1] scale,
// batched through affine_grid/grid_sample.
torch::Tensor Augment(const torch::Tensor& x, const CnnConfig& c, std::mt19937_64& rng) {
  const int64_t n = x.size(0);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  std::vector<float> theta(n * 6);
  for (int64_t i = 0; i < n; ++i) {
    const double rot = c.aug_rotation * u(rng) * M_PI / 180.0;
    const double shear = c.aug_shear * u(rng) * M_PI / 180.0;
    const double zoom = 1.0 + c.aug_zoom * u(rng);
    const double flip = c.aug_hflip && u(rng) < 0 ? -1.0 : 1.0;
    const double tx = 2 * c.aug_shift * u(rng), ty = 2 * c.aug_shift * u(rng);
    // Output coordinates -> input coordinates: R(rot) * Shear * (1/zoom) * Flip, then shift.
    float* t = &theta[i * 6];
    t[0] = static_cast<float>(flip * std::cos(rot) / zoom);
    t[1] = static_cast<float>(-std::sin(rot + shear) / zoom);
    t[2] = static_cast<float>(tx);
    t[3] = static_cast<float>(flip * std::sin(rot) / zoom);
    t[4] = static_cast<float>(std::cos(rot + shear) / zoom);
    t[5] = static_cast<float>(ty);
  }
  auto th = torch::from_blob(theta.data(), {n, 2, 3}, torch::kFloat32).clone();
  auto grid = F::affine_grid(th, x.sizes(), /*align_corners=*/false);
  auto opts = F::GridSampleFuncOptions().mode(torch::kBilinear).align_corners(false);
  if (c.aug_fill == "nearest") opts.padding_mode(torch::kBorder);
  else if (c.aug_fill == "reflect") opts.padding_mode(torch::kReflection);
  else opts.padding_mode(torch::kZeros);
  return F::grid_sample(x, grid, opts);
}

bool Augments(const CnnConfig& c) {
  return c.aug_rotation > 0 || c.aug_shift > 0 || c.aug_zoom > 0 || c.aug_shear > 0 || c.aug_hflip;
}

struct Eval {
  double accuracy = 0, loss = 0, balanced_accuracy = 0, macro_f1 = 0;
  std::vector<std::vector<int64_t>> confusion;
};

Eval Evaluate(Net& net, const Tensors& t, const torch::Tensor& mean, const torch::Tensor& std, int classes) {
  torch::NoGradGuard no_grad;
  net.eval();
  const int64_t n = t.images.size(0);
  Eval e;
  e.confusion.assign(classes, std::vector<int64_t>(classes, 0));
  auto conf = torch::zeros({classes * classes}, torch::kInt64);
  double loss_sum = 0;
  for (int64_t i = 0; i < n; i += 256) {  // small batches keep the activations' memory low
    const int64_t end = std::min(n, i + 256);
    auto x = (t.images.slice(0, i, end).to(torch::kFloat32).div_(255.0) - mean) / std;
    auto y = t.labels.slice(0, i, end);
    auto logits = net.forward(x);
    loss_sum += F::cross_entropy(logits, y, F::CrossEntropyFuncOptions().reduction(torch::kSum)).item<double>();
    conf += torch::bincount(y * classes + logits.argmax(1), {}, classes * classes);
  }
  net.train();
  auto acc = conf.accessor<int64_t, 1>();
  int64_t correct = 0, present = 0;
  double recall_sum = 0, f1_sum = 0;
  for (int a = 0; a < classes; ++a) {
    int64_t row = 0, col = 0;
    for (int b = 0; b < classes; ++b) {
      e.confusion[a][b] = acc[a * classes + b];
      row += acc[a * classes + b];
      col += acc[b * classes + a];
    }
    const int64_t tp = acc[a * classes + a];
    correct += tp;
    if (row > 0) {
      ++present;
      recall_sum += static_cast<double>(tp) / row;
      f1_sum += 2.0 * tp / static_cast<double>(row + col);
    }
  }
  e.accuracy = static_cast<double>(correct) / std::max<int64_t>(1, n);
  e.loss = loss_sum / std::max<int64_t>(1, n);
  e.balanced_accuracy = recall_sum / std::max<int64_t>(1, present);
  e.macro_f1 = f1_sum / std::max<int64_t>(1, present);
  return e;
}

std::unique_ptr<torch::optim::Optimizer> MakeOptimizer(const CnnConfig& c, Net& net) {
  if (c.optimizer == "sgd") {
    return std::make_unique<torch::optim::SGD>(net.parameters(), torch::optim::SGDOptions(c.learning_rate)
                                                                     .momentum(c.momentum >= 0 ? c.momentum : 0.9)
                                                                     .nesterov(c.nesterov)
                                                                     .weight_decay(c.weight_decay));
  }
  if (c.optimizer == "rmsprop") {
    return std::make_unique<torch::optim::RMSprop>(
        net.parameters(), torch::optim::RMSpropOptions(c.learning_rate)
                              .momentum(c.momentum >= 0 ? c.momentum : 0)
                              .weight_decay(c.weight_decay));
  }
  if (c.optimizer == "adamw") {
    return std::make_unique<torch::optim::AdamW>(
        net.parameters(), torch::optim::AdamWOptions(c.learning_rate).weight_decay(c.weight_decay));
  }
  return std::make_unique<torch::optim::Adam>(net.parameters(),
                                              torch::optim::AdamOptions(c.learning_rate).weight_decay(c.weight_decay));
}

double ScheduledRate(const CnnConfig& c, int epoch, int max_epochs) {  // epoch is 1-based
  const double progress = static_cast<double>(epoch - 1) / std::max(1, max_epochs);
  if (c.lr_schedule == "cosine") return c.learning_rate * 0.5 * (1 + std::cos(M_PI * progress));
  if (c.lr_schedule == "step") return c.learning_rate * (progress >= 0.75 ? 0.01 : progress >= 0.5 ? 0.1 : 1.0);
  return c.learning_rate;
}

// One seed's model, optimizer, random streams and best weights.
struct Execution {
  std::unique_ptr<Net> net;
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  std::mt19937_64 rng;
  std::vector<int64_t> order;
  std::vector<torch::Tensor> best_state;

  void Snapshot() {
    best_state.clear();
    for (const auto& p : net->parameters()) best_state.push_back(p.detach().clone());
    for (const auto& b : net->buffers()) best_state.push_back(b.detach().clone());
  }
  void Restore() {
    torch::NoGradGuard no_grad;
    size_t k = 0;
    for (auto& p : net->parameters()) p.copy_(best_state[k++]);
    for (auto& b : net->buffers()) b.copy_(best_state[k++]);
  }
};

}  // namespace

absl::StatusOr<CnnConfig> CnnConfigFromParams(const std::map<std::string, ParamVariant>& params, uint64_t seed) {
  CnnConfig c;
  c.seed = seed;
  for (const auto& [name, v] : params) {
    bool ok = true;
    if (name == "learning_rate") ok = AsDouble(v, &c.learning_rate) && c.learning_rate > 0;
    else if (name == "momentum") ok = AsDouble(v, &c.momentum) && c.momentum >= 0 && c.momentum < 1;
    else if (name == "weight_decay") ok = AsDouble(v, &c.weight_decay) && c.weight_decay >= 0;
    else if (name == "dropout") ok = AsDouble(v, &c.dropout) && c.dropout >= 0 && c.dropout < 1;
    else if (name == "label_smoothing") ok = AsDouble(v, &c.label_smoothing) && c.label_smoothing >= 0 && c.label_smoothing < 1;
    else if (name == "aug_rotation") ok = AsDouble(v, &c.aug_rotation) && c.aug_rotation >= 0;
    else if (name == "aug_shift") ok = AsDouble(v, &c.aug_shift) && c.aug_shift >= 0;
    else if (name == "aug_zoom") ok = AsDouble(v, &c.aug_zoom) && c.aug_zoom >= 0 && c.aug_zoom < 1;
    else if (name == "aug_shear") ok = AsDouble(v, &c.aug_shear) && c.aug_shear >= 0;
    else if (name == "aug_hflip") ok = AsBool(v, &c.aug_hflip);
    else if (name == "aug_fill") ok = OneOf(v, {"constant", "nearest", "reflect"}, &c.aug_fill);
    else if (name == "optimizer") ok = OneOf(v, {"adam", "adamw", "rmsprop", "sgd"}, &c.optimizer);
    else if (name == "nesterov") ok = AsBool(v, &c.nesterov);
    else if (name == "lr_schedule") ok = OneOf(v, {"constant", "cosine", "step"}, &c.lr_schedule);
    else if (name == "activation") ok = OneOf(v, {"relu", "elu", "gelu"}, &c.activation);
    else if (name == "global_pooling") ok = OneOf(v, {"flatten", "average"}, &c.global_pooling);
    else if (name == "class_weighting") ok = OneOf(v, {"none", "inverse", "sqrt_inverse"}, &c.class_weighting);
    else if (name == "sampling") ok = OneOf(v, {"shuffle", "balanced"}, &c.sampling);
    else if (name == "batch_size") ok = AsInt(v, &c.batch_size) && c.batch_size >= 1;
    else if (name == "conv_blocks") ok = AsInt(v, &c.conv_blocks) && c.conv_blocks >= 1;
    else if (name == "filters") ok = AsInt(v, &c.filters) && c.filters >= 1;
    else if (name == "kernel_size") ok = AsInt(v, &c.kernel_size) && c.kernel_size >= 1;
    else if (name == "dense_units") ok = AsInt(v, &c.dense_units) && c.dense_units >= 0;
    else if (name == "patience") ok = AsInt(v, &c.patience) && c.patience >= 0;
    else if (name == "batch_norm") ok = AsBool(v, &c.batch_norm);
    else return absl::InvalidArgumentError(absl::StrCat("the cnn task has no parameter \"", name, "\""));
    if (!ok) return WrongType(name, "a valid value (see README, \"The cnn task\")");
  }
  return c;
}

uint64_t TrialSeed(int64_t study_id, int64_t trial_number, int64_t training_seed) {
  return 0x9E3779B97F4A7C15ULL * static_cast<uint64_t>(study_id + 1) + static_cast<uint64_t>(trial_number) +
         0xBF58476D1CE4E5B9ULL * static_cast<uint64_t>(training_seed);
}

void KeepFreedBuffers() {
  mallopt(M_MMAP_THRESHOLD, 256 << 20);
  mallopt(M_TRIM_THRESHOLD, 512 << 20);
}

absl::StatusOr<TrainResult> TrainCnn(const CnnConfig& config, const DataSplit& data, const TrainOptions& options,
                                     const std::function<bool(const EpochReport&)>& on_epoch,
                                     const std::function<bool()>& cancelled) {
  try {
    const Tensors train = View(data.train), val = View(data.val), test = View(data.test);
    const int classes = std::max({data.train.num_classes, data.val.num_classes, data.test.num_classes});
    const auto [mean, std] = NormalizationTensors(data.train);
    const int64_t n_train = train.images.size(0);
    if (n_train == 0) return absl::InvalidArgumentError("the training split is empty");

    // Class counts of the training split: loss weights and balanced sampling.
    std::vector<int64_t> counts(classes, 0);
    std::vector<std::vector<int64_t>> by_class(classes);
    for (int64_t i = 0; i < n_train; ++i) {
      ++counts[data.train.labels[i]];
      by_class[data.train.labels[i]].push_back(i);
    }
    torch::Tensor class_weights;
    if (config.class_weighting != "none") {
      std::vector<float> w(classes, 0.0f);
      int present = 0;
      double sum = 0;
      for (int c = 0; c < classes; ++c) {
        if (counts[c] == 0) continue;
        double v = static_cast<double>(n_train) / (classes * counts[c]);
        if (config.class_weighting == "sqrt_inverse") v = std::sqrt(v);
        w[c] = static_cast<float>(v);
        sum += v;
        ++present;
      }
      for (float& v : w) v = static_cast<float>(v * present / sum);  // mean weight 1 over present classes
      class_weights = torch::tensor(w);
    }
    auto loss_options = F::CrossEntropyFuncOptions().label_smoothing(config.label_smoothing);
    if (class_weights.defined()) loss_options.weight(class_weights);

    const int runs = std::max(1, options.executions);
    std::vector<Execution> ex(runs);
    for (int r = 0; r < runs; ++r) {
      const uint64_t seed = config.seed + 0x9E3779B97F4A7C15ULL * static_cast<uint64_t>(r);
      torch::manual_seed(seed);
      ex[r].net = std::make_unique<Net>(config, data.train);
      ex[r].optimizer = MakeOptimizer(config, *ex[r].net);
      ex[r].rng.seed(seed ^ 0x5DEECE66DULL);
      ex[r].order.resize(n_train);
      std::iota(ex[r].order.begin(), ex[r].order.end(), 0);
    }
    const bool augment = Augments(config);

    TrainResult result;
    int since_best = 0;
    for (int epoch = 1; epoch <= options.max_epochs; ++epoch) {
      const auto t0 = std::chrono::steady_clock::now();
      const double lr = ScheduledRate(config, epoch, options.max_epochs);
      // A partial epoch trains on the first n_epoch images of this epoch's shuffled order: a fresh random
      // subset.
      const int64_t n_epoch =
          epoch <= static_cast<int>(options.partial_epochs.size())
              ? std::clamp<int64_t>(
                    static_cast<int64_t>(std::ceil(options.partial_epochs[epoch - 1] * n_train)), 1, n_train)
              : n_train;
      double train_seconds = 0, loss_sum = 0;
      int64_t correct = 0, seen = 0, finite_seen = 0, batches = 0, nonfinite_batches = 0;
      auto class_hits = torch::zeros({classes}, torch::kInt64), class_seen = torch::zeros({classes}, torch::kInt64);
      std::vector<Eval> evals;
      for (Execution& e : ex) {
        for (auto& group : e.optimizer->param_groups()) group.options().set_lr(lr);
        std::vector<int64_t>& order = e.order;
        if (config.sampling == "balanced") {
          // Each draw: a class uniformly (among those present), then one of its images.
          std::vector<int> present;
          for (int c = 0; c < classes; ++c) if (!by_class[c].empty()) present.push_back(c);
          for (int64_t& i : order) {
            const auto& pool = by_class[present[e.rng() % present.size()]];
            i = pool[e.rng() % pool.size()];
          }
        } else {
          for (int64_t i = n_train - 1; i > 0; --i) std::swap(order[i], order[e.rng() % static_cast<uint64_t>(i + 1)]);
        }
        auto perm = torch::from_blob(order.data(), {n_train}, torch::kInt64);
        const auto ts = std::chrono::steady_clock::now();
        for (int64_t i = 0; i < n_epoch; i += config.batch_size) {
          if (cancelled()) return absl::CancelledError("training cancelled");
          auto idx = perm.slice(0, i, std::min<int64_t>(i + config.batch_size, n_epoch));
          auto x = train.images.index_select(0, idx).to(torch::kFloat32).div_(255.0);
          if (augment) x = Augment(x, config, e.rng);
          x = (x - mean) / std;
          auto y = train.labels.index_select(0, idx);
          e.optimizer->zero_grad();
          auto logits = e.net->forward(x);
          auto loss = F::cross_entropy(logits, y, loss_options);
          loss.backward();
          e.optimizer->step();
          const double batch_loss = loss.item<double>();
          ++batches;
          if (std::isfinite(batch_loss)) {
            loss_sum += batch_loss * idx.size(0);
            finite_seen += idx.size(0);
          } else {
            ++nonfinite_batches;
          }
          const auto hit = logits.argmax(1).eq(y);
          correct += hit.sum().item<int64_t>();
          class_hits.index_add_(0, y, hit.to(torch::kInt64));
          class_seen.index_add_(0, y, torch::ones_like(y));
          seen += idx.size(0);
        }
        train_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - ts).count();
        evals.push_back(Evaluate(*e.net, val, mean, std, classes));
      }
      EpochReport r;
      r.epoch = epoch;
      for (const Eval& v : evals) {
        r.val_accuracy += v.accuracy / runs;
        r.val_loss += v.loss / runs;
        r.val_balanced_accuracy += v.balanced_accuracy / runs;
        r.val_macro_f1 += v.macro_f1 / runs;
      }
      for (const Eval& v : evals) r.val_accuracy_std += (v.accuracy - r.val_accuracy) * (v.accuracy - r.val_accuracy);
      r.val_accuracy_std = runs > 1 ? std::sqrt(r.val_accuracy_std / (runs - 1)) : 0.0;
      r.train_accuracy = static_cast<double>(correct) / std::max<int64_t>(1, seen);
      r.train_loss = finite_seen > 0 ? loss_sum / finite_seen : std::nan("");
      r.train_nonfinite_fraction = static_cast<double>(nonfinite_batches) / std::max<int64_t>(1, batches);
      r.learning_rate = lr;
      r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      r.train_images_per_second = seen / std::max(1e-9, train_seconds);
      r.train_images = n_epoch;
      result.epochs_run = epoch;

      const double value = options.metric == "val_loss"                ? r.val_loss
                           : options.metric == "val_balanced_accuracy" ? r.val_balanced_accuracy
                           : options.metric == "val_macro_f1"          ? r.val_macro_f1
                                                                       : r.val_accuracy;
      const bool improved = epoch == 1 || (options.minimize ? value < result.best_value : value > result.best_value);
      if (improved) {
        result.best_value = value;
        result.best_epoch = epoch;
        since_best = 0;
        for (Execution& e : ex) e.Snapshot();
        result.train_recall.assign(classes, 0.0);
        for (int c = 0; c < classes; ++c) {
          const int64_t n = class_seen[c].item<int64_t>();
          result.train_recall[c] = n > 0 ? static_cast<double>(class_hits[c].item<int64_t>()) / n : 0.0;
        }
        result.confusion.assign(classes, std::vector<int64_t>(classes, 0));
        for (const Eval& v : evals) {
          for (int a = 0; a < classes; ++a)
            for (int b = 0; b < classes; ++b) result.confusion[a][b] += v.confusion[a][b];
        }
      } else {
        ++since_best;
      }
      if (!on_epoch(r)) {
        result.stopped_early = true;
        return result;
      }
      if (config.patience > 0 && since_best >= config.patience) {
        result.patience_stop = true;
        break;
      }
      if (batches > 0 && nonfinite_batches == batches) {  // NaN weights: more epochs cannot change anything
        result.diverged_stop = true;
        break;
      }
    }
    result.val_recall.assign(classes, 0.0);
    for (int a = 0; a < classes; ++a) {
      int64_t row = 0;
      for (int b = 0; b < classes; ++b) row += result.confusion[a][b];
      result.val_recall[a] = row > 0 ? static_cast<double>(result.confusion[a][a]) / row : 0.0;
    }
    result.test_accuracy = result.test_loss = 0;
    for (Execution& e : ex) {
      if (data.test.count == 0) break;  // an image folder without test/: no test accuracy
      e.Restore();
      const Eval t = Evaluate(*e.net, test, mean, std, classes);
      result.test_accuracy += t.accuracy / runs;
      result.test_loss += t.loss / runs;
    }
    return result;
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("LibTorch error: ", e.what_without_backtrace()));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("training error: ", e.what()));
  }
}

}  // namespace hpo::worker
