/* test_cuda_run.c -- the CUDA backend's run path without a GPU: programs
 * compiled with --backend cuda (LATHE_BACKEND_CUDA) through the public API,
 * their kernels run by the CPU executor (tests/cuexec/, installed with
 * cu_set_driver_factory: the test instrument in the driver's place), every
 * output, the loss and the weights after training steps compared with the
 * reference interpreter. Also the errors: a label out of range found by a
 * kernel, and without the factory the real loader's one line when this
 * machine has no driver. The complete model-by-model suite is
 * test_cuda_exec.c; this covers what codegen/cuda/cu_run.c and
 * cu_loader.c do. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codegen/cuda/cu.h"
#include "rt/lathe_rt.h"
#include "cx.h"
#include "lathe.h"
#include "test.h"

/* Fill every input: floats in [-1, 1), integers alternating 0 and 1 (a
 * class, a token). */
static int fill_inputs(lathe_program *p, unsigned seed) {
  lathe_error err = {0};
  for (int i = 0; i < lathe_num_inputs(p); i++) {
    lathe_tensor_info info;
    if (lathe_input_info(p, i, &info)) return -1;
    lathe_tensor t = {.dtype = info.dtype == LATHE_F32 ? LATHE_F32 : LATHE_I32, .rank = info.rank};
    int64_t n = 1;
    for (int d = 0; d < info.rank; d++) t.shape[d] = info.shape[d], n *= info.shape[d];
    t.data = malloc((size_t)(n > 0 ? n : 1) * 4);
    for (int64_t e = 0; e < n; e++) {
      seed = seed * 1103515245u + 12345u;
      if (t.dtype == LATHE_F32) ((float *)t.data)[e] = (float)((seed >> 8) % 2000) / 1000.f - 1.f;
      else ((int32_t *)t.data)[e] = (int32_t)(e % 2);
    }
    int rc = lathe_set_input(p, info.name, &t, &err);
    free(t.data);
    if (rc) {
      fprintf(stderr, "set_input %s: %s\n", info.name, err.message);
      lathe_error_clear(&err);
      return -1;
    }
  }
  return 0;
}

/* --precision of the cuda programs (the interpreter's reference is f32) and
 * the bound of forward()'s comparisons: 1e-4 in f32; in bf16 5e-2 of
 * (1 + |reference|): bf16 keeps 8 significant bits (a rounding is within
 * 2^-9 = 0.2% relative) and the examples' outputs pass through a handful
 * of rounded activations and products. */
static int prec = LATHE_PRECISION_F32;
static double fwd_tol = 1e-4;

static lathe_program *compile(const char *path, lathe_backend b, int train, int64_t batch) {
  lathe_error err = {0};
  lathe_model *m = lathe_model_load(path, &err);
  if (m && batch) lathe_model_bind(m, "batch", batch, &err);
  lathe_options o = {.backend = b, .precision = b == LATHE_BACKEND_CUDA ? prec : LATHE_PRECISION_F32};
  lathe_program *p = m ? (train ? lathe_compile_train(m, &o, &err) : lathe_compile(m, &o, &err)) : NULL;
  if (p && lathe_weights_init(p, 7, &err)) lathe_program_free(p), p = NULL;
  if (!p) fprintf(stderr, "%s (%s): %s\n", path, b == LATHE_BACKEND_CUDA ? "cuda" : "interp", err.message);
  lathe_error_clear(&err);
  lathe_model_free(m);
  return p;
}

/* Largest |a - b| / (1 + |b|) over the output's values. */
static double out_diff(const lathe_program *a, const lathe_program *b, const char *name) {
  lathe_error err = {0};
  lathe_tensor x = {0}, y = {0};
  double worst = 1e30;
  if (!lathe_get_output(a, name, &x, &err) && !lathe_get_output(b, name, &y, &err) && x.dtype == LATHE_F32) {
    int64_t n = 1;
    for (int d = 0; d < x.rank; d++) n *= x.shape[d];
    worst = 0;
    for (int64_t e = 0; e < n; e++) {
      double u = ((float *)x.data)[e], v = ((float *)y.data)[e], r = fabs(u - v) / (1 + fabs(v));
      if (!(r <= worst)) worst = r;
    }
  }
  lathe_error_clear(&err);
  lathe_tensor_free(&x), lathe_tensor_free(&y);
  return worst;
}

