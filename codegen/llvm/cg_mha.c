/* cg_mha.c -- mha (attention with a mask, a context, rotary embeddings or
 * grouped key/value heads) and its backward mha_grad as calls to
 * liblathe_rt's kernels (rt/rt_mha.c): the generated kernel passes its
 * buffers, scratch and a constant array of the static shapes. */
#include "cg_internal.h"

#include "rt/lathe_rt.h"

/* the dims array the kernels take, as a constant global */
static V mha_dims_const(cg_k *k) {
  const ir_node *n = k->n;
  const ir_shape *sx = k->sh[1], *sc = k->sh[4];
  int64_t mk = LATHE_RT_MASK_NONE;
  int nf = n->op == IR_MHA ? n->nin : n->nin - 1; /* mha_grad: dy last */
  if (nf == 9) mk = k->sh[9]->rank == 1 ? LATHE_RT_MASK_LENGTHS : k->sh[9]->rank == 2 ? LATHE_RT_MASK_KEYS : LATHE_RT_MASK_FULL;
  int64_t dims[11] = {sx->d[0], sx->d[1], sc->d[1], sx->d[2], sc->d[2], n->attr.heads, n->attr.k,
                      n->attr.causal, n->attr.i, mk, k->sh[2]->d[1]}; /* last: wq's width, the inner width */
  V e[11];
  for (int i = 0; i < 11; i++) e[i] = ci(k, dims[i]);
  V arr = LLVMConstArray(k->m->i64, e, 11);
  V gv = LLVMAddGlobal(k->m->M, LLVMTypeOf(arr), "mha.dims");
  LLVMSetInitializer(gv, arr);
  LLVMSetGlobalConstant(gv, 1);
  LLVMSetLinkage(gv, LLVMPrivateLinkage);
  return LLVMConstBitCast(gv, k->m->ptr); /* typed pointers before LLVM 15 */
}

void cg_emit_mha(cg_k *k) {
  int grad = k->n->op == IR_MHA_GRAD, nf = grad ? k->n->nin - 1 : k->n->nin;
  V p[13];
  int np = 0;
  for (int j = 0; j <= 8; j++) p[np++] = k->arg[j];        /* out, then the eight float inputs */
  p[np++] = nf == 9 ? k->arg[9] : LLVMConstNull(k->m->ptr); /* the mask */
  if (grad) p[np++] = k->arg[k->n->nin];                    /* dy */
  p[np++] = k->scratch;
  p[np++] = mha_dims_const(k);
  LLVMTypeRef ty[13];
  for (int i = 0; i < np; i++) ty[i] = k->m->ptr;
  const char *name = grad ? "lathe_rt_mha_grad" : "lathe_rt_mha_fwd";
  cg_fn f;
  f.ty = LLVMFunctionType(k->m->vd, ty, (unsigned)np, 0);
  f.fn = LLVMGetNamedFunction(k->m->M, name);
  if (!f.fn) f.fn = LLVMAddFunction(k->m->M, name, f.ty);
  cg_call(k, f, p, (unsigned)np);
}

int64_t cg_mha_scratch_bytes(const ir_graph *g, const ir_node *n) {
  const ir_shape *sx = &g->nodes[n->in[0]].shape, *sc = &g->nodes[n->in[3]].shape;
  int64_t e = g->nodes[n->in[1]].shape.d[1], hd = e / n->attr.heads, dk = n->attr.k * hd;
  return 4 * lathe_rt_mha_scratch_floats(sx->d[0], sx->d[1], sc->d[1], sx->d[2], e, dk, hd, n->op == IR_MHA_GRAD);
}
