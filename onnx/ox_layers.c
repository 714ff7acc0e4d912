/* ox_layers.c -- ONNX nodes that become the language's layers: MatMul or
 * Gemm with constant weights (and the bias Add after them) -> dense, Conv ->
 * conv2d/conv1d, the pools, BatchNormalization -> batchnorm,
 * LayerNormalization -> layernorm, InstanceNormalization -> groupnorm, a
 * Gather from a constant table -> embedding, LSTM/GRU/RNN -> lstm/gru/rnn
 * (weights reordered to Lathe's gate order and [in, out] layout). Anything
 * they cannot express in a layer falls back to primitive ops or is refused
 * with the attribute named. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ox_impl.h"
#include "frontend/sema.h"

typedef const Onnx__NodeProto node;

int ox_is_call(const char *name) { return fe_builtin_find(name) != NULL; }

static int want_floatx(ox_ctx *c, const ox_val *x) {
  if (ox_is_float_dt(x->dt)) return 0;
  return ox_unsup(c, NULL, "%s on %s tensors", c->node->op_type, ox_dt_name(x->dt));
}

/* The layer's name: its weight's ONNX name less a ".weight" ending (PyTorch's
 * "fc1.weight" -> "fc1"), else the node's; unique among the parameters. */
#define layer_name ox_layer_name
const char *ox_layer_name(ox_ctx *c, node *n, const ox_val *w, char *buf, size_t size) {
  const char *base = w && w->onnx && strncmp(w->onnx, "onnx::", 6) != 0 ? w->onnx
                     : n->name && *n->name                              ? n->name
                                                                        : n->output[0];
  snprintf(buf, size, "%s", base);
  size_t l = strlen(buf);
  if (l > 7 && strcmp(buf + l - 7, ".weight") == 0) buf[l - 7] = 0;
  if (base == n->name) { /* PyTorch's node names: "/h.0/qkv/MatMul" -> "h.0.qkv" */
    char *last = strrchr(buf, '/');
    if (last && last != buf && strcmp(last + 1, n->op_type) == 0) *last = 0;
    for (char *p = buf; *p; p++)
      if (*p == '/' && p != buf) *p = '.';
  }
  for (char *p = buf; *p; p++)
    if (*p == '"' || *p == '\\' || (unsigned char)*p < 32) *p = '_';
  while (buf[0] == '/') memmove(buf, buf + 1, strlen(buf));
  if (!buf[0]) snprintf(buf, size, "layer");
  char try[300];
  snprintf(try, sizeof try, "%s", buf);
  for (int k = 2;; k++) {
    size_t lt = strlen(try);
    int clash = 0;
    for (int i = 0; i < c->nw && !clash; i++) clash = strncmp(c->w[i].name, try, lt) == 0 && c->w[i].name[lt] == '.';
    if (!clash) break;
    snprintf(try, sizeof try, "%s_%d", buf, k);
  }
  snprintf(buf, size, "%s", try);
  return buf;
}

static void param_as(ox_ctx *c, const char *layer, const char *suffix, const ox_array *a, int rank, const int64_t *d,
                     int transpose2) {
  char nm[400];
  snprintf(nm, sizeof nm, "%s.%s", layer, suffix);
  ox_add_param(c, nm, a, d, rank, transpose2);
}

/* How many node inputs and graph outputs read the value called name. */
int ox_uses(ox_ctx *c, const char *name) {
  int u = 0;
  for (int j = 0; j < c->nnodes; j++)
    for (size_t k = 0; k < c->nodes[j]->n_input && !c->skip[j]; k++) u += c->nodes[j]->input[k] && strcmp(c->nodes[j]->input[k], name) == 0;
  for (size_t k = 0; k < c->g->n_output; k++) u += c->g->output[k]->name && strcmp(c->g->output[k]->name, name) == 0;
  return u;
}

/* The unique later Add that adds a constant [N] (or [1, N] to a matrix) to
 * the value called name: its node index and the bias; -1 when there is none. */
static int bias_add(ox_ctx *c, const char *name, int xrank, int dt, int64_t N, const ox_array **bias) {
  if (ox_uses(c, name) != 1) return -1;
  for (int j = c->cur + 1; j < c->nnodes; j++) {
    node *m = c->nodes[j];
    for (size_t k = 0; k < m->n_input; k++) {
      if (!m->input[k] || strcmp(m->input[k], name) != 0) continue;
      if (!m->op_type || strcmp(m->op_type, "Add") != 0 || m->n_input != 2 || c->skip[j]) return -1;
      ox_val *b = ox_in(c, m, 1 - (int)k);
      const ox_array *a = ox_const(c, b);
      if (!a || a->n != N || b->rank > 2 || b->rank < 1 || b->d[b->rank - 1] != N || b->dt != dt) return -1;
      if (b->rank == 2 && xrank != 2) return -1;
      *bias = a;
      return j;
    }
  }
  return -1;
}

/* y = dense(x, N) with weights W [K, N] (transposed from [N, K] when tw) and
 * an optional bias; the result defines output `k` of node `def`. */
