// ssd_chunk.c — the parts of the chunkwise scans shared by the Mamba-2 SSD (scan_ssd.c) and the log-linear
// scan (scan_loglinear.c): dims check, scratch layout, the chunk-task routines, and the phase loops.
//
// Notation inside a chunk of Lc tokens (local index i = target, j = source), per head:
//   cs_i = Σ_{r≤i} dt_r·A (chunk-local, fp32, non-increasing), Γ = cs_{Lc-1} (the chunk's total log decay)
//   decay_ij = exp(cs_i - cs_j) for j ≤ i;  E_ij = decay_ij·λ_i[ℓ(i,j)] (λ = 1 for the SSD)
//   CB = C Bᵀ (shared by the heads of a group);  M = CB ⊙ E (lower triangular);  v_j = dt_j x_j
//   y_i = Σ_j M_ij v_j + D x_i + Σ_reads w_i λ_i[lev] (T q_i),  w_i = exp(cs_i + δ) (δ = decay before the
//         chunk since the read state was formed; 0 for the SSD's running state)
//   local state Sc = Σ_j exp(Γ - cs_j) v_j k_jᵀ (P×N)
// Backward (doc/architectures.md §5.5, doc/loglinear-attention.md §4.4), with G_ij = dy_i·x_j, dM_ij = dt_j G_ij:
//   dv = Mᵀ dy + exp(Γ-cs) ⊙ (K dScᵀ);  dx += dt·dv + D dy;  ddt += x·dv
//   dCB = dM ⊙ E (summed over the heads of a batch) -> dC += dCB K, dB += dCBᵀ C
//   R_ij = dM_ij M_ij -> dcs_i += Σ_j R_ij, dcs_j -= Σ_i R_ij;  dλ_i[ℓ] += Σ_{j in bucket ℓ} R_ij / λ_i[ℓ]
//   state: dk_j += exp(Γ-cs_j) dScᵀ v_j;  N_j = v_j·dv^state_j -> dcs_j -= N_j, dΓ += Σ N_j
//   reads: W = dY T;  dq_i += w_i λ W_i;  dλ_i[lev] += w_i q_i·W_i;  dcs_i += λ·that;  dδ += Σ_i λ·that
//   (all reads of one head go through one GEMM, forward and backward, with the read states side by side)
//   then dg = reverse cumsum of dcs in the chunk (+ dΓ of the chunk's total decay for every token):
//   ddt += A dg, dA += Σ dt dg.
#include "ssd_chunk.h"

#include "arena.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <string.h>

bool scan_dims_check(const ScanDims *d, bool loglinear, Err *err) {
    if (!d) return err_set(err, "scan: dims are NULL");
    if (d->B <= 0 || d->T <= 0 || d->H <= 0 || d->P <= 0 || d->G <= 0 || d->N <= 0)
        return err_set(err, "scan: B=%d T=%d H=%d P=%d G=%d N=%d must all be positive", d->B, d->T, d->H,
                       d->P, d->G, d->N);
    if (d->H % d->G != 0)
        return err_set(err, "scan: H=%d is not a multiple of the number of B/C groups G=%d; set n_groups to a "
                       "divisor of num_heads", d->H, d->G);
    if (d->chunk <= 0 || (d->chunk & (d->chunk - 1)) != 0)
        return err_set(err, "scan: chunk=%d must be a power of two (Mamba-2 uses 256, log-linear 64); fix "
                       "chunk_size", d->chunk);
    if ((int64_t)d->ld_x < (int64_t)d->H * d->P)
        return err_set(err, "scan: ld_x=%d is narrower than H*P=%lld", d->ld_x, (long long)d->H * d->P);
    if ((int64_t)d->ld_bc < (int64_t)d->G * d->N)
        return err_set(err, "scan: ld_bc=%d is narrower than G*N=%lld", d->ld_bc, (long long)d->G * d->N);
    if (loglinear) {
        int need = levels_needed(d->T);
        if (d->levels < need)
            return err_set(err, "scan: levels=%d but T=%d needs %d λ levels (bit_length(T-1)+1); raise "
                           "max_seq_len/num_levels or shorten the sequence", d->levels, d->T, need);
    }
    return true;
}

static int ilog2i(int v) {
    int r = 0;
    while ((1 << r) < v) r++;
    return r;
}

static size_t round16(size_t n) { return (n + 15) / 16 * 16; }


// Per-thread buffer of a chunk task (carved from ScanCtx.tbuf).
typedef struct {
    float *CB, *M, *Gm, *dCB;  // (Cs, Cs)
    float *Xt, *Z, *dV;        // (Cs, HB*P)
    float *W;                  // (Cs, maxreads*N)  read weights ⊙ Q (forward) / dY·[T_1 | T_2 | ..] (backward)
    float *Tc;                 // (P, maxreads*N)   the read states of one head side by side, decays folded in
    float *dtv, *dcs, *rowR, *colR, *u;  // (Cs)
} ChunkBuf;

