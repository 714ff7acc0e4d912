/* cg_internal.h -- shared by the codegen/llvm sources: the module being built, the
 * kernel being emitted, and the small IR-building vocabulary every op
 * emitter is written in (loops, typed loads and stores, float math). */
#ifndef LATHE_CG_INTERNAL_H
#define LATHE_CG_INTERNAL_H

#include <llvm-c/Core.h>

#include "cg.h"
#include "ir.h"
#include "plan/plan.h"

typedef LLVMValueRef V;

/* A declared external or intrinsic function: calls need its type. */
typedef struct {
  V fn;
  LLVMTypeRef ty;
} cg_fn;

/* The module under construction. */
typedef struct {
  LLVMContextRef C;
  LLVMModuleRef M;
  LLVMBuilderRef B;
  LLVMTypeRef i1, i8, i32, i64, f32, f64, ptr, vd;
  cg_fn sgemm, logf_, powf_, log1pf_;
  cg_fn sgemm_packed; /* lathe_rt_sgemm_packed: declared in JIT modules only */
  cg_fn sgemm_bias;   /* lathe_rt_sgemm_bias: the same */
  cg_fn sqrt_, fabs_;
  cg_fn parfor; /* lathe_rt_parallel_for(n, grain, body, captures): the runtime pool */
  int npar;     /* outlined parallel bodies so far (for their names) */
  const char *cpu, *features; /* attached to every function */
  int vw;                     /* f32 lanes of the explicit vector code (16 with AVX-512) */
  int gemm_gen;               /* products are generated code (cg_gemm.c), never lathe_rt_sgemm calls */
  int jit;                    /* for this process (cg_jit.c), not an emitted object: may ask for packed weights */
  const char *sym_prefix;     /* before every kernel's name ("" for the JIT; "MODEL_" emitted) */
} cg_mod;

/* Kernel operand limits and the descriptions of grouped kernels are the
 * plan's (plan/plan.h): the plan decides the groups, these files render them. */
enum { CG_MAXARGS = PL_MAXARGS, CG_MAXFUSE = PL_MAXFUSE, CG_MAXMULTI = PL_MAXMULTI };
/* a kernel function's arguments at most: every parameter's update has up
 * to PL_MAXUPD operands (plan.h), then the scratch and the status word */
enum { CG_MAXKARGS = PL_MAXUPD + 3 };
enum { CG_EPI_UNARY = PL_EPI_UNARY, CG_EPI_ROW = PL_EPI_ROW, CG_EPI_FULL = PL_EPI_FULL,
       CG_EPI_PROGRAM = PL_EPI_PROGRAM };
/* A matrix product with the elementwise steps after it applied before each
 * element is stored. Kernel arguments: the last node's result, the
 * product's two inputs, then one per binary step. */
typedef pl_epilogue cg_fuse;

/* The kernel being emitted: void k(out, in0, ..., scratch, err).
 * arg[0] is the result, arg[1 + j] input j; dt[] their dtypes. */
typedef struct {
  cg_mod *m;
  LLVMBuilderRef B;
  V fn;
  LLVMBasicBlockRef entry;
  const ir_graph *g;
  const ir_node *n;
  int nargs;
  V arg[CG_MAXKARGS];
  ir_dtype dt[CG_MAXKARGS];
  const ir_shape *sh[CG_MAXKARGS];
  const cg_fuse *fuse; /* non-NULL: n is a matrix product with these steps fused after it */
  V scratch; /* byte pointer to this node's scratch */
  V err;     /* i32* status word: kernels store non-zero on bad data */
  V part;    /* inside a cg_parallel_for body: the part (i64, < the pool size), else NULL */
  int check_finite; /* an output's IR_FUSED kernel: or CG_ERR_NONFINITE into *err on a non-finite result */
} cg_k;

/* Emitters: one per op (cg_ops.c). scratch_bytes says what a node needs. */
typedef void (*cg_emit_fn)(cg_k *k);
extern const cg_emit_fn cg_emitters[IR_NOPS];
int64_t cg_scratch_bytes(const ir_graph *g, const ir_node *n);
/* The fused product kernel (k->fuse set), and whether a unary op can be a
 * fused step (its code works on vectors: the plan asks, cg_plan_target). */
