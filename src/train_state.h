// train_state.h — the training state saved with each checkpoint as state.json (everything else is in
// the config and the tensors): step, data position, counters, elapsed time, seed. 64-bit values are
// written as decimal strings so that they stay exact through any JSON reader.
//
// Reading validates every field before converting it (type, range, consistency with the checkpoint and
// the data): a hand-edited or damaged state.json is refused with a message naming the file and the field
// instead of restarting at a wrong step with the old optimizer moments.
#ifndef LL_TRAIN_STATE_H
#define LL_TRAIN_STATE_H

#include "common.h"
#include "data.h"

typedef struct {
    int64_t step;              // optimizer steps completed
    DataPosition data;         // next training batch
    int64_t tokens_seen;
    int64_t tokens_per_step;   // the tokens of every step so far, or 0 when that changed during the run (or
                               //   a checkpoint predating the field): tokens_seen = step x tokens_per_step
    int64_t bad_steps_total;
    int consecutive_bad;
    double elapsed;            // training seconds so far
} TrainState;

// What the state must agree with. Fields < 0 are not checked.
typedef struct {
    int64_t step;              // the checkpoint's step (its manifest), or -1
    int64_t num_windows;       // windows per epoch of the training data: data_cursor must be below it
    const uint64_t *seed;      // train.seed of the checkpoint's train_config.json, or NULL
} TrainStateExpect;

// state.json text (malloc'd; free it).
char *train_state_to_json(const TrainState *s, uint64_t seed);

// Parses and checks state.json (`origin` names the file in messages). *s is written only on success.
bool train_state_from_json(TrainState *s, const char *json, const char *origin, const TrainStateExpect *expect,
                           Err *err);

#endif
