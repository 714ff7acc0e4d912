/* lower.c -- evaluate a checked model into a static ir_graph, with every
 * symbolic dimension bound. Statements are walked in order with an
 * environment mapping names to values (tensor node, number, string, list,
 * block). `def` blocks are inlined at each call and each `repeat` iteration,
 * under a name prefix that makes their parameters unique:
 *
 *   b(x, name="b0")              parameters b0.<layer>.*
 *   b(x)                         b_<k>.<layer>.*   (k counts unnamed calls of b)
 *   repeat(n, b, x, name="h")    h.<i>.<layer>.*
 *   repeat(n, b, x)              b_<k>.<i>.<layer>.*
 *   dense(x, 4)                  <prefix>dense_<k>.*  (k counts unnamed denses
 *                                                      under the same prefix)
 *
 * A block body sees constants, blocks, its parameters and its own bindings
 * (check.c enforces this). Errors are reported at the offending expression;
 * a failed expression yields V_ERR, which later uses pass on silently, so
 * independent mistakes are all reported. The builtins' lowerings are in
 * layers.c. */
#include <stdlib.h>
#include <string.h>
#include "sema.h"

/* Bounds that keep a small file from expanding into an unbounded graph. */
#define FE_MAX_NODES (1 << 18)
#define FE_MAX_APPLICATIONS 100000

typedef struct {
  const char *name;
  fe_val v;
} lvar;

typedef struct {
  const char *key;
  int n;
} lcount;

struct fe_scope {
  const char *prefix; /* "" at top level, "h.0." inside a repeat, ... */
  lvar *v;
  int n, cap;
  lcount *cnt;
  int ncnt, capcnt;
};

static fe_val verr(void) { return (fe_val){.k = V_ERR}; }

static fe_val vtensor(int id) {
  fe_val v = {.k = V_TENSOR, .node = id};
  if (id < 0) v.k = V_ERR;
  return v;
}

static void *grow(arena *A, void *p, int n, int *cap, size_t sz) {
  if (n < *cap) return p;
  int nc = *cap ? *cap * 2 : 4;
  void *q = ar_alloc(A, sz * (size_t)nc);
  if (n) memcpy(q, p, sz * (size_t)n);
  *cap = nc;
  return q;
}

static void scope_bind(fe_lctx *L, fe_scope *s, const char *name, fe_val v) {
  for (int i = 0; i < s->n; i++)
    if (strcmp(s->v[i].name, name) == 0) { s->v[i].v = v; return; }
  s->v = grow(L->A, s->v, s->n, &s->cap, sizeof *s->v);
  s->v[s->n++] = (lvar){name, v};
}

/* Next unnamed index of `key` (an op or block name) under this prefix. */
static int next_count(fe_lctx *L, const char *key) {
  fe_scope *s = L->sc;
  for (int i = 0; i < s->ncnt; i++)
    if (strcmp(s->cnt[i].key, key) == 0) return s->cnt[i].n++;
  s->cnt = grow(L->A, s->cnt, s->ncnt, &s->capcnt, sizeof *s->cnt);
  s->cnt[s->ncnt++] = (lcount){key, 1};
  return 0;
}

const char *fe_layer_name(fe_lctx *L, const char *op, const char *given) {
  if (given) return ar_printf(L->A, "%s%s", L->sc->prefix, given);
  int k = next_count(L, op);
  return ar_printf(L->A, "%s%s_%d", L->sc->prefix, op, k);
}

const ir_node *fe_nodep(fe_lctx *L, int id) { return &L->g->nodes[id]; }

int fe_node(fe_lctx *L, int op, const int *in, int nin, const ir_attr *a, ir_loc loc) {
  if (L->g->nnodes >= FE_MAX_NODES) {
    if (L->g->nnodes == FE_MAX_NODES)
      fe_error(L->d, L->depth ? L->site : loc, "the model expands to more than %d operations", FE_MAX_NODES);
    return -1;
  }
  char msg[512];
  int id = ir_add(L->g, op, in, nin, a, loc, msg, sizeof msg);
  if (id < 0) fe_error(L->d, loc, "shape error in %s: %s", L->what ? L->what : "this expression", msg);
  return id;
}

