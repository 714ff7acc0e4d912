/* ox_export.c -- a Lathe program's forward graph as ONNX (ox_export.h): the
 * op table (one row per IR op that has an ONNX form), the elementwise,
 * contraction, reduction and data-movement ops, the graph's inputs, outputs
 * and weights, and the file. The sequence layers are in ox_export_seq.c.
 *
 * Where ONNX opset 17 has the op, it is used as it is; otherwise the op is
 * written as the ONNX ops that compute the same thing (gelu: opset 20's Gelu
 * is too new, so 0.5 x (1 + erf(x / sqrt 2)); rmsnorm and groupnorm from
 * reductions). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onnx_io.h"
#include "ox_export.h"
#include "runtime/program.h"

enum { OX_IR_VERSION = 8 };

const char *oxe_in(oxe *e, const ir_node *n, int k) {
  e->used[n->in[k]] = 1;
  return e->val[n->in[k]];
}

int oxe_fail(oxe *e, const ir_node *n, const char *why) {
  if (n->loc.file)
    snprintf(e->msg, e->msgn, "%s:%d:%d: error: lathe export: %s (%s) %s", n->loc.file, n->loc.line, n->loc.col,
             ir_ops[n->op].name, n->name ? n->name : "unnamed", why);
  else
    snprintf(e->msg, e->msgn, "lathe export: %s (%s) %s", ir_ops[n->op].name, n->name ? n->name : "unnamed", why);
  return -1;
}

const char *oxe_reshape(oxe *e, const char *x, int rank, const int64_t *dims) {
  return oxb_op2(e->b, "Reshape", x, oxb_ints(e->b, rank, dims));
}

const char *oxe_transpose(oxe *e, const char *x, int rank, const int64_t *perm) {
  const char *y = oxb_op1(e->b, "Transpose", x);
  oxb_attr_ints(e->b, oxb_last(e->b), "perm", rank, perm);
  return y;
}

const char *oxe_affine(oxe *e, const char *x, const char *w, const char *bias) {
  const char *y = oxb_op2(e->b, "MatMul", x, w);
  return bias ? oxb_op2(e->b, "Add", y, bias) : y;
}

/* The node's value as bytes of its dtype (constants hold doubles). */
static void *const_bytes(oxb *b, const ir_node *n, size_t *bytes) {
  int64_t numel = ir_numel(&n->shape);
  size_t es = ir_dtype_size(n->dtype);
  unsigned char *out = ar_alloc(&b->A, (size_t)numel * es + 1);
  for (int64_t i = 0; i < numel; i++) {
    double v = n->data ? n->data[i] : n->op == IR_ARANGE ? (double)i : n->attr.f;
    union { float f; int32_t i32; int64_t i64; int8_t i8; uint8_t u8; } u;
    if (n->dtype == IR_F32) u.f = (float)v;
    else if (n->dtype == IR_I32) u.i32 = (int32_t)v;
    else if (n->dtype == IR_I64) u.i64 = (int64_t)v;
    else if (n->dtype == IR_I8) u.i8 = (int8_t)v;
    else u.u8 = n->dtype == IR_BOOL ? v != 0 : (uint8_t)v;
    memcpy(out + (size_t)i * es, &u, es);
  }
  *bytes = (size_t)numel * es;
  return out;
}

static int em_const(oxe *e, const ir_node *n, int id) {
  if (n->dtype == IR_F16 || n->dtype == IR_BF16) return oxe_fail(e, n, "is a 16-bit float constant");
  size_t bytes = 0;
  void *raw = const_bytes(e->b, n, &bytes);
  e->val[id] = oxb_tensor(e->b, NULL, oxb_dtype(n->dtype), n->shape.rank, n->shape.d, raw, bytes, 0);
  return 0;
}

/* ---- elementwise ---- */

/* The ONNX op of the same name and inputs (the table row's op_type). */
static const char *same_op(int op);

