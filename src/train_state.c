// train_state.c — see train_state.h.
#include "train_state.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "json_strict.h"

char *train_state_to_json(const TrainState *s, uint64_t seed) {
    char *buf = xmalloc(1024);
    snprintf(buf, 1024,
             "{\n  \"step\": %lld,\n  \"data_epoch\": \"%llu\",\n  \"data_cursor\": \"%llu\",\n"
             "  \"tokens_seen\": %lld,\n  \"tokens_per_step\": %lld,\n  \"bad_steps_total\": %lld,\n"
             "  \"consecutive_bad\": %d,\n  \"elapsed_seconds\": %.3f,\n  \"seed\": \"%llu\"\n}\n",
             (long long)s->step, (unsigned long long)s->data.epoch, (unsigned long long)s->data.cursor,
             (long long)s->tokens_seen, (long long)s->tokens_per_step, (long long)s->bad_steps_total,
             s->consecutive_bad, s->elapsed,
             (unsigned long long)seed);
    return buf;
}

#define STATE_HINT "resume from another checkpoint (or restore the file)"

// A non-negative integer field, written as a JSON integer or as a string of decimal digits.
static bool read_u64(const JsonDoc *d, const char *key, uint64_t max, uint64_t *out, Err *err) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(d->root, key);
    if (!it) return err_set(err, "%s: field '%s' is missing; " STATE_HINT, d->origin, key);
    JsonRaw v;
    json_raw_value(d, it, &v);
    const char *txt = v.num ? v.num : v.str;
    const size_t n = v.num ? v.num_len : v.str ? strlen(v.str) : 0;
    uint64_t x;
    if (!txt || !json_text_to_u64(txt, n, &x)) {
        int64_t neg;
        if (txt && json_text_to_i64(txt, n, &neg) && neg < 0)
            return err_set(err, "%s: field '%s' is %s, but it cannot be negative; " STATE_HINT, d->origin, key, v.repr);
        return err_set(err, "%s: field '%s' must be a non-negative integer (a number or a string of digits), got "
                       "%s (%s); " STATE_HINT, d->origin, key, v.repr, json_type_word(&v));
    }
    if (x > max)
        return err_set(err, "%s: field '%s' = %llu is out of range (at most %llu); " STATE_HINT, d->origin, key,
                       (unsigned long long)x, (unsigned long long)max);
    *out = x;
    return true;
}

bool train_state_from_json(TrainState *s, const char *json, const char *origin, const TrainStateExpect *expect,
                           Err *err) {
    JsonDoc d;
    Err perr;
    if (!json_doc_parse(&d, json, origin, &perr))
        return err_set(err, "%s; " STATE_HINT, perr.msg);
    bool ok = false;
    TrainState t;
    memset(&t, 0, sizeof t);
    uint64_t step, epoch, cursor, tokens, tps = 0, bad_total, bad_run, seed;
    if (!cJSON_IsObject(d.root)) {
        err_set(err, "%s: expected a JSON object; " STATE_HINT, origin);
        goto done;
    }
    // The step is a 32-bit count in the config (train.steps), so any larger value is damage.
    if (!read_u64(&d, "step", INT32_MAX, &step, err) || !read_u64(&d, "data_epoch", UINT64_MAX, &epoch, err) ||
        !read_u64(&d, "data_cursor", UINT64_MAX, &cursor, err) ||
        !read_u64(&d, "tokens_seen", INT64_MAX, &tokens, err) ||
        // optional: checkpoints written before it lack it (0 = unknown)
        (cJSON_GetObjectItemCaseSensitive(d.root, "tokens_per_step") &&
         !read_u64(&d, "tokens_per_step", INT64_MAX, &tps, err)) ||
        !read_u64(&d, "bad_steps_total", INT64_MAX, &bad_total, err) ||
        !read_u64(&d, "consecutive_bad", INT32_MAX, &bad_run, err) || !read_u64(&d, "seed", UINT64_MAX, &seed, err))
        goto done;
    const cJSON *el = cJSON_GetObjectItemCaseSensitive(d.root, "elapsed_seconds");
    JsonRaw v;
    double elapsed;
    if (!el) {
        err_set(err, "%s: field 'elapsed_seconds' is missing; " STATE_HINT, origin);
        goto done;
    }
    json_raw_value(&d, el, &v);
    if (!v.num || !json_text_to_double(v.num, v.num_len, &elapsed) || !isfinite(elapsed) || elapsed < 0) {
        err_set(err, "%s: field 'elapsed_seconds' must be a finite number >= 0, got %s; " STATE_HINT, origin, v.repr);
        goto done;
    }
    // Consistency between the fields, with the checkpoint, and with the data.
    if (expect && expect->step >= 0 && step != (uint64_t)expect->step) {
        err_set(err, "%s: field 'step' = %llu, but the checkpoint is of step %lld; " STATE_HINT, origin,
                (unsigned long long)step, (long long)expect->step);
        goto done;
    }
    if (bad_total > step) {
        err_set(err, "%s: field 'bad_steps_total' = %llu exceeds 'step' = %llu; " STATE_HINT, origin,
                (unsigned long long)bad_total, (unsigned long long)step);
        goto done;
    }
    if (bad_run > bad_total) {
        err_set(err, "%s: field 'consecutive_bad' = %llu exceeds 'bad_steps_total' = %llu; " STATE_HINT, origin,
                (unsigned long long)bad_run, (unsigned long long)bad_total);
        goto done;
    }
    if ((tokens == 0) != (step == 0)) {
        err_set(err, "%s: field 'tokens_seen' = %llu does not fit 'step' = %llu (every step sees tokens); " STATE_HINT,
                origin, (unsigned long long)tokens, (unsigned long long)step);
        goto done;
    }
    if (tps > 0 && (tokens % tps != 0 || tokens / tps != step)) {
        err_set(err, "%s: field 'tokens_seen' = %llu does not fit 'step' = %llu x 'tokens_per_step' = %llu (= %.0f "
                "tokens); " STATE_HINT, origin, (unsigned long long)tokens, (unsigned long long)step,
                (unsigned long long)tps, (double)step * (double)tps);
        goto done;
    }
    if (expect && expect->seed && seed != *expect->seed) {
        err_set(err, "%s: field 'seed' = %llu, but the checkpoint's train_config.json has train.seed = %llu (the seed "
                "fixes the data order: they are always the same); " STATE_HINT, origin, (unsigned long long)seed,
                (unsigned long long)*expect->seed);
        goto done;
    }
    if (expect && expect->num_windows >= 0 && cursor >= (uint64_t)expect->num_windows) {
        err_set(err, "%s: field 'data_cursor' = %llu is past the %lld windows of the training data: the checkpoint "
                "was made with different shards, seq_len or batch layout; resume with the same train_data and "
                "seq_len", origin, (unsigned long long)cursor, (long long)expect->num_windows);
        goto done;
    }
    t.step = (int64_t)step;
    t.data.epoch = epoch;
    t.data.cursor = cursor;
    t.tokens_seen = (int64_t)tokens;
    t.tokens_per_step = (int64_t)tps;
    t.bad_steps_total = (int64_t)bad_total;
    t.consecutive_bad = (int)bad_run;
    t.elapsed = elapsed;
    *s = t;
    ok = true;
done:
    json_doc_free(&d);
    return ok;
}
