/* ox_export_seq.c -- the sequence layers as ONNX (ox_export.h).
 *
 * attention and mha are written out as the products, softmax and reshapes
 * they are (opset 17 has no attention op): per head, q k^T / sqrt(hd), the
 * mask as a Where to -inf before the softmax (and to 0 after it, so a row
 * whose keys are all masked gets a zero context as Lathe gives it, not
 * NaN), then the context through the output projection. rnn, lstm and gru
 * become ONNX's RNN, LSTM and GRU nodes: the weights are transposed and
 * their gate blocks put in ONNX's order when the file is written. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ox_export.h"
#include "runtime/program.h"

static const char *f32(oxe *e, double v) { return oxb_scalar(e->b, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, v); }

/* [B, T, nh * hd] -> [B, nh, T, hd]; with kt the keys' layout [B, nh, hd, T] */
static const char *heads(oxe *e, const char *x, int64_t B, int64_t T, int64_t nh, int64_t hd, int kt) {
  int64_t dims[4] = {B, T, nh, hd}, perm[4] = {0, 2, 1, 3}, permk[4] = {0, 2, 3, 1};
  return oxe_transpose(e, oxe_reshape(e, x, 4, dims), 4, kt ? permk : perm);
}

/* Split x's last axis (of 2 or 3 equal parts of w) into outs. */
static void split_last(oxe *e, const char *x, int parts, int64_t w, const char **outs) {
  int64_t sizes[3] = {w, w, w};
  const char *in[2] = {x, oxb_ints(e->b, parts, sizes)};
  for (int i = 0; i < parts; i++) outs[i] = NULL;
  oxb_attr_i(e->b, oxb_node(e->b, "Split", 2, in, parts, outs), "axis", 2);
}

/* softmax(s, masked where allowed is false) @ v, heads merged back: [B, T, H hd] */
static const char *attend(oxe *e, const char *q, const char *kt, const char *v, const char *allowed, int zero_rows,
                          int64_t B, int64_t T, int64_t d, int64_t hd) {
  oxb *b = e->b;
  const char *s = oxb_op2(b, "Mul", oxb_op2(b, "MatMul", q, kt), f32(e, 1.0 / sqrt((double)hd)));
  if (allowed) s = oxb_op3(b, "Where", allowed, s, f32(e, -INFINITY));
  const char *p = oxb_op1(b, "Softmax", s);
  oxb_attr_i(b, oxb_last(b), "axis", -1);
  if (allowed && zero_rows) p = oxb_op3(b, "Where", allowed, p, f32(e, 0.0));
  int64_t perm[4] = {0, 2, 1, 3}, merged[3] = {B, T, d};
  return oxe_reshape(e, oxe_transpose(e, oxb_op2(b, "MatMul", p, v), 4, perm), 3, merged);
}

/* bool [Tq, Tk]: key j visible from query i when j <= i */
static const char *causal_mask(oxe *e, int64_t Tq, int64_t Tk) {
  unsigned char *m = ar_alloc(&e->b->A, (size_t)(Tq * Tk) + 1);
  for (int64_t i = 0; i < Tq; i++)
    for (int64_t j = 0; j < Tk; j++) m[i * Tk + j] = j <= i;
  int64_t dims[2] = {Tq, Tk};
  return oxb_tensor(e->b, NULL, ONNX__TENSOR_PROTO__DATA_TYPE__BOOL, 2, dims, m, (size_t)(Tq * Tk), 0);
}

int oxe_attention(oxe *e, const ir_node *n, int id) {
  const ir_shape *s = &n->shape;
  int64_t B = s->d[0], T = s->d[1], d = s->d[2], H = n->attr.heads, hd = d / H;
  const char *qkv = oxe_affine(e, oxe_in(e, n, 0), oxe_in(e, n, 1), oxe_in(e, n, 2)), *part[3];
  split_last(e, qkv, 3, d, part);
  const char *ctx = attend(e, heads(e, part[0], B, T, H, hd, 0), heads(e, part[1], B, T, H, hd, 1),
                           heads(e, part[2], B, T, H, hd, 0), n->attr.causal ? causal_mask(e, T, T) : NULL, 0, B, T,
                           d, hd);
  e->val[id] = oxe_affine(e, ctx, oxe_in(e, n, 3), oxe_in(e, n, 4));
  return 0;
}

/* Rotary embeddings of x [B, nh, T, hd]: x cos + rot(x) sin, rot(x) =
 * [-x2, x1] for the halves x1, x2, angle r theta_e at row r (as
 * ir/interp_mha.c rotates the pairs (e, e + hd/2)). */
