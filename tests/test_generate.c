/* test_generate.c -- generation with the key/value cache (passes/decode.c,
 * runtime/generate.c, the kv_write and attention_decode ops):
 *   1. the decode ops on the CPU backend match the reference interpreter;
 *   2. on small GPTs with random weights (learned positions, and arange
 *      positions), the cached decoder produces exactly the tokens that
 *      recomputing the whole context each step produces -- greedy and seeded
 *      top-k sampling, past T (the sliding window), on both backends;
 *   3. recurrent models (lstm, gru, a 2-layer rnn) carry their state from
 *      token to token (the same tokens as recomputing, both backends, past
 *      T), and a bidirectional layer (no decode form) falls back to
 *      recomputing, with a note;
 *   4. user errors come back as messages.
 * The CLI's errors are tests/generate.sh's. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codegen/llvm/cg.h"
#include "ir.h"
#include "lathe.h"
#include "rt/lathe_rt.h"
#include "test.h"

/* ---- 1. the ops, interpreter against the CPU backend ---- */

/* the cache's rows, the width and the heads of test_ops (set before each
 * call), at most MT, MD */
enum { MT = 600, MD = 64 };
static int64_t OT = 7, OD = 12, OH = 3;

static void fill(double *v, int64_t n, unsigned seed) {
  ir_rng r;
  ir_rng_seed(&r, seed, 1);
  for (int64_t i = 0; i < n; i++) v[i] = (float)(ir_rng_uniform(&r) * 2 - 1);
}

/* out0 = kv_write(k, q's first DK values, pos), out1 = attention_decode(q,
 * out0, v, pos): caches of KVH heads (KVH = OH, or grouped: fewer) */
static void test_ops(int64_t pos, int64_t kvh) {
  const int64_t DK = kvh * (OD / OH);
  arena A;
  ar_init(&A);
  ir_graph g;
  ir_graph_init(&g, &A, "ops");
  ir_shape sq = {.rank = 3, .d = {1, 1, OD}}, sc = {.rank = 2, .d = {OT, DK}}, s0 = {.rank = 0};
  ir_loc L = {0};
  int q = ir_add_input(&g, "q", IR_F32, &sq, 0, L), k = ir_add_input(&g, "k", IR_F32, &sc, 0, L);
  int v = ir_add_input(&g, "v", IR_F32, &sc, 0, L), p = ir_add_input(&g, "pos", IR_I32, &s0, 0, L);
  char msg[512];
  ir_attr first = {0};
  first.axis = 2, first.start = 0, first.end = DK;
  int r = ir_add(&g, IR_SLICE, &q, 1, &first, L, msg, sizeof msg);
  int w = ir_add(&g, IR_KV_WRITE, (int[]){k, r, p}, 3, NULL, L, msg, sizeof msg);
  ir_attr at = {0};
  at.heads = OH;
  int a = ir_add(&g, IR_ATTENTION_DECODE, (int[]){q, w, v, p}, 4, &at, L, msg, sizeof msg);
  CHECK_MSG(r >= 0 && w >= 0 && a >= 0, "%s", msg);
  CHECK(r < 0 || g.nodes[r].shape.d[2] == DK);
  if (r < 0 || w < 0 || a < 0) { ar_free(&A); return; }
  ir_add_output(&g, "w", w);
  ir_add_output(&g, "a", a);
  /* interpreter */
  double **vals = calloc((size_t)g.nnodes, sizeof *vals);
  static double dq[MD], dk[MT * MD], dv[MT * MD];
  double dp = (double)pos;
  fill(dq, OD, 1), fill(dk, OT * DK, 2), fill(dv, OT * DK, 3);
  vals[q] = dq, vals[k] = dk, vals[v] = dv, vals[p] = &dp;
  int rc = ir_interp(&g, IR_INTERP_F32, vals, msg, sizeof msg);
  CHECK_MSG(rc == 0, "%s", msg);
  /* CPU backend */
  static float fq[MD], fk[MT * MD], fv[MT * MD], ow[MT * MD], oa[MD];
  int32_t ip = (int32_t)pos;
  for (int i = 0; i < OD; i++) fq[i] = (float)dq[i];
  for (int i = 0; i < OT * DK; i++) fk[i] = (float)dk[i], fv[i] = (float)dv[i];
  cg_program *cp = cg_compile(&g, NULL, msg, sizeof msg);
  CHECK_MSG(cp != NULL, "%s", msg);
  void *ins[4] = {fq, fk, fv, &ip}, *outs[2] = {ow, oa};
  if (cp && rc == 0) {
    CHECK_MSG(cg_run(cp, ins, NULL, outs, NULL, msg, sizeof msg) == 0, "%s", msg);
    double worst = 0;
    for (int i = 0; i < OT * DK; i++) worst = fmax(worst, fabs(ow[i] - vals[w][i]));
    CHECK_MSG(worst == 0, "kv_write differs by %g", worst);
    worst = 0;
    for (int i = 0; i < OD; i++) worst = fmax(worst, fabs(oa[i] - vals[a][i]) / (1 + fabs(vals[a][i])));
    CHECK_MSG(worst <= 1e-5, "attention_decode at pos %lld, %lld kv heads: error %g", (long long)pos, (long long)kvh,
              worst);
    /* a position outside the cache is an error, not a read out of bounds */
    ip = OT;
    CHECK(cg_run(cp, ins, NULL, outs, NULL, msg, sizeof msg) != 0);
  }
  cg_free(cp);
  if (rc == 0) ir_interp_release(&g, vals);
  dp = OT;
  CHECK(ir_interp(&g, IR_INTERP_F32, vals, msg, sizeof msg) != 0);
  ir_interp_release(&g, vals);
  free(vals);
  ar_free(&A);
}

