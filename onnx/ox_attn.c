/* ox_attn.c -- the attention subgraphs PyTorch exports (a hand-written
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
 * or, HuggingFace-style, three projections: x -> MatMul Wq [d, d] (-> Add
 * bq) -> Reshape -> Transpose into the scores, and k, v each src -> MatMul
 * [dc, d] (-> Add) -> Reshape -> Transpose(s), found backward from the
 * score and context products (src = x: self-attention, packed into Lathe's
 * qkv; another src: cross-attention, context=src). Besides the constant
 * causal mask, one Where on the scores with a run-time boolean condition
 * ([B, 1, 1, S] or [B, 1, T, S]: a padding mask) becomes mask=.
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
  int nodes[40]; /* the pattern's nodes after the first MatMul */
  int nn;
  int split, resh[3], softmax, mask, mask_kind, resh_out, last;
  int rmask, rmask_set; /* a runtime mask's Where (-1: none); set: its condition masks */
  int sep;              /* separate q, k, v projections (w, b) instead of one qkv */
  const ox_array *w[3], *b[3];
  ox_val *kv; /* what k and v are projected from: x, or the context */
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

/* The node after the current one that defines `name`, read once, of op
 * `op` (any when NULL): its index, or -1. */
static int producer(ox_ctx *c, const char *name, const char *op) {
  if (!name || ox_uses(c, name) != 1) return -1;
  for (int j = c->cur + 1; j < c->nnodes; j++) {
    node *m = c->nodes[j];
    if (c->skip[j]) continue;
    for (size_t k = 0; k < m->n_output; k++)
      if (m->output[k] && strcmp(m->output[k], name) == 0) return !op || op_is(c, j, op) ? j : -1;
  }
  return -1;
}

/* A bias Add after `cur` (a constant [D]); *b its values. The Add's output
 * name, `cur` when there is none, NULL when the Add is something else. */
static const char *bias_after(ox_ctx *c, attn *a, const char *cur, int64_t D, const ox_array **b) {
  int j = reader(c, cur, "Add");
  if (j < 0) return cur;
  ox_val *bv = other(c, j, cur);
  *b = bv ? ox_fixed(c, bv) : NULL;
  if (!*b || (*b)->n != D || bv->rank != 1) return NULL;
  return out0(c, add(a, j));
}

/* Separate projections: k or v (i = 1, 2) backward from the head value the
 * scores (or the context) read: Transpose(s) <- Reshape <- [Add b] <-
 * MatMul(src, W [dc, D]). k and v must read the same src (a->kv). */
static int proj_back(ox_ctx *c, attn *a, const char *hv, int i, int64_t D) {
  int jt = add(a, producer(c, hv, "Transpose"));
  if (jt < 0 || c->nodes[jt]->n_input < 1) return 0;
  if (i == 1 && perm_is(c, jt, "0132")) {
    jt = add(a, producer(c, c->nodes[jt]->input[0], "Transpose"));
    if (!perm_is(c, jt, "0213") || c->nodes[jt]->n_input < 1) return 0;
  } else if (!perm_is(c, jt, i == 1 ? "0231" : "0213")) {
    return 0;
  }
  int jr = a->resh[i] = add(a, producer(c, c->nodes[jt]->input[0], "Reshape"));
  if (jr < 0 || c->nodes[jr]->n_input < 1) return 0;
  const char *pv = c->nodes[jr]->input[0];
  int jm = producer(c, pv, NULL);
  if (op_is(c, jm, "Add") && c->nodes[jm]->n_input == 2) {
    node *m = c->nodes[jm];
    int k = producer(c, m->input[0], "MatMul") >= 0 ? 0 : 1;
    ox_val *bv = ox_in(c, m, 1 - k);
    a->b[i] = bv ? ox_fixed(c, bv) : NULL;
    if (!a->b[i] || a->b[i]->n != D || bv->rank != 1) return 0;
    add(a, jm);
    jm = producer(c, m->input[k], "MatMul");
  }
  if (jm < 0 || c->nodes[jm]->n_input != 2) return 0;
  add(a, jm);
  ox_val *src = ox_in(c, c->nodes[jm], 0), *wv = ox_in(c, c->nodes[jm], 1);
  a->w[i] = ox_fixed(c, wv);
  if (!src || !a->w[i] || ox_const(c, src) || !ox_is_float_dt(src->dt) || src->rank != 3 || wv->rank != 2 ||
      wv->d[1] != D || src->d[2] != wv->d[0])
    return 0;
  if (i == 2 && a->kv != src) return 0;
  a->kv = src;
  return 1;
}

