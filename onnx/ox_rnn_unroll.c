/* ox_rnn_unroll.c -- ONNX LSTM / GRU / RNN nodes that the language's fused
 * recurrent layers cannot express (non-zero initial states, LSTM
 * peepholes, the Y_c output, GRU's linear_before_reset = 0) written out
 * step by step in primitive ops.
 *
 * The language's lstm/gru/rnn start from zero states and have no peepholes
 * (docs/language.md), so such a node becomes, per direction, one matmul for
 * the input projections of every step and then per step a matmul by the
 * recurrent weights and the cell in elementwise ops, in ONNX's own gate
 * order (i o f c, z r h) with ONNX's weights transposed to [in, G h]. Exact
 * to float rounding; slower than the fused layer (T small matmuls), so the
 * importer uses it only where the fused layer does not apply. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ox_impl.h"

typedef const Onnx__NodeProto node;

enum { UNROLL_MAX_T = 1024 };

typedef struct {
  int kind;          /* 0 lstm, 1 gru, 2 rnn */
  int lbr;           /* gru: linear_before_reset (PyTorch's: 1) */
  int G, layout, rev;
  int64_t H, T;
  const char *L;     /* the layer's name */
  const char *xw;    /* [B, T, G h]: every step's input projection */
  const char *rw, *rb, *p; /* recurrent weights [h, G h], bias [G h], peepholes [3h] (NULL: none) */
  const char *h0, *c0;     /* initial states [B, h] (NULL: zero) */
} unroll;

/* A fresh binding named after the layer ("lstm_h"), so the step-by-step
 * names never take a graph output's name ("y") before its node comes. */
static const char *fresh(ox_ctx *c, const char *L, const char *what) {
  char b[400];
  snprintf(b, sizeof b, "%s_%s", L, what);
  return ox_fresh(c, b);
}

/* Direction d's [rows, cols] matrix of the 3-d ONNX weight `a` as a [cols, rows] parameter. */
static const char *weight_t(ox_ctx *c, const char *L, const char *what, const ox_array *a, int d, int64_t rows,
                            int64_t cols) {
  ox_array o = {0};
  ox_array_alloc(&o, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, rows * cols);
  for (int64_t r = 0; r < rows; r++) /* ONNX [G h, in] -> [in, G h] */
    for (int64_t k = 0; k < cols; k++) o.f[k * rows + r] = (float)ox_get_f(a, (int64_t)d * rows * cols + r * cols + k);
  char nm[400], sh[80];
  snprintf(nm, sizeof nm, "%s.%s", L, what);
  int64_t dims[2] = {cols, rows};
  const char *pn = ox_add_param(c, nm, &o, dims, 2, 0);
  ox_array_free(&o);
  const char *v = fresh(c, L, what);
  ox_emit(c, "%s = param(%s, init=\"zeros\", name=\"%s\")", v, ox_shape_list(dims, 2, sh, sizeof sh), pn);
  return v;
}

/* A [n] parameter: elements off..off+n of `a` (zeros when a is NULL). */
static const char *vec(ox_ctx *c, const char *L, const char *what, const ox_array *a, int64_t off, int64_t n) {
  ox_array o = {0};
  ox_array_alloc(&o, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, n);
  for (int64_t i = 0; a && i < n; i++) o.f[i] = (float)ox_get_f(a, off + i);
  char nm[400], sh[40];
  snprintf(nm, sizeof nm, "%s.%s", L, what);
  const char *pn = ox_add_param(c, nm, &o, &n, 1, 0);
  ox_array_free(&o);
  const char *v = fresh(c, L, what);
  ox_emit(c, "%s = param(%s, init=\"zeros\", name=\"%s\")", v, ox_shape_list(&n, 1, sh, sizeof sh), pn);
  return v;
}

