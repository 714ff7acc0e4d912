/* test_lower.c -- the frontend's semantic stages: fe_check's diagnostics and
 * fe_lower's graphs (ops, shapes, attributes, parameter names and inits, the
 * train block), from small models written inline. */
#include <stdlib.h>
#include <string.h>
#include "test.h"
#include "frontend.h"
#include "ir.h"

typedef struct {
  arena A;
  ir_graph g;
  fe_model *m;
  int ok;
} lowered;

/* Parse and lower src with every symbolic dim bound to `dimval`. */
static lowered *lower_src(const char *src, int64_t dimval) {
  lowered *l = calloc(1, sizeof *l);
  char *err = NULL;
  l->m = fe_parse("t.nn", src, strlen(src), &err);
  ar_init(&l->A);
  ir_graph_init(&l->g, &l->A, "t");
  if (!l->m) {
    fprintf(stderr, "parse failed:\n%s", err);
    free(err);
    return l;
  }
  int64_t vals[8] = {dimval, dimval, dimval, dimval, dimval, dimval, dimval, dimval};
  if (fe_lower(l->m, vals, &l->g, &err)) {
    fprintf(stderr, "lower failed:\n%s", err);
    free(err);
    return l;
  }
  l->ok = 1;
  return l;
}

static void done(lowered *l) {
  fe_free(l->m);
  ar_free(&l->A);
  free(l);
}

/* The diagnostics of parse (+ lower when parse succeeds), or "" if none. */
static char *errors_of(const char *src) {
  char *err = NULL;
  fe_model *m = fe_parse("t.nn", src, strlen(src), &err);
  if (!m) return err;
  arena A;
  ar_init(&A);
  ir_graph g;
  ir_graph_init(&g, &A, "t");
  int64_t vals[8] = {4, 4, 4, 4, 4, 4, 4, 4};
  if (fe_lower(m, vals, &g, &err) == 0) err = strdup("");
  ar_free(&A);
  fe_free(m);
  return err;
}

/* The first line of the diagnostics of src. */
static char *first_error(const char *src) {
  char *e = errors_of(src);
  char *nl = strchr(e, '\n');
  if (nl) *nl = 0;
  return e;
}

#define CHECK_ERR(src, want) do { char *e_ = first_error(src); CHECK_STR(e_, want); free(e_); } while (0)
#define CHECK_HAS(src, want) do { char *e_ = errors_of(src); \
    CHECK_MSG(strstr(e_, want) != NULL, "missing '%s' in:\n%s", want, e_); free(e_); } while (0)

static int shape_is(const ir_shape *s, int rank, int64_t a, int64_t b, int64_t c, int64_t d) {
  int64_t w[4] = {a, b, c, d};
  if (s->rank != rank) return 0;
  for (int i = 0; i < rank && i < 4; i++)
    if (s->d[i] != w[i]) return 0;
  return 1;
}

static int count_op(const ir_graph *g, int op) {
  int n = 0;
  for (int i = 0; i < g->nnodes; i++) n += g->nodes[i].op == op;
  return n;
}

static const ir_param *param(const ir_graph *g, const char *name) {
  int i = ir_find_param(g, name);
  return i >= 0 ? &g->params[i] : NULL;
}

static const ir_node *out_node(const ir_graph *g, const char *name) {
  int i = ir_find_output(g, name);
  return i >= 0 ? &g->nodes[g->outputs[i].node] : NULL;
}

static void test_mlp(void) {
  lowered *l = lower_src("const D = 8, H = D * 2\n"
                         "input x : f32[batch, D]\n"
                         "target y : i32[batch]\n"
                         "h = dense(x, H, name=\"fc1\")\n"
                         "h = relu(h)\n"
                         "logits = dense(h, 10, bias=false)\n"
                         "output probs = softmax(logits)\n"
                         "output logits\n"
                         "loss = cross_entropy(logits, y, label_smoothing=0.1)\n", 32);
  CHECK(l->ok);
  if (!l->ok) { done(l); return; }
  ir_graph *g = &l->g;
  CHECK_STR(fe_model_name(l->m), "t");
  CHECK(fe_num_syms(l->m) == 1);
  CHECK_STR(fe_sym_name(l->m, 0), "batch");
  CHECK(fe_num_inputs(l->m) == 2);
  const char *sym = NULL;
  CHECK(fe_input_dim(l->m, 0, 0, &sym) == -1 && sym && strcmp(sym, "batch") == 0);
  CHECK(fe_input_dim(l->m, 0, 1, &sym) == 8 && !sym);
  CHECK(fe_input_is_target(l->m, 1) && fe_input_dtype(l->m, 1) == IR_I32);
  CHECK(g->ninputs == 2 && shape_is(&g->inputs[0].shape, 2, 32, 8, 0, 0));
  CHECK(g->inputs[1].is_target);
  const ir_param *w = param(g, "fc1.weight"), *b = param(g, "fc1.bias");
  CHECK(w && shape_is(&w->shape, 2, 8, 16, 0, 0) && w->init == IR_INIT_XAVIER && w->fan_in == 8 && w->fan_out == 16);
  CHECK(b && shape_is(&b->shape, 1, 16, 0, 0, 0) && b->init == IR_INIT_ZEROS);
  CHECK(param(g, "dense_0.weight") != NULL);
  CHECK(param(g, "dense_0.bias") == NULL);
  CHECK(g->nparams == 3);
  CHECK(count_op(g, IR_MATMUL) == 2 && count_op(g, IR_ADD) == 1 && count_op(g, IR_RELU) == 1);
  const ir_node *p = out_node(g, "probs");
  CHECK(p && p->op == IR_SOFTMAX && p->attr.axis == 1 && shape_is(&p->shape, 2, 32, 10, 0, 0));
  CHECK(out_node(g, "logits") && out_node(g, "logits")->op == IR_MATMUL);
  CHECK(g->noutputs == 2);
  CHECK(g->loss >= 0 && g->nodes[g->loss].op == IR_CROSS_ENTROPY && g->nodes[g->loss].shape.rank == 0);
  CHECK_NEAR(g->nodes[g->loss].attr.f, 0.1, 1e-12);
  CHECK(!g->train.present);
  char msg[256];
  CHECK_MSG(ir_verify(g, msg, sizeof msg) == 0, "%s", msg);
  done(l);
}

