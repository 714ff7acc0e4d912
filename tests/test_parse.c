/* test_parse.c -- the lexer (fe_lex) and parser (fe_parse_tokens) on good
 * inputs (token streams, continuation, every statement form, precedence,
 * pipes, named args) and bad ones (exact diagnostics with line:col and caret,
 * recovery without cascades, NUL bytes, invalid UTF-8, deep nesting and
 * random bytes without a crash). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ast.h"
#include "test.h"

/* ---- helpers ---- */

typedef struct {
  fe_model *m;
  fe_token *toks;
  int ntok;
  int rc;
  int nerrors;
  char *err;   /* all diagnostics, "" when none */
} result;

static result run_n(const char *src, size_t len) {
  result r = {0};
  r.m = calloc(1, sizeof *r.m);
  ar_init(&r.m->A);
  r.m->path = "t.nn";
  r.m->src = src;
  r.m->len = len;
  r.m->name = "t";
  fe_diag d;
  fe_diag_init(&d, "t.nn", src, len);
  r.toks = fe_lex(&r.m->A, &d, "t.nn", src, len, &r.ntok);
  r.rc = fe_parse_tokens(r.m, &d, r.toks, r.ntok);
  r.nerrors = d.nerrors;
  r.err = d.buf ? fe_diag_take(&d) : strdup("");
  fe_diag_free(&d);
  return r;
}

static result run(const char *src) { return run_n(src, strlen(src)); }

static void done(result *r) {
  ar_free(&r->m->A);
  free(r->m);
  free(r->err);
}

/* Tokens as text: names and numbers as written, strings quoted, ';' for a
 * newline, '$' for the end. */
static char *tokstr(const char *src, char *buf, size_t n) {
  arena A;
  ar_init(&A);
  fe_diag d;
  fe_diag_init(&d, "t.nn", src, strlen(src));
  int nt = 0;
  fe_token *t = fe_lex(&A, &d, "t.nn", src, strlen(src), &nt);
  size_t k = 0;
  buf[0] = 0;
  for (int i = 0; i < nt && k + 64 < n; i++) {
    const char *s;
    char tmp[64];
    switch (t[i].kind) {
    case TK_IDENT: s = t[i].text; break;
    case TK_NUMBER: snprintf(tmp, sizeof tmp, t[i].num_is_int ? "%g" : "%g.f", t[i].num); s = tmp; break;
    case TK_STRING: snprintf(tmp, sizeof tmp, "\"%s\"", t[i].text); s = tmp; break;
    case TK_NEWLINE: s = ";"; break;
    case TK_EOF: s = "$"; break;
    default: {
      const char *q = fe_tok_name(t[i].kind);
      snprintf(tmp, sizeof tmp, "%.*s", (int)strlen(q) - 2, q + 1);
      s = tmp;
    }
    }
    k += (size_t)snprintf(buf + k, n - k, "%s%s", k ? " " : "", s);
  }
  if (d.nerrors) k += (size_t)snprintf(buf + k, n - k, " !%d", d.nerrors);
  fe_diag_free(&d);
  ar_free(&A);
  return buf;
}

#define CHECK_TOKS(src, want) do { char b_[4096]; CHECK_STR(tokstr(src, b_, sizeof b_), want); } while (0)

static const char *binop_name(int op) {
  switch (op) {
  case TK_PLUS: return "+"; case TK_MINUS: return "-"; case TK_STAR: return "*";
  case TK_SLASH: return "/"; case TK_SLASHSLASH: return "//"; case TK_PERCENT: return "%";
  case TK_AT: return "@"; default: return "?";
  }
}

/* Expressions as s-expressions: (+ a (* b c)), (f x k=1), [1 2], (neg x). */
static size_t ex(const fe_expr *e, char *b, size_t n) {
  size_t k = 0;
#define P(...) (k += (size_t)snprintf(b + k, k < n ? n - k : 0, __VA_ARGS__))
  if (!e) { P("NULL"); return k; }
  switch (e->kind) {
  case EX_NUM: P(e->num_is_int ? "%g" : "%g.f", e->num); break;
  case EX_STR: P("\"%s\"", e->str); break;
  case EX_BOOL: P(e->num ? "true" : "false"); break;
  case EX_NAME: P("%s", e->str); break;
  case EX_NEG: P("(neg "); k += ex(e->lhs, b + k, k < n ? n - k : 0); P(")"); break;
  case EX_BINOP:
    P("(%s ", binop_name(e->op));
    k += ex(e->lhs, b + k, k < n ? n - k : 0);
    P(" ");
    k += ex(e->rhs, b + k, k < n ? n - k : 0);
    P(")");
    break;
  case EX_LIST: case EX_CALL:
    P(e->kind == EX_LIST ? "[" : "(%s", e->str);
    for (int i = 0; i < e->nitems; i++) {
      if (i || e->kind == EX_CALL) P(" ");
      k += ex(e->items[i], b + k, k < n ? n - k : 0);
    }
    for (int i = 0; i < e->nnamed; i++) {
      P(" %s=", e->named[i].name);
      k += ex(e->named[i].value, b + k, k < n ? n - k : 0);
    }
    P(e->kind == EX_LIST ? "]" : ")");
    break;
  }
#undef P
  return k;
}

