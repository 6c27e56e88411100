// generate.c — text generation from a checkpoint.
//
//   ./generate --checkpoint runs/transformer --prompt "The king said" --tokens 200 --temperature 0.8 --top-k 40
//
// The prompt is fed token by token through the model's decode step (prefill), then new tokens are sampled
// (sampler.h). Decoding uses the recurrent forms: a KV cache for the Transformer (O(t) memory, O(t) work
// per token), the O(1) recurrent state of Mamba-2 / Gated DeltaNet, and O(log t) Fenwick level states for
// the log-linear models. The state grows as needed, so there is no length limit (the log-linear models
// decode past their maximum context by adding levels). Statistics go to stderr (and --stats as JSON
// lines): tokens/s and the decoding state's size each time the context doubles.
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blas_setup.h"
#include "cli.h"
#include "model_io.h"
#include "rng.h"
#include "sampler.h"
#include "tokenizer.h"

typedef struct {
    const char *checkpoint, *config;   // one of them: a trained model, or an initialised one from a config
    const char *prompt, *prompt_file, *prompt_ids;
    const char *tokenizer, *vendor, *decode_table, *stats;
    long long tokens;                  // new tokens per sample
    int samples;
    SamplerConfig sc;
    unsigned long long seed;
    int threads;
    bool ignore_eot, quiet;
} Args;

static void usage(FILE *f) {
    fputs("usage: ./generate --checkpoint RUN_DIR|CHECKPOINT_DIR [options]\n"
          "       ./generate --config FILE [options]     (untrained weights from the config's train.seed:\n"
          "                                              for timing and memory)\n"
          "\n"
          "Continues a prompt with the model of a checkpoint (the latest of a run directory, as\n"
          "./train --resume finds it, or a step directory).\n"
          "  --prompt TEXT         the prompt (default: empty; generation then starts after end-of-text)\n"
          "  --prompt-file FILE    read the prompt from a file\n"
          "  --prompt-ids \"1 2 3\"  the prompt as token ids\n"
          "  --tokens N            new tokens per sample (default 128; no upper limit)\n"
          "  --samples N           samples of the same prompt (default 1)\n"
          "  --temperature T       0 = greedy (default 1)\n"
          "  --top-k K             sample among the K most likely tokens (default 0 = all)\n"
          "  --top-p P             nucleus sampling: the most likely tokens holding probability P (default 1)\n"
          "  --seed S              fixes every sample (default 0); sample i draws from seed and i\n"
          "  --ignore-eot          keep going after an end-of-text token (default: the sample stops there)\n"
          "  --tokenizer gpt2|bytes  the prompt's encoder (default: from the run's decode table: 257 tokens =\n"
          "                        bytes, 50257 = gpt2)\n"
          "  --vendor DIR          where the GPT-2 files are (default data/vendor)\n"
          "  --decode-table FILE   the *.tok table to print text (default: the run's train.tokenizer)\n"
          "  --stats FILE          JSON lines: tokens/s and decoding state bytes each time the context doubles\n"
          "  --threads N           OpenMP/BLAS threads (default: the run's train.threads)\n"
          "  --quiet               no statistics on stderr\n"
          "The prompt is preceded by the end-of-text token, as every training document is.\n",
          f);
}

static Args parse_args(int argc, char **argv) {
    Args a = {.tokens = 128, .samples = 1, .sc = {.temperature = 1.0f, .top_k = 0, .top_p = 1.0f},
              .vendor = "data/vendor", .threads = -1};
    const CliOption opts[] = {
        {"checkpoint", CLI_STR, &a.checkpoint, 0},     {"config", CLI_STR, &a.config, 0},
        {"prompt", CLI_STR, &a.prompt, 0},             {"prompt-file", CLI_STR, &a.prompt_file, 0},
        {"prompt-ids", CLI_STR, &a.prompt_ids, 0},     {"tokenizer", CLI_STR, &a.tokenizer, 0},
        {"vendor", CLI_STR, &a.vendor, 0},             {"decode-table", CLI_STR, &a.decode_table, 0},
        {"stats", CLI_STR, &a.stats, 0},               {"tokens", CLI_LL, &a.tokens, 0},
        {"samples", CLI_INT, &a.samples, 1},           {"temperature", CLI_FLOAT, &a.sc.temperature, 0},
        {"top-k", CLI_INT, &a.sc.top_k, 0},            {"top-p", CLI_FLOAT, &a.sc.top_p, 0},
        {"seed", CLI_U64, &a.seed, 0},                 {"threads", CLI_INT, &a.threads, 0},
        {"ignore-eot", CLI_FLAG, &a.ignore_eot, 0},    {"quiet", CLI_FLAG, &a.quiet, 0},
    };
    cli_parse(argc, argv, opts, (int)(sizeof opts / sizeof opts[0]), usage);
    if (!a.checkpoint == !a.config) {
        usage(stderr);
        die("give exactly one of --checkpoint RUN_DIR and --config FILE");
    }
    if ((a.prompt != NULL) + (a.prompt_file != NULL) + (a.prompt_ids != NULL) > 1)
        die("give at most one of --prompt, --prompt-file and --prompt-ids");
    Err err;
    if (!sampler_config_check(&a.sc, &err)) die("%s", err.msg);
    return a;
}

