// conv.h — causal depthwise conv1d + bias + SiLU: Mamba-2's conv1d and fla's ShortConvolution
// (doc/architectures.md §3.4). Per channel c:
//     pre[t] = bias[c] + Σ_{k<K} w[c·K + k] · x[t − (K−1) + k],   x[<0] = 0 (each sequence starts empty)
//     out[t] = silu(pre[t])
// so tap k = K−1 multiplies the current token. Weight layout is PyTorch's [C, 1, K] flattened.
// The input/output may be column slices of wider rows (ld_in / ld_out are the row strides in floats),
// e.g. the xBC part of the Mamba-2 in_proj output.
#ifndef LL_CONV_H
#define LL_CONV_H

void conv1d_silu_forward(float *out,         // (B, T, C), row stride ld_out
                         float *pre,         // (B, T, C), row stride C: saved pre-activation
                         const float *inp,   // (B, T, *), row stride ld_in, first C channels used
                         const float *w,     // (C, K)
                         const float *bias,  // (C) or NULL
                         int B, int T, int C, int K, int ld_in, int ld_out);

// Accumulates (+=) into dinp, dw and dbias (NULL: no bias). Parallel over (sequence, time tile, channel
// slab) tasks; each task sums its share of dw / dbias and the tasks' sums are added in task order:
// bit-reproducible for any thread count.
void conv1d_silu_backward(float *dinp,        // (B, T, *), row stride ld_in, first C channels +=
                          float *dw,          // (C, K) +=
                          float *dbias,       // (C) += or NULL
                          const float *dout,  // (B, T, C), row stride ld_out
                          const float *pre,   // (B, T, C), row stride C
                          const float *inp,   // (B, T, *), row stride ld_in
                          const float *w,     // (C, K)
                          int B, int T, int C, int K, int ld_in, int ld_out);

// One decoding step. state holds the previous K−1 inputs of each channel, oldest first; it is
// shifted and the new input appended. Start a sequence with a zeroed state.
void conv1d_silu_step(float *out,         // (C)
                      float *state,       // (C, K−1) updated in place
                      const float *inp,   // (C)
                      const float *w,     // (C, K)
                      const float *bias,  // (C) or NULL
                      int C, int K);

#endif