// The buffer of a chunk task laid out in tb (NULL: only sized); *floats (if given) gets its size.
static ChunkBuf chunk_buf(const ScanCtx *k, float *tb, size_t *floats) {
    const size_t Cs = k->Cs, cc = Cs * Cs, cp = Cs * k->HB * k->P;
    const size_t cr = Cs * k->maxreads * k->N, pr = (size_t)k->P * k->maxreads * k->N;
    ChunkBuf cb;
    Arena a = {.base = tb};
    cb.CB = arena_take(&a, cc);
    cb.M = arena_take(&a, cc);
    cb.Gm = arena_take(&a, cc);
    cb.dCB = arena_take(&a, cc);
    cb.Xt = arena_take(&a, cp);
    cb.Z = arena_take(&a, cp);
    cb.dV = arena_take(&a, cp);
    cb.W = arena_take(&a, cr);
    cb.Tc = arena_take(&a, pr);
    cb.dtv = arena_take(&a, Cs);
    cb.dcs = arena_take(&a, Cs);
    cb.rowR = arena_take(&a, Cs);
    cb.colR = arena_take(&a, Cs);
    cb.u = arena_take(&a, Cs);
    if (floats) *floats = a.used;
    return cb;
}

// Heads per chunk task (*HB) and batches per group (returned) for `seqchunks` = B·NC: ~512 GEMM columns
// keep the group GEMMs efficient and the buffers in L2; halved (each batch then forms C·Bᵀ again, and its
// dB/dC go through partial rows) while there are fewer than SCAN_MIN_TASKS chunk tasks.
static int scan_head_batches(int64_t seqchunks, const ScanCtx *k, int *HB) {
    int hb = LL_MAX(1, LL_MIN(k->Hg, 512 / k->P));
    int nhb = (k->Hg + hb - 1) / hb;
    while (hb > 1 && seqchunks * k->G * nhb < SCAN_MIN_TASKS) {
        hb = (hb + 1) / 2;
        nhb = (k->Hg + hb - 1) / hb;
    }
    *HB = hb;
    return nhb;
}

// Rows (of G·N floats) of the head batches' partial dB (or dC): the most that any B'·NC' <= B·NC needs,
// so that the scratch sized for (B, T) also serves every smaller batch and sequence (where the heads may
// split further). Below SCAN_MIN_TASKS chunk-task rows the split varies; above it, it is fixed.
static size_t scan_partial_rows(const ScanCtx *k) {
    const int64_t x_max = (int64_t)k->B * k->NC;
    size_t most = 0;
    for (int64_t x = 1; x <= x_max; x = x < SCAN_MIN_TASKS ? x + 1 : LL_MAX(x + 1, x_max)) {
        int hb;
        const int nhb = scan_head_batches(x, k, &hb);
        if (nhb > 1) most = LL_MAX(most, (size_t)nhb * x * k->Cs);
    }
    return most;
}

size_t scan_setup(ScanCtx *k, const ScanDims *d, bool loglinear, float *scratch) {
    memset(k, 0, sizeof *k);
    k->T = d->T;
    k->B = d->B; k->H = d->H; k->P = d->P; k->G = d->G; k->N = d->N;
    k->ld_x = d->ld_x; k->ld_bc = d->ld_bc; k->levels = d->levels;
    k->Cs = d->chunk;
    k->lc = ilog2i(d->chunk);
    k->NC = (int)((k->T + k->Cs - 1) / k->Cs);
    k->Hg = k->H / k->G;
    k->nhb = scan_head_batches((int64_t)k->B * k->NC, k, &k->HB);
    // State column blocks: enough for SCAN_STATE_TASKS tasks, none narrower than SCAN_MIN_COLS elements.
    const int64_t PN = (int64_t)k->P * k->N;
    int64_t nsb = ((int64_t)SCAN_STATE_TASKS + (int64_t)k->B * k->H - 1) / ((int64_t)k->B * k->H);
    nsb = LL_MAX(1, LL_MIN(nsb, PN / SCAN_MIN_COLS));
    k->sb = (int)round16((size_t)((PN + nsb - 1) / nsb));
    k->nsb = (int)((PN + k->sb - 1) / k->sb);
    k->nclev = levels_chunk_levels(k->NC);
    k->maxreads = loglinear ? LL_MAX(1, k->nclev) : 1;
    k->loglinear = loglinear;
    k->nthreads = omp_get_max_threads();

    const size_t B = k->B, H = k->H, NC = k->NC, T = (size_t)k->T;
    const size_t states = B * NC * H * (size_t)k->P * k->N;
    size_t tchunk;
    chunk_buf(k, NULL, &tchunk);
    const size_t qt_rows = (size_t)LL_MAX(k->Cs, SCAN_QT_ROWS / k->Cs * k->Cs);  // ll_read_grads' rows
    size_t thead = LL_MAX((size_t)k->sb, loglinear ? qt_rows * k->HB * k->P : 0);
    k->tstride = round16(LL_MAX(tchunk, thead));

    Arena a = {.base = scratch};
    k->S = arena_take(&a, states);
    k->dS = arena_take(&a, states);
    k->cs = arena_take(&a, B * H * T);
    k->ecs = arena_take(&a, B * H * T);
    k->partA = arena_take(&a, B * NC * H);
    k->partD = arena_take(&a, B * NC * H);
    k->partA2 = arena_take(&a, B * H);
    // pdot for the most column blocks any batch can have (a smaller batch has more), for the same reason
    k->pdot = arena_take(&a, B * H * NC * (size_t)LL_MAX(1, PN / SCAN_MIN_COLS));
    k->corder = (int *)(void *)arena_take(&a, NC);  // ints: one float each
    const size_t prows = scan_partial_rows(k);
    k->dQp = arena_take(&a, prows * k->G * k->N);
    k->dKp = arena_take(&a, prows * k->G * k->N);
    if (loglinear) {  // doubles: two floats each
        k->gc = (double *)(void *)arena_take(&a, 2 * B * H * (NC + 1));
        k->gdiff = (double *)(void *)arena_take(&a, 2 * B * H * (NC + 1));
        k->ddelta = arena_take(&a, B * H * NC * (size_t)LL_MAX(k->nclev, 1));
    }
    k->tbuf = arena_take(&a, (size_t)k->nthreads * k->tstride);
    if (scratch) {
        // Chunk order: decreasing number of state reads (the cost that differs between chunks), so that the
        // dynamic schedule starts the long tasks first; chunk 0 (no reads) is last.
        int n = 0;
        for (int nr = k->maxreads; nr >= 0; nr--)
            for (int c = 1; c < k->NC; c++)
                if ((loglinear ? __builtin_popcount((unsigned)c) : 1) == nr) k->corder[n++] = c;
        k->corder[n] = 0;
    }
    return a.used;
}

