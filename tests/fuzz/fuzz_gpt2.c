// fuzz_gpt2.c — libFuzzer harness of the GPT-2 encoder (./tokenize): any bytes are encoded (invalid
// UTF-8 is an error with its offset), and valid text round-trips through the token bytes.
#include "fuzz_util.h"
#include "tokenizer.h"

static Tokenizer *g_tok;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    Err err;
    if (!tokenizer_open_gpt2(&g_tok, "data/vendor", &err)) die("fuzz_gpt2 (run from the repository root): %s", err.msg);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    TokenBuf out = {0};
    Err err;
    if (tokenizer_encode(g_tok, (const char *)data, size, &out, &err)) {
        size_t at = 0;
        for (int64_t i = 0; i < out.len; i++) {
            size_t len;
            const uint8_t *b = tokenizer_token_bytes(g_tok, out.ids[i], &len);
            if (!b || at + len > size || memcmp(b, data + at, len) != 0) abort();   // decode(encode(x)) != x
            at += len;
        }
        if (at != size) abort();
    }
    free(out.ids);
    return 0;
}
