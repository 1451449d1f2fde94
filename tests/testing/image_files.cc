#include "tests/testing/image_files.h"

#include <spng.h>
#include <turbojpeg.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>

namespace hpo::testing {
namespace {

bool WriteBytes(const std::string& path, const void* data, size_t size) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(static_cast<const char*>(data), static_cast<std::streamsize>(size));
  out.close();
  if (!out) {
    std::cerr << "image_files: cannot write " << path << "\n";
    return false;
  }
  return true;
}

struct SpngCtxFree {
  void operator()(spng_ctx* ctx) const { spng_ctx_free(ctx); }
};

bool SpngFailed(int err, const char* what, const std::string& path) {
  if (err == 0) return false;
  std::cerr << "image_files: " << path << ": " << what << ": " << spng_strerror(err) << "\n";
  return true;
}

// Encodes `image` (already in the layout `ihdr` describes) to a PNG in memory, then writes it.
// `plte` is set only for palette images.
bool EncodePng(const std::string& path, spng_ihdr ihdr, const spng_plte* plte,
               const std::vector<uint8_t>& image) {
  std::unique_ptr<spng_ctx, SpngCtxFree> ctx(spng_ctx_new(SPNG_CTX_ENCODER));
  if (!ctx) {
    std::cerr << "image_files: spng_ctx_new failed\n";
    return false;
  }
  if (SpngFailed(spng_set_option(ctx.get(), SPNG_ENCODE_TO_BUFFER, 1), "spng_set_option", path)) return false;
  if (SpngFailed(spng_set_ihdr(ctx.get(), &ihdr), "spng_set_ihdr", path)) return false;
  if (plte != nullptr) {
    spng_plte copy = *plte;  // spng_set_plte takes a non-const pointer
    if (SpngFailed(spng_set_plte(ctx.get(), &copy), "spng_set_plte", path)) return false;
  }
  if (SpngFailed(spng_encode_image(ctx.get(), image.data(), image.size(), SPNG_FMT_PNG, SPNG_ENCODE_FINALIZE),
                 "spng_encode_image", path)) {
    return false;
  }
  size_t size = 0;
  int err = 0;
  void* png = spng_get_png_buffer(ctx.get(), &size, &err);  // ours to free()
  if (png == nullptr || err != 0) {
    SpngFailed(err != 0 ? err : SPNG_EINTERNAL, "spng_get_png_buffer", path);
    free(png);
    return false;
  }
  const bool ok = WriteBytes(path, png, size);
  free(png);
  return ok;
}

bool CheckSize(const std::string& path, int width, int height, size_t bytes_per_pixel, size_t have) {
  if (width < 1 || height < 1) {
    std::cerr << "image_files: " << path << ": bad size " << width << "x" << height << "\n";
    return false;
  }
  const size_t want = static_cast<size_t>(width) * height * bytes_per_pixel;
  if (have != want) {
    std::cerr << "image_files: " << path << ": " << have << " pixel bytes given, " << want << " needed\n";
    return false;
  }
  return true;
}

}  // namespace

