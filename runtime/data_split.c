/* data_split.c -- train/val/test splits, per-epoch shuffles, feature
 * normalisation and batches.
 *
 * Randomness comes from ir_rng (Philox-4x32-10), keyed by the run's seed and a
 * fixed stream per purpose, so the split depends only on (N, fractions, seed)
 * and an epoch's order only on (seed, epoch): `lathe eval` rebuilds the split
 * and a resumed run replays the same batches. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"
#include "ir.h"
#include "runtime.h"
#include "rt/lathe_rt.h"

/* Streams: the ASCII of "split" and "epoch", so the two never collide. */
#define STREAM_SPLIT 0x73706c6974ull
#define STREAM_EPOCH 0x65706f6368ull

/* Fisher-Yates over a[0..n) with the generator r. */
static void shuffle(int64_t *a, int64_t n, ir_rng *r) {
  for (int64_t i = n - 1; i > 0; i--) {
    int64_t j = (int64_t)(ir_rng_uniform(r) * (double)(i + 1));
    if (j > i) j = i; /* cannot happen with uniform < 1; kept for safety */
    int64_t t = a[i];
    a[i] = a[j], a[j] = t;
  }
}

static int make_part(rt_index *p, const int64_t *perm, int64_t start, int64_t n) {
  p->n = n;
  p->idx = malloc((size_t)(n ? n : 1) * sizeof *p->idx);
  if (!p->idx) return -1;
  if (n) memcpy(p->idx, perm + start, (size_t)n * sizeof *perm);
  return 0;
}

/* Sizes of the three parts; -1 with a message when the fractions are bad. */
static int part_sizes(int64_t n, const double frac[3], int64_t size[3], char *msg, size_t msgn) {
  double sum = frac[0] + frac[1] + frac[2];
  for (int k = 0; k < 3; k++)
    if (!(frac[k] >= 0 && frac[k] <= 1)) {
      snprintf(msg, msgn, "split fraction %g must be between 0 and 1", frac[k]);
      return -1;
    }
  if (sum > 1 + 1e-9) {
    snprintf(msg, msgn, "split fractions %g, %g, %g add up to more than 1", frac[0], frac[1], frac[2]);
    return -1;
  }
  size[1] = (int64_t)llround((double)n * frac[1]);
  size[2] = (int64_t)llround((double)n * frac[2]);
  size[0] = sum > 1 - 1e-9 ? n - size[1] - size[2] : (int64_t)llround((double)n * frac[0]);
  if (size[0] < 0 || size[0] + size[1] + size[2] > n) size[0] = n - size[1] - size[2];
  static const char *names[3] = {"train", "val", "test"};
  for (int k = 0; k < 3; k++)
    if (frac[k] > 0 && size[k] <= 0) {
      snprintf(msg, msgn, "%lld examples leave the %s split (fraction %g) empty", (long long)n, names[k], frac[k]);
      return -1;
    }
  return 0;
}

/* The split, shuffled with seed unless in_order (then the rows in file
 * order: train first, then val, then test). */
static int split_make(int64_t n, const double frac[3], uint64_t seed, int in_order, rt_split *out, char *msg,
                      size_t msgn) {
  memset(out, 0, sizeof *out);
  int64_t size[3];
  if (n < 1) {
    snprintf(msg, msgn, "no examples to split");
    return -1;
  }
  if (part_sizes(n, frac, size, msg, msgn) < 0) return -1;
  int64_t *perm = malloc((size_t)n * sizeof *perm);
  if (!perm) {
    snprintf(msg, msgn, "out of memory");
    return -1;
  }
  for (int64_t i = 0; i < n; i++) perm[i] = i;
  ir_rng r;
  ir_rng_seed(&r, seed, STREAM_SPLIT);
  if (!in_order) shuffle(perm, n, &r);
  int rc = make_part(&out->train, perm, 0, size[0]) | make_part(&out->val, perm, size[0], size[1]) |
           make_part(&out->test, perm, size[0] + size[1], size[2]);
  free(perm);
  if (rc) {
    rt_split_free(out);
    snprintf(msg, msgn, "out of memory");
    return -1;
  }
  return 0;
}

int rt_split_make(int64_t n, const double frac[3], uint64_t seed, rt_split *out, char *msg, size_t msgn) {
  return split_make(n, frac, seed, 0, out, msg, msgn);
}

int rt_split_in_order(int64_t n, const double frac[3], rt_split *out, char *msg, size_t msgn) {
  return split_make(n, frac, 0, 1, out, msg, msgn);
}

void rt_split_free(rt_split *s) {
  free(s->train.idx);
  free(s->val.idx);
  free(s->test.idx);
  memset(s, 0, sizeof *s);
}

void rt_shuffle_epoch(const rt_index *train, uint64_t seed, int64_t epoch, int64_t *order) {
  if (train->n) memcpy(order, train->idx, (size_t)train->n * sizeof *order);
  ir_rng r;
  ir_rng_seed(&r, seed, STREAM_EPOCH + (uint64_t)epoch);
  shuffle(order, train->n, &r);
}

/* ---- normalisation ---- */

int rt_norm_parse(const char *s, rt_norm_kind *out, char *msg, size_t msgn) {
  static const char *names[] = {"none", "standard", "minmax"};
  for (int k = 0; k < 3; k++)
    if (strcmp(s, names[k]) == 0) {
      *out = (rt_norm_kind)k;
      return 0;
    }
  snprintf(msg, msgn, "unknown normalisation '%s' (expected standard, minmax or none)", s);
  return -1;
}

/* Per-column statistics of the train rows: mean and population variance
 * (two passes, in double), min and max. */
