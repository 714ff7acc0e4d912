/* lathe.h -- the public C API of Lathe, a neural-network compiler.
 *
 * Life of a model:
 *   lathe_model   *m = lathe_model_load("mlp.nn", &err);    parse + check
 *   lathe_model_bind(m, "batch", 64, &err);                 or bind from arrays
 *   lathe_program *p = lathe_compile(m, &opts, &err);       static graph + code
 *   lathe_weights_load(p, "mlp.safetensors", &err);         or lathe_weights_init
 *   lathe_set_input(p, "x", &x, &err);
 *   lathe_run(p, &err);
 *   lathe_get_output(p, "probs", &y, &err);
 *
 * Every fallible call returns 0 on success and a non-zero lathe_status on
 * failure, with a heap-allocated message in err (free it with
 * lathe_error_clear). The library never exits the process and never prints.
 * A lathe_error must start zeroed: lathe_error err = {0};
 *
 * Arguments: err may be NULL in every call (the status still comes back,
 * without a message); every other pointer must not be NULL unless its
 * declaration says it may. A NULL where one is required, a value outside
 * its enum (dtype, backend), a tensor that cannot be (rank outside 0 to
 * LATHE_MAXDIM, a negative dimension, a size that overflows, NULL data with
 * elements) or a setting outside its range (NaN, negative, huge) is
 * LATHE_EUSER with a message naming the function and what is wrong:
 *   "lathe_set_input: the tensor is NULL"
 *   "lathe_set_input: the tensor has rank 9; the rank must be 0 to LATHE_MAXDIM (8)"
 *   "lathe_compile: backend 7 is not a lathe_backend (LATHE_BACKEND_INTERP, ...)"
 *   "lathe_train: lr must be 0 (the train block's) or a finite number > 0, got nan"
 * Calls without a lathe_error say so by their return value, as documented
 * at each: NULL for a name, -1 for a count, LATHE_EUSER for a status.
 *
 * Threads: the library keeps no hidden per-process state that calls could
 * race on (its shared tables -- the program cache, the on-disk object
 * cache, LLVM's one-time set-up, the worker pool -- are locked or made
 * once), so different threads may load, compile, run and free DIFFERENT
 * models and programs at the same time. One object is never used from two
 * threads at once: a lathe_model or lathe_program belongs to one thread at
 * a time (the caller locks if it hands one over); read-only queries of it
 * (names, shapes, stats) may run together, but not beside a call that
 * changes it (bind, weights, inputs, run). Programs compiled from one model
 * are independent of it and of each other. Kernels of runs in different
 * threads share one worker pool: a run that finds it busy runs its parallel
 * loops on its own thread instead of waiting (tests/test_api_threads.c).
 */
#ifndef LATHE_H
#define LATHE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LATHE_VERSION "0.1.0"
/* The LLVM version the CPU backend was built against ("19.1.7"; CMake's
 * LATHE_LLVM_VERSION picks 19 or 14). */
const char *lathe_llvm_version(void);
#define LATHE_MAXDIM 8

typedef enum {
  LATHE_OK = 0,
  LATHE_EUSER = 1,     /* bad model, bad file, bad argument: message says which */
  LATHE_EINTERNAL = 2, /* a bug in Lathe */
  LATHE_ENOMEM = 3
} lathe_status;

typedef struct {
  lathe_status code;
  char *message; /* NULL when code == LATHE_OK; may span several lines */
} lathe_error;

void lathe_error_clear(lathe_error *err);

/* Same order as the language's dtype names. For a value outside the enum,
 * lathe_dtype_name gives "?" and lathe_dtype_size 0. */
typedef enum {
  LATHE_F32, LATHE_F16, LATHE_BF16, LATHE_I32, LATHE_I64, LATHE_I8, LATHE_U8, LATHE_BOOL
} lathe_dtype;

const char *lathe_dtype_name(lathe_dtype t);
size_t lathe_dtype_size(lathe_dtype t);

/* A dense row-major tensor. Tensors the library hands out own their data
 * (malloc); release them with lathe_tensor_free. */
typedef struct {
  lathe_dtype dtype;
  int rank;
  int64_t shape[LATHE_MAXDIM];
  void *data;
} lathe_tensor;

/* numel: -1 for NULL, a rank outside 0..LATHE_MAXDIM, a negative dimension
 * or a product that overflows; bytes: 0 then, or when the byte count does
 * not fit a size_t. lathe_tensor_free(NULL) does nothing. */
int64_t lathe_tensor_numel(const lathe_tensor *t);
size_t lathe_tensor_bytes(const lathe_tensor *t);
void lathe_tensor_free(lathe_tensor *t);

/* ---- Models: parsed and checked source ---- */
typedef struct lathe_model lathe_model;

lathe_model *lathe_model_load(const char *path, lathe_error *err);
/* `name` is used as the file name in diagnostics (NULL: "<model>"); src
 * must not be NULL. */
