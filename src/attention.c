// attention.c — see attention.h.
#include "attention.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

#include "activations.h"

// Query rows per block. 64..128 keeps the per-block sgemms reasonably shaped (the inner dimension of
// the key-side products is the block size) while the masked waste on the diagonal block stays small.
#ifndef ATTN_BLOCK
#define ATTN_BLOCK 128
#endif
// cos/sin values computed at once per position in RoPE (stack buffer).
#define ROPE_CHUNK 64

// cos and sign·sin of the angles t·inv_freq_j for j = j0..j0+nj−1. fp32 like PyTorch:
// inv_freq = 1 / θ^(2j/hd), angle = t · inv_freq.
static void rope_angles(float *cs, float *sn, int j0, int nj, int t, int hd, float theta, float sign) {
    for (int j = 0; j < nj; j++) {
        float inv_freq = 1.0f / powf(theta, (float)(2 * (j0 + j)) / (float)hd);
        float ang = (float)t * inv_freq;
        cs[j] = cosf(ang);
        sn[j] = sign * sinf(ang);
    }
}

// Rotates the pairs (j0 + j, j0 + j + hd/2), j < nj, of the H head vectors of one position.
static void rope_rotate(float *x, int H, int hd, int j0, int nj, const float *cs, const float *sn) {
    int half = hd / 2;
    for (int h = 0; h < H; h++) {
        float *x1 = x + (int64_t)h * hd + j0;
        float *x2 = x1 + half;
        for (int j = 0; j < nj; j++) {
            float a = x1[j], c = x2[j];
            x1[j] = a * cs[j] - c * sn[j];
            x2[j] = c * cs[j] + a * sn[j];
        }
    }
}

// Shared by forward (sign = +1) and backward (sign = −1: rotation by −angle = the transpose).
static void rope_apply(float *x, int B, int T, int H, int hd, float theta, float sign) {
    int half = hd / 2;
    #pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++) {
        float cs[ROPE_CHUNK], sn[ROPE_CHUNK];
        for (int j0 = 0; j0 < half; j0 += ROPE_CHUNK) {
            int nj = half - j0 < ROPE_CHUNK ? half - j0 : ROPE_CHUNK;
            rope_angles(cs, sn, j0, nj, t, hd, theta, sign);
            for (int b = 0; b < B; b++) rope_rotate(x + ((int64_t)b * T + t) * H * hd, H, hd, j0, nj, cs, sn);
        }
    }
}

void rope_forward_at(float *x, int H, int hd, int pos, float theta) {
    float cs[ROPE_CHUNK], sn[ROPE_CHUNK];
    for (int j0 = 0; j0 < hd / 2; j0 += ROPE_CHUNK) {
        int nj = hd / 2 - j0 < ROPE_CHUNK ? hd / 2 - j0 : ROPE_CHUNK;
        rope_angles(cs, sn, j0, nj, pos, hd, theta, 1.0f);
        rope_rotate(x, H, hd, j0, nj, cs, sn);
    }
}

void rope_forward(float *x, int B, int T, int H, int hd, float theta) {
    rope_apply(x, B, T, H, hd, theta, 1.0f);
}

void rope_backward(float *dx, int B, int T, int H, int hd, float theta) {
    rope_apply(dx, B, T, H, hd, theta, -1.0f);
}

// Per thread: the score/probability block S and the dP block (ATTN_BLOCK × T each) and the
// per-row D = rowsum(dO ⊙ O) (ATTN_BLOCK), padded to whole cache lines.
static size_t attn_thread_floats(int T) {
    size_t n = 2 * (size_t)ATTN_BLOCK * (size_t)T + ATTN_BLOCK;
    return (n + 15) / 16 * 16;
}

// Keys visible to query rows [i0, i0+m): [lo, i0+m), lo = 0 without a window.
static int window_first_key(int i0, int window) { return window > 0 && i0 - window + 1 > 0 ? i0 - window + 1 : 0; }

static int block_rows(int T, int i0) { return T - i0 < ATTN_BLOCK ? T - i0 : ATTN_BLOCK; }
static int attn_blocks(int T) { return (T + ATTN_BLOCK - 1) / ATTN_BLOCK; }

// Query block i's work: rows × the keys they can see.
static double block_work(int T, int i, int window) {
    const int i0 = i * ATTN_BLOCK, m = block_rows(T, i0);
    return (double)m * (i0 + m - window_first_key(i0, window));
}