/* Gate g of a [B, G h] tensor. */
static void gate(char *buf, size_t n, const char *v, int g, int64_t H) {
  snprintf(buf, n, "slice(%s, 1, %lld, %lld)", v, (long long)(g * H), (long long)((g + 1) * H));
}

/* One step t: h (and, for lstm, cs) rebound. */
static void step(ox_ctx *c, const unroll *u, int64_t t, const char *h, const char *cs, int first) {
  char g0[400], g1[400], g2[400], g3[400], pk[400];
  long long H = (long long)u->H;
  const char *xt = fresh(c, u->L, "xt");
  ox_emit(c, "%s = reshape(slice(%s, 1, %lld, %lld), [-1, %lld])", xt, u->xw, (long long)t, (long long)t + 1,
          (long long)(u->G * u->H));
  const char *g = fresh(c, u->L, "g");
  int hz = first && !u->h0; /* the state is still zero: no recurrent product */
  if (u->kind == 1) { /* gru, linear_before_reset: z r h */
    const char *rh = fresh(c, u->L, "rh");
    if (hz) ox_emit(c, "%s = %s + 0 * %s", rh, u->rb, xt);
    else ox_emit(c, "%s = %s @ %s + %s", rh, first ? u->h0 : h, u->rw, u->rb);
    gate(g0, sizeof g0, xt, 0, u->H), gate(g1, sizeof g1, rh, 0, u->H);
    const char *z = fresh(c, u->L, "z"), *r = fresh(c, u->L, "r"), *nn = fresh(c, u->L, "n");
    ox_emit(c, "%s = sigmoid(%s + %s)", z, g0, g1);
    gate(g0, sizeof g0, xt, 1, u->H), gate(g1, sizeof g1, rh, 1, u->H);
    ox_emit(c, "%s = sigmoid(%s + %s)", r, g0, g1);
    gate(g0, sizeof g0, xt, 2, u->H), gate(g1, sizeof g1, rh, 2, u->H);
    if (u->lbr) ox_emit(c, "%s = tanh(%s + %s * %s)", nn, g0, r, g1);
    else if (hz) ox_emit(c, "%s = tanh(%s + slice(%s, 0, %lld, %lld))", nn, g0, u->rb, 2 * H, 3 * H);
    else /* linear_before_reset = 0: the reset gate scales the state before its product */
      ox_emit(c, "%s = tanh(%s + (%s * %s) @ slice(%s, 1, %lld, %lld) + slice(%s, 0, %lld, %lld))", nn, g0, r,
              first ? u->h0 : h, u->rw, 2 * H, 3 * H, u->rb, 2 * H, 3 * H);
    if (hz) ox_emit(c, "%s = (1 - %s) * %s", h, z, nn);
    else ox_emit(c, "%s = (1 - %s) * %s + %s * %s", h, z, nn, z, first ? u->h0 : h);
    return;
  }
  if (hz) ox_emit(c, "%s = %s + %s", g, xt, u->rb);
  else ox_emit(c, "%s = %s + %s @ %s + %s", g, xt, first ? u->h0 : h, u->rw, u->rb);
  if (u->kind == 2) {
    ox_emit(c, "%s = tanh(%s)", h, g);
    return;
  }
  /* lstm: i o f c, peepholes i o f on the previous cell (o: the new one) */
  const char *cp = first ? u->c0 : cs; /* NULL: zero */
  gate(g0, sizeof g0, g, 0, u->H), gate(g1, sizeof g1, g, 1, u->H);
  gate(g2, sizeof g2, g, 2, u->H), gate(g3, sizeof g3, g, 3, u->H);
  const char *i = fresh(c, u->L, "i"), *f = fresh(c, u->L, "f");
  if (u->p && cp) snprintf(pk, sizeof pk, " + slice(%s, 0, 0, %lld) * %s", u->p, H, cp);
  else pk[0] = 0;
  ox_emit(c, "%s = sigmoid(%s%s)", i, g0, pk);
  if (u->p && cp) snprintf(pk, sizeof pk, " + slice(%s, 0, %lld, %lld) * %s", u->p, 2 * H, 3 * H, cp);
  ox_emit(c, "%s = sigmoid(%s%s)", f, g2, pk);
  if (cp) ox_emit(c, "%s = %s * %s + %s * tanh(%s)", cs, f, cp, i, g3);
  else ox_emit(c, "%s = %s * tanh(%s)", cs, i, g3);
  if (u->p) snprintf(pk, sizeof pk, " + slice(%s, 0, %lld, %lld) * %s", u->p, H, 2 * H, cs);
  else pk[0] = 0;
  ox_emit(c, "%s = sigmoid(%s%s) * tanh(%s)", h, g1, pk, cs);
}