lathe_model *lathe_model_parse(const char *name, const char *src, size_t len, lathe_error *err);
void lathe_model_free(lathe_model *m);

/* For a NULL model: NULL names and -1 counts; for an index outside
 * 0..count-1: NULL. */
const char *lathe_model_name(const lathe_model *m);
int lathe_model_num_inputs(const lathe_model *m);
const char *lathe_model_input_name(const lathe_model *m, int i);
/* Symbolic dimensions the model declares (e.g. "batch"), and binding them
 * (a value from 1 to 2^40). */
int lathe_model_num_dims(const lathe_model *m);
const char *lathe_model_dim_name(const lathe_model *m, int i);
int lathe_model_bind(lathe_model *m, const char *dim, int64_t value, lathe_error *err);
/* What a model declares about input i (a model has inputs before it is
 * compiled; outputs and parameters come with the program: lathe_output_info,
 * lathe_param_info). A symbolic dimension j has dim[j] = its name and
 * shape[j] = its bound value, or -1 while unbound; a static one has dim[j]
 * NULL. 0, or LATHE_EUSER (info zeroed) for a NULL model, a NULL info or an
 * index outside 0..count-1. Names stay valid until lathe_model_free. */
typedef enum {
  LATHE_ROLE_INPUT,  /* an input the caller gives */
  LATHE_ROLE_TARGET, /* a target input: a forward run may leave it unset */
  LATHE_ROLE_OUTPUT,
  LATHE_ROLE_WEIGHT, /* a trainable parameter */
  LATHE_ROLE_STATE   /* optimizer state of a training step (lathe_compile_train) */
} lathe_role;
typedef struct {
  const char *name;
  lathe_role role;
  lathe_dtype dtype;       /* as declared (lathe_get_output widens: see there) */
  int rank;
  int64_t shape[LATHE_MAXDIM];
  const char *dim[LATHE_MAXDIM]; /* model inputs only: the symbolic name per dimension, or NULL */
} lathe_tensor_info;
int lathe_model_input_info(const lathe_model *m, int i, lathe_tensor_info *info);

/* Bind the symbolic dimensions of input `input` from an array's shape, and
 * check its static dimensions and rank (0 to LATHE_MAXDIM; shape may be
 * NULL only for rank 0). A shape that does not fit binds nothing. */
int lathe_model_bind_input(lathe_model *m, const char *input, int rank, const int64_t *shape,
                           lathe_error *err);

/* ---- Programs: a model compiled for fixed bindings ---- */
typedef enum { LATHE_BACKEND_INTERP, LATHE_BACKEND_LLVM, LATHE_BACKEND_CUDA } lathe_backend;

typedef struct {
  lathe_backend backend;
  int f64;                 /* interpreter only: compute in double precision */
  int64_t default_dim;     /* >0: value for symbolic dims left unbound (for check) */
  /* Graph optimisation (passes/pipeline.c). Level 0..3 when opt_level_set;
   * otherwise LATHE_OPT_LEVEL from the environment, else 2. passes: an
   * explicit comma-separated pass list ("constfold,cse,dce") instead of the
   * level's. print_after: print the graph after that pass; time_passes:
   * time per pass; both write to pass_log (NULL: stderr). dump_dir: write
   * NN-pass.txt and NN-pass.dot there after every pass. */
  int opt_level_set;
  int opt_level;
  const char *passes;
  const char *print_after;
  const char *dump_dir;
  int time_passes;
  FILE *pass_log;
  /* Quantized inference (docs/quantize.md): dense products on weights
   * stored as `lathe quantize` (lathe_quantize) writes them; the weights
   * loaded must be such a file of the same mode (lathe_weights_quant says
   * which a file holds). LATHE_QUANT_NONE: f32. */
  int quant;               /* lathe_quant */
  /* Pruned fine-tuning (docs/prune.md): 1 reads every dense and conv2d
   * weight W as W * W.mask, W.mask a parameter loaded with the weights and
   * never trained, so the entries a mask zeroes stay out of every product
   * and get no update. 0 or 1. */
  int masked;
  /* --precision (docs/cuda.md): LATHE_PRECISION_BF16 stores the CUDA
   * backend's activations as bf16 and runs its products in bf16 with f32
   * sums; weights, optimizer state, gradients of weights, outputs and every
   * reduction stay f32. An error with LATHE_BACKEND_LLVM; the interpreter (the
   * reference) computes in f32 and keeps it for lathe_program_cuda_check. */
  int precision;           /* lathe_precision */
} lathe_options;

typedef enum { LATHE_PRECISION_F32 = 0, LATHE_PRECISION_BF16 = 1 } lathe_precision;

