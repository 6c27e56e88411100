// config.c — model and training configuration: strict JSON reading (every key known, every value
// type-checked, impossible sizes rejected with the key named), defaults equal to the paper's PyTorch
// config classes, and writers for our format and for the paper's HF-style config.json.
#include "config.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "json_strict.h"
#include "levels.h"
#include "mqar.h"

// ---------------------------------------------------------------------------------------------------
// Model types

#define N_MODEL_TYPES 5
static const char *const OUR_NAMES[N_MODEL_TYPES] = {
    "transformer", "mamba2", "loglinear_mamba2", "gated_deltanet", "loglinear_gated_deltanet"};
static const char *const HF_NAMES[N_MODEL_TYPES] = {
    "transformer", "mamba2mlp", "hattention", "gated_deltanet", "h_gated_deltanet"};
static const char *const HF_ARCH[N_MODEL_TYPES] = {
    "TransformerForCausalLM", "Mamba2ForCausalLM", "HAttentionForCausalLM", "GatedDeltaNetForCausalLM",
    "HGatedDeltaNetForCausalLM"};

const char *model_type_name(ModelType t) { return (unsigned)t < N_MODEL_TYPES ? OUR_NAMES[t] : "?"; }
const char *model_type_hf_name(ModelType t) { return (unsigned)t < N_MODEL_TYPES ? HF_NAMES[t] : "?"; }

bool model_type_from_name(const char *name, ModelType *t) {
    for (int i = 0; i < N_MODEL_TYPES; i++) {
        if (strcmp(name, OUR_NAMES[i]) == 0 || strcmp(name, HF_NAMES[i]) == 0) {
            *t = (ModelType)i;
            return true;
        }
    }
    return false;
}

bool model_type_is_loglinear(ModelType t) {
    return t == MODEL_LOGLINEAR_MAMBA2 || t == MODEL_LOGLINEAR_GATED_DELTANET;
}
bool model_type_is_mamba2(ModelType t) { return t == MODEL_MAMBA2 || t == MODEL_LOGLINEAR_MAMBA2; }
bool model_type_is_gdn(ModelType t) {
    return t == MODEL_GATED_DELTANET || t == MODEL_LOGLINEAR_GATED_DELTANET;
}

int config_mlp_width(int hidden_size, float hidden_ratio) {
    // Python: int(hidden_size * hidden_ratio * 2 / 3), evaluated left to right in double, then rounded
    // up to a multiple of 256 with integer arithmetic.
    double raw = (double)hidden_size * (double)hidden_ratio * 2.0 / 3.0;
    if (!(raw >= 0) || raw > (double)INT_MAX - 256) return -1;
    int64_t i = (int64_t)raw;
    return (int)(256 * ((i + 255) / 256));
}

// ---------------------------------------------------------------------------------------------------
// Defaults (= the PyTorch config classes' defaults, doc/checkpoint-names.md §7)

static void resolve_derived(ModelConfig *m, bool kv_given, bool inter_given, bool hd_given, bool levels_given) {
    if (m->type == MODEL_TRANSFORMER) {
        if (!kv_given) m->num_kv_heads = m->num_heads;
        // head_dim is not a TransformerConfig key: always d/H. A given value is kept so the check can
        // report a mismatch instead of silently replacing it.
        if (!hd_given && m->num_heads > 0) m->head_dim = m->hidden_size / m->num_heads;
    } else {
        m->num_kv_heads = m->num_heads;
    }
    if (!inter_given) m->intermediate_size = config_mlp_width(m->hidden_size, m->hidden_ratio);
    if (model_type_is_mamba2(m->type)) {
        double di = (double)m->expand * (double)m->hidden_size;
        m->d_inner = (di >= 0 && di < (double)INT_MAX) ? (int)di : -1;  // Python int() truncates
    } else {
        m->d_inner = 0;
    }
    if (model_type_is_loglinear(m->type)) {
        if (!levels_given) m->num_levels = levels_needed(m->max_seq_len);
    } else {
        m->num_levels = 0;
    }
}

void model_config_defaults(ModelConfig *m, ModelType t) {
    memset(m, 0, sizeof *m);  // also zeroes padding, and the fields other families do not use
    m->type = t;
    m->vocab_size = 32000;
    m->hidden_size = 2048;
    m->hidden_ratio = 4.0f;
    m->initializer_range = 0.006f;
    m->tie_word_embeddings = false;
    if (t == MODEL_TRANSFORMER) {          // fla TransformerConfig
        m->num_layers = 24;
        m->num_heads = 32;
        m->rope_theta = 10000.0f;
        m->max_seq_len = 2048;
        m->norm_eps = 1e-6f;
        m->rescale_prenorm_residual = false;  // fla Transformer _init_weights: no rescale
    } else if (model_type_is_mamba2(t)) {  // fla Mamba2Config (inherited by Mamba2MLPConfig/HAttentionConfig)
        m->num_layers = 48;
        m->num_heads = 64;
        m->head_dim = 64;
        m->state_size = 128;
        m->n_groups = 1;
        m->expand = 2.0f;
        m->conv_kernel = 4;
        m->use_conv_bias = true;
        m->norm_eps = 1e-5f;               // "layer_norm_epsilon"
        m->initializer_range = 0.1f;       // the paper's JSONs override this to 0.006
        m->time_step_min = 1e-3f;
        m->time_step_max = 0.1f;
        m->time_step_floor = 1e-4f;
        m->time_step_limit[0] = 0.0f;      // HF: (0.0, float("inf")), no clamp
        m->time_step_limit[1] = INFINITY;
        m->rescale_prenorm_residual = true;
        // chunk_size only decomposes the scan (the output is the same up to rounding), so the default is our
        // fastest, 64: at T = 2048 the SSD runs ~3x faster than with mamba_ssm's (GPU) default 256 on a
        // 16-core Xeon and ~1.15x on an AMD EPYC. The value written to config.json (64) is valid for the
        // PyTorch kernels too, and the paper's log-linear kernel uses 64 whatever chunk_size says.
        m->chunk_size = 64;
        // Mamba2Config has no max_position_embeddings; the paper trains at 16384 and HAttention hard-codes
        // MAX_SEQUENCE_LENGTH = 16384 (15 levels). Use the same for plain Mamba-2.
        m->max_seq_len = 16384;
    } else {                               // fla GatedDeltaNetConfig (= HGatedDeltaNetConfig)
        m->num_layers = 21;
        m->num_heads = 6;
        m->head_dim = 256;
        m->expand_v = 2.0f;
        m->use_gate = true;
        m->conv_kernel = 4;                // "conv_size"
        m->norm_eps = 1e-6f;
        m->chunk_size = 64;                // hard-coded in fla's chunk kernels
        m->time_step_min = 1e-3f;          // the GDN layer hard-codes the same dt_bias init range
        m->time_step_max = 0.1f;
        m->time_step_floor = 1e-4f;
        m->rescale_prenorm_residual = true;  // prenorm_residual_strategy='rescale' at the paper's fla pin
        // GatedDeltaNetConfig defaults to 2048; the log-linear class hard-codes 16384 (15 levels).
        m->max_seq_len = t == MODEL_LOGLINEAR_GATED_DELTANET ? 16384 : 2048;
    }
    resolve_derived(m, false, false, false, false);
}

void train_config_defaults(TrainConfig *t) {
    memset(t, 0, sizeof *t);
    snprintf(t->train_data, sizeof t->train_data, "%s", "data/tokens/corpus_train_*.bin");
    snprintf(t->val_data, sizeof t->val_data, "%s", "data/tokens/corpus_val_*.bin");
    snprintf(t->tokenizer, sizeof t->tokenizer, "%s", "data/tokens/corpus.tok");
    t->run_dir[0] = '\0';  // the trainer fills "runs/<config basename>"
    t->batch_size = 8;
    t->seq_len = 256;
    t->grad_accum = 1;
    t->steps = 1000;
    t->lr = 1e-3f;
    t->min_lr_ratio = 0.1f;
    t->warmup_steps = 100;
    t->beta1 = 0.9f;
    t->beta2 = 0.95f;
    t->eps = 1e-8f;
    t->weight_decay = 0.1f;
    t->decay = DECAY_MATRICES;
    t->grad_clip = 1.0f;
    t->seed = 42;
    t->eval_every = 100;
    t->eval_batches = 20;
    t->sample_every = 200;
    t->sample_tokens = 64;
    t->save_every = 500;
    t->keep_last = 3;
    t->log_every = 1;
    t->max_bad_steps = 10;
    t->threads = 0;
    t->target_accuracy = 0.0f;
}

