/* layers.c -- lowering of every builtin: parameterless ops (attributes from
 * arguments, axes normalised) and the layers that own parameters (their
 * names, shapes and default initialisers follow PyTorch):
 *
 *   dense      N.weight [in, units] xavier, N.bias [units] zeros
 *   conv2d     N.weight [out, in/groups, k, k] he (fan_in = in/groups*k*k), N.bias [out] zeros
 *   conv1d     N.weight [out, in/groups, k] he (fan_in = in/groups*k), N.bias [out] zeros
 *   embedding  N.weight [vocab, dim] normal(std 1), as torch.nn.Embedding
 *   layernorm  N.weight [d] ones, N.bias [d] zeros
 *   batchnorm  N.weight [C] ones, N.bias [C] zeros, buffers N.running_mean [C] zeros and
 *              N.running_var [C] ones (saved with the weights, updated by the training step)
 *   groupnorm  N.weight [C] ones, N.bias [C] zeros
 *   rmsnorm    N.weight [d] ones
 *   attention  N.qkv.weight [d, 3d], N.proj.weight [d, d] xavier; biases zeros
 *   rnn/lstm/gru  N.weight_ih [in, G h], N.weight_hh [h, G h], N.bias [G h] (gru: N.bias_ih,
 *              N.bias_hh), uniform(+-1/sqrt(hidden)), as PyTorch; stacked or bidirectional:
 *              N.l<l>.weight_ih .. and the reverse direction's N.l<l>.rev.weight_ih ..
 *   param      N: shape, init as given (default normal, std 0.02)
 *
 * The train block's `init =` replaces the default of the weight matrices of
 * dense, conv1d, conv2d, attention and the recurrent layers (not biases, norms,
 * embeddings or explicit param()). */
#include <math.h>
#include <string.h>
#include "sema.h"

static ir_loc argloc(const fe_args *a, int i) { return a->slot[i] ? a->slot[i]->loc : a->call->loc; }

static int64_t get_int(const fe_args *a, int i, int64_t dflt) {
  return a->v[i].k == V_NUM ? a->v[i].num.i : dflt;
}
static double get_num(const fe_args *a, int i, double dflt) {
  return a->v[i].k == V_NUM ? a->v[i].num.f : dflt;
}
static int get_bool(const fe_args *a, int i, int dflt) {
  return a->v[i].k == V_BOOL ? (int)a->v[i].num.i : dflt;
}
static const char *get_str(const fe_args *a, int i, const char *dflt) {
  return a->v[i].k == V_STR ? a->v[i].str : dflt;
}

/* An integer argument that must be >= lo. */
static int want_int(fe_lctx *L, const fe_args *a, int i, int64_t dflt, int64_t lo, int64_t *out) {
  *out = get_int(a, i, dflt);
  if (*out >= lo) return 0;
  fe_error(L->d, argloc(a, i), "argument '%s' of '%s' must be at least %lld, got %lld", a->b->arg[i].name,
           a->b->name, (long long)lo, (long long)*out);
  return -1;
}

static const ir_shape *shape_of(fe_lctx *L, int id) { return &fe_nodep(L, id)->shape; }

static const char *tensor_str(fe_lctx *L, int id, char *buf, size_t n) {
  const ir_node *x = fe_nodep(L, id);
  char s[200];
  snprintf(buf, n, "%s%s", ir_dtype_name(x->dtype), ir_shape_str(&x->shape, s, sizeof s));
  return buf;
}

/* Argument i must be a tensor of rank in [lo, hi], of a float dtype if `fl`. */
static int want_tensor(fe_lctx *L, const fe_args *a, int i, int lo, int hi, int fl, const char *what) {
  int id = a->v[i].node;
  const ir_node *x = fe_nodep(L, id);
  char b[240];
  if (x->shape.rank < lo || x->shape.rank > hi) {
    fe_error(L->d, argloc(a, i), "'%s' expects %s, got %s", a->b->name, what, tensor_str(L, id, b, sizeof b));
    return -1;
  }
  if (fl && !ir_dtype_is_float(x->dtype)) {
    fe_error(L->d, argloc(a, i), "'%s' expects a floating-point tensor, got %s", a->b->name,
             tensor_str(L, id, b, sizeof b));
    return -1;
  }
  return 0;
}

static int set_out(fe_val *out, int id) {
  if (id < 0) return -1;
  out->k = V_TENSOR;
  out->node = id;
  return 0;
}

static int one(fe_lctx *L, fe_args *a, const ir_attr *attr, fe_val *out) {
  int x = a->v[0].node;
  return set_out(out, fe_node(L, a->b->op, &x, 1, attr, a->call->loc));
}

/* The dtype of a layer's parameters: the input's float type, else f32. */
static ir_dtype pdtype(fe_lctx *L, int x) {
  ir_dtype t = fe_nodep(L, x)->dtype;
  return ir_dtype_is_float(t) ? t : IR_F32;
}

static ir_shape shp(int rank, int64_t a, int64_t b, int64_t c, int64_t d) {
  ir_shape s = {.rank = rank, .d = {a, b, c, d}};
  return s;
}

/* ---- parameterless ops ---- */

int fe_lw_unary(fe_lctx *L, fe_args *a, fe_val *out) { return one(L, a, NULL, out); }

int fe_lw_leaky_relu(fe_lctx *L, fe_args *a, fe_val *out) {
  ir_attr at = {0};
  at.f = get_num(a, 1, 0.01);
  return one(L, a, &at, out);
}

int fe_lw_gelu(fe_lctx *L, fe_args *a, fe_val *out) {
  const char *s = get_str(a, 1, "none");
  ir_attr at = {0};
  if (strcmp(s, "tanh") == 0) at.approx = 1;
  else if (strcmp(s, "none") != 0) {
    fe_error(L->d, argloc(a, 1), "'approx' of 'gelu' must be \"none\" or \"tanh\", got \"%s\"", s);
    return -1;
  }
  return one(L, a, &at, out);
}

int fe_lw_softmax(fe_lctx *L, fe_args *a, fe_val *out) {
  ir_attr at = {0};
  if (fe_axis(L, get_int(a, 1, -1), shape_of(L, a->v[0].node)->rank, argloc(a, 1), &at.axis)) return -1;
  return one(L, a, &at, out);
}

int fe_lw_pow(fe_lctx *L, fe_args *a, fe_val *out) {
  ir_attr at = {0};
  at.f = get_num(a, 1, 1);
  return one(L, a, &at, out);
}

/* torch.clamp: an absent bound is an infinite one; at least one is needed */
int fe_lw_clamp(fe_lctx *L, fe_args *a, fe_val *out) {
  if (a->v[1].k != V_NUM && a->v[2].k != V_NUM) {
    fe_error(L->d, a->call->loc, "'clamp' needs 'min' or 'max' (or both)");
    return -1;
  }
  if (want_tensor(L, a, 0, 0, IR_MAXDIM, 1, "a tensor")) return -1;
  ir_attr at = {0};
  at.f = get_num(a, 1, -INFINITY);
  at.f2 = get_num(a, 2, INFINITY);
  if (isnan(at.f) || isnan(at.f2)) {
    fe_error(L->d, argloc(a, isnan(at.f) ? 1 : 2), "'clamp' bounds must be numbers, got nan");
    return -1;
  }
  return one(L, a, &at, out);
}

