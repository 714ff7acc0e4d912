/* ox_attn.c -- the self-attention subgraph PyTorch exports (a hand-written
 * block: torch.onnx.export, opsets 13 to 17) as the language's attention
 * layer, so the fused kernels run instead of a dozen primitive ops:
 *
 *   x -> MatMul Wqkv [d, 3d] -> Add b -> Split in three on the last axis
 *   q, v: Reshape [B, T, H, dk] -> Transpose (0 2 1 3)
 *   k:    Reshape -> Transpose (0 2 3 1), or (0 2 1 3) then (0 1 3 2)
 *   MatMul(q, k) -> Div sqrt(dk) or Mul 1/sqrt(dk) -> optional causal mask
 *   (Where(mask, -inf, s), Where(keep, s, -inf) or Add of 0 / -inf)
 *   -> Softmax(-1) -> MatMul(., v) -> Transpose (0 2 1 3) -> Reshape [B, T, d]
 *   -> MatMul Wp [d, d] -> Add bp
 *
 * Every value on that path must be read only by the next node. The nodes
 * beside it that compute the reshapes' shapes and the mask (Shape, Gather,
 * Concat, ConstantOfShape, Trilu, Not ...) are imported early (ox_pull) so
 * their values can be checked: the shapes give the heads, the mask must be
 * causal, the scale 1/sqrt(dk). When anything differs the MatMul is not the
 * start of a pattern and the nodes import one by one as before. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "ox_impl.h"

typedef const Onnx__NodeProto node;

enum { MASK_NONE, MASK_WHERE_SET, MASK_WHERE_KEEP, MASK_ADD };

typedef struct {
  int nodes[24]; /* the pattern's nodes after the first MatMul */
  int nn;
  int split, resh[3], softmax, mask, mask_kind, resh_out, last;
  const ox_array *bqkv, *wp, *bp;
  ox_val *wpv;
  double scale; /* what the scores are multiplied by */
  const char *scaled; /* the scaled scores' ONNX name */
  int64_t H;
  int causal;
} attn;

/* The one node reading `name` (op `op`, any when NULL): its index, or -1. */
static int reader(ox_ctx *c, const char *name, const char *op) {
  if (!name || ox_uses(c, name) != 1) return -1;
  for (int j = c->cur + 1; j < c->nnodes; j++) {
    node *m = c->nodes[j];
    if (c->skip[j]) continue;
    for (size_t k = 0; k < m->n_input; k++)
      if (m->input[k] && strcmp(m->input[k], name) == 0)
        return !op || (m->op_type && strcmp(m->op_type, op) == 0) ? j : -1;
  }
  return -1;
}

static int add(attn *a, int j) {
  if (j >= 0 && a->nn < (int)(sizeof a->nodes / sizeof a->nodes[0])) a->nodes[a->nn++] = j;
  return j;
}

static const char *out0(ox_ctx *c, int j) { return c->nodes[j]->n_output ? c->nodes[j]->output[0] : NULL; }

static int op_is(ox_ctx *c, int j, const char *op) {
  return j >= 0 && c->nodes[j]->op_type && strcmp(c->nodes[j]->op_type, op) == 0;
}

/* input k of node j is the value called name */
static int in_is(ox_ctx *c, int j, int k, const char *name) {
  node *m = c->nodes[j];
  return name && k < (int)m->n_input && m->input[k] && strcmp(m->input[k], name) == 0;
}

/* the other input of a two-input node j than `name` */
static ox_val *other(ox_ctx *c, int j, const char *name) {
  node *m = c->nodes[j];
  if (m->n_input != 2) return NULL;
  return ox_in(c, m, in_is(c, j, 0, name) ? 1 : 0);
}

static int perm_is(ox_ctx *c, int j, const char *want) {
  int64_t p[OX_MAXDIM];
  if (j < 0 || ox_attr_ints(c->nodes[j], "perm", p, OX_MAXDIM) != 4) return 0;
  for (int i = 0; i < 4; i++)
    if (p[i] != want[i] - '0') return 0;
  return 1;
}

/* Reshape -> Transpose from a Split output; k's transposes end in (0 2 3 1).
 * The Transpose's output name, or NULL. */
