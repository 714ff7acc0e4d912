/* cg_jit.c -- the CPU backend driver: render the kernel plan (plan/) as one
 * LLVM module (deduplicated kernels + the entry `lathe_forward`, which calls
 * them in the plan's order), optimise and compile it for the host CPU in
 * parts on several threads (cg_split.c), link the objects with ORC LLJIT,
 * and run it. The compiled code is shared with later compiles of an equal
 * graph while a program holds it (cg_memo.c).
 *
 * Nothing about grouping or memory is decided here: which nodes form a
 * kernel, their order, and every tensor's buffer (caller's, constant,
 * alias, or an arena offset) come from the plan. */
#include "cg_internal.h"
#include "cg_conv.h"

#include <cblas.h>
#include <llvm-c/Analysis.h>
#include <llvm-c/Error.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Orc.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cg_llvm_compat.h"
#include "cg_aot.h"
#include "cg_memo.h"
#include "cg_split.h"
#include "plan/plan.h"
#include "rt/blas.h"
#include "runtime/gemm_dnnl.h"
#include "rt/lathe_rt.h"

/* Every node's buffer, as the plan laid it out (kept after the plan is
 * freed: the run binds them). */
typedef pl_buf cg_buf;

/* What compiling made, immutable afterwards and shared by every program on
 * it (cg_memo.c counts them): the JIT holding the machine code, the buffer
 * plan, the constants. The programs' fields of the same names point here. */
typedef struct {
  cg_shared sh; /* first: cg_memo.c hands out &code->sh */
  LLVMOrcLLJITRef jit;
  void (*forward)(void **bufs, void **scr, int32_t *err);
  int nnodes, ninputs, nparams, noutputs, loss;
  cg_buf *buf;
  int *out_node;
  unsigned char *consts;
  char *ir_text;
  cg_stats st;
} cg_code;

/* A program: the code (its own until compiled, then code's) and the run
 * state that is each program's own: the arena, the buffer tables, the
 * profile. */
struct cg_program {
  cg_code *code; /* NULL while compiling (the fields below own it all) */
  LLVMOrcLLJITRef jit;
  void (*forward)(void **bufs, void **scr, int32_t *err);
  int nnodes, ninputs, nparams, noutputs, loss;
  cg_buf *buf;
  int *out_node;
  void **bufs, **scr;
  unsigned char *arena, *consts;
  cg_stats st;
  char *ir_text;
  int nonfinite;  /* the last run: a checked buffer held a non-finite value */
  /* profiling (LATHE_PROFILE): per kernel call, its node and accumulated time */
  int *prof_node;
  double *prof_ns;
  double prof_last;
  int64_t prof_runs;
  int prof_cold_dropped; /* the first run's times were dropped (see cg_run) */
  const char **op_names; /* per node: its operator's name (for the table) */
};

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

/* Consume an LLVMErrorRef into msg. */
static int llvm_fail(LLVMErrorRef e, char *msg, size_t msgn, const char *what) {
  char *s = LLVMGetErrorMessage(e);
  ir_fail(msg, msgn, "llvm backend: %s: %s", what, s ? s : "?");
  LLVMDisposeErrorMessage(s);
  return -1;
}

/* Once per process, and thread-safe: host programs compile from several
 * threads at once (lathe.h). */
static int llvm_ok;
static void init_llvm_once(void) { llvm_ok = !LLVMInitializeNativeTarget() && !LLVMInitializeNativeAsmPrinter(); }

/* Only `lathe emit --target` needs the other targets: the JIT's start stays
 * as cheap as the native target alone. */
static void init_all_once(void) {
  LLVMInitializeAllTargetInfos();
  LLVMInitializeAllTargets();
  LLVMInitializeAllTargetMCs();
  LLVMInitializeAllAsmPrinters();
}

void cg_init_all_targets(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, init_all_once);
}

int cg_init_llvm(char *msg, size_t msgn) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, init_llvm_once);
  return llvm_ok ? 0 : ir_fail(msg, msgn, "llvm backend: this host's CPU is not supported by the LLVM build");
}

static void store_elem(void *base, ir_dtype t, int64_t i, double v) {
  switch (t) {
  case IR_F32: ((float *)base)[i] = (float)v; break;
  case IR_I32: ((int32_t *)base)[i] = (int32_t)v; break;
  case IR_I64: ((int64_t *)base)[i] = (int64_t)v; break;
  default: ((int8_t *)base)[i] = (int8_t)v; break;
  }
}

void cg_fill_consts(unsigned char *consts, const pl_buf *buf, const ir_graph *g) {
  for (int i = 0; i < g->nnodes; i++) {
    const ir_node *n = &g->nodes[i];
    if (buf[i].kind != PL_BUF_CONST) continue;
    void *base = consts + buf[i].off;
    int64_t cnt = ir_numel(&n->shape);
    for (int64_t e = 0; e < cnt; e++)
      store_elem(base, n->dtype, e, n->op == IR_ARANGE ? (double)e : n->data ? n->data[e] : n->attr.f);
  }
}

/* ---- module ---- */