/* less(x, y) ...: x and y promoted as in x + y (numbers take the tensor's
 * dtype), then compared; the result is bool */
int fe_lw_compare(fe_lctx *L, fe_args *a, fe_val *out) {
  if (a->v[0].k != V_TENSOR && a->v[1].k != V_TENSOR) {
    fe_error(L->d, a->call->loc, "'%s' needs at least one tensor, got two numbers", a->b->name);
    return -1;
  }
  int in[2];
  if (fe_operands(L, &a->v[0], &a->v[1], 0, a->call->loc, in)) return -1;
  return set_out(out, fe_node(L, a->b->op, in, 2, NULL, a->call->loc));
}

/* where(cond, a, b): cond a bool tensor (a comparison's result); a and b
 * promoted as in a + b, two numbers as torch.where's (f32 if either is real,
 * else i64) */
int fe_lw_where(fe_lctx *L, fe_args *a, fe_val *out) {
  char b[240];
  if (fe_nodep(L, a->v[0].node)->dtype != IR_BOOL) {
    fe_error(L->d, argloc(a, 0), "'where' needs a bool condition (a comparison such as less(x, 0)), got %s",
             tensor_str(L, a->v[0].node, b, sizeof b));
    return -1;
  }
  int in[3] = {a->v[0].node, -1, -1};
  if (a->v[1].k == V_NUM && a->v[2].k == V_NUM) {
    ir_dtype t = a->v[1].num.is_int && a->v[2].num.is_int ? IR_I64 : IR_F32;
    for (int j = 1; j < 3; j++)
      if ((in[j] = ir_add_const(L->g, t, a->v[j].num.f, a->call->loc)) < 0) return -1;
  } else if (fe_operands(L, &a->v[1], &a->v[2], 0, a->call->loc, in + 1)) {
    return -1;
  }
  return set_out(out, fe_node(L, IR_WHERE, in, 3, NULL, a->call->loc));
}

int fe_lw_dropout(fe_lctx *L, fe_args *a, fe_val *out) {
  ir_attr at = {0};
  at.f = get_num(a, 1, 0.5);
  if (!(at.f >= 0 && at.f < 1)) {
    fe_error(L->d, argloc(a, 1), "dropout probability must be in [0, 1), got %g", at.f);
    return -1;
  }
  return one(L, a, &at, out);
}

static int64_t list_int(const fe_val *v, int i) { return v->items[i].num.i; }

int fe_lw_reshape(fe_lctx *L, fe_args *a, fe_val *out) {
  const fe_val *lst = &a->v[1];
  const ir_shape *xs = shape_of(L, a->v[0].node);
  char b1[200];
  if (lst->n > IR_MAXDIM) {
    fe_error(L->d, argloc(a, 1), "reshape to %d dimensions; at most %d are supported", lst->n, IR_MAXDIM);
    return -1;
  }
  ir_attr at = {0};
  at.nlist = lst->n;
  int infer = -1;
  int64_t known = 1;
  for (int i = 0; i < lst->n; i++) {
    int64_t d = list_int(lst, i);
    if (d == -1 && infer < 0) { infer = i; continue; }
    if (d < 1) {
      fe_error(L->d, a->slot[1]->items ? a->slot[1]->items[i]->loc : argloc(a, 1),
               d == -1 ? "reshape allows only one -1" : "reshape dimension must be positive or -1, got %lld",
               (long long)d);
      return -1;
    }
    known = d > IR_MAX_ELEMS / known ? IR_MAX_ELEMS + 1 : known * d;
    at.list[i] = d;
  }
  int64_t have = ir_numel(xs);
  if (infer >= 0) {
    if (have % known != 0) {
      fe_error(L->d, argloc(a, 1), "cannot reshape %s (%lld elements) with -1: %lld is not divisible by %lld",
               ir_shape_str(xs, b1, sizeof b1), (long long)have, (long long)have, (long long)known);
      return -1;
    }
    at.list[infer] = have / known;
  }
  return one(L, a, &at, out);
}

int fe_lw_flatten(fe_lctx *L, fe_args *a, fe_val *out) {
  if (want_tensor(L, a, 0, 1, IR_MAXDIM, 0, "a tensor of rank >= 1")) return -1;
  const ir_shape *xs = shape_of(L, a->v[0].node);
  ir_attr at = {0};
  at.nlist = xs->rank == 1 ? 1 : 2;
  at.list[0] = xs->d[0];
  at.list[1] = ir_numel(xs) / xs->d[0];
  return one(L, a, &at, out);
}

int fe_lw_transpose(fe_lctx *L, fe_args *a, fe_val *out) {
  int r = shape_of(L, a->v[0].node)->rank;
  ir_attr at = {0};
  if (a->v[1].k == V_NONE) {
    if (r != 2) {
      fe_error(L->d, a->call->loc, "transpose(x) without a permutation needs a 2-d tensor, got rank %d", r);
      return -1;
    }
    at.nlist = 2;
    at.list[0] = 1;
    at.list[1] = 0;
    return one(L, a, &at, out);
  }
  const fe_val *p = &a->v[1];
  if (p->n != r) {
    fe_error(L->d, argloc(a, 1), "transpose permutation has %d entries for a tensor of rank %d", p->n, r);
    return -1;
  }
  at.nlist = r;
  for (int i = 0; i < r; i++)
    if (fe_axis(L, list_int(p, i), r, argloc(a, 1), &at.list[i])) return -1;
  return one(L, a, &at, out);
}

int fe_lw_concat(fe_lctx *L, fe_args *a, fe_val *out) {
  const fe_val *lst = &a->v[0];
  if (lst->n < 1) {
    fe_error(L->d, argloc(a, 0), "'concat' needs at least one tensor");
    return -1;
  }
  int *in = ar_alloc(L->A, sizeof(int) * (size_t)lst->n);
  for (int i = 0; i < lst->n; i++) in[i] = lst->items[i].node;
  ir_attr at = {0};
  if (fe_axis(L, get_int(a, 1, 0), shape_of(L, in[0])->rank, argloc(a, 1), &at.axis)) return -1;
  return set_out(out, fe_node(L, IR_CONCAT, in, lst->n, &at, a->call->loc));
}

int fe_lw_reduce(fe_lctx *L, fe_args *a, fe_val *out) {
  ir_attr at = {0};
  at.axis = -1; /* all axes */
  if (a->v[1].k == V_NUM &&
      fe_axis(L, a->v[1].num.i, shape_of(L, a->v[0].node)->rank, argloc(a, 1), &at.axis))
    return -1;
  at.keepdims = get_bool(a, 2, 0);
  return one(L, a, &at, out);
}

int fe_lw_pool(fe_lctx *L, fe_args *a, fe_val *out) {
  int one_d = strstr(a->b->name, "1d") != NULL; /* maxpool1d/avgpool1d: the same ops on [N, C, L] */
  if (want_tensor(L, a, 0, one_d ? 3 : 4, one_d ? 3 : 4, 1, one_d ? "a 3-d tensor [N, C, L]" : "a 4-d tensor [N, C, H, W]"))
    return -1;
  ir_attr at = {0};
  if (want_int(L, a, 1, 2, 1, &at.k)) return -1;
  if (want_int(L, a, 2, at.k, 1, &at.stride)) return -1;
  return one(L, a, &at, out);
}