/* The value of the last statement of src (an assignment), as text. */
static char *expr_of(const char *src, char *buf, size_t n) {
  result r = run(src);
  buf[0] = 0;
  if (r.rc || !r.m->nstmts) snprintf(buf, n, "ERR %s", r.err);
  else ex(r.m->stmts[r.m->nstmts - 1]->value, buf, n);
  done(&r);
  return buf;
}

#define CHECK_EXPR(src, want) do { char b_[4096]; CHECK_STR(expr_of(src, b_, sizeof b_), want); } while (0)

/* The whole diagnostic text for src. */
#define CHECK_DIAG(src, want) do { result r_ = run(src); CHECK(r_.rc != 0); CHECK_STR(r_.err, want); done(&r_); } while (0)

/* Only the first line of the diagnostics, and the error count. */
static void first_line(const char *err, char *buf, size_t n) {
  size_t k = strcspn(err, "\n");
  if (k >= n) k = n - 1;
  memcpy(buf, err, k);
  buf[k] = 0;
}
#define CHECK_FIRST(src, want, count) do { \
  result r_ = run(src); char b_[512]; first_line(r_.err, b_, sizeof b_); \
  CHECK(r_.rc != 0); CHECK_STR(b_, want); \
  CHECK_MSG(r_.nerrors == (count), "%d errors, want %d:\n%s", r_.nerrors, (count), r_.err); \
  done(&r_); } while (0)

/* ---- the lexer ---- */

static void test_tokens(void) {
  CHECK_TOKS("", "$");
  CHECK_TOKS("\n\n# only a comment\n\n", "$");
  CHECK_TOKS("h = dense(x, 256, name=\"fc1\")",
             "h = dense ( x , 256 , name = \"fc1\" ) ; $");
  CHECK_TOKS("a |> b // c % d @ e / f * g + h - i", "a |> b // c % d @ e / f * g + h - i ; $");
  CHECK_TOKS("input x : f32[batch, 64]", "input x : f32 [ batch , 64 ] ; $");
  CHECK_TOKS("model const input target output loss def return train true false",
             "model const input target output loss def return train true false ; $");
  CHECK_TOKS("models _x1 x_2 Return", "models _x1 x_2 Return ; $");
  /* numbers: int only without '.' and exponent */
  CHECK_TOKS("42 0.5 .5 5. 1e-3 2E+2 1e3 007", "42 0.5.f 0.5.f 5.f 0.001.f 200.f 1000.f 7 ; $");
  CHECK_TOKS("9223372036854775807", "9.22337e+18 ; $");
  CHECK_TOKS("\"a\\\"b\\\\c\\nd\"", "\"a\"b\\c\nd\" ; $");
  CHECK_TOKS("\"héllo ✓\"", "\"héllo ✓\" ; $");
  /* comments, CR LF, a BOM */
  CHECK_TOKS("\xEF\xBB\xBFx = 1 # one\r\ny = 2\r\n", "x = 1 ; y = 2 ; $");
}

static void test_continuation(void) {
  /* inside ( ) and [ ] newlines vanish */
  CHECK_TOKS("h = f(x,\n  3\n)\n", "h = f ( x , 3 ) ; $");
  CHECK_TOKS("s = [\n 0.6,\n 0.2\n]\n", "s = [ 0.6.f , 0.2.f ] ; $");
  CHECK_TOKS("a = (b\n + c)\n", "a = ( b + c ) ; $");
  /* a trailing operator, comma, '=' or '|>' continues */
  CHECK_TOKS("a = b +\n c\n", "a = b + c ; $");
  CHECK_TOKS("a =\n b\n", "a = b ; $");
  CHECK_TOKS("a = b |>\n relu\n", "a = b |> relu ; $");
  CHECK_TOKS("const A = 1,\n B = 2\n", "const A = 1 , B = 2 ; $");
  CHECK_TOKS("a = b @ # comment\n c\n", "a = b @ c ; $");
  /* braces hold statements: newlines stay */
  CHECK_TOKS("def f(x) {\n  return x\n}\n", "def f ( x ) { ; return x ; } ; $");
  /* a leading operator does not join lines */
  CHECK_TOKS("a = b\n+ c\n", "a = b ; + c ; $");
  /* repeated newlines collapse; the stream ends with one */
  CHECK_TOKS("a = 1\n\n\n# c\n\nb = 2", "a = 1 ; b = 2 ; $");
}

