/* host_jit.c -- Lathe from your own program: load a model file, train it a
 * few steps on arrays you hold in memory, then run inference and print the
 * outputs. Only lathe.h is used (link with -llathe: see README.md, "Using
 * Lathe from your program").
 *
 *   host_jit MODEL X.npy Y.npy STEPS OUTDIR
 *
 * X feeds the model's (first) input and Y its target; the batch size comes
 * from X's shape. The weights start from seed 1 (as `lathe init --seed 1`),
 * take STEPS steps of the model's train block, and are written to
 * OUTDIR/trained.safetensors; each output of the inference run is printed
 * and written to OUTDIR/NAME.npy, the same file `lathe run MODEL --weights
 * OUTDIR/trained.safetensors --in NAME=X.npy --out NAME=...` writes. */
#include <stdio.h>
#include <stdlib.h>

#include "lathe.h"

/* Report a failed call and stop; err holds the library's message. */
static void check(int rc, lathe_error *err, const char *what) {
  if (rc == 0) return;
  fprintf(stderr, "host_jit: %s: %s\n", what, err->message ? err->message : "failed");
  exit(1);
}

/* The names of the model's first input and first target. */
static void find_inputs(const lathe_model *m, const char **x, const char **y) {
  *x = *y = NULL;
  for (int i = 0; i < lathe_model_num_inputs(m); i++) {
    lathe_tensor_info info;
    lathe_model_input_info(m, i, &info);
    if (info.role == LATHE_ROLE_TARGET && !*y) *y = info.name;
    if (info.role == LATHE_ROLE_INPUT && !*x) *x = info.name;
  }
}

static void print_output(const lathe_program *p, const char *name, const char *dir, lathe_error *err) {
  lathe_tensor t;
  check(lathe_get_output(p, name, &t, err), err, name);
  printf("%s: %s[", name, lathe_dtype_name(t.dtype));
  for (int j = 0; j < t.rank; j++) printf("%s%lld", j ? ", " : "", (long long)t.shape[j]);
  printf("]");
  int64_t n = lathe_tensor_numel(&t);
  for (int64_t k = 0; k < n && k < 8; k++) {
    if (t.dtype == LATHE_F32) printf(" %.9g", ((const float *)t.data)[k]);
    else if (t.dtype == LATHE_I64) printf(" %lld", (long long)((const int64_t *)t.data)[k]);
    else printf(" %d", ((const int32_t *)t.data)[k]);
  }
  printf(n > 8 ? " ...\n" : "\n");
  lathe_tensor_free(&t);
  char path[4096];
  snprintf(path, sizeof path, "%s/%s.npy", dir, name);
  check(lathe_output_save(p, name, path, err), err, path);
}

int main(int argc, char **argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: host_jit MODEL X.npy Y.npy STEPS OUTDIR\n");
    return 2;
  }
  const char *model = argv[1], *dir = argv[5];
  int steps = atoi(argv[4]);
  lathe_error err = {0};
  lathe_tensor x, y;
  check(lathe_npy_load(argv[2], &x, &err), &err, argv[2]);
  check(lathe_npy_load(argv[3], &y, &err), &err, argv[3]);

  lathe_model *m = lathe_model_load(model, &err);
  check(m == NULL, &err, model);
  const char *xname, *yname;
  find_inputs(m, &xname, &yname);
  if (!xname || !yname) {
    fprintf(stderr, "host_jit: %s needs an input and a target\n", model);
    return 1;
  }
  /* The arrays' shapes fix the symbolic dimensions (the batch). */
  check(lathe_model_bind_input(m, xname, x.rank, x.shape, &err), &err, xname);
  check(lathe_model_bind_input(m, yname, y.rank, y.shape, &err), &err, yname);
  lathe_options opt = {.backend = LATHE_BACKEND_LLVM};

  /* Training: one lathe_run is one step (forward, backward, update). The
   * arrays are bound, not copied: every step reads them where they are. */
  lathe_program *train = lathe_compile_train(m, &opt, &err);
  check(train == NULL, &err, "compiling the training step");
  check(lathe_weights_init(train, 1, &err), &err, "initialising the weights");
  check(lathe_bind_input(train, xname, &x, &err), &err, xname);
  check(lathe_bind_input(train, yname, &y, &err), &err, yname);
  for (int s = 1; s <= steps; s++) {
    lathe_tensor loss;
    check(lathe_run(train, &err), &err, "training step");
    check(lathe_get_output(train, "loss", &loss, &err), &err, "loss");
    printf("step %d: loss %.9g\n", s, *(const float *)loss.data);
    lathe_tensor_free(&loss);
  }
  char weights[4096];
  snprintf(weights, sizeof weights, "%s/trained.safetensors", dir);
  check(lathe_weights_save(train, weights, &err), &err, weights);
  lathe_program_free(train);

  /* Inference on the trained weights. */
  lathe_program *p = lathe_compile(m, &opt, &err);
  check(p == NULL, &err, "compiling inference");
  check(lathe_weights_load(p, weights, &err), &err, weights);
  check(lathe_bind_input(p, xname, &x, &err), &err, xname);
  check(lathe_run(p, &err), &err, "inference");
  for (int o = 0; o < lathe_num_outputs(p); o++) print_output(p, lathe_output_name(p, o), dir, &err);

  lathe_program_free(p);
  lathe_model_free(m);
  lathe_tensor_free(&x);
  lathe_tensor_free(&y);
  return 0;
}