/* global_avgpool(x) / global_maxpool(x): x [N, C, ...] (rank >= 3) to
 * [N, C], the mean (max) over every position: a reshape to [N, C, P] and
 * the reduction over its last axis, so no op of its own. */
int fe_lw_global_pool(fe_lctx *L, fe_args *a, fe_val *out) {
  if (want_tensor(L, a, 0, 3, IR_MAXDIM, 1, "a tensor [N, C, ...] of rank >= 3")) return -1;
  int x = a->v[0].node;
  const ir_shape *xs = shape_of(L, x);
  ir_attr r = {0}, at = {0};
  r.nlist = 3, r.list[0] = xs->d[0], r.list[1] = xs->d[1], r.list[2] = ir_numel(xs) / (xs->d[0] * xs->d[1]);
  int h = fe_node(L, IR_RESHAPE, &x, 1, &r, a->call->loc);
  if (h < 0) return -1;
  at.axis = 2;
  return set_out(out, fe_node(L, a->b->op, &h, 1, &at, a->call->loc));
}

/* upsample(x, scale): nearest-neighbour upsampling of x [N, C, L] or
 * [N, C, H, W] by an integer scale along every spatial axis, as
 * F.interpolate(mode="nearest", scale_factor=scale): each spatial axis gets
 * a unit axis after it, `scale` copies are concatenated along it, and the
 * pairs merge; so no op of its own, and the gradient (concat's: the copies'
 * gradients summed) comes free. */
int fe_lw_upsample(fe_lctx *L, fe_args *a, fe_val *out) {
  if (want_tensor(L, a, 0, 3, 4, 1, "a 3-d tensor [N, C, L] or a 4-d tensor [N, C, H, W]")) return -1;
  int64_t scale;
  if (want_int(L, a, 1, 2, 1, &scale)) return -1;
  int x = a->v[0].node;
  const ir_shape *xs = shape_of(L, x);
  if (scale > 1 << 16 || (int64_t)ir_numel(xs) * scale * (xs->rank == 4 ? scale : 1) > IR_MAX_ELEMS) {
    fe_error(L->d, argloc(a, 1), "upsample scale %lld is too large for %lld elements", (long long)scale,
             (long long)ir_numel(xs));
    return -1;
  }
  if (scale == 1) return set_out(out, x);
  ir_loc loc = a->call->loc;
  ir_attr r = {0}, fin = {0};
  r.nlist = 2;
  r.list[0] = xs->d[0], r.list[1] = xs->d[1];
  fin.nlist = xs->rank, fin.list[0] = xs->d[0], fin.list[1] = xs->d[1];
  for (int d = 2; d < xs->rank; d++) {
    r.list[r.nlist++] = xs->d[d], r.list[r.nlist++] = 1;
    fin.list[d] = xs->d[d] * scale;
  }
  int h = fe_node(L, IR_RESHAPE, &x, 1, &r, loc); /* [N, C, H, 1, W, 1] or [N, C, L, 1] */
  int *in = ar_alloc(L->A, sizeof(int) * (size_t)scale);
  for (int d = 3; d < r.nlist && h >= 0; d += 2) {
    ir_attr cat = {0};
    cat.axis = d;
    for (int64_t i = 0; i < scale; i++) in[i] = h;
    h = fe_node(L, IR_CONCAT, in, (int)scale, &cat, loc);
  }
  if (h < 0) return -1;
  return set_out(out, fe_node(L, IR_RESHAPE, &h, 1, &fin, loc));
}

int fe_lw_arange(fe_lctx *L, fe_args *a, fe_val *out) {
  ir_attr at = {0};
  if (want_int(L, a, 0, 1, 1, &at.n)) return -1;
  return set_out(out, fe_node(L, IR_ARANGE, NULL, 0, &at, a->call->loc));
}

/* Python slicing: negative bounds count from the end, then clamp. */
static int64_t py_index(int64_t i, int64_t dim) {
  if (i < 0) i += dim;
  return i < 0 ? 0 : i > dim ? dim : i;
}

int fe_lw_slice(fe_lctx *L, fe_args *a, fe_val *out) {
  const ir_shape *xs = shape_of(L, a->v[0].node);
  ir_attr at = {0};
  if (fe_axis(L, get_int(a, 1, 0), xs->rank, argloc(a, 1), &at.axis)) return -1;
  int64_t dim = xs->d[at.axis];
  at.start = py_index(get_int(a, 2, 0), dim);
  at.end = a->v[3].k == V_NONE ? dim : py_index(get_int(a, 3, dim), dim);
  if (at.start >= at.end) {
    fe_error(L->d, a->call->loc, "slice is empty: [%lld:%lld] of axis %lld (size %lld)",
             (long long)get_int(a, 2, 0), (long long)get_int(a, 3, dim), (long long)at.axis, (long long)dim);
    return -1;
  }
  return one(L, a, &at, out);
}

/* cast(x, "i64"): x converted to a dtype as torch's .to() (float to integer
 * truncates toward zero; bool is 0/1); the same dtype is x itself. */
int fe_lw_cast(fe_lctx *L, fe_args *a, fe_val *out) {
  ir_dtype t;
  const char *name = get_str(a, 1, "");
  if (ir_dtype_parse(name, &t) != 0) {
    fe_error(L->d, argloc(a, 1), "unknown dtype \"%s\" (expected f32, f16, bf16, i32, i64, i8, u8 or bool)", name);
    return -1;
  }
  int x = a->v[0].node;
  if (fe_nodep(L, x)->dtype == t) return set_out(out, x);
  ir_attr at = {0};
  at.i = t;
  return one(L, a, &at, out);
}

int fe_lw_one_hot(fe_lctx *L, fe_args *a, fe_val *out) {
  ir_attr at = {0};
  if (want_int(L, a, 1, 1, 1, &at.n)) return -1;
  return one(L, a, &at, out);
}

int fe_lw_cumsum(fe_lctx *L, fe_args *a, fe_val *out) {
  ir_attr at = {0};
  if (want_tensor(L, a, 0, 1, IR_MAXDIM, 1, "a tensor of rank >= 1")) return -1;
  if (fe_axis(L, get_int(a, 1, 0), shape_of(L, a->v[0].node)->rank, argloc(a, 1), &at.axis)) return -1;
  return one(L, a, &at, out);
}

int fe_lw_gather(fe_lctx *L, fe_args *a, fe_val *out) {
  ir_attr at = {0};
  if (want_tensor(L, a, 0, 1, IR_MAXDIM, 0, "a tensor of rank >= 1")) return -1;
  if (fe_axis(L, get_int(a, 1, 0), shape_of(L, a->v[0].node)->rank, argloc(a, 1), &at.axis)) return -1;
  int in[2] = {a->v[0].node, a->v[2].node};
  return set_out(out, fe_node(L, IR_GATHER, in, 2, &at, a->call->loc));
}

/* stack: each tensor reshaped with a new axis of size 1, then concatenated
 * along it (no op of its own). The axis counts in the result's rank. */