// ---------------------------------------------------------------------------------------------------
// Small text utilities

// Shortest "%g" text that reads back as exactly this float (0.006f -> "0.006", not 0.006000000052).
static void format_float(char *buf, size_t len, float v) {
    if (isnan(v)) { snprintf(buf, len, "NaN"); return; }
    if (isinf(v)) { snprintf(buf, len, v > 0 ? "Infinity" : "-Infinity"); return; }
    if (v == floorf(v) && fabsf(v) < 1e15f) { snprintf(buf, len, "%.0f", (double)v); return; }  // 10000, not 1e+04
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(buf, len, "%.*g", prec, (double)v);
        if ((float)strtod(buf, NULL) == v) return;
    }
}

static bool float_differs(float a, float b) { return a != b && !(isnan(a) && isnan(b)); }


// ---------------------------------------------------------------------------------------------------
// Model keys

enum { TM_T = 1u << MODEL_TRANSFORMER, TM_M = 1u << MODEL_MAMBA2, TM_LM = 1u << MODEL_LOGLINEAR_MAMBA2,
       TM_G = 1u << MODEL_GATED_DELTANET, TM_LG = 1u << MODEL_LOGLINEAR_GATED_DELTANET };
#define TM_ALL (TM_T | TM_M | TM_LM | TM_G | TM_LG)
#define TM_MAMBA (TM_M | TM_LM)
#define TM_GDN (TM_G | TM_LG)
#define TM_LOGLIN (TM_LM | TM_LG)

typedef enum { MK_INT, MK_INT_OR_NULL, MK_FLOAT, MK_BOOL, MK_FLOAT_PAIR } ModelKeyKind;

typedef struct {
    const char *name;
    ModelKeyKind kind;
    unsigned types;   // model types that read the key
    size_t off;       // field in ModelConfig
    const char *alias;  // another name for the same field (checked for agreement), or NULL
} ModelKey;

#define MOFF(f) offsetof(ModelConfig, f)
static const ModelKey MODEL_KEYS[] = {
    {"vocab_size", MK_INT, TM_ALL, MOFF(vocab_size), NULL},
    {"hidden_size", MK_INT, TM_ALL, MOFF(hidden_size), NULL},
    {"num_hidden_layers", MK_INT, TM_ALL, MOFF(num_layers), NULL},
    {"num_heads", MK_INT, TM_ALL, MOFF(num_heads), NULL},
    {"num_kv_heads", MK_INT_OR_NULL, TM_T, MOFF(num_kv_heads), NULL},
    {"intermediate_size", MK_INT_OR_NULL, TM_ALL, MOFF(intermediate_size), NULL},
    {"hidden_ratio", MK_FLOAT, TM_ALL, MOFF(hidden_ratio), NULL},
    {"rope_theta", MK_FLOAT, TM_T, MOFF(rope_theta), NULL},
    {"qkv_bias", MK_BOOL, TM_T, MOFF(qkv_bias), NULL},
    {"qk_norm", MK_BOOL, TM_T, MOFF(qk_norm), NULL},
    {"window_size", MK_INT_OR_NULL, TM_T, MOFF(window_size), NULL},
    {"max_position_embeddings", MK_INT, TM_ALL, MOFF(max_seq_len), NULL},
    {"norm_eps", MK_FLOAT, TM_ALL, MOFF(norm_eps), "layer_norm_epsilon"},
    {"layer_norm_epsilon", MK_FLOAT, TM_ALL, MOFF(norm_eps), "norm_eps"},
    {"initializer_range", MK_FLOAT, TM_ALL, MOFF(initializer_range), NULL},
    {"tie_word_embeddings", MK_BOOL, TM_ALL, MOFF(tie_word_embeddings), NULL},
    {"head_dim", MK_INT, TM_ALL, MOFF(head_dim), NULL},
    {"state_size", MK_INT, TM_MAMBA, MOFF(state_size), NULL},
    {"n_groups", MK_INT, TM_MAMBA, MOFF(n_groups), NULL},
    {"expand", MK_FLOAT, TM_MAMBA, MOFF(expand), NULL},
    {"conv_kernel", MK_INT, TM_MAMBA | TM_GDN, MOFF(conv_kernel), "conv_size"},
    {"conv_size", MK_INT, TM_MAMBA | TM_GDN, MOFF(conv_kernel), "conv_kernel"},
    {"use_conv_bias", MK_BOOL, TM_MAMBA, MOFF(use_conv_bias), NULL},
    {"chunk_size", MK_INT, TM_MAMBA | TM_GDN, MOFF(chunk_size), NULL},
    {"time_step_min", MK_FLOAT, TM_MAMBA, MOFF(time_step_min), NULL},
    {"time_step_max", MK_FLOAT, TM_MAMBA, MOFF(time_step_max), NULL},
    {"time_step_floor", MK_FLOAT, TM_MAMBA, MOFF(time_step_floor), NULL},
    {"time_step_limit", MK_FLOAT_PAIR, TM_MAMBA, MOFF(time_step_limit), NULL},
    {"use_bias", MK_BOOL, TM_MAMBA, MOFF(use_bias), NULL},
    {"rescale_prenorm_residual", MK_BOOL, TM_MAMBA | TM_GDN, MOFF(rescale_prenorm_residual), NULL},
    {"expand_v", MK_FLOAT, TM_GDN, MOFF(expand_v), NULL},
    {"use_gate", MK_BOOL, TM_GDN, MOFF(use_gate), NULL},
    {"num_levels", MK_INT, TM_LOGLIN, MOFF(num_levels), NULL},
};
#define N_MODEL_KEYS (sizeof MODEL_KEYS / sizeof MODEL_KEYS[0])

// Keys the paper's classes accept but that do not change the model: bookkeeping, kernel-fusion flags,
// and fields the classes store but never read.
static const char *const IGNORED_KEYS[] = {
    "architectures", "torch_dtype", "dtype", "transformers_version", "use_cache", "bos_token_id",
    "eos_token_id", "pad_token_id", "fuse_norm", "fuse_swiglu", "fuse_cross_entropy", "output_attentions",
    "output_hidden_states", "return_dict", "id2label", "label2id", "elementwise_affine", "time_step_rank",
    "rms_norm",
};
#define N_IGNORED_KEYS (sizeof IGNORED_KEYS / sizeof IGNORED_KEYS[0])

// Keys that select features loglinear.c does not implement: accepted only at their default value.
typedef enum { FEAT_FALSE, FEAT_TRUE, FEAT_NULL, FEAT_ACT, FEAT_CHUNK } FeatureKind;
static const struct {
    const char *name;
    FeatureKind kind;
    const char *why;
} FEATURE_KEYS[] = {
    {"residual_in_fp32", FEAT_FALSE, "the paper's Mamba2MLP/HAttention blocks raise NotImplementedError for it "
                                     "(the residual stream is fp32 here anyway); use false"},
    {"hidden_act", FEAT_ACT, "only \"swish\"/\"silu\" is implemented"},
    {"attn_mode", FEAT_CHUNK, "only \"chunk\" is implemented (the paper's H-GDN raises for other modes)"},
    {"use_short_conv", FEAT_TRUE, "the short convolution is required (fla's GatedDeltaNet raises without it); use true"},
    {"attn", FEAT_NULL, "hybrid attention layers are not implemented; use null"},
    {"attention_bias", FEAT_FALSE, "attention biases are not implemented; use false"},
};
#define N_FEATURE_KEYS (sizeof FEATURE_KEYS / sizeof FEATURE_KEYS[0])

static int find_model_key(const char *k) {
    for (size_t i = 0; i < N_MODEL_KEYS; i++) if (strcmp(k, MODEL_KEYS[i].name) == 0) return (int)i;
    return -1;
}
static int find_feature_key(const char *k) {
    for (size_t i = 0; i < N_FEATURE_KEYS; i++) if (strcmp(k, FEATURE_KEYS[i].name) == 0) return (int)i;
    return -1;
}
static bool is_ignored_key(const char *k) {
    if (k[0] == '_') return true;  // "_name_or_path", "_comment", ...
    for (size_t i = 0; i < N_IGNORED_KEYS; i++) if (strcmp(k, IGNORED_KEYS[i]) == 0) return true;
    return false;
}
static int find_train_key(const char *k);

