/* check.c -- everything that can be checked before dimensions are bound:
 * constants, input declarations and symbolic dims, that every name is
 * defined before use, operators and their arity and argument kinds (from the
 * builtins table), block definitions (no nesting, no recursion, ending in
 * return), repeat counts, outputs, the loss and the train block.
 *
 * Scoping: top-level statements see constants, inputs, symbolic dims and
 * earlier bindings. A block body sees constants defined before it, every
 * block (defs are visible throughout the file, so recursion can be named and
 * rejected), its parameters and its own bindings -- not the caller's tensors.
 *
 * Kinds are tracked per name where known (K_ANY for block parameters, whose
 * kind is only known at a call); K_ERR marks a name whose definition already
 * failed, so one mistake is reported once. */
#include <string.h>
#include "sema.h"

typedef enum { K_ANY, K_ERR, K_NUM, K_TENSOR, K_STR, K_BOOL, K_LIST } ck;

typedef struct {
  const char *name;
  ck k;
} cvar;

typedef struct {
  cvar *v;
  int n, cap;
} cscope;

typedef struct {
  int from, to;
  ir_loc loc;
} cedge;

typedef struct {
  fe_model *m;
  fe_diag *d;
  arena *A;
  fe_consts consts;
  const fe_stmt **defs;
  int ndefs;
  cscope top, *sc;
  int cur_def;         /* index of the def being checked, -1 at top level */
  cedge *edges;
  int nedges, capedges;
} cctx;

static const char *ck_str(ck k) {
  static const char *s[] = {"a value", "a value", "a number", "a tensor", "a string", "a boolean",
                            "a list"};
  return s[k];
}

static void bind(cctx *c, cscope *s, const char *name, ck k) {
  for (int i = 0; i < s->n; i++)
    if (strcmp(s->v[i].name, name) == 0) { s->v[i].k = k; return; }
  if (s->n == s->cap) {
    int nc = s->cap ? s->cap * 2 : 16;
    cvar *p = ar_alloc(c->A, sizeof *p * (size_t)nc);
    if (s->n) memcpy(p, s->v, sizeof *p * (size_t)s->n);
    s->v = p;
    s->cap = nc;
  }
  s->v[s->n].name = name;
  s->v[s->n++].k = k;
}

static const cvar *lookup_var(const cscope *s, const char *name) {
  for (int i = 0; i < s->n; i++)
    if (strcmp(s->v[i].name, name) == 0) return &s->v[i];
  return NULL;
}

static int def_index(const cctx *c, const char *name) {
  for (int i = 0; i < c->ndefs; i++)
    if (strcmp(c->defs[i]->name, name) == 0) return i;
  return -1;
}

/* The closest visible name within edit distance 2, or NULL. */
static const char *suggest_name(const cctx *c, const char *name) {
  const char *best = NULL;
  int cap = fe_suggest_cap(name), bd = cap + 1;
  for (int i = 0; i < c->sc->n; i++) {
    int d = fe_edit_distance(name, c->sc->v[i].name, cap);
    if (d < bd) { bd = d; best = c->sc->v[i].name; }
  }
  for (int i = 0; i < c->consts.n; i++) {
    int d = fe_edit_distance(name, c->consts.c[i].name, cap);
    if (d < bd) { bd = d; best = c->consts.c[i].name; }
  }
  return best;
}

static ck expr(cctx *c, const fe_expr *e);

/* A top-level statement that defines `name` (for a better message when a name
 * is used too early), or NULL. */
static const fe_stmt *defined_later(const cctx *c, const char *name, int line) {
  for (int i = 0; i < c->m->nstmts; i++) {
    const fe_stmt *st = c->m->stmts[i];
    int defines = st->kind == ST_INPUT || st->kind == ST_ASSIGN || st->kind == ST_CONST ||
                  (st->kind == ST_OUTPUT && st->value);
    if (defines && st->name && st->name_loc.line > line && strcmp(st->name, name) == 0) return st;
  }
  return NULL;
}

