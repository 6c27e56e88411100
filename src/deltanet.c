// deltanet.c — the gated delta rule and its log-linear variant (see deltanet.h): chunkwise forward,
// hand-derived backward, recurrent steps. One implementation for both: plain GDN is one state scan in
// which every chunk writes and reads, log-linear GDN one masked scan per chunk level (levels.h).
//
// Inside a chunk of Lc tokens (local i = target, j = source), per head:
//   G_i = Σ_{r≤i} g_r (fp32), Γ = G_{Lc−1};  E_ij = e^{G_i−G_j} (j ≤ i);  Λ_ij = λ_i[level_of(i,j)]
//   KK = K Kᵀ, QKl = tril(Q Kᵀ) (diagonal kept), Ap = QKl ⊙ E
//   Tg = (I + stril(diag(β) KK ⊙ E))⁻¹   (forward substitution; the one inverse: with D = diag(e^G) and
//        Tu = (I + stril(diag(β) KK))⁻¹, Tg = D Tu D⁻¹ = Tu ⊙ E)
//   Z = [−W̃ | U] = Tg [−β e^G ⊙ K | β V]   (W̃ = D Tu βK: one product over the K+V columns)
//   q̃ = e^G ⊙ Q + Ap (−W̃), K̃ = diag(e^{Γ−G}) K
//   plain: o_intra = Ap U;  log-linear: A = Ap Tg (= (QKl Tu) ⊙ E), Aλ = A ⊙ Λ, o_intra = Aλ (β⊙V)
//   the chunk acts on a state S as S ↦ A_c S (+ X_c if it writes), A_c = e^Γ I − K̃ᵀ W̃, X_c = K̃ᵀ U;
//   a reading chunk adds λ_i[lev] Sᵀ q̃_i to o_i.
// (Plain GDN: Ap U = A ⊙ E ⊙ (β V), so it needs no A; λ weighs every pair of the chunk, so the log-linear
// form keeps A.)
// Log-linear: A_c and X_c are stored side by side as AX = [A_c | X_c] (K × (K+V)), formed by one GEMM
// K̃ᵀ Z (its live levels share A_c). Plain GDN (one scan) uses the state form instead, two C×K×V
// products per chunk and no A_c, X_c: Vn = U − W̃ S_in, S_out = e^Γ S_in + K̃ᵀ Vn, o += Q̃ S_in; in
// the backward dVn = K̃ dS_out, dS_in = e^Γ dS_out − W̃ᵀ dVn + Q̃ᵀ dO, dQ̃ = dO S_inᵀ (reverse scan) and
// dK̃ = Vn dS_outᵀ, d(−W̃) = dVn S_inᵀ, dU = dVn, dΓ += e^Γ ⟨S_in, dS_out⟩ (chunk tasks).
//
// Phases, each one OpenMP loop:
//   forward:  chunk tasks (b, c, h): intra part of o, Q̃, AX and each chunk-head's chunk-local forward part
//             (G, KK, Tg, E, Ap, A, Z, plain K̃: ChunkBuf's forward part, in Loc), all three kept in `saved`
//             for the backward.   head tasks (b, h, a block of the state's columns, dn_setup): the state
//             scan of every level at once along the chunks (the transitions of all live levels are one GEMM
//             A_c·[S_j ...], the reads of a chunk one GEMM over its read states stacked), adding the reads
//             to o.
//   backward: head tasks: the scan again (from the kept AX, plain: the kept Z, K̃), storing the entering
//             states, then the reverse scan storing the gradients of the states leaving each chunk;  chunk
//             tasks: what sums over the state's columns (dQ̃ and the inter-chunk dλ, dAX) and all
//             chunk-local gradients, from the kept part (nothing chunk-local is formed twice).
// Products with a triangular C×C factor use strmm, lower-only products ssyrk or 32-row panels (DN_PANEL).
// Every task owns its output rows (or columns): no atomics, fixed summation orders, so results do not depend
// on the thread count.
// Backward of the chunk-local part (dS_out = gradient of the state leaving the chunk, summed over levels):
//   log-linear: dAX = [Σ_j dS_out,j S_in,jᵀ | Σ_writers dS_out,j];  dΓ += e^Γ tr(dA_c);  dK̃ = Z dAXᵀ;
//   dZ = K̃ dAX;  plain: dZ, dK̃ from the state form above;  then
//   q̃: dAp = dQ̃ (−W̃)ᵀ, d(−W̃) += Apᵀ dQ̃ (plain: with the intra part, dAp = [dQ̃ | dO] Zᵀ, dZ += Apᵀ [dQ̃ | dO]);
//   log-linear intra: dAλ = dO (βV)ᵀ, the bucket sums of dAλ ⊙ A (dλ), dA = dAλ ⊙ Λ, dAp += dA Tgᵀ;
//   Z = Tg Y:  dY = Tgᵀ dZ,  dMg = −stril(dY Zᵀ + Aᵀ (dA Tgᵀ))   (from dTg = dZ Yᵀ + Apᵀ dA);
//   then Mg = diag(β) KK ⊙ E, Ap = QKl ⊙ E (decays R_ij = dX_ij X_ij), the products KK, QKl, Y and the
//   chunk-local cumsum (dg = reverse cumsum of dG).
#include "deltanet.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#include "levels.h"
#include "kernel_util.h"

typedef struct {
    int64_t T;
    int B, H, K, V, levels;
    int C, lc, NC;  // chunk length, log2(chunk), number of chunks (the last may be partial)
    int L;          // state scans: 1 (plain), chunk levels (log-linear), 0 when there is one chunk
    bool ll;        // log-linear
    bool ps;        // plain GDN with a state scan (L == 1): the state form
    // inputs
    const float *q, *k, *v, *g, *beta, *lam, *dout;
    // outputs
    float *o, *dq, *dk, *dv, *dg, *dbeta, *dlam;
    // saved (written by the forward, read by the backward)
    float *Qt;   // (B, NC, H, C, K)    q̃ of each chunk
    float *AX;   // (B, NC, H, K, K+V)  [A_c | X_c] (log-linear)
    float *Loc;  // (B, NC, H, lstride) the forward part of each chunk's ChunkBuf
    // scratch
    float *dQt;  // (B, NC, H, C, K)    gradient of q̃ (backward)
    float *dAX;  // (B, NC, H, K, K+V)  gradient of AX (backward)
    float *Sst;  // (B, H, NC, K, L·V)  entering states of every chunk, levels side by side (backward)
    float *dSst; // (B, H, NC, K, L·V)  log-linear: gradients of the states leaving every chunk (backward)
    // plain GDN (the state form, no AX; its scans read [−W̃ | U] and K̃ in Loc): backward Vn = U − W̃ S_in,
    // its gradient, the gradient of the state leaving each chunk
    float *Vn, *dVn;  // (B, NC, H, C, V)
    float *dSo;  // (B, NC, H, K, V)
    float *tbuf;  // per-thread buffers, nthreads × tstride floats
    size_t nsaved, nscratch;  // floats of saved and of scratch
    size_t tstride, lstride, hoff;  // hoff: where a chunk task's HeadBuf starts in its thread buffer
    int nthreads;
    int nvb, vb;  // the state scans run as B·H·nvb tasks, each over vb of the V state columns
} DnCtx;

bool deltanet_dims_check(const DeltaDims *d, Err *err) {
    if (!d) return err_set(err, "deltanet: dims are NULL");
    if (d->B <= 0 || d->T <= 0 || d->H <= 0 || d->K <= 0 || d->V <= 0)
        return err_set(err, "deltanet: B=%d T=%d H=%d K=%d V=%d must all be positive", d->B, d->T, d->H, d->K, d->V);
    if (d->chunk <= 0 || (d->chunk & (d->chunk - 1)) != 0)
        return err_set(err, "deltanet: chunk=%d must be a power of two (the paper uses 64); fix chunk_size", d->chunk);
    if (d->levels < 0)
        return err_set(err, "deltanet: levels=%d must be 0 (plain gated delta rule) or >= levels_needed(T)",
                       d->levels);
    if (d->levels > 0 && d->levels < levels_needed(d->T))
        return err_set(err, "deltanet: levels=%d but T=%d needs %d λ levels (bit_length(T-1)+1); raise "
                       "max_seq_len/num_levels or shorten the sequence", d->levels, d->T, levels_needed(d->T));
    return true;
}

// The narrowest column block of a state scan task (see dn_setup).
#define DN_MIN_COLS 16
// Split the scans until there are this many tasks: a fixed count, not the thread count, so that the results
// (the blocks' products round differently) do not depend on the number of threads.
#ifndef DN_SCAN_TASKS
#define DN_SCAN_TASKS 16
#endif

static size_t round16(size_t n) { return (n + 15) / 16 * 16; }

// Takes n floats at *off (rounded to 16 floats: every piece stays 64-byte aligned); base NULL only counts.
static float *carve(float *base, size_t *off, size_t n) {
    float *p = base ? base + *off : NULL;
    *off += round16(n);
    return p;
}

