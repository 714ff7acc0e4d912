/* test_cuda_quant.c -- models quantized by lathe_quantize (docs/quantize.md)
 * on the CUDA backend (codegen/cuda/cu_render_quant.c), run by the CPU
 * executor (tests/cuexec/, installed with cu_set_driver_factory) against the
 * reference interpreter on the same quantized file:
 *
 *  - the digits MLP (examples/mlp.nn) at batch 1 (w8/w4: group dot
 *    products) and 32 (w8/w4: dequantized weights and the product), the
 *    digits CNN (examples/cnn.nn: its convolutions stay f32) at batch 2, in
 *    every mode (w8, w4, int8-dynamic, bf16, f16, int8); two models with
 *    int8 convolutions (qconv2d: conv2d with padding, stride and dilation;
 *    conv1d) in int8-dynamic and int8; static int8 also with its quantize /
 *    dequantize nodes placed and not folded; each on this CPU's kernels and
 *    under LATHE_CPU_FEATURES=none (static int8's f32 form, bf16 without
 *    its dot products), every layer quantized (LATHE_QUANT_KEEP_F32=0);
 *  - the logits (the last product's result) equal the interpreter's bit for
 *    bit wherever the reference is an exact integer one (int8-dynamic and
 *    static int8 on integer kernels: __dp4a sums, the epilogue's float
 *    steps as the CPU's), and within f32 rounding elsewhere (1e-5 of 1 +
 *    |value|: the interpreter sums in double), as are the probabilities
 *    and the loss;
 *  - the program holds the ops it should (qmatmul everywhere, qconv2d in
 *    the int8 convolution models, quantize and dequantize where placed), so
 *    a layer that the pass kept in f32 cannot pass unnoticed.
 *
 * LATHE_TEST_REAL_GPU=1 runs the same comparisons through the real driver
 * (tests/gpu/run.sh). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codegen/cuda/cu.h"
#include "cx.h"
#include "lathe.h"
#include "rt/lathe_rt.h"
#include "runtime/program.h"
#include "test.h"

static char dir[] = "/tmp/lathe_cuqXXXXXX", wf[160], qf[160], csv[160];

/* int8 convolutions (qconv2d): the digits CNN's convolutions stay f32 (a
 * window below 32 inputs, fewer than 256 output pixels: passes/quantize_conv.c),
 * so these have windows and images large enough: conv2d with padding, then
 * stride 2 with dilation 2; conv1d (H = 1) with stride, padding, dilation */
static const char qcnn_src[] =
    "model qcnn\n"
    "input  x : f32[batch, 4, 34, 34]\n"
    "target y : i32[batch]\n"
    "h = conv2d(x, 8, kernel=3, padding=1, name=\"c1\") |> relu\n"
    "h = conv2d(h, 8, kernel=3, stride=2, padding=2, dilation=2, name=\"c2\")\n"
    "h = maxpool2d(h, 2)\n"
    "logits = dense(flatten(h), 10, name=\"out\")\n"
    "output logits\n"
    "output probs = softmax(logits)\n"
    "loss = cross_entropy(logits, y)\n"
    "train {\n  batch = 4\n  split = [0.5, 0.25, 0.25]\n}\n";
static const char qconv1_src[] =
    "model qconv1\n"
    "input  x : f32[batch, 12, 520]\n"
    "target y : i32[batch]\n"
    "h = conv1d(x, 8, kernel=3, stride=2, padding=2, dilation=2, name=\"c1\") |> relu\n"
    "h = conv1d(h, 6, kernel=4, name=\"c2\")\n"
    "logits = dense(flatten(h), 10, name=\"out\")\n"
    "output logits\n"
    "output probs = softmax(logits)\n"
    "loss = cross_entropy(logits, y)\n"
    "train {\n  batch = 4\n  split = [0.5, 0.25, 0.25]\n}\n";

/* the model's text: an example with its logits made an output too */
static char *model_text(const char *path) {
  if (!strcmp(path, "qcnn")) return strdup(qcnn_src);
  if (!strcmp(path, "qconv1")) return strdup(qconv1_src);
  FILE *f = fopen(path, "rb");
  char *t = calloc(1, 1 << 16), *out = calloc(1, (1 << 16) + 64);
  if (f && t) t[fread(t, 1, (1 << 16) - 1, f)] = 0;
  if (f) fclose(f);
  char *at = t ? strstr(t, "train {") : NULL;
  if (out && at) sprintf(out, "%.*soutput logits\n%s", (int)(at - t), t, at);
  free(t);
  return out;
}

static lathe_model *model(const char *path, int64_t batch) {
  char *text = model_text(path);
  lathe_error err = {0};
  lathe_model *m = text ? lathe_model_parse("q.nn", text, strlen(text), &err) : NULL;
  CHECK_MSG(m != NULL, "%s: %s", path, err.message ? err.message : "");
  if (m && batch) CHECK(lathe_model_bind(m, "batch", batch, &err) == 0);
  lathe_error_clear(&err);
  free(text);
  return m;
}

