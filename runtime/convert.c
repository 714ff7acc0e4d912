/* convert.c -- dtype conversion. Half-precision formats round to nearest
 * even; infinities and NaNs survive every conversion between float types.
 * Loads and stores go through memcpy so buffers need no alignment (they may
 * point into a file image). Assumes a little-endian host, as the file
 * formats do. */
#include <math.h>
#include <string.h>
#include "runtime.h"

static uint32_t f32_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}

static float bits_f32(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

float rt_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
  if (exp == 0x1f) return bits_f32(sign | 0x7f800000u | (mant << 13)); /* inf, nan */
  if (exp != 0) return bits_f32(sign | ((exp + 112) << 23) | (mant << 13));
  /* zero or subnormal: mant * 2^-24, exact in f32 */
  float v = (float)mant * 0x1p-24f;
  return sign ? -v : v;
}

/* Round the integer m / 2^shift to nearest, ties to even. */
static uint32_t round_shift(uint32_t m, int shift) {
  if (shift >= 32) return 0;
  uint32_t q = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
  return q + (rem > half || (rem == half && (q & 1)));
}

uint16_t rt_f32_to_f16(float f) {
  uint32_t u = f32_bits(f);
  uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return sign | 0x7e00 | (uint16_t)((a >> 13) & 0x3ff); /* quiet nan */
  if (a >= 0x47800000u) return sign | 0x7c00;       /* >= 2^16: inf */
  if (a < 0x38800000u) {                            /* below 2^-14: f16 subnormal */
    int e = (int)(a >> 23);
    if (e == 0) return sign;                        /* f32 subnormal: far below 2^-25 */
    uint32_t m = (a & 0x7fffffu) | 0x800000u;       /* value = m * 2^(e-150) */
    return sign | (uint16_t)round_shift(m, 126 - e); /* in units of 2^-24 */
  }
  /* normal: rebias the exponent, round 13 mantissa bits away; a carry
   * propagates into the exponent (and to inf at the top) as it should */
  uint32_t r = a - (112u << 23);
  r = round_shift(r, 13);
  return sign | (uint16_t)r;
}

float rt_bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

uint16_t rt_f32_to_bf16(float f) {
  uint32_t u = f32_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040); /* quiet nan */
  return (uint16_t)(round_shift(u & 0x7fffffffu, 16) | ((u >> 16) & 0x8000));
}

/* ---- generic conversion: float sources go through double, integer sources
 * through int64 (so i64 values survive i64 -> i64-like paths exactly). ---- */

typedef double (*load_f)(const unsigned char *p);
typedef int64_t (*load_i)(const unsigned char *p);
typedef void (*store_f)(unsigned char *p, double v);
typedef void (*store_i)(unsigned char *p, int64_t v);

#define LOADER(NAME, T, EXPR) \
  static double NAME(const unsigned char *p) { T x; memcpy(&x, p, sizeof x); return (double)(EXPR); }
LOADER(ld_f32, float, x)
LOADER(ld_f16, uint16_t, rt_f16_to_f32(x))
LOADER(ld_bf16, uint16_t, rt_bf16_to_f32(x))
#undef LOADER

#define LOADER(NAME, T, EXPR) \
  static int64_t NAME(const unsigned char *p) { T x; memcpy(&x, p, sizeof x); return (int64_t)(EXPR); }
LOADER(ld_i32, int32_t, x)
LOADER(ld_i64, int64_t, x)
LOADER(ld_i8, int8_t, x)
LOADER(ld_u8, uint8_t, x)
LOADER(ld_bool, uint8_t, x != 0)
#undef LOADER

/* Float to integer truncates toward zero; NaN becomes 0 and out-of-range
 * values saturate (C leaves those undefined). */
static int64_t trunc_sat(double v, double lo, double hi) {
  if (isnan(v)) return 0;
  if (v <= lo) return (int64_t)lo;
  if (v >= hi) return v >= 0x1p63 ? INT64_MAX : (int64_t)hi;
  return (int64_t)v;
}

#define STORER(NAME, T, EXPR) \
  static void NAME(unsigned char *p, double v) { T x = (EXPR); memcpy(p, &x, sizeof x); }
