/* test_api_hostile.c -- the C API against callers that get it wrong: NULL for
 * every pointer that may not be NULL, values outside their enums, indices out
 * of range, tensors that cannot be (rank above LATHE_MAXDIM, negative
 * dimensions, sizes that overflow, no data), NaN, negative and huge settings,
 * wrong names. Each call must come back with an error value and, where it
 * takes one, a lathe_error with the exact message; lathe_train and lathe_eval
 * must leave the caller's model as they found it.
 *
 * Every group runs in a child process, so a crash (the base code's answer
 * to several of these) is reported as that group failing and the rest still
 * run. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lathe.h"
#include "tests/test.h"

static const char *MLP =
    "model tiny\n"
    "input x : f32[batch, 3]\n"
    "target y : i32[batch]\n"
    "h = dense(x, 4, name=\"fc1\") |> relu\n"
    "logits = dense(h, 2, name=\"out\")\n"
    "output probs = softmax(logits)\n"
    "loss = cross_entropy(logits, y)\n"
    "train {\n  epochs = 2\n  batch = 4\n}\n";

static char tmpdir[64];

/* The call returned code, and err holds exactly want (then cleared). */
#define CHECK_ERR(call, code_, want) do { \
  int rc_ = (call); \
  CHECK_MSG(rc_ == (code_), "%s returned %d", #call, rc_); \
  CHECK(err.code == (code_)); \
  CHECK_STR(err.message, want); \
  lathe_error_clear(&err); \
} while (0)

/* The same for messages other parts of Lathe word (the data readers, the
 * pass pipeline): a distinctive part of the text. */
#define CHECK_ERR_HAS(call, code_, part) do { \
  int rc_ = (call); \
  CHECK_MSG(rc_ == (code_), "%s returned %d", #call, rc_); \
  CHECK(err.code == (code_)); \
  CHECK_MSG(err.message && strstr(err.message, part), "got '%s', want '%s' in it", err.message, part); \
  lathe_error_clear(&err); \
} while (0)

/* For calls returning a pointer: NULL and err holds exactly want. */
#define CHECK_NULL_ERR(call, want) do { \
  const void *p_ = (call); \
  CHECK_MSG(p_ == NULL, "%s returned non-NULL", #call); \
  CHECK(err.code == LATHE_EUSER); \
  CHECK_STR(err.message, want); \
  lathe_error_clear(&err); \
} while (0)

static lathe_model *tiny_model(void) {
  lathe_error err = {0};
  lathe_model *m = lathe_model_parse("tiny.nn", MLP, strlen(MLP), &err);
  CHECK(m != NULL);
  lathe_error_clear(&err);
  return m;
}

static lathe_program *tiny_program(int64_t batch) {
  lathe_error err = {0};
  lathe_model *m = tiny_model();
  if (!m) return NULL;
  CHECK(lathe_model_bind(m, "batch", batch, &err) == 0);
  lathe_program *p = lathe_compile(m, NULL, &err);
  CHECK(p != NULL);
  lathe_error_clear(&err);
  lathe_model_free(m);
  return p;
}

/* ---- small helpers, tensors, errors ---- */

static void test_helpers(void) {
  CHECK_STR(lathe_dtype_name((lathe_dtype)99), "?");
  CHECK_STR(lathe_dtype_name((lathe_dtype)-1), "?");
  CHECK(lathe_dtype_size((lathe_dtype)99) == 0);
  CHECK(lathe_tensor_numel(NULL) == -1);
  CHECK(lathe_tensor_bytes(NULL) == 0);
  lathe_tensor big = {.dtype = LATHE_F32, .rank = 9};
  CHECK(lathe_tensor_numel(&big) == -1);
  lathe_tensor_free(NULL);
  lathe_error_clear(NULL);
}

/* ---- models ---- */