static void test_block_names(void) {
  lowered *l = lower_src("input x : f32[2, 4]\n"
                         "def inner(x) {\n"
                         "  h = dense(x, 4, name=\"fc\")\n"
                         "  return relu(dense(h, 4))\n"
                         "}\n"
                         "def outer(x, n) {\n"
                         "  y = repeat(n, inner, x, name=\"r\")\n"
                         "  y = inner(y)\n"
                         "  return layernorm(y, name=\"ln1\")\n"
                         "}\n"
                         "h = outer(x, 2, name=\"b0\")\n"
                         "h = outer(h, n=1)\n"
                         "h = repeat(2, inner, h)\n"
                         "h = repeat(1, inner, h)\n"
                         "h = inner(h)\n"
                         "p = param([3, 4])\n"
                         "q = param([4], init=\"zeros\", name=\"pos\")\n"
                         "output h\n", 1);
  CHECK(l->ok);
  if (!l->ok) { done(l); return; }
  ir_graph *g = &l->g;
  static const char *want[] = {
    "b0.r.0.fc.weight", "b0.r.0.dense_0.weight", "b0.r.1.fc.bias", "b0.r.1.dense_0.bias",
    "b0.inner_0.fc.weight", "b0.inner_0.dense_0.weight", "b0.ln1.weight", "b0.ln1.bias",
    "outer_0.r.0.fc.weight", "outer_0.inner_0.dense_0.weight", "outer_0.ln1.bias",
    "inner_0.0.fc.weight", "inner_0.1.dense_0.weight", "inner_1.0.fc.weight", "inner_2.fc.weight",
    "inner_2.dense_0.bias", "param_0", "pos",
  };
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
    CHECK_MSG(param(g, want[i]) != NULL, "no parameter '%s'", want[i]);
  CHECK(param(g, "outer_0.r.1.fc.weight") == NULL); /* n=1 */
  CHECK(g->nparams == 14 + 10 + 8 + 4 + 4 + 2);
  const ir_param *p0 = param(g, "param_0");
  CHECK(p0 && shape_is(&p0->shape, 2, 3, 4, 0, 0) && p0->init == IR_INIT_NORMAL);
  CHECK(p0 && fabs(p0->std - 0.02) < 1e-12);
  CHECK(param(g, "pos") && param(g, "pos")->init == IR_INIT_ZEROS);
  done(l);
}

/* One expression over inputs; returns the graph for inspection. */
static lowered *expr_model(const char *decls, const char *expr) {
  char src[2048];
  snprintf(src, sizeof src, "%s\nr = %s\noutput r\n", decls, expr);
  lowered *l = lower_src(src, 2);
  CHECK_MSG(l->ok, "%s", expr);
  return l;
}

static const ir_node *result(lowered *l) { return l->ok ? out_node(&l->g, "r") : NULL; }

/* Check op and shape of `expr` over the standard inputs. */
static void check_expr(const char *expr, int op, int rank, int64_t a, int64_t b, int64_t c, int64_t d) {
  lowered *l = expr_model("input x : f32[2, 3, 8, 8]\n"
                          "input m : f32[4, 6]\n"
                          "input s : f32[2, 5, 16]\n"
                          "input ids : i32[2, 5]\n"
                          "input k : i32[4, 6]\n"
                          "target yl : i32[4]\n", expr);
  const ir_node *n = result(l);
  CHECK_MSG(n && n->op == op, "%s: op %d, want %d", expr, n ? n->op : -1, op);
  if (n) {
    char b1[200];
    CHECK_MSG(shape_is(&n->shape, rank, a, b, c, d), "%s: shape %s", expr, ir_shape_str(&n->shape, b1, sizeof b1));
  }
  done(l);
}

