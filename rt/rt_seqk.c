/* rt_seqk.c -- vectorised building blocks of the sequence-layer kernels
 * (see rt_seqk.h). Written with GCC vector types of 8 floats, so one source
 * serves SSE2, AVX2 and AVX-512 machines: with GCC on x86-64 every entry
 * point is compiled three times (target_clones) and the loader picks the
 * copy the CPU runs best. Tails shorter than a vector go through a
 * zero-padded copy or a scalar loop; masked lanes are chosen with bitwise
 * selects, so garbage (even NaN) in a skipped lane never reaches a result. */
#include "rt_seqk.h"

#include <math.h>
#include <string.h>

/* 32-byte vectors are returned by this file's inlined helpers only */
#pragma GCC diagnostic ignored "-Wpsabi"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
/* ISO C mode turns contraction off; a * b + c in one rounding (FMA) is both
 * faster and more accurate where the clone's target has it. */
#pragma GCC optimize("fp-contract=fast")
#define SK_FN __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#define SK_WIDE 1 /* rt_sk_mm has a 16-lane path for AVX-512 */
#else
#define SK_FN
#define SK_WIDE 0
#endif

#define INLINE static inline __attribute__((always_inline))

typedef float vf __attribute__((vector_size(32)));
typedef int32_t vi __attribute__((vector_size(32)));
typedef uint32_t vu __attribute__((vector_size(32)));
typedef float vfu __attribute__((vector_size(32), aligned(4), may_alias));
enum { VW = 8 };
#define VLD(p) ((vf)(*(const vfu *)(const void *)(p)))
#define VST(p, v) (*(vfu *)(void *)(p) = (v))

/* Helpers take vectors by pointer or as macro arguments: a by-value vector
 * parameter makes GCC note an ABI change in the SSE2 clone. */
INLINE vf vsplat(float x) { return (vf){x, x, x, x, x, x, x, x}; }
/* lanes with j0 + lane < lim */
INLINE vi vbelow(int64_t j0, int64_t lim) {
  int32_t r = lim - j0 > VW ? VW : lim - j0 < 0 ? 0 : (int32_t)(lim - j0);
  return (vi){0, 1, 2, 3, 4, 5, 6, 7} < (vi){r, r, r, r, r, r, r, r};
}
/* m ? a : b lane by lane (m all ones or zero); a and b evaluated once */
#define VSEL(m, a, b) ((vf)(((vi)(a) & (m)) | ((vi)(b) & ~(m))))
INLINE float hsum(const vf *v) {
  return (((*v)[0] + (*v)[4]) + ((*v)[1] + (*v)[5])) + (((*v)[2] + (*v)[6]) + ((*v)[3] + (*v)[7]));
}
INLINE float hmax(const vf *v) {
  float m = (*v)[0];
  for (int i = 1; i < VW; i++) m = (*v)[i] > m ? (*v)[i] : m;
  return m;
}

/* ---- transcendental functions, in place (|rel err| < 2e-7, as cg_attn.c's scalar ones) ---- */

INLINE void vexp(vf *px) {
  vf x = *px, lo = vsplat(-87.0f), hi = vsplat(88.0f);
  x = VSEL(x > lo, x, lo); /* NaN: lo */
  x = VSEL(x < hi, x, hi);
  vf n = x * 1.44269504f + 12582912.0f; /* + 1.5 * 2^23 rounds to an integer */
  n = n - 12582912.0f;
  vf r = x - n * 0.693145752f - n * 1.42860677e-6f;
  vf p = 0.166666672f + r * (0.0416666418f + r * (0.00833342969f + r * 0.00138887367f));
  p = 1.0f + r * (1.0f + r * (0.5f + r * p));
  vu e = (vu)__builtin_convertvector(n, vi) << 23; /* scale by 2^n */
  *px = (vf)((vu)p + e);
}

INLINE void vsig(vf *px) {
  vf e = -*px;
  vexp(&e);
  *px = 1.0f / (1.0f + e);
}

INLINE void vtanh(vf *px) {
  vf x = *px;
  vu sign = (vu)x & 0x80000000u;
  vf a = (vf)((vu)x & 0x7fffffffu), e = -2.0f * a;
  vexp(&e);
  vf t = (1.0f - e) / (1.0f + e);
  vf x2 = x * x, small = x * (1.0f + x2 * (-0.333333333f + x2 * (0.133333333f - x2 * 0.0539682540f)));
  *px = VSEL(a < 0.0625f, small, (vf)((vu)t | sign));
}

