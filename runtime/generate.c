/* generate.c -- lathe_generate: text generation from a sequence model with
 * the key/value-cache decode program of passes/decode.c, or by recomputing
 * the whole context each token where the model has no decode form (and as
 * the reference the tests compare the cache against). Both paths share the
 * context rules (a sliding window of at most T tokens) and the sampler, so
 * they produce the same tokens. See lathe.h for the contract. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "passes/decode.h"
#include "passes/optimizer.h"
#include "runtime/data.h"
#include "runtime/program.h"
#include "codegen/cuda/cu_exec.h" /* CU_SAMPLE_MAX_K */
#include "rt/lathe_rt.h"         /* lathe_rt_sample: the sampler */

#define GEN_IN_DRAW "__draw" /* the device sampler's draw (i32[2], rt/rt_sample.c) */

typedef struct {
  lathe_program *full;   /* the model at batch 1: loads the weights; the recompute path */
  lathe_program *step;   /* the decode-step program; NULL when recomputing */
  const char *in_name, *out_name;
  int64_t T, V;
  int *ctx;              /* the context: at most T tokens */
  int64_t n;
  float *logits;         /* [V]: the next token's logits once computed */
  int *state_of;         /* per step output: the parameter its value goes back to, -1 = none */
  int64_t *row_of;       /* per step output: > 0 when it is kv_write(that parameter, row, pos): the row's width */
  float **own;           /* per step parameter: its own buffer while bound to a kv_write output's (bind_caches) */
  int quant;             /* the weights file's quantization (lathe_quant) */
  int text;              /* V is a text vocabulary (96 characters, 256 bytes) */
  int dev_token;         /* --backend cuda: the step's output that is the token (argmax or sample_token), else -1 */
  int dev_logits;        /* and the step's logits output, kept on the device */
  int dev_draw;          /* the device samples: 1 (each step takes the next draw as GEN_IN_DRAW) */
  int next_tok;          /* that token after a step */
  ir_rng rng;            /* the sampler's stream: one draw per sampled token, host or device */
} gen;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- building the programs ---- */

/* Lower m at batch 1: every symbolic dimension the caller left unbound is
 * bound to 1 for this call only. */
static lathe_program *lower_batch1(lathe_model *m, lathe_backend b, int quant, int precision, lathe_error *err) {
  int ns = fe_num_syms(m->fe);
  int64_t *saved = malloc(((size_t)ns + 1) * sizeof *saved);
  if (!saved) { api_fail(err, LATHE_ENOMEM, "out of memory"); return NULL; }
  memcpy(saved, m->vals, (size_t)ns * sizeof *saved);
  for (int i = 0; i < ns; i++)
    if (!m->vals[i]) m->vals[i] = 1;
  lathe_options o = {.backend = b, .quant = quant, .precision = precision};
  lathe_program *p = api_program_lower(m, &o, err);
  memcpy(m->vals, saved, (size_t)ns * sizeof *saved);
  free(saved);
  return p;
}

/* The token input (the one non-target input, i32[1, T]) and the logits
 * (the first output, [1, T, V]: V a text vocabulary, 96 or 256, or any
 * other, a tokenizer's such as GPT-2's 50257, whose prompt bytes are the
 * token ids). */
static int find_io(gen *s, int *input, lathe_error *err) {
  const ir_graph *g = &s->full->g;
  *input = -1;
  for (int i = 0; i < g->ninputs; i++) {
    if (g->inputs[i].is_target) continue;
    if (*input >= 0) return api_fail(err, LATHE_EUSER, "generate: model '%s' has more than one input", g->model_name);
    *input = i;
  }
  const ir_input *in = *input >= 0 ? &g->inputs[*input] : NULL;
  if (!in || in->shape.rank != 2 || !ir_dtype_is_int(in->dtype) || in->dtype == IR_BOOL)
    return api_fail(err, LATHE_EUSER, "generate: model '%s' needs a token-sequence input i32[batch, T]",
                    g->model_name);
  const ir_node *o = g->noutputs ? &g->nodes[g->outputs[0].node] : NULL;
  if (!o || o->shape.rank != 3 || o->shape.d[1] != in->shape.d[1] || !ir_dtype_is_float(o->dtype))
    return api_fail(err, LATHE_EUSER, "generate: model '%s' needs logits [batch, T, vocab] as its first output",
                    g->model_name);
  s->T = in->shape.d[1], s->V = o->shape.d[2];
  s->text = s->V == 96 || s->V == 256;
  if (s->V < 2 || s->V > INT32_MAX)
    return api_fail(err, LATHE_EUSER, "generate: the logits have %lld classes; a vocabulary needs 2 to 2^31-1",
                    (long long)s->V);
  if (s->T < 2) return api_fail(err, LATHE_EUSER, "generate: the sequence length T must be at least 2");
  s->in_name = in->name, s->out_name = g->outputs[0].name;
  return 0;
}

