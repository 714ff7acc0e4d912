/* cmd_prune.c -- `lathe prune MODEL --weights W --sparsity S [--structured]
 * [--finetune EPOCHS --data D] -o P.safetensors`: lathe_prune with its report
 * printed and written as JSON (docs/prune.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/cli.h"

/* P.safetensors -> P + ext (the resized model P.nn, the report P.json) */
static char *beside(const char *out, const char *ext) {
  size_t n = strlen(out);
  const char *dot = strrchr(out, '.'), *slash = strrchr(out, '/');
  if (dot && (!slash || dot > slash)) n = (size_t)(dot - out);
  char *s = malloc(n + strlen(ext) + 1);
  if (s) memcpy(s, out, n), strcpy(s + n, ext);
  return s;
}

static void print_metrics(const char *what, const lathe_metrics *a, const lathe_metrics *b) {
  for (int i = 0; i < a->n && i < b->n; i++)
    printf("  %-6s %-16s %14.4f %14.4f\n", what, a->name[i], a->value[i], b->value[i]);
}

static void print_report(const lathe_prune_result *r, int64_t batch) {
  printf("%-23s %14s %14s\n", "", "before", "after");
  printf("  %-21s %14lld %14lld\n", "parameters", (long long)r->params[0], (long long)r->params[1]);
  printf("  %-21s %14lld %14lld\n", "nonzero weights", (long long)r->weights_nonzero[0],
         (long long)r->weights_nonzero[1]);
  printf("  %-21s %14lld %14lld\n", "FLOPs per example", (long long)r->flops[0], (long long)r->flops[1]);
  printf("  %-21s %14lld %14lld\n", "file bytes", (long long)r->file_bytes[0], (long long)r->file_bytes[1]);
  char t[32];
  snprintf(t, sizeof t, "time us (batch %lld)", (long long)batch);
  printf("  %-21s %14.1f %14.1f  (%.2fx)\n", t, r->time_us[0], r->time_us[1],
         r->time_us[1] > 0 ? r->time_us[0] / r->time_us[1] : 0.0);
  print_metrics("val", &r->val[0], &r->val[1]);
  print_metrics("test", &r->test[0], &r->test[1]);
}

int cmd_prune(int argc, char **argv) {
  cli_args a;
  int status = cli_parse(argc, argv, "prune",
                         "--weights=value --sparsity=value --structured=bool --per-layer=bool --steps=value "
                         "--finetune=value --lr=value --batch=value --data=value -o=value --report=value --time-batch=value --backend=value",
                         &a);
  if (status) { cli_args_free(&a); return status; }
  const char *out = cli_value(&a, "-o");
  lathe_prune_options o = {.weights = cli_value(&a, "--weights"), .out = out ? out : "pruned.safetensors",
                           .structured = cli_has(&a, "--structured"), .per_layer = cli_has(&a, "--per-layer"),
                           .data = cli_value(&a, "--data"), .progress = stderr};
  uint64_t steps = 0, epochs = 0, tb = 0, batch = 0;
  int given = 0;
  o.sparsity = -1;
  if (!o.weights) fprintf(stderr, "lathe prune: error: no weights: give --weights W.safetensors (f32, from lathe train)\n"), status = 1;
  else if (!cli_value(&a, "--sparsity"))
    fprintf(stderr, "lathe prune: error: no sparsity: give --sparsity S, the fraction to remove (0 <= S < 1)\n"), status = 1;
  else if (cli_double(&a, "prune", "--sparsity", &o.sparsity) || cli_double(&a, "prune", "--lr", &o.lr) || cli_u64(&a, "prune", "--steps", &steps, &given) ||
           cli_u64(&a, "prune", "--finetune", &epochs, &given) || cli_u64(&a, "prune", "--time-batch", &tb, &given) ||
           cli_u64(&a, "prune", "--batch", &batch, &given) ||
           cli_backend(cli_value(&a, "--backend"), &o.backend) < 0)
    status = 1;
  else if (steps > 1000 || epochs > 1000000000 || tb > 1 << 20 || batch > (uint64_t)1 << 40)
    fprintf(stderr, "lathe prune: error: --steps at most 1000, --finetune at most 10^9, --time-batch at most 2^20, "
                    "--batch at most 2^40\n"),
        status = 1;
  o.steps = (int)steps, o.finetune = (int64_t)epochs, o.time_batch = (int64_t)tb, o.batch = (int64_t)batch;
  char *model_out = o.structured ? beside(o.out, ".nn") : NULL;
  char *report = beside(o.out, ".json");
  o.model_out = model_out;
  o.report = cli_value(&a, "--report") ? cli_value(&a, "--report") : report;
  lathe_model *m = status ? NULL : cli_load_model(&a, &status);
  lathe_error err = {0};
  lathe_prune_result r;
  if (m && lathe_prune(m, &o, &r, &err)) status = cli_report(&err);
  else if (m) {
    int64_t batch = o.time_batch ? o.time_batch : 64;
    if (o.structured)
      printf("pruned %d layer%s structurally: %.0f%% of their neurons, channels and heads removed\n", r.layers,
             r.layers == 1 ? "" : "s", o.sparsity * 100);
    else
      printf("pruned %d weight tensor%s: %.1f%% of their entries are zero (%s)\n", r.layers, r.layers == 1 ? "" : "s",
             r.weights_nonzero[0] ? 100.0 * (1.0 - (double)r.weights_nonzero[1] / (double)r.weights_nonzero[0]) : 0.0,
             o.per_layer ? "per layer" : "one global threshold");
    if (r.note[0]) printf("note: %s\n", r.note);
    print_report(&r, batch);
    if (model_out) printf("wrote %s\n", model_out);
    printf("wrote %s\nwrote %s\n", o.out, o.report);
  }
  lathe_model_free(m);
  free(model_out);
  free(report);
  cli_args_free(&a);
  return status;
}