int fe_lw_stack(fe_lctx *L, fe_args *a, fe_val *out) {
  const fe_val *lst = &a->v[0];
  if (lst->n < 1) {
    fe_error(L->d, argloc(a, 0), "'stack' needs at least one tensor");
    return -1;
  }
  const ir_shape *s0 = shape_of(L, lst->items[0].node);
  if (s0->rank >= IR_MAXDIM) {
    fe_error(L->d, argloc(a, 0), "'stack' of rank-%d tensors: at most %d dimensions are supported", s0->rank,
             IR_MAXDIM);
    return -1;
  }
  ir_attr at = {0};
  if (fe_axis(L, get_int(a, 1, 0), s0->rank + 1, argloc(a, 1), &at.axis)) return -1;
  int *in = ar_alloc(L->A, sizeof(int) * (size_t)lst->n);
  for (int i = 0; i < lst->n; i++) {
    const ir_shape *si = shape_of(L, lst->items[i].node);
    char b1[200], b2[200];
    if (!ir_shape_eq(si, s0)) {
      fe_error(L->d, argloc(a, 0), "'stack' needs tensors of one shape: tensor %d is %s, tensor 0 is %s", i,
               ir_shape_str(si, b1, sizeof b1), ir_shape_str(s0, b2, sizeof b2));
      return -1;
    }
    ir_attr r = {0};
    r.nlist = s0->rank + 1;
    for (int d = 0, k = 0; d < r.nlist; d++) r.list[d] = d == at.axis ? 1 : s0->d[k++];
    in[i] = fe_node(L, IR_RESHAPE, &lst->items[i].node, 1, &r, a->call->loc);
    if (in[i] < 0) return -1;
  }
  return set_out(out, fe_node(L, IR_CONCAT, in, lst->n, &at, a->call->loc));
}

/* split(x, sizes, axis=0): torch.split -- `sizes` an integer (parts of that
 * size along the axis, the last one smaller when it does not divide) or a
 * list of positive sizes adding up to the axis. A list of tensors (bound by
 * `a, b = split(...)` or passed to concat/stack), one slice each: the
 * gradient is slice's (zeros around the part), summed over the parts. */
int fe_lw_split(fe_lctx *L, fe_args *a, fe_val *out) {
  if (want_tensor(L, a, 0, 1, IR_MAXDIM, 0, "a tensor of rank >= 1")) return -1;
  const ir_shape *xs = shape_of(L, a->v[0].node);
  ir_attr at = {0};
  if (fe_axis(L, get_int(a, 2, 0), xs->rank, argloc(a, 2), &at.axis)) return -1;
  int64_t dim = xs->d[at.axis], nparts;
  const fe_val *sz = &a->v[1];
  if (sz->k == V_NUM) {
    if (sz->num.i < 1) {
      fe_error(L->d, argloc(a, 1), "split size must be at least 1, got %lld", (long long)sz->num.i);
      return -1;
    }
    nparts = (dim + sz->num.i - 1) / sz->num.i;
  } else {
    int64_t total = 0;
    for (int i = 0; i < sz->n; i++) {
      if (sz->items[i].num.i < 1) {
        fe_error(L->d, argloc(a, 1), "split sizes must be at least 1, got %lld", (long long)sz->items[i].num.i);
        return -1;
      }
      total += sz->items[i].num.i > dim ? dim + 1 : sz->items[i].num.i; /* no overflow */
    }
    if (total != dim || sz->n < 1) {
      fe_error(L->d, argloc(a, 1), "split sizes must add up to the size of axis %lld (%lld)", (long long)at.axis,
               (long long)dim);
      return -1;
    }
    nparts = sz->n;
  }
  if (nparts > 4096) {
    fe_error(L->d, argloc(a, 1), "split makes %lld parts; at most 4096", (long long)nparts);
    return -1;
  }
  fe_val *items = ar_alloc(L->A, sizeof *items * (size_t)nparts);
  int x = a->v[0].node;
  for (int64_t i = 0; i < nparts; i++) {
    int64_t len = sz->k == V_NUM ? sz->num.i : sz->items[i].num.i;
    at.end = at.start + len < dim ? at.start + len : dim;
    int id = nparts == 1 ? x : fe_node(L, IR_SLICE, &x, 1, &at, a->call->loc);
    if (id < 0) return -1;
    items[i] = (fe_val){.k = V_TENSOR, .node = id};
    at.start = at.end;
  }
  out->k = V_LIST;
  out->items = items;
  out->n = (int)nparts;
  return 0;
}

/* cross_entropy's weight=[w0, w1, ...]: one finite number per class, as an
 * f32 constant [C] (the op's third input). */
static int ce_weight(fe_lctx *L, const fe_args *a, int *w) {
  const fe_val *lst = &a->v[3];
  *w = -1;
  if (lst->k != V_LIST) return 0;
  const ir_shape *sx = shape_of(L, a->v[0].node);
  int64_t C = sx->rank ? sx->d[sx->rank - 1] : 0;
  if (lst->n != C) {
    fe_error(L->d, argloc(a, 3), "weight must give one number per class: %lld classes, got %d numbers", (long long)C,
             lst->n);
    return -1;
  }
  double *data = ar_alloc(L->g->A, sizeof(double) * (size_t)C);
  for (int64_t j = 0; j < C; j++) {
    data[j] = lst->items[j].num.f;
    if (!isfinite(data[j]) || !isfinite((float)data[j])) {
      fe_error(L->d, argloc(a, 3), "weight %lld is %g, not a finite f32 number", (long long)j, data[j]);
      return -1;
    }
  }
  if ((*w = ir_add_const(L->g, IR_F32, 0.0, a->call->loc)) < 0) return -1;
  ir_node *c = &L->g->nodes[*w];
  c->shape.rank = 1;
  c->shape.d[0] = C;
  c->data = data;
  return 0;
}

int fe_lw_loss(fe_lctx *L, fe_args *a, fe_val *out) {
  ir_attr at = {0};
  int w = -1;
  if (a->b->op == IR_CROSS_ENTROPY) {
    at.f = get_num(a, 2, 0);
    if (!(at.f >= 0 && at.f < 1)) {
      fe_error(L->d, argloc(a, 2), "label_smoothing must be in [0, 1), got %g", at.f);
      return -1;
    }
    /* ignore_index: any integer, as PyTorch, whose default -100 applies when
     * it is not given (attr k = 2: the default, k = 1: given; every backend
     * ignores the index either way) */
    at.k = a->v[4].k == V_NUM ? 1 : 2, at.n = a->v[4].k == V_NUM ? a->v[4].num.i : -100;
    if (ce_weight(L, a, &w)) return -1;
  }
  if (a->b->op == IR_HUBER) {
    at.f = get_num(a, 2, 1.0);
    if (!(at.f > 0 && at.f < INFINITY)) {
      fe_error(L->d, argloc(a, 2), "delta must be a positive number, got %g", at.f);
      return -1;
    }
  }
  int in[3] = {a->v[0].node, a->v[1].node, w};
  return set_out(out, fe_node(L, a->b->op, in, w < 0 ? 2 : 3, &at, a->call->loc));
}

/* ---- layers with parameters ---- */