// CB[i][j] = q_i·k_j for the lower panels (row panel r, columns [0, end of panel r)).
static void cb_lower(float *CB, const float *Q, const float *K, int Lc, int N, int ld, int Cs) {
    for (int r0 = 0; r0 < Lc; r0 += SCAN_PANEL) {
        int r1 = LL_MIN(r0 + SCAN_PANEL, Lc);
        scan_gemm0(CblasNoTrans, CblasTrans, r1 - r0, r1, N, Q + (size_t)r0 * ld, ld, K, ld, CB + (size_t)r0 * Cs, Cs);
    }
}

// Chunk-local inclusive cumsum of dt·A and its exp, and dt gathered contiguous.
static void chunk_decays(float *restrict csh, float *restrict ech, float *restrict dtv, const float *dt_col,
                         int H, float Ah, int Lc) {
    float acc = 0.0f;
    for (int i = 0; i < Lc; i++) {
        float dti = dt_col[(size_t)i * H];
        dtv[i] = dti;
        acc += dti * Ah;
        csh[i] = acc;
    }
    for (int i = 0; i < Lc; i++) ech[i] = scan_exp(csh[i]);
}

// Multiplies row i of a chunk block by the λ of each intra-chunk level (Fenwick buckets of i, level_bucket):
// level 0 is j = i, level l >= 1 is [(i>>l)<<l, +2^(l-1)) when bit l-1 of i is set. Also sums u over
// each bucket into dlam_i (if given) before scaling u.
static void apply_levels(float *restrict e, float *restrict u, float *restrict dlam_i, const float *lam_i, int i) {
    if (dlam_i) dlam_i[0] += u[i];
    e[i] *= lam_i[0];
    if (u) u[i] *= lam_i[0];
    for (int l = 1; (1 << (l - 1)) <= i; l++) {
        int64_t lo64, hi64;
        if (!level_bucket(i, l, &lo64, &hi64)) continue;
        const int lo = (int)lo64, hi = (int)hi64;
        float lv = lam_i[l];
        if (dlam_i) dlam_i[l] += scan_sum(u + lo, hi - lo);
        for (int j = lo; j < hi; j++) e[j] *= lv;
        if (u)
            for (int j = lo; j < hi; j++) u[j] *= lv;
    }
}

// Forward intra-chunk matrix acting on x: M_ij = CB_ij·E_ij·dt_j, zero above the diagonal inside the
// diagonal panel.
static void mask_forward(float *M, const float *CB, const float *csh, const float *dtv, const float *lam,
                         size_t ld_lam, int Lc, int Cs) {
    for (int i = 0; i < Lc; i++) {
        float *restrict Mi = M + (size_t)i * Cs;
        const float *restrict CBi = CB + (size_t)i * Cs;
        const float ci = csh[i];
        for (int j = 0; j <= i; j++) Mi[j] = scan_exp(ci - csh[j]);
        if (lam) apply_levels(Mi, NULL, NULL, lam + (size_t)i * ld_lam, i);
        for (int j = 0; j <= i; j++) Mi[j] *= CBi[j] * dtv[j];
        int pe = LL_MIN((i / SCAN_PANEL + 1) * SCAN_PANEL, Lc);
        for (int j = i + 1; j < pe; j++) Mi[j] = 0.0f;
    }
}

