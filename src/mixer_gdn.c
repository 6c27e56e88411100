// mixer_gdn.c — fla's GatedDeltaNet layer (doc/architectures.md §4) and the paper's log-linear variant
// HGatedDeltaNet (§7, doc/loglinear-attention.md §2):
//   [q | k | v | a | b] = x [W_q; W_k; W_v; W_a; W_b]ᵀ            (one GEMM: the five tensors are adjacent)
//   q, k, v = silu(causal depthwise conv(·)), no bias             (one conv over the adjacent q/k/v filters)
//   q = l2norm(q)·s, k = l2norm(k) per head;  s = dk^−½ (plain) or 1 (log-linear: the paper divides λ by s)
//   β = σ(b), g = −exp(A_log)·softplus(a + dt_bias), λ = softplus(L ⊙ x W_lᵀ)   (log-linear)
//   o = gated delta rule (deltanet.h), per head o = RMSNorm_dv(o) ⊙ w_norm (⊙ silu(x W_gᵀ) with use_gate)
//   out = o W_oᵀ
#include <math.h>
#include <string.h>

#include "conv.h"
#include "deltanet.h"
#include "gates.h"
#include "param_init.h"
#include "levels.h"
#include "linear.h"
#include "mixer.h"
#include "norm.h"
#include "swiglu.h"

static const float L2NORM_EPS = 1e-6f;   // fla l2norm

typedef struct {
    int d, H, dk, dv, Dk, Dv, K, R, Cc, levels, HL;
    bool loglinear, gate;
    float qscale;
} GdnDims;

static GdnDims gdn_dims(const ModelConfig *c) {
    GdnDims m;
    m.d = c->hidden_size;
    m.H = c->num_heads;
    m.dk = c->head_dim;
    m.dv = (int)((double)c->head_dim * (double)c->expand_v);
    m.Dk = m.H * m.dk;
    m.Dv = m.H * m.dv;
    m.K = c->conv_kernel;
    m.Cc = 2 * m.Dk + m.Dv;
    m.R = m.Cc + 2 * m.H;
    m.loglinear = model_type_is_loglinear(c->type);
    m.levels = m.loglinear ? c->num_levels : 0;
    m.HL = m.H * m.levels;
    m.gate = c->use_gate;
    m.qscale = m.loglinear ? 1.0f : 1.0f / sqrtf((float)m.dk);
    return m;
}

static DeltaDims delta_dims(const GdnDims *m, const ModelConfig *c, int B, int T) {
    DeltaDims dd = {.B = B, .T = T, .H = m->H, .K = m->dk, .V = m->dv, .chunk = c->chunk_size, .levels = m->levels};
    return dd;
}

// ---- parameter table ------------------------------------------------------------------------------
// state_dict order of GatedDeltaNet (+ HGatedDeltaNet's L after dt_bias and l_proj after o_proj).
static void gdn_add_tensors(ParamTable *tb, const ModelConfig *c, int layer, const char *pre, BlockWeights *w) {
    (void)layer;
    const GdnDims m = gdn_dims(c);
    GdnWeights *g = &w->mix.gdn;
    char name[96];
#define NAME(suffix) (snprintf(name, sizeof name, "%s.%s", pre, suffix), name)
    w->mixer_norm = param_add(tb, NAME("attn_norm.weight"), false, 1, m.d, 0, 0);
    g->A_log = param_add(tb, NAME("attn.A_log"), false, 1, m.H, 0, 0);
    g->dt_bias = param_add(tb, NAME("attn.dt_bias"), false, 1, m.H, 0, 0);
    g->L = m.loglinear ? param_add(tb, NAME("attn.L"), false, 2, m.H, m.levels, 0) : NULL;
    // q, k, v, a, b projections and the q, k, v conv filters are adjacent: the forward runs each group as
    // one GEMM / one conv over the concatenated rows.
    g->q_proj = param_add(tb, NAME("attn.q_proj.weight"), true, 2, m.Dk, m.d, 0);
    g->k_proj = param_add(tb, NAME("attn.k_proj.weight"), true, 2, m.Dk, m.d, 0);
    g->v_proj = param_add(tb, NAME("attn.v_proj.weight"), true, 2, m.Dv, m.d, 0);
    g->a_proj = param_add(tb, NAME("attn.a_proj.weight"), true, 2, m.H, m.d, 0);
    g->b_proj = param_add(tb, NAME("attn.b_proj.weight"), true, 2, m.H, m.d, 0);
    g->q_conv = param_add(tb, NAME("attn.q_conv1d.weight"), true, 3, m.Dk, 1, m.K);
    g->k_conv = param_add(tb, NAME("attn.k_conv1d.weight"), true, 3, m.Dk, 1, m.K);
    g->v_conv = param_add(tb, NAME("attn.v_conv1d.weight"), true, 3, m.Dv, 1, m.K);
    g->g_proj = m.gate ? param_add(tb, NAME("attn.g_proj.weight"), true, 2, m.Dv, m.d, 0) : NULL;
    g->o_norm = param_add(tb, NAME("attn.o_norm.weight"), false, 1, m.dv, 0, 0);
    g->o_proj = param_add(tb, NAME("attn.o_proj.weight"), true, 2, m.d, m.Dv, 0);
    g->l_proj = m.loglinear ? param_add(tb, NAME("attn.l_proj.weight"), true, 2, m.HL, m.d, 0) : NULL;
    w->mlp_norm = param_add(tb, NAME("mlp_norm.weight"), false, 1, m.d, 0, 0);
#undef NAME
}

