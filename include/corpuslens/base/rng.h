/* corpuslens pseudo-random numbers: one documented generator for everything
 * seeded (weight init, prompt sampling, training batches, dropout, sampling).
 *
 * Generator: xoshiro256** (Blackman & Vigna, 2018), state seeded from the
 * 64-bit seed with splitmix64. Uniform floats use the top 24 bits; normals use
 * the Box-Muller transform (both values of a pair are used, in order).
 * Integers below n use Lemire's unbiased multiply-and-reject method.
 * The same seed gives the same stream on every platform.
 */
#ifndef CORPUSLENS_RNG_H
#define CORPUSLENS_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t s[4];
    int has_spare;  /* Box-Muller keeps its second value */
    double spare;
} cl_rng;

void cl_rng_seed(cl_rng *r, uint64_t seed);
uint64_t cl_rng_u64(cl_rng *r);
/* Uniform in [0, 1). */
float cl_rng_uniform(cl_rng *r);
double cl_rng_uniform_double(cl_rng *r);
/* Uniform integer in [0, n); n > 0. */
uint64_t cl_rng_below(cl_rng *r, uint64_t n);
/* Normal(mean, std). */
double cl_rng_normal(cl_rng *r, double mean, double std);

#endif
