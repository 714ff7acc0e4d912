/* test_api_host.c -- the C API as a host program uses it: inputs bound
 * zero-copy to the caller's memory (read at every run, never written, also
 * with preprocessing; refused when the layout is not the program's), the
 * names, roles, dtypes and shapes of every input, output and parameter, and
 * a model parsed from a string; every error path of those calls. */
#include <stdlib.h>
#include <string.h>

#include "lathe.h"
#include "runtime/program.h"
#include "tests/test.h"

static const char *MLP =
    "model tiny\n"
    "input x : f32[batch, 3]\n"
    "target y : i32[batch]\n"
    "h = dense(x, 4, name=\"fc1\") |> relu\n"
    "logits = dense(h, 2, name=\"out\")\n"
    "output probs = softmax(logits)\n"
    "loss = cross_entropy(logits, y)\n";

#define CHECK_ERR(call, code, msg) do { \
  CHECK((call) == (code)); \
  CHECK_STR(err.message, msg); \
  lathe_error_clear(&err); \
} while (0)

static lathe_program *tiny(lathe_backend be, int train) {
  lathe_error err = {0};
  lathe_model *m = lathe_model_parse("tiny.nn", MLP, strlen(MLP), &err);
  CHECK(m && lathe_model_bind(m, "batch", 2, &err) == 0);
  lathe_options o = {.backend = be};
  lathe_program *p = !m ? NULL : train ? lathe_compile_train(m, &o, &err) : lathe_compile(m, &o, &err);
  CHECK_MSG(p != NULL, "%s", err.message ? err.message : "");
  lathe_error_clear(&err);
  lathe_model_free(m); /* a program does not need its model */
  if (p) CHECK(lathe_weights_init(p, 3, &err) == 0);
  return p;
}

static void probs(lathe_program *p, float out[4]) {
  lathe_error err = {0};
  lathe_tensor t;
  memset(out, 0, 4 * sizeof *out);
  CHECK(lathe_run(p, &err) == 0 && lathe_get_output(p, "probs", &t, &err) == 0);
  if (t.data) memcpy(out, t.data, 4 * sizeof *out);
  lathe_tensor_free(&t);
  lathe_error_clear(&err);
}

/* Bound memory is read at every run: changing it changes the next result,
 * which equals what lathe_set_input of the same values gives. */
static void test_bind_reads_caller_memory(lathe_backend be) {
  lathe_error err = {0};
  lathe_program *p = tiny(be, 0), *q = tiny(be, 0);
  if (!p || !q) return;
  float xs[6] = {1, 2, 3, -1, 0.5f, 2}, a[4], b[4];
  lathe_tensor x = {.dtype = LATHE_F32, .rank = 2, .shape = {2, 3}, .data = xs};
  CHECK(lathe_bind_input(p, "x", &x, &err) == 0);
  CHECK(lathe_set_input(q, "x", &x, &err) == 0);
  probs(p, a), probs(q, b);
  CHECK(memcmp(a, b, sizeof a) == 0);
  for (int k = 0; k < 6; k++) xs[k] = -xs[k] * 2;
  probs(p, a);
  CHECK(memcmp(a, b, sizeof a) != 0); /* the new values, not a copy of the old */
  CHECK(lathe_set_input(q, "x", &x, &err) == 0);
  probs(q, b);
  CHECK(memcmp(a, b, sizeof a) == 0);
  /* lathe_set_input replaces the binding: later changes are not seen. */
  CHECK(lathe_set_input(p, "x", &x, &err) == 0);
  xs[0] = 100;
  probs(p, a);
  CHECK(memcmp(a, b, sizeof a) == 0);
  lathe_program_free(p);
  lathe_program_free(q);
}