static ck name_kind(cctx *c, const fe_expr *e) {
  const cvar *v = lookup_var(c->sc, e->str);
  if (v) return v->k;
  if (fe_const_find(&c->consts, e->str)) return K_NUM;
  if (def_index(c, e->str) >= 0) {
    fe_error(c->d, e->loc, "'%s' is a block: call it as %s(...) or pass it to repeat", e->str, e->str);
    return K_ERR;
  }
  if (c->sc != &c->top && lookup_var(&c->top, e->str)) {
    fe_error(c->d, e->loc, "'%s' is not visible inside block '%s'; pass it as a parameter", e->str,
             c->defs[c->cur_def]->name);
    return K_ERR;
  }
  const fe_stmt *later = c->cur_def < 0 ? defined_later(c, e->str, e->loc.line) : NULL;
  if (later) {
    fe_error(c->d, e->loc, "'%s' is used before its definition on line %d", e->str, later->name_loc.line);
    return K_ERR;
  }
  const char *s = suggest_name(c, e->str);
  if (s) fe_error(c->d, e->loc, "unknown name '%s'; did you mean '%s'?", e->str, s);
  else fe_error(c->d, e->loc, "unknown name '%s'", e->str);
  return K_ERR;
}

static int numeric(ck k) { return k == K_NUM || k == K_TENSOR || k == K_ANY || k == K_ERR; }

static ck binop(cctx *c, const fe_expr *e) {
  ck a = expr(c, e->lhs), b = expr(c, e->rhs);
  const fe_expr *side[2] = {e->lhs, e->rhs};
  ck k[2] = {a, b};
  int bad = 0;
  for (int i = 0; i < 2; i++) {
    if (!numeric(k[i])) {
      fe_error(c->d, side[i]->loc, "operator '%s' needs numbers or tensors, got %s", fe_op_str(e->op),
               ck_str(k[i]));
      bad = 1;
    } else if (e->op == TK_AT && k[i] == K_NUM) {
      fe_error(c->d, side[i]->loc, "operator '@' needs tensors, got a number");
      bad = 1;
    }
  }
  if (bad || a == K_ERR || b == K_ERR) return K_ERR;
  if (a == K_NUM && b == K_NUM) {
    fe_num v, x, y; /* fold constant operands now, to report overflow / division by zero */
    if (fe_const_eval(e->lhs, &c->consts, NULL, &x) == 0 && fe_const_eval(e->rhs, &c->consts, NULL, &y) == 0 &&
        fe_const_eval(e, &c->consts, NULL, &v) != 0)
      fe_const_eval(e, &c->consts, c->d, &v);
    return K_NUM;
  }
  if (a == K_TENSOR || b == K_TENSOR) return K_TENSOR;
  return K_ANY;
}

/* ---- calls ---- */

static void add_edge(cctx *c, int to, ir_loc loc) {
  if (c->cur_def < 0) return;
  if (c->nedges == c->capedges) {
    int nc = c->capedges ? c->capedges * 2 : 16;
    cedge *p = ar_alloc(c->A, sizeof *p * (size_t)nc);
    if (c->nedges) memcpy(p, c->edges, sizeof *p * (size_t)c->nedges);
    c->edges = p;
    c->capedges = nc;
  }
  c->edges[c->nedges++] = (cedge){c->cur_def, to, loc};
}

