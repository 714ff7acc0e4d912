/* lexer.c -- .nn source text -> tokens.
 *
 * Lexical rules (the contract is /work/shared/spec/language.md):
 *  - UTF-8 text; `#` starts a comment to the end of the line; spaces, tabs and
 *    carriage returns separate tokens; a byte order mark at the start is skipped.
 *  - identifiers [A-Za-z_][A-Za-z0-9_]*; the keywords below are reserved.
 *  - numbers: `42`, `0.5`, `.5`, `5.`, `1e-3`, `2.5E+4` (as Python writes them).
 *    num_is_int is set when written with neither '.' nor an exponent; such a
 *    literal must fit int64 ("integer literal too large"). A number running
 *    into letters or a second '.' (`3x`, `1.2.3`) is malformed.
 *  - strings "..." with the escapes \" \\ \n \t; no raw newlines, NUL bytes or
 *    invalid UTF-8 inside.
 *  - operators + - * / // % @ |> = : , ( ) [ ] { }.
 *  - newlines end statements, except inside ( ) or [ ] (braces hold
 *    statements, so they do not) and after a line ending in `(`, `[`, `,` or a
 *    binary operator (including `|>` and `=`). Repeated and leading newlines
 *    collapse; the stream ends with a newline (when it has any token) and EOF.
 *  - columns count code points, 1-based, as diag.c's caret line does.
 *
 * Recovery: a bad character (or a run of them) is reported and skipped; only
 * the first lexical error of a statement (up to its NEWLINE) is reported.
 * Because a lexical error usually desynchronises the parser, the NEWLINE (or
 * EOF) token that ends a line holding a lexical error carries num = 1; the
 * parser drops its own errors in that statement so one mistake gives one
 * message.
 *
 * Unclosed brackets: inside ( ) newlines are ignored, so a missing ')' would
 * swallow the rest of the file and be reported far from the mistake. When a
 * bracket is still open at the end of the file, the file is lexed again with
 * the first newline that the bracket swallowed made significant (and the
 * bracket depth reset there); the parser then says "expected ')' ..., got
 * newline" on the line of the mistake. Diagnostics of the abandoned pass are
 * rolled back. At most LX_MAXPASS passes, so the cost stays linear.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ast.h"

#define LX_MAXPASS 16
#define LX_NONE ((size_t)-1)

typedef struct {
  arena *A;
  fe_diag *d;
  const char *path;
  const char *s;
  size_t n, i;
  int line, col;
  int end_line, end_col;       /* just after the last token: NEWLINE's location */
  fe_token *toks;
  int ntok, cap;
  int depth;                   /* open ( and [ */
  size_t first_swallowed;      /* first newline ignored only because depth > 0,
                                  since depth last went 0 -> 1 */
  const size_t *forced;        /* offsets of newlines kept despite depth */
  int nforced, fi;
  int line_err;                /* a lexical error since the last NEWLINE */
  int full;                    /* too many tokens: stop */
} lexer;

static const char *const tok_names[] = {
  [TK_EOF] = "end of file", [TK_NEWLINE] = "newline", [TK_IDENT] = "identifier",
  [TK_NUMBER] = "number", [TK_STRING] = "string",
  [TK_LPAREN] = "'('", [TK_RPAREN] = "')'", [TK_LBRACKET] = "'['", [TK_RBRACKET] = "']'",
  [TK_LBRACE] = "'{'", [TK_RBRACE] = "'}'", [TK_COMMA] = "','", [TK_COLON] = "':'",
  [TK_ASSIGN] = "'='", [TK_PLUS] = "'+'", [TK_MINUS] = "'-'", [TK_STAR] = "'*'",
  [TK_SLASH] = "'/'", [TK_SLASHSLASH] = "'//'", [TK_PERCENT] = "'%'", [TK_AT] = "'@'",
  [TK_PIPE] = "'|>'", [TK_MODEL] = "'model'", [TK_CONST] = "'const'", [TK_INPUT] = "'input'",
  [TK_TARGET] = "'target'", [TK_OUTPUT] = "'output'", [TK_LOSS] = "'loss'", [TK_DEF] = "'def'",
  [TK_RETURN] = "'return'", [TK_TRAIN] = "'train'", [TK_TRUE] = "'true'", [TK_FALSE] = "'false'",
};