static void test_model_null(void) {
  lathe_error err = {0};
  CHECK_NULL_ERR(lathe_model_parse("a.nn", NULL, 5, &err), "lathe_model_parse: the source text is NULL");
  CHECK_NULL_ERR(lathe_model_load(NULL, &err), "lathe_model_load: the path is NULL");
  CHECK(lathe_model_parse(NULL, NULL, 0, NULL) == NULL);
  lathe_model_free(NULL);
  CHECK(lathe_model_name(NULL) == NULL);
  CHECK(lathe_model_num_inputs(NULL) == -1);
  CHECK(lathe_model_input_name(NULL, 0) == NULL);
  CHECK(lathe_model_num_dims(NULL) == -1);
  CHECK(lathe_model_dim_name(NULL, 0) == NULL);
  CHECK_ERR(lathe_model_bind(NULL, "batch", 4, &err), LATHE_EUSER, "lathe_model_bind: the model is NULL");
  int64_t shape[2] = {4, 3};
  CHECK_ERR(lathe_model_bind_input(NULL, "x", 2, shape, &err), LATHE_EUSER,
            "lathe_model_bind_input: the model is NULL");
  lathe_model *m = tiny_model();
  if (!m) return;
  CHECK_ERR(lathe_model_bind(m, NULL, 4, &err), LATHE_EUSER, "lathe_model_bind: the dimension name is NULL");
  CHECK_ERR(lathe_model_bind_input(m, NULL, 2, shape, &err), LATHE_EUSER,
            "lathe_model_bind_input: the input name is NULL");
  CHECK_ERR(lathe_model_bind_input(m, "x", 2, NULL, &err), LATHE_EUSER, "lathe_model_bind_input: the shape is NULL");
  /* NULL err: the code still comes back. */
  CHECK(lathe_model_bind(m, NULL, 4, NULL) == LATHE_EUSER);
  CHECK(lathe_model_bind(m, "nope", 4, NULL) == LATHE_EUSER);
  lathe_model_free(m);
}

static void test_model_ranges(void) {
  lathe_error err = {0};
  lathe_model *m = tiny_model();
  if (!m) return;
  CHECK(lathe_model_num_inputs(m) == 2 && lathe_model_num_dims(m) == 1);
  CHECK(lathe_model_input_name(m, 2) == NULL);
  CHECK(lathe_model_input_name(m, -1) == NULL);
  CHECK(lathe_model_dim_name(m, 1) == NULL);
  CHECK(lathe_model_dim_name(m, -1) == NULL);
  CHECK(lathe_model_dim_name(m, INT32_MAX) == NULL);
  CHECK_ERR(lathe_model_bind(m, "nope", 4, &err), LATHE_EUSER, "model 'tiny' has no symbolic dimension 'nope'");
  CHECK_ERR(lathe_model_bind(m, "batch", -3, &err), LATHE_EUSER,
            "dimension 'batch' must be between 1 and 2^40, got -3");
  CHECK_ERR(lathe_model_bind(m, "batch", INT64_MAX, &err), LATHE_EUSER,
            "dimension 'batch' must be between 1 and 2^40, got 9223372036854775807");
  int64_t shape[LATHE_MAXDIM + 2] = {4, 3};
  CHECK_ERR(lathe_model_bind_input(m, "x", LATHE_MAXDIM + 1, shape, &err), LATHE_EUSER,
            "lathe_model_bind_input: rank 9 is outside 0 to LATHE_MAXDIM (8)");
  CHECK_ERR(lathe_model_bind_input(m, "x", -1, shape, &err), LATHE_EUSER,
            "lathe_model_bind_input: rank -1 is outside 0 to LATHE_MAXDIM (8)");
  CHECK_ERR(lathe_model_bind_input(m, "nope", 2, shape, &err), LATHE_EUSER, "model 'tiny' has no input 'nope'");
  int64_t neg[2] = {-4, 3};
  CHECK_ERR(lathe_model_bind_input(m, "x", 2, neg, &err), LATHE_EUSER,
            "dimension 'batch' must be between 1 and 2^40, got -4");
  /* A bad array binds nothing. */
  CHECK_NULL_ERR(lathe_compile(m, NULL, &err),
                 "symbolic dimension 'batch' is not bound: give an input array or --bind batch=N");
  lathe_model_free(m);
}

/* Two symbolic dimensions: a bad second one must not leave the first bound. */
static void test_bind_input_atomic(void) {
  static const char *SRC = "model two\ninput x : f32[batch, n]\noutput y = relu(x)\n";
  lathe_error err = {0};
  lathe_model *m = lathe_model_parse("two.nn", SRC, strlen(SRC), &err);
  CHECK(m != NULL);
  if (!m) return;
  int64_t bad[2] = {4, -2};
  CHECK_ERR(lathe_model_bind_input(m, "x", 2, bad, &err), LATHE_EUSER,
            "dimension 'n' must be between 1 and 2^40, got -2");
  CHECK_NULL_ERR(lathe_compile(m, NULL, &err),
                 "symbolic dimension 'batch' is not bound: give an input array or --bind batch=N");
  /* Each dimension in range, their product not: the compile says so. */
  int64_t huge[2] = {1LL << 40, 1LL << 40};
  CHECK(lathe_model_bind_input(m, "x", 2, huge, &err) == 0);
  CHECK(lathe_compile(m, NULL, &err) == NULL);
  CHECK_MSG(err.message && strstr(err.message, "input 'x' is too large: 1099511627776 x 1099511627776 elements"),
            "%s", err.message);
  lathe_error_clear(&err);
  lathe_model_free(m);
}

/* ---- compiling ---- */