static int em_same(oxe *e, const ir_node *n, int id) {
  const char *in[8];
  if (n->nin > 8) return oxe_fail(e, n, "has too many inputs");
  for (int k = 0; k < n->nin; k++) in[k] = oxe_in(e, n, k);
  const char *out[1] = {NULL};
  oxb_node(e->b, same_op(n->op), n->nin, in, 1, out);
  e->val[id] = out[0];
  return 0;
}

static const char *f32(oxe *e, double v) { return oxb_scalar(e->b, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, v); }

static int em_leaky(oxe *e, const ir_node *n, int id) {
  e->val[id] = oxb_op1(e->b, "LeakyRelu", oxe_in(e, n, 0));
  oxb_attr_f(e->b, oxb_last(e->b), "alpha", n->attr.f);
  return 0;
}

/* exact: 0.5 x (1 + erf(x / sqrt 2)); tanh form: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
static int em_gelu(oxe *e, const ir_node *n, int id) {
  oxb *b = e->b;
  const char *x = oxe_in(e, n, 0), *t;
  if (n->attr.approx) {
    const char *x3 = oxb_op2(b, "Mul", oxb_op2(b, "Mul", x, x), x);
    const char *in = oxb_op2(b, "Add", x, oxb_op2(b, "Mul", x3, f32(e, 0.044715)));
    t = oxb_op1(b, "Tanh", oxb_op2(b, "Mul", in, f32(e, 0.7978845608028654) /* sqrt(2 / pi) */));
  } else
    t = oxb_op1(b, "Erf", oxb_op2(b, "Mul", x, f32(e, 0.7071067811865476) /* 1 / sqrt 2 */));
  e->val[id] = oxb_op2(b, "Mul", oxb_op2(b, "Mul", x, f32(e, 0.5)), oxb_op2(b, "Add", t, f32(e, 1.0)));
  return 0;
}

static int em_swish(oxe *e, const ir_node *n, int id) {
  const char *x = oxe_in(e, n, 0);
  e->val[id] = oxb_op2(e->b, "Mul", x, oxb_op1(e->b, "Sigmoid", x));
  return 0;
}

static int em_pow(oxe *e, const ir_node *n, int id) {
  e->val[id] = oxb_op2(e->b, "Pow", oxe_in(e, n, 0), f32(e, n->attr.f));
  return 0;
}

static int em_clamp(oxe *e, const ir_node *n, int id) {
  e->val[id] = oxb_op3(e->b, "Clip", oxe_in(e, n, 0), f32(e, n->attr.f), f32(e, n->attr.f2));
  return 0;
}

static int em_identity(oxe *e, const ir_node *n, int id) { /* dropout: identity in inference */
  e->val[id] = oxb_op1(e->b, "Identity", oxe_in(e, n, 0));
  return 0;
}

static int em_cast(oxe *e, const ir_node *n, int id) {
  e->val[id] = oxb_op1(e->b, "Cast", oxe_in(e, n, 0));
  oxb_attr_i(e->b, oxb_last(e->b), "to", oxb_dtype(n->dtype));
  return 0;
}

static int em_not_equal(oxe *e, const ir_node *n, int id) {
  e->val[id] = oxb_op1(e->b, "Not", oxb_op2(e->b, "Equal", oxe_in(e, n, 0), oxe_in(e, n, 1)));
  return 0;
}

/* ---- contractions ---- */

/* x with its last two axes swapped */
static const char *swap_last(oxe *e, const char *x, int rank) {
  int64_t perm[IR_MAXDIM];
  for (int i = 0; i < rank; i++) perm[i] = i;
  perm[rank - 2] = rank - 1, perm[rank - 1] = rank - 2;
  return oxe_transpose(e, x, rank, perm);
}