const char *fe_tok_name(fe_tokkind k) {
  if ((unsigned)k < sizeof tok_names / sizeof *tok_names && tok_names[k]) return tok_names[k];
  return "token";
}

static const struct { const char *word; fe_tokkind kind; } keywords[] = {
  {"model", TK_MODEL}, {"const", TK_CONST}, {"input", TK_INPUT}, {"target", TK_TARGET},
  {"output", TK_OUTPUT}, {"loss", TK_LOSS}, {"def", TK_DEF}, {"return", TK_RETURN},
  {"train", TK_TRAIN}, {"true", TK_TRUE}, {"false", TK_FALSE},
};

/* Longest first, so "//" wins over "/". */
static const struct { const char *text; fe_tokkind kind; } operators[] = {
  {"|>", TK_PIPE}, {"//", TK_SLASHSLASH}, {"+", TK_PLUS}, {"-", TK_MINUS}, {"*", TK_STAR},
  {"/", TK_SLASH}, {"%", TK_PERCENT}, {"@", TK_AT}, {"=", TK_ASSIGN}, {":", TK_COLON},
  {",", TK_COMMA}, {"(", TK_LPAREN}, {")", TK_RPAREN}, {"[", TK_LBRACKET},
  {"]", TK_RBRACKET}, {"{", TK_LBRACE}, {"}", TK_RBRACE},
};

/* A line ending in one of these continues on the next line. */
static int continues(fe_tokkind k) {
  switch (k) {
  case TK_LPAREN: case TK_LBRACKET: case TK_COMMA: case TK_ASSIGN: case TK_PLUS:
  case TK_MINUS: case TK_STAR: case TK_SLASH: case TK_SLASHSLASH: case TK_PERCENT:
  case TK_AT: case TK_PIPE:
    return 1;
  default:
    return 0;
  }
}

/* Length of the valid UTF-8 sequence at s (1..4), 0 when malformed (bad lead,
 * truncated, overlong, surrogate or above U+10FFFF). *cp receives the code
 * point. */
