/* test_qconv.c -- int8 conv2d (qconv2d: lathe_quantize modes int8 and
 * int8-dynamic on a conv2d's weight, docs/quantize.md):
 *  - on every kernel this CPU has (LATHE_CPU_FEATURES turns paths off) the
 *    LLVM backend equals the interpreter's exact integer reference bit for
 *    bit (static int8 without SIMD integer dot products: the f32 form,
 *    equal to the interpreter's within f32 rounding), over strides,
 *    paddings, a rectangular kernel, a 1-d conv, with and without the relu
 *    folded into the epilogue;
 *  - the output is within the quantization error bound of the f32 conv;
 *  - calibration reads the conv's input (max |x| / 127);
 *  - what stays f32 and says why: a window of fewer than 32 inputs, an
 *    output of fewer than 256 pixels per image, a grouped conv, conv weights in a weight-only mode (nothing to
 *    quantize). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lathe.h"
#include "rt/lathe_rt.h"
#include "test.h"
#include "quant_util.h"

static char dir[] = "/tmp/lathe_qconv_XXXXXX";
static char wf[QU_PATH], qf[QU_PATH], csv[QU_PATH];

typedef struct {
  int64_t C, H, W, O, k, stride, pad; /* H = 0: a 1-d conv over W */
  int relu, groups;
} qc_case;

static int64_t out_side(int64_t n, const qc_case *c) { return (n + 2 * c->pad - c->k) / c->stride + 1; }
static int64_t in_numel(const qc_case *c) { return c->C * (c->H ? c->H : 1) * c->W; }
static int64_t out_numel(const qc_case *c) { return c->O * (c->H ? out_side(c->H, c) : 1) * out_side(c->W, c); }

static lathe_model *model(const qc_case *c, int64_t M) {
  char src[1024], shape[64];
  if (c->H) snprintf(shape, sizeof shape, "%lld, %lld, %lld", (long long)c->C, (long long)c->H, (long long)c->W);
  else snprintf(shape, sizeof shape, "%lld, %lld", (long long)c->C, (long long)c->W);
  snprintf(src, sizeof src,
           "model q\ninput x : f32[batch, %s]\ntarget t : i32[batch]\n"
           "h = %s(x, %lld, kernel=%lld, stride=%lld, padding=%lld, groups=%d, name=\"cv\")%s\noutput y = h\n"
           "loss = cross_entropy(flatten(h), t)\ntrain {\n  batch = 4\n  split = [0.5, 0.25, 0.25]\n}\n",
           shape, c->H ? "conv2d" : "conv1d", (long long)c->O, (long long)c->k, (long long)c->stride,
           (long long)c->pad, c->groups ? c->groups : 1, c->relu ? " |> relu" : "");
  lathe_error err = {0};
  lathe_model *m = lathe_model_parse("q.nn", src, strlen(src), &err);
  CHECK_MSG(m != NULL, "%s", err.message);
  if (m && M > 0) CHECK(lathe_model_bind(m, "batch", M, &err) == 0);
  return m;
}

static float xval(int64_t i) { return (float)(((i * 7919) % 2001) - 1000) / 250.0f; } /* -4..4 */

/* rows whose features reach 4 and -4 (every batch's max |x| is 4) */
static void write_csv(int64_t F, int rows) {
  FILE *f = fopen(csv, "w");
  CHECK(f != NULL);
  if (!f) return;
  for (int r = 0; r < rows; r++) {
    for (int64_t k = 0; k < F; k++) fprintf(f, "%.6g,", k == 0 ? 4.0 : k == 1 ? -4.0 : (double)xval(r * F + k + 7));
    fprintf(f, "%d\n", r % 3);
  }
  fclose(f);
}

/* y of p on x [M, in_numel]; malloc'd */
static float *run_conv(lathe_program *p, const qc_case *c, const float *x, int64_t M) {
  lathe_error err = {0};
  lathe_tensor t = {.dtype = LATHE_F32, .rank = c->H ? 4 : 3, .data = (void *)x}, y = {0};
  t.shape[0] = M, t.shape[1] = c->C;
  if (c->H) t.shape[2] = c->H;
  t.shape[t.rank - 1] = c->W;
  if (lathe_set_input(p, "x", &t, &err) || lathe_run(p, &err) || lathe_get_output(p, "y", &y, &err)) {
    CHECK_MSG(0, "run: %s", err.message);
    return NULL;
  }
  CHECK(lathe_tensor_numel(&y) == M * out_numel(c));
  return y.data;
}

static const char *const features[] = {NULL, "-avx512vnni", "-avx512vnni,-avxvnni", "none"};
enum { NFEAT = sizeof features / sizeof features[0] };
static int isa_seen[LATHE_RT_ISA_F32 + 1];

static void set_features(const char *f) {
  if (f) setenv("LATHE_CPU_FEATURES", f, 1);
  else unsetenv("LATHE_CPU_FEATURES");
}

