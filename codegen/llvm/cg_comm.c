/* cg_comm.c -- the collectives (allreduce, reduce_scatter, all_gather) as
 * calls to liblathe_rt's kernels (rt/rt_comm.c), which go through the
 * communicator the host installed. The kernel passes its buffers, the
 * static sizes and the rank count it was compiled for (a job of another
 * size is refused at run time instead of hanging). An allreduce with
 * k = 1 only starts; its comm_wait finishes it (the overlap, passes/comm.c). */
#include "cg_internal.h"

#include "rt/lathe_rt.h"

static cg_fn declare(cg_k *k, const char *name, LLVMTypeRef *ty, unsigned n) {
  cg_fn f;
  f.ty = LLVMFunctionType(k->m->vd, ty, n, 0);
  f.fn = LLVMGetNamedFunction(k->m->M, name);
  if (!f.fn) f.fn = LLVMAddFunction(k->m->M, name, f.ty);
  return f;
}

/* An array of the kernel's input pointers (an alloca in the entry block)
 * and a constant array of their sizes. */
static V input_ptrs(cg_k *k, int nin) {
  LLVMTypeRef at = LLVMArrayType(k->m->ptr, (unsigned)nin);
  LLVMBasicBlockRef cur = LLVMGetInsertBlock(k->B);
  LLVMValueRef first = LLVMGetFirstInstruction(k->entry);
  if (first) LLVMPositionBuilderBefore(k->B, first);
  else LLVMPositionBuilderAtEnd(k->B, k->entry);
  V arr = LLVMBuildAlloca(k->B, at, "comm.in");
  LLVMPositionBuilderAtEnd(k->B, cur);
  for (int j = 0; j < nin; j++) {
    V idx[2] = {ci32(k, 0), ci32(k, j)};
    LLVMBuildStore(k->B, k->arg[1 + j], LLVMBuildGEP2(k->B, at, arr, idx, 2, ""));
  }
  return LLVMBuildPointerCast(k->B, arr, k->m->ptr, "");
}

static V sizes_const(cg_k *k, int nin) {
  V e[CG_MAXARGS];
  for (int j = 0; j < nin; j++) e[j] = ci(k, ir_numel(k->sh[1 + j]));
  V arr = LLVMConstArray(k->m->i64, e, (unsigned)nin);
  V gv = LLVMAddGlobal(k->m->M, LLVMTypeOf(arr), "comm.sizes");
  LLVMSetInitializer(gv, arr);
  LLVMSetGlobalConstant(gv, 1);
  LLVMSetLinkage(gv, LLVMPrivateLinkage);
  return LLVMConstBitCast(gv, k->m->ptr); /* typed pointers before LLVM 15 */
}

static V errp(cg_k *k) { return LLVMBuildPointerCast(k->B, k->err, k->m->ptr, ""); }

/* k = 1: only started (lathe_rt_allreduce_start); the comm_wait reading it scales. */
static void e_allreduce_start(cg_k *k) {
  const ir_node *n = k->n;
  LLVMTypeRef ty[6] = {k->m->ptr, k->m->ptr, k->m->ptr, k->m->i64, k->m->i64, k->m->ptr};
  V a[6] = {k->arg[0], input_ptrs(k, n->nin), sizes_const(k, n->nin), ci(k, n->nin), ci(k, n->attr.n), errp(k)};
  cg_call(k, declare(k, "lathe_rt_allreduce_start", ty, 6), a, 6);
}

static void e_comm_wait(cg_k *k) {
  const ir_node *x = &k->g->nodes[k->n->in[0]]; /* the started allreduce: its scale and ranks */
  LLVMTypeRef ty[6] = {k->m->ptr, k->m->ptr, k->m->i64, k->m->f32, k->m->i64, k->m->ptr};
  V a[6] = {k->arg[0], k->arg[1], ci(k, ir_numel(&k->n->shape)), cf(k, x->attr.f), ci(k, x->attr.n), errp(k)};
  cg_call(k, declare(k, "lathe_rt_comm_wait", ty, 6), a, 6);
}

static void e_allreduce(cg_k *k) {
  const ir_node *n = k->n;
  if (n->attr.k == 1) {
    e_allreduce_start(k);
    return;
  }
  LLVMTypeRef ty[7] = {k->m->ptr, k->m->ptr, k->m->ptr, k->m->i64, k->m->f32, k->m->i64, k->m->ptr};
  V a[7] = {k->arg[0], input_ptrs(k, n->nin), sizes_const(k, n->nin), ci(k, n->nin), cf(k, n->attr.f),
            ci(k, n->attr.n), errp(k)};
  cg_call(k, declare(k, "lathe_rt_allreduce", ty, 7), a, 7);
}

static void e_reduce_scatter(cg_k *k) {
  LLVMTypeRef ty[6] = {k->m->ptr, k->m->ptr, k->m->i64, k->m->f32, k->m->i64, k->m->ptr};
  V a[6] = {k->arg[0], k->arg[1], ci(k, ir_numel(&k->n->shape)), cf(k, k->n->attr.f), ci(k, k->n->attr.n), errp(k)};
  cg_call(k, declare(k, "lathe_rt_reduce_scatter", ty, 6), a, 6);
}

static void e_all_gather(cg_k *k) {
  LLVMTypeRef ty[5] = {k->m->ptr, k->m->ptr, k->m->i64, k->m->i64, k->m->ptr};
  V a[5] = {k->arg[0], k->arg[1], ci(k, ir_numel(k->sh[1])), ci(k, k->n->attr.n), errp(k)};
  cg_call(k, declare(k, "lathe_rt_all_gather", ty, 5), a, 5);
}

static void e_send(cg_k *k) {
  LLVMTypeRef ty[5] = {k->m->ptr, k->m->ptr, k->m->i64, k->m->i64, k->m->ptr};
  V a[5] = {k->arg[0], k->arg[1], ci(k, ir_numel(&k->n->shape)), ci(k, k->n->attr.n), errp(k)};
  cg_call(k, declare(k, "lathe_rt_send", ty, 5), a, 5);
}

static void e_recv(cg_k *k) {
  LLVMTypeRef ty[4] = {k->m->ptr, k->m->i64, k->m->i64, k->m->ptr};
  V a[4] = {k->arg[0], ci(k, ir_numel(&k->n->shape)), ci(k, k->n->attr.n), errp(k)};
  cg_call(k, declare(k, "lathe_rt_recv", ty, 4), a, 4);
}

void cg_emit_comm(cg_k *k) {
  static const cg_emit_fn by_op[IR_NOPS] = {
    [IR_ALLREDUCE] = e_allreduce, [IR_REDUCE_SCATTER] = e_reduce_scatter, [IR_ALL_GATHER] = e_all_gather,
    [IR_COMM_WAIT] = e_comm_wait, [IR_SEND] = e_send, [IR_RECV] = e_recv,
  };
  by_op[k->n->op](k);
}