static void model_key_candidates(const char **out, size_t *n) {
    size_t k = 0;
    out[k++] = "model_type";
    for (size_t i = 0; i < N_MODEL_KEYS; i++) out[k++] = MODEL_KEYS[i].name;
    for (size_t i = 0; i < N_FEATURE_KEYS; i++) out[k++] = FEATURE_KEYS[i].name;
    for (size_t i = 0; i < N_IGNORED_KEYS; i++) out[k++] = IGNORED_KEYS[i];
    *n = k;
}

static void type_list(unsigned mask, char *out, size_t len) {
    out[0] = '\0';
    for (int i = 0; i < N_MODEL_TYPES; i++) {
        if (!(mask & (1u << i))) continue;
        size_t used = strlen(out);
        snprintf(out + used, len - used, "%s%s", used ? ", " : "", OUR_NAMES[i]);
    }
}

static bool check_feature(const JsonDoc *d, const cJSON *it, int f, const char *where, Err *err) {
    JsonRaw v;
    json_raw_value(d, it, &v);
    bool ok = false;
    switch (FEATURE_KEYS[f].kind) {
        case FEAT_FALSE: ok = v.boolean == 0; break;
        case FEAT_TRUE: ok = v.boolean == 1; break;
        case FEAT_NULL: ok = v.is_null; break;
        case FEAT_ACT: ok = v.str && (strcmp(v.str, "swish") == 0 || strcmp(v.str, "silu") == 0); break;
        case FEAT_CHUNK: ok = v.str && strcmp(v.str, "chunk") == 0; break;
    }
    if (!ok) return err_set(err, "%s = %s is not supported: %s", where, v.repr, FEATURE_KEYS[f].why);
    return true;
}

// [lo, hi] as HF writes a tuple of floats; hi may be Python's Infinity (time_step_limit = [0.0, Infinity]).
static bool read_float_pair(const JsonDoc *d, const cJSON *it, const char *where, float *out, Err *err) {
    JsonRaw v;
    json_raw_value(d, it, &v);
    if (!cJSON_IsArray(it) || cJSON_GetArraySize(it) != 2)
        return err_set(err, "%s must be a list of two numbers [lo, hi] (e.g. [0.0, Infinity]), got %s", where, v.repr);
    for (int i = 0; i < 2; i++) {
        JsonRaw e;
        json_raw_value(d, i == 0 ? it->child : it->child->next, &e);
        double x;
        if (!e.num || !json_text_to_double(e.num, e.num_len, &x) || isnan(x))
            return err_set(err, "%s[%d] must be a number, got %s", where, i, e.repr);
        out[i] = (float)x;   // Infinity stays infinite; finite values beyond FLT_MAX are caught by the range check
    }
    return true;
}

// ---------------------------------------------------------------------------------------------------
// Model checks (shared by the parser and config_validate)

static const char *eps_key(ModelType t) { return model_type_is_mamba2(t) ? "layer_norm_epsilon" : "norm_eps"; }
static bool is_pow2(int x) { return x > 0 && (x & (x - 1)) == 0; }

static bool model_check(const ModelConfig *m, const char *o, const char *p, Err *err) {
#define POS_INT(val, key) \
    if ((val) <= 0) return err_set(err, "%s: %s%s must be a positive integer, got %d", o, p, key, (int)(val))
#define POS_FLT(val, key) \
    if (!((val) > 0) || !isfinite(val)) \
        return err_set(err, "%s: %s%s must be a positive finite number, got %g", o, p, key, (double)(val))
    if ((unsigned)m->type >= N_MODEL_TYPES) return err_set(err, "%s: %smodel_type is invalid (%d)", o, p, (int)m->type);
    POS_INT(m->vocab_size, "vocab_size");
    POS_INT(m->hidden_size, "hidden_size");
    POS_INT(m->num_layers, "num_hidden_layers");
    POS_INT(m->num_heads, "num_heads");
    POS_INT(m->max_seq_len, "max_position_embeddings");
    POS_FLT(m->hidden_ratio, "hidden_ratio");
    if (m->intermediate_size == -1 && config_mlp_width(m->hidden_size, m->hidden_ratio) == -1)
        return err_set(err, "%s: %shidden_size (%d) x %shidden_ratio (%g) makes the MLP width (derived from them) "
                       "larger than 2^31; lower hidden_size", o, p, m->hidden_size, p, (double)m->hidden_ratio);
    POS_INT(m->intermediate_size, "intermediate_size");
    POS_FLT(m->initializer_range, "initializer_range");
    POS_FLT(m->norm_eps, eps_key(m->type));
    const int d = m->hidden_size, H = m->num_heads;
    if (m->type == MODEL_TRANSFORMER) {
        if (d % H != 0)
            return err_set(err, "%s: %shidden_size (%d) must be divisible by %snum_heads (%d): the transformer's "
                           "head dim is hidden_size/num_heads", o, p, d, p, H);
        if (m->head_dim != d / H)
            return err_set(err, "%s: %shead_dim (%d) must equal hidden_size/num_heads = %d/%d = %d for the "
                           "transformer (or be omitted)", o, p, m->head_dim, d, H, d / H);
        if (m->head_dim % 2 != 0)
            return err_set(err, "%s: %shead_dim = hidden_size/num_heads = %d must be even (RoPE rotates half-pairs); "
                           "change hidden_size or num_heads", o, p, m->head_dim);
        POS_INT(m->num_kv_heads, "num_kv_heads");
        if (H % m->num_kv_heads != 0)
            return err_set(err, "%s: %snum_heads (%d) must be divisible by %snum_kv_heads (%d)", o, p, H, p, m->num_kv_heads);
        POS_FLT(m->rope_theta, "rope_theta");
        if (m->window_size < 0)
            return err_set(err, "%s: %swindow_size must be a positive integer (or null for no window), got %d", o, p,
                           m->window_size);
    } else if (model_type_is_mamba2(m->type)) {
        POS_INT(m->head_dim, "head_dim");
        POS_INT(m->state_size, "state_size");
        POS_INT(m->n_groups, "n_groups");
        if (H % m->n_groups != 0)
            return err_set(err, "%s: %snum_heads (%d) must be divisible by %sn_groups (%d)", o, p, H, p, m->n_groups);
        POS_FLT(m->expand, "expand");
        double di = (double)m->expand * (double)d;
        int64_t d_inner = di < 9e18 ? (int64_t)di : -1;
        int64_t hp = (int64_t)H * m->head_dim;
        if (d_inner != hp)
            return err_set(err, "%s: int(%sexpand * hidden_size) = int(%g * %d) = %" PRId64 " must equal %snum_heads * "
                           "%shead_dim = %d * %d = %" PRId64 "; change expand, num_heads or head_dim",
                           o, p, (double)m->expand, d, d_inner, p, p, H, m->head_dim, hp);
        if (m->d_inner != d_inner)
            return err_set(err, "%s: %sd_inner (%d) is stale: it must be int(expand*hidden_size) = %" PRId64, o, p,
                           m->d_inner, d_inner);
        POS_INT(m->conv_kernel, "conv_kernel");
        if (!is_pow2(m->chunk_size))
            return err_set(err, "%s: %schunk_size must be a positive power of two, got %d", o, p, m->chunk_size);
        POS_FLT(m->time_step_min, "time_step_min");
        if (!isfinite(m->time_step_max) || m->time_step_max < m->time_step_min)
            return err_set(err, "%s: %stime_step_max (%g) must be finite and >= time_step_min (%g)", o, p,
                           (double)m->time_step_max, (double)m->time_step_min);
        if (!(m->time_step_floor >= 0) || !isfinite(m->time_step_floor))
            return err_set(err, "%s: %stime_step_floor must be a finite number >= 0, got %g", o, p, (double)m->time_step_floor);
        const float lo = m->time_step_limit[0], hi = m->time_step_limit[1];
        if (!(lo >= 0) || !isfinite(lo) || !(hi > lo))
            return err_set(err, "%s: %stime_step_limit = [%g, %g] must be [lo, hi] with 0 <= lo < hi (hi may be "
                           "Infinity; [0.0, Infinity] = no clamp)", o, p, (double)lo, (double)hi);
        // The paper's Mamba2MLP block builds GatedMLP(hidden_ratio=4, intermediate_size=None) whatever the
        // config says, so any other width would not load into the paper's model.
        if (m->hidden_ratio != 4.0f)
            return err_set(err, "%s: %shidden_ratio must be 4 for %s: the paper's Mamba2MLP block hard-codes it "
                           "(remove the key)", o, p, model_type_name(m->type));
        int want = config_mlp_width(d, 4.0f);
        if (m->intermediate_size != want)
            return err_set(err, "%s: %sintermediate_size (%d) must be %d for %s: the paper's Mamba2MLP block "
                           "hard-codes 256*ceil(int(8*hidden_size/3)/256) (remove the key)", o, p,
                           m->intermediate_size, want, model_type_name(m->type));
    } else {
        POS_INT(m->head_dim, "head_dim");
        POS_FLT(m->expand_v, "expand_v");
        double dv = (double)m->head_dim * (double)m->expand_v;
        if (!(dv >= 1.0) || dv > (double)INT_MAX)
            return err_set(err, "%s: int(%shead_dim * expand_v) = int(%d * %g) must be a positive integer", o, p,
                           m->head_dim, (double)m->expand_v);
        POS_INT(m->conv_kernel, "conv_size");
        if (!is_pow2(m->chunk_size))
            return err_set(err, "%s: %schunk_size must be a positive power of two, got %d", o, p, m->chunk_size);
    }
    if (model_type_is_loglinear(m->type)) {
        int need = levels_needed(m->max_seq_len);
        if (m->num_levels < need)
            return err_set(err, "%s: %snum_levels (%d) is too small for %smax_position_embeddings = %d, which needs "
                           "bit_length(%d-1)+1 = %d levels (remove num_levels to derive it)", o, p, m->num_levels, p,
                           m->max_seq_len, m->max_seq_len, need);
        if (m->num_levels > 62)
            return err_set(err, "%s: %snum_levels (%d) must be at most 62", o, p, m->num_levels);
    }
    return true;
#undef POS_INT
#undef POS_FLT
}

