// block_mlp.h — the SwiGLU MLP of every block (fla GatedMLP, doc/architectures.md §3.6):
//     y = W_down (silu(W_gate x) ⊙ W_up x)
// its tensors in the parameter table, its saved activations and backward scratch (in the model's
// activation arena), forward, backward and the one-token decoding step. N = B*T rows.
#ifndef LL_BLOCK_MLP_H
#define LL_BLOCK_MLP_H

#include <stdint.h>

#include "arena.h"
#include "config.h"
#include "mixer.h"
#include "param_table.h"

typedef struct {
    float *gate, *up;   // (N, I) projections
    float *act;         // (N, I) silu(gate) * up
} MlpSaved;
typedef struct {
    float *dact, *dgate, *dup;   // (N, I)
} MlpScratch;

// Appends "<layer_prefix>.mlp.{gate,up,down}_proj.weight" (state_dict order) and aims w at them.
void mlp_add_tensors(ParamTable *tb, const ModelConfig *c, const char *layer_prefix, MlpWeights *w);
void mlp_saved_carve(MlpSaved *s, Arena *a, const ModelConfig *c, int B, int T);
void mlp_scratch_carve(MlpScratch *s, Arena *a, const ModelConfig *c, int B, int T);
// out (N, d) from the normed block input x (N, d); out == NULL computes only the saved tensors s.
void mlp_forward(float *out, MlpSaved *s, const float *x, const MlpWeights *w, const ModelConfig *c, int64_t N);
// Accumulates dx (N, d) and the weight gradients gw from dout (N, d).
void mlp_backward(float *dx, MlpWeights *gw, const float *dout, const float *x, const MlpSaved *s,
                  const MlpWeights *w, const ModelConfig *c, int64_t N, MlpScratch *ms);
// Decoding: scratch floats of mlp_step, and one token: out (d) from x (d).
size_t mlp_step_tmp_floats(const ModelConfig *c);
void mlp_step(float *out, const float *x, const MlpWeights *w, const ModelConfig *c, float *tmp);

#endif