/* sample_token(logits [2, V], draw; temperature, top_k): the interpreter
 * and the CPU backend against rt/rt_sample.c (the host's sampler) called
 * directly, over draws from 0 to the top; a shape rule's refusals. */
static void test_sample_op(int64_t V, int top_k, double temp) {
  arena A;
  ar_init(&A);
  ir_graph g;
  ir_graph_init(&g, &A, "sample");
  ir_shape sl = {.rank = 2, .d = {2, V}}, s2 = {.rank = 1, .d = {2}}, s3 = {.rank = 1, .d = {3}};
  ir_loc L = {0};
  int l = ir_add_input(&g, "logits", IR_F32, &sl, 0, L), d = ir_add_input(&g, "draw", IR_I32, &s2, 0, L);
  ir_attr a = {0};
  a.f = temp, a.k = top_k;
  char msg[512];
  int t = ir_add(&g, IR_SAMPLE_TOKEN, (int[]){l, d}, 2, &a, L, msg, sizeof msg);
  CHECK_MSG(t >= 0 && g.nodes[t].dtype == IR_I32 && g.nodes[t].shape.rank == 1 && g.nodes[t].shape.d[0] == 2, "%s",
            msg);
  ir_attr bad = a;
  bad.f = 0;
  CHECK(ir_add(&g, IR_SAMPLE_TOKEN, (int[]){l, d}, 2, &bad, L, msg, sizeof msg) < 0 && strstr(msg, "temperature"));
  int d3 = ir_add_input(&g, "draw3", IR_I32, &s3, 0, L);
  CHECK(ir_add(&g, IR_SAMPLE_TOKEN, (int[]){l, d3}, 2, &a, L, msg, sizeof msg) < 0 && strstr(msg, "i32[2]"));
  if (t < 0) { ar_free(&A); return; }
  ir_add_output(&g, "token", t);
  float *lg = malloc(sizeof(float) * (size_t)(2 * V));
  double *dl = malloc(sizeof(double) * (size_t)(2 * V));
  cg_program *cp = cg_compile(&g, NULL, msg, sizeof msg);
  CHECK_MSG(cp != NULL, "%s", msg);
  int bad_tok = 0;
  for (int64_t i = 0; lg && dl && i < 2 * V; i++) dl[i] = lg[i] = (float)((i * 31) % 17) * 0.5f - 3.f;
  for (int k = 0; cp && lg && dl && k <= 8; k++) {
    double u = k / 8.0 * 0.999, dd[2], dummy = 0;
    int32_t draw[2], tok[2] = {-1, -1};
    lathe_rt_draw_split(u, draw);
    dd[0] = draw[0], dd[1] = draw[1];
    double **vals = calloc((size_t)g.nnodes, sizeof *vals);
    vals[l] = dl, vals[d] = dd, vals[d3] = &dummy;
    int rc = vals ? ir_interp(&g, IR_INTERP_F32, vals, msg, sizeof msg) : -1;
    CHECK_MSG(rc == 0, "%s", msg);
    void *ins[3] = {lg, draw, draw}, *outs[1] = {tok};
    CHECK_MSG(cg_run(cp, ins, NULL, outs, NULL, msg, sizeof msg) == 0, "%s", msg);
    for (int r = 0; r < 2; r++) {
      int want = lathe_rt_sample(lg + r * V, V, temp, top_k, u);
      bad_tok += rc != 0 || tok[r] != want || (int)vals[t][r] != want;
    }
    if (vals && rc == 0) ir_interp_release(&g, vals);
    free(vals);
  }
  CHECK_MSG(bad_tok == 0, "sample_token V %lld top-k %d: %d tokens differ from rt_sample's", (long long)V, top_k,
            bad_tok);
  cg_free(cp);
  free(lg), free(dl);
  ar_free(&A);
}

