/* api_prune_report.c -- what lathe_prune reports about a model before and
 * after pruning: parameters, nonzero weights, FLOPs, file size, metrics on
 * the validation and test splits, and the forward time on the llvm backend;
 * and the report as JSON. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "passes/passes.h"
#include "runtime/program.h"
#include "runtime/prune.h"
#include "runtime/runtime.h"

static int code_of(const lathe_error *err) { return err && err->code ? err->code : LATHE_EUSER; }

/* Parameters, nonzero prunable weights and FLOPs per example (batch 1). */
static int count(lathe_model *m, const char *path, lathe_prune_result *r, int w, lathe_error *err) {
  lathe_options lo = {.backend = LATHE_BACKEND_INTERP, .default_dim = 1, .opt_level_set = 1};
  lathe_program *p = lathe_compile(m, &lo, err);
  if (!p || lathe_weights_load(p, path, err)) {
    lathe_program_free(p);
    return code_of(err);
  }
  for (int i = 0; i < p->g.nparams; i++) {
    const ir_param *pr = &p->g.params[i];
    if (pr->state || pr->buffer) continue;
    int64_t n = ir_numel(&pr->shape), nz = 0;
    for (int64_t j = 0; j < n; j++) nz += p->params[i][j] != 0;
    r->params[w] += n;
    if (pr_prunable(&p->g, i)) r->weights_nonzero[w] += nz;
  }
  for (int i = 0; i < p->g.nnodes; i++) r->flops[w] += ir_node_flops(&p->g, i);
  lathe_program_free(p);
  return 0;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

/* The median forward time at batch B, compiled by llvm at the default
 * level, on inputs of small pseudo-random values (targets left unset). */
static int time_forward(lathe_model *m, const char *path, int64_t B, double *us, lathe_error *err) {
  lathe_options lo = {.backend = LATHE_BACKEND_LLVM, .default_dim = B};
  lathe_program *p = lathe_compile(m, &lo, err);
  int rc = p ? lathe_weights_load(p, path, err) : code_of(err);
  for (int i = 0; rc == 0 && i < lathe_num_inputs(p); i++) {
    lathe_tensor_info info;
    lathe_input_info(p, i, &info);
    if (info.role != LATHE_ROLE_INPUT) continue;
    lathe_tensor t = {.dtype = info.dtype, .rank = info.rank};
    memcpy(t.shape, info.shape, sizeof t.shape);
    size_t bytes = lathe_tensor_bytes(&t);
    t.data = calloc(bytes + 1, 1);
    if (!t.data) { rc = api_fail(err, LATHE_ENOMEM, "out of memory"); break; }
    uint32_t s = 12345;
    for (int64_t j = 0; info.dtype == LATHE_F32 && j < lathe_tensor_numel(&t); j++)
      s = s * 1664525u + 1013904223u, ((float *)t.data)[j] = (float)(s >> 8) / (float)(1u << 24) - 0.5f;
    rc = lathe_set_input(p, info.name, &t, err);
    free(t.data);
  }
  enum { MAXRUNS = 400 };
  double ts[MAXRUNS];
  int n = 0;
  for (int k = 0; rc == 0 && k < 3; k++) rc = lathe_run(p, err); /* warm caches and the thread pool */
  for (double t0 = now_us(); rc == 0 && n < MAXRUNS && (n < 5 || now_us() - t0 < 2e5); n++) {
    double t1 = now_us();
    rc = lathe_run(p, err);
    ts[n] = now_us() - t1;
  }
  if (rc == 0) {
    qsort(ts, (size_t)n, sizeof *ts, cmp_double);
    *us = ts[n / 2];
  }
  lathe_program_free(p);
  return rc;
}

static int eval(lathe_model *m, const char *path, const lathe_prune_options *o, const char *split, lathe_metrics *out,
                lathe_error *err) {
  lathe_eval_options eo = {.weights = path, .split = split};
  eo.data.data = o->data;
  eo.data.backend = o->backend;
  int rc = lathe_eval(m, &eo, out, err);
  char empty[64];
  snprintf(empty, sizeof empty, "the %s split is empty", split);
  if (rc && err && err->message && !strcmp(err->message, empty)) { /* a train block with no such split (the char-GPT's has no test part) */
    lathe_error_clear(err);
    memset(out, 0, sizeof *out);
    return 0;
  }
  return rc;
}

int pr_measure(pr_report *rep, int w, lathe_model *m, const char *path, lathe_error *err) {
  lathe_prune_result *r = rep->r;
  struct stat st;
  if (stat(path, &st) == 0) r->file_bytes[w] = (int64_t)st.st_size;
  if (count(m, path, r, w, err)) return code_of(err);
  if (rep->o->data && (eval(m, path, rep->o, "val", &r->val[w], err) || eval(m, path, rep->o, "test", &r->test[w], err)))
    return code_of(err);
  return time_forward(m, path, rep->o->time_batch ? rep->o->time_batch : 64, &r->time_us[w], err);
}

/* ---- JSON ---- */

typedef struct {
  char *s;
  size_t n, cap;
  int oom;
} sbuf;

static void put(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(sbuf *b, const char *fmt, ...) {
  va_list ap;
  for (;;) {
    va_start(ap, fmt);
    int k = vsnprintf(b->s ? b->s + b->n : NULL, b->s ? b->cap - b->n : 0, fmt, ap);
    va_end(ap);
    if (k < 0) { b->oom = 1; return; }
    if (b->s && b->n + (size_t)k < b->cap) { b->n += (size_t)k; return; }
    size_t cap = (b->cap + (size_t)k + 1) * 2;
    char *t = realloc(b->s, cap);
    if (!t) { b->oom = 1; return; }
    b->s = t, b->cap = cap;
  }
}

static void put_metrics(sbuf *b, const char *key, const lathe_metrics *m) {
  put(b, ", \"%s\": {", key);
  for (int i = 0; i < m->n; i++) put(b, "%s\"%s\": %.6g", i ? ", " : "", m->name[i], m->value[i]);
  put(b, "}");
}

static void put_side(sbuf *b, const lathe_prune_result *r, int w, int64_t batch) {
  put(b, "{\"params\": %lld, \"weights_nonzero\": %lld, \"flops\": %lld, \"file_bytes\": %lld, "
      "\"time_us\": %.3f, \"time_batch\": %lld", (long long)r->params[w], (long long)r->weights_nonzero[w],
      (long long)r->flops[w], (long long)r->file_bytes[w], r->time_us[w], (long long)batch);
  if (r->val[w].n) put_metrics(b, "val", &r->val[w]);
  if (r->test[w].n) put_metrics(b, "test", &r->test[w]);
  put(b, "}");
}

/* a JSON string: the characters a path or message can hold, escaped */
static void put_str(sbuf *b, const char *s) {
  put(b, "\"");
  for (; s && *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') put(b, "\\%c", c);
    else if (c < 0x20) put(b, "\\u%04x", c);
    else put(b, "%c", c);
  }
  put(b, "\"");
}

int pr_report_write(const pr_report *rep, const char *path, lathe_error *err) {
  const lathe_prune_options *o = rep->o;
  const lathe_prune_result *r = rep->r;
  int64_t batch = o->time_batch ? o->time_batch : 64;
  sbuf b = {0};
  put(&b, "{\"model\": ");
  put_str(&b, lathe_model_name(rep->before_model));
  put(&b, ", \"kind\": \"%s\", \"sparsity\": %.6g, \"steps\": %d, \"finetune_epochs\": %lld, \"layers_pruned\": %d",
      o->structured ? "structured" : o->per_layer ? "unstructured-per-layer" : "unstructured-global", o->sparsity,
      o->steps > 0 ? o->steps : 1, (long long)o->finetune, rep->layers);
  put(&b, ", \"weights\": ");
  put_str(&b, o->out);
  if (o->structured) put(&b, ", \"model_out\": "), put_str(&b, o->model_out);
  if (rep->note[0]) put(&b, ", \"note\": "), put_str(&b, rep->note);
  put(&b, ", \"before\": ");
  put_side(&b, r, 0, batch);
  put(&b, ", \"after\": ");
  put_side(&b, r, 1, batch);
  put(&b, ", \"speedup\": %.4f}\n", r->time_us[1] > 0 ? r->time_us[0] / r->time_us[1] : 0.0);
  if (b.oom) {
    free(b.s);
    return api_fail(err, LATHE_ENOMEM, "out of memory");
  }
  char msg[1024];
  rt_chunk c = {b.s, b.n};
  int rc = rt_write_atomic(path, &c, 1, msg, sizeof msg) ? api_fail(err, LATHE_EUSER, "%s", msg) : 0;
  free(b.s);
  return rc;
}
