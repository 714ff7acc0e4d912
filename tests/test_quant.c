/* test_quant.c -- quantized products (qmatmul, docs/quantize.md):
 *  - int8-dynamic: the LLVM backend's integer kernels equal the
 *    interpreter's exact integer reference bit for bit, on every kernel this
 *    CPU has, each reached by turning features off (LATHE_CPU_FEATURES);
 *  - w8, w4, bf16, f16: the backend agrees with the interpreter, and every
 *    mode's output is within its quantization error bound of the f32 product
 *    (the bound from the stored scales: |w - s q| <= s / 2 per weight, and
 *    the same for int8-dynamic's activations);
 *  - shapes with tails (M, N, K not multiples of the blocks);
 *  - bad requests: an unknown mode, nothing to quantize, weights already
 *    quantized, a quantized file into an f32 program or one of another mode or
 *    model, an f32 file into a quantized program, a tensor of the wrong dtype. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lathe.h"
#include "rt/lathe_rt.h"
#include "rt/rt_quant.h"
#include "runtime/runtime.h"
#include "test.h"
#include "quant_util.h"

static char dir[] = "/tmp/lathe_quant_XXXXXX";

/* the largest |y - y32| may be, per element */
static double bound(int mode, const lathe_program *q, const float *x, const float *W, int64_t M, int64_t m,
                    int64_t n, int64_t K, int64_t N) {
  double b = 0;
  if (mode == LATHE_QUANT_W8 || mode == LATHE_QUANT_W4) {
    /* with fewer than 16 rows the activations are quantized per group of 32 too (rt_q_wo_row) */
    const float *s = param(q, mode == LATHE_QUANT_W8 ? "fc.weight.w8s" : "fc.weight.w4s");
    int rows = rt_q_wo_rows(M, K);
    for (int64_t k = 0; k < K; k++) {
      double sw = s[rt_q_ws_at(n, k / 32, K / 32)], ax = 0;
      for (int64_t i = k / 32 * 32; rows && i < k / 32 * 32 + 32; i++) ax = fmax(ax, fabs(x[m * K + i]));
      double sx = ax / 127;
      b += fabs(x[m * K + k]) * sw / 2 + (rows ? fabs(W[k * N + n]) * sx / 2 + sx * sw / 4 : 0);
    }
  } else if (mode == LATHE_QUANT_INT8_DYNAMIC) {
    double ax = 0, sw = param(q, "fc.weight.dq8s")[n];
    for (int64_t k = 0; k < K; k++) ax = fmax(ax, fabs(x[m * K + k]));
    double sx = ax / 127;
    for (int64_t k = 0; k < K; k++) b += fabs(x[m * K + k]) * sw / 2 + fabs(W[k * N + n]) * sx / 2 + sx * sw / 4;
  } else {
    double ulp = mode == LATHE_QUANT_BF16 ? 1.0 / 256 : 1.0 / 2048;
    for (int64_t k = 0; k < K; k++) b += fabs(x[m * K + k] * W[k * N + n]) * ulp;
  }
  return b * 1.001 + 1e-5;
}

static const char *const features[] = {NULL, "-avx512vnni", "-avx512vnni,-avxvnni", "none"};
enum { NFEAT = sizeof features / sizeof features[0] };
static int isa_seen[LATHE_RT_ISA_AVX512VNNI + 1];

static void set_features(const char *f) {
  if (f) setenv("LATHE_CPU_FEATURES", f, 1);
  else unsetenv("LATHE_CPU_FEATURES");
}