/* The forward pass (every output and the loss) of one model. */
static void forward(const char *path, int64_t batch) {
  lathe_program *c = compile(path, LATHE_BACKEND_CUDA, 0, batch), *r = compile(path, LATHE_BACKEND_INTERP, 0, batch);
  CHECK_MSG(c && r, "%s: compiled", path);
  if (c && r && !fill_inputs(c, 1) && !fill_inputs(r, 1)) {
    lathe_error err = {0};
    CHECK_MSG(!lathe_run(c, &err), "%s: cuda run: %s", path, err.message ? err.message : "");
    lathe_error_clear(&err);
    CHECK(!lathe_run(r, &err));
    for (int o = 0; o < lathe_num_outputs(c); o++) {
      double d = out_diff(c, r, lathe_output_name(c, o));
      CHECK_MSG(d < fwd_tol, "%s: output %s differs by %g", path, lathe_output_name(c, o), d);
      if (prec) printf("bf16 %s: output %s within %.3g of the f32 interpreter\n", path, lathe_output_name(c, o), d);
    }
    if (lathe_has_loss(c)) {
      double d = out_diff(c, r, "loss");
      CHECK_MSG(d < fwd_tol, "%s: the loss differs by %g", path, d);
      if (prec) printf("bf16 %s: the loss within %.3g of the f32 interpreter\n", path, d);
    }
  }
  lathe_program_free(c), lathe_program_free(r);
}

/* Training steps: the loss of each and every weight after them. The
 * weights stay on the device between steps (cu_exec_feedback) and the
 * steps after the first replay a captured graph; halfway both programs'
 * weights are set again on the host, which the next step must upload. */
static void train(const char *path, int64_t batch, int steps, double tol) {
  lathe_program *c = compile(path, LATHE_BACKEND_CUDA, 1, batch), *r = compile(path, LATHE_BACKEND_INTERP, 1, batch);
  CHECK_MSG(c && r, "%s: compiled for training", path);
  if (!c || !r) { lathe_program_free(c), lathe_program_free(r); return; }
  lathe_error err = {0};
  for (int s = 0; s < steps; s++) {
    if (s == steps / 2 && s > 0) {
      CHECK(!lathe_weights_init(c, 9, &err) && !lathe_weights_init(r, 9, &err));
      lathe_error_clear(&err);
    }
    if (fill_inputs(c, 10 + (unsigned)s) || fill_inputs(r, 10 + (unsigned)s)) break;
    CHECK_MSG(!lathe_run(c, &err), "%s step %d: cuda: %s", path, s, err.message ? err.message : "");
    lathe_error_clear(&err);
    CHECK(!lathe_run(r, &err));
    double d = out_diff(c, r, "loss");
    CHECK_MSG(d < (prec ? tol : 1e-4), "%s step %d: the loss differs by %g", path, s, d);
    if (prec) printf("bf16 %s step %d: the loss within %.3g of the f32 interpreter\n", path, s, d);
  }
  for (int i = 0; i < lathe_num_params(c); i++) {
    lathe_tensor a, b;
    if (lathe_param_view(c, i, &a) || lathe_param_view(r, i, &b)) continue;
    int64_t n = 1;
    for (int d = 0; d < a.rank; d++) n *= a.shape[d];
    double worst = 0;
    for (int64_t e = 0; e < n; e++) {
      double u = ((float *)a.data)[e], v = ((float *)b.data)[e], q = fabs(u - v) / (1 + fabs(v));
      if (!(q <= worst)) worst = q;
    }
    CHECK_MSG(worst < tol, "%s: weight %s after %d steps differs by %g", path, lathe_param_name(c, i), steps, worst);
  }
  lathe_program_free(c), lathe_program_free(r);
}

