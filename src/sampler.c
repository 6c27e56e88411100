// sampler.c — see sampler.h.
#include "sampler.h"

#include <math.h>
#include <stdlib.h>

#include "activations.h"

struct Sampler {
    SamplerConfig cfg;
    int V;
    int32_t *order;   // (V) token ids, most likely first (only when top-k / top-p restrict the set)
    double *w;        // (V) unnormalised probabilities exp((logit - max) / temperature)
};

bool sampler_config_check(const SamplerConfig *cfg, Err *err) {
    if (!(cfg->temperature >= 0.0f) || !isfinite(cfg->temperature))
        return err_set(err, "--temperature must be a finite number >= 0 (0 = greedy), got %g", cfg->temperature);
    if (!(cfg->top_p > 0.0f && cfg->top_p <= 1.0f))
        return err_set(err, "--top-p must be in (0, 1] (1 = off), got %g", cfg->top_p);
    return true;
}

Sampler *sampler_create(const SamplerConfig *cfg, int vocab_size) {
    Sampler *s = xcalloc(1, sizeof *s);
    s->cfg = *cfg;
    s->V = vocab_size;
    s->order = xmalloc((size_t)vocab_size * sizeof(int32_t));
    s->w = xmalloc((size_t)vocab_size * sizeof(double));
    return s;
}

void sampler_free(Sampler *s) {
    if (!s) return;
    free(s->order);
    free(s->w);
    free(s);
}

int32_t sampler_argmax(const float *logits, int V) { return (int32_t)act_argmax(logits, V); }

// Larger weight first, then the lower id: a total order (qsort is not stable), the same on every platform.
static int by_weight_desc(const void *a, const void *b, void *ctx) {
    const double *w = ctx;
    const int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
    if (w[i] != w[j]) return w[i] > w[j] ? -1 : 1;
    return (i > j) - (i < j);
}

int32_t sampler_next(Sampler *s, const float *logits, Rng *r) {
    const int V = s->V;
    if (s->cfg.temperature == 0.0f) return sampler_argmax(logits, V);
    const int32_t top = sampler_argmax(logits, V);
    const double mx = logits[top];
    if (!isfinite(mx)) return top;
    const double inv_t = 1.0 / s->cfg.temperature;
    for (int i = 0; i < V; i++) s->w[i] = isnan(logits[i]) ? 0.0 : exp(((double)logits[i] - mx) * inv_t);
    const bool restrict_k = s->cfg.top_k > 0 && s->cfg.top_k < V, restrict_p = s->cfg.top_p < 1.0f;
    if (!restrict_k && !restrict_p) {   // the whole vocabulary, in id order
        double sum = 0;
        for (int i = 0; i < V; i++) sum += s->w[i];
        const double u = rng_uniform(r) * sum;
        double acc = 0;
        for (int i = 0; i < V; i++) {
            acc += s->w[i];
            if (acc > u) return i;
        }
        return top;
    }
    for (int i = 0; i < V; i++) s->order[i] = i;
    qsort_r(s->order, (size_t)V, sizeof(int32_t), by_weight_desc, s->w);
    int n = restrict_k ? s->cfg.top_k : V;
    double sum = 0;
    for (int i = 0; i < n; i++) sum += s->w[s->order[i]];
    if (restrict_p) {   // the smallest prefix whose mass reaches top_p of the (top-k) total
        const double target = (double)s->cfg.top_p * sum;
        double acc = 0;
        int keep = 0;
        while (keep < n && acc < target) acc += s->w[s->order[keep++]];
        n = keep > 0 ? keep : 1;
        sum = acc > 0 ? acc : s->w[s->order[0]];
    }
    const double u = rng_uniform(r) * sum;
    double acc = 0;
    for (int i = 0; i < n; i++) {
        acc += s->w[s->order[i]];
        if (acc > u) return s->order[i];
    }
    return s->order[0];
}