/* The state input k (5 initial_h, 6 initial_c) of direction d as [B, h], or
 * NULL when absent. */
static const char *state_in(ox_ctx *c, const char *L, node *n, int k, int d, int layout, int64_t H, int *err) {
  ox_val *v = ox_in(c, n, k);
  if (!v) return NULL;
  const char *r = ox_ref(c, v);
  if (!r || v->rank != 3 || v->d[2] != H || v->d[layout] < d + 1) {
    *err = 1;
    if (r) ox_err(c, "input %d (%s) must be [directions, batch, %lld] (layout 0) or [batch, directions, %lld]", k,
                  k == 5 ? "initial_h" : "initial_c", (long long)H, (long long)H);
    return NULL;
  }
  const char *s = fresh(c, L, k == 5 ? "h0" : "c0");
  ox_emit(c, "%s = reshape(slice(%s, %d, %d, %d), [-1, %lld])", s, r, layout, d, d + 1, (long long)H);
  return s;
}

/* Writes the node's outputs: Y [T, D, B, h] / [B, T, D, h], Y_h and Y_c
 * [D, B, h] / [B, D, h]. seqs: per direction [B, T, h]; hs, cs: the final
 * states [B, h]. */
static void outputs(ox_ctx *c, node *n, ox_val *x, int ND, int layout, int64_t T, int64_t H, const char **seqs,
                    const char **hs, const char **cs) {
  const char *bsym = x->sym[layout ? 0 : 1];
  int64_t B = x->d[layout ? 0 : 1];
  long long t = (long long)T, h = (long long)H;
  if (n->n_output > 0 && n->output[0] && *n->output[0]) {
    int64_t d[4] = {T, ND, B, H};
    if (layout) d[0] = B, d[1] = T, d[2] = ND;
    const char *sym[4] = {layout ? bsym : NULL, NULL, layout ? NULL : bsym, NULL};
    ox_val *y = ox_out(c, n, 0, x->dt, 4, d, sym);
    if (ND > 1)
      ox_emit(c, "%s = concat([reshape(%s, [-1, %lld, 1, %lld]), reshape(%s, [-1, %lld, 1, %lld])], 2)", y->nn, seqs[0],
              t, h, seqs[1], t, h);
    else ox_emit(c, "%s = reshape(%s, [-1, %lld, 1, %lld])", y->nn, seqs[0], t, h);
    if (!layout) ox_emit(c, "%s = transpose(%s, [1, 2, 0, 3])", y->nn, y->nn);
  }
  for (int o = 1; o <= 2; o++) {
    if ((int)n->n_output <= o || !n->output[o] || !*n->output[o]) continue;
    const char **st = o == 1 ? hs : cs;
    int64_t d[3] = {ND, B, H};
    if (layout) d[0] = B, d[1] = ND;
    const char *sym[3] = {layout ? bsym : NULL, layout ? NULL : bsym, NULL};
    ox_val *y = ox_out(c, n, o, x->dt, 3, d, sym);
    if (ND > 1)
      ox_emit(c, "%s = concat([reshape(%s, [-1, 1, %lld]), reshape(%s, [-1, 1, %lld])], 1)", y->nn, st[0], h, st[1], h);
    else ox_emit(c, "%s = reshape(%s, [-1, 1, %lld])", y->nn, st[0], h);
    if (!layout) ox_emit(c, "%s = transpose(%s, [1, 0, 2])", y->nn, y->nn);
  }
}