// Columns of head slot hh of Xt (Lc, HB·P): row i = exp(Γ - cs_i)·dt_i·x_i, so that the chunk's local state
// is Sc = Xtᵀ K (dt_i = dt[i·dt_stride]).
static void state_inputs(const ScanCtx *k, float *Xt, int hh, const float *csh, const float *dt, size_t dt_stride,
                         const float *Xh, int Lc) {
    const int P = k->P, ldt = k->HB * P;
    const float gam = csh[Lc - 1];
    for (int i = 0; i < Lc; i++) {
        const float wi = scan_exp(gam - csh[i]) * dt[(size_t)i * dt_stride];
        const float *restrict xi = Xh + (size_t)i * k->ld_x;
        float *restrict ti = Xt + (size_t)i * ldt + (size_t)hh * P;
        for (int p = 0; p < P; p++) ti[p] = wi * xi[p];
    }
}

void scan_chunk_forward(const ScanCtx *k, int b, int c, int hb0, const ScanReads *rd, float *tb) {
    (void)rd;
    const int Cs = k->Cs, N = k->N, P = k->P, H = k->H, HP = H * P, ldt = k->HB * P;
    const int g = hb0 / k->Hg, nh = scan_batch_heads(k, hb0);
    const ChunkSpan sp = chunk_span(k->T, Cs, b, c);
    const int64_t T = k->T, t0 = sp.t0;
    const int Lc = sp.Lc;
    const size_t row0 = sp.row0;
    const float *Q = k->Cm + row0 * k->ld_bc + (size_t)g * N;  // (Lc, N) stride ld_bc
    const float *K = k->Bm + row0 * k->ld_bc + (size_t)g * N;  // (Lc, N) stride ld_bc
    const bool has_state = c < k->NC - 1;
    const size_t ld_lam = (size_t)H * k->levels;
    ChunkBuf w = chunk_buf(k, tb, NULL);

    cb_lower(w.CB, Q, K, Lc, N, k->ld_bc, Cs);
    for (int hh = 0; hh < nh; hh++) {
        const int h = hb0 + hh;
        float *csh = k->cs + ((size_t)b * H + h) * T + t0;
        float *ech = k->ecs + ((size_t)b * H + h) * T + t0;
        chunk_decays(csh, ech, w.dtv, k->dt + row0 * H + h, H, k->A[h], Lc);
        const float *lamh = k->lam ? k->lam + row0 * ld_lam + (size_t)h * k->levels : NULL;
        mask_forward(w.M, w.CB, csh, w.dtv, lamh, ld_lam, Lc, Cs);
        const float *Xh = k->x + row0 * k->ld_x + (size_t)h * P;
        float *yh = k->y + row0 * HP + (size_t)h * P;
        const float Dh = k->D[h];
        for (int i = 0; i < Lc; i++) {  // y = D x, then += M x
            const float *restrict xi = Xh + (size_t)i * k->ld_x;
            float *restrict yi = yh + (size_t)i * HP;
            for (int p = 0; p < P; p++) yi[p] = Dh * xi[p];
        }
        for (int r0 = 0; r0 < Lc; r0 += SCAN_PANEL) {
            int r1 = LL_MIN(r0 + SCAN_PANEL, Lc);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, r1 - r0, P, r1, 1.0f, w.M + (size_t)r0 * Cs,
                        Cs, Xh, k->ld_x, 1.0f, yh + (size_t)r0 * HP, HP);
        }
        if (has_state) state_inputs(k, w.Xt, hh, csh, w.dtv, 1, Xh, Lc);
    }
    if (has_state)  // Sc (nh·P, N) = Xtᵀ K, written as (h, P, N) blocks of S
        scan_gemm0(CblasTrans, CblasNoTrans, nh * P, N, Lc, w.Xt, ldt, K, k->ld_bc, scan_state(k, k->S, b, c, hb0),
                   N);
}

// exp of the decay of read r for head h (log-linear: chunks [base, c); SSD: none).
static inline float read_decay(const ScanCtx *k, const ScanReads *rd, int r, int b, int c, int h) {
    if (rd->lev[r] < 0 || rd->base[r] == c) return 1.0f;
    const double *gch = k->gc + ((size_t)b * k->H + h) * (k->NC + 1);
    return scan_exp((float)(gch[c] - gch[rd->base[r]]));
}

// Tc (P, nr·N) = [e^{δ_1} T_1 | e^{δ_2} T_2 | ...]: the states read by chunk c for head h, side by side, so
// that all reads of a head are one GEMM (A packed once, no per-read scaled accumulate).
static void gather_reads(float *restrict Tc, const ScanCtx *k, const ScanReads *rd, int b, int c, int h) {
    const int P = k->P, N = k->N, ld = rd->n * N;
    for (int r = 0; r < rd->n; r++) {
        const float ed = read_decay(k, rd, r, b, c, h);
        const float *restrict Ts = scan_state(k, k->S, b, rd->slot[r], h);
        for (int p = 0; p < P; p++) {
            float *restrict o = Tc + (size_t)p * ld + (size_t)r * N;
            const float *restrict t = Ts + (size_t)p * N;
            for (int n = 0; n < N; n++) o[n] = ed * t[n];
        }
    }
}

