/* fuzz_ckpt.c -- libFuzzer target for the checkpoint reader on the resume
 * path (tr_ckpt_apply: the step, epoch, early-stopping counter, history and
 * every weight and optimizer tensor): any bytes must give a position in range
 * with every parameter loaded, or an error that leaves the parameters as they
 * were; never a crash, hang or leak. The model is the tiny regression model
 * the seed corpus (tests/fuzz/seeds/ckpt/, written by lathe train --out) was
 * trained with; its training step is compiled once, for the interpreter.
 * Everything happens in memory: no file is written. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/runtime.h"
#include "runtime/train.h"

static const char model_src[] =
  "model tiny\n"
  "input  x : f32[batch, 2]\n"
  "target y : f32[batch, 1]\n"
  "h = dense(x, 3, name=\"fc1\") |> relu\n"
  "pred = dense(h, 1, name=\"out\")\n"
  "output p = pred\n"
  "loss = mse(pred, y)\n"
  "train {\n  optimizer = adam(lr=1e-2)\n  epochs = 3\n  batch = 8\n  split = [0.6, 0.2, 0.2]\n  seed = 0\n}\n";

static lathe_model *model;
static lathe_program *step;
static float *snapshot; /* the parameters before each input */
static size_t snap_bytes;

static void fail(const lathe_error *err) {
  fprintf(stderr, "fuzz_ckpt: cannot build the model: %s\n", err->message ? err->message : "?");
  __builtin_trap();
}

static void build(void) {
  lathe_error err = {0};
  model = lathe_model_parse("tiny.nn", model_src, sizeof model_src - 1, &err);
  if (!model || lathe_model_bind(model, "batch", 8, &err)) fail(&err);
  lathe_options po = {.backend = LATHE_BACKEND_INTERP, .default_dim = 1};
  lathe_program *p = api_program_lower(model, &po, &err);
  if (!p) fail(&err);
  ir_train t = p->g.train;
  lathe_program_free(p);
  tr_settings_defaults(&t);
  t.batch = 8;
  lathe_options so = {.backend = LATHE_BACKEND_INTERP};
  step = api_compile_train(model, &so, &t, &err);
  if (!step || lathe_weights_init(step, 0, &err)) fail(&err);
  for (int i = 0; i < step->g.nparams; i++) snap_bytes += (size_t)ir_numel(&step->g.params[i].shape) * sizeof(float);
  snapshot = malloc(snap_bytes);
  if (!snapshot) __builtin_trap();
}

/* Copy the parameters out (dir 0) or back in (dir 1). */
static void params(int dir) {
  size_t off = 0;
  for (int i = 0; i < step->g.nparams; i++) {
    lathe_tensor v;
    lathe_param_view(step, i, &v);
    size_t b = (size_t)lathe_tensor_bytes(&v);
    if (dir) memcpy(v.data, (char *)snapshot + off, b);
    else memcpy((char *)snapshot + off, v.data, b);
    off += b;
  }
}

static int params_same(void) {
  size_t off = 0;
  for (int i = 0; i < step->g.nparams; i++) {
    lathe_tensor v;
    lathe_param_view(step, i, &v);
    size_t b = (size_t)lathe_tensor_bytes(&v);
    if (memcmp(v.data, (char *)snapshot + off, b)) return 0;
    off += b;
  }
  return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!step) build();
  params(0);
  rt_st_file f;
  char msg[1024];
  if (rt_st_read_mem("fuzz.safetensors", data, size, &f, msg, sizeof msg)) return 0;
  lathe_error err = {0};
  tr_meta meta = {0};
  if (tr_ckpt_apply(&f, "fuzz.safetensors", step, &meta, &err) == 0) {
    /* a position the training loop can continue from without overflow */
    if (meta.step < 0 || meta.epoch < 0 || meta.epoch > ((int64_t)1 << 40) || meta.bad_epochs > meta.epoch ||
        meta.nhist != meta.epoch || (meta.nhist > 0 && !meta.hist))
      __builtin_trap();
    free(meta.hist);
    params(1); /* the next input starts from the same weights */
  } else {
    if (!err.message || !params_same() || meta.hist) __builtin_trap(); /* refused: said why, changed nothing */
  }
  lathe_error_clear(&err);
  rt_st_free(&f);
  return 0;
}
