// test_parity.c — parity with an independent float64 PyTorch reference (the role of llm.c's test_gpt2.c).
// Each committed fixture tests/fixtures/parity_<case>.safetensors was written by tests/parity_reference.py
// (naive recurrences / materialised masks in torch autograd, from the math in doc/): a tiny model's
// weights, a batch, the mean loss, the gradient of every parameter, and the losses of a few AdamW steps.
// Here the C model loads the weights, runs forward + backward, and must match the loss and every gradient,
// by name, to 1e-5 relative (per tensor: ||g_C − g_ref||₂ / ||g_ref||₂), then take the same AdamW steps
// and match their losses. Regenerate the fixtures with scripts/make_parity_fixtures.sh (needs PyTorch);
// this test only reads them.
#include <string.h>

#include "config.h"
#include "model.h"
#include "optimizer.h"
#include "safetensors.h"
#include "testutil.h"

static const char *const CASES[] = {
    "transformer_gqa",          // GQA (4 query heads on 2 kv heads)
    "transformer_options",      // + tied embeddings, qk_norm, qkv_bias, window_size 4
    "mamba2_groups",            // n_groups = 2 (grouped gated norm), T = 11 over chunks of 4
    "mamba2_options",           // + use_bias, no conv bias, time_step_limit [0.4, 1.5], tied embeddings
    "loglinear_mamba2_groups",  // n_groups = 2 (whole-d_inner gated norm), 7 levels
    "loglinear_mamba2_options", // + use_bias, time_step_limit, T = 19
    "gated_deltanet",
    "gated_deltanet_no_gate",   // use_gate false, tied embeddings
    "loglinear_gated_deltanet", // T = 19 over chunks of 4
};
#define N_CASES (sizeof CASES / sizeof CASES[0])

static const double GRAD_RTOL = 1e-5, LOSS_RTOL = 1e-5;

static char *fixture_meta(const char *path, const char *key) {
    char *v = NULL;
    Err err;
    ck_assert_msg(safetensors_get_metadata(path, key, &v, &err), "%s", err.msg);
    ck_assert_msg(v != NULL, "%s: no metadata '%s' (regenerate with scripts/make_parity_fixtures.sh)", path, key);
    return v;
}

static double meta_double(const char *path, const char *key) {
    char *v = fixture_meta(path, key);
    double x = strtod(v, NULL);
    free(v);
    return x;
}

