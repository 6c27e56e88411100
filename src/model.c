// model.c — see model.h. Assembly only, through the mixer-family table (mixer.h): embeddings, blocks
// (norms, the layer's mixer family, the SwiGLU MLP of block_mlp.c), final norm, LM head, the activation
// arena. It knows no family: the math lives in mixer_*.c, block_mlp.c and the kernels below them.
#include "model.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "block_mlp.h"
#include "lm_head.h"
#include "norm.h"
#include "param_init.h"
#include "rng.h"

// Rows of logits alive at once in the LM head: as many as fit in LM_HEAD_CHUNK_FLOATS (128 MB), in
// multiples of 64, at least 256, at most the batch. Each chunk reads and writes all of dW (V × d: 103 MB
// at V = 50257, d = 512) and runs three sgemms with `rows` as a dimension, so fewer, larger chunks are
// faster (16 threads, d = 512, V = 50257, 4096 rows: the head took half the training step with 256 rows).
#define LM_HEAD_CHUNK_FLOATS ((size_t)32 << 20)

static int lm_head_rows(int vocab, int64_t N) {
    int64_t rows = (int64_t)(LM_HEAD_CHUNK_FLOATS / (size_t)vocab) / 64 * 64;
    const int64_t batch = (N + 63) / 64 * 64;
    if (rows > batch) rows = batch;
    if (rows < 256) rows = 256;
    return (int)rows;
}

typedef struct {
    float *res_in;            // (N, d) residual stream entering the block
    float *h1, *rstd1;        // (N, d), (N)   mixer norm
    MixerSaved mix;
    MixerScratch mix_scratch; // views into the mixers' backward scratch (one region shared by all layers)
    float *res_mid;           // (N, d) residual after the mixer
    float *h2, *rstd2;        // (N, d), (N)   mlp norm
    MlpSaved mlp;
} LayerActs;

struct Model {
    ModelConfig cfg;
    int B, T;                 // the arena holds batches up to B*T tokens
    int head_rows;            // rows per LM-head chunk (lm_head_rows)
    bool recompute;           // acts[l] except res_in share one region; the backward recomputes each block
    ParamInfo *table;
    int ntensors;
    size_t numel;
    float *params, *grads;
    Weights w, gw;

    float *arena;
    size_t arena_floats;
    int32_t *tokens;          // (B*T) copy of the inputs, for the embedding backward
    const MixerFamily **family; // [L] the mixer family of each layer (mixer_family)
    LayerActs *acts;          // [L]
    float *res_final;         // (N, d)
    float *hf, *rstdf;        // (N, d), (N)  final norm
    // backward scratch, shared by all layers
    float *dres;              // (N, d) gradient of the residual stream
    float *dh;                // (N, d) gradient of a norm's output
    MlpScratch mlp_scratch;
    float *kscratch;          // attention / scan / lm-head scratch (max over users)
    size_t *layer_start;      // [L+1] offset of each layer's tensors in the flat buffers; [L] = final norm
    ModelGradReady grad_ready;// called as each range of the gradient is complete (NULL: none)
    void *grad_ready_ctx;
};

// Whether every layer has a mixer family (mixer_family returns NULL only for an invalid model type).
static bool families_implemented(const ModelConfig *c) {
    if (!mixer_family(c, 0)) return false;
    for (int l = 1; l < c->num_layers; l++)
        if (!mixer_family(c, l)) return false;
    return true;
}

// ---------------------------------------------------------------------------------------------------
// Parameter table: names, shapes and order exactly as the paper's PyTorch state_dict (doc/checkpoint-names.md).

