/* cg.h -- the CPU backend: a graph becomes one LLVM module (built with the
 * LLVM C API), optimised for the host CPU and JIT-compiled with ORC LLJIT.
 * Matrix products call OpenBLAS's sgemm through rt/blas.h (threaded by
 * the runtime pool, OpenBLAS itself single-threaded); intermediate tensors live in
 * one arena laid out by passes/memplan.c. No LLVM type leaks out of here. */
#ifndef LATHE_CG_H
#define LATHE_CG_H

#include <stddef.h>
#include <stdint.h>

#include "ir.h"

/* Whether the CPU backend has a kernel for op (leaves need none): the
 * op-coverage audit of the CUDA backend (test_cuda_exec) walks it. */
int cg_op_has_kernel(int op);

typedef struct cg_program cg_program;

typedef struct {
  int opt_level; /* 0..3, default 2 */
  int threads;   /* threads that optimise and compile the module, one part each: 0 = auto (as
                    many as the runtime pool has for a large module, one for a small one);
                    n > 0: n parts whatever the size (at most one per kernel) */
  int keep_ir;   /* keep the optimised module text for cg_module_text (bypasses both caches) */
  int no_cache;  /* compile afresh: neither the on-disk object cache nor a live program's code */
  int profile;   /* time every kernel (also on when LATHE_PROFILE is set and not "0"; not shared) */
  int gemm;      /* matrix products: a cg_gemm value (CG_GEMM_DEFAULT: LATHE_GEMM from the environment) */
} cg_options;

/* How large matrix products are computed. Small ones are generated loops
 * either way. GENERATED: tiled vector code in the module (codegen/llvm/
 * cg_gemm.c), no OpenBLAS call, for objects that must run without one.
 * CG_GEMM_DEFAULT takes LATHE_GEMM ("blas" or "generated"), else BLAS. */
enum cg_gemm { CG_GEMM_DEFAULT, CG_GEMM_BLAS, CG_GEMM_GENERATED };
/* LATHE_GEMM's choice (CG_GEMM_BLAS when unset or empty), or -1 when it
 * names neither (a message says so). */
int cg_gemm_from_env(char *msg, size_t msgn);

/* Compile g (not kept: the program copies what it needs). o may be NULL.
 * NULL with a message on failure.
 *
 * Within a process, compiled code is shared (cg_memo.c): while a program
 * compiled from a graph is alive, compiling an equal graph with the same
 * opt_level and threads returns a new program on the same code (the JIT, the
 * buffer plan, the constants), with its own arena, so the two run
 * independently; cg_stats.shared says so. The code goes with the last
 * program. keep_ir, profile and no_cache compile afresh. Thread-safe. */
cg_program *cg_compile(const ir_graph *g, const cg_options *o, char *msg, size_t msgn);

/* inputs[i] for g->inputs[i] (dtype as declared), params[i] for g->params[i]
 * (f32), outputs[i] caller-allocated buffers for g->outputs[i] (node dtype);
 * loss may be NULL (scalar f32). Returns 0, or -1 with a message (e.g. an
 * embedding or label index out of range). Not reentrant per program. */
int cg_run(cg_program *p, void *const *inputs, void *const *params, void *const *outputs, float *loss,
           char *msg, size_t msgn);

void cg_free(cg_program *p);
/* Writes the whole activation arena once, so that its pages are mapped now
 * rather than in the first cg_run (a program run many times: the training
 * step). Its contents before a run do not matter: every kernel writes its
 * buffer before reading it. */
void cg_prefault(cg_program *p);

/* Output j's kernel checks its values as it stores them (an output's fused
 * elementwise kernel: every optimizer update), and whether such a check saw
 * a NaN or an infinity in the last cg_run (which still returns 0: the caller
 * decides; the training step then finds and names the tensor). */
int cg_output_checked(const cg_program *p, int j);
int cg_run_nonfinite(const cg_program *p);
/* The kernels' status bit for it (or'd into the run's status word). */
enum { CG_ERR_NONFINITE = 0x100 };
/* *err codes below it (cg_jit.c names them): 4, an index of one_hot or gather outside its axis */
enum { CG_ERR_INDEX = 4 };

/* Compile times are wall clock. With several parts, opt and codegen are the
 * slowest part's (the parts run at the same time). A shared program
 * (cg_stats.shared) compiled nothing: its times are 0. */
