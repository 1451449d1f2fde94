#include "proto/common/grpc_status.h"

#include <gtest/gtest.h>

namespace hpo {
namespace {

TEST(GrpcStatusTest, EveryCodeRoundTripsWithItsMessage) {
  for (int code = 0; code <= 16; ++code) {
    absl::Status s(static_cast<absl::StatusCode>(code), code == 0 ? "" : "what to fix");
    grpc::Status g = ToGrpcStatus(s);
    EXPECT_EQ(static_cast<int>(g.error_code()), code);
    absl::Status back = FromGrpcStatus(g);
    EXPECT_EQ(back, s);
  }
}

}  // namespace
}  // namespace hpo
