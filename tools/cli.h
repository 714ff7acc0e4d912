/* cli.h -- the `lathe` command's internals: the command table, flag parsing
 * shared by the commands (tools/args.c) and the commands themselves. */
#ifndef LATHE_CLI_H
#define LATHE_CLI_H

#include <stdint.h>
#include "lathe.h"

typedef struct {
  const char *name;
  int (*fn)(int argc, char **argv);
  const char *summary;
  const char *help;
} cli_command;

int cmd_check(int argc, char **argv);
int cmd_dot(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_init(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_emit(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
/* one line: the quantized products' kernels on this CPU and AMX's state (tools/cmd_quantize.c) */
void cli_print_kernels(FILE *f);
int cmd_export(int argc, char **argv);
int cmd_import(int argc, char **argv);
int cmd_prune(int argc, char **argv);

/* Parsed command line: the model file and every flag in order. A flag takes
 * its value as the next argument or after '=' (--seed 3, --seed=3); a flag of
 * kind "attached" takes it glued on (-O2; also -O=2). */
#define CLI_MAXITEMS 128
typedef struct {
  char flag[32];      /* "--weights" */
  const char *name;   /* pair flags: NAME of NAME=VALUE (malloc'd) */
  const char *value;  /* NULL for boolean flags */
} cli_item;

typedef struct {
  const char *model;
  cli_item items[CLI_MAXITEMS];
  int nitems;
} cli_args;

/* spec lists the flags a command accepts with their kind:
 * "--bind=pair --ir=bool --weights=value". Unknown flags, missing values and
 * malformed NAME=VALUE pairs are errors (exit status 1, message printed). */
int cli_parse(int argc, char **argv, const char *cmd, const char *spec, cli_args *a);
void cli_args_free(cli_args *a);

const char *cli_value(const cli_args *a, const char *flag);   /* the last value given, or NULL */
int cli_has(const cli_args *a, const char *flag);             /* a boolean flag was given */
/* Every NAME=VALUE item of a pair flag, or every value of a repeatable
 * value flag (names NULL), in order; returns the count (at most max). */
int cli_items(const cli_args *a, const char *flag, cli_item *out, int max);
/* Numbers: 0 and *out set when given, 0 and untouched when absent, 1 after
 * printing an error when malformed. */
int cli_u64(const cli_args *a, const char *cmd, const char *flag, uint64_t *out, int *given);
int cli_double(const cli_args *a, const char *cmd, const char *flag, double *out);

/* The graph-pipeline flags of check, run and train, and reading them into
 * the compile options (pass_log = stderr). 0, or 1 after an error. */
#define CLI_PASS_FLAGS "-O=attached --passes=value --print-after=value --dump-dir=value --time-passes=bool --precision=value"
/* --precision f32|bf16 into *precision (lathe_precision); absent: f32. 0, or 1 with the error printed. */
int cli_precision(const char *cmd, const char *v, int *precision);
int cli_pass_options(const cli_args *a, const char *cmd, lathe_options *o);
/* o->quant from the weights file's tensors (a quantized file compiles its
 * products quantized); NULL weights: nothing. 0, or the error's status. */
int cli_weights_quant(const char *weights, lathe_options *o, lathe_error *err);
#define CLI_PASS_HELP \
  "  -O0 .. -O3      graph optimisation level (default 2, or LATHE_OPT_LEVEL): -O0 none (and\n" \
  "                  no fusion at all, the unfused baseline), -O1 simplify + dce + foldbn, -O2\n" \
  "                  constfold, simplify, cse, dce, foldbn, attnsave, fuse, -O3 the first three\n" \
  "                  twice round\n" \
  "  --passes=LIST   run these passes instead (foldbn, constfold, simplify, cse, dce, attnsave,\n" \
  "                  fuse; comma-separated; without fuse the backend fuses nothing either)\n" \
  "  --print-after=P print the graph to stderr after pass P\n" \
  "  --precision P   f32 (the default) or bf16: with --backend cuda, bf16 activations and\n" \
  "                  products (f32 sums, weights, optimizer state); llvm refuses bf16\n" \
  "  --dump-dir DIR  write NN-PASS.txt and NN-PASS.dot after every pass (00-input first)\n" \
  "  --time-passes   print each pass's time and rewrites to stderr\n"

/* --gemm blas|generated (s may be NULL: nothing changes): the llvm
 * backend's large matrix products, for every program this process compiles
 * (as LATHE_GEMM, which the flag sets). -1 after printing an error. */
int cli_gemm(const char *cmd, const char *s);
#define CLI_GEMM_HELP \
  "  --gemm G        llvm backend's large matrix products: blas (OpenBLAS, the default, or\n" \
  "                  LATHE_GEMM) or generated (tiled vector code, no BLAS call)\n"

/* "llvm" (the default when s is NULL), "interp" or "cuda"; -1 after printing an error. */
int cli_backend(const char *s, lathe_backend *b);
/* Print an error from the library and clear it; returns the exit status. */
int cli_report(lathe_error *err);
/* Load the model and apply --bind flags. NULL after reporting. */
lathe_model *cli_load_model(const cli_args *a, int *status);

#endif
