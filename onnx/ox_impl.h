/* ox_impl.h -- what the importer's core (ox_import.c) and its op handlers
 * (ox_ops.c, ox_layers.c) share: the value table, the .nn text being built,
 * attribute readers and the error that names node, op, attribute, opset. */
#ifndef LATHE_OX_IMPL_H
#define LATHE_OX_IMPL_H

#include <stdint.h>
#include "ox_import.h"
#include "ox_tensor.h"
#include "lathe.h"

/* A value of the ONNX graph. Its shape may hold symbolic dimensions
 * (d[k] = -1, sym[k] its name). A constant has cv (and sv: per element, a
 * symbolic dimension's name for Shape results of inputs with symbolic dims);
 * a value the .nn computes has nn (its binding); a constant used as a tensor
 * gets nn when it is first materialised. */
typedef struct {
  char *onnx;
  int dt; /* lathe_dtype */
  int rank;
  int64_t d[OX_MAXDIM];
  const char *sym[OX_MAXDIM];
  ox_array *cv;
  const char **sv;
  char *nn;
  int uses;
  int borrowed; /* cv and sv belong to the value this one aliases */
  char *in_name; /* a scalar input's declared [1] name */
  char *decl;   /* a graph input's declaration, until something reads it */
  int filled;   /* ConstantOfShape of a symbolic shape: every element `fill`, no data */
  double fill;
  int known;    /* cv is a graph input's value the caller gave (ox_import_options.known) */
} ox_val;

typedef struct {
  char *p;
  size_t n, cap;
} ox_buf;

typedef struct ox_ctx {
  const ox_import_options *o;
  const Onnx__GraphProto *g;
  int opset;
  const Onnx__NodeProto *node; /* being imported, for messages */
  ox_val **v; /* each allocated alone: pointers stay valid as values are added */
  int nv, cap;
  ox_buf nn;
  ox_buf *hdr; /* model line and input declarations */
  rt_sft_tensor *w;
  int nw, wcap;
  char **used; /* names taken in the .nn */
  int nused, usedcap;
  int nconst;
#define OX_MAXSYM 32
  char *sym_onnx[OX_MAXSYM]; /* symbolic dimensions: ONNX name -> .nn name */
  const char *sym_nn[OX_MAXSYM];
  int nsym;
  int unsup; /* the failure is something Lathe cannot express (ox_unsup), not a broken file */
  const Onnx__NodeProto **nodes; /* in topological order */
  int nnodes, cur;
  unsigned char *skip; /* nodes folded into an earlier one (dense's bias Add) */
  char *msg;
  size_t msgn;
} ox_ctx;

/* Handlers: 0 or -1 (message set). */
typedef int (*ox_handler)(ox_ctx *c, const Onnx__NodeProto *n);
typedef struct {
  const char *op;
  ox_handler fn;
  const char *attrs; /* the attributes it understands, comma-separated */
} ox_op;
extern const ox_op ox_ops[];
extern const int ox_nops;

/* a * b for dimensions (both >= 0), saturating past 2^50: hostile shapes
 * overflow nothing (Lathe refuses tensors over 2^40 elements later) */
static inline int64_t ox_mul(int64_t a, int64_t b) {
  const int64_t cap = (int64_t)1 << 50;
  return b != 0 && a > cap / b ? cap : a * b;
}