/* The quantization modes (the pass passes/quantize.c, `lathe quantize --mode`). */
typedef enum {
  LATHE_QUANT_NONE = 0,
  LATHE_QUANT_W8 = 1,           /* weight-only int8, a scale per group of 32 inputs */
  LATHE_QUANT_W4 = 2,           /* weight-only int4, a scale per group of 32 inputs */
  LATHE_QUANT_INT8_DYNAMIC = 3, /* int8 weights per output channel, activations per row at run time */
  LATHE_QUANT_BF16 = 4,         /* weights stored as bf16 */
  LATHE_QUANT_F16 = 5,          /* weights stored as f16 */
  LATHE_QUANT_INT8 = 6          /* static int8: int8 weights per output channel, activation scales calibrated */
} lathe_quant;

typedef struct lathe_program lathe_program;

/* opt may be NULL: the defaults (the interpreter, the default level). A
 * backend outside the enum, a default_dim outside 0..2^40 or an opt_level
 * outside 0..3 is an error. */

/* With the llvm backend, compiled code is shared within the process: while
 * a program is alive, compiling the same model with the same bindings and
 * options (and the same kind: lathe_compile, lathe_compile_train, the decode
 * program of lathe_generate) reuses its machine code instead of generating
 * it again (lathe_compile_stats.program_cache_hit). What is reused is what compiling
 * made and nothing changes: the code, the buffer plan, the constants. Each
 * program has its own weights, inputs, outputs, optimizer state and working
 * memory, so programs sharing code are as independent as programs that do
 * not; free them in any order: the code goes with the last. Two compiles
 * share exactly when their graphs after the passes are equal, node for node
 * (so the lowering and the passes still run). The table of shared code is
 * guarded by a lock. */
lathe_program *lathe_compile(lathe_model *m, const lathe_options *opt, lathe_error *err);
void lathe_program_free(lathe_program *p);

typedef enum { LATHE_PRINT_SUMMARY, LATHE_PRINT_IR, LATHE_PRINT_DOT } lathe_print_kind;
/* Prints nothing for a NULL program or file or a kind outside the enum. */
void lathe_program_print(const lathe_program *p, lathe_print_kind kind, FILE *f);

/* For a NULL program: -1 counts, no loss (0), NULL names; for an index
 * outside 0..count-1: NULL. */
int lathe_num_outputs(const lathe_program *p);
const char *lathe_output_name(const lathe_program *p, int i);
int lathe_has_loss(const lathe_program *p);
int lathe_num_params(const lathe_program *p);
const char *lathe_param_name(const lathe_program *p, int i);
/* Inputs of the compiled program (targets included, in declaration order;
 * -1 for a NULL program, NULL for an index out of range), and name, role,
 * dtype and (concrete) shape of each input, output and parameter: 0, or
 * LATHE_EUSER (info zeroed) for a NULL program, a NULL info or an index
 * outside 0..count-1. Names stay valid until lathe_program_free. */
int lathe_num_inputs(const lathe_program *p);
const char *lathe_input_name(const lathe_program *p, int i);
int lathe_input_info(const lathe_program *p, int i, lathe_tensor_info *info);
int lathe_output_info(const lathe_program *p, int i, lathe_tensor_info *info);
int lathe_param_info(const lathe_program *p, int i, lathe_tensor_info *info);
/* Read-only view of a parameter's current values (f32). It stays valid
 * until the next training step, which may move the values to another
 * buffer (the step's update takes the parameter's place, no copy): take a
 * new view after each step. LATHE_EUSER (and a zeroed view) for a NULL
 * program, an index out of range or weights not yet initialised or loaded;
 * LATHE_EUSER for a NULL view. */
int lathe_param_view(const lathe_program *p, int i, lathe_tensor *view);

/* What compiling cost and what the program looks like (lathe run --time,
 * lathe check). Times are in milliseconds; the compile phases are those of
 * the native (llvm) backend and zero for the interpreter. Lowering the model
 * to the graph is the rest of lathe_compile's wall time. */
typedef struct {
  double ir_ms;            /* memory plan and building the LLVM IR */
  double opt_ms;           /* LLVM optimisation passes (0 on a cache hit) */
  double codegen_ms;       /* machine code generation (0 on a cache hit) */
  double jit_ms;           /* JIT linking */
  int cache_hit;           /* 1: the machine code came from the on-disk cache */
  int kernels;             /* kernel calls in the program */
  int kernels_unique;      /* distinct kernels after deduplication */
  int64_t arena_bytes;     /* planned peak of the intermediate-tensor arena */
  int64_t naive_bytes;     /* the sum of every planned tensor (no reuse) */
  int program_cache_hit;   /* 1: the code of a live program of this process was reused (see
                              lathe_compile); the compile phases above are then 0 */
  int parts;               /* the module was optimised and compiled in this many parts at once */
  /* --backend cuda (docs/cuda.md): planning and rendering, NVRTC's wall time
   * over every module (a module from the disk cache costs its load: all of
   * them cached is a warm compile, none a cold one), modules, of which cached */
  double cuda_render_ms, cuda_nvrtc_ms;
  int cuda_modules, cuda_cache_hits;
} lathe_compile_stats;
/* This and lathe_program_pass_stats: LATHE_EUSER for a NULL st, and for a
 * NULL program (st zeroed). */
