// test_config.c — the configuration module: shipped configs load and validate, the paper's HF-style
// configs resolve to the documented dimensions (checked through exact parameter counts), every error
// class fails with a message naming the file and the key, overrides, and JSON round trips.
// Run from the repository root (it reads configs/); temporary files go to a fresh /tmp directory.
#include "config.h"
#include "json_strict.h"
#include "levels.h"
#include "testutil.h"

#include <cjson/cJSON.h>
#include <ftw.h>
#include <glob.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char g_tmpdir[256];

// Writes `text` to <tmpdir>/<name> and returns the path (static buffer, valid until the next call).
static const char *write_tmp(const char *name, const char *text) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", g_tmpdir, name);
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
    return path;
}

// Our format from the bodies of the two sections.
static char *make_cfg(const char *model_body, const char *train_body) {
    static char buf[8192];
    snprintf(buf, sizeof buf, "{\n  \"model\": {%s},\n  \"train\": {%s}\n}\n", model_body, train_body);
    return buf;
}

// Loads (and, if that succeeds, validates) a config text; expects failure with a message that names
// the file and contains every given substring. Prints the message so the log shows what users see.
static void expect_error_v(const char *name, const char *text, const char *const *needles) {
    const char *path = write_tmp(name, text);
    Config cfg;
    Err err = {{0}};
    char resolved[1024] = {0};
    bool ok = config_load(&cfg, path, resolved, sizeof resolved, &err);
    if (ok) ok = config_validate(&cfg, resolved, &err);
    ck_assert_msg(!ok, "%s: expected an error, but the config was accepted", name);
    printf("  [%s] %s\n", name, err.msg);
    ck_assert_msg(strstr(err.msg, path) != NULL, "%s: message does not name the file %s: %s", name, path, err.msg);
    for (int i = 0; needles[i]; i++)
        ck_assert_msg(strstr(err.msg, needles[i]) != NULL, "%s: message lacks '%s': %s", name, needles[i], err.msg);
}
#define EXPECT_ERROR(name, text, ...) \
    do { const char *const nd_[] = {__VA_ARGS__, NULL}; expect_error_v(name, text, nd_); } while (0)

static Config load_ok(const char *path) {
    Config cfg;
    Err err = {{0}};
    char resolved[1024] = {0};
    bool ok = config_load(&cfg, path, resolved, sizeof resolved, &err);
    ck_assert_msg(ok, "loading %s failed: %s", path, err.msg);
    ok = config_validate(&cfg, resolved, &err);
    ck_assert_msg(ok, "validating %s failed: %s", path, err.msg);
    return cfg;
}

static ModelConfig model_ok(const char *json) {
    ModelConfig m;
    Err err = {{0}};
    ck_assert_msg(model_config_from_json(&m, json, "<test>", &err), "model_config_from_json failed: %s", err.msg);
    return m;
}

// Parameter count from the resolved dims, with the formulas of doc/architectures.md §1-§6 and the key
// tables of doc/checkpoint-names.md (embeddings + untied LM head + blocks + final norm).
static int64_t param_count(const ModelConfig *m) {
    int64_t d = m->hidden_size, V = m->vocab_size, L = m->num_layers, I = m->intermediate_size, H = m->num_heads;
    int64_t lv = m->num_levels, mixer = 0;
    if (m->type == MODEL_TRANSFORMER) {
        int64_t hd = m->head_dim, kv = m->num_kv_heads;
        mixer = d * H * hd + 2 * d * kv * hd + H * hd * d;
    } else if (model_type_is_mamba2(m->type)) {
        int64_t din = m->d_inner, gn = (int64_t)m->n_groups * m->state_size, cc = din + 2 * gn;
        int64_t rows = 2 * din + 2 * gn + H + (model_type_is_loglinear(m->type) ? H * lv : 0);
        mixer = rows * d + cc * m->conv_kernel + (m->use_conv_bias ? cc : 0) + 3 * H + din + d * din +
                (model_type_is_loglinear(m->type) ? H * lv : 0);
    } else {
        int64_t dk = H * m->head_dim, dv = (int64_t)(m->head_dim * m->expand_v), Dv = H * dv;
        mixer = 2 * dk * d + Dv * d + 2 * H * d + 2 * H + (2 * dk + Dv) * m->conv_kernel + (m->use_gate ? Dv * d : 0) +
                dv + d * Dv + (model_type_is_loglinear(m->type) ? H * lv * d + H * lv : 0);
    }
    return V * d * (m->tie_word_embeddings ? 1 : 2) + L * (mixer + 3 * d * I + 2 * d) + d;
}

// ---------------------------------------------------------------------------------------------------

