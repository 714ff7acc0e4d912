/* program.h -- internals of the public API shared by runtime/api_*.c:
 * the model and program objects and the error helpers. */
#ifndef LATHE_PROGRAM_H
#define LATHE_PROGRAM_H

#include "lathe.h"
#include "frontend/frontend.h"
#include "ir/ir.h"
#include "codegen/llvm/cg.h"
#include "codegen/cuda/cu_exec.h"
#include "runtime/data.h"
#include "runtime/runtime.h"
#include "runtime/gemm_pack.h"

struct lathe_model {
  fe_model *fe;
  int64_t *vals; /* per symbolic dim; 0 = unbound */
};

typedef struct api_pre api_pre; /* api_preprocess.c */

struct lathe_program {
  arena A;            /* owns the graph */
  ir_graph g;
  lathe_options opt;
  float **params;     /* per g.params: numel floats */
  int weights_set;
  lathe_tensor *in;   /* per g.inputs: the caller's data, copied */
  int *in_set;
  const void **bound; /* per g.inputs: the caller's memory (lathe_bind_input), else NULL */
  api_pre *pre;       /* per g.inputs: the normalisation the weights carry (NULL: none) */
  double **vals;      /* interpreter: value of every node after a run */
  cg_program *cg;     /* llvm backend: the compiled program */
  gpk_table *pack;    /* llvm inference: products by constant weights on packed weights (gemm_pack.h) */
  int pack_tried;     /* pack was made (or found impossible) at the first run */
  cu_exec *cux;       /* cuda backend: the compiled program on its device (outbufs, loss as llvm's) */
  void **outbufs;     /* llvm backend: per g.outputs, in the node's dtype */
  float loss;         /* llvm backend: the loss after a run */
  int ran;
  int missing_target; /* last run zero-filled a target: no loss to report */
  /* A training step (runtime/train_step.c): */
  int is_train;
  int pipe_stage;        /* a pipeline stage's program (passes/stage.h): a weights file has more than it */
  ir_train train;          /* effective settings (block, overrides, defaults) */
  int64_t step;            /* steps taken */
  int64_t total_steps;     /* for the schedule (0: unknown, no cosine decay) */
  int64_t steps_per_epoch;
  int *commit;             /* per output: the parameter "new.X" updates, or -1 */
  int committed;           /* the last step was committed: its "new.X" values are params[X] (their
                            * buffers changed places, train_step.c); api_output_data knows */
  lathe_pass_stats pass_stats; /* what the graph passes did (api_passes.c) */
};

/* api_program.c: lathe_compile in two halves, so passes (autodiff, the
 * optimizer) can transform the graph in between. */
lathe_program *api_program_lower(lathe_model *m, const lathe_options *o, lathe_error *err);
int api_program_finish(lathe_program *p, lathe_error *err); /* frees p on failure */
/* api_bind.c: where a run reads input i (set or bound: in_set[i]): the
 * caller's memory for a bound input, else the program's copy (a bound input
 * whose weights carry preprocessing is copied and normalised first).
 * NULL with err set when that copy finds no memory. */
const void *api_input_data(lathe_program *p, int i, lathe_error *err);
/* Forget input i's binding (lathe_set_input takes its place). */
void api_unbind(lathe_program *p, int i);
/* api_program.c: shape equality and the shape as text, for messages. */
int api_same_shape(const lathe_tensor *t, const ir_shape *s);
void api_tensor_shape_str(const lathe_tensor *t, char *buf, size_t n);
/* Run the graph once (no training-step bookkeeping). */
int api_run_core(lathe_program *p, lathe_error *err);
/* Whether every value of output o is finite. */
int api_output_finite(const lathe_program *p, int o);
/* train_step.c: compile a training step with these settings (NULL: the
 * train block with defaults); one lathe_run = one step. */
lathe_program *api_compile_train(lathe_model *m, const lathe_options *o, const ir_train *settings,
                                 lathe_error *err);