int lathe_program_stats(const lathe_program *p, lathe_compile_stats *st);
/* What the graph passes did: the graph before and after the pipeline
 * (lathe check -O2). Kernels are non-leaf nodes; bytes moved is, summed
 * over kernels, the bytes of their inputs read plus their result written. */
typedef struct {
  int opt_level;             /* the level used (-1: an explicit pass list) */
  int nodes_before, nodes_after;
  int kernels_before, kernels_after;
  int64_t bytes_before, bytes_after;
} lathe_pass_stats;
int lathe_program_pass_stats(const lathe_program *p, lathe_pass_stats *st);
/* The kernel plan of p's graph (plan/plan.h), as the LLVM backend renders
 * it: one line per kernel with its kind, member nodes (%id), the buffers it
 * writes and reads (arena+offset, input/param/output index, const, alias),
 * its FLOPs and bytes; checked by the plan verifier first. 0, or the status
 * with err set (LATHE_EUSER for a NULL program or file). `lathe check
 * --kernels` prints it; --dump-dir writes it to plan.txt. */
int lathe_program_print_kernels(const lathe_program *p, FILE *f, lathe_error *err);
/* With LATHE_PROFILE=1 in the environment at compile time: per-operator
 * kernel times averaged over the runs so far and the 8 slowest calls
 * (LATHE_PROFILE=N, N > 8: the N slowest), as text (free() it); NULL when
 * not profiling or for a NULL program. */
char *lathe_program_profile(const lathe_program *p);

/* ---- The CUDA backend (docs/cuda.md) ---- */
/* Whether backend b can run here: 1, or 0 with why[0..n) saying what is
 * missing and where it looked (the CUDA driver, NVRTC, cuBLASLt, a GPU);
 * why may be NULL. The interpreter and llvm are always available. */
int lathe_backend_available(lathe_backend b, char *why, size_t n);
/* What lathe_program_cuda_check rendered and compiled. */
typedef struct {
  char arch[16];        /* "sm_90" */
  int kernels;          /* kernels of the plan */
  int functions;        /* distinct __global__ functions rendered */
  int launches;         /* kernel launches, gemm calls and zero fills per run */
  int gemms;            /* of which matrix products through the driver's gemm */
  int modules;          /* NVRTC compile units (compiled in parallel) */
  int cache_hits;       /* modules taken from the disk cache */
  int ptx;              /* 1: PTX (this NVRTC makes no CUBIN) */
  int warnings;         /* modules NVRTC warned about (the warnings go to log) */
  double render_ms;     /* planning and rendering */
  double compile_ms;    /* NVRTC, wall clock */
} lathe_cuda_report;
/* Render every kernel of p's graph as CUDA C and compile it with NVRTC for
 * gpu_arch ("sm_80", "sm_90"; NULL: the GPU's own, which needs one); no GPU
 * is needed otherwise. dump_dir (may be NULL): each module's .cu and its
 * .cubin (or .ptx) are written there. NVRTC's warnings go to log (NULL:
 * stderr). 0, or LATHE_EUSER with the reason (a kernel kind not rendered
 * names the kind and the node; NVRTC's rejection carries its log). */
int lathe_program_cuda_check(const lathe_program *p, const char *gpu_arch, const char *dump_dir, FILE *log,
                             lathe_cuda_report *rep, lathe_error *err);

/* ---- Weights ---- */
int lathe_weights_init(lathe_program *p, uint64_t seed, lathe_error *err);
int lathe_weights_load(lathe_program *p, const char *path, lathe_error *err);
int lathe_weights_save(const lathe_program *p, const char *path, lathe_error *err); /* atomic */

/* ---- Preprocessing carried by the weights ----
 * lathe train normalises the model's f32 feature inputs with statistics of
 * the training split and writes them into its checkpoints beside the
 * weights (tensors "__preprocess.INPUT.kind/.shift/.scale", docs/training.md).
 * lathe_weights_load reads them, and from then on lathe_set_input applies
 * them: the caller gives raw features, as in the data file, and the program
 * computes x' = (x - shift[j]) * scale[j] per value j of each example before
 * the model sees it. lathe_weights_save writes them again. Weights without
 * them (lathe init, older files) apply nothing. Emitted code is to do the
 * same: MODEL_forward takes raw features when its weights carry them. */
typedef enum { LATHE_NORM_NONE, LATHE_NORM_STANDARD, LATHE_NORM_MINMAX } lathe_norm_kind;
typedef struct {
  lathe_norm_kind kind;        /* NONE: trained on raw features (nothing applied) */
  int64_t width;               /* W: values per example (0 for NONE) */
  const float *shift, *scale;  /* [W] each, owned by the program (NULL for NONE) */
} lathe_preprocess;
/* 1 and *out filled when the program's weights carry preprocessing for
 * input `input`; 0 (and *out zeroed) when they carry none for it, when there
 * is no such input, or for a NULL argument. The pointers stay valid until
 * the next lathe_weights_load or lathe_program_free. */
