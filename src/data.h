// data.h — token shard loader for training and validation.
//
// Shard format (llm.c): a header of 256 little-endian int32 — [0] = 20240520 (magic), [1] = 1 (version),
// [2] = number of tokens — followed by that many uint16 tokens. ./tokenize writes them.
//
// The loader mmaps every shard matching a glob (sorted by name) and checks them all at open. A shard of
// n tokens gives floor((n-1)/T) windows of T+1 tokens at stride T (window w = tokens[w*T, w*T+T]);
// inputs = window[0:T], targets = window[1:T+1]. Windows never span two shards. A batch is the next B
// windows of the current epoch's order: sequential (shuffle = false, for validation) or a Fisher-Yates
// permutation drawn from (seed, epoch) with a fixed integer RNG, so the same seed gives the same batches
// on any machine. Every window is visited exactly once per epoch; a batch may straddle two epochs.
//
// Instead of a glob, the data may name a generated task, "mqar:..." (mqar.h): window w is then example w
// of the set (targets -1 except at the answers), in the same shuffled or sequential order; no files.
#ifndef LL_DATA_H
#define LL_DATA_H

#include "common.h"

#define SHARD_MAGIC 20240520
#define SHARD_VERSION 1
#define SHARD_HEADER_INTS 256

typedef struct DataLoader DataLoader;

// Where the loader is: the next window to read is order(epoch)[cursor]. Saved in checkpoints.
typedef struct {
    uint64_t epoch;
    uint64_t cursor;  // 0 .. num_windows-1
} DataPosition;

// Fails (with a message naming the file and the fix) if nothing matches the glob, a shard has a bad
// magic/version, a size that disagrees with its header, a token id >= vocab_size, or if all shards
// together hold fewer than B windows.
bool dataloader_open(DataLoader **out, const char *glob_pattern, int B, int T, int vocab_size,
                     uint64_t seed, bool shuffle, Err *err);
void dataloader_close(DataLoader *dl);  // NULL is fine

// Fills the next batch and advances (starting the next epoch when this one runs out). No allocation.
void dataloader_next(DataLoader *dl,
                     int32_t *inputs,    // (B, T)
                     int32_t *targets);  // (B, T)

// Advances past n windows without reading them, exactly as n/B calls of dataloader_next would (n need not
// be a multiple of B): how a data-parallel rank passes over the other ranks' share of a batch.
void dataloader_skip(DataLoader *dl, int64_t n);

DataPosition dataloader_position(const DataLoader *dl);
// Continues from a saved position; fails if cursor >= num_windows (different data, or B/T changed).
bool dataloader_seek(DataLoader *dl, DataPosition pos, Err *err);
void dataloader_rewind(DataLoader *dl);  // back to epoch 0, cursor 0 (e.g. before each validation pass)

int64_t dataloader_num_windows(const DataLoader *dl);  // windows per epoch
int64_t dataloader_total_tokens(const DataLoader *dl); // tokens in all shards
int dataloader_num_shards(const DataLoader *dl);     // 0 for a task
bool dataloader_is_task(const DataLoader *dl);       // a generated task (MQAR): targets are masked

#endif