int fe_axis(fe_lctx *L, int64_t axis, int r, ir_loc loc, int64_t *out) {
  int64_t a = axis < 0 ? axis + r : axis;
  if (a < 0 || a >= r) {
    fe_error(L->d, loc, "axis %lld is out of range for a tensor of rank %d", (long long)axis, r);
    return -1;
  }
  *out = a;
  return 0;
}

/* Parameter names in an open-addressing hash (ir_find_param is linear, and
 * a large repeat creates many parameters). */
static uint64_t hash_str(const char *s) {
  uint64_t h = 1469598103934665603ull;
  while (*s) h = (h ^ (unsigned char)*s++) * 1099511628211ull;
  return h;
}

static int param_lookup(fe_lctx *L, const char *name) {
  if (!L->ptabcap) return -1;
  for (uint64_t i = hash_str(name);; i++) {
    int v = L->ptab[i & (uint64_t)(L->ptabcap - 1)];
    if (!v) return -1;
    if (strcmp(L->g->params[v - 1].name, name) == 0) return v - 1;
  }
}

static void param_insert(fe_lctx *L, int idx) {
  if (2 * (idx + 1) >= L->ptabcap) {
    int cap = L->ptabcap ? L->ptabcap * 2 : 64;
    L->ptab = ar_alloc(L->A, sizeof(int) * (size_t)cap);
    L->ptabcap = cap;
    for (int i = 0; i < idx; i++) param_insert(L, i);
  }
  uint64_t i = hash_str(L->g->params[idx].name);
  while (L->ptab[i & (uint64_t)(L->ptabcap - 1)]) i++;
  L->ptab[i & (uint64_t)(L->ptabcap - 1)] = idx + 1;
}

int fe_param(fe_lctx *L, const char *base, const char *suffix, ir_dtype t, const ir_shape *s,
             ir_init init, double std, int64_t fan_in, int64_t fan_out, int weight, ir_loc loc) {
  ir_graph *g = L->g;
  const char *full = suffix ? ar_printf(L->A, "%s.%s", base, suffix) : base;
  int idx = param_lookup(L, full);
  if (idx >= 0) {
    ir_loc f = L->param_site[idx];
    fe_error(L->d, L->site, "duplicate parameter name '%s' (first created at line %d, column %d)", full, f.line,
             f.col);
    return -1;
  }
  if (ir_numel(s) < 0) {
    char b[200];
    fe_error(L->d, loc, "parameter '%s' is too large: %s has more than 2^40 elements", full,
             ir_shape_str(s, b, sizeof b));
    return -1;
  }
  if (weight && g->train.init_set) {
    init = g->train.init;
    std = g->train.init_std;
  }
  int id = ir_add_param(g, full, t, s, init, std, fan_in, fan_out, loc);
  if (id < 0) {
    fe_error(L->d, loc, "cannot create parameter '%s'", full);
    return -1;
  }
  L->param_site = grow(L->A, L->param_site, g->nparams - 1, &L->nsite_cap, sizeof *L->param_site);
  L->param_site[g->nparams - 1] = L->site;
  param_insert(L, g->nparams - 1);
  return id;
}

static void name_node(fe_lctx *L, fe_val v, const char *name) {
  if (v.k == V_TENSOR && !L->g->nodes[v.node].name)
    L->g->nodes[v.node].name = ar_printf(L->A, "%s%s", L->sc->prefix, name);
}

static const char *vkind_str(fe_vkind k);

/* `name = v`, or `a, b, ... = v` with v a list of as many tensors (split):
 * each name bound to its tensor. A wrong count is an error at the value. */
static void bind_assign(fe_lctx *L, fe_scope *s, const fe_stmt *st, fe_val v) {
  if (!st->nnames) {
    name_node(L, v, st->name);
    scope_bind(L, s, st->name, v);
    return;
  }
  if (v.k != V_ERR && (v.k != V_LIST || v.n != st->nnames)) {
    if (v.k == V_LIST)
      fe_error(L->d, st->value->loc, "%d names are bound to %d tensors", st->nnames, v.n);
    else
      fe_error(L->d, st->value->loc, "%d names need a list of tensors (split), got %s", st->nnames, vkind_str(v.k));
    v = verr();
  }
  for (int i = 0; i < st->nnames; i++) {
    fe_val x = v.k == V_LIST ? v.items[i] : verr();
    if (x.k != V_TENSOR && x.k != V_ERR) {
      fe_error(L->d, st->name_locs[i], "'%s' would be bound to %s, not a tensor", st->names[i], vkind_str(x.k));
      x = verr();
    }
    name_node(L, x, st->names[i]);
    scope_bind(L, s, st->names[i], x);
  }
}