/* One argument against its declared kind. */
static void check_arg(cctx *c, const char *fn, const fe_argspec *sp, const fe_expr *x) {
  if ((sp->kind == AK_INTLIST || sp->kind == AK_NUMLIST || sp->kind == AK_INT_OR_INTLIST || sp->kind == AK_TENSORS) &&
      x->kind == EX_LIST) {
    ck want = sp->kind == AK_TENSORS ? K_TENSOR : K_NUM;
    for (int i = 0; i < x->nitems; i++) {
      ck k = expr(c, x->items[i]);
      if (k == want || k == K_ANY || k == K_ERR) {
        if (sp->kind != AK_NUMLIST && x->items[i]->kind == EX_NUM && !x->items[i]->num_is_int)
          fe_error(c->d, x->items[i]->loc, "argument '%s' of '%s' must be %s, got %g", sp->name, fn,
                   fe_argkind_str(sp->kind), x->items[i]->num);
        continue;
      }
      fe_error(c->d, x->items[i]->loc, "argument '%s' of '%s' must be %s, got %s in the list", sp->name,
               fn, fe_argkind_str(sp->kind), ck_str(k));
    }
    return;
  }
  ck k = expr(c, x);
  if (k == K_ANY || k == K_ERR) return;
  int ok = 0;
  switch (sp->kind) {
  case AK_TENSOR: ok = k == K_TENSOR; break;
  case AK_NUM: ok = k == K_NUM; break;
  case AK_TENSOR_OR_NUM: ok = k == K_TENSOR || k == K_NUM; break;
  case AK_INT: ok = k == K_NUM; break;
  case AK_BOOL: ok = k == K_BOOL; break;
  case AK_STR: ok = k == K_STR; break;
  case AK_INTLIST: case AK_NUMLIST: case AK_TENSORS: ok = k == K_LIST; break;
  case AK_INT_OR_STR: ok = k == K_NUM || k == K_STR; break;
  case AK_INT_OR_INTLIST: ok = k == K_NUM || k == K_LIST; break;
  case AK_BLOCK: ok = 0; break;
  }
  if (!ok) {
    fe_error(c->d, x->loc, "argument '%s' of '%s' must be %s, got %s", sp->name, fn,
             fe_argkind_str(sp->kind), ck_str(k));
  } else if ((sp->kind == AK_INT || sp->kind == AK_INT_OR_STR || sp->kind == AK_INT_OR_INTLIST) && x->kind == EX_NUM &&
             !x->num_is_int) {
    fe_error(c->d, x->loc, "argument '%s' of '%s' must be an integer, got %g", sp->name, fn, x->num);
  }
}

static void check_name_arg(cctx *c, const fe_expr *name) {
  if (!name) return;
  ck k = expr(c, name);
  if (k != K_STR && k != K_ANY && k != K_ERR)
    fe_error(c->d, name->loc, "'name' must be a string, got %s", ck_str(k));
}

static ck builtin_call(cctx *c, const fe_builtin *b, const fe_expr *e) {
  const fe_expr *slot[FE_MAXARGS], *name;
  fe_bind_args(b, e, slot, &name, c->d);
  for (int i = 0; i < b->nargs; i++)
    if (slot[i]) check_arg(c, b->name, &b->arg[i], slot[i]);
  check_name_arg(c, name);
  return strcmp(b->name, "split") == 0 ? K_LIST : K_TENSOR; /* the one builtin yielding a list of tensors */
}

/* Bind block arguments: npos positional expressions, then named ones (name=
 * excepted). `who` is the call's description for messages. */
static void block_args(cctx *c, int di, const fe_expr *const *pos, int npos, const fe_namedarg *named,
                       int nnamed, ir_loc loc, const char *who) {
  const fe_stmt *def = c->defs[di];
  int given[64] = {0}, np = def->nparams < 64 ? def->nparams : 64;
  for (int i = 0; i < npos; i++) {
    expr(c, pos[i]);
    if (i < np) given[i] = 1;
    else if (i == np)
      fe_error(c->d, pos[i]->loc, "block '%s' takes %d argument%s, got %d%s", def->name, np,
               np == 1 ? "" : "s", npos, who);
  }
  for (int i = 0; i < nnamed; i++) {
    const fe_namedarg *na = &named[i];
    if (strcmp(na->name, "name") == 0) { check_name_arg(c, na->value); continue; }
    expr(c, na->value);
    int k = -1;
    for (int j = 0; j < np; j++)
      if (strcmp(def->params[j], na->name) == 0) k = j;
    if (k < 0) fe_error(c->d, na->loc, "block '%s' has no parameter named '%s'", def->name, na->name);
    else if (given[k]) fe_error(c->d, na->loc, "argument '%s' of block '%s' given twice", na->name, def->name);
    else given[k] = 1;
  }
  for (int j = 0; j < np; j++)
    if (!given[j]) {
      fe_error(c->d, loc, "block '%s' needs argument '%s'%s", def->name, def->params[j], who);
      break;
    }
}

