// lm_head.c — see lm_head.h.
#include "lm_head.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#include "activations.h"

void embedding_forward(float *out, const int32_t *tokens, const float *E, int64_t N, int d) {
    #pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++)
        memcpy(out + n * d, E + (int64_t)tokens[n] * d, (size_t)d * sizeof(float));
}

void embedding_backward(float *dE, const int32_t *tokens, const float *dout, int64_t N, int d) {
    #pragma omp parallel
    {
        int nt = omp_get_num_threads(), th = omp_get_thread_num();
        int c0 = (int)((int64_t)d * th / nt), c1 = (int)((int64_t)d * (th + 1) / nt);
        for (int64_t n = 0; n < N; n++) {
            float *dst = dE + (int64_t)tokens[n] * d;
            const float *src = dout + n * d;
            for (int c = c0; c < c1; c++) dst[c] += src[c];
        }
    }
}

// Layout: per-row losses as doubles first (keeps them 8-byte aligned), then the (chunk_rows, V) logits.
size_t lm_head_scratch_floats(int chunk_rows, int V) {
    return 2 * (size_t)chunk_rows + (size_t)chunk_rows * (size_t)V;
}

double lm_head_loss(float *dx, float *dW, int64_t *count, float *token_loss, const float *x, const float *W,
                    const int32_t *targets, int64_t N, int d, int V, float grad_scale,
                    float *scratch, int chunk_rows) {
    double *row_loss = (double *)scratch;                 // (chunk_rows)
    float *logits = scratch + 2 * (size_t)chunk_rows;     // (chunk_rows, V)
    const int want_grad = dx != NULL || dW != NULL;
    double total = 0.0;
    int64_t counted = 0;
    if (chunk_rows < 1) {  // a caller bug; report it through the loss rather than looping forever
        *count = 0;
        return NAN;
    }

    for (int64_t n0 = 0; n0 < N; n0 += chunk_rows) {
        int rows = (int)(N - n0 < chunk_rows ? N - n0 : chunk_rows);
        const float *xc = x + n0 * d;
        const int32_t *tc = targets + n0;
        // logits (rows, V) = x (rows, d) · Wᵀ (d, V)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, V, d, 1.0f,
                    xc, d, W, d, 0.0f, logits, V);
        #pragma omp parallel for schedule(static)
        for (int r = 0; r < rows; r++) {
            float *lg = logits + (int64_t)r * V;
            int32_t tgt = tc[r];
            if (tgt < 0) {
                row_loss[r] = 0.0;
                if (want_grad) memset(lg, 0, (size_t)V * sizeof(float));  // no gradient from this row
                continue;
            }
            if (tgt >= V) {  // bad data must not read out of bounds; make it loud instead
                row_loss[r] = NAN;
                if (want_grad) memset(lg, 0, (size_t)V * sizeof(float));
                continue;
            }
            float target_logit = lg[tgt];
            // Stable logsumexp; the exponentials are kept in place for the gradient. NaN logits are
            // skipped by the max but poison the sum, as intended.
            float mx = act_max(lg, V);
            double sum = act_exp_shift_sum(lg, lg, V, mx);
            row_loss[r] = (double)mx + log(sum) - (double)target_logit;
            if (want_grad) {
                // d(loss)/d logits = softmax − onehot, times grad_scale
                float k = (float)((double)grad_scale / sum);
                for (int j = 0; j < V; j++) lg[j] *= k;
                lg[tgt] -= grad_scale;
            }
        }
        // Serial, in row order: the sum is reproducible.
        for (int r = 0; r < rows; r++) {
            total += row_loss[r];
            if (tc[r] >= 0) counted++;
            if (token_loss) token_loss[n0 + r] = (float)row_loss[r];
        }
        if (want_grad) {
            // dx (rows, d) += G (rows, V) · W (V, d)
            if (dx)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, d, V, 1.0f,
                            logits, V, W, d, 1.0f, dx + n0 * d, d);
            // dW (V, d) += Gᵀ (V, rows) · x (rows, d)
            if (dW)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, V, d, rows, 1.0f,
                            logits, V, xc, d, 1.0f, dW, d);
        }
    }
    *count = counted;
    return total;
}

void lm_head_argmax(int32_t *pred, const float *x, const float *W, int64_t N, int d, int V, float *scratch,
                    int chunk_rows) {
    float *logits = scratch + 2 * (size_t)chunk_rows;     // (chunk_rows, V), as lm_head_loss
    for (int64_t n0 = 0; n0 < N; n0 += chunk_rows) {
        const int rows = (int)(N - n0 < chunk_rows ? N - n0 : chunk_rows);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, V, d, 1.0f, x + n0 * d, d, W, d, 0.0f, logits, V);
        #pragma omp parallel for schedule(static)
        for (int r = 0; r < rows; r++) pred[n0 + r] = (int32_t)act_argmax(logits + (int64_t)r * V, V);
    }
}

void lm_head_logits(float *logits, const float *x, const float *W, int d, int V) {
    cblas_sgemv(CblasRowMajor, CblasNoTrans, V, d, 1.0f, W, d, x, 1, 0.0f, logits, 1);
}
