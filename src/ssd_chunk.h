// ssd_chunk.h — the SSD chunk kernel: the chunk-local work of the chunkwise scans (intra-chunk masked
// blocks, chunk states, state reads, their backward) and the phase loops, shared by scan_ssd.c and
// scan_loglinear.c (not a public API).
//
// Both scans run in phases, each one OpenMP loop:
//   chunk tasks (b, chunk, group, head batch): everything local to one chunk, for a batch of heads of one
//       B/C group. C·Bᵀ is shared by the heads of a group; a task owns the dB/dC rows of its chunk (one
//       batch per group) or its batch's partial rows (several: summed in batch order by
//       scan_reduce_batches), so dB/dC need no atomics and are deterministic.
//   state tasks (b, head, column block): the cheap passes along the chunks (state scan, Fenwick tree of
//       states), each over one block of the P·N state elements; what sums over the elements (the decay
//       gradients' dot products) is left per block in pdot and summed, in block order, by later tasks.
//   head tasks (b, head): the per-head bookkeeping along the chunks (prefix decays, decay gradients).
// The head batches and column blocks are set by the dims alone (SCAN_MIN_TASKS, SCAN_STATE_TASKS), never
// by the thread count, so the results are the same bits for any number of threads.
// The chunk-task routines and the phase loops are common to both scans (the SSD is the log-linear op with
// λ = 1 and one read of the running state per chunk) and live in ssd_chunk.c; the state and head tasks are
// each scan's own (scan_ssd.c, scan_loglinear.c).
#ifndef LL_SSD_CHUNK_H
#define LL_SSD_CHUNK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cblas.h>
#include <omp.h>

#include "kernel_util.h"
#include "levels.h"
#include "scan_ssd.h"

// Row panel of the intra-chunk blocks: only panels on or below the diagonal are multiplied, which skips
// ~3/8 of the flops of a 256-token chunk (the block is lower triangular).
#define SCAN_PANEL 64
// Rows per GEMM of the log-linear tree-node gradients (longer reader blocks are cut in pieces).
#define SCAN_QT_ROWS 512
// Chunk tasks wanted per phase: a group's heads are split into smaller batches until B·NC·G·batches
// reaches it (short sequences at B = 1 have few chunks). 32 tasks run largest first keep 16 threads
// balanced; every further split costs work (each batch forms C·Bᵀ and its dB/dC products again: ~6% of
// the log-linear scan at T = 2048 when its 8 heads go in 2 batches, measured on one thread).
#ifndef SCAN_MIN_TASKS
#define SCAN_MIN_TASKS 32
#endif
// State tasks wanted per phase (B·H·column blocks), with blocks of at least SCAN_MIN_COLS elements.
#ifndef SCAN_STATE_TASKS
#define SCAN_STATE_TASKS 64
#endif
#define SCAN_MIN_COLS 256

// Everything a phase needs: dims, the caller's tensors, and pointers into the scratch.
typedef struct {
    int64_t T;
    int B, H, P, G, N, ld_x, ld_bc, levels;
    int Cs, lc, NC;      // chunk length, log2(chunk), number of chunks (last one may be partial)
    int Hg, HB, nhb;     // heads per group, heads per chunk task (batched GEMMs), head batches per group
    int nsb, sb;         // state tasks: nsb column blocks of sb elements of the P·N state (last may be short)
    int nclev;           // chunk levels: bit_length(NC-1) (log-linear)
    int maxreads;        // most state reads of one chunk: nclev (log-linear), 1 (SSD)
    bool loglinear;
    // inputs (see scan_ssd.h for layouts)
    const float *x, *dt, *A, *Bm, *Cm, *D, *lam, *dy;
    // outputs
    float *y, *dx, *ddt, *dBm, *dCm, *dlam;
    // scratch
    float *S;       // (B, NC, H, P, N) chunk states -> entering states (SSD) / Fenwick tree nodes (log-linear)
    float *dS;      // (B, NC, H, P, N) their gradients
    float *cs;      // (B, H, T) chunk-local inclusive cumsum of dt·A
    float *ecs;     // (B, H, T) exp(cs)
    float *pdot;    // (B, H, nsb, NC) per column block, the state-scan dot products of the decay gradients:
                    // SSD <H_c, dH_{c+1}> of chunk c; log-linear <left, d(parent)> of the tree combine of
                    // left slot s
    float *dQp, *dKp;  // (nhb, B·T, G·N) per head batch partial dC / dB rows (used when nhb > 1)
    int *corder;    // (NC) chunk order of the chunk tasks: most state reads first, chunk 0 (no reads) last
    double *gc;     // (B, H, NC+1) log-linear: decay of the chunks before chunk c (sum of their totals)
    double *gdiff;  // (B, H, NC+1) log-linear: difference array of the chunk-total decay gradients
    float *ddelta;  // (B, H, NC, nclev) log-linear: gradient of the decay of each inter-chunk read
    float *partA;   // (B, NC, H) per-chunk-task partial dA; then (B, H) per-head-task parts in partA2
    float *partD;   // (B, NC, H) per-chunk-task partial dD
    float *partA2;  // (B, H)
    float *tbuf;    // per-thread buffers, nthreads x tstride floats
    size_t tstride;
    int nthreads;
} ScanCtx;

