// test_model.c — whole-model checks for every implemented architecture: the hand-derived backward of the
// complete network against finite differences, recurrent/KV-cache decoding against the parallel forward,
// tensor names and parameter counts of the paper's configs, and the initialisation rules.
#include <string.h>

#include "config.h"
#include "model.h"
#include "sampler.h"
#include "testmodel.h"

static const ModelType TYPES[] = {MODEL_TRANSFORMER, MODEL_MAMBA2, MODEL_LOGLINEAR_MAMBA2, MODEL_GATED_DELTANET,
                                  MODEL_LOGLINEAR_GATED_DELTANET};

// A tiny model of each type; the chunk size is small so that T spans several chunks (and levels).
static ModelConfig tiny(ModelType t) {
    ModelConfig c;
    model_config_defaults(&c, t);
    c.vocab_size = 23;
    c.hidden_size = 16;
    c.num_layers = 2;
    c.intermediate_size = 24;
    c.initializer_range = 0.3f;   // large weights so every gradient is well above fp32 noise
    c.max_seq_len = 64;
    c.tie_word_embeddings = false;
    if (t == MODEL_TRANSFORMER) {
        c.num_heads = 2;
        c.num_kv_heads = 2;
        c.head_dim = 8;
    } else if (model_type_is_gdn(t)) {
        c.num_heads = 2;
        c.head_dim = 8;    // d_k
        c.expand_v = 2;    // d_v = 16
        c.chunk_size = 4;
        c.num_levels = model_type_is_loglinear(t) ? 7 : 0;
        c.rescale_prenorm_residual = true;
    } else {
        c.num_heads = 4;
        c.head_dim = 8;
        c.expand = 2;
        c.d_inner = 32;
        c.state_size = 8;
        c.n_groups = 2;
        c.chunk_size = 4;
        c.num_levels = 7;   // bit_length(63) + 1
        c.rescale_prenorm_residual = true;
    }
    return c;
}

// The tiny model with every option of the paper's classes on: Transformer with q/k/v biases, qk norm,
// a sliding window shorter than the test sequences and GQA; Mamba-2 models with in/out_proj biases and a
// dt clamp that is active for part of the tokens.
static ModelConfig tiny_options(ModelType t) {
    ModelConfig c = tiny(t);
    if (t == MODEL_TRANSFORMER) {
        c.qkv_bias = true;
        c.qk_norm = true;
        c.window_size = 4;
        c.num_heads = 4;
        c.head_dim = 4;
        c.num_kv_heads = 2;
    } else if (model_type_is_mamba2(t)) {
        c.use_bias = true;
        c.time_step_limit[0] = 0.4f;
        c.time_step_limit[1] = 1.5f;
    }
    return c;
}

static void random_tokens(int32_t *x, int n, int V, uint64_t *s) {
    for (int i = 0; i < n; i++) x[i] = (int32_t)(tu_next(s) % (uint64_t)V);
}

static double mean_loss(Model *m, const int32_t *in, const int32_t *tg, int B, int T) {
    int64_t count = 0;
    double sum = model_forward_loss(m, in, tg, B, T, &count, NULL);
    return sum / (double)count;
}

static ModelConfig tiny_no_gate(ModelType t) {
    ModelConfig c = tiny(t);
    c.use_gate = false;
    return c;
}

// Finite differences of the mean loss against the analytic gradient, on a sample of entries of every tensor.
static void check_model_gradients_cfg(ModelConfig c, const char *label) {
    const ModelType type = c.type;
    const int B = 2, T = 11;   // T not a multiple of the chunk
    Model *m = tu_model(&c, B, T, 7);
    uint64_t s = 99;
    // Perturb the non-matrix parameters too (norm weights, A_log, D, L, dt_bias) so their gradients are generic.
    float *p = model_params(m);
    for (int i = 0; i < model_num_tensors(m); i++) {
        const ParamInfo *pi = model_tensor(m, i);
        if (!pi->decay)
            for (size_t k = 0; k < pi->numel; k++) p[pi->offset + k] += 0.2f * tu_randn(&s);
    }
    int32_t in[B * T], tg[B * T];
    random_tokens(in, B * T, c.vocab_size, &s);
    random_tokens(tg, B * T, c.vocab_size, &s);
    tg[3] = -1;   // an ignored target
    model_zero_grad(m);
    int64_t count = 0;
    double sum = model_forward_backward(m, in, tg, B, T, 1.0f / (float)(B * T - 1), &count);
    ck_assert_int_eq(count, B * T - 1);
    ck_assert(isfinite(sum));
    const float *g = model_grads(m);
    // |fd - g| <= atol + rtol·max(|fd|, |g|): atol covers the fp32 noise of the loss difference
    // (~1e-6 / 2h), rtol the truncation error of central differences.
    const double atol = 5e-5, rtol = 2e-2;
    double worst = 0, worst_fd = 0, worst_g = 0;
    const char *worst_name = "";
    for (int i = 0; i < model_num_tensors(m); i++) {
        const ParamInfo *pi = model_tensor(m, i);
        int samples = pi->numel < 6 ? (int)pi->numel : 6;
        for (int k = 0; k < samples; k++) {
            size_t idx = pi->offset + (size_t)(tu_next(&s) % pi->numel);
            float saved = p[idx];
            // Two estimates: central differences at h = 3e-3, and their Richardson extrapolation from h = 4e-3
            // and 2e-3 (cancels the O(h²) truncation error, which the L2 norms of the delta-rule models make
            // large for some entries at these weight scales, but amplifies the fp32 noise of small gradients).
            // An entry passes if either estimate agrees; a wrong gradient fails both.
            const float hs[3] = {3e-3f, 4e-3f, 2e-3f};
            double fdh[3];
            for (int r = 0; r < 3; r++) {
                const float h = hs[r] * fmaxf(1.0f, fabsf(saved));
                const float xp = saved + h, xm = saved - h;
                p[idx] = xp;
                double lp = mean_loss(m, in, tg, B, T);
                p[idx] = xm;
                double lm = mean_loss(m, in, tg, B, T);
                fdh[r] = (lp - lm) / ((double)xp - (double)xm);
            }
            p[idx] = saved;
            const double est[2] = {fdh[0], (4.0 * fdh[2] - fdh[1]) / 3.0};
            double v = INFINITY, fd = est[0];
            for (int e = 0; e < 2; e++) {
                const double ve = fabs(est[e] - g[idx]) / (atol + rtol * fmax(fabs(est[e]), fabs((double)g[idx])));
                if (ve < v || e == 0) { v = ve; fd = est[e]; }
            }
            if (!(v <= worst)) {
                worst = v;
                worst_name = pi->name;
                worst_fd = fd;
                worst_g = g[idx];
            }
        }
    }
    printf("%s%s: whole-model gradient vs finite differences: worst %s (fd %.4e, analytic %.4e), %.2f of tolerance\n",
           model_type_name(type), label, worst_name, worst_fd, worst_g, worst);
    ck_assert_msg(worst <= 1.0, "%s: gradient of %s off: fd %.5e vs analytic %.5e", model_type_name(type), worst_name,
                  worst_fd, worst_g);
    model_free(m);
}

