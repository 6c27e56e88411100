// train.c — the training program.
//
//   ./train --config transformer.json [--steps 200 --lr 3e-4 ...]   train (any train key can be overridden)
//   ./train --resume runs/transformer [--steps 400]                  continue bit-identically
//   ./train --config x.json --dump-grads grads.safetensors           one batch: inputs, loss, all gradients
//
// Each step: grad_accum micro-batches of forward+backward, NaN/inf check, global-norm clipping, AdamW
// with warmup+cosine, a progress line and a JSON line in <run_dir>/log.jsonl; periodic validation,
// text samples and atomic checkpoints.
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "blas_setup.h"
#include "checkpoint.h"
#include "config.h"
#include "data.h"
#include "data_parallel.h"
#include "dist.h"
#include "model.h"
#include "model_io.h"
#include "optimizer.h"
#include "peak.h"
#include "resume_check.h"
#include "rng.h"
#include "run_dir.h"
#include "safetensors.h"
#include "signals.h"
#include "tokenizer.h"
#include "train_state.h"

typedef struct {
    const char *config_path;
    const char *resume;
    const char *dump_grads;
    long long stop_at;         // --stop-at: checkpoint and exit after this step (0 = run to the end)
    bool eval_only;            // --eval: validation loss of the (resumed) model, then exit
    const char *positions;     // --positions FILE (with --eval): mean loss at each position, as TSV
    const char *init_from;     // --init-from: start from these weights (a model.safetensors, e.g. from PyTorch)
    bool overwrite;            // --overwrite: a fresh run may replace the run already in run_dir
    const char *overrides[128];
    int noverrides;
} Args;

static void usage(FILE *f) {
    fprintf(f,
            "usage: ./train --config FILE [--KEY VALUE ...]\n"
            "       ./train --resume RUN_DIR|CHECKPOINT_DIR [--config FILE] [--KEY VALUE ...]\n"
            "       ./train --config FILE --dump-grads OUT.safetensors\n"
            "       ./train --resume RUN_DIR --eval [--eval_batches N] [--positions LOSS.tsv]\n"
            "       ./train --config FILE --init-from MODEL.safetensors|DIR [--KEY VALUE ...]\n"
            "       add --stop-at STEP to checkpoint and exit after STEP (e.g. to fit a job time limit)\n"
            "       add --overwrite to start a new run in a run_dir that holds one (deletes its checkpoints, log)\n"
            "\n"
            "FILE is looked up as given, then under configs/. It is our format ({\"model\":{...},\"train\":{...}})\n"
            "or one of the paper's HF-style model configs (train defaults then apply).\n"
            "--KEY VALUE (or --KEY=VALUE) overrides any field of the train section, e.g. --steps 200 --lr 3e-4 --batch_size 4\n"
            "  --seq_len 512 --grad_accum 2 --seed 7 --threads 2 --run_dir runs/x --eval_every 50 ...\n"
            "  --recompute 1 keeps only each block's input and recomputes the rest in the backward (less memory,\n"
            "  same results); --peak_gflops X sets the MFU peak (default: a cached sgemm probe).\n"
            "--resume continues from the latest checkpoint in RUN_DIR (or from CHECKPOINT_DIR) exactly as if\n"
            "  the run had not stopped; overrides (e.g. a larger --steps) apply on top of the saved config.\n"
            "Ctrl-C or SIGTERM: the current step is finished, a checkpoint saved and the resume command printed\n"
            "  (exit status 130 / 143); a second signal stops at once.\n"
            "--eval prints the validation loss over eval_batches batches sampled from the whole validation set\n"
            "  (all of it if eval_batches is large enough) and exits; --positions also writes the mean loss\n"
            "  at each position 0..seq_len-1 (TSV: position, loss, count), the paper's per-position curve.\n"
            "--init-from starts a new run (step 0, fresh optimizer) from the weights of a model.safetensors with\n"
            "  the paper's tensor names, e.g. one written by PyTorch, or a checkpoint directory holding one.\n"
            "--dump-grads writes the first batch's input_ids, labels, loss and every parameter gradient\n"
            "  (tensor names as the paper's PyTorch models) to a safetensors file, then exits.\n");
}

// Options of the program (besides the config keys, which are all overrides).
static const char *const OPTIONS_WITH_VALUE[] = {"config", "resume", "dump-grads", "positions", "init-from", "stop-at"};
static const char *const OPTION_FLAGS[] = {"help", "eval", "overwrite"};
#define N_OPTIONS_WITH_VALUE (sizeof OPTIONS_WITH_VALUE / sizeof OPTIONS_WITH_VALUE[0])
#define N_OPTION_FLAGS (sizeof OPTION_FLAGS / sizeof OPTION_FLAGS[0])

static bool is_option_with_value(const char *name) {
    for (size_t i = 0; i < N_OPTIONS_WITH_VALUE; i++)
        if (strcmp(name, OPTIONS_WITH_VALUE[i]) == 0) return true;
    return false;
}

_Noreturn static void die_unknown_option(const char *arg, const char *name) {
    const char *opts[N_OPTIONS_WITH_VALUE + N_OPTION_FLAGS];
    for (size_t i = 0; i < N_OPTIONS_WITH_VALUE; i++) opts[i] = OPTIONS_WITH_VALUE[i];
    for (size_t i = 0; i < N_OPTION_FLAGS; i++) opts[N_OPTIONS_WITH_VALUE + i] = OPTION_FLAGS[i];
    char hint[128];
    config_suggest(name, opts, N_OPTIONS_WITH_VALUE + N_OPTION_FLAGS, hint, sizeof hint);
    // Every suggestion (options and config keys alike) is written with its dashes on the command line.
    char shown[160] = "";
    if (strncmp(hint, " (did you mean '", 16) == 0) snprintf(shown, sizeof shown, " (did you mean '--%s", hint + 16);
    die("unknown option '%s'%s; see --help", arg, shown);
}

