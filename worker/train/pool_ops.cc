#include "worker/train/pool_ops.h"

#include <ATen/Parallel.h>
#if defined(__SSE2__) && !defined(HPO_POOL_SCALAR)
#include <emmintrin.h>
#endif

#include <algorithm>
#include <cstdint>

namespace hpo::worker {
namespace {

constexpr uint8_t kNoGradient = 4;  // window position meaning "the ReLU clamped this output"
// u wins over v when it is larger or NaN (NaN propagates, as in LibTorch); ties keep the first
// maximum in row-major order, as LibTorch does.
inline bool Wins(float u, float v) { return u > v || u != u; }

// One window, scalar: rows r0 and r1 from column 0.
inline void PoolOne(const float* r0, const float* r1, float* o, uint8_t* p, bool relu) {
  const float a = r0[0], b = r0[1], c = r1[0], d = r1[1];
  const bool top_right = Wins(b, a), bottom_right = Wins(d, c);
  const float m01 = top_right ? b : a, m23 = bottom_right ? d : c;
  const bool bottom = Wins(m23, m01);
  const float m = bottom ? m23 : m01;
  uint8_t at = static_cast<uint8_t>(bottom ? 2 + bottom_right : top_right);
  if (relu && !(m > 0)) at = kNoGradient;
  *o = relu && m < 0 ? 0.f : m;
  *p = at;
}

// The input gradients of one window.
inline void UnpoolOne(float v, uint8_t at, float* r0, float* r1) {
  r0[0] = at == 0 ? v : 0.f;
  r0[1] = at == 1 ? v : 0.f;
  r1[0] = at == 2 ? v : 0.f;
  r1[1] = at == 3 ? v : 0.f;
}

#if defined(__SSE2__) && !defined(HPO_POOL_SCALAR)
constexpr int64_t kBlock = 4;  // outputs per SSE2 block

// Lanes where u wins over v (larger, or NaN).
inline __m128 WinsMask(__m128 u, __m128 v) { return _mm_or_ps(_mm_cmpgt_ps(u, v), _mm_cmpunord_ps(u, u)); }
inline __m128 Select(__m128 mask, __m128 yes, __m128 no) { return _mm_or_ps(_mm_and_ps(mask, yes), _mm_andnot_ps(mask, no)); }
inline __m128i SelectI(__m128i mask, __m128i yes, __m128i no) { return _mm_or_si128(_mm_and_si128(mask, yes), _mm_andnot_si128(mask, no)); }

// 4 outputs of one row pair, starting at output column ox.
inline void PoolBlock(const float* r0, const float* r1, int64_t ox, float* o, uint8_t* p, bool relu) {
  const __m128i one = _mm_set1_epi32(1), two = _mm_set1_epi32(2), none = _mm_set1_epi32(kNoGradient);
  const __m128 zero = _mm_setzero_ps();
  const __m128 t0 = _mm_loadu_ps(r0 + 2 * ox), t1 = _mm_loadu_ps(r0 + 2 * ox + 4);
  const __m128 u0 = _mm_loadu_ps(r1 + 2 * ox), u1 = _mm_loadu_ps(r1 + 2 * ox + 4);
  const __m128 a = _mm_shuffle_ps(t0, t1, _MM_SHUFFLE(2, 0, 2, 0)), b = _mm_shuffle_ps(t0, t1, _MM_SHUFFLE(3, 1, 3, 1));
  const __m128 c = _mm_shuffle_ps(u0, u1, _MM_SHUFFLE(2, 0, 2, 0)), d = _mm_shuffle_ps(u0, u1, _MM_SHUFFLE(3, 1, 3, 1));
  const __m128 top_right = WinsMask(b, a), bottom_right = WinsMask(d, c);
  const __m128 m01 = Select(top_right, b, a), m23 = Select(bottom_right, d, c);
  const __m128 bottom = WinsMask(m23, m01);
  __m128 m = Select(bottom, m23, m01);
  __m128i at = SelectI(_mm_castps_si128(bottom), _mm_add_epi32(two, _mm_and_si128(_mm_castps_si128(bottom_right), one)),
                       _mm_and_si128(_mm_castps_si128(top_right), one));
  if (relu) {
    at = SelectI(_mm_castps_si128(_mm_cmpgt_ps(m, zero)), at, none);
    m = _mm_andnot_ps(_mm_cmplt_ps(m, zero), m);
  }
  _mm_storeu_ps(o + ox, m);
  const int32_t packed = _mm_cvtsi128_si32(_mm_packus_epi16(_mm_packs_epi32(at, at), _mm_setzero_si128()));
  __builtin_memcpy(p + ox, &packed, 4);
}

// The input gradients of one row pair under output columns ox..ox+3.
inline void UnpoolBlock(const float* g, const uint8_t* p, int64_t ox, float* r0, float* r1) {
  const __m128i k0 = _mm_setzero_si128(), k1 = _mm_set1_epi32(1), k2 = _mm_set1_epi32(2), k3 = _mm_set1_epi32(3);
  int32_t packed;
  __builtin_memcpy(&packed, p + ox, 4);
  const __m128i at = _mm_unpacklo_epi16(_mm_unpacklo_epi8(_mm_cvtsi32_si128(packed), k0), k0);
  const __m128 v = _mm_loadu_ps(g + ox);
  const __m128 v0 = _mm_and_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(at, k0)), v);
  const __m128 v1 = _mm_and_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(at, k1)), v);
  const __m128 v2 = _mm_and_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(at, k2)), v);
  const __m128 v3 = _mm_and_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(at, k3)), v);
  _mm_storeu_ps(r0 + 2 * ox, _mm_unpacklo_ps(v0, v1));
  _mm_storeu_ps(r0 + 2 * ox + 4, _mm_unpackhi_ps(v0, v1));
  _mm_storeu_ps(r1 + 2 * ox, _mm_unpacklo_ps(v2, v3));
  _mm_storeu_ps(r1 + 2 * ox + 4, _mm_unpackhi_ps(v2, v3));
}
#else
constexpr int64_t kBlock = 0;  // no SIMD blocks: every output takes the scalar path
inline void PoolBlock(const float*, const float*, int64_t, float*, uint8_t*, bool) {}
inline void UnpoolBlock(const float*, const uint8_t*, int64_t, float*, float*) {}
#endif

