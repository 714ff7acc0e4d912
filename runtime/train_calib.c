/* train_calib.c -- static int8's calibration (lathe quantize --mode int8,
 * docs/quantize.md): the f32 model runs over batches of the training split,
 * as lathe_train makes it (the train block's split, seed and batch), and the
 * input of every product to be quantized is read back as an extra output.
 * Its scale is max |x| / 127 (minmax) or a percentile of |x| / 127
 * (percentile: clips the rare outliers that would otherwise spread the
 * 255 levels over values that never occur). Symmetric, per tensor: the
 * integer kernels take signed activations (u8 = s8 + 128). */
#include <stdlib.h>
#include <string.h>

#include "runtime/train.h"

enum { CAL_DEFAULT_BATCHES = 10, CAL_MAX_SAMPLES = 1 << 22 };

typedef struct {
  int w;         /* which cal->name the product's weight is */
  int out;       /* the program output holding its input */
} cal_tap;

typedef struct {
  float amax;    /* minmax */
  float *v;      /* percentile: |x| samples */
  int64_t n, cap, seen;
} cal_stat;

/* an output "__calib.N" for the input of each product of a weight in cal */
static int add_taps(lathe_program *p, const api_calib *cal, cal_tap *tap, int cap, int *ntap, lathe_error *err) {
  ir_graph *g = &p->g;
  int n0 = g->nnodes;
  for (int i = 0; i < n0; i++) {
    const ir_node *n = &g->nodes[i];
    /* a product's input, or a convolution's (its im2col rows hold the same
     * values and padding zeros: the same max) */
    if ((n->op != IR_MATMUL && n->op != IR_CONV2D) || g->nodes[n->in[1]].op != IR_PARAM) continue;
    const char *w = g->params[g->nodes[n->in[1]].attr.i].name;
    for (int k = 0; k < cal->n; k++) {
      if (strcmp(cal->name[k], w)) continue;
      if (*ntap >= cap) return api_fail(err, LATHE_EINTERNAL, "internal error: more products than nodes");
      ir_add_output(g, ar_printf(g->A, "__calib.%d", *ntap), n->in[0]);
      tap[*ntap] = (cal_tap){.w = k, .out = g->noutputs - 1};
      (*ntap)++;
    }
  }
  return 0;
}

/* keep every |x| until CAL_MAX_SAMPLES, then every other (a stride that
 * doubles: an even sample of the whole run) */
static int stat_add(cal_stat *s, const float *x, int64_t n, int percentile) {
  for (int64_t i = 0; i < n; i++) {
    float a = x[i] < 0 ? -x[i] : x[i];
    if (!(a == a)) continue; /* NaN: no scale from it */
    s->amax = a > s->amax ? a : s->amax;
    if (!percentile) continue;
    int64_t stride = s->seen / CAL_MAX_SAMPLES + 1;
    if (s->seen++ % stride) continue;
    if (s->n == s->cap) {
      int64_t cap = s->cap ? s->cap * 2 : 4096;
      float *v = realloc(s->v, sizeof(float) * (size_t)cap);
      if (!v) return -1;
      s->v = v, s->cap = cap;
    }
    s->v[s->n++] = a;
  }
  return 0;
}

static int cmp_float(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return (x > y) - (x < y);
}

static float stat_scale(cal_stat *s, int percentile, double p) {
  float a = s->amax;
  if (percentile && s->n) {
    qsort(s->v, (size_t)s->n, sizeof(float), cmp_float);
    int64_t i = (int64_t)(p / 100.0 * (double)(s->n - 1) + 0.5);
    a = s->v[i < s->n ? i : s->n - 1];
  }
  return a / 127.0f;
}

static lathe_program *calib_program(lathe_model *m, const lathe_quantize_options *o, const api_calib *cal, cal_tap *tap,
                                    int cap, int *ntap, lathe_error *err) {
  lathe_options po = {.backend = LATHE_BACKEND_LLVM};
  lathe_program *p = api_program_lower(m, &po, err);
  if (!p) return NULL;
  if (add_taps(p, cal, tap, cap, ntap, err)) {
    lathe_program_free(p);
    return NULL;
  }
  if (api_program_finish(p, err)) return NULL; /* it freed p */
  /* the normalisation the weights carry (lathe train saves it), as lathe
   * run applies it; weights without any see raw features */
  if (lathe_weights_load(p, o->weights, err)) {
    lathe_program_free(p);
    return NULL;
  }
  return p;
}