static void test_builtins(void) {
  check_expr("relu(m)", IR_RELU, 2, 4, 6, 0, 0);
  check_expr("leaky_relu(m, alpha=0.2)", IR_LEAKY_RELU, 2, 4, 6, 0, 0);
  check_expr("sigmoid(m)", IR_SIGMOID, 2, 4, 6, 0, 0);
  check_expr("tanh(m)", IR_TANH, 2, 4, 6, 0, 0);
  check_expr("gelu(m, approx=\"tanh\")", IR_GELU, 2, 4, 6, 0, 0);
  check_expr("swish(m)", IR_SWISH, 2, 4, 6, 0, 0);
  check_expr("silu(m)", IR_SWISH, 2, 4, 6, 0, 0);
  check_expr("softmax(m, axis=0)", IR_SOFTMAX, 2, 4, 6, 0, 0);
  check_expr("log_softmax(m)", IR_LOG_SOFTMAX, 2, 4, 6, 0, 0);
  check_expr("exp(m)", IR_EXP, 2, 4, 6, 0, 0);
  check_expr("log(m)", IR_LOG, 2, 4, 6, 0, 0);
  check_expr("sqrt(m)", IR_SQRT, 2, 4, 6, 0, 0);
  check_expr("abs(m)", IR_ABS, 2, 4, 6, 0, 0);
  check_expr("neg(m)", IR_NEG, 2, 4, 6, 0, 0);
  check_expr("-m", IR_NEG, 2, 4, 6, 0, 0);
  check_expr("pow(m, 2)", IR_POW, 2, 4, 6, 0, 0);
  check_expr("dropout(m, 0.1)", IR_DROPOUT, 2, 4, 6, 0, 0);
  check_expr("reshape(m, [3, -1])", IR_RESHAPE, 2, 3, 8, 0, 0);
  check_expr("flatten(x)", IR_RESHAPE, 2, 2, 192, 0, 0);
  check_expr("transpose(m)", IR_TRANSPOSE, 2, 6, 4, 0, 0);
  check_expr("transpose(x, [0, 2, 3, -3])", IR_TRANSPOSE, 4, 2, 8, 8, 3);
  check_expr("concat([m, m], axis=-1)", IR_CONCAT, 2, 4, 12, 0, 0);
  check_expr("concat([m, m, m])", IR_CONCAT, 2, 12, 6, 0, 0);
  check_expr("sum(m)", IR_SUM, 0, 0, 0, 0, 0);
  check_expr("mean(m, axis=1, keepdims=true)", IR_MEAN, 2, 4, 1, 0, 0);
  check_expr("max(m, 0)", IR_MAX, 1, 6, 0, 0, 0);
  check_expr("maxpool2d(x, 2)", IR_MAXPOOL2D, 4, 2, 3, 4, 4);
  check_expr("avgpool2d(x, 4, stride=2)", IR_AVGPOOL2D, 4, 2, 3, 3, 3);
  check_expr("maxpool1d(s, 3, stride=2)", IR_MAXPOOL2D, 3, 2, 5, 7, 0);
  check_expr("avgpool1d(s, 4)", IR_AVGPOOL2D, 3, 2, 5, 4, 0);
  check_expr("global_avgpool(x)", IR_MEAN, 2, 2, 3, 0, 0);
  check_expr("global_maxpool(s)", IR_MAX, 2, 2, 5, 0, 0);
  check_expr("upsample(x, 2)", IR_RESHAPE, 4, 2, 3, 16, 16);
  check_expr("upsample(s, 3)", IR_RESHAPE, 3, 2, 5, 48, 0);
  check_expr("arange(7)", IR_ARANGE, 1, 7, 0, 0, 0);
  check_expr("slice(m, 1, 1, -1)", IR_SLICE, 2, 4, 4, 0, 0);
  check_expr("slice(m, -2, -3, 100)", IR_SLICE, 2, 3, 6, 0, 0);
  check_expr("m @ transpose(m)", IR_MATMUL, 2, 4, 4, 0, 0);
  check_expr("m + 1", IR_ADD, 2, 4, 6, 0, 0);
  check_expr("2 * m - m / 3", IR_SUB, 2, 4, 6, 0, 0);
  check_expr("mse(m, m)", IR_MSE, 0, 0, 0, 0, 0);
  check_expr("bce(m, m)", IR_BCE, 0, 0, 0, 0, 0);
  check_expr("cross_entropy(m, yl)", IR_CROSS_ENTROPY, 0, 0, 0, 0, 0);
  check_expr("dense(s, 7)", IR_ADD, 3, 2, 5, 7, 0);
  check_expr("conv2d(x, 16, kernel=3, padding=1)", IR_CONV2D, 4, 2, 16, 8, 8);
  check_expr("conv2d(x, 4, kernel=4, padding=\"same\")", IR_CONV2D, 4, 2, 4, 8, 8);
  check_expr("conv2d(x, 4, kernel=3, stride=2, bias=false)", IR_CONV2D, 4, 2, 4, 3, 3);
  check_expr("embedding(ids, 100, 16)", IR_EMBEDDING, 3, 2, 5, 16, 0);
  check_expr("layernorm(s, eps=1e-6)", IR_LAYERNORM, 3, 2, 5, 16, 0);
  check_expr("attention(s, 4, causal=true)", IR_ATTENTION, 3, 2, 5, 16, 0);
  check_expr("rnn(s, 8)", IR_RNN, 3, 2, 5, 8, 0);
  check_expr("lstm(s, 8)", IR_LSTM, 3, 2, 5, 8, 0);
  check_expr("gru(s, 8)", IR_GRU, 3, 2, 5, 8, 0);
  check_expr("s |> dense(4) |> relu()", IR_RELU, 3, 2, 5, 4, 0);
}

