/* test_models_hostile.c -- the library side of issue 12's "models" item:
 * bce's binary precision/recall/F1 against scikit-learn 1.2 (values pinned,
 * the Python in the comments), the recognised term of a composite loss, and
 * an output that reads a target not given (an error, not zeros). The command
 * line side is tests/models_hostile.sh. */
#include <stdlib.h>
#include <string.h>

#include "data.h"
#include "lathe.h"
#include "runtime/program.h"
#include "runtime/train.h"
#include "test.h"

/* y=[1,0,1,1,0,0,1,0,1,1,1,0]; p=[1,1,0,1,0,0,1,1,0,1,0,0]
 * precision_score(y,p), recall_score(y,p), f1_score(y,p) */
static void test_binary_prf(void) {
  int32_t y[] = {1, 0, 1, 1, 0, 0, 1, 0, 1, 1, 1, 0}, p[] = {1, 1, 0, 1, 0, 0, 1, 1, 0, 1, 0, 0};
  double pr, rc, f1;
  rt_metric_binary_prf(y, p, 12, &pr, &rc, &f1);
  CHECK_NEAR(pr, 0.6666666666666666, 1e-15);
  CHECK_NEAR(rc, 0.5714285714285714, 1e-15);
  CHECK_NEAR(f1, 0.6153846153846153, 1e-15);
  /* nothing predicted positive: sklearn's zero_division=0 gives 0, 0, 0 */
  int32_t y2[] = {1, 1, 0}, p2[] = {0, 0, 0};
  rt_metric_binary_prf(y2, p2, 3, &pr, &rc, &f1);
  CHECK(pr == 0 && rc == 0 && f1 == 0);
}

/* The bce accumulator reports them too. z, t below:
 * precision/recall/f1_score(t, z > 0), accuracy_score(t, z > 0),
 * roc_auc_score(t, z), log_loss(t, 1 / (1 + exp(-z))) */
static void test_bce_accumulator(void) {
  float z[] = {0.5f, -1.2f, 2.0f, -0.3f, 0.0f, 1.5f, 0.7f, -0.1f}, t[] = {1, 0, 1, 1, 0, 0, 1, 1};
  char msg[256];
  rt_metrics *m = rt_metrics_new(RT_LOSS_BCE, 1, 0);
  CHECK(m && rt_metrics_add_value(m, z, t, 5, msg, sizeof msg) == 0);
  CHECK(m && rt_metrics_add_value(m, z + 5, t + 5, 3, msg, sizeof msg) == 0);
  rt_metric r[RT_MAX_METRICS];
  int n = m ? rt_metrics_result(m, r) : 0;
  CHECK(n == 6);
  CHECK_NEAR(rt_metric_find(r, n, "precision"), 0.75, 1e-15);
  CHECK_NEAR(rt_metric_find(r, n, "recall"), 0.6, 1e-15);
  CHECK_NEAR(rt_metric_find(r, n, "f1"), 0.6666666666666665, 1e-15);
  CHECK_NEAR(rt_metric_find(r, n, "accuracy"), 0.625, 1e-15);
  CHECK_NEAR(rt_metric_find(r, n, "roc_auc"), 0.6000000000000001, 1e-15);
  CHECK_NEAR(rt_metric_find(r, n, "loss"), 0.6575982343849306, 1e-7);
  rt_metrics_free(m);
}

static lathe_program *compile(const char *src, lathe_error *err) {
  lathe_model *m = lathe_model_parse("t.nn", src, strlen(src), err);
  if (!m) return NULL;
  lathe_options o = {.backend = LATHE_BACKEND_INTERP, .default_dim = 2};
  lathe_program *p = lathe_compile(m, &o, err);
  lathe_model_free(m);
  return p;
}

#define HEAD "input x : f32[batch, 3]\ntarget y : f32[batch, 1]\np = dense(x, 1, name=\"fc\")\noutput pred = p\n"