int fe_lw_dense(fe_lctx *L, fe_args *a, fe_val *out) {
  if (want_tensor(L, a, 0, 1, IR_MAXDIM, 1, "a tensor of rank >= 1")) return -1;
  int x = a->v[0].node;
  int64_t units;
  if (want_int(L, a, 1, 1, 1, &units)) return -1;
  const ir_shape *xs = shape_of(L, x);
  int64_t in = xs->d[xs->rank - 1];
  ir_loc loc = a->call->loc;
  const char *base = fe_layer_name(L, "dense", a->name);
  ir_shape ws = shp(2, in, units, 0, 0), bs = shp(1, units, 0, 0, 0);
  int w = fe_param(L, base, "weight", pdtype(L, x), &ws, IR_INIT_XAVIER, 0, in, units, 1, loc);
  if (w < 0) return -1;
  int b = get_bool(a, 2, 1) ? fe_param(L, base, "bias", pdtype(L, x), &bs, IR_INIT_ZEROS, 0, 0, 0, 0, loc) : -2;
  if (b == -1) return -1;
  int mm[2] = {x, w};
  int y = fe_node(L, IR_MATMUL, mm, 2, NULL, loc);
  if (y < 0 || b == -2) return set_out(out, y);
  int ad[2] = {y, b};
  return set_out(out, fe_node(L, IR_ADD, ad, 2, NULL, loc));
}

/* padding: an integer >= 0, "valid" (0) or "same" (stride 1 only; the
 * dilated window's extra column goes bottom/right, as PyTorch). */
static int conv_padding(fe_lctx *L, const fe_args *a, int64_t span, int64_t stride, ir_attr *at) {
  const fe_val *p = &a->v[4];
  if (p->k == V_STR) {
    if (strcmp(p->str, "valid") == 0) return 0;
    if (strcmp(p->str, "same") != 0) {
      fe_error(L->d, argloc(a, 4), "padding must be an integer, \"same\" or \"valid\", got \"%s\"", p->str);
      return -1;
    }
    if (stride != 1) {
      fe_error(L->d, argloc(a, 4), "padding=\"same\" needs stride 1, got stride %lld", (long long)stride);
      return -1;
    }
    at->pad = (span - 1) / 2;
    at->pad_hi = span - 1 - at->pad;
    return 0;
  }
  if (want_int(L, a, 4, 0, 0, &at->pad)) return -1;
  at->pad_hi = at->pad;
  return 0;
}

/* conv1d(x [N, C, L], ...) and conv2d(x [N, C, H, W], ...): one op, IR_CONV2D,
 * whose rank says which (ir/conv.h). Weights as PyTorch's:
 * [out, in/groups, k] or [out, in/groups, k, k]. */
int fe_lw_conv2d(fe_lctx *L, fe_args *a, fe_val *out) {
  int one_d = strcmp(a->b->name, "conv1d") == 0, rank = one_d ? 3 : 4;
  if (want_tensor(L, a, 0, rank, rank, 1, one_d ? "a 3-d tensor [N, C, L]" : "a 4-d tensor [N, C, H, W]"))
    return -1;
  int x = a->v[0].node;
  ir_attr at = {0};
  int64_t ch, dil, groups;
  if (want_int(L, a, 1, 1, 1, &ch) || want_int(L, a, 2, 3, 1, &at.k) || want_int(L, a, 3, 1, 1, &at.stride) ||
      want_int(L, a, 6, 1, 1, &dil) || want_int(L, a, 7, 1, 1, &groups))
    return -1;
  int64_t in = shape_of(L, x)->d[1], k = at.k;
  if (k > 1 << 20 || ch > IR_MAX_ELEMS || dil > 1 << 20) {
    fe_error(L->d, argloc(a, k > 1 << 20 ? 2 : ch > IR_MAX_ELEMS ? 1 : 6), "%s kernel, channels or dilation is too large",
             a->b->name);
    return -1;
  }
  if (in % groups || ch % groups) {
    fe_error(L->d, argloc(a, 7), "groups=%lld must divide the input channels (%lld) and the output channels (%lld)",
             (long long)groups, (long long)in, (long long)ch);
    return -1;
  }
  if (conv_padding(L, a, dil * (k - 1) + 1, at.stride, &at)) return -1;
  at.k = groups > 1 ? groups : 0; /* the op's k is its groups; the kernel size comes from the weight */
  at.n = dil > 1 ? dil : 0;
  ir_loc loc = a->call->loc;
  const char *base = fe_layer_name(L, a->b->name, a->name);
  int64_t taps = one_d ? k : k * k;
  ir_shape ws = one_d ? shp(3, ch, in / groups, k, 0) : shp(4, ch, in / groups, k, k), bs = shp(1, ch, 0, 0, 0);
  int64_t fan_in = in / groups * taps, fan_out = ch / groups * taps;
  int in3[3] = {x, -1, -1};
  in3[1] = fe_param(L, base, "weight", pdtype(L, x), &ws, IR_INIT_HE, 0, fan_in, fan_out, 1, loc);
  if (in3[1] < 0) return -1;
  int nin = 2;
  if (get_bool(a, 5, 1)) {
    in3[2] = fe_param(L, base, "bias", pdtype(L, x), &bs, IR_INIT_ZEROS, 0, 0, 0, 0, loc);
    if (in3[2] < 0) return -1;
    nin = 3;
  }
  return set_out(out, fe_node(L, IR_CONV2D, in3, nin, &at, loc));
}

int fe_lw_embedding(fe_lctx *L, fe_args *a, fe_val *out) {
  int ids = a->v[0].node;
  char b[240];
  if (!ir_dtype_is_int(fe_nodep(L, ids)->dtype) || fe_nodep(L, ids)->dtype == IR_BOOL) {
    fe_error(L->d, argloc(a, 0), "'embedding' expects integer ids, got %s", tensor_str(L, ids, b, sizeof b));
    return -1;
  }
  int64_t vocab, dim;
  if (want_int(L, a, 1, 1, 1, &vocab) || want_int(L, a, 2, 1, 1, &dim)) return -1;
  ir_loc loc = a->call->loc;
  const char *base = fe_layer_name(L, "embedding", a->name);
  ir_shape ws = shp(2, vocab, dim, 0, 0);
  int w = fe_param(L, base, "weight", IR_F32, &ws, IR_INIT_NORMAL, 1.0, vocab, dim, 0, loc);
  if (w < 0) return -1;
  int in[2] = {ids, w};
  return set_out(out, fe_node(L, IR_EMBEDDING, in, 2, NULL, loc));
}

int fe_lw_layernorm(fe_lctx *L, fe_args *a, fe_val *out) {
  if (want_tensor(L, a, 0, 1, IR_MAXDIM, 1, "a tensor of rank >= 1")) return -1;
  int x = a->v[0].node;
  ir_attr at = {0};
  at.f = get_num(a, 1, 1e-5);
  if (!(at.f > 0)) {
    fe_error(L->d, argloc(a, 1), "'eps' of 'layernorm' must be positive, got %g", at.f);
    return -1;
  }
  const ir_shape *xs = shape_of(L, x);
  ir_shape s = shp(1, xs->d[xs->rank - 1], 0, 0, 0);
  ir_loc loc = a->call->loc;
  const char *base = fe_layer_name(L, "layernorm", a->name);
  int in[3] = {x, -1, -1};
  in[1] = fe_param(L, base, "weight", pdtype(L, x), &s, IR_INIT_ONES, 0, 0, 0, 0, loc);
  if (in[1] < 0) return -1;
  in[2] = fe_param(L, base, "bias", pdtype(L, x), &s, IR_INIT_ZEROS, 0, 0, 0, 0, loc);
  if (in[2] < 0) return -1;
  return set_out(out, fe_node(L, IR_LAYERNORM, in, 3, &at, loc));
}

