/* interp.c -- the reference interpreter: the driver, the kernel table, and
 * the kernels for leaves, elementwise ops and casts. Contractions,
 * reductions, movement and losses are in interp_nn.c; the fused sequence
 * layers in interp_seq.c.
 *
 * This is the oracle that every backend and every gradient is checked
 * against, so it is written to be obviously correct, not fast: one kernel per
 * op, doubles throughout, PyTorch's semantics. Each result is then fixed up
 * by its dtype (finish): float results are rounded to float in F32 mode,
 * integer results truncated toward zero and wrapped to their width.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "interp_impl.h"

/* ---- the kernel table ---- */

static const ik_kernel kernels[IR_NOPS] = {
  [IR_INPUT] = ik_leaf,         [IR_PARAM] = ik_leaf,
  [IR_CONST] = ik_const,        [IR_ARANGE] = ik_arange,
  [IR_RELU] = ik_relu,          [IR_LEAKY_RELU] = ik_leaky_relu,
  [IR_SIGMOID] = ik_sigmoid,    [IR_TANH] = ik_tanh,
  [IR_GELU] = ik_gelu,          [IR_SWISH] = ik_swish,
  [IR_EXP] = ik_exp,            [IR_LOG] = ik_log,
  [IR_SQRT] = ik_sqrt,          [IR_ABS] = ik_abs,
  [IR_NEG] = ik_neg,            [IR_POW] = ik_pow,
  [IR_CLAMP] = ik_clamp,
  [IR_DROPOUT] = ik_dropout,    [IR_CAST] = ik_cast,
  [IR_ADD] = ik_add,            [IR_SUB] = ik_sub,
  [IR_MUL] = ik_mul,            [IR_DIV] = ik_div,
  [IR_LESS] = ik_compare,       [IR_LESS_EQUAL] = ik_compare,
  [IR_GREATER] = ik_compare,    [IR_GREATER_EQUAL] = ik_compare,
  [IR_EQUAL] = ik_compare,      [IR_NOT_EQUAL] = ik_compare,
  [IR_WHERE] = ik_where,
  [IR_MATMUL] = ik_matmul,      [IR_CONV2D] = ik_conv2d,
  [IR_SOFTMAX] = ik_softmax,    [IR_LOG_SOFTMAX] = ik_log_softmax,
  [IR_SUM] = ik_sum,            [IR_MEAN] = ik_mean,
  [IR_MAX] = ik_max,            [IR_LAYERNORM] = ik_layernorm,
  [IR_BATCHNORM] = ik_norm,     [IR_BATCHNORM_TRAIN] = ik_norm, [IR_GROUPNORM] = ik_norm, [IR_RMSNORM] = ik_norm,
  [IR_MIN] = ik_min,            [IR_ARGMAX] = ik_argext,
  [IR_ARGMIN] = ik_argext,
  [IR_MAXPOOL2D] = ik_maxpool2d, [IR_AVGPOOL2D] = ik_avgpool2d,
  [IR_RESHAPE] = ik_reshape,    [IR_TRANSPOSE] = ik_transpose,
  [IR_CONCAT] = ik_concat,      [IR_SLICE] = ik_slice,
  [IR_EMBEDDING] = ik_embedding, [IR_ONE_HOT] = ik_one_hot,
  [IR_GATHER] = ik_gather,      [IR_CUMSUM] = ik_cumsum,
  [IR_ATTENTION] = ik_attention, [IR_RNN] = ik_rnn,
  [IR_LSTM] = ik_lstm,          [IR_GRU] = ik_gru,
  [IR_QMATMUL] = ik_qmatmul,   /* interp_quant.c */
  [IR_QCONV2D] = ik_qconv2d,   /* interp_qconv.c */
  [IR_QUANTIZE] = ik_quantize, /* interp_qdq.c */
  [IR_DEQUANTIZE] = ik_dequantize,
  [IR_MHA] = ik_mha,            [IR_MHA_GRAD] = ik_mha_grad, /* interp_mha.c */
  [IR_CROSS_ENTROPY] = ik_cross_entropy, [IR_MSE] = ik_mse,
  [IR_BCE] = ik_bce,            [IR_L1] = ik_l1,             [IR_HUBER] = ik_huber,
  [IR_NLL] = ik_nll,            [IR_KL_DIV] = ik_kl_div,
  /* backward-pass ops: interp_grad.c */
  [IR_SUM_TO] = ik_sum_to,      [IR_BROADCAST_TO] = ik_broadcast_to,
  [IR_UNARY_GRAD] = ik_unary_grad, [IR_SOFTMAX_GRAD] = ik_softmax_grad,
  [IR_LOG_SOFTMAX_GRAD] = ik_log_softmax_grad, [IR_MAX_GRAD] = ik_max_grad,
  [IR_LAYERNORM_GRAD] = ik_layernorm_grad, [IR_NORM_GRAD] = ik_norm_grad, [IR_CONV2D_GRAD_INPUT] = ik_conv2d_grad_input,
  [IR_CONV2D_GRAD_WEIGHT] = ik_conv2d_grad_weight, [IR_POOL2D_GRAD] = ik_pool2d_grad,
  [IR_EMBEDDING_GRAD] = ik_embedding_grad, [IR_SLICE_GRAD] = ik_slice_grad,
  [IR_GATHER_GRAD] = ik_gather_grad,
  [IR_CROSS_ENTROPY_GRAD] = ik_cross_entropy_grad, [IR_BCE_GRAD] = ik_bce_grad,
  [IR_NLL_GRAD] = ik_nll_grad,
  /* training-step ops: interp_opt.c */
  [IR_MINIMUM] = ik_minimum,    [IR_SIGN] = ik_sign,
  [IR_RANDN] = ik_randn,        [IR_DROPOUT_MASK] = ik_dropout_mask,
  /* fused backward ops of the sequence layers: interp_seq_grad.c */
  [IR_ATTENTION_GRAD] = ik_attention_grad, [IR_RNN_GRAD] = ik_rnn_grad,
  [IR_LSTM_GRAD] = ik_lstm_grad, [IR_GRU_GRAD] = ik_gru_grad,
  [IR_ATTENTION_SAVE] = ik_attention_save, [IR_ATTENTION_GRAD_SAVED] = ik_attention_grad_saved,
  /* decode-step ops: interp_decode.c */
  [IR_KV_WRITE] = ik_kv_write,  [IR_ATTENTION_DECODE] = ik_attention_decode,
  [IR_SAMPLE_TOKEN] = ik_sample_token,
  /* collectives: interp_comm.c */
  [IR_ALLREDUCE] = ik_allreduce, [IR_REDUCE_SCATTER] = ik_reduce_scatter, [IR_ALL_GATHER] = ik_all_gather,
  [IR_COMM_WAIT] = ik_comm_wait, [IR_SEND] = ik_send, [IR_RECV] = ik_recv,
  /* fused elementwise programs: interp_fused.c */
  [IR_FUSED] = ik_fused,
};