/* the qconv2d line of the --print-after=quantize dump: its kernel (-1:
 * none), and whether the relu joined it */
static int64_t kernel_of(lathe_model *m, int mode, int *relu, lathe_error *err) {
  char *buf = NULL;
  size_t len = 0;
  FILE *log = open_memstream(&buf, &len);
  lathe_options o = {.backend = LATHE_BACKEND_INTERP, .quant = mode, .print_after = "quantize", .pass_log = log};
  lathe_program *p = lathe_compile(m, &o, err);
  fclose(log);
  char *at = buf ? strstr(buf, "= qconv2d(") : NULL, *eol = at ? strchr(at, '\n') : NULL;
  if (eol) *eol = 0;
  *relu = at && strstr(at, " axis=1") != NULL;
  const char *k = at ? strstr(at, " k=") : NULL;
  int64_t r = !at ? -1 : k ? strtoll(k + 3, NULL, 10) : 0; /* the dump leaves out k=0 */
  free(buf);
  lathe_program_free(p);
  return r;
}

/* |y - y32| <= K (max|x| sw / 2 + max|w| sx / 2 + sx sw / 4), sx the
 * largest row scale (max |x| / 127 bounds every row's and the calibrated) */
static double bound(const float *s, const float *x, int64_t nx, const float *W, int64_t K, int64_t o) {
  double ax = 0, aw = 0, sx = 4.0 / 127, sw = s[o];
  for (int64_t i = 0; i < nx; i++) ax = fmax(ax, fabs(x[i]));
  for (int64_t k = 0; k < K; k++) aw = fmax(aw, fabs(W[o * K + k]));
  return K * (ax * sw / 2 + aw * sx / 2 + sx * sw / 4) * 1.001 + 1e-5;
}

static void one_case(const qc_case *c, int64_t M, int mode) {
  lathe_model *mq = model(c, 0), *m = model(c, M);
  if (!m || !mq) return;
  lathe_error err = {0};
  int64_t F = in_numel(c), Y = out_numel(c), K = c->C * c->k * (c->H ? c->k : 1), P = Y / c->O;
  lathe_program *f = compile(m, LATHE_BACKEND_INTERP, 0, NULL, &err);
  CHECK(f && lathe_weights_init(f, (uint64_t)(K * 131 + c->O), &err) == 0 && lathe_weights_save(f, wf, &err) == 0);
  write_csv(F, 24);
  lathe_quantize_options qo = {.weights = wf, .out = qf, .mode = mode, .data = csv, .calib_batches = 100};
  lathe_quantize_result qr;
  CHECK_MSG(lathe_quantize(mq, &qo, &qr, &err) == 0, "%s", err.message);
  CHECK_MSG(qr.quantized == 1 && qr.kept == 0, "quantized %d kept %d: %s", qr.quantized, qr.kept, qr.note);
  float *x = malloc(sizeof(float) * (size_t)(M * F));
  for (int64_t i = 0; i < M * F; i++) x[i] = xval(i);
  x[0] = 4.0f; /* max |x| = 4: the calibrated scale's */
  float *y32 = f ? run_conv(f, c, x, M) : NULL;
  const float *W = f ? param(f, "cv.weight") : NULL;
  const char *sname = mode == LATHE_QUANT_INT8 ? "cv.weight.i8s" : "cv.weight.dq8s";
  for (int fi = 0; fi < NFEAT; fi++) {
    set_features(features[fi]);
    int64_t isa = lathe_rt_quant_isa();
    int relu = 0, f32 = mode == LATHE_QUANT_INT8 && isa == LATHE_RT_ISA_SCALAR;
    int64_t k = kernel_of(m, mode, &relu, &err);
    CHECK_MSG(k == (f32 ? LATHE_RT_ISA_F32 : isa) && relu == c->relu, "features %s: kernel %lld relu %d",
              features[fi] ? features[fi] : "all", (long long)k, relu);
    isa_seen[k >= 0 && k <= LATHE_RT_ISA_F32 ? k : 0] = 1;
    lathe_program *qi = compile(m, LATHE_BACKEND_INTERP, mode, qf, &err);
    lathe_program *ql = qi ? compile(m, LATHE_BACKEND_LLVM, mode, qf, &err) : NULL;
    CHECK_MSG(qi && ql, "%s", err.message);
    const float *s = qi ? param(qi, sname) : NULL;
    if (mode == LATHE_QUANT_INT8) CHECK_MSG(s && fabsf(s[c->O] - 4.0f / 127) < 1e-7f, "sx %g", s ? s[c->O] : -1.0);
    float *yi = qi ? run_conv(qi, c, x, M) : NULL, *yl = ql ? run_conv(ql, c, x, M) : NULL;
    double worst = 0, diff = 0;
    for (int64_t i = 0; s && yi && y32 && W && i < M * Y; i++)
      worst = fmax(worst, fabs(yi[i] - y32[i]) / bound(s, x, M * F, W, K, (i / P) % c->O));
    CHECK_MSG(yi && worst <= 1.0, "C=%lld O=%lld k=%lld: error %.3g of the bound", (long long)c->C, (long long)c->O,
              (long long)c->k, worst);
    for (int64_t i = 0; yi && yl && i < M * Y; i++) diff = fmax(diff, fabs(yl[i] - yi[i]) / (1 + fabs(yi[i])));
    if (yi && yl && !f32)
      CHECK_MSG(memcmp(yl, yi, sizeof(float) * (size_t)(M * Y)) == 0,
                "qconv2d kernel %s C=%lld O=%lld k=%lld M=%lld differs from the integer reference (by %.3g)",
                lathe_rt_isa_name(isa), (long long)c->C, (long long)c->O, (long long)c->k, (long long)M, diff);
    else CHECK_MSG(yi && yl && diff <= 1e-5, "qconv2d f32 form: %.3g", diff);
    free(yi), free(yl);
    lathe_program_free(qi), lathe_program_free(ql);
  }
  set_features(NULL);
  free(x), free(y32);
  lathe_program_free(f);
  lathe_model_free(m), lathe_model_free(mq);
}

