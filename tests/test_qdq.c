/* test_qdq.c -- static int8 between products (passes/quantize_qdq.c,
 * rt/rt_qdq.h, docs/quantize.md): on an MLP of three int8 dense layers
 * (dense -> relu -> dense -> dense) and on two int8 convolutions and a
 * dense layer (conv -> relu -> conv -> flatten -> dense), calibrated by
 * lathe_quantize:
 *  - the pass places the quantize / dequantize nodes (--print-after=
 *    qdq_place: one quantize per product, one dequantize per product read
 *    by another) and folds every pair away (--print-after=qdq_fold: none
 *    left; the MLP's first two products write i8, the CNN's first conv);
 *  - on every integer kernel this CPU has (LATHE_CPU_FEATURES), the LLVM
 *    backend equals the interpreter's reference bit for bit, placed and
 *    folded, and both equal the program without the passes (each product
 *    quantizing its own f32 input): the fold changes no bit;
 *  - without SIMD integer dot products (the f32 form) nothing is placed. */
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

static char dir[] = "/tmp/lathe_qdq_XXXXXX";
static char wf[QU_PATH], qf[QU_PATH], csv[QU_PATH];

static lathe_model *parse(const char *src, int64_t M) {
  lathe_error err = {0};
  lathe_model *m = lathe_model_parse("q.nn", src, strlen(src), &err);
  CHECK_MSG(m != NULL, "%s", err.message);
  if (m && M > 0) CHECK(lathe_model_bind(m, "batch", M, &err) == 0);
  return m;
}

static const char train_block[] = "loss = cross_entropy(y, t)\ntrain {\n  batch = 8\n  split = [0.5, 0.25, 0.25]\n}\n";

static lathe_model *mlp(int64_t K, int64_t H1, int64_t H2, int64_t N, int64_t M) {
  char src[640];
  snprintf(src, sizeof src,
           "model q\ninput x : f32[batch, %lld]\ntarget t : i32[batch]\n"
           "h1 = relu(dense(x, %lld, name=\"fc1\"))\nh2 = dense(h1, %lld, name=\"fc2\")\n"
           "output y = dense(h2, %lld, name=\"fc3\")\n%s",
           (long long)K, (long long)H1, (long long)H2, (long long)N, train_block);
  return parse(src, M);
}

/* two int8 convs (16 x 16 outputs, windows of 16 * 9 and 32 * 9 inputs:
 * both int8 by the pass's rules), then flatten and an int8 dense layer */
static lathe_model *cnn(int64_t N, int64_t M) {
  char src[640];
  snprintf(src, sizeof src,
           "model q\ninput x : f32[batch, 16, 16, 16]\ntarget t : i32[batch]\n"
           "h = conv2d(x, 32, kernel=3, padding=1, name=\"c1\") |> relu\n"
           "h = conv2d(h, 32, kernel=3, padding=1, name=\"c2\")\n"
           "output y = dense(flatten(h), %lld, name=\"fc\")\n%s",
           (long long)N, train_block);
  return parse(src, M);
}

static float xval(int64_t i) { return (float)(((i * 7919) % 2001) - 1000) / 250.0f; } /* -4..4 */

static void write_csv(int64_t K, int64_t N, int rows) {
  FILE *f = fopen(csv, "w");
  CHECK(f != NULL);
  for (int r = 0; f && r < rows; r++) {
    for (int64_t k = 0; k < K; k++) fprintf(f, "%.6g,", (double)xval(r * K + k + 3));
    fprintf(f, "%d\n", r % (int)N);
  }
  if (f) fclose(f);
}

static int count(const char *s, const char *what) {
  int n = 0;
  for (const char *p = s; (p = strstr(p, what)) != NULL; p++) n++;
  return n;
}

/* the graph after pass `after` (compiled for the interpreter) */
static char *dump(lathe_model *m, const char *after) {
  char *buf = NULL;
  size_t len = 0;
  lathe_error err = {0};
  FILE *log = open_memstream(&buf, &len);
  lathe_options o = {.backend = LATHE_BACKEND_INTERP, .quant = LATHE_QUANT_INT8, .print_after = after, .pass_log = log};
  lathe_program *p = lathe_compile(m, &o, &err);
  CHECK_MSG(p != NULL, "%s", err.message);
  fclose(log);
  lathe_program_free(p);
  return buf;
}