static const char *rope(oxe *e, const char *x, int64_t T, int64_t hd) {
  oxb *b = e->b;
  int64_t half = hd / 2, dims[2] = {T, hd}, halves[2] = {half, half}, three = 3;
  float *cs = ar_alloc(&b->A, (size_t)(T * hd) * sizeof *cs), *sn = ar_alloc(&b->A, (size_t)(T * hd) * sizeof *sn);
  for (int64_t r = 0; r < T; r++)
    for (int64_t c = 0; c < hd; c++) {
      double th = (double)r * pow(10000.0, -2.0 * (double)(c % half) / (double)hd);
      cs[r * hd + c] = (float)cos(th), sn[r * hd + c] = (float)sin(th);
    }
  const char *in[2] = {x, oxb_ints(b, 2, halves)}, *h[2] = {NULL, NULL};
  oxb_attr_i(b, oxb_node(b, "Split", 2, in, 2, h), "axis", three);
  const char *cat[2] = {oxb_op1(b, "Neg", h[1]), h[0]}, *rot[1] = {NULL};
  oxb_attr_i(b, oxb_node(b, "Concat", 2, cat, 1, rot), "axis", three);
  return oxb_op2(b, "Add", oxb_op2(b, "Mul", x, oxb_floats(b, 2, dims, cs)),
                 oxb_op2(b, "Mul", rot[0], oxb_floats(b, 2, dims, sn)));
}

/* [B, K, T, hd] with each key/value head repeated G times: [B, K G, T, hd] */
static const char *repeat_heads(oxe *e, const char *x, int64_t B, int64_t K, int64_t G, int64_t T, int64_t hd) {
  int64_t five[5] = {B, K, 1, T, hd}, wide[5] = {B, K, G, T, hd}, four[4] = {B, K * G, T, hd};
  const char *x5 = oxe_reshape(e, x, 5, five);
  return oxe_reshape(e, oxb_op2(e->b, "Expand", x5, oxb_ints(e->b, 5, wide)), 4, four);
}

/* The mask input as bool broadcastable to [B, H, Tq, Tk]: lengths i32[B]
 * (key j < length), bool[B, Tk] or bool[B, Tq, Tk]. */
static const char *mha_mask(oxe *e, const ir_node *n, int64_t B, int64_t Tq, int64_t Tk) {
  const ir_node *m = &e->g->nodes[n->in[8]];
  const char *mv = oxe_in(e, n, 8);
  if (m->shape.rank == 1) {
    int32_t *pos = ar_alloc(&e->b->A, (size_t)Tk * sizeof *pos);
    for (int64_t j = 0; j < Tk; j++) pos[j] = (int32_t)j;
    int64_t row[2] = {1, Tk}, col[2] = {B, 1}, out[4] = {B, 1, 1, Tk};
    const char *p = oxb_tensor(e->b, NULL, oxb_dtype(IR_I32), 2, row, pos, (size_t)Tk * sizeof *pos, 0);
    const char *len = oxe_reshape(e, mv, 2, col);
    if (m->dtype != IR_I32) {
      len = oxb_op1(e->b, "Cast", len);
      oxb_attr_i(e->b, oxb_last(e->b), "to", oxb_dtype(IR_I32));
    }
    return oxe_reshape(e, oxb_op2(e->b, "Less", p, len), 4, out);
  }
  int64_t out[4] = {B, 1, m->shape.rank == 2 ? 1 : Tq, Tk};
  return oxe_reshape(e, mv, 4, out);
}

int oxe_mha(oxe *e, const ir_node *n, int id) {
  const ir_shape *sx = &e->g->nodes[n->in[0]].shape, *sc = &e->g->nodes[n->in[3]].shape;
  int64_t B = sx->d[0], Tq = sx->d[1], Tk = sc->d[1], H = n->attr.heads, K = n->attr.k ? n->attr.k : H;
  int64_t d = e->g->nodes[n->in[1]].shape.d[1]; /* the inner width (wq's columns): the context's */
  int64_t hd = d / H, dk = K * hd;
  const char *q = heads(e, oxe_affine(e, oxe_in(e, n, 0), oxe_in(e, n, 1), oxe_in(e, n, 2)), B, Tq, H, hd, 0);
  const char *kv = oxe_affine(e, oxe_in(e, n, 3), oxe_in(e, n, 4), oxe_in(e, n, 5)), *part[2];
  split_last(e, kv, 2, dk, part);
  const char *k = heads(e, part[0], B, Tk, K, hd, 0), *v = heads(e, part[1], B, Tk, K, hd, 0);
  if (n->attr.i) q = rope(e, q, Tq, hd), k = rope(e, k, Tk, hd);
  if (K != H) k = repeat_heads(e, k, B, K, H / K, Tk, hd), v = repeat_heads(e, v, B, K, H / K, Tk, hd);
  int64_t kperm[4] = {0, 1, 3, 2};
  const char *allowed = n->attr.causal ? causal_mask(e, Tq, Tk) : NULL;
  int masked = n->nin == 9;
  if (masked) {
    const char *m = mha_mask(e, n, B, Tq, Tk);
    allowed = allowed ? oxb_op2(e->b, "And", allowed, m) : m;
  }
  const char *ctx = attend(e, q, oxe_transpose(e, k, 4, kperm), v, allowed, masked, B, Tq, d, hd);
  e->val[id] = oxe_affine(e, ctx, oxe_in(e, n, 6), oxe_in(e, n, 7));
  return 0;
}