static const char *head_split(ox_ctx *c, attn *a, const char *v, int i) {
  int jr = add(a, reader(c, v, "Reshape"));
  if (jr < 0 || !in_is(c, jr, 0, v)) return NULL;
  a->resh[i] = jr;
  int jt = add(a, reader(c, out0(c, jr), "Transpose"));
  if (i != 1) return perm_is(c, jt, "0213") ? out0(c, jt) : NULL;
  if (perm_is(c, jt, "0231")) return out0(c, jt);
  if (!perm_is(c, jt, "0213")) return NULL;
  int j2 = add(a, reader(c, out0(c, jt), "Transpose"));
  return perm_is(c, j2, "0132") ? out0(c, j2) : NULL;
}

/* The nodes from the qkv MatMul n to the projection, by their ops and
 * attributes only; 1 when they are the pattern. */
static int match_nodes(ox_ctx *c, node *n, int64_t D, attn *a) {
  const char *cur = n->output[0];
  int j = reader(c, cur, "Add");
  if (j >= 0) {
    ox_val *b = other(c, j, cur);
    a->bqkv = ox_fixed(c, b);
    if (!a->bqkv || a->bqkv->n != 3 * D || b->rank != 1) return 0;
    cur = out0(c, add(a, j));
  }
  int js = a->split = add(a, reader(c, cur, "Split"));
  if (js < 0 || c->nodes[js]->n_output != 3 || !in_is(c, js, 0, cur)) return 0;
  int64_t ax = ox_attr_i(c->nodes[js], "axis", 0), sz[3];
  if (ax != 2 && ax != -1) return 0;
  if (ox_attr_ints(c->nodes[js], "split", sz, 3) == 3 && (sz[0] != D || sz[1] != D || sz[2] != D)) return 0;
  const char *hv[3];
  for (int i = 0; i < 3; i++)
    if (!(hv[i] = head_split(c, a, c->nodes[js]->output[i], i))) return 0;
  int jqk = add(a, reader(c, hv[0], "MatMul"));
  if (jqk < 0 || !in_is(c, jqk, 0, hv[0]) || !in_is(c, jqk, 1, hv[1]) || reader(c, hv[1], "MatMul") != jqk) return 0;
  cur = out0(c, jqk);
  /* the scale */
  j = add(a, reader(c, cur, NULL));
  if (j < 0) return 0;
  int div = op_is(c, j, "Div");
  if (!div && !op_is(c, j, "Mul")) return 0;
  ox_val *sv = other(c, j, cur);
  const ox_array *sa = ox_fixed(c, sv);
  if (!sa || sa->n != 1 || (div && !in_is(c, j, 0, cur)) || ox_get_f(sa, 0) == 0) return 0;
  a->scale = div ? 1.0 / ox_get_f(sa, 0) : ox_get_f(sa, 0);
  cur = a->scaled = out0(c, j);
  /* the mask */
  j = add(a, reader(c, cur, NULL));
  if (j < 0) return 0;
  if (op_is(c, j, "Where") && c->nodes[j]->n_input == 3 && !in_is(c, j, 0, cur)) {
    a->mask = j;
    a->mask_kind = in_is(c, j, 2, cur) ? MASK_WHERE_SET : MASK_WHERE_KEEP;
    if (in_is(c, j, 1, cur) && in_is(c, j, 2, cur)) return 0;
    cur = out0(c, j);
    j = add(a, reader(c, cur, NULL));
  } else if (op_is(c, j, "Add")) {
    a->mask = j;
    a->mask_kind = MASK_ADD;
    cur = out0(c, j);
    j = add(a, reader(c, cur, NULL));
  }
  if (!op_is(c, j, "Softmax")) return 0;
  int64_t sax = ox_attr_i(c->nodes[j], "axis", c->opset >= 13 ? -1 : 1);
  if (sax != -1 && sax != 3) return 0;
  cur = out0(c, j);
  int jav = add(a, reader(c, cur, "MatMul"));
  if (jav < 0 || !in_is(c, jav, 0, cur) || !in_is(c, jav, 1, hv[2]) || reader(c, hv[2], "MatMul") != jav) return 0;
  int jt = add(a, reader(c, out0(c, jav), "Transpose"));
  if (!perm_is(c, jt, "0213")) return 0;
  int jr = a->resh_out = add(a, reader(c, out0(c, jt), "Reshape"));
  if (jr < 0) return 0;
  int jp = add(a, reader(c, out0(c, jr), "MatMul"));
  if (jp < 0 || !in_is(c, jp, 0, out0(c, jr))) return 0;
  a->wpv = ox_in(c, c->nodes[jp], 1);
  a->wp = ox_fixed(c, a->wpv);
  if (!a->wp || a->wpv->rank != 2 || a->wpv->d[0] != D || a->wpv->d[1] != D) return 0;
  a->last = jp;
  cur = out0(c, jp);
  j = reader(c, cur, "Add");
  if (j >= 0) {
    ox_val *b = other(c, j, cur);
    a->bp = ox_fixed(c, b);
    if (a->bp && a->bp->n == D && b->rank == 1) a->last = add(a, j);
    else a->bp = NULL;
  }
  return a->nn < (int)(sizeof a->nodes / sizeof a->nodes[0]);
}

