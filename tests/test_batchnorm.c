/* test_batchnorm.c -- batchnorm's training step against PyTorch (Debian's
 * python3-torch): a conv2d -> batchnorm2d -> relu -> dense -> batchnorm1d ->
 * tanh -> dense classifier, the same initial weights (Lathe's initialiser)
 * and the same 20 batches, SGD with momentum. PyTorch (tests/bn_torch.py,
 * float64, nn.BatchNorm2d / nn.BatchNorm1d in training mode) must agree with
 * Lathe's public training step on the interpreter and the LLVM backend:
 * every step's loss (it reads the batch statistics) within 1e-5 relative,
 * and after the 20 steps every weight and both layers' running mean and
 * variance (momentum 0.2 and the default 0.1, unbiased variance) within
 * 1e-4 relative per tensor. Then the trained weights run the model forward
 * at -O0 (the batchnorm kernel on the running statistics) and at -O2 (the
 * foldbn pass folds both batchnorms away): the outputs agree within 1e-5,
 * and the -O2 graph has no batchnorm node.
 * Without /usr/bin/python3 or torch the PyTorch part prints SKIPPED. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runtime/program.h"
#include "test.h"

enum { STEPS = 20, B = 8, C_IN = 2, HW = 5, CLASSES = 3 };

static const char *model_src =
  "model bn_parity\n"
  "input  x : f32[batch, 2, 5, 5]\n"
  "target y : i32[batch]\n"
  "h = conv2d(x, 4, kernel=3, padding=1, bias=false, name=\"conv\")\n"
  "h = batchnorm(h, momentum=0.2, name=\"bn1\") |> relu\n"
  "h = flatten(h)\n"
  "h = dense(h, 6, bias=false, name=\"fc\")\n"
  "h = batchnorm(h, eps=1e-3, name=\"bn2\") |> tanh\n"
  "logits = dense(h, 3, name=\"out\")\n"
  "output probs = softmax(logits)\n"
  "loss = cross_entropy(logits, y)\n"
  "train {\n  optimizer = sgd(lr=0.1, momentum=0.9)\n  seed = 3\n}\n";

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static double urand(void) {
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return (double)(rng >> 11) / 9007199254740992.0;
}

static float xs[STEPS][B * C_IN * HW * HW];
static int32_t ys[STEPS][B];

static lathe_model *model(void) {
  lathe_error err = {0};
  lathe_model *m = lathe_model_parse("bn_parity.nn", model_src, strlen(model_src), &err);
  CHECK_MSG(m != NULL, "parse: %s", err.message);
  if (m) CHECK_MSG(lathe_model_bind(m, "batch", B, &err) == 0, "bind: %s", err.message);
  return m;
}

static int write_file(const char *path, const void *p, size_t n) {
  FILE *f = fopen(path, "wb");
  int ok = f && fwrite(p, 1, n, f) == n;
  if (f) ok = fclose(f) == 0 && ok;
  CHECK_MSG(ok, "cannot write %s", path);
  return ok ? 0 : -1;
}

/* manifest.txt (one line per parameter: name and shape) and init.bin */
static int export_init(const char *dir, lathe_program *p) {
  char path[700];
  snprintf(path, sizeof path, "%s/manifest.txt", dir);
  FILE *man = fopen(path, "w");
  snprintf(path, sizeof path, "%s/init.bin", dir);
  FILE *bin = fopen(path, "wb");
  int ok = man && bin;
  for (int i = 0; ok && i < lathe_num_params(p); i++) {
    lathe_tensor v;
    lathe_param_view(p, i, &v);
    fprintf(man, "%s", lathe_param_name(p, i));
    for (int d = 0; d < v.rank; d++) fprintf(man, " %lld", (long long)v.shape[d]);
    fprintf(man, "\n");
    ok = fwrite(v.data, sizeof(float), (size_t)lathe_tensor_numel(&v), bin) == (size_t)lathe_tensor_numel(&v);
  }
  if (man) ok = fclose(man) == 0 && ok;
  if (bin) ok = fclose(bin) == 0 && ok;
  CHECK_MSG(ok, "cannot export to %s", dir);
  return ok ? 0 : -1;
}