static void test_compile_null(void) {
  lathe_error err = {0};
  CHECK_NULL_ERR(lathe_compile(NULL, NULL, &err), "lathe_compile: the model is NULL");
  CHECK_NULL_ERR(lathe_compile_train(NULL, NULL, &err), "lathe_compile_train: the model is NULL");
  CHECK(lathe_compile(NULL, NULL, NULL) == NULL);
}

static void test_compile_options(void) {
  lathe_error err = {0};
  lathe_model *m = tiny_model();
  if (!m) return;
  CHECK(lathe_model_bind(m, "batch", 2, &err) == 0);
  lathe_options o = {.backend = (lathe_backend)7};
  CHECK_NULL_ERR(lathe_compile(m, &o, &err),
                 "lathe_compile: backend 7 is not a lathe_backend (LATHE_BACKEND_INTERP, LATHE_BACKEND_LLVM or "
                 "LATHE_BACKEND_CUDA)");
  o.backend = (lathe_backend)-1;
  CHECK_NULL_ERR(lathe_compile_train(m, &o, &err),
                 "lathe_compile_train: backend -1 is not a lathe_backend (LATHE_BACKEND_INTERP, "
                 "LATHE_BACKEND_LLVM or LATHE_BACKEND_CUDA)");
  o = (lathe_options){.default_dim = -3};
  CHECK_NULL_ERR(lathe_compile(m, &o, &err), "lathe_compile: default_dim must be 0 (none) or 1 to 2^40, got -3");
  o = (lathe_options){.opt_level_set = 1, .opt_level = 9};
  CHECK_NULL_ERR(lathe_compile(m, &o, &err), "unknown optimisation level -O9 (expected -O0 to -O3)");
  o = (lathe_options){.opt_level_set = 1, .opt_level = -1};
  CHECK_NULL_ERR(lathe_compile(m, &o, &err), "unknown optimisation level -O-1 (expected -O0 to -O3)");
  o = (lathe_options){.passes = "cse,nope"};
  CHECK(lathe_compile(m, &o, &err) == NULL);
  CHECK_MSG(err.message && strstr(err.message, "unknown pass 'nope'"), "%s", err.message);
  lathe_error_clear(&err);
  lathe_model_free(m);
}

/* ---- programs: accessors ---- */

static void test_program_null(void) {
  CHECK(lathe_num_outputs(NULL) == -1);
  CHECK(lathe_output_name(NULL, 0) == NULL);
  CHECK(lathe_has_loss(NULL) == 0);
  CHECK(lathe_num_params(NULL) == -1);
  CHECK(lathe_param_name(NULL, 0) == NULL);
  CHECK(lathe_program_profile(NULL) == NULL);
  lathe_program_free(NULL);
  lathe_program_print(NULL, LATHE_PRINT_SUMMARY, stdout);
  lathe_compile_stats cs;
  lathe_pass_stats ps;
  lathe_tensor v;
  CHECK(lathe_program_stats(NULL, &cs) == LATHE_EUSER);
  CHECK(lathe_program_pass_stats(NULL, &ps) == LATHE_EUSER);
  CHECK(lathe_param_view(NULL, 0, &v) == LATHE_EUSER && v.data == NULL);
}

/* An output or parameter index out of range has no name, as an input's. */
static void test_index_out_of_range(void) {
  lathe_program *p = tiny_program(2);
  if (!p) return;
  CHECK(lathe_num_outputs(p) == 1 && lathe_num_params(p) == 4);
  CHECK(lathe_output_name(p, 1) == NULL);
  CHECK(lathe_output_name(p, -1) == NULL);
  CHECK(lathe_output_name(p, INT32_MAX) == NULL);
  CHECK(lathe_param_name(p, 4) == NULL);
  CHECK(lathe_param_name(p, -1) == NULL);
  CHECK(lathe_param_name(p, INT32_MAX) == NULL);
  lathe_program_free(p);
}

static void test_program_ranges(void) {
  lathe_tensor v;
  lathe_program *p = tiny_program(2);
  if (!p) return;
  CHECK(lathe_program_stats(p, NULL) == LATHE_EUSER);
  CHECK(lathe_program_pass_stats(p, NULL) == LATHE_EUSER);
  CHECK(lathe_param_view(p, 0, NULL) == LATHE_EUSER);
  CHECK(lathe_param_view(p, 0, &v) == LATHE_EUSER && v.data == NULL); /* no weights yet */
  CHECK(lathe_param_view(p, 4, &v) == LATHE_EUSER && v.data == NULL);
  FILE *f = tmpfile();
  if (f) {
    lathe_program_print(p, (lathe_print_kind)42, f);
    lathe_program_print(p, LATHE_PRINT_SUMMARY, NULL);
    CHECK(ftell(f) == 0);
    fclose(f);
  }
  lathe_program_free(p);
}

/* ---- weights ---- */

