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

/* Same order as the language's dtype names. */
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

int64_t lathe_tensor_numel(const lathe_tensor *t);
size_t lathe_tensor_bytes(const lathe_tensor *t);
void lathe_tensor_free(lathe_tensor *t);

/* ---- Models: parsed and checked source ---- */
typedef struct lathe_model lathe_model;

lathe_model *lathe_model_load(const char *path, lathe_error *err);
/* `name` is used as the file name in diagnostics. */
lathe_model *lathe_model_parse(const char *name, const char *src, size_t len, lathe_error *err);
void lathe_model_free(lathe_model *m);

const char *lathe_model_name(const lathe_model *m);
int lathe_model_num_inputs(const lathe_model *m);
const char *lathe_model_input_name(const lathe_model *m, int i);
/* Symbolic dimensions the model declares (e.g. "batch"), and binding them. */
int lathe_model_num_dims(const lathe_model *m);
const char *lathe_model_dim_name(const lathe_model *m, int i);
int lathe_model_bind(lathe_model *m, const char *dim, int64_t value, lathe_error *err);
/* Bind the symbolic dimensions of input `input` from an array's shape, and
 * check its static dimensions and rank. */
int lathe_model_bind_input(lathe_model *m, const char *input, int rank, const int64_t *shape,
                           lathe_error *err);

/* ---- Programs: a model compiled for fixed bindings ---- */
typedef enum { LATHE_BACKEND_INTERP, LATHE_BACKEND_LLVM, LATHE_BACKEND_CUDA } lathe_backend;

typedef struct {
  lathe_backend backend;
  int f64;                 /* interpreter only: compute in double precision */
  int64_t default_dim;     /* >0: value for symbolic dims left unbound (for check) */
} lathe_options;

typedef struct lathe_program lathe_program;

lathe_program *lathe_compile(lathe_model *m, const lathe_options *opt, lathe_error *err);
void lathe_program_free(lathe_program *p);

typedef enum { LATHE_PRINT_SUMMARY, LATHE_PRINT_IR, LATHE_PRINT_DOT } lathe_print_kind;
void lathe_program_print(const lathe_program *p, lathe_print_kind kind, FILE *f);

int lathe_num_outputs(const lathe_program *p);
const char *lathe_output_name(const lathe_program *p, int i);
int lathe_has_loss(const lathe_program *p);
int lathe_num_params(const lathe_program *p);
const char *lathe_param_name(const lathe_program *p, int i);
/* Read-only view of a parameter's current values (f32). */
int lathe_param_view(const lathe_program *p, int i, lathe_tensor *view);

/* ---- Weights ---- */
int lathe_weights_init(lathe_program *p, uint64_t seed, lathe_error *err);
int lathe_weights_load(lathe_program *p, const char *path, lathe_error *err);
int lathe_weights_save(const lathe_program *p, const char *path, lathe_error *err); /* atomic */

/* ---- Running ---- */
/* The tensor is copied; dtype and shape must match the input's declaration
 * (integer arrays may feed integer inputs of another width). */
int lathe_set_input(lathe_program *p, const char *name, const lathe_tensor *t, lathe_error *err);
int lathe_run(lathe_program *p, lathe_error *err);
/* Name is an output name or "loss". `out` receives a fresh copy (f32). */
int lathe_get_output(const lathe_program *p, const char *name, lathe_tensor *out, lathe_error *err);

/* ---- Arrays on disk (.npy) ---- */
int lathe_npy_load(const char *path, lathe_tensor *out, lathe_error *err);
int lathe_npy_save(const char *path, const lathe_tensor *t, lathe_error *err); /* atomic */

#ifdef __cplusplus
}
#endif
#endif
