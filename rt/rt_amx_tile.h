/* rt_amx_tile.h -- the AMX tile operations the kernels of rt/rt_amx_kern.h
 * are written in, and a software emulator of them, so that the same kernel
 * source runs on the hardware (rt/rt_amx.c's native copy) and on any
 * x86-64 host (its emulated copy: the tests' reference for the tile code
 * where no CPU has AMX).
 *
 * The emulator follows the Intel SDM's pseudo-code, palette 1: 8 tiles of
 * up to 16 rows by 64 bytes, each configured with its rows and bytes per
 * row (LDTILECFG); a load fills the configured rows and zeroes the rest of
 * each row and the rows past the configured ones; the dot products check
 * the shapes as the hardware does (#UD there: an abort here, naming the
 * mismatch). TDPBUSD: each s32 lane += the 4 products u8 x s8 of its group
 * (exact; wrapping on overflow, as the hardware's 32-bit adds). TDPBF16PS:
 * per output lane, the even and the odd bf16 products are accumulated in
 * two f32 temporaries over the instruction's K (FMA, round to nearest
 * even, inputs' denormals read as zero, results' denormals flushed to
 * zero), then the two are added and the sum added to the destination
 * (the SDM's order: temp[2n] + temp[2n+1], then dest + that). A bf16
 * product is exact in f32, so each FMA rounds only the sum.
 *
 * The operations (tile numbers are literals: gcc's intrinsics paste them
 * into the instruction's text):
 *   AMX_CFG(cfg)             load a 64-byte palette-1 configuration
 *   AMX_ZERO(t)              zero tile t
 *   AMX_LOAD(t, base, str)   tile t's rows from base, str bytes apart
 *   AMX_STORE(t, base, str)  tile t's rows to base
 *   AMX_DPBUSD(c, a, b)      c += a (u8) . b (s8), s32
 *   AMX_DPBF16PS(c, a, b)    c += a (bf16 pairs) . b (bf16 pairs), f32
 *   AMX_RELEASE()            back to the init state
 * With AMX_NATIVE defined they are the intrinsics (the including function
 * must carry the amx target attribute); else calls into the emulator state
 * `amx_st`, which AMX_STATE declares in the kernel. */
#ifndef LATHE_RT_AMX_TILE_H
#define LATHE_RT_AMX_TILE_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { AMX_TILES = 8, AMX_ROWS = 16, AMX_COLSB = 64 };

/* LDTILECFG's 64 bytes, palette 1 */
typedef struct {
  uint8_t palette, start_row, reserved[14];
  uint16_t colsb[16]; /* bytes per row, tiles 0..7 (8..15 reserved, zero) */
  uint8_t rows[16];
} amx_cfg;

typedef struct {
  amx_cfg cfg;
  uint8_t t[AMX_TILES][AMX_ROWS][AMX_COLSB];
} amx_emu;

/* the hardware faults (#UD, #GP) where the emulator stops here: a kernel
 * bug, never a user error */
static inline void amx_emu_die(const char *what, int a, int b) {
  fprintf(stderr, "lathe: internal error: AMX emulator: %s (%d, %d)\n", what, a, b);
  abort();
}

static inline void amx_emu_cfg(amx_emu *st, const amx_cfg *c) {
  if (c->palette != 1) amx_emu_die("palette is not 1", c->palette, 0);
  for (int i = 0; i < AMX_TILES; i++)
    if (c->rows[i] > AMX_ROWS || c->colsb[i] > AMX_COLSB || (c->rows[i] == 0) != (c->colsb[i] == 0))
      amx_emu_die("tile shape out of range", c->rows[i], c->colsb[i]);
  st->cfg = *c;
  memset(st->t, 0, sizeof st->t);
}

static inline void amx_emu_used(const amx_emu *st, int t) {
  if (t < 0 || t >= AMX_TILES || !st->cfg.rows[t]) amx_emu_die("tile not configured", t, 0);
}