// ||a − b||₂ / ||b||₂ (||a − b||₂ when the reference is exactly 0).
static double rel_l2(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        const double e = (double)a[i] - (double)b[i];
        num += e * e;
        den += (double)b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static TensorRef ref_of(const char *name, const ParamInfo *pi, float *data) {
    TensorRef t = {.name = name, .ndim = pi->ndim, .data = data};
    for (int k = 0; k < pi->ndim; k++) t.shape[k] = pi->shape[k];
    return t;
}

static void run_case(const char *name) {
    char path[256];
    snprintf(path, sizeof path, "tests/fixtures/parity_%s.safetensors", name);
    char *cfg_json = fixture_meta(path, "config");
    ModelConfig c;
    Err err;
    ck_assert_msg(model_config_from_json(&c, cfg_json, path, &err), "%s", err.msg);
    free(cfg_json);
    const int B = (int)meta_double(path, "B"), T = (int)meta_double(path, "T"), steps = (int)meta_double(path, "steps");
    Model *m = model_create(&c, B, T, &err);
    ck_assert_msg(m != NULL, "%s", err.msg);

    // Every distinct tensor (a tied lm_head.weight shares the embedding's storage) as param.<name> and
    // grad.<name>, plus the batch and the reference losses.
    const int nt = model_num_tensors(m);
    const size_t numel = model_num_params(m);
    float *ref_grads = xcalloc(numel, sizeof(float));
    float *inputs = xcalloc((size_t)B * T, sizeof(float)), *targets = xcalloc((size_t)B * T, sizeof(float));
    float loss_ref = 0, *adamw_ref = xcalloc((size_t)steps + 1, sizeof(float));
    TensorRef *refs = xcalloc(2 * (size_t)nt + 4, sizeof(TensorRef));
    char (*names)[112] = xcalloc(2 * (size_t)nt, sizeof *names);
    bool *distinct = xcalloc((size_t)nt, sizeof(bool));
    int nr = 0;
    for (int i = 0; i < nt; i++) {
        const ParamInfo *pi = model_tensor(m, i);
        distinct[i] = true;
        for (int j = 0; j < i; j++)
            if (model_tensor(m, j)->offset == pi->offset) distinct[i] = false;
        if (!distinct[i]) continue;
        snprintf(names[2 * i], sizeof names[0], "param.%s", pi->name);
        snprintf(names[2 * i + 1], sizeof names[0], "grad.%s", pi->name);
        refs[nr++] = ref_of(names[2 * i], pi, model_params(m) + pi->offset);
        refs[nr++] = ref_of(names[2 * i + 1], pi, ref_grads + pi->offset);
    }
    refs[nr++] = (TensorRef){.name = "inputs", .ndim = 2, .shape = {B, T}, .data = inputs};
    refs[nr++] = (TensorRef){.name = "targets", .ndim = 2, .shape = {B, T}, .data = targets};
    refs[nr++] = (TensorRef){.name = "loss", .ndim = 1, .shape = {1}, .data = &loss_ref};
    refs[nr++] = (TensorRef){.name = "adamw_losses", .ndim = 1, .shape = {steps + 1}, .data = adamw_ref};
    // strict: a tensor in the fixture that the C model does not have is an error (a name mismatch)
    ck_assert_msg(safetensors_read(path, refs, nr, true, &err), "%s", err.msg);

    int32_t *in = xcalloc((size_t)B * T, sizeof(int32_t)), *tg = xcalloc((size_t)B * T, sizeof(int32_t));
    int64_t counted = 0;
    for (int i = 0; i < B * T; i++) {
        in[i] = (int32_t)inputs[i];
        tg[i] = (int32_t)targets[i];
        counted += tg[i] >= 0;
    }

    // Forward + backward: the mean loss and every gradient.
    model_zero_grad(m);
    int64_t count = 0;
    const double loss = model_forward_backward(m, in, tg, B, T, 1.0f / (float)counted, &count) / (double)count;
    const double loss_err = fabs(loss - loss_ref) / fabs(loss_ref);
    double worst = 0;
    const char *worst_name = "";
    for (int i = 0; i < nt; i++) {
        if (!distinct[i]) continue;
        const ParamInfo *pi = model_tensor(m, i);
        const double e = rel_l2(model_grads(m) + pi->offset, ref_grads + pi->offset, pi->numel);
        if (!(e <= worst)) {
            worst = e;
            worst_name = pi->name;
        }
        ck_assert_msg(e <= GRAD_RTOL, "%s: gradient of %s differs from PyTorch: relative L2 error %.3e", name, pi->name, e);
    }
    char *floor = fixture_meta(path, "torch_fp32_worst");
    printf("%-26s loss %.7f (PyTorch %.7f, rel err %.1e); %d gradients, worst rel L2 err %.2e (%s); PyTorch's "
           "own float32 on this case: %s\n", name, loss, (double)loss_ref, loss_err, nr / 2 - 2, worst, worst_name, floor);
    free(floor);
    ck_assert_msg(loss_err <= LOSS_RTOL, "%s: loss %.8f vs PyTorch %.8f", name, loss, (double)loss_ref);

    // AdamW steps (torch.optim.AdamW, decay on the matrices) from the same weights.
    const AdamWHyper h = {.lr = (float)meta_double(path, "lr"), .beta1 = (float)meta_double(path, "beta1"),
                          .beta2 = (float)meta_double(path, "beta2"), .eps = (float)meta_double(path, "eps"),
                          .weight_decay = (float)meta_double(path, "weight_decay")};
    uint8_t *mask = xcalloc(numel, 1);
    for (int i = 0; i < nt; i++) {
        const ParamInfo *pi = model_tensor(m, i);
        memset(mask + pi->offset, pi->decay, pi->numel);
    }
    float *mom = xcalloc(numel, sizeof(float)), *var = xcalloc(numel, sizeof(float));
    double worst_step = 0;
    printf("%-26s AdamW losses:", name);
    for (int s = 0; s <= steps; s++) {
        model_zero_grad(m);
        const double ls = model_forward_backward(m, in, tg, B, T, 1.0f / (float)counted, &count) / (double)count;
        const double e = fabs(ls - adamw_ref[s]) / fabs(adamw_ref[s]);
        worst_step = fmax(worst_step, e);
        printf(" %.6f (%.1e)", ls, e);
        ck_assert_msg(e <= LOSS_RTOL, "%s: loss after %d AdamW steps %.8f vs PyTorch %.8f", name, s, ls, (double)adamw_ref[s]);
        if (s < steps) adamw_update(model_params(m), model_grads(m), mom, var, mask, numel, &h, s + 1);
    }
    printf("; worst rel err %.1e\n", worst_step);

    free(mask); free(mom); free(var); free(in); free(tg); free(ref_grads); free(inputs); free(targets);
    free(adamw_ref); free(refs); free(names); free(distinct);
    model_free(m);
}

START_TEST(test_parity) { run_case(CASES[_i]); }
END_TEST

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    Suite *s = suite_create("parity");
    TCase *tc = tcase_create("parity");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_parity, 0, (int)N_CASES);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
