/* train_data.c -- from the files named on the command line to the model's
 * inputs: load (CSV, text, IDX or .npy pairs), match each model input and
 * target to a field, bind the batch dimension, split, fit normalisation on
 * the training split, and fill batches. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/runtime.h"
#include "runtime/train.h"

static int loss_kind_of(ir_op op, rt_loss_kind *kind) {
  static const struct { ir_op op; rt_loss_kind kind; } known[] = {
    {IR_CROSS_ENTROPY, RT_LOSS_CROSS_ENTROPY}, {IR_MSE, RT_LOSS_MSE}, {IR_BCE, RT_LOSS_BCE},
    {IR_NLL, RT_LOSS_CROSS_ENTROPY}, {IR_L1, RT_LOSS_MSE}, {IR_HUBER, RT_LOSS_MSE}, /* regression: the mse metrics */
  };
  for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
    if (known[i].op == op) {
      if (kind) *kind = known[i].kind;
      return 0;
    }
  return -1;
}

/* A composite loss (`mse(p, y) + 0.01 * mean(p * p)`, `cross_entropy(z, y)
 * + 0.1 * mse(p, t)`) is trained whole; its metrics come from one recognised
 * loss term (cross_entropy, nll, mse, bce, l1_loss, huber) it contains. With
 * several, a classification term (cross_entropy, nll) is preferred, then
 * bce, then the regression ones; among equals the first in the source (the
 * lowest node id). Operands precede their users in the node array, so one
 * backward sweep from the loss marks everything it reads. */
static int term_rank(rt_loss_kind k) {
  return k == RT_LOSS_CROSS_ENTROPY ? 0 : k == RT_LOSS_BCE ? 1 : 2;
}

int tr_loss_term(const ir_graph *g, rt_loss_kind *kind, char *msg, size_t msgn) {
  if (g->loss < 0) return snprintf(msg, msgn, "the model has no loss"), -1;
  if (loss_kind_of(g->nodes[g->loss].op, kind) == 0) return g->loss;
  char *reach = calloc((size_t)g->loss + 1, 1);
  if (!reach) return snprintf(msg, msgn, "out of memory"), -1;
  reach[g->loss] = 1;
  int term = -1;
  rt_loss_kind best = RT_LOSS_MSE;
  for (int id = g->loss; id >= 0; id--) {
    if (!reach[id]) continue;
    const ir_node *n = &g->nodes[id];
    rt_loss_kind k;
    if (loss_kind_of(n->op, &k) == 0) {
      if (term < 0 || term_rank(k) <= term_rank(best)) term = id, best = k; /* downwards: ties go to the first */
      continue; /* a term's own operands are not searched for further terms */
    }
    for (int j = 0; j < n->nin; j++)
      if (n->in[j] >= 0 && n->in[j] < id) reach[n->in[j]] = 1;
  }
  free(reach);
  if (term < 0) {
    snprintf(msg, msgn,
             "the loss must be, or contain, a cross_entropy, nll, mse, bce, l1_loss or huber term to train and evaluate");
    return -1;
  }
  if (kind) *kind = best;
  return term;
}

int tr_loss_kind(const ir_graph *g, rt_loss_kind *kind) {
  char msg[160];
  return tr_loss_term(g, kind, msg, sizeof msg) < 0 ? -1 : 0;
}

/* The model's first non-target input (the one CSV, IDX and text data feed). */
static int main_input(const fe_model *fe, int want_target) {
  for (int i = 0; i < fe_num_inputs(fe); i++)
    if (fe_input_is_target(fe, i) == want_target) return i;
  return -1;
}

/* "A,B" with both files in the IDX format (first bytes 0 0 TYPE RANK). */
static int is_idx_pair(const char *spec, char *a, char *b, size_t n) {
  const char *comma = strchr(spec, ',');
  if (!comma || (size_t)(comma - spec) >= n || strlen(comma + 1) >= n) return 0;
  memcpy(a, spec, (size_t)(comma - spec));
  a[comma - spec] = 0;
  strcpy(b, comma + 1);
  return 1;
}

