/* test_quant_s8.c -- static int8 (lathe_quantize mode int8, docs/quantize.md):
 *  - calibration: the input scale saved after the column scales is max |x|
 *    / 127 over the training split (minmax), less with a percentile;
 *  - the LLVM backend's kernels equal the interpreter's exact integer
 *    reference bit for bit on every kernel this CPU has (LATHE_CPU_FEATURES
 *    turns paths off); without SIMD integer dot products (the scalar
 *    kernel) the f32 form is chosen and agrees with the interpreter's in
 *    f32 rounding (both its paths: a few rows, and the panel from 16);
 *    the bias and relu after the product folded into its epilogue;
 *  - the output is within the quantization error bound of the f32 product
 *    (|w - s q| <= s / 2 per weight, |x - sx qx| <= sx / 2 per input);
 *  - bad requests: no calibration data, bad calibration settings, nothing
 *    to quantize, an int8 file into an f32 program, a tensor of the wrong
 *    dtype. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lathe.h"
#include "rt/lathe_rt.h"
#include "runtime/runtime.h"
#include "test.h"
#include "quant_util.h"

static char dir[] = "/tmp/lathe_qs8_XXXXXX";
static char wf[QU_PATH], qf[QU_PATH], csv[QU_PATH];
static int relu; /* the model's output: relu(dense(x)), the epilogue folded with its relu */

/* a dense layer with a loss (calibration reads data as training does) */
static lathe_model *model(int64_t K, int64_t N, int64_t M) {
  char src[512];
  snprintf(src, sizeof src,
           "model q\ninput x : f32[batch, %lld]\ntarget t : i32[batch]\noutput y = %sdense(x, %lld, name=\"fc\")%s\n"
           "loss = cross_entropy(y, t)\ntrain {\n  batch = 8\n  split = [0.5, 0.25, 0.25]\n}\n",
           (long long)K, relu ? "relu(" : "", (long long)N, relu ? ")" : "");
  lathe_error err = {0};
  lathe_model *m = lathe_model_parse("q.nn", src, strlen(src), &err);
  CHECK_MSG(m != NULL, "%s", err.message);
  if (m && M > 0) CHECK(lathe_model_bind(m, "batch", M, &err) == 0);
  return m;
}

static float xval(int64_t i) { return (float)(((i * 7919) % 2001) - 1000) / 250.0f; } /* -4..4 */

/* rows of K features in -4..4 (each row has a 4 and a -4: every batch's
 * max |x| is 4) and a label */
static void write_csv(int64_t K, int64_t N, int rows) {
  FILE *f = fopen(csv, "w");
  CHECK(f != NULL);
  if (!f) return;
  for (int r = 0; r < rows; r++) {
    for (int64_t k = 0; k < K; k++)
      fprintf(f, "%.6g,", k == 0 ? 4.0 : k == 1 && K > 2 ? -4.0 : (double)xval(r * K + k + 7));
    fprintf(f, "%d\n", r % (int)N);
  }
  fclose(f);
}

/* the bias of the f32 product's output is the same in both programs (it
 * stays f32); the product's error: |x||dw| + |w||dx| + |dx||dw| */
static double bound(const float *s, const float *x, const float *W, int64_t m, int64_t n, int64_t K, int64_t N) {
  double b = 0, sx = s[N], sw = s[n];
  for (int64_t k = 0; k < K; k++) b += fabs(x[m * K + k]) * sw / 2 + fabs(W[k * N + n]) * sx / 2 + sx * sw / 4;
  return b * 1.001 + 1e-5;
}

static const char *const features[] = {NULL, "-avx512vnni", "-avx512vnni,-avxvnni", "none"};
enum { NFEAT = sizeof features / sizeof features[0] };
static int isa_seen[LATHE_RT_ISA_AMXBF16 + 1];

static void set_features(const char *f) {
  if (f) setenv("LATHE_CPU_FEATURES", f, 1);
  else unsetenv("LATHE_CPU_FEATURES");
}

/* the node's kernel as the pass chose it, from the --print-after dump;
 * the epilogue folded: the bias is its fifth input, relu its axis=1 */
