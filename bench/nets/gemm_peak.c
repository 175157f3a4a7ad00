/* gemm_peak: GFLOP/s of nr_gemm on 2048 x 2048 x 2048 single-precision products, run for
 * about a second after one warm-up product, on the threads OPENBLAS_NUM_THREADS allows (as
 * netrun's layers). Prints one number. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "nr_math.h"

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(void) {
  const int64_t n = 2048;
  float *a = malloc((size_t)(n * n) * sizeof *a), *b = malloc((size_t)(n * n) * sizeof *b);
  float *c = malloc((size_t)(n * n) * sizeof *c);
  if (!a || !b || !c) {
    fprintf(stderr, "gemm_peak: out of memory\n");
    return 1;
  }
  for (int64_t i = 0; i < n * n; i++) a[i] = b[i] = (float)(i % 17) / 17.0f;
  nr_gemm(false, false, n, n, n, 1.0f, a, b, 0.0f, c);
  int reps = 0;
  const double t0 = now_s();
  double t = t0;
  while (t - t0 < 1.0) {
    nr_gemm(false, false, n, n, n, 1.0f, a, b, 0.0f, c);
    reps++;
    t = now_s();
  }
  printf("%.1f\n", 2.0 * (double)(n * n * n) * reps / (t - t0) / 1e9);
  free(a), free(b), free(c);
  return 0;
}
