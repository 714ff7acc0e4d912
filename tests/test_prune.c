/* test_prune.c -- pruning (lathe_prune, docs/prune.md):
 *  - the source rewrite that resizes layers (positional, piped and named
 *    width arguments; comments and layout kept);
 *  - structured pruning: a conv2d -> pool -> flatten -> dense -> dense model
 *    whose pruned channels and neurons have zero weights computes, resized,
 *    what the original computes (every downstream shape followed), and its
 *    report counts fewer parameters and FLOPs;
 *  - attention heads: the resized model (fewer heads, head_dim= kept)
 *    computes what the original computes with the removed heads' output
 *    zeroed, on the interpreter and LLVM, and trains;
 *  - unstructured pruning zeroes exactly the fraction asked, over all
 *    layers or per layer;
 *  - masked training steps (lathe_options.masked): the masked entries of a
 *    weight stay zero through Adam steps while the rest train;
 *  - bad requests: sparsity outside [0, 1), nothing to prune, weights of
 *    another model, fine-tuning without data. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lathe.h"
#include "runtime/program.h"
#include "frontend/frontend.h"
#include "test.h"

static char dir[] = "/tmp/lathe_prune_XXXXXX";

static char *path(const char *name) {
  static char buf[4][512];
  static int k;
  k = (k + 1) % 4;
  snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
  return buf[k];
}

static lathe_model *parse(const char *name, const char *src) {
  lathe_error err = {0};
  lathe_model *m = lathe_model_parse(name, src, strlen(src), &err);
  CHECK_MSG(m != NULL, "%s", err.message);
  lathe_error_clear(&err);
  return m;
}

static float *param(lathe_program *p, const char *name, int64_t *n) {
  for (int i = 0; i < lathe_num_params(p); i++) {
    lathe_tensor v;
    if (strcmp(lathe_param_name(p, i), name) || lathe_param_view(p, i, &v)) continue;
    if (n) *n = lathe_tensor_numel(&v);
    return v.data;
  }
  CHECK_MSG(0, "no parameter %s", name);
  return NULL;
}

/* ---- the source rewrite ---- */

static void test_rewrite(void) {
  const char *src =
      "model r\n"
      "const H = 8\n"
      "input x : f32[batch, 4]\n"
      "h = dense(x, H, name=\"a\") |> relu   # a comment (with parens, and a comma)\n"
      "h = h |> dense(2 * (H + 1), name=\"b\")\n"
      "output y = dense(h, name=\"c\",\n"
      "                 units = 3)\n";
  lathe_model *m = parse("r.nn", src);
  if (!m) return;
  lathe_error err = {0};
  lathe_options o = {.backend = LATHE_BACKEND_INTERP, .default_dim = 1};
  lathe_program *p = api_program_lower(m, &o, &err);
  CHECK_MSG(p != NULL, "%s", err.message);
  if (!p) { lathe_model_free(m); return; }
  fe_arg_edit e[3];
  const char *names[3] = {"a.weight", "b.weight", "c.weight"}, *text[3] = {"5", "7", "2"};
  for (int k = 0; k < 3; k++) {
    int i = ir_find_param(&p->g, names[k]);
    CHECK(i >= 0);
    e[k] = (fe_arg_edit){p->g.nodes[p->g.params[i].node].loc, 1, "units", text[k], 0};
  }
  char *msg = NULL, *out = fe_rewrite_args(m->fe, e, 3, &msg);
  CHECK_MSG(out != NULL, "%s", msg ? msg : "");
  CHECK_STR(out, "model r\n"
                 "const H = 8\n"
                 "input x : f32[batch, 4]\n"
                 "h = dense(x, 5, name=\"a\") |> relu   # a comment (with parens, and a comma)\n"
                 "h = h |> dense(7, name=\"b\")\n"
                 "output y = dense(h, name=\"c\",\n"
                 "                 units = 2)\n");
  free(out), free(msg);
  e[0].call.line = 99; /* no call there */
  out = fe_rewrite_args(m->fe, e, 1, &msg);
  CHECK(out == NULL && msg && strstr(msg, "line 99"));
  free(out), free(msg);
  lathe_program_free(p);
  lathe_model_free(m);
}

/* ---- structured ---- */

