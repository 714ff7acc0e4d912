/* test_data.c -- data-set loaders (CSV, .npy pairs, IDX, text), splits,
 * per-epoch shuffles, normalisation and batches. Small files are written to
 * a temporary directory; the real data set is sklearn's digits. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "data.h"
#include "runtime.h"
#include "test.h"
#include "test_scratch.h"

#define DIGITS "/usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz"

static char msg[512];

/* ---- CSV ---- */

static void test_csv_digits(void) {
  if (access(DIGITS, R_OK) != 0) {
    fprintf(stderr, "skipping digits: %s not found\n", DIGITS);
    return;
  }
  rt_dataset ds;
  CHECK_MSG(rt_data_load_csv(DIGITS, -1, &ds, msg, sizeof msg) == 0, "%s", msg);
  CHECK(ds.n == 1797);
  CHECK(ds.nfields == 2);
  CHECK(ds.f[0].width == 64 && ds.f[0].dtype == LATHE_F32 && ds.f[0].role == RT_FIELD_INPUT);
  CHECK(ds.f[1].width == 1 && ds.f[1].dtype == LATHE_I32 && ds.f[1].role == RT_FIELD_TARGET);
  CHECK(ds.nclasses == 10);
  const float *x = ds.f[0].data;
  const int32_t *y = ds.f[1].data;
  /* row 0: 0,0,5,13,9,1,0,0,... label 0; row 1 label 1; the last row's label is 8 */
  CHECK(x[2] == 5 && x[3] == 13 && x[4] == 9 && y[0] == 0 && y[1] == 1 && y[1796] == 8);
  CHECK(rt_data_check_labels(&ds, 1, 10, msg, sizeof msg) == 0);
  CHECK(rt_data_check_labels(&ds, 1, 9, msg, sizeof msg) == -1);
  CHECK_STR(msg, DIGITS ":10: error: label 9 in column 65 is outside [0, 9)");
  rt_data_free(&ds);
}

static void test_csv_header_and_target(void) {
  write_text("h.csv", "a, b ,\"label\",c\r\n1,2,3,4\r\n\r\n5.5,-6,7,8e1\r\n");
  rt_dataset ds;
  CHECK_MSG(rt_data_load_csv(tmp("h.csv"), 2, &ds, msg, sizeof msg) == 0, "%s", msg);
  CHECK(ds.n == 2 && ds.f[0].width == 3);
  const float *x = ds.f[0].data;
  const int32_t *y = ds.f[1].data;
  CHECK(x[0] == 1 && x[1] == 2 && x[2] == 4 && x[3] == 5.5f && x[4] == -6 && x[5] == 80);
  CHECK(y[0] == 3 && y[1] == 7 && ds.nclasses == 8);
  rt_data_free(&ds);
  /* Non-integer targets make a float target field. */
  write_text("r.csv", "1,0.5\n2,1.25\n");
  CHECK(rt_data_load_csv(tmp("r.csv"), -1, &ds, msg, sizeof msg) == 0);
  CHECK(ds.f[1].dtype == LATHE_F32 && ((float *)ds.f[1].data)[1] == 1.25f && ds.nclasses == 0);
  rt_data_free(&ds);
  /* The same file gzipped is read the same way, whatever its name. */
  const char *t = "1,2,0\n3,4,1\n";
  write_gz(tmp("g.csv"), t, strlen(t));
  CHECK_MSG(rt_data_load_csv(tmp("g.csv"), -1, &ds, msg, sizeof msg) == 0, "%s", msg);
  CHECK(ds.n == 2 && ((float *)ds.f[0].data)[3] == 4 && ((int32_t *)ds.f[1].data)[1] == 1);
  rt_data_free(&ds);
}

/* Malformed files: the message names file and line. */
static void csv_error(const char *text, int tcol, const char *want) {
  write_text("bad.csv", text);
  rt_dataset ds;
  char full[512];
  snprintf(full, sizeof full, want, tmp("bad.csv"));
  CHECK(rt_data_load_csv(tmp("bad.csv"), tcol, &ds, msg, sizeof msg) == -1);
  CHECK_STR(msg, full);
  CHECK(ds.nfields == 0 && ds.n == 0);
}