static int run_batches(lathe_program *p, tr_data *d, const lathe_quantize_options *o, const cal_tap *tap, int ntap,
                       cal_stat *st, lathe_error *err) {
  const rt_index *tr = &d->split.train;
  int64_t B = d->batch, nb = o->calib_batches > 0 ? o->calib_batches : CAL_DEFAULT_BATCHES;
  if (tr->n < 1) return api_fail(err, LATHE_EUSER, "no calibration data: the training split of '%s' is empty", o->data);
  int64_t avail = (tr->n + B - 1) / B, maxel = 0;
  nb = nb < avail ? nb : avail;
  for (int t = 0; t < ntap; t++) {
    int64_t e = ir_numel(&p->g.nodes[p->g.outputs[tap[t].out].node].shape);
    maxel = e > maxel ? e : maxel;
  }
  float *buf = malloc(sizeof(float) * (size_t)maxel + 1);
  if (!buf) return api_fail(err, LATHE_ENOMEM, "out of memory");
  int rc = 0;
  for (int64_t b = 0; rc == 0 && b < nb; b++) {
    int64_t count = tr->n - b * B < B ? tr->n - b * B : B;
    rc = tr_data_feed(d, p, tr->idx + b * B, count, err);
    if (rc == 0) rc = lathe_run(p, err);
    for (int t = 0; rc == 0 && t < ntap; t++) {
      int64_t e = ir_numel(&p->g.nodes[p->g.outputs[tap[t].out].node].shape);
      api_read_output(p, tap[t].out, buf);
      /* only the rows of real examples: a short last batch is padded */
      if (stat_add(&st[tap[t].w], buf, e / B * count, o->calib == LATHE_CALIB_PERCENTILE))
        rc = api_fail(err, LATHE_ENOMEM, "out of memory");
    }
  }
  free(buf);
  return rc;
}

int tr_calibrate(lathe_model *m, const lathe_quantize_options *o, api_calib *cal, lathe_error *err) {
  lathe_options lo = {.backend = LATHE_BACKEND_INTERP, .default_dim = 1};
  lathe_program *s = api_program_lower(m, &lo, err);
  if (!s) return -1;
  ir_train t = s->g.train;
  int nnodes = s->g.nnodes;
  lathe_program_free(s);
  tr_settings_defaults(&t);
  size_t nsyms = (size_t)fe_num_syms(m->fe);
  int64_t *saved = malloc((nsyms + 1) * sizeof *saved);
  cal_tap *tap = malloc(sizeof *tap * ((size_t)nnodes + 1));
  cal_stat *st = calloc((size_t)cal->n + 1, sizeof *st);
  if (!saved || !tap || !st) {
    free(saved), free(tap), free(st);
    return api_fail(err, LATHE_ENOMEM, "out of memory");
  }
  memcpy(saved, m->vals, nsyms * sizeof *saved);
  /* the data binds the dims, as for lathe train on a fresh model: a batch
   * the caller bound for inference must not refuse the train block's */
  memset(m->vals, 0, nsyms * sizeof *saved);
  lathe_train_options to = {.data = o->data};
  tr_data d;
  int ntap = 0, rc = tr_data_open(&d, m, &to, t.split, (uint64_t)t.seed, t.batch, err);
  lathe_program *p = rc ? NULL : calib_program(m, o, cal, tap, nnodes, &ntap, err);
  if (!p) rc = -1;
  if (rc == 0) rc = run_batches(p, &d, o, tap, ntap, st, err);
  for (int i = 0; i < cal->n; i++) {
    if (rc == 0) cal->scale[i] = stat_scale(&st[i], o->calib == LATHE_CALIB_PERCENTILE,
                                            o->percentile > 0 ? o->percentile : 99.99);
    free(st[i].v);
  }
  lathe_program_free(p);
  tr_data_close(&d);
  memcpy(m->vals, saved, nsyms * sizeof *saved);
  free(saved), free(tap), free(st);
  return rc;
}
