/* metrics.c -- evaluation metrics with scikit-learn's definitions, and an
 * accumulator that an evaluation pass feeds batch by batch.
 *
 * The loss is recomputed here from the model's outputs rather than taken from
 * the compiled graph, so padded rows of the last batch (see rt_batch_fill)
 * never count; it is the plain loss (no label smoothing, no penalties). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"

/* ---- array metrics ---- */

double rt_metric_accuracy(const int32_t *y, const int32_t *pred, int64_t n) {
  if (n < 1) return NAN;
  int64_t ok = 0;
  for (int64_t i = 0; i < n; i++) ok += y[i] == pred[i];
  return (double)ok / (double)n;
}

void rt_metric_macro_prf(const int32_t *y, const int32_t *pred, int64_t n, double *precision, double *recall,
                         double *f1) {
  *precision = *recall = *f1 = NAN;
  if (n < 1) return;
  int64_t lo = y[0], hi = y[0];
  for (int64_t i = 0; i < n; i++) {
    if (y[i] < lo) lo = y[i];
    if (y[i] > hi) hi = y[i];
    if (pred[i] < lo) lo = pred[i];
    if (pred[i] > hi) hi = pred[i];
  }
  int64_t range = hi - lo + 1;
  int64_t *c = calloc((size_t)range * 3, sizeof *c); /* true positives, predicted, actual per label */
  if (!c) return;
  for (int64_t i = 0; i < n; i++) {
    c[3 * (pred[i] - lo) + 1]++;
    c[3 * (y[i] - lo) + 2]++;
    if (y[i] == pred[i]) c[3 * (y[i] - lo)]++;
  }
  double sp = 0, sr = 0, sf = 0;
  int64_t labels = 0;
  for (int64_t k = 0; k < range; k++) {
    int64_t tp = c[3 * k], np = c[3 * k + 1], nt = c[3 * k + 2];
    if (!np && !nt) continue; /* not among sklearn's unique_labels */
    double p = np ? (double)tp / (double)np : 0, r = nt ? (double)tp / (double)nt : 0;
    sp += p, sr += r, sf += p + r > 0 ? 2 * p * r / (p + r) : 0;
    labels++;
  }
  free(c);
  *precision = sp / (double)labels, *recall = sr / (double)labels, *f1 = sf / (double)labels;
}

void rt_metric_binary_prf(const int32_t *y, const int32_t *pred, int64_t n, double *precision, double *recall,
                          double *f1) {
  *precision = *recall = *f1 = NAN;
  if (n < 1) return;
  int64_t tp = 0, np = 0, nt = 0;
  for (int64_t i = 0; i < n; i++) {
    int p = pred[i] != 0, t = y[i] != 0;
    tp += p && t, np += p, nt += t;
  }
  double pr = np ? (double)tp / (double)np : 0, rc = nt ? (double)tp / (double)nt : 0;
  *precision = pr, *recall = rc, *f1 = pr + rc > 0 ? 2 * pr * rc / (pr + rc) : 0;
}

typedef struct {
  double s;
  int32_t y;
} scored;

static int by_score(const void *a, const void *b) {
  double x = ((const scored *)a)->s, y = ((const scored *)b)->s;
  return (x > y) - (x < y);
}

/* Mann-Whitney U with midranks for ties: the same number as the area under
 * sklearn's ROC curve (which joins tied scores by a straight segment). */
double rt_metric_roc_auc(const int32_t *y, const double *score, int64_t n) {
  int64_t pos = 0;
  for (int64_t i = 0; i < n; i++) {
    if (isnan(score[i])) return NAN;
    pos += y[i] != 0;
  }
  int64_t neg = n - pos;
  if (pos == 0 || neg == 0) return NAN;
  scored *v = malloc((size_t)n * sizeof *v);
  if (!v) return NAN;
  for (int64_t i = 0; i < n; i++) v[i].s = score[i], v[i].y = y[i] != 0;
  qsort(v, (size_t)n, sizeof *v, by_score);
  double rank_sum = 0;
  for (int64_t i = 0; i < n;) {
    int64_t j = i, p = 0;
    for (; j < n && v[j].s == v[i].s; j++) p += v[j].y;
    rank_sum += (double)p * (double)(i + 1 + j) / 2; /* ranks i+1..j average */
    i = j;
  }
  free(v);
  return (rank_sum - (double)pos * (double)(pos + 1) / 2) / ((double)pos * (double)neg);
}

double rt_metric_mse(const double *y, const double *pred, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; i++) s += (y[i] - pred[i]) * (y[i] - pred[i]);
  return n ? s / (double)n : NAN;
}

double rt_metric_mae(const double *y, const double *pred, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; i++) s += fabs(y[i] - pred[i]);
  return n ? s / (double)n : NAN;
}