static void test_token_locations(void) {
  const char *src = "x = 1\n  yé = \"✓\" # c\n\tz\n";
  result r = run(src);
  int want[][3] = {
    {TK_IDENT, 1, 1}, {TK_ASSIGN, 1, 3}, {TK_NUMBER, 1, 5}, {TK_NEWLINE, 1, 6},
    {TK_IDENT, 2, 3}, {TK_ASSIGN, 2, 6}, {TK_STRING, 2, 8}, {TK_NEWLINE, 2, 11},
    {TK_IDENT, 3, 2}, {TK_NEWLINE, 3, 3}, {TK_EOF, 4, 1},
  };
  int nw = (int)(sizeof want / sizeof *want);
  CHECK(r.ntok == nw);
  for (int i = 0; i < nw && i < r.ntok; i++) {
    CHECK_MSG((int)r.toks[i].kind == want[i][0] && r.toks[i].loc.line == want[i][1] &&
              r.toks[i].loc.col == want[i][2], "token %d: kind %d at %d:%d", i, r.toks[i].kind,
              r.toks[i].loc.line, r.toks[i].loc.col);
    CHECK(r.toks[i].loc.file && !strcmp(r.toks[i].loc.file, "t.nn"));
  }
  done(&r);
}

static void test_lex_errors(void) {
  CHECK_DIAG("x = 1 $ 2\n", "t.nn:1:7: error: unexpected character '$'\nx = 1 $ 2\n      ^\n");
  /* a run of bad characters is one error */
  CHECK_FIRST("x = a ?!? b\n", "t.nn:1:7: error: unexpected character '?'", 1);
  CHECK_DIAG("x = 'a'\n",
             "t.nn:1:5: error: unexpected character \"'\" (strings use double quotes)\nx = 'a'\n    ^\n");
  CHECK_FIRST("x = 99999999999999999999\n", "t.nn:1:5: error: integer literal too large", 1);
  CHECK_FIRST("x = 9223372036854775808\n", "t.nn:1:5: error: integer literal too large", 1);
  CHECK_FIRST("x = 1e999\n", "t.nn:1:5: error: number literal too large", 1);
  CHECK_FIRST("x = 3x\n", "t.nn:1:5: error: malformed number '3x'", 1);
  CHECK_FIRST("x = 1.2.3\n", "t.nn:1:5: error: malformed number '1.2.3'", 1);
  CHECK_FIRST("x = 1e\n", "t.nn:1:5: error: malformed number '1e'", 1);
  CHECK_DIAG("h = dense(x, name=\"fc1)\ny = 2\n",
             "t.nn:1:19: error: unterminated string\nh = dense(x, name=\"fc1)\n                  ^\n");
  CHECK_FIRST("s = \"a\\qb\"\n", "t.nn:1:7: error: unknown escape sequence '\\q' in string", 1);
  CHECK_FIRST("x = «a»\n", "t.nn:1:5: error: unexpected character '«' (U+00AB)", 1);
  /* each bad line is reported once, and the lines between still parse */
  result r = run("a = $\nb = 1\nc = `\n");
  CHECK(r.nerrors == 2);
  CHECK(r.m->nstmts == 1);
  done(&r);
}

static void test_bad_bytes(void) {
  /* NUL and control bytes: shown as '?' in the echoed line */
  const char nul[] = "x = 1\ny = \0 2\n";
  result r = run_n(nul, sizeof nul - 1);
  CHECK_STR(r.err, "t.nn:2:5: error: unexpected character (byte 0x00)\ny = ? 2\n    ^\n");
  done(&r);
  const char ctl[] = "y = \x07\n";
  r = run_n(ctl, sizeof ctl - 1);
  CHECK_STR(r.err, "t.nn:1:5: error: unexpected character (byte 0x07)\ny = ?\n    ^\n");
  done(&r);
  /* malformed UTF-8: stray continuation, truncated sequence, overlong, surrogate */
  const char *bad[] = {"x = \x80\n", "x = \xE2\x9C\n", "x = \xC0\xAF\n", "x = \xED\xA0\x80\n",
                       "x = \xF5\x80\x80\x80\n", "x = \xFF"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    r = run(bad[i]);
    char b[256];
    first_line(r.err, b, sizeof b);
    CHECK_MSG(r.rc != 0 && !strncmp(b, "t.nn:1:5: error: invalid UTF-8 (byte 0x", 39), "%s", b);
    CHECK(r.nerrors == 1);
    done(&r);
  }
  /* inside strings */
  const char snul[] = "s = \"a\0b\"\n";
  r = run_n(snul, sizeof snul - 1);
  CHECK_STR(r.err, "t.nn:1:7: error: NUL byte in string\ns = \"a?b\"\n      ^\n");
  done(&r);
  r = run("s = \"a\xFF\"\n");
  CHECK(r.nerrors == 1 && strstr(r.err, "t.nn:1:7: error: invalid UTF-8 in string (byte 0xff)"));
  done(&r);
  /* comments may hold anything but a newline */
  const char cnul[] = "x = 1 # \0\xFF\x01 fine\n";
  r = run_n(cnul, sizeof cnul - 1);
  CHECK(r.rc == 0 && r.nerrors == 0);
  done(&r);
  /* columns count code points, not bytes */
  CHECK_DIAG("s = \"✓✓\" $\n", "t.nn:1:10: error: unexpected character '$'\ns = \"✓✓\" $\n         ^\n");
}

