// scan_loglinear.c — log-linear Mamba-2 scan (see scan_loglinear.h). The chunk-local work (intra-chunk
// blocks with per-level λ, chunk states, state reads) and the phase loops are shared with the SSD
// (ssd_chunk.c); this file holds the inter-chunk structure: a Fenwick tree over the per-chunk states, its
// backward, and the drivers.
//
// Tree of chunk states (one per (b, h)), built in place in S: the node of level j over chunks
// [m·2^j, (m+1)·2^j) is the state at the end of that block started from zero; it lives in slot
// (m+1)·2^j - 1 (the block's last chunk), which the node's right child occupied before. Node of level
// j+1 = exp(Γ of its right half)·left + right. Slot s ends up holding the node of level tz(s+1) (tz =
// trailing zeros), which is a left child: the writer block of chunk level j. Chunk c reads, for each set
// bit j of c, slot ((c>>j)<<j) - 1 decayed over chunks [(c>>j)<<j, c), with λ level log2(chunk)+1+j (see
// scan_reads).
// The last chunk's state is never read, so it is never formed. Cost: O(NC·P·N) for the tree, plus
// popcount(c) state reads per chunk: O(T log T · P·N) overall, the log-linear cost.
//
// Backward of the tree: for every slot s the gradient of its node is the sum over its reader tokens t
// (the block right after it) of exp(cs_t + decay since the block start)·λ_t·dy_t q_tᵀ — one tall GEMM
// (weighted dY)ᵀ Q per slot and batch of heads; then down the tree (per (b, h)), top level first: left
// child += exp(Γ_R)·parent gradient, right child = parent gradient (same slot, so nothing to do), and the
// right half's total decay gets exp(Γ_R)<left, parent gradient>. Each slot then holds its leaf's gradient.
// Chunk-total decay gradients (tree and read decays, each over a range of chunks) go through a double
// difference array and are finally added to every token of each chunk.
#include "scan_loglinear.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#include "levels.h"
#include "ssd_chunk.h"

size_t loglinear_scratch_floats(const ScanDims *d) {
    ScanCtx k;
    return scan_setup(&k, d, true, NULL);
}

// Head task: gc[c] = Σ_{c' < c} Γ_c' in double, differences of which are the decays between chunk
// boundaries (tb unused).
static void ll_chunk_prefix(const ScanCtx *k, int b, int h, float *tb) {
    (void)tb;
    const float *csh = k->cs + ((size_t)b * k->H + h) * k->T;
    double *gch = k->gc + ((size_t)b * k->H + h) * (k->NC + 1);
    gch[0] = 0.0;
    for (int c = 0; c < k->NC; c++) {
        const int64_t last = LL_MIN((int64_t)(c + 1) * k->Cs, k->T) - 1;
        gch[c + 1] = gch[c] + (double)csh[last];
    }
}

// The tree walk over elements [e0, e1) of the states of one (b, h) (level_tree_build /
// level_tree_backward) with the scalar-decay combine.
typedef struct {
    const ScanCtx *k;
    int b, h;
    int64_t e0, e1;
    const double *gch;  // (NC+1) chunk prefix decays of (b, h)
    float *pd;          // (NC) this column block's dot products of the tree backward, by left slot
    double *gd;         // (NC+1) the chunk-total decay gradient difference array of (b, h) (ll_decay_grads)
} TreeCtx;

// The decay of the right block [right_lo, right_lo + span) of chunks: exp(its total log decay).
static inline float tree_decay(const TreeCtx *t, int64_t right_lo, int64_t span) {
    return scan_exp((float)(t->gch[right_lo + span] - t->gch[right_lo]));
}

// right node += exp(Γ_R) · left node
static void tree_combine(void *ctx, int64_t left_slot, int64_t right_slot, int64_t right_lo, int64_t span) {
    const TreeCtx *t = ctx;
    const size_t n = (size_t)(t->e1 - t->e0);
    const float *restrict Ls = scan_state(t->k, t->k->S, t->b, (int)left_slot, t->h) + t->e0;
    float *restrict Rs = scan_state(t->k, t->k->S, t->b, (int)right_slot, t->h) + t->e0;
    const float eg = tree_decay(t, right_lo, span);
    for (size_t e = 0; e < n; e++) Rs[e] += eg * Ls[e];
}

// State task: the tree over elements [e0, e1) of the chunk states in S (tb unused).
static void ll_tree_build(const ScanCtx *k, int b, int h, int blk, int64_t e0, int64_t e1, float *tb) {
    (void)tb; (void)blk;
    TreeCtx t = {.k = k, .b = b, .h = h, .e0 = e0, .e1 = e1, .gch = k->gc + ((size_t)b * k->H + h) * (k->NC + 1)};
    level_tree_build(k->NC - 1, tree_combine, &t);  // chunks whose state can be read: 0 .. NC-2
}

