#define _GNU_SOURCE /* sincos */
#include "rng.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

void nr_rng_seed(nr_rng *r, uint64_t seed) {
  for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t nr_rng_next(nr_rng *r) {
  uint64_t *s = r->s;
  uint64_t result = rotl(s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

double nr_rng_uniform(nr_rng *r) { return (double)(nr_rng_next(r) >> 11) * 0x1.0p-53; }

float nr_rng_uniform_range(nr_rng *r, float a, float b) {
  return a + (b - a) * (float)nr_rng_uniform(r);
}

float nr_rng_gaussian(nr_rng *r, float mean, float std) {
  double u1 = nr_rng_uniform(r), u2 = nr_rng_uniform(r);
  if (u1 < 1e-300) u1 = 1e-300;
  double z = sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
  return mean + std * (float)z;
}

void nr_rng_gaussian_fill(nr_rng *r, int64_t n, float mean, float std, float *out) {
  /* Box-Muller gives two independent normals per pair of uniforms: R cos t and R sin t. */
  int64_t i = 0;
  for (; i + 1 < n; i += 2) {
    double u1 = nr_rng_uniform(r), u2 = nr_rng_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    double rad = sqrt(-2.0 * log(u1)), s, c;
    sincos(2.0 * M_PI * u2, &s, &c);
    out[i] = mean + std * (float)(rad * c);
    out[i + 1] = mean + std * (float)(rad * s);
  }
  if (i < n) out[i] = nr_rng_gaussian(r, mean, std);
}

int nr_rng_bernoulli(nr_rng *r, double p) { return nr_rng_uniform(r) < p; }

uint64_t nr_rng_below(nr_rng *r, uint64_t n) {
  /* Lemire's multiply-shift; the tiny bias is irrelevant for shuffling batches. */
  return (uint64_t)(((unsigned __int128)nr_rng_next(r) * n) >> 64);
}