/* ---- 2. cached decoding against recomputation ---- */

static const char *gpt_src =
    "model tiny\n"
    "const VOCAB = 96, T = 16, D = 32, HEADS = 4\n"
    "input tokens : i32[batch, T]\n"
    "target next : i32[batch, T]\n"
    "def block(x) {\n"
    "  a = layernorm(x, name=\"ln1\") |> attention(HEADS, causal=true, name=\"attn\")\n"
    "  x = x + a\n"
    "  m = layernorm(x, name=\"ln2\") |> dense(4 * D, name=\"fc\") |> gelu\n"
    "  return x + dense(m, D, name=\"proj\")\n"
    "}\n"
    "POSITIONS\n"
    "h = repeat(2, block, h, name=\"h\")\n"
    "logits = layernorm(h, name=\"ln_f\") |> dense(VOCAB, name=\"head\")\n"
    "output logits\n"
    "loss = cross_entropy(logits, next)\n";

static const char *pos_param =
    "pos = param([T, D], init=\"normal\", name=\"pos\")\n"
    "h = embedding(tokens, VOCAB, D, name=\"tok\") + pos\n";
static const char *pos_arange =
    "h = embedding(tokens, VOCAB, D, name=\"tok\") + embedding(arange(T), T, D, name=\"wpe\")\n";

/* LAYER is replaced by each recurrent layer under test */
static const char *rec_src =
    "model tinyrec\n"
    "input tokens : i32[batch, 12]\n"
    "target next : i32[batch, 12]\n"
    "h = embedding(tokens, 96, 16, name=\"emb\") |> LAYER\n"
    "logits = dense(h, 96, name=\"head\")\n"
    "output logits\n"
    "loss = cross_entropy(logits, next)\n";

static char *with_layer(const char *layer) {
  const char *at = strstr(rec_src, "LAYER");
  size_t n = strlen(rec_src) + strlen(layer) + 1;
  char *s = malloc(n);
  snprintf(s, n, "%.*s%s%s", (int)(at - rec_src), rec_src, layer, at + strlen("LAYER"));
  return s;
}

static char *with_positions(const char *positions) {
  const char *at = strstr(gpt_src, "POSITIONS\n");
  size_t n = strlen(gpt_src) + strlen(positions) + 1;
  char *s = malloc(n);
  snprintf(s, n, "%.*s%s%s", (int)(at - gpt_src), gpt_src, positions, at + strlen("POSITIONS\n"));
  return s;
}