int lathe_input_preprocess(const lathe_program *p, const char *input, lathe_preprocess *out);
/* "none", "standard", "minmax"; NULL for a value outside the enum. */
const char *lathe_norm_kind_name(lathe_norm_kind k);

/* ---- Running ---- */
/* The tensor is copied; dtype and shape must match the input's declaration
 * (integer arrays may feed integer inputs of another width). A tensor that
 * cannot be (see the top) is refused before it is compared. */
int lathe_set_input(lathe_program *p, const char *name, const lathe_tensor *t, lathe_error *err);
/* Zero-copy: the program reads input `name` straight from the caller's
 * memory t->data at every lathe_run, until lathe_bind_input or
 * lathe_set_input for that input again or lathe_program_free; only the
 * pointer is kept (not *t). The caller keeps that memory valid and may
 * change its values between runs (not during one); the program never
 * writes it. The layout must be the program's: t->dtype exactly the
 * declared dtype (no conversion; lathe_set_input converts) and the
 * declared shape, dense and row-major. When the weights carry
 * preprocessing for the input (see above), each run copies the values and
 * normalises the copy instead. */
int lathe_bind_input(lathe_program *p, const char *name, const lathe_tensor *t, lathe_error *err);
int lathe_run(lathe_program *p, lathe_error *err);
/* Name is an output name or "loss". `out` receives a fresh copy: f32 for
 * float outputs (f16 and bf16 widened), i64 for i64, i32 for the other
 * integer and bool outputs; it is zeroed (data NULL) on failure. An output
 * that reads a target the last run was not given is an error (a forward run
 * zero-fills such targets). */
int lathe_get_output(const lathe_program *p, const char *name, lathe_tensor *out, lathe_error *err);
/* Writes output NAME (or "loss") to a .npy file (atomically) in the output's
 * declared dtype: f16 as f16, i8 as i8, bool as bool; bf16, which NumPy
 * cannot hold, as f32 (exact). */
int lathe_output_save(const lathe_program *p, const char *name, const char *path, lathe_error *err);

/* ---- Arrays on disk (.npy) ---- */
/* out is zeroed first; lathe_npy_save refuses a tensor that cannot be and
 * then writes nothing. */
int lathe_npy_load(const char *path, lathe_tensor *out, lathe_error *err);
int lathe_npy_save(const char *path, const lathe_tensor *t, lathe_error *err); /* atomic */

/* ---- A training step ----
 * One program holding the forward pass, the backward pass and the optimizer
 * update, with the settings of the model's train block (PyTorch's defaults
 * where it is silent). Each lathe_run takes one step on the inputs and
 * targets set: it updates the weights and optimizer state in place, and
 * lathe_get_output(p, "loss") is that step's loss. A step whose loss or
 * updated weights are not finite fails and changes nothing. */
lathe_program *lathe_compile_train(lathe_model *m, const lathe_options *opt, lathe_error *err);

/* ---- Quantization (runtime/api_quant.c, docs/quantize.md) ----
 * lathe_quantize writes `out` (safetensors): the f32 weights of `weights`
 * with each dense layer's weight matrix replaced by its quantized tensors
 * in `mode`; layers that stay f32 are counted and the first one's reason
 * is in note. Errors: an unknown mode, weights that do not fit the model,
 * weights already quantized (not f32), a model with nothing to quantize,
 * int8 without calibration data (or with data the model cannot read). */
typedef struct {
  const char *weights;         /* f32 weights of the model (required) */
  const char *out;             /* the quantized file (required) */
  int mode;                    /* lathe_quant, not NONE */
  /* LATHE_QUANT_INT8: each quantized product's input scale is calibrated on
   * the first calib_batches batches (0: 10) of data's training split (the
   * split and batch of the model's train block, as lathe_train makes them):
   * max |x| (calib 0, minmax) or the given percentile of |x| (calib 1,
   * percentile: 0 gives 99.99), over 127. data is required there. */
  const char *data;
  int64_t calib_batches;
  int calib;                   /* lathe_calib */
  double percentile;
} lathe_quantize_options;

typedef enum { LATHE_CALIB_MINMAX = 0, LATHE_CALIB_PERCENTILE = 1 } lathe_calib;

typedef struct {
  int quantized;               /* weight matrices quantized */
  int kept;                    /* weight matrices left f32 */
  int64_t bytes_before;        /* weights in f32 */
  int64_t bytes_after;         /* the quantized file's tensors */
  char note[256];              /* why the first kept matrix stayed f32; "" when none */
  int f32_form;                /* int8: 1 when this CPU computes the int8 products in f32 on the int8
                                  weights (it has no SIMD integer dot products: int8 would be slower) */
  int slow_rows;               /* w8/w4: 1 when this CPU has no SIMD integer dot products, so products below
                                  16 rows (batch 1, generation) are compiled in f32 on the weights
                                  dequantized at load (the plain C kernel would be slower than f32) */
} lathe_quantize_result;