void cg_emit_fused(cg_k *k);
int cg_fusable_unary(int op);
/* A unary map's value on an f32 or <N x float> x (cg_ops.c's table). */
V cg_unary_value(cg_k *k, int op, V x, const ir_attr *a);
V cg_unary_deriv(cg_k *k, int op, V x, const ir_attr *a); /* f'(x), cg_grad.c */
/* cg_fused.c: the IR_FUSED kernel; and a fused node fz that reads the
 * product as a matrix product's epilogue (the plan chose it: its other
 * inputs full, scalar, per row or per column): its value at (row, col)
 * given the product's value v. arg[j]: the kernel argument of fz's input
 * j, -1 for the product. */
void cg_emit_fused_op(cg_k *k);
/* Several fused nodes of one shape in one loop (an Adam update's new m, new
 * v and new weight), for each of nsib groups (every parameter's update):
 * each member's result is kernel argument mu->res[m], each other input
 * mu->inop[q]; a member reading an earlier member takes its value from
 * registers. check[m]: flag a non-finite result of member m. The groups'
 * elements are one parallel loop: its parts cover group after group. */
typedef pl_siblings cg_multi;
void cg_emit_fused_multi(cg_k *k, const cg_multi *sib, int nsib);
/* layernorm(p + q), storing x = p + q too: arguments y, p, q, w, b, x (cg_ops.c) */
void cg_emit_layernorm_add(cg_k *k);
/* r + layernorm_grad's dx: arguments out, x, w, dy, r (cg_grad.c) */
void cg_emit_layernorm_grad_add(cg_k *k);
V cg_fused_epilogue(cg_k *k, const ir_node *fz, const int *arg, V v, V row, V col, int w);
/* The backward ops' emitter (cg_grad.c): dispatches on its own table. */
void cg_emit_grad(cg_k *k);
/* The training-step ops' emitter (cg_opt.c), reached through cg_emit_grad. */
void cg_emit_opt(cg_k *k);
/* The collectives' emitter (cg_comm.c): calls into rt/rt_comm.c. */
void cg_emit_comm(cg_k *k);
/* The decode-step ops' emitter (cg_decode.c), reached through cg_emit_opt. */
void cg_emit_decode(cg_k *k);
/* NULL if the backend can emit n, else why not. */
const char *cg_unsupported(const ir_graph *g, const ir_node *n);

/* ---- cg_emit.c: vocabulary ---- */
void cg_mod_types(cg_mod *m);
V ci(cg_k *k, int64_t v);      /* i64 constant */
V ci32(cg_k *k, int64_t v);    /* i32 constant */
V cf(cg_k *k, double v);       /* f32 constant */
V cd(cg_k *k, double v);       /* f64 constant */
V cg_gep(cg_k *k, V base, LLVMTypeRef ty, V idx);  /* &((ty *)base)[idx] */
V cg_fptr(cg_k *k, V base, V idx);                 /* &((float *)base)[idx], as ptr */
V cg_ldf(cg_k *k, int a, V idx);                   /* arg a's element as f32 */
V cg_ldi(cg_k *k, int a, V idx);                   /* arg a's element as i64 */
void cg_st(cg_k *k, int a, V idx, V v);            /* f32 or i64 value, converted */
V cg_ldp(cg_k *k, V p, V idx);                     /* float at p[idx] */
void cg_stp(cg_k *k, V p, V idx, V v);             /* float to p[idx] */
V cg_call(cg_k *k, cg_fn f, V *args, unsigned n);
V cg_call1(cg_k *k, cg_fn f, V x);

/* Loops over [lo, hi) with an i64 induction variable l.iv:
 *   CG_FOR(k, l, ci(k, 0), ci(k, n)) { ... l.iv ... }                      */
typedef struct {
  LLVMBasicBlockRef head, exit;
  V iv;
  int once;
} cg_loop;
cg_loop cg_loop_open(cg_k *k, V lo, V hi);
void cg_loop_close(cg_k *k, cg_loop *l);
#define CG_FOR(k, l, lo, hi) for (cg_loop l = cg_loop_open(k, lo, hi); l.once; cg_loop_close(k, &l))