static void set_fn_attrs(cg_mod *m, V fn) { cg_set_fn_attrs(m, fn); }


/* The kernel's function: void k(result, operands.., scratch, err). */
static V emit_kernel(cg_mod *m, const ir_graph *g, const pl_kernel *kern, int idx) {
  static const char *const suffix[PL_NKINDS] = {
    [PL_K_GEMM_EPI] = "_fused", [PL_K_SIBLINGS] = "_multi", [PL_K_ADD_NORM] = "_add", [PL_K_NORM_GRAD_ADD] = "_add"};
  cg_k k = {0};
  const ir_node *n = &g->nodes[kern->node];
  const int *in = kern->arg;
  int nin = kern->narg;
  k.m = m;
  k.B = m->B;
  k.g = g;
  k.n = &g->nodes[kern->head];
  k.fuse = kern->epi;
  k.check_finite = kern->check;
  k.nargs = nin + 1;
  LLVMTypeRef params[CG_MAXKARGS];
  for (int j = 0; j < nin + 3; j++) params[j] = m->ptr;
  char name[64];
  snprintf(name, sizeof name, "%sk%d_%s%s", m->sym_prefix ? m->sym_prefix : "", idx, ir_ops[k.n->op].name, suffix[kern->kind] ? suffix[kern->kind] : "");
  k.fn = LLVMAddFunction(m->M, name, LLVMFunctionType(m->vd, params, (unsigned)nin + 3, 0));
  LLVMSetLinkage(k.fn, LLVMInternalLinkage);
  set_fn_attrs(m, k.fn);
  for (int j = 0; j < nin + 1; j++) {
    const ir_node *x = j == 0 ? n : &g->nodes[in[j - 1]];
    k.arg[j] = LLVMGetParam(k.fn, (unsigned)j);
    k.dt[j] = x->dtype;
    k.sh[j] = &x->shape;
    if (k.n->op != IR_KV_WRITE) /* its result may be its cache (cg_decode.c) */
      LLVMAddAttributeAtIndex(k.fn, (unsigned)j + 1,
                              LLVMCreateEnumAttribute(m->C, LLVMGetEnumAttributeKindForName("noalias", 7), 0));
  }
  k.scratch = LLVMGetParam(k.fn, (unsigned)nin + 1);
  k.err = LLVMGetParam(k.fn, (unsigned)nin + 2);
  k.entry = LLVMAppendBasicBlockInContext(m->C, k.fn, "entry");
  LLVMPositionBuilderAtEnd(m->B, k.entry);
  LLVMBasicBlockRef start = LLVMAppendBasicBlockInContext(m->C, k.fn, "start");
  LLVMBuildBr(m->B, start); /* the entry block holds only allocas */
  LLVMPositionBuilderAtEnd(m->B, start);
  switch (kern->kind) { /* the grouped kinds have a renderer each; one node, its op's */
  case PL_K_SIBLINGS: cg_emit_fused_multi(&k, kern->sib, kern->nsib); break;
  case PL_K_ADD_NORM: cg_emit_layernorm_add(&k); break;
  case PL_K_NORM_GRAD_ADD: cg_emit_layernorm_grad_add(&k); break;
  case PL_K_GEMM_EPI: /* a product's chain, or a convolution's (cg_conv.c applies its steps) */
    if (k.n->op == IR_CONV2D) cg_emit_conv_fwd(&k);
    else cg_emit_fused(&k);
    break;
  default: cg_emitters[n->op](&k); break;
  }
  LLVMBuildRetVoid(m->B);
  return k.fn;
}

typedef struct {
  const char **key;
  V *fn;
  unsigned cap;
} kernel_table;

static unsigned hash_str(const char *s) {
  unsigned h = 2166136261u;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
  return h;
}

/* ---- profiling: the entry calls lathe_rt_prof_tick(seq) after each
 * kernel, which calls the hook cg_run sets on its thread ---- */

static double now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static void prof_tick(void *ctx, int32_t seq) {
  cg_program *p = ctx;
  double t = now_ns();
  p->prof_ns[seq] += t - p->prof_last;
  p->prof_last = t;
}


