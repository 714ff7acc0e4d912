/* data.h -- the data side of training: data sets (CSV, .npy pairs, IDX,
 * text), splits, per-epoch shuffles, normalisation, batches, metrics, the
 * progress line, the JSONL log and the SVG learning-curve plot.
 * Internal prefix: rt_.
 *
 * Conventions (as runtime.h): a function that can fail returns 0 or -1 and
 * writes a message naming the file (and line, for text formats) into
 * msg[0..msgn). Nothing here exits or aborts; only the progress line prints,
 * and only to the FILE the caller hands it.
 *
 * Shapes: N = examples in a data set, W = elements per example of a field
 * (64 for an 8x8 digit, T for a text window), B = the compiled batch size,
 * C = classes.
 */
#ifndef LATHE_DATA_H
#define LATHE_DATA_H

#include <stdint.h>
#include <stdio.h>
#include "lathe.h"

/* ======================= data sets (data.c + loaders) ====================== */

#define RT_DATA_MAXFIELDS 8

typedef enum { RT_FIELD_INPUT, RT_FIELD_TARGET } rt_field_role;

/* One column group of a data set: example i is data[i*width .. (i+1)*width). */
typedef struct {
  char name[64];           /* the model's input/target name; "" for CSV, IDX and
                              text (the model's one input and one target) */
  rt_field_role role;
  lathe_dtype dtype;       /* as stored: F32 features, I32 labels/tokens, U8
                              IDX pixels, ... (rt_batch_fill converts) */
  int64_t width;           /* W: elements per example */
  int rank;                /* per-example shape (the array's shape without N) */
  int64_t shape[LATHE_MAXDIM];
  void *data;              /* [N, W], malloc'd, owned by the data set */
} rt_field;

typedef struct {
  int64_t n;               /* N */
  int nfields;
  rt_field f[RT_DATA_MAXFIELDS];
  int64_t nclasses;        /* integer targets: max label + 1 (0 otherwise) */
  int vocab;               /* text data sets: 96 or 256 (0 otherwise) */
  char source[256];        /* the file it came from, for messages */
  char fsource[RT_DATA_MAXFIELDS][256]; /* per field, when not source (.npy, IDX) */
  /* CSV only (NULL / 0 otherwise), so that errors found after loading
   * still name the row: */
  int64_t *line;           /* [N] the line of each example in the file */
  int64_t target_col;      /* the target's column, counted from 1 */
  int has_nonint;          /* some target is not an integer in int32 range
                              (the target field is F32 then): */
  int64_t nonint_row;      /* the first such example */
  double nonint_value;     /* and its exact value */
} rt_dataset;

void rt_data_free(rt_dataset *ds);
/* The index of the first field with this role (and name, when name is
 * non-empty), or -1. */
int rt_data_field(const rt_dataset *ds, rt_field_role role, const char *name);
/* Checks that every value of a field is an integer in [lo, hi) (float fields
 * too: a model input or target of an integer dtype must never receive 2.9 as
 * 2, nor 2^32 wrapped to 0). what names a value in messages ("label": a class
 * label, which adds " class"). With CSV line numbers:
 *   "FILE:17: error: label 2.9 in column 65 is not an integer class"
 *   "FILE:17: error: label 10 in column 65 is outside [0, 10)"
 * otherwise "FILE: example 16: label 10 is outside [0, 10)". */
int rt_data_check_ints(const rt_dataset *ds, int field, int64_t lo, int64_t hi, const char *what, char *msg,
                       size_t msgn);
/* The same, a value equal to `except` also accepted when has_except
 * (cross_entropy's ignore_index). */
int rt_data_check_ints_except(const rt_dataset *ds, int field, int64_t lo, int64_t hi, int has_except,
                              int64_t except, const char *what, char *msg, size_t msgn);
/* Class labels: rt_data_check_ints(ds, field, 0, nclasses, "label"). */
int rt_data_check_labels(const rt_dataset *ds, int field, int64_t nclasses, char *msg, size_t msgn);
/* The shortest "%.Ng" spelling of v that reads back as v ("2.9", not
 * "2.8999999999999999"), into buf. */