// fla ≥ PR #380 / the paper's HGatedDeltaNet _init_weights: A = U(0, 16), A_log = log A; dt_bias as
// Mamba-2; L = 1; o_norm = 1; o_proj kaiming-uniform(√5) = U(±1/√fan_in), divided by √(2·num_layers).
static void gdn_init(MixerWeights *mw, const ModelConfig *c, Rng *r) {
    const GdnDims m = gdn_dims(c);
    GdnWeights *w = &mw->gdn;
    for (int h = 0; h < m.H; h++) {
        double a = 16.0 * rng_uniform(r);
        w->A_log[h] = (float)log(a > 1e-30 ? a : 1e-30);   // U(0,16) can draw 0: keep A_log finite
    }
    init_dt_bias(w->dt_bias, m.H, c->time_step_min, c->time_step_max, c->time_step_floor, r);
    init_const(w->o_norm, (size_t)m.dv, 1.0f);
    if (w->L) init_const(w->L, (size_t)m.HL, 1.0f);
    if (c->rescale_prenorm_residual) init_rescaled_uniform(w->o_proj, m.d, m.Dv, sqrtf(2.0f * (float)c->num_layers), r);
}

// ---- arena layouts ----------------------------------------------------------------------------------
static void gdn_saved_carve(MixerSaved *ms, Arena *a, const ModelConfig *c, int B, int T) {
    const GdnDims m = gdn_dims(c);
    const size_t N = (size_t)B * T;
    GdnSaved *s = &ms->gdn;
    s->proj = arena_take(a, N * m.R);
    s->conv_pre = arena_take(a, N * m.Cc);
    s->qkv = arena_take(a, N * m.Cc);
    s->q = arena_take(a, N * m.Dk);
    s->k = arena_take(a, N * m.Dk);
    s->q_rstd = arena_take(a, N * m.H);
    s->k_rstd = arena_take(a, N * m.H);
    s->v = arena_take(a, N * m.Dv);
    s->beta = arena_take(a, N * m.H);
    s->g = arena_take(a, N * m.H);
    s->dl = m.loglinear ? arena_take(a, N * m.HL) : NULL;
    s->lam = m.loglinear ? arena_take(a, N * m.HL) : NULL;
    s->o = arena_take(a, N * m.Dv);
    const DeltaDims dd = delta_dims(&m, c, B, T);
    s->dn = arena_take(a, deltanet_saved_floats(&dd));
    s->o_rstd = arena_take(a, N * m.H);
    s->n = arena_take(a, N * m.Dv);
    s->graw = m.gate ? arena_take(a, N * m.Dv) : NULL;
    s->gout = m.gate ? arena_take(a, N * m.Dv) : s->n;
}

static void gdn_scratch_carve(MixerScratch *ms, Arena *a, const ModelConfig *c, int B, int T) {
    const GdnDims m = gdn_dims(c);
    const size_t N = (size_t)B * T;
    GdnScratch *s = &ms->gdn;
    s->dgout = arena_take(a, N * m.Dv);
    s->dn = m.gate ? arena_take(a, N * m.Dv) : s->dgout;
    s->dgraw = m.gate ? arena_take(a, N * m.Dv) : NULL;
    s->d_o = arena_take(a, N * m.Dv);
    s->dq = arena_take(a, N * m.Dk);
    s->dk = arena_take(a, N * m.Dk);
    s->dv = arena_take(a, N * m.Dv);
    s->dbeta = arena_take(a, N * m.H);
    s->dg = arena_take(a, N * m.H);
    s->dlam = m.loglinear ? arena_take(a, N * m.HL) : NULL;
    s->ddl = m.loglinear ? arena_take(a, N * m.HL) : NULL;
    s->dproj = arena_take(a, N * m.R);
    s->dqkv = arena_take(a, N * m.Cc);
}