void scan_chunk_read_forward(const ScanCtx *k, int b, int c, int hb0, const ScanReads *rd, float *tb) {
    const int Cs = k->Cs, N = k->N, P = k->P, H = k->H, HP = H * P, ld = rd->n * N;
    const ChunkSpan sp = chunk_span(k->T, Cs, b, c);
    const int64_t T = k->T, t0 = sp.t0;
    const int Lc = sp.Lc;
    const size_t row0 = sp.row0;
    const int g = hb0 / k->Hg, nh = scan_batch_heads(k, hb0);
    const float *Q = k->Cm + row0 * k->ld_bc + (size_t)g * N;
    const size_t ld_lam = (size_t)H * k->levels;
    ChunkBuf w = chunk_buf(k, tb, NULL);
    if (rd->n == 0) return;

    for (int h = hb0; h < hb0 + nh; h++) {
        gather_reads(w.Tc, k, rd, b, c, h);
        // W (Lc, nr·N): row i, block r = e^{cs_i} λ_i[lev_r] q_i
        const float *ech = k->ecs + ((size_t)b * H + h) * T + t0;
        const float *lamh = k->lam ? k->lam + row0 * ld_lam + (size_t)h * k->levels : NULL;
        for (int i = 0; i < Lc; i++) {
            const float *restrict qi = Q + (size_t)i * k->ld_bc;
            for (int r = 0; r < rd->n; r++) {
                const float wi = ech[i] * (rd->lev[r] >= 0 ? lamh[(size_t)i * ld_lam + rd->lev[r]] : 1.0f);
                float *restrict o = w.W + (size_t)i * ld + (size_t)r * N;
                for (int n = 0; n < N; n++) o[n] = wi * qi[n];
            }
        }
        // y_h += W Tcᵀ
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Lc, P, ld, 1.0f, w.W, ld, w.Tc, ld, 1.0f,
                    k->y + row0 * HP + (size_t)h * P, HP);
    }
}

void scan_chunk_backward_prep(const ScanCtx *k, int b, int c, int hb0, const ScanReads *rd, float *tb) {
    const int Cs = k->Cs, N = k->N, P = k->P, H = k->H, HP = H * P, ldt = k->HB * P;
    const int g = hb0 / k->Hg, nh = scan_batch_heads(k, hb0);
    const ChunkSpan sp = chunk_span(k->T, Cs, b, c);
    const int64_t T = k->T, t0 = sp.t0;
    const int Lc = sp.Lc;
    const size_t row0 = sp.row0;
    const float *Q = k->Cm + row0 * k->ld_bc + (size_t)g * N;
    const float *K = k->Bm + row0 * k->ld_bc + (size_t)g * N;
    const bool has_state = c < k->NC - 1;
    // SSD: the gradient of the one read (the running state) is formed here; log-linear: by ll_read_grads
    const bool dread = !k->loglinear && rd->n > 0;
    ChunkBuf w = chunk_buf(k, tb, NULL);

    for (int hh = 0; hh < nh; hh++) {
        const int h = hb0 + hh;
        float *csh = k->cs + ((size_t)b * H + h) * T + t0;
        float *ech = k->ecs + ((size_t)b * H + h) * T + t0;
        chunk_decays(csh, ech, w.dtv, k->dt + row0 * H + h, H, k->A[h], Lc);
        if (has_state) state_inputs(k, w.Xt, hh, csh, w.dtv, 1, k->x + row0 * k->ld_x + (size_t)h * P, Lc);
        if (dread) {  // Z = diag(exp(cs)) dY, this head's columns
            const float *dyh = k->dy + row0 * HP + (size_t)h * P;
            for (int i = 0; i < Lc; i++) {
                const float *restrict di = dyh + (size_t)i * HP;
                float *restrict zi = w.Z + (size_t)i * ldt + (size_t)hh * P;
                for (int p = 0; p < P; p++) zi[p] = ech[i] * di[p];
            }
        }
    }
    if (has_state)
        scan_gemm0(CblasTrans, CblasNoTrans, nh * P, N, Lc, w.Xt, ldt, K, k->ld_bc, scan_state(k, k->S, b, c, hb0),
                   N);
    if (dread)  // Σ_i exp(cs_i) dy_i q_iᵀ, (nh·P, N)
        scan_gemm0(CblasTrans, CblasNoTrans, nh * P, N, Lc, w.Z, ldt, Q, k->ld_bc, scan_state(k, k->dS, b, c, hb0),
                   N);
}