static const char *cnn_src =
    "model s\n"
    "input x : f32[batch, 1, 6, 6]\n"
    "target y : i32[batch]\n"
    "h = conv2d(x, 4, kernel=3, padding=1, name=\"c1\") |> relu\n"
    "h = maxpool2d(h, 2)\n"
    "h = flatten(h)\n"
    "h = dense(h, 6, name=\"f1\") |> relu\n"
    "logits = dense(h, 3, name=\"out\")\n"
    "output probs = softmax(logits)\n"
    "loss = cross_entropy(logits, y)\n"
    "train {\n  optimizer = adam(lr=1e-3)\n  epochs = 1\n  batch = 4\n}\n";

static float *forward(lathe_model *m, const char *weights, const float *x, int64_t B) {
  lathe_error err = {0};
  lathe_options o = {.backend = LATHE_BACKEND_LLVM};
  CHECK(lathe_model_bind(m, "batch", B, &err) == 0);
  lathe_program *p = lathe_compile(m, &o, &err);
  lathe_tensor t = {.dtype = LATHE_F32, .rank = 4, .shape = {B, 1, 6, 6}, .data = (void *)x}, y = {0};
  int rc = !p || lathe_weights_load(p, weights, &err) || lathe_set_input(p, "x", &t, &err) || lathe_run(p, &err) ||
           lathe_get_output(p, "probs", &y, &err);
  CHECK_MSG(rc == 0, "forward: %s", err.message);
  lathe_error_clear(&err);
  lathe_program_free(p);
  return rc ? NULL : y.data;
}

static void test_structured(void) {
  lathe_model *m = parse("s.nn", cnn_src);
  if (!m) return;
  lathe_error err = {0};
  lathe_options o = {.backend = LATHE_BACKEND_INTERP, .default_dim = 2};
  lathe_program *p = lathe_compile(m, &o, &err);
  CHECK(p && lathe_weights_init(p, 7, &err) == 0);
  /* channels 1 and 3 of c1 and neurons 0, 2, 5 of f1 contribute nothing:
   * their norms are the smallest, so pruning half removes exactly them */
  int64_t n;
  float *cw = param(p, "c1.weight", &n), *cb = param(p, "c1.bias", NULL);
  for (int c = 1; c < 4; c += 2) {
    for (int j = 0; j < 9; j++) cw[c * 9 + j] = 0;
    cb[c] = 0;
  }
  for (int c = 0; c < 4; c += 2) cb[c] = 0.1f;
  float *fw = param(p, "f1.weight", &n), *fb = param(p, "f1.bias", NULL);
  static const int gone[3] = {0, 2, 5};
  for (int64_t r = 0; r < 36; r++)
    for (int k = 0; k < 3; k++) fw[r * 6 + gone[k]] = 0;
  fb[1] = 0.2f, fb[3] = -0.1f, fb[4] = 0.05f;
  CHECK(lathe_weights_save(p, path("w0.safetensors"), &err) == 0);
  lathe_program_free(p);

  lathe_prune_options po = {.weights = path("w0.safetensors"), .out = path("p.safetensors"), .sparsity = 0.5,
                            .structured = 1, .model_out = path("p.nn"), .report = path("p.json"), .time_batch = 2};
  lathe_prune_result r;
  int rc = lathe_prune(m, &po, &r, &err);
  CHECK_MSG(rc == 0, "prune: %s", err.message);
  lathe_error_clear(&err);
  if (rc) { lathe_model_free(m); return; }
  CHECK(r.layers == 2);
  CHECK_MSG(strstr(r.note, "out.weight stays whole") != NULL, "note: %s", r.note);
  /* c1: 4*9+4 -> 2*9+2; f1: 36*6+6 -> 18*3+3; out: 6*3+3 -> 3*3+3 */
  CHECK(r.params[0] == 40 + 222 + 21 && r.params[1] == 20 + 57 + 12);
  CHECK(r.flops[1] < r.flops[0] / 2 && r.flops[1] > 0);
  CHECK(r.time_us[0] > 0 && r.time_us[1] > 0);
  char *text = NULL, msg[256];
  size_t len = 0;
  CHECK(rt_read_file(path("p.nn"), &text, &len, msg, sizeof msg) == 0);
  CHECK(text && strstr(text, "conv2d(x, 2, kernel=3") && strstr(text, "dense(h, 3, name=\"f1\")") &&
        strstr(text, "dense(h, 3, name=\"out\")"));
  free(text);
  CHECK(rt_read_file(path("p.json"), &text, &len, msg, sizeof msg) == 0);
  CHECK(text && strstr(text, "\"kind\": \"structured\"") && strstr(text, "\"params\": 89"));
  free(text);

  float x[2 * 36];
  for (int i = 0; i < 72; i++) x[i] = (float)((i * 37) % 11) / 5.0f - 1.0f;
  lathe_model *pm = lathe_model_load(path("p.nn"), &err);
  CHECK_MSG(pm != NULL, "%s", err.message);
  float *a = forward(m, path("w0.safetensors"), x, 2), *b = pm ? forward(pm, path("p.safetensors"), x, 2) : NULL;
  double md = 0;
  for (int i = 0; a && b && i < 6; i++) md = fmax(md, fabs(a[i] - b[i]));
  CHECK_MSG(a && b && md < 1e-5, "resized model differs by %g", md);
  free(a), free(b);
  lathe_model_free(pm);

  /* the logits layer alone: nothing to resize */
  lathe_model *one = parse("one.nn", "model one\ninput x : f32[batch, 4]\noutput y = dense(x, 3, name=\"d\")\n");
  lathe_program *q = one ? lathe_compile(one, &o, &err) : NULL;
  CHECK(q && lathe_weights_init(q, 1, &err) == 0 && lathe_weights_save(q, path("one.safetensors"), &err) == 0);
  lathe_program_free(q);
  lathe_prune_options oo = {.weights = path("one.safetensors"), .out = path("o.safetensors"), .sparsity = 0.5,
                            .structured = 1, .model_out = path("o.nn")};
  CHECK(one && lathe_prune(one, &oo, NULL, &err) == LATHE_EUSER);
  CHECK_MSG(strstr(err.message, "nothing to prune structurally: d.weight stays whole: its output is read by more") != NULL,
            "%s", err.message);
  lathe_error_clear(&err);
  lathe_model_free(one);
  lathe_model_free(m);
}