/* Up to two masks after the scaled scores: a constant one (causal: a->mask)
 * and a runtime boolean one (a padding mask: a->rmask), each a Where to a
 * fill (checked later), the constant one also an Add of 0 / -inf. The value
 * after them, NULL when something else is there. */
static const char *masks(ox_ctx *c, attn *a, const char *cur) {
  for (int t = 0; t < 2; t++) {
    int j = reader(c, cur, NULL);
    if (op_is(c, j, "Where") && c->nodes[j]->n_input == 3 && !in_is(c, j, 0, cur)) {
      if (in_is(c, j, 1, cur) && in_is(c, j, 2, cur)) return NULL;
      int set = in_is(c, j, 2, cur);
      if (ox_pull(c, c->nodes[j]->input[0], a->nodes, a->nn) < 0) return NULL;
      ox_val *cv = ox_in(c, c->nodes[j], 0);
      if (cv && !ox_fixed(c, cv)) { /* a runtime condition: one only */
        if (a->rmask >= 0) return NULL;
        a->rmask = j, a->rmask_set = set;
      } else {
        if (a->mask >= 0) return NULL;
        a->mask = j, a->mask_kind = set ? MASK_WHERE_SET : MASK_WHERE_KEEP;
      }
    } else if (op_is(c, j, "Add") && a->mask < 0) {
      a->mask = j;
      a->mask_kind = MASK_ADD;
    } else {
      return cur;
    }
    cur = out0(c, add(a, j));
  }
  return cur;
}

/* The nodes from the first projection MatMul n to the output projection, by
 * their ops and attributes only; 1 when they are the pattern. Packed: n
 * multiplies by [d, 3d] and a Split makes q, k, v; separate (a->sep): n is
 * q's projection and k's and v's are found backward from the products. */