// Backward elementwise pass over the intra-chunk block of one head. In: Gm = dY Xᵀ (lower panels), CB,
// cs, dt, λ. Out: M = CB ⊙ E (for dv = Mᵀ dy), dCB += dM ⊙ E, rowR/colR (off-diagonal R sums), dλ.
static void mask_backward(float *M, float *Gm, float *dCB, float *restrict rowR, float *restrict colR,
                          float *restrict u, const float *CB, const float *restrict csh, const float *restrict dtv,
                          const float *lam, float *dlam, size_t ld_lam, int Lc, int Cs) {
    for (int j = 0; j < Lc; j++) colR[j] = 0.0f;
    for (int i = 0; i < Lc; i++) {
        float *restrict Mi = M + (size_t)i * Cs;
        float *restrict Gi = Gm + (size_t)i * Cs;
        float *restrict dCBi = dCB + (size_t)i * Cs;
        const float *restrict CBi = CB + (size_t)i * Cs;
        const float ci = csh[i];
        for (int j = 0; j <= i; j++) {
            const float e = scan_exp(ci - csh[j]);
            const float dm = Gi[j] * dtv[j];
            Gi[j] = dm;
            Mi[j] = e;
            u[j] = dm * CBi[j] * e;
        }
        if (lam) apply_levels(Mi, u, dlam + (size_t)i * ld_lam, lam + (size_t)i * ld_lam, i);
        for (int j = 0; j < i; j++) colR[j] += u[j];
        rowR[i] = scan_sum(u, i);
        for (int j = 0; j <= i; j++) {
            dCBi[j] += Gi[j] * Mi[j];
            Mi[j] *= CBi[j];
        }
        int pe = LL_MIN((i / SCAN_PANEL + 1) * SCAN_PANEL, Lc);
        for (int j = i + 1; j < pe; j++) Mi[j] = 0.0f;
    }
}

