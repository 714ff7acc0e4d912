/* test_metrics.c -- metrics against scikit-learn 1.2 on fixed arrays. The
 * expected values were computed once with Debian's python3-sklearn (and
 * torch for bce) and are pinned here; the script is in the comments. */
#include <math.h>
#include <stdlib.h>

#include "data.h"
#include "test.h"

#define NA(a) ((int64_t)(sizeof(a) / sizeof *(a)))

/* y=[0,1,2,2,1,0,3,3,1,2,0,1]; p=[0,2,2,2,1,0,3,1,1,0,0,4]
 * accuracy_score(y,p); precision/recall/f1_score(y,p,average='macro',zero_division=0) */
static void test_classification_arrays(void) {
  int32_t y[] = {0, 1, 2, 2, 1, 0, 3, 3, 1, 2, 0, 1}, p[] = {0, 2, 2, 2, 1, 0, 3, 1, 1, 0, 0, 4};
  CHECK_NEAR(rt_metric_accuracy(y, p, NA(y)), 0.66666666666666663, 1e-15);
  double pr, rc, f1;
  rt_metric_macro_prf(y, p, NA(y), &pr, &rc, &f1);
  CHECK_NEAR(pr, 0.61666666666666659, 1e-15);
  CHECK_NEAR(rc, 0.53333333333333333, 1e-15);
  CHECK_NEAR(f1, 0.55238095238095242, 1e-15);
}

/* roc_auc_score([0,0,1,1,0,1,1,0,1,0], [.1,.4,.35,.8,.4,.35,.9,.2,.4,.1]) -- ties across classes */
static void test_roc_auc(void) {
  int32_t y[] = {0, 0, 1, 1, 0, 1, 1, 0, 1, 0};
  double s[] = {0.1, 0.4, 0.35, 0.8, 0.4, 0.35, 0.9, 0.2, 0.4, 0.1};
  CHECK_NEAR(rt_metric_roc_auc(y, s, NA(y)), 0.80000000000000004, 1e-15);
  int32_t one[] = {1, 1, 1};
  CHECK(isnan(rt_metric_roc_auc(one, s, 3)));    /* undefined with one class */
  double all_tied[] = {0.5, 0.5, 0.5, 0.5};
  int32_t y4[] = {0, 1, 0, 1};
  CHECK_NEAR(rt_metric_roc_auc(y4, all_tied, 4), 0.5, 1e-15);
}

/* y=[3,-0.5,2,7,4.2]; p=[2.5,0,2,8,3.9]: mean_squared_error, mean_absolute_error, r2_score */
static void test_regression_arrays(void) {
  double y[] = {3, -0.5, 2, 7, 4.2}, p[] = {2.5, 0.0, 2, 8, 3.9};
  CHECK_NEAR(rt_metric_mse(y, p, 5), 0.318, 1e-14);
  CHECK_NEAR(rt_metric_mae(y, p, 5), 0.46000000000000008, 1e-14);
  CHECK_NEAR(rt_metric_r2(y, p, 5), 0.9480256276150627, 1e-14);
  double c[] = {1, 1, 1}, c2[] = {1, 2, 1};
  CHECK_NEAR(rt_metric_r2(c, c, 3), 1.0, 0);      /* r2_score([1,1,1],[1,1,1]) */
  CHECK_NEAR(rt_metric_r2(c, c2, 3), 0.0, 0);     /* r2_score([1,1,1],[1,2,1]) */
}

/* Logits L (5x3), labels [0,1,1,2,0]: log_loss(lab, softmax(L)), then the
 * class metrics of argmax(L). Fed in two batches. */
static void test_accumulator_ce(void) {
  float L[] = {2.0f, 1.0f, 0.1f, 0.5f, 2.5f, 0.3f, 1.2f, 0.2f, 3.1f, 0, 0, 0, 3.0f, -1.0f, 0.5f};
  int32_t lab[] = {0, 1, 1, 2, 0};
  char msg[256];
  rt_metrics *m = rt_metrics_new(RT_LOSS_CROSS_ENTROPY, 3, 0);
  CHECK(rt_metrics_add_class(m, L, lab, 2, msg, sizeof msg) == 0);
  CHECK(rt_metrics_add_class(m, L + 6, lab + 2, 3, msg, sizeof msg) == 0);
  rt_metric r[RT_MAX_METRICS];
  int n = rt_metrics_result(m, r);
  CHECK(n == 5);
  CHECK_STR(r[0].name, "loss");
  CHECK_NEAR(rt_metric_find(r, n, "loss"), 0.98350135054720711, 1e-6);
  CHECK_NEAR(rt_metric_find(r, n, "accuracy"), 0.59999999999999998, 1e-15);
  CHECK_NEAR(rt_metric_find(r, n, "precision"), 0.55555555555555547, 1e-15);
  CHECK_NEAR(rt_metric_find(r, n, "recall"), 0.5, 1e-15);
  CHECK_NEAR(rt_metric_find(r, n, "f1"), 0.48888888888888893, 1e-15);
  CHECK(isnan(rt_metric_find(r, n, "roc_auc")));  /* not reported for 3 classes */
  int32_t bad = 3;
  CHECK(rt_metrics_add_class(m, L, &bad, 1, msg, sizeof msg) == -1);
  CHECK_STR(msg, "label 3 outside [0, 3)");
  rt_metrics_free(m);

  /* The same logits as a language model: loss and perplexity only. */
  m = rt_metrics_new(RT_LOSS_CROSS_ENTROPY, 3, 1);
  CHECK(rt_metrics_add_class(m, L, lab, 5, msg, sizeof msg) == 0);
  n = rt_metrics_result(m, r);
  CHECK(n == 2);
  CHECK_STR(r[1].name, "perplexity");
  CHECK_NEAR(r[1].value, exp(0.98350135054720711), 1e-6);
  rt_metrics_free(m);
}

