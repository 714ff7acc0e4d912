/* quant_util.h -- what the test_quant*.c and test_qconv.c share: compile a
 * one-dense-layer model (qu_dense; optionally quantized, optionally with weights
 * loaded), run it on x [M, K], and view a parameter by name. Include after
 * lathe.h and test.h. */
#ifndef LATHE_TESTS_QUANT_UTIL_H
#define LATHE_TESTS_QUANT_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* one dense layer K -> N (named fc) at batch M */
static inline lathe_model *qu_dense(int64_t K, int64_t N, int64_t M) {
  char src[256];
  snprintf(src, sizeof src, "model q\ninput x : f32[batch, %lld]\noutput y = dense(x, %lld, name=\"fc\")\n",
           (long long)K, (long long)N);
  lathe_error err = {0};
  lathe_model *m = lathe_model_parse("q.nn", src, strlen(src), &err);
  CHECK_MSG(m != NULL, "%s", err.message);
  if (m) CHECK(lathe_model_bind(m, "batch", M, &err) == 0);
  return m;
}

static inline lathe_program *compile(lathe_model *m, lathe_backend b, int quant, const char *weights, lathe_error *err) {
  lathe_options o = {.backend = b, .quant = quant};
  lathe_program *p = lathe_compile(m, &o, err);
  if (p && weights && lathe_weights_load(p, weights, err)) {
    lathe_program_free(p);
    return NULL;
  }
  return p;
}

/* y of p on x [M, K]; malloc'd (the caller frees it) */
static inline float *run(lathe_program *p, const float *x, int64_t M, int64_t K, int64_t N) {
  lathe_error err = {0};
  lathe_tensor t = {.dtype = LATHE_F32, .rank = 2, .shape = {M, K}, .data = (void *)x}, y = {0};
  if (lathe_set_input(p, "x", &t, &err) || lathe_run(p, &err) || lathe_get_output(p, "y", &y, &err)) {
    CHECK_MSG(0, "run: %s", err.message);
    return NULL;
  }
  CHECK(lathe_tensor_numel(&y) == M * N);
  return y.data;
}

static inline const float *param(const lathe_program *p, const char *name) {
  for (int i = 0; i < lathe_num_params(p); i++) {
    lathe_tensor v;
    if (!strcmp(lathe_param_name(p, i), name) && lathe_param_view(p, i, &v) == 0) return v.data;
  }
  return NULL;
}

/* the scratch files a test shares: DIR (a mkdtemp template, made here), the
 * weights WF, the quantized weights QF and the calibration data CSV, each of
 * QU_PATH bytes. Returns 0 or -1 with the reason printed. */
#define QU_PATH 128
static inline int qu_tmp_open(char *dir, char *wf, char *qf, char *csv) {
  if (!mkdtemp(dir)) {
    perror("mkdtemp");
    return -1;
  }
  snprintf(wf, QU_PATH, "%s/w.safetensors", dir);
  snprintf(qf, QU_PATH, "%s/q.safetensors", dir);
  snprintf(csv, QU_PATH, "%s/d.csv", dir);
  return 0;
}

static inline void qu_tmp_close(char *dir, char *wf, char *qf, char *csv) {
  unlink(wf), unlink(qf), unlink(csv);
  rmdir(dir);
}

#endif