static int em_matmul(oxe *e, const ir_node *n, int id) {
  const char *a = oxe_in(e, n, 0), *w = oxe_in(e, n, 1);
  if (n->attr.i & IR_MM_TA) a = swap_last(e, a, e->g->nodes[n->in[0]].shape.rank);
  if (n->attr.i & IR_MM_TB) w = swap_last(e, w, e->g->nodes[n->in[1]].shape.rank);
  e->val[id] = oxb_op2(e->b, "MatMul", a, w);
  return 0;
}

static int em_conv(oxe *e, const ir_node *n, int id) {
  const ir_shape *w = &e->g->nodes[n->in[1]].shape;
  int sp = w->rank - 2; /* spatial axes: 1 or 2 */
  int64_t ks[2] = {w->d[2], sp == 2 ? w->d[3] : 0}, st[2], dil[2], pads[4];
  for (int i = 0; i < sp; i++) {
    st[i] = n->attr.stride > 0 ? n->attr.stride : 1;
    dil[i] = n->attr.n > 0 ? n->attr.n : 1;
    pads[i] = n->attr.pad, pads[sp + i] = n->attr.pad_hi;
  }
  const char *in[3] = {oxe_in(e, n, 0), oxe_in(e, n, 1), n->nin > 2 ? oxe_in(e, n, 2) : NULL}, *out[1] = {NULL};
  Onnx__NodeProto *c = oxb_node(e->b, "Conv", n->nin, in, 1, out);
  oxb_attr_ints(e->b, c, "kernel_shape", sp, ks);
  oxb_attr_ints(e->b, c, "strides", sp, st);
  oxb_attr_ints(e->b, c, "dilations", sp, dil);
  oxb_attr_ints(e->b, c, "pads", 2 * sp, pads);
  oxb_attr_i(e->b, c, "group", n->attr.k > 1 ? n->attr.k : 1);
  e->val[id] = out[0];
  return 0;
}

/* ---- reductions and normalisations ---- */

static int em_softmax(oxe *e, const ir_node *n, int id) {
  e->val[id] = oxb_op1(e->b, n->op == IR_SOFTMAX ? "Softmax" : "LogSoftmax", oxe_in(e, n, 0));
  oxb_attr_i(e->b, oxb_last(e->b), "axis", n->attr.axis);
  return 0;
}

/* sum/mean/max/min over one axis or all (axis -1). Opset 13 moved
 * ReduceSum's axes into an input; the others keep the attribute until 18. */
static int em_reduce(oxe *e, const ir_node *n, int id) {
  static const struct { int op; const char *onnx; } R[] = {
    {IR_SUM, "ReduceSum"}, {IR_MEAN, "ReduceMean"}, {IR_MAX, "ReduceMax"}, {IR_MIN, "ReduceMin"}};
  const char *onnx = NULL;
  for (size_t i = 0; i < sizeof R / sizeof *R; i++)
    if (R[i].op == n->op) onnx = R[i].onnx;
  int all = n->attr.axis < 0;
  const char *x = oxe_in(e, n, 0);
  if (n->op == IR_SUM)
    e->val[id] = all ? oxb_op1(e->b, onnx, x) : oxb_op2(e->b, onnx, x, oxb_ints(e->b, 1, &n->attr.axis));
  else {
    e->val[id] = oxb_op1(e->b, onnx, x);
    if (!all) oxb_attr_ints(e->b, oxb_last(e->b), "axes", 1, &n->attr.axis);
  }
  oxb_attr_i(e->b, oxb_last(e->b), "keepdims", n->attr.keepdims ? 1 : 0);
  return 0;
}

/* argmax/argmin: ONNX's are int64 over one axis (the first extreme, as
 * Lathe's); axis -1 (all) is the flat index, so over the flattened input. */