/* A label out of range: the loss kernel flags it, the run says which node. */
static void bad_label(void) {
  lathe_program *c = compile("examples/mlp.nn", LATHE_BACKEND_CUDA, 0, 4);
  if (!c || fill_inputs(c, 3)) { CHECK(c && 0); lathe_program_free(c); return; }
  int32_t y[4] = {0, 1, 99, 2};
  lathe_tensor t = {.dtype = LATHE_I32, .rank = 1, .shape = {4}, .data = y};
  lathe_error err = {0};
  CHECK(!lathe_set_input(c, "y", &t, &err));
  int rc = lathe_run(c, &err);
  CHECK_MSG(rc != 0 && err.message && strstr(err.message, "cross_entropy") && strstr(err.message, "label is out of range"),
            "got %d: %s", rc, err.message ? err.message : "");
  lathe_error_clear(&err);
  lathe_program_free(c);
}

/* A model larger than the device's free memory: refused in one line
 * before anything is allocated (LATHE_CUDA_FREE_MEM stands in for the
 * driver's answer; the executor's own answer is its 8 GiB limit). */
static void too_large(void) {
  setenv("LATHE_CUDA_FREE_MEM", "4096", 1);
  lathe_error err = {0};
  lathe_model *m = lathe_model_load("examples/mlp.nn", &err);
  if (m) lathe_model_bind(m, "batch", 4, &err);
  lathe_options o = {.backend = LATHE_BACKEND_CUDA};
  lathe_program *p = m ? lathe_compile(m, &o, &err) : NULL;
  int rc = p ? lathe_run(p, &err) : -1;
  CHECK_MSG(rc != 0 && err.message && strstr(err.message, "bytes of device memory") &&
                strstr(err.message, "has 4096 bytes free") && !strchr(err.message, '\n'),
            "%s", err.message ? err.message : "(no error)");
  lathe_error_clear(&err);
  lathe_program_free(p);
  lathe_model_free(m);
  unsetenv("LATHE_CUDA_FREE_MEM");
}

/* A PTX newer than the driver: named as such before the driver is asked;
 * a CUBIN, or a driver as new as NVRTC, goes on to the driver. */
static void ptx_vs_driver(void) {
  static const char ptx[] = "//\n// Generated by NVIDIA NVVM Compiler\n.version 9.0\n";
  static const char elf[] = "\x7f" "ELF\2\1\1";
  char msg[512] = "";
  CHECK(cu_image_vs_driver(ptx, sizeof ptx, 12040, 13, 0, msg, sizeof msg) == -1);
  CHECK_MSG(strstr(msg, "PTX from NVRTC 13.0, newer than this driver (CUDA 12.4)") != NULL, "%s", msg);
  CHECK(cu_image_vs_driver(ptx, sizeof ptx, 13000, 13, 0, msg, sizeof msg) == 0);
  CHECK(cu_image_vs_driver(elf, sizeof elf, 12040, 13, 0, msg, sizeof msg) == 0);
}

/* A model's text into a file of this process (path, n bytes) for compile(),
 * which loads from a path; the char-GPT's text with `from` replaced by `to`
 * when text is NULL. 0, or -1. */
static int model_file(char *path, size_t n, const char *name, const char *text, const char *from, const char *to) {
  static char buf[1 << 16];
  snprintf(path, n, "/tmp/lathe_cuda_run_%ld_%s.nn", (long)getpid(), name);
  if (!text) {
    FILE *f = fopen("examples/gpt.nn", "rb");
    size_t len = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f) fclose(f);
    buf[len] = 0;
    char *at = strstr(buf, from);
    if (!at || len + strlen(to) >= sizeof buf) return -1;
    memmove(at + strlen(to), at + strlen(from), strlen(at + strlen(from)) + 1);
    memcpy(at, to, strlen(to));
    text = buf;
  }
  FILE *f = fopen(path, "wb");
  if (!f) return -1;
  int rc = fputs(text, f) < 0 ? -1 : 0;
  return fclose(f) || rc ? -1 : 0;
}

/* mha with rotary embeddings, grouped key/value heads and a length mask;
 * a plain rnn into a gru (test_cuda_exec's inline models) */
static const char mhas_text[] =
    "model mhas\ninput  x : f32[batch, 6, 16]\ninput  n : i32[batch]\ntarget y : i32[batch]\n"
    "h = x + attention(x, 4, rope=true, kv_heads=2, mask=n, name=\"a\")\n"
    "h = h + attention(h, 2, causal=true, rope=true, name=\"b\")\n"
    "logits = dense(flatten(h), 3, name=\"out\")\noutput logits\nloss = cross_entropy(logits, y)\n"
    "train {\n  optimizer = adam(lr=1e-2)\n  epochs = 1\n  batch = 4\n}\n";