/* passes: NULL (the default: placed and folded), a list naming qdq_place
 * only (placed, not folded), or one naming neither */
static float *run_q(lathe_model *m, lathe_backend b, const char *passes, int64_t M, int64_t K, int64_t N,
                    const float *x) {
  lathe_error err = {0};
  lathe_options o = {.backend = b, .quant = LATHE_QUANT_INT8, .passes = passes};
  lathe_program *p = lathe_compile(m, &o, &err);
  CHECK_MSG(p && lathe_weights_load(p, qf, &err) == 0, "%s", err.message);
  /* the MLP's x [M, K]; the CNN's [M, 16, 16, 16] */
  lathe_tensor t = {.dtype = LATHE_F32, .rank = K == 4096 ? 4 : 2, .shape = {M, K == 4096 ? 16 : K, 16, 16},
                    .data = (void *)x},
               y = {0};
  if (p && (lathe_set_input(p, "x", &t, &err) || lathe_run(p, &err) || lathe_get_output(p, "y", &y, &err)))
    CHECK_MSG(0, "run: %s", err.message);
  CHECK(!y.data || lathe_tensor_numel(&y) == M * N);
  lathe_program_free(p);
  return y.data;
}

static const char *const features[] = {NULL, "-avx512vnni", "-avx512vnni,-avxvnni", "none"};
enum { NFEAT = sizeof features / sizeof features[0] };

/* m (at batch M; mq unbound, for lathe_quantize) with K inputs per row
 * and N outputs: nq quantize and ndq dequantize nodes placed, none left
 * after the fold, no8 products writing i8 (attribute o8: " pad=1 " or
 * " start=1 ") */
typedef struct {
  int64_t M, K, N;
  int nq, ndq, no8;
  const char *o8;
} qcase;

