// fuzz_decode_table.c — libFuzzer harness of the decode table reader (train.tokenizer): open, then decode
// every id (and some out of range) and escape the text as samples are printed.
#include "fuzz_util.h"
#include "tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_path("x.tok");
    fuzz_write(path, data, size);
    Decoder *dec;
    Err err;
    if (!decoder_open(&dec, path, &err)) return 0;
    const int V = decoder_vocab_size(dec);
    int32_t ids[64];
    for (int i = 0; i < 64; i++) ids[i] = (i * 7919) % (V + 3) - 1;
    char text[64 * 8], shown[4 * sizeof text + 1];
    size_t n = decoder_decode(dec, ids, 64, text, sizeof text);
    text_escape(text, n < sizeof text ? n : sizeof text - 1, shown, sizeof shown);
    decoder_free(dec);
    return 0;
}