static int64_t kernel_of(lathe_model *m, lathe_error *err) {
  char *buf = NULL;
  size_t len = 0;
  FILE *log = open_memstream(&buf, &len);
  lathe_options o = {.backend = LATHE_BACKEND_INTERP, .quant = LATHE_QUANT_INT8, .print_after = "quantize",
                     .pass_log = log};
  lathe_program *p = lathe_compile(m, &o, err);
  fclose(log);
  char *at = buf ? strstr(buf, "= qmatmul(") : NULL, *eol = at ? strchr(at, '\n') : NULL;
  if (eol) *eol = 0;
  int commas = 0;
  for (const char *c = at ? at : ""; *c && *c != ')'; c++) commas += *c == ',';
  CHECK_MSG(at && commas == 4 && (strstr(at, ") axis=1 ") != NULL) == relu, "epilogue not folded: %s", at ? at : "-");
  const char *k = at ? strstr(at, " k=") : NULL;
  int64_t r = !at ? -1 : k ? strtoll(k + 3, NULL, 10) : 0; /* the dump leaves out k=0 */
  free(buf);
  lathe_program_free(p);
  return r;
}

static void one_case(int64_t M, int64_t K, int64_t N) {
  lathe_model *mq = model(K, N, 0), *m = model(K, N, M);
  if (!m || !mq) return;
  lathe_error err = {0};
  lathe_program *f = compile(m, LATHE_BACKEND_INTERP, 0, NULL, &err);
  CHECK(f && lathe_weights_init(f, (uint64_t)(K * 131 + N), &err) == 0);
  float *bias = f ? (float *)param(f, "fc.bias") : NULL; /* initialised to zeros: give the epilogue some */
  for (int64_t n = 0; bias && n < N; n++) bias[n] = 0.25f * (float)(n % 7) - 0.75f;
  CHECK(f && lathe_weights_save(f, wf, &err) == 0);
  write_csv(K, N, 40);
  lathe_quantize_options qo = {.weights = wf, .out = qf, .mode = LATHE_QUANT_INT8, .data = csv, .calib_batches = 100};
  lathe_quantize_result qr;
  CHECK_MSG(lathe_quantize(mq, &qo, &qr, &err) == 0, "%s", err.message);
  CHECK(qr.quantized == 1 && qr.kept == 0);
  float *x = malloc(sizeof(float) * (size_t)(M * K));
  for (int64_t i = 0; i < M * K; i++) x[i] = xval(i);
  if (M > 1) x[K] = 0;
  float *y32 = f ? run(f, x, M, K, N) : NULL;
  const float *W = f ? param(f, "fc.weight") : NULL;
  for (int fi = 0; fi < NFEAT; fi++) {
    set_features(features[fi]);
    int64_t isa = lathe_rt_quant_isa(), k = kernel_of(m, &err);
    /* no SIMD integer dot products: the f32 form; AMX's tiles where allowed (LATHE_AMX_EMULATE=1 too) */
    int64_t want = lathe_rt_amx_isa(LATHE_RT_Q_S8, isa == LATHE_RT_ISA_SCALAR ? LATHE_RT_ISA_F32 : isa);
    int f32 = want == LATHE_RT_ISA_F32;
    CHECK_MSG(k == want, "M=%lld features %s: kernel %lld", (long long)M,
              features[fi] ? features[fi] : "all", (long long)k);
    isa_seen[k >= 0 && k <= LATHE_RT_ISA_AMXBF16 ? k : 0] = 1;
    lathe_program *qi = compile(m, LATHE_BACKEND_INTERP, LATHE_QUANT_INT8, qf, &err);
    lathe_program *ql = compile(m, LATHE_BACKEND_LLVM, LATHE_QUANT_INT8, qf, &err);
    CHECK_MSG(qi && ql, "%s", err.message);
    const float *s = qi ? param(qi, "fc.weight.i8s") : NULL;
    CHECK(s && fabsf(s[N] - 4.0f / 127) < 1e-7f); /* minmax: every row reaches 4 */
    float *yi = qi ? run(qi, x, M, K, N) : NULL, *yl = ql ? run(ql, x, M, K, N) : NULL;
    double worst = 0, diff = 0;
    for (int64_t i = 0; s && yi && y32 && W && i < M * N; i++)
      worst = fmax(worst, fabs(yi[i] - y32[i]) / bound(s, x, W, i / N, i % N, K, N));
    CHECK_MSG(yi && worst <= 1.0, "int8 M=%lld K=%lld N=%lld: error %.3g of the bound", (long long)M, (long long)K,
              (long long)N, worst);
    for (int64_t i = 0; yi && yl && i < M * N; i++) diff = fmax(diff, fabs(yl[i] - yi[i]) / (1 + fabs(yi[i])));
    if (yi && yl && !f32)
      CHECK_MSG(memcmp(yl, yi, sizeof(float) * (size_t)(M * N)) == 0,
                "int8 kernel %s M=%lld K=%lld N=%lld differs from the integer reference (by %.3g)",
                lathe_rt_isa_name(isa), (long long)M, (long long)K, (long long)N, diff);
    else CHECK_MSG(yi && yl && diff <= 1e-5, "int8 f32 form M=%lld: %.3g", (long long)M, diff);
    free(yi), free(yl);
    lathe_program_free(qi), lathe_program_free(ql);
  }
  set_features(NULL);
  free(x), free(y32);
  lathe_program_free(f);
  lathe_model_free(m), lathe_model_free(mq);
}

