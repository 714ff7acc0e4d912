/* prune.h -- lathe_prune's parts (runtime/api_prune.c): measuring a model
 * before and after, and the JSON report (runtime/api_prune_report.c). */
#ifndef LATHE_RUNTIME_PRUNE_H
#define LATHE_RUNTIME_PRUNE_H

#include "lathe.h"

typedef struct {
  const lathe_prune_options *o;
  const lathe_model *before_model;
  lathe_prune_result *r;
  int layers;          /* layers pruned */
  char note[256];      /* the first layer left whole, and why */
} pr_report;

/* Fill r's column `which` (0 before, 1 after) for model m with the weights
 * at path: parameters, nonzero weights, FLOPs, file size, metrics (with
 * o->data), inference time. 0 or an error. */
int pr_measure(pr_report *rep, int which, lathe_model *m, const char *path, lathe_error *err);
/* The report as JSON, written atomically. */
int pr_report_write(const pr_report *rep, const char *path, lathe_error *err);

#endif
