// evaluate.c — evaluation of a checkpoint: loss / perplexity (and per-position loss) on any shard set or
// MQAR set, and passkey retrieval (S-NIAH-1 style) by context length and needle depth.
//
//   ./evaluate --checkpoint runs/x --data 'data/tokens/corpus_val_*.bin' --json eval.json --positions pos.csv
//   ./evaluate --checkpoint runs/x --passkey --lengths 256,512,1024 --depths 0,0.5,1 --csv passkey.csv
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blas_setup.h"
#include "cli.h"
#include "data.h"
#include "model_io.h"
#include "passkey.h"
#include "tokenizer.h"

typedef struct {
    const char *checkpoint, *data, *json, *csv, *positions;
    const char *tokenizer, *vendor, *lengths, *depths;
    int seq_len, batch_size, threads, trials;
    long long batches;
    unsigned long long seed;
    bool passkey;
} Args;

static void usage(FILE *f) {
    fputs("usage: ./evaluate --checkpoint RUN_DIR|CHECKPOINT_DIR [--data GLOB|mqar:...] [options]\n"
          "       ./evaluate --checkpoint RUN_DIR|CHECKPOINT_DIR --passkey [options]\n"
          "\n"
          "Loss and perplexity on a data set (default: the run's val_data), read in order, every window once\n"
          "(or the first --batches batches):\n"
          "  --data GLOB         token shards (or an MQAR spec: then also the answer accuracy)\n"
          "  --seq_len T         window length (default: the run's seq_len; longer works for every model,\n"
          "                      up to max_position_embeddings for the log-linear ones)\n"
          "  --batch_size B      (default: the run's)   --batches N   at most N batches (default: all)\n"
          "  --json FILE         the result as JSON      --csv FILE    the result as one CSV row (+ header)\n"
          "  --positions FILE    CSV: position, mean loss, count (the per-position loss curve)\n"
          "Passkey retrieval (--passkey): filler text with 'The pass key is NNNNN' hidden at a depth; the\n"
          "model must reproduce the number after the question (greedy decoding, exact match):\n"
          "  --lengths L,...     prompt lengths in tokens (default 256,512,1024)\n"
          "  --depths D,...      needle depths in [0, 1] (default 0,0.25,0.5,0.75,1)\n"
          "  --trials N          passkeys per length and depth (default 5)   --seed S (default 0)\n"
          "  --csv FILE          rows: length, depth, trials, correct, accuracy   --json FILE  the same\n"
          "  --tokenizer gpt2|bytes, --vendor DIR   the encoder (default: from the run's decode table)\n"
          "  --threads N         OpenMP/BLAS threads (default: the run's train.threads)\n",
          f);
}

static Args parse_args(int argc, char **argv) {
    Args a = {.vendor = "data/vendor", .threads = -1, .trials = 5, .lengths = "256,512,1024",
              .depths = "0,0.25,0.5,0.75,1"};
    const CliOption opts[] = {
        {"checkpoint", CLI_STR, &a.checkpoint, 0}, {"data", CLI_STR, &a.data, 0},
        {"json", CLI_STR, &a.json, 0},             {"csv", CLI_STR, &a.csv, 0},
        {"positions", CLI_STR, &a.positions, 0},   {"tokenizer", CLI_STR, &a.tokenizer, 0},
        {"vendor", CLI_STR, &a.vendor, 0},         {"lengths", CLI_STR, &a.lengths, 0},
        {"depths", CLI_STR, &a.depths, 0},         {"seq_len", CLI_INT, &a.seq_len, 1},
        {"batch_size", CLI_INT, &a.batch_size, 1}, {"batches", CLI_LL, &a.batches, 1},
        {"trials", CLI_INT, &a.trials, 1},         {"seed", CLI_U64, &a.seed, 0},
        {"threads", CLI_INT, &a.threads, 0},       {"passkey", CLI_FLAG, &a.passkey, 0},
    };
    cli_parse(argc, argv, opts, (int)(sizeof opts / sizeof opts[0]), usage);
    if (!a.checkpoint) {
        usage(stderr);
        die("give --checkpoint RUN_DIR");
    }
    if (a.passkey && (a.data || a.positions)) die("--passkey builds its own prompts: drop --data / --positions");
    return a;
}

static FILE *open_out(const char *path, const char *opt) {
    FILE *f = fopen(path, "w");
    if (!f) die("cannot write %s (%s): %s", path, opt, strerror(errno));
    return f;
}
static void close_out(FILE *f, const char *path, const char *opt) {
    if (fclose(f) != 0) die("cannot write %s (%s): %s", path, opt, strerror(errno));
}

