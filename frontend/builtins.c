/* builtins.c -- the table of every callable of the language (name, argument
 * names and kinds, how many are required, whether it takes name=, how it is
 * lowered) and the Python-style matching of a call's arguments to it. The
 * checker and the lowering both read this one table. */
#include <string.h>
#include "sema.h"

/* Lowering functions (layers.c). */
int fe_lw_unary(fe_lctx *L, fe_args *a, fe_val *out);
int fe_lw_leaky_relu(fe_lctx *L, fe_args *a, fe_val *out);
int fe_lw_gelu(fe_lctx *L, fe_args *a, fe_val *out);
int fe_lw_softmax(fe_lctx *L, fe_args *a, fe_val *out);
int fe_lw_pow(fe_lctx *L, fe_args *a, fe_val *out);
int fe_lw_clamp(fe_lctx *L, fe_args *a, fe_val *out);
int fe_lw_compare(fe_lctx *L, fe_args *a, fe_val *out);
int fe_lw_where(fe_lctx *L, fe_args *a, fe_val *out);
int fe_lw_dropout(fe_lctx *L, fe_args *a, fe_val *out);
int fe_lw_reshape(fe_lctx *L, fe_args *a, fe_val *out);
int fe_lw_flatten(fe_lctx *L, fe_args *a, fe_val *out);
int fe_lw_transpose(fe_lctx *L, fe_args *a, fe_val *out);
int fe_lw_concat(fe_lctx *L, fe_args *a, fe_val *out);
int fe_lw_reduce(fe_lctx *L, fe_args *a, fe_val *out);
int fe_lw_pool(fe_lctx *L, fe_args *a, fe_val *out);
int fe_lw_global_pool(fe_lctx *L, fe_args *a, fe_val *out);
int fe_lw_upsample(fe_lctx *L, fe_args *a, fe_val *out);
int fe_lw_arange(fe_lctx *L, fe_args *a, fe_val *out);
int fe_lw_slice(fe_lctx *L, fe_args *a, fe_val *out);
int fe_lw_one_hot(fe_lctx *L, fe_args *a, fe_val *out);
int fe_lw_cast(fe_lctx *L, fe_args *a, fe_val *out);
int fe_lw_cumsum(fe_lctx *L, fe_args *a, fe_val *out);
int fe_lw_gather(fe_lctx *L, fe_args *a, fe_val *out);
int fe_lw_stack(fe_lctx *L, fe_args *a, fe_val *out);
int fe_lw_split(fe_lctx *L, fe_args *a, fe_val *out);
int fe_lw_loss(fe_lctx *L, fe_args *a, fe_val *out);
int fe_lw_dense(fe_lctx *L, fe_args *a, fe_val *out);
int fe_lw_conv2d(fe_lctx *L, fe_args *a, fe_val *out);
int fe_lw_embedding(fe_lctx *L, fe_args *a, fe_val *out);
int fe_lw_layernorm(fe_lctx *L, fe_args *a, fe_val *out);
int fe_lw_batchnorm(fe_lctx *L, fe_args *a, fe_val *out);
int fe_lw_groupnorm(fe_lctx *L, fe_args *a, fe_val *out);
int fe_lw_rmsnorm(fe_lctx *L, fe_args *a, fe_val *out);
int fe_lw_attention(fe_lctx *L, fe_args *a, fe_val *out);
int fe_lw_recurrent(fe_lctx *L, fe_args *a, fe_val *out);
int fe_lw_param(fe_lctx *L, fe_args *a, fe_val *out);

#define T AK_TENSOR
#define UNARY(nm, e) {nm, IR_##e, fe_lw_unary, 1, 1, {{"x", T}}, 0}
#define REDUCE(nm, e) {nm, IR_##e, fe_lw_reduce, 1, 3, {{"x", T}, {"axis", AK_INT}, {"keepdims", AK_BOOL}}, 0}
#define COMPARE(nm, e) {nm, IR_##e, fe_lw_compare, 2, 2, {{"x", AK_TENSOR_OR_NUM}, {"y", AK_TENSOR_OR_NUM}}, 0}
#define POOL(nm, e) {nm, IR_##e, fe_lw_pool, 2, 3, {{"x", T}, {"k", AK_INT}, {"stride", AK_INT}}, 0}
#define RECURRENT(nm, e) {nm, IR_##e, fe_lw_recurrent, 2, 5, \
  {{"x", T}, {"hidden", AK_INT}, {"layers", AK_INT}, {"bidirectional", AK_BOOL}, {"dropout", AK_NUM}}, 1}

