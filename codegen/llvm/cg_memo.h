/* cg_memo.h -- the process-wide table of compiled code (cg_memo.c), internal
 * to codegen/llvm. cg_jit.c keeps a cg_shared as the first member of its
 * compiled-code object; the table counts the programs that use it. */
#ifndef LATHE_CG_MEMO_H
#define LATHE_CG_MEMO_H

#include "ir.h"

typedef struct cg_memo_key cg_memo_key;

typedef struct cg_shared {
  int refs;                /* programs running this code (changed under the table's lock) */
  cg_memo_key *key;        /* the graph it was compiled from, when listed; NULL: private */
  struct cg_shared *next;  /* the table's list */
} cg_shared;

/* Listed code compiled from a graph equal to g with these settings, with
 * one more reference; NULL when there is none. */
cg_shared *cg_memo_find(const ir_graph *g, int opt_level, int gemm, int parts);

/* List s (one reference: the program just compiled from g) so later
 * compiles of an equal graph find it. Best effort: when an equal graph was
 * listed meanwhile (another thread), s stays private. */
void cg_memo_add(cg_shared *s, const ir_graph *g, int opt_level, int gemm, int parts);

/* Drop one reference. 1 when it was the last: s is no longer listed and the
 * caller frees the code. */
int cg_memo_release(cg_shared *s);

#endif
