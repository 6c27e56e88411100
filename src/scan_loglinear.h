// scan_loglinear.h — the log-linear Mamba-2 scan ("Log-Linear Attention", Guo et al. 2025): chunkwise
// forward in O(T log T), hand-derived backward, and the Fenwick-tree recurrent step for generation.
//
// Per batch b and head h (notation of scan_ssd.h), with a per-token, per-level weight λ_t[h, ℓ]:
//     y_t = Σ_{s≤t} λ_t[h, ℓ(t,s)] (q_t·k_s) (Π_{r=s+1..t} a_r) v_s + D_h x_t
//     ℓ(t,t) = 0,   ℓ(t,s) = bit_length(t XOR s) for s < t        (doc/loglinear-attention.md §1.3)
// Level ℓ ≥ 1 of target t is the Fenwick bucket [(t>>ℓ)<<ℓ, ((t>>ℓ)<<ℓ) + 2^(ℓ-1)), non-empty iff
// bit ℓ-1 of t is set. With λ equal across levels the op is λ·(Mamba-2 without D) + D x.
//
// Chunkwise (§4.1-4.4): chunk = 2^c tokens. Pairs inside a chunk use levels 0..c (dense masked C×C
// blocks); chunks z' < z use the token level c+1+j with j = bit_length(z XOR z') - 1. For each chunk level
// j the writers are the 2^j chunks of the left half of an aligned group of 2^(j+1) chunks and the readers
// the chunks of its right half; the writers' summed state is exactly a node of a binary tree over the
// chunk states, so all levels share one set of per-chunk states, combined in place Fenwick-style.
#ifndef LL_SCAN_LOGLINEAR_H
#define LL_SCAN_LOGLINEAR_H

#include <stdint.h>

#include "levels.h"
#include "scan_ssd.h"

// The level of a pair is level_of(t, s) and a sequence of T tokens uses levels_needed(T) λ levels
// (levels.h). ScanDims.levels must be at least that, else the scan functions must not be called
// (scan_dims_check reports it).

// Floats of scratch for loglinear_forward + loglinear_backward (for omp_get_max_threads() threads).
size_t loglinear_scratch_floats(const ScanDims *d);

// Writes y (B,T,H,P). Inputs as ssd_forward, plus lam (B,T,H,levels) contiguous (only the first
// levels_needed(T) entries of each row are read).
void loglinear_forward(float *y, const float *x, const float *dt, const float *A, const float *Bm,
                       const float *Cm, const float *D, const float *lam, const ScanDims *d, float *scratch);

// Accumulates (+=) all gradients, as ssd_backward, plus dlam (B,T,H,levels) (unused levels untouched).
void loglinear_backward(float *dx, float *ddt, float *dA, float *dBm, float *dCm, float *dD, float *dlam,
                        const float *dy, const float *x, const float *dt, const float *A, const float *Bm,
                        const float *Cm, const float *D, const float *lam, const ScanDims *d, float *scratch);

// One token at position t (0-based) of one sequence: the Fenwick cascade of doc/loglinear-attention.md §3.
// Before token t (t >= 1) the levels 0..k with k = ctz(t) merge into level k+1; every level then decays
// by exp(dt·A); the token's dt·x Bᵀ becomes level 0; y = Σ_ℓ λ[ℓ] S[ℓ] C + D x. The occupancy of each
// level is a function of t alone (level ℓ ≥ 1 holds tokens iff bit ℓ-1 of t is set), so no counters are
// stored. At t = 0 the state is cleared. Needs levels >= levels_needed(t+1).
// The state is level-major, so a state for more levels extends one for fewer at its end (decoding grows
// it). λ has lam_levels entries per head; a level >= lam_levels (past the model's maximum context) is
// weighted by the top one, λ[lam_levels-1]: the same output as if the top level kept absorbing the older
// tokens, so a model decodes past its maximum context with no length limit.
// y (H,P), state (levels,H,P,N), x (H,P), dt (H), A (H), Bv/Cv (G,N), D (H), lam (H,lam_levels).
void loglinear_step(float *y, float *state, int64_t t, const float *x, const float *dt, const float *A,
                    const float *Bv, const float *Cv, const float *D, const float *lam, int H, int P, int G,
                    int N, int levels, int lam_levels);

#endif
