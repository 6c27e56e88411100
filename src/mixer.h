// mixer.h — the mixer-family interface. A block is
//     x = r + Mixer(Norm_mix(r));  y = x + MLP(Norm_mlp(x))
// and everything that depends on the mixer lives in one constant MixerFamily table per family
// (mixer_attention.c, mixer_mamba2.c, mixer_gdn.c): its tensors in the parameter table (names, shapes,
// decay flags, in the PyTorch state_dict order), initialisation, saved-activation and scratch layout,
// kernel scratch size, forward, backward, decode state and step, FLOPs. model.c assembles embeddings,
// blocks, norms, MLP, LM head and the activation arena through this table and knows no family.
// Adding a family: its mixer_*.c file (and kernels), one `case` in mixer_family(), its config keys.
//
// N = B*T rows, row-major (B, T, ...) everywhere.
#ifndef LL_MIXER_H
#define LL_MIXER_H

#include "arena.h"
#include "config.h"
#include "param_table.h"
#include "rng.h"

// ---- per-family weight views (pointers into params, or the same offsets in grads) --------------------
typedef struct {
    float *q_proj, *k_proj, *v_proj, *o_proj;  // (H*hd, d), (Hkv*hd, d) x2, (d, H*hd)
    float *q_bias, *k_bias, *v_bias;           // (H*hd), (Hkv*hd) x2 under qkv_bias, else NULL
    float *q_norm, *k_norm;                    // (H*hd), (Hkv*hd) under qk_norm, else NULL
} AttnWeights;

typedef struct {
    float *in_proj;              // (2*d_in + 2GN + H [+ H*Λ], d)  rows [z|x|B|C|dt(|dl)]
    float *in_bias, *out_bias;   // (R), (d) under use_bias, else NULL
    float *conv_w, *conv_b;      // (Cc, 1, K), (Cc) or NULL;  Cc = d_in + 2GN
    float *dt_bias, *A_log, *D;  // (H)
    float *L;                    // (H, Λ) log-linear only, else NULL
    float *gnorm;                // (d_in) gated RMSNorm weight ("mixer.norm.weight")
    float *out_proj;             // (d, d_in)
} Mamba2Weights;

typedef struct {
    float *q_proj, *k_proj;            // (H*dk, d)
    float *v_proj, *g_proj;            // (H*dv, d); g_proj NULL without use_gate
    float *a_proj, *b_proj;            // (H, d)
    float *A_log, *dt_bias;            // (H)
    float *q_conv, *k_conv, *v_conv;   // (H*dk, 1, K), (H*dk, 1, K), (H*dv, 1, K), no bias
    float *o_norm;                     // (dv) shared by all heads
    float *o_proj;                     // (d, H*dv)
    float *l_proj;                     // (H*Λ, d) log-linear only, else NULL
    float *L;                          // (H, Λ) log-linear only, else NULL
} GdnWeights;

typedef union {
    AttnWeights attn;
    Mamba2Weights mamba;
    GdnWeights gdn;
} MixerWeights;

typedef struct {
    float *gate_proj, *up_proj, *down_proj;  // (I, d), (I, d), (d, I)
} MlpWeights;

typedef struct {
    float *mixer_norm;  // (d) attn_norm (Transformer, GDN) / mixer_norm (Mamba)
    float *mlp_norm;    // (d)
    MixerWeights mix;
    MlpWeights mlp;
} BlockWeights;

// ---- per-family saved activations and backward scratch (laid out by each family's carve functions) ---
typedef struct {
    float *q, *k, *v;   // (N, H*hd), (N, Hkv*hd) x2; q and k after RoPE
    float *q_raw, *k_raw;    // (N, H*hd), (N, Hkv*hd) projections before the qk norm (qk_norm only)
    float *q_rstd, *k_rstd;  // (N) x2 qk-norm 1/rms (qk_norm only)
    float *att;         // (N, H*hd) attention output before o_proj
    float *lse;         // (B, H, T) softmax log-sum-exp
} AttnSaved;
typedef struct {
    float *dq, *dk, *dv, *datt;  // (N, H*hd), (N, Hkv*hd) x2, (N, H*hd)
    float *dq_raw, *dk_raw;      // (N, H*hd), (N, Hkv*hd) before the qk norm (qk_norm only)
} AttnScratch;