static int emit_dense(ox_ctx *c, node *n, node *def, ox_val *x, ox_val *w, const ox_array *wa, int tw,
                      const ox_array *ba) {
  int64_t K = w->d[tw ? 1 : 0], N = w->d[tw ? 0 : 1];
  if (x->d[x->rank - 1] != K) return ox_err(c, "inner dimensions %lld and %lld differ", (long long)x->d[x->rank - 1], (long long)K);
  const char *xr = ox_ref(c, x);
  if (!xr) return -1;
  char L[300];
  layer_name(c, n, w, L, sizeof L);
  int64_t wd[2] = {K, N};
  param_as(c, L, "weight", wa, 2, wd, tw);
  if (ba) param_as(c, L, "bias", ba, 1, &N, 0);
  int64_t d[OX_MAXDIM];
  const char *sym[OX_MAXDIM];
  for (int i = 0; i < x->rank; i++) d[i] = x->d[i], sym[i] = x->sym[i];
  d[x->rank - 1] = N;
  sym[x->rank - 1] = NULL;
  ox_val *y = ox_out(c, def, 0, x->dt, x->rank, d, sym);
  ox_emit(c, "%s = dense(%s, %lld, %sname=\"%s\")", y->nn, xr, (long long)N, ba ? "" : "bias=false, ", L);
  return 0;
}

static int matmul_shape(ox_ctx *c, const ox_val *a, const ox_val *b, int *rank, int64_t *d, const char **sym) {
  if (a->rank < 1 || b->rank < 1) return ox_err(c, "matrix product of a scalar");
  ox_val A = *a, B = *b;
  int ra = a->rank, rb = b->rank;
  int64_t m = ra >= 2 ? a->d[ra - 2] : 1, k = a->d[ra - 1], k2 = rb >= 2 ? b->d[rb - 2] : b->d[0], nn = rb >= 2 ? b->d[rb - 1] : 1;
  if (k != k2 || k < 0) return ox_err(c, "inner dimensions %lld and %lld differ", (long long)k, (long long)k2);
  A.rank = ra > 2 ? ra - 2 : 0;
  B.rank = rb > 2 ? rb - 2 : 0;
  if (ox_broadcast(c, &A, &B, rank, d, sym)) return -1;
  if (ra >= 2) d[*rank] = m, sym[*rank] = a->sym[ra - 2], (*rank)++;
  if (rb >= 2) d[*rank] = nn, sym[*rank] = NULL, (*rank)++;
  return 0;
}

int ox_h_matmul(ox_ctx *c, node *n) {
  ox_val *a = ox_need(c, n, 0), *b = ox_need(c, n, 1);
  if (!a || !b) return -1;
  const ox_array *wa = ox_const(c, b);
  if (wa && b->rank == 2 && a->rank >= 2 && !ox_const(c, a) && ox_is_float_dt(a->dt) && a->d[a->rank - 1] == b->d[0]) {
    int at = ox_attention_pattern(c, n); /* a qkv projection starting self-attention */
    if (at) return at < 0 ? -1 : 0;
    const ox_array *ba = NULL;
    int j = bias_add(c, n->output[0], a->rank, a->dt, b->d[1], &ba);
    if (j >= 0) c->skip[j] = 1;
    return emit_dense(c, n, j >= 0 ? c->nodes[j] : n, a, b, wa, 0, j >= 0 ? ba : NULL);
  }
  int rank;
  int64_t d[OX_MAXDIM];
  const char *sym[OX_MAXDIM];
  if (matmul_shape(c, a, b, &rank, d, sym)) return -1;
  const char *ar = ox_ref(c, a), *br = ox_ref(c, b);
  if (!ar || !br) return -1;
  ox_val *y = ox_out(c, n, 0, a->dt, rank, d, sym);
  ox_emit(c, "%s = %s @ %s", y->nn, ar, br);
  return 0;
}

int ox_h_gemm(ox_ctx *c, node *n) {
  ox_val *a = ox_need(c, n, 0), *b = ox_need(c, n, 1), *cc = ox_in(c, n, 2);
  if (!a || !b) return -1;
  if (a->rank != 2 || b->rank != 2) return ox_err(c, "Gemm needs matrices, got ranks %d and %d", a->rank, b->rank);
  double alpha = ox_attr_f(n, "alpha", 1), beta = ox_attr_f(n, "beta", 1);
  int ta = (int)ox_attr_i(n, "transA", 0), tb = (int)ox_attr_i(n, "transB", 0);
  const ox_array *wa = ox_const(c, b), *ca = ox_const(c, cc);
  int64_t M = a->d[ta ? 1 : 0], K = a->d[ta ? 0 : 1], N = b->d[tb ? 0 : 1];
  if (wa && !ta && alpha == 1 && !ox_const(c, a) && ox_is_float_dt(a->dt) &&
      (!cc || (ca && beta == 1 && ca->n == N && cc->d[cc->rank - 1] == N)))
    return emit_dense(c, n, n, a, b, wa, tb, cc ? ca : NULL);
  const char *ar = ox_ref(c, a), *br = ox_ref(c, b), *cr = cc ? ox_ref(c, cc) : NULL;
  if (!ar || !br || (cc && !cr)) return -1;
  char al[64], be[64];
  int64_t d[2] = {M, N};
  const char *sym[2] = {a->sym[ta ? 1 : 0], NULL};
  (void)K;
  ox_numeric_literal(al, sizeof al, alpha, LATHE_F32);
  ox_numeric_literal(be, sizeof be, beta, LATHE_F32);
  ox_buf e = {0};
  ox_buf_printf(&e, "%s%s%s%s @ %s%s%s", alpha != 1 ? "(" : "", ta ? "transpose(" : "", ar, ta ? ")" : "",
                tb ? "transpose(" : "", br, tb ? ")" : "");
  if (alpha != 1) ox_buf_printf(&e, ") * %s", al);
  if (cr) ox_buf_printf(&e, " + %s", cr);
  if (cr && beta != 1) ox_buf_printf(&e, " * %s", be);
  ox_val *y = ox_out(c, n, 0, a->dt, 2, d, sym);
  ox_emit(c, "%s = %s", y->nn, e.p);
  free(e.p);
  return 0;
}

