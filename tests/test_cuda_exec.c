/* test_cuda_exec.c: the CUDA backend's rendered kernels on the CPU executor
 * (tests/cuexec/). Every example model's forward pass and training step is
 * planned, rendered and compiled for sm_80 (codegen/cuda: cu_compile, NVRTC
 * where the toolkit is), and every module's CUDA C is loaded on the executor
 * (compiled for the host with cx_shim.h) with each of its kernels found.
 *
 * Kind coverage: each plan kernel kind (plan/plan.h) must appear in some
 * loaded case, else the test fails (a kind only refused fails too). Inline
 * models plan the kinds and ops the examples do not reach.
 *
 * Then every program runs on the executor, launch by launch as the
 * rendered program lists them, against the interpreter (IR_INTERP_F32) on
 * the same inputs and weights, twice: kernel by kernel (each plan kernel's
 * inputs uploaded from the interpreter's values, its results compared: a
 * wrong kernel is named) and whole (only inputs, weights and constants
 * uploaded, every output compared at the end: the CUDA plan's buffers and
 * in-place writes). A training step's kernels are its gradients and its
 * optimizer update, so both runs check those too; the whole training step
 * runs with SGD in place of the model's optimizer (sgd_text says why).
 *
 * Not yet here: the product's CUDA runtime (cu_set_driver_factory, `lathe
 * train --backend cuda`) is not on main; this test drives the rendered
 * program itself, as that runtime would, for one step (not several: the
 * step's new weights are not fed back). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/cuda/cu.h"
#include "codegen/cuda/cu_render.h"
#include "codegen/llvm/cg.h"
#include "cx.h"
#include "lathe.h"
#include "runtime/program.h"
#include "test.h"

/* The char-GPT's residual stream without attention: embeddings, residual
 * adds feeding layernorms and their gradients, while attention is not
 * rendered (the kinds add+layernorm, layernorm_grad+add, move). */
static const char resid_src[] =
    "model resid\n"
    "const VOCAB = 20, T = 8, D = 32\n"
    "input  tokens : i32[batch, T]\n"
    "target next   : i32[batch, T]\n"
    "def block(x) {\n"
    "  a = dense(x, D, name=\"mix\") |> layernorm(name=\"ln1\")\n"
    "  x = x + a\n"
    "  m = layernorm(x, name=\"ln2\") |> dense(4 * D, name=\"fc\") |> gelu\n"
    "  x = x + dense(m, D, name=\"proj\")\n"
    "  return x\n"
    "}\n"
    "pos = param([T, D], init=\"normal\", name=\"pos\")\n"
    "h = embedding(tokens, VOCAB, D, name=\"tok\") + pos\n"
    "h = repeat(2, block, h, name=\"h\")\n"
    "h = layernorm(h, name=\"ln_f\")\n"
    "logits = dense(h, VOCAB, name=\"head\")\n"
    "output logits\n"
    "loss = cross_entropy(logits, next)\n"
    "train {\n"
    "  optimizer = adamw(lr=1e-3, weight_decay=0.1)\n"
    "  clip_norm = 1.0\n"
    "  epochs = 1\n"
    "  batch = 4\n"
    "}\n";

/* A pooling layer behind a parameter, so that its gradient (kind other)
 * is planned without a convolution. */
static const char pool_src[] =
    "model pool\n"
    "input  x : f32[batch, 4, 8, 8]\n"
    "target y : i32[batch]\n"
    "s = param([4, 8, 8], init=\"normal\", name=\"s\")\n"
    "h = maxpool2d(x * s, 2) |> relu\n"
    "logits = dense(flatten(h), 10, name=\"out\")\n"
    "output logits\n"
    "loss = cross_entropy(logits, y)\n"
    "train {\n"
    "  optimizer = adam(lr=1e-3)\n"
    "  epochs = 1\n"
    "  batch = 4\n"
    "}\n";

/* conv1d with stride, padding, dilation and groups, and a depthwise conv2d:
 * their forward and both gradients (ir/conv.h's geometry) */
static const char conv_src[] =
    "model convs\n"
    "input  x : f32[batch, 4, 12]\n"
    "target y : i32[batch]\n"
    "h = conv1d(x, 6, kernel=3, stride=2, padding=2, dilation=2, groups=2, name=\"c\") |> relu\n"
    "h = conv2d(reshape(h, [batch, 6, 1, 6]), 6, kernel=1, groups=6, name=\"d\")\n"
    "logits = dense(flatten(h), 3, name=\"out\")\n"
    "loss = cross_entropy(logits, y)\n"
    "train {\n"
    "  optimizer = adam(lr=1e-2)\n"
    "  epochs = 1\n"
    "  batch = 4\n"
    "}\n";

/* The one-node kernels of cu_render_misc.c: the channel norms (their
 * training forms and gradients), dropout's mask, cumsum, gather, max along
 * an axis, one_hot, argmax, nll, kl_div and bce, and gradient noise (randn). */
static const char misc_src[] =
    "model misc\n"
    "input  x : f32[batch, 4, 6]\n"
    "input  ix : i32[batch, 4, 3]\n"
    "input  ids : i32[batch, 3]\n"
    "target y : i32[batch]\n"
    "target z : f32[batch, 5]\n"
    "h = batchnorm(x, name=\"bn\")\n"
    "h = groupnorm(h, 2, name=\"gn\")\n"
    "h = rmsnorm(h, name=\"rn\")\n"
    "h = dropout(h, 0.25)\n"
    "h = cumsum(h, 2)\n"
    "g = gather(h, 2, ix)\n"
    "m = max(g, 2)\n"
    "o = sum(one_hot(ids, 5), 1)\n"
    "logits = dense(concat([flatten(g), m], 1), 5, name=\"out\") + o\n"
    "lp = log_softmax(logits, 1)\n"
    "am = argmax(logits, 1)\n"
    "output logits\n"
    "output am\n"
    "loss = nll(lp, y) + kl_div(lp, softmax(z, 1)) + bce(logits, z)\n"
    "train {\n"
    "  optimizer = adam(lr=1e-2)\n"
    "  grad_noise = 0.01\n"
    "  epochs = 1\n"
    "  batch = 4\n"
    "}\n";