int lathe_quantize(lathe_model *m, const lathe_quantize_options *o, lathe_quantize_result *r, lathe_error *err);
/* The mode a weights file holds (LATHE_QUANT_NONE for f32 weights) in *mode. */
int lathe_weights_quant(const char *path, int *mode, lathe_error *err);
/* "w8", "w4", "int8-dynamic", "bf16", "f16", "int8" ("none" for 0); and back (-1 unknown). */
const char *lathe_quant_name(int mode);
int lathe_quant_parse(const char *name);

/* ---- Training and evaluation (runtime/train*.c) ----
 * lathe_train compiles one training step (forward, backward and the
 * optimizer update in one program) and runs it over a data set as the
 * model's train block says, with the overrides below. Data: a CSV file
 * (optionally gzip), a text file (for a model whose input is i32[batch, T]),
 * or one .npy file per input and target. The split is train/val/test by the
 * block's fractions, shuffled with the seed; validation picks the best epoch
 * and drives early stopping; the test split is evaluated once, at the end, on
 * the best weights.
 *
 * m, o and r must not be NULL; err may be. Out of range, each an error
 * before any work: backend outside the enum, lr NaN, infinite or negative,
 * epochs outside 0..10^9, batch outside 0..2^40, restarts or nnpy negative,
 * a NULL npy entry, seed (with seed_set) of 2^63 or more, tty outside -1..1.
 * The caller's model is left as it was found: reading the data binds the
 * batch dimension for the run only, so the model can be bound to any size
 * and compiled afterwards (a dimension the caller bound stays bound, and the
 * data must agree with it). r is zeroed first. */
typedef struct {
  const char *data;            /* CSV or text file; NULL when npy is used */
  const char *const *npy;      /* "NAME=FILE.npy" per input and target */
  int nnpy;
  int target_column_set;       /* CSV: target column (0-based, negative from the end); default last */
  int target_column;
  const char *normalize;       /* "standard" (default), "minmax" or "none" */
  const char *out_dir;         /* receives best.safetensors, last.safetensors, log.jsonl; may be NULL */
  const char *plot;            /* learning curves as SVG; may be NULL */
  int resume;                  /* continue from out_dir/last.safetensors */
  const char *weights;         /* lathe_train: start from these weights (fine-tuning), checked like a
                                  checkpoint; NULL = initialise. lathe_eval ignores it (see its own) */
  int restarts;                /* train this many seeds (seed, seed+1, ...), keep the best by validation */
  const char *metric;          /* the validation metric that picks the best epoch (default: by the loss) */
  lathe_backend backend;
  /* Overrides of the train block (0 = keep the block's value). */
  double lr;
  int64_t epochs, batch;
  int seed_set;
  uint64_t seed;
  /* 1: no shuffling anywhere: the split takes the rows in file order (train, then val, then test)
   * and every epoch goes through the train rows in that order (to reproduce a run elsewhere,
   * e.g. an emitted training step fed the same rows); lathe_eval rebuilds that split. 0 or 1. */
  int in_order;
  FILE *progress;              /* progress lines (e.g. stderr); NULL = quiet */
  int tty;                     /* -1 = ask isatty, 0 = plain lines, 1 = live line */
  /* Graph-pipeline settings (opt_level*, passes, print_after, dump_dir,
   * time_passes, pass_log) for the programs training builds; NULL = defaults. */
  const lathe_options *compile;
  /* In a distributed job (lathe_dist_init): gradient bytes per allreduce
   * bucket (0: 1 MiB; docs/distributed.md). Ignored in a job of one rank. */
  int64_t bucket_bytes;
  /* In a distributed job: ZeRO-1 optimizer-state sharding (--zero1): each
   * rank keeps and updates 1/N of every parameter's optimizer state and the
   * ranks gather the updated weights; checkpoints hold the whole state.
   * Ignored in a job of one rank. 0 or 1. */
  int zero1;
  /* In a distributed job: pipeline parallelism (--pipeline K, GPipe): the
   * model's layers cut into K stages (by FLOPs), rank s runs stage s; the
   * job must have exactly K ranks. micro_batches (--micro-batches M, 0:
   * K) micro-batches per global batch, which M must divide. 0: off. */
  int pipeline, micro_batches;
} lathe_train_options;

#define LATHE_MAX_METRICS 8
typedef struct {
  int n;
  const char *name[LATHE_MAX_METRICS]; /* "loss", "accuracy", ... (static strings) */
  double value[LATHE_MAX_METRICS];
} lathe_metrics;

