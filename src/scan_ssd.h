// scan_ssd.h — the Mamba-2 SSD scan (selective state-space "duality" form): chunkwise forward, hand-derived
// backward, and the one-token recurrent step used for generation.
//
// Per batch b and head h (g = h / (H/G) is the B/C group of the head), positions t, s in 0..T-1:
//     a_t = exp(dt_t·A_h)   (A_h < 0, dt_t > 0),   v_t = dt_t·x_t,   q_t = C_t,   k_t = B_t
//     y_t = Σ_{s≤t} (q_t·k_s) (Π_{r=s+1..t} a_r) v_s + D_h x_t
// i.e. the recurrence S_t = a_t S_{t-1} + v_t k_tᵀ (S is P×N), y_t = S_t q_t + D_h x_t, with S_{-1} = 0.
// No 1/sqrt(N) scale; the D skip uses x (not dt·x).
//
// The chunkwise algorithm (doc/architectures.md §5.4-5.5) splits the sequence into chunks of `chunk` tokens:
// a dense masked C×C block inside each chunk, plus one P×N state per chunk passed along the chunks.
// Decays are handled in log space (chunk-local cumulative sums of dt·A), and only non-positive exponents
// are ever exponentiated, so nothing overflows however strong the decay.
// The forward saves nothing but y: the backward recomputes the chunk states from the inputs.
#ifndef LL_SCAN_SSD_H
#define LL_SCAN_SSD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"

// Shapes shared by the SSD and the log-linear scans.
typedef struct {
    int B, T, H, P, G, N;  // batch, sequence length, heads, head dim, B/C groups (H % G == 0), state size
    int chunk;             // chunk length, a power of two (Mamba-2: 256, log-linear: 64); T need not be a multiple
    int ld_x;              // row stride of x / dx: x[(b*T+t)*ld_x + h*P + p]  (x lives inside the conv output)
    int ld_bc;             // row stride of B, C / dB, dC: Bm[(b*T+t)*ld_bc + g*N + n]
    int levels;            // log-linear only: λ entries per (b,t,h); >= levels_needed(T) (levels.h)
} ScanDims;

// Validates the dims (positive sizes, H % G == 0, chunk a power of two, strides wide enough, and for the
// log-linear scan enough λ levels). Returns false with a message naming the field and the fix.
bool scan_dims_check(const ScanDims *d, bool loglinear, Err *err);

// Floats of scratch needed by ssd_forward and ssd_backward (covers both, for omp_get_max_threads()
// threads: call it under the same OpenMP thread setting as the kernels).
size_t ssd_scratch_floats(const ScanDims *d);

// Writes y (overwrites). Inputs:
//   x  (B,T,H,P) row stride ld_x      dt (B,T,H) (softplus'd, > 0)    A (H) (< 0)
//   Bm (B,T,G,N) row stride ld_bc     Cm (B,T,G,N) row stride ld_bc   D (H)
//   y  (B,T,H,P) contiguous
void ssd_forward(float *y, const float *x, const float *dt, const float *A, const float *Bm, const float *Cm,
                 const float *D, const ScanDims *d, float *scratch);

// Accumulates (+=) the gradients of loss(y) given dy (B,T,H,P): dx (layout of x, stride ld_x), ddt (B,T,H),
// dA (H), dBm/dCm (layout of Bm/Cm, stride ld_bc; summed over the heads of a group), dD (H).
// Only the P (resp. G·N) used columns of each dx (resp. dBm/dCm) row are touched.
void ssd_backward(float *dx, float *ddt, float *dA, float *dBm, float *dCm, float *dD,
                  const float *dy, const float *x, const float *dt, const float *A, const float *Bm,
                  const float *Cm, const float *D, const ScanDims *d, float *scratch);

// One token of one sequence (generation): S = exp(dt·A) S + dt·x Bᵀ, y = S C + D x.
// y (H,P), state (H,P,N) (zero it before the first token), x (H,P), dt (H), A (H), Bv/Cv (G,N), D (H).
void ssd_step(float *y, float *state, const float *x, const float *dt, const float *A, const float *Bv,
              const float *Cv, const float *D, int H, int P, int G, int N);

#endif
