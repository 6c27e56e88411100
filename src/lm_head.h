// lm_head.h — token embedding and the fused LM head + cross-entropy. The loss is computed chunk_rows
// rows at a time so the (N, V) logits never exist at once (as fla's FusedLinearCrossEntropyLoss).
// Token ids are trusted here: the data loader validates them against V.
#ifndef LL_LM_HEAD_H
#define LL_LM_HEAD_H

#include <stddef.h>
#include <stdint.h>

// out[n] = E[tokens[n]]
void embedding_forward(float *out,             // (N, d)
                       const int32_t *tokens,  // (N)
                       const float *E,         // (V, d)
                       int64_t N, int d);

// dE[tokens[n]] += dout[n]. Column-parallel (each thread owns a slice of the d columns and walks the
// rows in order), so repeated tokens never race and the sum order is fixed for any thread count.
void embedding_backward(float *dE,              // (V, d) +=
                        const int32_t *tokens,  // (N)
                        const float *dout,      // (N, d)
                        int64_t N, int d);

// Scratch for lm_head_loss (8-byte aligned, e.g. from xmalloc). chunk_rows ~256 is a good choice:
// every chunk streams the whole dW (V×d) once, so small chunks make the dW update memory-bound
// (measured at d=1536, V=32000, 2 threads: 56 GFLOP/s with 64 rows, 147 with 256).
size_t lm_head_scratch_floats(int chunk_rows, int V);

// logits = x Wᵀ, then the sum over rows with targets >= 0 of −log softmax(logits)[target]
// (targets < 0 are ignored). Returns that SUM and writes the number of counted rows to *count; the
// caller divides for the mean. If dx and/or dW are non-NULL, also accumulates (+=) the gradient of
// grad_scale · (sum of losses) into dx and dW (e.g. grad_scale = 1/count for the mean); either may
// be NULL to skip it.
// A non-finite logit in a counted row makes the returned sum NaN/inf; a target >= V or chunk_rows < 1
// makes it NaN. The softmax sums are float (vector-lane partial sums per row); the total is double.
// Call outside OpenMP parallel regions (the sgemms use all threads).
double lm_head_loss(float *dx,              // (N, d) += or NULL
                    float *dW,              // (V, d) += or NULL
                    int64_t *count,         // number of targets >= 0
                    float *token_loss,      // (N) per-row loss (0 where ignored), or NULL
                    const float *x,         // (N, d) final-norm output
                    const float *W,         // (V, d)
                    const int32_t *targets, // (N)
                    int64_t N, int d, int V, float grad_scale,
                    float *scratch,         // lm_head_scratch_floats(chunk_rows, V)
                    int chunk_rows);

// pred[n] = argmax_v (x Wᵀ)[n, v] (the lowest id on ties), chunk_rows rows at a time (evaluation accuracy).
void lm_head_argmax(int32_t *pred,       // (N)
                    const float *x,      // (N, d)
                    const float *W,      // (V, d)
                    int64_t N, int d, int V,
                    float *scratch,      // lm_head_scratch_floats(chunk_rows, V)
                    int chunk_rows);

// Logits of a single position (generation): logits = W x.
void lm_head_logits(float *logits,   // (V)
                    const float *x,  // (d)
                    const float *W,  // (V, d)
                    int d, int V);

#endif
