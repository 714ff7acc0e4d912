/* ox_ops.c -- the ONNX operators the importer reads, one handler each (the
 * table at the end): elementwise ops and activations as the language's
 * expressions, data movement as reshape/transpose/slice/concat, integer
 * shape arithmetic (Shape, Gather on shapes, Concat of constants ...)
 * folded at import time. Layers (Gemm/MatMul -> dense, Conv, the
 * normalisations, recurrences): ox_layers.c. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ox_impl.h"

#define DT(x) ONNX__TENSOR_PROTO__DATA_TYPE__##x
typedef const Onnx__NodeProto node;

/* ---- helpers ---- */

static ox_array *new_array(int dtype, int rank, const int64_t *d) {
  ox_array *a = calloc(1, sizeof *a);
  int64_t n = 1;
  for (int i = 0; i < rank; i++) n *= d[i];
  if (!a || ox_array_alloc(a, dtype, n)) abort();
  a->rank = rank;
  for (int i = 0; i < rank; i++) a->d[i] = d[i];
  return a;
}

/* An operand of elementwise arithmetic as a number: a one-element constant
 * that does not widen the result's rank beside a peer of its dtype. */
static int literal(ox_ctx *c, ox_val *v, const ox_val *peer, char *buf, size_t n) {
  const ox_array *a = ox_fixed(c, v);
  return a && a->n == 1 && v->rank <= peer->rank && peer->dt == v->dt &&
         ox_numeric_literal(buf, n, ox_get_f(a, 0), v->dt) == 0;
}

/* The operand as text: a number (when `lit`) or its tensor. */
static const char *operand(ox_ctx *c, ox_val *v, int lit, char *buf, size_t n) {
  if (lit) return buf;
  const char *r = ox_ref(c, v);
  if (!r) return NULL;
  snprintf(buf, n, "%s", r);
  return buf;
}

/* Replace every X in tmpl with x, A with a, B with b (whole words only). */
static void subst(char *out, size_t n, const char *tmpl, const char *x, const char *a, const char *b) {
  size_t k = 0;
  for (const char *p = tmpl; *p && k + 1 < n; p++) {
    const char *rep = NULL;
    int word = (p == tmpl || !(p[-1] == '_' || (p[-1] >= 'a' && p[-1] <= 'z') || (p[-1] >= 'A' && p[-1] <= 'Z'))) &&
               !(p[1] == '_' || (p[1] >= 'a' && p[1] <= 'z') || (p[1] >= 'A' && p[1] <= 'Z') || (p[1] >= '0' && p[1] <= '9'));
    if (word && *p == 'X') rep = x;
    else if (word && *p == 'A') rep = a;
    else if (word && *p == 'B') rep = b;
    if (rep) {
      size_t l = strlen(rep);
      if (k + l >= n) break;
      memcpy(out + k, rep, l);
      k += l;
    } else {
      out[k++] = *p;
    }
  }
  out[k] = 0;
}

static int want_float(ox_ctx *c, const ox_val *x) {
  if (ox_is_float_dt(x->dt)) return 0;
  return ox_unsup(c, NULL, "%s on %s tensors (Lathe computes it on floating-point ones)", c->node->op_type, ox_dt_name(x->dt));
}

/* ---- elementwise, one input ---- */

typedef struct {
  const char *op, *tmpl; /* X the input, A and B the attributes */
  const char *a_name;
  double a_dflt;
  const char *b_name;
  double b_dflt;
  int any_type; /* integer tensors too */
} unary_row;

static const unary_row unary_rows[] = {
  {"Relu", "relu(X)", NULL, 0, NULL, 0, 0},
  {"Sigmoid", "sigmoid(X)", NULL, 0, NULL, 0, 0},
  {"Tanh", "tanh(X)", NULL, 0, NULL, 0, 0},
  {"Exp", "exp(X)", NULL, 0, NULL, 0, 0},
  {"Log", "log(X)", NULL, 0, NULL, 0, 0},
  {"Sqrt", "sqrt(X)", NULL, 0, NULL, 0, 0},
  {"Abs", "abs(X)", NULL, 0, NULL, 0, 1},
  {"Neg", "neg(X)", NULL, 0, NULL, 0, 1},
  {"Reciprocal", "1.0 / X", NULL, 0, NULL, 0, 0},
  {"Softsign", "X / (1.0 + abs(X))", NULL, 0, NULL, 0, 0},
  {"Softplus", "log(exp(X) + 1.0)", NULL, 0, NULL, 0, 0},
  {"Mish", "X * tanh(log(exp(X) + 1.0))", NULL, 0, NULL, 0, 0},
  {"LeakyRelu", "leaky_relu(X, alpha=A)", "alpha", 0.01, NULL, 0, 0},
  {"Elu", "where(greater(X, 0.0), X, A * (exp(X) - 1.0))", "alpha", 1.0, NULL, 0, 0},
  {"Selu", "where(greater(X, 0.0), B * X, B * A * (exp(X) - 1.0))", "alpha", 1.67326319217681884765625, "gamma",
   1.05070102214813232421875, 0},
  {"Celu", "relu(X) + where(less(X, 0.0), A * (exp(X / A) - 1.0), 0.0)", "alpha", 1.0, NULL, 0, 0},
  {"HardSigmoid", "clamp(A * X + B, min=0.0, max=1.0)", "alpha", 0.2, "beta", 0.5, 0},
  {"HardSwish", "X * clamp(X / 6.0 + 0.5, min=0.0, max=1.0)", NULL, 0, NULL, 0, 0},
  {"ThresholdedRelu", "where(greater(X, A), X, 0.0)", "alpha", 1.0, NULL, 0, 0},
  {"Shrink", "where(less(X, -A), X + B, where(greater(X, A), X - B, 0.0))", "lambd", 0.5, "bias", 0.0, 0},
  {"Sign", "where(greater(X, 0.0), 1.0, where(less(X, 0.0), -1.0, 0.0))", NULL, 0, NULL, 0, 0},
  /* the hyperbolic functions and their inverses through exp, log and sqrt */
  {"Sinh", "(exp(X) - exp(neg(X))) * 0.5", NULL, 0, NULL, 0, 0},
  {"Cosh", "(exp(X) + exp(neg(X))) * 0.5", NULL, 0, NULL, 0, 0},
  {"Asinh", "log(X + sqrt(X * X + 1.0))", NULL, 0, NULL, 0, 0},
  {"Acosh", "log(X + sqrt(X * X - 1.0))", NULL, 0, NULL, 0, 0},
  {"Atanh", "0.5 * log((1.0 + X) / (1.0 - X))", NULL, 0, NULL, 0, 0},
};

static int h_unary(ox_ctx *c, node *n) {
  const unary_row *row = NULL;
  for (size_t i = 0; i < sizeof unary_rows / sizeof unary_rows[0]; i++)
    if (strcmp(unary_rows[i].op, n->op_type) == 0) row = &unary_rows[i];
  ox_val *x = ox_need(c, n, 0);
  if (!x || !row) return -1;
  const ox_array *xa = ox_fixed(c, x);
  if (xa && row->any_type && xa->n <= 64) { /* shape arithmetic: Neg, Abs of constants */
    ox_array *o = new_array(xa->dtype, xa->rank, xa->d);
    int neg = strcmp(row->op, "Neg") == 0;
    for (int64_t i = 0; i < xa->n; i++) {
      if (o->f) o->f[i] = neg ? -xa->f[i] : fabs(xa->f[i]);
      else o->i[i] = xa->i[i] == INT64_MIN ? INT64_MIN : neg ? -xa->i[i] : xa->i[i] < 0 ? -xa->i[i] : xa->i[i];
    }
    ox_out_const(c, n, 0, o);
    return 0;
  }
  if (!row->any_type && want_float(c, x)) return -1;
  const char *xr = ox_ref(c, x);
  if (!xr) return -1;
  char a[64] = "", b[64] = "", e[2048];
  if (row->a_name) ox_numeric_literal(a, sizeof a, ox_attr_f(n, row->a_name, row->a_dflt), LATHE_F32);
  if (row->b_name) ox_numeric_literal(b, sizeof b, ox_attr_f(n, row->b_name, row->b_dflt), LATHE_F32);
  subst(e, sizeof e, row->tmpl, xr, a, b);
  ox_val *y = ox_out_like(c, n, 0, x, -1);
  ox_emit(c, "%s = %s", y->nn, e);
  return 0;
}

static int h_isnan(ox_ctx *c, node *n) {
  ox_val *x = ox_need(c, n, 0);
  if (!x || want_float(c, x)) return -1;
  const char *xr = ox_ref(c, x);
  if (!xr) return -1;
  ox_val *y = ox_out_like(c, n, 0, x, LATHE_BOOL);
  ox_emit(c, "%s = not_equal(%s, %s)", y->nn, xr, xr);
  return 0;
}

static int h_isinf(ox_ctx *c, node *n) {
  ox_val *x = ox_need(c, n, 0);
  if (!x || want_float(c, x)) return -1;
  const char *xr = ox_ref(c, x);
  if (!xr) return -1;
  int neg = (int)ox_attr_i(n, "detect_negative", 1), pos = (int)ox_attr_i(n, "detect_positive", 1);
  ox_val *y = ox_out_like(c, n, 0, x, LATHE_BOOL);
  const char *big = "3.4028234663852886e38"; /* FLT_MAX: only an infinity lies beyond */
  if (neg && pos) ox_emit(c, "%s = greater(abs(%s), %s)", y->nn, xr, big);
  else if (pos) ox_emit(c, "%s = greater(%s, %s)", y->nn, xr, big);
  else if (neg) ox_emit(c, "%s = less(%s, (-%s))", y->nn, xr, big);
  else ox_emit(c, "%s = not_equal(%s, %s)", y->nn, xr, xr); /* NaN is never infinite: all false unless NaN... */
  if (!neg && !pos) ox_emit(c, "%s = less(%s, %s)", y->nn, y->nn, y->nn);
  return 0;
}

static int h_not(ox_ctx *c, node *n) {
  ox_val *x = ox_need(c, n, 0);
  if (!x) return -1;
  const ox_array *xa = ox_fixed(c, x);
  if (xa && xa->i) { /* folded: PyTorch's causal masks are ~tril(ones) of constants */
    ox_array *o = new_array(DT(BOOL), xa->rank, xa->d);
    for (int64_t i = 0; i < o->n; i++) o->i[i] = !xa->i[i];
    ox_out_const(c, n, 0, o);
    return 0;
  }
  const char *xr = ox_ref(c, x);
  if (!xr) return -1;
  ox_val *y = ox_out_like(c, n, 0, x, LATHE_BOOL);
  ox_emit(c, "%s = equal(%s, not_equal(%s, %s))", y->nn, xr, xr, xr);
  return 0;
}

static int h_identity(ox_ctx *c, node *n) {
  ox_val *x = ox_need(c, n, 0);
  if (!x) return -1;
  if (n->n_output > 1 && n->output[1] && *n->output[1]) { /* inference: the mask keeps everything */
    if (strcmp(n->op_type, "Dropout") != 0) return ox_unsup(c, NULL, "output 1 of %s", n->op_type);
    const char *xr = ox_ref(c, x);
    if (!xr) return -1;
    ox_val *mk = ox_out_like(c, n, 1, x, LATHE_BOOL);
    ox_emit(c, "%s = equal(less(%s, %s), less(%s, %s))", mk->nn, xr, xr, xr, xr);
  }
  if (strcmp(n->op_type, "Dropout") == 0 && ox_in(c, n, 2)) {
    const ox_array *t = ox_const(c, ox_in(c, n, 2));
    const ox_array *ra = ox_in(c, n, 1) ? ox_const(c, ox_in(c, n, 1)) : NULL;
    int zero_ratio = ra && ra->n == 1 && ox_get_f(ra, 0) == 0; /* training with ratio 0 keeps everything too */
    if ((!t || ox_get_i(t, 0) != 0) && !zero_ratio)
      return ox_unsup(c, NULL, "Dropout in training mode (training_mode must be a constant false, or the ratio 0)");
  }
  return ox_alias(c, n, 0, x);
}

/* ---- elementwise, two or more inputs ---- */

typedef struct {
  const char *op, *tmpl; /* A and B the operands */
  int result;            /* -1: the operands' dtype, else a lathe_dtype */
  int float_only;
} binary_row;

static const binary_row binary_rows[] = {
  {"Add", "A + B", -1, 0},
  {"Sub", "A - B", -1, 0},
  {"Mul", "A * B", -1, 0},
  {"Div", "A / B", -1, 1},
  {"Less", "less(A, B)", LATHE_BOOL, 0},
  {"LessOrEqual", "less_equal(A, B)", LATHE_BOOL, 0},
  {"Greater", "greater(A, B)", LATHE_BOOL, 0},
  {"GreaterOrEqual", "greater_equal(A, B)", LATHE_BOOL, 0},
  {"Equal", "equal(A, B)", LATHE_BOOL, 0},
  {"And", "where(A, B, A)", LATHE_BOOL, 0},
  {"Or", "where(A, A, B)", LATHE_BOOL, 0},
  {"Xor", "not_equal(A, B)", LATHE_BOOL, 0},
  {"Max", "where(greater_equal(A, B), A, B)", -1, 0},
  {"Min", "where(less_equal(A, B), A, B)", -1, 0},
  {"Sum", "A + B", -1, 0},
  {"Mean", "A + B", -1, 1},
  {"PRelu", "where(less(A, 0.0), A * B, A)", -1, 1},
};

/* Shape arithmetic on constants: the binary ops computed at import time
 * (NumPy broadcasting), an element that reads a symbolic entry is symbolic
 * ("?": unknown, a reshape makes it its -1). */