static void check_model_gradients(ModelType type, bool tied) {
    ModelConfig c = tiny(type);
    c.tie_word_embeddings = tied;   // tied: the embedding gets both the lookup and the LM-head gradient
    check_model_gradients_cfg(c, tied ? " (tied embeddings)" : "");
}

START_TEST(test_gradients_transformer) { check_model_gradients(MODEL_TRANSFORMER, false); }
END_TEST
START_TEST(test_gradients_tied_embeddings) { check_model_gradients(MODEL_TRANSFORMER, true); }
END_TEST
START_TEST(test_gradients_mamba2) { check_model_gradients(MODEL_MAMBA2, false); }
END_TEST
START_TEST(test_gradients_loglinear_mamba2) { check_model_gradients(MODEL_LOGLINEAR_MAMBA2, false); }
END_TEST
START_TEST(test_gradients_transformer_options) {
    check_model_gradients_cfg(tiny_options(MODEL_TRANSFORMER), " (qkv_bias, qk_norm, window 4, GQA)");
}
END_TEST
START_TEST(test_gradients_mamba2_options) {
    check_model_gradients_cfg(tiny_options(MODEL_MAMBA2), " (use_bias, time_step_limit [0.4, 1.5])");
}
END_TEST
START_TEST(test_gradients_loglinear_mamba2_options) {
    check_model_gradients_cfg(tiny_options(MODEL_LOGLINEAR_MAMBA2), " (use_bias, time_step_limit [0.4, 1.5])");
}
END_TEST

// The options change the model: the window hides keys, the clamp moves dt (for the FD checks above to
// test the clamped path, it must be active on their weights).
START_TEST(test_options_take_effect) {
    const ModelType types[3] = {MODEL_TRANSFORMER, MODEL_MAMBA2, MODEL_LOGLINEAR_MAMBA2};
    for (int i = 0; i < 3; i++) {
        ModelConfig on = tiny_options(types[i]), off = on;
        if (types[i] == MODEL_TRANSFORMER) off.window_size = 0;
        else off.time_step_limit[0] = 0.0f, off.time_step_limit[1] = INFINITY;
        const int B = 2, T = 11;
        Model *ma = tu_model(&on, B, T, 7), *mb = tu_model(&off, B, T, 7);   // mb: ma's weights, copied below
        uint64_t s = 99;
        float *p = model_params(ma);
        for (int t = 0; t < model_num_tensors(ma); t++) {   // the same perturbation as the FD test
            const ParamInfo *pi = model_tensor(ma, t);
            if (!pi->decay)
                for (size_t k = 0; k < pi->numel; k++) p[pi->offset + k] += 0.2f * tu_randn(&s);
        }
        memcpy(model_params(mb), p, model_num_params(ma) * sizeof(float));
        int32_t in[B * T], tg[B * T];
        random_tokens(in, B * T, on.vocab_size, &s);
        random_tokens(tg, B * T, on.vocab_size, &s);
        const double la = mean_loss(ma, in, tg, B, T), lb = mean_loss(mb, in, tg, B, T);
        printf("%s: loss with the option %.6f, without %.6f\n", model_type_name(types[i]), la, lb);
        ck_assert_msg(fabs(la - lb) > 1e-4, "%s: the option changes nothing", model_type_name(types[i]));
        model_free(ma);
        model_free(mb);
    }
}
END_TEST