/* A neuron scores its own weights' norm times its reader's: f1's neuron u
 * has every input weight a[u] and every output weight (its row of out) b[u].
 * By own norm the kept half would be {0, 2}; neuron 0 hands on almost
 * nothing (b = 0.01) and neuron 1 much (b = 3), so the product keeps {1, 2}. */
static void test_scores(void) {
  lathe_model *m = parse("sc.nn", "model sc\ninput x : f32[batch, 4]\n"
                                  "h = dense(x, 4, name=\"f1\") |> relu\noutput y = dense(h, 2, name=\"out\")\n");
  if (!m) return;
  lathe_error err = {0};
  lathe_options o = {.backend = LATHE_BACKEND_INTERP, .default_dim = 2};
  lathe_program *p = lathe_compile(m, &o, &err);
  CHECK(p && lathe_weights_init(p, 3, &err) == 0);
  static const float a[4] = {2, 0.5f, 1, 1}, b[4] = {0.01f, 3, 1, 0.1f};
  float *fw = p ? param(p, "f1.weight", NULL) : NULL, *ow = p ? param(p, "out.weight", NULL) : NULL;
  for (int i = 0; fw && ow && i < 4; i++)
    for (int u = 0; u < 4; u++) fw[i * 4 + u] = a[u], ow[u * 2 + i % 2] = b[u];
  CHECK(p && lathe_weights_save(p, path("sc.safetensors"), &err) == 0);
  lathe_program_free(p);
  lathe_prune_options po = {.weights = path("sc.safetensors"), .out = path("scp.safetensors"), .sparsity = 0.5,
                            .structured = 1, .model_out = path("scp.nn"), .time_batch = 1};
  int rc = lathe_prune(m, &po, NULL, &err);
  CHECK_MSG(rc == 0, "prune: %s", err.message);
  lathe_error_clear(&err);
  lathe_model *pm = rc ? NULL : lathe_model_load(path("scp.nn"), &err);
  lathe_program *q = pm ? lathe_compile(pm, &o, &err) : NULL;
  CHECK_MSG(!rc && q && lathe_weights_load(q, path("scp.safetensors"), &err) == 0, "%s", err.message);
  float *kw = q ? param(q, "out.weight", NULL) : NULL, *kf = q ? param(q, "f1.weight", NULL) : NULL;
  CHECK_MSG(kw && kf && kw[0] == 3 && kw[2] == 1 && kf[0] == 0.5f && kf[1] == 1, "kept rows of out: %g %g",
            kw ? kw[0] : -1, kw ? kw[2] : -1);
  lathe_program_free(q);
  lathe_model_free(pm);
  lathe_model_free(m);
}

