/* test.h -- a tiny assertion harness. Each test program calls its cases and
 * ends with TEST_REPORT(), which prints "N passed, N failed" and returns the
 * exit status. */
#ifndef LATHE_TEST_H
#define LATHE_TEST_H
#include <math.h>
#include <stdio.h>
#include <string.h>

static int test_pass_, test_fail_;

#define CHECK(cond) do { \
  if (cond) test_pass_++; \
  else { test_fail_++; fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); } \
} while (0)

#define CHECK_MSG(cond, ...) do { \
  if (cond) test_pass_++; \
  else { test_fail_++; fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
         fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } \
} while (0)

#define CHECK_STR(a, b) do { \
  const char *a_ = (a), *b_ = (b); \
  if (a_ && b_ && strcmp(a_, b_) == 0) test_pass_++; \
  else { test_fail_++; fprintf(stderr, "%s:%d: strings differ:\n  got:  %s\n  want: %s\n", \
                               __FILE__, __LINE__, a_ ? a_ : "(null)", b_ ? b_ : "(null)"); } \
} while (0)

#define CHECK_NEAR(a, b, tol) do { \
  double a_ = (a), b_ = (b); \
  if (fabs(a_ - b_) <= (tol) * (1.0 + fabs(b_))) test_pass_++; \
  else { test_fail_++; fprintf(stderr, "%s:%d: %s = %.9g, want %.9g (tol %g)\n", \
                               __FILE__, __LINE__, #a, a_, b_, (double)(tol)); } \
} while (0)

#define TEST_REPORT() ( printf("%d passed, %d failed\n", test_pass_, test_fail_), test_fail_ != 0 )

#endif
