/* sema.h -- private to the frontend's semantic stages: numbers and constant
 * folding (eval.c), the table of callables and argument binding
 * (builtins.c), the train block (train.c), the checker (check.c) and the
 * lowering context shared by lower.c and layers.c. Sections are named after
 * the file defining them. */
#ifndef LATHE_FE_SEMA_H
#define LATHE_FE_SEMA_H

#include "ast.h"

/* ---- eval.c: compile-time numbers ----
 * Integers stay exact int64 (overflow is an error, as the spec asks); any
 * float operand or `/` makes a float. `f` is always valid. */
typedef struct {
  int is_int;
  int64_t i;
  double f;
} fe_num;

fe_num fe_int(int64_t i);
fe_num fe_flt(double f);
/* A numeric literal; -1 if an integer literal does not fit in int64. */
int fe_num_literal(const fe_expr *e, fe_num *out);
/* a OP b for op in TK_PLUS..TK_PERCENT. -1 with a reason in why (for
 * "integer overflow: ..." style messages) on overflow / division by zero. */
int fe_num_binop(int op, fe_num a, fe_num b, fe_num *out, char *why, size_t whyn);
const char *fe_op_str(int op); /* "+", "//", "@", ... */
void fe_num_str(fe_num n, char *buf, size_t bn);

typedef struct {
  const char *name;
  fe_num v;
  ir_loc loc;
} fe_constdef;

typedef struct {
  fe_constdef *c;
  int n, cap;
} fe_consts;

const fe_constdef *fe_const_find(const fe_consts *c, const char *name);
void fe_const_add(arena *A, fe_consts *c, const char *name, fe_num v, ir_loc loc);
/* Evaluate a constant expression (numbers, earlier consts, + - * / // %
 * and unary minus). Errors go to d (may be NULL to probe quietly). */
int fe_const_eval(const fe_expr *e, const fe_consts *c, fe_diag *d, fe_num *out);
/* Evaluate every ST_CONST of m in order into c (errors to d). */
void fe_consts_eval(const fe_model *m, arena *A, fe_consts *c, fe_diag *d);

/* Levenshtein distance, capped (returns cap+1 when larger). */
int fe_edit_distance(const char *a, const char *b, int cap);
/* How far a "did you mean" suggestion may be from `name`: 2, less for very
 * short names (so 'foo' does not suggest 'log'). */
int fe_suggest_cap(const char *name);

/* ---- builtins.c: every callable ----
 * A builtin's parameters behave as Python's: each may be given by position
 * (in table order) or by name; the first `nreq` are required. `name=` is
 * accepted by layers that own parameters (and by block calls / repeat). */
typedef enum {
  AK_TENSOR,     /* a tensor */
  AK_NUM,        /* a number */
  AK_TENSOR_OR_NUM, /* a tensor or a number (comparisons, where) */
  AK_INT,        /* an integer number */
  AK_BOOL,       /* true / false */
  AK_STR,        /* a string */
  AK_INTLIST,    /* [ints] */
  AK_NUMLIST,    /* [numbers] (cross_entropy's class weights) */
  AK_INT_OR_INTLIST, /* split's sizes: one size or [sizes] */
  AK_TENSORS,    /* [tensors] */
  AK_INT_OR_STR, /* conv2d padding */
  AK_BLOCK       /* the name of a def block (repeat) */
} fe_argkind;

#define FE_MAXARGS 8

typedef struct fe_lctx fe_lctx;
typedef struct fe_args fe_args;
typedef struct fe_val fe_val;
typedef int (*fe_lowerfn)(fe_lctx *L, fe_args *a, fe_val *out);

typedef struct {
  const char *name;
  fe_argkind kind;
} fe_argspec;

typedef struct fe_builtin {
  const char *name;
  int op;          /* IR op for the generic lowerings, else -1 */
  fe_lowerfn lower;
  int nreq;        /* required leading arguments */
  int nargs;
  fe_argspec arg[FE_MAXARGS];
  int named;       /* accepts name= (owns parameters) */
} fe_builtin;

extern const fe_builtin fe_builtins[];
extern const int fe_nbuiltins;
const fe_builtin *fe_builtin_find(const char *name);
/* The closest builtin name within edit distance 2, or NULL. */
const char *fe_builtin_suggest(const char *name);

/* Match a call's arguments to b's parameters: slot[i] is the expression for
 * parameter i (NULL when defaulted), *name the name= expression or NULL.
 * Reports arity / unknown or repeated names to d; returns the error count. */
int fe_bind_args(const fe_builtin *b, const fe_expr *call, const fe_expr **slot,
                 const fe_expr **name, fe_diag *d);
const char *fe_argkind_str(fe_argkind k); /* "a tensor", "an integer", ... */

/* ---- train.c: the train { } block ---- */
int fe_train_eval(const fe_stmt *st, const fe_consts *c, fe_diag *d, ir_train *t);

/* ---- lower.c / layers.c: lowering ---- */
typedef enum { V_NONE, V_ERR, V_TENSOR, V_NUM, V_BOOL, V_STR, V_LIST, V_BLOCK } fe_vkind;

struct fe_val {
  fe_vkind k;
  int node;           /* V_TENSOR */
  fe_num num;         /* V_NUM; V_BOOL uses num.i */
  const char *str;    /* V_STR */
  fe_val *items;      /* V_LIST */
  int n;
  const fe_stmt *def; /* V_BLOCK */
};

struct fe_args {
  const fe_builtin *b;
  const fe_expr *call;
  const fe_expr *slot[FE_MAXARGS];
  fe_val v[FE_MAXARGS]; /* V_NONE where defaulted */
  const char *name;     /* name= or NULL */
};

typedef struct fe_scope fe_scope;

struct fe_lctx {
  const fe_model *m;
  ir_graph *g;
  fe_diag *d;
  arena *A;
  fe_consts consts;
  fe_scope *sc;        /* innermost scope (block application) */
  const char *what;    /* "'h'": the tensor being defined, for shape errors */
  ir_loc site;         /* top-level call being lowered (duplicate params) */
  ir_loc *param_site;  /* per g->params entry */
  int nsite_cap;
  int *ptab;           /* hash of parameter names -> g->params index + 1 */
  int ptabcap;
  int depth;           /* block nesting */
  int napplied;        /* block applications so far (bounded) */
};

/* Append an op; on a shape error report "shape error in 'h': ..." at loc. */
int fe_node(fe_lctx *L, int op, const int *in, int nin, const ir_attr *a, ir_loc loc);
/* lower.c: two operands of tensor arithmetic (a number or a tensor each, at
 * least one tensor) as nodes of one dtype, promoted as PyTorch does (f32
 * when to_float and they are integers); -1 on failure. */
int fe_operands(fe_lctx *L, const fe_val *a, const fe_val *b, int to_float, ir_loc loc, int in[2]);
/* The base name of a layer: prefix + (given name or "<op>_<k>"). */
const char *fe_layer_name(fe_lctx *L, const char *op, const char *given);
/* Create parameter base[.suffix]; checks duplicates and size. `weight`
 * marks weight matrices, whose init the train block's init= overrides. */
int fe_param(fe_lctx *L, const char *base, const char *suffix, ir_dtype t, const ir_shape *s,
             ir_init init, double std, int64_t fan_in, int64_t fan_out, int weight, ir_loc loc);
const ir_node *fe_nodep(fe_lctx *L, int id);
/* Normalise axis (Python-style negatives) for rank r; error at loc. */
int fe_axis(fe_lctx *L, int64_t axis, int r, ir_loc loc, int64_t *out);

#endif