/* ---- attention heads ---- */

/* a plain attention (a1, tokens piped in: IR_ATTENTION) and one with rotary
 * embeddings (a2, the op mha) of 4 heads of 4 in width 16 */
static const char *attn_src =
    "model h\n"
    "const V = 11, T = 5, D = 16, HEADS = 4\n"
    "input tokens : i32[batch, T]\n"
    "target next : i32[batch, T]\n"
    "h = embedding(tokens, V, D, name=\"tok\")\n"
    "h = h + attention(layernorm(h, name=\"n1\"), HEADS, causal=true, name=\"a1\")\n"
    "z = layernorm(h, name=\"n2\") |> attention(4, causal=true, rope=true, name=\"a2\")\n"
    "h = h + z\n"
    "logits = dense(h, V, name=\"head\")\n"
    "output logits\n"
    "loss = cross_entropy(logits, next)\n"
    "train {\n  optimizer = adam(lr=1e-2)\n  batch = 2\n}\n";

/* head h of attention layer `at` (qkv [16, 48], proj [16, 16]) scaled by
 * s in qkv's q, k and v blocks and by ps in proj's rows */
static void scale_head(lathe_program *p, const char *at, int h, float s, float ps) {
  char qn[64], pn[64];
  snprintf(qn, sizeof qn, "%s.qkv.weight", at), snprintf(pn, sizeof pn, "%s.proj.weight", at);
  float *q = param(p, qn, NULL), *pw = param(p, pn, NULL);
  for (int r = 0; q && r < 16; r++)
    for (int b = 0; b < 3; b++)
      for (int j = 0; j < 4; j++) q[r * 48 + b * 16 + h * 4 + j] *= s;
  for (int j = 0; pw && j < 4; j++)
    for (int c = 0; c < 16; c++) pw[(h * 4 + j) * 16 + c] *= ps;
}

static float *logits_of(lathe_model *m, const char *weights, int backend) {
  lathe_error err = {0};
  lathe_options o = {.backend = backend};
  int32_t tok[10] = {1, 4, 7, 2, 9, 3, 3, 10, 0, 5};
  CHECK(lathe_model_bind(m, "batch", 2, &err) == 0);
  lathe_program *p = lathe_compile(m, &o, &err);
  lathe_tensor t = {.dtype = LATHE_I32, .rank = 2, .shape = {2, 5}, .data = tok}, y = {0};
  int rc = !p || lathe_weights_load(p, weights, &err) || lathe_set_input(p, "tokens", &t, &err) ||
           lathe_run(p, &err) || lathe_get_output(p, "logits", &y, &err);
  CHECK_MSG(rc == 0, "forward: %s", err.message);
  lathe_error_clear(&err);
  lathe_program_free(p);
  return rc ? NULL : y.data;
}

/* Pruning half the heads of a1 and a2 removes the two with the smallest
 * norms in each, and the resized model (2 heads of width 4 each:
 * head_dim=4 added to the calls) computes exactly what the original
 * computes with those heads' output zeroed (their rows of proj.weight);
 * it trains. */
