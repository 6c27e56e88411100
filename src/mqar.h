// mqar.h — multi-query associative recall (MQAR, Zoology; the paper's Table 2) as a data source: examples
// generated from a seed, no files.
//
// An example of T tokens with N key-value pairs (Zoology's multiquery_ar): the first 2N tokens are the
// pairs k1 v1 k2 v2 ... kN vN (N distinct keys from [1, vocab/2), N distinct values from [vocab/2, vocab));
// then every key is queried once, at position 2N + 2g for N distinct gaps g in [0, (T-2N)/2) drawn with
// probability ∝ (g+1)^(a-1) (a = power_a: mostly short gaps). The target at a query's position is its
// value; every other target is -1 (ignored by the loss), so loss and accuracy count answers only. Other
// positions hold random tokens (Zoology's random_non_queries) or 0 (fill=zero).
//
// Spec string (train.train_data / train.val_data): "mqar:KEY=VALUE,..." with keys
//   pairs=N or pairs=LO-HI   pairs per example (uniform in [LO, HI]); needs seq_len >= 4*HI   (default 8)
//   vocab=V                  tokens used, <= the model's vocab_size (default: the model's vocab_size)
//   examples=M               examples in the set; an epoch visits each once (default 100000)
//   seed=S                   the set (default 0); give the validation set another seed than training's
//   power_a=A                query gap distribution (default 0.01, as Zoology)
//   fill=random|zero         non-query positions (default random)
// Example i of a set depends only on (spec, i, seq_len): training seeds change the order, not the data.
#ifndef LL_MQAR_H
#define LL_MQAR_H

#include "common.h"

typedef struct {
    int vocab, pairs_lo, pairs_hi;
    int64_t examples;
    uint64_t seed;
    double power_a;
    bool random_fill;
} MqarSpec;

// Whether a data string names the MQAR task (starts with "mqar:" or is "mqar").
bool mqar_is_spec(const char *data);
// Parses a spec for sequences of T tokens and a model of vocab_size tokens; the error names the key and the fix.
bool mqar_parse(MqarSpec *s, const char *data, int T, int vocab_size, Err *err);
// Example `index` (0 <= index < s->examples): inputs (T), targets (T), -1 where not an answer. No allocation.
void mqar_example(const MqarSpec *s, int64_t index, int T, int32_t *inputs, int32_t *targets);

#endif