static double fold1(const char *op, double a, double b, int is_int) {
  static const char *const names[] = {"Add", "Sub", "Mul", "Div", "Less", "LessOrEqual", "Greater", "GreaterOrEqual",
                                      "Equal", "And", "Or", "Xor", "Max", "Min", "Sum", "Mean"};
  int k = 0;
  while (k < 16 && strcmp(names[k], op) != 0) k++;
  switch (k) {
  case 0: case 14: return a + b;
  case 1: return a - b;
  case 2: return a * b;
  case 3: return is_int ? (b != 0 ? trunc(a / b) : 0) : a / b;
  case 4: return a < b;
  case 5: return a <= b;
  case 6: return a > b;
  case 7: return a >= b;
  case 8: return a == b;
  case 9: return a && b;
  case 10: return a || b;
  case 11: return (a != 0) != (b != 0);
  case 12: return a > b ? a : b;
  case 13: return a < b ? a : b;
  default: return (a + b) / 2; /* Mean of two */
  }
}

static int fold_binary(ox_ctx *c, node *n, const binary_row *row) {
  ox_val *a = ox_in(c, n, 0), *b = ox_in(c, n, 1);
  const ox_array *x = ox_fixed(c, a), *y = ox_fixed(c, b);
  int rank;
  int64_t d[OX_MAXDIM];
  const char *sym[OX_MAXDIM];
  if (ox_broadcast(c, a, b, &rank, d, sym)) return -1;
  int odt = row->result == LATHE_BOOL ? ONNX__TENSOR_PROTO__DATA_TYPE__BOOL : x->dtype;
  ox_array *o = new_array(odt, rank, d);
  const char **sv = (a->sv || b->sv) ? calloc((size_t)o->n + 1, sizeof *sv) : NULL;
  for (int64_t i = 0; i < o->n; i++) {
    int64_t ia = 0, ib = 0, rem = i, sa = 1, sb = 1;
    for (int k = rank - 1; k >= 0; k--) { /* the operands' elements under broadcasting */
      int64_t idx = rem % d[k];
      rem /= d[k];
      int ka = k - (rank - a->rank), kb = k - (rank - b->rank);
      if (ka >= 0) ia += (a->d[ka] == 1 ? 0 : idx) * sa, sa *= a->d[ka];
      if (kb >= 0) ib += (b->d[kb] == 1 ? 0 : idx) * sb, sb *= b->d[kb];
    }
    double r = fold1(row->op, ox_get_f(x, ia), ox_get_f(y, ib), !ox_is_float(x->dtype));
    if (o->f) o->f[i] = r;
    else o->i[i] = r > -9.2e18 && r < 9.2e18 ? (int64_t)r : 0; /* past int64: no UB */
    if (sv && ((a->sv && a->sv[ia]) || (b->sv && b->sv[ib]))) sv[i] = "?";
  }
  ox_val *v = ox_out_const(c, n, 0, o);
  if (v) v->sv = sv;
  else free(sv);
  return 0;
}

/* Binary ops, and the variadic Max/Min/Sum/Mean as a chain of them. */
static int h_binary(ox_ctx *c, node *n) {
  const binary_row *row = NULL;
  for (size_t i = 0; i < sizeof binary_rows / sizeof binary_rows[0]; i++)
    if (strcmp(binary_rows[i].op, n->op_type) == 0) row = &binary_rows[i];
  ox_val *a = ox_need(c, n, 0);
  if (!a || !row) return -1;
  int nin = (int)n->n_input;
  if (nin == 2 && ox_fixed(c, a) && ox_fixed(c, ox_in(c, n, 1)) && strcmp(row->op, "PRelu") != 0 &&
      ox_numel(a) <= 64 && ox_numel(ox_in(c, n, 1)) <= 64)
    return fold_binary(c, n, row);
  if (row->float_only && want_float(c, a)) return -1;
  if (nin == 1) { /* Max(x), Sum(x): x itself */
    return ox_alias(c, n, 0, a);
  }
  char acc[512], ab[512], bb[512];
  int rank = a->rank;
  int64_t d[OX_MAXDIM];
  const char *sym[OX_MAXDIM];
  ox_val cur = *a; /* the running result's shape */
  ox_buf e = {0};
  for (int k = 1; k < nin; k++) {
    ox_val *b = ox_need(c, n, k);
    if (!b) return -1;
    if (b->dt != a->dt)
      return ox_err(c, "operands of types %s and %s (ONNX wants one type)", ox_dt_name(a->dt), ox_dt_name(b->dt));
    if (ox_broadcast(c, &cur, b, &rank, d, sym)) return -1;
    int la = k == 1 && literal(c, a, b, ab, sizeof ab), lb = literal(c, b, &cur, bb, sizeof bb);
    if (la && lb) la = 0; /* one side stays a tensor */
    const char *as = k == 1 ? operand(c, a, la, ab, sizeof ab) : acc;
    const char *bs = operand(c, b, lb, bb, sizeof bb);
    if (!as || !bs) return -1;
    e.n = 0;
    size_t need = strlen(row->tmpl) + 4 * (strlen(as) + strlen(bs)) + 16;
    char *line = malloc(need);
    if (!line) abort();
    subst(line, need, row->tmpl, "", as, bs);
    if (k < nin - 1) {
      const char *t = ox_fresh(c, n->output[0]);
      ox_emit(c, "%s = %s", t, line);
      snprintf(acc, sizeof acc, "%s", t);
    } else {
      ox_buf_printf(&e, "%s", line);
    }
    free(line);
    cur.rank = rank;
    memcpy(cur.d, d, sizeof d);
    memcpy(cur.sym, sym, sizeof sym);
    cur.dt = a->dt;
  }
  ox_val *y = ox_out(c, n, 0, row->result < 0 ? a->dt : row->result, rank, d, sym);
  if (strcmp(n->op_type, "Mean") == 0) ox_emit(c, "%s = (%s) / %d.0", y->nn, e.p, nin);
  else ox_emit(c, "%s = %s", y->nn, e.p);
  free(e.p);
  return 0;
}

static int h_pow(ox_ctx *c, node *n) {
  ox_val *x = ox_need(c, n, 0), *p = ox_need(c, n, 1);
  if (!x || !p || want_float(c, x)) return -1;
  const ox_array *pa = ox_const(c, p);
  if (!pa || pa->n != 1 || p->rank > x->rank)
    return ox_unsup(c, NULL, "Pow with a tensor exponent (Lathe's pow takes one constant exponent)");
  const char *xr = ox_ref(c, x);
  if (!xr) return -1;
  char e[64];
  if (ox_numeric_literal(e, sizeof e, ox_get_f(pa, 0), LATHE_F32)) return ox_unsup(c, NULL, "a non-finite exponent");
  ox_val *y = ox_out_like(c, n, 0, x, -1);
  ox_emit(c, "%s = pow(%s, %s)", y->nn, xr, e);
  return 0;
}

static int h_where(ox_ctx *c, node *n) {
  ox_val *k = ox_need(c, n, 0), *a = ox_need(c, n, 1), *b = ox_need(c, n, 2);
  if (!k || !a || !b) return -1;
  int rank;
  int64_t d[OX_MAXDIM], d2[OX_MAXDIM];
  const char *sym[OX_MAXDIM], *sym2[OX_MAXDIM];
  if (ox_broadcast(c, a, b, &rank, d, sym)) return -1;
  ox_val ab = *a;
  ab.rank = rank;
  memcpy(ab.d, d, sizeof d);
  memcpy(ab.sym, sym, sizeof sym);
  if (ox_broadcast(c, k, &ab, &rank, d2, sym2)) return -1;
  const ox_array *ka = ox_fixed(c, k), *aa = ox_fixed(c, a), *ba = ox_fixed(c, b);
  if (ka && aa && ba && ka->n == 1 && aa->n <= 64 && ba->n <= 64 && aa->n == ba->n && a->rank == b->rank) {
    /* shape arithmetic (where(cond, shape, other)) */
    const ox_array *pick = ox_get_i(ka, 0) ? aa : ba;
    ox_array *o = new_array(pick->dtype, pick->rank, pick->d);
    if (o->f) memcpy(o->f, pick->f, sizeof *o->f * (size_t)o->n);
    if (o->i) memcpy(o->i, pick->i, sizeof *o->i * (size_t)o->n);
    ox_out_const(c, n, 0, o);
    return 0;
  }
  char lab[300], lbb[300];
  int la = literal(c, a, b, lab, sizeof lab), lb = literal(c, b, a, lbb, sizeof lbb);
  if (la && lb) la = 0;
  const char *kr = ox_ref(c, k), *ar = operand(c, a, la, lab, sizeof lab), *br = operand(c, b, lb, lbb, sizeof lbb);
  if (!kr || !ar || !br) return -1;
  ox_val *y = ox_out(c, n, 0, a->dt, rank, d2, sym2);
  ox_emit(c, "%s = where(%s, %s, %s)", y->nn, kr, ar, br);
  return 0;
}

static int h_clip(ox_ctx *c, node *n) {
  ox_val *x = ox_need(c, n, 0);
  if (!x) return -1;
  if (!ox_is_float_dt(x->dt)) { /* integers: two wheres */
    const char *xr = ox_ref(c, x);
    if (!xr) return -1;
    ox_buf e = {0};
    ox_buf_printf(&e, "%s", xr);
    for (int k = 1; k <= 2; k++) {
      ox_val *b = ox_in(c, n, k);
      const ox_array *a = b ? ox_const(c, b) : NULL;
      if (b && (!a || a->n != 1)) {
        free(e.p);
        return ox_unsup(c, NULL, "Clip with a tensor bound (input %d must be a constant)", k);
      }
      if (!a) continue;
      long long v = (long long)ox_get_i(a, 0);
      char *prev = e.p;
      e.p = NULL, e.n = e.cap = 0;
      ox_buf_printf(&e, "where(%s(%s, %lld), %lld, %s)", k == 1 ? "less" : "greater", prev, v, v, prev);
      free(prev);
    }
    ox_val *y = ox_out_like(c, n, 0, x, -1);
    ox_emit(c, "%s = concat([%s], 0)", y->nn, e.p);
    free(e.p);
    return 0;
  }
  double lo = -INFINITY, hi = INFINITY;
  if (c->opset < 11) {
    lo = ox_attr_f(n, "min", -INFINITY);
    hi = ox_attr_f(n, "max", INFINITY);
  } else {
    for (int k = 1; k <= 2; k++) {
      ox_val *b = ox_in(c, n, k);
      if (!b) continue;
      const ox_array *a = ox_const(c, b);
      if (!a || a->n != 1) return ox_unsup(c, NULL, "Clip with a tensor bound (input %d must be a constant)", k);
      *(k == 1 ? &lo : &hi) = ox_get_f(a, 0);
    }
  }
  const char *xr = ox_ref(c, x);
  if (!xr) return -1;
  char l[64], h[64], e[300];
  int hl = ox_numeric_literal(l, sizeof l, lo, LATHE_F32) == 0, hh = ox_numeric_literal(h, sizeof h, hi, LATHE_F32) == 0;
  ox_val *y = ox_out_like(c, n, 0, x, -1);
  if (hl && hh) snprintf(e, sizeof e, "clamp(%s, min=%s, max=%s)", xr, l, h);
  else if (hl) snprintf(e, sizeof e, "clamp(%s, min=%s)", xr, l);
  else if (hh) snprintf(e, sizeof e, "clamp(%s, max=%s)", xr, h);
  else snprintf(e, sizeof e, "concat([%s], 0)", xr);
  ox_emit(c, "%s = %s", y->nn, e);
  return 0;
}

/* ---- casts and constants ---- */


static int onnx_dtype_of(int lathe_dt) {
  static const int map[] = {[LATHE_F32] = DT(FLOAT), [LATHE_F16] = DT(FLOAT16), [LATHE_BF16] = DT(BFLOAT16),
                            [LATHE_I32] = DT(INT32), [LATHE_I64] = DT(INT64),    [LATHE_I8] = DT(INT8),
                            [LATHE_U8] = DT(UINT8),  [LATHE_BOOL] = DT(BOOL)};
  return map[lathe_dt];
}

static int do_cast(ox_ctx *c, node *n, int to) {
  ox_val *x = ox_need(c, n, 0);
  if (!x) return -1;
  int dt = ox_lathe_dtype(to);
  const ox_array *a = ox_fixed(c, x);
  if (a && (dt >= 0 || ox_elem_size(to))) { /* fold: shape arithmetic goes through casts */
    ox_array *b = new_array(to, a->rank, a->d);
    for (int64_t i = 0; i < a->n; i++) {
      double f = ox_get_f(a, i);
      if (b->f) b->f[i] = to == DT(FLOAT) ? (double)(float)f : f;
      else b->i[i] = to == DT(BOOL) ? f != 0 : (a->i ? a->i[i] : (int64_t)f);
    }
    ox_val *y = ox_out_const(c, n, 0, b);
    if (y && x->sv) { /* a Shape result keeps its symbolic dims */
      y->sv = calloc((size_t)a->n + 1, sizeof *y->sv);
      memcpy((void *)y->sv, x->sv, sizeof *y->sv * (size_t)a->n);
    }
    return 0;
  }
  if (dt < 0) return ox_unsup(c, "to", "casting to data type %d (Lathe has no such dtype)", to);
  const char *xr = ox_ref(c, x);
  if (!xr) return -1;
  ox_val *y = ox_out_like(c, n, 0, x, dt);
  ox_emit(c, "%s = cast(%s, \"%s\")", y->nn, xr, ox_dt_name(dt));
  return 0;
}

static int h_cast(ox_ctx *c, node *n) { return do_cast(c, n, (int)ox_attr_i(n, "to", DT(FLOAT))); }

static int h_castlike(ox_ctx *c, node *n) {
  ox_val *t = ox_need(c, n, 1);
  if (!t) return -1;
  const ox_array *ta = ox_const(c, t);
  return do_cast(c, n, ta ? ta->dtype : onnx_dtype_of(t->dt));
}