START_TEST(test_helpers_and_defaults) {
    ck_assert_int_eq(config_mlp_width(1536, 4), 4096);
    ck_assert_int_eq(config_mlp_width(1024, 4), 2816);
    ck_assert_int_eq(config_mlp_width(256, 4), 768);
    ck_assert_int_eq(config_mlp_width(2048, 4), 5632);
    ck_assert_int_eq(levels_needed(16384), 15);   // the default num_levels for max_seq_len
    ck_assert_int_eq(levels_needed(16385), 16);
    ck_assert_int_eq(levels_needed(2048), 12);
    ck_assert_int_eq(levels_needed(2), 2);
    ck_assert_int_eq(levels_needed(1), 1);

    ModelType t;
    const char *ours[] = {"transformer", "mamba2", "loglinear_mamba2", "gated_deltanet", "loglinear_gated_deltanet"};
    const char *hf[] = {"transformer", "mamba2mlp", "hattention", "gated_deltanet", "h_gated_deltanet"};
    for (int i = 0; i < 5; i++) {
        ck_assert(model_type_from_name(ours[i], &t) && (int)t == i);
        ck_assert(model_type_from_name(hf[i], &t) && (int)t == i);
        ck_assert_str_eq(model_type_name((ModelType)i), ours[i]);
        ck_assert_str_eq(model_type_hf_name((ModelType)i), hf[i]);
    }
    ck_assert(!model_type_from_name("mamba3", &t));

    // The PyTorch classes' defaults (doc/checkpoint-names.md §7).
    ModelConfig m;
    model_config_defaults(&m, MODEL_TRANSFORMER);
    ck_assert_int_eq(m.hidden_size, 2048); ck_assert_int_eq(m.num_layers, 24); ck_assert_int_eq(m.num_heads, 32);
    ck_assert_int_eq(m.num_kv_heads, 32); ck_assert_int_eq(m.head_dim, 64); ck_assert_int_eq(m.intermediate_size, 5632);
    ck_assert_int_eq(m.max_seq_len, 2048); ck_assert_int_eq(m.vocab_size, 32000);
    ck_assert(m.norm_eps == 1e-6f && m.initializer_range == 0.006f && m.rope_theta == 10000.0f);
    ck_assert(!m.tie_word_embeddings && !m.rescale_prenorm_residual);
    model_config_defaults(&m, MODEL_MAMBA2);
    ck_assert_int_eq(m.num_layers, 48); ck_assert_int_eq(m.num_heads, 64); ck_assert_int_eq(m.head_dim, 64);
    ck_assert_int_eq(m.state_size, 128); ck_assert_int_eq(m.n_groups, 1); ck_assert_int_eq(m.d_inner, 4096);
    ck_assert_int_eq(m.conv_kernel, 4); ck_assert_int_eq(m.chunk_size, 64); ck_assert_int_eq(m.num_levels, 0);
    ck_assert(m.norm_eps == 1e-5f && m.initializer_range == 0.1f && m.use_conv_bias && m.rescale_prenorm_residual);
    ck_assert(m.time_step_min == 1e-3f && m.time_step_max == 0.1f && m.time_step_floor == 1e-4f);
    model_config_defaults(&m, MODEL_LOGLINEAR_MAMBA2);
    ck_assert_int_eq(m.chunk_size, 64); ck_assert_int_eq(m.max_seq_len, 16384); ck_assert_int_eq(m.num_levels, 15);
    model_config_defaults(&m, MODEL_GATED_DELTANET);
    ck_assert_int_eq(m.num_layers, 21); ck_assert_int_eq(m.num_heads, 6); ck_assert_int_eq(m.head_dim, 256);
    ck_assert_int_eq(m.conv_kernel, 4); ck_assert_int_eq(m.max_seq_len, 2048); ck_assert_int_eq(m.num_levels, 0);
    ck_assert(m.expand_v == 2.0f && m.use_gate && m.norm_eps == 1e-6f && m.initializer_range == 0.006f);
    model_config_defaults(&m, MODEL_LOGLINEAR_GATED_DELTANET);
    ck_assert_int_eq(m.max_seq_len, 16384); ck_assert_int_eq(m.num_levels, 15);

    TrainConfig tc;
    train_config_defaults(&tc);
    ck_assert_int_eq(tc.batch_size, 8); ck_assert_int_eq(tc.seq_len, 256); ck_assert_int_eq(tc.grad_accum, 1);
    ck_assert_int_eq(tc.steps, 1000); ck_assert_int_eq(tc.warmup_steps, 100); ck_assert_int_eq(tc.eval_every, 100);
    ck_assert_int_eq(tc.eval_batches, 20); ck_assert_int_eq(tc.sample_every, 200); ck_assert_int_eq(tc.sample_tokens, 64);
    ck_assert_int_eq(tc.save_every, 500); ck_assert_int_eq(tc.keep_last, 3); ck_assert_int_eq(tc.log_every, 1);
    ck_assert_int_eq(tc.max_bad_steps, 10); ck_assert_int_eq(tc.threads, 0); ck_assert(tc.seed == 42);
    ck_assert(tc.lr == 1e-3f && tc.min_lr_ratio == 0.1f && tc.beta1 == 0.9f && tc.beta2 == 0.95f && tc.eps == 1e-8f);
    ck_assert(tc.weight_decay == 0.1f && tc.grad_clip == 1.0f && tc.decay == DECAY_MATRICES);
    ck_assert_str_eq(tc.train_data, "data/tokens/corpus_train_*.bin");
    ck_assert_str_eq(tc.val_data, "data/tokens/corpus_val_*.bin");
    ck_assert_str_eq(tc.tokenizer, "data/tokens/corpus.tok");
    ck_assert_str_eq(tc.run_dir, "");
}
END_TEST

START_TEST(test_shipped_configs_load) {
    int count = 0;
    const char *patterns[] = {"configs/*.json", "configs/flame/*.json"};
    for (int p = 0; p < 2; p++) {
        glob_t g;
        int rc = glob(patterns[p], 0, NULL, &g);
        ck_assert_msg(rc == 0, "no %s (run the test from the repository root)", patterns[p]);
        for (size_t i = 0; i < g.gl_pathc; i++) {
            Config cfg = load_ok(g.gl_pathv[i]);
            printf("  %-40s %-26s d=%d L=%d V=%d params=%" PRId64 "\n", g.gl_pathv[i], model_type_name(cfg.model.type),
                   cfg.model.hidden_size, cfg.model.num_layers, cfg.model.vocab_size, param_count(&cfg.model));
            count++;
        }
        globfree(&g);
    }
    ck_assert_int_ge(count, 12);

    // The lookup falls back to configs/, with or without ".json".
    Config cfg;
    Err err = {{0}};
    char resolved[1024];
    ck_assert_msg(config_load(&cfg, "tiny_transformer.json", resolved, sizeof resolved, &err), "%s", err.msg);
    ck_assert_str_eq(resolved, "configs/tiny_transformer.json");
    ck_assert_msg(config_load(&cfg, "flame/hattention_mid", resolved, sizeof resolved, &err), "%s", err.msg);
    ck_assert_str_eq(resolved, "configs/flame/hattention_mid.json");
    ck_assert(cfg.model.type == MODEL_LOGLINEAR_MAMBA2);
    ck_assert(!config_load(&cfg, "no_such_config_xyz.json", NULL, 0, &err));
    printf("  [missing] %s\n", err.msg);
    ck_assert(strstr(err.msg, "'no_such_config_xyz.json'") && strstr(err.msg, "'configs/no_such_config_xyz.json'"));

    // Our small configs.
    cfg = load_ok("configs/transformer.json");
    ck_assert(cfg.model.type == MODEL_TRANSFORMER);
    ck_assert_int_eq(cfg.model.vocab_size, 50257); ck_assert_int_eq(cfg.model.hidden_size, 256);
    ck_assert_int_eq(cfg.model.num_layers, 4); ck_assert_int_eq(cfg.model.head_dim, 64);
    ck_assert_int_eq(cfg.train.seq_len, 256); ck_assert_int_eq(cfg.train.batch_size, 8);
    cfg = load_ok("configs/mamba2.json");
    ck_assert(cfg.model.type == MODEL_MAMBA2);
    ck_assert_int_eq(cfg.model.d_inner, 512); ck_assert_int_eq(cfg.model.num_heads, 8);
    ck_assert_int_eq(cfg.model.head_dim, 64); ck_assert_int_eq(cfg.model.state_size, 64);
    ck_assert_int_eq(cfg.model.chunk_size, 64); ck_assert_int_eq(cfg.model.intermediate_size, 768);
    cfg = load_ok("configs/loglinear_mamba2.json");
    ck_assert(cfg.model.type == MODEL_LOGLINEAR_MAMBA2);
    ck_assert_int_eq(cfg.model.chunk_size, 64); ck_assert_int_eq(cfg.model.num_levels, 15);  // the paper's 15, for PyTorch compatibility
    const char *tiny[] = {"configs/tiny_transformer.json", "configs/tiny_mamba2.json", "configs/tiny_loglinear_mamba2.json"};
    for (int i = 0; i < 3; i++) {
        cfg = load_ok(tiny[i]);
        ck_assert(cfg.model.type == (ModelType)i);
        ck_assert_int_eq(cfg.model.vocab_size, 257); ck_assert_int_eq(cfg.model.hidden_size, 32);
        ck_assert_int_eq(cfg.model.num_layers, 2); ck_assert_int_eq(cfg.train.seq_len, 64);
        ck_assert_int_eq(cfg.train.steps, 30);
        ck_assert_str_eq(cfg.train.train_data, "data/tokens_bytes/corpus_train_*.bin");
        ck_assert_str_eq(cfg.train.val_data, "data/tokens_bytes/corpus_val_*.bin");
        ck_assert_str_eq(cfg.train.tokenizer, "data/tokens_bytes/corpus.tok");
    }
}
END_TEST

