/* lathe.c -- the `lathe` command: a thin client of the public API
 * (include/lathe.h). Each subcommand is a row in `commands`; its flags are
 * documented in its help text. Exit status: 0 success, 1 user error, 2
 * internal error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lathe.h"
#include "tools/cli.h"

static const cli_command commands[] = {
  {"check", cmd_check, "parse and verify a model; print the graph summary",
   "usage: lathe check MODEL [--bind NAME=N]... [--ir]\n"
   "\n"
   "Parses and type-checks MODEL, lowers it to a static graph and prints every node with\n"
   "its shape and FLOPs, the parameter count and the memory parameters and activations need.\n"
   "\n"
   "  --bind NAME=N   bind a symbolic dimension (unbound ones default to 1 for check)\n"
   "  --ir            print the IR listing instead of the summary table\n"},
  {"dot", cmd_dot, "write the graph as Graphviz DOT to stdout",
   "usage: lathe dot MODEL [--bind NAME=N]...\n"
   "\n"
   "Writes the lowered graph in Graphviz DOT format: lathe dot m.nn > g.dot && dot -Tsvg g.dot\n"
   "\n"
   "  --bind NAME=N   bind a symbolic dimension (unbound ones default to 1)\n"},
  {"run", cmd_run, "run one forward pass",
   "usage: lathe run MODEL [--weights W.safetensors] --in NAME=FILE.npy... [--out NAME=FILE.npy]...\n"
   "                 [--bind NAME=N]... [--backend interp|llvm|cuda] [--f64]\n"
   "\n"
   "Runs one forward pass. Symbolic dimensions are bound from the input arrays' shapes.\n"
   "Outputs named with --out are written as .npy; without --out every output is printed.\n"
   "\n"
   "  --weights FILE    safetensors weights (required when the model has parameters)\n"
   "  --in NAME=FILE    an input array (.npy); every input must be given (targets optional)\n"
   "  --out NAME=FILE   write output NAME (or 'loss') to FILE (.npy)\n"
   "  --bind NAME=N     bind a symbolic dimension explicitly\n"
   "  --backend B       llvm (native code through LLVM; the default), interp (the reference\n"
   "                    interpreter), cuda\n"
   "  --f64             compute in double precision (implies --backend interp)\n"},
  {"init", cmd_init, "write freshly initialised weights",
   "usage: lathe init MODEL -o W.safetensors [--seed N] [--bind NAME=N]...\n"
   "\n"
   "Writes every parameter, initialised as the model says (xavier for dense weights, he for\n"
   "conv2d, zeros for biases, ones for layernorm scales, or the train block's init), seeded.\n"
   "\n"
   "  -o FILE         output file (written atomically)\n"
   "  --seed N        random seed (default 0)\n"
   "  --bind NAME=N   bind a symbolic dimension parameters depend on (unbound ones default to 1)\n"},
};
static const int ncommands = (int)(sizeof commands / sizeof commands[0]);

static void usage(FILE *f) {
  fprintf(f, "usage: lathe COMMAND [ARGS]\n\nLathe %s: a compiler for neural-network models (.nn files).\n\n"
             "commands:\n", LATHE_VERSION);
  for (int i = 0; i < ncommands; i++) fprintf(f, "  %-9s %s\n", commands[i].name, commands[i].summary);
  fprintf(f, "\nlathe COMMAND --help describes a command's flags.\n");
}

int main(int argc, char **argv) {
  if (argc < 2) { usage(stderr); return 1; }
  const char *cmd = argv[1];
  if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
    if (argc > 2 && strcmp(cmd, "help") == 0) {
      for (int i = 0; i < ncommands; i++)
        if (!strcmp(argv[2], commands[i].name)) { fputs(commands[i].help, stdout); return 0; }
    }
    usage(stdout);
    return 0;
  }
  if (!strcmp(cmd, "--version")) { printf("lathe %s\n", LATHE_VERSION); return 0; }
  for (int i = 0; i < ncommands; i++) {
    if (strcmp(cmd, commands[i].name) != 0) continue;
    for (int a = 2; a < argc; a++)
      if (!strcmp(argv[a], "--help") || !strcmp(argv[a], "-h")) { fputs(commands[i].help, stdout); return 0; }
    return commands[i].fn(argc - 2, argv + 2);
  }
  fprintf(stderr, "lathe: error: unknown command '%s'\n", cmd);
  usage(stderr);
  return 1;
}