static const char *vkind_str(fe_vkind k) {
  static const char *s[] = {"nothing", "an invalid value", "a tensor", "a number", "a boolean", "a string",
                            "a list", "a block"};
  return s[k];
}

/* ---- arithmetic ---- */

/* PyTorch's promotion between two dtypes. */
static ir_dtype promote(ir_dtype a, ir_dtype b) {
  static const int rank[IR_NDTYPES] = {[IR_F32] = 7, [IR_F16] = 6, [IR_BF16] = 6, [IR_I64] = 4,
                                       [IR_I32] = 3, [IR_I8] = 2, [IR_U8] = 1, [IR_BOOL] = 0};
  if (a == b) return a;
  if (rank[a] == rank[b]) return rank[a] == 6 ? IR_F32 : IR_I32; /* f16+bf16, none else */
  if ((a == IR_U8 && b == IR_I8) || (a == IR_I8 && b == IR_U8)) return IR_I32;
  return rank[a] > rank[b] ? a : b;
}

static int cast_to(fe_lctx *L, int id, ir_dtype t, ir_loc loc) {
  if (id < 0 || L->g->nodes[id].dtype == t) return id;
  ir_attr a = {0};
  a.i = t;
  return fe_node(L, IR_CAST, &id, 1, &a, loc);
}

int fe_operands(fe_lctx *L, const fe_val *a, const fe_val *b, int to_float, ir_loc loc, int in[2]) {
  const fe_val *side[2] = {a, b};
  ir_dtype t = IR_BOOL;
  int first = 1, anyfloat = 0;
  for (int i = 0; i < 2; i++) {
    if (side[i]->k == V_TENSOR) {
      ir_dtype dt = L->g->nodes[side[i]->node].dtype;
      t = first ? dt : promote(t, dt);
      first = 0;
    } else if (!side[i]->num.is_int) {
      anyfloat = 1;
    }
  }
  /* A float number, or true division, turns an integer tensor into f32. */
  if (!ir_dtype_is_float(t) && (anyfloat || to_float)) t = IR_F32;
  for (int i = 0; i < 2; i++) {
    if (side[i]->k == V_TENSOR) in[i] = cast_to(L, side[i]->node, t, loc);
    else in[i] = ir_add_const(L->g, t, side[i]->num.f, loc);
    if (in[i] < 0) return -1;
  }
  return 0;
}

static const int binop_ir[] = {[TK_PLUS] = IR_ADD, [TK_MINUS] = IR_SUB, [TK_STAR] = IR_MUL,
                               [TK_SLASH] = IR_DIV, [TK_AT] = IR_MATMUL};

static fe_val tensor_binop(fe_lctx *L, int op, fe_val a, fe_val b, ir_loc loc) {
  if (op == TK_SLASHSLASH || op == TK_PERCENT) {
    fe_error(L->d, loc, "operator '%s' applies to numbers only, not tensors", fe_op_str(op));
    return verr();
  }
  if (op == TK_AT && (a.k != V_TENSOR || b.k != V_TENSOR)) {
    fe_error(L->d, loc, "operator '@' needs two tensors, got %s", vkind_str(a.k != V_TENSOR ? a.k : b.k));
    return verr();
  }
  int in[2];
  if (fe_operands(L, &a, &b, op == TK_SLASH, loc, in)) return verr();
  return vtensor(fe_node(L, binop_ir[op], in, 2, NULL, loc));
}

static fe_val arith(fe_lctx *L, int op, fe_val a, fe_val b, ir_loc loc) {
  if (a.k == V_ERR || b.k == V_ERR) return verr();
  fe_val *side[2] = {&a, &b};
  for (int i = 0; i < 2; i++)
    if (side[i]->k != V_TENSOR && side[i]->k != V_NUM) {
      fe_error(L->d, loc, "operator '%s' needs numbers or tensors, got %s", fe_op_str(op), vkind_str(side[i]->k));
      return verr();
    }
  if (a.k == V_NUM && b.k == V_NUM) {
    char why[200];
    fe_val r = {.k = V_NUM};
    if (fe_num_binop(op, a.num, b.num, &r.num, why, sizeof why) == 0) return r;
    fe_error(L->d, loc, "%s", why);
    return verr();
  }
  return tensor_binop(L, op, a, b, loc);
}

