/* test_dconv.c -- the direct f32 conv2d (rt/rt_dconv.c, lathe_rt_conv2d;
 * codegen/llvm/cg_dconv.c picks it for small channel counts):
 *  - the kernel on each path this CPU has (AVX-512, AVX2, scalar) against a
 *    double-precision reference, over paddings (asymmetric too), strides,
 *    dilations, rectangular kernels, channel counts that are not a multiple
 *    of the vector width, no bias, with and without relu; every path sums
 *    in the same order, so they agree bit for bit;
 *  - LATHE_CPU_FEATURES narrows lathe_rt_conv_isa (-avx512f, -avx2, none);
 *  - through the API, with each forced feature set at compile time: the
 *    LLVM backend equals the interpreter within 1e-5 of the output's scale
 *    for conv2d alone, with relu (run in the kernel) and with sigmoid (a
 *    fused step run over the result), padding "same", stride 2, the digits
 *    CNN's shapes, and NaN inputs (relu keeps NaN, as the reference). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lathe.h"
#include "rt/lathe_rt.h"
#include "test.h"

typedef struct {
  int64_t N, C, H, W, O, KH, KW, s, dil, padT, padL, padB, padR;
  int bias, relu;
  int pool; /* a fused k x k max-pool of stride k (0: none) */
} dc_case;

static int64_t oh(const dc_case *c) { return (c->H + c->padT + c->padB - (c->KH - 1) * c->dil - 1) / c->s + 1; }
static int64_t ow(const dc_case *c) { return (c->W + c->padL + c->padR - (c->KW - 1) * c->dil - 1) / c->s + 1; }

static float val(int64_t i, int64_t salt) { return (float)((i * 7919 + salt * 104729) % 2001 - 1000) / 500.0f; }

/* the output's pixels an image (pooled, with a pool) */
static int64_t out_pixels(const dc_case *c) { return c->pool ? oh(c) / c->pool * (ow(c) / c->pool) : oh(c) * ow(c); }

/* y [N, O, OH/k, OW/k] from the unpooled u [N, O, OH, OW] */
static void pool_reference(const dc_case *c, const double *u, double *y) {
  int64_t OH = oh(c), OW = ow(c), k = c->pool, PH = OH / k, PW = OW / k;
  for (int64_t pl = 0; pl < c->N * c->O; pl++)
    for (int64_t i = 0; i < PH; i++)
      for (int64_t j = 0; j < PW; j++) {
        double m = -INFINITY;
        for (int64_t t = 0; t < k * k; t++) m = fmax(m, u[(pl * OH + i * k + t / k) * OW + j * k + t % k]);
        y[(pl * PH + i) * PW + j] = m;
      }
}

static void reference(const dc_case *c, const float *x, const float *w, const float *b, double *y) {
  int64_t OH = oh(c), OW = ow(c);
  for (int64_t n = 0; n < c->N; n++)
    for (int64_t o = 0; o < c->O; o++)
      for (int64_t i = 0; i < OH; i++)
        for (int64_t j = 0; j < OW; j++) {
          double s = b ? b[o] : 0.0;
          for (int64_t ch = 0; ch < c->C; ch++)
            for (int64_t ky = 0; ky < c->KH; ky++)
              for (int64_t kx = 0; kx < c->KW; kx++) {
                int64_t h = i * c->s + ky * c->dil - c->padT, v = j * c->s + kx * c->dil - c->padL;
                if (h >= 0 && h < c->H && v >= 0 && v < c->W)
                  s += (double)x[((n * c->C + ch) * c->H + h) * c->W + v] * w[((o * c->C + ch) * c->KH + ky) * c->KW + kx];
              }
          y[((n * c->O + o) * OH + i) * OW + j] = c->relu && s < 0 ? 0.0 : s;
        }
}

