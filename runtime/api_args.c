/* api_args.c -- the public API's guards against its callers: NULL where a
 * pointer is required, a value outside its enum, a tensor that cannot be
 * (rank, dimensions, size, data), a number outside its range. Each entry
 * point checks its arguments first with these, so nothing later reads what
 * a caller could not have meant; each guard sets err to "FUNCTION: what is
 * wrong" and returns LATHE_EUSER. */
#include <math.h>

#include "runtime/program.h"

int api_null(lathe_error *err, const char *fn, const char *what) {
  return api_fail(err, LATHE_EUSER, "%s: %s is NULL", fn, what);
}

int api_dtype_ok(lathe_dtype t) { return (int)t >= (int)LATHE_F32 && (int)t <= (int)LATHE_BOOL; }

int api_check_tensor(lathe_error *err, const char *fn, const char *what, const lathe_tensor *t) {
  if (!t) return api_null(err, fn, what);
  if (!api_dtype_ok(t->dtype))
    return api_fail(err, LATHE_EUSER, "%s: %s has dtype %d, which is not a lathe_dtype", fn, what, (int)t->dtype);
  if (t->rank < 0 || t->rank > LATHE_MAXDIM)
    return api_fail(err, LATHE_EUSER, "%s: %s has rank %d; the rank must be 0 to LATHE_MAXDIM (%d)", fn, what,
                    t->rank, LATHE_MAXDIM);
  for (int j = 0; j < t->rank; j++)
    if (t->shape[j] < 0)
      return api_fail(err, LATHE_EUSER, "%s: %s has dimension %d = %lld; dimensions must be >= 0", fn, what, j,
                      (long long)t->shape[j]);
  int64_t n = lathe_tensor_numel(t);
  if (n < 0 || (n > 0 && lathe_tensor_bytes(t) == 0))
    return api_fail(err, LATHE_EUSER, "%s: %s has more elements than fit in memory (the size overflows)", fn,
                    what);
  if (n > 0 && !t->data) return api_fail(err, LATHE_EUSER, "%s: %s has %lld elements but its data is NULL", fn,
                                         what, (long long)n);
  return 0;
}

int api_check_backend(lathe_error *err, const char *fn, lathe_backend b) {
  if ((int)b >= (int)LATHE_BACKEND_INTERP && (int)b <= (int)LATHE_BACKEND_CUDA) return 0;
  return api_fail(err, LATHE_EUSER,
                  "%s: backend %d is not a lathe_backend (LATHE_BACKEND_INTERP, LATHE_BACKEND_LLVM or "
                  "LATHE_BACKEND_CUDA)", fn, (int)b);
}

/* lathe_options as lathe_compile and lathe_compile_train take it (NULL is
 * allowed there: the defaults). opt_level is checked with the pipeline. */
int api_check_options(lathe_error *err, const char *fn, const lathe_options *o) {
  if (!o) return 0;
  if (api_check_backend(err, fn, o->backend)) return LATHE_EUSER;
  if (o->default_dim < 0 || o->default_dim > IR_MAX_ELEMS)
    return api_fail(err, LATHE_EUSER, "%s: default_dim must be 0 (none) or 1 to 2^40, got %lld", fn,
                    (long long)o->default_dim);
  if (o->quant < LATHE_QUANT_NONE || o->quant > LATHE_QUANT_INT8)
    return api_fail(err, LATHE_EUSER, "%s: quant must be a lathe_quant (0 to 6), got %d", fn, o->quant);
  if (o->masked != 0 && o->masked != 1) return api_fail(err, LATHE_EUSER, "%s: masked must be 0 or 1, got %d", fn, o->masked);
  if (o->precision != LATHE_PRECISION_F32 && o->precision != LATHE_PRECISION_BF16)
    return api_fail(err, LATHE_EUSER, "%s: precision must be a lathe_precision (0 f32, 1 bf16), got %d", fn, o->precision);
  /* the interpreter is the reference bf16 runs are compared with: it computes in f32 (f64) and keeps the
   * setting only for lathe_program_cuda_check (lathe check --backend cuda --precision bf16) */
  if (o->precision == LATHE_PRECISION_BF16 && o->backend == LATHE_BACKEND_LLVM)
    return api_fail(err, LATHE_EUSER, "--precision bf16 is the CUDA backend's (--backend cuda); the llvm backend computes in f32");
  return 0;
}

/* The fields lathe_train and lathe_eval share (lathe_eval reads the data
 * ones, but a value no call could mean is refused in both). 0 means "the
 * train block's value" for lr, epochs, batch and restarts. */
int api_check_train_options(lathe_error *err, const char *fn, const lathe_train_options *o) {
  if (api_check_backend(err, fn, o->backend)) return LATHE_EUSER;
  if (!(o->lr >= 0) || isinf(o->lr))
    return api_fail(err, LATHE_EUSER, "%s: lr must be 0 (the train block's) or a finite number > 0, got %g", fn,
                    o->lr);
  if (o->epochs < 0 || o->epochs > API_MAX_EPOCHS)
    return api_fail(err, LATHE_EUSER, "%s: epochs must be 0 (the train block's) or 1 to %lld, got %lld", fn,
                    (long long)API_MAX_EPOCHS, (long long)o->epochs);
  if (o->batch < 0 || o->batch > IR_MAX_ELEMS)
    return api_fail(err, LATHE_EUSER, "%s: batch must be 0 (the train block's) or 1 to 2^40, got %lld", fn,
                    (long long)o->batch);
  if (o->restarts < 0)
    return api_fail(err, LATHE_EUSER, "%s: restarts must be 0 or more (0 and 1: one run), got %d", fn, o->restarts);
  if (o->pipeline < 0 || o->pipeline > 64 || o->micro_batches < 0)
    return api_fail(err, LATHE_EUSER, "%s: pipeline must be 0 to 64 stages and micro_batches 0 or more, got %d and %d",
                    fn, o->pipeline, o->micro_batches);
  if (o->seed_set && o->seed > (uint64_t)INT64_MAX)
    return api_fail(err, LATHE_EUSER, "%s: seed must be below 2^63, got %llu", fn, (unsigned long long)o->seed);
  if (o->in_order < 0 || o->in_order > 1)
    return api_fail(err, LATHE_EUSER, "%s: in_order must be 0 or 1, got %d", fn, o->in_order);
  if (o->tty < -1 || o->tty > 1)
    return api_fail(err, LATHE_EUSER, "%s: tty must be -1 (ask isatty), 0 or 1, got %d", fn, o->tty);
  if (o->nnpy < 0) return api_fail(err, LATHE_EUSER, "%s: nnpy must be >= 0, got %d", fn, o->nnpy);
  if (o->nnpy > 0 && !o->npy) return api_fail(err, LATHE_EUSER, "%s: npy is NULL but nnpy is %d", fn, o->nnpy);
  for (int k = 0; k < o->nnpy; k++)
    if (!o->npy[k]) return api_fail(err, LATHE_EUSER, "%s: npy[%d] is NULL", fn, k);
  return 0;
}
