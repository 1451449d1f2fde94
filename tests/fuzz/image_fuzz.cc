// libFuzzer target: the worker's JPEG/PNG decoding (worker/data/image_decode.h) on arbitrary bytes.
// The first byte picks the target shape, channels and resize mode; the rest is the file.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "worker/data/image_decode.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t pick = data[0];
  ++data, --size;
  const int channels = (pick & 1) ? 3 : 1;
  const int height = 1 + (pick >> 1 & 7) * 5, width = 1 + (pick >> 4 & 7) * 7;
  const auto mode = static_cast<hpo::worker::ResizeMode>((pick >> 7) + (pick % 3 == 0));
  (void)hpo::worker::ReadImageHeader(data, size);
  std::vector<uint8_t> out(static_cast<size_t>(channels) * height * width);
  (void)hpo::worker::DecodeImage(data, size, height, width, channels, mode, out.data());
  return 0;
}