const fe_builtin fe_builtins[] = {
  /* layers that own parameters */
  {"dense", IR_MATMUL, fe_lw_dense, 2, 3, {{"x", T}, {"units", AK_INT}, {"bias", AK_BOOL}}, 1},
  {"conv2d", IR_CONV2D, fe_lw_conv2d, 2, 8,
   {{"x", T}, {"channels", AK_INT}, {"kernel", AK_INT}, {"stride", AK_INT},
    {"padding", AK_INT_OR_STR}, {"bias", AK_BOOL}, {"dilation", AK_INT}, {"groups", AK_INT}}, 1},
  {"conv1d", IR_CONV2D, fe_lw_conv2d, 2, 8, /* the same op on [N, C, L] (ir/conv.h) */
   {{"x", T}, {"channels", AK_INT}, {"kernel", AK_INT}, {"stride", AK_INT},
    {"padding", AK_INT_OR_STR}, {"bias", AK_BOOL}, {"dilation", AK_INT}, {"groups", AK_INT}}, 1},
  {"embedding", IR_EMBEDDING, fe_lw_embedding, 3, 3, {{"ids", T}, {"vocab", AK_INT}, {"dim", AK_INT}}, 1},
  {"layernorm", IR_LAYERNORM, fe_lw_layernorm, 1, 2, {{"x", T}, {"eps", AK_NUM}}, 1},
  {"batchnorm", IR_BATCHNORM, fe_lw_batchnorm, 1, 3, {{"x", T}, {"eps", AK_NUM}, {"momentum", AK_NUM}}, 1},
  {"groupnorm", IR_GROUPNORM, fe_lw_groupnorm, 2, 3, {{"x", T}, {"groups", AK_INT}, {"eps", AK_NUM}}, 1},
  {"rmsnorm", IR_RMSNORM, fe_lw_rmsnorm, 1, 2, {{"x", T}, {"eps", AK_NUM}}, 1},
  {"attention", IR_ATTENTION, fe_lw_attention, 2, 8,
   {{"x", T}, {"heads", AK_INT}, {"causal", AK_BOOL}, {"mask", T}, {"context", T}, {"rope", AK_BOOL},
    {"kv_heads", AK_INT}, {"head_dim", AK_INT}}, 1},
  RECURRENT("rnn", RNN),
  RECURRENT("lstm", LSTM),
  RECURRENT("gru", GRU),
  {"param", IR_PARAM, fe_lw_param, 1, 3, {{"shape", AK_INTLIST}, {"init", AK_STR}, {"std", AK_NUM}}, 1},
  /* elementwise */
  UNARY("relu", RELU), UNARY("sigmoid", SIGMOID), UNARY("tanh", TANH), UNARY("swish", SWISH),
  UNARY("silu", SWISH), UNARY("exp", EXP), UNARY("log", LOG), UNARY("sqrt", SQRT),
  UNARY("abs", ABS), UNARY("neg", NEG),
  {"leaky_relu", IR_LEAKY_RELU, fe_lw_leaky_relu, 1, 2, {{"x", T}, {"alpha", AK_NUM}}, 0},
  {"gelu", IR_GELU, fe_lw_gelu, 1, 2, {{"x", T}, {"approx", AK_STR}}, 0},
  {"pow", IR_POW, fe_lw_pow, 2, 2, {{"x", T}, {"p", AK_NUM}}, 0},
  {"clamp", IR_CLAMP, fe_lw_clamp, 1, 3, {{"x", T}, {"min", AK_NUM}, {"max", AK_NUM}}, 0},
  {"dropout", IR_DROPOUT, fe_lw_dropout, 1, 2, {{"x", T}, {"p", AK_NUM}}, 0},
  {"softmax", IR_SOFTMAX, fe_lw_softmax, 1, 2, {{"x", T}, {"axis", AK_INT}}, 0},
  {"log_softmax", IR_LOG_SOFTMAX, fe_lw_softmax, 1, 2, {{"x", T}, {"axis", AK_INT}}, 0},
  /* comparisons: bool results */
  COMPARE("less", LESS), COMPARE("less_equal", LESS_EQUAL), COMPARE("greater", GREATER),
  COMPARE("greater_equal", GREATER_EQUAL), COMPARE("equal", EQUAL), COMPARE("not_equal", NOT_EQUAL),
  {"where", IR_WHERE, fe_lw_where, 3, 3, {{"cond", T}, {"a", AK_TENSOR_OR_NUM}, {"b", AK_TENSOR_OR_NUM}}, 0},
  /* reductions, pooling */
  REDUCE("sum", SUM), REDUCE("mean", MEAN), REDUCE("max", MAX), REDUCE("min", MIN),
  {"argmax", IR_ARGMAX, fe_lw_reduce, 2, 3, {{"x", T}, {"axis", AK_INT}, {"keepdims", AK_BOOL}}, 0},
  {"argmin", IR_ARGMIN, fe_lw_reduce, 2, 3, {{"x", T}, {"axis", AK_INT}, {"keepdims", AK_BOOL}}, 0},
  POOL("maxpool2d", MAXPOOL2D), POOL("avgpool2d", AVGPOOL2D),
  POOL("maxpool1d", MAXPOOL2D), POOL("avgpool1d", AVGPOOL2D), /* the same ops on [N, C, L] (ir/conv.h) */
  {"global_avgpool", IR_MEAN, fe_lw_global_pool, 1, 1, {{"x", T}}, 0},  /* reshape + mean: [N, C] */
  {"global_maxpool", IR_MAX, fe_lw_global_pool, 1, 1, {{"x", T}}, 0},
  {"upsample", IR_CONCAT, fe_lw_upsample, 2, 2, {{"x", T}, {"scale", AK_INT}}, 0}, /* nearest: reshape + concat */
  /* data movement */
  {"reshape", IR_RESHAPE, fe_lw_reshape, 2, 2, {{"x", T}, {"shape", AK_INTLIST}}, 0},
  {"flatten", IR_RESHAPE, fe_lw_flatten, 1, 1, {{"x", T}}, 0},
  {"transpose", IR_TRANSPOSE, fe_lw_transpose, 1, 2, {{"x", T}, {"perm", AK_INTLIST}}, 0},
  {"concat", IR_CONCAT, fe_lw_concat, 1, 2, {{"tensors", AK_TENSORS}, {"axis", AK_INT}}, 0},
  {"slice", IR_SLICE, fe_lw_slice, 3, 4,
   {{"x", T}, {"axis", AK_INT}, {"start", AK_INT}, {"end", AK_INT}}, 0},
  {"arange", IR_ARANGE, fe_lw_arange, 1, 1, {{"n", AK_INT}}, 0},
  {"cast", IR_CAST, fe_lw_cast, 2, 2, {{"x", T}, {"dtype", AK_STR}}, 0},
  {"one_hot", IR_ONE_HOT, fe_lw_one_hot, 2, 2, {{"ids", T}, {"n", AK_INT}}, 0},
  {"cumsum", IR_CUMSUM, fe_lw_cumsum, 2, 2, {{"x", T}, {"axis", AK_INT}}, 0},
  {"gather", IR_GATHER, fe_lw_gather, 3, 3, {{"x", T}, {"axis", AK_INT}, {"index", T}}, 0},
  {"stack", IR_CONCAT, fe_lw_stack, 1, 2, {{"tensors", AK_TENSORS}, {"axis", AK_INT}}, 0},
  {"split", IR_SLICE, fe_lw_split, 2, 3, {{"x", T}, {"sizes", AK_INT_OR_INTLIST}, {"axis", AK_INT}}, 0}, /* a list: a, b = split(...) */
  /* losses */
  {"cross_entropy", IR_CROSS_ENTROPY, fe_lw_loss, 2, 5,
   {{"logits", T}, {"labels", T}, {"label_smoothing", AK_NUM}, {"weight", AK_NUMLIST}, {"ignore_index", AK_INT}}, 0},
  {"mse", IR_MSE, fe_lw_loss, 2, 2, {{"pred", T}, {"target", T}}, 0},
  {"bce", IR_BCE, fe_lw_loss, 2, 2, {{"logits", T}, {"labels", T}}, 0},
  {"kl_div", IR_KL_DIV, fe_lw_loss, 2, 2, {{"input", T}, {"target", T}}, 0},
  {"nll", IR_NLL, fe_lw_loss, 2, 2, {{"log_probs", T}, {"labels", T}}, 0},
  {"l1_loss", IR_L1, fe_lw_loss, 2, 2, {{"pred", T}, {"target", T}}, 0},
  {"huber", IR_HUBER, fe_lw_loss, 2, 3, {{"pred", T}, {"target", T}, {"delta", AK_NUM}}, 0},
  /* repeat(n, block, x, extra..., name=) is matched by check.c / lower.c */
  {"repeat", -1, NULL, 3, 3, {{"n", AK_INT}, {"block", AK_BLOCK}, {"x", T}}, 1},
};
const int fe_nbuiltins = (int)(sizeof fe_builtins / sizeof fe_builtins[0]);