INLINE float stanh(float x) {
  vf v = vsplat(x);
  vtanh(&v);
  return v[0];
}
INLINE float sexp(float x) {
  vf v = vsplat(x);
  vexp(&v);
  return v[0];
}

/* ---- tile product ---- */

typedef struct {
  int64_t M, N, K, ra, ca, ldb, ldc, o;
  const float *A, *B;
  float *C;
  int acc, tri;
} mm_t;

/* the k range rows [i, i + mr) need */
INLINE int64_t mm_k0(const mm_t *p, int64_t i) { return p->tri == RT_SK_TRI_AKT && i - p->o > 0 ? i - p->o : 0; }
INLINE int64_t mm_k1(const mm_t *p, int64_t i, int mr) {
  if (p->tri != RT_SK_TRI_AK) return p->K;
  int64_t k = i + mr + p->o;
  return k < 0 ? 0 : k > p->K ? p->K : k;
}

/* C rows [i, i + mr) x columns [j, j + nv VW), accumulators in registers */
INLINE void mm_block(const mm_t *p, int mr, int nv, int64_t i, int64_t j) {
  vf c[4][2];
  float *C = p->C + i * p->ldc + j;
  for (int r = 0; r < mr; r++)
    for (int v = 0; v < nv; v++) c[r][v] = p->acc ? VLD(C + r * p->ldc + v * VW) : vsplat(0.0f);
  const float *A = p->A + i * p->ra, *B = p->B + j;
  for (int64_t k = mm_k0(p, i), k1 = mm_k1(p, i, mr); k < k1; k++) {
    vf b[2];
    for (int v = 0; v < nv; v++) b[v] = VLD(B + k * p->ldb + v * VW);
    for (int r = 0; r < mr; r++) {
      float a = A[r * p->ra + k * p->ca];
      for (int v = 0; v < nv; v++) c[r][v] += a * b[v];
    }
  }
  for (int r = 0; r < mr; r++)
    for (int v = 0; v < nv; v++) VST(C + r * p->ldc + v * VW, c[r][v]);
}

/* the first row column j needs (RT_SK_TRI_C) */
INLINE int64_t mm_row0(const mm_t *p, int64_t j) { return p->tri == RT_SK_TRI_C && j - p->o > 0 ? j - p->o : 0; }

INLINE void mm_cols(const mm_t *p, int nv, int64_t j) {
  int64_t i = mm_row0(p, j);
  for (; i + 4 <= p->M; i += 4) mm_block(p, 4, nv, i, j);
  for (; i < p->M; i++) mm_block(p, 1, nv, i, j);
}

static void mm_col1(const mm_t *p, int64_t j) {
  for (int64_t i = mm_row0(p, j); i < p->M; i++) {
    float *c = p->C + i * p->ldc + j, s = p->acc ? *c : 0.0f;
    for (int64_t k = mm_k0(p, i), k1 = mm_k1(p, i, 1); k < k1; k++)
      s += p->A[i * p->ra + k * p->ca] * p->B[k * p->ldb + j];
    *c = s;
  }
}

#if SK_WIDE
/* The same blocks 16 lanes wide (4 rows x up to 64 columns: 16 of the 32
 * vector registers accumulate), in a function of its own compiled for
 * AVX-512 and called only where the CPU has it; returns the first column
 * left to the 8-lane code. */
typedef float vw __attribute__((vector_size(64)));
typedef float vwu __attribute__((vector_size(64), aligned(4), may_alias));
#define WLD(p) ((vw)(*(const vwu *)(const void *)(p)))
#define WST(p, v) (*(vwu *)(void *)(p) = (v))

INLINE void mmw_block(const mm_t *p, int mr, int nv, int64_t i, int64_t j) {
  vw c[4][4];
  float *C = p->C + i * p->ldc + j;
  for (int r = 0; r < mr; r++)
    for (int v = 0; v < nv; v++) c[r][v] = p->acc ? WLD(C + r * p->ldc + v * 16) : (vw){0};
  const float *A = p->A + i * p->ra, *B = p->B + j;
  for (int64_t k = mm_k0(p, i), k1 = mm_k1(p, i, mr); k < k1; k++) {
    vw b[4];
    for (int v = 0; v < nv; v++) b[v] = WLD(B + k * p->ldb + v * 16);
    for (int r = 0; r < mr; r++) {
      float a = A[r * p->ra + k * p->ca];
      for (int v = 0; v < nv; v++) c[r][v] += a * b[v];
    }
  }
  for (int r = 0; r < mr; r++)
    for (int v = 0; v < nv; v++) WST(C + r * p->ldc + v * 16, c[r][v]);
}

