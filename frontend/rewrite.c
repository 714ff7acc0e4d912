/* rewrite.c -- a model's source with some call arguments replaced: how
 * structured pruning writes the resized model (runtime/api_prune.c). The
 * rest of the text, comments and layout included, stays as written. The
 * call is found by its location (what lowering gives a layer's nodes), the
 * argument in the source text between its parentheses. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/ast.h"

typedef struct {
  size_t start, end;   /* the argument's text (the value after '=' when named) */
  const char *name;    /* a named argument's name (arena), else NULL */
  size_t nlen;
} span;

#define MAXARGS 32

static size_t offset_of(const fe_model *m, ir_loc loc) {
  size_t off = 0;
  for (int line = 1; line < loc.line && off < m->len; off++)
    if (m->src[off] == '\n') line++;
  return off + (size_t)(loc.col > 0 ? loc.col - 1 : 0);
}

static int ident_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

/* Split the call's argument list (from its '(') at top-level commas. */
static int split_args(const fe_model *m, size_t pos, span *out, int *n) {
  const char *s = m->src;
  size_t len = m->len;
  while (pos < len && s[pos] != '(') pos++;
  if (pos >= len) return -1;
  int depth = 0;
  size_t start = ++pos;
  *n = 0;
  for (; pos < len; pos++) {
    char c = s[pos];
    if (c == '#') { while (pos < len && s[pos] != '\n') pos++; continue; }
    if (c == '"') { for (pos++; pos < len && s[pos] != '"'; pos++) pos += s[pos] == '\\'; continue; }
    if (c == '(' || c == '[' || c == '{') { depth++; continue; }
    if ((c == ')' || c == ']' || c == '}') && depth) { depth--; continue; }
    if (depth == 0 && (c == ',' || c == ')')) {
      if (*n >= MAXARGS) return -1;
      out[(*n)++] = (span){start, pos, NULL, 0};
      if (c == ')') return 0;
      start = pos + 1;
    }
  }
  return -1;
}

/* Trim blanks (and comments) around a span; a named argument's value only. */
static void shape_span(const fe_model *m, span *a) {
  const char *s = m->src;
  while (a->start < a->end && (s[a->start] == ' ' || s[a->start] == '\t' || s[a->start] == '\n' ||
                               s[a->start] == '\r'))
    a->start++;
  size_t i = a->start;
  while (i < a->end && ident_char(s[i])) i++;
  size_t j = i;
  while (j < a->end && (s[j] == ' ' || s[j] == '\t')) j++;
  if (i > a->start && j < a->end && s[j] == '=' && (j + 1 >= a->end || s[j + 1] != '=')) {
    a->name = s + a->start, a->nlen = i - a->start;
    a->start = j + 1;
    while (a->start < a->end && (s[a->start] == ' ' || s[a->start] == '\t')) a->start++;
  }
  size_t e = a->start; /* the value ends before any trailing comment or blank */
  for (size_t k = a->start; k < a->end && s[k] != '#'; k++)
    if (s[k] != ' ' && s[k] != '\t' && s[k] != '\n' && s[k] != '\r') e = k + 1;
  a->end = e;
}

typedef struct {
  const fe_arg_edit *e;
  int n;
  const fe_expr **hit;    /* per edit: the call found */
} walk;

static void walk_expr(walk *w, const fe_expr *x) {
  if (!x) return;
  if (x->kind == EX_CALL)
    for (int i = 0; i < w->n; i++)
      if (!w->hit[i] && x->loc.line == w->e[i].call.line && x->loc.col == w->e[i].call.col) w->hit[i] = x;
  walk_expr(w, x->lhs);
  walk_expr(w, x->rhs);
  for (int i = 0; i < x->nitems; i++) walk_expr(w, x->items[i]);
  for (int i = 0; i < x->nnamed; i++) walk_expr(w, x->named[i].value);
}

static void walk_stmts(walk *w, fe_stmt **st, int n) {
  for (int i = 0; i < n; i++) {
    walk_expr(w, st[i]->value);
    walk_stmts(w, st[i]->body, st[i]->nbody);
  }
}

typedef struct {
  size_t start, end;
  const char *text, *name; /* name: an added argument's (text is then its value) */
} cut;