// ---------------------------------------------------------------------------------------------------
// Model section parser

// `prefix` is "model." inside our format and "" for a flat HF-style config.
// Command-line values for model keys ("key=value" strings), applied while the model section is parsed so
// that derived sizes follow them (e.g. --hidden_size changes the default intermediate_size too).
typedef struct {
    const char *const *kv;
    int n;
} ModelOverrides;

// The JsonRaw of a command-line value: numbers keep their exact text, true/false/null are read as JSON.
static void raw_from_text(JsonRaw *v, const char *text) {
    memset(v, 0, sizeof *v);
    v->num = text;
    v->num_len = strlen(text);
    v->str = text;
    v->boolean = strcmp(text, "true") == 0 ? 1 : strcmp(text, "false") == 0 ? 0 : -1;
    v->is_null = strcmp(text, "null") == 0;
    snprintf(v->repr, sizeof v->repr, "'%.80s'", text);
}

// The value of model key k in the overrides (the last one given wins), or NULL.
static const char *override_value(const ModelOverrides *ov, const char *k) {
    const char *found = NULL;
    for (int i = 0; ov && i < ov->n; i++) {
        const char *kv = ov->kv[i], *eq = strchr(kv, '=');
        const char *key = strncmp(kv, "model.", 6) == 0 ? kv + 6 : kv;
        if (eq && (size_t)(eq - key) == strlen(k) && strncmp(key, k, strlen(k)) == 0) found = eq + 1;
    }
    return found;
}

static bool parse_model_object(ModelConfig *out, const JsonDoc *d, const cJSON *obj, const char *prefix,
                               bool flat_hf, const ModelOverrides *ov, Err *err) {
    const char *o = d->origin;
    char where[256];
    if (!cJSON_IsObject(obj)) return err_set(err, "%s: the model section must be a JSON object", o);

    // model_type first: it selects the defaults and which keys apply.
    const cJSON *mt = NULL;
    for (const cJSON *it = obj->child; it; it = it->next)
        if (strcmp(it->string, "model_type") == 0) { mt = it; break; }
    if (!mt)
        return err_set(err, "%s: missing key '%smodel_type' (one of transformer, mamba2, loglinear_mamba2, "
                       "gated_deltanet, loglinear_gated_deltanet, or the paper's mamba2mlp, hattention, "
                       "h_gated_deltanet)", o, prefix);
    if (!cJSON_IsString(mt)) {
        JsonRaw v;
        json_raw_value(d, mt, &v);
        return err_set(err, "%s: %smodel_type must be a string, got %s", o, prefix, v.repr);
    }
    ModelType type;
    if (flat_hf && strcmp(mt->valuestring, "mamba2") == 0)
        return err_set(err, "%s: model_type 'mamba2' in an HF-style config is fla's Mamba2 without MLP blocks, "
                       "which loglinear.c does not implement; the paper's Mamba-2 is 'mamba2mlp' (or use our "
                       "format, {\"model\": {\"model_type\": \"mamba2\", ...}})", o);
    if (!model_type_from_name(mt->valuestring, &type)) {
        const char *names[2 * N_MODEL_TYPES];
        for (int i = 0; i < N_MODEL_TYPES; i++) { names[2 * i] = OUR_NAMES[i]; names[2 * i + 1] = HF_NAMES[i]; }
        char hint[96];
        did_you_mean(mt->valuestring, names, 2 * N_MODEL_TYPES, hint, sizeof hint);
        return err_set(err, "%s: unknown %smodel_type '%s'%s; expected one of transformer, mamba2, "
                       "loglinear_mamba2, gated_deltanet, loglinear_gated_deltanet (or the paper's mamba2mlp, "
                       "hattention, h_gated_deltanet)", o, prefix, mt->valuestring, hint);
    }

    const cJSON *dup = json_first_dup_key(obj);
    if (dup) return err_set(err, "%s: duplicate key '%s%s'", o, prefix, dup->string);
    ModelConfig m;
    model_config_defaults(&m, type);
    bool given[N_MODEL_KEYS] = {false};
    bool inter_given = false, kv_given = false, hd_given = false, levels_given = false;

    // The file's keys, then the overridden model keys the file does not have (it == NULL).
    int next_override = 0;
    char key_buf[128];
    for (const cJSON *it = obj->child;; it = it ? it->next : NULL) {
        const char *k, *ov_text = NULL;
        if (it) {
            k = it->string;
            ov_text = override_value(ov, k);
        } else {
            if (!ov || next_override >= ov->n) break;
            const char *kv = ov->kv[next_override++], *eq = strchr(kv, '=');
            const char *key = strncmp(kv, "model.", 6) == 0 ? kv + 6 : kv;
            snprintf(key_buf, sizeof key_buf, "%.*s", (int)(eq ? eq - key : 0), key);
            k = key_buf;
            if (cJSON_GetObjectItemCaseSensitive(obj, k) || find_model_key(k) < 0) continue;  // done / not ours
            bool seen = false;   // the same key given twice on the command line: once is enough
            for (int j = 0; j < next_override - 1 && !seen; j++) {
                const char *pk = strncmp(ov->kv[j], "model.", 6) == 0 ? ov->kv[j] + 6 : ov->kv[j];
                seen = strncmp(pk, k, strlen(k)) == 0 && pk[strlen(k)] == '=';
            }
            if (seen) continue;
            ov_text = override_value(ov, k);
        }
        if (ov_text) snprintf(where, sizeof where, "override --%s", k);
        else snprintf(where, sizeof where, "%s: %s%s", o, prefix, k);
        if (strcmp(k, "model_type") == 0 || k[0] == '_') continue;
        int ki = find_model_key(k);
        if (ki >= 0) {
            const ModelKey *key = &MODEL_KEYS[ki];
            if (!(key->types & (1u << type))) {
                char list[160];
                type_list(key->types, list, sizeof list);
                if (ov_text)
                    return err_set(err, "override --%s: the key does not apply to model_type '%s' (it is read by: %s)",
                                   k, mt->valuestring, list);
                return err_set(err, "%s: key '%s%s' does not apply to model_type '%s' (it is read by: %s); remove it",
                               o, prefix, k, mt->valuestring, list);
            }
            JsonRaw v;
            if (ov_text) raw_from_text(&v, ov_text);
            else json_raw_value(d, it, &v);
            char *field = (char *)&m + key->off;
            switch (key->kind) {
                case MK_INT_OR_NULL:
                    if (v.is_null) break;  // null = derive (num_kv_heads = H, intermediate_size by rule)
                    if (!json_read_int(&v, where, (int *)field, err)) return false;
                    if (strcmp(k, "intermediate_size") == 0) inter_given = true;
                    if (strcmp(k, "num_kv_heads") == 0) kv_given = true;
                    break;
                case MK_INT: {
                    int x;
                    if (!json_read_int(&v, where, &x, err)) return false;
                    if (key->alias && given[find_model_key(key->alias)] && x != *(int *)field)
                        return err_set(err, "%s: %s%s (%d) and %s%s (%d) disagree; keep only one of them", o, prefix,
                                       k, x, prefix, key->alias, *(int *)field);
                    *(int *)field = x;
                    break;
                }
                case MK_FLOAT: {
                    float x;
                    if (!json_read_float(&v, where, &x, err)) return false;
                    if (key->alias && given[find_model_key(key->alias)] && x != *(float *)field)
                        return err_set(err, "%s: %s%s (%g) and %s%s (%g) disagree; keep only one of them", o, prefix,
                                       k, (double)x, prefix, key->alias, (double)*(float *)field);
                    *(float *)field = x;
                    break;
                }
                case MK_BOOL:
                    if (!json_read_bool(&v, where, (bool *)field, err)) return false;
                    break;
                case MK_FLOAT_PAIR:
                    if (!read_float_pair(d, it, where, (float *)field, err)) return false;
                    break;
            }
            given[ki] = true;
            if (strcmp(k, "head_dim") == 0) hd_given = true;
            if (strcmp(k, "num_levels") == 0) levels_given = true;
            continue;
        }
        int fi = find_feature_key(k);
        if (fi >= 0) {
            if (!it) continue;
            if (!check_feature(d, it, fi, where, err)) return false;
            continue;
        }
        if (is_ignored_key(k)) continue;
        if (find_train_key(k) >= 0)
            return err_set(err, "%s: '%s%s' is a training key; move it into the \"train\" section", o, prefix, k);
        const char *cands[N_MODEL_KEYS + N_FEATURE_KEYS + N_IGNORED_KEYS + 1];
        size_t nc;
        model_key_candidates(cands, &nc);
        char hint[96];
        did_you_mean(k, cands, nc, hint, sizeof hint);
        return err_set(err, "%s: unknown key '%s%s'%s", o, prefix, k, hint);
    }
    resolve_derived(&m, kv_given, inter_given, hd_given, levels_given);
    if (!model_check(&m, o, prefix, err)) return false;
    *out = m;
    return true;
}

