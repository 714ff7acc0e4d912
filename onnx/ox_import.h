/* ox_import.h -- an ONNX model as a Lathe model (onnx/ox_import.c and the
 * per-op handlers in onnx/ox_ops.c): the graph becomes `.nn` source (known
 * patterns as the language's layers, everything else its primitive ops) and
 * the initialisers a safetensors file of the parameters it declares.
 * Internal prefix: ox_. */
#ifndef LATHE_OX_IMPORT_H
#define LATHE_OX_IMPORT_H

#include <stddef.h>
#include "onnx.pb-c.h"
#include "rt/rt_sft.h"

typedef struct {
  const char *model_name; /* NULL: from the file (ox_import_file) or "model" */
  const char *base_dir;   /* where external data files are (NULL: ".") */
  /* Values for graph inputs the caller knows (ONNX's node tests feed weights,
   * shapes and axes as inputs): used only where Lathe needs a constant (a
   * Reshape's shape, a Conv's weights); the input stays an input otherwise. */
  const Onnx__TensorProto *const *known;
  int nknown;
} ox_import_options;

typedef struct {
  char *name;           /* the model's name (file stem) */
  char *nn;             /* the .nn source */
  rt_sft_tensor *w;     /* its parameters (names, data owned here) */
  int nw;
  /* ONNX names of the graph's inputs and outputs and their .nn names (an
   * input only a constant slot read has no .nn name: NULL) */
  int nin, nout;
  char **in_onnx, **in_nn, **out_onnx, **out_nn;
} ox_import_result;

/* 0, or -1 with a message (-2 when the model is valid but uses something
 * Lathe cannot express: an unsupported op, attribute or dtype, named with
 * the node, the op, the attribute and the opset). */
int ox_import(const Onnx__ModelProto *m, const ox_import_options *o, ox_import_result *r, char *msg, size_t msgn);
void ox_import_free(ox_import_result *r);
/* DIR/NAME.nn and DIR/NAME.safetensors, each written atomically. */
int ox_import_write(const ox_import_result *r, const char *dir, char *msg, size_t msgn);

#endif
