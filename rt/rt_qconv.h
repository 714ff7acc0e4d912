/* rt_qconv.h -- int8 conv2d (IR op QCONV2D, lathe_rt_qconv2d) as im2col and
 * the int8 product: what the kernel (rt/rt_qconv.c) and its reference in the
 * interpreter (ir/interp_qconv.c) share, so that both build the same rows.
 *
 * The conv's weight w [O, C, KH, KW] (groups 1) is the product's [N = O,
 * K = KH*KW*C] matrix (k = (kh * KW + kw) * C + c: channels last), stored as int8-dynamic / static int8 store a dense
 * weight (rt/rt_quant.h: blocked [Np, Kp], scales per output channel, the
 * u8 offsets). Row m = (n, oh, ow) of the im2col matrix holds the inputs the
 * window of output pixel (oh, ow) of image n covers, in that order (kh, kw,
 * c), zeros where the window hangs over the padding. The product gives
 * y [N*OH*OW, O]; the result is its transpose per image, [N, O, OH, OW].
 * A 1-d conv is the 2-d one with H = KH = OH = 1 (ir/conv.h). */
#ifndef LATHE_RT_QCONV_H
#define LATHE_RT_QCONV_H

#include <stdint.h>

typedef struct {
  int64_t N, C, H, W, O, KH, KW, OH, OW, s, dil, padT, padL;
} rt_qc_geom;

/* The geometry travels as 8 integers (the generated call's arguments are
 * few): H | W << 32, KH | KW << 16 | stride << 32 | dilation << 48, ... The
 * shape rule keeps each field in its bits. */
static inline rt_qc_geom rt_qc_unpack(int64_t N, int64_t C, int64_t hw, int64_t O, int64_t ohw, int64_t kern,
                                      int64_t pad) {
  rt_qc_geom g = {.N = N, .C = C, .O = O};
  g.H = hw & 0xffffffff, g.W = hw >> 32, g.OH = ohw & 0xffffffff, g.OW = ohw >> 32;
  g.KH = kern & 0xffff, g.KW = (kern >> 16) & 0xffff, g.s = (kern >> 32) & 0xffff, g.dil = kern >> 48;
  g.padT = pad & 0xffffffff, g.padL = pad >> 32;
  return g;
}

/* row m of the im2col matrix into r [KH*KW*C], in the order (kh, kw, c):
 * each window position's C channels together, as the static int8 kernel
 * unrolls its channels-last bytes (zeros where the window leaves the image) */
static inline void rt_qc_row(const float *x, const rt_qc_geom *g, int64_t m, float *r) {
  int64_t P = g->OH * g->OW, n = m / P, oh = (m % P) / g->OW, ow = m % g->OW, HW = g->H * g->W;
  const float *xi = x + n * g->C * HW;
  for (int64_t i = 0; i < g->KH; i++) {
    int64_t h = oh * g->s + i * g->dil - g->padT;
    for (int64_t j = 0; j < g->KW; j++, r += g->C) {
      int64_t v = ow * g->s + j * g->dil - g->padL;
      int in = h >= 0 && h < g->H && v >= 0 && v < g->W;
      for (int64_t c = 0; c < g->C; c++) r[c] = in ? xi[c * HW + h * g->W + v] : 0.0f;
    }
  }
}

#endif
