// conv.c — see conv.h.
#include "conv.h"

#include <omp.h>
#include <stdint.h>
#include <string.h>

#include "activations.h"

// Channels per tile (one thread owns a tile): 64 floats = 4 cache lines per row, narrowed (down to 16,
// one line) while there are fewer than two tiles per thread, so that a short batch still feeds every
// thread (B = 1 with 640 channels is 10 tiles). Each channel's arithmetic is the same for any width, so the
// results do not depend on it (nor on the thread count).
#define CONV_CBLOCK 64

static int conv_block_width(int64_t sequences, int C) {
    const int64_t want = 2 * (int64_t)omp_get_max_threads();
    int w = CONV_CBLOCK;
    while (w > 16 && sequences * ((C + w - 1) / w) < want) w /= 2;
    return w;
}

// Both passes work on (channel block × sequence) tiles: the block's taps are copied into a small
// tap-major local array (K × CONV_CBLOCK floats; K is the kernel width, 4 in every paper config) so the
// inner loops run over contiguous channels and vectorise.
static void conv_load_taps(float *wt, const float *w, int c0, int nc, int K) {
    for (int k = 0; k < K; k++)
        for (int i = 0; i < nc; i++) wt[k * CONV_CBLOCK + i] = w[(int64_t)(c0 + i) * K + k];
}

void conv1d_silu_forward(float *out, float *pre, const float *inp, const float *w, const float *bias,
                         int B, int T, int C, int K, int ld_in, int ld_out) {
    const int cw = conv_block_width(B, C), nblocks = (C + cw - 1) / cw;
    #pragma omp parallel for schedule(static)
    for (int task = 0; task < B * nblocks; task++) {
        int b = task / nblocks, blk = task % nblocks;
        int c0 = blk * cw, nc = C - c0 < cw ? C - c0 : cw;
        float wt[K * CONV_CBLOCK];
        conv_load_taps(wt, w, c0, nc, K);
        int64_t row0 = (int64_t)b * T;
        for (int t = 0; t < T; t++) {
            float *p = pre + (row0 + t) * C + c0;
            for (int i = 0; i < nc; i++) p[i] = bias ? bias[c0 + i] : 0.0f;
            // Taps reaching before the start of the sequence see zeros and are skipped.
            for (int k = 0; k < K; k++) {
                int tt = t - (K - 1) + k;
                if (tt < 0) continue;
                const float *x = inp + (row0 + tt) * ld_in + c0;
                const float *wk = wt + k * CONV_CBLOCK;
                for (int i = 0; i < nc; i++) p[i] += wk[i] * x[i];
            }
            float *o = out + (row0 + t) * ld_out + c0;
            for (int i = 0; i < nc; i += ACT_VL) {
                int m = nc - i < ACT_VL ? nc - i : ACT_VL;
                act_vstore_n(o + i, act_vsilu(act_vload_n(p + i, m)), m);
            }
        }
    }
}

void conv1d_silu_backward(float *dinp, float *dw, float *dbias, const float *dout, const float *pre,
                          const float *inp, const float *w, int B, int T, int C, int K, int ld_in,
                          int ld_out) {
    // One task per channel block over all sequences: it owns dw/dbias of its channels (summed locally
    // in fixed (b, t) order, then added once) and the dinp columns of its channels.
    const int cw = conv_block_width(1, C), nblocks = (C + cw - 1) / cw;
    #pragma omp parallel for schedule(dynamic, 1)
    for (int blk = 0; blk < nblocks; blk++) {
        int c0 = blk * cw, nc = C - c0 < cw ? C - c0 : cw;
        float wt[K * CONV_CBLOCK], dwt[K * CONV_CBLOCK], dbt[CONV_CBLOCK], dpre[CONV_CBLOCK];
        conv_load_taps(wt, w, c0, nc, K);
        memset(dwt, 0, sizeof dwt);
        memset(dbt, 0, sizeof dbt);
        for (int b = 0; b < B; b++) {
            int64_t row0 = (int64_t)b * T;
            for (int t = 0; t < T; t++) {
                const float *dy = dout + (row0 + t) * ld_out + c0;
                const float *p = pre + (row0 + t) * C + c0;
                // out = silu(pre): dpre = dout ⊙ silu'(pre)
                for (int i = 0; i < nc; i += ACT_VL) {
                    int m = nc - i < ACT_VL ? nc - i : ACT_VL;
                    act_vstore_n(dpre + i, act_vload_n(dy + i, m) * act_vsilu_grad(act_vload_n(p + i, m)), m);
                }
                for (int i = 0; i < nc; i++) dbt[i] += dpre[i];
                // pre[t] = Σ_k w_k x[t−K+1+k]: scatter back into the K inputs this output read.
                for (int k = 0; k < K; k++) {
                    int tt = t - (K - 1) + k;
                    if (tt < 0) continue;
                    const float *x = inp + (row0 + tt) * ld_in + c0;
                    float *dx = dinp + (row0 + tt) * ld_in + c0;
                    float *dwk = dwt + k * CONV_CBLOCK;
                    const float *wk = wt + k * CONV_CBLOCK;
                    for (int i = 0; i < nc; i++) {
                        dwk[i] += dpre[i] * x[i];
                        dx[i] += wk[i] * dpre[i];
                    }
                }
            }
        }
        for (int k = 0; k < K; k++)
            for (int i = 0; i < nc; i++) dw[(int64_t)(c0 + i) * K + k] += dwt[k * CONV_CBLOCK + i];
        if (dbias)
            for (int i = 0; i < nc; i++) dbias[c0 + i] += dbt[i];
    }
}

void conv1d_silu_step(float *out, float *state, const float *inp, const float *w, const float *bias,
                      int C, int K) {
    #pragma omp parallel for schedule(static) if (C >= 4096)
    for (int c = 0; c < C; c++) {
        const float *wc = w + (int64_t)c * K;
        float *s = state + (int64_t)c * (K - 1);
        // Same summation order as the forward: bias, then taps oldest to newest.
        float p = bias ? bias[c] : 0.0f;
        for (int k = 0; k < K - 1; k++) p += wc[k] * s[k];
        p += wc[K - 1] * inp[c];
        for (int k = 0; k + 1 < K - 1; k++) s[k] = s[k + 1];
        if (K > 1) s[K - 2] = inp[c];
        out[c] = act_silu(p);
    }
}