static void column_stats(const rt_field *f, const rt_index *train, double *mean, double *var, double *lo,
                         double *hi, float *row) {
  int64_t w = f->width;
  size_t rb = (size_t)w * lathe_dtype_size(f->dtype);
  for (int64_t j = 0; j < w; j++) mean[j] = var[j] = 0, lo[j] = INFINITY, hi[j] = -INFINITY;
  for (int pass = 0; pass < 2; pass++) {
    for (int64_t i = 0; i < train->n; i++) {
      rt_convert((const char *)f->data + (size_t)train->idx[i] * rb, f->dtype, row, LATHE_F32, w);
      for (int64_t j = 0; j < w; j++) {
        double v = row[j];
        if (pass == 0) {
          mean[j] += v;
          if (v < lo[j]) lo[j] = v;
          if (v > hi[j]) hi[j] = v;
        } else {
          var[j] += (v - mean[j]) * (v - mean[j]);
        }
      }
    }
    for (int64_t j = 0; j < w; j++) {
      if (pass == 0) mean[j] /= (double)train->n;
      else var[j] /= (double)train->n;
    }
  }
}

int rt_norm_fit(rt_norm *nm, rt_norm_kind kind, const rt_dataset *ds, int field, const rt_index *train,
                char *msg, size_t msgn) {
  memset(nm, 0, sizeof *nm);
  nm->kind = kind;
  if (kind == RT_NORM_NONE) return 0;
  if (field < 0 || field >= ds->nfields || train->n < 1) {
    snprintf(msg, msgn, "%s: nothing to normalise (no field or no training examples)", ds->source);
    return -1;
  }
  const rt_field *f = &ds->f[field];
  int64_t w = f->width;
  nm->width = w;
  nm->shift = malloc((size_t)w * sizeof(float));
  nm->scale = malloc((size_t)w * sizeof(float));
  double *st = malloc((size_t)w * 4 * sizeof(double));
  float *row = malloc((size_t)w * sizeof(float));
  int rc = -1;
  if (!nm->shift || !nm->scale || !st || !row) {
    snprintf(msg, msgn, "%s: out of memory", ds->source);
  } else {
    double *mean = st, *var = st + w, *lo = st + 2 * w, *hi = st + 3 * w;
    column_stats(f, train, mean, var, lo, hi, row);
    for (int64_t j = 0; j < w; j++) {
      /* A constant column keeps scale 1 (sklearn does the same) rather than
       * dividing by zero. */
      double spread = kind == RT_NORM_STANDARD ? sqrt(var[j]) : hi[j] - lo[j];
      nm->shift[j] = (float)(kind == RT_NORM_STANDARD ? mean[j] : lo[j]);
      nm->scale[j] = (float)(spread > 1e-12 * (1 + fabs(nm->shift[j])) ? 1.0 / spread : 1.0);
    }
    rc = 0;
  }
  free(st);
  free(row);
  if (rc < 0) rt_norm_free(nm);
  return rc;
}

void rt_norm_apply(const rt_norm *nm, float *x, int64_t rows) {
  if (!nm || nm->kind == RT_NORM_NONE || !nm->shift) return;
  lathe_rt_normalize(x, rows, nm->width, nm->shift, nm->scale); /* the arithmetic emitted models use too */
}

void rt_norm_free(rt_norm *nm) {
  free(nm->shift);
  free(nm->scale);
  memset(nm, 0, sizeof *nm);
}

/* ---- batches ---- */

int64_t rt_batch_count(int64_t n, int64_t batch, int drop_last) {
  if (batch < 1 || n < 1) return 0;
  return drop_last ? n / batch : (n + batch - 1) / batch;
}

int64_t rt_batch_fill(const rt_dataset *ds, int field, const int64_t *rows, int64_t count, lathe_tensor *dst,
                      const rt_norm *nm, char *msg, size_t msgn) {
  if (field < 0 || field >= ds->nfields) {
    snprintf(msg, msgn, "%s: no such field", ds->source);
    return -1;
  }
  const rt_field *f = &ds->f[field];
  int64_t numel = lathe_tensor_numel(dst), b = dst->rank >= 1 ? dst->shape[0] : 0;
  if (b < 1 || numel != b * f->width) {
    snprintf(msg, msgn, "%s: an example of '%s' has %lld values, which do not fill an input of %lld values "
             "per batch row", ds->source, f->name[0] ? f->name : (f->role == RT_FIELD_INPUT ? "the input" : "the target"),
             (long long)f->width, b >= 1 && numel >= 0 ? (long long)(numel / b) : -1LL);
    return -1;
  }
  if (count < 1 || count > b) {
    snprintf(msg, msgn, "batch of %lld examples for a batch size of %lld", (long long)count, (long long)b);
    return -1;
  }
  if (nm && nm->kind != RT_NORM_NONE && nm->width != f->width) {
    snprintf(msg, msgn, "normalisation fitted on %lld values per example, data has %lld", (long long)nm->width,
             (long long)f->width);
    return -1;
  }
  size_t sb = (size_t)f->width * lathe_dtype_size(f->dtype), db = (size_t)f->width * lathe_dtype_size(dst->dtype);
  char *d = dst->data;
  for (int64_t i = 0; i < count; i++) {
    if (rows[i] < 0 || rows[i] >= ds->n) {
      snprintf(msg, msgn, "example %lld out of range [0, %lld)", (long long)rows[i], (long long)ds->n);
      return -1;
    }
    rt_convert((const char *)f->data + (size_t)rows[i] * sb, f->dtype, d + (size_t)i * db, dst->dtype, f->width);
  }
  if (nm && dst->dtype == LATHE_F32) rt_norm_apply(nm, dst->data, count);
  for (int64_t i = count; i < b; i++) memcpy(d + (size_t)i * db, d, db);
  return count;
}