typedef struct {
  int tok[256];
  int n;
} seq;

static int collect(void *user, int token, int byte) {
  seq *s = user;
  (void)byte;
  if (s->n < 256) s->tok[s->n++] = token;
  return 0;
}

static lathe_model *parse(const char *src) {
  lathe_error err = {0};
  lathe_model *m = lathe_model_parse("test.nn", src, strlen(src), &err);
  CHECK_MSG(m != NULL, "%s", err.message ? err.message : "");
  lathe_error_clear(&err);
  return m;
}

/* Random weights for m (at batch 1) in a file. */
static int write_weights(lathe_model *m, const char *path, uint64_t seed) {
  lathe_error err = {0};
  lathe_options o = {.backend = LATHE_BACKEND_INTERP, .default_dim = 1};
  lathe_program *p = lathe_compile(m, &o, &err);
  int rc = !p || lathe_weights_init(p, seed, &err) || lathe_weights_save(p, path, &err);
  CHECK_MSG(rc == 0, "%s", err.message ? err.message : "");
  lathe_error_clear(&err);
  lathe_program_free(p);
  return rc;
}

static int generate(lathe_model *m, lathe_generate_options o, seq *out, lathe_generate_result *r) {
  lathe_error err = {0};
  memset(out, 0, sizeof *out);
  o.on_token = collect, o.user = out;
  int rc = lathe_generate(m, &o, r, &err);
  CHECK_MSG(rc == 0, "%s", err.message ? err.message : "");
  lathe_error_clear(&err);
  return rc;
}

/* The same tokens from the cache and from recomputation. */
static void check_parity(lathe_model *m, const char *weights, lathe_backend b, double temp, int top_k,
                         int64_t tokens, const char *prompt, int want_cached) {
  lathe_generate_options o = {.weights = weights, .prompt = prompt, .tokens = tokens, .temperature = temp,
                              .top_k = top_k, .seed = 7, .backend = b};
  seq cached, full;
  lathe_generate_result rc, rf;
  if (generate(m, o, &cached, &rc)) return;
  o.recompute = 1;
  if (generate(m, o, &full, &rf)) return;
  CHECK_MSG(rc.cached == want_cached, "cached = %d (%s)", rc.cached, rc.note);
  CHECK(!rf.cached && rf.note[0]);
  CHECK(cached.n == tokens && full.n == tokens);
  int first = -1;
  for (int i = 0; i < cached.n && i < full.n && first < 0; i++)
    if (cached.tok[i] != full.tok[i]) first = i;
  CHECK_MSG(first < 0, "backend %d temp %g: token %d differs: %d (cache) vs %d (recompute)", (int)b, temp, first,
            first >= 0 ? cached.tok[first] : 0, first >= 0 ? full.tok[first] : 0);
}

static void test_gpt(const char *positions, const char *path) {
  char *src = with_positions(positions);
  lathe_model *m = parse(src);
  free(src);
  if (!m || write_weights(m, path, 11)) { lathe_model_free(m); return; }
  /* 40 tokens after a 5-token prompt: the window (T = 16) slides twice. */
  for (int b = 0; b < 2; b++) {
    lathe_backend be = b ? LATHE_BACKEND_LLVM : LATHE_BACKEND_INTERP;
    check_parity(m, path, be, 0, 0, 40, "To be", 1);
    check_parity(m, path, be, 1.0, 10, 40, "To be", 1);
  }
  /* a prompt longer than T, sampling over every token, and an empty prompt */
  check_parity(m, path, LATHE_BACKEND_LLVM, 0.8, 0, 20, "It was the best of times, it was the worst", 1);
  check_parity(m, path, LATHE_BACKEND_LLVM, 1.0, 0, 10, "", 1);
  /* seeded: the same seed gives the same text, another seed another */
  lathe_generate_options o = {.weights = path, .prompt = "ab", .tokens = 30, .temperature = 1.0, .seed = 1};
  seq s1, s2, s3;
  lathe_generate_result r;
  generate(m, o, &s1, &r);
  generate(m, o, &s2, &r);
  o.seed = 2;
  generate(m, o, &s3, &r);
  CHECK(memcmp(s1.tok, s2.tok, sizeof s1.tok) == 0);
  CHECK(memcmp(s1.tok, s3.tok, sizeof s1.tok) != 0);
  CHECK(r.generated == 30 && r.prompt_tokens == 2 && r.cached);
  lathe_model_free(m);
}

