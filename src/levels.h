// levels.h — the log-linear level machinery shared by both log-linear mixers (Mamba-2 and Gated
// DeltaNet): the level function, the number of levels, the chunk-level schedule, the Fenwick tree walk
// over per-chunk states, and the decode cascade of per-level states (doc/loglinear-attention.md).
//
// Positions are 0-based. Target t reads source s <= t at level
//     ℓ(t, t) = 0,   ℓ(t, s) = bit_length(t XOR s)  for s < t.
// Level ℓ >= 1 of target t is the Fenwick bucket [(t>>ℓ)<<ℓ, ((t>>ℓ)<<ℓ) + 2^(ℓ-1)), non-empty iff bit
// ℓ-1 of t is set. With chunks of 2^lc tokens, pairs in one chunk use levels 0..lc and a pair in chunks
// z' < z uses level lc+1+j with j = bit_length(z XOR z') - 1, the "chunk level": for chunk level j,
// chunk z reads (bit j of z set) the states written by the chunks of the left half of its aligned group
// of 2^(j+1) chunks (bit j clear), and the state restarts from zero at every group start.
#ifndef LL_LEVELS_H
#define LL_LEVELS_H

#include <stdbool.h>
#include <stdint.h>

static inline int level_bit_length(uint64_t v) { return v ? 64 - __builtin_clzll(v) : 0; }

// ℓ(t, s) for 0 <= s <= t.
static inline int level_of(int64_t t, int64_t s) { return level_bit_length((uint64_t)(t ^ s)); }

// Levels used by a sequence of T tokens: bit_length(T-1) + 1 (1 for T = 1, 12 for 2048, 15 for 16384).
static inline int levels_needed(int64_t T) { return T <= 1 ? 1 : level_bit_length((uint64_t)(T - 1)) + 1; }

// Chunk levels used by nchunks chunks: bit_length(nchunks-1) (0 for a single chunk).
static inline int levels_chunk_levels(int64_t nchunks) { return level_bit_length((uint64_t)(nchunks - 1)); }

// The bucket of level l >= 1 of local target i inside a chunk: [*lo, *hi); false if empty.
static inline bool level_bucket(int64_t i, int l, int64_t *lo, int64_t *hi) {
    if (!((i >> (l - 1)) & 1)) return false;
    *lo = (i >> l) << l;
    *hi = *lo + ((int64_t)1 << (l - 1));
    return true;
}

// ---- chunk-level schedule (per chunk level j, over the chunk index c) ---------------------------------
static inline bool level_chunk_reads(int64_t c, int j) { return (c >> j) & 1; }    // reader at level j
static inline bool level_chunk_writes(int64_t c, int j) { return !((c >> j) & 1); } // writer at level j
// The level-j state entering chunk c is zero (c starts an aligned group of 2^(j+1) chunks).
static inline bool level_chunk_resets(int64_t c, int j) { return (c & ((((int64_t)1) << (j + 1)) - 1)) == 0; }

// Most inter-chunk reads one chunk can have (popcount of a chunk index < 2^31, plus one).
#define LEVEL_MAX_READS 32

// The inter-chunk reads of chunk c, in increasing chunk level j (one per set bit of c): the writers of
// level j are chunks [base - 2^j, base) with base = (c>>j)<<j; their summed state is the Fenwick tree
// node in slot base - 1 (see level_tree_build); it reaches chunk c through chunks [base, c); the token
// level is lc + 1 + j.
typedef struct {
    int n;
    int slot[LEVEL_MAX_READS], base[LEVEL_MAX_READS], lev[LEVEL_MAX_READS], j[LEVEL_MAX_READS];
} LevelReads;
void level_chunk_reads_of(int64_t c, int lc, LevelReads *rd);

// ---- Fenwick tree over per-chunk states --------------------------------------------------------------
// nslot chunk states in slots 0..nslot-1 (slot s = the state written by chunk s alone). Building the tree
// in place: for span = 1, 2, 4, ... and each aligned pair of blocks [lo, lo+span), [lo+span, lo+2span)
// (lo + 2span <= nslot), the right block's node (slot lo+2span-1) absorbs the left one (slot lo+span-1)
// carried through the right block: combine(ctx, left_slot, right_slot, lo + span, span) with
// right := transition(chunks [lo+span, lo+2span)) · left + right. Afterwards slot s holds the node of the
// block of 2^tz(s+1) chunks ending at chunk s: exactly the writers' state read by the chunks right after.
typedef void LevelCombineFn(void *ctx, int64_t left_slot, int64_t right_slot, int64_t right_lo, int64_t span);
void level_tree_build(int64_t nslot, LevelCombineFn *combine, void *ctx);
// The readers of the node in slot s: chunks [s+1, min(s+1+2^j, nchunks)) at chunk level j = tz(s+1),
// returned (the inverse of level_chunk_reads_of, for the backward).
static inline int level_node_readers(int64_t slot, int64_t nchunks, int64_t *c_lo, int64_t *c_hi) {
    const int j = __builtin_ctzll((unsigned long long)(slot + 1));
    *c_lo = slot + 1;
    *c_hi = *c_lo + ((int64_t)1 << j) < nchunks ? *c_lo + ((int64_t)1 << j) : nchunks;
    return j;
}
// The same combines in reverse order (top level first), for the backward: combine_bwd(ctx, left, right,
// right_lo, span) must add transitionᵀ · d(right) into d(left) (d(right) passes through unchanged).
void level_tree_backward(int64_t nslot, LevelCombineFn *combine_bwd, void *ctx);

// ---- decode cascade (one token at a time) -------------------------------------------------------------
// Before token t >= 1, levels 0..ctz(t) (holding 2^ctz(t) tokens) merge into level
// level_cascade_target(t, levels) (ctz(t)+1, capped at levels-1); every occupied level is then carried
// through token t's transition, and the token alone becomes level 0.
static inline int level_cascade_target(int64_t t, int levels) {
    const int tgt = __builtin_ctzll((unsigned long long)t) + 1;
    return tgt < levels - 1 ? tgt : levels - 1;
}
// Whether level l holds tokens after token t was inserted (level 0 always; l >= 1 iff bit l-1 of t).
static inline bool level_occupied(int64_t t, int l) { return l == 0 || (l <= 63 && (((uint64_t)t >> (l - 1)) & 1)); }

#endif