/* entry(bufs, scr, err): every kernel of the plan in its order */
static void build_module(cg_program *p, cg_mod *m, const pl_plan *plan, arena *A, const char *entry_name) {
  const ir_graph *g = plan->g;
  kernel_table kt = {0};
  kt.cap = 16;
  while (kt.cap < (unsigned)g->nnodes * 2) kt.cap *= 2;
  kt.key = ar_alloc(A, sizeof(char *) * kt.cap);
  kt.fn = ar_alloc(A, sizeof(V) * kt.cap);
  LLVMTypeRef ep[3] = {m->ptr, m->ptr, m->ptr};
  V entry = LLVMAddFunction(m->M, entry_name, LLVMFunctionType(m->vd, ep, 3, 0));
  set_fn_attrs(m, entry);
  LLVMBuilderRef EB = LLVMCreateBuilderInContext(m->C);
  LLVMPositionBuilderAtEnd(EB, LLVMAppendBasicBlockInContext(m->C, entry, "entry"));
  V bufs = LLVMGetParam(entry, 0), scr = LLVMGetParam(entry, 1), err = LLVMGetParam(entry, 2);
  LLVMTypeRef tick_ty = LLVMFunctionType(m->vd, &m->i32, 1, 0);
  V tick = p->prof_node ? LLVMAddFunction(m->M, "lathe_rt_prof_tick", tick_ty) : NULL;
  LLVMTypeRef pp = LLVMPointerType(m->ptr, 0);
  V pbufs = LLVMBuildPointerCast(EB, bufs, pp, ""), pscr = LLVMBuildPointerCast(EB, scr, pp, "");
  char key[4096];
  static const char *const prof_name[PL_NKINDS] = {[PL_K_GEMM_EPI] = "matmul+fused",
                                                   [PL_K_SIBLINGS] = "fused siblings",
                                                   [PL_K_ADD_NORM] = "add+layernorm",
                                                   [PL_K_NORM_GRAD_ADD] = "layernorm_grad+add"};
  for (int q = 0; q < plan->nk; q++) {
    const pl_kernel *kern = &plan->k[q];
    int i = kern->node;
    p->st.kernels++;
    pl_kernel_key(plan, kern, key, sizeof key);
    unsigned h = hash_str(key) & (kt.cap - 1);
    while (kt.key[h] && strcmp(kt.key[h], key)) h = (h + 1) & (kt.cap - 1);
    if (!kt.key[h]) {
      kt.key[h] = ar_strdup(A, key);
      kt.fn[h] = emit_kernel(m, g, kern, p->st.kernels_unique++);
    }
    const int *in = kern->arg;
    int nin = kern->narg;
    V args[CG_MAXKARGS];
    for (int j = 0; j <= nin; j++) {
      V idx = LLVMConstInt(m->i64, (unsigned long long)(j == 0 ? i : in[j - 1]), 0);
      args[j] = LLVMBuildLoad2(EB, m->ptr, LLVMBuildGEP2(EB, m->ptr, pbufs, &idx, 1, ""), "");
    }
    V si = LLVMConstInt(m->i64, (unsigned long long)i, 0);
    args[nin + 1] = LLVMBuildLoad2(EB, m->ptr, LLVMBuildGEP2(EB, m->ptr, pscr, &si, 1, ""), "");
    args[nin + 2] = err;
    LLVMBuildCall2(EB, LLVMGlobalGetValueType(kt.fn[h]), kt.fn[h], args, (unsigned)nin + 3, "");
    if (prof_name[kern->kind] && p->op_names)
      p->op_names[i] = g->nodes[kern->head].op == IR_CONV2D ? "conv2d+fused" : prof_name[kern->kind];
    if (p->prof_node) {
      V seq = LLVMConstInt(m->i32, (unsigned long long)(p->st.kernels - 1), 0);
      p->prof_node[p->st.kernels - 1] = i;
      LLVMBuildCall2(EB, tick_ty, tick, &seq, 1, "");
    }
  }
  LLVMBuildRetVoid(EB);
  LLVMDisposeBuilder(EB);
}

void cg_build_entry(cg_mod *m, const pl_plan *plan, arena *A, const char *entry_name) {
  cg_program p; /* the statistics only; no profile */
  memset(&p, 0, sizeof p);
  build_module(&p, m, plan, A, entry_name);
}

/* ---- optimisation and JIT ---- */

static int verify(LLVMModuleRef M, char *msg, size_t msgn) {
  char *vmsg = NULL;
  if (LLVMVerifyModule(M, LLVMReturnStatusAction, &vmsg)) {
    ir_fail(msg, msgn, "llvm backend: internal error: invalid module: %.400s", vmsg ? vmsg : "?");
    LLVMDisposeMessage(vmsg);
    return -1;
  }
  LLVMDisposeMessage(vmsg);
  return 0;
}

/* Symbols the generated code calls, resolved to this process's copies
 * (liblathe_rt's, linked into liblathe; an emitted object links the same
 * names from liblathe_rt itself). */
