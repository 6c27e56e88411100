// mixer_mamba2.c — the paper's Mamba-2 mixer family (Mamba2Mixer, doc/architectures.md §5) and its log-linear
// variant (HAttentionMixer, §7):
//   zxbcdt = x W_inᵀ, rows [z | x | B | C | dt (| dl)]
//   [x|B|C] = silu(causal depthwise conv(·) + bias)          (z, dt, dl are not convolved)
//   dt = clamp(softplus(dt_raw + dt_bias), time_step_limit), A = −exp(A_log), λ = softplus(L ⊙ dl) (log-linear)
//   y = SSD scan (or log-linear scan) + D·x
//   out = (RMSNorm(y ⊙ silu(z)) ⊙ w) W_outᵀ
// (in_proj and out_proj add a bias under use_bias.)
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "activations.h"
#include "conv.h"
#include "gates.h"
#include "levels.h"
#include "linear.h"
#include "mixer.h"
#include "norm.h"
#include "param_init.h"
#include "scan_loglinear.h"
#include "scan_ssd.h"

typedef struct {
    int d, H, P, G, N, GN, din, Cc, K, R, levels;
    float dt_lo, dt_hi;   // time_step_limit: dt is clamped to [dt_lo, dt_hi]
    bool dt_clamp;        // false at the default (0, inf): softplus is never below 0
    int dt_off, dl_off;   // column offsets of dt and dl in the in_proj output
    int norm_groups;      // groups of the gated RMSNorm (see mamba_dims)
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
    // The paper's Mamba-2 trains through mamba_ssm's fused kernel, whose gated RMSNorm normalises each group
    // of d_inner / n_groups channels; the log-linear model uses fla's gated norm over the whole d_inner.
    m.norm_groups = m.loglinear ? 1 : m.G;
    m.dt_lo = c->time_step_limit[0];
    m.dt_hi = c->time_step_limit[1];
    m.dt_clamp = m.dt_lo > 0.0f || !isinf(m.dt_hi);
    return m;
}

static ScanDims scan_dims(const MambaDims *m, const ModelConfig *c, int B, int T) {
    ScanDims s = {.B = B, .T = T, .H = m->H, .P = m->P, .G = m->G, .N = m->N, .chunk = c->chunk_size,
                  .ld_x = m->Cc, .ld_bc = m->Cc, .levels = m->levels};
    return s;
}

// Tensors in the state_dict order of the paper's Mamba2MLP block: mixer_norm, mlp_norm, then the mixer's
// own (mamba_ssm registers dt_bias, A_log, (L), D before the conv, in_proj, norm and out_proj modules).
static void mamba2_add_tensors(ParamTable *tb, const ModelConfig *c, int layer, const char *layer_prefix,
                               BlockWeights *bw) {
    (void)layer;
    const MambaDims m = mamba_dims(c);
    Mamba2Weights *w = &bw->mix.mamba;
    char name[96];
#define NAME(suffix) (snprintf(name, sizeof name, "%s.%s", layer_prefix, suffix), name)
    bw->mixer_norm = param_add(tb, NAME("mixer_norm.weight"), false, 1, m.d, 0, 0);
    bw->mlp_norm = param_add(tb, NAME("mlp_norm.weight"), false, 1, m.d, 0, 0);
    w->dt_bias = param_add(tb, NAME("mixer.dt_bias"), false, 1, m.H, 0, 0);
    w->A_log = param_add(tb, NAME("mixer.A_log"), false, 1, m.H, 0, 0);
    if (m.loglinear) w->L = param_add(tb, NAME("mixer.L"), false, 2, m.H, m.levels, 0);
    w->D = param_add(tb, NAME("mixer.D"), false, 1, m.H, 0, 0);
    w->conv_w = param_add(tb, NAME("mixer.conv1d.weight"), true, 3, m.Cc, 1, m.K);
    if (c->use_conv_bias) w->conv_b = param_add(tb, NAME("mixer.conv1d.bias"), false, 1, m.Cc, 0, 0);
    w->in_proj = param_add(tb, NAME("mixer.in_proj.weight"), true, 2, m.R, m.d, 0);
    if (c->use_bias) w->in_bias = param_add(tb, NAME("mixer.in_proj.bias"), false, 1, m.R, 0, 0);
    w->gnorm = param_add(tb, NAME("mixer.norm.weight"), false, 1, m.din, 0, 0);
    w->out_proj = param_add(tb, NAME("mixer.out_proj.weight"), true, 2, m.d, m.din, 0);
    if (c->use_bias) w->out_bias = param_add(tb, NAME("mixer.out_proj.bias"), false, 1, m.d, 0, 0);
#undef NAME
}