// Loss (and accuracy for a task) over the data set, in order.
static void eval_loss(const Args *a, const char *ckpt) {
    Err err;
    TrainedModel probe;   // the config first, to size the model for (B, T)
    if (!trained_model_open(&probe, ckpt, 1, 1, &err)) die("%s", err.msg);
    const TrainConfig *tc = &probe.cfg.train;
    const int B = a->batch_size ? a->batch_size : tc->batch_size, T = a->seq_len ? a->seq_len : tc->seq_len;
    const char *data = a->data ? a->data : tc->val_data;
    trained_model_close(&probe);
    TrainedModel tm;
    if (!trained_model_open(&tm, ckpt, B, T, &err)) die("%s", err.msg);
    threads_setup(a->threads >= 0 ? a->threads : tm.cfg.train.threads);
    const ModelConfig *mc = &tm.cfg.model;
    if (model_type_is_loglinear(mc->type) && T > mc->max_seq_len)
        die("--seq_len %d exceeds the model's max_position_embeddings %d (its λ levels); ./generate decodes "
            "past it", T, mc->max_seq_len);
    DataLoader *dl;
    if (!dataloader_open(&dl, data, B, T, mc->vocab_size, tm.cfg.train.seed, false, &err)) die("%s (--data)", err.msg);
    const bool task = dataloader_is_task(dl);
    int64_t batches = dataloader_num_windows(dl) / B;
    if (a->batches && a->batches < batches) batches = a->batches;
    int32_t *in = xmalloc((size_t)B * T * sizeof(int32_t)), *tg = xmalloc((size_t)B * T * sizeof(int32_t));
    int32_t *pred = task ? xmalloc((size_t)B * T * sizeof(int32_t)) : NULL;
    float *tl = xmalloc((size_t)B * T * sizeof(float));
    double *pos_sum = xcalloc((size_t)T, sizeof(double)), sum = 0;
    int64_t *pos_n = xcalloc((size_t)T, sizeof(int64_t)), count = 0, correct = 0;
    const double t0 = now_seconds();
    for (int64_t i = 0; i < batches; i++) {
        int64_t c = 0;
        dataloader_next(dl, in, tg);
        sum += model_forward_eval(tm.model, in, tg, B, T, &c, tl, pred);
        count += c;
        for (int64_t k = 0; k < (int64_t)B * T; k++) {
            if (tg[k] < 0) continue;
            pos_sum[k % T] += tl[k];
            pos_n[k % T]++;
            if (pred) correct += pred[k] == tg[k];
        }
    }
    const double loss = count ? sum / (double)count : NAN, acc = count ? (double)correct / (double)count : NAN;
    printf("%s (step %lld) on %s: loss %.4f, perplexity %.2f over %lld targets (%lld batches of %d x %d, %.1f s)",
           tm.dir, (long long)tm.step, data, loss, exp(loss), (long long)count, (long long)batches, B, T,
           now_seconds() - t0);
    if (task) printf(", accuracy %.4f", acc);
    printf("\n");
    if (a->json) {
        FILE *f = open_out(a->json, "--json");
        fprintf(f, "{\"checkpoint\": \"%s\", \"step\": %lld, \"model_type\": \"%s\", \"data\": \"%s\", \"seq_len\": %d, "
                   "\"batches\": %lld, \"targets\": %lld, \"loss\": %.6f, \"perplexity\": %.4f",
                tm.dir, (long long)tm.step, model_type_name(mc->type), data, T, (long long)batches, (long long)count,
                loss, exp(loss));
        if (task) fprintf(f, ", \"accuracy\": %.6f", acc);
        fprintf(f, "}\n");
        close_out(f, a->json, "--json");
    }
    if (a->csv) {
        FILE *f = open_out(a->csv, "--csv");
        fprintf(f, "checkpoint,step,model_type,seq_len,targets,loss,perplexity%s\n", task ? ",accuracy" : "");
        fprintf(f, "%s,%lld,%s,%d,%lld,%.6f,%.4f", tm.dir, (long long)tm.step, model_type_name(mc->type), T,
                (long long)count, loss, exp(loss));
        if (task) fprintf(f, ",%.6f", acc);
        fprintf(f, "\n");
        close_out(f, a->csv, "--csv");
    }
    if (a->positions) {
        FILE *f = open_out(a->positions, "--positions");
        fprintf(f, "position,loss,count\n");
        for (int p = 0; p < T; p++)
            fprintf(f, "%d,%.6f,%lld\n", p, pos_n[p] ? pos_sum[p] / (double)pos_n[p] : NAN, (long long)pos_n[p]);
        close_out(f, a->positions, "--positions");
    }
    free(in);
    free(tg);
    free(pred);
    free(tl);
    free(pos_sum);
    free(pos_n);
    dataloader_close(dl);
    trained_model_close(&tm);
}

