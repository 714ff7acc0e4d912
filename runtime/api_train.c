/* api_train.c -- the public entry points of training and evaluation:
 * lathe_train and lathe_eval check their arguments and hand over to
 * runtime/train.c. Reading the data binds the model's batch dimension (and
 * a text model's sequence length) to the training batch; the caller's model
 * gets its own bindings back afterwards, so it can be bound to any size and
 * compiled again, as before the call. */
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

/* Run f with an error that is never NULL (train.c reads err->code) and the
 * model's bindings restored after. */
typedef int (*api_train_fn)(lathe_model *, const void *, void *, lathe_error *);

static int call_restoring(lathe_model *m, api_train_fn f, const void *o, void *out, lathe_error *err) {
  lathe_error local = {0};
  lathe_error *e = err ? err : &local;
  int64_t *saved = save_bindings(m);
  if (!saved) return api_fail(err, LATHE_ENOMEM, "out of memory");
  int rc = f(m, o, out, e);
  restore_bindings(m, saved);
  lathe_error_clear(&local);
  return rc;
}

static int train_fn(lathe_model *m, const void *o, void *out, lathe_error *err) {
  return tr_train(m, o, out, err);
}

static int eval_fn(lathe_model *m, const void *o, void *out, lathe_error *err) {
  return tr_eval(m, o, out, err);
}

int lathe_train(lathe_model *m, const lathe_train_options *o, lathe_train_result *r, lathe_error *err) {
  static const char fn[] = "lathe_train";
  if (r) memset(r, 0, sizeof *r);
  if (!m) return api_null(err, fn, "the model");
  if (!o) return api_null(err, fn, "the options struct");
  if (!r) return api_null(err, fn, "the result struct");
  if (api_check_train_options(err, fn, o)) return LATHE_EUSER;
  return call_restoring(m, train_fn, o, r, err);
}

int lathe_eval(lathe_model *m, const lathe_eval_options *o, lathe_metrics *out, lathe_error *err) {
  static const char fn[] = "lathe_eval";
  if (out) memset(out, 0, sizeof *out);
  if (!m) return api_null(err, fn, "the model");
  if (!o) return api_null(err, fn, "the options struct");
  if (!out) return api_null(err, fn, "the metrics struct");
  if (!o->weights) return api_null(err, fn, "the weights path");
  if (api_check_train_options(err, fn, &o->data)) return LATHE_EUSER;
  return call_restoring(m, eval_fn, o, out, err);
}
