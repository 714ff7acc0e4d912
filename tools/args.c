/* args.c -- flag parsing for the `lathe` command. Flags take their value as
 * the next argument or after '=' (--seed 3, --seed=3). Repeatable NAME=VALUE
 * flags (--bind, --in, --out) collect into arrays. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/cli.h"

int cli_report(lathe_error *err) {
  int code = err->code == LATHE_EINTERNAL ? 2 : 1;
  const char *m = err->message ? err->message : "unknown error";
  size_t n = strlen(m);
  /* Diagnostics from the frontend are complete lines; other messages get the prefix. */
  if (strstr(m, ": error: ")) fprintf(stderr, "%s%s", m, n && m[n - 1] == '\n' ? "" : "\n");
  else fprintf(stderr, "lathe: error: %s%s", m, n && m[n - 1] == '\n' ? "" : "\n");
  lathe_error_clear(err);
  return code;
}

static int bad(const char *cmd, const char *fmt, const char *arg) {
  fprintf(stderr, "lathe %s: error: ", cmd);
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "\n(see lathe %s --help)\n", cmd);
  return 1;
}

static int add_pair(const char *cmd, cli_pair *arr, int *n, const char *flag, const char *v) {
  const char *eq = strchr(v, '=');
  if (!eq || eq == v || !eq[1]) return bad(cmd, "expected NAME=VALUE after %s", flag);
  if (*n >= CLI_MAXPAIRS) return bad(cmd, "too many %s flags", flag);
  arr[*n].name = strndup(v, (size_t)(eq - v));
  arr[*n].value = eq + 1;
  (*n)++;
  return 0;
}

static int parse_u64(const char *s, uint64_t *out) {
  char *end;
  errno = 0;
  if (*s == '-' || *s == 0) return -1;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || *end) return -1;
  *out = v;
  return 0;
}

/* Does `allowed` list flag f as a whole word? */
static int allows(const char *allowed, const char *f) {
  size_t n = strlen(f);
  for (const char *p = strstr(allowed, f); p; p = strstr(p + 1, f))
    if ((p == allowed || p[-1] == ' ') && (p[n] == ' ' || p[n] == 0)) return 1;
  return 0;
}

static const char *const value_flags[] = {"--weights", "-o", "--backend", "--seed", "--bind", "--in", "--out"};

int cli_parse(int argc, char **argv, const char *cmd, const char *allowed, cli_args *a) {
  memset(a, 0, sizeof *a);
  for (int i = 0; i < argc; i++) {
    char flag[64];
    const char *arg = argv[i], *val = NULL;
    if (arg[0] != '-' || arg[1] == 0) {
      if (a->model) return bad(cmd, "unexpected argument '%s'", arg);
      a->model = arg;
      continue;
    }
    const char *eq = strchr(arg, '=');
    size_t fl = eq ? (size_t)(eq - arg) : strlen(arg);
    if (fl >= sizeof flag) return bad(cmd, "unknown flag '%s'", arg);
    memcpy(flag, arg, fl);
    flag[fl] = 0;
    if (!allows(allowed, flag)) return bad(cmd, "unknown flag '%s'", flag);
    int takes = 0;
    for (size_t k = 0; k < sizeof value_flags / sizeof *value_flags; k++)
      if (!strcmp(flag, value_flags[k])) takes = 1;
    if (takes) {
      if (eq) val = eq + 1;
      else if (i + 1 < argc) val = argv[++i];
      else return bad(cmd, "%s needs a value", flag);
    } else if (eq) {
      return bad(cmd, "%s takes no value", flag);
    }
    if (!strcmp(flag, "--weights")) a->weights = val;
    else if (!strcmp(flag, "-o")) a->out_file = val;
    else if (!strcmp(flag, "--backend")) a->backend = val;
    else if (!strcmp(flag, "--seed")) {
      if (parse_u64(val, &a->seed)) return bad(cmd, "--seed expects a non-negative integer, got '%s'", val);
    } else if (!strcmp(flag, "--bind")) {
      if (add_pair(cmd, a->binds, &a->nbinds, flag, val)) return 1;
    } else if (!strcmp(flag, "--in")) {
      if (add_pair(cmd, a->ins, &a->nins, flag, val)) return 1;
    } else if (!strcmp(flag, "--out")) {
      if (add_pair(cmd, a->outs, &a->nouts, flag, val)) return 1;
    } else if (!strcmp(flag, "--f64")) a->f64 = 1;
    else if (!strcmp(flag, "--ir")) a->ir = 1;
  }
  if (!a->model) return bad(cmd, "%s", "no model file given");
  return 0;
}

lathe_model *cli_load_model(const cli_args *a, int *status) {
  lathe_error err = {0};
  lathe_model *m = lathe_model_load(a->model, &err);
  if (!m) { *status = cli_report(&err); return NULL; }
  for (int i = 0; i < a->nbinds; i++) {
    uint64_t v;
    if (parse_u64(a->binds[i].value, &v) || v == 0 || v > ((uint64_t)1 << 40)) {
      fprintf(stderr, "lathe: error: --bind %s=%s: expected a positive integer\n", a->binds[i].name,
              a->binds[i].value);
      lathe_model_free(m);
      *status = 1;
      return NULL;
    }
    if (lathe_model_bind(m, a->binds[i].name, (int64_t)v, &err)) {
      *status = cli_report(&err);
      lathe_model_free(m);
      return NULL;
    }
  }
  return m;
}

void cli_args_free(cli_args *a) {
  for (int i = 0; i < a->nbinds; i++) free((char *)a->binds[i].name);
  for (int i = 0; i < a->nins; i++) free((char *)a->ins[i].name);
  for (int i = 0; i < a->nouts; i++) free((char *)a->outs[i].name);
  a->nbinds = a->nins = a->nouts = 0;
}