// Buffers of a chunk task: the forward part (kept per chunk-head from the forward to the backward), the
// derived part (cheap to form again from the kept part and the inputs: not kept) and the backward part.
// Plain GDN carves no Λ, A, βV (Aλ is Ap) and keeps K̃ (its state scans read it).
typedef struct {
    float *G, *eG, *eR, *bt;                       // (C) cumsum, e^G, e^{Γ−G}, β
    float *KK, *Tg, *E, *Ap;                       // (C, C) KK, the inverse, E, QKl ⊙ E
    float *A;                                      // (C, C) log-linear: A = Ap Tg
    float *WU;                                     // (C, K+V) Z = [−W̃ | U]
    // derived
    float *Lm, *Al;                                // (C, C) log-linear: Λ, Aλ = A ⊙ Λ
    float *Kt;                                     // (C, K)  K̃ (kept for plain GDN)
    float *bV;                                     // (C, V)  β⊙V (log-linear)
    float *u;                                      // (C)     row scratch
    // backward
    float *dAl, *dA, *P1, *dMg, *dKK, *dQK;        // (C, C)  dQK: dAp, then dQKl
    float *dKt;                                    // (C, K)
    float *dbV;                                    // (C, V)
    float *dWU, *dP;                               // (C, K+V) dZ (then dY), [dQ̃ | dO]
    float *tk;                                     // (C, max(K, V)) product scratch
    float *dG, *dbt, *colR;                        // (C)
} ChunkBuf;

// The forward part (G .. WU, plain GDN's K̃) is carved from fw, the backward part from tb, the derived part
// after the backward part in tb, or after the forward part in fw without tb (fw or tb may be NULL when only
// counting; *ffloats: the forward part, *bfloats: the backward and the derived part). The forward part of
// every chunk-head is kept in Loc from chunk_forward to chunk_backward.
static ChunkBuf chunk_buf(const DnCtx *k, float *fw, float *tb, size_t *ffloats, size_t *bfloats) {
    const size_t C = k->C, cc = C * C, ck = C * k->K, cv = C * k->V, ckv = C * (size_t)(k->K + k->V);
    const bool ll = k->ll;
    ChunkBuf w;
    size_t off = 0;
    w.G = carve(fw, &off, C); w.eG = carve(fw, &off, C); w.eR = carve(fw, &off, C); w.bt = carve(fw, &off, C);
    w.KK = carve(fw, &off, cc); w.Tg = carve(fw, &off, cc); w.E = carve(fw, &off, cc); w.Ap = carve(fw, &off, cc);
    w.A = ll ? carve(fw, &off, cc) : NULL;
    w.WU = carve(fw, &off, ckv);
    w.Kt = ll ? NULL : carve(fw, &off, ck);
    if (ffloats) *ffloats = off;
    const size_t fend = off;
    off = 0;
    w.dAl = carve(tb, &off, cc); w.dA = carve(tb, &off, cc); w.P1 = carve(tb, &off, cc);
    w.dMg = carve(tb, &off, cc); w.dKK = carve(tb, &off, cc); w.dQK = carve(tb, &off, cc);
    w.dKt = carve(tb, &off, ck);
    w.dbV = carve(tb, &off, cv);
    w.dWU = carve(tb, &off, ckv); w.dP = carve(tb, &off, ckv);
    w.tk = carve(tb, &off, C * (size_t)LL_MAX(k->K, k->V));
    w.dG = carve(tb, &off, C); w.dbt = carve(tb, &off, C); w.colR = carve(tb, &off, C);
    float *dv = tb ? tb : fw;
    size_t doff = tb ? off : fend;
    w.Lm = ll ? carve(dv, &doff, cc) : NULL;
    w.Al = ll ? carve(dv, &doff, cc) : w.Ap;
    if (ll) w.Kt = carve(dv, &doff, ck);
    w.bV = ll ? carve(dv, &doff, cv) : NULL;
    w.u = carve(dv, &doff, C);
    if (bfloats) *bfloats = off + (doff - (tb ? off : fend));
    return w;
}

// Per-thread buffer of a head task (state scans).
typedef struct {
    float *cur, *nxt;  // (K, L·V) states (forward) / state gradients (reverse), levels side by side
    float *Sr, *dSr;   // (L·K, V) the read states of one chunk stacked, their gradients
    float *Wr, *P;     // (C, L·K) λ-weighted q̃ per read, side by side; dO·Srᵀ
    float *vn;         // (C, V) plain forward: Vn of one chunk
} HeadBuf;

static HeadBuf head_buf(const DnCtx *k, float *tb, size_t *floats) {
    const size_t L = (size_t)LL_MAX(k->L, 1), KLV = (size_t)k->K * L * k->V, CLK = (size_t)k->C * L * k->K;
    HeadBuf w;
    size_t off = 0;
    w.cur = carve(tb, &off, KLV); w.nxt = carve(tb, &off, KLV);
    w.Sr = carve(tb, &off, KLV); w.dSr = carve(tb, &off, KLV);
    w.Wr = carve(tb, &off, CLK); w.P = carve(tb, &off, CLK);
    w.vn = carve(tb, &off, (size_t)k->C * k->V);
    if (floats) *floats = off;
    return w;
}

static int ilog2i(int v) {
    int r = 0;
    while ((1 << r) < v) r++;
    return r;
}

// Lays out saved and scratch (either may be NULL: only counted, in k->nsaved, k->nscratch).
static void dn_setup(DnCtx *k, const DeltaDims *d, float *saved, float *scratch) {
    memset(k, 0, sizeof *k);
    k->T = d->T;
    k->B = d->B; k->H = d->H; k->K = d->K; k->V = d->V; k->levels = d->levels;
    k->C = d->chunk;
    k->lc = ilog2i(d->chunk);
    k->NC = (int)((k->T + k->C - 1) / k->C);
    k->ll = d->levels > 0;
    k->L = k->NC == 1 ? 0 : (k->ll ? levels_chunk_levels(k->NC) : 1);
    k->ps = !k->ll && k->L == 1;
    k->nthreads = omp_get_max_threads();
    size_t tf, tc, th;
    chunk_buf(k, NULL, NULL, &tf, &tc);
    head_buf(k, NULL, &th);
    k->lstride = round16(tf);
    k->hoff = round16(tc);
    k->tstride = round16(k->hoff + th);
    // The scans are sequential along the chunks, so with few (b, h) pairs they are split over the state's
    // columns (every product of a scan acts on each column of S on its own; what sums over the columns, dA_c
    // and dq̃, is formed in the chunk tasks). Blocks of at least DN_MIN_COLS columns keep the products
    // efficient.
    k->nvb = 1;
    while (k->V % (2 * k->nvb) == 0 && k->V / (2 * k->nvb) >= DN_MIN_COLS &&
           (int64_t)k->B * k->H * k->nvb < DN_SCAN_TASKS)
        k->nvb *= 2;
    k->vb = k->V / k->nvb;

    const size_t BNH = (size_t)k->B * k->NC * k->H, KV = k->ps ? 0 : (size_t)k->K * (k->K + k->V);
    const size_t P = k->ps ? 1 : 0, C = k->C;
    size_t off = 0;
    k->Qt = carve(saved, &off, BNH * C * k->K);
    k->AX = carve(saved, &off, BNH * KV);
    k->Loc = carve(saved, &off, BNH * k->lstride);
    k->nsaved = off;
    off = 0;
    k->dQt = carve(scratch, &off, BNH * C * k->K);
    k->dAX = carve(scratch, &off, BNH * KV);
    k->Vn = carve(scratch, &off, P * BNH * C * k->V);
    k->dVn = carve(scratch, &off, P * BNH * C * k->V);
    k->dSo = carve(scratch, &off, P * BNH * k->K * k->V);
    k->Sst = carve(scratch, &off, BNH * k->K * (size_t)k->L * k->V);
    k->dSst = carve(scratch, &off, (k->ll ? BNH : 0) * k->K * (size_t)k->L * k->V);
    k->tbuf = carve(scratch, &off, (size_t)k->nthreads * k->tstride);
    k->nscratch = off;
}

size_t deltanet_saved_floats(const DeltaDims *d) {
    DnCtx k;
    dn_setup(&k, d, NULL, NULL);
    return k.nsaved;
}

size_t deltanet_scratch_floats(const DeltaDims *d) {
    DnCtx k;
    dn_setup(&k, d, NULL, NULL);
    return k.nscratch;
}

static inline float *thread_buf(const DnCtx *k) { return k->tbuf + (size_t)omp_get_thread_num() * k->tstride; }
static inline size_t bch(const DnCtx *k, int b, int c, int h) { return ((size_t)b * k->NC + c) * k->H + h; }
static inline float *qt_of(const DnCtx *k, float *base, int b, int c, int h) {
    return base + bch(k, b, c, h) * k->C * k->K;
}
static inline float *ax_of(const DnCtx *k, float *base, int b, int c, int h) {
    return base + bch(k, b, c, h) * k->K * (size_t)(k->K + k->V);
}
static inline float *cv_of(const DnCtx *k, float *base, int b, int c, int h) {
    return base + bch(k, b, c, h) * k->C * k->V;
}
static inline float *loc_of(const DnCtx *k, int b, int c, int h) { return k->Loc + bch(k, b, c, h) * k->lstride; }
static inline float *sst_of(const DnCtx *k, float *base, int b, int h, int c) {
    return base + (((size_t)b * k->H + h) * k->NC + c) * k->K * (size_t)k->L * k->V;
}

// C (M×N) = alpha op(A) op(B) with C cleared first (see scan_gemm0 for why not beta = 0).
static inline void gemm0(enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int M, int N, int K, float alpha,
                         const float *A, int lda, const float *B, int ldb, float *C, int ldc) {
    for (int i = 0; i < M; i++) memset(C + (size_t)i * ldc, 0, sizeof(float) * (size_t)N);
    cblas_sgemm(CblasRowMajor, ta, tb, M, N, K, alpha, A, lda, B, ldb, 1.0f, C, ldc);
}
// C (M×N) += alpha op(A) op(B).
static inline void gemm1(enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int M, int N, int K, float alpha,
                         const float *A, int lda, const float *B, int ldb, float *C, int ldc) {
    cblas_sgemm(CblasRowMajor, ta, tb, M, N, K, alpha, A, lda, B, ldb, 1.0f, C, ldc);
}