static int em_argext(oxe *e, const ir_node *n, int id) {
  const char *x = oxe_in(e, n, 0);
  int64_t axis = n->attr.axis, flat = -1;
  if (axis < 0) x = oxe_reshape(e, x, 1, &flat), axis = 0;
  const char *r = oxb_op1(e->b, n->op == IR_ARGMAX ? "ArgMax" : "ArgMin", x);
  oxb_attr_i(e->b, oxb_last(e->b), "axis", axis);
  oxb_attr_i(e->b, oxb_last(e->b), "keepdims", n->attr.keepdims ? 1 : 0);
  if (n->attr.axis < 0) r = oxe_reshape(e, r, n->shape.rank, n->shape.d);
  e->val[id] = oxb_op1(e->b, "Cast", r);
  oxb_attr_i(e->b, oxb_last(e->b), "to", oxb_dtype(n->dtype));
  return 0;
}

static int em_cumsum(oxe *e, const ir_node *n, int id) {
  e->val[id] = oxb_op2(e->b, "CumSum", oxe_in(e, n, 0), oxb_scalar(e->b, ONNX__TENSOR_PROTO__DATA_TYPE__INT64,
                                                                   (double)n->attr.axis));
  if (n->attr.i == 1) oxb_attr_i(e->b, oxb_last(e->b), "reverse", 1);
  return 0;
}

static int em_layernorm(oxe *e, const ir_node *n, int id) {
  e->val[id] = oxb_op3(e->b, "LayerNormalization", oxe_in(e, n, 0), oxe_in(e, n, 1), oxe_in(e, n, 2));
  oxb_attr_i(e->b, oxb_last(e->b), "axis", -1);
  oxb_attr_f(e->b, oxb_last(e->b), "epsilon", n->attr.f);
  return 0;
}

static int em_batchnorm(oxe *e, const ir_node *n, int id) {
  const char *in[5], *out[1] = {NULL};
  for (int k = 0; k < 5; k++) in[k] = oxe_in(e, n, k);
  Onnx__NodeProto *bn = oxb_node(e->b, "BatchNormalization", 5, in, 1, out);
  oxb_attr_f(e->b, bn, "epsilon", n->attr.f);
  e->val[id] = out[0];
  return 0;
}

/* x / sqrt(mean(x^2 over the last axis) + eps) * w */
static int em_rmsnorm(oxe *e, const ir_node *n, int id) {
  oxb *b = e->b;
  const char *x = oxe_in(e, n, 0);
  int64_t last = -1;
  const char *ms = oxb_op1(b, "ReduceMean", oxb_op2(b, "Mul", x, x));
  oxb_attr_ints(b, oxb_last(b), "axes", 1, &last);
  oxb_attr_i(b, oxb_last(b), "keepdims", 1);
  const char *r = oxb_op1(b, "Sqrt", oxb_op2(b, "Add", ms, f32(e, n->attr.f)));
  e->val[id] = oxb_op2(b, "Mul", oxb_op2(b, "Div", x, r), oxe_in(e, n, 1));
  return 0;
}

/* x [N, C, ...] as [N, G, rest]: normalised over rest (biased variance),
 * back to x's shape, then per channel w and b. */
static int em_groupnorm(oxe *e, const ir_node *n, int id) {
  oxb *b = e->b;
  const ir_shape *s = &n->shape;
  int64_t grouped[3] = {s->d[0], n->attr.k, -1}, two = 2, chan[IR_MAXDIM];
  const char *x = oxe_reshape(e, oxe_in(e, n, 0), 3, grouped);
  const char *m = oxb_op1(b, "ReduceMean", x);
  oxb_attr_ints(b, oxb_last(b), "axes", 1, &two);
  const char *d = oxb_op2(b, "Sub", x, m);
  const char *v = oxb_op1(b, "ReduceMean", oxb_op2(b, "Mul", d, d));
  oxb_attr_ints(b, oxb_last(b), "axes", 1, &two);
  const char *y = oxb_op2(b, "Div", d, oxb_op1(b, "Sqrt", oxb_op2(b, "Add", v, f32(e, n->attr.f))));
  y = oxe_reshape(e, y, s->rank, s->d);
  chan[0] = s->d[1];
  for (int i = 1; i < s->rank - 1; i++) chan[i] = 1;
  const char *w = oxe_reshape(e, oxe_in(e, n, 1), s->rank - 1, chan), *bias = oxe_reshape(e, oxe_in(e, n, 2), s->rank - 1, chan);
  e->val[id] = oxb_op2(b, "Add", oxb_op2(b, "Mul", y, w), bias);
  return 0;
}

