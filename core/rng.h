/* rng.h: netrun's deterministic random numbers.
 *
 * One generator (xoshiro256**) seeded from a 64-bit seed through splitmix64, so a run with
 * the same random_seed is bit-identical everywhere. Fillers, Dropout and data shuffling draw
 * from the nr_rng they are given; nobody touches rand(). Not thread safe: one per user.
 */
#ifndef NR_RNG_H
#define NR_RNG_H

#include <stdint.h>

typedef struct nr_rng {
  uint64_t s[4];
} nr_rng;

void nr_rng_seed(nr_rng *r, uint64_t seed);
uint64_t nr_rng_next(nr_rng *r);
/* Uniform in [0, 1). */
double nr_rng_uniform(nr_rng *r);
/* Uniform float in [a, b]. */
float nr_rng_uniform_range(nr_rng *r, float a, float b);
/* Normal with mean and standard deviation (Box-Muller). */
float nr_rng_gaussian(nr_rng *r, float mean, float std);
/* n normal values into out: both values of each Box-Muller pair (half the uniforms, logs and
 * trigonometry of n calls to nr_rng_gaussian; a different sequence). */
void nr_rng_gaussian_fill(nr_rng *r, int64_t n, float mean, float std, float *out);
/* 1 with probability p, else 0. */
int nr_rng_bernoulli(nr_rng *r, double p);
/* Uniform integer in [0, n). n > 0. */
uint64_t nr_rng_below(nr_rng *r, uint64_t n);

#endif