static void test_csv_errors(void) {
  csv_error("1,2,3\n4,5,6\n7,8\n", -1, "%s:3: error: expected 3 columns, found 2");
  csv_error("x,y\n1,2\n\n3,4,5\n", -1, "%s:4: error: expected 2 columns, found 3");
  csv_error("1,2,3\n4,abc,6\n", -1, "%s:2: error: column 2: 'abc' is not a number");
  csv_error("1,2,3\n4,,6\n", -1, "%s:2: error: column 2: empty field (a missing value: fill it or drop the row)");
  csv_error("1,2,3\n4,nan,6\n", -1, "%s:2: error: column 2: 'nan' is a missing value (fill it or drop the row)");
  csv_error("", -1, "%s: no data rows");
  csv_error("\n  \n", -1, "%s: no data rows");
  csv_error("a,b,c\n", -1, "%s: no data rows (only a header)");
  csv_error("1\n2\n", -1, "%s:1: error: need at least 2 columns (features and a target)");
  csv_error("1,2\n", 5, "%s:1: error: target column 5 out of range for 2 columns");
  rt_dataset ds;
  CHECK(rt_data_load_csv(tmp("missing.csv"), -1, &ds, msg, sizeof msg) == -1);
  char want[300];
  snprintf(want, sizeof want, "cannot read '%s': No such file or directory", tmp("missing.csv"));
  CHECK_STR(msg, want);
  /* A truncated gzip stream is an error, not a short file. */
  char big[4096];
  for (size_t i = 0; i < sizeof big; i++) big[i] = i % 10 == 9 ? '\n' : (char)('0' + i % 7);
  write_gz(tmp("t.gz"), big, sizeof big);
  FILE *f = fopen(tmp("t.gz"), "rb");
  unsigned char gz[8192];
  size_t n = fread(gz, 1, sizeof gz, f);
  fclose(f);
  write_file(tmp("t.gz"), gz, n / 2);
  CHECK(rt_data_load_csv(tmp("t.gz"), -1, &ds, msg, sizeof msg) == -1);
  snprintf(want, sizeof want, "%s: truncated gzip data", tmp("t.gz"));
  CHECK_STR(msg, want);
}

/* ---- .npy pairs ---- */

static void test_npy(void) {
  float xs[6 * 4];
  int32_t ys[6];
  for (int i = 0; i < 24; i++) xs[i] = (float)i;
  for (int i = 0; i < 6; i++) ys[i] = i % 3;
  lathe_tensor x = {LATHE_F32, 3, {6, 2, 2}, xs}, y = {LATHE_I32, 1, {6}, ys}, y5 = {LATHE_I32, 1, {5}, ys};
  CHECK(rt_npy_write(tmp("x.npy"), &x, msg, sizeof msg) == 0);
  CHECK(rt_npy_write(tmp("y.npy"), &y, msg, sizeof msg) == 0);
  CHECK(rt_npy_write(tmp("y5.npy"), &y5, msg, sizeof msg) == 0);
  char name[64];
  const char *path;
  char spec[300];
  snprintf(spec, sizeof spec, "img=%s", tmp("x.npy"));
  CHECK(rt_data_parse_pair(spec, name, sizeof name, &path, msg, sizeof msg) == 0);
  CHECK_STR(name, "img");
  CHECK_STR(path, tmp("x.npy"));
  CHECK(rt_data_parse_pair("=a.npy", name, sizeof name, &path, msg, sizeof msg) == -1);
  CHECK_STR(msg, "'=a.npy': expected NAME=FILE");
  rt_npy_source src[2] = {{"img", tmp("x.npy"), RT_FIELD_INPUT}, {"label", tmp("y.npy"), RT_FIELD_TARGET}};
  rt_dataset ds;
  CHECK_MSG(rt_data_load_npy(src, 2, &ds, msg, sizeof msg) == 0, "%s", msg);
  CHECK(ds.n == 6 && ds.f[0].width == 4 && ds.f[0].rank == 2 && ds.f[0].shape[1] == 2);
  CHECK(ds.nclasses == 3);
  CHECK(rt_data_field(&ds, RT_FIELD_TARGET, "label") == 1 && rt_data_field(&ds, RT_FIELD_INPUT, "") == 0);
  CHECK(rt_data_field(&ds, RT_FIELD_INPUT, "nope") == -1);
  CHECK(((float *)ds.f[0].data)[23] == 23);
  rt_data_free(&ds);
  src[1].path = tmp("y5.npy");
  CHECK(rt_data_load_npy(src, 2, &ds, msg, sizeof msg) == -1);
  char want[400];
  snprintf(want, sizeof want, "%s: 'label' has 5 examples but 'img' has 6", tmp("y5.npy"));
  CHECK_STR(msg, want);
}