// Walks the model's tensors in state_dict order, filling `w` with pointers into tb->base. The names around
// the blocks ("model"/"backbone" prefix, final norm) follow the family of layer 0.
// layer_start (L+1 entries, may be NULL) receives where each layer's tensors begin, then the final norm.
static void build_layout(ParamTable *tb, const ModelConfig *c, Weights *w, size_t *layer_start) {
    const int d = c->hidden_size, V = c->vocab_size;
    const MixerFamily *top = mixer_family(c, 0);
    char name[96];

    snprintf(name, sizeof name, "%s.embeddings.weight", top->prefix);
    w->embed = param_add(tb, name, true, 2, V, d, 0);
    for (int l = 0; l < c->num_layers; l++) {
        BlockWeights *bw = &w->layers[l];
        memset(bw, 0, sizeof *bw);
        if (layer_start) layer_start[l] = tb->used;
        char prefix[64];
        snprintf(prefix, sizeof prefix, "%s.layers.%d", top->prefix, l);
        mixer_family(c, l)->add_tensors(tb, c, l, prefix, bw);   // the two block norms and the mixer
        mlp_add_tensors(tb, c, prefix, &bw->mlp);
    }
    if (layer_start) layer_start[c->num_layers] = tb->used;
    snprintf(name, sizeof name, "%s.%s.weight", top->prefix, top->final_norm);
    w->final_norm = param_add(tb, name, false, 1, d, 0, 0);
    if (c->tie_word_embeddings) {
        // Tied: PyTorch's state_dict still lists lm_head.weight (same data). Alias the embedding's
        // storage so checkpoints carry both keys while the flat buffer holds the tensor once.
        w->lm_head = w->embed;
        param_add_alias(tb, "lm_head.weight", 0);
    } else {
        w->lm_head = param_add(tb, "lm_head.weight", true, 2, V, d, 0);
    }
}

// ---------------------------------------------------------------------------------------------------
// Activation arena.

// Everything a block's backward reads except its input res_in: the norms' outputs, the mixer's and the
// MLP's saved tensors, the residual between them.
static void carve_block(LayerActs *la, Arena *a, const MixerFamily *f, const ModelConfig *c, int B, int T) {
    const size_t N = (size_t)B * T, d = c->hidden_size;
    la->h1 = arena_take(a, N * d);
    la->rstd1 = arena_take(a, N);
    f->saved_carve(&la->mix, a, c, B, T);
    la->res_mid = arena_take(a, N * d);
    la->h2 = arena_take(a, N * d);
    la->rstd2 = arena_take(a, N);
    mlp_saved_carve(&la->mlp, a, c, B, T);
}

static void build_arena(Model *m, Arena *a) {
    const ModelConfig *c = &m->cfg;
    const size_t N = (size_t)m->B * m->T, d = c->hidden_size;
    if (!m->recompute) {
        for (int l = 0; l < c->num_layers; l++) {
            m->acts[l].res_in = arena_take(a, N * d);
            carve_block(&m->acts[l], a, m->family[l], c, m->B, m->T);
        }
    } else {
        // Recomputation: every block's input stays (L·N·d floats); the rest of every block's activations
        // starts at the same place and is rebuilt from res_in by the backward, one block at a time.
        for (int l = 0; l < c->num_layers; l++) m->acts[l].res_in = arena_take(a, N * d);
        const size_t block_base = a->used;
        size_t block_end = block_base;
        for (int l = 0; l < c->num_layers; l++) {
            Arena sub = {.base = a->base, .used = block_base};
            carve_block(&m->acts[l], &sub, m->family[l], c, m->B, m->T);
            block_end = LL_MAX(block_end, sub.used);
        }
        a->used = block_end;
    }
    m->res_final = arena_take(a, N * d);
    m->hf = arena_take(a, N * d);
    m->rstdf = arena_take(a, N);
    m->dres = arena_take(a, N * d);
    m->dh = arena_take(a, N * d);
    // Backward scratch of the mixers and of the MLP: every layout starts at the same place (one layer at a
    // time runs its backward, and its MLP backward ends before its mixer backward starts); the region is
    // as long as the longest layout.
    const size_t scratch_base = a->used;
    Arena sub = {.base = a->base, .used = scratch_base};
    mlp_scratch_carve(&m->mlp_scratch, &sub, c, m->B, m->T);
    size_t scratch_end = sub.used;
    for (int l = 0; l < c->num_layers; l++) {
        sub.used = scratch_base;
        m->family[l]->scratch_carve(&m->acts[l].mix_scratch, &sub, c, m->B, m->T);
        scratch_end = LL_MAX(scratch_end, sub.used);
    }
    a->used = scratch_end;
    // Kernel scratch (attention, scans, LM head), shared: the most any user needs.
    m->head_rows = lm_head_rows(c->vocab_size, (int64_t)m->B * m->T);
    size_t ks = lm_head_scratch_floats(m->head_rows, c->vocab_size);
    for (int l = 0; l < c->num_layers; l++) {
        const size_t need = m->family[l]->kernel_scratch_floats(c, m->B, m->T);
        ks = LL_MAX(ks, need);
    }
    m->kscratch = arena_take(a, ks);
}

