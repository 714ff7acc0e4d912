/* rt_amx.c -- the int8 and bf16 products on AMX tiles (rt/rt_amx.h), the
 * host's AMX (CPUID, XCR0, Linux's permission) and the kernel choice that
 * the compiler makes with it (lathe_rt_amx_isa).
 *
 * The tile code (rt/rt_amx_kern.h) is compiled twice: natively, under the
 * AMX target attribute, and over the software tile emulator
 * (rt/rt_amx_tile.h). Both share the epilogues below, so a kernel's
 * results differ between the copies only if the emulator's tile semantics
 * differ from the hardware's; the tests run the emulated copy on every host
 * against the interpreter's reference, and the native one where the host
 * has AMX.
 *
 * int8: the weights are dq8's blocks as stored (one 64-byte row per 4
 * inputs of 16 columns: TDPBUSD's source layout), the rows u8 = x + 128 as
 * the VNNI kernels read them, c[n] the offset correction: the same int32
 * sums as every other int8 kernel, hence the same floats. bf16: the stored
 * [N, K] weights are packed per call into the pairs layout TDPBF16PS reads
 * (16 columns by 2 inputs per 64-byte row), N * K conversions against
 * M * N * K multiply-adds. */
#define _GNU_SOURCE /* syscall() */
#include <cpuid.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "rt/lathe_rt.h"
#include "rt/rt_amx.h"
#include "rt/rt_amx_tile.h"
#include "rt/rt_qbf16.h"
#include "rt/rt_qdq.h"
#include "rt/rt_qgemm.h"
#include "rt/rt_quant.h"
#include "rt/threadpool.h"

_Static_assert(sizeof(amx_cfg) == 64, "LDTILECFG reads 64 bytes");

enum {
  A_GRAIN = 1 << 16,       /* multiply-adds per part at least */
  A_ARCH_REQ_XCOMP_PERM = 0x1023,
  A_XFEATURE_XTILEDATA = 18,
};

/* ---- the host ---- */

static rt_amx_host amx_host;
static pthread_once_t amx_once = PTHREAD_ONCE_INIT;

static uint64_t xcr0(void) {
  uint32_t lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (uint64_t)hi << 32 | lo;
}

/* What the host's facts allow (rt/rt_amx.h): CPUID.(7,0):EDX bits 22
 * (AMX-BF16), 24 (AMX-TILE), 25 (AMX-INT8); the OS saving the tile state
 * (CPUID.1:ECX bit 27 OSXSAVE, XCR0 bits 17 XTILECFG and 18 XTILEDATA);
 * Linux 5.16+ handing the tile data state to a process only on request
 * (perm: asks, returning 0 or an errno). */
rt_amx_host rt_amx_decide(uint32_t edx7, int osxsave, uint64_t (*xcr0_of)(void), int (*perm)(void)) {
  rt_amx_host h = {0};
  int tile = edx7 >> 24 & 1, i8 = edx7 >> 25 & 1, bf = edx7 >> 22 & 1;
  if (!tile || !(i8 || bf)) {
    snprintf(h.why, sizeof h.why, "this CPU has no AMX");
    return h;
  }
  if (!osxsave || (xcr0_of() & (3ull << 17)) != (3ull << 17)) { /* xgetbv faults without OSXSAVE */
    snprintf(h.why, sizeof h.why, "the OS does not enable the AMX tile state (XCR0)");
    return h;
  }
  int e = perm();
  if (e) {
    snprintf(h.why, sizeof h.why,
             "this CPU has AMX but Linux denied the tile state (arch_prctl ARCH_REQ_XCOMP_PERM: %s): the VNNI / "
             "AVX-512 BF16 kernels run instead", strerror(e));
    return h;
  }
  h.int8 = i8, h.bf16 = bf;
  return h;
}

static int req_perm(void) {
  return syscall(SYS_arch_prctl, A_ARCH_REQ_XCOMP_PERM, A_XFEATURE_XTILEDATA) == 0 ? 0 : errno;
}

static void amx_detect(void) {
  unsigned a, b, c, d;
  uint32_t edx7 = __get_cpuid_count(7, 0, &a, &b, &c, &d) ? d : 0;
  int osxsave = __get_cpuid(1, &a, &b, &c, &d) && (c >> 27 & 1);
  amx_host = rt_amx_decide(edx7, osxsave, xcr0, req_perm);
}