// B (M×N) = op(L) B in place, L lower triangular (M×M; entries above the diagonal are not read): half the
// flops of a GEMM. unit: L has a unit diagonal.
static inline void trmm_l(enum CBLAS_TRANSPOSE tl, bool unit, int M, int N, const float *L, int ldl, float *B, int ldb) {
    cblas_strmm(CblasRowMajor, CblasLeft, CblasLower, tl, unit ? CblasUnit : CblasNonUnit, M, N, 1.0f, L, ldl, B, ldb);
}
// B (M×N) = B op(L) in place, L lower triangular (N×N).
static inline void trmm_r(enum CBLAS_TRANSPOSE tl, bool unit, int M, int N, const float *L, int ldl, float *B, int ldb) {
    cblas_strmm(CblasRowMajor, CblasRight, CblasLower, tl, unit ? CblasUnit : CblasNonUnit, M, N, 1.0f, L, ldl, B, ldb);
}
// Copies an M×N block.
static inline void copy_rows(int M, int N, const float *src, int lds, float *dst, int ldd) {
    for (int i = 0; i < M; i++) memcpy(dst + (size_t)i * ldd, src + (size_t)i * lds, sizeof(float) * (size_t)N);
}
// Row panel of the lower-triangular products below.
#define DN_PANEL 32
// The lower triangle (diagonal included) of C (M×M) = alpha A Bᵀ (A, B: M×Kd), by row panels that skip the
// blocks above the diagonal. clear: C is overwritten and zeroed above the diagonal; else the product is added
// (and entries above the diagonal get some of it: callers read only the lower triangle).
static void gemm_lower_nt(bool clear, int M, int Kd, float alpha, const float *A, int lda, const float *B, int ldb,
                          float *C, int ldc) {
    for (int p = 0; p < M; p += DN_PANEL) {
        const int m = LL_MIN(DN_PANEL, M - p);
        if (clear)
            gemm0(CblasNoTrans, CblasTrans, m, p + m, Kd, alpha, A + (size_t)p * lda, lda, B, ldb, C + (size_t)p * ldc,
                  ldc);
        else
            gemm1(CblasNoTrans, CblasTrans, m, p + m, Kd, alpha, A + (size_t)p * lda, lda, B, ldb, C + (size_t)p * ldc,
                  ldc);
    }
    if (clear)
        for (int i = 0; i < M; i++)
            for (int j = i + 1; j < M; j++) C[(size_t)i * ldc + j] = 0.0f;
}

// ---------------------------------------------------------------------------------------------------
// The level schedule of state scan j at chunk c (plain GDN: the one scan in which every chunk writes and
// every chunk after the first reads).
typedef struct {
    bool in;   // the entering state is live (nonzero)
    bool rd;   // chunk c reads it
    bool wr;   // chunk c adds its X_c
    bool out;  // the state leaving chunk c is read later (else it is not formed)
    bool tr;   // in && out: the entering state is carried through the chunk
    int lev;   // λ level of the read, -1: weight 1 (plain)
} LevFlags;

static bool lev_out(const DnCtx *k, int64_t c, int j) {
    if (!k->ll) return c + 1 < k->NC;
    // the next reader of c's group (readers: the right half) must exist and come after c
    const int64_t gs = (c >> (j + 1)) << (j + 1), half = (int64_t)1 << j;
    const int64_t next = LL_MAX(c + 1, gs + half);
    return next <= LL_MIN((int64_t)k->NC - 1, gs + 2 * half - 1);
}

static LevFlags lev_flags(const DnCtx *k, int c, int j) {
    LevFlags f;
    f.out = lev_out(k, c, j);
    // the state entering c is live iff the one leaving c-1 was formed: the writers always add X, and a live
    // state is carried on while a reader of its group is still to come
    f.in = c > 0 && lev_out(k, c - 1, j);
    f.tr = f.in && f.out;
    if (k->ll) {
        f.rd = level_chunk_reads(c, j);
        f.wr = level_chunk_writes(c, j);
        f.lev = k->lc + 1 + j;
    } else {
        f.rd = c > 0;
        f.wr = true;
        f.lev = -1;
    }
    return f;
}

// ---------------------------------------------------------------------------------------------------
// Chunk-local forward

// Tm = (I + M)⁻¹ for M_ij = β_i KK_ij (E_ij) below the diagonal (unit lower triangular; zero above, within
// the Lc×Lc block): row i = e_i − Σ_{j<i} M_ij row j (row j is zero beyond column j).
// With C a multiple of 16 the row is built 16 columns at a time in a register-sized accumulator (rows are
// zero past their diagonal up to C); an axpy per (i, j) was bound by the stores of the row.
static void unit_tril_inverse(float *Tm, const float *KK, const float *E, const float *bt, int Lc, int C,
                              float *restrict m) {
    for (int i = 0; i < Lc; i++) {
        float *restrict Ti = Tm + (size_t)i * C;
        const float *KKi = KK + (size_t)i * C;
        const float *Ei = E ? E + (size_t)i * C : NULL;
        for (int j = 0; j < i; j++) m[j] = -bt[i] * KKi[j] * (Ei ? Ei[j] : 1.0f);
        if (C % 16 == 0) {
            for (int l0 = 0; l0 < C; l0 += 16) {
                float acc[16] = {0};
                for (int j = l0; j < i; j++) {  // rows j < l0 are zero from column l0 on
                    const float *restrict Tj = Tm + (size_t)j * C + l0;
                    for (int l = 0; l < 16; l++) acc[l] += m[j] * Tj[l];
                }
                memcpy(Ti + l0, acc, sizeof acc);
            }
        } else {
            memset(Ti, 0, sizeof(float) * (size_t)C);
            for (int j = 0; j < i; j++) {
                const float *restrict Tj = Tm + (size_t)j * C;
                for (int l = 0; l <= j; l++) Ti[l] += m[j] * Tj[l];
            }
        }
        Ti[i] = 1.0f;
    }
}

// Multiplies the entries j <= i of row i by λ_i[level_of(i, j)] (level 0 the diagonal, level l >= 1 the
// Fenwick bucket of i).
static void apply_levels(float *restrict e, const float *lam_i, int i) {
    e[i] *= lam_i[0];
    for (int l = 1; (1 << (l - 1)) <= i; l++) {
        int64_t lo, hi;
        if (!level_bucket(i, l, &lo, &hi)) continue;
        const float lv = lam_i[l];
        for (int64_t j = lo; j < hi; j++) e[j] *= lv;
    }
}

// dλ_i[level_of(i, j)] += u_j for j <= i (bucket sums).
static void level_sums(const float *restrict u, float *restrict dlam_i, int i) {
    dlam_i[0] += u[i];
    for (int l = 1; (1 << (l - 1)) <= i; l++) {
        int64_t lo, hi;
        if (level_bucket(i, l, &lo, &hi)) dlam_i[l] += scan_sum(u + lo, (int)(hi - lo));
    }
}

typedef struct {
    int64_t t0;
    int Lc;
    size_t row0;         // b·T + t0
    const float *Q, *Kp;  // (Lc, K) row stride H·K
    const float *Vp;      // (Lc, V) row stride H·V
    const float *lamh;    // λ rows of the chunk for head h (row stride H·levels), NULL for plain
    float gam, egam;      // Γ, e^Γ
} ChunkIdx;

static ChunkIdx chunk_idx(const DnCtx *k, int b, int c, int h) {
    const ChunkSpan sp = chunk_span(k->T, k->C, b, c);
    ChunkIdx x;
    x.t0 = sp.t0;
    x.Lc = sp.Lc;
    x.row0 = sp.row0;
    x.Q = k->q + (x.row0 * k->H + h) * k->K;
    x.Kp = k->k + (x.row0 * k->H + h) * k->K;
    x.Vp = k->v + (x.row0 * k->H + h) * k->V;
    x.lamh = k->ll ? k->lam + (x.row0 * k->H + h) * k->levels : NULL;
    x.gam = x.egam = 0.0f;
    return x;
}

// Everything local to chunk c of head h: buffers of w, q̃ into Qt; A, EL, Aλ if intra; Tg, U, K̃, −W̃ if state
// (the chunk's state is used by a later chunk).
// The chunk's G, β, e^G, e^{Γ−G}, Γ, e^Γ; KK (lower triangle only: all that is read of it), QKl into QK and
// E (j <= i).
static void local_decays(const DnCtx *k, int h, const ChunkBuf *w, ChunkIdx *x, float *QK) {
    const int C = k->C, K = k->K, H = k->H, HK = H * K, Lc = x->Lc;
    float acc = 0.0f;
    for (int i = 0; i < Lc; i++) {
        const size_t r = (x->row0 + i) * H + h;
        acc += k->g[r];
        w->G[i] = acc;
        w->bt[i] = k->beta[r];
    }
    x->gam = w->G[Lc - 1];
    x->egam = scan_exp(x->gam);
    for (int i = 0; i < Lc; i++) {
        w->eG[i] = scan_exp(w->G[i]);
        w->eR[i] = scan_exp(x->gam - w->G[i]);
    }
    for (int i = 0; i < Lc; i++) memset(w->KK + (size_t)i * C, 0, sizeof(float) * (size_t)Lc);
    cblas_ssyrk(CblasRowMajor, CblasLower, CblasNoTrans, Lc, K, 1.0f, x->Kp, HK, 1.0f, w->KK, C);
    gemm_lower_nt(true, Lc, K, 1.0f, x->Q, HK, x->Kp, HK, QK, C);  // QKl
    for (int i = 0; i < Lc; i++) {
        float *restrict Ei = w->E + (size_t)i * C;
        const float Gi = w->G[i];
        for (int j = 0; j <= i; j++) Ei[j] = scan_exp(Gi - w->G[j]);
    }
}