INLINE void mmw_cols(const mm_t *p, int nv, int64_t j) {
  int64_t i = mm_row0(p, j);
  for (; i + 4 <= p->M; i += 4) mmw_block(p, 4, nv, i, j);
  for (; i < p->M; i++) mmw_block(p, 1, nv, i, j);
}

__attribute__((target("arch=x86-64-v4"), noinline)) static int64_t mm_wide(const mm_t *p) {
  int64_t j = 0;
  for (; j + 64 <= p->N; j += 64) mmw_cols(p, 4, j);
  if (j + 32 <= p->N) mmw_cols(p, 2, j), j += 32;
  if (j + 16 <= p->N) mmw_cols(p, 1, j), j += 16;
  return j;
}
#endif

SK_FN void rt_sk_mm(int64_t M, int64_t N, int64_t K, const float *A, int64_t ra, int64_t ca, const float *B,
                    int64_t ldb, float *C, int64_t ldc, int acc, int tri, int64_t o) {
  mm_t p = {M, N, K, ra, ca, ldb, ldc, o, A, B, C, acc, tri};
  int64_t j = 0;
#if SK_WIDE
  if (__builtin_cpu_supports("avx512f")) j = mm_wide(&p);
#endif
  for (; j + 2 * VW <= N; j += 2 * VW) mm_cols(&p, 2, j);
  for (; j + VW <= N; j += VW) mm_cols(&p, 1, j);
  for (; j < N; j++) mm_col1(&p, j);
}

/* dst rows j0.. j0 + 8 = src columns j0.. j0 + 8 of rows i0.. i0 + 8: three
 * rounds of shuffles (pairs, quads, halves) */
INLINE void transpose8(const float *src, int64_t lds, float *dst, int64_t ldd) {
  vf r[8], t[8], u[8];
  for (int i = 0; i < 8; i++) r[i] = VLD(src + i * lds);
  for (int i = 0; i < 8; i += 2) {
    t[i] = __builtin_shufflevector(r[i], r[i + 1], 0, 8, 1, 9, 4, 12, 5, 13);
    t[i + 1] = __builtin_shufflevector(r[i], r[i + 1], 2, 10, 3, 11, 6, 14, 7, 15);
  }
  for (int i = 0; i < 8; i += 4)
    for (int h = 0; h < 2; h++) {
      u[i + 2 * h] = __builtin_shufflevector(t[i + h], t[i + h + 2], 0, 1, 8, 9, 4, 5, 12, 13);
      u[i + 2 * h + 1] = __builtin_shufflevector(t[i + h], t[i + h + 2], 2, 3, 10, 11, 6, 7, 14, 15);
    }
  for (int c = 0; c < 4; c++) { /* u[c]: columns c, c + 4 of rows 0-3; u[c + 4]: of rows 4-7 */
    VST(dst + c * ldd, __builtin_shufflevector(u[c], u[c + 4], 0, 1, 2, 3, 8, 9, 10, 11));
    VST(dst + (c + 4) * ldd, __builtin_shufflevector(u[c], u[c + 4], 4, 5, 6, 7, 12, 13, 14, 15));
  }
}

SK_FN void rt_sk_transpose(const float *src, int64_t lds, int64_t rows, int64_t cols, float *dst, int64_t ldd) {
  int64_t i = 0;
  for (; i + 8 <= rows; i += 8) {
    int64_t j = 0;
    for (; j + 8 <= cols; j += 8) transpose8(src + i * lds + j, lds, dst + j * ldd + i, ldd);
    for (; j < cols; j++)
      for (int64_t r = i; r < i + 8; r++) dst[j * ldd + r] = src[r * lds + j];
  }
  for (; i < rows; i++)
    for (int64_t j = 0; j < cols; j++) dst[j * ldd + i] = src[i * lds + j];
}

/* ---- attention rows ---- */