/* The width of the row a step writes into its cache when output node o is
 * kv_write(parameter k, row, pos) of an f32 cache [T, d]: the new cache is
 * the old one but for row pos, so only that row needs to go back (a
 * 32 KB copy per cache and token became 512 bytes); else 0. */
static int64_t kv_row(const ir_graph *g, int o, int k) {
  const ir_node *n = &g->nodes[o];
  if (n->op != IR_KV_WRITE || n->nin < 1 || n->in[0] != g->params[k].node || n->dtype != IR_F32 || n->shape.rank != 2)
    return 0;
  return n->shape.d[1];
}

/* The step program's weights are the full program's, found by name; its
 * state (the caches) starts at zero. */
static int share_weights(gen *s, lathe_error *err) {
  lathe_program *p = s->step;
  if (api_alloc_params(p, err) || api_fill_params(p, s->full, NULL, err)) return -1;
  p->weights_set = 1;
  api_params_changed(p);
  s->state_of = calloc((size_t)p->g.noutputs + 1, sizeof *s->state_of);
  s->row_of = calloc((size_t)p->g.noutputs + 1, sizeof *s->row_of);
  if (!s->state_of || !s->row_of) return api_fail(err, LATHE_ENOMEM, "out of memory");
  size_t np = strlen(OPT_NEW_PREFIX);
  for (int i = 0; i < p->g.noutputs; i++) {
    const char *nm = p->g.outputs[i].name;
    s->state_of[i] = strncmp(nm, OPT_NEW_PREFIX, np) ? -1 : ir_find_param(&p->g, nm + np);
    s->row_of[i] = s->state_of[i] >= 0 ? kv_row(&p->g, p->g.outputs[i].node, s->state_of[i]) : 0;
    /* --backend cuda: the caches never leave the device (cu_exec_feedback after each step) */
    if (p->cux && s->state_of[i] >= 0) cu_exec_keep_output(p->cux, i, 1);
  }
  return 0;
}

/* how many node inputs read node v */
static int readers(const ir_graph *g, int v) {
  int r = 0;
  for (int i = 0; i < g->nnodes; i++)
    for (int j = 0; j < g->nodes[i].nin; j++) r += g->nodes[i].in[j] == v;
  return r;
}

/* On the LLVM backend each cache that a kv_write output replaces (its only
 * reader: nothing else may see the new row early) is bound
 * to that output's buffer: the step reads and writes the same memory, so
 * kv_write stores only its new row (cg_decode.c) and nothing goes back
 * after the step (step: o == c). The parameter's own buffer is kept in
 * s->own and returned before the program is freed (gen_free). */
static int bind_caches(gen *s, lathe_error *err) {
  lathe_program *p = s->step;
  if (!p->cg || p->cux) return 0;
  s->own = calloc((size_t)p->g.nparams + 1, sizeof *s->own);
  if (!s->own) return api_fail(err, LATHE_ENOMEM, "out of memory");
  for (int i = 0; i < p->g.noutputs; i++) {
    int k = s->state_of[i];
    if (k < 0 || s->row_of[i] <= 0 || s->own[k] || readers(&p->g, p->g.params[k].node) != 1) continue;
    float *o = (float *)api_output_data(p, i);
    memcpy(o, p->params[k], (size_t)ir_numel(&p->g.params[k].shape) * sizeof(float));
    s->own[k] = p->params[k];
    p->params[k] = o;
  }
  return 0;
}