/* ---- expressions ---- */
static fe_val eval(fe_lctx *L, const fe_expr *e);

static fe_val lookup(fe_lctx *L, const fe_expr *e) {
  fe_scope *s = L->sc;
  for (int i = 0; i < s->n; i++)
    if (strcmp(s->v[i].name, e->str) == 0) return s->v[i].v;
  const fe_constdef *k = fe_const_find(&L->consts, e->str);
  if (k) return (fe_val){.k = V_NUM, .num = k->v};
  for (int i = 0; i < L->m->nstmts; i++) {
    const fe_stmt *st = L->m->stmts[i];
    if (st->kind == ST_DEF && strcmp(st->name, e->str) == 0) return (fe_val){.k = V_BLOCK, .def = st};
  }
  fe_error(L->d, e->loc, "unknown name '%s'", e->str);
  return verr();
}

static int list_item_fits(const fe_val *x, fe_argkind k) {
  return k == AK_INTLIST || k == AK_INT_OR_INTLIST ? x->k == V_NUM && x->num.is_int
         : k == AK_NUMLIST                          ? x->k == V_NUM
                                                    : x->k == V_TENSOR;
}

/* Does value v fit argument kind k? */
static int val_fits(const fe_val *v, fe_argkind k) {
  switch (k) {
  case AK_TENSOR: return v->k == V_TENSOR;
  case AK_NUM: return v->k == V_NUM;
  case AK_TENSOR_OR_NUM: return v->k == V_TENSOR || v->k == V_NUM;
  case AK_INT: return v->k == V_NUM && v->num.is_int;
  case AK_BOOL: return v->k == V_BOOL;
  case AK_STR: return v->k == V_STR;
  case AK_INT_OR_STR: return v->k == V_STR || (v->k == V_NUM && v->num.is_int);
  case AK_BLOCK: return v->k == V_BLOCK;
  case AK_INT_OR_INTLIST:
    if (v->k == V_NUM) return v->num.is_int;
    /* fall through */
  case AK_INTLIST:
  case AK_NUMLIST:
  case AK_TENSORS:
    if (v->k != V_LIST) return 0;
    for (int i = 0; i < v->n; i++)
      if (!list_item_fits(&v->items[i], k)) return 0;
    return 1;
  }
  return 0;
}

/* Report argument i of b that does not fit its kind; for a list, at the
 * offending item. */
static void bad_arg(fe_lctx *L, const fe_builtin *b, int i, const fe_expr *x, const fe_val *v) {
  fe_argkind k = b->arg[i].kind;
  if (v->k == V_LIST && (k == AK_INTLIST || k == AK_NUMLIST || k == AK_INT_OR_INTLIST || k == AK_TENSORS)) {
    for (int j = 0; j < v->n; j++) {
      const fe_val *it = &v->items[j];
      if (list_item_fits(it, k)) continue;
      ir_loc loc = x->kind == EX_LIST && j < x->nitems ? x->items[j]->loc : x->loc;
      const char *what = it->k == V_NUM ? "a non-integer number" : vkind_str(it->k);
      fe_error(L->d, loc, "argument '%s' of '%s' must be %s, got %s in the list", b->arg[i].name, b->name,
               fe_argkind_str(k), what);
      return;
    }
  }
  fe_error(L->d, x->loc, "argument '%s' of '%s' must be %s, got %s", b->arg[i].name, b->name, fe_argkind_str(k),
           vkind_str(v->k));
}

static fe_val builtin_call(fe_lctx *L, const fe_builtin *b, const fe_expr *e) {
  fe_args a = {.b = b, .call = e};
  const fe_expr *name;
  if (fe_bind_args(b, e, a.slot, &name, L->d)) return verr();
  int bad = 0;
  for (int i = 0; i < b->nargs; i++) {
    if (!a.slot[i]) continue;
    a.v[i] = eval(L, a.slot[i]);
    if (a.v[i].k == V_ERR) { bad = 1; continue; }
    if (!val_fits(&a.v[i], b->arg[i].kind)) {
      bad_arg(L, b, i, a.slot[i], &a.v[i]);
      bad = 1;
    }
  }
  if (name) {
    fe_val nv = eval(L, name);
    if (nv.k == V_STR && nv.str[0]) a.name = nv.str;
    else if (nv.k != V_ERR) fe_error(L->d, name->loc, "'name' must be a non-empty string");
    if (nv.k != V_STR || !nv.str[0]) bad = 1;
  }
  if (bad) return verr();
  fe_val out = {0};
  if (b->lower(L, &a, &out)) return verr();
  return out;
}