Model *model_create(const ModelConfig *cfg, int B, int T, Err *err) {
    return model_create_recompute(cfg, B, T, false, err);
}

Model *model_create_recompute(const ModelConfig *cfg, int B, int T, bool recompute, Err *err) {
    if (!families_implemented(cfg)) {
        err_set(err, "internal: model_type %d has no mixer family", (int)cfg->type);
        return NULL;
    }
    if (B <= 0 || T <= 0) {
        err_set(err, "batch_size and seq_len must be positive (got %d, %d)", B, T);
        return NULL;
    }
    Model *m = xcalloc(1, sizeof *m);
    m->cfg = *cfg;
    m->B = B;
    m->T = T;
    m->recompute = recompute;
    m->family = xcalloc((size_t)LL_MAX(cfg->num_layers, 1), sizeof *m->family);
    for (int l = 0; l < cfg->num_layers; l++) m->family[l] = mixer_family(cfg, l);
    m->w.layers = xcalloc((size_t)cfg->num_layers, sizeof(BlockWeights));
    m->gw.layers = xcalloc((size_t)cfg->num_layers, sizeof(BlockWeights));

    ParamTable count = {0};
    build_layout(&count, cfg, &m->w, NULL);
    m->ntensors = count.n;
    m->numel = count.used;
    m->table = xcalloc((size_t)m->ntensors, sizeof(ParamInfo));
    m->params = xcalloc(m->numel, sizeof(float));
    m->grads = xcalloc(m->numel, sizeof(float));
    m->layer_start = xcalloc((size_t)cfg->num_layers + 1, sizeof(size_t));
    ParamTable tb = {.table = m->table, .base = m->params};
    build_layout(&tb, cfg, &m->w, m->layer_start);
    ParamTable gb = {.base = m->grads};
    build_layout(&gb, cfg, &m->gw, NULL);

    m->acts = xcalloc((size_t)cfg->num_layers, sizeof(LayerActs));
    Arena sizing = {0};
    build_arena(m, &sizing);
    m->arena_floats = sizing.used;
    m->arena = xcalloc(m->arena_floats, sizeof(float));
    Arena real = {.base = m->arena};
    build_arena(m, &real);
    m->tokens = xcalloc((size_t)B * T, sizeof(int32_t));
    return m;
}

void model_memory_floats(const ModelConfig *cfg, int B, int T, bool recompute, size_t *param_floats,
                         size_t *activation_floats) {
    *param_floats = *activation_floats = 0;
    if (!families_implemented(cfg) || B <= 0 || T <= 0) return;
    // The sizing passes of model_create on a model that owns nothing but its small per-layer arrays.
    Model m = {.cfg = *cfg, .B = B, .T = T, .recompute = recompute};
    m.family = xcalloc((size_t)LL_MAX(cfg->num_layers, 1), sizeof *m.family);
    for (int l = 0; l < cfg->num_layers; l++) m.family[l] = mixer_family(cfg, l);
    m.w.layers = xcalloc((size_t)LL_MAX(cfg->num_layers, 1), sizeof(BlockWeights));
    m.acts = xcalloc((size_t)LL_MAX(cfg->num_layers, 1), sizeof(LayerActs));
    ParamTable count = {0};
    build_layout(&count, cfg, &m.w, NULL);
    Arena sizing = {0};
    build_arena(&m, &sizing);
    *param_floats = count.used;
    *activation_floats = sizing.used;
    free(m.family);
    free(m.w.layers);
    free(m.acts);
}