/* rnn and gru (lstm: examples/lstm.nn), forward and gradients */
static const char rnn_src[] =
    "model rnns\n"
    "input  x : f32[batch, 5, 3]\n"
    "target y : i32[batch]\n"
    "h = rnn(x, 8, name=\"r\")\n"
    "h = gru(h, 6, name=\"g\")\n"
    "logits = dense(flatten(h), 4, name=\"out\")\n"
    "output logits\n"
    "loss = cross_entropy(logits, y)\n"
    "train {\n"
    "  optimizer = adam(lr=1e-2)\n"
    "  epochs = 1\n"
    "  batch = 4\n"
    "}\n";

/* mha beyond examples/reverse.nn: rotary embeddings, grouped key/value
 * heads, a causal mask with rope */
static const char mha_src[] =
    "model mhas\n"
    "input  x : f32[batch, 6, 16]\n"
    "input  n : i32[batch]\n"
    "target y : i32[batch]\n"
    "h = x + attention(x, 4, rope=true, kv_heads=2, mask=n, name=\"a\")\n"
    "h = h + attention(h, 2, causal=true, rope=true, name=\"b\")\n"
    "logits = dense(flatten(h), 3, name=\"out\")\n"
    "output logits\n"
    "loss = cross_entropy(logits, y)\n"
    "train {\n"
    "  optimizer = adam(lr=1e-2)\n"
    "  epochs = 1\n"
    "  batch = 4\n"
    "}\n";

/* cross_entropy in every form the interpreter has: class weights, an
 * ignore_index (labels are drawn from 1..4, so index 2 is hit), label
 * smoothing, and their mixtures (forward and gradient) */
static const char ce_src[] =
    "model ces\n"
    "input  x : f32[batch, 3, 6]\n"
    "target y : i32[batch, 3]\n"
    "h = dense(x, 8, name=\"a\")\n"
    "p = dense(h, 5, name=\"p\")\n"
    "q = dense(h, 5, name=\"q\")\n"
    "output p\n"
    "loss = cross_entropy(p, y, weight=[0.5, 1, 2, 1.5, 0.25]) + cross_entropy(q, y, ignore_index=2)"
    " + cross_entropy(p, y, weight=[1, 0.5, 3, 1, 2], ignore_index=3, label_smoothing=0.1)"
    " + cross_entropy(q, y, label_smoothing=0.2)\n"
    "train {\n"
    "  optimizer = adam(lr=1e-2)\n"
    "  epochs = 1\n"
    "  batch = 4\n"
    "}\n";

static const struct {
  const char *path;
  const char *src; /* the model's text, when not a file */
  int64_t batch;
  int lim;         /* integer inputs in [1, lim) */
} ex[] = {
  {"examples/mlp.nn", NULL, 4, 10}, {"examples/cnn.nn", NULL, 4, 10}, {"examples/cnn_bn.nn", NULL, 4, 10},
  {"examples/gpt.nn", NULL, 2, 96}, {"examples/lstm.nn", NULL, 2, 96}, {"examples/reverse.nn", NULL, 2, 8},
  {"examples/seq_cnn.nn", NULL, 4, 4}, {"convs (inline)", conv_src, 2, 3},
  {"resid (inline)", resid_src, 2, 20}, {"pool (inline)", pool_src, 2, 10},
  {"misc (inline)", misc_src, 4, 4},      {"rnns (inline)", rnn_src, 3, 4},
  {"mhas (inline)", mha_src, 2, 3},      {"ces (inline)", ce_src, 4, 5},
};
enum { NEX = sizeof ex / sizeof ex[0] };

static cu_driver *D;
static int loaded_kind[PL_NKINDS], refused_kind[PL_NKINDS];

/* The model's text with its optimizer replaced by plain SGD and no
 * schedule (malloc'd): Adam's first step is g / (|g| + eps), which turns a
 * gradient's last-bit difference near zero into a step of up to 2 lr, so the
 * whole training step is compared with SGD (each Adam kernel is still
 * compared kernel by kernel on the model as written). */
static char *sgd_text(int e, size_t *len) {
  char *text = NULL;
  if (ex[e].src) {
    text = strdup(ex[e].src);
  } else {
    FILE *f = fopen(ex[e].path, "rb");
    if (f) {
      text = calloc(1, 1 << 16);
      if (text) text[fread(text, 1, (1 << 16) - 1, f)] = 0;
      fclose(f);
    }
  }
  char *out = text ? calloc(1, strlen(text) + 64) : NULL;
  size_t n = 0;
  for (char *line = text; out && line && *line;) {
    char *nl = strchr(line, '\n');
    size_t k = nl ? (size_t)(nl - line) + 1 : strlen(line);
    const char *t = line + strspn(line, " ");
    if (!strncmp(t, "optimizer", 9)) n += (size_t)sprintf(out + n, "  optimizer = sgd(lr=0.1)\n");
    else if (strncmp(t, "schedule", 8) != 0) memcpy(out + n, line, k), n += k;
    line += k;
  }
  free(text);
  *len = n;
  return out;
}

static lathe_program *build(int e, int train, int sgd) {
  lathe_error err = {0};
  lathe_program *p = NULL;
  size_t len = 0;
  char *text = sgd ? sgd_text(e, &len) : NULL;
  lathe_model *m = sgd      ? lathe_model_parse(ex[e].path, text ? text : "", len, &err)
                   : ex[e].src ? lathe_model_parse(ex[e].path, ex[e].src, strlen(ex[e].src), &err)
                             : lathe_model_load(ex[e].path, &err);
  free(text);
  if (m && lathe_model_bind(m, "batch", ex[e].batch, &err) == 0) {
    lathe_options o = {.backend = LATHE_BACKEND_INTERP};
    p = train ? lathe_compile_train(m, &o, &err) : lathe_compile(m, &o, &err);
  }
  CHECK_MSG(p != NULL, "%s: %s", ex[e].path, err.message ? err.message : "");
  lathe_error_clear(&err);
  lathe_model_free(m);
  return p;
}