/* Input 1 of node j (a Reshape's shape), imported now; NULL when it cannot be. */
static ox_val *pulled(ox_ctx *c, attn *a, int j, int k, int *err) {
  node *m = c->nodes[j];
  if (k >= (int)m->n_input || !m->input[k] || !*m->input[k]) return NULL;
  int r = ox_pull(c, m->input[k], a->nodes, a->nn);
  if (r < 0) *err = 1;
  return r > 0 ? ox_in(c, m, k) : NULL;
}

/* Shape entry i reads as x's dimension i: the same number, the same
 * symbolic name, or 0 (copy). */
static int same_dim(const ox_val *s, const ox_array *sa, int i, const ox_val *x) {
  if (s->sv && s->sv[i]) return x->sym[i] && strcmp(s->sv[i], x->sym[i]) == 0;
  int64_t e = ox_get_i(sa, i);
  return e == 0 || (x->d[i] > 0 && e == x->d[i]);
}

/* The heads of a q/k/v Reshape ([B, T, H, dk] with H dk = d); 0 when not. */
static int64_t heads_of(ox_ctx *c, attn *a, int j, const ox_val *x, int *err) {
  ox_val *s = pulled(c, a, j, 1, err);
  const ox_array *sa = s ? ox_fixed(c, s) : NULL;
  if (!sa || sa->n != 4 || !same_dim(s, sa, 0, x) || !same_dim(s, sa, 1, x) || (s->sv && (s->sv[2] || s->sv[3])))
    return 0;
  int64_t D = x->d[2], h = ox_get_i(sa, 2), dk = ox_get_i(sa, 3);
  if (h == -1 && dk > 0 && D % dk == 0) h = D / dk;
  if (dk == -1 && h > 0 && D % h == 0) dk = D / h;
  return h > 0 && dk > 0 && h <= D && dk <= D && h * dk == D ? h : 0; /* no overflow on hostile values */
}

/* The mask is causal: position (i, j) masked exactly when j > i. */
static int causal_mask(ox_ctx *c, attn *a, int64_t T, int *err) {
  int kind = a->mask_kind;
  /* the mask's operand: the Where's condition, or the Add's other input */
  int km = kind != MASK_ADD ? 0 : in_is(c, a->mask, 0, a->scaled) ? 1 : 0;
  ox_val *mv = pulled(c, a, a->mask, km, err);
  const ox_array *ma = mv ? ox_fixed(c, mv) : NULL;
  if (!ma || T < 1 || mv->rank < 2 || mv->d[mv->rank - 1] != T || mv->d[mv->rank - 2] != T || ma->n != ox_mul(T, T)) return 0;
  double fill = 0;
  if (kind != MASK_ADD) {
    ox_val *fv = pulled(c, a, a->mask, kind == MASK_WHERE_SET ? 1 : 2, err);
    const ox_array *fa = fv ? ox_fixed(c, fv) : NULL;
    if (!fa || fa->n != 1) return 0;
    fill = ox_get_f(fa, 0);
  }
  for (int64_t i = 0; i < T; i++)
    for (int64_t j = 0; j < T; j++) {
      int future = j > i;
      if (kind == MASK_ADD) {
        double v = ox_get_f(ma, i * T + j);
        if (future ? !(v <= -1e4) : v != 0) return 0;
      } else {
        int set = ox_get_i(ma, i * T + j) != 0;
        if ((kind == MASK_WHERE_SET ? set : !set) != future) return 0;
      }
    }
  return kind == MASK_ADD || fill <= -1e4;
}

