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
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "blas_setup.h"
#include "checkpoint.h"
#include "config.h"
#include "data.h"
#include "model.h"
#include "optimizer.h"
#include "peak.h"
#include "rng.h"
#include "safetensors.h"
#include "tokenizer.h"

typedef struct {
    const char *config_path;
    const char *resume;
    const char *dump_grads;
    long long stop_at;         // --stop-at: checkpoint and exit after this step (0 = run to the end)
    bool eval_only;            // --eval: validation loss of the (resumed) model, then exit
    const char *positions;     // --positions FILE (with --eval): mean loss at each position, as TSV
    const char *init_from;     // --init-from: start from these weights (a model.safetensors, e.g. from PyTorch)
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
            "\n"
            "FILE is looked up as given, then under configs/. It is our format ({\"model\":{...},\"train\":{...}})\n"
            "or one of the paper's HF-style model configs (train defaults then apply).\n"
            "--KEY VALUE overrides any field of the train section, e.g. --steps 200 --lr 3e-4 --batch_size 4\n"
            "  --seq_len 512 --grad_accum 2 --seed 7 --threads 2 --run_dir runs/x --eval_every 50 ...\n"
            "  --recompute 1 keeps only each block's input and recomputes the rest in the backward (less memory,\n"
            "  same results); --peak_gflops X sets the MFU peak (default: a cached sgemm probe).\n"
            "--resume continues from the latest checkpoint in RUN_DIR (or from CHECKPOINT_DIR) exactly as if\n"
            "  the run had not stopped; overrides (e.g. a larger --steps) apply on top of the saved config.\n"
            "--eval prints the validation loss over eval_batches batches sampled from the whole validation set\n"
            "  (all of it if eval_batches is large enough) and exits; --positions also writes the mean loss\n"
            "  at each position 0..seq_len-1 (TSV: position, loss, count), the paper's per-position curve.\n"
            "--init-from starts a new run (step 0, fresh optimizer) from the weights of a model.safetensors with\n"
            "  the paper's tensor names, e.g. one written by PyTorch, or a checkpoint directory holding one.\n"
            "--dump-grads writes the first batch's input_ids, labels, loss and every parameter gradient\n"
            "  (tensor names as the paper's PyTorch models) to a safetensors file, then exits.\n");
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
        if (strncmp(s, "--", 2) != 0) die("unexpected argument '%s' (options start with --; see --help)", s);
        if (i + 1 >= argc) die("option '%s' needs a value (see --help)", s);
        const char *v = argv[++i];
        if (strcmp(s, "--config") == 0) a.config_path = v;
        else if (strcmp(s, "--resume") == 0) a.resume = v;
        else if (strcmp(s, "--dump-grads") == 0) a.dump_grads = v;
        else if (strcmp(s, "--positions") == 0) a.positions = v;
        else if (strcmp(s, "--init-from") == 0) a.init_from = v;
        else if (strcmp(s, "--stop-at") == 0) {
            char *end;
            a.stop_at = strtoll(v, &end, 10);
            if (*end || a.stop_at <= 0) die("--stop-at needs a positive step number, got '%s'", v);
        }
        else {
            if (a.noverrides >= 128) die("too many overrides");
            size_t n = strlen(s + 2) + strlen(v) + 2;
            char *kv = xmalloc(n);
            snprintf(kv, n, "%s=%s", s + 2, v);
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

static TensorRef *tensor_refs(Model *m) {
    int n = model_num_tensors(m);
    TensorRef *refs = xcalloc((size_t)n, sizeof *refs);
    for (int i = 0; i < n; i++) {
        const ParamInfo *pi = model_tensor(m, i);
        refs[i].name = pi->name;
        refs[i].ndim = pi->ndim;
        for (int k = 0; k < 4; k++) refs[i].shape[k] = pi->shape[k];
        refs[i].data = model_params(m) + pi->offset;
    }
    return refs;
}

// ---------------------------------------------------------------------------------------------------
// Training state saved with each checkpoint (everything else is in the config and the tensors).
typedef struct {
    int64_t step;              // optimizer steps completed
    DataPosition data;         // next training batch
    int64_t tokens_seen;
    int64_t bad_steps_total;
    int consecutive_bad;
    double elapsed;            // training seconds so far
} TrainState;

static char *state_to_json(const TrainState *s, uint64_t seed) {
    char *buf = xmalloc(1024);
    snprintf(buf, 1024,
             "{\n  \"step\": %lld,\n  \"data_epoch\": \"%llu\",\n  \"data_cursor\": \"%llu\",\n"
             "  \"tokens_seen\": %lld,\n  \"bad_steps_total\": %lld,\n  \"consecutive_bad\": %d,\n"
             "  \"elapsed_seconds\": %.3f,\n  \"seed\": \"%llu\"\n}\n",
             (long long)s->step, (unsigned long long)s->data.epoch, (unsigned long long)s->data.cursor,
             (long long)s->tokens_seen, (long long)s->bad_steps_total, s->consecutive_bad, s->elapsed,
             (unsigned long long)seed);
    return buf;
}

// Reads state.json (written by state_to_json; 64-bit values travel as strings to stay exact).
static void state_from_json(TrainState *s, const char *json, const char *origin) {
    cJSON *root = cJSON_Parse(json);
    if (!root) die("%s/state.json is not valid JSON; resume from another checkpoint", origin);
    const char *keys[] = {"step", "data_epoch", "data_cursor", "tokens_seen", "bad_steps_total",
                          "consecutive_bad", "elapsed_seconds"};
    double num[7];
    unsigned long long u64[7];
    for (int i = 0; i < 7; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, keys[i]);
        if (cJSON_IsNumber(v)) num[i] = v->valuedouble, u64[i] = (unsigned long long)v->valuedouble;
        else if (cJSON_IsString(v)) num[i] = strtod(v->valuestring, NULL), u64[i] = strtoull(v->valuestring, NULL, 10);
        else die("%s/state.json: missing field '%s'; resume from another checkpoint", origin, keys[i]);
    }
    s->step = (int64_t)num[0];
    s->data.epoch = u64[1];
    s->data.cursor = u64[2];
    s->tokens_seen = (int64_t)num[3];
    s->bad_steps_total = (int64_t)num[4];
    s->consecutive_bad = (int)num[5];
    s->elapsed = num[6];
    cJSON_Delete(root);
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
} Trainer;