/* Mutable scalars: an alloca in the entry block (promoted to SSA by SROA). */
V cg_var(cg_k *k, LLVMTypeRef ty, V init);
V cg_get(cg_k *k, V var, LLVMTypeRef ty);
void cg_set(cg_k *k, V var, V v);

/* Float math on f32 values or <N x float> vectors (generic over the type of
 * x, except cg_log: scalar). Constants of the type of like / ty: */
V cg_splat(cg_k *k, LLVMTypeRef ty, V c);
V cfl(cg_k *k, V like, double v);
V cg_intr(cg_k *k, const char *name, V *args, unsigned n); /* overloaded on args[0]'s type */
V cg_fabs(cg_k *k, V x);
V cg_exp(cg_k *k, V x);
V cg_erfc(cg_k *k, V x);
V cg_log(cg_k *k, V x);
V cg_tanh(cg_k *k, V x);
V cg_sigmoid(cg_k *k, V x);
V cg_sqrt(cg_k *k, V x);
V cg_fmax_nan(cg_k *k, V acc, V v); /* v > acc || isnan(v) ? v : acc */
V cg_fmin_nan(cg_k *k, V acc, V v); /* v < acc || isnan(v) ? v : acc */
V cg_fext_nan(cg_k *k, int op, V acc, V v); /* IR_MIN: cg_fmin_nan, else cg_fmax_nan */
V cg_log_sum(cg_k *k, V x);         /* log x, inline, for x >= 1 or NaN / +inf (cg_emit.c) */
void cg_flag_err(cg_k *k, V bad, int code);  /* *err = code when bad (i1) */

/* A loop nest over dims[0..rank) with nops linear offsets, operand j at
 * base[j] + sum iv_d * strides[j][d]; adjacent dims that are contiguous for
 * every operand are merged first. body gets the offsets (i64). */
typedef void (*cg_body_fn)(cg_k *k, V *off, void *ctx);
void cg_nest(cg_k *k, int rank, const int64_t *dims, int nops, int64_t strides[][IR_MAXDIM],
             const int64_t *base, cg_body_fn body, void *ctx);
/* Row-major strides of s, with 0 for axes of size 1 that broadcast against
 * out (s right-aligned to out's rank). */
void cg_bcast_strides(const ir_shape *out, const ir_shape *s, int64_t *st);
void cg_contig_strides(const ir_shape *s, int64_t *st);

/* Explicit vector loops over a contiguous f32 row: body(k, i, w, ctx) for
 * i = 0, w, 2w.. with w = the module's vector width while whole vectors fit,
 * then w = 1 for the tail; n is an i64 value (may be known only at run
 * time). cg_vld/cg_vst move w floats at ((float *)p)[i]; cg_bcast splats. */
typedef void (*cg_vbody)(cg_k *k, V i, int w, void *ctx);
void cg_vfor(cg_k *k, V n, cg_vbody body, void *ctx);
V cg_vld(cg_k *k, V p, V idx, int w);
void cg_vst(cg_k *k, V p, V idx, V v, int w);
V cg_bcast(cg_k *k, V x, int w);
/* A reduction accumulator with a vector part (w lanes) and a scalar part
 * (the tail), folded in a fixed order so reruns are bit-identical. */
typedef struct {
  V vec, one;
  LLVMTypeRef vt, st;
} cg_acc;
typedef V (*cg_fold_fn)(cg_k *k, V a, V b);
cg_acc cg_acc_new(cg_k *k, LLVMTypeRef scalar, double init);
V cg_acc_get(cg_k *k, const cg_acc *a, int w);
void cg_acc_set(cg_k *k, const cg_acc *a, int w, V v);
V cg_acc_fold(cg_k *k, const cg_acc *a, cg_fold_fn f);
V cg_fold_add(cg_k *k, V a, V b);
V cg_fold_max(cg_k *k, V a, V b); /* b > a ? b : a (NaN never taken) */

/* ---- cg_seqcall.c: flash attention and backward through time, calls to
 * liblathe_rt's C kernels (lathe_rt_attn_fwd, lathe_rt_attn_grad,
 * lathe_rt_rec_grad) ---- */
