// layer_attention.c — fla's Attention layer (architectures.md §6.3): q/k/v projections (no bias),
// RoPE on q and k, causal softmax attention (GQA when num_kv_heads < num_heads), o_proj.
#include <math.h>
#include <string.h>

#include "attention.h"
#include "layers.h"
#include "linear.h"

void attn_saved_carve(AttnSaved *s, Arena *a, const ModelConfig *c, int B, int T) {
    const size_t N = (size_t)B * T, Dq = (size_t)c->num_heads * c->head_dim, Dkv = (size_t)c->num_kv_heads * c->head_dim;
    s->q = arena_take(a, N * Dq);
    s->k = arena_take(a, N * Dkv);
    s->v = arena_take(a, N * Dkv);
    s->att = arena_take(a, N * Dq);
    s->lse = arena_take(a, (size_t)B * c->num_heads * T);
}

void attn_scratch_carve(MixerScratch *s, Arena *a, const ModelConfig *c, int B, int T) {
    const size_t N = (size_t)B * T, Dq = (size_t)c->num_heads * c->head_dim, Dkv = (size_t)c->num_kv_heads * c->head_dim;
    s->dq = arena_take(a, N * Dq);
    s->dk = arena_take(a, N * Dkv);
    s->dv = arena_take(a, N * Dkv);
    s->datt = arena_take(a, N * Dq);
}

void attn_forward(float *out,        // (N, d)
                  AttnSaved *s,
                  const float *x,    // (N, d) normed block input
                  const LayerWeights *w, const ModelConfig *c, int B, int T, float *kscratch) {
    const int d = c->hidden_size, H = c->num_heads, Hkv = c->num_kv_heads, hd = c->head_dim;
    const int64_t N = (int64_t)B * T;
    linear_forward(s->q, x, w->q_proj, NULL, N, d, H * hd);
    linear_forward(s->k, x, w->k_proj, NULL, N, d, Hkv * hd);
    linear_forward(s->v, x, w->v_proj, NULL, N, d, Hkv * hd);
    rope_forward(s->q, B, T, H, hd, c->rope_theta);
    rope_forward(s->k, B, T, Hkv, hd, c->rope_theta);
    attention_forward(s->att, s->lse, s->q, s->k, s->v, B, T, H, Hkv, hd, kscratch);
    linear_forward(out, s->att, w->o_proj, NULL, N, H * hd, d);
}

void attn_backward(float *dx,            // (N, d) +=
                   LayerWeights *gw,
                   const float *dout,    // (N, d)
                   const float *x,       // (N, d)
                   const AttnSaved *s, const LayerWeights *w, const ModelConfig *c, int B, int T,
                   MixerScratch *ms, float *kscratch) {
    const int d = c->hidden_size, H = c->num_heads, Hkv = c->num_kv_heads, hd = c->head_dim;
    const int64_t N = (int64_t)B * T;
    const size_t nq = (size_t)N * H * hd, nkv = (size_t)N * Hkv * hd;
    memset(ms->datt, 0, nq * sizeof(float));
    linear_backward(ms->datt, gw->o_proj, NULL, dout, s->att, w->o_proj, N, H * hd, d);
    memset(ms->dq, 0, nq * sizeof(float));
    memset(ms->dk, 0, nkv * sizeof(float));
    memset(ms->dv, 0, nkv * sizeof(float));
    attention_backward(ms->dq, ms->dk, ms->dv, ms->datt, s->q, s->k, s->v, s->att, s->lse, B, T, H, Hkv, hd, kscratch);
    rope_backward(ms->dq, B, T, H, hd, c->rope_theta);
    rope_backward(ms->dk, B, T, Hkv, hd, c->rope_theta);
    linear_backward(dx, gw->q_proj, NULL, ms->dq, x, w->q_proj, N, d, H * hd);
    linear_backward(dx, gw->k_proj, NULL, ms->dk, x, w->k_proj, N, d, Hkv * hd);
    linear_backward(dx, gw->v_proj, NULL, ms->dv, x, w->v_proj, N, d, Hkv * hd);
}

// KV cache per layer: k (max_len, Hkv*hd) then v (max_len, Hkv*hd).
size_t attn_state_floats(const ModelConfig *c, int max_len) {
    return 2 * (size_t)max_len * c->num_kv_heads * c->head_dim;
}
size_t attn_step_tmp_floats(const ModelConfig *c, int max_len) {
    return 2 * (size_t)c->num_heads * c->head_dim + (size_t)max_len;
}

void attn_step(float *out, float *state, int64_t pos, const float *x, const LayerWeights *w, const ModelConfig *c,
               int max_len, float *tmp) {
    const int d = c->hidden_size, H = c->num_heads, Hkv = c->num_kv_heads, hd = c->head_dim;
    const int Dkv = Hkv * hd;
    float *kc = state, *vc = state + (size_t)max_len * Dkv;
    float *q = tmp, *att = tmp + (size_t)H * hd, *p = tmp + 2 * (size_t)H * hd;
    linear_forward(q, x, w->q_proj, NULL, 1, d, H * hd);
    linear_forward(kc + pos * Dkv, x, w->k_proj, NULL, 1, d, Dkv);
    linear_forward(vc + pos * Dkv, x, w->v_proj, NULL, 1, d, Dkv);
    rope_forward_at(q, H, hd, pos, c->rope_theta);
    rope_forward_at(kc + pos * Dkv, Hkv, hd, pos, c->rope_theta);
    const float scale = 1.0f / sqrtf((float)hd);
    const int group = H / Hkv;
    for (int h = 0; h < H; h++) {
        const float *qh = q + (size_t)h * hd;
        const int kvh = h / group;
        float mx = -INFINITY;
        for (int64_t j = 0; j <= pos; j++) {
            const float *kj = kc + j * Dkv + (size_t)kvh * hd;
            float sdot = 0;
            for (int i = 0; i < hd; i++) sdot += qh[i] * kj[i];
            p[j] = sdot * scale;
            if (p[j] > mx) mx = p[j];
        }
        double sum = 0;
        for (int64_t j = 0; j <= pos; j++) { p[j] = expf(p[j] - mx); sum += p[j]; }
        float *oh = att + (size_t)h * hd;
        memset(oh, 0, (size_t)hd * sizeof(float));
        for (int64_t j = 0; j <= pos; j++) {
            const float *vj = vc + j * Dkv + (size_t)kvh * hd;
            const float pj = (float)(p[j] / sum);
            for (int i = 0; i < hd; i++) oh[i] += pj * vj[i];
        }
    }
    linear_forward(out, att, w->o_proj, NULL, 1, H * hd, d);
}