static ck block_call(cctx *c, int di, const fe_expr *e) {
  add_edge(c, di, e->loc);
  block_args(c, di, (const fe_expr *const *)e->items, e->nitems, e->named, e->nnamed, e->loc, "");
  return K_ANY;
}

/* repeat(n, block, x, extra..., name=) */
static ck repeat_call(cctx *c, const fe_expr *e) {
  if (e->nitems < 3) {
    fe_error(c->d, e->loc, "'repeat' needs at least 3 arguments: repeat(n, block, x, ...)");
    for (int i = 0; i < e->nitems; i++)
      if (e->items[i]->kind != EX_NAME) expr(c, e->items[i]);
    return K_ERR;
  }
  const fe_expr *n = e->items[0], *blk = e->items[1];
  fe_num v;
  if (fe_const_eval(n, &c->consts, NULL, &v) == 0) {
    if (!v.is_int || v.i < 1) {
      char b[64];
      fe_num_str(v, b, sizeof b);
      fe_error(c->d, n->loc, "repeat count must be a positive integer, got %s", b);
    }
  } else {
    ck k = expr(c, n);
    if (k == K_NUM && c->cur_def < 0) fe_const_eval(n, &c->consts, c->d, &v);
    else if (k != K_NUM && k != K_ANY && k != K_ERR)
      fe_error(c->d, n->loc, "repeat count must be a positive integer, got %s", ck_str(k));
  }
  int di = blk->kind == EX_NAME ? def_index(c, blk->str) : -1;
  if (di < 0) {
    if (blk->kind == EX_NAME) fe_error(c->d, blk->loc, "unknown block '%s'", blk->str);
    else fe_error(c->d, blk->loc, "the second argument of 'repeat' must be the name of a block");
    return K_ERR;
  }
  add_edge(c, di, blk->loc);
  block_args(c, di, (const fe_expr *const *)e->items + 2, e->nitems - 2, e->named, e->nnamed, e->loc,
             " (in repeat)");
  return K_ANY;
}

static ck call(cctx *c, const fe_expr *e) {
  if (strcmp(e->str, "repeat") == 0) return repeat_call(c, e);
  const fe_builtin *b = fe_builtin_find(e->str);
  if (b) return builtin_call(c, b, e);
  int di = def_index(c, e->str);
  if (di >= 0) return block_call(c, di, e);
  const char *s = fe_builtin_suggest(e->str);
  for (int i = 0; i < c->ndefs && !s; i++)
    if (fe_edit_distance(e->str, c->defs[i]->name, fe_suggest_cap(e->str)) <= fe_suggest_cap(e->str))
      s = c->defs[i]->name;
  if (s) fe_error(c->d, e->loc, "unknown operator '%s'; did you mean '%s'?", e->str, s);
  else fe_error(c->d, e->loc, "unknown operator '%s'", e->str);
  for (int i = 0; i < e->nitems; i++) expr(c, e->items[i]);
  for (int i = 0; i < e->nnamed; i++) expr(c, e->named[i].value);
  return K_ERR;
}

static ck expr(cctx *c, const fe_expr *e) {
  switch (e->kind) {
  case EX_NUM: {
    fe_num v;
    if (fe_num_literal(e, &v)) {
      fe_error(c->d, e->loc, "integer literal is too large for 64 bits");
      return K_ERR;
    }
    return K_NUM;
  }
  case EX_STR: return K_STR;
  case EX_BOOL: return K_BOOL;
  case EX_LIST:
    for (int i = 0; i < e->nitems; i++) expr(c, e->items[i]);
    return K_LIST;
  case EX_NAME: return name_kind(c, e);
  case EX_NEG: {
    ck k = expr(c, e->lhs);
    if (numeric(k)) return k;
    fe_error(c->d, e->loc, "unary '-' needs a number or a tensor, got %s", ck_str(k));
    return K_ERR;
  }
  case EX_BINOP: return binop(c, e);
  case EX_CALL: return call(c, e);
  }
  return K_ERR;
}

