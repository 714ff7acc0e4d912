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
  int64_t kmax;        /* inputs K up to kmax (0: any) */
  const char *why;
} qz_cost_row;

#define NODOT "host has no AVX2/VNNI dot products"
#define PANEL_WHY "from 16 rows its kernel dequantizes every weight on every call, then runs the f32 product"
#define CONV_WHY "host has no AVX2 (the plain C conversion kernel is 3.6-37x slower than f32 at one row)"
#define CONV256_WHY "no AVX-512 here: its 8-lane conversion kernel is 1.6-2.4x slower than f32 at one row"
#define M_ALL INT64_MAX

/* The numbers: bench/quant_keep_bench.sh (docs/quantize.md), ms per
 * forward, quantized kernel forced against f32, one row = batch 1. */
static const qz_cost_row rows[] = {
    /* the plain C group-quantized kernel (rt/rt_qwo.c): dense 1024 b1 7-10x, digits MLP b1 13-15x f32 */
    {LATHE_RT_Q_W8, LATHE_RT_ISA_SCALAR, 1, 16, 0, NODOT " (the plain C kernel is 7-15x slower than f32)"},
    {LATHE_RT_Q_W4, LATHE_RT_ISA_SCALAR, 1, 16, 0, NODOT " (the plain C kernel is 7-15x slower than f32)"},
    /* f32 plus N * K conversions per call: never faster than f32 alone (MLP b256: 1.1-1.2x f32) */
    {LATHE_RT_Q_W8, ANY, 0, PANEL, 0, PANEL_WHY},
    {LATHE_RT_Q_W4, ANY, 0, PANEL, 0, PANEL_WHY},
    {LATHE_RT_Q_F16, ANY, 0, PANEL, 0, PANEL_WHY},
    {LATHE_RT_Q_BF16, LATHE_RT_ISA_SCALAR, 0, PANEL, 0, PANEL_WHY},
    {LATHE_RT_Q_BF16, LATHE_RT_ISA_AVX2, 0, PANEL, 0, PANEL_WHY},
    {LATHE_RT_Q_BF16, LATHE_RT_ISA_AVXVNNI, 0, PANEL, 0, PANEL_WHY},
    {LATHE_RT_Q_BF16, LATHE_RT_ISA_AVX512VNNI, 0, PANEL, 0, PANEL_WHY},
    /* 16-bit weights converted in plain C (dense 1024 b1: bf16 3.6x, f16 37x f32) */
    {LATHE_RT_Q_F16, LATHE_RT_ISA_SCALAR, 1, 16, 0, CONV_WHY},
    {LATHE_RT_Q_BF16, LATHE_RT_ISA_SCALAR, 1, 16, 0, CONV_WHY},
    /* and in 8 lanes (dense 1024 b1 1.6-2.1x, MLP b1 2.4x f32; the AVX-512 one is 1.3-2x faster than f32) */
    {LATHE_RT_Q_F16, LATHE_RT_ISA_AVX2, 1, 16, 0, CONV256_WHY},
    {LATHE_RT_Q_F16, LATHE_RT_ISA_AVXVNNI, 1, 16, 0, CONV256_WHY},
    {LATHE_RT_Q_BF16, LATHE_RT_ISA_AVX2, 1, 16, 0, CONV256_WHY},
    {LATHE_RT_Q_BF16, LATHE_RT_ISA_AVXVNNI, 1, 16, 0, CONV256_WHY},
    /* the plain C int8 kernel: dense 1024 b1 24x, MLP b1 27x, MLP b256 185x f32 */
    {LATHE_RT_Q_DQ8, LATHE_RT_ISA_SCALAR, 1, M_ALL, 0, NODOT " (the plain C int8 kernel is 24-185x slower than f32)"},
    /* AVX2's int8 (vpmaddubsw) with a row quantized per call: MLP b256 (K 64, 256) 1.2x f32; dense 1024 b256
     * faster than f32 (not kept); AVX-VNNI faster at both */
    {LATHE_RT_Q_DQ8, LATHE_RT_ISA_AVX2, 16, M_ALL, 256,
     "its AVX2 int8 kernel, quantizing every row at run time, is 1.2x slower than f32 at this size (no VNNI)"},
    /* static int8's f32 form (k=4) from 16 rows: a dequantized panel per call (MLP b256: 4-8x f32) */
    {LATHE_RT_Q_S8, LATHE_RT_ISA_F32, 16, M_ALL, 0, NODOT " (its f32 form dequantizes every weight on every call)"},
};

static int row_matches(const qz_cost_row *r, int mode, int64_t isa, int64_t M, int64_t K) {
  if (r->mode != mode || (r->isa != ANY && r->isa != isa) || (r->kmax && K > r->kmax)) return 0;
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
