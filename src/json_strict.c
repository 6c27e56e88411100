// json_strict.c — see json_strict.h.
#include "json_strict.h"

#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool json_text_to_i64(const char *s, size_t n, int64_t *out) {
    char buf[40];
    if (n == 0 || n >= sizeof buf) return false;
    memcpy(buf, s, n);
    buf[n] = '\0';
    size_t i = buf[0] == '-' ? 1 : 0;
    if (!buf[i]) return false;
    for (; buf[i]; i++) if (!isdigit((unsigned char)buf[i])) return false;
    errno = 0;
    long long v = strtoll(buf, NULL, 10);
    if (errno) return false;
    *out = v;
    return true;
}

bool json_text_to_u64(const char *s, size_t n, uint64_t *out) {
    char buf[40];
    if (n == 0 || n >= sizeof buf) return false;
    memcpy(buf, s, n);
    buf[n] = '\0';
    for (size_t i = 0; buf[i]; i++) if (!isdigit((unsigned char)buf[i])) return false;
    errno = 0;
    unsigned long long v = strtoull(buf, NULL, 10);
    if (errno) return false;
    *out = v;
    return true;
}

// A number as JSON or Python writes it, including the bare Infinity / -Infinity / NaN tokens.
bool json_text_to_double(const char *s, size_t n, double *out) {
    char buf[64];
    if (n == 0 || n >= sizeof buf) return false;
    memcpy(buf, s, n);
    buf[n] = '\0';
    if (strcmp(buf, "Infinity") == 0 || strcmp(buf, "inf") == 0) { *out = INFINITY; return true; }
    if (strcmp(buf, "-Infinity") == 0 || strcmp(buf, "-inf") == 0) { *out = -INFINITY; return true; }
    if (strcmp(buf, "NaN") == 0 || strcmp(buf, "nan") == 0) { *out = NAN; return true; }
    char *end = NULL;
    errno = 0;
    double v = strtod(buf, &end);
    if (end == buf || *end != '\0') return false;
    if (errno == ERANGE && fabs(v) < 1.0) v = 0.0;  // underflow: treat as 0 like Python
    *out = v;
    return true;
}

// ---------------------------------------------------------------------------------------------------
// JSON documents: cJSON plus the raw text of every number token.
//
// cJSON keeps numbers only as doubles, which cannot tell 256 from 256.0 (a float where an integer is
// required) nor hold a 64-bit seed exactly. So before parsing we scan the text once: every number token
// outside strings is recorded (offset, length) in document order, and the non-standard tokens Python's
// json module writes (Infinity, -Infinity, NaN, e.g. HF's time_step_limit) are replaced in the parsed
// copy by numbers of the same length, so error positions still match the file. After parsing, the
// tree's numbers (visited in document order) are paired with those tokens.

static bool json_ident_char(char c) { return isalnum((unsigned char)c) || c == '_'; }

static void json_doc_push(JsonDoc *d, size_t *cap, size_t off, size_t len) {
    if (d->n_nums == *cap) {
        *cap = *cap ? 2 * *cap : 64;
        NumTok *p = realloc(d->nums, *cap * sizeof *p);
        if (!p) die("out of memory reading JSON");
        d->nums = p;
    }
    d->nums[d->n_nums++] = (NumTok){NULL, off, len};
}