static Args parse_args(int argc, char **argv) {
    Args a = {0};
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (strcmp(s, "--help") == 0 || strcmp(s, "-h") == 0) {
            usage(stdout);
            exit(0);
        }
        if (strcmp(s, "--eval") == 0) {
            a.eval_only = true;
            continue;
        }
        if (strcmp(s, "--overwrite") == 0) {
            a.overwrite = true;
            continue;
        }
        if (strncmp(s, "--", 2) != 0) die("unexpected argument '%s' (options start with --; see --help)", s);
        // --name value or --name=value
        char name[128];
        const char *eq = strchr(s + 2, '=');
        const size_t nlen = eq ? (size_t)(eq - (s + 2)) : strlen(s + 2);
        if (nlen == 0 || nlen >= sizeof name) die_unknown_option(s, s + 2);
        memcpy(name, s + 2, nlen);
        name[nlen] = '\0';
        if (!is_option_with_value(name) && !config_is_override_key(name)) die_unknown_option(s, name);
        const char *v;
        if (eq) v = eq + 1;
        else if (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0) v = argv[++i];
        else die("option '--%s' needs a value, e.g. --%s VALUE or --%s=VALUE (see --help)", name, name, name);
        if (strcmp(name, "config") == 0) a.config_path = v;
        else if (strcmp(name, "resume") == 0) a.resume = v;
        else if (strcmp(name, "dump-grads") == 0) a.dump_grads = v;
        else if (strcmp(name, "positions") == 0) a.positions = v;
        else if (strcmp(name, "init-from") == 0) a.init_from = v;
        else if (strcmp(name, "stop-at") == 0) a.stop_at = option_ll("--stop-at", v, 1);
        else {
            if (a.noverrides >= 128) die("too many overrides");
            size_t n = strlen(name) + strlen(v) + 2;
            char *kv = xmalloc(n);
            snprintf(kv, n, "%s=%s", name, v);
            a.overrides[a.noverrides++] = kv;
        }
    }
    if (a.positions && !a.eval_only) die("--positions goes with --eval (see --help)");
    if (a.init_from && a.resume) die("--init-from starts a new run and --resume continues one: give only one of them");
    if (!a.config_path && !a.resume) {
        usage(stderr);
        die("give --config FILE (or --resume RUN_DIR)");
    }
    return a;
}

// ---------------------------------------------------------------------------------------------------

typedef struct {
    Config cfg;
    char config_origin[1024];
    Model *model;
    TensorRef *refs;
    float *m1, *m2;            // AdamW moments, same layout as the flat params
    uint8_t *decay_mask;       // (numel)
    DataLoader *train, *val;
    Decoder *decoder;
    int32_t *inputs, *targets; // (B, T)
    FILE *log;
    TrainState st;
    char ckpt_dir[1024];       // the checkpoint resumed from ("" for a fresh run)
    uint64_t ckpt_seed;        // train.seed of its train_config.json (before any --seed override)
} Trainer;

// Tensors with their own storage (and so their own AdamW moments): all but a tied lm_head alias, which
// the model table lists last.
static int num_moment_tensors(const Trainer *t) {
    return model_num_tensors(t->model) - (t->cfg.model.tie_word_embeddings ? 1 : 0);
}

static void save_checkpoint(Trainer *t) {
    if (!dist_is_root()) return;   // the weights are the same on every rank
    const TrainConfig *tc = &t->cfg.train;
    char *hf = model_config_to_hf_json(&t->cfg.model);
    char *ours = dp_config_json(&t->cfg);   // grad_accum over all ranks: any rank count can resume
    t->st.data = dataloader_position(t->train);
    char *state = train_state_to_json(&t->st, tc->seed);
    CheckpointData cd = {.params = t->refs, .n = model_num_tensors(t->model), .exp_avg = t->m1, .exp_avg_sq = t->m2,
                         .n_moments = num_moment_tensors(t), .hf_config_json = hf, .config_json = ours,
                         .state_json = state};
    Err err;
    double t0 = now_seconds();
    if (!checkpoint_save(tc->run_dir, t->st.step, &cd, tc->keep_last, &err)) die("%s", err.msg);
    char name[64];
    printf("saved checkpoint %s/%s (%.2f s)\n", tc->run_dir, checkpoint_dir_name(name, sizeof name, t->st.step),
           now_seconds() - t0);
    free(hf);
    free(ours);
    free(state);
}

// Mean validation loss over eval_batches batches of the (fixed, seeded) validation sample. With
// pos_sum/pos_count (T each) non-NULL, also accumulates the loss at each position of the sequences. With
// accuracy non-NULL, also the fraction of counted targets predicted exactly (argmax), e.g. MQAR answers.
static double evaluate(Trainer *t, double *pos_sum, int64_t *pos_count, double *accuracy) {
    const TrainConfig *tc = &t->cfg.train;
    const int B = tc->batch_size, T = tc->seq_len;
    dataloader_rewind(t->val);   // the same validation sample every time
    double sum = 0;
    int64_t count = 0, correct = 0;
    int batches = tc->eval_batches;
    int64_t available = dataloader_num_windows(t->val) / B;
    if (batches > available) batches = (int)available;
    float *token_loss = pos_sum ? xmalloc((size_t)B * T * sizeof(float)) : NULL;
    int32_t *pred = accuracy ? xmalloc((size_t)B * T * sizeof(int32_t)) : NULL;
    for (int i = 0; i < batches; i++) {
        int64_t c = 0;
        if (!dp_eval_batch_is_mine(t->val, i, B)) continue;   // another rank's share of the sample
        dataloader_next(t->val, t->inputs, t->targets);
        sum += model_forward_eval(t->model, t->inputs, t->targets, B, T, &c, token_loss, pred);
        count += c;
        for (int64_t k = 0; token_loss && k < (int64_t)B * T; k++) {
            if (t->targets[k] < 0) continue;
            pos_sum[k % T] += token_loss[k];
            pos_count[k % T]++;
        }
        for (int64_t k = 0; pred && k < (int64_t)B * T; k++) correct += t->targets[k] >= 0 && pred[k] == t->targets[k];
    }
    free(token_loss);
    free(pred);
    dp_eval_reduce(&sum, &count, pos_sum, pos_count, T);
    double correct_all = (double)correct;   // over every rank's share, as the loss
    dist_sum_doubles(&correct_all, 1);
    if (accuracy) *accuracy = count ? correct_all / (double)count : NAN;
    return count ? sum / (double)count : NAN;
}