SK_FN float rt_sk_att_row(float *s, int64_t n, int64_t valid, float scale, float *m, float *l) {
  if (valid <= 0) {
    memset(s, 0, sizeof(float) * (size_t)n);
    return 1.0f;
  }
  vf mx = vsplat(-INFINITY), zero = vsplat(0.0f);
  for (int64_t j = 0; j < valid; j += VW) {
    vf x = VSEL(vbelow(j, valid), VLD(s + j) * scale, mx);
    mx = VSEL(x > mx, x, mx);
  }
  float mnew = hmax(&mx) > *m ? hmax(&mx) : *m, corr = sexp(*m - mnew); /* ~0 when m was -inf */
  vf sum = zero;
  int64_t j = 0;
  for (; j < valid; j += VW) {
    vf e = VLD(s + j) * scale - mnew;
    vexp(&e);
    e = VSEL(vbelow(j, valid), e, zero);
    sum += e;
    VST(s + j, e);
  }
  for (; j < n; j += VW) VST(s + j, zero);
  *l = *l * corr + hsum(&sum), *m = mnew;
  return corr;
}

#if SK_WIDE
/* rt_sk_softmax_row 16 lanes wide, for AVX-512 only (as mm_wide): the
 * exponential is a quarter of GPT-2-small's heads at 8 lanes. x <= 0 here
 * (s - max), so only the lower clamp is needed. */
typedef int32_t wi __attribute__((vector_size(64)));
typedef uint32_t wu __attribute__((vector_size(64)));
#define WSEL(m, a, b) ((vw)(((wi)(a) & (m)) | ((wi)(b) & ~(m))))

INLINE wi wbelow(int64_t j0, int64_t lim) {
  int32_t r = lim - j0 > 16 ? 16 : lim - j0 < 0 ? 0 : (int32_t)(lim - j0);
  wi lane = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
  return lane < (wi){0} + r;
}

INLINE vw wexp_neg(const vw *px) {
  vw x = *px, lo = (vw){0} - 87.0f;
  x = WSEL(x > lo, x, lo); /* NaN: lo */
  vw n = x * 1.44269504f + 12582912.0f;
  n = n - 12582912.0f;
  vw r = x - n * 0.693145752f - n * 1.42860677e-6f;
  vw p = 0.166666672f + r * (0.0416666418f + r * (0.00833342969f + r * 0.00138887367f));
  p = 1.0f + r * (1.0f + r * (0.5f + r * p));
  wu e = (wu)__builtin_convertvector(n, wi) << 23;
  return (vw)((wu)p + e);
}

/* lanes' maximum and sum: a tree of shuffles */
INLINE float wmax(const vw *pv) {
  vw v = *pv, t = __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7);
  v = WSEL(t > v, t, v);
  t = __builtin_shufflevector(v, v, 4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11);
  v = WSEL(t > v, t, v);
  t = __builtin_shufflevector(v, v, 2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13);
  v = WSEL(t > v, t, v);
  t = __builtin_shufflevector(v, v, 1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14);
  v = WSEL(t > v, t, v);
  return v[0];
}
INLINE float wsum(const vw *pv) {
  vw v = *pv;
  v += __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7);
  v += __builtin_shufflevector(v, v, 4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11);
  v += __builtin_shufflevector(v, v, 2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13);
  v += __builtin_shufflevector(v, v, 1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14);
  return v[0];
}

/* one row: s[0, valid) -> exp(scale (s - max)), 0 on [valid, n); its sum */
INLINE float softmax_wide_row(float *s, int64_t n, int64_t valid, float scale) {
  vw mx = (vw){0} - INFINITY, zero = {0}, sum = zero;
  int64_t j = 0;
  for (; j + 16 <= valid; j += 16) {
    vw x = WLD(s + j);
    mx = WSEL(x > mx, x, mx);
  }
  if (j < valid) {
    vw x = WSEL(wbelow(j, valid), WLD(s + j), mx);
    mx = WSEL(x > mx, x, mx);
  }
  float m = wmax(&mx);
  for (j = 0; j + 16 <= valid; j += 16) {
    vw e = (WLD(s + j) - m) * scale;
    e = wexp_neg(&e);
    sum += e;
    WST(s + j, e);
  }
  if (j < valid) {
    vw e = (WLD(s + j) - m) * scale;
    e = wexp_neg(&e);
    e = WSEL(wbelow(j, valid), e, zero);
    sum += e;
    WST(s + j, e), j += 16;
  }
  for (; j < n; j += 16) WST(s + j, zero);
  return wsum(&sum);
}