STORER(stf_f32, float, (float)v)
STORER(stf_f16, uint16_t, rt_f32_to_f16((float)v))
STORER(stf_bf16, uint16_t, rt_f32_to_bf16((float)v))
STORER(stf_i32, int32_t, (int32_t)trunc_sat(v, INT32_MIN, INT32_MAX))
STORER(stf_i64, int64_t, trunc_sat(v, -0x1p63, 0x1p63))
STORER(stf_i8, int8_t, (int8_t)trunc_sat(v, INT8_MIN, INT8_MAX))
STORER(stf_u8, uint8_t, (uint8_t)trunc_sat(v, 0, UINT8_MAX))
STORER(stf_bool, uint8_t, v != 0)
#undef STORER

/* Integer to narrower integer wraps modulo 2^n, as the usual two's
 * complement conversion does. */
#define STORER(NAME, T, EXPR) \
  static void NAME(unsigned char *p, int64_t v) { T x = (EXPR); memcpy(p, &x, sizeof x); }
STORER(sti_f32, float, (float)v)
STORER(sti_f16, uint16_t, rt_f32_to_f16((float)v))
STORER(sti_bf16, uint16_t, rt_f32_to_bf16((float)v))
STORER(sti_i32, int32_t, (int32_t)(uint32_t)v)
STORER(sti_i64, int64_t, v)
STORER(sti_i8, int8_t, (int8_t)(uint8_t)v)
STORER(sti_u8, uint8_t, (uint8_t)v)
STORER(sti_bool, uint8_t, v != 0)
#undef STORER

/* Indexed by lathe_dtype. */
static const struct {
  size_t size;
  load_f lf;   /* set for float dtypes */
  load_i li;   /* set for integer dtypes */
  store_f sf;
  store_i si;
} conv[] = {
  [LATHE_F32] = {4, ld_f32, NULL, stf_f32, sti_f32},
  [LATHE_F16] = {2, ld_f16, NULL, stf_f16, sti_f16},
  [LATHE_BF16] = {2, ld_bf16, NULL, stf_bf16, sti_bf16},
  [LATHE_I32] = {4, NULL, ld_i32, stf_i32, sti_i32},
  [LATHE_I64] = {8, NULL, ld_i64, stf_i64, sti_i64},
  [LATHE_I8] = {1, NULL, ld_i8, stf_i8, sti_i8},
  [LATHE_U8] = {1, NULL, ld_u8, stf_u8, sti_u8},
  [LATHE_BOOL] = {1, NULL, ld_bool, stf_bool, sti_bool},
};
#define NCONV ((int)(sizeof conv / sizeof conv[0]))

/* The common weight conversions get direct loops. */
static int convert_fast(const unsigned char *s, lathe_dtype st, unsigned char *d, lathe_dtype dt,
                        int64_t n) {
  uint16_t h;
  float f;
  if (st == LATHE_F16 && dt == LATHE_F32) {
    for (int64_t i = 0; i < n; i++, s += 2, d += 4) {
      memcpy(&h, s, 2);
      f = rt_f16_to_f32(h);
      memcpy(d, &f, 4);
    }
  } else if (st == LATHE_BF16 && dt == LATHE_F32) {
    for (int64_t i = 0; i < n; i++, s += 2, d += 4) {
      memcpy(&h, s, 2);
      f = rt_bf16_to_f32(h);
      memcpy(d, &f, 4);
    }
  } else if (st == LATHE_F32 && (dt == LATHE_F16 || dt == LATHE_BF16)) {
    for (int64_t i = 0; i < n; i++, s += 4, d += 2) {
      memcpy(&f, s, 4);
      h = dt == LATHE_F16 ? rt_f32_to_f16(f) : rt_f32_to_bf16(f);
      memcpy(d, &h, 2);
    }
  } else {
    return 0;
  }
  return 1;
}

void rt_convert(const void *src, lathe_dtype st, void *dst, lathe_dtype dt, int64_t n) {
  if (n <= 0 || (int)st < 0 || (int)st >= NCONV || (int)dt < 0 || (int)dt >= NCONV) return;
  const unsigned char *s = src;
  unsigned char *d = dst;
  if (st == dt && st != LATHE_BOOL) {
    memmove(d, s, (size_t)n * conv[st].size);
    return;
  }
  if (convert_fast(s, st, d, dt, n)) return;
  size_t ss = conv[st].size, ds = conv[dt].size;
  if (conv[st].lf) {
    for (int64_t i = 0; i < n; i++) conv[dt].sf(d + i * ds, conv[st].lf(s + i * ss));
  } else {
    for (int64_t i = 0; i < n; i++) conv[dt].si(d + i * ds, conv[st].li(s + i * ss));
  }
}
