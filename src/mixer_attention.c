// mixer_attention.c — fla's Attention layer (doc/architectures.md §6.3) as the Transformer's mixer family:
// q/k/v projections (biases under qkv_bias), under qk_norm an RMSNorm of the whole q row and the whole k
// row (weights [H*hd] and [Hkv*hd], doc/checkpoint-names.md §1), RoPE on q and k, causal softmax attention
// (GQA when num_kv_heads < num_heads; sliding window under window_size), o_proj. The kernels are in
// attention.c.
#include <stdio.h>
#include <string.h>

#include "attention.h"
#include "common.h"
#include "linear.h"
#include "mixer.h"
#include "norm.h"
#include "param_init.h"

// eps of q_norm / k_norm: fla's Attention builds them as RMSNorm(dim) without passing norm_eps, so they
// keep fla RMSNorm's default.
#define QK_NORM_EPS 1e-5f

// Tensors in the state_dict order of fla's TransformerBlock: attn_norm, attn.{q,k,v,o}_proj, mlp_norm.
static void attn_add_tensors(ParamTable *tb, const ModelConfig *c, int layer, const char *layer_prefix,
                             BlockWeights *w) {
    (void)layer;
    const int d = c->hidden_size, H = c->num_heads, hd = c->head_dim, Hkv = c->num_kv_heads;
    AttnWeights *aw = &w->mix.attn;
    char name[96];
#define NAME(suffix) (snprintf(name, sizeof name, "%s.%s", layer_prefix, suffix), name)
    const bool bias = c->qkv_bias;
    w->mixer_norm = param_add(tb, NAME("attn_norm.weight"), false, 1, d, 0, 0);
    aw->q_proj = param_add(tb, NAME("attn.q_proj.weight"), true, 2, (int64_t)H * hd, d, 0);
    if (bias) aw->q_bias = param_add(tb, NAME("attn.q_proj.bias"), false, 1, (int64_t)H * hd, 0, 0);
    aw->k_proj = param_add(tb, NAME("attn.k_proj.weight"), true, 2, (int64_t)Hkv * hd, d, 0);
    if (bias) aw->k_bias = param_add(tb, NAME("attn.k_proj.bias"), false, 1, (int64_t)Hkv * hd, 0, 0);
    aw->v_proj = param_add(tb, NAME("attn.v_proj.weight"), true, 2, (int64_t)Hkv * hd, d, 0);
    if (bias) aw->v_bias = param_add(tb, NAME("attn.v_proj.bias"), false, 1, (int64_t)Hkv * hd, 0, 0);
    aw->o_proj = param_add(tb, NAME("attn.o_proj.weight"), true, 2, d, (int64_t)H * hd, 0);
    if (c->qk_norm) {
        aw->q_norm = param_add(tb, NAME("attn.q_norm.weight"), false, 1, (int64_t)H * hd, 0, 0);
        aw->k_norm = param_add(tb, NAME("attn.k_norm.weight"), false, 1, (int64_t)Hkv * hd, 0, 0);
    }
    w->mlp_norm = param_add(tb, NAME("mlp_norm.weight"), false, 1, d, 0, 0);
#undef NAME
}

// fla's Transformer _init_weights: the projections' N(0, σ²) draw of model_init (biases 0) and no rescale;
// the qk norms' weights are 1.
static void attn_init(MixerWeights *mw, const ModelConfig *c, Rng *r) {
    (void)r;
    AttnWeights *w = &mw->attn;
    if (w->q_norm) init_const(w->q_norm, (size_t)c->num_heads * c->head_dim, 1.0f);
    if (w->k_norm) init_const(w->k_norm, (size_t)c->num_kv_heads * c->head_dim, 1.0f);
}

static void attn_saved_carve(MixerSaved *ms, Arena *a, const ModelConfig *c, int B, int T) {
    AttnSaved *s = &ms->attn;
    const size_t N = (size_t)B * T, Dq = (size_t)c->num_heads * c->head_dim, Dkv = (size_t)c->num_kv_heads * c->head_dim;
    s->q = arena_take(a, N * Dq);
    s->k = arena_take(a, N * Dkv);
    s->v = arena_take(a, N * Dkv);
    if (c->qk_norm) {
        s->q_raw = arena_take(a, N * Dq);
        s->k_raw = arena_take(a, N * Dkv);
        s->q_rstd = arena_take(a, N);
        s->k_rstd = arena_take(a, N);
    }
    s->att = arena_take(a, N * Dq);
    s->lse = arena_take(a, (size_t)B * c->num_heads * T);
}