// dS[s] (heads hb0 .. hb0+nh-1 of group g) = gradient of the node in slot s from its reads: the sum over
// the reader block's tokens t of exp(cs_t + decay since the block start)·λ_t[lev]·dy_t q_tᵀ. One GEMM per
// piece of the block for all nh heads (the weights go on dY, so Q is shared and read in place).
static void ll_read_grads(const ScanCtx *k, int b, int hb0, int nh, int s, float *dYt, int64_t qt_chunks) {
    const int N = k->N, P = k->P, H = k->H, HP = H * P, Cs = k->Cs, ldt = nh * P, g = hb0 / k->Hg;
    const size_t ld_lam = (size_t)H * k->levels;
    int64_t c_lo, c_hi;
    const int J = level_node_readers(s, k->NC, &c_lo, &c_hi);
    const int lev = k->lc + 1 + J;
    float *dst = scan_state(k, k->dS, b, s, hb0);
    memset(dst, 0, sizeof(float) * (size_t)nh * P * N);  // (beta = 0 is slow in OpenBLAS, see scan_gemm0)
    for (int64_t c0 = c_lo; c0 < c_hi; c0 += qt_chunks) {
        const int64_t c1 = LL_MIN(c_hi, c0 + qt_chunks);
        const int64_t t_beg = c0 * Cs, t_end = LL_MIN(c1 * Cs, k->T);
        for (int hh = 0; hh < nh; hh++) {
            const int h = hb0 + hh;
            const double *gch = k->gc + ((size_t)b * H + h) * (k->NC + 1);
            const float *ech = k->ecs + ((size_t)b * H + h) * k->T;
            for (int64_t cc = c0; cc < c1; cc++) {
                const float ed = scan_exp((float)(gch[cc] - gch[c_lo]));
                const int64_t u_end = LL_MIN((cc + 1) * Cs, k->T);
                for (int64_t t = cc * Cs; t < u_end; t++) {
                    const size_t row = (size_t)b * k->T + t;
                    const float wt = ech[t] * ed * k->lam[row * ld_lam + (size_t)h * k->levels + lev];
                    const float *restrict dyt = k->dy + row * HP + (size_t)h * P;
                    float *restrict o = dYt + (size_t)(t - t_beg) * ldt + (size_t)hh * P;
                    for (int p = 0; p < P; p++) o[p] = wt * dyt[p];
                }
            }
        }
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nh * P, N, (int)(t_end - t_beg), 1.0f, dYt, ldt,
                    k->Cm + ((size_t)b * k->T + t_beg) * k->ld_bc + (size_t)g * N, k->ld_bc, 1.0f, dst, N);
    }
}

// The read-gradient tasks, largest reader blocks first: class J holds the slots with J trailing ones
// (s+1 = (2m+1)·2^J, reader block of 2^J chunks), in batches of max(1, HB >> J) heads, so that a task
// covers about HB chunk-heads of readers: small blocks share one GEMM over many heads, the large ones
// spread over one task per head. Returns the task count, or with task >= 0 decodes that task.
static int64_t ll_read_grad_task(const ScanCtx *k, int64_t task, int *b, int *hb0, int *nh, int *s) {
    const int nslot = k->NC - 1;
    int64_t total = 0;
    for (int J = k->nclev; J >= 0; J--) {
        const int64_t cnt = ((nslot >> J) + 1) / 2;  // slots of class J
        const int per = LL_MAX(1, k->HB >> J), nb = (k->Hg + per - 1) / per;
        const int64_t n = cnt * nb * k->G * k->B;
        if (task >= 0 && task < n) {
            const int bi = (int)(task % nb);
            const int64_t m = (task / nb) % cnt, rest = task / nb / cnt;
            const int g = (int)(rest % k->G);
            *b = (int)(rest / k->G);
            *s = (int)(((2 * m + 1) << J) - 1);
            *hb0 = g * k->Hg + bi * per;
            *nh = LL_MIN(per, (g + 1) * k->Hg - *hb0);
            return total;
        }
        if (task >= 0) task -= n;
        total += n;
    }
    return total;
}

