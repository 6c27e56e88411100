// passkey.c — see passkey.h.
#include "passkey.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"
#include "sampler.h"

static const char INTRO[] = "There is an important info hidden inside a lot of irrelevant text. Find it and "
                            "memorize it. I will quiz you about the important information there.";
static const char FILLER[] = " The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.";
static const char QUESTION[] = "\nWhat is the pass key? The pass key is";

static bool encode(Tokenizer *tok, const char *text, TokenBuf *out, Err *err) {
    return tokenizer_encode(tok, text, strlen(text), out, err);
}

bool passkey_trial(Model *m, Tokenizer *tok, int length, double depth, uint64_t seed, PasskeyResult *r, Err *err) {
    Rng rng;
    rng_seed(&rng, seed);
    memset(r, 0, sizeof *r);
    r->passkey = 10000 + (int)(rng_uniform(&rng) * 90000);
    char needle[160], answer[16];
    snprintf(needle, sizeof needle, " The pass key is %d. Remember it. %d is the pass key.", r->passkey, r->passkey);
    snprintf(answer, sizeof answer, " %d", r->passkey);
    TokenBuf intro = {0}, filler = {0}, nd = {0}, q = {0}, ans = {0};
    bool ok = encode(tok, INTRO, &intro, err) && encode(tok, FILLER, &filler, err) && encode(tok, needle, &nd, err) &&
              encode(tok, QUESTION, &q, err) && encode(tok, answer, &ans, err);
    if (ok) {
        const int64_t fixed = 1 + intro.len + nd.len + q.len;
        const int64_t reps = length > fixed ? (length - fixed) / filler.len : 0;
        const int64_t before = (int64_t)llround(depth * (double)reps);
        const int V = model_config(m)->vocab_size;
        float *logits = xmalloc((size_t)V * sizeof(float));
        DecodeState *ds = decode_create(m, length + (int)ans.len + 1);
        decode_step(m, ds, (int32_t)tokenizer_eot(tok), logits);
        for (int64_t i = 0; i < intro.len; i++) decode_step(m, ds, intro.ids[i], logits);
        for (int64_t k = 0; k < reps; k++) {
            if (k == before) {
                r->needle_at = decode_position(ds);
                for (int64_t i = 0; i < nd.len; i++) decode_step(m, ds, nd.ids[i], logits);
            }
            for (int64_t i = 0; i < filler.len; i++) decode_step(m, ds, filler.ids[i], logits);
        }
        if (before >= reps) {
            r->needle_at = decode_position(ds);
            for (int64_t i = 0; i < nd.len; i++) decode_step(m, ds, nd.ids[i], logits);
        }
        for (int64_t i = 0; i < q.len; i++) decode_step(m, ds, q.ids[i], logits);
        r->prompt_tokens = decode_position(ds);
        r->correct = true;
        for (int64_t i = 0; i < ans.len && r->correct; i++) {
            const int32_t t = sampler_argmax(logits, V);
            r->correct = t == ans.ids[i];
            if (i + 1 < ans.len) decode_step(m, ds, t, logits);
        }
        decode_free(ds);
        free(logits);
    }
    free(intro.ids);
    free(filler.ids);
    free(nd.ids);
    free(q.ids);
    free(ans.ids);
    return ok;
}