static const char rnns_text[] =
    "model rnns\ninput  x : f32[batch, 5, 3]\ntarget y : i32[batch]\nh = rnn(x, 8, name=\"r\")\n"
    "h = gru(h, 6, name=\"g\")\nlogits = dense(flatten(h), 4, name=\"out\")\noutput logits\n"
    "loss = cross_entropy(logits, y)\ntrain {\n  optimizer = adam(lr=1e-2)\n  epochs = 1\n  batch = 4\n}\n";

/* mha, mha_grad and the recurrences' gradients take bf16 directly (their
 * products bf16 x bf16, no f32 copies: test_cuda_exec checks the text):
 * training steps of the char-GPT with 2 heads of 32 (mha with an inner
 * width below the model's, as lathe prune --structured writes it), the
 * mhas and rnns models, against the f32 interpreter. */
static void bf16_packed(void) {
  /* gpt_heads2's and mhas' kv biases are slices of the fused qkv bias, which the plan once stored bf16 and
   * the f32 kv product read as floats (logits 0.94 and 0.61 off; they stay f32: cu_precision.c); mhas'
   * backward unrotates dkv into a bf16 copy (the values beside the keys once left unwritten: non-finite) */
  static const struct { const char *name, *text, *from, *to; int64_t batch; int fwd, train; } m[] = {
    {"gpt_heads2", NULL, "attention(HEADS, causal=true, name=\"attn\")",
     "attention(2, causal=true, name=\"attn\", head_dim=32)", 2, 1, 1},
    {"mhas", mhas_text, NULL, NULL, 4, 1, 1},
    {"rnns", rnns_text, NULL, NULL, 4, 1, 1},
  };
  for (size_t i = 0; i < sizeof m / sizeof m[0]; i++) {
    char path[128];
    CHECK_MSG(!model_file(path, sizeof path, m[i].name, m[i].text, m[i].from, m[i].to), "%s: model file", m[i].name);
    if (m[i].fwd) forward(path, m[i].batch);
    if (m[i].train) train(path, m[i].batch, 2, 3e-2);
    remove(path);
  }
}

/* --precision bf16 on the executor (bf16 buffers, bf16 products with f32
 * sums, widened loads and rounded stores as on a GPU) against the f32
 * interpreter, within fwd_tol (5e-2, above); training steps' losses and every
 * weight after them within 3e-2 of (1 + |reference|). The llvm backend
 * refuses the flag in one line. */
static void bf16(void) {
  prec = LATHE_PRECISION_BF16, fwd_tol = 5e-2;
  forward("examples/mlp.nn", 4);
  forward("examples/cnn.nn", 2);
  forward("examples/gpt.nn", 2);
  forward("examples/reverse.nn", 2);
  forward("examples/cnn_bn.nn", 4); /* batchnorm (the running statistics) on bf16 activations */
  train("examples/mlp.nn", 8, 3, 3e-2);
  train("examples/gpt.nn", 2, 3, 3e-2);
  train("examples/cnn_bn.nn", 4, 2, 3e-2); /* batchnorm_train and norm_grad on bf16 activations */
  /* the recurrences (lstm, gru), the convolutions, mha and the training
   * attention (gpt above) with bf16 activations around them */
  forward("examples/lstm.nn", 2);
  forward("examples/bigru.nn", 2);
  train("examples/lstm.nn", 2, 2, 3e-2);
  train("examples/cnn.nn", 2, 2, 3e-2);
  train("examples/reverse.nn", 2, 2, 3e-2);
  train("examples/bigru.nn", 2, 2, 3e-2);
  bf16_packed();
  prec = LATHE_PRECISION_F32, fwd_tol = 1e-4;
  lathe_error err = {0};
  lathe_model *m = lathe_model_load("examples/mlp.nn", &err);
  lathe_options o = {.backend = LATHE_BACKEND_LLVM, .precision = LATHE_PRECISION_BF16};
  lathe_program *p = m ? lathe_compile(m, &o, &err) : NULL;
  CHECK_MSG(!p && err.message && strstr(err.message, "--precision bf16 is the CUDA backend's"), "%s",
            err.message ? err.message : "(compiled)");
  lathe_error_clear(&err);
  lathe_program_free(p);
  lathe_model_free(m);
}

