// swiglu.h — the SwiGLU nonlinearity of fla's GatedMLP: h = silu(gate) ⊙ up (doc/architectures.md §3.6).
// The three projections around it are plain linear layers (linear.h). Elementwise, so any row
// layout works: n is the total element count N·I.
#ifndef LL_SWIGLU_H
#define LL_SWIGLU_H

#include <stdint.h>

void swiglu_forward(float *out,         // (N, I)
                    const float *gate,  // (N, I)
                    const float *up,    // (N, I)
                    int64_t n);         // N·I

// dgate += dout ⊙ up ⊙ silu'(gate);  dup += dout ⊙ silu(gate)
void swiglu_backward(float *dgate,       // (N, I) +=
                     float *dup,         // (N, I) +=
                     const float *dout,  // (N, I)
                     const float *gate,  // (N, I)
                     const float *up,    // (N, I)
                     int64_t n);

#endif