static void test_attrs_and_params(void) {
  lowered *l = expr_model("input x : f32[2, 3, 8, 8]", "conv2d(x, 4, kernel=4, padding=\"same\", name=\"c\")");
  const ir_node *n = result(l);
  /* the op's k is its groups (0: none), n its dilation; the kernel size is the weight's */
  CHECK(n && n->attr.k == 0 && n->attr.n == 0 && n->attr.stride == 1 && n->attr.pad == 1 && n->attr.pad_hi == 2 &&
        n->nin == 3);
  const ir_param *w = param(&l->g, "c.weight");
  CHECK(w && shape_is(&w->shape, 4, 4, 3, 4, 4) && w->init == IR_INIT_HE && w->fan_in == 48 && w->fan_out == 64);
  done(l);

  /* conv1d: the same op on [N, C, L], PyTorch's weight [out, in/groups, k]; "same" with dilation */
  l = expr_model("input s : f32[2, 6, 16]", "conv1d(s, 4, kernel=4, padding=\"same\", dilation=3, groups=2, name=\"c\")");
  n = result(l);
  CHECK(n && n->op == IR_CONV2D && n->attr.k == 2 && n->attr.n == 3 && n->attr.pad == 4 && n->attr.pad_hi == 5);
  CHECK(n && shape_is(&n->shape, 3, 2, 4, 16, 0));
  w = param(&l->g, "c.weight");
  CHECK(w && shape_is(&w->shape, 3, 4, 3, 4, 0) && w->fan_in == 12 && w->fan_out == 8);
  done(l);

  l = expr_model("input s : f32[2, 5, 16]", "attention(s, 4)");
  n = result(l);
  CHECK(n && n->attr.heads == 4 && n->attr.causal == 0);
  CHECK(param(&l->g, "attention_0.qkv.weight") && shape_is(&param(&l->g, "attention_0.qkv.weight")->shape, 2, 16, 48, 0, 0));
  CHECK(param(&l->g, "attention_0.qkv.bias") && param(&l->g, "attention_0.proj.weight") &&
        param(&l->g, "attention_0.proj.bias"));
  done(l);

  l = expr_model("input s : f32[2, 5, 16]", "lstm(s, 8, name=\"enc\")");
  w = param(&l->g, "enc.weight_ih");
  CHECK(w && shape_is(&w->shape, 2, 16, 32, 0, 0) && w->init == IR_INIT_UNIFORM && fabs(w->std - 1 / sqrt(8.0)) < 1e-12);
  CHECK(param(&l->g, "enc.weight_hh") && shape_is(&param(&l->g, "enc.weight_hh")->shape, 2, 8, 32, 0, 0));
  CHECK(param(&l->g, "enc.bias") && shape_is(&param(&l->g, "enc.bias")->shape, 1, 32, 0, 0, 0));
  done(l);

  l = expr_model("input s : f32[2, 5, 16]", "gru(s, 8)");
  CHECK(param(&l->g, "gru_0.weight_ih") && shape_is(&param(&l->g, "gru_0.weight_ih")->shape, 2, 16, 24, 0, 0));
  CHECK(param(&l->g, "gru_0.bias_ih") && param(&l->g, "gru_0.bias_hh"));
  done(l);

  l = expr_model("input s : f32[2, 5, 16]", "rnn(s, 8)");
  CHECK(param(&l->g, "rnn_0.weight_hh") && shape_is(&param(&l->g, "rnn_0.weight_hh")->shape, 2, 8, 8, 0, 0));
  done(l);

  l = expr_model("input ids : i64[2, 5]", "embedding(ids, 100, 16)");
  w = param(&l->g, "embedding_0.weight");
  CHECK(w && w->init == IR_INIT_NORMAL && fabs(w->std - 1.0) < 1e-12);
  done(l);

  l = expr_model("input s : f32[2, 5, 16]", "layernorm(s)");
  CHECK(param(&l->g, "layernorm_0.weight") && param(&l->g, "layernorm_0.weight")->init == IR_INIT_ONES);
  CHECK(result(l) && fabs(result(l)->attr.f - 1e-5) < 1e-15);
  done(l);

  /* softmax / reductions / slice attributes are normalised */
  l = expr_model("input m : f32[4, 6]", "sum(m, -1, keepdims=true)");
  CHECK(result(l) && result(l)->attr.axis == 1 && result(l)->attr.keepdims == 1);
  done(l);
  l = expr_model("input m : f32[4, 6]", "slice(m, -1, -4, -1)");
  CHECK(result(l) && result(l)->attr.axis == 1 && result(l)->attr.start == 2 && result(l)->attr.end == 5);
  done(l);
  l = expr_model("input m : f32[4, 6]", "mean(m)");
  CHECK(result(l) && result(l)->attr.axis == -1);
  done(l);
  l = expr_model("input m : f32[4, 6]", "gelu(leaky_relu(m))");
  CHECK(result(l) && result(l)->attr.approx == 0 && fabs(l->g.nodes[result(l)->in[0]].attr.f - 0.01) < 1e-15);
  done(l);
}