/* ---- IDX ---- */

static void test_idx(void) {
  unsigned char img[64], lab[64];
  uint32_t di[3] = {3, 2, 2}, dl[1] = {3};
  size_t h = idx_header(img, 0x08, 3, di);
  for (int i = 0; i < 12; i++) img[h + i] = (unsigned char)(i * 20);
  size_t hl = idx_header(lab, 0x08, 1, dl);
  lab[hl] = 7, lab[hl + 1] = 0, lab[hl + 2] = 9;
  write_gz(tmp("img.idx.gz"), img, h + 12);
  write_file(tmp("lab.idx"), lab, hl + 3);
  rt_dataset ds;
  CHECK_MSG(rt_data_load_idx(tmp("img.idx.gz"), tmp("lab.idx"), &ds, msg, sizeof msg) == 0, "%s", msg);
  CHECK(ds.n == 3 && ds.f[0].width == 4 && ds.f[0].dtype == LATHE_U8 && ds.f[0].shape[0] == 2);
  CHECK(((uint8_t *)ds.f[0].data)[11] == 220 && ds.nclasses == 10);
  rt_data_free(&ds);

  /* i16 labels and f64 images, big-endian. */
  uint32_t d2[2] = {2, 1};
  h = idx_header(img, 0x0E, 2, d2);
  unsigned char be_half[8] = {0x3F, 0xE0, 0, 0, 0, 0, 0, 0}, be_m2[8] = {0xC0, 0, 0, 0, 0, 0, 0, 0};
  memcpy(img + h, be_half, 8), memcpy(img + h + 8, be_m2, 8);
  write_file(tmp("f64.idx"), img, h + 16);
  uint32_t d1[1] = {2};
  hl = idx_header(lab, 0x0B, 1, d1);
  lab[hl] = 0x01, lab[hl + 1] = 0x02, lab[hl + 2] = 0xFF, lab[hl + 3] = 0xFE; /* 258, -2 */
  write_file(tmp("i16.idx"), lab, hl + 4);
  CHECK_MSG(rt_data_load_idx(tmp("f64.idx"), tmp("i16.idx"), &ds, msg, sizeof msg) == 0, "%s", msg);
  CHECK(ds.f[0].dtype == LATHE_F32 && ((float *)ds.f[0].data)[0] == 0.5f && ((float *)ds.f[0].data)[1] == -2);
  CHECK(ds.f[1].dtype == LATHE_I32 && ((int32_t *)ds.f[1].data)[0] == 258 && ((int32_t *)ds.f[1].data)[1] == -2);
  rt_data_free(&ds);

  /* Malformed: count mismatch, wrong size, bad magic, bad type, huge dims. */
  char want[400];
  CHECK(rt_data_load_idx(tmp("img.idx.gz"), tmp("i16.idx"), &ds, msg, sizeof msg) == -1);
  snprintf(want, sizeof want, "%s: 2 labels for 3 images", tmp("i16.idx"));
  CHECK_STR(msg, want);
  write_file(tmp("short.idx"), img, h + 15);
  CHECK(rt_data_load_idx(tmp("short.idx"), tmp("i16.idx"), &ds, msg, sizeof msg) == -1);
  snprintf(want, sizeof want, "%s: IDX data size does not match its header (15 bytes of data)", tmp("short.idx"));
  CHECK_STR(msg, want);
  write_text("magic.idx", "P5\n2 2\n");
  CHECK(rt_data_load_idx(tmp("magic.idx"), tmp("i16.idx"), &ds, msg, sizeof msg) == -1);
  snprintf(want, sizeof want, "%s: not an IDX file (bad magic number)", tmp("magic.idx"));
  CHECK_STR(msg, want);
  img[2] = 0x07;
  write_file(tmp("type.idx"), img, h + 16);
  CHECK(rt_data_load_idx(tmp("type.idx"), tmp("i16.idx"), &ds, msg, sizeof msg) == -1);
  snprintf(want, sizeof want, "%s: unknown IDX element type 0x07", tmp("type.idx"));
  CHECK_STR(msg, want);
  uint32_t huge[4] = {0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu};
  h = idx_header(img, 0x08, 4, huge);
  write_file(tmp("huge.idx"), img, h + 4);
  CHECK(rt_data_load_idx(tmp("huge.idx"), tmp("i16.idx"), &ds, msg, sizeof msg) == -1);
  CHECK(strstr(msg, "does not match its header") != NULL);
}