/* ---- statements ---- */

/* A name being defined must not collide with a constant or a block. */
static int name_free(cctx *c, const char *name, ir_loc loc, const char *what) {
  const fe_constdef *k = fe_const_find(&c->consts, name);
  if (k) {
    fe_error(c->d, loc, "cannot define %s '%s': '%s' is a constant (line %d)", what, name, name, k->loc.line);
    return 0;
  }
  int di = def_index(c, name);
  if (di >= 0) {
    fe_error(c->d, loc, "cannot define %s '%s': '%s' is a block (line %d)", what, name, name,
             c->defs[di]->name_loc.line);
    return 0;
  }
  return 1;
}

static void st_const(cctx *c, const fe_stmt *st) {
  const cvar *v = lookup_var(&c->top, st->name);
  if (!name_free(c, st->name, st->name_loc, "constant")) return;
  if (v) {
    fe_error(c->d, st->name_loc, "cannot define constant '%s': the name is already used", st->name);
    return;
  }
  fe_num val;
  if (fe_const_eval(st->value, &c->consts, c->d, &val)) bind(c, &c->top, st->name, K_ERR);
  else fe_const_add(c->A, &c->consts, st->name, val, st->name_loc);
}

static void input_too_large(cctx *c, const fe_stmt *st) {
  char buf[400] = "";
  size_t n = 0;
  for (int j = 0; j < st->ndims && n < sizeof buf - 40; j++) {
    const fe_expr *e = st->dims[j];
    fe_num v;
    if (e->kind == EX_NAME && !fe_const_find(&c->consts, e->str))
      n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%s", j ? " x " : "", e->str);
    else if (fe_const_eval(e, &c->consts, NULL, &v) == 0)
      n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%lld", j ? " x " : "", (long long)v.i);
  }
  fe_error(c->d, st->name_loc, "%s '%s' is too large: %s elements is more than the limit of 2^40",
           st->is_target ? "target" : "input", st->name, buf);
}

static int sym_index(cctx *c, const char *name) {
  fe_model *m = c->m;
  for (int i = 0; i < m->nsyms; i++)
    if (strcmp(m->syms[i], name) == 0) return i;
  m->syms[m->nsyms] = name;
  bind(c, &c->top, name, K_NUM); /* usable as a number, e.g. reshape(x, [batch, -1]) */
  return m->nsyms++;
}

/* One dimension: a constant expression >= 1, or a bare unknown name. */
static int input_dim(cctx *c, const fe_stmt *st, int j, fe_inputdecl *in) {
  const fe_expr *e = st->dims[j];
  in->sym[j] = -1;
  if (e->kind == EX_NAME && !fe_const_find(&c->consts, e->str)) {
    const cvar *v = lookup_var(&c->top, e->str);
    int known_sym = 0;
    for (int i = 0; i < c->m->nsyms; i++) known_sym |= strcmp(c->m->syms[i], e->str) == 0;
    if (v && v->k == K_ERR) return -1; /* its definition already failed and was reported */
    if (v && !known_sym) {
      fe_error(c->d, e->loc, "dimension '%s' must be a constant or a new symbolic name, but '%s' is %s",
               e->str, e->str, ck_str(v->k));
      return -1;
    }
    if (def_index(c, e->str) >= 0) {
      fe_error(c->d, e->loc, "dimension '%s' must be a constant or a symbolic name, but '%s' is a block",
               e->str, e->str);
      return -1;
    }
    in->dim[j] = -1;
    in->sym[j] = sym_index(c, e->str);
    return 0;
  }
  fe_num v;
  if (fe_const_eval(e, &c->consts, c->d, &v)) return -1;
  if (!v.is_int || v.i < 1) {
    char b[64];
    fe_num_str(v, b, sizeof b);
    fe_error(c->d, e->loc, "dimension of '%s' must be a positive integer, got %s", st->name, b);
    return -1;
  }
  in->dim[j] = v.i;
  return 0;
}