/* ---- shared helpers ---- */

int ik_fail(ik_ctx *c, const ir_node *n, const char *fmt, ...) {
  if (!c->msg || c->msgn == 0) return -1;
  int at = snprintf(c->msg, c->msgn, "%s (node %d%s%s%s): ", ir_ops[n->op].name,
                    (int)(n - c->g->nodes), n->name ? " '" : "", n->name ? n->name : "",
                    n->name ? "'" : "");
  if (at >= 0 && (size_t)at < c->msgn) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->msg + at, c->msgn - (size_t)at, fmt, ap);
    va_end(ap);
  }
  return -1;
}

double *ik_alloc(ik_ctx *c, const ir_node *n, int64_t count) {
  double *p = NULL;
  if (count >= 0 && (uint64_t)count <= SIZE_MAX / sizeof(double))
    p = calloc(count ? (size_t)count : 1, sizeof(double));
  if (!p) ik_fail(c, n, "out of memory for %lld values", (long long)count);
  return p;
}

int64_t ik_dims(const ir_shape *s, int lo, int hi) {
  int64_t p = 1;
  for (int i = lo; i < hi; i++) p *= s->d[i];
  return p;
}

int64_t ik_bcast_index(const ir_shape *out, const ir_shape *in, int64_t o) {
  int64_t idx = 0, stride = 1;
  /* walk both shapes from the last axis; `in` may have fewer axes */
  for (int i = out->rank - 1, j = in->rank - 1; i >= 0; i--, j--) {
    int64_t coord = o % out->d[i];
    o /= out->d[i];
    if (j < 0) continue;
    if (in->d[j] != 1) idx += coord * stride;
    stride *= in->d[j];
  }
  return idx;
}

