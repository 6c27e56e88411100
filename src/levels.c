// levels.c — see levels.h.
#include "levels.h"

void level_chunk_reads_of(int64_t c, int lc, LevelReads *rd) {
    rd->n = 0;
    for (int j = 0; (c >> j) != 0; j++) {
        if (!level_chunk_reads(c, j)) continue;
        const int base = (int)((c >> j) << j);
        rd->slot[rd->n] = base - 1;
        rd->base[rd->n] = base;
        rd->lev[rd->n] = lc + 1 + j;
        rd->j[rd->n] = j;
        rd->n++;
    }
}

void level_tree_build(int64_t nslot, LevelCombineFn *combine, void *ctx) {
    for (int64_t span = 1; 2 * span <= nslot; span *= 2)
        for (int64_t lo = 0; lo + 2 * span <= nslot; lo += 2 * span)
            combine(ctx, lo + span - 1, lo + 2 * span - 1, lo + span, span);
}

void level_tree_backward(int64_t nslot, LevelCombineFn *combine_bwd, void *ctx) {
    int64_t top = 0;
    for (int64_t span = 1; 2 * span <= nslot; span *= 2) top = span;
    for (int64_t span = top; span >= 1; span /= 2)
        for (int64_t lo = 0; lo + 2 * span <= nslot; lo += 2 * span)
            combine_bwd(ctx, lo + span - 1, lo + 2 * span - 1, lo + span, span);
}