/* Whether the device can sample (cu_render_sample.c): any top-k of a text
 * vocabulary, a top-k up to CU_SAMPLE_MAX_K of a larger one. */
static int device_samples(const gen *s, const lathe_generate_options *o) {
  return s->V <= 256 || (o->top_k > 0 && o->top_k <= CU_SAMPLE_MAX_K);
}

/* --backend cuda: the decode step also gives the next token as an output,
 * so it is picked on the device and only it comes back, not V logits a
 * token (GPT-2's 50257: 200 KB); the logits stay on the device. Greedy:
 * the argmax of the logits (a block-wide first maximum, cu_render_misc.c).
 * With a temperature: sample_token (cu_render_sample.c) with the draw the
 * host's sampler would use as an input (GEN_IN_DRAW, set before each
 * step), so the stream and the tokens are the host's. */
static int device_argmax(gen *s, ir_graph *dg, const lathe_generate_options *o) {
  s->dev_token = s->dev_logits = -1;
  s->dev_draw = 0;
  if (o->backend != LATHE_BACKEND_CUDA || (o->temperature != 0 && !device_samples(s, o))) return 0;
  for (int i = 0; i < dg->noutputs && s->dev_logits < 0; i++) /* the step's outputs: the caches, the logits */
    if (dg->outputs[i].name && s->out_name && !strcmp(dg->outputs[i].name, s->out_name)) s->dev_logits = i;
  if (s->dev_logits < 0) return 0;
  ir_attr a;
  memset(&a, 0, sizeof a);
  int logits = dg->outputs[s->dev_logits].node;
  const ir_node *lg = &dg->nodes[logits];
  if (lg->shape.rank < 1 || lg->shape.d[lg->shape.rank - 1] != s->V || ir_numel(&lg->shape) != s->V) return 0;
  a.axis = lg->shape.rank - 1; /* the step's logits: [1, V] */
  char msg[160];
  int id;
  if (o->temperature == 0) id = ir_add(dg, IR_ARGMAX, &logits, 1, &a, lg->loc, msg, sizeof msg);
  else {
    ir_shape two = {.rank = 1, .d = {2}};
    int in[2] = {logits, ir_add_input(dg, GEN_IN_DRAW, IR_I32, &two, 0, lg->loc)};
    a.axis = 0, a.f = o->temperature, a.k = o->top_k;
    id = in[1] < 0 ? -1 : ir_add(dg, IR_SAMPLE_TOKEN, in, 2, &a, lg->loc, msg, sizeof msg);
    s->dev_draw = id >= 0;
  }
  if (id < 0) return 0; /* the host samples as on the other backends */
  ir_add_output(dg, o->temperature == 0 ? "lathe.next_token" : "lathe.sampled_token", id);
  s->dev_token = dg->noutputs - 1;
  return 0;
}

/* Compile the decode program; a model without a decode form leaves
 * s->step NULL and the reason in note. */
static int build_step(gen *s, lathe_model *m, const lathe_generate_options *o, int input,
                      lathe_generate_result *r, lathe_error *err) {
  lathe_program *p = lower_batch1(m, o->backend, s->quant, o->precision, err);
  if (!p) return -1;
  ir_graph dg;
  char msg[180];
  if (dec_build(&p->g, input, 0, &p->A, &dg, msg, sizeof msg)) {
    snprintf(r->note, sizeof r->note, "no key/value-cache form (%.180s); recomputing the context every token", msg);
    lathe_program_free(p);
    return 0;
  }
  device_argmax(s, &dg, o);
  p->g = dg;
  p->g.quant = s->quant;
  if (api_program_finish(p, err)) return -1;
  s->step = p;
  if (share_weights(s, err) || bind_caches(s, err)) return -1;
  if (s->dev_token >= 0) cu_exec_keep_output(p->cux, s->dev_logits, 1); /* the logits stay on the device */
  return 0;
}