static void test_arith_promotion(void) {
  /* int tensor with a float number: the tensor is cast to f32 */
  lowered *l = expr_model("input k : i32[4, 6]", "k * 0.5");
  const ir_node *n = result(l);
  CHECK(n && n->op == IR_MUL && n->dtype == IR_F32);
  CHECK(n && l->g.nodes[n->in[0]].op == IR_CAST && l->g.nodes[n->in[1]].op == IR_CONST);
  done(l);
  /* int with int number stays int; the number becomes a rank-0 const */
  l = expr_model("input k : i32[4, 6]", "k + 1");
  n = result(l);
  CHECK(n && n->dtype == IR_I32 && l->g.nodes[n->in[1]].op == IR_CONST && l->g.nodes[n->in[1]].shape.rank == 0);
  CHECK(n && l->g.nodes[n->in[1]].dtype == IR_I32 && l->g.nodes[n->in[1]].attr.f == 1);
  done(l);
  /* int / int is true division */
  l = expr_model("input k : i32[4, 6]", "k / k");
  CHECK(result(l) && result(l)->dtype == IR_F32 && count_op(&l->g, IR_CAST) == 2);
  done(l);
  /* int tensor with float tensor */
  l = expr_model("input k : i32[4, 6]\ninput m : f32[4, 6]", "m - k");
  n = result(l);
  CHECK(n && n->dtype == IR_F32 && l->g.nodes[n->in[1]].op == IR_CAST);
  done(l);
  /* number arithmetic stays numbers: reshape takes a computed list */
  l = expr_model("const D = 12\ninput m : f32[4, 6]", "reshape(m, [D // 4 + 1, (D - 6) * 1, D // D * 0 + 7 % 3])");
  CHECK(result(l) && shape_is(&result(l)->shape, 3, 4, 6, 1, 0));
  done(l);
  /* symbolic dims are numbers too */
  l = expr_model("input x : f32[batch, 6]", "reshape(x, [batch * 2, 3])");
  CHECK(result(l) && shape_is(&result(l)->shape, 2, 4, 3, 0, 0));
  done(l);
  /* broadcasting */
  l = expr_model("input a : f32[4, 1, 6]\ninput b : f32[5, 1]", "a + b");
  CHECK(result(l) && shape_is(&result(l)->shape, 3, 4, 5, 6, 0));
  done(l);
}

static void test_train(void) {
  lowered *l = lower_src("const E = 5\n"
                "input x : f32[2, 4]\n"
                "input s : f32[2, 3, 4]\n"
                "output o = dense(x, 3)\n"
                "output q = lstm(s, 2)\n"
                "output r = layernorm(x)\n"
                "train {\n"
                "  optimizer = adamw(3e-4, beta1=0.8, weight_decay=0.1)\n"
                "  schedule = cosine(warmup=10, min_lr=1e-5)\n"
                "  epochs = E * 2\n"
                "  batch = 64\n"
                "  init = normal(0.05)\n"
                "  l2 = 1e-4\n"
                "  clip_norm = 1.0\n"
                "  early_stop = 3\n"
                "  split = [0.7, 0.2, 0.1]\n"
                "  seed = 7\n"
                "}\n", 1);
  CHECK(l->ok);
  if (!l->ok) { done(l); return; }
  const ir_train *t = &l->g.train;
  CHECK(t->present && t->opt == IR_OPT_ADAMW);
  CHECK_NEAR(t->lr, 3e-4, 1e-12);
  CHECK_NEAR(t->beta1, 0.8, 1e-12);
  CHECK_NEAR(t->weight_decay, 0.1, 1e-12);
  CHECK(isnan(t->beta2));
  CHECK(t->sched == IR_SCHED_COSINE);
  CHECK_NEAR(t->sched_warmup, 10, 0);
  CHECK_NEAR(t->sched_min_lr, 1e-5, 1e-12);
  CHECK(t->epochs == 10 && t->batch == 64 && t->early_stop == 3 && t->seed == 7);
  CHECK(t->init_set && t->init == IR_INIT_NORMAL);
  CHECK_NEAR(t->init_std, 0.05, 1e-12);
  CHECK_NEAR(t->l2, 1e-4, 1e-12);
  CHECK(isnan(t->l1));
  CHECK_NEAR(t->clip_norm, 1.0, 1e-12);
  CHECK(t->nsplit == 3);
  CHECK_NEAR(t->split[1], 0.2, 1e-12);
  /* init= overrides weight matrices only */
  const ir_param *w = param(&l->g, "dense_0.weight");
  CHECK(w && w->init == IR_INIT_NORMAL && fabs(w->std - 0.05) < 1e-12);
  CHECK(param(&l->g, "dense_0.bias")->init == IR_INIT_ZEROS);
  CHECK(param(&l->g, "lstm_0.weight_hh")->init == IR_INIT_NORMAL);
  CHECK(param(&l->g, "lstm_0.bias")->init == IR_INIT_UNIFORM);
  CHECK(param(&l->g, "layernorm_0.weight")->init == IR_INIT_ONES);
  done(l);

  l = lower_src("input x : f32[2, 4]\noutput o = dense(x, 3)\n"
                "train { optimizer = sgd(0.1, momentum=0.9, nesterov=true)\n schedule = step(10, 0.5)\n"
                " init = he\n split = [0.9, 0.1] }\n", 1);
  CHECK(l->ok);
  if (l->ok) {
    t = &l->g.train;
    CHECK(t->opt == IR_OPT_SGD && t->nesterov == 1 && t->sched == IR_SCHED_STEP);
    CHECK_NEAR(t->momentum, 0.9, 1e-12);
    CHECK_NEAR(t->sched_every, 10, 0);
    CHECK_NEAR(t->sched_gamma, 0.5, 1e-12);
    CHECK(t->init == IR_INIT_HE && t->nsplit == 2 && t->epochs == -1);
    CHECK(param(&l->g, "dense_0.weight")->init == IR_INIT_HE);
  }
  done(l);

  l = lower_src("input x : f32[2, 4]\noutput o = dense(x, 3)\ntrain { optimizer = rmsprop\n schedule = constant }\n", 1);
  CHECK(l->ok && l->g.train.opt == IR_OPT_RMSPROP && l->g.train.sched == IR_SCHED_CONSTANT && isnan(l->g.train.lr));
  done(l);
}

