/* ox_import.c -- the importer's core: graph checks (every value defined
 * once, no cycles, a topological order), the value table, naming in the
 * .nn, constants turned into parameters when a tensor needs them, the
 * inputs and outputs, and the files. Per-op handlers: ox_ops.c. */
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onnx_io.h"
#include "ox_impl.h"
#include "runtime/runtime.h"

#define DT(x) ONNX__TENSOR_PROTO__DATA_TYPE__##x

/* ---- text ---- */

void ox_buf_printf(ox_buf *b, const char *fmt, ...) {
  va_list ap;
  for (;;) {
    size_t room = b->cap - b->n;
    va_start(ap, fmt);
    int k = b->p ? vsnprintf(b->p + b->n, room, fmt, ap) : -2;
    va_end(ap);
    if (k >= 0 && (size_t)k < room) {
      b->n += (size_t)k;
      return;
    }
    size_t want = b->cap * 2 + (k > 0 ? (size_t)k : 0) + 256;
    char *p = realloc(b->p, want);
    if (!p) abort(); /* the importer's text is small next to the weights */
    b->p = p;
    b->cap = want;
  }
}

void ox_emit(ox_ctx *c, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  char *line = malloc((size_t)(k > 0 ? k : 0) + 1);
  if (!line) abort();
  va_start(ap, fmt);
  vsnprintf(line, (size_t)(k > 0 ? k : 0) + 1, fmt, ap);
  va_end(ap);
  ox_buf_printf(&c->nn, "%s\n", line);
  free(line);
}

/* ---- errors ---- */

static int node_prefix(ox_ctx *c, char *buf, size_t n) {
  const Onnx__NodeProto *nd = c->node;
  if (!nd) return snprintf(buf, n, "%s", "");
  return snprintf(buf, n, "node '%s' (%s, opset %d): ", nd->name && *nd->name ? nd->name : (nd->n_output ? nd->output[0] : "?"),
                  nd->op_type ? nd->op_type : "?", c->opset);
}

int ox_err(ox_ctx *c, const char *fmt, ...) {
  int k = node_prefix(c, c->msg, c->msgn);
  if (k < 0 || (size_t)k >= c->msgn) return -1;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->msg + k, c->msgn - (size_t)k, fmt, ap);
  va_end(ap);
  return -1;
}

int ox_unsup(ox_ctx *c, const char *attr, const char *fmt, ...) {
  char what[600];
  c->unsup = 1;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  if (attr) return ox_err(c, "unsupported: attribute '%s': %s", attr, what);
  return ox_err(c, "unsupported: %s", what);
}

/* ---- attributes ---- */

const Onnx__AttributeProto *ox_attr(const Onnx__NodeProto *n, const char *name) {
  for (size_t k = 0; k < n->n_attribute; k++)
    if (n->attribute[k]->name && strcmp(n->attribute[k]->name, name) == 0) return n->attribute[k];
  return NULL;
}
int64_t ox_attr_i(const Onnx__NodeProto *n, const char *name, int64_t dflt) {
  const Onnx__AttributeProto *a = ox_attr(n, name);
  return a && a->has_i ? a->i : dflt;
}
double ox_attr_f(const Onnx__NodeProto *n, const char *name, double dflt) {
  const Onnx__AttributeProto *a = ox_attr(n, name);
  return a && a->has_f ? a->f : dflt;
}
const char *ox_attr_s(const Onnx__NodeProto *n, const char *name, const char *dflt) {
  static char s[256]; /* one at a time: the caller compares it at once */
  const Onnx__AttributeProto *a = ox_attr(n, name);
  if (!a || !a->has_s) return dflt;
  size_t k = a->s.len < sizeof s - 1 ? a->s.len : sizeof s - 1;
  memcpy(s, a->s.data, k);
  s[k] = 0;
  return s;
}
int ox_attr_ints(const Onnx__NodeProto *n, const char *name, int64_t *out, int max) {
  const Onnx__AttributeProto *a = ox_attr(n, name);
  if (!a) return -1;
  int k = 0;
  for (size_t i = 0; i < a->n_ints && k < max; i++) out[k++] = a->ints[i];
  return k;
}

/* ---- dtypes ---- */

int ox_lathe_dtype(int t) {
  switch (t) {
  case DT(FLOAT): return LATHE_F32;
  case DT(FLOAT16): return LATHE_F16;
  case DT(BFLOAT16): return LATHE_BF16;
  case DT(INT32): return LATHE_I32;
  case DT(INT64): return LATHE_I64;
  case DT(INT8): return LATHE_I8;
  case DT(UINT8): return LATHE_U8;
  case DT(BOOL): return LATHE_BOOL;
  default: return -1;
  }
}
const char *ox_dt_name(int dt) { return lathe_dtype_name((lathe_dtype)dt); }
int ox_is_float_dt(int dt) { return dt == LATHE_F32 || dt == LATHE_F16 || dt == LATHE_BF16; }