/* ---- text ---- */

static void test_text(void) {
  CHECK(rt_text_token('\n', 96) == 0 && rt_text_token(' ', 96) == 1 && rt_text_token('~', 96) == 95);
  CHECK(rt_text_token('\t', 96) == 1 && rt_text_token('\r', 96) == -1 && rt_text_token(0xC3, 96) == -1);
  CHECK(rt_text_token(0xC3, 256) == 0xC3 && rt_text_char(0, 96) == '\n' && rt_text_char(34, 96) == 'A');
  CHECK(rt_text_char(96, 96) == -1 && rt_text_char(255, 256) == 255);
  /* "ab\tc\r\n" + "\xc3\xa9" (dropped) + "d~x": tokens a b ' ' c \n d ~ x */
  write_text("t.txt", "ab\tc\r\n\xc3\xa9" "d~x");
  rt_dataset ds;
  CHECK_MSG(rt_data_load_text(tmp("t.txt"), 96, 3, &ds, msg, sizeof msg) == 0, "%s", msg);
  /* 8 tokens, windows of 3 at stride 3: (8-1)/3 = 2 windows */
  CHECK(ds.n == 2 && ds.vocab == 96 && ds.nclasses == 96 && ds.f[0].width == 3);
  const int32_t *x = ds.f[0].data, *y = ds.f[1].data;
  int32_t wx[6] = {'a' - 31, 'b' - 31, 1, 'c' - 31, 0, 'd' - 31};
  int32_t wy[6] = {'b' - 31, 1, 'c' - 31, 0, 'd' - 31, '~' - 31};
  CHECK(memcmp(x, wx, sizeof wx) == 0);
  CHECK(memcmp(y, wy, sizeof wy) == 0);
  rt_data_free(&ds);
  CHECK(rt_data_load_text(tmp("t.txt"), 256, 4, &ds, msg, sizeof msg) == 0);
  CHECK(ds.n == 2 && ((int32_t *)ds.f[0].data)[2] == '\t' && ((int32_t *)ds.f[1].data)[3] == '\r');
  rt_data_free(&ds);
  char want[300];
  CHECK(rt_data_load_text(tmp("t.txt"), 96, 8, &ds, msg, sizeof msg) == -1);
  snprintf(want, sizeof want, "%s: 8 tokens, need at least 9 for one window of 8 and its targets", tmp("t.txt"));
  CHECK_STR(msg, want);
  CHECK(rt_data_load_text(tmp("t.txt"), 100, 8, &ds, msg, sizeof msg) == -1);
}

/* ---- splits ---- */

