// gates.h — the per-token, per-head gates computed from projections, shared by the mixers:
//   λ = softplus(L ⊙ dl)                            log-linear level weights (Mamba-2 and GDN)
//   β = σ(b),  g = −exp(A_log) · softplus(a + dt_bias)   Gated DeltaNet write strength and log-decay
// (doc/architectures.md §4.3, doc/loglinear-attention.md §2).
// Inputs may be column slices of wider projection rows (ld_* = row strides in floats). Backward
// accumulates; the parameter gradients are reduced column by column in row order (bit-reproducible
// for any thread count).
#ifndef LL_GATES_H
#define LL_GATES_H

#include <stdint.h>

// lam[n, j] = softplus(L[j] · dl[n·ld_dl + j]), j < HL.
void lambda_forward(float *lam,        // (rows, HL)
                    const float *dl,   // (rows, ld_dl), first HL columns
                    int ld_dl,
                    const float *L,    // (HL)
                    int64_t rows, int HL);

void lambda_backward(float *ddl,         // (rows, ld_ddl) +=, first HL columns
                     int ld_ddl,
                     float *dL,          // (HL) +=
                     const float *dlam,  // (rows, HL)
                     const float *dl,    // (rows, ld_dl)
                     int ld_dl,
                     const float *L,     // (HL)
                     int64_t rows, int HL);

// beta[n, h] = σ(b[n·ld + h]);  g[n, h] = −exp(A_log[h]) · softplus(a[n·ld + h] + dt_bias[h]).
void gdn_gates_forward(float *beta,          // (rows, H)
                       float *g,             // (rows, H)
                       const float *a,       // (rows, ld), first H columns
                       const float *b,       // (rows, ld), first H columns
                       int ld,
                       const float *A_log,   // (H)
                       const float *dt_bias, // (H)
                       int64_t rows, int H);

void gdn_gates_backward(float *da,             // (rows, ld) +=
                        float *db,             // (rows, ld) +=
                        float *dA_log,         // (H) +=
                        float *ddt_bias,       // (H) +=
                        const float *dbeta,    // (rows, H)
                        const float *dg,       // (rows, H)
                        const float *beta,     // (rows, H) saved
                        const float *g,        // (rows, H) saved
                        const float *a,        // (rows, ld)
                        int ld,
                        const float *A_log, const float *dt_bias, int64_t rows, int H);

#endif