// Step-by-step decoding (recurrent state / KV cache) reproduces the parallel forward's logits everywhere.
START_TEST(test_decode_matches_forward) {
    const size_t ntypes = sizeof TYPES / sizeof TYPES[0];
    for (size_t ti = 0; ti < ntypes + 3; ti++) {
        // the five types, then the Transformer and both Mamba-2 models with their options
        const ModelType type = ti < ntypes ? TYPES[ti] : (ModelType[]){MODEL_TRANSFORMER, MODEL_MAMBA2, MODEL_LOGLINEAR_MAMBA2}[ti - ntypes];
        ModelConfig c = ti < ntypes ? tiny(type) : tiny_options(type);
        c.initializer_range = 0.1f;
        const int T = 45;   // many chunks of 4: levels up to bit_length(44)+1 = 7
        Model *m = tu_model(&c, 1, T, 3);
        uint64_t s = 5 + ti;
        int32_t in[T];
        random_tokens(in, T, c.vocab_size, &s);
        float *ref = xmalloc((size_t)T * c.vocab_size * sizeof(float));
        float *got = xmalloc((size_t)c.vocab_size * sizeof(float));
        model_forward_logits(m, in, 1, T, ref);
        DecodeState *ds = decode_create(m, 1);   // capacity 1: the states grow (1, 2, 4, ...) as decoding goes
        double worst = 0;
        for (int t = 0; t < T; t++) {
            decode_step(m, ds, in[t], got);
            double e = tu_rel_error(got, ref + (size_t)t * c.vocab_size, (size_t)c.vocab_size);
            if (e > worst) worst = e;
        }
        printf("%s%s: decode vs parallel forward logits, worst rel err over %d positions %.2e\n",
               model_type_name(type), ti < ntypes ? "" : " (options)", T, worst);
        ck_assert_msg(worst < 1e-4, "%s: decode differs from forward (%.3e)", model_type_name(type), worst);
        decode_free(ds);
        free(ref);
        free(got);
        model_free(m);
    }
}
END_TEST

// Copies every tensor of dst from the tensor of the same name in src (the first dst->numel floats of it:
// the Mamba-2 in_proj is the leading rows of the log-linear one's).
static void copy_tensors_by_name(Model *dst, Model *src) {
    for (int i = 0; i < model_num_tensors(dst); i++) {
        const ParamInfo *pd = model_tensor(dst, i);
        const ParamInfo *ps = NULL;
        for (int j = 0; j < model_num_tensors(src); j++)
            if (strcmp(model_tensor(src, j)->name, pd->name) == 0) ps = model_tensor(src, j);
        ck_assert_msg(ps != NULL && ps->numel >= pd->numel, "%s missing in the source model", pd->name);
        memcpy(model_params(dst) + pd->offset, model_params(src) + ps->offset, pd->numel * sizeof(float));
    }
}

// Both models on the same random tokens give the same logits (rel err < 1e-5); frees both.
static void check_same_logits(Model *ma, Model *mb, int T, uint64_t seed, const char *what) {
    const int V = model_config(ma)->vocab_size;
    int32_t *in = xmalloc((size_t)T * sizeof(int32_t));
    random_tokens(in, T, V, &seed);
    float *a = xmalloc((size_t)T * V * sizeof(float)), *b = xmalloc((size_t)T * V * sizeof(float));
    model_forward_logits(ma, in, 1, T, a);
    model_forward_logits(mb, in, 1, T, b);
    double e = tu_rel_error(a, b, (size_t)T * V);
    printf("%s: logits rel err %.2e\n", what, e);
    ck_assert_msg(e < 1e-5, "%s: logits differ (%.3e)", what, e);
    free(in);
    free(a);
    free(b);
    model_free(ma);
    model_free(mb);
}

// With L = 0 every level weight is λ = softplus(0) = ln 2, so the log-linear mixer computes
// ln2·SSD + D·x. A Mamba-2 model with the same weights and D/ln2 computes (that)/ln2, and the gated
// RMSNorm that follows is scale-invariant: the two models give the same logits (up to the norm's eps).
START_TEST(test_equal_lambda_reduces_to_mamba2) {
    ModelConfig cl = tiny(MODEL_LOGLINEAR_MAMBA2), cm = tiny(MODEL_MAMBA2);
    cl.initializer_range = cm.initializer_range = 0.1f;
    // one B/C group: with more, Mamba-2's gated norm works per group and the log-linear one over d_inner
    cl.n_groups = cm.n_groups = 1;
    cl.norm_eps = cm.norm_eps = 1e-12f;   // make the norm exactly scale-invariant for the comparison
    const int T = 40;
    Model *ml = tu_model(&cl, 1, T, 11), *mm = tu_model(&cm, 1, T, 12);
    // Copy every tensor of the Mamba-2 model from the log-linear one (in_proj: its first rows; the dl
    // rows only feed λ), then L = 0 and D_mamba2 = D / ln 2.
    copy_tensors_by_name(mm, ml);
    const Weights *wl = model_weights(ml), *wm = model_weights(mm);
    for (int l = 0; l < cl.num_layers; l++) {
        memset(wl->layers[l].mix.mamba.L, 0, (size_t)cl.num_heads * cl.num_levels * sizeof(float));
        for (int h = 0; h < cl.num_heads; h++) wm->layers[l].mix.mamba.D[h] = wl->layers[l].mix.mamba.D[h] / logf(2.0f);
    }
    check_same_logits(ml, mm, T, 21, "log-linear Mamba-2 with equal λ vs Mamba-2");
}
END_TEST

// The paper's configs give the documented tensor counts and parameter counts (doc/checkpoint-names.md §0).
START_TEST(test_paper_param_counts) {
    struct {
        const char *file;
        int keys;
        int64_t params;
    } cases[] = {
        {"configs/flame/transformer_mid.json", 219, 777856512},
        {"configs/flame/mamba2_mid.json", 276, 802225872},
        {"configs/flame/hattention_mid.json", 297, 825465312},
        {"configs/flame/gated_deltanet_mid.json", 381, 792785532},
        {"configs/flame/h_gated_deltanet_mid.json", 423, 795690462},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        Config cfg;
        Err err;
        ck_assert_msg(config_load(&cfg, cases[i].file, NULL, 0, &err), "%s", err.msg);
        int n = 0;
        int64_t params = 0;
        ParamInfo *table = model_table(&cfg.model, &n);
        for (int k = 0; k < n; k++) params += (int64_t)table[k].numel;
        printf("%s: %d tensors, %lld params\n", cases[i].file, n, (long long)params);
        ck_assert_int_eq(n, cases[i].keys);
        ck_assert_int_eq(params, cases[i].params);
        free(table);
    }
}
END_TEST