static int define_host_symbols(LLVMOrcLLJITRef J, char *msg, size_t msgn) {
  static const struct {
    const char *name;
    void *addr;
  } syms[] = {
    {"lathe_rt_sgemm", (void *)lathe_rt_sgemm}, {"lathe_rt_sgemm_packed", (void *)lathe_rt_sgemm_packed},
    {"lathe_rt_sgemm_bias", (void *)lathe_rt_sgemm_bias},
    {"expf", (void *)expf}, {"logf", (void *)logf},
    {"tanhf", (void *)tanhf}, {"erfcf", (void *)erfcf}, {"powf", (void *)powf}, {"log1pf", (void *)log1pf},
    {"memcpy", (void *)memcpy}, {"memset", (void *)memset}, {"memmove", (void *)memmove},
    {"lathe_rt_prof_tick", (void *)lathe_rt_prof_tick}, {"lathe_rt_parallel_for", (void *)lathe_rt_parallel_for},
    {"lathe_rt_attn_fwd", (void *)lathe_rt_attn_fwd}, {"lathe_rt_attn_grad", (void *)lathe_rt_attn_grad},
    {"lathe_rt_rec_grad", (void *)lathe_rt_rec_grad}, {"lathe_rt_norm", (void *)lathe_rt_norm},
    {"lathe_rt_attention_decode", (void *)lathe_rt_attention_decode},
    {"lathe_rt_sample_token", (void *)lathe_rt_sample_token},
    {"lathe_rt_qmatmul", (void *)lathe_rt_qmatmul}, {"lathe_rt_qconv2d", (void *)lathe_rt_qconv2d},
    {"lathe_rt_qmatmul_s8io", (void *)lathe_rt_qmatmul_s8io},
    {"lathe_rt_qconv2d_s8io", (void *)lathe_rt_qconv2d_s8io}, {"lathe_rt_quantize", (void *)lathe_rt_quantize},
    {"lathe_rt_dequantize", (void *)lathe_rt_dequantize},
    {"lathe_rt_conv2d", (void *)lathe_rt_conv2d},
    {"lathe_rt_mha_fwd", (void *)lathe_rt_mha_fwd}, {"lathe_rt_mha_grad", (void *)lathe_rt_mha_grad},
    {"lathe_rt_cross_entropy", (void *)lathe_rt_cross_entropy},
    {"lathe_rt_allreduce", (void *)lathe_rt_allreduce}, {"lathe_rt_reduce_scatter", (void *)lathe_rt_reduce_scatter},
    {"lathe_rt_all_gather", (void *)lathe_rt_all_gather},
    {"lathe_rt_allreduce_start", (void *)lathe_rt_allreduce_start},
    {"lathe_rt_send", (void *)lathe_rt_send}, {"lathe_rt_recv", (void *)lathe_rt_recv},
    {"lathe_rt_comm_wait", (void *)lathe_rt_comm_wait},
  };
  enum { NS = sizeof syms / sizeof syms[0] };
  __typeof__(*(LLVMOrcCSymbolMapPairs)0) pairs[NS];
  for (int i = 0; i < NS; i++) {
    pairs[i].Name = LLVMOrcLLJITMangleAndIntern(J, syms[i].name);
    pairs[i].Sym.Address = (LLVMOrcExecutorAddress)(uintptr_t)syms[i].addr;
    pairs[i].Sym.Flags.GenericFlags = LLVMJITSymbolGenericFlagsExported | LLVMJITSymbolGenericFlagsCallable;
    pairs[i].Sym.Flags.TargetFlags = 0;
  }
  LLVMOrcJITDylibRef jd = LLVMOrcLLJITGetMainJITDylib(J);
  LLVMErrorRef e = LLVMOrcJITDylibDefine(jd, LLVMOrcAbsoluteSymbols(pairs, NS));
  if (e) return llvm_fail(e, msg, msgn, "defining host symbols");
  LLVMOrcDefinitionGeneratorRef gen;
  e = LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess(&gen, LLVMOrcLLJITGetGlobalPrefix(J), NULL, NULL);
  if (e) return llvm_fail(e, msg, msgn, "process symbol search");
  LLVMOrcJITDylibAddGenerator(jd, gen);
  return 0;
}

/* A fresh LLJIT that links every object (each taken) against the host
 * symbols and each other: the entry calls kernels of other parts by name.
 * One thread drives the JIT; only making the objects was parallel. */
static int jit_objects(cg_program *p, cg_objects *objs, char *msg, size_t msgn) {
  double t0 = now_ms();
  LLVMOrcLLJITBuilderRef jb = LLVMOrcCreateLLJITBuilder();
  LLVMErrorRef e = LLVMOrcCreateLLJIT(&p->jit, jb); /* takes the builder */
  if (e) {
    p->jit = NULL;
    return llvm_fail(e, msg, msgn, "creating the JIT");
  }
  if (define_host_symbols(p->jit, msg, msgn)) return -1;
  LLVMOrcJITDylibRef jd = LLVMOrcLLJITGetMainJITDylib(p->jit);
  for (int i = 0; i < objs->nobj; i++) {
    LLVMMemoryBufferRef obj = objs->obj[i];
    objs->obj[i] = NULL; /* the JIT owns it now, even on failure */
    e = LLVMOrcLLJITAddObjectFile(p->jit, jd, obj);
    if (e) return llvm_fail(e, msg, msgn, "adding an object");
  }
  LLVMOrcExecutorAddress addr = 0;
  e = LLVMOrcLLJITLookup(p->jit, &addr, "lathe_forward");
  if (e) return llvm_fail(e, msg, msgn, "linking");
  *(void **)&p->forward = (void *)(uintptr_t)addr;
  p->st.jit_ms = now_ms() - t0;
  return 0;
}

