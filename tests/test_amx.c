/* test_amx.c -- the AMX kernels (rt/rt_amx.c, docs/quantize.md), on every
 * host through the tile emulator (rt/rt_amx_tile.h), natively where the
 * host has AMX (else said loudly: SKIPPED):
 *  - the emulator's semantics: TDPBUSD's u8 x s8 groups of 4, TDPBF16PS's
 *    even and odd accumulations and their order, denormals in and out,
 *    loads that zero what the configuration leaves out;
 *  - the int8 kernel (AMX-INT8) on the dq8 weights equals the integer
 *    reference bit for bit (and rt_qgemm_512 where the host has AVX-512
 *    VNNI), over shapes with tails: M, N, K not multiples of 16 / 64, M = 1,
 *    bias, relu and the requantized int8 output;
 *  - the bf16 kernel (AMX-BF16) within the f32 summation bound of a double
 *    product of the bf16-rounded rows;
 *  - whole models: with LATHE_AMX_EMULATE=1 the pass picks k=9 (int8-dynamic,
 *    static int8) and k=10 (bf16), the LLVM backend's outputs equal the
 *    interpreter's reference (int8 bit for bit, bf16 within the sum bound);
 *    LATHE_CPU_FEATURES=-amx (and none) keeps the other kernels. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lathe.h"
#include "rt/lathe_rt.h"
#include "rt/rt_amx.h"
#include "rt/rt_amx_tile.h"
#include "rt/rt_qbf16.h"
#include "rt/rt_qdq.h"
#include "rt/rt_qgemm.h"
#include "rt/rt_quant.h"
#include "test.h"
#include "quant_util.h"

static uint32_t rng = 12345;
static uint32_t next(void) { return rng = rng * 1664525u + 1013904223u; }
static int q127(void) { return (int)(next() >> 8) % 255 - 127; }
static float unit(void) { return (float)((next() >> 8) & 0xffff) / 32768.0f - 1.0f; }

/* ---- the emulator ---- */

static uint16_t bf(float f) { return rt_qbf16_round(f); }

static void put_bf16(uint8_t *row, int i, uint16_t v) { row[2 * i] = (uint8_t)v, row[2 * i + 1] = (uint8_t)(v >> 8); }

