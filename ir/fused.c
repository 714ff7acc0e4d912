/* fused.c -- what every reader of a fused elementwise node (IR_FUSED, made
 * by passes/fuse.c) agrees on: which ops a program may hold, the shape rule
 * that checks a program, the broadcast forms of its inputs, equality (of
 * attributes, programs and whole nodes: CSE and the program cache compare
 * with it) and the text form (for the listing). */
#include <stdio.h>
#include <string.h>

#include "ir.h"

int ir_fusable_op(int op) {
  static const unsigned char ok[IR_NOPS] = {
    [IR_RELU] = 1, [IR_LEAKY_RELU] = 1, [IR_SIGMOID] = 1, [IR_TANH] = 1, [IR_GELU] = 1, [IR_SWISH] = 1,
    [IR_EXP] = 1,  [IR_SQRT] = 1,    [IR_ABS] = 1,  [IR_NEG] = 1,
    [IR_ADD] = 1,  [IR_SUB] = 1,        [IR_MUL] = 1,     [IR_DIV] = 1,  [IR_MINIMUM] = 1,
  };
  return op >= 0 && op < IR_NOPS && ok[op];
}

/* unary_grad (dy * f'(x)) joins a program when f is one of the fusable
 * unary maps: its derivative is then vector code too (no powf, no log). */
int ir_fusable_step(int op, const ir_attr *a) {
  if (op == IR_UNARY_GRAD) return a->i >= 0 && a->i < IR_NOPS && ir_fusable_op((int)a->i) && ir_ops[a->i].arity == 1;
  return ir_fusable_op(op);
}

ir_bcast_kind ir_bcast_kind_of(const ir_shape *out, const ir_shape *in, int64_t *m) {
  int64_t no = ir_numel(out), ni = ir_numel(in);
  *m = 1;
  if (ir_shape_eq(out, in)) return IR_BC_FULL;
  if (ni == 1) return IR_BC_SCALAR;
  if (in->rank > out->rank || ni <= 0 || no % ni) return IR_BC_OTHER;
  /* in, right-aligned against out, drops its leading 1s */
  int lead = 0;
  while (lead < in->rank && in->d[lead] == 1) lead++;
  int suffix = 1;
  for (int j = lead; j < in->rank; j++)
    if (in->d[j] != out->d[out->rank - in->rank + j]) suffix = 0;
  if (suffix) {
    *m = ni;
    return IR_BC_SUFFIX;
  }
  /* leading dims equal to out's, then only 1s */
  int off = out->rank - in->rank, k = 0;
  for (int j = 0; j < off; j++)
    if (out->d[j] != 1) return IR_BC_OTHER;
  while (k < in->rank && in->d[k] == out->d[off + k]) k++;
  for (int j = k; j < in->rank; j++)
    if (in->d[j] != 1) return IR_BC_OTHER;
  *m = no / ni;
  return IR_BC_PREFIX;
}

int ir_attr_eq(const ir_attr *a, const ir_attr *b) {
  if (a->axis != b->axis || a->k != b->k || a->stride != b->stride || a->pad != b->pad || a->pad_hi != b->pad_hi ||
      a->start != b->start || a->end != b->end || a->heads != b->heads || a->n != b->n || a->i != b->i)
    return 0;
  if (a->keepdims != b->keepdims || a->causal != b->causal || a->approx != b->approx) return 0;
  if (memcmp(&a->f, &b->f, sizeof a->f) || memcmp(&a->f2, &b->f2, sizeof a->f2) || a->nlist != b->nlist) return 0;
  for (int k = 0; k < a->nlist && k < IR_MAXDIM; k++)
    if (a->list[k] != b->list[k]) return 0;
  return 1;
}

int ir_fusion_eq(const ir_fusion *a, const ir_fusion *b) {
  if (!a || !b) return a == b;
  if (a->nsteps != b->nsteps) return 0;
  for (int s = 0; s < a->nsteps; s++) {
    const ir_fstep *x = &a->step[s], *y = &b->step[s];
    if (x->op != y->op || x->nin != y->nin || x->arg[0] != y->arg[0] || (x->nin > 1 && x->arg[1] != y->arg[1]))
      return 0;
    if (!ir_attr_eq(&a->attr[s], &b->attr[s])) return 0;
  }
  return 1;
}