START_TEST(test_paper_configs) {
    // Exact parameter counts of doc/architectures.md §1 / doc/checkpoint-names.md §0 pin every derived dim.
    static const struct { const char *file; ModelType type; int L; int64_t params; } P[] = {
        {"configs/flame/transformer_mid.json", MODEL_TRANSFORMER, 24, 777856512},
        {"configs/flame/transformer_mid2.json", MODEL_TRANSFORMER, 21, 692912640},
        {"configs/flame/mamba2_mid.json", MODEL_MAMBA2, 21, 802225872},
        {"configs/flame/hattention_mid.json", MODEL_LOGLINEAR_MAMBA2, 21, 825465312},
        {"configs/flame/gated_deltanet_mid.json", MODEL_GATED_DELTANET, 21, 792785532},
        {"configs/flame/h_gated_deltanet_mid.json", MODEL_LOGLINEAR_GATED_DELTANET, 21, 795690462},
    };
    for (int i = 0; i < 6; i++) {
        Config cfg = load_ok(P[i].file);
        const ModelConfig *m = &cfg.model;
        int64_t n = param_count(m);
        printf("  %-40s params %" PRId64 " (paper %" PRId64 ")\n", P[i].file, n, P[i].params);
        ck_assert_msg(m->type == P[i].type, "%s: type", P[i].file);
        ck_assert_int_eq(m->num_layers, P[i].L);
        ck_assert_int_eq(m->hidden_size, 1536); ck_assert_int_eq(m->vocab_size, 32000);
        ck_assert_int_eq(m->intermediate_size, 4096);
        ck_assert(m->initializer_range == 0.006f && !m->tie_word_embeddings);
        ck_assert_msg(n == P[i].params, "%s: %" PRId64 " params, paper %" PRId64, P[i].file, n, P[i].params);
        // An HF-style file gets the train defaults.
        ck_assert_int_eq(cfg.train.steps, 1000);
        // The same file read as a bare model config (as from a checkpoint's config.json).
        FILE *f = fopen(P[i].file, "rb");
        ck_assert(f);
        char text[8192];
        size_t got = fread(text, 1, sizeof text - 1, f);
        fclose(f);
        text[got] = '\0';
        ModelConfig m2 = model_ok(text);
        ck_assert_ptr_null(model_config_first_difference(m, &m2));
    }
    Config c = load_ok("configs/flame/transformer_mid.json");
    ck_assert_int_eq(c.model.head_dim, 96); ck_assert_int_eq(c.model.num_heads, 16);
    ck_assert_int_eq(c.model.num_kv_heads, 16); ck_assert(c.model.rope_theta == 500000.0f);
    ck_assert_int_eq(c.model.max_seq_len, 16384); ck_assert(c.model.norm_eps == 1e-6f);
    c = load_ok("configs/flame/mamba2_mid.json");
    ck_assert_int_eq(c.model.d_inner, 3072); ck_assert_int_eq(c.model.head_dim, 64); ck_assert_int_eq(c.model.num_heads, 48);
    ck_assert_int_eq(c.model.state_size, 128); ck_assert_int_eq(c.model.n_groups, 1); ck_assert_int_eq(c.model.chunk_size, 64);
    ck_assert(c.model.norm_eps == 1e-5f && c.model.use_conv_bias && c.model.conv_kernel == 4);
    c = load_ok("configs/flame/hattention_mid.json");
    ck_assert_int_eq(c.model.d_inner, 3072); ck_assert_int_eq(c.model.num_levels, 15); ck_assert_int_eq(c.model.chunk_size, 64);
    ck_assert_int_eq(c.model.max_seq_len, 16384); ck_assert(c.model.norm_eps == 1e-5f);
    c = load_ok("configs/flame/gated_deltanet_mid.json");
    ck_assert_int_eq(c.model.head_dim, 192); ck_assert_int_eq(c.model.num_heads, 6); ck_assert_int_eq(c.model.num_levels, 0);
    ck_assert(c.model.expand_v == 2.0f && c.model.use_gate && c.model.norm_eps == 1e-6f && c.model.conv_kernel == 4);
    c = load_ok("configs/flame/h_gated_deltanet_mid.json");
    ck_assert_int_eq(c.model.head_dim, 192); ck_assert_int_eq(c.model.num_levels, 15);
    ck_assert_int_eq(c.model.max_seq_len, 16384);
}
END_TEST

// configs/flame/train_*.json: the paper's model configs with the paper's training recipe.
START_TEST(test_paper_recipes) {
    glob_t g;
    ck_assert_int_eq(glob("configs/flame/train_*.json", 0, NULL, &g), 0);
    ck_assert_uint_eq(g.gl_pathc, 6);
    for (size_t i = 0; i < g.gl_pathc; i++) {
        Config cfg = load_ok(g.gl_pathv[i]);
        const TrainConfig *t = &cfg.train;
        ck_assert_msg(t->lr == 3e-4f && t->beta1 == 0.9f && t->beta2 == 0.95f && t->eps == 1e-15f &&
                      t->weight_decay == 0.1f && t->decay == DECAY_ALL && t->grad_clip == 1.0f &&
                      t->warmup_steps == 1024 && t->min_lr_ratio == 0.1f && t->seed == 42 && t->seq_len == 16384 &&
                      (int64_t)t->batch_size * t->seq_len * t->grad_accum == 524288 && t->steps == 95368,
                      "%s: not the paper's recipe", g.gl_pathv[i]);
        // the model section is the paper's file unchanged
        char hf[256];
        snprintf(hf, sizeof hf, "configs/flame/%s", strrchr(g.gl_pathv[i], '/') + 7);
        Config paper = load_ok(hf);
        ck_assert_msg(model_config_first_difference(&cfg.model, &paper.model) == NULL, "%s vs %s", g.gl_pathv[i], hf);
    }
    globfree(&g);
}
END_TEST