static int collect(void *user, int token, int byte) {
  (void)byte;
  int *t = user;
  if (t[0] < 63) t[1 + t[0]++] = token;
  return 0;
}

/* lathe generate --backend cuda: the decode program with its key/value
 * caches on the device (never copied out) gives the interpreter's and the
 * LLVM backend's tokens; with --precision bf16 it runs the cached decode
 * program too (its greedy tokens may part from f32's where two logits are
 * within bf16's rounding, so only how many agree is printed). */
static void generate(const char *path) {
  lathe_program *w = compile(path, LATHE_BACKEND_INTERP, 0, 1);
  char file[64];
  snprintf(file, sizeof file, "/tmp/lathe_cuda_gen_%d.safetensors", (int)getpid());
  lathe_error err = {0};
  int ok = w && !lathe_weights_save(w, file, &err);
  CHECK_MSG(ok, "%s: weights: %s", path, err.message ? err.message : "");
  lathe_error_clear(&err);
  lathe_program_free(w);
  lathe_model *m = ok ? lathe_model_load(path, &err) : NULL;
  static const lathe_backend be[4] = {LATHE_BACKEND_INTERP, LATHE_BACKEND_LLVM, LATHE_BACKEND_CUDA, LATHE_BACKEND_CUDA};
  static const char *const bn[4] = {"interp", "llvm", "cuda", "cuda bf16"};
  int tok[4][64] = {{0}};
  for (int b = 0; m && b < 4; b++) {
    lathe_generate_options o = {.weights = file, .prompt = "ab", .tokens = 12, .seed = 3, .on_token = collect,
                                .user = tok[b], .backend = be[b],
                                .precision = b == 3 ? LATHE_PRECISION_BF16 : LATHE_PRECISION_F32};
    lathe_generate_result r = {0};
    CHECK_MSG(!lathe_generate(m, &o, &r, &err), "%s generate (%s): %s", path, bn[b], err.message ? err.message : "");
    lathe_error_clear(&err);
    CHECK_MSG(r.cached == 1, "%s generate (%s): not the cached decode program: %s", path, bn[b], r.note);
  }
  for (int b = 1; b < 3; b++)
    CHECK_MSG(tok[0][0] == 12 && memcmp(tok[0], tok[b], sizeof tok[0]) == 0,
              "%s: %s's tokens differ from the interpreter's", path, bn[b]);
  int same = 0;
  for (int i = 1; i <= tok[3][0]; i++) same += tok[3][i] == tok[0][i];
  CHECK_MSG(tok[3][0] == 12, "%s: cuda bf16 gave %d tokens, not 12", path, tok[3][0]);
  printf("generate %s: interp, llvm and cuda gave the same 12 tokens; cuda bf16 agrees on %d of 12\n", path, same);
  /* sampling on the device (sample_token: 96 classes, the counting order;
   * every class, and a top-k): the tokens and the stream are the host's */
  static const int topk[2] = {0, 7};
  for (int c = 0; m && c < 2; c++) {
    int st[3][64] = {{0}};
    lathe_generate_result rr[3];
    for (int b = 0; b < 3; b++) {
      lathe_generate_options o = {.weights = file, .prompt = "ab", .tokens = 16, .seed = 11 + (uint64_t)c,
                                  .temperature = 1.3, .top_k = topk[c], .on_token = collect, .user = st[b],
                                  .backend = be[b]};
      memset(&rr[b], 0, sizeof rr[b]);
      CHECK_MSG(!lathe_generate(m, &o, &rr[b], &err), "%s sampled (%s): %s", path, bn[b],
                err.message ? err.message : "");
      lathe_error_clear(&err);
    }
    CHECK_MSG(rr[2].device_token == 1 && rr[0].device_token == 0 && rr[1].device_token == 0,
              "%s sampled, top-k %d: the device sampled %d (cuda), %d (interp)", path, topk[c], rr[2].device_token,
              rr[0].device_token);
    CHECK_MSG(st[0][0] == 16 && !memcmp(st[0], st[1], sizeof st[0]) && !memcmp(st[0], st[2], sizeof st[0]),
              "%s sampled, top-k %d: the tokens differ (interp %d %d %d, llvm %d %d %d, cuda %d %d %d)", path,
              topk[c], st[0][1], st[0][2], st[0][3], st[1][1], st[1][2], st[1][3], st[2][1], st[2][2], st[2][3]);
    printf("generate %s: temperature 1.3, top-k %d: interp, llvm and the device's sampler gave the same 16 tokens\n",
           path, topk[c]);
  }
  lathe_model_free(m);
  remove(file);
}

