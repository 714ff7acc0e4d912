/* frontend.c -- the frontend's entry points: fe_parse (copy the source, lex,
 * parse, check; all diagnostics or a model), fe_free and the accessors the
 * rest of Lathe uses to see a model's inputs and symbolic dimensions. */
#include <stdlib.h>
#include <string.h>
#include "ast.h"

/* "dir/mlp.nn" -> "mlp" */
static const char *stem(arena *A, const char *path) {
  const char *b = strrchr(path, '/');
  b = b ? b + 1 : path;
  const char *dot = strrchr(b, '.');
  size_t n = dot && dot != b ? (size_t)(dot - b) : strlen(b);
  return n ? ar_strndup(A, b, n) : "model";
}

fe_model *fe_parse(const char *path, const char *src, size_t len, char **err) {
  if (err) *err = NULL;
  fe_model *m = calloc(1, sizeof *m);
  if (!m) {
    if (err) *err = strdup("error: out of memory\n");
    return NULL;
  }
  ar_init(&m->A);
  m->path = ar_strdup(&m->A, path ? path : "<input>");
  char *copy = ar_alloc(&m->A, len + 1);
  if (len) memcpy(copy, src, len);
  m->src = copy;
  m->len = len;
  m->name = stem(&m->A, m->path);

  fe_diag d;
  fe_diag_init(&d, m->path, m->src, m->len);
  int ntok = 0;
  fe_token *toks = fe_lex(&m->A, &d, m->path, m->src, m->len, &ntok);
  /* Each stage runs only on a clean result of the one before, so errors do
   * not cascade from a broken token stream or syntax tree. */
  if (d.nerrors == 0) fe_parse_tokens(m, &d, toks, ntok);
  if (d.nerrors == 0) fe_check(m, &d);
  if (d.nerrors) {
    if (err) *err = fe_diag_take(&d);
    fe_diag_free(&d);
    fe_free(m);
    return NULL;
  }
  fe_diag_free(&d);
  return m;
}

void fe_free(fe_model *m) {
  if (!m) return;
  ar_free(&m->A);
  free(m);
}

const char *fe_model_name(const fe_model *m) { return m->name; }
int fe_num_inputs(const fe_model *m) { return m->ninputs; }

static const fe_inputdecl *input(const fe_model *m, int i) {
  return i >= 0 && i < m->ninputs ? &m->inputs[i] : NULL;
}

const char *fe_input_name(const fe_model *m, int i) {
  const fe_inputdecl *in = input(m, i);
  return in ? in->name : NULL;
}

int fe_input_is_target(const fe_model *m, int i) {
  const fe_inputdecl *in = input(m, i);
  return in ? in->is_target : 0;
}

ir_dtype fe_input_dtype(const fe_model *m, int i) {
  const fe_inputdecl *in = input(m, i);
  return in ? in->dtype : IR_F32;
}

int fe_input_rank(const fe_model *m, int i) {
  const fe_inputdecl *in = input(m, i);
  return in ? in->rank : 0;
}

int64_t fe_input_dim(const fe_model *m, int i, int j, const char **sym) {
  const fe_inputdecl *in = input(m, i);
  if (sym) *sym = NULL;
  if (!in || j < 0 || j >= in->rank) return -1;
  if (in->sym[j] >= 0) {
    if (sym) *sym = m->syms[in->sym[j]];
    return -1;
  }
  return in->dim[j];
}

int fe_num_syms(const fe_model *m) { return m->nsyms; }

const char *fe_sym_name(const fe_model *m, int i) {
  return i >= 0 && i < m->nsyms ? m->syms[i] : NULL;
}