/* The refused kind, from "kernel kN (KIND) at node ..." */
static void note_refusal(const char *msg) {
  const char *open = strstr(msg, " (");
  for (int k = 0; open && k < PL_NKINDS; k++) {
    const char *name = pl_kind_name((pl_kind)k);
    size_t n = strlen(name);
    if (!strncmp(open + 2, name, n) && open[2 + n] == ')') refused_kind[k] = 1;
  }
}

/* ---- the rendered program on the executor ---- */

static uint64_t rng = 88172645463325252ull;
static double urand(void) { /* [0, 1) */
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return (double)(rng >> 11) / 9007199254740992.0;
}

typedef struct {
  const cu_compiled *c;
  const ir_graph *g;
  cu_dptr arena, consts, status;
  cu_dptr *in, *par, *out; /* per input, parameter, output */
  void **fn;               /* per rendered function */
  double worst;            /* the largest scaled difference seen */
} rn;

static size_t rn_bytes(const ir_node *n) { return (size_t)ir_numel(&n->shape) * ir_dtype_size(n->dtype); }

/* Node i's device address (aliases followed), 0 when it has no buffer. */
static cu_dptr rn_addr(const rn *r, int i) {
  const pl_buf *b = &r->c->plan.buf[i];
  for (int hops = 0; b->kind == PL_BUF_ALIAS && hops < r->g->nnodes; hops++) b = &r->c->plan.buf[b->idx];
  switch (b->kind) {
  case PL_BUF_ARENA: return r->arena + (cu_dptr)b->off;
  case PL_BUF_CONST: return r->consts + (cu_dptr)b->off;
  case PL_BUF_INPUT: return r->in[b->idx];
  case PL_BUF_PARAM: return r->par[b->idx];
  case PL_BUF_OUTPUT: return r->out[b->idx];
  default: return 0;
  }
}

static cu_dptr rn_ref(const rn *r, const cu_ref *f) {
  if (f->node == CU_REF_ARENA) return r->arena + (cu_dptr)f->off;
  if (f->node == CU_REF_STATUS) return r->status + (cu_dptr)f->off;
  cu_dptr a = rn_addr(r, f->node);
  return a ? a + (cu_dptr)f->off : 0;
}

/* Node i's values into its buffer, at its dtype. */
static int rn_put(rn *r, int i, const double *v) {
  const ir_node *n = &r->g->nodes[i];
  cu_dptr at = rn_addr(r, i);
  int64_t cnt = ir_numel(&n->shape);
  size_t bytes = rn_bytes(n);
  if (!at || !v || bytes == 0) return 0;
  unsigned char *h = malloc(bytes);
  if (!h) return 1;
  for (int64_t e = 0; e < cnt; e++) switch (n->dtype) {
    case IR_F32: ((float *)h)[e] = (float)v[e]; break;
    case IR_I32: ((int32_t *)h)[e] = (int32_t)v[e]; break;
    case IR_I64: ((int64_t *)h)[e] = (int64_t)v[e]; break;
    default: h[e] = (unsigned char)v[e]; break;
    }
  int rc = D->htod(D, at, h, bytes);
  CHECK_MSG(rc == 0, "upload: %s", D->err);
  free(h);
  return rc;
}

/* Node i's buffer against the interpreter's values. */
static void rn_cmp(rn *r, int i, const double *want, const char *what) {
  const ir_node *n = &r->g->nodes[i];
  cu_dptr at = rn_addr(r, i);
  int64_t cnt = ir_numel(&n->shape);
  size_t bytes = rn_bytes(n);
  if (!at || !want || bytes == 0) return;
  unsigned char *h = malloc(bytes);
  if (!h || D->dtoh(D, h, at, bytes)) {
    CHECK_MSG(0, "download: %s", D->err);
    free(h);
    return;
  }
  double worst = 0;
  int64_t where = 0;
  for (int64_t e = 0; e < cnt; e++) {
    double got = n->dtype == IR_F32   ? ((float *)h)[e]
                 : n->dtype == IR_I32 ? ((int32_t *)h)[e]
                 : n->dtype == IR_I64 ? (double)((int64_t *)h)[e]
                                      : h[e];
    double d = isnan(got) != isnan(want[e]) ? INFINITY : isnan(got) ? 0 : fabs(got - want[e]) / (1 + fabs(want[e]));
    if (d > worst) worst = d, where = e;
  }
  free(h);
  if (worst > r->worst) r->worst = worst;
  char name[96];
  CHECK_MSG(worst <= 2e-4, "%s: %s (%s) differs from the interpreter by %.3g at element %lld", what,
            pl_tensor_name(r->g, i, name, sizeof name), ir_ops[n->op].name, worst, (long long)where);
}

static int rn_launch(rn *r, const cu_launch *l) {
  if (l->what == CU_L_ZERO) return D->memset0(D, rn_ref(r, &l->zero), (size_t)l->zero_bytes);
  if (l->what == CU_L_GEMM) {
    cu_gemm g = l->gemm;
    g.a = rn_ref(r, &l->ga), g.b = rn_ref(r, &l->gb), g.c = rn_ref(r, &l->gc);
    g.bias = g.epilogue != CU_EPI_NONE ? rn_ref(r, &l->gbias) : 0;
    return D->gemm(D, &g);
  }
  cu_dptr ptr[CU_MAXOPS], tab = 0;
  void *args[CU_MAXOPS];
  for (int i = 0; i < l->nops; i++) ptr[i] = rn_ref(r, &l->op[i]), args[i] = &ptr[i];
  if (l->ntab) { /* an update kernel's operand table (cu_run.c fills it once; here per launch) */
    uint64_t *h = malloc(sizeof *h * (size_t)l->ntab);
    int rc = !h || D->mem_alloc(D, sizeof *h * (size_t)l->ntab, &tab);
    for (int i = 0; !rc && i < l->ntab; i++) h[i] = rn_ref(r, &l->tab[i]);
    rc = rc || D->htod(D, tab, h, sizeof *h * (size_t)l->ntab);
    free(h);
    if (rc) return rc;
    ptr[0] = tab, args[0] = &ptr[0];
  }
  int rc = D->launch(D, r->fn[l->fn], l->grid[0], l->grid[1], l->grid[2], l->block[0], l->block[1], l->block[2],
                     l->shmem, args);
  if (tab) D->mem_free(D, tab);
  return rc;
}