// Names and shapes exactly as the paper's state_dict, including the fused in_proj of the log-linear model.
START_TEST(test_tensor_names) {
    Config cfg;
    Err err;
    ck_assert_msg(config_load(&cfg, "configs/flame/hattention_mid.json", NULL, 0, &err), "%s", err.msg);
    int n = 0;
    ParamInfo *t = model_table(&cfg.model, &n);
    ck_assert_str_eq(t[0].name, "backbone.embeddings.weight");
    ck_assert_str_eq(t[1].name, "backbone.layers.0.mixer_norm.weight");
    ck_assert_str_eq(t[5].name, "backbone.layers.0.mixer.L");
    ck_assert_int_eq(t[5].shape[0], 48);
    ck_assert_int_eq(t[5].shape[1], 15);
    ck_assert_str_eq(t[9].name, "backbone.layers.0.mixer.in_proj.weight");
    ck_assert_int_eq(t[9].shape[0], 7168);
    ck_assert_int_eq(t[9].shape[1], 1536);
    ck_assert_str_eq(t[7].name, "backbone.layers.0.mixer.conv1d.weight");
    ck_assert_int_eq(t[7].ndim, 3);
    ck_assert_int_eq(t[7].shape[0], 3328);
    ck_assert_int_eq(t[7].shape[1], 1);
    ck_assert_int_eq(t[7].shape[2], 4);
    ck_assert_str_eq(t[n - 2].name, "backbone.norm_f.weight");
    ck_assert_str_eq(t[n - 1].name, "lm_head.weight");
    free(t);
    ck_assert_msg(config_load(&cfg, "configs/flame/transformer_mid.json", NULL, 0, &err), "%s", err.msg);
    t = model_table(&cfg.model, &n);
    ck_assert_str_eq(t[1].name, "model.layers.0.attn_norm.weight");
    ck_assert_str_eq(t[2].name, "model.layers.0.attn.q_proj.weight");
    ck_assert_str_eq(t[n - 2].name, "model.norm.weight");
    free(t);
    // The options' tensors, in fla's registration order (doc/checkpoint-names.md §1-§2).
    ModelConfig c = tiny_options(MODEL_TRANSFORMER);
    t = model_table(&c, &n);
    static const char *const attn_names[] = {"attn_norm.weight", "attn.q_proj.weight", "attn.q_proj.bias",
                                             "attn.k_proj.weight", "attn.k_proj.bias", "attn.v_proj.weight",
                                             "attn.v_proj.bias", "attn.o_proj.weight", "attn.q_norm.weight",
                                             "attn.k_norm.weight", "mlp_norm.weight"};
    static const int64_t attn_rows[] = {16, 16, 16, 8, 8, 8, 8, 16, 16, 8, 16};
    for (int i = 0; i < 11; i++) {
        char want[96];
        snprintf(want, sizeof want, "model.layers.0.%s", attn_names[i]);
        ck_assert_str_eq(t[1 + i].name, want);
        ck_assert_int_eq(t[1 + i].shape[0], attn_rows[i]);
    }
    free(t);
    c = tiny_options(MODEL_LOGLINEAR_MAMBA2);
    t = model_table(&c, &n);
    ck_assert_str_eq(t[9].name, "backbone.layers.0.mixer.in_proj.weight");
    ck_assert_str_eq(t[10].name, "backbone.layers.0.mixer.in_proj.bias");
    ck_assert_int_eq(t[10].ndim, 1);
    ck_assert_int_eq(t[10].shape[0], t[9].shape[0]);
    ck_assert_str_eq(t[11].name, "backbone.layers.0.mixer.norm.weight");
    ck_assert_str_eq(t[12].name, "backbone.layers.0.mixer.out_proj.weight");
    ck_assert_str_eq(t[13].name, "backbone.layers.0.mixer.out_proj.bias");
    ck_assert_int_eq(t[13].shape[0], 16);
    free(t);
}
END_TEST

// Initialisation rules: A_log = log(1..H), D = 1, L = 1, softplus(dt_bias) in [dt_min, dt_max], norms 1,
// out_proj within the rescaled kaiming bound, matrices with the configured std.
START_TEST(test_init_rules) {
    ModelConfig c = tiny(MODEL_LOGLINEAR_MAMBA2);
    c.initializer_range = 0.006f;
    Model *m = tu_model(&c, 1, 8, 1);
    const Weights *w = model_weights(m);
    for (int l = 0; l < c.num_layers; l++) {
        const BlockWeights *bw = &w->layers[l];
        const Mamba2Weights *lw = &bw->mix.mamba;
        for (int h = 0; h < c.num_heads; h++) {
            ck_assert_float_eq_tol(lw->A_log[h], logf((float)(h + 1)), 1e-6);
            ck_assert_float_eq(lw->D[h], 1.0f);
            float dt = log1pf(expf(lw->dt_bias[h]));
            ck_assert_msg(dt >= 0.99e-3f && dt <= 0.101f, "dt %g outside [1e-3, 0.1]", dt);
        }
        for (int k = 0; k < c.num_heads * c.num_levels; k++) ck_assert_float_eq(lw->L[k], 1.0f);
        float bound = 1.0f / sqrtf((float)c.d_inner) / sqrtf(2.0f * c.num_layers);
        for (int k = 0; k < c.hidden_size * c.d_inner; k++) ck_assert(fabsf(lw->out_proj[k]) <= bound);
        ck_assert_float_eq(lw->gnorm[0], 1.0f);
        ck_assert_float_eq(bw->mixer_norm[0], 1.0f);
    }
    // std of the embedding ~ initializer_range
    double ss = 0;
    size_t n = (size_t)c.vocab_size * c.hidden_size;
    for (size_t i = 0; i < n; i++) ss += (double)w->embed[i] * w->embed[i];
    double std = sqrt(ss / (double)n);
    ck_assert_msg(fabs(std - 0.006) < 0.0015, "embedding std %g", std);
    model_free(m);
}
END_TEST