/* All entries of v[0..n) equal (a square kernel, one stride ...): the value. */
static int all_same(const int64_t *v, int n, int64_t *out) {
  for (int i = 1; i < n; i++)
    if (v[i] != v[0]) return 0;
  *out = n ? v[0] : 1;
  return 1;
}

/* The spatial attributes of Conv and the pools: kernel k, stride s and
 * dilation dl (one number for every spatial axis, as the language's layers
 * take them) and the padding per axis and side (lo, hi), auto_pad worked
 * out from the input's spatial sizes `in`. */
static int spatial(ox_ctx *c, node *n, int nsp, const int64_t *kdims, const int64_t *in, int64_t *k, int64_t *s,
                   int64_t *dl, int64_t *lo, int64_t *hi) {
  int64_t v[2 * OX_MAXDIM];
  int m = ox_attr_ints(n, "kernel_shape", v, OX_MAXDIM);
  if (m < 0 && kdims) m = nsp, memcpy(v, kdims, sizeof(int64_t) * (size_t)nsp);
  if (m != nsp || !all_same(v, m, k)) return ox_unsup(c, "kernel_shape", "a kernel that is not square (Lathe's layers take one size)");
  m = ox_attr_ints(n, "strides", v, OX_MAXDIM);
  if (m < 0) *s = 1;
  else if (m != nsp || !all_same(v, m, s)) return ox_unsup(c, "strides", "different strides per axis");
  m = ox_attr_ints(n, "dilations", v, OX_MAXDIM);
  if (m < 0) *dl = 1;
  else if (m != nsp || !all_same(v, m, dl)) return ox_unsup(c, "dilations", "different dilations per axis");
  if (*k < 1 || *s < 1 || *dl < 1) return ox_err(c, "kernel, stride and dilation must be positive");
  const char *ap = ox_attr_s(n, "auto_pad", "NOTSET");
  char aps[32];
  snprintf(aps, sizeof aps, "%s", ap);
  for (int i = 0; i < nsp; i++) lo[i] = hi[i] = 0;
  if (strcmp(aps, "SAME_UPPER") == 0 || strcmp(aps, "SAME_LOWER") == 0) {
    for (int i = 0; i < nsp; i++) {
      if (in[i] < 0) return ox_unsup(c, "auto_pad", "over a symbolic dimension");
      int64_t out = (in[i] + *s - 1) / *s, total = (out - 1) * *s + *dl * (*k - 1) + 1 - in[i];
      if (total < 0) total = 0;
      int upper = strcmp(aps, "SAME_UPPER") == 0;
      lo[i] = upper ? total / 2 : total - total / 2;
      hi[i] = total - lo[i];
    }
  } else if (strcmp(aps, "NOTSET") == 0) {
    m = ox_attr_ints(n, "pads", v, 2 * OX_MAXDIM);
    if (m >= 0 && m != 2 * nsp) return ox_err(c, "%d pads for %d spatial axes", m, nsp);
    for (int i = 0; m > 0 && i < nsp; i++) {
      lo[i] = v[i], hi[i] = v[nsp + i];
      if (lo[i] < 0 || hi[i] < 0 || lo[i] > 1024 || hi[i] > 1024) return ox_unsup(c, "pads", "padding of %lld", (long long)(lo[i] < 0 ? lo[i] : hi[i]));
    }
  } else if (strcmp(aps, "VALID") != 0) {
    return ox_unsup(c, "auto_pad", "'%s'", aps);
  }
  return 0;
}

/* One padding for every side and axis: that number; else -1. */
static int64_t even_pad(int nsp, const int64_t *lo, const int64_t *hi) {
  for (int i = 0; i < nsp; i++)
    if (lo[i] != lo[0] || hi[i] != lo[0]) return -1;
  return nsp ? lo[0] : 0;
}

/* x padded explicitly on spatial axes 2.. (lo/hi each) with the value `val`
 * (a number) or, val NULL, edge copies: blocks made from x's border slices
 * (a where over them gives the constant), concatenated around x. Returns the
 * padded tensor's name and updates d. */
const char *ox_pad_expr(ox_ctx *c, const char *base, const char *xr, int dt, int rank, int64_t *d, int first,
                        const int64_t *lo, const int64_t *hi, const char *val, int reflect) {
  const char *cur = xr;
  for (int a = first; a < rank; a++) {
    int64_t p[2] = {lo[a - first], hi[a - first]};
    if (!p[0] && !p[1]) continue;
    ox_buf parts = {0};
    const char *blocks[2] = {NULL, NULL};
    for (int side = 0; side < 2; side++) {
      if (!p[side]) continue;
      ox_buf blk = {0};
      for (int64_t j = 0; j < p[side]; j++) {
        int64_t at = reflect ? (side ? d[a] - 2 - j : p[0] - j) : (side ? d[a] - 1 : 0);
        if (at < 0 || at >= d[a]) { free(blk.p); free(parts.p); ox_unsup(c, "pads", "reflect padding wider than the axis"); return NULL; }
        ox_buf_printf(&blk, "%sslice(%s, %d, %lld, %lld)", j ? ", " : "", cur, a, (long long)at, (long long)(at + 1));
      }
      const char *t = ox_fresh(c, base);
      if (val && ox_is_float_dt(dt)) ox_emit(c, "%s = where(less(concat([%s], %d), concat([%s], %d)), %s, %s)", t, blk.p, a, blk.p, a, val, val);
      else ox_emit(c, "%s = concat([%s], %d)", t, blk.p, a);
      if (val && !ox_is_float_dt(dt))
        ox_emit(c, "%s = cast(where(less(%s, %s), %s, %s), \"%s\")", t, t, t, val, val, ox_dt_name(dt));
      free(blk.p);
      blocks[side] = t;
    }
    ox_buf_printf(&parts, "%s%s%s%s%s", blocks[0] ? blocks[0] : "", blocks[0] ? ", " : "", cur, blocks[1] ? ", " : "",
                  blocks[1] ? blocks[1] : "");
    const char *t = ox_fresh(c, base);
    ox_emit(c, "%s = concat([%s], %d)", t, parts.p, a);
    free(parts.p);
    d[a] += p[0] + p[1];
    cur = t;
  }
  return cur;
}

