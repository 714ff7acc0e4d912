/* rt_qconv.c -- int8 conv2d (IR op QCONV2D): the input unrolled into im2col
 * rows (rt_qconv.h), one int8 product with the conv's weights
 * (lathe_rt_qmatmul: the same integer kernels, row quantization and
 * bias/relu epilogue as a dense layer's), then each image's [OH*OW, O]
 * block transposed into [O, OH, OW]. One large product over every image's
 * pixels keeps the integer kernels' 4-row by 16-column blocks full. */
#include "lathe_rt.h"
#include "rt_qconv.h"
#include "threadpool.h"

enum { QC_GRAIN = 1 << 14 }; /* copied floats per part at least */

typedef struct {
  const float *x;
  float *cols, *y, *out;
  rt_qc_geom g;
  int64_t K;
} qc_job;

static void im2col_part(void *ctx, int64_t lo, int64_t hi, int part) {
  (void)part;
  const qc_job *j = ctx;
  for (int64_t m = lo; m < hi; m++) rt_qc_row(j->x, &j->g, m, j->cols + m * j->K);
}

/* images [lo, hi): y [P, O] to out [O, P] */
static void untranspose_part(void *ctx, int64_t lo, int64_t hi, int part) {
  (void)part;
  const qc_job *j = ctx;
  int64_t P = j->g.OH * j->g.OW, O = j->g.O;
  for (int64_t n = lo; n < hi; n++)
    for (int64_t o = 0; o < O; o++) {
      const float *y = j->y + n * P * O + o;
      float *d = j->out + (n * O + o) * P;
      for (int64_t p = 0; p < P; p++) d[p] = y[p * O];
    }
}

static int64_t align64(int64_t b) { return (b + 63) / 64 * 64; }

int64_t lathe_rt_qconv2d_scratch_bytes(int64_t mode, int64_t N, int64_t C, int64_t hw, int64_t O, int64_t ohw,
                                       int64_t kern) {
  rt_qc_geom g = rt_qc_unpack(N, C, hw, O, ohw, kern, 0);
  int64_t K = C * g.KH * g.KW, M = N * g.OH * g.OW;
  return align64(M * K * 4) + align64(M * O * 4) + lathe_rt_qmatmul_scratch_bytes(mode, M, K, O) + 64;
}

void lathe_rt_qconv2d(float *out, const float *x, const void *w, const float *s, const int32_t *c, const float *bias,
                      void *scr, int64_t N, int64_t C, int64_t hw, int64_t O, int64_t ohw, int64_t kern, int64_t pad,
                      int64_t flags) {
  qc_job j = {.x = x, .out = out, .g = rt_qc_unpack(N, C, hw, O, ohw, kern, pad)};
  int64_t mode = flags & 0xff, isa = (flags >> 8) & 0xff, act = (flags >> 16) & 0xff;
  int64_t P = j.g.OH * j.g.OW, M = N * P;
  j.K = C * j.g.KH * j.g.KW;
  j.cols = scr;
  j.y = (float *)(void *)((char *)scr + align64(M * j.K * 4));
  void *qs = (char *)j.y + align64(M * O * 4);
  rt_pool_for(M, j.K >= QC_GRAIN ? 1 : QC_GRAIN / j.K, im2col_part, &j);
  lathe_rt_qmatmul(j.y, j.cols, w, s, c, bias, qs, mode, M, j.K, O, isa, act);
  int64_t per = P * O;
  rt_pool_for(N, per >= QC_GRAIN ? 1 : QC_GRAIN / per, untranspose_part, &j);
}