START_TEST(test_hf_special_tokens) {
    // HF-saved mamba configs write time_step_limit as [0.0, Infinity] (non-standard JSON); bookkeeping
    // keys are accepted and ignored.
    ModelConfig m = model_ok("{\"model_type\": \"hattention\", \"hidden_size\": 64, \"num_heads\": 2,\n"
                             " \"time_step_limit\": [0.0, Infinity], \"residual_in_fp32\": false, \"use_bias\": false,\n"
                             " \"hidden_act\": \"silu\", \"architectures\": [\"HAttentionForCausalLM\"], \"torch_dtype\": "
                             "\"float32\", \"transformers_version\": \"4.45.0\", \"use_cache\": true, \"bos_token_id\": 1, "
                             "\"eos_token_id\": 2, \"pad_token_id\": 0, \"fuse_norm\": true, \"fuse_cross_entropy\": true, "
                             "\"output_attentions\": false, \"output_hidden_states\": false, \"return_dict\": true, "
                             "\"id2label\": {\"0\": \"LABEL_0\"}, \"label2id\": {\"LABEL_0\": 0}, \"time_step_rank\": "
                             "\"auto\", \"rms_norm\": true, \"_name_or_path\": \"x\", \"_anything\": [1, 2]}");
    ck_assert(m.type == MODEL_LOGLINEAR_MAMBA2);
    ck_assert_int_eq(m.d_inner, 128); ck_assert_int_eq(m.head_dim, 64);
    m = model_ok("{\"model_type\": \"transformer\", \"hidden_size\": 64, \"num_heads\": 4, \"attention_bias\": false,"
                 " \"elementwise_affine\": true, \"fuse_swiglu\": true, \"qkv_bias\": false, \"qk_norm\": false,"
                 " \"window_size\": null, \"hidden_act\": \"swish\", \"num_kv_heads\": null, \"intermediate_size\": null}");
    ck_assert_int_eq(m.head_dim, 16); ck_assert_int_eq(m.num_kv_heads, 4); ck_assert_int_eq(m.intermediate_size, 256);
    m = model_ok("{\"model_type\": \"h_gated_deltanet\", \"hidden_size\": 64, \"head_dim\": 16, \"attn\": null,"
                 " \"attn_mode\": \"chunk\", \"use_short_conv\": true, \"conv_size\": 4, \"dtype\": \"bfloat16\"}");
    ck_assert(m.type == MODEL_LOGLINEAR_GATED_DELTANET);
    // Our names work in a flat file too; the legacy HF "mamba2" (no MLP) is refused.
    m = model_ok("{\"model_type\": \"loglinear_mamba2\", \"hidden_size\": 64, \"num_heads\": 2}");
    ck_assert(m.type == MODEL_LOGLINEAR_MAMBA2);
    Err err = {{0}};
    ck_assert(!model_config_from_json(&m, "{\"model_type\": \"mamba2\", \"hidden_size\": 64, \"num_heads\": 2}", "ck.json", &err));
    printf("  [flat mamba2] %s\n", err.msg);
    ck_assert(strstr(err.msg, "ck.json") && strstr(err.msg, "mamba2mlp"));
    // model_config_from_json also takes our whole-config format.
    m = model_ok("{\"model\": {\"model_type\": \"gated_deltanet\", \"hidden_size\": 64, \"head_dim\": 16}, \"train\": {\"steps\": 3}}");
    ck_assert(m.type == MODEL_GATED_DELTANET);
}
END_TEST

START_TEST(test_type_errors) {
    const char *T = "\"model_type\": \"transformer\", \"hidden_size\": 64, \"num_heads\": 4";
    char body[1024];
#define WITH(extra) (snprintf(body, sizeof body, "%s, %s", T, extra), body)
    EXPECT_ERROR("typo_model.json", make_cfg(WITH("\"hiden_size\": 64"), ""), "unknown key 'model.hiden_size'",
                 "did you mean 'hidden_size'?");
    EXPECT_ERROR("typo_train.json", make_cfg(T, "\"stepz\": 10"), "unknown key 'train.stepz'", "did you mean 'steps'?");
    EXPECT_ERROR("typo_top.json", "{\"modle\": {}, \"train\": {}}", "'modle'", "did you mean 'model'?");
    EXPECT_ERROR("typo_type.json", make_cfg("\"model_type\": \"tranformer\"", ""), "model_type 'tranformer'",
                 "did you mean 'transformer'?");
    EXPECT_ERROR("str_int.json", make_cfg(WITH("\"vocab_size\": \"256\""), ""), "model.vocab_size", "integer", "\"256\"");
    EXPECT_ERROR("frac_int.json", make_cfg(WITH("\"vocab_size\": 256.5"), ""), "model.vocab_size", "integer", "256.5");
    EXPECT_ERROR("float_int.json", make_cfg(WITH("\"vocab_size\": 256.0"), ""), "model.vocab_size", "integer", "256.0");
    EXPECT_ERROR("exp_int.json", make_cfg(T, "\"steps\": 1e3"), "train.steps", "integer", "1e3");
    EXPECT_ERROR("big_int.json", make_cfg(WITH("\"vocab_size\": 3000000000"), ""), "model.vocab_size", "3000000000");
    EXPECT_ERROR("int_bool.json", make_cfg(WITH("\"tie_word_embeddings\": 1"), ""), "model.tie_word_embeddings", "true or false");
    EXPECT_ERROR("str_float.json", make_cfg(WITH("\"initializer_range\": \"0.02\""), ""), "model.initializer_range", "number");
    EXPECT_ERROR("nan_float.json", make_cfg(WITH("\"initializer_range\": NaN"), ""), "model.initializer_range", "NaN");
    EXPECT_ERROR("inf_lr.json", make_cfg(T, "\"lr\": Infinity"), "train.lr", "finite");
    EXPECT_ERROR("str_lr.json", make_cfg(T, "\"lr\": \"fast\""), "train.lr", "number", "\"fast\"");
    EXPECT_ERROR("neg_seed.json", make_cfg(T, "\"seed\": -1"), "train.seed", "-1");
    EXPECT_ERROR("frac_seed.json", make_cfg(T, "\"seed\": 1.5"), "train.seed");
    EXPECT_ERROR("decay.json", make_cfg(T, "\"decay\": \"weights\""), "train.decay", "matrices");
    EXPECT_ERROR("str_path.json", make_cfg(T, "\"train_data\": 5"), "train.train_data", "string");
    EXPECT_ERROR("type_type.json", make_cfg("\"model_type\": 3", ""), "model.model_type", "string");
    EXPECT_ERROR("no_type.json", make_cfg("\"hidden_size\": 64", ""), "model.model_type");
    EXPECT_ERROR("no_model.json", "{\"train\": {\"steps\": 5}}", "\"model\"");
    EXPECT_ERROR("dup.json", make_cfg(WITH("\"hidden_size\": 128"), ""), "duplicate", "model.hidden_size");
    EXPECT_ERROR("misplaced_train.json", make_cfg(WITH("\"lr\": 0.1"), ""), "model.lr", "\"train\" section");
    EXPECT_ERROR("misplaced_model.json", make_cfg(T, "\"hidden_size\": 8"), "train.hidden_size", "\"model\" section");
    EXPECT_ERROR("top_model_key.json", "{\"model\": {\"model_type\": \"transformer\"}, \"num_heads\": 4}", "'num_heads'",
                 "\"model\" section");
    EXPECT_ERROR("mixed.json", "{\"model_type\": \"transformer\", \"train\": {}}", "model_type", "\"train\"");
    EXPECT_ERROR("not_applicable.json", make_cfg(WITH("\"state_size\": 16"), ""), "model.state_size", "does not apply", "read by: mamba2, loglinear_mamba2",
                 "transformer");
    EXPECT_ERROR("levels_mamba2.json",
                 make_cfg("\"model_type\": \"mamba2\", \"hidden_size\": 64, \"num_heads\": 2, \"num_levels\": 8", ""),
                 "model.num_levels", "does not apply");
    EXPECT_ERROR("eps_alias.json", make_cfg(WITH("\"norm_eps\": 1e-6, \"layer_norm_epsilon\": 1e-5"), ""),
                 "model.norm_eps", "model.layer_norm_epsilon", "disagree");
#undef WITH
}
END_TEST