static int64_t conv_len(int64_t in, int64_t k, int64_t s, int64_t dl) { return (in - dl * (k - 1) - 1) / s + 1; }

int ox_h_conv(ox_ctx *c, node *n) {
  ox_val *x = ox_need(c, n, 0), *w = ox_need(c, n, 1), *bv = ox_in(c, n, 2);
  if (!x || !w) return -1;
  const ox_array *wa = ox_need_const(c, n, 1), *ba = bv ? ox_need_const(c, n, 2) : NULL;
  if (!wa || (bv && !ba)) return -1;
  int nsp = x->rank - 2;
  if (nsp != 1 && nsp != 2) return ox_unsup(c, NULL, "a %d-d convolution (Lathe has conv1d and conv2d)", nsp);
  if (w->rank != x->rank) return ox_err(c, "weights of rank %d for an input of rank %d", w->rank, x->rank);
  if (want_floatx(c, x)) return -1;
  int64_t k, s, dl, lo[OX_MAXDIM], hi[OX_MAXDIM], g = ox_attr_i(n, "group", 1);
  if (spatial(c, n, nsp, w->d + 2, x->d + 2, &k, &s, &dl, lo, hi)) return -1;
  if (w->d[2] != k || (nsp == 2 && w->d[3] != k)) return ox_err(c, "kernel_shape disagrees with the weights");
  int64_t O = w->d[0];
  if (g < 1 || x->d[1] != w->d[1] * g) return ox_err(c, "%lld input channels for weights of %lld x %lld groups", (long long)x->d[1], (long long)w->d[1], (long long)g);
  const char *xr = ox_ref(c, x);
  if (!xr) return -1;
  int64_t xd[OX_MAXDIM];
  memcpy(xd, x->d, sizeof xd);
  int64_t p = even_pad(nsp, lo, hi);
  if (p < 0) { /* uneven padding: zeros around x first */
    for (int i = 0; i < nsp; i++)
      if (x->d[2 + i] < 0) return ox_unsup(c, "pads", "uneven padding of a symbolic dimension");
    xr = ox_pad_expr(c, n->output[0], xr, x->dt, x->rank, xd, 2, lo, hi, "0.0", 0);
    if (!xr) return -1;
    p = 0;
  }
  char L[300];
  layer_name(c, n, w, L, sizeof L);
  param_as(c, L, "weight", wa, w->rank, w->d, 0);
  if (ba) param_as(c, L, "bias", ba, 1, &O, 0);
  int64_t d[OX_MAXDIM];
  const char *sym[OX_MAXDIM] = {x->sym[0]};
  d[0] = x->d[0], d[1] = O;
  for (int i = 0; i < nsp; i++) {
    d[2 + i] = conv_len(xd[2 + i] + 2 * p, k, s, dl);
    if (d[2 + i] < 1) return ox_err(c, "the output is empty");
  }
  ox_val *y = ox_out(c, n, 0, x->dt, x->rank, d, sym);
  ox_emit(c, "%s = conv%dd(%s, %lld, kernel=%lld, stride=%lld, padding=%lld, dilation=%lld, groups=%lld, %sname=\"%s\")",
          y->nn, nsp, xr, (long long)O, (long long)k, (long long)s, (long long)p, (long long)dl, (long long)g, ba ? "" : "bias=false, ", L);
  return 0;
}