/* Every launch; per_kernel: each plan kernel's inputs from vals before it,
 * its results compared after it; else only the outputs at the end. */
static void rn_run(rn *r, double **vals, int per_kernel, const char *what) {
  const cu_program *cp = &r->c->prog;
  const pl_plan *p = &r->c->plan;
  const ir_graph *g = r->g;
  for (int i = 0; i < g->nnodes; i++) /* leaves and constants */
    if (p->buf[i].kind == PL_BUF_CONST || g->nodes[i].op == IR_INPUT || g->nodes[i].op == IR_PARAM)
      if (rn_put(r, i, vals[i])) return;
  CHECK(D->memset0(D, r->status, 64) == 0);
  for (int l = 0; l < cp->nl; l++) {
    const cu_launch *la = &cp->l[l];
    const pl_kernel *k = &p->k[la->pk];
    int first = l == 0 || cp->l[l - 1].pk != la->pk, last = l == cp->nl - 1 || cp->l[l + 1].pk != la->pk;
    if (per_kernel && first)
      for (int j = 0; j < k->nin; j++)
        if (rn_put(r, k->in[j], vals[k->in[j]])) return;
    if (rn_launch(r, la)) {
      CHECK_MSG(0, "%s: plan kernel k%d (%s): %s", what, la->pk, pl_kind_name(k->kind), D->err);
      return;
    }
    if (per_kernel && last) {
      int status = 0;
      CHECK(D->dtoh(D, &status, r->status, sizeof status) == 0);
      CHECK_MSG(status == 0, "%s: plan kernel k%d set the status word to %d", what, la->pk, status);
      char kw[192];
      snprintf(kw, sizeof kw, "%s k%d (%s)", what, la->pk, pl_kind_name(k->kind));
      for (int j = 0; j < k->nout; j++) rn_cmp(r, k->out[j], vals[k->out[j]], kw);
    }
  }
  if (!per_kernel)
    for (int j = 0; j < g->noutputs; j++) rn_cmp(r, g->outputs[j].node, vals[g->outputs[j].node], what);
}

/* Inputs random (integers in [1, lim)), weights the program's seeded ones,
 * every other node the interpreter's; then both runs. */
enum { RN_PER_KERNEL = 1, RN_WHOLE = 2 };

static void run_case(int e, lathe_program *p, const cu_compiled *c, const char *what, int modes) {
  const ir_graph *g = &p->g;
  lathe_error err = {0};
  CHECK_MSG(lathe_weights_init(p, 7, &err) == 0, "%s", err.message ? err.message : "");
  lathe_error_clear(&err);
  double **vals = calloc((size_t)g->nnodes + 1, sizeof *vals);
  rn r = {.c = c, .g = g};
  r.in = calloc((size_t)g->ninputs + 1, sizeof *r.in);
  r.par = calloc((size_t)g->nparams + 1, sizeof *r.par);
  r.out = calloc((size_t)g->noutputs + 1, sizeof *r.out);
  r.fn = calloc((size_t)c->prog.nfn + 1, sizeof *r.fn);
  char msg[1024];
  int rc = !vals || !r.in || !r.par || !r.out || !r.fn;
  for (int i = 0; i < g->ninputs && !rc; i++) {
    const ir_node *n = &g->nodes[g->inputs[i].node];
    int64_t cnt = ir_numel(&n->shape);
    double *v = vals[g->inputs[i].node] = malloc(sizeof(double) * (size_t)(cnt + 1));
    for (int64_t k = 0; v && k < cnt; k++)
      v[k] = n->dtype == IR_F32 ? (float)(0.1 + urand()) : 1 + (int64_t)(urand() * (ex[e].lim - 1));
    rc = !v;
  }
  for (int i = 0; i < g->nparams && !rc; i++) {
    int64_t cnt = ir_numel(&g->params[i].shape);
    double *v = vals[g->params[i].node] = malloc(sizeof(double) * (size_t)(cnt + 1));
    for (int64_t k = 0; v && k < cnt; k++) v[k] = p->params[i][k];
    rc = !v;
  }
  if (!rc && ir_interp(g, IR_INTERP_F32, vals, msg, sizeof msg) != 0) {
    CHECK_MSG(0, "%s %s: the interpreter: %s", ex[e].path, what, msg);
    rc = 1;
  }
  /* device memory: the arena, the constants, the status word, one buffer per leaf and output */
  if (!rc)
    rc = D->mem_alloc(D, (size_t)c->plan.arena_bytes + 16, &r.arena) ||
         D->mem_alloc(D, (size_t)c->plan.const_bytes + 16, &r.consts) || D->mem_alloc(D, 64, &r.status);
  for (int i = 0; i < g->ninputs && !rc; i++)
    rc = D->mem_alloc(D, rn_bytes(&g->nodes[g->inputs[i].node]) + 16, &r.in[i]);
  for (int i = 0; i < g->nparams && !rc; i++)
    rc = D->mem_alloc(D, rn_bytes(&g->nodes[g->params[i].node]) + 16, &r.par[i]);
  for (int i = 0; i < g->noutputs && !rc; i++)
    rc = D->mem_alloc(D, rn_bytes(&g->nodes[g->outputs[i].node]) + 16, &r.out[i]);
  for (int m = 0; m < c->mods.nmod && !rc; m++) {
    void *mod = NULL;
    rc = D->module_load(D, c->mods.src[m], c->mods.img[m].image, c->mods.img[m].len, &mod);
    for (int f = 0; f < c->prog.nfn && !rc; f++)
      if (c->mods.mod_of[f] == m) rc = D->get_function(D, mod, c->prog.fn[f].name, &r.fn[f]);
  }
  CHECK_MSG(rc == 0, "%s %s: %s", ex[e].path, what, D->err);
  if (rc == 0) {
    long before = cx_launch_count(D);
    int fails = test_fail_;
    char w[160];
    char per[32] = "-", whole[32] = "-";
    if (modes & RN_PER_KERNEL) {
      snprintf(w, sizeof w, "%s %s, kernel by kernel", ex[e].path, what);
      rn_run(&r, vals, 1, w);
      snprintf(per, sizeof per, "%.2e", r.worst);
    }
    if (modes & RN_WHOLE) {
      r.worst = 0;
      snprintf(w, sizeof w, "%s %s, whole", ex[e].path, what);
      rn_run(&r, vals, 0, w);
      snprintf(whole, sizeof whole, "%.2e", r.worst);
    }
    printf("ran              %-20s %-19s %4ld launches; worst scaled difference from the interpreter: "
           "kernel by kernel %s, whole %s%s\n", ex[e].path, what, cx_launch_count(D) - before, per, whole,
           test_fail_ > fails ? " (FAILED)" : "");
  }
  D->mem_free(D, r.arena), D->mem_free(D, r.consts), D->mem_free(D, r.status);
  for (int i = 0; r.in && i < g->ninputs; i++) D->mem_free(D, r.in[i]);
  for (int i = 0; r.par && i < g->nparams; i++) D->mem_free(D, r.par[i]);
  for (int i = 0; r.out && i < g->noutputs; i++) D->mem_free(D, r.out[i]);
  free(r.in), free(r.par), free(r.out), free(r.fn);
  if (vals) {
    for (int i = 0; i < g->ninputs; i++) free(vals[g->inputs[i].node]), vals[g->inputs[i].node] = NULL;
    for (int i = 0; i < g->nparams; i++) free(vals[g->params[i].node]), vals[g->params[i].node] = NULL;
    ir_interp_release(g, vals);
    free(vals);
  }
}