/* Objects for M (taken): verified, split, optimised, generated or cached. */
static int module_objects(cg_program *p, LLVMModuleRef M, const cg_target *t, cg_objects *objs, char *msg,
                          size_t msgn) {
  if (cg_module_target(M, t, msg, msgn) || verify(M, msg, msgn)) {
    LLVMDisposeModule(M);
    return -1;
  }
  int rc = cg_module_objects(M, t, objs, msg, msgn);
  p->st.parse_ms += objs->prep_ms;
  p->st.llvm_opt_ms = objs->opt_ms;
  p->st.codegen_ms = objs->codegen_ms;
  p->st.cache_hit = objs->nobj > 0 && objs->hits == objs->nobj;
  p->st.parts = objs->nobj;
  p->ir_text = objs->ir_text;
  objs->ir_text = NULL;
  return rc;
}

/* ---- public ---- */

int cg_check_graph(const ir_graph *g, char *msg, size_t msgn) {
  for (int i = 0; i < g->nnodes; i++) {
    const ir_node *n = &g->nodes[i];
    const char *why = cg_unsupported(g, n);
    if (why)
      return ir_fail(msg, msgn, "%s:%d:%d: error: llvm backend cannot compile '%s': %s", n->loc.file ? n->loc.file : "<graph>",
                  n->loc.line, n->loc.col, n->op >= 0 && n->op < IR_NOPS ? ir_ops[n->op].name : "?", why);
  }
  for (int j = 0; j < g->nparams; j++)
    if (g->params[j].dtype != IR_F32 && !g->params[j].stored) /* stored: quantized weights, read by qmatmul */
      return ir_fail(msg, msgn, "llvm backend: parameter '%s' is not f32", g->params[j].name);
  return 0;
}

static cg_program *program_new(const ir_graph *g) {
  cg_program *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  size_t nn = (size_t)(g->nnodes ? g->nnodes : 1);
  p->nnodes = g->nnodes;
  p->ninputs = g->ninputs;
  p->nparams = g->nparams;
  p->noutputs = g->noutputs;
  p->loss = g->loss;
  p->buf = calloc(nn, sizeof *p->buf);
  p->bufs = calloc(nn, sizeof(void *));
  p->scr = calloc(nn, sizeof(void *));
  p->out_node = calloc((size_t)g->noutputs + 1, sizeof(int));
  if (!p->buf || !p->bufs || !p->scr || !p->out_node) {
    cg_free(p);
    return NULL;
  }
  for (int j = 0; j < g->noutputs; j++) p->out_node[j] = g->outputs[j].node;
  return p;
}

int cg_gemm_from_env(char *msg, size_t msgn) {
  const char *e = getenv("LATHE_GEMM");
  if (!e || !*e || strcmp(e, "blas") == 0) return CG_GEMM_BLAS;
  if (strcmp(e, "generated") == 0) return CG_GEMM_GENERATED;
  ir_fail(msg, msgn, "LATHE_GEMM=%s: expected blas or generated", e);
  return -1;
}

static int env_profile(void) {
  const char *e = getenv("LATHE_PROFILE");
  return e && *e && strcmp(e, "0") != 0;
}

static int prof_alloc(cg_program *p, const ir_graph *g) {
  size_t nn = (size_t)(g->nnodes ? g->nnodes : 1);
  p->prof_node = calloc(nn, sizeof *p->prof_node);
  p->prof_ns = calloc(nn, sizeof *p->prof_ns);
  p->op_names = calloc(nn, sizeof *p->op_names);
  if (!p->prof_node || !p->prof_ns || !p->op_names) return -1;
  for (int i = 0; i < g->nnodes; i++) {
    int op = g->nodes[i].op;
    p->op_names[i] = op >= 0 && op < IR_NOPS ? ir_ops[op].name : "?";
  }
  return 0;
}

/* What the plan asks of this backend: its kernels' scratch and the unary
 * ops its product epilogue can apply (on vectors). Its kernels take their
 * operands as arguments (CG_MAXKARGS), so every parameter's update is one
 * kernel per PL_MAXUPD operands (upd_table 0): one kernel for all of them
 * measured no faster here (the char-GPT's batch-16 step, 4 update kernels
 * against 1: 38.9/39.5/38.6 ms against 38.6/39.5/39.3, docs/passes.md),
 * unlike a GPU launch's fixed cost. */
static const pl_target llvm_target = {"llvm", cg_scratch_bytes, cg_fusable_unary, 1, NULL, cg_dconv_pool_ok, 0};

const pl_target *cg_plan_target(void) { return &llvm_target; }

/* The plan's buffers into p (their arena and constants allocated when
 * alloc). */
static void take_buffers(cg_program *p, const pl_plan *plan, int alloc) {
  memcpy(p->buf, plan->buf, sizeof *p->buf * (size_t)plan->g->nnodes);
  p->st.arena_bytes = plan->arena_bytes;
  p->st.naive_bytes = plan->naive_bytes;
  if (!alloc) return;
  p->arena = aligned_alloc(64, (size_t)(plan->arena_bytes + 64) / 64 * 64);
  p->consts = aligned_alloc(64, (size_t)plan->const_bytes + 64);
}

/* LATHE_VERIFY=1 (as for the graph passes, and in every test): the plan is
 * checked before it is rendered. */