static void st_input(cctx *c, const fe_stmt *st) {
  fe_model *m = c->m;
  int bad = 0;
  if ((int)st->dtype < 0 || st->dtype >= IR_NDTYPES) {
    fe_error(c->d, st->dtype_loc, "unknown dtype (expected f32, f16, bf16, i32, i64, i8, u8 or bool)");
    bad = 1;
  }
  if (!name_free(c, st->name, st->name_loc, st->is_target ? "target" : "input")) bad = 1;
  else if (lookup_var(&c->top, st->name)) {
    fe_error(c->d, st->name_loc, "'%s' is already defined", st->name);
    bad = 1;
  }
  if (st->ndims > IR_MAXDIM) {
    fe_error(c->d, st->name_loc, "'%s' has %d dimensions; at most %d are supported", st->name, st->ndims,
             IR_MAXDIM);
    bind(c, &c->top, st->name, K_ERR);
    return;
  }
  fe_inputdecl *in = &m->inputs[m->ninputs];
  memset(in, 0, sizeof *in);
  in->name = st->name;
  in->dtype = st->dtype;
  in->is_target = st->is_target;
  in->rank = st->ndims;
  in->loc = st->name_loc;
  int64_t numel = 1;
  for (int j = 0; j < st->ndims; j++) {
    if (input_dim(c, st, j, in)) { bad = 1; continue; }
    if (in->dim[j] > 0 && numel > 0) numel = in->dim[j] > IR_MAX_ELEMS / numel ? -1 : numel * in->dim[j];
  }
  if (!bad && numel < 0) { input_too_large(c, st); bad = 1; }
  if (bad) { bind(c, &c->top, st->name, K_ERR); return; }
  m->ninputs++;
  bind(c, &c->top, st->name, K_TENSOR);
}

static void st_assign(cctx *c, const fe_stmt *st) {
  ck k = expr(c, st->value);
  if (st->nnames) { /* a, b = split(...): each name a tensor; the count is checked when lowered */
    if (k != K_LIST && k != K_ANY && k != K_ERR)
      fe_error(c->d, st->value->loc, "%d names need a list of tensors (split), got %s", st->nnames, ck_str(k));
    for (int i = 0; i < st->nnames; i++) {
      for (int j = 0; j < i; j++)
        if (strcmp(st->names[i], st->names[j]) == 0)
          fe_error(c->d, st->name_locs[i], "'%s' is bound twice in one statement", st->names[i]);
      if (name_free(c, st->names[i], st->name_locs[i], "binding")) bind(c, c->sc, st->names[i], K_TENSOR);
    }
    return;
  }
  if (!name_free(c, st->name, st->name_loc, "binding")) return;
  bind(c, c->sc, st->name, k);
}

static int tensorish(ck k) { return k == K_TENSOR || k == K_ANY || k == K_ERR; }

static void st_output(cctx *c, const fe_stmt *st, const fe_stmt **outs, int *nouts) {
  for (int i = 0; i < *nouts; i++)
    if (strcmp(outs[i]->name, st->name) == 0) {
      fe_error(c->d, st->name_loc, "output '%s' is already declared (line %d)", st->name, outs[i]->name_loc.line);
      if (st->value) expr(c, st->value);
      return;
    }
  outs[(*nouts)++] = st;
  if (!st->value) {
    const cvar *v = lookup_var(&c->top, st->name);
    if (!v) {
      const char *s = suggest_name(c, st->name);
      if (s) fe_error(c->d, st->name_loc, "output '%s' names no binding; did you mean '%s'?", st->name, s);
      else fe_error(c->d, st->name_loc, "output '%s' names no binding", st->name);
    } else if (!tensorish(v->k)) {
      fe_error(c->d, st->name_loc, "output '%s' must be a tensor, got %s", st->name, ck_str(v->k));
    }
    return;
  }
  ck k = expr(c, st->value);
  if (!tensorish(k)) fe_error(c->d, st->value->loc, "output '%s' must be a tensor, got %s", st->name, ck_str(k));
  if (name_free(c, st->name, st->name_loc, "output")) bind(c, &c->top, st->name, k);
}