static void one_case(int mode, int64_t M, int64_t K, int64_t N) {
  lathe_model *m = qu_dense(K, N, M);
  if (!m) return;
  lathe_error err = {0};
  char wf[128], qf[128];
  snprintf(wf, sizeof wf, "%s/w.safetensors", dir);
  snprintf(qf, sizeof qf, "%s/q.safetensors", dir);
  lathe_program *f = compile(m, LATHE_BACKEND_INTERP, 0, NULL, &err);
  CHECK(f && lathe_weights_init(f, (uint64_t)(K * 131 + N), &err) == 0 && lathe_weights_save(f, wf, &err) == 0);
  lathe_quantize_options qo = {.weights = wf, .out = qf, .mode = mode};
  lathe_quantize_result qr;
  CHECK_MSG(lathe_quantize(m, &qo, &qr, &err) == 0, "%s", err.message);
  CHECK(qr.quantized == 1 && qr.kept == 0);
  float *x = malloc(sizeof(float) * (size_t)(M * K));
  for (int64_t i = 0; i < M * K; i++) x[i] = (float)(((i * 7919) % 2001) - 1000) / 250.0f; /* -4..4 */
  if (M > 1) x[K] = 0; /* a row with zeros in it */
  float *y32 = f ? run(f, x, M, K, N) : NULL;
  lathe_program *qi = compile(m, LATHE_BACKEND_INTERP, mode, qf, &err);
  CHECK_MSG(qi != NULL, "%s", err.message);
  float *yi = qi ? run(qi, x, M, K, N) : NULL;
  const float *W = f ? param(f, "fc.weight") : NULL;
  double worst = 0;
  for (int64_t i = 0; yi && y32 && W && i < M * N; i++) {
    double e = fabs(yi[i] - y32[i]), b = bound(mode, qi, x, W, M, i / N, i % N, K, N);
    worst = fmax(worst, e / b);
  }
  CHECK_MSG(yi && worst <= 1.0, "%s M=%lld K=%lld N=%lld: error %.3g of the bound", lathe_quant_name(mode),
            (long long)M, (long long)K, (long long)N, worst);
  int nf = NFEAT; /* every kernel path: the weight-only modes have AVX-512, AVX2 and C ones */
  for (int fi = 0; fi < nf; fi++) {
    set_features(features[fi]);
    isa_seen[lathe_rt_quant_isa()] = 1;
    lathe_program *ql = compile(m, LATHE_BACKEND_LLVM, mode, qf, &err);
    CHECK_MSG(ql != NULL, "%s", err.message);
    float *yl = ql ? run(ql, x, M, K, N) : NULL;
    /* bf16's kernel, hence its reference, follows the features too (tests/test_quant_bf16.c) */
    lathe_program *qr = mode == LATHE_QUANT_BF16 ? compile(m, LATHE_BACKEND_INTERP, mode, qf, &err) : NULL;
    float *yr = qr ? run(qr, x, M, K, N) : NULL;
    const float *ref = qr ? yr : yi;
    if (yl && ref) {
      if (mode == LATHE_QUANT_INT8_DYNAMIC)
        CHECK_MSG(memcmp(yl, yi, sizeof(float) * (size_t)(M * N)) == 0,
                  "int8-dynamic kernel %s M=%lld K=%lld N=%lld differs from the integer reference",
                  lathe_rt_isa_name(lathe_rt_quant_isa()), (long long)M, (long long)K, (long long)N);
      else {
        double e = 0;
        for (int64_t i = 0; i < M * N; i++) e = fmax(e, fabs(yl[i] - ref[i]) / (1 + fabs(ref[i])));
        CHECK_MSG(e <= 1e-5, "%s M=%lld K=%lld N=%lld: llvm vs interp %.3g", lathe_quant_name(mode), (long long)M,
                  (long long)K, (long long)N, e);
      }
    }
    free(yl), free(yr);
    lathe_program_free(ql), lathe_program_free(qr);
  }
  set_features(NULL);
  free(x), free(y32), free(yi);
  lathe_program_free(f);
  lathe_program_free(qi);
  lathe_model_free(m);
}

static void test_products(void) {
  static const int64_t shapes[][3] = {{1, 64, 16}, {7, 64, 33}, {4, 128, 8}, {64, 96, 20}, {3, 1024, 5},
                                      {13, 64, 150}}; /* 150: AVX-512's panels of 64 columns, then 22 */
  for (int mode = LATHE_QUANT_W8; mode <= LATHE_QUANT_F16; mode++)
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) one_case(mode, shapes[s][0], shapes[s][1], shapes[s][2]);
  /* K not a multiple of 64 (padded), of 32 (16-bit and int8-dynamic only) */
  one_case(LATHE_QUANT_INT8_DYNAMIC, 5, 100, 9);
  one_case(LATHE_QUANT_INT8_DYNAMIC, 9, 3, 4);
  one_case(LATHE_QUANT_BF16, 2, 100, 3);
  one_case(LATHE_QUANT_F16, 17, 40, 6); /* 17 rows: the dequantize-then-sgemm path */
  one_case(LATHE_QUANT_W4, 20, 64, 12);
  int n = 0;
  for (int i = 0; i <= LATHE_RT_ISA_AVX512VNNI; i++)
    if (isa_seen[i]) printf("int8 kernel tested: %s\n", lathe_rt_isa_name(i)), n++;
  CHECK(n >= 2 && isa_seen[LATHE_RT_ISA_SCALAR]);
}