static int verify_wanted(void) {
  const char *e = getenv("LATHE_VERIFY");
  return e && *e && strcmp(e, "0") != 0;
}

/* Plan, build the module and compile it into p (fresh, owning everything). */
static int compile_into(cg_program *p, const ir_graph *g, const cg_options *o, char *msg, size_t msgn) {
  arena A;
  ar_init(&A);
  double t0 = now_ms();
  pl_plan plan;
  if (pl_build(g, &llvm_target, &plan)) {
    ar_free(&A);
    return ir_fail(msg, msgn, "llvm backend: out of memory for the kernel plan");
  }
  char vmsg[1024];
  if (verify_wanted() && pl_verify(&plan, vmsg, sizeof vmsg)) {
    pl_free(&plan);
    ar_free(&A);
    return ir_fail(msg, msgn, "llvm backend: internal error: the kernel plan does not verify: %s", vmsg);
  }
  take_buffers(p, &plan, 1);
  if (!p->arena || !p->consts) {
    pl_free(&plan);
    ar_free(&A);
    return ir_fail(msg, msgn, "llvm backend: out of memory for the activation arena");
  }
  cg_fill_consts(p->consts, p->buf, g);
  char *triple = LLVMGetDefaultTargetTriple(), *cpu = LLVMGetHostCPUName(), *feat = LLVMGetHostCPUFeatures();
  int rc = cg_host_check(feat, msg, msgn);
  LLVMOrcThreadSafeContextRef tsc = NULL;
  cg_objects objs = {0};
  if (rc == 0) {
    tsc = LLVMOrcCreateNewThreadSafeContext();
    cg_mod m = {0};
    m.C = LLVMOrcThreadSafeContextGetContext(tsc);
    m.M = LLVMModuleCreateWithNameInContext("lathe", m.C);
    m.B = LLVMCreateBuilderInContext(m.C);
    m.cpu = cpu;
    m.features = feat;
    m.vw = strstr(feat, "+avx512f") ? 16 : strstr(feat, "+avx") ? 8 : 4;
    m.gemm_gen = o->gemm == CG_GEMM_GENERATED;
    m.jit = 1;
    cg_mod_types(&m);
    build_module(p, &m, &plan, &A, "lathe_forward");
    LLVMDisposeBuilder(m.B);
    p->st.parse_ms = now_ms() - t0;
    cg_target t = {triple, cpu, feat, o->opt_level, o->keep_ir, !o->no_cache, o->threads, NULL, 0};
    rc = module_objects(p, m.M, &t, &objs, msg, msgn); /* takes m.M */
  }
  pl_free(&plan);
  ar_free(&A);
  if (rc == 0) rc = jit_objects(p, &objs, msg, msgn);
  cg_objects_free(&objs);
  if (tsc) LLVMOrcDisposeThreadSafeContext(tsc);
  LLVMDisposeMessage(triple);
  LLVMDisposeMessage(cpu);
  LLVMDisposeMessage(feat);
  return rc;
}

/* Hand what p compiled to a new code object (p keeps pointers to it). On
 * failure p stays the sole owner, unshared. */
static cg_code *code_of(cg_program *p) {
  cg_code *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->sh.refs = 1;
  c->jit = p->jit, c->forward = p->forward;
  c->nnodes = p->nnodes, c->ninputs = p->ninputs, c->nparams = p->nparams;
  c->noutputs = p->noutputs, c->loss = p->loss;
  c->buf = p->buf, c->out_node = p->out_node, c->consts = p->consts, c->ir_text = p->ir_text;
  c->st = p->st;
  p->code = c;
  return c;
}

static void code_free(cg_code *c) {
  if (c->jit) {
    LLVMErrorRef e = LLVMOrcDisposeLLJIT(c->jit);
    if (e) LLVMConsumeError(e);
  }
  free(c->buf);
  free(c->out_node);
  free(c->consts);
  free(c->ir_text);
  free(c);
}

/* A program on shared code c (whose reference it takes): its own arena and
 * buffer tables, the same size as the first program's. */
static cg_program *program_on(cg_code *c, char *msg, size_t msgn) {
  cg_program *p = calloc(1, sizeof *p);
  size_t nn = (size_t)(c->nnodes ? c->nnodes : 1);
  if (p) {
    p->code = c;
    p->jit = c->jit, p->forward = c->forward;
    p->nnodes = c->nnodes, p->ninputs = c->ninputs, p->nparams = c->nparams;
    p->noutputs = c->noutputs, p->loss = c->loss;
    p->buf = c->buf, p->out_node = c->out_node, p->consts = c->consts, p->ir_text = c->ir_text;
    p->st = c->st;
    p->st.parse_ms = p->st.llvm_opt_ms = p->st.codegen_ms = p->st.jit_ms = 0;
    p->st.cache_hit = 0;
    p->st.shared = 1;
    p->bufs = calloc(nn, sizeof(void *));
    p->scr = calloc(nn, sizeof(void *));
    p->arena = aligned_alloc(64, (size_t)(c->st.arena_bytes + 64) / 64 * 64); /* as take_buffers sizes it */
  }
  if (!p || !p->bufs || !p->scr || !p->arena) {
    if (p) cg_free(p);
    else if (cg_memo_release(&c->sh)) code_free(c);
    ir_fail(msg, msgn, "llvm backend: out of memory for the activation arena");
    return NULL;
  }
  return p;
}