// ---- Gated DeltaNet ---------------------------------------------------------------------------------

START_TEST(test_gradients_gated_deltanet) { check_model_gradients(MODEL_GATED_DELTANET, false); }
END_TEST
START_TEST(test_gradients_loglinear_gated_deltanet) { check_model_gradients(MODEL_LOGLINEAR_GATED_DELTANET, false); }
END_TEST
// Without the output gate (use_gate false: no g_proj, plain RMSNorm on the delta-rule output).
START_TEST(test_gradients_gated_deltanet_no_gate) { check_model_gradients_cfg(tiny_no_gate(MODEL_GATED_DELTANET), " (no gate)"); }
END_TEST
START_TEST(test_gradients_loglinear_gated_deltanet_no_gate) {
    check_model_gradients_cfg(tiny_no_gate(MODEL_LOGLINEAR_GATED_DELTANET), " (no gate)");
}
END_TEST

// With L = 0 every level weight is λ = softplus(0) = ln 2. The log-linear GDN feeds the kernel q without
// the 1/√dk scale (the paper divides λ by it), so its delta-rule output is (ln 2·√dk)·(plain GDN output).
// The per-head RMSNorm that follows is scale-invariant: with the same weights both models give the same
// logits (up to the norm's eps).
START_TEST(test_equal_lambda_reduces_to_gated_deltanet) {
    ModelConfig cl = tiny(MODEL_LOGLINEAR_GATED_DELTANET), cg = tiny(MODEL_GATED_DELTANET);
    cl.initializer_range = cg.initializer_range = 0.1f;
    cl.norm_eps = cg.norm_eps = 1e-30f;   // the per-head norms see outputs scaled by ln2 vs 1/√dk: make the eps negligible
    const int T = 40;
    Model *ml = tu_model(&cl, 1, T, 11), *mg = tu_model(&cg, 1, T, 12);
    copy_tensors_by_name(mg, ml);
    const Weights *wl = model_weights(ml);
    for (int l = 0; l < cl.num_layers; l++)
        memset(wl->layers[l].mix.gdn.L, 0, (size_t)cl.num_heads * cl.num_levels * sizeof(float));
    check_same_logits(ml, mg, T, 23, "log-linear GDN with equal λ vs GDN");
}
END_TEST

// Names, order and shapes of the paper's h_gated_deltanet_mid state_dict (doc/checkpoint-names.md §5).
START_TEST(test_tensor_names_gdn) {
    Config cfg;
    Err err;
    ck_assert_msg(config_load(&cfg, "configs/flame/h_gated_deltanet_mid.json", NULL, 0, &err), "%s", err.msg);
    int n = 0;
    ParamInfo *t = model_table(&cfg.model, &n);
    static const char *const names[] = {
        "model.embeddings.weight", "model.layers.0.attn_norm.weight", "model.layers.0.attn.A_log",
        "model.layers.0.attn.dt_bias", "model.layers.0.attn.L", "model.layers.0.attn.q_proj.weight",
        "model.layers.0.attn.k_proj.weight", "model.layers.0.attn.v_proj.weight", "model.layers.0.attn.a_proj.weight",
        "model.layers.0.attn.b_proj.weight", "model.layers.0.attn.q_conv1d.weight", "model.layers.0.attn.k_conv1d.weight",
        "model.layers.0.attn.v_conv1d.weight", "model.layers.0.attn.g_proj.weight", "model.layers.0.attn.o_norm.weight",
        "model.layers.0.attn.o_proj.weight", "model.layers.0.attn.l_proj.weight", "model.layers.0.mlp_norm.weight",
        "model.layers.0.mlp.gate_proj.weight", "model.layers.0.mlp.up_proj.weight", "model.layers.0.mlp.down_proj.weight",
    };
    static const int64_t shapes[][3] = {{32000, 1536, 1}, {1536, 1, 1}, {6, 1, 1}, {6, 1, 1}, {6, 15, 1},
                                        {1152, 1536, 1}, {1152, 1536, 1}, {2304, 1536, 1}, {6, 1536, 1}, {6, 1536, 1},
                                        {1152, 1, 4}, {1152, 1, 4}, {2304, 1, 4}, {2304, 1536, 1}, {384, 1, 1},
                                        {1536, 2304, 1}, {90, 1536, 1}, {1536, 1, 1}, {4096, 1536, 1}, {4096, 1536, 1},
                                        {1536, 4096, 1}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        ck_assert_str_eq(t[i].name, names[i]);
        for (int k = 0; k < 3; k++) ck_assert_int_eq(t[i].shape[k], shapes[i][k]);
    }
    ck_assert_str_eq(t[n - 2].name, "model.norm.weight");
    ck_assert_str_eq(t[n - 1].name, "lm_head.weight");
    free(t);
}
END_TEST