static size_t gdn_kernel_scratch_floats(const ModelConfig *c, int B, int T) {
    const GdnDims m = gdn_dims(c);
    const DeltaDims dd = delta_dims(&m, c, B, T);
    return deltanet_scratch_floats(&dd);
}

// ---- forward / backward -------------------------------------------------------------------------------
static void copy_columns(float *dst, int ld_dst, const float *src, int ld_src, int64_t rows, int cols) {
#pragma omp parallel for schedule(static) if (rows > 64)
    for (int64_t n = 0; n < rows; n++) memcpy(dst + n * ld_dst, src + n * ld_src, sizeof(float) * (size_t)cols);
}

static void add_columns(float *dst, int ld_dst, const float *src, int ld_src, int64_t rows, int cols) {
#pragma omp parallel for schedule(static) if (rows > 64)
    for (int64_t n = 0; n < rows; n++)
        for (int i = 0; i < cols; i++) dst[n * ld_dst + i] += src[n * ld_src + i];
}

static void gdn_forward(float *out,        // (N, d)
                        MixerSaved *ms,
                        const float *x,    // (N, d) normed block input
                        const MixerWeights *mw, const ModelConfig *c, int B, int T, float *kscratch) {
    const GdnDims m = gdn_dims(c);
    const GdnWeights *w = &mw->gdn;
    GdnSaved *s = &ms->gdn;
    const int64_t N = (int64_t)B * T;
    linear_forward(s->proj, x, w->q_proj, NULL, N, m.d, m.R);
    conv1d_silu_forward(s->qkv, s->conv_pre, s->proj, w->q_conv, NULL, B, T, m.Cc, m.K, m.R, m.Cc);
    l2norm_forward(s->q, s->q_rstd, s->qkv, m.Cc, N, m.H, m.dk, m.qscale, L2NORM_EPS);
    l2norm_forward(s->k, s->k_rstd, s->qkv + m.Dk, m.Cc, N, m.H, m.dk, 1.0f, L2NORM_EPS);
    copy_columns(s->v, m.Dv, s->qkv + 2 * m.Dk, m.Cc, N, m.Dv);
    gdn_gates_forward(s->beta, s->g, s->proj + m.Cc, s->proj + m.Cc + m.H, m.R, w->A_log, w->dt_bias, N, m.H);
    if (m.loglinear) {
        linear_forward(s->dl, x, w->l_proj, NULL, N, m.d, m.HL);
        lambda_forward(s->lam, s->dl, m.HL, w->L, N, m.HL);
    }
    const DeltaDims dd = delta_dims(&m, c, B, T);
    deltanet_forward(s->o, s->dn, s->q, s->k, s->v, s->g, s->beta, s->lam, &dd, kscratch);
    rmsnorm_forward(s->n, s->o_rstd, s->o, w->o_norm, N * m.H, m.dv, c->norm_eps);
    if (m.gate) {
        linear_forward(s->graw, x, w->g_proj, NULL, N, m.d, m.Dv);
        swiglu_forward(s->gout, s->graw, s->n, N * m.Dv);
    }
    linear_forward(out, s->gout, w->o_proj, NULL, N, m.Dv, m.d);
}