static void test_check_errors(void) {
  CHECK_ERR("const A = 99999999999 * 99999999999\ninput x : f32[4]\noutput x\n",
            "t.nn:1:23: error: integer overflow: 99999999999 * 99999999999 does not fit in 64 bits");
  CHECK_ERR("const A = 3 // 0\ninput x : f32[4]\noutput x\n", "t.nn:1:13: error: division by zero: 3 // 0");
  CHECK_ERR("const A = 1\nconst A = 2\ninput x : f32[4]\noutput x\n",
            "t.nn:2:7: error: cannot define constant 'A': 'A' is a constant (line 1)");
  CHECK_ERR("input x : f32[99999999999, 99999999999]\noutput x\n",
            "t.nn:1:7: error: input 'x' is too large: 99999999999 x 99999999999 elements is more than the limit of 2^40");
  CHECK_ERR("input x : f32[4, 0]\noutput x\n", "t.nn:1:18: error: dimension of 'x' must be a positive integer, got 0");
  CHECK_ERR("input x : f32[4]\ninput x : f32[4]\noutput x\n", "t.nn:2:7: error: 'x' is already defined");
  CHECK_ERR("input x : f32[4, 3]\nh = dens(x, 4)\noutput h\n",
            "t.nn:2:5: error: unknown operator 'dens'; did you mean 'dense'?");
  CHECK_ERR("input x : f32[4, 3]\nh = foo(x)\noutput h\n", "t.nn:2:5: error: unknown operator 'foo'");
  CHECK_ERR("input x : f32[4, 3]\nh = relu(xx)\noutput h\n", "t.nn:2:10: error: unknown name 'xx'; did you mean 'x'?");
  CHECK_ERR("input x : f32[4, 3]\nh = relu(h)\noutput h\n", "t.nn:2:10: error: unknown name 'h'");
  CHECK_ERR("input x : f32[4, 3]\nh = dense(x, 4, unit=3)\noutput h\n",
            "t.nn:2:17: error: 'dense' has no argument named 'unit'; did you mean 'units'?");
  CHECK_ERR("input x : f32[4, 3]\nh = relu(x, 3)\noutput h\n", "t.nn:2:13: error: 'relu' takes at most 1 argument, got 2");
  CHECK_ERR("input x : f32[4, 3]\nh = dense(x)\noutput h\n", "t.nn:2:5: error: 'dense' needs argument 'units' (an integer)");
  CHECK_ERR("input x : f32[4, 3]\nh = dense(x, \"a\")\noutput h\n",
            "t.nn:2:14: error: argument 'units' of 'dense' must be an integer, got a string");
  CHECK_ERR("input x : f32[4, 3]\nh = dense(x, 2.5)\noutput h\n",
            "t.nn:2:14: error: argument 'units' of 'dense' must be an integer, got 2.5");
  CHECK_ERR("input x : f32[4, 3]\nh = dense(3, 4)\noutput h\n",
            "t.nn:2:11: error: argument 'x' of 'dense' must be a tensor, got a number");
  CHECK_ERR("input x : f32[4, 3]\nh = dense(x, 4, units=5)\noutput h\n",
            "t.nn:2:17: error: argument 'units' of 'dense' given twice");
  CHECK_ERR("input x : f32[4, 3]\nh = x + \"a\"\noutput h\n",
            "t.nn:2:9: error: operator '+' needs numbers or tensors, got a string");
  CHECK_ERR("input x : f32[4, 3]\nh = x @ 2\noutput h\n", "t.nn:2:9: error: operator '@' needs tensors, got a number");
  CHECK_ERR("def a(x) {\n  return b(x)\n}\ndef b(x) {\n  return a(x)\n}\ninput x : f32[4]\noutput o = a(x)\n",
            "t.nn:2:10: error: block 'a' calls itself through 'b'");
  CHECK_ERR("def a(x) {\n  return a(x)\n}\ninput x : f32[4]\noutput o = a(x)\n", "t.nn:2:10: error: block 'a' calls itself");
  CHECK_ERR("def a(x) {\n  return repeat(2, a, x)\n}\ninput x : f32[4]\noutput o = a(x)\n",
            "t.nn:2:20: error: block 'a' calls itself");
  CHECK_ERR("input x : f32[4]\ndef a(v) {\n  return relu(x)\n}\noutput o = a(x)\n",
            "t.nn:3:15: error: 'x' is not visible inside block 'a'; pass it as a parameter");
  CHECK_ERR("def a(v) {\n  return v\n}\ninput x : f32[4]\noutput o = a(x, x)\n",
            "t.nn:5:17: error: block 'a' takes 1 argument, got 2");
  CHECK_ERR("def a(v) {\n  return v\n}\ninput x : f32[4]\noutput o = a(w=x)\n",
            "t.nn:5:14: error: block 'a' has no parameter named 'w'");
  CHECK_ERR("def a(v) {\n  return v\n}\ninput x : f32[4]\noutput o = repeat(0, a, x)\n",
            "t.nn:5:19: error: repeat count must be a positive integer, got 0");
  CHECK_ERR("def a(v) {\n  return v\n}\ninput x : f32[4]\noutput o = repeat(2.5, a, x)\n",
            "t.nn:5:19: error: repeat count must be a positive integer, got 2.5");
  CHECK_ERR("input x : f32[4]\noutput o = repeat(2, relu, x)\n", "t.nn:2:22: error: unknown block 'relu'");
  CHECK_ERR("input x : f32[4]\nloss = mse(x, x)\nloss = mse(x, x)\n",
            "t.nn:3:1: error: the loss is already defined (line 2); a model has at most one loss");
  CHECK_ERR("input x : f32[4]\n", "t.nn: error: the model declares no output and no loss");
  CHECK_ERR("input x : f32[4]\noutput h\n", "t.nn:2:8: error: output 'h' names no binding");
  CHECK_ERR("input x : f32[4]\noutput x\noutput x\n", "t.nn:3:8: error: output 'x' is already declared (line 2)");
  CHECK_ERR("input x : f32[4]\noutput o = 3\n", "t.nn:2:12: error: output 'o' must be a tensor, got a number");
  CHECK_ERR("input x : f32[4]\noutput x\ntrain { optimizer = adamx(0.1) }\n",
            "t.nn:3:21: error: unknown optimizer 'adamx' (expected sgd, adam, adamw or rmsprop)");
  CHECK_ERR("input x : f32[4]\noutput x\ntrain { optimizer = adam(lr=-1) }\n",
            "t.nn:3:29: error: 'lr' must be a positive number, got -1");
  CHECK_ERR("input x : f32[4]\noutput x\ntrain { optimizer = sgd(0.1, moment=0.9) }\n",
            "t.nn:3:30: error: 'sgd' has no argument named 'moment'");
  CHECK_ERR("input x : f32[4]\noutput x\ntrain { split = [0.5, 0.2] }\n",
            "t.nn:3:17: error: split fractions must sum to 1, got 0.7");
  CHECK_ERR("input x : f32[4]\noutput x\ntrain { foo = 3 }\n",
            "t.nn:3:9: error: unknown train setting 'foo' (expected optimizer, schedule, epochs, batch, init, l1, "
            "l2, clip_norm, grad_noise, early_stop, split or seed)");
  CHECK_ERR("input x : f32[4]\noutput x\ntrain { epochs = 2.5 }\n", "t.nn:3:18: error: 'epochs' must be an integer");
  CHECK_ERR("input x : f32[4]\noutput x\ntrain { schedule = step(gamma=0.5) }\n",
            "t.nn:3:20: error: 'step' needs argument 'every'");
  CHECK_ERR("input x : f32[4]\noutput x\ntrain { init = glorot }\n",
            "t.nn:3:16: error: unknown init 'glorot' (expected xavier, he or normal(std))");
  CHECK_ERR("def dense(x) {\n  return x\n}\ninput x : f32[4]\noutput x\n",
            "t.nn:1:5: error: block name 'dense' is a builtin operator; choose another name");
  CHECK_ERR("const D = 4\ninput x : f32[4]\nD = relu(x)\noutput x\n",
            "t.nn:3:1: error: cannot define binding 'D': 'D' is a constant (line 1)");
  /* several independent errors are all reported */
  char *e = errors_of("input x : f32[4, 3]\nh = dens(x, 4)\ng = relu(q)\noutput o = sigmoid(x, 2)\n");
  CHECK(strstr(e, "2:5: error: unknown operator 'dens'") && strstr(e, "3:10: error: unknown name 'q'") &&
        strstr(e, "4:23: error: 'sigmoid' takes at most 1 argument"));
  CHECK(strstr(e, "h = dens(x, 4)\n    ^\n") != NULL);
  free(e);
}