/* ---- names ---- */

static const char *const reserved[] = {
  "model", "const", "input", "target", "output", "loss", "def", "return", "train", "true", "false", "repeat",
};

static int taken(ox_ctx *c, const char *s) {
  for (int i = 0; i < c->nused; i++)
    if (strcmp(c->used[i], s) == 0) return 1;
  for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++)
    if (strcmp(reserved[i], s) == 0) return 1;
  return 0;
}

static const char *take(ox_ctx *c, const char *s) {
  if (c->nused == c->usedcap) {
    c->usedcap = c->usedcap ? 2 * c->usedcap : 64;
    c->used = realloc(c->used, sizeof *c->used * (size_t)c->usedcap);
    if (!c->used) abort();
  }
  c->used[c->nused] = strdup(s);
  if (!c->used[c->nused]) abort();
  return c->used[c->nused++];
}

/* A legal identifier from an ONNX name ("/fc1/Gemm_output_0" -> "fc1_Gemm_output_0",
 * "onnx::Add_3" -> "onnx_Add_3", "1" -> "v1"), not yet used and not a word
 * of the language or the name of one of its calls. */
const char *ox_fresh(ox_ctx *c, const char *base) {
  char s[200];
  size_t k = 0;
  for (const char *p = base ? base : ""; *p && k < sizeof s - 16; p++) {
    char ch = isalnum((unsigned char)*p) ? *p : '_';
    if (ch == '_' && (k == 0 || s[k - 1] == '_')) continue; /* no leading or doubled _ */
    s[k++] = ch;
  }
  while (k > 0 && s[k - 1] == '_') k--;
  s[k] = 0;
  if (k == 0 || isdigit((unsigned char)s[0])) {
    memmove(s + 1, s, k + 1);
    s[0] = 'v';
  }
  extern int ox_is_call(const char *name);
  if (!taken(c, s) && !ox_is_call(s)) return take(c, s);
  char t[240];
  for (int i = 2;; i++) {
    snprintf(t, sizeof t, "%s_%d", s, i);
    if (!taken(c, t) && !ox_is_call(t)) return take(c, t);
  }
}

/* ---- values ---- */

static ox_val *find(ox_ctx *c, const char *name) {
  for (int i = c->nv - 1; i >= 0; i--)
    if (strcmp(c->v[i]->onnx, name) == 0) return c->v[i];
  return NULL;
}

static ox_val *new_val(ox_ctx *c, const char *name) {
  if (c->nv == c->cap) {
    c->cap = c->cap ? 2 * c->cap : 64;
    c->v = realloc(c->v, sizeof *c->v * (size_t)c->cap);
    if (!c->v) abort();
  }
  ox_val *v = calloc(1, sizeof *v);
  if (!v || !(v->onnx = strdup(name))) abort();
  c->v[c->nv++] = v;
  return v;
}

ox_val *ox_in(ox_ctx *c, const Onnx__NodeProto *n, int k) {
  if (k >= (int)n->n_input || !n->input[k] || !*n->input[k]) return NULL;
  return find(c, n->input[k]);
}

ox_val *ox_need(ox_ctx *c, const Onnx__NodeProto *n, int k) {
  ox_val *v = ox_in(c, n, k);
  if (!v) ox_err(c, "input %d is missing", k);
  return v;
}

static const ox_array *known(ox_ctx *c, const char *name) {
  for (int i = 0; i < c->o->nknown; i++) {
    const Onnx__TensorProto *t = c->o->known[i];
    if (t->name && strcmp(t->name, name) == 0) {
      ox_val *v = find(c, name);
      if (!v) return NULL;
      if (!v->cv) {
        ox_array *a = calloc(1, sizeof *a);
        if (!a || ox_tensor_decode(t, c->o->base_dir, a, c->msg, c->msgn)) {
          free(a);
          return NULL;
        }
        v->cv = a;
        v->known = 1;
      }
      return v->cv;
    }
  }
  return NULL;
}

const ox_array *ox_fixed(ox_ctx *c, ox_val *v) {
  (void)c;
  return v && v->cv && !v->known ? v->cv : NULL;
}

const ox_array *ox_const(ox_ctx *c, ox_val *v) {
  if (!v) return NULL;
  if (v->cv) return v->cv;
  return known(c, v->onnx);
}

const ox_array *ox_need_const(ox_ctx *c, const Onnx__NodeProto *n, int k) {
  ox_val *v = ox_need(c, n, k);
  if (!v) return NULL;
  const ox_array *a = ox_const(c, v);
  if (!a) ox_unsup(c, NULL, "input %d ('%s') must be a constant (an initializer or a Constant node)", k, v->onnx);
  return a;
}

const char *ox_shape_list(const int64_t *d, int rank, char *buf, size_t n) {
  size_t k = 0;
  k += (size_t)snprintf(buf + k, n - k, "[");
  for (int i = 0; i < rank && k < n; i++) k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? ", " : "", (long long)d[i]);
  if (k < n) snprintf(buf + k, n - k, "]");
  return buf;
}

