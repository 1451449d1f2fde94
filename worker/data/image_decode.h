// Decoding one JPEG or PNG file to a fixed-size uint8 image: TurboJPEG (with
// its scaled IDCT) for JPEG, libspng for PNG, then an antialiased resize.
// Thread-safe; each thread keeps its own decoder handles. No LibTorch here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace hpo::worker {

// How an image whose aspect ratio differs from the target's is fitted.
enum class ResizeMode {
  kStretch,  // scale each axis independently (Keras' and torchvision's Resize((h, w)))
  kPad,      // scale to fit inside, keep the aspect ratio, pad the rest with black
  kCrop,     // scale to cover, keep the aspect ratio, cut the centre
};
std::optional<ResizeMode> ParseResizeMode(std::string_view name);  // "stretch", "pad", "crop"

// Images with more pixels than this are refused from their header, before any
// decoding (a decompression bomb: a small file that decodes to gigabytes).
inline constexpr int64_t kMaxImagePixels = 40'000'000;
// Files larger than this are refused before they are read.
inline constexpr int64_t kMaxImageFileBytes = int64_t{256} << 20;

struct ImageHeader {
  int width = 0, height = 0;
  bool colour = false;       // stored in colour (RGB, YCbCr, palette); false: grayscale
  const char* format = "";   // "jpeg" or "png"
};

// Reads the header only. kInvalidArgument: not a JPEG or PNG file (by its
// signature) or over kMaxImagePixels; kDataLoss: a JPEG/PNG whose header is corrupt.
[[nodiscard]] absl::StatusOr<ImageHeader> ReadImageHeader(const uint8_t* data, size_t size);

// Decodes `data` and resizes it to `height` x `width` with `channels` (1: luma;
// 3: RGB; alpha is dropped, as PIL's convert("RGB") does), written planar (CHW)
// to `out` (channels * height * width bytes). Errors as ReadImageHeader, plus
// kDataLoss for a truncated or corrupt image (nothing partial is kept).
[[nodiscard]] absl::Status DecodeImage(const uint8_t* data, size_t size, int height, int width, int channels,
                                       ResizeMode mode, uint8_t* out);

// Reads a whole file (at most kMaxImageFileBytes). kNotFound / kPermissionDenied /
// kInvalidArgument (too large) / kDataLoss (read error) with the path in the message.
[[nodiscard]] absl::StatusOr<std::string> ReadWholeFile(const std::string& path);

}  // namespace hpo::worker
