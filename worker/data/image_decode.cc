#include "worker/data/image_decode.h"

#include <spng.h>
#include <turbojpeg.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"

namespace hpo::worker {
namespace {

bool IsJpeg(const uint8_t* d, size_t n) { return n >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF; }
bool IsPng(const uint8_t* d, size_t n) {
  static constexpr uint8_t kSig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  return n >= 8 && std::memcmp(d, kSig, 8) == 0;
}

// One TurboJPEG decompressor per thread: creating one costs more than decoding a small image.
// A failed call can leave it in a state where the next, valid file's header reads as empty
// (libjpeg-turbo 2.1, after a truncated file under TJFLAG_STOPONWARNING), so every failure
// replaces it: one bad photo must not cost the next good one.
class JpegDecoder {
 public:
  static JpegDecoder& ForThisThread() {
    thread_local JpegDecoder decoder;
    return decoder;
  }
  tjhandle get() const { return h_; }
  // The error message of the last call, after which the handle is replaced by a fresh one.
  std::string FailAndReset() {
    std::string why = h_ != nullptr ? tjGetErrorStr2(h_) : "cannot create a JPEG decoder";
    if (h_ != nullptr) tjDestroy(h_);
    h_ = tjInitDecompress();
    return why;
  }
  ~JpegDecoder() {
    if (h_ != nullptr) tjDestroy(h_);
  }

