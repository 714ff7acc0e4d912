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

#define CLI_MAXPAIRS 64
typedef struct {
  const char *name;
  const char *value;
} cli_pair;

/* Every flag any command takes; a command rejects the ones it does not use. */
typedef struct {
  const char *model;
  const char *weights;
  const char *out_file;     /* -o */
  const char *backend;
  uint64_t seed;
  int f64, ir;
  cli_pair binds[CLI_MAXPAIRS];
  int nbinds;
  cli_pair ins[CLI_MAXPAIRS];
  int nins;
  cli_pair outs[CLI_MAXPAIRS];
  int nouts;
} cli_args;

/* Flags a command accepts, as a string of names: "--bind --ir". */
int cli_parse(int argc, char **argv, const char *cmd, const char *allowed, cli_args *a);
void cli_args_free(cli_args *a);
/* Print an error from the library and clear it; returns the exit status. */
int cli_report(lathe_error *err);
/* Load the model and apply --bind flags. NULL after reporting. */
lathe_model *cli_load_model(const cli_args *a, int *status);

#endif