/* ---- the parser ---- */

static void test_precedence(void) {
  CHECK_EXPR("y = a + b * c @ d", "(+ a (@ (* b c) d))");
  CHECK_EXPR("y = a - b - c", "(- (- a b) c)");
  CHECK_EXPR("y = a // b % c / d", "(/ (% (// a b) c) d)");
  CHECK_EXPR("y = -a * b", "(* (neg a) b)");
  CHECK_EXPR("y = -(a + b)", "(neg (+ a b))");
  CHECK_EXPR("y = (a + b) * c", "(* (+ a b) c)");
  CHECK_EXPR("y = - -a", "(neg (neg a))");
  /* negative literals are folded */
  CHECK_EXPR("y = softmax(x, axis=-1)", "(softmax x axis=-1)");
  CHECK_EXPR("y = -1e-3", "-0.001.f");
  CHECK_EXPR("y = 2 - -3", "(- 2 -3)");
}

static void test_calls_and_pipes(void) {
  CHECK_EXPR("y = conv2d(x, 16, kernel=3, padding=\"same\")", "(conv2d x 16 kernel=3 padding=\"same\")");
  CHECK_EXPR("y = f()", "(f)");
  CHECK_EXPR("y = f(a, b,)", "(f a b)");
  CHECK_EXPR("y = f(a, k=1,)", "(f a k=1)");
  CHECK_EXPR("y = x |> relu", "(relu x)");
  CHECK_EXPR("y = x |> dense(10, bias=false)", "(dense x 10 bias=false)");
  CHECK_EXPR("y = x |> dense(10) |> relu |> softmax(axis=1)", "(softmax (relu (dense x 10)) axis=1)");
  CHECK_EXPR("y = a + b |> f", "(f (+ a b))");
  CHECK_EXPR("y = f(g(x), [1, 2], -x)", "(f (g x) [1 2] (neg x))");
  CHECK_EXPR("y = [1, [2.5, \"s\"], true, false,]", "[1 [2.5.f \"s\"] true false]");
  CHECK_EXPR("y = []", "[]");
  CHECK_EXPR("y = repeat(4, block, x, name=\"h\")", "(repeat 4 block x name=\"h\")");
  /* a pipe's call is located at the callee */
  result r = run("y = x |> dense(3)\n");
  CHECK(r.rc == 0 && r.m->nstmts == 1);
  if (r.m->nstmts == 1) {
    fe_expr *e = r.m->stmts[0]->value;
    CHECK(e->kind == EX_CALL && e->loc.line == 1 && e->loc.col == 10);
    CHECK(e->items[0]->loc.col == 5);
  }
  done(&r);
  r = run("y = a +\n  b * c\n");
  CHECK(r.rc == 0 && r.m->nstmts == 1);
  if (r.m->nstmts == 1) {
    fe_expr *e = r.m->stmts[0]->value;
    CHECK(e->loc.line == 1 && e->loc.col == 7);          /* binop at its operator */
    CHECK(e->rhs->loc.line == 2 && e->rhs->loc.col == 5);
    CHECK(e->rhs->lhs->loc.col == 3);
  }
  done(&r);
}

