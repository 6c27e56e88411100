// attention.h — fla's softmax Attention core (doc/architectures.md §6.3): RoPE (GPT-NeoX rotate-half) and
// causal multi-head attention with grouped-query heads (query head h reads kv head h / (H/Hkv)),
// softmax scale 1/sqrt(hd). The projections around it are linear layers (linear.h).
//
// Flash-style on CPU: query blocks of ATTN_BLOCK rows against keys [0, block end) only, cblas_sgemm for
// QKᵀ, PV and the backward products, the probabilities recomputed from the saved logsumexp in the
// backward. The forward runs one OpenMP task per (batch, head, query block); the backward one per
// (batch, kv head, segment of query blocks), with per-segment partial dk / dv summed afterwards when
// B·Hkv alone gives too few tasks. Nothing of size T×T is ever stored; scratch is O(ATTN_BLOCK·T) per
// thread plus the partials (O(T·hd) per task). Call outside OpenMP parallel regions: the per-block
// sgemms then run single-threaded inside our task loop. Measured at B=4, T=1024, H=8, hd=64 (causal-half
// FLOPs, forward 2·T²·hd, backward 5·T²·hd per head): ~50 GFLOP/s forward+backward on one core,
// ~85 GFLOP/s on the two cores of the dev VM.
#ifndef LL_ATTENTION_H
#define LL_ATTENTION_H

#include <stddef.h>
#include <stdint.h>

// Rotates the pairs (j, j + hd/2) of every head vector by the angle t·θ^(−2j/hd), t = 0..T−1 the
// position in its sequence (angles and cos/sin in fp32, as fla's RotaryEmbedding). hd must be even.
void rope_forward(float *x,  // (B, T, H, hd) in place
                  int B, int T, int H, int hd, float theta);
// Decoding: rotates the H head vectors of a single token at position pos (same values as rope_forward).
void rope_forward_at(float *x,  // (H, hd) in place
                     int H, int hd, int pos, float theta);
// The transpose rotation: turns the gradient w.r.t. the rotated vector into the gradient w.r.t. the
// unrotated one, in place.
void rope_backward(float *dx,  // (B, T, H, hd) in place
                   int B, int T, int H, int hd, float theta);

// Floats of scratch for attention_forward / attention_backward, covering all OpenMP threads
// (omp_get_max_threads() at the time of the call: size it after setting the thread count).
size_t attention_scratch_floats(int B, int T, int H, int Hkv, int hd, int window);

// out_i = Σ_{j≤i} softmax_j(q_i·k_j / sqrt(hd)) v_j per sequence and head; lse_i = the log of the
// softmax denominator (including the scale), saved for the backward. window > 0 is fla's sliding
// window (flash-attn window (window−1, 0)): key j is visible from query i when 0 <= i − j < window;
// window <= 0 is plain causal attention. Only the visible key blocks are computed.
void attention_forward(float *out,      // (B, T, H, hd)
                       float *lse,      // (B, H, T) saved
                       const float *q,  // (B, T, H, hd), already rotated
                       const float *k,  // (B, T, Hkv, hd), already rotated
                       const float *v,  // (B, T, Hkv, hd)
                       int B, int T, int H, int Hkv, int hd, int window,
                       float *scratch);  // attention_scratch_floats(B, T, H, Hkv, hd, window)

// Accumulates (+=) into dq, dk and dv. Within a task the query heads sharing a kv head and the query
// blocks add into dk/dv in a fixed order, and the segments (chosen from the shapes alone) are summed in
// a fixed order: deterministic for any thread count.
void attention_backward(float *dq,          // (B, T, H, hd) +=
                        float *dk,          // (B, T, Hkv, hd) +=
                        float *dv,          // (B, T, Hkv, hd) +=
                        const float *dout,  // (B, T, H, hd)
                        const float *q,     // (B, T, H, hd)
                        const float *k,     // (B, T, Hkv, hd)
                        const float *v,     // (B, T, Hkv, hd)
                        const float *out,   // (B, T, H, hd) from the forward
                        const float *lse,   // (B, H, T) from the forward
                        int B, int T, int H, int Hkv, int hd, int window,
                        float *scratch);    // attention_scratch_floats(B, T, H, Hkv, hd, window)

// Decoding one token at 0-based position pos against the KV cache (the same softmax as
// attention_forward, evaluated directly: libm expf, the denominator summed in double), keys
// max(0, pos − window + 1)..pos.
void attention_decode_step(float *out,       // (H, hd)
                           float *p,         // (pos + 1) scratch: the probabilities of one head
                           const float *q,   // (H, hd), already rotated
                           const float *kc,  // (pos + 1, Hkv, hd) cached keys, rotated, row stride ld
                           const float *vc,  // (pos + 1, Hkv, hd) cached values, row stride ld
                           int64_t ld, int64_t pos, int H, int Hkv, int hd, int window);

#endif