// The backward's segments: each (batch, kv head) splits its query blocks into S runs of about equal
// work (visible keys × rows), S chosen from the shapes alone so that there are at least ATTN_MIN_TASKS
// tasks (a single long sequence with few heads still fills many cores). A segment adds into dq directly
// and into its own partial dk / dv over the keys it sees; the partials are then summed in segment
// order, so the result does not depend on the thread count. With S = 1 (B·Hkv ≥ ATTN_MIN_TASKS) the
// task adds into dk / dv directly.
#define ATTN_MIN_TASKS 48
#define ATTN_MAX_SEGMENTS 64

typedef struct {
    int S;                              // segments per (batch, kv head)
    int first[ATTN_MAX_SEGMENTS + 1];   // query blocks [first[s], first[s+1]) form segment s
    int klo[ATTN_MAX_SEGMENTS];         // keys [klo[s], khi[s]) are seen by segment s
    int khi[ATTN_MAX_SEGMENTS];
    size_t off[ATTN_MAX_SEGMENTS + 1];  // partial dk of segment s at off[s] (rows · hd), dv after all dk
} AttnSegments;

static AttnSegments attn_segments(int B, int T, int Hkv, int hd, int window) {
    AttnSegments g;
    const int nb = attn_blocks(T), tasks = B * Hkv;
    int S = tasks >= ATTN_MIN_TASKS ? 1 : (ATTN_MIN_TASKS + tasks - 1) / tasks;
    if (S > nb) S = nb;
    if (S > ATTN_MAX_SEGMENTS) S = ATTN_MAX_SEGMENTS;
    if (S < 1) S = 1;
    g.S = S;
    double total = 0;
    for (int i = 0; i < nb; i++) total += block_work(T, i, window);
    g.first[0] = 0;
    double acc = 0;
    int i = 0;
    for (int s = 1; s < S; s++) {   // the first block where the running work reaches s/S of the total
        while (i < nb - (S - s) && (i < g.first[s - 1] + 1 || acc < total * s / S))
            acc += block_work(T, i++, window);
        g.first[s] = i;
    }
    g.first[S] = nb;
    g.off[0] = 0;
    for (int s = 0; s < S; s++) {
        g.klo[s] = window_first_key(g.first[s] * ATTN_BLOCK, window);
        int end = g.first[s + 1] * ATTN_BLOCK;
        g.khi[s] = end < T ? end : T;
        g.off[s + 1] = g.off[s] + (S > 1 ? (size_t)(g.khi[s] - g.klo[s]) * hd : 0);
    }
    return g;
}

size_t attention_scratch_floats(int B, int T, int H, int Hkv, int hd, int window) {
    (void)H;
    AttnSegments g = attn_segments(B, T, Hkv, hd, window);
    // per thread blocks, then B·Hkv sets of partial dk and dv
    return (size_t)omp_get_max_threads() * attn_thread_floats(T) + 2 * (size_t)B * Hkv * g.off[g.S];
}

void attention_forward(float *out, float *lse, const float *q, const float *k, const float *v,
                       int B, int T, int H, int Hkv, int hd, int window, float *scratch) {
    const int group = H / Hkv;
    const int ldq = H * hd, ldk = Hkv * hd;  // row strides of (B,T,H,hd) and (B,T,Hkv,hd)
    const float scale = 1.0f / sqrtf((float)hd);
    const size_t per_thread = attn_thread_floats(T);
    const int nb = attn_blocks(T);

    // One task per (batch, head, query block), the last blocks (most keys) first.
    #pragma omp parallel for schedule(dynamic, 1)
    for (int64_t t = 0; t < (int64_t)B * H * nb; t++) {
        const int i0 = (nb - 1 - (int)(t / (B * H))) * ATTN_BLOCK, bh = (int)(t % (B * H));
        const int b = bh / H, h = bh % H, kvh = h / group;
        float *S = scratch + (size_t)omp_get_thread_num() * per_thread;  // (ATTN_BLOCK, ≤T)
        const float *qh = q + (int64_t)b * T * ldq + (int64_t)h * hd;
        const float *kh = k + (int64_t)b * T * ldk + (int64_t)kvh * hd;
        const float *vh = v + (int64_t)b * T * ldk + (int64_t)kvh * hd;
        float *oh = out + (int64_t)b * T * ldq + (int64_t)h * hd;
        float *lse_h = lse + ((int64_t)b * H + h) * T;

        const int m = block_rows(T, i0);
        const int lo = window_first_key(i0, window);
        const int n = i0 + m - lo;  // keys lo..lo+n−1 can be seen by this block (causal, windowed)
        // S (m, n) = scale · Q[i0:i0+m] Kᵀ[:, lo:lo+n]
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, hd, scale,
                    qh + (int64_t)i0 * ldq, ldq, kh + (int64_t)lo * ldk, ldk, 0.0f, S, n);
        for (int r = 0; r < m; r++) {
            int last = i0 + r - lo;                                  // the query's own key, local index
            int first = window_first_key(i0 + r, window) - lo;      // its first visible key
            float *row = S + (int64_t)r * n;
            float mx = act_max(row + first, last - first + 1);
            float sum = act_exp_shift_sum(row + first, row + first, last - first + 1, mx);
            float inv = 1.0f / sum;
            for (int j = 0; j < first; j++) row[j] = 0.0f;           // outside the window: P = 0
            for (int j = first; j <= last; j++) row[j] *= inv;
            for (int j = last + 1; j < n; j++) row[j] = 0.0f;       // masked: P = 0
            lse_h[i0 + r] = mx + logf(sum);
        }
        // O[i0:i0+m] (m, hd) = P (m, n) · V[lo:lo+n] (n, hd)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, hd, n, 1.0f,
                    S, n, vh + (int64_t)lo * ldk, ldk, 0.0f, oh + (int64_t)i0 * ldq, ldq);
    }
}

void attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q,
                        const float *k, const float *v, const float *out, const float *lse,
                        int B, int T, int H, int Hkv, int hd, int window, float *scratch) {
    const int group = H / Hkv;
    const int ldq = H * hd, ldk = Hkv * hd;
    const float scale = 1.0f / sqrtf((float)hd);
    const size_t per_thread = attn_thread_floats(T);
    const AttnSegments g = attn_segments(B, T, Hkv, hd, window);
    const int S = g.S;
    float *partial = scratch + (size_t)omp_get_max_threads() * per_thread;  // (B·Hkv, S) partial dk, then dv
    const size_t part_dv = (size_t)B * Hkv * g.off[S];

    // One task per (batch, kv head, segment): its query heads and blocks run in order.
    #pragma omp parallel for schedule(dynamic, 1)
    for (int t = 0; t < B * Hkv * S; t++) {
        const int s = t % S, bk = t / S, b = bk / Hkv, kvh = bk % Hkv;
        float *P = scratch + (size_t)omp_get_thread_num() * per_thread;  // (ATTN_BLOCK, ≤T)
        float *dP = P + (size_t)ATTN_BLOCK * T;                           // (ATTN_BLOCK, ≤T)
        float *D = dP + (size_t)ATTN_BLOCK * T;                           // (ATTN_BLOCK)
        const float *kh = k + (int64_t)b * T * ldk + (int64_t)kvh * hd;
        const float *vh = v + (int64_t)b * T * ldk + (int64_t)kvh * hd;
        // Where this task adds dK / dV of key row j: row j − kbase of (dkh, lddk).
        float *dkh, *dvh;
        int kbase, lddk;
        if (S == 1) {
            dkh = dk + (int64_t)b * T * ldk + (int64_t)kvh * hd;
            dvh = dv + (int64_t)b * T * ldk + (int64_t)kvh * hd;
            kbase = 0, lddk = ldk;
        } else {
            const size_t rows = (size_t)(g.khi[s] - g.klo[s]);
            dkh = partial + (size_t)bk * g.off[S] + g.off[s];
            dvh = dkh + part_dv;
            memset(dkh, 0, rows * hd * sizeof(float));
            memset(dvh, 0, rows * hd * sizeof(float));
            kbase = g.klo[s], lddk = hd;
        }

        for (int h = kvh * group; h < (kvh + 1) * group; h++) {
            int64_t qoff = (int64_t)b * T * ldq + (int64_t)h * hd;
            const float *qh = q + qoff, *oh = out + qoff, *doh = dout + qoff;
            float *dqh = dq + qoff;
            const float *lse_h = lse + ((int64_t)b * H + h) * T;

            for (int i0 = g.first[s] * ATTN_BLOCK; i0 < g.first[s + 1] * ATTN_BLOCK && i0 < T; i0 += ATTN_BLOCK) {
                int m = block_rows(T, i0);
                int lo = window_first_key(i0, window);
                int n = i0 + m - lo;
                const float *qb = qh + (int64_t)i0 * ldq, *dob = doh + (int64_t)i0 * ldq;
                const float *kb = kh + (int64_t)lo * ldk, *vb = vh + (int64_t)lo * ldk;
                float *dkb = dkh + (int64_t)(lo - kbase) * lddk, *dvb = dvh + (int64_t)(lo - kbase) * lddk;
                // Recompute P = exp(scale · Q Kᵀ − lse) on the visible keys, 0 elsewhere.
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, hd, scale,
                            qb, ldq, kb, ldk, 0.0f, P, n);
                for (int r = 0; r < m; r++) {
                    int last = i0 + r - lo, first = window_first_key(i0 + r, window) - lo;
                    float *row = P + (int64_t)r * n;
                    float l = lse_h[i0 + r];
                    act_exp_shift(row + first, row + first, last - first + 1, l);
                    for (int j = 0; j < first; j++) row[j] = 0.0f;
                    for (int j = last + 1; j < n; j++) row[j] = 0.0f;
                    // D_i = rowsum(dO_i ⊙ O_i) = Σ_j P_ij dP_ij
                    const float *o_r = oh + (int64_t)(i0 + r) * ldq, *do_r = doh + (int64_t)(i0 + r) * ldq;
                    float d = 0.0f;
                    for (int c = 0; c < hd; c++) d += do_r[c] * o_r[c];
                    D[r] = d;
                }
                // dV[lo:lo+n] (n, hd) += Pᵀ (n, m) · dO (m, hd)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, hd, m, 1.0f,
                            P, n, dob, ldq, 1.0f, dvb, lddk);
                // dP (m, n) = dO (m, hd) · V[lo:lo+n]ᵀ (hd, n)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, hd, 1.0f,
                            dob, ldq, vb, ldk, 0.0f, dP, n);
                // dS = P ⊙ (dP − D), in place in dP (masked entries become 0 through P)
                for (int r = 0; r < m; r++) {
                    float *pr = P + (int64_t)r * n, *dpr = dP + (int64_t)r * n;
                    float d = D[r];
                    for (int j = 0; j < n; j++) dpr[j] = pr[j] * (dpr[j] - d);
                }
                // dQ (m, hd) += scale · dS (m, n) · K[lo:lo+n] (n, hd)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, hd, n, scale,
                            dP, n, kb, ldk, 1.0f, dqh + (int64_t)i0 * ldq, ldq);
                // dK[lo:lo+n] (n, hd) += scale · dSᵀ (n, m) · Q (m, hd)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, hd, m, scale,
                            dP, n, qb, ldq, 1.0f, dkb, lddk);
            }
        }
    }
    if (S == 1) return;

    // dk, dv += the segments' partials, in segment order; one task per (batch, kv head, key block).
    const int nb = attn_blocks(T);
    #pragma omp parallel for schedule(static)
    for (int t = 0; t < B * Hkv * nb; t++) {
        const int bk = t / nb, j0 = (t % nb) * ATTN_BLOCK, j1 = block_rows(T, j0) + j0;
        const int b = bk / Hkv, kvh = bk % Hkv;
        for (int j = j0; j < j1; j++) {
            float *dkr = dk + ((int64_t)b * T + j) * ldk + (int64_t)kvh * hd;
            float *dvr = dv + ((int64_t)b * T + j) * ldk + (int64_t)kvh * hd;
            for (int s = 0; s < S; s++) {
                if (j < g.klo[s] || j >= g.khi[s]) continue;
                const float *pk = partial + (size_t)bk * g.off[S] + g.off[s] + (size_t)(j - g.klo[s]) * hd;
                const float *pv = pk + part_dv;
                for (int c = 0; c < hd; c++) {
                    dkr[c] += pk[c];
                    dvr[c] += pv[c];
                }
            }
        }
    }
}

