/* rt_dconv_rows.h -- the direct conv2d's row path (rt/rt_dconv_rows.c):
 * 16 output pixels of one image (whole rows) in a zmm, for small "same"
 * convolutions whose image is at most 64 pixels (the digits CNN's layers).
 * Internal to rt/rt_dconv.c. */
#ifndef LATHE_RT_DCONV_ROWS_H
#define LATHE_RT_DCONV_ROWS_H

#include <stdint.h>

#include "rt_qconv.h"

/* 16-pixel blocks an image, window taps; input channels: with more, the
 * image groups' fixed work per image is shared by enough products that
 * skipping the padding's taps wins (the dense digits CNN's conv2, 16 -> 32
 * channels on 4x4: 0.101 ms on the groups, 0.131 on rows, LATHE_PROFILE
 * at batch 128, one thread) */
enum { RW_MAXB = 4, RW_MAXT = 9, RW_MAXC = 8 };

typedef struct {
  float *out;
  const float *x, *wt, *bias; /* wt [KH*KW][C][Op], bias [Op] (padded, never NULL) */
  rt_qc_geom g;
  int64_t Op, act, pk, P, PO;
  /* per block k and tap t (k * KH*KW + t): the input blocks the tap's
   * pixels come from (lo, hi: offsets in floats), the lanes' sources in
   * the pair (0..31) and which lanes are inside the image */
  int32_t lo[RW_MAXB * RW_MAXT], hi[RW_MAXB * RW_MAXT];
  uint16_t mask[RW_MAXB * RW_MAXT];
  int32_t idx[RW_MAXB * RW_MAXT][16];
  int32_t wperm[16]; /* a fused 2x2 pool: each window's 4 pixels, window positions outermost */
} rw_job;

/* Whether the row path takes this geometry (isa: LATHE_RT_CONV_*; pk: a
 * fused pool's window, 0 none) and, if so, fills j's tables. */
int rt_dconv_rows_init(rw_job *j, int64_t isa);

/* images [lo, hi) */
void rt_dconv_rows_part(const rw_job *j, int64_t lo, int64_t hi);

#endif
