// mqar.c — see mqar.h.
#include "mqar.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

// Most pairs per example (bounds the generator's stack arrays).
#define MQAR_MAX_PAIRS 4096

bool mqar_is_spec(const char *data) { return strncmp(data, "mqar:", 5) == 0 || strcmp(data, "mqar") == 0; }

bool mqar_parse(MqarSpec *s, const char *data, int T, int vocab_size, Err *err) {
    *s = (MqarSpec){.vocab = vocab_size, .pairs_lo = 8, .pairs_hi = 8, .examples = 100000, .seed = 0,
                    .power_a = 0.01, .random_fill = true};
    if (!mqar_is_spec(data)) return err_set(err, "'%s' is not an MQAR spec (mqar:KEY=VALUE,...)", data);
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", data[4] ? data + 5 : "");
    for (char *save = NULL, *kv = strtok_r(buf, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(kv, '=');
        if (!eq) return err_set(err, "%s: '%s' is not KEY=VALUE (keys: pairs, vocab, examples, seed, power_a, fill)", data, kv);
        *eq = 0;
        const char *k = kv, *v = eq + 1;
        long long x;
        if (!strcmp(k, "pairs")) {
            const char *dash = strchr(v, '-');
            char lo[64];
            snprintf(lo, sizeof lo, "%.*s", dash ? (int)(dash - v) : (int)strlen(v), v);
            long long y;
            if (!parse_ll(lo, 1, MQAR_MAX_PAIRS, &x) || !parse_ll(dash ? dash + 1 : lo, x, MQAR_MAX_PAIRS, &y))
                return err_set(err, "%s: pairs=%s must be N or LO-HI with 1 <= LO <= HI <= %d", data, v, MQAR_MAX_PAIRS);
            s->pairs_lo = (int)x;
            s->pairs_hi = (int)y;
        } else if (!strcmp(k, "vocab")) {
            if (!parse_ll(v, 4, vocab_size, &x))
                return err_set(err, "%s: vocab=%s must be an integer in [4, %d] (the model's vocab_size)", data, v,
                               vocab_size);
            s->vocab = (int)x;
        } else if (!strcmp(k, "examples")) {
            if (!parse_ll(v, 1, 100000000, &x))
                return err_set(err, "%s: examples=%s must be an integer in [1, 100000000]", data, v);
            s->examples = x;
        } else if (!strcmp(k, "seed")) {
            char *end;
            errno = 0;
            unsigned long long u = strtoull(v, &end, 10);
            if (errno || end == v || *end) return err_set(err, "%s: seed=%s must be a non-negative integer", data, v);
            s->seed = u;
        } else if (!strcmp(k, "power_a")) {
            char *end;
            double a = strtod(v, &end);
            if (end == v || *end || !(a > 0 && a <= 1))
                return err_set(err, "%s: power_a=%s must be a number in (0, 1]", data, v);
            s->power_a = a;
        } else if (!strcmp(k, "fill")) {
            if (strcmp(v, "random") && strcmp(v, "zero"))
                return err_set(err, "%s: fill=%s must be random or zero", data, v);
            s->random_fill = !strcmp(v, "random");
        } else {
            return err_set(err, "%s: unknown key '%s' (keys: pairs, vocab, examples, seed, power_a, fill)", data, k);
        }
    }
    if (s->vocab > vocab_size)
        return err_set(err, "%s: vocab %d exceeds the model's vocab_size %d; lower vocab= or raise vocab_size", data,
                       s->vocab, vocab_size);
    const int keys = s->vocab / 2 - 1, values = s->vocab - s->vocab / 2;
    if (s->pairs_hi > keys || s->pairs_hi > values)
        return err_set(err, "%s: %d pairs need %d distinct keys and values but vocab %d has %d keys and %d values; "
                       "raise vocab= (to >= %d)", data, s->pairs_hi, s->pairs_hi, s->vocab, keys, values,
                       2 * s->pairs_hi + 2);
    if ((int64_t)4 * s->pairs_hi > T)
        return err_set(err, "%s: %d pairs and their %d queries need seq_len >= 4*pairs = %d, got %d; raise seq_len "
                       "or lower pairs=", data, s->pairs_hi, s->pairs_hi, 4 * s->pairs_hi, T);
    return true;
}

static int64_t below(Rng *r, int64_t n) { return (int64_t)(rng_uniform(r) * (double)n); }

// n distinct integers from [lo, lo + range) in random order (Floyd's sampling, then a shuffle).
static void distinct(int32_t *out, int n, int64_t lo, int64_t range, Rng *r) {
    for (int i = 0; i < n; i++) {
        const int64_t j = range - n + i;
        int64_t t = below(r, j + 1);
        for (int k = 0; k < i; k++)
            if (out[k] == lo + t) { t = j; break; }
        out[i] = (int32_t)(lo + t);
    }
    for (int i = n - 1; i > 0; i--) {
        const int64_t j = below(r, i + 1);
        const int32_t x = out[i];
        out[i] = out[j];
        out[j] = x;
    }
}

void mqar_example(const MqarSpec *s, int64_t index, int T, int32_t *inputs, int32_t *targets) {
    Rng r;
    rng_seed(&r, rng_mix(rng_mix(s->seed, 0x4d514152ull /* "MQAR" */), (uint64_t)index));
    const int N = s->pairs_lo + (int)below(&r, s->pairs_hi - s->pairs_lo + 1);
    const int half = s->vocab / 2;
    int32_t keys[MQAR_MAX_PAIRS], vals[MQAR_MAX_PAIRS];
    distinct(keys, N, 1, half - 1, &r);
    distinct(vals, N, half, s->vocab - half, &r);
    for (int t = 0; t < T; t++) {
        inputs[t] = s->random_fill ? (int32_t)below(&r, s->vocab) : 0;
        targets[t] = -1;
    }
    for (int i = 0; i < N; i++) {
        inputs[2 * i] = keys[i];
        inputs[2 * i + 1] = vals[i];
    }
    // N distinct gaps, drawn one after the other with weights (g+1)^(a-1) among those not taken yet.
    const int space = (T - 2 * N) / 2;
    double w[space];
    double total = 0;
    for (int g = 0; g < space; g++) total += w[g] = pow(g + 1.0, s->power_a - 1.0);
    for (int i = 0; i < N; i++) {
        const double u = rng_uniform(&r) * total;
        double acc = 0;
        int g = 0, last = -1;
        for (; g < space; g++) {
            if (w[g] == 0) continue;
            last = g;
            acc += w[g];
            if (acc > u) break;
        }
        if (g == space) g = last;   // rounding at the end of the sum
        total -= w[g];
        w[g] = 0;
        const int p = 2 * N + 2 * g;
        inputs[p] = keys[i];
        targets[p] = vals[i];
    }
}