static void kernel_case(const dc_case *c) {
  int64_t OH = oh(c), OW = ow(c), nx = c->N * c->C * c->H * c->W, nw = c->O * c->C * c->KH * c->KW;
  int64_t nu = c->N * c->O * OH * OW, ny = c->N * c->O * out_pixels(c);
  int64_t hw = c->H | c->W << 32, ohw = OH | OW << 32, kern = c->KH | c->KW << 16 | c->s << 32 | c->dil << 48;
  int64_t pad = c->padT | c->padL << 32;
  float *x = malloc(sizeof(float) * (size_t)nx), *w = malloc(sizeof(float) * (size_t)nw);
  float *b = malloc(sizeof(float) * (size_t)c->O), *y[3] = {0};
  double *u = malloc(sizeof(double) * (size_t)nu), *r = c->pool ? malloc(sizeof(double) * (size_t)ny) : u, scale = 1e-30;
  void *scr = malloc((size_t)lathe_rt_conv2d_scratch_bytes(c->C, c->O, ohw, kern));
  for (int64_t i = 0; i < nx; i++) x[i] = val(i, 1);
  for (int64_t i = 0; i < nw; i++) w[i] = val(i, 2) / 4;
  for (int64_t i = 0; i < c->O; i++) b[i] = val(i, 3);
  reference(c, x, w, c->bias ? b : NULL, u);
  if (c->pool) {
    CHECK(lathe_rt_conv2d_pool_ok(ohw, c->pool)); /* a case the code generator would fuse */
    pool_reference(c, u, r);
  }
  for (int64_t i = 0; i < ny; i++) scale = fmax(scale, fabs(r[i]));
  int64_t floats = lathe_rt_conv2d_floats(c->C, hw, c->O, ohw, kern, pad);
  CHECK(floats > 0 && floats <= LATHE_RT_CONV_STACK); /* a case the code generator would take */
  for (int64_t isa = 0; isa <= lathe_rt_conv_isa(); isa++) {
    y[isa] = malloc(sizeof(float) * (size_t)ny);
    lathe_rt_conv2d(y[isa], x, w, c->bias ? b : NULL, scr, c->N, c->C, hw, c->O, ohw, kern, pad,
                    isa | c->relu << 8 | (int64_t)c->pool << 16);
    double e = 0;
    for (int64_t i = 0; i < ny; i++) e = fmax(e, fabs(y[isa][i] - r[i]) / scale);
    CHECK_MSG(e <= 1e-5, "path %lld N=%lld C=%lld O=%lld k=%lldx%lld s=%lld dil=%lld pool=%d: error %.3g of the scale",
              (long long)isa, (long long)c->N, (long long)c->C, (long long)c->O, (long long)c->KH, (long long)c->KW,
              (long long)c->s, (long long)c->dil, c->pool, e);
    if (isa > 0)
      CHECK_MSG(memcmp(y[isa], y[0], sizeof(float) * (size_t)ny) == 0, "path %lld differs from the scalar path",
                (long long)isa);
    /* the same without the row path (rt/rt_dconv_rows.c), where it would run: the image groups and the pixel path */
    float *z = malloc(sizeof(float) * (size_t)ny);
    lathe_rt_conv2d(z, x, w, c->bias ? b : NULL, scr, c->N, c->C, hw, c->O, ohw, kern, pad,
                    isa | c->relu << 8 | (int64_t)c->pool << 16 | LATHE_RT_CONV_NOROWS);
    CHECK_MSG(memcmp(z, y[0], sizeof(float) * (size_t)ny) == 0, "path %lld without rows differs from the scalar path",
              (long long)isa);
    free(z);
  }
  for (int i = 0; i < 3; i++) free(y[i]);
  if (c->pool) free(r);
  free(x), free(w), free(b), free(u), free(scr);
}