double ik_logistic(double x) {
  if (x >= 0) return 1.0 / (1.0 + exp(-x));
  double e = exp(x); /* no overflow for very negative x */
  return e / (1.0 + e);
}

void ik_affine(const double *x, const double *w, const double *b, int64_t m, int64_t k, int64_t n,
               double *y) {
  for (int64_t i = 0; i < m; i++) {
    for (int64_t j = 0; j < n; j++) {
      double s = b ? b[j] : 0.0;
      for (int64_t p = 0; p < k; p++) s += x[i * k + p] * w[p * n + j];
      y[i * n + j] = s;
    }
  }
}

/* ---- the driver ---- */

static int caller_owned(int op) { return op == IR_INPUT || op == IR_PARAM; }

/* Round to the nearest float, as a float32 store would (ties to even; values
 * beyond the float range become infinities without undefined conversion). */
static double round_f32(double v) {
  if (isnan(v)) return v;
  if (fabs(v) >= 0x1.ffffffp127) return v > 0 ? INFINITY : -INFINITY;
  return (double)(float)v;
}

/* An integer dtype's value of v: truncated toward zero and wrapped to the
 * width as two's complement does; i64 saturates (a double cannot hold its
 * wrap exactly anyway). NaN and infinities become 0; for bool any non-zero
 * (NaN included, as in PyTorch) is 1. */
static double to_int(double v, ir_dtype t) {
  if (t == IR_BOOL) return v != 0 ? 1.0 : 0.0;
  if (!isfinite(v)) return 0.0;
  v = trunc(v);
  double lo, span;
  switch (t) {
  case IR_I8: lo = -128.0; span = 256.0; break;
  case IR_U8: lo = 0.0; span = 256.0; break;
  case IR_I32: lo = -2147483648.0; span = 4294967296.0; break;
  default: /* IR_I64 */
    if (v < -0x1p63) return -0x1p63;
    return v >= 0x1p63 ? 0x1p63 - 1024.0 : v; /* the largest double below 2^63 */
  }
  if (v >= lo && v < lo + span) return v;
  double r = fmod(v - lo, span);
  if (r < 0) r += span;
  return r + lo;
}

static void finish(const ir_node *n, ir_interp_mode mode, double *v, int64_t count) {
  if (ir_dtype_is_float(n->dtype)) {
    if (mode == IR_INTERP_F32)
      for (int64_t i = 0; i < count; i++) v[i] = round_f32(v[i]);
  } else {
    for (int64_t i = 0; i < count; i++) v[i] = to_int(v[i], n->dtype);
  }
}

int ik_run_op(ik_ctx *c, const ir_node *n, double *out) {
  if (n->op < 0 || n->op >= IR_NOPS || !kernels[n->op] || caller_owned(n->op))
    return ik_fail(c, n, "no reference kernel for this step");
  if (kernels[n->op](c, n, out)) return -1;
  finish(n, c->mode, out, ir_numel(&n->shape));
  return 0;
}

static int run_node(ik_ctx *c, int id) {
  const ir_node *n = &c->g->nodes[id];
  if (n->op < 0 || n->op >= IR_NOPS || !kernels[n->op]) {
    if (c->msg && c->msgn) snprintf(c->msg, c->msgn, "node %d: no reference kernel for op %d", id, n->op);
    return -1;
  }
  if (caller_owned(n->op)) return kernels[n->op](c, n, NULL);
  int64_t count = ir_numel(&n->shape);
  if (count < 0) return ik_fail(c, n, "invalid result shape");
  double *out = ik_alloc(c, n, count);
  if (!out) return -1;
  c->vals[id] = out;
  if (kernels[n->op](c, n, out)) return -1;
  finish(n, c->mode, out, count);
  return 0;
}