static int h_constant(ox_ctx *c, node *n) {
  const Onnx__AttributeProto *at;
  ox_array *a;
  if ((at = ox_attr(n, "value")) && at->t) {
    a = calloc(1, sizeof *a);
    if (!a || ox_tensor_decode(at->t, c->o->base_dir, a, c->msg, c->msgn)) {
      free(a);
      return -1;
    }
  } else if ((at = ox_attr(n, "value_float"))) {
    a = new_array(DT(FLOAT), 0, NULL);
    a->f[0] = at->f;
  } else if ((at = ox_attr(n, "value_int"))) {
    a = new_array(DT(INT64), 0, NULL);
    a->i[0] = at->i;
  } else if ((at = ox_attr(n, "value_floats"))) {
    int64_t d = (int64_t)at->n_floats;
    a = new_array(DT(FLOAT), 1, &d);
    for (int64_t i = 0; i < d; i++) a->f[i] = at->floats[i];
  } else if ((at = ox_attr(n, "value_ints"))) {
    int64_t d = (int64_t)at->n_ints;
    a = new_array(DT(INT64), 1, &d);
    for (int64_t i = 0; i < d; i++) a->i[i] = at->ints[i];
  } else {
    return ox_unsup(c, NULL, "a Constant without value, value_float(s) or value_int(s) (sparse or string values)");
  }
  ox_out_const(c, n, 0, a);
  return 0;
}

static int h_constant_of_shape(ox_ctx *c, node *n) {
  const ox_array *s = ox_need_const(c, n, 0);
  if (!s) return -1;
  int64_t d[OX_MAXDIM];
  if (s->n > OX_MAXDIM) return ox_err(c, "a shape of %lld dimensions", (long long)s->n);
  ox_val *sv = ox_in(c, n, 0);
  int symbolic = 0;
  for (int i = 0; i < s->n; i++) {
    d[i] = ox_get_i(s, i);
    if (sv->sv && sv->sv[i]) symbolic = 1;
    else if (d[i] < 0) return ox_err(c, "shape entry %d is %lld", i, (long long)d[i]);
  }
  int64_t total = 1;
  for (int i = 0; i < s->n && !symbolic; i++) total = d[i] > ((int64_t)1 << 26) / (total ? total : 1) ? -1 : total * d[i];
  if (total < 0) return ox_unsup(c, NULL, "a ConstantOfShape of more than 2^26 elements");
  const Onnx__AttributeProto *at = ox_attr(n, "value");
  if (symbolic) { /* no data: the recurrent layers read it as their zero initial state */
    ox_array v = {0};
    if (at && at->t && ox_tensor_decode(at->t, NULL, &v, c->msg, c->msgn)) return -1;
    int dt = at && at->t ? ox_lathe_dtype(v.dtype) : LATHE_F32;
    const char *sym[OX_MAXDIM] = {0};
    for (int i = 0; i < s->n; i++) sym[i] = sv->sv[i];
    ox_val *y = ox_out(c, n, 0, dt < 0 ? LATHE_F32 : dt, (int)s->n, d, sym);
    free(y->nn);
    y->nn = NULL;
    y->filled = 1;
    y->fill = v.n ? ox_get_f(&v, 0) : 0;
    ox_array_free(&v);
    return 0;
  }
  ox_array v = {0};
  if (at && at->t && ox_tensor_decode(at->t, NULL, &v, c->msg, c->msgn)) return -1;
  ox_array *a = new_array(at && at->t ? v.dtype : DT(FLOAT), (int)s->n, d);
  for (int64_t i = 0; i < a->n; i++) {
    if (a->f) a->f[i] = v.n ? ox_get_f(&v, 0) : 0;
    else a->i[i] = v.n ? ox_get_i(&v, 0) : 0;
  }
  ox_array_free(&v);
  ox_out_const(c, n, 0, a);
  return 0;
}

static int h_shape(ox_ctx *c, node *n) {
  ox_val *x = ox_need(c, n, 0);
  if (!x) return -1;
  int64_t lo = ox_attr_i(n, "start", 0), hi = ox_attr_i(n, "end", x->rank);
  if (lo < 0) lo += x->rank;
  if (hi < 0) hi += x->rank;
  lo = lo < 0 ? 0 : lo > x->rank ? x->rank : lo;
  hi = hi < lo ? lo : hi > x->rank ? x->rank : hi;
  int64_t len = hi - lo;
  ox_array *a = new_array(DT(INT64), 1, &len);
  const char **sv = calloc((size_t)len + 1, sizeof *sv);
  int any = 0;
  for (int64_t i = 0; i < len; i++) {
    a->i[i] = x->d[lo + i];
    sv[i] = x->sym[lo + i];
    any |= sv[i] != NULL;
  }
  ox_val *y = ox_out_const(c, n, 0, a);
  if (y && any) y->sv = sv;
  else free(sv);
  return 0;
}

static int h_size(ox_ctx *c, node *n) {
  ox_val *x = ox_need(c, n, 0);
  if (!x) return -1;
  int64_t k = ox_numel(x);
  if (k < 0) return ox_unsup(c, NULL, "Size of a tensor with a symbolic dimension");
  ox_array *a = new_array(DT(INT64), 0, NULL);
  a->i[0] = k;
  ox_out_const(c, n, 0, a);
  return 0;
}

static int h_range(ox_ctx *c, node *n) {
  const ox_array *s = ox_need_const(c, n, 0), *l = ox_need_const(c, n, 1), *dl = ox_need_const(c, n, 2);
  if (!s || !l || !dl) return -1;
  double a0 = ox_get_f(s, 0), a1 = ox_get_f(l, 0), da = ox_get_f(dl, 0);
  if (da == 0) return ox_err(c, "delta is 0");
  double cnt = ceil((a1 - a0) / da);
  if (!(cnt <= (1 << 24))) return ox_unsup(c, NULL, "a Range of %g elements", cnt);
  int64_t len = cnt > 0 ? (int64_t)cnt : 0;
  ox_array *a = new_array(s->dtype, 1, &len);
  for (int64_t i = 0; i < len; i++) {
    if (a->f) a->f[i] = a0 + (double)i * da;
    else a->i[i] = ox_get_i(s, 0) + i * ox_get_i(dl, 0);
  }
  ox_out_const(c, n, 0, a);
  return 0;
}

/* ---- reshapes ---- */

/* Emit y = reshape(x, dims): dims with at most one unknown (-1, also for a
 * symbolic dimension); y's shape is dims with syms. */
static int emit_reshape(ox_ctx *c, node *n, int k, ox_val *x, int rank, const int64_t *dims, const char *const *sym) {
  const ox_array *a = ox_fixed(c, x);
  int64_t out[OX_MAXDIM];
  int unknown = 0;
  for (int i = 0; i < rank; i++) {
    out[i] = dims[i];
    if (dims[i] < 0) unknown++;
  }
  if (a && unknown == 0) { /* a constant stays one */
    ox_array *b = new_array(a->dtype, rank, dims);
    if (a->f) memcpy(b->f, a->f, sizeof *b->f * (size_t)a->n);
    if (a->i) memcpy(b->i, a->i, sizeof *b->i * (size_t)a->n);
    ox_val *y = ox_out_const(c, n, k, b);
    if (y && x->sv) { /* symbolic entries move with their elements */
      y->sv = calloc((size_t)a->n + 1, sizeof *y->sv);
      memcpy((void *)y->sv, x->sv, sizeof *y->sv * (size_t)a->n);
    }
    return 0;
  }
  if (unknown > 1) return ox_unsup(c, NULL, "a reshape that keeps %d symbolic dimensions (Lathe's reshape infers one)", unknown);
  const char *xr = ox_ref(c, x);
  if (!xr) return -1;
  char sh[400];
  ox_val *y = ox_out(c, n, k, x->dt, rank, out, sym);
  ox_emit(c, "%s = reshape(%s, %s)", y->nn, xr, ox_shape_list(out, rank, sh, sizeof sh));
  return 0;
}

/* x's elements less its symbolic dimensions, when the target shape (rank
 * r) keeps each of them (by name): what a -1 beside them must cover, as
 * PyTorch's [0, 0, -1] after a bidirectional LSTM of a symbolic batch asks.
 * -1 when a symbolic dimension is not kept. */
static int64_t kept_symbolic(const ox_val *x, const int64_t *d, const char *const *sym, int r) {
  int64_t rest = 1;
  unsigned used = 0;
  for (int i = 0; i < x->rank; i++) {
    if (x->d[i] >= 0) {
      rest = ox_mul(rest, x->d[i]);
      continue;
    }
    int found = -1;
    for (int j = 0; j < r && found < 0; j++)
      if (d[j] == -1 && sym[j] && x->sym[i] && !(used >> j & 1u) && strcmp(sym[j], x->sym[i]) == 0) found = j;
    if (found < 0) return -1;
    used |= 1u << found;
  }
  return rest;
}

static int h_reshape(ox_ctx *c, node *n) {
  ox_val *x = ox_need(c, n, 0), *sv = ox_need(c, n, 1);
  if (c->opset < 5) return ox_unsup(c, NULL, "Reshape before opset 5 (the shape as an attribute)");
  const ox_array *s = ox_need_const(c, n, 1);
  if (!x || !sv || !s) return -1;
  if (s->n > OX_MAXDIM) return ox_err(c, "a shape of %lld dimensions", (long long)s->n);
  int allowzero = (int)ox_attr_i(n, "allowzero", 0);
  int64_t d[OX_MAXDIM];
  const char *sym[OX_MAXDIM] = {0};
  int infer = -1;
  int64_t known = 1, have = ox_numel(x);
  for (int i = 0; i < s->n; i++) {
    d[i] = ox_get_i(s, i);
    if (sv->sv && sv->sv[i]) d[i] = -1, sym[i] = sv->sv[i];
    else if (d[i] > ((int64_t)1 << 40)) return ox_err(c, "shape element %d is %lld (over 2^40)", i, (long long)d[i]);
    else if (d[i] == 0 && !allowzero) {
      if (i >= x->rank) return ox_err(c, "shape element %d is 0 but the input has rank %d", i, x->rank);
      d[i] = x->d[i];
      sym[i] = x->sym[i];
    }
    if (d[i] == -1 && !sym[i]) {
      if (infer >= 0) return ox_err(c, "more than one -1 in the shape");
      infer = i;
    } else if (d[i] > 0) {
      known = ox_mul(known, d[i]);
    } else if (d[i] == 0 || (d[i] < -1)) {
      return ox_unsup(c, NULL, "shape element %d is %lld", i, (long long)d[i]);
    }
  }
  if (infer >= 0 && have < 0) have = kept_symbolic(x, d, sym, (int)s->n);
  if (infer >= 0 && have >= 0) {
    if (known == 0 || have % known) return ox_err(c, "cannot reshape %lld elements with a -1", (long long)have);
    d[infer] = have / known;
  }
  return emit_reshape(c, n, 0, x, (int)s->n, d, sym);
}

static int h_flatten(ox_ctx *c, node *n) {
  ox_val *x = ox_need(c, n, 0);
  if (!x) return -1;
  int axis;
  int64_t a = ox_attr_i(n, "axis", 1);
  if (a == x->rank) axis = x->rank;
  else if (ox_axis(c, a, x->rank, &axis)) return -1;
  int64_t d[2] = {1, 1};
  const char *sym[2] = {0};
  for (int i = 0; i < x->rank; i++) {
    int side = i >= axis;
    if (x->d[i] < 0) d[side] = -1, sym[side] = x->sym[i];
    else if (d[side] >= 0) d[side] = ox_mul(d[side], x->d[i]);
  }
  return emit_reshape(c, n, 0, x, 2, d, sym);
}

/* Axes from the attribute (older opsets) or input 1. */
static int axes_of(ox_ctx *c, node *n, int input_from, int64_t *ax, int max) {
  if (c->opset < input_from) return ox_attr_ints(n, "axes", ax, max);
  ox_val *v = ox_in(c, n, 1);
  if (!v) return -1;
  const ox_array *a = ox_const(c, v);
  if (!a) return ox_unsup(c, NULL, "axes from a computed tensor (input 1 must be a constant)"), -2;
  if (a->n > max) return ox_err(c, "too many axes"), -2;
  for (int i = 0; i < a->n; i++) ax[i] = ox_get_i(a, i);
  return (int)a->n;
}

static int h_squeeze(ox_ctx *c, node *n) {
  ox_val *x = ox_need(c, n, 0);
  if (!x) return -1;
  int64_t ax[OX_MAXDIM];
  int na = axes_of(c, n, 13, ax, OX_MAXDIM);
  if (na == -2) return -1;
  unsigned char drop[OX_MAXDIM] = {0};
  for (int i = 0; i < na; i++) {
    int a;
    if (ox_axis(c, ax[i], x->rank, &a)) return -1;
    if (x->d[a] != 1) return ox_err(c, "cannot squeeze axis %d of size %lld", a, (long long)x->d[a]);
    drop[a] = 1;
  }
  int64_t d[OX_MAXDIM];
  const char *sym[OX_MAXDIM];
  int r = 0;
  for (int i = 0; i < x->rank; i++) {
    if (na < 0 ? x->d[i] == 1 : drop[i]) continue;
    d[r] = x->d[i], sym[r++] = x->sym[i];
  }
  return emit_reshape(c, n, 0, x, r, d, sym);
}

static int h_unsqueeze(ox_ctx *c, node *n) {
  ox_val *x = ox_need(c, n, 0);
  if (!x) return -1;
  int64_t ax[OX_MAXDIM];
  int na = axes_of(c, n, 13, ax, OX_MAXDIM);
  if (na < 0) return na == -2 ? -1 : ox_err(c, "Unsqueeze needs axes");
  int r = x->rank + na;
  if (r > OX_MAXDIM) return ox_unsup(c, NULL, "rank %d (at most %d)", r, OX_MAXDIM);
  unsigned char ins[OX_MAXDIM] = {0};
  for (int i = 0; i < na; i++) {
    int a;
    if (ox_axis(c, ax[i], r, &a)) return -1;
    ins[a] = 1;
  }
  int64_t d[OX_MAXDIM];
  const char *sym[OX_MAXDIM];
  for (int i = 0, j = 0; i < r; i++) {
    if (ins[i]) d[i] = 1, sym[i] = NULL;
    else d[i] = x->d[j], sym[i] = x->sym[j], j++;
  }
  return emit_reshape(c, n, 0, x, r, d, sym);
}