static void test_kernel(void) {
  static const dc_case cases[] = {
      {.N = 5, .C = 1, .H = 8, .W = 8, .O = 16, .KH = 3, .KW = 3, .s = 1, .dil = 1, .padT = 1, .padL = 1, .padB = 1,
       .padR = 1, .bias = 1, .relu = 1}, /* the digits CNN's conv1 */
      {.N = 3, .C = 16, .H = 4, .W = 4, .O = 32, .KH = 3, .KW = 3, .s = 1, .dil = 1, .padT = 1, .padL = 1, .padB = 1,
       .padR = 1, .bias = 1, .relu = 1}, /* its conv2 */
      {.N = 2, .C = 3, .H = 9, .W = 7, .O = 5, .KH = 2, .KW = 3, .s = 2, .dil = 1, .padT = 0, .padL = 1, .padB = 1,
       .padR = 0, .bias = 0, .relu = 0},
      {.N = 2, .C = 7, .H = 11, .W = 10, .O = 40, .KH = 3, .KW = 3, .s = 1, .dil = 2, .padT = 2, .padL = 2, .padB = 2,
       .padR = 2, .bias = 1, .relu = 0},
      {.N = 1, .C = 2, .H = 5, .W = 5, .O = 17, .KH = 1, .KW = 1, .s = 1, .dil = 1, .bias = 1, .relu = 1},
      {.N = 3, .C = 4, .H = 6, .W = 6, .O = 8, .KH = 3, .KW = 3, .s = 3, .dil = 1, .bias = 1, .relu = 1},
      /* the 50%-pruned digits CNN (bench/cnn_pruned50.nn): 8 channels on
       * 256-bit vectors and 8 x 8 transposes, then 8 -> 16 */
      {.N = 5, .C = 1, .H = 8, .W = 8, .O = 8, .KH = 3, .KW = 3, .s = 1, .dil = 1, .padT = 1, .padL = 1, .padB = 1,
       .padR = 1, .bias = 1, .relu = 1},
      {.N = 3, .C = 8, .H = 4, .W = 4, .O = 16, .KH = 3, .KW = 3, .s = 1, .dil = 1, .padT = 1, .padL = 1, .padB = 1,
       .padR = 1, .bias = 1, .relu = 1},
      /* 16 + 8 channels (a zmm and a ymm tile) on tiles of 12 and of 8 pixels */
      {.N = 2, .C = 5, .H = 6, .W = 6, .O = 24, .KH = 3, .KW = 3, .s = 1, .dil = 1, .padT = 1, .padL = 1, .padB = 1,
       .padR = 1, .bias = 1, .relu = 0},
      {.N = 2, .C = 3, .H = 4, .W = 4, .O = 40, .KH = 3, .KW = 3, .s = 1, .dil = 1, .padT = 1, .padL = 1, .padB = 1,
       .padR = 1, .bias = 0, .relu = 1},
      /* groups of images: several per part, a short last one (37 = 3 x 12 + 1) */
      {.N = 37, .C = 16, .H = 4, .W = 4, .O = 32, .KH = 3, .KW = 3, .s = 1, .dil = 1, .padT = 1, .padL = 1, .padB = 1,
       .padR = 1, .bias = 1, .relu = 1},
      /* an image big enough that only groups of 4 fit the stack; 361 pixels: a short last chunk of 16 */
      {.N = 19, .C = 8, .H = 19, .W = 19, .O = 16, .KH = 3, .KW = 3, .s = 1, .dil = 1, .padT = 1, .padL = 1, .padB = 1,
       .padR = 1, .bias = 1, .relu = 0},
      /* a window wider than the image with padding: pixels with very few taps */
      {.N = 27, .C = 3, .H = 3, .W = 2, .O = 16, .KH = 5, .KW = 5, .s = 1, .dil = 1, .padT = 2, .padL = 2, .padB = 2,
       .padR = 2, .bias = 1, .relu = 1},
      /* the pruned CNN's channel counts in groups of images: 8 and 24 channels (a last 8 on ymm) */
      {.N = 64, .C = 1, .H = 8, .W = 8, .O = 8, .KH = 3, .KW = 3, .s = 1, .dil = 1, .padT = 1, .padL = 1, .padB = 1,
       .padR = 1, .bias = 1, .relu = 1},
      {.N = 20, .C = 8, .H = 4, .W = 4, .O = 24, .KH = 3, .KW = 3, .s = 1, .dil = 1, .padT = 1, .padL = 1, .padB = 1,
       .padR = 1, .bias = 1, .relu = 0},
      /* a fused 2x2 max-pool: the digits CNN's conv1 and conv2 (dense and pruned) in groups of images (pooled
       * chunks of 16 -> 4 pixels: 4 x 4 transposes), in the pixel path (N < 8), and without relu */
      {.N = 37, .C = 1, .H = 8, .W = 8, .O = 16, .KH = 3, .KW = 3, .s = 1, .dil = 1, .padT = 1, .padL = 1, .padB = 1,
       .padR = 1, .bias = 1, .relu = 1, .pool = 2},
      {.N = 20, .C = 16, .H = 4, .W = 4, .O = 32, .KH = 3, .KW = 3, .s = 1, .dil = 1, .padT = 1, .padL = 1, .padB = 1,
       .padR = 1, .bias = 1, .relu = 1, .pool = 2},
      {.N = 64, .C = 1, .H = 8, .W = 8, .O = 8, .KH = 3, .KW = 3, .s = 1, .dil = 1, .padT = 1, .padL = 1, .padB = 1,
       .padR = 1, .bias = 1, .relu = 1, .pool = 2},
      {.N = 19, .C = 8, .H = 4, .W = 4, .O = 16, .KH = 3, .KW = 3, .s = 1, .dil = 1, .padT = 1, .padL = 1, .padB = 1,
       .padR = 1, .bias = 1, .relu = 1, .pool = 2},
      {.N = 5, .C = 1, .H = 8, .W = 8, .O = 16, .KH = 3, .KW = 3, .s = 1, .dil = 1, .padT = 1, .padL = 1, .padB = 1,
       .padR = 1, .bias = 1, .relu = 1, .pool = 2},
      {.N = 3, .C = 16, .H = 4, .W = 4, .O = 24, .KH = 3, .KW = 3, .s = 1, .dil = 1, .padT = 1, .padL = 1, .padB = 1,
       .padR = 1, .bias = 0, .relu = 0, .pool = 2},
      /* 3x3 windows on a 3x3 output (chunks of 9 pixels, one pooled), 5 channels (the scalar transpose), both paths */
      {.N = 21, .C = 2, .H = 3, .W = 3, .O = 5, .KH = 3, .KW = 3, .s = 1, .dil = 1, .padT = 1, .padL = 1, .padB = 1,
       .padR = 1, .bias = 1, .relu = 1, .pool = 3},
      {.N = 2, .C = 2, .H = 3, .W = 3, .O = 5, .KH = 3, .KW = 3, .s = 1, .dil = 1, .padT = 1, .padL = 1, .padB = 1,
       .padR = 1, .bias = 1, .relu = 0, .pool = 3},
      /* 2x2 on a 6-wide output: chunks of 12 pixels (two rows of windows), 40 channels */
      {.N = 17, .C = 3, .H = 6, .W = 6, .O = 40, .KH = 3, .KW = 3, .s = 1, .dil = 1, .padT = 1, .padL = 1, .padB = 1,
       .padR = 1, .bias = 1, .relu = 1, .pool = 2},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) kernel_case(&cases[i]);
  /* what the kernel cannot pool: windows that do not tile the output, rows wider than a chunk */
  CHECK(!lathe_rt_conv2d_pool_ok(5 | (int64_t)4 << 32, 2) && !lathe_rt_conv2d_pool_ok(4 | (int64_t)10 << 32, 2));
  CHECK(!lathe_rt_conv2d_pool_ok(4 | (int64_t)4 << 32, 1) && lathe_rt_conv2d_pool_ok(4 | (int64_t)8 << 32, 2));
}

