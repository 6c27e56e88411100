// layer_mamba2.c — the paper's Mamba-2 mixer (Mamba2Mixer, architectures.md §5) and its log-linear
// variant (HAttentionMixer, §7):
//   zxbcdt = x W_inᵀ, rows [z | x | B | C | dt (| dl)]
//   [x|B|C] = silu(causal depthwise conv(·) + bias)          (z, dt, dl are not convolved)
//   dt = softplus(dt_raw + dt_bias), A = −exp(A_log), λ = softplus(L ⊙ dl)   (log-linear)
//   y = SSD scan (or log-linear scan) + D·x
//   out = (RMSNorm(y ⊙ silu(z)) ⊙ w) W_outᵀ
#include <math.h>
#include <string.h>

#include "activations.h"
#include "conv.h"
#include "layers.h"
#include "linear.h"
#include "norm.h"
#include "scan_loglinear.h"
#include "scan_ssd.h"

typedef struct {
    int d, H, P, G, N, GN, din, Cc, K, R, levels;
    int dt_off, dl_off;   // column offsets of dt and dl in the in_proj output
    bool loglinear;
} MambaDims;

static MambaDims mamba_dims(const ModelConfig *c) {
    MambaDims m;
    m.d = c->hidden_size;
    m.H = c->num_heads;
    m.P = c->head_dim;
    m.G = c->n_groups;
    m.N = c->state_size;
    m.GN = m.G * m.N;
    m.din = c->d_inner;
    m.Cc = m.din + 2 * m.GN;
    m.K = c->conv_kernel;
    m.loglinear = c->type == MODEL_LOGLINEAR_MAMBA2;
    m.levels = m.loglinear ? c->num_levels : 0;
    m.dt_off = m.din + m.Cc;
    m.dl_off = m.dt_off + m.H;
    m.R = m.dl_off + m.H * m.levels;
    return m;
}

static ScanDims scan_dims(const MambaDims *m, const ModelConfig *c, int B, int T) {
    ScanDims s = {.B = B, .T = T, .H = m->H, .P = m->P, .G = m->G, .N = m->N, .chunk = c->chunk_size,
                  .ld_x = m->Cc, .ld_bc = m->Cc, .levels = m->levels};
    return s;
}

void mamba2_saved_carve(Mamba2Saved *s, Arena *a, const ModelConfig *c, int B, int T) {
    const MambaDims m = mamba_dims(c);
    const size_t N = (size_t)B * T;
    s->zxbcdt = arena_take(a, N * m.R);
    s->conv_pre = arena_take(a, N * m.Cc);
    s->xbc = arena_take(a, N * m.Cc);
    s->dt = arena_take(a, N * m.H);
    s->lam = m.loglinear ? arena_take(a, N * m.H * m.levels) : NULL;
    s->A = arena_take(a, m.H);
    s->y = arena_take(a, N * m.din);
    s->gout = arena_take(a, N * m.din);
    s->grstd = arena_take(a, N);
}

void mamba2_scratch_carve(MixerScratch *s, Arena *a, const ModelConfig *c, int B, int T) {
    const MambaDims m = mamba_dims(c);
    const size_t N = (size_t)B * T;
    s->dzxbcdt = arena_take(a, N * m.R);
    s->dxbc = arena_take(a, N * m.Cc);
    s->ddt = arena_take(a, N * m.H);
    s->dlam = m.loglinear ? arena_take(a, N * m.H * m.levels) : NULL;
    s->dy = arena_take(a, N * m.din);
    s->dgout = arena_take(a, N * m.din);
    s->dA = arena_take(a, m.H);
}

size_t mamba2_kernel_scratch_floats(const ModelConfig *c, int B, int T) {
    const MambaDims m = mamba_dims(c);
    ScanDims sd = scan_dims(&m, c, B, T);
    return m.loglinear ? loglinear_scratch_floats(&sd) : ssd_scratch_floats(&sd);
}