int ox_h_pool(ox_ctx *c, node *n) {
  ox_val *x = ox_need(c, n, 0);
  if (!x || want_floatx(c, x)) return -1;
  int nsp = x->rank - 2;
  if (nsp != 1 && nsp != 2) return ox_unsup(c, NULL, "%d-d pooling (Lathe pools 1-d and 2-d)", nsp);
  if (ox_attr_i(n, "ceil_mode", 0)) return ox_unsup(c, "ceil_mode", "1");
  if (ox_attr_i(n, "storage_order", 0)) return ox_unsup(c, "storage_order", "1");
  if (n->n_output > 1 && n->output[1] && *n->output[1]) return ox_unsup(c, NULL, "the Indices output of MaxPool");
  int64_t k, s, dl, lo[OX_MAXDIM], hi[OX_MAXDIM];
  if (spatial(c, n, nsp, NULL, x->d + 2, &k, &s, &dl, lo, hi)) return -1;
  if (dl != 1) return ox_unsup(c, "dilations", "dilated pooling");
  const char *xr = ox_ref(c, x);
  if (!xr) return -1;
  int mx = strcmp(n->op_type, "MaxPool") == 0;
  int64_t xd[OX_MAXDIM], od[OX_MAXDIM];
  memcpy(xd, x->d, sizeof xd);
  memcpy(od, x->d, sizeof od);
  const char *op = mx ? "max" : "avg";
  const char *padded = xr, *den = NULL;
  if (even_pad(nsp, lo, hi) != 0) {
    for (int i = 0; i < nsp; i++)
      if (x->d[2 + i] < 0) return ox_unsup(c, "pads", "padding a symbolic dimension");
    /* max: -inf around x; average: zeros, divided by the window's count of
     * real elements unless count_include_pad */
    padded = ox_pad_expr(c, n->output[0], xr, x->dt, x->rank, xd, 2, lo, hi, mx ? "(-1e39)" : "0.0", 0);
    if (!padded) return -1;
    if (!mx && !ox_attr_i(n, "count_include_pad", 0)) {
      const char *ones = ox_fresh(c, n->output[0]);
      ox_emit(c, "%s = where(less(%s, %s), 1.0, 1.0)", ones, xr, xr);
      char on[256];
      snprintf(on, sizeof on, "%s", ones);
      const char *po = ox_pad_expr(c, n->output[0], on, x->dt, x->rank, od, 2, lo, hi, "0.0", 0);
      if (!po) return -1;
      const char *dn = ox_fresh(c, n->output[0]);
      ox_emit(c, "%s = avgpool%dd(%s, %lld, %lld)", dn, nsp, po, (long long)k, (long long)s);
      den = dn;
    }
  }
  int64_t d[OX_MAXDIM];
  const char *sym[OX_MAXDIM] = {x->sym[0], x->sym[1]};
  d[0] = x->d[0], d[1] = x->d[1];
  for (int i = 0; i < nsp; i++) {
    d[2 + i] = conv_len(xd[2 + i], k, s, 1);
    if (d[2 + i] < 1) return ox_err(c, "the output is empty");
  }
  ox_val *y = ox_out(c, n, 0, x->dt, x->rank, d, sym);
  if (den) ox_emit(c, "%s = %spool%dd(%s, %lld, %lld) / %s", y->nn, op, nsp, padded, (long long)k, (long long)s, den);
  else ox_emit(c, "%s = %spool%dd(%s, %lld, %lld)", y->nn, op, nsp, padded, (long long)k, (long long)s);
  return 0;
}

int ox_h_global_pool(ox_ctx *c, node *n) {
  ox_val *x = ox_need(c, n, 0);
  if (!x || want_floatx(c, x)) return -1;
  if (x->rank < 3) return ox_err(c, "expects [N, C, ...]");
  const char *xr = ox_ref(c, x);
  if (!xr) return -1;
  int64_t d[OX_MAXDIM];
  const char *sym[OX_MAXDIM] = {x->sym[0], x->sym[1]};
  char sh[300];
  for (int i = 0; i < x->rank; i++) d[i] = i < 2 ? x->d[i] : 1;
  ox_val *y = ox_out(c, n, 0, x->dt, x->rank, d, sym);
  ox_emit(c, "%s = reshape(%s(%s), %s)", y->nn, strcmp(n->op_type, "GlobalMaxPool") == 0 ? "global_maxpool" : "global_avgpool",
          xr, ox_shape_list(d, x->rank, sh, sizeof sh));
  return 0;
}

int ox_h_batchnorm(ox_ctx *c, node *n) {
  ox_val *x = ox_need(c, n, 0);
  if (!x || want_floatx(c, x)) return -1;
  if (ox_attr_i(n, "training_mode", 0)) return ox_unsup(c, "training_mode", "1 (inference only: running statistics)");
  for (size_t k = 1; k < n->n_output; k++)
    if (n->output[k] && *n->output[k]) return ox_unsup(c, NULL, "output %zu (training statistics)", k);
  const ox_array *a[4];
  for (int k = 0; k < 4; k++)
    if (!(a[k] = ox_need_const(c, n, k + 1))) return -1;
  if (x->rank < 2) return ox_err(c, "expects [N, C, ...]");
  int64_t C = x->d[1];
  for (int k = 0; k < 4; k++)
    if (a[k]->n != C) return ox_err(c, "input %d has %lld values for %lld channels", k + 1, (long long)a[k]->n, (long long)C);
  const char *xr = ox_ref(c, x);
  if (!xr) return -1;
  char L[300], eps[64];
  layer_name(c, n, ox_in(c, n, 1), L, sizeof L);
  static const char *names[] = {"weight", "bias", "running_mean", "running_var"};
  for (int k = 0; k < 4; k++) param_as(c, L, names[k], a[k], 1, &C, 0);
  ox_numeric_literal(eps, sizeof eps, ox_attr_f(n, "epsilon", 1e-5), LATHE_F32);
  ox_val *y = ox_out_like(c, n, 0, x, -1);
  ox_emit(c, "%s = batchnorm(%s, eps=%s, name=\"%s\")", y->nn, xr, eps, L);
  return 0;
}

int ox_h_instancenorm(ox_ctx *c, node *n) {
  ox_val *x = ox_need(c, n, 0);
  if (!x || want_floatx(c, x)) return -1;
  const ox_array *sc = ox_need_const(c, n, 1), *b = ox_need_const(c, n, 2);
  if (!sc || !b) return -1;
  int64_t C = x->d[1];
  if (x->rank < 3 || sc->n != C || b->n != C) return ox_err(c, "expects [N, C, ...] with [C] scale and bias");
  const char *xr = ox_ref(c, x);
  if (!xr) return -1;
  char L[300], eps[64];
  layer_name(c, n, ox_in(c, n, 1), L, sizeof L);
  param_as(c, L, "weight", sc, 1, &C, 0);
  param_as(c, L, "bias", b, 1, &C, 0);
  ox_numeric_literal(eps, sizeof eps, ox_attr_f(n, "epsilon", 1e-5), LATHE_F32);
  ox_val *y = ox_out_like(c, n, 0, x, -1);
  ox_emit(c, "%s = groupnorm(%s, %lld, eps=%s, name=\"%s\")", y->nn, xr, (long long)C, eps, L);
  return 0;
}

