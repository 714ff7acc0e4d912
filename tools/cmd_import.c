/* cmd_import.c -- `lathe import MODEL.onnx -o DIR`: an ONNX model as
 * DIR/NAME.nn and DIR/NAME.safetensors (onnx/ox_import.h, docs/onnx.md).
 * The .nn written is parsed back before the command says it succeeded. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tools/cli.h"

#ifdef LATHE_HAVE_ONNX
#include "onnx_io.h"
#include "ox_import.h"

/* "dir/mlp.onnx" -> "mlp" and "dir" */
static void split_path(const char *path, char *stem, size_t ns, char *dir, size_t nd) {
  const char *slash = strrchr(path, '/');
  const char *base = slash ? slash + 1 : path;
  if (slash) snprintf(dir, nd, "%.*s", (int)(slash - path), path);
  else snprintf(dir, nd, ".");
  if (!dir[0]) snprintf(dir, nd, "/");
  snprintf(stem, ns, "%s", base);
  char *dot = strrchr(stem, '.');
  if (dot && dot != stem) *dot = 0;
}

int cmd_import(int argc, char **argv) {
  cli_args a;
  int status = cli_parse(argc, argv, "import", "-o=value --name=value", &a);
  if (status) return status;
  const char *out = cli_value(&a, "-o");
  if (!a.model || !out) {
    fprintf(stderr, "lathe import: error: usage: lathe import MODEL.onnx -o DIR [--name NAME]\n");
    cli_args_free(&a);
    return 1;
  }
  char stem[256], dir[4096], msg[2048];
  split_path(a.model, stem, sizeof stem, dir, sizeof dir);
  const char *name = cli_value(&a, "--name");
  Onnx__ModelProto *m = ox_model_read(a.model, msg, sizeof msg);
  ox_import_result r = {0};
  ox_import_options o = {.model_name = name ? name : stem, .base_dir = dir};
  if (!m) status = 1;
  else if (ox_import(m, &o, &r, msg, sizeof msg)) {
    fprintf(stderr, "lathe import: error: %s: %s\n", a.model, msg);
    status = 3; /* reported */
  }
  if (!status && mkdir(out, 0777) != 0 && errno != EEXIST) {
    snprintf(msg, sizeof msg, "cannot create directory %s: %s", out, strerror(errno));
    status = 1;
  }
  if (!status && ox_import_write(&r, out, msg, sizeof msg)) status = 1;
  if (!status) {
    lathe_error err = {0};
    lathe_model *lm = lathe_model_parse(r.name, r.nn, strlen(r.nn), &err);
    if (!lm) {
      fprintf(stderr, "lathe import: internal error: the .nn written does not parse:\n%s\n", err.message ? err.message : "");
      status = 2;
    }
    lathe_model_free(lm);
    lathe_error_clear(&err);
  }
  if (status == 1) fprintf(stderr, "lathe import: error: %s\n", msg);
  if (status == 3) status = 1;
  if (!status) {
    int64_t np = 0;
    for (int i = 0; i < r.nw; i++) np += r.w[i].bytes / 4;
    printf("wrote %s/%s.nn and %s/%s.safetensors (%d tensors, %lld parameters); inputs:", out, r.name, out, r.name, r.nw,
           (long long)np);
    for (int i = 0; i < r.nin; i++) printf(" %s", r.in_nn[i]);
    printf("; outputs:");
    for (int i = 0; i < r.nout; i++) printf(" %s", r.out_nn[i]);
    printf("\n");
  }
  ox_import_free(&r);
  ox_model_free(m);
  cli_args_free(&a);
  return status;
}
#else
int cmd_import(int argc, char **argv) {
  (void)argc, (void)argv;
  fprintf(stderr, "lathe import: error: this lathe was built without ONNX support (missing: %s; ./setup.sh installs "
                  "them, then configure again)\n", LATHE_ONNX_MISSING);
  return 1;
}
#endif