static int load_npy(tr_data *d, lathe_model *m, const lathe_train_options *o, lathe_error *err) {
  rt_npy_source src[16];
  char names[16][64];
  if (o->nnpy > 16) return api_fail(err, LATHE_EUSER, "at most 16 --data NAME=FILE.npy pairs");
  for (int k = 0; k < o->nnpy; k++) {
    if (rt_data_parse_pair(o->npy[k], names[k], sizeof names[k], &src[k].path, d->msg, sizeof d->msg))
      return api_fail(err, LATHE_EUSER, "%s", d->msg);
    int i = -1;
    for (int j = 0; j < fe_num_inputs(m->fe); j++)
      if (!strcmp(fe_input_name(m->fe, j), names[k])) i = j;
    if (i < 0)
      return api_fail(err, LATHE_EUSER, "--data %s: model '%s' has no input or target '%s'", o->npy[k],
                      lathe_model_name(m), names[k]);
    src[k].name = names[k];
    src[k].role = fe_input_is_target(m->fe, i) ? RT_FIELD_TARGET : RT_FIELD_INPUT;
  }
  if (rt_data_load_npy(src, o->nnpy, &d->ds, d->msg, sizeof d->msg))
    return api_fail(err, LATHE_EUSER, "%s", d->msg);
  for (int i = 0; i < d->nin; i++) {
    const char *nm = fe_input_name(m->fe, i);
    d->field[i] = rt_data_field(&d->ds, fe_input_is_target(m->fe, i) ? RT_FIELD_TARGET : RT_FIELD_INPUT, nm);
    if (d->field[i] < 0)
      return api_fail(err, LATHE_EUSER, "no data for %s '%s': give --data %s=FILE.npy",
                      fe_input_is_target(m->fe, i) ? "target" : "input", nm, nm);
  }
  return 0;
}

/* CSV, IDX or text: the model's one input and one target. */
static int load_file(tr_data *d, lathe_model *m, const lathe_train_options *o, int vocab, lathe_error *err) {
  int in = main_input(m->fe, 0), tg = main_input(m->fe, 1);
  if (in < 0 || tg < 0 || d->nin != 2)
    return api_fail(err, LATHE_EUSER,
                    "--data %s feeds one input and one target, but model '%s' declares %d inputs and targets; "
                    "give --data NAME=FILE.npy for each",
                    o->data, lathe_model_name(m), d->nin);
  char a[1024], b[1024];
  int rc;
  if (vocab > 0) {
    const char *sym = NULL;
    int64_t T = fe_input_rank(m->fe, in) == 2 ? fe_input_dim(m->fe, in, 1, &sym) : -1;
    if (T < 1)
      return api_fail(err, LATHE_EUSER, "text data needs an input of shape [batch, T] with a constant T");
    rc = rt_data_load_text(o->data, vocab, T, &d->ds, d->msg, sizeof d->msg);
  } else if (is_idx_pair(o->data, a, b, sizeof a)) {
    rc = rt_data_load_idx(a, b, &d->ds, d->msg, sizeof d->msg);
  } else {
    rc = rt_data_load_csv(o->data, o->target_column_set ? o->target_column : -1, &d->ds, d->msg, sizeof d->msg);
  }
  if (rc) return api_fail(err, LATHE_EUSER, "%s", d->msg);
  d->field[in] = rt_data_field(&d->ds, RT_FIELD_INPUT, "");
  d->field[tg] = rt_data_field(&d->ds, RT_FIELD_TARGET, "");
  return 0;
}

/* Bind the batch dimension of model input i and check its other dimensions
 * hold the field's W elements per example (64 CSV columns may feed
 * f32[batch, 1, 8, 8]). */
static int bind_input(tr_data *d, lathe_model *m, int i, lathe_error *err) {
  const rt_field *f = &d->ds.f[d->field[i]];
  const char *name = fe_input_name(m->fe, i), *sym = NULL;
  int rank = fe_input_rank(m->fe, i);
  if (rank == f->rank + 1) {
    int64_t shape[LATHE_MAXDIM + 1] = {d->batch};
    memcpy(shape + 1, f->shape, sizeof(int64_t) * (size_t)f->rank);
    return lathe_model_bind_input(m, name, rank, shape, err);
  }
  int64_t per = 1;
  for (int j = 1; j < rank; j++) {
    int64_t dim = fe_input_dim(m->fe, i, j, &sym);
    if (dim < 0)
      return api_fail(err, LATHE_EUSER, "input '%s': dimension %d is symbolic ('%s'); the data cannot bind it", name,
                      j, sym);
    per *= dim;
  }
  if (rank < 1 || per != f->width)
    return api_fail(err, LATHE_EUSER, "input '%s' takes %lld values per example, but the data has %lld", name,
                    (long long)per, (long long)f->width);
  int64_t d0 = fe_input_dim(m->fe, i, 0, &sym);
  if (d0 >= 0 && d0 != d->batch)
    return api_fail(err, LATHE_EUSER, "input '%s' has a fixed batch of %lld, but the train batch is %lld", name,
                    (long long)d0, (long long)d->batch);
  return d0 >= 0 ? 0 : lathe_model_bind(m, sym, d->batch, err);
}