/* A positive eps (argument i, default dflt) into at->f. */
static int want_eps(fe_lctx *L, const fe_args *a, int i, double dflt, ir_attr *at) {
  at->f = get_num(a, i, dflt);
  if (at->f > 0) return 0;
  fe_error(L->d, argloc(a, i), "'eps' of '%s' must be positive, got %g", a->b->name, at->f);
  return -1;
}

/* Parameters base.names[k] of shape [c] for k < n, initialised by inits[k];
 * their nodes into in[1..n]. */
static int channel_params(fe_lctx *L, fe_args *a, const char *base, int x, int64_t c, int n, const char *const *names,
                          const ir_init *inits, int *in) {
  ir_shape s = shp(1, c, 0, 0, 0);
  for (int k = 0; k < n; k++)
    if ((in[1 + k] = fe_param(L, base, names[k], pdtype(L, x), &s, inits[k], 0, 0, 0, 0, a->call->loc)) < 0)
      return -1;
  return 0;
}

static const char *const norm_names[] = {"weight", "bias", "running_mean", "running_var"};
static const ir_init norm_inits[] = {IR_INIT_ONES, IR_INIT_ZEROS, IR_INIT_ZEROS, IR_INIT_ONES};

/* batchnorm(x, eps, momentum) over axis 1; the running statistics are
 * buffers: weights the optimizer leaves alone (passes/optimizer.c updates them) */
int fe_lw_batchnorm(fe_lctx *L, fe_args *a, fe_val *out) {
  if (want_tensor(L, a, 0, 2, IR_MAXDIM, 1, "a tensor [N, C] or [N, C, ...]")) return -1;
  int x = a->v[0].node;
  ir_attr at = {0};
  if (want_eps(L, a, 1, 1e-5, &at)) return -1;
  at.f2 = get_num(a, 2, 0.1);
  if (!(at.f2 >= 0 && at.f2 <= 1)) {
    fe_error(L->d, argloc(a, 2), "'momentum' of 'batchnorm' must be in [0, 1], got %g", at.f2);
    return -1;
  }
  const char *base = fe_layer_name(L, "batchnorm", a->name);
  int in[5] = {x};
  if (channel_params(L, a, base, x, shape_of(L, x)->d[1], 4, norm_names, norm_inits, in)) return -1;
  L->g->params[L->g->nparams - 1].buffer = L->g->params[L->g->nparams - 2].buffer = 1;
  return set_out(out, fe_node(L, IR_BATCHNORM, in, 5, &at, a->call->loc));
}

/* groupnorm(x, groups, eps): torch.nn.GroupNorm with affine */
int fe_lw_groupnorm(fe_lctx *L, fe_args *a, fe_val *out) {
  if (want_tensor(L, a, 0, 2, IR_MAXDIM, 1, "a tensor [N, C] or [N, C, ...]")) return -1;
  int x = a->v[0].node;
  ir_attr at = {0};
  int64_t c = shape_of(L, x)->d[1];
  if (want_int(L, a, 1, 1, 1, &at.k) || want_eps(L, a, 2, 1e-5, &at)) return -1;
  if (c % at.k) {
    fe_error(L->d, argloc(a, 1), "'groups' of 'groupnorm' must divide the %lld channels, got %lld", (long long)c,
             (long long)at.k);
    return -1;
  }
  int in[3] = {x};
  if (channel_params(L, a, fe_layer_name(L, "groupnorm", a->name), x, c, 2, norm_names, norm_inits, in)) return -1;
  return set_out(out, fe_node(L, IR_GROUPNORM, in, 3, &at, a->call->loc));
}

/* rmsnorm(x, eps): over the last axis, with a weight (torch.nn.RMSNorm) */
int fe_lw_rmsnorm(fe_lctx *L, fe_args *a, fe_val *out) {
  if (want_tensor(L, a, 0, 1, IR_MAXDIM, 1, "a tensor of rank >= 1")) return -1;
  int x = a->v[0].node;
  ir_attr at = {0};
  if (want_eps(L, a, 1, 1e-6, &at)) return -1;
  const ir_shape *xs = shape_of(L, x);
  int in[2] = {x};
  if (channel_params(L, a, fe_layer_name(L, "rmsnorm", a->name), x, xs->d[xs->rank - 1], 1, norm_names, norm_inits,
                     in))
    return -1;
  return set_out(out, fe_node(L, IR_RMSNORM, in, 2, &at, a->call->loc));
}

/* The mask (argument 3) of an attention of x over keys c: lengths i32[B],
 * bool[B, Tk] or bool[B, Tq, Tk]. */
static int attn_mask_ok(fe_lctx *L, const fe_args *a, int x, int c) {
  const ir_node *m = fe_nodep(L, a->v[3].node);
  int64_t B = shape_of(L, x)->d[0], Tq = shape_of(L, x)->d[1], Tk = shape_of(L, c)->d[1];
  const ir_shape *s = &m->shape;
  if ((m->dtype == IR_I32 && s->rank == 1 && s->d[0] == B) ||
      (m->dtype == IR_BOOL && s->rank == 2 && s->d[0] == B && s->d[1] == Tk) ||
      (m->dtype == IR_BOOL && s->rank == 3 && s->d[0] == B && s->d[1] == Tq && s->d[2] == Tk))
    return 0;
  char b[240];
  fe_error(L->d, argloc(a, 3),
           "attention mask must be lengths i32[%lld] or a bool mask [%lld, %lld] or [%lld, %lld, %lld] (true "
           "attends), got %s",
           (long long)B, (long long)B, (long long)Tk, (long long)B, (long long)Tq, (long long)Tk,
           tensor_str(L, a->v[3].node, b, sizeof b));
  return -1;
}

static int attn_slice(fe_lctx *L, int w, int64_t axis, int64_t lo, int64_t hi, ir_loc loc) {
  ir_attr at = {0};
  at.axis = axis, at.start = lo, at.end = hi;
  return w < 0 ? -1 : fe_node(L, IR_SLICE, &w, 1, &at, loc);
}

/* attention with options: mha(x, wq, bq, c, wkv, bkv, wp, bp, mask?).
 * e = heads x hd is the inner width (d unless head_dim= sets hd): the
 * queries' and the context's, and the output projection's input.
 * Self-attention keeps one packed N.qkv.weight [d, e + 2 dk] (q, k, v
 * columns; dk = kv_heads * hd), sliced here; cross-attention has
 * N.q.weight [d, e] and N.kv.weight [dc, 2 dk] (k, then v); N.proj.weight
 * is [e, d]. */