static int em_pool(oxe *e, const ir_node *n, int id) {
  int sp = n->shape.rank - 2;
  int64_t k[2] = {n->attr.k, n->attr.k}, st[2] = {n->attr.stride, n->attr.stride};
  e->val[id] = oxb_op1(e->b, n->op == IR_MAXPOOL2D ? "MaxPool" : "AveragePool", oxe_in(e, n, 0));
  oxb_attr_ints(e->b, oxb_last(e->b), "kernel_shape", sp, k);
  oxb_attr_ints(e->b, oxb_last(e->b), "strides", sp, st);
  return 0;
}

/* ---- data movement ---- */

static int em_reshape(oxe *e, const ir_node *n, int id) {
  e->val[id] = oxe_reshape(e, oxe_in(e, n, 0), n->shape.rank, n->shape.d);
  return 0;
}

static int em_transpose(oxe *e, const ir_node *n, int id) {
  e->val[id] = oxe_transpose(e, oxe_in(e, n, 0), n->attr.nlist, n->attr.list);
  return 0;
}

static int em_concat(oxe *e, const ir_node *n, int id) {
  const char **in = ar_alloc(&e->b->A, (size_t)n->nin * sizeof *in), *out[1] = {NULL};
  for (int k = 0; k < n->nin; k++) in[k] = oxe_in(e, n, k);
  oxb_attr_i(e->b, oxb_node(e->b, "Concat", n->nin, in, 1, out), "axis", n->attr.axis);
  e->val[id] = out[0];
  return 0;
}

static int em_slice(oxe *e, const ir_node *n, int id) {
  const char *in[4] = {oxe_in(e, n, 0), oxb_ints(e->b, 1, &n->attr.start), oxb_ints(e->b, 1, &n->attr.end),
                       oxb_ints(e->b, 1, &n->attr.axis)}, *out[1] = {NULL};
  oxb_node(e->b, "Slice", 4, in, 1, out);
  e->val[id] = out[0];
  return 0;
}

static int em_embedding(oxe *e, const ir_node *n, int id) {
  e->val[id] = oxb_op2(e->b, "Gather", oxe_in(e, n, 1), oxe_in(e, n, 0));
  oxb_attr_i(e->b, oxb_last(e->b), "axis", 0);
  return 0;
}

/* ids as int64 (ONNX Runtime's OneHot kernels), values [0, 1] as f32 */
static int em_one_hot(oxe *e, const ir_node *n, int id) {
  const char *ids = oxb_op1(e->b, "Cast", oxe_in(e, n, 0));
  oxb_attr_i(e->b, oxb_last(e->b), "to", ONNX__TENSOR_PROTO__DATA_TYPE__INT64);
  float v[2] = {0.0f, 1.0f};
  int64_t two = 2;
  e->val[id] = oxb_op3(e->b, "OneHot", ids, oxb_scalar(e->b, ONNX__TENSOR_PROTO__DATA_TYPE__INT64, (double)n->attr.n),
                       oxb_floats(e->b, 1, &two, v));
  oxb_attr_i(e->b, oxb_last(e->b), "axis", -1);
  return 0;
}

static int em_gather(oxe *e, const ir_node *n, int id) {
  e->val[id] = oxb_op2(e->b, "GatherElements", oxe_in(e, n, 0), oxe_in(e, n, 1));
  oxb_attr_i(e->b, oxb_last(e->b), "axis", n->attr.axis);
  return 0;
}

