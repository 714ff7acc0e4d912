/* test_preprocess.c -- the data preprocessing that travels with the weights
 * (runtime/api_preprocess.c): lathe_weights_load reads the
 * "__preprocess.INPUT.*" tensors, lathe_set_input applies them to raw
 * features, lathe_weights_save and training checkpoints write them, weights
 * without them apply nothing, and every malformed entry is refused by name
 * without disturbing the weights already loaded. The CLI side (run, eval,
 * --normalize) is tests/preprocess.sh. */
#include <stdlib.h>
#include <string.h>

#include "lathe.h"
#include "runtime/runtime.h"
#include "test.h"

/* y = x @ I + 0: the output is the input as the model sees it. */
static const char *MODEL = "model ident\n"
                           "input x : f32[batch, 3]\n"
                           "input k : i32[batch]\n"
                           "output y = dense(x, 3, name=\"fc\")\n";

static const float IDENT[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1}, ZERO[3] = {0};
static const float SHIFT[3] = {1, 2, 3}, SCALE[3] = {0.5f, 2, 0.25f};

static lathe_program *compile(int64_t batch) {
  lathe_error err = {0};
  lathe_model *m = lathe_model_parse("ident.nn", MODEL, strlen(MODEL), &err);
  if (!m) { fprintf(stderr, "%s\n", err.message); lathe_error_clear(&err); return NULL; }
  lathe_model_bind(m, "batch", batch, &err);
  lathe_options o = {.backend = LATHE_BACKEND_INTERP};
  lathe_program *p = lathe_compile(m, &o, &err);
  lathe_model_free(m);
  if (!p) { fprintf(stderr, "%s\n", err.message); lathe_error_clear(&err); }
  return p;
}

/* The identity weights plus the extra entries given. */
static int write_file(const char *path, const rt_st_entry *extra, int nextra) {
  lathe_program *p = compile(1);
  lathe_error err = {0};
  if (!p || lathe_weights_init(p, 0, &err)) return -1;
  rt_st_entry e[16];
  int n = 0;
  for (int i = 0; i < lathe_num_params(p); i++) {
    lathe_tensor v;
    lathe_param_view(p, i, &v);
    e[n].name = (char *)lathe_param_name(p, i);
    e[n].t = v;
    e[n++].t.data = (void *)(v.rank == 2 ? IDENT : ZERO);
  }
  for (int i = 0; i < nextra; i++) e[n++] = extra[i];
  char msg[512];
  int rc = rt_st_write(path, e, n, msg, sizeof msg);
  if (rc) fprintf(stderr, "%s\n", msg);
  lathe_program_free(p);
  return rc;
}

static int64_t KIND_STANDARD[1] = {1}, KIND_NONE[1] = {0}, KIND_BAD[1] = {7};
static rt_st_entry kind_e(const char *name, int64_t *v) {
  return (rt_st_entry){(char *)name, {LATHE_I64, 1, {1}, v}};
}
static rt_st_entry vec_e(const char *name, const float *v, int64_t n) {
  return (rt_st_entry){(char *)name, {LATHE_F32, 1, {n}, (void *)v}};
}

/* Run p on two raw rows; out receives y [2, 3]. */
static int run2(lathe_program *p, const float *x, float *out) {
  lathe_error err = {0};
  int32_t kk[2] = {0, 0};
  lathe_tensor tx = {LATHE_F32, 2, {2, 3}, (void *)x}, tk = {LATHE_I32, 1, {2}, kk}, y = {0};
  int rc = lathe_set_input(p, "x", &tx, &err) || lathe_set_input(p, "k", &tk, &err) || lathe_run(p, &err) ||
           lathe_get_output(p, "y", &y, &err);
  if (rc) fprintf(stderr, "%s\n", err.message);
  else memcpy(out, y.data, 6 * sizeof(float));
  lathe_tensor_free(&y);
  lathe_error_clear(&err);
  return rc;
}