/* LayerNormalization: the layer over the last axis with constant scale and
 * bias; otherwise (an earlier axis, computed scale, the Mean/InvStdDev
 * outputs) its decomposition over the flattened axes. */
int ox_h_layernorm(ox_ctx *c, node *n) {
  ox_val *x = ox_need(c, n, 0), *sv = ox_need(c, n, 1), *bv = ox_in(c, n, 2);
  if (!x || !sv || want_floatx(c, x)) return -1;
  int axis;
  if (ox_axis(c, ox_attr_i(n, "axis", -1), x->rank, &axis)) return -1;
  double epsf = ox_attr_f(n, "epsilon", 1e-5);
  char eps[64];
  ox_numeric_literal(eps, sizeof eps, epsf, LATHE_F32);
  const ox_array *sa = ox_const(c, sv), *ba = bv ? ox_const(c, bv) : NULL;
  int extra = 0;
  for (size_t k = 1; k < n->n_output; k++) extra |= n->output[k] && *n->output[k] && ox_uses(c, n->output[k]);
  const char *xr = ox_ref(c, x);
  if (!xr) return -1;
  int64_t D = x->d[x->rank - 1];
  if (axis == x->rank - 1 && sa && (!bv || ba) && !extra && sa->n == D && (!ba || ba->n == D)) {
    char L[300];
    layer_name(c, n, sv, L, sizeof L);
    param_as(c, L, "weight", sa, 1, &D, 0);
    ox_array zero = {0};
    if (!ba) {
      ox_array_alloc(&zero, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, D);
      ba = &zero;
    }
    param_as(c, L, "bias", ba, 1, &D, 0);
    ox_array_free(&zero);
    ox_val *y = ox_out_like(c, n, 0, x, -1);
    ox_emit(c, "%s = layernorm(%s, eps=%s, name=\"%s\")", y->nn, xr, eps, L);
    return 0;
  }
  int64_t outer = 1, inner = 1;
  for (int i = 0; i < x->rank; i++) {
    if (x->d[i] < 0 && i >= axis) return ox_unsup(c, NULL, "normalising over a symbolic dimension");
    if (i < axis) outer = x->d[i] < 0 || outer < 0 ? -1 : ox_mul(outer, x->d[i]);
    else inner = ox_mul(inner, x->d[i]);
  }
  const char *scr = ox_ref(c, sv), *br = bv ? ox_ref(c, bv) : NULL;
  if (!scr || (bv && !br)) return -1;
  char sh[300], base[200];
  snprintf(base, sizeof base, "%s", n->output[0]);
  const char *t = ox_fresh(c, base), *m = ox_fresh(c, base), *dd = ox_fresh(c, base), *v = ox_fresh(c, base),
             *r = ox_fresh(c, base);
  ox_emit(c, "%s = reshape(%s, [%lld, %lld])", t, xr, (long long)outer, (long long)inner);
  ox_emit(c, "%s = mean(%s, 1, keepdims=true)", m, t);
  ox_emit(c, "%s = %s - %s", dd, t, m);
  ox_emit(c, "%s = mean(%s * %s, 1, keepdims=true)", v, dd, dd);
  ox_emit(c, "%s = 1.0 / sqrt(%s + %s)", r, v, eps);
  ox_val *y = ox_out_like(c, n, 0, x, -1);
  ox_emit(c, "%s = reshape(%s * %s, %s) * %s%s%s", y->nn, dd, r, ox_shape_list(x->d, x->rank, sh, sizeof sh), scr,
          br ? " + " : "", br ? br : "");
  int64_t sd[OX_MAXDIM];
  for (int i = 0; i < x->rank; i++) sd[i] = i < axis ? x->d[i] : 1;
  for (int k = 1; k <= 2 && k < (int)n->n_output; k++) {
    ox_val *o = ox_out(c, n, k, x->dt, x->rank, sd, x->sym);
    if (o) ox_emit(c, "%s = reshape(%s, %s)", o->nn, k == 1 ? m : r, ox_shape_list(sd, x->rank, sh, sizeof sh));
  }
  return 0;
}

int ox_embedding(ox_ctx *c, node *n, ox_val *x, ox_val *iv, int rank, const int64_t *d, const char *const *sym) {
  const ox_array *wa = ox_const(c, x);
  const char *ir = ox_ref(c, iv);
  if (!ir) return -1;
  char L[300];
  layer_name(c, n, x, L, sizeof L);
  param_as(c, L, "weight", wa, 2, x->d, 0);
  ox_val *y = ox_out(c, n, 0, x->dt, rank, d, sym);
  ox_emit(c, "%s = embedding(%s, %lld, %lld, name=\"%s\")", y->nn, ir, (long long)x->d[0], (long long)x->d[1], L);
  return 0;
}

/* One direction's weights (dir 0 forward, 1 reverse) as Lathe's parameters
 * PREFIX.weight_ih [in, G h], weight_hh [h, G h] in its gate order and the
 * biases (gru: bias_ih, bias_hh; lstm and rnn: their sum). */