static void test_emulator(void) {
  amx_emu st;
  amx_cfg c;
  /* 2 rows x 3 dwords of src1 (12 u8), 3 rows x 2 dwords of src2: dst 2 x 2 */
  memset(&c, 0, sizeof c);
  c.palette = 1;
  c.rows[0] = 2, c.colsb[0] = 8, c.rows[1] = 2, c.colsb[1] = 12, c.rows[2] = 3, c.colsb[2] = 8;
  amx_emu_cfg(&st, &c);
  uint8_t a[2][16], b[3][8];
  int32_t want[2][2] = {{0}};
  for (int m = 0; m < 2; m++)
    for (int i = 0; i < 12; i++) a[m][i] = (uint8_t)(next() >> 24);
  a[0][0] = 255;
  for (int k = 0; k < 3; k++)
    for (int i = 0; i < 8; i++) b[k][i] = (uint8_t)(int8_t)q127();
  b[0][0] = (uint8_t)(int8_t)-128;
  for (int m = 0; m < 2; m++)
    for (int n = 0; n < 2; n++)
      for (int k = 0; k < 12; k++) want[m][n] += a[m][k] * (int8_t)b[k / 4][4 * n + k % 4];
  amx_emu_load(&st, 1, a, 16);
  amx_emu_load(&st, 2, b, 8);
  amx_emu_zero(&st, 0);
  amx_emu_dpbusd(&st, 0, 1, 2);
  amx_emu_dpbusd(&st, 0, 1, 2); /* accumulates */
  int32_t got[2][2];
  amx_emu_store(&st, 0, got, 8);
  for (int m = 0; m < 2; m++)
    for (int n = 0; n < 2; n++) CHECK_MSG(got[m][n] == 2 * want[m][n], "dpbusd (%d, %d): %d, want %d", m, n, got[m][n], 2 * want[m][n]);
  CHECK(st.t[1][0][12] == 0 && st.t[1][2][0] == 0); /* past the configured bytes and rows: zeros */

  /* TDPBF16PS, one row by one column, 2 dwords (pairs) of K: the even
   * products 2^24 and 1 go to one temporary (2^24 + 1 rounds to 2^24), the
   * odd ones 1 and 1 to the other (2), then 2^24 + 2: exact. Adding in K
   * order instead would give 2^24. */
  memset(&c, 0, sizeof c);
  c.palette = 1;
  c.rows[0] = 1, c.colsb[0] = 4, c.rows[1] = 1, c.colsb[1] = 8, c.rows[2] = 2, c.colsb[2] = 4;
  amx_emu_cfg(&st, &c);
  uint8_t x[8], w[2][4];
  put_bf16(x, 0, bf(0x1p24f)), put_bf16(x, 1, bf(1.0f)), put_bf16(x, 2, bf(1.0f)), put_bf16(x, 3, bf(1.0f));
  for (int k = 0; k < 2; k++) put_bf16(w[k], 0, bf(1.0f)), put_bf16(w[k], 1, bf(1.0f));
  amx_emu_load(&st, 1, x, 8);
  amx_emu_load(&st, 2, w, 4);
  amx_emu_zero(&st, 0);
  amx_emu_dpbf16ps(&st, 0, 1, 2);
  float y;
  amx_emu_store(&st, 0, &y, 4);
  CHECK_MSG(y == 0x1p24f + 2.0f, "dpbf16ps order: %.9g", y);
  /* a denormal input reads as zero; a denormal result flushes to zero */
  put_bf16(x, 0, 0x0001), put_bf16(x, 1, bf(0x1p-70f)), put_bf16(x, 2, 0), put_bf16(x, 3, 0);
  put_bf16(w[0], 0, bf(0x1p100f)), put_bf16(w[0], 1, bf(0x1p-70f));
  amx_emu_load(&st, 1, x, 8);
  amx_emu_load(&st, 2, w, 4);
  amx_emu_zero(&st, 0);
  amx_emu_dpbf16ps(&st, 0, 1, 2);
  amx_emu_store(&st, 0, &y, 4);
  CHECK_MSG(y == 0.0f, "dpbf16ps denormals: %g", y); /* 0x0001 * 2^100 would be 2^-33; 2^-140 is denormal */
}

/* tiles the hardware would fault on (#UD): the emulator aborts, naming
 * the mismatch (a child process per case; its message goes to /dev/null) */
static int dies(int which) {
  pid_t p = fork();
  if (p == 0) {
    if (!freopen("/dev/null", "w", stderr)) _exit(3);
    amx_emu st;
    amx_cfg c;
    amx_cfg_set(&c, 16, 0, 1);
    if (which == 0) c.palette = 0;            /* palette 0: no tiles */
    if (which == 1) c.rows[4] = 8;            /* src1's rows differ from dst's */
    if (which == 2) c.colsb[6] = 32;          /* src2's bytes per row differ from dst's */
    amx_emu_cfg(&st, &c);
    if (which == 3) amx_emu_zero(&st, 2);     /* a tile left unconfigured (r1 = 0) */
    amx_emu_dpbusd(&st, 0, 4, which == 4 ? 4 : 6); /* 4: the same tile twice */
    _exit(0);
  }
  int status = 0;
  if (p < 0 || waitpid(p, &status, 0) != p) return 0;
  return WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT;
}

static void test_faults(void) {
  for (int which = 0; which < 5; which++) CHECK_MSG(dies(which), "emulator fault case %d did not abort", which);
}

/* ---- detection: rt_amx_decide on made-up hosts ---- */