static void attn_scratch_carve(MixerScratch *ms, Arena *a, const ModelConfig *c, int B, int T) {
    AttnScratch *s = &ms->attn;
    const size_t N = (size_t)B * T, Dq = (size_t)c->num_heads * c->head_dim, Dkv = (size_t)c->num_kv_heads * c->head_dim;
    s->dq = arena_take(a, N * Dq);
    s->dk = arena_take(a, N * Dkv);
    s->dv = arena_take(a, N * Dkv);
    s->datt = arena_take(a, N * Dq);
    if (c->qk_norm) {
        s->dq_raw = arena_take(a, N * Dq);
        s->dk_raw = arena_take(a, N * Dkv);
    }
}

static size_t attn_kernel_scratch_floats(const ModelConfig *c, int B, int T) {
    return attention_scratch_floats(B, T, c->num_heads, c->num_kv_heads, c->head_dim, c->window_size);
}

static void attn_forward(float *out,        // (N, d)
                         MixerSaved *ms,
                         const float *x,    // (N, d) normed block input
                         const MixerWeights *mw, const ModelConfig *c, int B, int T, float *kscratch) {
    AttnSaved *s = &ms->attn;
    const AttnWeights *w = &mw->attn;
    const int d = c->hidden_size, H = c->num_heads, Hkv = c->num_kv_heads, hd = c->head_dim;
    const int64_t N = (int64_t)B * T;
    // q, k = [RMSNorm](x W_qᵀ + b_q), [RMSNorm](x W_kᵀ + b_k); v = x W_vᵀ + b_v
    if (c->qk_norm) {
        linear_forward(s->q_raw, x, w->q_proj, w->q_bias, N, d, H * hd);
        linear_forward(s->k_raw, x, w->k_proj, w->k_bias, N, d, Hkv * hd);
        rmsnorm_forward(s->q, s->q_rstd, s->q_raw, w->q_norm, N, H * hd, QK_NORM_EPS);
        rmsnorm_forward(s->k, s->k_rstd, s->k_raw, w->k_norm, N, Hkv * hd, QK_NORM_EPS);
    } else {
        linear_forward(s->q, x, w->q_proj, w->q_bias, N, d, H * hd);
        linear_forward(s->k, x, w->k_proj, w->k_bias, N, d, Hkv * hd);
    }
    linear_forward(s->v, x, w->v_proj, w->v_bias, N, d, Hkv * hd);
    rope_forward(s->q, B, T, H, hd, c->rope_theta);
    rope_forward(s->k, B, T, Hkv, hd, c->rope_theta);
    attention_forward(s->att, s->lse, s->q, s->k, s->v, B, T, H, Hkv, hd, c->window_size, kscratch);
    linear_forward(out, s->att, w->o_proj, NULL, N, H * hd, d);
}

static void attn_backward(float *dx,            // (N, d) +=
                          MixerWeights *mgw,
                          const float *dout,    // (N, d)
                          const float *x,       // (N, d)
                          const MixerSaved *msv, const MixerWeights *mw, const ModelConfig *c, int B, int T,
                          MixerScratch *mss, float *kscratch) {
    const AttnSaved *s = &msv->attn;
    const AttnWeights *w = &mw->attn;
    AttnWeights *gw = &mgw->attn;
    AttnScratch *ms = &mss->attn;
    const int d = c->hidden_size, H = c->num_heads, Hkv = c->num_kv_heads, hd = c->head_dim;
    const int64_t N = (int64_t)B * T;
    const size_t nq = (size_t)N * H * hd, nkv = (size_t)N * Hkv * hd;
    // out = att W_oᵀ
    zero_floats(ms->datt, nq);
    linear_backward(ms->datt, gw->o_proj, NULL, dout, s->att, w->o_proj, N, H * hd, d);
    // att = softmax attention(q, k, v)
    zero_floats(ms->dq, nq);
    zero_floats(ms->dk, nkv);
    zero_floats(ms->dv, nkv);
    attention_backward(ms->dq, ms->dk, ms->dv, ms->datt, s->q, s->k, s->v, s->att, s->lse, B, T, H, Hkv, hd,
                       c->window_size, kscratch);
    // q, k = RoPE(·) of the projections (after the qk norm)
    rope_backward(ms->dq, B, T, H, hd, c->rope_theta);
    rope_backward(ms->dk, B, T, Hkv, hd, c->rope_theta);
    const float *dq = ms->dq, *dk = ms->dk;
    if (c->qk_norm) {
        zero_floats(ms->dq_raw, nq);
        zero_floats(ms->dk_raw, nkv);
        rmsnorm_backward(ms->dq_raw, gw->q_norm, ms->dq, s->q_raw, w->q_norm, s->q_rstd, N, H * hd);
        rmsnorm_backward(ms->dk_raw, gw->k_norm, ms->dk, s->k_raw, w->k_norm, s->k_rstd, N, Hkv * hd);
        dq = ms->dq_raw;
        dk = ms->dk_raw;
    }
    linear_backward(dx, gw->q_proj, gw->q_bias, dq, x, w->q_proj, N, d, H * hd);
    linear_backward(dx, gw->k_proj, gw->k_bias, dk, x, w->k_proj, N, d, Hkv * hd);
    linear_backward(dx, gw->v_proj, gw->v_bias, ms->dv, x, w->v_proj, N, d, Hkv * hd);
}