static int sample_token(const float *logits, int V, Rng *r) {
    // Temperature 1 sampling with a max-subtracted softmax in double.
    double mx = -INFINITY, sum = 0;
    for (int i = 0; i < V; i++) mx = logits[i] > mx ? logits[i] : mx;
    for (int i = 0; i < V; i++) sum += exp(logits[i] - mx);
    double u = rng_uniform(r) * sum, acc = 0;
    for (int i = 0; i < V; i++) {
        acc += exp(logits[i] - mx);
        if (acc >= u) return i;
    }
    return V - 1;
}

static void print_sample(Trainer *t) {
    if (!dist_is_root()) return;
    const TrainConfig *tc = &t->cfg.train;
    const ModelConfig *mc = &t->cfg.model;
    // The model is defined up to its maximum context (the log-linear state has levels for that many
    // tokens): samples stop there.
    const int max_new = LL_MIN(tc->sample_tokens, mc->max_seq_len - 1);
    if (max_new <= 0) return;
    const int V = mc->vocab_size;
    const int eot = t->decoder ? decoder_eot(t->decoder) : V - 1;
    DecodeState *ds = decode_create(t->model, max_new + 1);
    float *logits = xmalloc((size_t)V * sizeof(float));
    int32_t *ids = xmalloc((size_t)max_new * sizeof(int32_t));
    Rng r;
    rng_seed(&r, rng_mix(tc->seed, (uint64_t)t->st.step));   // independent of the training stream
    int32_t tok = eot;
    int n = 0;
    for (; n < max_new; n++) {
        decode_step(t->model, ds, tok, logits);
        tok = sample_token(logits, V, &r);
        if (tok == eot) break;
        ids[n] = tok;
    }
    printf("sample: ");
    if (t->decoder) {
        size_t cap = (size_t)n * 64 + 16;
        char *text = xmalloc(cap), *shown = xmalloc(4 * cap + 1);
        const size_t len = LL_MIN(decoder_decode(t->decoder, ids, n, text, cap), cap - 1);
        text_escape(text, len, shown, 4 * cap + 1);
        printf("%s\n", shown);
        free(text);
        free(shown);
    } else {
        for (int i = 0; i < n; i++) printf("%d ", ids[i]);
        printf("\n");
    }
    free(ids);
    free(logits);
    decode_free(ds);
}

static void dump_grads(Trainer *t, const char *path) {
    const TrainConfig *tc = &t->cfg.train;
    const int B = tc->batch_size, T = tc->seq_len;
    dataloader_next(t->train, t->inputs, t->targets);
    model_zero_grad(t->model);
    int64_t count = 0;
    double sum = model_forward_backward(t->model, t->inputs, t->targets, B, T, 1.0f / (float)(B * T), &count);
    float loss = (float)(sum / (double)count);
    int n = model_num_tensors(t->model);
    TensorRef *refs = xcalloc((size_t)n + 3, sizeof *refs);
    float *in_f = xmalloc((size_t)B * T * sizeof(float)), *tg_f = xmalloc((size_t)B * T * sizeof(float));
    for (int i = 0; i < B * T; i++) { in_f[i] = (float)t->inputs[i]; tg_f[i] = (float)t->targets[i]; }
    refs[0] = (TensorRef){.name = "input_ids", .ndim = 2, .shape = {B, T}, .data = in_f};
    refs[1] = (TensorRef){.name = "labels", .ndim = 2, .shape = {B, T}, .data = tg_f};
    refs[2] = (TensorRef){.name = "loss", .ndim = 1, .shape = {1}, .data = &loss};
    for (int i = 0; i < n; i++) {
        refs[3 + i] = t->refs[i];
        refs[3 + i].data = model_grads(t->model) + model_tensor(t->model, i)->offset;
    }
    const char *meta[] = {"content", "gradients of the mean token loss of one batch; input_ids/labels stored as F32",
                          "model_type", model_type_hf_name(t->cfg.model.type), NULL};
    Err err;
    if (!safetensors_write(path, refs, n + 3, meta, &err)) die("%s", err.msg);
    printf("wrote %s: loss %.6f, %d gradient tensors, inputs (%d, %d)\n", path, loss, n, B, T);
    free(refs);
    free(in_f);
    free(tg_f);
}

// ---------------------------------------------------------------------------------------------------
// Setup

// The configuration: from the checkpoint when resuming, else from --config; then the overrides, the
// default run directory, validation, and the thread count.
// Refuses model overrides on resume that would change a tensor of the checkpoint (names or shapes); others
// (e.g. chunk_size, norm_eps) are fine.
static void check_resume_shapes(const ModelConfig *saved, const ModelConfig *now, const char *ckpt_dir) {
    int na, nb;
    ParamInfo *a = model_table(saved, &na), *b = model_table(now, &nb);
    const char *diff = model_config_first_difference(saved, now);
    for (int i = 0; diff && i < LL_MAX(na, nb); i++) {
        bool same = i < na && i < nb && strcmp(a[i].name, b[i].name) == 0 && a[i].ndim == b[i].ndim;
        for (int k = 0; same && k < a[i].ndim; k++) same = a[i].shape[k] == b[i].shape[k];
        if (!same)
            die("the model overrides change model.%s, which changes tensor %s of the checkpoint %s; a resumed run "
                "keeps the shapes it was started with (start a new run, optionally with --init-from, instead)",
                diff, i < na ? a[i].name : b[i].name, ckpt_dir);
    }
    free(a);
    free(b);
}

