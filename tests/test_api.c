/* test_api.c -- the public C API end to end: parse, bind, compile, weights
 * init/save/load (with mismatches), inputs, run, outputs; every error comes
 * back as a value with a message. */
#include <stdlib.h>
#include <string.h>
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
    "loss = cross_entropy(logits, y)\n";

static lathe_program *compile_tiny(int64_t batch) {
  lathe_error err = {0};
  lathe_model *m = lathe_model_parse("tiny.nn", MLP, strlen(MLP), &err);
  CHECK(m != NULL);
  if (!m) return NULL;
  CHECK(lathe_model_num_dims(m) == 1);
  CHECK_STR(lathe_model_dim_name(m, 0), "batch");
  CHECK(lathe_model_bind(m, "batch", batch, &err) == 0);
  lathe_program *p = lathe_compile(m, NULL, &err);
  lathe_model_free(m);
  CHECK(p != NULL);
  return p;
}

static void test_errors_are_values(void) {
  lathe_error err = {0};
  lathe_model *m = lathe_model_parse("bad.nn", "h = relu(\n", 10, &err);
  CHECK(m == NULL);
  CHECK(err.code == LATHE_EUSER);
  CHECK(err.message && strstr(err.message, "bad.nn:") == err.message);
  lathe_error_clear(&err);
  CHECK(err.message == NULL && err.code == LATHE_OK);

  m = lathe_model_load("no/such/file.nn", &err);
  CHECK(m == NULL && err.code == LATHE_EUSER && err.message && strstr(err.message, "no/such/file.nn"));
  lathe_error_clear(&err);

  m = lathe_model_parse("tiny.nn", MLP, strlen(MLP), &err);
  CHECK(lathe_model_bind(m, "nope", 3, &err) == LATHE_EUSER);
  CHECK_STR(err.message, "model 'tiny' has no symbolic dimension 'nope'");
  lathe_error_clear(&err);
  int64_t bad_shape[2] = {4, 5};
  CHECK(lathe_model_bind_input(m, "x", 2, bad_shape, &err) == LATHE_EUSER);
  CHECK_STR(err.message, "input 'x': dimension 1 must be 3, got 5");
  lathe_error_clear(&err);
  lathe_program *p = lathe_compile(m, NULL, &err);
  CHECK(p == NULL);
  CHECK_STR(err.message, "symbolic dimension 'batch' is not bound: give an input array or --bind batch=N");
  lathe_error_clear(&err);
  lathe_model_free(m);
}

static void test_run_and_weights(void) {
  lathe_error err = {0};
  lathe_program *p = compile_tiny(2);
  if (!p) return;
  CHECK(lathe_num_params(p) == 4);
  CHECK_STR(lathe_param_name(p, 0), "fc1.weight");
  CHECK(lathe_num_outputs(p) == 1 && lathe_has_loss(p));

  float xs[6] = {1, 2, 3, -1, 0.5f, 2};
  lathe_tensor x = {.dtype = LATHE_F32, .rank = 2, .shape = {2, 3}, .data = xs};
  CHECK(lathe_set_input(p, "x", &x, &err) == 0);
  CHECK(lathe_run(p, &err) == LATHE_EUSER); /* no weights yet */
  CHECK(err.message && strstr(err.message, "no weights were loaded"));
  lathe_error_clear(&err);

  CHECK(lathe_weights_init(p, 7, &err) == 0);
  CHECK(lathe_run(p, &err) == 0);
  lathe_tensor probs;
  CHECK(lathe_get_output(p, "probs", &probs, &err) == 0);
  CHECK(probs.rank == 2 && probs.shape[0] == 2 && probs.shape[1] == 2);
  float *pv = probs.data;
  CHECK_NEAR(pv[0] + pv[1], 1.0, 1e-6);
  CHECK(lathe_get_output(p, "loss", &(lathe_tensor){0}, &err) == LATHE_EUSER); /* no targets given */
  lathe_error_clear(&err);

  /* Save, reload into a fresh program, same outputs bit for bit. */
  char path[] = "/tmp/lathe_test_api_XXXXXX";
  int fd = mkstemp(path);
  close(fd);
  CHECK(lathe_weights_save(p, path, &err) == 0);
  lathe_program *q = compile_tiny(2);
  CHECK(lathe_weights_load(q, path, &err) == 0);
  CHECK(lathe_set_input(q, "x", &x, &err) == 0);
  CHECK(lathe_run(q, &err) == 0);
  lathe_tensor probs2;
  CHECK(lathe_get_output(q, "probs", &probs2, &err) == 0);
  CHECK(memcmp(probs.data, probs2.data, 4 * sizeof(float)) == 0);
  lathe_tensor_free(&probs);
  lathe_tensor_free(&probs2);

  /* Targets make the loss available. */
  int32_t ys[2] = {0, 1};
  lathe_tensor y = {.dtype = LATHE_I32, .rank = 1, .shape = {2}, .data = ys};
  CHECK(lathe_set_input(q, "y", &y, &err) == 0);
  CHECK(lathe_run(q, &err) == 0);
  lathe_tensor loss;
  CHECK(lathe_get_output(q, "loss", &loss, &err) == 0);
  CHECK(loss.rank == 0 && ((float *)loss.data)[0] > 0);
  lathe_tensor_free(&loss);

  /* Bad inputs. */
  lathe_tensor wrong = {.dtype = LATHE_F32, .rank = 2, .shape = {3, 3}, .data = xs};
  CHECK(lathe_set_input(q, "x", &wrong, &err) == LATHE_EUSER);
  CHECK_STR(err.message, "input 'x': expected shape [2, 3], got [3, 3]");
  lathe_error_clear(&err);
  CHECK(lathe_set_input(q, "zz", &x, &err) == LATHE_EUSER);
  CHECK_STR(err.message, "model 'tiny' has no input 'zz'");
  lathe_error_clear(&err);

  /* Weights for another shape: the tensor is named, expected vs got. */
  lathe_program_free(q);
  const char *other = "model tiny\ninput x : f32[batch, 5]\nh = dense(x, 4, name=\"fc1\")\noutput h\n";
  lathe_model *m = lathe_model_parse("other.nn", other, strlen(other), &err);
  lathe_model_bind(m, "batch", 1, &err);
  q = lathe_compile(m, NULL, &err);
  CHECK(lathe_weights_load(q, path, &err) == LATHE_EUSER);
  char want[512];
  snprintf(want, sizeof want, "'%s': tensor 'fc1.weight' has shape [3, 4], but the model expects [5, 4]", path);
  CHECK_STR(err.message, want);
  lathe_error_clear(&err);
  lathe_program_free(q);
  lathe_model_free(m);
  unlink(path);
  lathe_program_free(p);
}

