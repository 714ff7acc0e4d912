/* diag.c -- diagnostics: "FILE:LINE:COL: error: MSG", the source line and a
 * caret under the column. Collected into one buffer so the library can return
 * them as a value; the CLI prints them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ast.h"

void fe_diag_init(fe_diag *d, const char *path, const char *src, size_t len) {
  memset(d, 0, sizeof *d);
  d->path = path;
  d->src = src;
  d->len = len;
}

static void put(fe_diag *d, const char *s, size_t n) {
  if (d->blen + n + 1 > d->bcap) {
    size_t cap = d->bcap ? d->bcap : 256;
    while (cap < d->blen + n + 1) cap *= 2;
    char *b = realloc(d->buf, cap);
    if (!b) return; /* out of memory: drop the text, the error count stays */
    d->buf = b;
    d->bcap = cap;
  }
  memcpy(d->buf + d->blen, s, n);
  d->blen += n;
  d->buf[d->blen] = 0;
}

static void puts_(fe_diag *d, const char *s) { put(d, s, strlen(s)); }

/* The start of 1-based line `line`, or NULL. */
static const char *line_start(const fe_diag *d, int line, size_t *n) {
  if (!d->src || line < 1) return NULL;
  const char *p = d->src, *end = d->src + d->len;
  for (int l = 1; l < line; l++) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    if (!nl) return NULL;
    p = nl + 1;
  }
  const char *q = p;
  while (q < end && *q != '\n' && *q != '\r') q++;
  *n = (size_t)(q - p);
  return p;
}

/* Echo the source line with control bytes and NULs shown as '?' so a binary
 * file cannot garble the terminal, then a caret under column `col` (counted
 * in code points; tabs are kept so the caret lines up). */
static void show_line(fe_diag *d, int line, int col) {
  size_t n = 0;
  const char *s = line_start(d, line, &n);
  if (!s) return;
  if (n > 400) n = 400; /* a caret past here would be useless anyway */
  char *echo = malloc(n + 2), *caret = malloc(n + 2);
  if (!echo || !caret) { free(echo); free(caret); return; }
  size_t ci = 0;
  int c = 1;
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    echo[i] = (ch < 32 && ch != '\t') || ch == 127 ? '?' : (char)ch;
    int starts_cp = (ch & 0xC0) != 0x80;
    if (starts_cp && c < col) { caret[ci++] = ch == '\t' ? '\t' : ' '; }
    if (starts_cp) c++;
  }
  echo[n] = '\n';
  put(d, echo, n + 1);
  caret[ci++] = '^';
  caret[ci++] = '\n';
  put(d, caret, ci);
  free(echo);
  free(caret);
}

void fe_verror(fe_diag *d, ir_loc loc, const char *fmt, va_list ap) {
  d->nerrors++;
  if (d->nerrors > FE_MAX_ERRORS) return;
  char msg[1024], head[1200];
  vsnprintf(msg, sizeof msg, fmt, ap);
  const char *file = loc.file ? loc.file : d->path;
  if (loc.line > 0)
    snprintf(head, sizeof head, "%s:%d:%d: error: %s\n", file, loc.line, loc.col, msg);
  else
    snprintf(head, sizeof head, "%s: error: %s\n", file, msg);
  puts_(d, head);
  if (loc.line > 0) show_line(d, loc.line, loc.col);
  if (d->nerrors == FE_MAX_ERRORS) puts_(d, "note: too many errors; stopping\n");
}

void fe_error(fe_diag *d, ir_loc loc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fe_verror(d, loc, fmt, ap);
  va_end(ap);
}

char *fe_diag_take(fe_diag *d) {
  char *b = d->buf;
  if (!b) b = strdup("error: unknown error\n");
  d->buf = NULL;
  d->blen = d->bcap = 0;
  return b;
}

void fe_diag_free(fe_diag *d) {
  free(d->buf);
  d->buf = NULL;
}