static const char *all_forms =
  "# a model using every statement form\n"
  "model mnist_mlp\n"
  "const D = 128, HEADS = D // 32\n"
  "input  x : f32[batch, 28 * 28]\n"
  "target y : i32[batch]\n"
  "input  s : f32\n"
  "def block(h, width) {\n"
  "  h = dense(h, width)\n"
  "\n"
  "  return h |> relu\n"
  "}\n"
  "def one(z) { return z }\n"
  "h = repeat(2, block, x, D, name=\"h\")\n"
  "output logits = dense(h, 10)\n"
  "output logits\n"
  "loss = cross_entropy(logits, y, label_smoothing=0.1)\n"
  "train {\n"
  "  optimizer = adam(lr=1e-3)\n"
  "  schedule = cosine(warmup=100, min_lr=1e-5)\n"
  "  split = [0.6, 0.2, 0.2]\n"
  "  init = normal(0.02), epochs = 3\n"
  "}\n";

static void test_statements(void) {
  result r = run(all_forms);
  CHECK_MSG(r.rc == 0 && r.nerrors == 0, "%s", r.err);
  CHECK_STR(r.m->name, "mnist_mlp");
  int kinds[] = {ST_MODEL, ST_CONST, ST_CONST, ST_INPUT, ST_INPUT, ST_INPUT, ST_DEF, ST_DEF, ST_ASSIGN,
                 ST_OUTPUT, ST_OUTPUT, ST_LOSS, ST_TRAIN};
  int nk = (int)(sizeof kinds / sizeof *kinds);
  CHECK(r.m->nstmts == nk);
  for (int i = 0; i < nk && i < r.m->nstmts; i++) CHECK_MSG((int)r.m->stmts[i]->kind == kinds[i], "stmt %d", i);
  if (r.m->nstmts == nk) {
    fe_stmt **s = r.m->stmts;
    char b[512];
    CHECK_STR(s[0]->name, "mnist_mlp");
    CHECK_STR(s[1]->name, "D");
    CHECK(s[1]->loc.line == 3 && s[1]->loc.col == 1);
    CHECK_STR(s[2]->name, "HEADS");
    CHECK(s[2]->loc.col == 16 && s[2]->name_loc.col == 16);
    ex(s[2]->value, b, sizeof b);
    CHECK_STR(b, "(// D 32)");
    CHECK(!s[3]->is_target && s[3]->dtype == IR_F32 && s[3]->ndims == 2);
    CHECK(s[3]->dtype_loc.line == 4 && s[3]->dtype_loc.col == 12);
    ex(s[3]->dims[1], b, sizeof b);
    CHECK_STR(b, "(* 28 28)");
    CHECK(s[3]->dims[0]->kind == EX_NAME);
    CHECK(s[4]->is_target && s[4]->dtype == IR_I32 && s[4]->ndims == 1);
    CHECK(s[5]->ndims == 0);
    CHECK_STR(s[6]->name, "block");
    CHECK(s[6]->nparams == 2 && !strcmp(s[6]->params[1], "width") && s[6]->param_locs[1].col == 14);
    CHECK(s[6]->nbody == 2 && s[6]->body[0]->kind == ST_ASSIGN && s[6]->body[1]->kind == ST_RETURN);
    ex(s[6]->body[1]->value, b, sizeof b);
    CHECK_STR(b, "(relu h)");
    CHECK(s[7]->nbody == 1 && s[7]->body[0]->kind == ST_RETURN);
    CHECK(s[9]->value && !strcmp(s[9]->name, "logits"));
    CHECK(!s[10]->value && !strcmp(s[10]->name, "logits") && s[10]->name_loc.col == 8);
    CHECK(s[11]->value && s[11]->value->nnamed == 1);
    CHECK(s[12]->nkv == 5);
    if (s[12]->nkv == 5) {
      CHECK_STR(s[12]->kv[4].name, "epochs");
      CHECK(s[12]->kv[4].loc.line == 21);
      ex(s[12]->kv[1].value, b, sizeof b);
      CHECK_STR(b, "(cosine warmup=100 min_lr=1e-05.f)");
      ex(s[12]->kv[2].value, b, sizeof b);
      CHECK_STR(b, "[0.6.f 0.2.f 0.2.f]");
    }
  }
  done(&r);
  /* other accepted shapes */
  const char *ok[] = {
    "model m\nx = 1", "def f(a,) { return a }", "def f()\n{\n return 1\n}\n",
    "train { }", "train\n{\n epochs = 2,\n batch = 4,\n}\n", "input x : f32[4,]",
    "y = f(\n  a,\n  k = 1,\n)\n", "output o = x\n", "train { epochs = 1 }",
  };
  for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
    r = run(ok[i]);
    CHECK_MSG(r.rc == 0, "%s -> %s", ok[i], r.err);
    done(&r);
  }
  /* without a model statement the name is left alone */
  r = run("x = 1\n");
  CHECK_STR(r.m->name, "t");
  done(&r);
}