bool model_config_from_json(ModelConfig *m, const char *json_text, const char *origin, Err *err) {
    JsonDoc d;
    if (!json_doc_parse(&d, json_text, origin, err)) return false;
    bool ok;
    const cJSON *root = d.root;
    if (!cJSON_IsObject(root)) {
        ok = err_set(err, "%s: expected a JSON object", origin);
    } else if (cJSON_GetObjectItemCaseSensitive(root, "model_type")) {
        ok = parse_model_object(m, &d, root, "", true, NULL, err);
    } else {
        const cJSON *sec = cJSON_GetObjectItemCaseSensitive(root, "model");
        if (sec) ok = parse_model_object(m, &d, sec, "model.", false, NULL, err);
        else ok = err_set(err, "%s: no \"model_type\" key and no \"model\" section: not a model config", origin);
    }
    json_doc_free(&d);
    return ok;
}

// ---------------------------------------------------------------------------------------------------
// Train keys

typedef enum { TK_INT, TK_FLOAT, TK_STR, TK_U64, TK_DECAY, TK_BOOL } TrainKeyKind;
#define TOFF(f) offsetof(TrainConfig, f)
static const struct {
    const char *name;
    TrainKeyKind kind;
    size_t off;
} TRAIN_KEYS[] = {
    {"train_data", TK_STR, TOFF(train_data)},
    {"val_data", TK_STR, TOFF(val_data)},
    {"tokenizer", TK_STR, TOFF(tokenizer)},
    {"run_dir", TK_STR, TOFF(run_dir)},
    {"batch_size", TK_INT, TOFF(batch_size)},
    {"seq_len", TK_INT, TOFF(seq_len)},
    {"grad_accum", TK_INT, TOFF(grad_accum)},
    {"steps", TK_INT, TOFF(steps)},
    {"lr", TK_FLOAT, TOFF(lr)},
    {"min_lr_ratio", TK_FLOAT, TOFF(min_lr_ratio)},
    {"warmup_steps", TK_INT, TOFF(warmup_steps)},
    {"beta1", TK_FLOAT, TOFF(beta1)},
    {"beta2", TK_FLOAT, TOFF(beta2)},
    {"eps", TK_FLOAT, TOFF(eps)},
    {"weight_decay", TK_FLOAT, TOFF(weight_decay)},
    {"decay", TK_DECAY, TOFF(decay)},
    {"grad_clip", TK_FLOAT, TOFF(grad_clip)},
    {"seed", TK_U64, TOFF(seed)},
    {"eval_every", TK_INT, TOFF(eval_every)},
    {"eval_batches", TK_INT, TOFF(eval_batches)},
    {"sample_every", TK_INT, TOFF(sample_every)},
    {"sample_tokens", TK_INT, TOFF(sample_tokens)},
    {"save_every", TK_INT, TOFF(save_every)},
    {"keep_last", TK_INT, TOFF(keep_last)},
    {"log_every", TK_INT, TOFF(log_every)},
    {"max_bad_steps", TK_INT, TOFF(max_bad_steps)},
    {"threads", TK_INT, TOFF(threads)},
    {"target_accuracy", TK_FLOAT, TOFF(target_accuracy)},
    {"recompute", TK_BOOL, TOFF(recompute)},
    {"peak_gflops", TK_FLOAT, TOFF(peak_gflops)},
};
static const size_t N_TRAIN_KEYS = sizeof TRAIN_KEYS / sizeof TRAIN_KEYS[0];
static const char *const TRAIN_KEY_NAMES[] = {
    "train_data", "val_data", "tokenizer", "run_dir", "batch_size", "seq_len", "grad_accum", "steps", "lr",
    "min_lr_ratio", "warmup_steps", "beta1", "beta2", "eps", "weight_decay", "decay", "grad_clip", "seed",
    "eval_every", "eval_batches", "sample_every", "sample_tokens", "save_every", "keep_last", "log_every",
    "max_bad_steps", "threads", "target_accuracy", "recompute", "peak_gflops"};
_Static_assert(sizeof TRAIN_KEY_NAMES / sizeof TRAIN_KEY_NAMES[0] == 30, "keep TRAIN_KEY_NAMES in sync with TRAIN_KEYS");

static const char *const DECAY_NAMES[] = {"matrices", "all", "none"};

static int find_train_key(const char *k) {
    for (size_t i = 0; i < N_TRAIN_KEYS; i++) if (strcmp(k, TRAIN_KEYS[i].name) == 0) return (int)i;
    return -1;
}

// Sets one train field from a value; the config is unchanged on error.
static bool train_set(TrainConfig *t, int ki, const JsonRaw *v, const char *where, Err *err) {
    char *field = (char *)t + TRAIN_KEYS[ki].off;
    switch (TRAIN_KEYS[ki].kind) {
        case TK_INT: return json_read_int(v, where, (int *)field, err);
        case TK_FLOAT: return json_read_float(v, where, (float *)field, err);
        case TK_BOOL: return json_read_bool(v, where, (bool *)field, err);
        case TK_U64: {
            uint64_t x;
            if (!v->num || !json_text_to_u64(v->num, v->num_len, &x))
                return err_set(err, "%s must be an integer in [0, 2^64), got %s", where, v->repr);
            *(uint64_t *)field = x;
            return true;
        }
        case TK_STR: {
            if (!v->str) return err_set(err, "%s must be a string, got %s (%s)", where, v->repr, json_type_word(v));
            size_t cap = sizeof t->train_data;
            if (strlen(v->str) >= cap) return err_set(err, "%s is too long (%zu bytes, at most %zu)", where, strlen(v->str), cap - 1);
            memcpy(field, v->str, strlen(v->str) + 1);
            return true;
        }
        case TK_DECAY:
            for (int i = 0; i < 3; i++) {
                if (v->str && strcmp(v->str, DECAY_NAMES[i]) == 0) {
                    *(DecayMode *)field = (DecayMode)i;
                    return true;
                }
            }
            return err_set(err, "%s must be \"matrices\", \"all\" or \"none\", got %s", where, v->repr);
    }
    return false;
}

