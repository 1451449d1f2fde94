// Writes small JPEG and PNG files for tests, with the same libraries the
// worker decodes with (TurboJPEG, libspng). Test code only.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace hpo::testing {

// `pixels` are interleaved (HWC), `channels` 1 (gray), 2 (gray+alpha), 3 (RGB) or 4 (RGBA).
// `bit_depth` 8 or 16 (16: two bytes per sample, big-endian, as PNG stores them).
// Returns false (and prints why) on failure.
bool WritePng(const std::string& path, int width, int height, int channels, int bit_depth,
              const std::vector<uint8_t>& pixels);
// A palette PNG: `indices` (one byte per pixel) into `palette` (RGB triples, at most 256).
bool WritePalettePng(const std::string& path, int width, int height, const std::vector<uint8_t>& indices,
                     const std::vector<uint8_t>& palette);
// `channels` 1 (grayscale JPEG) or 3 (colour JPEG), interleaved; quality 1..100.
bool WriteJpeg(const std::string& path, int width, int height, int channels, const std::vector<uint8_t>& pixels,
               int quality = 90);

}  // namespace hpo::testing