/* A composite loss: the term found is the mse, its prediction the dense. */
static void test_loss_term(void) {
  static const struct { const char *loss; int op; const char *msg; } cases[] = {
    {"loss = mse(p, y)\n", IR_MSE, NULL},
    {"loss = mse(p, y) + 0.01 * mean(p * p)\n", IR_MSE, NULL},
    {"loss = 0.5 * bce(p, y) + sum(abs(p))\n", IR_BCE, NULL},
    /* several terms: bce before the regression ones, then the first in the source */
    {"loss = mse(p, y) + mse(p, 2 * y)\n", IR_MSE, NULL},
    {"loss = mse(p, y) + 0.1 * bce(p, y)\n", IR_BCE, NULL},
    {"loss = mean((p - y) * (p - y))\n", -1,
     "the loss must be, or contain, a cross_entropy, nll, mse, bce, l1_loss or huber term to train and evaluate"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char src[512];
    snprintf(src, sizeof src, HEAD "%s", cases[i].loss);
    lathe_error err = {0};
    lathe_program *p = compile(src, &err);
    CHECK_MSG(p != NULL, "%s: %s", cases[i].loss, err.message ? err.message : "");
    lathe_error_clear(&err);
    if (!p) continue;
    rt_loss_kind kind;
    char msg[160] = "";
    int term = tr_loss_term(&p->g, &kind, msg, sizeof msg);
    if (cases[i].msg) {
      CHECK(term < 0);
      CHECK_STR(msg, cases[i].msg);
    } else {
      CHECK_MSG(term >= 0 && (int)p->g.nodes[term].op == cases[i].op, "%s: %s", cases[i].loss, msg);
      /* the first of two mse terms is the one reading y itself */
      if (term >= 0 && strstr(cases[i].loss, "2 * y"))
        CHECK(p->g.nodes[p->g.nodes[term].in[1]].op == IR_INPUT);
      CHECK(term >= 0 && kind == (cases[i].op == IR_MSE ? RT_LOSS_MSE : RT_LOSS_BCE));
    }
    lathe_program_free(p);
  }
}

/* A forward run without the target: outputs that read it are refused by
 * name, the others come back. Both backends. */
static void test_output_reads_missing_target(void) {
  for (int llvm = 0; llvm < 2; llvm++) {
    lathe_error err = {0};
    lathe_model *m = lathe_model_parse("t.nn", HEAD "output resid = p - y\nloss = mse(p, y)\n",
                                       strlen(HEAD "output resid = p - y\nloss = mse(p, y)\n"), &err);
    CHECK(m != NULL);
    if (!m) return;
    lathe_options o = {.backend = llvm ? LATHE_BACKEND_LLVM : LATHE_BACKEND_INTERP, .default_dim = 2};
    lathe_program *p = lathe_compile(m, &o, &err);
    lathe_model_free(m);
    CHECK_MSG(p != NULL, "%s", err.message ? err.message : "");
    if (!p) { lathe_error_clear(&err); continue; }
    float xv[6] = {1, 2, 3, 4, 5, 6}, yv[2] = {10, 20};
    lathe_tensor x = {.dtype = LATHE_F32, .rank = 2, .shape = {2, 3}, .data = xv};
    CHECK(lathe_weights_init(p, 1, &err) == 0);
    CHECK(lathe_set_input(p, "x", &x, &err) == 0);
    CHECK(lathe_run(p, &err) == 0);
    lathe_tensor out = {0};
    CHECK(lathe_get_output(p, "pred", &out, &err) == 0);
    lathe_tensor_free(&out);
    CHECK(lathe_get_output(p, "resid", &out, &err) == LATHE_EUSER);
    CHECK_STR(err.message, "output 'resid' reads target 'y', which was not given (use --in y=FILE.npy)");
    lathe_error_clear(&err);
    /* given the target, the same output is p - y */
    lathe_tensor y = {.dtype = LATHE_F32, .rank = 2, .shape = {2, 1}, .data = yv};
    lathe_tensor pr = {0};
    CHECK(lathe_set_input(p, "y", &y, &err) == 0 && lathe_run(p, &err) == 0);
    CHECK(lathe_get_output(p, "pred", &pr, &err) == 0 && lathe_get_output(p, "resid", &out, &err) == 0);
    if (pr.data && out.data)
      CHECK_NEAR(((float *)out.data)[1], ((float *)pr.data)[1] - 20, 1e-6);
    lathe_tensor_free(&out);
    lathe_tensor_free(&pr);
    lathe_error_clear(&err);
    lathe_program_free(p);
  }
}

int main(void) {
  test_binary_prf();
  test_bce_accumulator();
  test_loss_term();
  test_output_reads_missing_target();
  return TEST_REPORT();
}