/* A 3 -> 2 classifier trained with `optimizer` (the train block's line). */
static lathe_model *tiny_model(const char *optimizer) {
  char src[512];
  snprintf(src, sizeof src,
           "input x : f32[4, 3]\ntarget y : i32[4]\nlogits = dense(x, 2, name=\"fc\")\n"
           "output logits\nloss = cross_entropy(logits, y)\ntrain { optimizer = %s }\n", optimizer);
  lathe_error err = {0};
  lathe_model *m = lathe_model_parse("tiny.nn", src, strlen(src), &err);
  CHECK_MSG(m != NULL, "%s", err.message ? err.message : "");
  lathe_error_clear(&err);
  return m;
}

/* Its training step on backend (0 interpreter, 1 llvm), weights
 * initialised, the batch xs[4][3] with labels 0 1 0 1 set; NULL on failure. */
static lathe_program *tiny_step(lathe_model *m, int backend, const float *xs) {
  lathe_error err = {0};
  lathe_options o = {.backend = backend ? LATHE_BACKEND_LLVM : LATHE_BACKEND_INTERP};
  lathe_program *p = lathe_compile_train(m, &o, &err);
  CHECK_MSG(p != NULL, "%s", err.message ? err.message : "");
  if (!p) {
    lathe_error_clear(&err);
    return NULL;
  }
  static const int32_t ys[4] = {0, 1, 0, 1};
  lathe_tensor x = {.dtype = LATHE_F32, .rank = 2, .shape = {4, 3}, .data = (void *)xs};
  lathe_tensor y = {.dtype = LATHE_I32, .rank = 1, .shape = {4}, .data = (void *)ys};
  CHECK(lathe_weights_init(p, 1, &err) == 0);
  CHECK(lathe_set_input(p, "x", &x, &err) == 0 && lathe_set_input(p, "y", &y, &err) == 0);
  lathe_error_clear(&err);
  return p;
}

static const float tiny_xs[12] = {1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 1, 0};

/* A training step through the public API: loss falls; a diverging step
 * fails and leaves the weights untouched. */
static void test_train_step(void) {
  lathe_error err = {0};
  lathe_model *m = tiny_model("sgd(lr=0.5)");
  if (!m) return;
  for (int backend = 0; backend < 2; backend++) {
    lathe_program *p = tiny_step(m, backend, tiny_xs);
    if (!p) continue;
    float first = 0, last = 0;
    for (int s = 0; s < 20; s++) {
      CHECK(lathe_run(p, &err) == 0);
      lathe_tensor l;
      CHECK(lathe_get_output(p, "loss", &l, &err) == 0);
      if (s == 0) first = ((float *)l.data)[0];
      last = ((float *)l.data)[0];
      lathe_tensor_free(&l);
    }
    CHECK_MSG(last < first * 0.5f, "loss %g -> %g", first, last);
    /* A huge input makes the step diverge: an error, and the weights stay. */
    lathe_tensor w;
    CHECK(lathe_param_view(p, 0, &w) == 0);
    float before = ((float *)w.data)[0];
    float big[12];
    for (int i = 0; i < 12; i++) big[i] = 3e38f;
    lathe_tensor xb = {.dtype = LATHE_F32, .rank = 2, .shape = {4, 3}, .data = big};
    CHECK(lathe_set_input(p, "x", &xb, &err) == 0);
    CHECK(lathe_run(p, &err) == LATHE_EUSER);
    CHECK_MSG(err.message && strstr(err.message, "training stopped at step 21"), "%s", err.message);
    lathe_error_clear(&err);
    CHECK(((float *)w.data)[0] == before);
    lathe_program_free(p);
  }
  lathe_model_free(m);
}

