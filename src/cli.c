// cli.c — see cli.h.
#include "cli.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

// The option called name[0, len), or NULL.
static const CliOption *find_option(const CliOption *opts, int n, const char *name, size_t len) {
    for (int i = 0; i < n; i++)
        if (strlen(opts[i].name) == len && strncmp(opts[i].name, name, len) == 0) return &opts[i];
    return NULL;
}

_Noreturn static void die_unknown(const char *arg, const CliOption *opts, int n) {
    // Candidates written as on the command line ("--top-k"), so the suggestion can be typed as shown.
    enum { MAX_CANDS = 64 };
    char names[MAX_CANDS][64];
    const char *cands[MAX_CANDS];
    int nc = 0;
    snprintf(names[nc], sizeof names[nc], "--help");
    cands[nc] = names[nc];
    nc++;
    for (int i = 0; i < n && nc < MAX_CANDS; i++, nc++) {
        snprintf(names[nc], sizeof names[nc], "--%s", opts[i].name);
        cands[nc] = names[nc];
    }
    char word[128], hint[160];
    snprintf(word, sizeof word, "%.*s", (int)strcspn(arg, "="), arg);
    did_you_mean(word, cands, (size_t)nc, hint, sizeof hint);
    die("unknown option '%s'%s; see --help", word, hint);
}

// The value of option o (written as opt, e.g. "--tokens") stored into o->dest.
static void store(const CliOption *o, const char *opt, const char *v) {
    switch (o->kind) {
    case CLI_FLAG: break;   // handled by the caller
    case CLI_STR: *(const char **)o->dest = v; break;
    case CLI_INT: {
        const long long x = option_ll(opt, v, o->min);
        if (x > INT_MAX) die("%s needs an integer from %lld to %d, got '%s'", opt, o->min, INT_MAX, v);
        *(int *)o->dest = (int)x;
        break;
    }
    case CLI_LL: *(long long *)o->dest = option_ll(opt, v, o->min); break;
    case CLI_U64: *(unsigned long long *)o->dest = (unsigned long long)option_ll(opt, v, o->min); break;
    case CLI_FLOAT: {
        char *end;
        const float x = strtof(v, &end);
        if (*end || end == v) die("%s needs a number, got '%s'", opt, v);
        *(float *)o->dest = x;
        break;
    }
    }
}

void cli_parse(int argc, char **argv, const CliOption *opts, int n, void (*usage)(FILE *f)) {
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (!strcmp(s, "--help") || !strcmp(s, "-h")) {
            usage(stdout);
            exit(0);
        }
        if (strncmp(s, "--", 2) != 0) die("unexpected argument '%s' (options start with --; see --help)", s);
        const char *eq = strchr(s + 2, '=');
        const CliOption *o = find_option(opts, n, s + 2, eq ? (size_t)(eq - (s + 2)) : strlen(s + 2));
        if (!o) die_unknown(s, opts, n);
        char opt[80];
        snprintf(opt, sizeof opt, "--%s", o->name);
        if (o->kind == CLI_FLAG) {
            if (eq) die("option '%s' is a flag and takes no value, got '%s' (see --help)", opt, s);
            *(bool *)o->dest = true;
            continue;
        }
        const char *v;
        if (eq) v = eq + 1;
        else if (i + 1 < argc) v = argv[++i];
        else die("option '%s' needs a value, e.g. %s VALUE or %s=VALUE (see --help)", opt, opt, opt);
        store(o, opt, v);
    }
}