int rt_amx_native(int bf16) {
  pthread_once(&amx_once, amx_detect);
  return bf16 ? amx_host.bf16 : amx_host.int8;
}

static int emulate_env(void) {
  const char *e = getenv("LATHE_AMX_EMULATE");
  return e && !strcmp(e, "1");
}

static int amx_off(void) { return rt_q_feature_off(getenv("LATHE_CPU_FEATURES"), "amx"); }

/* the native copy unless the caller or LATHE_AMX_EMULATE says otherwise */
static int use_native(int how, int bf16) {
  if (how == RT_AMX_NATIVE && !rt_amx_native(bf16)) {
    fprintf(stderr, "lathe: internal error: native AMX-%s requested on a host without it\n", bf16 ? "BF16" : "INT8");
    abort();
  }
  return how == RT_AMX_NATIVE || (how == RT_AMX_AUTO && rt_amx_native(bf16) && !emulate_env());
}

int64_t lathe_rt_amx_isa(int64_t mode, int64_t isa) {
  int bf16 = mode == LATHE_RT_Q_BF16;
  if ((!bf16 && mode != LATHE_RT_Q_DQ8 && mode != LATHE_RT_Q_S8) || amx_off()) return isa;
  if (!rt_amx_native(bf16) && !emulate_env()) return isa;
  return bf16 ? LATHE_RT_ISA_AMXBF16 : LATHE_RT_ISA_AMXINT8;
}

const char *lathe_rt_amx_status(void) {
  int i8 = rt_amx_native(0), bf = rt_amx_native(1);
  if (amx_off()) return "off (LATHE_CPU_FEATURES)";
  if (emulate_env()) return "emulated (LATHE_AMX_EMULATE=1: the tile emulator, for tests)";
  if (i8 && bf) return "AMX-INT8, AMX-BF16";
  if (i8 || bf) return i8 ? "AMX-INT8 (no AMX-BF16)" : "AMX-BF16 (no AMX-INT8)";
  return amx_host.why;
}

/* ---- int8 ---- */

float rt_amx_row(const float *x, int64_t K, int64_t Kp, float sx, uint8_t *q) {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw"))
    return rt_q_row_simd(x, K, Kp, 128, sx, q, 1);
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return rt_q_row_simd(x, K, Kp, 128, sx, q, 0);
  return rt_q_row_static(x, K, Kp, 128, sx, q);
}

/* rows [m0, m0 + rows) x columns [n0, n0 + cols) of the accumulators:
 * (acc - c[n]) * (sx * s[n]) [+ bias] [relu] [requantized], the float
 * operations of rt/rt_qgemm.c's epilogue (and of the reference's) */
static void amx_i8_out(const rt_qgemm_args *a, int64_t m0, int rows, int64_t n0, int cols, int32_t acc[32][32]) {
  if (n0 + cols > a->N) cols = (int)(a->N - n0);
  for (int i = 0; i < rows; i++) {
    int64_t m = m0 + i;
    for (int c = 0; c < cols; c++) {
      int64_t n = n0 + c;
      float y = rt_q_epilogue(rt_q_out(acc[i][c] - a->c[n], a->sx[m], a->s[n]), a->bias ? a->bias[n] : 0.0f,
                              a->bias != NULL, a->act);
      if (a->out8) a->out8[m * a->N + n] = rt_q_requant(y, a->oinv);
      else a->out[m * a->N + n] = y;
    }
  }
}

/* ---- bf16 ---- */

typedef struct {
  float *out;
  const float *x, *bias;
  const uint16_t *w;      /* [N, K] as stored */
  uint16_t *xb, *panel;   /* [M, Kx] rounded rows; [Np, Kx] packed weights */
  int64_t act, M, K, Kx, N;
  int native;
} amx_bf16_job;

static int64_t kx_of(int64_t K) { return (K + 31) / 32 * 32; }

/* block b's 16 columns into TDPBF16PS's source layout: element (n, k) at
 * (k / 2) * 32 + (n % 16) * 2 + k % 2 from the block's start; zeros past
 * N and K */