/* Two classes: log_loss, roc_auc_score(lab, softmax(L)[:,1]), accuracy. */
static void test_accumulator_binary_ce(void) {
  float L[] = {0.1f, 0.9f, 1.0f, -1.0f, 0.3f, 0.3f, 2.0f, 2.5f, -1, 1, 0.5f, 0.0f};
  int32_t lab[] = {1, 0, 1, 0, 1, 0};
  char msg[256];
  rt_metrics *m = rt_metrics_new(RT_LOSS_CROSS_ENTROPY, 2, 0);
  CHECK(rt_metrics_add_class(m, L, lab, 6, msg, sizeof msg) == 0);
  rt_metric r[RT_MAX_METRICS];
  int n = rt_metrics_result(m, r);
  CHECK(n == 6);
  CHECK_NEAR(rt_metric_find(r, n, "loss"), 0.46104295805969508, 1e-6);
  CHECK_NEAR(rt_metric_find(r, n, "roc_auc"), 0.88888888888888895, 1e-12);
  CHECK_NEAR(rt_metric_find(r, n, "accuracy"), 0.66666666666666663, 1e-15);
  rt_metrics_free(m);
}

/* bce: torch binary_cross_entropy_with_logits, roc_auc_score(t, z),
 * accuracy_score(t, z > 0). */
static void test_accumulator_bce(void) {
  float z[] = {0.5f, -1.2f, 2.0f, -0.3f, 0.0f, 1.5f}, t[] = {1, 0, 1, 1, 0, 0};
  char msg[256];
  rt_metrics *m = rt_metrics_new(RT_LOSS_BCE, 1, 0);
  CHECK(rt_metrics_add_value(m, z, t, 6, msg, sizeof msg) == 0);
  rt_metric r[RT_MAX_METRICS];
  int n = rt_metrics_result(m, r);
  CHECK(n == 6); /* loss, accuracy, precision, recall, f1, roc_auc */
  CHECK_NEAR(rt_metric_find(r, n, "loss"), 0.68553386023043761, 1e-7);
  CHECK_NEAR(rt_metric_find(r, n, "roc_auc"), 0.66666666666666674, 1e-12);
  CHECK_NEAR(rt_metric_find(r, n, "accuracy"), 0.66666666666666663, 1e-15);
  rt_metrics_free(m);
}

/* Two outputs: mean_squared_error, mean_absolute_error, r2_score (uniform_average). */
static void test_accumulator_mse(void) {
  float y[] = {1, 2, 3, 4, 5, -1, 0, 0.5f}, p[] = {1.5f, 2, 2, 4.5f, 5, 0, 0.25f, 0.5f};
  char msg[256];
  rt_metrics *m = rt_metrics_new(RT_LOSS_MSE, 2, 0);
  CHECK(rt_metrics_add_value(m, p, y, 3, msg, sizeof msg) == 0);
  CHECK(rt_metrics_add_value(m, p + 6, y + 6, 1, msg, sizeof msg) == 0);
  rt_metric r[RT_MAX_METRICS];
  int n = rt_metrics_result(m, r);
  CHECK(n == 4);
  CHECK_NEAR(rt_metric_find(r, n, "mse"), 0.3203125, 1e-14);
  CHECK_NEAR(rt_metric_find(r, n, "loss"), 0.3203125, 1e-14);
  CHECK_NEAR(rt_metric_find(r, n, "mae"), 0.40625, 1e-14);
  CHECK_NEAR(rt_metric_find(r, n, "r2"), 0.90984637411965019, 1e-12);
  rt_metrics_free(m);
}

static void test_primary(void) {
  int hi;
  CHECK_STR(rt_metric_primary(RT_LOSS_CROSS_ENTROPY, 0, &hi), "accuracy");
  CHECK(hi == 1);
  CHECK_STR(rt_metric_primary(RT_LOSS_MSE, 0, &hi), "mse");
  CHECK(hi == 0);
  CHECK_STR(rt_metric_primary(RT_LOSS_CROSS_ENTROPY, 1, &hi), "perplexity");
  CHECK(hi == 0);
  rt_metrics *m = rt_metrics_new(RT_LOSS_MSE, 1, 0);
  rt_metric r[RT_MAX_METRICS];
  CHECK(rt_metrics_result(m, r) == 0);  /* nothing seen, nothing reported */
  rt_metrics_free(m);
}

int main(void) {
  test_classification_arrays();
  test_roc_auc();
  test_regression_arrays();
  test_accumulator_ce();
  test_accumulator_binary_ce();
  test_accumulator_bce();
  test_accumulator_mse();
  test_primary();
  return TEST_REPORT();
}