// K̃ = e^{Γ−G} ⊙ K.
static void form_kt(const DnCtx *k, const ChunkBuf *w, const ChunkIdx *x) {
    const int K = k->K, HK = k->H * K;
    for (int i = 0; i < x->Lc; i++) {
        const float *restrict ki = x->Kp + (size_t)i * HK;
        float *restrict kti = w->Kt + (size_t)i * K;
        for (int n = 0; n < K; n++) kti[n] = w->eR[i] * ki[n];
    }
}

// Log-linear: the derived part from the kept one: Λ, Aλ = A ⊙ Λ (j <= i), βV, K̃ if state.
static void ll_derived(const DnCtx *k, const ChunkBuf *w, const ChunkIdx *x, bool state) {
    const int C = k->C, V = k->V, HV = k->H * V, Lc = x->Lc;
    const size_t ld_lam = (size_t)k->H * k->levels;
    for (int i = 0; i < Lc; i++) {
        float *restrict Lmi = w->Lm + (size_t)i * C, *restrict Ali = w->Al + (size_t)i * C;
        const float *restrict Ai = w->A + (size_t)i * C;
        for (int j = 0; j <= i; j++) Lmi[j] = 1.0f;
        apply_levels(Lmi, x->lamh + (size_t)i * ld_lam, i);
        for (int j = 0; j <= i; j++) Ali[j] = Ai[j] * Lmi[j];
        for (int j = i + 1; j < Lc; j++) Ali[j] = 0.0f;
        const float *restrict vi = x->Vp + (size_t)i * HV;
        float *restrict bvi = w->bV + (size_t)i * V;
        for (int n = 0; n < V; n++) bvi[n] = w->bt[i] * vi[n];
    }
    if (state) form_kt(k, w, x);
}

// Everything local to chunk c of head h (see the top of the file), one inverse Tg and products over the K+V
// columns of [−W̃ | U] at once:
//   Z = [−W̃ | U] = Tg [−β e^G ⊙ K | β V],  Ap = QKl ⊙ E,  q̃ = e^G ⊙ Q + Ap (−W̃)
//   log-linear: A = Ap Tg (= (QKl Tu) ⊙ E),  Aλ = A ⊙ Λ,  βV;  plain: Aλ = Ap (o_intra = Aλ U)
// (W̃ = e^G ⊙ Tu βK = Tg (β e^G ⊙ K) as Tg = D Tu D⁻¹, D = diag(e^G)); K̃ if state (a later chunk uses the
// chunk's state).
static void local_forward(const DnCtx *k, int b, int c, int h, const ChunkBuf *w, ChunkIdx *x, bool state) {
    const int C = k->C, K = k->K, V = k->V, H = k->H, HK = H * K, HV = H * V, KV = K + V, Lc = x->Lc;
    local_decays(k, h, w, x, w->Ap);
    for (int i = 0; i < Lc; i++) {
        float *restrict Api = w->Ap + (size_t)i * C;
        const float *restrict Ei = w->E + (size_t)i * C;
        for (int j = 0; j <= i; j++) Api[j] *= Ei[j];
    }
    unit_tril_inverse(w->Tg, w->KK, w->E, w->bt, Lc, C, w->u);
    for (int i = 0; i < Lc; i++) {
        const float *restrict ki = x->Kp + (size_t)i * HK, *restrict vi = x->Vp + (size_t)i * HV;
        float *restrict wui = w->WU + (size_t)i * KV;
        const float bw = -w->bt[i] * w->eG[i], bv = w->bt[i];
        for (int n = 0; n < K; n++) wui[n] = bw * ki[n];
        for (int n = 0; n < V; n++) wui[K + n] = bv * vi[n];
    }
    trmm_l(CblasNoTrans, true, Lc, KV, w->Tg, C, w->WU, KV);  // Z = [−W̃ | U]
    float *Qt = qt_of(k, k->Qt, b, c, h);
    copy_rows(Lc, K, w->WU, KV, Qt, K);
    trmm_l(CblasNoTrans, false, Lc, K, w->Ap, C, Qt, K);  // Ap (−W̃)
    for (int i = 0; i < Lc; i++) {
        const float *restrict qi = x->Q + (size_t)i * HK;
        float *restrict qti = Qt + (size_t)i * K;
        for (int n = 0; n < K; n++) qti[n] += w->eG[i] * qi[n];
    }
    if (k->ll) {
        copy_rows(Lc, Lc, w->Ap, C, w->A, C);
        trmm_r(CblasNoTrans, true, Lc, Lc, w->Tg, C, w->A, C);  // A = Ap Tg
        ll_derived(k, w, x, state);
    } else if (state) {
        form_kt(k, w, x);
    }
}

// AX = [e^Γ I | 0] + K̃ᵀ [−W̃ | U]  (K × (K+V))
static void form_ax(const DnCtx *k, const ChunkBuf *w, const ChunkIdx *x, float *AX) {
    const int K = k->K, KV = K + k->V;
    memset(AX, 0, sizeof(float) * (size_t)K * KV);
    for (int n = 0; n < K; n++) AX[(size_t)n * KV + n] = x->egam;
    gemm1(CblasTrans, CblasNoTrans, K, KV, x->Lc, 1.0f, w->Kt, K, w->WU, KV, AX, KV);
}

// Chunk task, forward: o = intra part (overwrites the rows), q̃, AX and the chunk-local forward part (Loc).
static void chunk_forward(const DnCtx *k, int b, int c, int h, float *tb) {
    const ChunkBuf w = chunk_buf(k, loc_of(k, b, c, h), tb, NULL, NULL);
    ChunkIdx x = chunk_idx(k, b, c, h);
    const bool state = c < k->NC - 1;
    local_forward(k, b, c, h, &w, &x, state);
    const int HV = k->H * k->V;
    float *o = k->o + (x.row0 * k->H + h) * k->V;
    if (k->ll)
        copy_rows(x.Lc, k->V, w.bV, k->V, o, HV);
    else
        copy_rows(x.Lc, k->V, w.WU + k->K, k->K + k->V, o, HV);
    trmm_l(CblasNoTrans, false, x.Lc, k->V, w.Al, k->C, o, HV);  // o = Aλ βV; plain Aλ U
    if (state && !k->ps) form_ax(k, &w, &x, ax_of(k, k->AX, b, c, h));
}

// ---------------------------------------------------------------------------------------------------
// State scans (head tasks). A task scans one block of vb state columns (columns e0 .. e0+vb) of head (b, h).

// A column block of the states of all scans of one chunk: scan j's block starts at p + j·lvs, its rows are
// ld apart, it is vb columns wide.
typedef struct {
    float *p;
    int ld, lvs;
} StView;

// The block e0 of a chunk's states stored side by side (Sst, dSst: K × L·V).
static StView stored_view(const DnCtx *k, float *base, int b, int h, int c, int e0) {
    return (StView){sst_of(k, base, b, h, c) + e0, k->L * k->V, k->V};
}
// A state of a head buffer (K × L·vb, scans side by side).
static StView buf_view(const DnCtx *k, float *p) { return (StView){p, k->L * k->vb, k->vb}; }

// The scans that chunk c reads: their count; lev[r], jr[r] get each read's λ level and scan index.
static int read_list(const DnCtx *k, int c, int *lev, int *jr) {
    int nr = 0;
    for (int j = 0; j < k->L; j++) {
        const LevFlags f = lev_flags(k, c, j);
        if (!f.rd) continue;
        lev[nr] = f.lev;
        jr[nr++] = j;
    }
    return nr;
}

// The read states of a chunk stacked into Sr (nr·K × ncols).
static void stack_reads(const DnCtx *k, StView S, int ncols, int nr, const int *jr, float *Sr) {
    for (int r = 0; r < nr; r++)
        copy_rows(k->K, ncols, S.p + (size_t)jr[r] * S.lvs, S.ld, Sr + (size_t)r * k->K * ncols, ncols);
}

// The λ-weighted q̃ of each read side by side into Wr (Lc × nr·K).
static void weigh_reads(const DnCtx *k, const float *Qt, const ChunkIdx *x, int nr, const int *lev, float *Wr) {
    const int K = k->K, ld = nr * K;
    const size_t ld_lam = (size_t)k->H * k->levels;
    for (int i = 0; i < x->Lc; i++) {
        const float *restrict qi = Qt + (size_t)i * K;
        for (int r = 0; r < nr; r++) {
            const float wl = lev[r] >= 0 ? x->lamh[(size_t)i * ld_lam + lev[r]] : 1.0f;
            float *restrict o = Wr + (size_t)i * ld + (size_t)r * K;
            for (int n = 0; n < K; n++) o[n] = wl * qi[n];
        }
    }
}

// Runs [j0, j1) of consecutive carried scans of chunk c, each one product; scans are adjacent columns only
// when every view's block is its whole per-scan stride.
static int carried_run(const DnCtx *k, int c, int j0, bool merge) {
    int j1 = j0 + 1;
    while (merge && j1 < k->L && lev_flags(k, c, j1).tr) j1++;
    return j1;
}