static int h_transpose(ox_ctx *c, node *n) {
  ox_val *x = ox_need(c, n, 0);
  if (!x) return -1;
  int64_t p[OX_MAXDIM];
  int np = ox_attr_ints(n, "perm", p, OX_MAXDIM);
  if (np < 0) {
    np = x->rank;
    for (int i = 0; i < np; i++) p[i] = np - 1 - i;
  }
  if (np != x->rank) return ox_err(c, "perm has %d entries for rank %d", np, x->rank);
  int64_t d[OX_MAXDIM];
  const char *sym[OX_MAXDIM];
  for (int i = 0; i < np; i++) {
    if (p[i] < 0 || p[i] >= np) return ox_err(c, "perm entry %lld out of range", (long long)p[i]);
    d[i] = x->d[p[i]], sym[i] = x->sym[p[i]];
  }
  const char *xr = ox_ref(c, x);
  if (!xr) return -1;
  char ps[300];
  ox_val *y = ox_out(c, n, 0, x->dt, np, d, sym);
  if (np < 2) ox_emit(c, "%s = concat([%s], 0)", y->nn, xr);
  else ox_emit(c, "%s = transpose(%s, %s)", y->nn, xr, ox_shape_list(p, np, ps, sizeof ps));
  return 0;
}

/* ---- concat, slices, gather ---- */

static int h_concat(ox_ctx *c, node *n) {
  ox_val *a = ox_need(c, n, 0);
  if (!a) return -1;
  int axis;
  if (ox_axis(c, ox_attr_i(n, "axis", 0), a->rank ? a->rank : 1, &axis)) return -1;
  int allc = 1;
  int64_t d[OX_MAXDIM];
  const char *sym[OX_MAXDIM];
  memcpy(d, a->d, sizeof d);
  memcpy(sym, a->sym, sizeof sym);
  d[axis] = 0;
  int any_sym = 0;
  for (size_t k = 0; k < n->n_input; k++) {
    ox_val *b = ox_need(c, n, (int)k);
    if (!b) return -1;
    if (b->rank != a->rank) return ox_err(c, "inputs of ranks %d and %d", a->rank, b->rank);
    allc &= ox_fixed(c, b) != NULL;
    if (b->d[axis] < 0) any_sym = 1;
    else d[axis] += b->d[axis];
  }
  if (any_sym) d[axis] = -1, sym[axis] = NULL;
  if (allc && a->rank == 1) { /* shape arithmetic: folded, symbolic entries kept */
    ox_array *r = new_array(ox_const(c, a)->dtype, 1, &d[0]);
    const char **sv = calloc((size_t)d[0] + 1, sizeof *sv);
    int64_t at = 0, anysv = 0;
    for (size_t k = 0; k < n->n_input; k++) {
      ox_val *b = ox_in(c, n, (int)k);
      const ox_array *ba = ox_const(c, b);
      for (int64_t i = 0; i < ba->n; i++, at++) {
        if (r->f) r->f[at] = ox_get_f(ba, i);
        else r->i[at] = ox_get_i(ba, i);
        if (b->sv && b->sv[i]) sv[at] = b->sv[i], anysv = 1;
      }
    }
    ox_val *y = ox_out_const(c, n, 0, r);
    if (y && anysv) y->sv = sv;
    else free(sv);
    return 0;
  }
  ox_buf lst = {0};
  for (size_t k = 0; k < n->n_input; k++) {
    const char *r = ox_ref(c, ox_in(c, n, (int)k));
    if (!r) {
      free(lst.p);
      return -1;
    }
    ox_buf_printf(&lst, "%s%s", k ? ", " : "", r);
  }
  ox_val *y = ox_out(c, n, 0, a->dt, a->rank, d, sym);
  ox_emit(c, "%s = concat([%s], %d)", y->nn, lst.p, axis);
  free(lst.p);
  return 0;
}

/* A slice of one axis [lo, hi) (normalised, lo < hi) of x into a fresh name. */
static const char *slice1(ox_ctx *c, const char *base, const char *xr, int axis, int64_t lo, int64_t hi) {
  const char *t = ox_fresh(c, base);
  ox_emit(c, "%s = slice(%s, %d, %lld, %lld)", t, xr, axis, (long long)lo, (long long)hi);
  return t;
}

/* Gather with constant indices on a computed tensor: slices and concat. */
static int h_gather(ox_ctx *c, node *n) {
  ox_val *x = ox_need(c, n, 0), *iv = ox_need(c, n, 1);
  if (!x || !iv) return -1;
  int axis;
  if (ox_axis(c, ox_attr_i(n, "axis", 0), x->rank, &axis)) return -1;
  const ox_array *xa = ox_fixed(c, x), *ia = ox_fixed(c, iv);
  int64_t d[OX_MAXDIM];
  const char *sym[OX_MAXDIM] = {0};
  int r = 0;
  for (int i = 0; i < axis; i++) d[r] = x->d[i], sym[r++] = x->sym[i];
  for (int i = 0; i < iv->rank; i++) d[r] = iv->d[i], sym[r++] = iv->sym[i];
  for (int i = axis + 1; i < x->rank; i++) d[r] = x->d[i], sym[r++] = x->sym[i];
  if (r > OX_MAXDIM) return ox_unsup(c, NULL, "a result of rank %d", r);
  if (xa && ia) { /* shape arithmetic */
    int64_t outer = 1, inner = 1, ax = x->d[axis];
    for (int i = 0; i < axis; i++) outer *= x->d[i];
    for (int i = axis + 1; i < x->rank; i++) inner *= x->d[i];
    ox_array *o = new_array(xa->dtype, r, d);
    const char **sv = x->sv ? calloc((size_t)o->n + 1, sizeof *sv) : NULL;
    for (int64_t a = 0; a < outer; a++)
      for (int64_t j = 0; j < ia->n; j++) {
        int64_t k = ox_get_i(ia, j);
        if (k < 0) k += ax;
        if (k < 0 || k >= ax) {
          ox_array_free(o), free(o), free(sv);
          return ox_err(c, "index %lld out of range [0, %lld)", (long long)ox_get_i(ia, j), (long long)ax);
        }
        for (int64_t b = 0; b < inner; b++) {
          int64_t src = (a * ax + k) * inner + b, dst = (a * ia->n + j) * inner + b;
          if (o->f) o->f[dst] = xa->f[src];
          else o->i[dst] = xa->i[src];
          if (sv) sv[dst] = x->sv[src];
        }
      }
    ox_val *y = ox_out_const(c, n, 0, o);
    if (y) y->sv = sv;
    else free(sv);
    return 0;
  }
  if (xa && x->rank == 2 && axis == 0 && ox_is_float_dt(x->dt) && !ox_is_float_dt(iv->dt)) {
    /* a table lookup: the language's embedding layer owns the table */
    extern int ox_embedding(ox_ctx * c, node * n, ox_val * x, ox_val * iv, int rank, const int64_t *d, const char *const *sym);
    return ox_embedding(c, n, x, iv, r, d, sym);
  }
  if (!ia && ox_is_float_dt(x->dt) && !ox_is_float_dt(iv->dt) && x->d[axis] > 0) {
    /* computed indices: x's axis moved first and flattened, picked by a
     * one_hot product, the index axes moved back to the axis' place */
    int64_t D = x->d[axis], R = 1, I = ox_numel(iv);
    for (int i = 0; i < x->rank; i++)
      if (i != axis) {
        if (x->d[i] < 0) return ox_unsup(c, NULL, "Gather with computed indices over a symbolic dimension");
        R = ox_mul(R, x->d[i]);
      }
    if (I < 0) return ox_unsup(c, NULL, "Gather with symbolic index dimensions");
    const char *xr = ox_ref(c, x), *ir = ox_ref(c, iv);
    if (!xr || !ir) return -1;
    int64_t perm[OX_MAXDIM], rest[OX_MAXDIM];
    int nr = 0;
    perm[0] = axis;
    for (int i = 0, k = 1; i < x->rank; i++)
      if (i != axis) perm[k++] = i, rest[nr++] = x->d[i];
    char ps[200], sh[300];
    const char *xt = ox_fresh(c, n->output[0]), *pk = ox_fresh(c, n->output[0]);
    ox_emit(c, "%s = reshape(transpose(%s, %s), [%lld, %lld])", xt, xr, ox_shape_list(perm, x->rank, ps, sizeof ps),
            (long long)D, (long long)R);
    ox_emit(c, "%s = reshape(one_hot(where(less(%s, 0), %s + %lld, %s), %lld), [%lld, %lld]) @ %s", pk, ir, ir, (long long)D,
            ir, (long long)D, (long long)I, (long long)D, xt);
    /* [I, rest...] -> [I..., rest...] -> the index axes at `axis` */
    int64_t mid[OX_MAXDIM];
    int nm = 0;
    for (int i = 0; i < iv->rank; i++) mid[nm++] = iv->d[i];
    for (int i = 0; i < nr; i++) mid[nm++] = rest[i];
    int64_t back[OX_MAXDIM];
    int nb = 0;
    for (int i = 0; i < axis; i++) back[nb++] = iv->rank + i;
    for (int i = 0; i < iv->rank; i++) back[nb++] = i;
    for (int i = axis; i < nr; i++) back[nb++] = iv->rank + i;
    ox_val *y = ox_out(c, n, 0, x->dt, r, d, sym);
    if (nm == 0) ox_emit(c, "%s = sum(%s)", y->nn, pk);
    else if (iv->rank == 0 || axis == 0)
      ox_emit(c, "%s = reshape(%s, %s)", y->nn, pk, ox_shape_list(d, r, sh, sizeof sh));
    else
      ox_emit(c, "%s = transpose(reshape(%s, %s), %s)", y->nn, pk, ox_shape_list(mid, nm, sh, sizeof sh),
              ox_shape_list(back, nb, ps, sizeof ps));
    return 0;
  }
  if (!ia) return ox_unsup(c, NULL, "Gather with computed indices on a computed tensor");
  if (x->d[axis] < 0) return ox_unsup(c, NULL, "Gather along a symbolic dimension");
  if (ia->n > 256) return ox_unsup(c, NULL, "Gather of %lld constant indices (at most 256)", (long long)ia->n);
  const char *xr = ox_ref(c, x);
  if (!xr) return -1;
  ox_buf lst = {0};
  int64_t run0 = -1, prev = -2;
  int nparts = 0;
  /* runs of consecutive indices become one slice each */
  for (int64_t j = 0; j <= ia->n; j++) {
    int64_t k = -1;
    if (j < ia->n) {
      k = ox_get_i(ia, j);
      if (k < 0) k += x->d[axis];
      if (k < 0 || k >= x->d[axis]) {
        free(lst.p);
        return ox_err(c, "index %lld out of range [0, %lld)", (long long)ox_get_i(ia, j), (long long)x->d[axis]);
      }
      if (k == prev + 1 && run0 >= 0) {
        prev = k;
        continue;
      }
    }
    if (run0 >= 0) {
      const char *t = slice1(c, n->output[0], xr, axis, run0, prev + 1);
      ox_buf_printf(&lst, "%s%s", nparts++ ? ", " : "", t);
    }
    run0 = prev = k;
  }
  const char *cat = lst.p;
  char tmp[256];
  if (nparts > 1) {
    const char *t = ox_fresh(c, n->output[0]);
    ox_emit(c, "%s = concat([%s], %d)", t, lst.p, axis);
    snprintf(tmp, sizeof tmp, "%s", t);
    cat = tmp;
  }
  int64_t unk = 0;
  for (int i = 0; i < r; i++) unk += d[i] < 0;
  if (unk > 1) {
    free(lst.p);
    return ox_unsup(c, NULL, "a Gather result with %lld symbolic dimensions", (long long)unk);
  }
  char sh[400];
  ox_val *y = ox_out(c, n, 0, x->dt, r, d, sym);
  ox_emit(c, "%s = reshape(%s, %s)", y->nn, cat, ox_shape_list(d, r, sh, sizeof sh));
  free(lst.p);
  return 0;
}

