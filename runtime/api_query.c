/* api_query.c -- what a model and a program declare: name, role, dtype and
 * shape of every input, output and parameter, so a host program can size
 * its buffers without reading the model file. */
#include <string.h>

#include "runtime/program.h"

static int info_fail(lathe_tensor_info *info) {
  if (info) memset(info, 0, sizeof *info);
  return LATHE_EUSER;
}

static void fill(lathe_tensor_info *info, const char *name, lathe_role role, ir_dtype t, const ir_shape *s) {
  memset(info, 0, sizeof *info);
  info->name = name;
  info->role = role;
  info->dtype = (lathe_dtype)t;
  info->rank = s->rank;
  for (int j = 0; j < s->rank; j++) info->shape[j] = s->d[j];
}

int lathe_model_input_info(const lathe_model *m, int i, lathe_tensor_info *info) {
  if (!m || !info || i < 0 || i >= fe_num_inputs(m->fe)) return info_fail(info);
  memset(info, 0, sizeof *info);
  info->name = fe_input_name(m->fe, i);
  info->role = fe_input_is_target(m->fe, i) ? LATHE_ROLE_TARGET : LATHE_ROLE_INPUT;
  info->dtype = (lathe_dtype)fe_input_dtype(m->fe, i);
  info->rank = fe_input_rank(m->fe, i);
  for (int j = 0; j < info->rank; j++) {
    const char *sym = NULL;
    int64_t d = fe_input_dim(m->fe, i, j, &sym);
    if (d >= 0) { info->shape[j] = d; continue; }
    info->dim[j] = sym;
    info->shape[j] = -1;
    for (int s = 0; s < fe_num_syms(m->fe); s++)
      if (strcmp(fe_sym_name(m->fe, s), sym) == 0 && m->vals[s] > 0) info->shape[j] = m->vals[s];
  }
  return 0;
}

int lathe_num_inputs(const lathe_program *p) { return p ? p->g.ninputs : -1; }

const char *lathe_input_name(const lathe_program *p, int i) {
  return p && i >= 0 && i < p->g.ninputs ? p->g.inputs[i].name : NULL;
}

int lathe_input_info(const lathe_program *p, int i, lathe_tensor_info *info) {
  if (!p || !info || i < 0 || i >= p->g.ninputs) return info_fail(info);
  const ir_input *in = &p->g.inputs[i];
  fill(info, in->name, in->is_target ? LATHE_ROLE_TARGET : LATHE_ROLE_INPUT, in->dtype, &in->shape);
  return 0;
}

int lathe_output_info(const lathe_program *p, int i, lathe_tensor_info *info) {
  if (!p || !info || i < 0 || i >= p->g.noutputs) return info_fail(info);
  const ir_node *n = &p->g.nodes[p->g.outputs[i].node];
  fill(info, p->g.outputs[i].name, LATHE_ROLE_OUTPUT, n->dtype, &n->shape);
  return 0;
}

int lathe_param_info(const lathe_program *p, int i, lathe_tensor_info *info) {
  if (!p || !info || i < 0 || i >= p->g.nparams) return info_fail(info);
  const ir_param *pr = &p->g.params[i];
  fill(info, pr->name, pr->state ? LATHE_ROLE_STATE : LATHE_ROLE_WEIGHT, pr->dtype, &pr->shape);
  return 0;
}
