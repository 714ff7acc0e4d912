/* frontend.h -- the .nn language: lexer, parser, diagnostics and lowering to
 * the IR. Internal prefix: fe_. The AST and its helpers are private to
 * frontend/ (frontend/ast.h).
 *
 * Diagnostics are returned, never printed: a malloc'd string holding one or
 * more diagnostics, each
 *     FILE:LINE:COL: error: MESSAGE
 *     <the source line>
 *     <spaces and tabs up to the column>^
 * LINE and COL are 1-based; COL counts characters (UTF-8 code points).
 */
#ifndef LATHE_FRONTEND_H
#define LATHE_FRONTEND_H

#include <stddef.h>
#include <stdint.h>
#include "../ir/ir.h"

typedef struct fe_model fe_model;

/* Parse and check a model (syntax, names, operators, arity, argument kinds,
 * const expressions, the train block). Shapes are checked by fe_lower once
 * dimensions are bound. Returns NULL and sets *err on any error. `path` is
 * used in diagnostics and, without a `model` statement, for the name (its
 * stem). */
fe_model *fe_parse(const char *path, const char *src, size_t len, char **err);
void fe_free(fe_model *m);

const char *fe_model_name(const fe_model *m);

/* Declared inputs and targets, in declaration order. */
int fe_num_inputs(const fe_model *m);
const char *fe_input_name(const fe_model *m, int i);
int fe_input_is_target(const fe_model *m, int i);
ir_dtype fe_input_dtype(const fe_model *m, int i);
int fe_input_rank(const fe_model *m, int i);
/* Dimension j of input i: returns its static size, or -1 when symbolic, in
 * which case *sym receives the dimension's name. */
int64_t fe_input_dim(const fe_model *m, int i, int j, const char **sym);

/* Symbolic dimension names, in order of first appearance. */
int fe_num_syms(const fe_model *m);
const char *fe_sym_name(const fe_model *m, int i);

/* Lower to a static graph. vals[i] is the value of symbolic dimension i
 * (fe_sym_name order), every one > 0. g must be initialised (ir_graph_init)
 * with an arena the caller owns. Shape errors are reported at the offending
 * expression, naming the tensor and expected vs got shapes. */
int fe_lower(const fe_model *m, const int64_t *vals, ir_graph *g, char **err);

/* The source with arguments replaced (frontend/rewrite.c): for each edit,
 * the call whose location is `call` (a layer's node loc) gets argument
 * argi (positional, counting a |> operand) or the named argument argname
 * replaced by text; with add set, an argument the call does not give is
 * added as `argname=text` at the end (argi -1: by name only). Several edits
 * of one call site (a block applied more than once) must agree. A malloc'd
 * string, or NULL with *err (malloc'd). */
typedef struct {
  ir_loc call;
  int argi;
  const char *argname;
  const char *text;
  int add;
} fe_arg_edit;
char *fe_rewrite_args(const fe_model *m, const fe_arg_edit *e, int n, char **err);

#endif