static void test_weights(void) {
  lathe_error err = {0};
  CHECK_ERR(lathe_weights_init(NULL, 1, &err), LATHE_EUSER, "lathe_weights_init: the program is NULL");
  CHECK_ERR(lathe_weights_load(NULL, "w.safetensors", &err), LATHE_EUSER, "lathe_weights_load: the program is NULL");
  CHECK_ERR(lathe_weights_save(NULL, "w.safetensors", &err), LATHE_EUSER, "lathe_weights_save: the program is NULL");
  lathe_program *p = tiny_program(2);
  if (!p) return;
  CHECK_ERR(lathe_weights_load(p, NULL, &err), LATHE_EUSER, "lathe_weights_load: the path is NULL");
  CHECK_ERR(lathe_weights_save(p, NULL, &err), LATHE_EUSER, "lathe_weights_save: the path is NULL");
  CHECK(lathe_weights_init(p, 1, NULL) == 0);
  CHECK(lathe_weights_save(p, NULL, NULL) == LATHE_EUSER);
  lathe_program_free(p);
}

/* ---- inputs, running, outputs ---- */

static void test_set_input_null(void) {
  lathe_error err = {0};
  float xs[6] = {1, 2, 3, 4, 5, 6};
  lathe_tensor x = {.dtype = LATHE_F32, .rank = 2, .shape = {2, 3}, .data = xs};
  CHECK_ERR(lathe_set_input(NULL, "x", &x, &err), LATHE_EUSER, "lathe_set_input: the program is NULL");
  lathe_program *p = tiny_program(2);
  if (!p) return;
  CHECK_ERR(lathe_set_input(p, NULL, &x, &err), LATHE_EUSER, "lathe_set_input: the input name is NULL");
  CHECK_ERR(lathe_set_input(p, "x", NULL, &err), LATHE_EUSER, "lathe_set_input: the tensor is NULL");
  /* NULL err: the code still comes back, nothing is set. */
  CHECK(lathe_set_input(p, "x", NULL, NULL) == LATHE_EUSER);
  lathe_program_free(p);
}

static void test_set_input_tensors(void) {
  lathe_error err = {0};
  float xs[6] = {1, 2, 3, 4, 5, 6};
  lathe_tensor x = {.dtype = LATHE_F32, .rank = 2, .shape = {2, 3}, .data = xs};
  lathe_program *p = tiny_program(2);
  if (!p) return;
  CHECK_ERR(lathe_set_input(p, "nope", &x, &err), LATHE_EUSER, "model 'tiny' has no input 'nope'");
  lathe_tensor t = x;
  t.dtype = (lathe_dtype)42;
  CHECK_ERR(lathe_set_input(p, "x", &t, &err), LATHE_EUSER,
            "lathe_set_input: the tensor has dtype 42, which is not a lathe_dtype");
  t = x, t.dtype = (lathe_dtype)-1;
  CHECK_ERR(lathe_set_input(p, "x", &t, &err), LATHE_EUSER,
            "lathe_set_input: the tensor has dtype -1, which is not a lathe_dtype");
  t = x, t.rank = LATHE_MAXDIM + 1;
  CHECK_ERR(lathe_set_input(p, "x", &t, &err), LATHE_EUSER,
            "lathe_set_input: the tensor has rank 9; the rank must be 0 to LATHE_MAXDIM (8)");
  t = x, t.rank = 1000000;
  CHECK_ERR(lathe_set_input(p, "x", &t, &err), LATHE_EUSER,
            "lathe_set_input: the tensor has rank 1000000; the rank must be 0 to LATHE_MAXDIM (8)");
  t = x, t.rank = -1;
  CHECK_ERR(lathe_set_input(p, "x", &t, &err), LATHE_EUSER,
            "lathe_set_input: the tensor has rank -1; the rank must be 0 to LATHE_MAXDIM (8)");
  t = x, t.shape[1] = -3;
  CHECK_ERR(lathe_set_input(p, "x", &t, &err), LATHE_EUSER,
            "lathe_set_input: the tensor has dimension 1 = -3; dimensions must be >= 0");
  t = (lathe_tensor){.dtype = LATHE_F32, .rank = 3, .shape = {1LL << 40, 1LL << 40, 1LL << 40}, .data = xs};
  CHECK_ERR(lathe_set_input(p, "x", &t, &err), LATHE_EUSER,
            "lathe_set_input: the tensor has more elements than fit in memory (the size overflows)");
  t = (lathe_tensor){.dtype = LATHE_I64, .rank = 1, .shape = {1LL << 62}, .data = xs}; /* bytes overflow */
  CHECK_ERR(lathe_set_input(p, "x", &t, &err), LATHE_EUSER,
            "lathe_set_input: the tensor has more elements than fit in memory (the size overflows)");
  t = x, t.data = NULL;
  CHECK_ERR(lathe_set_input(p, "x", &t, &err), LATHE_EUSER,
            "lathe_set_input: the tensor has 6 elements but its data is NULL");
  t = x, t.shape[0] = 3;
  CHECK_ERR(lathe_set_input(p, "x", &t, &err), LATHE_EUSER, "input 'x': expected shape [2, 3], got [3, 3]");
  int32_t ys[2] = {0, 1};
  lathe_tensor y = {.dtype = LATHE_I32, .rank = 1, .shape = {2}, .data = ys};
  CHECK_ERR(lathe_set_input(p, "x", &y, &err), LATHE_EUSER, "input 'x': expected shape [2, 3], got [2]");
  y.shape[0] = 2, y.rank = 2, y.shape[1] = 3;
  CHECK_ERR(lathe_set_input(p, "x", &y, &err), LATHE_EUSER, "input 'x': expected f32[2, 3], got a i32 array");
  CHECK(lathe_weights_init(p, 3, &err) == 0);
  CHECK_ERR(lathe_run(p, &err), LATHE_EUSER, "input 'x' was not given (use --in x=FILE.npy)");
  lathe_program_free(p);
}