/* The table must cover every op of ops.def: an op added without a kernel is
 * reported on the first run, whatever the graph holds, not left as a gap. */
static int missing_kernel(void) {
  for (int op = 0; op < IR_NOPS; op++)
    if (!kernels[op]) return op;
  return -1;
}

int ir_interp(const ir_graph *g, ir_interp_mode mode, double **vals, char *msg, size_t msgn) {
  ik_ctx c = {g, vals, mode, msg, msgn};
  if (msg && msgn) msg[0] = '\0';
  /* clear every entry we own first, so a failure part-way can release */
  for (int i = 0; i < g->nnodes; i++)
    if (!caller_owned(g->nodes[i].op)) vals[i] = NULL;
  int gap = missing_kernel();
  if (gap >= 0) {
    if (msg && msgn) snprintf(msg, msgn, "internal: op '%s' has no reference kernel", ir_ops[gap].name);
    return -1;
  }
  for (int i = 0; i < g->nnodes; i++) {
    if (run_node(&c, i)) {
      ir_interp_release(g, vals);
      return -1;
    }
  }
  return 0;
}

int ir_interp_node(const ir_graph *g, ir_interp_mode mode, double **vals, int id, double *out, char *msg,
                   size_t msgn) {
  ik_ctx c = {g, vals, mode, msg, msgn};
  if (msg && msgn) msg[0] = '\0';
  return ik_run_op(&c, &g->nodes[id], out);
}

void ir_interp_release(const ir_graph *g, double **vals) {
  if (!g || !vals) return;
  for (int i = 0; i < g->nnodes; i++) {
    if (caller_owned(g->nodes[i].op)) continue;
    free(vals[i]);
    vals[i] = NULL;
  }
}

/* ---- leaves ---- */

/* INPUT and PARAM values come from the caller; only check they are there. */
int ik_leaf(ik_ctx *c, const ir_node *n, double *out) {
  (void)out;
  if (c->vals[n - c->g->nodes]) return 0;
  return ik_fail(c, n, "no value given for %s '%s'", n->op == IR_INPUT ? "input" : "parameter",
                 n->name ? n->name : "?");
}

int ik_const(ik_ctx *c, const ir_node *n, double *out) {
  (void)c;
  int64_t count = ir_numel(&n->shape);
  for (int64_t i = 0; i < count; i++) out[i] = n->data ? n->data[i] : n->attr.f;
  return 0;
}

int ik_arange(ik_ctx *c, const ir_node *n, double *out) {
  (void)c;
  int64_t count = ir_numel(&n->shape);
  for (int64_t i = 0; i < count; i++) out[i] = (double)i;
  return 0;
}

/* ---- elementwise unary: one scalar function per op ---- */

typedef double (*scalar_fn)(double x, const ir_attr *a);

static int map1(ik_ctx *c, const ir_node *n, double *out, scalar_fn f) {
  const double *x = ik_in(c, n, 0);
  int64_t count = ir_numel(&n->shape);
  for (int64_t i = 0; i < count; i++) out[i] = f(x[i], &n->attr);
  return 0;
}

#define UNARY(fn, expr)                                                  \
  static double s_##fn(double x, const ir_attr *a) {                     \
    (void)a;                                                             \
    return (expr);                                                       \
  }                                                                      \
  int ik_##fn(ik_ctx *c, const ir_node *n, double *out) { return map1(c, n, out, s_##fn); }

static const double k_sqrt2 = 1.41421356237309504880, k_sqrt_2_over_pi = 0.79788456080286535588;

UNARY(relu, x > 0 ? x : (x == x ? 0.0 : x)) /* NaN stays NaN, as torch.relu */
UNARY(leaky_relu, x >= 0 ? x : a->f * x)
UNARY(sigmoid, ik_logistic(x))
UNARY(tanh, tanh(x))
UNARY(gelu, a->approx ? 0.5 * x * (1.0 + tanh(k_sqrt_2_over_pi * (x + 0.044715 * x * x * x)))
                      : 0.5 * x * (1.0 + erf(x / k_sqrt2)))
