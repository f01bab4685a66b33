#include "corpuslens/base/rng.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void cl_rng_seed(cl_rng *r, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
    r->has_spare = 0;
    r->spare = 0.0;
}

uint64_t cl_rng_u64(cl_rng *r) {
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

float cl_rng_uniform(cl_rng *r) { return (float)(cl_rng_u64(r) >> 40) * (1.0f / 16777216.0f); }

double cl_rng_uniform_double(cl_rng *r) { return (double)(cl_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0); }

uint64_t cl_rng_below(cl_rng *r, uint64_t n) {
    /* Lemire: multiply a 64-bit draw by n, reject the biased low region. */
    unsigned __int128 m = (unsigned __int128)cl_rng_u64(r) * n;
    uint64_t lo = (uint64_t)m;
    if (lo < n) {
        uint64_t t = (0 - n) % n;
        while (lo < t) {
            m = (unsigned __int128)cl_rng_u64(r) * n;
            lo = (uint64_t)m;
        }
    }
    return (uint64_t)(m >> 64);
}

double cl_rng_normal(cl_rng *r, double mean, double std) {
    if (r->has_spare) {
        r->has_spare = 0;
        return mean + std * r->spare;
    }
    double u1, u2;
    do u1 = cl_rng_uniform_double(r); while (u1 <= 0.0);
    u2 = cl_rng_uniform_double(r);
    double rad = sqrt(-2.0 * log(u1));
    r->spare = rad * sin(2.0 * M_PI * u2);
    r->has_spare = 1;
    return mean + std * rad * cos(2.0 * M_PI * u2);
}
