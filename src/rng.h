/* rng: a small, seedable, reproducible random generator (xoshiro256**, seeded by splitmix64).
 * Its whole state is four words, so checkpoints can store it and resume bit for bit. */
#ifndef OFFNAS_RNG_H
#define OFFNAS_RNG_H

#include <stdint.h>

struct rng {
    uint64_t s[4];
};

/* Seeds the generator from one 64-bit value and a stream id (e.g. the rank), so streams with
 * different ids never coincide. */
void rng_seed(struct rng *rng, uint64_t seed, uint64_t stream);
uint64_t rng_next(struct rng *rng);
/* Uniform in [0, 1) with 53 random bits. */
double rng_uniform(struct rng *rng);
/* Uniform integer in [0, n). */
uint64_t rng_below(struct rng *rng, uint64_t n);
/* Standard normal (Box-Muller). */
double rng_normal(struct rng *rng);
/* Standard Gumbel: -log(-log(u)), u in (0, 1). */
double rng_gumbel(struct rng *rng);
/* Shuffles idx[0..n) in place (Fisher-Yates). */
void rng_shuffle(struct rng *rng, long *idx, long n);

#endif