void scan_chunk_backward(const ScanCtx *k, int b, int c, int hb0, const ScanReads *rd, float *tb) {
    const int Cs = k->Cs, N = k->N, P = k->P, H = k->H, HP = H * P, ldt = k->HB * P;
    const int g = hb0 / k->Hg, nh = scan_batch_heads(k, hb0);
    const ChunkSpan sp = chunk_span(k->T, Cs, b, c);
    const int64_t T = k->T, t0 = sp.t0;
    const int Lc = sp.Lc;
    const size_t row0 = sp.row0;
    const int ldbc = k->ld_bc, ldx = k->ld_x;
    const float *Q = k->Cm + row0 * ldbc + (size_t)g * N;
    const float *K = k->Bm + row0 * ldbc + (size_t)g * N;
    // dQ, dK (Lc, N) stride lddq, owned by this task: the rows of dCm / dBm, or of the batch's partials
    float *dQ = k->dCm + row0 * ldbc + (size_t)g * N, *dK = k->dBm + row0 * ldbc + (size_t)g * N;
    int lddq = ldbc;
    if (k->nhb > 1) {
        const size_t GN = (size_t)k->G * N, off = ((size_t)(hb0 % k->Hg / k->HB) * k->B * T + row0) * GN + g * N;
        dQ = k->dQp + off;
        dK = k->dKp + off;
        lddq = (int)GN;
        for (int i = 0; i < Lc; i++) {
            memset(dQ + (size_t)i * lddq, 0, sizeof(float) * N);
            memset(dK + (size_t)i * lddq, 0, sizeof(float) * N);
        }
    }
    const bool has_state = c < k->NC - 1;
    const size_t ld_lam = (size_t)H * k->levels;
    ChunkBuf w = chunk_buf(k, tb, NULL);

    cb_lower(w.CB, Q, K, Lc, N, ldbc, Cs);
    memset(w.dCB, 0, sizeof(float) * (size_t)Lc * Cs);
    if (has_state) {
        const float *dSc = scan_state(k, k->dS, b, c, hb0);  // (nh, P, N)
        // dV (Lc, nh·P) = K dScᵀ (state part of dv before the exp(Γ - cs_j) row scale)
        scan_gemm0(CblasNoTrans, CblasTrans, Lc, nh * P, N, K, ldbc, dSc, N, w.dV, ldt);
        for (int hh = 0; hh < nh; hh++) {
            const int h = hb0 + hh;
            const float *csh = k->cs + ((size_t)b * H + h) * T + t0;
            state_inputs(k, w.Xt, hh, csh, k->dt + row0 * H + h, H, k->x + row0 * ldx + (size_t)h * P, Lc);
        }
        // dk_j += Σ_h exp(Γ-cs_j) dt_j dSc_hᵀ x_j: one GEMM over the batch's heads
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Lc, N, nh * P, 1.0f, w.Xt, ldt, dSc, N, 1.0f, dK,
                    lddq);
    }
    for (int hh = 0; hh < nh; hh++) {
        const int h = hb0 + hh;
        const float *csh = k->cs + ((size_t)b * H + h) * T + t0;
        const float *ech = k->ecs + ((size_t)b * H + h) * T + t0;
        const float *Xh = k->x + row0 * ldx + (size_t)h * P;
        const float *dyh = k->dy + row0 * HP + (size_t)h * P;
        float *dxh = k->dx + row0 * ldx + (size_t)h * P;
        float *ddth = k->ddt + row0 * H + h;
        const float *lamh = k->lam ? k->lam + row0 * ld_lam + (size_t)h * k->levels : NULL;
        float *dlamh = k->lam ? k->dlam + row0 * ld_lam + (size_t)h * k->levels : NULL;
        float *dVh = w.dV + (size_t)hh * P;
        float *dcs = w.dcs;
        for (int i = 0; i < Lc; i++) {
            w.dtv[i] = k->dt[(row0 + i) * H + h];
            dcs[i] = 0.0f;
            if (!has_state) memset(dVh + (size_t)i * ldt, 0, sizeof(float) * P);
        }
        // state part: dv_j = exp(Γ - cs_j) (K dScᵀ)_j;  N_j = v_j·dv_j
        if (has_state) {
            const float gam = csh[Lc - 1];
            float sumN = 0.0f;
            for (int j = 0; j < Lc; j++) {
                const float wj = scan_exp(gam - csh[j]);
                float *restrict dvj = dVh + (size_t)j * ldt;
                const float *restrict xj = Xh + (size_t)j * ldx;
                for (int p = 0; p < P; p++) dvj[p] *= wj;
                const float nj = w.dtv[j] * scan_dot(xj, dvj, P);
                dcs[j] -= nj;
                sumN += nj;
            }
            dcs[Lc - 1] += sumN;
        }
        // intra block
        for (int r0 = 0; r0 < Lc; r0 += SCAN_PANEL) {  // Gm = dY Xᵀ, lower panels
            int r1 = LL_MIN(r0 + SCAN_PANEL, Lc);
            scan_gemm0(CblasNoTrans, CblasTrans, r1 - r0, r1, P, dyh + (size_t)r0 * HP, HP, Xh, ldx,
                       w.Gm + (size_t)r0 * Cs, Cs);
        }
        mask_backward(w.M, w.Gm, w.dCB, w.rowR, w.colR, w.u, w.CB, csh, w.dtv, lamh, dlamh, ld_lam, Lc, Cs);
        for (int r0 = 0; r0 < Lc; r0 += SCAN_PANEL) {  // dv[r0:r1] (+)= M[r0:, r0:r1]ᵀ dY[r0:]
            int r1 = LL_MIN(r0 + SCAN_PANEL, Lc);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r1 - r0, P, Lc - r0, 1.0f,
                        w.M + (size_t)r0 * Cs + r0, Cs, dyh + (size_t)r0 * HP, HP, 1.0f,
                        dVh + (size_t)r0 * ldt, ldt);
        }
        for (int i = 0; i < Lc; i++) dcs[i] += w.rowR[i] - w.colR[i];
        // inter-chunk reads: W (Lc, nr·N) = dY [e^{δ_1} T_1 | ...]; block r of row i is e^{δ_r} T_rᵀ dy_i
        if (rd->n > 0) {
            const int ld = rd->n * N;
            gather_reads(w.Tc, k, rd, b, c, h);
            scan_gemm0(CblasNoTrans, CblasNoTrans, Lc, ld, P, dyh, HP, w.Tc, ld, w.W, ld);
            float dd[LEVEL_MAX_READS] = {0};
            for (int i = 0; i < Lc; i++) {
                const float *restrict qi = Q + (size_t)i * ldbc;
                float *restrict dqi = dQ + (size_t)i * lddq;
                for (int r = 0; r < rd->n; r++) {
                    const float *restrict Wi = w.W + (size_t)i * ld + (size_t)r * N;
                    const int lev = rd->lev[r];
                    const float dl = ech[i] * scan_dot(qi, Wi, N);
                    float lv = 1.0f;
                    if (lev >= 0) {
                        lv = lamh[(size_t)i * ld_lam + lev];
                        dlamh[(size_t)i * ld_lam + lev] += dl;
                    }
                    dcs[i] += lv * dl;
                    dd[r] += lv * dl;
                    const float s = lv * ech[i];
                    for (int n = 0; n < N; n++) dqi[n] += s * Wi[n];
                }
            }
            for (int r = 0; r < rd->n; r++)
                if (rd->lev[r] >= 0)
                    k->ddelta[(((size_t)b * H + h) * k->NC + c) * k->nclev + rd->j[r]] = dd[r];
        }
        // dv -> dx, ddt; D skip
        const float Dh = k->D[h];
        double dDs = 0.0;
        for (int j = 0; j < Lc; j++) {
            const float *restrict dvj = dVh + (size_t)j * ldt;
            const float *restrict xj = Xh + (size_t)j * ldx;
            const float *restrict dyj = dyh + (size_t)j * HP;
            float *restrict dxj = dxh + (size_t)j * ldx;
            const float dtj = w.dtv[j];
            for (int p = 0; p < P; p++) dxj[p] += dtj * dvj[p] + Dh * dyj[p];
            ddth[(size_t)j * H] += scan_dot(xj, dvj, P);
            dDs += scan_dot(dyj, xj, P);
        }
        // chunk-local decays -> dt, A (the SSD's chunk-total decay gradient from the state scan,
        // exp(Γ_c) <H_c, dH_{c+1}> summed over the column blocks, reaches every token of the chunk)
        if (!k->loglinear && has_state) {
            const float *pd = k->pdot + ((size_t)b * H + h) * k->nsb * k->NC + c;
            double dot = 0.0;
            for (int blk = 0; blk < k->nsb; blk++) dot += pd[(size_t)blk * k->NC];
            dcs[Lc - 1] += scan_exp(csh[Lc - 1]) * (float)dot;
        }
        const float Ah = k->A[h];
        double acc = 0.0, dAs = 0.0;
        for (int i = Lc - 1; i >= 0; i--) {
            acc += dcs[i];
            ddth[(size_t)i * H] += Ah * (float)acc;
            dAs += w.dtv[i] * acc;
        }
        k->partA[((size_t)b * k->NC + c) * H + h] = (float)dAs;
        k->partD[((size_t)b * k->NC + c) * H + h] = (float)dDs;
    }
    // dC += dCB K, dB += dCBᵀ C with dCB summed over the batch's heads
    for (int r0 = 0; r0 < Lc; r0 += SCAN_PANEL) {
        int r1 = LL_MIN(r0 + SCAN_PANEL, Lc);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, r1 - r0, N, r1, 1.0f, w.dCB + (size_t)r0 * Cs, Cs, K,
                    ldbc, 1.0f, dQ + (size_t)r0 * lddq, lddq);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r1 - r0, N, Lc - r0, 1.0f, w.dCB + (size_t)r0 * Cs + r0,
                    Cs, Q + (size_t)r0 * ldbc, ldbc, 1.0f, dK + (size_t)r0 * lddq, lddq);
    }
}