cg_program *cg_compile(const ir_graph *g, const cg_options *o, char *msg, size_t msgn) {
  cg_options opts = {.opt_level = 2};
  if (o) opts = *o;
  if (env_profile()) opts.profile = 1;
  if (msg && msgn) msg[0] = '\0';
  if (opts.gemm == CG_GEMM_DEFAULT) opts.gemm = cg_gemm_from_env(msg, msgn);
  if (opts.gemm != CG_GEMM_BLAS && opts.gemm != CG_GEMM_GENERATED) {
    if (opts.gemm != -1) ir_fail(msg, msgn, "llvm backend: unknown gemm choice %d", opts.gemm);
    return NULL;
  }
  /* per-program state (the profile) and kept text are not shared */
  int share = !opts.keep_ir && !opts.profile && !opts.no_cache;
  cg_shared *s = share ? cg_memo_find(g, opts.opt_level, opts.gemm, opts.threads) : NULL;
  if (s) return program_on((cg_code *)s, msg, msgn);
  if (cg_init_llvm(msg, msgn) || cg_check_graph(g, msg, msgn)) return NULL;
  /* before any kernel runs: the pool owns the cores, and OpenBLAS's
   * buffers exist (or this is a clean out-of-memory error, not a hang) */
  if (rt_blas_ready(msg, msgn)) return NULL;
  gdn_install(); /* oneDNN for the products it is faster on: built with it and LATHE_DNNL=1 */
  cg_program *p = program_new(g);
  if (p && opts.profile && prof_alloc(p, g)) {
    cg_free(p);
    p = NULL;
  }
  if (!p) {
    ir_fail(msg, msgn, "llvm backend: out of memory");
    return NULL;
  }
  if (compile_into(p, g, &opts, msg, msgn)) {
    cg_free(p);
    return NULL;
  }
  cg_code *c = code_of(p);
  if (c && share) cg_memo_add(&c->sh, g, opts.opt_level, opts.gemm, opts.threads);
  return p;
}

int cg_run(cg_program *p, void *const *inputs, void *const *params, void *const *outputs, float *loss, char *msg,
           size_t msgn) {
  for (int i = 0; i < p->nnodes; i++) {
    cg_buf *b = &p->buf[i];
    void *v = NULL;
    switch (b->kind) {
    case PL_BUF_ARENA: v = p->arena + b->off; break;
    case PL_BUF_INPUT: v = inputs[b->idx]; break;
    case PL_BUF_PARAM: v = params[b->idx]; break;
    case PL_BUF_CONST: v = p->consts + b->off; break;
    case PL_BUF_OUTPUT: v = outputs[b->idx]; break;
    case PL_BUF_ALIAS: v = p->bufs[b->idx]; break;
    case PL_BUF_NONE: v = NULL; break;
    }
    p->bufs[i] = v;
    p->scr[i] = b->scr >= 0 ? p->arena + b->scr : NULL;
  }
  int32_t err = 0;
  if (p->prof_node) {
    /* The first run is cold (its pages faulted in, packed weights made:
     * GPT-2-small's first run takes 1.7x a later one), so once a second run
     * comes its times are dropped: the table shows the steady state. */
    if (p->prof_runs == 1 && !p->prof_cold_dropped) {
      memset(p->prof_ns, 0, sizeof *p->prof_ns * (size_t)p->st.kernels);
      p->prof_runs = 0, p->prof_cold_dropped = 1;
    }
    lathe_rt_prof_set(prof_tick, p);
    p->prof_runs++;
    p->prof_last = now_ns();
  }
  p->forward(p->bufs, p->scr, &err);
  if (p->prof_node) lathe_rt_prof_set(NULL, NULL);
  for (int j = 0; j < p->noutputs; j++) {
    int n = p->out_node[j];
    if (p->bufs[n] != outputs[j]) memcpy(outputs[j], p->bufs[n], (size_t)p->buf[n].bytes);
  }
  if (loss && p->loss >= 0) *loss = *(const float *)p->bufs[p->loss];
  static const char *const why[] = {"", "an embedding id is out of range", "a label is out of range for the classes",
                                    "integer division by zero", "a one_hot id or gather index is out of range",
                                    "a collective was compiled for another number of ranks than this job has, or a send/recv names a rank it lacks"};
  enum { NWHY = sizeof why / sizeof why[0] };
  p->nonfinite = (err & CG_ERR_NONFINITE) != 0;
  err &= ~CG_ERR_NONFINITE;
  if (err) return ir_fail(msg, msgn, "run: %s", err > 0 && err < NWHY ? why[err] : "bad data");
  return 0;
}