static int build(gen *s, lathe_model *m, const lathe_generate_options *o, lathe_generate_result *r,
                 lathe_error *err) {
  int input;
  if (lathe_weights_quant(o->weights, &s->quant, err)) return -1;
  s->full = lower_batch1(m, o->backend, s->quant, o->precision, err);
  if (!s->full) return -1;
  if (find_io(s, &input, err)) return -1;
  /* The decode graph is built from the lowered graph before the full
   * program compiles, so a model rejected here costs no compile. */
  if (api_program_finish(s->full, err)) { s->full = NULL; return -1; }
  if (lathe_weights_load(s->full, o->weights, err)) return -1;
  if (!o->recompute && build_step(s, m, o, input, r, err)) return -1;
  if (o->recompute) snprintf(r->note, sizeof r->note, "recomputing the context every token (asked for)");
  s->ctx = calloc((size_t)s->T + 1, sizeof *s->ctx);
  s->logits = calloc((size_t)s->V + 1, sizeof *s->logits);
  if (!s->ctx || !s->logits) return api_fail(err, LATHE_ENOMEM, "out of memory");
  return 0;
}

static void gen_free(gen *s) {
  for (int k = 0; s->own && k < s->step->g.nparams; k++) /* each buffer back to its owner */
    if (s->own[k]) s->step->params[k] = s->own[k];
  lathe_program_free(s->full);
  lathe_program_free(s->step);
  free(s->ctx), free(s->logits), free(s->state_of), free(s->row_of), free(s->own);
}

/* ---- running ---- */

static int take_logits(gen *s, lathe_program *p, int64_t row, lathe_error *err) {
  lathe_tensor t = {0};
  if (lathe_get_output(p, s->out_name, &t, err)) return -1;
  memcpy(s->logits, (const float *)t.data + row * s->V, (size_t)s->V * sizeof(float));
  lathe_tensor_free(&t);
  return 0;
}

/* The device's token (device_argmax). */
static int take_token(gen *s, lathe_program *p, lathe_error *err) {
  lathe_tensor t = {0};
  if (lathe_get_output(p, p->g.outputs[s->dev_token].name, &t, err)) return -1;
  s->next_tok = t.dtype == LATHE_I64 ? (int)((const int64_t *)t.data)[0] : ((const int32_t *)t.data)[0];
  lathe_tensor_free(&t);
  if (s->next_tok < 0 || s->next_tok >= s->V)
    return api_fail(err, LATHE_EUSER, "generate: the device gave token %d of %lld", s->next_tok,
                    (long long)s->V);
  return 0;
}

/* Run the step program on token tok at position pos; copy the caches back. */
static int step(gen *s, int tok, int64_t pos, lathe_error *err) {
  lathe_program *p = s->step;
  int32_t tv = tok, pv = (int32_t)pos;
  lathe_tensor ti = {.dtype = LATHE_I32, .rank = 2, .shape = {1, 1}, .data = &tv};
  lathe_tensor pi = {.dtype = LATHE_I32, .rank = 0, .data = &pv};
  /* the draw the next sampled token takes, not taken yet: a step whose
   * token goes unused (the prompt's, a refill's) leaves the stream as is */
  ir_rng peek = s->rng;
  int32_t draw[2];
  lathe_rt_draw_split(ir_rng_uniform(&peek), draw);
  lathe_tensor di = {.dtype = LATHE_I32, .rank = 1, .shape = {2}, .data = draw};
  if (lathe_set_input(p, s->in_name, &ti, err) || lathe_set_input(p, DEC_IN_POS, &pi, err) ||
      (s->dev_draw && lathe_set_input(p, GEN_IN_DRAW, &di, err)) || lathe_run(p, err))
    return -1;
  for (int i = 0; i < p->g.noutputs; i++) {
    int k = s->state_of[i];
    if (k < 0) continue;
    if (p->cux) { /* the new cache becomes the cache on the device */
      char msg[512];
      if (cu_exec_feedback(p->cux, i, k, msg, sizeof msg)) return api_fail(err, LATHE_EUSER, "%s", msg);
      continue;
    }
    if (p->cg && p->g.nodes[p->g.outputs[i].node].dtype == IR_F32) { /* the output where it is */
      const float *o = api_output_data(p, i);
      float *c = p->params[k];
      int64_t d = s->row_of[i], n = ir_numel(&p->g.params[k].shape);
      if (o == c) continue;
      if (d > 0 && (pos + 1) * d <= n) memcpy(c + pos * d, o + pos * d, (size_t)d * sizeof(float));
      else memcpy(c, o, (size_t)n * sizeof(float));
      continue;
    }
    lathe_tensor t = {0};
    if (lathe_get_output(p, p->g.outputs[i].name, &t, err)) return -1;
    memcpy(p->params[k], t.data, (size_t)ir_numel(&p->g.params[k].shape) * sizeof(float));
    lathe_tensor_free(&t);
  }
  if (s->dev_token >= 0) return take_token(s, p, err);
  return take_logits(s, p, 0, err);
}