static void set_features(const char *f) {
  if (f) setenv("LATHE_CPU_FEATURES", f, 1);
  else unsetenv("LATHE_CPU_FEATURES");
}

static void test_features(void) {
  int64_t all = lathe_rt_conv_isa();
  printf("direct conv2d paths on this CPU: %s\n", all == LATHE_RT_CONV_AVX512 ? "avx512, avx2, scalar"
                                                   : all == LATHE_RT_CONV_AVX2 ? "avx2, scalar" : "scalar");
  set_features("-avx512f");
  CHECK(lathe_rt_conv_isa() == (all > LATHE_RT_CONV_AVX2 ? LATHE_RT_CONV_AVX2 : all));
  set_features("-avx2");
  CHECK(lathe_rt_conv_isa() == LATHE_RT_CONV_SCALAR);
  set_features("none");
  CHECK(lathe_rt_conv_isa() == LATHE_RT_CONV_SCALAR);
  set_features(NULL);
  CHECK(lathe_rt_conv_isa() == all);
}

/* y of a model on x, the program compiled for backend b */
static float *run_model(lathe_model *m, lathe_backend b, const float *x, const int64_t *shape, int64_t *ny) {
  lathe_error err = {0};
  lathe_options o = {.backend = b};
  lathe_program *p = lathe_compile(m, &o, &err);
  lathe_tensor t = {.dtype = LATHE_F32, .rank = 4, .data = (void *)x}, y = {0};
  memcpy(t.shape, shape, sizeof(int64_t) * 4);
  if (!p || lathe_weights_init(p, 7, &err) || lathe_set_input(p, "x", &t, &err) || lathe_run(p, &err) ||
      lathe_get_output(p, "y", &y, &err)) {
    CHECK_MSG(0, "%s", err.message);
    lathe_program_free(p);
    return NULL;
  }
  *ny = lathe_tensor_numel(&y);
  lathe_program_free(p);
  return y.data;
}

