/* api_passes.c -- the public API's side of the graph pipeline: choose the
 * level (the options, else LATHE_OPT_LEVEL, else 2), decide whether to
 * verify between passes (debug builds, LATHE_VERIFY=1), run it and keep the
 * before/after costs for lathe_program_pass_stats. */
#include <stdlib.h>
#include <string.h>

#include "passes/passes.h"
#include "runtime/program.h"

#define DEFAULT_OPT_LEVEL 2

/* The level: explicit, else LATHE_OPT_LEVEL (a digit 0..3), else the default. */
static int opt_level(const lathe_options *o, lathe_error *err) {
  const char *e = getenv("LATHE_OPT_LEVEL");
  if (o->opt_level_set && (o->opt_level < 0 || o->opt_level > PM_MAX_LEVEL)) {
    api_fail(err, LATHE_EUSER, "unknown optimisation level -O%d (expected -O0 to -O%d)", o->opt_level, PM_MAX_LEVEL);
    return -1;
  }
  if (o->opt_level_set) return o->opt_level;
  if (!e || !*e) return DEFAULT_OPT_LEVEL;
  if (e[0] < '0' || e[0] > '0' + PM_MAX_LEVEL || e[1]) {
    api_fail(err, LATHE_EUSER, "LATHE_OPT_LEVEL=%s: expected 0 to %d", e, PM_MAX_LEVEL);
    return -1;
  }
  return e[0] - '0';
}

static int verify_wanted(void) {
  const char *e = getenv("LATHE_VERIFY");
  if (e && *e) return strcmp(e, "0") != 0;
#ifdef NDEBUG
  return 0;
#else
  return 1;
#endif
}

int api_run_passes(lathe_program *p, lathe_error *err) {
  const lathe_options *o = &p->opt;
  int level = opt_level(o, err);
  if (level < 0) return -1;
  pm_options po = {.level = level, .passes = o->passes, .print_after = o->print_after, .dump_dir = o->dump_dir,
                   .time_passes = o->time_passes, .verify = verify_wanted(), .log = o->pass_log};
  pm_cost before, after;
  char msg[1024];
  if (pm_run(&p->g, &po, &before, &after, msg, sizeof msg))
    return api_fail(err, strncmp(msg, "internal error", 14) ? LATHE_EUSER : LATHE_EINTERNAL, "%s", msg);
  lathe_pass_stats *st = &p->pass_stats;
  st->opt_level = o->passes ? -1 : level;
  st->nodes_before = before.nodes, st->nodes_after = after.nodes;
  st->kernels_before = before.kernels, st->kernels_after = after.kernels;
  st->bytes_before = before.bytes, st->bytes_after = after.bytes;
  return o->dump_dir ? api_dump_plan(p, o->dump_dir, err) : 0; /* the kernel plan next to the pass dumps */
}

void api_copy_pass_options(lathe_options *dst, const lathe_options *src) {
  if (!src) return;
  dst->opt_level_set = src->opt_level_set, dst->opt_level = src->opt_level;
  dst->passes = src->passes, dst->print_after = src->print_after, dst->dump_dir = src->dump_dir;
  dst->time_passes = src->time_passes, dst->pass_log = src->pass_log;
  dst->masked = src->masked; /* a pruned model's fine-tuning: its masks in every program training makes */
  dst->precision = src->precision; /* --precision bf16: every program training or evaluation makes */
}

int lathe_program_pass_stats(const lathe_program *p, lathe_pass_stats *st) {
  if (!st) return LATHE_EUSER;
  memset(st, 0, sizeof *st);
  if (!p) return LATHE_EUSER;
  *st = p->pass_stats;
  return 0;
}