int ir_node_same(const ir_node *a, const ir_node *b) {
  if (a->op != b->op || a->nin != b->nin || a->dtype != b->dtype || !ir_shape_eq(&a->shape, &b->shape)) return 0;
  for (int k = 0; k < a->nin; k++)
    if (a->in[k] != b->in[k]) return 0;
  if (!ir_attr_eq(&a->attr, &b->attr) || !ir_fusion_eq(a->fusion, b->fusion)) return 0;
  if (!a->data || !b->data) return a->data == b->data;
  return memcmp(a->data, b->data, sizeof(double) * (size_t)ir_numel(&a->shape)) == 0;
}

void ir_fusion_print(const ir_fusion *f, FILE *out) {
  if (!f) return;
  fputs(" [", out);
  for (int s = 0; s < f->nsteps; s++) {
    const ir_fstep *st = &f->step[s];
    fprintf(out, "%s%s(", s ? "; " : "", ir_ops[st->op].name);
    for (int k = 0; k < st->nin; k++)
      fprintf(out, "%s%c%d", k ? ", " : "", st->arg[k] >= 0 ? '$' : '@', st->arg[k] >= 0 ? st->arg[k] : -1 - st->arg[k]);
    fputc(')', out);
    if (st->op == IR_LEAKY_RELU) fprintf(out, " f=%.9g", f->attr[s].f);
    int of = st->op == IR_UNARY_GRAD ? (int)f->attr[s].i : st->op; /* the map a unary_grad differentiates */
    if (st->op == IR_UNARY_GRAD) fprintf(out, " of=%s", ir_ops[of].name);
    if (of == IR_LEAKY_RELU && st->op != IR_LEAKY_RELU) fprintf(out, " f=%.9g", f->attr[s].f);
    if (of == IR_GELU && f->attr[s].approx) fputs(" approx=1", out);
  }
  fputc(']', out);
}

/* ---- the shape rule ---- */

static int step_ok(const ir_node *n, int s, char *msg, size_t mn) {
  const ir_fstep *st = &n->fusion->step[s];
  if (!ir_fusable_step(st->op, &n->fusion->attr[s])) return ir_fail(msg, mn, "fused: step %d is not a fusable elementwise op", s);
  int want = ir_ops[st->op].arity;
  if (st->nin != want) return ir_fail(msg, mn, "fused: step %d (%s) has %d operands, want %d", s, ir_ops[st->op].name, st->nin, want);
  for (int k = 0; k < st->nin; k++) {
    int a = st->arg[k];
    if (a >= n->nin || (a < 0 && -1 - a >= s))
      return ir_fail(msg, mn, "fused: step %d (%s) operand %d names %s %d, which is not %s", s, ir_ops[st->op].name,
                     k, a >= 0 ? "input" : "step", a >= 0 ? a : -1 - a, a >= 0 ? "an input" : "an earlier step");
  }
  return 0;
}

int shp_fused(ir_graph *g, ir_node *n, char *msg, size_t mn) {
  const ir_fusion *f = n->fusion;
  if (!f || f->nsteps < 1 || f->nsteps > IR_FUSE_MAXSTEPS || !f->step || !f->attr)
    return ir_fail(msg, mn, "fused: the node has no program (fused nodes are made by the fusion pass)");
  ir_shape out = g->nodes[n->in[0]].shape;
  for (int k = 0; k < n->nin; k++) {
    const ir_node *x = &g->nodes[n->in[k]];
    char b[200];
    if (x->dtype != IR_F32) return ir_fail(msg, mn, "fused: input %d is %s, not f32", k, ir_dtype_name(x->dtype));
    if (ir_broadcast(&out, &x->shape, &out))
      return ir_fail(msg, mn, "fused: input %d's shape %s does not broadcast with the others", k,
                     ir_shape_str(&x->shape, b, sizeof b));
  }
  unsigned char used[64] = {0};
  for (int s = 0; s < f->nsteps; s++) {
    if (step_ok(n, s, msg, mn)) return -1;
    for (int k = 0; k < f->step[s].nin; k++)
      if (f->step[s].arg[k] >= 0 && f->step[s].arg[k] < 64) used[f->step[s].arg[k]] = 1;
  }
  for (int k = 0; k < n->nin && k < 64; k++)
    if (!used[k]) return ir_fail(msg, mn, "fused: input %d is read by no step", k);
  n->dtype = IR_F32;
  n->shape = out;
  return 0;
}