/* ---- the table ---- */

static const struct {
  int op;
  const char *onnx; /* em_same's op_type */
  oxe_fn fn;
} OPS[] = {
  {IR_CONST, NULL, em_const}, {IR_ARANGE, NULL, em_const},
  {IR_RELU, "Relu", em_same}, {IR_SIGMOID, "Sigmoid", em_same}, {IR_TANH, "Tanh", em_same},
  {IR_EXP, "Exp", em_same}, {IR_LOG, "Log", em_same}, {IR_SQRT, "Sqrt", em_same}, {IR_ABS, "Abs", em_same},
  {IR_NEG, "Neg", em_same}, {IR_LEAKY_RELU, NULL, em_leaky}, {IR_GELU, NULL, em_gelu},
  {IR_SWISH, NULL, em_swish}, {IR_POW, NULL, em_pow}, {IR_CLAMP, NULL, em_clamp},
  {IR_DROPOUT, NULL, em_identity}, {IR_CAST, NULL, em_cast},
  {IR_ADD, "Add", em_same}, {IR_SUB, "Sub", em_same}, {IR_MUL, "Mul", em_same}, {IR_DIV, "Div", em_same},
  {IR_LESS, "Less", em_same}, {IR_LESS_EQUAL, "LessOrEqual", em_same}, {IR_GREATER, "Greater", em_same},
  {IR_GREATER_EQUAL, "GreaterOrEqual", em_same}, {IR_EQUAL, "Equal", em_same},
  {IR_NOT_EQUAL, NULL, em_not_equal}, {IR_WHERE, "Where", em_same}, {IR_MINIMUM, "Min", em_same},
  {IR_MATMUL, NULL, em_matmul}, {IR_CONV2D, NULL, em_conv},
  {IR_SOFTMAX, NULL, em_softmax}, {IR_LOG_SOFTMAX, NULL, em_softmax},
  {IR_SUM, NULL, em_reduce}, {IR_MEAN, NULL, em_reduce}, {IR_MAX, NULL, em_reduce}, {IR_MIN, NULL, em_reduce},
  {IR_ARGMAX, NULL, em_argext}, {IR_ARGMIN, NULL, em_argext}, {IR_CUMSUM, NULL, em_cumsum},
  {IR_LAYERNORM, NULL, em_layernorm}, {IR_BATCHNORM, NULL, em_batchnorm}, {IR_RMSNORM, NULL, em_rmsnorm},
  {IR_GROUPNORM, NULL, em_groupnorm}, {IR_MAXPOOL2D, NULL, em_pool}, {IR_AVGPOOL2D, NULL, em_pool},
  {IR_RESHAPE, NULL, em_reshape}, {IR_TRANSPOSE, NULL, em_transpose}, {IR_CONCAT, NULL, em_concat},
  {IR_SLICE, NULL, em_slice}, {IR_EMBEDDING, NULL, em_embedding}, {IR_ONE_HOT, NULL, em_one_hot},
  {IR_GATHER, NULL, em_gather},
  {IR_ATTENTION, NULL, oxe_attention}, {IR_MHA, NULL, oxe_mha},
  {IR_RNN, NULL, oxe_rnn}, {IR_LSTM, NULL, oxe_rnn}, {IR_GRU, NULL, oxe_rnn},
};

static int row_of(int op) {
  for (size_t i = 0; i < sizeof OPS / sizeof *OPS; i++)
    if (OPS[i].op == op) return (int)i;
  return -1;
}

static const char *same_op(int op) { return OPS[row_of(op)].onnx; }

/* ---- inputs, weights, outputs ---- */

