/* data_text.c -- character-level language-model data: a text file becomes
 * tokens (the spec's vocabularies of 96 printable characters or 256 bytes),
 * cut into disjoint windows of T tokens, each with its next-token targets.
 *
 * Stride T (not 1) keeps an epoch at one pass over the text and makes the
 * windows independent examples, so a random train/val/test split never puts
 * the same tokens into two splits. */
#include <stdlib.h>
#include <string.h>

#include "data.h"

int rt_text_token(int ch, int vocab) {
  if (vocab == 256) return ch >= 0 && ch < 256 ? ch : -1;
  if (ch == '\n') return 0;
  if (ch == '\t') ch = ' ';
  return ch >= ' ' && ch <= '~' ? ch - ' ' + 1 : -1;
}

int rt_text_char(int token, int vocab) {
  if (vocab == 256) return token >= 0 && token < 256 ? token : -1;
  if (token == 0) return '\n';
  return token >= 1 && token <= 95 ? token - 1 + ' ' : -1;
}

/* The tokens of buf, in place (one byte each; vocab <= 256). Returns the count. */
static size_t tokenise(unsigned char *buf, size_t len, int vocab) {
  size_t n = 0;
  for (size_t i = 0; i < len; i++) {
    int t = rt_text_token(buf[i], vocab);
    if (t >= 0) buf[n++] = (unsigned char)t;
  }
  return n;
}

static int make_windows(rt_dataset *ds, const unsigned char *tok, int64_t ntok, int64_t T) {
  int64_t n = (ntok - 1) / T;
  for (int k = 0; k < 2; k++) {
    rt_field *f = &ds->f[k];
    f->role = k ? RT_FIELD_TARGET : RT_FIELD_INPUT;
    f->dtype = LATHE_I32;
    f->width = T;
    f->rank = 1;
    f->shape[0] = T;
    f->data = malloc((size_t)(n * T) * sizeof(int32_t));
    if (!f->data) return -1;
    ds->nfields++;
    int32_t *d = f->data;
    for (int64_t i = 0; i < n * T; i++) d[i] = tok[i + k];
  }
  ds->n = n;
  return 0;
}

int rt_data_load_text(const char *path, int vocab, int64_t T, rt_dataset *out, char *msg, size_t msgn) {
  memset(out, 0, sizeof *out);
  if (vocab != 96 && vocab != 256) {
    snprintf(msg, msgn, "%s: text vocabulary must be 96 (characters) or 256 (bytes), not %d", path, vocab);
    return -1;
  }
  if (T < 1 || T > ((int64_t)1 << 30)) {
    snprintf(msg, msgn, "%s: context length %lld out of range", path, (long long)T);
    return -1;
  }
  char *buf;
  size_t len;
  if (rt_read_maybe_gz(path, &buf, &len, msg, msgn) < 0) return -1;
  snprintf(out->source, sizeof out->source, "%s", path);
  int64_t ntok = (int64_t)tokenise((unsigned char *)buf, len, vocab);
  int rc = -1;
  if (ntok < T + 1) {
    snprintf(msg, msgn, "%s: %lld tokens, need at least %lld for one window of %lld and its targets", path,
             (long long)ntok, (long long)T + 1, (long long)T);
  } else if (make_windows(out, (const unsigned char *)buf, ntok, T) < 0) {
    snprintf(msg, msgn, "%s: out of memory", path);
  } else {
    out->vocab = vocab;
    out->nclasses = vocab;
    rc = 0;
  }
  free(buf);
  if (rc < 0) rt_data_free(out);
  return rc;
}
