// deltanet.h — the Gated DeltaNet sequence mixer core (gated delta rule) and its log-linear variant
// ("Log-Linear Attention", Guo et al. 2025): chunkwise forward, hand-derived backward, recurrent steps.
//
// Per batch b and head h, positions t, s in 0..T-1 (k_t, q_t ∈ R^K, v_t ∈ R^V, g_t <= 0, β_t ∈ (0,1)):
//     S_t = e^{g_t} (I − β_t k_t k_tᵀ) S_{t−1} + β_t k_t v_tᵀ     (S is K×V, S_{−1} = 0),   o_t = S_tᵀ q_t
// Log-linear: one state per Fenwick level ℓ, all with the same transitions, o_t = Σ_ℓ λ_t[ℓ] (S_t^ℓ)ᵀ q_t;
// materialized,
//     o_t = Σ_{s≤t} λ_t[ℓ(t,s)] (Π_{r=s+1..t} e^{g_r}) (q_tᵀ P_{t,s} k_s) β_s v_s,
//     P_{t,s} = (I − β_t k_t k_tᵀ)···(I − β_{s+1} k_{s+1} k_{s+1}ᵀ),   ℓ(t,s) = level_of(t, s) (levels.h).
// Plain GDN is the special case λ ≡ 1 (levels = 0, lam = NULL).
//
// Chunkwise: chunks of `chunk` tokens (a power of two); inside a chunk the UT transform (WY form) gives a
// dense lower-triangular block; across chunks K×V states are passed along: one scan for plain GDN, one
// independent masked scan per chunk level for the log-linear variant (levels.h schedule). Only
// non-positive decay exponents are ever exponentiated. Besides o the forward saves each chunk's chunk-local
// results (q̃, the decayed inverse, [−W̃ | U], ..., see deltanet.c) for the backward, which forms only the
// states along the chunks again.
#ifndef LL_DELTANET_H
#define LL_DELTANET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"

typedef struct {
    int B, T, H;  // batch, length, heads
    int K, V;     // d_k, d_v
    int chunk;    // power of two (64 in the paper); T need not be a multiple
    int levels;   // 0: plain gated delta rule; > 0: log-linear, lam has `levels` entries per (b,t,h),
                  // levels >= levels_needed(T)
} DeltaDims;

// False with a message naming the field and the fix when the dims are unusable.
bool deltanet_dims_check(const DeltaDims *d, Err *err);

// Floats that deltanet_forward saves for deltanet_backward (kept between them, as an activation), per token
// and head at chunk C: 4C + 3K + V + 4 (plain), 5C + 2K + V + 4 + K(K+V)/C (log-linear): 516 and 644 at
// C = K = V = 64 (partial chunks count whole). Independent of the thread count.
size_t deltanet_saved_floats(const DeltaDims *d);

// Floats of scratch for deltanet_forward and deltanet_backward (covers both, for omp_get_max_threads()
// threads: call it under the same OpenMP thread setting as the kernels).
size_t deltanet_scratch_floats(const DeltaDims *d);

// q, k (B,T,H,K) contiguous; v (B,T,H,V); g (B,T,H) log-decay <= 0; beta (B,T,H) in (0,1);
// lam (B,T,H,levels) or NULL when levels == 0. o (B,T,H,V) and saved (deltanet_saved_floats) are
// overwritten. q and k are used as given (the layer L2-normalises them and scales q).
void deltanet_forward(float *o, float *saved, const float *q, const float *k, const float *v, const float *g,
                      const float *beta, const float *lam, const DeltaDims *d, float *scratch);

// Accumulates (+=) dq, dk (B,T,H,K), dv (B,T,H,V), dg, dbeta (B,T,H), dlam (B,T,H,levels; NULL when
// levels == 0) from do_ (B,T,H,V); saved is what deltanet_forward wrote for these inputs and dims (read
// only). λ levels >= levels_needed(T) get no gradient (they are never used).
void deltanet_backward(float *dq, float *dk, float *dv, float *dg, float *dbeta, float *dlam, const float *do_,
                       const float *saved, const float *q, const float *k, const float *v, const float *g,
                       const float *beta, const float *lam, const DeltaDims *d, float *scratch);

// Recurrent form (decoding): one token of one sequence, all heads. o (H,V), state (H,K,V) zeroed before
// the first token, q, k (H,K), v (H,V), g, beta (H).
void deltanet_step(float *o, float *state, const float *q, const float *k, const float *v, const float *g,
                   const float *beta, int H, int K, int V);

// Log-linear recurrent form: state (levels, H, K, V), t = 0-based position (at t == 0 the state is cleared,
// so it needs no initialisation), levels >= levels_needed(t+1), lam (H, lam_levels). Levels cascade as in
// levels.h (level_cascade_target). Level-major, so a larger state extends a smaller one at its end; levels
// >= lam_levels (past the model's maximum context) are weighted by the top λ, as loglinear_step's.
void deltanet_loglinear_step(float *o, float *state, int64_t t, const float *q, const float *k, const float *v,
                             const float *g, const float *beta, const float *lam, int H, int K, int V, int levels,
                             int lam_levels);

#endif