void cg_free(cg_program *p) {
  if (!p) return;
  free(p->bufs);
  free(p->scr);
  free(p->arena);
  free(p->prof_node);
  free(p->prof_ns);
  free(p->op_names);
  if (p->code) { /* the code goes with its last program */
    if (cg_memo_release(&p->code->sh)) code_free(p->code);
  } else {
    if (p->jit) {
      LLVMErrorRef e = LLVMOrcDisposeLLJIT(p->jit);
      if (e) LLVMConsumeError(e);
    }
    free(p->buf);
    free(p->out_node);
    free(p->consts);
    free(p->ir_text);
  }
  free(p);
}

void cg_get_stats(const cg_program *p, cg_stats *st) { *st = p->st; }

void cg_prefault(cg_program *p) {
  if (p && p->arena) memset(p->arena, 0, (size_t)(p->st.arena_bytes + 64) / 64 * 64); /* as allocated */
}

int cg_output_checked(const cg_program *p, int j) {
  return j >= 0 && j < p->noutputs && p->buf[p->out_node[j]].checked;
}

int cg_run_nonfinite(const cg_program *p) { return p->nonfinite; }

int cg_plan_stats(const ir_graph *g, int64_t *arena_bytes, int64_t *naive_bytes) {
  cg_program *p = program_new(g);
  if (!p) return -1;
  pl_plan plan;
  if (pl_build(g, &llvm_target, &plan)) {
    cg_free(p);
    return -1;
  }
  take_buffers(p, &plan, 0);
  pl_free(&plan);
  *arena_bytes = p->st.arena_bytes;
  *naive_bytes = p->st.naive_bytes;
  cg_free(p);
  return 0;
}

const char *cg_llvm_version(void) { return CG_LLVM_VERSION; }

char *cg_module_text(const cg_program *p) { return p->ir_text ? strdup(p->ir_text) : NULL; }

/* ---- the profile table ---- */

typedef struct {
  const char *name;
  double ns;
  int calls; /* per operator: kernel calls; per kernel call: its node */
} prof_row;

static int prof_cmp(const void *a, const void *b) {
  double x = ((const prof_row *)a)->ns, y = ((const prof_row *)b)->ns;
  return x < y ? 1 : x > y ? -1 : 0;
}

static void prof_append(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void prof_append(char **buf, size_t *len, size_t *cap, const char *fmt, ...) {
  if (!*buf) return;
  va_list ap;
  va_start(ap, fmt);
  int w = vsnprintf(*buf + *len, *cap - *len, fmt, ap);
  va_end(ap);
  if (w > 0) *len += (size_t)w < *cap - *len ? (size_t)w : *cap - *len - 1;
}

char *cg_profile_text(const cg_program *p) {
  if (!p->prof_node) return NULL;
  int nk = p->st.kernels;
  prof_row *ops = calloc((size_t)nk + 1, sizeof *ops), *ks = calloc((size_t)nk + 1, sizeof *ks);
  size_t cap = 4096 + (size_t)nk * 8, len = 0;
  char *buf = malloc(cap);
  if (!ops || !ks || !buf) {
    free(ops), free(ks), free(buf);
    return NULL;
  }
  buf[0] = '\0';
  double runs = p->prof_runs > 0 ? (double)p->prof_runs : 1, total = 0;
  int nops = 0;
  for (int s = 0; s < nk; s++) {
    const char *name = p->op_names[p->prof_node[s]];
    double ns = p->prof_ns[s] / runs;
    total += ns;
    ks[s] = (prof_row){name, ns, p->prof_node[s]};
    int j = 0;
    while (j < nops && strcmp(ops[j].name, name)) j++;
    if (j == nops) ops[nops++] = (prof_row){name, 0, 0};
    ops[j].ns += ns;
    ops[j].calls++;
  }
  qsort(ops, (size_t)nops, sizeof *ops, prof_cmp);
  qsort(ks, (size_t)nk, sizeof *ks, prof_cmp);
  prof_append(&buf, &len, &cap, "profile: %lld run(s)%s, %.3f ms per run in %d kernel calls\n",
              (long long)p->prof_runs, p->prof_cold_dropped ? " after the first" : "", total / 1e6, nk);
  prof_append(&buf, &len, &cap, "  %-16s %6s %12s %6s\n", "operator", "calls", "ms/run", "%");
  for (int j = 0; j < nops; j++)
    prof_append(&buf, &len, &cap, "  %-16s %6d %12.3f %5.1f%%\n", ops[j].name, ops[j].calls, ops[j].ns / 1e6,
                total > 0 ? 100 * ops[j].ns / total : 0);
  /* LATHE_PROFILE=N (N > 8) lists the N slowest calls instead of 8 */
  const char *e = getenv("LATHE_PROFILE");
  int top = e && atoi(e) > 8 ? atoi(e) : 8;
  prof_append(&buf, &len, &cap, "  slowest kernel calls:\n");
  for (int s = 0; s < nk && s < top; s++)
    prof_append(&buf, &len, &cap, "    node %-6d %-16s %10.3f ms\n", ks[s].calls, ks[s].name, ks[s].ns / 1e6);
  free(ops);
  free(ks);
  return buf;
}
