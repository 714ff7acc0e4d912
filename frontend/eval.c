/* eval.c -- compile-time numbers: literals, exact int64 arithmetic with
 * overflow detection, Python-style `//` and `%`, constant expressions and the
 * `const` table. Shared by the checker (consts, dims, repeat counts, the
 * train block) and by lowering (number arithmetic inside blocks). */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "sema.h"

fe_num fe_int(int64_t i) {
  fe_num n = {1, i, (double)i};
  return n;
}

fe_num fe_flt(double f) {
  fe_num n = {0, 0, f};
  return n;
}

int fe_num_literal(const fe_expr *e, fe_num *out) {
  if (!e->num_is_int) {
    *out = fe_flt(e->num);
    return 0;
  }
  if (!(e->num < 9223372036854775807.0)) return -1; /* also catches NaN */
  *out = fe_int((int64_t)e->num);
  return 0;
}

const char *fe_op_str(int op) {
  switch (op) {
  case TK_PLUS: return "+";
  case TK_MINUS: return "-";
  case TK_STAR: return "*";
  case TK_SLASH: return "/";
  case TK_SLASHSLASH: return "//";
  case TK_PERCENT: return "%";
  case TK_AT: return "@";
  default: return "?";
  }
}

void fe_num_str(fe_num n, char *buf, size_t bn) {
  if (n.is_int) snprintf(buf, bn, "%lld", (long long)n.i);
  else snprintf(buf, bn, "%g", n.f);
}

/* Python's floor division and modulo on int64 (b != 0, no overflow). */
static int64_t floordiv(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) q--;
  return q;
}

static int int_binop(int op, int64_t a, int64_t b, int64_t *r) {
  switch (op) {
  case TK_PLUS: return __builtin_add_overflow(a, b, r) ? -1 : 0;
  case TK_MINUS: return __builtin_sub_overflow(a, b, r) ? -1 : 0;
  case TK_STAR: return __builtin_mul_overflow(a, b, r) ? -1 : 0;
  case TK_SLASHSLASH:
    if (a == INT64_MIN && b == -1) return -1;
    *r = floordiv(a, b);
    return 0;
  case TK_PERCENT:
    if (b == -1) { *r = 0; return 0; }
    *r = a - floordiv(a, b) * b;
    return 0;
  default: return -1;
  }
}

static double flt_binop(int op, double a, double b) {
  switch (op) {
  case TK_PLUS: return a + b;
  case TK_MINUS: return a - b;
  case TK_STAR: return a * b;
  case TK_SLASH: return a / b;
  case TK_SLASHSLASH: return floor(a / b);
  case TK_PERCENT: return a - floor(a / b) * b;
  default: return NAN;
  }
}

int fe_num_binop(int op, fe_num a, fe_num b, fe_num *out, char *why, size_t whyn) {
  char sa[64], sb[64];
  fe_num_str(a, sa, sizeof sa);
  fe_num_str(b, sb, sizeof sb);
  if (op == TK_AT) {
    snprintf(why, whyn, "'@' needs two tensors, got numbers");
    return -1;
  }
  int divides = op == TK_SLASH || op == TK_SLASHSLASH || op == TK_PERCENT;
  if (divides && b.f == 0) {
    snprintf(why, whyn, "division by zero: %s %s %s", sa, fe_op_str(op), sb);
    return -1;
  }
  if (a.is_int && b.is_int && op != TK_SLASH) {
    int64_t r;
    if (int_binop(op, a.i, b.i, &r)) {
      snprintf(why, whyn, "integer overflow: %s %s %s does not fit in 64 bits", sa, fe_op_str(op), sb);
      return -1;
    }
    *out = fe_int(r);
    return 0;
  }
  double r = flt_binop(op, a.f, b.f);
  if (!isfinite(r)) {
    snprintf(why, whyn, "%s %s %s is not a finite number", sa, fe_op_str(op), sb);
    return -1;
  }
  *out = fe_flt(r);
  return 0;
}