static void recurrent_params(ox_ctx *c, const char *prefix, int kind, int dir, const ox_array *W, const ox_array *R,
                             const ox_array *Bv, int64_t I, int64_t H) {
  static const int lstm_map[4] = {0, 2, 3, 1}; /* Lathe gate -> ONNX gate */
  static const int gru_map[3] = {1, 0, 2};
  int G = kind == 0 ? 4 : kind == 1 ? 3 : 1;
  ox_array wi = {0}, wh = {0}, bi = {0}, bh = {0};
  int fl = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
  ox_array_alloc(&wi, fl, I * G * H), ox_array_alloc(&wh, fl, H * G * H);
  ox_array_alloc(&bi, fl, G * H), ox_array_alloc(&bh, fl, G * H);
  int64_t w0 = dir * G * H * I, r0 = dir * G * H * H, b0 = dir * 2 * G * H;
  for (int g = 0; g < G; g++) {
    int og = kind == 0 ? lstm_map[g] : kind == 1 ? gru_map[g] : 0;
    for (int64_t h = 0; h < H; h++) {
      for (int64_t i = 0; i < I; i++) wi.f[i * G * H + g * H + h] = ox_get_f(W, w0 + (og * H + h) * I + i);
      for (int64_t i = 0; i < H; i++) wh.f[i * G * H + g * H + h] = ox_get_f(R, r0 + (og * H + h) * H + i);
      if (Bv) {
        bi.f[g * H + h] = ox_get_f(Bv, b0 + og * H + h);
        bh.f[g * H + h] = ox_get_f(Bv, b0 + G * H + og * H + h);
      }
    }
  }
  int64_t dwi[2] = {I, G * H}, dwh[2] = {H, G * H}, db = G * H;
  param_as(c, prefix, "weight_ih", &wi, 2, dwi, 0);
  param_as(c, prefix, "weight_hh", &wh, 2, dwh, 0);
  if (kind == 1) {
    param_as(c, prefix, "bias_ih", &bi, 1, &db, 0);
    param_as(c, prefix, "bias_hh", &bh, 1, &db, 0);
  } else {
    for (int64_t i = 0; i < G * H; i++) bi.f[i] += bh.f[i];
    param_as(c, prefix, "bias", &bi, 1, &db, 0);
  }
  ox_array_free(&wi), ox_array_free(&wh), ox_array_free(&bi), ox_array_free(&bh);
}

/* `v` [B, T, F] rebound to itself with the time axis reversed: a concat of
 * its T one-step slices, last first (the language has no flip; an exact
 * copy, and the recurrent layer between two flips is the fused kernel). */
enum { FLIP_MAX_T = 1024 };
static void time_flip(ox_ctx *c, const char *v, int64_t T) {
  ox_buf line = {0};
  ox_buf_printf(&line, "%s = concat([", v);
  for (int64_t t = T - 1; t >= 0; t--)
    ox_buf_printf(&line, "%sslice(%s, 1, %lld, %lld)", t < T - 1 ? ", " : "", v, (long long)t, (long long)t + 1);
  ox_buf_printf(&line, "], 1)");
  ox_emit(c, "%s", line.p);
  free(line.p);
}

/* LSTM / GRU / RNN, forward, reverse or bidirectional, either layout: Lathe's layers
 * on [B, T, in] (bidirectional=true: [B, T, 2h], forward states then
 * reverse ones, whose parameters are N.l0.* and N.l0.rev.*), reshaped to
 * ONNX's Y [T, D, B, h] (layout 0) or [B, T, D, h] and Y_h [D, B, h] or
 * [B, D, h]. */