static void test_convs(void) {
  static const qc_case cases[] = { /* outputs of at least 256 pixels: smaller ones stay f32 */
    {.C = 16, .H = 16, .W = 16, .O = 32, .k = 3, .stride = 1, .pad = 1, .relu = 1},
    {.C = 4, .H = 33, .W = 33, .O = 5, .k = 3, .stride = 2, .pad = 1},
    {.C = 8, .H = 17, .W = 17, .O = 20, .k = 2, .stride = 1, .pad = 0, .relu = 1},
    {.C = 8, .H = 0, .W = 260, .O = 7, .k = 5, .stride = 1, .pad = 2}, /* 1-d */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    one_case(&cases[i], 1, LATHE_QUANT_INT8);
    one_case(&cases[i], 2, LATHE_QUANT_INT8);
    one_case(&cases[i], 1, LATHE_QUANT_INT8_DYNAMIC);
  }
  for (int i = 0; i <= LATHE_RT_ISA_F32; i++)
    if (isa_seen[i]) printf("int8 conv kernel tested: %s\n", lathe_rt_isa_name(i));
  CHECK(isa_seen[LATHE_RT_ISA_F32]);
}

static int has(const lathe_error *e, const char *s) {
  int ok = strstr(e->message, s) != NULL;
  if (!ok) fprintf(stderr, "  message: %s\n  wanted:  %s\n", e->message, s);
  return ok;
}

/* a conv that stays f32: lathe_quantize says why (its only weight: nothing
 * to quantize) */
static void kept(const qc_case *c, int mode, const char *why) {
  lathe_model *mq = model(c, 0), *m = model(c, 2);
  lathe_error err = {0};
  lathe_program *f = m ? compile(m, LATHE_BACKEND_INTERP, 0, NULL, &err) : NULL;
  CHECK(f && lathe_weights_init(f, 1, &err) == 0 && lathe_weights_save(f, wf, &err) == 0);
  write_csv(in_numel(c), 8);
  lathe_quantize_options qo = {.weights = wf, .out = qf, .mode = mode, .data = csv};
  CHECK(lathe_quantize(mq, &qo, NULL, &err) == LATHE_EUSER && has(&err, "nothing to quantize") && has(&err, why));
  lathe_error_clear(&err);
  lathe_program_free(f);
  lathe_model_free(m), lathe_model_free(mq);
}

static void test_kept(void) {
  qc_case small = {.C = 1, .H = 8, .W = 8, .O = 16, .k = 3, .stride = 1, .pad = 1}; /* the digits CNN's conv1 */
  kept(&small, LATHE_QUANT_INT8, "cv.weight stays f32: its window has fewer than 32 inputs");
  qc_case few = {.C = 16, .H = 4, .W = 4, .O = 32, .k = 3, .stride = 1, .pad = 1}; /* the digits CNN's conv2 */
  kept(&few, LATHE_QUANT_INT8, "cv.weight stays f32: its output has 16 pixels per image, fewer than 256: int8 would "
       "be slower than f32 at batch 1");
  qc_case grouped = {.C = 8, .H = 16, .W = 16, .O = 8, .k = 3, .stride = 1, .pad = 1, .groups = 2};
  kept(&grouped, LATHE_QUANT_INT8_DYNAMIC, "cv.weight stays f32: a grouped convolution");
  qc_case wide = {.C = 16, .H = 4, .W = 4, .O = 8, .k = 3, .stride = 1, .pad = 1};
  kept(&wide, LATHE_QUANT_W8, "no dense weight matrix");
}

int main(void) {
  if (qu_tmp_open(dir, wf, qf, csv)) return 1;
  test_convs();
  test_kept();
  qu_tmp_close(dir, wf, qf, csv);
  return TEST_REPORT();
}