static int h_slice(ox_ctx *c, node *n) {
  ox_val *x = ox_need(c, n, 0);
  if (!x) return -1;
  int64_t st[OX_MAXDIM], en[OX_MAXDIM], ax[OX_MAXDIM], sp[OX_MAXDIM];
  int ns;
  if (c->opset < 10) {
    ns = ox_attr_ints(n, "starts", st, OX_MAXDIM);
    if (ox_attr_ints(n, "ends", en, OX_MAXDIM) != ns || ns < 0) return ox_err(c, "starts and ends disagree");
    if (ox_attr_ints(n, "axes", ax, OX_MAXDIM) < 0)
      for (int i = 0; i < ns; i++) ax[i] = i;
    for (int i = 0; i < ns; i++) sp[i] = 1;
  } else {
    const ox_array *s = ox_need_const(c, n, 1), *e = ox_need_const(c, n, 2);
    if (!s || !e) return -1;
    ns = (int)s->n;
    if (e->n != s->n || ns > OX_MAXDIM) return ox_err(c, "starts and ends disagree");
    const ox_array *a = ox_in(c, n, 3) ? ox_need_const(c, n, 3) : NULL;
    const ox_array *p = ox_in(c, n, 4) ? ox_need_const(c, n, 4) : NULL;
    if ((ox_in(c, n, 3) && !a) || (ox_in(c, n, 4) && !p)) return -1;
    for (int i = 0; i < ns; i++) {
      st[i] = ox_get_i(s, i), en[i] = ox_get_i(e, i);
      ax[i] = a ? ox_get_i(a, i) : i;
      sp[i] = p ? ox_get_i(p, i) : 1;
    }
  }
  int64_t lo[OX_MAXDIM], hi[OX_MAXDIM], step[OX_MAXDIM], d[OX_MAXDIM];
  const char *sym[OX_MAXDIM];
  for (int i = 0; i < x->rank; i++) lo[i] = 0, hi[i] = x->d[i], step[i] = 1, d[i] = x->d[i], sym[i] = x->sym[i];
  for (int i = 0; i < ns; i++) {
    int a;
    if (ox_axis(c, ax[i], x->rank, &a)) return -1;
    int64_t dim = x->d[a];
    if (sp[i] == 0) return ox_err(c, "step 0");
    if (dim < 0) {
      if (st[i] == 0 && en[i] >= ((int64_t)1 << 31) && sp[i] == 1) continue; /* the whole symbolic axis */
      return ox_unsup(c, NULL, "slicing symbolic dimension %d", a);
    }
    int64_t s0 = st[i], e0 = en[i];
    if (s0 < 0) s0 += dim;
    if (e0 < 0) e0 += dim;
    if (sp[i] > 0) {
      s0 = s0 < 0 ? 0 : s0 > dim ? dim : s0;
      e0 = e0 < 0 ? 0 : e0 > dim ? dim : e0;
    } else {
      s0 = s0 < 0 ? -1 : s0 > dim - 1 ? dim - 1 : s0;
      e0 = e0 < -1 ? -1 : e0 > dim - 1 ? dim - 1 : e0;
    }
    lo[a] = s0, hi[a] = e0, step[a] = sp[i];
    int64_t cnt = sp[i] > 0 ? (e0 - s0 + sp[i] - 1) / sp[i] : (s0 - e0 + (-sp[i]) - 1) / (-sp[i]);
    d[a] = cnt > 0 ? cnt : 0;
    sym[a] = NULL;
  }
  if (x->filled) { /* a ConstantOfShape of a symbolic shape sliced (an RNN's zero state per layer): still no data */
    ox_val *y = ox_out(c, n, 0, x->dt, x->rank, d, sym);
    if (y) free(y->nn), y->nn = NULL, y->filled = 1, y->fill = x->fill;
    return 0;
  }
  const ox_array *xa = ox_fixed(c, x);
  if (xa && x->rank == 1) { /* shape arithmetic */
    ox_array *o = new_array(xa->dtype, 1, &d[0]);
    const char **sv = x->sv ? calloc((size_t)d[0] + 1, sizeof *sv) : NULL;
    for (int64_t j = 0; j < d[0]; j++) {
      int64_t k = lo[0] + j * step[0];
      if (o->f) o->f[j] = xa->f[k];
      else o->i[j] = xa->i[k];
      if (sv) sv[j] = x->sv[k];
    }
    ox_val *y = ox_out_const(c, n, 0, o);
    if (y) y->sv = sv;
    else free(sv);
    return 0;
  }
  const char *cur = ox_ref(c, x);
  if (!cur) return -1;
  char buf[256];
  for (int a = 0; a < x->rank; a++) {
    if (d[a] == 0) return ox_unsup(c, NULL, "an empty slice (Lathe has no empty tensors)");
    if (x->d[a] < 0 || (lo[a] == 0 && hi[a] == x->d[a] && step[a] == 1)) continue;
    if (step[a] != 1) {
      if (d[a] > 256) return ox_unsup(c, NULL, "a strided slice of %lld elements", (long long)d[a]);
      ox_buf lst = {0};
      for (int64_t j = 0; j < d[a]; j++) {
        int64_t k = lo[a] + j * step[a];
        ox_buf_printf(&lst, "%s%s", j ? ", " : "", slice1(c, n->output[0], cur, a, k, k + 1));
      }
      const char *t = ox_fresh(c, n->output[0]);
      ox_emit(c, "%s = concat([%s], %d)", t, lst.p, a);
      free(lst.p);
      snprintf(buf, sizeof buf, "%s", t);
    } else {
      snprintf(buf, sizeof buf, "%s", slice1(c, n->output[0], cur, a, lo[a], hi[a]));
    }
    cur = buf;
  }
  ox_val *y = ox_out(c, n, 0, x->dt, x->rank, d, sym);
  ox_emit(c, "%s = concat([%s], 0)", y->nn, cur);
  return 0;
}

static int h_split(ox_ctx *c, node *n) {
  ox_val *x = ox_need(c, n, 0);
  if (!x) return -1;
  int axis;
  if (ox_axis(c, ox_attr_i(n, "axis", 0), x->rank, &axis)) return -1;
  int no = (int)n->n_output;
  int64_t sz[64];
  if (no > 64) return ox_unsup(c, NULL, "%d outputs", no);
  int ns = -1;
  if (c->opset < 13) ns = ox_attr_ints(n, "split", sz, 64);
  else if (ox_in(c, n, 1)) {
    const ox_array *s = ox_need_const(c, n, 1);
    if (!s) return -1;
    ns = (int)(s->n < 64 ? s->n : 64);
    for (int i = 0; i < ns; i++) sz[i] = ox_get_i(s, i);
  }
  int64_t dim = x->d[axis];
  if (dim < 0) return ox_unsup(c, NULL, "splitting a symbolic dimension");
  if (ns < 0) {
    if (dim % no) return ox_err(c, "%lld does not split in %d equal parts", (long long)dim, no);
    for (int i = 0; i < no; i++) sz[i] = dim / no;
    ns = no;
  }
  if (ns != no) return ox_err(c, "%d split sizes for %d outputs", ns, no);
  const char *xr = ox_ref(c, x);
  if (!xr) return -1;
  char xs[256];
  snprintf(xs, sizeof xs, "%s", xr);
  int64_t at = 0;
  for (int i = 0; i < no; i++) {
    int64_t d[OX_MAXDIM];
    memcpy(d, x->d, sizeof d);
    d[axis] = sz[i];
    if (sz[i] <= 0) return ox_unsup(c, NULL, "an empty split part");
    ox_val *y = ox_out(c, n, i, x->dt, x->rank, d, x->sym);
    if (y) ox_emit(c, "%s = slice(%s, %d, %lld, %lld)", y->nn, xs, axis, (long long)at, (long long)(at + sz[i]));
    at += sz[i];
  }
  return 0;
}

/* Copies along each axis where x has 1 and the target more (Expand), or
 * repeats (Tile): concat of the copies. */
static int repeat_axes(ox_ctx *c, node *n, ox_val *x, const int64_t *times, int rank, const int64_t *d) {
  const char *cur = ox_ref(c, x);
  if (!cur) return -1;
  char buf[256];
  for (int a = 0; a < rank; a++) {
    if (times[a] == 1) continue;
    if (times[a] > 1024 || times[a] < 1) return ox_unsup(c, NULL, "%lld copies along axis %d", (long long)times[a], a);
    ox_buf lst = {0};
    for (int64_t j = 0; j < times[a]; j++) ox_buf_printf(&lst, "%s%s", j ? ", " : "", cur);
    const char *t = ox_fresh(c, n->output[0]);
    ox_emit(c, "%s = concat([%s], %d)", t, lst.p, a);
    free(lst.p);
    snprintf(buf, sizeof buf, "%s", t);
    cur = buf;
  }
  ox_val *y = ox_out(c, n, 0, x->dt, rank, d, NULL);
  ox_emit(c, "%s = concat([%s], 0)", y->nn, cur);
  return 0;
}

static int h_expand(ox_ctx *c, node *n) {
  ox_val *x = ox_need(c, n, 0);
  const ox_array *s = ox_need_const(c, n, 1);
  if (!x || !s) return -1;
  if (s->n > OX_MAXDIM) return ox_err(c, "shape of %lld dimensions", (long long)s->n);
  ox_val t = {0};
  t.rank = (int)s->n;
  for (int i = 0; i < t.rank; i++) {
    t.d[i] = ox_get_i(s, i);
    if (t.d[i] < 1 || t.d[i] > ((int64_t)1 << 40)) return ox_unsup(c, NULL, "expanding to a dimension of %lld", (long long)t.d[i]);
  }
  int rank;
  int64_t d[OX_MAXDIM], times[OX_MAXDIM];
  const char *sym[OX_MAXDIM];
  if (ox_broadcast(c, x, &t, &rank, d, sym)) return -1;
  for (int i = 0; i < rank; i++)
    if (d[i] < 0) return ox_unsup(c, NULL, "expanding to a symbolic dimension");
  /* x first reshaped to the result's rank */
  ox_val *src = x;
  if (x->rank < rank) {
    int64_t xd[OX_MAXDIM];
    for (int i = 0; i < rank; i++) xd[i] = i < rank - x->rank ? 1 : x->d[i - (rank - x->rank)];
    const char *xr = ox_ref(c, x);
    if (!xr) return -1;
    char sh[300];
    const char *tname = ox_fresh(c, n->output[0]);
    ox_emit(c, "%s = reshape(%s, %s)", tname, xr, ox_shape_list(xd, rank, sh, sizeof sh));
    static ox_val tmp; /* a view for repeat_axes: its name and shape */
    memset(&tmp, 0, sizeof tmp);
    tmp.dt = x->dt;
    tmp.rank = rank;
    memcpy(tmp.d, xd, sizeof xd);
    tmp.nn = (char *)tname;
    src = &tmp;
  }
  for (int i = 0; i < rank; i++) times[i] = src->d[i] == d[i] ? 1 : d[i];
  return repeat_axes(c, n, src, times, rank, d);
}

static int h_tile(ox_ctx *c, node *n) {
  ox_val *x = ox_need(c, n, 0);
  const ox_array *r = ox_need_const(c, n, 1);
  if (!x || !r) return -1;
  if (r->n != x->rank) return ox_err(c, "%lld repeats for rank %d", (long long)r->n, x->rank);
  int64_t times[OX_MAXDIM], d[OX_MAXDIM];
  for (int i = 0; i < x->rank; i++) {
    times[i] = ox_get_i(r, i);
    if (x->d[i] < 0 && times[i] != 1) return ox_unsup(c, NULL, "tiling a symbolic dimension");
    if (times[i] < 1 || times[i] > 1024) return ox_unsup(c, NULL, "%lld copies along axis %d", (long long)times[i], i);
    d[i] = ox_mul(x->d[i], times[i]);
  }
  return repeat_axes(c, n, x, times, x->rank, d);
}

/* ---- reductions ---- */

typedef struct {
  const char *op, *pre, *red, *post; /* pre(X) then red over the axes then post(X) */
} reduce_row;

static const reduce_row reduce_rows[] = {
  {"ReduceSum", "X", "sum", "X"},
  {"ReduceMean", "X", "mean", "X"},
  {"ReduceMax", "X", "max", "X"},
  {"ReduceMin", "X", "min", "X"},
  {"ReduceL1", "abs(X)", "sum", "X"},
  {"ReduceL2", "X * X", "sum", "sqrt(X)"},
  {"ReduceSumSquare", "X * X", "sum", "X"},
  {"ReduceLogSum", "X", "sum", "log(X)"},
  {"ReduceLogSumExp", "exp(X)", "sum", "log(X)"},
  {"ReduceProd", "X", "prod", "X"}, /* a product of the axis' slices (exact; small axes) */
};

static int layernorm_pattern(ox_ctx *c, node *n);

static int h_reduce(ox_ctx *c, node *n) {
  if (strcmp(n->op_type, "ReduceMean") == 0) {
    int r = layernorm_pattern(c, n);
    if (r) return r < 0 ? -1 : 0;
  }
  const reduce_row *row = NULL;
  for (size_t i = 0; i < sizeof reduce_rows / sizeof reduce_rows[0]; i++)
    if (strcmp(reduce_rows[i].op, n->op_type) == 0) row = &reduce_rows[i];
  ox_val *x = ox_need(c, n, 0);
  if (!x || !row) return -1;
  int keep = (int)ox_attr_i(n, "keepdims", 1);
  int64_t ax[OX_MAXDIM];
  int na = axes_of(c, n, strcmp(row->op, "ReduceSum") == 0 ? 13 : 18, ax, OX_MAXDIM);
  if (na == -2) return -1;
  if (na <= 0 && ox_attr_i(n, "noop_with_empty_axes", 0)) return ox_alias(c, n, 0, x);
  unsigned char red[OX_MAXDIM] = {0};
  if (na <= 0)
    for (int i = 0; i < x->rank; i++) red[i] = 1;
  for (int i = 0; i < na; i++) {
    int a;
    if (ox_axis(c, ax[i], x->rank, &a)) return -1;
    red[a] = 1;
  }
  if (strcmp(row->pre, "X") != 0 || strcmp(row->post, "X") != 0)
    if (want_float(c, x)) return -1;
  const char *xr = ox_ref(c, x);
  if (!xr) return -1;
  char e[4096], cur[256];
  subst(e, sizeof e, row->pre, xr, "", "");
  if (strcmp(e, xr) != 0) {
    const char *t = ox_fresh(c, n->output[0]);
    ox_emit(c, "%s = %s", t, e);
    snprintf(cur, sizeof cur, "%s", t);
  } else {
    snprintf(cur, sizeof cur, "%s", xr);
  }
  int64_t d[OX_MAXDIM];
  const char *sym[OX_MAXDIM];
  int r = 0;
  for (int i = 0; i < x->rank; i++) {
    if (!red[i]) d[r] = x->d[i], sym[r++] = x->sym[i];
    else if (keep) d[r] = 1, sym[r++] = NULL;
  }
  /* from the last axis down, so the lower axes keep their numbers */
  ox_buf acc = {0};
  ox_buf_printf(&acc, "%s", cur);
  int prod = strcmp(row->red, "prod") == 0;
  for (int i = x->rank - 1; i >= 0; i--) {
    if (!red[i]) continue;
    const char *t = ox_fresh(c, n->output[0]);
    if (prod) {
      if (x->d[i] < 1 || x->d[i] > 64) {
        free(acc.p);
        return ox_unsup(c, NULL, "ReduceProd over an axis of %lld (at most 64, static)", (long long)x->d[i]);
      }
      ox_buf e2 = {0};
      for (int64_t j = 0; j < x->d[i]; j++)
        ox_buf_printf(&e2, "%sslice(%s, %d, %lld, %lld)", j ? " * " : "", acc.p, i, (long long)j, (long long)(j + 1));
      ox_emit(c, "%s = %s", t, e2.p);
      free(e2.p);
      acc.n = 0;
      ox_buf_printf(&acc, "%s", t);
      continue;
    }
    ox_emit(c, "%s = %s(%s, %d, keepdims=%s)", t, row->red, acc.p, i, keep ? "true" : "false");
    acc.n = 0;
    ox_buf_printf(&acc, "%s", t);
  }
  subst(e, sizeof e, row->post, acc.p, "", "");
  free(acc.p);
  if (prod && !keep) { /* the slices kept their axes */
    int unk = 0;
    int64_t rd[OX_MAXDIM];
    for (int i = 0; i < r; i++) rd[i] = d[i] < 0 ? -1 : d[i], unk += d[i] < 0;
    if (unk > 1) return ox_unsup(c, NULL, "ReduceProd keeping several symbolic dimensions");
    char sh[300], t[4096];
    const char *pn = ox_fresh(c, n->output[0]);
    ox_emit(c, "%s = %s", pn, e);
    if (r == 0) snprintf(t, sizeof t, "sum(%s)", pn);
    else snprintf(t, sizeof t, "reshape(%s, %s)", pn, ox_shape_list(rd, r, sh, sizeof sh));
    memcpy(e, t, sizeof t);
  }
  ox_val *y = ox_out(c, n, 0, x->dt, r, d, sym);
  ox_emit(c, "%s = %s", y->nn, e);
  return 0;
}

