// norm.c — see norm.h. Formulas: doc/architectures.md §3.1 (RMSNorm), §3.5 (L2 norm) and §3.7 (gated norms).
#include "norm.h"

#include <math.h>
#include <omp.h>
#include <string.h>

#include "activations.h"
#include "common.h"  // also the vector helpers used for the row reductions

void rmsnorm_forward(float *out, float *rstd, const float *inp, const float *w,
                     int64_t N, int C, float eps) {
    #pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const float *x = inp + n * C;
        float *y = out + n * C;
        act_vf acc = act_vsplat(0.0f);  // lane partial sums: vectorised, fixed order
        for (int c = 0; c < C; c += ACT_VL) {
            int m = C - c < ACT_VL ? C - c : ACT_VL;
            act_vf xv = act_vload_n(x + c, m);
            acc += xv * xv;
        }
        float r = 1.0f / sqrtf(act_hsum(acc) / (float)C + eps);
        for (int c = 0; c < C; c++) y[c] = x[c] * r * w[c];
        rstd[n] = r;
    }
}

// The weight gradients are summed per tile of NORM_ROWS rows (a task reads whole rows, contiguous), and
// the tiles' sums are added in tile order (`ordered`): the same bits for any thread count. (Column
// ranges per thread over all rows read one cache line per row, kilobytes apart, which the prefetchers
// do not follow.)
#define NORM_ROWS 64

void rmsnorm_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w,
                      const float *rstd, int64_t N, int C) {
    // dx = r (dy ⊙ w) − (r³/C) x Σ(dy ⊙ w ⊙ x), row by row; dw = Σ_rows dy ⊙ x · r.
    const int64_t tiles = (N + NORM_ROWS - 1) / NORM_ROWS;
    #pragma omp parallel for schedule(static, 1) ordered
    for (int64_t tile = 0; tile < tiles; tile++) {
        float dwt[C];
        memset(dwt, 0, sizeof dwt);
        const int64_t n1 = LL_MIN(N, (tile + 1) * NORM_ROWS);
        for (int64_t n = tile * NORM_ROWS; n < n1; n++) {
            const float *x = inp + n * C, *dy = dout + n * C;
            float *dx = dinp + n * C;
            float r = rstd[n];
            act_vf acc = act_vsplat(0.0f);
            for (int c = 0; c < C; c += ACT_VL) {
                int m = C - c < ACT_VL ? C - c : ACT_VL;
                acc += act_vload_n(dy + c, m) * act_vload_n(w + c, m) * act_vload_n(x + c, m);
            }
            float k = r * r * r * act_hsum(acc) / (float)C;
            for (int c = 0; c < C; c++) {
                dx[c] += r * dy[c] * w[c] - k * x[c];
                dwt[c] += dy[c] * x[c] * r;
            }
        }
        #pragma omp ordered
        for (int c = 0; c < C; c++) dw[c] += dwt[c];
    }
}

void gated_rmsnorm_forward(float *out, float *rstd, const float *x, const float *z, int ld_z,
                           const float *w, int64_t N, int C, int groups, float eps) {
    const int Cg = C / groups;
    #pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        for (int gi = 0; gi < groups; gi++) {
            const int off = gi * Cg;
            const float *xr = x + n * C + off, *zr = z + n * ld_z + off, *wg = w + off;
            float *y = out + n * C + off;
            // u = x ⊙ silu(z) is staged in the output row, then normalised in place.
            act_vf acc = act_vsplat(0.0f);
            for (int c = 0; c < Cg; c += ACT_VL) {
                int m = Cg - c < ACT_VL ? Cg - c : ACT_VL;
                act_vf u = act_vload_n(xr + c, m) * act_vsilu(act_vload_n(zr + c, m));
                act_vstore_n(y + c, u, m);
                acc += u * u;
            }
            float ss = act_hsum(acc);
            float r = 1.0f / sqrtf(ss / (float)Cg + eps);
            for (int c = 0; c < Cg; c++) y[c] = y[c] * r * wg[c];
            rstd[n * groups + gi] = r;
        }
    }
}