/* ---- bad requests ---- */

static int has(const lathe_error *e, const char *s) {
  int ok = strstr(e->message, s) != NULL;
  if (!ok) fprintf(stderr, "  message: %s\n  wanted:  %s\n", e->message, s);
  return ok;
}

static void test_errors(void) {
  char wf[128], qf[128], q4[128], bad[128];
  snprintf(wf, sizeof wf, "%s/e.safetensors", dir);
  snprintf(qf, sizeof qf, "%s/e8.safetensors", dir);
  snprintf(q4, sizeof q4, "%s/e4.safetensors", dir);
  snprintf(bad, sizeof bad, "%s/bad.safetensors", dir);
  lathe_error err = {0};
  lathe_model *m = qu_dense(64, 8, 2);
  lathe_program *f = compile(m, LATHE_BACKEND_INTERP, 0, NULL, &err);
  CHECK(f && lathe_weights_init(f, 1, &err) == 0 && lathe_weights_save(f, wf, &err) == 0);
  lathe_quantize_options qo = {.weights = wf, .out = qf, .mode = 9};
  CHECK(lathe_quantize(m, &qo, NULL, &err) == LATHE_EUSER && has(&err, "unknown mode 9"));
  CHECK(lathe_quant_parse("int3") == -1 && lathe_quant_parse("w4") == LATHE_QUANT_W4);
  qo.mode = LATHE_QUANT_W8;
  CHECK(lathe_quantize(m, &qo, NULL, &err) == 0);
  qo.out = q4, qo.mode = LATHE_QUANT_W4;
  CHECK(lathe_quantize(m, &qo, NULL, &err) == 0);
  int mode = -1;
  CHECK(lathe_weights_quant(qf, &mode, &err) == 0 && mode == LATHE_QUANT_W8);
  CHECK(lathe_weights_quant(wf, &mode, &err) == 0 && mode == LATHE_QUANT_NONE);
  /* already quantized */
  qo.weights = qf;
  CHECK(lathe_quantize(m, &qo, NULL, &err) == LATHE_EUSER && has(&err, "holds w8-quantized weights already"));
  /* into programs they do not fit */
  CHECK(compile(m, LATHE_BACKEND_INTERP, 0, qf, &err) == NULL && has(&err, "compile with that quantization"));
  CHECK(compile(m, LATHE_BACKEND_INTERP, LATHE_QUANT_W4, qf, &err) == NULL && has(&err, "but the program was compiled for w4"));
  CHECK(compile(m, LATHE_BACKEND_INTERP, LATHE_QUANT_W8, wf, &err) == NULL &&
        has(&err, "missing quantized tensor 'fc.weight.w8'"));
  lathe_model *other = qu_dense(128, 8, 2); /* w8 stores its 8 columns in a block of 16 */
  CHECK(compile(other, LATHE_BACKEND_LLVM, LATHE_QUANT_W8, qf, &err) == NULL &&
        has(&err, "tensor 'fc.weight.w8' has shape [16, 64], but the model expects [16, 128]"));
  lathe_options o = {.quant = 7};
  CHECK(lathe_compile(m, &o, &err) == NULL && has(&err, "quant must be a lathe_quant"));
  /* a tensor of the wrong dtype for its mode */
  rt_st_file sf = {0};
  char msg[512];
  CHECK(rt_st_read(qf, &sf, msg, sizeof msg) == 0);
  for (int i = 0; i < sf.n; i++)
    if (!strcmp(sf.e[i].name, "fc.weight.w8")) sf.e[i].t.dtype = LATHE_U8;
  CHECK(rt_st_write_meta(bad, sf.e, sf.n, (const char *const *)sf.meta, sf.nmeta, msg, sizeof msg) == 0);
  CHECK(compile(m, LATHE_BACKEND_INTERP, LATHE_QUANT_W8, bad, &err) == NULL &&
        has(&err, "quantized tensor 'fc.weight.w8' has dtype u8, but the model expects i8"));
  /* a file of the older w8 layout (same shapes, no layout version) or another version: refused */
  for (int i = 0; i < sf.n; i++)
    if (!strcmp(sf.e[i].name, "fc.weight.w8")) sf.e[i].t.dtype = LATHE_I8;
  CHECK(sf.nmeta == 1 && !strcmp(rt_st_meta(&sf, "lathe.quant_layout"), "2"));
  CHECK(rt_st_write(bad, sf.e, sf.n, msg, sizeof msg) == 0);
  CHECK(compile(m, LATHE_BACKEND_INTERP, LATHE_QUANT_W8, bad, &err) == NULL &&
        has(&err, "holds w8-quantized weights in an older layout (no lathe.quant_layout in its metadata), not "
                  "this Lathe's (2): re-run lathe quantize on the f32 weights"));
  CHECK(lathe_weights_quant(bad, &mode, &err) == LATHE_EUSER && has(&err, "re-run lathe quantize"));
  const char *v1[] = {"lathe.quant_layout", "1"};
  CHECK(rt_st_write_meta(bad, sf.e, sf.n, v1, 1, msg, sizeof msg) == 0);
  CHECK(compile(m, LATHE_BACKEND_INTERP, LATHE_QUANT_W8, bad, &err) == NULL &&
        has(&err, "holds w8-quantized weights in layout 1, not this Lathe's (2)"));
  rt_st_free(&sf);
  /* nothing to quantize: a width that is not a multiple of the group, and no dense layer at all */
  lathe_model *odd = qu_dense(40, 4, 2);
  lathe_program *fo = compile(odd, LATHE_BACKEND_INTERP, 0, NULL, &err);
  CHECK(fo && lathe_weights_init(fo, 1, &err) == 0 && lathe_weights_save(fo, wf, &err) == 0);
  qo.weights = wf, qo.out = bad, qo.mode = LATHE_QUANT_W8;
  CHECK(lathe_quantize(odd, &qo, NULL, &err) == LATHE_EUSER &&
        has(&err, "nothing to quantize in mode w8: fc.weight stays f32: its input width is not a multiple of 32"));
  qo.mode = LATHE_QUANT_INT8_DYNAMIC;
  CHECK(lathe_quantize(odd, &qo, NULL, &err) == 0);
  const char *relu = "model r\ninput x : f32[batch, 4]\noutput y = relu(x)\n";
  lathe_model *r = lathe_model_parse("r.nn", relu, strlen(relu), &err);
  CHECK(r && lathe_model_bind(r, "batch", 1, &err) == 0);
  lathe_program *fr = r ? compile(r, LATHE_BACKEND_INTERP, 0, NULL, &err) : NULL;
  CHECK_MSG(fr && lathe_weights_save(fr, wf, &err) == 0, "%s", err.message);
  CHECK(lathe_quantize(r, &qo, NULL, &err) == LATHE_EUSER && has(&err, "it has no dense weight matrix"));
  CHECK(lathe_quantize(NULL, &qo, NULL, &err) == LATHE_EUSER);
  lathe_error_clear(&err);
  lathe_program_free(fr), lathe_program_free(fo), lathe_program_free(f);
  lathe_model_free(r), lathe_model_free(odd), lathe_model_free(other), lathe_model_free(m);
}

int main(void) {
  /* every kernel path, however slow: the rule that keeps such layers f32 has its own test (test_quant_keep.c) */
  setenv("LATHE_QUANT_KEEP_F32", "0", 1);
  if (!mkdtemp(dir)) {
    perror("mkdtemp");
    return 1;
  }
  test_products();
  test_errors();
  const char *names[] = {"w.safetensors", "q.safetensors", "e.safetensors", "e8.safetensors", "e4.safetensors",
                         "bad.safetensors"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    char p[160];
    snprintf(p, sizeof p, "%s/%s", dir, names[i]);
    unlink(p);
  }
  rmdir(dir);
  return TEST_REPORT();
}