static Onnx__ValueInfoProto *value_info(oxb *b, const char *name, ir_dtype t, const ir_shape *s) {
  Onnx__ValueInfoProto *v = ar_alloc(&b->A, sizeof *v);
  Onnx__TypeProto *tp = ar_alloc(&b->A, sizeof *tp);
  Onnx__TypeProto__Tensor *tt = ar_alloc(&b->A, sizeof *tt);
  Onnx__TensorShapeProto *sh = ar_alloc(&b->A, sizeof *sh);
  onnx__value_info_proto__init(v);
  onnx__type_proto__init(tp);
  onnx__type_proto__tensor__init(tt);
  onnx__tensor_shape_proto__init(sh);
  sh->n_dim = (size_t)s->rank;
  sh->dim = ar_alloc(&b->A, (size_t)(s->rank ? s->rank : 1) * sizeof *sh->dim);
  for (int i = 0; i < s->rank; i++) {
    Onnx__TensorShapeProto__Dimension *d = ar_alloc(&b->A, sizeof *d);
    onnx__tensor_shape_proto__dimension__init(d);
    d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
    d->dim_value = s->d[i];
    sh->dim[i] = d;
  }
  tt->has_elem_type = 1, tt->elem_type = oxb_dtype(t);
  tt->shape = sh;
  tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
  tp->tensor_type = tt;
  v->name = ar_strdup(&b->A, name);
  v->type = tp;
  return v;
}

/* The input's value: the raw features, normalised as the weights say. */
static const char *input_value(oxe *e, const ir_input *in) {
  lathe_preprocess pp;
  if (!lathe_input_preprocess(e->p, in->name, &pp) || pp.kind == LATHE_NORM_NONE) return in->name;
  /* shift and scale per example value: shaped as one example */
  const char *shift = oxb_floats(e->b, in->shape.rank - 1, in->shape.d + 1, pp.shift);
  const char *scale = oxb_floats(e->b, in->shape.rank - 1, in->shape.d + 1, pp.scale);
  return oxb_op2(e->b, "Mul", oxb_op2(e->b, "Sub", in->name, shift), scale);
}

/* A weight as an initializer of its own name, pointing at the program's copy. */
static int param_value(oxe *e, const ir_node *n) {
  const ir_param *pr = &e->g->params[n->attr.i];
  if (pr->stored) return oxe_fail(e, n, "holds quantized weights: export the f32 weights (before lathe quantize)");
  oxb_tensor(e->b, pr->name, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, pr->shape.rank, pr->shape.d,
             e->p->params[n->attr.i], (size_t)ir_numel(&pr->shape) * sizeof(float), 0);
  return 0;
}

/* Mark what the outputs read (node ids are a topological order). */
static char *needed(const ir_graph *g) {
  char *need = calloc((size_t)g->nnodes + 1, 1);
  if (!need) return NULL;
  for (int o = 0; o < g->noutputs; o++) need[g->outputs[o].node] = 1;
  for (int id = g->nnodes - 1; id >= 0; id--)
    if (need[id])
      for (int k = 0; k < g->nodes[id].nin; k++) need[g->nodes[id].in[k]] = 1;
  return need;
}