void scan_reduce_partials(const ScanCtx *k, float *dA, float *dD) {
    for (int h = 0; h < k->H; h++) {
        double sa = 0.0, sd = 0.0;
        for (int b = 0; b < k->B; b++) {
            for (int c = 0; c < k->NC; c++) {
                sa += k->partA[((size_t)b * k->NC + c) * k->H + h];
                sd += k->partD[((size_t)b * k->NC + c) * k->H + h];
            }
            sa += k->partA2[(size_t)b * k->H + h];
        }
        dA[h] += (float)sa;
        dD[h] += (float)sd;
    }
}

// ---------------------------------------------------------------------------------------------------
// Reads and phase loops

void scan_reads(const ScanCtx *k, int c, ScanReads *rd) {
    rd->n = 0;
    if (!k->loglinear) {  // SSD: the running state entering chunk c, kept in slot c, undecayed, weight 1
        if (c == 0) return;
        rd->slot[0] = c; rd->base[0] = c; rd->lev[0] = -1; rd->j[0] = 0;
        rd->n = 1;
        return;
    }
    level_chunk_reads_of(c, k->lc, rd);  // log-linear: one tree node per set bit j of c
}

void scan_chunk_tasks(const ScanCtx *k, ScanChunkFn *fn, bool skip_first) {
    const int nc = k->NC - (skip_first ? 1 : 0), nb = k->G * k->nhb;  // corder[NC-1] is chunk 0
    const int64_t ntask = (int64_t)k->B * nc * nb;
#pragma omp parallel for schedule(dynamic, 1) num_threads(k->nthreads)
    for (int64_t task = 0; task < ntask; task++) {
        const int bi = (int)(task % nb), c = k->corder[(task / nb) % nc];
        const int b = (int)(task / ((int64_t)nb * nc));
        ScanReads rd;
        scan_reads(k, c, &rd);
        fn(k, b, c, bi / k->nhb * k->Hg + bi % k->nhb * k->HB, &rd, scan_thread_buf(k));
    }
}

void scan_reduce_batches(const ScanCtx *k) {
    if (k->nhb == 1) return;
    const size_t GN = (size_t)k->G * k->N, rows = (size_t)k->B * k->T, part = rows * GN;
#pragma omp parallel for schedule(static) num_threads(k->nthreads)
    for (int64_t r = 0; r < (int64_t)rows; r++) {
        float *restrict dq = k->dCm + (size_t)r * k->ld_bc, *restrict dk = k->dBm + (size_t)r * k->ld_bc;
        for (size_t e = 0; e < GN; e++) {
            float sq = 0.0f, sk = 0.0f;
            for (int i = 0; i < k->nhb; i++) {
                sq += k->dQp[i * part + (size_t)r * GN + e];
                sk += k->dKp[i * part + (size_t)r * GN + e];
            }
            dq[e] += sq;
            dk[e] += sk;
        }
    }
}

void scan_head_tasks(const ScanCtx *k, ScanHeadFn *fn) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(k->nthreads)
    for (int bh = 0; bh < k->B * k->H; bh++) fn(k, bh / k->H, bh % k->H, scan_thread_buf(k));
}

void scan_state_tasks(const ScanCtx *k, ScanStateFn *fn) {
    const int64_t PN = (int64_t)k->P * k->N, ntask = (int64_t)k->B * k->H * k->nsb;
#pragma omp parallel for schedule(dynamic, 1) num_threads(k->nthreads)
    for (int64_t task = 0; task < ntask; task++) {
        const int blk = (int)(task % k->nsb), bh = (int)(task / k->nsb);
        const int64_t e0 = (int64_t)blk * k->sb, e1 = LL_MIN(PN, e0 + k->sb);
        fn(k, bh / k->H, bh % k->H, blk, e0, e1, scan_thread_buf(k));
    }
}

void scan_forward(const ScanCtx *k, ScanHeadFn *prep, ScanStateFn *link) {
    scan_chunk_tasks(k, scan_chunk_forward, false);
    if (k->NC == 1) return;
    if (prep) scan_head_tasks(k, prep);
    scan_state_tasks(k, link);
    scan_chunk_tasks(k, scan_chunk_read_forward, true);
}