// After model_init's N(0, σ²) pass (doc/architectures.md §2.3): gated-norm weight 1, D = 1, A_log = log(1..H),
// dt_bias = softplus⁻¹(dt) with dt log-uniform in [dt_min, dt_max] (floored), L = 1, and under
// rescale_prenorm_residual out_proj re-drawn kaiming-uniform(√5) / √(2·num_layers). Draw order: dt, out_proj.
static void mamba2_init(MixerWeights *mw, const ModelConfig *c, Rng *r) {
    Mamba2Weights *w = &mw->mamba;
    const int H = c->num_heads;
    init_const(w->gnorm, c->d_inner, 1.0f);
    init_const(w->D, H, 1.0f);
    for (int h = 0; h < H; h++) w->A_log[h] = logf((float)(h + 1));
    init_dt_bias(w->dt_bias, H, c->time_step_min, c->time_step_max, c->time_step_floor, r);
    if (w->L) init_const(w->L, (size_t)H * c->num_levels, 1.0f);
    if (c->rescale_prenorm_residual)
        init_rescaled_uniform(w->out_proj, c->hidden_size, c->d_inner, sqrtf(2.0f * (float)c->num_layers), r);
}

static void mamba2_saved_carve(MixerSaved *ms, Arena *a, const ModelConfig *c, int B, int T) {
    Mamba2Saved *s = &ms->mamba;
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
    s->grstd = arena_take(a, N * m.norm_groups);
}

static void mamba2_scratch_carve(MixerScratch *ms, Arena *a, const ModelConfig *c, int B, int T) {
    Mamba2Scratch *s = &ms->mamba;
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

static size_t mamba2_kernel_scratch_floats(const ModelConfig *c, int B, int T) {
    const MambaDims m = mamba_dims(c);
    ScanDims sd = scan_dims(&m, c, B, T);
    return m.loglinear ? loglinear_scratch_floats(&sd) : ssd_scratch_floats(&sd);
}

// dt, A and λ from the in_proj output of `rows` rows (shared by the forward and the decoding step):
//   A = −exp(A_log),  dt = clamp(softplus(dt_raw + dt_bias), lo, hi),  λ = softplus(L ⊙ dl) (log-linear).
static void gates_forward(float *dt /*(rows,H)*/, float *A /*(H)*/, float *lam /*(rows,H,Λ) or NULL*/,
                          const float *zxbcdt /*(rows,R)*/, int64_t rows, const Mamba2Weights *w, const MambaDims *m) {
    for (int h = 0; h < m->H; h++) A[h] = -expf(w->A_log[h]);
#pragma omp parallel for schedule(static) if (rows > 64)
    for (int64_t n = 0; n < rows; n++) {
        const float *row = zxbcdt + n * m->R;
        for (int h = 0; h < m->H; h++) {
            float v = act_softplus(row[m->dt_off + h] + w->dt_bias[h]);
            if (m->dt_clamp) v = fminf(fmaxf(v, m->dt_lo), m->dt_hi);
            dt[n * m->H + h] = v;
        }
    }
    if (lam) lambda_forward(lam, zxbcdt + m->dl_off, m->R, w->L, rows, m->H * m->levels);
}

// Backward of gates_forward: from dA (H), ddt (rows, H) and dlam (rows, H, Λ) writes the dt and dl columns
// of dzxbcdt (rows, R) and accumulates gw->A_log, gw->dt_bias, gw->L. Per-row parts in parallel; the
// parameter reductions over rows go column by column in row order (bit-reproducible).
static void gates_backward(float *dzxbcdt, Mamba2Weights *gw, const float *dA, const float *ddt, const float *dlam,
                           const float *zxbcdt, const float *A, int64_t rows, const Mamba2Weights *w,
                           const MambaDims *m) {
    // A = −exp(A_log) ⇒ dA_log = dA · A
    for (int h = 0; h < m->H; h++) gw->A_log[h] += dA[h] * A[h];
    // dt = clamp(softplus(dt_raw + dt_bias)): no gradient where the clamp is active (strictly outside
    // [lo, hi], as mamba_ssm's _chunk_cumsum_bwd and torch.clamp)
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < rows; n++) {
        const float *row = zxbcdt + n * m->R;
        float *drow = dzxbcdt + n * m->R;
        for (int h = 0; h < m->H; h++) {
            const float u = row[m->dt_off + h] + w->dt_bias[h];
            float g = ddt[n * m->H + h] * act_softplus_grad(u);
            if (m->dt_clamp) {
                const float sp = act_softplus(u);
                if (sp < m->dt_lo || sp > m->dt_hi) g = 0.0f;
            }
            drow[m->dt_off + h] = g;
        }
    }
#pragma omp parallel for schedule(static)
    for (int h = 0; h < m->H; h++) {
        double acc = 0;
        for (int64_t n = 0; n < rows; n++) acc += dzxbcdt[n * m->R + m->dt_off + h];
        gw->dt_bias[h] += (float)acc;
    }
    // λ = softplus(L ⊙ dl)
    if (m->levels > 0)
        lambda_backward(dzxbcdt + m->dl_off, m->R, gw->L, dlam, zxbcdt + m->dl_off, m->R, w->L, rows, m->H * m->levels);
}