static int h_argext(ox_ctx *c, node *n) {
  ox_val *x = ox_need(c, n, 0);
  if (!x) return -1;
  int axis, keep = (int)ox_attr_i(n, "keepdims", 1), last = (int)ox_attr_i(n, "select_last_index", 0);
  if (ox_axis(c, ox_attr_i(n, "axis", 0), x->rank, &axis)) return -1;
  const char *xr = ox_ref(c, x);
  if (!xr) return -1;
  int mx = strcmp(n->op_type, "ArgMax") == 0;
  if (last) {
    /* the last extremum: the largest position (1 + index) among the places
     * equal to the extremum */
    if (x->d[axis] < 0) return ox_unsup(c, "select_last_index", "over a symbolic dimension");
    int64_t sh[OX_MAXDIM];
    char shs[300];
    for (int i = 0; i < x->rank; i++) sh[i] = i == axis ? x->d[i] : 1;
    const char *pos = ox_fresh(c, n->output[0]);
    ox_emit(c, "%s = where(equal(%s, %s(%s, %d, keepdims=true)), reshape(arange(%lld), %s) + 1, 0)", pos, xr,
            mx ? "max" : "min", xr, axis, (long long)x->d[axis], ox_shape_list(sh, x->rank, shs, sizeof shs));
    int64_t d[OX_MAXDIM];
    const char *sym[OX_MAXDIM];
    int r = 0;
    for (int i = 0; i < x->rank; i++) {
      if (i != axis) d[r] = x->d[i], sym[r++] = x->sym[i];
      else if (keep) d[r] = 1, sym[r++] = NULL;
    }
    ox_val *y = ox_out(c, n, 0, LATHE_I64, r, d, sym);
    ox_emit(c, "%s = cast(argmax(%s, %d, keepdims=%s), \"i64\")", y->nn, pos, axis, keep ? "true" : "false");
    return 0;
  }
  int64_t d[OX_MAXDIM];
  const char *sym[OX_MAXDIM];
  int r = 0;
  for (int i = 0; i < x->rank; i++) {
    if (i != axis) d[r] = x->d[i], sym[r++] = x->sym[i];
    else if (keep) d[r] = 1, sym[r++] = NULL;
  }
  ox_val *y = ox_out(c, n, 0, LATHE_I64, r, d, sym);
  ox_emit(c, "%s = cast(%s(%s, %d, keepdims=%s), \"i64\")", y->nn, strcmp(n->op_type, "ArgMax") == 0 ? "argmax" : "argmin",
          xr, axis, keep ? "true" : "false");
  return 0;
}

static int h_softmax(ox_ctx *c, node *n) {
  ox_val *x = ox_need(c, n, 0);
  if (!x || want_float(c, x)) return -1;
  const char *fn = strcmp(n->op_type, "Softmax") == 0 ? "softmax" : "log_softmax";
  int axis;
  if (ox_axis(c, ox_attr_i(n, "axis", c->opset < 13 ? 1 : -1), x->rank, &axis)) return -1;
  const char *xr = ox_ref(c, x);
  if (!xr) return -1;
  ox_val *y = ox_out_like(c, n, 0, x, -1);
  if (c->opset >= 13 || axis == x->rank - 1) {
    ox_emit(c, "%s = %s(%s, axis=%d)", y->nn, fn, xr, axis);
    return 0;
  }
  /* before opset 13: over the flattened axes from `axis` on */
  int64_t a = 1, b = 1;
  for (int i = 0; i < x->rank; i++) {
    if (x->d[i] < 0) return ox_unsup(c, NULL, "coerced softmax over a symbolic dimension");
    *(i < axis ? &a : &b) = ox_mul(*(i < axis ? &a : &b), x->d[i]);
  }
  char sh[300];
  ox_emit(c, "%s = reshape(%s(reshape(%s, [%lld, %lld]), axis=1), %s)", y->nn, fn, xr, (long long)a, (long long)b,
          ox_shape_list(x->d, x->rank, sh, sizeof sh));
  return 0;
}

static int h_cumsum(ox_ctx *c, node *n) {
  ox_val *x = ox_need(c, n, 0);
  const ox_array *a = ox_need_const(c, n, 1);
  if (!x || !a || want_float(c, x)) return -1;
  if (ox_attr_i(n, "reverse", 0)) return ox_unsup(c, "reverse", "1");
  int axis;
  if (ox_axis(c, ox_get_i(a, 0), x->rank, &axis)) return -1;
  const char *xr = ox_ref(c, x);
  if (!xr) return -1;
  ox_val *y = ox_out_like(c, n, 0, x, -1);
  if (ox_attr_i(n, "exclusive", 0)) ox_emit(c, "%s = cumsum(%s, %d) - %s", y->nn, xr, axis, xr);
  else ox_emit(c, "%s = cumsum(%s, %d)", y->nn, xr, axis);
  return 0;
}

static int h_depth_space(ox_ctx *c, node *n) {
  ox_val *x = ox_need(c, n, 0);
  if (!x) return -1;
  if (x->rank != 4) return ox_err(c, "expects a 4-d tensor");
  int64_t b = ox_attr_i(n, "blocksize", 0), N = x->d[0], C = x->d[1], H = x->d[2], W = x->d[3];
  if (b < 1 || N < 0 || C < 0 || H < 0 || W < 0) return ox_unsup(c, NULL, "symbolic dimensions or blocksize %lld", (long long)b);
  const char *xr = ox_ref(c, x);
  if (!xr) return -1;
  int d2s = strcmp(n->op_type, "DepthToSpace") == 0;
  const char *mode = ox_attr_s(n, "mode", "DCR");
  int64_t od[4];
  if (d2s) {
    if (C % (b * b)) return ox_err(c, "channels %lld not divisible by blocksize^2", (long long)C);
    od[0] = N, od[1] = C / (b * b), od[2] = H * b, od[3] = W * b;
    ox_val *y = ox_out(c, n, 0, x->dt, 4, od, NULL);
    if (strcmp(mode, "CRD") == 0)
      ox_emit(c, "%s = reshape(transpose(reshape(%s, [%lld, %lld, %lld, %lld, %lld, %lld]), [0, 1, 4, 2, 5, 3]), [%lld, %lld, %lld, %lld])",
              y->nn, xr, (long long)N, (long long)(C / (b * b)), (long long)b, (long long)b, (long long)H, (long long)W,
              (long long)od[0], (long long)od[1], (long long)od[2], (long long)od[3]);
    else
      ox_emit(c, "%s = reshape(transpose(reshape(%s, [%lld, %lld, %lld, %lld, %lld, %lld]), [0, 3, 4, 1, 5, 2]), [%lld, %lld, %lld, %lld])",
              y->nn, xr, (long long)N, (long long)b, (long long)b, (long long)(C / (b * b)), (long long)H, (long long)W,
              (long long)od[0], (long long)od[1], (long long)od[2], (long long)od[3]);
  } else {
    if (H % b || W % b) return ox_err(c, "spatial size not divisible by blocksize");
    od[0] = N, od[1] = C * b * b, od[2] = H / b, od[3] = W / b;
    ox_val *y = ox_out(c, n, 0, x->dt, 4, od, NULL);
    ox_emit(c, "%s = reshape(transpose(reshape(%s, [%lld, %lld, %lld, %lld, %lld, %lld]), [0, 3, 5, 1, 2, 4]), [%lld, %lld, %lld, %lld])",
            y->nn, xr, (long long)N, (long long)C, (long long)(H / b), (long long)b, (long long)(W / b), (long long)b,
            (long long)od[0], (long long)od[1], (long long)od[2], (long long)od[3]);
  }
  return 0;
}

/* Trilu: the upper (lower) triangle from diagonal k of the last two axes;
 * a constant is folded, a tensor masked by comparing arange()s. */
static int h_trilu(ox_ctx *c, node *n) {
  ox_val *x = ox_need(c, n, 0);
  if (!x) return -1;
  int64_t k = 0;
  if (ox_in(c, n, 1)) {
    const ox_array *ka = ox_need_const(c, n, 1);
    if (!ka) return -1;
    k = ox_get_i(ka, 0);
  }
  int upper = (int)ox_attr_i(n, "upper", 1);
  if (x->rank < 2) return ox_err(c, "expects a tensor of rank >= 2");
  int64_t N = x->d[x->rank - 2], M = x->d[x->rank - 1];
  if (N < 0 || M < 0) return ox_unsup(c, NULL, "Trilu over a symbolic dimension");
  const ox_array *xa = ox_fixed(c, x);
  if (xa) {
    ox_array *o = new_array(xa->dtype, x->rank, x->d);
    for (int64_t i = 0; i < o->n; i++) {
      int64_t r = (i / M) % N, col = i % M;
      int keep = upper ? col - r >= k : col - r <= k;
      if (o->f) o->f[i] = keep ? xa->f[i] : 0;
      else o->i[i] = keep ? xa->i[i] : 0;
    }
    ox_out_const(c, n, 0, o);
    return 0;
  }
  const char *xr = ox_ref(c, x);
  if (!xr) return -1;
  const char *mk = ox_fresh(c, n->output[0]);
  ox_emit(c, "%s = %s(reshape(arange(%lld), [1, %lld]) - reshape(arange(%lld), [%lld, 1]), %lld)", mk,
          upper ? "greater_equal" : "less_equal", (long long)M, (long long)M, (long long)N, (long long)N, (long long)k);
  ox_val *y = ox_out_like(c, n, 0, x, -1);
  if (x->dt == LATHE_BOOL) ox_emit(c, "%s = where(%s, %s, not_equal(%s, %s))", y->nn, mk, xr, xr, xr);
  else ox_emit(c, "%s = where(%s, %s, %s)", y->nn, mk, xr, ox_is_float_dt(x->dt) ? "0.0" : "0");
  return 0;
}

static node *producer(ox_ctx *c, const char *name) {
  for (int j = 0; j < c->nnodes; j++)
    for (size_t k = 0; k < c->nodes[j]->n_output; k++)
      if (c->nodes[j]->output[k] && strcmp(c->nodes[j]->output[k], name) == 0) return c->nodes[j];
  return NULL;
}

/* The one later node that reads `name` (its index), if it is op `op`. */
static int sole_user(ox_ctx *c, const char *name, const char *op) {
  if (ox_uses(c, name) != 1) return -1;
  for (int j = c->cur + 1; j < c->nnodes; j++)
    for (size_t k = 0; k < c->nodes[j]->n_input; k++)
      if (c->nodes[j]->input[k] && strcmp(c->nodes[j]->input[k], name) == 0)
        return strcmp(c->nodes[j]->op_type, op) == 0 && !c->skip[j] ? j : -1;
  return -1;
}

static int is_scalar_const(ox_ctx *c, node *n, int k, double want, double tol) {
  const ox_array *a = ox_fixed(c, ox_in(c, n, k));
  return a && a->n == 1 && fabs(ox_get_f(a, 0) - want) <= tol;
}

/* The first later node of op `op` reading `name`: its index, or -1. */
static int user_of(ox_ctx *c, const char *name, const char *op) {
  for (int j = c->cur + 1; j < c->nnodes; j++)
    for (size_t k = 0; k < c->nodes[j]->n_input; k++)
      if (c->nodes[j]->input[k] && strcmp(c->nodes[j]->input[k], name) == 0 && !c->skip[j] &&
          strcmp(c->nodes[j]->op_type, op) == 0)
        return j;
  return -1;
}

/* The other input of a two-input node than `name`. */
static ox_val *other_in(ox_ctx *c, node *m, const char *name) {
  return ox_in(c, m, strcmp(m->input[0], name) == 0 ? 1 : 0);
}

/* PyTorch's decomposed layer norm (opsets before 17): ReduceMean(x) -> Sub
 * -> Pow 2 -> ReduceMean -> Add eps -> Sqrt -> Div, then Mul by a constant
 * [D] and Add of a constant [D]: the language's layernorm. 1 when emitted, 0
 * when the graph is not that pattern, -1 on an error. */
