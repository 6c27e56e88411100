// test_passkey.c — the passkey prompt (passkey.h): its length is the one asked for (within one filler
// sentence), the needle sits at the asked depth (right after the instruction at 0, right before the question
// at 1), and the passkey is a function of the seed.
#include "config.h"
#include "model.h"
#include "passkey.h"
#include "testmodel.h"

START_TEST(test_prompt_layout) {
    ModelConfig c;
    model_config_defaults(&c, MODEL_MAMBA2);
    c.vocab_size = TOKENIZER_BYTES_VOCAB;
    c.hidden_size = 16;
    c.num_layers = 1;
    c.intermediate_size = 16;
    c.num_heads = 2;
    c.head_dim = 8;
    c.expand = 1;
    c.d_inner = 16;
    c.state_size = 4;
    c.n_groups = 1;
    Model *m = tu_model(&c, 1, 1, 1);
    Err err;
    Tokenizer *tok = tokenizer_open_bytes();
    const int filler = 90;   // bytes of one filler sentence (with its leading space)
    const int lengths[] = {300, 700};
    for (int li = 0; li < 2; li++) {
        int64_t prev = -1;
        for (int di = 0; di <= 4; di++) {
            PasskeyResult r, r2;
            ck_assert(passkey_trial(m, tok, lengths[li], di / 4.0, 7, &r, &err));
            if (di == 2) {   // the seed fixes the trial
                ck_assert(passkey_trial(m, tok, lengths[li], di / 4.0, 7, &r2, &err));
                ck_assert(r.passkey == r2.passkey && r.correct == r2.correct && r.needle_at == r2.needle_at);
            }
            ck_assert(r.passkey >= 10000 && r.passkey <= 99999);
            ck_assert_msg(r.prompt_tokens <= lengths[li] && r.prompt_tokens > lengths[li] - filler,
                          "prompt of %lld tokens for length %d", (long long)r.prompt_tokens, lengths[li]);
            ck_assert(li == 0 ? r.needle_at >= prev : r.needle_at > prev);   // 0 filler sentences at 300, 5 at 700
            prev = r.needle_at;
            const int64_t needle = 59, question = 38;   // bytes of the needle sentence and of the question
            if (di == 0) ck_assert_int_eq(r.needle_at, 1 + 146);   // end-of-text + the instruction
            if (di == 4) ck_assert_int_eq(r.needle_at + needle + question, r.prompt_tokens);
        }
    }
    PasskeyResult a, b;
    ck_assert(passkey_trial(m, tok, 300, 0.5, 8, &a, &err));
    ck_assert(passkey_trial(m, tok, 300, 0.5, 9, &b, &err));
    ck_assert(a.passkey != b.passkey);
    tokenizer_free(tok);
    model_free(m);
}
END_TEST

int main(void) {
    const TuNamedTest tests[] = {{"prompt_layout", test_prompt_layout}};
    return tu_run_suite(tu_suite_of("passkey", tests, 1, 60));
}