static int utf8_seq(const unsigned char *s, size_t n, uint32_t *cp) {
  unsigned c = s[0];
  if (c < 0x80) { *cp = c; return 1; }
  int len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 0;
  if (!len || c > 0xF4 || (size_t)len > n) return 0;
  uint32_t v = c & (0x7F >> len);
  for (int k = 1; k < len; k++) {
    if ((s[k] & 0xC0) != 0x80) return 0;
    v = v << 6 | (s[k] & 0x3F);
  }
  static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
  if (v < min[len] || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
  *cp = v;
  return len;
}

static ir_loc here(const lexer *L) { return (ir_loc){L->path, L->line, L->col}; }

/* Move over k bytes that hold no newline; a column per code point start. */
static void adv(lexer *L, size_t k) {
  for (size_t j = 0; j < k && L->i < L->n; j++, L->i++)
    if (((unsigned char)L->s[L->i] & 0xC0) != 0x80) L->col++;
}

static void lerror(lexer *L, ir_loc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void lerror(lexer *L, ir_loc loc, const char *fmt, ...) {
  if (L->line_err) return; /* one lexical error per statement: no cascades */
  va_list ap;
  va_start(ap, fmt);
  fe_verror(L->d, loc, fmt, ap);
  va_end(ap);
  L->line_err = 1;
}

static fe_token *push(lexer *L, fe_tokkind kind, ir_loc loc) {
  if (L->ntok == L->cap) {
    if (L->cap >= INT_MAX / 4) {
      if (!L->full) lerror(L, loc, "file too large (too many tokens)");
      L->full = 1;
      return NULL;
    }
    int nc = L->cap ? L->cap * 2 : 256;
    fe_token *t = ar_alloc(L->A, (size_t)nc * sizeof *t);
    if (L->ntok) memcpy(t, L->toks, (size_t)L->ntok * sizeof *t);
    L->toks = t;
    L->cap = nc;
  }
  fe_token *t = &L->toks[L->ntok++];
  memset(t, 0, sizeof *t);
  t->kind = kind;
  t->loc = loc;
  return t;
}

/* After a token: remember where it ended, for the NEWLINE that follows. */
static void ended(lexer *L) {
  L->end_line = L->line;
  L->end_col = L->col;
}

static int last_kind(const lexer *L) { return L->ntok ? (int)L->toks[L->ntok - 1].kind : -1; }

static void emit_newline(lexer *L) {
  fe_token *t = push(L, TK_NEWLINE, (ir_loc){L->path, L->end_line, L->end_col});
  if (t) t->num = L->line_err;
  L->line_err = 0;
}

/* A '\n' outside strings and comments at offset L->i. */
static void lex_newline(lexer *L) {
  int k = last_kind(L);
  while (L->fi < L->nforced && L->forced[L->fi] < L->i) L->fi++;
  if (k < 0 || k == TK_NEWLINE || continues((fe_tokkind)k)) {
    /* leading, repeated or continued: nothing */
  } else if (L->depth > 0 && !(L->fi < L->nforced && L->forced[L->fi] == L->i)) {
    if (L->first_swallowed == LX_NONE) L->first_swallowed = L->i;
  } else {
    L->depth = 0;
    emit_newline(L);
  }
  L->i++;
  L->line++;
  L->col = 1;
}

static void lex_ident(lexer *L) {
  ir_loc loc = here(L);
  size_t b = L->i;
  while (L->i < L->n && (isalnum((unsigned char)L->s[L->i]) || L->s[L->i] == '_')) adv(L, 1);
  size_t len = L->i - b;
  fe_tokkind kind = TK_IDENT;
  for (size_t k = 0; k < sizeof keywords / sizeof *keywords; k++)
    if (strlen(keywords[k].word) == len && !memcmp(keywords[k].word, L->s + b, len)) kind = keywords[k].kind;
  fe_token *t = push(L, kind, loc);
  if (t) t->text = ar_strndup(L->A, L->s + b, len);
  ended(L);
}

static int is_digit_at(const lexer *L, size_t i) { return i < L->n && isdigit((unsigned char)L->s[i]); }

/* number = digits ("." digits?)? exp? | "." digits exp?   exp = [eE] [+-]? digits */
static void lex_number(lexer *L) {
  ir_loc loc = here(L);
  size_t b = L->i;
  int is_int = 1, bad = 0;
  while (is_digit_at(L, L->i)) adv(L, 1);
  if (L->i < L->n && L->s[L->i] == '.') {
    is_int = 0;
    adv(L, 1);
    while (is_digit_at(L, L->i)) adv(L, 1);
  }
  if (L->i < L->n && (L->s[L->i] == 'e' || L->s[L->i] == 'E')) {
    size_t j = L->i + 1;
    if (j < L->n && (L->s[j] == '+' || L->s[j] == '-')) j++;
    if (is_digit_at(L, j)) {
      is_int = 0;
      adv(L, j - L->i);
      while (is_digit_at(L, L->i)) adv(L, 1);
    }
  }
  /* `3x`, `1.2.3`, `1e`: swallow the rest of the word so one message covers it */
  while (L->i < L->n && (isalnum((unsigned char)L->s[L->i]) || L->s[L->i] == '_' || L->s[L->i] == '.')) {
    bad = 1;
    adv(L, 1);
  }
  size_t len = L->i - b;
  fe_token *t = push(L, TK_NUMBER, loc);
  ended(L);
  if (!t) return;
  t->num_is_int = is_int;
  if (bad) {
    lerror(L, loc, "malformed number '%.*s'", len > 40 ? 40 : (int)len, L->s + b);
    return;
  }
  if (is_int) {
    uint64_t v = 0;
    for (size_t k = b; k < L->i; k++) {
      unsigned dgt = (unsigned)(L->s[k] - '0');
      if (v > ((uint64_t)INT64_MAX - dgt) / 10) {
        lerror(L, loc, "integer literal too large");
        return;
      }
      v = v * 10 + dgt;
    }
    t->num = (double)v;
    return;
  }
  char *buf = ar_strndup(L->A, L->s + b, len);
  errno = 0;
  double v = strtod(buf, NULL);
  if (errno == ERANGE && (v > 1.0 || v < -1.0))
    lerror(L, loc, "number literal too large");
  else
    t->num = v;
}

/* string = '"' (char | escape)* '"' */
static void lex_string(lexer *L) {
  ir_loc loc = here(L);
  size_t e = L->i + 1;
  while (e < L->n && L->s[e] != '"' && L->s[e] != '\n') e += L->s[e] == '\\' && e + 1 < L->n && L->s[e + 1] != '\n' ? 2 : 1;
  char *out = ar_alloc(L->A, e - L->i + 1), *o = out;
  int reported = 0;
  adv(L, 1);
  while (L->i < e) {
    unsigned char c = (unsigned char)L->s[L->i];
    ir_loc at = here(L);
    if (c == '\\') {
      char x = L->i + 1 < e ? L->s[L->i + 1] : 0;
      const char *from = "\"\\nt", *to = "\"\\\n\t";
      const char *f = x ? strchr(from, x) : NULL;
      if (f) *o++ = to[f - from];
      else if (!reported++) {
        if (x >= 0x21 && x < 0x7f) lerror(L, at, "unknown escape sequence '\\%c' in string", x);
        else lerror(L, at, "unknown escape sequence in string");
      }
      adv(L, x ? 2 : 1);
      continue;
    }
    uint32_t cp;
    int k = utf8_seq((const unsigned char *)L->s + L->i, e - L->i, &cp);
    if (!k || c == 0 || (c < 0x20 && c != '\t') || c == 0x7f) {
      if (!reported++) {
        if (!k) lerror(L, at, "invalid UTF-8 in string (byte 0x%02x)", c);
        else if (c == 0) lerror(L, at, "NUL byte in string");
        else lerror(L, at, "control character (byte 0x%02x) in string", c);
      }
      adv(L, 1);
      continue;
    }
    memcpy(o, L->s + L->i, (size_t)k);
    o += k;
    adv(L, (size_t)k);
  }
  *o = 0;
  fe_token *t = push(L, TK_STRING, loc);
  if (t) t->text = out;
  if (e < L->n && L->s[e] == '"') {
    adv(L, 1);
  } else if (!reported) {
    lerror(L, loc, "unterminated string");
  }
  ended(L);
}

/* Bytes that can start nothing: report the run once and skip it. */
static int starts_token(const lexer *L, size_t i) {
  unsigned char c = (unsigned char)L->s[i];
  if (isalnum(c) || c == '_' || c == '"' || c == '#' || c == ' ' || c == '\t' || c == '\r' || c == '\n')
    return 1;
  if (c == '.') return is_digit_at(L, i + 1);
  if (c == '|') return i + 1 < L->n && L->s[i + 1] == '>';
  return c < 0x80 && strchr("+-*/%@=:,()[]{}", c) && c;
}

static void lex_bad(lexer *L) {
  ir_loc loc = here(L);
  const unsigned char *s = (const unsigned char *)L->s + L->i;
  unsigned c = s[0];
  uint32_t cp;
  int k = utf8_seq(s, L->n - L->i, &cp);
  if (c == '\'')
    lerror(L, loc, "unexpected character \"'\" (strings use double quotes)");
  else if (c >= 0x21 && c < 0x7f)
    lerror(L, loc, "unexpected character '%c'", c);
  else if (c < 0x80)
    lerror(L, loc, "unexpected character (byte 0x%02x)", c);
  else if (!k)
    lerror(L, loc, "invalid UTF-8 (byte 0x%02x)", c);
  else if (cp >= 0xA0 && !(cp >= 0x2000 && cp <= 0x206F) && cp != 0xFEFF && cp < 0xFFF0)
    /* echoed unless it is a layout or direction control that would garble the line */
    lerror(L, loc, "unexpected character '%.*s' (U+%04X)", k, (const char *)s, (unsigned)cp);
  else
    lerror(L, loc, "unexpected character U+%04X", (unsigned)cp);
  adv(L, k ? (size_t)k : 1);
  while (L->i < L->n && !starts_token(L, L->i)) adv(L, 1);
}

static int lex_operator(lexer *L) {
  for (size_t k = 0; k < sizeof operators / sizeof *operators; k++) {
    size_t len = strlen(operators[k].text);
    if (L->i + len > L->n || memcmp(L->s + L->i, operators[k].text, len)) continue;
    fe_tokkind kind = operators[k].kind;
    push(L, kind, here(L));
    adv(L, len);
    ended(L);
    if (kind == TK_LPAREN || kind == TK_LBRACKET) {
      if (L->depth++ == 0) L->first_swallowed = LX_NONE;
    } else if ((kind == TK_RPAREN || kind == TK_RBRACKET) && L->depth > 0) {
      L->depth--;
    }
    return 1;
  }
  return 0;
}

static void lex_pass(lexer *L) {
  if (L->n >= 3 && !memcmp(L->s, "\xEF\xBB\xBF", 3)) adv(L, 3);
  while (L->i < L->n && !L->full) {
    unsigned char c = (unsigned char)L->s[L->i];
    if (c == '\n') lex_newline(L);
    else if (c == ' ' || c == '\t' || c == '\r') adv(L, 1);
    else if (c == '#') { while (L->i < L->n && L->s[L->i] != '\n') adv(L, 1); }
    else if (isdigit(c) || (c == '.' && is_digit_at(L, L->i + 1))) lex_number(L);
    else if (isalpha(c) || c == '_') lex_ident(L);
    else if (c == '"') lex_string(L);
    else if (!lex_operator(L)) lex_bad(L);
  }
  int k = last_kind(L);
  if (k >= 0 && k != TK_NEWLINE) emit_newline(L);
  fe_token *t = push(L, TK_EOF, here(L));
  if (t) t->num = L->line_err;
  if (!t) { /* full: overwrite the last token so the stream still ends with EOF */
    L->toks[L->ntok - 1] = (fe_token){.kind = TK_EOF, .num = 1, .loc = here(L)};
  }
}

fe_token *fe_lex(arena *A, fe_diag *d, const char *path, const char *src, size_t len, int *ntok) {
  size_t forced[LX_MAXPASS];
  int nforced = 0;
  size_t blen = d->blen;
  int nerrors = d->nerrors;
  lexer L;
  memset(&L, 0, sizeof L);
  for (int pass = 0;; pass++) {
    fe_token *toks = L.toks; /* reuse the array of an abandoned pass */
    int cap = L.cap;
    memset(&L, 0, sizeof L);
    L.toks = toks; L.cap = cap;
    L.A = A; L.d = d; L.path = path; L.s = src; L.n = src ? len : 0;
    L.line = L.col = L.end_line = L.end_col = 1;
    L.first_swallowed = LX_NONE;
    L.forced = forced; L.nforced = nforced;
    lex_pass(&L);
    if (L.depth == 0 || L.first_swallowed == LX_NONE || pass + 1 >= LX_MAXPASS || L.full) break;
    forced[nforced++] = L.first_swallowed;
    d->blen = blen; /* forget this pass's diagnostics */
    if (d->buf) d->buf[blen] = 0;
    d->nerrors = nerrors;
  }
  *ntok = L.ntok;
  return L.toks;
}