static void load_case(int e, int train) {
  lathe_program *p = build(e, train, 0);
  if (!p) return;
  static char msg[8192];
  cu_compiled c;
  const char *what = train ? "training step" : "forward";
  if (cu_compile(&p->g, "sm_80", &c, msg, sizeof msg)) {
    printf("NOT RENDERED YET %-20s %-13s %s\n", ex[e].path, what, msg);
    note_refusal(msg);
    lathe_program_free(p);
    return;
  }
  int found = 0, nfail = 0;
  for (int m = 0; m < c.mods.nmod; m++) {
    void *mod = NULL;
    int rc = D->module_load(D, c.mods.src[m], c.mods.img[m].image, c.mods.img[m].len, &mod);
    CHECK_MSG(rc == 0, "%s %s module %d: %s", ex[e].path, what, m, D->err);
    if (rc) {
      nfail++;
      continue;
    }
    for (int f = 0; f < c.prog.nfn; f++) {
      if (c.mods.mod_of[f] != m) continue;
      void *fn = NULL;
      rc = D->get_function(D, mod, c.prog.fn[f].name, &fn);
      CHECK_MSG(rc == 0, "%s %s: %s", ex[e].path, what, D->err);
      if (rc == 0) found++, loaded_kind[c.plan.k[c.prog.fn[f].pk].kind] = 1;
    }
  }
  for (int l = 0; l < c.prog.nl; l++)
    if (c.prog.l[l].what == CU_L_GEMM) loaded_kind[c.plan.k[c.prog.l[l].pk].kind] = 1;
  CHECK(found == c.prog.nfn);
  printf("loaded           %-20s %-13s %d modules, %d of %d kernels%s\n", ex[e].path, what, c.mods.nmod, found,
         c.prog.nfn, nfail ? " (some modules failed)" : "");
  if (nfail == 0) run_case(e, p, &c, what, train ? RN_PER_KERNEL : RN_PER_KERNEL | RN_WHOLE);
  cu_compiled_free(&c);
  lathe_program_free(p);
  if (!train || nfail) return;
  if (!(p = build(e, 1, 1))) return;
  if (cu_compile(&p->g, "sm_80", &c, msg, sizeof msg)) {
    CHECK_MSG(0, "%s: the SGD training step is not rendered: %s", ex[e].path, msg);
  } else {
    run_case(e, p, &c, "training step (sgd)", RN_WHOLE);
    cu_compiled_free(&c);
  }
  lathe_program_free(p);
}

/* A kernel NVRTC rejects: the error names the kernel (not only the
 * module's line) and carries NVRTC's log. */
static void nvrtc_rejects(void) {
  static char good[] = "extern \"C\" __global__ void k0_good(float* a) { a[threadIdx.x] = 1.f; }\n";
  static char bad[] = "extern \"C\" __global__ void k1_bad(float* a) {\n  a[0] = undeclared_name;\n}\n";
  static char gname[] = "k0_good", bname[] = "k1_bad";
  cu_fn fn[2] = {{gname, good, 0}, {bname, bad, 3}};
  cu_program cp = {.nfn = 2, .capfn = 2, .fn = fn};
  cu_modules mods;
  static char msg[8192];
  int rc = cu_modules_build(&cp, "sm_80", 1, &mods, msg, sizeof msg);
  CHECK_MSG(rc != 0 && strstr(msg, "NVRTC rejected kernel k1_bad (plan kernel k3)") && strstr(msg, "undeclared_name"),
            "got %d: %s", rc, msg);
  if (!rc) cu_modules_free(&mods);
}

/* --precision bf16 keeps f32 master weights: in every example's training
 * step no parameter, parameter gradient, output (the new weights and the
 * optimizer's state are outputs) or input is stored as bf16, while the
 * activations are (some tensor is bf16 and the kernels take lt_bf16), each
 * in a half-sized arena block. */
/* The op-coverage audit (issue 14: every model the CPU trains and runs also
 * trains and runs on a GPU): every op of the IR table the CPU backend has a
 * kernel for has a CUDA renderer, except the ones listed here with the
 * reason, which the renderer refuses in one line ("OP has no CUDA kernel
 * yet", cu_render_by_op). An op that gains a renderer must leave the list,
 * so it only shrinks. */
static const struct { int op; const char *why; } not_rendered[] = {
  /* empty now: every op has a renderer. The sentinel (op -1, which no op
   * is) keeps the array non-empty, as C11 asks; an op added here again
   * goes before it. */
  {-1, NULL},
};
enum { NNOT = sizeof not_rendered / sizeof not_rendered[0] };