static int perm_calls;
static uint64_t xcr0_tiles(void) { return 0xe7 | 3ull << 17; }
static uint64_t xcr0_none(void) { return 0xe7; }
static uint64_t xcr0_unread(void) { perm_calls += 100; return 0; } /* must not run without OSXSAVE */
static int perm_ok(void) { return perm_calls++, 0; }
static int perm_denied(void) { return perm_calls++, EPERM; }

static void test_detect(void) {
  const uint32_t amx = 1u << 24 | 1u << 25 | 1u << 22;
  rt_amx_host h = rt_amx_decide(0, 1, xcr0_tiles, perm_ok);
  CHECK(!h.int8 && !h.bf16 && strstr(h.why, "no AMX") && perm_calls == 0);
  h = rt_amx_decide(1u << 25 | 1u << 22, 1, xcr0_tiles, perm_ok); /* no AMX-TILE */
  CHECK(!h.int8 && !h.bf16 && perm_calls == 0);
  h = rt_amx_decide(amx, 0, xcr0_unread, perm_ok);
  CHECK(!h.int8 && strstr(h.why, "XCR0") && perm_calls == 0);
  h = rt_amx_decide(amx, 1, xcr0_none, perm_ok);
  CHECK(!h.int8 && strstr(h.why, "XCR0") && perm_calls == 0);
  h = rt_amx_decide(amx, 1, xcr0_tiles, perm_denied);
  CHECK_MSG(!h.int8 && !h.bf16 && strstr(h.why, "Linux denied the tile state") && perm_calls == 1, "denied: %s", h.why);
  h = rt_amx_decide(amx, 1, xcr0_tiles, perm_ok);
  CHECK(h.int8 && h.bf16 && !h.why[0] && perm_calls == 2);
  h = rt_amx_decide(1u << 24 | 1u << 25, 1, xcr0_tiles, perm_ok); /* AMX-INT8 without AMX-BF16 */
  CHECK(h.int8 && !h.bf16);
}

/* ---- the int8 kernel ---- */

typedef struct {
  int64_t M, K, N, Kp;
  uint8_t *xq;
  int8_t *w;
  float *sx, *s, *bias;
  int32_t *c;
} i8_case;

static void i8_make(i8_case *t, int64_t M, int64_t K, int64_t N) {
  t->M = M, t->K = K, t->N = N, t->Kp = rt_q_kpad(K);
  int64_t Np = rt_q_npad(N);
  t->xq = malloc((size_t)(M * t->Kp));
  t->w = calloc((size_t)(Np * t->Kp), 1);
  t->sx = malloc(sizeof(float) * (size_t)M);
  t->s = malloc(sizeof(float) * (size_t)N);
  t->bias = malloc(sizeof(float) * (size_t)N);
  t->c = calloc((size_t)N, sizeof(int32_t));
  for (int64_t m = 0; m < M; m++) {
    for (int64_t k = 0; k < t->Kp; k++) t->xq[m * t->Kp + k] = (uint8_t)(k < K ? q127() + 128 : 128);
    t->sx[m] = 0.01f + (float)(next() % 100) / 1000.0f;
  }
  for (int64_t n = 0; n < N; n++) {
    for (int64_t k = 0; k < K; k++) {
      int q = q127();
      t->w[rt_q_dq8_at(n, k, t->Kp)] = (int8_t)q;
      t->c[n] += 128 * q;
    }
    t->s[n] = 0.001f + (float)(next() % 100) / 10000.0f;
    t->bias[n] = unit();
  }
}

static void i8_free(i8_case *t) { free(t->xq), free(t->w), free(t->sx), free(t->s), free(t->bias), free(t->c); }