int ox_numeric_literal(char *buf, size_t n, double f, int dt) {
  if (isinf(f) && ox_is_float_dt(dt)) { /* past f32's range: the literal becomes an infinity */
    snprintf(buf, n, "%s", f > 0 ? "1e39" : "(-1e39)");
    return 0;
  }
  if (!isfinite(f)) return -1;
  if (!ox_is_float_dt(dt)) {
    if (f != floor(f) || fabs(f) > 9e15) return -1;
    snprintf(buf, n, "%lld", (long long)f);
    return 0;
  }
  snprintf(buf, n, "%.9g", f);
  if (!strpbrk(buf, ".e")) strncat(buf, ".0", n - strlen(buf) - 1);
  if (buf[0] == '-') { /* the language has unary minus: keep it grouped */
    char t[64];
    snprintf(t, sizeof t, "(%s)", buf);
    snprintf(buf, n, "%s", t);
  }
  return 0;
}

const char *ox_add_param(ox_ctx *c, const char *base, const ox_array *a, const int64_t *dims, int rank,
                         int transpose2) {
  /* the parameter's name: the ONNX name where it is usable as a safetensors key */
  char pname[256];
  snprintf(pname, sizeof pname, "%s", base);
  for (char *p = pname; *p; p++)
    if (*p == '"' || *p == '\\' || (unsigned char)*p < 32) *p = '_';
  for (int i = 0; i < c->nw; i++)
    if (strcmp(c->w[i].name, pname) == 0) {
      snprintf(pname, sizeof pname, "%s.%d", base, c->nw);
      break;
    }
  if (c->nw == c->wcap) {
    c->wcap = c->wcap ? 2 * c->wcap : 32;
    c->w = realloc(c->w, sizeof *c->w * (size_t)c->wcap);
    if (!c->w) abort();
  }
  rt_sft_tensor *t = &c->w[c->nw++];
  memset(t, 0, sizeof *t);
  t->name = strdup(pname);
  t->dtype = RT_SFT_F32;
  t->rank = rank;
  int64_t n = 1;
  for (int i = 0; i < rank; i++) n *= (t->shape[i] = dims[i]);
  float *f = malloc(sizeof(float) * (size_t)(n ? n : 1));
  if (!f || !t->name) abort();
  if (transpose2) { /* a [r, c] constant stored as [c, r] */
    int64_t R = dims[1], C = dims[0];
    for (int64_t i = 0; i < R; i++)
      for (int64_t j = 0; j < C; j++) f[j * R + i] = (float)ox_get_f(a, i * C + j);
  } else {
    for (int64_t i = 0; i < n; i++) f[i] = (float)ox_get_f(a, i);
  }
  t->data = f;
  t->bytes = n * 4;
  return t->name;
}

/* A constant as a tensor in the .nn: a number where one will do, otherwise a
 * parameter (f32) holding it, cast to its dtype. */
static const char *materialise(ox_ctx *c, ox_val *v) {
  const ox_array *a = ox_const(c, v);
  char sh[400];
  if (ox_numel(v) == 0) {
    ox_unsup(c, NULL, "'%s' is an empty tensor; Lathe has no empty tensors", v->onnx);
    return NULL;
  }
  int64_t d1[OX_MAXDIM];
  int r1 = v->rank ? v->rank : 1;
  for (int i = 0; i < r1; i++) d1[i] = v->rank ? v->d[i] : 1;
  const char *pn = ox_add_param(c, v->onnx, a, d1, r1, 0);
  const char *b = ox_fresh(c, v->onnx);
  int cast = v->dt != LATHE_F32, scalar = v->rank == 0;
  char tail[64];
  snprintf(tail, sizeof tail, "%s%s%s%s", scalar ? ")" : "", cast ? ", \"" : "", cast ? ox_dt_name(v->dt) : "",
           cast ? "\")" : "");
  /* a scalar: the sum of a one-element parameter (the language has no rank-0 param) */
  ox_emit(c, "%s = %s%sparam(%s, init=\"zeros\", name=\"%s\")%s", b, cast ? "cast(" : "", scalar ? "sum(" : "",
          ox_shape_list(d1, r1, sh, sizeof sh), pn, tail);
  v->nn = strdup(b);
  return v->nn;
}

const char *ox_ref(ox_ctx *c, ox_val *v) {
  if (!v) return NULL;
  if (v->decl) {
    ox_buf_printf(c->hdr, "%s\n", v->decl);
    free(v->decl);
    v->decl = NULL;
  }
  if (v->nn) return v->nn;
  if (v->filled) {
    ox_unsup(c, NULL, "'%s' (a ConstantOfShape of a symbolic shape) used as a tensor", v->onnx);
    return NULL;
  }
  if (ox_const(c, v)) return materialise(c, v);
  ox_err(c, "'%s' has no value (an internal error of the importer)", v->onnx);
  return NULL;
}

