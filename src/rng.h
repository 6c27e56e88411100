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

// splitmix64 (Steele, Lea, Flood 2014), the one copy: rng_splitmix64 advances *state by the golden gamma
// and returns the finalizer of the new state; rng_mix64 is the finalizer alone (a 64-bit hash). Tiny,
// and the same sequence on every platform: seeding, the data loader's shuffle, hash tables, test data.
static inline uint64_t rng_mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static inline uint64_t rng_splitmix64(uint64_t *state) { return rng_mix64(*state += 0x9E3779B97F4A7C15ull); }

#endif