/* Text data sizes its vocabulary from the model: 256 classes means bytes. */
static int probe_vocab(lathe_model *m, int *vocab, lathe_error *err) {
  int in = main_input(m->fe, 0);
  *vocab = 0;
  if (in < 0 || ir_dtype_is_float(fe_input_dtype(m->fe, in))) return 0;
  lathe_options po = {.backend = LATHE_BACKEND_INTERP, .default_dim = 1};
  lathe_program *p = api_program_lower(m, &po, err);
  if (!p) return -1;
  int C = 0;
  rt_loss_kind kind;
  char msg[160];
  int term = tr_loss_term(&p->g, &kind, msg, sizeof msg);
  if (term >= 0) {
    const ir_node *lg = &p->g.nodes[p->g.nodes[term].in[0]];
    C = lg->shape.rank >= 1 ? (int)lg->shape.d[lg->shape.rank - 1] : 0;
  }
  lathe_program_free(p);
  if (C < 96) return api_fail(err, LATHE_EUSER, "text data has 96 character tokens, but the model predicts %d classes", C);
  *vocab = C >= 256 ? 256 : 96;
  return 0;
}

/* The integers an input of this dtype holds: a value outside is refused
 * rather than wrapped (2^32 as 0) or truncated (2.9 as 2). */
static const struct { ir_dtype dtype; int64_t lo, hi; } int_ranges[] = {
  {IR_I32, INT32_MIN, (int64_t)INT32_MAX + 1}, {IR_I64, INT64_MIN, INT64_MAX},
  {IR_I8, INT8_MIN, INT8_MAX + 1},             {IR_U8, 0, UINT8_MAX + 1},
};

/* The class count of a cross_entropy loss (its logits' last dimension), 0
 * for other losses; its ignore_index. */
static int loss_classes(lathe_model *m, int64_t *C, int *has_ignore, int64_t *ignore, lathe_error *err) {
  lathe_options po = {.backend = LATHE_BACKEND_INTERP, .default_dim = 1};
  lathe_program *p = api_program_lower(m, &po, err);
  if (!p) return -1;
  *C = 0;
  *has_ignore = 0;
  if (p->g.loss >= 0 && p->g.nodes[p->g.loss].op == IR_CROSS_ENTROPY) {
    const ir_node *ce = &p->g.nodes[p->g.loss], *lg = &p->g.nodes[ce->in[0]];
    *C = lg->shape.d[lg->shape.rank - 1];
    *has_ignore = ce->attr.k != 0;
    *ignore = ce->attr.n;
  }
  lathe_program_free(p);
  return 0;
}

/* Every integer input and target must receive integers its dtype holds, and
 * class labels of a cross_entropy loss must lie in [0, C): a regression CSV
 * fed to a classifier is refused at its first non-integer target. */
static int check_values(tr_data *d, lathe_model *m, lathe_error *err) {
  int64_t C = -1, ignore = 0;
  int has_ignore = 0;
  for (int i = 0; i < d->nin; i++) {
    ir_dtype dt = fe_input_dtype(m->fe, i);
    size_t k = 0;
    while (k < sizeof int_ranges / sizeof *int_ranges && int_ranges[k].dtype != dt) k++;
    if (k == sizeof int_ranges / sizeof *int_ranges) continue;
    int64_t lo = int_ranges[k].lo, hi = int_ranges[k].hi;
    char what[96];
    snprintf(what, sizeof what, "'%s' value", fe_input_name(m->fe, i));
    if (fe_input_is_target(m->fe, i)) {
      if (C < 0 && loss_classes(m, &C, &has_ignore, &ignore, err)) return -1;
      if (C > 0) lo = 0, hi = C, snprintf(what, sizeof what, "label");
    }
    int except = fe_input_is_target(m->fe, i) && C > 0 && has_ignore;
    if (rt_data_check_ints_except(&d->ds, d->field[i], lo, hi, except, ignore, what, d->msg, sizeof d->msg))
      return api_fail(err, LATHE_EUSER, "%s", d->msg);
  }
  return 0;
}