static int match_nodes(ox_ctx *c, node *n, int64_t D, attn *a) {
  const char *cur = n->output[0], *hv[3] = {NULL, NULL, NULL};
  if (a->sep) {
    cur = bias_after(c, a, cur, D, &a->b[0]);
    if (!cur || !(hv[0] = head_split(c, a, cur, 0))) return 0;
  } else {
    cur = bias_after(c, a, cur, 3 * D, &a->bqkv);
    if (!cur) return 0;
    int js = a->split = add(a, reader(c, cur, "Split"));
    if (js < 0 || c->nodes[js]->n_output != 3 || !in_is(c, js, 0, cur)) return 0;
    int64_t ax = ox_attr_i(c->nodes[js], "axis", 0), sz[3];
    if (ax != 2 && ax != -1) return 0;
    if (ox_attr_ints(c->nodes[js], "split", sz, 3) == 3 && (sz[0] != D || sz[1] != D || sz[2] != D)) return 0;
    for (int i = 0; i < 3; i++)
      if (!(hv[i] = head_split(c, a, c->nodes[js]->output[i], i))) return 0;
  }
  int jqk = add(a, reader(c, hv[0], "MatMul"));
  if (jqk < 0 || !in_is(c, jqk, 0, hv[0]) || c->nodes[jqk]->n_input != 2) return 0;
  if (a->sep && !proj_back(c, a, hv[1] = c->nodes[jqk]->input[1], 1, D)) return 0;
  if (!in_is(c, jqk, 1, hv[1]) || reader(c, hv[1], "MatMul") != jqk) return 0;
  cur = out0(c, jqk);
  /* the scale */
  int j = add(a, reader(c, cur, NULL));
  if (j < 0) return 0;
  int div = op_is(c, j, "Div");
  if (!div && !op_is(c, j, "Mul")) return 0;
  ox_val *sv = other(c, j, cur);
  const ox_array *sa = ox_fixed(c, sv);
  if (!sa || sa->n != 1 || (div && !in_is(c, j, 0, cur)) || ox_get_f(sa, 0) == 0) return 0;
  a->scale = div ? 1.0 / ox_get_f(sa, 0) : ox_get_f(sa, 0);
  cur = a->scaled = out0(c, j);
  if (!(cur = masks(c, a, cur))) return 0;
  j = add(a, reader(c, cur, NULL));
  if (!op_is(c, j, "Softmax")) return 0;
  int64_t sax = ox_attr_i(c->nodes[j], "axis", c->opset >= 13 ? -1 : 1);
  if (sax != -1 && sax != 3) return 0;
  cur = out0(c, j);
  int jav = add(a, reader(c, cur, "MatMul"));
  if (jav < 0 || !in_is(c, jav, 0, cur) || c->nodes[jav]->n_input != 2) return 0;
  if (a->sep && !proj_back(c, a, hv[2] = c->nodes[jav]->input[1], 2, D)) return 0;
  if (!in_is(c, jav, 1, hv[2]) || reader(c, hv[2], "MatMul") != jav) return 0;
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

/* The heads of a q/k/v Reshape of a projection of x ([B, T, H, dk] with
 * H dk = D); 0 when not. */
static int64_t heads_of(ox_ctx *c, attn *a, int j, const ox_val *x, int64_t D, int *err) {
  ox_val *s = pulled(c, a, j, 1, err);
  const ox_array *sa = s ? ox_fixed(c, s) : NULL;
  if (!sa || sa->n != 4 || !same_dim(s, sa, 0, x) || !same_dim(s, sa, 1, x) || (s->sv && (s->sv[2] || s->sv[3])))
    return 0;
  int64_t h = ox_get_i(sa, 2), dk = ox_get_i(sa, 3);
  if (h == -1 && dk > 0 && D % dk == 0) h = D / dk;
  if (dk == -1 && h > 0 && D % h == 0) dk = D / h;
  return h > 0 && dk > 0 && h <= D && dk <= D && h * dk == D ? h : 0; /* no overflow on hostile values */
}

/* The mask is causal: position (i, j) of [T, S] masked exactly when j > i
 * (top-left aligned, as Lathe's causal cross-attention). */
static int causal_mask(ox_ctx *c, attn *a, int64_t T, int64_t S, int *err) {
  int kind = a->mask_kind;
  /* the mask's operand: the Where's condition, or the Add's other input */
  int km = kind != MASK_ADD ? 0 : in_is(c, a->mask, 0, a->scaled) ? 1 : 0;
  ox_val *mv = pulled(c, a, a->mask, km, err);
  const ox_array *ma = mv ? ox_fixed(c, mv) : NULL;
  if (!ma || T < 1 || S < 1 || mv->rank < 2 || mv->d[mv->rank - 1] != S || mv->d[mv->rank - 2] != T ||
      ma->n != ox_mul(T, S))
    return 0;
  double fill = 0;
  if (kind != MASK_ADD) {
    ox_val *fv = pulled(c, a, a->mask, kind == MASK_WHERE_SET ? 1 : 2, err);
    const ox_array *fa = fv ? ox_fixed(c, fv) : NULL;
    if (!fa || fa->n != 1) return 0;
    fill = ox_get_f(fa, 0);
  }
  for (int64_t i = 0; i < T; i++)
    for (int64_t j = 0; j < S; j++) {
      int future = j > i;
      if (kind == MASK_ADD) {
        double v = ox_get_f(ma, i * S + j);
        if (future ? !(v <= -1e4) : v != 0) return 0;
      } else {
        int set = ox_get_i(ma, i * S + j) != 0;
        if ((kind == MASK_WHERE_SET ? set : !set) != future) return 0;
      }
    }
  return kind == MASK_ADD || fill <= -1e4;
}

/* The batch dimension of a and b agree: the same symbol or the same size. */
static int same_batch(const ox_val *a, const ox_val *b) {
  if (a->sym[0] || b->sym[0]) return a->sym[0] && b->sym[0] && strcmp(a->sym[0], b->sym[0]) == 0;
  return a->d[0] == b->d[0];
}

/* A runtime mask: Where(cond, fill, s) (cond true = masked) or Where(cond,
 * s, fill) (true = attends) with cond bool [B, 1, 1, S] (per key) or [B, 1,
 * T, S] (per query and key) and a fill <= -1e4: the language's mask=. */
static int runtime_mask(ox_ctx *c, attn *a, const ox_val *x, int *err) {
  node *m = c->nodes[a->rmask];
  ox_val *cv = ox_in(c, m, 0), *fv = pulled(c, a, a->rmask, a->rmask_set ? 1 : 2, err);
  const ox_array *fa = fv ? ox_fixed(c, fv) : NULL;
  if (!cv || !fa || fa->n != 1 || !(ox_get_f(fa, 0) <= -1e4) || cv->dt != LATHE_BOOL || cv->rank != 4) return 0;
  int64_t T = x->d[1], S = a->kv->d[1];
  return same_batch(cv, x) && cv->d[1] == 1 && (cv->d[2] == 1 || cv->d[2] == T) && cv->d[3] == S && !cv->sym[1] &&
         !cv->sym[2] && !cv->sym[3];
}

/* The values beside the nodes: heads, the output shape, the scale, the masks. */
static int check_values(ox_ctx *c, attn *a, const ox_val *x, int64_t D, int *err) {
  int64_t H = 0;
  for (int i = 0; i < 3; i++) {
    int64_t h = heads_of(c, a, a->resh[i], i ? a->kv : x, D, err);
    if (!h || (H && h != H)) return 0;
    H = h;
  }
  if (a->kv != x && (!same_batch(a->kv, x) || a->kv->d[1] < 1)) return 0;
  ox_val *s = pulled(c, a, a->resh_out, 1, err);
  const ox_array *sa = s ? ox_fixed(c, s) : NULL;
  if (!sa || sa->n != 3 || !same_dim(s, sa, 0, x) || !same_dim(s, sa, 1, x) || (s->sv && s->sv[2]) ||
      (ox_get_i(sa, 2) != D && ox_get_i(sa, 2) != -1))
    return 0;
  double dk = (double)(D / H);
  if (fabs(a->scale * sqrt(dk) - 1) > 1e-5) return 0;
  a->H = H;
  a->causal = a->mask_kind != MASK_NONE;
  if (a->rmask >= 0 && !runtime_mask(c, a, x, err)) return 0;
  return !a->causal || causal_mask(c, a, x->d[1], a->kv->d[1], err);
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

/* Columns side by side: [rows, w0 | w1 | w2] from the given [rows, D]
 * matrices (zeros for a missing one, rows 1: biases), as Lathe's packed qkv
 * or kv parameters. */
static void packed(ox_ctx *c, const char *L, const char *what, const ox_array *const *w, int nw, int64_t rows,
                   int64_t D, int bias) {
  ox_array o = {0};
  ox_array_alloc(&o, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, rows * nw * D);
  for (int i = 0; i < nw; i++)
    for (int64_t r = 0; w[i] && r < rows; r++)
      for (int64_t k = 0; k < D; k++) o.f[r * nw * D + i * D + k] = (float)ox_get_f(w[i], r * D + k);
  param(c, L, what, &o, bias ? nw * D : rows, bias ? 0 : nw * D);
  ox_array_free(&o);
}

/* The block's name: the projection's parent + ".attn" ("/h.0/qkv/MatMul" ->
 * "h.0.attn", "attn.q.weight" -> "attn"). */
static void block_name(ox_ctx *c, node *n, ox_val *wv, char *L, size_t size) {
  char base[300], want[320];
  ox_layer_name(c, n, wv, base, sizeof base);
  char *dot = strrchr(base, '.');
  if (dot) *dot = 0;
  size_t l = dot ? strlen(base) : 0;
  if (l >= 4 && strcmp(base + l - 4, "attn") == 0) snprintf(want, sizeof want, "%s.weight", base);
  else snprintf(want, sizeof want, "%s%sattn.weight", dot ? base : "", dot ? "." : "");
  ox_val named = {.onnx = want};
  ox_layer_name(c, n, &named, L, size);
}

/* The runtime mask as the language's mask= (true = attends): cond [B, 1, 1,
 * S] -> [B, S], [B, 1, T, S] -> [B, T, S], negated where cond masks. */
static const char *mask_arg(ox_ctx *c, attn *a, const char *L, char *buf, size_t size) {
  if (a->rmask < 0) return "";
  ox_val *cv = ox_in(c, c->nodes[a->rmask], 0);
  const char *cr = ox_ref(c, cv);
  if (!cr) return NULL;
  char shp[80];
  if (cv->d[2] == 1) snprintf(shp, sizeof shp, "[-1, %lld]", (long long)cv->d[3]);
  else snprintf(shp, sizeof shp, "[-1, %lld, %lld]", (long long)cv->d[2], (long long)cv->d[3]);
  char base[340];
  snprintf(base, sizeof base, "%s_mask", L);
  const char *m = ox_fresh(c, base);
  ox_emit(c, "%s = reshape(%s, %s)", m, cr, shp);
  if (a->rmask_set) ox_emit(c, "%s = equal(%s, not_equal(%s, %s))", m, m, m, m); /* not */
  snprintf(buf, size, ", mask=%s", m);
  return buf;
}

int ox_attention_pattern(ox_ctx *c, node *n) {
  ox_val *x = ox_in(c, n, 0), *wv = ox_in(c, n, 1);
  const ox_array *wq = ox_fixed(c, wv);
  if (!x || !wq || x->rank != 3 || !ox_is_float_dt(x->dt) || wv->rank != 2) return 0;
  int64_t D = wv->d[0];
  attn a = {.mask = -1, .rmask = -1, .kv = x};
  a.sep = wv->d[1] == D; /* q's own projection, k and v found from the scores */
  if (D < 1 || (wv->d[1] != 3 * D && !a.sep) || x->d[2] != D) return 0;
  a.w[0] = wq;
  if (!match_nodes(c, n, D, &a)) return 0;
  int err = 0;
  if (!check_values(c, &a, x, D, &err)) return err ? -1 : 0;
  const char *xr = ox_ref(c, x), *cr = a.kv != x ? ox_ref(c, a.kv) : NULL;
  char L[300], mbuf[320], ctx[320] = "";
  block_name(c, n, wv, L, sizeof L);
  const char *ma = mask_arg(c, &a, L, mbuf, sizeof mbuf);
  if (!xr || !ma || (a.kv != x && !cr)) return -1;
  if (!a.sep) {
    param(c, L, "qkv.weight", wq, D, 3 * D);
    param(c, L, "qkv.bias", a.bqkv, 3 * D, 0);
  } else if (a.kv == x) { /* separate self-attention: the three packed as Lathe's qkv */
    packed(c, L, "qkv.weight", a.w, 3, D, D, 0);
    packed(c, L, "qkv.bias", a.b, 3, 1, D, 1);
  } else { /* cross-attention: q alone, k and v packed as Lathe's kv */
    param(c, L, "q.weight", wq, D, D);
    param(c, L, "q.bias", a.b[0], D, 0);
    packed(c, L, "kv.weight", a.w + 1, 2, a.kv->d[2], D, 0);
    packed(c, L, "kv.bias", a.b + 1, 2, 1, D, 1);
    snprintf(ctx, sizeof ctx, ", context=%s", cr);
  }
  param(c, L, "proj.weight", a.wp, D, D);
  param(c, L, "proj.bias", a.bp, D, 0);
  for (int i = 0; i < a.nn; i++) c->skip[a.nodes[i]] = 1;
  ox_val *y = ox_out_like(c, c->nodes[a.last], 0, x, -1);
  ox_emit(c, "%s = attention(%s, %lld, causal=%s%s%s, name=\"%s\")", y->nn, xr, (long long)a.H,
          a.causal ? "true" : "false", ma, ctx, L);
  return 1;
}
