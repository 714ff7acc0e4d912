/* interp_quant.c -- qmatmul's reference. int8-dynamic is an exact integer
 * reference: each row quantized as the kernel does (rt_q_row), int64 sums of
 * the integer products (checked to fit int32, as the kernel's do), the same
 * float epilogue (rt_q_out); so every kernel path must equal it bit for bit.
 * Static int8 is the same with the calibrated input scale (s[N],
 * rt_q_row_static); its f32 form (kernel LATHE_RT_ISA_F32) is sum x * q in
 * double times s[n].
 * w8 and w4 with fewer than 16 rows quantize each row per group of 32 and
 * sum exact integer dot products per group (wo_rows: the kernel's
 * arithmetic, rt_q_wo_row); otherwise the weight-only modes dequantize
 * (w = s * q, 16-bit floats as they are) and multiply in double; bf16 on the bf16 dot-product kernel
 * (LATHE_RT_ISA_AVX512BF16, and AMX-BF16's tiles: LATHE_RT_ISA_AMXBF16)
 * rounds the activations to bf16 first, as the kernels do (rt_qbf16_round). Layouts: rt/rt_quant.h. */
#include <stdint.h>
#include <stdlib.h>

#include "interp_impl.h"
#include "rt/lathe_rt.h"
#include "rt/rt_qbf16.h"
#include "rt/rt_qdq.h"
#include "rt/rt_quant.h"

static int dq8(ik_ctx *c, const ir_node *n, int64_t M, int64_t K, double *out) {
  const double *x = ik_in(c, n, 0), *w = ik_in(c, n, 1), *s = ik_in(c, n, 2), *cc = ik_in(c, n, 3);
  int64_t N = n->attr.n, Kp = rt_q_kpad(K);
  float *row = malloc(sizeof(float) * (size_t)K + 1);
  uint8_t *q = malloc((size_t)Kp + 1);
  if (!row || !q) {
    free(row), free(q);
    return ik_fail(c, n, "out of memory");
  }
  int rc = 0;
  int s8 = n->attr.i == LATHE_RT_Q_S8, o8 = s8 && n->attr.pad == 1, xi8 = ik_arg(c, n, 0)->dtype == IR_I8;
  const double *b = n->nin - o8 > 4 ? ik_in(c, n, 4) : NULL; /* static int8's epilogue */
  /* between products (rt/rt_qdq.h): x already s8 with the scale s[N]; the
   * output requantized with the reading product's scale */
  float oinv = o8 ? rt_q_inv((float)ik_in(c, n, n->nin - 1)[ik_arg(c, n, n->nin - 1)->shape.d[0] - 1]) : 0.0f;
  for (int64_t m = 0; m < M && !rc; m++) {
    for (int64_t k = 0; k < K; k++) row[k] = (float)x[m * K + k];
    for (int64_t k = 0; xi8 && k < Kp; k++) q[k] = (uint8_t)(k < K ? (int)x[m * K + k] : 0);
    float sx = xi8 ? (float)s[N] : s8 ? rt_q_row_static(row, K, Kp, 0, (float)s[N], q) : rt_q_row(row, K, Kp, 0, q);
    for (int64_t j = 0; j < N; j++) {
      int64_t acc = 0, sum = 0;
      for (int64_t k = 0; k < Kp; k++) {
        int64_t wk = (int64_t)w[rt_q_dq8_at(j, k, Kp)];
        acc += (int64_t)(int8_t)q[k] * wk;
        sum += wk;
      }
      if (acc != (int32_t)acc || 128 * sum != (int64_t)cc[j]) {
        rc = ik_fail(c, n, "int8 weights of column %lld: offsets %lld, expected 128 * %lld",
                     (long long)j, (long long)cc[j], (long long)sum);
        break;
      }
      float y = rt_q_epilogue(rt_q_out((int32_t)acc, sx, (float)s[j]), b ? (float)b[j] : 0.0f, b != NULL,
                              n->attr.axis);
      out[m * N + j] = o8 ? rt_q_requant(y, oinv) : y;
    }
  }
  free(row), free(q);
  return rc;
}

/* w8 / w4: the integer weight q[j, k] (blocked layouts: rt/rt_quant.h) */
static int64_t wq(const ir_node *n, const double *w, int64_t K, int64_t j, int64_t k) {
  if (n->attr.i == LATHE_RT_Q_W8) return (int64_t)w[rt_q_w8_at(j, k, K)];
  int hi;
  int64_t byte = (int64_t)w[rt_q_w4_at(j, k, K, &hi)];
  return (hi ? byte >> 4 : byte & 15) - 8;
}

/* w[j, k] as a real number */
static double weight(const ir_node *n, const double *w, const double *s, int64_t K, int64_t j, int64_t k) {
  if (n->attr.i == LATHE_RT_Q_W8 || n->attr.i == LATHE_RT_Q_W4)
    return s[rt_q_ws_at(j, k / RT_Q_GROUP, K / RT_Q_GROUP)] * (double)wq(n, w, K, j, k);
  return w[j * K + k]; /* bf16, f16: already their values */
}

