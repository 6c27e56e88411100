// mixer_gdn_views.h — what the Gated DeltaNet mixer (mixer_gdn.c) saves for its backward, and its
// backward scratch; members of the MixerSaved / MixerScratch unions of mixer.h.
// R = 2·Dk + Dv + 2H projection columns [q | k | v | a | b], Cc = 2·Dk + Dv conv channels [q | k | v],
// Dk = H·dk, Dv = H·dv, Λ = num_levels (log-linear only).
#ifndef LL_MIXER_GDN_VIEWS_H
#define LL_MIXER_GDN_VIEWS_H

typedef struct {
    float *proj;          // (N, R) fused q/k/v/a/b projection
    float *conv_pre;      // (N, Cc) conv output before SiLU
    float *qkv;           // (N, Cc) after SiLU
    float *q, *k;         // (N, H, dk) L2-normalised (q also scaled, plain GDN only)
    float *q_rstd, *k_rstd;  // (N, H)
    float *v;             // (N, H, dv) contiguous copy of the v channels
    float *beta, *g;      // (N, H) write strength σ(b), log-decay −e^{A_log}·softplus(a + dt_bias)
    float *dl, *lam;      // (N, H·Λ) l_proj output and λ = softplus(L ⊙ dl) (log-linear only)
    float *o;             // (N, H, dv) delta-rule output
    float *dn;            // (deltanet_saved_floats) the delta rule's chunk-local forward, for its backward
    float *o_rstd;        // (N, H) per-head RMSNorm
    float *n;             // (N, H, dv) RMSNorm(o) ⊙ o_norm
    float *graw;          // (N, Dv) g_proj output (use_gate only)
    float *gout;          // (N, Dv) input of o_proj: silu(graw) ⊙ n, or n itself without the gate
} GdnSaved;

typedef struct {
    float *dgout, *dn, *dgraw, *d_o;   // (N, Dv)
    float *dq, *dk;                    // (N, H, dk)
    float *dv;                         // (N, H, dv)
    float *dbeta, *dg;                 // (N, H)
    float *dlam, *ddl;                 // (N, H·Λ)
    float *dproj;                      // (N, R)
    float *dqkv;                       // (N, Cc)
} GdnScratch;

#endif