static void test_heads(void) {
  lathe_model *m = parse("h.nn", attn_src);
  if (!m) return;
  lathe_error err = {0};
  lathe_options o = {.backend = LATHE_BACKEND_INTERP, .default_dim = 2};
  lathe_program *p = lathe_compile(m, &o, &err);
  CHECK_MSG(p && lathe_weights_init(p, 5, &err) == 0, "%s", err.message);
  if (!p) { lathe_model_free(m); return; }
  float *b = param(p, "a1.qkv.bias", NULL);
  for (int i = 0; b && i < 48; i++) b[i] = 0.01f * (float)(i % 7); /* biases follow the heads too */
  scale_head(p, "a1", 1, 0.1f, 0.1f), scale_head(p, "a1", 3, 0.1f, 0.1f);
  scale_head(p, "a2", 0, 0.2f, 0.1f), scale_head(p, "a2", 2, 0.1f, 0.2f);
  CHECK(lathe_weights_save(p, path("h0.safetensors"), &err) == 0);
  scale_head(p, "a1", 1, 1, 0), scale_head(p, "a1", 3, 1, 0); /* the removed heads' output zeroed */
  scale_head(p, "a2", 0, 1, 0), scale_head(p, "a2", 2, 1, 0);
  CHECK(lathe_weights_save(p, path("hz.safetensors"), &err) == 0);
  lathe_program_free(p);

  lathe_prune_options po = {.weights = path("h0.safetensors"), .out = path("hp.safetensors"), .sparsity = 0.5,
                            .structured = 1, .model_out = path("hp.nn"), .time_batch = 2};
  lathe_prune_result r;
  int rc = lathe_prune(m, &po, &r, &err);
  CHECK_MSG(rc == 0, "prune: %s", err.message);
  lathe_error_clear(&err);
  if (rc) { lathe_model_free(m); return; }
  CHECK_MSG(r.layers == 2, "%d layers pruned", r.layers);
  /* per layer qkv 16 x 48 + 48 -> 16 x 24 + 24, proj 16 x 16 -> 8 x 16 */
  CHECK_MSG(r.params[0] - r.params[1] == 2 * (816 - 408 + 256 - 128), "params %lld -> %lld",
            (long long)r.params[0], (long long)r.params[1]);
  CHECK(r.flops[1] < r.flops[0]);
  char *text = NULL, msg[256];
  size_t len = 0;
  CHECK(rt_read_file(path("hp.nn"), &text, &len, msg, sizeof msg) == 0);
  CHECK_MSG(text && strstr(text, "attention(layernorm(h, name=\"n1\"), 2, causal=true, name=\"a1\", head_dim=4)") &&
            strstr(text, "|> attention(2, causal=true, rope=true, name=\"a2\", head_dim=4)") &&
            strstr(text, "the widths of a1 (heads), a2 (heads) changed"), "%s", text ? text : "");
  free(text);
  lathe_model *pm = lathe_model_load(path("hp.nn"), &err);
  CHECK_MSG(pm != NULL, "%s", err.message);
  lathe_error_clear(&err);
  for (int be = 0; pm && be < 2; be++) {
    int backend = be ? LATHE_BACKEND_LLVM : LATHE_BACKEND_INTERP;
    float *a = logits_of(m, path("hz.safetensors"), backend), *q = logits_of(pm, path("hp.safetensors"), backend);
    double md = 0, mx = 0;
    for (int i = 0; a && q && i < 2 * 5 * 11; i++) md = fmax(md, fabs(a[i] - q[i])), mx = fmax(mx, fabs(a[i]));
    CHECK_MSG(a && q && md < 1e-5 * (1 + mx), "%s: the pruned model differs by %g", be ? "llvm" : "interp", md);
    free(a), free(q);
  }

  /* it trains: a few Adam steps on the resized model move its weights */
  lathe_options to = {.backend = LATHE_BACKEND_LLVM, .default_dim = 2};
  p = pm ? lathe_compile_train(pm, &to, &err) : NULL;
  CHECK_MSG(p != NULL, "%s", err.message);
  if (p && lathe_weights_load(p, path("hp.safetensors"), &err) == 0) {
    int64_t n = 0;
    float *w = param(p, "a2.proj.weight", &n), before = w ? w[5] : 0;
    int32_t tok[10] = {1, 4, 7, 2, 9, 3, 3, 10, 0, 5}, nx[10] = {4, 7, 2, 9, 3, 3, 10, 0, 5, 1};
    lathe_tensor tt = {.dtype = LATHE_I32, .rank = 2, .shape = {2, 5}, .data = tok};
    lathe_tensor tn = {.dtype = LATHE_I32, .rank = 2, .shape = {2, 5}, .data = nx};
    for (int s = 0; s < 3; s++)
      CHECK_MSG(lathe_set_input(p, "tokens", &tt, &err) == 0 && lathe_set_input(p, "next", &tn, &err) == 0 &&
                lathe_run(p, &err) == 0, "train step: %s", err.message);
    CHECK(n == 8 * 16 && w && w[5] != before);
  }
  lathe_error_clear(&err);
  lathe_program_free(p);

  /* pruned again: the calls' head_dim= is kept (replaced by the same width), one head left each */
  lathe_prune_options p2 = {.weights = path("hp.safetensors"), .out = path("hq.safetensors"), .sparsity = 0.5,
                            .structured = 1, .model_out = path("hq.nn"), .time_batch = 1};
  CHECK_MSG(pm && lathe_prune(pm, &p2, NULL, &err) == 0, "prune again: %s", err.message);
  lathe_error_clear(&err);
  text = NULL;
  CHECK(rt_read_file(path("hq.nn"), &text, &len, msg, sizeof msg) == 0);
  CHECK_MSG(text && strstr(text, "attention(layernorm(h, name=\"n1\"), 1, causal=true, name=\"a1\", head_dim=4)\n") &&
            strstr(text, "|> attention(1, causal=true, rope=true, name=\"a2\", head_dim=4)\n"), "%s", text ? text : "");
  free(text);
  lathe_model_free(pm);
  lathe_model_free(m);

  /* grouped key/value heads and cross-attention stay whole, and say why */
  static const char *const whole[2][2] = {
      {"attention(x, 4, kv_heads=2, name=\"g\")", "g.qkv.weight stays whole: grouped key/value heads"},
      {"attention(x, 2, context=x, name=\"c\")", "c.q.weight stays whole: cross-attention heads are not pruned"}};
  for (int k = 0; k < 2; k++) {
    char src[400];
    snprintf(src, sizeof src, "model w\ninput x : f32[batch, 3, 8]\noutput y = %s\n", whole[k][0]);
    lathe_model *w = parse("w.nn", src);
    lathe_program *q = w ? lathe_compile(w, &o, &err) : NULL;
    CHECK(q && lathe_weights_init(q, 1, &err) == 0 && lathe_weights_save(q, path("w.safetensors"), &err) == 0);
    lathe_program_free(q);
    lathe_prune_options wo = {.weights = path("w.safetensors"), .out = path("wo.safetensors"), .sparsity = 0.5,
                              .structured = 1, .model_out = path("wo.nn"), .time_batch = 1};
    CHECK(w && lathe_prune(w, &wo, NULL, &err) == LATHE_EUSER);
    CHECK_MSG(err.message && strstr(err.message, whole[k][1]), "%s", err.message ? err.message : "");
    lathe_error_clear(&err);
    lathe_model_free(w);
  }
}