/* Every handler but the recurrent ones writes output 0, so a node without
 * one is refused before its handler runs (handlers may then take
 * ox_out(.., 0, ..) as non-NULL). RNN, LSTM and GRU may leave Y empty and
 * keep only Y_h or Y_c; their handlers check each output. */
static int has_out0(ox_ctx *c, const Onnx__NodeProto *n) {
  static const char *const any_out[] = {"RNN", "LSTM", "GRU"};
  int first = 1;
  for (size_t i = 0; i < sizeof any_out / sizeof *any_out; i++)
    if (n->op_type && strcmp(n->op_type, any_out[i]) == 0) first = 0;
  for (size_t k = 0; k < (first ? 1 : n->n_output) && k < n->n_output; k++)
    if (n->output[k] && *n->output[k]) return 1;
  ox_err(c, first ? "the node has no output (output 0 is empty)" : "the node has no output");
  return 0;
}

static ox_val *def_out(ox_ctx *c, const Onnx__NodeProto *n, int k) {
  if (k >= (int)n->n_output || !n->output[k] || !*n->output[k]) return NULL;
  return new_val(c, n->output[k]);
}

ox_val *ox_out(ox_ctx *c, const Onnx__NodeProto *n, int k, int dt, int rank, const int64_t *d, const char *const *sym) {
  ox_val *v = def_out(c, n, k);
  if (!v) return NULL;
  v->dt = dt;
  v->rank = rank;
  for (int i = 0; i < rank; i++) {
    v->d[i] = d[i];
    v->sym[i] = sym ? sym[i] : NULL;
  }
  v->nn = strdup(ox_fresh(c, v->onnx));
  return v;
}

ox_val *ox_out_like(ox_ctx *c, const Onnx__NodeProto *n, int k, const ox_val *like, int dt) {
  int64_t d[OX_MAXDIM];
  const char *s[OX_MAXDIM];
  int rank = like->rank;
  for (int i = 0; i < rank; i++) d[i] = like->d[i], s[i] = like->sym[i];
  return ox_out(c, n, k, dt < 0 ? like->dt : dt, rank, d, s);
}

ox_val *ox_out_const(ox_ctx *c, const Onnx__NodeProto *n, int k, ox_array *a) {
  ox_val *v = def_out(c, n, k);
  if (!v) {
    ox_array_free(a);
    free(a);
    return NULL;
  }
  v->dt = ox_lathe_dtype(a->dtype);
  if (v->dt < 0) v->dt = ox_is_float(a->dtype) ? LATHE_F32 : LATHE_I64;
  v->rank = a->rank;
  for (int i = 0; i < a->rank; i++) v->d[i] = a->d[i];
  v->cv = a;
  return v;
}

int ox_alias(ox_ctx *c, const Onnx__NodeProto *n, int k, ox_val *src) {
  if (src->decl && !ox_ref(c, src)) return -1; /* an input read: declared now */
  ox_val *v = def_out(c, n, k);
  if (!v) return 0;
  v->dt = src->dt;
  v->rank = src->rank;
  memcpy(v->d, src->d, sizeof v->d);
  memcpy(v->sym, src->sym, sizeof v->sym);
  ox_const(c, src); /* a known input decoded once, on the original */
  v->cv = src->cv;
  v->known = src->known;
  v->sv = src->sv;
  v->borrowed = 1;
  if (src->nn && !(v->nn = strdup(src->nn))) abort();
  return 0;
}

int64_t ox_numel(const ox_val *v) {
  int64_t n = 1;
  for (int i = 0; i < v->rank; i++) {
    if (v->d[i] < 0) return -1;
    n = ox_mul(n, v->d[i]);
  }
  return n;
}

int ox_axis(ox_ctx *c, int64_t axis, int rank, int *out) {
  if (axis < -rank || axis >= rank) return ox_err(c, "axis %lld is out of range for rank %d", (long long)axis, rank);
  *out = (int)(axis < 0 ? axis + rank : axis);
  return 0;
}

int ox_broadcast(ox_ctx *c, const ox_val *a, const ox_val *b, int *rank, int64_t *d, const char **sym) {
  int r = a->rank > b->rank ? a->rank : b->rank;
  for (int i = 0; i < r; i++) {
    int ia = i - (r - a->rank), ib = i - (r - b->rank);
    int64_t da = ia >= 0 ? a->d[ia] : 1, db = ib >= 0 ? b->d[ib] : 1;
    const char *sa = ia >= 0 ? a->sym[ia] : NULL, *sb = ib >= 0 ? b->sym[ib] : NULL;
    if (da == 1) d[i] = db, sym[i] = sb;
    else if (db == 1 || (da == db && (da >= 0 || (sa && sb && strcmp(sa, sb) == 0)))) d[i] = da, sym[i] = sa;
    else {
      char s1[200], s2[200];
      return ox_err(c, "shapes %s and %s do not broadcast", ox_shape_list(a->d, a->rank, s1, sizeof s1),
                    ox_shape_list(b->d, b->rank, s2, sizeof s2));
    }
  }
  *rank = r;
  return 0;
}