/* ---- rnn, lstm, gru ---- */

/* ONNX's gate order as Lathe's gate indices: LSTM i o f c from Lathe's
 * i f g o; GRU z r h from Lathe's r z n; RNN one gate. */
static const struct { int op, gates; const char *onnx; int order[4]; } RNNS[] = {
  {IR_RNN, 1, "RNN", {0}}, {IR_LSTM, 4, "LSTM", {0, 3, 1, 2}}, {IR_GRU, 3, "GRU", {1, 0, 2}}};

/* w [in, G h] (Lathe: x @ w) as ONNX's [1, G h, in], gate blocks reordered */
static const char *gate_weights(oxe *e, const ir_node *n, int k, int G, const int *order, int64_t h) {
  const ir_param *pr = &e->g->params[e->g->nodes[n->in[k]].attr.i];
  const float *w = e->p->params[e->g->nodes[n->in[k]].attr.i];
  int64_t in = pr->shape.d[0], dims[3] = {1, G * h, in};
  float *t = ar_alloc(&e->b->A, (size_t)(G * h * in) * sizeof *t);
  for (int g = 0; g < G; g++)
    for (int64_t j = 0; j < h; j++)
      for (int64_t i = 0; i < in; i++) t[(g * h + j) * in + i] = w[i * G * h + order[g] * h + j];
  return oxb_tensor(e->b, ar_printf(&e->b->A, "%s.onnx", pr->name), ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, 3, dims, t,
                    (size_t)(G * h * in) * sizeof *t, 0);
}

/* ONNX's B [1, 2 G h]: the input biases then the recurrent ones (bih, then bhh or zeros) */
static const char *gate_biases(oxe *e, const ir_node *n, int kih, int khh, int G, const int *order, int64_t h) {
  float *t = ar_alloc(&e->b->A, (size_t)(2 * G * h) * sizeof *t);
  const float *src[2] = {e->p->params[e->g->nodes[n->in[kih]].attr.i],
                         khh >= 0 ? e->p->params[e->g->nodes[n->in[khh]].attr.i] : NULL};
  for (int s = 0; s < 2; s++)
    for (int g = 0; g < G; g++)
      for (int64_t j = 0; j < h; j++) t[(s * G + g) * h + j] = src[s] ? src[s][order[g] * h + j] : 0.0f;
  int64_t dims[2] = {1, 2 * G * h};
  return oxb_floats(e->b, 2, dims, t);
}

int oxe_rnn(oxe *e, const ir_node *n, int id) {
  size_t r = 0;
  while (RNNS[r].op != n->op) r++;
  int G = RNNS[r].gates;
  for (int k = 1; k < n->nin; k++)
    if (e->g->nodes[n->in[k]].op != IR_PARAM)
      return oxe_fail(e, n, "reads weights that are not parameters (computed weights have no ONNX form here)");
  int64_t h = n->shape.d[2], tb[3] = {1, 0, 2};
  const char *in[4] = {oxe_transpose(e, oxe_in(e, n, 0), 3, tb), gate_weights(e, n, 1, G, RNNS[r].order, h),
                       gate_weights(e, n, 2, G, RNNS[r].order, h),
                       gate_biases(e, n, 3, n->op == IR_GRU ? 4 : -1, G, RNNS[r].order, h)};
  const char *out[1] = {NULL};
  Onnx__NodeProto *node = oxb_node(e->b, RNNS[r].onnx, 4, in, 1, out);
  oxb_attr_i(e->b, node, "hidden_size", h);
  if (n->op == IR_GRU) oxb_attr_i(e->b, node, "linear_before_reset", 1); /* PyTorch's (and Lathe's) n gate */
  int64_t one = 1;
  /* Y [T, 1, B, h] -> [B, T, h] */
  e->val[id] = oxe_transpose(e, oxb_op2(e->b, "Squeeze", out[0], oxb_ints(e->b, 1, &one)), 3, tb);
  return 0;
}