// The prompt's token ids (after the leading end-of-text token the caller adds).
static void encode_prompt(const Args *a, const Config *cfg, const Decoder *dec, TokenBuf *out) {
    const int V = cfg->model.vocab_size;
    if (a->prompt_ids) {
        const char *p = a->prompt_ids;
        char *end;
        for (;;) {
            while (*p == ' ' || *p == ',' || *p == '\t' || *p == '\n') p++;
            if (!*p) break;
            errno = 0;
            long long id = strtoll(p, &end, 10);
            if (end == p || errno || id < 0 || id >= V)
                die("--prompt-ids: '%.20s' is not a token id in [0, %d)", p, V);
            if (out->len == out->cap) {
                out->cap = out->cap ? 2 * out->cap : 64;
                out->ids = realloc(out->ids, (size_t)out->cap * sizeof(int32_t));
                if (!out->ids) die("out of memory");
            }
            out->ids[out->len++] = (int32_t)id;
            p = end;
        }
        return;
    }
    char *text = NULL;
    size_t len = 0;
    Err err;
    if (a->prompt_file) {
        if (!read_file(a->prompt_file, (size_t)1 << 30, &text, &len, &err)) die("--prompt-file: %s", err.msg);
    } else if (a->prompt) {
        len = strlen(a->prompt);
    }
    if (len == 0) {
        free(text);
        return;
    }
    // The encoder: as asked, else the one whose vocabulary the run's decode table has.
    const char *name = a->tokenizer;
    if (!name) {
        const int dv = dec ? decoder_vocab_size(dec) : V;
        if (dv == TOKENIZER_BYTES_VOCAB) name = "bytes";
        else if (dv == TOKENIZER_GPT2_VOCAB) name = "gpt2";
        else
            die("cannot tell the prompt's tokenizer (decode table of %d tokens, model vocab_size %d): give "
                "--tokenizer gpt2|bytes, or --prompt-ids", dv, V);
    }
    Tokenizer *tok = NULL;
    if (!strcmp(name, "bytes")) tok = tokenizer_open_bytes();
    else if (!strcmp(name, "gpt2")) {
        if (!tokenizer_open_gpt2(&tok, a->vendor, &err)) die("%s (--vendor)", err.msg);
    } else die("--tokenizer must be gpt2 or bytes, got '%s'", name);
    if (tokenizer_vocab_size(tok) > V)
        die("--tokenizer %s has %d tokens but the model's vocab_size is %d", name, tokenizer_vocab_size(tok), V);
    if (!tokenizer_encode(tok, a->prompt_file ? text : a->prompt, len, out, &err))
        die("%s: %s", a->prompt_file ? a->prompt_file : "--prompt", err.msg);
    tokenizer_free(tok);
    free(text);
}

// Statistics of one sample: a line each time the context reaches a power of two, and at the end.
typedef struct {
    FILE *json;
    bool quiet;
    int sample;
    int64_t next_report, last_pos;
    double last_time;
} Stats;

static void stats_report(Stats *st, const DecodeState *ds, const char *phase, bool force) {
    const int64_t pos = decode_position(ds);
    if (pos < st->next_report && !force) return;
    const double now = now_seconds(), dt = now - st->last_time;
    const double tps = dt > 0 ? (double)(pos - st->last_pos) / dt : 0;
    if (!st->quiet && pos > st->last_pos)
        fprintf(stderr, "[sample %d] %-7s context %8lld | %8.1f tok/s | state %10zu bytes (allocated %zu)\n",
                st->sample, phase, (long long)pos, tps, decode_state_bytes(ds), decode_allocated_bytes(ds));
    if (st->json && pos > st->last_pos)
        fprintf(st->json,
                "{\"sample\": %d, \"phase\": \"%s\", \"context\": %lld, \"tokens\": %lld, \"seconds\": %.6f, "
                "\"tokens_per_s\": %.2f, \"state_bytes\": %zu, \"allocated_bytes\": %zu}\n",
                st->sample, phase, (long long)pos, (long long)(pos - st->last_pos), dt, tps, decode_state_bytes(ds),
                decode_allocated_bytes(ds));
    st->last_pos = pos;
    st->last_time = now;
    while (st->next_report <= pos) st->next_report *= 2;
}

// Text through the decode table, else the ids separated by spaces (sep: whether ids were printed before).
static void print_tokens(const Decoder *dec, const int32_t *ids, int64_t n, bool sep) {
    if (dec) {
        size_t need = decoder_decode(dec, ids, n, NULL, 0) + 1;
        char *text = xmalloc(need);
        decoder_decode(dec, ids, n, text, need);
        fwrite(text, 1, need - 1, stdout);
        free(text);
    } else {
        for (int64_t i = 0; i < n; i++) printf("%s%d", i || sep ? " " : "", ids[i]);
    }
}