// Backward of tree_combine over the block: d(left) += exp(Γ_R) · d(right); the block's part of
// <left, d(right)> goes to pd[left slot] (each left slot is combined once; d(right) passes through: it is
// the same slot).
static void tree_combine_backward(void *ctx, int64_t left_slot, int64_t right_slot, int64_t right_lo, int64_t span) {
    const TreeCtx *t = ctx;
    const size_t n = (size_t)(t->e1 - t->e0);
    const float *restrict Ls = scan_state(t->k, t->k->S, t->b, (int)left_slot, t->h) + t->e0;
    float *restrict dLs = scan_state(t->k, t->k->dS, t->b, (int)left_slot, t->h) + t->e0;
    const float *restrict dRs = scan_state(t->k, t->k->dS, t->b, (int)right_slot, t->h) + t->e0;
    const float eg = tree_decay(t, right_lo, span);
    t->pd[left_slot] = scan_dot(Ls, dRs, (int)n);
    for (size_t e = 0; e < n; e++) dLs[e] += eg * dRs[e];
}

// State task, down the tree over elements [e0, e1): dS[s] becomes the gradient of leaf s (the chunk state
// Sc_s); the decay gradients' dot products go to pdot.
static void ll_tree_backward(const ScanCtx *k, int b, int h, int blk, int64_t e0, int64_t e1, float *tb) {
    (void)tb;
    const size_t bh = (size_t)b * k->H + h;
    TreeCtx t = {.k = k, .b = b, .h = h, .e0 = e0, .e1 = e1, .gch = k->gc + bh * (k->NC + 1),
                 .pd = k->pdot + (bh * k->nsb + blk) * k->NC};
    level_tree_backward(k->NC - 1, tree_combine_backward, &t);
}

// The decay gradient of one tree combine: Γ_R gets exp(Γ_R) <left, d(parent)> (the column blocks' parts
// summed in block order), added to the difference array over the right block's chunks.
static void tree_decay_grad(void *ctx, int64_t left_slot, int64_t right_slot, int64_t right_lo, int64_t span) {
    (void)right_slot;
    const TreeCtx *t = ctx;
    double dot = 0.0;
    for (int blk = 0; blk < t->k->nsb; blk++) dot += t->pd[(size_t)blk * t->k->NC + left_slot];
    const double v = tree_decay(t, right_lo, span) * dot;
    t->gd[right_lo] += v;
    t->gd[right_lo + span] -= v;
}

// Chunk-total decay gradients of (b, h) (tree decays from pdot, plus the read decays in ddelta) to every
// token of each chunk; the dA part goes to partA2 (head task; tb unused).
static void ll_decay_grads(const ScanCtx *k, int b, int h, float *tb) {
    (void)tb;
    const size_t bh = (size_t)b * k->H + h;
    double *gd = k->gdiff + bh * (k->NC + 1);
    memset(gd, 0, sizeof(double) * (size_t)(k->NC + 1));
    TreeCtx tc = {.k = k, .b = b, .h = h, .gch = k->gc + bh * (k->NC + 1), .pd = k->pdot + bh * k->nsb * k->NC,
                  .gd = gd};
    level_tree_backward(k->NC - 1, tree_decay_grad, &tc);
    for (int c = 1; c < k->NC; c++) {
        LevelReads rd;
        level_chunk_reads_of(c, k->lc, &rd);
        for (int r = 0; r < rd.n; r++) {  // the read decay of chunk level j spans chunks [base, c)
            const double v = k->ddelta[(bh * k->NC + c) * k->nclev + rd.j[r]];
            gd[rd.base[r]] += v;
            gd[c] -= v;
        }
    }
    double acc = 0.0, dAs = 0.0;
    const float Ah = k->A[h];
    for (int c = 0; c < k->NC; c++) {
        acc += gd[c];
        if (acc == 0.0) continue;
        const float g = (float)acc;
        const int64_t t_end = LL_MIN((int64_t)(c + 1) * k->Cs, k->T);
        double sdt = 0.0;
        for (int64_t t = (int64_t)c * k->Cs; t < t_end; t++) {
            const size_t i = ((size_t)b * k->T + t) * k->H + h;
            k->ddt[i] += Ah * g;
            sdt += k->dt[i];
        }
        dAs += acc * sdt;
    }
    k->partA2[bh] = (float)dAs;
}

void loglinear_forward(float *y, const float *x, const float *dt, const float *A, const float *Bm,
                       const float *Cm, const float *D, const float *lam, const ScanDims *d, float *scratch) {
    ScanCtx k;
    scan_setup(&k, d, true, scratch);
    scan_set_inputs(&k, x, dt, A, Bm, Cm, D, lam);
    k.y = y;
    scan_forward(&k, ll_chunk_prefix, ll_tree_build);
}

