/* cg_memo.c -- compiled code shared within a process. Compiling the same
 * model with the same bindings and options again (a second lathe_compile, a
 * training step built twice, the decode program of each lathe_generate)
 * lowers to an equal graph, and equal graphs get the same code. So while one
 * program compiled from a graph is alive, compiling an equal graph takes a
 * reference to that program's code (the JIT with the machine code, the entry
 * point, the buffer plan, the constants) instead of building it again; each
 * program keeps its own arena and run state (cg_jit.c). The last program to
 * go frees the code and unlists it.
 *
 * Equal means what the code is made from, node by node, as CSE compares
 * nodes (passes/cse.c): op, inputs, dtype, shape, attributes (ir_attr_eq),
 * constant payload and fused program (ir_fusion_eq); and the outputs, the
 * loss and the slot counts. Names and source locations are not compared:
 * the code does not depend on them. The table keeps a copy of those fields
 * of each listed graph (the graph itself belongs to its program). */
#include "cg_memo.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cg.h"

struct cg_memo_key {
  uint64_t hash;
  int opt_level, gemm, parts;
  int nnodes, ninputs, nparams, noutputs, loss;
  ir_node *nodes; /* the fields listed above, deep copies in A */
  int *out_node;
  arena A;
};

static pthread_mutex_t memo_lock = PTHREAD_MUTEX_INITIALIZER;
static cg_shared *memo_head;

static uint64_t mix(uint64_t h, uint64_t v) { return (h ^ v) * 0x100000001b3ull + (h >> 29); }

static uint64_t dbits(double d) {
  uint64_t u;
  memcpy(&u, &d, sizeof u);
  return u;
}

static uint64_t graph_hash(const ir_graph *g, int opt_level, int gemm, int parts) {
  uint64_t h = mix(mix(0xcbf29ce484222325ull, (uint64_t)g->nnodes), (uint64_t)((opt_level * 4 + gemm) * 64 + parts));
  for (int i = 0; i < g->nnodes; i++) {
    const ir_node *n = &g->nodes[i];
    h = mix(mix(mix(h, (uint64_t)n->op), (uint64_t)n->dtype), (uint64_t)n->nin);
    for (int k = 0; k < n->nin; k++) h = mix(h, (uint64_t)n->in[k]);
    for (int d = 0; d < n->shape.rank; d++) h = mix(h, (uint64_t)n->shape.d[d]);
    const ir_attr *a = &n->attr;
    h = mix(mix(mix(mix(mix(h, dbits(a->f)), (uint64_t)a->axis), (uint64_t)a->i), (uint64_t)a->k), (uint64_t)a->n);
  }
  for (int j = 0; j < g->noutputs; j++) h = mix(h, (uint64_t)g->outputs[j].node);
  return mix(h, (uint64_t)(int64_t)g->loss);
}

static int key_matches(const cg_memo_key *k, uint64_t hash, const ir_graph *g, int opt_level, int gemm, int parts) {
  if (k->hash != hash || k->opt_level != opt_level || k->gemm != gemm || k->parts != parts || k->nnodes != g->nnodes ||
      k->ninputs != g->ninputs || k->nparams != g->nparams || k->noutputs != g->noutputs || k->loss != g->loss)
    return 0;
  for (int j = 0; j < g->noutputs; j++)
    if (k->out_node[j] != g->outputs[j].node) return 0;
  for (int i = 0; i < g->nnodes; i++)
    if (!ir_node_same(&k->nodes[i], &g->nodes[i])) return 0;
  return 1;
}

/* The listed entry equal to g, or NULL; under the lock. */
static cg_shared *lookup(uint64_t hash, const ir_graph *g, int opt_level, int gemm, int parts) {
  for (cg_shared *s = memo_head; s; s = s->next)
    if (key_matches(s->key, hash, g, opt_level, gemm, parts)) return s;
  return NULL;
}