/* ---- unstructured and the masks ---- */

static const char *mlp_src =
    "model u\n"
    "input x : f32[batch, 5]\n"
    "target y : i32[batch]\n"
    "h = dense(x, 8, name=\"a\") |> relu\n"
    "logits = dense(h, 3, name=\"b\")\n"
    "loss = cross_entropy(logits, y)\n"
    "train {\n  optimizer = adam(lr=1e-2)\n  batch = 4\n}\n";

static int64_t zeros(lathe_program *p, const char *name) {
  int64_t n = 0, z = 0;
  float *w = param(p, name, &n);
  for (int64_t i = 0; w && i < n; i++) z += w[i] == 0;
  return z;
}

static void test_unstructured(void) {
  lathe_model *m = parse("u.nn", mlp_src);
  if (!m) return;
  lathe_error err = {0};
  lathe_options o = {.backend = LATHE_BACKEND_INTERP, .default_dim = 4};
  lathe_program *p = lathe_compile(m, &o, &err);
  CHECK(p && lathe_weights_init(p, 3, &err) == 0 && lathe_weights_save(p, path("u.safetensors"), &err) == 0);
  lathe_program_free(p);
  for (int per = 0; per < 2; per++) {
    lathe_prune_options po = {.weights = path("u.safetensors"), .out = path("up.safetensors"), .sparsity = 0.75,
                              .per_layer = per, .steps = 2, .time_batch = 1};
    lathe_prune_result r;
    CHECK_MSG(lathe_prune(m, &po, &r, &err) == 0, "%s", err.message);
    lathe_error_clear(&err);
    CHECK(r.layers == 2 && r.weights_nonzero[0] == 64 && r.weights_nonzero[1] == 16);
    p = lathe_compile(m, &o, &err);
    CHECK(p && lathe_weights_load(p, path("up.safetensors"), &err) == 0);
    if (per) CHECK(zeros(p, "a.weight") == 30 && zeros(p, "b.weight") == 18);
    CHECK(zeros(p, "a.weight") + zeros(p, "b.weight") == 48);
    CHECK(zeros(p, "a.bias") == 8); /* biases are not pruned (zero-initialised) */
    lathe_program_free(p);
  }

  /* a masked training step: masked entries stay zero, the others move */
  o.masked = 1;
  p = lathe_compile_train(m, &o, &err);
  CHECK_MSG(p != NULL, "%s", err.message);
  if (p && lathe_weights_init(p, 3, &err) == 0) {
    int64_t n;
    float *w = param(p, "a.weight", &n), *mk = param(p, "a.weight.mask", NULL), *before = malloc(sizeof(float) * 40);
    for (int i = 0; i < 40; i++) {
      if (i % 3 == 0) mk[i] = 0, w[i] = 0;
      before[i] = w[i];
    }
    float x[20];
    int32_t y[4] = {0, 1, 2, 1};
    for (int i = 0; i < 20; i++) x[i] = (float)(i % 7) - 3.0f;
    lathe_tensor tx = {.dtype = LATHE_F32, .rank = 2, .shape = {4, 5}, .data = x};
    lathe_tensor ty = {.dtype = LATHE_I32, .rank = 1, .shape = {4}, .data = y};
    for (int s = 0; s < 3; s++)
      CHECK(lathe_set_input(p, "x", &tx, &err) == 0 && lathe_set_input(p, "y", &ty, &err) == 0 &&
            lathe_run(p, &err) == 0);
    int still = 1, moved = 0;
    for (int i = 0; i < 40; i++) {
      if (i % 3 == 0) still &= w[i] == 0;
      else moved += w[i] != before[i];
    }
    CHECK(still && moved > 20);
    CHECK(mk[0] == 0 && mk[1] == 1); /* the mask is not trained */
    free(before);
  }
  lathe_error_clear(&err);
  lathe_program_free(p);
  o.masked = 2;
  CHECK(lathe_compile(m, &o, &err) == NULL && strstr(err.message, "masked must be 0 or 1"));
  lathe_error_clear(&err);
  lathe_model_free(m);
}

