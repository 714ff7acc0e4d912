/* test_quant_bf16.c -- bf16 products on the host's bf16 dot products
 * (rt/rt_qbf16.c, docs/quantize.md):
 *  - where the CPU has AVX-512 BF16 the pass picks that kernel (k in the
 *    qmatmul node) and the LLVM backend equals the interpreter's reference
 *    (activations rounded to bf16, products in double) within f32
 *    summation error, over shapes with tails (M, N not multiples of the
 *    4 x 4 tiles, K not a multiple of 32);
 *  - the reference is within bf16's rounding bound of the f32 product;
 *  - with the feature forced off (LATHE_CPU_FEATURES=-avx512bf16, and
 *    "none") the pass keeps the convert-to-f32 kernels, whose activations
 *    stay f32. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lathe.h"
#include "rt/lathe_rt.h"
#include "rt/rt_qbf16.h"
#include "rt/rt_quant.h"
#include "test.h"
#include "quant_util.h"

static char dir[] = "/tmp/lathe_qbf16_XXXXXX";
static double worst_fast, worst_f32; /* the largest llvm-vs-interp error, as a fraction of the sum bound */

/* the qmatmul node's kernel (attr k) in a bf16 compile of m */
static int64_t kernel_of(lathe_model *m) {
  char *buf = NULL;
  size_t len = 0;
  lathe_error err = {0};
  FILE *log = open_memstream(&buf, &len);
  lathe_options o = {.backend = LATHE_BACKEND_INTERP, .quant = LATHE_QUANT_BF16, .print_after = "quantize",
                     .pass_log = log};
  lathe_program *p = lathe_compile(m, &o, &err);
  fclose(log);
  char *at = buf ? strstr(buf, "= qmatmul(") : NULL, *eol = at ? strchr(at, '\n') : NULL;
  if (eol) *eol = 0;
  const char *k = at ? strstr(at, " k=") : NULL;
  int64_t r = !at ? -1 : k ? strtoll(k + 3, NULL, 10) : 0; /* the dump leaves out k=0 */
  free(buf);
  lathe_program_free(p);
  return r;
}

static void set_features(const char *f) {
  if (f) setenv("LATHE_CPU_FEATURES", f, 1);
  else unsetenv("LATHE_CPU_FEATURES");
}

static int bf16_host(void) {
  unsetenv("LATHE_CPU_FEATURES");
  return lathe_rt_bf16_isa(-1) == LATHE_RT_ISA_AVX512BF16;
}