int main(int argc, char **argv) {
    blas_setup(argv);
    Args a = parse_args(argc, argv);
    Err err;
    TrainedModel tm;
    bool ok = a.checkpoint ? trained_model_open(&tm, a.checkpoint, 1, 1, &err)
                           : trained_model_init(&tm, a.config, 1, 1, &err);
    if (!ok) die("%s", err.msg);
    threads_setup(a.threads >= 0 ? a.threads : tm.cfg.train.threads);
    const ModelConfig *mc = &tm.cfg.model;
    const int V = mc->vocab_size;

    Decoder *dec = NULL;
    const char *table = a.decode_table ? a.decode_table : tm.cfg.train.tokenizer;
    if (table[0] && !decoder_open(&dec, table, &err)) {
        if (a.decode_table) die("--decode-table: %s", err.msg);
        fprintf(stderr, "warning: %s; printing token ids\n", err.msg);
        dec = NULL;
    }
    if (dec && decoder_vocab_size(dec) > V)
        die("decode table %s has %d tokens but the model's vocab_size is %d", table, decoder_vocab_size(dec), V);
    const int eot = dec ? decoder_eot(dec) : (V == TOKENIZER_BYTES_VOCAB ? TOKENIZER_BYTES_EOT : V - 1);

    TokenBuf prompt = {0};
    encode_prompt(&a, &tm.cfg, dec, &prompt);
    FILE *json = NULL;
    if (a.stats && !(json = fopen(a.stats, "w"))) die("cannot write %s (--stats): %s", a.stats, strerror(errno));
    if (!a.quiet)
        fprintf(stderr, "%s (%s, step %lld) | prompt %lld tokens | %lld new tokens x %d samples | temperature %g "
                        "top-k %d top-p %g seed %llu | threads %d\n",
                model_type_name(mc->type), a.checkpoint ? tm.dir : tm.origin, (long long)tm.step,
                (long long)prompt.len, a.tokens, a.samples, a.sc.temperature, a.sc.top_k, a.sc.top_p, a.seed,
                threads_count());

    // Prefill once: end-of-text, then the prompt; every sample continues from a copy of this state.
    float *logits = xmalloc((size_t)V * sizeof(float)), *prefill_logits = xmalloc((size_t)V * sizeof(float));
    const int64_t cap = prompt.len + 1 + a.tokens;
    DecodeState *base = decode_create(tm.model, (int)LL_MIN(cap, 1 << 16));
    Stats st = {.json = json, .quiet = a.quiet, .sample = 0, .next_report = 1, .last_time = now_seconds()};
    decode_step(tm.model, base, eot, prefill_logits);
    for (int64_t i = 0; i < prompt.len; i++) {
        decode_step(tm.model, base, prompt.ids[i], prefill_logits);
        stats_report(&st, base, "prefill", false);
    }
    stats_report(&st, base, "prefill", true);

    Sampler *sampler = sampler_create(&a.sc, V);
    int32_t *out = xmalloc((size_t)LL_MAX(a.tokens, 1) * sizeof(int32_t));
    for (int si = 0; si < a.samples; si++) {
        DecodeState *ds = decode_clone(base);
        Rng r;
        rng_seed(&r, rng_mix(a.seed, (uint64_t)si));
        st = (Stats){.json = json, .quiet = a.quiet, .sample = si, .next_report = 1, .last_pos = decode_position(ds),
                     .last_time = now_seconds()};
        while (st.next_report <= st.last_pos) st.next_report *= 2;
        memcpy(logits, prefill_logits, (size_t)V * sizeof(float));
        int64_t n = 0;
        for (; n < a.tokens; n++) {
            const int32_t tok = sampler_next(sampler, logits, &r);
            if (tok == eot && !a.ignore_eot) break;
            out[n] = tok;
            if (n + 1 < a.tokens) {   // the last token needs no successor distribution
                decode_step(tm.model, ds, tok, logits);
                stats_report(&st, ds, "decode", false);
            }
        }
        stats_report(&st, ds, "decode", true);
        if (a.samples > 1) printf("--- sample %d (seed %llu) ---\n", si, a.seed);
        print_tokens(dec, prompt.ids, prompt.len, false);
        print_tokens(dec, out, n, prompt.len > 0);
        printf("\n");
        fflush(stdout);
        decode_free(ds);
    }
    if (json && fclose(json) != 0) die("cannot write %s (--stats): %s", a.stats, strerror(errno));
    free(out);
    free(logits);
    free(prefill_logits);
    free(prompt.ids);
    sampler_free(sampler);
    decode_free(base);
    decoder_free(dec);
    trained_model_close(&tm);
    return 0;
}