typedef struct {
  lathe_metrics test;          /* on the test split (n = 0 when the split has no test part) */
  lathe_metrics best_val;      /* validation metrics of the chosen epoch */
  int64_t steps, epochs;       /* of the chosen run */
  int best_restart;
  double seconds;
  /* The job's ranks (1: one process); wall seconds inside training steps
   * (lathe_run of the step program) and, of them, inside collectives
   * (waiting for the other ranks and moving gradients), on this rank. */
  int ranks;
  double step_seconds, comm_seconds;
  int64_t timed_steps;         /* the steps step_seconds counts (this session's, not a resumed run's earlier ones) */
} lathe_train_result;

int lathe_train(lathe_model *m, const lathe_train_options *o, lathe_train_result *r, lathe_error *err);

/* ---- Distributed training (runtime/dist.c, docs/distributed.md) ----
 * Started by mpirun, a process calls lathe_dist_init once before training:
 * it joins the MPI job (MPI_Init) and from then on lathe_train is data
 * parallel: each rank trains on its slice of every global batch (the train
 * block's batch, which the ranks must divide), gradients are averaged by
 * allreduce inside the compiled step (sums in rank order: the same bits
 * every run), every rank holds the same weights, and rank 0 alone prints,
 * evaluates and writes checkpoints and logs. Not started by a launcher (or
 * in a build without MPI, lathe_dist_available() == 0): a job of one rank,
 * and nothing changes. Under a launcher without MPI support: LATHE_EUSER.
 * A failing collective (a rank died, the network failed) ends every rank
 * with a message naming the rank. lathe_dist_finalize leaves the job
 * (MPI_Finalize) at exit. */
int lathe_dist_init(lathe_error *err);
int lathe_dist_rank(void);
int lathe_dist_size(void);
int lathe_dist_available(void);
void lathe_dist_finalize(void);
/* How long any wait for another rank may take, in seconds, before the job
 * ends with a message naming the ranks that do not answer (a stopped or hung
 * rank; docs/distributed.md). Default 120; 0: wait forever. The environment
 * variable LATHE_COMM_TIMEOUT sets it at lathe_dist_init too. */
void lathe_dist_set_timeout(double seconds);
/* Pipeline inference (lathe run --pipeline K): in a job of exactly `stages`
 * ranks, rank s compiles stage s of m's forward pass (the layers cut by
 * FLOPs), loads its weights from the file, takes the inputs it reads (by
 * name), runs on the activation rank s - 1 sends and sends its own to
 * s + 1. On the last rank *out is the program that ran (the model's
 * outputs; the caller frees it), elsewhere NULL. */
int lathe_run_pipeline(lathe_model *m, const lathe_options *o, int stages, const char *weights,
                       const char *const *names, const lathe_tensor *ins, int nins, lathe_program **out,
                       lathe_error *err);
/* End the whole job now with a message naming this rank (no-op in a job of one). */
void lathe_dist_abort(const char *why);

typedef struct {
  const char *weights;
  const char *split;           /* "test" (default), "val", "train" or "all" */
  /* data, npy, nnpy, target_column(_set), normalize, batch, seed(_set):
     as in lathe_train_options (the split is rebuilt the same way). */
  lathe_train_options data;
} lathe_eval_options;

/* m, o, o->weights and out must not be NULL; o->data is checked as in
 * lathe_train and the model is left as it was found. */
int lathe_eval(lathe_model *m, const lathe_eval_options *o, lathe_metrics *out, lathe_error *err);

/* ---- Pruning (runtime/api_prune.c, docs/prune.md) ----
 * lathe_prune writes `out`: the weights of `weights` with a fraction
 * `sparsity` of the dense and conv2d weights removed by magnitude
 * (unstructured: zeroed, over all layers at once or per layer, in `steps`
 * steps of a cubic schedule), or whole neurons, channels and attention heads
 * removed by their weights' L2 norm (structured: the model is resized and its
 * source written to model_out). With finetune > 0 and data, each step fine-tunes with the
 * zeroed weights held at zero (lathe_options.masked). The report compares
 * the model before and after: parameters, FLOPs, file size, metrics on the
 * validation and test splits (with data), inference time.
 * Errors: sparsity outside [0, 1), nothing prunable, weights that do not
 * fit the model or are quantized, finetune without data. */
typedef struct {
  const char *weights;         /* f32 weights of the model (required) */
  const char *out;             /* the pruned weights (required) */
  double sparsity;             /* fraction removed, 0 <= s < 1 */
  int structured;              /* 1: neurons, channels and attention heads (needs model_out) */
  int per_layer;               /* unstructured: each layer loses `sparsity` (default: one global threshold) */
  int steps;                   /* unstructured: gradual pruning in this many steps (0 = 1) */
  int64_t finetune;            /* epochs of fine-tuning in all (0: none) */
  double lr;                   /* fine-tuning's learning rate (0: the train block's) */
  int64_t batch;               /* fine-tuning's batch size (0: the train block's) */
  const char *data;            /* the data set (lathe_train_options.data) for fine-tuning and metrics; may be NULL */
  const char *model_out;       /* structured: the resized model's source (P.nn) */
  const char *report;          /* JSON report path; NULL: none */
  int64_t time_batch;          /* batch for the inference time (0 = 64) */
  lathe_backend backend;       /* fine-tuning and evaluation; the time is always llvm's */
  FILE *progress;              /* fine-tuning's progress lines; NULL = quiet */
} lathe_prune_options;