/* Rotary positions and grouped key/value heads (the op mha): the cache
 * holds the rotated keys of 2 key/value heads; the decode graph must give
 * the recomputed tokens on both backends, past the window too. So must a
 * model whose attention is narrower than its width (head_dim=, pruned
 * heads). A masked model falls back to recomputing, saying why. */
static void test_gpt_mha(const char *path) {
  char *src = with_positions("h = embedding(tokens, VOCAB, D, name=\"tok\")\n");
  const char *at = strstr(src, "causal=true");
  size_t n = strlen(src) + 64;
  char *mha = malloc(n);
  snprintf(mha, n, "%.*scausal=true, rope=true, kv_heads=2%s", (int)(at - src), src, at + strlen("causal=true"));
  free(src);
  lathe_model *m = parse(mha);
  free(mha);
  if (!m || write_weights(m, path, 13)) { lathe_model_free(m); return; }
  for (int b = 0; b < 2; b++) {
    lathe_backend be = b ? LATHE_BACKEND_LLVM : LATHE_BACKEND_INTERP;
    check_parity(m, path, be, 0, 0, 40, "To be", 1);
    check_parity(m, path, be, 1.0, 10, 40, "To be", 1);
  }
  check_parity(m, path, LATHE_BACKEND_LLVM, 0.8, 0, 20, "It was the best of times, it was the worst", 1);
  lathe_model_free(m);
  /* pruned heads (lathe prune --structured): 2 heads of 8 in width 32, the cache [T, 16] per layer */
  src = with_positions("h = embedding(tokens, VOCAB, D, name=\"tok\")\n");
  at = strstr(src, "HEADS, causal=true");
  n = strlen(src) + 64;
  mha = malloc(n);
  snprintf(mha, n, "%.*s2, causal=true, head_dim=8%s", (int)(at - src), src, at + strlen("HEADS, causal=true"));
  free(src);
  m = parse(mha);
  free(mha);
  if (!m || write_weights(m, path, 17)) { lathe_model_free(m); return; }
  for (int b = 0; b < 2; b++)
    check_parity(m, path, b ? LATHE_BACKEND_LLVM : LATHE_BACKEND_INTERP, 0, 0, 40, "To be", 1);
  lathe_model_free(m);
  /* mha without a decode form: non-causal self-attention */
  m = parse("model nc\ninput tokens : i32[batch, 8]\n"
            "h = embedding(tokens, 96, 16, name=\"tok\") |> attention(2, rope=true, name=\"a\")\n"
            "output logits = dense(h, 96, name=\"head\")\n");
  if (!m || write_weights(m, path, 3)) { lathe_model_free(m); return; }
  lathe_generate_options o = {.weights = path, .prompt = "x", .tokens = 3};
  seq s;
  lathe_generate_result r;
  generate(m, o, &s, &r);
  CHECK_MSG(!r.cached && strstr(r.note, "non-causal") != NULL, "note: %s", r.note);
  lathe_model_free(m);
}

