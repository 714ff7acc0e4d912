/* cse.c -- common-subexpression elimination: two nodes with the same op,
 * the same inputs (after earlier merges), the same attributes, dtype and
 * shape compute the same value, so the later one reads the earlier. Random
 * ops (IR_OPF_RANDOM in ops.def) are never merged, nor are INPUT and PARAM
 * leaves (each is its own slot of the interface). Constants merge when
 * their values are bit-identical. One sweep in id order suffices: a node's
 * inputs are merged before the node is looked up. */
#include <string.h>

#include "passes/passes.h"

static uint64_t mix(uint64_t h, uint64_t v) {
  h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
  return h;
}

static uint64_t dbits(double d) {
  uint64_t u;
  memcpy(&u, &d, sizeof u);
  return u;
}

static uint64_t node_hash(const ir_node *n) {
  uint64_t h = mix((uint64_t)n->op, (uint64_t)n->dtype);
  for (int k = 0; k < n->nin; k++) h = mix(h, (uint64_t)n->in[k]);
  for (int d = 0; d < n->shape.rank; d++) h = mix(h, (uint64_t)n->shape.d[d]);
  h = mix(h, dbits(n->attr.f));
  /* unsigned before shifting: attributes may be negative (ignore_index=-100) */
  h = mix(h, (uint64_t)n->attr.axis ^ ((uint64_t)n->attr.i << 8) ^ ((uint64_t)n->attr.k << 16) ^
                 ((uint64_t)n->attr.n << 24));
  if (n->data && ir_numel(&n->shape) > 0) h = mix(h, dbits(n->data[0]));
  return h;
}

static int mergeable(const ir_node *n) {
  return n->op != IR_INPUT && n->op != IR_PARAM && !(ir_op_flags[n->op] & (IR_OPF_RANDOM | IR_OPF_COMM));
}

int ps_cse(ir_graph *g, char *msg, size_t msgn) {
  int n = g->nnodes, merged = 0;
  size_t cap = 16;
  while (cap < (size_t)n * 2) cap *= 2;
  int *slot = ar_alloc(g->A, sizeof(int) * cap); /* node id + 1; 0 = empty */
  int *repl = rw_identity(g);
  for (int i = 0; i < n; i++) {
    ir_node *nd = &g->nodes[i];
    for (int k = 0; k < nd->nin; k++) nd->in[k] = rw_resolve(repl, nd->in[k]);
    if (!mergeable(nd)) continue;
    size_t s = (size_t)node_hash(nd) & (cap - 1);
    for (; slot[s]; s = (s + 1) & (cap - 1))
      if (ir_node_same(&g->nodes[slot[s] - 1], nd)) break;
    if (slot[s]) repl[i] = slot[s] - 1, merged++;
    else slot[s] = i + 1;
  }
  if (!merged) return 0;
  return rw_rebuild(g, repl, msg, msgn) ? -1 : merged;
}