/* sklearn's force_finite convention for a constant target. */
static double r2_of(double ss_res, double ss_tot) {
  if (ss_tot == 0) return ss_res == 0 ? 1.0 : 0.0;
  return 1 - ss_res / ss_tot;
}

double rt_metric_r2(const double *y, const double *pred, int64_t n) {
  if (n < 1) return NAN;
  double mean = 0, tot = 0, res = 0;
  for (int64_t i = 0; i < n; i++) mean += y[i];
  mean /= (double)n;
  for (int64_t i = 0; i < n; i++) tot += (y[i] - mean) * (y[i] - mean), res += (y[i] - pred[i]) * (y[i] - pred[i]);
  return r2_of(res, tot);
}

/* ---- the accumulator ---- */

struct rt_metrics {
  rt_loss_kind kind;
  int64_t width;            /* C for cross_entropy, W otherwise */
  int lm;
  int64_t n;                /* rows seen (cross_entropy, mse) or elements (bce) */
  double loss_sum;
  int64_t correct;
  /* per example, for P/R/F1 and ROC-AUC (not kept for language models) */
  int32_t *y, *pred;
  double *score;
  int64_t cap;
  /* mse: per output column, Welford's mean and M2 of the target, squared and
   * absolute error sums */
  double *col;              /* [4, W] */
  rt_loss_form form;        /* what "loss" sums */
  double delta;
  int has_ignore;           /* cross_entropy's ignore_index: rows with that label are not counted */
  int64_t ignore;
};

void rt_metrics_set_form(rt_metrics *m, rt_loss_form form, double delta) { m->form = form, m->delta = delta; }
void rt_metrics_set_ignore(rt_metrics *m, int has_ignore, int64_t ignore) { m->has_ignore = has_ignore, m->ignore = ignore; }

/* The regression term's loss of one error e (torch's l1_loss, huber_loss). */
static double pointwise(const rt_metrics *m, double e) {
  double a = fabs(e);
  if (m->form == RT_FORM_ABS) return a;
  if (m->form == RT_FORM_HUBER) return a < m->delta ? 0.5 * e * e : m->delta * (a - 0.5 * m->delta);
  return e * e;
}

rt_metrics *rt_metrics_new(rt_loss_kind kind, int64_t width, int lm) {
  if (width < 1) return NULL;
  rt_metrics *m = calloc(1, sizeof *m);
  if (!m) return NULL;
  m->kind = kind, m->width = width, m->lm = lm;
  if (kind == RT_LOSS_MSE && !(m->col = calloc((size_t)width * 4, sizeof *m->col))) {
    free(m);
    return NULL;
  }
  return m;
}

void rt_metrics_free(rt_metrics *m) {
  if (!m) return;
  free(m->y);
  free(m->pred);
  free(m->score);
  free(m->col);
  free(m);
}

/* Room for k more kept examples. */
static int reserve(rt_metrics *m, int64_t k) {
  if (m->n + k <= m->cap) return 0;
  int64_t cap = m->cap ? m->cap : 1024;
  while (cap < m->n + k) cap *= 2;
  int32_t *y = realloc(m->y, (size_t)cap * sizeof *y);
  if (y) m->y = y;
  int32_t *p = realloc(m->pred, (size_t)cap * sizeof *p);
  if (p) m->pred = p;
  double *s = realloc(m->score, (size_t)cap * sizeof *s);
  if (s) m->score = s;
  if (!y || !p || !s) return -1;
  m->cap = cap;
  return 0;
}

int rt_metrics_add_class(rt_metrics *m, const float *logits, const int32_t *labels, int64_t rows, char *msg,
                         size_t msgn) {
  if (m->kind != RT_LOSS_CROSS_ENTROPY) {
    snprintf(msg, msgn, "class metrics given to a non cross_entropy accumulator");
    return -1;
  }
  int64_t c = m->width;
  if (!m->lm && reserve(m, rows) < 0) {
    snprintf(msg, msgn, "out of memory");
    return -1;
  }
  for (int64_t i = 0; i < rows; i++) {
    const float *z = logits + i * c;
    if (m->has_ignore && labels[i] == m->ignore) continue;
    if (labels[i] < 0 || labels[i] >= c) {
      snprintf(msg, msgn, "label %d outside [0, %lld)", labels[i], (long long)c);
      return -1;
    }
    int64_t arg = 0;
    for (int64_t k = 1; k < c; k++)
      if (z[k] > z[arg]) arg = k;
    double se = 0;
    for (int64_t k = 0; k < c; k++) se += exp((double)z[k] - z[arg]);
    m->loss_sum += m->form == RT_FORM_NLL ? -(double)z[labels[i]] : (double)z[arg] + log(se) - z[labels[i]];
    m->correct += arg == labels[i];
    if (!m->lm) {
      m->y[m->n] = labels[i], m->pred[m->n] = (int32_t)arg;
      m->score[m->n] = c == 2 ? (double)z[1] - z[0] : 0; /* orders like softmax's p(class 1) */
    }
    m->n++;
  }
  return 0;
}