void rt_fmt_double(char *buf, size_t n, double v);

/* ---- data_csv.c: comma-separated numbers, plain or gzip (detected from the
 * content, not the name). The first row is a header when one of its cells is
 * neither a number nor a missing-value spelling (empty, NaN, NA, N/A, null,
 * None, ...): a first data row with a NaN or an empty cell is an error, not a
 * header. Blank lines are skipped; a UTF-8 byte-order mark, CRLF, spaces
 * around fields and "quoted" fields are accepted. target_column is 0-based,
 * negative counts from the end (-1, the default, is the last column). The
 * features become one F32 field of width columns-1; the target one I32 field
 * when every target is an integer in int32 range (nclasses = max + 1),
 * otherwise F32 (nclasses = 0, has_nonint set). Every cell must be a finite
 * number that fits f32. Errors name file, line, column and value:
 *   "FILE:LINE: error: expected 65 columns, found 64",
 *   "FILE:LINE: error: column 3: 'abc' is not a number",
 *   "FILE:LINE: error: column 3: 'nan' is a missing value (fill it or drop the row)",
 *   "FILE:LINE: error: column 3: '1e39' overflows f32 (largest 3.4e38)". */
int rt_data_load_csv(const char *path, int target_column, rt_dataset *out, char *msg, size_t msgn);
/* The same from memory: buf[0..len) is the file's content, buf[len] must be
 * writable (it is cut in place); name is used in messages. */
int rt_data_parse_csv(const char *name, char *buf, size_t len, int target_column, rt_dataset *out, char *msg,
                      size_t msgn);

/* ---- data_npy.c: one .npy file per model input/target (--data NAME=FILE).
 * Every array's first axis is N (equal across files); float64 arrays become
 * F32 (rt_npy_read). Integer targets set nclasses. */
typedef struct {
  const char *name;        /* the model's input or target name */
  const char *path;
  rt_field_role role;
} rt_npy_source;
int rt_data_load_npy(const rt_npy_source *src, int nsrc, rt_dataset *out, char *msg, size_t msgn);
/* Adds array t (as rt_npy_read returns it) as the next field of ds, taking
 * its data. Errors: a scalar, a count of examples that differs from the
 * fields before, an example too large to count (shape (0, 2^40, 2^40)). */
int rt_data_add_array(rt_dataset *ds, const rt_npy_source *s, lathe_tensor *t, char *msg, size_t msgn);
/* Splits "NAME=FILE" (as given on the command line) in place-free fashion:
 * name receives NAME (NUL-terminated, at most namen-1 chars) and *path points
 * into spec after the '='. */
int rt_data_parse_pair(const char *spec, char *name, size_t namen, const char **path, char *msg, size_t msgn);

/* ---- data_idx.c: the IDX format of MNIST (big-endian header 0 0 TYPE RANK,
 * RANK u32 dimensions, big-endian data; TYPE u8 i8 i16 i32 f32 f64), plain or
 * gzip. Images [N, ...] become the input field (u8/i8 kept, i16 -> I32,
 * f64 -> F32), labels [N] the target field (integers -> I32). */
int rt_data_load_idx(const char *images, const char *labels, rt_dataset *out, char *msg, size_t msgn);
/* One IDX file from memory as the next field of ds (the first sets ds->n,
 * the second must match it); name is used in messages. */
int rt_data_parse_idx(const char *name, const unsigned char *buf, size_t len, rt_field_role role, rt_dataset *ds,
                      char *msg, size_t msgn);

/* ---- data_text.c: character tokens for language models. vocab 96: '\n' is
 * 0, ' '..'~' are 1..95, '\t' is ' ', everything else (incl. '\r') is dropped;
 * vocab 256: raw bytes. Examples are windows of T tokens at stride T (disjoint
 * windows, every token is predicted once per epoch): window i is tokens
 * [i*T, i*T+T) as input and [i*T+1, i*T+T+1) as target, so N = (tokens-1)/T
 * and the tail that does not fill a window is dropped. Fields: input I32 [N, T]
 * and target I32 [N, T]; nclasses = vocab. Plain or gzip. */