static void test_lower_errors(void) {
  CHECK_ERR("input x : f32[4, 3]\ninput w : f32[5, 7]\nh = x @ w\noutput h\n",
            "t.nn:3:7: error: shape error in 'h': matmul: inner dimensions differ: [4, 3] @ [5, 7] (3 vs 5)");
  CHECK_HAS("input x : f32[4, 3]\ninput w : f32[5, 7]\nh = x + w\noutput h\n", "t.nn:3:7: error: shape error in 'h': ");
  CHECK_ERR("input x : f32[4, 3]\nloss = relu(x)\n", "t.nn:2:8: error: loss must be a scalar, got f32[4, 3]");
  CHECK_ERR("input x : f32[4, 3]\nh = dense(x, 4, name=\"a\")\nh = dense(h, 4, name=\"a\")\noutput h\n",
            "t.nn:3:5: error: duplicate parameter name 'a.weight' (first created at line 2, column 5)");
  CHECK_ERR("def b(x) {\n  return dense(x, 3, name=\"fc\")\n}\ninput x : f32[4, 3]\nh = b(x, name=\"z\")\nh = b(h, name=\"z\")\noutput h\n",
            "t.nn:6:5: error: duplicate parameter name 'z.fc.weight' (first created at line 5, column 5)");
  CHECK_ERR("input x : f32[2, 3, 8, 8]\nh = conv2d(x, 4, stride=2, padding=\"same\")\noutput h\n",
            "t.nn:2:36: error: padding=\"same\" needs stride 1, got stride 2");
  CHECK_ERR("input x : f32[4, 3]\nh = conv2d(x, 4)\noutput h\n",
            "t.nn:2:12: error: 'conv2d' expects a 4-d tensor [N, C, H, W], got f32[4, 3]");
  CHECK_ERR("input x : f32[4, 3]\nh = dense(x, 0)\noutput h\n",
            "t.nn:2:14: error: argument 'units' of 'dense' must be at least 1, got 0");
  CHECK_ERR("input x : f32[4, 3]\nh = dense(x, 99999999999999)\noutput h\n",
            "t.nn:2:5: error: parameter 'dense_0.weight' is too large: [3, 99999999999999] has more than 2^40 elements");
  CHECK_ERR("input x : i32[4, 3]\nh = dense(x, 4)\noutput h\n",
            "t.nn:2:11: error: 'dense' expects a floating-point tensor, got i32[4, 3]");
  CHECK_ERR("input x : f32[4, 3]\nh = embedding(x, 10, 4)\noutput h\n",
            "t.nn:2:15: error: 'embedding' expects integer ids, got f32[4, 3]");
  CHECK_ERR("input x : f32[2, 5, 6]\nh = attention(x, 4)\noutput h\n",
            "t.nn:2:18: error: attention width 6 is not divisible by heads=4 (or give head_dim=)");
  CHECK_ERR("input x : f32[4, 6]\nh = reshape(x, [5, -1])\noutput h\n",
            "t.nn:2:16: error: cannot reshape [4, 6] (24 elements) with -1: 24 is not divisible by 5");
  CHECK_ERR("input x : f32[4, 6]\nh = softmax(x, axis=2)\noutput h\n",
            "t.nn:2:21: error: axis 2 is out of range for a tensor of rank 2");
  CHECK_ERR("input x : f32[4, 6]\nh = slice(x, 1, 4, 2)\noutput h\n",
            "t.nn:2:5: error: slice is empty: [4:2] of axis 1 (size 6)");
  CHECK_ERR("input x : f32[4, 6]\nh = gelu(x, approx=\"fast\")\noutput h\n",
            "t.nn:2:20: error: 'approx' of 'gelu' must be \"none\" or \"tanh\", got \"fast\"");
  CHECK_ERR("input x : f32[4, 6]\nh = transpose(x, [0])\noutput h\n",
            "t.nn:2:18: error: transpose permutation has 1 entries for a tensor of rank 2");
  CHECK_ERR("def b(x, n) {\n  return dense(x, n)\n}\ninput x : f32[4, 6]\nh = b(x, x)\noutput h\n",
            "t.nn:2:19: error: argument 'units' of 'dense' must be an integer, got a tensor");
  CHECK_ERR("def b(x) {\n  h = x @ x\n  return h\n}\ninput x : f32[4, 6]\nh = b(x)\noutput h\n",
            "t.nn:2:9: error: shape error in 'h' (in block 'b'): matmul: inner dimensions differ: [4, 6] @ [4, 6] (6 vs 4)");
  CHECK_ERR("const D = 4\ninput x : f32[4, 6]\nh = reshape(x, [D / 2, -1])\noutput h\n",
            "t.nn:3:19: error: argument 'shape' of 'reshape' must be a list of integers, got a non-integer number in the list");
  CHECK_ERR("input x : f32[4, 6]\nh = x * 0.5 // 2\noutput h\n",
            "t.nn:2:13: error: operator '//' applies to numbers only, not tensors");
  /* a repeat that would expand without bound is refused, not run */
  CHECK_ERR("def b(x) {\n  return x\n}\ninput x : f32[4, 6]\nh = repeat(99999999999, b, x)\noutput h\n",
            "t.nn:5:12: error: repeat count 99999999999 is too large (at most 100000)");
  /* several independent shape errors are all reported */
  char *e = errors_of("input x : f32[4, 3]\ninput w : f32[5, 7]\na = x @ w\nb = x + w\nc = relu(a)\noutput c\n");
  CHECK(strstr(e, "3:7: error:") && strstr(e, "4:7: error:") && !strstr(e, "5:"));
  free(e);
}