static const char *stmt_word(fe_stkind k) {
  static const char *w[] = {"model", "const", "input", "binding", "output", "loss", "def", "return", "train"};
  return w[k];
}

static void st_def(cctx *c, int di) {
  const fe_stmt *st = c->defs[di];
  cscope body = {0};
  for (int j = 0; j < st->nparams; j++) {
    for (int i = 0; i < j; i++)
      if (strcmp(st->params[i], st->params[j]) == 0)
        fe_error(c->d, st->param_locs[j], "parameter '%s' appears twice in block '%s'", st->params[j], st->name);
    if (strcmp(st->params[j], "name") == 0)
      fe_error(c->d, st->param_locs[j], "'name' is reserved for naming a block's parameters");
    bind(c, &body, st->params[j], K_ANY);
  }
  c->sc = &body;
  c->cur_def = di;
  for (int j = 0; j < st->nbody; j++) {
    const fe_stmt *s = st->body[j];
    if (s->kind == ST_ASSIGN) {
      st_assign(c, s);
    } else if (s->kind == ST_RETURN) {
      if (s->value) expr(c, s->value);
      if (j != st->nbody - 1)
        fe_error(c->d, s->loc, "'return' must be the last statement of block '%s'", st->name);
    } else if (s->kind == ST_DEF) {
      fe_error(c->d, s->loc, "block '%s' is defined inside block '%s'; define blocks at the top level",
               s->name, st->name);
    } else {
      fe_error(c->d, s->loc, "'%s' is not allowed inside block '%s'", stmt_word(s->kind), st->name);
    }
  }
  if (st->nbody == 0 || st->body[st->nbody - 1]->kind != ST_RETURN)
    fe_error(c->d, st->name_loc, "block '%s' must end with 'return'", st->name);
  c->sc = &c->top;
  c->cur_def = -1;
}

/* Collect defs first: they are visible everywhere. */
static void collect_defs(cctx *c) {
  c->defs = ar_alloc(c->A, sizeof *c->defs * (size_t)(c->m->nstmts + 1));
  for (int i = 0; i < c->m->nstmts; i++) {
    const fe_stmt *st = c->m->stmts[i];
    if (st->kind != ST_DEF) continue;
    int di = def_index(c, st->name);
    if (di >= 0)
      fe_error(c->d, st->name_loc, "block '%s' is already defined (line %d)", st->name, c->defs[di]->name_loc.line);
    else if (fe_builtin_find(st->name))
      fe_error(c->d, st->name_loc, "block name '%s' is a builtin operator; choose another name", st->name);
    else
      c->defs[c->ndefs++] = st;
  }
}

/* ---- recursion: a path in the call graph from `from` back to `to` ---- */
static int path(const cctx *c, int from, int to, char *seen, int *via, int *nvia) {
  if (from == to) return 1;
  if (seen[from]) return 0;
  seen[from] = 1;
  for (int i = 0; i < c->nedges; i++) {
    if (c->edges[i].from != from) continue;
    via[(*nvia)++] = c->edges[i].to;
    if (path(c, c->edges[i].to, to, seen, via, nvia)) return 1;
    (*nvia)--;
  }
  return 0;
}