__attribute__((target("arch=x86-64-v4"), noinline)) static void softmax_wide(float *s, int64_t ld, int64_t rows,
                                                                              int64_t n, int64_t valid0, int64_t step,
                                                                              float scale, float *inv) {
  for (int64_t r = 0; r < rows; r++) inv[r] = 1.0f / softmax_wide_row(s + r * ld, n, valid0 + r * step, scale);
}
#endif

SK_FN void rt_sk_softmax_rows(float *s, int64_t ld, int64_t rows, int64_t n, int64_t valid0, int64_t step, float scale,
                              float *inv) {
#if SK_WIDE
  if (__builtin_cpu_supports("avx512f")) {
    softmax_wide(s, ld, rows, n, valid0, step, scale, inv);
    return;
  }
#endif
  for (int64_t r = 0; r < rows; r++, s += ld) {
    int64_t valid = valid0 + r * step;
    vf mx = vsplat(-INFINITY), zero = vsplat(0.0f), sum = zero;
    for (int64_t j = 0; j < valid; j += VW) {
      vf x = VSEL(vbelow(j, valid), VLD(s + j), mx);
      mx = VSEL(x > mx, x, mx);
    }
    float m = hmax(&mx);
    int64_t j = 0;
    for (; j < valid; j += VW) {
      vf e = (VLD(s + j) - m) * scale;
      vexp(&e);
      e = VSEL(vbelow(j, valid), e, zero);
      sum += e;
      VST(s + j, e);
    }
    for (; j < n; j += VW) VST(s + j, zero);
    inv[r] = 1.0f / hsum(&sum);
  }
}

SK_FN void rt_sk_att_drow(float *p, float *dp, int64_t n, int64_t valid, float scale, float L, float D) {
  vf zero = vsplat(0.0f);
  int64_t j = 0;
  for (; j < valid; j += VW) {
    vi ok = vbelow(j, valid);
    vf e = VLD(p + j) * scale - L;
    vexp(&e);
    e = VSEL(ok, e, zero);
    VST(p + j, e);
    VST(dp + j, VSEL(ok, e * (VLD(dp + j) - D) * scale, zero));
  }
  for (; j < n; j += VW) VST(p + j, zero), VST(dp + j, zero);
}

SK_FN void rt_sk_scale(float *x, int64_t n, float a) {
  int64_t j = 0;
  for (; j + VW <= n; j += VW) VST(x + j, VLD(x + j) * a);
  for (; j < n; j++) x[j] *= a;
}

SK_FN void rt_sk_add(float *dst, const float *a, const float *b, int64_t n) {
  int64_t j = 0;
  for (; j + VW <= n; j += VW) VST(dst + j, VLD(a + j) + VLD(b + j));
  for (; j < n; j++) dst[j] = a[j] + b[j];
}

SK_FN void rt_sk_scale_add(float *x, int64_t n, float a, const float *b) {
  int64_t j = 0;
  for (; j + VW <= n; j += VW) VST(x + j, VLD(x + j) * a + VLD(b + j));
  for (; j < n; j++) x[j] = x[j] * a + b[j];
}

SK_FN float rt_sk_dot(const float *a, const float *b, int64_t n) {
  vf s = vsplat(0.0f);
  int64_t j = 0;
  for (; j + VW <= n; j += VW) s += VLD(a + j) * VLD(b + j);
  float t = hsum(&s);
  for (; j < n; j++) t += a[j] * b[j];
  return t;
}

/* ---- column sums ---- */

enum { CS_W = 64 };

INLINE void colsum_block(const float *a, int64_t m, int64_t w, int64_t lda, double *out) {
  double acc[CS_W] = {0};
  for (int64_t i = 0; i < m; i++)
    for (int64_t j = 0; j < w; j++) acc[j] += a[i * lda + j];
  memcpy(out, acc, sizeof(double) * (size_t)w);
}

SK_FN void rt_sk_colsum(const float *a, int64_t m, int64_t n, int64_t lda, double *out) {
  int64_t j = 0;
  for (; j + CS_W <= n; j += CS_W) colsum_block(a + j, m, CS_W, lda, out + j); /* constant width: vectorised */
  if (j < n) colsum_block(a + j, m, n - j, lda, out + j);
}

/* ---- LSTM ---- */

/* y[0, n) = f(y + x) (x may be NULL), f sigmoid or tanh; a tail through a
 * padded copy */
