/* ox_export_sym.c -- a symbolic dimension (the batch) kept symbolic in
 * `lathe export` (ox_export_dyn).
 *
 * Lathe compiles every shape static, so the graph has no record of which
 * numbers came from the batch. The model is therefore exported twice, with
 * the dimension bound to two different values, and the two graphs are
 * compared: they have the same nodes, and what differs is what depends on
 * the dimension. Graph input and output dimensions that equal the two
 * values become dim_param; an int64 shape constant (Reshape's, Expand's)
 * whose entries are k * dim is computed at run time as Shape(input)[axis] *
 * K + C; a constant repeated along an axis of that size (a per-row index
 * or mask) becomes its one slice Expanded at run time; anything else that
 * differs (an attribute, a constant whose values follow the batch) is an
 * error that names it. Exact by construction:
 * at either binding the symbolic graph computes the same numbers as that
 * binding's static graph. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ox_export.h"

typedef struct {
  oxb *b;
  const char *dim;
  int64_t v1, v2;
  const char *src; /* a graph input holding dim, and its axis */
  int64_t axis;
  const char *batch; /* [1] int64: dim at run time (made on first use) */
  char *msg;
  size_t msgn;
} sym;

static int fail(sym *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(sym *s, const char *fmt, ...) {
  int k = snprintf(s->msg, s->msgn, "lathe export: cannot keep '%s' symbolic: ", s->dim);
  va_list ap;
  va_start(ap, fmt);
  if (k >= 0 && (size_t)k < s->msgn) vsnprintf(s->msg + k, s->msgn - (size_t)k, fmt, ap);
  va_end(ap);
  return -1;
}

static const Onnx__TensorShapeProto *shape_of(const Onnx__ValueInfoProto *v) {
  const Onnx__TypeProto *t = v->type;
  return t && t->value_case == ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE && t->tensor_type ? t->tensor_type->shape : NULL;
}

/* v1's dimensions that are v1 where v2's are v2 become dim_param. */
static int dims(sym *s, Onnx__ValueInfoProto *a, const Onnx__ValueInfoProto *b, int input) {
  Onnx__TensorShapeProto *sa = (Onnx__TensorShapeProto *)shape_of(a);
  const Onnx__TensorShapeProto *sb = shape_of(b);
  if (!sa || !sb || sa->n_dim != sb->n_dim) return fail(s, "'%s' differs in rank", a->name);
  for (size_t k = 0; k < sa->n_dim; k++) {
    int64_t d1 = sa->dim[k]->dim_value, d2 = sb->dim[k]->dim_value;
    if (d1 == d2) continue;
    if (d1 != s->v1 || d2 != s->v2)
      return fail(s, "dimension %zu of '%s' follows '%s' but is not it (%lld at %lld): export with --bind %s=N", k,
                  a->name, s->dim, (long long)d1, (long long)s->v1, s->dim);
    sa->dim[k]->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
    sa->dim[k]->dim_param = ar_strdup(&s->b->A, s->dim);
    if (input && !s->src) s->src = a->name, s->axis = (int64_t)k;
  }
  return 0;
}

static int same_bytes(const void *a, const void *b, size_t n) { return n == 0 || memcmp(a, b, n) == 0; }

static int same_tensor(const Onnx__TensorProto *a, const Onnx__TensorProto *b) {
  return a->data_type == b->data_type && a->n_dims == b->n_dims && same_bytes(a->dims, b->dims, a->n_dims * 8) &&
         a->raw_data.len == b->raw_data.len && same_bytes(a->raw_data.data, b->raw_data.data, a->raw_data.len) &&
         a->n_float_data == b->n_float_data && same_bytes(a->float_data, b->float_data, a->n_float_data * 4) &&
         a->n_int64_data == b->n_int64_data && same_bytes(a->int64_data, b->int64_data, a->n_int64_data * 8) &&
         a->n_int32_data == b->n_int32_data && same_bytes(a->int32_data, b->int32_data, a->n_int32_data * 4);
}

static int same_attr(const Onnx__AttributeProto *a, const Onnx__AttributeProto *b) {
  if (strcmp(a->name, b->name) != 0 || a->type != b->type || a->i != b->i || a->f != b->f) return 0;
  if (a->n_ints != b->n_ints || !same_bytes(a->ints, b->ints, a->n_ints * 8)) return 0;
  if (a->n_floats != b->n_floats || !same_bytes(a->floats, b->floats, a->n_floats * 4)) return 0;
  if (a->s.len != b->s.len || !same_bytes(a->s.data, b->s.data, a->s.len)) return 0;
  return !a->t == !b->t && (!a->t || same_tensor(a->t, b->t));
}

static int same_node(const Onnx__NodeProto *a, const Onnx__NodeProto *b) {
  if (strcmp(a->op_type, b->op_type) != 0 || a->n_attribute != b->n_attribute) return 0;
  for (size_t k = 0; k < a->n_attribute; k++)
    if (!same_attr(a->attribute[k], b->attribute[k])) return 0;
  return 1;
}

/* dim at run time: Gather(Shape(src), [axis]), [1] int64. */
static const char *batch(sym *s) {
  if (!s->batch) s->batch = oxb_op2(s->b, "Gather", oxb_op1(s->b, "Shape", s->src), oxb_ints(s->b, 1, &s->axis));
  return s->batch;
}

/* An int64 vector whose entries are c or k * dim: the value computing it at
 * run time, or NULL (an error set) when it is not one. */
static const char *shape_vector(sym *s, const Onnx__TensorProto *a, const Onnx__TensorProto *b) {
  size_t n = a->raw_data.len / 8;
  if (a->data_type != ONNX__TENSOR_PROTO__DATA_TYPE__INT64 || a->n_dims != 1 || b->n_dims != 1 ||
      a->dims[0] != b->dims[0] || a->raw_data.len != b->raw_data.len || (size_t)a->dims[0] != n || n == 0)
    return NULL;
  int64_t *K = ar_alloc(&s->b->A, n * 8), *C = ar_alloc(&s->b->A, n * 8);
  for (size_t i = 0; i < n; i++) {
    int64_t e1, e2;
    memcpy(&e1, a->raw_data.data + 8 * i, 8), memcpy(&e2, b->raw_data.data + 8 * i, 8);
    K[i] = 0, C[i] = e1;
    if (e1 == e2) continue;
    if (e1 % s->v1 || e2 % s->v2 || e1 / s->v1 != e2 / s->v2) return NULL;
    K[i] = e1 / s->v1, C[i] = 0;
  }
  const char *k = oxb_ints(s->b, (int)n, K), *c = oxb_ints(s->b, (int)n, C);
  return oxb_op2(s->b, "Add", oxb_op2(s->b, "Mul", batch(s), k), c);
}

/* A constant that is the same along one axis of size dim (time_flip's
 * gather index, a mask repeated per batch row): the one slice, Expanded to
 * the run-time shape; NULL when it is not one. */
static const char *repeated(sym *s, const Onnx__TensorProto *a, const Onnx__TensorProto *b) {
  if (a->data_type != b->data_type || a->n_dims != b->n_dims || !a->has_raw_data || !b->has_raw_data || a->n_dims < 1 ||
      a->n_dims > 8)
    return NULL;
  int ax = -1;
  size_t n1 = 1, n2 = 1;
  for (size_t k = 0; k < a->n_dims; k++) {
    if (a->dims[k] < 1 || b->dims[k] < 1) return NULL;
    n1 *= (size_t)a->dims[k], n2 *= (size_t)b->dims[k];
    if (a->dims[k] == b->dims[k]) continue;
    if (ax >= 0 || a->dims[k] != s->v1 || b->dims[k] != s->v2) return NULL;
    ax = (int)k;
  }
  if (ax < 0 || a->raw_data.len % n1 || b->raw_data.len % n2 || a->raw_data.len / n1 != b->raw_data.len / n2) return NULL;
  size_t es = a->raw_data.len / n1, outer = 1, inner = es;
  for (int k = 0; k < ax; k++) outer *= (size_t)a->dims[k];
  for (size_t k = (size_t)ax + 1; k < a->n_dims; k++) inner *= (size_t)a->dims[k];
  unsigned char *one = ar_alloc(&s->b->A, outer * inner + 1);
  for (size_t o = 0; o < outer; o++) {
    const uint8_t *first = a->raw_data.data + o * (size_t)s->v1 * inner;
    memcpy(one + o * inner, first, inner);
    for (int64_t i = 0; i < s->v1; i++)
      if (memcmp(a->raw_data.data + (o * (size_t)s->v1 + (size_t)i) * inner, first, inner)) return NULL;
    for (int64_t i = 0; i < s->v2; i++)
      if (memcmp(b->raw_data.data + (o * (size_t)s->v2 + (size_t)i) * inner, first, inner)) return NULL;
  }
  int64_t dims[8], K[8], C[8];
  for (size_t k = 0; k < a->n_dims; k++) dims[k] = C[k] = a->dims[k], K[k] = 0;
  dims[ax] = 1, C[ax] = 0, K[ax] = 1;
  const char *c1 = oxb_tensor(s->b, NULL, a->data_type, (int)a->n_dims, dims, one, outer * inner, 0);
  const char *k = oxb_ints(s->b, (int)a->n_dims, K), *c = oxb_ints(s->b, (int)a->n_dims, C);
  return oxb_op2(s->b, "Expand", c1, oxb_op2(s->b, "Add", oxb_op2(s->b, "Mul", batch(s), k), c));
}

/* The first original node reading `name` (for messages). */
static const char *reader(oxb *b, size_t nnode, const char *name) {
  for (size_t j = 0; j < nnode; j++)
    for (size_t k = 0; k < b->node[j]->n_input; k++)
      if (strcmp(b->node[j]->input[k], name) == 0) return b->node[j]->op_type;
  return "nothing";
}

/* Each initializer that differs: a run-time shape vector (its readers
 * renamed, the initializer dropped) or an error. */
static int constants(sym *s, const Onnx__GraphProto *g2, size_t nnode) {
  oxb *b = s->b;
  size_t ninit = b->ninit, kept = 0;
  char *drop = calloc(ninit + 1, 1);
  if (!drop) return fail(s, "out of memory");
  for (size_t i = 0; i < ninit; i++) {
    Onnx__TensorProto *t1 = b->init[i];
    const Onnx__TensorProto *t2 = g2->initializer[i];
    if (same_tensor(t1, t2)) continue;
    const char *v = shape_vector(s, t1, t2);
    if (!v) v = repeated(s, t1, t2);
    if (!v) {
      free(drop);
      return fail(s, "the constant '%s' read by %s depends on it (not a shape k * %s): export with --bind %s=N",
                  t1->name, reader(b, nnode, t1->name), s->dim, s->dim);
    }
    for (size_t j = 0; j < nnode; j++) /* b->node: adding the shape nodes may have moved the array */
      for (size_t k = 0; k < b->node[j]->n_input; k++)
        if (strcmp(b->node[j]->input[k], t1->name) == 0) b->node[j]->input[k] = (char *)v;
    drop[i] = 1;
  }
  for (size_t i = 0; i < b->ninit; i++)
    if (i >= ninit || !drop[i]) b->init[kept++] = b->init[i];
  b->ninit = kept;
  free(drop);
  return 0;
}

int oxs_symbolize(oxb *b, Onnx__GraphProto *g1, const Onnx__GraphProto *g2, const char *dim, int64_t v1, int64_t v2,
                  char *msg, size_t msgn) {
  sym s = {.b = b, .dim = dim, .v1 = v1, .v2 = v2, .msg = msg, .msgn = msgn};
  if (g1->n_input != g2->n_input || g1->n_output != g2->n_output || g1->n_node != g2->n_node ||
      b->ninit != g2->n_initializer)
    return fail(&s, "the graph's structure depends on it: export with --bind %s=N", dim);
  for (size_t i = 0; i < g1->n_input; i++)
    if (dims(&s, g1->input[i], g2->input[i], 1)) return -1;
  for (size_t i = 0; i < g1->n_output; i++)
    if (dims(&s, g1->output[i], g2->output[i], 0)) return -1;
  size_t nnode = g1->n_node;
  for (size_t j = 0; j < nnode; j++)
    if (!same_node(g1->node[j], g2->node[j]))
      return fail(&s, "an attribute of node %zu (%s) depends on it: export with --bind %s=N", j, g1->node[j]->op_type,
                  dim);
  if (!s.src) return fail(&s, "no graph input has it");
  if (constants(&s, g2, nnode)) return -1;
  /* the run-time shape nodes read only inputs and constants: first */
  size_t added = b->nnode - nnode;
  Onnx__NodeProto **all = ar_alloc(&b->A, (b->nnode + 1) * sizeof *all);
  memcpy(all, b->node + nnode, added * sizeof *all);
  memcpy(all + added, b->node, nnode * sizeof *all);
  memcpy(b->node, all, b->nnode * sizeof *all);
  g1->n_node = b->nnode, g1->node = b->node;
  g1->n_initializer = b->ninit, g1->initializer = b->init;
  return 0;
}