/* the reference: exact sums of (xq - 128) q, rt_quant.h's epilogue */
static void i8_ref(const rt_qgemm_args *a, int64_t K, void *out) {
  for (int64_t m = 0; m < a->M; m++)
    for (int64_t n = 0; n < a->N; n++) {
      int64_t acc = 0;
      for (int64_t k = 0; k < K; k++)
        acc += (int64_t)(a->xq[m * a->Kp + k] - 128) * a->w[rt_q_dq8_at(n, k, a->Kp)];
      float y = rt_q_epilogue(rt_q_out((int32_t)acc, a->sx[m], a->s[n]), a->bias ? a->bias[n] : 0.0f, a->bias != NULL,
                              a->act);
      if (a->out8) ((int8_t *)out)[m * a->N + n] = rt_q_requant(y, a->oinv);
      else ((float *)out)[m * a->N + n] = y;
    }
}

static int host_vnni512(void) {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vnni");
}

static void i8_one(int64_t M, int64_t K, int64_t N, int variant) {
  i8_case t;
  i8_make(&t, M, K, N);
  int o8 = variant == 2;
  rt_qgemm_args a = {.xq = t.xq, .sx = t.sx, .w = t.w, .s = t.s, .c = t.c, .bias = variant ? t.bias : NULL,
                     .act = variant == 1 || variant == 2, .M = M, .N = N, .Kp = t.Kp, .oinv = o8 ? 2.5f : 0.0f};
  size_t bytes = (size_t)(M * N) * (o8 ? 1 : sizeof(float));
  void *want = malloc(bytes), *got = malloc(bytes);
  a.out = o8 ? NULL : got, a.out8 = o8 ? got : NULL; /* i8_ref reads which one */
  i8_ref(&a, K, want);
  int64_t blocks = (N + 15) / 16;
  const int hows[] = {RT_AMX_EMULATED, RT_AMX_NATIVE};
  for (int h = 0; h < 2; h++) {
    if (hows[h] == RT_AMX_NATIVE && !rt_amx_native(0)) continue;
    memset(got, 0x5a, bytes);
    /* in two calls, split at an odd block: a pair's second block alone too */
    int64_t mid = blocks > 1 ? 1 : blocks;
    rt_amx_qgemm(&a, 0, mid, hows[h]);
    rt_amx_qgemm(&a, mid, blocks, hows[h]);
    CHECK_MSG(!memcmp(got, want, bytes), "amx-int8 %s M=%lld K=%lld N=%lld variant %d differs from the reference",
              hows[h] == RT_AMX_NATIVE ? "native" : "emulated", (long long)M, (long long)K, (long long)N, variant);
  }
  if (host_vnni512()) { /* the AVX-512 VNNI kernel: the same bits */
    memset(got, 0x5a, bytes);
    rt_qgemm_512(&a, 0, blocks);
    CHECK_MSG(!memcmp(got, want, bytes), "avx512-vnni M=%lld K=%lld N=%lld variant %d", (long long)M, (long long)K,
              (long long)N, variant);
  }
  free(want), free(got);
  i8_free(&t);
}

/* ---- the bf16 kernel ---- */

static double worst_bf16;

static void bf16_one(int64_t M, int64_t K, int64_t N, int variant) {
  float *x = malloc(sizeof(float) * (size_t)(M * K)), *bias = malloc(sizeof(float) * (size_t)N);
  uint16_t *w = malloc(sizeof(uint16_t) * (size_t)(N * K));
  float *y = malloc(sizeof(float) * (size_t)(M * N));
  void *scr = malloc((size_t)rt_amx_bf16_scratch_bytes(M, K, N));
  for (int64_t i = 0; i < M * K; i++) x[i] = unit() * 4.0f + 1e-3f;
  for (int64_t i = 0; i < N * K; i++) w[i] = rt_qbf16_round(unit());
  for (int64_t n = 0; n < N; n++) bias[n] = unit();
  const int hows[] = {RT_AMX_EMULATED, RT_AMX_NATIVE};
  for (int h = 0; h < 2; h++) {
    if (hows[h] == RT_AMX_NATIVE && !rt_amx_native(1)) continue;
    rt_amx_bf16_matmul(y, x, w, variant ? bias : NULL, variant == 1, scr, M, K, N, hows[h]);
    double worst = 0;
    for (int64_t m = 0; m < M; m++)
      for (int64_t n = 0; n < N; n++) {
        double acc = 0, mag = 0;
        for (int64_t k = 0; k < K; k++) {
          double p = (double)rt_q_bf16(rt_qbf16_round(x[m * K + k])) * rt_q_bf16(w[n * K + k]);
          acc += p, mag += fabs(p);
        }
        if (variant) acc += bias[n];
        if (variant == 1) acc = acc > 0 ? acc : 0;
        /* f32 sums of K terms, then the bias: K u sum |terms| + u |y| */
        double e = fabs(y[m * N + n] - acc) / ((double)(K + 1) * ldexp(1, -24) * (mag + 1) + 1e-30);
        worst = fmax(worst, e);
      }
    worst_bf16 = fmax(worst_bf16, worst);
    CHECK_MSG(worst <= 1.0, "amx-bf16 %s M=%lld K=%lld N=%lld: %.3g of the f32 sum bound",
              hows[h] == RT_AMX_NATIVE ? "native" : "emulated", (long long)M, (long long)K, (long long)N, worst);
  }
  free(x), free(bias), free(w), free(y), free(scr);
}