static int build_graph(oxe *e, Onnx__GraphProto *gp, const char *need) {
  const ir_graph *g = e->g;
  oxb *b = e->b;
  Onnx__ValueInfoProto **ins = ar_alloc(&b->A, (size_t)(g->ninputs + 1) * sizeof *ins);
  Onnx__ValueInfoProto **outs = ar_alloc(&b->A, (size_t)(g->noutputs + 1) * sizeof *outs);
  for (int id = 0; id < g->nnodes; id++) {
    const ir_node *n = &g->nodes[id];
    if (!need[id]) continue;
    if (n->op == IR_INPUT) {
      const ir_input *in = &g->inputs[n->attr.i];
      ins[gp->n_input++] = value_info(b, in->name, in->dtype, &in->shape);
      e->val[id] = input_value(e, in);
      continue;
    }
    if (n->op == IR_PARAM) { /* written below if some node reads it by name (rnn weights go reordered) */
      e->val[id] = g->params[n->attr.i].name;
      continue;
    }
    int r = row_of(n->op);
    if (r < 0) return oxe_fail(e, n, ir_ops[n->op].cat == IR_CAT_LOSS ? "is a loss: only the forward outputs export"
                                                                      : "has no ONNX form in lathe export");
    if (OPS[r].fn(e, n, id)) return -1;
  }
  for (int o = 0; o < g->noutputs; o++) {
    const ir_output *out = &g->outputs[o];
    const ir_node *n = &g->nodes[out->node];
    const char *src = e->val[out->node], *dst[1] = {ar_strdup(&b->A, out->name)};
    e->used[out->node] = 1;
    oxb_node(b, "Identity", 1, &src, 1, dst);
    outs[gp->n_output++] = value_info(b, out->name, n->dtype, &n->shape);
  }
  for (int id = 0; id < g->nnodes; id++)
    if (g->nodes[id].op == IR_PARAM && e->used[id] && param_value(e, &g->nodes[id])) return -1;
  gp->input = ins, gp->output = outs;
  gp->n_node = b->nnode, gp->node = b->node;
  gp->n_initializer = b->ninit, gp->initializer = b->init;
  return 0;
}

/* A built model: the builder's arena holds every part but these. */
typedef struct {
  oxb b;
  oxe e;
  char *need;
  Onnx__GraphProto gp;
  Onnx__OperatorSetIdProto opset, *opsets[1];
  Onnx__ModelProto m;
} built;

static int build(built *t, const lathe_program *p, char *msg, size_t msgn) {
  const ir_graph *g = &p->g;
  memset(t, 0, sizeof *t);
  oxb_init(&t->b);
  if (!p->weights_set || !p->params) return snprintf(msg, msgn, "lathe export: the program has no weights"), -1;
  t->e = (oxe){&t->b, p, g, calloc((size_t)g->nnodes + 1, sizeof(char *)), calloc((size_t)g->nnodes + 1, 1), msg, msgn};
  t->need = needed(g);
  if (!t->e.val || !t->e.used || !t->need) return snprintf(msg, msgn, "lathe export: out of memory"), -1;
  onnx__graph_proto__init(&t->gp);
  onnx__operator_set_id_proto__init(&t->opset);
  onnx__model_proto__init(&t->m);
  t->gp.name = (char *)g->model_name;
  t->opset.domain = "";
  t->opset.has_version = 1, t->opset.version = OX_EXPORT_OPSET;
  t->opsets[0] = &t->opset;
  t->m.has_ir_version = 1, t->m.ir_version = OX_IR_VERSION;
  t->m.n_opset_import = 1, t->m.opset_import = t->opsets;
  t->m.producer_name = "lathe";
  t->m.producer_version = LATHE_VERSION;
  t->m.graph = &t->gp;
  return build_graph(&t->e, &t->gp, t->need);
}

static void built_free(built *t) {
  free(t->need);
  free(t->e.val);
  free(t->e.used);
  oxb_free(&t->b);
}

int ox_export(const lathe_program *p, const char *path, char *msg, size_t msgn) {
  built t;
  int rc = build(&t, p, msg, msgn);
  if (!rc) rc = ox_model_write(path, &t.m, msg, msgn);
  built_free(&t);
  return rc;
}

int ox_export_dyn(const lathe_program *p1, const lathe_program *p2, const char *dim, int64_t v1, int64_t v2,
                  const char *path, char *msg, size_t msgn) {
  built a, b;
  int rc = build(&a, p1, msg, msgn);
  int rc2 = build(&b, p2, msg, msgn);
  if (!rc && !rc2) rc = oxs_symbolize(&a.b, &a.gp, &b.gp, dim, v1, v2, msg, msgn);
  if (!rc && !rc2) rc = ox_model_write(path, &a.m, msg, msgn);
  built_free(&a);
  built_free(&b);
  return rc || rc2 ? -1 : 0;
}