int rt_data_load_text(const char *path, int vocab, int64_t T, rt_dataset *out, char *msg, size_t msgn);
int rt_text_token(int ch, int vocab);     /* the token of byte ch, or -1 (dropped) */
int rt_text_char(int token, int vocab);   /* the byte of a token, or -1 (out of range) */

/* ---- data.c: a whole file, plain or gzip, into a malloc'd NUL-terminated
 * buffer. ---- */
int rt_read_maybe_gz(const char *path, char **data, size_t *len, char *msg, size_t msgn);

/* ====================== splits and batches (data_split.c) ================= */

typedef struct {
  int64_t *idx;            /* example numbers, malloc'd */
  int64_t n;
} rt_index;

typedef struct {
  rt_index train, val, test;
} rt_split;

/* Shuffles 0..N-1 with Philox(seed, stream "split") and cuts it into train,
 * val and test: n_val = round(N*frac[1]), n_test = round(N*frac[2]), and
 * n_train = N - n_val - n_test when the fractions sum to 1, round(N*frac[0])
 * when they sum to less (the rest is unused). Fractions must be >= 0 and sum
 * to at most 1; a split with frac > 0 must not come out empty. The same (N,
 * frac, seed) always gives the same split, so `lathe eval` rebuilds it. */
int rt_split_make(int64_t n, const double frac[3], uint64_t seed, rt_split *out, char *msg, size_t msgn);
/* The same parts without shuffling: rows [0, train) train, then val, then test (lathe train --in-order). */
int rt_split_in_order(int64_t n, const double frac[3], rt_split *out, char *msg, size_t msgn);
void rt_split_free(rt_split *s);
/* order[0..train->n) = the train examples shuffled for this epoch, from
 * Philox(seed, stream "epoch" + epoch): depends only on (seed, epoch), so a
 * resumed run sees the same batches. */
void rt_shuffle_epoch(const rt_index *train, uint64_t seed, int64_t epoch, int64_t *order);

/* Feature normalisation, fitted per element of a field (per CSV column, per
 * pixel) on the TRAINING examples only, then applied to every batch:
 * x' = (x - shift[j]) * scale[j].
 *   standard: shift = mean, scale = 1/std (population std, as sklearn's
 *             StandardScaler; a constant feature gets scale 1)
 *   minmax:   shift = min, scale = 1/(max-min) (constant: scale 1)
 *   none:     nothing. */
typedef enum { RT_NORM_NONE, RT_NORM_STANDARD, RT_NORM_MINMAX } rt_norm_kind;
typedef struct {
  rt_norm_kind kind;
  int64_t width;
  float *shift, *scale;    /* [W] each, malloc'd (NULL for none) */
} rt_norm;
int rt_norm_parse(const char *s, rt_norm_kind *out, char *msg, size_t msgn); /* "standard" | "minmax" | "none" */
int rt_norm_fit(rt_norm *nm, rt_norm_kind kind, const rt_dataset *ds, int field, const rt_index *train,
                char *msg, size_t msgn);
void rt_norm_apply(const rt_norm *nm, float *x, int64_t rows);   /* x: [rows, W] */
void rt_norm_free(rt_norm *nm);

/* Batches. Training uses rt_batch_count(n, B, 1): the last partial batch is
 * dropped (every step sees exactly B fresh examples; the compiled step has a
 * static batch). Evaluation uses rt_batch_count(n, B, 0): the last partial
 * batch is kept and padded to B by repeating its first example; rt_batch_fill
 * returns how many rows are real, and metrics are given only those. */
int64_t rt_batch_count(int64_t n, int64_t batch, int drop_last);
/* Gathers examples rows[0..count) of field into dst (count <= B, dst's first
 * axis B, numel B*W), pads rows count..B, converts to dst->dtype and, when nm
 * is non-NULL and dst is F32, normalises. Returns count, or -1 with a message
 * when dst does not fit. */
