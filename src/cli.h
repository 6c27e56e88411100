// cli.h — the command-line parser of the tools (./evaluate, ./generate): a table of options, each naming
// where its value goes and how it is read. Accepted: --name VALUE, --name=VALUE, flags (no value), and
// --help / -h (prints the usage to stdout, exits 0). Errors die with a message that names the option:
// an unknown one with the nearest known name suggested, a missing value, a value that is not a number
// of the option's kind or below its minimum.
#ifndef LL_CLI_H
#define LL_CLI_H

#include <stdio.h>

#include "common.h"

typedef enum {
    CLI_FLAG,    // bool, set to true; takes no value
    CLI_STR,     // const char *, the argument itself
    CLI_INT,     // int >= min
    CLI_LL,      // long long >= min
    CLI_U64,     // unsigned long long >= min (min >= 0)
    CLI_FLOAT,   // float (any finite or infinite number strtof reads)
} CliKind;

typedef struct {
    const char *name;   // without the leading "--", e.g. "top-k"
    CliKind kind;
    void *dest;         // a variable of the kind's type
    long long min;      // CLI_INT / CLI_LL / CLI_U64: the smallest value accepted
} CliOption;

// Parses argv[1, argc) into the destinations of opts[0, n); usage(f) prints the program's help.
void cli_parse(int argc, char **argv, const CliOption *opts, int n, void (*usage)(FILE *f));

#endif
