/* test_quant_keep.c -- a quantized dense layer is never slower than its f32
 * version (issue 16): where the quantized kernel for this host's features
 * and this shape would be slower (passes/quantize_cost.c's table), the
 * compiler keeps the layer in f32, on the weights dequantized once at load,
 * and says so. With forced features (LATHE_CPU_FEATURES):
 *  - the layer is kept where the table says, and not where it does not
 *    (each case that needs a feature this CPU lacks says so and is skipped);
 *  - the note line and the --print-after=quantize dump name it;
 *  - the kept weight is exactly the dequantized stored tensors, the output
 *    equals the interpreter's (same features) and a double product on those
 *    values within f32 rounding;
 *  - the program saves the quantized file (no f32 weight in it), which a
 *    program compiled with the host's features loads. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lathe.h"
#include "rt/lathe_rt.h"
#include "rt/rt_quant.h"
#include "test.h"
#include "quant_util.h"

static char dir[] = "/tmp/lathe_qkeep_XXXXXX";

enum { K_IN = 64, N_OUT = 20 };
/* what a case needs of this CPU under its features: ANY, BF16_DOT (AVX-512 BF16), or the integer kernel
 * (LATHE_RT_ISA_*) lathe_rt_quant_isa() must pick */
enum { ANY = -1, BF16_DOT = -2 };

typedef struct {
  int mode;
  const char *feat; /* LATHE_CPU_FEATURES; NULL: the host's */
  int64_t M;
  int kept;
  int needs;
  const char *why; /* a part of the note's reason, or NULL */
} kcase;

#define AVX2ONLY "-avx512vnni,-avxvnni"
#define NODOT "host has no AVX2/VNNI dot products"
#define PANEL "dequantizes every weight on every call"
static const kcase cases[] = {
    /* no SIMD dot products: the plain C kernels lose to f32 at one row */
    {LATHE_QUANT_W8, "none", 1, 1, ANY, NODOT},
    {LATHE_QUANT_W4, "none", 1, 1, ANY, NODOT},
    {LATHE_QUANT_INT8_DYNAMIC, "none", 1, 1, ANY, NODOT},
    {LATHE_QUANT_INT8_DYNAMIC, "none", 32, 1, ANY, NODOT},
    {LATHE_QUANT_BF16, "none", 1, 1, ANY, "host has no AVX2"},
    {LATHE_QUANT_F16, "none", 1, 1, ANY, "host has no AVX2"},
    /* weight-only from 16 rows: dequantize every call + the f32 product, on any CPU */
    {LATHE_QUANT_W8, "none", 32, 1, ANY, PANEL},
    {LATHE_QUANT_W4, NULL, 32, 1, ANY, PANEL},
    {LATHE_QUANT_W8, AVX2ONLY, 32, 1, ANY, PANEL},
    {LATHE_QUANT_F16, NULL, 32, 1, ANY, PANEL},
    {LATHE_QUANT_BF16, "-avx512bf16", 32, 1, ANY, PANEL},
    /* 16-bit weights on the 8-lane conversion kernel at one row */
    {LATHE_QUANT_F16, AVX2ONLY, 1, 1, LATHE_RT_ISA_AVX2, "8-lane conversion kernel"},
    {LATHE_QUANT_BF16, AVX2ONLY ",-avx512bf16", 1, 1, LATHE_RT_ISA_AVX2, "8-lane conversion kernel"},
    /* int8-dynamic on AVX2 at 32 rows of 64 inputs */
    {LATHE_QUANT_INT8_DYNAMIC, AVX2ONLY, 32, 1, LATHE_RT_ISA_AVX2, "AVX2 int8 kernel"},
    /* and where the quantized kernel wins, it stays */
    {LATHE_QUANT_W8, NULL, 1, 0, LATHE_RT_ISA_AVX512VNNI, NULL},
    {LATHE_QUANT_W4, AVX2ONLY, 1, 0, LATHE_RT_ISA_AVX2, NULL},
    {LATHE_QUANT_W8, "-avx512vnni", 1, 0, LATHE_RT_ISA_AVXVNNI, NULL},
    {LATHE_QUANT_INT8_DYNAMIC, NULL, 1, 0, LATHE_RT_ISA_AVX512VNNI, NULL},
    {LATHE_QUANT_INT8_DYNAMIC, NULL, 32, 0, LATHE_RT_ISA_AVX512VNNI, NULL},
    {LATHE_QUANT_INT8_DYNAMIC, "-avx512vnni", 32, 0, LATHE_RT_ISA_AVXVNNI, NULL},
    {LATHE_QUANT_INT8_DYNAMIC, AVX2ONLY, 1, 0, LATHE_RT_ISA_AVX2, NULL},
    {LATHE_QUANT_F16, NULL, 1, 0, LATHE_RT_ISA_AVX512VNNI, NULL},
    {LATHE_QUANT_BF16, "-avx512bf16", 1, 0, LATHE_RT_ISA_AVX512VNNI, NULL},
    {LATHE_QUANT_BF16, NULL, 32, 0, BF16_DOT, NULL},
};