void loglinear_backward(float *dx, float *ddt, float *dA, float *dBm, float *dCm, float *dD, float *dlam,
                        const float *dy, const float *x, const float *dt, const float *A, const float *Bm,
                        const float *Cm, const float *D, const float *lam, const ScanDims *d, float *scratch) {
    ScanCtx k;
    scan_setup(&k, d, true, scratch);
    scan_set_inputs(&k, x, dt, A, Bm, Cm, D, lam);
    k.dy = dy; k.dx = dx; k.ddt = ddt; k.dBm = dBm; k.dCm = dCm; k.dlam = dlam;
    // 1. recompute cs and the chunk states
    scan_chunk_tasks(&k, scan_chunk_backward_prep, false);
    // 2. the tree (per column block), the read gradients of its nodes (per (b, slot, head batch)), and the tree
    //    backward (per column block) -> dS holds the leaf (chunk state) gradients
    scan_head_tasks(&k, ll_chunk_prefix);
    if (k.NC > 1) {
        scan_state_tasks(&k, ll_tree_build);
        const int64_t qt_chunks = LL_MAX(1, SCAN_QT_ROWS / k.Cs);
        const int64_t ngrad = ll_read_grad_task(&k, -1, NULL, NULL, NULL, NULL);
#pragma omp parallel for schedule(dynamic, 1) num_threads(k.nthreads)
        for (int64_t task = 0; task < ngrad; task++) {
            int b, hb0, nh, s;
            ll_read_grad_task(&k, task, &b, &hb0, &nh, &s);
            ll_read_grads(&k, b, hb0, nh, s, scan_thread_buf(&k), qt_chunks);
        }
        scan_state_tasks(&k, ll_tree_backward);
    }
    // 3. everything local to each chunk (intra blocks, reads, local states)
    scan_chunk_tasks(&k, scan_chunk_backward, false);
    scan_reduce_batches(&k);
    // 4. per (b, h): chunk-total decay gradients (tree + read decays) to every token of each chunk
    scan_head_tasks(&k, ll_decay_grads);
    scan_reduce_partials(&k, dA, dD);
}

void loglinear_step(float *y, float *state, int64_t t, const float *x, const float *dt, const float *A,
                    const float *Bv, const float *Cv, const float *D, const float *lam, int H, int P, int G,
                    int N, int levels, int lam_levels) {
    const int Hg = H / G;
    const size_t PN = (size_t)P * N, HPN = (size_t)H * PN;
    if (t == 0) memset(state, 0, sizeof(float) * levels * HPN);
    for (int h = 0; h < H; h++) {
        float *Sh = state + (size_t)h * PN;   // level l of head h: Sh + l * HPN
        const float *Bg = Bv + (size_t)(h / Hg) * N, *Cg = Cv + (size_t)(h / Hg) * N;
        const float *lh = lam + (size_t)h * lam_levels;
        if (t > 0) {
            // cascade: levels 0..k (k = ctz(t)) hold 1+1+2+..+2^(k-1) = 2^k tokens and merge into level k+1,
            // which is empty because bit k of t-1 is 0 (capped at the top level)
            const int tgt = level_cascade_target(t, levels);
            float *St = Sh + (size_t)tgt * HPN;
            for (int l = 0; l < tgt; l++) {
                float *Sl = Sh + (size_t)l * HPN;
                for (size_t e = 0; e < PN; e++) St[e] += Sl[e];
                memset(Sl, 0, sizeof(float) * PN);
            }
        }
        const float a = expf(dt[h] * A[h]);
        for (int l = 1; l < levels; l++) {  // level l >= 1 is occupied iff bit l-1 of t is set
            if (!level_occupied(t, l)) continue;
            float *Sl = Sh + (size_t)l * HPN;
            for (size_t e = 0; e < PN; e++) Sl[e] *= a;
        }
        for (int p = 0; p < P; p++) {  // level 0 = this token, ungated
            const float v = dt[h] * x[(size_t)h * P + p];
            for (int n = 0; n < N; n++) Sh[(size_t)p * N + n] = v * Bg[n];
        }
        for (int p = 0; p < P; p++) {
            float acc = 0.0f;
            for (int l = 0; l < levels; l++) {
                if (!level_occupied(t, l)) continue;
                const float *s = Sh + (size_t)l * HPN + (size_t)p * N;
                float dot = 0.0f;
                for (int n = 0; n < N; n++) dot += s[n] * Cg[n];
                acc += lh[l < lam_levels ? l : lam_levels - 1] * dot;
            }
            y[(size_t)h * P + p] = acc + D[h] * x[(size_t)h * P + p];
        }
    }
}