ParamInfo *model_table(const ModelConfig *cfg, int *n) {
    *n = 0;
    if (!families_implemented(cfg)) return NULL;
    Weights w = {.layers = xcalloc((size_t)cfg->num_layers, sizeof(BlockWeights))};
    ParamTable count = {0};
    build_layout(&count, cfg, &w, NULL);
    ParamInfo *table = xcalloc((size_t)count.n, sizeof(ParamInfo));
    ParamTable tb = {.table = table};
    build_layout(&tb, cfg, &w, NULL);
    free(w.layers);
    *n = tb.n;
    return table;
}

void model_free(Model *m) {
    if (!m) return;
    free(m->w.layers);
    free(m->gw.layers);
    free(m->table);
    free(m->params);
    free(m->grads);
    free(m->acts);
    free(m->family);
    free(m->arena);
    free(m->tokens);
    free(m->layer_start);
    free(m);
}

const ModelConfig *model_config(const Model *m) { return &m->cfg; }
int model_num_tensors(const Model *m) { return m->ntensors; }
const ParamInfo *model_tensor(const Model *m, int i) { return &m->table[i]; }
size_t model_num_params(const Model *m) { return m->numel; }
float *model_params(Model *m) { return m->params; }
float *model_grads(Model *m) { return m->grads; }
const Weights *model_weights(const Model *m) { return &m->w; }
const Weights *model_grad_weights(const Model *m) { return &m->gw; }
size_t model_activation_bytes(const Model *m) { return m->arena_floats * sizeof(float); }
void model_set_grad_ready(Model *m, ModelGradReady fn, void *ctx) {
    m->grad_ready = fn;
    m->grad_ready_ctx = ctx;
}

static void grad_ready(Model *m, size_t lo, size_t hi) {
    if (m->grad_ready) m->grad_ready(m->grad_ready_ctx, lo, hi - lo);
}

bool model_recomputes(const Model *m) { return m->recompute; }
void model_zero_grad(Model *m) { zero_floats(m->grads, m->numel); }

// ---------------------------------------------------------------------------------------------------
// Initialisation (doc/architectures.md §2.3): Linear/Conv1d/Embedding N(0, σ²), biases 0, norms 1, then each
// family's own rules (mixer.h: init); under rescale_prenorm_residual (the Mamba family and GDN; fla's
// Transformer has none) the MLP's down_proj is re-drawn kaiming-uniform(√5) = U(±1/√fan_in) and divided
// by √(2·num_layers), right after the layer's mixer (the RNG draw order fixes the weights).

void model_init(Model *m, uint64_t seed) {
    const ModelConfig *c = &m->cfg;
    const int d = c->hidden_size, I = c->intermediate_size;
    const float std = c->initializer_range;
    Rng r;
    rng_seed(&r, seed);
    memset(m->params, 0, m->numel * sizeof(float));   // biases = 0
    // Every linear/conv/embedding weight first (table order), then the special rules overwrite.
    for (int i = 0; i < m->ntensors; i++) {
        const ParamInfo *pi = &m->table[i];
        if (pi->decay && !(c->tie_word_embeddings && strcmp(pi->name, "lm_head.weight") == 0))
            init_normal(m->params + pi->offset, pi->numel, std, &r);
    }
    const float divisor = sqrtf(2.0f * (float)c->num_layers);
    for (int l = 0; l < c->num_layers; l++) {
        BlockWeights *w = &m->w.layers[l];
        init_const(w->mixer_norm, d, 1.0f);
        init_const(w->mlp_norm, d, 1.0f);
        m->family[l]->init(&w->mix, c, &r);
        if (c->rescale_prenorm_residual) init_rescaled_uniform(w->mlp.down_proj, d, I, divisor, &r);
    }
    init_const(m->w.final_norm, d, 1.0f);
}

// ---------------------------------------------------------------------------------------------------
// Forward / backward.