cg_shared *cg_memo_find(const ir_graph *g, int opt_level, int gemm, int parts) {
  uint64_t h = graph_hash(g, opt_level, gemm, parts);
  pthread_mutex_lock(&memo_lock);
  cg_shared *s = lookup(h, g, opt_level, gemm, parts);
  if (s) s->refs++;
  pthread_mutex_unlock(&memo_lock);
  return s;
}

static void *dup_mem(arena *A, const void *src, size_t n) {
  void *d = ar_alloc(A, n ? n : 1);
  if (n) memcpy(d, src, n);
  return d;
}

static const ir_fusion *copy_fusion(arena *A, const ir_fusion *f) {
  if (!f) return NULL;
  ir_fusion *c = ar_alloc(A, sizeof *c);
  c->nsteps = f->nsteps;
  c->step = dup_mem(A, f->step, sizeof *f->step * (size_t)f->nsteps);
  c->attr = dup_mem(A, f->attr, sizeof *f->attr * (size_t)f->nsteps);
  return c;
}

static cg_memo_key *key_new(const ir_graph *g, int opt_level, int gemm, int parts) {
  cg_memo_key *k = calloc(1, sizeof *k);
  if (!k) return NULL;
  ar_init(&k->A);
  k->hash = graph_hash(g, opt_level, gemm, parts);
  k->opt_level = opt_level, k->gemm = gemm, k->parts = parts;
  k->nnodes = g->nnodes, k->ninputs = g->ninputs, k->nparams = g->nparams;
  k->noutputs = g->noutputs, k->loss = g->loss;
  k->nodes = ar_alloc(&k->A, sizeof *k->nodes * (size_t)(g->nnodes + 1));
  k->out_node = ar_alloc(&k->A, sizeof(int) * (size_t)(g->noutputs + 1));
  for (int j = 0; j < g->noutputs; j++) k->out_node[j] = g->outputs[j].node;
  for (int i = 0; i < g->nnodes; i++) {
    const ir_node *s = &g->nodes[i];
    ir_node *d = &k->nodes[i]; /* zeroed: no name, no location */
    d->op = s->op, d->nin = s->nin, d->dtype = s->dtype, d->shape = s->shape, d->attr = s->attr;
    d->in = dup_mem(&k->A, s->in, sizeof(int) * (size_t)s->nin);
    if (s->data) d->data = dup_mem(&k->A, s->data, sizeof(double) * (size_t)ir_numel(&s->shape));
    d->fusion = copy_fusion(&k->A, s->fusion);
  }
  return k;
}

static void key_free(cg_memo_key *k) {
  if (!k) return;
  ar_free(&k->A);
  free(k);
}

void cg_memo_add(cg_shared *s, const ir_graph *g, int opt_level, int gemm, int parts) {
  cg_memo_key *k = key_new(g, opt_level, gemm, parts);
  if (!k) return;
  pthread_mutex_lock(&memo_lock);
  int listed = lookup(k->hash, g, opt_level, gemm, parts) != NULL;
  if (!listed) {
    s->key = k;
    s->next = memo_head;
    memo_head = s;
  }
  pthread_mutex_unlock(&memo_lock);
  if (listed) key_free(k);
}

int cg_memo_release(cg_shared *s) {
  cg_memo_key *gone = NULL;
  pthread_mutex_lock(&memo_lock);
  int last = --s->refs == 0;
  if (last && s->key) {
    cg_shared **pp = &memo_head;
    while (*pp && *pp != s) pp = &(*pp)->next;
    if (*pp) *pp = s->next;
    gone = s->key;
    s->key = NULL;
  }
  pthread_mutex_unlock(&memo_lock);
  key_free(gone);
  return last;
}

int cg_memo_entries(void) {
  int n = 0;
  pthread_mutex_lock(&memo_lock);
  for (cg_shared *s = memo_head; s; s = s->next) n++;
  pthread_mutex_unlock(&memo_lock);
  return n;
}
