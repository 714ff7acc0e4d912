/* cmd_export.c -- `lathe export MODEL --weights W -o MODEL.onnx [--bind
 * NAME=N]`: the forward graph as ONNX (opset 17), written atomically by
 * onnx/ox_export.c. The graph is the frontend's own (the interpreter's
 * program at -O0: no pass has rewritten it), so every op maps to its ONNX
 * form one by one; symbolic dimensions not bound are 1. Without protobuf-c
 * at build time (cmake/onnx.cmake) the command says what is missing. */
#include <stdio.h>
#include <string.h>

#include "tools/cli.h"
#ifdef LATHE_HAVE_ONNX
#include "onnx/ox_export.h"
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
  lathe_options o = {.backend = LATHE_BACKEND_INTERP, .default_dim = 1, .opt_level_set = 1, .opt_level = 0};
  lathe_error err = {0};
  lathe_program *p = NULL;
  if (m && (!(p = lathe_compile(m, &o, &err)) || lathe_weights_load(p, weights, &err))) status = cli_report(&err);
  else if (p) {
    char msg[1024];
    if (ox_export(p, out, msg, sizeof msg)) fprintf(stderr, "%s\n", msg), status = 1;
    else fprintf(stderr, "wrote %s\n", out);
  }
  lathe_program_free(p);
  lathe_model_free(m);
#endif
  cli_args_free(&a);
  return status;
}