static void test_syntax_errors(void) {
  /* a missing ')' is reported at the end of its own line, not at the end of the file */
  CHECK_DIAG("h = dense(x, 3\ny = relu(h)\n",
             "t.nn:1:15: error: expected ')' after arguments, got newline\nh = dense(x, 3\n              ^\n");
  CHECK_FIRST("h = dense(x, 3\ny = relu(h)\nz = f(q\n", "t.nn:1:15: error: expected ')' after arguments, got newline", 2);
  CHECK_DIAG("a = [1, 2\nb = 3\n", "t.nn:1:10: error: expected ']' after list items, got newline\na = [1, 2\n         ^\n");
  CHECK_DIAG("a = (1 + 2\n", "t.nn:1:11: error: expected ')' after expression, got newline\na = (1 + 2\n          ^\n");
  CHECK_DIAG("y = f(a b)\n", "t.nn:1:9: error: expected ')' after arguments, got identifier 'b'\ny = f(a b)\n        ^\n");
  CHECK_DIAG("y = f(a, , b)\n", "t.nn:1:10: error: expected an expression, got ','\ny = f(a, , b)\n         ^\n");
  CHECK_DIAG("y = f(k=1, a)\n", "t.nn:1:12: error: positional argument after named arguments\ny = f(k=1, a)\n           ^\n");
  CHECK_DIAG("y = f(a, k=1, k=2)\n", "t.nn:1:15: error: duplicate named argument 'k'\ny = f(a, k=1, k=2)\n              ^\n");
  CHECK_FIRST("y = a +\n", "t.nn:1:8: error: expected an expression, got newline", 1);
  CHECK_FIRST("y = a + * b\n", "t.nn:1:9: error: expected an expression, got '*'", 1);
  CHECK_FIRST("y = a b\n", "t.nn:1:7: error: expected newline after statement, got identifier 'b'", 1);
  CHECK_FIRST("y = x |> 3\n", "t.nn:1:10: error: expected a function name after '|>', got number 3", 1);
  CHECK_FIRST("y = x |> (f)\n", "t.nn:1:10: error: expected a function name after '|>', got '('", 1);
  CHECK_FIRST("dense(x, 3)\n",
              "t.nn:1:6: error: expected '=' after 'dense' (a call's result must be bound to a name), got '('", 1);
  CHECK_FIRST("x\n", "t.nn:1:2: error: expected '=' after 'x', got newline", 1);
  CHECK_FIRST("3 = x\n", "t.nn:1:1: error: expected a statement, got number 3", 1);
  CHECK_FIRST("return x\n", "t.nn:1:1: error: unexpected 'return' outside a block", 1);
  CHECK_FIRST("}\nx = 1\n", "t.nn:1:1: error: unexpected '}' (no block is open)", 1);
  CHECK_FIRST("model\n", "t.nn:1:6: error: expected a model name after 'model', got newline", 1);
  CHECK_FIRST("model a\nmodel b\n", "t.nn:2:1: error: duplicate 'model' statement (the first is on line 1)", 1);
  CHECK_FIRST("const A 1\n", "t.nn:1:9: error: expected '=' after 'A', got number 1", 1);
  CHECK_FIRST("const A = 1, 2\n", "t.nn:1:14: error: expected a name after ',', got number 2", 1);
  CHECK_FIRST("input x f32[2]\n", "t.nn:1:9: error: expected ':' and a type after 'x', got identifier 'f32'", 1);
  CHECK_FIRST("input x : f64[2]\n",
              "t.nn:1:11: error: unknown dtype 'f64' (expected f32, f16, bf16, i32, i64, i8, u8 or bool)", 1);
  CHECK_FIRST("input x : f32[]\n", "t.nn:1:15: error: expected an expression, got ']'", 1);
  CHECK_FIRST("input x : f32[1,2,3,4,5,6,7,8,9]\n", "t.nn:1:31: error: too many dimensions (at most 8)", 1);
  CHECK_FIRST("input x : f32[2 3]\n", "t.nn:1:17: error: expected ']' after dimensions, got number 3", 1);
  CHECK_FIRST("output\n", "t.nn:1:7: error: expected a name after 'output', got newline", 1);
  CHECK_FIRST("loss cross_entropy(a, b)\n", "t.nn:1:6: error: expected '=' after 'loss', got identifier 'cross_entropy'", 1);
  CHECK_FIRST("x = \"a\" \"b\"\n", "t.nn:1:9: error: expected newline after statement, got string \"b\"", 1);
}