 private:
  JpegDecoder() = default;
  tjhandle h_ = tjInitDecompress();
};

struct SpngDeleter {
  void operator()(spng_ctx* c) const { spng_ctx_free(c); }
};
using SpngCtx = std::unique_ptr<spng_ctx, SpngDeleter>;

absl::Status TooLarge(int w, int h) {
  return absl::InvalidArgumentError(absl::StrCat("image is ", w, "x", h, " = ", int64_t{w} * h,
                                                 " pixels, over the limit of ", kMaxImagePixels,
                                                 " (refused before decoding)"));
}

absl::StatusOr<ImageHeader> JpegHeader(const uint8_t* data, size_t size) {
  int w = 0, h = 0, subsamp = 0, colorspace = 0;
  JpegDecoder& dec = JpegDecoder::ForThisThread();
  if (tjDecompressHeader3(dec.get(), data, static_cast<unsigned long>(size), &w, &h, &subsamp, &colorspace) != 0) {
    return absl::DataLossError(absl::StrCat("corrupt JPEG header: ", dec.FailAndReset()));
  }
  if (w <= 0 || h <= 0) {
    dec.FailAndReset();
    return absl::DataLossError("JPEG header gives an empty image");
  }
  if (colorspace == TJCS_CMYK || colorspace == TJCS_YCCK) {
    return absl::InvalidArgumentError("CMYK JPEG images are not supported; convert them to RGB");
  }
  if (int64_t{w} * h > kMaxImagePixels) return TooLarge(w, h);
  return ImageHeader{w, h, colorspace != TJCS_GRAY, "jpeg"};
}

SpngCtx NewPng(const uint8_t* data, size_t size) {
  SpngCtx ctx(spng_ctx_new(0));
  if (!ctx) return ctx;
  // Ancillary chunks (text, ICC profiles) are not needed: cap what a hostile file can make us hold.
  spng_set_chunk_limits(ctx.get(), 1 << 20, 1 << 22);
  spng_set_image_limits(ctx.get(), 1 << 20, 1 << 20);
  spng_set_png_buffer(ctx.get(), data, size);
  return ctx;
}

absl::StatusOr<ImageHeader> PngHeader(spng_ctx* ctx, spng_ihdr* ihdr) {
  if (int e = spng_get_ihdr(ctx, ihdr); e != 0) {
    return absl::DataLossError(absl::StrCat("corrupt PNG header: ", spng_strerror(e)));
  }
  const int w = static_cast<int>(ihdr->width), h = static_cast<int>(ihdr->height);
  if (int64_t{ihdr->width} * ihdr->height > kMaxImagePixels) return TooLarge(w, h);
  const bool colour = ihdr->color_type == SPNG_COLOR_TYPE_TRUECOLOR ||
                      ihdr->color_type == SPNG_COLOR_TYPE_TRUECOLOR_ALPHA ||
                      ihdr->color_type == SPNG_COLOR_TYPE_INDEXED;
  return ImageHeader{w, h, colour, "png"};
}

absl::Status NotAnImage() { return absl::InvalidArgumentError("not a JPEG or PNG image"); }

// The part of the source image that is resampled, and where it lands in the
// target, for each resize mode. All in pixels of the source and the target.
struct Geometry {
  double sx0, sy0, sw, sh;  // source rectangle (may be fractional for crop)
  int dx0, dy0, dw, dh;     // target rectangle; the rest of the target is black
};

Geometry Fit(int src_w, int src_h, int dst_w, int dst_h, ResizeMode mode) {
  Geometry g{0, 0, double(src_w), double(src_h), 0, 0, dst_w, dst_h};
  const double sx = double(dst_w) / src_w, sy = double(dst_h) / src_h;
  if (mode == ResizeMode::kPad) {
    const double s = std::min(sx, sy);
    g.dw = std::clamp(static_cast<int>(std::lround(src_w * s)), 1, dst_w);
    g.dh = std::clamp(static_cast<int>(std::lround(src_h * s)), 1, dst_h);
    g.dx0 = (dst_w - g.dw) / 2;
    g.dy0 = (dst_h - g.dh) / 2;
  } else if (mode == ResizeMode::kCrop) {
    const double s = std::max(sx, sy);
    g.sw = std::min<double>(src_w, dst_w / s);
    g.sh = std::min<double>(src_h, dst_h / s);
    g.sx0 = (src_w - g.sw) / 2;
    g.sy0 = (src_h - g.sh) / 2;
  }
  return g;
}

// Resampling weights of one axis: a triangle (bilinear) filter widened by the
// downscale factor, so shrinking averages every source pixel (antialiased, as
// Pillow's BILINEAR resize) instead of skipping pixels.
struct AxisWeights {
  std::vector<int> first, count;
  std::vector<float> w;  // count[i] weights per output, at stride `support`
  int stride = 0;
};

AxisWeights Weights(double src0, double src_len, int src_size, int dst_len) {
  AxisWeights a;
  const double scale = src_len / dst_len;
  const double filter_scale = std::max(1.0, scale);
  const double support = filter_scale;  // triangle support 1, scaled
  a.stride = static_cast<int>(std::ceil(support)) * 2 + 1;
  a.first.resize(dst_len);
  a.count.resize(dst_len);
  a.w.assign(static_cast<size_t>(dst_len) * a.stride, 0.f);
  for (int i = 0; i < dst_len; ++i) {
    const double centre = src0 + (i + 0.5) * scale;
    int lo = static_cast<int>(std::floor(centre - support));
    int hi = static_cast<int>(std::ceil(centre + support));
    lo = std::max(lo, 0);
    hi = std::min(hi, src_size);
    hi = std::min(hi, lo + a.stride);
    double total = 0;
    float* w = &a.w[static_cast<size_t>(i) * a.stride];
    for (int k = lo; k < hi; ++k) {
      const double x = (k + 0.5 - centre) / filter_scale;
      const double v = std::max(0.0, 1.0 - std::fabs(x));
      w[k - lo] = static_cast<float>(v);
      total += v;
    }
    if (total <= 0) {  // degenerate: take the nearest pixel
      lo = std::clamp(static_cast<int>(centre), 0, src_size - 1);
      hi = lo + 1;
      w[0] = 1.f;
      total = 1;
    }
    for (int k = 0; k < hi - lo; ++k) w[k] = static_cast<float>(w[k] / total);
    a.first[i] = lo;
    a.count[i] = hi - lo;
  }
  return a;
}

uint8_t Clamp8(float v) { return static_cast<uint8_t>(std::clamp(v + 0.5f, 0.f, 255.f)); }

// Buffers reused across the images a thread decodes (a decode allocates nothing once warm).
struct Scratch {
  std::vector<uint8_t> pixels, converted;
  std::vector<float> rows;
};
Scratch& ThreadScratch() {
  thread_local Scratch s;
  return s;
}

// The horizontal pass of one row: `CH` interleaved channels, weights `wx`, into `out` (dw * CH).
template <int CH>
void ResampleRow(const float* __restrict row, const AxisWeights& wx, int dw, float* __restrict out) {
  for (int x = 0; x < dw; ++x) {
    const float* w = &wx.w[static_cast<size_t>(x) * wx.stride];
    const float* p = row + static_cast<size_t>(wx.first[x]) * CH;
    float acc[CH] = {};
    for (int k = 0; k < wx.count[x]; ++k) {
      for (int c = 0; c < CH; ++c) acc[c] += w[k] * p[k * CH + c];
    }
    for (int c = 0; c < CH; ++c) out[x * CH + c] = acc[c];
  }
}

// Resamples an interleaved image with `ch` channels into the planar target
// (already zeroed where nothing lands). `ch` equals the target's channels.
// Vertical pass first, over whole contiguous rows (vectorized), so the scalar
// horizontal pass only runs on the few output rows.
void Resample(const uint8_t* src, int src_w, int src_h, int ch, const Geometry& g, int dst_w, int dst_h,
              uint8_t* out) {
  const size_t plane = static_cast<size_t>(dst_w) * dst_h;
  if (g.dw == src_w && g.dh == src_h && g.sw == src_w && g.sh == src_h) {  // same size: copy
    for (int y = 0; y < src_h; ++y) {
      for (int x = 0; x < src_w; ++x) {
        for (int c = 0; c < ch; ++c) {
          out[c * plane + static_cast<size_t>(y + g.dy0) * dst_w + x + g.dx0] = src[(size_t(y) * src_w + x) * ch + c];
        }
      }
    }
    return;
  }
  const AxisWeights wx = Weights(g.sx0, g.sw, src_w, g.dw);
  const AxisWeights wy = Weights(g.sy0, g.sh, src_h, g.dh);
  const size_t row_len = static_cast<size_t>(src_w) * ch;
  std::vector<float>& buf = ThreadScratch().rows;
  buf.resize(row_len + static_cast<size_t>(g.dw) * ch);
  // __restrict: the uint8 source may alias anything, which would otherwise keep these loops scalar.
  float* __restrict column = buf.data();          // one vertically filtered source row
  float* __restrict line = buf.data() + row_len;  // its horizontally filtered output row
  for (int y = 0; y < g.dh; ++y) {
    const float* w = &wy.w[static_cast<size_t>(y) * wy.stride];
    const uint8_t* __restrict r0 = src + static_cast<size_t>(wy.first[y]) * row_len;
    for (size_t i = 0; i < row_len; ++i) column[i] = w[0] * r0[i];
    for (int k = 1; k < wy.count[y]; ++k) {
      const uint8_t* __restrict r = r0 + static_cast<size_t>(k) * row_len;
      const float wk = w[k];
      for (size_t i = 0; i < row_len; ++i) column[i] += wk * r[i];
    }
    if (ch == 1) {
      ResampleRow<1>(column, wx, g.dw, line);
    } else {
      ResampleRow<3>(column, wx, g.dw, line);
    }
    for (int x = 0; x < g.dw; ++x) {
      for (int c = 0; c < ch; ++c) {
        out[c * plane + static_cast<size_t>(y + g.dy0) * dst_w + x + g.dx0] = Clamp8(line[x * ch + c]);
      }
    }
  }
}

// RGB(A) or gray(+alpha) interleaved pixels to `channels` interleaved: alpha dropped, luma by
// ITU-R 601 weights (as PIL's convert("L")), gray replicated to RGB.
void ConvertChannels(const uint8_t* p, size_t pixels, int from, int to, std::vector<uint8_t>* converted) {
  std::vector<uint8_t>& out = *converted;
  out.resize(pixels * to);
  for (size_t i = 0; i < pixels; ++i) {
    const uint8_t* s = p + i * from;
    if (to == 1) {
      out[i] = from >= 3 ? static_cast<uint8_t>((s[0] * 299 + s[1] * 587 + s[2] * 114 + 500) / 1000) : s[0];
    } else if (from >= 3) {
      out[i * 3] = s[0], out[i * 3 + 1] = s[1], out[i * 3 + 2] = s[2];
    } else {
      out[i * 3] = out[i * 3 + 1] = out[i * 3 + 2] = s[0];
    }
  }
}

absl::Status DecodeJpeg(const uint8_t* data, size_t size, const ImageHeader& hdr, int height, int width,
                        int channels, ResizeMode mode, uint8_t* out) {
  // Decode at the smallest DCT scaling (1/8 .. 1) that still covers what the target needs, so a
  // large photo is never decoded at full size only to be shrunk.
  const Geometry full = Fit(hdr.width, hdr.height, width, height, mode);
  const double need = std::max(full.dw / full.sw, full.dh / full.sh);  // target pixels per source pixel
  int n = 0;
  const tjscalingfactor* factors = tjGetScalingFactors(&n);
  tjscalingfactor best{1, 1};
  for (int i = 0; i < n; ++i) {
    const double f = double(factors[i].num) / factors[i].denom;
    if (f <= 1.0 && f >= need && f < double(best.num) / best.denom) best = factors[i];
  }
  const int sw = TJSCALED(hdr.width, best), sh = TJSCALED(hdr.height, best);
  const int dec_ch = channels == 1 ? 1 : 3;
  std::vector<uint8_t>& pixels = ThreadScratch().pixels;
  pixels.resize(static_cast<size_t>(sw) * sh * dec_ch);
  // STOPONWARNING: a truncated file is refused instead of being padded with grey.
  JpegDecoder& dec = JpegDecoder::ForThisThread();
  if (tjDecompress2(dec.get(), data, static_cast<unsigned long>(size), pixels.data(), sw, 0, sh,
                    dec_ch == 1 ? TJPF_GRAY : TJPF_RGB, TJFLAG_STOPONWARNING) != 0) {
    return absl::DataLossError(absl::StrCat("corrupt or truncated JPEG: ", dec.FailAndReset()));
  }
  Resample(pixels.data(), sw, sh, dec_ch, Fit(sw, sh, width, height, mode), width, height, out);
  return absl::OkStatus();
}

absl::Status DecodePng(spng_ctx* ctx, const spng_ihdr& ihdr, int height, int width, int channels, ResizeMode mode,
                       uint8_t* out) {
  // libspng converts every PNG type and depth to RGB8; G8 only from gray PNGs of <= 8 bits
  // (without alpha), which we use for gray targets because it skips the conversion.
  const bool g8 = channels == 1 && ihdr.color_type == SPNG_COLOR_TYPE_GRAYSCALE && ihdr.bit_depth <= 8;
  // An 8-bit RGB or gray PNG is already what we need: SPNG_FMT_PNG skips libspng's per-pixel conversion.
  const bool native = ihdr.bit_depth == 8 && (ihdr.color_type == SPNG_COLOR_TYPE_TRUECOLOR ||
                                              ihdr.color_type == SPNG_COLOR_TYPE_GRAYSCALE);
  const int fmt = native ? SPNG_FMT_PNG : g8 ? SPNG_FMT_G8 : SPNG_FMT_RGB8;
  size_t len = 0;
  if (int e = spng_decoded_image_size(ctx, fmt, &len); e != 0) {
    return absl::DataLossError(absl::StrCat("corrupt PNG: ", spng_strerror(e)));
  }
  std::vector<uint8_t>& pixels = ThreadScratch().pixels;
  pixels.resize(len);
  if (int e = spng_decode_image(ctx, pixels.data(), len, fmt, 0); e != 0) {
    return absl::DataLossError(absl::StrCat("corrupt or truncated PNG: ", spng_strerror(e)));
  }
  const int w = static_cast<int>(ihdr.width), h = static_cast<int>(ihdr.height);
  const int have = native ? (ihdr.color_type == SPNG_COLOR_TYPE_GRAYSCALE ? 1 : 3) : g8 ? 1 : 3;
  const Geometry g = Fit(w, h, width, height, mode);
  if (have == channels) {
    Resample(pixels.data(), w, h, channels, g, width, height, out);
  } else {
    std::vector<uint8_t>& conv = ThreadScratch().converted;
    ConvertChannels(pixels.data(), static_cast<size_t>(w) * h, have, channels, &conv);
    Resample(conv.data(), w, h, channels, g, width, height, out);
  }
  return absl::OkStatus();
}

}  // namespace

std::optional<ResizeMode> ParseResizeMode(std::string_view name) {
  if (name == "stretch") return ResizeMode::kStretch;
  if (name == "pad") return ResizeMode::kPad;
  if (name == "crop") return ResizeMode::kCrop;
  return std::nullopt;
}

absl::StatusOr<ImageHeader> ReadImageHeader(const uint8_t* data, size_t size) {
  if (IsJpeg(data, size)) return JpegHeader(data, size);
  if (IsPng(data, size)) {
    SpngCtx ctx = NewPng(data, size);
    if (!ctx) return absl::ResourceExhaustedError("out of memory creating a PNG decoder");
    spng_ihdr ihdr{};
    return PngHeader(ctx.get(), &ihdr);
  }
  return NotAnImage();
}

absl::Status DecodeImage(const uint8_t* data, size_t size, int height, int width, int channels, ResizeMode mode,
                         uint8_t* out) {
  if (channels != 1 && channels != 3) return absl::InvalidArgumentError("channels must be 1 or 3");
  if (height < 1 || width < 1) return absl::InvalidArgumentError("the target size must be positive");
  std::fill_n(out, static_cast<size_t>(channels) * height * width, uint8_t{0});
  if (IsJpeg(data, size)) {
    auto hdr = JpegHeader(data, size);
    if (!hdr.ok()) return hdr.status();
    return DecodeJpeg(data, size, *hdr, height, width, channels, mode, out);
  }
  if (IsPng(data, size)) {
    SpngCtx ctx = NewPng(data, size);
    if (!ctx) return absl::ResourceExhaustedError("out of memory creating a PNG decoder");
    spng_ihdr ihdr{};
    auto hdr = PngHeader(ctx.get(), &ihdr);
    if (!hdr.ok()) return hdr.status();
    return DecodePng(ctx.get(), ihdr, height, width, channels, mode, out);
  }
  return NotAnImage();
}

absl::StatusOr<std::string> ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) {
    const int err = errno;
    if (err == EACCES) return absl::PermissionDeniedError(absl::StrCat("cannot read ", path, ": permission denied"));
    return absl::NotFoundError(absl::StrCat("cannot open ", path, ": ", std::strerror(err)));
  }
  const std::streamoff size = in.tellg();
  if (size < 0) return absl::DataLossError(absl::StrCat("cannot read ", path, " (not a regular file?)"));
  if (size > kMaxImageFileBytes) {
    return absl::InvalidArgumentError(absl::StrCat(path, " is ", size, " bytes, over the limit of ",
                                                   kMaxImageFileBytes, " for one image"));
  }
  std::string bytes(static_cast<size_t>(size), '\0');
  in.seekg(0);
  if (!in.read(bytes.data(), size)) return absl::DataLossError(absl::StrCat("read error on ", path));
  return bytes;
}

}  // namespace hpo::worker