static void json_doc_scan(JsonDoc *d, size_t n) {
    char *s = d->text;
    size_t cap = 0;
    bool in_str = false;
    for (size_t i = 0; i < n;) {
        char c = s[i];
        if (in_str) {
            if (c == '\\') i += 2;
            else { if (c == '"') in_str = false; i++; }
            continue;
        }
        if (c == '"') { in_str = true; i++; continue; }
        if (c == '-' && i + 9 <= n && memcmp(s + i + 1, "Infinity", 8) == 0 && (i + 9 == n || !json_ident_char(s[i + 9]))) {
            memcpy(s + i, "-1e999   ", 9);  // strtod overflows to -inf
            json_doc_push(d, &cap, i, 9);
            i += 9;
            continue;
        }
        if (c == '-' || isdigit((unsigned char)c)) {
            size_t j = i;
            while (j < n && s[j] && strchr("0123456789+-eE.", s[j])) j++;
            json_doc_push(d, &cap, i, j - i);
            i = j;
            continue;
        }
        if (isalpha((unsigned char)c) || c == '_') {
            size_t j = i;
            while (j < n && json_ident_char(s[j])) j++;
            if (j - i == 8 && memcmp(s + i, "Infinity", 8) == 0) {
                memcpy(s + i, "1e999   ", 8);
                json_doc_push(d, &cap, i, 8);
            } else if (j - i == 3 && memcmp(s + i, "NaN", 3) == 0) {
                memcpy(s + i, "0e0", 3);  // placeholder; the value is read from the original "NaN"
                json_doc_push(d, &cap, i, 3);
            }
            i = j;
            continue;
        }
        i++;
    }
}

static void json_doc_collect(JsonDoc *d, const cJSON *it, size_t *k) {
    if (cJSON_IsNumber(it)) {
        if (*k < d->n_nums) d->nums[*k].item = it;
        (*k)++;
    }
    for (const cJSON *c = it->child; c; c = c->next) json_doc_collect(d, c, k);
}

void json_doc_free(JsonDoc *d) {
    cJSON_Delete(d->root);
    free(d->text);
    free(d->nums);
    memset(d, 0, sizeof *d);
}

bool json_doc_parse(JsonDoc *d, const char *text, const char *origin, Err *err) {
    memset(d, 0, sizeof *d);
    size_t n = strlen(text);
    d->orig = text;
    d->origin = origin;
    d->text = malloc(n + 1);
    if (!d->text) die("out of memory reading JSON");
    memcpy(d->text, text, n + 1);
    json_doc_scan(d, n);
    const char *end = NULL;
    d->root = cJSON_ParseWithOpts(d->text, &end, true);
    if (!d->root) {
        size_t off = end ? (size_t)(end - d->text) : 0;
        if (off > n) off = n;
        // Where an object key was expected (after '{' or ','), cJSON reports one past the offending
        // character, e.g. past the '}' of a trailing comma. Step back so the column names the culprit.
        if (off > 0 && off <= n && text[off - 1] != '"' && !isspace((unsigned char)text[off - 1])) {
            size_t q = off - 1, r = q;
            while (r > 0 && isspace((unsigned char)text[r - 1])) r--;
            if (r > 0 && (text[r - 1] == ',' || text[r - 1] == '{')) off = q;
        }
        int line = 1, col = 1;
        for (size_t i = 0; i < off; i++) {
            if (text[i] == '\n') { line++; col = 1; } else col++;
        }
        char near[40] = {0};
        size_t k = 0;
        for (size_t i = off; i < n && text[i] != '\n' && k < sizeof near - 1; i++) near[k++] = text[i];
        bool at_end = true;
        for (size_t i = off; i < n; i++) if (!isspace((unsigned char)text[i])) { at_end = false; break; }
        if (at_end)
            err_set(err, "%s:%d:%d: JSON syntax error: unexpected end of file (missing '}' or ']'?)", origin, line, col);
        else
            err_set(err, "%s:%d:%d: JSON syntax error near '%s' (check for a missing comma, quote or brace, "
                    "or a trailing comma)", origin, line, col, near);
        json_doc_free(d);
        return false;
    }
    size_t k = 0;
    json_doc_collect(d, d->root, &k);
    if (k != d->n_nums) {  // cannot happen for text cJSON accepted; keep it loud rather than misread
        err_set(err, "%s: internal error pairing JSON number tokens (%zu vs %zu)", origin, k, d->n_nums);
        json_doc_free(d);
        return false;
    }
    return true;
}