/* w8 / w4 with fewer than 16 rows: each row quantized per group of 32
 * (rt_q_wo_row, in float as the kernel does), exact integer dot products
 * per group, sum_g dot * sx[g] * s[j, g] in double (rt/rt_qwo.c sums in
 * float: within rounding of this) */
static int wo_rows(ik_ctx *c, const ir_node *n, int64_t M, int64_t K, double *out) {
  const double *x = ik_in(c, n, 0), *w = ik_in(c, n, 1), *s = ik_in(c, n, 2);
  int64_t N = n->attr.n, G = K / RT_Q_GROUP;
  float *xf = malloc(sizeof(float) * (size_t)K + sizeof(float) * (size_t)G + 1);
  int8_t *q = malloc((size_t)K + 1);
  int32_t *cor = malloc(sizeof(int32_t) * (size_t)G + 1);
  if (!xf || !q || !cor) return free(xf), free(q), free(cor), ik_fail(c, n, "out of memory");
  float *sx = xf + K;
  for (int64_t m = 0; m < M; m++) {
    for (int64_t k = 0; k < K; k++) xf[k] = (float)x[m * K + k];
    rt_q_wo_row(xf, K, 0, q, sx, cor);
    for (int64_t j = 0; j < N; j++) {
      double y = 0;
      for (int64_t g = 0; g < G; g++) {
        int64_t dot = 0;
        for (int64_t k = g * RT_Q_GROUP; k < (g + 1) * RT_Q_GROUP; k++) dot += q[k] * wq(n, w, K, j, k);
        y += (double)dot * sx[g] * s[rt_q_ws_at(j, g, G)];
      }
      out[m * N + j] = y;
    }
  }
  free(xf), free(q), free(cor);
  return 0;
}

/* static int8 on the f32 path: the int8 weights as they are, in double */
static void s8_f32(ik_ctx *c, const ir_node *n, int64_t M, int64_t K, double *out) {
  const double *x = ik_in(c, n, 0), *w = ik_in(c, n, 1), *s = ik_in(c, n, 2), *b = n->nin > 4 ? ik_in(c, n, 4) : NULL;
  int64_t N = n->attr.n, Kp = rt_q_kpad(K);
  for (int64_t m = 0; m < M; m++)
    for (int64_t j = 0; j < N; j++) {
      double acc = 0;
      for (int64_t k = 0; k < K; k++) acc += x[m * K + k] * w[rt_q_dq8_at(j, k, Kp)];
      double y = acc * s[j] + (b ? b[j] : 0.0);
      out[m * N + j] = n->attr.axis == 1 && !(y > 0) ? 0.0 : y;
    }
}

int ik_qmatmul(ik_ctx *c, const ir_node *n, double *out) {
  const ir_shape *xs = &ik_arg(c, n, 0)->shape;
  int64_t K = xs->d[xs->rank - 1], M = ir_numel(xs) / (K ? K : 1), N = n->attr.n;
  if (n->attr.i == LATHE_RT_Q_S8 && n->attr.k == LATHE_RT_ISA_F32) return s8_f32(c, n, M, K, out), 0;
  if (n->attr.i == LATHE_RT_Q_DQ8 || n->attr.i == LATHE_RT_Q_S8) return dq8(c, n, M, K, out);
  if ((n->attr.i == LATHE_RT_Q_W8 || n->attr.i == LATHE_RT_Q_W4) && rt_q_wo_rows(M, K)) return wo_rows(c, n, M, K, out);
  const double *x = ik_in(c, n, 0), *w = ik_in(c, n, 1), *s = n->nin > 2 ? ik_in(c, n, 2) : NULL;
  double *d = ik_alloc(c, n, K * N);
  if (!d) return -1;
  for (int64_t k = 0; k < K; k++) /* as [K, N] */
    for (int64_t j = 0; j < N; j++) d[k * N + j] = weight(n, w, s, K, j, k);
  int rb = n->attr.i == LATHE_RT_Q_BF16 && lathe_rt_isa_bf16dot(n->attr.k);
  double *xr = rb ? ik_alloc(c, n, M * K) : NULL;
  if (rb && !xr) return free(d), -1;
  for (int64_t i = 0; xr && i < M * K; i++) xr[i] = rt_q_bf16(rt_qbf16_round((float)x[i]));
  /* bf16 on its dot products: + bias, relu in the kernel's epilogue */
  ik_affine(xr ? xr : x, d, rb && n->nin > 2 ? ik_in(c, n, 2) : NULL, M, K, N, out);
  for (int64_t i = 0; n->attr.axis == 1 && i < M * N; i++) out[i] = out[i] > 0 ? out[i] : 0.0;
  free(d), free(xr);
  return 0;
}