// Block l's forward from its input acts[l].res_in: x = r + Mixer(Norm(r)); y = x + MLP(Norm(x)) into `next`
// (N, d), or, with next == NULL (recomputation in the backward), only the activations the backward reads.
static void block_forward(Model *m, int l, float *next, int B, int T) {
    const ModelConfig *c = &m->cfg;
    const int d = c->hidden_size;
    const int64_t N = (int64_t)B * T;
    LayerActs *a = &m->acts[l];
    const BlockWeights *w = &m->w.layers[l];
    rmsnorm_forward(a->h1, a->rstd1, a->res_in, w->mixer_norm, N, d, c->norm_eps);
    m->family[l]->forward(a->res_mid, &a->mix, a->h1, &w->mix, c, B, T, m->kscratch);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < N * d; i++) a->res_mid[i] += a->res_in[i];
    rmsnorm_forward(a->h2, a->rstd2, a->res_mid, w->mlp_norm, N, d, c->norm_eps);
    mlp_forward(next, &a->mlp, a->h2, &w->mlp, c, N);
    if (!next) return;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < N * d; i++) next[i] += a->res_mid[i];
}

// Runs the network on (B, T) tokens up to the final norm (m->hf).
static void forward_body(Model *m, const int32_t *inputs, int B, int T) {
    const ModelConfig *c = &m->cfg;
    const int d = c->hidden_size, L = c->num_layers;
    const int64_t N = (int64_t)B * T;
    memcpy(m->tokens, inputs, (size_t)N * sizeof(int32_t));
    float *res = L > 0 ? m->acts[0].res_in : m->res_final;
    embedding_forward(res, inputs, m->w.embed, N, d);
    for (int l = 0; l < L; l++) block_forward(m, l, l + 1 < L ? m->acts[l + 1].res_in : m->res_final, B, T);
    rmsnorm_forward(m->hf, m->rstdf, m->res_final, m->w.final_norm, N, d, c->norm_eps);
}

// The scan kernels size their per-chunk buffers for B x ceil(T / chunk) chunk rows, so a batch may be
// smaller in both dimensions but not reshaped (B' > B with B'T' <= BT can need more chunks).
static void check_batch(const Model *m, int B, int T) {
    if (B > m->B || T > m->T)
        die("internal: batch (%d, %d) exceeds the model's activation arena (%d, %d)", B, T, m->B, m->T);
}

double model_forward_loss(Model *m, const int32_t *inputs, const int32_t *targets, int B, int T, int64_t *count,
                          float *token_loss) {
    return model_forward_eval(m, inputs, targets, B, T, count, token_loss, NULL);
}

double model_forward_eval(Model *m, const int32_t *inputs, const int32_t *targets, int B, int T, int64_t *count,
                          float *token_loss, int32_t *pred) {
    check_batch(m, B, T);
    forward_body(m, inputs, B, T);
    const int64_t N = (int64_t)B * T;
    const double loss = lm_head_loss(NULL, NULL, count, token_loss, m->hf, m->w.lm_head, targets, N,
                                     m->cfg.hidden_size, m->cfg.vocab_size, 0.0f, m->kscratch, m->head_rows);
    if (pred)
        lm_head_argmax(pred, m->hf, m->w.lm_head, N, m->cfg.hidden_size, m->cfg.vocab_size, m->kscratch,
                       m->head_rows);
    return loss;
}

void model_forward_logits(Model *m, const int32_t *inputs, int B, int T, float *logits) {
    check_batch(m, B, T);
    forward_body(m, inputs, B, T);
    const int64_t N = (int64_t)B * T;
    const int V = m->cfg.vocab_size, d = m->cfg.hidden_size;
    for (int64_t i = 0; i < N; i++) lm_head_logits(logits + i * V, m->hf + i * d, m->w.lm_head, d, V);
}