void cg_emit_attention(cg_k *k);
void cg_emit_lstm(cg_k *k);     /* LSTM (rnn: cg_ops.c) */
void cg_emit_gru(cg_k *k);      /* GRU */
void cg_emit_seq_grad(cg_k *k); /* ATTENTION_GRAD, RNN_GRAD, LSTM_GRAD, GRU_GRAD, ATTENTION_SAVE, ATTENTION_GRAD_SAVED */
int64_t cg_seq_scratch_bytes(const ir_graph *g, const ir_node *n);

/* A call of liblathe_rt's `name`(ptrs..., i64s...), declared on first use
 * (NULL pointers pass as null); cg_jit.c resolves the name (cg_seqcall.c). */
void cg_call_rt(cg_k *k, const char *name, V *ptrs, int np, const int64_t *ints, int ni);

/* ---- cg_norm.c: batchnorm (both forms), groupnorm, rmsnorm and norm_grad
 * as calls to lathe_rt_norm ---- */
void cg_emit_norm(cg_k *k);
/* cross_entropy and its gradient with class weights or an ignore_index, as
 * calls to lathe_rt_cross_entropy (cg_ops.c) */
void cg_emit_cross_entropy_rt(cg_k *k);
/* ---- cg_quant.c: qmatmul, a call to lathe_rt_qmatmul (rt/rt_quant.c) ---- */
void cg_emit_qmatmul(cg_k *k);
/* cg_qconv.c: qconv2d, a call to lathe_rt_qconv2d (rt/rt_qconv.c) */
void cg_emit_qconv2d(cg_k *k);
int64_t cg_qconv_scratch_bytes(const ir_graph *g, const ir_node *n);
int64_t cg_quant_scratch_bytes(const ir_graph *g, const ir_node *n);
/* cg_qdq.c: quantize and dequantize, calls to lathe_rt_quantize and
 * lathe_rt_dequantize (rt/rt_qdq.c) */
void cg_emit_qdq(cg_k *k);

/* ---- cg_mha.c: attention with a mask, a context, rotary embeddings or
 * grouped key/value heads (IR_MHA) and its backward (IR_MHA_GRAD) as calls
 * to liblathe_rt (lathe_rt_mha_fwd, lathe_rt_mha_grad) ---- */
void cg_emit_mha(cg_k *k);
int64_t cg_mha_scratch_bytes(const ir_graph *g, const ir_node *n);

/* ---- cg_conv.c: conv2d and its backward as chunked im2col GEMMs ---- */
int cg_emit_conv_grad(cg_k *k); /* 1 if emitted; 0 (nothing emitted) for non-f32 operands */
int64_t cg_conv_scratch_bytes(const ir_graph *g, const ir_node *n);

/* ---- cg_host.c: start-up checks (once per process) ----
 * 0 when the host runs what LLVM generates for llvm_features and OpenBLAS's
 * kernel, and OpenBLAS computes a small product right; else -1 and why. */
int cg_host_check(const char *llvm_features, char *msg, size_t msgn);

/* ---- cg_cache.c: on-disk object cache (best effort: never an error) ---- */
enum { CG_KEYLEN = 33 }; /* 32 hex digits and a NUL */
void cg_cache_key(const char *const *parts, int nparts, char key[CG_KEYLEN]);
void *cg_cache_load(const char *key, size_t *len); /* malloc'd object, NULL if absent or corrupt */
void cg_cache_store(const char *key, const void *obj, size_t len);

/* target-cpu, target-features and the vector width preference */
void cg_set_fn_attrs(cg_mod *m, V fn);

/* for i in [0, n): body(k2, i) -- split across the runtime thread pool in
 * fixed parts of at least grain iterations (runs on one thread when n is
 * smaller than two grains). The body is emitted into its own function; its
 * cg_k sees the kernel's arguments, scratch and err as usual, and k2->part
 * names its part (for per-part scratch; parts < cg_pool_parts()).
 * Iterations must be independent. A product the body calls runs whole
 * in its part (lathe_rt_sgemm splits only outside pool loops). */
typedef void (*cg_par_body)(cg_k *k, V i, void *ctx);
void cg_parallel_for(cg_k *k, int64_t n, int64_t grain, cg_par_body body, void *ctx);
int cg_pool_parts(void);

