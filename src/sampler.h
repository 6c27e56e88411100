// sampler.h — next-token sampling from logits: temperature, top-k, top-p (nucleus), greedy.
//
// temperature == 0 is greedy decoding (the argmax, lowest id on ties); otherwise the distribution is
// softmax(logits / temperature) restricted to the top_k most likely tokens (top_k <= 0: all) and then to
// the smallest set of most likely tokens whose probability reaches top_p (top_p >= 1: all), renormalised.
// One uniform draw from the caller's Rng per sampled token, so a seed fixes the whole sequence.
#ifndef LL_SAMPLER_H
#define LL_SAMPLER_H

#include <stdint.h>

#include "common.h"
#include "rng.h"

typedef struct {
    float temperature;   // >= 0
    int top_k;           // <= 0: no limit
    float top_p;         // (0, 1]
} SamplerConfig;

typedef struct Sampler Sampler;

// Fails (message names the option and the fix) on a negative temperature or top_p outside (0, 1].
bool sampler_config_check(const SamplerConfig *cfg, Err *err);
Sampler *sampler_create(const SamplerConfig *cfg, int vocab_size);   // cfg must pass sampler_config_check
void sampler_free(Sampler *s);   // NULL is fine

// The next token for logits (V). NaN logits count as -inf; all non-finite gives token 0.
int32_t sampler_next(Sampler *s, const float *logits, Rng *r);

// The argmax of logits (V), lowest id on ties (NaN never wins).
int32_t sampler_argmax(const float *logits, int V);

#endif