static void mamba2_forward(float *out,         // (N, d)
                           MixerSaved *ms,
                           const float *x,     // (N, d) normed block input
                           const MixerWeights *mw, const ModelConfig *c, int B, int T, float *kscratch) {
    Mamba2Saved *s = &ms->mamba;
    const Mamba2Weights *w = &mw->mamba;
    const MambaDims m = mamba_dims(c);
    const int64_t N = (int64_t)B * T;
    linear_forward(s->zxbcdt, x, w->in_proj, w->in_bias, N, m.d, m.R);
    conv1d_silu_forward(s->xbc, s->conv_pre, s->zxbcdt + m.din, w->conv_w, w->conv_b, B, T, m.Cc, m.K, m.R, m.Cc);
    gates_forward(s->dt, s->A, s->lam, s->zxbcdt, N, w, &m);
    ScanDims sd = scan_dims(&m, c, B, T);
    const float *xs = s->xbc, *Bm = s->xbc + m.din, *Cm = s->xbc + m.din + m.GN;
    if (m.loglinear) loglinear_forward(s->y, xs, s->dt, s->A, Bm, Cm, w->D, s->lam, &sd, kscratch);
    else ssd_forward(s->y, xs, s->dt, s->A, Bm, Cm, w->D, &sd, kscratch);
    gated_rmsnorm_forward(s->gout, s->grstd, s->y, s->zxbcdt, m.R, w->gnorm, N, m.din, m.norm_groups, c->norm_eps);
    linear_forward(out, s->gout, w->out_proj, w->out_bias, N, m.din, m.d);
}

static void mamba2_backward(float *dx,            // (N, d) +=
                            MixerWeights *mgw,
                            const float *dout,    // (N, d)
                            const float *x,       // (N, d)
                            const MixerSaved *msv, const MixerWeights *mw, const ModelConfig *c, int B, int T,
                            MixerScratch *mss, float *kscratch) {
    const Mamba2Saved *s = &msv->mamba;
    const Mamba2Weights *w = &mw->mamba;
    Mamba2Weights *gw = &mgw->mamba;
    Mamba2Scratch *ms = &mss->mamba;
    const MambaDims m = mamba_dims(c);
    const int64_t N = (int64_t)B * T;
    // out = gout W_outᵀ
    zero_floats(ms->dgout, (size_t)N * m.din);
    linear_backward(ms->dgout, gw->out_proj, gw->out_bias, dout, s->gout, w->out_proj, N, m.din, m.d);
    // gout = RMSNorm(y ⊙ silu(z)) ⊙ w  — dz lands in the z columns of dzxbcdt
    zero_floats(ms->dzxbcdt, (size_t)N * m.R);
    zero_floats(ms->dy, (size_t)N * m.din);
    gated_rmsnorm_backward(ms->dy, ms->dzxbcdt, gw->gnorm, ms->dgout, s->y, s->zxbcdt, m.R, w->gnorm, s->grstd, N, m.din,
                           m.norm_groups);
    // the scan
    zero_floats(ms->dxbc, (size_t)N * m.Cc);
    zero_floats(ms->ddt, (size_t)N * m.H);
    memset(ms->dA, 0, (size_t)m.H * sizeof(float));
    ScanDims sd = scan_dims(&m, c, B, T);
    const float *xs = s->xbc, *Bm = s->xbc + m.din, *Cm = s->xbc + m.din + m.GN;
    float *dxs = ms->dxbc, *dBm = ms->dxbc + m.din, *dCm = ms->dxbc + m.din + m.GN;
    if (m.loglinear) {
        zero_floats(ms->dlam, (size_t)N * m.H * m.levels);
        loglinear_backward(dxs, ms->ddt, ms->dA, dBm, dCm, gw->D, ms->dlam, ms->dy, xs, s->dt, s->A, Bm, Cm, w->D,
                           s->lam, &sd, kscratch);
    } else {
        ssd_backward(dxs, ms->ddt, ms->dA, dBm, dCm, gw->D, ms->dy, xs, s->dt, s->A, Bm, Cm, w->D, &sd, kscratch);
    }
    // dt, A, λ = gates(zxbcdt)
    gates_backward(ms->dzxbcdt, gw, ms->dA, ms->ddt, ms->dlam, s->zxbcdt, s->A, N, w, &m);
    // [x|B|C] = silu(conv(xBC_raw))
    conv1d_silu_backward(ms->dzxbcdt + m.din, gw->conv_w, gw->conv_b, ms->dxbc, s->conv_pre, s->zxbcdt + m.din,
                         w->conv_w, B, T, m.Cc, m.K, m.R, m.Cc);
    // zxbcdt = x W_inᵀ
    linear_backward(dx, gw->in_proj, gw->in_bias, ms->dzxbcdt, x, w->in_proj, N, m.d, m.R);
}

