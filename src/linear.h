// linear.h — fully connected layer y = x Wᵀ (+ b) with W stored [OC, IC] as in PyTorch nn.Linear.
// The matmuls go through OpenBLAS (cblas_sgemm); call these outside OpenMP parallel regions so the
// BLAS uses all threads.
#ifndef LL_LINEAR_H
#define LL_LINEAR_H

#include <stdint.h>

void linear_forward(float *out,         // (N, OC)
                    const float *inp,   // (N, IC)
                    const float *W,     // (OC, IC)
                    const float *bias,  // (OC) or NULL
                    int64_t N, int IC, int OC);

// Accumulates (+=) into dinp, dW and dbias; pass NULL for dinp (e.g. the first layer's input) or
// dbias (no bias) to skip them. dbias is summed column-parallel in fixed row order: bit-reproducible
// for any thread count.
void linear_backward(float *dinp,         // (N, IC) or NULL
                     float *dW,           // (OC, IC)
                     float *dbias,        // (OC) or NULL
                     const float *dout,   // (N, OC)
                     const float *inp,    // (N, IC)
                     const float *W,      // (OC, IC)
                     int64_t N, int IC, int OC);

#endif