/* ---- the graph ---- */

static const ox_op *find_op(const char *name) {
  for (int i = 0; i < ox_nops; i++)
    if (strcmp(ox_ops[i].op, name) == 0) return &ox_ops[i];
  return NULL;
}

static int check_attrs(ox_ctx *c, const Onnx__NodeProto *n, const ox_op *op) {
  for (size_t k = 0; k < n->n_attribute; k++) {
    const char *a = n->attribute[k]->name ? n->attribute[k]->name : "";
    const char *p = op->attrs;
    size_t la = strlen(a);
    int ok = 0;
    while (p && *p && !ok) {
      const char *e = strchr(p, ',');
      size_t l = e ? (size_t)(e - p) : strlen(p);
      ok = l == la && la > 0 && strncmp(p, a, l) == 0;
      p = e ? e + 1 : NULL;
    }
    if (!ok) return ox_unsup(c, a, "%s does not take it here", n->op_type);
  }
  return 0;
}

static int defined(ox_ctx *c, const char *name) { return find(c, name) != NULL; }

int ox_defined(ox_ctx *c, const char *name) { return defined(c, name); }

/* Import node j: its handler, then a check that every output something
 * reads got a value. c->cur and c->node are j's while it runs (the handlers'
 * look-ahead starts after c->cur) and restored after, so a pattern may run
 * a later node early (ox_pull). */
int ox_run_node(ox_ctx *c, int j) {
  int cur = c->cur;
  const Onnx__NodeProto *was = c->node, *n = c->nodes[j];
  c->cur = j;
  c->node = n;
  int r = -1;
  const ox_op *op = find_op(n->op_type ? n->op_type : "");
  if (n->domain && *n->domain && strcmp(n->domain, "ai.onnx") != 0)
    ox_unsup(c, NULL, "operators of domain '%s' are not supported", n->domain);
  else if (!op)
    ox_unsup(c, NULL, "the operator %s has no Lathe equivalent in this importer", n->op_type ? n->op_type : "?");
  else if (has_out0(c, n) && !check_attrs(c, n, op) && !op->fn(c, n))
    r = 0;
  for (size_t k = 0; !r && k < n->n_output; k++)
    if (n->output[k] && *n->output[k] && !find(c, n->output[k]) && ox_uses(c, n->output[k]))
      r = ox_unsup(c, NULL, "output %zu ('%s') is not supported", k, n->output[k]);
  if (!r) c->cur = cur, c->node = was; /* on an error the message's node stays */
  return r;
}

/* Kahn's order over value names: a node is ready when every input it
 * names is defined. A node never ready reads an undefined value or sits on
 * a cycle; which one is told apart for the message. */
static int order_nodes(ox_ctx *c, const Onnx__GraphProto *g, const Onnx__NodeProto ***out) {
  size_t nn = g->n_node;
  /* A node without an op_type is malformed (the field is required); said
   * here once, so the pattern matchers may compare any node's op_type. */
  for (size_t i = 0; i < nn; i++)
    if (!g->node[i]->op_type || !*g->node[i]->op_type) {
      c->node = g->node[i];
      return ox_err(c, "node %zu has no op_type", i);
    }
  const Onnx__NodeProto **ord = malloc(sizeof *ord * (nn ? nn : 1));
  unsigned char *done = calloc(nn ? nn : 1, 1);
  char **made = NULL; /* outputs of nodes placed so far */
  size_t nmade = 0;
  if (!ord || !done) abort();
  size_t nouts = 1;
  for (size_t i = 0; i < nn; i++) nouts += g->node[i]->n_output;
  made = malloc(sizeof *made * nouts);
  if (!made) abort();
  size_t placed = 0;
  for (int progress = 1; progress && placed < nn;) {
    progress = 0;
    for (size_t i = 0; i < nn; i++) {
      if (done[i]) continue;
      const Onnx__NodeProto *n = g->node[i];
      int ready = 1;
      for (size_t k = 0; k < n->n_input && ready; k++) {
        const char *in = n->input[k];
        if (!in || !*in || defined(c, in)) continue;
        ready = 0;
        for (size_t m = 0; m < nmade && !ready; m++) ready = strcmp(made[m], in) == 0;
      }
      if (!ready) continue;
      done[i] = 1;
      ord[placed++] = n;
      progress = 1;
      for (size_t k = 0; k < n->n_output; k++) {
        if (!n->output[k] || !*n->output[k]) continue;
        for (size_t m = 0; m < nmade; m++)
          if (strcmp(made[m], n->output[k]) == 0) {
            c->node = n;
            free(ord), free(done), free(made);
            return ox_err(c, "output '%s' is defined twice", n->output[k]);
          }
        made[nmade++] = n->output[k];
      }
    }
  }
  int r = 0;
  if (placed < nn) {
    /* the first unplaced node: does it read something nothing defines? */
    for (size_t i = 0; i < nn && !r; i++) {
      if (done[i]) continue;
      const Onnx__NodeProto *n = g->node[i];
      c->node = n;
      for (size_t k = 0; k < n->n_input && !r; k++) {
        const char *in = n->input[k];
        if (!in || !*in || defined(c, in)) continue;
        int some = 0;
        for (size_t j = 0; j < nn && !some; j++)
          for (size_t o = 0; o < g->node[j]->n_output && !some; o++)
            some = g->node[j]->output[o] && strcmp(g->node[j]->output[o], in) == 0;
        if (!some) r = ox_err(c, "reads '%s', which no node, graph input or initializer defines (a missing initializer?)", in);
      }
    }
    if (!r) {
      for (size_t i = 0; i < nn; i++)
        if (!done[i]) {
          c->node = g->node[i];
          break;
        }
      r = ox_err(c, "the graph has a cycle through this node");
    }
    free(ord);
    ord = NULL;
  }
  free(done);
  free(made);
  *out = ord;
  c->nnodes = (int)placed;
  return r;
}