/* Preprocessing the weights carry applies to bound inputs too, on a copy. */
static void test_bind_preprocessed(lathe_backend be) {
  lathe_error err = {0};
  lathe_program *p = tiny(be, 0), *q = tiny(be, 0);
  if (!p || !q) return;
  float shift[3] = {1, 2, 3}, scale[3] = {0.5f, 2, 4};
  rt_norm nm = {.kind = RT_NORM_STANDARD, .width = 3, .shift = shift, .scale = scale};
  CHECK(api_pre_set(p, "x", &nm, &err) == 0 && api_pre_set(q, "x", &nm, &err) == 0);
  float xs[6] = {1, 2, 3, -1, 0.5f, 2}, keep[6], a[4], b[4];
  memcpy(keep, xs, sizeof xs);
  lathe_tensor x = {.dtype = LATHE_F32, .rank = 2, .shape = {2, 3}, .data = xs};
  CHECK(lathe_bind_input(p, "x", &x, &err) == 0 && lathe_set_input(q, "x", &x, &err) == 0);
  probs(p, a), probs(q, b);
  CHECK(memcmp(a, b, sizeof a) == 0);
  CHECK(memcmp(xs, keep, sizeof xs) == 0); /* the caller's memory is not written */
  probs(p, a); /* normalised once per run, not again on the same values */
  CHECK(memcmp(a, b, sizeof a) == 0);
  lathe_program_free(p);
  lathe_program_free(q);
}

/* A training step reads bound inputs and targets as well. */
static void test_bind_train_step(void) {
  lathe_error err = {0};
  lathe_program *p = tiny(LATHE_BACKEND_LLVM, 1), *q = tiny(LATHE_BACKEND_LLVM, 1);
  if (!p || !q) return;
  float xs[6] = {1, 2, 3, -1, 0.5f, 2};
  int32_t ys[2] = {1, 0};
  lathe_tensor x = {.dtype = LATHE_F32, .rank = 2, .shape = {2, 3}, .data = xs};
  lathe_tensor y = {.dtype = LATHE_I32, .rank = 1, .shape = {2}, .data = ys};
  CHECK(lathe_bind_input(p, "x", &x, &err) == 0 && lathe_bind_input(p, "y", &y, &err) == 0);
  CHECK(lathe_set_input(q, "x", &x, &err) == 0 && lathe_set_input(q, "y", &y, &err) == 0);
  for (int s = 0; s < 3; s++) CHECK(lathe_run(p, &err) == 0 && lathe_run(q, &err) == 0);
  lathe_tensor lp, lq;
  CHECK(lathe_get_output(p, "loss", &lp, &err) == 0 && lathe_get_output(q, "loss", &lq, &err) == 0);
  CHECK(lp.data && lq.data && *(float *)lp.data == *(float *)lq.data);
  lathe_tensor_free(&lp);
  lathe_tensor_free(&lq);
  lathe_program_free(p);
  lathe_program_free(q);
}

static void test_bind_errors(void) {
  lathe_error err = {0};
  lathe_program *p = tiny(LATHE_BACKEND_INTERP, 0);
  if (!p) return;
  float xs[9] = {0};
  int32_t is[6] = {0};
  lathe_tensor x = {.dtype = LATHE_F32, .rank = 2, .shape = {2, 3}, .data = xs};
  CHECK_ERR(lathe_bind_input(NULL, "x", &x, &err), LATHE_EUSER, "lathe_bind_input: the program is NULL");
  CHECK_ERR(lathe_bind_input(p, NULL, &x, &err), LATHE_EUSER, "lathe_bind_input: the input name is NULL");
  CHECK_ERR(lathe_bind_input(p, "x", NULL, &err), LATHE_EUSER, "lathe_bind_input: the tensor is NULL");
  CHECK_ERR(lathe_bind_input(p, "nope", &x, &err), LATHE_EUSER, "model 'tiny' has no input 'nope'");
  lathe_tensor bad = x;
  bad.shape[0] = 3;
  CHECK_ERR(lathe_bind_input(p, "x", &bad, &err), LATHE_EUSER, "input 'x': expected shape [2, 3], got [3, 3]");
  bad = (lathe_tensor){.dtype = LATHE_I32, .rank = 2, .shape = {2, 3}, .data = is};
  CHECK_ERR(lathe_bind_input(p, "x", &bad, &err), LATHE_EUSER,
            "input 'x': binding reads the caller's memory as it is, so it must be f32[2, 3], got a i32 array "
            "(lathe_set_input converts)");
  bad = (lathe_tensor){.dtype = LATHE_I64, .rank = 1, .shape = {2}, .data = is}; /* i32 target, i64 array */
  CHECK(lathe_bind_input(p, "y", &bad, &err) == LATHE_EUSER && err.message && strstr(err.message, "must be i32[2]"));
  lathe_error_clear(&err);
  bad = x;
  bad.rank = 9;
  CHECK_ERR(lathe_bind_input(p, "x", &bad, &err), LATHE_EUSER,
            "lathe_bind_input: the tensor has rank 9; the rank must be 0 to LATHE_MAXDIM (8)");
  bad = x;
  bad.data = NULL;
  CHECK_ERR(lathe_bind_input(p, "x", &bad, &err), LATHE_EUSER,
            "lathe_bind_input: the tensor has 6 elements but its data is NULL");
  /* A refused binding leaves the input unset. */
  CHECK_ERR(lathe_run(p, &err), LATHE_EUSER, "input 'x' was not given (use --in x=FILE.npy)");
  CHECK(lathe_bind_input(p, "x", &x, NULL) == 0);
  CHECK(lathe_bind_input(p, "x", &bad, NULL) == LATHE_EUSER); /* err may be NULL */
  lathe_program_free(p);
}

