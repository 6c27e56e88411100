// bench_model.c — `make bench`: training-step speed of whole models (forward + backward + AdamW).
//
// 1. The stated Transformer config: d=512, 8 layers, 8 heads, T=1024, B=4, GPT-2 vocabulary (50257):
//    ms/step, tokens/s, achieved GFLOP/s and MFU against the machine's fp32 sgemm peak (peak.h: the cached
//    probe, or `bench_model --peak_gflops X`).
// 2. Transformer, Mamba-2 and log-linear Mamba-2 at one size (d=256, 4 layers, 8 heads of 64 for the Mamba
//    models, N=64, vocabulary 4096 so the LM head does not hide the mixers) at T = 1024 ... 8192, B=1.
// FLOPs are the model's useful FLOPs (model_flops_per_token, the same count as train's progress line);
// recomputation is not counted.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blas_setup.h"
#include "levels.h"
#include "model.h"
#include "optimizer.h"
#include "peak.h"
#include "rng.h"

typedef struct {
    double ms, tok_s, gflops;
} StepTiming;

static StepTiming time_steps(const ModelConfig *c, int B, int T, int reps) {
    Err err;
    Model *m = model_create(c, B, T, &err);
    if (!m) die("%s", err.msg);
    model_init(m, 1);
    const size_t numel = model_num_params(m);
    float *m1 = xcalloc(numel, sizeof(float)), *m2 = xcalloc(numel, sizeof(float));
    int32_t *in = xmalloc((size_t)B * T * sizeof(int32_t)), *tg = xmalloc((size_t)B * T * sizeof(int32_t));
    Rng r;
    rng_seed(&r, 3);
    for (int i = 0; i < B * T; i++) {
        in[i] = (int32_t)(rng_next(&r) % (uint64_t)c->vocab_size);
        tg[i] = (int32_t)(rng_next(&r) % (uint64_t)c->vocab_size);
    }
    AdamWHyper h = {.lr = 1e-4f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f};
    double best = INFINITY;
    for (int rep = 0; rep < reps + 1; rep++) {   // the first step warms caches and page-faults the arena
        double t0 = now_seconds();
        int64_t count;
        model_zero_grad(m);
        model_forward_backward(m, in, tg, B, T, 1.0f / (float)(B * T), &count);
        double norm = grad_global_norm(model_grads(m), numel);
        if (norm > 1.0) grad_scale(model_grads(m), numel, (float)(1.0 / norm));
        adamw_update(model_params(m), model_grads(m), m1, m2, NULL, numel, &h, rep + 1);
        double dt = now_seconds() - t0;
        if (rep > 0 && dt < best) best = dt;
    }
    StepTiming st = {.ms = best * 1e3, .tok_s = (double)B * T / best};
    st.gflops = model_flops_per_token(m, T) * st.tok_s / 1e9;
    free(m1);
    free(m2);
    free(in);
    free(tg);
    model_free(m);
    return st;
}

static ModelConfig small_config(ModelType t, int d, int L, int V, int max_len) {
    ModelConfig c;
    model_config_defaults(&c, t);
    c.vocab_size = V;
    c.hidden_size = d;
    c.num_layers = L;
    c.max_seq_len = max_len;
    c.initializer_range = 0.02f;
    c.intermediate_size = 256 * ((d * 8 / 3 + 255) / 256);
    if (t == MODEL_TRANSFORMER) {
        c.num_heads = d / 64;
        c.num_kv_heads = c.num_heads;
        c.head_dim = 64;
    } else if (model_type_is_gdn(t)) {   // Dk = d, Dv = 2d: the Mamba mixers' d_inner
        c.num_heads = d / 64;
        c.head_dim = 64;
        c.expand_v = 2;
        c.chunk_size = 64;
        c.num_levels = 0;
        if (model_type_is_loglinear(t)) c.num_levels = levels_needed(max_len);
    } else {
        c.head_dim = 64;
        c.expand = 2;
        c.d_inner = 2 * d;
        c.num_heads = c.d_inner / 64;
        c.state_size = 64;
        c.n_groups = 1;
        c.chunk_size = 64;   // the default (config.c)
        c.num_levels = model_type_is_loglinear(t) ? levels_needed(max_len) : 0;
    }
    return c;
}

int main(int argc, char **argv) {
    blas_setup(argv);
    double given = 0;
    bool transformer_only = false;   // the step the PyTorch peer also times (scripts/bench_side_by_side.sh)
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--peak_gflops") == 0 && i + 1 < argc) given = atof(argv[++i]);
        else if (strcmp(argv[i], "--transformer-only") == 0) transformer_only = true;
        else die("usage: %s [--peak_gflops GFLOPS] [--transformer-only]", argv[0]);
    }
    const Peak peak = peak_resolve(given, "--peak_gflops");
    printf("loglinear.c benchmark | %d threads | BLAS core %s (%s) | MFU against %.1f GFLOP/s (%s)\n\n",
           threads_count(), blas_core_name(), blas_core_source(), peak.gflops, peak.source);

    // 1. The stated Transformer.
    {
        ModelConfig c = small_config(MODEL_TRANSFORMER, 512, 8, 50257, 2048);
        c.num_heads = 8;
        c.num_kv_heads = 8;
        c.head_dim = 64;
        const int B = 4, T = 1024;
        StepTiming s = time_steps(&c, B, T, 3);
        printf("Transformer d=512 L=8 H=8 I=%d V=50257, B=%d T=%d: %.0f ms/step | %.0f tokens/s | %.1f GFLOP/s | MFU %.1f%%\n\n",
               c.intermediate_size, B, T, s.ms, s.tok_s, s.gflops, 100 * s.gflops / peak.gflops);
    }

    if (transformer_only) return 0;

    // 2. Scaling with T.
    const int Ts[] = {1024, 2048, 4096, 8192};
    const ModelType types[] = {MODEL_TRANSFORMER, MODEL_MAMBA2, MODEL_LOGLINEAR_MAMBA2, MODEL_GATED_DELTANET,
                               MODEL_LOGLINEAR_GATED_DELTANET};
    printf("d=256 L=4 V=4096 B=1 (Mamba: H=8 P=64 N=64, chunk 64; Transformer: H=4 hd=64; GDN: H=4 "
           "dk=64 dv=128, chunk 64)\n");
    printf("%-18s", "ms/step (tok/s)");
    for (size_t i = 0; i < sizeof Ts / sizeof Ts[0]; i++) printf(" | %19s%-5d", "T=", Ts[i]);
    printf("\n");
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        printf("%-18s", model_type_name(types[k]));
        for (size_t i = 0; i < sizeof Ts / sizeof Ts[0]; i++) {
            ModelConfig c = small_config(types[k], 256, 4, 4096, 16384);
            StepTiming s = time_steps(&c, 1, Ts[i], 2);
            printf(" | %7.0f ms (%7.0f/s)", s.ms, s.tok_s);
        }
        printf("\n");
    }
    return 0;
}