static int pull(ox_ctx *c, const char *name, const int *avoid, int navoid, int depth) {
  if (!name || !*name || defined(c, name)) return 1;
  if (depth > 64) return 0;
  int j = -1;
  for (int i = 0; i < c->nnodes && j < 0; i++)
    for (size_t k = 0; k < c->nodes[i]->n_output && j < 0; k++)
      if (c->nodes[i]->output[k] && strcmp(c->nodes[i]->output[k], name) == 0) j = i;
  if (j < 0 || j <= c->cur || c->skip[j]) return 0; /* folded into a pattern already */
  for (int i = 0; i < navoid; i++)
    if (avoid[i] == j) return 0;
  const Onnx__NodeProto *m = c->nodes[j];
  for (size_t k = 0; k < m->n_input; k++) {
    int r = pull(c, m->input[k], avoid, navoid, depth + 1);
    if (r <= 0) return r;
  }
  if (ox_run_node(c, j)) return -1;
  c->skip[j] = 1;
  return defined(c, name) ? 1 : 0;
}

int ox_pull(ox_ctx *c, const char *name, const int *avoid, int navoid) { return pull(c, name, avoid, navoid, 0); }

/* An input's declaration goes to the header when something first reads it
 * as a tensor (ox_ref): inputs the model reads only as constants (a known
 * shape or axes) are not declared at all. */
static int declare_input(ox_ctx *c, const Onnx__ValueInfoProto *vi) {
  const Onnx__TypeProto *tp = vi->type;
  if (!tp || tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !tp->tensor_type)
    return ox_err(c, "graph input '%s' is not a tensor (sequences, maps and optionals are not supported)", vi->name);
  const Onnx__TypeProto__Tensor *tt = tp->tensor_type;
  int dt = ox_lathe_dtype(tt->elem_type);
  if (dt < 0) return ox_unsup(c, NULL, "graph input '%s' has data type %s, which Lathe does not have", vi->name, ox_dtype_name(tt->elem_type));
  ox_val *v = new_val(c, vi->name);
  v->dt = dt;
  const Onnx__TensorShapeProto *sp = tt->shape;
  if (!sp) return ox_err(c, "graph input '%s' has no shape (Lathe needs every input's rank)", vi->name);
  if (sp->n_dim > OX_MAXDIM) return ox_err(c, "graph input '%s' has rank %zu (at most %d)", vi->name, sp->n_dim, OX_MAXDIM);
  v->rank = (int)sp->n_dim;
  v->nn = strdup(ox_fresh(c, vi->name));
  ox_buf line = {0}; /* freed on each error return below */
  int empty = 0;
  ox_buf_printf(&line, "input %s : %s[", v->nn, ox_dt_name(dt));
  for (int k = 0; k < v->rank; k++) {
    const Onnx__TensorShapeProto__Dimension *d = sp->dim[k];
    if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE && d->dim_value > ((int64_t)1 << 40))
      return free(line.p), ox_err(c, "graph input '%s': dimension %d is %lld (over 2^40)", vi->name, k, (long long)d->dim_value);
    if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE && d->dim_value > 0) {
      v->d[k] = d->dim_value;
      ox_buf_printf(&line, "%s%lld", k ? ", " : "", (long long)d->dim_value);
      continue;
    }
    if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE) {
      if (known(c, vi->name)) { /* a known empty input (no axes): a constant, never declared */
        free(v->nn);
        v->nn = NULL;
        v->d[k] = 0;
        empty = 1;
        continue;
      }
      return free(line.p), ox_unsup(c, NULL, "graph input '%s': dimension %d is %lld (Lathe has no empty tensors)", vi->name, k,
                      (long long)d->dim_value);
    }
    /* a symbolic dimension: the same ONNX name is the same .nn name */
    char base[160];
    if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM && d->dim_param && *d->dim_param)
      snprintf(base, sizeof base, "%s", d->dim_param);
    else
      snprintf(base, sizeof base, "%s_d%d", vi->name, k);
    const char *sym = NULL;
    for (int i = 0; i < c->nsym && !sym; i++)
      if (strcmp(c->sym_onnx[i], base) == 0) sym = c->sym_nn[i];
    if (!sym) {
      if (c->nsym == OX_MAXSYM) return free(line.p), ox_err(c, "more than %d symbolic dimensions", OX_MAXSYM);
      sym = ox_fresh(c, base);
      if (!(c->sym_onnx[c->nsym] = strdup(base))) abort();
      c->sym_nn[c->nsym++] = sym;
    }
    v->d[k] = -1;
    v->sym[k] = sym;
    ox_buf_printf(&line, "%s%s", k ? ", " : "", sym);
  }
  if (!empty && v->rank == 0) {
    /* the language has no rank-0 inputs: a [1] one (the caller's scalar
     * reshaped to it), summed to the scalar */
    const char *in1 = ox_fresh(c, vi->name);
    line.n = 0;
    ox_buf_printf(&line, "input %s : %s[1]\n%s = sum(%s)", in1, ox_dt_name(dt), v->nn, in1);
    v->decl = line.p;
    v->in_name = strdup(in1);
  } else if (!empty) {
    ox_buf_printf(&line, "]");
    v->decl = line.p;
  } else {
    free(line.p);
  }
  return 0;
}

