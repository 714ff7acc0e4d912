/* pipeline.c -- the pass manager. The whole optimiser, in order, is the
 * level table below; every pass is one file with one entry point in the
 * pass table. After each pass the graph is verified (when asked), printed
 * (--print-after), dumped as text and DOT (--dump-dir) and timed
 * (--time-passes). A later pass (fusion, memory reuse) slots in by adding a
 * row to the pass table and its name to the levels. */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "passes/passes.h"

typedef struct {
  const char *name;
  int (*run)(ir_graph *g, char *msg, size_t msgn);
  const char *what;
} pm_pass;

static const pm_pass pass_table[] = {
  {"quantize",  ps_quantize,  "dense products on stored int8/int4/16-bit weights (runs first when a quantization is asked)"},
  {"qdq_place", ps_qdq_place, "static int8: quantize / dequantize nodes around the int8 products (after quantize)"},
  {"qdq_fold",  ps_qdq_fold,  "static int8: dequantize -> quantize pairs fold into the product before (after qdq_place)"},
  {"foldbn",    ps_foldbn,    "an inference batchnorm folds into the conv2d or dense layer before it"},
  {"constfold", ps_constfold, "ops on constants become constants (reference kernels)"},
  {"simplify",  ps_simplify,  "algebraic identities: x*1, double transpose, log(softmax) ..."},
  {"cse",       ps_cse,       "identical nodes become one"},
  {"dce",       ps_dce,       "drop nodes no output, loss or gradient needs"},
  {"attnsave",  ps_attnsave,  "attention's backward reads what its forward computed instead of recomputing it"},
  {"fuse",      ps_fuse,      "trees of elementwise ops become one fused loop"},
};

/* The pipelines. simplify leaves dead nodes behind and cse exposes more
 * simplification, so -O3 goes round twice; dce runs before fuse, which
 * counts readers and must not see dead ones. foldbn leaves no dead node
 * behind and goes before fuse, which fuses its weight arithmetic. */
static const char *const level_table[PM_MAX_LEVEL + 1] = {
  [0] = "",
  [1] = "simplify,dce,foldbn",
  [2] = "constfold,simplify,cse,dce,foldbn,attnsave,fuse",
  [3] = "constfold,simplify,cse,constfold,simplify,cse,dce,foldbn,attnsave,fuse",
};

static const pm_pass *find_pass(const char *name, size_t len) {
  for (size_t i = 0; i < sizeof pass_table / sizeof pass_table[0]; i++)
    if (strlen(pass_table[i].name) == len && !strncmp(pass_table[i].name, name, len)) return &pass_table[i];
  return NULL;
}

int pm_pass_known(const char *name) { return name && find_pass(name, strlen(name)) != NULL; }

const char *pm_level_passes(int level) { return level >= 0 && level <= PM_MAX_LEVEL ? level_table[level] : NULL; }

static int unknown_pass(const char *name, size_t len, char *msg, size_t mn) {
  char known[256] = "";
  for (size_t i = 0; i < sizeof pass_table / sizeof pass_table[0]; i++)
    snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", i ? ", " : "", pass_table[i].name);
  return ir_fail(msg, mn, "unknown pass '%.*s' (known passes: %s)", (int)len, name, known);
}

void pm_graph_cost(const ir_graph *g, pm_cost *c) {
  memset(c, 0, sizeof *c);
  c->nodes = g->nnodes;
  for (int i = 0; i < g->nnodes; i++) {
    const ir_node *n = &g->nodes[i];
    if (ir_ops[n->op].cat == IR_CAT_LEAF) continue;
    c->kernels++;
    int64_t b = ir_node_bytes(g, i);
    for (int k = 0; k < n->nin; k++) b += ir_node_bytes(g, n->in[k]);
    c->bytes += b;
  }
}

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

/* NN-pass.txt and NN-pass.dot in dir. */
static int dump(const ir_graph *g, const char *dir, int step, const char *pass, char *msg, size_t mn) {
  static const char *const ext[] = {"txt", "dot"};
  for (int k = 0; k < 2; k++) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%02d-%s.%s", dir, step, pass, ext[k]);
    FILE *f = fopen(path, "w");
    if (!f) return ir_fail(msg, mn, "--dump-dir: cannot write '%s': %s", path, strerror(errno));
    if (k == 0) ir_print(g, f);
    else ir_dot(g, f);
    if (fclose(f) != 0) return ir_fail(msg, mn, "--dump-dir: cannot write '%s': %s", path, strerror(errno));
  }
  return 0;
}

