// json_strict.h — strict reading of JSON documents on top of cJSON: every number keeps its raw text, so
// 256 and 256.0 differ (a float where an integer is required) and 64-bit integers are exact; Python's
// Infinity / -Infinity / NaN tokens are accepted; syntax errors name file:line:column and the culprit;
// typed readers give messages that name the field and what was wrong. Used by config.c.
#ifndef LL_JSON_STRICT_H
#define LL_JSON_STRICT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "common.h"

typedef struct {
    const cJSON *item;
    size_t off, len;   // token in the original text
} NumTok;

typedef struct {
    const char *orig;  // original text
    char *text;        // pre-processed copy that cJSON parsed
    cJSON *root;
    NumTok *nums;
    size_t n_nums;
    const char *origin;
} JsonDoc;

// Parses text (NUL-terminated) with `origin` (e.g. the file name) for messages. Free with json_doc_free.
bool json_doc_parse(JsonDoc *d, const char *text, const char *origin, Err *err);
void json_doc_free(JsonDoc *d);

// A JSON value reduced to what the typed readers need.
typedef struct {
    const char *num;   // raw number text (NULL if not a number)
    size_t num_len;
    const char *str;   // string value (NULL if not a string)
    int boolean;       // 0/1, or -1 if not a boolean
    bool is_null;
    char repr[96];     // the value as written, for error messages
} JsonRaw;

void json_raw_value(const JsonDoc *d, const cJSON *it, JsonRaw *v);
// "a number", "a string", "a boolean", "null", "an array or object".
const char *json_type_word(const JsonRaw *v);

// Typed readers. `where` is the prefix of every message, e.g. "configs/x.json: model.hidden_size".
bool json_read_int(const JsonRaw *v, const char *where, int *out, Err *err);
bool json_read_float(const JsonRaw *v, const char *where, float *out, Err *err);
bool json_read_bool(const JsonRaw *v, const char *where, bool *out, Err *err);
// The first member of obj (in document order) whose key an earlier member already has, or NULL.
// O(n log n) in the number of members.
const cJSON *json_first_dup_key(const cJSON *obj);

// Exact conversions of a number token's text (n bytes at s): integers only (no '.', no exponent),
// unsigned integers, and doubles as JSON or Python writes them (Infinity, -Infinity, NaN included).
bool json_text_to_i64(const char *s, size_t n, int64_t *out);
bool json_text_to_u64(const char *s, size_t n, uint64_t *out);
bool json_text_to_double(const char *s, size_t n, double *out);

#endif