void gated_rmsnorm_backward(float *dx, float *dz, float *dw, const float *dout, const float *x,
                            const float *z, int ld_z, const float *w, const float *rstd,
                            int64_t N, int C, int groups) {
    // u = x ⊙ silu(z) is recomputed rather than saved. du is RMSNorm's dx at u (per group); then the
    // product rule: dx = du ⊙ silu(z), dz = du ⊙ x ⊙ silu'(z).
    const int Cg = C / groups;
    const int64_t tiles = (N + NORM_ROWS - 1) / NORM_ROWS;
    #pragma omp parallel for schedule(static, 1) ordered
    for (int64_t tile = 0; tile < tiles; tile++) {
        float dwt[C];   // Σ over this tile's rows of dy ⊙ u · r
        memset(dwt, 0, sizeof dwt);
        const int64_t n1 = LL_MIN(N, (tile + 1) * NORM_ROWS);
        for (int64_t n = tile * NORM_ROWS; n < n1; n++) {
            for (int gi = 0; gi < groups; gi++) {
                const int off = gi * Cg;
                const float *xr = x + n * C + off, *zr = z + n * ld_z + off, *dy = dout + n * C + off, *wg = w + off;
                float *dxr = dx + n * C + off, *dzr = dz + n * ld_z + off, *dwg = dwt + off;
                float r = rstd[n * groups + gi];
                act_vf acc = act_vsplat(0.0f);
                for (int c = 0; c < Cg; c += ACT_VL) {
                    int m = Cg - c < ACT_VL ? Cg - c : ACT_VL;
                    acc += act_vload_n(dy + c, m) * act_vload_n(wg + c, m) * act_vload_n(xr + c, m) *
                           act_vsilu(act_vload_n(zr + c, m));
                }
                float k = r * r * r * act_hsum(acc) / (float)Cg;
                for (int c = 0; c < Cg; c += ACT_VL) {
                    int m = Cg - c < ACT_VL ? Cg - c : ACT_VL;
                    act_vf zv = act_vload_n(zr + c, m), xv = act_vload_n(xr + c, m), dyv = act_vload_n(dy + c, m);
                    act_vf s = act_vsigmoid(zv);
                    act_vf g = zv * s;                                // silu(z)
                    act_vf gp = s * (1.0f + zv * (1.0f - s));         // silu'(z)
                    act_vf du = r * dyv * act_vload_n(wg + c, m) - k * xv * g;
                    act_vstore_n(dxr + c, act_vload_n(dxr + c, m) + du * g, m);
                    act_vstore_n(dzr + c, act_vload_n(dzr + c, m) + du * xv * gp, m);
                    act_vstore_n(dwg + c, act_vload_n(dwg + c, m) + dyv * (xv * g) * r, m);
                }
            }
        }
        #pragma omp ordered
        for (int c = 0; c < C; c++) dw[c] += dwt[c];
    }
}

void l2norm_forward(float *out, float *rstd, const float *inp, int ld_in, int64_t N, int H, int D, float scale,
                    float eps) {
    #pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        for (int h = 0; h < H; h++) {
            const float *x = inp + n * ld_in + (size_t)h * D;
            float *y = out + ((size_t)n * H + h) * D;
            act_vf acc = act_vsplat(0.0f);
            for (int c = 0; c < D; c += ACT_VL) {
                int m = D - c < ACT_VL ? D - c : ACT_VL;
                act_vf xv = act_vload_n(x + c, m);
                acc += xv * xv;
            }
            const float r = 1.0f / sqrtf(act_hsum(acc) + eps);
            const float s = scale * r;
            for (int c = 0; c < D; c++) y[c] = x[c] * s;
            rstd[(size_t)n * H + h] = r;
        }
    }
}

void l2norm_backward(float *dinp, const float *dout, const float *inp, const float *rstd, int ld_in, int64_t N,
                     int H, int D, float scale) {
    #pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        for (int h = 0; h < H; h++) {
            const float *x = inp + n * ld_in + (size_t)h * D, *dy = dout + ((size_t)n * H + h) * D;
            float *dx = dinp + n * ld_in + (size_t)h * D;
            const float r = rstd[(size_t)n * H + h];
            act_vf acc = act_vsplat(0.0f);
            for (int c = 0; c < D; c += ACT_VL) {
                int m = D - c < ACT_VL ? D - c : ACT_VL;
                acc += act_vload_n(dy + c, m) * act_vload_n(x + c, m);
            }
            const float a = scale * r, b = scale * r * r * r * act_hsum(acc);
            for (int c = 0; c < D; c++) dx[c] += a * dy[c] - b * x[c];
        }
    }
}
