// optimizer.c — see optimizer.h.
#include "optimizer.h"

#include <math.h>
#include <omp.h>

#include "common.h"

void adamw_update(float *params, const float *grads, float *m, float *v, const uint8_t *decay_mask,
                  size_t numel, const AdamWHyper *h, int64_t step) {
    const float b1 = h->beta1, b2 = h->beta2;
    const float bc1 = 1.0f - powf(b1, (float)step);   // bias corrections
    const float bc2 = 1.0f - powf(b2, (float)step);
    const float lr = h->lr, eps = h->eps, wd = h->weight_decay;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < numel; i++) {
        float g = grads[i];
        float mi = b1 * m[i] + (1.0f - b1) * g;
        float vi = b2 * v[i] + (1.0f - b2) * g * g;
        m[i] = mi;
        v[i] = vi;
        float p = params[i];
        if (!decay_mask || decay_mask[i]) p -= lr * wd * p;
        p -= lr * (mi / bc1) / (sqrtf(vi / bc2) + eps);
        params[i] = p;
    }
}

float lr_schedule(int64_t step, int64_t total_steps, int64_t warmup_steps, float lr, float min_ratio) {
    if (step < warmup_steps) return lr * (float)(step + 1) / (float)warmup_steps;
    float min_lr = lr * min_ratio;
    int64_t decay_steps = total_steps - warmup_steps;
    if (decay_steps <= 1) return lr;
    double progress = (double)(step - warmup_steps) / (double)(decay_steps - 1);
    if (progress > 1.0) progress = 1.0;
    return min_lr + (lr - min_lr) * (float)(0.5 * (1.0 + cos(M_PI * progress)));
}

double grad_global_norm(const float *grads, size_t numel) {
    // Per-thread partial sums combined in thread order: OpenMP's reduction clause may combine in any
    // order, which would break bit-identical resume.
    enum { MAX_THREADS = 256 };
    double partial[MAX_THREADS] = {0};
    int nthreads = 1;
#pragma omp parallel
    {
        int tid = omp_get_thread_num();
#pragma omp single
        nthreads = omp_get_num_threads();
        double acc = 0;
#pragma omp for schedule(static)
        for (size_t i = 0; i < numel; i++) acc += (double)grads[i] * (double)grads[i];
        if (tid < MAX_THREADS) partial[tid] = acc;
    }
    double total = 0;
    for (int t = 0; t < LL_MIN(nthreads, MAX_THREADS); t++) total += partial[t];
    return sqrt(total);
}

void grad_scale(float *grads, size_t numel, float s) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < numel; i++) grads[i] *= s;
}