static int layernorm_pattern(ox_ctx *c, node *n) {
  ox_val *x = ox_in(c, n, 0);
  int64_t ax[OX_MAXDIM];
  if (!x || x->rank < 1 || !ox_is_float_dt(x->dt) || ox_attr_ints(n, "axes", ax, OX_MAXDIM) != 1 ||
      (ax[0] != -1 && ax[0] != x->rank - 1) || !ox_attr_i(n, "keepdims", 1))
    return 0;
  int64_t D = x->d[x->rank - 1];
  int js = sole_user(c, n->output[0], "Sub");
  node *sub = js >= 0 ? c->nodes[js] : NULL;
  if (!sub || strcmp(sub->input[0], x->onnx) != 0) return 0;
  const char *dn = sub->output[0];
  if (ox_uses(c, dn) != 2) return 0;
  int jp = user_of(c, dn, "Pow"), jd = user_of(c, dn, "Div");
  if (jp < 0 || jd < 0 || !is_scalar_const(c, c->nodes[jp], 1, 2.0, 0)) return 0;
  int jm = sole_user(c, c->nodes[jp]->output[0], "ReduceMean");
  if (jm < 0) return 0;
  node *m2 = c->nodes[jm];
  if (ox_attr_ints(m2, "axes", ax, OX_MAXDIM) != 1 || (ax[0] != -1 && ax[0] != x->rank - 1)) return 0;
  int ja = sole_user(c, m2->output[0], "Add");
  if (ja < 0) return 0;
  ox_val *ev = other_in(c, c->nodes[ja], m2->output[0]);
  const ox_array *ea = ox_fixed(c, ev);
  if (!ea || ea->n != 1) return 0;
  int jq = sole_user(c, c->nodes[ja]->output[0], "Sqrt");
  if (jq < 0 || jd != sole_user(c, c->nodes[jq]->output[0], "Div") || strcmp(c->nodes[jd]->input[0], dn) != 0) return 0;
  node *last = c->nodes[jd];
  const ox_array *wa = NULL, *ba = NULL;
  ox_val *wv = NULL;
  int jw = sole_user(c, last->output[0], "Mul"), jb = -1;
  if (jw >= 0) {
    wv = other_in(c, c->nodes[jw], last->output[0]);
    wa = ox_fixed(c, wv);
    if (!wa || wa->n != D || wv->rank != 1) jw = -1, wa = NULL;
  }
  if (jw >= 0) {
    jb = sole_user(c, c->nodes[jw]->output[0], "Add");
    ox_val *bv = jb >= 0 ? other_in(c, c->nodes[jb], c->nodes[jw]->output[0]) : NULL;
    ba = bv ? ox_fixed(c, bv) : NULL;
    if (!ba || ba->n != D || bv->rank != 1) jb = -1, ba = NULL;
  }
  const char *xr = ox_ref(c, x);
  if (!xr) return -1;
  extern const char *ox_layer_name(ox_ctx * c, node * n, const ox_val *w, char *buf, size_t size);
  char L[300], eps[64];
  ox_layer_name(c, n, wv, L, sizeof L);
  ox_array ones = {0}, zeros = {0};
  ox_array_alloc(&ones, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, D);
  ox_array_alloc(&zeros, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, D);
  for (int64_t i = 0; i < D; i++) ones.f[i] = 1;
  char pn[400];
  snprintf(pn, sizeof pn, "%s.weight", L);
  ox_add_param(c, pn, wa ? wa : &ones, &D, 1, 0);
  snprintf(pn, sizeof pn, "%s.bias", L);
  ox_add_param(c, pn, ba ? ba : &zeros, &D, 1, 0);
  ox_array_free(&ones), ox_array_free(&zeros);
  ox_numeric_literal(eps, sizeof eps, ox_get_f(ea, 0), LATHE_F32);
  node *out = jb >= 0 ? c->nodes[jb] : jw >= 0 ? c->nodes[jw] : last;
  int chain[] = {js, jp, jm, ja, jq, jd, jw, jb};
  for (size_t i = 0; i < sizeof chain / sizeof chain[0]; i++)
    if (chain[i] >= 0) c->skip[chain[i]] = 1;
  ox_val *y = ox_out_like(c, out, 0, x, -1);
  ox_emit(c, "%s = layernorm(%s, eps=%s, name=\"%s\")", y->nn, xr, eps, L);
  return 1;
}

/* GELU's x / sqrt(2) (or x * (1 / sqrt 2)) read only by an Erf: the Erf's
 * index, else -1. */
static int gelu_prescale_erf(ox_ctx *c, node *n) {
  int div = strcmp(n->op_type, "Div") == 0;
  if (n->n_input != 2 || !is_scalar_const(c, n, 1, div ? 1.41421356 : 0.70710678, div ? 1e-5 : 1e-6)) return -1;
  return sole_user(c, n->output[0], "Erf");
}

/* The GELU match (h_erf) reads x itself, so at its scaling the Erf is
 * imported at once and skipped, leaving the scaling unread: emitting it would
 * leave a dead line per GELU in the .nn (an Erf outside the pattern is
 * refused either way). */
static int h_div_mul(ox_ctx *c, node *n) {
  int j = gelu_prescale_erf(c, n);
  if (j < 0) return h_binary(c, n);
  if (ox_run_node(c, j)) return -1;
  c->skip[j] = 1;
  return 0;
}

/* Erf is in ONNX only as exact GELU's decomposition (PyTorch's export of
 * F.gelu): x / sqrt(2) -> Erf -> + 1 -> x * . -> * 0.5 becomes gelu(x). */
static int h_erf(ox_ctx *c, node *n) {
  node *dv = producer(c, n->input[0]);
  const char *x = NULL;
  if (dv && dv->op_type && strcmp(dv->op_type, "Div") == 0 && is_scalar_const(c, dv, 1, 1.41421356, 1e-5)) x = dv->input[0];
  if (dv && dv->op_type && strcmp(dv->op_type, "Mul") == 0 && is_scalar_const(c, dv, 1, 0.70710678, 1e-6)) x = dv->input[0];
  int ja = x ? sole_user(c, n->output[0], "Add") : -1;
  node *add = ja >= 0 ? c->nodes[ja] : NULL;
  int jm = add && (is_scalar_const(c, add, 0, 1, 0) || is_scalar_const(c, add, 1, 1, 0)) ? sole_user(c, add->output[0], "Mul") : -1;
  node *mul = jm >= 0 ? c->nodes[jm] : NULL;
  int jh = mul && (strcmp(mul->input[0], x) == 0 || strcmp(mul->input[1], x) == 0) ? sole_user(c, mul->output[0], "Mul") : -1;
  node *half = jh >= 0 ? c->nodes[jh] : NULL;
  if (!half || !(is_scalar_const(c, half, 0, 0.5, 0) || is_scalar_const(c, half, 1, 0.5, 0)))
    return ox_unsup(c, NULL, "Erf outside the GELU pattern x * 0.5 * (1 + erf(x / sqrt(2)))");
  ox_val *xv = ox_in(c, dv, 0);
  const char *xr = ox_ref(c, xv);
  if (!xr || want_float(c, xv)) return -1;
  c->skip[ja] = c->skip[jm] = c->skip[jh] = 1;
  ox_val *y = ox_out_like(c, half, 0, xv, -1);
  ox_emit(c, "%s = gelu(%s)", y->nn, xr);
  return 0;
}

/* GatherElements is torch.gather; negative indices wrap first. */
static int h_gather_elements(ox_ctx *c, node *n) {
  ox_val *x = ox_need(c, n, 0), *iv = ox_need(c, n, 1);
  if (!x || !iv) return -1;
  int axis;
  if (ox_axis(c, ox_attr_i(n, "axis", 0), x->rank, &axis)) return -1;
  if (iv->rank != x->rank) return ox_err(c, "indices of rank %d for data of rank %d", iv->rank, x->rank);
  if (x->d[axis] < 0) return ox_unsup(c, NULL, "GatherElements along a symbolic dimension");
  const char *xr = ox_ref(c, x), *ir = ox_ref(c, iv);
  if (!xr || !ir) return -1;
  ox_val *y = ox_out_like(c, n, 0, iv, x->dt);
  ox_emit(c, "%s = gather(%s, %d, where(less(%s, 0), %s + %lld, %s))", y->nn, xr, axis, ir, ir, (long long)x->d[axis], ir);
  return 0;
}

/* NegativeLogLikelihoodLoss on log-probabilities lp [N, C, d...] (the .nn
 * name lpr) and targets t [N, d...]: the picked entries by a one_hot of the
 * targets (ignored targets masked and sent to class 0), weighted, reduced as
 * `reduction` says; the loss defines output 0 of n. */
static int nll_emit(ox_ctx *c, node *n, ox_val *lp, const char *lpr, ox_val *t, ox_val *w) {
  if (want_float(c, lp)) return -1;
  if (lp->rank < 2 || t->rank != lp->rank - 1) return ox_err(c, "expects input [N, C, ...] and target [N, ...]");
  int64_t C = lp->d[1];
  if (C < 0) return ox_unsup(c, NULL, "a symbolic class dimension");
  const char *red = ox_attr_s(n, "reduction", "mean");
  char rd[16];
  snprintf(rd, sizeof rd, "%s", red);
  if (strcmp(rd, "none") && strcmp(rd, "sum") && strcmp(rd, "mean")) return ox_unsup(c, "reduction", "'%s'", rd);
  const Onnx__AttributeProto *ig = ox_attr(n, "ignore_index");
  const char *tr = ox_ref(c, t), *wr = w ? ox_ref(c, w) : NULL;
  if (!tr || (w && !wr)) return -1;
  const char *base = n->output[0];
  char perm[200], xt[256], ts[256];
  int r = lp->rank;
  if (r > 2) {
    int k = snprintf(perm, sizeof perm, "[0");
    for (int i = 2; i < r; i++) k += snprintf(perm + k, sizeof perm - (size_t)k, ", %d", i);
    snprintf(perm + k, sizeof perm - (size_t)k, ", 1]");
    const char *v = ox_fresh(c, base);
    ox_emit(c, "%s = transpose(%s, %s)", v, lpr, perm);
    snprintf(xt, sizeof xt, "%s", v);
  } else {
    snprintf(xt, sizeof xt, "%s", lpr);
  }
  const char *valid = NULL;
  if (ig) {
    valid = ox_fresh(c, base);
    ox_emit(c, "%s = not_equal(%s, %lld)", valid, tr, (long long)ig->i);
    const char *v = ox_fresh(c, base);
    ox_emit(c, "%s = where(%s, %s, 0)", v, valid, tr);
    snprintf(ts, sizeof ts, "%s", v);
  } else {
    snprintf(ts, sizeof ts, "%s", tr);
  }
  const char *oh = ox_fresh(c, base), *g = ox_fresh(c, base);
  ox_emit(c, "%s = one_hot(%s, %lld)", oh, ts, (long long)C);
  ox_emit(c, "%s = sum(%s * %s, %d)", g, oh, xt, r - 1);
  const char *wt = NULL;
  if (w) {
    wt = ox_fresh(c, base);
    ox_emit(c, "%s = sum(%s * %s, %d)", wt, oh, wr, r - 1);
  }
  if (valid) {
    const char *m = ox_fresh(c, base);
    if (wt) ox_emit(c, "%s = %s * cast(%s, \"f32\")", m, wt, valid);
    else ox_emit(c, "%s = cast(%s, \"f32\")", m, valid);
    wt = m;
  }
  const char *l = ox_fresh(c, base);
  if (wt) ox_emit(c, "%s = neg(%s) * %s", l, g, wt);
  else ox_emit(c, "%s = neg(%s)", l, g);
  ox_val *y;
  if (strcmp(rd, "none") == 0) {
    y = ox_out_like(c, n, 0, t, lp->dt);
    ox_emit(c, "%s = concat([%s], 0)", y->nn, l);
  } else {
    y = ox_out(c, n, 0, lp->dt, 0, NULL, NULL);
    if (strcmp(rd, "sum") == 0) ox_emit(c, "%s = sum(%s)", y->nn, l);
    else if (wt) ox_emit(c, "%s = sum(%s) / sum(%s)", y->nn, l, wt);
    else ox_emit(c, "%s = mean(%s)", y->nn, l);
  }
  return 0;
}

static int h_nll(ox_ctx *c, node *n) {
  ox_val *x = ox_need(c, n, 0), *t = ox_need(c, n, 1), *w = ox_in(c, n, 2);
  if (!x || !t) return -1;
  const char *xr = ox_ref(c, x);
  if (!xr) return -1;
  return nll_emit(c, n, x, xr, t, w);
}

/* SoftmaxCrossEntropyLoss: log_softmax over the classes (axis 1; output 1
 * when asked for), then the NLL above. */
static int h_sce(ox_ctx *c, node *n) {
  ox_val *x = ox_need(c, n, 0), *t = ox_need(c, n, 1), *w = ox_in(c, n, 2);
  if (!x || !t || want_float(c, x)) return -1;
  const char *xr = ox_ref(c, x);
  if (!xr) return -1;
  const char *lp = ox_fresh(c, n->output[0]);
  ox_emit(c, "%s = log_softmax(%s, axis=1)", lp, xr);
  char lps[256];
  snprintf(lps, sizeof lps, "%s", lp);
  if (nll_emit(c, n, x, lps, t, w)) return -1;
  ox_val *lo = ox_out_like(c, n, 1, x, -1);
  if (lo) ox_emit(c, "%s = concat([%s], 0)", lo->nn, lps);
  return 0;
}