static void one_case(lathe_model *m, lathe_model *mq, const qcase *c) {
  int64_t M = c->M, K = c->K, N = c->N;
  lathe_error err = {0};
  lathe_program *f = m ? compile(m, LATHE_BACKEND_INTERP, 0, NULL, &err) : NULL;
  CHECK(f && lathe_weights_init(f, (uint64_t)(K + 31 * N), &err) == 0);
  for (int i = 0; f && i < lathe_num_params(f); i++) { /* biases are zeros after init: give the epilogues some */
    lathe_tensor v;
    const char *name = lathe_param_name(f, i);
    if (strstr(name, ".bias") && lathe_param_view(f, i, &v) == 0)
      for (int64_t j = 0; j < lathe_tensor_numel(&v); j++) ((float *)v.data)[j] = 0.05f * (float)(j % 7) - 0.15f;
  }
  CHECK(f && lathe_weights_save(f, wf, &err) == 0);
  write_csv(K, N, 40);
  lathe_quantize_options qo = {.weights = wf, .out = qf, .mode = LATHE_QUANT_INT8, .data = csv, .calib_batches = 100};
  CHECK_MSG(mq && lathe_quantize(mq, &qo, NULL, &err) == 0, "%s", err.message);
  float *x = malloc(sizeof(float) * (size_t)(M * K));
  for (int64_t i = 0; i < M * K; i++) x[i] = 1.5f * xval(i); /* past the calibrated range: the clamps */
  for (int fi = 0; m && fi < NFEAT; fi++) {
    if (features[fi]) setenv("LATHE_CPU_FEATURES", features[fi], 1);
    else unsetenv("LATHE_CPU_FEATURES");
    int64_t isa = lathe_rt_quant_isa();
    int integer = isa != LATHE_RT_ISA_SCALAR; /* else the f32 form: nothing to place */
    char *placed = dump(m, "qdq_place"), *folded = dump(m, "qdq_fold");
    int pq = placed ? count(placed, "= quantize(") : -1, pd = placed ? count(placed, "= dequantize(") : -1;
    int fq = folded ? count(folded, "= quantize(") : -1, fd = folded ? count(folded, "= dequantize(") : -1;
    int o8 = folded ? count(folded, c->o8) : -1;
    printf("M=%lld K=%lld %s (%s): placed %d quantize, %d dequantize; folded %d, %d; %d products write i8\n",
           (long long)M, (long long)K, features[fi] ? features[fi] : "all", lathe_rt_isa_name(isa), pq, pd, fq, fd,
           o8);
    CHECK_MSG(pq == (integer ? c->nq : 0) && pd == (integer ? c->ndq : 0), "placed: %d quantize, %d dequantize", pq,
              pd);
    CHECK_MSG(fq == 0 && fd == 0 && o8 == (integer ? c->no8 : 0), "not folded: %d quantize, %d dequantize, %d i8 outputs",
              fq, fd, o8);
    free(placed), free(folded);
    const char *plain = "constfold,simplify,cse,dce,foldbn,attnsave,fuse"; /* -O2 without the qdq passes */
    const char *place = "qdq_place,constfold,simplify,cse,dce,foldbn,attnsave,fuse";
    float *ref = run_q(m, LATHE_BACKEND_INTERP, plain, M, K, N, x);
    float *y[4] = {run_q(m, LATHE_BACKEND_INTERP, NULL, M, K, N, x), run_q(m, LATHE_BACKEND_LLVM, NULL, M, K, N, x),
                   run_q(m, LATHE_BACKEND_LLVM, place, M, K, N, x), run_q(m, LATHE_BACKEND_LLVM, plain, M, K, N, x)};
    static const char *const what[4] = {"interpreter, folded", "llvm, folded", "llvm, placed", "llvm, no qdq"};
    for (int v = 0; v < 4; v++) {
      int same = ref && y[v] && memcmp(ref, y[v], sizeof(float) * (size_t)(M * N)) == 0;
      if (integer) CHECK_MSG(same, "%s: M=%lld K=%lld on %s differs from the reference", what[v], (long long)M,
                             (long long)K, lathe_rt_isa_name(isa));
      free(y[v]);
    }
    int distinct = 0; /* a real test: outputs that differ (not all clamped or zero) */
    for (int64_t i = 1; ref && i < M * N; i++) distinct += ref[i] != ref[0];
    CHECK_MSG(M * N < 4 || distinct >= M * N / 2, "only %d outputs differ from the first", distinct);
    free(ref);
  }
  unsetenv("LATHE_CPU_FEATURES");
  free(x);
  lathe_program_free(f);
  lathe_model_free(m), lathe_model_free(mq);
}

static void mlp_case(int64_t M, int64_t K, int64_t H1, int64_t H2, int64_t N) {
  qcase c = {M, K, N, 3, 2, 2, " pad=1 "}; /* fc1 -> relu -> fc2 -> fc3: two pairs folded */
  one_case(mlp(K, H1, H2, N, M), mlp(K, H1, H2, N, 0), &c);
}

static void cnn_case(int64_t M, int64_t N) {
  qcase c = {M, 16 * 16 * 16, N, 3, 1, 1, " start=1 "}; /* c1 -> relu -> c2 folded; flatten keeps c2's f32 */
  one_case(cnn(N, M), cnn(N, 0), &c);
}

/* int8-dynamic, and bf16 on the bf16 dot products (where this CPU has
 * them): the bias add (and relu) after each product folded into its
 * epilogue as static int8's are; the kernels equal the interpreter's
 * reference (int8-dynamic: bit for bit; bf16: within f32 summation) on
 * every kernel path; bf16 on its f32 kernels keeps the adds */