/* The full program on the context (zeros after it: causal models never
 * look at them), the logits of its last position. */
static int recompute(gen *s, lathe_error *err) {
  int32_t *buf = calloc((size_t)s->T, sizeof *buf);
  if (!buf) return api_fail(err, LATHE_ENOMEM, "out of memory");
  for (int64_t i = 0; i < s->n; i++) buf[i] = s->ctx[i];
  lathe_tensor t = {.dtype = LATHE_I32, .rank = 2, .shape = {1, s->T}, .data = buf};
  int rc = lathe_set_input(s->full, s->in_name, &t, err) || lathe_run(s->full, err) ||
           take_logits(s, s->full, s->n - 1, err);
  free(buf);
  return rc ? -1 : 0;
}

/* Append a token to the context. A full context keeps its last T/2 tokens
 * (the cache is refilled from them); with a cache, the new token's logits
 * are computed now, else when they are needed (next_logits). */
static int push(gen *s, int tok, lathe_error *err) {
  if (s->n == s->T) {
    int64_t keep = s->T / 2;
    memmove(s->ctx, s->ctx + s->n - keep, (size_t)keep * sizeof *s->ctx);
    s->n = keep;
    for (int64_t i = 0; s->step && i < keep; i++)
      if (step(s, s->ctx[i], i, err)) return -1;
  }
  s->ctx[s->n++] = tok;
  return s->step ? step(s, tok, s->n - 1, err) : 0;
}

static int next_logits(gen *s, lathe_error *err) { return s->step ? 0 : recompute(s, err); }

/* The host's token (rt/rt_sample.c, also the device sampler's reference):
 * greedy takes no draw, a temperature one. */
static int sample(gen *s, const lathe_generate_options *o) {
  double u = o->temperature == 0 ? 0 : ir_rng_uniform(&s->rng);
  return lathe_rt_sample(s->logits, s->V, o->temperature, o->top_k, u);
}

static int check_options(const lathe_generate_options *o, lathe_error *err) {
  if (!o || !o->weights) return api_fail(err, LATHE_EUSER, "generate: no weights: give a safetensors file");
  if (api_check_backend(err, "lathe_generate", o->backend)) return LATHE_EUSER;
  if (o->precision == LATHE_PRECISION_BF16 && o->backend == LATHE_BACKEND_LLVM)
    return api_fail(err, LATHE_EUSER, "--precision bf16 is the CUDA backend's (--backend cuda); generate computes in f32 "
                    "on the others");
  if (!(o->temperature >= 0) || isinf(o->temperature))
    return api_fail(err, LATHE_EUSER, "generate: the temperature must be a finite number >= 0, got %g",
                    o->temperature);
  if (o->top_k < 0) return api_fail(err, LATHE_EUSER, "generate: top-k must be >= 0, got %d", o->top_k);
  if (o->tokens < 0) return api_fail(err, LATHE_EUSER, "generate: the token count must be >= 0");
  return 0;
}

/* A prompt byte's token: text's rule, or (another vocabulary) the byte as
 * the id; -1: dropped. */
static int prompt_token(const gen *s, int c) {
  if (s->text) return rt_text_token(c, (int)s->V);
  return c < s->V ? c : -1;
}