INLINE void lstm_act(float *y, const float *x, int64_t n, int tanh_) {
  int64_t j = 0;
  for (; j + VW <= n; j += VW) {
    vf v = x ? VLD(y + j) + VLD(x + j) : VLD(y + j);
    tanh_ ? vtanh(&v) : vsig(&v);
    VST(y + j, v);
  }
  if (j < n) {
    float t[VW] = {0}, u[VW] = {0};
    memcpy(t, y + j, sizeof(float) * (size_t)(n - j));
    if (x) memcpy(u, x + j, sizeof(float) * (size_t)(n - j));
    vf v = VLD(t) + VLD(u);
    tanh_ ? vtanh(&v) : vsig(&v);
    VST(t, v);
    memcpy(y + j, t, sizeof(float) * (size_t)(n - j));
  }
}

SK_FN void rt_sk_lstm_gates(float *g, const float *gh, int64_t rows, int64_t h) {
  for (int64_t r = 0; r < rows; r++, g += 4 * h) {
    const float *x = gh ? gh + r * 4 * h : NULL;
    lstm_act(g, x, 2 * h, 0); /* i, f */
    lstm_act(g + 2 * h, x ? x + 2 * h : NULL, h, 1);
    lstm_act(g + 3 * h, x ? x + 3 * h : NULL, h, 0);
  }
}

SK_FN void rt_sk_lstm_cell(const float *g, float *c, int64_t T, int64_t h) {
  for (int64_t j = 0; j < h; j++) c[j] = g[j] * g[2 * h + j];
  for (int64_t t = 1; t < T; t++) {
    const float *gt = g + t * 4 * h, *cp = c + (t - 1) * h;
    float *ct = c + t * h;
    for (int64_t j = 0; j < h; j++) ct[j] = gt[j] * gt[2 * h + j] + gt[h + j] * cp[j];
  }
}

SK_FN void rt_sk_lstm_bwd(const float *g, const float *cl, const float *cp, const float *dy, const float *drec,
                          float *dc, float *da, int64_t h) {
  int64_t j = 0;
  for (; j + VW <= h; j += VW) {
    vf ig = VLD(g + j), fg = VLD(g + h + j), gg = VLD(g + 2 * h + j), og = VLD(g + 3 * h + j), tc = VLD(cl + j);
    vtanh(&tc);
    vf dh = VLD(dy + j) + VLD(drec + j), dct = VLD(dc + j) + dh * og * (1.0f - tc * tc);
    vf c0 = cp ? VLD(cp + j) : vsplat(0.0f);
    VST(da + j, dct * gg * ig * (1.0f - ig));
    VST(da + h + j, dct * c0 * fg * (1.0f - fg));
    VST(da + 2 * h + j, dct * ig * (1.0f - gg * gg));
    VST(da + 3 * h + j, dh * tc * og * (1.0f - og));
    VST(dc + j, dct * fg);
  }
  for (; j < h; j++) {
    float ig = g[j], fg = g[h + j], gg = g[2 * h + j], og = g[3 * h + j], tc = stanh(cl[j]);
    float dh = dy[j] + drec[j], dct = dc[j] + dh * og * (1.0f - tc * tc), c0 = cp ? cp[j] : 0.0f;
    da[j] = dct * gg * ig * (1.0f - ig);
    da[h + j] = dct * c0 * fg * (1.0f - fg);
    da[2 * h + j] = dct * ig * (1.0f - gg * gg);
    da[3 * h + j] = dh * tc * og * (1.0f - og);
    dc[j] = dct * fg;
  }
}

/* n (< 8) floats at p into a zero-padded vector, and back */
INLINE vf vload_part(const float *p, int64_t n) {
  float t[VW] = {0};
  memcpy(t, p, sizeof(float) * (size_t)n);
  return VLD(t);
}
INLINE void vstore_part(float *p, const vf *v, int64_t n) { memcpy(p, v, sizeof(float) * (size_t)n); }

