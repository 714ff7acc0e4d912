/* test_examples.c -- every example model, forward pass: the LLVM backend
 * against the reference interpreter (f32 mode) on the same weights and
 * inputs, max error relative to the output's scale within 1e-5; and two LLVM runs give
 * bit-identical outputs. */
#include <stdlib.h>
#include <string.h>

#include "lathe.h"
#include "tests/test.h"

static const char *const examples[] = {"examples/mlp.nn", "examples/cnn.nn", "examples/gpt.nn", "examples/lstm.nn"};

/* Seeded inputs: floats in [-1, 1), integers (token ids) in [0, 96). */
static void fill(lathe_tensor *t, unsigned *seed) {
  int64_t n = lathe_tensor_numel(t);
  for (int64_t i = 0; i < n; i++) {
    *seed = *seed * 1103515245u + 12345u;
    unsigned r = (*seed >> 8) & 0xffff;
    if (t->dtype == LATHE_F32) ((float *)t->data)[i] = (float)r / 32768.0f - 1.0f;
    else ((int32_t *)t->data)[i] = (int32_t)(r % 96);
  }
}

/* batch = 2, seeded weights. */
static lathe_program *build(const char *path, lathe_backend b) {
  lathe_error err = {0};
  lathe_model *m = lathe_model_load(path, &err);
  CHECK_MSG(m != NULL, "%s", err.message ? err.message : "");
  if (!m) { lathe_error_clear(&err); return NULL; }
  lathe_model_bind(m, "batch", 2, &err);
  lathe_options o = {.backend = b};
  lathe_program *p = lathe_compile(m, &o, &err);
  CHECK_MSG(p != NULL, "%s: %s", path, err.message ? err.message : "");
  lathe_error_clear(&err);
  if (p) CHECK(lathe_weights_init(p, 5, &err) == 0);
  lathe_model_free(m);
  return p;
}

/* Each example's one non-target input (targets are optional for a forward run). */
static const struct {
  const char *model, *input;
  lathe_dtype dtype;
  int rank;
  int64_t shape[4];
} decl[] = {
  {"mlp", "x", LATHE_F32, 2, {2, 64}},         {"cnn", "x", LATHE_F32, 4, {2, 1, 8, 8}},
  {"gpt", "tokens", LATHE_I32, 2, {2, 64}},    {"lstm", "tokens", LATHE_I32, 2, {2, 32}},
};

static void run_example(const char *path) {
  lathe_program *pi = build(path, LATHE_BACKEND_INTERP);
  lathe_program *pl = build(path, LATHE_BACKEND_LLVM);
  if (!pi || !pl) { lathe_program_free(pi); lathe_program_free(pl); return; }
  lathe_error err = {0};
  unsigned seed = 42;
  for (size_t d = 0; d < sizeof decl / sizeof decl[0]; d++) {
    if (!strstr(path, decl[d].model)) continue;
    lathe_tensor t = {.dtype = decl[d].dtype, .rank = decl[d].rank};
    memcpy(t.shape, decl[d].shape, sizeof decl[d].shape);
    t.data = malloc((size_t)lathe_tensor_bytes(&t));
    fill(&t, &seed);
    CHECK(lathe_set_input(pi, decl[d].input, &t, &err) == 0);
    CHECK(lathe_set_input(pl, decl[d].input, &t, &err) == 0);
    free(t.data);
  }
  CHECK_MSG(lathe_run(pi, &err) == 0, "%s", err.message ? err.message : "");
  CHECK_MSG(lathe_run(pl, &err) == 0, "%s", err.message ? err.message : "");
  lathe_error_clear(&err);
  for (int o = 0; o < lathe_num_outputs(pl); o++) {
    const char *name = lathe_output_name(pl, o);
    lathe_tensor a, b, c;
    CHECK(lathe_get_output(pi, name, &a, &err) == 0 && lathe_get_output(pl, name, &b, &err) == 0);
    CHECK(lathe_run(pl, &err) == 0 && lathe_get_output(pl, name, &c, &err) == 0);
    int64_t n = lathe_tensor_numel(&a);
    /* Relative to the output's scale (max |x|): an elementwise ratio near a
     * zero logit measures summation order, not correctness. */
    double worst = 0, scale = 0, elem = 0;
    for (int64_t i = 0; i < n; i++) scale = fmax(scale, fabs(((float *)a.data)[i]));
    for (int64_t i = 0; i < n; i++) {
      double x = ((float *)a.data)[i], y = ((float *)b.data)[i];
      worst = fmax(worst, fabs(x - y) / scale);
      elem = fmax(elem, fabs(x - y) / fmax(fabs(x), 1e-3));
    }
    printf("%-18s %-8s llvm vs interp: max error / max |x| = %.2e (elementwise %.2e)\n", path, name, worst, elem);
    CHECK_MSG(worst <= 1e-5, "%s output %s: %.3g", path, name, worst);
    CHECK_MSG(memcmp(b.data, c.data, lathe_tensor_bytes(&b)) == 0, "%s: two runs differ", path);
    lathe_tensor_free(&a);
    lathe_tensor_free(&b);
    lathe_tensor_free(&c);
  }
  lathe_program_free(pi);
  lathe_program_free(pl);
}

int main(void) {
  for (size_t i = 0; i < sizeof examples / sizeof examples[0]; i++) run_example(examples[i]);
  return TEST_REPORT();
}