/* calibration data for static int8: rows of F features and a label */
static void write_csv(int64_t F, int rows) {
  FILE *f = fopen(csv, "w");
  CHECK(f != NULL);
  unsigned s = 12345;
  for (int r = 0; f && r < rows; r++) {
    for (int64_t k = 0; k < F; k++) s = s * 1103515245u + 12345u, fprintf(f, "%.6g,", (double)((s >> 8) % 2000) / 500.0 - 2.0);
    fprintf(f, "%d\n", r % 10);
  }
  if (f) fclose(f);
}

/* f32 weights (seed 7) into wf, then quantized in mode into qf */
static int quantize(const char *path, int mode, int64_t F) {
  lathe_error err = {0};
  lathe_model *m = model(path, 4);
  lathe_options o = {.backend = LATHE_BACKEND_INTERP};
  lathe_program *p = m ? lathe_compile(m, &o, &err) : NULL;
  int rc = !p || lathe_weights_init(p, 7, &err) || lathe_weights_save(p, wf, &err);
  lathe_program_free(p);
  write_csv(F, 48);
  lathe_quantize_options qo = {.weights = wf, .out = qf, .mode = mode, .data = csv, .calib_batches = 100};
  lathe_quantize_result qr;
  if (!rc) rc = lathe_quantize(m, &qo, &qr, &err) != 0;
  CHECK_MSG(!rc, "%s %s: %s", path, lathe_quant_name(mode), err.message ? err.message : "");
  lathe_error_clear(&err);
  lathe_model_free(m);
  return rc;
}

/* passes: NULL (the default), or a list (PLACED: static int8's quantize and
 * dequantize nodes placed and not folded, so that their kernels run) */
static const char PLACED[] = "constfold,simplify,cse,dce,foldbn,attnsave,fuse,qdq_place";

static lathe_program *compile(const char *path, lathe_backend b, int mode, int64_t batch, const char *passes) {
  lathe_error err = {0};
  lathe_model *m = model(path, batch);
  lathe_options o = {.backend = b, .quant = mode, .passes = passes};
  lathe_program *p = m ? lathe_compile(m, &o, &err) : NULL;
  if (p && lathe_weights_load(p, qf, &err)) lathe_program_free(p), p = NULL;
  CHECK_MSG(p != NULL, "%s %s (%s): %s", path, lathe_quant_name(mode), b == LATHE_BACKEND_CUDA ? "cuda" : "interp",
            err.message ? err.message : "");
  lathe_error_clear(&err);
  lathe_model_free(m);
  return p;
}

/* the same inputs for both: floats in [-2, 2) (some |x| above the
 * calibrated scale's range: the clamp), labels 0..9 */
static int fill_inputs(lathe_program *p) {
  lathe_error err = {0};
  unsigned seed = 99;
  for (int i = 0; i < lathe_num_inputs(p); i++) {
    lathe_tensor_info info;
    if (lathe_input_info(p, i, &info)) return -1;
    lathe_tensor t = {.dtype = info.dtype == LATHE_F32 ? LATHE_F32 : LATHE_I32, .rank = info.rank};
    int64_t n = 1;
    for (int d = 0; d < info.rank; d++) t.shape[d] = info.shape[d], n *= info.shape[d];
    t.data = malloc((size_t)(n > 0 ? n : 1) * 4);
    for (int64_t e = 0; t.data && e < n; e++) {
      seed = seed * 1103515245u + 12345u;
      if (t.dtype == LATHE_F32) ((float *)t.data)[e] = (float)((seed >> 8) % 4000) / 1000.f - 2.f;
      else ((int32_t *)t.data)[e] = (int32_t)(e % 10);
    }
    int rc = !t.data || lathe_set_input(p, info.name, &t, &err);
    free(t.data);
    lathe_error_clear(&err);
    if (rc) return -1;
  }
  return 0;
}

/* largest |a - b| / (1 + |b|) of an output (the loss: "loss") */
static double diff(const lathe_program *a, const lathe_program *b, const char *name) {
  lathe_error err = {0};
  lathe_tensor x = {0}, y = {0};
  double worst = INFINITY;
  if (!lathe_get_output(a, name, &x, &err) && !lathe_get_output(b, name, &y, &err)) {
    int64_t n = lathe_tensor_numel(&x);
    worst = n == lathe_tensor_numel(&y) ? 0 : INFINITY;
    for (int64_t e = 0; e < n && worst < INFINITY; e++) {
      double u = ((float *)x.data)[e], v = ((float *)y.data)[e], d = fabs(u - v) / (1 + fabs(v));
      if (!(d <= worst)) worst = d;
    }
  }
  lathe_error_clear(&err);
  free(x.data), free(y.data);
  return worst;
}

static int count_op(const lathe_program *p, int op) {
  int c = 0;
  for (int i = 0; i < p->g.nnodes; i++) c += p->g.nodes[i].op == op;
  return c;
}