START_TEST(test_value_errors) {
    EXPECT_ERROR("d_mod_h.json", make_cfg("\"model_type\": \"transformer\", \"hidden_size\": 100, \"num_heads\": 3", ""),
                 "model.hidden_size", "model.num_heads");
    EXPECT_ERROR("head_dim.json",
                 make_cfg("\"model_type\": \"transformer\", \"hidden_size\": 64, \"num_heads\": 4, \"head_dim\": 32", ""),
                 "model.head_dim", "16");
    EXPECT_ERROR("odd_head_dim.json", make_cfg("\"model_type\": \"transformer\", \"hidden_size\": 60, \"num_heads\": 4", ""),
                 "model.head_dim", "even");
    EXPECT_ERROR("kv.json",
                 make_cfg("\"model_type\": \"transformer\", \"hidden_size\": 64, \"num_heads\": 4, \"num_kv_heads\": 3", ""),
                 "model.num_kv_heads");
    const char *M = "\"model_type\": \"mamba2\", \"hidden_size\": 64, \"num_heads\": 4, \"head_dim\": 32";
    char body[1024];
#define WITH(extra) (snprintf(body, sizeof body, "%s, %s", M, extra), body)
    EXPECT_ERROR("groups.json", make_cfg(WITH("\"n_groups\": 3"), ""), "model.num_heads", "model.n_groups");
    EXPECT_ERROR("expand.json", make_cfg(WITH("\"expand\": 3"), ""), "model.expand", "model.num_heads", "model.head_dim", "192");
    EXPECT_ERROR("chunk.json", make_cfg(WITH("\"chunk_size\": 48"), ""), "model.chunk_size", "power of two");
    EXPECT_ERROR("chunk0.json", make_cfg(WITH("\"chunk_size\": 0"), ""), "model.chunk_size");
    EXPECT_ERROR("vocab0.json", make_cfg(WITH("\"vocab_size\": 0"), ""), "model.vocab_size", "positive");
    EXPECT_ERROR("layers.json", make_cfg(WITH("\"num_hidden_layers\": -1"), ""), "model.num_hidden_layers", "positive");
    EXPECT_ERROR("state0.json", make_cfg(WITH("\"state_size\": 0"), ""), "model.state_size");
    EXPECT_ERROR("eps0.json", make_cfg(WITH("\"layer_norm_epsilon\": 0"), ""), "model.layer_norm_epsilon");
    EXPECT_ERROR("ts.json", make_cfg(WITH("\"time_step_min\": 0.5, \"time_step_max\": 0.1"), ""), "model.time_step_max");
    EXPECT_ERROR("mamba_mlp.json", make_cfg(WITH("\"intermediate_size\": 100"), ""), "model.intermediate_size", "256");
    EXPECT_ERROR("mamba_ratio.json", make_cfg(WITH("\"hidden_ratio\": 3"), ""), "model.hidden_ratio");
#undef WITH
    EXPECT_ERROR("levels.json",
                 make_cfg("\"model_type\": \"loglinear_mamba2\", \"hidden_size\": 64, \"num_heads\": 2, "
                          "\"max_position_embeddings\": 2048, \"num_levels\": 11", ""),
                 "model.num_levels", "model.max_position_embeddings", "12");
    EXPECT_ERROR("expand_v.json",
                 make_cfg("\"model_type\": \"gated_deltanet\", \"hidden_size\": 64, \"head_dim\": 16, \"expand_v\": 0", ""),
                 "model.expand_v");
    EXPECT_ERROR("conv_size.json",
                 make_cfg("\"model_type\": \"gated_deltanet\", \"hidden_size\": 64, \"head_dim\": 16, \"conv_size\": 0", ""),
                 "model.conv_size");

    // The options of the paper's classes: bad values name the key.
    const char *TT = "\"model_type\": \"transformer\", \"hidden_size\": 64, \"num_heads\": 4";
    char tb[512];
#define WITH(extra) (snprintf(tb, sizeof tb, "%s, %s", TT, extra), tb)
    EXPECT_ERROR("window.json", make_cfg(WITH("\"window_size\": -4"), ""), "model.window_size", "positive");
    EXPECT_ERROR("window_type.json", make_cfg(WITH("\"window_size\": 1.5"), ""), "model.window_size", "integer");
    EXPECT_ERROR("qk_norm_type.json", make_cfg(WITH("\"qk_norm\": 1"), ""), "model.qk_norm", "true or false");
    const char *MB = "\"model_type\": \"mamba2\", \"hidden_size\": 64, \"num_heads\": 2";
    char mb[512];
#define MWITH(extra) (snprintf(mb, sizeof mb, "%s, %s", MB, extra), mb)
    EXPECT_ERROR("tsl_order.json", make_cfg(MWITH("\"time_step_limit\": [0.5, 0.1]"), ""), "model.time_step_limit", "lo < hi");
    EXPECT_ERROR("tsl_neg.json", make_cfg(MWITH("\"time_step_limit\": [-1.0, Infinity]"), ""), "model.time_step_limit");
    EXPECT_ERROR("tsl_len.json", make_cfg(MWITH("\"time_step_limit\": [0.0, 1.0, 2.0]"), ""), "model.time_step_limit",
                 "two numbers");
    EXPECT_ERROR("tsl_str.json", make_cfg(MWITH("\"time_step_limit\": [0.0, \"inf\"]"), ""), "model.time_step_limit[1]",
                 "number");
    EXPECT_ERROR("tsl_gdn.json",
                 make_cfg("\"model_type\": \"gated_deltanet\", \"hidden_size\": 64, \"head_dim\": 16, "
                          "\"time_step_limit\": [0.0, 1.0]", ""),
                 "model.time_step_limit", "does not apply");
    EXPECT_ERROR("use_bias_t.json", make_cfg(WITH("\"use_bias\": true"), ""), "model.use_bias", "does not apply");
#undef MWITH
#undef WITH

    // Not-implemented features are refused at non-default values.
    static const struct { const char *type, *kv, *key; } F[] = {
        {"transformer", "\"attention_bias\": true", "attention_bias"},
        {"transformer", "\"hidden_act\": \"gelu\"", "hidden_act"},
        {"mamba2", "\"residual_in_fp32\": true", "residual_in_fp32"},
        {"gated_deltanet", "\"attn_mode\": \"fused_recurrent\"", "attn_mode"},
        {"gated_deltanet", "\"use_short_conv\": false", "use_short_conv"},
        {"loglinear_gated_deltanet", "\"attn\": {\"layers\": [1], \"num_heads\": 4}", "attn"},
    };
    for (size_t i = 0; i < sizeof F / sizeof F[0]; i++) {
        char b[512], name[64], key[64];
        snprintf(b, sizeof b, "\"model_type\": \"%s\", \"hidden_size\": 64, \"num_heads\": 2, %s", F[i].type, F[i].kv);
        snprintf(name, sizeof name, "feature_%zu.json", i);
        snprintf(key, sizeof key, "model.%s", F[i].key);
        EXPECT_ERROR(name, make_cfg(b, ""), key, "not supported");
    }

    // Train values (checked by config_validate).
    const char *T = "\"model_type\": \"transformer\", \"hidden_size\": 64, \"num_heads\": 4";
    EXPECT_ERROR("lr0.json", make_cfg(T, "\"lr\": 0"), "train.lr");
    EXPECT_ERROR("beta2.json", make_cfg(T, "\"beta2\": 1.0"), "train.beta2");
    EXPECT_ERROR("beta1.json", make_cfg(T, "\"beta1\": -0.1"), "train.beta1");
    EXPECT_ERROR("warmup.json", make_cfg(T, "\"steps\": 100, \"warmup_steps\": 200"), "train.warmup_steps", "train.steps");
    EXPECT_ERROR("minlr.json", make_cfg(T, "\"min_lr_ratio\": 1.5"), "train.min_lr_ratio");
    EXPECT_ERROR("batch.json", make_cfg(T, "\"batch_size\": 0"), "train.batch_size");
    EXPECT_ERROR("accum.json", make_cfg(T, "\"grad_accum\": -2"), "train.grad_accum");
    EXPECT_ERROR("keep.json", make_cfg(T, "\"keep_last\": 0"), "train.keep_last");
    EXPECT_ERROR("empty_data.json", make_cfg(T, "\"train_data\": \"\""), "train.train_data");
    EXPECT_ERROR("seq_len.json", make_cfg(T, "\"seq_len\": 4096"), "train.seq_len", "model.max_position_embeddings");
}
END_TEST