int ox_rnn_unroll(ox_ctx *c, node *n, int kind, int lbr, int ND, int rev, int layout, int64_t H, const ox_array *W,
                  const ox_array *R, const ox_array *Bv, const ox_array *P) {
  ox_val *x = ox_in(c, n, 0);
  int G = kind == 0 ? 4 : kind == 1 ? 3 : 1;
  int64_t T = x->d[layout ? 1 : 0], I = x->d[2];
  if (T > UNROLL_MAX_T)
    return ox_unsup(c, NULL, "initial states or peepholes over %lld steps (written out step by step: at most %d)",
                    (long long)T, UNROLL_MAX_T);
  const char *xr = ox_ref(c, x);
  if (!xr) return -1;
  char Lb[300];
  ox_layer_name(c, n, NULL, Lb, sizeof Lb);
  const char *xs = fresh(c, Lb, "x");
  if (layout) ox_emit(c, "%s = %s", xs, xr);
  else ox_emit(c, "%s = transpose(%s, [1, 0, 2])", xs, xr);
  const char *seqs[2] = {NULL, NULL}, *hs[2] = {NULL, NULL}, *cs[2] = {NULL, NULL};
  for (int d = 0; d < ND; d++) {
    char L[340];
    snprintf(L, sizeof L, "%s%s", Lb, d ? ".rev" : "");
    unroll u = {.kind = kind, .lbr = lbr, .G = G, .layout = layout, .rev = rev || d == 1, .H = H, .T = T, .L = L};
    int err = 0;
    u.h0 = state_in(c, L, n, 5, d, layout, H, &err);
    if (!err && kind == 0) u.c0 = state_in(c, L, n, 6, d, layout, H, &err);
    if (err) return -1;
    const char *wt = weight_t(c, L, "weight_ih", W, d, G * H, I);
    u.rw = weight_t(c, L, "weight_hh", R, d, G * H, H);
    const char *wb = vec(c, L, "bias_ih", Bv, (int64_t)d * 2 * G * H, G * H);
    u.rb = vec(c, L, "bias_hh", Bv, (int64_t)d * 2 * G * H + G * H, G * H);
    if (P) u.p = vec(c, L, "peephole", P, (int64_t)d * 3 * H, 3 * H);
    const char *xw = fresh(c, L, "xw");
    ox_emit(c, "%s = %s @ %s + %s", xw, xs, wt, wb);
    u.xw = xw;
    const char *h = fresh(c, L, "h"), *cst = kind == 0 ? fresh(c, L, "c") : NULL;
    char **steps = calloc((size_t)T, sizeof *steps);
    if (!steps) abort();
    for (int64_t k = 0; k < T; k++) {
      int64_t t = u.rev ? T - 1 - k : k;
      step(c, &u, t, h, cst, k == 0);
      steps[t] = strdup(fresh(c, L, "y"));
      ox_emit(c, "%s = reshape(%s, [-1, 1, %lld])", steps[t], h, (long long)H);
    }
    ox_buf line = {0};
    const char *seq = seqs[d] = fresh(c, L, "seq");
    ox_buf_printf(&line, "%s = concat([", seq);
    for (int64_t t = 0; t < T; t++) ox_buf_printf(&line, "%s%s", t ? ", " : "", steps[t]), free(steps[t]);
    ox_buf_printf(&line, "], 1)");
    ox_emit(c, "%s", line.p);
    free(line.p), free(steps);
    hs[d] = h, cs[d] = cst;
  }
  outputs(c, n, x, ND, layout, T, H, seqs, hs, cs);
  return 0;
}
