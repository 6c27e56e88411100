// arena.h — carving consecutive, 64-byte aligned float ranges out of one block.
// With base == NULL an Arena only counts, so the same code first sizes a buffer and then lays it out:
// every layout (parameters, activations, scratch) is written exactly once.
#ifndef LL_ARENA_H
#define LL_ARENA_H

#include <stddef.h>

typedef struct {
    float *base;   // NULL while sizing
    size_t used;   // floats handed out so far
} Arena;

static inline float *arena_take(Arena *a, size_t n) {
    float *p = a->base ? a->base + a->used : NULL;
    a->used += (n + 15) / 16 * 16;   // 16 floats = 64 bytes
    return p;
}

#endif