bool WritePng(const std::string& path, int width, int height, int channels, int bit_depth,
              const std::vector<uint8_t>& pixels) {
  uint8_t colour_type = 0;
  switch (channels) {
    case 1:
      colour_type = SPNG_COLOR_TYPE_GRAYSCALE;
      break;
    case 2:
      colour_type = SPNG_COLOR_TYPE_GRAYSCALE_ALPHA;
      break;
    case 3:
      colour_type = SPNG_COLOR_TYPE_TRUECOLOR;
      break;
    case 4:
      colour_type = SPNG_COLOR_TYPE_TRUECOLOR_ALPHA;
      break;
    default:
      std::cerr << "image_files: " << path << ": channels must be 1..4, not " << channels << "\n";
      return false;
  }
  if (bit_depth != 8 && bit_depth != 16) {
    std::cerr << "image_files: " << path << ": bit depth must be 8 or 16, not " << bit_depth << "\n";
    return false;
  }
  if (!CheckSize(path, width, height, static_cast<size_t>(channels) * (bit_depth / 8), pixels.size()))
    return false;
  spng_ihdr ihdr{};
  ihdr.width = static_cast<uint32_t>(width);
  ihdr.height = static_cast<uint32_t>(height);
  ihdr.bit_depth = static_cast<uint8_t>(bit_depth);
  ihdr.color_type = colour_type;
  // SPNG_FMT_PNG takes 16-bit samples in host byte order; ours are given big-endian, as PNG stores them.
  if (bit_depth == 16) {
    std::vector<uint8_t> host(pixels);
    const uint16_t probe = 1;
    if (*reinterpret_cast<const uint8_t*>(&probe) == 1) {
      for (size_t i = 0; i + 1 < host.size(); i += 2) std::swap(host[i], host[i + 1]);
    }
    return EncodePng(path, ihdr, nullptr, host);
  }
  return EncodePng(path, ihdr, nullptr, pixels);
}

bool WritePalettePng(const std::string& path, int width, int height, const std::vector<uint8_t>& indices,
                     const std::vector<uint8_t>& palette) {
  if (palette.empty() || palette.size() % 3 != 0 || palette.size() > 3 * 256) {
    std::cerr << "image_files: " << path << ": the palette must be 1..256 RGB triples\n";
    return false;
  }
  if (!CheckSize(path, width, height, 1, indices.size())) return false;
  spng_plte plte{};
  plte.n_entries = static_cast<uint32_t>(palette.size() / 3);
  for (uint32_t i = 0; i < plte.n_entries; ++i) {
    plte.entries[i].red = palette[3 * i];
    plte.entries[i].green = palette[3 * i + 1];
    plte.entries[i].blue = palette[3 * i + 2];
  }
  for (uint8_t index : indices) {
    if (index >= plte.n_entries) {
      std::cerr << "image_files: " << path << ": index " << int{index} << " is outside the palette of "
                << plte.n_entries << "\n";
      return false;
    }
  }
  spng_ihdr ihdr{};
  ihdr.width = static_cast<uint32_t>(width);
  ihdr.height = static_cast<uint32_t>(height);
  ihdr.bit_depth = 8;
  ihdr.color_type = SPNG_COLOR_TYPE_INDEXED;
  return EncodePng(path, ihdr, &plte, indices);
}

bool WriteJpeg(const std::string& path, int width, int height, int channels,
               const std::vector<uint8_t>& pixels, int quality) {
  if (channels != 1 && channels != 3) {
    std::cerr << "image_files: " << path << ": a JPEG has 1 or 3 channels, not " << channels << "\n";
    return false;
  }
  if (!CheckSize(path, width, height, static_cast<size_t>(channels), pixels.size())) return false;
  tjhandle tj = tjInitCompress();
  if (tj == nullptr) {
    std::cerr << "image_files: tjInitCompress: " << tjGetErrorStr2(nullptr) << "\n";
    return false;
  }
  unsigned char* jpeg = nullptr;  // allocated by TurboJPEG, freed with tjFree
  unsigned long size = 0;
  const int pixel_format = channels == 1 ? TJPF_GRAY : TJPF_RGB;
  const int subsampling = channels == 1 ? TJSAMP_GRAY : TJSAMP_420;
  const int rc = tjCompress2(tj, pixels.data(), width, /*pitch=*/0, height, pixel_format, &jpeg, &size,
                             subsampling, quality, TJFLAG_ACCURATEDCT);
  bool ok = false;
  if (rc != 0) {
    std::cerr << "image_files: " << path << ": tjCompress2: " << tjGetErrorStr2(tj) << "\n";
  } else {
    ok = WriteBytes(path, jpeg, size);
  }
  tjFree(jpeg);
  tjDestroy(tj);
  return ok;
}

}  // namespace hpo::testing
