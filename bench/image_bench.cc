// hpo-image-bench: what image folders cost the worker.
//   --mode=decode      decode + resize every file listed in --files (bytes preloaded, so no disk
//                      time on either side), --rounds times; prints images per second.
//   --mode=first_step  the time to the first training step of a trial on --data_root/--dataset:
//                      from process start (LibTorch's set-up included), and from the trial's start
//                      (the data load), which is what a worker's later trials wait; run it twice, the
//                      first run decodes and writes the decoded-image cache, the second maps it.
// Driven by bench/image_bench.py, which runs Pillow on the same files in the same run.
#include <chrono>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "worker/data/dataset.h"
#include "worker/data/image_decode.h"
#include "worker/train/trainer.h"

ABSL_FLAG(std::string, mode, "decode", "decode | first_step");
ABSL_FLAG(std::string, files, "", "decode: a text file with one image path a line");
ABSL_FLAG(int, height, 28, "decode: target height");
ABSL_FLAG(int, width, 28, "decode: target width");
ABSL_FLAG(int, channels, 1, "decode: 1 or 3");
ABSL_FLAG(std::string, resize, "stretch", "decode: stretch | pad | crop");
ABSL_FLAG(int, rounds, 3, "decode: passes over the files (the best one is reported)");
ABSL_FLAG(int, threads, 1, "decoding threads (decode) / LibTorch and decoding threads (first_step)");
ABSL_FLAG(std::string, data_root, "", "first_step: the data root");
ABSL_FLAG(std::string, dataset, "", "first_step: the image folder's name");
ABSL_FLAG(std::string, cache_dir, "", "first_step: the decoded-image cache");
ABSL_FLAG(int, val, 0, "first_step: val_examples (0: default)");

namespace {

const auto kStart = std::chrono::steady_clock::now();
double Since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

int Decode() {
  std::vector<std::string> blobs;
  std::ifstream list(absl::GetFlag(FLAGS_files));
  for (std::string path; std::getline(list, path);) {
    if (path.empty()) continue;
    auto bytes = hpo::worker::ReadWholeFile(path);
    if (!bytes.ok()) {
      std::cerr << bytes.status() << "\n";
      return 1;
    }
    blobs.push_back(std::move(*bytes));
  }
  const int h = absl::GetFlag(FLAGS_height), w = absl::GetFlag(FLAGS_width), c = absl::GetFlag(FLAGS_channels);
  const auto mode = hpo::worker::ParseResizeMode(absl::GetFlag(FLAGS_resize));
  const int threads = std::max(1, absl::GetFlag(FLAGS_threads));
  if (blobs.empty() || !mode) {
    std::cerr << "no files, or a bad --resize\n";
    return 1;
  }
  std::vector<uint8_t> out(blobs.size() * c * h * w);
  double best = 1e30;
  int failed = 0;
  for (int r = 0; r < absl::GetFlag(FLAGS_rounds); ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    std::atomic<size_t> next{0};
    std::atomic<int> bad{0};
    auto body = [&] {
      for (size_t i; (i = next.fetch_add(1)) < blobs.size();) {
        const auto* p = reinterpret_cast<const uint8_t*>(blobs[i].data());
        if (!hpo::worker::DecodeImage(p, blobs[i].size(), h, w, c, *mode, out.data() + i * c * h * w).ok()) ++bad;
      }
    };
    std::vector<std::thread> pool;
    for (int t = 1; t < threads; ++t) pool.emplace_back(body);
    body();
    for (auto& t : pool) t.join();
    best = std::min(best, Since(t0));
    failed = bad;
  }
  nlohmann::json j = {{"images", blobs.size()}, {"failed", failed}, {"threads", threads}, {"seconds", best},
                      {"images_per_second", blobs.size() / best}};
  std::cout << j.dump() << "\n";
  return failed == 0 ? 0 : 1;
}

int FirstStep() {
  const int threads = std::max(1, absl::GetFlag(FLAGS_threads));
  torch::set_num_threads(threads);
  torch::set_num_interop_threads(1);
  const auto trial_start = std::chrono::steady_clock::now();  // what a worker's later trial sees from here
  hpo::worker::SplitOptions o;
  o.threads = threads;
  o.cache_dir = absl::GetFlag(FLAGS_cache_dir);
  o.val_examples = absl::GetFlag(FLAGS_val);
  auto data = hpo::worker::LoadSplit(absl::GetFlag(FLAGS_data_root), absl::GetFlag(FLAGS_dataset), o);
  if (!data.ok()) {
    std::cerr << data.status() << "\n";
    return 1;
  }
  const double loaded = Since(kStart);
  auto config = hpo::worker::CnnConfigFromParams({}, 1);
  double first_step = -1, trial_first_step = -1;
  int calls = 0;
  hpo::worker::TrainOptions to;
  to.max_epochs = 1;
  auto r = hpo::worker::TrainCnn(
      *config, **data, to, [](const hpo::worker::EpochReport&) { return false; },
      [&] {
        // Called before each batch: the second call comes right after the first step.
        if (++calls == 2) first_step = Since(kStart), trial_first_step = Since(trial_start);
        return calls >= 2;
      });
  if (first_step < 0) {
    std::cerr << "training did not take a step: " << r.status() << "\n";
    return 1;
  }
  nlohmann::json j = {{"train_images", (*data)->train.count}, {"from_cache", (*data)->from_cache},
                      {"seconds_to_loaded", loaded}, {"seconds_to_first_step", first_step},
                      {"trial_seconds_to_first_step", trial_first_step}};
  std::cout << j.dump() << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const std::string mode = absl::GetFlag(FLAGS_mode);
  if (mode == "decode") return Decode();
  if (mode == "first_step") return FirstStep();
  std::cerr << "--mode must be decode or first_step\n";
  return 2;
}