typedef struct {
  int64_t params[2];           /* [0] before, [1] after: parameters (nonzero ones for the weights pruned) */
  int64_t weights_nonzero[2];  /* nonzero entries of the prunable weights */
  int64_t flops[2];            /* forward FLOPs per example (dense: zeros still count) */
  int64_t file_bytes[2];       /* weights file sizes */
  double time_us[2];           /* median forward time at time_batch, llvm backend */
  lathe_metrics val[2], test[2]; /* n = 0 without data */
  int layers;                  /* layers pruned */
  char note[256];              /* the first layer left whole and why (structured) */
} lathe_prune_result;

int lathe_prune(lathe_model *m, const lathe_prune_options *o, lathe_prune_result *r, lathe_error *err);

/* ---- Generation (runtime/generate.c) ----
 * For a model whose input is a token sequence i32[batch, T] and whose first
 * output is logits [batch, T, vocab] (vocab 96: characters, 256: bytes, as
 * lathe train tokenises text; any other vocabulary, a tokenizer's such as
 * GPT-2's 50257, takes the prompt's bytes as token ids and reports each
 * token's byte as -1). Compiles, at batch 1, a decode-step program
 * that keeps a key/value cache per causal attention layer, so each token
 * costs O(T); a model without a decode form (recurrent layers) is run by
 * recomputing its whole context every token instead, and the result's note
 * says why. Feeds the prompt, then samples `tokens` tokens: temperature 0 is
 * greedy (the first maximum); otherwise softmax(logits / temperature) over
 * the top_k most likely tokens (0 = all), drawn with ir_rng seeded by seed.
 * The context holds at most T tokens: when it is full it is cut to its last
 * T/2 tokens and the cache refilled from them (a sliding window), so the
 * prompt and the output may be longer than T. An empty prompt starts from a
 * newline (not reported). Every check of the model and weights comes before
 * the first on_token call; generation streams (memory does not grow with
 * `tokens`), and on_token returning non-zero stops it (lathe generate does
 * so when stdout fails). */
typedef struct {
  const char *weights;         /* safetensors file (required) */
  const char *prompt;          /* text; bytes outside the vocabulary are dropped (counted in the result); may be NULL */
  int64_t tokens;              /* how many tokens to generate */
  double temperature;          /* 0 = greedy; must be >= 0 */
  int top_k;                   /* 0 = every token */
  uint64_t seed;
  lathe_backend backend;
  int recompute;               /* 1: no cache, recompute the context every token (the reference) */
  int precision;               /* lathe_precision: bf16 only with LATHE_BACKEND_CUDA */
  /* Called with each generated token and its byte (-1 if none); a non-zero
   * return stops generation early. May be NULL. */
  int (*on_token)(void *user, int token, int byte);
  void *user;
} lathe_generate_options;

typedef struct {
  int64_t prompt_tokens;       /* tokens the prompt gave */
  int64_t generated;           /* tokens generated */
  double prefill_seconds;      /* feeding the prompt */
  double seconds;              /* generating */
  double tokens_per_s;         /* generated / seconds */
  int cached;                  /* 1: the decode program ran (key/value caches, carried recurrent state) */
  char note[256];              /* why the whole context was recomputed; "" otherwise */
  int64_t prompt_dropped;      /* prompt bytes outside the vocabulary (dropped, as text data's are) */
  int64_t first_dropped;       /* 0-based byte offset of the first of them; -1 when none */
  int device_token;            /* --backend cuda: 1 when the decode step picked each token on the device (greedy's
                                  argmax, or sampling: any top-k up to 256 classes, a top-k up to 1024 above), so
                                  only the token left it; 0 when the host sampled from the logits */
} lathe_generate_result;

/* m, o and o->weights must not be NULL; r may be NULL. A backend outside
 * the enum, a temperature that is NaN, infinite or negative, a negative
 * top_k or token count is an error. */
int lathe_generate(lathe_model *m, const lathe_generate_options *o, lathe_generate_result *r, lathe_error *err);

/* The decode-step program lathe_generate compiles (batch 1, one token per
 * run, the key/value caches as state), on its own: for inspecting it (lathe
 * check --generate; lathe_program_cuda_check renders and compiles it for a
 * GPU). opt as lathe_compile's (backend, quant, precision are used). A model
 * without a token input and logits output, or without a decode form, is
 * an error that says why. */
lathe_program *lathe_compile_decode(lathe_model *m, const lathe_options *opt, lathe_error *err);

#ifdef __cplusplus
}
#endif
#endif
