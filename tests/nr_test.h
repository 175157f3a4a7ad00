/* nr_test.h: the assertions of netrun's C tests.
 *
 * A test file is one executable; main() calls NR_RUN(test_fn) for each case. A failed
 * check prints file:line, the expression and both values, marks the case failed and
 * returns from it. The exit code is the number of failed cases (capped at 100), so
 * ctest sees any failure. Cases that can crash or hang belong in their own executable
 * (ctest runs each with a timeout).
 */
#ifndef NR_TEST_H
#define NR_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int nr_test_failed_cases;
static int nr_test_case_failed;

#define NR_FAIL_(...)                                     \
  do {                                                    \
    fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);       \
    fprintf(stderr, __VA_ARGS__);                         \
    fputc('\n', stderr);                                  \
    nr_test_case_failed = 1;                              \
    return;                                               \
  } while (0)

#define CHECK(cond) \
  do { if (!(cond)) NR_FAIL_("CHECK(%s) failed", #cond); } while (0)
#define CHECK_INT_EQ(a, b)                                                        \
  do { long long a_ = (long long)(a), b_ = (long long)(b);                        \
    if (a_ != b_) NR_FAIL_("CHECK_INT_EQ(%s, %s): %lld != %lld", #a, #b, a_, b_); \
  } while (0)
#define CHECK_NEAR(a, b, tol)                                                           \
  do { double a_ = (double)(a), b_ = (double)(b), t_ = (double)(tol);                   \
    if (!(fabs(a_ - b_) <= t_))                                                         \
      NR_FAIL_("CHECK_NEAR(%s, %s, %s): %.9g vs %.9g (diff %.3g)", #a, #b, #tol, a_, b_, \
               fabs(a_ - b_));                                                          \
  } while (0)
#define CHECK_STR_EQ(a, b)                                                          \
  do { const char *a_ = (a), *b_ = (b);                                             \
    if (!a_ || !b_ || strcmp(a_, b_) != 0)                                          \
      NR_FAIL_("CHECK_STR_EQ(%s, %s): \"%s\" != \"%s\"", #a, #b, a_ ? a_ : "(null)", \
               b_ ? b_ : "(null)");                                                 \
  } while (0)
#define CHECK_CONTAINS(hay, needle)                                                  \
  do { const char *h_ = (hay), *n_ = (needle);                                       \
    if (!h_ || !strstr(h_, n_))                                                      \
      NR_FAIL_("CHECK_CONTAINS(%s, %s): \"%s\" does not contain \"%s\"", #hay, #needle, \
               h_ ? h_ : "(null)", n_);                                              \
  } while (0)
/* Checks a call returned NR_OK; prints the error message otherwise. */
#define CHECK_OK(call, errp)                                                         \
  do { nr_status s_ = (call);                                                        \
    if (s_ != NR_OK) NR_FAIL_("%s returned %d: %s", #call, (int)s_, (errp)->msg);    \
  } while (0)

#define NR_RUN(fn)                                             \
  do {                                                         \
    nr_test_case_failed = 0;                                   \
    fn();                                                      \
    fprintf(stderr, "%s %s\n", nr_test_case_failed ? "FAIL" : "ok  ", #fn); \
    nr_test_failed_cases += nr_test_case_failed;               \
  } while (0)

#define NR_TEST_EXIT() (nr_test_failed_cases > 100 ? 100 : nr_test_failed_cases)

#endif
