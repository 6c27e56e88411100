// config.h — model and training configuration, read from JSON with cJSON.
//
// Two file formats are accepted:
//   * ours:  { "model": { "model_type": "transformer" | "mamba2" | "loglinear_mamba2" |
//              "gated_deltanet" | "loglinear_gated_deltanet", ...model keys... },
//              "train": { ...training keys... } }
//   * the paper's HF-style config (configs/flame/*.json, or a checkpoint's config.json): a flat object
//     whose "model_type" is "transformer", "mamba2mlp", "hattention", "gated_deltanet" or
//     "h_gated_deltanet" (also accepted as the "model" section of our format). Our names work there too,
//     except "mamba2", which in a flat HF file means fla's MLP-less Mamba2 and is refused.
// Model keys use the HF names; defaults equal the PyTorch config classes' defaults, so the paper's files
// load to exactly the paper's models. HF bookkeeping keys (architectures, torch_dtype, fuse_*, ...) and
// keys starting with "_" are ignored; keys selecting features we do not implement (residual_in_fp32,
// attn, ...) are accepted only at their default value; any other key is an error with a did-you-mean. Values are type-checked exactly (256.0 is not an integer), and the non-standard JSON
// tokens Infinity/-Infinity/NaN that Python writes are read.
#ifndef LL_CONFIG_H
#define LL_CONFIG_H

#include "common.h"

typedef enum {
    MODEL_TRANSFORMER = 0,
    MODEL_MAMBA2,                    // paper "mamba2mlp": Mamba-2 mixer + SwiGLU MLP per block
    MODEL_LOGLINEAR_MAMBA2,          // paper "hattention"
    MODEL_GATED_DELTANET,            // fla "gated_deltanet"
    MODEL_LOGLINEAR_GATED_DELTANET,  // paper "h_gated_deltanet"
} ModelType;

const char *model_type_name(ModelType t);     // our name, e.g. "loglinear_mamba2"
const char *model_type_hf_name(ModelType t);  // the paper's name, e.g. "hattention"
// Accepts our names and the paper's; false if the name is unknown.
bool model_type_from_name(const char *name, ModelType *t);
bool model_type_is_loglinear(ModelType t);    // loglinear_mamba2, loglinear_gated_deltanet
bool model_type_is_mamba2(ModelType t);       // mamba2, loglinear_mamba2 (Mamba-2 mixer + MLP blocks)
bool model_type_is_gdn(ModelType t);          // gated_deltanet, loglinear_gated_deltanet

// fla GatedMLP width rule: 256*ceil(int(hidden_size*hidden_ratio*2/3)/256) (4096 at d=1536, 2816 at d=1024).
int config_mlp_width(int hidden_size, float hidden_ratio);
// The default num_levels of a log-linear model is levels_needed(max_seq_len) (levels.h).

typedef struct {
    ModelType type;
    int vocab_size;            // V
    int hidden_size;           // d
    int num_layers;            // L ("num_hidden_layers")
    int intermediate_size;     // I of the SwiGLU MLP, resolved: 256*ceil(int(d*hidden_ratio*2/3)/256) unless given
    float hidden_ratio;        // 4 by default
    float initializer_range;   // std of the normal init, 0.006 in the paper
    float norm_eps;            // block/final RMSNorm eps (Transformer/GDN "norm_eps" 1e-6; Mamba "layer_norm_epsilon" 1e-5)
    bool tie_word_embeddings;  // false in the paper
    int max_seq_len;           // maximum context: "max_position_embeddings"; sets the number of λ levels

    // Transformer
    int num_heads;             // H (Transformer, Mamba-2, GDN)
    int num_kv_heads;          // H_kv (defaults to H); H % H_kv == 0
    int head_dim;              // Transformer: d/H (derived). Mamba-2: P. GDN: d_k.
    float rope_theta;          // 10000 default
    bool qkv_bias;             // q/k/v projection biases (q_proj.bias, ...)
    bool qk_norm;              // RMSNorm of the whole q row (H*hd) and k row (Hkv*hd) before RoPE
    int window_size;           // sliding window: key s visible from query t when t − s < window; 0 = none (null)

    // Mamba-2 family (fields of other families are 0/false, except where noted)
    int state_size;            // N
    int n_groups;              // G; H % G == 0
    float expand;              // d_inner = int(expand*d) must equal H*P
    int d_inner;               // derived (Mamba-2 family; 0 otherwise)
    int conv_kernel;           // K (Mamba-2 "conv_kernel", GDN "conv_size")
    bool use_conv_bias;        // Mamba-2: true
    int chunk_size;            // scan chunk (a kernel decomposition: same output up to rounding); default 64; power of two
    float time_step_min, time_step_max, time_step_floor;  // dt_bias init (GDN: fixed 1e-3/0.1/1e-4, no keys)
    float time_step_limit[2];  // Mamba-2 family: dt clamped to [lo, hi]; (0, inf) = no clamp (the default)
    bool use_bias;             // Mamba-2 family: in_proj.bias and out_proj.bias
    bool rescale_prenorm_residual;  // out_proj/down_proj init rescale (Mamba family, GDN; Transformer: false)
    int num_levels;            // Λ for log-linear models: bit_length(max_seq_len-1)+1 (15 for 16384); 0 otherwise

    // Gated DeltaNet family
    float expand_v;            // d_v = int(head_dim*expand_v)
    bool use_gate;
} ModelConfig;