static void setup_config(Trainer *t, const Args *args) {
    Err err;
    // Model keys among the overrides are applied while the model section is read (derived sizes follow).
    const char *model_kv[128];
    bool is_model[128] = {false};
    int n_model = 0;
    for (int i = 0; i < args->noverrides; i++) {
        char key[128];   // overrides are "key=value" (parse_args)
        snprintf(key, sizeof key, "%.*s", (int)strcspn(args->overrides[i], "="), args->overrides[i]);
        if ((is_model[i] = config_is_model_key(key))) model_kv[n_model++] = args->overrides[i];
    }
    if (args->resume) {
        if (!checkpoint_resolve(args->resume, t->ckpt_dir, sizeof t->ckpt_dir, &err)) die("%s", err.msg);
        char path[1100];
        snprintf(path, sizeof path, "%s/train_config.json", t->ckpt_dir);
        if (!config_load_with_model_overrides(&t->cfg, path, model_kv, n_model, t->config_origin,
                                              sizeof t->config_origin, &err))
            die("%s", err.msg);
        t->ckpt_seed = t->cfg.train.seed;
        if (n_model) {
            Config saved;
            if (!config_load(&saved, path, NULL, 0, &err)) die("%s", err.msg);
            check_resume_shapes(&saved.model, &t->cfg.model, t->ckpt_dir);
        }
        dp_resume_accum(&t->cfg.train, t->ckpt_dir, (char *const *)args->overrides, args->noverrides);
        if (args->config_path) {
            Config other;
            char origin[1024];
            if (!config_load_with_model_overrides(&other, args->config_path, model_kv, n_model, origin, sizeof origin,
                                                  &err))
                die("%s", err.msg);
            const char *diff = model_config_first_difference(&t->cfg.model, &other.model);
            if (diff)
                die("--config %s describes a different model than the checkpoint %s (model.%s differs); resume "
                    "without --config or with the config the run was started with", origin, t->ckpt_dir, diff);
        }
    } else {
        if (!config_load_with_model_overrides(&t->cfg, args->config_path, model_kv, n_model, t->config_origin,
                                              sizeof t->config_origin, &err))
            die("%s", err.msg);
    }
    for (int i = 0; i < args->noverrides; i++)
        if (!is_model[i] && !config_override(&t->cfg, args->overrides[i], &err)) die("%s", err.msg);
    TrainConfig *tc = &t->cfg.train;
    if (!tc->run_dir[0]) {
        const char *base = strrchr(t->config_origin, '/');
        base = base ? base + 1 : t->config_origin;
        const char *dot = strrchr(base, '.');
        int stem_len = dot ? (int)(dot - base) : (int)strlen(base);
        if (stem_len > 200) stem_len = 200;
        snprintf(tc->run_dir, sizeof tc->run_dir, "runs/%.*s", stem_len, base);
    }
    if (tc->warmup_steps > tc->steps && tc->steps > 0) {
        // Short smoke runs (--steps 3 on a config with warmup 40) should just work.
        printf("note: warmup_steps %d exceeds steps %d; warming up over all %d steps instead\n", tc->warmup_steps,
               tc->steps, tc->steps);
        tc->warmup_steps = tc->steps;
    }
    if (!config_validate(&t->cfg, t->config_origin, &err)) die("%s", err.msg);
    dp_threads_setup(tc->threads);
}

// Refuses, before allocating anything, a run whose model or batch cannot fit in this machine's memory,
// naming the settings that make it too large and the bytes it would need.
static void check_memory(const Trainer *t) {
    const TrainConfig *tc = &t->cfg.train;
    const ModelConfig *mc = &t->cfg.model;
    size_t pf, af;
    model_memory_floats(mc, tc->batch_size, tc->seq_len, tc->recompute, &pf, &af);
    // weights, gradients, two AdamW moments (floats) and the weight-decay mask (bytes)
    const double model_bytes = 17.0 * (double)pf, act_bytes = 4.0 * (double)af;
    const double phys = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE);
    if (phys <= 0 || model_bytes + act_bytes <= phys) return;
    if (model_bytes > phys)
        die("%s: the model is too large for this machine: vocab_size %d, hidden_size %d, num_hidden_layers %d give "
            "%.3g parameters, whose weights, gradients and AdamW moments need %.1f GB, and the machine has %.1f GB; "
            "lower hidden_size, num_hidden_layers or vocab_size", t->config_origin, mc->vocab_size, mc->hidden_size,
            mc->num_layers, (double)pf, model_bytes / 1e9, phys / 1e9);
    die("%s: the batch is too large for this machine: the activations of batch_size %d x seq_len %d need %.1f GB "
        "(the model another %.1f GB), and the machine has %.1f GB; lower batch_size or seq_len (grad_accum keeps "
        "the tokens per step)", t->config_origin, tc->batch_size, tc->seq_len, act_bytes / 1e9, model_bytes / 1e9,
        phys / 1e9);
}

// The model with its optimizer state, the data loaders, the tokenizer's decoder, the batch buffers.
static void setup_model_and_data(Trainer *t) {
    const TrainConfig *tc = &t->cfg.train;
    const ModelConfig *mc = &t->cfg.model;
    const int B = tc->batch_size, T = tc->seq_len;
    Err err;
    check_memory(t);
    t->model = model_create_recompute(mc, B, T, tc->recompute, &err);
    if (!t->model) die("%s: %s", t->config_origin, err.msg);
    const size_t numel = model_num_params(t->model);
    t->refs = model_tensor_refs(t->model);
    t->m1 = xcalloc(numel, sizeof(float));
    t->m2 = xcalloc(numel, sizeof(float));
    t->decay_mask = xcalloc(numel, 1);
    for (int i = 0; i < model_num_tensors(t->model); i++) {
        const ParamInfo *pi = model_tensor(t->model, i);
        bool decay = tc->decay == DECAY_ALL || (tc->decay == DECAY_MATRICES && pi->decay);
        memset(t->decay_mask + pi->offset, decay ? 1 : 0, pi->numel);
    }

    if (!dataloader_open(&t->train, tc->train_data, B, T, mc->vocab_size, tc->seed, true, &err))
        die("%s (train_data in %s)", err.msg, t->config_origin);
    // The validation loader is shuffled too (with a fixed seed, rewound before every evaluation): the first
    // eval_batches batches are then a uniform sample of the whole validation set, the same each time,
    // rather than its first documents only.
    if (!dataloader_open(&t->val, tc->val_data, B, T, mc->vocab_size, tc->seed, true, &err))
        die("%s (val_data in %s)", err.msg, t->config_origin);
    if (tc->tokenizer[0]) {
        if (!decoder_open(&t->decoder, tc->tokenizer, &err)) {
            fprintf(stderr, "warning: %s; samples will be printed as token ids\n", err.msg);
            t->decoder = NULL;
        } else if (decoder_vocab_size(t->decoder) > mc->vocab_size) {
            die("tokenizer %s has %d tokens but the model's vocab_size is %d; set model.vocab_size >= %d in %s",
                tc->tokenizer, decoder_vocab_size(t->decoder), mc->vocab_size, decoder_vocab_size(t->decoder),
                t->config_origin);
        }
    }
    t->inputs = xmalloc((size_t)B * T * sizeof(int32_t));
    t->targets = xmalloc((size_t)B * T * sizeof(int32_t));
}

