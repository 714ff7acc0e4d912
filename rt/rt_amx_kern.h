/* rt_amx_kern.h -- the AMX product kernels, written once over
 * rt/rt_amx_tile.h's operations and included twice by rt/rt_amx.c: with
 * AMX_NATIVE (the instructions) and without (the emulator). AMX_FN names
 * each copy's functions; AMX_ATTR is its target attribute.
 *
 * Both kernels keep 2 row tiles (16 rows each) by 2 column blocks (16
 * columns each) in the 4 accumulator tiles, the rows in tiles 4 and 5, the
 * blocks' weights in 6 and 7 (amx_cfg_set), and step K by one tile row of
 * 64 bytes: 64 int8 inputs (TDPBUSD) or 32 bf16 (TDPBF16PS). A tail of
 * rows (M not a multiple of 32) is a configuration with fewer rows; a tail
 * of columns a single block (the weights are padded to 16 columns, the
 * padding's outputs never written); K is padded with zeros by the callers
 * (int8: to 64 inputs, the offset bytes against zero weights; bf16: to 32).
 * The accumulators go to a 32 x 32 buffer, and the epilogue (rt/rt_amx.c)
 * writes the outputs from it. */

/* rows [0, M) by column blocks [b0, b1) of the int8 product (rt_qgemm_args:
 * xq u8 [M, Kp] = x + 128, w the dq8 blocks, whose 16 x 64 bytes per 64
 * inputs are exactly a TDPBUSD source tile: row k/4 holds the 16 columns'
 * inputs k..k+3) */
static AMX_ATTR void AMX_FN(amx_i8)(const rt_qgemm_args *a, int64_t b0, int64_t b1) {
  AMX_STATE
  amx_cfg cfg;
  int32_t acc[32][32];
  int cur = -1; /* the loaded configuration: r0, r1, nb packed */
  const int64_t Kp = a->Kp;
  for (int64_t b = b0; b < b1; b += 2) {
    int nb = b1 - b >= 2 ? 2 : 1;
    const int8_t *w0 = a->w + b * 16 * Kp, *w1 = w0 + 16 * Kp;
    for (int64_t m0 = 0; m0 < a->M; m0 += 32) {
      int64_t left = a->M - m0;
      int r0 = left >= 16 ? 16 : (int)left, r1 = left >= 32 ? 16 : left > 16 ? (int)left - 16 : 0;
      if (cur != (r0 << 8 | r1 << 2 | nb)) {
        amx_cfg_set(&cfg, r0, r1, nb);
        AMX_CFG(&cfg);
        cur = r0 << 8 | r1 << 2 | nb;
      }
      const uint8_t *x0 = a->xq + m0 * Kp, *x1 = x0 + 16 * Kp;
      AMX_ZERO(0);
      if (nb > 1) AMX_ZERO(1);
      if (r1) AMX_ZERO(2);
      if (r1 && nb > 1) AMX_ZERO(3);
      for (int64_t k = 0; k < Kp; k += 64) {
        AMX_LOAD(4, x0 + k, Kp);
        AMX_LOAD(6, w0 + k * 16, 64);
        AMX_DPBUSD(0, 4, 6);
        if (nb > 1) {
          AMX_LOAD(7, w1 + k * 16, 64);
          AMX_DPBUSD(1, 4, 7);
        }
        if (r1) {
          AMX_LOAD(5, x1 + k, Kp);
          AMX_DPBUSD(2, 5, 6);
          if (nb > 1) AMX_DPBUSD(3, 5, 7);
        }
      }
      AMX_STORE(0, &acc[0][0], sizeof acc[0]);
      if (nb > 1) AMX_STORE(1, &acc[0][16], sizeof acc[0]);
      if (r1) AMX_STORE(2, &acc[16][0], sizeof acc[0]);
      if (r1 && nb > 1) AMX_STORE(3, &acc[16][16], sizeof acc[0]);
      amx_i8_out(a, m0, r0 + r1, b * 16, 16 * nb, acc);
    }
  }
  AMX_RELEASE();
}

/* rows [0, M) by column blocks [b0, b1) of the bf16 product: xb bf16
 * [M, Kx] (rounded rows, zero past K), panel the weights packed by
 * amx_bf16_pack (row k/2 of a block's 32-input tile holds the 16 columns'
 * pairs (k, k + 1)) */
static AMX_ATTR void AMX_FN(amx_bf16)(const amx_bf16_job *j, int64_t b0, int64_t b1) {
  AMX_STATE
  amx_cfg cfg;
  float acc[32][32];
  int cur = -1;
  const int64_t Kx = j->Kx;
  for (int64_t b = b0; b < b1; b += 2) {
    int nb = b1 - b >= 2 ? 2 : 1;
    const uint16_t *w0 = j->panel + b * 16 * Kx, *w1 = w0 + 16 * Kx;
    for (int64_t m0 = 0; m0 < j->M; m0 += 32) {
      int64_t left = j->M - m0;
      int r0 = left >= 16 ? 16 : (int)left, r1 = left >= 32 ? 16 : left > 16 ? (int)left - 16 : 0;
      if (cur != (r0 << 8 | r1 << 2 | nb)) {
        amx_cfg_set(&cfg, r0, r1, nb);
        AMX_CFG(&cfg);
        cur = r0 << 8 | r1 << 2 | nb;
      }
      const uint16_t *x0 = j->xb + m0 * Kx, *x1 = x0 + 16 * Kx;
      AMX_ZERO(0);
      if (nb > 1) AMX_ZERO(1);
      if (r1) AMX_ZERO(2);
      if (r1 && nb > 1) AMX_ZERO(3);
      for (int64_t k = 0; k < Kx; k += 32) {
        AMX_LOAD(4, x0 + k, Kx * 2);
        AMX_LOAD(6, w0 + k * 16, 64);
        AMX_DPBF16PS(0, 4, 6);
        if (nb > 1) {
          AMX_LOAD(7, w1 + k * 16, 64);
          AMX_DPBF16PS(1, 4, 7);
        }
        if (r1) {
          AMX_LOAD(5, x1 + k, Kx * 2);
          AMX_DPBF16PS(2, 5, 6);
          if (nb > 1) AMX_DPBF16PS(3, 5, 7);
        }
      }
      AMX_STORE(0, &acc[0][0], sizeof acc[0]);
      if (nb > 1) AMX_STORE(1, &acc[0][16], sizeof acc[0]);
      if (r1) AMX_STORE(2, &acc[16][0], sizeof acc[0]);
      if (r1 && nb > 1) AMX_STORE(3, &acc[16][16], sizeof acc[0]);
      amx_bf16_out(j, m0, r0 + r1, b * 16, 16 * nb, acc);
    }
  }
  AMX_RELEASE();
}
