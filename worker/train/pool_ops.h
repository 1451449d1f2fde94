// 2x2 max pooling (stride 2, floor), optionally with the ReLU after it, as one autograd op.
//
// LibTorch 1.13's max_pool2d on CPU stores an int64 index per output, runs a scalar loop per
// window and needs a zero-fill plus a scatter in backward; on the anchor's CNN it took ~30% of a
// training step. This op keeps a one-byte window position per output (or "no gradient" where the
// ReLU clamps) and writes the whole input gradient in one pass.
#pragma once

#include <torch/torch.h>

namespace hpo::worker {

// Same values and gradients as relu(max_pool2d(x, 2)) (relu = true) or max_pool2d(x, 2), NaN
// included, for a 4-D float tensor; other inputs go to LibTorch's own ops.
torch::Tensor FastMaxPool2x2(const torch::Tensor& x, bool relu);

class MaxPool2x2Impl : public torch::nn::Module {
 public:
  explicit MaxPool2x2Impl(bool relu) : relu_(relu) {}
  torch::Tensor forward(const torch::Tensor& x) { return FastMaxPool2x2(x, relu_); }

 private:
  bool relu_;
};
TORCH_MODULE(MaxPool2x2);

}  // namespace hpo::worker