static void op_coverage(void) {
  int cpu = 0, cuda = 0, listed = 0;
  for (int op = 0; op < IR_NOPS; op++) {
    const char *why = NULL;
    for (int i = 0; i < NNOT; i++)
      if (not_rendered[i].op == op) why = not_rendered[i].why;
    int rendered = cu_op_rendered(op);
    CHECK_MSG(!(why && rendered), "op %s is rendered now: take it off test_cuda_exec's not_rendered list", ir_ops[op].name);
    if (!cg_op_has_kernel(op)) continue;
    cpu++, cuda += rendered, listed += why != NULL;
    CHECK_MSG(rendered || why, "op %s runs on the CPU backend but has no CUDA renderer (nor a reason in not_rendered)",
              ir_ops[op].name);
  }
  for (int i = 0; i < NNOT; i++)
    if (not_rendered[i].op >= 0)
      printf("op coverage      %-14s not rendered: %s\n", ir_ops[not_rendered[i].op].name, not_rendered[i].why);
  CHECK_MSG(cpu > 100, "only %d ops with a CPU kernel: the audit walks nothing", cpu);
  printf("op coverage      %d of %d ops with a CPU kernel have a CUDA renderer; %d listed as not yet\n", cuda, cpu, listed);
}

/* --precision bf16 in the kernels of packed f32 layouts (mha, mha_grad, the
 * recurrences and their gradients, the training attention): each one that
 * touches a bf16 tensor runs every product of its own on bf16 operands (f32
 * sums), and no function of the program widens a bf16 tensor into an f32
 * copy (the former cu_render_wide.c pass: `y[e] = (float)x[e]` from
 * lt_bf16 into float, its products then in f32). Returns how many such
 * kernels ran in bf16. */
static int bf16_direct(const char *path, const ir_graph *g, const cu_compiled *c) {
  static const int packed[] = {IR_MHA, IR_MHA_GRAD, IR_RNN, IR_LSTM, IR_GRU, IR_RNN_GRAD, IR_LSTM_GRAD, IR_GRU_GRAD,
                               IR_ATTENTION_SAVE, IR_ATTENTION_GRAD, IR_ATTENTION_GRAD_SAVED};
  int direct = 0;
  for (int f = 0; f < c->prog.nfn; f++)
    CHECK_MSG(!strstr(c->prog.fn[f].src, "const lt_bf16* __restrict__ x, float* __restrict__ y"),
              "%s: bf16 training step: function %s widens a bf16 tensor into an f32 copy", path, c->prog.fn[f].name);
  for (int q = 0; q < c->plan.nk; q++) {
    const pl_kernel *k = &c->plan.k[q];
    int op = g->nodes[k->head].op, is = 0, bf = c->bf16[k->node], f32_gemms = 0, gemms = 0;
    for (size_t i = 0; i < sizeof packed / sizeof packed[0]; i++) is |= op == packed[i];
    for (int j = 0; j < k->nin; j++) bf |= c->bf16[k->in[j]];
    if (!is || !bf) continue;
    for (int l = 0; l < c->prog.nl; l++)
      if (c->prog.l[l].pk == q && c->prog.l[l].what == CU_L_GEMM)
        gemms++, f32_gemms += c->prog.l[l].gemm.ab_type != CU_T_BF16;
    CHECK_MSG(gemms > 0 && f32_gemms == 0, "%s: kernel k%d (%s) touches bf16 but runs %d of its %d products in f32",
              path, q, ir_ops[op].name, f32_gemms, gemms);
    direct++;
  }
  return direct;
}

/* --precision bf16: the elementwise maps, product epilogues and updates
 * keep their vector form (cu_render.c: four bf16 elements in one 8-byte
 * load, lt_ld4, or store, lt_st4), and so do the roundings of a product's
 * f32 operands into bf16 scratch (cu_to_bf16). Each launch of these kinds
 * (4 or more elements) must use lt_st4 when its result is bf16 and lt_ld4
 * when it reads a full-shaped bf16 operand. *loops: such launches, the
 * return: those with their vector form. */
static int bf16_vectors(const ir_graph *g, const cu_compiled *c, int *loops, char *miss, size_t missn) {
  int ok = 0;
  *loops = 0;
  miss[0] = 0;
  for (int l = 0; l < c->prog.nl; l++) {
    const cu_launch *la = &c->prog.l[l];
    const pl_kernel *k = &c->plan.k[la->pk];
    const char *src = la->what == CU_L_KERNEL ? c->prog.fn[la->fn].src : NULL;
    if (!src || la->nops < 1) continue;
    if (la->nops == 2 && la->op[1].node == CU_REF_ARENA &&
        strstr(src, "(const float* __restrict__ x, lt_bf16* __restrict__ y)")) {
      /* a product's operand rounded into scratch: four a thread where both
       * ends are 16-byte aligned (a slice of a recurrence's packed
       * gradient scratch may not be) */
      if (la->op[0].off % 16 || la->op[1].off % 16) continue;
      if (la->op[0].node >= 0 && ir_numel(&g->nodes[la->op[0].node].shape) < 4) continue;
      int v = strstr(src, "lt_st4(y, q,") != NULL;
      (*loops)++, ok += v;
      if (!v && !miss[0]) snprintf(miss, missn, "%s", c->prog.fn[la->fn].name);
      continue;
    }
    if ((k->kind != PL_K_ELEMENTWISE && k->kind != PL_K_GEMM_EPI) || la->op[0].node != k->node || k->elems < 4 ||
        g->nodes[k->node].dtype != IR_F32)
      continue;
    int st = c->bf16[k->node], ld = 0;
    for (int j = k->kind == PL_K_ELEMENTWISE; j < la->nops; j++) { /* an epilogue reads its product (a0) */
      int x = la->op[j].node;
      ld |= x >= 0 && c->bf16[x] && ir_shape_eq(&g->nodes[x].shape, &g->nodes[k->node].shape);
    }
    if (!st && !ld) continue;
    int v = (!st || strstr(src, "lt_st4(") != NULL) && (!ld || strstr(src, "lt_ld4(") != NULL);
    (*loops)++, ok += v;
    if (!v && !miss[0]) snprintf(miss, missn, "%s", c->prog.fn[la->fn].name);
  }
  return ok;
}