/* One bce element: loss with logits (stable form) and its kept score. */
static void add_bce(rt_metrics *m, double z, double t) {
  m->loss_sum += fmax(z, 0) - z * t + log1p(exp(-fabs(z)));
  int32_t y = t > 0.5, p = z > 0;
  m->correct += y == p;
  m->y[m->n] = y, m->pred[m->n] = p, m->score[m->n] = z;
  m->n++;
}

/* One mse row: Welford's update of each column's target statistics. */
static void add_mse_row(rt_metrics *m, const float *p, const float *t) {
  int64_t w = m->width;
  double *mean = m->col, *m2 = m->col + w, *sse = m->col + 2 * w, *sae = m->col + 3 * w;
  double k = (double)(m->n + 1);
  for (int64_t j = 0; j < w; j++) {
    double y = t[j], e = (double)p[j] - y, d = y - mean[j];
    mean[j] += d / k;
    m2[j] += d * (y - mean[j]);
    sse[j] += e * e, sae[j] += fabs(e);
    m->loss_sum += pointwise(m, e);
  }
  m->n++;
}

int rt_metrics_add_value(rt_metrics *m, const float *pred, const float *target, int64_t rows, char *msg,
                         size_t msgn) {
  if (m->kind == RT_LOSS_CROSS_ENTROPY) {
    snprintf(msg, msgn, "value metrics given to a cross_entropy accumulator");
    return -1;
  }
  if (m->kind == RT_LOSS_MSE) {
    for (int64_t i = 0; i < rows; i++) add_mse_row(m, pred + i * m->width, target + i * m->width);
    return 0;
  }
  if (reserve(m, rows * m->width) < 0) {
    snprintf(msg, msgn, "out of memory");
    return -1;
  }
  for (int64_t i = 0; i < rows * m->width; i++) add_bce(m, pred[i], target[i]);
  return 0;
}

static int put(rt_metric *out, int k, const char *name, double v) {
  out[k].name = name, out[k].value = v;
  return k + 1;
}

static int result_class(const rt_metrics *m, rt_metric *out) {
  double loss = m->loss_sum / (double)m->n;
  int k = put(out, 0, "loss", loss);
  if (m->lm) return put(out, k, "perplexity", exp(loss));
  double p, r, f;
  rt_metric_macro_prf(m->y, m->pred, m->n, &p, &r, &f);
  k = put(out, k, "accuracy", (double)m->correct / (double)m->n);
  k = put(out, k, "precision", p);
  k = put(out, k, "recall", r);
  k = put(out, k, "f1", f);
  if (m->width == 2) k = put(out, k, "roc_auc", rt_metric_roc_auc(m->y, m->score, m->n));
  return k;
}

static int result_mse(const rt_metrics *m, rt_metric *out) {
  int64_t w = m->width;
  double sse = 0, sae = 0, r2 = 0;
  for (int64_t j = 0; j < w; j++) {
    sse += m->col[2 * w + j], sae += m->col[3 * w + j];
    r2 += r2_of(m->col[2 * w + j], m->col[w + j]);
  }
  double cnt = (double)m->n * (double)w, mse = sse / cnt;
  int k = put(out, 0, "loss", m->loss_sum / cnt);
  k = put(out, k, "mse", mse);
  k = put(out, k, "mae", sae / cnt);
  return put(out, k, "r2", r2 / (double)w);
}

int rt_metrics_result(const rt_metrics *m, rt_metric *out) {
  if (m->n == 0) return 0;
  if (m->kind == RT_LOSS_CROSS_ENTROPY) return result_class(m, out);
  if (m->kind == RT_LOSS_MSE) return result_mse(m, out);
  int k = put(out, 0, "loss", m->loss_sum / (double)m->n);
  k = put(out, k, "accuracy", (double)m->correct / (double)m->n);
  double p, r, f;
  rt_metric_binary_prf(m->y, m->pred, m->n, &p, &r, &f);
  k = put(out, k, "precision", p);
  k = put(out, k, "recall", r);
  k = put(out, k, "f1", f);
  return put(out, k, "roc_auc", rt_metric_roc_auc(m->y, m->score, m->n));
}

const char *rt_metric_primary(rt_loss_kind kind, int lm, int *higher_is_better) {
  int hi = kind != RT_LOSS_MSE && !lm;
  if (higher_is_better) *higher_is_better = hi;
  if (lm) return "perplexity";
  return kind == RT_LOSS_MSE ? "mse" : "accuracy";
}

double rt_metric_find(const rt_metric *m, int n, const char *name) {
  for (int i = 0; i < n; i++)
    if (strcmp(m[i].name, name) == 0) return m[i].value;
  return NAN;
}