static void test_run_and_outputs(void) {
  lathe_error err = {0};
  CHECK_ERR(lathe_run(NULL, &err), LATHE_EUSER, "lathe_run: the program is NULL");
  CHECK(lathe_run(NULL, NULL) == LATHE_EUSER);
  lathe_tensor out;
  CHECK_ERR(lathe_get_output(NULL, "probs", &out, &err), LATHE_EUSER, "lathe_get_output: the program is NULL");
  CHECK(out.data == NULL);
  lathe_program *p = tiny_program(2);
  if (!p) return;
  CHECK_ERR(lathe_get_output(p, "probs", NULL, &err), LATHE_EUSER, "lathe_get_output: the output tensor is NULL");
  CHECK_ERR(lathe_get_output(p, NULL, &out, &err), LATHE_EUSER, "lathe_get_output: the output name is NULL");
  CHECK_ERR(lathe_get_output(p, "probs", &out, &err), LATHE_EUSER, "no results yet: call lathe_run first");
  float xs[6] = {1, 2, 3, 4, 5, 6};
  lathe_tensor x = {.dtype = LATHE_F32, .rank = 2, .shape = {2, 3}, .data = xs};
  CHECK(lathe_weights_init(p, 3, &err) == 0 && lathe_set_input(p, "x", &x, &err) == 0);
  CHECK(lathe_run(p, &err) == 0);
  CHECK_ERR(lathe_get_output(p, "nope", &out, &err), LATHE_EUSER, "model 'tiny' has no output 'nope'");
  CHECK(out.data == NULL);
  CHECK_ERR(lathe_get_output(p, "loss", &out, &err), LATHE_EUSER,
            "the loss needs the targets: give every target input");
  CHECK(lathe_get_output(p, "probs", &out, NULL) == 0 && out.rank == 2);
  lathe_tensor_free(&out);
  lathe_program_free(p);
}

/* ---- arrays on disk ---- */

static void test_npy(void) {
  lathe_error err = {0};
  char path[128];
  snprintf(path, sizeof path, "%s/a.npy", tmpdir);
  lathe_tensor out;
  CHECK_ERR(lathe_npy_load(NULL, &out, &err), LATHE_EUSER, "lathe_npy_load: the path is NULL");
  CHECK(out.data == NULL);
  CHECK_ERR(lathe_npy_load(path, NULL, &err), LATHE_EUSER, "lathe_npy_load: the output tensor is NULL");
  float xs[2] = {1, 2};
  lathe_tensor t = {.dtype = LATHE_F32, .rank = 1, .shape = {2}, .data = xs};
  CHECK_ERR(lathe_npy_save(NULL, &t, &err), LATHE_EUSER, "lathe_npy_save: the path is NULL");
  CHECK_ERR(lathe_npy_save(path, NULL, &err), LATHE_EUSER, "lathe_npy_save: the tensor is NULL");
  lathe_tensor b = t;
  b.rank = LATHE_MAXDIM + 1;
  CHECK_ERR(lathe_npy_save(path, &b, &err), LATHE_EUSER,
            "lathe_npy_save: the tensor has rank 9; the rank must be 0 to LATHE_MAXDIM (8)");
  b = t, b.dtype = (lathe_dtype)8;
  CHECK_ERR(lathe_npy_save(path, &b, &err), LATHE_EUSER,
            "lathe_npy_save: the tensor has dtype 8, which is not a lathe_dtype");
  b = t, b.shape[0] = -2;
  CHECK_ERR(lathe_npy_save(path, &b, &err), LATHE_EUSER,
            "lathe_npy_save: the tensor has dimension 0 = -2; dimensions must be >= 0");
  b = t, b.data = NULL;
  CHECK_ERR(lathe_npy_save(path, &b, &err), LATHE_EUSER,
            "lathe_npy_save: the tensor has 2 elements but its data is NULL");
  b = (lathe_tensor){.dtype = LATHE_F32, .rank = 2, .shape = {INT64_MAX, 2}, .data = xs};
  CHECK_ERR(lathe_npy_save(path, &b, &err), LATHE_EUSER,
            "lathe_npy_save: the tensor has more elements than fit in memory (the size overflows)");
  CHECK(access(path, F_OK) != 0); /* nothing was written */
  /* An empty tensor needs no data. */
  b = (lathe_tensor){.dtype = LATHE_F32, .rank = 2, .shape = {0, 5}};
  CHECK(lathe_npy_save(path, &b, &err) == 0);
  CHECK(lathe_npy_load(path, &out, &err) == 0 && out.rank == 2 && out.shape[0] == 0 && out.shape[1] == 5);
  lathe_tensor_free(&out);
  unlink(path);
}

