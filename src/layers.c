// layers.c — dispatch from the model type to its mixer family (attention or Mamba-2).
#include "layers.h"

#include "attention.h"

static bool uses_attention(const ModelConfig *c) { return c->type == MODEL_TRANSFORMER; }

void mixer_saved_carve(MixerSaved *s, Arena *a, const ModelConfig *c, int B, int T) {
    if (uses_attention(c)) attn_saved_carve(&s->attn, a, c, B, T);
    else mamba2_saved_carve(&s->mamba, a, c, B, T);
}

void mixer_scratch_carve(MixerScratch *s, Arena *a, const ModelConfig *c, int B, int T) {
    if (uses_attention(c)) attn_scratch_carve(s, a, c, B, T);
    else mamba2_scratch_carve(s, a, c, B, T);
}

size_t layers_kernel_scratch_floats(const ModelConfig *c, int B, int T) {
    if (uses_attention(c)) return attention_scratch_floats(B, T, c->num_heads, c->head_dim);
    return mamba2_kernel_scratch_floats(c, B, T);
}

size_t mixer_state_floats(const ModelConfig *c, int max_len) {
    return uses_attention(c) ? attn_state_floats(c, max_len) : mamba2_state_floats(c);
}

size_t mixer_step_tmp_floats(const ModelConfig *c, int max_len) {
    return uses_attention(c) ? attn_step_tmp_floats(c, max_len) : mamba2_step_tmp_floats(c);
}
