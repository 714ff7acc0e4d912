/* test_feedback.c -- the progress line (runtime/progress.c): the rate limit,
 * the terminal and plain forms, the learning rate on every line, and the
 * line that closes an epoch carrying that epoch's own validation score
 * (drawn after validation, never the previous epoch's). tests/feedback.sh
 * checks the same through `lathe train`. */
#include <stdlib.h>
#include <string.h>

#include "data.h"
#include "test.h"

static double fake_now;
static double fake_clock(void *ctx) {
  (void)ctx;
  return fake_now;
}

static char *slurp(FILE *f) {
  long n = ftell(f);
  rewind(f);
  char *s = calloc((size_t)n + 1, 1);
  if (fread(s, 1, (size_t)n, f) != (size_t)n) s[0] = 0;
  return s;
}

static int count(const char *s, const char *what) {
  int n = 0;
  for (const char *p = s; (p = strstr(p, what)); p += strlen(what)) n++;
  return n;
}

/* Plain lines: at most one a second, and each epoch's closing line with its
 * own validation score. */
static void test_plain(void) {
  FILE *f = tmpfile();
  fake_now = 0;
  rt_progress *p = rt_progress_new(f, 0, 2, 10, 64);
  rt_progress_set_clock(p, fake_clock, NULL);
  const double val[2] = {0.5, 0.9611};
  for (int e = 1; e <= 2; e++) {
    for (int s = 1; s <= 10; s++) {
      fake_now += 0.3;
      rt_progress_step(p, e, s, 1.0 / (e * s), 0.001 * e);
    }
    rt_progress_epoch(p, "accuracy", val[e - 1]);
  }
  fake_now += 0.3;
  rt_progress_note(p, "done");
  rt_progress_free(p);
  char *s = slurp(f);
  fclose(f);
  /* steps at t=0.3 (first), 1.5, 2.7, 3.0 (epoch 1 closes), 4.2, 5.4, 6.0 (epoch 2 closes) */
  CHECK(count(s, "\n") == 8);
  const char *first = "epoch 1/2  step 1/10  loss 1.0000  lr 0.001  213 samples/s  ETA 0:06\n";
  CHECK(strncmp(s, first, strlen(first)) == 0);
  CHECK(strstr(s, "epoch 1/2  step 10/10  loss 0.1000  lr 0.001  val accuracy 0.5000  213 samples/s  ETA 0:03\n"));
  CHECK(strstr(s, "epoch 2/2  step 4/10  loss 0.1250  lr 0.002  213 samples/s  ETA 0:02\n"));
  CHECK(strstr(s, "epoch 2/2  step 10/10  loss 0.0500  lr 0.002  val accuracy 0.9611  213 samples/s  ETA 0:00\n"
                  "done\n"));
  CHECK(count(s, "val accuracy") == 2); /* only the closing lines, each with its own epoch's score */
  CHECK(count(s, "step 10/10") == 2);   /* the last step is drawn once, after validation */
  CHECK(strchr(s, '\r') == NULL);
  free(s);
}

/* Terminal: redrawn in place; the closing line stays (ends with a newline)
 * and the next epoch's live line starts without the old score. */
static void test_tty(void) {
  FILE *f = tmpfile();
  fake_now = 100;
  rt_progress *p = rt_progress_new(f, 1, 2, 2, 10);
  rt_progress_set_clock(p, fake_clock, NULL);
  for (int e = 1; e <= 2; e++) {
    for (int i = 1; i <= 2; i++) {
      fake_now += 0.5;
      rt_progress_step(p, e, i, 0.25, 3e-4);
    }
    rt_progress_epoch(p, "loss", 0.125 * e);
  }
  rt_progress_free(p);
  char *s = slurp(f);
  fclose(f);
  CHECK_STR(s, "\r\033[Kepoch 1/2  step 1/2  loss 0.2500  lr 0.0003  20 samples/s  ETA 0:02"
               "\r\033[Kepoch 1/2  step 2/2  loss 0.2500  lr 0.0003  val loss 0.1250  20 samples/s  ETA 0:01\n"
               "\r\033[Kepoch 2/2  step 1/2  loss 0.2500  lr 0.0003  20 samples/s  ETA 0:01"
               "\r\033[Kepoch 2/2  step 2/2  loss 0.2500  lr 0.0003  val loss 0.2500  20 samples/s  ETA 0:00\n");
  free(s);
}

/* No validation split: the epoch still closes with its last step; a note
 * clears a live line first. */
static void test_no_val(void) {
  FILE *f = tmpfile();
  fake_now = 0;
  rt_progress *p = rt_progress_new(f, 1, 1, 3, 4);
  rt_progress_set_clock(p, fake_clock, NULL);
  fake_now = 1;
  rt_progress_step(p, 1, 1, 2.0, 0.01);
  rt_progress_note(p, "note");
  fake_now = 2;
  rt_progress_step(p, 1, 2, 1.5, 0.01);
  fake_now = 3;
  rt_progress_step(p, 1, 3, 1.0, 0.005);
  rt_progress_epoch(p, NULL, 0);
  rt_progress_epoch(NULL, NULL, 0); /* no progress output: nothing to do */
  rt_progress_free(p);
  char *s = slurp(f);
  fclose(f);
  CHECK_STR(s, "\r\033[Kepoch 1/1  step 1/3  loss 2.0000  lr 0.01  4 samples/s  ETA 0:02"
               "\r\033[Knote\n"
               "\r\033[Kepoch 1/1  step 2/3  loss 1.5000  lr 0.01  4 samples/s  ETA 0:01"
               "\r\033[Kepoch 1/1  step 3/3  loss 1.0000  lr 0.005  4 samples/s  ETA 0:00\n");
  free(s);
}

int main(void) {
  test_plain();
  test_tty();
  test_no_val();
  return TEST_REPORT();
}