// One channel plane. Rows of at least kBlock outputs go in SIMD blocks, the last one overlapping the
// block before it where the width is not a multiple (the same values are written twice).
void PoolPlane(const float* in, int64_t h, int64_t w, float* out, uint8_t* pos, bool relu) {
  const int64_t ho = h / 2, wo = w / 2;
  const bool blocks = kBlock > 0 && wo >= kBlock;
  for (int64_t oy = 0; oy < ho; ++oy) {
    const float* r0 = in + 2 * oy * w;
    const float* r1 = r0 + w;
    float* o = out + oy * wo;
    uint8_t* p = pos + oy * wo;
    if (blocks) {
      for (int64_t ox = 0; ox < wo; ox += kBlock) PoolBlock(r0, r1, std::min(ox, wo - kBlock), o, p, relu);
    } else {
      for (int64_t ox = 0; ox < wo; ++ox) PoolOne(r0 + 2 * ox, r1 + 2 * ox, o + ox, p + ox, relu);
    }
  }
}

// Writes every input gradient of one plane: the output gradient at the window position, zeros
// elsewhere (and on the row / column floor pooling drops).
void UnpoolPlane(const float* grad_out, const uint8_t* pos, int64_t h, int64_t w, float* grad_in) {
  const int64_t ho = h / 2, wo = w / 2;
  const bool blocks = kBlock > 0 && wo >= kBlock;
  for (int64_t oy = 0; oy < ho; ++oy) {
    float* r0 = grad_in + 2 * oy * w;
    float* r1 = r0 + w;
    const float* g = grad_out + oy * wo;
    const uint8_t* p = pos + oy * wo;
    if (blocks) {
      for (int64_t ox = 0; ox < wo; ox += kBlock) UnpoolBlock(g, p, std::min(ox, wo - kBlock), r0, r1);
    } else {
      for (int64_t ox = 0; ox < wo; ++ox) UnpoolOne(g[ox], p[ox], r0 + 2 * ox, r1 + 2 * ox);
    }
    if (w % 2 != 0) r0[w - 1] = r1[w - 1] = 0.f;  // the column floor pooling drops
  }
  if (h % 2 != 0) std::fill(grad_in + (h - 1) * w, grad_in + h * w, 0.f);  // and the row
}

int64_t Grain(int64_t plane_size) { return std::max<int64_t>(1, 32768 / std::max<int64_t>(1, plane_size)); }

class MaxPool2x2Fn : public torch::autograd::Function<MaxPool2x2Fn> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& input, bool relu) {
    const torch::Tensor x = input.contiguous();
    const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
    torch::Tensor y = torch::empty({n, c, h / 2, w / 2}, x.options());
    torch::Tensor pos = torch::empty({n, c, h / 2, w / 2}, x.options().dtype(torch::kUInt8));
    const float* in = x.data_ptr<float>();
    float* out = y.data_ptr<float>();
    uint8_t* p = pos.data_ptr<uint8_t>();
    const int64_t plane_in = h * w, plane_out = (h / 2) * (w / 2);
    at::parallel_for(0, n * c, Grain(plane_in), [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        PoolPlane(in + i * plane_in, h, w, out + i * plane_out, p + i * plane_out, relu);
      }
    });
    ctx->save_for_backward({pos});
    ctx->saved_data["h"] = h;
    ctx->saved_data["w"] = w;
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const torch::Tensor pos = ctx->get_saved_variables()[0];
    const int64_t h = ctx->saved_data["h"].toInt(), w = ctx->saved_data["w"].toInt();
    const torch::Tensor g = grads[0].contiguous();
    const int64_t n = pos.size(0), c = pos.size(1);
    torch::Tensor grad_in = torch::empty({n, c, h, w}, g.options());
    const float* go = g.data_ptr<float>();
    const uint8_t* p = pos.data_ptr<uint8_t>();
    float* gi = grad_in.data_ptr<float>();
    const int64_t plane_in = h * w, plane_out = (h / 2) * (w / 2);
    at::parallel_for(0, n * c, Grain(plane_in), [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) UnpoolPlane(go + i * plane_out, p + i * plane_out, h, w, gi + i * plane_in);
    });
    return {grad_in, torch::Tensor()};
  }
};

}  // namespace

torch::Tensor FastMaxPool2x2(const torch::Tensor& x, bool relu) {
  if (x.dim() != 4 || x.scalar_type() != torch::kFloat || x.size(2) < 2 || x.size(3) < 2) {
    torch::Tensor y = torch::max_pool2d(x, 2);
    return relu ? torch::relu(y) : y;
  }
  return MaxPool2x2Fn::apply(x, relu);
}

}  // namespace hpo::worker
