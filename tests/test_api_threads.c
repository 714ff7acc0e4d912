/* test_api_threads.c -- lathe.h's thread-safety promise: different threads
 * load, compile, train and run DIFFERENT programs at the same time, and each
 * gets exactly what the same calls give on one thread. Eight threads start
 * together (a barrier) on the llvm backend; pairs share a batch size, so
 * the program cache sees concurrent compiles of equal graphs while others
 * compile distinct ones; all run kernels at once on the one worker pool. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lathe.h"
#include "tests/test.h"

static const char *MLP =
    "model tiny\n"
    "input x : f32[batch, 3]\n"
    "target y : i32[batch]\n"
    "h = dense(x, 32, name=\"fc1\") |> relu\n"
    "logits = dense(h, 2, name=\"out\")\n"
    "output probs = softmax(logits)\n"
    "loss = cross_entropy(logits, y)\n"
    "train {\n  optimizer = adam(lr=1e-2)\n}\n";

enum { NTHREADS = 8, STEPS = 5, MAXB = 64 };

typedef struct {
  int id;
  int64_t batch;
  float loss, probs[MAXB * 2];
  char error[256];
} job;

static pthread_barrier_t start;
static char tmpdir[] = "/tmp/lathe_threads_XXXXXX";

/* Train STEPS steps from seeded weights, then run inference on the trained
 * weights (through a file, as a host program would hand them over). */
static void work(job *j) {
  lathe_error err = {0};
  float xs[MAXB * 3];
  int32_t ys[MAXB];
  for (int k = 0; k < MAXB * 3; k++) xs[k] = (float)((k * 7 + j->id) % 11) / 5 - 1;
  for (int k = 0; k < MAXB; k++) ys[k] = (k + j->id) % 2;
  lathe_tensor x = {.dtype = LATHE_F32, .rank = 2, .shape = {j->batch, 3}, .data = xs};
  lathe_tensor y = {.dtype = LATHE_I32, .rank = 1, .shape = {j->batch}, .data = ys};
  lathe_options o = {.backend = LATHE_BACKEND_LLVM};
  char path[128];
  snprintf(path, sizeof path, "%s/%d.safetensors", tmpdir, j->id);
  lathe_model *m = lathe_model_parse("tiny.nn", MLP, strlen(MLP), &err);
  lathe_program *t = NULL, *p = NULL;
  lathe_tensor loss = {0}, probs = {0};
  int rc = !m || lathe_model_bind(m, "batch", j->batch, &err) || !(t = lathe_compile_train(m, &o, &err)) ||
           lathe_weights_init(t, (uint64_t)j->id, &err) || lathe_bind_input(t, "x", &x, &err) ||
           lathe_bind_input(t, "y", &y, &err);
  for (int s = 0; !rc && s < STEPS; s++) rc = lathe_run(t, &err);
  rc = rc || lathe_get_output(t, "loss", &loss, &err) || lathe_weights_save(t, path, &err) ||
       !(p = lathe_compile(m, &o, &err)) || lathe_weights_load(p, path, &err) || lathe_set_input(p, "x", &x, &err) ||
       lathe_run(p, &err) || lathe_get_output(p, "probs", &probs, &err);
  if (rc) snprintf(j->error, sizeof j->error, "%s", err.message ? err.message : "?");
  else {
    j->loss = *(float *)loss.data;
    memcpy(j->probs, probs.data, (size_t)j->batch * 2 * sizeof(float));
  }
  remove(path);
  lathe_tensor_free(&loss);
  lathe_tensor_free(&probs);
  lathe_program_free(t);
  lathe_program_free(p);
  lathe_model_free(m);
  lathe_error_clear(&err);
}

static void *thread_main(void *arg) {
  pthread_barrier_wait(&start);
  work(arg);
  return NULL;
}

static void init_job(job *j, int id) {
  memset(j, 0, sizeof *j);
  j->id = id;
  j->batch = 8 << (id / 2 % 4); /* 8, 8, 16, 16, 32, 32, 64, 64 */
}

int main(void) {
  job alone[NTHREADS], together[NTHREADS];
  if (!mkdtemp(tmpdir)) {
    perror("mkdtemp");
    return 1;
  }
  for (int i = 0; i < NTHREADS; i++) {
    init_job(&alone[i], i);
    work(&alone[i]);
    CHECK_MSG(!alone[i].error[0], "job %d alone: %s", i, alone[i].error);
  }
  pthread_t th[NTHREADS];
  pthread_barrier_init(&start, NULL, NTHREADS);
  for (int i = 0; i < NTHREADS; i++) {
    init_job(&together[i], i);
    CHECK(pthread_create(&th[i], NULL, thread_main, &together[i]) == 0);
  }
  for (int i = 0; i < NTHREADS; i++) pthread_join(th[i], NULL);
  pthread_barrier_destroy(&start);
  for (int i = 0; i < NTHREADS; i++) {
    CHECK_MSG(!together[i].error[0], "job %d in a thread: %s", i, together[i].error);
    CHECK_MSG(together[i].loss == alone[i].loss, "job %d: loss %.9g in a thread, %.9g alone", i,
              together[i].loss, alone[i].loss);
    CHECK_MSG(memcmp(together[i].probs, alone[i].probs, sizeof alone[i].probs) == 0,
              "job %d: outputs differ in a thread", i);
  }
  rmdir(tmpdir);
  return TEST_REPORT();
}