static void test_split(void) {
  double frac[3] = {0.6, 0.2, 0.2};
  rt_split a, b, c;
  CHECK(rt_split_make(1797, frac, 42, &a, msg, sizeof msg) == 0);
  CHECK(rt_split_make(1797, frac, 42, &b, msg, sizeof msg) == 0);
  CHECK(rt_split_make(1797, frac, 43, &c, msg, sizeof msg) == 0);
  CHECK(a.train.n == 1079 && a.val.n == 359 && a.test.n == 359);
  CHECK(memcmp(a.train.idx, b.train.idx, (size_t)a.train.n * 8) == 0);
  CHECK(memcmp(a.test.idx, b.test.idx, (size_t)a.test.n * 8) == 0);
  CHECK(memcmp(a.test.idx, c.test.idx, (size_t)a.test.n * 8) != 0);
  /* Disjoint and covering. */
  char *seen = calloc(1797, 1);
  int dup = 0;
  const rt_index *parts[3] = {&a.train, &a.val, &a.test};
  for (int p = 0; p < 3; p++)
    for (int64_t i = 0; i < parts[p]->n; i++) dup += seen[parts[p]->idx[i]]++ != 0;
  int missing = 0;
  for (int i = 0; i < 1797; i++) missing += !seen[i];
  CHECK(dup == 0 && missing == 0);
  free(seen);
  /* Epoch orders: permutations of train, reproducible, different per epoch. */
  int64_t *o1 = malloc((size_t)a.train.n * 8), *o1b = malloc((size_t)a.train.n * 8), *o2 = malloc((size_t)a.train.n * 8);
  rt_shuffle_epoch(&a.train, 42, 1, o1);
  rt_shuffle_epoch(&a.train, 42, 1, o1b);
  rt_shuffle_epoch(&a.train, 42, 2, o2);
  CHECK(memcmp(o1, o1b, (size_t)a.train.n * 8) == 0);
  CHECK(memcmp(o1, o2, (size_t)a.train.n * 8) != 0);
  CHECK(memcmp(o1, a.train.idx, (size_t)a.train.n * 8) != 0);
  int64_t s1 = 0, s0 = 0;
  for (int64_t i = 0; i < a.train.n; i++) s1 += o1[i], s0 += a.train.idx[i];
  CHECK(s1 == s0);
  free(o1), free(o1b), free(o2);
  rt_split_free(&a), rt_split_free(&b), rt_split_free(&c);

  /* Default fractions; partial sums; bad fractions. */
  double def[3] = {0.8, 0.1, 0.1}, part[3] = {0.5, 0.1, 0.1}, bad[3] = {0.8, 0.3, 0.1}, neg[3] = {1.1, -0.1, 0};
  CHECK(rt_split_make(10, def, 1, &a, msg, sizeof msg) == 0 && a.train.n == 8 && a.val.n == 1 && a.test.n == 1);
  rt_split_free(&a);
  CHECK(rt_split_make(100, part, 1, &a, msg, sizeof msg) == 0 && a.train.n == 50 && a.val.n == 10);
  rt_split_free(&a);
  CHECK(rt_split_make(10, bad, 1, &a, msg, sizeof msg) == -1);
  CHECK_STR(msg, "split fractions 0.8, 0.3, 0.1 add up to more than 1");
  CHECK(rt_split_make(10, neg, 1, &a, msg, sizeof msg) == -1);
  CHECK_STR(msg, "split fraction 1.1 must be between 0 and 1");
  CHECK(rt_split_make(3, def, 1, &a, msg, sizeof msg) == -1);
  CHECK_STR(msg, "3 examples leave the val split (fraction 0.1) empty");
}

/* ---- normalisation and batches ---- */

/* A data set of 10 rows x 2 features: x[i] = (i, 5); rows 8 and 9 huge. */
static void make_small(rt_dataset *ds) {
  memset(ds, 0, sizeof *ds);
  float *x = malloc(20 * sizeof *x);
  int32_t *y = malloc(10 * sizeof *y);
  for (int i = 0; i < 10; i++) x[2 * i] = i < 8 ? (float)i : 1000.0f, x[2 * i + 1] = 5, y[i] = i % 2;
  ds->n = 10, ds->nfields = 2, ds->nclasses = 2;
  ds->f[0] = (rt_field){"", RT_FIELD_INPUT, LATHE_F32, 2, 1, {2}, x};
  ds->f[1] = (rt_field){"", RT_FIELD_TARGET, LATHE_I32, 1, 0, {0}, y};
  snprintf(ds->source, sizeof ds->source, "small");
}

