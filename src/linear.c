// linear.c — see linear.h.
#include "linear.h"

#include "common.h"

#include <cblas.h>
#include <omp.h>
#include <string.h>

// cblas takes 32-bit int dimensions; longer row counts are processed in slices of this many rows.
#define LINEAR_MAX_ROWS ((int64_t)1 << 30)

void linear_forward(float *out, const float *inp, const float *W, const float *bias,
                    int64_t N, int IC, int OC) {
    if (bias) {
        // Pre-fill the bias and let the sgemm accumulate onto it (beta = 1): one pass over out.
        #pragma omp parallel for schedule(static)
        for (int64_t n = 0; n < N; n++) memcpy(out + n * OC, bias, (size_t)OC * sizeof(float));
    }
    float beta = bias ? 1.0f : 0.0f;
    for (int64_t n0 = 0; n0 < N; n0 += LINEAR_MAX_ROWS) {
        int rows = (int)LL_MIN(N - n0, LINEAR_MAX_ROWS);
        // out[n0:] (rows, OC) = inp[n0:] (rows, IC) · Wᵀ (IC, OC)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, OC, IC,
                    1.0f, inp + n0 * IC, IC, W, IC, beta, out + n0 * OC, OC);
    }
}

void linear_backward(float *dinp, float *dW, float *dbias, const float *dout, const float *inp,
                     const float *W, int64_t N, int IC, int OC) {
    for (int64_t n0 = 0; n0 < N; n0 += LINEAR_MAX_ROWS) {
        int rows = (int)LL_MIN(N - n0, LINEAR_MAX_ROWS);
        const float *dout_s = dout + n0 * OC;  // (rows, OC)
        const float *inp_s = inp + n0 * IC;    // (rows, IC)
        // dinp (rows, IC) += dout (rows, OC) · W (OC, IC)
        if (dinp)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, IC, OC,
                        1.0f, dout_s, OC, W, IC, 1.0f, dinp + n0 * IC, IC);
        // dW (OC, IC) += doutᵀ (OC, rows) · inp (rows, IC)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, IC, rows,
                    1.0f, dout_s, OC, inp_s, IC, 1.0f, dW, IC);
    }
    if (dbias) {
        // Column-parallel: each thread owns a range of output channels and sums the rows in order,
        // so the result does not depend on the number of threads.
        #pragma omp parallel
        {
            int nt = omp_get_num_threads(), th = omp_get_thread_num();
            int c0 = (int)((int64_t)OC * th / nt), c1 = (int)((int64_t)OC * (th + 1) / nt);
            for (int64_t n = 0; n < N; n++) {
                const float *row = dout + n * OC;
                for (int c = c0; c < c1; c++) dbias[c] += row[c];
            }
        }
    }
}