/* Finite loss, non-finite update: a huge learning rate overflows the new
 * weights. On the native backend the update's own kernel notices (no
 * second pass); the step must stop naming the parameter and keep the
 * weights as they were on both backends. */
static void test_nonfinite_update(void) {
  lathe_error err = {0};
  lathe_model *m = tiny_model("sgd(lr=1e38)");
  if (!m) return;
  static const float big[12] = {100, -50, 80, 90, 100, -70, 60, 0, 100, 100, 100, 0};
  for (int backend = 0; backend < 2; backend++) {
    lathe_program *p = tiny_step(m, backend, big);
    if (!p) continue;
    lathe_tensor w;
    CHECK(lathe_param_view(p, 0, &w) == 0);
    float before[6];
    memcpy(before, w.data, sizeof before);
    CHECK(lathe_run(p, &err) == LATHE_EUSER);
    CHECK_MSG(err.message && strstr(err.message, "training stopped at step 1: parameter 'fc.") &&
                  strstr(err.message, "became non-finite"), "%s", err.message ? err.message : "(none)");
    lathe_error_clear(&err);
    CHECK(lathe_param_view(p, 0, &w) == 0 && memcmp(w.data, before, sizeof before) == 0);
    lathe_program_free(p);
  }
  lathe_model_free(m);
}

/* A committed step's update takes the parameter's place: the weights, a
 * fresh view and the "new.X" output all show the same new values. */
static void test_commit_views(void) {
  lathe_error err = {0};
  lathe_model *m = tiny_model("adam(lr=0.1)");
  lathe_program *p = m ? tiny_step(m, 1, tiny_xs) : NULL;
  if (p) {
    for (int s = 0; s < 3; s++) {
      lathe_tensor w0, w1, nw;
      CHECK(lathe_param_view(p, 0, &w0) == 0);
      float old = ((float *)w0.data)[0];
      CHECK(lathe_run(p, &err) == 0);
      CHECK(lathe_param_view(p, 0, &w1) == 0);
      CHECK(lathe_get_output(p, "new.fc.weight", &nw, &err) == 0);
      CHECK_MSG(((float *)w1.data)[0] != old, "step %d did not move the weight", s);
      CHECK(memcmp(nw.data, w1.data, lathe_tensor_bytes(&w1)) == 0);
      lathe_tensor_free(&nw);
    }
    lathe_program_free(p);
  }
  lathe_error_clear(&err);
  lathe_model_free(m);
}

/* A large input (over runtime/api_program.c's COPY_SPLIT: copied over the
 * pool, in parts) arrives whole: y = 2 x, every element, two runs with
 * different values. 257 x 1023 floats: the parts' ends fall mid-row. */
static void test_large_input(void) {
  static const char *src = "model big\ninput x : f32[rows, 1023]\noutput y = x * 2.0\n";
  enum { ROWS = 257, COLS = 1023, N = ROWS * COLS };
  lathe_error err = {0};
  lathe_model *m = lathe_model_parse("big.nn", src, strlen(src), &err);
  CHECK(m && lathe_model_bind(m, "rows", ROWS, &err) == 0);
  lathe_program *p = m ? lathe_compile(m, NULL, &err) : NULL;
  float *xs = malloc(N * sizeof *xs);
  CHECK_MSG(p && xs, "%s", err.message ? err.message : "out of memory");
  for (int run = 0; p && xs && run < 2; run++) {
    for (int i = 0; i < N; i++) xs[i] = (float)((i * 7 + run * 13) % 1001) - 500.0f;
    lathe_tensor x = {.dtype = LATHE_F32, .rank = 2, .shape = {ROWS, COLS}, .data = xs}, y = {0};
    CHECK(lathe_set_input(p, "x", &x, &err) == 0 && lathe_run(p, &err) == 0 &&
          lathe_get_output(p, "y", &y, &err) == 0);
    int bad = -1;
    for (int i = 0; y.data && i < N && bad < 0; i++)
      if (((float *)y.data)[i] != 2.0f * xs[i]) bad = i;
    CHECK_MSG(y.data && bad < 0, "run %d: y[%d] is not 2 x", run, bad);
    lathe_tensor_free(&y);
  }
  free(xs);
  lathe_program_free(p);
  lathe_model_free(m);
  lathe_error_clear(&err);
}

int main(void) {
  test_large_input();
  test_train_step();
  test_nonfinite_update();
  test_commit_views();
  test_errors_are_values();
  test_run_and_weights();
  return TEST_REPORT();
}
