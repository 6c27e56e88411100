// model.h — model assembly for all five architectures: the named parameter table (tensor names exactly
// as the paper's PyTorch models), the flat parameter/gradient buffers, the activation arena, the paper's
// initialisation, forward + backward of the whole network, and step-by-step decoding.
//
// Memory: params, grads (and the optimizer's moments, owned by the trainer) are each ONE flat float
// buffer; per-tensor views are computed from the table. Activations live in one arena sized for
// (B, T) when the model is built; nothing is allocated in the training step.
#ifndef LL_MODEL_H
#define LL_MODEL_H

#include "config.h"
#include "mixer.h"
#include "param_table.h"

typedef struct {
    float *embed;          // (V, d)
    BlockWeights *layers;  // [L]
    float *final_norm;     // (d)
    float *lm_head;        // (V, d) (== embed when tied)
} Weights;

typedef struct Model Model;

// Builds the parameter table and allocates params + grads; activations for batches up to (B, T).
// Returns NULL with a message if the sizes are impossible.
Model *model_create(const ModelConfig *cfg, int B, int T, Err *err);
// The same with activation recomputation when `recompute`: the arena keeps every block's input (N, d) and
// ONE block's activations, which the backward rebuilds block by block from the input (the forward once
// more, less the MLP's down projection). Losses and gradients are bit-identical to model_create's.
Model *model_create_recompute(const ModelConfig *cfg, int B, int T, bool recompute, Err *err);
void model_free(Model *m);

// What model_create(cfg, B, T) would allocate, in floats, without allocating it: the flat parameters
// (the gradients are as many again) and the activation arena.
void model_memory_floats(const ModelConfig *cfg, int B, int T, bool recompute, size_t *param_floats,
                         size_t *activation_floats);

// The tensor table of a config without allocating the model (e.g. to count the paper's 800M models).
// Returns a malloc'd array of *n entries (tied embeddings: lm_head.weight aliases the embedding), or NULL
// with *n = 0 for an invalid model type.
ParamInfo *model_table(const ModelConfig *cfg, int *n);

const ModelConfig *model_config(const Model *m);
int model_num_tensors(const Model *m);
const ParamInfo *model_tensor(const Model *m, int i);
size_t model_num_params(const Model *m);           // floats in the flat buffer
float *model_params(Model *m);                     // flat (numel)
float *model_grads(Model *m);                      // flat (numel)
const Weights *model_weights(const Model *m);
const Weights *model_grad_weights(const Model *m);
size_t model_activation_bytes(const Model *m);    // the whole activation arena (saved + scratch)
bool model_recomputes(const Model *m);

// The paper's initialisation (doc/architectures.md §2.3, §3.2, §5.2), drawn from a seeded RNG.
void model_init(Model *m, uint64_t seed);

// Forward + backward on one micro-batch. inputs/targets (B, T) with B*T <= the built size, targets < 0
// ignored. Gradients of (grad_scale * summed token loss) are ACCUMULATED into model_grads (call
// model_zero_grad first). Returns the summed loss over counted targets, *count = number of counted targets.
double model_forward_backward(Model *m, const int32_t *inputs, const int32_t *targets, int B, int T,
                              float grad_scale, int64_t *count);
// Forward only (evaluation): summed loss and count; token_loss (B, T) receives each position's loss
// (0 where the target is ignored) unless NULL.
double model_forward_loss(Model *m, const int32_t *inputs, const int32_t *targets, int B, int T, int64_t *count,
                          float *token_loss);
// As model_forward_loss, plus pred (B, T): the most likely next token at every position (accuracy).
double model_forward_eval(Model *m, const int32_t *inputs, const int32_t *targets, int B, int T, int64_t *count,
                          float *token_loss, int32_t *pred);
// Forward only, returning the logits of every position: logits (B, T, V).
void model_forward_logits(Model *m, const int32_t *inputs, int B, int T, float *logits);
void model_zero_grad(Model *m);
// Called by model_forward_backward each time a range [offset, offset+n) of the flat gradient has received
// all of this micro-batch's contributions (lm_head and the final norm, then each layer from the last, then
// the embedding; together every element once), e.g. to start summing it across processes while the
// backward of the layers below runs. fn NULL: no calls.
typedef void (*ModelGradReady)(void *ctx, size_t offset, size_t n);
void model_set_grad_ready(Model *m, ModelGradReady fn, void *ctx);

// Model FLOPs per token of one training step (forward + backward), for MFU reporting, at length T.
double model_flops_per_token(const Model *m, int T);

// Decoding state for one sequence: a KV cache for the Transformer (O(t) memory), the recurrent state for
// Mamba-2 / Gated DeltaNet (O(1)), one state per Fenwick level for the log-linear models (O(log t)).
// max_len is the initial capacity in positions; decode_step doubles it when reached, so there is no
// length limit: past the model's maximum context the log-linear models gain levels, weighted by their
// top λ (see loglinear_step).
typedef struct DecodeState DecodeState;
DecodeState *decode_create(const Model *m, int max_len);
void decode_reset(DecodeState *s);
void decode_free(DecodeState *s);
DecodeState *decode_clone(const DecodeState *s);    // the same sequence so far (e.g. several samples of one prompt)
// Feeds one token at the next position and writes the logits (V) of the next-token distribution.
void decode_step(Model *m, DecodeState *s, int32_t token, float *logits);
int64_t decode_position(const DecodeState *s);      // tokens fed so far
// Bytes the state needs for the tokens fed so far (all layers: KV cache / recurrent / level states).
size_t decode_state_bytes(const DecodeState *s);
// Bytes allocated now: the states at the current capacity plus the step scratch.
size_t decode_allocated_bytes(const DecodeState *s);

#endif