static void bf16_storage(void) {
  static char msg[8192];
  for (int e = 0; e < NEX; e++) {
    lathe_program *p = build(e, 1, 0);
    if (!p) continue;
    const ir_graph *g = &p->g;
    cu_compiled c;
    if (cu_compile_prec(g, "sm_80", 1, &c, msg, sizeof msg)) {
      CHECK_MSG(0, "%s: bf16 training step: %s", ex[e].path, msg);
      lathe_program_free(p);
      continue;
    }
    char miss[64];
    int direct = bf16_direct(ex[e].path, g, &c), loops = 0, vec = bf16_vectors(g, &c, &loops, miss, sizeof miss);
    CHECK_MSG(vec == loops, "%s: bf16 training step: %d of %d elementwise/epilogue/rounding launches on bf16 keep their "
              "vector form (lt_ld4/lt_st4); the first without: %s", ex[e].path, vec, loops, miss);
    printf("bf16 vectors     %-20s training step: %d of %d launches on bf16 tensors load/store 4 bf16 at once\n",
           ex[e].path, vec, loops);
    if (ex[e].src) { /* the inline models: only the packed kernels' products (their activations may all be f32) */
      printf("bf16             %-20s training step: %d mha/recurrence/attention kernels on bf16 operands, no widening\n",
             ex[e].path, direct);
      cu_compiled_free(&c);
      lathe_program_free(p);
      continue;
    }
    int kept = 1, nbf = 0, typed = 0, heavy = 0, heavy_bf = 0;
    /* bf16 reaches the attention (every form), the recurrences and the
     * convolutions: their kernels read or write bf16 tensors (not every
     * one: a first layer's weight gradient reads the f32 input and a
     * gradient that a scatter-add's atomics wrote) */
    for (int q = 0; q < c.plan.nk; q++) {
      const pl_kernel *k = &c.plan.k[q];
      int op = g->nodes[k->head].op, bf = c.bf16[k->node];
      if (k->kind != PL_K_ATTENTION && k->kind != PL_K_RECURRENCE && op != IR_CONV2D && op != IR_CONV2D_GRAD_INPUT &&
          op != IR_CONV2D_GRAD_WEIGHT)
        continue;
      for (int j = 0; j < k->nin; j++) bf |= c.bf16[k->in[j]];
      heavy++, heavy_bf += bf;
    }
    CHECK_MSG(heavy_bf > 0 || heavy == 0, "%s: none of %d attention, recurrence and convolution kernels touches a bf16 "
              "tensor", ex[e].path, heavy);
    for (int i = 0; i < g->nparams; i++) kept &= !c.bf16[g->params[i].node] && !(g->grads && g->grads[i] >= 0 && c.bf16[g->grads[i]]);
    for (int i = 0; i < g->noutputs; i++) kept &= !c.bf16[g->outputs[i].node];
    for (int i = 0; i < g->ninputs; i++) kept &= !c.bf16[g->inputs[i].node];
    for (int i = 0; i < g->nnodes; i++) nbf += c.bf16[i];
    for (int f = 0; f < c.prog.nfn; f++) typed += strstr(c.prog.fn[f].src, "lt_bf16*") != NULL;
    CHECK_MSG(kept, "%s: a weight, weight gradient, output or input is stored as bf16", ex[e].path);
    CHECK_MSG(nbf > 0 && typed > 0, "%s: bf16 stores nothing as bf16 (%d tensors, %d kernels)", ex[e].path, nbf, typed);
    /* bf16 tensors take half-sized arena blocks (pl_target.half): every one
     * 2 bytes an element, and the arena no larger than the same plan's with
     * every block at f32 width */
    int halved = 1;
    for (int i = 0; i < g->nnodes; i++)
      if (c.bf16[i] && c.plan.buf[i].kind == PL_BUF_ARENA) halved &= c.plan.buf[i].bytes == 2 * ir_numel(&g->nodes[i].shape);
    pl_plan fp;
    int64_t f32_arena = pl_build(g, cu_plan_target_bf16(), &fp) ? -1 : fp.arena_bytes;
    pl_free(&fp);
    CHECK_MSG(halved && c.plan.arena_bytes <= f32_arena, "%s: bf16 blocks not halved (arena %lld, f32 plan's %lld)",
              ex[e].path, (long long)c.plan.arena_bytes, (long long)f32_arena);
    printf("bf16             %-20s training step %d of %d tensors bf16, %d of %d functions take bf16, %d of %d attention/"
           "recurrence/conv kernels on bf16 (%d packed ones, products bf16, no widening); weights f32; arena %lld bytes (at f32 "
           "widths %lld)\n",
           ex[e].path, nbf, g->nnodes, typed, c.prog.nfn, heavy_bf, heavy, direct, (long long)c.plan.arena_bytes,
           (long long)f32_arena);
    cu_compiled_free(&c);
    lathe_program_free(p);
  }
}

/* A dense layer's bias gradient is its weight gradient's cuBLASLt epilogue
 * (cu_bgrad.c): in every example's training step each such pair is one
 * product launch (the column sum's kernel gone) unless LATHE_CUDA_BGRAD=0;
 * the mlp's dense layers all pair. The whole-step comparisons
 * (run_case, test_cuda_run) check the values. */
