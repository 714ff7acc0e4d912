/* ox_build.c -- ONNX graphs by hand (ox_build.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ox_build.h"

void oxb_init(oxb *b) {
  memset(b, 0, sizeof *b);
  ar_init(&b->A);
}

void oxb_free(oxb *b) {
  free(b->node);
  free(b->init);
  ar_free(&b->A);
  memset(b, 0, sizeof *b);
}

const char *oxb_name(oxb *b, const char *hint) { return ar_printf(&b->A, "%s_%d", hint, b->fresh++); }

/* Grow *arr (of pointers) to hold one more; allocation failure is fatal here
 * as everywhere in the arena (the internal tier). */
static void *push(void *arr, size_t *n, size_t *cap, void *item) {
  void **a = arr;
  if (*n == *cap) {
    *cap = *cap ? 2 * *cap : 64;
    a = realloc(a, *cap * sizeof *a);
    if (!a) IR_UNREACHABLE("out of memory building the ONNX graph");
  }
  a[(*n)++] = item;
  return a;
}

Onnx__NodeProto *oxb_node(oxb *b, const char *op_type, int nin, const char *const *in, int nout, const char **out) {
  Onnx__NodeProto *n = ar_alloc(&b->A, sizeof *n);
  onnx__node_proto__init(n);
  n->op_type = ar_strdup(&b->A, op_type);
  n->n_input = (size_t)nin;
  n->input = ar_alloc(&b->A, (size_t)(nin ? nin : 1) * sizeof *n->input);
  for (int i = 0; i < nin; i++) n->input[i] = (char *)in[i];
  n->n_output = (size_t)nout;
  n->output = ar_alloc(&b->A, (size_t)(nout ? nout : 1) * sizeof *n->output);
  for (int i = 0; i < nout; i++) {
    if (!out[i]) out[i] = oxb_name(b, op_type);
    n->output[i] = (char *)out[i];
  }
  n->name = ar_printf(&b->A, "%s", n->output[0]);
  b->node = push(b->node, &b->nnode, &b->capnode, n);
  return n;
}

const char *oxb_op3(oxb *b, const char *op_type, const char *x, const char *y, const char *z) {
  const char *in[3] = {x, y, z}, *out[1] = {NULL};
  oxb_node(b, op_type, z ? 3 : y ? 2 : 1, in, 1, out);
  return out[0];
}
const char *oxb_op1(oxb *b, const char *op_type, const char *x) { return oxb_op3(b, op_type, x, NULL, NULL); }
const char *oxb_op2(oxb *b, const char *op_type, const char *x, const char *y) {
  return oxb_op3(b, op_type, x, y, NULL);
}

Onnx__NodeProto *oxb_last(oxb *b) { return b->node[b->nnode - 1]; }

static Onnx__AttributeProto *attr(oxb *b, Onnx__NodeProto *n, const char *name, Onnx__AttributeProto__AttributeType t) {
  Onnx__AttributeProto *a = ar_alloc(&b->A, sizeof *a);
  onnx__attribute_proto__init(a);
  a->name = ar_strdup(&b->A, name);
  a->has_type = 1, a->type = t;
  Onnx__AttributeProto **all = ar_alloc(&b->A, (n->n_attribute + 1) * sizeof *all);
  if (n->n_attribute) memcpy(all, n->attribute, n->n_attribute * sizeof *all);
  all[n->n_attribute++] = a;
  n->attribute = all;
  return a;
}

