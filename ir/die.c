/* die.c -- the internal-error tier: a bug in Lathe, not a user error. Prints
 * where it happened and aborts (the library otherwise never prints). */
#include <stdio.h>
#include <stdlib.h>

#include "ir.h"

void ir_die(const char *file, int line, const char *msg) {
  fprintf(stderr, "lathe: internal error at %s:%d: %s\n", file, line, msg ? msg : "(no message)");
  fflush(stderr);
  abort();
}