static void check_info(const lathe_tensor_info *t, const char *name, lathe_role role, lathe_dtype dt, int rank,
                       int64_t d0, int64_t d1) {
  CHECK_STR(t->name, name);
  CHECK(t->role == role && t->dtype == dt && t->rank == rank);
  CHECK(rank < 1 || t->shape[0] == d0);
  CHECK(rank < 2 || t->shape[1] == d1);
}

static void test_model_info(void) {
  lathe_error err = {0};
  lathe_model *m = lathe_model_parse(NULL, MLP, strlen(MLP), &err);
  CHECK(m != NULL);
  if (!m) return;
  lathe_tensor_info t;
  CHECK(lathe_model_num_inputs(m) == 2);
  CHECK(lathe_model_input_info(m, 0, &t) == 0);
  check_info(&t, "x", LATHE_ROLE_INPUT, LATHE_F32, 2, -1, 3);
  CHECK_STR(t.dim[0], "batch");
  CHECK(t.dim[1] == NULL);
  CHECK(lathe_model_bind(m, "batch", 5, &err) == 0);
  CHECK(lathe_model_input_info(m, 1, &t) == 0);
  check_info(&t, "y", LATHE_ROLE_TARGET, LATHE_I32, 1, 5, 0);
  CHECK_STR(t.dim[0], "batch");
  CHECK(lathe_model_input_info(m, 2, &t) == LATHE_EUSER && t.name == NULL && t.rank == 0);
  CHECK(lathe_model_input_info(m, -1, &t) == LATHE_EUSER);
  CHECK(lathe_model_input_info(NULL, 0, &t) == LATHE_EUSER);
  CHECK(lathe_model_input_info(m, 0, NULL) == LATHE_EUSER);
  lathe_model_free(m);
}