int64_t rt_batch_fill(const rt_dataset *ds, int field, const int64_t *rows, int64_t count, lathe_tensor *dst,
                      const rt_norm *nm, char *msg, size_t msgn);

/* ============================ metrics (metrics.c) ========================= */

/* The loss the model file declares; it picks the metrics. */
typedef enum { RT_LOSS_CROSS_ENTROPY, RT_LOSS_MSE, RT_LOSS_BCE } rt_loss_kind;
/* Terms that share another's metrics keep their own "loss": l1_loss and
 * huber share mse's, nll (scores are log-probabilities: -score[label]) shares
 * cross_entropy's. The default (0) is the kind's own loss. */
typedef enum { RT_FORM_DEFAULT, RT_FORM_ABS, RT_FORM_HUBER, RT_FORM_NLL } rt_loss_form;

typedef struct {
  const char *name;        /* "loss", "accuracy", "precision", "recall", "f1",
                              "roc_auc", "mse", "mae", "r2", "perplexity" */
  double value;
} rt_metric;

#define RT_MAX_METRICS 8

/* Plain functions on whole arrays (sklearn's definitions). */
double rt_metric_accuracy(const int32_t *y, const int32_t *pred, int64_t n);
/* Macro average over the labels present in y or pred (sklearn's
 * unique_labels); a label never predicted has precision 0 (zero_division=0);
 * macro F1 is the mean of per-label F1s. */
void rt_metric_macro_prf(const int32_t *y, const int32_t *pred, int64_t n, double *precision, double *recall,
                         double *f1);
/* sklearn's average='binary' (positive label 1, any non-zero counts as 1):
 * precision tp/(tp+fp), recall tp/(tp+fn), each 0 when undefined
 * (zero_division=0), F1 their harmonic mean (0 when both are 0). */
void rt_metric_binary_prf(const int32_t *y, const int32_t *pred, int64_t n, double *precision, double *recall,
                          double *f1);
/* Binary ROC-AUC (labels 0/1, higher score = class 1), ties counted as one
 * half (midranks, equal to sklearn's roc_auc_score). NaN when y holds only
 * one class (sklearn raises). */
double rt_metric_roc_auc(const int32_t *y, const double *score, int64_t n);
double rt_metric_mse(const double *y, const double *pred, int64_t n);
double rt_metric_mae(const double *y, const double *pred, int64_t n);
/* sklearn's r2_score: 1 - SS_res/SS_tot; a constant y gives 1 if predicted
 * exactly, else 0. */
double rt_metric_r2(const double *y, const double *pred, int64_t n);

/* An accumulator over an evaluation pass, fed batch by batch.
 *   cross_entropy: logits [rows, C] and labels [rows] (a language model passes
 *                  rows = B*T). Reports loss (mean nats), accuracy, precision,
 *                  recall, f1 (macro) and, when C == 2, roc_auc; with lm set,
 *                  loss and perplexity = exp(loss).
 *   bce:           logits [rows, W] and 0/1 targets [rows, W]: loss, accuracy
 *                  (logit > 0), precision, recall, f1 (binary, over all
 *                  rows*W elements) and roc_auc.
 *   mse:           predictions and targets [rows, W]: loss (mse, or the term's l1_loss or huber), mse, mae,
 *                  r2 (averaged over the W outputs, as sklearn's
 *                  uniform_average). */
typedef struct rt_metrics rt_metrics;
rt_metrics *rt_metrics_new(rt_loss_kind kind, int64_t width, int lm);   /* width: C or W; NULL on no memory */
/* The term behind "loss" (rt_loss_form; delta for huber). */
void rt_metrics_set_form(rt_metrics *m, rt_loss_form form, double delta);
/* cross_entropy's ignore_index: class rows with that label are left out of every metric. */
void rt_metrics_set_ignore(rt_metrics *m, int has_ignore, int64_t ignore);
int rt_metrics_add_class(rt_metrics *m, const float *logits, const int32_t *labels, int64_t rows, char *msg,
                         size_t msgn);
int rt_metrics_add_value(rt_metrics *m, const float *pred, const float *target, int64_t rows, char *msg,
                         size_t msgn);