static bool parse_train_object(TrainConfig *t, const JsonDoc *d, const cJSON *obj, Err *err) {
    const char *o = d->origin;
    char where[256];
    if (!cJSON_IsObject(obj)) return err_set(err, "%s: the \"train\" section must be a JSON object", o);
    const cJSON *dup = json_first_dup_key(obj);
    if (dup) return err_set(err, "%s: duplicate key 'train.%s'", o, dup->string);
    for (const cJSON *it = obj->child; it; it = it->next) {
        const char *k = it->string;
        if (k[0] == '_') continue;
        int ki = find_train_key(k);
        if (ki < 0) {
            if (find_model_key(k) >= 0 || strcmp(k, "model_type") == 0)
                return err_set(err, "%s: 'train.%s' is a model key; move it into the \"model\" section", o, k);
            char hint[96];
            did_you_mean(k, TRAIN_KEY_NAMES, N_TRAIN_KEYS, hint, sizeof hint);
            return err_set(err, "%s: unknown key 'train.%s'%s", o, k, hint);
        }
        JsonRaw v;
        json_raw_value(d, it, &v);
        snprintf(where, sizeof where, "%s: train.%s", o, k);
        if (!train_set(t, ki, &v, where, err)) return false;
    }
    return true;
}

bool config_override(Config *cfg, const char *kv, Err *err) {
    const char *eq = strchr(kv, '=');
    if (!eq || eq == kv) return err_set(err, "override '%s': expected key=value, e.g. steps=200", kv);
    char key[128];
    size_t klen = (size_t)(eq - kv);
    if (klen >= sizeof key) return err_set(err, "override '%s': key too long", kv);
    memcpy(key, kv, klen);
    key[klen] = '\0';
    const char *k = strncmp(key, "train.", 6) == 0 ? key + 6 : key;
    int ki = find_train_key(k);
    if (ki < 0) {
        const char *mk = strncmp(k, "model.", 6) == 0 ? k + 6 : k;
        if (strcmp(mk, "model_type") == 0)
            return err_set(err, "override '%s': the model type cannot be overridden (use another --config)", kv);
        if (find_model_key(mk) >= 0)
            return err_set(err, "override '%s': '%s' is a model key; pass it to config_load_with_model_overrides "
                           "(program bug)", kv, mk);
        char hint[96];
        did_you_mean(k, TRAIN_KEY_NAMES, N_TRAIN_KEYS, hint, sizeof hint);
        return err_set(err, "override '%s': unknown train key '%s'%s", kv, k, hint);
    }
    JsonRaw v;
    memset(&v, 0, sizeof v);
    v.num = eq + 1;
    v.num_len = strlen(eq + 1);
    v.str = eq + 1;
    // A boolean key takes true/false or 1/0 on the command line.
    const char *val = eq + 1;
    v.boolean = strcmp(val, "true") == 0 || strcmp(val, "1") == 0 ? 1 : strcmp(val, "false") == 0 || strcmp(val, "0") == 0 ? 0 : -1;
    snprintf(v.repr, sizeof v.repr, "'%.80s'", eq + 1);
    char where[512];
    snprintf(where, sizeof where, "override '%.120s': %s", kv, k);
    // Strings pass unchanged; numbers are parsed by the same exact-syntax readers as JSON tokens.
    return train_set(&cfg->train, ki, &v, where, err);
}

bool config_is_model_key(const char *k) {
    const char *mk = strncmp(k, "model.", 6) == 0 ? k + 6 : k;
    return find_model_key(mk) >= 0;
}

bool config_is_override_key(const char *k) {
    if (strncmp(k, "train.", 6) == 0) return find_train_key(k + 6) >= 0;
    const char *mk = strncmp(k, "model.", 6) == 0 ? k + 6 : k;
    return find_train_key(k) >= 0 || find_model_key(mk) >= 0 || strcmp(mk, "model_type") == 0;
}

void config_suggest(const char *word, const char *const *extra, size_t n_extra, char *hint, size_t len) {
    const char *cands[N_TRAIN_KEYS + N_MODEL_KEYS + 64];
    size_t n = 0;
    for (size_t i = 0; i < N_TRAIN_KEYS; i++) cands[n++] = TRAIN_KEY_NAMES[i];
    for (size_t i = 0; i < N_MODEL_KEYS; i++) cands[n++] = MODEL_KEYS[i].name;
    for (size_t i = 0; i < n_extra && i < 64; i++) cands[n++] = extra[i];
    did_you_mean(word, cands, n, hint, len);
}

// ---------------------------------------------------------------------------------------------------
// Validation

static bool train_check(const TrainConfig *t, const char *o, Err *err) {
#define NEED(cond, key, fmt, ...) \
    if (!(cond)) return err_set(err, "%s: train.%s " fmt, o, key, __VA_ARGS__)
    NEED(t->train_data[0], "train_data", "must not be empty (a glob of token shards, e.g. %s)", "\"data/tokens/corpus_train_*.bin\"");
    NEED(t->val_data[0], "val_data", "must not be empty (a glob of token shards, e.g. %s)", "\"data/tokens/corpus_val_*.bin\"");
    NEED(t->batch_size > 0, "batch_size", "must be a positive integer, got %d", t->batch_size);
    NEED(t->seq_len > 0, "seq_len", "must be a positive integer, got %d", t->seq_len);
    NEED(t->grad_accum > 0, "grad_accum", "must be a positive integer, got %d", t->grad_accum);
    NEED(t->steps > 0, "steps", "must be a positive integer, got %d", t->steps);
    NEED(t->lr > 0 && isfinite(t->lr), "lr", "must be a positive finite number, got %g", (double)t->lr);
    NEED(t->min_lr_ratio >= 0 && t->min_lr_ratio <= 1, "min_lr_ratio", "must be in [0, 1], got %g", (double)t->min_lr_ratio);
    NEED(t->warmup_steps >= 0, "warmup_steps", "must be >= 0, got %d", t->warmup_steps);
    NEED(t->warmup_steps <= t->steps, "warmup_steps", "(%d) must not exceed train.steps (%d)", t->warmup_steps, t->steps);
    NEED(t->beta1 >= 0 && t->beta1 < 1, "beta1", "must be in [0, 1), got %g", (double)t->beta1);
    NEED(t->beta2 >= 0 && t->beta2 < 1, "beta2", "must be in [0, 1), got %g", (double)t->beta2);
    NEED(t->eps > 0 && isfinite(t->eps), "eps", "must be a positive finite number, got %g", (double)t->eps);
    NEED(t->weight_decay >= 0 && isfinite(t->weight_decay), "weight_decay", "must be a finite number >= 0, got %g",
         (double)t->weight_decay);
    NEED((unsigned)t->decay <= DECAY_NONE, "decay", "is invalid (%d)", (int)t->decay);
    NEED(isfinite(t->grad_clip), "grad_clip", "must be finite (<= 0 disables clipping), got %g", (double)t->grad_clip);
    NEED(t->eval_every >= 0, "eval_every", "must be >= 0 (0 = only at the end), got %d", t->eval_every);
    NEED(t->eval_batches > 0, "eval_batches", "must be a positive integer, got %d", t->eval_batches);
    NEED(t->sample_every >= 0, "sample_every", "must be >= 0 (0 = never), got %d", t->sample_every);
    NEED(t->sample_tokens >= 0, "sample_tokens", "must be >= 0, got %d", t->sample_tokens);
    NEED(t->save_every >= 0, "save_every", "must be >= 0 (0 = only at the end), got %d", t->save_every);
    NEED(t->keep_last > 0, "keep_last", "must be a positive integer, got %d", t->keep_last);
    NEED(t->log_every > 0, "log_every", "must be a positive integer, got %d", t->log_every);
    NEED(t->max_bad_steps >= 0, "max_bad_steps", "must be >= 0, got %d", t->max_bad_steps);
    NEED(t->threads >= 0, "threads", "must be >= 0 (0 = all cores), got %d", t->threads);
    NEED(t->target_accuracy >= 0 && t->target_accuracy <= 1, "target_accuracy",
         "must be in [0, 1] (0 = off), got %g", (double)t->target_accuracy);
    NEED(!mqar_is_spec(t->train_data) || strcmp(t->train_data, t->val_data) != 0, "val_data",
         "is the same MQAR set as train_data (%s): give it another seed=, e.g. \"mqar:...,seed=1\"", t->train_data);
    NEED(t->peak_gflops >= 0, "peak_gflops", "must be >= 0 (0 = measure with an sgemm probe), got %g", (double)t->peak_gflops);
    return true;
#undef NEED
}