static void test_program_info(void) {
  lathe_program *p = tiny(LATHE_BACKEND_INTERP, 0);
  if (!p) return;
  lathe_tensor_info t;
  CHECK(lathe_num_inputs(p) == 2);
  CHECK_STR(lathe_input_name(p, 1), "y");
  CHECK(lathe_input_name(p, 2) == NULL && lathe_input_name(p, -1) == NULL && lathe_input_name(NULL, 0) == NULL);
  CHECK(lathe_num_inputs(NULL) == -1);
  CHECK(lathe_input_info(p, 0, &t) == 0);
  check_info(&t, "x", LATHE_ROLE_INPUT, LATHE_F32, 2, 2, 3);
  CHECK(t.dim[0] == NULL); /* a program's shapes are concrete */
  CHECK(lathe_input_info(p, 1, &t) == 0);
  check_info(&t, "y", LATHE_ROLE_TARGET, LATHE_I32, 1, 2, 0);
  CHECK(lathe_output_info(p, 0, &t) == 0);
  check_info(&t, "probs", LATHE_ROLE_OUTPUT, LATHE_F32, 2, 2, 2);
  CHECK(lathe_param_info(p, 0, &t) == 0);
  check_info(&t, "fc1.weight", LATHE_ROLE_WEIGHT, LATHE_F32, 2, 3, 4);
  CHECK(lathe_param_info(p, 3, &t) == 0);
  check_info(&t, "out.bias", LATHE_ROLE_WEIGHT, LATHE_F32, 1, 2, 0);
  lathe_tensor_info *none = NULL;
  CHECK(lathe_input_info(p, 2, &t) == LATHE_EUSER && t.name == NULL);
  CHECK(lathe_output_info(p, 1, &t) == LATHE_EUSER && t.name == NULL);
  CHECK(lathe_param_info(p, 4, &t) == LATHE_EUSER && t.name == NULL);
  CHECK(lathe_param_info(p, -1, &t) == LATHE_EUSER);
  CHECK(lathe_input_info(NULL, 0, &t) == LATHE_EUSER && lathe_output_info(NULL, 0, &t) == LATHE_EUSER &&
        lathe_param_info(NULL, 0, &t) == LATHE_EUSER);
  CHECK(lathe_input_info(p, 0, none) == LATHE_EUSER && lathe_output_info(p, 0, none) == LATHE_EUSER &&
        lathe_param_info(p, 0, none) == LATHE_EUSER);
  lathe_program_free(p);

  /* A training step's optimizer state is a parameter of role STATE. */
  p = tiny(LATHE_BACKEND_INTERP, 1);
  if (!p) return;
  int weights = 0, state = 0;
  for (int i = 0; i < lathe_num_params(p); i++) {
    CHECK(lathe_param_info(p, i, &t) == 0);
    weights += t.role == LATHE_ROLE_WEIGHT;
    state += t.role == LATHE_ROLE_STATE;
  }
  CHECK(weights == 4);
  CHECK_MSG(state >= 4, "%d state tensors", state); /* adam: moments per weight */
  lathe_program_free(p);
}

/* Models from text: the name is used in diagnostics, the text needs no
 * terminating NUL (len counts), and bad text is an error with its place. */
static void test_model_from_string(void) {
  lathe_error err = {0};
  char *copy = malloc(strlen(MLP) + 8);
  memcpy(copy, MLP, strlen(MLP));
  memcpy(copy + strlen(MLP), "garbage", 7); /* beyond len: never read */
  lathe_model *m = lathe_model_parse("mem.nn", copy, strlen(MLP), &err);
  CHECK(m && strcmp(lathe_model_name(m), "tiny") == 0);
  lathe_model_free(m);
  free(copy);
  CHECK(lathe_model_parse("mem.nn", "model a\ninput x : f32[2]\noutput y = nope(x)\n", 43, &err) == NULL);
  CHECK(err.code == LATHE_EUSER && err.message && strncmp(err.message, "mem.nn:3:", 9) == 0);
  lathe_error_clear(&err);
  CHECK(lathe_model_parse(NULL, "model a\noutput y = \n", 20, &err) == NULL);
  CHECK(err.message && strncmp(err.message, "<model>:", 8) == 0);
  lathe_error_clear(&err);
  CHECK_ERR(lathe_model_parse("x", NULL, 0, &err) == NULL, 1, "lathe_model_parse: the source text is NULL");
  CHECK(lathe_model_parse("empty", "", 0, &err) == NULL && err.code == LATHE_EUSER);
  lathe_error_clear(&err);
}

int main(void) {
  test_bind_reads_caller_memory(LATHE_BACKEND_INTERP);
  test_bind_reads_caller_memory(LATHE_BACKEND_LLVM);
  test_bind_preprocessed(LATHE_BACKEND_INTERP);
  test_bind_preprocessed(LATHE_BACKEND_LLVM);
  test_bind_train_step();
  test_bind_errors();
  test_model_info();
  test_program_info();
  test_model_from_string();
  return TEST_REPORT();
}