static void bgrad_fused(void) {
  static char msg[8192];
  for (int e = 0; e < NEX; e++) {
    lathe_program *p = build(e, 1, 0);
    if (!p) continue;
    pl_plan plan;
    cu_program on, off;
    int dense = 0, sums = 0;
    if (pl_build(&p->g, cu_plan_target(), &plan)) {
      lathe_program_free(p);
      continue;
    }
    for (int q = 0; q < plan.nk; q++) sums += p->g.nodes[plan.k[q].head].op == IR_SUM_TO;
    int rc_on = cu_render(&plan, &on, msg, 4096);
    setenv("LATHE_CUDA_BGRAD", "0", 1);
    int rc_off = cu_render(&plan, &off, msg + 4096, 4096);
    unsetenv("LATHE_CUDA_BGRAD");
    if (rc_on || rc_off) { /* refusals are the other tests' to report (a failed render frees itself) */
      if (!rc_on) cu_program_free(&on);
      if (!rc_off) cu_program_free(&off);
      pl_free(&plan), lathe_program_free(p);
      continue;
    }
    for (int l = 0; l < on.nl; l++)
      dense += on.l[l].what == CU_L_GEMM && on.l[l].gemm.epilogue == CU_EPI_BGRAD_B && plan.k[on.l[l].pk].kind == PL_K_GEMM;
    int offd = 0;
    for (int l = 0; l < off.nl; l++) offd += off.l[l].what == CU_L_GEMM && off.l[l].gemm.epilogue == CU_EPI_BGRAD_B;
    CHECK_MSG(offd == 0, "%s: LATHE_CUDA_BGRAD=0 still fused %d bias gradients", ex[e].path, offd);
    CHECK_MSG(off.nl - on.nl >= dense, "%s: %d fused bias gradients but %d launches (%d unfused)", ex[e].path, dense,
              on.nl, off.nl);
    if (!strcmp(ex[e].path, "examples/mlp.nn"))
      CHECK_MSG(dense > 0 && dense == sums, "mlp: %d of %d dense bias gradients fused", dense, sums);
    printf("bias gradient    %-20s training step: %d of %d column sums as the weight gradient's epilogue, %d launches "
           "(%d with LATHE_CUDA_BGRAD=0)\n",
           ex[e].path, dense, sums, on.nl, off.nl);
    cu_program_free(&on), cu_program_free(&off);
    pl_free(&plan);
    lathe_program_free(p);
  }
}

/* Every example's training step (the files and the inline models) updates
 * every parameter in one launch (plan_group.c batch_updates with
 * pl_target.upd_table: no operand limit on the CUDA backend, the kernel
 * reads its operands from a table filled at load, cu_run.c), four elements
 * a thread; and its f32 elementwise maps and epilogues run four elements a
 * thread (float4). The mlp's update has its six sibling groups. */
static void vector_loops(void) {
  static char msg[4096];
  for (int e = 0; e < NEX; e++) {
    lathe_program *p = build(e, 1, 0);
    if (!p) continue;
    pl_plan plan;
    cu_program cp;
    if (pl_build(&p->g, cu_plan_target(), &plan)) {
      lathe_program_free(p);
      continue;
    }
    if (cu_render(&plan, &cp, msg, sizeof msg)) {
      CHECK_MSG(0, "%s training step: %s", ex[e].path, msg);
      pl_free(&plan), lathe_program_free(p);
      continue;
    }
    int upd = 0, groups = 0, maps = 0, vec = 0, ops = 0, trained = 0;
    for (int i = 0; p->g.grads && i < p->g.nparams; i++) trained += p->g.grads[i] >= 0;
    for (int l = 0; l < cp.nl; l++) {
      const pl_kernel *k = &plan.k[cp.l[l].pk];
      if (cp.l[l].what != CU_L_KERNEL) continue;
      const char *src = cp.fn[cp.l[l].fn].src;
      /* an update writes outputs (the new weights and state); a sibling
       * group in the arena is the step's own (clip_norm's sums) */
      if (k->kind == PL_K_SIBLINGS && plan.buf[k->node].kind == PL_BUF_OUTPUT) {
        upd++, groups = k->nsib, ops = cp.l[l].ntab ? cp.l[l].ntab : cp.l[l].nops;
        CHECK_MSG(strstr(src, "float4") != NULL, "%s: the update kernel %s has no float4", ex[e].path,
                  cp.fn[cp.l[l].fn].name);
      } else if ((k->kind == PL_K_ELEMENTWISE || k->kind == PL_K_GEMM_EPI) && k->elems >= 4 &&
                 p->g.nodes[k->node].dtype == IR_F32) {
        maps++, vec += strstr(src, "float4") != NULL;
      }
    }
    CHECK_MSG(upd == 1 && groups == trained, "%s: %d update launches (want 1) of %d groups (want one per trained "
              "parameter, %d)", ex[e].path, upd, groups, trained);
    if (!strcmp(ex[e].path, "examples/mlp.nn")) CHECK_MSG(groups == 6, "mlp: %d update groups (want 6)", groups);
    CHECK_MSG(vec == maps, "%s: %d of %d elementwise launches use float4", ex[e].path, vec, maps);
    printf("float4           %-20s training step: %d update launch of %d groups (%d operands), %d of %d elementwise "
           "launches vectorised\n", ex[e].path, upd, groups, ops, vec, maps);
    cu_program_free(&cp);
    pl_free(&plan);
    lathe_program_free(p);
  }
}

int main(void) {
  if (!cx_host_compiler()) {
    printf("SKIP test_cuda_exec: no host C++ compiler was found at configure time; the executor needs one\n");
    return 0;
  }
  char err[256], why[1024];
  if (!cu_dl_nvrtc(why, sizeof why)) {
    printf("SKIP test_cuda_exec: the kernels are compiled by NVRTC first, and it is absent: %s\n", why);
    return 0;
  }
  nvrtc_rejects();
  bgrad_fused();
  vector_loops();
  bf16_storage();
  op_coverage();
  D = cx_driver(err, sizeof err);
  if (!D) {
    fprintf(stderr, "cx_driver: %s\n", err);
    return 1;
  }
  /* LATHE_CUDA_EXEC_ONLY=TEXT: only the cases whose name contains TEXT (while developing; coverage then fails) */
  const char *only = getenv("LATHE_CUDA_EXEC_ONLY");
  for (int e = 0; e < NEX; e++)
    if (!only || strstr(ex[e].path, only)) load_case(e, 0), load_case(e, 1);
  for (int k = 0; k < PL_NKINDS; k++) {
    const char *name = pl_kind_name((pl_kind)k);
    if (loaded_kind[k]) printf("kind %-14s covered\n", name);
    else if (refused_kind[k]) CHECK_MSG(0, "kind %s: the renderer refuses it in every case", name);
    else CHECK_MSG(0, "kind %s: no case among the examples (add a model that plans it)", name);
  }
  D->destroy(D);
  return TEST_REPORT();
}