static void amx_bf16_pack(const amx_bf16_job *j, int64_t b) {
  uint16_t *p = j->panel + b * 16 * j->Kx;
  for (int c = 0; c < 16; c++) {
    int64_t n = b * 16 + c;
    const uint16_t *w = j->w + n * j->K;
    for (int64_t k = 0; k < j->Kx; k++) p[(k / 2) * 32 + c * 2 + k % 2] = n < j->N && k < j->K ? w[k] : 0;
  }
}

static void amx_bf16_out(const amx_bf16_job *j, int64_t m0, int rows, int64_t n0, int cols, float acc[32][32]) {
  if (n0 + cols > j->N) cols = (int)(j->N - n0);
  for (int i = 0; i < rows; i++)
    for (int c = 0; c < cols; c++)
      j->out[(m0 + i) * j->N + n0 + c] =
          rt_q_epilogue(acc[i][c], j->bias ? j->bias[n0 + c] : 0.0f, j->bias != NULL, j->act);
}

/* ---- the tile code, twice ---- */

#define AMX_NATIVE
#define AMX_ATTR __attribute__((target("amx-tile,amx-int8,amx-bf16")))
#define AMX_FN(name) name##_native
#include "rt/rt_amx_tile.h"
#include "rt/rt_amx_kern.h"
#undef AMX_NATIVE
#undef AMX_ATTR
#undef AMX_FN
#define AMX_ATTR
#define AMX_FN(name) name##_emulated
#include "rt/rt_amx_tile.h"
#include "rt/rt_amx_kern.h"

void rt_amx_qgemm(const rt_qgemm_args *a, int64_t b0, int64_t b1, int how) {
  if (use_native(how, 0)) amx_i8_native(a, b0, b1);
  else amx_i8_emulated(a, b0, b1);
}

/* pairs of column blocks [lo, hi): pack, then the tiles */
static void amx_bf16_part(void *ctx, int64_t lo, int64_t hi, int part) {
  (void)part;
  const amx_bf16_job *j = ctx;
  int64_t blocks = (j->N + 15) / 16, b0 = 2 * lo, b1 = 2 * hi < blocks ? 2 * hi : blocks;
  for (int64_t b = b0; b < b1; b++) amx_bf16_pack(j, b);
  if (j->native) amx_bf16_native(j, b0, b1);
  else amx_bf16_emulated(j, b0, b1);
}

static void amx_bf16_round(void *ctx, int64_t lo, int64_t hi, int part) {
  (void)part;
  const amx_bf16_job *j = ctx;
  for (int64_t m = lo; m < hi; m++) {
    uint16_t *q = j->xb + m * j->Kx;
    for (int64_t k = 0; k < j->K; k++) q[k] = rt_qbf16_round(j->x[m * j->K + k]);
    for (int64_t k = j->K; k < j->Kx; k++) q[k] = 0;
  }
}

static int64_t xb_bytes(int64_t M, int64_t K) { return (M * kx_of(K) * 2 + 63) / 64 * 64; }

int64_t rt_amx_bf16_scratch_bytes(int64_t M, int64_t K, int64_t N) {
  return xb_bytes(M, K) + rt_q_npad(N) * kx_of(K) * 2 + 64;
}

void rt_amx_bf16_matmul(float *out, const float *x, const uint16_t *w, const float *bias, int64_t act, void *scr,
                        int64_t M, int64_t K, int64_t N, int how) {
  amx_bf16_job j = {.out = out, .x = x, .bias = bias, .w = w, .xb = scr,
                    .panel = (uint16_t *)(void *)((char *)scr + xb_bytes(M, K)), .act = act, .M = M, .K = K,
                    .Kx = kx_of(K), .N = N, .native = use_native(how, 1)};
  if (M * K >= A_GRAIN) rt_pool_for(M, 1, amx_bf16_round, &j);
  else amx_bf16_round(&j, 0, M, 0);
  int64_t pairs = ((N + 15) / 16 + 1) / 2, per = 32 * M * K, grain = per >= A_GRAIN ? 1 : A_GRAIN / (per ? per : 1);
  rt_pool_for(pairs, grain, amx_bf16_part, &j);
}