/* Inline one application of a block under `prefix`; args are its params. */
static fe_val apply_block(fe_lctx *L, const fe_stmt *def, const fe_val *args, const char *prefix, ir_loc loc) {
  if (++L->napplied > FE_MAX_APPLICATIONS) {
    if (L->napplied == FE_MAX_APPLICATIONS + 1)
      fe_error(L->d, L->depth ? L->site : loc, "the model expands to more than %d block applications",
               FE_MAX_APPLICATIONS);
    return verr();
  }
  fe_scope s = {.prefix = prefix};
  for (int i = 0; i < def->nparams; i++) scope_bind(L, &s, def->params[i], args[i]);
  fe_scope *saved = L->sc;
  const char *what = L->what;
  fe_val res = verr();
  L->sc = &s;
  L->depth++;
  for (int j = 0; j < def->nbody; j++) {
    const fe_stmt *st = def->body[j];
    if (st->kind == ST_ASSIGN) {
      L->what = ar_printf(L->A, "'%s' (in block '%s')", st->name, def->name);
      bind_assign(L, &s, st, eval(L, st->value));
    } else if (st->kind == ST_RETURN && st->value) {
      L->what = ar_printf(L->A, "the result of block '%s'", def->name);
      res = eval(L, st->value);
    }
  }
  L->depth--;
  L->sc = saved;
  L->what = what;
  return res;
}

/* Values for a block's params from positional expressions (or preset
 * values) and named args. *prefix_name receives name= (or NULL). */
static int block_args(fe_lctx *L, const fe_stmt *def, const fe_expr *const *pos, int npos,
                      const fe_namedarg *named, int nnamed, fe_val *out, const char **prefix_name) {
  int bad = 0;
  *prefix_name = NULL;
  for (int i = 0; i < def->nparams; i++) out[i] = verr();
  for (int i = 0; i < npos && i < def->nparams; i++) out[i] = eval(L, pos[i]);
  for (int i = 0; i < nnamed; i++) {
    fe_val v = eval(L, named[i].value);
    if (strcmp(named[i].name, "name") == 0) {
      if (v.k == V_STR && v.str[0]) *prefix_name = v.str;
      else if (v.k != V_ERR) { fe_error(L->d, named[i].value->loc, "'name' must be a non-empty string"); bad = 1; }
      continue;
    }
    for (int j = 0; j < def->nparams; j++)
      if (strcmp(def->params[j], named[i].name) == 0) out[j] = v;
  }
  for (int i = 0; i < def->nparams; i++) bad |= out[i].k == V_ERR;
  return bad ? -1 : 0;
}

static const fe_stmt *find_def(fe_lctx *L, const char *name) {
  for (int i = 0; i < L->m->nstmts; i++) {
    const fe_stmt *st = L->m->stmts[i];
    if (st->kind == ST_DEF && strcmp(st->name, name) == 0) return st;
  }
  return NULL;
}

static fe_val block_call(fe_lctx *L, const fe_stmt *def, const fe_expr *e) {
  fe_val *args = ar_alloc(L->A, sizeof *args * (size_t)(def->nparams + 1));
  const char *given;
  if (block_args(L, def, (const fe_expr *const *)e->items, e->nitems, e->named, e->nnamed, args, &given))
    return verr();
  const char *base = fe_layer_name(L, def->name, given);
  return apply_block(L, def, args, ar_printf(L->A, "%s.", base), e->loc);
}