/* ---- whole models: the pass's choice and the LLVM backend vs the interpreter ---- */

static char dir[] = "/tmp/lathe_amx_XXXXXX";

static int64_t kernel_of(lathe_model *m, int quant) {
  char *buf = NULL;
  size_t len = 0;
  lathe_error err = {0};
  FILE *log = open_memstream(&buf, &len);
  lathe_options o = {.backend = LATHE_BACKEND_INTERP, .quant = quant, .print_after = "quantize", .pass_log = log};
  lathe_program *p = lathe_compile(m, &o, &err);
  fclose(log);
  char *at = buf ? strstr(buf, "= qmatmul(") : NULL, *eol = at ? strchr(at, '\n') : NULL;
  if (eol) *eol = 0;
  const char *k = at ? strstr(at, " k=") : NULL;
  int64_t r = !at ? -1 : k ? strtoll(k + 3, NULL, 10) : 0;
  free(buf);
  lathe_program_free(p);
  return r;
}

static void model_one(int quant, int64_t M, int64_t K, int64_t N, const char *features, int64_t want_k) {
  if (features) setenv("LATHE_CPU_FEATURES", features, 1);
  else unsetenv("LATHE_CPU_FEATURES");
  lathe_model *m = qu_dense(K, N, M);
  if (!m) return;
  lathe_error err = {0};
  char wf[QU_PATH], qf[QU_PATH];
  snprintf(wf, sizeof wf, "%s/w.safetensors", dir);
  snprintf(qf, sizeof qf, "%s/q.safetensors", dir);
  lathe_program *f = compile(m, LATHE_BACKEND_INTERP, 0, NULL, &err);
  CHECK(f && lathe_weights_init(f, (uint64_t)(K * 31 + N), &err) == 0 && lathe_weights_save(f, wf, &err) == 0);
  lathe_quantize_options qo = {.weights = wf, .out = qf, .mode = quant};
  CHECK_MSG(lathe_quantize(m, &qo, NULL, &err) == 0, "%s", err.message);
  int64_t k = kernel_of(m, quant);
  int amx = want_k == LATHE_RT_ISA_AMXINT8 || want_k == LATHE_RT_ISA_AMXBF16;
  CHECK_MSG(amx ? k == want_k : k != LATHE_RT_ISA_AMXINT8 && k != LATHE_RT_ISA_AMXBF16 && k >= 0,
            "mode %d features %s: kernel %lld", quant, features ? features : "all", (long long)k);
  float *x = malloc(sizeof(float) * (size_t)(M * K));
  for (int64_t i = 0; i < M * K; i++) x[i] = (float)(((i * 7919) % 2001) - 1000) / 250.0f + 1e-3f;
  lathe_program *qi = compile(m, LATHE_BACKEND_INTERP, quant, qf, &err);
  lathe_program *ql = compile(m, LATHE_BACKEND_LLVM, quant, qf, &err);
  CHECK_MSG(qi && ql, "%s", err.message);
  float *yi = qi ? run(qi, x, M, K, N) : NULL, *yl = ql ? run(ql, x, M, K, N) : NULL;
  if (yi && yl && quant != LATHE_QUANT_BF16) {
    CHECK_MSG(!memcmp(yi, yl, sizeof(float) * (size_t)(M * N)), "mode %d M=%lld K=%lld N=%lld: llvm != interp", quant,
              (long long)M, (long long)K, (long long)N);
  } else if (yi && yl) {
    double worst = 0, mag = 0;
    for (int64_t i = 0; i < M * N; i++) mag = fmax(mag, fabs(yi[i]));
    for (int64_t i = 0; i < M * N; i++) worst = fmax(worst, fabs(yi[i] - yl[i]));
    /* |x| <= 4, |w| small: the K-term bound with the largest output as scale */
    CHECK_MSG(worst <= (double)K * ldexp(1, -24) * (mag + 4.0 * K), "bf16 M=%lld K=%lld N=%lld: llvm vs interp %g",
              (long long)M, (long long)K, (long long)N, worst);
  }
  free(x), free(yi), free(yl);
  lathe_program_free(f), lathe_program_free(qi), lathe_program_free(ql);
  lathe_model_free(m);
  unsetenv("LATHE_CPU_FEATURES");
  unlink(wf), unlink(qf);
}