void oxb_attr_i(oxb *b, Onnx__NodeProto *n, const char *name, int64_t v) {
  Onnx__AttributeProto *a = attr(b, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
  a->has_i = 1, a->i = v;
}

void oxb_attr_f(oxb *b, Onnx__NodeProto *n, const char *name, double v) {
  Onnx__AttributeProto *a = attr(b, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
  a->has_f = 1, a->f = (float)v;
}

void oxb_attr_ints(oxb *b, Onnx__NodeProto *n, const char *name, int count, const int64_t *v) {
  Onnx__AttributeProto *a = attr(b, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
  a->n_ints = (size_t)count;
  a->ints = ar_alloc(&b->A, (size_t)(count ? count : 1) * sizeof *a->ints);
  if (count) memcpy(a->ints, v, (size_t)count * sizeof *v);
}

static const int DTYPES[IR_NDTYPES] = {
  [IR_F32] = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT,  [IR_F16] = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT16,
  [IR_BF16] = ONNX__TENSOR_PROTO__DATA_TYPE__BFLOAT16, [IR_I32] = ONNX__TENSOR_PROTO__DATA_TYPE__INT32,
  [IR_I64] = ONNX__TENSOR_PROTO__DATA_TYPE__INT64,  [IR_I8] = ONNX__TENSOR_PROTO__DATA_TYPE__INT8,
  [IR_U8] = ONNX__TENSOR_PROTO__DATA_TYPE__UINT8,   [IR_BOOL] = ONNX__TENSOR_PROTO__DATA_TYPE__BOOL,
};

int oxb_dtype(ir_dtype t) { return (int)t >= 0 && t < IR_NDTYPES ? DTYPES[t] : 0; }

const char *oxb_tensor(oxb *b, const char *name, int dtype, int rank, const int64_t *dims, const void *raw,
                       size_t bytes, int copy) {
  Onnx__TensorProto *t = ar_alloc(&b->A, sizeof *t);
  onnx__tensor_proto__init(t);
  t->name = name ? ar_strdup(&b->A, name) : (char *)oxb_name(b, "const");
  t->has_data_type = 1, t->data_type = dtype;
  t->n_dims = (size_t)rank;
  t->dims = ar_alloc(&b->A, (size_t)(rank ? rank : 1) * sizeof *t->dims);
  if (rank) memcpy(t->dims, dims, (size_t)rank * sizeof *dims);
  t->has_raw_data = 1;
  t->raw_data.len = bytes;
  if (copy && bytes) {
    void *d = ar_alloc(&b->A, bytes);
    memcpy(d, raw, bytes);
    raw = d;
  }
  t->raw_data.data = (uint8_t *)raw;
  b->init = push(b->init, &b->ninit, &b->capinit, t);
  return t->name;
}

const char *oxb_ints(oxb *b, int n, const int64_t *v) {
  int64_t d = n;
  return oxb_tensor(b, NULL, ONNX__TENSOR_PROTO__DATA_TYPE__INT64, 1, &d, v, (size_t)n * sizeof *v, 1);
}

const char *oxb_floats(oxb *b, int rank, const int64_t *dims, const float *v) {
  int64_t n = 1;
  for (int i = 0; i < rank; i++) n *= dims[i];
  return oxb_tensor(b, NULL, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, rank, dims, v, (size_t)n * sizeof *v, 1);
}

const char *oxb_scalar(oxb *b, int dtype, double v) {
  union { float f; double d; int32_t i32; int64_t i64; int8_t i8; uint8_t u8; } u;
  size_t n;
  switch (dtype) { /* the scalar's bytes per element type (few enough for a switch) */
  case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT: u.f = (float)v, n = 4; break;
  case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE: u.d = v, n = 8; break;
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT32: u.i32 = (int32_t)v, n = 4; break;
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT64: u.i64 = (int64_t)v, n = 8; break;
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT8: u.i8 = (int8_t)v, n = 1; break;
  case ONNX__TENSOR_PROTO__DATA_TYPE__UINT8: u.u8 = (uint8_t)v, n = 1; break;
  case ONNX__TENSOR_PROTO__DATA_TYPE__BOOL: u.u8 = v != 0, n = 1; break;
  default: IR_UNREACHABLE("oxb_scalar: no scalar of this type");
  }
  return oxb_tensor(b, NULL, dtype, 0, NULL, &u, n, 1);
}