/* The values beside the nodes: heads, the output shape, the scale, the mask. */
static int check_values(ox_ctx *c, attn *a, const ox_val *x, int *err) {
  int64_t H = 0;
  for (int i = 0; i < 3; i++) {
    int64_t h = heads_of(c, a, a->resh[i], x, err);
    if (!h || (H && h != H)) return 0;
    H = h;
  }
  ox_val *s = pulled(c, a, a->resh_out, 1, err);
  const ox_array *sa = s ? ox_fixed(c, s) : NULL;
  if (!sa || sa->n != 3 || !same_dim(s, sa, 0, x) || !same_dim(s, sa, 1, x) || (s->sv && s->sv[2]) ||
      (ox_get_i(sa, 2) != x->d[2] && ox_get_i(sa, 2) != -1))
    return 0;
  double dk = (double)(x->d[2] / H);
  if (fabs(a->scale * sqrt(dk) - 1) > 1e-5) return 0;
  a->H = H;
  a->causal = a->mask_kind != MASK_NONE;
  return !a->causal || causal_mask(c, a, x->d[1], err);
}

/* Parameter L.what of shape [rows] (cols 0) or [rows, cols]: v, or zeros
 * for a bias the model does not have. */
static void param(ox_ctx *c, const char *L, const char *what, const ox_array *v, int64_t rows, int64_t cols) {
  char nm[400];
  int64_t d[2] = {rows, cols};
  ox_array zero = {0};
  if (!v) ox_array_alloc(&zero, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, cols ? rows * cols : rows);
  snprintf(nm, sizeof nm, "%s.%s", L, what);
  ox_add_param(c, nm, v ? v : &zero, d, cols ? 2 : 1, 0);
  ox_array_free(&zero);
}

int ox_attention_pattern(ox_ctx *c, node *n) {
  ox_val *x = ox_in(c, n, 0), *wv = ox_in(c, n, 1);
  const ox_array *wq = ox_fixed(c, wv);
  if (!x || !wq || x->rank != 3 || !ox_is_float_dt(x->dt) || wv->rank != 2) return 0;
  int64_t D = wv->d[0];
  if (D < 1 || wv->d[1] != 3 * D || x->d[2] != D) return 0;
  attn a = {.mask = -1};
  if (!match_nodes(c, n, D, &a)) return 0;
  int err = 0;
  if (!check_values(c, &a, x, &err)) return err ? -1 : 0;
  const char *xr = ox_ref(c, x);
  if (!xr) return -1;
  /* the layer's name: the qkv layer's parent + ".attn" ("/h.0/qkv/MatMul" -> "h.0.attn") */
  char base[300], L[300];
  ox_layer_name(c, n, wv, base, sizeof base);
  char *dot = strrchr(base, '.');
  if (dot) *dot = 0;
  size_t l = dot ? strlen(base) : 0;
  char want[320];
  if (l >= 4 && strcmp(base + l - 4, "attn") == 0) snprintf(want, sizeof want, "%s.weight", base);
  else snprintf(want, sizeof want, "%s%sattn.weight", dot ? base : "", dot ? "." : "");
  ox_val named = {.onnx = want};
  ox_layer_name(c, n, &named, L, sizeof L);
  param(c, L, "qkv.weight", wq, D, 3 * D);
  param(c, L, "qkv.bias", a.bqkv, 3 * D, 0);
  param(c, L, "proj.weight", a.wp, D, D);
  param(c, L, "proj.bias", a.bp, D, 0);
  for (int i = 0; i < a.nn; i++) c->skip[a.nodes[i]] = 1;
  ox_val *y = ox_out_like(c, c->nodes[a.last], 0, x, -1);
  ox_emit(c, "%s = attention(%s, %lld, causal=%s, name=\"%s\")", y->nn, xr, (long long)a.H, a.causal ? "true" : "false", L);
  return 1;
}