/* 20 steps; then losses (20 floats) and every parameter to NAME.bin */
static int train(const char *dir, lathe_backend be, const char *name, const char *weights_out) {
  lathe_model *m = model();
  lathe_options o = {.backend = be};
  lathe_error err = {0};
  lathe_program *p = m ? lathe_compile_train(m, &o, &err) : NULL;
  CHECK_MSG(p != NULL, "compile_train (%s): %s", name, err.message);
  if (!p) return lathe_model_free(m), -1;
  int rc = lathe_weights_init(p, 7, &err);
  if (!rc && be == LATHE_BACKEND_INTERP) rc = export_init(dir, p);
  float loss[STEPS];
  for (int s = 0; s < STEPS && !rc; s++) {
    lathe_tensor x = {LATHE_F32, 4, {B, C_IN, HW, HW}, xs[s]}, y = {LATHE_I32, 1, {B}, ys[s]}, l;
    rc = lathe_set_input(p, "x", &x, &err) || lathe_set_input(p, "y", &y, &err) || lathe_run(p, &err) ||
         lathe_get_output(p, "loss", &l, &err);
    if (!rc) loss[s] = *(float *)l.data, lathe_tensor_free(&l);
  }
  CHECK_MSG(rc == 0, "training (%s): %s", name, err.message);
  char path[700];
  snprintf(path, sizeof path, "%s/%s.bin", dir, name);
  FILE *f = rc ? NULL : fopen(path, "wb");
  if (f) {
    fwrite(loss, sizeof loss, 1, f);
    for (int i = 0; i < lathe_num_params(p); i++) {
      lathe_tensor v;
      lathe_param_view(p, i, &v);
      fwrite(v.data, sizeof(float), (size_t)lathe_tensor_numel(&v), f);
    }
    rc = fclose(f);
  }
  if (!rc && weights_out) rc = lathe_weights_save(p, weights_out, &err);
  lathe_program_free(p);
  lathe_model_free(m);
  return rc;
}

/* The trained weights forward at opt level `level` on the first batch: probs into out. */
static int forward(const char *weights, int level, float *out, int *n_bn) {
  lathe_model *m = model();
  lathe_options o = {.backend = LATHE_BACKEND_LLVM, .opt_level_set = 1, .opt_level = level};
  lathe_error err = {0};
  lathe_program *p = m ? lathe_compile(m, &o, &err) : NULL;
  CHECK_MSG(p != NULL, "compile -O%d: %s", level, err.message);
  int rc = p ? lathe_weights_load(p, weights, &err) : -1;
  lathe_tensor x = {LATHE_F32, 4, {B, C_IN, HW, HW}, xs[0]}, y;
  if (!rc) rc = lathe_set_input(p, "x", &x, &err) || lathe_run(p, &err) || lathe_get_output(p, "probs", &y, &err);
  CHECK_MSG(rc == 0, "forward -O%d: %s", level, err.message);
  if (!rc) memcpy(out, y.data, sizeof(float) * B * CLASSES), lathe_tensor_free(&y);
  *n_bn = 0;
  for (int i = 0; p && i < p->g.nnodes; i++) *n_bn += p->g.nodes[i].op == IR_BATCHNORM;
  lathe_program_free(p);
  lathe_model_free(m);
  return rc;
}

static void fold_equal(const char *weights) {
  float a[B * CLASSES], b[B * CLASSES];
  int bn0, bn2;
  if (forward(weights, 0, a, &bn0) || forward(weights, 2, b, &bn2)) return;
  double worst = 0;
  for (int i = 0; i < B * CLASSES; i++) worst = fmax(worst, fabs((double)a[i] - b[i]));
  printf("folded vs unfolded forward: max |diff| %.3g; batchnorm nodes -O0 %d, -O2 %d\n", worst, bn0, bn2);
  CHECK_MSG(worst <= 1e-5, "folded forward differs by %g", worst);
  CHECK(bn0 == 2 && bn2 == 0);
}

int main(void) {
  for (int s = 0; s < STEPS; s++) {
    for (int i = 0; i < B * C_IN * HW * HW; i++) xs[s][i] = (float)(urand() * 4 - 1.5);
    for (int i = 0; i < B; i++) ys[s][i] = (int32_t)(urand() * CLASSES);
  }
  char dir[] = "/tmp/lathe_bn_XXXXXX", path[700], weights[700];
  if (!mkdtemp(dir)) {
    printf("SKIPPED: cannot make a temporary directory\n");
    return 0;
  }
  snprintf(path, sizeof path, "%s/batches.bin", dir);
  snprintf(weights, sizeof weights, "%s/trained.safetensors", dir);
  int rc = write_file(path, xs, sizeof xs);
  snprintf(path, sizeof path, "%s/labels.bin", dir);
  rc = rc || write_file(path, ys, sizeof ys);
  rc = rc || train(dir, LATHE_BACKEND_INTERP, "interp", NULL) || train(dir, LATHE_BACKEND_LLVM, "llvm", weights);
  if (!rc) fold_equal(weights);
  if (!rc && access("/usr/bin/python3", X_OK) != 0) {
    printf("SKIPPED: /usr/bin/python3 not found (PyTorch parity needs Debian's python3-torch)\n");
  } else if (!rc) {
    char cmd[800];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 tests/bn_torch.py %s %d %d", dir, STEPS, B);
    int st = system(cmd);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 77) printf("SKIPPED: PyTorch is not importable by /usr/bin/python3\n");
    else CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "bn_torch.py: Lathe and PyTorch differ (status %d)", st);
  }
  snprintf(path, sizeof path, "rm -rf %s", dir);
  if (system(path) != 0) printf("note: could not remove %s\n", dir);
  return TEST_REPORT();
}