/* ---- training, evaluation, generation ---- */

static void write_csv(const char *path) {
  FILE *f = fopen(path, "w");
  if (!f) return;
  fprintf(f, "a,b,c,label\n");
  for (int i = 0; i < 40; i++) fprintf(f, "%d,%d,%d,%d\n", i % 7, (i * 3) % 5, i % 2, i % 2);
  fclose(f);
}

static lathe_train_options train_opts(const char *csv) {
  return (lathe_train_options){.data = csv, .epochs = 1, .seed_set = 1, .seed = 1, .tty = 0};
}

static void test_train_arguments(void) {
  lathe_error err = {0};
  char csv[128];
  snprintf(csv, sizeof csv, "%s/d.csv", tmpdir);
  write_csv(csv);
  lathe_model *m = tiny_model();
  if (!m) return;
  lathe_train_options o = train_opts(csv);
  lathe_train_result r;
  CHECK_ERR(lathe_train(NULL, &o, &r, &err), LATHE_EUSER, "lathe_train: the model is NULL");
  CHECK_ERR(lathe_train(m, NULL, &r, &err), LATHE_EUSER, "lathe_train: the options struct is NULL");
  struct { lathe_train_options o; const char *want; } bad[] = {
    {{.data = csv, .lr = NAN}, "lathe_train: lr must be 0 (the train block's) or a finite number > 0, got nan"},
    {{.data = csv, .lr = -0.5}, "lathe_train: lr must be 0 (the train block's) or a finite number > 0, got -0.5"},
    {{.data = csv, .lr = INFINITY}, "lathe_train: lr must be 0 (the train block's) or a finite number > 0, got inf"},
    {{.data = csv, .epochs = -1}, "lathe_train: epochs must be 0 (the train block's) or 1 to 1000000000, got -1"},
    {{.data = csv, .epochs = INT64_MAX},
     "lathe_train: epochs must be 0 (the train block's) or 1 to 1000000000, got 9223372036854775807"},
    {{.data = csv, .batch = -5}, "lathe_train: batch must be 0 (the train block's) or 1 to 2^40, got -5"},
    {{.data = csv, .batch = 1LL << 41}, "lathe_train: batch must be 0 (the train block's) or 1 to 2^40, got 2199023255552"},
    {{.data = csv, .restarts = -2}, "lathe_train: restarts must be 0 or more (0 and 1: one run), got -2"},
    {{.data = csv, .seed_set = 1, .seed = UINT64_MAX}, "lathe_train: seed must be below 2^63, got 18446744073709551615"},
    {{.data = csv, .tty = 5}, "lathe_train: tty must be -1 (ask isatty), 0 or 1, got 5"},
    {{.nnpy = -1}, "lathe_train: nnpy must be >= 0, got -1"},
    {{.nnpy = 2}, "lathe_train: npy is NULL but nnpy is 2"},
    {{.npy = (const char *const[]){"x=a.npy", NULL}, .nnpy = 2}, "lathe_train: npy[1] is NULL"},
    {{.data = csv, .backend = (lathe_backend)9},
     "lathe_train: backend 9 is not a lathe_backend (LATHE_BACKEND_INTERP, LATHE_BACKEND_LLVM or LATHE_BACKEND_CUDA)"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    memset(&r, 0x55, sizeof r);
    CHECK_ERR(lathe_train(m, &bad[i].o, &r, &err), LATHE_EUSER, bad[i].want);
    CHECK(r.steps == 0 && r.test.n == 0); /* the result is cleared */
  }
  /* Wrong names and values the data and training code check. */
  struct { lathe_train_options o; const char *part; } wrong[] = {
    {{.data = csv, .metric = "nope"}, "does not report 'nope'"},
    {{.data = csv, .normalize = "nope"}, "unknown normalisation 'nope'"},
    {{.data = csv, .target_column_set = 1, .target_column = 99}, "target column 99 out of range"},
    {{.data = csv, .resume = 1}, "--resume needs --out DIR"},
    {{.data = NULL}, "no training data"},
    {{.data = "no/such/file.csv"}, "no/such/file.csv"},
    {{.npy = (const char *const[]){"nonsense"}, .nnpy = 1}, "expected NAME=FILE"},
    {{.npy = (const char *const[]){"zz=z.npy"}, .nnpy = 1}, "model 'tiny' has no input or target 'zz'"},
  };
  for (size_t i = 0; i < sizeof wrong / sizeof wrong[0]; i++)
    CHECK_ERR_HAS(lathe_train(m, &wrong[i].o, &r, &err), LATHE_EUSER, wrong[i].part);
  lathe_model_free(m);
  unlink(csv);
}

static void test_train_null_result(void) {
  lathe_error err = {0};
  lathe_model *m = tiny_model();
  if (!m) return;
  lathe_train_options o = train_opts("unused.csv");
  CHECK_ERR(lathe_train(m, &o, NULL, &err), LATHE_EUSER, "lathe_train: the result struct is NULL");
  CHECK(lathe_train(m, &o, NULL, NULL) == LATHE_EUSER);
  lathe_model_free(m);
}

/* NULL err: training still runs (and a failure still returns its code). */
static void test_train_null_err(void) {
  char csv[128];
  snprintf(csv, sizeof csv, "%s/n.csv", tmpdir);
  write_csv(csv);
  lathe_model *m = tiny_model();
  if (!m) return;
  lathe_train_options o = train_opts(csv);
  lathe_train_result r;
  CHECK(lathe_train(m, &o, &r, NULL) == 0);
  CHECK(r.epochs == 1 && r.steps > 0);
  o.data = "no/such/file.csv";
  CHECK(lathe_train(m, &o, &r, NULL) == LATHE_EUSER);
  lathe_model_free(m);
  unlink(csv);
}

/* lathe_train and lathe_eval leave the model's bindings as they were. */
static void test_train_leaves_model(void) {
  lathe_error err = {0};
  char csv[128], dir[128], w[160];
  snprintf(csv, sizeof csv, "%s/t.csv", tmpdir);
  snprintf(dir, sizeof dir, "%s/out", tmpdir);
  snprintf(w, sizeof w, "%s/best.safetensors", dir);
  write_csv(csv);
  lathe_model *m = tiny_model();
  if (!m) return;
  lathe_train_options o = train_opts(csv);
  o.out_dir = dir;
  lathe_train_result r;
  /* A run that fails after the data bound the batch (the metric is checked later). */
  o.metric = "nope";
  CHECK_ERR_HAS(lathe_train(m, &o, &r, &err), LATHE_EUSER, "does not report 'nope'");
  o.metric = NULL;
  CHECK(lathe_train(m, &o, &r, &err) == 0);
  lathe_error_clear(&err);
  /* The model is unbound again: compiling it needs a binding, and any size binds. */
  CHECK_NULL_ERR(lathe_compile(m, NULL, &err),
                 "symbolic dimension 'batch' is not bound: give an input array or --bind batch=N");
  int64_t shape[2] = {7, 3};
  CHECK(lathe_model_bind_input(m, "x", 2, shape, &err) == 0);
  CHECK_MSG(err.message == NULL, "%s", err.message);
  lathe_error_clear(&err);
  /* A binding the caller made stays: train at batch 7 (the bound size), then bind 7 again. */
  o.batch = 7;
  CHECK(lathe_train(m, &o, &r, &err) == 0);
  lathe_error_clear(&err);
  CHECK(lathe_model_bind(m, "batch", 7, &err) == 0);
  lathe_program *p = lathe_compile(m, NULL, &err);
  CHECK(p != NULL);
  lathe_program_free(p);
  lathe_model_free(m);

  /* lathe_eval: arguments, then the bindings. */
  m = tiny_model();
  if (!m) return;
  lathe_eval_options eo = {.weights = w, .data = train_opts(csv)};
  lathe_metrics mt;
  CHECK_ERR(lathe_eval(NULL, &eo, &mt, &err), LATHE_EUSER, "lathe_eval: the model is NULL");
  CHECK_ERR(lathe_eval(m, NULL, &mt, &err), LATHE_EUSER, "lathe_eval: the options struct is NULL");
  CHECK_ERR(lathe_eval(m, &eo, NULL, &err), LATHE_EUSER, "lathe_eval: the metrics struct is NULL");
  eo.weights = NULL;
  CHECK_ERR(lathe_eval(m, &eo, &mt, &err), LATHE_EUSER, "lathe_eval: the weights path is NULL");
  eo.weights = w;
  eo.data.batch = -1;
  CHECK_ERR(lathe_eval(m, &eo, &mt, &err), LATHE_EUSER,
            "lathe_eval: batch must be 0 (the train block's) or 1 to 2^40, got -1");
  eo.data.batch = 0;
  eo.split = "nope";
  CHECK_ERR(lathe_eval(m, &eo, &mt, &err), LATHE_EUSER, "unknown split 'nope' (expected test, val, train or all)");
  eo.split = NULL;
  eo.weights = "no/such.safetensors";
  CHECK_ERR_HAS(lathe_eval(m, &eo, &mt, &err), LATHE_EUSER, "no/such.safetensors");
  eo.weights = w;
  CHECK(lathe_eval(m, &eo, &mt, NULL) == 0 && mt.n > 0);
  shape[0] = 5;
  CHECK(lathe_model_bind_input(m, "x", 2, shape, &err) == 0);
  lathe_error_clear(&err);
  lathe_model_free(m);
  unlink(csv);
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  CHECK(system(cmd) == 0);
}

static void test_generate_arguments(void) {
  lathe_error err = {0};
  lathe_generate_options go = {.weights = "w.safetensors", .tokens = 3};
  CHECK_ERR(lathe_generate(NULL, &go, NULL, &err), LATHE_EUSER, "lathe_generate: the model is NULL");
  lathe_model *m = tiny_model();
  if (!m) return;
  go.backend = (lathe_backend)5;
  CHECK_ERR(lathe_generate(m, &go, NULL, &err), LATHE_EUSER,
            "lathe_generate: backend 5 is not a lathe_backend (LATHE_BACKEND_INTERP, LATHE_BACKEND_LLVM or "
            "LATHE_BACKEND_CUDA)");
  go.backend = LATHE_BACKEND_INTERP;
  go.temperature = NAN;
  CHECK_ERR(lathe_generate(m, &go, NULL, &err), LATHE_EUSER,
            "generate: the temperature must be a finite number >= 0, got nan");
  go.temperature = 0, go.top_k = -1;
  CHECK_ERR(lathe_generate(m, &go, NULL, &err), LATHE_EUSER, "generate: top-k must be >= 0, got -1");
  go.top_k = 0, go.tokens = -1;
  CHECK_ERR(lathe_generate(m, &go, NULL, &err), LATHE_EUSER, "generate: the token count must be >= 0");
  CHECK_ERR(lathe_generate(m, NULL, NULL, &err), LATHE_EUSER, "generate: no weights: give a safetensors file");
  lathe_model_free(m);
}

/* ---- the runner: one child process per group ---- */

static int run_group(const char *name, void (*fn)(void)) {
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid < 0) { perror("fork"); return 1; }
  if (pid == 0) {
    fn();
    printf("%-26s %d passed, %d failed\n", name, test_pass_, test_fail_);
    exit(test_fail_ != 0); /* exit, not _exit: the leak checker runs at exit */
  }
  int st = 0;
  waitpid(pid, &st, 0);
  if (WIFSIGNALED(st)) { printf("%-26s CRASHED (signal %d)\n", name, WTERMSIG(st)); return 1; }
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
    if (WIFEXITED(st) && WEXITSTATUS(st) != 1) printf("%-26s exit status %d\n", name, WEXITSTATUS(st));
    return 1;
  }
  return 0;
}