typedef struct {
    float *zxbcdt;      // (N, R) in_proj output, R = 2*d_in + 2GN + H (+ H*Λ)
    float *conv_pre;    // (N, Cc) conv output before SiLU
    float *xbc;         // (N, Cc) after SiLU: [x | B | C]
    float *dt;          // (N, H) softplus(dt_raw + dt_bias)
    float *A;           // (H) −exp(A_log)
    float *lam;         // (N, H, Λ) λ = softplus(L ⊙ dl) (log-linear only)
    float *y;           // (N, d_in) scan output (incl. D skip)
    float *gout;        // (N, d_in) gated RMSNorm output
    float *grstd;       // (N, norm groups): n_groups for Mamba-2, 1 for the log-linear mixer
} Mamba2Saved;
typedef struct {
    float *dzxbcdt;     // (N, R)
    float *dxbc;        // (N, Cc)
    float *ddt;         // (N, H)
    float *dlam;        // (N, H, Λ)
    float *dy, *dgout;  // (N, d_in)
    float *dA;          // (H)
} Mamba2Scratch;

// The Gated DeltaNet views live beside their family (mixer_gdn_views.h).
#include "mixer_gdn_views.h"

typedef union {
    AttnSaved attn;
    Mamba2Saved mamba;
    GdnSaved gdn;
} MixerSaved;

typedef union {
    AttnScratch attn;
    Mamba2Scratch mamba;
    GdnScratch gdn;
} MixerScratch;

typedef struct MixerFamily {
    const char *name;               // "attention", "mamba2", "gated_deltanet"
    // The state_dict names around the blocks follow the paper's model class of the family:
    // "<prefix>.embeddings.weight", "<prefix>.layers.<l>.…", "<prefix>.<final_norm>.weight".
    const char *prefix;             // "model" (fla Transformer, GDN) / "backbone" (Mamba-2)
    const char *final_norm;         // "norm" / "norm_f"
    // Adds the block's tensors except the MLP's, in state_dict order: the two block norms (mixer_norm,
    // mlp_norm) and the mixer's own. `layer_prefix` is e.g. "model.layers.3".
    void (*add_tensors)(ParamTable *tb, const ModelConfig *c, int layer, const char *layer_prefix,
                        BlockWeights *w);
    // Mixer-specific initialisation of one layer, after every decay-flagged tensor was drawn N(0, σ²),
    // biases zeroed and the block norms set to 1 (model_init).
    void (*init)(MixerWeights *w, const ModelConfig *c, Rng *r);
    // Arena layouts for (B, T): what the forward saves for the backward, and the backward scratch
    // shared by all layers.
    void (*saved_carve)(MixerSaved *s, Arena *a, const ModelConfig *c, int B, int T);
    void (*scratch_carve)(MixerScratch *s, Arena *a, const ModelConfig *c, int B, int T);
    size_t (*kernel_scratch_floats)(const ModelConfig *c, int B, int T);
    // out (N, d) from the normed block input x (N, d).
    void (*forward)(float *out, MixerSaved *saved, const float *x, const MixerWeights *w, const ModelConfig *c,
                    int B, int T, float *kscratch);
    // Accumulates dx (N, d) and the weight gradients gw from dout (N, d).
    void (*backward)(float *dx, MixerWeights *gw, const float *dout, const float *x, const MixerSaved *saved,
                     const MixerWeights *w, const ModelConfig *c, int B, int T, MixerScratch *scratch,
                     float *kscratch);
    // Decoding one sequence: state floats per layer (zeroed = empty), step scratch floats, and one token
    // at 0-based position pos: out (d) from x (d).
    size_t (*state_floats)(const ModelConfig *c, int max_len);
    size_t (*step_tmp_floats)(const ModelConfig *c, int max_len);
    void (*step)(float *out, float *state, int64_t pos, const float *x, const MixerWeights *w, const ModelConfig *c,
                 int max_len, float *tmp);
    // Forward FLOPs per token of the sequence mixing itself (not the projections), at length T.
    double (*mixing_flops)(const ModelConfig *c, int T);
} MixerFamily;

extern const MixerFamily MIXER_ATTENTION, MIXER_MAMBA2, MIXER_GDN;

// The family of layer `layer` of a model (one switch on the model type, without default).
const MixerFamily *mixer_family(const ModelConfig *c, int layer);

#endif