static void check_recursion(cctx *c) {
  if (!c->ndefs) return;
  char *reported = ar_alloc(c->A, (size_t)c->ndefs * (size_t)c->ndefs);
  char *seen = ar_alloc(c->A, (size_t)c->ndefs);
  int *via = ar_alloc(c->A, sizeof(int) * (size_t)(c->nedges + 2));
  for (int i = 0; i < c->nedges; i++) {
    const cedge *e = &c->edges[i];
    const char *a = c->defs[e->from]->name;
    if (e->from == e->to) {
      if (!reported[e->from * c->ndefs + e->to]++) fe_error(c->d, e->loc, "block '%s' calls itself", a);
      continue;
    }
    int nvia = 0, minimal = 1;
    memset(seen, 0, (size_t)c->ndefs);
    via[nvia++] = e->to;
    if (!path(c, e->to, e->from, seen, via, &nvia)) continue;
    for (int k = 0; k < nvia; k++) minimal &= via[k] >= e->from;
    if (!minimal || reported[e->from * c->ndefs + e->to]++) continue;
    char chain[512] = "";
    size_t n = 0;
    for (int k = 0; k + 1 < nvia && n < sizeof chain - 80; k++)
      n += (size_t)snprintf(chain + n, sizeof chain - n, "%s'%s'", k ? " -> " : "", c->defs[via[k]]->name);
    fe_error(c->d, e->loc, "block '%s' calls itself through %s", a, chain);
  }
}

static void count_decls(cctx *c) {
  int ninputs = 0, ndims = 0;
  for (int i = 0; i < c->m->nstmts; i++)
    if (c->m->stmts[i]->kind == ST_INPUT) { ninputs++; ndims += c->m->stmts[i]->ndims; }
  c->m->inputs = ar_alloc(c->A, sizeof *c->m->inputs * (size_t)(ninputs + 1));
  c->m->syms = ar_alloc(c->A, sizeof *c->m->syms * (size_t)(ndims + 1));
  c->m->ninputs = c->m->nsyms = 0;
}

int fe_check(fe_model *m, fe_diag *d) {
  int before = d->nerrors;
  cctx c = {.m = m, .d = d, .A = &m->A, .cur_def = -1};
  c.sc = &c.top;
  count_decls(&c);
  collect_defs(&c);
  const fe_stmt **outs = ar_alloc(c.A, sizeof *outs * (size_t)(m->nstmts + 1));
  const fe_stmt *model = NULL, *loss = NULL, *train = NULL;
  int nouts = 0;
  for (int i = 0; i < m->nstmts; i++) {
    const fe_stmt *st = m->stmts[i];
    switch (st->kind) {
    case ST_MODEL:
      if (model) fe_error(d, st->loc, "the model is already named '%s' (line %d)", model->name, model->loc.line);
      else { model = st; m->name = st->name; }
      break;
    case ST_CONST: st_const(&c, st); break;
    case ST_INPUT: st_input(&c, st); break;
    case ST_ASSIGN: st_assign(&c, st); break;
    case ST_OUTPUT: st_output(&c, st, outs, &nouts); break;
    case ST_LOSS: {
      ck k = expr(&c, st->value);
      if (loss) fe_error(d, st->loc, "the loss is already defined (line %d); a model has at most one loss", loss->loc.line);
      else if (!tensorish(k)) fe_error(d, st->value->loc, "loss must be a tensor, got %s", ck_str(k));
      if (!loss) loss = st;
      break;
    }
    case ST_DEF:
      for (int j = 0; j < c.ndefs; j++)
        if (c.defs[j] == st) st_def(&c, j);
      break;
    case ST_RETURN: fe_error(d, st->loc, "'return' outside a block"); break;
    case ST_TRAIN: {
      if (train) { fe_error(d, st->loc, "a second train block (the first is at line %d)", train->loc.line); break; }
      train = st;
      ir_train t;
      memset(&t, 0, sizeof t);
      fe_train_eval(st, &c.consts, d, &t);
      break;
    }
    }
  }
  check_recursion(&c);
  if (!nouts && !loss && d->nerrors == before)
    fe_error(d, (ir_loc){m->path, 0, 0}, "the model declares no output and no loss");
  return d->nerrors == before ? 0 : -1;
}