/* lathe_rt_sgemm(RowMajor, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc):
 * cblas_sgemm's meaning, split over the runtime pool (rt/blas.h) */
void cg_sgemm(cg_k *k, int ta, int tb, int64_t M, int64_t N, int64_t K, double alpha, V A, int64_t lda,
              V Bm, int64_t ldb, double beta, V Cm, int64_t ldc);
/* C = A B + bias as one packed product (lathe_rt_sgemm_bias) where the
 * run-time takes it: returns the block after both ways, the builder left
 * where the caller emits the other way (fill C with the bias, cg_sgemm with
 * beta = 1); NULL (nothing emitted) where cg_sgemm would not call the
 * run-time or the module is not a JIT's. */
LLVMBasicBlockRef cg_sgemm_bias_first(cg_k *k, int ta, int tb, int64_t M, int64_t N, int64_t K, V A, int64_t lda,
                                      V Bm, int64_t ldb, V bias, V Cm, int64_t ldc);
/* cg_sgemm's product as generated code, no library call (cg_gemm.c): what
 * cg_sgemm emits when k->m->gemm_gen */
void cg_gemm_generated(cg_k *k, int ta, int tb, int64_t M, int64_t N, int64_t K, double alpha, V A, int64_t lda,
                       V Bm, int64_t ldb, double beta, V Cm, int64_t ldc);
/* M*N*K at or below this: the product is a generated loop, not a lathe_rt_sgemm call */
enum { CG_SMALL_GEMM = 1 << 20 };
/* cg_sgemm, then f(value, row, col) applied to each element of C before
 * it is stored (value: w lanes of columns col..col+w-1 of row row). */
typedef V (*cg_epi_fn)(cg_k *k, V v, V row, V col, int w, void *ctx);
typedef struct {
  cg_epi_fn fn;
  void *ctx;
} cg_epi;
/* v (w lanes) through k->fuse's steps, when they are all unary (a
 * convolution's chain, plan_group.c): what a fused conv2d applies to each
 * output element */
V cg_epi_unary(cg_k *k, V v, int w);
void cg_sgemm_epi(cg_k *k, int ta, int tb, int64_t M, int64_t N, int64_t K, double alpha, V A, int64_t lda,
                  V Bm, int64_t ldb, double beta, V Cm, int64_t ldc, const cg_epi *epi);
/* rows x cols row-major float matrix at p (row stride ld) := bias[j] */
void cg_fill_rows(cg_k *k, V p, int64_t rows, int64_t cols, int64_t ld, V bias);

/* ---- builder shorthands shared by the emitters (cg_ops.c, cg_grad.c,
 * cg_opt.c, cg_decode.c): integer index arithmetic is NSW, floats plain. */
static inline V cg_add(cg_k *k, V a, V b) { return LLVMBuildNSWAdd(k->B, a, b, ""); }
static inline V cg_mul(cg_k *k, V a, V b) { return LLVMBuildNSWMul(k->B, a, b, ""); }
static inline V cg_muli(cg_k *k, V a, int64_t b) { return cg_mul(k, a, ci(k, b)); }
static inline V cg_fadd(cg_k *k, V a, V b) { return LLVMBuildFAdd(k->B, a, b, ""); }
static inline V cg_fsub(cg_k *k, V a, V b) { return LLVMBuildFSub(k->B, a, b, ""); }
static inline V cg_fmul(cg_k *k, V a, V b) { return LLVMBuildFMul(k->B, a, b, ""); }
static inline V cg_fdiv(cg_k *k, V a, V b) { return LLVMBuildFDiv(k->B, a, b, ""); }
static inline V cg_tod(cg_k *k, V f) { return LLVMBuildFPExt(k->B, f, k->m->f64, ""); }
static inline V cg_tof(cg_k *k, V d) { return LLVMBuildFPTrunc(k->B, d, k->m->f32, ""); }
static inline V cg_sel(cg_k *k, V c, V a, V b) { return LLVMBuildSelect(k->B, c, a, b, ""); }
static inline V cg_fcmp(cg_k *k, LLVMRealPredicate p, V a, V b) { return LLVMBuildFCmp(k->B, p, a, b, ""); }

#endif