/* ---- bad requests ---- */

static void expect(lathe_model *m, const lathe_prune_options *po, const char *want) {
  lathe_error err = {0};
  CHECK(lathe_prune(m, po, NULL, &err) != 0);
  CHECK_MSG(err.message[0] && strstr(err.message, want), "got '%s', want '%s'", err.message, want);
  lathe_error_clear(&err);
}

static void test_errors(void) {
  lathe_model *m = parse("u.nn", mlp_src);
  if (!m) return;
  lathe_prune_options po = {.weights = path("u.safetensors"), .out = path("e.safetensors"), .sparsity = 1.0};
  expect(m, &po, "sparsity must be in [0, 1)");
  po.sparsity = -0.1;
  expect(m, &po, "sparsity must be in [0, 1)");
  po.sparsity = NAN;
  expect(m, &po, "sparsity must be in [0, 1)");
  po.sparsity = 0.5, po.finetune = 2;
  expect(m, &po, "fine-tuning needs data");
  po.finetune = 0, po.structured = 1;
  expect(m, &po, "give its path (model_out)");
  po.structured = 0;
  lathe_model *ln = parse("ln.nn", "model ln\ninput x : f32[batch, 5]\noutput y = layernorm(x, name=\"n\")\n");
  lathe_error err = {0};
  lathe_options o = {.backend = LATHE_BACKEND_INTERP, .default_dim = 1};
  lathe_program *p = ln ? lathe_compile(ln, &o, &err) : NULL;
  CHECK(p && lathe_weights_init(p, 1, &err) == 0 && lathe_weights_save(p, path("ln.safetensors"), &err) == 0);
  lathe_program_free(p);
  po.weights = path("ln.safetensors");
  expect(m, &po, "missing tensor 'a.weight'");
  if (ln) expect(ln, &po, "has nothing to prune: no dense or conv2d weight");
  lathe_model_free(ln);
  lathe_model_free(m);
}

int main(void) {
  if (!mkdtemp(dir)) return 1;
  test_rewrite();
  test_structured();
  test_scores();
  test_heads();
  test_unstructured();
  test_errors();
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd)) fprintf(stderr, "could not remove %s\n", dir);
  return TEST_REPORT();
}