// The weights (and optimizer state, data position) of the resumed checkpoint, else the paper's
// initialisation, optionally replaced by the --init-from weights.
static void setup_weights(Trainer *t, const Args *args) {
    Err err;
    if (t->ckpt_dir[0]) {
        const char *dir = t->ckpt_dir;
        if (!checkpoint_load_model(dir, t->refs, model_num_tensors(t->model), &err)) die("%s", err.msg);
        if (!checkpoint_load_optimizer(dir, t->refs, num_moment_tensors(t), t->m1, t->m2, &err)) die("%s", err.msg);
        char *sj = NULL;
        if (!checkpoint_read_text(dir, "state.json", &sj, &err)) die("%s", err.msg);
        char origin[1100];
        snprintf(origin, sizeof origin, "%s/state.json", dir);
        const TrainStateExpect expect = {.step = checkpoint_step(dir), .seed = &t->ckpt_seed,
                                         .num_windows = dataloader_num_windows(t->train)};
        if (!train_state_from_json(&t->st, sj, origin, &expect, &err) ||
            !resume_check_moments(&t->st, t->refs, num_moment_tensors(t), t->m1, t->m2, dir, &err))
            die("%s", err.msg);
        free(sj);
        if (!dataloader_seek(t->train, t->st.data, &err)) die("%s", err.msg);
        return;
    }
    model_init(t->model, t->cfg.train.seed);
    if (args->init_from) {
        char path[1100];
        struct stat sb;
        bool is_dir = stat(args->init_from, &sb) == 0 && S_ISDIR(sb.st_mode);
        snprintf(path, sizeof path, is_dir ? "%s/model.safetensors" : "%s", args->init_from);
        // Strict: every tensor of the config present with its exact shape, nothing extra; CRCs checked
        // when the file has them (PyTorch's writer adds none).
        if (!safetensors_read(path, t->refs, model_num_tensors(t->model), true, &err)) die("--init-from: %s", err.msg);
        printf("initialised the weights from %s\n", path);
    }
}

static void trainer_free(Trainer *t) {
    if (t->log) fclose(t->log);
    dataloader_close(t->train);
    dataloader_close(t->val);
    decoder_free(t->decoder);
    model_free(t->model);
    free(t->refs);
    free(t->m1);
    free(t->m2);
    free(t->decay_mask);
    free(t->inputs);
    free(t->targets);
}

// ---------------------------------------------------------------------------------------------------
// Evaluation only (--eval)

static void eval_only(Trainer *t, const Args *args) {
    const TrainConfig *tc = &t->cfg.train;
    const int B = tc->batch_size, T = tc->seq_len;
    const int64_t avail = dataloader_num_windows(t->val) / B;
    double *pos_sum = args->positions ? xcalloc((size_t)T, sizeof(double)) : NULL;
    int64_t *pos_count = args->positions ? xcalloc((size_t)T, sizeof(int64_t)) : NULL;
    double acc = NAN;
    const double loss = evaluate(t, pos_sum, pos_count, dataloader_is_task(t->val) ? &acc : NULL);
    if (args->positions) {
        FILE *f = fopen(args->positions, "w");
        if (!f) die("cannot write %s (--positions): %s", args->positions, strerror(errno));
        fprintf(f, "position\tloss\tcount\n");
        for (int p = 0; p < T; p++)
            fprintf(f, "%d\t%.6f\t%lld\n", p, pos_count[p] ? pos_sum[p] / (double)pos_count[p] : NAN,
                    (long long)pos_count[p]);
        if (fclose(f) != 0) die("cannot write %s (--positions): %s", args->positions, strerror(errno));
        printf("wrote the per-position validation loss to %s\n", args->positions);
        free(pos_sum);
        free(pos_count);
    }
    printf("%s at step %lld: val loss %.4f (ppl %.2f) over %lld of %lld validation batches\n",
           t->ckpt_dir[0] ? t->ckpt_dir : "initial model", (long long)t->st.step, loss, exp(loss),
           (long long)LL_MIN((int64_t)tc->eval_batches, avail), (long long)avail);
    if (!isnan(acc)) printf("val accuracy %.4f (answer positions)\n", acc);
}

// ---------------------------------------------------------------------------------------------------
// Logging

// "12.3 MiB" / "4.56 GiB" into buf (24 bytes).
static const char *fmt_bytes(char *buf, double bytes) {
    const double MIB = 1024.0 * 1024.0;
    if (bytes < 1024.0 * MIB) snprintf(buf, 24, "%.1f MiB", bytes / MIB);
    else snprintf(buf, 24, "%.2f GiB", bytes / (1024.0 * MIB));
    return buf;
}