/* repeat(n, block, x, extra..., name=): iteration i's result feeds i+1. */
static fe_val repeat_call(fe_lctx *L, const fe_expr *e) {
  fe_val n = eval(L, e->items[0]);
  if (n.k == V_ERR) return verr();
  if (n.k != V_NUM || !n.num.is_int || n.num.i < 1) {
    char b[64] = "a non-number";
    if (n.k == V_NUM) fe_num_str(n.num, b, sizeof b);
    fe_error(L->d, e->items[0]->loc, "repeat count must be a positive integer, got %s", b);
    return verr();
  }
  if (n.num.i > FE_MAX_APPLICATIONS) {
    fe_error(L->d, e->items[0]->loc, "repeat count %lld is too large (at most %d)", (long long)n.num.i,
             FE_MAX_APPLICATIONS);
    return verr();
  }
  const fe_stmt *def = find_def(L, e->items[1]->str);
  if (!def) {
    fe_error(L->d, e->items[1]->loc, "unknown block '%s'", e->items[1]->str);
    return verr();
  }
  fe_val *args = ar_alloc(L->A, sizeof *args * (size_t)(def->nparams + 1));
  const char *given;
  if (block_args(L, def, (const fe_expr *const *)e->items + 2, e->nitems - 2, e->named, e->nnamed, args,
                 &given))
    return verr();
  const char *base = fe_layer_name(L, def->name, given);
  fe_val x = args[0];
  for (int64_t i = 0; i < n.num.i && x.k != V_ERR; i++) {
    args[0] = x;
    x = apply_block(L, def, args, ar_printf(L->A, "%s.%lld.", base, (long long)i), e->loc);
  }
  return x;
}

static fe_val call(fe_lctx *L, const fe_expr *e) {
  if (L->depth == 0) L->site = e->loc;
  if (strcmp(e->str, "repeat") == 0) return repeat_call(L, e);
  const fe_builtin *b = fe_builtin_find(e->str);
  if (b) return builtin_call(L, b, e);
  const fe_stmt *def = find_def(L, e->str);
  if (def) return block_call(L, def, e);
  fe_error(L->d, e->loc, "unknown operator '%s'", e->str);
  return verr();
}

static fe_val eval(fe_lctx *L, const fe_expr *e) {
  switch (e->kind) {
  case EX_NUM: {
    fe_val v = {.k = V_NUM};
    if (fe_num_literal(e, &v.num) == 0) return v;
    fe_error(L->d, e->loc, "integer literal is too large for 64 bits");
    return verr();
  }
  case EX_STR: return (fe_val){.k = V_STR, .str = e->str};
  case EX_BOOL: return (fe_val){.k = V_BOOL, .num = fe_int(e->num != 0)};
  case EX_LIST: {
    fe_val v = {.k = V_LIST, .n = e->nitems};
    v.items = ar_alloc(L->A, sizeof *v.items * (size_t)(e->nitems + 1));
    for (int i = 0; i < e->nitems; i++) {
      v.items[i] = eval(L, e->items[i]);
      if (v.items[i].k == V_ERR) return verr();
    }
    return v;
  }
  case EX_NAME: return lookup(L, e);
  case EX_NEG: {
    fe_val a = eval(L, e->lhs);
    if (a.k == V_NUM) {
      fe_val zero = {.k = V_NUM, .num = fe_int(0)};
      return arith(L, TK_MINUS, zero, a, e->loc);
    }
    if (a.k == V_TENSOR) return vtensor(fe_node(L, IR_NEG, &a.node, 1, NULL, e->loc));
    if (a.k != V_ERR) fe_error(L->d, e->loc, "unary '-' needs a number or a tensor, got %s", vkind_str(a.k));
    return verr();
  }
  case EX_BINOP: {
    fe_val a = eval(L, e->lhs), b = eval(L, e->rhs);
    return arith(L, e->op, a, b, e->loc);
  }
  case EX_CALL: return call(L, e);
  }
  return verr();
}

/* ---- statements ---- */

static void lower_input(fe_lctx *L, const fe_stmt *st, const int64_t *vals) {
  const fe_model *m = L->m;
  const fe_inputdecl *in = NULL;
  for (int i = 0; i < m->ninputs; i++)
    if (m->inputs[i].name == st->name || strcmp(m->inputs[i].name, st->name) == 0) in = &m->inputs[i];
  if (!in) return;
  ir_shape s = {.rank = in->rank};
  char dims[400] = "";
  size_t dn = 0;
  int64_t numel = 1;
  for (int j = 0; j < in->rank; j++) {
    s.d[j] = in->sym[j] >= 0 ? vals[in->sym[j]] : in->dim[j];
    if (in->sym[j] >= 0) scope_bind(L, L->sc, m->syms[in->sym[j]], (fe_val){.k = V_NUM, .num = fe_int(s.d[j])});
    numel = numel < 0 || s.d[j] > IR_MAX_ELEMS / numel ? -1 : numel * s.d[j];
    if (dn < sizeof dims - 40) dn += (size_t)snprintf(dims + dn, sizeof dims - dn, "%s%lld", j ? " x " : "", (long long)s.d[j]);
  }
  if (numel < 0) {
    fe_error(L->d, in->loc, "%s '%s' is too large: %s elements is more than the limit of 2^40",
             in->is_target ? "target" : "input", in->name, dims);
    scope_bind(L, L->sc, st->name, verr());
    return;
  }
  int id = ir_add_input(L->g, in->name, in->dtype, &s, in->is_target, in->loc);
  if (id < 0) fe_error(L->d, in->loc, "cannot create input '%s'", in->name);
  scope_bind(L, L->sc, st->name, vtensor(id));
}

