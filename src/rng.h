// rng.h — the one deterministic random number generator (xoshiro256**, seeded by splitmix64).
// Everything random (init, sampling) draws from an Rng seeded from the config seed, so a seed fixes a run
// on any machine. The state is 4 words and is saved in checkpoints.
#ifndef LL_RNG_H
#define LL_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t s[4];
} Rng;

void rng_seed(Rng *r, uint64_t seed);            // any seed, including 0
uint64_t rng_next(Rng *r);                        // uniform 64-bit
double rng_uniform(Rng *r);                       // [0, 1), 53 bits
float rng_normal(Rng *r);                         // N(0,1), Box-Muller (one value per call, deterministic)
uint64_t rng_mix(uint64_t a, uint64_t b);         // hashes two words into a seed (e.g. seed + step)

#endif