static void test_models(void) {
  static const int64_t shapes[][3] = {{1, 64, 16}, {5, 70, 17}, {33, 130, 47}, {17, 40, 5}};
  setenv("LATHE_AMX_EMULATE", "1", 1);
  printf("LATHE_AMX_EMULATE=1: %s\n", lathe_rt_amx_status());
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    int64_t M = shapes[s][0], K = shapes[s][1], N = shapes[s][2];
    model_one(LATHE_QUANT_INT8_DYNAMIC, M, K, N, NULL, LATHE_RT_ISA_AMXINT8);
    model_one(LATHE_QUANT_BF16, M, K, N, NULL, LATHE_RT_ISA_AMXBF16);
    model_one(LATHE_QUANT_INT8_DYNAMIC, M, K, N, "-amx", -1);
    model_one(LATHE_QUANT_BF16, M, K, N, "none", -1);
  }
  unsetenv("LATHE_AMX_EMULATE");
}

int main(void) {
  setenv("LATHE_QUANT_KEEP_F32", "0", 1);
  unsetenv("LATHE_AMX_EMULATE");
  printf("AMX on this host: %s\n", lathe_rt_amx_status());
  if (!rt_amx_native(0) || !rt_amx_native(1))
    printf("SKIPPED: the native AMX%s kernel%s (only the emulated tile code is tested here)\n",
           !rt_amx_native(0) && !rt_amx_native(1) ? "-INT8 and AMX-BF16" : !rt_amx_native(0) ? "-INT8" : "-BF16",
           !rt_amx_native(0) && !rt_amx_native(1) ? "s" : "");
  test_emulator();
  test_faults();
  test_detect();
  static const int64_t shapes[][3] = {{1, 1, 1},   {1, 64, 16},  {5, 70, 17},  {16, 64, 32},  {17, 130, 33},
                                      {33, 200, 47}, {40, 64, 65}, {3, 1000, 5}, {32, 128, 32}, {2, 63, 100}};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
    for (int v = 0; v < 3; v++) {
      i8_one(shapes[s][0], shapes[s][1], shapes[s][2], v);
      if (v < 2) bf16_one(shapes[s][0], shapes[s][1], shapes[s][2], v);
    }
  printf("amx-bf16 vs the double reference, worst fraction of the f32 sum bound: %.3g\n", worst_bf16);
  if (!mkdtemp(dir)) {
    perror("mkdtemp");
    return 1;
  }
  test_models();
  rmdir(dir);
  return TEST_REPORT();
}
