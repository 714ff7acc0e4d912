/* args.c -- flag parsing for the `lathe` command, driven by each command's
 * flag spec ("--bind=pair --ir=bool --weights=value"). */
#include <errno.h>
#include <math.h>
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

/* The kind of `flag` in spec ("bool", "value", "pair"), or NULL. */
static const char *flag_kind(const char *spec, const char *flag) {
  size_t n = strlen(flag);
  for (const char *p = strstr(spec, flag); p; p = strstr(p + 1, flag))
    if ((p == spec || p[-1] == ' ') && p[n] == '=') {
      const char *k = p + n + 1;
      return !strncmp(k, "bool", 4) ? "bool" : !strncmp(k, "pair", 4) ? "pair"
             : !strncmp(k, "attached", 8) ? "attached" : "value";
    }
  return NULL;
}

static int add_item(cli_args *a, const char *cmd, const char *flag, const char *kind, const char *val) {
  if (a->nitems >= CLI_MAXITEMS) return bad(cmd, "too many flags (at most %s)", "128");
  cli_item *it = &a->items[a->nitems];
  snprintf(it->flag, sizeof it->flag, "%s", flag);
  it->value = val;
  it->name = NULL;
  if (!strcmp(kind, "pair")) {
    const char *eq = strchr(val, '=');
    if (!eq || eq == val || !eq[1]) return bad(cmd, "expected NAME=VALUE after %s", flag);
    it->name = strndup(val, (size_t)(eq - val));
    it->value = eq + 1;
  }
  a->nitems++;
  return 0;
}

int cli_parse(int argc, char **argv, const char *cmd, const char *spec, cli_args *a) {
  memset(a, 0, sizeof *a);
  for (int i = 0; i < argc; i++) {
    const char *arg = argv[i], *val = NULL;
    if (arg[0] != '-' || arg[1] == 0) {
      if (a->model) return bad(cmd, "unexpected argument '%s'", arg);
      a->model = arg;
      continue;
    }
    const char *eq = strchr(arg, '=');
    size_t fl = eq ? (size_t)(eq - arg) : strlen(arg);
    char flag[32];
    if (fl >= sizeof flag) return bad(cmd, "unknown flag '%s'", arg);
    memcpy(flag, arg, fl);
    flag[fl] = 0;
    const char *kind = flag_kind(spec, flag);
    if (!kind && arg[1] != '-' && !eq && fl > 2) { /* -O2: a short flag with its value attached */
      char shortf[3] = {arg[0], arg[1], 0};
      const char *k = flag_kind(spec, shortf);
      if (k && !strcmp(k, "attached")) kind = k, val = arg + 2, memcpy(flag, shortf, sizeof shortf);
    }
    if (!kind) return bad(cmd, "unknown flag '%s'", flag);
    if (!strcmp(kind, "attached")) {
      if (!val && eq) val = eq + 1;
      if (!val || !*val) return bad(cmd, "%s needs its value attached, as in -O2", flag);
    } else if (strcmp(kind, "bool") != 0) {
      if (eq) val = eq + 1;
      else if (i + 1 < argc) val = argv[++i];
      else return bad(cmd, "%s needs a value", flag);
    } else if (eq) {
      return bad(cmd, "%s takes no value", flag);
    }
    if (add_item(a, cmd, flag, kind, val)) return 1;
  }
  if (!a->model) return bad(cmd, "%s", "no model file given");
  return 0;
}

void cli_args_free(cli_args *a) {
  for (int i = 0; i < a->nitems; i++) free((char *)a->items[i].name);
  a->nitems = 0;
}

const char *cli_value(const cli_args *a, const char *flag) {
  const char *v = NULL;
  for (int i = 0; i < a->nitems; i++)
    if (!strcmp(a->items[i].flag, flag)) v = a->items[i].value;
  return v;
}

int cli_has(const cli_args *a, const char *flag) {
  for (int i = 0; i < a->nitems; i++)
    if (!strcmp(a->items[i].flag, flag)) return 1;
  return 0;
}

int cli_items(const cli_args *a, const char *flag, cli_item *out, int max) {
  int n = 0;
  for (int i = 0; i < a->nitems && n < max; i++)
    if (!strcmp(a->items[i].flag, flag)) out[n++] = a->items[i];
  return n;
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

int cli_u64(const cli_args *a, const char *cmd, const char *flag, uint64_t *out, int *given) {
  const char *v = cli_value(a, flag);
  if (given) *given = v != NULL;
  if (!v) return 0;
  if (parse_u64(v, out)) {
    fprintf(stderr, "lathe %s: error: %s expects a non-negative integer, got '%s'\n", cmd, flag, v);
    return 1;
  }
  return 0;
}

int cli_double(const cli_args *a, const char *cmd, const char *flag, double *out) {
  const char *v = cli_value(a, flag);
  if (!v) return 0;
  char *end;
  errno = 0;
  double d = strtod(v, &end);
  if (errno || *end || !*v || !isfinite(d)) {
    fprintf(stderr, "lathe %s: error: %s expects a number, got '%s'\n", cmd, flag, v);
    return 1;
  }
  *out = d;
  return 0;
}

lathe_model *cli_load_model(const cli_args *a, int *status) {
  lathe_error err = {0};
  lathe_model *m = lathe_model_load(a->model, &err);
  if (!m) { *status = cli_report(&err); return NULL; }
  cli_item b[CLI_MAXITEMS];
  int nb = cli_items(a, "--bind", b, CLI_MAXITEMS);
  for (int i = 0; i < nb; i++) {
    uint64_t v;
    if (parse_u64(b[i].value, &v) || v == 0 || v > ((uint64_t)1 << 40)) {
      fprintf(stderr, "lathe: error: --bind %s=%s: expected a positive integer\n", b[i].name, b[i].value);
      lathe_model_free(m);
      *status = 1;
      return NULL;
    }
    if (lathe_model_bind(m, b[i].name, (int64_t)v, &err)) {
      *status = cli_report(&err);
      lathe_model_free(m);
      return NULL;
    }
  }
  return m;
}

/* -O<level>, --passes, --print-after, --dump-dir, --time-passes (CLI_PASS_FLAGS). */
int cli_pass_options(const cli_args *a, const char *cmd, lathe_options *o) {
  const char *lv = cli_value(a, "-O");
  if (lv) {
    if (lv[0] < '0' || lv[0] > '3' || lv[1]) {
      fprintf(stderr, "lathe %s: error: -O%s: expected -O0, -O1, -O2 or -O3\n", cmd, lv);
      return 1;
    }
    o->opt_level_set = 1;
    o->opt_level = lv[0] - '0';
  }
  o->passes = cli_value(a, "--passes");
  o->print_after = cli_value(a, "--print-after");
  o->dump_dir = cli_value(a, "--dump-dir");
  o->time_passes = cli_has(a, "--time-passes");
  o->pass_log = stderr;
  return cli_precision(cmd, cli_value(a, "--precision"), &o->precision);
}

int cli_precision(const char *cmd, const char *v, int *precision) {
  if (!v || !strcmp(v, "f32")) *precision = LATHE_PRECISION_F32;
  else if (!strcmp(v, "bf16")) *precision = LATHE_PRECISION_BF16;
  else return fprintf(stderr, "lathe %s: error: --precision %s: expected f32 or bf16\n", cmd, v), 1;
  return 0;
}

int cli_weights_quant(const char *weights, lathe_options *o, lathe_error *err) {
  return weights ? lathe_weights_quant(weights, &o->quant, err) : 0;
}