typedef struct {
  double parse_ms;    /* planning, building the LLVM IR, splitting it into parts, cache look-up */
  double llvm_opt_ms; /* optimisation; 0 on a cache hit */
  double jit_ms;      /* linking the objects */
  double codegen_ms;  /* machine code (object) generation; 0 on a cache hit */
  int cache_hit;      /* 1: every part's object came from the on-disk cache */
  int parts;          /* parts the module was optimised and compiled in (threads) */
  int shared;         /* 1: the code of a live program compiled from an equal graph (cg_memo.c) */
  int kernels, kernels_unique;
  int64_t arena_bytes, naive_bytes;
} cg_stats;

void cg_get_stats(const cg_program *p, cg_stats *st);

/* Compiled codes listed for sharing (tests: 0 once every program is freed). */
int cg_memo_entries(void);

/* The memory plan the backend would make for g (planned peak and the naive
 * sum of every planned tensor), without compiling anything. 0, or -1 when
 * out of memory. */
int cg_plan_stats(const ir_graph *g, int64_t *arena_bytes, int64_t *naive_bytes);

/* With profiling on: per-operator and slowest-kernel times averaged over
 * the runs so far, as a malloc'd table; NULL when profiling is off. */
char *cg_profile_text(const cg_program *p);

/* The start-up check of the host (cg_compile runs it once per process):
 * llvm_features as LLVM lists them ("+avx2,+fma,..."), blas_core as
 * openblas_get_corename says; features listed in hide ("+avx512f,...", may
 * be NULL) count as absent, for tests. 0, or -1 with why. */
int cg_host_check_with(const char *llvm_features, const char *blas_core, const char *hide, char *msg, size_t msgn);

/* The plan's view of this backend (plan/plan.h): its scratch needs and
 * epilogue ops. Plans built with it are the plans cg_compile renders. */
struct pl_target;
const struct pl_target *cg_plan_target(void);

/* The LLVM version built against ("19.1.7"). */
const char *cg_llvm_version(void);

/* The optimised module as text (for tests and --dump); malloc'd, NULL if the
 * program was built without keeping it. */
char *cg_module_text(const cg_program *p);

/* ---- ahead of time (cg_aot.c, `lathe emit`) ---- */

/* --entry train_step: what the image says beyond a forward pass's
 * (rt/rt_image.h's lathe_rt_train; cg_aot fills in its offsets). */
typedef struct {
  int64_t nparams;      /* g->params: weights and optimizer state */
  int64_t seed;
  double beta1, beta2, grad_noise;
  int64_t sched;        /* LATHE_RT_SCHED_* */
  double lr, gamma, every, warmup, min_lr;
  const int *role;      /* per g->inputs: LATHE_RT_IN_* */
  const int *norm_kind; /* per g->inputs: -1 nothing recorded, 0 none, 1 standard, 2 minmax */
  const int *commit;    /* per g->outputs: the parameter output "new.X" replaces, -1 */
} cg_aot_train;

typedef struct {
  const char *name;            /* MODEL: a C identifier, the prefix of every symbol */
  int weights_file;            /* the weights go to a file MODEL_load_weights reads, not into the object */
  const float *const *params;  /* per g->params: the weights */
  const float *const *shift;   /* per g->inputs: the normalisation the weights carry (NULL: none) */
  const float *const *scale;
  const int64_t *width;        /* per g->inputs: values per example of shift and scale */
  int opt_level;               /* LLVM's, 0..3: cg_compile's default is 2 */
  const cg_aot_train *train;   /* NULL: g is a forward pass; else g is the training step's program */
  const char *triple;          /* the target (cross-compilation); NULL: this host's */
  const char *cpu;             /* the target's CPU; NULL: the host's with a NULL triple, else "generic" */
  int gemm;                    /* matrix products: a cg_gemm value (DEFAULT as cg_compile: LATHE_GEMM, else BLAS) */
} cg_aot_spec;

typedef struct {
  unsigned char *obj;   /* the object file */
  size_t obj_len;
  unsigned char *wfile; /* weights_file: the weights file's bytes */
  size_t wfile_len;
  int64_t work_bytes;   /* MODEL_WORKSPACE_BYTES */
  int64_t nargs;        /* MODEL_forward's inputs (the model's inputs less its targets); train: inputs and targets */
  char target[256];     /* "TRIPLE (CPU)": what the object runs on */
} cg_aot_result;

/* g's forward program as an object for the host CPU (or s->triple's, s->cpu),
 * with the same plan and code as cg_compile's, and the image and wrappers
 * liblathe_rt's runner needs (rt/rt_image.h). 0, or -1 with msg (r then
 * empty). */
int cg_aot_compile(const ir_graph *g, const cg_aot_spec *s, cg_aot_result *r, char *msg, size_t msgn);
void cg_aot_result_free(cg_aot_result *r);

#endif
