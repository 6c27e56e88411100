// norm.h — RMSNorm (fla RMSNorm, no bias) and Mamba-2's gated RMSNorm (norm_before_gate=False).
// Forward saves the per-row 1/rms (rstd) for the backward. Backward accumulates (+=) into every
// gradient. The weight-gradient reductions over rows are column-parallel in fixed row order, so they
// are bit-reproducible for any thread count.
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

// Mamba-2 gated norm: y = RMSNorm_C(x ⊙ silu(z)) ⊙ w, normalised over the whole row of C channels
// (ngroups = 1). z is read from the first C columns of rows of length ld_z (it is a slice of the
// in_proj output).
void gated_rmsnorm_forward(float *out,      // (N, C)
                           float *rstd,     // (N) saved
                           const float *x,  // (N, C)
                           const float *z,  // (N, ld_z), first C columns used
                           int ld_z,
                           const float *w,  // (C)
                           int64_t N, int C, float eps);

void gated_rmsnorm_backward(float *dx,          // (N, C) +=
                            float *dz,          // (N, ld_z) +=, first C columns only
                            float *dw,          // (C) +=
                            const float *dout,  // (N, C)
                            const float *x,     // (N, C)
                            const float *z,     // (N, ld_z)
                            int ld_z,
                            const float *w,     // (C)
                            const float *rstd,  // (N)
                            int64_t N, int C);

#endif