// "a,b,c" -> values (at most max); dies naming the option on bad input.
static int parse_list(const char *opt, const char *s, double *out, int max, double lo, double hi) {
    int n = 0;
    const char *p = s;
    while (*p) {
        char *end;
        double x = strtod(p, &end);
        if (end == p || x < lo || x > hi || n == max) die("%s: '%s' must be up to %d numbers in [%g, %g], comma separated", opt, s, max, lo, hi);
        out[n++] = x;
        p = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') die("%s: '%s' must be comma separated numbers", opt, s);
    }
    if (n == 0) die("%s is empty", opt);
    return n;
}

static void eval_passkey(const Args *a, const char *ckpt) {
    Err err;
    TrainedModel tm;
    if (!trained_model_open(&tm, ckpt, 1, 1, &err)) die("%s", err.msg);
    threads_setup(a->threads >= 0 ? a->threads : tm.cfg.train.threads);
    const ModelConfig *mc = &tm.cfg.model;
    double lengths[64], depths[64];
    const int nl = parse_list("--lengths", a->lengths, lengths, 64, 16, 1 << 24);
    const int nd = parse_list("--depths", a->depths, depths, 64, 0, 1);
    // The encoder: as asked, else the one of the run's decode table.
    const char *name = a->tokenizer;
    Decoder *dec = NULL;
    if (!name) {
        if (!tm.cfg.train.tokenizer[0] || !decoder_open(&dec, tm.cfg.train.tokenizer, &err))
            die("cannot tell the tokenizer (the run's train.tokenizer '%s' is missing): give --tokenizer gpt2|bytes",
                tm.cfg.train.tokenizer);
        name = decoder_vocab_size(dec) == TOKENIZER_BYTES_VOCAB ? "bytes" : "gpt2";
        decoder_free(dec);
    }
    Tokenizer *tok = NULL;
    if (!strcmp(name, "bytes")) tok = tokenizer_open_bytes();
    else if (!strcmp(name, "gpt2")) {
        if (!tokenizer_open_gpt2(&tok, a->vendor, &err)) die("%s (--vendor)", err.msg);
    } else die("--tokenizer must be gpt2 or bytes, got '%s'", name);
    if (tokenizer_vocab_size(tok) > mc->vocab_size)
        die("tokenizer %s has %d tokens but the model's vocab_size is %d", name, tokenizer_vocab_size(tok), mc->vocab_size);
    FILE *csv = a->csv ? open_out(a->csv, "--csv") : NULL, *json = a->json ? open_out(a->json, "--json") : NULL;
    if (csv) fprintf(csv, "length,depth,trials,correct,accuracy\n");
    if (json) fprintf(json, "{\"checkpoint\": \"%s\", \"step\": %lld, \"model_type\": \"%s\", \"results\": [", tm.dir,
                      (long long)tm.step, model_type_name(mc->type));
    printf("passkey retrieval, %s (step %lld), %d trials per cell, exact match:\n", tm.dir, (long long)tm.step, a->trials);
    printf("length \\ depth");
    for (int j = 0; j < nd; j++) printf(" %6.2f", depths[j]);
    printf("\n");
    for (int i = 0; i < nl; i++) {
        printf("%14d", (int)lengths[i]);
        for (int j = 0; j < nd; j++) {
            int correct = 0;
            for (int k = 0; k < a->trials; k++) {
                PasskeyResult r;
                if (!passkey_trial(tm.model, tok, (int)lengths[i], depths[j],
                                   rng_mix(a->seed, (uint64_t)(i * 1000003 + j * 1009 + k)), &r, &err))
                    die("%s", err.msg);
                correct += r.correct;
            }
            const double acc = (double)correct / a->trials;
            printf(" %6.2f", acc);
            fflush(stdout);
            if (csv) fprintf(csv, "%d,%.4f,%d,%d,%.4f\n", (int)lengths[i], depths[j], a->trials, correct, acc);
            if (json) fprintf(json, "%s{\"length\": %d, \"depth\": %.4f, \"trials\": %d, \"correct\": %d, \"accuracy\": %.4f}",
                              i + j ? ", " : "", (int)lengths[i], depths[j], a->trials, correct, acc);
        }
        printf("\n");
    }
    if (csv) close_out(csv, a->csv, "--csv");
    if (json) {
        fprintf(json, "]}\n");
        close_out(json, a->json, "--json");
    }
    tokenizer_free(tok);
    trained_model_close(&tm);
}

int main(int argc, char **argv) {
    blas_setup(argv);
    setvbuf(stdout, NULL, _IOLBF, 0);
    Args a = parse_args(argc, argv);
    if (a.passkey) eval_passkey(&a, a.checkpoint);
    else eval_loss(&a, a.checkpoint);
    return 0;
}
