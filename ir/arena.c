/* arena.c -- bump allocation for compile-lifetime objects. Blocks are chained
 * newest first; ar_free releases them all at once. Memory exhaustion is an
 * internal-tier failure (ir_die): a compiler that cannot get a few MiB cannot
 * report anything useful either. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir.h"

#define AR_ALIGN 16
#define AR_BLOCK 65536 /* default block payload; larger requests get their own */

struct ar_block {
  ar_block *next;
  size_t size, used;
  _Alignas(AR_ALIGN) unsigned char data[];
};

void ar_init(arena *a) {
  a->head = NULL;
  a->used_total = 0;
}

void ar_free(arena *a) {
  ar_block *b = a->head;
  while (b) {
    ar_block *next = b->next;
    free(b);
    b = next;
  }
  a->head = NULL;
  a->used_total = 0;
}

static ar_block *ar_new_block(size_t payload) {
  if (payload > SIZE_MAX - sizeof(ar_block)) IR_UNREACHABLE("arena request too large");
  ar_block *b = malloc(sizeof(ar_block) + payload);
  if (!b) IR_UNREACHABLE("out of memory");
  b->next = NULL;
  b->size = payload;
  b->used = 0;
  return b;
}

void *ar_alloc(arena *a, size_t n) {
  if (n == 0) n = 1;
  if (n > SIZE_MAX - AR_ALIGN) IR_UNREACHABLE("arena request too large");
  size_t need = (n + AR_ALIGN - 1) & ~(size_t)(AR_ALIGN - 1);
  ar_block *b = a->head;
  if (!b || b->size - b->used < need) {
    /* A big request gets a block of its own, linked behind the current one so
     * the current block's free tail stays usable. */
    if (need > AR_BLOCK / 4 && b) {
      ar_block *big = ar_new_block(need);
      big->next = b->next;
      b->next = big;
      big->used = need;
      a->used_total += need;
      memset(big->data, 0, need);
      return big->data;
    }
    b = ar_new_block(need > AR_BLOCK ? need : AR_BLOCK);
    b->next = a->head;
    a->head = b;
  }
  void *p = b->data + b->used;
  b->used += need;
  a->used_total += need;
  memset(p, 0, need);
  return p;
}

char *ar_strndup(arena *a, const char *s, size_t n) {
  char *p = ar_alloc(a, n + 1);
  memcpy(p, s, n);
  p[n] = '\0';
  return p;
}

char *ar_strdup(arena *a, const char *s) {
  if (!s) return NULL;
  return ar_strndup(a, s, strlen(s));
}

char *ar_printf(arena *a, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int len = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (len < 0) IR_UNREACHABLE("ar_printf: bad format");
  char *p = ar_alloc(a, (size_t)len + 1);
  va_start(ap, fmt);
  vsnprintf(p, (size_t)len + 1, fmt, ap);
  va_end(ap);
  return p;
}