/* lanes [j, j + w) of one forward step (w = VW, or the tail) */
INLINE void lstm_fwd_lanes(const float *g, float *c, float *y, int first, int64_t h, int64_t j, int64_t w) {
  vf ig, fg, gg, og, cp = vsplat(0.0f);
  if (w == VW) {
    ig = VLD(g + j), fg = VLD(g + h + j), gg = VLD(g + 2 * h + j), og = VLD(g + 3 * h + j);
    if (!first) cp = VLD(c + j);
  } else {
    ig = vload_part(g + j, w), fg = vload_part(g + h + j, w), gg = vload_part(g + 2 * h + j, w);
    og = vload_part(g + 3 * h + j, w);
    if (!first) cp = vload_part(c + j, w);
  }
  vsig(&ig), vsig(&fg), vtanh(&gg), vsig(&og);
  vf cn = ig * gg + fg * cp, tc = cn;
  vtanh(&tc);
  vf yn = og * tc;
  if (w == VW) {
    VST(c + j, cn), VST(y + j, yn);
  } else {
    vstore_part(c + j, &cn, w), vstore_part(y + j, &yn, w);
  }
}

SK_FN void rt_sk_lstm_fwd(const float *g, float *c, float *y, int first, int64_t h) {
  int64_t j = 0;
  for (; j + VW <= h; j += VW) lstm_fwd_lanes(g, c, y, first, h, j, VW);
  if (j < h) lstm_fwd_lanes(g, c, y, first, h, j, h - j);
}

/* ---- GRU ---- */

/* w floats at p (w = VW, or a tail through a zero-padded copy) */
INLINE vf vload_w(const float *p, int64_t w) { return w == VW ? VLD(p) : vload_part(p, w); }
INLINE void vstore_w(float *p, const vf *v, int64_t w) {
  if (w == VW) VST(p, *v);
  else vstore_part(p, v, w);
}

/* lanes [j, j + w) of one backward step (see rt_seqk.h rt_sk_gru_bwd) */
INLINE void gru_bwd_lanes(const float *a, const float *ah, const float *hp, const float *dy, const float *drec,
                          float *da, float *dah, float *dd, int64_t h, int64_t j, int64_t w) {
  vf rg = vload_w(a + j, w) + vload_w(ah + j, w), zg = vload_w(a + h + j, w) + vload_w(ah + h + j, w);
  vsig(&rg), vsig(&zg);
  vf ahn = vload_w(ah + 2 * h + j, w), ng = vload_w(a + 2 * h + j, w) + rg * ahn;
  vtanh(&ng);
  vf dh = vload_w(dy + j, w) + vload_w(drec + j, w);
  vf dn = dh * (1.0f - zg) * (1.0f - ng * ng), dz = dh * (vload_w(hp + j, w) - ng) * zg * (1.0f - zg);
  vf dr = dn * ahn * rg * (1.0f - rg), dnr = dn * rg, dhz = dh * zg;
  vstore_w(da + j, &dr, w), vstore_w(dah + j, &dr, w);
  vstore_w(da + h + j, &dz, w), vstore_w(dah + h + j, &dz, w);
  vstore_w(da + 2 * h + j, &dn, w), vstore_w(dah + 2 * h + j, &dnr, w);
  vstore_w(dd + j, &dhz, w);
}

SK_FN void rt_sk_gru_bwd(const float *a, const float *ah, const float *hp, const float *dy, const float *drec,
                         float *da, float *dah, float *dd, int64_t h) {
  int64_t j = 0;
  for (; j + VW <= h; j += VW) gru_bwd_lanes(a, ah, hp, dy, drec, da, dah, dd, h, j, VW);
  if (j < h) gru_bwd_lanes(a, ah, hp, dy, drec, da, dah, dd, h, j, h - j);
}

/* lanes [j, j + w) of one forward step */
INLINE void gru_fwd_lanes(const float *a, const float *ah, const float *hp, float *y, int64_t h, int64_t j, int64_t w) {
  vf rg = vload_w(a + j, w) + vload_w(ah + j, w), zg = vload_w(a + h + j, w) + vload_w(ah + h + j, w);
  vsig(&rg), vsig(&zg);
  vf ng = vload_w(a + 2 * h + j, w) + rg * vload_w(ah + 2 * h + j, w);
  vtanh(&ng);
  vf yn = (1.0f - zg) * ng;
  if (hp) yn += zg * vload_w(hp + j, w);
  vstore_w(y + j, &yn, w);
}

SK_FN void rt_sk_gru_fwd(const float *a, const float *ah, const float *hp, float *y, int64_t h) {
  int64_t j = 0;
  for (; j + VW <= h; j += VW) gru_fwd_lanes(a, ah, hp, y, h, j, VW);
  if (j < h) gru_fwd_lanes(a, ah, hp, y, h, j, h - j);
}