// KV cache per layer: (max_len, 2, Hkv*hd), each position's k then v, so a cache for a longer max_len
// extends a shorter one at its end (decoding grows it).
static size_t attn_state_floats(const ModelConfig *c, int max_len) {
    return 2 * (size_t)max_len * c->num_kv_heads * c->head_dim;
}
static size_t attn_step_tmp_floats(const ModelConfig *c, int max_len) {
    return 2 * (size_t)c->num_heads * c->head_dim + (size_t)max_len;
}

static void attn_step(float *out, float *state, int64_t pos, const float *x, const MixerWeights *mw,
                      const ModelConfig *c, int max_len, float *tmp) {
    if (pos >= max_len) die("internal: decode past the KV cache (%d)", max_len);
    const AttnWeights *w = &mw->attn;
    const int d = c->hidden_size, H = c->num_heads, Hkv = c->num_kv_heads, hd = c->head_dim;
    const int Dkv = Hkv * hd;
    const int64_t ld = 2 * (int64_t)Dkv;
    float *kc = state, *vc = state + Dkv;
    float *q = tmp, *att = tmp + (size_t)H * hd, *p = tmp + 2 * (size_t)H * hd;
    float *kt = kc + pos * ld, rstd;
    linear_forward(q, x, w->q_proj, w->q_bias, 1, d, H * hd);
    linear_forward(kt, x, w->k_proj, w->k_bias, 1, d, Dkv);
    linear_forward(vc + pos * ld, x, w->v_proj, w->v_bias, 1, d, Dkv);
    if (c->qk_norm) {   // in place: each row's rms is taken before it is overwritten
        rmsnorm_forward(q, &rstd, q, w->q_norm, 1, H * hd, QK_NORM_EPS);
        rmsnorm_forward(kt, &rstd, kt, w->k_norm, 1, Dkv, QK_NORM_EPS);
    }
    rope_forward_at(q, H, hd, pos, c->rope_theta);
    rope_forward_at(kt, Hkv, hd, pos, c->rope_theta);
    attention_decode_step(att, p, q, kc, vc, ld, pos, H, Hkv, hd, c->window_size);
    linear_forward(out, att, w->o_proj, NULL, 1, H * hd, d);
}

// QKᵀ and PV over T/2 keys on average (at most the window).
static double attn_mixing_flops(const ModelConfig *c, int T) {
    double keys = T / 2.0;
    if (c->window_size > 0 && c->window_size < T) {
        const double W = c->window_size;   // mean over t of min(t + 1, W)
        keys = (W * (W + 1) / 2.0 + (T - W) * W) / T;
    }
    return 2.0 * 2.0 * keys * c->num_heads * c->head_dim;
}

const MixerFamily MIXER_ATTENTION = {
    .name = "attention",
    .prefix = "model",
    .final_norm = "norm",
    .add_tensors = attn_add_tensors,
    .init = attn_init,
    .saved_carve = attn_saved_carve,
    .scratch_carve = attn_scratch_carve,
    .kernel_scratch_floats = attn_kernel_scratch_floats,
    .forward = attn_forward,
    .backward = attn_backward,
    .state_floats = attn_state_floats,
    .step_tmp_floats = attn_step_tmp_floats,
    .step = attn_step,
    .mixing_flops = attn_mixing_flops,
};