double model_forward_backward(Model *m, const int32_t *inputs, const int32_t *targets, int B, int T,
                              float grad_scale, int64_t *count) {
    check_batch(m, B, T);
    const ModelConfig *c = &m->cfg;
    const int d = c->hidden_size, L = c->num_layers;
    const int64_t N = (int64_t)B * T;
    forward_body(m, inputs, B, T);
    // Loss and its gradient w.r.t. the final norm output, chunked over rows (no B×T×V logits).
    zero_floats(m->dh, (size_t)N * d);
    double loss = lm_head_loss(m->dh, m->gw.lm_head, count, NULL, m->hf, m->w.lm_head, targets, N, d, c->vocab_size,
                               grad_scale, m->kscratch, m->head_rows);
    zero_floats(m->dres, (size_t)N * d);
    rmsnorm_backward(m->dres, m->gw.final_norm, m->dh, m->res_final, m->w.final_norm, m->rstdf, N, d);
    grad_ready(m, m->layer_start[L], m->numel);   // final norm and an untied lm_head
    for (int l = L - 1; l >= 0; l--) {
        LayerActs *a = &m->acts[l];
        const BlockWeights *w = &m->w.layers[l];
        BlockWeights *gw = &m->gw.layers[l];
        // Recomputation: the shared region still holds the last block's activations from the forward;
        // every other block's are rebuilt from its input, by the same code, so they are the same bytes.
        if (m->recompute && l < L - 1) block_forward(m, l, NULL, B, T);
        // y = x + MLP(Norm(x)): dres already is d(y) = d(x) through the skip; add the MLP path.
        zero_floats(m->dh, (size_t)N * d);
        mlp_backward(m->dh, &gw->mlp, m->dres, a->h2, &a->mlp, &w->mlp, c, N, &m->mlp_scratch);
        rmsnorm_backward(m->dres, gw->mlp_norm, m->dh, a->res_mid, w->mlp_norm, a->rstd2, N, d);
        // x = r + Mixer(Norm(r))
        zero_floats(m->dh, (size_t)N * d);
        m->family[l]->backward(m->dh, &gw->mix, m->dres, a->h1, &a->mix, &w->mix, c, B, T, &a->mix_scratch,
                               m->kscratch);
        rmsnorm_backward(m->dres, gw->mixer_norm, m->dh, a->res_in, w->mixer_norm, a->rstd1, N, d);
        grad_ready(m, m->layer_start[l], m->layer_start[l + 1]);
    }
    embedding_backward(m->gw.embed, m->tokens, m->dres, N, d);
    grad_ready(m, 0, m->layer_start[0]);          // the embedding (and a tied lm_head)
    return loss;
}

double model_flops_per_token(const Model *m, int T) {
    // 6 FLOPs per matmul weight per token (2 forward + 4 backward), plus the sequence mixing itself,
    // counted at its causal (useful) size. Recomputation in the backward is not counted (as usual for MFU).
    const ModelConfig *c = &m->cfg;
    double matmul_params = 0;
    for (int i = 0; i < m->ntensors; i++) {
        const ParamInfo *pi = &m->table[i];
        if (pi->ndim == 2 && strstr(pi->name, "embeddings") == NULL) matmul_params += (double)pi->numel;
    }
    if (c->tie_word_embeddings) matmul_params += (double)c->vocab_size * c->hidden_size;
    double mixing = 0;   // forward FLOPs per token, summed over the layers (integers: exact in double)
    for (int l = 0; l < c->num_layers; l++) mixing += m->family[l]->mixing_flops(c, T);
    return 6.0 * matmul_params + 3.0 * mixing;
}

// ---------------------------------------------------------------------------------------------------
// Decoding.

struct DecodeState {
    const Model *m;
    int max_len;              // positions the states hold now; doubled when decoding reaches it
    int64_t pos;
    float *states;            // per layer: per_layer floats (the most any layer's family needs)
    size_t per_layer;
    float *x, *h, *out;       // (d)
    float *tmp;               // mixer/mlp step scratch
};

// Floats of layer l's state, and the most step scratch of any layer, for max_len positions.
static size_t layer_state_floats(const Model *m, int l, int max_len) {
    return m->family[l]->state_floats(&m->cfg, max_len);
}
static size_t step_tmp_floats(const Model *m, int max_len) {
    size_t tmp = mlp_step_tmp_floats(&m->cfg);
    for (int l = 0; l < m->cfg.num_layers; l++) tmp = LL_MAX(tmp, m->family[l]->step_tmp_floats(&m->cfg, max_len));
    return tmp;
}