// GDN init: A_log = log U(0,16), softplus(dt_bias) in [1e-3, 0.1], L = 1, o_norm = 1, o_proj within the
// rescaled kaiming bound.
START_TEST(test_init_rules_gdn) {
    ModelConfig c = tiny(MODEL_LOGLINEAR_GATED_DELTANET);
    c.num_heads = 16;   // enough draws to see the spread of A
    c.initializer_range = 0.006f;
    Model *m = tu_model(&c, 1, 8, 1);
    const Weights *w = model_weights(m);
    const int dv = (int)(c.head_dim * c.expand_v);
    for (int l = 0; l < c.num_layers; l++) {
        const GdnWeights *g = &w->layers[l].mix.gdn;
        float amin = 1e9f, amax = 0;
        for (int h = 0; h < c.num_heads; h++) {
            const float A = expf(g->A_log[h]);
            ck_assert_msg(A > 0 && A < 16.0f, "A %g outside (0, 16)", A);
            amin = fminf(amin, A);
            amax = fmaxf(amax, A);
            float dt = log1pf(expf(g->dt_bias[h]));
            ck_assert_msg(dt >= 0.99e-3f && dt <= 0.101f, "dt %g outside [1e-3, 0.1]", dt);
        }
        ck_assert_msg(amax - amin > 4.0f, "A values not spread over (0, 16): %g..%g", amin, amax);
        for (int k = 0; k < c.num_heads * c.num_levels; k++) ck_assert_float_eq(g->L[k], 1.0f);
        for (int k = 0; k < dv; k++) ck_assert_float_eq(g->o_norm[k], 1.0f);
        const int Dv = c.num_heads * dv;
        float bound = 1.0f / sqrtf((float)Dv) / sqrtf(2.0f * c.num_layers);
        for (int k = 0; k < c.hidden_size * Dv; k++) ck_assert(fabsf(g->o_proj[k]) <= bound);
    }
    model_free(m);
}
END_TEST

// Copies the weights of a log-linear model with Λb levels into the same model with Λe > Λb levels, giving
// every extra level the λ of the top one: the λ rows (the last H·Λ rows of in_proj / l_proj) and the
// columns of L. Other tensors are equal in shape and copied.
static void copy_extending_levels(Model *dst, const Model *src, int H, int lb, int le) {
    for (int i = 0; i < model_num_tensors(dst); i++) {
        const ParamInfo *pe = model_tensor(dst, i);
        const ParamInfo *pb = NULL;
        for (int j = 0; j < model_num_tensors(src); j++)
            if (!strcmp(model_tensor(src, j)->name, pe->name)) pb = model_tensor(src, j);
        ck_assert_msg(pb != NULL, "%s missing", pe->name);
        float *e = model_params(dst) + pe->offset;
        const float *b = model_params((Model *)src) + pb->offset;
        if (pe->numel == pb->numel) {
            memcpy(e, b, pe->numel * sizeof(float));
        } else if (strstr(pe->name, ".L")) {          // (H, Λ)
            for (int h = 0; h < H; h++)
                for (int l = 0; l < le; l++) e[h * le + l] = b[h * lb + LL_MIN(l, lb - 1)];
        } else {                                       // (P + H·Λ, d): λ rows last, (h, l) order
            const int64_t d = pe->shape[1], P = pb->shape[0] - (int64_t)H * lb;
            ck_assert_int_eq(pe->shape[0], P + (int64_t)H * le);
            for (int64_t r = 0; r < pe->shape[0]; r++) {
                const int64_t rb = r < P ? r : P + (r - P) / le * lb + LL_MIN((r - P) % le, lb - 1);
                memcpy(e + r * d, b + rb * d, (size_t)d * sizeof(float));
            }
        }
    }
}

// Decoding a log-linear model past its maximum context (8 tokens, 4 levels) adds levels weighted by the top
// λ: the logits equal the parallel forward of the same model with 7 levels whose extra λ copy the top one.
START_TEST(test_decode_past_max_context) {
    const ModelType types[] = {MODEL_LOGLINEAR_MAMBA2, MODEL_LOGLINEAR_GATED_DELTANET};
    for (int ti = 0; ti < 2; ti++) {
        ModelConfig cb = tiny(types[ti]), ce = tiny(types[ti]);
        cb.initializer_range = ce.initializer_range = 0.1f;
        cb.max_seq_len = 8;
        cb.num_levels = 4;
        const int T = 45;   // levels_needed(45) = 7
        Model *mb = tu_model(&cb, 1, 1, 11), *me = tu_model(&ce, 1, T, 11);   // me: mb's weights, copied below
        // generic λ gates (L is initialised to ones)
        uint64_t s = 21;
        for (int i = 0; i < model_num_tensors(mb); i++) {
            const ParamInfo *pi = model_tensor(mb, i);
            if (!pi->decay)
                for (size_t k = 0; k < pi->numel; k++) model_params(mb)[pi->offset + k] += 0.2f * tu_randn(&s);
        }
        copy_extending_levels(me, mb, cb.num_heads, cb.num_levels, ce.num_levels);
        int32_t in[T];
        random_tokens(in, T, cb.vocab_size, &s);
        float *ref = xmalloc((size_t)T * cb.vocab_size * sizeof(float)), *got = xmalloc((size_t)cb.vocab_size * sizeof(float));
        model_forward_logits(me, in, 1, T, ref);
        DecodeState *ds = decode_create(mb, 1);
        double worst = 0;
        size_t bytes_at_8 = 0;
        for (int t = 0; t < T; t++) {
            decode_step(mb, ds, in[t], got);
            worst = fmax(worst, tu_rel_error(got, ref + (size_t)t * cb.vocab_size, (size_t)cb.vocab_size));
            if (t + 1 == 8) bytes_at_8 = decode_state_bytes(ds);
        }
        printf("%s: decode to %d tokens with max context 8 vs the forward with extended levels: worst rel err %.2e; "
               "state %zu bytes at 8 tokens, %zu at %d\n", model_type_name(types[ti]), T, worst, bytes_at_8,
               decode_state_bytes(ds), T);
        ck_assert_msg(worst < 1e-4, "%s: decode past max context differs (%.3e)", model_type_name(types[ti]), worst);
        ck_assert_msg(decode_state_bytes(ds) > bytes_at_8, "the state must gain levels past the maximum context");
        decode_free(ds);
        free(ref);
        free(got);
        model_free(mb);
        model_free(me);
    }
}
END_TEST

