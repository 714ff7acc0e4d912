/* api_train.c -- the public entry points of training and evaluation:
 * lathe_train and lathe_eval check their arguments and hand over to
 * runtime/train.c, which may assume an error to write to (the caller's may
 * be NULL). Reading the data binds the model's batch dimension to the
 * training batch; the caller's model gets its own bindings back afterwards,
 * so it can be bound to any size and compiled again, as before the call. */
#include <stdlib.h>
#include <string.h>

#include "runtime/program.h"
#include "runtime/train.h"

/* A copy of the model's bindings (one per symbolic dim), or NULL when out of memory. */
static int64_t *save_bindings(const lathe_model *m) {
  size_t n = (size_t)fe_num_syms(m->fe);
  int64_t *v = malloc((n + 1) * sizeof *v);
  if (v) memcpy(v, m->vals, n * sizeof *v);
  return v;
}

static void restore_bindings(lathe_model *m, int64_t *saved) {
  memcpy(m->vals, saved, (size_t)fe_num_syms(m->fe) * sizeof *saved);
  free(saved);
}

int lathe_train(lathe_model *m, const lathe_train_options *o, lathe_train_result *r, lathe_error *err) {
  static const char fn[] = "lathe_train";
  if (r) memset(r, 0, sizeof *r);
  if (!m) return api_null(err, fn, "the model");
  if (!o) return api_null(err, fn, "the options struct");
  if (!r) return api_null(err, fn, "the result struct");
  if (api_check_train_options(err, fn, o)) return LATHE_EUSER;
  int64_t *saved = save_bindings(m);
  if (!saved) return api_fail(err, LATHE_ENOMEM, "out of memory");
  lathe_error local = {0};
  int rc = tr_train(m, o, r, err ? err : &local);
  restore_bindings(m, saved);
  lathe_error_clear(&local);
  return rc;
}

int lathe_eval(lathe_model *m, const lathe_eval_options *o, lathe_metrics *out, lathe_error *err) {
  static const char fn[] = "lathe_eval";
  if (out) memset(out, 0, sizeof *out);
  if (!m) return api_null(err, fn, "the model");
  if (!o) return api_null(err, fn, "the options struct");
  if (!out) return api_null(err, fn, "the metrics struct");
  if (!o->weights) return api_null(err, fn, "the weights path");
  if (api_check_train_options(err, fn, &o->data)) return LATHE_EUSER;
  int64_t *saved = save_bindings(m);
  if (!saved) return api_fail(err, LATHE_ENOMEM, "out of memory");
  lathe_error local = {0};
  int rc = tr_eval(m, o, out, err ? err : &local);
  restore_bindings(m, saved);
  lathe_error_clear(&local);
  return rc;
}
