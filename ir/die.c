/* die.c -- the two error tiers. ir_die: a bug in Lathe, not a user error;
 * prints where it happened and aborts (the library otherwise never prints).
 * ir_fail: a user error, returned as a message. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "ir.h"

void ir_die(const char *file, int line, const char *msg) {
  fprintf(stderr, "lathe: internal error at %s:%d: %s\n", file, line, msg ? msg : "(no message)");
  fflush(stderr);
  abort();
}

int ir_fail(char *msg, size_t n, const char *fmt, ...) {
  if (msg && n) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, n, fmt, ap);
    va_end(ap);
  }
  return -1;
}