UNARY(swish, x * ik_logistic(x))
UNARY(exp, exp(x))
UNARY(log, log(x))
UNARY(sqrt, sqrt(x))
UNARY(abs, fabs(x))
UNARY(neg, -x)
UNARY(pow, pow(x, a->f))
/* torch.clamp: min(max(x, lo), hi), so lo > hi gives hi everywhere; NaN stays NaN */
static double s_clamp_lo(double x, double lo) { return x < lo ? lo : x; }
UNARY(clamp, x != x ? x : (s_clamp_lo(x, a->f) > a->f2 ? a->f2 : s_clamp_lo(x, a->f)))
UNARY(dropout, x) /* inference: identity (training dropout is the trainer's) */
/* float -> int truncation and -> bool are done by finish for the target dtype */
UNARY(cast, x)

/* ---- elementwise binary with NumPy broadcasting ---- */

typedef double (*binary_fn)(double a, double b);

static int map2(ik_ctx *c, const ir_node *n, double *out, binary_fn f) {
  const double *a = ik_in(c, n, 0), *b = ik_in(c, n, 1);
  const ir_shape *sa = &ik_arg(c, n, 0)->shape, *sb = &ik_arg(c, n, 1)->shape;
  int64_t count = ir_numel(&n->shape);
  for (int64_t i = 0; i < count; i++)
    out[i] = f(a[ik_bcast_index(&n->shape, sa, i)], b[ik_bcast_index(&n->shape, sb, i)]);
  return 0;
}

static double s_add(double a, double b) { return a + b; }
static double s_sub(double a, double b) { return a - b; }
static double s_mul(double a, double b) { return a * b; }
static double s_div(double a, double b) { return a / b; }

/* comparisons: 1 or 0 (bool); C's NaN rules are PyTorch's */
static double s_lt(double a, double b) { return a < b; }
static double s_le(double a, double b) { return a <= b; }
static double s_gt(double a, double b) { return a > b; }
static double s_ge(double a, double b) { return a >= b; }
static double s_eq(double a, double b) { return a == b; }
static double s_ne(double a, double b) { return a != b; }

int ik_compare(ik_ctx *c, const ir_node *n, double *out) {
  static const binary_fn fn[] = {s_lt, s_le, s_gt, s_ge, s_eq, s_ne};
  return map2(c, n, out, fn[n->op - IR_LESS]);
}

int ik_where(ik_ctx *c, const ir_node *n, double *out) {
  const double *cd = ik_in(c, n, 0), *a = ik_in(c, n, 1), *b = ik_in(c, n, 2);
  const ir_shape *sc = &ik_arg(c, n, 0)->shape, *sa = &ik_arg(c, n, 1)->shape, *sb = &ik_arg(c, n, 2)->shape;
  int64_t count = ir_numel(&n->shape);
  for (int64_t i = 0; i < count; i++)
    out[i] = cd[ik_bcast_index(&n->shape, sc, i)] != 0 ? a[ik_bcast_index(&n->shape, sa, i)]
                                                       : b[ik_bcast_index(&n->shape, sb, i)];
  return 0;
}

int ik_add(ik_ctx *c, const ir_node *n, double *out) { return map2(c, n, out, s_add); }
int ik_sub(ik_ctx *c, const ir_node *n, double *out) { return map2(c, n, out, s_sub); }
int ik_mul(ik_ctx *c, const ir_node *n, double *out) { return map2(c, n, out, s_mul); }

/* Integer division truncates toward zero (finish) and refuses zero divisors,
 * which a float32 program would turn into inf but an integer one traps on. */
int ik_div(ik_ctx *c, const ir_node *n, double *out) {
  if (!ir_dtype_is_float(n->dtype)) {
    const double *b = ik_in(c, n, 1);
    int64_t nb = ir_numel(&ik_arg(c, n, 1)->shape);
    for (int64_t i = 0; i < nb; i++)
      if (b[i] == 0) return ik_fail(c, n, "integer division by zero");
  }
  return map2(c, n, out, s_div);
}
