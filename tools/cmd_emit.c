/* cmd_emit.c -- `lathe emit MODEL --weights W -o DIR [--bind NAME=N]
 * [--weights-file] [--entry forward|train_step] [--gemm blas|generated]
 * [--target TRIPLE] [--cpu NAME]`: the forward pass (or one step of the
 * train block) compiled ahead of time (object, static library, header;
 * runtime/api_emit.c writes them). The program is
 * compiled exactly as `lathe run` compiles it (same options, passes and
 * weights), so the emitted code computes the same bits. */
#include <stdio.h>
#include <string.h>

#include "runtime/program.h"
#include "tools/cli.h"

int cmd_emit(int argc, char **argv) {
  cli_args a;
  int status = cli_parse(argc, argv, "emit",
                         "--bind=pair --weights=value -o=value --weights-file=bool --entry=value --gemm=value "
                         "--target=value --cpu=value " CLI_PASS_FLAGS, &a);
  if (status) { cli_args_free(&a); return status; }
  const char *dir = cli_value(&a, "-o"), *weights = cli_value(&a, "--weights"), *entry = cli_value(&a, "--entry");
  int train = entry && !strcmp(entry, "train_step");
  lathe_options o = {.backend = LATHE_BACKEND_LLVM};
  if (entry && !train && strcmp(entry, "forward"))
    fprintf(stderr, "lathe emit: error: --entry %s: expected forward or train_step\n", entry), status = 1;
  else if (!dir) fprintf(stderr, "lathe emit: error: no output directory: give -o DIR\n"), status = 1;
  else if (!weights) fprintf(stderr, "lathe emit: error: no weights: give --weights W.safetensors (lathe train or lathe init write them)\n"), status = 1;
  else if (cli_pass_options(&a, "emit", &o) || cli_gemm("emit", cli_value(&a, "--gemm"))) status = 1;
  lathe_model *m = status ? NULL : cli_load_model(&a, &status);
  lathe_program *p = NULL;
  lathe_error err = {0};
  /* --gemm went into LATHE_GEMM (cli_gemm), which CG_GEMM_DEFAULT reads: lathe_compile agrees */
  api_emit_opts eo = {cli_has(&a, "--weights-file"), cli_value(&a, "--target"), cli_value(&a, "--cpu"), CG_GEMM_DEFAULT};
  if (m && !(p = train ? lathe_compile_train(m, &o, &err) : lathe_compile(m, &o, &err))) status = cli_report(&err);
  if (p && (api_emit_weights(p, weights, &err) || api_emit(p, dir, &eo, &err)))
    status = cli_report(&err);
  else if (p) {
    const char *M = p->g.model_name;
    fprintf(stderr, "wrote %s/%s.o, %s/lib%s.a, %s/%s.h", dir, M, dir, M, dir, M);
    if (cli_has(&a, "--weights-file")) fprintf(stderr, " and %s/%s.weights", dir, M);
    fprintf(stderr, "\n");
  }
  lathe_program_free(p);
  lathe_model_free(m);
  cli_args_free(&a);
  return status;
}