START_TEST(test_syntax_errors) {
    // Line and column of the offending character (the second comma at line 3, column 33).
    const char *bad = "{\n  \"model\": {\n    \"model_type\": \"transformer\",,\n    \"hidden_size\": 64\n  }\n}\n";
    EXPECT_ERROR("syntax.json", bad, "syntax.json:3:33:", "syntax error");
    // Infinity is rewritten in place with the same length, so positions after it stay right.
    const char *bad_inf = "{\"model_type\": \"hattention\",\n \"time_step_limit\": [0.0, Infinity],,\n \"hidden_size\": 64}";
    EXPECT_ERROR("syntax_inf.json", bad_inf, "syntax_inf.json:2:37:");
    EXPECT_ERROR("truncated.json", "{\"model\": {\"model_type\": \"transformer\"\n", "truncated.json:2:1:", "end of file");
    EXPECT_ERROR("trailing.json", "{\"model\": {\"model_type\": \"transformer\"}} x", "trailing.json:1:42:");
    EXPECT_ERROR("not_object.json", "[1, 2]", "object");
    // The most common hand-editing mistake: a trailing comma (points at the '}' on line 3).
    EXPECT_ERROR("trailing_comma.json", "{\"model\": {\"model_type\": \"transformer\",\n  \"hidden_size\": 64,\n  }\n}",
                 "trailing_comma.json:3:3:");
    EXPECT_ERROR("array_comma.json", "{\"model\": {\"model_type\": \"transformer\", \"x\": [1,,2]}}", "array_comma.json:1:49:");
    // Infinity inside a string is left alone.
    ModelConfig m = model_ok("{\"model_type\": \"transformer\", \"_note\": \"Infinity NaN -Infinity\", \"hidden_size\": 64, \"num_heads\": 4}");
    ck_assert_int_eq(m.hidden_size, 64);
}
END_TEST