// dt, A and λ from the in_proj output of `rows` rows (shared by the forward and the decoding step).
static void gates_forward(float *dt /*(rows,H)*/, float *A /*(H)*/, float *lam /*(rows,H,Λ) or NULL*/,
                          const float *zxbcdt /*(rows,R)*/, int64_t rows, const LayerWeights *w, const MambaDims *m) {
    for (int h = 0; h < m->H; h++) A[h] = -expf(w->A_log[h]);
#pragma omp parallel for schedule(static) if (rows > 64)
    for (int64_t n = 0; n < rows; n++) {
        const float *row = zxbcdt + n * m->R;
        for (int h = 0; h < m->H; h++) dt[n * m->H + h] = act_softplus(row[m->dt_off + h] + w->dt_bias[h]);
        if (lam) {
            const int HL = m->H * m->levels;
            for (int j = 0; j < HL; j++) lam[n * HL + j] = act_softplus(w->L[j] * row[m->dl_off + j]);
        }
    }
}

void mamba2_forward(float *out,         // (N, d)
                    Mamba2Saved *s,
                    const float *x,     // (N, d) normed block input
                    const LayerWeights *w, const ModelConfig *c, int B, int T, float *kscratch) {
    const MambaDims m = mamba_dims(c);
    const int64_t N = (int64_t)B * T;
    linear_forward(s->zxbcdt, x, w->in_proj, NULL, N, m.d, m.R);
    conv1d_silu_forward(s->xbc, s->conv_pre, s->zxbcdt + m.din, w->conv_w, w->conv_b, B, T, m.Cc, m.K, m.R, m.Cc);
    gates_forward(s->dt, s->A, s->lam, s->zxbcdt, N, w, &m);
    ScanDims sd = scan_dims(&m, c, B, T);
    const float *xs = s->xbc, *Bm = s->xbc + m.din, *Cm = s->xbc + m.din + m.GN;
    if (m.loglinear) loglinear_forward(s->y, xs, s->dt, s->A, Bm, Cm, w->D, s->lam, &sd, kscratch);
    else ssd_forward(s->y, xs, s->dt, s->A, Bm, Cm, w->D, &sd, kscratch);
    gated_rmsnorm_forward(s->gout, s->grstd, s->y, s->zxbcdt, m.R, w->gnorm, N, m.din, c->norm_eps);
    linear_forward(out, s->gout, w->out_proj, NULL, N, m.din, m.d);
}

void mamba2_backward(float *dx,            // (N, d) +=
                     LayerWeights *gw,
                     const float *dout,    // (N, d)
                     const float *x,       // (N, d)
                     const Mamba2Saved *s, const LayerWeights *w, const ModelConfig *c, int B, int T,
                     MixerScratch *ms, float *kscratch) {
    const MambaDims m = mamba_dims(c);
    const int64_t N = (int64_t)B * T;
    // out = gout W_outᵀ
    memset(ms->dgout, 0, (size_t)N * m.din * sizeof(float));
    linear_backward(ms->dgout, gw->out_proj, NULL, dout, s->gout, w->out_proj, N, m.din, m.d);
    // gout = RMSNorm(y ⊙ silu(z)) ⊙ w  — dz lands in the z columns of dzxbcdt
    memset(ms->dzxbcdt, 0, (size_t)N * m.R * sizeof(float));
    memset(ms->dy, 0, (size_t)N * m.din * sizeof(float));
    gated_rmsnorm_backward(ms->dy, ms->dzxbcdt, gw->gnorm, ms->dgout, s->y, s->zxbcdt, m.R, w->gnorm, s->grstd, N, m.din);
    // the scan
    memset(ms->dxbc, 0, (size_t)N * m.Cc * sizeof(float));
    memset(ms->ddt, 0, (size_t)N * m.H * sizeof(float));
    memset(ms->dA, 0, (size_t)m.H * sizeof(float));
    ScanDims sd = scan_dims(&m, c, B, T);
    const float *xs = s->xbc, *Bm = s->xbc + m.din, *Cm = s->xbc + m.din + m.GN;
    float *dxs = ms->dxbc, *dBm = ms->dxbc + m.din, *dCm = ms->dxbc + m.din + m.GN;
    if (m.loglinear) {
        memset(ms->dlam, 0, (size_t)N * m.H * m.levels * sizeof(float));
        loglinear_backward(dxs, ms->ddt, ms->dA, dBm, dCm, gw->D, ms->dlam, ms->dy, xs, s->dt, s->A, Bm, Cm, w->D,
                           s->lam, &sd, kscratch);
    } else {
        ssd_backward(dxs, ms->ddt, ms->dA, dBm, dCm, gw->D, ms->dy, xs, s->dt, s->A, Bm, Cm, w->D, &sd, kscratch);
    }
    // A = −exp(A_log) ⇒ dA_log = dA · A
    for (int h = 0; h < m.H; h++) gw->A_log[h] += ms->dA[h] * s->A[h];
    // dt = softplus(dt_raw + dt_bias); λ = softplus(L ⊙ dl). Per-row parts in parallel; the parameter
    // reductions over rows go column by column in row order (bit-reproducible).
    const int HL = m.H * m.levels;
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const float *row = s->zxbcdt + n * m.R;
        float *drow = ms->dzxbcdt + n * m.R;
        for (int h = 0; h < m.H; h++)
            drow[m.dt_off + h] = ms->ddt[n * m.H + h] * act_softplus_grad(row[m.dt_off + h] + w->dt_bias[h]);
        for (int j = 0; j < HL; j++) {
            const float u = w->L[j] * row[m.dl_off + j];
            drow[m.dl_off + j] = ms->dlam[n * HL + j] * act_softplus_grad(u) * w->L[j];
        }
    }