/* Fills out[0..RT_MAX_METRICS) and returns how many; "loss" first, then the
 * primary metric (accuracy, mse, or perplexity) -- rt_metric_primary names it. */
int rt_metrics_result(const rt_metrics *m, rt_metric *out);
void rt_metrics_free(rt_metrics *m);
/* The metric that selects the best checkpoint and whether higher is better. */
const char *rt_metric_primary(rt_loss_kind kind, int lm, int *higher_is_better);
/* The value of a named metric in a result list, NAN when absent. */
double rt_metric_find(const rt_metric *m, int n, const char *name);

/* =================== progress line and JSONL log (progress.c) ============= */

/* On a terminal (tty = 1) a line redrawn in place with '\r' at most 4 times a
 * second:
 *   epoch 3/20  step 120/281  loss 0.3412  lr 0.001  5120 samples/s  ETA 0:12
 * otherwise (tty = 0) the same text as plain lines at most once a second.
 * Each epoch ends with one line that stays (on a terminal too), drawn by
 * rt_progress_epoch after validation with that epoch's score:
 *   epoch 3/20  step 281/281  loss 0.3107  lr 0.001  val accuracy 0.9611  5120 samples/s  ETA 0:10
 * tty = -1 asks isatty(fileno(out)). */
typedef struct rt_progress rt_progress;
rt_progress *rt_progress_new(FILE *out, int tty, int64_t epochs, int64_t steps_per_epoch, int64_t batch);
/* epoch and step count from 1; loss and lr are the step's training loss and
 * learning rate. The epoch's last step is drawn by rt_progress_epoch. */
void rt_progress_step(rt_progress *p, int64_t epoch, int64_t step, double loss, double lr);
/* The epoch's closing line: its last step and, when metric is not NULL, its
 * validation score. */
void rt_progress_epoch(rt_progress *p, const char *metric, double value);
/* A data-parallel job's communication so far: steps timed, seconds inside
 * them and, of those, inside the collectives; the line then shows
 * "comm wait 0.12 ms/step (3.4%)" (steps 0: nothing). */
void rt_progress_comm(rt_progress *p, int64_t steps, double step_s, double comm_s);
/* A permanent message line (the live line is cleared first and redrawn on
 * the next step). */
void rt_progress_note(rt_progress *p, const char *text);
/* Ends the live line with a newline (on a terminal) and frees p. */
void rt_progress_free(rt_progress *p);
/* For tests: a clock in seconds replacing CLOCK_MONOTONIC. */
void rt_progress_set_clock(rt_progress *p, double (*clock)(void *), void *ctx);

/* One JSON object per line, flushed at once (append: continue an existing
 * log, for a resumed run):
 *   {"split":"val","epoch":3,"step":843,"time":1.25,"loss":0.12,"accuracy":0.97}
 * Non-finite values are written as null (JSON has no NaN). */
typedef struct rt_log rt_log;
int rt_log_open(rt_log **out, const char *path, int append, char *msg, size_t msgn);
int rt_log_event(rt_log *l, const char *split, int64_t epoch, int64_t step, const rt_metric *m, int n, char *msg,
                 size_t msgn);
void rt_log_close(rt_log *l);

/* ========================= learning curves (plot.c) ======================= */

typedef struct {
  const char *name;        /* legend text, e.g. "train loss" */
  const double *x, *y;     /* n points; non-finite y values break the line */
  int64_t n;
} rt_plot_series;

typedef struct {
  const char *title, *xlabel, *ylabel;
  int logy;                /* log10 y axis (only positive y are drawn) */
} rt_plot_opts;

/* An SVG (800x500, axes with "nice" 1-2-5 ticks and labels, one coloured
 * polyline (plus dots when few points) per series, a legend) into a malloc'd
 * string, or written atomically to a file. */
int rt_plot_svg_string(const rt_plot_opts *o, const rt_plot_series *s, int ns, char **out, char *msg, size_t msgn);
int rt_plot_svg(const char *path, const rt_plot_opts *o, const rt_plot_series *s, int ns, char *msg, size_t msgn);

#endif
