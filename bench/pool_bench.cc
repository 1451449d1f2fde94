// hpo-pool-bench: hpo's fused 2x2 max-pool + ReLU op (worker/train/pool_ops.h) against LibTorch's
// relu(max_pool2d(x, 2)), alternately, on the anchor CNN's two pooled feature maps at batch 128.
// Prints the median time of forward and of forward + backward for both, and their ratios.
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "worker/train/pool_ops.h"
#include "worker/train/trainer.h"

ABSL_FLAG(int, threads, 2, "LibTorch threads");
ABSL_FLAG(int, reps, 30, "timed repetitions of each (after 3 warm-up runs)");

namespace {

template <typename F>
double MedianMs(F&& f, int reps) {
  for (int i = 0; i < 3; ++i) f();
  std::vector<double> ms;
  for (int i = 0; i < reps; ++i) {
    const auto t = std::chrono::steady_clock::now();
    f();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count());
  }
  std::nth_element(ms.begin(), ms.begin() + ms.size() / 2, ms.end());
  return ms[ms.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  torch::set_num_threads(absl::GetFlag(FLAGS_threads));
  hpo::worker::KeepFreedBuffers();  // as hpo-worker does
  const int reps = absl::GetFlag(FLAGS_reps);
  std::printf("%d threads, median of %d runs\n", absl::GetFlag(FLAGS_threads), reps);
  std::printf("| input | hpo fwd ms | LibTorch fwd ms | ratio | hpo fwd+bwd ms | LibTorch fwd+bwd ms | ratio |\n");
  std::printf("|---|---|---|---|---|---|---|\n");
  torch::manual_seed(0);
  for (const auto& shape : {std::vector<int64_t>{128, 32, 28, 28}, {128, 64, 14, 14}}) {
    const torch::Tensor x = torch::randn(shape);
    const torch::Tensor xg = x.clone().requires_grad_(true);
    const torch::Tensor up = torch::randn({shape[0], shape[1], shape[2] / 2, shape[3] / 2});
    auto ours = [&](const torch::Tensor& in) { return hpo::worker::FastMaxPool2x2(in, /*relu=*/true); };
    auto theirs = [&](const torch::Tensor& in) { return torch::relu(torch::max_pool2d(in, 2)); };
    const double of = MedianMs([&] { torch::NoGradGuard g; ours(x); }, reps);
    const double tf = MedianMs([&] { torch::NoGradGuard g; theirs(x); }, reps);
    const double ob = MedianMs([&] { xg.mutable_grad() = torch::Tensor(); ours(xg).backward(up); }, reps);
    const double tb = MedianMs([&] { xg.mutable_grad() = torch::Tensor(); theirs(xg).backward(up); }, reps);
    std::printf("| %ldx%ldx%ldx%ld | %.2f | %.2f | %.1fx | %.2f | %.2f | %.1fx |\n", shape[0], shape[1], shape[2],
                shape[3], of, tf, tf / of, ob, tb, tb / ob);
  }
  return 0;
}