int tr_data_open(tr_data *d, lathe_model *m, const lathe_train_options *o, const double split[3], uint64_t seed,
                 int64_t batch, lathe_error *err) {
  memset(d, 0, sizeof *d);
  d->batch = batch;
  d->nin = fe_num_inputs(m->fe);
  if (d->nin > 16) return api_fail(err, LATHE_EUSER, "training supports at most 16 inputs and targets");
  int vocab = 0;
  if (!o->nnpy && !o->data) return api_fail(err, LATHE_EUSER, "no training data: give --data FILE");
  if (!o->nnpy && probe_vocab(m, &vocab, err)) return -1;
  if (o->nnpy ? load_npy(d, m, o, err) : load_file(d, m, o, vocab, err)) return -1;
  d->lm = vocab > 0;
  for (int i = 0; i < d->nin; i++) {
    d->name[i] = fe_input_name(m->fe, i);
    if (bind_input(d, m, i, err)) return -1;
  }
  if (check_values(d, m, err)) return -1;
  rt_norm_kind nk = RT_NORM_STANDARD;
  if (o->normalize && rt_norm_parse(o->normalize, &nk, d->msg, sizeof d->msg))
    return api_fail(err, LATHE_EUSER, "%s", d->msg);
  if (o->in_order ? rt_split_in_order(d->ds.n, split, &d->split, d->msg, sizeof d->msg)
                  : rt_split_make(d->ds.n, split, seed, &d->split, d->msg, sizeof d->msg))
    return api_fail(err, LATHE_EUSER, "%s", d->msg);
  for (int i = 0; i < d->nin; i++) {
    int float_in = ir_dtype_is_float(fe_input_dtype(m->fe, i)) && !fe_input_is_target(m->fe, i);
    if (rt_norm_fit(&d->norm[i], float_in ? nk : RT_NORM_NONE, &d->ds, d->field[i], &d->split.train, d->msg,
                    sizeof d->msg))
      return api_fail(err, LATHE_EUSER, "%s", d->msg);
  }
  return 0;
}

void tr_data_close(tr_data *d) {
  for (int i = 0; i < d->nin; i++) rt_norm_free(&d->norm[i]);
  rt_split_free(&d->split);
  rt_data_free(&d->ds);
}

int tr_data_feed(tr_data *d, lathe_program *p, const int64_t *rows, int64_t count, lathe_error *err) {
  return tr_data_feed_some(d, p, rows, count, 0, err);
}

int tr_data_feed_some(tr_data *d, lathe_program *p, const int64_t *rows, int64_t count, int some, lathe_error *err) {
  for (int i = 0; i < d->nin; i++) {
    int gi = ir_find_input(&p->g, d->name[i]);
    if (gi < 0 && some) continue; /* a pipeline stage reads some of the inputs */
    if (gi < 0) return api_fail(err, LATHE_EINTERNAL, "internal error: input '%s' not in the program", d->name[i]);
    const ir_input *in = &p->g.inputs[gi];
    lathe_tensor t = {.dtype = (lathe_dtype)in->dtype, .rank = in->shape.rank};
    for (int j = 0; j < in->shape.rank; j++) t.shape[j] = in->shape.d[j];
    t.data = malloc((size_t)ir_numel(&in->shape) * ir_dtype_size(in->dtype) + 1);
    if (!t.data) return api_fail(err, LATHE_ENOMEM, "out of memory");
    /* Raw features: the program normalises them (tr_data_attach_norm). */
    int rc = rt_batch_fill(&d->ds, d->field[i], rows, count, &t, NULL, d->msg, sizeof d->msg) < 0
                 ? api_fail(err, LATHE_EUSER, "%s", d->msg)
                 : lathe_set_input(p, in->name, &t, err);
    free(t.data);
    if (rc) return rc;
  }
  return 0;
}

/* The inputs training normalises: f32 features (not targets). */
static int normalised_input(const lathe_program *p, const char *name) {
  int gi = ir_find_input(&p->g, name);
  return gi >= 0 && p->g.inputs[gi].dtype == IR_F32 && !p->g.inputs[gi].is_target;
}

int tr_data_attach_norm(const tr_data *d, lathe_program *p, lathe_error *err) {
  for (int i = 0; i < d->nin; i++)
    if (normalised_input(p, d->name[i]) && api_pre_set(p, d->name[i], &d->norm[i], err)) return -1;
  return 0;
}

int tr_data_eval_norm(const tr_data *d, lathe_program *p, const char *normalize, const char *weights,
                      lathe_error *err) {
  for (int i = 0; i < d->nin; i++) {
    lathe_preprocess pp;
    if (!normalised_input(p, d->name[i])) continue;
    if (!lathe_input_preprocess(p, d->name[i], &pp)) {
      /* Weights from before preprocessing was saved: fit on this data's
       * training split, as training did. */
      if (api_pre_set(p, d->name[i], &d->norm[i], err)) return -1;
    } else if (normalize && (int)pp.kind != (int)d->norm[i].kind) {
      return api_fail(err, LATHE_EUSER,
                      "--normalize %s: the weights '%s' were trained with %s normalisation of input '%s' and carry "
                      "its statistics; leave --normalize out (or give --normalize %s)",
                      normalize, weights, lathe_norm_kind_name(pp.kind), d->name[i], lathe_norm_kind_name(pp.kind));
    }
  }
  return 0;
}