static void test_norm_and_batches(void) {
  rt_dataset ds;
  make_small(&ds);
  int64_t tr[8] = {0, 1, 2, 3, 4, 5, 6, 7};
  rt_index train = {tr, 8};
  rt_norm nm;
  rt_norm_kind k;
  CHECK(rt_norm_parse("standard", &k, msg, sizeof msg) == 0 && k == RT_NORM_STANDARD);
  CHECK(rt_norm_parse("zscore", &k, msg, sizeof msg) == -1);
  CHECK_STR(msg, "unknown normalisation 'zscore' (expected standard, minmax or none)");
  /* Statistics from the 8 train rows only: mean 3.5, population std sqrt(5.25);
   * the constant column keeps scale 1. */
  CHECK(rt_norm_fit(&nm, RT_NORM_STANDARD, &ds, 0, &train, msg, sizeof msg) == 0);
  CHECK_NEAR(nm.shift[0], 3.5, 1e-7);
  CHECK_NEAR(nm.scale[0], 1 / sqrt(5.25), 1e-6);
  CHECK(nm.shift[1] == 5 && nm.scale[1] == 1);
  float out[4 * 2];
  lathe_tensor dst = {LATHE_F32, 4, {4, 1, 1, 2}, out};
  int64_t rows[3] = {7, 0, 9};
  CHECK(rt_batch_fill(&ds, 0, rows, 3, &dst, &nm, msg, sizeof msg) == 3);
  CHECK_NEAR(out[0], 3.5 / sqrt(5.25), 1e-6);
  CHECK_NEAR(out[2], -3.5 / sqrt(5.25), 1e-6);
  CHECK_NEAR(out[4], (1000 - 3.5) / sqrt(5.25), 1e-5);
  CHECK(out[6] == out[0] && out[7] == out[1]); /* padded with the first row */
  rt_norm_free(&nm);
  CHECK(rt_norm_fit(&nm, RT_NORM_MINMAX, &ds, 0, &train, msg, sizeof msg) == 0);
  CHECK(nm.shift[0] == 0 && nm.scale[0] == 1.0f / 7);
  rt_norm_free(&nm);
  /* Targets converted to the model's dtype. */
  float yf[4];
  lathe_tensor ydst = {LATHE_F32, 1, {4}, yf};
  CHECK(rt_batch_fill(&ds, 1, rows, 3, &ydst, NULL, msg, sizeof msg) == 3);
  CHECK(yf[0] == 1 && yf[1] == 0 && yf[2] == 1 && yf[3] == 1);
  /* Shape mismatch and bad counts. */
  lathe_tensor wrong = {LATHE_F32, 2, {2, 3}, out};
  CHECK(rt_batch_fill(&ds, 0, rows, 2, &wrong, NULL, msg, sizeof msg) == -1);
  CHECK_STR(msg, "small: an example of 'the input' has 2 values, which do not fill an input of 3 values per batch row");
  CHECK(rt_batch_fill(&ds, 0, rows, 5, &dst, NULL, msg, sizeof msg) == -1);
  CHECK_STR(msg, "batch of 5 examples for a batch size of 4");
  int64_t oob = 10;
  CHECK(rt_batch_fill(&ds, 0, &oob, 1, &dst, NULL, msg, sizeof msg) == -1);
  CHECK_STR(msg, "example 10 out of range [0, 10)");
  CHECK(rt_batch_count(10, 4, 1) == 2 && rt_batch_count(10, 4, 0) == 3 && rt_batch_count(8, 4, 0) == 2);
  CHECK(rt_batch_count(3, 4, 1) == 0 && rt_batch_count(0, 4, 0) == 0);
  rt_data_free(&ds);
}

/* Standardising digits with its train split: train columns come out with
 * mean 0 and std 1 (or stay constant); the split is rebuilt identically. */
static void test_digits_pipeline(void) {
  if (access(DIGITS, R_OK) != 0) return;
  rt_dataset ds;
  CHECK(rt_data_load_csv(DIGITS, -1, &ds, msg, sizeof msg) == 0);
  double frac[3] = {0.6, 0.2, 0.2};
  rt_split sp;
  CHECK(rt_split_make(ds.n, frac, 7, &sp, msg, sizeof msg) == 0);
  rt_norm nm;
  CHECK(rt_norm_fit(&nm, RT_NORM_STANDARD, &ds, 0, &sp.train, msg, sizeof msg) == 0);
  float *x = malloc((size_t)sp.train.n * 64 * sizeof *x);
  lathe_tensor dst = {LATHE_F32, 2, {sp.train.n, 64}, x};
  CHECK(rt_batch_fill(&ds, 0, sp.train.idx, sp.train.n, &dst, &nm, msg, sizeof msg) == sp.train.n);
  int bad = 0;
  for (int j = 0; j < 64; j++) {
    double m = 0, v = 0;
    for (int64_t i = 0; i < sp.train.n; i++) m += x[i * 64 + j];
    m /= (double)sp.train.n;
    for (int64_t i = 0; i < sp.train.n; i++) v += (x[i * 64 + j] - m) * (x[i * 64 + j] - m);
    v /= (double)sp.train.n;
    bad += fabs(m) > 1e-5 || (v > 0 && fabs(v - 1) > 1e-4);
  }
  CHECK(bad == 0);
  free(x);
  rt_norm_free(&nm);
  rt_split_free(&sp);
  rt_data_free(&ds);
}

int main(void) {
  if (!scratch_open("data")) return 1;
  test_csv_digits();
  test_csv_header_and_target();
  test_csv_errors();
  test_npy();
  test_idx();
  test_text();
  test_split();
  test_norm_and_batches();
  test_digits_pipeline();
  scratch_close();
  return TEST_REPORT();
}