void json_raw_value(const JsonDoc *d, const cJSON *it, JsonRaw *v) {
    memset(v, 0, sizeof *v);
    v->boolean = -1;
    if (cJSON_IsNumber(it)) {
        for (size_t i = 0; i < d->n_nums; i++) {
            if (d->nums[i].item == it) {
                v->num = d->orig + d->nums[i].off;
                v->num_len = d->nums[i].len;
                break;
            }
        }
        if (v->num) snprintf(v->repr, sizeof v->repr, "%.*s", (int)LL_MIN(v->num_len, 80), v->num);
        return;
    }
    if (cJSON_IsString(it)) v->str = it->valuestring;
    if (cJSON_IsBool(it)) v->boolean = cJSON_IsTrue(it) ? 1 : 0;
    if (cJSON_IsNull(it)) v->is_null = true;
    char *p = cJSON_PrintUnformatted(it);
    if (p) {
        if (strlen(p) > 80) snprintf(v->repr, sizeof v->repr, "%.77s...", p);
        else snprintf(v->repr, sizeof v->repr, "%s", p);
        free(p);
    }
}

const char *json_type_word(const JsonRaw *v) {
    if (v->num) return "a number";
    if (v->str) return "a string";
    if (v->boolean >= 0) return "a boolean";
    if (v->is_null) return "null";
    return "an array or object";
}

bool json_read_int(const JsonRaw *v, const char *where, int *out, Err *err) {
    int64_t x;
    if (!v->num) return err_set(err, "%s must be an integer, got %s (%s)", where, v->repr, json_type_word(v));
    if (!json_text_to_i64(v->num, v->num_len, &x))
        return err_set(err, "%s must be an integer, got %s (write it without a decimal point or exponent)", where, v->repr);
    if (x < INT_MIN || x > INT_MAX) return err_set(err, "%s = %s is out of range for a 32-bit integer", where, v->repr);
    *out = (int)x;
    return true;
}

bool json_read_float(const JsonRaw *v, const char *where, float *out, Err *err) {
    double x;
    if (!v->num || !json_text_to_double(v->num, v->num_len, &x))
        return err_set(err, "%s must be a number, got %s (%s)", where, v->repr, json_type_word(v));
    if (!isfinite(x) || fabs(x) > FLT_MAX) return err_set(err, "%s must be a finite 32-bit float, got %s", where, v->repr);
    *out = (float)x;
    return true;
}

bool json_read_bool(const JsonRaw *v, const char *where, bool *out, Err *err) {
    if (v->boolean < 0) return err_set(err, "%s must be true or false, got %s (%s)", where, v->repr, json_type_word(v));
    *out = v->boolean == 1;
    return true;
}

typedef struct {
    const cJSON *item;
    size_t index;   // position in the object
} KeyRef;

static int cmp_keyref(const void *a, const void *b) {
    const KeyRef *x = a, *y = b;
    int c = strcmp(x->item->string, y->item->string);
    return c ? c : (x->index > y->index) - (x->index < y->index);
}

const cJSON *json_first_dup_key(const cJSON *obj) {
    // Sorting the keys makes this O(n log n): a config may hold a million keys (16 MB of "_comment"s),
    // which a pairwise scan would take hours over.
    size_t n = 0;
    for (const cJSON *p = obj->child; p; p = p->next) n++;
    if (n < 2) return NULL;
    KeyRef *keys = malloc(n * sizeof *keys);
    if (!keys) die("out of memory reading JSON");
    size_t i = 0;
    for (const cJSON *p = obj->child; p; p = p->next, i++) keys[i] = (KeyRef){p, i};
    qsort(keys, n, sizeof *keys, cmp_keyref);
    const cJSON *first = NULL;
    size_t first_index = SIZE_MAX;
    for (i = 1; i < n; i++)
        if (strcmp(keys[i].item->string, keys[i - 1].item->string) == 0 && keys[i].index < first_index) {
            first = keys[i].item;
            first_index = keys[i].index;
        }
    free(keys);
    return first;
}