static void test_recurrent(const char *layer, const char *path, int want_cached) {
  char *src = with_layer(layer);
  lathe_model *m = parse(src);
  free(src);
  if (!m || write_weights(m, path, 5)) { lathe_model_free(m); return; }
  /* 30 tokens after a 5-token prompt: the window (T = 12) slides, and the
   * state restarts from zeros at position 0 each time */
  for (int b = 0; b < 2; b++) {
    lathe_backend be = b ? LATHE_BACKEND_LLVM : LATHE_BACKEND_INTERP;
    check_parity(m, path, be, 0, 0, 30, "Hello", want_cached);
    check_parity(m, path, be, 0.9, 5, 30, "Hello", want_cached);
  }
  lathe_generate_options o = {.weights = path, .prompt = "x", .tokens = 3};
  seq s;
  lathe_generate_result r;
  generate(m, o, &s, &r);
  CHECK_MSG(want_cached ? r.cached && !r.note[0] : !r.cached && strstr(r.note, "gather") != NULL, "%s: note: %s",
            layer, r.note);
  lathe_model_free(m);
}

/* ---- 4. errors ---- */

static void expect_error(lathe_model *m, lathe_generate_options o, const char *want) {
  lathe_error err = {0};
  int rc = lathe_generate(m, &o, NULL, &err);
  CHECK(rc == LATHE_EUSER);
  CHECK_MSG(err.message && strstr(err.message, want), "message '%s' lacks '%s'", err.message ? err.message : "",
            want);
  lathe_error_clear(&err);
}

static void test_errors(const char *path) {
  char *src = with_positions(pos_param);
  lathe_model *m = parse(src);
  free(src);
  if (!m) return;
  lathe_generate_options o = {.prompt = "a", .tokens = 3};
  expect_error(m, o, "no weights");
  o.weights = "/nonexistent/w.safetensors";
  expect_error(m, o, "/nonexistent/w.safetensors");
  o.weights = path;
  o.temperature = -1;
  expect_error(m, o, "temperature");
  o.temperature = NAN;
  expect_error(m, o, "temperature");
  o.temperature = 0, o.top_k = -2;
  expect_error(m, o, "top-k");
  lathe_model_free(m);
  /* a model that is not a sequence model */
  const char *mlp = "model mlp\ninput x : f32[batch, 4]\ny = dense(x, 3, name=\"fc\")\noutput y\n";
  m = parse(mlp);
  if (!m) return;
  o.top_k = 0;
  o.weights = path;
  expect_error(m, o, "token-sequence input");
  lathe_model_free(m);
}

int main(void) {
  for (int64_t pos = 0; pos < OT; pos += 3) test_ops(pos, OH), test_ops(pos, 1);
  /* heads of 32 (rt/rt_decode.c's AVX-512 kernel where the CPU has it, and
   * its C kernel) and a cache past one chunk of 512 scores */
  OT = MT, OD = MD, OH = 2;
  for (int c = 0; c < 2; c++) {
    if (c) setenv("LATHE_CPU_FEATURES", "-avx512f", 1);
    for (int64_t pos = 5; pos < OT; pos += 540) test_ops(pos, OH), test_ops(pos, 1);
    unsetenv("LATHE_CPU_FEATURES");
  }
  OT = 7, OD = 12, OH = 3;
  test_sample_op(96, 0, 1.0);
  test_sample_op(96, 5, 0.7);
  test_sample_op(600, 40, 0.9);
  char dir[] = "/tmp/lathe_gen_XXXXXX";
  if (!mkdtemp(dir)) { perror("mkdtemp"); return 1; }
  char w1[64], w2[64], w3[64];
  snprintf(w1, sizeof w1, "%s/gpt.safetensors", dir);
  snprintf(w2, sizeof w2, "%s/gpt2.safetensors", dir);
  snprintf(w3, sizeof w3, "%s/lstm.safetensors", dir);
  test_gpt(pos_param, w1);
  test_gpt(pos_arange, w2);
  test_gpt_mha(w2);
  test_recurrent("lstm(24, name=\"lstm1\")", w3, 1);
  test_recurrent("gru(24, name=\"gru1\")", w3, 1);
  test_recurrent("rnn(24, layers=2, dropout=0.2, name=\"rnn\")", w3, 1);
  test_recurrent("gru(8, bidirectional=true, name=\"bi\")", w3, 0);
  test_errors(w1);
  unlink(w1), unlink(w2), unlink(w3);
  rmdir(dir);
  return TEST_REPORT();
}