typedef enum { DECAY_MATRICES = 0, DECAY_ALL, DECAY_NONE } DecayMode;

typedef struct {
    char train_data[1024];     // glob of training shards, e.g. "data/tokens/corpus_train_*.bin"
    char val_data[1024];       // glob of validation shards
    char tokenizer[1024];      // decode table written by ./tokenize (for samples); "" = print token ids
    char run_dir[1024];        // checkpoints + log.jsonl go here; default "runs/<config basename>"
    int batch_size;            // B: sequences per micro-batch
    int seq_len;               // T
    int grad_accum;            // micro-batches per optimizer step
    int steps;                 // total optimizer steps
    float lr;                  // peak learning rate
    float min_lr_ratio;        // cosine floor as a fraction of lr (paper: 0.1)
    int warmup_steps;          // linear warmup
    float beta1, beta2, eps, weight_decay;
    DecayMode decay;           // which tensors get weight decay: matrices (ndim>=2), all, none
    float grad_clip;           // global-norm clip; <= 0 disables
    uint64_t seed;
    int eval_every;            // steps between validation passes (0 = only at the end)
    int eval_batches;          // micro-batches per validation pass
    int sample_every;          // steps between text samples (0 = never)
    int sample_tokens;         // tokens generated per sample
    int save_every;            // steps between checkpoints (0 = only at the end)
    int keep_last;             // checkpoints kept in run_dir
    int log_every;             // steps between progress lines
    int max_bad_steps;         // consecutive NaN/inf steps tolerated before the run stops with an error
    int threads;               // OpenMP threads (0 = all cores)
    float target_accuracy;     // stop once the validation accuracy (answer positions) reaches it; 0 = off
    bool recompute;            // activation recomputation: keep block inputs, rebuild the rest in the backward
    float peak_gflops;         // fp32 peak for MFU; 0 = the cached sgemm probe (peak.h)
} TrainConfig;

typedef struct {
    ModelConfig model;
    TrainConfig train;
} Config;

// Defaults of our format for a model type (before any keys are applied).
void model_config_defaults(ModelConfig *m, ModelType t);
void train_config_defaults(TrainConfig *t);

// Loads a config file. `path` is tried as given, then under "configs/" (and, without a ".json" suffix,
// both again with ".json" appended). The file may be our format or a bare HF-style model config (then
// train defaults apply). The model section is fully checked here; train values are type-checked here and
// range-checked by config_validate (call it after the overrides). On error returns false with a message
// naming the file and the key, and leaves *cfg untouched. `resolved_path` (may be NULL) receives the
// path actually opened.
bool config_load(Config *cfg, const char *path, char *resolved_path, size_t resolved_len, Err *err);

// config_load with command-line values for model keys ("hidden_size=64", optional "model." prefix),
// applied as if the file had them, before derived sizes are resolved and the model is checked.
bool config_load_with_model_overrides(Config *cfg, const char *path, const char *const *model_kv, int n_model_kv,
                                      char *resolved_path, size_t resolved_len, Err *err);

// Whether `key` ("hidden_size" or "model.hidden_size") is a model key (for config_load_with_model_overrides).
bool config_is_model_key(const char *key);

// Parses a model section / HF config object given as JSON text (used for checkpoints' config.json too).
// Also accepts our whole-config format (then only its "model" section is read). `origin` names the
// source in error messages. The result is resolved (derived sizes filled in) and checked.
bool model_config_from_json(ModelConfig *m, const char *json_text, const char *origin, Err *err);

// Applies one command-line override "key=value" to the train section (any TrainConfig key; an optional
// "train." prefix is accepted). Model keys go to config_load_with_model_overrides instead.
bool config_override(Config *cfg, const char *key_equals_value, Err *err);

// Whether `key` names something config_override knows (a train key, or a model key it refuses with advice).
bool config_is_override_key(const char *key);

// " (did you mean 'X'?)" for the train key, model key or extra word (e.g. a program option) nearest to
// `word`, or "" when none is close; into hint.
void config_suggest(const char *word, const char *const *extra, size_t n_extra, char *hint, size_t len);

// Cross-checks after all overrides (e.g. seq_len <= max_seq_len, batch sizes > 0). Names the field.
bool config_validate(const Config *cfg, const char *origin, Err *err);

// Writes the model section as an HF-style config.json (model_type = the paper's name, plus the keys the
// paper's PyTorch config classes read) into a malloc'd string; caller frees.
char *model_config_to_hf_json(const ModelConfig *m);

// Writes the whole config (our format) into a malloc'd string; stored with checkpoints for resume.
char *config_to_json(const Config *cfg);

// Field-by-field comparison (e.g. to check a resumed run against its checkpoint). Returns NULL when
// equal, else the config key of the first differing field (e.g. "hidden_size", "lr").
const char *model_config_first_difference(const ModelConfig *a, const ModelConfig *b);
const char *train_config_first_difference(const TrainConfig *a, const TrainConfig *b);

#endif