static const float RAW[6] = {3, 4, 7, -1, 2, 0};

static void test_applied(const char *dir) {
  char path[512], again[512];
  snprintf(path, sizeof path, "%s/std.safetensors", dir);
  snprintf(again, sizeof again, "%s/again.safetensors", dir);
  rt_st_entry ex[3] = {kind_e("__preprocess.x.kind", KIND_STANDARD), vec_e("__preprocess.x.shift", SHIFT, 3),
                       vec_e("__preprocess.x.scale", SCALE, 3)};
  CHECK(write_file(path, ex, 3) == 0);
  lathe_program *p = compile(2);
  lathe_error err = {0};
  CHECK(p && lathe_weights_load(p, path, &err) == 0);
  lathe_preprocess pp;
  CHECK(lathe_input_preprocess(p, "x", &pp) == 1);
  CHECK(pp.kind == LATHE_NORM_STANDARD && pp.width == 3 && pp.shift && pp.scale);
  CHECK(pp.shift && pp.shift[2] == 3 && pp.scale[1] == 2);
  CHECK_STR(lathe_norm_kind_name(pp.kind), "standard");
  CHECK(lathe_input_preprocess(p, "k", &pp) == 0 && pp.shift == NULL);
  CHECK(lathe_input_preprocess(p, "nope", &pp) == 0);
  CHECK(lathe_input_preprocess(NULL, "x", &pp) == 0 && lathe_input_preprocess(p, NULL, &pp) == 0);
  CHECK(lathe_input_preprocess(p, "x", NULL) == 0);
  CHECK(lathe_norm_kind_name((lathe_norm_kind)7) == NULL);
  float y[6], want[6];
  for (int i = 0; i < 6; i++) want[i] = (RAW[i] - SHIFT[i % 3]) * SCALE[i % 3];
  CHECK(run2(p, RAW, y) == 0);
  CHECK(memcmp(y, want, sizeof y) == 0);
  /* Saved again, it still carries the statistics. */
  CHECK(lathe_weights_save(p, again, &err) == 0);
  lathe_program *q = compile(2);
  CHECK(q && lathe_weights_load(q, again, &err) == 0);
  CHECK(lathe_input_preprocess(q, "x", &pp) == 1 && pp.kind == LATHE_NORM_STANDARD && pp.scale[2] == 0.25f);
  CHECK(run2(q, RAW, y) == 0 && memcmp(y, want, sizeof y) == 0);
  /* Weights without preprocessing replace it: raw features pass through. */
  snprintf(path, sizeof path, "%s/plain.safetensors", dir);
  CHECK(write_file(path, NULL, 0) == 0);
  CHECK(lathe_weights_load(q, path, &err) == 0);
  CHECK(lathe_input_preprocess(q, "x", &pp) == 0);
  CHECK(run2(q, RAW, y) == 0 && memcmp(y, RAW, sizeof y) == 0);
  /* Kind none is recorded (trained on raw features) and applies nothing. */
  snprintf(path, sizeof path, "%s/none.safetensors", dir);
  rt_st_entry none = kind_e("__preprocess.x.kind", KIND_NONE);
  CHECK(write_file(path, &none, 1) == 0);
  CHECK(lathe_weights_load(q, path, &err) == 0);
  CHECK(lathe_input_preprocess(q, "x", &pp) == 1 && pp.kind == LATHE_NORM_NONE && pp.width == 0 && !pp.shift);
  CHECK(run2(q, RAW, y) == 0 && memcmp(y, RAW, sizeof y) == 0);
  lathe_error_clear(&err);
  lathe_program_free(p);
  lathe_program_free(q);
}

/* Each malformed file is refused with its message; the program keeps the
 * weights and preprocessing it had. */