void attention_decode_step(float *out, float *p, const float *q, const float *kc, const float *vc, int64_t ld,
                           int64_t pos, int H, int Hkv, int hd, int window) {
    const float scale = 1.0f / sqrtf((float)hd);
    const int group = H / Hkv;
    const int64_t first = window > 0 && pos - window + 1 > 0 ? pos - window + 1 : 0;   // first visible key
    for (int h = 0; h < H; h++) {
        const float *qh = q + (size_t)h * hd;
        const int kvh = h / group;
        float mx = -INFINITY;
        for (int64_t j = first; j <= pos; j++) {
            const float *kj = kc + j * ld + (size_t)kvh * hd;
            float sdot = 0;
            for (int i = 0; i < hd; i++) sdot += qh[i] * kj[i];
            p[j] = sdot * scale;
            if (p[j] > mx) mx = p[j];
        }
        double sum = 0;
        for (int64_t j = first; j <= pos; j++) { p[j] = expf(p[j] - mx); sum += p[j]; }
        float *oh = out + (size_t)h * hd;
        memset(oh, 0, (size_t)hd * sizeof(float));
        for (int64_t j = first; j <= pos; j++) {
            const float *vj = vc + j * ld + (size_t)kvh * hd;
            const float pj = (float)(p[j] / sum);
            for (int i = 0; i < hd; i++) oh[i] += pj * vj[i];
        }
    }
}