/* one model, mode, batch, CPU features and pass list: cuda against the interpreter */
static void one(const char *path, int mode, int64_t batch, int64_t F, const char *features, const char *passes) {
  if (features) setenv("LATHE_CPU_FEATURES", features, 1);
  else unsetenv("LATHE_CPU_FEATURES");
  if (quantize(path, mode, F)) return;
  lathe_program *c = compile(path, LATHE_BACKEND_CUDA, mode, batch, passes),
                *r = compile(path, LATHE_BACKEND_INTERP, mode, batch, passes);
  lathe_error err = {0};
  if (c && r && !fill_inputs(c) && !fill_inputs(r)) {
    int rc = lathe_run(c, &err);
    CHECK_MSG(!rc, "%s %s b%lld: cuda run: %s", path, lathe_quant_name(mode), (long long)batch,
              err.message ? err.message : "");
    lathe_error_clear(&err);
    CHECK(!lathe_run(r, &err));
    lathe_error_clear(&err);
    int qm = count_op(c, IR_QMATMUL), qc = count_op(c, IR_QCONV2D), qz = count_op(c, IR_QUANTIZE),
        dq = count_op(c, IR_DEQUANTIZE), f32form = 0;
    for (int i = 0; i < c->g.nnodes; i++)
      f32form |= (c->g.nodes[i].op == IR_QMATMUL || c->g.nodes[i].op == IR_QCONV2D) &&
                 c->g.nodes[i].attr.i == LATHE_QUANT_INT8 && c->g.nodes[i].attr.k == LATHE_RT_ISA_F32;
    int i8 = mode == LATHE_QUANT_INT8_DYNAMIC || mode == LATHE_QUANT_INT8, conv = path[0] == 'q';
    CHECK_MSG(qm > 0 && (!conv || !i8 || qc > 0) && (!passes || f32form || (qz > 0 && dq > 0)),
              "%s %s: the program has %d qmatmul, %d qconv2d, %d quantize", path, lathe_quant_name(mode), qm, qc, qz);
    double dl = diff(c, r, "logits"), dp = diff(c, r, "probs"), dloss = diff(c, r, "loss");
    /* exact where every product is an integer one (f32 convolutions before
     * the int8 products round as the interpreter's double sums do not) */
    int exact = i8 && !f32form && !count_op(c, IR_CONV2D) && !count_op(c, IR_MATMUL);
    CHECK_MSG(exact ? dl == 0 : dl < 1e-5, "%s %s b%lld%s%s: the logits differ from the interpreter's by %g%s", path,
              lathe_quant_name(mode), (long long)batch, features ? " features " : "", features ? features : "", dl,
              exact ? " (must be bit for bit)" : "");
    CHECK_MSG(dp < 1e-5 && dloss < 1e-5, "%s %s: probs differ by %g, the loss by %g", path, lathe_quant_name(mode), dp,
              dloss);
    printf("%-16s %-12s b%-3lld %-5s%s %d qmatmul %d qconv2d %d quantize %d dequantize%s: logits %s %.3g, probs %.3g, "
           "loss %.3g\n",
           path, lathe_quant_name(mode), (long long)batch, features ? features : "host", passes ? " placed" : "", qm, qc, qz, dq,
           f32form ? " (f32 form)" : "", exact ? "exact:" : "within", dl, dp, dloss);
  }
  lathe_program_free(c), lathe_program_free(r);
}

static void models(const char *features) {
  for (int mode = LATHE_QUANT_W8; mode <= LATHE_QUANT_INT8; mode++) {
    one("examples/mlp.nn", mode, 1, 64, features, NULL);
    one("examples/mlp.nn", mode, 32, 64, features, NULL);
    one("examples/cnn.nn", mode, 2, 64, features, NULL);
    if (mode == LATHE_QUANT_INT8_DYNAMIC || mode == LATHE_QUANT_INT8) {
      one("qcnn", mode, 2, 4 * 34 * 34, features, NULL);
      one("qconv1", mode, 2, 12 * 520, features, NULL);
    }
  }
  /* static int8 with its quantize and dequantize nodes left in place */
  one("examples/mlp.nn", LATHE_QUANT_INT8, 32, 64, features, PLACED);
  one("qcnn", LATHE_QUANT_INT8, 2, 4 * 34 * 34, features, PLACED);
}

int main(void) {
  int gpu = getenv("LATHE_TEST_REAL_GPU") != NULL;
  if (!gpu && !cx_host_compiler()) {
    printf("SKIPPED: no host C++ compiler for the CPU executor: the quantized models on cuda were not tested\n");
    return TEST_REPORT();
  }
  if (!mkdtemp(dir)) return perror("mkdtemp"), 1;
  snprintf(wf, sizeof wf, "%s/w.safetensors", dir);
  snprintf(qf, sizeof qf, "%s/q.safetensors", dir);
  snprintf(csv, sizeof csv, "%s/d.csv", dir);
  setenv("LATHE_QUANT_KEEP_F32", "0", 1); /* every layer on its quantized kernel */
  if (!gpu) cu_set_driver_factory(cx_driver);
  models(NULL);
  models("none");
  if (!gpu) cu_set_driver_factory(NULL);
  unlink(wf), unlink(qf), unlink(csv);
  rmdir(dir);
  return TEST_REPORT();
}
