// norm.h — RMSNorm (fla RMSNorm, no bias) and Mamba-2's gated RMSNorm (norm_before_gate=False).
// Forward saves the per-row 1/rms (rstd) for the backward. Backward accumulates (+=) into every
// gradient. The weight-gradient reductions over rows are summed per tile of rows and the tiles added in
// tile order, so they are bit-reproducible for any thread count.
#ifndef LL_NORM_H
#define LL_NORM_H

#include <stdint.h>

// y = x · rstd · w, rstd = 1/sqrt(mean(x²) + eps) per row.
void rmsnorm_forward(float *out,        // (N, C)
                     float *rstd,       // (N) saved
                     const float *inp,  // (N, C)
                     const float *w,    // (C)
                     int64_t N, int C, float eps);

void rmsnorm_backward(float *dinp,        // (N, C) +=
                      float *dw,          // (C) +=
                      const float *dout,  // (N, C)
                      const float *inp,   // (N, C)
                      const float *w,     // (C)
                      const float *rstd,  // (N)
                      int64_t N, int C);

// Mamba-2 gated norm: y = RMSNorm(x ⊙ silu(z)) ⊙ w, normalised separately over each of `groups` equal
// slices of the C channels (mamba_ssm's group_size = C / n_groups; 1 group = the whole row, as fla's
// RMSNormGated used by the log-linear model). z is read from the first C columns of rows of length ld_z
// (a slice of the in_proj output). rstd is (N, groups).
void gated_rmsnorm_forward(float *out,      // (N, C)
                           float *rstd,     // (N, groups) saved
                           const float *x,  // (N, C)
                           const float *z,  // (N, ld_z), first C columns used
                           int ld_z,
                           const float *w,  // (C)
                           int64_t N, int C, int groups, float eps);

void gated_rmsnorm_backward(float *dx,          // (N, C) +=
                            float *dz,          // (N, ld_z) +=, first C columns only
                            float *dw,          // (C) +=
                            const float *dout,  // (N, C)
                            const float *x,     // (N, C)
                            const float *z,     // (N, ld_z)
                            int ld_z,
                            const float *w,     // (C)
                            const float *rstd,  // (N, groups)
                            int64_t N, int C, int groups);

// Per-head L2 normalisation (Gated DeltaNet q and k, fla l2norm): row n, head h of D channels,
//     out = scale · x / sqrt(Σ x² + eps)
// x is read from rows of stride ld_in (a column slice of a wider row); out is contiguous (N, H, D).
// rstd (N·H) saves 1/sqrt(Σ x² + eps) for the backward.
void l2norm_forward(float *out,        // (N, H, D)
                    float *rstd,       // (N, H) saved
                    const float *inp,  // (N, ld_in), first H·D columns used
                    int ld_in, int64_t N, int H, int D, float scale, float eps);

// dx += scale · (r dy − r³ x Σ(dy ⊙ x)) per (row, head).
void l2norm_backward(float *dinp,        // (N, ld_in) +=, first H·D columns
                     const float *dout,  // (N, H, D)
                     const float *inp,   // (N, ld_in)
                     const float *rstd,  // (N, H)
                     int ld_in, int64_t N, int H, int D, float scale);

#endif