static void lower_output(fe_lctx *L, const fe_stmt *st) {
  fe_val v;
  ir_loc loc = st->value ? st->value->loc : st->name_loc;
  if (st->value) {
    L->what = ar_printf(L->A, "output '%s'", st->name);
    v = eval(L, st->value);
    name_node(L, v, st->name);
    scope_bind(L, L->sc, st->name, v);
  } else {
    fe_expr ne = {.kind = EX_NAME, .loc = st->name_loc, .str = st->name};
    v = lookup(L, &ne);
  }
  if (v.k == V_ERR) return;
  if (v.k != V_TENSOR) {
    fe_error(L->d, loc, "output '%s' must be a tensor, got %s", st->name, vkind_str(v.k));
    return;
  }
  ir_add_output(L->g, st->name, v.node);
}

static void lower_loss(fe_lctx *L, const fe_stmt *st) {
  L->what = "the loss";
  fe_val v = eval(L, st->value);
  if (v.k == V_ERR) return;
  if (v.k != V_TENSOR) {
    fe_error(L->d, st->value->loc, "loss must be a tensor, got %s", vkind_str(v.k));
    return;
  }
  const ir_node *n = &L->g->nodes[v.node];
  if (n->shape.rank != 0) {
    char b[200];
    fe_error(L->d, st->value->loc, "loss must be a scalar, got %s%s", ir_dtype_name(n->dtype),
             ir_shape_str(&n->shape, b, sizeof b));
    return;
  }
  if (!ir_dtype_is_float(n->dtype)) {
    fe_error(L->d, st->value->loc, "loss must be a floating-point scalar, got %s", ir_dtype_name(n->dtype));
    return;
  }
  name_node(L, v, "loss");
  L->g->loss = v.node;
}

static void lower_stmt(fe_lctx *L, const fe_stmt *st, const int64_t *vals) {
  L->what = NULL;
  switch (st->kind) {
  case ST_INPUT: lower_input(L, st, vals); break;
  case ST_ASSIGN:
    L->what = ar_printf(L->A, "'%s'", st->name);
    bind_assign(L, L->sc, st, eval(L, st->value));
    break;
  case ST_OUTPUT: lower_output(L, st); break;
  case ST_LOSS: lower_loss(L, st); break;
  default: break; /* model, const (pre-evaluated), def (inlined), train (done first) */
  }
}

int fe_lower(const fe_model *m, const int64_t *vals, ir_graph *g, char **err) {
  fe_diag d;
  fe_diag_init(&d, m->path, m->src, m->len);
  if (err) *err = NULL;
  fe_scope top = {.prefix = ""};
  fe_lctx L = {.m = m, .g = g, .d = &d, .A = g->A, .sc = &top};
  for (int i = 0; i < m->nsyms; i++)
    if (!vals || vals[i] < 1) {
      fe_error(&d, (ir_loc){m->path, 0, 0}, "symbolic dimension '%s' must be bound to a positive integer",
               m->syms[i]);
    }
  if (d.nerrors == 0) {
    fe_consts_eval(m, L.A, &L.consts, &d);
    for (int i = 0; i < m->nstmts; i++)
      if (m->stmts[i]->kind == ST_TRAIN) fe_train_eval(m->stmts[i], &L.consts, &d, &g->train);
    for (int i = 0; i < m->nstmts; i++) lower_stmt(&L, m->stmts[i], vals);
  }
  if (d.nerrors) {
    if (err) *err = fe_diag_take(&d);
    fe_diag_free(&d);
    return -1;
  }
  fe_diag_free(&d);
  return 0;
}