static void test_blocks(void) {
  CHECK_DIAG("def f(x) {\n  return x\n  y = 1\n}\nz = 2\n",
             "t.nn:3:3: error: expected '}' to close the body of 'f' after its return statement, got identifier 'y'\n  y = 1\n  ^\n");
  CHECK_DIAG("def f(x) {\n  y = x\n}\n", "t.nn:3:1: error: def 'f' must end with a return statement\n}\n^\n");
  CHECK_FIRST("def f(x, y, x) { return x }\n", "t.nn:1:13: error: duplicate parameter 'x'", 1);
  CHECK_FIRST("def f(x) {\n  def g(y) { return y }\n  return x\n}\n",
              "t.nn:2:3: error: a def cannot be nested inside another def", 1);
  CHECK_FIRST("def f(x) {\n  output o = x\n  return x\n}\n",
              "t.nn:2:3: error: 'output' statement is not allowed inside a def block", 1);
  CHECK_FIRST("def f(x) {\n  return x\n", "t.nn:1:10: error: the body of 'f' is never closed (missing '}')", 1);
  /* a broken header skips the body, so its statements do not cascade */
  CHECK_FIRST("def f(x):\n  return x\n}\ny = 1\n", "t.nn:1:9: error: expected '{' to start the body of 'f', got ':'", 1);
  CHECK_FIRST("def f(x {\n  return x\n}\n", "t.nn:1:9: error: expected ')' after parameters, got '{'", 1);
  CHECK_FIRST("def (x) { return x }\n", "t.nn:1:5: error: expected a block name after 'def', got '('", 1);
  CHECK_FIRST("def f(1) { return x }\n", "t.nn:1:7: error: expected a parameter name, got number 1", 1);
  /* errors inside a body recover at the next line */
  result r = run("def f(x) {\n  a = f(,)\n  b = x +\n  return x\n}\nc = )\n");
  CHECK_MSG(r.nerrors == 3, "%s", r.err);
  done(&r);
  /* train blocks */
  CHECK_FIRST("train {\n  epochs 3\n}\n", "t.nn:2:10: error: expected '=' after 'epochs', got number 3", 1);
  CHECK_FIRST("train {\n  3 = x\n}\n", "t.nn:2:3: error: expected a setting name in the train block, got number 3", 1);
  CHECK_FIRST("train {\n  epochs = 3\n  epochs = 4\n}\n",
              "t.nn:3:3: error: duplicate setting 'epochs' in the train block", 1);
  CHECK_FIRST("train { epochs = 1 }\ntrain { batch = 2 }\n",
              "t.nn:2:1: error: duplicate 'train' block (the first is on line 1)", 1);
  CHECK_FIRST("train {\n  epochs = 3\n", "t.nn:1:7: error: the train block is never closed (missing '}')", 1);
  CHECK_FIRST("train\n  epochs = 3\n}\nx = 1\n", "t.nn:2:3: error: expected '{' after 'train', got identifier 'epochs'", 1);
  r = run("train {\n  a = f(,)\n  b = 1 2\n  c = 3\n}\n");
  CHECK_MSG(r.nerrors == 2, "%s", r.err);
  CHECK(r.m->nstmts == 1 && r.m->stmts[0]->nkv == 2);
  done(&r);
}

static void test_recovery(void) {
  /* one error per broken statement; good statements in between are kept */
  result r = run("a = (1 +\nb = 2\nc = f(,)\nd = 3\ne = [1 2]\n");
  CHECK_MSG(r.nerrors == 3, "%s", r.err);
  CHECK(r.m->nstmts == 1);
  done(&r);
  /* at most FE_MAX_ERRORS, and the note */
  char src[4096] = "";
  for (int i = 0; i < 40; i++) strcat(src, "x = )\n");
  r = run(src);
  CHECK(r.nerrors == FE_MAX_ERRORS);
  CHECK(strstr(r.err, "note: too many errors; stopping\n") != NULL);
  done(&r);
}

