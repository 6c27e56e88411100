// scan_ssd.c — Mamba-2 SSD scan (see scan_ssd.h). The chunk tasks and phase loops are shared with the
// log-linear scan (ssd_chunk.c); this file holds the SSD's pass along the chunks: a running state per
// (b, h), read once by every chunk, its backward, and the drivers.
#include "scan_ssd.h"

#include <math.h>
#include <string.h>

#include "ssd_chunk.h"

size_t ssd_scratch_floats(const ScanDims *d) {
    ScanCtx k;
    return scan_setup(&k, d, false, NULL);
}

// State task: in place over elements [e0, e1) of the chunk states of (b, h): S[c] <- H_c, the state
// entering chunk c (H_0 = 0, H_{c+1} = exp(Γ_c) H_c + Sc_c). R: e1 - e0 floats of scratch.
static void ssd_state_scan(const ScanCtx *k, int b, int h, int blk, int64_t e0, int64_t e1, float *R) {
    (void)blk;
    const size_t n = (size_t)(e1 - e0);
    const float *csh = k->cs + ((size_t)b * k->H + h) * k->T;
    memset(R, 0, sizeof(float) * n);
    for (int c = 0; c + 1 < k->NC; c++) {
        float *restrict Sc = scan_state(k, k->S, b, c, h) + e0;
        const float eg = scan_exp(csh[(size_t)(c + 1) * k->Cs - 1]);
        for (size_t e = 0; e < n; e++) {
            const float s = Sc[e];
            Sc[e] = R[e];
            R[e] = eg * R[e] + s;
        }
    }
    memcpy(scan_state(k, k->S, b, k->NC - 1, h) + e0, R, sizeof(float) * n);
}

// State task, after the backward prologue (chunk states in S, read gradients in dS), over elements
// [e0, e1): entering states H_c (forward scan), then the reverse scan: dS[c] <- gradient of the state
// leaving chunk c (= dH_{c+1}), and pdot[c] = this block's part of <H_c, dH_{c+1}> (the chunk task of
// chunk c sums the blocks into its decay gradient).
static void ssd_state_backward(const ScanCtx *k, int b, int h, int blk, int64_t e0, int64_t e1, float *R) {
    const size_t n = (size_t)(e1 - e0);
    float *pd = k->pdot + (((size_t)b * k->H + h) * k->nsb + blk) * k->NC;
    pd[k->NC - 1] = 0.0f;
    if (k->NC == 1) return;
    ssd_state_scan(k, b, h, blk, e0, e1, R);
    const float *csh = k->cs + ((size_t)b * k->H + h) * k->T;
    memcpy(R, scan_state(k, k->dS, b, k->NC - 1, h) + e0, sizeof(float) * n);  // dH_{NC-1}
    for (int c = k->NC - 2; c >= 0; c--) {
        float *restrict dSc = scan_state(k, k->dS, b, c, h) + e0;
        const float *restrict Hc = scan_state(k, k->S, b, c, h) + e0;
        const float eg = scan_exp(csh[(size_t)(c + 1) * k->Cs - 1]);
        float dot = 0.0f;
        if (c > 0) {
            dot = scan_dot(Hc, R, (int)n);
            for (size_t e = 0; e < n; e++) {
                const float d0 = dSc[e];
                dSc[e] = R[e];
                R[e] = eg * R[e] + d0;
            }
        } else {
            memcpy(dSc, R, sizeof(float) * n);  // H_0 = 0: no decay gradient, no dH_0 needed
        }
        pd[c] = dot;
    }
}

void ssd_forward(float *y, const float *x, const float *dt, const float *A, const float *Bm, const float *Cm,
                 const float *D, const ScanDims *d, float *scratch) {
    ScanCtx k;
    scan_setup(&k, d, false, scratch);
    scan_set_inputs(&k, x, dt, A, Bm, Cm, D, NULL);
    k.y = y;
    scan_forward(&k, NULL, ssd_state_scan);
}

void ssd_backward(float *dx, float *ddt, float *dA, float *dBm, float *dCm, float *dD, const float *dy,
                  const float *x, const float *dt, const float *A, const float *Bm, const float *Cm, const float *D,
                  const ScanDims *d, float *scratch) {
    ScanCtx k;
    scan_setup(&k, d, false, scratch);
    scan_set_inputs(&k, x, dt, A, Bm, Cm, D, NULL);
    k.dy = dy; k.dx = dx; k.ddt = ddt; k.dBm = dBm; k.dCm = dCm;
    // 1. recompute cs and the chunk states; per-chunk read gradients Σ exp(cs_i) dy_i q_iᵀ into dS
    scan_chunk_tasks(&k, scan_chunk_backward_prep, false);
    // 2. the running state and its gradient along the chunks (per column block)
    scan_state_tasks(&k, ssd_state_backward);
    // 3. everything local to each chunk
    memset(k.partA2, 0, sizeof(float) * (size_t)k.B * k.H);
    scan_chunk_tasks(&k, scan_chunk_backward, false);
    scan_reduce_batches(&k);
    scan_reduce_partials(&k, dA, dD);
}

void ssd_step(float *y, float *state, const float *x, const float *dt, const float *A, const float *Bv,
              const float *Cv, const float *D, int H, int P, int G, int N) {
    const int Hg = H / G;
    for (int h = 0; h < H; h++) {
        const float *Bg = Bv + (size_t)(h / Hg) * N, *Cg = Cv + (size_t)(h / Hg) * N;
        const float a = expf(dt[h] * A[h]);
        for (int p = 0; p < P; p++) {
            float *restrict s = state + ((size_t)h * P + p) * N;
            const float v = dt[h] * x[(size_t)h * P + p];
            float acc = 0.0f;
            for (int n = 0; n < N; n++) {
                s[n] = a * s[n] + v * Bg[n];
                acc += s[n] * Cg[n];
            }
            y[(size_t)h * P + p] = acc + D[h] * x[(size_t)h * P + p];
        }
    }
}
