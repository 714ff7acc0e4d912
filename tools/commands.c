/* commands.c -- the subcommands of `lathe`: check, dot, init, run. Each parses
 * its flags, calls the public API and turns errors into an exit status. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/cli.h"

static int parse_backend(const char *s, lathe_backend *b) {
  if (!s || !strcmp(s, "llvm")) *b = LATHE_BACKEND_LLVM;
  else if (!strcmp(s, "interp")) *b = LATHE_BACKEND_INTERP;
  else if (!strcmp(s, "cuda")) *b = LATHE_BACKEND_CUDA;
  else {
    fprintf(stderr, "lathe: error: unknown backend '%s' (expected interp, llvm or cuda)\n", s);
    return -1;
  }
  return 0;
}

/* Load, bind and compile with unbound dims defaulting to 1 (check, dot, init). */
static lathe_program *load_for_inspection(const cli_args *a, int *status) {
  lathe_model *m = cli_load_model(a, status);
  if (!m) return NULL;
  lathe_options o = {.backend = LATHE_BACKEND_INTERP, .default_dim = 1};
  lathe_error err = {0};
  lathe_program *p = lathe_compile(m, &o, &err);
  lathe_model_free(m);
  if (!p) *status = cli_report(&err);
  return p;
}

static int inspect(int argc, char **argv, const char *cmd, const char *flags, lathe_print_kind kind) {
  cli_args a;
  int status = cli_parse(argc, argv, cmd, flags, &a);
  if (status) { cli_args_free(&a); return status; }
  lathe_program *p = load_for_inspection(&a, &status);
  if (p) {
    lathe_program_print(p, a.ir ? LATHE_PRINT_IR : kind, stdout);
    lathe_program_free(p);
  }
  cli_args_free(&a);
  return status;
}

int cmd_check(int argc, char **argv) { return inspect(argc, argv, "check", "--bind --ir", LATHE_PRINT_SUMMARY); }
int cmd_dot(int argc, char **argv) { return inspect(argc, argv, "dot", "--bind", LATHE_PRINT_DOT); }

int cmd_init(int argc, char **argv) {
  cli_args a;
  int status = cli_parse(argc, argv, "init", "--bind -o --seed", &a);
  if (status) { cli_args_free(&a); return status; }
  if (!a.out_file) {
    fprintf(stderr, "lathe init: error: no output file: give -o W.safetensors\n");
    cli_args_free(&a);
    return 1;
  }
  lathe_program *p = load_for_inspection(&a, &status);
  lathe_error err = {0};
  if (p && (lathe_weights_init(p, a.seed, &err) || lathe_weights_save(p, a.out_file, &err)))
    status = cli_report(&err);
  else if (p)
    fprintf(stderr, "wrote %d parameters to %s (seed %llu)\n", lathe_num_params(p), a.out_file,
            (unsigned long long)a.seed);
  lathe_program_free(p);
  cli_args_free(&a);
  return status;
}

/* Print a tensor the way NumPy would show a short array. */
static void print_tensor(const char *name, const lathe_tensor *t) {
  printf("%s: %s[", name, lathe_dtype_name(t->dtype));
  for (int j = 0; j < t->rank; j++) printf("%s%lld", j ? ", " : "", (long long)t->shape[j]);
  printf("]\n");
  int64_t n = lathe_tensor_numel(t), show = n < 64 ? n : 64;
  int64_t row = t->rank ? t->shape[t->rank - 1] : 1;
  for (int64_t k = 0; k < show; k++) {
    if (t->dtype == LATHE_F32) printf("%s%.6g", k % row ? " " : "  ", ((float *)t->data)[k]);
    else if (t->dtype == LATHE_I64) printf("%s%lld", k % row ? " " : "  ", (long long)((int64_t *)t->data)[k]);
    else printf("%s%d", k % row ? " " : "  ", ((int32_t *)t->data)[k]);
    if ((k + 1) % row == 0 || k + 1 == show) printf("\n");
  }
  if (show < n) printf("  ... (%lld values; use --out %s=FILE.npy for all)\n", (long long)n, name);
}

typedef struct {
  lathe_model *m;
  lathe_program *p;
  lathe_tensor in[CLI_MAXPAIRS];
} run_state;

static int run_load_inputs(run_state *s, const cli_args *a, lathe_error *err) {
  for (int i = 0; i < a->nins; i++) {
    if (lathe_npy_load(a->ins[i].value, &s->in[i], err)) return -1;
    if (lathe_model_bind_input(s->m, a->ins[i].name, s->in[i].rank, s->in[i].shape, err)) return -1;
  }
  return 0;
}

static int run_write_outputs(run_state *s, const cli_args *a, lathe_error *err) {
  for (int i = 0; i < a->nouts; i++) {
    lathe_tensor t;
    if (lathe_get_output(s->p, a->outs[i].name, &t, err)) return -1;
    int rc = lathe_npy_save(a->outs[i].value, &t, err);
    lathe_tensor_free(&t);
    if (rc) return -1;
  }
  for (int i = 0; a->nouts == 0 && i < lathe_num_outputs(s->p); i++) {
    lathe_tensor t;
    if (lathe_get_output(s->p, lathe_output_name(s->p, i), &t, err)) return -1;
    print_tensor(lathe_output_name(s->p, i), &t);
    lathe_tensor_free(&t);
  }
  return 0;
}

static int run_all(run_state *s, const cli_args *a, lathe_error *err) {
  lathe_options o = {.f64 = a->f64};
  if (parse_backend(a->backend ? a->backend : a->f64 ? "interp" : NULL, &o.backend)) return 1;
  if (a->f64 && o.backend != LATHE_BACKEND_INTERP) {
    fprintf(stderr, "lathe run: error: --f64 needs --backend interp\n");
    return 1;
  }
  if (run_load_inputs(s, a, err)) return cli_report(err);
  s->p = lathe_compile(s->m, &o, err);
  if (!s->p) return cli_report(err);
  if (!a->weights && lathe_num_params(s->p) > 0) {
    fprintf(stderr, "lathe run: error: model has %d parameters: give --weights FILE "
                    "(lathe init writes fresh ones)\n", lathe_num_params(s->p));
    return 1;
  }
  if (a->weights && lathe_weights_load(s->p, a->weights, err)) return cli_report(err);
  for (int i = 0; i < a->nins; i++)
    if (lathe_set_input(s->p, a->ins[i].name, &s->in[i], err)) return cli_report(err);
  if (lathe_run(s->p, err)) return cli_report(err);
  if (run_write_outputs(s, a, err)) return cli_report(err);
  return 0;
}

int cmd_run(int argc, char **argv) {
  cli_args a;
  int status = cli_parse(argc, argv, "run", "--bind --weights --in --out --backend --f64", &a);
  if (status) { cli_args_free(&a); return status; }
  run_state s = {0};
  lathe_error err = {0};
  s.m = cli_load_model(&a, &status);
  if (s.m) status = run_all(&s, &a, &err);
  for (int i = 0; i < a.nins; i++) lathe_tensor_free(&s.in[i]);
  lathe_program_free(s.p);
  lathe_model_free(s.m);
  cli_args_free(&a);
  return status;
}
