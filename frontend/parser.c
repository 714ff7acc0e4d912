/* parser.c -- tokens -> the statements of a model (recursive descent, one
 * function per grammar rule, the rule in a comment above it).
 *
 * Decisions the spec leaves open:
 *  - `model NAME` may appear anywhere, once. `train { }` may appear once.
 *  - a def body holds assignments and ends with exactly one `return`; a
 *    statement after the return is an error; defs do not nest (blocks are
 *    defined at the top level and may call each other).
 *  - `input x : f32` without brackets declares a scalar input; `f32[]` is an
 *    error; at most IR_MAXDIM dimensions.
 *  - `-` applied directly to a number literal is folded into the literal
 *    (EX_NUM -1, so `axis=-1` is a plain number for the checker).
 *  - `a |> f(b, k=1)` is the call f(a, b, k=1) located at `f`; `a |> f` is
 *    f(a). The right side of `|>` must be a name or a call.
 *  - train block settings are separated by newlines or commas, or by
 *    nothing at all when the next `key =` follows on the same line (the
 *    one-line `train { optimizer = adam(lr=1e-3)  epochs = 20 }` of the
 *    docs); a key given twice is an error.
 *  - nesting (parens, lists, calls, unary minus) deeper than FE_MAX_NEST and
 *    expression trees taller than FE_MAX_HEIGHT (long operator chains) are
 *    rejected, so later recursive passes cannot overflow the stack.
 *
 * Errors: the first error that desynchronises a statement sets `failed`;
 * later errors in that statement are dropped and the parser skips to the
 * statement's end (the next newline outside braces, or the '}' closing the
 * block it is in). Errors in a statement whose line already had a lexical
 * error are dropped (the lexer marks the ending NEWLINE with num = 1): one
 * mistake, one message. Parsing stops after FE_MAX_ERRORS errors.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include "ast.h"

#define FE_MAX_NEST 200
#define FE_MAX_HEIGHT 1000
#define FE_MAX_NAMED 1000   /* named args, parameters, train settings: keeps the
                               duplicate checks (quadratic) cheap */

typedef struct {
  void *a;
  int n, cap;
} vec;

typedef struct {
  fe_model *m;
  fe_diag *d;
  arena *A;
  const fe_token *t;
  int n, pos;
  int depth;             /* current nesting, for FE_MAX_NEST */
  int h;                 /* height of the expression last parsed */
  int failed;            /* the current statement is desynchronised */
  const fe_token *model_tok, *train_tok;
  int mark_from, mark_to, mark_bad; /* cache for lex_marked */
} parser;

static void vpush(arena *A, vec *v, const void *item, size_t size) {
  if (v->n == v->cap) {
    int nc = v->cap ? v->cap * 2 : 4;
    void *b = ar_alloc(A, (size_t)nc * size);
    if (v->n) memcpy(b, v->a, (size_t)v->n * size);
    v->a = b;
    v->cap = nc;
  }
  memcpy((char *)v->a + (size_t)v->n * size, item, size);
  v->n++;
}

/* ---- tokens ---- */

static const fe_token *tok(const parser *p) { return &p->t[p->pos]; }
static int at(const parser *p, fe_tokkind k) { return p->t[p->pos].kind == k; }
static fe_tokkind peek(const parser *p, int k) {
  return p->pos + k < p->n ? p->t[p->pos + k].kind : TK_EOF;
}
static const fe_token *next(parser *p) {
  const fe_token *t = &p->t[p->pos];
  if (t->kind != TK_EOF) p->pos++;
  return t;
}
static int stop(const parser *p) { return p->d->nerrors >= FE_MAX_ERRORS; }

/* "identifier 'h'", "number 3", "string \"x\"", "')'", "newline", ... */
static const char *describe(const fe_token *t, char *buf, size_t n) {
  switch (t->kind) {
  case TK_IDENT: snprintf(buf, n, "identifier '%.40s'", t->text ? t->text : ""); break;
  case TK_NUMBER: snprintf(buf, n, "number %g", t->num); break;
  case TK_STRING: {
    char s[44];
    size_t k = 0;
    for (const char *c = t->text ? t->text : ""; *c && k < 40; c++)
      s[k++] = (unsigned char)*c < 0x20 ? '?' : *c;
    s[k] = 0;
    snprintf(buf, n, "string \"%s%s\"", s, strlen(t->text ? t->text : "") > 40 ? "..." : "");
    break;
  }
  default: snprintf(buf, n, "%s", fe_tok_name(t->kind)); break;
  }
  return buf;
}