static inline void amx_emu_zero(amx_emu *st, int t) {
  amx_emu_used(st, t);
  memset(st->t[t], 0, sizeof st->t[t]);
}

static inline void amx_emu_load(amx_emu *st, int t, const void *base, int64_t stride) {
  amx_emu_used(st, t);
  memset(st->t[t], 0, sizeof st->t[t]);
  for (int r = 0; r < st->cfg.rows[t]; r++) memcpy(st->t[t][r], (const char *)base + r * stride, st->cfg.colsb[t]);
}

static inline void amx_emu_store(const amx_emu *st, int t, void *base, int64_t stride) {
  amx_emu_used(st, t);
  for (int r = 0; r < st->cfg.rows[t]; r++) memcpy((char *)base + r * stride, st->t[t][r], st->cfg.colsb[t]);
}

/* the shapes a dot product needs: c [M, N dwords], a [M, K dwords], b [K, N dwords] */
static inline void amx_emu_shapes(const amx_emu *st, int c, int a, int b) {
  amx_emu_used(st, c), amx_emu_used(st, a), amx_emu_used(st, b);
  const amx_cfg *g = &st->cfg;
  if (c == a || c == b || a == b) amx_emu_die("dot product's tiles not distinct", c, a == b ? a : b);
  if (g->rows[c] != g->rows[a]) amx_emu_die("rows of dst and src1 differ", g->rows[c], g->rows[a]);
  if (g->colsb[a] / 4 != g->rows[b]) amx_emu_die("src1's dwords per row differ from src2's rows", g->colsb[a], g->rows[b]);
  if (g->colsb[c] != g->colsb[b]) amx_emu_die("bytes per row of dst and src2 differ", g->colsb[c], g->colsb[b]);
  if (g->colsb[c] % 4 || g->colsb[a] % 4) amx_emu_die("bytes per row not whole dwords", g->colsb[c], g->colsb[a]);
}

static inline void amx_emu_dpbusd(amx_emu *st, int c, int a, int b) {
  amx_emu_shapes(st, c, a, b);
  int M = st->cfg.rows[c], K = st->cfg.colsb[a] / 4, N = st->cfg.colsb[c] / 4;
  for (int m = 0; m < M; m++)
    for (int n = 0; n < N; n++) {
      int32_t acc;
      memcpy(&acc, &st->t[c][m][4 * n], 4);
      uint32_t u = (uint32_t)acc; /* the hardware's adds wrap */
      for (int k = 0; k < K; k++)
        for (int i = 0; i < 4; i++)
          u += (uint32_t)((int32_t)st->t[a][m][4 * k + i] * (int32_t)(int8_t)st->t[b][k][4 * n + i]);
      memcpy(&st->t[c][m][4 * n], &u, 4);
    }
}