static int attention_mha(fe_lctx *L, fe_args *a, const ir_attr *at, int64_t hd, fe_val *out) {
  int x = a->v[0].node, self = a->v[4].k == V_NONE, c = self ? x : a->v[4].node;
  if (!self && want_tensor(L, a, 4, 3, 3, 1, "a 3-d context [batch, Tk, dc]")) return -1;
  const ir_shape *sx = shape_of(L, x), *sc = shape_of(L, c);
  if (sc->d[0] != sx->d[0]) {
    fe_error(L->d, argloc(a, 4), "attention context batch %lld differs from the queries' batch %lld",
             (long long)sc->d[0], (long long)sx->d[0]);
    return -1;
  }
  if (a->v[3].k != V_NONE && attn_mask_ok(L, a, x, c)) return -1;
  int64_t d = sx->d[2], dc = sc->d[2], e = at->heads * hd, dk = at->k * hd;
  ir_loc loc = a->call->loc;
  const char *base = fe_layer_name(L, "attention", a->name);
  ir_dtype t = pdtype(L, x);
  int in[9], nin = 8;
  ir_shape pw = shp(2, e, d, 0, 0), pb = shp(1, d, 0, 0, 0);
  if (self) {
    ir_shape qw = shp(2, d, e + 2 * dk, 0, 0), qb = shp(1, e + 2 * dk, 0, 0, 0);
    int w = fe_param(L, base, "qkv.weight", t, &qw, IR_INIT_XAVIER, 0, d, e + 2 * dk, 1, loc);
    int b = fe_param(L, base, "qkv.bias", t, &qb, IR_INIT_ZEROS, 0, 0, 0, 0, loc);
    in[1] = attn_slice(L, w, 1, 0, e, loc), in[2] = attn_slice(L, b, 0, 0, e, loc);
    in[4] = attn_slice(L, w, 1, e, e + 2 * dk, loc), in[5] = attn_slice(L, b, 0, e, e + 2 * dk, loc);
  } else {
    ir_shape kw = shp(2, dc, 2 * dk, 0, 0), kb = shp(1, 2 * dk, 0, 0, 0), qw = shp(2, d, e, 0, 0), qb = shp(1, e, 0, 0, 0);
    in[1] = fe_param(L, base, "q.weight", t, &qw, IR_INIT_XAVIER, 0, d, e, 1, loc);
    in[2] = fe_param(L, base, "q.bias", t, &qb, IR_INIT_ZEROS, 0, 0, 0, 0, loc);
    in[4] = fe_param(L, base, "kv.weight", t, &kw, IR_INIT_XAVIER, 0, dc, 2 * dk, 1, loc);
    in[5] = fe_param(L, base, "kv.bias", t, &kb, IR_INIT_ZEROS, 0, 0, 0, 0, loc);
  }
  in[0] = x, in[3] = c;
  in[6] = fe_param(L, base, "proj.weight", t, &pw, IR_INIT_XAVIER, 0, e, d, 1, loc);
  in[7] = fe_param(L, base, "proj.bias", t, &pb, IR_INIT_ZEROS, 0, 0, 0, 0, loc);
  if (a->v[3].k != V_NONE) in[nin++] = a->v[3].node;
  for (int i = 1; i < nin; i++)
    if (in[i] < 0) return -1;
  return set_out(out, fe_node(L, IR_MHA, in, nin, at, loc));
}

/* attention(x, heads, causal=false, mask=, context=, rope=false,
 * kv_heads=heads, head_dim=d/heads): the plain form is IR_ATTENTION (packed
 * qkv, flash kernels, the decode pass); any option, or an inner width
 * heads x head_dim other than d (a model whose heads were pruned), makes it
 * IR_MHA. */
int fe_lw_attention(fe_lctx *L, fe_args *a, fe_val *out) {
  if (want_tensor(L, a, 0, 3, 3, 1, "a 3-d tensor [batch, T, d]")) return -1;
  int x = a->v[0].node;
  ir_attr at = {0};
  if (want_int(L, a, 1, 1, 1, &at.heads)) return -1;
  at.causal = get_bool(a, 2, 0);
  int64_t d = shape_of(L, x)->d[2], hd;
  if (a->v[7].k == V_NONE && d % at.heads != 0) {
    fe_error(L->d, argloc(a, 1), "attention width %lld is not divisible by heads=%lld (or give head_dim=)",
             (long long)d, (long long)at.heads);
    return -1;
  }
  if (want_int(L, a, 7, d / at.heads, 1, &hd)) return -1;
  if (hd > ((int64_t)1 << 24) / at.heads) {
    fe_error(L->d, argloc(a, 7), "attention heads=%lld x head_dim=%lld is too wide", (long long)at.heads,
             (long long)hd);
    return -1;
  }
  at.i = get_bool(a, 5, 0);
  if (want_int(L, a, 6, at.heads, 1, &at.k)) return -1;
  if (at.heads % at.k) {
    fe_error(L->d, argloc(a, 6), "attention kv_heads=%lld does not divide heads=%lld", (long long)at.k,
             (long long)at.heads);
    return -1;
  }
  if (at.i && hd % 2) {
    if (a->v[7].k == V_NONE)
      fe_error(L->d, argloc(a, 5), "rope=true needs an even head width, got %lld (width %lld / heads %lld)",
               (long long)hd, (long long)d, (long long)at.heads);
    else fe_error(L->d, argloc(a, 5), "rope=true needs an even head width, got head_dim=%lld", (long long)hd);
    return -1;
  }
  if (a->v[3].k != V_NONE || a->v[4].k != V_NONE || at.i || at.k != at.heads || at.heads * hd != d)
    return attention_mha(L, a, &at, hd, out);
  at.k = 0, at.i = 0;
  ir_loc loc = a->call->loc;
  const char *base = fe_layer_name(L, "attention", a->name);
  ir_dtype t = pdtype(L, x);
  ir_shape qw = shp(2, d, 3 * d, 0, 0), qb = shp(1, 3 * d, 0, 0, 0), pw = shp(2, d, d, 0, 0), pb = shp(1, d, 0, 0, 0);
  int in[5] = {x,
               fe_param(L, base, "qkv.weight", t, &qw, IR_INIT_XAVIER, 0, d, 3 * d, 1, loc),
               fe_param(L, base, "qkv.bias", t, &qb, IR_INIT_ZEROS, 0, 0, 0, 0, loc),
               fe_param(L, base, "proj.weight", t, &pw, IR_INIT_XAVIER, 0, d, d, 1, loc),
               fe_param(L, base, "proj.bias", t, &pb, IR_INIT_ZEROS, 0, 0, 0, 0, loc)};
  for (int i = 1; i < 5; i++)
    if (in[i] < 0) return -1;
  return set_out(out, fe_node(L, IR_ATTENTION, in, 5, &at, loc));
}

/* One recurrent op over x [B, T, in] with its parameters named base.pre*
 * (pre "" for a plain layer, "l<l>." or "l<l>.rev." in a stack). */