bool config_validate(const Config *cfg, const char *origin, Err *err) {
    if (!model_check(&cfg->model, origin, "model.", err)) return false;
    if (!train_check(&cfg->train, origin, err)) return false;
    if (cfg->train.seq_len > cfg->model.max_seq_len)
        return err_set(err, "%s: train.seq_len (%d) exceeds model.max_position_embeddings (%d); lower seq_len or "
                       "raise max_position_embeddings", origin, cfg->train.seq_len, cfg->model.max_seq_len);
    return true;
}

// ---------------------------------------------------------------------------------------------------
// Loading files

static bool is_regular_file(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

// A config file as a C string: at most 16 MB (more is not a config file) and no NUL byte inside.
static char *read_text_file(const char *path, Err *err) {
    char *buf;
    size_t n;
    if (!read_file(path, (size_t)16 << 20, &buf, &n, err)) return NULL;
    if (strlen(buf) != n) { free(buf); err_set(err, "%s: contains a NUL byte; not a JSON text file", path); return NULL; }
    return buf;
}

static bool parse_config_doc(Config *cfg, const JsonDoc *d, const ModelOverrides *ov, Err *err) {
    const char *o = d->origin;
    const cJSON *root = d->root;
    if (!cJSON_IsObject(root))
        return err_set(err, "%s: expected a JSON object with \"model\" and \"train\" sections", o);
    Config c;
    memset(&c, 0, sizeof c);
    train_config_defaults(&c.train);
    const cJSON *model = NULL, *train = NULL;
    bool flat = cJSON_GetObjectItemCaseSensitive(root, "model_type") != NULL;
    if (flat) {
        // A bare HF-style model config: the whole object is the model section.
        if (cJSON_GetObjectItemCaseSensitive(root, "model") || cJSON_GetObjectItemCaseSensitive(root, "train"))
            return err_set(err, "%s: has a top-level \"model_type\" and also \"model\"/\"train\" sections; use either "
                           "our format ({\"model\": {...}, \"train\": {...}}) or a bare HF-style model config", o);
        if (!parse_model_object(&c.model, d, root, "", true, ov, err)) return false;
        *cfg = c;
        return true;
    }
    const cJSON *dup = json_first_dup_key(root);
    if (dup) return err_set(err, "%s: duplicate key '%s'", o, dup->string);
    for (const cJSON *it = root->child; it; it = it->next) {
        const char *k = it->string;
        if (strcmp(k, "model") == 0) model = it;
        else if (strcmp(k, "train") == 0) train = it;
        else if (k[0] == '_') continue;
        else if (find_model_key(k) >= 0)
            return err_set(err, "%s: top-level key '%s' is a model key: put it in the \"model\" section", o, k);
        else if (find_train_key(k) >= 0)
            return err_set(err, "%s: top-level key '%s' is a train key: put it in the \"train\" section", o, k);
        else {
            static const char *const top[] = {"model", "train"};
            char hint[96];
            did_you_mean(k, top, 2, hint, sizeof hint);
            return err_set(err, "%s: unknown top-level key '%s'%s (expected \"model\" and \"train\")", o, k, hint);
        }
    }
    if (!model) return err_set(err, "%s: missing \"model\" section (with at least \"model_type\")", o);
    if (!parse_model_object(&c.model, d, model, "model.", false, ov, err)) return false;
    if (train && !parse_train_object(&c.train, d, train, err)) return false;
    *cfg = c;
    return true;
}

bool config_load(Config *cfg, const char *path, char *resolved_path, size_t resolved_len, Err *err) {
    return config_load_with_model_overrides(cfg, path, NULL, 0, resolved_path, resolved_len, err);
}

bool config_load_with_model_overrides(Config *cfg, const char *path, const char *const *model_kv, int n_model_kv,
                                      char *resolved_path, size_t resolved_len, Err *err) {
    const ModelOverrides ov = {model_kv, n_model_kv};
    if (!path || !path[0]) return err_set(err, "config: empty path");
    char cand[4][1100];
    int nc = 0;
    size_t plen = strlen(path);
    if (plen > 1000) return err_set(err, "config path too long: %.60s...", path);
    bool has_json = plen >= 5 && strcmp(path + plen - 5, ".json") == 0;
    bool try_dir = path[0] != '/' && strncmp(path, "configs/", 8) != 0;
    snprintf(cand[nc++], sizeof cand[0], "%s", path);
    if (try_dir) snprintf(cand[nc++], sizeof cand[0], "configs/%s", path);
    if (!has_json) {
        snprintf(cand[nc++], sizeof cand[0], "%s.json", path);
        if (try_dir) snprintf(cand[nc++], sizeof cand[0], "configs/%s.json", path);
    }
    int found = -1;
    for (int i = 0; i < nc && found < 0; i++) if (is_regular_file(cand[i])) found = i;
    // A path that exists but is no regular file (a directory, a symlink loop, a FIFO) gets its own message
    // rather than "not found".
    struct stat st;
    if (found < 0 && stat(path, &st) == 0)
        return err_set(err, "config %s is %s, not a config file; pass a JSON file, e.g. configs/transformer.json",
                       path, S_ISDIR(st.st_mode) ? "a directory" : "not a regular file");
    if (found < 0 && errno != ENOENT)
        return err_set(err, "config %s cannot be opened: %s; pass a JSON file, e.g. configs/transformer.json", path,
                       strerror(errno));
    if (found < 0) {
        char tried[4600] = {0};
        for (int i = 0; i < nc; i++) {
            size_t u = strlen(tried);
            snprintf(tried + u, sizeof tried - u, "%s'%s'", i ? ", " : "", cand[i]);
        }
        return err_set(err, "config file not found: tried %s", tried);
    }
    const char *p = cand[found];
    char *text = read_text_file(p, err);
    if (!text) return false;
    JsonDoc d;
    bool ok = json_doc_parse(&d, text, p, err);
    if (ok) {
        ok = parse_config_doc(cfg, &d, &ov, err);
        json_doc_free(&d);
    }
    free(text);
    if (ok && resolved_path && resolved_len) snprintf(resolved_path, resolved_len, "%s", p);
    return ok;
}

// ---------------------------------------------------------------------------------------------------
// Writers

static void add_float(cJSON *o, const char *k, float v) {
    char buf[48];
    format_float(buf, sizeof buf, v);
    cJSON_AddItemToObject(o, k, cJSON_CreateRaw(buf));
}
static void add_int(cJSON *o, const char *k, int v) {
    char buf[24];
    snprintf(buf, sizeof buf, "%d", v);
    cJSON_AddItemToObject(o, k, cJSON_CreateRaw(buf));
}

// Sorts an object's keys (HF writes config.json with sort_keys=True).
static void sort_object(cJSON *o) {
    cJSON *sorted = NULL;
    while (o->child) {
        cJSON *it = o->child;
        o->child = it->next;
        cJSON **pp = &sorted;
        while (*pp && strcmp((*pp)->string, it->string) < 0) pp = &(*pp)->next;
        it->next = *pp;
        *pp = it;
    }
    // cJSON keeps a doubly linked list whose head's prev points at the tail.
    cJSON *prev = NULL, *last = NULL;
    for (cJSON *it = sorted; it; it = it->next) { it->prev = prev; prev = it; last = it; }
    if (sorted) sorted->prev = last;
    o->child = sorted;
}

// The keys the family's PyTorch config class reads (plus max_position_embeddings / num_levels, which
// pin our level count). `hf` selects the paper's model_type and adds the HF-only fixed keys.
static cJSON *model_to_cjson(const ModelConfig *m, bool hf) {
    cJSON *o = cJSON_CreateObject();
    if (!o) die("out of memory writing JSON");
    ModelType t = m->type;
    cJSON_AddStringToObject(o, "model_type", hf ? model_type_hf_name(t) : model_type_name(t));
    if (hf) {
        cJSON *arch = cJSON_AddArrayToObject(o, "architectures");
        cJSON_AddItemToArray(arch, cJSON_CreateString((unsigned)t < N_MODEL_TYPES ? HF_ARCH[t] : "?"));
    }
    add_int(o, "vocab_size", m->vocab_size);
    add_int(o, "hidden_size", m->hidden_size);
    add_int(o, "num_hidden_layers", m->num_layers);
    add_int(o, "num_heads", m->num_heads);
    add_int(o, "max_position_embeddings", m->max_seq_len);
    add_float(o, "initializer_range", m->initializer_range);
    cJSON_AddBoolToObject(o, "tie_word_embeddings", m->tie_word_embeddings);
    if (t == MODEL_TRANSFORMER) {
        add_int(o, "num_kv_heads", m->num_kv_heads);
        add_int(o, "intermediate_size", m->intermediate_size);
        add_float(o, "hidden_ratio", m->hidden_ratio);
        add_float(o, "rope_theta", m->rope_theta);
        add_float(o, "norm_eps", m->norm_eps);
        cJSON_AddBoolToObject(o, "qkv_bias", m->qkv_bias);
        cJSON_AddBoolToObject(o, "qk_norm", m->qk_norm);
        if (m->window_size > 0) add_int(o, "window_size", m->window_size);
        else cJSON_AddNullToObject(o, "window_size");
        if (hf) cJSON_AddStringToObject(o, "hidden_act", "swish");
    } else if (model_type_is_mamba2(t)) {
        // No intermediate_size/hidden_ratio: Mamba2MLP hard-codes the MLP width.
        add_int(o, "head_dim", m->head_dim);
        add_int(o, "state_size", m->state_size);
        add_int(o, "n_groups", m->n_groups);
        add_float(o, "expand", m->expand);
        add_int(o, "conv_kernel", m->conv_kernel);
        cJSON_AddBoolToObject(o, "use_conv_bias", m->use_conv_bias);
        add_int(o, "chunk_size", m->chunk_size);
        add_float(o, "time_step_min", m->time_step_min);
        add_float(o, "time_step_max", m->time_step_max);
        add_float(o, "time_step_floor", m->time_step_floor);
        cJSON_AddBoolToObject(o, "rescale_prenorm_residual", m->rescale_prenorm_residual);
        add_float(o, "layer_norm_epsilon", m->norm_eps);
        cJSON_AddBoolToObject(o, "use_bias", m->use_bias);
        // Written only when it clamps: [0.0, Infinity] needs the non-standard token Infinity.
        if (m->time_step_limit[0] != 0.0f || !isinf(m->time_step_limit[1])) {
            char buf[112], lo[48], hi[48];
            format_float(lo, sizeof lo, m->time_step_limit[0]);
            format_float(hi, sizeof hi, m->time_step_limit[1]);
            snprintf(buf, sizeof buf, "[%s, %s]", lo, hi);
            cJSON_AddItemToObject(o, "time_step_limit", cJSON_CreateRaw(buf));
        }
        if (hf) {
            cJSON_AddFalseToObject(o, "residual_in_fp32");  // the class default (true) makes the paper's blocks raise
            cJSON_AddStringToObject(o, "hidden_act", "silu");
        }
    } else {
        add_int(o, "head_dim", m->head_dim);
        add_float(o, "expand_v", m->expand_v);
        cJSON_AddBoolToObject(o, "use_gate", m->use_gate);
        add_int(o, "conv_size", m->conv_kernel);
        add_int(o, "chunk_size", m->chunk_size);
        add_int(o, "intermediate_size", m->intermediate_size);
        add_float(o, "hidden_ratio", m->hidden_ratio);
        add_float(o, "norm_eps", m->norm_eps);
        cJSON_AddBoolToObject(o, "rescale_prenorm_residual", m->rescale_prenorm_residual);
        if (hf) {
            cJSON_AddStringToObject(o, "attn_mode", "chunk");
            cJSON_AddTrueToObject(o, "use_short_conv");
            cJSON_AddStringToObject(o, "hidden_act", "swish");
        }
    }
    if (model_type_is_loglinear(t)) add_int(o, "num_levels", m->num_levels);
    return o;
}

char *model_config_to_hf_json(const ModelConfig *m) {
    cJSON *o = model_to_cjson(m, true);
    sort_object(o);
    char *s = cJSON_Print(o);
    cJSON_Delete(o);
    if (!s) die("out of memory writing JSON");
    return s;
}

char *config_to_json(const Config *cfg) {
    cJSON *root = cJSON_CreateObject();
    if (!root) die("out of memory writing JSON");
    cJSON_AddItemToObject(root, "model", model_to_cjson(&cfg->model, false));
    cJSON *t = cJSON_AddObjectToObject(root, "train");
    const TrainConfig *tc = &cfg->train;
    for (size_t i = 0; i < N_TRAIN_KEYS; i++) {
        const char *field = (const char *)tc + TRAIN_KEYS[i].off;
        const char *k = TRAIN_KEYS[i].name;
        switch (TRAIN_KEYS[i].kind) {
            case TK_INT: add_int(t, k, *(const int *)field); break;
            case TK_FLOAT: add_float(t, k, *(const float *)field); break;
            case TK_BOOL: cJSON_AddBoolToObject(t, k, *(const bool *)field); break;
            case TK_STR: cJSON_AddStringToObject(t, k, field); break;
            case TK_U64: {
                char buf[24];
                snprintf(buf, sizeof buf, "%" PRIu64, *(const uint64_t *)field);  // exact, unlike a double
                cJSON_AddItemToObject(t, k, cJSON_CreateRaw(buf));
                break;
            }
            case TK_DECAY: {
                unsigned dm = (unsigned)*(const DecayMode *)field;
                cJSON_AddStringToObject(t, k, dm <= DECAY_NONE ? DECAY_NAMES[dm] : "?");
                break;
            }
        }
    }
    char *s = cJSON_Print(root);
    cJSON_Delete(root);
    if (!s) die("out of memory writing JSON");
    return s;
}

// ---------------------------------------------------------------------------------------------------
// Comparison

const char *model_config_first_difference(const ModelConfig *a, const ModelConfig *b) {
#define DIFF_I(f, key) if (a->f != b->f) return key
#define DIFF_F(f, key) if (float_differs(a->f, b->f)) return key
    DIFF_I(type, "model_type");
    DIFF_I(vocab_size, "vocab_size");
    DIFF_I(hidden_size, "hidden_size");
    DIFF_I(num_layers, "num_hidden_layers");
    DIFF_I(intermediate_size, "intermediate_size");
    DIFF_F(hidden_ratio, "hidden_ratio");
    DIFF_F(initializer_range, "initializer_range");
    DIFF_F(norm_eps, "norm_eps");
    DIFF_I(tie_word_embeddings, "tie_word_embeddings");
    DIFF_I(max_seq_len, "max_position_embeddings");
    DIFF_I(num_heads, "num_heads");
    DIFF_I(num_kv_heads, "num_kv_heads");
    DIFF_I(head_dim, "head_dim");
    DIFF_F(rope_theta, "rope_theta");
    DIFF_I(qkv_bias, "qkv_bias");
    DIFF_I(qk_norm, "qk_norm");
    DIFF_I(window_size, "window_size");
    DIFF_I(state_size, "state_size");
    DIFF_I(n_groups, "n_groups");
    DIFF_F(expand, "expand");
    DIFF_I(d_inner, "d_inner");
    DIFF_I(conv_kernel, "conv_kernel");
    DIFF_I(use_conv_bias, "use_conv_bias");
    DIFF_I(chunk_size, "chunk_size");
    DIFF_F(time_step_min, "time_step_min");
    DIFF_F(time_step_max, "time_step_max");
    DIFF_F(time_step_floor, "time_step_floor");
    DIFF_F(time_step_limit[0], "time_step_limit");
    DIFF_F(time_step_limit[1], "time_step_limit");
    DIFF_I(use_bias, "use_bias");
    DIFF_I(rescale_prenorm_residual, "rescale_prenorm_residual");
    DIFF_I(num_levels, "num_levels");
    DIFF_F(expand_v, "expand_v");
    DIFF_I(use_gate, "use_gate");
    return NULL;
#undef DIFF_I
#undef DIFF_F
}

const char *train_config_first_difference(const TrainConfig *a, const TrainConfig *b) {
    for (size_t i = 0; i < N_TRAIN_KEYS; i++) {
        const char *fa = (const char *)a + TRAIN_KEYS[i].off, *fb = (const char *)b + TRAIN_KEYS[i].off;
        bool same = true;
        switch (TRAIN_KEYS[i].kind) {
            case TK_INT: same = *(const int *)fa == *(const int *)fb; break;
            case TK_FLOAT: same = !float_differs(*(const float *)fa, *(const float *)fb); break;
            case TK_BOOL: same = *(const bool *)fa == *(const bool *)fb; break;
            case TK_STR: same = strncmp(fa, fb, sizeof a->train_data) == 0; break;
            case TK_U64: same = *(const uint64_t *)fa == *(const uint64_t *)fb; break;
            case TK_DECAY: same = *(const DecayMode *)fa == *(const DecayMode *)fb; break;
        }
        if (!same) return TRAIN_KEYS[i].name;
    }
    return NULL;
}