int api_train_run(lathe_program *p, lathe_error *err);
/* Every rank, once its training step is compiled: the places for the
 * step's overlapped sums are set up now (collective), not inside the first
 * step, whose time would then carry them (runtime/dist.c). */
void api_dist_reserve(const lathe_program *step);
/* Maps a program's memory that its first run would otherwise fault in page
 * by page (the native backends' arena and output buffers): for the
 * training step, once, at set-up (api_program.c). */
void api_prefault(lathe_program *p);
/* A pipeline stage's update program from p (lowered, its graph cut to the
 * stage): its parameters, an input "grad.X" per trainable X, the optimizer
 * of t; api_train_run runs and commits it (train_step.c). */
lathe_program *api_compile_update(lathe_program *p, const ir_train *t, lathe_error *err);

/* Allocate the parameter buffers (zeroed) if not yet done. */
int api_alloc_params(lathe_program *p, lathe_error *err);
/* The host's parameters were (or may have been) written: the cuda
 * backend, which keeps them on the device, uploads them before the next run;
 * the llvm backend's packed weights (runtime/gemm_pack.h) are packed again.
 * Every path that writes a program's parameters calls it. */
static inline void api_params_changed(const lathe_program *p) {
  if (p->cux) cu_exec_params_changed(p->cux);
  gpk_invalidate(p->pack); /* packed weights are made again at the next run */
}
/* Bytes of one element of a parameter's buffer: 4 (f32), or its dtype's
 * size for stored (quantized) weights (runtime/api_quant.c). */
size_t api_param_elem_size(const ir_param *pr);
/* static int8's calibrated input scales, by the f32 weight's name
 * (runtime/train_calib.c fills scale) */
typedef struct {
  int n;
  char **name;
  float *scale;
} api_calib;
void api_calib_free(api_calib *cal);
/* Every weight of dst from src's by name; a stored (quantized) tensor src
 * lacks is made from the f32 weight it quantizes (the decode program of
 * generation quantizes products the full program runs in f32: attention's
 * projections). dst's buffers allocated; its state left zero. cal may be
 * NULL: static int8 products without a calibrated scale quantize their
 * rows at run time, as int8-dynamic does. */
int api_fill_params(lathe_program *dst, const lathe_program *src, const api_calib *cal, lathe_error *err);
/* Every weight passes/quantize.c kept in f32 (ir_param.from_quant) made
 * from its stored tensors: the dequantized values, s * q, exactly those the
 * quantized kernels' reference multiplies (runtime/api_quant.c). Call after
 * the stored tensors change (load, init, fill). */
void api_derive_params(lathe_program *p);
/* When f holds quantized tensors that the program was not compiled for (or
 * another mode's): an error saying so, -1; else 0 (runtime/api_quant.c). */
int api_quant_mismatch(const lathe_program *p, const char *path, const rt_st_file *f, lathe_error *err);
/* The "__metadata__" pairs a weights file of p carries (the w8/w4 layout
 * version), *n of them (runtime/api_quant.c). */
const char *const *api_quant_meta(const lathe_program *p, int *n);
/* api_passes.c: run the graph pipeline p->opt asks for (api_program_finish
 * calls it once, before verifying and compiling). 0, or -1 with err set. */
int api_run_passes(lathe_program *p, lathe_error *err);
/* api_emit.c: what `lathe emit` asks for besides the program. */
typedef struct {
  int weights_file;   /* the weights to dir/MODEL.weights, left out of the object */
  const char *triple; /* --target: cross-compile for this LLVM triple; NULL: this host */
  const char *cpu;    /* --cpu: the target's CPU; NULL: the host's, or "generic" with a triple */
  int gemm;           /* a cg_gemm value: CG_GEMM_GENERATED needs no BLAS; DEFAULT: LATHE_GEMM */
} api_emit_opts;
/* `lathe emit`: p's forward pass (llvm backend, weights set) as
 * dir/MODEL.o, dir/libMODEL.a, dir/MODEL.h (and dir/MODEL.weights with
 * o->weights_file). 0 or an error. */