static int run(gen *s, const lathe_generate_options *o, lathe_generate_result *r, lathe_error *err) {
  double t0 = now_s();
  ir_rng_seed(&s->rng, o->seed, 0x67656E); /* stream "gen" */
  const char *prompt = o->prompt ? o->prompt : "";
  for (const char *c = prompt; *c; c++) {
    int tok = prompt_token(s, (unsigned char)*c);
    if (tok < 0) { /* the text-data rule: other characters are dropped; the caller is told which */
      if (r->prompt_dropped++ == 0) r->first_dropped = c - prompt;
      continue;
    }
    if (push(s, tok, err)) return -1;
    r->prompt_tokens++;
  }
  if (r->prompt_tokens == 0 && push(s, s->text ? rt_text_token('\n', (int)s->V) : 0, err)) return -1;
  double t1 = now_s();
  r->prefill_seconds = t1 - t0;
  for (int64_t i = 0; i < o->tokens; i++) {
    if (next_logits(s, err)) return -1;
    int tok = s->step && s->dev_token >= 0 ? s->next_tok : sample(s, o);
    if (s->step && s->dev_draw) (void)ir_rng_uniform(&s->rng); /* the draw the device took */
    r->device_token = s->step && s->dev_token >= 0;
    r->generated++;
    if (o->on_token && o->on_token(o->user, tok, s->text ? rt_text_char(tok, (int)s->V) : -1)) break;
    if (i + 1 < o->tokens && push(s, tok, err)) return -1;
  }
  r->seconds = now_s() - t1;
  r->tokens_per_s = r->seconds > 0 ? (double)r->generated / r->seconds : 0;
  return 0;
}

/* The decode-step program alone, as lathe_generate compiles it (batch 1,
 * the caches as state): for lathe check --generate, which renders and
 * compiles its kernels for a GPU without running it. */
lathe_program *lathe_compile_decode(lathe_model *m, const lathe_options *opt, lathe_error *err) {
  if (!m) { api_null(err, "lathe_compile_decode", "the model"); return NULL; }
  if (api_check_options(err, "lathe_compile_decode", opt)) return NULL;
  lathe_options o = {0};
  if (opt) o = *opt;
  gen s = {.dev_token = -1};
  int input;
  s.full = lower_batch1(m, o.backend, o.quant, o.precision, err);
  if (!s.full) return NULL;
  ir_graph dg;
  char msg[180];
  if (find_io(&s, &input, err)) {
    lathe_program_free(s.full);
    return NULL;
  }
  if (dec_build(&s.full->g, input, 0, &s.full->A, &dg, msg, sizeof msg)) {
    api_fail(err, LATHE_EUSER, "model '%s' has no key/value-cache form (%s)", s.full->g.model_name, msg);
    lathe_program_free(s.full);
    return NULL;
  }
  /* greedy generation's step on --backend cuda, with the device's argmax,
   * and beside it the device's sampler (temperature 1, top-k 40, the draw an
   * input) (lathe check --generate compiles on the interpreter and renders
   * this program for the GPU: both token kernels) */
  lathe_generate_options greedy = {.backend = LATHE_BACKEND_CUDA};
  lathe_generate_options sampled = {.backend = LATHE_BACKEND_CUDA, .temperature = 1.0, .top_k = 40};
  device_argmax(&s, &dg, &greedy);
  device_argmax(&s, &dg, &sampled);
  s.full->g = dg;
  s.full->g.quant = o.quant;
  return api_program_finish(s.full, err) ? NULL : s.full;
}

int lathe_generate(lathe_model *m, const lathe_generate_options *o, lathe_generate_result *r, lathe_error *err) {
  lathe_generate_result local;
  if (!r) r = &local;
  memset(r, 0, sizeof *r);
  r->first_dropped = -1;
  if (!m) return api_null(err, "lathe_generate", "the model");
  if (check_options(o, err)) return err ? err->code : LATHE_EUSER;
  gen s = {.dev_token = -1};
  int rc = build(&s, m, o, r, err) || run(&s, o, r, err);
  r->cached = s.step != NULL;
  gen_free(&s);
  return rc ? (err && err->code ? err->code : LATHE_EUSER) : 0;
}
