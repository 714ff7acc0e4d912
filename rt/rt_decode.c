/* rt_decode.c -- lathe_rt_attention_decode: one query row against a
 * key/value cache (generation's decode step; the op attention_decode of
 * passes/decode.c, its reference ir/interp_decode.c).
 *
 * Per head: the scores s_j = q . k_j * scale for j = 0..pos, their maximum,
 * p_j = exp(s_j - max), and out = sum_j p_j v_j / sum_j p_j. The LLVM loop
 * this replaces summed each score one product at a time (a chain of 32
 * dependent adds per key) and computed every score twice; at the char-GPT's
 * size it was a third of a w4 token. Here, with AVX-512, a score is 16-lane
 * FMAs and one horizontal sum, exp runs 16 lanes at once (exp16: a degree-6
 * polynomial on 2^f, within 2 ulp of expf), and the values are summed into
 * hd / 16 vector accumulators. Keys are taken in chunks of DEC_CHUNK scores
 * on the stack; a longer cache rescales what the earlier chunks summed when
 * the maximum grows (the flash-attention update), so no scratch is needed.
 * Without AVX-512 (or with LATHE_CPU_FEATURES=-avx512f: the kernel is
 * chosen when the program is compiled, lathe_rt_attention_decode_isa) the
 * same in plain C with expf. */
#if defined(__x86_64__)
#include <immintrin.h>
#endif
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "rt/lathe_rt.h"
#include "rt/rt_quant.h" /* rt_q_feature_off */

#define T512 __attribute__((target("avx512f,avx512dq,fma")))

enum { DEC_CHUNK = 512 };
enum { DEC_MAXV = 16 }; /* hd up to 256 in registers; wider heads take the C path */

/* ---- plain C ---- */

static void dec_head_c(float *out, const float *q, const float *kc, const float *vc, int64_t n, int64_t dk,
                       int64_t hd, float scale) {
  float p[DEC_CHUNK], mx = -INFINITY, sum = 0.0f;
  for (int64_t e = 0; e < hd; e++) out[e] = 0.0f;
  for (int64_t j0 = 0; j0 < n; j0 += DEC_CHUNK) {
    int64_t nj = n - j0 < DEC_CHUNK ? n - j0 : DEC_CHUNK;
    float cm = mx;
    for (int64_t j = 0; j < nj; j++) {
      float s = 0.0f;
      for (int64_t e = 0; e < hd; e++) s += q[e] * kc[(j0 + j) * dk + e];
      p[j] = s * scale;
      cm = p[j] > cm ? p[j] : cm;
    }
    float r = mx == -INFINITY ? 0.0f : expf(mx - cm); /* the earlier chunks' rescale */
    sum *= r;
    for (int64_t e = 0; e < hd; e++) out[e] *= r;
    mx = cm;
    for (int64_t j = 0; j < nj; j++) {
      float w = expf(p[j] - mx);
      sum += w;
      for (int64_t e = 0; e < hd; e++) out[e] += w * vc[(j0 + j) * dk + e];
    }
  }
  for (int64_t e = 0; e < hd; e++) out[e] /= sum;
}

/* ---- AVX-512 ---- */

#if defined(__x86_64__) /* the AVX-512 kernel; other hosts take the C path */
/* e^x for x <= 0 (scores minus their maximum): x = n ln2 + r, |r| <= ln2/2,
 * e^r by its Taylor polynomial to degree 6 (error below 2e-7 relative), times
 * 2^n through the exponent bits; x below -87 gives e^-87 (about 1.6e-38, nothing
 * next to the maximum's 1) instead of a denormal. */
static T512 inline __m512 exp16(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-87.0f));
  __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 y = _mm512_set1_ps(1.0f / 720);
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.0f / 120));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.0f / 24));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.0f / 6));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(0.5f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.0f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.0f));
  __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
  return _mm512_mul_ps(y, _mm512_castsi512_ps(e));
}

