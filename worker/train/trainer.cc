#include "worker/train/trainer.h"

#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <numeric>
#include <random>

#include "absl/strings/str_cat.h"

namespace hpo::worker {
namespace {

absl::Status WrongType(const std::string& name, const char* want) {
  return absl::InvalidArgumentError(absl::StrCat("parameter ", name, " must be ", want));
}

// Numbers of either JSON kind.
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
      features->push_back(torch::nn::ReLU());
      if (h >= 2 && w >= 2) {  // never pool a feature map below 1x1
        features->push_back(torch::nn::MaxPool2d(torch::nn::MaxPool2dOptions(2)));
        h /= 2;
        w /= 2;
      }
      channels = out;
    }
    features->push_back(torch::nn::Flatten());
    if (c.dropout > 0) features->push_back(torch::nn::Dropout(c.dropout));
    int64_t in = static_cast<int64_t>(channels) * h * w;
    if (c.dense_units > 0) {
      features->push_back(torch::nn::Linear(in, c.dense_units));
      features->push_back(torch::nn::ReLU());
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
  auto images = torch::from_blob(const_cast<uint8_t*>(s.pixels.data()),
                                 {s.count, s.channels, s.height, s.width}, torch::kUInt8);
  auto labels = torch::from_blob(const_cast<uint8_t*>(s.labels.data()), {s.count}, torch::kUInt8)
                    .to(torch::kInt64);
  return {images, labels};
}

torch::Tensor Normalize(const torch::Tensor& bytes, double mean, double std) {
  return (bytes.to(torch::kFloat32).div_(255.0).sub_(mean)).div_(std);
}

// Accuracy and mean loss over `t`, in batches, without gradients.
std::pair<double, double> Evaluate(Net& net, const Tensors& t, double mean, double std) {
  torch::NoGradGuard no_grad;
  net.eval();
  const int64_t n = t.images.size(0);
  int64_t correct = 0;
  double loss_sum = 0;
  for (int64_t i = 0; i < n; i += 1000) {
    const int64_t end = std::min(n, i + 1000);
    auto x = Normalize(t.images.slice(0, i, end), mean, std);
    auto y = t.labels.slice(0, i, end);
    auto logits = net.forward(x);
    loss_sum += torch::nn::functional::cross_entropy(
                    logits, y, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
                    .item<double>();
    correct += logits.argmax(1).eq(y).sum().item<int64_t>();
  }
  net.train();
  return {static_cast<double>(correct) / n, loss_sum / n};
}

std::unique_ptr<torch::optim::Optimizer> MakeOptimizer(const CnnConfig& c, Net& net) {
  if (c.optimizer == "sgd") {
    return std::make_unique<torch::optim::SGD>(
        net.parameters(), torch::optim::SGDOptions(c.learning_rate)
                              .momentum(c.momentum >= 0 ? c.momentum : 0.9)
                              .weight_decay(c.weight_decay));
  }
  if (c.optimizer == "rmsprop") {
    return std::make_unique<torch::optim::RMSprop>(
        net.parameters(), torch::optim::RMSpropOptions(c.learning_rate)
                              .momentum(c.momentum >= 0 ? c.momentum : 0)
                              .weight_decay(c.weight_decay));
  }
  return std::make_unique<torch::optim::Adam>(
      net.parameters(), torch::optim::AdamOptions(c.learning_rate).weight_decay(c.weight_decay));
}

}  // namespace

absl::StatusOr<CnnConfig> CnnConfigFromParams(const std::map<std::string, ParamVariant>& params,
                                              uint64_t seed) {
  CnnConfig c;
  c.seed = seed;
  for (const auto& [name, v] : params) {
    if (name == "learning_rate") {
      if (!AsDouble(v, &c.learning_rate) || !(c.learning_rate > 0)) return WrongType(name, "a positive number");
    } else if (name == "momentum") {
      if (!AsDouble(v, &c.momentum) || c.momentum < 0 || c.momentum >= 1) return WrongType(name, "in [0, 1)");
    } else if (name == "weight_decay") {
      if (!AsDouble(v, &c.weight_decay) || c.weight_decay < 0) return WrongType(name, "a number >= 0");
    } else if (name == "dropout") {
      if (!AsDouble(v, &c.dropout) || c.dropout < 0 || c.dropout >= 1) return WrongType(name, "in [0, 1)");
    } else if (name == "optimizer") {
      auto* s = std::get_if<std::string>(&v);
      if (!s || (*s != "adam" && *s != "rmsprop" && *s != "sgd")) return WrongType(name, "adam, rmsprop or sgd");
      c.optimizer = *s;
    } else if (name == "batch_size") {
      if (!AsInt(v, &c.batch_size) || c.batch_size < 1) return WrongType(name, "a positive integer");
    } else if (name == "conv_blocks") {
      if (!AsInt(v, &c.conv_blocks) || c.conv_blocks < 1) return WrongType(name, "a positive integer");
    } else if (name == "filters") {
      if (!AsInt(v, &c.filters) || c.filters < 1) return WrongType(name, "a positive integer");
    } else if (name == "kernel_size") {
      if (!AsInt(v, &c.kernel_size) || c.kernel_size < 1) return WrongType(name, "a positive integer");
    } else if (name == "dense_units") {
      if (!AsInt(v, &c.dense_units) || c.dense_units < 0) return WrongType(name, "an integer >= 0");
    } else if (name == "batch_norm") {
      if (auto* b = std::get_if<bool>(&v)) c.batch_norm = *b;
      else if (auto* i = std::get_if<int64_t>(&v)) c.batch_norm = *i != 0;
      else return WrongType(name, "true or false");
    } else {
      return absl::InvalidArgumentError(absl::StrCat("the cnn task has no parameter \"", name, "\""));
    }
  }
  return c;
}

absl::StatusOr<TrainResult> TrainCnn(const CnnConfig& config, const DataSplit& data, int max_epochs,
                                     const std::function<bool(const EpochReport&)>& on_epoch,
                                     const std::function<bool()>& cancelled) {
  try {
    torch::manual_seed(config.seed);
    Net net(config, data.train);
    auto optimizer = MakeOptimizer(config, net);
    const Tensors train = View(data.train), val = View(data.val), test = View(data.test);
    // Normalization from the training split only.
    double sum = 0, sum_sq = 0;
    for (uint8_t p : data.train.pixels) {
      sum += p;
      sum_sq += static_cast<double>(p) * p;
    }
    const double n_px = std::max<double>(1, data.train.pixels.size());
    const double mean = sum / n_px / 255.0;
    const double std = std::max(1e-6, std::sqrt(std::max(0.0, sum_sq / n_px / 65025.0 - mean * mean)));

    TrainResult result;
    std::vector<torch::Tensor> best_state;
    std::mt19937_64 rng(config.seed ^ 0x5DEECE66DULL);
    std::vector<int64_t> order(train.images.size(0));
    std::iota(order.begin(), order.end(), 0);
    for (int epoch = 1; epoch <= max_epochs; ++epoch) {
      const auto t0 = std::chrono::steady_clock::now();
      for (int64_t i = static_cast<int64_t>(order.size()) - 1; i > 0; --i) {
        std::swap(order[i], order[rng() % static_cast<uint64_t>(i + 1)]);
      }
      auto perm = torch::from_blob(order.data(), {static_cast<int64_t>(order.size())}, torch::kInt64);
      double loss_sum = 0;
      int64_t correct = 0, seen = 0;
      for (int64_t i = 0; i < static_cast<int64_t>(order.size()); i += config.batch_size) {
        if (cancelled()) return absl::CancelledError("training cancelled");
        auto idx = perm.slice(0, i, std::min<int64_t>(i + config.batch_size, order.size()));
        auto x = Normalize(train.images.index_select(0, idx), mean, std);
        auto y = train.labels.index_select(0, idx);
        optimizer->zero_grad();
        auto logits = net.forward(x);
        auto loss = torch::nn::functional::cross_entropy(logits, y);
        loss.backward();
        optimizer->step();
        loss_sum += loss.item<double>() * idx.size(0);
        correct += logits.argmax(1).eq(y).sum().item<int64_t>();
        seen += idx.size(0);
      }
      const double train_seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      auto [val_acc, val_loss] = Evaluate(net, val, mean, std);
      EpochReport r;
      r.epoch = epoch;
      r.val_accuracy = val_acc;
      r.val_loss = val_loss;
      r.train_accuracy = static_cast<double>(correct) / std::max<int64_t>(1, seen);
      r.train_loss = loss_sum / std::max<int64_t>(1, seen);
      r.learning_rate = config.learning_rate;
      r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      r.train_images_per_second = seen / std::max(1e-9, train_seconds);
      result.epochs_run = epoch;
      if (epoch == 1 || val_acc > result.best_val_accuracy) {
        result.best_val_accuracy = val_acc;
        result.best_epoch = epoch;
        best_state.clear();
        for (const auto& p : net.parameters()) best_state.push_back(p.detach().clone());
        for (const auto& b : net.buffers()) best_state.push_back(b.detach().clone());
      }
      if (!on_epoch(r)) {
        result.stopped_early = true;
        return result;
      }
    }
    {
      torch::NoGradGuard no_grad;
      size_t k = 0;
      for (auto& p : net.parameters()) p.copy_(best_state[k++]);
      for (auto& b : net.buffers()) b.copy_(best_state[k++]);
    }
    auto [test_acc, test_loss] = Evaluate(net, test, mean, std);
    result.test_accuracy = test_acc;
    result.test_loss = test_loss;
    return result;
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("LibTorch error: ", e.what_without_backtrace()));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("training error: ", e.what()));
  }
}

}  // namespace hpo::worker
