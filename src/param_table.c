// param_table.c — see param_table.h.
#include "param_table.h"

#include <stdio.h>

float *param_add(ParamTable *tb, const char *name, bool decay, int ndim, int64_t s0, int64_t s1, int64_t s2) {
    const int64_t shape[3] = {s0, s1, s2};
    size_t numel = 1;
    for (int i = 0; i < ndim; i++) numel *= (size_t)shape[i];
    const size_t offset = tb->used;
    float *p = tb->base ? tb->base + offset : NULL;
    tb->used += numel;
    if (tb->table) {
        ParamInfo *pi = &tb->table[tb->n];
        snprintf(pi->name, sizeof pi->name, "%s", name);
        pi->ndim = ndim;
        for (int i = 0; i < 4; i++) pi->shape[i] = i < ndim ? shape[i] : 1;
        pi->offset = offset;
        pi->numel = numel;
        pi->decay = decay;
    }
    tb->n++;
    return p;
}

void param_add_alias(ParamTable *tb, const char *name, int existing) {
    if (tb->table) {
        tb->table[tb->n] = tb->table[existing];
        snprintf(tb->table[tb->n].name, sizeof tb->table[tb->n].name, "%s", name);
    }
    tb->n++;
}