static T512 void dec_head_512(float *out, const float *q, const float *kc, const float *vc, int64_t n, int64_t dk,
                              int64_t hd, float scale) {
  float p[DEC_CHUNK] __attribute__((aligned(64)));
  int64_t nv = hd / 16;
  __m512 qv[DEC_MAXV], acc[DEC_MAXV];
  for (int64_t v = 0; v < nv; v++) qv[v] = _mm512_loadu_ps(q + 16 * v), acc[v] = _mm512_setzero_ps();
  float mx = -INFINITY, sum = 0.0f;
  for (int64_t j0 = 0; j0 < n; j0 += DEC_CHUNK) {
    int64_t nj = n - j0 < DEC_CHUNK ? n - j0 : DEC_CHUNK;
    float cm = mx;
    for (int64_t j = 0; j < nj; j++) {
      const float *k = kc + (j0 + j) * dk;
      __m512 s = _mm512_mul_ps(qv[0], _mm512_loadu_ps(k));
      for (int64_t v = 1; v < nv; v++) s = _mm512_fmadd_ps(qv[v], _mm512_loadu_ps(k + 16 * v), s);
      p[j] = _mm512_reduce_add_ps(s) * scale;
      cm = p[j] > cm ? p[j] : cm;
    }
    if (mx != -INFINITY) { /* rescale the earlier chunks' sums to the new maximum */
      float r = expf(mx - cm);
      sum *= r;
      for (int64_t v = 0; v < nv; v++) acc[v] = _mm512_mul_ps(acc[v], _mm512_set1_ps(r));
    }
    mx = cm;
    __m512 m = _mm512_set1_ps(mx), sv = _mm512_setzero_ps();
    int64_t j = 0;
    for (; j + 16 <= nj; j += 16) {
      __m512 w = exp16(_mm512_sub_ps(_mm512_load_ps(p + j), m));
      _mm512_store_ps(p + j, w);
      sv = _mm512_add_ps(sv, w);
    }
    if (j < nj) {
      __mmask16 t = (__mmask16)((1u << (nj - j)) - 1);
      __m512 w = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(t, p + j), m));
      w = _mm512_maskz_mov_ps(t, w);
      _mm512_mask_storeu_ps(p + j, t, w);
      sv = _mm512_add_ps(sv, w);
    }
    sum += _mm512_reduce_add_ps(sv);
    for (j = 0; j < nj; j++) {
      const float *vr = vc + (j0 + j) * dk;
      __m512 w = _mm512_set1_ps(p[j]);
      for (int64_t v = 0; v < nv; v++) acc[v] = _mm512_fmadd_ps(w, _mm512_loadu_ps(vr + 16 * v), acc[v]);
    }
  }
  __m512 inv = _mm512_set1_ps(sum);
  for (int64_t v = 0; v < nv; v++) _mm512_storeu_ps(out + 16 * v, _mm512_div_ps(acc[v], inv));
}
#endif

int64_t lathe_rt_attention_decode_isa(void) {
#if defined(__x86_64__)
  const char *f = getenv("LATHE_CPU_FEATURES");
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("avx512dq") && !rt_q_feature_off(f, "avx512f");
#else
  return 0;
#endif
}

void lathe_rt_attention_decode(float *out, const float *q, const float *kc, const float *vc, int64_t pos, int64_t dk,
                               int64_t H, int64_t hd, int64_t G, int64_t isa) {
  float scale = (float)(1.0 / sqrt((double)hd));
  int wide = isa == 1 && hd % 16 == 0 && hd / 16 <= DEC_MAXV;
  for (int64_t h = 0; h < H; h++) {
    int64_t koff = h / G * hd;
#if defined(__x86_64__)
    if (wide) {
      dec_head_512(out + h * hd, q + h * hd, kc + koff, vc + koff, pos + 1, dk, hd, scale);
      continue;
    }
#endif
    (void)wide;
    dec_head_c(out + h * hd, q + h * hd, kc + koff, vc + koff, pos + 1, dk, hd, scale);
  }
}