static void one_case(int64_t M, int64_t K, int64_t N, const char *features) {
  lathe_model *m = qu_dense(K, N, M);
  if (!m) return;
  lathe_error err = {0};
  char wf[128], qf[128];
  snprintf(wf, sizeof wf, "%s/w.safetensors", dir);
  snprintf(qf, sizeof qf, "%s/q.safetensors", dir);
  lathe_program *f = compile(m, LATHE_BACKEND_INTERP, 0, NULL, &err);
  CHECK(f && lathe_weights_init(f, (uint64_t)(K * 17 + N), &err) == 0 && lathe_weights_save(f, wf, &err) == 0);
  lathe_quantize_options qo = {.weights = wf, .out = qf, .mode = LATHE_QUANT_BF16};
  CHECK_MSG(lathe_quantize(m, &qo, NULL, &err) == 0, "%s", err.message);
  set_features(features);
  /* AVX-512 BF16's or AMX-BF16's dot products (LATHE_AMX_EMULATE=1: emulated tiles), else the f32 kernels */
  int64_t want = lathe_rt_amx_isa(LATHE_RT_Q_BF16, lathe_rt_bf16_isa(-1));
  int fast = lathe_rt_isa_bf16dot(want);
  int64_t k = kernel_of(m);
  CHECK_MSG(fast ? k == want : !lathe_rt_isa_bf16dot(k) && k >= 0, "features %s: kernel %lld",
            features ? features : "all", (long long)k);
  float *x = malloc(sizeof(float) * (size_t)(M * K));
  for (int64_t i = 0; i < M * K; i++) x[i] = (float)(((i * 7919) % 2001) - 1000) / 250.0f + 1e-3f; /* not bf16 */
  float *y32 = f ? run(f, x, M, K, N) : NULL;
  lathe_program *qi = compile(m, LATHE_BACKEND_INTERP, LATHE_QUANT_BF16, qf, &err);
  lathe_program *ql = compile(m, LATHE_BACKEND_LLVM, LATHE_QUANT_BF16, qf, &err);
  CHECK_MSG(qi && ql, "%s", err.message);
  float *yi = qi ? run(qi, x, M, K, N) : NULL, *yl = ql ? run(ql, x, M, K, N) : NULL;
  const uint16_t *w = qi ? (const uint16_t *)(const void *)param(qi, "fc.weight.bf16") : NULL;
  const float *W = f ? param(f, "fc.weight") : NULL;
  double worst_sum = 0, worst_q = 0, moved = 0;
  for (int64_t i = 0; w && W && yi && yl && y32 && i < M * N; i++) {
    int64_t r = i / N, n = i % N;
    double a = 0, a32 = 0;
    for (int64_t q = 0; q < K; q++) {
      double xv = fast ? rt_q_bf16(rt_qbf16_round(x[r * K + q])) : x[r * K + q];
      a += fabs(xv * rt_q_bf16(w[n * K + q]));
      a32 += fabs((double)x[r * K + q] * W[q * N + n]);
    }
    /* f32 sums of K terms: |error| <= K u sum |terms| (u = 2^-24), and far
     * less in practice; the bound is the worst case */
    worst_sum = fmax(worst_sum, fabs(yl[i] - yi[i]) / ((double)K * ldexp(1, -24) * a + ldexp(1, -23) * fabs(yi[i]) + 1e-30));
    /* x and w each rounded to 8 bits: |y - y32| <= (2^-8 + 2^-18) sum |x w| */
    worst_q = fmax(worst_q, fabs(yi[i] - y32[i]) / ((ldexp(1, fast ? -8 : -9) + ldexp(1, -17)) * a32 + 1e-6));
    moved = fmax(moved, fabs(yi[i] - y32[i]));
  }
  if (fast) worst_fast = fmax(worst_fast, worst_sum);
  else worst_f32 = fmax(worst_f32, worst_sum);
  CHECK_MSG(yl && worst_sum <= 1.0, "M=%lld K=%lld N=%lld features %s: llvm vs interp %.3g of the f32 sum bound",
            (long long)M, (long long)K, (long long)N, features ? features : "all", worst_sum);
  CHECK_MSG(yi && worst_q <= 1.0, "M=%lld K=%lld N=%lld: %.3g of the bf16 bound", (long long)M, (long long)K,
            (long long)N, worst_q);
  set_features(NULL);
  free(x), free(y32), free(yi), free(yl);
  lathe_program_free(f), lathe_program_free(qi), lathe_program_free(ql);
  lathe_model_free(m);
}

/* the rounding the kernel and the reference share: nearest even */
static void test_round(void) {
  CHECK(rt_qbf16_round(1.0f) == 0x3f80);
  CHECK(rt_qbf16_round(1.0f + 0x1p-8f) == 0x3f80);                 /* a tie: to even */
  CHECK(rt_qbf16_round(1.0f + 0x1p-7f + 0x1p-8f) == 0x3f82);       /* a tie: to even, up */
  CHECK(rt_qbf16_round(1.0f + 0x1p-8f + 0x1p-20f) == 0x3f81);      /* above the tie */
  CHECK(rt_qbf16_round(-2.0f) == 0xc000);
  CHECK(rt_qbf16_round(INFINITY) == 0x7f80 && rt_qbf16_round(3.4e38f) == 0x7f80); /* rounds up to inf */
  uint16_t nan = rt_qbf16_round(NAN);
  CHECK((nan & 0x7f80) == 0x7f80 && (nan & 0x7f) != 0);
}

int main(void) {
  /* every kernel path, however slow: the rule that keeps such layers f32 has its own test (test_quant_keep.c) */
  setenv("LATHE_QUANT_KEEP_F32", "0", 1);
  if (!mkdtemp(dir)) {
    perror("mkdtemp");
    return 1;
  }
  test_round();
  static const int64_t shapes[][3] = {{1, 64, 16}, {7, 100, 33}, {4, 1024, 8}, {64, 96, 20}, {17, 40, 5},
                                      {3, 31, 2},  {2, 32, 1},   {5, 1, 3},   {130, 72, 9}}; /* 130: rows in chunks of 64 */
  static const char *const features[] = {NULL, "-avx512bf16", "none"};
  int host = bf16_host();
  printf("bf16 dot products on this CPU: %s\n", host ? "yes (AVX-512 BF16)" : "no (only the f32 kernels tested)");
  for (size_t f = 0; f < sizeof features / sizeof features[0]; f++)
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
      one_case(shapes[s][0], shapes[s][1], shapes[s][2], features[f]);
  printf("llvm vs interp, worst fraction of the f32 sum bound: bf16 dot products %.3g, f32 kernels %.3g\n",
         worst_fast, worst_f32);
  char p[160];
  snprintf(p, sizeof p, "%s/w.safetensors", dir), unlink(p);
  snprintf(p, sizeof p, "%s/q.safetensors", dir), unlink(p);
  rmdir(dir);
  return TEST_REPORT();
}