static int h_hardmax(ox_ctx *c, node *n) {
  ox_val *x = ox_need(c, n, 0);
  if (!x || want_float(c, x)) return -1;
  int axis;
  if (ox_axis(c, ox_attr_i(n, "axis", c->opset < 13 ? 1 : -1), x->rank, &axis)) return -1;
  if (axis != x->rank - 1) return ox_unsup(c, "axis", "%d: Hardmax over another axis than the last", axis);
  const char *xr = ox_ref(c, x);
  if (!xr) return -1;
  ox_val *y = ox_out_like(c, n, 0, x, -1);
  ox_emit(c, "%s = cast(one_hot(argmax(%s, %d), %lld), \"%s\")", y->nn, xr, axis, (long long)x->d[axis], ox_dt_name(x->dt));
  return 0;
}

static int h_eyelike(ox_ctx *c, node *n) {
  ox_val *x = ox_need(c, n, 0);
  if (!x) return -1;
  if (x->rank != 2 || x->d[0] < 0 || x->d[1] < 0 || x->d[0] * x->d[1] > ((int64_t)1 << 26))
    return ox_unsup(c, NULL, "EyeLike of a tensor that is not a static matrix of at most 2^26 elements");
  int to = (int)ox_attr_i(n, "dtype", onnx_dtype_of(x->dt));
  int64_t k = ox_attr_i(n, "k", 0);
  ox_array *o = new_array(to, 2, x->d);
  for (int64_t i = 0; i < x->d[0]; i++)
    for (int64_t j = 0; j < x->d[1]; j++) {
      if (o->f) o->f[i * x->d[1] + j] = j - i == k;
      else o->i[i * x->d[1] + j] = j - i == k;
    }
  ox_out_const(c, n, 0, o);
  return 0;
}

const char *ox_pad_expr(ox_ctx *c, const char *base, const char *xr, int dt, int rank, int64_t *d, int first,
                        const int64_t *lo, const int64_t *hi, const char *val, int reflect);

/* Pad: constant (a block of the value each side), edge (copies of the border
 * slice) or reflect (the mirrored slices), concatenated around x. */
static int h_pad(ox_ctx *c, node *n) {
  ox_val *x = ox_need(c, n, 0);
  if (!x) return -1;
  int64_t pads[2 * OX_MAXDIM];
  int np;
  double val = 0;
  if (c->opset < 11) {
    np = ox_attr_ints(n, "pads", pads, 2 * OX_MAXDIM);
    val = ox_attr_f(n, "value", 0);
  } else {
    const ox_array *pa = ox_need_const(c, n, 1);
    if (!pa) return -1;
    np = (int)(pa->n < 2 * OX_MAXDIM ? pa->n : 2 * OX_MAXDIM);
    for (int i = 0; i < np; i++) pads[i] = ox_get_i(pa, i);
    if (ox_in(c, n, 2)) {
      const ox_array *va = ox_need_const(c, n, 2);
      if (!va) return -1;
      val = va->n ? ox_get_f(va, 0) : 0;
    }
    if (ox_in(c, n, 3)) return ox_unsup(c, NULL, "Pad's axes input");
  }
  if (np != 2 * x->rank) return ox_err(c, "%d pads for rank %d", np, x->rank);
  const char *mode = ox_attr_s(n, "mode", "constant");
  int m = strcmp(mode, "constant") == 0 ? 0 : strcmp(mode, "edge") == 0 ? 1 : strcmp(mode, "reflect") == 0 ? 2 : -1;
  if (m < 0) return ox_unsup(c, "mode", "'%s'", mode);
  for (int i = 0; i < 2 * x->rank; i++) {
    if (pads[i] < 0 || pads[i] > 1024) return ox_unsup(c, "pads", "a pad of %lld (negative pads crop)", (long long)pads[i]);
    if (pads[i] && x->d[i % x->rank] < 0) return ox_unsup(c, "pads", "padding a symbolic dimension");
  }
  const char *xr = ox_ref(c, x);
  if (!xr) return -1;
  char v[64];
  if (m == 0 && ox_numeric_literal(v, sizeof v, val, x->dt)) return ox_unsup(c, NULL, "a NaN pad value");
  int64_t d[OX_MAXDIM];
  memcpy(d, x->d, sizeof d);
  const char *r = ox_pad_expr(c, n->output[0], xr, x->dt, x->rank, d, 0, pads, pads + x->rank, m == 0 ? v : NULL, m == 2);
  if (!r) return -1;
  char rs[256];
  snprintf(rs, sizeof rs, "%s", r);
  ox_val *y = ox_out(c, n, 0, x->dt, x->rank, d, x->sym);
  ox_emit(c, "%s = concat([%s], 0)", y->nn, rs);
  return 0;
}

/* OneHot: the language's one_hot (a last axis of `depth` f32 0/1) scaled to
 * the off/on values, negative indices wrapped, moved to `axis`. */
static int h_onehot(ox_ctx *c, node *n) {
  ox_val *iv = ox_need(c, n, 0);
  const ox_array *da = ox_need_const(c, n, 1), *va = ox_need_const(c, n, 2);
  if (!iv || !da || !va) return -1;
  int64_t depth = (int64_t)ox_get_f(da, 0);
  if (depth < 1 || depth > (1 << 24) || va->n != 2) return ox_err(c, "depth %lld or %lld values", (long long)depth, (long long)va->n);
  int vdt = ox_lathe_dtype(va->dtype);
  if (vdt < 0) return ox_unsup(c, NULL, "values of data type %d", va->dtype);
  int r = iv->rank + 1, axis;
  if (r > OX_MAXDIM) return ox_unsup(c, NULL, "rank %d", r);
  if (ox_axis(c, ox_attr_i(n, "axis", -1), r, &axis)) return -1;
  const char *ir = ox_ref(c, iv);
  if (!ir) return -1;
  char off[64], on[64];
  if (ox_numeric_literal(off, sizeof off, ox_get_f(va, 0), LATHE_F32) || ox_numeric_literal(on, sizeof on, ox_get_f(va, 1), LATHE_F32))
    return ox_unsup(c, NULL, "non-finite values");
  const char *id = ox_fresh(c, n->output[0]);
  if (ox_is_float_dt(iv->dt)) ox_emit(c, "%s = cast(%s, \"i64\")", id, ir);
  else ox_emit(c, "%s = cast(%s, \"i64\")", id, ir);
  const char *oh = ox_fresh(c, n->output[0]);
  ox_emit(c, "%s = one_hot(where(less(%s, 0), %s + %lld, %s), %lld) * (%s - %s) + %s", oh, id, id, (long long)depth, id,
          (long long)depth, on, off, off);
  int64_t d[OX_MAXDIM], perm[OX_MAXDIM];
  const char *sym[OX_MAXDIM];
  for (int i = 0, j = 0; i < r; i++) {
    if (i == axis) d[i] = depth, sym[i] = NULL, perm[i] = r - 1;
    else d[i] = iv->d[j], sym[i] = iv->sym[j], perm[i] = j, j++;
  }
  ox_val *y = ox_out(c, n, 0, vdt, r, d, sym);
  char ps[200];
  if (axis == r - 1) ox_emit(c, "%s = cast(%s, \"%s\")", y->nn, oh, ox_dt_name(vdt));
  else ox_emit(c, "%s = cast(transpose(%s, %s), \"%s\")", y->nn, oh, ox_shape_list(perm, r, ps, sizeof ps), ox_dt_name(vdt));
  return 0;
}

/* layers: ox_layers.c */
int ox_h_matmul(ox_ctx *c, node *n);
int ox_h_gemm(ox_ctx *c, node *n);
int ox_h_conv(ox_ctx *c, node *n);
int ox_h_pool(ox_ctx *c, node *n);
int ox_h_global_pool(ox_ctx *c, node *n);
int ox_h_batchnorm(ox_ctx *c, node *n);
int ox_h_layernorm(ox_ctx *c, node *n);
int ox_h_instancenorm(ox_ctx *c, node *n);
int ox_h_recurrent(ox_ctx *c, node *n);

#define ACT(op, attrs) {op, h_unary, attrs}
const ox_op ox_ops[] = {
  ACT("Relu", ""), ACT("Sigmoid", ""), ACT("Tanh", ""), ACT("Exp", ""), ACT("Log", ""), ACT("Sqrt", ""),
  ACT("Abs", ""), ACT("Neg", ""), ACT("Reciprocal", ""), ACT("Softsign", ""), ACT("Softplus", ""), ACT("Mish", ""),
  ACT("LeakyRelu", "alpha"), ACT("Elu", "alpha"), ACT("Selu", "alpha,gamma"), ACT("Celu", "alpha"),
  ACT("HardSigmoid", "alpha,beta"), ACT("HardSwish", ""), ACT("ThresholdedRelu", "alpha"), ACT("Shrink", "lambd,bias"),
  ACT("Sign", ""), ACT("Sinh", ""), ACT("Cosh", ""), ACT("Asinh", ""), ACT("Acosh", ""), ACT("Atanh", ""),
  {"IsNaN", h_isnan, ""},
  {"IsInf", h_isinf, "detect_negative,detect_positive"},
  {"Not", h_not, ""},
  {"Identity", h_identity, ""},
  {"Dropout", h_identity, "ratio,seed"},
  {"Add", h_binary, ""}, {"Sub", h_binary, ""}, {"Mul", h_div_mul, ""}, {"Div", h_div_mul, ""},
  {"Less", h_binary, ""}, {"LessOrEqual", h_binary, ""}, {"Greater", h_binary, ""}, {"GreaterOrEqual", h_binary, ""},
  {"Equal", h_binary, ""}, {"And", h_binary, ""}, {"Or", h_binary, ""}, {"Xor", h_binary, ""},
  {"Max", h_binary, ""}, {"Min", h_binary, ""}, {"Sum", h_binary, ""}, {"Mean", h_binary, ""}, {"PRelu", h_binary, ""},
  {"Pow", h_pow, ""},
  {"Where", h_where, ""},
  {"Clip", h_clip, "min,max"},
  {"Cast", h_cast, "to,saturate"},
  {"CastLike", h_castlike, "saturate"},
  {"Constant", h_constant, "value,value_float,value_floats,value_int,value_ints"},
  {"ConstantOfShape", h_constant_of_shape, "value"},
  {"Shape", h_shape, "start,end"},
  {"Size", h_size, ""},
  {"Range", h_range, ""},
  {"Reshape", h_reshape, "allowzero"},
  {"Flatten", h_flatten, "axis"},
  {"Squeeze", h_squeeze, "axes"},
  {"Unsqueeze", h_unsqueeze, "axes"},
  {"Transpose", h_transpose, "perm"},
  {"Concat", h_concat, "axis"},
  {"Gather", h_gather, "axis"},
  {"Slice", h_slice, "starts,ends,axes"},
  {"Split", h_split, "axis,split"},
  {"Expand", h_expand, ""},
  {"Tile", h_tile, ""},
  {"ReduceSum", h_reduce, "axes,keepdims,noop_with_empty_axes"},
  {"ReduceMean", h_reduce, "axes,keepdims"}, {"ReduceMax", h_reduce, "axes,keepdims"},
  {"ReduceMin", h_reduce, "axes,keepdims"}, {"ReduceL1", h_reduce, "axes,keepdims"},
  {"ReduceL2", h_reduce, "axes,keepdims"}, {"ReduceSumSquare", h_reduce, "axes,keepdims"},
  {"ReduceLogSum", h_reduce, "axes,keepdims"}, {"ReduceLogSumExp", h_reduce, "axes,keepdims"},
  {"ReduceProd", h_reduce, "axes,keepdims"},
  {"ArgMax", h_argext, "axis,keepdims,select_last_index"},
  {"ArgMin", h_argext, "axis,keepdims,select_last_index"},
  {"Softmax", h_softmax, "axis"},
  {"LogSoftmax", h_softmax, "axis"},
  {"CumSum", h_cumsum, "exclusive,reverse"},
  {"DepthToSpace", h_depth_space, "blocksize,mode"},
  {"Trilu", h_trilu, "upper"},
  {"Pad", h_pad, "mode,pads,value"},
  {"OneHot", h_onehot, "axis"},
  {"Erf", h_erf, ""},
  {"GatherElements", h_gather_elements, "axis"},
  {"NegativeLogLikelihoodLoss", h_nll, "reduction,ignore_index"},
  {"SoftmaxCrossEntropyLoss", h_sce, "reduction,ignore_index"},
  {"Hardmax", h_hardmax, "axis"},
  {"EyeLike", h_eyelike, "dtype,k"},
  {"SpaceToDepth", h_depth_space, "blocksize"},
  {"MatMul", ox_h_matmul, ""},
  {"Gemm", ox_h_gemm, "alpha,beta,transA,transB"},
  {"Conv", ox_h_conv, "auto_pad,dilations,group,kernel_shape,pads,strides"},
  {"MaxPool", ox_h_pool, "auto_pad,ceil_mode,dilations,kernel_shape,pads,storage_order,strides"},
  {"AveragePool", ox_h_pool, "auto_pad,ceil_mode,count_include_pad,kernel_shape,pads,strides"},
  {"GlobalAveragePool", ox_h_global_pool, ""},
  {"GlobalMaxPool", ox_h_global_pool, ""},
  {"BatchNormalization", ox_h_batchnorm, "epsilon,momentum,training_mode,spatial"},
  {"LayerNormalization", ox_h_layernorm, "axis,epsilon,stash_type"},
  {"InstanceNormalization", ox_h_instancenorm, "epsilon"},
  {"LSTM", ox_h_recurrent, "activation_alpha,activation_beta,activations,clip,direction,hidden_size,input_forget,layout"},
  {"GRU", ox_h_recurrent, "activation_alpha,activation_beta,activations,clip,direction,hidden_size,linear_before_reset,layout"},
  {"RNN", ox_h_recurrent, "activation_alpha,activation_beta,activations,clip,direction,hidden_size,layout"},
};
const int ox_nops = (int)(sizeof ox_ops / sizeof ox_ops[0]);