static void set_features(const char *f) {
  if (f) setenv("LATHE_CPU_FEATURES", f, 1);
  else unsetenv("LATHE_CPU_FEATURES");
}

/* the whole of a log file */
static char *slurp(FILE *f) {
  long n = ftell(f);
  char *b = calloc((size_t)(n > 0 ? n : 0) + 1, 1);
  rewind(f);
  if (b && n > 0 && fread(b, 1, (size_t)n, f) != (size_t)n) b[0] = 0;
  return b;
}

/* W [K, N] from the program's stored tensors (independent of the runtime's
 * api_derive_params: the layouts of rt/rt_quant.h) */
static int dequantized(const lathe_program *p, int mode, float *W) {
  static const char *const w[] = {"", ".w8", ".w4", ".dq8", ".bf16", ".f16"}, *const s[] = {"", ".w8s", ".w4s", ".dq8s"};
  char nw[64], ns[64];
  snprintf(nw, sizeof nw, "fc.weight%s", w[mode]);
  snprintf(ns, sizeof ns, "fc.weight%s", mode <= LATHE_QUANT_INT8_DYNAMIC ? s[mode] : "");
  const void *q = param(p, nw);
  const float *sc = mode <= LATHE_QUANT_INT8_DYNAMIC ? param(p, ns) : NULL;
  if (!q || (mode <= LATHE_QUANT_INT8_DYNAMIC && !sc)) return -1;
  for (int64_t n = 0; n < N_OUT; n++)
    for (int64_t k = 0; k < K_IN; k++) {
      float v;
      if (mode == LATHE_QUANT_W8 || mode == LATHE_QUANT_W4)
        v = sc[rt_q_ws_at(n, k / 32, K_IN / 32)] * (float)rt_q_wo_q(mode == LATHE_QUANT_W4, q, n, k, K_IN);
      else if (mode == LATHE_QUANT_INT8_DYNAMIC)
        v = sc[n] * (float)((const int8_t *)q)[rt_q_dq8_at(n, k, rt_q_kpad(K_IN))];
      else
        v = mode == LATHE_QUANT_BF16 ? rt_q_bf16(((const uint16_t *)q)[n * K_IN + k])
                                     : rt_q_f16(((const uint16_t *)q)[n * K_IN + k]);
      W[k * N_OUT + n] = v;
    }
  return 0;
}

static int case_applies(const kcase *c) {
  int64_t isa = lathe_rt_quant_isa();
  if (c->needs == BF16_DOT) return lathe_rt_bf16_isa(isa) == LATHE_RT_ISA_AVX512BF16;
  return c->needs == ANY || c->needs == isa;
}

/* the kept program's output against the interpreter's and a double product */
static void check_outputs(const kcase *c, lathe_model *m, lathe_program *ql, const char *qf, const float *x) {
  lathe_error err = {0};
  int64_t M = c->M;
  const char *mn = lathe_quant_name(c->mode);
  lathe_program *qi = compile(m, LATHE_BACKEND_INTERP, c->mode, qf, &err);
  CHECK_MSG(qi != NULL, "%s", err.message);
  float *yl = run(ql, x, M, K_IN, N_OUT), *yi = qi ? run(qi, x, M, K_IN, N_OUT) : NULL;
  double e = 0;
  for (int64_t i = 0; yl && yi && i < M * N_OUT; i++) e = fmax(e, fabs(yl[i] - yi[i]) / (1 + fabs(yi[i])));
  CHECK_MSG(yl && yi && e <= 1e-5, "%s M=%lld features %s: llvm vs interp %.3g", mn, (long long)M,
            c->feat ? c->feat : "host", e);
  float W[K_IN * N_OUT];
  const float *Wk = param(ql, "fc.weight");
  if (c->kept && Wk && dequantized(ql, c->mode, W) == 0) {
    CHECK_MSG(memcmp(W, Wk, sizeof W) == 0, "%s: the kept weight is not the dequantized stored tensors", mn);
    double worst = 0;
    for (int64_t r = 0; yl && r < M; r++)
      for (int64_t n = 0; n < N_OUT; n++) {
        double y = 0, a = 0;
        for (int64_t k = 0; k < K_IN; k++) y += (double)x[r * K_IN + k] * W[k * N_OUT + n], a += fabs(x[r * K_IN + k] * W[k * N_OUT + n]);
        worst = fmax(worst, fabs(yl[r * N_OUT + n] - y) / (K_IN * 0x1p-24 * a + 1e-30));
      }
    CHECK_MSG(worst <= 1.0, "%s M=%lld: kept-f32 output %.3g of the f32 rounding bound from the dequantized model", mn,
              (long long)M, worst);
  }
  free(yl), free(yi);
  lathe_program_free(qi);
}