static void test_products(void) {
  static const int64_t shapes[][3] = {{1, 64, 16}, {7, 64, 33}, {4, 128, 8}, {64, 96, 20}, {5, 100, 9}, {1, 3, 4},
                                      {17, 70, 5}, {13, 130, 150}}; /* 150: AVX-512's panels of 64 columns, then 22 */
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) one_case(shapes[s][0], shapes[s][1], shapes[s][2]);
  relu = 1; /* + bias and relu in the product's epilogue, a few rows and the panel */
  one_case(7, 64, 33);
  one_case(13, 130, 150);
  one_case(1, 64, 16);
  one_case(20, 70, 5);
  relu = 0;
  for (int i = 0; i <= LATHE_RT_ISA_AMXBF16; i++)
    if (isa_seen[i]) printf("int8 kernel tested: %s\n", lathe_rt_isa_name(i));
  CHECK(isa_seen[LATHE_RT_ISA_F32]);
}

/* a percentile below 100 clips: a smaller scale than minmax's */
static void test_percentile(void) {
  lathe_model *mq = model(64, 8, 0), *m = model(64, 8, 4);
  lathe_error err = {0};
  lathe_program *f = compile(m, LATHE_BACKEND_INTERP, 0, NULL, &err);
  CHECK(f && lathe_weights_init(f, 3, &err) == 0 && lathe_weights_save(f, wf, &err) == 0);
  write_csv(64, 8, 40);
  lathe_quantize_options qo = {.weights = wf, .out = qf, .mode = LATHE_QUANT_INT8, .data = csv,
                               .calib = LATHE_CALIB_PERCENTILE, .percentile = 90};
  CHECK_MSG(lathe_quantize(mq, &qo, NULL, &err) == 0, "%s", err.message);
  lathe_program *q = compile(m, LATHE_BACKEND_LLVM, LATHE_QUANT_INT8, qf, &err);
  const float *s = q ? param(q, "fc.weight.i8s") : NULL;
  CHECK_MSG(s && s[8] > 0 && s[8] < 3.9f / 127, "percentile scale %g", s ? s[8] : -1.0);
  lathe_program_free(q), lathe_program_free(f);
  lathe_model_free(m), lathe_model_free(mq);
}

static int has(const lathe_error *e, const char *s) {
  int ok = strstr(e->message, s) != NULL;
  if (!ok) fprintf(stderr, "  message: %s\n  wanted:  %s\n", e->message, s);
  return ok;
}