static void gdn_backward(float *dx,            // (N, d) +=
                         MixerWeights *gmw,
                         const float *dout,    // (N, d)
                         const float *x,       // (N, d)
                         const MixerSaved *ms, const MixerWeights *mw, const ModelConfig *c, int B, int T,
                         MixerScratch *mscr, float *kscratch) {
    const GdnDims m = gdn_dims(c);
    const GdnWeights *w = &mw->gdn;
    GdnWeights *gw = &gmw->gdn;
    const GdnSaved *s = &ms->gdn;
    GdnScratch *sc = &mscr->gdn;
    const int64_t N = (int64_t)B * T;
    const size_t NDv = (size_t)N * m.Dv, NH = (size_t)N * m.H;
    // out = gout W_oᵀ
    zero_floats(sc->dgout, NDv);
    linear_backward(sc->dgout, gw->o_proj, NULL, dout, s->gout, w->o_proj, N, m.Dv, m.d);
    // gout = silu(graw) ⊙ n;  graw = x W_gᵀ   (without the gate dn is dgout itself)
    if (m.gate) {
        zero_floats(sc->dn, NDv);
        zero_floats(sc->dgraw, NDv);
        swiglu_backward(sc->dgraw, sc->dn, sc->dgout, s->graw, s->n, (int64_t)NDv);
        linear_backward(dx, gw->g_proj, NULL, sc->dgraw, x, w->g_proj, N, m.d, m.Dv);
    }
    // n = RMSNorm_dv(o) ⊙ w, per head
    zero_floats(sc->d_o, NDv);
    rmsnorm_backward(sc->d_o, gw->o_norm, sc->dn, s->o, w->o_norm, s->o_rstd, N * m.H, m.dv);
    // the gated delta rule
    zero_floats(sc->dq, (size_t)N * m.Dk);
    zero_floats(sc->dk, (size_t)N * m.Dk);
    zero_floats(sc->dv, NDv);
    memset(sc->dbeta, 0, NH * sizeof(float));
    memset(sc->dg, 0, NH * sizeof(float));
    if (m.loglinear) zero_floats(sc->dlam, (size_t)N * m.HL);
    const DeltaDims dd = delta_dims(&m, c, B, T);
    deltanet_backward(sc->dq, sc->dk, sc->dv, sc->dg, sc->dbeta, sc->dlam, sc->d_o, s->dn, s->q, s->k, s->v, s->g,
                      s->beta, s->lam, &dd, kscratch);
    // λ = softplus(L ⊙ dl), dl = x W_lᵀ
    if (m.loglinear) {
        zero_floats(sc->ddl, (size_t)N * m.HL);
        lambda_backward(sc->ddl, m.HL, gw->L, sc->dlam, s->dl, m.HL, w->L, N, m.HL);
        linear_backward(dx, gw->l_proj, NULL, sc->ddl, x, w->l_proj, N, m.d, m.HL);
    }
    // q, k = l2norm(conv output); v copied out of it; β, g from the a/b columns of the projection
    zero_floats(sc->dqkv, (size_t)N * m.Cc);
    l2norm_backward(sc->dqkv, sc->dq, s->qkv, s->q_rstd, m.Cc, N, m.H, m.dk, m.qscale);
    l2norm_backward(sc->dqkv + m.Dk, sc->dk, s->qkv + m.Dk, s->k_rstd, m.Cc, N, m.H, m.dk, 1.0f);
    add_columns(sc->dqkv + 2 * m.Dk, m.Cc, sc->dv, m.Dv, N, m.Dv);
    zero_floats(sc->dproj, (size_t)N * m.R);
    gdn_gates_backward(sc->dproj + m.Cc, sc->dproj + m.Cc + m.H, gw->A_log, gw->dt_bias, sc->dbeta, sc->dg, s->beta,
                       s->g, s->proj + m.Cc, m.R, w->A_log, w->dt_bias, N, m.H);
    // [q|k|v] = silu(conv(proj[:, :Cc]));  proj = x [W_q; W_k; W_v; W_a; W_b]ᵀ
    conv1d_silu_backward(sc->dproj, gw->q_conv, NULL, sc->dqkv, s->conv_pre, s->proj, w->q_conv, B, T, m.Cc, m.K, m.R,
                         m.Cc);
    linear_backward(dx, gw->q_proj, NULL, sc->dproj, x, w->q_proj, N, m.d, m.R);
}

// ---- decoding ---------------------------------------------------------------------------------------
// State per layer: conv state (Cc, K−1), then the delta-rule state (H, dk, dv), or (levels, H, dk, dv) for
// the log-linear mixer with levels = levels_needed(max_len): one state per Fenwick level, O(log t) memory,
// level-major so that a longer max_len extends the state at its end (past the model's num_levels too).
static size_t gdn_state_floats(const ModelConfig *c, int max_len) {
    const GdnDims m = gdn_dims(c);
    return (size_t)m.Cc * (m.K - 1) + (size_t)m.H * m.dk * m.dv * (m.loglinear ? (size_t)levels_needed(max_len) : 1);
}

static size_t gdn_step_tmp_floats(const ModelConfig *c, int max_len) {
    (void)max_len;
    const GdnDims m = gdn_dims(c);
    return (size_t)m.R + m.Cc + 2 * (size_t)m.Dk + 2 * (size_t)m.H + 2 * (size_t)m.HL + 4 * (size_t)m.Dv +
           2 * (size_t)m.H + 64;
}