static void model_case(const char *layers, const int64_t *shape, const char *features, int nan) {
  char src[1024];
  snprintf(src, sizeof src, "model d\ninput x : f32[%lld, %lld, %lld, %lld]\n%s\noutput y = h\n", (long long)shape[0],
           (long long)shape[1], (long long)shape[2], (long long)shape[3], layers);
  lathe_error err = {0};
  lathe_model *m = lathe_model_parse("d.nn", src, strlen(src), &err);
  CHECK_MSG(m != NULL, "%s", err.message);
  if (!m) return;
  int64_t n = shape[0] * shape[1] * shape[2] * shape[3], ni = 0, nl = 0;
  float *x = malloc(sizeof(float) * (size_t)n);
  for (int64_t i = 0; i < n; i++) x[i] = val(i, 5);
  if (nan) x[n / 2] = NAN;
  set_features(features);
  float *yi = run_model(m, LATHE_BACKEND_INTERP, x, shape, &ni), *yl = run_model(m, LATHE_BACKEND_LLVM, x, shape, &nl);
  set_features(NULL);
  double scale = 1e-30, e = 0;
  int nans = 0;
  for (int64_t i = 0; yi && i < ni; i++) scale = isnan(yi[i]) ? scale : fmax(scale, fabs(yi[i]));
  for (int64_t i = 0; yi && yl && ni == nl && i < ni; i++) {
    if (isnan(yi[i]) || isnan(yl[i])) {
      nans += isnan(yi[i]) && isnan(yl[i]);
      e = isnan(yi[i]) != isnan(yl[i]) ? INFINITY : e;
      continue;
    }
    e = fmax(e, fabs(yl[i] - yi[i]) / scale);
  }
  CHECK_MSG(yi && yl && ni == nl && e <= 1e-5, "%s (features %s): LLVM vs interpreter %.3g of the scale", layers,
            features ? features : "all", e);
  if (nan) CHECK_MSG(nans > 0, "%s: the NaN input reaches no output", layers);
  free(yi), free(yl), free(x);
  lathe_model_free(m);
}

static void test_models(void) {
  static const char *const features[] = {NULL, "-avx512f", "-avx2"};
  static const int64_t digits[4] = {6, 1, 8, 8}, mid[4] = {3, 16, 4, 4}, odd[4] = {2, 3, 9, 11}, batch[4] = {40, 1, 8, 8};
  for (int f = 0; f < 3; f++) {
    model_case("h = conv2d(x, 16, kernel=3, padding=1) |> relu", digits, features[f], 1);
    model_case("h = conv2d(x, 32, kernel=3, padding=\"same\") |> relu", mid, features[f], 0);
    model_case("h = conv2d(x, 32, kernel=3, padding=\"same\") |> sigmoid", mid, features[f], 0);
    model_case("h = conv2d(x, 7, kernel=3, stride=2, bias=false)", odd, features[f], 0);
    model_case("h = conv2d(x, 20, kernel=3, padding=1) |> relu\nh = maxpool2d(h, 2)\n"
               "h = conv2d(h, 24, kernel=3, padding=1) |> relu",
               digits, features[f], 0);
    /* the max-pools fused into the kernel (pl_target.conv_pool): NaN wins the window, as in the reference;
     * the digits CNN's chain at 6 images (the pixel path) and at 40 (groups); a pool after sigmoid is not
     * fused (the kernel only applies relu before it) and a pool without relu is */
    model_case("h = conv2d(x, 16, kernel=3, padding=1) |> relu\nh = maxpool2d(h, 2)\n"
               "h = conv2d(h, 32, kernel=3, padding=\"same\") |> relu\nh = maxpool2d(h, 2)",
               digits, features[f], 1);
    model_case("h = conv2d(x, 8, kernel=3, padding=1) |> relu\nh = maxpool2d(h, 2)\n"
               "h = conv2d(h, 16, kernel=3, padding=\"same\") |> relu\nh = maxpool2d(h, 2)",
               batch, features[f], 1);
    model_case("h = conv2d(x, 32, kernel=3, padding=\"same\") |> sigmoid\nh = maxpool2d(h, 2)", mid, features[f], 0);
    model_case("h = conv2d(x, 24, kernel=3, padding=\"same\")\nh = maxpool2d(h, 2)", mid, features[f], 1);
  }
}

int main(void) {
  test_kernel();
  test_features();
  test_models();
  return TEST_REPORT();
}