static void test_nesting(void) {
  char *s = malloc(2100000);
  /* 200 levels are fine, 201 are not */
  for (int depth = 200; depth <= 201; depth++) {
    size_t k = 0;
    k += (size_t)sprintf(s, "y = ");
    for (int i = 0; i < depth; i++) s[k++] = '(';
    s[k++] = 'x';
    for (int i = 0; i < depth; i++) s[k++] = ')';
    s[k] = 0;
    result r = run(s);
    if (depth == 200) CHECK_MSG(r.rc == 0, "%s", r.err);
    else CHECK_FIRST(s, "t.nn:1:205: error: expression nested too deeply (limit 200)", 1);
    done(&r);
  }
  /* a million parens, unclosed: one error, no stack overflow */
  size_t k = (size_t)sprintf(s, "y = ");
  memset(s + k, '(', 1000000);
  s[k + 1000000] = 0;
  result r = run(s);
  CHECK(r.nerrors == 1 && strstr(r.err, "nested too deeply"));
  done(&r);
  /* 100k balanced parens on one line */
  k = (size_t)sprintf(s, "y = ");
  memset(s + k, '(', 100000);
  s[k + 100000] = 'x';
  memset(s + k + 100001, ')', 100000);
  s[k + 200001] = 0;
  r = run(s);
  CHECK(r.nerrors == 1 && strstr(r.err, "nested too deeply"));
  done(&r);
  /* 100k parens one per line */
  k = (size_t)sprintf(s, "y = ");
  for (int i = 0; i < 100000; i++) { s[k++] = '('; s[k++] = '\n'; }
  s[k] = 0;
  r = run(s);
  CHECK(r.nerrors == 1 && strstr(r.err, "nested too deeply"));
  done(&r);
  /* lists, calls and unary minus count too */
  const char *unit[] = {"[", "f(", "-"};
  for (int u = 0; u < 3; u++) {
    k = (size_t)sprintf(s, "y = ");
    for (int i = 0; i < 300000; i++) k += (size_t)sprintf(s + k, "%s", unit[u]);
    s[k++] = 'x';
    s[k] = 0;
    r = run(s);
    CHECK_MSG(r.nerrors == 1 && strstr(r.err, "nested too deeply"), "%s", r.err);
    done(&r);
  }
  /* long operator chains make tall trees: rejected, not a later stack overflow */
  k = (size_t)sprintf(s, "y = x");
  for (int i = 0; i < 200000; i++) k += (size_t)sprintf(s + k, " + x");
  r = run(s);
  CHECK_MSG(r.nerrors == 1 && strstr(r.err, "expression too complex"), "%.200s", r.err);
  done(&r);
  k = (size_t)sprintf(s, "y = x");
  for (int i = 0; i < 200000; i++) k += (size_t)sprintf(s + k, " |> relu");
  r = run(s);
  CHECK_MSG(r.nerrors == 1 && strstr(r.err, "expression too complex"), "%.200s", r.err);
  done(&r);
  k = (size_t)sprintf(s, "y = x");
  for (int i = 0; i < 999; i++) k += (size_t)sprintf(s + k, " + x");
  r = run(s);
  CHECK_MSG(r.rc == 0, "%.200s", r.err);
  done(&r);
  /* many named arguments: bounded, so the duplicate check stays cheap */
  k = (size_t)sprintf(s, "y = f(");
  for (int i = 0; i < 100000; i++) k += (size_t)sprintf(s + k, "a%d=1, ", i);
  sprintf(s + k, ")");
  CHECK_FIRST(s, "t.nn:1:7897: error: too many named arguments (limit 1000)", 1);
  k = (size_t)sprintf(s, "def f(");
  for (int i = 0; i < 100000; i++) k += (size_t)sprintf(s + k, "a%d, ", i);
  sprintf(s + k, ") { return a0 }\ny = 1 +\n");
  CHECK_FIRST(s, "t.nn:1:5897: error: too many parameters (limit 1000)", 2);
  free(s);
}

/* xorshift64*, seeded: the same bytes every run */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void) {
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 0x2545F4914F6CDD1Dull;
}

static void test_random(void) {
  size_t n = 1 << 20;
  char *s = malloc(n);
  for (size_t i = 0; i < n; i++) s[i] = (char)(rnd() >> 56);
  result r = run_n(s, n);
  CHECK(r.rc != 0 && r.nerrors >= 1);
  CHECK(r.toks[r.ntok - 1].kind == TK_EOF);
  done(&r);
  /* random soup of valid tokens, many small files */
  static const char *pieces[] = {"x", "f", "(", ")", "[", "]", "{", "}", ",", "=", "|>", "+", "-", "*", "@",
                                 "//", "\n", "1", "2.5", "\"s\"", "def", "return", "train", "input", ":",
                                 "f32", "output", "loss", "const", "model", "#c\n", " ", "\xff", "\""};
  size_t np = sizeof pieces / sizeof *pieces;
  for (int f = 0; f < 2000; f++) {
    size_t k = 0;
    int len = (int)(rnd() % 60);
    for (int i = 0; i < len; i++) k += (size_t)sprintf(s + k, "%s", pieces[rnd() % np]);
    r = run_n(s, k);
    CHECK_MSG(r.rc == 0 ? r.nerrors == 0 : r.nerrors > 0 && r.err[0], "rc %d", r.rc);
    done(&r);
  }
  free(s);
}

int main(void) {
  test_tokens();
  test_continuation();
  test_token_locations();
  test_lex_errors();
  test_bad_bytes();
  test_precedence();
  test_calls_and_pipes();
  test_statements();
  test_syntax_errors();
  test_blocks();
  test_recovery();
  test_nesting();
  test_random();
  return TEST_REPORT();
}