// Many keys: the duplicate-key check is O(n log n). 400k distinct "_comment" keys (~8 MB, inside the
// 16 MB cap) take well under a second; a pairwise check took minutes (80k keys: 14.5 s). A duplicate
// among them is still found, and named.
START_TEST(test_many_keys) {
    const int n = 400000;
    size_t cap = (size_t)n * 24 + 512, len = 0;
    char *text = malloc(cap);
    len += (size_t)snprintf(text + len, cap - len, "{\"model\": {\"model_type\": \"transformer\"}");
    for (int i = 0; i < n; i++) len += (size_t)snprintf(text + len, cap - len, ",\"_comment%d\": 1", i);
    snprintf(text + len, cap - len, "}");
    double t0 = now_seconds();
    Config cfg;
    Err err;
    ck_assert_msg(config_load(&cfg, write_tmp("many.json", text), NULL, 0, &err), "%s", err.msg);
    const double dt = now_seconds() - t0;
    printf("  %d keys loaded in %.2f s\n", n, dt);
    ck_assert_msg(dt < 10, "loading %d keys took %.1f s: the duplicate check is not linear", n, dt);
    snprintf(text + len, cap - len, ",\"_comment123456\": 2}");
    EXPECT_ERROR("many_dup.json", text, "duplicate key '_comment123456'");
    free(text);
}
END_TEST

START_TEST(test_overrides) {
    Config cfg = load_ok("configs/tiny_transformer.json");
    Err err = {{0}};
    ck_assert_msg(config_override(&cfg, "steps=200", &err), "%s", err.msg);
    ck_assert_int_eq(cfg.train.steps, 200);
    ck_assert(config_override(&cfg, "lr=3e-4", &err) && cfg.train.lr == 3e-4f);
    ck_assert(config_override(&cfg, "train.batch_size=3", &err) && cfg.train.batch_size == 3);
    ck_assert(config_override(&cfg, "decay=all", &err) && cfg.train.decay == DECAY_ALL);
    ck_assert(config_override(&cfg, "decay=none", &err) && cfg.train.decay == DECAY_NONE);
    ck_assert(config_override(&cfg, "seed=18446744073709551615", &err) && cfg.train.seed == UINT64_MAX);
    ck_assert(config_override(&cfg, "train_data=a/b_*.bin", &err));
    ck_assert_str_eq(cfg.train.train_data, "a/b_*.bin");
    ck_assert(config_override(&cfg, "run_dir=", &err) && cfg.train.run_dir[0] == '\0');
    ck_assert(config_override(&cfg, "grad_clip=-1", &err) && cfg.train.grad_clip == -1.0f);
    ck_assert(config_override(&cfg, "recompute=1", &err) && cfg.train.recompute);
    ck_assert(config_override(&cfg, "recompute=false", &err) && !cfg.train.recompute);
    ck_assert(config_override(&cfg, "recompute=true", &err) && cfg.train.recompute);
    ck_assert_msg(config_validate(&cfg, "tiny", &err), "%s", err.msg);

    Config before = cfg;
    static const struct { const char *arg; const char *needle1, *needle2; } E[] = {
        {"steps=abc", "steps=abc", "integer"},
        {"steps=1.5", "steps", "integer"},
        {"steps=", "steps", "integer"},
        {"step=5", "'step'", "did you mean 'steps'?"},
        {"hidden_size=5", "hidden_size", "model key"},
        {"model.num_heads=5", "num_heads", "model key"},
        {"noequals", "noequals", "key=value"},
        {"=5", "=5", "key=value"},
        {"seed=-1", "seed", "-1"},
        {"lr=inf", "lr", "finite"},
        {"lr=1e-3x", "lr", "number"},
        {"decay=some", "decay", "matrices"},
        {"recompute=yes", "recompute", "true or false"},
    };
    for (size_t i = 0; i < sizeof E / sizeof E[0]; i++) {
        ck_assert_msg(!config_override(&cfg, E[i].arg, &err), "override '%s' accepted", E[i].arg);
        printf("  [override %s] %s\n", E[i].arg, err.msg);
        ck_assert_msg(strstr(err.msg, E[i].needle1) && strstr(err.msg, E[i].needle2), "'%s': %s", E[i].arg, err.msg);
        ck_assert_ptr_null(train_config_first_difference(&before.train, &cfg.train));  // unchanged on error
    }
    // An override can make the config invalid; config_validate names the field.
    ck_assert(config_override(&cfg, "warmup_steps=500", &err));
    ck_assert(!config_validate(&cfg, "tiny.json", &err));
    ck_assert(strstr(err.msg, "tiny.json") && strstr(err.msg, "train.warmup_steps"));
}
END_TEST

// Non-default variants of every type: each key the writers emit must survive the round trip.
static const char *VARIANTS[] = {
    "{\"model_type\": \"transformer\", \"vocab_size\": 1000, \"hidden_size\": 96, \"num_hidden_layers\": 3, "
    "\"num_heads\": 6, \"num_kv_heads\": 2, \"intermediate_size\": 200, \"hidden_ratio\": 3, \"rope_theta\": 500000, "
    "\"max_position_embeddings\": 512, \"norm_eps\": 1e-5, \"initializer_range\": 0.02, \"tie_word_embeddings\": true, "
    "\"qkv_bias\": true, \"qk_norm\": true, \"window_size\": 100}",
    "{\"model_type\": \"mamba2\", \"vocab_size\": 1000, \"hidden_size\": 64, \"num_hidden_layers\": 3, \"num_heads\": 4, "
    "\"head_dim\": 24, \"expand\": 1.5, \"state_size\": 16, \"n_groups\": 2, \"conv_kernel\": 3, \"use_conv_bias\": false, "
    "\"chunk_size\": 32, \"time_step_min\": 0.002, \"time_step_max\": 0.05, \"time_step_floor\": 1e-5, "
    "\"rescale_prenorm_residual\": false, \"layer_norm_epsilon\": 1e-6, \"initializer_range\": 0.03, "
    "\"max_position_embeddings\": 1024, \"tie_word_embeddings\": true, \"use_bias\": true, "
    "\"time_step_limit\": [0.001, Infinity]}",
    "{\"model_type\": \"loglinear_mamba2\", \"vocab_size\": 1000, \"hidden_size\": 64, \"num_hidden_layers\": 3, "
    "\"num_heads\": 4, \"head_dim\": 32, \"state_size\": 16, \"n_groups\": 4, \"conv_size\": 2, \"chunk_size\": 16, "
    "\"max_position_embeddings\": 1000, \"num_levels\": 14, \"layer_norm_epsilon\": 1e-4, \"initializer_range\": 0.006, "
    "\"time_step_limit\": [0.0, 0.25]}",
    "{\"model_type\": \"gated_deltanet\", \"vocab_size\": 1000, \"hidden_size\": 64, \"num_hidden_layers\": 3, "
    "\"num_heads\": 2, \"head_dim\": 32, \"expand_v\": 1.5, \"use_gate\": false, \"conv_size\": 3, \"chunk_size\": 32, "
    "\"intermediate_size\": 128, \"hidden_ratio\": 3, \"norm_eps\": 1e-5, \"rescale_prenorm_residual\": false, "
    "\"max_position_embeddings\": 4096, \"initializer_range\": 0.01}",
    "{\"model_type\": \"h_gated_deltanet\", \"vocab_size\": 1000, \"hidden_size\": 64, \"num_hidden_layers\": 2, "
    "\"num_heads\": 2, \"head_dim\": 16, \"max_position_embeddings\": 100, \"num_levels\": 16, \"hidden_ratio\": 2.5}",
};