/* Check the whole list (and --print-after) before running anything. */
static int check_names(const char *list, const char *print_after, char *msg, size_t mn) {
  for (const char *p = list; *p;) {
    size_t len = strcspn(p, ",");
    if (len && !find_pass(p, len)) return unknown_pass(p, len, msg, mn);
    p += len + (p[len] == ',');
  }
  if (print_after && !pm_pass_known(print_after)) return unknown_pass(print_after, strlen(print_after), msg, mn);
  return 0;
}

/* Run one pass and what watches it: verify, print, dump, time. */
static int run_one(ir_graph *g, const pm_options *o, const pm_pass *ps, int step, FILE *log, char *msg, size_t mn) {
  char why[1024];
  double t0 = now_ms();
  int changes = ps->run(g, why, sizeof why);
  double ms = now_ms() - t0;
  if (changes < 0) return ir_fail(msg, mn, "internal error: pass '%s' failed: %s", ps->name, why);
  if (o->verify && ir_verify(g, why, sizeof why))
    return ir_fail(msg, mn, "internal error: the graph does not verify after pass '%s': %s", ps->name, why);
  if (o->time_passes)
    fprintf(log, "pass %-10s %8.3f ms  %4d rewrites, %d nodes\n", ps->name, ms, changes, g->nnodes);
  if (o->print_after && !strcmp(o->print_after, ps->name)) {
    fprintf(log, "; graph after pass '%s'\n", ps->name);
    ir_print(g, log);
  }
  return o->dump_dir ? dump(g, o->dump_dir, step, ps->name, msg, mn) : 0;
}

int pm_run(ir_graph *g, const pm_options *o, pm_cost *before, pm_cost *after, char *msg, size_t mn) {
  const char *list = o->passes ? o->passes : pm_level_passes(o->level);
  if (!list) return ir_fail(msg, mn, "unknown optimisation level -O%d (expected -O0 to -O%d)", o->level, PM_MAX_LEVEL);
  if (check_names(list, o->print_after, msg, mn)) return -1;
  if (before) pm_graph_cost(g, before);
  FILE *log = o->log ? o->log : stderr;
  if (o->dump_dir && mkdir(o->dump_dir, 0777) != 0 && errno != EEXIST)
    return ir_fail(msg, mn, "--dump-dir: cannot create '%s': %s", o->dump_dir, strerror(errno));
  if (o->dump_dir && dump(g, o->dump_dir, 0, "input", msg, mn)) return -1;
  double t0 = now_ms();
  int step = 1, fused = 0;
  if (g->quant && run_one(g, o, find_pass("quantize", 8), step++, log, msg, mn)) return -1;
  if (g->quant_note) fprintf(log, "note: %s\n", g->quant_note); /* layers kept in f32 (passes/quantize_cost.c) */
  /* int8 between products: by default, or where an explicit list names them */
  for (int i = 0; i < 2 && g->quant; i++) {
    const char *name = i ? "qdq_fold" : "qdq_place";
    if ((!o->passes || strstr(o->passes, name)) && run_one(g, o, find_pass(name, strlen(name)), step++, log, msg, mn))
      return -1;
  }
  for (const char *p = list; *p; step++) {
    size_t len = strcspn(p, ",");
    const pm_pass *ps = len ? find_pass(p, len) : NULL;
    p += len + (p[len] == ',');
    if (ps && (ps->run == ps_qdq_place || ps->run == ps_qdq_fold)) continue; /* they ran after quantize */
    if (ps && run_one(g, o, ps, step, log, msg, mn)) return -1;
    if (ps && ps->run == ps_fuse) fused = 1;
  }
  g->no_fusion = !fused;
  if (o->time_passes) fprintf(log, "pass total      %8.3f ms\n", now_ms() - t0);
  if (after) pm_graph_cost(g, after);
  return 0;
}
