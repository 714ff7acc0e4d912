/* api_model.c -- the public C API, part 1: errors and models (parse, inspect,
 * bind symbolic dimensions). api_program.c holds compiled programs. The API is
 * a thin layer over the frontend (fe_), the IR (ir_) and the runtime (rt_): it
 * turns internal messages into lathe_error values. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "lathe.h"
#include "frontend/frontend.h"
#include "ir/ir.h"
#include "runtime/runtime.h"
#include "runtime/program.h"


/* ---- errors ---- */

int api_fail(lathe_error *err, lathe_status code, const char *fmt, ...) {
  if (!err) return code;
  free(err->message);
  char buf[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  err->code = code;
  err->message = strdup(buf);
  return code;
}

/* Take ownership of a malloc'd message. */
int api_fail_take(lathe_error *err, lathe_status code, char *msg) {
  if (!err) { free(msg); return code; }
  free(err->message);
  err->code = code;
  err->message = msg;
  return code;
}

/* ---- models ---- */

lathe_model *lathe_model_parse(const char *name, const char *src, size_t len, lathe_error *err) {
  if (!src) { api_null(err, "lathe_model_parse", "the source text"); return NULL; }
  char *msg = NULL;
  fe_model *fe = fe_parse(name ? name : "<model>", src, len, &msg);
  if (!fe) { api_fail_take(err, LATHE_EUSER, msg); return NULL; }
  lathe_model *m = calloc(1, sizeof *m);
  int nsyms = fe_num_syms(fe);
  if (m) m->vals = calloc((size_t)(nsyms > 0 ? nsyms : 1), sizeof *m->vals);
  if (!m || !m->vals) {
    fe_free(fe);
    if (m) free(m->vals);
    free(m);
    api_fail(err, LATHE_ENOMEM, "out of memory");
    return NULL;
  }
  m->fe = fe;
  return m;
}

lathe_model *lathe_model_load(const char *path, lathe_error *err) {
  char *src = NULL, msg[1024];
  size_t len = 0;
  if (!path) { api_null(err, "lathe_model_load", "the path"); return NULL; }
  if (rt_read_file(path, &src, &len, msg, sizeof msg) != 0) {
    api_fail(err, LATHE_EUSER, "%s", msg);
    return NULL;
  }
  lathe_model *m = lathe_model_parse(path, src, len, err);
  free(src);
  return m;
}

void lathe_model_free(lathe_model *m) {
  if (!m) return;
  fe_free(m->fe);
  free(m->vals);
  free(m);
}

/* A NULL model has no name and -1 inputs and dims; an index out of range has
 * no name (the frontend's accessors check the index). */
const char *lathe_model_name(const lathe_model *m) { return m ? fe_model_name(m->fe) : NULL; }
int lathe_model_num_inputs(const lathe_model *m) { return m ? fe_num_inputs(m->fe) : -1; }
const char *lathe_model_input_name(const lathe_model *m, int i) { return m ? fe_input_name(m->fe, i) : NULL; }
int lathe_model_num_dims(const lathe_model *m) { return m ? fe_num_syms(m->fe) : -1; }
const char *lathe_model_dim_name(const lathe_model *m, int i) { return m ? fe_sym_name(m->fe, i) : NULL; }

static int find_sym(const lathe_model *m, const char *name) {
  for (int i = 0; i < fe_num_syms(m->fe); i++)
    if (strcmp(fe_sym_name(m->fe, i), name) == 0) return i;
  return -1;
}

static int bind_range(const char *dim, int64_t value, lathe_error *err) {
  if (value >= 1 && value <= IR_MAX_ELEMS) return 0;
  return api_fail(err, LATHE_EUSER, "dimension '%s' must be between 1 and 2^40, got %lld", dim, (long long)value);
}

int lathe_model_bind(lathe_model *m, const char *dim, int64_t value, lathe_error *err) {
  if (!m) return api_null(err, "lathe_model_bind", "the model");
  if (!dim) return api_null(err, "lathe_model_bind", "the dimension name");
  int s = find_sym(m, dim);
  if (s < 0) return api_fail(err, LATHE_EUSER, "model '%s' has no symbolic dimension '%s'",
                         lathe_model_name(m), dim);
  if (bind_range(dim, value, err)) return LATHE_EUSER;
  m->vals[s] = value;
  return 0;
}

static int find_input(const lathe_model *m, const char *name) {
  for (int i = 0; i < fe_num_inputs(m->fe); i++)
    if (strcmp(fe_input_name(m->fe, i), name) == 0) return i;
  return -1;
}

int lathe_model_bind_input(lathe_model *m, const char *input, int rank, const int64_t *shape,
                           lathe_error *err) {
  static const char fn[] = "lathe_model_bind_input";
  if (!m) return api_null(err, fn, "the model");
  if (!input) return api_null(err, fn, "the input name");
  if (rank < 0 || rank > LATHE_MAXDIM)
    return api_fail(err, LATHE_EUSER, "%s: rank %d is outside 0 to LATHE_MAXDIM (%d)", fn, rank, LATHE_MAXDIM);
  if (rank > 0 && !shape) return api_null(err, fn, "the shape");
  int i = find_input(m, input);
  if (i < 0) return api_fail(err, LATHE_EUSER, "model '%s' has no input '%s'", lathe_model_name(m), input);
  int want = fe_input_rank(m->fe, i);
  if (rank != want)
    return api_fail(err, LATHE_EUSER, "input '%s' expects rank %d, got an array of rank %d", input, want, rank);
  /* Check every dimension before binding any, so a bad array binds nothing. */
  for (int pass = 0; pass < 2; pass++) {
    for (int j = 0; j < rank; j++) {
      const char *sym = NULL;
      int64_t d = fe_input_dim(m->fe, i, j, &sym);
      if (d >= 0 && d != shape[j])
        return api_fail(err, LATHE_EUSER, "input '%s': dimension %d must be %lld, got %lld", input, j,
                        (long long)d, (long long)shape[j]);
      if (d >= 0) continue;
      int s = find_sym(m, sym);
      if (pass == 0 && bind_range(sym, shape[j], err)) return LATHE_EUSER;
      if (pass == 0 && m->vals[s] && m->vals[s] != shape[j])
        return api_fail(err, LATHE_EUSER,
                        "input '%s': dimension %d ('%s') is %lld, but '%s' is already bound to %lld", input,
                        j, sym, (long long)shape[j], sym, (long long)m->vals[s]);
      if (pass == 1 && lathe_model_bind(m, sym, shape[j], err)) return err ? err->code : LATHE_EUSER;
    }
  }
  return 0;
}