const fe_constdef *fe_const_find(const fe_consts *c, const char *name) {
  for (int i = c->n - 1; i >= 0; i--)
    if (strcmp(c->c[i].name, name) == 0) return &c->c[i];
  return NULL;
}

void fe_const_add(arena *A, fe_consts *c, const char *name, fe_num v, ir_loc loc) {
  if (c->n == c->cap) {
    int nc = c->cap ? c->cap * 2 : 16;
    fe_constdef *p = ar_alloc(A, sizeof *p * (size_t)nc);
    if (c->n) memcpy(p, c->c, sizeof *p * (size_t)c->n);
    c->c = p;
    c->cap = nc;
  }
  fe_constdef *e = &c->c[c->n++];
  e->name = name;
  e->v = v;
  e->loc = loc;
}

int fe_const_eval(const fe_expr *e, const fe_consts *c, fe_diag *d, fe_num *out) {
  switch (e->kind) {
  case EX_NUM:
    if (fe_num_literal(e, out) == 0) return 0;
    if (d) fe_error(d, e->loc, "integer literal is too large for 64 bits");
    return -1;
  case EX_NAME: {
    const fe_constdef *k = fe_const_find(c, e->str);
    if (k) { *out = k->v; return 0; }
    if (d) fe_error(d, e->loc, "'%s' is not a constant", e->str);
    return -1;
  }
  case EX_NEG: {
    fe_num a;
    if (fe_const_eval(e->lhs, c, d, &a)) return -1;
    if (a.is_int && a.i == INT64_MIN) {
      if (d) fe_error(d, e->loc, "integer overflow: -(%lld) does not fit in 64 bits", (long long)a.i);
      return -1;
    }
    *out = a.is_int ? fe_int(-a.i) : fe_flt(-a.f);
    return 0;
  }
  case EX_BINOP: {
    fe_num a, b;
    int ea = fe_const_eval(e->lhs, c, d, &a);
    int eb = fe_const_eval(e->rhs, c, d, &b);
    if (ea || eb) return -1;
    char why[200];
    if (fe_num_binop(e->op, a, b, out, why, sizeof why) == 0) return 0;
    if (d) fe_error(d, e->loc, "%s", why);
    return -1;
  }
  case EX_BOOL:
    if (d) fe_error(d, e->loc, "expected a number, got a boolean");
    return -1;
  case EX_STR:
    if (d) fe_error(d, e->loc, "expected a number, got a string");
    return -1;
  case EX_LIST:
    if (d) fe_error(d, e->loc, "expected a number, got a list");
    return -1;
  case EX_CALL:
    if (d) fe_error(d, e->loc, "expected a constant number, got a call to '%s'", e->str);
    return -1;
  }
  return -1;
}

void fe_consts_eval(const fe_model *m, arena *A, fe_consts *c, fe_diag *d) {
  for (int i = 0; i < m->nstmts; i++) {
    const fe_stmt *st = m->stmts[i];
    if (st->kind != ST_CONST) continue;
    fe_num v;
    if (fe_const_eval(st->value, c, d, &v)) continue;
    if (!fe_const_find(c, st->name)) fe_const_add(A, c, st->name, v, st->name_loc);
  }
}

int fe_edit_distance(const char *a, const char *b, int cap) {
  size_t na = strlen(a), nb = strlen(b);
  if (na > 64 || nb > 64) return cap + 1;
  int row[65];
  for (size_t j = 0; j <= nb; j++) row[j] = (int)j;
  for (size_t i = 1; i <= na; i++) {
    int diag = row[0], best;
    row[0] = (int)i;
    best = row[0];
    for (size_t j = 1; j <= nb; j++) {
      int up = row[j];
      int v = diag + (a[i - 1] != b[j - 1]);
      if (up + 1 < v) v = up + 1;
      if (row[j - 1] + 1 < v) v = row[j - 1] + 1;
      row[j] = v;
      diag = up;
      if (v < best) best = v;
    }
    if (best > cap) return cap + 1;
  }
  return row[nb] > cap ? cap + 1 : row[nb];
}

int fe_suggest_cap(const char *name) {
  int n = (int)strlen(name) / 2;
  return n > 2 ? 2 : n;
}