START_TEST(test_round_trips) {
    for (int i = 0; i < 5; i++) {
        ModelConfig cases[2];
        model_config_defaults(&cases[0], (ModelType)i);
        char wrapped[2048];
        snprintf(wrapped, sizeof wrapped, "{\"model\": %s}", VARIANTS[i]);
        cases[1] = model_ok(wrapped);
        ck_assert_msg(cases[1].type == (ModelType)i, "variant %d has the wrong type", i);
        for (int c = 0; c < 2; c++) {
            const ModelConfig *m = &cases[c];
            char *hf = model_config_to_hf_json(m);
            ModelConfig back = model_ok(hf);
            const char *diff = model_config_first_difference(m, &back);
            ck_assert_msg(diff == NULL, "%s (case %d): HF round trip changed '%s'\n%s", model_type_name((ModelType)i), c,
                          diff, hf);
            // The HF JSON uses the paper's names and the keys the paper's classes need (read as Python
            // reads it: a clamped time_step_limit may hold Infinity).
            JsonDoc jd;
            Err jerr;
            ck_assert_msg(json_doc_parse(&jd, hf, "hf", &jerr), "%s", jerr.msg);
            const cJSON *j = jd.root;
            ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(j, "model_type")->valuestring, model_type_hf_name((ModelType)i));
            ck_assert(cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(j, "architectures")));
            if (model_type_is_mamba2((ModelType)i)) {
                ck_assert(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(j, "residual_in_fp32")));
                ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(j, "intermediate_size"));
                ck_assert_ptr_nonnull(cJSON_GetObjectItemCaseSensitive(j, "layer_norm_epsilon"));
            } else {
                ck_assert_ptr_nonnull(cJSON_GetObjectItemCaseSensitive(j, "norm_eps"));
            }
            ck_assert((cJSON_GetObjectItemCaseSensitive(j, "num_levels") != NULL) == model_type_is_loglinear((ModelType)i));
            // Floats are written in their shortest exact form (0.006, not 0.0060000000521540642).
            if (m->initializer_range == 0.006f) ck_assert_ptr_nonnull(strstr(hf, "0.006,"));
            // The options of the paper's classes are written (time_step_limit only when it clamps).
            if (m->type == MODEL_TRANSFORMER) {
                ck_assert(cJSON_IsBool(cJSON_GetObjectItemCaseSensitive(j, "qk_norm")));
                ck_assert(cJSON_IsBool(cJSON_GetObjectItemCaseSensitive(j, "qkv_bias")));
                ck_assert_ptr_nonnull(cJSON_GetObjectItemCaseSensitive(j, "window_size"));
            }
            if (model_type_is_mamba2(m->type)) {
                ck_assert(cJSON_IsBool(cJSON_GetObjectItemCaseSensitive(j, "use_bias")));
                const bool clamps = m->time_step_limit[0] != 0.0f || !isinf(m->time_step_limit[1]);
                ck_assert((cJSON_GetObjectItemCaseSensitive(j, "time_step_limit") != NULL) == clamps);
            }
            json_doc_free(&jd);
            free(hf);

            // Whole config, through a file, with non-default train values.
            Config cfg;
            cfg.model = *m;
            train_config_defaults(&cfg.train);
            cfg.train.seed = UINT64_MAX - 1;  // not representable as a double
            cfg.train.lr = 3e-4f;
            cfg.train.decay = DECAY_NONE;
            cfg.train.grad_clip = 0.5f;
            cfg.train.recompute = true;
            cfg.train.min_lr_ratio = 0.0f;
            cfg.train.seq_len = 64;  // <= every case's max_position_embeddings
            snprintf(cfg.train.run_dir, sizeof cfg.train.run_dir, "runs/x \"quoted\" \\ dir");
            char *js = config_to_json(&cfg);
            const char *path = write_tmp("roundtrip.json", js);
            Config back2 = load_ok(path);
            diff = model_config_first_difference(&cfg.model, &back2.model);
            ck_assert_msg(diff == NULL, "config_to_json changed model '%s'\n%s", diff, js);
            diff = train_config_first_difference(&cfg.train, &back2.train);
            ck_assert_msg(diff == NULL, "config_to_json changed train '%s'\n%s", diff, js);
            free(js);
        }
    }
    // The paper's configs round-trip through our HF writer too.
    const char *flame[] = {"transformer_mid", "mamba2_mid", "hattention_mid", "gated_deltanet_mid", "h_gated_deltanet_mid"};
    for (int i = 0; i < 5; i++) {
        char p[128];
        snprintf(p, sizeof p, "configs/flame/%s.json", flame[i]);
        Config c = load_ok(p);
        char *hf = model_config_to_hf_json(&c.model);
        ModelConfig back = model_ok(hf);
        ck_assert_ptr_null(model_config_first_difference(&c.model, &back));
        free(hf);
    }
    // first_difference reports the field.
    ModelConfig a, b;
    model_config_defaults(&a, MODEL_MAMBA2);
    b = a;
    b.state_size = 64;
    ck_assert_str_eq(model_config_first_difference(&a, &b), "state_size");
    TrainConfig ta, tb;
    train_config_defaults(&ta);
    tb = ta;
    tb.lr = 2e-3f;
    ck_assert_str_eq(train_config_first_difference(&ta, &tb), "lr");
}
END_TEST

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb; (void)flag; (void)ftw;
    return remove(p);
}

int main(void) {
    snprintf(g_tmpdir, sizeof g_tmpdir, "/tmp/test_config_XXXXXX");
    if (!mkdtemp(g_tmpdir)) { perror("mkdtemp"); return 1; }
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("config");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_helpers_and_defaults);
    tcase_add_test(tc, test_shipped_configs_load);
    tcase_add_test(tc, test_paper_configs);
    tcase_add_test(tc, test_hf_special_tokens);
    tcase_add_test(tc, test_type_errors);
    tcase_add_test(tc, test_value_errors);
    tcase_add_test(tc, test_syntax_errors);
    tcase_add_test(tc, test_overrides);
    tcase_add_test(tc, test_many_keys);
    tcase_add_test(tc, test_paper_recipes);
    tcase_add_test(tc, test_round_trips);
    suite_add_tcase(s, tc);
    int rc = tu_run_suite(s);
    nftw(g_tmpdir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    return rc;
}