// Carries the live states of chunk c into the next ones: nxt_j = A_c cur_j (tr scans), then writers add
// their block of X_c.
static void states_transition(const DnCtx *k, const float *AX, StView cur, StView nxt, int c, int e0) {
    const int K = k->K, vb = k->vb, KV = K + k->V;
    const bool merge = cur.lvs == vb && nxt.lvs == vb;
    for (int j0 = 0; j0 < k->L;) {
        if (!lev_flags(k, c, j0).tr) {
            j0++;
            continue;
        }
        const int j1 = carried_run(k, c, j0, merge);
        gemm0(CblasNoTrans, CblasNoTrans, K, (j1 - j0) * vb, K, 1.0f, AX, KV, cur.p + (size_t)j0 * cur.lvs, cur.ld,
              nxt.p + (size_t)j0 * nxt.lvs, nxt.ld);
        j0 = j1;
    }
    for (int j = 0; j < k->L; j++) {
        const LevFlags f = lev_flags(k, c, j);
        if (!(f.wr && f.out)) continue;
        for (int n = 0; n < K; n++) {
            const float *restrict xs = AX + (size_t)n * KV + K + e0;
            float *restrict d = nxt.p + (size_t)n * nxt.ld + (size_t)j * nxt.lvs;
            if (f.tr)
                for (int e = 0; e < vb; e++) d[e] += xs[e];
            else
                memcpy(d, xs, sizeof(float) * vb);
        }
    }
}

// Head task, forward: the scans of all levels along the chunks, adding the reads to o.
static void states_forward(const DnCtx *k, int b, int h, int e0, float *tb) {
    const HeadBuf hb = head_buf(k, tb, NULL);
    float *cur = hb.cur, *nxt = hb.nxt;
    const int K = k->K, vb = k->vb, HV = k->H * k->V;
    int lev[LEVEL_MAX_READS], jr[LEVEL_MAX_READS];
    for (int c = 0; c < k->NC; c++) {
        const ChunkIdx x = chunk_idx(k, b, c, h);
        const int nr = c > 0 ? read_list(k, c, lev, jr) : 0;
        if (nr > 0) {  // o += Wr Sr
            stack_reads(k, buf_view(k, cur), vb, nr, jr, hb.Sr);
            weigh_reads(k, qt_of(k, k->Qt, b, c, h), &x, nr, lev, hb.Wr);
            gemm1(CblasNoTrans, CblasNoTrans, x.Lc, vb, nr * K, 1.0f, hb.Wr, nr * K, hb.Sr, vb,
                  k->o + (x.row0 * k->H + h) * k->V + e0, HV);
        }
        if (c == k->NC - 1) break;
        states_transition(k, ax_of(k, k->AX, b, c, h), buf_view(k, cur), buf_view(k, nxt), c, e0);
        float *t = cur;
        cur = nxt;
        nxt = t;
    }
}

// Head task, backward: the scans again, keeping the entering state of every chunk in Sst.
static void states_store(const DnCtx *k, int b, int h, int e0, float *tb) {
    (void)tb;
    for (int c = 0; c + 1 < k->NC; c++)
        states_transition(k, ax_of(k, k->AX, b, c, h), stored_view(k, k->Sst, b, h, c, e0),
                          stored_view(k, k->Sst, b, h, c + 1, e0), c, e0);
}

// Head task, backward: the reverse scan in dSst. dSst[c] (the gradient of the states leaving chunk c, live
// where out) gives dSst[c−1] = A_cᵀ dSst[c] (carried scans) + Wrᵀ dO (the scans c reads).
static void states_reverse(const DnCtx *k, int b, int h, int e0, float *tb) {
    const HeadBuf hb = head_buf(k, tb, NULL);
    const int K = k->K, vb = k->vb, KV = K + k->V, HV = k->H * k->V;
    int lev[LEVEL_MAX_READS], jr[LEVEL_MAX_READS];
    for (int c = k->NC - 1; c > 0; c--) {
        const ChunkIdx x = chunk_idx(k, b, c, h);
        const StView cur = stored_view(k, k->dSst, b, h, c, e0), nxt = stored_view(k, k->dSst, b, h, c - 1, e0);
        const bool state = c < k->NC - 1, merge = vb == k->V;
        for (int j0 = 0; state && j0 < k->L;) {
            if (!lev_flags(k, c, j0).tr) {
                j0++;
                continue;
            }
            const int j1 = carried_run(k, c, j0, merge);
            gemm0(CblasTrans, CblasNoTrans, K, (j1 - j0) * vb, K, 1.0f, ax_of(k, k->AX, b, c, h), KV,
                  cur.p + (size_t)j0 * cur.lvs, cur.ld, nxt.p + (size_t)j0 * nxt.lvs, nxt.ld);
            j0 = j1;
        }
        const int nr = read_list(k, c, lev, jr);
        if (nr == 0) continue;
        const int ld = nr * K;
        weigh_reads(k, qt_of(k, k->Qt, b, c, h), &x, nr, lev, hb.Wr);
        // dSr = Wrᵀ dO, added to the entering-state gradients
        gemm0(CblasTrans, CblasNoTrans, ld, vb, x.Lc, 1.0f, hb.Wr, ld, k->dout + (x.row0 * k->H + h) * k->V + e0, HV,
              hb.dSr, vb);
        for (int r = 0; r < nr; r++) {
            const bool tr = state && lev_flags(k, c, jr[r]).tr;
            for (int n = 0; n < K; n++) {
                const float *restrict s = hb.dSr + ((size_t)r * K + n) * vb;
                float *restrict d = nxt.p + (size_t)n * nxt.ld + (size_t)jr[r] * nxt.lvs;
                if (tr)
                    for (int e = 0; e < vb; e++) d[e] += s[e];
                else
                    memcpy(d, s, sizeof(float) * vb);
            }
        }
    }
}