static void epi_case(int mode, int64_t M, int64_t K) {
  lathe_model *m = mlp(K, 33, 20, 5, M);
  lathe_error err = {0};
  lathe_program *f = m ? compile(m, LATHE_BACKEND_INTERP, 0, NULL, &err) : NULL;
  CHECK(f && lathe_weights_init(f, (uint64_t)K, &err) == 0);
  for (int i = 0; f && i < lathe_num_params(f); i++) {
    lathe_tensor v;
    if (strstr(lathe_param_name(f, i), ".bias") && lathe_param_view(f, i, &v) == 0)
      for (int64_t j = 0; j < lathe_tensor_numel(&v); j++) ((float *)v.data)[j] = 0.05f * (float)(j % 7) - 0.15f;
  }
  lathe_quantize_options qo = {.weights = wf, .out = qf, .mode = mode};
  CHECK(f && lathe_weights_save(f, wf, &err) == 0 && lathe_quantize(m, &qo, NULL, &err) == 0);
  float *x = malloc(sizeof(float) * (size_t)(M * K));
  for (int64_t i = 0; i < M * K; i++) x[i] = xval(i);
  static const char *const bf16_features[] = {NULL, "-avx512bf16"};
  int nf = mode == LATHE_QUANT_BF16 ? 2 : NFEAT;
  for (int fi = 0; m && fi < nf; fi++) {
    const char *feat = mode == LATHE_QUANT_BF16 ? bf16_features[fi] : features[fi];
    if (feat) setenv("LATHE_CPU_FEATURES", feat, 1);
    else unsetenv("LATHE_CPU_FEATURES");
    int folds = mode != LATHE_QUANT_BF16 || /* bf16 dot products: AVX-512 BF16, or AMX's (LATHE_AMX_EMULATE=1 too) */
                lathe_rt_isa_bf16dot(lathe_rt_amx_isa(LATHE_RT_Q_BF16, lathe_rt_bf16_isa(lathe_rt_quant_isa())));
    char *buf = NULL;
    size_t len = 0;
    FILE *log = open_memstream(&buf, &len);
    lathe_options o = {.backend = LATHE_BACKEND_INTERP, .quant = mode, .print_after = "quantize", .pass_log = log};
    lathe_program_free(lathe_compile(m, &o, &err));
    fclose(log);
    int adds = buf ? count(buf, "= add(") : -1, relus = buf ? count(buf, " axis=1 ") : -1;
    printf("%s %s: %d adds, %d relus folded\n", lathe_quant_name(mode), feat ? feat : "all", adds, relus);
    CHECK_MSG(adds == (folds ? 0 : 3) && relus == (folds ? 1 : 0), "%s epilogues: %d adds, %d relus in the products",
              lathe_quant_name(mode), adds, relus);
    free(buf);
    lathe_program *qi = compile(m, LATHE_BACKEND_INTERP, mode, qf, &err);
    lathe_program *ql = compile(m, LATHE_BACKEND_LLVM, mode, qf, &err);
    float *yi = qi ? run(qi, x, M, K, 5) : NULL, *yl = ql ? run(ql, x, M, K, 5) : NULL;
    double e = 0;
    for (int64_t i = 0; yi && yl && i < M * 5; i++) e = fmax(e, fabs(yl[i] - yi[i]) / (1 + fabs(yi[i])));
    if (mode == LATHE_QUANT_INT8_DYNAMIC)
      CHECK_MSG(yi && yl && memcmp(yi, yl, sizeof(float) * (size_t)(M * 5)) == 0,
                "int8-dynamic M=%lld on %s differs from the integer reference", (long long)M,
                lathe_rt_isa_name(lathe_rt_quant_isa()));
    else CHECK_MSG(yi && yl && e <= 1e-5, "bf16 M=%lld: llvm vs interp %.3g", (long long)M, e);
    free(yi), free(yl);
    lathe_program_free(qi), lathe_program_free(ql);
  }
  unsetenv("LATHE_CPU_FEATURES");
  free(x);
  lathe_program_free(f);
  lathe_model_free(m);
}

int main(void) {
  /* every kernel path, however slow: the rule that keeps such layers f32 has its own test (test_quant_keep.c) */
  setenv("LATHE_QUANT_KEEP_F32", "0", 1);
  if (qu_tmp_open(dir, wf, qf, csv)) return 1;
  mlp_case(1, 64, 32, 16, 4);
  mlp_case(7, 70, 33, 150, 5);
  mlp_case(20, 100, 64, 20, 3);
  cnn_case(1, 4);
  cnn_case(3, 5);
  epi_case(LATHE_QUANT_INT8_DYNAMIC, 1, 64);
  epi_case(LATHE_QUANT_INT8_DYNAMIC, 9, 100);
  epi_case(LATHE_QUANT_BF16, 1, 64);
  epi_case(LATHE_QUANT_BF16, 9, 100);
  qu_tmp_close(dir, wf, qf, csv);
  return TEST_REPORT();
}
