// block_mlp.c — see block_mlp.h.
#include "block_mlp.h"

#include <stdio.h>
#include <string.h>

#include "linear.h"
#include "swiglu.h"

void mlp_add_tensors(ParamTable *tb, const ModelConfig *c, const char *layer_prefix, MlpWeights *w) {
    const int d = c->hidden_size, I = c->intermediate_size;
    char name[96];
#define NAME(suffix) (snprintf(name, sizeof name, "%s.%s", layer_prefix, suffix), name)
    w->gate_proj = param_add(tb, NAME("mlp.gate_proj.weight"), true, 2, I, d, 0);
    w->up_proj = param_add(tb, NAME("mlp.up_proj.weight"), true, 2, I, d, 0);
    w->down_proj = param_add(tb, NAME("mlp.down_proj.weight"), true, 2, d, I, 0);
#undef NAME
}

void mlp_saved_carve(MlpSaved *s, Arena *a, const ModelConfig *c, int B, int T) {
    const size_t NI = (size_t)B * T * c->intermediate_size;
    s->gate = arena_take(a, NI);
    s->up = arena_take(a, NI);
    s->act = arena_take(a, NI);
}

void mlp_scratch_carve(MlpScratch *s, Arena *a, const ModelConfig *c, int B, int T) {
    const size_t NI = (size_t)B * T * c->intermediate_size;
    s->dact = arena_take(a, NI);
    s->dgate = arena_take(a, NI);
    s->dup = arena_take(a, NI);
}

void mlp_forward(float *out,                 // (N, d)
                 MlpSaved *s,
                 const float *x,             // (N, d) normed block input
                 const MlpWeights *w, const ModelConfig *c, int64_t N) {
    const int d = c->hidden_size, I = c->intermediate_size;
    linear_forward(s->gate, x, w->gate_proj, NULL, N, d, I);
    linear_forward(s->up, x, w->up_proj, NULL, N, d, I);
    swiglu_forward(s->act, s->gate, s->up, N * I);
    if (out) linear_forward(out, s->act, w->down_proj, NULL, N, I, d);
}

void mlp_backward(float *dx,                 // (N, d) +=
                  MlpWeights *gw,
                  const float *dout,         // (N, d)
                  const float *x,            // (N, d)
                  const MlpSaved *s, const MlpWeights *w, const ModelConfig *c, int64_t N, MlpScratch *ms) {
    const int d = c->hidden_size, I = c->intermediate_size;
    const size_t NI = (size_t)N * I;
    zero_floats(ms->dact, NI);
    linear_backward(ms->dact, gw->down_proj, NULL, dout, s->act, w->down_proj, N, I, d);
    zero_floats(ms->dgate, NI);
    zero_floats(ms->dup, NI);
    swiglu_backward(ms->dgate, ms->dup, ms->dact, s->gate, s->up, (int64_t)NI);
    linear_backward(dx, gw->gate_proj, NULL, ms->dgate, x, w->gate_proj, N, d, I);
    linear_backward(dx, gw->up_proj, NULL, ms->dup, x, w->up_proj, N, d, I);
}

size_t mlp_step_tmp_floats(const ModelConfig *c) { return 3 * (size_t)c->intermediate_size; }

void mlp_step(float *out, const float *x, const MlpWeights *w, const ModelConfig *c, float *tmp /*(3I)*/) {
    const int d = c->hidden_size, I = c->intermediate_size;
    float *gate = tmp, *up = tmp + I, *act = tmp + 2 * (size_t)I;
    linear_forward(gate, x, w->gate_proj, NULL, 1, d, I);
    linear_forward(up, x, w->up_proj, NULL, 1, d, I);
    swiglu_forward(act, gate, up, I);
    linear_forward(out, act, w->down_proj, NULL, 1, I, d);
}