int main(void) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/lathe_hostile_XXXXXX");
  if (!mkdtemp(tmpdir)) { perror("mkdtemp"); return 1; }
  static const struct { const char *name; void (*fn)(void); } groups[] = {
    {"helpers", test_helpers},
    {"model_null", test_model_null},
    {"model_ranges", test_model_ranges},
    {"bind_input_atomic", test_bind_input_atomic},
    {"compile_null", test_compile_null},
    {"compile_options", test_compile_options},
    {"program_null", test_program_null},
    {"index_out_of_range", test_index_out_of_range},
    {"program_ranges", test_program_ranges},
    {"weights", test_weights},
    {"set_input_null", test_set_input_null},
    {"set_input_tensors", test_set_input_tensors},
    {"run_and_outputs", test_run_and_outputs},
    {"npy", test_npy},
    {"train_arguments", test_train_arguments},
    {"train_null_result", test_train_null_result},
    {"train_null_err", test_train_null_err},
    {"train_leaves_model", test_train_leaves_model},
    {"generate_arguments", test_generate_arguments},
  };
  int failed = 0, n = (int)(sizeof groups / sizeof groups[0]);
  for (int i = 0; i < n; i++) failed += run_group(groups[i].name, groups[i].fn);
  rmdir(tmpdir);
  printf("%d of %d groups failed\n", failed, n);
  return failed != 0;
}