// Chunk task, backward (log-linear): what the reverse scan leaves out because it sums over the state's
// columns: dAX = [Σ_tr dS_out,j S_in,jᵀ | Σ_writers dS_out,j], and dq̃ = Σ_reads λ S_in,j do (with the
// inter-chunk dλ = q̃·S_in,j do).
static void states_chunk_grads(const DnCtx *k, int b, int c, int h, const ChunkIdx *x, float *tb) {
    const int K = k->K, V = k->V, KV = K + V, LV = k->L * V, HV = k->H * V;
    const float *Sin = sst_of(k, k->Sst, b, h, c), *dSo = sst_of(k, k->dSst, b, h, c);
    if (c < k->NC - 1) {
        float *dAX = ax_of(k, k->dAX, b, c, h);
        memset(dAX, 0, sizeof(float) * (size_t)K * KV);
        for (int j0 = 0; j0 < k->L;) {
            if (!lev_flags(k, c, j0).tr) {
                j0++;
                continue;
            }
            const int j1 = carried_run(k, c, j0, true);
            gemm1(CblasNoTrans, CblasTrans, K, K, (j1 - j0) * V, 1.0f, dSo + (size_t)j0 * V, LV, Sin + (size_t)j0 * V,
                  LV, dAX, KV);
            j0 = j1;
        }
        for (int j = 0; j < k->L; j++) {
            const LevFlags f = lev_flags(k, c, j);
            if (!(f.wr && f.out)) continue;
            for (int n = 0; n < K; n++) {
                const float *restrict s = dSo + (size_t)n * LV + (size_t)j * V;
                float *restrict d = dAX + (size_t)n * KV + K;
                for (int e = 0; e < V; e++) d[e] += s[e];
            }
        }
    }
    float *dQt = qt_of(k, k->dQt, b, c, h);
    memset(dQt, 0, sizeof(float) * (size_t)x->Lc * K);
    int lev[LEVEL_MAX_READS], jr[LEVEL_MAX_READS];
    const int nr = c > 0 ? read_list(k, c, lev, jr) : 0;
    if (nr == 0) return;
    const HeadBuf hb = head_buf(k, tb + k->hoff, NULL);
    const int ld = nr * K;
    const size_t ld_lam = (size_t)k->H * k->levels;
    const float *Qt = qt_of(k, k->Qt, b, c, h), *dO = k->dout + (x->row0 * k->H + h) * V;
    stack_reads(k, stored_view(k, k->Sst, b, h, c, 0), V, nr, jr, hb.Sr);
    gemm0(CblasNoTrans, CblasTrans, x->Lc, ld, V, 1.0f, dO, HV, hb.Sr, V, hb.P, ld);  // P = dO Srᵀ
    for (int i = 0; i < x->Lc; i++) {
        const float *restrict qi = Qt + (size_t)i * K;
        float *restrict dqi = dQt + (size_t)i * K;
        for (int r = 0; r < nr; r++) {
            const float *restrict Pi = hb.P + (size_t)i * ld + (size_t)r * K;
            const float wl = x->lamh[(size_t)i * ld_lam + lev[r]];
            k->dlam[(x->row0 + i) * ld_lam + (size_t)h * k->levels + lev[r]] += scan_dot(qi, Pi, K);
            for (int n = 0; n < K; n++) dqi[n] += wl * Pi[n];
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// Plain GDN state scan (head tasks), the state form: per chunk Vn = U − W̃ S_in, S_out = e^Γ S_in + K̃ᵀ Vn,
// o += Q̃ S_in; two C×K×V products per chunk instead of forming A_c = e^Γ I − K̃ᵀ W̃, X_c = K̃ᵀ U.

// Columns e0 .. e0+vb of Vn = U − W̃ S_in (S_in == NULL: zero) and S_out = e^Γ S_in + K̃ᵀ Vn (S_out may be
// S_in); the states' rows are lds apart, Vn's ldv.
static void plain_advance(const DnCtx *k, int Lc, const float *WU, const float *Kt, float egam, const float *Sin,
                          float *Sout, int lds, float *vn, int ldv, int e0) {
    const int K = k->K, vb = k->vb, KV = K + k->V;
    copy_rows(Lc, vb, WU + K + e0, KV, vn, ldv);
    if (Sin) {
        gemm1(CblasNoTrans, CblasNoTrans, Lc, vb, K, 1.0f, WU, KV, Sin, lds, vn, ldv);
        for (int n = 0; n < K; n++)
            for (int e = 0; e < vb; e++) Sout[(size_t)n * lds + e] = egam * Sin[(size_t)n * lds + e];
        gemm1(CblasTrans, CblasNoTrans, K, vb, Lc, 1.0f, Kt, K, vn, ldv, Sout, lds);
    } else {
        gemm0(CblasTrans, CblasNoTrans, K, vb, Lc, 1.0f, Kt, K, vn, ldv, Sout, lds);
    }
}

static void plain_forward(const DnCtx *k, int b, int h, int e0, float *tb) {
    const HeadBuf hb = head_buf(k, tb, NULL);
    float *S = hb.cur;
    const int K = k->K, V = k->V, vb = k->vb, HV = k->H * V;
    for (int c = 0; c < k->NC; c++) {
        const ChunkIdx x = chunk_idx(k, b, c, h);
        if (c > 0)  // o += Q̃ S
            gemm1(CblasNoTrans, CblasNoTrans, x.Lc, vb, K, 1.0f, qt_of(k, k->Qt, b, c, h), K, S, vb,
                  k->o + (x.row0 * k->H + h) * V + e0, HV);
        if (c == k->NC - 1) break;
        const ChunkBuf w = chunk_buf(k, loc_of(k, b, c, h), NULL, NULL, NULL);
        plain_advance(k, x.Lc, w.WU, w.Kt, scan_exp(w.G[x.Lc - 1]), c > 0 ? S : NULL, S, vb, hb.vn, vb, e0);
    }
}

// Backward: the scan again, keeping S_in (Sst) and Vn of every chunk.
static void plain_store(const DnCtx *k, int b, int h, int e0, float *tb) {
    (void)tb;
    const int V = k->V;
    for (int c = 0; c + 1 < k->NC; c++) {
        const ChunkIdx x = chunk_idx(k, b, c, h);
        const ChunkBuf w = chunk_buf(k, loc_of(k, b, c, h), NULL, NULL, NULL);
        plain_advance(k, x.Lc, w.WU, w.Kt, scan_exp(w.G[x.Lc - 1]), c > 0 ? sst_of(k, k->Sst, b, h, c) + e0 : NULL,
                      sst_of(k, k->Sst, b, h, c + 1) + e0, V, cv_of(k, k->Vn, b, c, h) + e0, V, e0);
    }
}

// Backward: the reverse scan. dSo[c] = gradient of the state leaving chunk c; per chunk dVn = K̃ dSo and
// dSo[c−1] = e^Γ dSo[c] − W̃ᵀ dVn + Q̃ᵀ dO (dQ̃ = dO S_inᵀ sums over the columns: chunk_backward forms it).
static void plain_reverse(const DnCtx *k, int b, int h, int e0, float *tb) {
    (void)tb;
    const int K = k->K, V = k->V, vb = k->vb, KV = K + V, HV = k->H * V;
    for (int c = k->NC - 1; c >= 0; c--) {
        const ChunkIdx x = chunk_idx(k, b, c, h);
        const ChunkBuf w = chunk_buf(k, loc_of(k, b, c, h), NULL, NULL, NULL);
        const bool state = c < k->NC - 1;
        float *dSin = c > 0 ? k->dSo + bch(k, b, c - 1, h) * K * (size_t)V + e0 : NULL;
        if (state) {
            const float *dS = k->dSo + bch(k, b, c, h) * K * (size_t)V + e0;
            float *dVn = cv_of(k, k->dVn, b, c, h) + e0;
            gemm0(CblasNoTrans, CblasNoTrans, x.Lc, vb, K, 1.0f, w.Kt, K, dS, V, dVn, V);
            if (dSin) {
                const float eg = scan_exp(w.G[x.Lc - 1]);
                for (int n = 0; n < K; n++)
                    for (int e = 0; e < vb; e++) dSin[(size_t)n * V + e] = eg * dS[(size_t)n * V + e];
                gemm1(CblasTrans, CblasNoTrans, K, vb, x.Lc, 1.0f, w.WU, KV, dVn, V, dSin, V);
            }
        }
        if (dSin) {
            const float *dO = k->dout + (x.row0 * k->H + h) * V + e0;
            if (state)
                gemm1(CblasTrans, CblasNoTrans, K, vb, x.Lc, 1.0f, qt_of(k, k->Qt, b, c, h), K, dO, HV, dSin, V);
            else
                gemm0(CblasTrans, CblasNoTrans, K, vb, x.Lc, 1.0f, qt_of(k, k->Qt, b, c, h), K, dO, HV, dSin, V);
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// Chunk-local backward

// dKK (strictly lower, symmetrised in place), dQKl (lower incl. the diagonal) to the inputs:
// dk += (dKK + dKKᵀ) K + dQKlᵀ Q, dq += dQKl K.
static void qk_grads(const DnCtx *k, const ChunkBuf *w, const ChunkIdx *x, float *dq, float *dk) {
    const int C = k->C, K = k->K, HK = k->H * K, Lc = x->Lc;
    float *dKK = w->dKK;
    for (int i = 0; i < Lc; i++) {
        dKK[(size_t)i * C + i] = 0.0f;
        for (int j = i + 1; j < Lc; j++) dKK[(size_t)i * C + j] = dKK[(size_t)j * C + i];
    }
    gemm1(CblasNoTrans, CblasNoTrans, Lc, K, Lc, 1.0f, dKK, C, x->Kp, HK, dk, HK);
    copy_rows(Lc, K, x->Kp, HK, w->tk, K);
    trmm_l(CblasNoTrans, false, Lc, K, w->dQK, C, w->tk, K);  // dq += dQKl K
    for (int i = 0; i < Lc; i++)
        for (int n = 0; n < K; n++) dq[(size_t)i * HK + n] += w->tk[(size_t)i * K + n];
    copy_rows(Lc, K, x->Q, HK, w->tk, K);
    trmm_l(CblasTrans, false, Lc, K, w->dQK, C, w->tk, K);  // dk += dQKlᵀ Q
    for (int i = 0; i < Lc; i++)
        for (int n = 0; n < K; n++) dk[(size_t)i * HK + n] += w->tk[(size_t)i * K + n];
}

// The decays: dG_j −= column sums of R, Γ = G_{Lc−1} (dΓ), then the reverse cumsum to g; dβ.
static void decay_grads(const DnCtx *k, const ChunkBuf *w, const ChunkIdx *x, int h, double dgam) {
    const int H = k->H, Lc = x->Lc;
    w->dG[Lc - 1] += (float)dgam;
    double acc = 0.0;
    for (int i = Lc - 1; i >= 0; i--) {
        acc += (double)w->dG[i] - (double)w->colR[i];
        const size_t r = (x->row0 + i) * H + h;
        k->dg[r] += (float)acc;
        k->dbeta[r] += w->dbt[i];
    }
}

// K̃ = e^{Γ−G} ⊙ K, dK̃ in w->dKt: dk += e^{Γ−G} dK̃, dG −= K̃·dK̃; returns the part of dΓ.
static double kt_grads(const DnCtx *k, const ChunkBuf *w, const ChunkIdx *x, float *dk) {
    const int K = k->K, HK = k->H * K;
    double dgam = 0.0;
    for (int i = 0; i < x->Lc; i++) {
        const float *restrict kti = w->Kt + (size_t)i * K, *restrict dkti = w->dKt + (size_t)i * K;
        float *restrict dki = dk + (size_t)i * HK;
        const float s = scan_dot(kti, dkti, K), er = w->eR[i];
        w->dG[i] -= s;
        dgam += s;
        for (int n = 0; n < K; n++) dki[n] += er * dkti[n];
    }
    return dgam;
}

// The common tail of both chunk backwards (see local_forward). On entry w->dWU holds dZ (Z = [−W̃ | U]),
// w->dQK dAp (lower triangle incl. the diagonal), log-linear: w->dMg the Aᵀ (dA Tgᵀ) part of −dMg and
// w->dbV the intra part of d(βV).
//   Ap = QKl ⊙ E:  dQKl = dAp ⊙ E, decays R = dAp ⊙ Ap
//   Z = Tg Y, Y = [−β e^G ⊙ K | β V]:  dY = Tgᵀ dZ,  dMg = −stril(dY Zᵀ (+ Aᵀ dA Tgᵀ))
//   Mg_ij = β_i KK_ij E_ij (i > j):  dβ, dKK, decays;  then the products KK, QKl and the decays' cumsum
static void wy_grads(const DnCtx *k, const ChunkBuf *w, const ChunkIdx *x, int h, float *dq, float *dk, float *dv,
                     double dgam) {
    const int C = k->C, K = k->K, V = k->V, H = k->H, HK = H * K, HV = H * V, KV = K + V, Lc = x->Lc;
    for (int i = 0; i < Lc; i++) {
        const float *restrict Api = w->Ap + (size_t)i * C, *restrict Ei = w->E + (size_t)i * C;
        float *restrict dqki = w->dQK + (size_t)i * C;
        float rowR = 0.0f;
        for (int j = 0; j < i; j++) {
            const float r = dqki[j] * Api[j];
            rowR += r;
            w->colR[j] += r;
        }
        w->dG[i] += rowR;
        for (int j = 0; j <= i; j++) dqki[j] *= Ei[j];
        for (int j = i + 1; j < Lc; j++) dqki[j] = 0.0f;
    }
    trmm_l(CblasTrans, true, Lc, KV, w->Tg, C, w->dWU, KV);  // dY
    gemm_lower_nt(!k->ll, Lc, KV, 1.0f, w->dWU, KV, w->WU, KV, w->dMg, C);
    for (int i = 0; i < Lc; i++) {
        const float *restrict ki = x->Kp + (size_t)i * HK, *restrict vi = x->Vp + (size_t)i * HV;
        float *restrict dyk = w->dWU + (size_t)i * KV, *restrict dyv = dyk + K;
        float *restrict dki = dk + (size_t)i * HK, *restrict dvi = dv + (size_t)i * HV;
        const float bi = w->bt[i], eg = w->eG[i], bw = -bi * eg;
        if (k->ll)
            for (int n = 0; n < V; n++) dyv[n] += w->dbV[(size_t)i * V + n];
        const float sk = scan_dot(ki, dyk, K);
        w->dbt[i] += scan_dot(vi, dyv, V) - eg * sk;
        w->dG[i] += bw * sk;
        for (int n = 0; n < K; n++) dki[n] += bw * dyk[n];
        for (int n = 0; n < V; n++) dvi[n] += bi * dyv[n];
        const float *restrict KKi = w->KK + (size_t)i * C, *restrict Ei = w->E + (size_t)i * C;
        const float *restrict dMgi = w->dMg + (size_t)i * C;
        float *restrict dKKi = w->dKK + (size_t)i * C;
        float db = 0.0f, rowR = 0.0f;
        for (int j = 0; j < i; j++) {
            const float mg = -dMgi[j], ke = KKi[j] * Ei[j];
            db += mg * ke;
            dKKi[j] = bi * Ei[j] * mg;
            const float r = mg * bi * ke;
            rowR += r;
            w->colR[j] += r;
        }
        w->dbt[i] += db;
        w->dG[i] += rowR;
    }
    qk_grads(k, w, x, dq, dk);
    decay_grads(k, w, x, h, dgam);
}

// Chunk task, backward, log-linear GDN's own part (returns its part of dΓ). The state's part of dZ from dAX (AX = [e^Γ I | 0] + K̃ᵀ Z):
// dK̃ = Z dAXᵀ, dZ = K̃ dAX, dΓ += e^Γ tr(dA_c); q̃ = e^G ⊙ Q + Ap (−W̃): dAp = dQ̃ (−W̃)ᵀ, d(−W̃) += Apᵀ dQ̃;
// o_intra = Aλ βV: dAλ = dO (βV)ᵀ, d(βV) = Aλᵀ dO; Aλ = A ⊙ Λ: dλ, dA = dAλ ⊙ Λ; A = Ap Tg: dAp += dA Tgᵀ,
// dTg += Apᵀ dA (through the inverse: −Aᵀ (dA Tgᵀ) in dMg).
static double ll_grads(const DnCtx *k, int b, int c, int h, const ChunkBuf *wp, const ChunkIdx *xp, float *dq,
                       float *dk, float *tb) {
    const ChunkBuf w = *wp;
    const ChunkIdx x = *xp;
    const bool state = c < k->NC - 1, reads = k->L > 0 && c > 0;
    const int C = k->C, K = k->K, V = k->V, H = k->H, HK = H * K, HV = H * V, KV = K + V, Lc = x.Lc;
    const size_t ld_lam = (size_t)H * k->levels;
    const float *dO = k->dout + (x.row0 * H + h) * V;
    float *dlamh = k->dlam + (x.row0 * H + h) * k->levels;
    double dgam = 0.0;
    ll_derived(k, &w, &x, state);
    if (k->L > 0) states_chunk_grads(k, b, c, h, &x, tb);
    if (state) {
        const float *dAX = ax_of(k, k->dAX, b, c, h);
        double tr = 0.0;
        for (int n = 0; n < K; n++) tr += dAX[(size_t)n * KV + n];
        dgam += x.egam * tr;
        gemm0(CblasNoTrans, CblasTrans, Lc, K, KV, 1.0f, w.WU, KV, dAX, KV, w.dKt, K);   // dK̃
        gemm0(CblasNoTrans, CblasNoTrans, Lc, KV, K, 1.0f, w.Kt, K, dAX, KV, w.dWU, KV);  // dZ
        dgam += kt_grads(k, &w, &x, dk);
    } else {
        for (int i = 0; i < Lc; i++) memset(w.dWU + (size_t)i * KV, 0, sizeof(float) * KV);
    }
    if (reads) {
        const float *dQt = qt_of(k, k->dQt, b, c, h);
        for (int i = 0; i < Lc; i++) {  // q̃ = e^G ⊙ Q + ...: dq += e^G dQ̃, dG += e^G q·dQ̃
            const float *restrict qi = x.Q + (size_t)i * HK, *restrict dqti = dQt + (size_t)i * K;
            float *restrict dqi = dq + (size_t)i * HK;
            const float eg = w.eG[i];
            w.dG[i] += eg * scan_dot(qi, dqti, K);
            for (int n = 0; n < K; n++) dqi[n] += eg * dqti[n];
        }
        gemm_lower_nt(true, Lc, K, 1.0f, dQt, K, w.WU, KV, w.dQK, C);  // dAp = dQ̃ (−W̃)ᵀ
        copy_rows(Lc, K, dQt, K, w.tk, K);
        trmm_l(CblasTrans, false, Lc, K, w.Ap, C, w.tk, K);  // d(−W̃) += Apᵀ dQ̃
        for (int i = 0; i < Lc; i++)
            for (int n = 0; n < K; n++) w.dWU[(size_t)i * KV + n] += w.tk[(size_t)i * K + n];
    } else {
        for (int i = 0; i < Lc; i++) memset(w.dQK + (size_t)i * C, 0, sizeof(float) * (size_t)Lc);
    }
    gemm_lower_nt(true, Lc, V, 1.0f, dO, HV, w.bV, V, w.dAl, C);
    copy_rows(Lc, V, dO, HV, w.dbV, V);
    trmm_l(CblasTrans, false, Lc, V, w.Al, C, w.dbV, V);  // d(βV) = Aλᵀ dO
    for (int i = 0; i < Lc; i++) {
        const float *restrict dali = w.dAl + (size_t)i * C, *restrict Ai = w.A + (size_t)i * C;
        const float *restrict Lmi = w.Lm + (size_t)i * C;
        float *restrict dAi = w.dA + (size_t)i * C;
        for (int j = 0; j <= i; j++) w.u[j] = dali[j] * Ai[j];
        level_sums(w.u, dlamh + (size_t)i * ld_lam, i);
        for (int j = 0; j <= i; j++) dAi[j] = dali[j] * Lmi[j];
        for (int j = i + 1; j < Lc; j++) dAi[j] = 0.0f;
    }
    copy_rows(Lc, Lc, w.dA, C, w.P1, C);
    trmm_r(CblasTrans, true, Lc, Lc, w.Tg, C, w.P1, C);  // P1 = dA Tgᵀ
    for (int i = 0; i < Lc; i++) {  // dAp += P1 (lower triangle incl. the diagonal)
        float *restrict dqki = w.dQK + (size_t)i * C;
        const float *restrict pi = w.P1 + (size_t)i * C;
        for (int j = 0; j <= i; j++) dqki[j] += pi[j];
    }
    copy_rows(Lc, Lc, w.P1, C, w.dMg, C);
    trmm_l(CblasTrans, false, Lc, Lc, w.A, C, w.dMg, C);  // Aᵀ P1
    return dgam;
}

// Chunk task, backward, plain GDN's own part (returns its part of dΓ). With dP = [dQ̃ | dO]: Ap Z = [q̃ − e^G ⊙ Q | o_intra], so dAp = dP Zᵀ
// (lower), dZ += Apᵀ dP; the state's part of dZ from the scans: d(−W̃) = dVn S_inᵀ, dU = dVn; dK̃ = Vn dSoᵀ.
static double plain_grads(const DnCtx *k, int b, int c, int h, const ChunkBuf *wp, const ChunkIdx *xp, float *dq,
                          float *dk) {
    const ChunkBuf w = *wp;
    const ChunkIdx x = *xp;
    const bool state = c < k->NC - 1, reads = k->L > 0 && c > 0;
    const int C = k->C, K = k->K, V = k->V, H = k->H, HK = H * K, HV = H * V, KV = K + V, Lc = x.Lc;
    const float *dO = k->dout + (x.row0 * H + h) * V;
    const float *Sin = sst_of(k, k->Sst, b, h, c);
    double dgam = 0.0;
    // dP = [dQ̃ | dO], dQ̃ = dO S_inᵀ;  q̃ = e^G ⊙ Q + ...: dq += e^G dQ̃, dG += e^G q·dQ̃
    if (reads) {
        gemm0(CblasNoTrans, CblasTrans, Lc, K, V, 1.0f, dO, HV, Sin, V, w.dP, KV);
        for (int i = 0; i < Lc; i++) {
            const float *restrict qi = x.Q + (size_t)i * HK, *restrict dqti = w.dP + (size_t)i * KV;
            float *restrict dqi = dq + (size_t)i * HK;
            const float eg = w.eG[i];
            w.dG[i] += eg * scan_dot(qi, dqti, K);
            for (int n = 0; n < K; n++) dqi[n] += eg * dqti[n];
        }
    } else {
        for (int i = 0; i < Lc; i++) memset(w.dP + (size_t)i * KV, 0, sizeof(float) * K);
    }
    copy_rows(Lc, V, dO, HV, w.dP + K, KV);
    // the state: dK̃ = Vn dSoᵀ, d(−W̃) = dVn S_inᵀ, dU = dVn, dΓ += e^Γ ⟨S_in, dSo⟩;  K̃ = e^{Γ−G} ⊙ K
    if (state) {
        const float *dS = k->dSo + bch(k, b, c, h) * K * (size_t)V, *dVn = cv_of(k, k->dVn, b, c, h);
        gemm0(CblasNoTrans, CblasTrans, Lc, K, V, 1.0f, cv_of(k, k->Vn, b, c, h), V, dS, V, w.dKt, K);
        if (c > 0) {
            double tr = 0.0;
            for (size_t e = 0; e < (size_t)K * V; e++) tr += (double)Sin[e] * dS[e];
            dgam += x.egam * tr;
            gemm0(CblasNoTrans, CblasTrans, Lc, K, V, 1.0f, dVn, V, Sin, V, w.dWU, KV);
        } else {
            for (int i = 0; i < Lc; i++) memset(w.dWU + (size_t)i * KV, 0, sizeof(float) * K);
        }
        copy_rows(Lc, V, dVn, V, w.dWU + K, KV);
        dgam += kt_grads(k, &w, &x, dk);
    } else {
        for (int i = 0; i < Lc; i++) memset(w.dWU + (size_t)i * KV, 0, sizeof(float) * KV);
    }
    gemm_lower_nt(true, Lc, KV, 1.0f, w.dP, KV, w.WU, KV, w.dQK, C);  // dAp = dP Zᵀ
    trmm_l(CblasTrans, false, Lc, KV, w.Ap, C, w.dP, KV);  // dZ += Apᵀ dP
    for (int i = 0; i < Lc; i++)
        for (int n = 0; n < KV; n++) w.dWU[(size_t)i * KV + n] += w.dP[(size_t)i * KV + n];
    return dgam;
}

// Chunk task, backward: the mixer's own part (ll_grads, plain_grads), then the common tail.
static void chunk_backward(const DnCtx *k, int b, int c, int h, float *tb) {
    const ChunkBuf w = chunk_buf(k, loc_of(k, b, c, h), tb, NULL, NULL);
    ChunkIdx x = chunk_idx(k, b, c, h);
    x.gam = w.G[x.Lc - 1];  // as local_forward set them in chunk_forward
    x.egam = scan_exp(x.gam);
    const int K = k->K, V = k->V, H = k->H;
    float *dq = k->dq + (x.row0 * H + h) * K, *dk = k->dk + (x.row0 * H + h) * K;
    float *dv = k->dv + (x.row0 * H + h) * V;
    for (int i = 0; i < x.Lc; i++) w.dG[i] = w.dbt[i] = w.colR[i] = 0.0f;
    const double dgam = k->ll ? ll_grads(k, b, c, h, &w, &x, dq, dk, tb) : plain_grads(k, b, c, h, &w, &x, dq, dk);
    wy_grads(k, &w, &x, h, dq, dk, dv, dgam);
}

// ---------------------------------------------------------------------------------------------------
// Drivers

typedef void DnTaskFn(const DnCtx *k, int b, int c, int h, float *tb);
typedef void DnHeadFn(const DnCtx *k, int b, int h, int e0, float *tb);

static void chunk_tasks(const DnCtx *k, DnTaskFn *fn) {
    const int64_t ntask = (int64_t)k->B * k->NC * k->H;
#pragma omp parallel for schedule(dynamic, 1) num_threads(k->nthreads)
    for (int64_t t = 0; t < ntask; t++) {
        const int h = (int)(t % k->H), c = (int)((t / k->H) % k->NC), b = (int)(t / ((int64_t)k->H * k->NC));
        fn(k, b, c, h, thread_buf(k));
    }
}

// One task per (b, h, column block); see dn_setup for the blocks.
static void head_tasks(const DnCtx *k, DnHeadFn *fn) {
    const int ntask = k->B * k->H * k->nvb;
#pragma omp parallel for schedule(dynamic, 1) num_threads(k->nthreads)
    for (int t = 0; t < ntask; t++) {
        const int bh = t / k->nvb;
        fn(k, bh / k->H, bh % k->H, (t % k->nvb) * k->vb, thread_buf(k));
    }
}

static void set_inputs(DnCtx *k, const float *q, const float *kk, const float *v, const float *g, const float *beta,
                       const float *lam) {
    k->q = q; k->k = kk; k->v = v; k->g = g; k->beta = beta; k->lam = lam;
}

#ifdef DN_PROF
#include <stdio.h>
#define PT(stmt, name) do { double t0_ = omp_get_wtime(); stmt; fprintf(stderr, "%s %.2f ms\n", name, (omp_get_wtime() - t0_) * 1e3); } while (0)
#else
#define PT(stmt, name) stmt
#endif
void deltanet_forward(float *o, float *saved, const float *q, const float *k, const float *v, const float *g,
                      const float *beta, const float *lam, const DeltaDims *d, float *scratch) {
    DnCtx x;
    dn_setup(&x, d, saved, scratch);
    set_inputs(&x, q, k, v, g, beta, lam);
    x.o = o;
    PT(chunk_tasks(&x, chunk_forward), "fwd_chunk");
    if (x.L > 0) PT(head_tasks(&x, x.ps ? plain_forward : states_forward), "fwd_states");
}

void deltanet_backward(float *dq, float *dk, float *dv, float *dg, float *dbeta, float *dlam, const float *do_,
                       const float *saved, const float *q, const float *k, const float *v, const float *g,
                       const float *beta, const float *lam, const DeltaDims *d, float *scratch) {
    DnCtx x;
    dn_setup(&x, d, (float *)saved, scratch);  // the backward only reads what the forward saved
    set_inputs(&x, q, k, v, g, beta, lam);
    x.dout = do_;
    x.dq = dq; x.dk = dk; x.dv = dv; x.dg = dg; x.dbeta = dbeta; x.dlam = dlam;
    if (x.L > 0) {
        PT(head_tasks(&x, x.ps ? plain_store : states_store), "store");
        PT(head_tasks(&x, x.ps ? plain_reverse : states_reverse), "reverse");
    }
    PT(chunk_tasks(&x, chunk_backward), "chunk_bwd");
}

// ---------------------------------------------------------------------------------------------------
// Recurrent forms

// S = e^g (I − β k kᵀ) S (+ β k vᵀ if v) as S += k·(β(v − e^g kᵀS))ᵀ after S *= e^g: O(K·V), u (V) scratch.
static void step_transition(float *S, const float *kv, const float *v, float a, float bt, int K, int V, float *u) {
    for (int e = 0; e < V; e++) u[e] = 0.0f;
    for (int n = 0; n < K; n++)
        for (int e = 0; e < V; e++) u[e] += kv[n] * S[(size_t)n * V + e];
    for (int e = 0; e < V; e++) u[e] = -bt * a * u[e] + (v ? bt * v[e] : 0.0f);
    for (int n = 0; n < K; n++)
        for (int e = 0; e < V; e++) S[(size_t)n * V + e] = a * S[(size_t)n * V + e] + kv[n] * u[e];
}

void deltanet_step(float *o, float *state, const float *q, const float *k, const float *v, const float *g,
                   const float *beta, int H, int K, int V) {
    float u[V > 0 ? V : 1];
    for (int h = 0; h < H; h++) {
        float *S = state + (size_t)h * K * V;
        const float *qh = q + (size_t)h * K;
        step_transition(S, k + (size_t)h * K, v + (size_t)h * V, expf(g[h]), beta[h], K, V, u);
        for (int e = 0; e < V; e++) {
            float acc = 0.0f;
            for (int n = 0; n < K; n++) acc += S[(size_t)n * V + e] * qh[n];
            o[(size_t)h * V + e] = acc;
        }
    }
}

void deltanet_loglinear_step(float *o, float *state, int64_t t, const float *q, const float *k, const float *v,
                             const float *g, const float *beta, const float *lam, int H, int K, int V, int levels,
                             int lam_levels) {
    const size_t KV = (size_t)K * V, HKV = (size_t)H * KV;
    float u[V > 0 ? V : 1];
    if (t == 0) memset(state, 0, sizeof(float) * levels * HKV);
    for (int h = 0; h < H; h++) {
        float *Sh = state + (size_t)h * KV;   // level l of head h: Sh + l * HKV
        const float *qh = q + (size_t)h * K, *kh = k + (size_t)h * K, *vh = v + (size_t)h * V;
        const float *lh = lam + (size_t)h * lam_levels;
        if (t > 0) {  // levels 0..ctz(t) (2^ctz(t) tokens) merge into the target level, which is empty
            const int kz = __builtin_ctzll((unsigned long long)t), tgt = level_cascade_target(t, levels);
            float *St = Sh + (size_t)tgt * HKV;
            for (int l = 0; l <= kz && l < tgt; l++) {
                float *Sl = Sh + (size_t)l * HKV;
                for (size_t e = 0; e < KV; e++) St[e] += Sl[e];
                memset(Sl, 0, sizeof(float) * KV);
            }
        }
        const float a = expf(g[h]), bt = beta[h];
        for (int l = 1; l < levels; l++)
            if (level_occupied(t, l)) step_transition(Sh + (size_t)l * HKV, kh, NULL, a, bt, K, V, u);
        for (int n = 0; n < K; n++)  // level 0 = this token, ungated
            for (int e = 0; e < V; e++) Sh[(size_t)n * V + e] = bt * kh[n] * vh[e];
        for (int e = 0; e < V; e++) {
            float acc = 0.0f;
            for (int l = 0; l < levels; l++) {
                if (!level_occupied(t, l)) continue;
                const float *S = Sh + (size_t)l * HKV;
                float dot = 0.0f;
                for (int n = 0; n < K; n++) dot += S[(size_t)n * V + e] * qh[n];
                acc += lh[l < lam_levels ? l : lam_levels - 1] * dot;
            }
            o[(size_t)h * V + e] = acc;
        }
    }
}