// (Re)allocates the states for max_len positions, keeping what they hold: every family's state for a
// longer length extends the shorter one at its end (a longer KV cache, more Fenwick levels).
static void decode_reserve(DecodeState *s, int max_len) {
    const Model *m = s->m;
    const int L = m->cfg.num_layers;
    size_t per_layer = 0;
    for (int l = 0; l < L; l++) per_layer = LL_MAX(per_layer, layer_state_floats(m, l, max_len));
    float *states = xcalloc(per_layer * (size_t)L, sizeof(float));
    if (s->states)
        for (int l = 0; l < L; l++)
            memcpy(states + (size_t)l * per_layer, s->states + (size_t)l * s->per_layer,
                   layer_state_floats(m, l, s->max_len) * sizeof(float));
    free(s->states);
    free(s->tmp);
    s->states = states;
    s->per_layer = per_layer;
    s->tmp = xcalloc(step_tmp_floats(m, max_len), sizeof(float));
    s->max_len = max_len;
}

DecodeState *decode_create(const Model *m, int max_len) {
    const ModelConfig *c = &m->cfg;
    DecodeState *s = xcalloc(1, sizeof *s);
    s->m = m;
    decode_reserve(s, LL_MAX(max_len, 1));
    s->x = xcalloc((size_t)c->hidden_size, sizeof(float));
    s->h = xcalloc((size_t)c->hidden_size, sizeof(float));
    s->out = xcalloc((size_t)c->hidden_size, sizeof(float));
    return s;
}

void decode_reset(DecodeState *s) {
    s->pos = 0;
    memset(s->states, 0, s->per_layer * (size_t)s->m->cfg.num_layers * sizeof(float));
}

void decode_free(DecodeState *s) {
    if (!s) return;
    free(s->states);
    free(s->x);
    free(s->h);
    free(s->out);
    free(s->tmp);
    free(s);
}

DecodeState *decode_clone(const DecodeState *src) {
    DecodeState *s = decode_create(src->m, src->max_len);
    memcpy(s->states, src->states, src->per_layer * (size_t)src->m->cfg.num_layers * sizeof(float));
    s->pos = src->pos;
    return s;
}

int64_t decode_position(const DecodeState *s) { return s->pos; }

size_t decode_state_bytes(const DecodeState *s) {
    size_t floats = 0;
    for (int l = 0; l < s->m->cfg.num_layers; l++) floats += layer_state_floats(s->m, l, (int)LL_MAX(s->pos, 1));
    return floats * sizeof(float);
}

size_t decode_allocated_bytes(const DecodeState *s) {
    return (s->per_layer * (size_t)s->m->cfg.num_layers + step_tmp_floats(s->m, s->max_len)) * sizeof(float);
}

void decode_step(Model *m, DecodeState *s, int32_t token, float *logits) {
    const ModelConfig *c = &m->cfg;
    const int d = c->hidden_size;
    if (s->pos >= s->max_len) {
        if (s->max_len > INT_MAX / 2) die("decode: more than %d positions", INT_MAX / 2);
        decode_reserve(s, 2 * s->max_len);
    }
    embedding_forward(s->x, &token, m->w.embed, 1, d);
    float rstd;
    for (int l = 0; l < c->num_layers; l++) {
        const BlockWeights *w = &m->w.layers[l];
        float *state = s->states + (size_t)l * s->per_layer;
        rmsnorm_forward(s->h, &rstd, s->x, w->mixer_norm, 1, d, c->norm_eps);
        m->family[l]->step(s->out, state, s->pos, s->h, &w->mix, c, s->max_len, s->tmp);
        for (int i = 0; i < d; i++) s->x[i] += s->out[i];
        rmsnorm_forward(s->h, &rstd, s->x, w->mlp_norm, 1, d, c->norm_eps);
        mlp_step(s->out, s->h, &w->mlp, c, s->tmp);
        for (int i = 0; i < d; i++) s->x[i] += s->out[i];
    }
    rmsnorm_forward(s->h, &rstd, s->x, m->w.final_norm, 1, d, c->norm_eps);
    lm_head_logits(logits, s->h, m->w.lm_head, d, c->vocab_size);
    s->pos++;
}
