#include "worker/train/pool_ops.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <limits>

namespace hpo::worker {
namespace {

struct Result {
  torch::Tensor y, grad;
};

Result Pool(const torch::Tensor& x0, const torch::Tensor& upstream, bool relu, bool ours) {
  torch::Tensor x = x0.clone().requires_grad_(true);
  torch::Tensor y = ours ? FastMaxPool2x2(x, relu) : torch::max_pool2d(x, 2);
  if (!ours && relu) y = torch::relu(y);
  (y * upstream).sum().backward();
  return {y.detach(), x.grad()};
}

// Values and input gradients equal LibTorch's relu(max_pool2d(x, 2)) and max_pool2d(x, 2), for even
// and odd sizes (floor pooling drops the last row / column) and for ties (integer-valued inputs,
// where the first maximum in row-major order takes the gradient, and zeros meet the ReLU).
TEST(MaxPool2x2Test, MatchesLibTorchValuesAndGradients) {
  torch::manual_seed(3);
  for (bool relu : {true, false}) {
    for (auto shape : {std::vector<int64_t>{2, 3, 8, 8}, {3, 2, 7, 9}, {1, 1, 2, 3}, {4, 5, 28, 28}}) {
      for (bool ties : {false, true}) {
        torch::Tensor x = ties ? torch::randint(-2, 3, shape).to(torch::kFloat) : torch::randn(shape);
        torch::Tensor upstream = torch::randn({shape[0], shape[1], shape[2] / 2, shape[3] / 2});
        Result want = Pool(x, upstream, relu, false), got = Pool(x, upstream, relu, true);
        SCOPED_TRACE(::testing::Message() << "relu " << relu << " ties " << ties << " shape " << x.sizes());
        ASSERT_EQ(got.y.sizes(), want.y.sizes());
        EXPECT_TRUE(torch::equal(got.y, want.y));
        EXPECT_TRUE(torch::equal(got.grad, want.grad));
      }
    }
  }
}

TEST(MaxPool2x2Test, PropagatesNaNLikeLibTorch) {
  // Width 4 goes through the scalar path, width 10 through the 4-wide one (with an overlapping tail).
  for (int64_t width : {4, 10}) {
    torch::Tensor x = torch::randn({1, 2, 4, width});
    x[0][0][1][1] = std::numeric_limits<float>::quiet_NaN();
    x[0][1][2][width - 1] = std::numeric_limits<float>::quiet_NaN();
    x[0][1][0][0] = -std::numeric_limits<float>::infinity();
    for (bool relu : {true, false}) {
      torch::Tensor y = FastMaxPool2x2(x, relu);
      SCOPED_TRACE(::testing::Message() << "relu " << relu << " width " << width);
      EXPECT_TRUE(std::isnan(y[0][0][0][0].item<float>()));
      EXPECT_TRUE(std::isnan(y[0][1][1][width / 2 - 1].item<float>()));
      EXPECT_EQ(torch::isnan(y).sum().item<int64_t>(), 2);
    }
  }
}

TEST(MaxPool2x2Test, NonFloatInputFallsBackToLibTorch) {
  torch::Tensor x = torch::randn({2, 3, 6, 5}, torch::kDouble);
  EXPECT_TRUE(torch::equal(FastMaxPool2x2(x, true), torch::relu(torch::max_pool2d(x, 2))));
  torch::Tensor cl = torch::randn({2, 3, 6, 6}).contiguous(torch::MemoryFormat::ChannelsLast);
  EXPECT_TRUE(torch::equal(FastMaxPool2x2(cl, false), torch::max_pool2d(cl.contiguous(), 2)));
}

}  // namespace
}  // namespace hpo::worker
