/* cmd_export.c -- `lathe export MODEL --weights W -o MODEL.onnx [--bind
 * NAME=N]`: the forward graph as ONNX (opset 17), written atomically by
 * onnx/ox_export.c. The graph is the frontend's own (the interpreter's
 * program at -O0: no pass has rewritten it), so every op maps to its ONNX
 * form one by one. One symbolic dimension left unbound (the batch) stays
 * symbolic in the file (dim_param): the model is compiled at two values of
 * it and onnx/ox_export_sym.c compares the graphs; with several unbound,
 * they are 1. Without protobuf-c at build time (cmake/onnx.cmake) the
 * command says what is missing. */
#include <stdio.h>
#include <string.h>

#include "tools/cli.h"
#ifdef LATHE_HAVE_ONNX
#include "onnx/ox_export.h"
#endif

#ifdef LATHE_HAVE_ONNX
/* The one symbolic dimension the inputs leave unbound, or NULL (none, or
 * several: *several set). */
static const char *free_dim(const lathe_model *m, int *several) {
  const char *d = NULL;
  *several = 0;
  for (int i = 0; i < lathe_model_num_inputs(m); i++) {
    lathe_tensor_info t;
    if (lathe_model_input_info(m, i, &t)) continue;
    for (int j = 0; j < t.rank; j++)
      if (t.dim[j] && t.shape[j] < 0) {
        if (d && strcmp(d, t.dim[j]) != 0) *several = 1;
        d = t.dim[j];
      }
  }
  return *several ? NULL : d;
}

/* The model compiled with unbound dimensions at v, weights loaded. */
static lathe_program *compile_at(lathe_model *m, int64_t v, const char *weights, int *status) {
  lathe_options o = {.backend = LATHE_BACKEND_INTERP, .default_dim = v, .opt_level_set = 1, .opt_level = 0};
  lathe_error err = {0};
  lathe_program *p = lathe_compile(m, &o, &err);
  if (!p || lathe_weights_load(p, weights, &err)) {
    *status = cli_report(&err);
    lathe_program_free(p);
    return NULL;
  }
  return p;
}
#endif

int cmd_export(int argc, char **argv) {
  cli_args a;
  int status = cli_parse(argc, argv, "export", "--bind=pair --weights=value -o=value", &a);
  if (status) { cli_args_free(&a); return status; }
  const char *out = cli_value(&a, "-o"), *weights = cli_value(&a, "--weights");
#ifndef LATHE_HAVE_ONNX
  (void)out, (void)weights;
  fprintf(stderr, "lathe export: error: this lathe was built without ONNX support (protobuf-c, protoc-c and "
                  "Debian's onnx.proto: ./setup.sh installs them, then configure again)\n");
  status = 1;
#else
  if (!out) fprintf(stderr, "lathe export: error: no output file: give -o MODEL.onnx\n"), status = 1;
  else if (!weights) fprintf(stderr, "lathe export: error: no weights: give --weights W.safetensors (lathe train or lathe init write them)\n"), status = 1;
  lathe_model *m = status ? NULL : cli_load_model(&a, &status);
  int several = 0;
  const char *dim = m ? free_dim(m, &several) : NULL;
  /* two bindings of a symbolic batch: which numbers follow it shows in the difference */
  lathe_program *p = m ? compile_at(m, dim ? 2 : 1, weights, &status) : NULL;
  lathe_program *p2 = p && dim ? compile_at(m, 3, weights, &status) : NULL;
  if (p && (!dim || p2)) {
    char msg[1024];
    int rc = dim ? ox_export_dyn(p, p2, dim, 2, 3, out, msg, sizeof msg) : ox_export(p, out, msg, sizeof msg);
    if (rc) fprintf(stderr, "%s\n", msg), status = 1;
    else if (dim) fprintf(stderr, "wrote %s ('%s' symbolic)\n", out, dim);
    else fprintf(stderr, "wrote %s%s\n", out, several ? " (symbolic dimensions left unbound are 1: --bind them)" : "");
  }
  lathe_program_free(p);
  lathe_program_free(p2);
  lathe_model_free(m);
#endif
  cli_args_free(&a);
  return status;
}
