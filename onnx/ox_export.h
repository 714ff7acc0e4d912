/* ox_export.h -- `lathe export`: a compiled Lathe program's forward graph
 * as an ONNX model (opset 17), its weights as initializers
 * (onnx/ox_export.c, onnx/ox_export_seq.c).
 *
 * The program must come from lathe_compile with the interpreter backend and
 * no graph passes (-O0: the graph the frontend built, op for op) and have
 * its weights loaded. Every output of the model becomes a graph output of
 * the same name; the inputs the outputs read become graph inputs (targets
 * and the loss are left out). Shapes are the program's: symbolic dimensions
 * as bound when it was compiled. Preprocessing the weights carry (the
 * normalisation training fitted) becomes the first nodes after each input,
 * so the file takes raw features as `lathe run` does. */
#ifndef LATHE_OX_EXPORT_H
#define LATHE_OX_EXPORT_H

#include <stddef.h>

#include "lathe.h"
#include "ox_build.h"

#define OX_EXPORT_OPSET 17

/* Write p's forward graph to path (atomically). 0, or -1 with a message
 * naming the node and op that has no ONNX form. */
int ox_export(const lathe_program *p, const char *path, char *msg, size_t msgn);

/* The same with one symbolic dimension `dim` kept symbolic: p1 and p2 are
 * the model compiled with dim bound to v1 and to v2 (otherwise the same).
 * The graphs are compared: input and output dimensions that follow dim
 * become dim_param `dim`, int64 shape constants that follow it (k dim) are
 * computed at run time from an input's Shape; anything else that depends on
 * dim is an error naming it (export with --bind then). */
int ox_export_dyn(const lathe_program *p1, const lathe_program *p2, const char *dim, int64_t v1, int64_t v2,
                  const char *path, char *msg, size_t msgn);
/* ox_export_sym.c: graph g1 (built in b) made symbolic in dim by comparing it with g2. */
int oxs_symbolize(oxb *b, Onnx__GraphProto *g1, const Onnx__GraphProto *g2, const char *dim, int64_t v1, int64_t v2,
                  char *msg, size_t msgn);

/* ---- between ox_export.c and ox_export_seq.c ---- */
typedef struct {
  oxb *b;
  const lathe_program *p;
  const ir_graph *g;
  const char **val; /* per node: the ONNX value holding its result (NULL: not made) */
  char *used;       /* per node: some ONNX node reads it (a parameter is written only then) */
  char *msg;
  size_t msgn;
} oxe;

/* One IR op's ONNX nodes: sets e->val[id]; 0, or -1 with e->msg set. */
typedef int (*oxe_fn)(oxe *e, const ir_node *n, int id);
/* The ONNX value of node n's input k (marked used). */
const char *oxe_in(oxe *e, const ir_node *n, int k);
/* A fresh int64 shape constant and Reshape of x to it. */
const char *oxe_reshape(oxe *e, const char *x, int rank, const int64_t *dims);
/* Transpose of x by perm. */
const char *oxe_transpose(oxe *e, const char *x, int rank, const int64_t *perm);
/* x @ w + bias (bias may be NULL). */
const char *oxe_affine(oxe *e, const char *x, const char *w, const char *bias);
int oxe_fail(oxe *e, const ir_node *n, const char *why);

/* ox_export_seq.c: the sequence layers */
int oxe_attention(oxe *e, const ir_node *n, int id);
int oxe_mha(oxe *e, const ir_node *n, int id);
int oxe_rnn(oxe *e, const ir_node *n, int id);

#endif