#pragma omp parallel for schedule(static)
    for (int j = 0; j < m.H + HL; j++) {
        double acc = 0;
        if (j < m.H) {
            for (int64_t n = 0; n < N; n++) acc += ms->dzxbcdt[n * m.R + m.dt_off + j];
            gw->dt_bias[j] += (float)acc;
        } else {
            const int jl = j - m.H;
            for (int64_t n = 0; n < N; n++) {
                const float u = w->L[jl] * s->zxbcdt[n * m.R + m.dl_off + jl];
                acc += (double)ms->dlam[n * HL + jl] * act_softplus_grad(u) * s->zxbcdt[n * m.R + m.dl_off + jl];
            }
            gw->L[jl] += (float)acc;
        }
    }
    // [x|B|C] = silu(conv(xBC_raw))
    conv1d_silu_backward(ms->dzxbcdt + m.din, gw->conv_w, gw->conv_b, ms->dxbc, s->conv_pre, s->zxbcdt + m.din,
                         w->conv_w, B, T, m.Cc, m.K, m.R, m.Cc);
    // zxbcdt = x W_inᵀ
    linear_backward(dx, gw->in_proj, NULL, ms->dzxbcdt, x, w->in_proj, N, m.d, m.R);
}

// Decoding state per layer: conv state (Cc, K−1) then the SSM state (H, P, N), or (H, Λ, P, N) for the
// log-linear mixer (one state per Fenwick level: O(log t) memory).
size_t mamba2_state_floats(const ModelConfig *c) {
    const MambaDims m = mamba_dims(c);
    const size_t ssm = (size_t)m.H * m.P * m.N * (m.loglinear ? (size_t)m.levels : 1);
    return (size_t)m.Cc * (m.K - 1) + ssm;
}

size_t mamba2_step_tmp_floats(const ModelConfig *c) {
    const MambaDims m = mamba_dims(c);
    return (size_t)m.R + m.Cc + m.H + (size_t)m.H * m.levels + 2 * (size_t)m.din + m.H + 64;
}

void mamba2_step(float *out, float *state, int64_t pos, const float *x, const LayerWeights *w, const ModelConfig *c,
                 float *tmp) {
    const MambaDims m = mamba_dims(c);
    float *conv_state = state, *ssm = state + (size_t)m.Cc * (m.K - 1);
    float *zx = tmp, *xbc = zx + m.R, *dt = xbc + m.Cc, *lam = dt + m.H, *y = lam + (size_t)m.H * m.levels;
    float *gout = y + m.din, *A = gout + m.din;
    linear_forward(zx, x, w->in_proj, NULL, 1, m.d, m.R);
    conv1d_silu_step(xbc, conv_state, zx + m.din, w->conv_w, w->conv_b, m.Cc, m.K);
    gates_forward(dt, A, m.loglinear ? lam : NULL, zx, 1, w, &m);
    const float *Bv = xbc + m.din, *Cv = xbc + m.din + m.GN;
    if (m.loglinear) loglinear_step(y, ssm, pos, xbc, dt, A, Bv, Cv, w->D, lam, m.H, m.P, m.G, m.N, m.levels);
    else ssd_step(y, ssm, xbc, dt, A, Bv, Cv, w->D, m.H, m.P, m.G, m.N);
    float rstd;
    gated_rmsnorm_forward(gout, &rstd, y, zx, m.R, w->gnorm, 1, m.din, c->norm_eps);
    linear_forward(out, gout, w->out_proj, NULL, 1, m.din, m.d);
}