static void test_refused(const char *dir) {
  static const float NAN3[3] = {0, NAN, 0}, FOUR[4] = {1, 2, 3, 4};
  struct {
    rt_st_entry e[3];
    int n;
    const char *want;
  } cases[] = {
    {{kind_e("__preprocess.z.kind", KIND_STANDARD)}, 1,
     "tensor '__preprocess.z.kind' holds preprocessing for input 'z', but model 'ident' has no such input"},
    {{kind_e("__preprocess.k.kind", KIND_NONE)}, 1,
     "tensor '__preprocess.k.kind' holds preprocessing for 'k', but only f32 feature inputs are normalised ('k' is i32)"},
    {{kind_e("__preprocess.x.kind", KIND_STANDARD), vec_e("__preprocess.x.shift", FOUR, 4),
      vec_e("__preprocess.x.scale", SCALE, 3)}, 3,
     "tensor '__preprocess.x.shift' must be f32[3] (input 'x' takes 3 values per example), got f32 with 4 values"},
    {{kind_e("__preprocess.x.kind", KIND_STANDARD), vec_e("__preprocess.x.shift", SHIFT, 3)}, 2,
     "standard normalisation of input 'x' needs tensor '__preprocess.x.scale'"},
    {{vec_e("__preprocess.x.shift", SHIFT, 3), vec_e("__preprocess.x.scale", SCALE, 3)}, 2,
     "tensor '__preprocess.x.shift' has no '__preprocess.x.kind' beside it"},
    {{kind_e("__preprocess.x.kind", KIND_BAD)}, 1,
     "tensor '__preprocess.x.kind' must be one i64 (0 none, 1 standard, 2 minmax)"},
    {{kind_e("__preprocess.x.kind", KIND_STANDARD), vec_e("__preprocess.x.shift", SHIFT, 3),
      vec_e("__preprocess.x.scale", NAN3, 3)}, 3,
     "tensor '__preprocess.x.scale' holds a non-finite value at [1]"},
    {{kind_e("__preprocess.x.kind", KIND_NONE), vec_e("__preprocess.x.shift", SHIFT, 3)}, 2,
     "input 'x' is not normalised (kind none), but '__preprocess.x.shift' is present"},
    {{kind_e("__preprocess.x.mean", KIND_NONE)}, 1,
     "unknown preprocessing tensor '__preprocess.x.mean' (expected __preprocess.INPUT.kind, .shift or .scale)"},
  };
  char good[512], path[512];
  snprintf(good, sizeof good, "%s/good.safetensors", dir);
  rt_st_entry ex[3] = {kind_e("__preprocess.x.kind", KIND_STANDARD), vec_e("__preprocess.x.shift", SHIFT, 3),
                       vec_e("__preprocess.x.scale", SCALE, 3)};
  CHECK(write_file(good, ex, 3) == 0);
  lathe_program *p = compile(2);
  lathe_error err = {0};
  CHECK(p && lathe_weights_load(p, good, &err) == 0);
  for (size_t c = 0; p && c < sizeof cases / sizeof cases[0]; c++) {
    snprintf(path, sizeof path, "%s/bad%zu.safetensors", dir, c);
    CHECK(write_file(path, cases[c].e, cases[c].n) == 0);
    CHECK(lathe_weights_load(p, path, &err) == LATHE_EUSER);
    CHECK_MSG(err.message && strstr(err.message, cases[c].want) && strstr(err.message, path), "case %zu: %s", c,
              err.message ? err.message : "(no error)");
    lathe_error_clear(&err);
    lathe_preprocess pp;
    CHECK(lathe_input_preprocess(p, "x", &pp) == 1 && pp.kind == LATHE_NORM_STANDARD && pp.shift[0] == 1);
  }
  lathe_program_free(p);
}

int main(void) {
  char dir[] = "/tmp/lathe_preprocess_XXXXXX";
  if (!mkdtemp(dir)) return 1;
  test_applied(dir);
  test_refused(dir);
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
  return TEST_REPORT();
}