/* bf16 as f32, a denormal read as (signed) zero */
static inline float amx_emu_bf16(const uint8_t *p) {
  uint32_t u = (uint32_t)(p[0] | p[1] << 8) << 16;
  if (!(u & 0x7f800000u)) u &= 0x80000000u;
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

/* a result's denormal flushed to (signed) zero */
static inline float amx_emu_ftz(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  if (!(u & 0x7f800000u)) u &= 0x80000000u;
  memcpy(&f, &u, sizeof f);
  return f;
}

static inline void amx_emu_dpbf16ps(amx_emu *st, int c, int a, int b) {
  amx_emu_shapes(st, c, a, b);
  int M = st->cfg.rows[c], K = st->cfg.colsb[a] / 4, N = st->cfg.colsb[c] / 4;
  for (int m = 0; m < M; m++)
    for (int n = 0; n < N; n++) {
      float t0 = 0.0f, t1 = 0.0f, d;
      for (int k = 0; k < K; k++) {
        const uint8_t *x = &st->t[a][m][4 * k], *w = &st->t[b][k][4 * n];
        t0 = amx_emu_ftz(fmaf(amx_emu_bf16(x), amx_emu_bf16(w), t0));
        t1 = amx_emu_ftz(fmaf(amx_emu_bf16(x + 2), amx_emu_bf16(w + 2), t1));
      }
      memcpy(&d, &st->t[c][m][4 * n], 4);
      d = amx_emu_ftz(amx_emu_ftz(d) + amx_emu_ftz(t0 + t1));
      memcpy(&st->t[c][m][4 * n], &d, 4);
    }
}

/* The configuration of rt/rt_amx_kern.h's kernels: accumulators 0, 1 (rows
 * r0) and 2, 3 (rows r1; r1 = 0: unused), one per row tile and column
 * block (nb = 1: only 0 and 2); the row tiles' sources 4 (r0) and 5 (r1);
 * the column blocks' sources 6 and 7 (16 rows: 64 int8 or 32 bf16 inputs
 * in groups of 4 or pairs). Every row 64 bytes. */
static inline void amx_cfg_set(amx_cfg *c, int r0, int r1, int nb) {
  memset(c, 0, sizeof *c);
  c->palette = 1;
  const int rows[AMX_TILES] = {r0, nb > 1 ? r0 : 0, r1, nb > 1 ? r1 : 0, r0, r1, AMX_ROWS, nb > 1 ? AMX_ROWS : 0};
  for (int t = 0; t < AMX_TILES; t++) c->rows[t] = (uint8_t)rows[t], c->colsb[t] = rows[t] ? AMX_COLSB : 0;
}

#endif

/* ---- the operations: included once per copy (AMX_NATIVE or not) ---- */
#undef AMX_STATE
#undef AMX_CFG
#undef AMX_ZERO
#undef AMX_LOAD
#undef AMX_STORE
#undef AMX_DPBUSD
#undef AMX_DPBF16PS
#undef AMX_RELEASE
#ifdef AMX_NATIVE
#include <immintrin.h>
#define AMX_STATE
/* gcc's tile loads are asm without a memory operand: the barrier keeps the
 * stores that filled the source (a packed panel) before the load */
/* gcc 12's _tile_loadconfig names only the configuration's first 8 bytes
 * as its memory operand, so the stores of the other 56 could be sunk past
 * it or deleted as dead: the barrier, taking the pointer, makes them land */
#define AMX_CFG(c)                                                                                                     \
  do {                                                                                                                 \
    __asm__ volatile("" ::"r"(c) : "memory");                                                                          \
    _tile_loadconfig(c);                                                                                               \
  } while (0)
#define AMX_ZERO(t) _tile_zero(t)
#define AMX_LOAD(t, base, str)                                                                                         \
  do {                                                                                                                 \
    __asm__ volatile("" ::: "memory");                                                                                 \
    _tile_loadd(t, base, str);                                                                                         \
  } while (0)
#define AMX_STORE(t, base, str) _tile_stored(t, base, str)
#define AMX_DPBUSD(c, a, b) _tile_dpbusd(c, a, b)
#define AMX_DPBF16PS(c, a, b) _tile_dpbf16ps(c, a, b)
#define AMX_RELEASE() _tile_release()
#else
#define AMX_STATE amx_emu amx_st;
#define AMX_CFG(c) amx_emu_cfg(&amx_st, (const amx_cfg *)(c))
#define AMX_ZERO(t) amx_emu_zero(&amx_st, t)
#define AMX_LOAD(t, base, str) amx_emu_load(&amx_st, t, base, str)
#define AMX_STORE(t, base, str) amx_emu_store(&amx_st, t, base, str)
#define AMX_DPBUSD(c, a, b) amx_emu_dpbusd(&amx_st, c, a, b)
#define AMX_DPBF16PS(c, a, b) amx_emu_dpbf16ps(&amx_st, c, a, b)
#define AMX_RELEASE() ((void)amx_st)
#endif
