// passkey.h — passkey retrieval (the S-NIAH-1 style needle test): an instruction, filler sentences with
// "The pass key is NNNNN. Remember it. NNNNN is the pass key." hidden at a chosen depth, then the question
// "What is the pass key? The pass key is"; the model must continue with " NNNNN" (greedy, exact match).
#ifndef LL_PASSKEY_H
#define LL_PASSKEY_H

#include "common.h"
#include "model.h"
#include "tokenizer.h"

typedef struct {
    bool correct;          // every answer token reproduced
    int passkey;           // the number hidden (10000..99999, from the seed)
    int64_t prompt_tokens; // the prompt's length (close to the length asked for, never above it unless the
                           // instruction, needle and question alone are longer)
    int64_t needle_at;     // the needle's first token position
} PasskeyResult;

// One trial: a prompt of about `length` tokens with the needle after a fraction `depth` in [0, 1] of the
// filler, decoded with the model's recurrent step (so any length works), then greedy answer tokens.
bool passkey_trial(Model *m, Tokenizer *tok, int length, double depth, uint64_t seed, PasskeyResult *r, Err *err);

#endif