int ox_h_recurrent(ox_ctx *c, node *n) {
  int lstm = strcmp(n->op_type, "LSTM") == 0, gru = strcmp(n->op_type, "GRU") == 0;
  int G = lstm ? 4 : gru ? 3 : 1;
  ox_val *x = ox_need(c, n, 0);
  const ox_array *W = ox_need_const(c, n, 1), *R = ox_need_const(c, n, 2);
  if (!x || !W || !R || want_floatx(c, x)) return -1;
  const char *dir = ox_attr_s(n, "direction", "forward");
  int bidi = strcmp(dir, "bidirectional") == 0, ND = bidi ? 2 : 1, rev = strcmp(dir, "reverse") == 0;
  if (!bidi && !rev && strcmp(dir, "forward") != 0)
    return ox_unsup(c, "direction", "'%s' (forward, reverse and bidirectional are known)", dir);
  if (ox_attr(n, "activations") || ox_attr(n, "activation_alpha") || ox_attr(n, "activation_beta"))
    return ox_unsup(c, "activations", "other activations than the defaults");
  if (ox_attr(n, "clip")) return ox_unsup(c, "clip", "cell clipping");
  if (ox_attr_i(n, "input_forget", 0)) return ox_unsup(c, "input_forget", "1");
  int lbr = !gru || ox_attr_i(n, "linear_before_reset", 0); /* 0: not Lathe's gru, written out step by step */
  int layout = (int)ox_attr_i(n, "layout", 0);
  if (x->rank != 3) return ox_err(c, "expects a 3-d input");
  int64_t H = ox_attr_i(n, "hidden_size", W->d[1] / G), I = x->d[2];
  int64_t T = x->d[layout ? 1 : 0], B = x->d[layout ? 0 : 1];
  if (W->rank != 3 || W->d[0] != ND || W->d[1] != G * H || W->d[2] != I || R->rank != 3 || R->d[0] != ND ||
      R->d[1] != G * H || R->d[2] != H)
    return ox_err(c, "weights of the wrong shape");
  if (T < 1) return ox_unsup(c, NULL, "a symbolic sequence length");
  if (rev && T > FLIP_MAX_T) return ox_unsup(c, "direction", "'reverse' over %lld steps (at most %d)", (long long)T, FLIP_MAX_T);
  const ox_array *Bv = ox_in(c, n, 3) ? ox_need_const(c, n, 3) : NULL;
  if (ox_in(c, n, 3) && (!Bv || Bv->n != ND * 2 * G * H)) return Bv ? ox_err(c, "a bias of the wrong size") : -1;
  if (ox_in(c, n, 4)) {
    const ox_array *sl = ox_const(c, ox_in(c, n, 4));
    if (!sl) return ox_unsup(c, NULL, "input 4 (sequence_lens) computed at run time (only full-length sequences)");
    for (int64_t i = 0; i < sl->n; i++)
      if (ox_get_i(sl, i) != T) return ox_unsup(c, NULL, "sequence_lens shorter than the sequence");
  }
  /* initial states, peepholes or Y_c: the fused layers have none, so the node is written out step by step */
  int unroll = !lbr || (lstm && n->n_output > 2 && n->output[2] && *n->output[2] && ox_uses(c, n->output[2]));
  for (int k = 5; k <= (lstm ? 7 : 5); k++) {
    ox_val *iv = ox_in(c, n, k);
    if (!iv) continue;
    const ox_array *a = ox_const(c, iv);
    int zero = (a != NULL || (iv->filled && iv->fill == 0)) && !(k == 7 && !a);
    for (int64_t i = 0; a && i < a->n; i++) zero &= ox_get_f(a, i) == 0;
    if (k == 7 && !zero && !a) return ox_unsup(c, NULL, "input 7 (peepholes) that is not a constant");
    if (k == 7 && !zero && a->n != ND * 3 * H) return ox_err(c, "peepholes of the wrong size");
    unroll |= !zero;
  }
  if (unroll) {
    const ox_array *P = lstm && ox_in(c, n, 7) ? ox_const(c, ox_in(c, n, 7)) : NULL;
    return ox_rnn_unroll(c, n, lstm ? 0 : gru ? 1 : 2, lbr, ND, rev, layout, H, W, R, Bv, P);
  }
  const char *xr = ox_ref(c, x);
  if (!xr) return -1;
  char L[300], pre[340];
  layer_name(c, n, NULL, L, sizeof L);
  int kind = lstm ? 0 : gru ? 1 : 2;
  for (int d = 0; d < ND; d++) {
    snprintf(pre, sizeof pre, "%s%s", L, !bidi ? "" : d ? ".l0.rev" : ".l0");
    recurrent_params(c, pre, kind, d, W, R, Bv, I, H);
  }
  char sb[320], xin[700];
  snprintf(sb, sizeof sb, "%s_seq", L); /* not Y's name: a graph output keeps it */
  const char *seq = ox_fresh(c, sb);
  snprintf(xin, sizeof xin, layout ? "%s" : "transpose(%s, [1, 0, 2])", xr);
  if (rev) { /* the forward layer on the time-reversed sequence, its result reversed back */
    ox_emit(c, "%s = %s", seq, xin);
    time_flip(c, seq, T);
    snprintf(xin, sizeof xin, "%s", seq);
  }
  ox_emit(c, "%s = %s(%s, %lld%s, name=\"%s\")", seq, lstm ? "lstm" : gru ? "gru" : "rnn", xin, (long long)H,
          bidi ? ", bidirectional=true" : "", L);
  if (rev) time_flip(c, seq, T);
  /* seq [B, T, D h] -> Y [T, D, B, h] (layout 0) or [B, T, D, h] */
  long long b = (long long)B, t = (long long)T, h = (long long)H, nd = ND;
  if (n->n_output > 0 && n->output[0] && *n->output[0]) {
    int64_t d[4] = {T, ND, B, H};
    if (layout) d[0] = B, d[1] = T, d[2] = ND;
    const char *sym[4] = {layout ? x->sym[0] : NULL, NULL, layout ? NULL : x->sym[1], NULL};
    ox_val *y = ox_out(c, n, 0, x->dt, 4, d, sym);
    if (layout) ox_emit(c, "%s = reshape(%s, [%lld, %lld, %lld, %lld])", y->nn, seq, b, t, nd, h);
    else ox_emit(c, "%s = transpose(reshape(%s, [%lld, %lld, %lld, %lld]), [1, 2, 0, 3])", y->nn, seq, b, t, nd, h);
  }
  /* Y_h: the forward states at T - 1 and the reverse ones at 0, [D, B, h] or [B, D, h] */
  if (n->n_output > 1 && n->output[1] && *n->output[1]) {
    int64_t d[3] = {ND, B, H};
    if (layout) d[0] = B, d[1] = ND;
    const char *sym[3] = {layout ? x->sym[0] : NULL, layout ? NULL : x->sym[1], NULL};
    ox_val *y = ox_out(c, n, 1, x->dt, 3, d, sym);
    char fw[600], rv[600];
    long long last = rev ? 0 : t - 1; /* a reverse layer's final state is at position 0 */
    snprintf(fw, sizeof fw, "reshape(slice(slice(%s, 1, %lld, %lld), 2, 0, %lld), [%lld, 1, %lld])", seq, last, last + 1, h, b, h);
    snprintf(rv, sizeof rv, "reshape(slice(slice(%s, 1, 0, 1), 2, %lld, %lld), [%lld, 1, %lld])", seq, h, 2 * h, b, h);
    char both[1300];
    if (bidi) snprintf(both, sizeof both, "concat([%s, %s], 1)", fw, rv);
    else snprintf(both, sizeof both, "%s", fw);
    if (layout) ox_emit(c, "%s = %s", y->nn, both);
    else ox_emit(c, "%s = transpose(%s, [1, 0, 2])", y->nn, both);
  }
  return 0;
}