const fe_builtin *fe_builtin_find(const char *name) {
  for (int i = 0; i < fe_nbuiltins; i++)
    if (strcmp(fe_builtins[i].name, name) == 0) return &fe_builtins[i];
  return NULL;
}

const char *fe_builtin_suggest(const char *name) {
  const char *best = NULL;
  int cap = fe_suggest_cap(name), bd = cap + 1;
  for (int i = 0; i < fe_nbuiltins; i++) {
    int dd = fe_edit_distance(name, fe_builtins[i].name, cap);
    if (dd < bd) { bd = dd; best = fe_builtins[i].name; }
  }
  return best;
}

const char *fe_argkind_str(fe_argkind k) {
  switch (k) {
  case AK_TENSOR: return "a tensor";
  case AK_NUM: return "a number";
  case AK_TENSOR_OR_NUM: return "a tensor or a number";
  case AK_INT: return "an integer";
  case AK_BOOL: return "true or false";
  case AK_STR: return "a string";
  case AK_INTLIST: return "a list of integers";
  case AK_NUMLIST: return "a list of numbers";
  case AK_INT_OR_INTLIST: return "an integer or a list of integers";
  case AK_TENSORS: return "a list of tensors";
  case AK_INT_OR_STR: return "an integer or a string";
  case AK_BLOCK: return "the name of a block";
  }
  return "?";
}