int api_emit(const lathe_program *p, const char *dir, const api_emit_opts *o, lathe_error *err);
/* The weights emit embeds: lathe_weights_load for a forward pass; for a
 * training step (p->is_train, from lathe_compile_train: api_emit then
 * writes MODEL_train_step and the state functions) the weights with the
 * optimizer state at zero, as lathe train --weights starts. */
int api_emit_weights(lathe_program *p, const char *path, lathe_error *err);
/* api_plan.c: write the kernel plan of p's graph to dir/plan.txt. */
int api_dump_plan(const lathe_program *p, const char *dir, lathe_error *err);
/* Copy the pass-pipeline fields (opt_level*, passes, print_after,
 * dump_dir, time_passes, pass_log) of src into dst; src may be NULL. */
void api_copy_pass_options(lathe_options *dst, const lathe_options *src);

/* Output o's values after a run, llvm backend (a committed training step's
 * "new.X" values live in params[X]: train_step.c). */
const void *api_output_data(const lathe_program *p, int o);

/* api_preprocess.c: the preprocessing the weights carry (see there for the
 * file format). api_pre_read parses and checks a file's "__preprocess.*"
 * tensors against p's inputs into a new array (NULL when there are none)
 * without touching p; api_pre_replace installs it (freeing the old one). */
int api_pre_is_name(const char *name);
int api_pre_read(const lathe_program *p, const char *path, const rt_st_file *f, api_pre **out, lathe_error *err);
void api_pre_replace(lathe_program *p, api_pre *pre);
void api_pre_discard(const lathe_program *p, api_pre *pre); /* free one not installed */
/* Refuse a file's preprocessing (pre, from api_pre_read of path) whose kind
 * differs from p's for an input both carry (resuming with another --normalize). */
int api_pre_check_kinds(const lathe_program *p, const api_pre *pre, const char *path, lathe_error *err);
/* Attach normalisation fitted by training to input `input` (f32 features). */
int api_pre_set(lathe_program *p, const char *input, const rt_norm *nm, lathe_error *err);
/* Normalise input i's n values in place (its dtype's buffer), if carried. */
void api_pre_apply(const lathe_program *p, int input, void *data, int64_t n);
/* For writers: how many entries, and filling e[0..count) (names and kinds
 * live in the returned block: free() it after writing; NULL on no memory). */
int api_pre_count(const lathe_program *p);
void *api_pre_entries(const lathe_program *p, rt_st_entry *e);
void api_pre_free(lathe_program *p);

/* Set err (format) and return code. */
int api_fail(lathe_error *err, lathe_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Set err to a malloc'd message (ownership passes to err) and return code. */
int api_fail_take(lathe_error *err, lathe_status code, char *msg);

/* api_args.c: argument guards of the public entry points. Each sets err to
 * "FN: what is wrong" and returns LATHE_EUSER (0 when the argument is fine). */
#define API_MAX_EPOCHS 1000000000LL /* keeps steps per epoch * epochs far from overflow */
int api_null(lathe_error *err, const char *fn, const char *what); /* "FN: WHAT is NULL" */
int api_dtype_ok(lathe_dtype t);
/* dtype in the enum, rank 0..LATHE_MAXDIM, dimensions >= 0, a size that fits,
 * data unless empty. */
int api_check_tensor(lathe_error *err, const char *fn, const char *what, const lathe_tensor *t);
int api_check_backend(lathe_error *err, const char *fn, lathe_backend b);
int api_check_options(lathe_error *err, const char *fn, const lathe_options *o); /* o may be NULL */
int api_check_train_options(lathe_error *err, const char *fn, const lathe_train_options *o);

#endif