// The decoding state's size: O(t) KV cache (Transformer), constant (Mamba-2, GDN), one more level per
// doubling of the context (log-linear).
START_TEST(test_decode_state_growth) {
    for (size_t ti = 0; ti < sizeof TYPES / sizeof TYPES[0]; ti++) {
        ModelConfig c = tiny(TYPES[ti]);
        Model *m = tu_model(&c, 1, 1, 3);
        DecodeState *ds = decode_create(m, 1);
        float *lg = xmalloc((size_t)c.vocab_size * sizeof(float));
        size_t at[8];   // bytes after 2^k tokens
        for (int t = 1, k = 0; k < 8; t++) {
            decode_step(m, ds, t % c.vocab_size, lg);
            if ((t & (t - 1)) == 0) at[k++] = decode_state_bytes(ds);
        }
        for (int k = 2; k < 8; k++) {
            const long long d1 = (long long)at[k] - (long long)at[k - 1], d0 = (long long)at[k - 1] - (long long)at[k - 2];
            if (TYPES[ti] == MODEL_TRANSFORMER) ck_assert_int_eq(d1, 2 * d0);         // linear in t
            else if (model_type_is_loglinear(TYPES[ti])) ck_assert(d1 == d0 && d1 > 0); // one level per doubling
            else ck_assert_int_eq(d1, 0);                                              // constant
        }
        free(lg);
        decode_free(ds);
        model_free(m);
    }
}
END_TEST

// Greedy generation (temperature 0, and top-k = 1 at temperature 1) picks the argmax of the parallel
// forward's logits at every step.
START_TEST(test_greedy_generation_is_forward_argmax) {
    for (size_t ti = 0; ti < sizeof TYPES / sizeof TYPES[0]; ti++) {
        ModelConfig c = tiny(TYPES[ti]);
        c.initializer_range = 0.2f;
        const int P = 5, N = 20, T = P + N;
        Model *m = tu_model(&c, 1, T, 4);
        const SamplerConfig cfgs[2] = {{0.0f, 0, 1.0f}, {1.0f, 1, 1.0f}};
        for (int ci = 0; ci < 2; ci++) {
            Sampler *sm = sampler_create(&cfgs[ci], c.vocab_size);
            Rng r;
            rng_seed(&r, 1);
            int32_t seq[T];
            uint64_t s = 8;
            random_tokens(seq, P, c.vocab_size, &s);
            float *lg = xmalloc((size_t)c.vocab_size * sizeof(float));
            DecodeState *ds = decode_create(m, 4);
            for (int t = 0; t < T - 1; t++) {
                decode_step(m, ds, seq[t], lg);
                if (t >= P - 1) seq[t + 1] = sampler_next(sm, lg, &r);
            }
            float *ref = xmalloc((size_t)T * c.vocab_size * sizeof(float));
            model_forward_logits(m, seq, 1, T, ref);
            for (int t = P - 1; t < T - 1; t++) {
                const float *row = ref + (size_t)t * c.vocab_size;
                const int32_t best = sampler_argmax(row, c.vocab_size);
                float second = -INFINITY;   // skip near-ties, where fp32 rounding may pick either
                for (int i = 0; i < c.vocab_size; i++) if (i != best && row[i] > second) second = row[i];
                if (row[best] - second > 1e-4f)
                    ck_assert_msg(seq[t + 1] == best, "%s: step %d generated %d, forward argmax %d",
                                  model_type_name(TYPES[ti]), t, seq[t + 1], best);
            }
            free(ref);
            free(lg);
            decode_free(ds);
            sampler_free(sm);
        }
        model_free(m);
    }
}
END_TEST

