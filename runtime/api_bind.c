/* api_bind.c -- inputs bound zero-copy to the caller's memory.
 *
 * lathe_set_input copies (and converts) the caller's array into a buffer of
 * the program; lathe_bind_input keeps only the caller's pointer, and every
 * run reads it in place. That is possible only when the caller's layout is
 * the one the compiled code reads: the declared dtype and shape, dense and
 * row-major, so binding refuses anything else instead of converting. The
 * one case where the values must change on the way in is preprocessing the
 * weights carry (raw features normalised as in training): the caller's
 * memory is never written, so such a run copies and normalises. */
#include <stdlib.h>
#include <string.h>

#include "runtime/program.h"

void api_unbind(lathe_program *p, int i) { p->bound[i] = NULL; }

/* Whether the weights carry a normalisation that changes input i's values. */
static int needs_preprocess(const lathe_program *p, int i) {
  lathe_preprocess pre;
  return lathe_input_preprocess(p, p->g.inputs[i].name, &pre) && pre.kind != LATHE_NORM_NONE;
}

const void *api_input_data(lathe_program *p, int i, lathe_error *err) {
  if (!p->bound[i]) return p->in[i].data;
  if (!needs_preprocess(p, i)) return p->bound[i];
  const ir_input *in = &p->g.inputs[i];
  int64_t n = ir_numel(&in->shape);
  /* Sized as lathe_set_input's buffers (n doubles), which may reuse it. */
  if (!p->in[i].data && !(p->in[i].data = malloc((size_t)n * sizeof(double) + 1))) {
    api_fail(err, LATHE_ENOMEM, "out of memory");
    return NULL;
  }
  memcpy(p->in[i].data, p->bound[i], (size_t)n * ir_dtype_size(in->dtype));
  api_pre_apply(p, i, p->in[i].data, n);
  return p->in[i].data;
}

int lathe_bind_input(lathe_program *p, const char *name, const lathe_tensor *t, lathe_error *err) {
  static const char fn[] = "lathe_bind_input";
  if (!p) return api_null(err, fn, "the program");
  if (!name) return api_null(err, fn, "the input name");
  if (api_check_tensor(err, fn, "the tensor", t)) return LATHE_EUSER;
  int i = ir_find_input(&p->g, name);
  if (i < 0) return api_fail(err, LATHE_EUSER, "model '%s' has no input '%s'", p->g.model_name, name);
  const ir_input *in = &p->g.inputs[i];
  char want[128], got[128];
  ir_shape_str(&in->shape, want, sizeof want);
  if (!api_same_shape(t, &in->shape)) {
    api_tensor_shape_str(t, got, sizeof got);
    return api_fail(err, LATHE_EUSER, "input '%s': expected shape %s, got %s", name, want, got);
  }
  if ((int)t->dtype != (int)in->dtype)
    return api_fail(err, LATHE_EUSER,
                    "input '%s': binding reads the caller's memory as it is, so it must be %s%s, got a %s array "
                    "(lathe_set_input converts)", name, ir_dtype_name(in->dtype), want, lathe_dtype_name(t->dtype));
  /* An empty array may come with NULL data; NULL here means "not bound". */
  static const char empty;
  p->bound[i] = t->data ? t->data : (const void *)&empty;
  p->in_set[i] = 1;
  return 0;
}