/* ---- errors ---- */

/* Did the lexer already report an error in the statement holding token k? */
static int lex_marked(parser *p, int k) {
  if (k >= p->mark_from && k <= p->mark_to) return p->mark_bad;
  int e = k;
  while (e < p->n - 1 && p->t[e].kind != TK_NEWLINE && p->t[e].kind != TK_EOF) e++;
  p->mark_from = k;
  p->mark_to = e;
  p->mark_bad = p->t[e].num != 0;
  return p->mark_bad;
}

static void verr(parser *p, const fe_token *t, int desync, const char *fmt, va_list ap) {
  if (p->failed) return;
  if (desync) p->failed = 1;
  if (lex_marked(p, (int)(t - p->t))) return;
  fe_verror(p->d, t->loc, fmt, ap);
}

/* An error after which the statement's tokens can no longer be trusted. */
static void *error_at(parser *p, const fe_token *t, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void *error_at(parser *p, const fe_token *t, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  verr(p, t, 1, fmt, ap);
  va_end(ap);
  return NULL;
}

/* An error that leaves the parse in step (duplicate names and the like). */
static void complain(parser *p, const fe_token *t, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void complain(parser *p, const fe_token *t, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  verr(p, t, 0, fmt, ap);
  va_end(ap);
}

/* "expected WHAT, got <the current token>" */
static void *expected(parser *p, const char *what) {
  char buf[96];
  return error_at(p, tok(p), "expected %s, got %s", what, describe(tok(p), buf, sizeof buf));
}

/* Skip to the end of a broken statement: past the next newline outside
 * braces, or up to the '}' that closes the block we are in. A '}' without
 * its '{' at the top level is swallowed with the statement. */
static void sync(parser *p, int in_block) {
  int braces = 0;
  for (;;) {
    fe_tokkind k = tok(p)->kind;
    if (k == TK_EOF) return;
    if (k == TK_NEWLINE && braces == 0) { next(p); return; }
    if (k == TK_LBRACE) braces++;
    if (k == TK_RBRACE) {
      if (braces == 0 && in_block) return;
      if (braces > 0) braces--;
    }
    next(p);
  }
}

/* Skip a block whose header was broken: through the '}' matching the next
 * '{', or through the next '}' when the '{' itself is missing. */
static void skip_block(parser *p) {
  int braces = 0;
  while (!at(p, TK_EOF)) {
    fe_tokkind k = next(p)->kind;
    if (k == TK_LBRACE) braces++;
    if (k == TK_RBRACE && --braces <= 0) return;
  }
}

/* Skip the rest of a block, up to (not over) its closing '}'. */
static void skip_to_close(parser *p) {
  int braces = 0;
  while (!at(p, TK_EOF)) {
    if (at(p, TK_LBRACE)) braces++;
    if (at(p, TK_RBRACE) && braces-- == 0) return;
    next(p);
  }
}

/* ---- expressions ---- */

static fe_expr *new_expr(parser *p, fe_exkind kind, ir_loc loc) {
  fe_expr *e = ar_alloc(p->A, sizeof *e);
  e->kind = kind;
  e->loc = loc;
  return e;
}

static int enter(parser *p, const fe_token *t) {
  if (p->depth >= FE_MAX_NEST) {
    error_at(p, t, "expression nested too deeply (limit %d)", FE_MAX_NEST);
    return 0;
  }
  p->depth++;
  return 1;
}

/* Record the height of the node just built (its tallest child + 1). */
static int grow(parser *p, const fe_token *t, int child_height) {
  p->h = child_height + 1;
  if (p->h > FE_MAX_HEIGHT) {
    error_at(p, t, "expression too complex (more than %d levels)", FE_MAX_HEIGHT);
    return 0;
  }
  return 1;
}

static fe_expr *parse_expr(parser *p);

/* args = "(" (arg ("," arg)* ","?)? ")"
 * arg  = IDENT "=" expr | expr
 * `first` (the left side of |>) becomes the first positional argument. */
static int parse_args(parser *p, fe_expr *call, fe_expr *first, int first_h) {
  const fe_token *open = next(p);
  if (!enter(p, open)) return 0;
  vec pos = {0}, named = {0};
  int hmax = first ? first_h : 0;
  if (first) vpush(p->A, &pos, &first, sizeof first);
  while (!at(p, TK_RPAREN)) {
    const fe_token *start = tok(p);
    if (at(p, TK_IDENT) && peek(p, 1) == TK_ASSIGN) {
      next(p);
      next(p);
      fe_expr *v = parse_expr(p);
      if (!v) return 0;
      if (named.n == FE_MAX_NAMED) return error_at(p, start, "too many named arguments (limit %d)", FE_MAX_NAMED), 0;
      for (int i = 0; i < named.n; i++)
        if (!strcmp(((fe_namedarg *)named.a)[i].name, start->text))
          complain(p, start, "duplicate named argument '%s'", start->text);
      fe_namedarg na = {start->text, v, start->loc};
      vpush(p->A, &named, &na, sizeof na);
    } else {
      fe_expr *v = parse_expr(p);
      if (!v) return 0;
      if (named.n) complain(p, start, "positional argument after named arguments");
      vpush(p->A, &pos, &v, sizeof v);
    }
    if (p->h > hmax) hmax = p->h;
    if (at(p, TK_COMMA)) next(p);
    else if (!at(p, TK_RPAREN)) return expected(p, "')' after arguments"), 0;
  }
  next(p);
  p->depth--;
  call->items = pos.a;
  call->nitems = pos.n;
  call->named = named.a;
  call->nnamed = named.n;
  return grow(p, open, hmax);
}

/* list = "[" (expr ("," expr)* ","?)? "]" */
static fe_expr *parse_list(parser *p) {
  const fe_token *open = next(p);
  if (!enter(p, open)) return NULL;
  fe_expr *e = new_expr(p, EX_LIST, open->loc);
  vec items = {0};
  int hmax = 0;
  while (!at(p, TK_RBRACKET)) {
    fe_expr *v = parse_expr(p);
    if (!v) return NULL;
    if (p->h > hmax) hmax = p->h;
    vpush(p->A, &items, &v, sizeof v);
    if (at(p, TK_COMMA)) next(p);
    else if (!at(p, TK_RBRACKET)) return expected(p, "']' after list items");
  }
  next(p);
  p->depth--;
  e->items = items.a;
  e->nitems = items.n;
  return grow(p, open, hmax) ? e : NULL;
}

/* primary = NUMBER | STRING | "true" | "false" | IDENT args? | list
 *         | "(" expr ")" */
static fe_expr *parse_primary(parser *p) {
  const fe_token *t = tok(p);
  fe_expr *e;
  p->h = 1;
  switch (t->kind) {
  case TK_NUMBER:
    e = new_expr(p, EX_NUM, next(p)->loc);
    e->num = t->num;
    e->num_is_int = t->num_is_int;
    return e;
  case TK_STRING:
    e = new_expr(p, EX_STR, next(p)->loc);
    e->str = t->text;
    return e;
  case TK_TRUE: case TK_FALSE:
    e = new_expr(p, EX_BOOL, next(p)->loc);
    e->num = t->kind == TK_TRUE;
    e->num_is_int = 1;
    return e;
  case TK_IDENT:
    next(p);
    e = new_expr(p, at(p, TK_LPAREN) ? EX_CALL : EX_NAME, t->loc);
    e->str = t->text;
    if (e->kind == EX_CALL && !parse_args(p, e, NULL, 0)) return NULL;
    return e;
  case TK_LBRACKET:
    return parse_list(p);
  case TK_LPAREN:
    next(p);
    if (!enter(p, t)) return NULL;
    e = parse_expr(p);
    if (!e) return NULL;
    if (!at(p, TK_RPAREN)) return expected(p, "')' after expression");
    next(p);
    p->depth--;
    return e;
  default:
    return expected(p, "an expression");
  }
}

/* unary = "-" unary | primary */
static fe_expr *parse_unary(parser *p) {
  if (!at(p, TK_MINUS)) return parse_primary(p);
  const fe_token *minus = next(p);
  if (!enter(p, minus)) return NULL;
  fe_expr *x = parse_unary(p);
  if (!x) return NULL;
  p->depth--;
  if (x->kind == EX_NUM) {
    x->num = -x->num; /* a negative literal: fold */
    x->loc = minus->loc;
    return x;
  }
  fe_expr *e = new_expr(p, EX_NEG, minus->loc);
  e->lhs = x;
  return grow(p, minus, p->h) ? e : NULL;
}

/* mul = unary (("*" | "/" | "//" | "%" | "@") unary)*
 * add = mul (("+" | "-") mul)* */
static const fe_tokkind level_ops[2][6] = {
  {TK_PLUS, TK_MINUS},
  {TK_STAR, TK_SLASH, TK_SLASHSLASH, TK_PERCENT, TK_AT},
};

static int is_level_op(int level, fe_tokkind k) {
  for (int i = 0; i < 6 && level_ops[level][i]; i++)
    if (level_ops[level][i] == k) return 1;
  return 0;
}

static fe_expr *parse_binary(parser *p, int level) {
  fe_expr *e = level == 1 ? parse_unary(p) : parse_binary(p, level + 1);
  while (e && is_level_op(level, tok(p)->kind)) {
    const fe_token *op = next(p);
    int hl = p->h;
    fe_expr *r = level == 1 ? parse_unary(p) : parse_binary(p, level + 1);
    if (!r) return NULL;
    fe_expr *b = new_expr(p, EX_BINOP, op->loc);
    b->op = op->kind;
    b->lhs = e;
    b->rhs = r;
    if (!grow(p, op, hl > p->h ? hl : p->h)) return NULL;
    e = b;
  }
  return e;
}

/* expr = add ("|>" IDENT args?)* */
static fe_expr *parse_expr(parser *p) {
  fe_expr *e = parse_binary(p, 0);
  while (e && at(p, TK_PIPE)) {
    next(p);
    if (!at(p, TK_IDENT)) return expected(p, "a function name after '|>'");
    const fe_token *name = next(p);
    fe_expr *call = new_expr(p, EX_CALL, name->loc);
    call->str = name->text;
    if (at(p, TK_LPAREN)) {
      if (!parse_args(p, call, e, p->h)) return NULL;
    } else {
      call->items = ar_alloc(p->A, sizeof *call->items);
      call->items[0] = e;
      call->nitems = 1;
      if (!grow(p, name, p->h)) return NULL;
    }
    e = call;
  }
  return e;
}

/* ---- statements ---- */

static fe_stmt *new_stmt(parser *p, fe_stkind kind, const fe_token *t) {
  fe_stmt *s = ar_alloc(p->A, sizeof *s);
  s->kind = kind;
  s->loc = t->loc;
  return s;
}

static void add_stmt(parser *p, vec *out, fe_stmt *s) { vpush(p->A, out, &s, sizeof s); }

/* A name after a keyword; NULL (and an error) otherwise. */
static const fe_token *expect_name(parser *p, const char *what) {
  if (at(p, TK_IDENT)) return next(p);
  return expected(p, what);
}

static int expect_assign(parser *p, const fe_token *name) {
  if (at(p, TK_ASSIGN)) { next(p); return 1; }
  char what[80];
  snprintf(what, sizeof what, "'=' after '%.40s'", name->text ? name->text : fe_tok_name(name->kind));
  expected(p, what);
  return 0;
}

/* model = "model" IDENT */
static void parse_model(parser *p, vec *out) {
  const fe_token *kw = next(p), *name = expect_name(p, "a model name after 'model'");
  if (!name) return;
  if (p->model_tok) {
    complain(p, kw, "duplicate 'model' statement (the first is on line %d)", p->model_tok->loc.line);
  } else {
    p->model_tok = kw;
    p->m->name = name->text;
  }
  fe_stmt *s = new_stmt(p, ST_MODEL, kw);
  s->name = name->text;
  s->name_loc = name->loc;
  add_stmt(p, out, s);
}

/* const = "const" IDENT "=" expr ("," IDENT "=" expr)* */
static void parse_const(parser *p, vec *out) {
  const fe_token *kw = next(p);
  for (int first = 1;; first = 0) {
    const fe_token *name = expect_name(p, first ? "a name after 'const'" : "a name after ','");
    if (!name || !expect_assign(p, name)) return;
    fe_expr *v = parse_expr(p);
    if (!v) return;
    fe_stmt *s = new_stmt(p, ST_CONST, first ? kw : name); /* the first at 'const' */
    s->name = name->text;
    s->name_loc = name->loc;
    s->value = v;
    add_stmt(p, out, s);
    if (!at(p, TK_COMMA)) return;
    next(p);
  }
}

/* input = ("input" | "target") IDENT ":" IDENT ("[" expr ("," expr)* ","? "]")? */
static void parse_input(parser *p, vec *out) {
  const fe_token *kw = next(p);
  fe_stmt *s = new_stmt(p, ST_INPUT, kw);
  s->is_target = kw->kind == TK_TARGET;
  const fe_token *name = expect_name(p, s->is_target ? "a name after 'target'" : "a name after 'input'");
  if (!name) return;
  s->name = name->text;
  s->name_loc = name->loc;
  if (!at(p, TK_COLON)) {
    char what[80];
    snprintf(what, sizeof what, "':' and a type after '%.40s'", name->text);
    expected(p, what);
    return;
  }
  next(p);
  const fe_token *ty = expect_name(p, "a dtype after ':'");
  if (!ty) return;
  s->dtype_loc = ty->loc;
  if (ir_dtype_parse(ty->text, &s->dtype) != 0)
    complain(p, ty, "unknown dtype '%.40s' (expected f32, f16, bf16, i32, i64, i8, u8 or bool)", ty->text);
  if (at(p, TK_LBRACKET)) {
    next(p);
    vec dims = {0};
    do {
      if (at(p, TK_RBRACKET) && dims.n) break; /* trailing comma */
      const fe_token *dt = tok(p);
      fe_expr *e = parse_expr(p);
      if (!e) return;
      if (dims.n == IR_MAXDIM) complain(p, dt, "too many dimensions (at most %d)", IR_MAXDIM);
      vpush(p->A, &dims, &e, sizeof e);
    } while (at(p, TK_COMMA) && next(p));
    if (!at(p, TK_RBRACKET)) { expected(p, "']' after dimensions"); return; }
    next(p);
    s->dims = dims.a;
    s->ndims = dims.n;
  }
  add_stmt(p, out, s);
}

/* output = "output" IDENT ("=" expr)? */
static void parse_output(parser *p, vec *out) {
  const fe_token *kw = next(p), *name = expect_name(p, "a name after 'output'");
  if (!name) return;
  fe_stmt *s = new_stmt(p, ST_OUTPUT, kw);
  s->name = name->text;
  s->name_loc = name->loc;
  if (at(p, TK_ASSIGN)) {
    next(p);
    if (!(s->value = parse_expr(p))) return;
  }
  add_stmt(p, out, s);
}

/* loss = "loss" "=" expr */
static void parse_loss(parser *p, vec *out) {
  const fe_token *kw = next(p);
  if (!expect_assign(p, kw)) return;
  fe_stmt *s = new_stmt(p, ST_LOSS, kw);
  s->name = "loss";
  s->name_loc = kw->loc;
  if ((s->value = parse_expr(p))) add_stmt(p, out, s);
}

/* the rest of `a, b, ... = expr` after its first name: names = IDENT ("," IDENT)+ */
static void parse_multi_assign(parser *p, vec *out, const fe_token *first) {
  vec names = {0}, locs = {0};
  vpush(p->A, &names, &first->text, sizeof first->text);
  vpush(p->A, &locs, &first->loc, sizeof first->loc);
  while (at(p, TK_COMMA)) {
    next(p);
    const fe_token *nm = expect_name(p, "a name after ',' (a, b = split(...))");
    if (!nm) return;
    vpush(p->A, &names, &nm->text, sizeof nm->text);
    vpush(p->A, &locs, &nm->loc, sizeof nm->loc);
  }
  if (!expect_assign(p, first)) return;
  fe_stmt *s = new_stmt(p, ST_ASSIGN, first);
  s->name = first->text;
  s->name_loc = first->loc;
  s->names = names.a;
  s->name_locs = locs.a;
  s->nnames = names.n;
  if ((s->value = parse_expr(p))) add_stmt(p, out, s);
}

/* assign = IDENT "=" expr | IDENT ("," IDENT)+ "=" expr */
static void parse_assign(parser *p, vec *out) {
  const fe_token *name = next(p);
  if (at(p, TK_COMMA)) {
    parse_multi_assign(p, out, name);
    return;
  }
  if (!at(p, TK_ASSIGN)) {
    char what[120];
    snprintf(what, sizeof what, at(p, TK_LPAREN) ? "'=' after '%.40s' (a call's result must be bound to a name)"
                                                  : "'=' after '%.40s'", name->text);
    expected(p, what);
    return;
  }
  next(p);
  fe_stmt *s = new_stmt(p, ST_ASSIGN, name);
  s->name = name->text;
  s->name_loc = name->loc;
  if ((s->value = parse_expr(p))) add_stmt(p, out, s);
}

/* return = "return" expr */
static void parse_return(parser *p, vec *out) {
  const fe_token *kw = next(p);
  fe_stmt *s = new_stmt(p, ST_RETURN, kw);
  if ((s->value = parse_expr(p))) add_stmt(p, out, s);
}

static void parse_stmt(parser *p, vec *out, int in_def);

/* After a statement: a newline, the end of the file, or a block's '}'. */
static void end_stmt(parser *p, int in_block) {
  if (p->failed) return;
  if (at(p, TK_NEWLINE)) next(p);
  else if (!at(p, TK_EOF) && !(in_block && at(p, TK_RBRACE))) expected(p, "newline after statement");
}

static void skip_newlines(parser *p) {
  while (at(p, TK_NEWLINE)) next(p);
}

/* body = "{" NEWLINE* (stmt (NEWLINE+ | &"}"))* "}"   (ends with its return) */
static void parse_body(parser *p, fe_stmt *def) {
  const fe_token *open = next(p);
  vec body = {0};
  int returned = 0, broken = 0;
  for (;;) {
    skip_newlines(p);
    if (at(p, TK_RBRACE) || stop(p)) break;
    if (at(p, TK_EOF)) {
      error_at(p, open, "the body of '%s' is never closed (missing '}')", def->name);
      break;
    }
    if (returned) {
      char what[120];
      snprintf(what, sizeof what, "'}' to close the body of '%.40s' after its return statement", def->name);
      expected(p, what);
      skip_to_close(p);
      break;
    }
    p->failed = 0;
    parse_stmt(p, &body, 1);
    if (body.n && ((fe_stmt **)body.a)[body.n - 1]->kind == ST_RETURN) returned = 1;
    end_stmt(p, 1);
    broken |= p->failed;
    if (p->failed) sync(p, 1);
  }
  def->body = body.a;
  def->nbody = body.n;
  if (!at(p, TK_RBRACE)) return;
  const fe_token *close = next(p);
  p->failed = 0;
  if (!returned && !broken && !stop(p)) complain(p, close, "def '%s' must end with a return statement", def->name);
}

/* def = "def" IDENT "(" (IDENT ("," IDENT)* ","?)? ")" NEWLINE* body */
static void parse_def(parser *p, vec *out) {
  const fe_token *kw = next(p), *name = expect_name(p, "a block name after 'def'");
  fe_stmt *s = new_stmt(p, ST_DEF, kw);
  vec params = {0}, locs = {0};
  if (!name) goto broken;
  s->name = name->text;
  s->name_loc = name->loc;
  if (!at(p, TK_LPAREN)) {
    char what[80];
    snprintf(what, sizeof what, "'(' after '%.40s'", name->text);
    expected(p, what);
    goto broken;
  }
  next(p);
  while (!at(p, TK_RPAREN)) {
    const fe_token *pt = expect_name(p, "a parameter name");
    if (!pt) goto broken;
    if (params.n == FE_MAX_NAMED) {
      error_at(p, pt, "too many parameters (limit %d)", FE_MAX_NAMED);
      goto broken;
    }
    for (int i = 0; i < params.n; i++)
      if (!strcmp(((const char **)params.a)[i], pt->text)) complain(p, pt, "duplicate parameter '%s'", pt->text);
    vpush(p->A, &params, &pt->text, sizeof pt->text);
    vpush(p->A, &locs, &pt->loc, sizeof pt->loc);
    if (at(p, TK_COMMA)) next(p);
    else if (!at(p, TK_RPAREN)) { expected(p, "')' after parameters"); goto broken; }
  }
  next(p);
  s->params = params.a;
  s->param_locs = locs.a;
  s->nparams = params.n;
  skip_newlines(p);
  if (!at(p, TK_LBRACE)) {
    char what[80];
    snprintf(what, sizeof what, "'{' to start the body of '%.40s'", name->text);
    expected(p, what);
    goto broken;
  }
  parse_body(p, s);
  add_stmt(p, out, s);
  return;
broken:
  skip_block(p);
}

/* train = "train" NEWLINE* "{" NEWLINE* (kv (sep NEWLINE* kv)*)? sep? NEWLINE* "}"
 * sep   = NEWLINE+ | "," | &IDENT
 * kv    = IDENT "=" expr */
static void parse_train(parser *p, vec *out) {
  const fe_token *kw = next(p);
  if (p->train_tok) complain(p, kw, "duplicate 'train' block (the first is on line %d)", p->train_tok->loc.line);
  else p->train_tok = kw;
  skip_newlines(p);
  if (!at(p, TK_LBRACE)) {
    expected(p, "'{' after 'train'");
    skip_block(p);
    return;
  }
  const fe_token *open = next(p);
  fe_stmt *s = new_stmt(p, ST_TRAIN, kw);
  vec kv = {0};
  for (;;) {
    skip_newlines(p);
    if (at(p, TK_RBRACE) || stop(p)) break;
    if (at(p, TK_EOF)) { error_at(p, open, "the train block is never closed (missing '}')"); break; }
    p->failed = 0;
    p->depth = 0;
    const fe_token *key = expect_name(p, "a setting name in the train block");
    fe_expr *v = key && expect_assign(p, key) ? parse_expr(p) : NULL;
    if (v && kv.n == FE_MAX_NAMED) {
      error_at(p, key, "too many settings in the train block (limit %d)", FE_MAX_NAMED);
    } else if (v) {
      for (int i = 0; i < kv.n; i++)
        if (!strcmp(((fe_namedarg *)kv.a)[i].name, key->text))
          complain(p, key, "duplicate setting '%s' in the train block", key->text);
      fe_namedarg na = {key->text, v, key->loc};
      vpush(p->A, &kv, &na, sizeof na);
      if (at(p, TK_COMMA)) next(p);
      else if (!at(p, TK_IDENT)) end_stmt(p, 1); /* a name starts the next setting */
    }
    if (p->failed) sync(p, 1);
  }
  s->kv = kv.a;
  s->nkv = kv.n;
  if (at(p, TK_RBRACE)) next(p);
  p->failed = 0;
  add_stmt(p, out, s);
}

/* stmt = model | const | input | output | loss | def | train | return | assign */
static void parse_stmt(parser *p, vec *out, int in_def) {
  const fe_token *t = tok(p);
  p->depth = 0;
  if (in_def) {
    if (t->kind == TK_DEF) {
      error_at(p, t, "a def cannot be nested inside another def");
      return;
    }
    if (t->kind >= TK_MODEL && t->kind <= TK_TRAIN && t->kind != TK_RETURN) {
      error_at(p, t, "%s statement is not allowed inside a def block", fe_tok_name(t->kind));
      return;
    }
  }
  switch (t->kind) {
  case TK_MODEL: parse_model(p, out); return;
  case TK_CONST: parse_const(p, out); return;
  case TK_INPUT: case TK_TARGET: parse_input(p, out); return;
  case TK_OUTPUT: parse_output(p, out); return;
  case TK_LOSS: parse_loss(p, out); return;
  case TK_DEF: parse_def(p, out); return;
  case TK_TRAIN: parse_train(p, out); return;
  case TK_IDENT: parse_assign(p, out); return;
  case TK_RETURN:
    if (in_def) parse_return(p, out);
    else error_at(p, t, "unexpected 'return' outside a block");
    return;
  case TK_RBRACE:
    error_at(p, t, "unexpected '}' (no block is open)");
    return;
  default:
    expected(p, "a statement");
    return;
  }
}

/* program = NEWLINE* (stmt (NEWLINE+ | EOF))* EOF */
int fe_parse_tokens(fe_model *m, fe_diag *d, const fe_token *toks, int ntok) {
  if (!toks || ntok <= 0 || toks[ntok - 1].kind != TK_EOF) {
    fe_error(d, (ir_loc){0}, "internal error: no tokens");
    return -1;
  }
  parser p = {.m = m, .d = d, .A = &m->A, .t = toks, .n = ntok, .mark_from = 1, .mark_to = 0};
  vec stmts = {0};
  while (!stop(&p)) {
    skip_newlines(&p);
    if (at(&p, TK_EOF)) break;
    p.failed = 0;
    parse_stmt(&p, &stmts, 0);
    end_stmt(&p, 0);
    if (p.failed) sync(&p, 0);
  }
  m->stmts = stmts.a;
  m->nstmts = stmts.n;
  return d->nerrors ? -1 : 0;
}