// Decoding state per layer: conv state (Cc, K−1) then the SSM state (H, P, N), or (levels, H, P, N) for
// the log-linear mixer with levels = levels_needed(max_len): one state per Fenwick level, O(log t) memory,
// level-major so that a longer max_len extends the state at its end (past the model's num_levels too).
static size_t mamba2_state_floats(const ModelConfig *c, int max_len) {
    const MambaDims m = mamba_dims(c);
    const size_t ssm = (size_t)m.H * m.P * m.N * (m.loglinear ? (size_t)levels_needed(max_len) : 1);
    return (size_t)m.Cc * (m.K - 1) + ssm;
}

static size_t mamba2_step_tmp_floats(const ModelConfig *c, int max_len) {
    (void)max_len;
    const MambaDims m = mamba_dims(c);
    return (size_t)m.R + m.Cc + m.H + (size_t)m.H * m.levels + 2 * (size_t)m.din + m.H + m.norm_groups + 64;
}

static void mamba2_step(float *out, float *state, int64_t pos, const float *x, const MixerWeights *mw,
                        const ModelConfig *c, int max_len, float *tmp) {
    if (pos >= max_len) die("internal: decode position %lld past the state's length %d", (long long)pos, max_len);
    const Mamba2Weights *w = &mw->mamba;
    const MambaDims m = mamba_dims(c);
    float *conv_state = state, *ssm = state + (size_t)m.Cc * (m.K - 1);
    float *zx = tmp, *xbc = zx + m.R, *dt = xbc + m.Cc, *lam = dt + m.H, *y = lam + (size_t)m.H * m.levels;
    float *gout = y + m.din, *A = gout + m.din, *rstd = A + m.H;   // rstd: (norm_groups)
    linear_forward(zx, x, w->in_proj, w->in_bias, 1, m.d, m.R);
    conv1d_silu_step(xbc, conv_state, zx + m.din, w->conv_w, w->conv_b, m.Cc, m.K);
    gates_forward(dt, A, m.loglinear ? lam : NULL, zx, 1, w, &m);
    const float *Bv = xbc + m.din, *Cv = xbc + m.din + m.GN;
    if (m.loglinear) loglinear_step(y, ssm, pos, xbc, dt, A, Bv, Cv, w->D, lam, m.H, m.P, m.G, m.N,
                                  levels_needed(max_len), m.levels);
    else ssd_step(y, ssm, xbc, dt, A, Bv, Cv, w->D, m.H, m.P, m.G, m.N);
    gated_rmsnorm_forward(gout, rstd, y, zx, m.R, w->gnorm, 1, m.din, m.norm_groups, c->norm_eps);
    linear_forward(out, gout, w->out_proj, w->out_bias, 1, m.din, m.d);
}

// intra-chunk: C·B and the weighted sum over Q/2 keys; chunk state write + read-out: 2 x 2PN; log-linear:
// a chunk reads half of the inter-chunk levels on average.
static double mamba2_mixing_flops(const ModelConfig *c, int T) {
    const double H = c->num_heads, P = c->head_dim, Nst = c->state_size;
    const double Q = LL_MIN(c->chunk_size, T);
    double mixing = H * (2.0 * (Q / 2.0) * (Nst + P) + 4.0 * P * Nst);
    if (mamba_dims(c).loglinear) {
        const int levels = levels_chunk_levels(((int64_t)T + c->chunk_size - 1) / c->chunk_size);
        mixing += H * 2.0 * P * Nst * levels / 2.0;
    }
    return mixing;
}

const MixerFamily MIXER_MAMBA2 = {
    .name = "mamba2",
    .prefix = "backbone",
    .final_norm = "norm_f",
    .add_tensors = mamba2_add_tensors,
    .init = mamba2_init,
    .saved_carve = mamba2_saved_carve,
    .scratch_carve = mamba2_scratch_carve,
    .kernel_scratch_floats = mamba2_kernel_scratch_floats,
    .forward = mamba2_forward,
    .backward = mamba2_backward,
    .state_floats = mamba2_state_floats,
    .step_tmp_floats = mamba2_step_tmp_floats,
    .step = mamba2_step,
    .mixing_flops = mamba2_mixing_flops,
};