static void gdn_step(float *out, float *state, int64_t pos, const float *x, const MixerWeights *mw,
                     const ModelConfig *c, int max_len, float *tmp) {
    if (pos >= max_len) die("internal: decode position %lld past the state's length %d", (long long)pos, max_len);
    const GdnDims m = gdn_dims(c);
    const GdnWeights *w = &mw->gdn;
    float *conv_state = state, *S = state + (size_t)m.Cc * (m.K - 1);
    float *proj = tmp, *qkv = proj + m.R, *q = qkv + m.Cc, *k = q + m.Dk, *beta = k + m.Dk, *g = beta + m.H;
    float *dl = g + m.H, *lam = dl + m.HL, *o = lam + m.HL, *n = o + m.Dv, *graw = n + m.Dv, *gout = graw + m.Dv;
    float *rstd = gout + m.Dv;   // (2H)
    linear_forward(proj, x, w->q_proj, NULL, 1, m.d, m.R);
    conv1d_silu_step(qkv, conv_state, proj, w->q_conv, NULL, m.Cc, m.K);
    l2norm_forward(q, rstd, qkv, m.Cc, 1, m.H, m.dk, m.qscale, L2NORM_EPS);
    l2norm_forward(k, rstd + m.H, qkv + m.Dk, m.Cc, 1, m.H, m.dk, 1.0f, L2NORM_EPS);
    const float *v = qkv + 2 * m.Dk;
    gdn_gates_forward(beta, g, proj + m.Cc, proj + m.Cc + m.H, m.R, w->A_log, w->dt_bias, 1, m.H);
    if (m.loglinear) {
        linear_forward(dl, x, w->l_proj, NULL, 1, m.d, m.HL);
        lambda_forward(lam, dl, m.HL, w->L, 1, m.HL);
        deltanet_loglinear_step(o, S, pos, q, k, v, g, beta, lam, m.H, m.dk, m.dv, levels_needed(max_len), m.levels);
    } else {
        if (pos == 0) memset(S, 0, sizeof(float) * (size_t)m.H * m.dk * m.dv);
        deltanet_step(o, S, q, k, v, g, beta, m.H, m.dk, m.dv);
    }
    rmsnorm_forward(n, rstd, o, w->o_norm, m.H, m.dv, c->norm_eps);
    const float *y = n;
    if (m.gate) {
        linear_forward(graw, x, w->g_proj, NULL, 1, m.d, m.Dv);
        swiglu_forward(gout, graw, n, m.Dv);
        y = gout;
    }
    linear_forward(out, y, w->o_proj, NULL, 1, m.Dv, m.d);
}

// Forward FLOPs per token of the delta rule, per head (multiply-adds × 2), chunk C: the lower halves of
// K Kᵀ and Q Kᵀ (C/2·dk each), the two triangular inverses and A = tril(QKᵀ)·Tu (C²/6 each, per token),
// W, U, Q̃ (C/2·dk, C/2·dv, C/2·dk), the intra output (C/2·dv), and per chunk level a state transition
// (2·dk·dv) plus a write and a read (dk·dv each; the log-linear levels write and read on half the chunks).
static double gdn_mixing_flops(const ModelConfig *c, int T) {
    const GdnDims m = gdn_dims(c);
    const double C = LL_MIN(c->chunk_size, T), dk = m.dk, dv = m.dv;
    double macs = 3.0 * (C / 2.0) * dk + 2.0 * (C / 2.0) * dv + 3.0 * C * C / 6.0;
    if (m.loglinear) {
        const int levels = levels_chunk_levels(((int64_t)T + c->chunk_size - 1) / c->chunk_size);
        macs += levels * 3.0 * dk * dv;
    } else {
        macs += 4.0 * dk * dv;
    }
    return m.H * 2.0 * macs;
}

const MixerFamily MIXER_GDN = {
    .name = "gated_deltanet",
    .prefix = "model",
    .final_norm = "norm",
    .add_tensors = gdn_add_tensors,
    .init = gdn_init,
    .saved_carve = gdn_saved_carve,
    .scratch_carve = gdn_scratch_carve,
    .kernel_scratch_floats = gdn_kernel_scratch_floats,
    .forward = gdn_forward,
    .backward = gdn_backward,
    .state_floats = gdn_state_floats,
    .step_tmp_floats = gdn_step_tmp_floats,
    .step = gdn_step,
    .mixing_flops = gdn_mixing_flops,
};