/* A tokenizer's vocabulary (5003 classes: not text, above the 4096 where
 * the device's argmax takes a block per line) on a small GPT: the greedy
 * tokens of lathe_generate --backend cuda (the lm head's product, the
 * device's argmax, only the token copied back) equal the interpreter's,
 * and sampled ones too: top-k 40 and 1024 by the device's sampler
 * (sample_token: a pick per round), every class (top-k 0) by the host's.
 * The prompt's bytes are the token ids. */
static const char big_vocab_src[] =
  "model big_vocab\n"
  "const VOCAB = 5003, T = 16, D = 32, HEADS = 2\n"
  "input tokens : i32[batch, T]\n"
  "def block(x) {\n"
  "  x = x + (layernorm(x, name=\"ln1\") |> attention(HEADS, causal=true, name=\"attn\"))\n"
  "  return x + dense(layernorm(x, name=\"ln2\") |> dense(2 * D, name=\"fc\") |> gelu, D, name=\"proj\")\n"
  "}\n"
  "pos = param([T, D], init=\"normal\", name=\"pos\")\n"
  "h = repeat(2, block, embedding(tokens, VOCAB, D, name=\"wte\") + pos, name=\"h\")\n"
  "logits = dense(layernorm(h, name=\"ln_f\"), VOCAB, name=\"head\")\n"
  "output logits\n";

static void generate_big_vocab(void) {
  char path[64];
  snprintf(path, sizeof path, "/tmp/lathe_cuda_vocab_%d.nn", (int)getpid());
  FILE *f = fopen(path, "w");
  CHECK_MSG(f && fputs(big_vocab_src, f) >= 0 && fclose(f) == 0, "cannot write %s", path);
  static const int big_k[4] = {0, 40, 1024, 0}, on_device[4] = {1, 1, 1, 0};
  for (int sampled = 0; sampled < 4; sampled++) {
    prec = LATHE_PRECISION_F32;
    lathe_program *w = compile(path, LATHE_BACKEND_INTERP, 0, 1);
    char file[64];
    snprintf(file, sizeof file, "/tmp/lathe_cuda_vocab_%d.safetensors", (int)getpid());
    lathe_error err = {0};
    int ok = w && !lathe_weights_save(w, file, &err);
    CHECK_MSG(ok, "big vocab: weights: %s", err.message ? err.message : "");
    lathe_error_clear(&err);
    lathe_program_free(w);
    lathe_model *m = ok ? lathe_model_load(path, &err) : NULL;
    int tok[2][64] = {{0}};
    for (int b = 0; m && b < 2; b++) {
      lathe_generate_options o = {.weights = file, .prompt = "ab", .tokens = 10, .seed = 5, .on_token = collect,
                                  .user = tok[b], .backend = b ? LATHE_BACKEND_CUDA : LATHE_BACKEND_INTERP,
                                  .temperature = sampled ? 0.8 : 0, .top_k = big_k[sampled]};
      lathe_generate_result r = {0};
      CHECK_MSG(!lathe_generate(m, &o, &r, &err), "big vocab generate: %s", err.message ? err.message : "");
      lathe_error_clear(&err);
      CHECK_MSG(r.cached == 1 && r.prompt_tokens == 2, "big vocab: cached %d, %lld prompt tokens", r.cached,
                (long long)r.prompt_tokens);
      CHECK_MSG(r.device_token == (b ? on_device[sampled] : 0), "big vocab, top-k %d on %s: device_token %d",
                big_k[sampled], b ? "cuda" : "interp", r.device_token);
    }
    int inside = tok[0][0] == 10;
    for (int i = 1; i <= tok[0][0]; i++) inside &= tok[0][i] >= 0 && tok[0][i] < 5003;
    CHECK_MSG(inside && memcmp(tok[0], tok[1], sizeof tok[0]) == 0, "big vocab (%s, top-k %d): cuda's tokens differ "
              "from the interpreter's (first %d vs %d)", sampled ? "sampled" : "greedy", big_k[sampled], tok[0][1],
              tok[1][1]);
    if (sampled)
      printf("generate, vocabulary 5003 (temperature 0.8, top-k %d, %s): interp and cuda gave the same 10 tokens "
             "(first %d)\n", big_k[sampled], on_device[sampled] ? "the device's sampler" : "the host's", tok[0][1]);
    else
      printf("generate, vocabulary 5003 (greedy, the device's argmax): interp and cuda gave the same 10 tokens "
             "(first %d)\n", tok[0][1]);
    lathe_model_free(m);
    remove(file);
  }
  remove(path);
}