static void test_unbound_sym(void) {
  char *err = NULL;
  const char *src = "input x : f32[batch, 4]\noutput x\n";
  fe_model *m = fe_parse("t.nn", src, strlen(src), &err);
  CHECK(m != NULL);
  if (!m) { free(err); return; }
  arena A;
  ar_init(&A);
  ir_graph g;
  ir_graph_init(&g, &A, "t");
  int64_t v[1] = {0};
  CHECK(fe_lower(m, v, &g, &err) == -1 && err && strstr(err, "symbolic dimension 'batch'"));
  free(err);
  ar_free(&A);
  fe_free(m);
  /* element count overflow once dims are bound */
  src = "input x : f32[batch, 99999999]\noutput x\n";
  m = fe_parse("t.nn", src, strlen(src), &err);
  CHECK(m != NULL);
  ar_init(&A);
  ir_graph_init(&g, &A, "t");
  int64_t big[1] = {99999999};
  CHECK(fe_lower(m, big, &g, &err) == -1);
  CHECK_STR(strtok(err, "\n"), "t.nn:1:7: error: input 'x' is too large: 99999999 x 99999999 elements is more than the limit of 2^40");
  free(err);
  ar_free(&A);
  fe_free(m);
}

static void test_model_name(void) {
  char *err = NULL;
  const char *src = "model net\ninput x : f32[4]\noutput x\n";
  fe_model *m = fe_parse("dir/file.nn", src, strlen(src), &err);
  CHECK(m && strcmp(fe_model_name(m), "net") == 0);
  fe_free(m);
  src = "input x : f32[4]\noutput x\n";
  m = fe_parse("dir/mlp.v2.nn", src, strlen(src), &err);
  CHECK(m && strcmp(fe_model_name(m), "mlp.v2") == 0);
  fe_free(m);
}

int main(void) {
  test_mlp();
  test_block_names();
  test_builtins();
  test_attrs_and_params();
  test_arith_promotion();
  test_train();
  test_check_errors();
  test_lower_errors();
  test_unbound_sym();
  test_model_name();
  return TEST_REPORT();
}