/* the file a kept program writes is the quantized one, for any CPU */
static void check_save(lathe_model *m, lathe_program *ql, int mode) {
  lathe_error err = {0};
  char sf[128];
  snprintf(sf, sizeof sf, "%s/saved.safetensors", dir);
  CHECK_MSG(lathe_weights_save(ql, sf, &err) == 0, "%s", err.message);
  int have = -1;
  CHECK(lathe_weights_quant(sf, &have, &err) == 0 && have == mode);
  set_features(NULL);
  setenv("LATHE_QUANT_KEEP_F32", "0", 1); /* nothing kept: no fc.weight in the program */
  lathe_program *h = compile(m, LATHE_BACKEND_INTERP, mode, sf, &err);
  CHECK_MSG(h != NULL && param(h, "fc.weight") == NULL, "the saved file into a program with no kept layer: %s",
            err.message);
  unsetenv("LATHE_QUANT_KEEP_F32");
  lathe_program_free(h);
}

static void one(const kcase *c) {
  set_features(c->feat);
  const char *mn = lathe_quant_name(c->mode), *fn = c->feat ? c->feat : "host";
  if (!case_applies(c)) {
    printf("skipped: %s M=%lld features %s (this CPU lacks what it needs)\n", mn, (long long)c->M, fn);
    return;
  }
  lathe_model *m = qu_dense(K_IN, N_OUT, c->M);
  if (!m) return;
  lathe_error err = {0};
  char wf[128], qf[128];
  snprintf(wf, sizeof wf, "%s/w.safetensors", dir);
  snprintf(qf, sizeof qf, "%s/q.safetensors", dir);
  lathe_program *f = compile(m, LATHE_BACKEND_INTERP, 0, NULL, &err);
  CHECK(f && lathe_weights_init(f, 17, &err) == 0 && lathe_weights_save(f, wf, &err) == 0);
  lathe_quantize_options qo = {.weights = wf, .out = qf, .mode = c->mode};
  CHECK_MSG(lathe_quantize(m, &qo, NULL, &err) == 0, "%s", err.message);
  FILE *log = tmpfile();
  lathe_options o = {.backend = LATHE_BACKEND_LLVM, .quant = c->mode, .print_after = "quantize", .pass_log = log};
  lathe_program *ql = log ? lathe_compile(m, &o, &err) : NULL;
  CHECK_MSG(ql && lathe_weights_load(ql, qf, &err) == 0, "%s", err.message);
  char *out = log ? slurp(log) : NULL, note[128];
  snprintf(note, sizeof note, "note: %s dense fc.weight kept f32: ", mn);
  int kept = ql && param(ql, "fc.weight") != NULL;
  CHECK_MSG(kept == c->kept, "%s M=%lld features %s: kept %d, expected %d", mn, (long long)c->M, fn, kept, c->kept);
  CHECK_MSG(out && (strstr(out, note) != NULL) == c->kept, "%s M=%lld features %s: the note%s expected:\n%s", mn,
            (long long)c->M, fn, c->kept ? "" : " not", out ? out : "");
  CHECK_MSG(out && (!c->why || strstr(out, c->why)), "%s M=%lld: the note does not say '%s':\n%s", mn, (long long)c->M,
            c->why ? c->why : "", out ? out : "");
  /* the dump: the matmul stays, on a weight made at load, and no qmatmul */
  CHECK_MSG(out && (strstr(out, "kept f32, dequantized at load") != NULL) == c->kept &&
                (strstr(out, "= qmatmul(") == NULL) == c->kept,
            "%s M=%lld features %s: the dump:\n%s", mn, (long long)c->M, fn, out ? out : "");
  float *x = malloc(sizeof(float) * (size_t)(c->M * K_IN));
  for (int64_t i = 0; x && i < c->M * K_IN; i++) x[i] = (float)(((i * 7919) % 2001) - 1000) / 250.0f;
  if (ql && x) check_outputs(c, m, ql, qf, x);
  if (ql && kept) check_save(m, ql, c->mode);
  set_features(NULL);
  free(x), free(out);
  if (log) fclose(log);
  lathe_program_free(ql);
  lathe_program_free(f);
  lathe_model_free(m);
}

int main(void) {
  if (!mkdtemp(dir)) {
    perror("mkdtemp");
    return 1;
  }
  unsetenv("LATHE_QUANT_KEEP_F32");
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) one(&cases[i]);
  char cmd[160];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd)) fprintf(stderr, "could not remove %s\n", dir);
  return TEST_REPORT();
}