/* The models, forward and training steps, and the kernel-found bad label;
 * batches times scale (the executor runs small ones, a GPU larger ones).
 * Every example model trains for a few steps. */
static void run_models(int scale) {
  forward("examples/mlp.nn", 4 * scale);
  forward("examples/cnn.nn", 2 * scale);
  forward("examples/gpt.nn", 2 * scale);
  forward("examples/lstm.nn", 2 * scale);
  forward("examples/reverse.nn", 2 * scale);
  train("examples/mlp.nn", 8 * scale, 3, 1e-4);
  train("examples/cnn.nn", 2 * scale, 2, 1e-4);
  /* a bias ahead of a batchnorm has a gradient of zero up to rounding, which
   * Adam turns into steps of up to lr (3e-3) either way: the losses and
   * test_cuda_exec's SGD step are the tight checks there */
  train("examples/cnn_bn.nn", 4 * scale, 2, 5e-3);
  train("examples/seq_cnn.nn", 4 * scale, 2, 1e-4);
  train("examples/gpt.nn", 2 * scale, 3, 1e-4);
  train("examples/lstm.nn", 2 * scale, 2, 1e-4);
  train("examples/reverse.nn", 2 * scale, 2, 1e-4);
  bad_label();
  too_large();
}

/* sample_token alone on the executor against rt/rt_sample.c (the host's
 * sampler and the op's reference), on logits a model would not give: ties
 * (the order's index rule), a NaN (the host's insertion, kept literally up
 * to 256 classes; last in the order above), every draw from 0 to the top:
 * [R, V] rows, each with the same draw, for the counting order (96), the
 * rounds (5003: top-k 40; 300: top-k 1024 = every class). */
static void sample_op(int64_t V, int top_k, double temp, int nan_at) {
  enum { R = 2 };
  arena A;
  ar_init(&A);
  ir_graph g;
  ir_graph_init(&g, &A, "sample");
  ir_shape sl = {.rank = 2, .d = {R, V}}, s2 = {.rank = 1, .d = {2}};
  ir_loc L = {0};
  int l = ir_add_input(&g, "logits", IR_F32, &sl, 0, L), d = ir_add_input(&g, "draw", IR_I32, &s2, 0, L);
  ir_attr a = {0};
  a.f = temp, a.k = top_k;
  char msg[1024];
  int t = ir_add(&g, IR_SAMPLE_TOKEN, (int[]){l, d}, 2, &a, L, msg, sizeof msg);
  CHECK_MSG(t >= 0, "sample_token: %s", msg);
  if (t < 0) { ar_free(&A); return; }
  ir_add_output(&g, "token", t);
  /* a GPU's own architecture (an sm_80 CUBIN does not load on sm_90); the executor's: any */
  cu_exec *x = cu_exec_create(&g, getenv("LATHE_TEST_REAL_GPU") ? NULL : "sm_80", 0, msg, sizeof msg);
  CHECK_MSG(x != NULL, "sample_token V %lld top-k %d: %s", (long long)V, top_k, msg);
  float *lg = malloc(sizeof(float) * (size_t)(R * V));
  int bad = 0, draws = 0;
  for (int64_t i = 0; lg && i < R * V; i++) /* few distinct values: many ties */
    lg[i] = (float)((i * 7919 + i / V * 13) % 23) * 0.25f - 2.f;
  if (lg && nan_at >= 0) lg[nan_at] = NAN, lg[V + nan_at / 2] = NAN;
  for (int k = 0; x && lg && k <= 16; k++) {
    double u = k == 16 ? 0.9999999999999999 : k / 16.0;
    int32_t draw[2], tok[R] = {-1, -1};
    lathe_rt_draw_split(u, draw);
    void *ins[2] = {lg, draw}, *outs[1] = {tok};
    float loss;
    if (cu_exec_run(x, ins, NULL, outs, &loss, msg, sizeof msg)) { CHECK_MSG(0, "sample_token: %s", msg); break; }
    for (int r = 0; r < R; r++, draws++) {
      int want = lathe_rt_sample(lg + r * V, V, temp, top_k, u);
      if (tok[r] != want) {
        if (!bad++) printf("sample_token V %lld top-k %d row %d u %.4f: device %d, host %d\n", (long long)V, top_k, r,
                           u, tok[r], want);
      }
    }
  }
  CHECK_MSG(x && lg && bad == 0, "sample_token V %lld top-k %d (NaN at %d): %d of %d draws differ", (long long)V, top_k,
            nan_at, bad, draws);
  printf("sample_token on the executor: V %lld, top-k %d, temperature %g, NaN at %d: %d draws, the host's tokens\n",
         (long long)V, top_k, temp, nan_at, draws);
  free(lg);
  cu_exec_free(x);
  ar_free(&A);
}