static int rec_layer(fe_lctx *L, const fe_args *a, int x, int64_t h, const char *base, const char *pre) {
  int64_t in = shape_of(L, x)->d[2];
  int gates = a->b->op == IR_LSTM ? 4 : a->b->op == IR_GRU ? 3 : 1;
  int64_t gh = gates * h;
  double bound = 1.0 / sqrt((double)h);
  ir_loc loc = a->call->loc;
  ir_dtype t = pdtype(L, x);
  ir_shape wih = shp(2, in, gh, 0, 0), whh = shp(2, h, gh, 0, 0), bs = shp(1, gh, 0, 0, 0);
  int ids[5] = {x, -1, -1, -1, -1}, nin = 4;
  ids[1] = fe_param(L, base, ar_printf(L->A, "%sweight_ih", pre), t, &wih, IR_INIT_UNIFORM, bound, in, gh, 1, loc);
  ids[2] = fe_param(L, base, ar_printf(L->A, "%sweight_hh", pre), t, &whh, IR_INIT_UNIFORM, bound, h, gh, 1, loc);
  if (a->b->op == IR_GRU) {
    ids[3] = fe_param(L, base, ar_printf(L->A, "%sbias_ih", pre), t, &bs, IR_INIT_UNIFORM, bound, 0, 0, 0, loc);
    ids[4] = fe_param(L, base, ar_printf(L->A, "%sbias_hh", pre), t, &bs, IR_INIT_UNIFORM, bound, 0, 0, 0, loc);
    nin = 5;
  } else {
    ids[3] = fe_param(L, base, ar_printf(L->A, "%sbias", pre), t, &bs, IR_INIT_UNIFORM, bound, 0, 0, 0, loc);
  }
  for (int i = 1; i < nin; i++)
    if (ids[i] < 0) return -1;
  ir_attr at = {0};
  at.n = h;
  return fe_node(L, a->b->op, ids, nin, &at, loc);
}

/* x [B, T, F] with its time axis reversed: gather(x, 1, index) with the
 * constant index[b, t, f] = T - 1 - t. An exact permutation whose gradient
 * (gather_grad's scatter-add) is the same permutation back, so the reverse
 * direction of a bidirectional layer runs on the existing recurrent ops. */
static int time_flip(fe_lctx *L, int x, ir_loc loc) {
  const ir_shape *s = shape_of(L, x);
  int64_t B = s->d[0], T = s->d[1], F = s->d[2], n = B * T * F;
  int ix = ir_add_const(L->g, IR_I32, 0, loc);
  if (ix < 0) return -1;
  double *v = ar_alloc(L->A, sizeof(double) * (size_t)n);
  for (int64_t e = 0; e < n; e++) v[e] = (double)(T - 1 - (e / F) % T);
  L->g->nodes[ix].shape = *s, L->g->nodes[ix].data = v;
  ir_attr at = {0};
  at.axis = 1;
  return fe_node(L, IR_GATHER, (int[]){x, ix}, 2, &at, loc);
}

/* rnn/lstm/gru(x, hidden, layers=1, bidirectional=false, dropout=0), as
 * torch.nn.RNN/LSTM/GRU(batch_first=True): layer l > 0 reads layer l - 1's
 * states (both directions concatenated on the last axis, forward first),
 * the reverse direction is the same op on the time-reversed sequence with
 * its result reversed back, and dropout (training only) is applied to every
 * layer's result but the last. A plain layer keeps its unprefixed names. */
int fe_lw_recurrent(fe_lctx *L, fe_args *a, fe_val *out) {
  if (want_tensor(L, a, 0, 3, 3, 1, "a 3-d tensor [batch, T, in]")) return -1;
  int x = a->v[0].node;
  int64_t h, layers;
  if (want_int(L, a, 1, 1, 1, &h) || want_int(L, a, 2, 1, 1, &layers)) return -1;
  int bidir = get_bool(a, 3, 0);
  double p = get_num(a, 4, 0.0);
  if (!(p >= 0 && p < 1)) {
    fe_error(L->d, argloc(a, 4), "dropout probability must be in [0, 1), got %g", p);
    return -1;
  }
  if (layers > 64) {
    fe_error(L->d, argloc(a, 2), "'%s' with %lld layers: at most 64 are supported", a->b->name, (long long)layers);
    return -1;
  }
  const char *base = fe_layer_name(L, a->b->name, a->name);
  ir_loc loc = a->call->loc;
  if (layers == 1 && !bidir) return set_out(out, rec_layer(L, a, x, h, base, ""));
  for (int64_t l = 0; l < layers && x >= 0; l++) {
    int y = rec_layer(L, a, x, h, base, ar_printf(L->A, "l%lld.", (long long)l));
    if (bidir && y >= 0) {
      int r = time_flip(L, x, loc);
      if (r >= 0) r = rec_layer(L, a, r, h, base, ar_printf(L->A, "l%lld.rev.", (long long)l));
      if (r >= 0) r = time_flip(L, r, loc);
      ir_attr cat = {0};
      cat.axis = 2;
      y = r < 0 ? -1 : fe_node(L, IR_CONCAT, (int[]){y, r}, 2, &cat, loc);
    }
    if (y >= 0 && p > 0 && l + 1 < layers) {
      ir_attr d = {0};
      d.f = p;
      y = fe_node(L, IR_DROPOUT, &y, 1, &d, loc);
    }
    x = y;
  }
  return set_out(out, x);
}

/* Fans of a free parameter: [in, out] for rank 2 (as dense), PyTorch's
 * [out, in, k...] convention above that. */
static void fans(const ir_shape *s, int64_t *fi, int64_t *fo) {
  int64_t rf = 1;
  for (int i = 2; i < s->rank; i++) rf *= s->d[i];
  if (s->rank == 0) { *fi = *fo = 1; }
  else if (s->rank == 1) { *fi = *fo = s->d[0]; }
  else if (s->rank == 2) { *fi = s->d[0]; *fo = s->d[1]; }
  else { *fi = s->d[1] * rf; *fo = s->d[0] * rf; }
}

int fe_lw_param(fe_lctx *L, fe_args *a, fe_val *out) {
  static const struct { const char *name; ir_init init; } inits[] = {
    {"normal", IR_INIT_NORMAL}, {"zeros", IR_INIT_ZEROS}, {"ones", IR_INIT_ONES},
    {"xavier", IR_INIT_XAVIER}, {"he", IR_INIT_HE}, {"uniform", IR_INIT_UNIFORM},
  };
  const fe_val *lst = &a->v[0];
  if (lst->n > IR_MAXDIM) {
    fe_error(L->d, argloc(a, 0), "param shape has %d dimensions; at most %d are supported", lst->n, IR_MAXDIM);
    return -1;
  }
  ir_shape s = {.rank = lst->n};
  for (int i = 0; i < lst->n; i++) {
    s.d[i] = list_int(lst, i);
    if (s.d[i] < 1) {
      fe_error(L->d, argloc(a, 0), "param dimension must be a positive integer, got %lld", (long long)s.d[i]);
      return -1;
    }
  }
  const char *iname = get_str(a, 1, "normal");
  int k = -1;
  for (int i = 0; i < (int)(sizeof inits / sizeof inits[0]); i++)
    if (strcmp(inits[i].name, iname) == 0) k = i;
  if (k < 0) {
    fe_error(L->d, argloc(a, 1), "unknown init \"%s\" (expected normal, zeros, ones, xavier, he or uniform)", iname);
    return -1;
  }
  double std = get_num(a, 2, 0.02);
  if (!(std > 0)) {
    fe_error(L->d, argloc(a, 2), "'std' of 'param' must be positive, got %g", std);
    return -1;
  }
  int64_t fi = 1, fo = 1;
  if (ir_numel(&s) > 0) fans(&s, &fi, &fo);
  const char *base = fe_layer_name(L, "param", a->name);
  return set_out(out, fe_param(L, base, NULL, IR_F32, &s, inits[k].init, std, fi, fo, 0, a->call->loc));
}