// Tensors with their own storage (and so their own AdamW moments): all but a tied lm_head alias, which
// the model table lists last.
static int num_moment_tensors(const Trainer *t) {
    return model_num_tensors(t->model) - (t->cfg.model.tie_word_embeddings ? 1 : 0);
}

static void save_checkpoint(Trainer *t) {
    const TrainConfig *tc = &t->cfg.train;
    char *hf = model_config_to_hf_json(&t->cfg.model);
    char *ours = config_to_json(&t->cfg);
    t->st.data = dataloader_position(t->train);
    char *state = state_to_json(&t->st, tc->seed);
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
// pos_sum/pos_count (T each) non-NULL, also accumulates the loss at each position of the sequences.
static double evaluate(Trainer *t, double *pos_sum, int64_t *pos_count) {
    const TrainConfig *tc = &t->cfg.train;
    const int B = tc->batch_size, T = tc->seq_len;
    dataloader_rewind(t->val);   // the same validation sample every time
    double sum = 0;
    int64_t count = 0;
    int batches = tc->eval_batches;
    int64_t available = dataloader_num_windows(t->val) / B;
    if (batches > available) batches = (int)available;
    float *token_loss = pos_sum ? xmalloc((size_t)B * T * sizeof(float)) : NULL;
    for (int i = 0; i < batches; i++) {
        int64_t c = 0;
        dataloader_next(t->val, t->inputs, t->targets);
        sum += model_forward_loss(t->model, t->inputs, t->targets, B, T, &c, token_loss);
        count += c;
        for (int64_t k = 0; token_loss && k < (int64_t)B * T; k++) {
            if (t->targets[k] < 0) continue;
            pos_sum[k % T] += token_loss[k];
            pos_count[k % T]++;
        }
    }
    free(token_loss);
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
        char *text = xmalloc(cap);
        decoder_decode(t->decoder, ids, n, text, cap);
        for (char *p = text; *p; p++) if (*p == '\n') *p = ' ';
        printf("%s\n", text);
        free(text);
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
static void setup_config(Trainer *t, const Args *args) {
    Err err;
    if (args->resume) {
        if (!checkpoint_resolve(args->resume, t->ckpt_dir, sizeof t->ckpt_dir, &err)) die("%s", err.msg);
        char path[1100];
        snprintf(path, sizeof path, "%s/train_config.json", t->ckpt_dir);
        if (!config_load(&t->cfg, path, t->config_origin, sizeof t->config_origin, &err)) die("%s", err.msg);
        if (args->config_path) {
            Config other;
            char origin[1024];
            if (!config_load(&other, args->config_path, origin, sizeof origin, &err)) die("%s", err.msg);
            const char *diff = model_config_first_difference(&t->cfg.model, &other.model);
            if (diff)
                die("--config %s describes a different model than the checkpoint %s (model.%s differs); resume "
                    "without --config or with the config the run was started with", origin, t->ckpt_dir, diff);
        }
    } else {
        if (!config_load(&t->cfg, args->config_path, t->config_origin, sizeof t->config_origin, &err))
            die("%s", err.msg);
    }
    for (int i = 0; i < args->noverrides; i++)
        if (!config_override(&t->cfg, args->overrides[i], &err)) die("%s", err.msg);
    TrainConfig *tc = &t->cfg.train;
    if (!tc->run_dir[0]) {
        const char *base = strrchr(t->config_origin, '/');
        base = base ? base + 1 : t->config_origin;
        const char *dot = strrchr(base, '.');
        int stem_len = dot ? (int)(dot - base) : (int)strlen(base);
        if (stem_len > 200) stem_len = 200;
        snprintf(tc->run_dir, sizeof tc->run_dir, "runs/%.*s", stem_len, base);
    }
    if (!config_validate(&t->cfg, t->config_origin, &err)) die("%s", err.msg);
    threads_setup(tc->threads);
}

// The model with its optimizer state, the data loaders, the tokenizer's decoder, the batch buffers.
static void setup_model_and_data(Trainer *t) {
    const TrainConfig *tc = &t->cfg.train;
    const ModelConfig *mc = &t->cfg.model;
    const int B = tc->batch_size, T = tc->seq_len;
    Err err;
    t->model = model_create_recompute(mc, B, T, tc->recompute, &err);
    if (!t->model) die("%s: %s", t->config_origin, err.msg);
    const size_t numel = model_num_params(t->model);
    t->refs = tensor_refs(t->model);
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
        state_from_json(&t->st, sj, dir);
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
    const double loss = evaluate(t, pos_sum, pos_count);
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
    printf("batch %d x seq %d x accum %d = %d tokens/step | %d steps | lr %.2e warmup %d | threads %d | BLAS core %s (%s)\n",
           B, T, tc->grad_accum, B * T * tc->grad_accum, tc->steps, tc->lr, tc->warmup_steps, threads_count(),
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

// Creates the run directory and opens its log.jsonl (appended to when resuming).
static void open_log(Trainer *t) {
    const TrainConfig *tc = &t->cfg.train;
    Err dir_err;
    if (!mkdir_p(tc->run_dir, &dir_err)) die("%s", dir_err.msg);
    char logpath[1100];
    snprintf(logpath, sizeof logpath, "%s/log.jsonl", tc->run_dir);
    t->log = fopen(logpath, t->ckpt_dir[0] ? "a" : "w");
    if (!t->log) die("cannot write %s: %s", logpath, strerror(errno));
}

// Throughput and loss statistics of the loop, for the per-step lines and the final summary.
typedef struct {
    double flops_tok;          // model FLOPs per token of one training step (model_flops_per_token)
    Peak peak;                 // the MFU denominator (peak.h)
    double last_val, first_loss, last_loss, ema_tps;
} LoopStats;

static void log_skipped_step(Trainer *t, int64_t step, double loss, double norm) {
    const TrainConfig *tc = &t->cfg.train;
    fprintf(stderr, "warning: step %lld: non-finite %s (loss %g, grad norm %g); step skipped (%d in a row, %lld total)\n",
            (long long)(step + 1), isfinite(loss) ? "gradient" : "loss", loss, norm, t->st.consecutive_bad,
            (long long)t->st.bad_steps_total);
    fprintf(t->log, "{\"step\": %lld, \"skipped\": true, \"loss\": \"%g\", \"grad_norm\": \"%g\"}\n",
            (long long)(step + 1), loss, norm);
    if (t->st.consecutive_bad >= tc->max_bad_steps)
        die("%d consecutive steps had a non-finite loss or gradient (max_bad_steps = %d); the run "
            "diverged: lower lr (now %g) or grad_clip, and resume from the last checkpoint in %s",
            t->st.consecutive_bad, tc->max_bad_steps, tc->lr, tc->run_dir);
}

// The step line (every log_every steps, the first and the last) and the step's log.jsonl record.
static void log_step(Trainer *t, LoopStats *ls, double loss, double lr, double norm, double dt) {
    const TrainConfig *tc = &t->cfg.train;
    const int64_t tokens = (int64_t)tc->batch_size * tc->seq_len * tc->grad_accum;
    const double tps = (double)tokens / dt;
    ls->ema_tps = ls->ema_tps == 0 ? tps : 0.9 * ls->ema_tps + 0.1 * tps;
    const double gflops = ls->flops_tok * tps / 1e9;
    if (isnan(ls->first_loss)) ls->first_loss = loss;
    ls->last_loss = loss;
    const double eta = (double)(tc->steps - t->st.step) * (double)tokens / ls->ema_tps;
    if (tc->log_every > 0 && (t->st.step % tc->log_every == 0 || t->st.step == tc->steps || t->st.step == 1))
        printf("step %5lld/%d | loss %.4f | lr %.2e | grad norm %.3f | %6.0f tok/s | %5.1f GFLOP/s | MFU %4.1f%% | ETA %s%.0f s\n",
               (long long)t->st.step, tc->steps, loss, lr, norm, tps, gflops, 100.0 * gflops / ls->peak.gflops,
               eta > 3600 ? ">" : "", eta > 3600 ? 3600.0 : eta);
    fprintf(t->log, "{\"step\": %lld, \"loss\": %.6f, \"lr\": %.6e, \"grad_norm\": %.6f, \"tokens_per_s\": %.1f, "
                    "\"gflops\": %.2f, \"mfu\": %.4f, \"ms\": %.1f}\n",
            (long long)t->st.step, loss, lr, norm, tps, gflops, gflops / ls->peak.gflops, dt * 1e3);
}

static void print_summary(const Trainer *t, const LoopStats *ls) {
    printf("done: %lld steps, %lld tokens, %.1f s training | train loss %.4f -> %.4f | val loss %.4f | "
           "%.0f tok/s | %lld skipped steps\n",
           (long long)t->st.step, (long long)t->st.tokens_seen, t->st.elapsed, ls->first_loss, ls->last_loss,
           ls->last_val, ls->ema_tps, (long long)t->st.bad_steps_total);
}

// ---------------------------------------------------------------------------------------------------
// The training loop: steps until train.steps (or --stop-at), with evaluation, samples and checkpoints.

static void train_loop(Trainer *t, const Args *args, LoopStats *ls) {
    const TrainConfig *tc = &t->cfg.train;
    const int B = tc->batch_size, T = tc->seq_len;
    const size_t numel = model_num_params(t->model);
    const float grad_scale_micro = 1.0f / (float)((int64_t)B * T * tc->grad_accum);
    AdamWHyper hyper = {.beta1 = tc->beta1, .beta2 = tc->beta2, .eps = tc->eps, .weight_decay = tc->weight_decay};
    while (t->st.step < tc->steps) {
        const int64_t step = t->st.step;
        double t0 = now_seconds();
        hyper.lr = lr_schedule(step, tc->steps, tc->warmup_steps, tc->lr, tc->min_lr_ratio);
        model_zero_grad(t->model);
        double loss_sum = 0;
        int64_t count = 0;
        for (int micro = 0; micro < tc->grad_accum; micro++) {
            int64_t c = 0;
            dataloader_next(t->train, t->inputs, t->targets);
            loss_sum += model_forward_backward(t->model, t->inputs, t->targets, B, T, grad_scale_micro, &c);
            count += c;
        }
        const double loss = loss_sum / (double)count;
        const double norm = grad_global_norm(model_grads(t->model), numel);
        t->st.step++;
        t->st.tokens_seen += (int64_t)B * T * tc->grad_accum;
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
        if ((tc->eval_every > 0 && t->st.step % tc->eval_every == 0) || last) {
            ls->last_val = evaluate(t, NULL, NULL);
            printf("step %5lld | val loss %.4f (ppl %.2f)\n", (long long)t->st.step, ls->last_val, exp(ls->last_val));
            fprintf(t->log, "{\"step\": %lld, \"val_loss\": %.6f}\n", (long long)t->st.step, ls->last_val);
        }
        if ((tc->sample_every > 0 && t->st.step % tc->sample_every == 0) || last) print_sample(t);
        fflush(t->log);
        const bool stop = args->stop_at > 0 && t->st.step == args->stop_at && !last;
        if ((tc->save_every > 0 && t->st.step % tc->save_every == 0) || last || stop) save_checkpoint(t);
        if (stop) {
            printf("stopped at step %lld as asked (--stop-at); continue with: ./train --resume %s\n",
                   (long long)t->st.step, tc->run_dir);
            break;
        }
    }
}

int main(int argc, char **argv) {
    blas_setup(argv);
    setvbuf(stdout, NULL, _IOLBF, 0);
    Args args = parse_args(argc, argv);
    Trainer t = {0};
    setup_config(&t, &args);
    setup_model_and_data(&t);
    setup_weights(&t, &args);
    if (args.dump_grads) {
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
    print_banner(&t);
    printf("MFU against %.1f GFLOP/s: %s\n", ls.peak.gflops, ls.peak.source);
    open_log(&t);
    train_loop(&t, &args, &ls);
    print_summary(&t, &ls);
    trainer_free(&t);
    for (int i = 0; i < args.noverrides; i++) free((void *)args.overrides[i]);
    return 0;
}