// The inter-chunk state reads of one chunk (levels.h): state node `slot` (index into S), decayed over the
// chunks [base, c) (log-linear; base = c means no decay), weighted by λ level `lev` (-1: weight 1, SSD),
// chunk level j (log-linear).
typedef LevelReads ScanReads;

// Fills dims and scratch pointers (scratch may be NULL to only size it) and returns the scratch floats:
// never fewer than any smaller B or T needs, so a model's scratch sized for its largest batch serves all.
size_t scan_setup(ScanCtx *k, const ScanDims *d, bool loglinear, float *scratch);

static inline void scan_set_inputs(ScanCtx *k, const float *x, const float *dt, const float *A, const float *Bm,
                                   const float *Cm, const float *D, const float *lam) {
    k->x = x; k->dt = dt; k->A = A; k->Bm = Bm; k->Cm = Cm; k->D = D; k->lam = lam;
}

// The state reads of chunk c: SSD, the running state (slot c) for c >= 1; log-linear, for each set bit j of
// c the tree node in slot ((c>>j)<<j) - 1, decayed over chunks [(c>>j)<<j, c), λ level log2(chunk)+1+j.
void scan_reads(const ScanCtx *k, int c, ScanReads *rd);

// A chunk task (b, chunk c, heads [hb0, hb0 + scan_batch_heads(k, hb0)) of one group) with the reads of
// chunk c, and its per-thread buffer.
typedef void ScanChunkFn(const ScanCtx *k, int b, int c, int hb0, const ScanReads *rd, float *tb);
// A head task (b, h) with its per-thread buffer (k->tstride floats).
typedef void ScanHeadFn(const ScanCtx *k, int b, int h, float *tb);
// A state task: column block blk, elements [e0, e1) of the P·N states of head (b, h), with its per-thread
// buffer (at least sb floats).
typedef void ScanStateFn(const ScanCtx *k, int b, int h, int blk, int64_t e0, int64_t e1, float *tb);

// Heads in the chunk-task batch starting at head hb0.
static inline int scan_batch_heads(const ScanCtx *k, int hb0) {
    const int g = hb0 / k->Hg;
    return LL_MIN(k->HB, (g + 1) * k->Hg - hb0);
}

// Chunk task, forward: cs/ecs of the chunk, y = intra-chunk part + D x (overwrites y rows), and the
// chunk's local state (all heads of group g) into S, unless it is the last chunk. (rd unused.)
void scan_chunk_forward(const ScanCtx *k, int b, int c, int hb0, const ScanReads *rd, float *tb);
// Chunk task, forward: y += the inter-chunk reads.
void scan_chunk_read_forward(const ScanCtx *k, int b, int c, int hb0, const ScanReads *rd, float *tb);
// Chunk task, backward prologue: cs/ecs, local state into S; for the SSD also stores into dS the read
// gradient Σ_i e^{cs_i} dy_i q_iᵀ of the chunk.
void scan_chunk_backward_prep(const ScanCtx *k, int b, int c, int hb0, const ScanReads *rd, float *tb);
// Chunk task, backward: all gradients local to the chunk (intra block, reads of states S via `rd`,
// local state with gradient dS, D skip, chunk-local decays). The SSD's state-scan decay gradient (pdot) is
// added to the chunk's total decay gradient; log-linear read-decay gradients go to k->ddelta. dB/dC go to
// the task's rows of dBm/dCm, or of its batch's partials (nhb > 1).
void scan_chunk_backward(const ScanCtx *k, int b, int c, int hb0, const ScanReads *rd, float *tb);
// Adds the head batches' partial dB/dC rows into dBm/dCm, in batch order (nothing when nhb = 1).
void scan_reduce_batches(const ScanCtx *k);
// Adds the per-task partial sums into dA and dD (serial, fixed order: deterministic).
void scan_reduce_partials(const ScanCtx *k, float *dA, float *dD);

// One OpenMP loop running fn on every chunk task (most reads first), without chunk 0 if skip_first.
void scan_chunk_tasks(const ScanCtx *k, ScanChunkFn *fn, bool skip_first);
// One OpenMP loop running fn on every head task.
void scan_head_tasks(const ScanCtx *k, ScanHeadFn *fn);
// One OpenMP loop running fn on every state task.
void scan_state_tasks(const ScanCtx *k, ScanStateFn *fn);
// The whole forward (inputs and y set in k): chunk tasks; if there is more than one chunk, `prep` per head
// (if given) and then `link` per state task turn the chunk states in S into the states the chunks read,
// then the read tasks add them to y.
void scan_forward(const ScanCtx *k, ScanHeadFn *prep, ScanStateFn *link);

static inline float *scan_thread_buf(const ScanCtx *k) {
    return k->tbuf + (size_t)omp_get_thread_num() * k->tstride;
}

static inline float *scan_state(const ScanCtx *k, float *base, int b, int c, int h) {
    return base + (((size_t)b * k->NC + c) * k->H + h) * (size_t)k->P * k->N;
}

#endif