/* errors */
int ox_err(ox_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int ox_unsup(ox_ctx *c, const char *attr, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* text */
void ox_emit(ox_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void ox_buf_printf(ox_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* values */
ox_val *ox_in(ox_ctx *c, const Onnx__NodeProto *n, int k);         /* NULL when absent ("" or past the end) */
ox_val *ox_need(ox_ctx *c, const Onnx__NodeProto *n, int k);       /* as ox_in, error when absent */
const ox_array *ox_const(ox_ctx *c, ox_val *v);                   /* constant data or known input, or NULL */
/* Constant data only (an initializer, a Constant, a folded value): what
 * import-time folding may compute with. A known input stays an input there. */
const ox_array *ox_fixed(ox_ctx *c, ox_val *v);
const ox_array *ox_need_const(ox_ctx *c, const Onnx__NodeProto *n, int k); /* error when not constant */
const char *ox_ref(ox_ctx *c, ox_val *v);                          /* the .nn expression (NULL on error) */
/* Define output k with a dtype and shape (copied from `like` when rank < 0). */
ox_val *ox_out(ox_ctx *c, const Onnx__NodeProto *n, int k, int dt, int rank, const int64_t *d, const char *const *sym);
ox_val *ox_out_like(ox_ctx *c, const Onnx__NodeProto *n, int k, const ox_val *like, int dt);
/* Output k as a constant (takes a). */
ox_val *ox_out_const(ox_ctx *c, const Onnx__NodeProto *n, int k, ox_array *a);
/* Output k is the same value as v (Identity, Dropout). */
int ox_alias(ox_ctx *c, const Onnx__NodeProto *n, int k, ox_val *v);
int ox_lathe_dtype(int onnx_dtype); /* -1 when Lathe has none */
const char *ox_dt_name(int dt);     /* lathe_dtype name, "f32" */
int ox_is_float_dt(int dt);
/* A parameter (f32) holding a's values under a fresh name based on `base`;
 * its declared name comes back. */
const char *ox_add_param(ox_ctx *c, const char *base, const ox_array *a, const int64_t *dims, int rank, int transpose2);
/* A fresh binding name based on base. */
const char *ox_fresh(ox_ctx *c, const char *base);
int ox_numeric_literal(char *buf, size_t n, double f, int dt); /* 0 when it can be written */

/* attributes */
const Onnx__AttributeProto *ox_attr(const Onnx__NodeProto *n, const char *name);
int64_t ox_attr_i(const Onnx__NodeProto *n, const char *name, int64_t dflt);
double ox_attr_f(const Onnx__NodeProto *n, const char *name, double dflt);
const char *ox_attr_s(const Onnx__NodeProto *n, const char *name, const char *dflt);
int ox_attr_ints(const Onnx__NodeProto *n, const char *name, int64_t *out, int max); /* count, -1 absent */

/* shapes */
int ox_axis(ox_ctx *c, int64_t axis, int rank, int *out); /* normalised, error when out of range */
int ox_broadcast(ox_ctx *c, const ox_val *a, const ox_val *b, int *rank, int64_t *d, const char **sym);
int64_t ox_numel(const ox_val *v);
int ox_uses(ox_ctx *c, const char *name); /* node inputs and graph outputs reading it */ /* -1 with a symbolic dim */
const char *ox_shape_list(const int64_t *d, int rank, char *buf, size_t n); /* "[2, 3]" */

/* the graph walk */
int ox_defined(ox_ctx *c, const char *name);
int ox_run_node(ox_ctx *c, int j); /* import node j now (0 or -1) */
/* Make the value `name` defined now, importing the nodes it depends on
 * early (they are then skipped): 1 when it is, 0 when it depends on one of
 * the nodes avoid[0..navoid) (a pattern's own nodes) or on a node already
 * folded away, -1 on an error. */
int ox_pull(ox_ctx *c, const char *name, const int *avoid, int navoid);
/* the attention subgraph PyTorch exports, starting at its qkv MatMul n:
 * 1 when written as attention(), 0 when n does not start one, -1 on an error */
int ox_attention_pattern(ox_ctx *c, const Onnx__NodeProto *n);
/* An LSTM (kind 0) / GRU (1) / RNN (2) node written out step by step
 * (ox_rnn_unroll.c): initial states, peepholes P (NULL: none), Y_c, GRU's
 * linear_before_reset lbr = 0. */
int ox_rnn_unroll(ox_ctx *c, const Onnx__NodeProto *n, int kind, int lbr, int ND, int rev, int layout, int64_t H,
                  const ox_array *W, const ox_array *R, const ox_array *Bv, const ox_array *P);
const char *ox_layer_name(ox_ctx *c, const Onnx__NodeProto *n, const ox_val *w, char *buf, size_t size);

#endif