// Activation recomputation changes where the activations live, never a bit of the result: losses and
// every gradient byte equal to the stored-activation model's, for each type, over two accumulated
// micro-batches (the second shorter than the arena), with 3 layers (a first, a middle and a last block).
START_TEST(test_recompute_bit_identical) {
    for (size_t ti = 0; ti < sizeof TYPES / sizeof TYPES[0]; ti++) {
        ModelConfig c = tiny(TYPES[ti]);
        c.num_layers = 3;
        const int B = 2, T = 11;
        Err err;
        Model *plain = model_create(&c, B, T, &err), *rec = model_create_recompute(&c, B, T, true, &err);
        ck_assert_msg(plain && rec, "%s", err.msg);
        ck_assert(!model_recomputes(plain) && model_recomputes(rec));
        ck_assert_msg(model_activation_bytes(rec) < model_activation_bytes(plain), "%s: recompute arena %zu >= %zu",
                      model_type_name(c.type), model_activation_bytes(rec), model_activation_bytes(plain));
        model_init(plain, 7);
        model_init(rec, 7);
        model_zero_grad(plain);
        model_zero_grad(rec);
        uint64_t s = 5;
        int32_t in[2 * 11], tg[2 * 11];
        const int shapes[2][2] = {{B, T}, {1, 7}};
        for (int k = 0; k < 2; k++) {
            const int b = shapes[k][0], t = shapes[k][1];
            random_tokens(in, b * t, c.vocab_size, &s);
            random_tokens(tg, b * t, c.vocab_size, &s);
            int64_t n1 = 0, n2 = 0;
            const double l1 = model_forward_backward(plain, in, tg, b, t, 0.01f, &n1);
            const double l2 = model_forward_backward(rec, in, tg, b, t, 0.01f, &n2);
            ck_assert_msg(memcmp(&l1, &l2, sizeof l1) == 0 && n1 == n2, "%s: loss %.17g vs %.17g",
                          model_type_name(c.type), l1, l2);
            ck_assert_msg(memcmp(model_grads(plain), model_grads(rec), model_num_params(plain) * sizeof(float)) == 0,
                          "%s: gradients differ with recomputation (micro-batch %d)", model_type_name(c.type), k);
        }
        printf("  %s: recompute bit-identical, arena %zu -> %zu bytes\n", model_type_name(c.type),
               model_activation_bytes(plain), model_activation_bytes(rec));
        model_free(plain);
        model_free(rec);
    }
}
END_TEST

// chunk_size only decomposes the scans: every chunked type gives the same loss and gradients, up to
// rounding, at chunks 4, 8, 16 and 64 (one chunk for the whole T = 40).
START_TEST(test_chunk_size_is_a_decomposition) {
    const ModelType chunked[] = {MODEL_MAMBA2, MODEL_LOGLINEAR_MAMBA2, MODEL_GATED_DELTANET,
                                 MODEL_LOGLINEAR_GATED_DELTANET};
    const int chunks[] = {64, 4, 8, 16}, T = 40;
    for (size_t ti = 0; ti < sizeof chunked / sizeof chunked[0]; ti++) {
        uint64_t s = 11;
        int32_t in[40], tg[40];
        random_tokens(in, T, 23, &s);
        random_tokens(tg, T, 23, &s);
        float *ref = NULL;
        double ref_loss = 0;
        size_t n = 0;
        for (size_t ci = 0; ci < sizeof chunks / sizeof chunks[0]; ci++) {
            ModelConfig c = tiny(chunked[ti]);
            c.initializer_range = 0.1f;
            c.chunk_size = chunks[ci];
            Model *m = tu_model(&c, 1, T, 3);
            model_zero_grad(m);
            int64_t count = 0;
            const double loss = model_forward_backward(m, in, tg, 1, T, 1.0f / T, &count) / (double)count;
            n = model_num_params(m);
            if (ci == 0) {
                ref = xmalloc(n * sizeof(float));
                memcpy(ref, model_grads(m), n * sizeof(float));
                ref_loss = loss;
            } else {
                const double gerr = tu_rel_error(model_grads(m), ref, n), lerr = fabs(loss - ref_loss) / ref_loss;
                printf("  %s chunk %d vs %d: loss rel diff %.2e, gradient rel err %.2e\n", model_type_name(c.type),
                       chunks[ci], chunks[0], lerr, gerr);
                ck_assert_msg(lerr < 1e-7 && gerr < 1e-5, "%s: chunk %d changes the result (loss %.2e, grads %.2e)",
                              model_type_name(c.type), chunks[ci], lerr, gerr);
            }
            model_free(m);
        }
        free(ref);
    }
}
END_TEST

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);  // keep the measured errors even when a forked test fails
    Suite *s = suite_create("model");
    TCase *tc = tcase_create("model");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_gradients_transformer);
    tcase_add_test(tc, test_gradients_tied_embeddings);
    tcase_add_test(tc, test_gradients_mamba2);
    tcase_add_test(tc, test_gradients_loglinear_mamba2);
    tcase_add_test(tc, test_gradients_transformer_options);
    tcase_add_test(tc, test_gradients_mamba2_options);
    tcase_add_test(tc, test_gradients_loglinear_mamba2_options);
    tcase_add_test(tc, test_options_take_effect);
    tcase_add_test(tc, test_decode_matches_forward);
    tcase_add_test(tc, test_decode_past_max_context);
    tcase_add_test(tc, test_decode_state_growth);
    tcase_add_test(tc, test_greedy_generation_is_forward_argmax);
    tcase_add_test(tc, test_equal_lambda_reduces_to_mamba2);
    tcase_add_test(tc, test_paper_param_counts);
    tcase_add_test(tc, test_tensor_names);
    tcase_add_test(tc, test_init_rules);
    tcase_add_test(tc, test_gradients_gated_deltanet);
    tcase_add_test(tc, test_gradients_loglinear_gated_deltanet);
    tcase_add_test(tc, test_gradients_gated_deltanet_no_gate);
    tcase_add_test(tc, test_gradients_loglinear_gated_deltanet_no_gate);
    tcase_add_test(tc, test_equal_lambda_reduces_to_gated_deltanet);
    tcase_add_test(tc, test_tensor_names_gdn);
    tcase_add_test(tc, test_init_rules_gdn);
    tcase_add_test(tc, test_recompute_bit_identical);
    tcase_add_test(tc, test_chunk_size_is_a_decomposition);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
