/* ox_build.h -- building an ONNX graph by hand (onnx/ox_build.c), for
 * `lathe export` (onnx/ox_export*.c): nodes with unique value names,
 * attributes, initializers. Everything lives in the builder's arena (and its
 * two growing arrays) until oxb_free, so the protoc-c structs it makes are
 * only ever packed, never freed one by one. Initializers may point at the
 * caller's memory (the program's weights) instead of copying it. */
#ifndef LATHE_OX_BUILD_H
#define LATHE_OX_BUILD_H

#include <stddef.h>
#include <stdint.h>

#include "ir.h"
#include "onnx.pb-c.h"

typedef struct {
  arena A;
  Onnx__NodeProto **node;
  size_t nnode, capnode;
  Onnx__TensorProto **init;
  size_t ninit, capinit;
  int fresh; /* counter behind oxb_name */
} oxb;

void oxb_init(oxb *b);
void oxb_free(oxb *b);
/* A new value name: "HINT_N" (N counts up over the whole graph), in the
 * builder's arena. */
const char *oxb_name(oxb *b, const char *hint);
/* Append a node of op_type with nin inputs (an empty string is an omitted
 * optional input) and nout outputs named out[] (NULL entries get fresh
 * names, written back). */
Onnx__NodeProto *oxb_node(oxb *b, const char *op_type, int nin, const char *const *in, int nout, const char **out);
/* One-output shorthands: the output's (fresh) name. */
const char *oxb_op1(oxb *b, const char *op_type, const char *x);
const char *oxb_op2(oxb *b, const char *op_type, const char *x, const char *y);
const char *oxb_op3(oxb *b, const char *op_type, const char *x, const char *y, const char *z);
/* The last node appended (to add attributes to what oxb_opN made). */
Onnx__NodeProto *oxb_last(oxb *b);
void oxb_attr_i(oxb *b, Onnx__NodeProto *n, const char *name, int64_t v);
void oxb_attr_f(oxb *b, Onnx__NodeProto *n, const char *name, double v);
void oxb_attr_ints(oxb *b, Onnx__NodeProto *n, const char *name, int count, const int64_t *v);

/* ONNX's TensorProto data type of a Lathe dtype. */
int oxb_dtype(ir_dtype t);
/* An initializer called name (NULL: a fresh "const" name) of onnx dtype
 * with rank dims, its bytes at raw (little-endian): copied when copy is set,
 * else referenced (must outlive the packing). Returns its name. */
const char *oxb_tensor(oxb *b, const char *name, int dtype, int rank, const int64_t *dims, const void *raw,
                       size_t bytes, int copy);
/* Constants: a 1-d int64 list, an f32 array of a shape, a scalar of a dtype (f32, i64, i32 ...). */
const char *oxb_ints(oxb *b, int n, const int64_t *v);
const char *oxb_floats(oxb *b, int rank, const int64_t *dims, const float *v);
const char *oxb_scalar(oxb *b, int dtype, double v);

#endif