static void run_generate(void) {
  sample_op(96, 0, 1.0, -1);
  sample_op(96, 5, 0.7, 40);
  sample_op(5003, 40, 0.8, -1);
  sample_op(5003, 40, 2.0, 17);
  sample_op(300, 1024, 1.5, 3);
  generate("examples/gpt.nn");
  generate_big_vocab();
}

/* LATHE_CUDA_RUN_ONLY=bf16|models|generate runs that part alone (the
 * executor is slow on a small machine); unset, everything runs. */
static int part(const char *name) {
  const char *only = getenv("LATHE_CUDA_RUN_ONLY");
  return !only || !*only || !strcmp(only, name);
}

int main(void) {
  /* tests/gpu/run.sh: the same comparisons through the real driver and
   * cuBLASLt on a GPU (LATHE_TEST_REAL_GPU=1), the executor left out. */
  if (getenv("LATHE_TEST_REAL_GPU")) {
    printf("real GPU: the driver, not the executor\n");
    if (part("bf16")) bf16();
    if (part("models")) run_models(16);
    if (part("generate")) run_generate();
    return TEST_REPORT();
  }
  ptx_vs_driver();
  /* the real loader first: with no driver here, one line that says so */
  FILE *f = fopen("/usr/lib/x86_64-linux-gnu/libcuda.so.1", "r");
  if (!f) {
    lathe_error err = {0};
    lathe_model *m = lathe_model_load("examples/mlp.nn", &err);
    if (m) lathe_model_bind(m, "batch", 4, &err);
    lathe_options o = {.backend = LATHE_BACKEND_CUDA};
    lathe_program *p = m ? lathe_compile(m, &o, &err) : NULL;
    CHECK(!p);
    CHECK_MSG(err.message && strstr(err.message, "--backend cuda: the NVIDIA driver not found (libcuda.so.1)") &&
              !strchr(err.message, '\n'), "%s", err.message ? err.message : "");
    lathe_error_clear(&err);
    lathe_program_free(p);
    lathe_model_free(m);
  } else {
    fclose(f);
    printf("SKIPPED: the no-driver check (this machine has libcuda.so.1)\n");
  }
  if (!cx_host_compiler()) {
    printf("SKIPPED: no host C++ compiler for the CPU executor: the cuda run path was not tested\n");
    return TEST_REPORT();
  }
  cu_set_driver_factory(cx_driver);
  if (part("bf16")) bf16();
  if (part("models")) run_models(1);
  if (part("generate")) run_generate();
  cu_set_driver_factory(NULL);
  CHECK_MSG(cx_graph_replays_total() > 0, "no training step replayed a captured graph");
  printf("graph replays on the executor: %ld\n", cx_graph_replays_total());
  return TEST_REPORT();
}