static int find_arg(const fe_builtin *b, const char *name) {
  for (int i = 0; i < b->nargs; i++)
    if (strcmp(b->arg[i].name, name) == 0) return i;
  return -1;
}

static void no_such_arg(const fe_builtin *b, const fe_namedarg *na, fe_diag *d) {
  const char *best = NULL;
  int cap = fe_suggest_cap(na->name), bd = cap + 1;
  for (int i = 0; i < b->nargs; i++) {
    int dd = fe_edit_distance(na->name, b->arg[i].name, cap);
    if (dd < bd) { bd = dd; best = b->arg[i].name; }
  }
  if (best)
    fe_error(d, na->loc, "'%s' has no argument named '%s'; did you mean '%s'?", b->name, na->name, best);
  else
    fe_error(d, na->loc, "'%s' has no argument named '%s'", b->name, na->name);
}

int fe_bind_args(const fe_builtin *b, const fe_expr *call, const fe_expr **slot,
                 const fe_expr **name, fe_diag *d) {
  int errs = 0;
  for (int i = 0; i < FE_MAXARGS; i++) slot[i] = NULL;
  *name = NULL;
  for (int i = 0; i < call->nitems; i++) {
    if (i < b->nargs) { slot[i] = call->items[i]; continue; }
    fe_error(d, call->items[i]->loc, "'%s' takes at most %d argument%s, got %d", b->name, b->nargs,
             b->nargs == 1 ? "" : "s", call->nitems);
    errs++;
    break;
  }
  for (int i = 0; i < call->nnamed; i++) {
    const fe_namedarg *na = &call->named[i];
    if (b->named && strcmp(na->name, "name") == 0) {
      if (*name) { fe_error(d, na->loc, "argument 'name' given twice"); errs++; }
      *name = na->value;
      continue;
    }
    int k = find_arg(b, na->name);
    if (k < 0) {
      no_such_arg(b, na, d);
      errs++;
    } else if (slot[k]) {
      fe_error(d, na->loc, "argument '%s' of '%s' given twice", na->name, b->name);
      errs++;
    } else {
      slot[k] = na->value;
    }
  }
  for (int i = 0; i < b->nreq; i++) {
    if (slot[i]) continue;
    fe_error(d, call->loc, "'%s' needs argument '%s' (%s)", b->name, b->arg[i].name,
             fe_argkind_str(b->arg[i].kind));
    errs++;
  }
  return errs;
}