// The run's description: model, batch, schedule, threads, data, memory, run directory.
static void print_banner(const Trainer *t) {
    const TrainConfig *tc = &t->cfg.train;
    const ModelConfig *mc = &t->cfg.model;
    const int B = tc->batch_size, T = tc->seq_len;
    size_t unique_params = 0;
    for (int i = 0; i < model_num_tensors(t->model); i++) {
        const ParamInfo *pi = model_tensor(t->model, i);
        if (!(mc->tie_word_embeddings && strcmp(pi->name, "lm_head.weight") == 0)) unique_params += pi->numel;
    }
    printf("loglinear.c | %s (%s) | %.2fM params | d=%d L=%d H=%d V=%d\n", model_type_name(mc->type),
           t->config_origin, (double)unique_params / 1e6, mc->hidden_size, mc->num_layers, mc->num_heads, mc->vocab_size);
    char ranks[32] = "";
    if (dist_size() > 1) snprintf(ranks, sizeof ranks, " x ranks %d", dist_size());
    printf("batch %d x seq %d x accum %d%s = %lld tokens/step | %d steps | lr %.2e warmup %d | threads %d | BLAS core %s (%s)\n",
           B, T, tc->grad_accum, ranks, (long long)B * T * tc->grad_accum * dist_size(), tc->steps, tc->lr, tc->warmup_steps, threads_count(),
           blas_core_name(), blas_core_source());
    printf("train %lld tokens (%lld windows), val %lld tokens | run dir %s%s\n",
           (long long)dataloader_total_tokens(t->train), (long long)dataloader_num_windows(t->train),
           (long long)dataloader_total_tokens(t->val), tc->run_dir, t->ckpt_dir[0] ? " (resumed)" : "");
    // What the run allocates (the data shards are memory-mapped on top): flat buffers of numel floats for
    // the weights, the gradients and each AdamW moment, one byte per weight of decay mask, the arena.
    const double weights = (double)model_num_params(t->model) * sizeof(float);
    const double acts = (double)model_activation_bytes(t->model);
    char b[6][24];
    printf("memory: params %s + grads %s + AdamW moments %s + decay mask %s + activations %s (recompute %s) = %s\n",
           fmt_bytes(b[0], weights), fmt_bytes(b[1], weights), fmt_bytes(b[2], 2 * weights), fmt_bytes(b[3], weights / 4),
           fmt_bytes(b[4], acts), tc->recompute ? "on" : "off", fmt_bytes(b[5], 4.25 * weights + acts));
    if (t->ckpt_dir[0]) printf("resumed from %s at step %lld\n", t->ckpt_dir, (long long)t->st.step);
}

// Creates the run directory and opens its log.jsonl for appending: a fresh run's directory holds no log
// (run_dir_prepare_fresh), a resumed run's log is first cut back to the checkpoint's step.
static void open_log(Trainer *t) {
    const TrainConfig *tc = &t->cfg.train;
    if (!dist_is_root()) {   // rank 0 keeps the log
        if (!(t->log = fopen("/dev/null", "w"))) die("cannot open /dev/null: %s", strerror(errno));
        return;
    }
    Err err;
    if (t->ckpt_dir[0]) {
        int64_t dropped;
        if (!run_dir_truncate_log(tc->run_dir, t->st.step, &dropped, &err)) die("%s", err.msg);
        if (dropped > 0)
            printf("%s/log.jsonl: removed %lld line%s logged after the checkpoint's step %lld (they are trained "
                   "again)\n", tc->run_dir, (long long)dropped, dropped > 1 ? "s" : "", (long long)t->st.step);
    }
    checkpoint_clean_leftovers(tc->run_dir);
    t->log = run_dir_open_log(tc->run_dir, &err);
    if (!t->log) die("%s", err.msg);
}

// Throughput and loss statistics of the loop, for the per-step lines and the final summary.
typedef struct {
    double flops_tok;          // model FLOPs per token of one training step (model_flops_per_token)
    Peak peak;                 // the MFU denominator (peak.h)
    double last_val, first_loss, last_loss, ema_tps;
    double window_tokens, window_seconds;  // since the last progress line: its tokens/s
} LoopStats;

// A number for log.jsonl: JSON has no NaN or infinity, so those are null.
static void json_number(char *buf, size_t len, const char *fmt, double v) {
    if (isfinite(v)) snprintf(buf, len, fmt, v);
    else snprintf(buf, len, "null");
}