int ox_import(const Onnx__ModelProto *m, const ox_import_options *o, ox_import_result *r, char *msg, size_t msgn) {
  memset(r, 0, sizeof *r);
  static const ox_import_options none = {0};
  ox_ctx c = {0};
  c.o = o ? o : &none;
  c.msg = msg;
  c.msgn = msgn;
  msg[0] = 0;
  ox_buf hdr = {0};
  c.hdr = &hdr;
  const Onnx__GraphProto *g = m->graph;
  c.g = g;
  int rc = -1;
  if (!g) {
    snprintf(msg, msgn, "the model has no graph");
    return -1;
  }
  c.opset = -1;
  for (size_t k = 0; k < m->n_opset_import; k++) {
    const Onnx__OperatorSetIdProto *op = m->opset_import[k];
    if (!op->domain || !*op->domain || strcmp(op->domain, "ai.onnx") == 0) c.opset = (int)op->version;
  }
  if (c.opset < 0) c.opset = 1; /* IR version 3 and older: the default domain's first opset */
  if (c.opset < 1 || c.opset > 17) {
    snprintf(msg, msgn, "the model uses opset %d of the default domain; this importer reads opsets 1 to 17", c.opset);
    return -1;
  }
  /* initialisers: constants */
  for (size_t k = 0; k < g->n_initializer; k++) {
    const Onnx__TensorProto *t = g->initializer[k];
    ox_array *a = calloc(1, sizeof *a);
    if (!a) abort();
    if (!t->name || ox_tensor_decode(t, c.o->base_dir, a, msg, msgn)) {
      if (!t->name) snprintf(msg, msgn, "initializer %zu has no name", k);
      free(a);
      goto out;
    }
    if (find(&c, t->name)) {
      snprintf(msg, msgn, "initializer '%s' is defined twice", t->name);
      ox_array_free(a);
      free(a);
      goto out;
    }
    ox_val *v = new_val(&c, t->name);
    v->dt = ox_lathe_dtype(a->dtype);
    if (v->dt < 0) v->dt = ox_is_float(a->dtype) ? LATHE_F32 : LATHE_I64; /* double, uint*: folded as such */
    v->rank = a->rank;
    memcpy(v->d, a->d, sizeof v->d);
    v->cv = a;
  }
  ox_buf_printf(&hdr, "# imported from ONNX (%s%s%s, opset %d) by lathe import\n", m->producer_name ? m->producer_name : "?",
                m->producer_version && *m->producer_version ? " " : "", m->producer_version ? m->producer_version : "",
                c.opset);
  const char *mname = c.o->model_name ? c.o->model_name : (g->name && *g->name ? g->name : "model");
  r->name = strdup(ox_fresh(&c, mname));
  ox_buf_printf(&hdr, "model %s\n", r->name);
  r->nin = 0;
  r->in_onnx = calloc(g->n_input + 1, sizeof(char *));
  r->in_nn = calloc(g->n_input + 1, sizeof(char *));
  for (size_t k = 0; k < g->n_input; k++) {
    const Onnx__ValueInfoProto *vi = g->input[k];
    if (!vi->name || find(&c, vi->name)) continue; /* an initializer listed as an input (IR < 4) */
    if (declare_input(&c, vi)) goto out;
    r->in_onnx[r->nin++] = strdup(vi->name);
  }
  if (order_nodes(&c, g, &c.nodes)) goto out;
  for (int i = 0; i < c.nnodes; i++)
    for (size_t k = 0; k < c.nodes[i]->n_input; k++) {
      ox_val *v = c.nodes[i]->input[k] ? find(&c, c.nodes[i]->input[k]) : NULL;
      if (v) v->uses++;
    }
  c.skip = calloc((size_t)c.nnodes + 1, 1);
  /* Constant nodes first: the patterns that look ahead (dense's bias Add,
   * GELU's Erf chain) see their values whatever the file's order */
  for (c.cur = 0; c.cur < c.nnodes; c.cur++) {
    const Onnx__NodeProto *n = c.nodes[c.cur];
    if (strcmp(n->op_type ? n->op_type : "", "Constant") != 0 || (n->domain && *n->domain)) continue;
    c.node = n;
    const ox_op *op = find_op("Constant");
    if (!has_out0(&c, n) || check_attrs(&c, n, op) || op->fn(&c, n)) goto out;
    c.skip[c.cur] = 1;
  }
  for (c.cur = 0; c.cur < c.nnodes; c.cur++)
    if (!c.skip[c.cur] && ox_run_node(&c, c.cur)) goto out;
  c.node = NULL;
  r->out_onnx = calloc(g->n_output + 1, sizeof(char *));
  r->out_nn = calloc(g->n_output + 1, sizeof(char *));
  for (size_t k = 0; k < g->n_output; k++) {
    const char *name = g->output[k]->name ? g->output[k]->name : "";
    ox_val *v = find(&c, name);
    if (!v) {
      snprintf(msg, msgn, "graph output '%s' is not computed by any node", name);
      goto out;
    }
    int is_input = 0;
    for (int i = 0; i < r->nin; i++) is_input |= strcmp(r->in_onnx[i], v->onnx) == 0;
    const char *ref = ox_ref(&c, v);
    if (!ref) goto out;
    const char *oname = ref;
    if (is_input || v->borrowed) { /* an output must be its own binding */
      oname = ox_fresh(&c, name);
      if (v->rank == 0) ox_emit(&c, "%s = where(equal(%s, %s), %s, %s)", oname, ref, ref, ref, ref);
      else ox_emit(&c, "%s = concat([%s], 0)", oname, ref);
    }
    ox_emit(&c, "output %s", oname);
    r->out_onnx[r->nout] = strdup(name);
    r->out_nn[r->nout++] = strdup(oname);
  }
  for (int i = 0; i < r->nin; i++) { /* the .nn name of each input the model declared */
    ox_val *v = find(&c, r->in_onnx[i]);
    if (v->nn && !v->decl) r->in_nn[i] = strdup(v->in_name ? v->in_name : v->nn);
  }
  ox_buf_printf(&hdr, "%s", c.nn.p ? c.nn.p : "");
  r->nn = hdr.p;
  hdr.p = NULL;
  r->w = c.w;
  r->nw = c.nw;
  c.w = NULL;
  c.nw = 0;
  rc = 0;
out:
  free(hdr.p);
  free(c.nn.p);
  for (int i = 0; i < c.nv; i++) {
    ox_val *v = c.v[i];
    if (!v->borrowed && v->cv) {
      ox_array_free(v->cv);
      free(v->cv);
    }
    if (!v->borrowed) free((void *)v->sv);
    free(v->onnx);
    free(v->nn);
    free(v->decl);
    free(v->in_name);
    free(v);
  }
  free(c.v);
  for (int i = 0; i < c.nused; i++) free(c.used[i]);
  for (int i = 0; i < c.nsym; i++) free(c.sym_onnx[i]);
  free(c.used);
  for (int i = 0; i < c.nw; i++) {
    free((void *)c.w[i].name);
    free((void *)c.w[i].data);
  }
  free(c.w);
  free((void *)c.nodes);
  free(c.skip);
  if (rc) ox_import_free(r);
  return rc && c.unsup ? -2 : rc;
}

void ox_import_free(ox_import_result *r) {
  free(r->name);
  free(r->nn);
  for (int i = 0; i < r->nw; i++) {
    free((void *)r->w[i].name);
    free((void *)r->w[i].data);
  }
  free(r->w);
  for (int i = 0; i < r->nin; i++) free(r->in_onnx[i]), free(r->in_nn ? r->in_nn[i] : NULL);
  for (int i = 0; i < r->nout; i++) free(r->out_onnx[i]), free(r->out_nn[i]);
  free(r->in_onnx);
  free(r->in_nn);
  free(r->out_onnx);
  free(r->out_nn);
  memset(r, 0, sizeof *r);
}

int ox_import_write(const ox_import_result *r, const char *dir, char *msg, size_t msgn) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s.nn", dir, r->name);
  rt_chunk ch = {r->nn, strlen(r->nn)};
  if (rt_write_atomic(path, &ch, 1, msg, msgn)) return -1;
  snprintf(path, sizeof path, "%s/%s.safetensors", dir, r->name);
  return rt_sft_write(path, r->w, r->nw, msg, msgn);
}
