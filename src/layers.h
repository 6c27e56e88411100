// layers.h — the layer families that model.c stacks into blocks: softmax attention (Transformer), the
// Mamba-2 mixer (plain and log-linear), and the SwiGLU MLP. Each family has
//   *_saved_carve   lays out what its forward saves for the backward (in the model's activation arena),
//   *_forward       out (N, d) from the normed block input x (N, d),
//   *_backward      accumulates dx (N, d) and the weight gradients from dout (N, d),
//   *_step          one token of decoding (recurrent state / KV cache).
// N = B*T rows, row-major (B, T, ...) everywhere.
#ifndef LL_LAYERS_H
#define LL_LAYERS_H

#include "arena.h"
#include "config.h"

// Pointers to one layer's tensors (in params, or the same offsets in grads). Unused fields are NULL.
typedef struct {
    float *mixer_norm;                        // (d)  attn_norm (Transformer) / mixer_norm (Mamba)
    float *mlp_norm;                          // (d)
    // Transformer attention
    float *q_proj, *k_proj, *v_proj, *o_proj; // (H*hd, d), (Hkv*hd, d) x2, (d, H*hd)
    // Mamba-2 mixer
    float *in_proj;                           // (2*d_in + 2GN + H [+ H*Λ], d)  rows [z|x|B|C|dt(|dl)]
    float *conv_w, *conv_b;                   // (Cc, 1, K), (Cc) or NULL;  Cc = d_in + 2GN
    float *dt_bias, *A_log, *D;               // (H)
    float *L;                                 // (H, Λ) log-linear only
    float *gnorm;                             // (d_in) gated RMSNorm weight ("mixer.norm.weight")
    float *out_proj;                          // (d, d_in)
    // SwiGLU MLP
    float *gate_proj, *up_proj, *down_proj;   // (I, d), (I, d), (d, I)
} LayerWeights;

// Scratch for kernels (attention, scans), shared by all layers: floats needed at (B, T).
size_t layers_kernel_scratch_floats(const ModelConfig *c, int B, int T);

// ---- softmax attention (fla Attention: q/k/v/o projections, RoPE, causal softmax) -----------------
typedef struct {
    float *q, *k, *v;   // (N, H*hd), (N, Hkv*hd) x2; q and k after RoPE
    float *att;         // (N, H*hd) attention output before o_proj
    float *lse;         // (B, H, T) softmax log-sum-exp
} AttnSaved;

// ---- Mamba-2 mixer (paper's Mamba2Mixer / HAttentionMixer) -----------------------------------------
typedef struct {
    float *zxbcdt;      // (N, R) in_proj output, R = 2*d_in + 2GN + H (+ H*Λ)
    float *conv_pre;    // (N, Cc) conv output before SiLU
    float *xbc;         // (N, Cc) after SiLU: [x | B | C]
    float *dt;          // (N, H) softplus(dt_raw + dt_bias)
    float *A;           // (H) −exp(A_log)
    float *lam;         // (N, H, Λ) λ = softplus(L ⊙ dl) (log-linear only)
    float *y;           // (N, d_in) scan output (incl. D skip)
    float *gout;        // (N, d_in) gated RMSNorm output
    float *grstd;       // (N)
} Mamba2Saved;

// Backward scratch of whichever mixer the model uses, shared by all layers.
typedef struct {
    float *dq, *dk, *dv, *datt;    // attention: (N, H*hd) ...
    float *dzxbcdt;                // mamba: (N, R)
    float *dxbc;                   // (N, Cc)
    float *ddt;                    // (N, H)
    float *dlam;                   // (N, H, Λ)
    float *dy, *dgout;             // (N, d_in)
    float *dA;                     // (H)
} MixerScratch;

typedef union {
    AttnSaved attn;
    Mamba2Saved mamba;
} MixerSaved;

void mixer_saved_carve(MixerSaved *s, Arena *a, const ModelConfig *c, int B, int T);
void mixer_scratch_carve(MixerScratch *s, Arena *a, const ModelConfig *c, int B, int T);

// Family-specific layouts, sizes and decoding (called through the dispatchers above).
void attn_saved_carve(AttnSaved *s, Arena *a, const ModelConfig *c, int B, int T);
void attn_scratch_carve(MixerScratch *s, Arena *a, const ModelConfig *c, int B, int T);
size_t attn_state_floats(const ModelConfig *c, int max_len);
size_t attn_step_tmp_floats(const ModelConfig *c, int max_len);
void mamba2_saved_carve(Mamba2Saved *s, Arena *a, const ModelConfig *c, int B, int T);
void mamba2_scratch_carve(MixerScratch *s, Arena *a, const ModelConfig *c, int B, int T);
size_t mamba2_kernel_scratch_floats(const ModelConfig *c, int B, int T);
size_t mamba2_state_floats(const ModelConfig *c);
size_t mamba2_step_tmp_floats(const ModelConfig *c);

void attn_forward(float *out, AttnSaved *s, const float *x, const LayerWeights *w, const ModelConfig *c,
                  int B, int T, float *kscratch);
void attn_backward(float *dx, LayerWeights *gw, const float *dout, const float *x, const AttnSaved *s,
                   const LayerWeights *w, const ModelConfig *c, int B, int T, MixerScratch *ms, float *kscratch);

void mamba2_forward(float *out, Mamba2Saved *s, const float *x, const LayerWeights *w, const ModelConfig *c,
                    int B, int T, float *kscratch);
void mamba2_backward(float *dx, LayerWeights *gw, const float *dout, const float *x, const Mamba2Saved *s,
                     const LayerWeights *w, const ModelConfig *c, int B, int T, MixerScratch *ms, float *kscratch);

// ---- SwiGLU MLP ------------------------------------------------------------------------------------
typedef struct {
    float *gate, *up;   // (N, I) projections
    float *act;         // (N, I) silu(gate) * up
} MlpSaved;
typedef struct {
    float *dact, *dgate, *dup;   // (N, I)
} MlpScratch;
void mlp_saved_carve(MlpSaved *s, Arena *a, const ModelConfig *c, int B, int T);
void mlp_scratch_carve(MlpScratch *s, Arena *a, const ModelConfig *c, int B, int T);
void mlp_forward(float *out, MlpSaved *s, const float *x, const LayerWeights *w, const ModelConfig *c, int64_t N);
void mlp_backward(float *dx, LayerWeights *gw, const float *dout, const float *x, const MlpSaved *s,
                  const LayerWeights *w, const ModelConfig *c, int64_t N, MlpScratch *ms);

// ---- decoding (one token, one sequence) --------------------------------------------------------------
// Per-layer decode state sizes (floats) and the step functions. pos = 0-based position of the token.
size_t mixer_state_floats(const ModelConfig *c, int max_len);
void attn_step(float *out /*(d)*/, float *state, int64_t pos, const float *x /*(d)*/, const LayerWeights *w,
               const ModelConfig *c, int max_len, float *tmp);
void mamba2_step(float *out /*(d)*/, float *state, int64_t pos, const float *x /*(d)*/, const LayerWeights *w,
                 const ModelConfig *c, float *tmp);
size_t mixer_step_tmp_floats(const ModelConfig *c, int max_len);
void mlp_step(float *out /*(d)*/, const float *x /*(d)*/, const LayerWeights *w, const ModelConfig *c, float *tmp);

#endif