// Wall-clock time for log.jsonl lines (seconds since the epoch, to the millisecond).
static double unix_time(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// "45 s", "12m05s", "3h07m": durations for people.
static char *format_duration(char *buf, size_t len, double s) {
    if (!isfinite(s) || s < 0) snprintf(buf, len, "?");
    else if (s < 10) snprintf(buf, len, "%.1f s", s);
    else if (s < 60) snprintf(buf, len, "%.0f s", s);
    else if (s < 3600) snprintf(buf, len, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
    else if (s < 100 * 3600.0) snprintf(buf, len, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
    else snprintf(buf, len, "%.0f h", s / 3600);
    return buf;
}

// Peak resident memory of the process so far, in bytes.
static double peak_rss_bytes(void) {
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) == 0 ? (double)ru.ru_maxrss * 1024.0 : 0;   // ru_maxrss is in KiB
}

static void log_skipped_step(Trainer *t, int64_t step, double loss, double norm) {
    const TrainConfig *tc = &t->cfg.train;
    fprintf(stderr, "warning: step %lld: non-finite %s (loss %g, grad norm %g); step skipped (%d in a row, %lld total)\n",
            (long long)(step + 1), isfinite(loss) ? "gradient" : "loss", loss, norm, t->st.consecutive_bad,
            (long long)t->st.bad_steps_total);
    char l[32], g[32];
    json_number(l, sizeof l, "%.6f", loss);
    json_number(g, sizeof g, "%.6f", norm);
    fprintf(t->log, "{\"step\": %lld, \"skipped\": true, \"loss\": %s, \"grad_norm\": %s, \"tokens\": %lld, "
                    "\"time\": %.3f}\n", (long long)(step + 1), l, g, (long long)t->st.tokens_seen, unix_time());
    if (t->st.consecutive_bad >= tc->max_bad_steps)
        die("%d consecutive steps had a non-finite loss or gradient (max_bad_steps = %d); the run "
            "diverged: lower lr (now %g) or grad_clip, and resume from the last checkpoint in %s",
            t->st.consecutive_bad, tc->max_bad_steps, tc->lr, tc->run_dir);
}

// The step line (every log_every steps, the first and the last) and the step's log.jsonl record.
static void log_step(Trainer *t, LoopStats *ls, double loss, double lr, double norm, double dt) {
    const TrainConfig *tc = &t->cfg.train;
    const int64_t tokens = (int64_t)tc->batch_size * tc->seq_len * tc->grad_accum * dist_size();
    const double tps = (double)tokens / dt;
    ls->ema_tps = ls->ema_tps == 0 ? tps : 0.9 * ls->ema_tps + 0.1 * tps;
    ls->window_tokens += (double)tokens;
    ls->window_seconds += dt;
    const double gflops = ls->flops_tok * tps / 1e9;
    if (isnan(ls->first_loss)) ls->first_loss = loss;
    ls->last_loss = loss;
    if (tc->log_every > 0 && (t->st.step % tc->log_every == 0 || t->st.step == tc->steps || t->st.step == 1)) {
        // Rates over the steps since the last line: one step's rate swings widely on a busy machine.
        const double wtps = ls->window_tokens / ls->window_seconds, wgflops = ls->flops_tok * wtps / 1e9;
        const double eta = (double)(tc->steps - t->st.step) * (double)tokens / wtps;
        char el[32], et[32];
        printf("step %5lld/%d | loss %.4f | lr %.2e | grad norm %.3f | %6.0f tok/s | %5.1f GFLOP/s | MFU %4.1f%% | "
               "elapsed %s | ETA %s | mem %.0f MB\n",
               (long long)t->st.step, tc->steps, loss, lr, norm, wtps, wgflops, 100.0 * wgflops / ls->peak.gflops,
               format_duration(el, sizeof el, t->st.elapsed), format_duration(et, sizeof et, eta),
               peak_rss_bytes() / 1e6);
        ls->window_tokens = ls->window_seconds = 0;
    }
    fprintf(t->log, "{\"step\": %lld, \"loss\": %.6f, \"lr\": %.6e, \"grad_norm\": %.6f, \"tokens_per_s\": %.1f, "
                    "\"gflops\": %.2f, \"mfu\": %.4f, \"ms\": %.1f, \"tokens\": %lld, \"time\": %.3f}\n",
            (long long)t->st.step, loss, lr, norm, tps, gflops, gflops / ls->peak.gflops, dt * 1e3,
            (long long)t->st.tokens_seen, unix_time());
}

static void print_summary(const Trainer *t, const LoopStats *ls) {
    char el[32];
    printf("done: %lld steps, %lld tokens, %s training | train loss %.4f -> %.4f | val loss %.4f | "
           "%.0f tok/s | %lld skipped steps | peak memory %.0f MB\n",
           (long long)t->st.step, (long long)t->st.tokens_seen, format_duration(el, sizeof el, t->st.elapsed),
           ls->first_loss, ls->last_loss, ls->last_val, ls->ema_tps, (long long)t->st.bad_steps_total,
           peak_rss_bytes() / 1e6);
}

// ---------------------------------------------------------------------------------------------------
// The training loop: steps until train.steps (or --stop-at), with evaluation, samples and checkpoints.

// Returns 0, or the signal (SIGINT/SIGTERM) that stopped the run after a step and a checkpoint.
static int train_loop(Trainer *t, const Args *args, LoopStats *ls) {
    const TrainConfig *tc = &t->cfg.train;
    const int B = tc->batch_size, T = tc->seq_len;
    const size_t numel = model_num_params(t->model);
    const float grad_scale_micro = 1.0f / (float)((int64_t)B * T * tc->grad_accum * dist_size());
    AdamWHyper hyper = {.beta1 = tc->beta1, .beta2 = tc->beta2, .eps = tc->eps, .weight_decay = tc->weight_decay};
    int64_t saved_step = t->ckpt_dir[0] ? t->st.step : -1;   // newest step on disk
    int sig = 0;
    while (t->st.step < tc->steps) {
        sig = signals_pending();
        if (dist_size() > 1) sig = -dist_min_int(-sig);   // every rank stops at the same step boundary
        if (sig) break;   // at a step boundary: nothing half done
        const int64_t step = t->st.step;
        double t0 = now_seconds();
        hyper.lr = lr_schedule(step, tc->steps, tc->warmup_steps, tc->lr, tc->min_lr_ratio);
        model_zero_grad(t->model);
        double loss_sum = 0;
        int64_t count = 0;
        dp_step_begin(t->train, (int64_t)B * tc->grad_accum);   // this rank's slice of the global batch
        for (int micro = 0; micro < tc->grad_accum; micro++) {
            int64_t c = 0;
            dataloader_next(t->train, t->inputs, t->targets);
            if (micro == tc->grad_accum - 1) dp_before_last_backward(t->model);
            loss_sum += model_forward_backward(t->model, t->inputs, t->targets, B, T, grad_scale_micro, &c);
            count += c;
        }
        dp_step_end(t->model, t->train, (int64_t)B * tc->grad_accum, &loss_sum, &count);   // sums over ranks
        const double loss = loss_sum / (double)count;
        // Masked targets (a task such as MQAR): the gradient of the mean over the counted positions (count
        // and the gradient are sums over every rank's share of the global batch).
        const int64_t global_tokens = (int64_t)B * T * tc->grad_accum * dist_size();
        if (count > 0 && count != global_tokens)
            grad_scale(model_grads(t->model), numel, (float)((double)global_tokens / (double)count));
        const double norm = grad_global_norm(model_grads(t->model), numel);
        t->st.step++;
        t->st.tokens_seen += (int64_t)B * T * tc->grad_accum * dist_size();
        if (!isfinite(loss) || !isfinite(norm)) {
            t->st.bad_steps_total++;
            t->st.consecutive_bad++;
            log_skipped_step(t, step, loss, norm);
            continue;
        }
        t->st.consecutive_bad = 0;
        if (tc->grad_clip > 0 && norm > tc->grad_clip)
            grad_scale(model_grads(t->model), numel, (float)(tc->grad_clip / norm));
        adamw_update(model_params(t->model), model_grads(t->model), t->m1, t->m2, t->decay_mask, numel, &hyper,
                     t->st.step);

        const double dt = now_seconds() - t0;
        t->st.elapsed += dt;
        log_step(t, ls, loss, hyper.lr, norm, dt);
        const bool last = t->st.step == tc->steps;
        bool reached = false;   // train.target_accuracy reached: checkpoint and stop
        if ((tc->eval_every > 0 && t->st.step % tc->eval_every == 0) || last) {
            const bool task = dataloader_is_task(t->val);
            double acc = NAN;
            ls->last_val = evaluate(t, NULL, NULL, task ? &acc : NULL);
            if (task) {
                printf("step %5lld | val loss %.4f | val accuracy %.4f\n", (long long)t->st.step, ls->last_val, acc);
                fprintf(t->log, "{\"step\": %lld, \"val_loss\": %.6f, \"val_accuracy\": %.6f}\n", (long long)t->st.step,
                        ls->last_val, acc);
                reached = tc->target_accuracy > 0 && acc >= tc->target_accuracy && !last;
            } else {
                printf("step %5lld | val loss %.4f (ppl %.2f)\n", (long long)t->st.step, ls->last_val, exp(ls->last_val));
                fprintf(t->log, "{\"step\": %lld, \"val_loss\": %.6f}\n", (long long)t->st.step, ls->last_val);
            }
        }
        if ((tc->sample_every > 0 && t->st.step % tc->sample_every == 0) || last) print_sample(t);
        fflush(t->log);
        const bool stop = args->stop_at > 0 && t->st.step == args->stop_at && !last;
        if ((tc->save_every > 0 && t->st.step % tc->save_every == 0) || last || stop || reached) {
            save_checkpoint(t);
            saved_step = t->st.step;
        }
        if (reached) {
            printf("reached the target validation accuracy %.4f at step %lld (train.target_accuracy); stopping\n",
                   (double)tc->target_accuracy, (long long)t->st.step);
            fprintf(t->log, "{\"step\": %lld, \"stopped\": \"target_accuracy\"}\n", (long long)t->st.step);
            break;
        }
        if (stop) {
            printf("stopped at step %lld as asked (--stop-at); continue with: ./train --resume %s\n",
                   (long long)t->st.step, tc->run_dir);
            break;
        }
    }
    if (sig) {
        if (saved_step != t->st.step) save_checkpoint(t);
        printf("%s: stopped after step %lld of %d, checkpoint saved; continue with: ./train --resume %s\n",
               signals_name(sig), (long long)t->st.step, tc->steps, tc->run_dir);
    }
    return sig;
}

// A resumed run must have steps left: a checkpoint at or past train.steps has nothing to train.
static void check_steps_left(const Trainer *t) {
    const TrainConfig *tc = &t->cfg.train;
    if (t->st.step < tc->steps) return;
    if (t->st.step == tc->steps) {
        printf("%s is at step %lld = train.steps: the run is complete; to train further, resume with a larger "
               "--steps (e.g. --steps %lld)\n", t->ckpt_dir, (long long)t->st.step, (long long)t->st.step * 2);
        exit(0);
    }
    die("%s is at step %lld, already past --steps %d: nothing to train; resume with --steps larger than %lld to "
        "continue the run (or --eval to evaluate it)", t->ckpt_dir, (long long)t->st.step, tc->steps,
        (long long)t->st.step);
}

int main(int argc, char **argv) {
    blas_setup(argv);
    dp_init(&argc, &argv);
    setvbuf(stdout, NULL, _IOLBF, 0);
    Args args = parse_args(argc, argv);
    Trainer t = {0};
    setup_config(&t, &args);
    Err err;
    if (!args.resume && !args.dump_grads && !args.eval_only &&
        !run_dir_prepare_fresh(t.cfg.train.run_dir, args.overwrite, &err))
        die("%s", err.msg);
    setup_model_and_data(&t);
    setup_weights(&t, &args);
    // tokens_seen = step x tokens_per_step while the batch layout stays as it started (state.json checks it)
    const int64_t tokens_per_step =
        (int64_t)t.cfg.train.batch_size * t.cfg.train.seq_len * t.cfg.train.grad_accum * dist_size();
    if (t.st.tokens_per_step != tokens_per_step) t.st.tokens_per_step = t.st.step == 0 ? tokens_per_step : 0;
    dp_sync_start(t.model, t.m1, t.m2, &t.cfg, t.train, t.st.step);
    if (args.dump_grads) {
        dp_single_process_only("--dump-grads");
        dump_grads(&t, args.dump_grads);
        return 0;
    }
    if (args.eval_only) {
        eval_only(&t, &args);
        return 0;
    }
    LoopStats ls = {.flops_tok = model_flops_per_token(t.model, t.cfg.train.seq_len), .last_val = NAN,
                    .first_loss = NAN, .last_loss = NAN,
                    .peak = peak_resolve(t.cfg.train.peak_gflops, "train.peak_gflops")};
    if (t.ckpt_dir[0]) check_steps_left(&t);
    print_banner(&t);
    // Every rank has its own cores: a job of R ranks is measured against R times one rank's peak.
    if (dist_size() > 1) {
        printf("MFU against %d ranks x %.1f GFLOP/s: %s\n", dist_size(), ls.peak.gflops, ls.peak.source);
        ls.peak.gflops *= dist_size();
    } else {
        printf("MFU against %.1f GFLOP/s: %s\n", ls.peak.gflops, ls.peak.source);
    }
    open_log(&t);
    signals_install();
    const int sig = train_loop(&t, &args, &ls);
    if (!sig) print_summary(&t, &ls);
    trainer_free(&t);
    for (int i = 0; i < args.noverrides; i++) free((void *)args.overrides[i]);
    return sig ? 128 + sig : 0;
}
