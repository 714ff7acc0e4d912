/* quantize_cost.c -- when a quantized dense product would be slower than
 * its f32 version, on this host's features and this shape: then
 * passes/quantize.c keeps the layer in f32 (its weights dequantized once at
 * load, runtime/api_quant.c) and says so.
 *
 * One row per (mode, kernel, rows) where the quantized kernel loses, each
 * from a measurement on this machine (docs/quantize.md, "Where a quantized
 * layer stays f32", has the table with the numbers behind every row). The
 * f32 side is the host's f32 product (OpenBLAS or the JIT's vector code),
 * which LATHE_CPU_FEATURES does not narrow: the features only pick the
 * quantized kernel. The decision is made once, when the model is compiled
 * (M, K and the features are known then), never per call. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "passes/passes.h"
#include "rt/lathe_rt.h"
#include "rt/rt_quant.h"

enum { ANY = -1, PANEL = -2 /* the rows the kernel dequantizes every call: !rt_q_wo_rows(M, K) */ };

typedef struct {
  int mode;            /* LATHE_RT_Q_* */
  int isa;             /* the kernel (LATHE_RT_ISA_*), or ANY */
  int64_t mlo;         /* rows from mlo ... */
  int64_t mhi;         /* ... below mhi; PANEL: the weight-only panel path */
  const char *why;
} qz_cost_row;

#define NODOT "host has no AVX2/VNNI dot products"
#define PANEL_WHY "from 16 rows its kernel dequantizes every weight on every call, then runs the f32 product"

static const qz_cost_row rows[] = {
    /* the plain C group-quantized kernel (rt/rt_qwo.c): 6-7x f32 at 1 row */
    {LATHE_RT_Q_W8, LATHE_RT_ISA_SCALAR, 1, 16, NODOT " (the plain C kernel is about 6x slower than f32)"},
    {LATHE_RT_Q_W4, LATHE_RT_ISA_SCALAR, 1, 16, NODOT " (the plain C kernel is about 6x slower than f32)"},
    /* f32 plus N * K conversions per call: never faster than f32 alone */
    {LATHE_RT_Q_W8, ANY, 0, PANEL, PANEL_WHY},
    {LATHE_RT_Q_W4, ANY, 0, PANEL, PANEL_WHY},
    {LATHE_RT_Q_F16, ANY, 0, PANEL, PANEL_WHY},
    {LATHE_RT_Q_BF16, LATHE_RT_ISA_SCALAR, 0, PANEL, PANEL_WHY},
    {LATHE_RT_Q_BF16, LATHE_RT_ISA_AVX2, 0, PANEL, PANEL_WHY},
    {LATHE_RT_Q_BF16, LATHE_RT_ISA_AVXVNNI, 0, PANEL, PANEL_WHY},
    {LATHE_RT_Q_BF16, LATHE_RT_ISA_AVX512VNNI, 0, PANEL, PANEL_WHY},
    /* 16-bit weights converted in plain C, one column at a time */
    {LATHE_RT_Q_F16, LATHE_RT_ISA_SCALAR, 1, 16, "host has no AVX2 (the plain C conversion kernel is slower than f32)"},
    {LATHE_RT_Q_BF16, LATHE_RT_ISA_SCALAR, 1, 16, "host has no AVX2 (the plain C conversion kernel is slower than f32)"},
    /* the plain C int8 kernel: 25-150x f32 */
    {LATHE_RT_Q_DQ8, LATHE_RT_ISA_SCALAR, 1, INT64_MAX, NODOT " (the plain C int8 kernel is 25-150x slower than f32)"},
    /* static int8's f32 form (k=4) from 16 rows: a dequantized panel per call */
    {LATHE_RT_Q_S8, LATHE_RT_ISA_F32, 16, INT64_MAX, NODOT " (its f32 form dequantizes every weight on every call)"},
};

static int row_matches(const qz_cost_row *r, int mode, int64_t isa, int64_t M, int64_t K) {
  if (r->mode != mode || (r->isa != ANY && r->isa != isa)) return 0;
  if (r->mhi == PANEL) return !rt_q_wo_rows(M, K);
  return M >= r->mlo && M < r->mhi;
}

const char *qz_slow_reason(int mode, int64_t isa, int64_t M, int64_t K) {
  /* LATHE_QUANT_KEEP_F32=0: every product on its quantized kernel, however
   * slow (the tests of each kernel, and the measurements behind the table) */
  const char *env = getenv("LATHE_QUANT_KEEP_F32");
  if (env && !strcmp(env, "0")) return NULL;
  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
    if (row_matches(&rows[i], mode, isa, M, K)) return rows[i].why;
  return NULL;
}