static int by_start(const void *a, const void *b) {
  size_t x = ((const cut *)a)->start, y = ((const cut *)b)->start;
  return (x > y) - (x < y);
}

static char *fail(char **err, const char *fmt, const char *what, int line, int col) {
  char buf[512];
  snprintf(buf, sizeof buf, fmt, what, line, col);
  *err = strdup(buf);
  return NULL;
}

char *fe_rewrite_args(const fe_model *m, const fe_arg_edit *e, int n, char **err) {
  *err = NULL;
  const fe_expr **hit = calloc((size_t)n + 1, sizeof *hit);
  cut *cuts = calloc((size_t)n + 1, sizeof *cuts);
  if (!hit || !cuts) { free(hit); free(cuts); *err = strdup("out of memory"); return NULL; }
  walk w = {e, n, hit};
  walk_stmts(&w, m->stmts, m->nstmts);
  int nc = 0;
  char *out = NULL;
  for (int i = 0; i < n; i++) {
    if (!hit[i]) { fail(err, "no call with argument %s at line %d, column %d", e[i].argname, e[i].call.line, e[i].call.col); goto done; }
    span a[MAXARGS];
    int na = 0, npos = 0;
    if (split_args(m, offset_of(m, e[i].call), a, &na)) {
      fail(err, "cannot read the arguments of %s's call at line %d, column %d", e[i].argname, e[i].call.line,
           e[i].call.col);
      goto done;
    }
    size_t close = na ? a[na - 1].end : 0; /* the ')' */
    for (int k = 0; k < na; k++) shape_span(m, &a[k]), npos += a[k].name == NULL;
    /* x |> f(b) is f(x, b): the source shows one positional argument fewer */
    int want = e[i].argi - (hit[i]->nitems - npos), found = -1;
    for (int k = 0, p = 0; k < na && found < 0; k++) {
      if (a[k].name) {
        if (strlen(e[i].argname) == a[k].nlen && !strncmp(a[k].name, e[i].argname, a[k].nlen)) found = k;
      } else if (p++ == want && e[i].argi >= 0) found = k;
    }
    if (found < 0 && e[i].add && na > 0 && a[na - 1].start < a[na - 1].end) {
      int dup = 0; /* a call inside a block applied several times: one addition */
      for (int c = 0; c < nc; c++) dup |= cuts[c].start == close && cuts[c].end == close;
      if (!dup) cuts[nc++] = (cut){close, close, e[i].text, e[i].argname};
      continue;
    }
    if (found < 0 || a[found].start >= a[found].end) {
      fail(err, "no argument '%s' in the call at line %d, column %d", e[i].argname, e[i].call.line, e[i].call.col);
      goto done;
    }
    int dup = 0; /* a call inside a block applied several times: one edit */
    for (int c = 0; c < nc; c++)
      if (cuts[c].start == a[found].start) {
        dup = 1;
        if (strcmp(cuts[c].text, e[i].text)) {
          fail(err, "the call of %s at line %d, column %d makes several layers that would need different widths",
               e[i].argname, e[i].call.line, e[i].call.col);
          goto done;
        }
      }
    if (!dup) cuts[nc++] = (cut){a[found].start, a[found].end, e[i].text, NULL};
  }
  qsort(cuts, (size_t)nc, sizeof *cuts, by_start);
  size_t total = m->len + 1;
  for (int c = 0; c < nc; c++) total += strlen(cuts[c].text) + (cuts[c].name ? strlen(cuts[c].name) + 3 : 0);
  out = malloc(total);
  if (!out) { *err = strdup("out of memory"); goto done; }
  size_t o = 0, from = 0;
  for (int c = 0; c < nc; c++) {
    memcpy(out + o, m->src + from, cuts[c].start - from), o += cuts[c].start - from;
    if (cuts[c].name) o += (size_t)sprintf(out + o, ", %s=", cuts[c].name);
    size_t tl = strlen(cuts[c].text);
    memcpy(out + o, cuts[c].text, tl), o += tl;
    from = cuts[c].end;
  }
  memcpy(out + o, m->src + from, m->len - from), o += m->len - from;
  out[o] = 0;
done:
  free(hit);
  free(cuts);
  return out;
}