static void test_errors(void) {
  lathe_model *mq = model(64, 8, 0), *m = model(64, 8, 2);
  lathe_error err = {0};
  lathe_program *f = compile(m, LATHE_BACKEND_INTERP, 0, NULL, &err);
  CHECK(f && lathe_weights_init(f, 1, &err) == 0 && lathe_weights_save(f, wf, &err) == 0);
  write_csv(64, 8, 20);
  lathe_quantize_options qo = {.weights = wf, .out = qf, .mode = LATHE_QUANT_INT8};
  CHECK(lathe_quantize(mq, &qo, NULL, &err) == LATHE_EUSER && has(&err, "there is no calibration data"));
  CHECK(lathe_quant_parse("int8") == LATHE_QUANT_INT8 && !strcmp(lathe_quant_name(LATHE_QUANT_INT8), "int8"));
  qo.data = csv, qo.calib = 2;
  CHECK(lathe_quantize(mq, &qo, NULL, &err) == LATHE_EUSER && has(&err, "calib must be minmax (0) or percentile (1)"));
  qo.calib = LATHE_CALIB_MINMAX, qo.percentile = 101;
  CHECK(lathe_quantize(mq, &qo, NULL, &err) == LATHE_EUSER && has(&err, "percentile in [0, 100]"));
  qo.percentile = 0;
  char missing[160];
  snprintf(missing, sizeof missing, "%s/none.csv", dir);
  qo.data = missing;
  CHECK(lathe_quantize(mq, &qo, NULL, &err) != 0 && err.message[0]);
  qo.data = csv;
  CHECK_MSG(lathe_quantize(mq, &qo, NULL, &err) == 0, "%s", err.message);
  int mode = -1;
  CHECK(lathe_weights_quant(qf, &mode, &err) == 0 && mode == LATHE_QUANT_INT8);
  CHECK(compile(m, LATHE_BACKEND_INTERP, 0, qf, &err) == NULL && has(&err, "holds int8-quantized weights"));
  CHECK(compile(m, LATHE_BACKEND_INTERP, LATHE_QUANT_INT8_DYNAMIC, qf, &err) == NULL &&
        has(&err, "but the program was compiled for int8-dynamic"));
  /* a tensor of the wrong dtype */
  char bad[160], msg[512];
  snprintf(bad, sizeof bad, "%s/bad.safetensors", dir);
  rt_st_file sf = {0};
  CHECK(rt_st_read(qf, &sf, msg, sizeof msg) == 0);
  for (int i = 0; i < sf.n; i++)
    if (!strcmp(sf.e[i].name, "fc.weight.i8")) sf.e[i].t.dtype = LATHE_U8;
  CHECK(rt_st_write(bad, sf.e, sf.n, msg, sizeof msg) == 0);
  rt_st_free(&sf);
  CHECK(compile(m, LATHE_BACKEND_LLVM, LATHE_QUANT_INT8, bad, &err) == NULL &&
        has(&err, "quantized tensor 'fc.weight.i8' has dtype u8, but the model expects i8"));
  unlink(bad);
  /* nothing to quantize */
  const char *relu = "model r\ninput x : f32[batch, 4]\ntarget t : f32[batch, 4]\noutput y = relu(x)\n"
                     "loss = mse(y, t)\n";
  lathe_model *r = lathe_model_parse("r.nn", relu, strlen(relu), &err);
  CHECK(r && lathe_model_bind(r, "batch", 1, &err) == 0);
  lathe_program *fr = r ? compile(r, LATHE_BACKEND_INTERP, 0, NULL, &err) : NULL;
  CHECK_MSG(fr && lathe_weights_save(fr, wf, &err) == 0, "%s", err.message);
  CHECK(lathe_quantize(r, &qo, NULL, &err) == LATHE_EUSER &&
        has(&err, "model 'r' has nothing to quantize in mode int8: it has no dense weight matrix"));
  lathe_error_clear(&err);
  lathe_program_free(fr), lathe_program_free(f);
  lathe_model_free(r), lathe_model_free(m), lathe_model_free(mq);
}

int main(void) {
  /* every kernel path, however slow: the rule that keeps such layers f32 has its own test (test_quant_keep.c) */
  setenv("LATHE_QUANT_KEEP_F32", "0", 1);
  if (qu_tmp_open(dir, wf, qf, csv)) return 1;
  test_products();
  test_percentile();
  test_errors();
  qu_tmp_close(dir, wf, qf, csv);
  return TEST_REPORT();
}
